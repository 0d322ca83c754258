/* NumPy .npy files, array conversions, and whole-file reading for the io/
   readers. The zip side of .npz is io/npz.c; model files are
   nn/model_files.c. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "chainrule/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph_impl.h"
#include "io_impl.h"

/* ----------------------------------------------------------------- dtypes */

static const char *const descrs[] = {
    [AD_F32] = "<f4", [AD_F64] = "<f8", [AD_I32] = "<i4", [AD_I64] = "<i8",
    [AD_U8] = "|u1",  [AD_I8] = "|i1",  [AD_I16] = "<i2",
};
#define N_DTYPES (sizeof descrs / sizeof descrs[0])

static bool valid_dtype(ad_dtype t) { return (unsigned)t < N_DTYPES; }

const char *io_dtype_descr(ad_dtype dtype) { return valid_dtype(dtype) ? descrs[dtype] : NULL; }

size_t io_dtype_size(ad_dtype dtype) { return ad_dtype_bytes(dtype); }

/* ------------------------------------------------------------ arrays */

const char *io_shape_text(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t used = 0;
    int k = snprintf(buf, size, "(");
    used = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < ndim && used < size; i++) {
        k = snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
        used += k > 0 ? (size_t)k : 0;
    }
    if (used < size)
        snprintf(buf + used, size - used, "%s)", ndim == 1 ? "," : "");
    return buf;
}

size_t io_array_bytes(const io_array *a)
{
    size_t bytes = 0;
    if (!ad_shape_bytes(a->shape, a->ndim, io_dtype_size(a->dtype), &bytes))
        return 0;
    return bytes;
}

void io_array_release(const ad_allocator *mem, io_array *a)
{
    if (!a)
        return;
    ad_free(mem, a->data, io_array_bytes(a));
    a->data = NULL;
    if (a->name && a->name[0])
        ad_strfree(mem, a->name);
    a->name = NULL;
}

int io_check_array(const char *path, const char *what, const io_array *a, ad_error *err)
{
    size_t bytes;
    if (!a)
        return ad_error_set(err, AD_EINVAL, "%s: %s is NULL", path, what);
    if (!valid_dtype(a->dtype))
        return ad_error_set(err, AD_EINVAL, "%s: %s has an unknown dtype %d", path, what,
                            (int)a->dtype);
    if (a->ndim < 0 || a->ndim > AD_MAX_DIMS)
        return ad_error_set(err, AD_EINVAL, "%s: %s has %d axes (0 to %d allowed)", path, what,
                            a->ndim, AD_MAX_DIMS);
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] < 0)
            return ad_error_set(err, AD_EINVAL, "%s: %s has a negative size %lld on axis %d", path,
                                what, (long long)a->shape[i], i);
    if (!ad_shape_bytes(a->shape, a->ndim, ad_dtype_bytes(a->dtype), &bytes))
        return ad_error_set(err, AD_EINVAL, "%s: %s is too large (its size overflows)", path, what);
    if (bytes && !a->data)
        return ad_error_set(err, AD_EINVAL, "%s: %s has NULL data for %zu bytes", path, what,
                            bytes);
    return 0;
}

bool io_emit_le(const io_array *a, io_sink out, void *ctx)
{
    size_t bytes = io_array_bytes(a), esize = ad_dtype_bytes(a->dtype);
    const unsigned char *p = a->data;
    if (ad_host_is_little_endian() || esize == 1)
        return bytes == 0 || out(ctx, p, bytes);
    unsigned char chunk[4096]; /* a multiple of every element size */
    for (size_t done = 0; done < bytes;) {
        size_t len = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
        memcpy(chunk, p + done, len);
        ad_swap_bytes(chunk, len, esize);
        if (!out(ctx, chunk, len))
            return false;
        done += len;
    }
    return true;
}

/* The value of element i of a as a double. */
static double element(const io_array *a, size_t i)
{
    const void *p = a->data;
    switch (a->dtype) {
    case AD_F32:
        return ((const float *)p)[i];
    case AD_F64:
        return ((const double *)p)[i];
    case AD_I32:
        return ((const int32_t *)p)[i];
    case AD_I64:
        return (double)((const int64_t *)p)[i];
    case AD_U8:
        return ((const uint8_t *)p)[i];
    case AD_I8:
        return ((const int8_t *)p)[i];
    case AD_I16:
        return ((const int16_t *)p)[i];
    }
    return 0;
}

