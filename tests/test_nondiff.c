/* Where the maths is not differentiable: the registry's nondiff rules
 * (ad_op_smoothness), their use on a graph (ad_smoothness_at) and the
 * gradient check's verdict, which expects a mismatch at a kink or a jump and
 * fails on one where the function is smooth. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"

static ad_smoothness at(const char *op, double a0, double b0)
{
    double a[1] = {a0}, b[1] = {b0};
    cr_assert_geq(ad_op_find(op), 0, "%s", op);
    return ad_op_smoothness(ad_op_find(op), a, b, NULL);
}

Test(nondiff, registry_rules_of_unary_ops)
{
    cr_assert_eq(at("relu", 0, 0), AD_KINK);
    cr_assert_eq(at("relu", -1e-6, 1e-6), AD_KINK, "a segment across the kink");
    cr_assert_eq(at("relu", 1e-6, -1e-6), AD_KINK, "either order");
    cr_assert_eq(at("relu", 1e-6, 2e-6), AD_SMOOTH);
    cr_assert_eq(at("abs", 0, 0), AD_KINK);
    cr_assert_eq(at("abs", -2, -1), AD_SMOOTH);
    cr_assert_eq(at("leaky_relu", 0, 0), AD_KINK);
    cr_assert_eq(at("step", 0, 0), AD_DISCONTINUITY);
    cr_assert_eq(at("step", -1, 1), AD_DISCONTINUITY);
    cr_assert_eq(at("step", 1, 2), AD_SMOOTH);
    cr_assert_eq(at("sign", 0, 0), AD_DISCONTINUITY);
    cr_assert_eq(at("tanh", 0, 0), AD_SMOOTH);
    cr_assert_eq(at("exp", -1, 1), AD_SMOOTH);
    /* b NULL: one point */
    double z = 0;
    cr_assert_eq(ad_op_smoothness(ad_op_find("relu"), &z, NULL, NULL), AD_KINK);
    /* parameters: elu is smooth at 0 only for alpha 1; clamp's bounds */
    double one[2] = {1, 0}, half[2] = {0.5, 0}, lohi[2] = {-1, 2};
    cr_assert_eq(ad_op_smoothness(ad_op_find("elu"), &z, &z, one), AD_SMOOTH);
    cr_assert_eq(ad_op_smoothness(ad_op_find("elu"), &z, &z, half), AD_KINK);
    double lo = -1, hi = 2, mid = 0.5;
    cr_assert_eq(ad_op_smoothness(ad_op_find("clamp"), &lo, &lo, lohi), AD_KINK);
    cr_assert_eq(ad_op_smoothness(ad_op_find("clamp"), &hi, &hi, lohi), AD_KINK);
    cr_assert_eq(ad_op_smoothness(ad_op_find("clamp"), &mid, &mid, lohi), AD_SMOOTH);
    /* out of range, no inputs */
    cr_assert_eq(ad_op_smoothness(-1, &z, &z, NULL), AD_SMOOTH);
    cr_assert_eq(ad_op_smoothness(ad_op_count(), &z, &z, NULL), AD_SMOOTH);
    cr_assert_eq(ad_op_smoothness(ad_op_find("relu"), NULL, NULL, NULL), AD_SMOOTH);
}

Test(nondiff, registry_rules_of_binary_ops)
{
    double tie[2] = {1, 1}, apart[2] = {1, 2}, left[2] = {1, 1 + 1e-9}, right[2] = {1, 1 - 1e-9};
    int max = ad_op_find("maximum"), min = ad_op_find("minimum"), gt = ad_op_find("gt");
    cr_assert_eq(ad_op_smoothness(max, tie, tie, NULL), AD_KINK);
    cr_assert_eq(ad_op_smoothness(min, tie, tie, NULL), AD_KINK);
    cr_assert_eq(ad_op_smoothness(max, left, right, NULL), AD_KINK, "the winner changes");
    cr_assert_eq(ad_op_smoothness(max, apart, apart, NULL), AD_SMOOTH);
    cr_assert_eq(ad_op_smoothness(gt, left, right, NULL), AD_DISCONTINUITY);
    cr_assert_eq(ad_op_smoothness(ad_op_find("eq"), tie, tie, NULL), AD_DISCONTINUITY);
    cr_assert_eq(ad_op_smoothness(ad_op_find("add"), tie, tie, NULL), AD_SMOOTH);
    cr_assert_eq(ad_op_smoothness(ad_op_find("mul"), tie, tie, NULL), AD_SMOOTH);
}

/* The values of every node, to compare before and after. */
static double *snapshot(ad_graph *g, int64_t *count)
{
    int64_t n = ad_graph_size(g), total = 0;
    for (int64_t i = 0; i < n; i++)
        total += ad_numel(ad_graph_node(g, i));
    double *s = malloc(sizeof(double) * (size_t)(total + 1));
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        ad_node *v = ad_graph_node(g, i);
        for (int64_t j = 0; j < ad_numel(v); j++)
            s[k++] = ((double *)ad_data(v))[j];
    }
    *count = total;
    return s;
}

