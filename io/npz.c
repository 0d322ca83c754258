/* .npz archives: the zip container (APPNOTE.TXT 6.3) around .npy members.
   Writing: stored members, one local header each, then the central
   directory and its end record; sizes and CRCs known up front (two passes
   over the data), so no data descriptors. Reading: the whole file in
   memory, the central directory found from the end record (zip64 end
   record when a field is saturated), every offset and size checked before
   it is used, stored or deflate members (raw inflate, zlib), CRC-32
   checked. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "chainrule/io.h"
#include "io_impl.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define END_SIZE 22u
#define END64_SIZE 56u
#define LOCATOR64_SIZE 20u
#define FLAG_ENCRYPTED 0x0001u
#define FLAG_UTF8 0x0800u
#define METHOD_STORED 0u
#define METHOD_DEFLATE 8u
#define ZIP_VERSION 20u      /* 2.0: deflate, directories */
#define DOS_DATE_1980 0x0021 /* 1980-01-01, for reproducible archives */
/* deflate expands at most ~1032:1; a claim beyond that is corrupt */
#define MAX_DEFLATE_RATIO 1032u
#define NPY_HEADER_MAX 512

struct io_npz {
    ad_allocator mem; /* owns the struct, the arrays, their names and data */
    size_t count;
    io_array *arrays;
};

/* zip's little-endian fields (support_impl.h's byte-order helpers) */
static uint16_t rd16(const unsigned char *p) { return (uint16_t)ad_load_le(p, 2); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)ad_load_le(p, 4); }
static uint64_t rd64(const unsigned char *p) { return ad_load_le(p, 8); }
static unsigned char *wr16(unsigned char *p, uint32_t v) { return ad_store_le(p, v, 2); }
static unsigned char *wr32(unsigned char *p, uint32_t v) { return ad_store_le(p, v, 4); }

/* ----------------------------------------------------------------- writing */

typedef struct {
    unsigned char header[NPY_HEADER_MAX];
    size_t header_len;
    size_t name_len; /* with ".npy" */
    uint32_t crc;
    uint32_t size;   /* npy header + data */
    uint32_t offset; /* of the local header */
} member;

typedef struct {
    const io_array *arrays;
    member *members;
    size_t count;
    uint32_t cd_offset, cd_size;
} zip_job;

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

/* The fields local and central headers share, from "version needed" on. */
static unsigned char *common_fields(unsigned char *p, const member *mb)
{
    p = wr16(p, ZIP_VERSION);
    p = wr16(p, FLAG_UTF8);
    p = wr16(p, METHOD_STORED);
    p = wr16(p, 0); /* time 00:00:00 */
    p = wr16(p, DOS_DATE_1980);
    p = wr32(p, mb->crc);
    p = wr32(p, mb->size); /* compressed */
    p = wr32(p, mb->size); /* uncompressed */
    p = wr16(p, (uint32_t)mb->name_len);
    return wr16(p, 0); /* extra field length */
}

static bool write_name(FILE *fp, const char *name, size_t name_len)
{
    return file_sink(fp, name, name_len - 4) && file_sink(fp, ".npy", 4);
}

static bool write_zip(FILE *fp, void *ctx)
{
    const zip_job *job = ctx;
    unsigned char buf[CENTRAL_SIZE], *p;
    for (size_t i = 0; i < job->count; i++) {
        const member *mb = &job->members[i];
        p = common_fields(wr32(buf, SIG_LOCAL), mb);
        if (!file_sink(fp, buf, (size_t)(p - buf)) ||
            !write_name(fp, job->arrays[i].name, mb->name_len) ||
            !file_sink(fp, mb->header, mb->header_len) ||
            !io_emit_le(&job->arrays[i], file_sink, fp))
            return false;
    }
    for (size_t i = 0; i < job->count; i++) {
        const member *mb = &job->members[i];
        p = wr32(buf, SIG_CENTRAL);
        p = wr16(p, ZIP_VERSION | 3u << 8); /* made by: 2.0 on Unix */
        p = common_fields(p, mb);
        p = wr16(p, 0);              /* comment length */
        p = wr16(p, 0);              /* disk number */
        p = wr16(p, 0);              /* internal attributes */
        p = wr32(p, 0100644u << 16); /* external: a regular file, rw-r--r-- */
        p = wr32(p, mb->offset);
        if (!file_sink(fp, buf, (size_t)(p - buf)) ||
            !write_name(fp, job->arrays[i].name, mb->name_len))
            return false;
    }
    p = wr32(buf, SIG_END);
    p = wr16(p, 0);
    p = wr16(p, 0);
    p = wr16(p, (uint32_t)job->count);
    p = wr16(p, (uint32_t)job->count);
    p = wr32(p, job->cd_size);
    p = wr32(p, job->cd_offset);
    p = wr16(p, 0); /* comment length */
    return file_sink(fp, buf, (size_t)(p - buf));
}

