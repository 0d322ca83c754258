/* Data sets in memory: allocation, slices and splits, scaling, the seeded
   shuffle and mini-batches. The file readers are in data_read.c. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- dataset */

io_dataset *io_data_dataset_alloc(const ad_allocator *m, int64_t n, int64_t d, bool labelled,
                                  ad_error *err)
{
    size_t nd;
    dataset_impl *impl;
    if (n < 0 || d < 0) {
        ad_error_set(err, AD_EINVAL, "a dataset of %lld x %lld features: a size is negative",
                     (long long)n, (long long)d);
        return NULL;
    }
    if (!ad_mul_size((size_t)n, (size_t)d, &nd) || nd > SIZE_MAX / sizeof(float)) {
        ad_error_set(err, AD_EINVAL, "dataset of %lld x %lld features is too large", (long long)n,
                     (long long)d);
        return NULL;
    }
    impl = mem_alloc(m, sizeof *impl);
    if (!impl) {
        out_of_memory(err, "for a dataset");
        return NULL;
    }
    memset(impl, 0, sizeof *impl);
    impl->mem = *m;
    impl->pub.alloc = m->fn;
    impl->pub.alloc_ud = m->ud;
    impl->pub.n = n;
    impl->pub.d = d;
    if (!alloc_array(m, (void **)&impl->pub.x, nd, sizeof(float))) {
        mem_free(m, impl, sizeof *impl);
        ad_error_set(err, AD_ENOMEM, "out of memory for %lld x %lld features", (long long)n,
                     (long long)d);
        return NULL;
    }
    /* a shuffled batcher gathers its rows from anywhere in x */
    ad_advise_huge_pages(m, impl->pub.x, nd * sizeof(float));
    impl->x_cap = nd;
    if (labelled && !alloc_array(m, (void **)&impl->pub.y, (size_t)n, sizeof(int))) {
        mem_free(m, impl->pub.x, nd * sizeof(float));
        mem_free(m, impl, sizeof *impl);
        ad_error_set(err, AD_ENOMEM, "out of memory for %lld labels", (long long)n);
        return NULL;
    }
    impl->y_cap = labelled ? (size_t)n : 0;
    ad_error_ok(err);
    return &impl->pub;
}

io_dataset *io_dataset_new_with(int64_t n, int64_t d, bool labelled, ad_alloc_fn alloc, void *ud,
                                ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    io_dataset *ds = io_data_dataset_alloc(&m, n, d, labelled, err);
    if (ds) {
        if (ds->x)
            memset(ds->x, 0, (size_t)n * (size_t)d * sizeof(float));
        if (ds->y)
            memset(ds->y, 0, (size_t)n * sizeof(int));
    }
    return ds;
}

io_dataset *io_dataset_new(int64_t n, int64_t d, bool labelled, ad_error *err)
{
    return io_dataset_new_with(n, d, labelled, NULL, NULL, err);
}

static void free_names(const ad_allocator *m, char **names, int count)
{
    if (!names)
        return;
    for (int i = 0; i < count; i++)
        ad_strfree(m, names[i]);
    mem_free(m, names, (size_t)count * sizeof *names);
}

void io_dataset_free(io_dataset *ds)
{
    dataset_impl *impl = (dataset_impl *)ds;
    if (!ds)
        return;
    ad_allocator m = impl->mem;
    mem_free(&m, ds->x, impl->x_cap * sizeof(float));
    mem_free(&m, ds->y, impl->y_cap * sizeof(int));
    free_names(&m, ds->class_names, impl->names_count);
    mem_free(&m, impl, sizeof *impl);
}

