/* The dedup index's in-RAM buffer of (key -> items) in C: `agen.gen.dedup_store._Buffer` without
 * its Python dict and int objects.
 *
 * Every kept question adds 33 keys (32 LSH bands, one exact hash) and every check looks 33 up, so
 * the buffer is the index's busiest part. As a dict of Python ints (one ~28-byte object a key,
 * spread over the heap) plus arrays, an add of 32 keys took ~13 us and each lookup touched several
 * cache lines; here a key's chain head is one int32 in an open-addressing table (linear probing,
 * at most half full) and the values are three flat arrays, ~24 bytes a value in all.
 *
 * KeyBuffer(width) -- width 4 or 8: the byte width of the keys `arrays()` exports
 *   add(keys: list[int], value)         store `value` under each key
 *   newest(key, limit) -> list[int]     up to `limit` values under `key`, newest first
 *   latest(key) -> int | None           the newest value under `key`
 *   gather(keys, need, out)             for each i with need[i] > 0: newest(keys[i], need[i])
 *                                       appended to `out`, need[i] lowered by as many
 *   arrays() -> (keys bytes, vals bytes)  every stored (key, value), in insertion order
 *   nbytes() -> int, len()
 *
 * sorted_gather(keys, vals, query, need, out) and sorted_latest(keys, vals, key) answer the same
 * questions of a `MultiMap`'s sorted in-RAM run (numpy arrays) with one binary search a key, where
 * numpy took six calls (searchsorted twice, take, ==, flatnonzero, tolist) for 32 keys;
 * files_gather(runs, query, need, out, block) does it for the index's files (a fence search and
 * one pread a key and file), where numpy took a dozen calls and Python a loop over the hits.
 *
 * It behaves exactly as `_Buffer` (tests/test_dedup_store.py holds the two equal), including
 * a key repeated within one `add`: each repeat is stored (the merge sees all of them) but only
 * the last is on the key's chain.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    int width;
    Py_ssize_t n, cap;   /* values stored, room in the arrays */
    uint64_t *keys;
    int32_t *vals, *prev;
    int32_t *table;      /* chain heads (slots), -1 empty */
    Py_ssize_t mask;     /* table size - 1 */
    Py_ssize_t distinct; /* keys in the table */
} KeyBuffer;