Test(nondiff, smoothness_at_a_leaf_element)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {3};
    double xv[3] = {-1, 0.25, 2};
    ad_node *x = ad_param(g, 1, s, "x");
    ad_set(x, xv, 3);
    ad_node *b = ad_scalar(g, -0.25, "b"); /* broadcast: x + b is 0 at element 1 */
    ad_node *r = ad_relu(ad_add(x, b));
    ad_node *loss = ad_sum(ad_tanh(r), AD_ALL);
    cr_assert_not_null(loss, "%s", ad_graph_error(g));
    int64_t n0, n1;
    double *before = snapshot(g, &n0);
    const ad_node *where = (const ad_node *)1;
    cr_assert_eq(ad_smoothness_at(loss, x, 0, 0, &where), AD_SMOOTH);
    cr_assert_null(where);
    cr_assert_eq(ad_smoothness_at(loss, x, 1, 0, &where), AD_KINK);
    cr_assert_eq(where, r, "the relu node");
    cr_assert_eq(ad_smoothness_at(loss, x, 2, 0, NULL), AD_SMOOTH);
    cr_assert_eq(ad_smoothness_at(loss, b, 0, 0, &where), AD_KINK, "b moves element 1 too");
    /* within the step: 1e-9 from the kink, the step is 1e-6 */
    xv[1] = 0.25 + 1e-9;
    ad_set(x, xv, 3);
    cr_assert_eq(ad_forward(g), 0);
    free(before);
    before = snapshot(g, &n0);
    cr_assert_eq(ad_smoothness_at(loss, x, 1, 0, NULL), AD_KINK);
    cr_assert_eq(ad_smoothness_at(loss, x, 1, 1e-12, NULL), AD_SMOOTH, "a smaller step");
    double *after = snapshot(g, &n1);
    cr_assert_eq(n0, n1);
    cr_assert_eq(memcmp(before, after, sizeof(double) * (size_t)n0), 0, "values bit-identical");
    free(before);
    free(after);
    /* errors */
    cr_assert_eq(ad_smoothness_at(loss, x, 3, 0, NULL), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_smoothness_at: index 3 is not in [0, 3) for 'x' (3)");
    ad_graph_free(g);
    g = ad_graph_new(AD_F64);
    ad_node *y = ad_scalar(g, 1, "y");
    ad_node *t = ad_tanh(y);
    cr_assert_eq(ad_smoothness_at(ad_tanh(t), t, 0, 0, NULL), -1);
    cr_assert_not_null(strstr(ad_graph_error(g), "ad_smoothness_at: x '' (tanh) is not a leaf"),
                       "%s", ad_graph_error(g));
    cr_assert_eq(ad_smoothness_at(NULL, NULL, 0, 0, NULL), -1);
    ad_graph_free(g);
}

Test(nondiff, step_in_f32_is_a_discontinuity)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_node *x = ad_scalar(g, 0, "x");
    ad_node *loss = ad_add(ad_step(x), ad_mul(x, x));
    const ad_node *where = NULL;
    cr_assert_eq(ad_smoothness_at(loss, x, 0, 0, &where), AD_DISCONTINUITY);
    cr_assert_eq(ad_node_op(where), ad_op_find("step"));
    ad_graph_free(g);
}

/* The verdict: mismatches at kinks are counted and expected; one at a smooth
   point fails (detach: the engine's gradient of x·detach(x) is x, not 2x). */
Test(nondiff, gradcheck_verdict)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {4};
    double xv[4] = {-1, 0, 0.5, 0};
    ad_node *x = ad_param(g, 1, s, "x");
    ad_set(x, xv, 4);
    ad_node *loss = ad_sum(ad_add(ad_relu(x), ad_abs(x)), AD_ALL);
    ad_gradcheck_result r;
    cr_assert_eq(ad_gradcheck(loss, 1, &x, NULL, &r), 0, "kinks only");
    cr_assert_eq(r.checked, 4);
    cr_assert_eq(r.nondifferentiable, 2, "elements 1 and 3");
    cr_assert_eq(r.failed, 0);
    cr_assert_float_eq(r.max_abs_err, 0.5, 1e-6, "relu's 0 against 0.5, abs's 0 against 0");
    ad_node *y = ad_scalar(g, 3, "y");
    ad_node *wrong = ad_add(loss, ad_mul(y, ad_detach(y)));
    ad_node *leaves[2] = {x, y};
    cr_assert_eq(ad_gradcheck(wrong, 2, leaves, NULL, &r), 1);
    cr_assert_eq(r.failed, 1);
    cr_assert_eq(r.nondifferentiable, 2);
    cr_assert_eq(r.worst_leaf, y);
    cr_assert_eq(ad_smoothness_at(wrong, y, 0, 0, NULL), AD_SMOOTH, "a real mismatch");
    ad_graph_free(g);
}

