/* A question's near-duplicate signature in one C call: `agen.gen.dedup`'s `_prepare` without its
 * numpy calls and per-token dict lookups (~60% of a dedup check's instructions in Python).
 *
 * signature(tokens, stop_bytes, stop_str, a, c, band_mix, rows, row_mix) -> (query, keys)
 * signature_text(text, ...the same) -> (query, keys, normalised text)   for an ASCII str: the
 *     tokens are found here (no token objects; stop words looked up in a C table), and the text
 *     `dedup.exact_key` hashes, " ".join(text.casefold().split()), is made in the same pass
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

typedef struct {
    PyObject *stop_bytes, *stop_str;
    const uint64_t *a, *c, *band_mix, *row_mix;
    Py_ssize_t rows, perms, bands;
} Params;

/* args[1:8] of both entry points: the stop words and the MinHash parameters */
static int parse_params(PyObject *const *args, Params *p) {
    p->stop_bytes = args[0];
    p->stop_str = args[1];
    if (!PyAnySet_Check(p->stop_bytes) || !PyAnySet_Check(p->stop_str)) {
        PyErr_SetString(PyExc_TypeError, "signature: the stop words must be sets");
        return -1;
    }
    p->rows = PyLong_AsSsize_t(args[5]);
    if (p->rows == -1 && PyErr_Occurred())
        return -1;
    if (p->rows < 1 || !PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) % (8 * p->rows)) {
        PyErr_SetString(PyExc_ValueError, "signature: a must hold bands * rows uint64s");
        return -1;
    }
    p->perms = PyBytes_GET_SIZE(args[2]) / 8;
    p->bands = p->perms / p->rows;
    p->a = u64s(args[2], p->perms, "a");
    p->c = u64s(args[3], p->perms, "c");
    p->band_mix = u64s(args[4], p->bands, "band_mix");
    p->row_mix = p->rows == 4 ? NULL : u64s(args[6], p->perms, "row_mix");
    if (!p->a || !p->c || !p->band_mix || (p->rows != 4 && !p->row_mix))
        return -1;
    return 0;
}

static uint32_t code_of(const unsigned char *p, Py_ssize_t len) {
    uint32_t code = crc32_of(p, len) % CODE_SPAN;
    return code >= 0xD800 ? code + 0x800 : code;
}

/* (query, band keys or None) from n token codes and the nfeat content features in feats (which
 * has room for n): what both entry points share */
static PyObject *finish(const Params *p, const uint32_t *codes, Py_ssize_t n, uint32_t *feats, Py_ssize_t nfeat) {
    uint32_t maxchar = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (codes[i] > maxchar)
            maxchar = codes[i];
    PyObject *query = PyUnicode_New(n, maxchar);
    if (!query)
        return NULL;
    {
        int kind = PyUnicode_KIND(query);
        void *data = PyUnicode_DATA(query);
        for (Py_ssize_t i = 0; i < n; i++)
            PyUnicode_WRITE(kind, data, i, codes[i]);
    }
    if (n == 0)
        return Py_BuildValue("(NO)", query, Py_None);
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
    uint16_t mins_stack[512];
    uint16_t *mins = p->perms <= 512 ? mins_stack : PyMem_Malloc(sizeof(uint16_t) * p->perms);
    if (!mins) {
        Py_DECREF(query);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t j = 0; j < p->perms; j++) {
        uint64_t aj = p->a[j], cj = p->c[j];
        uint16_t m = 0xFFFF;
        for (Py_ssize_t i = 0; i < nfeat; i++) {
            uint16_t h = (uint16_t)(((uint64_t)feats[i] * aj + cj) >> 48);
            if (h < m)
                m = h;
        }
        mins[j] = m;
    }
    PyObject *keys = PyList_New(p->bands);
    if (!keys)
        goto fail;
    for (Py_ssize_t b = 0; b < p->bands; b++) {
        uint64_t packed = 0;
        if (p->rows == 4) {
            for (int r = 0; r < 4; r++)
                packed |= (uint64_t)mins[4 * b + r] << (16 * r);
        } else {
            for (Py_ssize_t r = 0; r < p->rows; r++)
                packed += (uint64_t)mins[b * p->rows + r] * p->row_mix[b * p->rows + r];
        }
        PyObject *k = PyLong_FromUnsignedLong((unsigned long)((packed * p->band_mix[b]) >> 32));
        if (!k) {
            Py_DECREF(keys);
            goto fail;
        }
        PyList_SET_ITEM(keys, b, k);
    }
    if (mins != mins_stack)
        PyMem_Free(mins);
    return Py_BuildValue("(NN)", query, keys);
fail:
    if (mins != mins_stack)
        PyMem_Free(mins);
    Py_DECREF(query);
    return NULL;
}

