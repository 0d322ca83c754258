/* Results and the thread count (ad_set_threads). Bit for bit the same with
 * 1, 2 and 3 threads: the bias gradient's sum over the batch (split by
 * columns), the softmax cross-entropy (rows in fixed chunks) and its
 * gradient (split by rows), the elementwise ops (test_gradcheck.c), and the
 * built-in GEMM kernel's products. Products by OpenBLAS and oneDNN are split
 * into blocks of rows or columns of C, never along k, but those libraries
 * pick their kernels and k-blocking by the block's shape, so a few shapes
 * differ in the last bits (docs/benchmarks.md, "Two threads"; on AVX2
 * oneDNN's gemm:jit differs for more shapes than on AVX-512): the products
 * are checked within the worst case of any order of their sums, the
 * training steps within a few f32 (f64) roundings. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "chainrule/autodiff.h"
#include "graph_impl.h" /* ad_gemm_held_entries: did the batched products run? */
#include "test_bound.h"

#define THREADS 3 /* 1, 2 and 3 threads */

/* Products split over threads equal one thread's bit for bit? */
static bool gemm_bit_identical(void) { return strcmp(ad_gemm_backend(), "builtin") == 0; }

/* b equals a, or is within a few roundings of it when the GEMM backend may
 * block the sums differently: within tol (1 + |a|), or, where bound is not
 * NULL, within bound[i] (a product's worst case for any order of its sums) */
static void assert_within(const void *a, const void *b, int64_t len, bool f64, const char *what,
                          int threads, const double *bound)
{
    if (gemm_bit_identical()) {
        cr_assert_eq(memcmp(a, b, (size_t)len * (f64 ? 8 : 4)), 0, "%s: %d threads differ", what,
                     threads);
        return;
    }
    const double tol = f64 ? 1e-13 : 1e-5;
    for (int64_t i = 0; i < len; i++) {
        double x = f64 ? ((const double *)a)[i] : ((const float *)a)[i];
        double y = f64 ? ((const double *)b)[i] : ((const float *)b)[i];
        double most = bound ? bound[i] : tol * (1 + fabs(x));
        cr_assert(fabs(x - y) <= most, "%s element %lld: %.17g, %d threads %.17g (bound %.3g)",
                  what, (long long)i, x, threads, y, most);
    }
}

static void assert_close(const void *a, const void *b, int64_t len, bool f64, const char *what,
                         int threads)
{
    assert_within(a, b, len, f64, what, threads, NULL);
}

static void fill(ad_node *n, double phase)
{
    const int64_t len = ad_numel(n);
    double *v = malloc(sizeof *v * (size_t)len);
    cr_assert_not_null(v);
    for (int64_t i = 0; i < len; i++)
        v[i] = sin(phase + 0.37 * (double)i) + 0.25 * cos(0.011 * (double)i);
    ad_set(n, v, len);
    free(v);
}

/* op(A) (m, k) op(B) (k, n) for every transpose pair: the products of the
 * MLP at batch 256 and 32 (split by rows, by columns, or too small to
 * split: from 2^17 multiply-adds, so the 10-column ones at batch 256 are
 * split by rows on two threads) and odd shapes whose blocks end off the
 * 16-row tiles; f32, and f64 for all but the two largest. */
static const int64_t gemm_shapes[][3] = {
    {256, 784, 300}, {256, 300, 100}, {256, 100, 10},  {784, 256, 300},
    {300, 256, 100}, {100, 256, 10},  {256, 100, 300}, {256, 10, 100},
    {32, 784, 300},  {130, 45, 67},   {20, 50, 200},   {7, 9, 5},
};

static void *product(ad_dtype dt, const int64_t *s, int ta, int tb, size_t *bytes)
{
    ad_graph *g = ad_graph_new(dt);
    int64_t as[2] = {ta ? s[1] : s[0], ta ? s[0] : s[1]};
    int64_t bs[2] = {tb ? s[2] : s[1], tb ? s[1] : s[2]};
    ad_node *a = ad_input(g, 2, as, "a"), *b = ad_input(g, 2, bs, "b");
    fill(a, 0.1);
    fill(b, 0.7);
    ad_node *c = ad_matmul_t(a, ta, b, tb);
    cr_assert_not_null(c, "%s", ad_graph_error(g));
    *bytes = (size_t)ad_numel(c) * (dt == AD_F32 ? sizeof(float) : sizeof(double));
    void *out = malloc(*bytes);
    cr_assert_not_null(out);
    memcpy(out, ad_data(c), *bytes);
    ad_graph_free(g);
    return out;
}

