/* NumPy .npy files, conversions, and whole models as .npz or safetensors.
   The zip side of .npz is nn/io_zip.c. */
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

#include "chainrule/checkpoint.h"
#include "atomic_write_impl.h"
#include "io_impl.h"

#ifdef CR_HAVE_ZLIB
#include <zlib.h>
#endif

/* ------------------------------------------------------ memory and errors */

static nn_io_alloc_fn g_alloc;
static void *g_alloc_ud;

void nn_io_set_allocator(nn_io_alloc_fn alloc, void *ud)
{
    g_alloc = alloc;
    g_alloc_ud = alloc ? ud : NULL;
}

void *io_alloc(size_t size)
{
    if (size == 0)
        return NULL;
    return g_alloc ? g_alloc(g_alloc_ud, NULL, 0, size) : malloc(size);
}

void io_free(void *p, size_t size)
{
    if (!p)
        return;
    if (g_alloc)
        g_alloc(g_alloc_ud, p, size, 0);
    else
        free(p);
}

char *io_strdup(const char *s, size_t len)
{
    char *copy = io_alloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

void io_strfree(const char *s)
{
    if (s)
        io_free((void *)(uintptr_t)s, strlen(s) + 1);
}

const char *nn_io_status_string(nn_io_status status)
{
    switch (status) {
    case NN_IO_OK:
        return "ok";
    case NN_IO_ENOMEM:
        return "out of memory";
    case NN_IO_EIO:
        return "input/output error";
    case NN_IO_EFORMAT:
        return "invalid file";
    case NN_IO_EUNSUPPORTED:
        return "unsupported file contents";
    case NN_IO_EMISMATCH:
        return "file does not match";
    case NN_IO_EINVAL:
        return "invalid argument";
    }
    return "unknown status";
}

nn_io_status io_ok(nn_io_error *err)
{
    if (err) {
        err->status = NN_IO_OK;
        err->message[0] = '\0';
    }
    return NN_IO_OK;
}

nn_io_status io_fail(nn_io_error *err, nn_io_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ----------------------------------------------------------------- dtypes */

static const struct {
    const char *descr;
    size_t size;
} dtypes[] = {
    [NN_IO_F32] = {"<f4", 4}, [NN_IO_F64] = {"<f8", 8}, [NN_IO_I32] = {"<i4", 4},
    [NN_IO_I64] = {"<i8", 8}, [NN_IO_U8] = {"|u1", 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

static bool valid_dtype(nn_io_dtype t) { return (unsigned)t < N_DTYPES; }

const char *nn_io_dtype_descr(nn_io_dtype dtype)
{
    return valid_dtype(dtype) ? dtypes[dtype].descr : NULL;
}

size_t nn_io_dtype_size(nn_io_dtype dtype) { return valid_dtype(dtype) ? dtypes[dtype].size : 0; }

/* ------------------------------------------------------------ arrays */

const char *io_shape_text(char *buf, size_t size, const size_t *shape, int ndim)
{
    size_t used = 0;
    int k = snprintf(buf, size, "(");
    used = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < ndim && used < size; i++) {
        k = snprintf(buf + used, size - used, "%s%zu", i ? ", " : "", shape[i]);
        used += k > 0 ? (size_t)k : 0;
    }
    if (used < size)
        snprintf(buf + used, size - used, "%s)", ndim == 1 ? "," : "");
    return buf;
}

bool io_shape_bytes(const size_t *shape, int ndim, size_t esize, size_t *bytes)
{
    size_t n = esize;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && n > SIZE_MAX / shape[i])
            return false;
        n *= shape[i];
    }
    *bytes = n;
    return true;
}

size_t io_array_bytes(const nn_io_array *a)
{
    size_t bytes = 0;
    if (!io_shape_bytes(a->shape, a->ndim, nn_io_dtype_size(a->dtype), &bytes))
        return 0;
    return bytes;
}

void io_array_release(nn_io_array *a)
{
    if (!a)
        return;
    io_free((void *)(uintptr_t)a->data, io_array_bytes(a));
    a->data = NULL;
    if (a->name && a->name[0])
        io_strfree(a->name);
    a->name = NULL;
}

nn_io_status io_check_array(const char *path, const char *what, const nn_io_array *a,
                            nn_io_error *err)
{
    size_t bytes;
    if (!a)
        return io_fail(err, NN_IO_EINVAL, "%s: %s is NULL", path, what);
    if (!valid_dtype(a->dtype))
        return io_fail(err, NN_IO_EINVAL, "%s: %s has an unknown dtype %d", path, what,
                       (int)a->dtype);
    if (a->ndim < 0 || a->ndim > NN_IO_MAX_DIMS)
        return io_fail(err, NN_IO_EINVAL, "%s: %s has %d axes (0 to %d allowed)", path, what,
                       a->ndim, NN_IO_MAX_DIMS);
    if (!io_shape_bytes(a->shape, a->ndim, dtypes[a->dtype].size, &bytes))
        return io_fail(err, NN_IO_EINVAL, "%s: %s is too large (its size overflows)", path, what);
    if (bytes && !a->data)
        return io_fail(err, NN_IO_EINVAL, "%s: %s has NULL data for %zu bytes", path, what, bytes);
    return NN_IO_OK;
}

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_bytes(unsigned char *p, size_t bytes, size_t esize)
{
    for (size_t i = 0; esize > 1 && i + esize <= bytes; i += esize)
        for (size_t j = 0; j < esize / 2; j++) {
            unsigned char t = p[i + j];
            p[i + j] = p[i + esize - 1 - j];
            p[i + esize - 1 - j] = t;
        }
}

bool io_emit_le(const nn_io_array *a, io_sink out, void *ctx)
{
    size_t bytes = io_array_bytes(a), esize = dtypes[a->dtype].size;
    const unsigned char *p = a->data;
    if (host_is_little_endian() || esize == 1)
        return bytes == 0 || out(ctx, p, bytes);
    unsigned char chunk[4096]; /* a multiple of every element size */
    for (size_t done = 0; done < bytes;) {
        size_t len = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
        memcpy(chunk, p + done, len);
        swap_bytes(chunk, len, esize);
        if (!out(ctx, chunk, len))
            return false;
        done += len;
    }
    return true;
}

/* The value of element i of a as a double. */
static double element(const nn_io_array *a, size_t i)
{
    const void *p = a->data;
    switch (a->dtype) {
    case NN_IO_F32:
        return ((const float *)p)[i];
    case NN_IO_F64:
        return ((const double *)p)[i];
    case NN_IO_I32:
        return ((const int32_t *)p)[i];
    case NN_IO_I64:
        return (double)((const int64_t *)p)[i];
    case NN_IO_U8:
        return ((const uint8_t *)p)[i];
    }
    return 0;
}

nn_io_status nn_io_array_copy(const nn_io_array *array, nn_io_dtype dtype, int ndim,
                              const size_t *shape, void *dst, nn_io_error *err)
{
    char have[256], want[256];
    if (!array || (!shape && ndim > 0))
        return io_fail(err, NN_IO_EINVAL, "nn_io_array_copy: NULL argument");
    if (dtype != NN_IO_F32 && dtype != NN_IO_F64)
        return io_fail(err, NN_IO_EINVAL, "nn_io_array_copy: the destination must be F32 or F64");
    if (ndim < 0 || ndim > NN_IO_MAX_DIMS)
        return io_fail(err, NN_IO_EINVAL, "nn_io_array_copy: bad ndim %d", ndim);
    const char *name = array->name ? array->name : "";
    bool same = array->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = array->shape[i] == shape[i];
    if (!same)
        return io_fail(err, NN_IO_EMISMATCH, "'%s' has shape %s but %s is expected", name,
                       io_shape_text(have, sizeof have, array->shape, array->ndim),
                       io_shape_text(want, sizeof want, shape, ndim));
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    if (n && !dst)
        return io_fail(err, NN_IO_EINVAL, "nn_io_array_copy: NULL destination");
    if (n && array->dtype == dtype)
        memcpy(dst, array->data, n * dtypes[dtype].size);
    else if (dtype == NN_IO_F32)
        for (size_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)element(array, i);
    else
        for (size_t i = 0; i < n; i++)
            ((double *)dst)[i] = element(array, i);
    return io_ok(err);
}

/* ------------------------------------------------------- files, atomically */

nn_io_status io_write_atomic(const char *path, io_writer write, void *ctx, nn_io_error *err)
{
    char msg[NN_IO_ERROR_MAX];
    switch (cr_write_atomic(path, write, ctx, io_alloc, io_free, msg, sizeof msg)) {
    case CR_WRITE_OK:
        return io_ok(err);
    case CR_WRITE_ENOMEM:
        return io_fail(err, NN_IO_ENOMEM, "%s", msg);
    default:
        return io_fail(err, NN_IO_EIO, "%s", msg);
    }
}

nn_io_status io_read_file(const char *path, unsigned char **data, size_t *len, size_t *size,
                          nn_io_error *err)
{
    struct stat sb;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    *data = NULL;
    *len = *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return io_fail(err, NN_IO_EIO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(fp);
        return io_fail(err, NN_IO_EIO, "cannot read %s: it is a directory", path);
    }
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        if ((uintmax_t)sb.st_size >= SIZE_MAX) {
            fclose(fp);
            return io_fail(err, NN_IO_ENOMEM, "%s is too large to read", path);
        }
        cap = (size_t)sb.st_size + 1; /* + 1 sees end of file in one read */
    }
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? (cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2) : 4096;
            unsigned char *nb = io_alloc(ncap);
            if (!nb || ncap == cap) {
                io_free(nb, ncap);
                io_free(buf, cap);
                fclose(fp);
                return io_fail(err, NN_IO_ENOMEM, "out of memory reading %s", path);
            }
            if (n)
                memcpy(nb, buf, n);
            io_free(buf, cap);
            buf = nb;
            cap = ncap;
        } else if (!buf) {
            buf = io_alloc(cap);
            if (!buf) {
                fclose(fp);
                return io_fail(err, NN_IO_ENOMEM, "out of memory reading %s", path);
            }
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0 || n < cap) {
            if (ferror(fp)) {
                int e = errno;
                io_free(buf, cap);
                fclose(fp);
                return io_fail(err, NN_IO_EIO, "cannot read %s: %s", path, strerror(e));
            }
            if (feof(fp))
                break;
        }
    }
    fclose(fp);
    if (n == 0) {
        io_free(buf, cap);
        return io_ok(err);
    }
    *data = buf;
    *len = n;
    *size = cap;
    return io_ok(err);
}

