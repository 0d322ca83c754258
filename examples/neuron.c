/* The classic single neuron o = tanh(x1*w1 + x2*w2 + b): build it, print the
 * output and the gradient of o with respect to every input and weight. */
#include <stdio.h>

#include <chainrule/autodiff.h>

int main(void)
{
    ad_graph *g = ad_graph_new(AD_F64);
    if (!g)
        return 1;
    ad_node *x1 = ad_scalar(g, 2.0, "x1");
    ad_node *x2 = ad_scalar(g, 0.0, "x2");
    ad_node *w1 = ad_scalar(g, -3.0, "w1");
    ad_node *w2 = ad_scalar(g, 1.0, "w2");
    ad_node *b = ad_scalar(g, 6.8813735870195432, "b");
    ad_node *n = ad_add(ad_add(ad_mul(x1, w1), ad_mul(x2, w2)), b);
    ad_node *o = ad_tanh(n);
    if (ad_backward(o) != 0) {
        fprintf(stderr, "error: %s\n", ad_graph_error(g));
        ad_graph_free(g);
        return 1;
    }
    printf("o = tanh(x1*w1 + x2*w2 + b) = %.4f\n", ad_item(o));
    ad_node *leaves[] = {x1, w1, x2, w2, b};
    for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++)
        printf("do/d%-2s = %+.4f\n", ad_node_name(leaves[i]), ad_grad_item(leaves[i]));
    ad_graph_free(g);
    return 0;
}
