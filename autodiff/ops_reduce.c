/* ops_reduce.c -- reductions over one axis (or all) and ops along an axis
 * (softmax, log-softmax), each with its shape rule, kernel and gradient rule.
 *
 * A tensor seen along axis k is (outer, len, inner) (ad_axis_geometry).
 * iparam: [0] the axis as given (negative counts from the end, AD_ALL),
 * [1] the axis normalized (-1 for AD_ALL), [2] keepdims: the reduced axis
 * stays with size 1 (every axis, for AD_ALL). Both forms have the same
 * memory layout, so one kernel serves them. */
#include <limits.h>
#include <tgmath.h>

#include "graph_impl.h"
#include "vmath_impl.h"

int ad_norm_axis(ad_node *n, ad_node *a, int64_t axis, const char *opname)
{
    if (axis == AD_ALL)
        return -1;
    int64_t k = axis < 0 ? axis + a->ndim : axis;
    if (k < 0 || k >= a->ndim) {
        char sh[96];
        ad_fail(n->g, "ad_%s: axis %lld is out of range for shape %s", opname, (long long)axis,
                ad_shape_str(a, sh, sizeof sh));
        return -2;
    }
    return (int)k;
}

/* ------------------------------------------------------------- shape rules */

bool ad_shape_reduce(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = ad_norm_axis(n, a, n->rare->iparam[0], ad_ops[n->op].name);
    if (axis == -2)
        return false;
    if ((n->op == AD_OP_MAX || n->op == AD_OP_MIN) && a->numel == 0) {
        ad_fail(n->g, "ad_%s: reduction of an empty tensor", ad_ops[n->op].name);
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < a->ndim; d++)
        if (n->rare->iparam[2])
            shape[nd++] = (axis < 0 || d == axis) ? 1 : a->shape[d];
        else if (axis >= 0 && d != axis)
            shape[nd++] = a->shape[d];
    n->rare->iparam[1] = axis; /* normalized */
    return ad_shape_set(n, nd, shape, ad_ops[n->op].name);
}

bool ad_shape_same_axis(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = ad_norm_axis(n, a, n->rare->iparam[0], ad_ops[n->op].name);
    if (axis == -2)
        return false;
    n->rare->iparam[1] = axis;
    return ad_shape_set(n, a->ndim, a->shape, ad_ops[n->op].name);
}

/* expand(g, like, axis, mean): g has like's shape without axis, or with
 * axis of size 1 (a keepdims reduction); any one-element g for AD_ALL */
bool ad_shape_expand_axis(ad_node *n)
{
    ad_node *g = n->inputs[0], *like = n->inputs[1];
    int axis = (int)n->rare->iparam[0];
    bool ok = true;
    if (axis < 0) {
        ok = g->numel == 1;
    } else if (axis >= like->ndim) {
        ok = false;
    } else if (g->ndim == like->ndim) {
        for (int d = 0; d < like->ndim; d++)
            if (g->shape[d] != (d == axis ? 1 : like->shape[d]))
                ok = false;
    } else if (g->ndim == like->ndim - 1) {
        for (int d = 0, e = 0; d < like->ndim; d++)
            if (d != axis && g->shape[e++] != like->shape[d])
                ok = false;
    } else {
        ok = false;
    }
    if (!ok) {
        char b1[96], b2[96];
        ad_fail(n->g, "ad_expand: shape %s is not %s reduced over axis %d",
                ad_shape_str(g, b1, sizeof b1), ad_shape_str(like, b2, sizeof b2), axis);
        return false;
    }
    return ad_shape_set(n, like->ndim, like->shape, "ad_expand");
}

/* ------------------------------------------------------------- kernels */

/* A sum along an axis of contiguous values (inner 1) of at least
 * AD_SUM_LANES_FROM values runs in SUM_LANES partial sums (see ad_fwd_reduce); the
 * shorter sums of the MLP's losses and biases keep the order they had. */
#define SUM_LANES 32

/* OUT = the sum of EXPR (an expression of the index j) over j < LEN, with
 * value j going to partial sum j mod LANES (a power of two), which the
 * compiler keeps in vector registers: one addition's latency per vector,
 * not per value. The partial sums are added in a fixed tree, then the
 * values past the last whole group of LANES in order: the order depends on
 * LEN only, so a sum is reproducible. */
