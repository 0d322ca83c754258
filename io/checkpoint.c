/* Checkpoints in the safetensors format: an atomic, fully checked writer and
   a reader that validates every field before trusting it. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "chainrule/checkpoint.h"

#include "atomic_write_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef CR_HAVE_ZLIB
#include <zlib.h>
#endif

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* safetensors' own limit on the JSON header. */
#define MAX_HEADER_BYTES 100000000u
/* Offsets and dims are JSON numbers, exact up to 2^53. */
#define MAX_JSON_INT 9007199254740992.0

/* ------------------------------------------------------ memory and errors */

static io_ckpt_alloc_fn g_alloc;
static void *g_alloc_ud;

void io_checkpoint_set_allocator(io_ckpt_alloc_fn alloc, void *ud)
{
    g_alloc = alloc;
    g_alloc_ud = alloc ? ud : NULL;
}

static void *mem_realloc(void *p, size_t osize, size_t nsize)
{
    if (nsize == 0) {
        if (g_alloc)
            g_alloc(g_alloc_ud, p, osize, 0);
        else
            free(p);
        return NULL;
    }
    if (g_alloc)
        return g_alloc(g_alloc_ud, p, p ? osize : 0, nsize);
    return realloc(p, nsize);
}

static void *mem_alloc(size_t size) { return size ? mem_realloc(NULL, 0, size) : NULL; }

static void mem_free(void *p, size_t size)
{
    if (p)
        mem_realloc(p, size, 0);
}

static char *dup_string(const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = mem_alloc(len);
    if (copy)
        memcpy(copy, s, len);
    return copy;
}

static void free_string(const char *s)
{
    if (s)
        mem_free((void *)(uintptr_t)s, strlen(s) + 1);
}

const char *io_ckpt_status_string(io_ckpt_status status)
{
    switch (status) {
    case IO_CKPT_OK:
        return "ok";
    case IO_CKPT_ENOMEM:
        return "out of memory";
    case IO_CKPT_EIO:
        return "input/output error";
    case IO_CKPT_EFORMAT:
        return "invalid checkpoint file";
    case IO_CKPT_EMISMATCH:
        return "checkpoint does not match";
    case IO_CKPT_EINVAL:
        return "invalid argument";
    }
    return "unknown status";
}

static io_ckpt_status ok(io_ckpt_error *err)
{
    if (err) {
        err->status = IO_CKPT_OK;
        err->message[0] = '\0';
    }
    return IO_CKPT_OK;
}

PRINTF_LIKE(3, 4)
static io_ckpt_status fail(io_ckpt_error *err, io_ckpt_status status, const char *fmt, ...)
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

/* ------------------------------------------------------- shared helpers */

static size_t dtype_size(io_ckpt_dtype t) { return t == IO_CKPT_F64 ? 8 : 4; }
static const char *dtype_name(io_ckpt_dtype t) { return t == IO_CKPT_F64 ? "F64" : "F32"; }

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Reverses the bytes of each esize-byte element (little-endian <-> host on
   a big-endian machine). */
static void swap_bytes(unsigned char *p, size_t bytes, size_t esize)
{
    for (size_t i = 0; i + esize <= bytes; i += esize)
        for (size_t a = i, b = i + esize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Element count of a shape, false on overflow of count * esize. */
static bool shape_bytes(const size_t *shape, int ndim, size_t esize, size_t *bytes)
{
    size_t n = 1;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] != 0 && n > SIZE_MAX / shape[k])
            return false;
        n *= shape[k];
    }
    if (n > SIZE_MAX / esize)
        return false;
    *bytes = n * esize;
    return true;
}

/* "[300, 784]" into buf. */
static const char *shape_text(char *buf, size_t size, const size_t *shape, int ndim)
{
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < ndim && used < size; k++)
        used += (size_t)snprintf(buf + used, size - used, "%s%zu", k ? ", " : "", shape[k]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

/* CRC-32 (IEEE 802.3, reflected), the same function as zlib's crc32: zlib's
   fast version when the build has it, else a bitwise loop (no shared table,
   so no first-use race between threads). */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
#ifdef CR_HAVE_ZLIB
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? 1u << 30 : (unsigned)len;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return crc;
#else
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
#endif
}

static uint32_t crc32_string0(uint32_t crc, const char *s)
{
    return crc32_update(crc, s, strlen(s) + 1); /* with its 0 byte */
}

