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

/* A trainable vector of n elements sin(a i + b) (n <= 256). */
static ad_node *wave_param(ad_graph *g, int n, double a, double b, const char *name)
{
    double v[256];
    int64_t s[1] = {n};
    for (int i = 0; i < n; i++)
        v[i] = wave(i, a, b);
    ad_node *x = ad_param(g, 1, s, name);
    ad_set(x, v, n);
    return x;
}

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

/* ---------------------------------------------------------------- ad_jvp */

/* Central differences of every element of y along direction v in x
 * (x a leaf): (y(x + h v) - y(x - h v)) / 2h. */
static void fd_directional(ad_graph *g, ad_node *y, ad_node *x, const double *v, double *out)
{
    int64_t n = ad_numel(x), m = ad_numel(y);
    double *x0 = malloc(sizeof(double) * (size_t)n), *xp = malloc(sizeof(double) * (size_t)n);
    double *up = malloc(sizeof(double) * (size_t)m);
    get(x, x0);
    const double h = 1e-6;
    for (int64_t i = 0; i < n; i++)
        xp[i] = x0[i] + h * v[i];
    ad_set(x, xp, n);
    ad_forward(g);
    get(y, up);
    for (int64_t i = 0; i < n; i++)
        xp[i] = x0[i] - h * v[i];
    ad_set(x, xp, n);
    ad_forward(g);
    get(y, out);
    for (int64_t i = 0; i < m; i++)
        out[i] = (up[i] - out[i]) / (2 * h);
    ad_set(x, x0, n);
    ad_forward(g);
    free(up);
    free(xp);
    free(x0);
}

Test(jvp, matches_central_differences_for_inputs_and_params)
{
    net m = make_net(AD_F64);
    double vx[12], vw[15], jv[20], fdx[20], fdw[20];
    for (int i = 0; i < 12; i++)
        vx[i] = wave(i, 0.9, -0.3);
    for (int i = 0; i < 15; i++)
        vw[i] = wave(i, 1.7, 0.5);
    int64_t xs[2] = {4, 3}, ws[2] = {3, 5};
    ad_node *Vx = ad_const(m.g, 2, xs, vx, "vx"), *Vw = ad_const(m.g, 2, ws, vw, "vw");
    /* J v of the (4,5) hidden layer, one direction at a time and both at once */
    ad_node *xs1[1] = {m.X}, *vs1[1] = {Vx};
    ad_node *jx = ad_jvp(m.H, 1, xs1, vs1);
    cr_assert_not_null(jx, "%s", ad_graph_error(m.g));
    cr_assert_eq(ad_ndim(jx), 2);
    cr_assert_eq(ad_shape(jx)[0], 4);
    cr_assert_eq(ad_shape(jx)[1], 5);
    ad_node *both_x[2] = {m.X, m.W}, *both_v[2] = {Vx, Vw};
    ad_node *jb = ad_jvp(m.H, 2, both_x, both_v);
    cr_assert_not_null(jb, "%s", ad_graph_error(m.g));
    fd_directional(m.g, m.H, m.X, vx, fdx);
    fd_directional(m.g, m.H, m.W, vw, fdw);
    get(jx, jv);
    assert_close(jv, fdx, 20, 1e-8, "J_X v");
    get(jb, jv);
    for (int i = 0; i < 20; i++)
        fdx[i] += fdw[i];
    assert_close(jv, fdx, 20, 1e-8, "J_X vx + J_W vw");
    /* scalar output: J v = gradient · v */
    ad_node *ys[1] = {m.y};
    (void)ys;
    ad_node *jy = ad_jvp(m.y, 1, xs1, vs1);
    double gx[12], dot = 0;
    get(ad_grad(m.y, m.X), gx);
    for (int i = 0; i < 12; i++)
        dot += gx[i] * vx[i];
    cr_assert_float_eq(ad_item(jy), dot, 1e-13);
    ad_graph_free(m.g);
}

