/* Functional layers, activations and losses: values at known points,
 * gradient checks against central differences (f64, through the engine),
 * straight-through steps, dropout, batch norm, initializers, the generator
 * and error messages. */
#include "test_nn_common.h"

/* A (3, 4) f64 parameter with values in [lo, hi) and a constant of weights c
 * so that sum(f(x) * c) exercises every output of f. */
typedef struct {
    ad_graph *g;
    ad_node *x, *c;
} bench;

static bench make_bench(double lo, double hi, unsigned seed)
{
    bench b;
    b.g = ad_graph_new(AD_F64);
    int64_t s[2] = {3, 4};
    b.x = ad_param(b.g, 2, s, "x");
    fill_pattern(b.x, seed, lo, hi);
    b.c = ad_input(b.g, 2, s, "c");
    fill_pattern(b.c, seed + 1, -1, 1);
    return b;
}

static ad_node *weighted_sum(bench *b, ad_node *y) { return ad_sum(ad_mul(y, b->c), AD_ALL); }

/* The graph's sticky error is want; clears it for the next check. */
static void assert_graph_error(ad_graph *g, const char *want)
{
    cr_assert_str_eq(ad_graph_error(g), want);
    ad_graph_clear_error(g);
}

/* --------------------------------------------------------------- values */

static double act_at(nn_activation a, double v)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, v, "x");
    double r = ad_item(nn_activate(x, a));
    ad_graph_free(g);
    return r;
}

Test(nn_activations, values_at_known_points)
{
    cr_assert_eq(act_at(NN_ACT_IDENTITY, -1.5), -1.5);
    cr_assert_eq(act_at(NN_ACT_STEP, -1e-300), 0.0);
    cr_assert_eq(act_at(NN_ACT_STEP, 0.0), 1.0, "heaviside(0) = 1 as in the lecture");
    cr_assert_eq(act_at(NN_ACT_STEP, 2.0), 1.0);
    cr_assert_eq(act_at(NN_ACT_SIGN, -3.0), -1.0);
    cr_assert_eq(act_at(NN_ACT_SIGN, 0.0), 0.0);
    cr_assert_eq(act_at(NN_ACT_SIGN, 0.5), 1.0);
    cr_assert_eq(act_at(NN_ACT_STEP_ST, -0.5), 0.0);
    cr_assert_eq(act_at(NN_ACT_SIGN_ST, -0.5), -1.0);
    cr_assert_float_eq(act_at(NN_ACT_SIGMOID, 0.0), 0.5, 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_SIGMOID, 2.0), 1 / (1 + exp(-2.0)), 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_TANH, 0.5), tanh(0.5), 1e-15);
    cr_assert_eq(act_at(NN_ACT_RELU, -2.0), 0.0);
    cr_assert_eq(act_at(NN_ACT_RELU, 2.0), 2.0);
    cr_assert_float_eq(act_at(NN_ACT_LEAKY_RELU, -2.0), -0.02, 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_ELU, -1.0), exp(-1.0) - 1, 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_SELU, 1.0), 1.0507009873554805, 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_SELU, -1.0),
                       1.0507009873554805 * 1.6732632423543772 * expm1(-1.0), 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_SOFTPLUS, 0.0), log(2.0), 1e-15);
    cr_assert_float_eq(act_at(NN_ACT_SOFTPLUS, 1e4), 1e4, 1e-9, "softplus does not overflow");
    cr_assert_eq(act_at(NN_ACT_SOFTPLUS, -1e4), 0.0);
    /* a 0-d tensor has one element along its (only) axis... softmax needs rows */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 3};
    double v[6] = {1, 2, 3, 1e4, 0, -1e4};
    ad_node *x = ad_const(g, 2, s, v, "x");
    double p[6], lp[6];
    cr_assert_eq(ad_get(nn_activate(x, NN_ACT_SOFTMAX), p, 6), 0);
    cr_assert_eq(ad_get(nn_activate(x, NN_ACT_LOG_SOFTMAX), lp, 6), 0);
    double z = exp(1) + exp(2) + exp(3);
    cr_assert_float_eq(p[0], exp(1) / z, 1e-15);
    cr_assert_float_eq(p[2], exp(3) / z, 1e-15);
    cr_assert_float_eq(p[3], 1.0, 1e-15);
    cr_assert_float_eq(lp[4], -1e4, 1e-9);
    cr_assert_float_eq(lp[5], -2e4, 1e-9);
    for (int i = 0; i < 6; i++)
        cr_assert(isfinite(lp[i]));
    ad_graph_free(g);
}

