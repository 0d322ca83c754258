/* Data readers and iteration: IDX, (Fashion-)MNIST, CSV, scaling, the seeded
   shuffle, batches, splits; every malformed fixture and allocation failure.
   Fixtures are in tests/data, written by tests/data/make_fixtures.py. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chainrule/data.h"

#ifndef CHAINRULE_TEST_DIR
#define CHAINRULE_TEST_DIR "tests"
#endif

static char path_buf[4][1024];
static int path_next;

/* tests/data/<name>; rotating buffers so a few can be live at once. */
static const char *fixture(const char *name)
{
    char *p = path_buf[path_next++ % 4];
    snprintf(p, sizeof path_buf[0], "%s/data/%s", CHAINRULE_TEST_DIR, name);
    return p;
}

/* Skips the calling test when the library was built without zlib. */
static void need_zlib(void)
{
    io_idx *idx = NULL;
    ad_error err;
    if (((idx = io_idx_read(fixture("mnist_small/train-labels-idx1-ubyte.gz"), &err))
             ? AD_OK
             : err.code) == AD_EUNSUPPORTED)
        cr_skip_test("built without zlib: %s", err.message);
    io_idx_free(idx);
}

#define assert_contains(haystack, needle)                                                          \
    cr_assert(strstr((haystack), (needle)) != NULL, "message \"%s\" lacks \"%s\"", (haystack),     \
              (needle))

/* ---------------------------------------------------------------- RNG */

Test(rng, splitmix64_reference_values)
{
    io_data_rng r;
    io_data_rng_seed(&r, 0);
    cr_assert_eq(io_data_rng_next(&r), UINT64_C(0xE220A8397B1DCDAF));
    cr_assert_eq(io_data_rng_next(&r), UINT64_C(0x6E789E6AA1B965F4));
    cr_assert_eq(io_data_rng_next(&r), UINT64_C(0x06C45D188009454F));
    io_data_rng_seed(&r, 42);
    cr_assert_eq(io_data_rng_next(&r), UINT64_C(0xBDD732262FEB6E95));
    cr_assert_eq(r.state, UINT64_C(42) + UINT64_C(0x9E3779B97F4A7C15));
}