int io_array_copy(const io_array *array, ad_dtype dtype, int ndim, const int64_t *shape, void *dst,
                  ad_error *err)
{
    char have[256], want[256];
    if (!array || (!shape && ndim > 0))
        return ad_error_set(err, AD_EINVAL, "io_array_copy: NULL argument");
    if (dtype != AD_F32 && dtype != AD_F64)
        return ad_error_set(err, AD_EINVAL, "io_array_copy: the destination must be F32 or F64");
    if (ndim < 0 || ndim > AD_MAX_DIMS)
        return ad_error_set(err, AD_EINVAL, "io_array_copy: bad ndim %d", ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return ad_error_set(err, AD_EINVAL, "io_array_copy: size %lld of axis %d is negative",
                                (long long)shape[i], i);
    const char *name = array->name ? array->name : "";
    bool same = array->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = array->shape[i] == shape[i];
    if (!same)
        return ad_error_set(err, AD_EMISMATCH, "'%s' has shape %s but %s is expected", name,
                            io_shape_text(have, sizeof have, array->shape, array->ndim),
                            io_shape_text(want, sizeof want, shape, ndim));
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    if (n && !dst)
        return ad_error_set(err, AD_EINVAL, "io_array_copy: NULL destination");
    if (n && array->dtype == dtype)
        memcpy(dst, array->data, n * ad_dtype_bytes(dtype));
    else if (dtype == AD_F32)
        for (size_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)element(array, i);
    else
        for (size_t i = 0; i < n; i++)
            ((double *)dst)[i] = element(array, i);
    return ad_error_ok(err);
}

/* ------------------------------------------------------- files, atomically */

int io_read_file(const ad_allocator *mem, const char *path, unsigned char **data, size_t *len,
                 size_t *size, ad_error *err)
{
    struct stat sb;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    *data = NULL;
    *len = *size = 0;
    FILE *fp = io_fopen_regular(path, err);
    if (!fp)
        return -1;
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        if ((uintmax_t)sb.st_size >= SIZE_MAX) {
            fclose(fp);
            return ad_error_set(err, AD_ENOMEM, "%s is too large to read", path);
        }
        cap = (size_t)sb.st_size + 1; /* + 1 sees end of file in one read */
    }
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? (cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2) : 4096;
            unsigned char *nb = ad_alloc(mem, ncap);
            if (!nb || ncap == cap) {
                ad_free(mem, nb, ncap);
                ad_free(mem, buf, cap);
                fclose(fp);
                return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
            }
            if (n)
                memcpy(nb, buf, n);
            ad_free(mem, buf, cap);
            buf = nb;
            cap = ncap;
        } else if (!buf) {
            buf = ad_alloc(mem, cap);
            if (!buf) {
                fclose(fp);
                return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
            }
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0 || n < cap) {
            if (ferror(fp)) {
                int e = errno;
                ad_free(mem, buf, cap);
                fclose(fp);
                return ad_error_set(err, AD_EIO, "cannot read %s: %s", path, strerror(e));
            }
            if (feof(fp))
                break;
        }
    }
    fclose(fp);
    if (n == 0) {
        ad_free(mem, buf, cap);
        return ad_error_ok(err);
    }
    *data = buf;
    *len = n;
    *size = cap;
    return ad_error_ok(err);
}

/* ------------------------------------------------------------------- .npy */

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64

size_t io_npy_header(const io_array *a, unsigned char *buf, size_t size)
{
    char shape[256], dict[400];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descrs[a->dtype], io_shape_text(shape, sizeof shape, a->shape, a->ndim));
    if (k < 0 || (size_t)k >= sizeof dict)
        return 0;
    size_t dict_len = (size_t)k;
    /* magic (6) + version (2) + length (2) + dict + spaces + '\n' */
    size_t total = 10 + dict_len + 1;
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > size || total - 10 > 0xFFFF)
        return 0;
    size_t hlen = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    ad_store_le(buf + 8, hlen, 2);
    memcpy(buf + 10, dict, dict_len);
    memset(buf + 10 + dict_len, ' ', total - 10 - dict_len - 1);
    buf[total - 1] = '\n';
    return total;
}

typedef struct {
    const io_array *a;
    const unsigned char *header;
    size_t header_len;
} npy_job;

static bool file_sink(void *ctx, const void *bytes, size_t len)
{
    return fwrite(bytes, 1, len, (FILE *)ctx) == len;
}

static bool write_npy(FILE *fp, void *ctx)
{
    const npy_job *job = ctx;
    return file_sink(fp, job->header, job->header_len) && io_emit_le(job->a, file_sink, fp);
}