Test(nn_activations, custom_alpha)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, -2.0, "x");
    cr_assert_float_eq(ad_item(nn_activate_alpha(x, NN_ACT_LEAKY_RELU, 0.2)), -0.4, 1e-15);
    cr_assert_float_eq(ad_item(nn_activate_alpha(x, NN_ACT_ELU, 0.5)), 0.5 * expm1(-2.0), 1e-15);
    cr_assert_null(nn_activate(x, (nn_activation)99));
    assert_graph_error(g, "nn_activate: unknown activation 99");
    cr_assert_null(nn_activate(NULL, NN_ACT_RELU));
    ad_graph_free(g);
}

Test(nn_activations, names_round_trip)
{
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        const char *name = nn_activation_name((nn_activation)a);
        cr_assert_not_null(name);
        cr_assert_eq(nn_activation_from_name(name), a, "%s", name);
    }
    cr_assert_eq(nn_activation_from_name("linear"), NN_ACT_IDENTITY);
    cr_assert_eq(nn_activation_from_name("heaviside"), NN_ACT_STEP);
    cr_assert_eq(nn_activation_from_name("nope"), -1);
    cr_assert_null(nn_activation_name(NN_ACT_COUNT));
    for (int l = 0; l < NN_LOSS_COUNT; l++)
        cr_assert_eq(nn_loss_from_name(nn_loss_name((nn_loss)l)), l);
    for (int o = 0; o < NN_OPT_COUNT; o++)
        cr_assert_eq(nn_optim_from_name(nn_optim_name((nn_optim_kind)o)), o);
    for (int i = 0; i < NN_INIT_COUNT; i++)
        cr_assert_eq(nn_init_from_name(nn_init_name((nn_init)i)), i);
    for (int s = 0; s < NN_SCHED_COUNT; s++)
        cr_assert_eq(nn_schedule_from_name(nn_schedule_name((nn_schedule_kind)s)), s);
    cr_assert_eq(nn_init_from_name("kaiming_normal"), NN_INIT_HE_NORMAL);
    cr_assert_eq(nn_loss_from_name("ce"), NN_LOSS_CROSS_ENTROPY);
    cr_assert_eq(nn_optim_from_name("nesterov"), NN_OPT_SGD);
}

/* --------------------------------------------------------- gradient checks */

Test(nn_gradcheck, every_differentiable_activation)
{
    nn_activation acts[] = {NN_ACT_IDENTITY,   NN_ACT_STEP,    NN_ACT_SIGN,
                            NN_ACT_SIGMOID,    NN_ACT_TANH,    NN_ACT_RELU,
                            NN_ACT_LEAKY_RELU, NN_ACT_ELU,     NN_ACT_SELU,
                            NN_ACT_SOFTPLUS,   NN_ACT_SOFTMAX, NN_ACT_LOG_SOFTMAX};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        bench b = make_bench(-2.5, 2.5, 11 + (unsigned)i);
        ad_node *loss = weighted_sum(&b, nn_activate(b.x, acts[i]));
        cr_assert_not_null(loss, "%s: %s", nn_activation_name(acts[i]), ad_graph_error(b.g));
        grad_check(b.g, loss, &b.x, 1, 1e-6);
        ad_graph_free(b.g);
    }
}

Test(nn_gradcheck, straight_through_steps_pass_the_gradient)
{
    nn_activation st[] = {NN_ACT_STEP_ST, NN_ACT_SIGN_ST, NN_ACT_STEP, NN_ACT_SIGN};
    for (int k = 0; k < 4; k++) {
        bench b = make_bench(-1, 1, 3);
        ad_node *loss = weighted_sum(&b, nn_activate(b.x, st[k]));
        cr_assert_eq(ad_backward(loss), 0);
        double g[12], c[12];
        ad_get_grad(b.x, g, 12);
        ad_get(b.c, c, 12);
        for (int i = 0; i < 12; i++)
            cr_assert_eq(g[i], k < 2 ? c[i] : 0.0, "%s: d/dx[%d] = %g", nn_activation_name(st[k]),
                         i, g[i]);
        ad_graph_free(b.g);
    }
}