int io_npz_write_with(const char *path, const io_array *arrays, int64_t narrays, ad_alloc_fn alloc,
                      void *ud, ad_error *err)
{
    ad_allocator mem = ad_allocator_of(alloc, ud);
    char what[64];
    if (narrays < 0)
        return ad_error_set(err, AD_EINVAL, "io_npz_write: negative count %lld",
                            (long long)narrays);
    if (!path || (!arrays && narrays))
        return ad_error_set(err, AD_EINVAL, "io_npz_write: NULL argument");
    size_t count = (size_t)narrays;
    if (count > 0xFFFF)
        return ad_error_set(err, AD_EINVAL, "%s: %zu arrays (a zip without zip64 holds 65535)",
                            path, count);
    member *members = ad_alloc(&mem, count * sizeof *members);
    if (count && !members)
        return ad_error_set(err, AD_ENOMEM, "out of memory writing %s", path);
    int st = 0;
    uint64_t pos = 0, cd_size = 0;
    for (size_t i = 0; i < count && st == 0; i++) {
        const io_array *a = &arrays[i];
        member *mb = &members[i];
        snprintf(what, sizeof what, "array %zu", i);
        st = io_check_array(path, what, a, err);
        if (st != 0)
            break;
        if (!a->name || !a->name[0]) {
            st = ad_error_set(err, AD_EINVAL, "%s: array %zu has no name", path, i);
            break;
        }
        mb->name_len = strlen(a->name) + 4;
        if (mb->name_len > 65000) {
            st = ad_error_set(err, AD_EINVAL, "%s: the name of array %zu is too long", path, i);
            break;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(arrays[k].name, a->name) == 0) {
                st = ad_error_set(err, AD_EINVAL, "%s: two arrays are named '%s'", path, a->name);
                break;
            }
        if (st != 0)
            break;
        mb->header_len = io_npy_header(a, mb->header, sizeof mb->header);
        uint64_t size = (uint64_t)mb->header_len + io_array_bytes(a);
        if (!mb->header_len || size > 0xFFFFFFFEu || pos > 0xFFFFFFFEu) {
            st = ad_error_set(err, AD_EINVAL,
                              "%s: array '%s' goes past 4 GiB (zip64 is not written)", path,
                              a->name);
            break;
        }
        mb->offset = (uint32_t)pos;
        mb->size = (uint32_t)size;
        mb->crc = ad_crc32(0, mb->header, mb->header_len);
        io_emit_le(a, crc_sink, &mb->crc);
        pos += LOCAL_SIZE + mb->name_len + size;
        cd_size += CENTRAL_SIZE + mb->name_len;
    }
    if (st == 0 && (pos > 0xFFFFFFFEu || cd_size > 0xFFFFFFFEu - pos))
        st = ad_error_set(err, AD_EINVAL, "%s: the archive goes past 4 GiB (zip64 is not written)",
                          path);
    if (st == 0) {
        zip_job job = {arrays, members, count, (uint32_t)pos, (uint32_t)cd_size};
        st = io_write_atomic_with(path, write_zip, &job, mem.fn, mem.ud, err);
    }
    ad_free(&mem, members, count * sizeof *members);
    return st;
}

