/* Data set readers: IDX (plain or gzip), the (Fashion-)MNIST directory
   layout and CSV. Every failure names the file and the problem. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data_impl.h"
#include "io_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

/* ------------------------------------------------------- reading a file */

/* A plain or gzip file read front to back. */
typedef struct source {
    const char *path;
    const ad_allocator *mem; /* for what is read (zlib's gzip state uses malloc) */
    FILE *fp;
    gzFile gz;
} source;

static int source_open(source *s, const ad_allocator *mem, const char *path, ad_error *err)
{
    unsigned char magic[2];
    size_t got;
    memset(s, 0, sizeof *s);
    s->path = path;
    s->mem = mem;
    if (!path)
        return ad_error_set(err, AD_EINVAL, "file name is NULL");
    s->fp = io_fopen_regular(path, err);
    if (!s->fp)
        return -1;
    got = fread(magic, 1, 2, s->fp);
    if (ferror(s->fp)) {
        int e = errno;
        fclose(s->fp);
        s->fp = NULL;
        return ad_error_set(err, AD_EIO, "cannot read %s: %s", path,
                            e ? strerror(e) : "read error");
    }
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        /* the file already checked, not whatever path names by now */
        int fd = dup(fileno(s->fp));
        fclose(s->fp);
        s->fp = NULL;
        errno = 0;
        if (fd < 0 || lseek(fd, 0, SEEK_SET) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return ad_error_set(err, AD_EIO, "cannot read %s: %s", path, strerror(e));
        }
        s->gz = gzdopen(fd, "rb");
        if (!s->gz) {
            close(fd);
            return ad_error_set(err, AD_ENOMEM, "cannot open %s: out of memory", path);
        }
        gzbuffer(s->gz, 1u << 17);
        return ad_error_ok(err);
    }
    if (fseek(s->fp, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(s->fp);
        s->fp = NULL;
        return ad_error_set(err, AD_EIO, "cannot rewind %s: %s", path, strerror(e));
    }
    return ad_error_ok(err);
}

/* Reads up to n bytes; *got < n means the end of the data. */
static int source_read(source *s, void *buf, size_t n, size_t *got, ad_error *err)
{
    *got = 0;
    if (s->gz) {
        unsigned char *p = buf;
        while (*got < n) {
            size_t want = n - *got;
            int r, errnum = Z_OK;
            const char *msg;
            if (want > (1u << 30))
                want = 1u << 30;
            r = gzread(s->gz, p + *got, (unsigned)want);
            msg = gzerror(s->gz, &errnum);
            if (r < 0 || (errnum != Z_OK && errnum != Z_STREAM_END)) {
                if (errnum == Z_BUF_ERROR)
                    return ad_error_set(err, AD_EFORMAT,
                                        "%s: truncated file: the compressed data ends early",
                                        s->path);
                if (errnum == Z_MEM_ERROR)
                    return out_of_memory(err, "decompressing");
                if (errnum == Z_ERRNO)
                    return ad_error_set(err, AD_EIO, "cannot read %s: %s", s->path,
                                        strerror(errno));
                return ad_error_set(err, AD_EFORMAT, "%s: corrupt gzip data (%s)", s->path,
                                    msg ? msg : "zlib error");
            }
            if (r == 0)
                break;
            *got += (size_t)r;
        }
        return ad_error_ok(err);
    }
    *got = fread(buf, 1, n, s->fp);
    if (*got < n && ferror(s->fp))
        return ad_error_set(err, AD_EIO, "cannot read %s: %s", s->path,
                            errno ? strerror(errno) : "read error");
    return ad_error_ok(err);
}

/* Closes s; with check, reports a gzip stream that did not end cleanly. */
static int source_close(source *s, bool check, ad_error *err)
{
    int st = 0;
    if (s->fp)
        fclose(s->fp);
    if (s->gz) {
        int r = gzclose(s->gz);
        if (check && r == Z_BUF_ERROR)
            st = ad_error_set(err, AD_EFORMAT, "%s: truncated file: the compressed data ends early",
                              s->path);
        else if (check && r != Z_OK)
            st = ad_error_set(err, AD_EFORMAT, "%s: corrupt gzip data", s->path);
    }
    s->gz = NULL;
    s->fp = NULL;
    return st;
}

/* Reads exactly want bytes into a buffer that grows as data arrives, so a
   header that lies about the size cannot make us allocate more than the file
   holds (times two). A short read returns -1 with *truncated
   set and *got saying how much there was, for the caller to word. */