Test(nn_gradcheck, linear_with_and_without_bias)
{
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        ad_graph *g = ad_graph_new(AD_F64);
        int64_t xs[2] = {5, 3}, ws[2] = {3, 4}, bs = 4, os[2] = {5, 4};
        ad_node *x = ad_param(g, 2, xs, "x"), *w = ad_param(g, 2, ws, "w");
        ad_node *b = with_bias ? ad_param(g, 1, &bs, "b") : NULL;
        ad_node *c = ad_input(g, 2, os, "c");
        fill_pattern(x, 1, -1, 1);
        fill_pattern(w, 2, -1, 1);
        if (b)
            fill_pattern(b, 3, -1, 1);
        fill_pattern(c, 4, -1, 1);
        ad_node *y = nn_linear(x, w, b);
        cr_assert_not_null(y);
        cr_assert_eq(ad_ndim(y), 2);
        cr_assert_eq(ad_shape(y)[0], 5);
        cr_assert_eq(ad_shape(y)[1], 4);
        /* y[0][0] = sum_k x[0][k] w[k][0] + b[0] */
        double xv[15], wv[12], bv[4] = {0}, yv[20];
        ad_get(x, xv, 15);
        ad_get(w, wv, 12);
        if (b)
            ad_get(b, bv, 4);
        ad_get(y, yv, 20);
        cr_assert_float_eq(yv[0], xv[0] * wv[0] + xv[1] * wv[4] + xv[2] * wv[8] + bv[0], 1e-14);
        ad_node *leaves[3] = {x, w, b};
        grad_check(g, ad_sum(ad_mul(y, c), AD_ALL), leaves, with_bias ? 3 : 2, 1e-6);
        ad_graph_free(g);
    }
}

Test(nn_gradcheck, batch_norm_training_and_eval)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {6, 3}, fs = 3;
    ad_node *x = ad_param(g, 2, xs, "x"), *gamma = ad_param(g, 1, &fs, "gamma");
    ad_node *beta = ad_param(g, 1, &fs, "beta"), *c = ad_input(g, 2, xs, "c");
    double rmv[3] = {0.5, -0.2, 1.0}, rvv[3] = {2.0, 0.5, 1.5};
    ad_node *rm = ad_const(g, 1, &fs, rmv, "rm"), *rv = ad_const(g, 1, &fs, rvv, "rv");
    ad_node *flag = ad_const_scalar(g, 1.0, "training");
    fill_pattern(x, 5, -2, 3);
    fill_pattern(gamma, 6, 0.5, 1.5);
    fill_pattern(beta, 7, -0.5, 0.5);
    fill_pattern(c, 8, -1, 1);
    ad_node *bm = NULL, *bv = NULL;
    ad_node *y = nn_batch_norm(x, gamma, beta, rm, rv, flag, 1e-5, &bm, &bv);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    cr_assert_not_null(bm);
    cr_assert_not_null(bv);
    ad_node *loss = ad_sum(ad_mul(y, c), AD_ALL);
    ad_node *leaves[3] = {x, gamma, beta};
    grad_check(g, loss, leaves, 3, 1e-6);
    /* training: the normalized batch has mean beta and variance about gamma^2 */
    double yv[18], gv[3], btv[3];
    ad_get(y, yv, 18);
    ad_get(gamma, gv, 3);
    ad_get(beta, btv, 3);
    for (int j = 0; j < 3; j++) {
        double mean = 0, var = 0;
        for (int i = 0; i < 6; i++)
            mean += yv[i * 3 + j] / 6;
        for (int i = 0; i < 6; i++)
            var += (yv[i * 3 + j] - mean) * (yv[i * 3 + j] - mean) / 6;
        cr_assert_float_eq(mean, btv[j], 1e-12);
        cr_assert_float_eq(var, gv[j] * gv[j], 1e-4);
    }
    /* eval: the running statistics, and still a correct gradient */
    double zero = 0;
    ad_set(flag, &zero, 1);
    cr_assert_eq(ad_forward(g), 0);
    double xv[18];
    ad_get(x, xv, 18);
    ad_get(y, yv, 18);
    cr_assert_float_eq(yv[4], (xv[4] - rmv[1]) / sqrt(rvv[1] + 1e-5) * gv[1] + btv[1], 1e-12);
    grad_check(g, loss, leaves, 3, 1e-6);
    ad_graph_free(g);
}