/* fill's value at index i, as the graph stores it */
static double filled(double phase, int64_t i, bool f64)
{
    double v = sin(phase + 0.37 * (double)i) + 0.25 * cos(0.011 * (double)i);
    return f64 ? v : (double)(float)v;
}

/* The most two orders of a product's sums can differ by, per element of
 * C = op(A) op(B) with A and B as product() fills them: each is within
 * gamma_k sum_k |a_ik| |b_kj| of the exact sum (test_bound.h), so they are
 * within twice that of each other */
static double *product_bound(bool f64, const int64_t *s, int ta, int tb)
{
    const int64_t m = s[0], k = s[1], n = s[2];
    const ad_dtype dt = f64 ? AD_F64 : AD_F32;
    const size_t es = f64 ? sizeof(double) : sizeof(float);
    void *a = malloc(es * (size_t)(m * k)), *b = malloc(es * (size_t)(k * n));
    double *bound = malloc(sizeof *bound * (size_t)(m * n));
    cr_assert(a && b && bound);
    for (int64_t i = 0; i < m * k; i++) /* as stored: (m, k), or (k, m) when ta */
        if (f64)
            ((double *)a)[i] = filled(0.1, i, true);
        else
            ((float *)a)[i] = (float)filled(0.1, i, false);
    for (int64_t i = 0; i < k * n; i++) /* (k, n), or (n, k) when tb */
        if (f64)
            ((double *)b)[i] = filled(0.7, i, true);
        else
            ((float *)b)[i] = (float)filled(0.7, i, false);
    cr_assert(product_magnitudes(dt, ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, bound));
    const double twice_gamma = 2 * rounding_gamma(k, unit_roundoff(dt));
    for (int64_t i = 0; i < m * n; i++)
        bound[i] *= twice_gamma;
    free(a);
    free(b);
    return bound;
}

Test(threads, matrix_products_split_over_threads)
{
    const int shapes = (int)(sizeof gemm_shapes / sizeof *gemm_shapes);
    for (int dt = 0; dt < 2; dt++)
        for (int s = 0; s < shapes; s++)
            for (int tr = 0; tr < 4; tr++) {
                const int64_t *sh = gemm_shapes[s];
                if (dt && sh[0] * sh[1] * sh[2] > 10000000)
                    continue; /* f64: the smaller shapes (time under sanitizers) */
                void *out[THREADS];
                size_t bytes = 0;
                for (int t = 0; t < THREADS; t++) {
                    ad_set_threads(t + 1);
                    out[t] = product(dt ? AD_F64 : AD_F32, gemm_shapes[s], tr & 1, tr >> 1, &bytes);
                }
                ad_set_threads(1);
                char what[64];
                snprintf(what, sizeof what, "%s m %lld k %lld n %lld ta %d tb %d",
                         dt ? "f64" : "f32", (long long)gemm_shapes[s][0],
                         (long long)gemm_shapes[s][1], (long long)gemm_shapes[s][2], tr & 1,
                         tr >> 1);
                double *bound = product_bound(dt, sh, tr & 1, tr >> 1);
                for (int t = 1; t < THREADS; t++)
                    assert_within(out[0], out[t], (int64_t)(bytes / (dt ? 8 : 4)), dt, what, t + 1,
                                  bound);
                free(bound);
                for (int t = 0; t < THREADS; t++)
                    free(out[t]);
            }
}

/* One training step of a 100-160-10 ReLU network on a batch of 300 rows,
 * or 128: the forward products, linear_relu's epilogue, the softmax
 * cross-entropy, and in the backward its gradient, the ReLU mask, the
 * products and the bias gradients (sums over the rows). Every gradient and
 * the loss, with each thread count. At 128 rows the hidden layer's 20,480
 * elements are split as elementwise loops (from 16,384) but not as the bias
 * gradient's sum (from 32,768), and the 10-column products (204,800
 * multiply-adds) are split by rows on two threads. At 40 rows the first
 * layer's product is split by columns (too few rows), so linear_relu's bias
 * copy and clamp run around it on the calling thread; at 300 and 128, by
 * rows, each thread's rows are copied, multiplied and clamped on it. */
enum { ROWS = 300, IN = 100, HID = 160, OUT = 10 };
typedef struct {
    float loss;
    float w1[IN * HID], b1[HID], w2[HID * OUT], b2[OUT];
} step_result;

