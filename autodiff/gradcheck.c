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

/* Puts the saved values back (s stays valid). */
static void load_values(ad_graph *g, const ad_replay *p, const saved *s)
{
    size_t at = 0;
    for (int64_t i = 0; i < p->n; i++) {
        ad_node *n = g->nodes[p->ids[i]];
        if ((n->flags & NODE_ALIAS) || n->numel == 0)
            continue;
        memcpy(n->value, s->data + at, (size_t)n->numel * g->elem);
        at += (size_t)n->numel * g->elem;
    }
}

static void restore_values(ad_graph *g, const ad_replay *p, saved *s)
{
    load_values(g, p, s);
    if (s->data)
        ad_mem(g, s->data, s->bytes, 0);
    s->data = NULL;
}

/* Sets element i of leaf to x + side·h (side -1, 0 or +1) as the graph's
 * dtype stores it; returns the stored value. */
static double move_leaf(ad_node *leaf, int64_t i, double x, double h, int side)
{
    double stored = 0;
    AD_DISPATCH(leaf->g, {
        T *p = leaf->value;
        p[i] = side ? (T)(x + side * h) : (T)x;
        stored = (double)p[i];
    });
    return stored;
}

/* The step of ad_finite_difference at value x. */
static double step_at(double x, double eps) { return eps * fmax(1.0, fabs(x)); }

/* One central difference of loss in element i of leaf, replaying plan; the
 * leaf's element is put back (the replayed nodes are not: the caller's
 * restore_values does that once). false when a replay failed. */
static bool central_difference(ad_node *loss, ad_node *leaf, int64_t i, double eps,
                               const ad_replay *plan, double *out)
{
    ad_graph *g = loss->g;
    const double x = value_at(leaf, i), h = step_at(x, eps);
    const double up = move_leaf(leaf, i, x, h, +1);
    bool ok = ad_replay_run(g, plan);
    const double fu = value_at(loss, 0);
    const double down = move_leaf(leaf, i, x, h, -1);
    ok = ok && ad_replay_run(g, plan);
    const double fd = value_at(loss, 0);
    move_leaf(leaf, i, x, h, 0);
    *out = (fu - fd) / (up - down);
    return ok;
}

/* ------------------------------------------------- non-differentiable points */

/* dst[k·numel + i]: input k of elementwise node u at u's element i
   (broadcast), as the graph holds it now. */
static void gather_inputs(const ad_node *u, double *dst)
{
    ad_bcast_iter it;
    ad_bcast_init(&it, u->ndim, u->shape, u->ninputs, (const ad_node *const *)u->inputs);
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t j = 0; j < it.inner; j++)
            for (int k = 0; k < u->ninputs; k++)
                dst[(size_t)k * (size_t)u->numel + (size_t)(r * it.inner + j)] =
                    value_at(u->inputs[k], it.off[k] + j * it.st[k][it.nd - 1]);
        ad_bcast_next(&it);
    }
}

/* A node of the plan whose op has a nondiff rule. */
static bool has_rule(const ad_node *n)
{
    return ad_ops[n->op].nondiff != ad_smooth && n->ninputs >= 1 && n->ninputs <= 3;
}

/* Classifies element i of leaf (center values in the graph, plan planned
 * from leaf to loss): replays x - h and x + h, asks each node's registry rule
 * about the segments x - h .. x .. x + h of its inputs, then puts the center
 * values back from center. -1: out of memory or a replay failed. */
static int classify(ad_node *leaf, int64_t i, double eps, const ad_replay *plan,
                    const saved *center, const ad_node **where)
{
    ad_graph *g = leaf->g;
    size_t total = 0;
    for (int64_t t = 0; t < plan->n; t++) {
        const ad_node *u = g->nodes[plan->ids[t]];
        if (has_rule(u))
            total += (size_t)u->ninputs * (size_t)u->numel;
    }
    *where = NULL;
    if (total == 0)
        return AD_SMOOTH;
    double *vals = ad_mem(g, NULL, 0, 3 * total * sizeof(double));
    if (!vals)
        return -1;
    const double x = value_at(leaf, i), h = step_at(x, eps);
    bool ok = true;
    for (int side = -1; side <= 1 && ok; side++) { /* vals[(side + 1)·total ...] */
        move_leaf(leaf, i, x, h, side);
        if (side)
            ok = ad_replay_run(g, plan);
        else
            load_values(g, plan, center);
        size_t at = (size_t)(side + 1) * total;
        for (int64_t t = 0; ok && t < plan->n; t++) {
            const ad_node *u = g->nodes[plan->ids[t]];
            if (has_rule(u)) {
                gather_inputs(u, vals + at);
                at += (size_t)u->ninputs * (size_t)u->numel;
            }
        }
    }
    move_leaf(leaf, i, x, h, 0);
    load_values(g, plan, center);
    int worst = AD_SMOOTH;
    size_t at = 0;
    for (int64_t t = 0; ok && t < plan->n; t++) {
        const ad_node *u = g->nodes[plan->ids[t]];
        if (!has_rule(u))
            continue;
        const int64_t n = u->numel;
        for (int64_t e = 0; e < n; e++) {
            double in[3][3];
            bool moves = false; /* elements the leaf's element does not reach do not count */
            for (int p = 0; p < 3; p++)
                for (int k = 0; k < u->ninputs; k++)
                    in[p][k] = vals[(size_t)p * total + at + (size_t)k * (size_t)n + (size_t)e];
            for (int k = 0; k < u->ninputs; k++)
                moves = moves || in[0][k] != in[1][k] || in[2][k] != in[1][k];
            if (!moves)
                continue;
            int kind = (int)ad_ops[u->op].nondiff(in[0], in[1], u->fparam);
            int right = (int)ad_ops[u->op].nondiff(in[1], in[2], u->fparam);
            kind = right > kind ? right : kind;
            if (kind > worst) {
                worst = kind;
                *where = u;
            }
        }
        at += (size_t)u->ninputs * (size_t)n;
    }
    ad_mem(g, vals, 3 * total * sizeof(double), 0);
    return ok ? worst : -1;
}