Test(jvp, is_differentiable_and_replays)
{
    /* y = x^3 elementwise: J v = 3 x^2 v; d/dx sum(J v) = 6 x v */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {3};
    double xv[3] = {0.5, -1.0, 2.0}, vv[3] = {1.0, 2.0, -0.5}, got[3];
    ad_node *x = ad_param(g, 1, s, "x"), *v = ad_const(g, 1, s, vv, "v");
    ad_set(x, xv, 3);
    ad_node *y = ad_pow(x, 3);
    ad_node *jv = ad_jvp(y, 1, &x, &v);
    get(jv, got);
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(got[i], 3 * xv[i] * xv[i] * vv[i], 1e-14);
    ad_node *d = ad_grad(ad_sum(jv, AD_ALL), x);
    get(d, got);
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(got[i], 6 * xv[i] * vv[i], 1e-14);
    xv[0] = 3;
    ad_set(x, xv, 3);
    cr_assert_eq(ad_forward(g), 0);
    get(jv, got);
    cr_assert_float_eq(got[0], 27.0, 1e-13);
    get(d, got);
    cr_assert_float_eq(got[0], 18.0, 1e-13);
    ad_graph_free(g);
}

Test(jvp, errors)
{
    net m = make_net(AD_F64);
    int64_t s[1] = {3};
    ad_node *v = ad_const(m.g, 1, s, NULL, "v");
    ad_node *xs[1] = {m.X}, *vs[1] = {v};
    cr_assert_null(ad_jvp(m.H, 1, xs, vs));
    cr_assert_str_eq(ad_graph_error(m.g), "ad_jvp: direction vs[0] (3) does not match xs[0] (4,3)");
    ad_graph_clear_error(m.g);
    cr_assert_null(ad_jvp(m.H, 1, xs, NULL));
    cr_assert_str_eq(ad_graph_error(m.g), "ad_jvp: 1 nodes with xs set and vs NULL");
    ad_graph_clear_error(m.g);
    ad_node *z = ad_jvp(m.H, 0, NULL, NULL);
    cr_assert_not_null(z);
    cr_assert_eq(ad_numel(z), 20);
    cr_assert_null(ad_jvp(NULL, 1, xs, vs));
    ad_graph_free(m.g);
}

/* ------------------------------------------------------ Jacobian, Hessian */

Test(jacobian, rows_are_the_gradients_of_each_output)
{
    net m = make_net(AD_F64);
    double J[20 * 12], row[12];
    int64_t size = ad_graph_size(m.g);
    cr_assert_eq(ad_jacobian(m.H, m.X, J), 0, "%s", ad_graph_error(m.g));
    cr_assert_eq(ad_graph_size(m.g), size, "the construction is discarded");
    /* dH[r][j]/dX[r'][k] = (1 - H^2)[r][j] W[k][j] if r == r' */
    double H[20], W[15];
    get(m.H, H);
    get(m.W, W);
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 5; j++)
            for (int r2 = 0; r2 < 4; r2++)
                for (int k = 0; k < 3; k++) {
                    double want = r == r2 ? (1 - H[r * 5 + j] * H[r * 5 + j]) * W[k * 5 + j] : 0;
                    cr_assert_float_eq(J[(r * 5 + j) * 12 + r2 * 3 + k], want, 1e-15);
                }
    /* a row is ad_grad of that output element */
    ad_node *e = ad_slice(ad_slice(m.H, 0, 2, 3), 1, 3, 4);
    get(ad_grad(ad_sum(e, AD_ALL), m.X), row);
    for (int k = 0; k < 12; k++)
        cr_assert_eq(J[(2 * 5 + 3) * 12 + k], row[k]);
    /* with respect to an intermediate: dH/dZ is diagonal */
    double D[20 * 20];
    cr_assert_eq(ad_jacobian(m.H, m.Z, D), 0);
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < 20; j++)
            cr_assert_float_eq(D[i * 20 + j], i == j ? 1 - H[i] * H[i] : 0, 1e-15);
    ad_graph_free(m.g);
}

/* A wide output of a narrow input: computed by columns (forward mode). */
Test(jacobian, by_columns_when_the_input_is_narrow)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {2, 1}, ws[2] = {30, 2};
    double xv[2] = {0.4, -0.7}, wv[60], J[60], t[30];
    for (int i = 0; i < 60; i++)
        wv[i] = wave(i, 0.61, 0.2);
    ad_node *x = ad_input(g, 2, xs, "x"), *W = ad_const(g, 2, ws, wv, "W");
    ad_set(x, xv, 2);
    ad_node *y = ad_tanh(ad_matmul(W, x)); /* (30,1) */
    int64_t size = ad_graph_size(g);
    cr_assert_eq(ad_jacobian(y, x, J), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_graph_size(g), size);
    get(y, t);
    for (int i = 0; i < 30; i++)
        for (int j = 0; j < 2; j++)
            cr_assert_float_eq(J[i * 2 + j], (1 - t[i] * t[i]) * wv[i * 2 + j], 1e-15);
    ad_graph_free(g);
}