/* ---------------------------------------------------------------- CRC-32 */

uint32_t io_crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
#ifdef CR_HAVE_ZLIB
    while (len > 0) {
        uInt chunk = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return crc;
#else
    /* half-byte table of the reflected polynomial 0xEDB88320 */
    static const uint32_t nibble[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
                                        0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
                                        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 15];
        crc = (crc >> 4) ^ nibble[crc & 15];
    }
    return ~crc;
#endif
}

/* ------------------------------------------------------------------- .npy */

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64

size_t io_npy_header(const nn_io_array *a, unsigned char *buf, size_t size)
{
    char shape[256], dict[400];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     dtypes[a->dtype].descr, io_shape_text(shape, sizeof shape, a->shape, a->ndim));
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
    buf[8] = (unsigned char)(hlen & 0xFF);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, dict_len);
    memset(buf + 10 + dict_len, ' ', total - 10 - dict_len - 1);
    buf[total - 1] = '\n';
    return total;
}

typedef struct {
    const nn_io_array *a;
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

nn_io_status nn_npy_write(const char *path, const nn_io_array *array, nn_io_error *err)
{
    unsigned char header[512];
    if (!path)
        return io_fail(err, NN_IO_EINVAL, "nn_npy_write: path is NULL");
    nn_io_status st = io_check_array(path, "the array", array, err);
    if (st != NN_IO_OK)
        return st;
    npy_job job = {array, header, io_npy_header(array, header, sizeof header)};
    if (!job.header_len)
        return io_fail(err, NN_IO_EINVAL, "%s: the .npy header does not fit", path);
    return io_write_atomic(path, write_npy, &job, err);
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

static shape_result parse_shape(cursor *c, size_t *shape, int *ndim)
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
        size_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            unsigned d = (unsigned)(*c->p - '0');
            if (v > (SIZE_MAX - d) / 10)
                return SHAPE_BAD;
            v = v * 10 + d;
            c->p++;
        }
        if (c->p < c->end && *c->p == 'L') /* Python 2 longs */
            c->p++;
        if (*ndim == NN_IO_MAX_DIMS)
            return SHAPE_TOO_MANY;
        shape[(*ndim)++] = v;
        if (accept(c, ','))
            continue;
        if (accept(c, ')'))
            return *ndim == 1 ? SHAPE_BAD : SHAPE_OK; /* (3) is not a tuple */
        return SHAPE_BAD;
    }
}

