/* Checkpoints in the safetensors format: an atomic, fully checked writer and
   a reader that validates every field before trusting it. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "chainrule/checkpoint.h"

#include "io_impl.h"

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

/* safetensors' own limit on the JSON header. */
#define MAX_HEADER_BYTES 100000000u
/* Offsets and dims are JSON numbers, exact up to 2^53. */
#define MAX_JSON_INT 9007199254740992.0

/* ------------------------------------------------------- shared helpers */

static size_t dtype_size(ad_dtype t) { return ad_dtype_bytes(t); }
static const char *dtype_name(ad_dtype t) { return t == AD_F64 ? "F64" : "F32"; }

static const char *shape_text(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < ndim && used < size; k++)
        used +=
            (size_t)snprintf(buf + used, size - used, "%s%lld", k ? ", " : "", (long long)shape[k]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

static uint32_t crc32_string0(uint32_t crc, const char *s)
{
    return ad_crc32(crc, s, strlen(s) + 1); /* with its 0 byte */
}

/* The checksum's record of one tensor: name, dtype, shape, offsets. */
static uint32_t crc32_tensor(uint32_t crc, const io_array *t, size_t begin, size_t end)
{
    char num[48];
    crc = crc32_string0(crc, t->name);
    crc = crc32_string0(crc, dtype_name(t->dtype));
    for (int k = 0; k < t->ndim; k++) {
        int len = snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        crc = ad_crc32(crc, num, (size_t)len);
    }
    crc = ad_crc32(crc, "", 1);
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

static int check_inputs(const char *path, const io_array *tensors, size_t count,
                        const io_ckpt_meta *meta, size_t meta_count, ad_error *err)
{
    if (!path || !*path)
        return ad_error_set(err, AD_EINVAL, "checkpoint path is empty");
    if ((count && !tensors) || (meta_count && !meta))
        return ad_error_set(err, AD_EINVAL, "%s: tensor or metadata array is NULL", path);
    for (size_t i = 0; i < count; i++) {
        const io_array *t = &tensors[i];
        size_t bytes;
        if (!t->name || !*t->name)
            return ad_error_set(err, AD_EINVAL, "%s: tensor %zu has no name", path, i);
        if (!valid_utf8(t->name))
            return ad_error_set(err, AD_EINVAL, "%s: tensor %zu's name is not valid UTF-8", path,
                                i);
        if (strcmp(t->name, "__metadata__") == 0)
            return ad_error_set(err, AD_EINVAL, "%s: '__metadata__' is reserved, not a tensor name",
                                path);
        if (t->dtype != AD_F32 && t->dtype != AD_F64)
            return ad_error_set(err, AD_EINVAL, "%s: tensor '%s' has unknown dtype %d", path,
                                t->name, (int)t->dtype);
        if (t->ndim < 0 || t->ndim > AD_MAX_DIMS)
            return ad_error_set(err, AD_EINVAL,
                                "%s: tensor '%s' has %d dimensions (0 to %d allowed)", path,
                                t->name, t->ndim, AD_MAX_DIMS);
        for (int k = 0; k < t->ndim; k++)
            if (t->shape[k] < 0)
                return ad_error_set(err, AD_EINVAL,
                                    "%s: tensor '%s' has a negative size %lld on axis %d", path,
                                    t->name, (long long)t->shape[k], k);
        for (int k = 0; k < t->ndim; k++)
            if ((double)t->shape[k] > MAX_JSON_INT)
                return ad_error_set(err, AD_EINVAL, "%s: tensor '%s' is too large", path, t->name);
        if (!ad_shape_bytes(t->shape, t->ndim, dtype_size(t->dtype), &bytes))
            return ad_error_set(err, AD_EINVAL, "%s: tensor '%s' is too large", path, t->name);
        if (bytes && !t->data)
            return ad_error_set(err, AD_EINVAL, "%s: tensor '%s' has no data", path, t->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0)
                return ad_error_set(err, AD_EINVAL, "%s: two tensors are called '%s'", path,
                                    t->name);
    }
    for (size_t i = 0; i < meta_count; i++) {
        if (!meta[i].key || !meta[i].value)
            return ad_error_set(err, AD_EINVAL, "%s: metadata entry %zu has a NULL key or value",
                                path, i);
        if (!valid_utf8(meta[i].key) || !valid_utf8(meta[i].value))
            return ad_error_set(err, AD_EINVAL, "%s: metadata entry '%s' is not valid UTF-8", path,
                                valid_utf8(meta[i].key) ? meta[i].key : "?");
        if (strcmp(meta[i].key, IO_CKPT_CHECKSUM_KEY) == 0)
            return ad_error_set(err, AD_EINVAL,
                                "%s: metadata key '%s' is reserved for the checksum", path,
                                IO_CKPT_CHECKSUM_KEY);
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta[j].key, meta[i].key) == 0)
                return ad_error_set(err, AD_EINVAL, "%s: two metadata entries are called '%s'",
                                    path, meta[i].key);
    }
    return ad_error_ok(err);
}

