/* dump_impl.h -- dump.c's model of a backward pass, read by the stepper
 * page (dump_html.c). Internal: never installed. */
#ifndef CHAINRULE_DUMP_IMPL_H
#define CHAINRULE_DUMP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"

/* An ad_dump_dot flag the public header does not offer: every node gets the
 * id "n<id>" and the edge from input k of user u the id "n<u>_in<k>", which
 * Graphviz keeps in its SVG (the stepper page finds them there). */
#define DUMP_ELEMENT_IDS (1u << 30)

/* The dumps' reading of the backward pass through one loss: the step at which
 * the engine visits each node, symbols, gradients and what each edge
 * carries back. Made with the graph's allocator; reads the graph only. */
typedef struct dump_model dump_model;

/* What the edge from input k of u carries back. */
typedef struct {
    bool flows;           /* the engine sends a gradient along it */
    bool scalar_local;    /* local holds d u/d input (a one-element elementwise u) */
    double local;         /* the local derivative, from the op's own gradient rule */
    double *contribution; /* numel of the input: upstream × local summed; NULL: not known
                             apart from the fan-out sum. Freed by ad_dump_model_edge_free */
    char rule[200];       /* the op's derivative text for it, "1 − o²" */
} dump_edge;

/* NULL with the graph's error set (out of memory). prec: significant digits
 * of formatted numbers. */
dump_model *ad_dump_model_new(ad_graph *g, ad_node *loss, int prec);
void ad_dump_model_free(dump_model *m); /* accepts NULL */
int64_t ad_dump_model_steps(const dump_model *m);
/* 1 for the loss, 2 for the next node the engine visits, ...; 0: not visited */
int64_t ad_dump_model_step(const dump_model *m, const ad_node *v);
/* edges along which a gradient flows out of v (the terms of its fan-out sum) */
int64_t ad_dump_model_uses(const dump_model *m, const ad_node *v);
/* v's name or the dumps' t1, t2, ... */
const char *ad_dump_model_symbol(const dump_model *m, const ad_node *v);
/* the engine's d loss/d v, or NULL */
const ad_node *ad_dump_model_grad(const dump_model *m, const ad_node *v);
/* 0, or -1 with the graph's error set (out of memory) */
int ad_dump_model_edge(const dump_model *m, const ad_node *u, int k, dump_edge *e);
void ad_dump_model_edge_free(const dump_model *m, const ad_node *u, int k, dump_edge *e);
/* n values shaped like shape_of, as the pictures print them */
void ad_dump_model_format(const dump_model *m, const ad_node *shape_of, const double *v, int64_t n,
                          char *buf, size_t size);
/* v's definition "x1·w1", or its leaf kind "param" */
void ad_dump_model_definition(const dump_model *m, const ad_node *v, char *buf, size_t size);

/* ad_dump_render reporting as fn (dump_render.c) */
int ad_dump_render_as(ad_graph *g, ad_node *output, const char *format, const char *path,
                      unsigned flags, const char *fn);
int ad_dump_render_with(ad_graph *g, ad_node *output, const char *format, const char *path,
                        const ad_dump_opts *opts, const char *fn);
/* text for HTML (& < > " escaped) */
void ad_dump_html_text(FILE *out, const char *s);

#endif
