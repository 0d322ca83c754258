/* ops_shape.c -- ops that move elements without arithmetic: reshape, slice,
 * concat, broadcast, the sum back over broadcast axes, one-hot. The "_like"
 * ops take their output shape from a second operand, so a backward pass
 * follows the forward shapes when a batch size changes on replay. */
#include <string.h>

#include "graph_impl.h"
#include "vmath_impl.h"

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

/* ---------------------------------------------------------------- reshape */

/* Single-axis ops reject AD_ALL; returns the normalized axis or -1 (error set). */
static int one_axis(ad_node *n, ad_node *a, int64_t axis, const char *opname)
{
    int k = ad_norm_axis(n, a, axis, opname);
    if (k == -1)
        ad_fail(n->g, "ad_%s: AD_ALL is not an axis", opname);
    return k < 0 ? -1 : k;
}

/* After the input changed shape on replay (ad_resize): the reshape still
 * means what it meant when built only if the changed input axes k..k2 land
 * inside one output axis j written 0 or -1, with the same elements before
 * it (prefix products equal) and a whole number of output rows per block of
 * the axes after them. Otherwise the data would be silently reinterpreted
 * ((4,3,2) -> (4,-1) read as (4,3) after a resize to 2). */
static bool reshape_follows(ad_node *n, const int64_t *shape, bool counts_ok)
{
    ad_node *a = n->inputs[0];
    const int64_t *built = n->rare->op_data + 1;
    int r = (int)n->rare->op_data[0], nd = (int)n->rare->iparam[0];
    if (r == a->ndim && memcmp(built, a->shape, sizeof(int64_t) * (size_t)r) == 0)
        return true;
    bool ok = counts_ok && r == a->ndim;
    if (ok) {
        int k = 0, k2 = r - 1;
        while (built[k] == a->shape[k])
            k++;
        while (built[k2] == a->shape[k2])
            k2--;
        int64_t pre = 1, post = 1, prefix = 1;
        for (int d = 0; d < k; d++)
            pre *= a->shape[d];
        for (int d = k2 + 1; d < r; d++)
            post *= a->shape[d];
        ok = false;
        for (int j = 0; j < nd && !ok && prefix <= pre; j++) {
            int64_t tail = 1;
            for (int d = j + 1; d < nd; d++)
                tail *= shape[d];
            int64_t spec = n->rare->iparam[1 + j];
            ok = prefix == pre && (spec == 0 || spec == -1) && tail && post % tail == 0;
            prefix *= shape[j];
        }
    }
    if (!ok) {
        char b1[96], b2[96], b3[96];
        ad_fail(n->g,
                "ad_reshape: the input changed from %s to %s (ad_resize) and the new shape %s "
                "does not follow it; write 0 (keep) or -1 (infer) for the axis that holds the "
                "changed one",
                ad_dims_str(r, built, b1, sizeof b1), ad_shape_str(a, b2, sizeof b2),
                ad_dims_str(nd, n->rare->iparam + 1, b3, sizeof b3));
    }
    return ok;
}

