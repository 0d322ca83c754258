/* Convolution and pooling: values against direct sums, error messages,
 * max-pool ties, second order (the gradient with respect to the weights of
 * ‖∂L/∂x‖², by central differences), batch resize and memory reuse. The
 * gradient check of each op is in test_gradcheck.c, PyTorch agreement in
 * test_reference.c (fixtures from tests/reference/make_conv_fixtures.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/autodiff.h"
#include "graph_impl.h" /* the graph's table of oneDNN products */

static void fill(ad_node *n, unsigned seed)
{
    int64_t k = ad_numel(n);
    double v[4096];
    cr_assert(k <= 4096);
    for (int64_t i = 0; i < k; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (double)((seed >> 8) % 2001) / 1000.0 - 1.0;
    }
    cr_assert_eq(ad_set(n, v, k), 0);
}

static int64_t sz(const ad_node *n, int d) { return ad_shape(n)[d]; }

/* y[n,o,i,j] = Σ w[o,c,a,b] x[n, g·C/G + c, i·sh − ph + a·dh, j·sw − pw + b·dw] */
static void direct_conv2d(const double *x, const double *w, double *y, int64_t N, int64_t C,
                          int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW,
                          const ad_conv_opts *o, int64_t OH, int64_t OW)
{
    int64_t G = o->groups ? o->groups : 1, Cg = C / G, Og = O / G;
    int sh = o->stride[0] ? o->stride[0] : 1, sw = o->stride[1] ? o->stride[1] : 1;
    int dh = o->dilation[0] ? o->dilation[0] : 1, dw = o->dilation[1] ? o->dilation[1] : 1;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < O; oc++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    double s = 0;
                    int64_t g = oc / Og;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t a = 0; a < KH; a++)
                            for (int64_t b = 0; b < KW; b++) {
                                int64_t ih = i * sh - o->padding[0] + a * dh;
                                int64_t iw = j * sw - o->padding[1] + b * dw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                s += w[((oc * Cg + c) * KH + a) * KW + b] *
                                     x[((n * C + g * Cg + c) * H + ih) * W + iw];
                            }
                    y[((n * O + oc) * OH + i) * OW + j] = s;
                }
}

Test(conv, conv2d_matches_direct_sum)
{
    const ad_conv_opts opts[] = {
        {{1, 1}, {0, 0}, {1, 1}, 1},
        {{2, 1}, {1, 2}, {1, 1}, 1},
        {{1, 2}, {2, 1}, {2, 1}, 2},
        {{3, 2}, {1, 1}, {1, 2}, 4},
        {{0, 0}, {0, 0}, {0, 0}, 0}, /* zeros: defaults */
        /* unit strides, output as wide as the input: the contiguous im2col */
        {{1, 1}, {1, 1}, {1, 2}, 2},
        {{1, 1}, {2, 1}, {2, 2}, 1},
    };
    for (int dt = 0; dt < 2; dt++)
        for (size_t t = 0; t < sizeof opts / sizeof opts[0]; t++) {
            ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
            int64_t G = opts[t].groups ? opts[t].groups : 1;
            int64_t xs[4] = {2, 4, 7, 6}, ws[4] = {4, 4 / G, 3, 2};
            ad_node *x = ad_input(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
            fill(x, 1 + (unsigned)t);
            fill(w, 7 + (unsigned)t);
            ad_node *y = ad_conv2d(x, w, &opts[t]);
            cr_assert_not_null(y, "%s", ad_graph_error(g));
            double xv[336], wv[96], yv[4096], want[4096];
            ad_get(x, xv, 336);
            ad_get(w, wv, ad_numel(w));
            int64_t OH = sz(y, 2), OW = sz(y, 3);
            direct_conv2d(xv, wv, want, 2, 4, 7, 6, 4, 3, 2, &opts[t], OH, OW);
            cr_assert_eq(sz(y, 0), 2);
            cr_assert_eq(sz(y, 1), 4);
            ad_get(y, yv, ad_numel(y));
            for (int64_t i = 0; i < ad_numel(y); i++)
                cr_assert(fabs(yv[i] - want[i]) <= (dt ? 1e-13 : 1e-5), "opts %zu [%lld]: %g vs %g",
                          t, (long long)i, yv[i], want[i]);
            ad_graph_free(g);
        }
}

Test(conv, conv1d_is_conv2d_with_unit_height)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[3] = {2, 2, 9}, ws[3] = {4, 1, 3}, x4[4] = {2, 2, 1, 9}, w4[4] = {4, 1, 1, 3};
    ad_node *x = ad_param(g, 3, xs, "x"), *w = ad_param(g, 3, ws, "w");
    fill(x, 3);
    fill(w, 4);
    ad_conv_opts o = {{2, 0}, {1, 0}, {2, 0}, 2};
    ad_node *y = ad_conv1d(x, w, &o);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    ad_conv_opts o2 = {{1, 2}, {0, 1}, {1, 2}, 2};
    ad_node *y2 = ad_conv2d(ad_reshape(x, 4, x4), ad_reshape(w, 4, w4), &o2);
    cr_assert_eq(ad_ndim(y), 3);
    cr_assert_eq(sz(y, 2), 4); /* (9 + 2 - 4 - 1) / 2 + 1 */
    cr_assert_eq(ad_numel(y), ad_numel(y2));
    double a[64], b[64];
    ad_get(y, a, ad_numel(y));
    ad_get(y2, b, ad_numel(y));
    for (int64_t i = 0; i < ad_numel(y); i++)
        cr_assert_eq(a[i], b[i]);
    ad_graph_free(g);
}

static void expect_error(ad_graph *g, ad_node *r, const char *msg)
{
    cr_assert_null(r);
    cr_assert_str_eq(ad_graph_error(g), msg);
    ad_graph_clear_error(g);
}

/* conv_bias and conv_bias_relu give the values and gradients (x, w, b) of
 * the compositions they replace, conv + bias (broadcast as (O, 1, 1)) and
 * relu of that, in f32 and f64, 2-d with groups and padding and 1-d. */
Test(conv, conv_bias_ops_match_their_compositions)
{
    for (int dt = 0; dt < 2; dt++)
        for (int one_d = 0; one_d < 2; one_d++)
            for (int relu = 0; relu < 2; relu++) {
                double vals[2][64 * 6], grads[2][3][256];
                int64_t ny = 0, nin[3] = {0, 0, 0};
                for (int fused = 0; fused < 2; fused++) {
                    ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
                    int64_t xs[4] = {2, 4, 5, 6}, ws[4] = {6, 2, 3, 2}, bs[1] = {6};
                    int64_t x1[3] = {2, 4, 9}, w1[3] = {6, 2, 3}, b3[3] = {6, 1, 1};
                    ad_node *x = ad_param(g, one_d ? 3 : 4, one_d ? x1 : xs, "x");
                    ad_node *w = ad_param(g, one_d ? 3 : 4, one_d ? w1 : ws, "w");
                    ad_node *b = ad_param(g, 1, bs, "b");
                    fill(x, 3);
                    fill(w, 5);
                    fill(b, 7);
                    ad_conv_opts o = {{1, 2}, {1, 1}, {1, 1}, 2};
                    ad_node *y;
                    if (fused && one_d)
                        y = relu ? ad_conv1d_bias_relu(x, w, b, &o) : ad_conv1d_bias(x, w, b, &o);
                    else if (fused)
                        y = relu ? ad_conv2d_bias_relu(x, w, b, &o) : ad_conv2d_bias(x, w, b, &o);
                    else {
                        ad_node *c = one_d ? ad_conv1d(x, w, &o) : ad_conv2d(x, w, &o);
                        y = ad_add(c, ad_reshape(b, one_d ? 2 : 3, b3));
                        y = relu ? ad_relu(y) : y;
                    }
                    cr_assert_not_null(y, "%s", ad_graph_error(g));
                    ny = ad_numel(y);
                    cr_assert(ny <= 64 * 6);
                    ad_get(y, vals[fused], ny);
                    /* a loss that weighs every output differently */
                    ad_node *r = ad_const(g, ad_ndim(y), ad_shape(y), NULL, "r");
                    fill(r, 11);
                    cr_assert_eq(ad_backward(ad_sum(ad_mul(y, r), AD_ALL)), 0, "%s",
                                 ad_graph_error(g));
                    ad_node *leaf[3] = {x, w, b};
                    for (int k = 0; k < 3; k++) {
                        nin[k] = ad_numel(leaf[k]);
                        ad_get_grad(leaf[k], grads[fused][k], nin[k]);
                    }
                    ad_graph_free(g);
                }
                double tol = dt ? 1e-12 : 1e-5;
                for (int64_t i = 0; i < ny; i++)
                    cr_assert_float_eq(vals[1][i], vals[0][i], tol, "dt %d 1-d %d relu %d y[%lld]",
                                       dt, one_d, relu, (long long)i);
                for (int k = 0; k < 3; k++)
                    for (int64_t i = 0; i < nin[k]; i++)
                        cr_assert_float_eq(grads[1][k][i], grads[0][k][i], tol,
                                           "dt %d 1-d %d relu %d input %d [%lld]", dt, one_d, relu,
                                           k, (long long)i);
            }
}