Test(jacobian, hessian_is_symmetric_and_matches_hvp)
{
    net m = make_net(AD_F64);
    double Hs[15 * 15], hv[15], v[15];
    cr_assert_eq(ad_hessian(m.y, m.W, Hs), 0, "%s", ad_graph_error(m.g));
    for (int i = 0; i < 15; i++)
        for (int j = 0; j < 15; j++)
            cr_assert_float_eq(Hs[i * 15 + j], Hs[j * 15 + i], 1e-13);
    for (int i = 0; i < 15; i++)
        v[i] = wave(i, 0.3, 0.1);
    int64_t ws[2] = {3, 5};
    ad_node *V = ad_const(m.g, 2, ws, v, "v");
    get(ad_grad(ad_sum(ad_mul(ad_grad(m.y, m.W), V), AD_ALL), m.W), hv);
    for (int i = 0; i < 15; i++) {
        double s = 0;
        for (int j = 0; j < 15; j++)
            s += Hs[i * 15 + j] * v[j];
        cr_assert_float_eq(s, hv[i], 1e-13);
    }
    /* with respect to an input, in f32 too */
    net f = make_net(AD_F32);
    double Hx[144], Hx32[144];
    cr_assert_eq(ad_hessian(m.y, m.X, Hx), 0);
    cr_assert_eq(ad_hessian(f.y, f.X, Hx32), 0, "%s", ad_graph_error(f.g));
    for (int i = 0; i < 144; i++)
        cr_assert_float_eq(Hx32[i], Hx[i], 1e-4 * (1 + fabs(Hx[i])));
    ad_graph_free(f.g);
    ad_graph_free(m.g);
}

Test(jacobian, errors)
{
    net m = make_net(AD_F64);
    ad_graph *h = ad_graph_new(AD_F64);
    ad_node *other = ad_scalar(h, 1, "other");
    double out[400];
    cr_assert_eq(ad_hessian(m.H, m.X, out), -1);
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_hessian: output '' (4,5) has 20 elements, expected 1");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_jacobian(m.H, other, out), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_jacobian: y and x belong to different graphs");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_jacobian(m.H, m.X, NULL), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_jacobian: out is NULL");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_jacobian(NULL, m.X, out), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_jacobian: y is NULL");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_hessian(m.y, NULL, out), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_hessian: x is NULL");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_jacobian(NULL, NULL, out), -1);
    ad_graph_free(h);
    ad_graph_free(m.g);
}

/* ----------------------------------------------------------- gradcheck */

/* Every value and gradient buffer of the graph, to compare bit for bit. */
static double *snapshot(ad_graph *g, int64_t *count)
{
    int64_t total = 0, n = ad_graph_size(g);
    for (int64_t i = 0; i < n; i++)
        total += 2 * ad_numel(ad_graph_node(g, i));
    double *s = calloc((size_t)total + 1, sizeof(double));
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        ad_node *v = ad_graph_node(g, i);
        ad_get(v, s + at, ad_numel(v));
        at += ad_numel(v);
        if (ad_node_is_trainable(v))
            ad_get_grad(v, s + at, ad_numel(v));
        at += ad_numel(v);
    }
    *count = total;
    return s;
}

static void assert_same_snapshot(const double *a, const double *b, int64_t n)
{
    cr_assert_eq(memcmp(a, b, sizeof(double) * (size_t)n), 0, "a value changed");
}

Test(gradcheck, passes_on_correct_graphs_and_restores_every_value)
{
    net m = make_net(AD_F64);
    cr_assert_eq(ad_backward(m.y), 0);
    int64_t n0, n1;
    double *before = snapshot(m.g, &n0);
    int64_t size = ad_graph_size(m.g);
    ad_node *leaves[3] = {m.X, m.W, m.c};
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(m.y, 3, leaves, NULL, &r), 0, "max abs %g", r.max_abs_err);
    cr_assert_eq(r.checked, 12 + 15 + 5);
    cr_assert_lt(r.max_abs_err, 1e-8);
    cr_assert_lt(r.max_rel_err, 1e-6);
    cr_assert_not_null(r.worst_leaf);
    cr_assert_eq(ad_graph_size(m.g), size, "the analytic construction is discarded");
    double *after = snapshot(m.g, &n1);
    cr_assert_eq(n0, n1);
    assert_same_snapshot(before, after, n0);
    free(after);
    free(before);
    ad_graph_free(m.g);
}