/* The checksum's record of one tensor: name, dtype, shape, offsets. */
static uint32_t crc32_tensor(uint32_t crc, const io_ckpt_tensor *t, size_t begin, size_t end)
{
    char num[48];
    crc = crc32_string0(crc, t->name);
    crc = crc32_string0(crc, dtype_name(t->dtype));
    for (int k = 0; k < t->ndim; k++) {
        int len = snprintf(num, sizeof num, "%s%zu", k ? "," : "", t->shape[k]);
        crc = crc32_update(crc, num, (size_t)len);
    }
    crc = crc32_update(crc, "", 1);
    snprintf(num, sizeof num, "%zu,%zu", begin, end);
    return crc32_string0(crc, num);
}

/* Well-formed UTF-8: no overlong forms, surrogates or values past U+10FFFF
   (what Python's json module insists on). */
static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int extra;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (int k = 1; k <= extra; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        p += extra + 1;
    }
    return true;
}

/* ------------------------------------------------------------------ writer */

/* A growing byte string from the module's allocator. */
typedef struct strbuf {
    char *data;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_append(strbuf *b, const char *s, size_t len)
{
    if (b->failed)
        return;
    if (len >= b->cap - b->len || !b->data) {
        size_t ncap = b->cap ? b->cap : 1024;
        char *nd;
        while (ncap - b->len <= len) {
            if (ncap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            ncap *= 2;
        }
        nd = mem_realloc(b->data, b->cap, ncap);
        if (!nd) {
            b->failed = true;
            return;
        }
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_append(b, s, strlen(s)); }

PRINTF_LIKE(2, 3)
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int len;
    va_start(ap, fmt);
    len = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof tmp) {
        b->failed = true;
        return;
    }
    sb_append(b, tmp, (size_t)len);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
   the text is already known to be valid UTF-8. */
static void sb_json_string(strbuf *b, const char *s)
{
    sb_puts(b, "\"");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_append(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_append(b, p, 1);
        }
    }
    sb_puts(b, "\"");
}

static io_ckpt_status check_inputs(const char *path, const io_ckpt_tensor *tensors, size_t count,
                                   const io_ckpt_meta *meta, size_t meta_count, io_ckpt_error *err)
{
    if (!path || !*path)
        return fail(err, IO_CKPT_EINVAL, "checkpoint path is empty");
    if ((count && !tensors) || (meta_count && !meta))
        return fail(err, IO_CKPT_EINVAL, "%s: tensor or metadata array is NULL", path);
    for (size_t i = 0; i < count; i++) {
        const io_ckpt_tensor *t = &tensors[i];
        size_t bytes;
        if (!t->name || !*t->name)
            return fail(err, IO_CKPT_EINVAL, "%s: tensor %zu has no name", path, i);
        if (!valid_utf8(t->name))
            return fail(err, IO_CKPT_EINVAL, "%s: tensor %zu's name is not valid UTF-8", path, i);
        if (strcmp(t->name, "__metadata__") == 0)
            return fail(err, IO_CKPT_EINVAL, "%s: '__metadata__' is reserved, not a tensor name",
                        path);
        if (t->dtype != IO_CKPT_F32 && t->dtype != IO_CKPT_F64)
            return fail(err, IO_CKPT_EINVAL, "%s: tensor '%s' has unknown dtype %d", path, t->name,
                        (int)t->dtype);
        if (t->ndim < 0 || t->ndim > IO_CKPT_MAX_DIMS)
            return fail(err, IO_CKPT_EINVAL, "%s: tensor '%s' has %d dimensions (0 to %d allowed)",
                        path, t->name, t->ndim, IO_CKPT_MAX_DIMS);
        for (int k = 0; k < t->ndim; k++)
            if ((double)t->shape[k] > MAX_JSON_INT)
                return fail(err, IO_CKPT_EINVAL, "%s: tensor '%s' is too large", path, t->name);
        if (!shape_bytes(t->shape, t->ndim, dtype_size(t->dtype), &bytes))
            return fail(err, IO_CKPT_EINVAL, "%s: tensor '%s' is too large", path, t->name);
        if (bytes && !t->data)
            return fail(err, IO_CKPT_EINVAL, "%s: tensor '%s' has no data", path, t->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0)
                return fail(err, IO_CKPT_EINVAL, "%s: two tensors are called '%s'", path, t->name);
    }
    for (size_t i = 0; i < meta_count; i++) {
        if (!meta[i].key || !meta[i].value)
            return fail(err, IO_CKPT_EINVAL, "%s: metadata entry %zu has a NULL key or value", path,
                        i);
        if (!valid_utf8(meta[i].key) || !valid_utf8(meta[i].value))
            return fail(err, IO_CKPT_EINVAL, "%s: metadata entry '%s' is not valid UTF-8", path,
                        valid_utf8(meta[i].key) ? meta[i].key : "?");
        if (strcmp(meta[i].key, IO_CKPT_CHECKSUM_KEY) == 0)
            return fail(err, IO_CKPT_EINVAL, "%s: metadata key '%s' is reserved for the checksum",
                        path, IO_CKPT_CHECKSUM_KEY);
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta[j].key, meta[i].key) == 0)
                return fail(err, IO_CKPT_EINVAL, "%s: two metadata entries are called '%s'", path,
                            meta[i].key);
    }
    return ok(err);
}