static int read_growing(source *s, size_t want, unsigned char **out, size_t *got, bool *truncated,
                        ad_error *err)
{
    unsigned char *buf = NULL;
    size_t cap = 0, have = 0;
    *out = NULL;
    *got = 0;
    *truncated = false;
    while (have < want) {
        size_t chunk;
        int st;
        if (have == cap) {
            size_t ncap = cap ? cap : ((size_t)1 << 20);
            unsigned char *nbuf;
            if (cap && cap <= SIZE_MAX / 2)
                ncap = cap * 2;
            if (ncap > want)
                ncap = want;
            nbuf = mem_realloc(s->mem, buf, cap, ncap);
            if (!nbuf) {
                mem_free(s->mem, buf, cap);
                return ad_error_set(err, AD_ENOMEM, "out of memory reading %s (%zu bytes)", s->path,
                                    want);
            }
            buf = nbuf;
            cap = ncap;
        }
        st = source_read(s, buf + have, cap - have, &chunk, err);
        if (st != 0) {
            mem_free(s->mem, buf, cap);
            return st;
        }
        have += chunk;
        if (have < cap)
            break; /* end of data */
    }
    if (have < want) {
        mem_free(s->mem, buf, cap);
        *got = have;
        *truncated = true;
        return -1;
    }
    *out = buf;
    *got = have;
    return ad_error_ok(err);
}

/* -------------------------------------------------------------------- IDX */

/* The element type an IDX file declares in its third magic byte; false
   for an unknown code. */
static bool idx_code_dtype(unsigned code, ad_dtype *dtype)
{
    static const struct {
        unsigned code;
        ad_dtype dtype;
    } codes[] = {{0x08, AD_U8},  {0x09, AD_I8},  {0x0B, AD_I16},
                 {0x0C, AD_I32}, {0x0D, AD_F32}, {0x0E, AD_F64}};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (codes[i].code == code) {
            *dtype = codes[i].dtype;
            return true;
        }
    return false;
}

static const char *idx_type_name(ad_dtype type)
{
    switch (type) {
    case AD_U8:
        return "unsigned byte";
    case AD_I8:
        return "signed byte";
    case AD_I16:
        return "16-bit integer";
    case AD_I32:
        return "32-bit integer";
    case AD_F32:
        return "float";
    case AD_F64:
        return "double";
    case AD_I64:
        break;
    }
    return "unknown";
}

/* An IDX image and the allocator that owns it. */
typedef struct idx_impl {
    io_idx pub;
    ad_allocator mem;
} idx_impl;

void io_idx_free(io_idx *idx)
{
    if (!idx)
        return;
    ad_allocator m = ((idx_impl *)idx)->mem;
    mem_free(&m, idx->data, (size_t)idx->count * ad_dtype_bytes(idx->type));
    mem_free(&m, idx, sizeof(idx_impl));
}

static int idx_parse(source *s, io_idx *idx, ad_error *err)
{
    const char *path = s->path;
    unsigned char head[4 * AD_MAX_DIMS], *data = NULL;
    size_t got, esize, bytes, extra;
    bool truncated;
    int st;

    st = source_read(s, head, 4, &got, err);
    if (st != 0)
        return st;
    if (got == 0)
        return ad_error_set(err, AD_EFORMAT, "%s: empty file (expected an IDX header)", path);
    if (got < 4)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: truncated file: %zu bytes, shorter than the "
                            "4-byte IDX magic number",
                            path, got);
    if (head[0] != 0 || head[1] != 0)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: bad magic number %02x %02x %02x %02x: not an IDX file (IDX files "
                            "start with 00 00, a type byte and a dimension count)",
                            path, head[0], head[1], head[2], head[3]);
    if (!idx_code_dtype(head[2], &idx->type))
        return ad_error_set(err, AD_EFORMAT,
                            "%s: bad magic number: unknown IDX element type 0x%02x", path, head[2]);
    if (head[3] == 0 || head[3] > AD_MAX_DIMS)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: %d dimensions in the IDX header (1 to %d "
                            "supported)",
                            path, head[3], AD_MAX_DIMS);
    esize = ad_dtype_bytes(idx->type);
    idx->ndim = head[3];

    st = source_read(s, head, 4 * (size_t)idx->ndim, &got, err);
    if (st != 0)
        return st;
    if (got < 4 * (size_t)idx->ndim)
        return ad_error_set(err, AD_EFORMAT,
                            "%s: truncated file: the header ends inside its "
                            "%d dimension sizes",
                            path, idx->ndim);
    for (int k = 0; k < idx->ndim; k++)
        idx->dims[k] = (int64_t)ad_load_be(head + 4 * k, 4);
    /* the nonzero sizes are bounded too: a dataset of 0 examples of
       2^32 x 2^32 pixels would overflow the size of one example */
    if (!ad_shape_numel(idx->ndim, idx->dims, &idx->count) ||
        !ad_shape_bytes(idx->dims, idx->ndim, esize, &bytes))
        return ad_error_set(err, AD_EFORMAT, "%s: the IDX dimensions are too large", path);

    st = read_growing(s, bytes, &data, &got, &truncated, err);
    if (truncated)
        return ad_error_set(
            err, AD_EFORMAT,
            "%s: truncated file: the header declares %zu data bytes, the file holds %zu", path,
            bytes, got);
    if (st != 0)
        return st;
    st = source_read(s, head, 1, &extra, err);
    if (st == 0 && extra)
        st = ad_error_set(err, AD_EFORMAT,
                          "%s: unexpected bytes after the %zu data bytes the header declares", path,
                          bytes);
    if (st != 0) {
        mem_free(s->mem, data, bytes);
        return st;
    }
    ad_big_endian_to_host(data, bytes, esize); /* IDX stores big-endian */
    idx->data = data;
    return ad_error_ok(err);
}