bool io_data_set_names(io_dataset *ds, const char *const *names, int count)
{
    dataset_impl *impl = (dataset_impl *)ds;
    const ad_allocator *m = &impl->mem;
    char **copy;
    if (!names || count <= 0)
        return true;
    copy = mem_alloc(m, (size_t)count * sizeof *copy);
    if (!copy)
        return false;
    for (int i = 0; i < count; i++) {
        copy[i] = ad_strndup(m, names[i], strlen(names[i]));
        if (!copy[i]) {
            for (int j = 0; j < i; j++)
                ad_strfree(m, copy[j]);
            mem_free(m, copy, (size_t)count * sizeof *copy);
            return false;
        }
    }
    ds->class_names = copy;
    impl->names_count = count;
    return true;
}

io_dataset *io_dataset_slice(const io_dataset *ds, int64_t begin, int64_t count, ad_error *err)
{
    io_dataset *s;
    if (!ds) {
        ad_error_set(err, AD_EINVAL, "io_dataset_slice: dataset is NULL");
        return NULL;
    }
    if (begin < 0 || count < 0 || begin > ds->n || count > ds->n - begin) {
        ad_error_set(err, AD_EINVAL,
                     "slice [%lld, %lld + %lld) is outside the dataset of %lld examples",
                     (long long)begin, (long long)begin, (long long)count, (long long)ds->n);
        return NULL;
    }
    ad_allocator m = dataset_mem(ds);
    s = io_data_dataset_alloc(&m, count, ds->d, ds->y != NULL, err);
    if (!s)
        return NULL;
    if (count && ds->d)
        memcpy(s->x, ds->x + begin * ds->d, (size_t)(count * ds->d) * sizeof(float));
    if (ds->y && count)
        memcpy(s->y, ds->y + begin, (size_t)count * sizeof(int));
    s->classes = ds->classes;
    s->height = ds->height;
    s->width = ds->width;
    if (!io_data_set_names(s, (const char *const *)ds->class_names,
                           ((const dataset_impl *)ds)->names_count)) {
        io_dataset_free(s);
        out_of_memory(err, "for class names");
        return NULL;
    }
    ad_error_ok(err);
    return s;
}

void io_dataset_truncate(io_dataset *ds, int64_t n)
{
    if (ds && n >= 0 && n < ds->n)
        ds->n = n;
}

int io_dataset_split(const io_dataset *ds, int64_t n_first, io_dataset **first, io_dataset **rest,
                     ad_error *err)
{
    if (!first || !rest)
        return ad_error_set(err, AD_EINVAL, "io_dataset_split: an output is NULL");
    *first = *rest = NULL;
    if (!ds)
        return ad_error_set(err, AD_EINVAL, "io_dataset_split: dataset is NULL");
    if (n_first < 0 || n_first > ds->n)
        return ad_error_set(err, AD_EINVAL,
                            "cannot split %lld examples off a dataset of %lld examples",
                            (long long)n_first, (long long)ds->n);
    *first = io_dataset_slice(ds, 0, n_first, err);
    if (!*first)
        return -1;
    *rest = io_dataset_slice(ds, n_first, ds->n - n_first, err);
    if (!*rest) {
        io_dataset_free(*first);
        *first = NULL;
        return -1;
    }
    return 0;
}

void io_dataset_scale(io_dataset *ds, float divisor)
{
    if (!ds || divisor == 0.0f)
        return;
    for (int64_t i = 0; i < ds->n * ds->d; i++)
        ds->x[i] /= divisor;
}

/* ------------------------------------------------------------------- RNG */

void io_data_rng_seed(io_data_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t io_data_rng_next(io_data_rng *rng) { return ad_splitmix64(&rng->state); }

/* The library's one bounded draw and one shuffle (support_impl.h), on the
   splitmix64 stream. */
uint64_t io_data_rng_below(io_data_rng *rng, uint64_t bound)
{
    return ad_bits_below(ad_splitmix64_bits, &rng->state, bound);
}

static void epoch_rng(io_data_rng *rng, uint64_t seed, uint64_t epoch)
{
    io_data_rng_seed(rng, seed ^ (UINT64_C(0x9E3779B97F4A7C15) * epoch));
}

void io_data_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch)
{
    io_data_rng rng;
    if (!perm)
        return;
    epoch_rng(&rng, seed, epoch);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    ad_shuffle(ad_splitmix64_bits, &rng.state, n, ad_swap_int64, perm);
}