static nn_io_status check_descr(const char *what, const char *descr, nn_io_dtype *dtype,
                                nn_io_error *err)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(descr, dtypes[i].descr) == 0) {
            *dtype = (nn_io_dtype)i;
            return NN_IO_OK;
        }
    if (strcmp(descr, "<u1") == 0 || strcmp(descr, "u1") == 0) {
        *dtype = NN_IO_U8;
        return NN_IO_OK;
    }
    if (descr[0] == '>' && descr[1] != '\0' && descr[2] != '1')
        return io_fail(err, NN_IO_EUNSUPPORTED,
                       "%s: big-endian data ('%s') is not supported; save a.astype('<%s') instead",
                       what, descr, descr + 1);
    if (strchr(descr, 'O'))
        return io_fail(err, NN_IO_EUNSUPPORTED,
                       "%s: object arrays ('%s') cannot be read; save a numeric array", what,
                       descr);
    return io_fail(err, NN_IO_EUNSUPPORTED,
                   "%s: unsupported dtype '%s' (chainrule reads <f4, <f8, <i4, <i8 and |u1)", what,
                   descr);
}

/* Parses the header dict into dtype, fortran order and shape. */
static nn_io_status parse_dict(const char *what, const char *text, size_t len, nn_io_dtype *dtype,
                               size_t *shape, int *ndim, nn_io_error *err)
{
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    char key[32], descr[32];
    if (!accept(&c, '{'))
        return io_fail(err, NN_IO_EFORMAT, "%s: bad header: not a dict ('{' expected)", what);
    while (!accept(&c, '}')) {
        if (!parse_string(&c, key, sizeof key))
            return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: a quoted key expected", what);
        if (!accept(&c, ':'))
            return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: ':' expected after '%s'", what,
                           key);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_space(&c);
            if (c.p < c.end && *c.p == '[')
                return io_fail(err, NN_IO_EUNSUPPORTED,
                               "%s: structured arrays (a list descr) are not supported", what);
            if (!parse_string(&c, descr, sizeof descr))
                return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: 'descr' is not a string",
                               what);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (parse_word(&c, "True"))
                fortran = true;
            else if (!parse_word(&c, "False"))
                return io_fail(err, NN_IO_EFORMAT,
                               "%s: bad header dict: 'fortran_order' is not True or False", what);
            have_order = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            shape_result r = parse_shape(&c, shape, ndim);
            if (r == SHAPE_TOO_MANY)
                return io_fail(err, NN_IO_EUNSUPPORTED, "%s: more than %d axes", what,
                               NN_IO_MAX_DIMS);
            if (r != SHAPE_OK)
                return io_fail(err, NN_IO_EFORMAT,
                               "%s: bad header dict: 'shape' is not a tuple of integers", what);
            have_shape = true;
        } else if (strcmp(key, "descr") == 0 || strcmp(key, "fortran_order") == 0 ||
                   strcmp(key, "shape") == 0) {
            return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: key '%s' repeated", what, key);
        } else {
            return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: unknown key '%s'", what, key);
        }
        if (!accept(&c, ',')) {
            if (accept(&c, '}'))
                break;
            return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: ',' or '}' expected", what);
        }
    }
    skip_space(&c);
    if (c.p != c.end)
        return io_fail(err, NN_IO_EFORMAT, "%s: bad header: text after the dict", what);
    if (!have_descr || !have_order || !have_shape)
        return io_fail(err, NN_IO_EFORMAT, "%s: bad header dict: no '%s' key", what,
                       !have_descr   ? "descr"
                       : !have_order ? "fortran_order"
                                     : "shape");
    nn_io_status st = check_descr(what, descr, dtype, err);
    if (st != NN_IO_OK)
        return st;
    if (fortran)
        return io_fail(err, NN_IO_EUNSUPPORTED,
                       "%s: Fortran-order arrays are not supported; save "
                       "np.ascontiguousarray(a) instead",
                       what);
    return NN_IO_OK;
}