/* The network on a batch of rows: its loss; its parameters in p (w1, b1, w2,
 * b2), given the values of `values` when not NULL. */
static ad_node *make_net_from(ad_graph *g, int rows, ad_node *p[4], const step_result *values)
{
    int64_t xs[2] = {rows, IN}, w1s[2] = {IN, HID}, b1s[1] = {HID}, w2s[2] = {HID, OUT},
            b2s[1] = {OUT}, ls[1] = {rows};
    ad_node *x = ad_input(g, 2, xs, "x"), *labels = ad_input(g, 1, ls, "labels");
    p[0] = ad_param(g, 2, w1s, "w1");
    p[1] = ad_param(g, 1, b1s, "b1");
    p[2] = ad_param(g, 2, w2s, "w2");
    p[3] = ad_param(g, 1, b2s, "b2");
    fill(x, 0.3);
    fill(p[0], 1.1);
    fill(p[1], 2.0);
    fill(p[2], 0.5);
    fill(p[3], 1.7);
    if (values) {
        const float *v[4] = {values->w1, values->b1, values->w2, values->b2};
        for (int k = 0; k < 4; k++)
            memcpy(ad_data(p[k]), v[k], sizeof(float) * (size_t)ad_numel(p[k]));
    }
    float *lv = ad_data(labels);
    for (int i = 0; i < rows; i++)
        lv[i] = (float)((i * 7) % OUT);
    ad_node *h = ad_linear_relu(x, p[0], p[1]);
    ad_node *loss = ad_softmax_cross_entropy(ad_linear(h, p[2], p[3]), labels);
    cr_assert_not_null(loss, "%s", ad_graph_error(g));
    return loss;
}

static ad_node *make_net(ad_graph *g, int rows, ad_node *p[4])
{
    return make_net_from(g, rows, p, NULL);
}

/* The loss, and the parameters' values (grads false) or gradients, into r. */
static void keep_result(step_result *r, ad_node *loss, ad_node *p[4], bool grads)
{
    r->loss = *(float *)ad_data(loss);
    float *dst[4] = {r->w1, r->b1, r->w2, r->b2};
    for (int k = 0; k < 4; k++)
        memcpy(dst[k], grads ? ad_grad_data(p[k]) : ad_data(p[k]),
               sizeof(float) * (size_t)ad_numel(p[k]));
}

static void train_step(step_result *r, int rows)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_node *p[4];
    ad_node *loss = make_net(g, rows, p);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    keep_result(r, loss, p, true);
    ad_graph_free(g);
}

Test(threads, a_training_step_with_any_thread_count)
{
    static step_result r[THREADS];
    const int batches[3] = {ROWS, 128, 40};
    for (int b = 0; b < 3; b++) {
        for (int t = 0; t < THREADS; t++) {
            ad_set_threads(t + 1);
            train_step(&r[t], batches[b]);
        }
        ad_set_threads(1);
        for (int t = 1; t < THREADS; t++) {
            assert_close(&r[0].loss, &r[t].loss, 1, false, "loss", t + 1);
            assert_close(r[0].w1, r[t].w1, IN * HID, false, "dw1", t + 1);
            assert_close(r[0].b1, r[t].b1, HID, false, "db1", t + 1);
            assert_close(r[0].w2, r[t].w2, HID * OUT, false, "dw2", t + 1);
            assert_close(r[0].b2, r[t].b2, OUT, false, "db2", t + 1);
        }
        cr_assert(r[0].loss > 0 && isfinite(r[0].loss), "%d rows: loss %g", batches[b],
                  (double)r[0].loss);
    }
}

/* Three planned steps of plain SGD taken inside the backward pass
 * (ad_backward_sgd: the weights' steps inside their gradients' products,
 * split like any product), at 300 rows: the weights after them. */
static void sgd_steps(step_result *r)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_graph_set_memory_reuse(g, 1);
    ad_node *p[4];
    ad_node *loss = make_net(g, ROWS, p);
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
        cr_assert_eq(ad_backward_sgd(loss, 0.05), 0, "%s", ad_graph_error(g));
    }
    keep_result(r, loss, p, false);
    ad_graph_free(g);
}