static void swap_rows(void *ctx, int64_t i, int64_t j)
{
    io_dataset *ds = ctx;
    float *a = ds->x + i * ds->d, *b = ds->x + j * ds->d;
    for (int64_t k = 0; k < ds->d; k++) {
        float t = a[k];
        a[k] = b[k];
        b[k] = t;
    }
    if (ds->y) {
        int t = ds->y[i];
        ds->y[i] = ds->y[j];
        ds->y[j] = t;
    }
}

/* The same swaps as io_data_permutation, applied to rows: row i ends up
   holding the original row perm[i]. */
void io_dataset_shuffle(io_dataset *ds, uint64_t seed)
{
    io_data_rng rng;
    if (!ds)
        return;
    epoch_rng(&rng, seed, 0);
    ad_shuffle(ad_splitmix64_bits, &rng.state, ds->n, swap_rows, ds);
}

/* --------------------------------------------------------------- batches */

struct io_batcher {
    ad_allocator mem; /* the dataset's */
    const io_dataset *ds;
    int64_t n, d; /* the dataset's size when the batcher was made */
    int64_t batch_size;
    bool shuffle;
    uint64_t seed;
    int64_t *perm; /* (n) when shuffled */
    float *xbuf;   /* (batch_size, d) gathered rows when shuffled */
    int *ybuf;     /* (batch_size) */
    int64_t pos;   /* next example of the epoch */
    int64_t index; /* next batch number */
};

static size_t batcher_rows(const io_batcher *b)
{
    return (size_t)(b->batch_size < b->n ? b->batch_size : b->n);
}

void io_batcher_free(io_batcher *b)
{
    if (!b)
        return;
    ad_allocator m = b->mem;
    mem_free(&m, b->perm, (size_t)b->n * sizeof *b->perm);
    mem_free(&m, b->xbuf, batcher_rows(b) * (size_t)b->d * sizeof(float));
    mem_free(&m, b->ybuf, batcher_rows(b) * sizeof(int));
    mem_free(&m, b, sizeof *b);
}

io_batcher *io_batcher_new(const io_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed,
                           ad_error *err)
{
    io_batcher *b;
    if (!ds) {
        ad_error_set(err, AD_EINVAL, "io_batcher_new: dataset is NULL");
        return NULL;
    }
    if (batch_size < 1) {
        ad_error_set(err, AD_EINVAL, "batch size must be at least 1 (not %lld)",
                     (long long)batch_size);
        return NULL;
    }
    if (ds->n < 0 || ds->d < 0) {
        ad_error_set(err, AD_EINVAL, "io_batcher_new: a dataset of %lld x %lld features",
                     (long long)ds->n, (long long)ds->d);
        return NULL;
    }
    ad_allocator mv = dataset_mem(ds);
    const ad_allocator *m = &mv;
    b = mem_alloc(m, sizeof *b);
    if (!b) {
        out_of_memory(err, "for a batcher");
        return NULL;
    }
    memset(b, 0, sizeof *b);
    b->mem = *m;
    b->ds = ds;
    b->n = ds->n;
    b->d = ds->d;
    b->batch_size = batch_size;
    b->shuffle = shuffle;
    b->seed = seed;
    if (shuffle) {
        size_t rows = batcher_rows(b);
        if (!alloc_array(m, (void **)&b->perm, (size_t)b->n, sizeof *b->perm) ||
            !alloc_array(m, (void **)&b->xbuf, rows * (size_t)b->d, sizeof(float)) ||
            (ds->y && !alloc_array(m, (void **)&b->ybuf, rows, sizeof(int)))) {
            io_batcher_free(b);
            ad_error_set(err, AD_ENOMEM, "out of memory for batches of %zu x %lld", rows,
                         (long long)ds->d);
            return NULL;
        }
    }
    io_batcher_start_epoch(b, 0);
    ad_error_ok(err);
    return b;
}