Test(nn_gradcheck, every_loss)
{
    for (int l = NN_LOSS_MSE; l < NN_LOSS_COUNT; l++) {
        ad_graph *g = ad_graph_new(AD_F64);
        int64_t ps[2] = {5, 3}, ls = 5;
        ad_node *p = ad_param(g, 2, ps, "pred");
        fill_pattern(p, 20 + (unsigned)l, -3, 3);
        ad_node *t;
        if (l == NN_LOSS_CROSS_ENTROPY) {
            double labels[5] = {0, 2, 1, 1, 0};
            t = ad_const(g, 1, &ls, labels, "labels");
        } else {
            double tv[15];
            nn_rng r;
            nn_rng_seed(&r, 40 + (uint64_t)l);
            for (int i = 0; i < 15; i++) {
                double u = nn_rng_uniform(&r);
                tv[i] = l == NN_LOSS_HINGE        ? (u < 0.5 ? -1 : 1)
                        : l == NN_LOSS_PERCEPTRON ? (u < 0.5 ? 0 : 1)
                        : l == NN_LOSS_BCE_LOGITS ? u
                                                  : 4 * u - 2;
            }
            t = ad_const(g, 2, ps, tv, "targets");
        }
        ad_node *loss = nn_loss_apply((nn_loss)l, p, t);
        cr_assert_not_null(loss, "%s: %s", nn_loss_name((nn_loss)l), ad_graph_error(g));
        cr_assert_eq(ad_numel(loss), 1);
        grad_check(g, loss, &p, 1, 1e-6);
        ad_graph_free(g);
    }
}

Test(nn_losses, known_values)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 2}, ls = 2;
    double pv[4] = {1, 2, 3, 4}, tv[4] = {0, 2, 1, 1};
    ad_node *p = ad_const(g, 2, s, pv, "p"), *t = ad_const(g, 2, s, tv, "t");
    cr_assert_float_eq(ad_item(nn_mse(p, t)), (1 + 0 + 4 + 9) / 4.0, 1e-15);
    cr_assert_float_eq(ad_item(nn_half_sse(p, t)), 0.5 * (1 + 13) / 2.0, 1e-15);
    double lab[2] = {1, 0};
    ad_node *labels = ad_const(g, 1, &ls, lab, "labels");
    double ce = 0.5 * ((log(exp(1) + exp(2)) - 2) + (log(exp(3) + exp(4)) - 3));
    cr_assert_float_eq(ad_item(nn_cross_entropy(p, labels)), ce, 1e-14);
    double hv[4] = {1, -1, -1, 1}, sv[4] = {0.5, 0.5, -2, 3};
    ad_node *h = ad_const(g, 2, s, hv, "h"), *sc = ad_const(g, 2, s, sv, "s");
    cr_assert_float_eq(ad_item(nn_hinge(sc, h)), (0.5 + 1.5 + 0 + 0) / 4, 1e-15);
    double yv[4] = {0, 0, 1, 1};
    ad_node *y = ad_const(g, 2, s, yv, "y");
    /* misclassified: s = 0.5 (t 0) and s = -2 (t 1) */
    cr_assert_float_eq(ad_item(nn_perceptron_criterion(sc, y)), (0.5 + 0.5 + 2 + 0) / 2, 1e-15);
    double bt[4] = {1, 0, 0.5, 1};
    ad_node *b = ad_const(g, 2, s, bt, "b");
    double bce = 0;
    for (int i = 0; i < 4; i++)
        bce += log1p(exp(pv[i])) - bt[i] * pv[i];
    cr_assert_float_eq(ad_item(nn_bce_with_logits(p, b)), bce / 4, 1e-14);
    ad_graph_free(g);
}

