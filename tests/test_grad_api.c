/* Gradients for any node (ad_grad, ad_grad_n), forward mode (ad_jvp), dense
 * Jacobians and Hessians, and the gradient check (ad_gradcheck,
 * ad_finite_difference). PyTorch agreement for the same functions is in the
 * reference fixtures (grad_inputs, mlp_jacobian, ... in test_reference.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/autodiff.h"

/* A small net: X (4,3) input, W (3,5) param, c (5) const;
 * H = tanh(X @ W + c), y = sum(H * H * R) for a fixed R. */
typedef struct {
    ad_graph *g;
    ad_node *X, *W, *c, *R, *Z, *H, *y;
} net;

static double wave(int i, double a, double b) { return sin(a * i + b); }

static net make_net(ad_dtype dt)
{
    net m;
    m.g = ad_graph_new(dt);
    int64_t xs[2] = {4, 3}, ws[2] = {3, 5}, cs[1] = {5}, hs[2] = {4, 5};
    double v[20];
    m.X = ad_input(m.g, 2, xs, "X");
    for (int i = 0; i < 12; i++)
        v[i] = wave(i, 1.3, 0.2);
    ad_set(m.X, v, 12);
    m.W = ad_param(m.g, 2, ws, "W");
    for (int i = 0; i < 15; i++)
        v[i] = 0.6 * wave(i, 0.7, 1.1);
    ad_set(m.W, v, 15);
    for (int i = 0; i < 5; i++)
        v[i] = 0.1 * i - 0.2;
    m.c = ad_const(m.g, 1, cs, v, "c");
    for (int i = 0; i < 20; i++)
        v[i] = wave(i, 2.1, 0.4);
    m.R = ad_const(m.g, 2, hs, v, "R");
    m.Z = ad_add(ad_matmul(m.X, m.W), m.c);
    m.H = ad_tanh(m.Z);
    m.y = ad_sum(ad_mul(ad_mul(m.H, m.H), m.R), AD_ALL);
    cr_assert_not_null(m.y, "%s", ad_graph_error(m.g));
    return m;
}

static void get(ad_node *n, double *out)
{
    cr_assert_eq(ad_get(n, out, ad_numel(n)), 0, "%s", ad_graph_error(ad_node_graph(n)));
}

/* dy/dH = 2 H R, dy/dZ = 2 H R (1 - H^2), dy/dX = dy/dZ W^T, dy/dc = sum over rows. */
static void expected(const net *m, double *dH, double *dZ, double *dX, double *dc, double *dW)
{
    double H[20], R[20], W[15], X[12];
    get(m->H, H);
    get(m->R, R);
    get(m->W, W);
    get(m->X, X);
    for (int i = 0; i < 20; i++) {
        dH[i] = 2 * H[i] * R[i];
        dZ[i] = dH[i] * (1 - H[i] * H[i]);
    }
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 3; k++) {
            double s = 0;
            for (int j = 0; j < 5; j++)
                s += dZ[r * 5 + j] * W[k * 5 + j];
            dX[r * 3 + k] = s;
        }
    for (int j = 0; j < 5; j++) {
        dc[j] = 0;
        for (int r = 0; r < 4; r++)
            dc[j] += dZ[r * 5 + j];
    }
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 5; j++) {
            double s = 0;
            for (int r = 0; r < 4; r++)
                s += X[r * 3 + k] * dZ[r * 5 + j];
            dW[k * 5 + j] = s;
        }
}

static void assert_close(const double *got, const double *want, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])), "%s[%d]: %.17g vs %.17g",
                  what, i, got[i], want[i]);
}

/* ------------------------------------------------------- ad_grad, ad_grad_n */

