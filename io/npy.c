/* NumPy .npy files and conversions, and the support the io/ module shares
   (allocation, errors, atomic files). The zip side of .npz is io/npz.c;
   model files are nn/model_files.c. */
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

#include "atomic_write_impl.h"
#include "io_impl.h"

#ifdef CR_HAVE_ZLIB
#include <zlib.h>
#endif

/* ------------------------------------------------------ memory and errors */

static io_alloc_fn g_alloc;
static void *g_alloc_ud;

void io_set_allocator(io_alloc_fn alloc, void *ud)
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

const char *io_status_string(io_status status)
{
    switch (status) {
    case IO_OK:
        return "ok";
    case IO_ENOMEM:
        return "out of memory";
    case IO_EIO:
        return "input/output error";
    case IO_EFORMAT:
        return "invalid file";
    case IO_EUNSUPPORTED:
        return "unsupported file contents";
    case IO_EMISMATCH:
        return "file does not match";
    case IO_EINVAL:
        return "invalid argument";
    }
    return "unknown status";
}

io_status io_ok(io_error *err)
{
    if (err) {
        err->status = IO_OK;
        err->message[0] = '\0';
    }
    return IO_OK;
}

io_status io_fail(io_error *err, io_status status, const char *fmt, ...)
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
    [IO_F32] = {"<f4", 4}, [IO_F64] = {"<f8", 8}, [IO_I32] = {"<i4", 4},
    [IO_I64] = {"<i8", 8}, [IO_U8] = {"|u1", 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

static bool valid_dtype(io_dtype t) { return (unsigned)t < N_DTYPES; }

const char *io_dtype_descr(io_dtype dtype)
{
    return valid_dtype(dtype) ? dtypes[dtype].descr : NULL;
}

size_t io_dtype_size(io_dtype dtype) { return valid_dtype(dtype) ? dtypes[dtype].size : 0; }

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

size_t io_array_bytes(const io_array *a)
{
    size_t bytes = 0;
    if (!io_shape_bytes(a->shape, a->ndim, io_dtype_size(a->dtype), &bytes))
        return 0;
    return bytes;
}

void io_array_release(io_array *a)
{
    if (!a)
        return;
    io_free((void *)(uintptr_t)a->data, io_array_bytes(a));
    a->data = NULL;
    if (a->name && a->name[0])
        io_strfree(a->name);
    a->name = NULL;
}

io_status io_check_array(const char *path, const char *what, const io_array *a, io_error *err)
{
    size_t bytes;
    if (!a)
        return io_fail(err, IO_EINVAL, "%s: %s is NULL", path, what);
    if (!valid_dtype(a->dtype))
        return io_fail(err, IO_EINVAL, "%s: %s has an unknown dtype %d", path, what, (int)a->dtype);
    if (a->ndim < 0 || a->ndim > IO_MAX_DIMS)
        return io_fail(err, IO_EINVAL, "%s: %s has %d axes (0 to %d allowed)", path, what, a->ndim,
                       IO_MAX_DIMS);
    if (!io_shape_bytes(a->shape, a->ndim, dtypes[a->dtype].size, &bytes))
        return io_fail(err, IO_EINVAL, "%s: %s is too large (its size overflows)", path, what);
    if (bytes && !a->data)
        return io_fail(err, IO_EINVAL, "%s: %s has NULL data for %zu bytes", path, what, bytes);
    return IO_OK;
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

bool io_emit_le(const io_array *a, io_sink out, void *ctx)
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
static double element(const io_array *a, size_t i)
{
    const void *p = a->data;
    switch (a->dtype) {
    case IO_F32:
        return ((const float *)p)[i];
    case IO_F64:
        return ((const double *)p)[i];
    case IO_I32:
        return ((const int32_t *)p)[i];
    case IO_I64:
        return (double)((const int64_t *)p)[i];
    case IO_U8:
        return ((const uint8_t *)p)[i];
    }
    return 0;
}

io_status io_array_copy(const io_array *array, io_dtype dtype, int ndim, const size_t *shape,
                        void *dst, io_error *err)
{
    char have[256], want[256];
    if (!array || (!shape && ndim > 0))
        return io_fail(err, IO_EINVAL, "io_array_copy: NULL argument");
    if (dtype != IO_F32 && dtype != IO_F64)
        return io_fail(err, IO_EINVAL, "io_array_copy: the destination must be F32 or F64");
    if (ndim < 0 || ndim > IO_MAX_DIMS)
        return io_fail(err, IO_EINVAL, "io_array_copy: bad ndim %d", ndim);
    const char *name = array->name ? array->name : "";
    bool same = array->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = array->shape[i] == shape[i];
    if (!same)
        return io_fail(err, IO_EMISMATCH, "'%s' has shape %s but %s is expected", name,
                       io_shape_text(have, sizeof have, array->shape, array->ndim),
                       io_shape_text(want, sizeof want, shape, ndim));
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    if (n && !dst)
        return io_fail(err, IO_EINVAL, "io_array_copy: NULL destination");
    if (n && array->dtype == dtype)
        memcpy(dst, array->data, n * dtypes[dtype].size);
    else if (dtype == IO_F32)
        for (size_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)element(array, i);
    else
        for (size_t i = 0; i < n; i++)
            ((double *)dst)[i] = element(array, i);
    return io_ok(err);
}

/* ------------------------------------------------------- files, atomically */

io_status io_write_atomic(const char *path, io_writer write, void *ctx, io_error *err)
{
    char msg[IO_ERROR_MAX];
    switch (cr_write_atomic(path, write, ctx, io_alloc, io_free, msg, sizeof msg)) {
    case CR_WRITE_OK:
        return io_ok(err);
    case CR_WRITE_ENOMEM:
        return io_fail(err, IO_ENOMEM, "%s", msg);
    default:
        return io_fail(err, IO_EIO, "%s", msg);
    }
}

io_status io_read_file(const char *path, unsigned char **data, size_t *len, size_t *size,
                       io_error *err)
{
    struct stat sb;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    *data = NULL;
    *len = *size = 0;
    char msg[IO_ERROR_MAX];
    FILE *fp = cr_fopen_regular(path, msg, sizeof msg);
    if (!fp)
        return io_fail(err, IO_EIO, "%s", msg);
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        if ((uintmax_t)sb.st_size >= SIZE_MAX) {
            fclose(fp);
            return io_fail(err, IO_ENOMEM, "%s is too large to read", path);
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
                return io_fail(err, IO_ENOMEM, "out of memory reading %s", path);
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
                return io_fail(err, IO_ENOMEM, "out of memory reading %s", path);
            }
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0 || n < cap) {
            if (ferror(fp)) {
                int e = errno;
                io_free(buf, cap);
                fclose(fp);
                return io_fail(err, IO_EIO, "cannot read %s: %s", path, strerror(e));
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

size_t io_npy_header(const io_array *a, unsigned char *buf, size_t size)
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

io_status io_npy_write(const char *path, const io_array *array, io_error *err)
{
    unsigned char header[512];
    if (!path)
        return io_fail(err, IO_EINVAL, "io_npy_write: path is NULL");
    io_status st = io_check_array(path, "the array", array, err);
    if (st != IO_OK)
        return st;
    npy_job job = {array, header, io_npy_header(array, header, sizeof header)};
    if (!job.header_len)
        return io_fail(err, IO_EINVAL, "%s: the .npy header does not fit", path);
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
        if (*ndim == IO_MAX_DIMS)
            return SHAPE_TOO_MANY;
        shape[(*ndim)++] = v;
        if (accept(c, ','))
            continue;
        if (accept(c, ')'))
            return *ndim == 1 ? SHAPE_BAD : SHAPE_OK; /* (3) is not a tuple */
        return SHAPE_BAD;
    }
}

static io_status check_descr(const char *what, const char *descr, io_dtype *dtype, io_error *err)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(descr, dtypes[i].descr) == 0) {
            *dtype = (io_dtype)i;
            return IO_OK;
        }
    if (strcmp(descr, "<u1") == 0 || strcmp(descr, "u1") == 0) {
        *dtype = IO_U8;
        return IO_OK;
    }
    if (descr[0] == '>' && descr[1] != '\0' && descr[2] != '1')
        return io_fail(err, IO_EUNSUPPORTED,
                       "%s: big-endian data ('%s') is not supported; save a.astype('<%s') instead",
                       what, descr, descr + 1);
    if (strchr(descr, 'O'))
        return io_fail(err, IO_EUNSUPPORTED,
                       "%s: object arrays ('%s') cannot be read; save a numeric array", what,
                       descr);
    return io_fail(err, IO_EUNSUPPORTED,
                   "%s: unsupported dtype '%s' (chainrule reads <f4, <f8, <i4, <i8 and |u1)", what,
                   descr);
}

/* Parses the header dict into dtype, fortran order and shape. */
static io_status parse_dict(const char *what, const char *text, size_t len, io_dtype *dtype,
                            size_t *shape, int *ndim, io_error *err)
{
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    char key[32], descr[32];
    if (!accept(&c, '{'))
        return io_fail(err, IO_EFORMAT, "%s: bad header: not a dict ('{' expected)", what);
    while (!accept(&c, '}')) {
        if (!parse_string(&c, key, sizeof key))
            return io_fail(err, IO_EFORMAT, "%s: bad header dict: a quoted key expected", what);
        if (!accept(&c, ':'))
            return io_fail(err, IO_EFORMAT, "%s: bad header dict: ':' expected after '%s'", what,
                           key);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_space(&c);
            if (c.p < c.end && *c.p == '[')
                return io_fail(err, IO_EUNSUPPORTED,
                               "%s: structured arrays (a list descr) are not supported", what);
            if (!parse_string(&c, descr, sizeof descr))
                return io_fail(err, IO_EFORMAT, "%s: bad header dict: 'descr' is not a string",
                               what);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (parse_word(&c, "True"))
                fortran = true;
            else if (!parse_word(&c, "False"))
                return io_fail(err, IO_EFORMAT,
                               "%s: bad header dict: 'fortran_order' is not True or False", what);
            have_order = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            shape_result r = parse_shape(&c, shape, ndim);
            if (r == SHAPE_TOO_MANY)
                return io_fail(err, IO_EUNSUPPORTED, "%s: more than %d axes", what, IO_MAX_DIMS);
            if (r != SHAPE_OK)
                return io_fail(err, IO_EFORMAT,
                               "%s: bad header dict: 'shape' is not a tuple of integers", what);
            have_shape = true;
        } else if (strcmp(key, "descr") == 0 || strcmp(key, "fortran_order") == 0 ||
                   strcmp(key, "shape") == 0) {
            return io_fail(err, IO_EFORMAT, "%s: bad header dict: key '%s' repeated", what, key);
        } else {
            return io_fail(err, IO_EFORMAT, "%s: bad header dict: unknown key '%s'", what, key);
        }
        if (!accept(&c, ',')) {
            if (accept(&c, '}'))
                break;
            return io_fail(err, IO_EFORMAT, "%s: bad header dict: ',' or '}' expected", what);
        }
    }
    skip_space(&c);
    if (c.p != c.end)
        return io_fail(err, IO_EFORMAT, "%s: bad header: text after the dict", what);
    if (!have_descr || !have_order || !have_shape)
        return io_fail(err, IO_EFORMAT, "%s: bad header dict: no '%s' key", what,
                       !have_descr   ? "descr"
                       : !have_order ? "fortran_order"
                                     : "shape");
    io_status st = check_descr(what, descr, dtype, err);
    if (st != IO_OK)
        return st;
    if (fortran)
        return io_fail(err, IO_EUNSUPPORTED,
                       "%s: Fortran-order arrays are not supported; save "
                       "np.ascontiguousarray(a) instead",
                       what);
    return IO_OK;
}