#define LANE_SUM(T, LANES, LEN, EXPR, OUT)                                                         \
    do {                                                                                           \
        T lane_[LANES] = {0};                                                                      \
        int64_t j0_ = 0;                                                                           \
        for (; j0_ + (LANES) <= (LEN); j0_ += (LANES))                                             \
            for (int k_ = 0; k_ < (LANES); k_++) {                                                 \
                const int64_t j = j0_ + k_;                                                        \
                lane_[k_] += (EXPR);                                                               \
            }                                                                                      \
        for (int w_ = (LANES) / 2; w_ > 0; w_ /= 2)                                                \
            for (int k_ = 0; k_ < w_; k_++)                                                        \
                lane_[k_] += lane_[k_ + w_];                                                       \
        T acc_ = lane_[0];                                                                         \
        for (int64_t j = j0_; j < (LEN); j++)                                                      \
            acc_ += (EXPR);                                                                        \
        OUT = acc_;                                                                                \
    } while (0)

void ad_fwd_reduce(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    int64_t outer, len, inner;
    ad_axis_geometry(a, (int)n->rare->iparam[1], &outer, &len, &inner);
    const int op = n->op;
    /* logsumexp of an empty axis is log(0) = -inf, as in NumPy and PyTorch */
    // cppcheck-suppress invalidFunctionArg
    AD_DISPATCH(n->g, {
        const T *X = a->value;
        T *O = n->value;
        for (int64_t o = 0; o < outer; o++) {
            const T *x = X + o * len * inner;
            T *y = O + o * inner;
            if ((op == AD_OP_SUM || op == AD_OP_MEAN) && inner == 1) {
                /* register accumulators (y may alias x for the compiler).
                 * A long run of values goes to SUM_LANES partial sums
                 * (LANE_SUM) added in a fixed tree at the end; a short one
                 * is added in order. Either way the order depends on len
                 * only, so a sum is reproducible. */
                T acc = 0;
                if (len >= AD_SUM_LANES_FROM) {
                    LANE_SUM(T, SUM_LANES, len, x[j], acc);
                } else {
                    for (int64_t r = 0; r < len; r++)
                        acc += x[r];
                }
                y[0] = op == AD_OP_MEAN ? (len ? acc / (T)len : (T)NAN) : acc;
            } else if (op == AD_OP_SUM || op == AD_OP_MEAN) {
                for (int64_t i = 0; i < inner; i++)
                    y[i] = 0;
                for (int64_t r = 0; r < len; r++)
                    for (int64_t i = 0; i < inner; i++)
                        y[i] += x[r * inner + i];
                if (op == AD_OP_MEAN)
                    for (int64_t i = 0; i < inner; i++)
                        y[i] = len ? y[i] / (T)len : (T)NAN;
            } else if (op == AD_OP_MAX || op == AD_OP_MIN) {
                for (int64_t i = 0; i < inner; i++)
                    y[i] = x[i];
                for (int64_t r = 1; r < len; r++)
                    for (int64_t i = 0; i < inner; i++) {
                        T v = x[r * inner + i];
                        if (op == AD_OP_MAX ? (v > y[i] || v != v) : (v < y[i] || v != v))
                            y[i] = v;
                    }
            } else { /* LOGSUMEXP */
                for (int64_t i = 0; i < inner; i++) {
                    T m = -INFINITY;
                    for (int64_t r = 0; r < len; r++)
                        if (x[r * inner + i] > m)
                            m = x[r * inner + i];
                    if (isinf(m)) {
                        y[i] = m;
                        continue;
                    }
                    T s = 0;
                    for (int64_t r = 0; r < len; r++)
                        s += exp(x[r * inner + i] - m);
                    y[i] = m + log(s);
                }
            }
        }
    });
}