static inline Py_ssize_t home(uint64_t key, Py_ssize_t mask) {
    return (Py_ssize_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* the table position holding `key`, or the empty position where it would go */
static inline Py_ssize_t probe(const KeyBuffer *b, uint64_t key) {
    Py_ssize_t i = home(key, b->mask);
    for (;;) {
        int32_t s = b->table[i];
        if (s < 0 || b->keys[s] == key)
            return i;
        i = (i + 1) & b->mask;
    }
}

static int grow_table(KeyBuffer *b) {
    Py_ssize_t size = (b->mask + 1) * 2;
    int32_t *t = PyMem_Malloc(sizeof(int32_t) * size);
    if (!t) {
        PyErr_NoMemory();
        return -1;
    }
    memset(t, 0xFF, sizeof(int32_t) * size);
    int32_t *old = b->table;
    Py_ssize_t old_size = b->mask + 1;
    b->table = t;
    b->mask = size - 1;
    for (Py_ssize_t i = 0; i < old_size; i++) {
        int32_t s = old[i];
        if (s >= 0) {
            Py_ssize_t j = home(b->keys[s], b->mask);
            while (t[j] >= 0)
                j = (j + 1) & b->mask;
            t[j] = s;
        }
    }
    PyMem_Free(old);
    return 0;
}

static int reserve(KeyBuffer *b, Py_ssize_t more) {
    if (b->n + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more)
        cap *= 2;
    if (cap > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "KeyBuffer: too many values");
        return -1;
    }
    uint64_t *k = PyMem_Realloc(b->keys, sizeof(uint64_t) * cap);
    if (!k)
        goto nomem;
    b->keys = k;
    int32_t *v = PyMem_Realloc(b->vals, sizeof(int32_t) * cap);
    if (!v)
        goto nomem;
    b->vals = v;
    int32_t *p = PyMem_Realloc(b->prev, sizeof(int32_t) * cap);
    if (!p)
        goto nomem;
    b->prev = p;
    b->cap = cap;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

static int as_key(PyObject *o, uint64_t *out) {
    unsigned long long k = PyLong_AsUnsignedLongLong(o);
    if (k == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint64_t)k;
    return 0;
}

static int KeyBuffer_init(KeyBuffer *b, PyObject *args, PyObject *kw) {
    int width;
    if (!PyArg_ParseTuple(args, "i", &width))
        return -1;
    if (width != 4 && width != 8) {
        PyErr_SetString(PyExc_ValueError, "KeyBuffer: width must be 4 or 8");
        return -1;
    }
    b->width = width;
    if (!b->table) {
        b->table = PyMem_Malloc(sizeof(int32_t) * 1024);
        if (!b->table) {
            PyErr_NoMemory();
            return -1;
        }
        memset(b->table, 0xFF, sizeof(int32_t) * 1024);
        b->mask = 1023;
    }
    return 0;
}

static void KeyBuffer_dealloc(KeyBuffer *b) {
    PyMem_Free(b->keys);
    PyMem_Free(b->vals);
    PyMem_Free(b->prev);
    PyMem_Free(b->table);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static Py_ssize_t KeyBuffer_len(KeyBuffer *b) { return b->n; }

static PyObject *KeyBuffer_add(KeyBuffer *b, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "add(keys: list[int], value: int)");
        return NULL;
    }
    PyObject *keys = args[0];
    long value = PyLong_AsLong(args[1]);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (value < INT32_MIN || value > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "KeyBuffer.add: value out of int32 range");
        return NULL;
    }
    Py_ssize_t m = PyList_GET_SIZE(keys), slot = b->n;
    if (reserve(b, m) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < m; i++) {  /* every key converts before anything changes */
        if (as_key(PyList_GET_ITEM(keys, i), &b->keys[slot + i]) < 0)
            return NULL;
        if (b->width == 4 && b->keys[slot + i] > UINT32_MAX) {  /* as array('I') refuses it */
            PyErr_SetString(PyExc_OverflowError, "KeyBuffer.add: key out of uint32 range");
            return NULL;
        }
    }
    while ((b->distinct + m) * 2 > b->mask + 1)  /* room for every key being new: no growth below */
        if (grow_table(b) < 0)
            return NULL;
    /* as _Buffer: each slot's prev is its key's head before this add, then the heads move */
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_ssize_t at = probe(b, b->keys[slot + i]);
        int32_t s = b->table[at];
        /* a key repeated within this add: its head is still the one from before the add */
        b->prev[slot + i] = (s >= slot) ? b->prev[s] : s;
        b->vals[slot + i] = (int32_t)value;
        b->distinct += s < 0;
        b->table[at] = (int32_t)(slot + i);
    }
    b->n = slot + m;
    Py_RETURN_NONE;
}

static int append_int(PyObject *out, long v) {
    PyObject *o = PyLong_FromLong(v);
    int r = o ? PyList_Append(out, o) : -1;
    Py_XDECREF(o);
    return r;
}

/* append up to `limit` values under `key` to `out` (newest first); the number appended or -1 */
static Py_ssize_t walk(const KeyBuffer *b, uint64_t key, Py_ssize_t limit, PyObject *out) {
    if (limit <= 0 || !b->n)
        return 0;
    int32_t s = b->table[probe(b, key)];
    Py_ssize_t got = 0;
    while (s >= 0 && got < limit) {
        if (append_int(out, b->vals[s]) < 0)
            return -1;
        got++;
        s = b->prev[s];
    }
    return got;
}

static PyObject *KeyBuffer_newest(KeyBuffer *b, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "newest(key, limit)");
        return NULL;
    }
    uint64_t key;
    if (as_key(args[0], &key) < 0)
        return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    PyObject *out = PyList_New(0);
    if (out && walk(b, key, limit, out) < 0)
        Py_CLEAR(out);
    return out;
}

static PyObject *KeyBuffer_latest(KeyBuffer *b, PyObject *key_obj) {
    uint64_t key;
    if (as_key(key_obj, &key) < 0)
        return NULL;
    int32_t s = b->n ? b->table[probe(b, key)] : -1;
    if (s < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(b->vals[s]);
}

static PyObject *KeyBuffer_gather(KeyBuffer *b, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])
        || PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "gather(keys: list[int], need: list[int] of the same length, out: list)");
        return NULL;
    }
    PyObject *keys = args[0], *need = args[1], *out = args[2];
    if (!b->n)
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        uint64_t key;
        Py_ssize_t want = PyLong_AsSsize_t(PyList_GET_ITEM(need, i));
        if ((want == -1 && PyErr_Occurred()) || as_key(PyList_GET_ITEM(keys, i), &key) < 0)
            return NULL;
        Py_ssize_t got = walk(b, key, want, out);
        if (got < 0)
            return NULL;
        if (got) {
            PyObject *left = PyLong_FromSsize_t(want - got);
            if (!left)
                return NULL;
            PyList_SetItem(need, i, left);  /* steals `left`, drops the old count */
        }
    }
    Py_RETURN_NONE;
}