io_status io_npy_parse(const unsigned char *p, size_t n, const char *what, io_array *out,
                       io_error *err)
{
    size_t start, hlen, bytes;
    char shape_text[256];
    if (n < 10 || memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        if (n >= NPY_MAGIC_LEN && memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) == 0)
            return io_fail(err, IO_EFORMAT, "%s: truncated .npy header (%zu bytes)", what, n);
        if (n >= 4 && memcmp(p, "PK\x03\x04", 4) == 0)
            return io_fail(err, IO_EFORMAT,
                           "%s: not a .npy file but a zip archive (an .npz? use io_npz_read)",
                           what);
        return io_fail(err, IO_EFORMAT, "%s: not a .npy file (bad magic, %zu bytes)", what, n);
    }
    unsigned major = p[6], minor = p[7];
    if (major == 1 && minor == 0) {
        start = 10;
        hlen = (size_t)p[8] | (size_t)p[9] << 8;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (n < 12)
            return io_fail(err, IO_EFORMAT, "%s: truncated .npy header (%zu bytes)", what, n);
        start = 12;
        hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
    } else {
        return io_fail(err, IO_EUNSUPPORTED,
                       "%s: .npy format version %u.%u is not supported (1.0, 2.0, 3.0 are)", what,
                       major, minor);
    }
    if (hlen > n - start)
        return io_fail(err, IO_EFORMAT,
                       "%s: truncated: the header claims %zu bytes but only %zu follow", what, hlen,
                       n - start);
    io_status st =
        parse_dict(what, (const char *)p + start, hlen, &out->dtype, out->shape, &out->ndim, err);
    if (st != IO_OK)
        return st;
    size_t esize = dtypes[out->dtype].size, have = n - start - hlen;
    io_shape_text(shape_text, sizeof shape_text, out->shape, out->ndim);
    if (!io_shape_bytes(out->shape, out->ndim, esize, &bytes))
        return io_fail(err, IO_EFORMAT, "%s: shape %s is too large", what, shape_text);
    if (have < bytes)
        return io_fail(err, IO_EFORMAT,
                       "%s: truncated: shape %s of '%s' needs %zu data bytes but %zu follow", what,
                       shape_text, dtypes[out->dtype].descr, bytes, have);
    if (have > bytes)
        return io_fail(err, IO_EFORMAT, "%s: %zu bytes after the data (shape %s of '%s' needs %zu)",
                       what, have - bytes, shape_text, dtypes[out->dtype].descr, bytes);
    out->data = NULL;
    if (bytes) {
        unsigned char *data = io_alloc(bytes);
        if (!data)
            return io_fail(err, IO_ENOMEM, "%s: out of memory for %zu bytes", what, bytes);
        memcpy(data, p + start + hlen, bytes);
        if (!host_is_little_endian())
            swap_bytes(data, bytes, esize);
        out->data = data;
    }
    return IO_OK;
}