static void softmax_kernel(ad_node *n, bool logarithm)
{
    const ad_node *a = n->inputs[0];
    if (n->numel == 0)
        return; /* an empty axis beside huge ones would loop outer x inner times for nothing */
    int64_t outer, len, inner;
    ad_axis_geometry(a, (int)n->rare->iparam[1], &outer, &len, &inner);
    AD_DISPATCH(n->g, {
        const T *X = a->value;
        T *Y = n->value;
        if (inner == 1) { /* the last axis: rows of len contiguous values */
            for (int64_t o = 0; o < outer; o++) {
                const T *x = X + o * len;
                T *y = Y + o * len;
                T m = -INFINITY;
                for (int64_t r = 0; r < len; r++)
                    if (x[r] > m)
                        m = x[r];
                if (isinf(m) && m < 0)
                    m = 0;
                /* the exponentials in a loop of their own, which vectorizes
                 * for float (vmath_impl.h), then their sum */
                for (int64_t r = 0; r < len; r++)
                    y[r] = ad_exp_elem(x[r] - m);
                T s;
                LANE_SUM(T, 8, len, y[j], s);
                if (logarithm) {
                    T shift = m + log(s);
                    for (int64_t r = 0; r < len; r++)
                        y[r] = x[r] - shift;
                } else {
                    T inv = 1 / s;
                    for (int64_t r = 0; r < len; r++)
                        y[r] *= inv;
                }
            }
            return;
        }
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                const T *x = X + o * len * inner + i;
                T *y = Y + o * len * inner + i;
                T m = -INFINITY;
                for (int64_t r = 0; r < len; r++)
                    if (x[r * inner] > m)
                        m = x[r * inner];
                if (isinf(m) && m < 0)
                    m = 0;
                T s = 0;
                for (int64_t r = 0; r < len; r++) {
                    T e = exp(x[r * inner] - m);
                    s += e;
                    if (!logarithm)
                        y[r * inner] = e;
                }
                if (logarithm) {
                    T shift = m + log(s);
                    for (int64_t r = 0; r < len; r++)
                        y[r * inner] = x[r * inner] - shift;
                } else {
                    T inv = 1 / s;
                    for (int64_t r = 0; r < len; r++)
                        y[r * inner] *= inv;
                }
            }
    });
}

void ad_fwd_softmax(ad_node *n) { softmax_kernel(n, false); }
void ad_fwd_log_softmax(ad_node *n) { softmax_kernel(n, true); }

void ad_fwd_expand_axis(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    int axis = (int)n->rare->iparam[0];
    bool mean = n->rare->iparam[1] != 0;
    int64_t outer, len, inner;
    ad_axis_geometry(n, axis, &outer, &len, &inner);
    AD_DISPATCH(n->g, {
        const T *G = g->value;
        T *O = n->value;
        const T scale = mean ? (T)1 / (T)len : (T)1;
        for (int64_t o = 0; o < outer; o++) {
            if (inner == 1) { /* one value repeated: read it once (O may alias G) */
                const T v = G[o] * scale;
                for (int64_t r = 0; r < len; r++)
                    O[o * len + r] = v;
                continue;
            }
            for (int64_t r = 0; r < len; r++)
                for (int64_t i = 0; i < inner; i++)
                    O[(o * len + r) * inner + i] = G[o * inner + i] * scale;
        }
    });
}

/* ------------------------------------------------------------- public API */

static ad_node *axis_op(int op, ad_node *a, int axis, bool keepdims)
{
    if (!a)
        return NULL;
    int64_t ip[AD_MAX_IPARAMS] = {axis, 0, keepdims};
    return ad_node_make(a->g, op, 1, &a, NULL, ip);
}

ad_node *ad_sum(ad_node *a, int axis) { return axis_op(AD_OP_SUM, a, axis, false); }
ad_node *ad_mean(ad_node *a, int axis) { return axis_op(AD_OP_MEAN, a, axis, false); }
ad_node *ad_max(ad_node *a, int axis) { return axis_op(AD_OP_MAX, a, axis, false); }
ad_node *ad_min(ad_node *a, int axis) { return axis_op(AD_OP_MIN, a, axis, false); }
ad_node *ad_logsumexp(ad_node *a, int axis) { return axis_op(AD_OP_LOGSUMEXP, a, axis, false); }
ad_node *ad_sum_keepdims(ad_node *a, int axis) { return axis_op(AD_OP_SUM, a, axis, true); }
ad_node *ad_mean_keepdims(ad_node *a, int axis) { return axis_op(AD_OP_MEAN, a, axis, true); }
ad_node *ad_max_keepdims(ad_node *a, int axis) { return axis_op(AD_OP_MAX, a, axis, true); }
ad_node *ad_min_keepdims(ad_node *a, int axis) { return axis_op(AD_OP_MIN, a, axis, true); }
ad_node *ad_logsumexp_keepdims(ad_node *a, int axis)
{
    return axis_op(AD_OP_LOGSUMEXP, a, axis, true);
}
ad_node *ad_softmax(ad_node *a, int axis) { return axis_op(AD_OP_SOFTMAX, a, axis, false); }
ad_node *ad_log_softmax(ad_node *a, int axis) { return axis_op(AD_OP_LOG_SOFTMAX, a, axis, false); }