/* Second order: a gradient penalty's gradient with respect to the weights
 * and the input, checked by differences of the penalty itself. */
Test(gradcheck, passes_through_an_input_gradient)
{
    net m = make_net(AD_F64);
    ad_node *gX = ad_grad(m.y, m.X);
    ad_node *P = ad_add(m.y, ad_sum(ad_mul(gX, gX), AD_ALL));
    ad_node *leaves[3] = {m.W, m.X, m.c};
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(P, 3, leaves, NULL, &r), 0, "max abs %g at %lld", r.max_abs_err,
                 (long long)r.worst_index);
    cr_assert_eq(r.checked, 32);
    cr_assert_lt(r.max_rel_err, 1e-6);
    ad_graph_free(m.g);
}

Test(gradcheck, f32_graph_passes_with_its_defaults)
{
    net m = make_net(AD_F32);
    ad_node *leaves[2] = {m.X, m.W};
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(m.y, 2, leaves, NULL, &r), 0, "max abs %g rel %g", r.max_abs_err,
                 r.max_rel_err);
    cr_assert_eq(r.checked, 27);
    cr_assert_lt(r.max_abs_err, 1e-2);
    ad_graph_free(m.g);
}

Test(gradcheck, fails_on_a_wrong_gradient_and_names_the_element)
{
    /* loss = sum(R * st(x, x^2)): the value of x^2, the gradient faked as 1 */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {5};
    double xv[5] = {0.5, 0.9, -0.2, 3.0, 0.1}, rv[5] = {1, 1, 1, 1, 1};
    ad_node *a = ad_param(g, 1, s, "a"), *x = ad_param(g, 1, s, "x");
    ad_set(a, rv, 5);
    ad_set(x, xv, 5);
    ad_node *R = ad_const(g, 1, s, rv, "R");
    ad_node *loss =
        ad_sum(ad_add(ad_mul(R, ad_straight_through(x, ad_mul(x, x))), ad_exp(a)), AD_ALL);
    ad_node *leaves[2] = {a, x};
    ad_gradcheck_result r;
    int64_t n0, n1;
    double *before = snapshot(g, &n0);
    cr_assert_eq(ad_gradcheck(loss, 2, leaves, NULL, &r), 1);
    /* d/dx_i = 2 x_i, the engine says 1. The largest error is at x = 3
     * (|6 - 1| = 5), the element furthest outside atol + rtol |2x| is x = 0.1
     * (0.8 against 2.1e-4); the largest relative error is at x = -0.2 (1.4 / 1) */
    cr_assert_eq(r.worst_leaf, x);
    cr_assert_eq(r.worst_index, 4);
    cr_assert_float_eq(r.max_abs_err, 5.0, 1e-6);
    cr_assert_float_eq(r.max_rel_err, 1.4, 1e-6);
    cr_assert_eq(r.checked, 10);
    double *after = snapshot(g, &n1);
    assert_same_snapshot(before, after, n0);
    /* a looser tolerance can let it pass */
    ad_gradcheck_opts o = {.atol = 10};
    cr_assert_eq(ad_gradcheck(loss, 2, leaves, &o, &r), 0);
    /* the first leaf alone is right */
    cr_assert_eq(ad_gradcheck(loss, 1, leaves, NULL, &r), 0);
    cr_assert_eq(r.worst_leaf, a);
    free(after);
    free(before);
    ad_graph_free(g);
}

Test(gradcheck, samples_large_leaves_with_a_seed)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {200};
    ad_node *x = wave_param(g, 200, 0.37, 0.0, "x");
    /* wrong gradient only at element 150: 3 x with a faked gradient 1 there */
    double mask[200] = {0};
    mask[150] = 1;
    ad_node *M = ad_const(g, 1, s, mask, "M");
    ad_node *fake = ad_straight_through(x, ad_scale(x, 3.0));
    ad_node *y = ad_sum(ad_add(ad_mul(M, fake), ad_mul(ad_affine(M, -1, 1), x)), AD_ALL);
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(y, 1, &x, NULL, &r), 1, "every element: 150 is found");
    cr_assert_eq(r.worst_index, 150);
    cr_assert_eq(r.checked, 200);
    uint64_t state[4], state2[4];
    ad_graph_rng_state(g, state);
    int found = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        ad_gradcheck_opts o = {.max_elements = 10, .seed = seed};
        ad_gradcheck_result a, b;
        int rc = ad_gradcheck(y, 1, &x, &o, &a);
        cr_assert_eq(ad_gradcheck(y, 1, &x, &o, &b), rc, "the same seed, the same sample");
        cr_assert_eq(a.checked, 10);
        cr_assert_eq(a.worst_index, b.worst_index);
        found += rc == 1;
        if (rc == 1)
            cr_assert_eq(a.worst_index, 150);
    }
    /* each sample holds element 150 with probability 1/20 */
    cr_assert(found >= 1 && found <= 6, "found in %d of 20 samples", found);
    ad_graph_rng_state(g, state2);
    cr_assert_eq(memcmp(state, state2, sizeof state), 0, "the graph's own generator is untouched");
    ad_graph_free(g);
}