Test(threads, sgd_steps_inside_the_backward_pass)
{
    static step_result r[THREADS];
    for (int t = 0; t < THREADS; t++) {
        ad_set_threads(t + 1);
        sgd_steps(&r[t]);
    }
    ad_set_threads(1);
    for (int t = 1; t < THREADS; t++) {
        assert_close(&r[0].loss, &r[t].loss, 1, false, "loss", t + 1);
        assert_close(r[0].w1, r[t].w1, IN * HID, false, "w1", t + 1);
        assert_close(r[0].b1, r[t].b1, HID, false, "b1", t + 1);
        assert_close(r[0].w2, r[t].w2, HID * OUT, false, "w2", t + 1);
        assert_close(r[0].b2, r[t].b2, OUT, false, "b2", t + 1);
    }
    cr_assert(isfinite(r[0].loss) && r[0].loss > 0, "loss %g", (double)r[0].loss);
}

/* Backward nodes side by side on two threads (engine.c's groups): with
 * memory reuse the planned tape runs the output layer's input gradient and
 * ReLU mask on one thread beside its weight gradient and bias sum on the
 * other. At 8 rows every product is under the 2^17 multiply-adds from which
 * a product is split, so no kernel is split whatever the thread count. Two
 * steps (the second replays the planned tape) give the gradients; three SGD
 * steps inside the pass (ad_backward_sgd: the output layer's weight, read
 * beside its gradient product, steps after the pass) the weights. */
static void planned_steps(step_result *r, bool reuse, bool sgd)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_graph_set_memory_reuse(g, reuse);
    ad_node *p[4];
    ad_node *loss = make_net(g, 8, p);
    for (int step = 0; step < (sgd ? 3 : 2); step++) {
        cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
        ad_zero_grad(g);
        cr_assert_eq(sgd ? ad_backward_sgd(loss, 0.05) : ad_backward(loss), 0, "%s",
                     ad_graph_error(g));
    }
    keep_result(r, loss, p, !sgd);
    ad_graph_free(g);
}

/* planned_steps' three SGD steps taken apart: ad_backward_overwrite, then
 * value -= 0.05 gradient for each parameter. */
static void separate_steps(step_result *r)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_graph_set_memory_reuse(g, 1);
    ad_node *p[4];
    ad_node *loss = make_net(g, 8, p);
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
        cr_assert_eq(ad_backward_overwrite(loss), 0, "%s", ad_graph_error(g));
        for (int k = 0; k < 4; k++) {
            float *v = ad_data(p[k]);
            const float *d = ad_grad_data(p[k]);
            for (int64_t i = 0; i < ad_numel(p[k]); i++)
                v[i] += -0.05f * d[i];
        }
    }
    keep_result(r, loss, p, false);
    ad_graph_free(g);
}

/* b's loss and parameters (or gradients) equal a's bit for bit (exact), or
 * within assert_close's roundings */
static void assert_same(const step_result *a, const step_result *b, bool exact, const char *what,
                        int threads)
{
    const float *x[5] = {&a->loss, a->w1, a->b1, a->w2, a->b2};
    const float *y[5] = {&b->loss, b->w1, b->b1, b->w2, b->b2};
    const int64_t len[5] = {1, IN * HID, HID, HID * OUT, OUT};
    const char *name[5] = {"loss", "w1", "b1", "w2", "b2"};
    for (int k = 0; k < 5; k++) {
        char label[96];
        snprintf(label, sizeof label, "%s: %s", what, name[k]);
        if (exact)
            cr_assert_eq(memcmp(x[k], y[k], sizeof(float) * (size_t)len[k]), 0, "%s, %d threads",
                         label, threads);
        else
            assert_close(x[k], y[k], len[k], false, label, threads);
    }
}

/* With 2 and 3 threads the groups run side by side and give the same bits;
 * one thread gives the unplanned pass's bits; one thread against two: the
 * same bits with the built-in kernel, within a few roundings with a
 * library's (a clang build uses oneDNN only once the OpenMP runtime was
 * started for more than one thread: gemm.c, onednn_allowed). The SGD steps
 * equal the separate steps within roundings (the first layer's inside its
 * gradient's product; the output layer's weight, read by the input
 * gradient beside its own, after their group, shared by the threads). */