int io_npz_write(const char *path, const io_array *arrays, int64_t count, ad_error *err)
{
    return io_npz_write_with(path, arrays, count, NULL, NULL, err);
}

/* ----------------------------------------------------------------- reading */

static void npz_free(io_npz *npz, size_t filled)
{
    ad_allocator mem = npz->mem;
    for (size_t i = 0; i < filled; i++)
        io_array_release(&mem, &npz->arrays[i]);
    ad_free(&mem, npz->arrays, npz->count * sizeof *npz->arrays);
    ad_free(&mem, npz, sizeof *npz);
}

void io_npz_free(io_npz *npz)
{
    if (npz)
        npz_free(npz, npz->count);
}

int64_t io_npz_count(const io_npz *npz) { return npz ? (int64_t)npz->count : 0; }

const io_array *io_npz_at(const io_npz *npz, int64_t i)
{
    return npz && i >= 0 && (uint64_t)i < npz->count ? &npz->arrays[i] : NULL;
}

const io_array *io_npz_find(const io_npz *npz, const char *name)
{
    if (!npz || !name)
        return NULL;
    for (size_t i = 0; i < npz->count; i++)
        if (strcmp(npz->arrays[i].name, name) == 0)
            return &npz->arrays[i];
    return NULL;
}

/* Where the central directory is. */
typedef struct {
    uint64_t entries, offset, size;
    uint64_t end; /* offset of the first end record (zip64 or not): the directory's limit */
} directory;

static int find_directory(const char *path, const unsigned char *p, size_t n, directory *d,
                          ad_error *err)
{
    size_t pos = SIZE_MAX;
    if (n >= END_SIZE) {
        size_t lowest = n - END_SIZE > 0xFFFF ? n - END_SIZE - 0xFFFF : 0;
        for (size_t i = n - END_SIZE + 1; i-- > lowest;)
            if (rd32(p + i) == SIG_END && i + END_SIZE + rd16(p + i + 20) <= n) {
                pos = i;
                break;
            }
    }
    if (pos == SIZE_MAX) {
        if (n >= 6 && memcmp(p, "\x93NUMPY", 6) == 0)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: not an .npz archive but a .npy file (use io_npy_read)", path);
        return ad_error_set(err, AD_EFORMAT,
                            "%s: not an .npz (zip) archive: no end-of-central-directory record",
                            path);
    }
    const unsigned char *e = p + pos;
    uint16_t disk = rd16(e + 4), cd_disk = rd16(e + 6), here = rd16(e + 8);
    d->entries = rd16(e + 10);
    d->size = rd32(e + 12);
    d->offset = rd32(e + 16);
    d->end = pos;
    bool zip64 = d->entries == 0xFFFF || here == 0xFFFF || d->size == 0xFFFFFFFFu ||
                 d->offset == 0xFFFFFFFFu;
    if (zip64 && pos >= LOCATOR64_SIZE && rd32(e - LOCATOR64_SIZE) == SIG_LOCATOR64) {
        const unsigned char *l = e - LOCATOR64_SIZE;
        uint64_t off = rd64(l + 8);
        if (rd32(l + 4) != 0 || rd32(l + 16) > 1)
            return ad_error_set(err, AD_EUNSUPPORTED,
                                "%s: multi-disk zip archives are not supported", path);
        if (off > pos - LOCATOR64_SIZE || pos - LOCATOR64_SIZE - off < END64_SIZE ||
            rd32(p + off) != SIG_END64)
            return ad_error_set(err, AD_EFORMAT, "%s: bad zip64 end record offset %llu", path,
                                (unsigned long long)off);
        const unsigned char *z = p + off;
        if (rd32(z + 16) != 0 || rd32(z + 20) != 0 || rd64(z + 24) != rd64(z + 32))
            return ad_error_set(err, AD_EUNSUPPORTED,
                                "%s: multi-disk zip archives are not supported", path);
        d->entries = rd64(z + 32);
        d->size = rd64(z + 40);
        d->offset = rd64(z + 48);
        d->end = off;
    } else if (disk != 0 || cd_disk != 0 || here != d->entries) {
        return ad_error_set(err, AD_EUNSUPPORTED, "%s: multi-disk zip archives are not supported",
                            path);
    }
    if (d->offset > d->end || d->size > d->end - d->offset)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: central directory at offset %llu (%llu bytes) past the end of the "
                            "file's %zu bytes of members",
                            path, (unsigned long long)d->offset, (unsigned long long)d->size, n);
    if (d->entries > d->size / CENTRAL_SIZE)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: %llu entries cannot fit in a central directory of %llu bytes",
                            path, (unsigned long long)d->entries, (unsigned long long)d->size);
    return 0;
}