static PyObject *signature(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "signature takes 8 arguments");
        return NULL;
    }
    PyObject *tokens = args[0];
    Params p;
    if (!PyList_Check(tokens)) {
        PyErr_SetString(PyExc_TypeError, "signature: tokens must be a list");
        return NULL;
    }
    if (parse_params(args + 1, &p) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(tokens);
    uint32_t *codes = PyMem_Malloc(sizeof(uint32_t) * (n ? n : 1) * 2);
    if (!codes)
        return PyErr_NoMemory();
    uint32_t *feats = codes + n;
    Py_ssize_t nfeat = 0;
    PyObject *res = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(tokens, i);
        const char *s;
        Py_ssize_t len;
        int stop, digits;
        if (PyBytes_Check(t)) {
            s = PyBytes_AS_STRING(t);
            len = PyBytes_GET_SIZE(t);
            stop = PySet_Contains(p.stop_bytes, t);
            digits = is_digits_bytes(s, len);
        } else if (PyUnicode_Check(t)) {
            s = PyUnicode_AsUTF8AndSize(t, &len);
            if (!s)
                goto done;
            stop = PySet_Contains(p.stop_str, t);
            digits = is_digits_str(t);
        } else {
            PyErr_SetString(PyExc_TypeError, "signature: a token must be bytes or str");
            goto done;
        }
        if (stop < 0)
            goto done;
        codes[i] = code_of((const unsigned char *)s, len);
        if (!stop && !digits)
            feats[nfeat++] = codes[i];
    }
    res = finish(&p, codes, n, feats, nfeat);
done:
    PyMem_Free(codes);
    return res;
}

/* ---- ASCII text, tokenized here: no token objects, and the exact key's normalised text */

#define STOP_SLOTS 512
#define STOP_MAX 24
static struct { unsigned char len; char word[STOP_MAX]; } stop_table[STOP_SLOTS];
static PyObject *stop_table_of = NULL;  /* the set the table was built from (a strong reference) */

static Py_ssize_t stop_slot(const char *w, Py_ssize_t len) {
    return (Py_ssize_t)(crc32_of((const unsigned char *)w, len) & (STOP_SLOTS - 1));
}

/* the table of `stop_bytes` (built once per set object); 0, -1 if a word does not fit (the
 * caller then leaves the text to the token path), -2 on an error */