bool ad_shape_reshape(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int nd = (int)n->rare->iparam[0];
    int64_t shape[AD_MAX_DIMS] = {0}, known = 1;
    int infer = -1;
    char b1[96], b2[96];
    if (nd < 0 || nd > AD_MAX_DIMS) {
        ad_fail(n->g, "ad_reshape: ndim %d is not in [0, %d]", nd, AD_MAX_DIMS);
        return false;
    }
    for (int d = 0; d < nd; d++) {
        shape[d] = n->rare->iparam[1 + d];
        if (shape[d] == -1) {
            if (infer >= 0) {
                ad_fail(n->g, "ad_reshape: more than one axis is -1 in %s",
                        ad_dims_str(nd, n->rare->iparam + 1, b1, sizeof b1));
                return false;
            }
            infer = d;
            shape[d] = 1;
        } else if (shape[d] == 0) {
            if (d >= a->ndim) {
                ad_fail(n->g,
                        "ad_reshape: axis %d of %s is 0 (keep the input's axis %d) but %s "
                        "has %d axes",
                        d, ad_dims_str(nd, n->rare->iparam + 1, b1, sizeof b1), d,
                        ad_shape_str(a, b2, sizeof b2), a->ndim);
                return false;
            }
            shape[d] = a->shape[d];
        } else if (shape[d] < 0) {
            ad_fail(n->g, "ad_reshape: axis %d has negative size %lld", d, (long long)shape[d]);
            return false;
        }
    }
    if (!ad_shape_numel(nd, shape, &known)) {
        ad_fail(n->g, "ad_reshape: the element count of %s overflows",
                ad_dims_str(nd, n->rare->iparam + 1, b1, sizeof b1));
        return false;
    }
    bool counts_ok = infer >= 0 ? known != 0 && a->numel % known == 0 : known == a->numel;
    if (counts_ok && infer >= 0)
        shape[infer] = a->numel / known;
    if (n->rare->op_data) { /* a replay: it must still mean what it meant when built */
        if (!reshape_follows(n, shape, counts_ok))
            return false;
    } else if (counts_ok) { /* first inference: remember the input shape */
        if (!ad_node_rare_own(n))
            return false;
        n->rare->op_data = ad_arena_alloc(n->g, sizeof(int64_t) * (size_t)(a->ndim + 1));
        if (!n->rare->op_data)
            return false;
        n->rare->op_data[0] = a->ndim;
        memcpy(n->rare->op_data + 1, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    }
    if (!counts_ok && infer >= 0) {
        ad_fail(n->g, "ad_reshape: cannot infer axis %d of %s reshaping %s (%lld elements)", infer,
                ad_dims_str(nd, n->rare->iparam + 1, b1, sizeof b1), ad_shape_str(a, b2, sizeof b2),
                (long long)a->numel);
        return false;
    }
    if (!counts_ok) {
        ad_fail(n->g, "ad_reshape: %s has %lld elements, the new shape %s has %lld",
                ad_shape_str(a, b1, sizeof b1), (long long)a->numel,
                ad_dims_str(nd, n->rare->iparam + 1, b2, sizeof b2), (long long)known);
        return false;
    }
    return ad_shape_set(n, nd, shape, "ad_reshape");
}

bool ad_shape_like(ad_node *n)
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
        int axis = (int)n->rare->iparam[0];
        ok = a->ndim == like->ndim && axis >= 0 && axis < a->ndim && n->rare->iparam[1] >= 0 &&
             n->rare->iparam[1] <= like->shape[axis] - a->shape[axis];
        for (int d = 0; ok && d < a->ndim; d++)
            if (d != axis && a->shape[d] != like->shape[d])
                ok = false;
        break;
    }
    case AD_OP_SLICE_STEP_BACKWARD: {
        int axis = (int)n->rare->iparam[0];
        int64_t start = n->rare->iparam[1], step = n->rare->iparam[2];
        ok = a->ndim == like->ndim && axis >= 0 && axis < a->ndim && start >= 0 && step >= 1;
        for (int d = 0; ok && d < a->ndim; d++)
            if (d != axis && a->shape[d] != like->shape[d])
                ok = false;
        if (ok && a->shape[axis]) { /* the last row lands inside: no overflow in the check */
            int64_t len = like->shape[axis];
            ok = start < len && a->shape[axis] - 1 <= (len - 1 - start) / step;
        }
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

void ad_bwd_reshape(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_reshape_like(g, n->inputs[0]);
}

/* ---------------------------------------------------------------- slice */

bool ad_shape_slice(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = one_axis(n, a, n->rare->iparam[0], "slice");
    if (axis < 0)
        return false;
    int64_t start = n->rare->iparam[1], end = n->rare->iparam[2];
    if (start < 0 || end < start || end > a->shape[axis]) {
        char sh[96];
        ad_fail(n->g, "ad_slice: range [%lld, %lld) is out of bounds for axis %d of shape %s",
                (long long)start, (long long)end, axis, ad_shape_str(a, sh, sizeof sh));
        return false;
    }
    n->rare->iparam[3] = axis;
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] = end - start;
    return ad_shape_set(n, a->ndim, shape, "ad_slice");
}

void ad_fwd_slice(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    int axis = (int)n->rare->iparam[3];
    int64_t outer, len, inner;
    ad_axis_geometry(a, axis, &outer, &len, &inner);
    const size_t es = n->g->elem;
    const int64_t take = n->shape[axis];
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)n->value + (size_t)(o * take * inner) * es,
               (const char *)a->value + (size_t)((o * len + n->rare->iparam[1]) * inner) * es,
               (size_t)(take * inner) * es);
}

void ad_fwd_slice_backward(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    int axis = (int)n->rare->iparam[0];
    int64_t outer, len, inner;
    ad_axis_geometry(n, axis, &outer, &len, &inner);
    const size_t es = n->g->elem;
    const int64_t take = g->shape[axis];
    memset(n->value, 0, (size_t)n->numel * es);
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)n->value + (size_t)((o * len + n->rare->iparam[1]) * inner) * es,
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