nn_io_status io_npy_parse(const unsigned char *p, size_t n, const char *what, nn_io_array *out,
                          nn_io_error *err)
{
    size_t start, hlen, bytes;
    char shape_text[256];
    if (n < 10 || memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        if (n >= NPY_MAGIC_LEN && memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) == 0)
            return io_fail(err, NN_IO_EFORMAT, "%s: truncated .npy header (%zu bytes)", what, n);
        if (n >= 4 && memcmp(p, "PK\x03\x04", 4) == 0)
            return io_fail(err, NN_IO_EFORMAT,
                           "%s: not a .npy file but a zip archive (an .npz? use nn_npz_read)",
                           what);
        return io_fail(err, NN_IO_EFORMAT, "%s: not a .npy file (bad magic, %zu bytes)", what, n);
    }
    unsigned major = p[6], minor = p[7];
    if (major == 1 && minor == 0) {
        start = 10;
        hlen = (size_t)p[8] | (size_t)p[9] << 8;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (n < 12)
            return io_fail(err, NN_IO_EFORMAT, "%s: truncated .npy header (%zu bytes)", what, n);
        start = 12;
        hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
    } else {
        return io_fail(err, NN_IO_EUNSUPPORTED,
                       "%s: .npy format version %u.%u is not supported (1.0, 2.0, 3.0 are)", what,
                       major, minor);
    }
    if (hlen > n - start)
        return io_fail(err, NN_IO_EFORMAT,
                       "%s: truncated: the header claims %zu bytes but only %zu follow", what, hlen,
                       n - start);
    nn_io_status st =
        parse_dict(what, (const char *)p + start, hlen, &out->dtype, out->shape, &out->ndim, err);
    if (st != NN_IO_OK)
        return st;
    size_t esize = dtypes[out->dtype].size, have = n - start - hlen;
    io_shape_text(shape_text, sizeof shape_text, out->shape, out->ndim);
    if (!io_shape_bytes(out->shape, out->ndim, esize, &bytes))
        return io_fail(err, NN_IO_EFORMAT, "%s: shape %s is too large", what, shape_text);
    if (have < bytes)
        return io_fail(err, NN_IO_EFORMAT,
                       "%s: truncated: shape %s of '%s' needs %zu data bytes but %zu follow", what,
                       shape_text, dtypes[out->dtype].descr, bytes, have);
    if (have > bytes)
        return io_fail(err, NN_IO_EFORMAT,
                       "%s: %zu bytes after the data (shape %s of '%s' needs %zu)", what,
                       have - bytes, shape_text, dtypes[out->dtype].descr, bytes);
    out->data = NULL;
    if (bytes) {
        unsigned char *data = io_alloc(bytes);
        if (!data)
            return io_fail(err, NN_IO_ENOMEM, "%s: out of memory for %zu bytes", what, bytes);
        memcpy(data, p + start + hlen, bytes);
        if (!host_is_little_endian())
            swap_bytes(data, bytes, esize);
        out->data = data;
    }
    return NN_IO_OK;
}