/* One central-directory entry, sizes resolved through the zip64 extra field. */
typedef struct {
    uint16_t flags, method;
    uint32_t crc;
    uint64_t csize, usize, offset;
    const char *name;
    size_t name_len;
} entry;

static int read_entry(const char *path, const unsigned char *p, const directory *d,
                      uint64_t *cursor, size_t index, entry *en, ad_error *err)
{
    uint64_t at = *cursor, limit = d->offset + d->size;
    if (limit - at < CENTRAL_SIZE || rd32(p + at) != SIG_CENTRAL)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: central directory entry %zu at offset %llu is missing or corrupt",
                            path, index, (unsigned long long)at);
    const unsigned char *c = p + at;
    en->flags = rd16(c + 8);
    en->method = rd16(c + 10);
    en->crc = rd32(c + 16);
    en->csize = rd32(c + 20);
    en->usize = rd32(c + 24);
    en->name_len = rd16(c + 28);
    size_t extra_len = rd16(c + 30), comment_len = rd16(c + 32);
    en->offset = rd32(c + 42);
    uint64_t total = CENTRAL_SIZE + en->name_len + extra_len + comment_len;
    if (limit - at < total)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: central directory entry %zu runs past the directory", path, index);
    en->name = (const char *)c + CENTRAL_SIZE;
    /* zip64 extra field (id 1): only the saturated fields, in this order */
    const unsigned char *x = c + CENTRAL_SIZE + en->name_len, *xend = x + extra_len;
    while (xend - x >= 4) {
        uint16_t id = rd16(x), len = rd16(x + 2);
        if ((size_t)(xend - x - 4) < len)
            return ad_error_set(err, AD_EFORMAT, "%s: entry %zu has a corrupt extra field", path,
                                index);
        if (id == 1) {
            const unsigned char *f = x + 4, *fend = f + len;
            uint64_t *fields[3] = {&en->usize, &en->csize, &en->offset};
            for (int k = 0; k < 3; k++)
                if (*fields[k] == 0xFFFFFFFFu) {
                    if (fend - f < 8)
                        return ad_error_set(err, AD_EFORMAT,
                                            "%s: entry %zu has a short zip64 extra field", path,
                                            index);
                    *fields[k] = rd64(f);
                    f += 8;
                }
        }
        x += 4 + len;
    }
    *cursor = at + total;
    return 0;
}

/* zlib's allocations through the archive's allocator (opaque): zfree has no
   size, so each block starts with its own. */
#define ZHEAD 16
static voidpf zalloc_hook(voidpf opaque, uInt items, uInt size)
{
    if (size && items > (SIZE_MAX - ZHEAD) / size)
        return Z_NULL;
    size_t bytes = (size_t)items * size + ZHEAD;
    unsigned char *b = ad_alloc(opaque, bytes);
    if (!b)
        return Z_NULL;
    memcpy(b, &bytes, sizeof bytes);
    return b + ZHEAD;
}
static void zfree_hook(voidpf opaque, voidpf ptr)
{
    if (!ptr)
        return;
    unsigned char *b = (unsigned char *)ptr - ZHEAD;
    size_t bytes;
    memcpy(&bytes, b, sizeof bytes);
    ad_free(opaque, b, bytes);
}