static size_t tensor_bytes(const io_ckpt_tensor *t)
{
    size_t bytes = 0;
    shape_bytes(t->shape, t->ndim, dtype_size(t->dtype), &bytes); /* checked before */
    return bytes;
}

/* The data section's layout: F64 tensors first so every tensor is aligned
   to its element size; order[] lists tensors in data order. */
static void layout(const io_ckpt_tensor *tensors, size_t count, size_t *order, size_t *begin)
{
    size_t n = 0, pos = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < count; i++)
            if ((tensors[i].dtype == IO_CKPT_F64) == (pass == 0)) {
                order[n++] = i;
                begin[i] = pos;
                pos += tensor_bytes(&tensors[i]);
            }
}

/* Feeds a tensor's little-endian bytes to out(ctx, bytes, len) in chunks. */
typedef bool (*sink_fn)(void *ctx, const void *bytes, size_t len);

static bool emit_tensor_le(const io_ckpt_tensor *t, sink_fn out, void *ctx)
{
    size_t bytes = tensor_bytes(t), esize = dtype_size(t->dtype);
    const unsigned char *src = t->data;
    unsigned char chunk[4096];
    if (host_is_little_endian())
        return bytes == 0 || out(ctx, src, bytes);
    for (size_t done = 0; done < bytes;) {
        size_t len = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
        memcpy(chunk, src + done, len);
        swap_bytes(chunk, len, esize);
        if (!out(ctx, chunk, len))
            return false;
        done += len;
    }
    return true;
}

static bool crc_sink(void *ctx, const void *bytes, size_t len)
{
    uint32_t *crc = ctx;
    *crc = crc32_update(*crc, bytes, len);
    return true;
}

static bool file_sink(void *ctx, const void *bytes, size_t len)
{
    return fwrite(bytes, 1, len, (FILE *)ctx) == len;
}

/* The JSON header, padded with spaces so the data starts 8-aligned. */
static io_ckpt_status build_header(const io_ckpt_tensor *tensors, size_t count,
                                   const io_ckpt_meta *meta, size_t meta_count, const size_t *order,
                                   const size_t *begin, strbuf *h, io_ckpt_error *err)
{
    uint32_t crc = 0;
    char hex[9];
    for (size_t i = 0; i < count; i++)
        crc = crc32_tensor(crc, &tensors[i], begin[i], begin[i] + tensor_bytes(&tensors[i]));
    for (size_t i = 0; i < meta_count; i++) {
        crc = crc32_string0(crc, meta[i].key);
        crc = crc32_string0(crc, meta[i].value);
    }
    for (size_t i = 0; i < count; i++)
        emit_tensor_le(&tensors[order[i]], crc_sink, &crc);
    snprintf(hex, sizeof hex, "%08lx", (unsigned long)crc);

    sb_puts(h, "{\"__metadata__\":{");
    for (size_t i = 0; i < meta_count; i++) {
        sb_json_string(h, meta[i].key);
        sb_puts(h, ":");
        sb_json_string(h, meta[i].value);
        sb_puts(h, ",");
    }
    sb_printf(h, "\"%s\":\"%s\"}", IO_CKPT_CHECKSUM_KEY, hex);
    for (size_t i = 0; i < count; i++) {
        const io_ckpt_tensor *t = &tensors[i];
        sb_puts(h, ",");
        sb_json_string(h, t->name);
        sb_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++)
            sb_printf(h, "%s%zu", k ? "," : "", t->shape[k]);
        sb_printf(h, "],\"data_offsets\":[%zu,%zu]}", begin[i], begin[i] + tensor_bytes(t));
    }
    sb_puts(h, "}");
    while (!h->failed && (8 + h->len) % 8 != 0)
        sb_puts(h, " ");
    if (h->failed)
        return fail(err, IO_CKPT_ENOMEM, "out of memory building a checkpoint header");
    return ok(err);
}

/* What write_all needs, for cr_write_atomic's callback. */
typedef struct {
    const strbuf *h;
    const io_ckpt_tensor *tensors;
    size_t count;
    const size_t *order;
} write_job;