static PyObject *KeyBuffer_arrays(KeyBuffer *b, PyObject *unused) {
    PyObject *keys = PyBytes_FromStringAndSize(NULL, b->n * b->width);
    if (!keys)
        return NULL;
    char *p = PyBytes_AS_STRING(keys);
    if (b->width == 8) {
        memcpy(p, b->keys, sizeof(uint64_t) * b->n);
    } else {
        for (Py_ssize_t i = 0; i < b->n; i++) {
            uint32_t k = (uint32_t)b->keys[i];
            memcpy(p + 4 * i, &k, 4);
        }
    }
    PyObject *vals = PyBytes_FromStringAndSize((const char *)b->vals, sizeof(int32_t) * b->n);
    if (!vals) {
        Py_DECREF(keys);
        return NULL;
    }
    return Py_BuildValue("(NN)", keys, vals);
}

static PyObject *KeyBuffer_nbytes(KeyBuffer *b, PyObject *unused) {
    return PyLong_FromSsize_t(b->cap * (Py_ssize_t)(sizeof(uint64_t) + 2 * sizeof(int32_t))
                              + (b->mask + 1) * (Py_ssize_t)sizeof(int32_t));
}

static PyMethodDef KeyBuffer_methods[] = {
    {"add", (PyCFunction)(void (*)(void))KeyBuffer_add, METH_FASTCALL, "add(keys, value): store value under each key"},
    {"newest", (PyCFunction)(void (*)(void))KeyBuffer_newest, METH_FASTCALL,
     "newest(key, limit) -> up to limit values under key, newest first"},
    {"latest", (PyCFunction)KeyBuffer_latest, METH_O, "latest(key) -> the newest value under key, or None"},
    {"gather", (PyCFunction)(void (*)(void))KeyBuffer_gather, METH_FASTCALL,
     "gather(keys, need, out): each key's newest need[i] values appended to out, need lowered"},
    {"arrays", (PyCFunction)KeyBuffer_arrays, METH_NOARGS, "arrays() -> (keys, values) as bytes, insertion order"},
    {"nbytes", (PyCFunction)KeyBuffer_nbytes, METH_NOARGS, "bytes held"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods KeyBuffer_seq = {.sq_length = (lenfunc)KeyBuffer_len};

static PyTypeObject KeyBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "agen.gen._keybuf.KeyBuffer",
    .tp_basicsize = sizeof(KeyBuffer),
    .tp_dealloc = (destructor)KeyBuffer_dealloc,
    .tp_as_sequence = &KeyBuffer_seq,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "KeyBuffer(width): an append-only key -> values multimap (the dedup index's buffer)",
    .tp_methods = KeyBuffer_methods,
    .tp_init = (initproc)KeyBuffer_init,
    .tp_new = PyType_GenericNew,
};


/* ---- a sorted run (numpy arrays of keys, uint32 or uint64, and int32 values): lookups without numpy calls */

typedef struct {
    Py_buffer keys, vals;
    Py_ssize_t n;
    int width;
} Run;

/* the keys alone (a file's fence): uint32 or uint64 */
static int keys_open(Run *r, PyObject *keys) {
    if (PyObject_GetBuffer(keys, &r->keys, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    r->width = (int)r->keys.itemsize;
    r->n = r->keys.len / (r->width ? r->width : 1);
    if (r->width != 4 && r->width != 8) {
        PyBuffer_Release(&r->keys);
        PyErr_SetString(PyExc_ValueError, "sorted keys are uint32 or uint64");
        return -1;
    }
    return 0;
}

static int run_open(Run *r, PyObject *keys, PyObject *vals) {
    if (keys_open(r, keys) < 0)
        return -1;
    if (PyObject_GetBuffer(vals, &r->vals, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&r->keys);
        return -1;
    }
    if (r->vals.itemsize != 4 || r->vals.len != 4 * r->n) {
        PyBuffer_Release(&r->keys);
        PyBuffer_Release(&r->vals);
        PyErr_SetString(PyExc_ValueError, "a sorted run is uint32 or uint64 keys and as many int32 values");
        return -1;
    }
    return 0;
}

static void run_close(Run *r) {
    PyBuffer_Release(&r->keys);
    PyBuffer_Release(&r->vals);
}

static inline uint64_t run_key(const Run *r, Py_ssize_t i) {
    return r->width == 4 ? ((const uint32_t *)r->keys.buf)[i] : ((const uint64_t *)r->keys.buf)[i];
}

/* first position in [lo, hi) whose key is > key (upper) or >= key (lower) */
static Py_ssize_t run_bound(const Run *r, uint64_t key, Py_ssize_t lo, Py_ssize_t hi, int upper) {
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        uint64_t k = run_key(r, mid);
        if (upper ? k <= key : k < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static PyObject *sorted_gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[2]) || !PyList_Check(args[3]) || !PyList_Check(args[4])
        || PyList_GET_SIZE(args[2]) != PyList_GET_SIZE(args[3])) {
        PyErr_SetString(PyExc_TypeError, "sorted_gather(keys, vals, query: list[int], need: list[int], out: list)");
        return NULL;
    }
    Run r;
    if (run_open(&r, args[0], args[1]) < 0)
        return NULL;
    PyObject *query = args[2], *need = args[3], *out = args[4];
    const int32_t *vals = r.vals.buf;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(query); i++) {
        Py_ssize_t want = PyLong_AsSsize_t(PyList_GET_ITEM(need, i));
        if (want == -1 && PyErr_Occurred())
            goto fail;
        if (want <= 0)
            continue;
        uint64_t key;
        if (as_key(PyList_GET_ITEM(query, i), &key) < 0)
            goto fail;
        Py_ssize_t lo = run_bound(&r, key, 0, r.n, 0);
        if (lo == r.n || run_key(&r, lo) != key)
            continue;
        Py_ssize_t hi = run_bound(&r, key, lo, r.n, 1);
        Py_ssize_t start = hi - want > lo ? hi - want : lo;
        for (Py_ssize_t j = start; j < hi; j++) {  /* oldest first, as a slice of the run gives them */
            if (append_int(out, vals[j]) < 0)
                goto fail;
        }
        PyObject *left = PyLong_FromSsize_t(want - (hi - start));
        if (!left)
            goto fail;
        PyList_SetItem(need, i, left);
    }
    run_close(&r);
    Py_RETURN_NONE;
fail:
    run_close(&r);
    return NULL;
}

static PyObject *sorted_latest(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "sorted_latest(keys, vals, key)");
        return NULL;
    }
    uint64_t key;
    if (as_key(args[2], &key) < 0)
        return NULL;
    Run r;
    if (run_open(&r, args[0], args[1]) < 0)
        return NULL;
    Py_ssize_t hi = run_bound(&r, key, 0, r.n, 1);
    PyObject *res = (hi > 0 && run_key(&r, hi - 1) == key) ? PyLong_FromLong(((const int32_t *)r.vals.buf)[hi - 1])
                                                            : Py_NewRef(Py_None);
    run_close(&r);
    return res;
}


