/* A question's near-duplicate signature in one C call: `agen.gen.dedup`'s `_prepare` without its
 * numpy calls and per-token dict lookups (~60% of a dedup check's instructions in Python).
 *
 * signature(tokens, stop_bytes, stop_str, a, c, band_mix, rows, row_mix) -> (query, keys)
 *
 *   tokens     list of bytes (ASCII text) or of str (other text), as `dedup._tokens` gives them
 *   stop_*     frozensets of the stop words, as bytes and as str
 *   a, c       bytes: the MinHash permutations' uint64 multipliers and offsets (bands * rows each)
 *   band_mix   bytes: each band's uint64 odd multiplier
 *   row_mix    bytes: (bands, rows) uint64 multipliers, used when rows != 4
 *
 * It computes exactly what the Python path computes (tests/test_dedup_signature.py holds the two
 * equal): each token's 20-bit code is crc32(token, UTF-8) % (0x110000 - 0x800), moved past the
 * surrogates, one character of `query` a token; the content features are the codes of tokens
 * that are neither stop words nor digits (all codes when fewer than 3 are left), the k-th repeat of
 * a feature counted as `f | k << 21`; row j's min-hash is the minimum over features of the top 16
 * bits of `f * a[j] + c[j]` (mod 2^64); a band packs its four rows into a uint64 (row 0 lowest)
 * or sums rows * row_mix, and its key is the top 32 bits of `packed * band_mix[b]` (mod 2^64).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CODE_SPAN (0x110000 - 0x800)
#define RANK_SHIFT 21

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, Py_ssize_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static int is_digits_bytes(const char *p, Py_ssize_t n) {
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

static int is_digits_str(PyObject *s) {  /* str.isdigit() */
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n == 0)
        return 0;
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!Py_UNICODE_ISDIGIT(PyUnicode_READ(kind, data, i)))
            return 0;
    return 1;
}

/* uint64s of a bytes argument, checked to hold `want` of them */
static const uint64_t *u64s(PyObject *b, Py_ssize_t want, const char *what) {
    if (!PyBytes_Check(b) || PyBytes_GET_SIZE(b) != want * 8) {
        PyErr_Format(PyExc_ValueError, "signature: %s must be bytes of %zd uint64s", what, want);
        return NULL;
    }
    return (const uint64_t *)PyBytes_AS_STRING(b);
}