Test(conv, conv_bias_errors_name_the_op_and_shapes)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t xs[4] = {2, 4, 5, 6}, ws[4] = {6, 4, 3, 3}, bs[1] = {5}, b2[2] = {1, 6};
    ad_node *x = ad_input(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
    expect_error(g, ad_conv2d_bias(x, w, ad_param(g, 1, bs, "b"), NULL),
                 "ad_conv2d_bias: bias (5) must have one element per output channel of weight "
                 "(6,4,3,3)");
    expect_error(g, ad_conv2d_bias_relu(x, w, ad_param(g, 2, b2, "b"), NULL),
                 "ad_conv2d_bias_relu: bias (1,6) must have one element per output channel of "
                 "weight (6,4,3,3)");
    expect_error(g, ad_conv1d_bias(x, w, ad_param(g, 1, bs, "b"), NULL),
                 "ad_conv1d_bias: input (2,4,5,6) must have 3 axes (N,C,L)");
    /* a NULL bias is a NULL operand: NULL back, no new message */
    cr_assert_null(ad_conv2d_bias(x, w, NULL, NULL));
    cr_assert_null(ad_conv2d_bias_relu(x, w, NULL, NULL));
    cr_assert_null(ad_graph_error(g));
    ad_graph_free(g);
}

Test(conv, errors_name_the_op_and_shapes)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t xs[4] = {8, 3, 32, 32}, ws[4] = {16, 4, 3, 3}, w3[4] = {16, 3, 3, 3};
    int64_t big[4] = {16, 3, 40, 3}, x3[3] = {8, 3, 32};
    ad_node *x = ad_input(g, 4, xs, "x");
    expect_error(g, ad_conv2d(x, ad_param(g, 4, ws, "w"), NULL),
                 "ad_conv2d: input (8,3,32,32) has 3 channels, weight (16,4,3,3) expects 4");
    ad_node *w = ad_param(g, 4, w3, "w");
    ad_conv_opts neg = {{-1, 1}, {0, 0}, {1, 1}, 1};
    expect_error(g, ad_conv2d(x, w, &neg),
                 "ad_conv2d: stride -1, padding 0 and dilation 1 must not be negative");
    ad_conv_opts grp = {{1, 1}, {0, 0}, {1, 1}, 2};
    expect_error(g, ad_conv2d(x, w, &grp),
                 "ad_conv2d: groups 2 does not divide the 3 input channels of (8,3,32,32) and the "
                 "16 output channels of weight (16,3,3,3)");
    expect_error(g, ad_conv2d(x, ad_param(g, 4, big, "w"), NULL),
                 "ad_conv2d: kernel 40x3 (dilated 40x3) is larger than the padded input 32x32 of "
                 "(8,3,32,32)");
    ad_conv_opts dil = {{1, 1}, {1, 1}, {20, 1}, 1};
    expect_error(g, ad_conv2d(x, w, &dil),
                 "ad_conv2d: kernel 3x3 (dilated 41x3) is larger than the padded input 34x34 of "
                 "(8,3,32,32)");
    expect_error(g, ad_conv2d(ad_input(g, 3, x3, "x"), w, NULL),
                 "ad_conv2d: input (8,3,32) must have 4 axes (N,C,H,W)");
    expect_error(g, ad_conv1d(x, w, NULL), "ad_conv1d: input (8,3,32,32) must have 3 axes (N,C,L)");
    expect_error(g, ad_conv1d(ad_input(g, 3, x3, "x"), w, NULL),
                 "ad_conv1d: weight (16,3,3,3) must have 3 axes (O,C/groups,K)");

    ad_pool_opts k40 = {{40, 2}, {0, 0}, {0, 0}};
    expect_error(g, ad_max_pool2d(x, &k40),
                 "ad_max_pool2d: kernel 40x2 is larger than the padded input 32x32 of (8,3,32,32)");
    ad_pool_opts pad = {{2, 2}, {1, 1}, {2, 0}};
    expect_error(g, ad_avg_pool2d(x, &pad),
                 "ad_avg_pool2d: padding (2,0) is more than half the kernel (2,2)");
    ad_pool_opts zero = {{0, 2}, {0, 0}, {0, 0}};
    expect_error(g, ad_max_pool2d(x, &zero),
                 "ad_max_pool2d: kernel 0 must be positive, stride 0 and padding 0 not negative");
    expect_error(g, ad_avg_pool1d(x, NULL),
                 "ad_avg_pool1d: input (8,3,32,32) must have 3 axes (N,C,L)");
    expect_error(g, ad_max_pool1d(ad_input(g, 3, x3, "x"), NULL),
                 "ad_max_pool1d: options are NULL (the kernel size is required)");
    int64_t empty[4] = {1, 1, 0, 4};
    ad_pool_opts pad1 = {{2, 2}, {1, 1}, {1, 1}};
    expect_error(g, ad_max_pool2d(ad_input(g, 4, empty, "e"), &pad1),
                 "ad_max_pool2d: input (1,1,0,4) has an empty spatial axis");
    /* NULL operands propagate without a new message */
    cr_assert_null(ad_conv2d(NULL, w, NULL));
    cr_assert_null(ad_max_pool2d(NULL, &k40));
    cr_assert_null(ad_graph_error(g));
    /* internal ops through the generic driver check their operands too */
    ad_node *in[2] = {x, x};
    expect_error(g, ad_op_apply(ad_op_find("max_pool_scatter"), 2, in, NULL, 0, NULL, 0),
                 "ad_max_pool_scatter: operand 2 must be a max_pool node, got input (8,3,32,32)");
    ad_graph_free(g);
}

Test(conv, generic_driver_parameters_beyond_32_bits_are_refused)
{
    /* ad_op_apply passes any int64: a padding of 2^62 made 2 * padding overflow
       in the pooling shape rule (found by fuzz_graph) */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[4] = {2, 3, 4, 4}, ws[4] = {2, 3, 2, 2};
    ad_node *x = ad_input(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
    int64_t pool[8] = {1, 1, (int64_t)1 << 62, 0, 2, 2, 0, 0};
    expect_error(g, ad_op_apply(ad_op_find("max_pool"), 1, &x, NULL, 0, pool, 8),
                 "ad_max_pool2d: parameter 2 (4611686018427387904) is beyond 32 bits");
    ad_node *in[2] = {x, w};
    int64_t conv[9] = {1, 1, 0, 0, INT64_MAX, 1, 1, 0, 0};
    expect_error(g, ad_op_apply(ad_op_find("conv"), 2, in, NULL, 0, conv, 9),
                 "ad_conv2d: parameter 4 (9223372036854775807) is beyond 32 bits");
    /* the largest dilation a 32-bit field holds is refused by size, not by overflow */
    conv[4] = INT32_MAX;
    expect_error(g, ad_op_apply(ad_op_find("conv"), 2, in, NULL, 0, conv, 9),
                 "ad_conv2d: kernel 2x2 (dilated 2147483648x2) is larger than the padded input "
                 "4x4 of (2,3,4,4)");
    ad_graph_free(g);
}

Test(pool, max_pool_ties_send_the_gradient_to_the_first_maximum)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[4] = {1, 1, 2, 4};
    ad_node *x = ad_param(g, 4, xs, "x");
    double v[8] = {1, 3, 3, 2, /* */ 3, 0, 5, 5};
    ad_set(x, v, 8);
    ad_pool_opts o = {{2, 2}, {0, 0}, {0, 0}};
    ad_node *y = ad_max_pool2d(x, &o);
    double yv[2];
    ad_get(y, yv, 2);
    cr_assert_eq(yv[0], 3.0);
    cr_assert_eq(yv[1], 5.0);
    cr_assert_eq(ad_backward(ad_sum(y, AD_ALL)), 0);
    double gv[8];
    ad_get_grad(x, gv, 8);
    const double want[8] = {0, 1, 0, 0, 0, 0, 1, 0}; /* first in row-major scan order */
    for (int i = 0; i < 8; i++)
        cr_assert_eq(gv[i], want[i], "element %d", i);
    ad_graph_free(g);
}

/* 2x2 windows at stride 2 (a kernel of its own) against a plain scan: few
   levels so windows hold ties, NaNs (the last NaN of a window wins, as in
   PyTorch), an odd height and width whose last row and column no window
   reads (their gradient is 0) */