static size_t tensor_bytes(const io_array *t)
{
    size_t bytes = 0;
    ad_shape_bytes(t->shape, t->ndim, dtype_size(t->dtype), &bytes); /* checked before */
    return bytes;
}

/* The data section's layout: F64 tensors first so every tensor is aligned
   to its element size; order[] lists tensors in data order. */
static void layout(const io_array *tensors, size_t count, size_t *order, size_t *begin)
{
    size_t n = 0, pos = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < count; i++)
            if ((tensors[i].dtype == AD_F64) == (pass == 0)) {
                order[n++] = i;
                begin[i] = pos;
                pos += tensor_bytes(&tensors[i]);
            }
}

/* Feeds a tensor's little-endian bytes to out(ctx, bytes, len) in chunks. */
typedef bool (*sink_fn)(void *ctx, const void *bytes, size_t len);

static bool emit_tensor_le(const io_array *t, sink_fn out, void *ctx)
{
    size_t bytes = tensor_bytes(t), esize = dtype_size(t->dtype);
    const unsigned char *src = t->data;
    unsigned char chunk[4096];
    if (ad_host_is_little_endian())
        return bytes == 0 || out(ctx, src, bytes);
    for (size_t done = 0; done < bytes;) {
        size_t len = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
        memcpy(chunk, src + done, len);
        ad_swap_bytes(chunk, len, esize);
        if (!out(ctx, chunk, len))
            return false;
        done += len;
    }
    return true;
}

static bool crc_sink(void *ctx, const void *bytes, size_t len)
{
    uint32_t *crc = ctx;
    *crc = ad_crc32(*crc, bytes, len);
    return true;
}

static bool file_sink(void *ctx, const void *bytes, size_t len)
{
    return fwrite(bytes, 1, len, (FILE *)ctx) == len;
}

/* The header's JSON through cJSON (the reader's parser too), copied into a
   buffer from mem and padded with spaces so the data starts 8-aligned. */
typedef struct {
    char *text;
    size_t len, size;
} header;

static int build_header(const ad_allocator *mem, const char *path, const io_array *tensors,
                        size_t count, const io_ckpt_meta *meta, size_t meta_count,
                        const size_t *order, const size_t *begin, header *h, ad_error *err)
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

    cJSON *root = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(root, "__metadata__");
    bool ok = md != NULL;
    for (size_t i = 0; ok && i < meta_count; i++)
        ok = cJSON_AddStringToObject(md, meta[i].key, meta[i].value) != NULL;
    ok = ok && cJSON_AddStringToObject(md, IO_CKPT_CHECKSUM_KEY, hex);
    for (size_t i = 0; ok && i < count; i++) {
        const io_array *t = &tensors[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name), *shape = NULL, *offsets = NULL;
        ok = o && cJSON_AddStringToObject(o, "dtype", dtype_name(t->dtype)) &&
             (shape = cJSON_AddArrayToObject(o, "shape")) &&
             (offsets = cJSON_AddArrayToObject(o, "data_offsets"));
        for (int k = 0; ok && k < t->ndim; k++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[k]));
        ok =
            ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)begin[i])) &&
            cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(begin[i] + tensor_bytes(t))));
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json)
        return ad_error_set(err, AD_ENOMEM, "out of memory building the header of %s", path);
    h->len = strlen(json);
    h->len += (8 - h->len % 8) % 8;
    h->size = h->len + 1;
    h->text = ad_alloc(mem, h->size);
    if (h->text) {
        memset(h->text, ' ', h->len);
        memcpy(h->text, json, strlen(json));
        h->text[h->len] = '\0';
    }
    cJSON_free(json);
    if (!h->text)
        return ad_error_set(err, AD_ENOMEM, "out of memory building the header of %s", path);
    return 0;
}