Test(threads, backward_nodes_side_by_side_give_the_same_bits)
{
    static step_result r[THREADS], unplanned, separate;
    ad_set_threads(1);
    planned_steps(&unplanned, false, false);
    for (int sgd = 0; sgd < 2; sgd++) {
        for (int t = 0; t < THREADS; t++) {
            ad_set_threads(t + 1);
            planned_steps(&r[t], true, sgd);
        }
        ad_set_threads(1);
        cr_assert(isfinite(r[0].loss) && r[0].loss > 0, "loss %g", (double)r[0].loss);
        const char *what =
            sgd ? "SGD steps against one thread" : "gradients against the unplanned pass";
        const step_result *one = sgd ? &r[0] : &unplanned;
        assert_same(one, &r[0], true, what, 1);
        assert_same(&r[1], &r[2], true, sgd ? "SGD steps, 2 threads" : "gradients, 2 threads", 3);
        assert_same(one, &r[1], gemm_bit_identical(), what, 2);
    }
    separate_steps(&separate);
    const float *x[4] = {separate.w1, separate.b1, separate.w2, separate.b2};
    const float *y[4] = {r[0].w1, r[0].b1, r[0].w2, r[0].b2};
    const int64_t len[4] = {IN * HID, HID, HID * OUT, OUT};
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < len[k]; i++)
            cr_assert(fabsf(x[k][i] - y[k][i]) <= 1e-5f * (1 + fabsf(x[k][i])),
                      "parameter %d[%lld]: SGD step %.9g, separate step %.9g", k, (long long)i,
                      (double)y[k][i], (double)x[k][i]);
}

/* The bias gradient of a linear layer is its upstream gradient summed over
 * the rows, each column in row order (the order one thread uses), in f32
 * and f64: 90 columns (blocks of a cache line of columns, the last one
 * overlapping the one before; split by columns on 2 and 3 threads), 16 (one
 * block, f64 two) and 7 (fewer than a block). */
Test(threads, bias_gradient_is_the_sum_over_the_batch_in_row_order)
{
    enum { R = 400 };
    const int64_t columns[3] = {90, 16, 7};
    for (int t = 1; t <= THREADS; t++)
        for (int dt = 0; dt < 2; dt++)
            for (int k = 0; k < 3; k++) {
                const int64_t C = columns[k];
                ad_set_threads(t);
                ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
                int64_t xs[2] = {R, 3}, ws[2] = {3, C}, bs[1] = {C}, ys[2] = {R, C};
                ad_node *x = ad_input(g, 2, xs, "x"), *w = ad_input(g, 2, ws, "w");
                ad_node *b = ad_param(g, 1, bs, "b"), *up = ad_input(g, 2, ys, "up");
                fill(x, 0.2);
                fill(w, 0.9);
                fill(up, 1.3);
                /* d(sum(linear(x, w, b) * up))/db = Σ_r up[r][c] */
                ad_node *y = ad_sum(ad_mul(ad_linear(x, w, b), up), AD_ALL);
                cr_assert_eq(ad_backward(y), 0, "%s", ad_graph_error(g));
                for (int64_t c = 0; c < C; c++) {
                    double s = 0, got;
                    if (dt) {
                        const double *u = ad_data(up);
                        for (int r = 0; r < R; r++)
                            s += u[r * C + c];
                        got = ((const double *)ad_grad_data(b))[c];
                    } else {
                        const float *u = ad_data(up);
                        float sf = 0;
                        for (int r = 0; r < R; r++)
                            sf += u[r * C + c];
                        s = sf;
                        got = ((const float *)ad_grad_data(b))[c];
                    }
                    cr_assert(got == s,
                              "%d threads, f%d, %lld columns, column %lld: %.17g vs %.17g", t,
                              dt ? 64 : 32, (long long)C, (long long)c, got, s);
                }
                ad_graph_free(g);
            }
    ad_set_threads(1);
}

/* Over 2,048 rows the loss's chunks hold more than 32 rows; the value is the
 * definition's within f32 rounding; it and the gradient are the same for
 * every thread count, and a bad label far down the batch is reported as
 * with one thread. */