ad_node *ad_expand_axis(ad_node *g, ad_node *like, int axis, bool mean)
{
    if (!g || !like)
        return NULL;
    ad_node *in[2] = {g, like};
    int64_t ip[AD_MAX_IPARAMS] = {axis, mean};
    return ad_node_make(g->g, AD_OP_EXPAND_AXIS, 2, in, NULL, ip);
}

/* ------------------------------------------------------------- gradient rules */

static int norm_axis(const ad_node *n) { return (int)n->rare->iparam[1]; }

void ad_bwd_sum(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_expand_axis(g, n->inputs[0], norm_axis(n), false);
}

void ad_bwd_mean(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_expand_axis(g, n->inputs[0], norm_axis(n), true);
}

void ad_bwd_maxmin(ad_node *n, ad_node *g, ad_node **d)
{
    /* the gradient is shared equally among the elements equal to the result */
    ad_node *a = n->inputs[0];
    int axis = norm_axis(n);
    ad_node *hit = ad_detach(ad_eq(a, ad_expand_axis(n, a, axis, false)));
    ad_node *count = ad_expand_axis(ad_sum(hit, axis < 0 ? AD_ALL : axis), a, axis, false);
    d[0] = ad_div(ad_mul(ad_expand_axis(g, a, axis, false), hit), count);
}

void ad_bwd_logsumexp(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *a = n->inputs[0];
    int axis = norm_axis(n);
    ad_node *soft = ad_exp(ad_sub(a, ad_expand_axis(n, a, axis, false)));
    d[0] = ad_mul(ad_expand_axis(g, a, axis, false), soft);
}

void ad_bwd_softmax(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_softmax_grad(n, g, norm_axis(n)); /* y (g − sum(g y)) */
}

/* ---------------------------------------------------------- softmax_grad */

/* softmax_grad(y, g) = y (g − sum(g y)) along iparam[0] (an axis, or -1 for
 * all axes): the softmax's vector-Jacobian product for y = softmax(a), one
 * node (and one pass per row) instead of five. */
bool ad_shape_softmax_grad(ad_node *n)
{
    const ad_node *y = n->inputs[0], *g = n->inputs[1];
    char b1[96], b2[96];
    if (!ad_same_shape(g, y)) {
        ad_fail(n->g, "ad_softmax_grad: gradient %s does not match %s",
                ad_shape_str(g, b1, sizeof b1), ad_shape_str(y, b2, sizeof b2));
        return false;
    }
    if (n->rare->iparam[0] < -1 || n->rare->iparam[0] >= (y->ndim ? y->ndim : 1)) {
        ad_fail(n->g, "ad_softmax_grad: axis %lld of %s", (long long)n->rare->iparam[0],
                ad_shape_str(y, b1, sizeof b1));
        return false;
    }
    return ad_shape_set(n, y->ndim, y->shape, "ad_softmax_grad");
}

void ad_fwd_softmax_grad(ad_node *n)
{
    const ad_node *yn = n->inputs[0], *gn = n->inputs[1];
    int64_t outer, len, inner;
    ad_axis_geometry(yn, yn->ndim ? (int)n->rare->iparam[0] : -1, &outer, &len, &inner);
    if (n->numel == 0)
        return;
    AD_DISPATCH(n->g, {
        const T *Y = yn->value, *G = gn->value;
        T *Z = n->value;
        for (int64_t o = 0; o < outer; o++)
            if (inner == 1) { /* a contiguous row */
                const T *y = Y + o * len, *g = G + o * len;
                T *z = Z + o * len;
                T dot;
                LANE_SUM(T, 8, len, g[j] * y[j], dot);
                for (int64_t r = 0; r < len; r++)
                    z[r] = y[r] * (g[r] - dot);
            } else {
                for (int64_t i = 0; i < inner; i++) {
                    const T *y = Y + o * len * inner + i, *g = G + o * len * inner + i;
                    T *z = Z + o * len * inner + i;
                    T dot = 0;
                    for (int64_t r = 0; r < len; r++)
                        dot += g[r * inner] * y[r * inner];
                    for (int64_t r = 0; r < len; r++)
                        z[r * inner] = y[r * inner] * (g[r * inner] - dot);
                }
            }
    });
}

