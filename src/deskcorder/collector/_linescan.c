/*
 * deskcorder.collector._linescan: the collector's record-line check in one
 * pass, without the GIL.
 *
 * Every chunk PUT decompresses to ~0.5 MB of JSON lines, and the collector
 * must refuse a chunk unless every line looks like a JSON object ("{" ... "}")
 * and no line is longer than the limit. Done with numpy this took seven array
 * passes and seven GIL hand-offs per block; done here it is one walk over the
 * newlines with the C library's memchr (SIMD on glibc, macOS and the MSVC
 * runtime), which costs ~50 us for 0.5 MB, with the GIL released.
 *
 * The same call says whether a needle (the screenshot kind, '"shot"') occurs
 * in the block, so the collector knows whether to parse lines for blob
 * references. validate.py holds the pure-Python version of both checks; the
 * tests hold the two to the same answers. The build is optional: without a
 * C compiler deskcorder installs and uses the Python version.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum { SCAN_OK = 0, SCAN_NOT_OBJECT = 1, SCAN_TOO_LONG = 2 };

/* Walk the lines of p[0:n]. On success *lines is the line count; on failure
 * *lines is the 1-based number of the first bad line. */
static int
scan_lines(const char *p, Py_ssize_t n, Py_ssize_t max_line, Py_ssize_t *lines)
{
    const char *s = p, *end = p + n;
    Py_ssize_t count = 0;

    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        count++;
        *lines = count;
        if (nl == NULL) /* the last line is not finished */
            return (end - s > max_line) ? SCAN_TOO_LONG : SCAN_NOT_OBJECT;
        if (nl - s > max_line)
            return SCAN_TOO_LONG;
        if (nl - s < 2 || s[0] != '{' || nl[-1] != '}')
            return SCAN_NOT_OBJECT;
        s = nl + 1;
    }
    *lines = count;
    return count ? SCAN_OK : SCAN_NOT_OBJECT; /* an empty block has no record */
}

/* Horspool's search: skips ahead by the last byte of each window. Used when the
 * memchr anchor keeps hitting bytes that do not begin a match. */
static int
horspool(const char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m)
{
    Py_ssize_t skip[256], i, pos;
    const unsigned char *h = (const unsigned char *)hay, *k = (const unsigned char *)needle;

    for (i = 0; i < 256; i++)
        skip[i] = m;
    for (i = 0; i < m - 1; i++)
        skip[k[i]] = m - 1 - i;
    for (pos = 0; pos <= n - m; pos += skip[h[pos + m - 1]]) {
        if (h[pos + m - 1] == k[m - 1] && memcmp(h + pos, k, (size_t)(m - 1)) == 0)
            return 1;
    }
    return 0;
}

/* Whether needle occurs in hay: memchr for the needle's middle byte (rarer in
 * JSON than its quotes), then compare around it. Text dense in that byte
 * (crafted, or a run of it) would make this one memchr call per byte, ~5 ms
 * per MB; after many misses the rest is searched with Horspool instead
 * (~1 ms per MB at worst for a 6-byte needle). */
static int
contains(const char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m)
{
    Py_ssize_t mid = m / 2, misses = 0;
    const char *s, *end, *hit;

    if (m == 0)
        return 1;
    if (m > n)
        return 0;
    s = hay + mid;
    end = hay + n - (m - mid) + 1; /* last place the middle byte can sit, plus one */
    while (s < end) {
        hit = memchr(s, (unsigned char)needle[mid], (size_t)(end - s));
        if (hit == NULL)
            return 0;
        if (memcmp(hit - mid, needle, (size_t)m) == 0)
            return 1;
        s = hit + 1;
        /* every match starting before s - mid has been ruled out */
        if (++misses > 64 && misses > (s - hay) / 32)
            return horspool(s - mid, n - (s - mid - hay), needle, m);
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan(block, max_line, needle, /) -> (status, lines, found)\n"
"\n"
"Check that every line of block (bytes-like) is '{...}' terminated by a\n"
"newline and at most max_line bytes long (without its newline).\n"
"status is 0 (all good; lines is the line count), 1 (line number lines is\n"
"not an object, or the block is empty or ends inside a line) or 2 (line\n"
"number lines is longer than max_line). found says whether needle occurs in\n"
"block. Runs without the GIL.");

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer block, needle;
    Py_ssize_t max_line, lines = 0;
    int status, found;

    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan() takes exactly 3 arguments");
        return NULL;
    }
    max_line = PyLong_AsSsize_t(args[1]);
    if (max_line == -1 && PyErr_Occurred())
        return NULL;
    if (max_line < 0) {
        PyErr_SetString(PyExc_ValueError, "max_line must not be negative");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &block, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &needle, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&block);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = scan_lines((const char *)block.buf, block.len, max_line, &lines);
    found = contains((const char *)block.buf, block.len, (const char *)needle.buf, needle.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&needle);
    PyBuffer_Release(&block);
    return Py_BuildValue("(inO)", status, lines, found ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "deskcorder.collector._linescan",
    "The collector's record-line check in C (one pass, GIL released).",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__linescan(void)
{
    return PyModuleDef_Init(&module_def);
}