/* Inflates a raw deflate stream of csize bytes into exactly usize bytes at out. */
static int inflate_member(const ad_allocator *mem, const char *what, const unsigned char *in,
                          uint64_t csize, unsigned char *out, uint64_t usize, ad_error *err)
{
    unsigned char dummy;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = zalloc_hook;
    zs.zfree = zfree_hook;
    zs.opaque = (voidpf)(uintptr_t)mem;
    if (csize > UINT32_MAX || usize > UINT32_MAX)
        return ad_error_set(err, AD_EUNSUPPORTED, "%s: compressed members over 4 GiB are not read",
                            what);
    int rc = inflateInit2(&zs, -MAX_WBITS);
    if (rc == Z_MEM_ERROR)
        return ad_error_set(err, AD_ENOMEM, "%s: out of memory for inflate", what);
    if (rc != Z_OK)
        return ad_error_set(err, AD_EFORMAT, "%s: inflateInit2 failed (%d)", what, rc);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)csize;
    zs.next_out = usize ? out : &dummy;
    zs.avail_out = usize ? (uInt)usize : 0;
    rc = inflate(&zs, Z_FINISH);
    uint64_t produced = zs.total_out;
    inflateEnd(&zs);
    if (rc == Z_STREAM_END && produced == usize)
        return 0;
    if (rc == Z_MEM_ERROR)
        return ad_error_set(err, AD_ENOMEM, "%s: out of memory for inflate", what);
    if (rc == Z_BUF_ERROR && zs.avail_out == 0 && zs.avail_in > 0)
        return ad_error_set(
            err, AD_EFORMAT,
            "%s: deflate data inflates to more than the %llu bytes the directory says", what,
            (unsigned long long)usize);
    return ad_error_set(err, AD_EFORMAT, "%s: corrupt deflate data (%s)", what,
                        zs.msg              ? zs.msg
                        : rc == Z_BUF_ERROR ? "truncated"
                                            : "inflate failed");
}

/* Reads member e into a (dtype, shape, data; name set by the caller). */
static int read_member(const ad_allocator *mem, const char *path, const unsigned char *p,
                       const directory *d, const entry *en, io_array *a, ad_error *err)
{
    char what[256];
    snprintf(what, sizeof what, "%s: member '%.*s'", path,
             (int)(en->name_len > 200 ? 200 : en->name_len), en->name);
    if (en->flags & FLAG_ENCRYPTED)
        return ad_error_set(err, AD_EUNSUPPORTED, "%s is encrypted", what);
    if (en->method != METHOD_STORED && en->method != METHOD_DEFLATE)
        return ad_error_set(err, AD_EUNSUPPORTED,
                            "%s uses compression method %u (stored and deflate are supported)",
                            what, en->method);
    /* members lie before the central directory */
    if (en->offset > d->offset || d->offset - en->offset < LOCAL_SIZE ||
        rd32(p + en->offset) != SIG_LOCAL)
        return ad_error_set(err, AD_EFORMAT, "%s: bad local header offset %llu", what,
                            (unsigned long long)en->offset);
    const unsigned char *l = p + en->offset;
    size_t lname = rd16(l + 26), lextra = rd16(l + 28);
    uint64_t data = en->offset + LOCAL_SIZE + lname + lextra;
    if (data > d->offset)
        return ad_error_set(err, AD_EFORMAT, "%s: local header runs into the central directory",
                            what);
    if (lname != en->name_len || memcmp(l + LOCAL_SIZE, en->name, lname) != 0)
        return ad_error_set(err, AD_EFORMAT, "%s: the local header names another file", what);
    if (en->csize > d->offset - data)
        return ad_error_set(
            err, AD_EFORMAT,
            "%s: %llu bytes of data at offset %llu run past the members' end (%llu)", what,
            (unsigned long long)en->csize, (unsigned long long)data, (unsigned long long)d->offset);
    const unsigned char *bytes = p + data;
    unsigned char *inflated = NULL;
    size_t inflated_size = 0;
    if (en->method == METHOD_STORED) {
        if (en->csize != en->usize)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: stored member with compressed size %llu != size %llu", what,
                                (unsigned long long)en->csize, (unsigned long long)en->usize);
    } else {
        if (en->usize / MAX_DEFLATE_RATIO > en->csize + 1 || en->usize > SIZE_MAX - 1)
            return ad_error_set(err, AD_EFORMAT,
                                "%s: implausible size %llu for %llu compressed bytes", what,
                                (unsigned long long)en->usize, (unsigned long long)en->csize);
        inflated_size = (size_t)en->usize;
        inflated = ad_alloc(mem, inflated_size);
        if (inflated_size && !inflated)
            return ad_error_set(err, AD_ENOMEM, "%s: out of memory for %zu bytes", what,
                                inflated_size);
        int st = inflate_member(mem, what, bytes, en->csize, inflated, en->usize, err);
        if (st != 0) {
            ad_free(mem, inflated, inflated_size);
            return st;
        }
        bytes = inflated ? inflated : (const unsigned char *)"";
    }
    int st = 0;
    if (ad_crc32(0, bytes, (size_t)en->usize) != en->crc)
        st = ad_error_set(err, AD_EFORMAT, "%s: CRC-32 mismatch (the data is corrupt)", what);
    else
        st = io_npy_parse(mem, bytes, (size_t)en->usize, what, a, err);
    ad_free(mem, inflated, inflated_size);
    return st;
}

