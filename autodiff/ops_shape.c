/* ops_shape.c -- ops that move elements without arithmetic: reshape, slice,
 * concat, broadcast, the sum back over broadcast axes, one-hot. The "_like"
 * ops take their output shape from a second operand, so a backward pass
 * follows the forward shapes when a batch size changes on replay. */
#include <string.h>

#include "graph_impl.h"

static bool same_dims(const ad_node *a, const ad_node *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* Can t broadcast to (nd, shape)? */
static bool broadcasts_to(const ad_node *t, int nd, const int64_t *shape)
{
    if (t->ndim > nd)
        return false;
    for (int d = 0; d < t->ndim; d++) {
        int64_t s = t->shape[d], o = shape[d + nd - t->ndim];
        if (s != o && s != 1)
            return false;
    }
    return true;
}

static void geometry(const ad_node *t, int axis, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++)
        *outer *= t->shape[d];
    for (int d = axis + 1; d < t->ndim; d++)
        *inner *= t->shape[d];
    *len = t->shape[axis];
}

/* ---------------------------------------------------------------- reshape */

bool shape_reshape(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int nd = (int)n->iparam[0];
    int64_t shape[AD_MAX_DIMS], known = 1;
    int infer = -1;
    char b1[96];
    for (int d = 0; d < nd; d++) {
        shape[d] = n->iparam[1 + d];
        if (shape[d] == -1) {
            if (infer >= 0) {
                ad_fail(n->g, "ad_reshape: more than one axis is -1");
                return false;
            }
            infer = d;
        } else if (shape[d] < 0) {
            ad_fail(n->g, "ad_reshape: axis %d has negative size %lld", d, (long long)shape[d]);
            return false;
        } else {
            known *= shape[d];
        }
    }
    if (infer >= 0) {
        if (known == 0 || a->numel % known != 0) {
            ad_fail(n->g, "ad_reshape: cannot infer axis %d reshaping %s (%lld elements)", infer,
                    ad_shape_str(a, b1, sizeof b1), (long long)a->numel);
            return false;
        }
        shape[infer] = a->numel / known;
        known *= shape[infer];
    }
    if (known != a->numel) {
        ad_fail(n->g, "ad_reshape: %s has %lld elements, the new shape %lld",
                ad_shape_str(a, b1, sizeof b1), (long long)a->numel, (long long)known);
        return false;
    }
    return ad_shape_set(n, nd, shape, "ad_reshape");
}

bool shape_like(ad_node *n)
{
    ad_node *a = n->inputs[0], *like = n->inputs[1];
    char b1[96], b2[96];
    const char *name = ad_ops[n->op].name;
    bool ok = true;
    switch (n->op) {
    case AD_OP_RESHAPE_LIKE:
        ok = a->numel == like->numel;
        break;
    case AD_OP_BROADCAST_LIKE:
        ok = broadcasts_to(a, like->ndim, like->shape);
        break;
    case AD_OP_SUM_TO:
        ok = broadcasts_to(like, a->ndim, a->shape);
        break;
    case AD_OP_SLICE_BACKWARD: {
        int axis = (int)n->iparam[0];
        ok = a->ndim == like->ndim && axis >= 0 && axis < a->ndim && n->iparam[1] >= 0 &&
             n->iparam[1] + a->shape[axis] <= like->shape[axis];
        for (int d = 0; ok && d < a->ndim; d++)
            if (d != axis && a->shape[d] != like->shape[d])
                ok = false;
        break;
    }
    default:
        break;
    }
    if (!ok) {
        ad_fail(n->g, "ad_%s: shape %s does not fit %s", name, ad_shape_str(a, b1, sizeof b1),
                ad_shape_str(like, b2, sizeof b2));
        return false;
    }
    return ad_shape_set(n, like->ndim, like->shape, name);
}

ad_node *ad_reshape(ad_node *a, int ndim, const int64_t *shape)
{
    if (!a)
        return NULL;
    if (ndim < 0 || ndim > AD_MAX_DIMS || (ndim && !shape)) {
        ad_fail(a->g, "ad_reshape: ndim %d is not in [0, %d] or shape is NULL", ndim, AD_MAX_DIMS);
        return NULL;
    }
    int64_t ip[AD_MAX_IPARAMS] = {ndim};
    for (int d = 0; d < ndim; d++)
        ip[1 + d] = shape[d];
    return ad_node_make(a->g, AD_OP_RESHAPE, 1, &a, NULL, ip);
}

static ad_node *like_op(int op, ad_node *a, ad_node *like, int64_t p0, int64_t p1)
{
    if (!a || !like)
        return NULL;
    ad_node *in[2] = {a, like};
    int64_t ip[AD_MAX_IPARAMS] = {p0, p1};
    return ad_node_make(a->g, op, 2, in, NULL, ip);
}