nn_io_status nn_npy_read(const char *path, nn_io_array **out, nn_io_error *err)
{
    unsigned char *bytes = NULL;
    size_t len = 0, size = 0;
    if (!path || !out)
        return io_fail(err, NN_IO_EINVAL, "nn_npy_read: NULL argument");
    *out = NULL;
    nn_io_status st = io_read_file(path, &bytes, &len, &size, err);
    if (st != NN_IO_OK)
        return st;
    nn_io_array *a = io_alloc(sizeof *a);
    if (!a) {
        io_free(bytes, size);
        return io_fail(err, NN_IO_ENOMEM, "out of memory reading %s", path);
    }
    memset(a, 0, sizeof *a);
    a->name = "";
    st = io_npy_parse(bytes ? bytes : (const unsigned char *)"", len, path, a, err);
    io_free(bytes, size);
    if (st != NN_IO_OK) {
        io_free(a, sizeof *a);
        return st;
    }
    *out = a;
    return io_ok(err);
}

void nn_io_array_free(nn_io_array *array)
{
    if (!array)
        return;
    io_array_release(array);
    io_free(array, sizeof *array);
}

/* ------------------------------------------------------------------ nodes */

static nn_io_dtype graph_dtype(const ad_node *node)
{
    return ad_graph_dtype(ad_node_graph(node)) == AD_F32 ? NN_IO_F32 : NN_IO_F64;
}

nn_io_status nn_npy_write_node(const char *path, const ad_node *node, nn_io_error *err)
{
    if (!path || !node)
        return io_fail(err, NN_IO_EINVAL, "nn_npy_write_node: NULL argument");
    nn_io_array a = {.name = ad_node_name(node), .dtype = graph_dtype(node), .ndim = ad_ndim(node)};
    const int64_t *shape = ad_shape(node);
    for (int i = 0; i < a.ndim && i < NN_IO_MAX_DIMS; i++)
        a.shape[i] = (size_t)shape[i];
    /* ad_data only reads through the pointer here */
    a.data = ad_data((ad_node *)(uintptr_t)node);
    return nn_npy_write(path, &a, err);
}