io_status io_npy_read(const char *path, io_array **out, io_error *err)
{
    unsigned char *bytes = NULL;
    size_t len = 0, size = 0;
    if (!path || !out)
        return io_fail(err, IO_EINVAL, "io_npy_read: NULL argument");
    *out = NULL;
    io_status st = io_read_file(path, &bytes, &len, &size, err);
    if (st != IO_OK)
        return st;
    io_array *a = io_alloc(sizeof *a);
    if (!a) {
        io_free(bytes, size);
        return io_fail(err, IO_ENOMEM, "out of memory reading %s", path);
    }
    memset(a, 0, sizeof *a);
    a->name = "";
    st = io_npy_parse(bytes ? bytes : (const unsigned char *)"", len, path, a, err);
    io_free(bytes, size);
    if (st != IO_OK) {
        io_free(a, sizeof *a);
        return st;
    }
    *out = a;
    return io_ok(err);
}

void io_array_free(io_array *array)
{
    if (!array)
        return;
    io_array_release(array);
    io_free(array, sizeof *array);
}

/* ------------------------------------------------------------------ nodes */

static io_dtype graph_dtype(const ad_node *node)
{
    return ad_graph_dtype(ad_node_graph(node)) == AD_F32 ? IO_F32 : IO_F64;
}

