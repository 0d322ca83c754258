/* NumPy .npy/.npz and model files (chainrule/io.h): round trips, malformed
   files with their messages, allocation failures, and interop both ways
   with NumPy and PyTorch through /usr/bin/python3 (skipped without them). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chainrule/checkpoint.h"
#include "test_files.h"
#include "chainrule/io.h"
#include "chainrule/nn.h"

#ifndef CHAINRULE_TEST_DIR
#define CHAINRULE_TEST_DIR "tests"
#endif

#define PYTHON "/usr/bin/python3"

/* ------------------------------------------------------------ temp files */

static void make_tmpdir(void) { make_tmpdir_tagged("io"); }

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void spill(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A .npy image with the given version, header dict and data. */
static void write_npy_raw(const char *path, int major, const char *dict, const void *data,
                          size_t len)
{
    unsigned char buf[4096];
    size_t hl = strlen(dict), start = major == 1 ? 10 : 12;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hl & 0xFF);
    buf[9] = (unsigned char)(hl >> 8);
    if (major != 1)
        buf[10] = buf[11] = 0;
    memcpy(buf + start, dict, hl);
    memcpy(buf + start + hl, data, len);
    spill(path, buf, start + hl + len);
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v & 0xFF);
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------ known data */

static float w32[6] = {-0.5f, -0.5f + 1.0f / 3, -0.5f + 2.0f / 3,
                       0.5f,  -0.5f + 4.0f / 3, -0.5f + 5.0f / 3};
static double w64[6];
static float b32[3] = {1e-30f, -3.5f, 1e30f};
static double b64[3] = {1e-30, -3.5, 1e30};
static float s32 = 2.5f;
static double s64 = 2.5;
static int32_t i32v[3] = {-5, 0, 5};
static int64_t i64v[2] = {-(INT64_C(1) << 50), INT64_C(1) << 50};
static uint8_t u8v[2] = {0, 255};

/* The arrays of interop_check.py's chainrule_arrays(). */
static int64_t known(io_array *a)
{
    for (int i = 0; i < 6; i++) {
        w64[i] = i / 3.0 - 0.5;
        w32[i] = (float)w64[i];
    }
    int64_t n = 0;
    a[n++] = (io_array){"w_f32", AD_F32, 2, {2, 3}, w32};
    a[n++] = (io_array){"b_f32", AD_F32, 1, {3}, b32};
    a[n++] = (io_array){"s_f32", AD_F32, 0, {0}, &s32};
    a[n++] = (io_array){"e_f32", AD_F32, 2, {4, 0}, NULL};
    a[n++] = (io_array){"w_f64", AD_F64, 2, {2, 3}, w64};
    a[n++] = (io_array){"b_f64", AD_F64, 1, {3}, b64};
    a[n++] = (io_array){"s_f64", AD_F64, 0, {0}, &s64};
    a[n++] = (io_array){"e_f64", AD_F64, 2, {4, 0}, NULL};
    a[n++] = (io_array){"i32", AD_I32, 1, {3}, i32v};
    a[n++] = (io_array){"i64", AD_I64, 1, {2}, i64v};
    a[n++] = (io_array){"u8", AD_U8, 2, {1, 2}, u8v};
    return n;
}

static void expect_same_array(const io_array *got, const io_array *want)
{
    cr_assert_not_null(got, "missing %s", want->name);
    cr_assert_eq(got->dtype, want->dtype, "%s: dtype", want->name);
    cr_assert_eq(got->ndim, want->ndim, "%s: ndim", want->name);
    int64_t n = 1;
    for (int i = 0; i < want->ndim; i++) {
        cr_assert_eq(got->shape[i], want->shape[i], "%s: axis %d", want->name, i);
        n *= want->shape[i];
    }
    if (n == 0) {
        cr_assert_null(got->data);
        return;
    }
    cr_assert_eq(memcmp(got->data, want->data, n * io_dtype_size(want->dtype)), 0,
                 "%s: values differ", want->name);
}

/* ------------------------------------------------------------ round trips */

TestSuite(io, .init = make_tmpdir, .fini = remove_tmpdir);

Test(io, npy_round_trip_every_dtype)
{
    io_array a[16];
    int64_t n = known(a);
    for (int64_t i = 0; i < n; i++) {
        io_array *back = NULL;
        ad_error err;
        const char *path = tmp_path("a.npy");
        cr_assert_eq((io_npy_write(path, &a[i], &err) == 0 ? AD_OK : err.code), 0, "%s",
                     err.message);
        cr_assert_eq(((back = io_npy_read(path, &err)) ? AD_OK : err.code), 0, "%s", err.message);
        cr_assert_str_eq(back->name, "");
        expect_same_array(back, &a[i]);
        io_array_free(back);
    }
}