Test(nn_losses, extreme_logits_stay_finite_in_both_dtypes)
{
    ad_dtype dts[2] = {AD_F64, AD_F32};
    for (int d = 0; d < 2; d++) {
        ad_graph *g = ad_graph_new(dts[d]);
        ad_graph_set_check_finite(g, 1);
        int64_t s[2] = {2, 3}, ls = 2;
        ad_node *z = ad_param(g, 2, s, "z");
        double zv[6] = {1e4, -1e4, 0, -1e4, 1e4, 5e3};
        ad_set(z, zv, 6);
        double lab[2] = {1, 2}, tv[6] = {1, 0, 1, 0, 1, 0};
        ad_node *labels = ad_const(g, 1, &ls, lab, "labels");
        ad_node *t = ad_const(g, 2, s, tv, "t");
        ad_node *ce = nn_cross_entropy(z, labels), *bce = nn_bce_with_logits(z, t);
        cr_assert_not_null(ce, "%s", ad_graph_error(g));
        cr_assert_not_null(bce, "%s", ad_graph_error(g));
        /* row 0: label 1 has logit -1e4, the max is 1e4: loss 2e4; row 1: 1e4 - 5e3 */
        cr_assert_float_eq(ad_item(ce), (2e4 + 5e3) / 2, 1e-6 * 2e4);
        /* softplus(z) - t z: 0, 0, ln 2, 0, 0, 5e3 */
        cr_assert_float_eq(ad_item(bce), (log(2.0) + 5e3) / 6, 1e-3);
        cr_assert_eq(ad_backward(ce), 0, "%s", ad_graph_error(g));
        cr_assert_eq(ad_backward(bce), 0, "%s", ad_graph_error(g));
        double gz[6];
        ad_get_grad(z, gz, 6);
        for (int i = 0; i < 6; i++)
            cr_assert(isfinite(gz[i]), "gradient %d is %g", i, gz[i]);
        cr_assert_null(ad_graph_error(g));
        ad_graph_free(g);
    }
}

Test(nn_losses, shape_errors_and_bad_class_index)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 3}, s2[2] = {2, 4}, ls = 2, l3 = 3;
    ad_node *p = ad_param(g, 2, s, "p"), *t = ad_input(g, 2, s2, "t");
    cr_assert_null(nn_mse(p, t));
    assert_graph_error(g, "nn_mse: prediction (2,3) and target (2,4) differ in shape");
    ad_node *bad_labels = ad_input(g, 1, &l3, "labels3");
    cr_assert_null(nn_cross_entropy(p, bad_labels));
    assert_graph_error(g, "nn_cross_entropy: labels (3) must hold one class index "
                          "per row of logits (2,3)");
    cr_assert_null(nn_loss_apply(NN_LOSS_NONE, p, t));
    assert_graph_error(g, "nn_loss_apply: 0 is not a loss");
    /* a class index out of range is caught by the engine's fused softmax
     * cross-entropy at forward time */
    ad_node *labels = ad_input(g, 1, &ls, "labels");
    ad_node *ce = nn_cross_entropy(p, labels);
    cr_assert_not_null(ce);
    double lab[2] = {0, 3};
    ad_set(labels, lab, 2);
    cr_assert_neq(ad_forward(g), 0);
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_softmax_cross_entropy: label 3 of row 1 is not a class in [0, 3)");
    ad_graph_free(g);
}

/* ------------------------------------------------------------------ layers */

Test(nn_layers, linear_mismatched_widths)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {2, 3}, ws[2] = {4, 5}, bs = 6, ok[2] = {3, 5};
    ad_node *x = ad_input(g, 2, xs, "x"), *w = ad_param(g, 2, ws, "w");
    cr_assert_null(nn_linear(x, w, NULL));
    assert_graph_error(g, "nn_linear: input (2,3) has 3 features but weight (4,5) "
                          "expects 4");
    ad_node *w2 = ad_param(g, 2, ok, "w2"), *b = ad_param(g, 1, &bs, "b");
    cr_assert_null(nn_linear(x, w2, b));
    assert_graph_error(g, "nn_linear: bias (6) does not match the 5 outputs of weight (3,5)");
    cr_assert_null(nn_linear(NULL, w2, NULL));
    cr_assert_null(nn_tlu(x, w2, NULL, NN_ACT_RELU));
    assert_graph_error(g, "nn_tlu: activation relu is not a step (step, sign, step_st, sign_st)");
    cr_assert_null(ad_graph_error(g));
    ad_graph_free(g);
}