/* The trace's check uses the same classification as ad_gradcheck. */
static char *trace_of(ad_node *loss, unsigned flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(ad_trace(loss, f, flags), 0, "%s", ad_graph_error(ad_node_graph(loss)));
    fclose(f);
    return buf;
}

Test(nondiff, trace_check_labels_the_leaves)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0, "x"), *y = ad_scalar(g, 3, "y"), *z = ad_scalar(g, 0, "z");
    ad_node *r = ad_relu(x);                 /* t1 */
    ad_node *d = ad_detach(y);               /* t2 */
    ad_node *yd = ad_mul(y, d);              /* t3 */
    ad_node *sum = ad_add(r, yd);            /* t4 */
    ad_node *loss = ad_add(sum, ad_step(z)); /* t5, t6 */
    cr_assert_eq(ad_backward(loss), 0);
    char *t = trace_of(loss, AD_TRACE_CHECK);
    cr_assert_not_null(strstr(t, "  ∂L/∂x = 0   finite difference 0.5 (|diff| 0.5): kink of relu "
                                 "at t1, expected there\n"),
                       "%s", t);
    cr_assert_not_null(strstr(t, "  ∂L/∂y = 3   finite difference 6 (|diff| 3): MISMATCH\n"), "%s",
                       t);
    cr_assert_not_null(strstr(t, "finite difference 500000 (|diff| 5e+05): discontinuity of step "
                                 "at t5, expected there\n"),
                       "%s", t);
    free(t);
    t = trace_of(loss, AD_TRACE_CHECK | AD_TRACE_JSON);
    cr_assert_not_null(strstr(t, "\"check\": \"kink\""), "%s", t);
    cr_assert_not_null(strstr(t, "\"check\": \"mismatch\""), "%s", t);
    cr_assert_not_null(strstr(t, "\"check\": \"discontinuity\""), "%s", t);
    free(t);
    ad_graph_free(g);
}

/* The dumps' names, through the library (chainrule grad's messages use it). */
Test(nondiff, dump_symbol)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.5, "x"), *w = ad_scalar(g, 2, "w");
    ad_node *t1 = ad_mul(x, w);
    ad_node *n = ad_add(t1, ad_const_scalar(g, 1, NULL));
    ad_node_set_name(n, "n");
    ad_node *o = ad_tanh(n);
    char buf[64];
    cr_assert_eq(ad_dump_symbol(o, t1, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "t1");
    cr_assert_eq(ad_dump_symbol(o, n, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "n");
    cr_assert_eq(ad_dump_symbol(o, o, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "t2");
    cr_assert_eq(ad_dump_symbol(o, ad_node_input(n, 1), buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "1", "an unnamed scalar constant is its value");
    cr_assert_eq(ad_dump_symbol(o, x, buf, 1), 0);
    cr_assert_str_eq(buf, "", "cut to the buffer");
    cr_assert_eq(ad_dump_symbol(o, NULL, buf, sizeof buf), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_dump_symbol: no node");
    ad_graph *h = ad_graph_new(AD_F64);
    ad_node *other = ad_scalar(h, 1, "other");
    ad_graph_clear_error(g);
    cr_assert_eq(ad_dump_symbol(o, other, buf, sizeof buf), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_dump_symbol: the node belongs to another graph");
    ad_graph_free(h);
    ad_graph_free(g);
}

/* Only elementwise ops have non-differentiable points in the registry: every
   other op says AD_SMOOTH (the classification reads elementwise inputs). */
Test(nondiff, only_elementwise_ops_have_rules)
{
    double z[3] = {0, 0, 0}, params[2] = {0, 0};
    int with_rule = 0;
    for (int op = 0; op < ad_op_count(); op++) {
        ad_smoothness k = ad_op_smoothness(op, z, z, params);
        ad_op_kind kind = ad_op_kind_of(op);
        bool elementwise = kind == AD_KIND_UNARY || kind == AD_KIND_BINARY ||
                           kind == AD_KIND_TERNARY || kind == AD_KIND_INTERNAL;
        if (k != AD_SMOOTH) {
            with_rule++;
            cr_assert(elementwise, "%s is not elementwise but has a nondiff rule", ad_op_name(op));
            cr_assert(ad_op_arity(op) >= 1 && ad_op_arity(op) <= 3, "%s", ad_op_name(op));
        }
    }
    /* relu abs leaky_relu elu clamp clamp_mask step sign maximum minimum eq gt relu_grad
       (elu and clamp need their parameters: at 0 with zeros they are a kink too) */
    cr_assert_geq(with_rule, 12, "%d ops", with_rule);
}