Test(pool, two_by_two_stride_two_matches_a_plain_scan)
{
    enum { N = 2, C = 3, H = 7, W = 7, OH = 3, OW = 3 };
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[4] = {N, C, H, W};
    ad_node *x = ad_param(g, 4, xs, "x");
    double v[N * C * H * W];
    for (int i = 0; i < N * C * H * W; i++)
        v[i] = i % 17 == 5 ? NAN : (double)((i * 7919) % 5) - 2.0;
    ad_set(x, v, N * C * H * W);
    ad_pool_opts o = {{2, 2}, {2, 2}, {0, 0}};
    ad_node *y = ad_max_pool2d(x, &o);
    cr_assert_eq(ad_numel(y), N * C * OH * OW);
    int64_t ny = N * C * OH * OW;
    double rv[N * C * OH * OW];
    for (int i = 0; i < ny; i++)
        rv[i] = 1.0 + i; /* a distinct weight per output: the gradient says which input won */
    const int64_t rs[4] = {N, C, OH, OW};
    ad_node *r = ad_const(g, 4, rs, rv, "r");
    cr_assert_eq(ad_backward(ad_sum(ad_mul(y, r), AD_ALL)), 0, "%s", ad_graph_error(g));
    double yv[N * C * OH * OW], gv[N * C * H * W], want_g[N * C * H * W] = {0};
    ad_get(y, yv, ny);
    ad_get_grad(x, gv, N * C * H * W);
    for (int p = 0, k = 0; p < N * C; p++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++, k++) {
                double m = -INFINITY;
                int best = p * H * W + 2 * i * W + 2 * j;
                for (int a = 2 * i; a < 2 * i + 2; a++)
                    for (int b = 2 * j; b < 2 * j + 2; b++) {
                        int at = p * H * W + a * W + b;
                        if (v[at] > m || isnan(v[at])) {
                            m = v[at];
                            best = at;
                        }
                    }
                cr_assert(isnan(m) ? isnan(yv[k]) : yv[k] == m, "output %d: %g, expected %g", k,
                          yv[k], m);
                want_g[best] += rv[k];
            }
    for (int i = 0; i < N * C * H * W; i++)
        cr_assert_eq(gv[i], want_g[i], "gradient of element %d: %g, expected %g", i, gv[i],
                     want_g[i]);
    ad_graph_free(g);
}

Test(pool, padded_windows_values)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[3] = {1, 1, 5};
    ad_node *x = ad_param(g, 3, xs, "x");
    double v[5] = {-1, -2, -3, -4, -5};
    ad_set(x, v, 5);
    ad_pool_opts o = {{3, 0}, {2, 0}, {1, 0}};
    double mv[3], av[3];
    ad_get(ad_max_pool1d(x, &o), mv, 3); /* max pads with -inf */
    ad_get(ad_avg_pool1d(x, &o), av, 3); /* avg counts the padded zeros */
    const double wm[3] = {-1, -2, -4}, wa[3] = {-1, -3, -3};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mv[i], wm[i]);
        cr_assert_float_eq(av[i], wa[i], 1e-15);
    }
    ad_graph_free(g);
}

/* s = ‖∂L/∂x‖² for L = Σ R · tanh(f(x, w)); returns s, sets ∂s/∂w in dsw */
typedef struct {
    ad_graph *g;
    ad_node *x, *w, *s, *dsw;
} second;

static second build_second(int pool)
{
    second b;
    b.g = ad_graph_new(AD_F64);
    int64_t xs[4] = {2, 2, 6, 5}, ws[4] = {4, 1, 3, 2};
    b.x = ad_param(b.g, 4, xs, "x");
    b.w = ad_param(b.g, 4, ws, "w");
    fill(b.x, 11);
    fill(b.w, 12);
    ad_conv_opts o = {{1, 2}, {1, 1}, {2, 1}, 2};
    ad_node *y = ad_conv2d(b.x, b.w, &o);
    if (pool == 1) {
        ad_pool_opts p = {{2, 2}, {1, 1}, {1, 0}};
        y = ad_max_pool2d(y, &p);
    } else if (pool == 2) {
        ad_pool_opts p = {{3, 2}, {2, 1}, {1, 1}};
        y = ad_avg_pool2d(y, &p);
    }
    cr_assert_not_null(y, "%s", ad_graph_error(b.g));
    ad_node *r = ad_const(b.g, ad_ndim(y), ad_shape(y), NULL, "R");
    fill(r, 13);
    ad_node *L = ad_sum(ad_mul(ad_tanh(y), r), AD_ALL);
    ad_node *gx = ad_grad(L, b.x);
    b.s = ad_sum(ad_mul(gx, gx), AD_ALL);
    b.dsw = ad_grad(b.s, b.w);
    cr_assert_not_null(b.dsw, "%s", ad_graph_error(b.g));
    return b;
}

static void check_second(int pool)
{
    second b = build_second(pool);
    double dsw[24], *w = ad_data(b.w);
    ad_get(b.dsw, dsw, 24);
    double norm = 0;
    for (int i = 0; i < 24; i++) {
        const double h = 1e-6, old = w[i];
        w[i] = old + h;
        ad_forward(b.g);
        double sp = ad_item(b.s);
        w[i] = old - h;
        ad_forward(b.g);
        double sm = ad_item(b.s);
        w[i] = old;
        double fd = (sp - sm) / (2 * h);
        cr_assert(fabs(fd - dsw[i]) <= 1e-6 * fmax(1, fabs(fd)), "pool %d, w[%d]: %.12g vs %.12g",
                  pool, i, dsw[i], fd);
        norm += fabs(dsw[i]);
    }
    cr_assert_gt(norm, 1e-3); /* not trivially zero */
    ad_graph_free(b.g);
}

Test(second_order, weights_gradient_of_input_gradient_norm_conv) { check_second(0); }
Test(second_order, weights_gradient_of_input_gradient_norm_max_pool) { check_second(1); }
Test(second_order, weights_gradient_of_input_gradient_norm_avg_pool) { check_second(2); }

/* conv → relu → max pool → conv (groups 2, stride 2) → avg pool → mean of squares */
typedef struct {
    ad_graph *g;
    ad_node *x, *w1, *w2, *loss;
} cnn;

static void cnn_build(cnn *m, int64_t batch, int reuse)
{
    m->g = ad_graph_new(AD_F64);
    ad_graph_set_memory_reuse(m->g, reuse);
    int64_t xs[4] = {batch, 2, 9, 8}, w1s[4] = {4, 2, 3, 3}, w2s[4] = {4, 2, 2, 2};
    m->x = ad_input(m->g, 4, xs, "x");
    m->w1 = ad_param(m->g, 4, w1s, "w1");
    m->w2 = ad_param(m->g, 4, w2s, "w2");
    fill(m->w1, 21);
    fill(m->w2, 22);
    ad_conv_opts c1 = {{1, 1}, {1, 1}, {1, 1}, 1}, c2 = {{2, 1}, {0, 1}, {1, 2}, 2};
    ad_pool_opts p1 = {{3, 2}, {2, 1}, {1, 1}}, p2 = {{2, 2}, {1, 1}, {0, 1}};
    ad_node *h = ad_max_pool2d(ad_relu(ad_conv2d(m->x, m->w1, &c1)), &p1);
    h = ad_avg_pool2d(ad_conv2d(h, m->w2, &c2), &p2);
    m->loss = ad_mean(ad_mul(h, h), AD_ALL);
    cr_assert_not_null(m->loss, "%s", ad_graph_error(m->g));
}

static void cnn_step(cnn *m, unsigned seed, double *grads)
{
    fill(m->x, seed);
    cr_assert_eq(ad_forward(m->g), 0, "%s", ad_graph_error(m->g));
    ad_zero_grad(m->g);
    cr_assert_eq(ad_backward(m->loss), 0, "%s", ad_graph_error(m->g));
    ad_get_grad(m->w1, grads, 72);
    ad_get_grad(m->w2, grads + 72, 32);
}

static void same_grads(const double *a, const double *b, const char *what)
{
    for (int i = 0; i < 104; i++)
        cr_assert_eq(a[i], b[i], "%s: gradient %d %.17g vs %.17g", what, i, a[i], b[i]);
}

/* resizes m to batch, runs it and a graph built for that batch */
static void resized_matches_fresh(cnn *m, int64_t batch, unsigned seed, int reuse)
{
    double g1[104], g2[104];
    cnn f;
    cr_assert_eq(ad_resize(m->x, batch), 0);
    cnn_step(m, seed, g1);
    cnn_step(m, seed + 1, g1);
    cnn_build(&f, batch, reuse);
    cnn_step(&f, seed + 1, g2);
    same_grads(g1, g2, "after resize");
    ad_graph_free(f.g);
}

Test(replay, resize_and_memory_reuse_match_fresh_graphs)
{
    for (int reuse = 0; reuse < 2; reuse++) {
        cnn m, f;
        double g1[104], g2[104];
        cnn_build(&m, 4, reuse);
        cnn_step(&m, 5, g1);
        cnn_step(&m, 6, g1);
        size_t bytes = ad_graph_bytes(m.g);
        cnn_build(&f, 4, !reuse); /* the other memory mode */
        cnn_step(&f, 6, g2);
        same_grads(g1, g2, "memory reuse");
        ad_graph_free(f.g);
        /* a smaller batch allocates nothing; a bigger one than ever grows */
        resized_matches_fresh(&m, 2, 7, reuse);
        cr_assert_eq(ad_graph_bytes(m.g), bytes, "a smaller batch allocated");
        resized_matches_fresh(&m, 6, 9, reuse);
        ad_graph_free(m.g);
    }
}