ad_node *ad_softmax_grad(ad_node *y, ad_node *g, int axis)
{
    if (!y || !g)
        return NULL;
    ad_node *in[2] = {y, g};
    int64_t ip[AD_MAX_IPARAMS] = {axis < 0 ? -1 : axis};
    return ad_node_make(y->g, AD_OP_SOFTMAX_GRAD, 2, in, NULL, ip);
}

/* z = y (g − s), s = sum(g y): ∂/∂g is softmax_grad(y, u) (its Jacobian
 * diag(y) − y yᵀ is symmetric); ∂/∂y = u (g − s) − g sum(u y). */
void ad_bwd_softmax_grad(ad_node *n, ad_node *u, ad_node **d)
{
    ad_node *y = n->inputs[0], *g = n->inputs[1];
    int axis = (int)n->rare->iparam[0];
    if (g->flags & NODE_REQGRAD)
        d[1] = ad_softmax_grad(y, u, axis);
    if (!(y->flags & NODE_REQGRAD))
        return;
    int red = axis < 0 ? AD_ALL : axis;
    ad_node *s = ad_expand_axis(ad_sum(ad_mul(g, y), red), y, axis, false);
    ad_node *t = ad_expand_axis(ad_sum(ad_mul(u, y), red), y, axis, false);
    d[0] = ad_sub(ad_mul(u, ad_sub(g, s)), ad_mul(g, t));
}

void ad_bwd_log_softmax(ad_node *n, ad_node *g, ad_node **d)
{
    /* g - softmax(a) * sum(g), with softmax(a) = exp(y) */
    int axis = norm_axis(n);
    ad_node *total = ad_sum(g, axis < 0 ? AD_ALL : axis);
    d[0] = ad_sub(g, ad_mul(ad_exp(n), ad_expand_axis(total, n, axis, false)));
}

void ad_bwd_expand_axis(ad_node *n, ad_node *g, ad_node **d)
{
    /* back to the form the upstream gradient came in: reduced or keepdims */
    ad_node *in = n->inputs[0];
    int axis = (int)n->rare->iparam[0];
    bool keep = in->ndim == n->ndim;
    ad_node *r =
        axis_op(n->rare->iparam[1] ? AD_OP_MEAN : AD_OP_SUM, g, axis < 0 ? AD_ALL : axis, keep);
    if (r && r->ndim != in->ndim) /* a one-element g of another rank (AD_ALL) */
        r = ad_reshape_like(r, in);
    d[0] = r;
}

/* ------------------------------------------ softmax cross-entropy (fused) */

bool ad_shape_softmax_ce(ad_node *n)
{
    const ad_node *z = n->inputs[0], *l = n->inputs[1];
    const char *fn = ad_ops[n->op].name;
    char b1[96], b2[96];
    if (z->ndim != 2 || z->shape[1] < 1) {
        ad_fail(n->g, "ad_%s: logits %s must be (rows, classes) with at least one class", fn,
                ad_shape_str(z, b1, sizeof b1));
        return false;
    }
    if (l->ndim != 1 || l->shape[0] != z->shape[0]) {
        ad_fail(n->g, "ad_%s: labels %s must hold one class number per row of logits %s", fn,
                ad_shape_str(l, b1, sizeof b1), ad_shape_str(z, b2, sizeof b2));
        return false;
    }
    if (n->op == AD_OP_SOFTMAX_CE)
        return ad_shape_set(n, 0, NULL, fn);
    if (n->inputs[2]->numel != 1) {
        ad_fail(n->g, "ad_%s: the upstream gradient %s must have one element", fn,
                ad_shape_str(n->inputs[2], b1, sizeof b1));
        return false;
    }
    return ad_shape_set(n, 2, z->shape, fn);
}

/* The class of row r, or -1 with the graph's error set. */
static int64_t class_of(ad_node *n, double v, int64_t r, int64_t classes)
{
    /* range first: converting NaN or a huge value to an integer is undefined */
    int64_t k = (v >= 0 && v < (double)classes) ? (int64_t)v : -1;
    if (k < 0 || (double)k != v) {
        ad_fail(n->g, "ad_%s: label %g of row %lld is not a class in [0, %lld)", ad_ops[n->op].name,
                v, (long long)r, (long long)classes);
        return -1;
    }
    return k;
}