static PyObject *signature(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "signature takes 8 arguments");
        return NULL;
    }
    PyObject *tokens = args[0], *stop_bytes = args[1], *stop_str = args[2];
    if (!PyList_Check(tokens) || !PyAnySet_Check(stop_bytes) || !PyAnySet_Check(stop_str)) {
        PyErr_SetString(PyExc_TypeError, "signature: tokens must be a list and the stop words sets");
        return NULL;
    }
    Py_ssize_t rows = PyLong_AsSsize_t(args[6]);
    if (rows == -1 && PyErr_Occurred())
        return NULL;
    if (rows < 1 || !PyBytes_Check(args[3]) || PyBytes_GET_SIZE(args[3]) % (8 * rows)) {
        PyErr_SetString(PyExc_ValueError, "signature: a must hold bands * rows uint64s");
        return NULL;
    }
    Py_ssize_t perms = PyBytes_GET_SIZE(args[3]) / 8, bands = perms / rows;
    const uint64_t *a = u64s(args[3], perms, "a"), *c = u64s(args[4], perms, "c");
    const uint64_t *band_mix = u64s(args[5], bands, "band_mix");
    const uint64_t *row_mix = rows == 4 ? NULL : u64s(args[7], perms, "row_mix");
    if (!a || !c || !band_mix || (rows != 4 && !row_mix))
        return NULL;

    Py_ssize_t n = PyList_GET_SIZE(tokens);
    uint32_t *codes = PyMem_Malloc(sizeof(uint32_t) * (n ? n : 1) * 2);
    uint16_t *mins = PyMem_Malloc(sizeof(uint16_t) * perms);
    if (!codes || !mins) {
        PyMem_Free(codes);
        PyMem_Free(mins);
        return PyErr_NoMemory();
    }
    uint32_t *feats = codes + n;
    Py_ssize_t nfeat = 0;
    uint32_t maxchar = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(tokens, i);
        const char *p;
        Py_ssize_t len;
        int stop, digits;
        if (PyBytes_Check(t)) {
            p = PyBytes_AS_STRING(t);
            len = PyBytes_GET_SIZE(t);
            stop = PySet_Contains(stop_bytes, t);
            digits = is_digits_bytes(p, len);
        } else if (PyUnicode_Check(t)) {
            p = PyUnicode_AsUTF8AndSize(t, &len);
            if (!p)
                goto fail;
            stop = PySet_Contains(stop_str, t);
            digits = is_digits_str(t);
        } else {
            PyErr_SetString(PyExc_TypeError, "signature: a token must be bytes or str");
            goto fail;
        }
        if (stop < 0)
            goto fail;
        uint32_t code = crc32_of((const unsigned char *)p, len) % CODE_SPAN;
        if (code >= 0xD800)
            code += 0x800;
        codes[i] = code;
        if (code > maxchar)
            maxchar = code;
        if (!stop && !digits)
            feats[nfeat++] = code;
    }
    PyObject *query = PyUnicode_New(n, maxchar);
    if (!query)
        goto fail;
    {
        int kind = PyUnicode_KIND(query);
        void *data = PyUnicode_DATA(query);
        for (Py_ssize_t i = 0; i < n; i++)
            PyUnicode_WRITE(kind, data, i, codes[i]);
    }
    if (n == 0) {
        PyMem_Free(codes);
        PyMem_Free(mins);
        return Py_BuildValue("(NO)", query, Py_None);
    }
    if (nfeat < 3) {  /* nearly all numbers / stop words: use every word */
        memcpy(feats, codes, sizeof(uint32_t) * n);
        nfeat = n;
    }
    /* the multiset as a set: sorted, the k-th repeat of a feature becomes f | k << 21 */
    qsort(feats, nfeat, sizeof(uint32_t), cmp_u32);
    for (Py_ssize_t i = 1, run = 0; i < nfeat; i++) {
        if ((feats[i] & ((1u << RANK_SHIFT) - 1)) == (feats[i - 1] & ((1u << RANK_SHIFT) - 1))) {
            run++;
            feats[i] = (feats[i] & ((1u << RANK_SHIFT) - 1)) | ((uint32_t)run << RANK_SHIFT);
        } else {
            run = 0;
        }
    }
    for (Py_ssize_t j = 0; j < perms; j++) {
        uint64_t aj = a[j], cj = c[j];
        uint16_t m = 0xFFFF;
        for (Py_ssize_t i = 0; i < nfeat; i++) {
            uint16_t h = (uint16_t)(((uint64_t)feats[i] * aj + cj) >> 48);
            if (h < m)
                m = h;
        }
        mins[j] = m;
    }
    PyObject *keys = PyList_New(bands);
    if (!keys) {
        Py_DECREF(query);
        goto fail;
    }
    for (Py_ssize_t b = 0; b < bands; b++) {
        uint64_t packed = 0;
        if (rows == 4) {
            for (int r = 0; r < 4; r++)
                packed |= (uint64_t)mins[4 * b + r] << (16 * r);
        } else {
            for (Py_ssize_t r = 0; r < rows; r++)
                packed += (uint64_t)mins[b * rows + r] * row_mix[b * rows + r];
        }
        PyObject *k = PyLong_FromUnsignedLong((unsigned long)((packed * band_mix[b]) >> 32));
        if (!k) {
            Py_DECREF(keys);
            Py_DECREF(query);
            goto fail;
        }
        PyList_SET_ITEM(keys, b, k);
    }
    PyMem_Free(codes);
    PyMem_Free(mins);
    return Py_BuildValue("(NN)", query, keys);
fail:
    PyMem_Free(codes);
    PyMem_Free(mins);
    return NULL;
}

static PyMethodDef methods[] = {
    {"signature", (PyCFunction)(void (*)(void))signature, METH_FASTCALL,
     "signature(tokens, stop_bytes, stop_str, a, c, band_mix, rows, row_mix) -> (query, band keys or None)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "agen.gen._minhash",
                                    "A question's near-duplicate signature (agen.gen.dedup) in C.", -1, methods};

PyMODINIT_FUNC PyInit__minhash(void) {
    crc_init();
    return PyModule_Create(&module);
}