Test(pool, max_pool_argmax_follows_replay)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t xs[3] = {1, 1, 4};
    ad_node *x = ad_param(g, 3, xs, "x");
    double a[4] = {1, 2, 4, 3}, b[4] = {5, 2, 0, 3};
    ad_set(x, a, 4);
    ad_pool_opts o = {{2, 0}, {0, 0}, {0, 0}};
    ad_node *loss = ad_sum(ad_max_pool1d(x, &o), AD_ALL);
    cr_assert_eq(ad_backward(loss), 0);
    ad_set(x, b, 4);
    ad_zero_grad(g);
    cr_assert_eq(ad_forward(g), 0);
    cr_assert_eq(ad_backward(loss), 0);
    double gv[4];
    ad_get_grad(x, gv, 4);
    const double want[4] = {1, 0, 0, 1};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gv[i], want[i]);
    cr_assert_float_eq(ad_item(loss), 8.0, 0);
    ad_graph_free(g);
}

/* element i of a fixed pseudo-random array in [-1, 1] (a hash of i, so any
 * part of the array can be made alone) */
static double hashed(uint32_t seed, int64_t i)
{
    uint32_t h = (uint32_t)i * 2654435761u ^ seed * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (double)(h % 2001) / 1000.0 - 1.0;
}

/* n's values: elements [off, off + numel) of the hashed array of seed */
static void fill_hashed(ad_node *n, uint32_t seed, int64_t off)
{
    int64_t k = ad_numel(n);
    double *v = malloc(sizeof *v * (size_t)k);
    cr_assert_not_null(v);
    for (int64_t i = 0; i < k; i++)
        v[i] = hashed(seed, off + i);
    cr_assert_eq(ad_set(n, v, k), 0);
    free(v);
}

/* y, ∂/∂x, ∂/∂w, ∂/∂b of Σ r·conv(x, w, b) for images [i0, i0 + nb) of one
 * batch (x and r are parts of fixed arrays, so a batch of one image sees
 * that image of the batch of eleven); the outputs are appended to out[k]
 * (x and y per image, w and b summed) */
static void conv_images(ad_dtype dt, int variant, int64_t i0, int64_t nb, double *out[4])
{
    const ad_conv_opts opts[2] = {{{1, 1}, {1, 1}, {1, 1}, 1}, {{1, 2}, {1, 0}, {1, 1}, 2}};
    const int64_t H = 8, W = variant ? 16 : 8, C = variant ? 4 : 2;
    const int64_t xs[4] = {nb, C, H, W}, ws[4] = {variant ? 4 : 2, 2, 3, 3}, bs[1] = {ws[0]};
    ad_graph *g = ad_graph_new(dt);
    ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
    ad_node *b = ad_param(g, 1, bs, "b");
    fill_hashed(x, 3, i0 * C * H * W);
    fill_hashed(w, 5, 0);
    fill_hashed(b, 7, 0);
    ad_node *y = variant ? ad_conv2d(x, w, &opts[1]) : ad_conv2d_bias_relu(x, w, b, &opts[0]);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    ad_node *r = ad_const(g, 4, ad_shape(y), NULL, "r");
    fill_hashed(r, 11, i0 * ad_numel(y) / nb);
    cr_assert_eq(ad_backward(ad_sum(ad_mul(y, r), AD_ALL)), 0, "%s", ad_graph_error(g));
    ad_node *v[4] = {y, x, w, b};
    for (int k = 0; k < 4; k++) {
        int64_t m = ad_numel(v[k]);
        double *t = malloc(sizeof *t * (size_t)m);
        cr_assert_not_null(t);
        if (k)
            ad_get_grad(v[k], t, m);
        else
            ad_get(v[k], t, m);
        for (int64_t i = 0; i < m; i++) {
            if (k < 2)
                out[k][i0 * m / nb + i] = t[i];
            else
                out[k][i] += t[i];
        }
        free(t);
    }
    ad_graph_free(g);
}

/* The GEMMs run over chunks of images (enough for 512 columns): 8×8
 * outputs make chunks of 8 images, 8×7 chunks of 10, so a batch of 11 has a
 * whole chunk and a part; values and gradients match those of each image
 * alone (its own GEMMs), both through the contiguous im2col (3×3, padding 1,
 * bias and ReLU) and the general one (stride 2 along the width, groups 2). */
Test(conv, chunks_of_images_match_one_image_at_a_time)
{
    for (int dt = 0; dt < 2; dt++)
        for (int variant = 0; variant < 2; variant++) {
            /* y, x, w, b */
            const int64_t n[4] = {11 * (variant ? 4 * 8 * 7 : 2 * 8 * 8),
                                  11 * (variant ? 4 * 8 * 16 : 2 * 8 * 8), variant ? 72 : 36,
                                  variant ? 4 : 2};
            double *whole[4], *alone[4];
            for (int k = 0; k < 4; k++) {
                whole[k] = calloc((size_t)n[k], sizeof(double));
                alone[k] = calloc((size_t)n[k], sizeof(double));
                cr_assert(whole[k] && alone[k]);
            }
            conv_images(dt ? AD_F64 : AD_F32, variant, 0, 11, whole);
            for (int64_t i = 0; i < 11; i++)
                conv_images(dt ? AD_F64 : AD_F32, variant, i, 1, alone);
            const double tol = dt ? 1e-12 : 2e-4; /* sums in another order */
            for (int k = 0; k < 4; k++) {
                for (int64_t i = 0; i < n[k]; i++)
                    cr_assert(fabs(whole[k][i] - alone[k][i]) <= tol * (1 + fabs(alone[k][i])),
                              "dtype %d variant %d output %d [%lld]: %.17g vs %.17g", dt, variant,
                              k, (long long)i, whole[k][i], alone[k][i]);
                free(whole[k]);
                free(alone[k]);
            }
        }
}

/* x's gradient of Σ r·conv(x, w) by direct sums: dx[n,c,ih,iw] = Σ r[n,o,i,j] w[o,c,a,b]
 * over the taps that read (ih, iw); stride 1, dilation 1, one group */
static void direct_conv2d_dx(const double *r, const double *w, double *dx, int64_t N, int64_t C,
                             int64_t H, int64_t W, int64_t O, int64_t ph, int64_t pw, int64_t OH,
                             int64_t OW)
{
    memset(dx, 0, sizeof(double) * (size_t)(N * C * H * W));
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++)
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t a = 0; a < 3; a++)
                            for (int64_t b = 0; b < 3; b++) {
                                int64_t ih = i - ph + a, iw = j - pw + b;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    dx[((n * C + c) * H + ih) * W + iw] +=
                                        r[((n * O + o) * OH + i) * OW + j] *
                                        w[((o * C + c) * 3 + a) * 3 + b];
                            }
}

/* w's gradient of Σ r·conv(x, w) by direct sums: dw[o,c,a,b] = Σ r[n,o,i,j] x[n,c,i−ph+a,j−pw+b] */
static void direct_conv2d_dw(const double *r, const double *x, double *dw, int64_t N, int64_t C,
                             int64_t H, int64_t W, int64_t O, int64_t ph, int64_t pw, int64_t OH,
                             int64_t OW)
{
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t a = 0; a < 3; a++)
                for (int64_t b = 0; b < 3; b++) {
                    double s = 0;
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t i = 0; i < OH; i++)
                            for (int64_t j = 0; j < OW; j++) {
                                int64_t ih = i - ph + a, iw = j - pw + b;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    s += r[((n * O + o) * OH + i) * OW + j] *
                                         x[((n * C + c) * H + ih) * W + iw];
                            }
                    dw[((o * C + c) * 3 + a) * 3 + b] = s;
                }
}

/* Stride-1 3×3 convolutions of 8 or more channels on both sides go through
 * the Winograd F(2×2, 3×3) products (autodiff/conv_winograd.c), and of 16 or
 * more through F(4×4, 3×3) (outputs wider than 2), the forward,
 * conv_transpose (the input gradient) and conv_weight_grad: values, input
 * and weight gradients against
 * direct sums for every padding up to 2 (the transpose's 2 − p from 2 to
 * 0), odd and even sizes (partial 2×2 and 4×4 tiles on the far edges), the
 * bias and ReLU forms, a batch of several chunks (32×32 images: one per
 * chunk), of one chunk, and of chunks of 3 and 2 (F(4×4): 8 and 2) images
 * (the weight gradient's last, smaller chunk), f32 and f64, and f32 again
 * with oneDNN allowed (one thread asked for: the products of a chunk as one
 * batched product where the library has oneDNN, gemm.c). The f32
 * tolerance, 1e-5·(1 + |y|) per input channel summed (per output channel
 * for dx), holds F(2×2)'s errors with a margin of 50 and F(4×4)'s, whose
 * transforms scale by up to 8, with a margin of 3 (measured 0.3 of it at
 * 14×14). */
