/* gradcheck.c -- the library's one finite-difference estimator and the
 * gradient check built on it (ad_gradcheck; the text and JSON traces and the
 * CLI's `chainrule grad --check` use the same estimator).
 *
 * Central differences: d loss/d x_i ~ (L(x_i + h) - L(x_i - h)) / (x_i+ - x_i-)
 * with h = eps max(1, |x_i|), where x_i+ and x_i- are the perturbed values as
 * stored in the graph's dtype (so an f32 step that rounds is still divided by
 * the step actually taken). Only the nodes between the leaf and the loss that
 * depend on the leaf are recomputed; their values, and the leaf's, are copied
 * back afterwards, so every value is bit-identical after the call. */
#include <math.h>
#include <string.h>

#include "graph_impl.h"

/* Defaults (documented in autodiff.h and docs/autodiff.md). */
#define F64_EPS 1e-6
#define F64_ATOL 1e-5
#define F64_RTOL 1e-3
#define F32_EPS 1e-3
#define F32_ATOL 1e-2
#define F32_RTOL 1e-2

static double value_at(const ad_node *n, int64_t i)
{
    double v = 0;
    AD_DISPATCH(n->g, { v = (double)((const T *)n->value)[i]; });
    return v;
}

/* The values of the nodes a replay overwrites, to put back bit for bit. */
typedef struct {
    char *data;
    size_t bytes;
} saved;

static size_t replay_bytes(const ad_graph *g, const ad_replay *p)
{
    size_t b = 0;
    for (int64_t i = 0; i < p->n; i++) {
        const ad_node *n = g->nodes[p->ids[i]];
        if (!(n->flags & NODE_ALIAS))
            b += (size_t)n->numel * g->elem;
    }
    return b;
}

static bool save_values(ad_graph *g, const ad_replay *p, saved *s)
{
    s->bytes = replay_bytes(g, p);
    s->data = s->bytes ? ad_mem(g, NULL, 0, s->bytes) : NULL;
    if (s->bytes && !s->data)
        return false;
    size_t at = 0;
    for (int64_t i = 0; i < p->n; i++) {
        const ad_node *n = g->nodes[p->ids[i]];
        if ((n->flags & NODE_ALIAS) || n->numel == 0)
            continue;
        memcpy(s->data + at, n->value, (size_t)n->numel * g->elem);
        at += (size_t)n->numel * g->elem;
    }
    return true;
}

static void restore_values(ad_graph *g, const ad_replay *p, saved *s)
{
    size_t at = 0;
    for (int64_t i = 0; i < p->n; i++) {
        ad_node *n = g->nodes[p->ids[i]];
        if ((n->flags & NODE_ALIAS) || n->numel == 0)
            continue;
        memcpy(n->value, s->data + at, (size_t)n->numel * g->elem);
        at += (size_t)n->numel * g->elem;
    }
    if (s->data)
        ad_mem(g, s->data, s->bytes, 0);
    s->data = NULL;
}

/* One central difference of loss in element i of leaf, replaying plan; the
 * leaf's element is put back (the replayed nodes are not: the caller's
 * restore_values does that once). false when a replay failed. */
static bool central_difference(ad_node *loss, ad_node *leaf, int64_t i, double eps,
                               const ad_replay *plan, double *out)
{
    ad_graph *g = loss->g;
    bool ok = true;
    AD_DISPATCH(g, {
        T *p = leaf->value;
        const T x = p[i];
        const double h = eps * fmax(1.0, fabs((double)x));
        const T up = (T)((double)x + h), down = (T)((double)x - h);
        p[i] = up;
        ok = ad_replay_run(g, plan);
        const double fu = value_at(loss, 0);
        p[i] = down;
        ok = ok && ad_replay_run(g, plan);
        const double fd = value_at(loss, 0);
        p[i] = x;
        *out = (fu - fd) / ((double)up - (double)down);
    });
    return ok;
}

static double default_eps(const ad_graph *g) { return g->dtype == AD_F32 ? F32_EPS : F64_EPS; }