nn_io_status nn_npy_read_node(const char *path, ad_node *node, nn_io_error *err)
{
    nn_io_array *a = NULL;
    size_t shape[NN_IO_MAX_DIMS];
    char what[64];
    if (!path || !node)
        return io_fail(err, NN_IO_EINVAL, "nn_npy_read_node: NULL argument");
    if (ad_node_ninputs(node) != 0)
        return io_fail(err, NN_IO_EINVAL, "%s: node '%s' is not a leaf", path, ad_node_name(node));
    int ndim = ad_ndim(node);
    for (int i = 0; i < ndim && i < NN_IO_MAX_DIMS; i++)
        shape[i] = (size_t)ad_shape(node)[i];
    nn_io_dtype dt = graph_dtype(node);
    size_t n = (size_t)ad_numel(node);
    size_t bytes = n * nn_io_dtype_size(dt);
    nn_io_status st = nn_npy_read(path, &a, err);
    if (st != NN_IO_OK)
        return st;
    void *buf = io_alloc(bytes);
    if (bytes && !buf) {
        nn_io_array_free(a);
        return io_fail(err, NN_IO_ENOMEM, "out of memory reading %s", path);
    }
    snprintf(what, sizeof what, "%s", ad_node_name(node));
    a->name = what; /* for the message; the array's name is the static "" */
    st = nn_io_array_copy(a, dt, ndim, shape, buf, err);
    a->name = "";
    if (st == NN_IO_EMISMATCH && err) {
        char msg[NN_IO_ERROR_MAX];
        snprintf(msg, sizeof msg, "%s", err->message);
        io_fail(err, st, "%s: node %s", path, msg);
    }
    if (st == NN_IO_OK) {
        int rc =
            dt == NN_IO_F32 ? ad_set_f32(node, buf, (int64_t)n) : ad_set(node, buf, (int64_t)n);
        if (rc != 0)
            st = io_fail(err, NN_IO_EINVAL, "%s: cannot set node '%s'", path, ad_node_name(node));
        else
            io_ok(err);
    }
    io_free(buf, bytes);
    nn_io_array_free(a);
    return st;
}

/* ------------------------------------------------------------------ models */

/* A tensor of a model: a parameter or a batch-norm running statistic. */
typedef struct {
    char name[96];
    int ndim;
    size_t shape[2];
    void *data;
} model_tensor;

static nn_io_status model_tensors(nn_model *m, const char *path, model_tensor **out, size_t *count,
                                  nn_io_error *err)
{
    *out = NULL;
    *count = 0;
    char *params = nn_model_params(m);
    char *state = nn_model_state(m);
    int nparams = nn_model_param_tensors(m);
    if (!params || nparams <= 0)
        return io_fail(err, NN_IO_EINVAL, "%s: the model is not built", path);
    size_t esize = nn_model_dtype(m) == AD_F32 ? sizeof(float) : sizeof(double);
    int nlayers = nn_model_layer_count(m), nbn = 0;
    for (int i = 0; i < nlayers; i++)
        nbn += nn_model_layer_kind(m, i) == NN_LAYER_BATCH_NORM;
    size_t n = (size_t)nparams + 2 * (size_t)nbn;
    model_tensor *t = io_alloc(n * sizeof *t);
    if (!t)
        return io_fail(err, NN_IO_ENOMEM, "out of memory for %s", path);
    memset(t, 0, n * sizeof *t);
    for (int i = 0; i < nparams; i++) {
        nn_param_info info;
        if (nn_model_param_info(m, i, &info) != 0 || info.ndim < 1 || info.ndim > 2) {
            io_free(t, n * sizeof *t);
            return io_fail(err, NN_IO_EINVAL, "%s: cannot describe parameter %d", path, i);
        }
        snprintf(t[i].name, sizeof t[i].name, "%s", info.name);
        t[i].ndim = info.ndim;
        for (int k = 0; k < info.ndim; k++)
            t[i].shape[k] = (size_t)info.shape[k];
        t[i].data = params + (size_t)info.offset * esize;
    }
    size_t j = (size_t)nparams, off = 0;
    for (int i = 0, k = 0; i < nlayers; i++) {
        nn_layer_info info;
        if (nn_model_layer_kind(m, i) != NN_LAYER_BATCH_NORM ||
            nn_model_layer_info(m, i, &info) != 0)
            continue;
        size_t width = (size_t)info.in;
        for (int s = 0; s < 2; s++, j++) {
            snprintf(t[j].name, sizeof t[j].name, "batchnorm%d.%s", k,
                     s ? "running_var" : "running_mean");
            t[j].ndim = 1;
            t[j].shape[0] = width;
            t[j].data = state + (off + (size_t)s * width) * esize;
        }
        off += 2 * width;
        k++;
    }
    if (off != (size_t)nn_model_state_count(m) || j != n) {
        io_free(t, n * sizeof *t);
        return io_fail(err, NN_IO_EINVAL, "%s: the model's state buffer has an unexpected layout",
                       path);
    }
    *out = t;
    *count = n;
    return NN_IO_OK;
}