ad_node *ad_reshape_like(ad_node *a, ad_node *like)
{
    return like_op(AD_OP_RESHAPE_LIKE, a, like, 0, 0);
}
ad_node *ad_broadcast_like(ad_node *a, ad_node *like)
{
    return like_op(AD_OP_BROADCAST_LIKE, a, like, 0, 0);
}
ad_node *ad_sum_to(ad_node *g, ad_node *like) { return like_op(AD_OP_SUM_TO, g, like, 0, 0); }
ad_node *ad_slice_backward(ad_node *g, ad_node *like, int axis, int64_t start)
{
    return like_op(AD_OP_SLICE_BACKWARD, g, like, axis, start);
}

void bwd_reshape(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_reshape_like(g, n->inputs[0]); }

/* ---------------------------------------------------------------- slice */

bool shape_slice(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = ad_norm_axis(n, a, n->iparam[0], "slice");
    if (axis < 0) {
        if (axis == -1)
            ad_fail(n->g, "ad_slice: AD_ALL is not an axis");
        return false;
    }
    int64_t start = n->iparam[1], end = n->iparam[2];
    if (start < 0 || end < start || end > a->shape[axis]) {
        char sh[96];
        ad_fail(n->g, "ad_slice: range [%lld, %lld) is out of bounds for axis %d of shape %s",
                (long long)start, (long long)end, axis, ad_shape_str(a, sh, sizeof sh));
        return false;
    }
    n->iparam[3] = axis;
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] = end - start;
    return ad_shape_set(n, a->ndim, shape, "ad_slice");
}

void fwd_slice(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    int axis = (int)n->iparam[3];
    int64_t outer, len, inner;
    geometry(a, axis, &outer, &len, &inner);
    const size_t es = n->g->elem;
    const int64_t take = n->shape[axis];
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)n->value + (size_t)(o * take * inner) * es,
               (const char *)a->value + (size_t)((o * len + n->iparam[1]) * inner) * es,
               (size_t)(take * inner) * es);
}

void fwd_slice_backward(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    int axis = (int)n->iparam[0];
    int64_t outer, len, inner;
    geometry(n, axis, &outer, &len, &inner);
    const size_t es = n->g->elem;
    const int64_t take = g->shape[axis];
    memset(n->value, 0, (size_t)n->numel * es);
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)n->value + (size_t)((o * len + n->iparam[1]) * inner) * es,
               (const char *)g->value + (size_t)(o * take * inner) * es,
               (size_t)(take * inner) * es);
}

ad_node *ad_slice(ad_node *a, int axis, int64_t start, int64_t end)
{
    if (!a)
        return NULL;
    int64_t ip[AD_MAX_IPARAMS] = {axis, start, end};
    return ad_node_make(a->g, AD_OP_SLICE, 1, &a, NULL, ip);
}

void bwd_slice(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_slice_backward(g, n->inputs[0], (int)n->iparam[3], n->iparam[1]);
}

void bwd_slice_backward(ad_node *n, ad_node *g, ad_node **d)
{
    int axis = (int)n->iparam[0];
    int64_t start = n->iparam[1];
    d[0] = ad_slice(g, axis, start, start + n->inputs[0]->shape[axis]);
}

/* ---------------------------------------------------------------- concat */

bool shape_concat(ad_node *n)
{
    ad_node *first = n->inputs[0];
    int axis = ad_norm_axis(n, first, n->iparam[0], "concat");
    if (axis < 0) {
        if (axis == -1)
            ad_fail(n->g, "ad_concat: AD_ALL is not an axis");
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, first->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < n->ninputs; k++) {
        ad_node *p = n->inputs[k];
        bool ok = p->ndim == first->ndim;
        for (int d = 0; ok && d < p->ndim; d++)
            if (d != axis && p->shape[d] != first->shape[d])
                ok = false;
        if (!ok) {
            char b1[96], b2[96];
            ad_fail(n->g, "ad_concat: part %d has shape %s, part 0 has %s (axis %d)", k,
                    ad_shape_str(p, b1, sizeof b1), ad_shape_str(first, b2, sizeof b2), axis);
            return false;
        }
        shape[axis] += p->shape[axis];
    }
    n->iparam[1] = axis;
    return ad_shape_set(n, first->ndim, shape, "ad_concat");
}

void fwd_concat(ad_node *n)
{
    int axis = (int)n->iparam[1];
    int64_t outer, len, inner;
    geometry(n, axis, &outer, &len, &inner);
    const size_t es = n->g->elem;
    int64_t at = 0;
    for (int k = 0; k < n->ninputs; k++) {
        const ad_node *p = n->inputs[k];
        const int64_t take = p->shape[axis];
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)n->value + (size_t)((o * len + at) * inner) * es,
                   (const char *)p->value + (size_t)(o * take * inner) * es,
                   (size_t)(take * inner) * es);
        at += take;
    }
}

ad_node *ad_concat(int n, ad_node *const *parts, int axis)
{
    if (n < 1 || !parts)
        return NULL;
    for (int k = 0; k < n; k++)
        if (!parts[k])
            return NULL;
    int64_t ip[1] = {axis};
    return ad_op_apply(AD_OP_CONCAT, n, parts, NULL, 0, ip, 1);
}