Test(threads, softmax_cross_entropy_of_a_large_batch)
{
    enum { R = 3000, C = 10 };
    float loss[THREADS];
    static float grad[THREADS][R * C];
    for (int t = 0; t < THREADS; t++) {
        ad_set_threads(t + 1);
        ad_graph *g = ad_graph_new(AD_F32);
        int64_t zs[2] = {R, C}, ls[1] = {R};
        ad_node *z = ad_param(g, 2, zs, "z"), *l = ad_input(g, 1, ls, "labels");
        fill(z, 0.4);
        float *lv = ad_data(l);
        for (int i = 0; i < R; i++)
            lv[i] = (float)((i * 3) % C);
        ad_node *e = ad_softmax_cross_entropy(z, l);
        cr_assert_not_null(e, "%s", ad_graph_error(g));
        cr_assert_eq(ad_backward(e), 0, "%s", ad_graph_error(g));
        loss[t] = *(float *)ad_data(e);
        memcpy(grad[t], ad_grad_data(z), sizeof grad[t]);
        const float *zv = ad_data(z);
        double want = 0;
        for (int r = 0; r < R; r++) {
            double m = zv[r * C], s = 0;
            for (int c = 1; c < C; c++)
                m = fmax(m, zv[r * C + c]);
            for (int c = 0; c < C; c++)
                s += exp(zv[r * C + c] - m);
            want += m + log(s) - zv[r * C + (r * 3) % C];
        }
        want /= R;
        cr_assert_float_eq(loss[t], want, 1e-5 * fabs(want), "%d threads: %.9g vs %.9g", t + 1,
                           (double)loss[t], want);
        ad_graph_free(g);

        g = ad_graph_new(AD_F32);
        z = ad_input(g, 2, zs, "z");
        l = ad_input(g, 1, ls, "labels");
        lv = ad_data(l);
        for (int i = 0; i < R; i++)
            lv[i] = i == 2500 ? 10.0f : 1.0f;
        cr_assert_null(ad_softmax_cross_entropy(z, l));
        cr_assert_str_eq(
            ad_graph_error(g),
            "ad_softmax_cross_entropy: label 10 of row 2500 is not a class in [0, 10)");
        ad_graph_free(g);
    }
    ad_set_threads(1);
    for (int t = 1; t < THREADS; t++) {
        cr_assert_eq(memcmp(&loss[0], &loss[t], sizeof loss[0]), 0, "loss, %d threads", t + 1);
        cr_assert_eq(memcmp(grad[0], grad[t], sizeof grad[0]), 0, "gradient, %d threads", t + 1);
    }
}

/* A leaf's values set from 50,000 floats or doubles (copied by the threads
 * in blocks, over 32,768 elements) are the values given, converted to the
 * graph's type, whatever the thread count. */
Test(threads, a_large_input_is_set_whole)
{
    enum { N = 50000 };
    static float f[N];
    static double d[N];
    for (int i = 0; i < N; i++) {
        d[i] = sin(0.37 * i) * 1e3 + 1e-7 * i;
        f[i] = (float)d[i];
    }
    for (int t = 1; t <= THREADS; t++) {
        ad_set_threads(t);
        for (int dt = 0; dt < 2; dt++) {
            ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
            int64_t shape[2] = {N / 100, 100};
            ad_node *x = ad_input(g, 2, shape, "x"), *y = ad_input(g, 2, shape, "y");
            cr_assert_eq(ad_set_f32(x, f, N), 0, "%s", ad_graph_error(g));
            cr_assert_eq(ad_set(y, d, N), 0, "%s", ad_graph_error(g));
            for (int i = 0; i < N; i++) {
                const double xv =
                    dt ? ((const double *)ad_data(x))[i] : ((const float *)ad_data(x))[i];
                const double yv =
                    dt ? ((const double *)ad_data(y))[i] : ((const float *)ad_data(y))[i];
                cr_assert(xv == (double)f[i], "%d threads, f%d, x[%d] %.17g, set %.9g", t,
                          dt ? 64 : 32, i, xv, (double)f[i]);
                cr_assert(yv == (dt ? d[i] : (double)(float)d[i]), "%d threads, f%d, y[%d] %.17g",
                          t, dt ? 64 : 32, i, yv);
            }
            ad_graph_free(g);
        }
    }
    ad_set_threads(1);
}

/* Steps of one replayed graph whose weights change between passes, by its
 * SGD steps inside the backward pass and by the caller in place: every
 * pass's loss and gradients, and the weights after its step, are those of a
 * fresh graph built from the same values (computed as its nodes are made),
 * on 1, 2 and 3 threads, at 300 rows (the products split by rows on 2 and
 * 3 threads). A product that kept weights packed from one pass to the next
 * (ad_gemm_held does only within a hold) fails it. */