io_npz *io_npz_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_allocator mem = ad_allocator_of(alloc, ud);
    unsigned char *file = NULL;
    size_t n = 0, file_size = 0, filled = 0;
    directory d = {0, 0, 0, 0};
    io_npz *npz = NULL;
    if (!path) {
        ad_error_set(err, AD_EINVAL, "io_npz_read: path is NULL");
        return NULL;
    }
    int st = io_read_file(&mem, path, &file, &n, &file_size, err);
    if (st != 0)
        return NULL;
    const unsigned char *p = file ? file : (const unsigned char *)"";
    st = find_directory(path, p, n, &d, err);
    if (st != 0)
        goto done;
    npz = ad_alloc(&mem, sizeof *npz);
    if (!npz) {
        st = ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    npz->mem = mem;
    npz->count = (size_t)d.entries;
    npz->arrays = ad_alloc(&mem, npz->count * sizeof *npz->arrays);
    if (npz->count && !npz->arrays) {
        ad_free(&mem, npz, sizeof *npz);
        npz = NULL;
        st = ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    uint64_t cursor = d.offset;
    for (size_t i = 0; i < npz->count; i++) {
        entry en = {0, 0, 0, 0, 0, 0, NULL, 0};
        io_array *a = &npz->arrays[i];
        memset(a, 0, sizeof *a);
        st = read_entry(path, p, &d, &cursor, i, &en, err);
        if (st != 0)
            break;
        if (en.name_len <= 4 || memcmp(en.name + en.name_len - 4, ".npy", 4) != 0 ||
            memchr(en.name, '\0', en.name_len)) {
            st = ad_error_set(err, AD_EUNSUPPORTED, "%s: member '%.*s' is not a .npy file", path,
                              (int)(en.name_len > 200 ? 200 : en.name_len), en.name);
            break;
        }
        st = read_member(&mem, path, p, &d, &en, a, err);
        if (st != 0)
            break;
        a->name = ad_strndup(&mem, en.name, en.name_len - 4);
        filled = i + 1;
        if (!a->name) {
            st = ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
            break;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(npz->arrays[k].name, a->name) == 0) {
                st = ad_error_set(err, AD_EFORMAT, "%s: two members are named '%s.npy'", path,
                                  a->name);
                break;
            }
        if (st != 0)
            break;
    }
done:
    ad_free(&mem, file, file_size);
    if (st != 0) {
        if (npz) /* a member holds data only once it counts as filled */
            npz_free(npz, filled);
        return NULL;
    }
    ad_error_ok(err);
    return npz;
}

io_npz *io_npz_read(const char *path, ad_error *err)
{
    return io_npz_read_with(path, NULL, NULL, err);
}