Test(io, negative_sizes_and_counts_are_refused)
{
    ad_error err;
    float v[2] = {1, 2}, out[2];
    io_array neg = {"a", AD_F32, 1, {-2}, v}, ok = {"b", AD_F32, 1, {2}, v};
    cr_assert_eq(io_npy_write(tmp_path("neg.npy"), &neg, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert(strstr(err.message, "the array has a negative size -2 on axis 0"), "%s", err.message);
    cr_assert_eq(io_npz_write(tmp_path("neg.npz"), &ok, -1, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "io_npz_write: negative count -1");
    cr_assert_eq(io_array_copy(&ok, AD_F32, 1, (int64_t[]){-2}, out, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "io_array_copy: size -2 of axis 0 is negative");
    io_npz *z = NULL;
    cr_assert_eq(io_npz_write(tmp_path("ok.npz"), &ok, 1, &err), 0, "%s", err.message);
    cr_assert_not_null(z = io_npz_read(tmp_path("ok.npz"), &err), "%s", err.message);
    cr_assert_eq(io_npz_count(z), 1);
    cr_assert_null(io_npz_at(z, -1));
    cr_assert_not_null(io_npz_at(z, 0));
    io_npz_free(z);
}

Test(io, npy_int8_int16_round_trip_and_convert)
{
    /* the element types IDX files use (np.int8, np.int16) are read and written too */
    int8_t i8[4] = {-128, -1, 0, 127};
    int16_t i16[3] = {-32768, 7, 32767};
    io_array a[2] = {{"a", AD_I8, 1, {4}, i8}, {"b", AD_I16, 1, {3}, i16}};
    const char *want[2] = {"|i1", "<i2"};
    for (int k = 0; k < 2; k++) {
        ad_error err;
        io_array *back = NULL;
        cr_assert_str_eq(io_dtype_descr(a[k].dtype), want[k]);
        cr_assert_eq(io_dtype_size(a[k].dtype), (size_t)(k + 1));
        cr_assert_eq(io_npy_write(tmp_path("i.npy"), &a[k], &err), 0, "%s", err.message);
        cr_assert_not_null(back = io_npy_read(tmp_path("i.npy"), &err), "%s", err.message);
        expect_same_array(back, &a[k]);
        double d[4];
        cr_assert_eq(io_array_copy(back, AD_F64, 1, a[k].shape, d, &err), 0, "%s", err.message);
        cr_assert_eq(d[0], k ? -32768.0 : -128.0);
        cr_assert_eq(d[a[k].shape[0] - 1], k ? 32767.0 : 127.0);
        io_array_free(back);
    }
}

Test(io, npy_header_is_numpy_1_0)
{
    size_t len;
    ad_error err;
    const char *path = tmp_path("w.npy");
    io_array a = {"w", AD_F64, 2, {2, 3}, w64};
    cr_assert_eq((io_npy_write(path, &a, &err) == 0 ? AD_OK : err.code), 0, "%s", err.message);
    unsigned char *bytes = slurp(path, &len);
    cr_assert_eq(memcmp(bytes, "\x93NUMPY\x01\x00", 8), 0);
    size_t hl = (size_t)bytes[8] | (size_t)bytes[9] << 8;
    cr_assert_eq((10 + hl) % 64, 0, "data aligned to 64 bytes");
    cr_assert_eq(len, 10 + hl + 6 * sizeof(double));
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    cr_assert_eq(memcmp(bytes + 10, dict, strlen(dict)), 0);
    cr_assert_eq(bytes[10 + hl - 1], '\n');
    free(bytes);
    a.ndim = 1;
    a.shape[0] = 6;
    cr_assert_eq((io_npy_write(path, &a, &err) == 0 ? AD_OK : err.code), 0);
    bytes = slurp(path, &len);
    cr_assert(strstr((char *)bytes + 10, "'shape': (6,), }") != NULL, "1-d shapes are (n,)");
    free(bytes);
}

Test(io, npz_round_trip)
{
    io_array a[16];
    ad_error err;
    io_npz *z = NULL;
    int64_t n = known(a);
    cr_assert_eq((io_npz_write(tmp_path("all.npz"), a, n, &err) == 0 ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(((z = io_npz_read(tmp_path("all.npz"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(io_npz_count(z), n);
    for (int64_t i = 0; i < n; i++) {
        cr_assert_str_eq(io_npz_at(z, i)->name, a[i].name, "directory order is write order");
        expect_same_array(io_npz_find(z, a[i].name), &a[i]);
    }
    cr_assert_null(io_npz_at(z, n));
    cr_assert_null(io_npz_find(z, "nope"));
    io_npz_free(z);
    io_npz_free(NULL);
    io_array_free(NULL);
    /* an empty archive */
    cr_assert_eq((io_npz_write(tmp_path("none.npz"), NULL, 0, &err) == 0 ? AD_OK : err.code), 0,
                 "%s", err.message);
    cr_assert_eq(((z = io_npz_read(tmp_path("none.npz"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(io_npz_count(z), 0);
    io_npz_free(z);
}

Test(io, array_copy_converts_and_checks_shape)
{
    io_array a = {"w", AD_I64, 1, {2}, i64v};
    double d[2];
    float f[2];
    ad_error err;
    int64_t shape[2] = {2, 1};
    cr_assert_eq((io_array_copy(&a, AD_F64, 1, shape, d, &err) == 0 ? AD_OK : err.code), 0);
    cr_assert_eq(d[0], -1125899906842624.0);
    io_array b = {"b", AD_F64, 1, {3}, b64};
    cr_assert_eq(
        (io_array_copy(&b, AD_F32, 1, (int64_t[]){3}, (float[3]){0}, &err) == 0 ? AD_OK : err.code),
        0);
    cr_assert_eq((io_array_copy(&a, AD_F32, 2, shape, f, &err) == 0 ? AD_OK : err.code),
                 AD_EMISMATCH);
    cr_assert_str_eq(err.message, "'w' has shape (2,) but (2, 1) is expected");
    cr_assert_eq((io_array_copy(&a, AD_I32, 1, shape, f, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    cr_assert_eq((io_array_copy(NULL, AD_F32, 1, shape, f, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
}

Test(io, nodes)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_error err;
    int64_t shape[2] = {2, 3};
    ad_node *w = ad_param(g, 2, shape, "w");
    double v[6] = {1, 2, 3, 4, 5, 6}, got[6];
    cr_assert_eq(ad_set(w, v, 6), 0);
    ad_node *y = ad_mul(w, w);
    cr_assert_eq((io_npy_write_node(tmp_path("y.npy"), y, &err) == 0 ? AD_OK : err.code), 0, "%s",
                 err.message);
    ad_node *w2 = ad_param(g, 2, shape, "w2");
    cr_assert_eq((io_npy_read_node(tmp_path("y.npy"), w2, &err) == 0 ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(ad_get(w2, got, 6), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(got[i], v[i] * v[i]);
    /* another shape, a computed node */
    ad_node *small = ad_param(g, 1, (int64_t[]){6}, "small");
    cr_assert_eq((io_npy_read_node(tmp_path("y.npy"), small, &err) == 0 ? AD_OK : err.code),
                 AD_EMISMATCH);
    assert_contains(err.message, "'small' has shape (2, 3) but (6,) is expected");
    cr_assert_eq((io_npy_read_node(tmp_path("y.npy"), y, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    assert_contains(err.message, "is not a leaf");
    ad_graph_free(g);
}

/* ------------------------------------------------------------ models */

/* The test network, its memory from alloc(ud, ...) (NULL: malloc). */
static nn_model *test_model_with(ad_dtype dt, uint64_t seed, ad_alloc_fn alloc, void *ud)
{
    nn_model *m = nn_model_new_sequential_with(dt, 4, alloc, ud, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(nn_model_add_dense(m, 8, 1, NN_INIT_TORCH), 0);
    cr_assert_eq(nn_model_add_batch_norm(m, 0.1, 1e-5), 0);
    cr_assert_eq(nn_model_add_activation(m, NN_ACT_RELU), 0);
    cr_assert_eq(nn_model_add_dense(m, 6, 1, NN_INIT_TORCH), 0);
    cr_assert_eq(nn_model_add_activation(m, NN_ACT_TANH), 0);
    cr_assert_eq(nn_model_add_dense(m, 3, 1, NN_INIT_TORCH), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_MSE), 0);
    cr_assert_eq(nn_model_build(m, 16, seed), 0, "%s", nn_model_error(m));
    return m;
}

static nn_model *test_model(ad_dtype dt, uint64_t seed)
{
    return test_model_with(dt, seed, NULL, NULL);
}

static void inputs(double *x, int rows)
{
    /* interop_check.py's inputs(): linspace(-2, 2, 40) ** 3 / 3 */
    for (int i = 0; i < rows * 4; i++) {
        double t = -2.0 + 4.0 * i / (rows * 4 - 1);
        x[i] = t * t * t / 3;
    }
}

/* A few SGD steps so that weights, biases and running statistics all move. */
static void train_a_little(nn_model *m)
{
    double x[40], y[30];
    inputs(x, 10);
    for (int i = 0; i < 30; i++)
        y[i] = sin(i);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 0.1;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    cr_assert_not_null(opt);
    for (int s = 0; s < 5; s++) {
        cr_assert_eq(nn_model_set_input(m, x, 10, 4), 0);
        cr_assert_eq(nn_model_set_targets(m, y, 10, 3), 0);
        cr_assert_eq(nn_model_train_step(m, opt, NULL), 0, "%s", nn_model_error(m));
    }
    nn_optimizer_free(opt);
}

static void predict(nn_model *m, double *out)
{
    double x[40];
    inputs(x, 10);
    cr_assert_eq(nn_model_predict(m, x, 10, 4, out), 0, "%s", nn_model_error(m));
}

typedef int (*save_fn)(nn_model *, const char *);
typedef int (*load_fn)(nn_model *, const char *, unsigned);

static void model_round_trip(ad_dtype from, ad_dtype to, save_fn save, load_fn load,
                             const char *file)
{
    double a[30], b[30];
    nn_model *m = test_model(from, 1);
    train_a_little(m);
    predict(m, a);
    cr_assert_eq(save(m, tmp_path(file)), 0, "%s", nn_model_error(m));
    nn_model *m2 = test_model(to, 99);
    predict(m2, b);
    cr_assert_neq(memcmp(a, b, sizeof a), 0, "another seed predicts otherwise");
    cr_assert_eq(load(m2, tmp_path(file), 0), 0, "%s", nn_model_error(m2));
    cr_assert_null(nn_model_error(m2));
    predict(m2, b);
    for (int i = 0; i < 30; i++) {
        if (from == to)
            cr_assert_eq(a[i], b[i], "output %d: %.17g vs %.17g", i, a[i], b[i]);
        else
            cr_assert_float_eq(a[i], b[i], 1e-5, "output %d", i);
    }
    nn_model_free(m);
    nn_model_free(m2);
}

Test(io, model_npz_round_trip_f32)
{
    model_round_trip(AD_F32, AD_F32, nn_model_save_npz, nn_model_load_npz, "m.npz");
}
Test(io, model_npz_round_trip_f64)
{
    model_round_trip(AD_F64, AD_F64, nn_model_save_npz, nn_model_load_npz, "m.npz");
}
Test(io, model_npz_f32_into_f64)
{
    model_round_trip(AD_F32, AD_F64, nn_model_save_npz, nn_model_load_npz, "m.npz");
}
Test(io, model_npz_f64_into_f32)
{
    model_round_trip(AD_F64, AD_F32, nn_model_save_npz, nn_model_load_npz, "m.npz");
}
Test(io, model_safetensors_round_trip_f32)
{
    model_round_trip(AD_F32, AD_F32, nn_model_save_safetensors, nn_model_load_safetensors,
                     "m.safetensors");
}
Test(io, model_safetensors_round_trip_f64)
{
    model_round_trip(AD_F64, AD_F64, nn_model_save_safetensors, nn_model_load_safetensors,
                     "m.safetensors");
}
Test(io, model_safetensors_f64_into_f32)
{
    model_round_trip(AD_F64, AD_F32, nn_model_save_safetensors, nn_model_load_safetensors,
                     "m.safetensors");
}

Test(io, model_file_names_and_shapes)
{
    ad_error err;
    io_npz *z = NULL;
    nn_model *m = test_model(AD_F64, 1);
    cr_assert_eq(nn_model_save_npz(m, tmp_path("m.npz")), 0, "%s", nn_model_error(m));
    cr_assert_eq(((z = io_npz_read(tmp_path("m.npz"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    const char *names[] = {"dense0.weight",         "dense0.bias",   "batchnorm0.gamma",
                           "batchnorm0.beta",       "dense1.weight", "dense1.bias",
                           "dense2.weight",         "dense2.bias",   "batchnorm0.running_mean",
                           "batchnorm0.running_var"};
    cr_assert_eq(io_npz_count(z), 10);
    for (size_t i = 0; i < 10; i++)
        cr_assert_str_eq(io_npz_at(z, i)->name, names[i]);
    const io_array *w = io_npz_find(z, "dense1.weight");
    cr_assert_eq(w->ndim, 2);
    cr_assert_eq(w->shape[0], 8, "(in, out)");
    cr_assert_eq(w->shape[1], 6);
    cr_assert_eq(w->dtype, AD_F64);
    cr_assert_eq(((const double *)io_npz_find(z, "batchnorm0.running_var")->data)[0], 1.0);
    io_npz_free(z);
    nn_model_free(m);
}

/* Writes m's tensors to path as an npz, with tensor `drop` left out, tensor
   `bend` transposed and an extra tensor when extra is set. */
static void write_variant(nn_model *m, const char *path, const char *drop, const char *bend,
                          bool extra)
{
    io_npz *z = NULL;
    ad_error err;
    io_array a[16];
    int64_t n = 0;
    cr_assert_eq(nn_model_save_npz(m, path), 0);
    cr_assert_eq(((z = io_npz_read(path, &err)) ? AD_OK : err.code), 0);
    for (int64_t i = 0; i < io_npz_count(z); i++) {
        a[n] = *io_npz_at(z, i);
        if (drop && strcmp(a[n].name, drop) == 0)
            continue;
        if (bend && strcmp(a[n].name, bend) == 0) {
            int64_t t = a[n].shape[0];
            a[n].shape[0] = a[n].shape[1];
            a[n].shape[1] = t;
        }
        n++;
    }
    if (extra)
        a[n++] = (io_array){"0.weight", AD_F32, 1, {3}, b32};
    cr_assert_eq((io_npz_write(path, a, n, &err) == 0 ? AD_OK : err.code), 0, "%s", err.message);
    io_npz_free(z);
}

Test(io, model_mismatches_name_the_tensor)
{
    nn_model *m = test_model(AD_F32, 1);
    double before[30], after[30];
    predict(m, before);
    const char *p = tmp_path("v.npz");

    write_variant(m, p, "dense1.bias", NULL, false);
    cr_assert_eq(nn_model_load_npz(m, p, 0), -1);
    assert_contains(nn_model_error(m), "v.npz: no tensor 'dense1.bias' for the model");

    write_variant(m, p, NULL, "dense0.weight", false);
    cr_assert_eq(nn_model_load_npz(m, p, 0), -1);
    assert_contains(nn_model_error(m),
                    "tensor 'dense0.weight' has shape (8, 4) but the model expects "
                    "(4, 8) (transposed? PyTorch's nn.Linear weight is (out, in)");

    write_variant(m, p, NULL, NULL, true);
    cr_assert_eq(nn_model_load_npz(m, p, 0), -1);
    assert_contains(nn_model_error(m), "tensor '0.weight' is not in the model");
    assert_contains(nn_model_error(m), "NN_MODEL_ALLOW_EXTRA");
    predict(m, after);
    cr_assert_eq(memcmp(before, after, sizeof before), 0, "a failed load changes nothing");
    cr_assert_eq(nn_model_load_npz(m, p, NN_MODEL_ALLOW_EXTRA), 0, "%s", nn_model_error(m));

    /* the same checks on safetensors */
    io_array t[1] = {{"dense0.weight", AD_F32, 2, {8, 4}, w32}};
    float big[32] = {0};
    t[0].data = big;
    cr_assert_eq(io_checkpoint_write(tmp_path("v.st"), t, 1, NULL, 0, NULL), 0);
    cr_assert_eq(nn_model_load_safetensors(m, tmp_path("v.st"), 0), -1);
    assert_contains(nn_model_error(m),
                    "tensor 'dense0.weight' has shape (8, 4) but the model expects (4, 8)");
    cr_assert_eq(nn_model_load_safetensors(m, tmp_path("missing.st"), 0), -1);
    assert_contains(nn_model_error(m), "missing.st");

    /* unbuilt models, NULL arguments */
    nn_model *raw = nn_model_new_sequential(AD_F32, 4, NULL);
    cr_assert_eq(nn_model_save_npz(raw, p), -1);
    assert_contains(nn_model_error(raw), "not built");
    cr_assert_eq(nn_model_load_safetensors(raw, p, 0), -1);
    cr_assert_eq(nn_model_load_npz(NULL, p, 0), -1);
    nn_model_free(raw);
    nn_model_free(m);
}

Test(io, chainrule_train_checkpoints_load_with_allow_extra)
{
    /* a checkpoint with an optimizer tensor, as `chainrule train --save` writes */
    nn_model *m = test_model(AD_F32, 1);
    nn_model_save_safetensors(m, tmp_path("a.st"));
    io_checkpoint *ck = NULL;
    cr_assert_eq(((ck = io_checkpoint_read(tmp_path("a.st"), NULL)) ? 0 : -1), 0);
    io_array t[16];
    int64_t n = io_checkpoint_count(ck);
    for (int64_t i = 0; i < n; i++)
        t[i] = *io_checkpoint_tensor_at(ck, i);
    t[n++] = (io_array){"optimizer.momentum", AD_F32, 1, {3}, b32};
    cr_assert_eq(io_checkpoint_write(tmp_path("b.st"), t, n, NULL, 0, NULL), 0);
    io_checkpoint_free(ck);
    cr_assert_eq(nn_model_load_safetensors(m, tmp_path("b.st"), 0), -1);
    assert_contains(nn_model_error(m), "'optimizer.momentum' is not in the model");
    cr_assert_eq(nn_model_load_safetensors(m, tmp_path("b.st"), NN_MODEL_ALLOW_EXTRA), 0, "%s",
                 nn_model_error(m));
    nn_model_free(m);
}

/* ------------------------------------------------------------ bad arguments, I/O */

Test(io, writer_arguments_and_io_errors)
{
    ad_error err;
    io_array a = {"x", AD_F32, 1, {3}, NULL};
    cr_assert_eq((io_npy_write(tmp_path("x.npy"), &a, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    assert_contains(err.message, "NULL data for 12 bytes");
    a.data = b32;
    a.ndim = 9;
    cr_assert_eq((io_npy_write(tmp_path("x.npy"), &a, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    a.ndim = 1;
    a.dtype = (ad_dtype)42;
    cr_assert_eq((io_npy_write(tmp_path("x.npy"), &a, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    assert_contains(err.message, "unknown dtype");
    a.dtype = AD_F32;
    a.ndim = 2;
    a.shape[0] = a.shape[1] = SIZE_MAX / 2;
    cr_assert_eq((io_npy_write(tmp_path("x.npy"), &a, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    assert_contains(err.message, "overflows");
    a.ndim = 1;
    a.shape[0] = 3;
    cr_assert_eq((io_npy_write(NULL, &a, &err) == 0 ? AD_OK : err.code), AD_EINVAL);

    io_array two[2] = {a, a};
    cr_assert_eq((io_npz_write(tmp_path("d.npz"), two, 2, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "two arrays are named 'x'");
    two[1].name = "";
    cr_assert_eq((io_npz_write(tmp_path("d.npz"), two, 2, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "array 1 has no name");
    cr_assert_eq(access(tmp_path("d.npz"), F_OK), -1, "nothing written");

    cr_assert_eq((io_npy_write(tmp_path("no/such/dir/x.npy"), &a, &err) == 0 ? AD_OK : err.code),
                 AD_EIO);
    assert_contains(err.message, "no/such/dir");
    io_array *back = NULL;
    cr_assert_eq(((back = io_npy_read(tmp_path("absent.npy"), &err)) ? AD_OK : err.code), AD_EIO);
    assert_contains(err.message, "cannot open");
    assert_contains(err.message, "absent.npy");
    cr_assert_null(back);
    cr_assert_eq(((back = io_npy_read(tmpdir, &err)) ? AD_OK : err.code), AD_EIO);
    assert_contains(err.message, "directory");

    /* a failed write leaves the old file */
    cr_assert_eq((io_npy_write(tmp_path("keep.npy"), &a, &err) == 0 ? AD_OK : err.code), 0);
    chmod(tmpdir, 0500);
    if (access(tmp_path("probe"), W_OK) != 0 && geteuid() != 0) {
        cr_assert_eq((io_npy_write(tmp_path("keep.npy"), &a, &err) == 0 ? AD_OK : err.code),
                     AD_EIO);
        assert_contains(err.message, "cannot create a temporary file");
    }
    chmod(tmpdir, 0700);
    cr_assert_eq(((back = io_npy_read(tmp_path("keep.npy"), &err)) ? AD_OK : err.code), 0);
    io_array_free(back);
    cr_assert_str_eq(ad_errcode_string(AD_EUNSUPPORTED), "unsupported");
    cr_assert_str_eq(io_dtype_descr(AD_U8), "|u1");
    cr_assert_null(io_dtype_descr((ad_dtype)9));
}

/* ------------------------------------------------------------ malformed .npy */

static void expect_npy_error(const char *path, ad_errcode want, const char *text)
{
    io_array *a = NULL;
    ad_error err;
    cr_assert_eq(((a = io_npy_read(path, &err)) ? AD_OK : err.code), want, "%s: got \"%s\"", text,
                 err.message);
    cr_assert_eq(err.code, want);
    cr_assert_null(a);
    assert_contains(err.message, text);
}

Test(io, malformed_npy_files)
{
    const char *p = tmp_path("bad.npy");
    float d[3] = {1, 2, 3};
    const char *ok3 = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";

    write_npy_raw(p, 1, ok3, d, sizeof d);
    io_array *a = NULL;
    cr_assert_eq(((a = io_npy_read(p, NULL)) ? 0 : -1), 0, "the hand-made file is fine");
    io_array_free(a);

    spill(p, "", 0);
    expect_npy_error(p, AD_EFORMAT, "not a .npy file (bad magic, 0 bytes)");
    spill(p, "\x93NUMPX\x01\x00\x10\x00", 10);
    expect_npy_error(p, AD_EFORMAT, "bad.npy: not a .npy file (bad magic");
    spill(p, "PK\x03\x04 and more bytes", 20);
    expect_npy_error(p, AD_EFORMAT, "a zip archive (an .npz? use io_npz_read)");
    spill(p, "\x93NUMPY\x01", 7);
    expect_npy_error(p, AD_EFORMAT, "truncated .npy header (7 bytes)");
    write_npy_raw(p, 4, ok3, d, sizeof d);
    expect_npy_error(p, AD_EUNSUPPORTED, "format version 4.0 is not supported");

    /* truncated at every length: always a clean error */
    size_t len;
    write_npy_raw(p, 1, ok3, d, sizeof d);
    unsigned char *full = slurp(p, &len);
    for (size_t cut = 0; cut < len; cut++) {
        spill(p, full, cut);
        ad_error err;
        cr_assert_null(a = io_npy_read(p, &err), "cut at %zu", cut);
        cr_assert_eq(err.code, AD_EFORMAT, "cut at %zu", cut);
    }
    spill(p, full, len - 2);
    expect_npy_error(p, AD_EFORMAT,
                     "truncated: shape (3,) of '<f4' needs 12 data bytes but 10 follow");
    free(full);
    write_npy_raw(p, 1, ok3, d, sizeof d - 4);
    expect_npy_error(p, AD_EFORMAT, "needs 12 data bytes but 8 follow");
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", d, sizeof d);
    expect_npy_error(p, AD_EFORMAT, "4 bytes after the data (shape (2,) of '<f4' needs 8)");
    unsigned char hdr[] = "\x93NUMPY\x01\x00\xff\x00{";
    spill(p, hdr, sizeof hdr - 1);
    expect_npy_error(p, AD_EFORMAT, "the header claims 255 bytes but only 1 follow");

    static const struct {
        const char *dict;
        ad_errcode status;
        const char *message;
    } dicts[] = {
        {"['descr']", AD_EFORMAT, "bad header: not a dict"},
        {"{descr: '<f4'}", AD_EFORMAT, "a quoted key expected"},
        {"{'descr' '<f4'}", AD_EFORMAT, "':' expected after 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False}", AD_EFORMAT, "no 'shape' key"},
        {"{'descr': 4, 'fortran_order': False, 'shape': (3,)}", AD_EFORMAT,
         "'descr' is not a string"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", AD_EFORMAT,
         "'fortran_order' is not True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", AD_EFORMAT,
         "'shape' is not a tuple of integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", AD_EFORMAT,
         "'shape' is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", AD_EFORMAT,
         "'shape' is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
         AD_EFORMAT, "'shape' is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}", AD_EFORMAT,
         "unknown key 'extra'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", AD_EFORMAT,
         "key 'descr' repeated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x", AD_EFORMAT,
         "text after the dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,) 'x'}", AD_EFORMAT,
         "',' or '}' expected"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 3)}",
         AD_EUNSUPPORTED, "more than 8 axes"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3,)}", AD_EUNSUPPORTED,
         "big-endian data ('>f4') is not supported; save a.astype('<f4') instead"},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (3,)}", AD_EUNSUPPORTED,
         "object arrays ('|O') cannot be read"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}", AD_EUNSUPPORTED,
         "unsupported dtype '<c8' (chainrule reads <f4, <f8, <i4, <i8, |u1, |i1 and <i2)"},
        {"{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (3,)}", AD_EUNSUPPORTED,
         "structured arrays (a list descr) are not supported"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (3,)}", AD_EUNSUPPORTED,
         "Fortran-order arrays are not supported; save np.ascontiguousarray(a) instead"},
    };
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
        write_npy_raw(p, 1, dicts[i].dict, d, sizeof d);
        expect_npy_error(p, dicts[i].status, dicts[i].message);
    }
    /* versions 2.0 and 3.0, double-quoted keys, spaces, Python 2 longs */
    write_npy_raw(p, 2, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3L,)}  \n", d,
                  sizeof d);
    cr_assert_eq(((a = io_npy_read(p, NULL)) ? 0 : -1), 0);
    cr_assert_eq(((const float *)a->data)[2], 3.0f);
    io_array_free(a);
    write_npy_raw(p, 3, ok3, d, sizeof d);
    cr_assert_eq(((a = io_npy_read(p, NULL)) ? 0 : -1), 0);
    io_array_free(a);
}

/* ------------------------------------------------------------ malformed .npz */

static void expect_npz_error(const char *path, ad_errcode want, const char *text)
{
    io_npz *z = NULL;
    ad_error err;
    cr_assert_eq(((z = io_npz_read(path, &err)) ? AD_OK : err.code), want, "%s: got \"%s\"", text,
                 err.message);
    cr_assert_null(z);
    assert_contains(err.message, text);
}

/* A valid two-member archive in memory: a.npy then b.npy. */
static unsigned char *good_npz(size_t *len)
{
    io_array a[2] = {{"a", AD_F32, 1, {3}, b32}, {"b", AD_F64, 2, {2, 3}, w64}};
    cr_assert_eq(io_npz_write(tmp_path("good.npz"), a, 2, NULL), 0);
    return slurp(tmp_path("good.npz"), len);
}

Test(io, malformed_npz_files)
{
    size_t len;
    const char *p = tmp_path("bad.npz");
    unsigned char *z = good_npz(&len), *m = malloc(len + 64);
    size_t end = len - 22;
    uint32_t cd = get32(z + end + 16);
    cr_assert_eq(get32(z + end), 0x06054b50u);
    cr_assert_eq(get32(z + cd), 0x02014b50u);
    size_t cd2 = cd + 46 + 5; /* second central entry ("a.npy" is 5 bytes) */

    spill(p, "hello", 5);
    expect_npz_error(p, AD_EFORMAT, "bad.npz: not an .npz (zip) archive: no end-of-central");
    io_array one = {"a", AD_F32, 1, {3}, b32};
    io_npy_write(p, &one, NULL);
    expect_npz_error(p, AD_EFORMAT, "not an .npz archive but a .npy file");

    /* every truncation fails cleanly */
    for (size_t cut = 0; cut < len; cut++) {
        io_npz *out = NULL;
        spill(p, z, cut);
        cr_assert_neq(((out = io_npz_read(p, NULL)) ? 0 : -1), 0, "cut at %zu", cut);
        cr_assert_null(out);
    }

#define MUTATE(stmt, status, text)                                                                 \
    do {                                                                                           \
        memcpy(m, z, len);                                                                         \
        stmt;                                                                                      \
        spill(p, m, len);                                                                          \
        expect_npz_error(p, status, text);                                                         \
    } while (0)

    MUTATE(put32(m + end + 16, (uint32_t)len), AD_EFORMAT, "central directory at offset");
    MUTATE(put32(m + end + 12, 0xFFFFFF), AD_EFORMAT, "past the end");
    MUTATE((put16(m + end + 8, 60000), put16(m + end + 10, 60000)), AD_EFORMAT,
           "60000 entries cannot fit in a central directory");
    MUTATE(put16(m + end + 4, 1), AD_EUNSUPPORTED, "multi-disk");
    MUTATE(put32(m + cd, 0), AD_EFORMAT, "central directory entry 0 at offset");
    MUTATE(put32(m + cd + 42, 7), AD_EFORMAT, "member 'a.npy': bad local header offset 7");
    MUTATE(put32(m + cd2 + 42, cd), AD_EFORMAT, "member 'b.npy': bad local header offset");
    MUTATE(put32(m + cd + 20, 100000), AD_EFORMAT, "run past the members' end");
    MUTATE((put32(m + cd + 20, 10), put32(m + cd + 24, 10)), AD_EFORMAT, "CRC-32 mismatch");
    MUTATE(put32(m + cd + 24, 10), AD_EFORMAT, "stored member with compressed size");
    size_t a_data = 35 + 10 + ((size_t)z[35 + 8] | (size_t)z[35 + 9] << 8);
    MUTATE(m[a_data + 1] ^= 1, AD_EFORMAT, "member 'a.npy': CRC-32 mismatch");
    MUTATE(put16(m + cd + 10, 12), AD_EUNSUPPORTED,
           "member 'a.npy' uses compression method 12 (stored and deflate are supported)");
    MUTATE(put16(m + cd + 8, 1), AD_EUNSUPPORTED, "member 'a.npy' is encrypted");
    MUTATE(m[cd + 46 + 4] = 'z', AD_EUNSUPPORTED, "member 'a.npz' is not a .npy file");
    MUTATE(m[cd + 46] = 'b', AD_EFORMAT, "the local header names another file");
    MUTATE((m[cd + 46] = 'b', m[30] = 'b'), AD_EFORMAT, "two members are named 'b.npy'");
    MUTATE(put16(m + cd + 30, 400), AD_EFORMAT, "central directory entry 0 runs past");
    MUTATE(put16(m + 28, 60000), AD_EFORMAT, "local header runs into the central directory");
    /* an .npy problem inside a member names the member */
    MUTATE(m[30 + 5 + 6] = 9, AD_EFORMAT, "CRC-32 mismatch");
    free(m);
    free(z);
}

Test(io, npz_member_errors_name_the_member)
{
    /* a member whose .npy is bad but whose CRC is right: build by hand */
    float d[3] = {1, 2, 3};
    write_npy_raw(tmp_path("m.npy"), 1,
                  "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }\n", d, sizeof d);
    size_t n;
    unsigned char *npy = slurp(tmp_path("m.npy"), &n);
    /* reuse the writer's zip layout by writing a u8 array of the same bytes, then
       patching the member to be the raw .npy (same size, recomputed CRC) */
    io_array raw = {"m", AD_U8, 1, {(int64_t)n}, npy};
    cr_assert_eq(io_npz_write(tmp_path("w.npz"), &raw, 1, NULL), 0);
    size_t len;
    unsigned char *z = slurp(tmp_path("w.npz"), &len);
    size_t end = len - 22;
    uint32_t cd = get32(z + end + 16);
    size_t data = 30 + 5;
    size_t hl = (size_t)z[data + 8] | (size_t)z[data + 9] << 8;
    uint32_t member_size = get32(z + cd + 20);
    cr_assert_eq(member_size, 10 + hl + n);
    /* the member becomes exactly the .npy file: shift the data over the header */
    memmove(z + data, z + data + 10 + hl, n);
    memmove(z + data + n, z + data + member_size, len - data - member_size);
    size_t shift = member_size - n;
    len -= shift;
    cd -= (uint32_t)shift;
    end -= shift;
    put32(z + end + 16, cd);
    put32(z + 18, (uint32_t)n);
    put32(z + 22, (uint32_t)n);
    put32(z + cd + 20, (uint32_t)n);
    put32(z + cd + 24, (uint32_t)n);
    /* CRC-32 of the new member, bitwise */
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= npy[i];
        for (int k = 0; k < 8; k++)
            crc = crc >> 1 ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    crc = ~crc;
    put32(z + 14, crc);
    put32(z + cd + 16, crc);
    spill(tmp_path("w.npz"), z, len);
    expect_npz_error(tmp_path("w.npz"), AD_EUNSUPPORTED,
                     "w.npz: member 'm.npy': big-endian data ('>f4') is not supported");
    free(z);
    free(npy);
}

/* ------------------------------------------------------------ allocation failures */

typedef struct {
    long calls, fail_at;
    long live;
} counting_alloc;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counting_alloc *a = ud;
    if (nsize == 0) {
        if (ptr)
            a->live--;
        free(ptr);
        return NULL;
    }
    if (a->calls++ == a->fail_at)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p && !ptr)
        a->live++;
    (void)osize;
    return p;
}

Test(io, allocation_failures_leak_nothing)
{
    io_array a[16];
    int64_t n = known(a);
    /* the model's allocator serves its files too: it fails from call
       fail_at on, once the model is built */
    counting_alloc mca = {0, -1, 0};
    nn_model *model = test_model_with(AD_F32, 3, failing_alloc, &mca);
    cr_assert_eq(io_npz_write(tmp_path("all.npz"), a, n, NULL), 0);
    cr_assert_eq(io_npy_write(tmp_path("w.npy"), &a[0], NULL), 0);
    cr_assert_eq(nn_model_save_npz(model, tmp_path("model.npz")), 0);
    for (int phase = 0; phase < 6; phase++) {
        for (long k = 0;; k++) {
            counting_alloc ca = {0, k, 0};
            ad_error err = {AD_OK, ""};
            const char *msg = err.message;
            long live = mca.live, calls = mca.calls;
            int st = 0;
            mca.fail_at = mca.calls + k;
            if (phase == 0) {
                st = io_npz_write_with(tmp_path("out.npz"), a, n, failing_alloc, &ca, &err) == 0
                         ? AD_OK
                         : err.code;
            } else if (phase == 1) {
                io_npz *z = io_npz_read_with(tmp_path("all.npz"), failing_alloc, &ca, &err);
                st = z ? AD_OK : err.code;
                io_npz_free(z);
            } else if (phase == 2) {
                io_array *r = io_npy_read_with(tmp_path("w.npy"), failing_alloc, &ca, &err);
                st = r ? AD_OK : err.code;
                io_array_free(r);
            } else {
                if (phase == 3)
                    st = nn_model_load_npz(model, tmp_path("model.npz"), 0);
                else if (phase == 4)
                    st = nn_model_save_safetensors(model, tmp_path("model.st"));
                else
                    st = nn_model_load_safetensors(model, tmp_path("model.st"), 0);
                st = st == 0 ? AD_OK : AD_ENOMEM;
                msg = st ? nn_model_error(model) : "";
                ca.live = mca.live - live;
                ca.calls = mca.calls - calls;
            }
            mca.fail_at = -1;
            cr_assert_eq(ca.live, 0, "phase %d: leak when allocation %ld fails", phase, k);
            if (st == AD_OK) {
                cr_assert_gt(ca.calls, 0, "phase %d allocates", phase);
                break;
            }
            cr_assert_eq(st, AD_ENOMEM, "phase %d, allocation %ld: %s", phase, k, msg);
            assert_contains(msg, "out of memory");
        }
    }
    nn_model_free(model);
    cr_assert_eq(mca.live, 0);
}

/* ------------------------------------------------------------ NumPy and PyTorch */

/* Runs interop_check.py; skips the test when the interpreter or its module
   is missing (exit 77), fails on any other non-zero status. */
static void run_python(const char *args)
{
    char cmd[2048];
    if (access(PYTHON, X_OK) != 0)
        cr_skip_test(PYTHON " not found (Debian: python3-numpy, python3-torch)");
    snprintf(cmd, sizeof cmd, PYTHON " '%s/interop_check.py' %s 2>'%s'", CHAINRULE_TEST_DIR, args,
             tmp_path("py.err"));
    int st = system(cmd);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    size_t len = 0;
    char *text = NULL;
    if (access(tmp_path("py.err"), F_OK) == 0) {
        text = (char *)slurp(tmp_path("py.err"), &len);
        text[len] = '\0';
    }
    if (code == 77) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", text ? text : "module missing");
        free(text);
        cr_skip_test("%s (Debian: python3-numpy, python3-torch)", msg);
    }
    cr_assert_eq(code, 0, "%s failed: %s", cmd, text ? text : "");
    free(text);
}

static double f64_at(const io_array *a, size_t i)
{
    return a->dtype == AD_F32 ? ((const float *)a->data)[i] : ((const double *)a->data)[i];
}

Test(io, chainrule_reads_what_numpy_writes)
{
    char args[600];
    snprintf(args, sizeof args, "numpy_write '%s'", tmpdir);
    run_python(args);
    io_array *a = NULL;
    ad_error err;

    cr_assert_eq(((a = io_npy_read(tmp_path("f32.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(a->dtype, AD_F32);
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[0], 3);
    cr_assert_eq(a->shape[1], 4);
    for (size_t i = 0; i < 12; i++)
        cr_assert_eq(((const float *)a->data)[i], (float)i * 0.25f - 1.0f);
    io_array_free(a);

    const char *f64_files[] = {"f64.npy", "v2.npy", "v3.npy"};
    for (int f = 0; f < 3; f++) {
        cr_assert_eq(((a = io_npy_read(tmp_path(f64_files[f]), &err)) ? AD_OK : err.code), 0, "%s",
                     err.message);
        cr_assert_eq(a->dtype, AD_F64);
        for (size_t i = 0; i < 6; i++)
            cr_assert_eq(((const double *)a->data)[i], 1.0 / (double)(i + 1));
        io_array_free(a);
    }
    cr_assert_eq(((a = io_npy_read(tmp_path("i32.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(a->dtype, AD_I32);
    cr_assert_eq(((const int32_t *)a->data)[0], INT32_MIN);
    cr_assert_eq(((const int32_t *)a->data)[4], INT32_MAX);
    io_array_free(a);
    cr_assert_eq(((a = io_npy_read(tmp_path("i64.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(a->dtype, AD_I64);
    cr_assert_eq(a->shape[0], 2);
    cr_assert_eq(a->shape[1], 1);
    cr_assert_eq(((const int64_t *)a->data)[1], (INT64_C(1) << 40) + 1);
    io_array_free(a);
    cr_assert_eq(((a = io_npy_read(tmp_path("u8.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(a->dtype, AD_U8);
    cr_assert_eq(((const uint8_t *)a->data)[3], 255);
    io_array_free(a);
    cr_assert_eq(((a = io_npy_read(tmp_path("scalar.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(a->ndim, 0);
    cr_assert_eq(((const double *)a->data)[0], 3.141592653589793);
    io_array_free(a);
    cr_assert_eq(((a = io_npy_read(tmp_path("empty.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(a->shape[0], 0);
    cr_assert_eq(a->shape[1], 5);
    io_array_free(a);

    expect_npy_error(tmp_path("bigendian.npy"), AD_EUNSUPPORTED, "big-endian data ('>f4')");
    expect_npy_error(tmp_path("fortran.npy"), AD_EUNSUPPORTED, "Fortran-order");
    expect_npy_error(tmp_path("object.npy"), AD_EUNSUPPORTED, "object arrays ('|O')");
    expect_npy_error(tmp_path("complex.npy"), AD_EUNSUPPORTED, "unsupported dtype '<c16'");
    expect_npy_error(tmp_path("structured.npy"), AD_EUNSUPPORTED, "structured arrays");

    const char *archives[] = {"plain.npz", "compressed.npz"};
    bool have_zlib = true;
    for (int f = 0; f < 2; f++) {
        io_npz *z = NULL;
        int st = ((z = io_npz_read(tmp_path(archives[f]), &err)) ? AD_OK : err.code);
        if (f == 1 && st == AD_EUNSUPPORTED && strstr(err.message, "built without zlib")) {
            have_zlib = false; /* the only acceptable failure */
            continue;
        }
        cr_assert_eq(st, 0, "%s: %s", archives[f], err.message);
        cr_assert_eq(io_npz_count(z), 8);
        const io_array *c = io_npz_find(z, "cube");
        cr_assert_not_null(c);
        cr_assert_eq(c->ndim, 3);
        for (size_t i = 0; i < 24; i++)
            cr_assert_eq(f64_at(c, i), (double)i - 11.5);
        const io_array *f32 = io_npz_find(z, "f32");
        cr_assert_eq(((const float *)f32->data)[11], 11 * 0.25f - 1.0f);
        cr_assert_eq(((const int32_t *)io_npz_find(z, "i32")->data)[0], INT32_MIN);
        cr_assert_eq(io_npz_find(z, "empty")->shape[1], 5);
        io_npz_free(z);
    }
    /* inflate's own allocations fail cleanly too */
    for (long k = 0; have_zlib; k++) {
        counting_alloc ca = {0, k, 0};
        io_npz *z = io_npz_read_with(tmp_path("compressed.npz"), failing_alloc, &ca, &err);
        int st = z ? AD_OK : err.code;
        io_npz_free(z);
        cr_assert_eq(ca.live, 0, "leak when allocation %ld fails", k);
        if (st == 0)
            break;
        cr_assert_eq(st, AD_ENOMEM, "allocation %ld: %s", k, err.message);
    }
}

Test(io, numpy_reads_what_chainrule_writes)
{
    io_array a[16];
    ad_error err;
    char args[600], name[64];
    int64_t n = known(a);
    for (int64_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s.npy", a[i].name);
        cr_assert_eq((io_npy_write(tmp_path(name), &a[i], &err) == 0 ? AD_OK : err.code), 0, "%s",
                     err.message);
    }
    cr_assert_eq((io_npz_write(tmp_path("all.npz"), a, n, &err) == 0 ? AD_OK : err.code), 0, "%s",
                 err.message);
    snprintf(args, sizeof args, "numpy_check '%s'", tmpdir);
    run_python(args);
}

static void torch_to_chainrule(ad_dtype dt)
{
    char args[600];
    ad_error err;
    snprintf(args, sizeof args, "torch_export '%s' %s", tmpdir, dt == AD_F32 ? "f32" : "f64");
    run_python(args);
    io_array *x = NULL, *y = NULL;
    cr_assert_eq(((x = io_npy_read(tmp_path("x.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(((y = io_npy_read(tmp_path("y.npy"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_eq(x->shape[0], 10);
    cr_assert_eq(y->shape[1], 3);
    double xd[40], out[30];
    cr_assert_eq(
        (io_array_copy(x, AD_F64, 2, (int64_t[]){10, 4}, xd, &err) == 0 ? AD_OK : err.code), 0);
    double tol = dt == AD_F32 ? 1e-6 : 1e-12;
    const char *files[] = {"torch.npz", "torch.safetensors"};
    for (int f = 0; f < 2; f++) {
        nn_model *m = test_model(dt, 5);
        int st = f == 0 ? nn_model_load_npz(m, tmp_path(files[f]), 0)
                        : nn_model_load_safetensors(m, tmp_path(files[f]), 0);
        cr_assert_eq(st, 0, "%s", nn_model_error(m));
        cr_assert_eq(nn_model_predict(m, xd, 10, 4, out), 0, "%s", nn_model_error(m));
        for (size_t i = 0; i < 30; i++)
            cr_assert(fabs(out[i] - f64_at(y, i)) <= tol, "%s output %zu: %.17g vs torch %.17g",
                      files[f], i, out[i], f64_at(y, i));
        nn_model_free(m);
    }
    io_array_free(x);
    io_array_free(y);
}

Test(io, torch_model_into_chainrule_f32) { torch_to_chainrule(AD_F32); }
Test(io, torch_model_into_chainrule_f64) { torch_to_chainrule(AD_F64); }

static void chainrule_to_torch(ad_dtype dt)
{
    char args[600];
    ad_error err;
    double x[40], y[30];
    nn_model *m = test_model(dt, 7);
    train_a_little(m);
    inputs(x, 10);
    cr_assert_eq(nn_model_predict(m, x, 10, 4, y), 0);
    cr_assert_eq(nn_model_save_npz(m, tmp_path("chainrule.npz")), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_save_safetensors(m, tmp_path("chainrule.safetensors")), 0, "%s",
                 nn_model_error(m));
    /* inputs and outputs in the model's dtype */
    float xf[40], yf[30];
    for (int i = 0; i < 40; i++)
        xf[i] = (float)x[i];
    for (int i = 0; i < 30; i++)
        yf[i] = (float)y[i];
    io_array xa = {"x", AD_F64, 2, {10, 4}, x}, ya = {"y", AD_F64, 2, {10, 3}, y};
    if (dt == AD_F32) {
        xa.dtype = ya.dtype = AD_F32;
        xa.data = xf;
        ya.data = yf;
    }
    cr_assert_eq((io_npy_write(tmp_path("x.npy"), &xa, &err) == 0 ? AD_OK : err.code), 0);
    cr_assert_eq((io_npy_write(tmp_path("y_chainrule.npy"), &ya, &err) == 0 ? AD_OK : err.code), 0);
    snprintf(args, sizeof args, "torch_import '%s' %s", tmpdir, dt == AD_F32 ? "f32" : "f64");
    run_python(args);
    nn_model_free(m);
}

Test(io, chainrule_model_into_torch_f32) { chainrule_to_torch(AD_F32); }
Test(io, chainrule_model_into_torch_f64) { chainrule_to_torch(AD_F64); }