int io_npy_write(const char *path, const io_array *array, ad_error *err)
{
    unsigned char header[512];
    if (!path)
        return ad_error_set(err, AD_EINVAL, "io_npy_write: path is NULL");
    int st = io_check_array(path, "the array", array, err);
    if (st != 0)
        return st;
    npy_job job = {array, header, io_npy_header(array, header, sizeof header)};
    if (!job.header_len)
        return ad_error_set(err, AD_EINVAL, "%s: the .npy header does not fit", path);
    ad_allocator mem = ad_allocator_of(NULL, NULL);
    return io_write_atomic_with(path, write_npy, &job, mem.fn, mem.ud, err);
}

/* A cursor over the header dict, a Python literal. */
typedef struct {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool accept(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string into buf (truncated to size - 1); false when malformed. */
static bool parse_string(cursor *c, char *buf, size_t size)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || *c->p == '\n')
            return false;
        if (n + 1 < size)
            buf[n++] = *c->p;
        c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    buf[n] = '\0';
    return true;
}

static bool parse_word(cursor *c, const char *word)
{
    size_t len = strlen(word);
    skip_space(c);
    if ((size_t)(c->end - c->p) < len || memcmp(c->p, word, len) != 0)
        return false;
    c->p += len;
    return true;
}

typedef enum { SHAPE_OK, SHAPE_BAD, SHAPE_TOO_MANY } shape_result;

static shape_result parse_shape(cursor *c, int64_t *shape, int *ndim)
{
    *ndim = 0;
    if (!accept(c, '('))
        return SHAPE_BAD;
    for (;;) {
        if (accept(c, ')'))
            return SHAPE_OK;
        skip_space(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return SHAPE_BAD;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            int d = *c->p - '0';
            if (v > (INT64_MAX - d) / 10)
                return SHAPE_BAD;
            v = v * 10 + d;
            c->p++;
        }
        if (c->p < c->end && *c->p == 'L') /* Python 2 longs */
            c->p++;
        if (*ndim == AD_MAX_DIMS)
            return SHAPE_TOO_MANY;
        shape[(*ndim)++] = v;
        if (accept(c, ','))
            continue;
        if (accept(c, ')'))
            return *ndim == 1 ? SHAPE_BAD : SHAPE_OK; /* (3) is not a tuple */
        return SHAPE_BAD;
    }
}

static int check_descr(const char *what, const char *descr, ad_dtype *dtype, ad_error *err)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(descr, descrs[i]) == 0) {
            *dtype = (ad_dtype)i;
            return 0;
        }
    if (strcmp(descr, "<u1") == 0 || strcmp(descr, "u1") == 0) {
        *dtype = AD_U8;
        return 0;
    }
    if (strcmp(descr, "<i1") == 0 || strcmp(descr, "i1") == 0) {
        *dtype = AD_I8;
        return 0;
    }
    if (descr[0] == '>' && descr[1] != '\0' && descr[2] != '1')
        return ad_error_set(
            err, AD_EUNSUPPORTED,
            "%s: big-endian data ('%s') is not supported; save a.astype('<%s') instead", what,
            descr, descr + 1);
    if (strchr(descr, 'O'))
        return ad_error_set(err, AD_EUNSUPPORTED,
                            "%s: object arrays ('%s') cannot be read; save a numeric array", what,
                            descr);
    return ad_error_set(
        err, AD_EUNSUPPORTED,
        "%s: unsupported dtype '%s' (chainrule reads <f4, <f8, <i4, <i8, |u1, |i1 and <i2)", what,
        descr);
}