Test(grad_any_node, inputs_constants_intermediates_and_leaves)
{
    net m = make_net(AD_F64);
    double dH[20], dZ[20], dX[12], dc[5], dW[15], got[20];
    expected(&m, dH, dZ, dX, dc, dW);
    ad_node *gX = ad_grad(m.y, m.X);
    cr_assert_not_null(gX, "%s", ad_graph_error(m.g));
    cr_assert_eq(ad_ndim(gX), 2);
    cr_assert_eq(ad_shape(gX)[0], 4);
    cr_assert_eq(ad_shape(gX)[1], 3);
    get(gX, got);
    assert_close(got, dX, 12, 1e-14, "dy/dX (input)");
    get(ad_grad(m.y, m.c), got);
    assert_close(got, dc, 5, 1e-14, "dy/dc (constant)");
    get(ad_grad(m.y, m.H), got);
    assert_close(got, dH, 20, 1e-14, "dy/dH (intermediate)");
    get(ad_grad(m.y, m.Z), got);
    assert_close(got, dZ, 20, 1e-14, "dy/dZ (intermediate)");
    get(ad_grad(m.y, m.W), got);
    assert_close(got, dW, 15, 1e-14, "dy/dW (trainable)");
    get(ad_grad(m.y, m.y), got);
    cr_assert_eq(got[0], 1.0);
    cr_assert_null(ad_graph_error(m.g));
    ad_graph_free(m.g);
}

Test(grad_any_node, zeros_only_without_dependence)
{
    net m = make_net(AD_F64);
    int64_t s[1] = {3};
    ad_node *unused = ad_input(m.g, 1, s, "unused");
    ad_node *later = ad_exp(m.X); /* made after y */
    ad_node *stepped = ad_sum(ad_step(m.X), AD_ALL);
    double got[12];
    ad_node *r[4];
    ad_node *xs[4] = {unused, later, m.X, m.R};
    cr_assert_eq(ad_grad_n(m.y, 4, xs, r), 0, "%s", ad_graph_error(m.g));
    get(r[0], got);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(got[i], 0.0);
    get(r[1], got);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(got[i], 0.0);
    get(r[2], got);
    double nz = 0;
    for (int i = 0; i < 12; i++)
        nz += fabs(got[i]);
    cr_assert_gt(nz, 0.1, "y depends on the input X");
    /* the step's derivative is 0 everywhere it is defined */
    get(ad_grad(stepped, m.X), got);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(got[i], 0.0);
    ad_graph_free(m.g);
}

Test(grad_any_node, grad_n_is_one_construction_equal_to_separate_calls)
{
    net m = make_net(AD_F64);
    ad_node *xs[5] = {m.X, m.W, m.c, m.H, m.Z}, *r[5];
    int64_t before = ad_graph_size(m.g);
    cr_assert_eq(ad_grad_n(m.y, 5, xs, r), 0, "%s", ad_graph_error(m.g));
    int64_t together = ad_graph_size(m.g) - before;
    before = ad_graph_size(m.g);
    ad_node *sep[5];
    for (int i = 0; i < 5; i++)
        sep[i] = ad_grad(m.y, xs[i]);
    int64_t separate = ad_graph_size(m.g) - before;
    cr_assert_lt(together, separate / 2, "one construction: %lld nodes, five: %lld",
                 (long long)together, (long long)separate);
    for (int i = 0; i < 5; i++) {
        double a[20], b[20];
        get(r[i], a);
        get(sep[i], b);
        for (int64_t j = 0; j < ad_numel(xs[i]); j++)
            cr_assert(a[j] == b[j], "xs[%d][%lld]", i, (long long)j);
    }
    /* the shared intermediate gradient: dy/dZ is reused by dy/dX, dy/dW, dy/dc */
    cr_assert_eq(ad_node_input(r[2], 0), r[4], "dy/dc sums dy/dZ over the rows");
    ad_graph_free(m.g);
}

Test(grad_any_node, backward_keeps_inputs_without_gradient_buffers)
{
    net m = make_net(AD_F64);
    ad_node *gX = ad_grad(m.y, m.X);
    cr_assert_not_null(gX);
    cr_assert_eq(ad_backward(m.y), 0);
    cr_assert_null(ad_grad_data(m.X), "ad_backward gives an input no gradient buffer");
    cr_assert_null(ad_grad_data(m.c));
    cr_assert_not_null(ad_grad_data(m.W));
    /* flags are as before: X @ W needs W's gradient; X alone needs nothing */
    cr_assert(!ad_node_requires_grad(m.X));
    cr_assert(ad_node_requires_grad(m.H));
    ad_node *xonly = ad_exp(m.X);
    cr_assert(!ad_node_requires_grad(xonly));
    /* the input gradient depends on W: it can be trained through */
    cr_assert(ad_node_requires_grad(gX));
    ad_graph_free(m.g);
}