void ad_bwd_slice(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_slice_backward(g, n->inputs[0], (int)n->rare->iparam[3], n->rare->iparam[1]);
}

void ad_bwd_slice_backward(ad_node *n, ad_node *g, ad_node **d)
{
    int axis = (int)n->rare->iparam[0];
    int64_t start = n->rare->iparam[1];
    d[0] = ad_slice(g, axis, start, start + n->inputs[0]->shape[axis]);
}

/* ---------------------------------------------------------------- concat */

bool ad_shape_concat(ad_node *n)
{
    ad_node *first = n->inputs[0];
    int axis = one_axis(n, first, n->rare->iparam[0], "concat");
    if (axis < 0)
        return false;
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
    n->rare->iparam[1] = axis;
    return ad_shape_set(n, first->ndim, shape, "ad_concat");
}

void ad_fwd_concat(ad_node *n)
{
    int axis = (int)n->rare->iparam[1];
    int64_t outer, len, inner;
    ad_axis_geometry(n, axis, &outer, &len, &inner);
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
        if (!parts[k]) {
            /* name the hole in the list, unless an earlier error made it */
            for (int j = 0; j < n; j++)
                if (parts[j]) {
                    ad_fail(parts[j]->g, "ad_concat: part %d of %d is NULL", k, n);
                    break;
                }
            return NULL;
        }
    int64_t ip[1] = {axis};
    return ad_op_apply(AD_OP_CONCAT, n, parts, NULL, 0, ip, 1);
}

void ad_bwd_concat(ad_node *n, ad_node *g, ad_node **d)
{
    int axis = (int)n->rare->iparam[1];
    int64_t at = 0;
    for (int k = 0; k < n->ninputs; k++) {
        int64_t take = n->inputs[k]->shape[axis];
        if (n->inputs[k]->flags & NODE_REQGRAD)
            d[k] = ad_slice(g, axis, at, at + take);
        at += take;
    }
}

/* ---------------------------------------------------------------- broadcast */

bool ad_shape_broadcast_to(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int nd = (int)n->rare->iparam[0];
    if (nd < 0 || nd > AD_MAX_DIMS || !broadcasts_to(a, nd, n->rare->iparam + 1)) {
        char b1[96];
        ad_fail(n->g, "ad_broadcast_to: shape %s does not broadcast to the %d-axis target",
                ad_shape_str(a, b1, sizeof b1), nd);
        return false;
    }
    return ad_shape_set(n, nd, n->rare->iparam + 1, "ad_broadcast_to");
}

void ad_fwd_broadcast(ad_node *n)
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

void ad_bwd_broadcast(ad_node *n, ad_node *g, ad_node **d)
{
    (void)n;
    d[0] = g; /* the engine sums it back to the input's shape */
}

/* Is t's shape (leading ones aside) the trailing shape of g's, so that
 * sum_to(g, t) adds up the rows of g viewed as (numel(g)/numel(t), numel(t))?
 * (A bias's gradient: the batch's rows summed.) */
static bool sums_leading_axes(const ad_node *g, const ad_node *t)
{
    int lead = 0;
    while (lead < t->ndim && t->shape[lead] == 1)
        lead++;
    const int nd = t->ndim - lead;
    return t->numel > 0 && nd <= g->ndim &&
           memcmp(t->shape + lead, g->shape + g->ndim - nd, sizeof(int64_t) * (size_t)nd) == 0;
}

/* Column blocks of a split leading-axes sum_to start at multiples of this
 * (a cache line of f32) */
#define SUM_TO_ALIGN 16
/* From this many elements the sum is split by columns. Higher than the
 * elementwise threshold: a thread reads its columns of every row, half of
 * them written by the other thread's share of the kernel before (the MLP's
 * 256 x 100 bias gradient took 4.1 us split against 2.6 us on one thread,
 * best per step, docs/benchmarks.md "Two threads"). */
#define SUM_TO_PARALLEL_MIN 32768

/* O[c] = Σ_r G[r·ld + c] for c < cols, each column summed over the rows in
 * order (the same sums for any block of columns), one cache line of
 * columns at a time with the sums in registers through all the rows, the
 * last block moved back to end at cols (it overlaps the one before: the same
 * sums again). One pass over each row's whole output instead (a load and
 * a store per element) took 5.5 µs for the MLP's 256 × 300 bias gradient
 * on one core, this 2.8 µs. No multiply, so the SSE2 and AVX2 copies give
 * the same bits. */
