/* Basic engine behaviour: eager values, the single neuron, fan-out, errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "chainrule/autodiff.h"

Test(neuron, values_and_gradients_f64)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x1 = ad_scalar(g, 2.0, "x1"), *x2 = ad_scalar(g, 0.0, "x2");
    ad_node *w1 = ad_scalar(g, -3.0, "w1"), *w2 = ad_scalar(g, 1.0, "w2");
    ad_node *b = ad_scalar(g, 6.8813735870195432, "b");
    ad_node *n = ad_add(ad_add(ad_mul(x1, w1), ad_mul(x2, w2)), b);
    ad_node *o = ad_tanh(n);
    cr_assert_float_eq(ad_item(o), sqrt(0.5), 1e-12);
    cr_assert_eq(ad_backward(o), 0, "%s", ad_graph_error(g));
    cr_assert_float_eq(ad_grad_item(x1), -1.5, 1e-12);
    cr_assert_float_eq(ad_grad_item(w1), 1.0, 1e-12);
    cr_assert_float_eq(ad_grad_item(x2), 0.5, 1e-12);
    cr_assert_float_eq(ad_grad_item(w2), 0.0, 1e-12);
    cr_assert_float_eq(ad_grad_item(b), 0.5, 1e-12);
    cr_assert_null(ad_graph_error(g));
    ad_graph_free(g);
}