/* Writes header and data to fp; false with errno set on failure. */
static bool write_all(FILE *fp, void *ctx)
{
    const write_job *job = ctx;
    unsigned char len_le[8];
    uint64_t n = job->h->len;
    for (int k = 0; k < 8; k++)
        len_le[k] = (unsigned char)(n >> (8 * k));
    if (fwrite(len_le, 1, 8, fp) != 8 || fwrite(job->h->data, 1, job->h->len, fp) != job->h->len)
        return false;
    for (size_t i = 0; i < job->count; i++)
        if (!emit_tensor_le(&job->tensors[job->order[i]], file_sink, fp))
            return false;
    return true;
}

io_ckpt_status io_checkpoint_write(const char *path, const io_ckpt_tensor *tensors, size_t count,
                                   const io_ckpt_meta *meta, size_t meta_count, io_ckpt_error *err)
{
    strbuf h = {NULL, 0, 0, false};
    size_t *order = NULL, *begin = NULL;
    io_ckpt_status st = check_inputs(path, tensors, count, meta, meta_count, err);
    if (st != IO_CKPT_OK)
        return st;
    if (count > SIZE_MAX / (2 * sizeof(size_t)))
        return fail(err, IO_CKPT_EINVAL, "%s: too many tensors", path);
    if (count) {
        order = mem_alloc(2 * count * sizeof(size_t));
        if (!order)
            return fail(err, IO_CKPT_ENOMEM, "out of memory writing %s", path);
        begin = order + count;
    }
    layout(tensors, count, order, begin);
    st = build_header(tensors, count, meta, meta_count, order, begin, &h, err);
    if (st != IO_CKPT_OK)
        goto done;

    write_job job = {&h, tensors, count, order};
    char msg[IO_CKPT_ERROR_MAX];
    switch (cr_write_atomic(path, write_all, &job, mem_alloc, mem_free, msg, sizeof msg)) {
    case CR_WRITE_OK:
        break;
    case CR_WRITE_ENOMEM:
        st = fail(err, IO_CKPT_ENOMEM, "%s", msg);
        break;
    default:
        st = fail(err, IO_CKPT_EIO, "%s", msg);
        break;
    }

done:
    mem_free(h.data, h.cap);
    mem_free(order, 2 * count * sizeof(size_t));
    return st == IO_CKPT_OK ? ok(err) : st;
}

/* ------------------------------------------------------------------ reader */

struct io_checkpoint {
    io_ckpt_tensor *tensors; /* (count) in header order */
    size_t count;
    io_ckpt_meta *meta; /* (meta_count) in header order, checksum excluded */
    size_t meta_count, meta_cap;
    unsigned char *storage; /* tensor data, each tensor 8-aligned */
    size_t storage_size;
    size_t *begin, *end; /* (count) data_offsets from the file */
    bool verified;       /* the checksum was present and matched */
};

void io_checkpoint_destroy(io_checkpoint *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; ck->tensors && i < ck->count; i++)
        free_string(ck->tensors[i].name);
    for (size_t i = 0; ck->meta && i < ck->meta_count; i++) {
        free_string(ck->meta[i].key);
        free_string(ck->meta[i].value);
    }
    mem_free(ck->tensors, ck->count * sizeof *ck->tensors);
    mem_free(ck->meta, ck->meta_cap * sizeof *ck->meta);
    mem_free(ck->begin, 2 * ck->count * sizeof(size_t));
    mem_free(ck->storage, ck->storage_size);
    mem_free(ck, sizeof *ck);
}

/* A JSON number that is a whole number in [0, 2^53]. */
static bool json_size(const cJSON *item, size_t *out)
{
    double v;
    if (!cJSON_IsNumber(item))
        return false;
    v = item->valuedouble;
    if (!(v >= 0.0) || v > MAX_JSON_INT || v != floor(v) || v > (double)SIZE_MAX)
        return false;
    *out = (size_t)v;
    return true;
}