#define SUM_ROWS_KERNEL(T, name)                                                                   \
    AD_SIMD_CLONES static void name(T *O, const T *G, int64_t rows, int64_t ld, int64_t cols)      \
    {                                                                                              \
        enum { W = 64 / sizeof(T) };                                                               \
        if (cols < W) {                                                                            \
            for (int64_t c = 0; c < cols; c++)                                                     \
                O[c] = 0;                                                                          \
            for (int64_t r = 0; r < rows; r++)                                                     \
                for (int64_t c = 0; c < cols; c++)                                                 \
                    O[c] += G[r * ld + c];                                                         \
            return;                                                                                \
        }                                                                                          \
        for (int64_t c = 0; c < cols; c += W) {                                                    \
            const int64_t at = c + W <= cols ? c : cols - W;                                       \
            T acc[W];                                                                              \
            for (int j = 0; j < W; j++)                                                            \
                acc[j] = 0;                                                                        \
            for (int64_t r = 0; r < rows; r++)                                                     \
                for (int j = 0; j < W; j++)                                                        \
                    acc[j] += G[r * ld + at + j];                                                  \
            memcpy(O + at, acc, sizeof acc);                                                       \
        }                                                                                          \
    }
SUM_ROWS_KERNEL(float, sum_rows_f32)
SUM_ROWS_KERNEL(double, sum_rows_f64)

#define sum_rows(O, G, rows, ld, cols)                                                             \
    _Generic((O), float * : sum_rows_f32, default : sum_rows_f64)(O, G, rows, ld, cols)