/* What write_all needs, for io_write_atomic's callback. */
typedef struct {
    const header *h;
    const io_array *tensors;
    size_t count;
    const size_t *order;
} write_job;

/* Writes header and data to fp; false with errno set on failure. */
static bool write_all(FILE *fp, void *ctx)
{
    const write_job *job = ctx;
    unsigned char len_le[8];
    ad_store_le(len_le, job->h->len, 8);
    if (fwrite(len_le, 1, 8, fp) != 8 || fwrite(job->h->text, 1, job->h->len, fp) != job->h->len)
        return false;
    for (size_t i = 0; i < job->count; i++)
        if (!emit_tensor_le(&job->tensors[job->order[i]], file_sink, fp))
            return false;
    return true;
}

int io_checkpoint_write_with(const char *path, const io_array *tensors, int64_t ntensors,
                             const io_ckpt_meta *meta, int64_t nmeta, ad_alloc_fn alloc, void *ud,
                             ad_error *err)
{
    ad_allocator mem = ad_allocator_of(alloc, ud);
    header h = {NULL, 0, 0};
    size_t *order = NULL, *begin = NULL;
    if (ntensors < 0 || nmeta < 0)
        return ad_error_set(
            err, AD_EINVAL,
            "io_checkpoint_write: negative count (%lld tensors, %lld metadata entries)",
            (long long)ntensors, (long long)nmeta);
    size_t count = (size_t)ntensors, meta_count = (size_t)nmeta;
    int st = check_inputs(path, tensors, count, meta, meta_count, err);
    if (st != 0)
        return st;
    if (count > SIZE_MAX / (2 * sizeof(size_t)))
        return ad_error_set(err, AD_EINVAL, "%s: too many tensors", path);
    if (count) {
        order = ad_alloc(&mem, 2 * count * sizeof(size_t));
        if (!order)
            return ad_error_set(err, AD_ENOMEM, "out of memory writing %s", path);
        begin = order + count;
    }
    layout(tensors, count, order, begin);
    st = build_header(&mem, path, tensors, count, meta, meta_count, order, begin, &h, err);
    if (st == 0) {
        write_job job = {&h, tensors, count, order};
        st = io_write_atomic_with(path, write_all, &job, mem.fn, mem.ud, err);
    }
    ad_free(&mem, h.text, h.size);
    ad_free(&mem, order, 2 * count * sizeof(size_t));
    return st == 0 ? ad_error_ok(err) : st;
}

int io_checkpoint_write(const char *path, const io_array *tensors, int64_t count,
                        const io_ckpt_meta *meta, int64_t meta_count, ad_error *err)
{
    return io_checkpoint_write_with(path, tensors, count, meta, meta_count, NULL, NULL, err);
}

/* ------------------------------------------------------------------ reader */

struct io_checkpoint {
    ad_allocator mem;  /* owns the struct and everything below */
    io_array *tensors; /* (count) in header order */
    size_t count;
    io_ckpt_meta *meta; /* (meta_count) in header order, checksum excluded */
    size_t meta_count, meta_cap;
    unsigned char *storage; /* tensor data, each tensor 8-aligned */
    size_t storage_size;
    size_t *begin, *end; /* (count) data_offsets from the file */
    bool verified;       /* the checksum was present and matched */
};