/* Parses the header dict into dtype, fortran order and shape. */
static int parse_dict(const char *what, const char *text, size_t len, ad_dtype *dtype,
                      int64_t *shape, int *ndim, ad_error *err)
{
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    char key[32], descr[32];
    if (!accept(&c, '{'))
        return ad_error_set(err, AD_EFORMAT, "%s: bad header: not a dict ('{' expected)", what);
    while (!accept(&c, '}')) {
        if (!parse_string(&c, key, sizeof key))
            return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: a quoted key expected",
                                what);
        if (!accept(&c, ':'))
            return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: ':' expected after '%s'",
                                what, key);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_space(&c);
            if (c.p < c.end && *c.p == '[')
                return ad_error_set(err, AD_EUNSUPPORTED,
                                    "%s: structured arrays (a list descr) are not supported", what);
            if (!parse_string(&c, descr, sizeof descr))
                return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: 'descr' is not a string",
                                    what);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (parse_word(&c, "True"))
                fortran = true;
            else if (!parse_word(&c, "False"))
                return ad_error_set(err, AD_EFORMAT,
                                    "%s: bad header dict: 'fortran_order' is not True or False",
                                    what);
            have_order = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            shape_result r = parse_shape(&c, shape, ndim);
            if (r == SHAPE_TOO_MANY)
                return ad_error_set(err, AD_EUNSUPPORTED, "%s: more than %d axes", what,
                                    AD_MAX_DIMS);
            if (r != SHAPE_OK)
                return ad_error_set(err, AD_EFORMAT,
                                    "%s: bad header dict: 'shape' is not a tuple of integers",
                                    what);
            have_shape = true;
        } else if (strcmp(key, "descr") == 0 || strcmp(key, "fortran_order") == 0 ||
                   strcmp(key, "shape") == 0) {
            return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: key '%s' repeated", what,
                                key);
        } else {
            return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: unknown key '%s'", what,
                                key);
        }
        if (!accept(&c, ',')) {
            if (accept(&c, '}'))
                break;
            return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: ',' or '}' expected", what);
        }
    }
    skip_space(&c);
    if (c.p != c.end)
        return ad_error_set(err, AD_EFORMAT, "%s: bad header: text after the dict", what);
    if (!have_descr || !have_order || !have_shape)
        return ad_error_set(err, AD_EFORMAT, "%s: bad header dict: no '%s' key", what,
                            !have_descr   ? "descr"
                            : !have_order ? "fortran_order"
                                          : "shape");
    int st = check_descr(what, descr, dtype, err);
    if (st != 0)
        return st;
    if (fortran)
        return ad_error_set(err, AD_EUNSUPPORTED,
                            "%s: Fortran-order arrays are not supported; save "
                            "np.ascontiguousarray(a) instead",
                            what);
    return 0;
}

int io_npy_parse(const ad_allocator *mem, const unsigned char *p, size_t n, const char *what,
                 io_array *out, ad_error *err)
{
    size_t start, hlen, bytes;
    char shape_text[256];
    if (n < 10 || memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        if (n >= NPY_MAGIC_LEN && memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) == 0)
            return ad_error_set(err, AD_EFORMAT, "%s: truncated .npy header (%zu bytes)", what, n);
        if (n >= 4 && memcmp(p, "PK\x03\x04", 4) == 0)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: not a .npy file but a zip archive (an .npz? use io_npz_read)",
                                what);
        return ad_error_set(err, AD_EFORMAT, "%s: not a .npy file (bad magic, %zu bytes)", what, n);
    }
    unsigned major = p[6], minor = p[7];
    if (major == 1 && minor == 0) {
        start = 10;
        hlen = (size_t)ad_load_le(p + 8, 2);
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (n < 12)
            return ad_error_set(err, AD_EFORMAT, "%s: truncated .npy header (%zu bytes)", what, n);
        start = 12;
        hlen = (size_t)ad_load_le(p + 8, 4);
    } else {
        return ad_error_set(err, AD_EUNSUPPORTED,
                            "%s: .npy format version %u.%u is not supported (1.0, 2.0, 3.0 are)",
                            what, major, minor);
    }
    if (hlen > n - start)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: truncated: the header claims %zu bytes but only %zu follow", what,
                            hlen, n - start);
    int st =
        parse_dict(what, (const char *)p + start, hlen, &out->dtype, out->shape, &out->ndim, err);
    if (st != 0)
        return st;
    size_t esize = ad_dtype_bytes(out->dtype), have = n - start - hlen;
    io_shape_text(shape_text, sizeof shape_text, out->shape, out->ndim);
    if (!ad_shape_bytes(out->shape, out->ndim, esize, &bytes))
        return ad_error_set(err, AD_EFORMAT, "%s: shape %s is too large", what, shape_text);
    if (have < bytes)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: truncated: shape %s of '%s' needs %zu data bytes but %zu follow",
                            what, shape_text, descrs[out->dtype], bytes, have);
    if (have > bytes)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: %zu bytes after the data (shape %s of '%s' needs %zu)", what,
                            have - bytes, shape_text, descrs[out->dtype], bytes);
    out->data = NULL;
    if (bytes) {
        unsigned char *data = ad_alloc(mem, bytes);
        if (!data)
            return ad_error_set(err, AD_ENOMEM, "%s: out of memory for %zu bytes", what, bytes);
        memcpy(data, p + start + hlen, bytes);
        if (!ad_host_is_little_endian())
            ad_swap_bytes(data, bytes, esize);
        out->data = data;
    }
    return 0;
}