/* files_gather(runs, query, need, out, block) -> preads made: `dedup_store._get_files` in one call. `runs` lists
 * (fence, n, fd) oldest file first: fence is every `block`-th key of a file of n packed records
 * (key of the fence's width, then an int32 value). Each query key's window in each file is found
 * in the fence and read with one pread; hits are taken newest file first, newest record first, up
 * to need[i] for key i. */
static PyObject *files_gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])
        || !PyList_Check(args[3]) || PyList_GET_SIZE(args[1]) != PyList_GET_SIZE(args[2])) {
        PyErr_SetString(PyExc_TypeError, "files_gather(runs: list, query: list[int], need: list[int], out: list, block)");
        return NULL;
    }
    PyObject *runs = args[0], *query = args[1], *need = args[2], *out = args[3];
    Py_ssize_t block = PyLong_AsSsize_t(args[4]);
    if (block == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t nk = PyList_GET_SIZE(query), limit = 0, reads = 0;
    uint64_t *keys = PyMem_Malloc(sizeof(uint64_t) * (nk ? nk : 1));
    Py_ssize_t *want = PyMem_Malloc(sizeof(Py_ssize_t) * (nk ? nk : 1));
    char *buf = NULL;
    Py_ssize_t cap = 0;
    if (!keys || !want) {
        PyMem_Free(keys);
        PyMem_Free(want);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        want[i] = PyLong_AsSsize_t(PyList_GET_ITEM(need, i));
        if ((want[i] == -1 && PyErr_Occurred()) || as_key(PyList_GET_ITEM(query, i), &keys[i]) < 0)
            goto fail;
        if (want[i] > limit)
            limit = want[i];
    }
    for (Py_ssize_t r = PyList_GET_SIZE(runs) - 1; r >= 0; r--) {  /* newest file first */
        PyObject *t = PyList_GET_ITEM(runs, r);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
            PyErr_SetString(PyExc_TypeError, "files_gather: a run is (fence, n, fd)");
            goto fail;
        }
        Py_ssize_t n = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
        long fd = PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
        if (PyErr_Occurred())
            goto fail;
        Run fence;  /* only its keys: the fence */
        if (keys_open(&fence, PyTuple_GET_ITEM(t, 0)) < 0)
            goto fail;
        Py_ssize_t rec = fence.width + 4;
        for (Py_ssize_t i = nk - 1; i >= 0; i--) {  /* as the Python path walks back: last key first */
            if (want[i] <= 0)
                continue;
            Py_ssize_t a = run_bound(&fence, keys[i], 0, fence.n, 0), b = run_bound(&fence, keys[i], a, fence.n, 1);
            if (b == 0)
                continue;
            Py_ssize_t end = b * block < n ? b * block : n;
            Py_ssize_t start = (a > 1 ? a - 1 : 0) * block;
            if (start < end - block - limit)
                start = end - block - limit;
            if (end <= start)
                continue;
            Py_ssize_t bytes = (end - start) * rec;
            if (bytes > cap) {
                PyMem_Free(buf);
                cap = bytes;
                buf = PyMem_Malloc(cap);
                if (!buf) {
                    PyBuffer_Release(&fence.keys);
                    PyErr_NoMemory();
                    goto fail;
                }
            }
            ssize_t got;
            Py_BEGIN_ALLOW_THREADS
            got = pread((int)fd, buf, bytes, (off_t)(start * rec));
            Py_END_ALLOW_THREADS
            reads++;
            if (got != bytes) {
                PyBuffer_Release(&fence.keys);
                if (got < 0)
                    PyErr_SetFromErrno(PyExc_OSError);
                else
                    PyErr_SetString(PyExc_OSError, "files_gather: short read of a dedup index file");
                goto fail;
            }
            for (Py_ssize_t j = end - start - 1; j >= 0 && want[i] > 0; j--) {  /* newest record first */
                const char *p = buf + j * rec;
                uint64_t k;
                if (fence.width == 4) {
                    uint32_t k32;
                    memcpy(&k32, p, 4);
                    k = k32;
                } else {
                    memcpy(&k, p, 8);
                }
                if (k != keys[i])
                    continue;
                int32_t v;
                memcpy(&v, p + fence.width, 4);
                if (append_int(out, v) < 0) {
                    PyBuffer_Release(&fence.keys);
                    goto fail;
                }
                want[i]--;
            }
        }
        PyBuffer_Release(&fence.keys);
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *left = PyLong_FromSsize_t(want[i]);
        if (!left)
            goto fail;
        PyList_SetItem(need, i, left);
    }
    PyMem_Free(keys);
    PyMem_Free(want);
    PyMem_Free(buf);
    return PyLong_FromSsize_t(reads);