void io_checkpoint_free(io_checkpoint *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; ck->tensors && i < ck->count; i++)
        ad_strfree(&ck->mem, ck->tensors[i].name);
    for (size_t i = 0; ck->meta && i < ck->meta_count; i++) {
        ad_strfree(&ck->mem, ck->meta[i].key);
        ad_strfree(&ck->mem, ck->meta[i].value);
    }
    ad_free(&ck->mem, ck->tensors, ck->count * sizeof *ck->tensors);
    ad_free(&ck->mem, ck->meta, ck->meta_cap * sizeof *ck->meta);
    ad_free(&ck->mem, ck->begin, 2 * ck->count * sizeof(size_t));
    ad_free(&ck->mem, ck->storage, ck->storage_size);
    ad_free(&ck->mem, ck, sizeof *ck);
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
static int parse_tensor(const char *path, const cJSON *item, io_checkpoint *ck, size_t i,
                        size_t data_size, ad_error *err)
{
    io_array *t = &ck->tensors[i];
    const char *name = item->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    size_t bytes, k = 0;
    const cJSON *dim;
    char shape_buf[160];

    if (!cJSON_IsObject(item))
        return ad_error_set(err, AD_EFORMAT, "%s: tensor '%s' is not a JSON object", path, name);
    if (!cJSON_IsString(dtype))
        return ad_error_set(err, AD_EFORMAT, "%s: tensor '%s' has no \"dtype\" string", path, name);
    if (strcmp(dtype->valuestring, "F32") == 0)
        t->dtype = AD_F32;
    else if (strcmp(dtype->valuestring, "F64") == 0)
        t->dtype = AD_F64;
    else
        return ad_error_set(err, AD_EFORMAT,
                            "%s: tensor '%s' has dtype '%.20s'; only F32 and F64 "
                            "are supported",
                            path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return ad_error_set(err, AD_EFORMAT, "%s: tensor '%s' has no \"shape\" array", path, name);
    if (cJSON_GetArraySize(shape) > AD_MAX_DIMS)
        return ad_error_set(err, AD_EFORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", path,
                            name, cJSON_GetArraySize(shape), AD_MAX_DIMS);
    cJSON_ArrayForEach(dim, shape)
    {
        size_t size;
        if (!json_size(dim, &size))
            return ad_error_set(err, AD_EFORMAT,
                                "%s: tensor '%s': shape entry %zu is not a "
                                "non-negative integer",
                                path, name, k);
        t->shape[k++] = (int64_t)size;
    }
    t->ndim = (int)k;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_size(cJSON_GetArrayItem(offs, 0), &ck->begin[i]) ||
        !json_size(cJSON_GetArrayItem(offs, 1), &ck->end[i]) || ck->begin[i] > ck->end[i])
        return ad_error_set(err, AD_EFORMAT,
                            "%s: tensor '%s' needs \"data_offsets\" [begin, end] "
                            "with 0 <= begin <= end",
                            path, name);
    shape_text(shape_buf, sizeof shape_buf, t->shape, t->ndim);
    if (!ad_shape_bytes(t->shape, t->ndim, dtype_size(t->dtype), &bytes))
        return ad_error_set(err, AD_EFORMAT, "%s: tensor '%s': shape %s is too large", path, name,
                            shape_buf);
    if (ck->end[i] > data_size)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: truncated file: tensor '%s' has data_offsets "
                            "[%zu, %zu] but the data section holds %zu bytes",
                            path, name, ck->begin[i], ck->end[i], data_size);
    if (bytes != ck->end[i] - ck->begin[i])
        return ad_error_set(err, AD_EFORMAT,
                            "%s: tensor '%s': shape %s of %s needs %zu bytes but "
                            "data_offsets [%zu, %zu] hold %zu",
                            path, name, shape_buf, dtype_name(t->dtype), bytes, ck->begin[i],
                            ck->end[i], ck->end[i] - ck->begin[i]);
    t->name = ad_strndup(&ck->mem, name, strlen(name));
    if (!t->name)
        return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
    return ad_error_ok(err);
}