Test(threads, training_sees_every_change_of_the_weights)
{
    static step_result now, fresh, grads;
    for (int t = 1; t <= THREADS; t++) {
        ad_set_threads(t);
        ad_graph *g = ad_graph_new(AD_F32);
        ad_graph_set_memory_reuse(g, 1);
        ad_node *p[4];
        ad_node *loss = make_net(g, ROWS, p);
        for (int step = 0; step < 4; step++) {
            char what[64];
            snprintf(what, sizeof what, "step %d", step);
            keep_result(&now, loss, p, false); /* the values this pass reads */
            ad_graph *f = ad_graph_new(AD_F32);
            ad_node *q[4];
            ad_node *fl = make_net_from(f, ROWS, q, &now);
            cr_assert_eq(ad_backward(fl), 0, "%s", ad_graph_error(f));
            keep_result(&fresh, fl, q, true);
            ad_graph_free(f);
            cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
            const bool sgd = step % 2 == 1;
            cr_assert_eq(sgd ? ad_backward_sgd(loss, 0.05) : ad_backward_overwrite(loss), 0, "%s",
                         ad_graph_error(g));
            keep_result(&grads, loss, p, !sgd);
            if (sgd) { /* the weights after the step: value - 0.05 gradient */
                float *v[4] = {fresh.w1, fresh.b1, fresh.w2, fresh.b2};
                const float *w[4] = {now.w1, now.b1, now.w2, now.b2};
                for (int k = 0; k < 4; k++)
                    for (int64_t i = 0; i < ad_numel(p[k]); i++)
                        v[k][i] = w[k][i] - 0.05f * v[k][i];
            }
            const float *x[5] = {&fresh.loss, fresh.w1, fresh.b1, fresh.w2, fresh.b2};
            const float *y[5] = {&grads.loss, grads.w1, grads.b1, grads.w2, grads.b2};
            const int64_t len[5] = {1, IN * HID, HID, HID * OUT, OUT};
            for (int k = 0; k < 5; k++)
                for (int64_t i = 0; i < len[k]; i++)
                    cr_assert(fabsf(x[k][i] - y[k][i]) <= 1e-5f * (1 + fabsf(x[k][i])),
                              "%d threads, %s, %s %d[%lld]: %.9g, fresh graph %.9g", t, what,
                              sgd ? "value" : "gradient", k, (long long)i, (double)y[k][i],
                              (double)x[k][i]);
            /* the caller writes the weights in place before the next pass */
            float *w1 = ad_data(p[0]), *w2 = ad_data(p[2]);
            for (int64_t i = 0; i < IN * HID; i++)
                w1[i] = 0.9f * w1[i] + 0.01f * (float)(i % 5);
            for (int64_t i = 0; i < HID * OUT; i++)
                w2[i] = -w2[i];
        }
        ad_graph_free(g);
    }
    ad_set_threads(1);
}

/* A 3×3 convolution with bias, padding 1, of x (xs, a parameter when
 * x_grad, else an input) to o channels (with the ReLU when relu), and the
 * loss Σ r·y: the case the convolution tests below compute on 1–3 threads */
typedef struct {
    ad_node *x, *w, *b, *y, *loss;
} conv_case;

static conv_case conv_case_new(ad_graph *g, const int64_t xs[4], int64_t o, bool x_grad, bool relu)
{
    conv_case c;
    int64_t ws[4] = {o, xs[1], 3, 3}, bs[1] = {o};
    c.x = x_grad ? ad_param(g, 4, xs, "x") : ad_input(g, 4, xs, "x");
    c.w = ad_param(g, 4, ws, "w");
    c.b = ad_param(g, 1, bs, "b");
    fill(c.x, 0.3);
    fill(c.w, 1.1);
    fill(c.b, 2.7);
    ad_conv_opts opts = {{1, 1}, {1, 1}, {1, 1}, 1};
    c.y = relu ? ad_conv2d_bias_relu(c.x, c.w, c.b, &opts) : ad_conv2d_bias(c.x, c.w, c.b, &opts);
    cr_assert_not_null(c.y, "%s", ad_graph_error(g));
    ad_node *r = ad_const(g, 4, ad_shape(c.y), NULL, "r");
    fill(r, 0.8);
    c.loss = ad_sum(ad_mul(c.y, r), AD_ALL);
    return c;
}

/* A convolution's values and gradients (forward, dx and the weight gradient
 * fused into dx's pass from the forward's kept transform, and the bias's)
 * are the same bits on 1, 2 and 3 threads, in a first pass and a replayed
 * one: F(4×4, 3×3) Winograd, 16 -> 16 channels at 14×14 (chunks of 8 and 2
 * images). With oneDNN the products of a chunk run as batched products,
 * their batch split over the threads, each product whole on one thread
 * (gemm.c, ad_gemm_batched); elsewhere one by one, each whole on one
 * thread or split by rows or columns of C, never along k (with OpenBLAS
 * too: checked at 64 channels, the products split by columns). */