io_idx *io_idx_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    source s;
    if (source_open(&s, &m, path, err) != 0)
        return NULL;
    idx_impl *impl = mem_alloc(&m, sizeof *impl);
    if (!impl) {
        source_close(&s, false, NULL);
        out_of_memory(err, "for an IDX file");
        return NULL;
    }
    memset(impl, 0, sizeof *impl);
    impl->mem = m;
    io_idx *idx = &impl->pub;
    if (idx_parse(&s, idx, err) != 0) {
        source_close(&s, false, NULL);
        io_idx_free(idx);
        return NULL;
    }
    if (source_close(&s, true, err) != 0) {
        io_idx_free(idx);
        return NULL;
    }
    ad_error_ok(err);
    return idx;
}

io_idx *io_idx_read(const char *path, ad_error *err)
{
    return io_idx_read_with(path, NULL, NULL, err);
}

double io_idx_value(const io_idx *idx, int64_t index)
{
    if (!idx || !idx->data || index < 0 || index >= idx->count)
        return 0.0;
    const unsigned char *p = (const unsigned char *)idx->data;
    size_t i = (size_t)index;
    switch (idx->type) {
    case AD_U8:
        return p[i];
    case AD_I8:
        return (signed char)p[i];
    case AD_I16: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    case AD_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case AD_F32: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case AD_F64: {
        double v;
        memcpy(&v, p + 8 * i, 8);
        return v;
    }
    case AD_I64:
        break;
    }
    return 0.0;
}

static bool idx_is_integer(ad_dtype t)
{
    return t == AD_U8 || t == AD_I8 || t == AD_I16 || t == AD_I32;
}

/* io_dataset_from_idx with names for the messages. */
static int dataset_from_idx(const ad_allocator *m, const io_idx *ex, const io_idx *lab,
                            const char *ex_name, const char *lab_name, io_dataset **out,
                            ad_error *err)
{
    int64_t n, d = 1;
    io_dataset *ds;
    int max_label = -1;
    *out = NULL;
    n = ex->dims[0];
    for (int k = 1; k < ex->ndim; k++)
        d *= ex->dims[k]; /* cannot overflow: the reader bounds the nonzero sizes' product */
    if (lab) {
        if (lab->ndim != 1 || !idx_is_integer(lab->type))
            return ad_error_set(err, AD_EFORMAT,
                                "%s: labels must be a 1-d IDX of integers, found %d-d %s values",
                                lab_name, lab->ndim, idx_type_name(lab->type));
        if (lab->dims[0] != n)
            return ad_error_set(err, AD_EMISMATCH, "%s has %lld examples but %s has %lld labels",
                                ex_name, (long long)n, lab_name, (long long)lab->dims[0]);
    }
    ds = io_data_dataset_alloc(m, n, d, lab != NULL, err);
    if (!ds)
        return -1;
    if (ex->type == AD_U8) {
        const unsigned char *p = ex->data;
        for (int64_t i = 0; i < n * d; i++)
            ds->x[i] = p[i];
    } else {
        /* as the CSV reader: a feature is a finite number (a NaN pixel
           would make every prediction meaningless) */
        for (int64_t i = 0; i < n * d; i++) {
            double v = io_idx_value(ex, i);
            ds->x[i] = (float)v;
            if (!isfinite(ds->x[i])) {
                io_dataset_free(ds);
                return ad_error_set(
                    err, AD_EFORMAT,
                    "%s: value %g of example %lld (feature %lld) is not a finite number%s", ex_name,
                    v, (long long)(i / d), (long long)(i % d),
                    isfinite(v) ? " in single precision" : "");
            }
        }
    }
    for (int64_t i = 0; lab && i < n; i++) {
        double v = io_idx_value(lab, i);
        if (v < 0 || v >= IO_DATA_MAX_CLASSES) {
            io_dataset_free(ds);
            return ad_error_set(err, AD_EFORMAT,
                                "%s: label %.0f of example %lld is outside [0, %d)", lab_name, v,
                                (long long)i, IO_DATA_MAX_CLASSES);
        }
        ds->y[i] = (int)v;
        max_label = ds->y[i] > max_label ? ds->y[i] : max_label;
    }
    ds->classes = max_label + 1;
    if (ex->ndim == 3) {
        ds->height = ex->dims[1];
        ds->width = ex->dims[2];
    }
    *out = ds;
    return ad_error_ok(err);
}