Test(gradcheck, dropout_masks_are_not_redrawn)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_graph_seed(g, 7);
    ad_node *x = wave_param(g, 8, 1.0, 0.3, "x");
    ad_node *y = ad_sum(ad_tanh(ad_mul(x, ad_dropout_mask(x, 0.5))), AD_ALL);
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(y, 1, &x, NULL, &r), 0, "max abs %g", r.max_abs_err);
    cr_assert_lt(r.max_abs_err, 1e-8);
    ad_graph_free(g);
}

Test(gradcheck, finite_difference_estimator)
{
    net m = make_net(AD_F64);
    double dH[20], dZ[20], dX[12], dc[5], dW[15];
    expected(&m, dH, dZ, dX, dc, dW);
    int64_t n0, n1;
    double *before = snapshot(m.g, &n0);
    for (int i = 0; i < 12; i++)
        cr_assert_float_eq(ad_finite_difference(m.y, m.X, i, 0), dX[i], 1e-8);
    cr_assert_float_eq(ad_finite_difference(m.y, m.W, 7, 1e-5), dW[7], 1e-7);
    double *after = snapshot(m.g, &n1);
    assert_same_snapshot(before, after, n0);
    cr_assert(isnan(ad_finite_difference(m.y, m.H, 0, 0)));
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_finite_difference: x '' (tanh) is not a leaf: replay would overwrite its "
                     "value");
    ad_graph_clear_error(m.g);
    cr_assert(isnan(ad_finite_difference(m.y, m.X, 12, 0)));
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_finite_difference: index 12 is not in [0, 12) for 'X' (4,3)");
    ad_graph_free(m.g);
    free(after);
    free(before);
}

Test(gradcheck, errors)
{
    net m = make_net(AD_F64);
    ad_graph *h = ad_graph_new(AD_F64);
    ad_node *other = ad_scalar(h, 1, "other");
    ad_node *leaves[2] = {m.X, other};
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(m.y, 2, leaves, NULL, &r), -1);
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_gradcheck: loss and leaves[1] belong to different graphs");
    cr_assert_eq(r.checked, 0);
    cr_assert_eq(r.worst_index, -1);
    ad_graph_clear_error(m.g);
    leaves[1] = m.Z;
    cr_assert_eq(ad_gradcheck(m.y, 2, leaves, NULL, &r), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_gradcheck: leaves[1] '' (add) is not a leaf: replay "
                                          "would overwrite its value");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_gradcheck(m.H, 1, leaves, NULL, &r), -1);
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_gradcheck: loss '' (4,5) has 20 elements, expected 1");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_gradcheck(m.y, 1, NULL, NULL, &r), -1);
    cr_assert_str_eq(ad_graph_error(m.g), "ad_gradcheck: 1 leaves with leaves NULL");
    ad_graph_clear_error(m.g);
    cr_assert_eq(ad_gradcheck(NULL, 1, leaves, NULL, &r), -1);
    cr_assert_eq(ad_gradcheck(m.y, 1, leaves, NULL, NULL), 0, "the result is optional");
    ad_graph_free(h);
    ad_graph_free(m.g);
}

/* ---------------------------------------- through convolution and pooling */

/* conv2d (padding 1, 2 filters) -> tanh -> max_pool2d 2x2 -> weighted sum:
 * input gradients (saliency), the gradient check, Jacobian rows against
 * ad_grad, and a Hessian in the filters (second order through conv). */