Test(conv, winograd_three_by_three_matches_direct_sums)
{
    struct {
        int64_t N, C, O, H, W, ph, pw;
        int form; /* 0 conv, 1 conv_bias, 2 conv_bias_relu */
    } cases[] = {
        {3, 8, 9, 7, 6, 1, 1, 0},
        {2, 9, 8, 5, 9, 0, 0, 1},
        {3, 8, 8, 6, 7, 2, 1, 2},
        {2, 8, 10, 4, 4, 0, 2, 2},
        {3, 8, 8, 32, 32, 1, 1, 2},
        {1, 16, 8, 3, 3, 2, 2, 1},
        {5, 8, 8, 14, 14, 1, 1, 1}, /* chunks of 3 and 2 images */
        /* F(4×4, 3×3): 16 or more channels on both sides */
        {10, 16, 16, 14, 14, 1, 1, 1}, /* chunks of 8 and 2 images */
        {2, 16, 17, 7, 9, 0, 2, 2},    /* 5×11: partial 4×4 tiles */
        {3, 16, 16, 6, 5, 2, 0, 0},    /* 8×3 */
        {2, 20, 16, 9, 10, 1, 2, 1},   /* 9×12 */
        {2, 16, 18, 5, 5, 2, 2, 2},    /* 7×7 */
        {1, 16, 16, 1, 2, 2, 2, 1},    /* 3×4 from 1×2 (its transpose: F(2×2)) */
    };
    for (int pass = 0; pass < 3; pass++)
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            const int dt = pass == 1; /* pass 2: f32 on the backends' one thread */
            if (pass == 2 && t == 0) {
                ad_set_threads(2); /* the OpenMP team set, as gemm.c's onednn_allowed wants */
                ad_set_threads(1);
            }
            int64_t N = cases[t].N, C = cases[t].C, O = cases[t].O, H = cases[t].H, W = cases[t].W,
                    ph = cases[t].ph, pw = cases[t].pw;
            int form = cases[t].form;
            ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
            int64_t xs[4] = {N, C, H, W}, ws[4] = {O, C, 3, 3}, bs[1] = {O};
            ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
            ad_node *b = ad_param(g, 1, bs, "b");
            fill_hashed(x, 31 + (uint32_t)t, 0);
            fill_hashed(w, 37 + (uint32_t)t, 0);
            fill_hashed(b, 41 + (uint32_t)t, 0);
            ad_conv_opts o = {{1, 1}, {(int)ph, (int)pw}, {1, 1}, 1};
            ad_node *y = form == 0   ? ad_conv2d(x, w, &o)
                         : form == 1 ? ad_conv2d_bias(x, w, b, &o)
                                     : ad_conv2d_bias_relu(x, w, b, &o);
            cr_assert_not_null(y, "%s", ad_graph_error(g));
            const int64_t OH = H + 2 * ph - 2, OW = W + 2 * pw - 2;
            cr_assert_eq(sz(y, 2), OH);
            cr_assert_eq(sz(y, 3), OW);
            ad_node *r = ad_const(g, 4, ad_shape(y), NULL, "r");
            fill_hashed(r, 43 + (uint32_t)t, 0);
            cr_assert_eq(ad_backward(ad_sum(ad_mul(y, r), AD_ALL)), 0, "%s", ad_graph_error(g));
            if (pass == 2 && strstr(ad_gemm_backend(), "onednn")) /* the forward's, dw's */
                cr_assert_geq(ad_gemm_held_entries(g), 2, "case %zu: batched products", t);
            const int64_t nx = ad_numel(x), ny = ad_numel(y), nw = ad_numel(w);
            double *xv = malloc(sizeof(double) * (size_t)nx),
                   *wv = malloc(sizeof(double) * (size_t)nw);
            double *yv = malloc(sizeof(double) * (size_t)ny),
                   *want = malloc(sizeof(double) * (size_t)ny);
            double *rv = malloc(sizeof(double) * (size_t)ny),
                   *gx = malloc(sizeof(double) * (size_t)nx);
            double *dx = malloc(sizeof(double) * (size_t)nx), bv[32];
            cr_assert(xv && wv && yv && want && rv && gx && dx);
            ad_get(x, xv, nx);
            ad_get(w, wv, nw);
            ad_get(b, bv, O);
            ad_get(y, yv, ny);
            ad_get(r, rv, ny);
            ad_get_grad(x, gx, nx);
            direct_conv2d(xv, wv, want, N, C, H, W, O, 3, 3, &o, OH, OW);
            for (int64_t i = 0; i < ny; i++) {
                double u = want[i] + (form ? bv[i / (OH * OW) % O] : 0);
                if (form == 2) {
                    rv[i] = u > 0 ? rv[i] : 0; /* the ReLU's mask on the gradient */
                    u = u > 0 ? u : 0;
                }
                want[i] = u;
            }
            /* f32: the transforms' roundings on sums of 9·C products of values in [-1, 1] */
            const double tol = dt ? 1e-12 : 1e-5;
            for (int64_t i = 0; i < ny; i++)
                cr_assert(fabs(yv[i] - want[i]) <= tol * (1 + fabs(want[i])) * C,
                          "case %zu dtype %d y[%lld]: %.9g vs %.9g", t, dt, (long long)i, yv[i],
                          want[i]);
            direct_conv2d_dx(rv, wv, dx, N, C, H, W, O, ph, pw, OH, OW);
            for (int64_t i = 0; i < nx; i++)
                cr_assert(fabs(gx[i] - dx[i]) <= tol * (1 + fabs(dx[i])) * O,
                          "case %zu dtype %d dx[%lld]: %.9g vs %.9g", t, dt, (long long)i, gx[i],
                          dx[i]);
            double *gw = malloc(sizeof(double) * (size_t)nw),
                   *dw = malloc(sizeof(double) * (size_t)nw);
            cr_assert(gw && dw);
            ad_get_grad(w, gw, nw);
            direct_conv2d_dw(rv, xv, dw, N, C, H, W, O, ph, pw, OH, OW);
            for (int64_t i = 0; i < nw; i++) /* sums over N·OH·OW products */
                cr_assert(fabs(gw[i] - dw[i]) <= tol * (1 + fabs(dw[i])) * (double)(N * OH * OW),
                          "case %zu dtype %d dw[%lld]: %.9g vs %.9g", t, dt, (long long)i, gw[i],
                          dw[i]);
            free(gw);
            free(dw);
            free(xv);
            free(wv);
            free(yv);
            free(want);
            free(rv);
            free(gx);
            free(dx);
            ad_graph_free(g);
        }
}

/* A convolution of at most 16 taps (C/G·KH·KW: one input channel by 3×3,
 * the CNN's first layer) computes its forward product with ops_conv.c's own
 * kernel in f32 where the CPU has AVX2+FMA (few_taps), the bias added
 * before the products and the ReLU before the store: values, and the
 * weight and bias gradients of Σ r·y (their rules' ops; the bias's summed
 * over the positions first in the 28×28 planes, over the batch first in
 * the smaller ones), against direct sums in f64; and
 * within a few f32 roundings of the library's product (the kernel turned
 * off by ad_gemm_portable_only). Cases: 1 → 32 channels at 28×28 (tiles
 * of 4 rows by 16 columns, whole), 6 output channels at 5×7 (a tile of 2
 * rows, a masked last tile, chunks of 5 images side by side), 16 taps and
 * no padding, groups (6 taps per group), stride 2 (the general unfold),
 * each form (conv, conv_bias, conv_bias_relu). */