/* Row r of the logits: its maximum and sum of exp(z - max), for a stable
 * logsumexp = max + log(sum) and softmax = exp(z - max) / sum. */
#define ROW_STATS(T, zr, C, mx, sum)                                                               \
    T mx = zr[0];                                                                                  \
    for (int64_t c = 1; c < C; c++)                                                                \
        mx = zr[c] > mx ? zr[c] : mx;                                                              \
    T sum = exp(zr[0] - mx);                                                                       \
    for (int64_t c = 1; c < C; c++)                                                                \
        sum += exp(zr[c] - mx);

/* Every label a class of C? (the first bad one sets the graph's error) */
static bool labels_valid(ad_node *n, const ad_node *l, int64_t C)
{
    AD_DISPATCH(n->g, {
        const T *L = l->value;
        for (int64_t r = 0; r < l->numel; r++)
            if (class_of(n, (double)L[r], r, C) < 0)
                return false;
    });
    return true;
}

/* The forward's loss is summed in chunks of SCE_CHUNK rows (more when that
 * makes over SCE_CHUNKS chunks), each chunk in order, then the chunks' sums
 * in order: the same sum for any thread count (chunks are split over the
 * threads). */
#define SCE_CHUNK 32
#define SCE_CHUNKS 64
/* Rows × classes from which the threads share the rows: three exp per
 * element (forward and gradient) pay for waking them much sooner than an
 * elementwise loop does. */
#define SCE_PARALLEL_MIN 2048

void ad_fwd_softmax_ce(ad_node *n)
{
    const ad_node *z = n->inputs[0], *l = n->inputs[1];
    const int64_t rows = z->shape[0], C = z->shape[1];
    if (!labels_valid(n, l, C))
        return;
    int64_t per = (rows + SCE_CHUNKS - 1) / SCE_CHUNKS; /* rows per chunk */
    per = per > SCE_CHUNK ? per : SCE_CHUNK;
    const int64_t chunks = (rows + per - 1) / per;
    AD_DISPATCH(n->g, {
        const T *Z = z->value, *L = l->value;
        T part[SCE_CHUNKS]; /* a chunk's sum each */
        AD_FOR_SPLIT(ch, chunks, chunks > 1 && rows * C >= SCE_PARALLEL_MIN, {
            const int64_t end = (ch + 1) * per < rows ? (ch + 1) * per : rows;
            T total = 0;
            for (int64_t r = ch * per; r < end; r++) {
                const T *zr = Z + r * C;
                const int64_t k = (int64_t)L[r];
                ROW_STATS(T, zr, C, mx, sum)
                total += mx + log(sum) - zr[k];
            }
            part[ch] = total;
        });
        T total = 0;
        for (int64_t ch = 0; ch < chunks; ch++)
            total += part[ch];
        *(T *)n->value = total / (T)rows;
    });
}

void ad_fwd_softmax_ce_grad(ad_node *n)
{
    const ad_node *z = n->inputs[0], *l = n->inputs[1];
    const int64_t rows = z->shape[0], C = z->shape[1];
    if (!labels_valid(n, l, C))
        return;
    AD_DISPATCH(n->g, {
        const T *Z = z->value, *L = l->value;
        const T scale = *(const T *)n->inputs[2]->value / (T)rows;
        T *O = n->value;
        AD_FOR_SPLIT(r, rows, rows > 1 && rows * C >= SCE_PARALLEL_MIN, {
            const T *zr = Z + r * C;
            T *o = O + r * C;
            const int64_t k = (int64_t)L[r];
            /* ROW_STATS with each exp(z - max) kept in o: one exp per element */
            T mx = zr[0];
            for (int64_t c = 1; c < C; c++)
                mx = zr[c] > mx ? zr[c] : mx;
            T sum = 0; /* 0 + exp(z[0] - max) is ROW_STATS's first term, exactly */
            for (int64_t c = 0; c < C; c++) {
                o[c] = exp(zr[c] - mx);
                sum += o[c];
            }
            const T inv = 1 / sum;
            for (int64_t c = 0; c < C; c++)
                o[c] = (o[c] * inv - (c == k ? 1 : 0)) * scale;
        });
    });
}