/* Build everything, check the graph once: a layer's error is the graph's. */
Test(nn_layers, layer_errors_are_the_graphs_error)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {2, 3}, ws[2] = {4, 5}, bs = 5;
    ad_node *x = ad_input(g, 2, xs, "x"), *w = ad_param(g, 2, ws, "w");
    ad_node *b = ad_param(g, 1, &bs, "b");
    ad_node *loss = ad_sum(nn_activate(nn_linear(x, w, b), NN_ACT_RELU), AD_ALL);
    cr_assert_null(loss);
    cr_assert_str_eq(ad_graph_error(g),
                     "nn_linear: input (2,3) has 3 features but weight (4,5) expects 4");
    /* the first error is kept: a later one does not replace it */
    cr_assert_null(nn_dropout(x, 2.0, NULL));
    cr_assert_str_eq(ad_graph_error(g),
                     "nn_linear: input (2,3) has 3 features but weight (4,5) expects 4");
    ad_graph_free(g);
}

Test(nn_layers, tlu_is_step_of_weighted_sum)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {4, 2}, ws[2] = {2, 1}, bs = 1;
    double xv[8] = {0, 0, 0, 1, 1, 0, 1, 1}, wv[2] = {1, 1}, bv[1] = {-1.5};
    ad_node *x = ad_const(g, 2, xs, xv, "x");
    ad_node *w = ad_param(g, 2, ws, "w"), *b = ad_param(g, 1, &bs, "b");
    ad_set(w, wv, 2);
    ad_set(b, bv, 1);
    double and_[4], sgn[4];
    ad_get(nn_tlu(x, w, b, NN_ACT_STEP), and_, 4); /* logical AND */
    ad_get(nn_tlu(x, w, b, NN_ACT_SIGN), sgn, 4);
    double want_and[4] = {0, 0, 0, 1}, want_sign[4] = {-1, -1, -1, 1};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(and_[i], want_and[i]);
        cr_assert_eq(sgn[i], want_sign[i]);
    }
    ad_graph_free(g);
}

Test(nn_layers, dropout_train_and_eval)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_graph_seed(g, 7);
    int64_t s[2] = {100, 100};
    ad_node *x = ad_param(g, 2, s, "x");
    double *ones = malloc(sizeof(double) * 10000);
    for (int i = 0; i < 10000; i++)
        ones[i] = 1;
    ad_set(x, ones, 10000);
    ad_node *flag = ad_const_scalar(g, 1.0, "training");
    ad_node *y = nn_dropout(x, 0.25, flag);
    cr_assert_not_null(y);
    double *yv = malloc(sizeof(double) * 10000);
    ad_get(y, yv, 10000);
    int zeros = 0;
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        cr_assert(yv[i] == 0 || fabs(yv[i] - 1 / 0.75) < 1e-15, "value %g", yv[i]);
        zeros += yv[i] == 0;
        sum += yv[i];
    }
    cr_assert(zeros > 2300 && zeros < 2700, "%d of 10000 dropped at rate 0.25", zeros);
    cr_assert(fabs(sum / 10000 - 1) < 0.03, "inverted dropout keeps the mean: %g", sum / 10000);
    /* the gradient is the mask: d sum(x * m)/dx = m */
    ad_node *loss = ad_sum(y, AD_ALL);
    cr_assert_eq(ad_backward(loss), 0);
    double *gx = malloc(sizeof(double) * 10000);
    ad_get_grad(x, gx, 10000);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(gx[i], yv[i]);
    /* a new forward draws a new mask */
    cr_assert_eq(ad_forward(g), 0);
    double *y2 = malloc(sizeof(double) * 10000);
    ad_get(y, y2, 10000);
    cr_assert(memcmp(yv, y2, sizeof(double) * 10000) != 0);
    /* evaluation: identity */
    double zero = 0;
    ad_set(flag, &zero, 1);
    cr_assert_eq(ad_forward(g), 0);
    ad_get(y, y2, 10000);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(y2[i], 1.0);
    cr_assert_eq(nn_dropout(x, 0.0, flag), x, "rate 0 is the identity itself");
    cr_assert_null(nn_dropout(x, 1.0, flag));
    assert_graph_error(g, "nn_dropout: rate 1 is not in [0, 1)");
    free(ones);
    free(yv);
    free(gx);
    free(y2);
    ad_graph_free(g);
}