void bwd_concat(ad_node *n, ad_node *g, ad_node **d)
{
    int axis = (int)n->iparam[1];
    int64_t at = 0;
    for (int k = 0; k < n->ninputs; k++) {
        int64_t take = n->inputs[k]->shape[axis];
        if (n->inputs[k]->flags & NODE_REQGRAD)
            d[k] = ad_slice(g, axis, at, at + take);
        at += take;
    }
}

/* ---------------------------------------------------------------- broadcast */

bool shape_broadcast_to(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int nd = (int)n->iparam[0];
    if (nd < 0 || nd > AD_MAX_DIMS || !broadcasts_to(a, nd, n->iparam + 1)) {
        char b1[96];
        ad_fail(n->g, "ad_broadcast_to: shape %s does not broadcast to the %d-axis target",
                ad_shape_str(a, b1, sizeof b1), nd);
        return false;
    }
    return ad_shape_set(n, nd, n->iparam + 1, "ad_broadcast_to");
}

void fwd_broadcast(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    ad_bcast_iter it;
    ad_bcast_init(&it, n->ndim, n->shape, 1, &a);
    AD_DISPATCH(n->g, {
        const T *A = a->value;
        T *O = n->value;
        const int64_t s = it.st[0][it.nd - 1];
        for (int64_t r = 0; r < it.rows; r++) {
            const T *ra = A + it.off[0];
            T *ro = O + r * it.inner;
            for (int64_t i = 0; i < it.inner; i++)
                ro[i] = ra[i * s];
            ad_bcast_next(&it);
        }
    });
}

ad_node *ad_broadcast_to(ad_node *a, int ndim, const int64_t *shape)
{
    if (!a)
        return NULL;
    if (ndim < 0 || ndim > AD_MAX_DIMS || (ndim && !shape)) {
        ad_fail(a->g, "ad_broadcast_to: ndim %d is not in [0, %d] or shape is NULL", ndim,
                AD_MAX_DIMS);
        return NULL;
    }
    int64_t ip[AD_MAX_IPARAMS] = {ndim};
    for (int d = 0; d < ndim; d++)
        ip[1 + d] = shape[d];
    return ad_node_make(a->g, AD_OP_BROADCAST_TO, 1, &a, NULL, ip);
}

void bwd_broadcast(ad_node *n, ad_node *g, ad_node **d)
{
    (void)n;
    d[0] = g; /* the engine sums it back to the input's shape */
}

void fwd_sum_to(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    if (same_dims(g, n)) {
        memcpy(n->value, g->value, (size_t)n->numel * n->g->elem);
        return;
    }
    const ad_node *target = n;
    ad_bcast_iter it;
    ad_bcast_init(&it, g->ndim, g->shape, 1, &target);
    AD_DISPATCH(n->g, {
        const T *G = g->value;
        T *O = n->value;
        for (int64_t i = 0; i < n->numel; i++)
            O[i] = 0;
        const int64_t s = it.st[0][it.nd - 1];
        for (int64_t r = 0; r < it.rows; r++) {
            const T *rg = G + r * it.inner;
            T *ro = O + it.off[0];
            if (s == 0) {
                T acc = 0;
                for (int64_t i = 0; i < it.inner; i++)
                    acc += rg[i];
                ro[0] += acc;
            } else {
                for (int64_t i = 0; i < it.inner; i++)
                    ro[i] += rg[i];
            }
            ad_bcast_next(&it);
        }
    });
}

void bwd_sum_to(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_broadcast_like(g, n->inputs[0]); }

/* ---------------------------------------------------------------- one-hot */

bool shape_one_hot(ad_node *n)
{
    ad_node *a = n->inputs[0];
    if (n->iparam[0] < 1) {
        ad_fail(n->g, "ad_one_hot: %lld classes, need at least 1", (long long)n->iparam[0]);
        return false;
    }
    if (a->ndim + 1 > AD_MAX_DIMS) {
        ad_fail(n->g, "ad_one_hot: indices have %d axes, at most %d allowed", a->ndim,
                AD_MAX_DIMS - 1);
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    shape[a->ndim] = n->iparam[0];
    return ad_shape_set(n, a->ndim + 1, shape, "ad_one_hot");
}

void fwd_one_hot(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    const int64_t classes = n->iparam[0];
    AD_DISPATCH(n->g, {
        const T *I = a->value;
        T *O = n->value;
        memset(O, 0, sizeof(T) * (size_t)n->numel);
        for (int64_t i = 0; i < a->numel; i++) {
            T v = I[i];
            /* range first: converting NaN or a huge value to an integer is undefined */
            int64_t k = (v >= 0 && v < (T)classes) ? (int64_t)v : -1;
            if (k < 0 || (T)k != v) {
                ad_fail(n->g, "ad_one_hot: index %g at position %lld is not a class in [0, %lld)",
                        (double)v, (long long)i, (long long)classes);
                return;
            }
            O[i * classes + k] = 1;
        }
    });
}

ad_node *ad_one_hot(ad_node *indices, int64_t classes)
{
    if (!indices)
        return NULL;
    int64_t ip[AD_MAX_IPARAMS] = {classes};
    return ad_node_make(indices->g, AD_OP_ONE_HOT, 1, &indices, NULL, ip);
}
