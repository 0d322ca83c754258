/* test_neuron.h -- the lecture's neuron, o = tanh(x1·w1 + x2·w2 + b) at
 * x1 = 2, x2 = 0, w1 = -3, w2 = 1, b = 6.8813735870195432 (docs/teaching.md:
 * o = 1/√2), for the tests that compute, draw or step through it.
 * examples/teaching_pictures.c and examples/neuron.c keep their own copy on
 * purpose: an example is read on its own, as a user's first program, and
 * includes no test header. */
#ifndef CHAINRULE_TEST_NEURON_H
#define CHAINRULE_TEST_NEURON_H

#include "chainrule/autodiff.h"

typedef struct {
    ad_graph *g; /* owns every node; free with ad_graph_free */
    ad_node *x1, *x2, *w1, *w2, *b;
    ad_node *n; /* x1·w1 + x2·w2 + b, named "n" */
    ad_node *o; /* tanh(n), named "o" */
} test_neuron;

/* The neuron in a new f64 graph, forward only (the caller runs
   ad_backward(t.o) when it needs the gradients). */
static inline test_neuron test_neuron_new(void)
{
    test_neuron t;
    t.g = ad_graph_new(AD_F64);
    t.x1 = ad_scalar(t.g, 2.0, "x1");
    t.x2 = ad_scalar(t.g, 0.0, "x2");
    t.w1 = ad_scalar(t.g, -3.0, "w1");
    t.w2 = ad_scalar(t.g, 1.0, "w2");
    t.b = ad_scalar(t.g, 6.8813735870195432, "b");
    /* one statement per node: creation order (x1·w1 before x2·w2) is the
       order dumps and the stepper show */
    ad_node *x1w1 = ad_mul(t.x1, t.w1);
    ad_node *x2w2 = ad_mul(t.x2, t.w2);
    t.n = ad_add(ad_add(x1w1, x2w2), t.b);
    ad_node_set_name(t.n, "n");
    t.o = ad_tanh(t.n);
    ad_node_set_name(t.o, "o");
    return t;
}

#endif