/* Common argument checks of the estimator and the gradient check. */
static bool check_loss_leaf(ad_node *loss, ad_node *leaf, const char *fn, const char *what)
{
    ad_graph *g = loss->g;
    if (leaf->g != g) {
        ad_fail(g, "%s: loss and %s belong to different graphs", fn, what);
        return false;
    }
    if (ad_ops[leaf->op].kind != AD_KIND_LEAF) {
        ad_fail(g, "%s: %s '%s' (%s) is not a leaf: replay would overwrite its value", fn, what,
                leaf->name, ad_ops[leaf->op].name);
        return false;
    }
    if (leaf->id > loss->id) {
        ad_fail(g, "%s: %s '%s' was made after the loss", fn, what, leaf->name);
        return false;
    }
    return true;
}

static bool check_loss_node(ad_node *loss, const char *fn)
{
    ad_graph *g = loss->g;
    if (g->has_error)
        return false;
    if (loss->numel != 1) {
        char sh[96];
        ad_fail(g, "%s: loss '%s' %s has %lld elements, expected 1", fn, loss->name,
                ad_shape_str(loss, sh, sizeof sh), (long long)loss->numel);
        return false;
    }
    if (g->shapes_dirty) {
        ad_fail(g, "%s: shapes changed (ad_resize): call ad_forward first", fn);
        return false;
    }
    return true;
}

double ad_finite_difference(ad_node *loss, ad_node *x, int64_t index, double eps)
{
    if (!loss || !x) {
        if (loss || x)
            ad_fail(loss ? loss->g : x->g, "ad_finite_difference: %s is NULL", loss ? "x" : "loss");
        return NAN;
    }
    ad_graph *g = loss->g;
    if (!check_loss_node(loss, "ad_finite_difference") ||
        !check_loss_leaf(loss, x, "ad_finite_difference", "x"))
        return NAN;
    if (index < 0 || index >= x->numel) {
        char sh[96];
        ad_fail(g, "ad_finite_difference: index %lld is not in [0, %lld) for '%s' %s",
                (long long)index, (long long)x->numel, x->name, ad_shape_str(x, sh, sizeof sh));
        return NAN;
    }
    if (!(eps > 0))
        eps = default_eps(g);
    ad_replay plan;
    saved keep = {0};
    if (!ad_replay_plan(x, loss, &plan, "ad_finite_difference"))
        return NAN;
    double r = NAN;
    if (save_values(g, &plan, &keep)) {
        if (!central_difference(loss, x, index, eps, &plan, &r))
            r = NAN;
        restore_values(g, &plan, &keep);
    }
    ad_replay_free(g, &plan);
    return g->has_error ? NAN : r;
}

/* ------------------------------------------------------------------ check */

typedef struct {
    double atol, rtol;
    ad_gradcheck_result res;
    double worst; /* largest |a - n| / (atol + rtol |n|) so far */
    bool pass;
} verdict;

static void judge(verdict *v, const ad_node *leaf, int64_t i, double analytic, double numeric)
{
    double err = fabs(analytic - numeric);
    double mag = fmax(fabs(analytic), fabs(numeric));
    double rel = mag > 0 ? err / mag : 0;
    double ratio = err / (v->atol + v->rtol * fabs(numeric));
    if (isnan(err))
        err = rel = ratio = INFINITY;
    bool ok = err <= v->atol + v->rtol * fabs(numeric);
    v->pass = v->pass && ok;
    v->res.checked++;
    if (err > v->res.max_abs_err)
        v->res.max_abs_err = err;
    if (rel > v->res.max_rel_err)
        v->res.max_rel_err = rel;
    if (!v->res.worst_leaf || ratio > v->worst) {
        v->worst = ratio;
        v->res.worst_leaf = leaf;
        v->res.worst_index = i;
    }
}