static double default_eps(const ad_graph *g) { return g->dtype == AD_F32 ? F32_EPS : F64_EPS; }

bool ad_gradcheck_agree(const ad_graph *g, double analytic, double numeric)
{
    const bool f32 = g->dtype == AD_F32;
    double atol = f32 ? F32_ATOL : F64_ATOL, rtol = f32 ? F32_RTOL : F64_RTOL;
    return fabs(analytic - numeric) <= atol + rtol * fabs(numeric);
}

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
                leaf->rare->name, ad_ops[leaf->op].name);
        return false;
    }
    if (leaf->id > loss->id) {
        ad_fail(g, "%s: %s '%s' was made after the loss", fn, what, leaf->rare->name);
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
        ad_fail(g, "%s: loss '%s' %s has %lld elements, expected 1", fn, loss->rare->name,
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
                (long long)index, (long long)x->numel, x->rare->name,
                ad_shape_str(x, sh, sizeof sh));
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

int ad_smoothness_at(ad_node *loss, ad_node *x, int64_t index, double eps, const ad_node **where)
{
    const ad_node *first = NULL;
    if (where)
        *where = NULL;
    if (!loss || !x) {
        if (loss || x)
            ad_fail(loss ? loss->g : x->g, "ad_smoothness_at: %s is NULL", loss ? "x" : "loss");
        return -1;
    }
    ad_graph *g = loss->g;
    if (!check_loss_node(loss, "ad_smoothness_at") ||
        !check_loss_leaf(loss, x, "ad_smoothness_at", "x"))
        return -1;
    if (index < 0 || index >= x->numel) {
        char sh[96];
        ad_fail(g, "ad_smoothness_at: index %lld is not in [0, %lld) for '%s' %s", (long long)index,
                (long long)x->numel, x->rare->name, ad_shape_str(x, sh, sizeof sh));
        return -1;
    }
    if (!(eps > 0))
        eps = default_eps(g);
    ad_replay plan;
    saved keep = {0};
    if (!ad_replay_plan(x, loss, &plan, "ad_smoothness_at"))
        return -1;
    int r = -1;
    if (save_values(g, &plan, &keep)) {
        r = classify(x, index, eps, &plan, &keep, &first);
        restore_values(g, &plan, &keep);
    }
    ad_replay_free(g, &plan);
    if (r < 0 && !g->has_error)
        ad_fail(g, "ad_smoothness_at: out of memory");
    if (where)
        *where = r > 0 ? first : NULL;
    return g->has_error ? -1 : r;
}

/* ------------------------------------------------------------------ check */

typedef struct {
    double atol, rtol;
    ad_gradcheck_result res;
    double worst; /* largest |a - n| / (atol + rtol |n|) so far */
    bool pass;
} verdict;

/* Records one comparison; true when it is within the tolerance. */
static bool judge(verdict *v, double analytic, double numeric, double *ratio_out)
{
    double err = fabs(analytic - numeric);
    double mag = fmax(fabs(analytic), fabs(numeric));
    double rel = mag > 0 ? err / mag : 0;
    double ratio = err / (v->atol + v->rtol * fabs(numeric));
    if (isnan(err))
        err = rel = ratio = INFINITY;
    bool ok = err <= v->atol + v->rtol * fabs(numeric);
    v->res.checked++;
    if (err > v->res.max_abs_err)
        v->res.max_abs_err = err;
    if (rel > v->res.max_rel_err)
        v->res.max_rel_err = rel;
    *ratio_out = ratio;
    return ok;
}

/* The worst element is the one furthest outside the tolerance (or least
   inside it) among those not explained by a kink or a jump. */
static void note_worst(verdict *v, const ad_node *leaf, int64_t i, double ratio)
{
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
        double ratio = 0;
        if (ok && judge(v, an[i], numeric, &ratio)) {
            note_worst(v, leaf, i, ratio);
        } else if (ok) {
            /* outside the tolerance: expected at a kink or a jump */
            const ad_node *where = NULL;
            load_values(g, &plan, &keep);
            int kind = classify(leaf, i, eps, &plan, &keep, &where);
            ok = kind >= 0;
            if (kind > 0)
                v->res.nondifferentiable++;
            else if (kind == 0) {
                v->res.failed++;
                v->pass = false;
                note_worst(v, leaf, i, ratio);
            }
        }
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