ad_node *ad_softmax_cross_entropy(ad_node *logits, ad_node *labels)
{
    if (!logits || !labels)
        return NULL;
    ad_node *in[2] = {logits, labels};
    return ad_op_apply(AD_OP_SOFTMAX_CE, 2, in, NULL, 0, NULL, 0);
}

ad_node *ad_softmax_cross_entropy_grad(ad_node *z, ad_node *labels, ad_node *g)
{
    if (!z || !labels || !g)
        return NULL;
    ad_node *in[3] = {z, labels, g};
    return ad_node_make(z->g, AD_OP_SOFTMAX_CE_GRAD, 3, in, NULL, NULL);
}

void ad_bwd_softmax_ce(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_softmax_cross_entropy_grad(n->inputs[0], n->inputs[1], g);
}

void ad_bwd_softmax_ce_grad(ad_node *n, ad_node *g, ad_node **d)
{
    /* y = (s − onehot)·c/rows with s = softmax(z), c the upstream scalar */
    ad_node *z = n->inputs[0], *c = n->inputs[2];
    const double inv_rows = 1.0 / (double)z->shape[0];
    ad_node *s = ad_softmax(z, 1);
    if (z->flags & NODE_REQGRAD) /* the softmax rule applied to g·c/rows */
        ad_bwd_softmax(s, ad_scale(ad_mul(g, c), inv_rows), &d[0]);
    if (c->flags & NODE_REQGRAD) {
        ad_node *diff = ad_sub(s, ad_one_hot(n->inputs[1], z->shape[1]));
        d[2] = ad_scale(ad_sum(ad_mul(g, diff), AD_ALL), inv_rows);
    }
}

/* ------------------------------------------------------------ layer norm */

/* layer_norm(x) = (x − mean) / sqrt(var + eps) over the last axis (biased
 * variance; nn_layer_norm adds the affine part); layer_norm_grad(x, g) is
 * its vector-Jacobian product. Per row of n values, with y = layer_norm(x)
 * and r = 1/sqrt(var + eps), the Jacobian is J = r (I − 11ᵀ/n − yyᵀ/n),
 * symmetric, so
 *   layer_norm_grad(x, g) = J g = r (g − mean(g) − y mean(g y)).
 * One kernel each instead of the 8 nodes of the composition forward and
 * its ~20 backward (means, broadcasts and their sums over the last axis). */
bool ad_shape_layer_norm(ad_node *n)
{
    const ad_node *x = n->inputs[0];
    const char *fn = ad_ops[n->op].name;
    char b1[96], b2[96];
    if (x->ndim < 1) {
        ad_fail(n->g, "ad_%s: input %s has no axis to normalize", fn,
                ad_shape_str(x, b1, sizeof b1));
        return false;
    }
    if (n->op == AD_OP_LAYER_NORM_GRAD) {
        const ad_node *g = n->inputs[1];
        if (!ad_same_shape(g, x)) {
            ad_fail(n->g, "ad_%s: gradient %s does not match input %s", fn,
                    ad_shape_str(g, b1, sizeof b1), ad_shape_str(x, b2, sizeof b2));
            return false;
        }
    }
    return ad_shape_set(n, x->ndim, x->shape, fn);
}

bool ad_check_layer_norm(const ad_node *n)
{
    double eps = n->fparam[0];
    if (eps > 0 && isfinite(eps) && n->fparam[1] == 0)
        return true;
    ad_fail(n->g, "ad_%s: eps %g must be a finite number > 0 (and the second parameter 0, not %g)",
            ad_ops[n->op].name, eps, n->fparam[1]);
    return false;
}

/* Both kernels: each row's mean and 1/sqrt(var + eps) = r in two passes,
 * then the row written; GRAD (0 or 1) adds the vector-Jacobian product's
 * two means. Every value of a row is read before it is written. */