Test(grad_any_node, convolution_and_pooling)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[4] = {2, 1, 4, 4}, ws[4] = {2, 1, 3, 3}, rs[4] = {2, 2, 2, 2};
    double v[32];
    ad_node *X = ad_input(g, 4, xs, "X"), *W = ad_param(g, 4, ws, "W");
    for (int i = 0; i < 32; i++)
        v[i] = wave(i, 1.9, 0.1);
    ad_set(X, v, 32);
    for (int i = 0; i < 18; i++)
        v[i] = 0.5 * wave(i, 0.8, 0.7);
    ad_set(W, v, 18);
    for (int i = 0; i < 16; i++)
        v[i] = wave(i, 2.3, 0.9);
    ad_node *R = ad_const(g, 4, rs, v, "R");
    ad_conv_opts co = {.padding = {1, 1}};
    ad_pool_opts po = {.kernel = {2, 2}};
    ad_node *P = ad_max_pool2d(ad_tanh(ad_conv2d(X, W, &co)), &po);
    ad_node *y = ad_sum(ad_mul(P, R), AD_ALL);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    ad_node *leaves[2] = {X, W};
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(y, 2, leaves, NULL, &r), 0, "max abs %g", r.max_abs_err);
    cr_assert_eq(r.checked, 50);
    /* a Jacobian row of the pooled map is the gradient of that element */
    double J[16 * 32], row[32];
    cr_assert_eq(ad_jacobian(P, X, J), 0, "%s", ad_graph_error(g));
    get(ad_grad(ad_sum(ad_slice(ad_reshape(P, 1, (int64_t[]){16}), 0, 5, 6), AD_ALL), X), row);
    for (int j = 0; j < 32; j++)
        cr_assert_eq(J[5 * 32 + j], row[j]);
    /* second order: the Hessian in the filters, symmetric, and d/dW of the
     * saliency norm by the gradient check */
    double H[18 * 18];
    cr_assert_eq(ad_hessian(y, W, H), 0, "%s", ad_graph_error(g));
    for (int i = 0; i < 18; i++)
        for (int j = 0; j < i; j++)
            cr_assert_float_eq(H[i * 18 + j], H[j * 18 + i], 1e-12);
    ad_node *sal = ad_grad(y, X);
    ad_node *pen = ad_sum(ad_mul(sal, sal), AD_ALL);
    cr_assert_eq(ad_gradcheck(pen, 1, &W, NULL, &r), 0, "max abs %g", r.max_abs_err);
    ad_graph_free(g);
}

/* Input gradients through the fused and shape ops: linear_relu, permute,
 * keepdims reductions, softmax_cross_entropy (first and second order, by the
 * gradient check), and the fused ops' rules skip nothing a caller asks for. */
Test(grad_any_node, fused_and_shape_ops)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {3, 4}, ws[2] = {4, 5}, bs[1] = {5}, ls[1] = {3};
    double v[20], labels[3] = {1, 4, 0};
    ad_node *X = ad_input(g, 2, xs, "X"), *W = ad_param(g, 2, ws, "W");
    ad_node *b = ad_const(g, 1, bs, NULL, "b"), *lab = ad_input(g, 1, ls, "labels");
    for (int i = 0; i < 12; i++)
        v[i] = wave(i, 1.3, 0.5);
    ad_set(X, v, 12);
    for (int i = 0; i < 20; i++)
        v[i] = 0.7 * wave(i, 0.9, 0.2);
    ad_set(W, v, 20);
    for (int i = 0; i < 5; i++)
        v[i] = 0.3 + 0.1 * i; /* keeps every unit of the ReLU away from its kink */
    ad_set(b, v, 5);
    ad_set(lab, labels, 3);
    ad_node *h = ad_linear_relu(X, W, b);                          /* (3,5) */
    ad_node *t = ad_permute(ad_unsqueeze(h, 0), (int[]){1, 2, 0}); /* (3,5,1) */
    ad_node *c = ad_sub(ad_squeeze(t, -1), ad_mean_keepdims(h, 1));
    ad_node *L = ad_softmax_cross_entropy(c, lab);
    cr_assert_not_null(L, "%s", ad_graph_error(g));
    ad_node *leaves[3] = {X, W, b};
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(L, 3, leaves, NULL, &r), 0, "max abs %g", r.max_abs_err);
    cr_assert_eq(r.checked, 12 + 20 + 5);
    ad_node *gX = ad_grad(L, X);
    ad_node *P = ad_add(L, ad_sum(ad_mul(gX, gX), AD_ALL));
    cr_assert_eq(ad_gradcheck(P, 3, leaves, NULL, &r), 0, "second order: max abs %g",
                 r.max_abs_err);
    ad_graph_free(g);
}