nn_io_status nn_model_save_npz(nn_model *m, const char *path, nn_io_error *err)
{
    model_tensor *t;
    size_t n;
    if (!m || !path)
        return io_fail(err, NN_IO_EINVAL, "nn_model_save_npz: NULL argument");
    nn_io_status st = model_tensors(m, path, &t, &n, err);
    if (st != NN_IO_OK)
        return st;
    nn_io_array *a = io_alloc(n * sizeof *a);
    if (!a) {
        io_free(t, n * sizeof *t);
        return io_fail(err, NN_IO_ENOMEM, "out of memory writing %s", path);
    }
    nn_io_dtype dt = nn_model_dtype(m) == AD_F32 ? NN_IO_F32 : NN_IO_F64;
    for (size_t i = 0; i < n; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].name = t[i].name;
        a[i].dtype = dt;
        a[i].ndim = t[i].ndim;
        a[i].shape[0] = t[i].shape[0];
        a[i].shape[1] = t[i].shape[1];
        a[i].data = t[i].data;
    }
    st = nn_npz_write(path, a, n, err);
    io_free(a, n * sizeof *a);
    io_free(t, n * sizeof *t);
    return st;
}

/* A file's tensors seen through one interface (an .npz or a checkpoint). */
typedef struct {
    const void *src;
    size_t (*count)(const void *src);
    const char *(*name_at)(const void *src, size_t i);
    /* false when absent */
    bool (*find)(const void *src, const char *name, int *ndim, const size_t **shape);
} tensor_source;

static bool shape_equal(int na, const size_t *a, int nb, const size_t *b)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Checks that src has every model tensor with its shape, and (without
   NN_IO_ALLOW_EXTRA) nothing else. */
static nn_io_status check_source(const char *path, const tensor_source *s, const model_tensor *t,
                                 size_t n, unsigned flags, nn_io_error *err)
{
    char have[256], want[256];
    for (size_t i = 0; i < n; i++) {
        int ndim;
        const size_t *shape;
        if (!s->find(s->src, t[i].name, &ndim, &shape))
            return io_fail(err, NN_IO_EMISMATCH, "%s: no tensor '%s' for the model", path,
                           t[i].name);
        if (!shape_equal(ndim, shape, t[i].ndim, t[i].shape)) {
            bool transposed = ndim == 2 && t[i].ndim == 2 && shape[0] == t[i].shape[1] &&
                              shape[1] == t[i].shape[0];
            return io_fail(err, NN_IO_EMISMATCH,
                           "%s: tensor '%s' has shape %s but the model expects %s%s", path,
                           t[i].name, io_shape_text(have, sizeof have, shape, ndim),
                           io_shape_text(want, sizeof want, t[i].shape, t[i].ndim),
                           transposed ? " (transposed? PyTorch's nn.Linear weight is (out, in), "
                                        "chainrule's is (in, out))"
                                      : "");
        }
    }
    if (flags & NN_IO_ALLOW_EXTRA)
        return NN_IO_OK;
    size_t count = s->count(s->src);
    for (size_t k = 0; k < count; k++) {
        const char *name = s->name_at(s->src, k);
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(name, t[i].name) == 0;
        if (!known)
            return io_fail(err, NN_IO_EMISMATCH,
                           "%s: tensor '%s' is not in the model (its tensors are named like "
                           "'%s'; pass NN_IO_ALLOW_EXTRA to ignore extra tensors)",
                           path, name, t[0].name);
    }
    return NN_IO_OK;
}

static size_t npz_source_count(const void *src) { return nn_npz_count(src); }
static const char *npz_source_name(const void *src, size_t i) { return nn_npz_at(src, i)->name; }
static bool npz_source_find(const void *src, const char *name, int *ndim, const size_t **shape)
{
    const nn_io_array *a = nn_npz_find(src, name);
    if (!a)
        return false;
    *ndim = a->ndim;
    *shape = a->shape;
    return true;
}

nn_io_status nn_model_load_npz(nn_model *m, const char *path, unsigned flags, nn_io_error *err)
{
    model_tensor *t;
    size_t n;
    nn_npz *npz = NULL;
    if (!m || !path)
        return io_fail(err, NN_IO_EINVAL, "nn_model_load_npz: NULL argument");
    nn_io_status st = model_tensors(m, path, &t, &n, err);
    if (st != NN_IO_OK)
        return st;
    st = nn_npz_read(path, &npz, err);
    if (st == NN_IO_OK) {
        tensor_source s = {npz, npz_source_count, npz_source_name, npz_source_find};
        st = check_source(path, &s, t, n, flags, err);
    }
    nn_io_dtype dt = nn_model_dtype(m) == AD_F32 ? NN_IO_F32 : NN_IO_F64;
    for (size_t i = 0; st == NN_IO_OK && i < n; i++)
        st = nn_io_array_copy(nn_npz_find(npz, t[i].name), dt, t[i].ndim, t[i].shape, t[i].data,
                              err);
    nn_npz_destroy(npz);
    io_free(t, n * sizeof *t);
    return st == NN_IO_OK ? io_ok(err) : st;
}