/* A gradient penalty: P = sum((dy/dX)^2); ad_backward(P) reaches W through
 * the input gradient. Checked against central differences in W. */
Test(grad_any_node, gradient_penalty_trains_through_the_input_gradient)
{
    net m = make_net(AD_F64);
    ad_node *gX = ad_grad(m.y, m.X);
    ad_node *P = ad_sum(ad_mul(gX, gX), AD_ALL);
    cr_assert_eq(ad_backward(P), 0, "%s", ad_graph_error(m.g));
    double grad[15], w[15];
    cr_assert_eq(ad_get_grad(m.W, grad, 15), 0);
    get(m.W, w);
    for (int i = 0; i < 15; i++) {
        double h = 1e-6, w0 = w[i], up, down;
        w[i] = w0 + h;
        ad_set(m.W, w, 15);
        ad_forward(m.g);
        up = ad_item(P);
        w[i] = w0 - h;
        ad_set(m.W, w, 15);
        ad_forward(m.g);
        down = ad_item(P);
        w[i] = w0;
        ad_set(m.W, w, 15);
        double fd = (up - down) / (2 * h);
        cr_assert(fabs(fd - grad[i]) < 1e-6 * (1 + fabs(fd)), "dP/dW[%d]: %.12g vs fd %.12g", i,
                  grad[i], fd);
    }
    ad_graph_free(m.g);
}

Test(grad_any_node, second_order_with_respect_to_an_input)
{
    /* y = sum(sin(x) * x); dy/dx = cos(x) x + sin(x); d2 (diagonal) = 2 cos(x) - x sin(x) */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {4};
    double xv[4] = {-1.2, 0.3, 0.9, 2.0}, got[4];
    ad_node *x = ad_input(g, 1, s, "x");
    ad_set(x, xv, 4);
    ad_node *y = ad_sum(ad_mul(ad_sin(x), x), AD_ALL);
    ad_node *d1 = ad_grad(y, x);
    ad_node *d2 = ad_grad(ad_sum(d1, AD_ALL), x);
    get(d1, got);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(got[i], cos(xv[i]) * xv[i] + sin(xv[i]), 1e-15);
    get(d2, got);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(got[i], 2 * cos(xv[i]) - xv[i] * sin(xv[i]), 1e-15);
    /* replay with new input values */
    xv[0] = 0.5;
    ad_set(x, xv, 4);
    cr_assert_eq(ad_forward(g), 0);
    get(d2, got);
    cr_assert_float_eq(got[0], 2 * cos(0.5) - 0.5 * sin(0.5), 1e-15);
    ad_graph_free(g);
}

Test(grad_any_node, errors)
{
    net m = make_net(AD_F64);
    ad_graph *h = ad_graph_new(AD_F64);
    ad_node *other = ad_scalar(h, 1, "other"), *r[2] = {NULL, NULL};
    ad_node *xs[2] = {m.X, other};
    cr_assert_eq(ad_grad_n(m.y, 2, xs, r), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_grad_n: y and xs[1] belong to different graphs");
    cr_assert_null(r[0]);
    ad_graph_clear_error(m.g);
    cr_assert_null(ad_grad(m.y, other));
    cr_assert_str_eq(ad_graph_error(m.g), "ad_grad: y and xs[0] belong to different graphs");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_grad_n(m.H, 1, xs, r), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_grad_n: output '' (4,5) has 20 elements, expected 1");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_grad_n(m.y, 1, xs, NULL), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_grad_n: 1 nodes with xs set and out NULL");
    ad_graph_clear_error(m.g);
    xs[1] = NULL;
    cr_assert_eq(ad_grad_n(m.y, 2, xs, r), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_grad_n: xs[1] is NULL");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_grad_n(NULL, 1, xs, r), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_grad_n: y is NULL");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_grad_n(m.y, 0, NULL, NULL), 0, "no xs: nothing to do");
    ad_graph_free(h);
    ad_graph_free(m.g);
}
