/* dump_impl.h -- what the dumps share. dump.c's model of a backward pass
 * (the context below: symbols, definitions, local derivatives and what each
 * edge carries back), used by the Graphviz pictures (dump_dot.c) and the
 * chain-rule traces (dump_trace.c), and read through dump_model by the
 * stepper page (dump_html.c). Internal: never installed. */
#ifndef CHAINRULE_DUMP_IMPL_H
#define CHAINRULE_DUMP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"
#include "graph_impl.h"

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

/* ------------------------------------------ the dump writers' context */

#define SYM_LEN 48
#define DEF_LEN 200
#define TEXT_LEN 512

/* The dumps' reading of a graph (dump.c): made by ad_dump_ctx_init, freed by
 * ad_dump_ctx_free_all, both with the graph's allocator. */
typedef struct {
    ad_graph *g;
    ad_node *loss;      /* whose gradients are shown; NULL: values only */
    int64_t n;          /* nodes [0, n) */
    unsigned char *anc; /* 1: the loss depends on node i (or is node i) */
    int64_t *step;      /* backward step of node i, 0: not visited */
    int64_t *uses;      /* edges carrying gradient out of node i */
    int64_t *ustart;    /* users of node i: uid/uk[ustart[i] .. ustart[i + 1]) */
    int64_t *uid;
    int *uk;
    char *sym;             /* n * SYM_LEN: the symbol of each node */
    struct local_info *li; /* n: local derivatives of elementwise nodes, filled on demand */
    int64_t nsteps;
    int prec;            /* significant digits of printed numbers */
    int64_t *alias;      /* node i is drawn as node alias[i] (bookkeeping left out) */
    unsigned char *fold; /* 1: node i is a constant of a gradient build, printed as its value */
    bool grads;          /* the loss has a backward build: gradients are shown */
    unsigned legend;     /* LEGEND_* styles the picture used */
    ad_dump_opts opts;
} ctx;

enum { EDGE_NONE, EDGE_FLOWS, EDGE_ZERO };

/* What the edge from input k of a user carries back (ad_dump_edge_compute). */
typedef struct {
    int kind;            /* EDGE_* */
    bool has_local;      /* an elementwise rule: local[] is valid */
    const double *local; /* (numel of u) d u/d input element by element, the cache's */
    double *contrib;     /* (numel of input) upstream × local, summed; NULL: unknown */
    int64_t undefined;   /* elements at points where the derivative is not defined */
    char rule[DEF_LEN];  /* "1 − o²", or the op's rule text */
    char undef_note[DEF_LEN];
    char axes[64]; /* broadcast axes, "" when none */
} edge_info;

static inline double val(const ad_node *n, int64_t i)
{
    if (n->g->dtype == AD_F32)
        return ((const float *)n->value)[i];
    return ((const double *)n->value)[i];
}

static inline void *zalloc(ad_graph *g, size_t bytes)
{
    void *p = ad_mem(g, NULL, 0, bytes ? bytes : 1);
    if (p)
        memset(p, 0, bytes ? bytes : 1);
    return p;
}

static inline void zfree(ad_graph *g, void *p, size_t bytes)
{
    if (p)
        ad_mem(g, p, bytes ? bytes : 1, 0);
}

static inline const char *sym(const ctx *c, const ad_node *n)
{
    return c->sym + (size_t)n->id * SYM_LEN;
}

/* Appends text to buf (bounded). */
static inline void put(char *buf, size_t size, size_t *k, const char *text)
{
    size_t len = strlen(text);
    if (*k + len >= size)
        len = *k + 1 < size ? size - 1 - *k : 0;
    memcpy(buf + *k, text, len);
    *k += len;
    buf[*k] = '\0';
}

/* dump.c: the model (each is described at its definition) */
bool ad_dump_ctx_init(ctx *c, ad_graph *g, ad_node *loss, const ad_node *output, int prec);
void ad_dump_ctx_free_all(ctx *c);
ad_node *ad_dump_grad_of(const ctx *c, const ad_node *v);
void ad_dump_put_sym(const ctx *c, char *buf, size_t size, size_t *k, const ad_node *n);
void ad_dump_definition(const ctx *c, const ad_node *u, char *buf, size_t size);
const char *ad_dump_leaf_kind(const ad_node *v);
int ad_dump_edge_kind(const ctx *c, const ad_node *u, int k);
bool ad_dump_edge_compute(const ctx *c, const ad_node *u, int k, edge_info *e);
void ad_dump_edge_free(ad_graph *g, const ad_node *u, const ad_node *in, edge_info *e);
bool ad_dump_fanout_sum(const ctx *c, const ad_node *v, char *buf, size_t size);

/* dump.c: numbers as the dumps print them */
void ad_dump_fmt_num(char *buf, size_t size, double v, int prec);
void ad_dump_fmt_factor(char *buf, size_t size, double v, int prec);
void ad_dump_fmt_values(char *buf, size_t size, const ad_node *shape_of, const double *v, int64_t n,
                        int prec);
void ad_dump_fmt_node_values(const ctx *c, char *buf, size_t size, const ad_node *n,
                             const ad_node *shape_of);
double *ad_dump_values_of(const ctx *c, const ad_node *n);

#endif