fail:
    PyMem_Free(keys);
    PyMem_Free(want);
    PyMem_Free(buf);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"sorted_gather", (PyCFunction)(void (*)(void))sorted_gather, METH_FASTCALL,
     "sorted_gather(keys, vals, query, need, out): each query key's last need[i] values in a sorted run "
     "appended to out (oldest first), need lowered"},
    {"files_gather", (PyCFunction)(void (*)(void))files_gather, METH_FASTCALL,
     "files_gather(runs, query, need, out, block) -> preads: the newest need[i] values of each key in the index's "
     "files, newest file first (runs: (fence, n, fd), oldest first)"},
    {"sorted_latest", (PyCFunction)(void (*)(void))sorted_latest, METH_FASTCALL,
     "sorted_latest(keys, vals, key) -> the last value under key in a sorted run, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "agen.gen._keybuf",
                                    "The dedup index's in-RAM key buffer and sorted-run lookups (agen.gen.dedup_store) in C.",
                                    -1, module_methods};

PyMODINIT_FUNC PyInit__keybuf(void) {
    if (PyType_Ready(&KeyBufferType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&KeyBufferType);
    if (PyModule_AddObject(m, "KeyBuffer", (PyObject *)&KeyBufferType) < 0) {
        Py_DECREF(&KeyBufferType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
