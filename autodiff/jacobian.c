/* jacobian.c -- forward mode and dense derivatives, built from the reverse
 * mode the engine has.
 *
 * Forward mode (ad_jvp) by the double-vector-Jacobian trick: for a dummy
 * cotangent u of y's shape, Jᵀu = d(y·u)/dx is linear in u, so
 * J v = d/du [(Jᵀu)·v], another reverse pass. Both passes are ordinary
 * nodes, so the result is differentiable again.
 *
 * Dense Jacobians: one backward construction of d(y·s)/dx for a seed s of
 * y's shape, then replayed once per row with s = e_i (only the nodes that
 * depend on s), instead of building one backward pass per row; when x has
 * far fewer elements than y, one ad_jvp construction replayed per column
 * instead. The Hessian is the Jacobian of the gradient. The nodes are discarded afterwards
 * (ad_graph_rewind), so the graph does not grow. */
#include <string.h>

#include "graph_impl.h"

/* A zero constant of n's shape. */
static ad_node *zeros_of(ad_node *n, const char *name)
{
    return ad_const(n->g, n->ndim, n->shape, NULL, name);
}

ad_node *ad_jvp(ad_node *y, int n, ad_node *const *xs, ad_node *const *vs)
{
    if (!y)
        return NULL;
    ad_graph *g = y->g;
    if (g->has_error)
        return NULL;
    if (n < 0 || (n > 0 && (!xs || !vs))) {
        ad_fail(g, "ad_jvp: %d nodes with xs %s and vs %s", n, xs ? "set" : "NULL",
                vs ? "set" : "NULL");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        char a[96], b[96];
        if (!xs[i] || !vs[i]) {
            ad_fail(g, "ad_jvp: %s[%d] is NULL", xs[i] ? "vs" : "xs", i);
            return NULL;
        }
        if (xs[i]->g != g || vs[i]->g != g) {
            ad_fail(g, "ad_jvp: y and %s[%d] belong to different graphs",
                    xs[i]->g != g ? "xs" : "vs", i);
            return NULL;
        }
        if (!ad_same_shape(xs[i], vs[i])) {
            ad_fail(g, "ad_jvp: direction vs[%d] %s does not match xs[%d] %s", i,
                    ad_shape_str(vs[i], a, sizeof a), i, ad_shape_str(xs[i], b, sizeof b));
            return NULL;
        }
    }
    const int64_t mark = g->nnodes;
    ad_node *local[8], **vjp = n > 8 ? ad_mem(g, NULL, 0, sizeof(ad_node *) * (size_t)n) : local;
    if (!vjp)
        return NULL;
    ad_node *u = zeros_of(y, "jvp_u"), *jv = NULL;
    ad_node *s1 = ad_sum(ad_mul(y, u), AD_ALL);
    bool ok = s1 && ad_grad_build(s1, n, xs, vjp, false, "ad_jvp"); /* vjp[i] = J_iᵀ u */
    ad_node *s2 = NULL;
    for (int i = 0; ok && i < n; i++) {
        ad_node *t = ad_sum(ad_mul(vjp[i], vs[i]), AD_ALL);
        s2 = !t ? NULL : s2 ? ad_add(s2, t) : t;
        ok = s2 != NULL;
    }
    if (ok && !s2)
        jv = ad_zeros_like(y); /* n == 0: no direction */
    else
        ok = ok && ad_grad_build(s2, 1, &u, &jv, false, "ad_jvp"); /* d/du (Jᵀu)·v = J v */
    ok = ok && jv;
    if (vjp != local)
        ad_mem(g, vjp, sizeof(ad_node *) * (size_t)n, 0);
    if (!ok) {
        ad_graph_rewind(g, mark);
        return NULL;
    }
    return jv;
}

