/* A program outside the tree that uses installed chainrule: d/dx of x^3 at 2. */
#include <stdio.h>

#include <chainrule/autodiff.h>

int main(void)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 2.0, "x");
    ad_node *y = ad_pow(x, 3);
    if (ad_backward(y) != 0) {
        fprintf(stderr, "%s\n", ad_graph_error(g));
        return 1;
    }
    printf("y = %g, dy/dx = %g\n", ad_item(y), ad_grad_item(x));
    int ok = ad_item(y) == 8.0 && ad_grad_item(x) == 12.0;
    ad_graph_free(g);
    return ok ? 0 : 1;
}
