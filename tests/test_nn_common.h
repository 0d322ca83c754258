/* Helpers shared by the nn tests: PyTorch fixture files, closeness checks
 * and a central-difference gradient checker that runs through the engine. */
#ifndef TEST_NN_COMMON_H
#define TEST_NN_COMMON_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/nn.h"

#ifndef CHAINRULE_TEST_DIR
#define CHAINRULE_TEST_DIR "."
#endif

/* ---------------------------------------------------------------- fixtures */

#define FIX_MAX 64

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    double *v;
} fix_tensor;

typedef struct {
    int n;
    fix_tensor t[FIX_MAX];
} fixture;

/* Reads tests/reference/nn/<name>.txt: lines "name ndim d... values...". */
static inline fixture *fixture_load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference/nn/%s.txt", CHAINRULE_TEST_DIR, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open fixture %s", path);
    fixture *fx = calloc(1, sizeof *fx);
    cr_assert_not_null(fx);
    char key[64];
    while (fx->n < FIX_MAX && fscanf(f, "%63s", key) == 1) {
        fix_tensor *t = &fx->t[fx->n++];
        snprintf(t->name, sizeof t->name, "%s", key);
        cr_assert_eq(fscanf(f, "%d", &t->ndim), 1, "%s: bad ndim for %s", path, key);
        cr_assert(t->ndim >= 0 && t->ndim <= 4);
        t->numel = 1;
        for (int i = 0; i < t->ndim; i++) {
            long long d;
            cr_assert_eq(fscanf(f, "%lld", &d), 1);
            t->shape[i] = d;
            t->numel *= d;
        }
        t->v = malloc(sizeof(double) * (size_t)(t->numel ? t->numel : 1));
        for (int64_t i = 0; i < t->numel; i++)
            cr_assert_eq(fscanf(f, "%lf", &t->v[i]), 1, "%s: short data for %s", path, key);
    }
    fclose(f);
    return fx;
}

static inline void fixture_free(fixture *fx)
{
    if (!fx)
        return;
    for (int i = 0; i < fx->n; i++)
        free(fx->t[i].v);
    free(fx);
}

static inline const fix_tensor *fixture_get(const fixture *fx, const char *name)
{
    for (int i = 0; i < fx->n; i++)
        if (strcmp(fx->t[i].name, name) == 0)
            return &fx->t[i];
    cr_assert_fail("fixture has no tensor '%s'", name);
    return NULL;
}

/* ---------------------------------------------------------------- closeness */

/* |a - e| <= atol + rtol |e| for every element. */
static inline void assert_close(const double *actual, const double *expected, int64_t n,
                                double rtol, double atol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double a = actual[i], e = expected[i];
        cr_assert(isfinite(a), "%s[%lld] is not finite (%g)", what, (long long)i, a);
        cr_assert(fabs(a - e) <= atol + rtol * fabs(e), "%s[%lld] = %.17g, expected %.17g", what,
                  (long long)i, a, e);
    }
}

/* A node's values (converted to double) against expected. */
static inline void assert_node_close(const ad_node *n, const double *expected, int64_t count,
                                     double rtol, double atol, const char *what)
{
    cr_assert_not_null(n, "%s: node is NULL", what);
    cr_assert_eq(ad_numel(n), count, "%s: %lld elements, expected %lld", what,
                 (long long)ad_numel(n), (long long)count);
    double *buf = malloc(sizeof(double) * (size_t)count);
    cr_assert_eq(ad_get(n, buf, count), 0);
    assert_close(buf, expected, count, rtol, atol, what);
    free(buf);
}

/* ------------------------------------------------------- gradient checking */

/*
 * Central differences through the engine: for every element of every leaf,
 * (L(p + h) - L(p - h)) / 2h with ad_forward replaying the graph, compared
 * with the gradient ad_backward accumulated. The graph must be f64.
 * Returns the worst relative error max |a - n| / max(1, |a|, |n|).
 */
