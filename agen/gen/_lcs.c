/* A near-duplicate check's verification in one C call: `agen.gen.dedup_store.ItemLog.best_match`
 * without a Python object per candidate.
 *
 * best_match(query, cands, lengths, offsets, tail, flushed, fd, threshold) -> (item, score, checked, reads)
 *
 *   query      str: the question's token codes, one character a code
 *   cands      list of item indices (LSH candidates; repeats allowed)
 *   lengths    buffer of uint32: each item's code count
 *   offsets    buffer of uint64: where item i's record starts (i + 1: where it ends)
 *   tail       bytes-like: the log's bytes from `flushed` on (not yet in the file)
 *   fd         the log file (records before `flushed`), or -1
 *
 * For each distinct candidate in ascending order whose length could reach `threshold` at all
 * (2 * min(n, m) >= threshold * (n + m)), it reads the candidate's codes (UTF-32-LE, from the tail
 * or with one pread) and computes ROUGE-L F1 = 2 * LCS / (n + m), the LCS by the bit-parallel
 * algorithm of Allison-Dix / Hyyro (64 query tokens a machine word; V' = (V + U) | (V & ~U) with
 * U = V & match[c], LCS = zero bits of V). It returns the first best candidate (-1 if none
 * scored above 0), its score, how many were compared and how many preads it made: what the
 * Python path with rapidfuzz's LCSseq returns (tests/test_dedup_store.py holds the two equal).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_ssize(const void *x, const void *y) {
    Py_ssize_t a = *(const Py_ssize_t *)x, b = *(const Py_ssize_t *)y;
    return (a > b) - (a < b);
}

typedef struct {
    Py_ssize_t words, slots;  /* 64-bit words a mask; table slots (a power of two) */
    uint32_t *keys;           /* slot -> symbol; UINT32_MAX empty */
    uint64_t *masks;          /* slot -> its `words` mask words */
    uint64_t *v;              /* the bit vector, `words` words */
} Pattern;

static inline Py_ssize_t slot_of(uint32_t key, Py_ssize_t slots) {
    return (Py_ssize_t)((key * 0x9E3779B1u) >> 7) & (slots - 1);
}

static Py_ssize_t find(const Pattern *p, uint32_t key) {
    Py_ssize_t i = slot_of(key, p->slots);
    while (p->keys[i] != key && p->keys[i] != UINT32_MAX)
        i = (i + 1) & (p->slots - 1);
    return i;
}

static int pattern_init(Pattern *p, const uint32_t *a, Py_ssize_t n) {
    p->words = (n + 63) / 64;
    p->slots = 16;
    while (p->slots < 2 * n)
        p->slots *= 2;
    p->keys = PyMem_Malloc(sizeof(uint32_t) * p->slots);
    p->masks = PyMem_Calloc(p->slots * p->words, sizeof(uint64_t));
    p->v = PyMem_Malloc(sizeof(uint64_t) * p->words);
    if (!p->keys || !p->masks || !p->v)
        return -1;
    memset(p->keys, 0xFF, sizeof(uint32_t) * p->slots);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = find(p, a[i]);
        p->keys[s] = a[i];
        p->masks[s * p->words + i / 64] |= (uint64_t)1 << (i % 64);
    }
    return 0;
}

static void pattern_free(Pattern *p) {
    PyMem_Free(p->keys);
    PyMem_Free(p->masks);
    PyMem_Free(p->v);
}

static Py_ssize_t lcs(Pattern *p, Py_ssize_t n, const unsigned char *b, Py_ssize_t m) {
    Py_ssize_t words = p->words;
    uint64_t *v = p->v;
    for (Py_ssize_t w = 0; w < words; w++)
        v[w] = ~(uint64_t)0;
    for (Py_ssize_t j = 0; j < m; j++) {
        const unsigned char *q = b + 4 * j;  /* UTF-32-LE, as the log stores codes */
        uint32_t c = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
        Py_ssize_t s = find(p, c);
        if (p->keys[s] == UINT32_MAX)
            continue;  /* not in the query: V stays as it is */
        const uint64_t *mask = p->masks + s * words;
        uint64_t carry = 0;
        for (Py_ssize_t w = 0; w < words; w++) {
            uint64_t u = v[w] & mask[w];
            uint64_t sum = v[w] + u;
            uint64_t c1 = sum < u;
            uint64_t sum2 = sum + carry;
            carry = c1 | (sum2 < sum);
            v[w] = sum2 | (v[w] & ~u);
        }
    }
    Py_ssize_t ones = 0;
    for (Py_ssize_t w = 0; w < words; w++) {
        uint64_t x = v[w];
        if (w == words - 1 && n % 64)
            x &= ((uint64_t)1 << (n % 64)) - 1;
        ones += __builtin_popcountll(x);
    }
    return n - ones;
}