io_dataset *io_dataset_from_idx(const io_idx *examples, const io_idx *labels, ad_error *err)
{
    io_dataset *ds = NULL;
    if (!examples) {
        ad_error_set(err, AD_EINVAL, "io_dataset_from_idx: examples is NULL");
        return NULL;
    }
    dataset_from_idx(&((const idx_impl *)examples)->mem, examples, labels, "the examples IDX",
                     "the labels IDX", &ds, err);
    return ds;
}

io_dataset *io_idx_load_dataset_with(const char *examples_path, const char *labels_path,
                                     ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    io_idx *ex = NULL, *lab = NULL;
    io_dataset *ds = NULL;
    ex = io_idx_read_with(examples_path, m.fn, m.ud, err);
    if (ex && labels_path)
        lab = io_idx_read_with(labels_path, m.fn, m.ud, err);
    if (ex && (lab || !labels_path))
        dataset_from_idx(&m, ex, lab, examples_path, labels_path, &ds, err);
    io_idx_free(ex);
    io_idx_free(lab);
    return ds;
}

io_dataset *io_idx_load_dataset(const char *examples_path, const char *labels_path, ad_error *err)
{
    return io_idx_load_dataset_with(examples_path, labels_path, NULL, NULL, err);
}

/* dir/base, or dir/base.gz when only that exists; *path is the caller's. */
static int find_file(const ad_allocator *m, const char *dir, const char *base, char **path,
                     size_t *size, ad_error *err)
{
    struct stat sb;
    size_t len = strlen(dir) + strlen(base) + 5; /* '/' ".gz" '\0' */
    char *p = mem_alloc(m, len);
    *path = NULL;
    if (!p)
        return out_of_memory(err, "for a file name");
    snprintf(p, len, "%s/%s", dir, base);
    if (stat(p, &sb) != 0) {
        snprintf(p, len, "%s/%s.gz", dir, base);
        if (stat(p, &sb) != 0) {
            mem_free(m, p, len);
            return ad_error_set(err, AD_EIO, "missing data file: neither %s/%s nor %s/%s.gz exists",
                                dir, base, dir, base);
        }
    }
    *path = p;
    *size = len;
    return ad_error_ok(err);
}

static int mnist_half(const ad_allocator *m, const char *dir, const char *images,
                      const char *labels, io_dataset **out, ad_error *err)
{
    char *ipath = NULL, *lpath = NULL;
    size_t isize = 0, lsize = 0;
    io_idx *ex = NULL, *lab = NULL;
    int st = find_file(m, dir, images, &ipath, &isize, err);
    if (st == 0)
        st = find_file(m, dir, labels, &lpath, &lsize, err);
    if (st == 0 && !(ex = io_idx_read_with(ipath, m->fn, m->ud, err)))
        st = -1;
    if (st == 0 && (ex->ndim != 3 || ex->type != AD_U8))
        st = ad_error_set(
            err, AD_EFORMAT,
            "%s: expected 3-d unsigned-byte images (n, rows, cols), found %d-d %s values", ipath,
            ex->ndim, idx_type_name(ex->type));
    if (st == 0 && !(lab = io_idx_read_with(lpath, m->fn, m->ud, err)))
        st = -1;
    if (st == 0)
        st = dataset_from_idx(m, ex, lab, ipath, lpath, out, err);
    io_idx_free(ex);
    io_idx_free(lab);
    mem_free(m, ipath, isize);
    mem_free(m, lpath, lsize);
    return st;
}