void io_batcher_start_epoch(io_batcher *b, uint64_t epoch)
{
    if (!b)
        return;
    b->pos = 0;
    b->index = 0;
    if (b->shuffle)
        io_data_permutation(b->perm, b->n, b->seed, epoch);
}

bool io_batcher_next(io_batcher *b, io_batch *batch)
{
    int64_t size;
    if (!b || b->pos >= b->n)
        return false;
    size = b->n - b->pos < b->batch_size ? b->n - b->pos : b->batch_size;
    batch->size = size;
    batch->index = b->index++;
    if (!b->shuffle) {
        batch->x = b->d ? b->ds->x + b->pos * b->d : b->ds->x;
        batch->y = b->ds->y ? b->ds->y + b->pos : NULL;
    } else {
        for (int64_t i = 0; i < size; i++) {
            int64_t src = b->perm[b->pos + i];
            if (b->d)
                memcpy(b->xbuf + i * b->d, b->ds->x + src * b->d, (size_t)b->d * sizeof(float));
            if (b->ybuf)
                b->ybuf[i] = b->ds->y[src];
        }
        batch->x = b->xbuf;
        batch->y = b->ybuf;
    }
    b->pos += size;
    return true;
}

int64_t io_batcher_count(const io_batcher *b)
{
    return b ? (b->n + b->batch_size - 1) / b->batch_size : 0;
}

/* ---------------------------------------------------------------- scaling */

typedef struct scaler_impl {
    io_scaler pub;
    ad_allocator mem; /* owns the struct and its arrays */
    size_t d;         /* allocation size, safe from callers editing pub.d */
} scaler_impl;

void io_scaler_free(io_scaler *s)
{
    scaler_impl *impl = (scaler_impl *)s;
    if (!s)
        return;
    ad_allocator m = impl->mem;
    mem_free(&m, s->center, impl->d * sizeof(float));
    mem_free(&m, s->spread, impl->d * sizeof(float));
    mem_free(&m, impl, sizeof *impl);
}

io_scaler *io_scaler_new_with(int64_t d, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    if (d < 0) {
        ad_error_set(err, AD_EINVAL, "io_scaler_new: %lld features", (long long)d);
        return NULL;
    }
    scaler_impl *impl = mem_alloc(&m, sizeof *impl);
    if (!impl) {
        out_of_memory(err, "for a scaler");
        return NULL;
    }
    memset(impl, 0, sizeof *impl);
    impl->mem = m;
    impl->d = (size_t)d;
    impl->pub.d = d;
    if (!alloc_array(&m, (void **)&impl->pub.center, (size_t)d, sizeof(float)) ||
        !alloc_array(&m, (void **)&impl->pub.spread, (size_t)d, sizeof(float))) {
        io_scaler_free(&impl->pub);
        ad_error_set(err, AD_ENOMEM, "out of memory for a scaler of %lld features", (long long)d);
        return NULL;
    }
    for (int64_t j = 0; j < d; j++) {
        impl->pub.center[j] = 0.0f;
        impl->pub.spread[j] = 1.0f;
    }
    ad_error_ok(err);
    return &impl->pub;
}

io_scaler *io_scaler_new(int64_t d, ad_error *err)
{
    return io_scaler_new_with(d, NULL, NULL, err);
}

/* A spread that would give NaN or Inf becomes 1: constant features map to 0. */
static float safe_spread(double spread)
{
    float f = (float)spread;
    return (f > 0.0f && isfinite(f)) ? f : 1.0f;
}