static PyObject *best_match(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyUnicode_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "best_match(query: str, cands: list, lengths, offsets, tail, flushed, fd, threshold)");
        return NULL;
    }
    PyObject *query = args[0], *cands = args[1];
    Py_ssize_t flushed = PyLong_AsSsize_t(args[5]);
    long fd = PyLong_AsLong(args[6]);
    double t = PyFloat_AsDouble(args[7]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer lens, offs, tail;
    if (PyObject_GetBuffer(args[2], &lens, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[3], &offs, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&lens);
        return NULL;
    }
    if (PyObject_GetBuffer(args[4], &tail, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&lens);
        PyBuffer_Release(&offs);
        return NULL;
    }
    PyObject *res = NULL;
    Py_ssize_t *ids = NULL;
    uint32_t *qcodes = NULL;
    unsigned char *rbuf = NULL;
    Py_ssize_t rcap = 0;
    Pattern pat = {0};
    if (lens.itemsize != 4 || offs.itemsize != 8 || offs.len / 8 != lens.len / 4 + 1) {
        PyErr_SetString(PyExc_ValueError, "best_match: lengths must be uint32 and offsets one more uint64");
        goto done;
    }
    const uint32_t *lengths = lens.buf;
    const uint64_t *offsets = offs.buf;
    Py_ssize_t items = lens.len / 4, n = PyUnicode_GET_LENGTH(query), k = PyList_GET_SIZE(cands);
    ids = PyMem_Malloc(sizeof(Py_ssize_t) * (k ? k : 1));
    qcodes = PyMem_Malloc(sizeof(uint32_t) * (n ? n : 1));
    if (!ids || !qcodes) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        ids[i] = PyLong_AsSsize_t(PyList_GET_ITEM(cands, i));
        if (ids[i] == -1 && PyErr_Occurred())
            goto done;
        if (ids[i] < 0 || ids[i] >= items) {
            PyErr_SetString(PyExc_IndexError, "best_match: a candidate is not in the log");
            goto done;
        }
    }
    qsort(ids, k, sizeof(Py_ssize_t), cmp_ssize);
    {
        int kind = PyUnicode_KIND(query);
        const void *data = PyUnicode_DATA(query);
        for (Py_ssize_t i = 0; i < n; i++)
            qcodes[i] = PyUnicode_READ(kind, data, i);
    }
    if (n && pattern_init(&pat, qcodes, n) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t checked = 0, reads = 0, best_idx = -1;
    double best = 0.0;
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_ssize_t j = ids[i];
        if (i && j == ids[i - 1])
            continue;
        Py_ssize_t m = lengths[j];
        if (!(2.0 * (double)(n < m ? n : m) >= t * (double)(n + m)))
            continue;
        checked++;
        uint64_t a = offsets[j];
        const unsigned char *codes;
        if ((Py_ssize_t)a >= flushed) {
            if ((Py_ssize_t)a - flushed + 4 * m > tail.len) {
                PyErr_SetString(PyExc_ValueError, "best_match: a record runs past the log's tail");
                goto done;
            }
            codes = (const unsigned char *)tail.buf + (a - flushed);
        } else {
            if (4 * m > rcap) {
                PyMem_Free(rbuf);
                rcap = 4 * m;
                rbuf = PyMem_Malloc(rcap ? rcap : 1);
                if (!rbuf) {
                    PyErr_NoMemory();
                    goto done;
                }
            }
            ssize_t got;
            Py_BEGIN_ALLOW_THREADS
            got = pread((int)fd, rbuf, 4 * m, (off_t)a);
            Py_END_ALLOW_THREADS
            reads++;
            if (got != 4 * m) {
                if (got < 0)
                    PyErr_SetFromErrno(PyExc_OSError);
                else
                    PyErr_SetString(PyExc_OSError, "best_match: short read of the dedup item log");
                goto done;
            }
            codes = rbuf;
        }
        if (!n || !m)
            continue;
        double score = 2.0 * (double)lcs(&pat, n, codes, m) / (double)(n + m);
        if (score > best) {
            best = score;
            best_idx = j;
        }
    }
    res = Py_BuildValue("(ndnn)", best_idx, best, checked, reads);
done:
    pattern_free(&pat);
    PyMem_Free(ids);
    PyMem_Free(qcodes);
    PyMem_Free(rbuf);
    PyBuffer_Release(&lens);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&tail);
    return res;
}

static PyMethodDef methods[] = {
    {"best_match", (PyCFunction)(void (*)(void))best_match, METH_FASTCALL,
     "best_match(query, cands, lengths, offsets, tail, flushed, fd, threshold) -> (item, score, checked, reads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "agen.gen._lcs",
                                    "A near-duplicate check's ROUGE-L verification (agen.gen.dedup_store) in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__lcs(void) { return PyModule_Create(&module); }