#define LAYER_NORM_KERNEL(GRAD)                                                                    \
    do {                                                                                           \
        const ad_node *x_ = n->inputs[0];                                                          \
        const int64_t len = x_->shape[x_->ndim - 1];                                               \
        if (n->numel == 0)                                                                         \
            return;                                                                                \
        const int64_t rows = n->numel / len;                                                       \
        AD_DISPATCH(n->g, {                                                                        \
            const T eps = (T)n->fparam[0], inv_len = (T)1 / (T)len;                                \
            const T *X = x_->value, *G = GRAD ? n->inputs[1]->value : NULL;                        \
            T *Y = n->value;                                                                       \
            for (int64_t o = 0; o < rows; o++) {                                                   \
                const T *x = X + o * len;                                                          \
                T *y = Y + o * len;                                                                \
                T s, v;                                                                            \
                LANE_SUM(T, 8, len, x[j], s);                                                      \
                const T mu = s * inv_len;                                                          \
                LANE_SUM(T, 8, len, (x[j] - mu) * (x[j] - mu), v);                                 \
                const T r = 1 / sqrt(v * inv_len + eps);                                           \
                if (!GRAD) {                                                                       \
                    for (int64_t i = 0; i < len; i++)                                              \
                        y[i] = (x[i] - mu) * r;                                                    \
                    continue;                                                                      \
                }                                                                                  \
                const T *g = G + o * len;                                                          \
                T sg, sgc;                                                                         \
                LANE_SUM(T, 8, len, g[j], sg);                                                     \
                LANE_SUM(T, 8, len, g[j] * (x[j] - mu), sgc);                                      \
                /* mean(g), and mean(g y) r for the r y = r² (x − mu) term */                   \
                const T mg = sg * inv_len, k = sgc * inv_len * r * r;                              \
                for (int64_t i = 0; i < len; i++)                                                  \
                    y[i] = (g[i] - mg - (x[i] - mu) * k) * r;                                      \
            }                                                                                      \
        });                                                                                        \
    } while (0)

void ad_fwd_layer_norm(ad_node *n) { LAYER_NORM_KERNEL(0); }
void ad_fwd_layer_norm_grad(ad_node *n) { LAYER_NORM_KERNEL(1); }

ad_node *ad_layer_norm(ad_node *x, double eps)
{
    if (!x)
        return NULL;
    double fp[AD_MAX_FPARAMS] = {eps};
    return ad_node_make(x->g, AD_OP_LAYER_NORM, 1, &x, fp, NULL);
}

ad_node *ad_layer_norm_grad(ad_node *x, ad_node *g, double eps)
{
    if (!x || !g)
        return NULL;
    ad_node *in[2] = {x, g};
    double fp[AD_MAX_FPARAMS] = {eps};
    return ad_node_make(x->g, AD_OP_LAYER_NORM_GRAD, 2, in, fp, NULL);
}

void ad_bwd_layer_norm(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_layer_norm_grad(n->inputs[0], g, n->fparam[0]);
}

/* The derivative of J g (n itself) given u = ∂L/∂(J g): in g, J u (J is
 * symmetric); in x, per row (means over the last axis, r = 1/sqrt(var +
 * eps), y = layer_norm(x)):
 *   −r (mean(u·Jg) y + mean(g y) J u + mean(u y) J g),
 * from ∂r = −r² mean(y ∂x) and ∂y = J ∂x. Built from ops (layer_norm_grad
 * among them), so it is differentiable again. */
void ad_bwd_layer_norm_grad(ad_node *n, ad_node *u, ad_node **d)
{
    ad_node *x = n->inputs[0], *g = n->inputs[1];
    const double eps = n->fparam[0];
    ad_node *ju = ad_layer_norm_grad(x, u, eps);
    if (g->flags & NODE_REQGRAD)
        d[1] = ju;
    if (!(x->flags & NODE_REQGRAD))
        return;
    const int last = x->ndim - 1;
    ad_node *y = ad_layer_norm(x, eps);
    ad_node *c = ad_sub(x, ad_mean_keepdims(x, last));
    ad_node *r = ad_pow(ad_affine(ad_mean_keepdims(ad_mul(c, c), last), 1.0, eps), -0.5);
    ad_node *m_udx = ad_mean_keepdims(ad_mul(u, n), last);
    ad_node *m_gy = ad_mean_keepdims(ad_mul(g, y), last);
    ad_node *m_uy = ad_mean_keepdims(ad_mul(u, y), last);
    ad_node *sum = ad_add(ad_add(ad_mul(m_udx, y), ad_mul(m_gy, ju)), ad_mul(m_uy, n));
    d[0] = ad_neg(ad_mul(r, sum));
}