int io_mnist_load_with(const char *dir, io_dataset **train, io_dataset **test, ad_alloc_fn alloc,
                       void *ud, ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    struct stat sb;
    int st = 0;
    if (train)
        *train = NULL;
    if (test)
        *test = NULL;
    if (!dir)
        dir = IO_FASHION_MNIST_DIR;
    if (stat(dir, &sb) != 0)
        return ad_error_set(err, AD_EIO, "data directory %s: %s%s", dir, strerror(errno),
                            strcmp(dir, IO_FASHION_MNIST_DIR) == 0
                                ? " (install Debian's dataset-fashion-mnist package)"
                                : "");
    if (!S_ISDIR(sb.st_mode))
        return ad_error_set(err, AD_EIO, "data directory %s is not a directory", dir);
    if (train)
        st = mnist_half(&m, dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", train, err);
    if (st == 0 && test)
        st = mnist_half(&m, dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test, err);
    if (st != 0 && train) {
        io_dataset_free(*train);
        *train = NULL;
    }
    return st == 0 ? ad_error_ok(err) : st;
}

int io_mnist_load(const char *dir, io_dataset **train, io_dataset **test, ad_error *err)
{
    return io_mnist_load_with(dir, train, test, NULL, NULL, err);
}

/* -------------------------------------------------------------------- CSV */

/* The whole file in one NUL-terminated buffer. */
static int read_all(const ad_allocator *m, const char *path, char **out, size_t *len, size_t *cap,
                    ad_error *err)
{
    source s;
    char *buf = NULL;
    size_t have = 0, size = 0;
    int st = source_open(&s, m, path, err);
    *out = NULL;
    if (st != 0)
        return st;
    for (;;) {
        size_t got;
        if (size - have < 2) {
            size_t nsize = size ? size * 2 : 65536;
            char *nbuf = nsize > size ? mem_realloc(m, buf, size, nsize) : NULL;
            if (!nbuf) {
                mem_free(m, buf, size);
                source_close(&s, false, NULL);
                return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", path);
            }
            buf = nbuf;
            size = nsize;
        }
        st = source_read(&s, buf + have, size - have - 1, &got, err);
        if (st != 0) {
            mem_free(m, buf, size);
            source_close(&s, false, NULL);
            return st;
        }
        have += got;
        if (have < size - 1)
            break;
    }
    st = source_close(&s, true, err);
    if (st != 0) {
        mem_free(m, buf, size);
        return st;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    *cap = size;
    return ad_error_ok(err);
}

/* A growable array; elements are `esize` bytes. */
typedef struct vec {
    const ad_allocator *mem;
    void *data;
    size_t len, cap, esize;
} vec;

static bool vec_reserve(vec *v, size_t extra)
{
    size_t need, ncap;
    void *nd;
    if (extra > SIZE_MAX - v->len)
        return false;
    need = v->len + extra;
    if (need <= v->cap)
        return true;
    ncap = v->cap ? v->cap : 16;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > SIZE_MAX / v->esize)
        return false;
    nd = mem_realloc(v->mem, v->data, v->cap * v->esize, ncap * v->esize);
    if (!nd)
        return false;
    v->data = nd;
    v->cap = ncap;
    return true;
}

static void vec_free(vec *v)
{
    mem_free(v->mem, v->data, v->cap * v->esize);
    v->data = NULL;
    v->len = v->cap = 0;
}

/* CSV tokenizer state over a mutable buffer: fields are unquoted in place
   and NUL-terminated, so they can be used as C strings. */
typedef struct csv {
    const char *path;
    char *p, *end;
    char delim;
    size_t line; /* line number of the next character */
    vec fields;  /* char * of the current record */
} csv;

static bool blank_line_ahead(const csv *c)
{
    const char *q = c->p;
    while (q < c->end && (*q == ' ' || *q == '\t' || *q == '\r'))
        q++;
    return q == c->end || *q == '\n';
}

/* Parses the next non-blank record into c->fields; *line gets its first
   line. Returns 0 with c->fields.len 0 at the end of the file. */
static int csv_record(csv *c, size_t *line, ad_error *err)
{
    c->fields.len = 0;
    while (c->p < c->end && blank_line_ahead(c)) {
        while (c->p < c->end && *c->p != '\n')
            c->p++;
        if (c->p < c->end) {
            c->p++;
            c->line++;
        }
    }
    if (c->p >= c->end)
        return 0;
    *line = c->line;
    for (;;) {
        char *start = c->p, *w = c->p;
        if (!vec_reserve(&c->fields, 1))
            return ad_error_set(err, AD_ENOMEM, "out of memory reading %s", c->path);
        ((char **)c->fields.data)[c->fields.len++] = start;
        if (c->p < c->end && *c->p == '"') {
            size_t qline = c->line;
            c->p++;
            for (;;) {
                if (c->p >= c->end)
                    return ad_error_set(err, AD_EFORMAT,
                                        "%s: line %zu, column %zu: unterminated quoted field",
                                        c->path, qline, c->fields.len);
                if (*c->p == '"') {
                    if (c->p + 1 < c->end && c->p[1] == '"') {
                        *w++ = '"';
                        c->p += 2;
                        continue;
                    }
                    c->p++;
                    break;
                }
                if (*c->p == '\n')
                    c->line++;
                *w++ = *c->p++;
            }
            if (c->p < c->end && *c->p == '\r' && (c->p + 1 == c->end || c->p[1] == '\n'))
                c->p++;
            if (c->p < c->end && *c->p != c->delim && *c->p != '\n')
                return ad_error_set(err, AD_EFORMAT,
                                    "%s: line %zu, column %zu: unexpected character '%c' after a "
                                    "closing quote",
                                    c->path, c->line, c->fields.len, *c->p);
        } else {
            while (c->p < c->end && *c->p != c->delim && *c->p != '\n')
                c->p++;
            w = c->p;
            if (w > start && w[-1] == '\r' && (c->p == c->end || *c->p == '\n'))
                w--;
        }
        if (c->p >= c->end || *c->p == '\n') {
            if (c->p < c->end) {
                c->p++;
                c->line++;
            }
            *w = '\0';
            return 0;
        }
        c->p++; /* the delimiter */
        *w = '\0';
    }
}

static const char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

static int cmp_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A label as a class number without names: a non-negative integer. */
static bool integer_label(const char *s, int *out)
{
    char *end;
    double v;
    if (!*s)
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (*end || errno || !(v >= 0) || v >= IO_DATA_MAX_CLASSES || v != floor(v))
        return false;
    *out = (int)v;
    return true;
}

/* Turns the label strings into numbers and fills ds->y, classes and names. */
static int csv_labels(const csv *c, const io_csv_options *opt, char **labels, const size_t *lines,
                      io_dataset *ds, ad_error *err)
{
    size_t n = ds->n;
    const char *const *names = opt ? opt->class_names : NULL;
    int n_names = names ? opt->n_class_names : 0;
    char **sorted = NULL;
    int *order = NULL, max_label = -1;
    io_csv_label_kind kind = opt ? opt->label_kind : IO_CSV_LABELS_AUTO;
    if (kind != IO_CSV_LABELS_AUTO && kind != IO_CSV_LABELS_INTEGER && kind != IO_CSV_LABELS_TEXT)
        return ad_error_set(err, AD_EINVAL, "%s: unknown label_kind %d", c->path, (int)kind);
    if (names && kind == IO_CSV_LABELS_INTEGER)
        return ad_error_set(err, AD_EINVAL,
                            "%s: a fixed class list (class_names) needs text labels, not "
                            "IO_CSV_LABELS_INTEGER",
                            c->path);
    if (kind == IO_CSV_LABELS_AUTO && !names) {
        /* the rule: a column of numbers holds class indices */
        bool numbers = true;
        for (size_t i = 0; numbers && i < n; i++) {
            char *end;
            errno = 0;
            (void)strtod(labels[i], &end);
            numbers = *labels[i] && !*end;
        }
        kind = numbers ? IO_CSV_LABELS_INTEGER : IO_CSV_LABELS_TEXT;
    }
    bool integers = kind == IO_CSV_LABELS_INTEGER;
    ad_allocator mv = dataset_mem(ds);
    const ad_allocator *m = &mv;
    for (size_t i = 0; integers && i < n; i++)
        if (!integer_label(labels[i], &ds->y[i]))
            return ad_error_set(
                err, AD_EFORMAT,
                "%s: line %zu: label '%s' is not a class index (an integer in [0, %d))%s", c->path,
                lines[i], labels[i], IO_DATA_MAX_CLASSES,
                opt && opt->label_kind == IO_CSV_LABELS_INTEGER
                    ? ""
                    : "; a label column of numbers holds class indices "
                      "(set label_kind to IO_CSV_LABELS_TEXT to read them as names)");
    if (integers) {
        for (size_t i = 0; i < n; i++)
            max_label = ds->y[i] > max_label ? ds->y[i] : max_label;
        ds->classes = max_label + 1;
        return ad_error_ok(err);
    }
    if (!names) {
        /* Distinct labels in sorted order become the class list. */
        size_t distinct = 0;
        if (!alloc_array(m, (void **)&sorted, n, sizeof *sorted))
            return out_of_memory(err, "for class labels");
        memcpy(sorted, labels, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_strings);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || strcmp(sorted[i], sorted[distinct - 1]) != 0)
                sorted[distinct++] = sorted[i];
        if (distinct > IO_DATA_MAX_CLASSES) {
            mem_free(m, sorted, n * sizeof *sorted);
            return ad_error_set(err, AD_EFORMAT, "%s: %zu distinct labels, more than %d classes",
                                c->path, distinct, IO_DATA_MAX_CLASSES);
        }
        names = (const char *const *)sorted;
        n_names = (int)distinct;
    }
    /* Look labels up through an index sorted by name. */
    if (!alloc_array(m, (void **)&order, (size_t)n_names, sizeof *order)) {
        mem_free(m, sorted, n * sizeof *sorted);
        return out_of_memory(err, "for class labels");
    }
    for (int k = 0; k < n_names; k++)
        order[k] = k;
    for (int k = 1; k < n_names; k++) { /* insertion sort of indices by name */
        int v = order[k], j = k;
        while (j > 0 && strcmp(names[order[j - 1]], names[v]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    for (size_t i = 0; i < n; i++) {
        int lo = 0, hi = n_names;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (strcmp(names[order[mid]], labels[i]) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == n_names || strcmp(names[order[lo]], labels[i]) != 0) {
            mem_free(m, order, (size_t)n_names * sizeof *order);
            mem_free(m, sorted, n * sizeof *sorted);
            return ad_error_set(err, AD_EFORMAT,
                                "%s: line %zu: label '%s' is not one of the %d "
                                "known classes",
                                c->path, lines[i], labels[i], n_names);
        }
        ds->y[i] = order[lo];
    }
    mem_free(m, order, (size_t)n_names * sizeof *order);
    ds->classes = n_names;
    if (!io_data_set_names(ds, names, n_names)) {
        mem_free(m, sorted, n * sizeof *sorted);
        return out_of_memory(err, "for class names");
    }
    mem_free(m, sorted, n * sizeof *sorted);
    return ad_error_ok(err);
}

/* Finds the label column among the header's fields. */
static int csv_label_column(const csv *c, const io_csv_options *opt, size_t ncols, size_t *col,
                            ad_error *err)
{
    char **header = c->fields.data;
    if (opt && opt->label_name) {
        for (size_t k = 0; k < ncols; k++)
            if (strcmp(header[k], opt->label_name) == 0) {
                *col = k;
                return ad_error_ok(err);
            }
        return ad_error_set(err, AD_EINVAL,
                            "%s: no column named '%s' in the header (first "
                            "column '%s', %zu columns)",
                            c->path, opt->label_name, header[0], ncols);
    }
    {
        long idx = opt ? opt->label_index : -1;
        long k = idx < 0 ? (long)ncols + idx : idx;
        if (k < 0 || (size_t)k >= ncols)
            return ad_error_set(err, AD_EINVAL,
                                "%s: label column %ld does not exist (the header "
                                "has %zu columns)",
                                c->path, idx, ncols);
        *col = (size_t)k;
    }
    return ad_error_ok(err);
}

io_dataset *io_csv_read_with(const char *path, const io_csv_options *opt, ad_alloc_fn alloc,
                             void *ud, ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    char *buf = NULL;
    size_t len = 0, cap = 0, ncols = 0, label_col = 0, line = 0, n = 0;
    csv c;
    vec x = {&m, NULL, 0, 0, sizeof(float)}, labels = {&m, NULL, 0, 0, sizeof(char *)},
        lines = {&m, NULL, 0, 0, sizeof(size_t)};
    char **header_names = NULL;
    io_dataset *ds = NULL;
    int st;

    if (opt && opt->class_names && opt->n_class_names <= 0) {
        ad_error_set(err, AD_EINVAL, "class_names given with n_class_names %d", opt->n_class_names);
        return NULL;
    }
    if (read_all(&m, path, &buf, &len, &cap, err) != 0)
        return NULL;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.p = buf;
    c.end = buf + len;
    c.delim = opt && opt->delimiter ? opt->delimiter : ',';
    c.line = 1;
    c.fields.esize = sizeof(char *);
    c.fields.mem = &m;
    if (memchr(buf, '\0', len)) {
        st = ad_error_set(err, AD_EFORMAT, "%s: contains a NUL byte: not a text CSV file", path);
        goto done;
    }
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        c.p += 3; /* UTF-8 byte order mark */

    st = csv_record(&c, &line, err);
    if (st != 0)
        goto done;
    ncols = c.fields.len;
    if (ncols == 0) {
        st = ad_error_set(err, AD_EFORMAT, "%s: empty file (expected a header row)", path);
        goto done;
    }
    for (size_t k = 0; k < ncols; k++)
        ((char **)c.fields.data)[k] = (char *)trim(((char **)c.fields.data)[k]);
    st = csv_label_column(&c, opt, ncols, &label_col, err);
    if (st != 0)
        goto done;
    if (ncols < 2) {
        st = ad_error_set(err, AD_EFORMAT,
                          "%s: the header has only the label column; features "
                          "are needed",
                          path);
        goto done;
    }
    /* Keep the header names (they point into buf) for messages. */
    if (!alloc_array(&m, (void **)&header_names, ncols, sizeof(char *))) {
        st = out_of_memory(err, "reading a CSV header");
        goto done;
    }
    memcpy(header_names, c.fields.data, ncols * sizeof(char *));

    for (;;) {
        char **f;
        float *row;
        st = csv_record(&c, &line, err);
        if (st != 0)
            goto done;
        if (c.fields.len == 0)
            break;
        if (c.fields.len != ncols) {
            st = ad_error_set(err, AD_EFORMAT,
                              "%s: line %zu: expected %zu fields as in the header, "
                              "found %zu",
                              path, line, ncols, c.fields.len);
            goto done;
        }
        if (!vec_reserve(&x, ncols - 1) || !vec_reserve(&labels, 1) || !vec_reserve(&lines, 1)) {
            st = out_of_memory(err, "reading CSV rows");
            goto done;
        }
        f = c.fields.data;
        row = (float *)x.data + x.len;
        for (size_t k = 0, j = 0; k < ncols; k++) {
            const char *s = trim(f[k]);
            char *end;
            double v;
            if (k == label_col) {
                ((const char **)labels.data)[labels.len++] = s;
                continue;
            }
            if (!*s) {
                st = ad_error_set(err, AD_EFORMAT, "%s: line %zu, column %zu ('%s'): empty value",
                                  path, line, k + 1, header_names[k]);
                goto done;
            }
            errno = 0;
            v = strtod(s, &end);
            if (*end) {
                st = ad_error_set(err, AD_EFORMAT,
                                  "%s: line %zu, column %zu ('%s'): '%.40s' is not a number", path,
                                  line, k + 1, header_names[k], s);
                goto done;
            }
            if (!isfinite(v) || !isfinite((float)v)) {
                st = ad_error_set(err, AD_EFORMAT,
                                  "%s: line %zu, column %zu ('%s'): '%.40s' is not a finite float",
                                  path, line, k + 1, header_names[k], s);
                goto done;
            }
            row[j++] = (float)v;
        }
        x.len += ncols - 1;
        ((size_t *)lines.data)[lines.len++] = line;
        n++;
    }
    if (n == 0) {
        st = ad_error_set(err, AD_EFORMAT, "%s: no data rows after the header", path);
        goto done;
    }
    /* Hand the feature buffer to the dataset as it is. */
    ds = io_data_dataset_alloc(&m, 0, ncols - 1, true, err);
    if (!ds) {
        st = -1;
        goto done;
    }
    if (!alloc_array(&m, (void **)&ds->y, n, sizeof(int))) {
        st = out_of_memory(err, "for CSV labels");
        goto done;
    }
    ((dataset_impl *)ds)->y_cap = n;
    ds->n = n;
    ds->x = x.data;
    ((dataset_impl *)ds)->x_cap = x.cap;
    x.data = NULL;
    x.cap = 0;
    st = csv_labels(&c, opt, labels.data, lines.data, ds, err);

done:
    if (st != 0) {
        io_dataset_free(ds);
        ds = NULL;
    }
    mem_free(&m, header_names, ncols * sizeof(char *));
    vec_free(&x);
    vec_free(&labels);
    vec_free(&lines);
    vec_free(&c.fields);
    mem_free(&m, buf, cap);
    if (ds)
        ad_error_ok(err);
    return ds;
}

io_dataset *io_csv_read(const char *path, const io_csv_options *opt, ad_error *err)
{
    return io_csv_read_with(path, opt, NULL, NULL, err);
}

io_dataset *io_csv_read_like(const char *path, const io_dataset *train, const io_csv_options *opt,
                             ad_error *err)
{
    if (!train) {
        ad_error_set(err, AD_EINVAL, "io_csv_read_like: train is NULL");
        return NULL;
    }
    io_csv_options o;
    memset(&o, 0, sizeof o);
    o.label_index = -1;
    if (opt)
        o = *opt;
    o.class_names = train->class_names ? (const char *const *)train->class_names : NULL;
    o.n_class_names = train->class_names ? train->classes : 0;
    o.label_kind = train->class_names ? IO_CSV_LABELS_TEXT : IO_CSV_LABELS_INTEGER;
    ad_allocator m = dataset_mem(train);
    return io_csv_read_with(path, &o, m.fn, m.ud, err);
}