Test(nn_layers, batch_norm_errors)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {4, 3}, f4 = 4;
    ad_node *x = ad_input(g, 2, xs, "x"), *gamma = ad_param(g, 1, &f4, "gamma");
    cr_assert_null(nn_batch_norm(x, gamma, NULL, NULL, NULL, NULL, 1e-5, NULL, NULL));
    assert_graph_error(g, "nn_batch_norm: gamma (4) does not match input (4,3) (3 features)");
    cr_assert_null(nn_batch_norm(x, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL));
    assert_graph_error(g, "nn_batch_norm: eps 0 must be > 0");
    ad_node *flag = ad_const_scalar(g, 1.0, "training");
    cr_assert_null(nn_batch_norm(x, NULL, NULL, NULL, NULL, flag, 1e-5, NULL, NULL));
    assert_graph_error(g, "nn_batch_norm: evaluation mode needs the running statistics");
    ad_graph_free(g);
}

/* -------------------------------------------------------- generator, init */

Test(nn_rng, documented_sequence)
{
    nn_rng r;
    nn_rng_seed(&r, 42);
    /* splitmix64-seeded xoshiro256**, checked against an independent implementation */
    cr_assert_eq(nn_rng_next(&r), 0x15780b2e0c2ec716ULL);
    cr_assert_eq(nn_rng_next(&r), 0x6104d9866d113a7eULL);
    cr_assert_eq(nn_rng_next(&r), 0xae17533239e499a1ULL);
    cr_assert_eq(nn_rng_uniform(&r), 0.9246929453253876);
    nn_rng_seed(&r, 1);
    int counts[3] = {0};
    for (int i = 0; i < 3000; i++) {
        uint64_t k = nn_rng_below(&r, 3);
        cr_assert_lt(k, 3);
        counts[k]++;
    }
    for (int k = 0; k < 3; k++)
        cr_assert(counts[k] > 900 && counts[k] < 1100);
    double sum = 0, sq = 0;
    for (int i = 0; i < 20000; i++) {
        double z = nn_rng_normal(&r);
        sum += z;
        sq += z * z;
    }
    cr_assert(fabs(sum / 20000) < 0.03 && fabs(sq / 20000 - 1) < 0.05);
    int64_t idx[10];
    for (int i = 0; i < 10; i++)
        idx[i] = i;
    nn_rng_shuffle(&r, idx, 10);
    int seen = 0;
    for (int i = 0; i < 10; i++)
        seen |= 1 << idx[i];
    cr_assert_eq(seen, 1023, "a shuffle is a permutation");
}

Test(nn_rng, below_and_shuffle_are_the_one_rule)
{
    /* bound 2^63 + 1: raw draws below 2^64 mod bound = 2^63 - 1 are redrawn,
       the rule of io_data_rng_below (test_data.c) on this stream */
    const uint64_t bound = (UINT64_C(1) << 63) + 1;
    nn_rng r, raw;
    nn_rng_seed(&r, 7);
    nn_rng_seed(&raw, 7);
    for (int k = 0; k < 4; k++) {
        uint64_t x;
        do
            x = nn_rng_next(&raw);
        while (x < (UINT64_C(1) << 63) - 1);
        cr_assert_eq(nn_rng_below(&r, bound), x % bound, "draw %d", k);
    }
    cr_assert_eq(nn_rng_below(&r, 0), 0);
    /* Fisher-Yates from the top: swap idx[i] and idx[below(i + 1)] */
    int64_t idx[10], want[10];
    for (int i = 0; i < 10; i++)
        idx[i] = want[i] = i;
    nn_rng_seed(&r, 42);
    nn_rng_seed(&raw, 42);
    nn_rng_shuffle(&r, idx, 10);
    for (int i = 9; i > 0; i--) {
        int64_t j = (int64_t)nn_rng_below(&raw, (uint64_t)i + 1), t = want[i];
        want[i] = want[j];
        want[j] = t;
    }
    cr_assert_arr_eq(idx, want, sizeof idx);
    cr_assert_eq(nn_rng_next(&r), nn_rng_next(&raw), "the shuffle drew n - 1 bounded values");
}