io_array *io_npy_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_allocator mem = ad_allocator_of(alloc, ud);
    unsigned char *bytes = NULL;
    size_t len = 0, size = 0;
    if (!path) {
        ad_error_set(err, AD_EINVAL, "io_npy_read: path is NULL");
        return NULL;
    }
    if (io_read_file(&mem, path, &bytes, &len, &size, err) != 0)
        return NULL;
    io_owned_array *a = ad_alloc(&mem, sizeof *a);
    if (!a) {
        ad_free(&mem, bytes, size);
        ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
        return NULL;
    }
    memset(a, 0, sizeof *a);
    a->mem = mem;
    a->pub.name = "";
    int st = io_npy_parse(&mem, bytes ? bytes : (const unsigned char *)"", len, path, &a->pub, err);
    ad_free(&mem, bytes, size);
    if (st != 0) {
        ad_free(&mem, a, sizeof *a);
        return NULL;
    }
    ad_error_ok(err);
    return &a->pub;
}

io_array *io_npy_read(const char *path, ad_error *err)
{
    return io_npy_read_with(path, NULL, NULL, err);
}

void io_array_free(io_array *array)
{
    if (!array)
        return;
    io_owned_array *a = (io_owned_array *)array;
    ad_allocator mem = a->mem;
    io_array_release(&mem, array);
    ad_free(&mem, a, sizeof *a);
}

/* ------------------------------------------------------------------ nodes */

static ad_dtype graph_dtype(const ad_node *node)
{
    return ad_graph_dtype(ad_node_graph(node)) == AD_F32 ? AD_F32 : AD_F64;
}

int io_npy_write_node(const char *path, const ad_node *node, ad_error *err)
{
    if (!path || !node)
        return ad_error_set(err, AD_EINVAL, "io_npy_write_node: NULL argument");
    io_array a = {.name = ad_node_name(node), .dtype = graph_dtype(node), .ndim = ad_ndim(node)};
    const int64_t *shape = ad_shape(node);
    for (int i = 0; i < a.ndim && i < AD_MAX_DIMS; i++)
        a.shape[i] = shape[i];
    /* ad_data only reads through the pointer here */
    a.data = ad_data((ad_node *)(uintptr_t)node);
    return io_npy_write(path, &a, err);
}

int io_npy_read_node(const char *path, ad_node *node, ad_error *err)
{
    io_array *a = NULL;
    int64_t shape[AD_MAX_DIMS];
    char what[64];
    if (!path || !node)
        return ad_error_set(err, AD_EINVAL, "io_npy_read_node: NULL argument");
    if (ad_node_ninputs(node) != 0)
        return ad_error_set(err, AD_EINVAL, "%s: node '%s' is not a leaf", path,
                            ad_node_name(node));
    int ndim = ad_ndim(node);
    for (int i = 0; i < ndim && i < AD_MAX_DIMS; i++)
        shape[i] = ad_shape(node)[i];
    ad_dtype dt = graph_dtype(node);
    size_t n = (size_t)ad_numel(node);
    size_t bytes = n * io_dtype_size(dt);
    const ad_graph *g = ad_node_graph(node);
    ad_allocator mem = ad_allocator_of(g->alloc, g->ud);
    a = io_npy_read_with(path, mem.fn, mem.ud, err);
    if (!a)
        return -1;
    void *buf = ad_alloc(&mem, bytes);
    if (bytes && !buf) {
        io_array_free(a);
        return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
    }
    snprintf(what, sizeof what, "%s", ad_node_name(node));
    a->name = what; /* for the message; the array's name is the static "" */
    int st = io_array_copy(a, dt, ndim, shape, buf, err);
    a->name = "";
    if (st != 0 && err && err->code == AD_EMISMATCH) {
        char msg[sizeof err->message];
        snprintf(msg, sizeof msg, "%s", err->message);
        ad_error_set(err, AD_EMISMATCH, "%s: node %s", path, msg);
    }
    if (st == 0) {
        int rc = dt == AD_F32 ? ad_set_f32(node, buf, (int64_t)n) : ad_set(node, buf, (int64_t)n);
        if (rc != 0)
            st = ad_error_set(err, AD_EINVAL, "%s: cannot set node '%s'", path, ad_node_name(node));
        else
            ad_error_ok(err);
    }
    ad_free(&mem, buf, bytes);
    io_array_free(a);
    return st;
}