Test(threads, winograd_convolution_gives_the_same_bits)
{
    enum { N = 10, C = 16, O = 16, H = 14, W = 14 };
    enum { NY = N * O * H * W, NX = N * C * H * W, NW = O * C * 9 };
    static float y[THREADS][NY], dx[THREADS][NX], dw[THREADS][NW], db[THREADS][O];
    const bool onednn = strstr(ad_gemm_backend(), "onednn") != NULL;
    ad_set_threads(2); /* the OpenMP team set, as gemm.c's onednn_allowed wants */
    for (int t = 0; t < THREADS; t++) {
        ad_set_threads(t + 1);
        ad_graph *g = ad_graph_new(AD_F32);
        conv_case c = conv_case_new(g, (const int64_t[4]){N, C, H, W}, O, true, false);
        ad_node *x = c.x, *w = c.w, *b = c.b, *out = c.y, *loss = c.loss;
        cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) { /* replayed: the kept transform, the fused dw */
                cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
                cr_assert_eq(ad_backward_overwrite(loss), 0, "%s", ad_graph_error(g));
            }
            if (pass == 1 && t > 0) { /* the same as the first pass's */
                cr_assert_eq(memcmp(y[t], ad_data(out), sizeof y[t]), 0, "y, replayed");
                cr_assert_eq(memcmp(dx[t], ad_grad_data(x), sizeof dx[t]), 0, "dx, replayed");
                cr_assert_eq(memcmp(dw[t], ad_grad_data(w), sizeof dw[t]), 0, "dw, replayed");
            }
            memcpy(y[t], ad_data(out), sizeof y[t]);
            memcpy(dx[t], ad_grad_data(x), sizeof dx[t]);
            memcpy(dw[t], ad_grad_data(w), sizeof dw[t]);
            memcpy(db[t], ad_grad_data(b), sizeof db[t]);
        }
        if (onednn) /* the batched products ran: one entry per share at least */
            cr_assert_geq(ad_gemm_held_entries(g), 2 * (t + 1), "%d threads: %d entries", t + 1,
                          ad_gemm_held_entries(g));
        ad_graph_free(g);
    }
    ad_set_threads(1);
    for (int t = 1; t < THREADS; t++) {
        cr_assert_eq(memcmp(y[0], y[t], sizeof y[0]), 0, "y, %d threads", t + 1);
        cr_assert_eq(memcmp(dx[0], dx[t], sizeof dx[0]), 0, "dx, %d threads", t + 1);
        cr_assert_eq(memcmp(dw[0], dw[t], sizeof dw[0]), 0, "dw, %d threads", t + 1);
        cr_assert_eq(memcmp(db[0], db[t], sizeof db[0]), 0, "db, %d threads", t + 1);
    }
}

/* A convolution of few taps (one input channel by 3×3, the CNN's first
 * layer) computes its forward product with ops_conv.c's own kernel
 * (few_taps), split over the threads by blocks of 4 output channels, each
 * output the same sum whichever thread makes it: the values are the same
 * bits on 1, 2 and 3 threads, and so are the gradients of the weights and
 * the bias. */
Test(threads, few_taps_convolution_gives_the_same_bits)
{
    enum { N = 4, O = 32, H = 28, W = 28, NY = N * O * H * W, NW = O * 9 };
    static float y[THREADS][NY], dw[THREADS][NW], db[THREADS][O];
    for (int t = 0; t < THREADS; t++) {
        ad_set_threads(t + 1);
        ad_graph *g = ad_graph_new(AD_F32);
        conv_case c = conv_case_new(g, (const int64_t[4]){N, 1, H, W}, O, false, true);
        ad_node *w = c.w, *b = c.b, *out = c.y;
        cr_assert_eq(ad_backward(c.loss), 0, "%s", ad_graph_error(g));
        memcpy(y[t], ad_data(out), sizeof y[t]);
        memcpy(dw[t], ad_grad_data(w), sizeof dw[t]);
        memcpy(db[t], ad_grad_data(b), sizeof db[t]);
        ad_graph_free(g);
    }
    ad_set_threads(1);
    int64_t positive = 0;
    for (int64_t i = 0; i < NY; i++)
        positive += y[0][i] > 0;
    cr_assert(positive > NY / 4 && positive < NY, "%lld of %d outputs positive",
              (long long)positive, NY);
    for (int t = 1; t < THREADS; t++) {
        cr_assert_eq(memcmp(y[0], y[t], sizeof y[0]), 0, "y, %d threads", t + 1);
        cr_assert_eq(memcmp(dw[0], dw[t], sizeof dw[0]), 0, "dw, %d threads", t + 1);
        cr_assert_eq(memcmp(db[0], db[t], sizeof db[0]), 0, "db, %d threads", t + 1);
    }
}
