/* Basic engine behaviour: eager values, the single neuron, fan-out, errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "chainrule/autodiff.h"
#include "test_neuron.h"

Test(neuron, values_and_gradients_f64)
{
    test_neuron t = test_neuron_new();
    ad_graph *g = t.g;
    ad_node *x1 = t.x1, *x2 = t.x2, *w1 = t.w1, *w2 = t.w2, *b = t.b, *o = t.o;
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