io_status io_npy_write_node(const char *path, const ad_node *node, io_error *err)
{
    if (!path || !node)
        return io_fail(err, IO_EINVAL, "io_npy_write_node: NULL argument");
    io_array a = {.name = ad_node_name(node), .dtype = graph_dtype(node), .ndim = ad_ndim(node)};
    const int64_t *shape = ad_shape(node);
    for (int i = 0; i < a.ndim && i < IO_MAX_DIMS; i++)
        a.shape[i] = (size_t)shape[i];
    /* ad_data only reads through the pointer here */
    a.data = ad_data((ad_node *)(uintptr_t)node);
    return io_npy_write(path, &a, err);
}

io_status io_npy_read_node(const char *path, ad_node *node, io_error *err)
{
    io_array *a = NULL;
    size_t shape[IO_MAX_DIMS];
    char what[64];
    if (!path || !node)
        return io_fail(err, IO_EINVAL, "io_npy_read_node: NULL argument");
    if (ad_node_ninputs(node) != 0)
        return io_fail(err, IO_EINVAL, "%s: node '%s' is not a leaf", path, ad_node_name(node));
    int ndim = ad_ndim(node);
    for (int i = 0; i < ndim && i < IO_MAX_DIMS; i++)
        shape[i] = (size_t)ad_shape(node)[i];
    io_dtype dt = graph_dtype(node);
    size_t n = (size_t)ad_numel(node);
    size_t bytes = n * io_dtype_size(dt);
    io_status st = io_npy_read(path, &a, err);
    if (st != IO_OK)
        return st;
    void *buf = io_alloc(bytes);
    if (bytes && !buf) {
        io_array_free(a);
        return io_fail(err, IO_ENOMEM, "out of memory reading %s", path);
    }
    snprintf(what, sizeof what, "%s", ad_node_name(node));
    a->name = what; /* for the message; the array's name is the static "" */
    st = io_array_copy(a, dt, ndim, shape, buf, err);
    a->name = "";
    if (st == IO_EMISMATCH && err) {
        char msg[IO_ERROR_MAX];
        snprintf(msg, sizeof msg, "%s", err->message);
        io_fail(err, st, "%s: node %s", path, msg);
    }
    if (st == IO_OK) {
        int rc = dt == IO_F32 ? ad_set_f32(node, buf, (int64_t)n) : ad_set(node, buf, (int64_t)n);
        if (rc != 0)
            st = io_fail(err, IO_EINVAL, "%s: cannot set node '%s'", path, ad_node_name(node));
        else
            io_ok(err);
    }
    io_free(buf, bytes);
    io_array_free(a);
    return st;
}