static nn_io_status from_ckpt(const nn_ckpt_error *cerr, nn_io_error *err)
{
    nn_io_status st = NN_IO_EINVAL;
    switch (cerr->status) {
    case NN_CKPT_OK:
        return io_ok(err);
    case NN_CKPT_ENOMEM:
        st = NN_IO_ENOMEM;
        break;
    case NN_CKPT_EIO:
        st = NN_IO_EIO;
        break;
    case NN_CKPT_EFORMAT:
        st = NN_IO_EFORMAT;
        break;
    case NN_CKPT_EMISMATCH:
        st = NN_IO_EMISMATCH;
        break;
    case NN_CKPT_EINVAL:
        st = NN_IO_EINVAL;
        break;
    }
    return io_fail(err, st, "%s", cerr->message);
}

nn_io_status nn_model_save_safetensors(nn_model *m, const char *path, nn_io_error *err)
{
    model_tensor *t;
    size_t n;
    nn_ckpt_error cerr;
    if (!m || !path)
        return io_fail(err, NN_IO_EINVAL, "nn_model_save_safetensors: NULL argument");
    nn_io_status st = model_tensors(m, path, &t, &n, err);
    if (st != NN_IO_OK)
        return st;
    nn_ckpt_tensor *c = io_alloc(n * sizeof *c);
    if (!c) {
        io_free(t, n * sizeof *t);
        return io_fail(err, NN_IO_ENOMEM, "out of memory writing %s", path);
    }
    nn_ckpt_dtype dt = nn_model_dtype(m) == AD_F32 ? NN_CKPT_F32 : NN_CKPT_F64;
    for (size_t i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].name = t[i].name;
        c[i].dtype = dt;
        c[i].ndim = t[i].ndim;
        c[i].shape[0] = t[i].shape[0];
        c[i].shape[1] = t[i].shape[1];
        c[i].data = t[i].data;
    }
    nn_ckpt_status cst = nn_checkpoint_write(path, c, n, NULL, 0, &cerr);
    io_free(c, n * sizeof *c);
    io_free(t, n * sizeof *t);
    if (cst != NN_CKPT_OK)
        return from_ckpt(&cerr, err);
    return io_ok(err);
}

static size_t ckpt_source_count(const void *src) { return nn_checkpoint_count(src); }
static const char *ckpt_source_name(const void *src, size_t i)
{
    return nn_checkpoint_tensor_at(src, i)->name;
}
static bool ckpt_source_find(const void *src, const char *name, int *ndim, const size_t **shape)
{
    const nn_ckpt_tensor *c = nn_checkpoint_find(src, name);
    if (!c)
        return false;
    *ndim = c->ndim;
    *shape = c->shape;
    return true;
}

nn_io_status nn_model_load_safetensors(nn_model *m, const char *path, unsigned flags,
                                       nn_io_error *err)
{
    model_tensor *t;
    size_t n;
    nn_checkpoint *ck = NULL;
    nn_ckpt_error cerr;
    if (!m || !path)
        return io_fail(err, NN_IO_EINVAL, "nn_model_load_safetensors: NULL argument");
    nn_io_status st = model_tensors(m, path, &t, &n, err);
    if (st != NN_IO_OK)
        return st;
    if (nn_checkpoint_read(path, &ck, &cerr) != NN_CKPT_OK) {
        st = from_ckpt(&cerr, err);
    } else {
        tensor_source s = {ck, ckpt_source_count, ckpt_source_name, ckpt_source_find};
        st = check_source(path, &s, t, n, flags, err);
    }
    nn_ckpt_dtype dt = nn_model_dtype(m) == AD_F32 ? NN_CKPT_F32 : NN_CKPT_F64;
    for (size_t i = 0; st == NN_IO_OK && i < n; i++)
        if (nn_checkpoint_copy(ck, t[i].name, dt, t[i].ndim, t[i].shape, t[i].data, &cerr) !=
            NN_CKPT_OK)
            st = from_ckpt(&cerr, err);
    nn_checkpoint_destroy(ck);
    io_free(t, n * sizeof *t);
    return st == NN_IO_OK ? io_ok(err) : st;
}