/* Checks the chosen elements of one leaf against its analytic gradient an. */
static bool check_leaf(ad_node *loss, ad_node *leaf, const double *an, double eps,
                       int64_t max_elements, verdict *v)
{
    ad_graph *g = loss->g;
    ad_replay plan;
    saved keep = {0};
    if (!ad_replay_plan(leaf, loss, &plan, "ad_gradcheck"))
        return false;
    bool ok = save_values(g, &plan, &keep);
    const int64_t n = leaf->numel;
    const int64_t want = (max_elements > 0 && n > max_elements) ? max_elements : n;
    int64_t chosen = 0;
    for (int64_t i = 0; ok && i < n && chosen < want; i++) {
        /* selection sampling (Knuth's algorithm S): element i is taken with
         * probability (still wanted) / (still left), so exactly want of them,
         * uniformly, in order; every element when want == n */
        if (want < n && ad_rng_uniform(g) * (double)(n - i) >= (double)(want - chosen))
            continue;
        chosen++;
        double numeric = 0;
        ok = central_difference(loss, leaf, i, eps, &plan, &numeric);
        if (ok)
            judge(v, leaf, i, an[i], numeric);
    }
    if (keep.data || !keep.bytes)
        restore_values(g, &plan, &keep);
    ad_replay_free(g, &plan);
    return ok;
}

int ad_gradcheck(ad_node *loss, int n, ad_node *const *leaves, const ad_gradcheck_opts *o,
                 ad_gradcheck_result *r)
{
    if (r) {
        memset(r, 0, sizeof *r);
        r->worst_index = -1;
    }
    if (!loss)
        return -1;
    ad_graph *g = loss->g;
    if (!check_loss_node(loss, "ad_gradcheck"))
        return -1;
    if (n < 0 || (n > 0 && !leaves)) {
        ad_fail(g, "ad_gradcheck: %d leaves with leaves %s", n, leaves ? "set" : "NULL");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!leaves[i]) {
            ad_fail(g, "ad_gradcheck: leaves[%d] is NULL", i);
            return -1;
        }
        char what[32];
        snprintf(what, sizeof what, "leaves[%d]", i);
        if (!check_loss_leaf(loss, leaves[i], "ad_gradcheck", what))
            return -1;
    }
    const bool f32 = g->dtype == AD_F32;
    ad_gradcheck_opts opt = o ? *o : (ad_gradcheck_opts){0};
    if (!(opt.eps > 0))
        opt.eps = f32 ? F32_EPS : F64_EPS;
    if (!(opt.atol > 0))
        opt.atol = f32 ? F32_ATOL : F64_ATOL;
    if (!(opt.rtol > 0))
        opt.rtol = f32 ? F32_RTOL : F64_RTOL;
    if (opt.max_elements < 0)
        opt.max_elements = 0;

    /* analytic gradients: one backward construction, read, then discarded */
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += leaves[i]->numel;
    double *an = total ? ad_mem(g, NULL, 0, sizeof(double) * (size_t)total) : NULL;
    ad_node **gr = n ? ad_mem(g, NULL, 0, sizeof(ad_node *) * (size_t)n) : NULL;
    if ((total && !an) || (n && !gr)) {
        ad_mem(g, an, an ? sizeof(double) * (size_t)total : 0, 0);
        ad_mem(g, gr, gr ? sizeof(ad_node *) * (size_t)n : 0, 0);
        return -1;
    }
    const int64_t mark = g->nnodes;
    bool ok = ad_grad_build(loss, n, leaves, gr, false, "ad_gradcheck");
    for (int64_t i = 0, k = 0; ok && i < n; i++)
        for (int64_t j = 0; j < leaves[i]->numel; j++)
            an[k++] = value_at(gr[i], j);
    if (ok)
        ad_graph_rewind(g, mark);
    ad_mem(g, gr, sizeof(ad_node *) * (size_t)n, 0);

    /* numeric gradients, compared as they come */
    verdict v = {.atol = opt.atol, .rtol = opt.rtol, .pass = true};
    v.res.worst_index = -1;
    uint64_t rng[4];
    ad_graph_rng_state(g, rng);
    ad_graph_seed(g, opt.seed); /* the sample; the graph's own stream is put back below */
    int64_t at = 0;
    for (int i = 0; ok && i < n; i++) {
        ok = check_leaf(loss, leaves[i], an + at, opt.eps, opt.max_elements, &v);
        at += leaves[i]->numel;
    }
    ad_graph_set_rng_state(g, rng);
    if (an)
        ad_mem(g, an, sizeof(double) * (size_t)total, 0);
    if (!ok || g->has_error)
        return -1;
    if (r)
        *r = v.res;
    return v.pass ? 0 : 1;
}