/* Arguments shared by ad_jacobian and ad_hessian. */
static bool check_args(ad_node *y, ad_node *x, const double *out, const char *fn)
{
    if (!y || !x) {
        if (y || x)
            ad_fail(y ? y->g : x->g, "%s: %s is NULL", fn, y ? "x" : "y");
        return false;
    }
    ad_graph *g = y->g;
    if (g->has_error)
        return false;
    if (x->g != g) {
        ad_fail(g, "%s: y and x belong to different graphs", fn);
        return false;
    }
    if (!out && y->numel && x->numel) {
        ad_fail(g, "%s: out is NULL", fn);
        return false;
    }
    if (g->shapes_dirty) {
        ad_fail(g, "%s: shapes changed (ad_resize): call ad_forward first", fn);
        return false;
    }
    return true;
}

/* Sets seed to each unit vector e_k in turn, replays what res needs of it,
 * and writes res into out[k * kstride + i * istride]. */
static bool replay_unit_seeds(ad_node *seed, ad_node *res, double *out, int64_t kstride,
                              int64_t istride, const char *fn)
{
    ad_graph *g = seed->g;
    ad_replay plan = {0};
    bool ok = ad_replay_plan(seed, res, &plan, fn);
    for (int64_t k = 0; ok && k < seed->numel; k++) {
        AD_DISPATCH(g, {
            T *e = seed->value;
            if (k > 0)
                e[k - 1] = 0;
            e[k] = 1;
        });
        ok = ad_replay_run(g, &plan);
        AD_DISPATCH(g, {
            const T *v = res->value;
            for (int64_t i = 0; ok && i < res->numel; i++)
                out[k * kstride + i * istride] = (double)v[i];
        });
    }
    ad_replay_free(g, &plan);
    return ok;
}

/* out (numel(f) rows of numel(x)) = d f/d x. By rows: row i = d f_i/d x,
 * one backward construction of d(f·s)/dx replayed with seed s = e_i. By
 * columns: column j = J e_j, one ad_jvp construction replayed with
 * direction e_j; a replay of that costs about three backward passes, so it
 * pays only when x has far fewer elements than f. Leaves the graph as it
 * was. */
static bool jacobian_of(ad_node *f, ad_node *x, double *out, bool by_cols, const char *fn)
{
    ad_graph *g = f->g;
    const int64_t mark = g->nnodes, cols = x->numel;
    bool ok;
    if (by_cols) {
        ad_node *dir = zeros_of(x, "direction");
        ad_node *jv = dir ? ad_jvp(f, 1, &x, &dir) : NULL;
        ok = jv && replay_unit_seeds(dir, jv, out, 1, cols, fn);
    } else {
        ad_node *seed = zeros_of(f, "seed"), *gx = NULL;
        ad_node *s = ad_sum(ad_mul(f, seed), AD_ALL);
        ok = s && ad_grad_build(s, 1, &x, &gx, false, fn) &&
             replay_unit_seeds(seed, gx, out, cols, 1, fn);
    }
    ad_graph_rewind(g, mark);
    return ok && !g->has_error;
}

int ad_jacobian(ad_node *y, ad_node *x, double *out)
{
    if (!check_args(y, x, out, "ad_jacobian"))
        return -1;
    if (y->flags & NODE_TAPE) {
        ad_fail(y->g, "ad_jacobian: '%s' belongs to a backward pass; use ad_grad for higher order",
                y->rare->name);
        return -1;
    }
    return jacobian_of(y, x, out, 3 * x->numel < y->numel, "ad_jacobian") ? 0 : -1;
}

int ad_hessian(ad_node *y, ad_node *x, double *out)
{
    if (!check_args(y, x, out, "ad_hessian"))
        return -1;
    ad_graph *g = y->g;
    const int64_t mark = g->nnodes;
    ad_node *gx = NULL;
    bool ok = ad_grad_build(y, 1, &x, &gx, false, "ad_hessian") &&
              jacobian_of(gx, x, out, false, "ad_hessian");
    ad_graph_rewind(g, mark);
    return ok && !g->has_error ? 0 : -1;
}