static int parse_metadata(const char *path, const cJSON *obj, io_checkpoint *ck,
                          const char **checksum, ad_error *err)
{
    const cJSON *item;
    size_t n = 0;
    if (!cJSON_IsObject(obj))
        return ad_error_set(err, AD_EFORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    cJSON_ArrayForEach(item, obj)
    {
        if (!cJSON_IsString(item))
            return ad_error_set(err, AD_EFORMAT, "%s: metadata '%s' is not a string", path,
                                item->string);
        if (strcmp(item->string, IO_CKPT_CHECKSUM_KEY) == 0)
            *checksum = item->valuestring;
        else
            n++;
    }
    if (n) {
        ck->meta = ad_alloc(&ck->mem, n * sizeof *ck->meta);
        if (!ck->meta)
            return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
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
                return ad_error_set(err, AD_EFORMAT, "%s: metadata '%s' appears twice", path,
                                    item->string);
        m = &ck->meta[ck->meta_count++];
        m->key = ad_strndup(&ck->mem, item->string, strlen(item->string));
        m->value =
            m->key ? ad_strndup(&ck->mem, item->valuestring, strlen(item->valuestring)) : NULL;
        if (!m->value)
            return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
    }
    return ad_error_ok(err);
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
static int check_tiling(const char *path, const io_checkpoint *ck, size_t *order, size_t data_size,
                        ad_error *err)
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
        const io_array *t = &ck->tensors[order[i]];
        size_t b = ck->begin[order[i]];
        if (b < pos)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: tensors '%s' and '%s' overlap in the data "
                                "section",
                                path, ck->tensors[order[i - 1]].name, t->name);
        if (b > pos)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: %zu bytes before tensor '%s' belong to no "
                                "tensor",
                                path, b - pos, t->name);
        pos = ck->end[order[i]];
    }
    if (pos != data_size)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: %zu bytes at the end of the file belong to no "
                            "tensor",
                            path, data_size - pos);
    return ad_error_ok(err);
}

/* Reads the data section in file order into aligned storage and checks
   the checksum. */
static int read_data(const char *path, FILE *fp, io_checkpoint *ck, const size_t *order,
                     const char *checksum, uint32_t crc, ad_error *err)
{
    size_t total = 0, pos;
    for (size_t i = 0; i < ck->count; i++) {
        size_t bytes = ck->end[i] - ck->begin[i], padded = (bytes + 7) & ~(size_t)7;
        if (padded < bytes || total > SIZE_MAX - padded)
            return ad_error_set(err, AD_EFORMAT, "%s: tensors too large", path);
        total += padded;
    }
    if (total) {
        ck->storage = ad_alloc(&ck->mem, total);
        if (!ck->storage)
            return ad_error_set(err, AD_ENOMEM, "out of memory for %zu bytes of tensors in %s",
                                total, path);
        ck->storage_size = total;
    }
    pos = 0;
    for (size_t i = 0; i < ck->count; i++) {
        io_array *t = &ck->tensors[order[i]];
        size_t bytes = ck->end[order[i]] - ck->begin[order[i]];
        unsigned char *dst = ck->storage + pos;
        if (bytes && fread(dst, 1, bytes, fp) != bytes)
            return ferror(fp)
                       ? ad_error_set(err, AD_EIO, "cannot read %s: %s", path, strerror(errno))
                       : ad_error_set(err, AD_EFORMAT, "%s: truncated file in tensor '%s'", path,
                                      t->name);
        crc = ad_crc32(crc, dst, bytes);
        if (!ad_host_is_little_endian())
            ad_swap_bytes(dst, bytes, dtype_size(t->dtype));
        t->data = bytes ? dst : NULL;
        pos += (bytes + 7) & ~(size_t)7;
    }
    if (checksum) {
        char hex[9];
        snprintf(hex, sizeof hex, "%08lx", (unsigned long)crc);
        if (strcmp(hex, checksum) != 0)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: checksum mismatch (file says %.16s, content "
                                "gives %s): the file is corrupt",
                                path, checksum, hex);
        ck->verified = true;
    }
    return ad_error_ok(err);
}