/* Fills tensor i of ck from its JSON description. */
static io_ckpt_status parse_tensor(const char *path, const cJSON *item, io_checkpoint *ck, size_t i,
                                   size_t data_size, io_ckpt_error *err)
{
    io_ckpt_tensor *t = &ck->tensors[i];
    const char *name = item->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    size_t bytes, k = 0;
    const cJSON *dim;
    char shape_buf[160];

    if (!cJSON_IsObject(item))
        return fail(err, IO_CKPT_EFORMAT, "%s: tensor '%s' is not a JSON object", path, name);
    if (!cJSON_IsString(dtype))
        return fail(err, IO_CKPT_EFORMAT, "%s: tensor '%s' has no \"dtype\" string", path, name);
    if (strcmp(dtype->valuestring, "F32") == 0)
        t->dtype = IO_CKPT_F32;
    else if (strcmp(dtype->valuestring, "F64") == 0)
        t->dtype = IO_CKPT_F64;
    else
        return fail(err, IO_CKPT_EFORMAT,
                    "%s: tensor '%s' has dtype '%.20s'; only F32 and F64 "
                    "are supported",
                    path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return fail(err, IO_CKPT_EFORMAT, "%s: tensor '%s' has no \"shape\" array", path, name);
    if (cJSON_GetArraySize(shape) > IO_CKPT_MAX_DIMS)
        return fail(err, IO_CKPT_EFORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", path,
                    name, cJSON_GetArraySize(shape), IO_CKPT_MAX_DIMS);
    cJSON_ArrayForEach(dim, shape)
    {
        if (!json_size(dim, &t->shape[k]))
            return fail(err, IO_CKPT_EFORMAT,
                        "%s: tensor '%s': shape entry %zu is not a "
                        "non-negative integer",
                        path, name, k);
        k++;
    }
    t->ndim = (int)k;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_size(cJSON_GetArrayItem(offs, 0), &ck->begin[i]) ||
        !json_size(cJSON_GetArrayItem(offs, 1), &ck->end[i]) || ck->begin[i] > ck->end[i])
        return fail(err, IO_CKPT_EFORMAT,
                    "%s: tensor '%s' needs \"data_offsets\" [begin, end] "
                    "with 0 <= begin <= end",
                    path, name);
    shape_text(shape_buf, sizeof shape_buf, t->shape, t->ndim);
    if (!shape_bytes(t->shape, t->ndim, dtype_size(t->dtype), &bytes))
        return fail(err, IO_CKPT_EFORMAT, "%s: tensor '%s': shape %s is too large", path, name,
                    shape_buf);
    if (ck->end[i] > data_size)
        return fail(err, IO_CKPT_EFORMAT,
                    "%s: truncated file: tensor '%s' has data_offsets "
                    "[%zu, %zu] but the data section holds %zu bytes",
                    path, name, ck->begin[i], ck->end[i], data_size);
    if (bytes != ck->end[i] - ck->begin[i])
        return fail(err, IO_CKPT_EFORMAT,
                    "%s: tensor '%s': shape %s of %s needs %zu bytes but "
                    "data_offsets [%zu, %zu] hold %zu",
                    path, name, shape_buf, dtype_name(t->dtype), bytes, ck->begin[i], ck->end[i],
                    ck->end[i] - ck->begin[i]);
    t->name = dup_string(name);
    if (!t->name)
        return fail(err, IO_CKPT_ENOMEM, "out of memory reading %s", path);
    return ok(err);
}