int io_scaler_fit(io_scaler *s, const io_dataset *train, io_scale_kind kind, ad_error *err)
{
    double *acc = NULL; /* (2, d): min and max, or sum and sum of squares */
    int64_t n, d;
    if (!s || !train)
        return ad_error_set(err, AD_EINVAL, "io_scaler_fit: scaler or dataset is NULL");
    n = train->n;
    d = train->d;
    if (n <= 0)
        return ad_error_set(err, AD_EINVAL, "cannot fit a scaler on an empty dataset");
    if (d != s->d || (size_t)d > ((const scaler_impl *)s)->d)
        return ad_error_set(err, AD_EINVAL, "scaler has %lld features but the dataset has %lld",
                            (long long)s->d, (long long)d);
    if (kind == IO_SCALE_MINMAX_GLOBAL) {
        float lo = train->x[0], hi = train->x[0];
        for (int64_t i = 0; i < n * d; i++) {
            lo = train->x[i] < lo ? train->x[i] : lo;
            hi = train->x[i] > hi ? train->x[i] : hi;
        }
        for (int64_t j = 0; j < d; j++) {
            s->center[j] = lo;
            s->spread[j] = safe_spread((double)hi - (double)lo);
        }
        return ad_error_ok(err);
    }
    if (kind != IO_SCALE_MINMAX && kind != IO_SCALE_STANDARD)
        return ad_error_set(err, AD_EINVAL, "unknown scaling kind %d", (int)kind);
    const ad_allocator *m = &((scaler_impl *)s)->mem;
    if (!alloc_array(m, (void **)&acc, (size_t)d, 2 * sizeof(double)))
        return ad_error_set(err, AD_ENOMEM, "out of memory fitting a scaler of %lld features",
                            (long long)d);
    if (kind == IO_SCALE_MINMAX) {
        for (int64_t j = 0; j < d; j++)
            acc[j] = acc[d + j] = train->x[j];
        for (int64_t i = 1; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double v = train->x[i * d + j];
                acc[j] = v < acc[j] ? v : acc[j];
                acc[d + j] = v > acc[d + j] ? v : acc[d + j];
            }
        for (int64_t j = 0; j < d; j++) {
            s->center[j] = (float)acc[j];
            s->spread[j] = safe_spread(acc[d + j] - acc[j]);
        }
    } else {
        /* Two passes (mean, then squared deviations) for accuracy. */
        for (int64_t j = 0; j < 2 * d; j++)
            acc[j] = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++)
                acc[j] += train->x[i * d + j];
        for (int64_t j = 0; j < d; j++)
            acc[j] /= (double)n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double dev = train->x[i * d + j] - acc[j];
                acc[d + j] += dev * dev;
            }
        for (int64_t j = 0; j < d; j++) {
            s->center[j] = (float)acc[j];
            s->spread[j] = safe_spread(sqrt(acc[d + j] / (double)n));
        }
    }
    mem_free(m, acc, 2 * (size_t)d * sizeof(double));
    return ad_error_ok(err);
}

int io_scaler_apply(const io_scaler *s, io_dataset *ds, ad_error *err)
{
    if (!s || !ds)
        return ad_error_set(err, AD_EINVAL, "io_scaler_apply: scaler or dataset is NULL");
    if (ds->d != s->d || (size_t)s->d > ((const scaler_impl *)s)->d)
        return ad_error_set(err, AD_EINVAL, "scaler has %lld features but the dataset has %lld",
                            (long long)s->d, (long long)ds->d);
    for (int64_t i = 0; i < ds->n; i++) {
        float *row = ds->x + i * ds->d;
        for (int64_t j = 0; j < ds->d; j++)
            row[j] = (row[j] - s->center[j]) / s->spread[j];
    }
    return ad_error_ok(err);
}

/* ------------------------------------------------------------ (Fashion-)MNIST */

static const char *const fashion_names[IO_FASHION_MNIST_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

const char *io_fashion_mnist_class_name(int k)
{
    return k >= 0 && k < IO_FASHION_MNIST_CLASSES ? fashion_names[k] : NULL;
}