/* Parses the header JSON and fills ck; then reads the data. */
static int parse_and_read(const char *path, FILE *fp, const char *json, size_t json_len,
                          size_t data_size, io_checkpoint *ck, ad_error *err)
{
    const char *end = NULL, *checksum = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &end, 0);
    const cJSON *item;
    size_t *order = NULL, n = 0, order_n = 0;
    uint32_t crc = 0;
    int st = 0;

    if (!root)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: the header is not valid JSON (error near byte "
                            "%zu of %zu; or out of memory)",
                            path, end && end >= json ? (size_t)(end - json) + 8 : 8, json_len);
    for (const char *p = end; p && p < json + json_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st =
                ad_error_set(err, AD_EFORMAT, "%s: unexpected bytes after the header's JSON", path);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = ad_error_set(err, AD_EFORMAT, "%s: the header is not a JSON object", path);
        goto done;
    }
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "__metadata__") != 0)
            n++;
    }
    if (n) {
        ck->tensors = ad_alloc(&ck->mem, n * sizeof *ck->tensors);
        ck->begin = ad_alloc(&ck->mem, 2 * n * sizeof(size_t));
        order = ad_alloc(&ck->mem, n * sizeof *order);
        order_n = n;
        if (!ck->tensors || !ck->begin || !order) {
            ad_free(&ck->mem, ck->tensors, n * sizeof *ck->tensors);
            ad_free(&ck->mem, ck->begin, 2 * n * sizeof(size_t));
            ck->tensors = NULL;
            ck->begin = NULL;
            st = ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
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
                st = ad_error_set(err, AD_EFORMAT, "%s: \"__metadata__\" appears twice", path);
                goto done;
            }
            st = parse_metadata(path, item, ck, &checksum, err);
        } else {
            for (size_t j = 0; j < n && st == 0; j++)
                if (strcmp(ck->tensors[j].name, item->string) == 0)
                    st = ad_error_set(err, AD_EFORMAT, "%s: tensor '%s' appears twice", path,
                                      item->string);
            if (st == 0)
                st = parse_tensor(path, item, ck, n++, data_size, err);
        }
        if (st != 0)
            goto done;
    }
    st = check_tiling(path, ck, order, data_size, err);
    if (st != 0)
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
    ad_free(&ck->mem, order, order_n * sizeof *order);
    cJSON_Delete(root);
    return st;
}