static int stop_table_for(PyObject *stop_bytes) {
    if (stop_bytes == stop_table_of)
        return 0;
    memset(stop_table, 0, sizeof(stop_table));
    PyObject *it = PyObject_GetIter(stop_bytes), *w;
    if (!it)
        return -2;
    Py_ssize_t count = 0;
    while ((w = PyIter_Next(it))) {
        if (!PyBytes_Check(w) || PyBytes_GET_SIZE(w) == 0 || PyBytes_GET_SIZE(w) >= STOP_MAX
            || ++count > STOP_SLOTS / 2) {
            Py_DECREF(w);
            Py_DECREF(it);
            memset(stop_table, 0, sizeof(stop_table));
            Py_CLEAR(stop_table_of);
            return -1;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(w), i = stop_slot(PyBytes_AS_STRING(w), len);
        while (stop_table[i].len)
            i = (i + 1) & (STOP_SLOTS - 1);
        stop_table[i].len = (unsigned char)len;
        memcpy(stop_table[i].word, PyBytes_AS_STRING(w), len);
        Py_DECREF(w);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -2;
    Py_XSETREF(stop_table_of, Py_NewRef(stop_bytes));
    return 0;
}

static int is_stop(const char *w, Py_ssize_t len) {
    if (len >= STOP_MAX)
        return 0;
    for (Py_ssize_t i = stop_slot(w, len);; i = (i + 1) & (STOP_SLOTS - 1)) {
        if (!stop_table[i].len)
            return 0;
        if (stop_table[i].len == len && !memcmp(stop_table[i].word, w, len))
            return 1;
    }
}

static inline int ascii_alnum(unsigned char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static inline int ascii_space(unsigned char ch) {  /* what str.split() splits ASCII text on */
    return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1C && ch <= 0x1F);
}

static PyObject *signature_text(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "signature_text takes 8 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    Params p;
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_TypeError, "signature_text: text must be an ASCII str");
        return NULL;
    }
    if (parse_params(args + 1, &p) < 0)
        return NULL;
    int table = stop_table_for(p.stop_bytes);
    if (table == -2)
        return NULL;
    if (table == -1)
        Py_RETURN_NONE;
    const unsigned char *t = (const unsigned char *)PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    PyObject *norm = PyBytes_FromStringAndSize(NULL, size);
    uint32_t *codes = PyMem_Malloc(sizeof(uint32_t) * (size / 2 + 1) * 2);
    if (!norm || !codes) {
        Py_XDECREF(norm);
        PyMem_Free(codes);
        return PyErr_NoMemory();
    }
    char *lower = PyBytes_AS_STRING(norm);  /* first the lowered text, then (in place) its normal form */
    for (Py_ssize_t i = 0; i < size; i++)
        lower[i] = (t[i] >= 'A' && t[i] <= 'Z') ? (char)(t[i] + 32) : (char)t[i];
    /* tokens: runs of letters and digits (at most one per two characters of text) */
    uint32_t *feats = codes + size / 2 + 1;
    Py_ssize_t n = 0, nfeat = 0;
    for (Py_ssize_t i = 0; i < size;) {
        if (!ascii_alnum(t[i])) {
            i++;
            continue;
        }
        Py_ssize_t j = i, digits = 1;
        while (j < size && ascii_alnum(t[j])) {
            digits &= t[j] >= '0' && t[j] <= '9';
            j++;
        }
        codes[n] = code_of((const unsigned char *)lower + i, j - i);
        if (!digits && !is_stop(lower + i, j - i))
            feats[nfeat++] = codes[n];
        n++;
        i = j;
    }
    /* the exact key's text: " ".join(text.casefold().split()), casefold being lower for ASCII */
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < size;) {
        if (ascii_space(t[i])) {
            i++;
            continue;
        }
        if (w)
            lower[w++] = ' ';
        while (i < size && !ascii_space(t[i]))
            lower[w++] = lower[i++];
    }
    PyObject *sig = finish(&p, codes, n, feats, nfeat);
    PyMem_Free(codes);
    if (!sig || _PyBytes_Resize(&norm, w) < 0) {
        Py_XDECREF(sig);
        Py_XDECREF(norm);
        return NULL;
    }
    PyObject *res = Py_BuildValue("(OON)", PyTuple_GET_ITEM(sig, 0), PyTuple_GET_ITEM(sig, 1), norm);
    Py_DECREF(sig);
    return res;
}

static PyMethodDef methods[] = {
    {"signature", (PyCFunction)(void (*)(void))signature, METH_FASTCALL,
     "signature(tokens, stop_bytes, stop_str, a, c, band_mix, rows, row_mix) -> (query, band keys or None)"},
    {"signature_text", (PyCFunction)(void (*)(void))signature_text, METH_FASTCALL,
     "signature_text(text, stop_bytes, stop_str, a, c, band_mix, rows, row_mix) -> (query, band keys or None, "
     "the exact key's normalised text as bytes), or None if the stop words do not fit its table"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "agen.gen._minhash",
                                    "A question's near-duplicate signature (agen.gen.dedup) in C.", -1, methods};

PyMODINIT_FUNC PyInit__minhash(void) {
    crc_init();
    return PyModule_Create(&module);
}