Test(conv, few_taps_products_match_direct_sums)
{
    struct {
        int64_t N, C, O, H, W, KH, KW;
        ad_conv_opts o;
        int form; /* 0 conv, 1 conv_bias, 2 conv_bias_relu */
    } cases[] = {
        {3, 1, 32, 28, 28, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1},
        {5, 1, 6, 5, 7, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 2},
        {2, 4, 5, 6, 7, 2, 2, {{1, 1}, {0, 0}, {1, 1}, 1}, 0},
        {3, 4, 6, 7, 5, 3, 1, {{1, 1}, {1, 0}, {1, 1}, 2}, 2},
        {2, 1, 9, 9, 11, 3, 3, {{1, 2}, {1, 1}, {1, 1}, 1}, 1},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int64_t N = cases[t].N, C = cases[t].C, O = cases[t].O, H = cases[t].H,
                      W = cases[t].W, KH = cases[t].KH, KW = cases[t].KW;
        const ad_conv_opts *o = &cases[t].o;
        const int64_t G = o->groups, Cg = C / G, Og = O / G, nx = N * C * H * W;
        const int64_t nw = O * Cg * KH * KW, sh = o->stride[0], sw = o->stride[1];
        const int64_t ph = o->padding[0], pw = o->padding[1];
        const int form = cases[t].form;
        cr_assert_leq(Cg * KH * KW, 16, "case %zu has few taps", t);
        int64_t OH = 0, OW = 0, ny = 0;
        double *v[2][3] = {{NULL}}; /* [kernel on, off][y, dw, db] */
        double *xv = malloc(sizeof(double) * (size_t)nx), *rv = NULL, wv[512], bv[32];
        cr_assert(xv && nw <= 512 && O <= 32);
        for (int off = 0; off < 2; off++) {
            ad_gemm_portable_only = off; /* off: few_taps is false, ad_gemm computes */
            ad_graph *g = ad_graph_new(AD_F32);
            int64_t xs[4] = {N, C, H, W}, ws[4] = {O, Cg, KH, KW}, bs[1] = {O};
            ad_node *x = ad_input(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
            ad_node *b = ad_param(g, 1, bs, "b");
            fill_hashed(x, 61 + (uint32_t)t, 0);
            fill_hashed(w, 67 + (uint32_t)t, 0);
            fill_hashed(b, 71 + (uint32_t)t, 0);
            ad_node *y = form == 0   ? ad_conv2d(x, w, o)
                         : form == 1 ? ad_conv2d_bias(x, w, b, o)
                                     : ad_conv2d_bias_relu(x, w, b, o);
            cr_assert_not_null(y, "%s", ad_graph_error(g));
            OH = sz(y, 2), OW = sz(y, 3), ny = ad_numel(y);
            cr_assert(ny >= nw && ny >= O); /* v's rows hold dw and db */
            ad_node *r = ad_const(g, 4, ad_shape(y), NULL, "r");
            fill_hashed(r, 73 + (uint32_t)t, 0);
            cr_assert_eq(ad_backward(ad_sum(ad_mul(y, r), AD_ALL)), 0, "%s", ad_graph_error(g));
            for (int k = 0; k < 3; k++) {
                v[off][k] = calloc((size_t)ny, sizeof(double));
                cr_assert_not_null(v[off][k]);
            }
            ad_get(y, v[off][0], ny);
            ad_get_grad(w, v[off][1], nw);
            if (form)
                ad_get_grad(b, v[off][2], O);
            if (off == 0) {
                rv = malloc(sizeof(double) * (size_t)ny);
                cr_assert_not_null(rv);
                ad_get(x, xv, nx);
                ad_get(w, wv, nw);
                ad_get(b, bv, O);
                ad_get(r, rv, ny);
            }
            ad_graph_free(g);
        }
        ad_gemm_portable_only = false;
        /* y by direct sums; r masked by the ReLU; then dw and db */
        double *want = malloc(sizeof(double) * (size_t)ny), dw[512] = {0}, db[32] = {0};
        cr_assert_not_null(want);
        direct_conv2d(xv, wv, want, N, C, H, W, O, KH, KW, o, OH, OW);
        for (int64_t i = 0; i < ny; i++) {
            double u = want[i] + (form ? bv[i / (OH * OW) % O] : 0);
            if (form == 2 && u <= 0)
                rv[i] = u = 0;
            want[i] = u;
            db[i / (OH * OW) % O] += rv[i];
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t oc = 0; oc < O; oc++)
                for (int64_t i = 0; i < OH; i++)
                    for (int64_t j = 0; j < OW; j++)
                        for (int64_t c = 0; c < Cg; c++)
                            for (int64_t a = 0; a < KH; a++)
                                for (int64_t e = 0; e < KW; e++) {
                                    const int64_t ih = i * sh - ph + a, iw = j * sw - pw + e;
                                    if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                        dw[((oc * Cg + c) * KH + a) * KW + e] +=
                                            rv[((n * O + oc) * OH + i) * OW + j] *
                                            xv[((n * C + oc / Og * Cg + c) * H + ih) * W + iw];
                                }
        /* f32 roundings of sums of up to 17 terms (y), of N·OH·OW (dw, db) */
        const double *ref[3] = {want, dw, db};
        const int64_t len[3] = {ny, nw, form ? O : 0};
        const double tol[3] = {1e-5 * 17, 1e-6 * (double)(N * OH * OW),
                               1e-6 * (double)(N * OH * OW)};
        const char *name[3] = {"y", "dw", "db"};
        for (int k = 0; k < 3; k++)
            for (int64_t i = 0; i < len[k]; i++) {
                cr_assert(fabs(v[0][k][i] - ref[k][i]) <= tol[k] * (1 + fabs(ref[k][i])),
                          "case %zu %s[%lld]: %.9g vs %.9g", t, name[k], (long long)i, v[0][k][i],
                          ref[k][i]);
                cr_assert(fabs(v[0][k][i] - v[1][k][i]) <= tol[k] * (1 + fabs(ref[k][i])),
                          "case %zu %s[%lld]: %.9g vs the library's %.9g", t, name[k], (long long)i,
                          v[0][k][i], v[1][k][i]);
            }
        for (int off = 0; off < 2; off++)
            for (int k = 0; k < 3; k++)
                free(v[off][k]);
        free(want);
        free(rv);
        free(xv);
    }
}

/* conv_bias_relu_pool is max_pool2d(2) of conv2d_bias_relu: the same values
 * and argmax, and the same gradients to x, w and b (G·[y > 0] placed at the
 * argmax, then the convolution's rules), bit for bit, through im2col (3×3
 * padding 1 with chunks of images; odd sizes, stride 2 and groups 2; a
 * pointwise kernel), through Winograd (8 channels, odd output: F(2×2);
 * 16 channels, odd output and 14×14: F(4×4)) and, in f32, through the
 * few-taps kernel (one input channel; the pointwise case too), in f32 and
 * f64; then the errors. */
Test(conv, conv_bias_relu_pool_is_max_pool_of_conv_bias_relu)
{
    struct {
        int64_t N, C, O, H, W, K;
        ad_conv_opts o;
    } cases[] = {
        {11, 2, 4, 8, 8, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},
        {3, 4, 6, 9, 7, 3, {{2, 1}, {1, 0}, {1, 1}, 2}},
        {2, 3, 5, 6, 5, 1, {{1, 1}, {0, 0}, {1, 1}, 1}},
        {3, 8, 8, 7, 9, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},
        {3, 16, 16, 7, 9, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},   /* F(4×4) */
        {2, 16, 16, 14, 14, 3, {{1, 1}, {1, 1}, {1, 1}, 1}}, /* F(4×4), the CNN's size */
        {5, 1, 6, 8, 9, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},     /* few taps, chunks of 5 images */
        {2, 1, 32, 28, 28, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},  /* few taps, the CNN's first layer */
    };
    for (int dt = 0; dt < 2; dt++)
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
            int64_t G = cases[t].o.groups, K = cases[t].K;
            int64_t xs[4] = {cases[t].N, cases[t].C, cases[t].H, cases[t].W};
            int64_t ws[4] = {cases[t].O, cases[t].C / G, K, K}, bs[1] = {cases[t].O};
            ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
            ad_node *b = ad_param(g, 1, bs, "b");
            fill_hashed(x, 51 + (uint32_t)t, 0);
            fill_hashed(w, 53 + (uint32_t)t, 0);
            fill_hashed(b, 57 + (uint32_t)t, 0);
            ad_pool_opts po = {{2, 2}, {2, 2}, {0, 0}};
            ad_node *ys[2] = {ad_conv2d_bias_relu_pool(x, w, b, &cases[t].o),
                              ad_max_pool2d(ad_conv2d_bias_relu(x, w, b, &cases[t].o), &po)};
            cr_assert(ys[0] && ys[1], "%s", ad_graph_error(g));
            cr_assert_eq(ad_ndim(ys[0]), 4);
            for (int d = 0; d < 4; d++)
                cr_assert_eq(sz(ys[0], d), sz(ys[1], d), "case %zu axis %d", t, d);
            ad_node *r = ad_const(g, 4, ad_shape(ys[0]), NULL, "r");
            fill_hashed(r, 59 + (uint32_t)t, 0);
            double *v[2][4];
            for (int k = 0; k < 2; k++) {
                ad_node *loss = ad_sum(ad_mul(ys[k], r), AD_ALL);
                ad_zero_grad(g);
                cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
                ad_node *of[4] = {ys[k], x, w, b};
                for (int j = 0; j < 4; j++) {
                    int64_t m = ad_numel(of[j]);
                    v[k][j] = malloc(sizeof(double) * (size_t)m);
                    cr_assert_not_null(v[k][j]);
                    if (j)
                        ad_get_grad(of[j], v[k][j], m);
                    else
                        ad_get(of[j], v[k][j], m);
                }
            }
            ad_node *of[4] = {ys[0], x, w, b};
            int64_t positive = 0;
            for (int j = 0; j < 4; j++) {
                for (int64_t i = 0; i < ad_numel(of[j]); i++) {
                    cr_assert_eq(v[0][j][i], v[1][j][i],
                                 "case %zu dtype %d output %d [%lld]: %.17g vs %.17g", t, dt, j,
                                 (long long)i, v[0][j][i], v[1][j][i]);
                    positive += j == 0 && v[0][j][i] > 0;
                }
                free(v[0][j]);
                free(v[1][j]);
            }
            cr_assert_gt(positive, ad_numel(ys[0]) / 4,
                         "case %zu: most windows are not all negative", t);
            ad_graph_free(g);
        }
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t x3[3] = {2, 4, 9}, w3[3] = {4, 4, 3}, x4[4] = {2, 4, 3, 3}, w4[4] = {4, 4, 3, 3};
    int64_t bs[1] = {4};
    ad_node *b = ad_param(g, 1, bs, "b");
    expect_error(
        g, ad_conv2d_bias_relu_pool(ad_input(g, 3, x3, "x"), ad_param(g, 3, w3, "w"), b, NULL),
        "ad_conv2d_bias_relu_pool: input (2,4,9) must have 4 axes (N,C,H,W)");
    expect_error(
        g, ad_conv2d_bias_relu_pool(ad_input(g, 4, x4, "x"), ad_param(g, 4, w4, "w"), b, NULL),
        "ad_conv2d_bias_relu_pool: input (2,4,3,3) and weight (4,4,3,3) give a 1x1 "
        "convolution output; the 2x2 pooling needs 4 axes and at least 2x2");
    ad_graph_free(g);
}