Test(nn_init, bounds_scales_and_determinism)
{
    enum { N = 20000 };
    double *a = malloc(sizeof(double) * N), *b = malloc(sizeof(double) * N);
    float *f = malloc(sizeof(float) * N);
    const int64_t fi = 300, fo = 100;
    struct {
        nn_init kind;
        double limit, std;
    } cases[] = {
        {NN_INIT_GLOROT_UNIFORM, sqrt(6.0 / 400), 0}, {NN_INIT_GLOROT_NORMAL, 0, sqrt(2.0 / 400)},
        {NN_INIT_HE_UNIFORM, sqrt(6.0 / 300), 0},     {NN_INIT_HE_NORMAL, 0, sqrt(2.0 / 300)},
        {NN_INIT_LECUN_UNIFORM, sqrt(3.0 / 300), 0},  {NN_INIT_LECUN_NORMAL, 0, sqrt(1.0 / 300)},
        {NN_INIT_TORCH, 1 / sqrt(300.0), 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        nn_rng r1, r2, r3;
        nn_rng_seed(&r1, 9);
        nn_rng_seed(&r2, 9);
        nn_rng_seed(&r3, 9);
        cr_assert_eq(nn_init_fill(cases[c].kind, &r1, fi, fo, AD_F64, a, N, NULL), 0);
        cr_assert_eq(nn_init_fill(cases[c].kind, &r2, fi, fo, AD_F64, b, N, NULL), 0);
        cr_assert_eq(nn_init_fill(cases[c].kind, &r3, fi, fo, AD_F32, f, N, NULL), 0);
        cr_assert(memcmp(a, b, sizeof(double) * N) == 0, "same seed, same weights");
        double sq = 0, mx = 0;
        for (int i = 0; i < N; i++) {
            cr_assert_eq(f[i], (float)a[i], "f32 weights are the f64 ones rounded");
            sq += a[i] * a[i];
            mx = fmax(mx, fabs(a[i]));
        }
        double std = sqrt(sq / N);
        if (cases[c].limit > 0) {
            cr_assert(mx < cases[c].limit && mx > 0.99 * cases[c].limit, "%s: max %g limit %g",
                      nn_init_name(cases[c].kind), mx, cases[c].limit);
            cr_assert_float_eq(std, cases[c].limit / sqrt(3.0), 0.02 * cases[c].limit);
        } else {
            cr_assert_float_eq(std, cases[c].std, 0.02 * cases[c].std, "%s: std %g",
                               nn_init_name(cases[c].kind), std);
        }
    }
    /* the exact first Glorot-uniform draws for seed 42 (u = 0x15780b2e0c2ec716 >> 11 ...) */
    nn_rng r;
    nn_rng_seed(&r, 42);
    double w[2];
    nn_init_fill(NN_INIT_GLOROT_UNIFORM, &r, 2, 1, AD_F64, w, 2, NULL);
    double u0 = (double)(0x15780b2e0c2ec716ULL >> 11) * 0x1.0p-53;
    cr_assert_eq(w[0], (2 * u0 - 1) * sqrt(2.0));
    ad_error err;
    cr_assert_eq(nn_init_fill(NN_INIT_HE_NORMAL, &r, 0, 3, AD_F64, w, 2, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "nn_init_fill: fan_in 0 and fan_out 3 must be >= 1");
    free(a);
    free(b);
    free(f);
}

Test(nn_schedule, closed_forms_and_errors)
{
    nn_schedule s = nn_schedule_step(1.0, 2, 0.1);
    cr_assert_float_eq(nn_schedule_lr(&s, 0), 1.0, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 1), 1.0, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 2), 0.1, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 5), 0.01, 1e-15);
    nn_schedule c = nn_schedule_cosine(0.1, 4, 0.0);
    cr_assert_float_eq(nn_schedule_lr(&c, 2), 0.05, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&c, 4), 0.0, 1e-15);
    nn_schedule k = nn_schedule_constant(0.3);
    cr_assert_eq(nn_schedule_lr(&k, 100), 0.3);
    s.step_size = 0;
    cr_assert(isnan(nn_schedule_lr(&s, 3)));
    cr_assert(isnan(nn_schedule_lr(NULL, 3)));
}