Test(rng, below_matches_reference_and_stays_in_range)
{
    /* Values from the Python reference of the documented algorithm. */
    const uint64_t want[8] = {7, 4, 6, 3, 4, 5, 8, 2};
    io_data_rng r;
    io_data_rng_seed(&r, 7);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(io_data_rng_below(&r, 10), want[i], "draw %d", i);
    cr_assert_eq(io_data_rng_below(&r, 0), 0);
    cr_assert_eq(io_data_rng_below(&r, 1), 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_lt(io_data_rng_below(&r, 3), 3);
}

Test(rng, below_rejects_the_biased_range)
{
    /* With bound 2^63 + 1 the values below 2^63 - 1 are redrawn: seeded with
       7 the first two raw draws are rejected (Python reference values). */
    const uint64_t bound = (UINT64_C(1) << 63) + 1;
    io_data_rng r;
    io_data_rng_seed(&r, 7);
    cr_assert_eq(io_data_rng_below(&r, bound), UINT64_C(0x66984080BAB12A01));
    cr_assert_eq(io_data_rng_below(&r, bound), UINT64_C(0x153AEB70673E29CA));
    cr_assert_eq(io_data_rng_below(&r, bound), UINT64_C(0x75BA4EB728DD632B));
}

Test(rng, permutation_is_portable_and_depends_on_seed_and_epoch)
{
    const int64_t want0[10] = {0, 9, 5, 8, 6, 4, 7, 2, 1, 3};
    const int64_t want1[10] = {2, 3, 9, 7, 5, 8, 6, 4, 0, 1};
    const int64_t want7[10] = {6, 2, 4, 8, 0, 9, 7, 1, 5, 3};
    int64_t p[10];
    io_data_permutation(p, 10, 42, 0);
    cr_assert_arr_eq(p, want0, sizeof p);
    io_data_permutation(p, 10, 42, 1);
    cr_assert_arr_eq(p, want1, sizeof p);
    io_data_permutation(p, 10, 42, 7);
    cr_assert_arr_eq(p, want7, sizeof p);
}

Test(rng, large_permutation_visits_each_index_once)
{
    enum { N = 1000 };
    static int64_t p[N];
    static unsigned char seen[N];
    int64_t fixed = 0;
    io_data_permutation(p, N, 123, 5);
    for (int64_t i = 0; i < N; i++) {
        cr_assert_lt(p[i], N);
        cr_assert_eq(seen[p[i]], 0, "index %lld twice", (long long)p[i]);
        seen[p[i]] = 1;
        fixed += p[i] == i;
    }
    cr_assert_lt(fixed, 20, "a shuffle should move almost everything (%lld fixed)",
                 (long long)fixed);
}

/* ------------------------------------------------------------ dataset ops */

/* n examples of d features: x[i][j] = 10 i + j, y[i] = i % 3. */
static io_dataset *counting(int64_t n, int64_t d)
{
    io_dataset *ds = NULL;
    ad_error err;
    cr_assert_eq(((ds = io_dataset_new(n, d, true, &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++)
            ds->x[i * d + j] = (float)(10 * i + j);
        ds->y[i] = (int)(i % 3);
    }
    ds->classes = 3;
    return ds;
}

Test(dataset, create_zeroes_and_rejects_overflow)
{
    io_dataset *ds = NULL;
    ad_error err;
    cr_assert_eq(((ds = io_dataset_new(3, 2, false, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(ds->n, 3);
    cr_assert_eq(ds->d, 2);
    cr_assert_null(ds->y);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(ds->x[i], 0.0f);
    io_dataset_free(ds);
    cr_assert_eq(((ds = io_dataset_new(SIZE_MAX / 2, 4, true, &err)) ? AD_OK : err.code),
                 AD_EINVAL);
    cr_assert_null(ds);
    assert_contains(err.message, "too large");
    io_dataset_free(NULL);
}

Test(dataset, slice_split_truncate)
{
    io_dataset *ds = counting(10, 2), *a = NULL, *b = NULL;
    ad_error err;
    cr_assert_eq(((a = io_dataset_slice(ds, 3, 4, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_eq(a->n, 4);
    cr_assert_eq(a->x[0], 30.0f);
    cr_assert_eq(a->x[7], 61.0f);
    cr_assert_eq(a->y[0], 0);
    cr_assert_eq(a->y[3], 0);
    cr_assert_eq(a->classes, 3);
    io_dataset_free(a);

    cr_assert_eq(((a = io_dataset_slice(ds, 8, 3, &err)) ? AD_OK : err.code), AD_EINVAL);
    cr_assert_null(a);
    assert_contains(err.message, "outside the dataset of 10 examples");

    cr_assert_eq(
        ((io_dataset_split(ds, 3, &a, &b, &err) == 0 ? AD_OK : err.code) == 0 ? AD_OK : err.code),
        0);
    cr_assert_eq(a->n, 3);
    cr_assert_eq(b->n, 7);
    cr_assert_eq(a->x[4], 20.0f);
    cr_assert_eq(b->x[0], 30.0f);
    cr_assert_eq(b->y[6], 0);
    io_dataset_free(a);
    io_dataset_free(b);
    cr_assert_eq(
        ((io_dataset_split(ds, 11, &a, &b, &err) == 0 ? AD_OK : err.code) == 0 ? AD_OK : err.code),
        AD_EINVAL);
    cr_assert_null(a);
    cr_assert_null(b);
    assert_contains(err.message, "cannot split 11 examples off a dataset of 10");

    io_dataset_truncate(ds, 4);
    cr_assert_eq(ds->n, 4);
    io_dataset_truncate(ds, 100);
    cr_assert_eq(ds->n, 4);
    io_dataset_free(ds); /* frees the full allocation despite n == 4 */
}

Test(dataset, negative_counts_are_refused_with_a_message)
{
    ad_error err;
    io_dataset *first = NULL, *rest = NULL;
    cr_assert_null(io_dataset_new(-1, 3, true, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "a dataset of -1 x 3 features: a size is negative");
    io_dataset *ds = counting(5, 2);
    cr_assert_null(io_dataset_slice(ds, -1, 2, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "slice [-1, -1 + 2) is outside the dataset of 5 examples");
    cr_assert_null(io_dataset_slice(ds, 1, -2, &err));
    cr_assert_str_eq(err.message, "slice [1, 1 + -2) is outside the dataset of 5 examples");
    cr_assert_eq(io_dataset_split(ds, -1, &first, &rest, &err), -1);
    cr_assert(!first && !rest);
    cr_assert_str_eq(err.message, "cannot split -1 examples off a dataset of 5 examples");
    io_dataset_truncate(ds, -3);
    cr_assert_eq(ds->n, 5, "a negative truncation changes nothing");
    cr_assert_null(io_batcher_new(ds, -4, true, 1, &err));
    cr_assert_str_eq(err.message, "batch size must be at least 1 (not -4)");
    cr_assert_null(io_scaler_new(-2, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "io_scaler_new: -2 features");
    int64_t p[1] = {7};
    io_data_permutation(p, -5, 1, 0);
    cr_assert_eq(p[0], 7, "n < 1 writes nothing");
    io_dataset_free(ds);
}

Test(dataset, shuffle_moves_rows_as_the_permutation_says)
{
    io_dataset *ds = counting(10, 3);
    int64_t p[10];
    io_data_permutation(p, 10, 99, 0);
    io_dataset_shuffle(ds, 99);
    for (int64_t i = 0; i < 10; i++) {
        cr_assert_eq(ds->x[i * 3], (float)(10 * p[i]));
        cr_assert_eq(ds->x[i * 3 + 2], (float)(10 * p[i] + 2));
        cr_assert_eq(ds->y[i], (int)(p[i] % 3));
    }
    io_dataset_free(ds);
}

Test(dataset, scale_divides)
{
    io_dataset *ds = counting(2, 2);
    io_dataset_scale(ds, 255.0f);
    cr_assert_eq(ds->x[3], 11.0f / 255.0f);
    io_dataset_free(ds);
}

/* Whether the mapping of this process that holds addr has flag among its
   VmFlags in /proc/self/smaps ("hg": madvise(MADV_HUGEPAGE)); -1 when the
   file cannot be read (not Linux). */
static int mapping_has_flag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    unsigned long a = (unsigned long)(uintptr_t)addr, lo, hi;
    int inside = 0, found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = a >= lo && a < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            char padded[520];
            snprintf(padded, sizeof padded, "%s ", line + 8);
            char want[8];
            snprintf(want, sizeof want, " %s ", flag);
            found = strstr(padded, want) != NULL;
        }
    }
    fclose(f);
    return found;
}

static void *plain_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

Test(dataset, large_features_ask_for_huge_pages_from_malloc_only)
{
    /* 40 MiB of features: past malloc's largest mmap threshold, so the array
       is a mapping of its own; its whole 2 MiB pages are advised, and the
       values are the zeros io_dataset_new promises */
    const int64_t n = 10240, d = 1024;
    const uintptr_t huge = (uintptr_t)1 << 21;
    ad_error err;
    io_dataset *ds = io_dataset_new(n, d, true, &err);
    cr_assert_not_null(ds, "%s", err.message);
    const char *inner = (const char *)(((uintptr_t)ds->x + huge - 1) & ~(huge - 1));
    int hg = mapping_has_flag(inner, "hg");
    struct stat st;
    if (hg < 0 || stat("/sys/kernel/mm/transparent_hugepage", &st) != 0) {
        io_dataset_free(ds);
        cr_skip_test("no /proc/self/smaps or no transparent huge pages in this kernel");
    }
    cr_assert_eq(hg, 1, "the features of a large dataset are not advised MADV_HUGEPAGE");
    cr_assert_eq(ds->x[0], 0.0f);
    cr_assert_eq(ds->x[n * d - 1], 0.0f);
    cr_assert_eq(ds->y[n - 1], 0);
    io_dataset_free(ds);

    /* a caller's allocator: its memory is left as it gave it */
    ds = io_dataset_new_with(n, d, false, plain_alloc, NULL, &err);
    cr_assert_not_null(ds, "%s", err.message);
    inner = (const char *)(((uintptr_t)ds->x + huge - 1) & ~(huge - 1));
    cr_assert_eq(mapping_has_flag(inner, "hg"), 0, "memory of the caller's allocator was advised");
    io_dataset_free(ds);
}

/* ------------------------------------------------------------------ scaling */

Test(scaler, minmax_per_feature_fit_on_train_applied_to_test)
{
    io_dataset *train = counting(5, 3), *test = counting(2, 3);
    io_scaler *s = NULL;
    ad_error err;
    for (int64_t i = 0; i < 5; i++)
        train->x[i * 3 + 2] = 7.0f; /* a constant feature */
    cr_assert_eq(((s = io_scaler_new(3, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(((io_scaler_fit(s, train, IO_SCALE_MINMAX, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 0, "%s", err.message);
    cr_assert_eq(s->center[0], 0.0f);
    cr_assert_eq(s->spread[0], 40.0f);
    cr_assert_eq(s->center[1], 1.0f);
    cr_assert_eq(s->spread[2], 1.0f, "constant feature: spread 1, no NaN");
    cr_assert_eq(
        ((io_scaler_apply(s, train, &err) == 0 ? AD_OK : err.code) == 0 ? AD_OK : err.code), 0);
    cr_assert_eq(train->x[0], 0.0f);
    cr_assert_eq(train->x[12], 1.0f);
    cr_assert_eq(train->x[2], 0.0f);
    cr_assert_eq(((io_scaler_apply(s, test, &err) == 0 ? AD_OK : err.code) == 0 ? AD_OK : err.code),
                 0);
    cr_assert_float_eq(test->x[3], 0.25f, 1e-7); /* (10 - 0) / 40 */
    io_scaler_free(s);
    io_dataset_free(train);
    io_dataset_free(test);
}

Test(scaler, standard_gives_zero_mean_unit_variance)
{
    io_dataset *ds = counting(4, 2);
    io_scaler *s = NULL;
    ad_error err;
    double mean = 0, var = 0;
    cr_assert_eq(((s = io_scaler_new(2, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(((io_scaler_fit(s, ds, IO_SCALE_STANDARD, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 0);
    cr_assert_float_eq(s->center[0], 15.0f, 1e-6);
    cr_assert_float_eq(s->spread[0], (float)sqrt(125.0), 1e-5); /* population std of 0,10,20,30 */
    io_scaler_apply(s, ds, &err);
    for (int64_t i = 0; i < 4; i++)
        mean += ds->x[i * 2 + 1];
    mean /= 4;
    for (int64_t i = 0; i < 4; i++)
        var += (ds->x[i * 2 + 1] - mean) * (ds->x[i * 2 + 1] - mean);
    cr_assert_float_eq(mean, 0.0, 1e-6);
    cr_assert_float_eq(var / 4, 1.0, 1e-6);
    io_scaler_free(s);
    io_dataset_free(ds);
}

Test(scaler, global_minmax_and_errors)
{
    io_dataset *ds = counting(3, 2), *other = counting(2, 5), *empty = NULL;
    io_scaler *s = NULL;
    ad_error err;
    cr_assert_eq(((s = io_scaler_new(2, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(((io_scaler_fit(s, ds, IO_SCALE_MINMAX_GLOBAL, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 0);
    cr_assert_eq(s->center[1], 0.0f);
    cr_assert_eq(s->spread[1], 21.0f);
    cr_assert_eq(
        ((io_scaler_apply(s, other, &err) == 0 ? AD_OK : err.code) == 0 ? AD_OK : err.code),
        AD_EINVAL);
    assert_contains(err.message, "scaler has 2 features but the dataset has 5");
    cr_assert_eq(((io_scaler_fit(s, other, IO_SCALE_MINMAX, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 AD_EINVAL);
    empty = io_dataset_new(0, 2, true, NULL);
    cr_assert_eq(((io_scaler_fit(s, empty, IO_SCALE_STANDARD, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "empty dataset");
    io_scaler_free(s);
    io_scaler_free(NULL);
    io_dataset_free(ds);
    io_dataset_free(other);
    io_dataset_free(empty);
}

/* ------------------------------------------------------------------ batches */

Test(batcher, in_order_with_a_smaller_last_batch)
{
    io_dataset *ds = counting(10, 2);
    io_batcher *b = NULL;
    io_batch batch;
    ad_error err;
    int64_t sizes[3] = {4, 4, 2}, k = 0;
    cr_assert_eq(((b = io_batcher_new(ds, 4, false, 0, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(io_batcher_count(b), 3);
    while (io_batcher_next(b, &batch)) {
        cr_assert_lt(k, 3);
        cr_assert_eq(batch.size, sizes[k]);
        cr_assert_eq(batch.index, k);
        cr_assert_eq(batch.x, ds->x + 8 * k, "unshuffled batches point into the dataset");
        cr_assert_eq(batch.y[0], (int)((4 * k) % 3));
        k++;
    }
    cr_assert_eq(k, 3);
    cr_assert_not(io_batcher_next(b, &batch), "stays finished");
    io_batcher_start_epoch(b, 1);
    cr_assert(io_batcher_next(b, &batch));
    cr_assert_eq(batch.x, ds->x);
    io_batcher_free(b);
    io_dataset_free(ds);
}

Test(batcher, shuffled_follows_the_epoch_permutation_and_replays)
{
    io_dataset *ds = counting(10, 2);
    io_batcher *b = NULL;
    io_batch batch;
    int64_t p[10], seen = 0, order1[10], k;
    cr_assert_eq(((b = io_batcher_new(ds, 3, true, 42, NULL)) ? 0 : -1), 0);
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        io_batcher_start_epoch(b, epoch);
        io_data_permutation(p, 10, 42, epoch);
        seen = 0;
        while (io_batcher_next(b, &batch))
            for (int64_t i = 0; i < batch.size; i++, seen++) {
                cr_assert_eq(batch.x[2 * i], (float)(10 * p[seen]));
                cr_assert_eq(batch.x[2 * i + 1], (float)(10 * p[seen] + 1));
                cr_assert_eq(batch.y[i], (int)(p[seen] % 3));
                if (epoch == 1)
                    order1[seen] = p[seen];
            }
        cr_assert_eq(seen, 10);
    }
    /* Resuming at epoch 1 replays exactly the same order. */
    io_batcher_start_epoch(b, 1);
    k = 0;
    while (io_batcher_next(b, &batch))
        for (int64_t i = 0; i < batch.size; i++, k++)
            cr_assert_eq(batch.x[2 * i], (float)(10 * order1[k]));
    io_batcher_free(b);
    io_dataset_free(ds);
}

Test(batcher, errors_and_unlabelled)
{
    io_dataset *ds = NULL;
    io_batcher *b = NULL;
    io_batch batch;
    ad_error err;
    ds = io_dataset_new(5, 2, false, NULL);
    cr_assert_eq(((b = io_batcher_new(ds, 0, true, 1, &err)) ? AD_OK : err.code), AD_EINVAL);
    cr_assert_null(b);
    assert_contains(err.message, "batch size must be at least 1");
    cr_assert_eq(((b = io_batcher_new(ds, 100, true, 1, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(io_batcher_count(b), 1);
    cr_assert(io_batcher_next(b, &batch));
    cr_assert_eq(batch.size, 5);
    cr_assert_null(batch.y);
    io_batcher_free(b);
    io_batcher_free(NULL);
    io_dataset_free(ds);
}

/* ---------------------------------------------------------------------- IDX */

Test(idx, reads_gzipped_images)
{
    io_idx *idx = NULL;
    ad_error err;
    need_zlib();
    cr_assert_eq(((idx = io_idx_read(fixture("mnist_small/train-images-idx3-ubyte.gz"), &err))
                      ? AD_OK
                      : err.code),
                 0, "%s", err.message);
    cr_assert_eq(idx->type, AD_U8);
    cr_assert_eq(idx->ndim, 3);
    cr_assert_eq(idx->dims[0], 5);
    cr_assert_eq(idx->dims[1], 2);
    cr_assert_eq(idx->dims[2], 3);
    cr_assert_eq(idx->count, 30);
    for (int64_t k = 0; k < 30; k++)
        cr_assert_eq(io_idx_value(idx, k), (double)(k * 7 % 256), "pixel %lld", (long long)k);
    cr_assert_eq(io_idx_value(idx, -1), 0.0, "outside [0, count): 0");
    cr_assert_eq(io_idx_value(idx, idx->count), 0.0);
    io_idx_free(idx);
}

Test(idx, reads_wider_types_big_endian)
{
    io_idx *idx = NULL;
    ad_error err;
    cr_assert_eq(((idx = io_idx_read(fixture("f64.idx"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(idx->type, AD_F64);
    cr_assert_eq(((double *)idx->data)[1], -2.25);
    cr_assert_eq(io_idx_value(idx, 3), 1e10);
    io_idx_free(idx);
    cr_assert_eq(((idx = io_idx_read(fixture("i16.idx"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(io_idx_value(idx, 0), -2.0);
    cr_assert_eq(io_idx_value(idx, 1), 300.0);
    cr_assert_eq(io_idx_value(idx, 2), -32768.0);
    io_idx_free(idx);
    cr_assert_eq(((idx = io_idx_read(fixture("i32_labels.idx"), &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(((int32_t *)idx->data)[1], 100000);
    io_idx_free(idx);
}

/* Reads a malformed fixture and checks status and message. */
static void expect_idx_error(const char *name, ad_errcode status, const char *text)
{
    io_idx *idx = (io_idx *)&idx; /* must be reset to NULL */
    ad_error err;
    const char *path = fixture(name);
    cr_assert_eq(((idx = io_idx_read(path, &err)) ? AD_OK : err.code), status, "%s: got \"%s\"",
                 name, err.message);
    cr_assert_eq(err.code, status);
    cr_assert_null(idx);
    assert_contains(err.message, text);
    if (status != AD_EINVAL)
        assert_contains(err.message, path);
}

Test(idx, malformed_files_are_refused_with_a_reason)
{
    expect_idx_error("bad_magic.idx", AD_EFORMAT, "bad magic number 50 4b 03 04");
    expect_idx_error("bad_type.idx", AD_EFORMAT, "unknown IDX element type 0x0a");
    expect_idx_error("zero_dims.idx", AD_EFORMAT, "0 dimensions");
    expect_idx_error("too_many_dims.idx", AD_EFORMAT, "9 dimensions");
    expect_idx_error("empty.idx", AD_EFORMAT, "empty file");
    expect_idx_error("short_magic.idx", AD_EFORMAT, "truncated file: 2 bytes");
    expect_idx_error("truncated_header.idx", AD_EFORMAT,
                     "truncated file: the header ends inside its 3 dimension sizes");
    expect_idx_error("truncated_data.idx", AD_EFORMAT,
                     "truncated file: the header declares 30 data bytes, the file holds 20");
    expect_idx_error("extra_bytes.idx", AD_EFORMAT, "unexpected bytes after the 30 data");
    /* 0 examples of 4227793151 x 4278199807: no data, but one example's size
       overflows (found by fuzz_idx once counts became int64_t) */
    expect_idx_error("empty_huge_dims.idx", AD_EFORMAT, "the IDX dimensions are too large");
}

Test(idx, broken_gzip_is_refused)
{
    io_idx *idx = NULL;
    ad_error err;
    int st = ((idx = io_idx_read(fixture("truncated.idx.gz"), &err)) ? AD_OK : err.code);
    if (st == AD_EUNSUPPORTED)
        cr_skip_test("built without zlib: %s", err.message);
    cr_assert_eq(st, AD_EFORMAT, "%s", err.message);
    assert_contains(err.message, "truncated file: the compressed data ends early");
    cr_assert_eq(((idx = io_idx_read(fixture("corrupt.idx.gz"), &err)) ? AD_OK : err.code),
                 AD_EFORMAT);
    assert_contains(err.message, "corrupt gzip data");
    cr_assert_null(idx);
}

Test(idx, missing_file_and_directory_name_the_path)
{
    io_idx *idx = NULL;
    ad_error err;
    cr_assert_eq(((idx = io_idx_read("/nonexistent/dir/x.idx", &err)) ? AD_OK : err.code), AD_EIO);
    cr_assert_str_eq(err.message, "cannot open /nonexistent/dir/x.idx: No such file or directory");
    cr_assert_eq(((idx = io_idx_read(fixture("mnist_small"), &err)) ? AD_OK : err.code), AD_EIO);
    assert_contains(err.message, "mnist_small: Is a directory");
    cr_assert_eq(((idx = io_idx_read(NULL, &err)) ? AD_OK : err.code), AD_EINVAL);
}

Test(idx, dataset_from_idx_checks_labels)
{
    io_idx *img = NULL, *lab = NULL, *f64 = NULL;
    io_dataset *ds = NULL;
    ad_error err;
    need_zlib();
    cr_assert_eq(((img = io_idx_read(fixture("mnist_small/t10k-images-idx3-ubyte"), &err))
                      ? AD_OK
                      : err.code),
                 0);
    cr_assert_eq(((lab = io_idx_read(fixture("mnist_small/train-labels-idx1-ubyte.gz"), &err))
                      ? AD_OK
                      : err.code),
                 0, "%s", err.message);
    cr_assert_eq(((ds = io_dataset_from_idx(img, lab, &err)) ? AD_OK : err.code), AD_EMISMATCH);
    cr_assert_str_eq(err.message,
                     "the examples IDX has 3 examples but the labels IDX has 5 labels");
    cr_assert_null(ds);
    f64 = io_idx_read(fixture("f64.idx"), &err);
    cr_assert_eq(((ds = io_dataset_from_idx(img, f64, &err)) ? AD_OK : err.code), AD_EFORMAT);
    assert_contains(err.message, "labels must be a 1-d IDX of integers, found 2-d double");
    /* Unlabelled images: chainrule predict. */
    cr_assert_eq(((ds = io_dataset_from_idx(img, NULL, &err)) ? AD_OK : err.code), 0);
    cr_assert_null(ds->y);
    cr_assert_eq(ds->classes, 0);
    cr_assert_eq(ds->n, 3);
    cr_assert_eq(ds->d, 6);
    cr_assert_eq(ds->x[6], 42.0f);
    io_dataset_free(ds);
    io_idx_free(img);
    io_idx_free(lab);
    io_idx_free(f64);
}

Test(idx, label_out_of_range)
{
    io_dataset *ds = NULL;
    ad_error err;
    cr_assert_eq(
        ((ds = io_idx_load_dataset(fixture("i32_labels.idx"), fixture("i32_labels.idx"), &err))
             ? AD_OK
             : err.code),
        AD_EFORMAT);
    assert_contains(err.message, "i32_labels.idx: label 100000 of example 1 is outside [0, 65536)");
    cr_assert_null(ds);
}

/* --------------------------------------------------------- (Fashion-)MNIST */

Test(mnist, loads_gzipped_train_and_plain_test)
{
    io_dataset *train = NULL, *test = NULL;
    ad_error err;
    const int train_labels[5] = {3, 1, 4, 1, 5}, test_labels[3] = {9, 2, 6};
    need_zlib();
    cr_assert_eq(
        ((io_mnist_load(fixture("mnist_small"), &train, &test, &err) == 0 ? AD_OK : err.code) == 0
             ? AD_OK
             : err.code),
        0, "%s", err.message);
    cr_assert_eq(train->n, 5);
    cr_assert_eq(train->d, 6);
    cr_assert_eq(train->height, 2);
    cr_assert_eq(train->width, 3);
    cr_assert_arr_eq(train->y, train_labels, sizeof train_labels);
    cr_assert_eq(train->classes, 6);
    for (int64_t k = 0; k < 30; k++)
        cr_assert_eq(train->x[k], (float)(k * 7 % 256));
    cr_assert_eq(test->n, 3);
    cr_assert_arr_eq(test->y, test_labels, sizeof test_labels);
    cr_assert_eq(test->classes, 10);
    io_dataset_free(train);
    io_dataset_free(test);

    /* Only the test half (chainrule eval). */
    cr_assert_eq(
        ((io_mnist_load(fixture("mnist_small"), NULL, &test, &err) == 0 ? AD_OK : err.code) == 0
             ? AD_OK
             : err.code),
        0);
    cr_assert_eq(test->n, 3);
    io_dataset_free(test);
}

Test(mnist, count_mismatch_names_both_files)
{
    io_dataset *train = NULL, *test = NULL;
    ad_error err;
    char want[1200];
    cr_assert_eq(
        ((io_mnist_load(fixture("mnist_mismatch"), &train, &test, &err) == 0 ? AD_OK : err.code) ==
                 0
             ? AD_OK
             : err.code),
        AD_EMISMATCH);
    snprintf(want, sizeof want, "%s has 5 examples but %s has 4 labels",
             fixture("mnist_mismatch/train-images-idx3-ubyte"),
             fixture("mnist_mismatch/train-labels-idx1-ubyte"));
    cr_assert_str_eq(err.message, want);
    cr_assert_null(train);
    cr_assert_null(test);
}

Test(mnist, missing_directory_file_and_wrong_shape)
{
    io_dataset *train = NULL, *test = NULL;
    ad_error err;
    char want[1200];
    cr_assert_eq(((io_mnist_load("/no/such/dir", &train, &test, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 AD_EIO);
    cr_assert_str_eq(err.message, "data directory /no/such/dir: No such file or directory");
    cr_assert_eq(
        ((io_mnist_load(fixture("iris_small.csv"), &train, &test, &err) == 0 ? AD_OK : err.code) ==
                 0
             ? AD_OK
             : err.code),
        AD_EIO);
    assert_contains(err.message, "is not a directory");

    cr_assert_eq(
        ((io_mnist_load(fixture("mnist_missing"), &train, &test, &err) == 0 ? AD_OK : err.code) == 0
             ? AD_OK
             : err.code),
        AD_EIO);
    snprintf(want, sizeof want, "missing data file: neither %s nor %s.gz exists",
             fixture("mnist_missing/t10k-images-idx3-ubyte"),
             fixture("mnist_missing/t10k-images-idx3-ubyte"));
    cr_assert_str_eq(err.message, want);
    cr_assert_null(train, "the loaded half is freed on failure");
    cr_assert_null(test);

    cr_assert_eq(
        ((io_mnist_load(fixture("mnist_not_images"), &train, NULL, &err) == 0 ? AD_OK : err.code) ==
                 0
             ? AD_OK
             : err.code),
        AD_EFORMAT);
    assert_contains(err.message, "expected 3-d unsigned-byte images (n, rows, cols), found 2-d");
}

Test(mnist, class_names)
{
    cr_assert_str_eq(io_fashion_mnist_class_name(0), "T-shirt/top");
    cr_assert_str_eq(io_fashion_mnist_class_name(6), "Shirt");
    cr_assert_str_eq(io_fashion_mnist_class_name(9), "Ankle boot");
    cr_assert_null(io_fashion_mnist_class_name(10));
    cr_assert_null(io_fashion_mnist_class_name(-1));
}

Test(mnist, real_fashion_mnist_when_installed, .timeout = 120)
{
    io_dataset *train = NULL, *test = NULL;
    ad_error err;
    struct stat sb;
    int64_t counts[10] = {0};
    if (stat(IO_FASHION_MNIST_DIR, &sb) != 0)
        cr_skip_test("%s not found (Debian package dataset-fashion-mnist)", IO_FASHION_MNIST_DIR);
    need_zlib();
    cr_assert_eq(((io_mnist_load(NULL, &train, &test, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 0, "%s", err.message);
    cr_assert_eq(train->n, 60000);
    cr_assert_eq(test->n, 10000);
    cr_assert_eq(train->d, 784);
    cr_assert_eq(train->height, 28);
    cr_assert_eq(train->width, 28);
    cr_assert_eq(test->height, 28);
    cr_assert_eq(train->classes, 10);
    cr_assert_eq(test->classes, 10);
    for (int64_t i = 0; i < train->n; i++) {
        cr_assert(train->y[i] >= 0 && train->y[i] < 10);
        counts[train->y[i]]++;
    }
    for (int k = 0; k < 10; k++)
        cr_assert_eq(counts[k], 6000, "class %d", k);
    for (int64_t i = 0; i < test->n; i++)
        cr_assert(test->y[i] >= 0 && test->y[i] < 10);
    for (int64_t i = 0; i < train->n * train->d; i += 997)
        cr_assert(train->x[i] >= 0.0f && train->x[i] <= 255.0f);
    io_dataset_free(train);
    io_dataset_free(test);
}

/* ---------------------------------------------------------------------- CSV */

Test(csv, text_labels_quoted_header_crlf_blank_line)
{
    io_dataset *ds = NULL;
    ad_error err;
    const int want_y[4] = {0, 1, 2, 0};
    cr_assert_eq(((ds = io_csv_read(fixture("iris_small.csv"), NULL, &err)) ? AD_OK : err.code), 0,
                 "%s", err.message);
    cr_assert_eq(ds->n, 4);
    cr_assert_eq(ds->d, 3);
    cr_assert_eq(ds->classes, 3);
    cr_assert_str_eq(ds->class_names[0], "setosa");
    cr_assert_str_eq(ds->class_names[1], "versicolor");
    cr_assert_str_eq(ds->class_names[2], "virginica");
    cr_assert_arr_eq(ds->y, want_y, sizeof want_y);
    cr_assert_eq(ds->x[0], 5.1f);
    cr_assert_eq(ds->x[5], 4.7f);
    cr_assert_eq(ds->x[11], 1.4f);
    io_dataset_free(ds);
}

Test(csv, label_by_index_and_integer_labels)
{
    io_dataset *ds = NULL;
    ad_error err;
    io_csv_options opt = {.label_index = 0};
    const int want_y[4] = {2, 0, 7, 0};
    const float want_x[8] = {1.5f, -3.0f, 2000.0f, 0.25f, -0.0f, 1.0f, 4.0f, 5.0f};
    cr_assert_eq(((ds = io_csv_read(fixture("numeric.csv"), &opt, &err)) ? AD_OK : err.code), 0,
                 "%s", err.message);
    cr_assert_eq(ds->n, 4);
    cr_assert_eq(ds->d, 2);
    cr_assert_eq(ds->classes, 8);
    cr_assert_null(ds->class_names);
    cr_assert_arr_eq(ds->y, want_y, sizeof want_y);
    cr_assert_arr_eq(ds->x, want_x, sizeof want_x);
    io_dataset_free(ds);
}

Test(csv, gzipped)
{
    io_dataset *ds = NULL;
    ad_error err;
    io_csv_options opt = {.label_name = "label"};
    int st = ((ds = io_csv_read(fixture("numeric.csv.gz"), &opt, &err)) ? AD_OK : err.code);
    if (st == AD_EUNSUPPORTED)
        cr_skip_test("built without zlib: %s", err.message);
    cr_assert_eq(st, 0, "%s", err.message);
    cr_assert_eq(ds->n, 4);
    cr_assert_eq(ds->x[2], 2000.0f);
    cr_assert_eq(ds->y[2], 7);
    io_dataset_free(ds);
}

Test(csv, label_by_name_with_quotes)
{
    io_dataset *ds = NULL;
    ad_error err;
    io_csv_options opt = {.label_name = "the \"class\""};
    cr_assert_eq(((ds = io_csv_read(fixture("quoted.csv"), &opt, &err)) ? AD_OK : err.code), 0,
                 "%s", err.message);
    cr_assert_eq(ds->n, 2);
    cr_assert_eq(ds->classes, 2);
    cr_assert_str_eq(ds->class_names[0], "no");
    cr_assert_eq(ds->y[0], 1);
    cr_assert_eq(ds->y[1], 0);
    cr_assert_eq(ds->x[0], 1.0f);
    cr_assert_eq(ds->x[3], 4.0f);
    io_dataset_free(ds);
}

Test(csv, fixed_class_list_from_the_training_file)
{
    io_dataset *ds = NULL;
    ad_error err;
    const char *names[3] = {"virginica", "setosa", "versicolor"};
    io_csv_options opt = {.label_index = -1, .class_names = names, .n_class_names = 3};
    const int want_y[4] = {1, 2, 0, 1};
    cr_assert_eq(((ds = io_csv_read(fixture("iris_small.csv"), &opt, &err)) ? AD_OK : err.code), 0);
    cr_assert_arr_eq(ds->y, want_y, sizeof want_y);
    cr_assert_eq(ds->classes, 3);
    cr_assert_str_eq(ds->class_names[0], "virginica");
    io_dataset_free(ds);
    opt.n_class_names = 1; /* only "virginica" */
    cr_assert_eq(((ds = io_csv_read(fixture("iris_small.csv"), &opt, &err)) ? AD_OK : err.code),
                 AD_EFORMAT);
    assert_contains(err.message, "iris_small.csv: line 2: label 'setosa' is not one of the 1 "
                                 "known classes");
}

static void expect_csv_error(const char *name, const io_csv_options *opt, ad_errcode status,
                             const char *text)
{
    io_dataset *ds = (io_dataset *)&ds;
    ad_error err;
    cr_assert_eq(((ds = io_csv_read(fixture(name), opt, &err)) ? AD_OK : err.code), status,
                 "%s: got \"%s\"", name, err.message);
    cr_assert_null(ds);
    assert_contains(err.message, name);
    assert_contains(err.message, text);
}

/* Regression: a fractional label or one above 65,535 silently switched the
 * whole file to text labels numbered in string order. */
Test(csv, label_kind_is_explicit)
{
    io_csv_options opt = {.label_index = -1};
    expect_csv_error("labels_fractional.csv", &opt, AD_EFORMAT,
                     "line 3: label '2.5' is not a class index (an integer in [0, 65536)); a "
                     "label column of numbers holds class indices (set label_kind to "
                     "IO_CSV_LABELS_TEXT to read them as names)");
    expect_csv_error("labels_big.csv", &opt, AD_EFORMAT, "line 3: label '70000' is not");
    opt.label_kind = IO_CSV_LABELS_INTEGER;
    expect_csv_error("labels_text_train.csv", &opt, AD_EFORMAT,
                     "line 2: label 'b' is not a class index (an integer in [0, 65536))");
    /* as names: "0" < "1" < "2.5" */
    opt.label_kind = IO_CSV_LABELS_TEXT;
    io_dataset *ds = NULL;
    ad_error err;
    cr_assert_eq(
        ((ds = io_csv_read(fixture("labels_fractional.csv"), &opt, &err)) ? AD_OK : err.code), 0,
        "%s", err.message);
    cr_assert_eq(ds->classes, 3);
    cr_expect_str_eq(ds->class_names[2], "2.5");
    cr_expect(ds->y[0] == 1 && ds->y[1] == 2 && ds->y[2] == 0);
    io_dataset_free(ds);
    const char *names[] = {"a"};
    opt = (io_csv_options){.label_index = -1,
                           .class_names = names,
                           .n_class_names = 1,
                           .label_kind = IO_CSV_LABELS_INTEGER};
    expect_csv_error("labels_text_train.csv", &opt, AD_EINVAL,
                     "needs text labels, not IO_CSV_LABELS_INTEGER");
}

Test(csv, a_test_file_is_numbered_like_its_training_file)
{
    io_dataset *train = NULL, *test = NULL, *alone = NULL;
    ad_error err;
    cr_assert_eq(
        ((train = io_csv_read(fixture("labels_text_train.csv"), NULL, &err)) ? AD_OK : err.code), 0,
        "%s", err.message);
    cr_assert_eq(train->classes, 3); /* a, b, c */
    /* read alone, the test file's only class "c" would be class 0 */
    cr_assert_eq(
        ((alone = io_csv_read(fixture("labels_text_test.csv"), NULL, &err)) ? AD_OK : err.code), 0);
    cr_expect_eq(alone->y[0], 0);
    cr_assert_eq(((test = io_csv_read_like(fixture("labels_text_test.csv"), train, NULL, &err))
                      ? AD_OK
                      : err.code),
                 0, "%s", err.message);
    cr_expect_eq(test->classes, 3);
    cr_expect(test->y[0] == 2 && test->y[1] == 2, "c is class 2 in both files");
    cr_expect_str_eq(test->class_names[2], "c");
    io_dataset_free(test);
    test = (io_dataset *)&test;
    /* a label the training file lacks is an error */
    cr_assert_eq(((test = io_csv_read_like(fixture("labels_text_train.csv"), alone, NULL, &err))
                      ? AD_OK
                      : err.code),
                 AD_EFORMAT);
    assert_contains(err.message, "line 2: label 'b' is not one of the 1 known classes");
    cr_assert_null(test);
    io_dataset_free(alone);
    /* integer training labels: the test file's labels must be integers too */
    cr_assert_eq(
        ((alone = io_csv_read(fixture("numeric.csv"), &(io_csv_options){.label_index = 0}, &err))
             ? AD_OK
             : err.code),
        0, "%s", err.message);
    cr_assert_eq(((test = io_csv_read_like(fixture("labels_text_test.csv"), alone, NULL, &err))
                      ? AD_OK
                      : err.code),
                 AD_EFORMAT);
    assert_contains(err.message, "label 'c' is not a class index");
    io_dataset_free(alone);
    io_dataset_free(train);
}

Test(csv, bad_rows_name_line_and_column)
{
    io_csv_options by_name = {.label_name = "species"}, by_index = {.label_index = 5};
    expect_csv_error("bad_number.csv", NULL, AD_EFORMAT,
                     "line 4, column 2 ('b'): 'abc' is not a number");
    expect_csv_error("bad_fields.csv", NULL, AD_EFORMAT,
                     "line 3: expected 3 fields as in the header, found 2");
    expect_csv_error("empty_value.csv", NULL, AD_EFORMAT, "line 2, column 2 ('b'): empty value");
    expect_csv_error("nan_value.csv", NULL, AD_EFORMAT,
                     "line 3, column 2 ('b'): 'nan' is not a finite float");
    expect_csv_error("unterminated.csv", NULL, AD_EFORMAT,
                     "line 3, column 2: unterminated quoted field");
    expect_csv_error("quote_garbage.csv", NULL, AD_EFORMAT,
                     "line 2, column 2: unexpected character 'x' after a closing quote");
    expect_csv_error("header_only.csv", NULL, AD_EFORMAT, "no data rows after the header");
    expect_csv_error("empty.csv", NULL, AD_EFORMAT, "empty file");
    expect_csv_error("numeric.csv", &by_name, AD_EINVAL, "no column named 'species'");
    expect_csv_error("numeric.csv", &by_index, AD_EINVAL,
                     "label column 5 does not exist (the header has 3 columns)");
    expect_csv_error("no_such.csv", NULL, AD_EIO, "No such file or directory");
}

/* ------------------------------------------------- allocation failure */

typedef struct {
    long calls, fail_at; /* fail the fail_at-th call (0-based); -1 never */
    long live;           /* blocks allocated and not freed */
    long long bytes;     /* bytes allocated and not freed, from the sizes given */
} counting_alloc;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counting_alloc *a = ud;
    void *p;
    if (nsize == 0) {
        if (ptr) {
            a->live--;
            a->bytes -= (long long)osize;
        }
        free(ptr);
        return NULL;
    }
    if (a->calls++ == a->fail_at)
        return NULL;
    p = realloc(ptr, nsize);
    if (p) {
        a->live += ptr ? 0 : 1;
        a->bytes += (long long)nsize - (long long)(ptr ? osize : 0);
    }
    return p;
}

/* Runs op with the allocator failing at call 0, 1, 2, ... until op
   succeeds; every failure must be ENOMEM and leave nothing allocated. op
   gives the allocator to every object it makes (X_with), and objects made
   from them use it too. */
static void every_allocation_fails(const char *what, int (*op)(counting_alloc *a))
{
    counting_alloc a;
    long n;
    for (n = 0; n < 10000; n++) {
        int st;
        memset(&a, 0, sizeof a);
        a.fail_at = n;
        st = op(&a);
        cr_assert_eq(a.live, 0, "%s: %ld blocks leaked when allocation %ld failed", what, a.live,
                     n);
        cr_assert_eq(a.bytes, 0, "%s: size bookkeeping off by %lld bytes", what, a.bytes);
        if (st == AD_OK)
            break;
        cr_assert_eq(st, AD_ENOMEM, "%s: allocation %ld failed but the code is %s", what, n,
                     ad_errcode_string(st));
    }
    cr_assert_gt(n, 0, "%s allocates", what);
    cr_assert_lt(n, 10000);
}

static int op_mnist(counting_alloc *ca)
{
    io_dataset *train = NULL, *test = NULL, *a = NULL, *b = NULL;
    io_batcher *batcher = NULL;
    io_scaler *s = NULL;
    ad_error err = {AD_OK, ""};
    if (io_mnist_load_with(fixture("mnist_small"), &train, &test, failing_alloc, ca, &err) == 0 &&
        (io_dataset_split(train, 2, &a, &b, &err) == 0 ? AD_OK : err.code) == 0 &&
        (batcher = io_batcher_new(b, 2, true, 1, &err)) != NULL &&
        (s = io_scaler_new_with(train->d, failing_alloc, ca, &err)) != NULL)
        io_scaler_fit(s, train, IO_SCALE_STANDARD, &err);
    io_scaler_free(s);
    io_batcher_free(batcher);
    io_dataset_free(a);
    io_dataset_free(b);
    io_dataset_free(train);
    io_dataset_free(test);
    return err.code;
}

static int op_csv(counting_alloc *ca)
{
    io_dataset *ds = NULL, *copy = NULL;
    ad_error err = {AD_OK, ""};
    ds = io_csv_read_with(fixture("iris_small.csv"), NULL, failing_alloc, ca, &err);
    if (ds)
        copy = io_dataset_slice(ds, 1, 2, &err); /* copies class names */
    io_dataset_free(ds);
    io_dataset_free(copy);
    return err.code;
}

static int op_csv_fixed_names(counting_alloc *ca)
{
    const char *names[3] = {"virginica", "setosa", "versicolor"};
    io_csv_options opt = {.label_index = -1, .class_names = names, .n_class_names = 3};
    ad_error err = {AD_OK, ""};
    io_dataset_free(io_csv_read_with(fixture("iris_small.csv"), &opt, failing_alloc, ca, &err));
    return err.code;
}

static int op_idx_int_csv(counting_alloc *ca)
{
    io_csv_options opt = {.label_index = 0};
    ad_error err = {AD_OK, ""};
    io_dataset *ds = io_csv_read_with(fixture("numeric.csv"), &opt, failing_alloc, ca, &err);
    if (ds)
        io_idx_free(io_idx_read_with(fixture("f64.idx"), failing_alloc, ca, &err));
    io_dataset_free(ds);
    return err.code;
}

Test(alloc_failure, every_site_reports_enomem_and_leaks_nothing)
{
    need_zlib();
    every_allocation_fails("mnist load, split, batcher, scaler", op_mnist);
    every_allocation_fails("csv with text labels", op_csv);
    every_allocation_fails("csv with a fixed class list", op_csv_fixed_names);
    every_allocation_fails("csv with integer labels, idx", op_idx_int_csv);
}

Test(status, strings)
{
    cr_assert_str_eq(ad_errcode_string(0), "ok");
    cr_assert_str_eq(ad_errcode_string(AD_ENOMEM), "out of memory");
    cr_assert_str_eq(ad_errcode_string((ad_errcode)99), "unknown error code");
}