/* ------------------------------------------------ the forward's kept transform
 * A Winograd convolution's weight gradient reads the transformed input its
 * forward kept (autodiff/conv_winograd.c, kept_chunks) instead of transforming x
 * again. */

/* Σ r·f(x, w, b) for f conv_bias_relu_pool (form 0) or conv_bias (form 1),
 * 3×3 padding 1, x an input of batch N; grads: w's then b's gradient */
typedef struct {
    ad_graph *g;
    ad_node *x, *w, *b, *r, *loss;
    int xgrad; /* x is a parameter */
} kept_net;

static void kept_build(kept_net *m, int form, int reuse, int64_t N, int64_t C, int64_t HW)
{
    m->g = ad_graph_new(AD_F32);
    ad_graph_set_memory_reuse(m->g, reuse);
    const int64_t xs[4] = {N, C, HW, HW}, ws[4] = {C, C, 3, 3}, bs[1] = {C};
    /* reuse 2: x a parameter (its gradient too: the fused backward pass) */
    m->xgrad = reuse == 2;
    m->x = m->xgrad ? ad_param(m->g, 4, xs, "x") : ad_input(m->g, 4, xs, "x");
    m->w = ad_param(m->g, 4, ws, "w");
    m->b = ad_param(m->g, 1, bs, "b");
    fill_hashed(m->w, 61, 0);
    fill_hashed(m->b, 67, 0);
    ad_conv_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad_node *y = form == 0 ? ad_conv2d_bias_relu_pool(m->x, m->w, m->b, &o)
                           : ad_conv2d_bias(m->x, m->w, m->b, &o);
    cr_assert_not_null(y, "%s", ad_graph_error(m->g));
    const int64_t rs[4] = {1, C, ad_shape(y)[2], ad_shape(y)[3]}; /* broadcast over the batch */
    m->r = ad_const(m->g, 4, rs, NULL, "r");
    fill_hashed(m->r, 71, 0);
    m->loss = ad_sum(ad_mul(y, m->r), AD_ALL);
    cr_assert_not_null(m->loss, "%s", ad_graph_error(m->g));
}

/* one step on the images [seed·N, ...) of a hashed array; grads (w, b) */
static void kept_step(kept_net *m, uint32_t seed, double *grads)
{
    fill_hashed(m->x, 73, (int64_t)seed * 1000);
    cr_assert_eq(ad_forward(m->g), 0, "%s", ad_graph_error(m->g));
    ad_zero_grad(m->g);
    cr_assert_eq(ad_backward(m->loss), 0, "%s", ad_graph_error(m->g));
    ad_get_grad(m->w, grads, ad_numel(m->w));
    ad_get_grad(m->b, grads + ad_numel(m->w), ad_numel(m->b));
    if (m->xgrad) /* a parameter: x's gradient after them */
        ad_get_grad(m->x, grads + ad_numel(m->w) + ad_numel(m->b), ad_numel(m->x));
}

/* m's step on seed against a graph built for that batch and seed (whose
 * only pass builds its backward, so its weight gradient transforms x) */
static void kept_matches_fresh(kept_net *m, int form, int reuse, int64_t C, int64_t HW,
                               uint32_t seed)
{
    const int64_t n = C * C * 9 + C + (m->xgrad ? ad_numel(m->x) : 0);
    double *a = malloc(sizeof(double) * (size_t)n), *b = malloc(sizeof(double) * (size_t)n);
    cr_assert(a && b);
    kept_step(m, seed, a);
    kept_net f;
    kept_build(&f, form, reuse, ad_shape(m->x)[0], C, HW);
    kept_step(&f, seed, b);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(a[i], b[i], "form %d reuse %d C %lld seed %u: gradient %lld %.9g vs %.9g",
                     form, reuse, (long long)C, seed, (long long)i, a[i], b[i]);
    ad_graph_free(f.g);
    free(a);
    free(b);
}

/* Each step's gradients equal those of a graph built for the step's images,
 * bit for bit (the kept V is the one the weight gradient would compute):
 * new images every step, with and without memory reuse, the fused pool and
 * the plain form, F(4×4) (16 channels, 10×10: 5 images a chunk, the last
 * smaller) and F(2×2) (8 channels), then a smaller batch and a bigger one
 * (whose first pass has no room kept yet and transforms x itself); and with
 * x a parameter, whose F(4×4) backward pass is one node (fuses_weight_grad:
 * the weight gradient made by the input gradient's node). */
Test(conv, winograd_kept_transform_follows_replay_and_resize)
{
    for (int form = 0; form < 2; form++)
        for (int reuse = 0; reuse < 3; reuse++)
            for (int64_t C = 8; C <= 16; C += 8) {
                kept_net m;
                kept_build(&m, form, reuse, 7, C, 10);
                double *tmp = malloc(sizeof(double) * (size_t)(C * C * 9 + C + 7 * C * 100));
                cr_assert_not_null(tmp);
                kept_step(&m, 1, tmp); /* builds the backward pass */
                free(tmp);
                kept_matches_fresh(&m, form, reuse, C, 10, 2);
                kept_matches_fresh(&m, form, reuse, C, 10, 3);
                if (reuse == 2) { /* x is not an input: no resize */
                    ad_graph_free(m.g);
                    continue;
                }
                cr_assert_eq(ad_resize(m.x, 3), 0);
                kept_matches_fresh(&m, form, reuse, C, 10, 4);
                cr_assert_eq(ad_resize(m.x, 12), 0);
                kept_matches_fresh(&m, form, reuse, C, 10, 5);
                kept_matches_fresh(&m, form, reuse, C, 10, 6);
                ad_graph_free(m.g);
            }
}

/* The weight gradient is that of the forward pass that last ran, as the
 * ReLU mask and the argmax are: a backward pass after ad_set(x) without
 * ad_forward gives the previous images' weight gradient (the loss is linear
 * in the convolution, so its output gradient does not change with x: only
 * the kept transform can carry the old images). The kept room is reserved
 * when the backward pass is built (the graph grows by at least V of the
 * batch: 36·16 values per channel of each 14×14 image) and filled by the
 * forward passes after it. With ad_forward the gradient follows the new
 * images. */
Test(conv, winograd_weight_gradient_is_that_of_the_last_forward)
{
    ad_graph *g = ad_graph_new(AD_F32);
    const int64_t xs[4] = {6, 16, 14, 14}, ws[4] = {16, 16, 3, 3}, bs[1] = {16};
    ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
    ad_node *b = ad_param(g, 1, bs, "b");
    fill_hashed(x, 81, 0);
    fill_hashed(w, 83, 0);
    fill_hashed(b, 87, 0);
    ad_conv_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad_node *y = ad_conv2d_bias(x, w, b, &o);
    ad_node *r = ad_const(g, 4, ad_shape(y), NULL, "r");
    fill_hashed(r, 89, 0);
    ad_node *loss = ad_sum(ad_mul(y, r), AD_ALL);
    cr_assert_not_null(loss, "%s", ad_graph_error(g));
    const size_t before = ad_graph_bytes(g);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    cr_assert_geq(ad_graph_bytes(g) - before, (size_t)(6 * 16 * 36 * 16) * sizeof(float));
    enum { NW = 16 * 16 * 9 };
    double first[NW], stale[NW], fresh[NW], again[NW];
    cr_assert_eq(ad_forward(g), 0); /* now y's forward keeps V */
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    ad_get_grad(w, first, NW);
    fill_hashed(x, 91, 0);
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    ad_get_grad(w, stale, NW);
    cr_assert_eq(ad_forward(g), 0);
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    ad_get_grad(w, fresh, NW);
    int differ = 0;
    for (int i = 0; i < NW; i++) {
        cr_assert_eq(stale[i], first[i], "w[%d]: %.9g vs %.9g", i, stale[i], first[i]);
        differ += fresh[i] != first[i];
    }
    cr_assert_gt(differ, NW / 2);
    ad_graph_free(g);
    /* the new images' gradient from a graph built on them */
    g = ad_graph_new(AD_F32);
    x = ad_param(g, 4, xs, "x");
    w = ad_param(g, 4, ws, "w");
    b = ad_param(g, 1, bs, "b");
    fill_hashed(x, 91, 0);
    fill_hashed(w, 83, 0);
    fill_hashed(b, 87, 0);
    y = ad_conv2d_bias(x, w, b, &o);
    r = ad_const(g, 4, ad_shape(y), NULL, "r");
    fill_hashed(r, 89, 0);
    cr_assert_eq(ad_backward(ad_sum(ad_mul(y, r), AD_ALL)), 0, "%s", ad_graph_error(g));
    ad_get_grad(w, again, NW);
    for (int i = 0; i < NW; i++)
        cr_assert_eq(fresh[i], again[i], "w[%d]: %.9g vs %.9g", i, fresh[i], again[i]);
    ad_graph_free(g);
}