void ad_fwd_sum_to(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    if (same_dims(g, n)) {
        memcpy(n->value, g->value, (size_t)n->numel * n->g->elem);
        return;
    }
    if (sums_leading_axes(g, n)) {
        /* O[c] = Σ_r G[r][c]: each column summed over r in order by one
           thread, whole rows of columns at a time; the sums are the same
           for any split of the columns */
        const int64_t cols = n->numel, rows = g->numel / cols;
        const int64_t parts =
            g->numel >= SUM_TO_PARALLEL_MIN && cols >= 2 * SUM_TO_ALIGN && ad_threads_requested > 1
                ? ad_threads_requested
                : 1;
        AD_DISPATCH(n->g, {
            const T *G = g->value;
            T *O = n->value;
            AD_FOR_SPLIT(b, parts, parts > 1, {
                const int64_t lo = cols * b / parts / SUM_TO_ALIGN * SUM_TO_ALIGN;
                const int64_t hi =
                    b == parts - 1 ? cols : cols * (b + 1) / parts / SUM_TO_ALIGN * SUM_TO_ALIGN;
                sum_rows(O + lo, G + lo, rows, cols, hi - lo);
            });
        });
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

void ad_bwd_sum_to(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_broadcast_like(g, n->inputs[0]);
}

/* ---------------------------------------------------------------- one-hot */

bool ad_shape_one_hot(ad_node *n)
{
    ad_node *a = n->inputs[0];
    if (n->rare->iparam[0] < 1) {
        ad_fail(n->g, "ad_one_hot: %lld classes, need at least 1", (long long)n->rare->iparam[0]);
        return false;
    }
    if (a->ndim + 1 > AD_MAX_DIMS) {
        ad_fail(n->g, "ad_one_hot: indices have %d axes, at most %d allowed", a->ndim,
                AD_MAX_DIMS - 1);
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    shape[a->ndim] = n->rare->iparam[0];
    return ad_shape_set(n, a->ndim + 1, shape, "ad_one_hot");
}

void ad_fwd_one_hot(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    const int64_t classes = n->rare->iparam[0];
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

/* ---------------------------------------------------------------- permute */

/* iparam[0..ndim) the axis order (negative counts from the end), normalized
 * in place by the shape rule: output axis d is input axis iparam[d]. */
bool ad_shape_permute(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int64_t shape[AD_MAX_DIMS];
    bool seen[AD_MAX_DIMS] = {false};
    for (int d = 0; d < a->ndim; d++) {
        int64_t p = n->rare->iparam[d] < 0 ? n->rare->iparam[d] + a->ndim : n->rare->iparam[d];
        if (p < 0 || p >= a->ndim || seen[p]) {
            char b1[96], b2[96];
            ad_fail(n->g, "ad_permute: axes %s are not a permutation of the %d axes of %s",
                    ad_dims_str(a->ndim, n->rare->iparam, b1, sizeof b1), a->ndim,
                    ad_shape_str(a, b2, sizeof b2));
            return false;
        }
        seen[p] = true;
        n->rare->iparam[d] = p;
        shape[d] = a->shape[p];
    }
    return ad_shape_set(n, a->ndim, shape, "ad_permute");
}

void ad_fwd_permute(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    const int nd = n->ndim;
    if (n->numel == 0)
        return;
    if (nd == 0) {
        memcpy(n->value, a->value, n->g->elem);
        return;
    }
    int64_t in_stride[AD_MAX_DIMS], st[AD_MAX_DIMS] = {0}, idx[AD_MAX_DIMS] = {0};
    in_stride[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--)
        in_stride[d] = in_stride[d + 1] * a->shape[d + 1];
    for (int d = 0; d < nd; d++)
        st[d] = in_stride[n->rare->iparam[d]]; /* input step per output axis d */
    const int64_t inner = n->shape[nd - 1], s = st[nd - 1], rows = n->numel / inner;
    AD_DISPATCH(n->g, {
        const T *A = a->value;
        T *O = n->value;
        int64_t off = 0;
        for (int64_t r = 0; r < rows; r++) {
            const T *ra = A + off;
            T *ro = O + r * inner;
            if (s == 1) { /* the last axis stays last: a contiguous run (attention heads) */
                for (int64_t i = 0; i < inner; i++)
                    ro[i] = ra[i];
            } else {
                for (int64_t i = 0; i < inner; i++)
                    ro[i] = ra[i * s];
            }
            for (int d = nd - 2; d >= 0; d--) { /* next row: odometer over the outer axes */
                off += st[d];
                if (++idx[d] < n->shape[d])
                    break;
                off -= st[d] * n->shape[d];
                idx[d] = 0;
            }
        }
    });
}

ad_node *ad_permute(ad_node *a, const int *axes)
{
    if (!a)
        return NULL;
    if (a->ndim && !axes) {
        ad_fail(a->g, "ad_permute: axes is NULL");
        return NULL;
    }
    int64_t ip[AD_MAX_IPARAMS] = {0};
    for (int d = 0; d < a->ndim; d++)
        ip[d] = axes[d];
    return ad_node_make(a->g, AD_OP_PERMUTE, 1, &a, NULL, ip);
}

void ad_bwd_permute(ad_node *n, ad_node *g, ad_node **d)
{
    int inverse[AD_MAX_DIMS];
    for (int k = 0; k < n->ndim; k++)
        inverse[n->rare->iparam[k]] = k;
    d[0] = ad_permute(g, inverse);
}

/* ------------------------------------------------------ squeeze, unsqueeze */

/* Aliases (no copy) whose shape follows the input on replay; the gradient is
 * the reshape back (ad_bwd_reshape). iparam[0] the axis as given. */
bool ad_shape_squeeze(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = one_axis(n, a, n->rare->iparam[0], "squeeze");
    if (axis < 0)
        return false;
    if (a->shape[axis] != 1) {
        char b1[96];
        ad_fail(n->g, "ad_squeeze: axis %d of %s has size %lld, not 1", axis,
                ad_shape_str(a, b1, sizeof b1), (long long)a->shape[axis]);
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < a->ndim; d++)
        if (d != axis)
            shape[nd++] = a->shape[d];
    return ad_shape_set(n, nd, shape, "ad_squeeze");
}

bool ad_shape_unsqueeze(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int64_t axis = n->rare->iparam[0] < 0 ? n->rare->iparam[0] + a->ndim + 1 : n->rare->iparam[0];
    char b1[96];
    if (axis < 0 || axis > a->ndim || a->ndim == AD_MAX_DIMS) {
        ad_fail(n->g, "ad_unsqueeze: axis %lld is out of range for a new axis of %s (at most %d)",
                (long long)n->rare->iparam[0], ad_shape_str(a, b1, sizeof b1), AD_MAX_DIMS);
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0, e = 0; d <= a->ndim; d++)
        shape[d] = d == axis ? 1 : a->shape[e++];
    return ad_shape_set(n, a->ndim + 1, shape, "ad_unsqueeze");
}

ad_node *ad_squeeze(ad_node *a, int axis)
{
    if (!a)
        return NULL;
    int64_t ip[AD_MAX_IPARAMS] = {axis};
    return ad_node_make(a->g, AD_OP_SQUEEZE, 1, &a, NULL, ip);
}

ad_node *ad_unsqueeze(ad_node *a, int axis)
{
    if (!a)
        return NULL;
    int64_t ip[AD_MAX_IPARAMS] = {axis};
    return ad_node_make(a->g, AD_OP_UNSQUEEZE, 1, &a, NULL, ip);
}

/* ------------------------------------------------------- take, scatter_add */

/* Index values are integral, in [-len, len); negative ones count from the
 * end (numpy.take's wrap for negatives; anything else is an error, checked
 * on every forward since ad_set may change them). */
static bool check_indices(ad_node *n, const ad_node *index, int64_t len, const char *opname,
                          const ad_node *table)
{
    AD_DISPATCH(n->g, {
        const T *I = index->value;
        for (int64_t j = 0; j < index->numel; j++) {
            T v = I[j];
            /* range first: converting NaN or a huge value to an integer is undefined */
            bool ok = v >= -(T)len && v < (T)len && (T)(int64_t)v == v;
            if (!ok) {
                char b1[96];
                ad_fail(n->g,
                        "ad_%s: index %g at position %lld is not an integer in [-%lld, %lld) "
                        "(axis %lld of %s)",
                        opname, (double)v, (long long)j, (long long)len, (long long)len,
                        (long long)n->rare->iparam[1], ad_shape_str(table, b1, sizeof b1));
                return false;
            }
        }
    });
    return true;
}

static int64_t index_at(const ad_node *index, int64_t j, int64_t len)
{
    int64_t k = index->g->dtype == AD_F32 ? (int64_t)((const float *)index->value)[j]
                                          : (int64_t)((const double *)index->value)[j];
    return k < 0 ? k + len : k;
}

/* table[:axis] + index.shape + table[axis+1:] into shape; false (error set) when too many axes */
static bool take_shape(ad_node *n, const ad_node *table, const ad_node *index, int axis,
                       int64_t *shape, const char *opname)
{
    int nd = table->ndim - 1 + index->ndim;
    if (nd > AD_MAX_DIMS) {
        char b1[96], b2[96];
        ad_fail(n->g, "ad_%s: table %s and index %s make %d axes, at most %d are supported", opname,
                ad_shape_str(table, b1, sizeof b1), ad_shape_str(index, b2, sizeof b2), nd,
                AD_MAX_DIMS);
        return false;
    }
    int k = 0;
    for (int d = 0; d < axis; d++)
        shape[k++] = table->shape[d];
    for (int d = 0; d < index->ndim; d++)
        shape[k++] = index->shape[d];
    for (int d = axis + 1; d < table->ndim; d++)
        shape[k++] = table->shape[d];
    return true;
}

/* take: iparam[0] the axis as given, [1] normalized */
bool ad_shape_take(ad_node *n)
{
    ad_node *table = n->inputs[0], *index = n->inputs[1];
    int axis = one_axis(n, table, n->rare->iparam[0], "take");
    if (axis < 0)
        return false;
    n->rare->iparam[1] = axis;
    int64_t shape[AD_MAX_DIMS];
    return take_shape(n, table, index, axis, shape, "take") &&
           ad_shape_set(n, table->ndim - 1 + index->ndim, shape, "ad_take");
}

void ad_fwd_take(ad_node *n)
{
    const ad_node *table = n->inputs[0], *index = n->inputs[1];
    int64_t outer, len, inner;
    ad_axis_geometry(table, (int)n->rare->iparam[1], &outer, &len, &inner);
    if (!check_indices(n, index, len, "take", table))
        return;
    const size_t es = n->g->elem, row = (size_t)inner * es;
    const int64_t m = index->numel;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            memcpy((char *)n->value + (size_t)(o * m + j) * row,
                   (const char *)table->value + (size_t)(o * len + index_at(index, j, len)) * row,
                   row);
}

ad_node *ad_take(ad_node *table, ad_node *index, int axis)
{
    if (!table || !index)
        return NULL;
    ad_node *in[2] = {table, index};
    int64_t ip[1] = {axis};
    return ad_op_apply(AD_OP_TAKE, 2, in, NULL, 0, ip, 1);
}

void ad_bwd_take(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_scatter_add(g, n->inputs[1], n->inputs[0], (int)n->rare->iparam[1]);
}

/* scatter_add(g, index, like): zeros of like's shape, g's rows added at the
 * indices along axis (iparam[0], iparam[1] the normalized copy); repeated
 * indices accumulate. The gradient of take, whose own gradient is take. */
bool ad_shape_scatter_add(ad_node *n)
{
    ad_node *g = n->inputs[0], *index = n->inputs[1], *like = n->inputs[2];
    int axis = one_axis(n, like, n->rare->iparam[0], "scatter_add");
    if (axis < 0)
        return false;
    n->rare->iparam[1] = axis;
    int64_t shape[AD_MAX_DIMS];
    if (!take_shape(n, like, index, axis, shape, "scatter_add"))
        return false;
    int nd = like->ndim - 1 + index->ndim;
    if (g->ndim != nd || memcmp(g->shape, shape, sizeof(int64_t) * (size_t)nd) != 0) {
        char b1[96], b2[96], b3[96];
        ad_fail(n->g, "ad_scatter_add: values %s do not fit index %s into %s along axis %d",
                ad_shape_str(g, b1, sizeof b1), ad_shape_str(index, b2, sizeof b2),
                ad_shape_str(like, b3, sizeof b3), axis);
        return false;
    }
    return ad_shape_set(n, like->ndim, like->shape, "ad_scatter_add");
}

void ad_fwd_scatter_add(ad_node *n)
{
    const ad_node *g = n->inputs[0], *index = n->inputs[1];
    int64_t outer, len, inner;
    ad_axis_geometry(n, (int)n->rare->iparam[1], &outer, &len, &inner);
    if (!check_indices(n, index, len, "scatter_add", n->inputs[2]))
        return;
    const int64_t m = index->numel;
    AD_DISPATCH(n->g, {
        const T *G = g->value;
        T *O = n->value;
        for (int64_t i = 0; i < n->numel; i++)
            O[i] = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < m; j++) {
                T *dst = O + (o * len + index_at(index, j, len)) * inner;
                const T *src = G + (o * m + j) * inner;
                for (int64_t i = 0; i < inner; i++)
                    dst[i] += src[i];
            }
    });
}

ad_node *ad_scatter_add(ad_node *g, ad_node *index, ad_node *like, int axis)
{
    if (!g || !index || !like)
        return NULL;
    ad_node *in[3] = {g, index, like};
    int64_t ip[1] = {axis};
    return ad_op_apply(AD_OP_SCATTER_ADD, 3, in, NULL, 0, ip, 1);
}

void ad_bwd_scatter_add(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_take(g, n->inputs[1], (int)n->rare->iparam[1]);
}

/* ---------------------------------------------------------------- pad */

/* iparam: [0] axis as given, [1] before, [2] after, [3] axis normalized;
 * fparam[0] the fill value */
bool ad_shape_pad(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = one_axis(n, a, n->rare->iparam[0], "pad");
    if (axis < 0)
        return false;
    int64_t before = n->rare->iparam[1], after = n->rare->iparam[2];
    if (before < 0 || after < 0 || before > AD_NUMEL_MAX || after > AD_NUMEL_MAX) {
        char b1[96];
        ad_fail(n->g, "ad_pad: before %lld and after %lld must be in [0, %lld] (axis %d of %s)",
                (long long)before, (long long)after, (long long)AD_NUMEL_MAX, axis,
                ad_shape_str(a, b1, sizeof b1));
        return false;
    }
    n->rare->iparam[3] = axis;
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] += before + after;
    return ad_shape_set(n, a->ndim, shape, "ad_pad");
}

void ad_fwd_pad(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    int64_t outer, len, inner;
    ad_axis_geometry(a, (int)n->rare->iparam[3], &outer, &len, &inner);
    const int64_t before = n->rare->iparam[1] * inner, body = len * inner;
    const int64_t row = (n->rare->iparam[1] + len + n->rare->iparam[2]) * inner;
    AD_DISPATCH(n->g, {
        const T *A = a->value;
        T *O = n->value;
        const T fillv = (T)n->fparam[0];
        for (int64_t o = 0; o < outer; o++) {
            T *ro = O + o * row;
            for (int64_t i = 0; i < row; i++)
                ro[i] = fillv;
            memcpy(ro + before, A + o * body, sizeof(T) * (size_t)body);
        }
    });
}

ad_node *ad_pad(ad_node *a, int axis, int64_t before, int64_t after, double value)
{
    if (!a)
        return NULL;
    int64_t ip[3] = {axis, before, after};
    return ad_op_apply(AD_OP_PAD, 1, &a, &value, 1, ip, 3);
}

void ad_bwd_pad(ad_node *n, ad_node *g, ad_node **d)
{
    int axis = (int)n->rare->iparam[3];
    d[0] = ad_slice(g, axis, n->rare->iparam[1], n->rare->iparam[1] + n->inputs[0]->shape[axis]);
}

/* ---------------------------------------------------------------- slice_step */

/* iparam: [0] axis as given, [1] start, [2] end, [3] step, [4] axis normalized */
bool ad_shape_slice_step(ad_node *n)
{
    ad_node *a = n->inputs[0];
    int axis = one_axis(n, a, n->rare->iparam[0], "slice_step");
    if (axis < 0)
        return false;
    int64_t start = n->rare->iparam[1], end = n->rare->iparam[2], step = n->rare->iparam[3];
    if (step < 1 || start < 0 || end < start || end > a->shape[axis]) {
        char sh[96];
        ad_fail(n->g,
                "ad_slice_step: range [%lld, %lld) step %lld does not fit axis %d of shape %s "
                "(need 0 <= start <= end <= %lld, step >= 1)",
                (long long)start, (long long)end, (long long)step, axis,
                ad_shape_str(a, sh, sizeof sh), (long long)a->shape[axis]);
        return false;
    }
    n->rare->iparam[4] = axis;
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    /* ceil((end - start) / step), without end - start + step overflowing */
    shape[axis] = end == start ? 0 : (end - start - 1) / step + 1;
    return ad_shape_set(n, a->ndim, shape, "ad_slice_step");
}

/* Copies rows start, start + step, ... of the axis between src (the long
 * side, len rows) and dst (count rows); backward = copy the other way. */
static void strided_rows(ad_node *n, const ad_node *wide, int axis, int64_t start, int64_t step,
                         int64_t count, char *narrow, bool to_wide)
{
    int64_t outer, len, inner;
    ad_axis_geometry(wide, axis, &outer, &len, &inner);
    const size_t es = n->g->elem, row = (size_t)inner * es;
    char *w = wide->value;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t r = 0; r < count; r++) {
            char *pw = w + (size_t)(o * len + start + r * step) * row;
            char *pn = narrow + (size_t)(o * count + r) * row;
            if (to_wide)
                memcpy(pw, pn, row);
            else
                memcpy(pn, pw, row);
        }
}

void ad_fwd_slice_step(ad_node *n)
{
    int axis = (int)n->rare->iparam[4];
    strided_rows(n, n->inputs[0], axis, n->rare->iparam[1], n->rare->iparam[3], n->shape[axis],
                 n->value, false);
}

ad_node *ad_slice_step(ad_node *a, int axis, int64_t start, int64_t end, int64_t step)
{
    if (!a)
        return NULL;
    int64_t ip[4] = {axis, start, end, step};
    return ad_op_apply(AD_OP_SLICE_STEP, 1, &a, NULL, 0, ip, 4);
}

void ad_bwd_slice_step(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_slice_step_backward(g, n->inputs[0], (int)n->rare->iparam[4], n->rare->iparam[1],
                                  n->rare->iparam[3]);
}

/* slice_step_backward(g, like): zeros of like's shape with g's rows at
 * start, start + step, ... along axis (iparam [0] axis, [1] start, [2] step) */
void ad_fwd_slice_step_backward(ad_node *n)
{
    memset(n->value, 0, (size_t)n->numel * n->g->elem);
    int axis = (int)n->rare->iparam[0];
    const ad_node *g = n->inputs[0];
    strided_rows(n, n, axis, n->rare->iparam[1], n->rare->iparam[2], g->shape[axis], g->value,
                 true);
}

ad_node *ad_slice_step_backward(ad_node *g, ad_node *like, int axis, int64_t start, int64_t step)
{
    if (!g || !like)
        return NULL;
    ad_node *in[2] = {g, like};
    int64_t ip[AD_MAX_IPARAMS] = {axis, start, step};
    return ad_node_make(g->g, AD_OP_SLICE_STEP_BACKWARD, 2, in, NULL, ip);
}

void ad_bwd_slice_step_backward(ad_node *n, ad_node *g, ad_node **d)
{
    int axis = (int)n->rare->iparam[0];
    int64_t start = n->rare->iparam[1], step = n->rare->iparam[2],
            count = n->inputs[0]->shape[axis];
    d[0] = ad_slice_step(g, axis, start, count ? start + (count - 1) * step + 1 : start, step);
}