static io_ckpt_status parse_metadata(const char *path, const cJSON *obj, io_checkpoint *ck,
                                     const char **checksum, io_ckpt_error *err)
{
    const cJSON *item;
    size_t n = 0;
    if (!cJSON_IsObject(obj))
        return fail(err, IO_CKPT_EFORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    cJSON_ArrayForEach(item, obj)
    {
        if (!cJSON_IsString(item))
            return fail(err, IO_CKPT_EFORMAT, "%s: metadata '%s' is not a string", path,
                        item->string);
        if (strcmp(item->string, IO_CKPT_CHECKSUM_KEY) == 0)
            *checksum = item->valuestring;
        else
            n++;
    }
    if (n) {
        ck->meta = mem_alloc(n * sizeof *ck->meta);
        if (!ck->meta)
            return fail(err, IO_CKPT_ENOMEM, "out of memory reading %s", path);
        memset(ck->meta, 0, n * sizeof *ck->meta);
        ck->meta_cap = n;
    }
    cJSON_ArrayForEach(item, obj)
    {
        io_ckpt_meta *m;
        if (strcmp(item->string, IO_CKPT_CHECKSUM_KEY) == 0)
            continue;
        for (size_t j = 0; j < ck->meta_count; j++)
            if (strcmp(ck->meta[j].key, item->string) == 0)
                return fail(err, IO_CKPT_EFORMAT, "%s: metadata '%s' appears twice", path,
                            item->string);
        m = &ck->meta[ck->meta_count++];
        m->key = dup_string(item->string);
        m->value = m->key ? dup_string(item->valuestring) : NULL;
        if (!m->value)
            return fail(err, IO_CKPT_ENOMEM, "out of memory reading %s", path);
    }
    return ok(err);
}

/* Is tensor a before tensor b in the data section? Ties by end put empty
   tensors before the one starting at the same offset. */
static bool before(const io_checkpoint *ck, size_t a, size_t b)
{
    return ck->begin[a] < ck->begin[b] || (ck->begin[a] == ck->begin[b] && ck->end[a] < ck->end[b]);
}

static void sift_down(const io_checkpoint *ck, size_t *a, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1, t;
        if (child >= n)
            return;
        if (child + 1 < n && before(ck, a[child], a[child + 1]))
            child++;
        if (!before(ck, a[root], a[child]))
            return;
        t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* Checks that the tensors tile the data section exactly; order gets them
   in data order (heapsort: O(n log n) for hostile headers, no recursion). */
static io_ckpt_status check_tiling(const char *path, const io_checkpoint *ck, size_t *order,
                                   size_t data_size, io_ckpt_error *err)
{
    size_t pos = 0, n = ck->count;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(ck, order, i, n);
    for (size_t end = n; end-- > 1;) {
        size_t t = order[0];
        order[0] = order[end];
        order[end] = t;
        sift_down(ck, order, 0, end);
    }
    for (size_t i = 0; i < ck->count; i++) {
        const io_ckpt_tensor *t = &ck->tensors[order[i]];
        size_t b = ck->begin[order[i]];
        if (b < pos)
            return fail(err, IO_CKPT_EFORMAT,
                        "%s: tensors '%s' and '%s' overlap in the data "
                        "section",
                        path, ck->tensors[order[i - 1]].name, t->name);
        if (b > pos)
            return fail(err, IO_CKPT_EFORMAT,
                        "%s: %zu bytes before tensor '%s' belong to no "
                        "tensor",
                        path, b - pos, t->name);
        pos = ck->end[order[i]];
    }
    if (pos != data_size)
        return fail(err, IO_CKPT_EFORMAT,
                    "%s: %zu bytes at the end of the file belong to no "
                    "tensor",
                    path, data_size - pos);
    return ok(err);
}

/* Reads the data section in file order into aligned storage and checks
   the checksum. */
static io_ckpt_status read_data(const char *path, FILE *fp, io_checkpoint *ck, const size_t *order,
                                const char *checksum, uint32_t crc, io_ckpt_error *err)
{
    size_t total = 0, pos;
    for (size_t i = 0; i < ck->count; i++) {
        size_t bytes = ck->end[i] - ck->begin[i], padded = (bytes + 7) & ~(size_t)7;
        if (padded < bytes || total > SIZE_MAX - padded)
            return fail(err, IO_CKPT_EFORMAT, "%s: tensors too large", path);
        total += padded;
    }
    if (total) {
        ck->storage = mem_alloc(total);
        if (!ck->storage)
            return fail(err, IO_CKPT_ENOMEM, "out of memory for %zu bytes of tensors in %s", total,
                        path);
        ck->storage_size = total;
    }
    pos = 0;
    for (size_t i = 0; i < ck->count; i++) {
        io_ckpt_tensor *t = &ck->tensors[order[i]];
        size_t bytes = ck->end[order[i]] - ck->begin[order[i]];
        unsigned char *dst = ck->storage + pos;
        if (bytes && fread(dst, 1, bytes, fp) != bytes)
            return ferror(fp) ? fail(err, IO_CKPT_EIO, "cannot read %s: %s", path, strerror(errno))
                              : fail(err, IO_CKPT_EFORMAT, "%s: truncated file in tensor '%s'",
                                     path, t->name);
        crc = crc32_update(crc, dst, bytes);
        if (!host_is_little_endian())
            swap_bytes(dst, bytes, dtype_size(t->dtype));
        t->data = bytes ? dst : NULL;
        pos += (bytes + 7) & ~(size_t)7;
    }
    if (checksum) {
        char hex[9];
        snprintf(hex, sizeof hex, "%08lx", (unsigned long)crc);
        if (strcmp(hex, checksum) != 0)
            return fail(err, IO_CKPT_EFORMAT,
                        "%s: checksum mismatch (file says %.16s, content "
                        "gives %s): the file is corrupt",
                        path, checksum, hex);
        ck->verified = true;
    }
    return ok(err);
}

/* Parses the header JSON and fills ck; then reads the data. */
static io_ckpt_status parse_and_read(const char *path, FILE *fp, const char *json, size_t json_len,
                                     size_t data_size, io_checkpoint *ck, io_ckpt_error *err)
{
    const char *end = NULL, *checksum = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &end, 0);
    const cJSON *item;
    size_t *order = NULL, n = 0, order_n = 0;
    uint32_t crc = 0;
    io_ckpt_status st = IO_CKPT_OK;

    if (!root)
        return fail(err, IO_CKPT_EFORMAT,
                    "%s: the header is not valid JSON (error near byte "
                    "%zu of %zu; or out of memory)",
                    path, end && end >= json ? (size_t)(end - json) + 8 : 8, json_len);
    for (const char *p = end; p && p < json + json_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = fail(err, IO_CKPT_EFORMAT, "%s: unexpected bytes after the header's JSON", path);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = fail(err, IO_CKPT_EFORMAT, "%s: the header is not a JSON object", path);
        goto done;
    }
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "__metadata__") != 0)
            n++;
    }
    if (n) {
        ck->tensors = mem_alloc(n * sizeof *ck->tensors);
        ck->begin = mem_alloc(2 * n * sizeof(size_t));
        order = mem_alloc(n * sizeof *order);
        order_n = n;
        if (!ck->tensors || !ck->begin || !order) {
            mem_free(ck->tensors, n * sizeof *ck->tensors);
            mem_free(ck->begin, 2 * n * sizeof(size_t));
            ck->tensors = NULL;
            ck->begin = NULL;
            st = fail(err, IO_CKPT_ENOMEM, "out of memory reading %s", path);
            goto done;
        }
        memset(ck->tensors, 0, n * sizeof *ck->tensors);
        ck->end = ck->begin + n;
        ck->count = n;
    }
    n = 0;
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (ck->meta || checksum) {
                st = fail(err, IO_CKPT_EFORMAT, "%s: \"__metadata__\" appears twice", path);
                goto done;
            }
            st = parse_metadata(path, item, ck, &checksum, err);
        } else {
            for (size_t j = 0; j < n && st == IO_CKPT_OK; j++)
                if (strcmp(ck->tensors[j].name, item->string) == 0)
                    st = fail(err, IO_CKPT_EFORMAT, "%s: tensor '%s' appears twice", path,
                              item->string);
            if (st == IO_CKPT_OK)
                st = parse_tensor(path, item, ck, n++, data_size, err);
        }
        if (st != IO_CKPT_OK)
            goto done;
    }
    st = check_tiling(path, ck, order, data_size, err);
    if (st != IO_CKPT_OK)
        goto done;
    if (checksum) {
        for (size_t i = 0; i < ck->count; i++)
            crc = crc32_tensor(crc, &ck->tensors[i], ck->begin[i], ck->end[i]);
        for (size_t i = 0; i < ck->meta_count; i++) {
            crc = crc32_string0(crc, ck->meta[i].key);
            crc = crc32_string0(crc, ck->meta[i].value);
        }
    }
    st = read_data(path, fp, ck, order, checksum, crc, err);