io_checkpoint *io_checkpoint_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_allocator mem = ad_allocator_of(alloc, ud);
    FILE *fp;
    struct stat sb;
    unsigned char len_le[8];
    uint64_t header_len = 0;
    size_t file_size, data_size;
    char *json = NULL;
    io_checkpoint *ck = NULL;
    int st;

    if (!path) {
        ad_error_set(err, AD_EINVAL, "io_checkpoint_read: path is NULL");
        return NULL;
    }
    fp = io_fopen_regular(path, err);
    if (!fp)
        return NULL;
    if (fstat(fileno(fp), &sb) != 0) {
        st = ad_error_set(err, AD_EIO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    file_size = (size_t)sb.st_size;
    if (fread(len_le, 1, 8, fp) != 8) {
        st = ferror(fp) ? ad_error_set(err, AD_EIO, "cannot read %s: %s", path, strerror(errno))
                        : ad_error_set(err, AD_EFORMAT,
                                       "%s: truncated file: %zu bytes, shorter "
                                       "than the 8-byte header length",
                                       path, file_size);
        goto done;
    }
    header_len = ad_load_le(len_le, 8);
    if (header_len < 2 || header_len > file_size - 8 || header_len > MAX_HEADER_BYTES) {
        st = ad_error_set(err, AD_EFORMAT,
                          "%s: not a safetensors file or truncated: header length "
                          "%llu %s",
                          path, (unsigned long long)header_len,
                          header_len > MAX_HEADER_BYTES ? "is over the 100 MB limit"
                          : header_len < 2              ? "is too small"
                                                        : "goes past the end of the file");
        goto done;
    }
    data_size = file_size - 8 - (size_t)header_len;
    json = ad_alloc(&mem, (size_t)header_len);
    ck = ad_alloc(&mem, sizeof *ck);
    if (ck) {
        memset(ck, 0, sizeof *ck);
        ck->mem = mem;
    }
    if (!json || !ck) {
        st = ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    if (fread(json, 1, (size_t)header_len, fp) != header_len) {
        st = ferror(fp) ? ad_error_set(err, AD_EIO, "cannot read %s: %s", path, strerror(errno))
                        : ad_error_set(err, AD_EFORMAT, "%s: truncated file in the header", path);
        goto done;
    }
    if (json[0] != '{') {
        st = ad_error_set(err, AD_EFORMAT,
                          "%s: not a safetensors file: the header does not start "
                          "with '{'",
                          path);
        goto done;
    }
    st = parse_and_read(path, fp, json, (size_t)header_len, data_size, ck, err);

done:
    fclose(fp);
    ad_free(&mem, json, (size_t)header_len);
    if (st != 0) {
        io_checkpoint_free(ck);
        return NULL;
    }
    ad_error_ok(err);
    return ck;
}

io_checkpoint *io_checkpoint_read(const char *path, ad_error *err)
{
    return io_checkpoint_read_with(path, NULL, NULL, err);
}

/* ------------------------------------------------------------- queries */

bool io_checkpoint_verified(const io_checkpoint *ck) { return ck && ck->verified; }

int64_t io_checkpoint_count(const io_checkpoint *ck) { return ck ? (int64_t)ck->count : 0; }

const io_array *io_checkpoint_tensor_at(const io_checkpoint *ck, int64_t i)
{
    return ck && i >= 0 && (uint64_t)i < ck->count ? &ck->tensors[i] : NULL;
}

const io_array *io_checkpoint_find(const io_checkpoint *ck, const char *name)
{
    for (size_t i = 0; ck && name && i < ck->count; i++)
        if (strcmp(ck->tensors[i].name, name) == 0)
            return &ck->tensors[i];
    return NULL;
}

int64_t io_checkpoint_meta_count(const io_checkpoint *ck)
{
    return ck ? (int64_t)ck->meta_count : 0;
}

const io_ckpt_meta *io_checkpoint_meta_at(const io_checkpoint *ck, int64_t i)
{
    return ck && i >= 0 && (uint64_t)i < ck->meta_count ? &ck->meta[i] : NULL;
}

const char *io_checkpoint_meta(const io_checkpoint *ck, const char *key)
{
    for (size_t i = 0; ck && key && i < ck->meta_count; i++)
        if (strcmp(ck->meta[i].key, key) == 0)
            return ck->meta[i].value;
    return NULL;
}

int io_checkpoint_copy(const io_checkpoint *ck, const char *name, ad_dtype dtype, int ndim,
                       const int64_t *shape, void *dst, ad_error *err)
{
    const io_array *t;
    size_t bytes, count = 0;
    bool same = true;
    if (!ck || !name || (ndim > 0 && !shape))
        return ad_error_set(err, AD_EINVAL, "io_checkpoint_copy: NULL argument");
    if (ndim < 0 || ndim > AD_MAX_DIMS)
        return ad_error_set(err, AD_EINVAL, "io_checkpoint_copy: %d dimensions", ndim);
    if (dtype != AD_F32 && dtype != AD_F64)
        return ad_error_set(err, AD_EINVAL, "io_checkpoint_copy: unknown dtype %d", (int)dtype);
    for (int k = 0; k < ndim; k++)
        if (shape[k] < 0)
            return ad_error_set(err, AD_EINVAL,
                                "io_checkpoint_copy: size %lld of axis %d is negative",
                                (long long)shape[k], k);
    t = io_checkpoint_find(ck, name);
    if (!t)
        return ad_error_set(err, AD_EMISMATCH, "no tensor '%s' in the checkpoint", name);
    same = t->ndim == ndim;
    for (int k = 0; same && k < ndim; k++)
        same = t->shape[k] == shape[k];
    if (!same) {
        char have[160], want[160];
        return ad_error_set(err, AD_EMISMATCH, "tensor '%s' has shape %s but %s is expected", name,
                            shape_text(have, sizeof have, t->shape, t->ndim),
                            shape_text(want, sizeof want, shape, ndim));
    }
    ad_shape_bytes(t->shape, t->ndim, 1, &count);
    if (count && !dst)
        return ad_error_set(err, AD_EINVAL, "io_checkpoint_copy: dst is NULL");
    if (t->dtype == dtype) {
        bytes = count * dtype_size(dtype);
        if (bytes)
            memcpy(dst, t->data, bytes);
    } else if (dtype == AD_F32) {
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
    return ad_error_ok(err);
}