/* Second order through the kept transform: s = ‖∂L/∂w‖² for
 * L = Σ R·tanh(conv(x, w)) at Winograd sizes (16 channels), whose ∂L/∂w is
 * conv_weight_grad(x, G, y) reading y's kept V, and (both) s = ‖∂L/∂w‖² +
 * ‖∂L/∂x‖² with both gradients from one build (∂L/∂w made by ∂L/∂x's node,
 * fuses_weight_grad); ∂s/∂x (by conv_transpose and through G) against
 * central differences in f64, after a replay with new x (so the kept V is
 * the replay's). */
static void winograd_second_order(int both)
{
    ad_graph *g = ad_graph_new(AD_F64);
    const int64_t xs[4] = {2, 16, 6, 7}, ws[4] = {16, 16, 3, 3};
    ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
    fill_hashed(x, 93, 0);
    fill_hashed(w, 95, 0);
    ad_conv_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad_node *y = ad_conv2d(x, w, &o);
    ad_node *R = ad_const(g, 4, ad_shape(y), NULL, "R");
    fill_hashed(R, 97, 0);
    ad_node *L = ad_sum(ad_mul(ad_tanh(ad_scale(y, 0.1)), R), AD_ALL);
    ad_node *gw, *s;
    if (both) { /* ∂L/∂x and ∂L/∂w from one build: the fused node */
        ad_node *wrt[2] = {x, w}, *out[2] = {NULL, NULL};
        cr_assert_eq(ad_grad_n(L, 2, wrt, out), 0, "%s", ad_graph_error(g));
        s = ad_add(ad_sum(ad_mul(out[1], out[1]), AD_ALL), ad_sum(ad_mul(out[0], out[0]), AD_ALL));
    } else {
        gw = ad_grad(L, w);
        s = ad_sum(ad_mul(gw, gw), AD_ALL);
    }
    ad_node *dsx = ad_grad(s, x);
    cr_assert_not_null(dsx, "%s", ad_graph_error(g));
    fill_hashed(x, 99, 0);
    cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
    const int64_t nx = ad_numel(x);
    double *an = malloc(sizeof(double) * (size_t)nx), *xv = ad_data(x);
    cr_assert_not_null(an);
    ad_get(dsx, an, nx);
    double norm = 0;
    for (int64_t i = 0; i < nx; i += 37) {
        const double h = 1e-5, old = xv[i];
        xv[i] = old + h;
        cr_assert_eq(ad_forward(g), 0);
        const double sp = ad_item(s);
        xv[i] = old - h;
        cr_assert_eq(ad_forward(g), 0);
        const double sm = ad_item(s);
        xv[i] = old;
        const double fd = (sp - sm) / (2 * h);
        cr_assert(fabs(fd - an[i]) <= 1e-6 * fmax(1, fabs(fd)), "both %d x[%lld]: %.12g vs %.12g",
                  both, (long long)i, an[i], fd);
        norm += fabs(an[i]);
    }
    cr_assert_gt(norm, 1e-3);
    free(an);
    ad_graph_free(g);
}

Test(second_order, input_gradient_of_winograd_weight_gradient_norm) { winograd_second_order(0); }
Test(second_order, input_gradient_of_winograd_fused_gradients_norm) { winograd_second_order(1); }

/* conv_weight_grad(x, g, y): y must be the convolution of x with the same
 * parameters and weight shape; 2 or 3 operands */
Test(conv, weight_gradient_operand_errors)
{
    ad_graph *g = ad_graph_new(AD_F32);
    const int64_t xs[4] = {2, 8, 6, 6}, ws[4] = {8, 8, 3, 3}, x2s[4] = {2, 8, 6, 6};
    ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
    ad_node *x2 = ad_param(g, 4, x2s, "x2");
    ad_conv_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad_node *y = ad_conv2d(x, w, &o), *y2 = ad_conv2d(x2, w, &o);
    cr_assert(y && y2);
    const int op = ad_op_find("conv_weight_grad");
    const int64_t ip[9] = {1, 1, 1, 1, 1, 1, 1, 3, 3};
    ad_node *in[4] = {x, y, y, y};
    ad_node *ok = ad_op_apply(op, 3, in, NULL, 0, ip, 9);
    cr_assert_not_null(ok, "%s", ad_graph_error(g));
    ad_node *two = ad_op_apply(op, 2, in, NULL, 0, ip, 9);
    cr_assert_not_null(two, "%s", ad_graph_error(g));
    double a[576], c[576];
    cr_assert_eq(ad_numel(ok), 576);
    ad_get(ok, a, 576);
    ad_get(two, c, 576);
    for (int i = 0; i < 576; i++)
        cr_assert_eq(a[i], c[i], "[%d]: %.9g vs %.9g", i, a[i], c[i]);
    in[2] = y2;
    expect_error(g, ad_op_apply(op, 3, in, NULL, 0, ip, 9),
                 "ad_conv_weight_grad: operand 3 must be the convolution of operand 1 (2,8,6,6) "
                 "with the same parameters and a weight of shape (8,8,3,3), or its input "
                 "gradient of operand 2, got conv node (2,8,6,6)");
    in[2] = w;
    expect_error(g, ad_op_apply(op, 3, in, NULL, 0, ip, 9),
                 "ad_conv_weight_grad: operand 3 must be the convolution of operand 1 (2,8,6,6) "
                 "with the same parameters and a weight of shape (8,8,3,3), or its input "
                 "gradient of operand 2, got param node (8,8,3,3)");
    expect_error(g, ad_op_apply(op, 1, in, NULL, 0, ip, 9),
                 "ad_conv_weight_grad: takes 2 operands (input, gradient) or 3 (and the "
                 "convolution), got 1");
    in[2] = y;
    expect_error(g, ad_op_apply(op, 4, in, NULL, 0, ip, 9),
                 "ad_conv_weight_grad: takes 2 operands (input, gradient) or 3 (and the "
                 "convolution), got 4");
    /* conv_transpose(g, w, y): y the convolution by w whose input gradient it is */
    const int tr = ad_op_find("conv_transpose");
    const int64_t it[9] = {1, 1, 1, 1, 1, 1, 1, 6, 6};
    ad_node *tin[4] = {y, w, y, y};
    ad_node *t3 = ad_op_apply(tr, 3, tin, NULL, 0, it, 9);
    ad_node *t2 = ad_op_apply(tr, 2, tin, NULL, 0, it, 9);
    cr_assert(t3 && t2, "%s", ad_graph_error(g));
    tin[2] = x2;
    expect_error(g, ad_op_apply(tr, 3, tin, NULL, 0, it, 9),
                 "ad_conv_transpose: operand 3 must be the convolution by operand 2 (8,8,3,3) of "
                 "an input of shape (2,8,6,6) with the same parameters, got param node "
                 "(2,8,6,6)");
    expect_error(g, ad_op_apply(tr, 1, tin, NULL, 0, it, 9),
                 "ad_conv_transpose: takes 2 operands (gradient, weight) or 3 (and the "
                 "convolution), got 1");
    ad_graph_free(g);
}

/* counts the allocator's allocations and growths */
static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    ++*(long *)ud;
    return realloc(ptr, nsize);
}

/* A Winograd training step allocates nothing once the backward pass is
 * built: the kept V, the fused node's dw and the scratch are reserved by
 * the shape rules (F(4×4) at 14×14, 16 channels, x a parameter: both
 * gradients in one node; with and without memory reuse). */
Test(conv, winograd_steps_allocate_nothing)
{
    for (int reuse = 0; reuse < 2; reuse++) {
        long calls = 0;
        ad_graph *g = ad_graph_new_with(AD_F32, counting_alloc, &calls);
        const int64_t xs[4] = {5, 16, 14, 14}, ws[4] = {16, 16, 3, 3}, bs[1] = {16};
        ad_graph_set_memory_reuse(g, reuse);
        ad_node *x = ad_param(g, 4, xs, "x"), *w = ad_param(g, 4, ws, "w");
        ad_node *b = ad_param(g, 1, bs, "b");
        fill_hashed(w, 101, 0);
        ad_conv_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
        ad_node *h = ad_conv2d_bias_relu_pool(x, w, b, &o);
        ad_node *loss = ad_sum(ad_mul(ad_conv2d_bias(h, w, b, &o), h), AD_ALL);
        cr_assert_not_null(loss, "%s", ad_graph_error(g));
        cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
        const long built = calls;
        for (int step = 0; step < 3; step++) {
            fill_hashed(x, 103 + (uint32_t)step, 0);
            cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
            ad_zero_grad(g);
            cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
        }
        cr_assert_eq(calls, built, "reuse %d: %ld allocations in 3 steps", reuse, calls - built);
        ad_graph_free(g);
    }
}