done:
    mem_free(order, order_n * sizeof *order);
    cJSON_Delete(root);
    return st;
}

io_ckpt_status io_checkpoint_read(const char *path, io_checkpoint **out, io_ckpt_error *err)
{
    FILE *fp;
    struct stat sb;
    unsigned char len_le[8];
    uint64_t header_len = 0;
    size_t file_size, data_size;
    char *json = NULL;
    io_checkpoint *ck = NULL;
    io_ckpt_status st;

    if (!out)
        return fail(err, IO_CKPT_EINVAL, "io_checkpoint_read: out is NULL");
    *out = NULL;
    if (!path)
        return fail(err, IO_CKPT_EINVAL, "io_checkpoint_read: path is NULL");
    char msg[IO_CKPT_ERROR_MAX];
    fp = cr_fopen_regular(path, msg, sizeof msg);
    if (!fp)
        return fail(err, IO_CKPT_EIO, "%s", msg);
    if (fstat(fileno(fp), &sb) != 0) {
        st = fail(err, IO_CKPT_EIO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    file_size = (size_t)sb.st_size;
    if (fread(len_le, 1, 8, fp) != 8) {
        st = ferror(fp) ? fail(err, IO_CKPT_EIO, "cannot read %s: %s", path, strerror(errno))
                        : fail(err, IO_CKPT_EFORMAT,
                               "%s: truncated file: %zu bytes, shorter "
                               "than the 8-byte header length",
                               path, file_size);
        goto done;
    }
    for (int k = 7; k >= 0; k--)
        header_len = header_len << 8 | len_le[k];
    if (header_len < 2 || header_len > file_size - 8 || header_len > MAX_HEADER_BYTES) {
        st = fail(err, IO_CKPT_EFORMAT,
                  "%s: not a safetensors file or truncated: header length "
                  "%llu %s",
                  path, (unsigned long long)header_len,
                  header_len > MAX_HEADER_BYTES ? "is over the 100 MB limit"
                  : header_len < 2              ? "is too small"
                                                : "goes past the end of the file");
        goto done;
    }
    data_size = file_size - 8 - (size_t)header_len;
    json = mem_alloc((size_t)header_len);
    ck = mem_alloc(sizeof *ck);
    if (ck)
        memset(ck, 0, sizeof *ck);
    if (!json || !ck) {
        st = fail(err, IO_CKPT_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    if (fread(json, 1, (size_t)header_len, fp) != header_len) {
        st = ferror(fp) ? fail(err, IO_CKPT_EIO, "cannot read %s: %s", path, strerror(errno))
                        : fail(err, IO_CKPT_EFORMAT, "%s: truncated file in the header", path);
        goto done;
    }
    if (json[0] != '{') {
        st = fail(err, IO_CKPT_EFORMAT,
                  "%s: not a safetensors file: the header does not start "
                  "with '{'",
                  path);
        goto done;
    }
    st = parse_and_read(path, fp, json, (size_t)header_len, data_size, ck, err);

done:
    fclose(fp);
    mem_free(json, (size_t)header_len);
    if (st != IO_CKPT_OK) {
        io_checkpoint_destroy(ck);
        return st;
    }
    *out = ck;
    return ok(err);
}

/* ------------------------------------------------------------- queries */

bool io_checkpoint_verified(const io_checkpoint *ck) { return ck && ck->verified; }

size_t io_checkpoint_count(const io_checkpoint *ck) { return ck ? ck->count : 0; }

const io_ckpt_tensor *io_checkpoint_tensor_at(const io_checkpoint *ck, size_t i)
{
    return ck && i < ck->count ? &ck->tensors[i] : NULL;
}

const io_ckpt_tensor *io_checkpoint_find(const io_checkpoint *ck, const char *name)
{
    for (size_t i = 0; ck && name && i < ck->count; i++)
        if (strcmp(ck->tensors[i].name, name) == 0)
            return &ck->tensors[i];
    return NULL;
}

size_t io_checkpoint_meta_count(const io_checkpoint *ck) { return ck ? ck->meta_count : 0; }

const io_ckpt_meta *io_checkpoint_meta_at(const io_checkpoint *ck, size_t i)
{
    return ck && i < ck->meta_count ? &ck->meta[i] : NULL;
}

const char *io_checkpoint_meta(const io_checkpoint *ck, const char *key)
{
    for (size_t i = 0; ck && key && i < ck->meta_count; i++)
        if (strcmp(ck->meta[i].key, key) == 0)
            return ck->meta[i].value;
    return NULL;
}

io_ckpt_status io_checkpoint_copy(const io_checkpoint *ck, const char *name, io_ckpt_dtype dtype,
                                  int ndim, const size_t *shape, void *dst, io_ckpt_error *err)
{
    const io_ckpt_tensor *t;
    size_t bytes, count = 0;
    bool same = true;
    if (!ck || !name || (ndim > 0 && !shape))
        return fail(err, IO_CKPT_EINVAL, "io_checkpoint_copy: NULL argument");
    if (ndim < 0 || ndim > IO_CKPT_MAX_DIMS)
        return fail(err, IO_CKPT_EINVAL, "io_checkpoint_copy: %d dimensions", ndim);
    if (dtype != IO_CKPT_F32 && dtype != IO_CKPT_F64)
        return fail(err, IO_CKPT_EINVAL, "io_checkpoint_copy: unknown dtype %d", (int)dtype);
    t = io_checkpoint_find(ck, name);
    if (!t)
        return fail(err, IO_CKPT_EMISMATCH, "no tensor '%s' in the checkpoint", name);
    same = t->ndim == ndim;
    for (int k = 0; same && k < ndim; k++)
        same = t->shape[k] == shape[k];
    if (!same) {
        char have[160], want[160];
        return fail(err, IO_CKPT_EMISMATCH, "tensor '%s' has shape %s but %s is expected", name,
                    shape_text(have, sizeof have, t->shape, t->ndim),
                    shape_text(want, sizeof want, shape, ndim));
    }
    shape_bytes(t->shape, t->ndim, 1, &count);
    if (count && !dst)
        return fail(err, IO_CKPT_EINVAL, "io_checkpoint_copy: dst is NULL");
    if (t->dtype == dtype) {
        bytes = count * dtype_size(dtype);
        if (bytes)
            memcpy(dst, t->data, bytes);
    } else if (dtype == IO_CKPT_F32) {
        const double *src = t->data;
        float *d = dst;
        for (size_t i = 0; i < count; i++)
            d[i] = (float)src[i];
    } else {
        const float *src = t->data;
        double *d = dst;
        for (size_t i = 0; i < count; i++)
            d[i] = src[i];
    }
    return ok(err);
}