static inline double grad_check(ad_graph *g, ad_node *loss, ad_node **leaves, int nleaves, double h)
{
    cr_assert_eq(ad_graph_dtype(g), AD_F64, "grad_check needs an f64 graph");
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(loss), 0, "backward: %s", ad_graph_error(g));
    double worst = 0;
    for (int k = 0; k < nleaves; k++) {
        ad_node *p = leaves[k];
        int64_t n = ad_numel(p);
        double *v = ad_data(p);
        const double *gr = ad_grad_data(p);
        for (int64_t i = 0; i < n; i++) {
            double save = v[i];
            v[i] = save + h;
            cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
            double up = ad_item(loss);
            v[i] = save - h;
            cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
            double down = ad_item(loss);
            v[i] = save;
            double num = (up - down) / (2 * h);
            double ana = gr[i];
            double scale = fmax(1.0, fmax(fabs(num), fabs(ana)));
            double err = fabs(num - ana) / scale;
            cr_assert(err < 1e-6, "leaf '%s'[%lld]: backward %.12g, central difference %.12g",
                      ad_node_name(p), (long long)i, ana, num);
            if (err > worst)
                worst = err;
        }
    }
    cr_assert_eq(ad_forward(g), 0);
    return worst;
}

/* Fills a leaf with values of a fixed pseudo-random pattern in [lo, hi). */
static inline void fill_pattern(ad_node *leaf, unsigned seed, double lo, double hi)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    int64_t n = ad_numel(leaf);
    double *buf = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++)
        buf[i] = lo + (hi - lo) * nn_rng_uniform(&r);
    cr_assert_eq(ad_set(leaf, buf, n), 0);
    free(buf);
}

/* Copies a fixture tensor into a model parameter found by name. */
static inline void model_load_param(nn_model *m, const fixture *fx, const char *name)
{
    int i = nn_model_param_find(m, name);
    cr_assert_geq(i, 0, "model has no parameter %s", name);
    nn_param_info info;
    cr_assert_eq(nn_model_param_info(m, i, &info), 0);
    const fix_tensor *t = fixture_get(fx, name);
    cr_assert_eq(info.numel, t->numel, "%s: %lld elements, fixture %lld", name,
                 (long long)info.numel, (long long)t->numel);
    if (nn_model_dtype(m) == AD_F64) {
        memcpy((double *)nn_model_params(m) + info.offset, t->v, sizeof(double) * (size_t)t->numel);
    } else {
        float *p = (float *)nn_model_params(m) + info.offset;
        for (int64_t k = 0; k < t->numel; k++)
            p[k] = (float)t->v[k];
    }
}

/* The gradient of a named parameter, as doubles (caller frees). */
static inline double *model_param_grad(nn_model *m, const char *name, int64_t *numel)
{
    int i = nn_model_param_find(m, name);
    cr_assert_geq(i, 0, "model has no parameter %s", name);
    nn_param_info info;
    cr_assert_eq(nn_model_param_info(m, i, &info), 0);
    double *out = malloc(sizeof(double) * (size_t)info.numel);
    for (int64_t k = 0; k < info.numel; k++)
        out[k] = nn_model_dtype(m) == AD_F64
                     ? ((double *)nn_model_grads(m))[info.offset + k]
                     : (double)((float *)nn_model_grads(m))[info.offset + k];
    *numel = info.numel;
    return out;
}

/* ------------------------------------------------- counting allocator */

/* Counts allocator calls and live bytes (the zero-allocation checks) and
 * the most bytes live at once (the peak-memory checks). */
typedef struct {
    long calls;
    size_t live;
    size_t peak;
} counting;

static inline void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counting *c = ud;
    if (nsize == 0) {
        c->live -= osize;
        free(ptr);
        return NULL;
    }
    c->calls++;
    c->live = c->live - osize + nsize;
    if (c->live > c->peak)
        c->peak = c->live;
    return realloc(ptr, nsize);
}

#endif
