/* ops_elementwise.c -- elementwise unary, binary and ternary ops: shape rule,
 * kernel and gradient rule side by side. Kernels are written once and
 * compiled for float and double (AD_DISPATCH + <tgmath.h>). */
#include <string.h>
#include <tgmath.h>

#include "graph_impl.h"
#include "vmath_impl.h"

/* ---------------------------------------------------------- broadcasting */

void ad_bcast_init(ad_bcast_iter *it, int ndim, const int64_t *shape, int k,
                   const ad_node *const *operands)
{
    memset(it, 0, sizeof *it);
    it->k = k;
    it->nd = ndim ? ndim : 1;
    if (ndim == 0)
        it->shape[0] = 1;
    for (int d = 0; d < ndim; d++)
        it->shape[d] = shape[d];
    for (int j = 0; j < k; j++) {
        const ad_node *t = operands[j];
        int64_t stride = 1;
        for (int d = it->nd - 1; d >= 0; d--) {
            int td = d - (it->nd - t->ndim);
            if (td < 0 || (t->shape[td] == 1 && it->shape[d] != 1)) {
                it->st[j][d] = 0;
            } else {
                it->st[j][d] = stride;
            }
            if (td >= 0)
                stride *= t->shape[td];
        }
    }
    it->inner = it->shape[it->nd - 1];
    int64_t total = 1;
    for (int d = 0; d < it->nd; d++)
        total *= it->shape[d];
    it->rows = it->inner ? total / it->inner : 0;
}

void ad_bcast_next(ad_bcast_iter *it)
{
    for (int d = it->nd - 2; d >= 0; d--) {
        it->idx[d]++;
        for (int j = 0; j < it->k; j++)
            it->off[j] += it->st[j][d];
        if (it->idx[d] < it->shape[d])
            return;
        for (int j = 0; j < it->k; j++)
            it->off[j] -= it->st[j][d] * it->shape[d];
        it->idx[d] = 0;
    }
}

bool ad_broadcast_shape(ad_node *n, int k, const char *opname)
{
    const ad_node *a = n->inputs[0], *b = k == 2 ? n->inputs[1] : NULL;
    if (b && a->ndim == b->ndim &&
        memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0)
        return ad_shape_set(n, a->ndim, a->shape, opname); /* same shapes: nothing to broadcast */
    int nd = 0;
    for (int j = 0; j < k; j++)
        if (n->inputs[j]->ndim > nd)
            nd = n->inputs[j]->ndim;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int64_t size = 1;
        for (int j = 0; j < k; j++) {
            const ad_node *t = n->inputs[j];
            int td = d - (nd - t->ndim);
            if (td < 0)
                continue;
            int64_t s = t->shape[td];
            if (s == size || s == 1)
                continue;
            if (size == 1) {
                size = s;
                continue;
            }
            char buf[3][96];
            ad_fail(n->g, "ad_%s: shapes %s%s%s%s%s do not broadcast", opname,
                    ad_shape_str(n->inputs[0], buf[0], sizeof buf[0]), k > 1 ? " and " : "",
                    k > 1 ? ad_shape_str(n->inputs[1], buf[1], sizeof buf[1]) : "",
                    k > 2 ? " and " : "",
                    k > 2 ? ad_shape_str(n->inputs[2], buf[2], sizeof buf[2]) : "");
            return false;
        }
        shape[d] = size;
    }
    return ad_shape_set(n, nd, shape, opname);
}

/* ---------------------------------------------------------- shape rules */

bool ad_shape_same(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    return ad_shape_set(n, a->ndim, a->shape, ad_ops[n->op].name);
}

bool ad_shape_bcast(ad_node *n) { return ad_broadcast_shape(n, n->ninputs, ad_ops[n->op].name); }

bool ad_shape_straight_through(ad_node *n)
{
    const ad_node *x = n->inputs[0], *fx = n->inputs[1];
    if (x->numel != fx->numel || x->ndim != fx->ndim ||
        memcmp(x->shape, fx->shape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
        char b1[96], b2[96];
        ad_fail(n->g, "ad_straight_through: shapes %s and %s differ",
                ad_shape_str(x, b1, sizeof b1), ad_shape_str(fx, b2, sizeof b2));
        return false;
    }
    return ad_shape_set(n, x->ndim, x->shape, "ad_straight_through");
}

/* ---------------------------------------------------------- kernels */

/* One forward kernel per unary op, named in the forward column of its
 * ops.def line (fwd_<op>), so no second list of ops is kept here: x is the
 * input element, p0 and p1 the op's parameters. Written once, compiled for
 * float and double. */
#define UNARY_BODY(TYPE, EXPR)                                                                     \
    typedef TYPE T;                                                                                \
    const T *A = n->inputs[0]->value;                                                              \
    T *O = n->value;                                                                               \
    const int64_t len = n->numel;                                                                  \
    const T p0 = (T)n->fparam[0], p1 = (T)n->fparam[1];                                            \
    (void)p0;                                                                                      \
    (void)p1;                                                                                      \
    AD_FOR_ELEMENTS(i, len, const T x = A[i]; O[i] = (T)(EXPR););

#define UNARY_KERNEL_WITH(CLONES, NAME, EXPR)                                                      \
    CLONES static void NAME##_float(ad_node *n) { UNARY_BODY(float, EXPR) }                        \
    static void NAME##_double(ad_node *n) { UNARY_BODY(double, EXPR) }                             \
    void ad_fwd_##NAME(ad_node *n)                                                                 \
    {                                                                                              \
        if (n->g->dtype == AD_F32)                                                                 \
            NAME##_float(n);                                                                       \
        else                                                                                       \
            NAME##_double(n);                                                                      \
    }
#define UNARY_KERNEL(NAME, EXPR) UNARY_KERNEL_WITH(, NAME, EXPR)
/* the transcendental kernels of vmath_impl.h: worth an AVX2 copy */
#define UNARY_KERNEL_SIMD(NAME, EXPR) UNARY_KERNEL_WITH(AD_SIMD_CLONES, NAME, EXPR)

UNARY_KERNEL(neg, -x)
UNARY_KERNEL_SIMD(exp, ad_exp_elem(x))
UNARY_KERNEL(log, log(x))
UNARY_KERNEL(sqrt, sqrt(x))
UNARY_KERNEL(abs, fabs(x))
UNARY_KERNEL(sin, sin(x))
UNARY_KERNEL(cos, cos(x))
UNARY_KERNEL_SIMD(tanh, ad_tanh_elem(x))
UNARY_KERNEL_SIMD(sigmoid, ad_sigmoid_elem(x))
UNARY_KERNEL(relu, x > 0 ? x : 0)
UNARY_KERNEL(softplus, x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)))
UNARY_KERNEL(leaky_relu, x > 0 ? x : p0 * x)
UNARY_KERNEL(elu, x > 0 ? x : p0 * expm1(x))
UNARY_KERNEL(affine, p0 *x + p1)
UNARY_KERNEL(clamp, x < p0 ? p0 : (x > p1 ? p1 : x))
UNARY_KERNEL(clamp_mask, (x >= p0 && x <= p1) ? 1 : 0)
UNARY_KERNEL(step, x < 0 ? 0 : (x > 0 ? 1 : (x == 0 ? p0 : x)))
UNARY_KERNEL(sign, x < 0 ? -1 : (x > 0 ? 1 : (x == 0 ? 0 : x)))

/* x^2 (the common square) without a call to pow */
void ad_fwd_pow(ad_node *n)
{
    AD_DISPATCH(n->g, {
        const T *A = n->inputs[0]->value;
        T *O = n->value;
        const T p = (T)n->fparam[0];
        if (p == 2) {
            for (int64_t i = 0; i < n->numel; i++)
                O[i] = A[i] * A[i];
        } else {
            for (int64_t i = 0; i < n->numel; i++)
                O[i] = pow(A[i], p);
        }
    });
}

/* Binary maps: x from a, y from b. */
#define BINARY_MAPS(X)                                                                             \
    X(ADD, x + y)                                                                                  \
    X(SUB, x - y)                                                                                  \
    X(MUL, x *y)                                                                                   \
    X(DIV, x / y)                                                                                  \
    X(MAXIMUM, x > y ? x : (y > x ? y : x + (y - x) / 2))                                          \
    X(MINIMUM, x < y ? x : (y < x ? y : x + (y - x) / 2))                                          \
    X(POWER, pow(x, y))                                                                            \
    X(EQ, x == y ? 1 : 0)                                                                          \
    X(GT, x > y ? 1 : 0)                                                                           \
    X(RELU_GRAD, x *(T)(y > 0))

#define BINARY_LOOP(EXPR)                                                                          \
    do {                                                                                           \
        const T *A = a->value, *B = b->value;                                                      \
        T *O = n->value;                                                                           \
        int64_t len = n->numel;                                                                    \
        if (a->numel == len && b->numel == len) {                                                  \
            AD_FOR_ELEMENTS(i, len, const T x = A[i]; const T y = B[i]; O[i] = (T)(EXPR););        \
        } else if (b->numel == 1 && a->numel == len) {                                             \
            const T y = B[0];                                                                      \
            for (int64_t i = 0; i < len; i++) {                                                    \
                const T x = A[i];                                                                  \
                O[i] = (T)(EXPR);                                                                  \
            }                                                                                      \
        } else if (a->numel == 1 && b->numel == len) {                                             \
            const T x = A[0];                                                                      \
            for (int64_t i = 0; i < len; i++) {                                                    \
                const T y = B[i];                                                                  \
                O[i] = (T)(EXPR);                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            const ad_node *ops_[2] = {a, b};                                                       \
            ad_bcast_iter it;                                                                      \
            ad_bcast_init(&it, n->ndim, n->shape, 2, ops_);                                        \
            const int64_t sa = it.st[0][it.nd - 1], sb = it.st[1][it.nd - 1];                      \
            for (int64_t r = 0; r < it.rows; r++) {                                                \
                const T *ra = A + it.off[0], *rb = B + it.off[1];                                  \
                T *ro = O + r * it.inner;                                                          \
                if (sa == 1 && sb == 1) { /* contiguous rows (bias add): vectorizable */           \
                    for (int64_t i = 0; i < it.inner; i++) {                                       \
                        const T x = ra[i], y = rb[i];                                              \
                        ro[i] = (T)(EXPR);                                                         \
                    }                                                                              \
                } else {                                                                           \
                    for (int64_t i = 0; i < it.inner; i++) {                                       \
                        const T x = ra[i * sa], y = rb[i * sb];                                    \
                        ro[i] = (T)(EXPR);                                                         \
                    }                                                                              \
                }                                                                                  \
                ad_bcast_next(&it);                                                                \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define BINARY_CASE(ID, EXPR)                                                                      \
    case AD_OP_##ID:                                                                               \
        BINARY_LOOP(EXPR);                                                                         \
        break;

/* One element from one element each (define-by-run scalars, a loss): the
 * same maps without the loops and the broadcast state. */
#define SCALAR_CASE(ID, EXPR)                                                                      \
    case AD_OP_##ID: {                                                                             \
        const T x = *(const T *)a->value, y = *(const T *)b->value;                                \
        *(T *)n->value = (T)(EXPR);                                                                \
        break;                                                                                     \
    }

#define DEFINE_BINARY(NAME, TYPE, CASE)                                                            \
    static void NAME##_##TYPE(ad_node *n)                                                          \
    {                                                                                              \
        typedef TYPE T;                                                                            \
        const ad_node *a = n->inputs[0], *b = n->inputs[1];                                        \
        switch (n->op) {                                                                           \
            BINARY_MAPS(CASE)                                                                      \
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    }
DEFINE_BINARY(binary, float, BINARY_CASE)
DEFINE_BINARY(binary, double, BINARY_CASE)
DEFINE_BINARY(binary_scalar, float, SCALAR_CASE)
DEFINE_BINARY(binary_scalar, double, SCALAR_CASE)

void ad_fwd_binary(ad_node *n)
{
    bool one = n->numel == 1 && n->inputs[0]->numel == 1 && n->inputs[1]->numel == 1;
    if (n->g->dtype == AD_F32)
        one ? binary_scalar_float(n) : binary_float(n);
    else
        one ? binary_scalar_double(n) : binary_double(n);
}

void ad_fwd_where(ad_node *n)
{
    ad_bcast_iter it;
    ad_bcast_init(&it, n->ndim, n->shape, 3, (const ad_node *const *)n->inputs);
    AD_DISPATCH(n->g, {
        const T *C = n->inputs[0]->value, *A = n->inputs[1]->value, *B = n->inputs[2]->value;
        T *O = n->value;
        const int64_t sc = it.st[0][it.nd - 1], sa = it.st[1][it.nd - 1], sb = it.st[2][it.nd - 1];
        for (int64_t r = 0; r < it.rows; r++) {
            const T *rc = C + it.off[0], *ra = A + it.off[1], *rb = B + it.off[2];
            T *ro = O + r * it.inner;
            for (int64_t i = 0; i < it.inner; i++)
                ro[i] = rc[i * sc] != 0 ? ra[i * sa] : rb[i * sb];
            ad_bcast_next(&it);
        }
    });
}

/* The sum of fan-out contributions. A slice's gradient (slice_backward) is
 * zero but for the slab the slice took, so only that slab is read (from
 * the contribution's own buffer, which lives until this node has run): the
 * T per-step slices of a sequence cost T slabs here, not T full tensors. */
void ad_fwd_add_n(ad_node *n)
{
    bool flat = true;
    for (int k = 0; k < n->ninputs; k++)
        flat = flat && n->inputs[k]->numel == n->numel;
    AD_DISPATCH(n->g, {
        T *O = n->value;
        const int64_t len = n->numel;
        if (flat && len == 1) { /* define-by-run scalars: the sum in a register, same order */
            T s = *(const T *)n->inputs[0]->value;
            for (int k = 1; k < n->ninputs; k++) {
                const ad_node *t = n->inputs[k];
                if (t->op != AD_OP_SLICE_BACKWARD || t->inputs[0]->numel > 0) /* as below */
                    s += *(const T *)t->value;
            }
            *O = s;
        } else if (flat) {
            const T *A = n->inputs[0]->value;
            for (int64_t i = 0; i < len; i++)
                O[i] = A[i];
            for (int k = 1; k < n->ninputs; k++) {
                const ad_node *t = n->inputs[k];
                if (t->op == AD_OP_SLICE_BACKWARD) { /* zeros but for one slab */
                    const T *G = t->value;
                    int64_t outer, axis_len, inner;
                    ad_axis_geometry(t, (int)t->rare->iparam[0], &outer, &axis_len, &inner);
                    const int64_t run = t->inputs[0]->shape[t->rare->iparam[0]] * inner;
                    for (int64_t o = 0; o < outer; o++) {
                        const int64_t at = (o * axis_len + t->rare->iparam[1]) * inner;
                        for (int64_t i = 0; i < run; i++)
                            O[at + i] += G[at + i];
                    }
                    continue;
                }
                const T *B = t->value;
                for (int64_t i = 0; i < len; i++)
                    O[i] += B[i];
            }
        } else {
            for (int64_t i = 0; i < len; i++)
                O[i] = 0;
            for (int k = 0; k < n->ninputs; k++) {
                const ad_node *t = n->inputs[k];
                const T *B = t->value;
                ad_bcast_iter it;
                ad_bcast_init(&it, n->ndim, n->shape, 1, &t);
                const int64_t s = it.st[0][it.nd - 1];
                for (int64_t r = 0; r < it.rows; r++) {
                    const T *rb = B + it.off[0];
                    T *ro = O + r * it.inner;
                    for (int64_t i = 0; i < it.inner; i++)
                        ro[i] += rb[i * s];
                    ad_bcast_next(&it);
                }
            }
        }
    });
}

void ad_fwd_alias(ad_node *n)
{
    n->value = n->inputs[0]->value;
    n->capacity = n->numel;
}

void ad_fwd_fill(ad_node *n)
{
    AD_DISPATCH(n->g, {
        T *O = n->value;
        const T v = n->op == AD_OP_ONES_LIKE ? 1 : 0;
        for (int64_t i = 0; i < n->numel; i++)
            O[i] = v;
    });
}

void ad_fwd_dropout_mask(ad_node *n)
{
    const double keep = n->fparam[0];
    AD_DISPATCH(n->g, {
        T *O = n->value;
        const T scale = (T)(1.0 / keep);
        if (n->g->eval_mode) {
            for (int64_t i = 0; i < n->numel; i++)
                O[i] = 1;
        } else {
            for (int64_t i = 0; i < n->numel; i++)
                O[i] = ad_rng_uniform(n->g) < keep ? scale : 0;
        }
    });
}

void ad_fwd_straight_through(ad_node *n)
{
    memcpy(n->value, n->inputs[1]->value, (size_t)n->numel * n->g->elem);
}

/* ---------------------------------------------------------- public API */

static ad_node *unary(int op, ad_node *a, double p0, double p1)
{
    if (!a)
        return NULL;
    double fp[2] = {p0, p1};
    return ad_node_make(a->g, op, 1, &a, fp, NULL);
}

static ad_node *nary(int op, int k, ad_node *const *in)
{
    for (int i = 0; i < k; i++)
        if (!in[i])
            return NULL;
    return ad_op_apply(op, k, in, NULL, 0, NULL, 0);
}

static ad_node *binary(int op, ad_node *a, ad_node *b)
{
    ad_node *in[2] = {a, b};
    /* the common case straight to ad_node_make (no parameter arrays to copy:
     * define-by-run creates one of these per scalar operation); NULL and
     * mixed graphs go through ad_op_apply, which reports them */
    if (a && b && a->g == b->g)
        return ad_node_make(a->g, op, 2, in, NULL, NULL);
    return nary(op, 2, in);
}

ad_node *ad_add(ad_node *a, ad_node *b) { return binary(AD_OP_ADD, a, b); }
ad_node *ad_sub(ad_node *a, ad_node *b) { return binary(AD_OP_SUB, a, b); }
ad_node *ad_mul(ad_node *a, ad_node *b) { return binary(AD_OP_MUL, a, b); }
ad_node *ad_div(ad_node *a, ad_node *b) { return binary(AD_OP_DIV, a, b); }

ad_node *ad_add_n(int n, ad_node *const *terms)
{
    if (n < 1 || !terms)
        return NULL;
    return nary(AD_OP_ADD_N, n, terms);
}
ad_node *ad_maximum(ad_node *a, ad_node *b) { return binary(AD_OP_MAXIMUM, a, b); }
ad_node *ad_power(ad_node *a, ad_node *b) { return binary(AD_OP_POWER, a, b); }
ad_node *ad_minimum(ad_node *a, ad_node *b) { return binary(AD_OP_MINIMUM, a, b); }
ad_node *ad_eq(ad_node *a, ad_node *b) { return binary(AD_OP_EQ, a, b); }
ad_node *ad_gt(ad_node *a, ad_node *b) { return binary(AD_OP_GT, a, b); }

ad_node *ad_where(ad_node *cond, ad_node *a, ad_node *b)
{
    ad_node *in[3] = {cond, a, b};
    return nary(AD_OP_WHERE, 3, in);
}

ad_node *ad_straight_through(ad_node *x, ad_node *fx)
{
    return binary(AD_OP_STRAIGHT_THROUGH, x, fx);
}

ad_node *ad_neg(ad_node *a) { return unary(AD_OP_NEG, a, 0, 0); }
ad_node *ad_exp(ad_node *a) { return unary(AD_OP_EXP, a, 0, 0); }
ad_node *ad_log(ad_node *a) { return unary(AD_OP_LOG, a, 0, 0); }
ad_node *ad_sqrt(ad_node *a) { return unary(AD_OP_SQRT, a, 0, 0); }
ad_node *ad_abs(ad_node *a) { return unary(AD_OP_ABS, a, 0, 0); }
ad_node *ad_sin(ad_node *a) { return unary(AD_OP_SIN, a, 0, 0); }
ad_node *ad_cos(ad_node *a) { return unary(AD_OP_COS, a, 0, 0); }
ad_node *ad_tanh(ad_node *a) { return unary(AD_OP_TANH, a, 0, 0); }
ad_node *ad_sigmoid(ad_node *a) { return unary(AD_OP_SIGMOID, a, 0, 0); }
ad_node *ad_relu(ad_node *a) { return unary(AD_OP_RELU, a, 0, 0); }
ad_node *ad_softplus(ad_node *a) { return unary(AD_OP_SOFTPLUS, a, 0, 0); }
ad_node *ad_leaky_relu(ad_node *a, double alpha) { return unary(AD_OP_LEAKY_RELU, a, alpha, 0); }
ad_node *ad_elu(ad_node *a, double alpha) { return unary(AD_OP_ELU, a, alpha, 0); }
ad_node *ad_pow(ad_node *a, double p) { return unary(AD_OP_POW, a, p, 0); }
ad_node *ad_scale(ad_node *a, double c) { return unary(AD_OP_AFFINE, a, c, 0); }
ad_node *ad_affine(ad_node *a, double c, double d) { return unary(AD_OP_AFFINE, a, c, d); }
ad_node *ad_step(ad_node *a) { return unary(AD_OP_STEP, a, 1, 0); }
ad_node *ad_step_at(ad_node *a, double at0) { return unary(AD_OP_STEP, a, at0, 0); }
ad_node *ad_sign(ad_node *a) { return unary(AD_OP_SIGN, a, 0, 0); }
ad_node *ad_detach(ad_node *a) { return unary(AD_OP_DETACH, a, 0, 0); }
ad_node *ad_zeros_like(ad_node *a) { return unary(AD_OP_ZEROS_LIKE, a, 0, 0); }

ad_node *ad_clamp(ad_node *a, double lo, double hi) { return unary(AD_OP_CLAMP, a, lo, hi); }
ad_node *ad_dropout_mask(ad_node *a, double keep) { return unary(AD_OP_DROPOUT_MASK, a, keep, 0); }

/* ---------------------------------------------------------- parameter checks */

bool ad_check_clamp(const ad_node *n)
{
    if (n->fparam[0] <= n->fparam[1])
        return true;
    ad_fail(n->g, "ad_%s: lo %g is greater than hi %g", ad_ops[n->op].name, n->fparam[0],
            n->fparam[1]);
    return false;
}

bool ad_check_dropout_mask(const ad_node *n)
{
    if (n->fparam[0] > 0 && n->fparam[0] <= 1)
        return true;
    ad_fail(n->g, "ad_dropout_mask: keep probability %g is not in (0, 1]", n->fparam[0]);
    return false;
}

/* ------------------------------------- where the derivative is not defined */

/* The segment from u to v (either order, ends included) holds c. */
static bool meets(double u, double v, double c) { return fmin(u, v) <= c && c <= fmax(u, v); }

/* relu, abs, leaky_relu: the slope changes at 0 (a slope 1 leaky_relu is x) */
ad_smoothness ad_kink_at_zero(const double *a, const double *b, const double *fparam)
{
    (void)fparam;
    return meets(a[0], b[0], 0) ? AD_KINK : AD_SMOOTH;
}

/* elu: slope alpha on the left of 0 (e^0 = 1), 1 on the right */
ad_smoothness ad_kink_elu(const double *a, const double *b, const double *fparam)
{
    return fparam[0] != 1 && meets(a[0], b[0], 0) ? AD_KINK : AD_SMOOTH;
}

/* clamp: the slope drops to 0 at lo and at hi */
ad_smoothness ad_kink_clamp(const double *a, const double *b, const double *fparam)
{
    return meets(a[0], b[0], fparam[0]) || meets(a[0], b[0], fparam[1]) ? AD_KINK : AD_SMOOTH;
}

/* clamp_mask: 1 inside [lo, hi], 0 outside */
ad_smoothness ad_jump_clamp(const double *a, const double *b, const double *fparam)
{
    return meets(a[0], b[0], fparam[0]) || meets(a[0], b[0], fparam[1]) ? AD_DISCONTINUITY
                                                                        : AD_SMOOTH;
}

/* step, sign: the value jumps at 0 */
ad_smoothness ad_jump_at_zero(const double *a, const double *b, const double *fparam)
{
    (void)fparam;
    return meets(a[0], b[0], 0) ? AD_DISCONTINUITY : AD_SMOOTH;
}

/* maximum, minimum: the input that wins changes where a = b */
ad_smoothness ad_kink_tie(const double *a, const double *b, const double *fparam)
{
    (void)fparam;
    return meets(a[0] - a[1], b[0] - b[1], 0) ? AD_KINK : AD_SMOOTH;
}

/* eq, gt: the comparison flips where a = b */
ad_smoothness ad_jump_tie(const double *a, const double *b, const double *fparam)
{
    (void)fparam;
    return meets(a[0] - a[1], b[0] - b[1], 0) ? AD_DISCONTINUITY : AD_SMOOTH;
}

/* relu_grad(g, a) = g·[a > 0]: the mask jumps where a = 0 */
ad_smoothness ad_jump_relu_grad(const double *a, const double *b, const double *fparam)
{
    (void)fparam;
    return meets(a[1], b[1], 0) ? AD_DISCONTINUITY : AD_SMOOTH;
}

/* ---------------------------------------------------------- gradient rules */

void ad_bwd_neg(ad_node *n, ad_node *g, ad_node **d)
{
    (void)n;
    d[0] = ad_neg(g);
}
void ad_bwd_exp(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_mul(g, n); }
void ad_bwd_log(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_div(g, n->inputs[0]); }
void ad_bwd_sqrt(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_div(g, ad_scale(n, 2)); }
void ad_bwd_abs(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_mul(g, ad_sign(n->inputs[0])); }
void ad_bwd_sin(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_mul(g, ad_cos(n->inputs[0])); }
void ad_bwd_cos(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_mul(g, ad_neg(ad_sin(n->inputs[0])));
}
void ad_bwd_tanh(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_mul(g, ad_affine(ad_pow(n, 2), -1, 1)); /* 1 - y^2 */
}
void ad_bwd_sigmoid(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_mul(g, ad_mul(n, ad_affine(n, -1, 1))); /* y (1 - y) */
}
void ad_bwd_relu(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_relu_grad(g, n->inputs[0]); /* 0 at a = 0 */
}

/* relu_grad(g, a) = g·[a > 0]: the mask and the product in one pass */
ad_node *ad_relu_grad(ad_node *g, ad_node *a)
{
    if (!g || !a)
        return NULL;
    ad_node *in[2] = {g, a};
    return ad_node_make(g->g, AD_OP_RELU_GRAD, 2, in, NULL, NULL);
}

void ad_bwd_relu_grad(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_relu_grad(g, n->inputs[1]); /* linear in g; the mask is piecewise constant */
}
void ad_bwd_softplus(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_mul(g, ad_sigmoid(n->inputs[0]));
}
void ad_bwd_leaky_relu(ad_node *n, ad_node *g, ad_node **d)
{
    double alpha = n->fparam[0];
    d[0] = ad_mul(g, ad_affine(ad_step_at(n->inputs[0], 0), 1 - alpha, alpha));
}
void ad_bwd_elu(ad_node *n, ad_node *g, ad_node **d)
{
    /* 1 where a > 0, else y + alpha; where() keeps a huge branch out of the product */
    ad_node *pos = ad_step_at(n->inputs[0], 0);
    d[0] = ad_where(pos, g, ad_mul(g, ad_affine(n, 1, n->fparam[0])));
}
void ad_bwd_pow(ad_node *n, ad_node *g, ad_node **d)
{
    double p = n->fparam[0];
    if (p == 0)
        return;
    if (p == 1) {
        d[0] = g;
        return;
    }
    ad_node *a = n->inputs[0];
    ad_node *local = p == 2 ? ad_scale(a, 2) : ad_scale(ad_pow(a, p - 1), p);
    d[0] = ad_mul(g, local);
}
void ad_bwd_affine(ad_node *n, ad_node *g, ad_node **d) { d[0] = ad_scale(g, n->fparam[0]); }
void ad_bwd_clamp(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = ad_mul(g, unary(AD_OP_CLAMP_MASK, n->inputs[0], n->fparam[0], n->fparam[1]));
}

void ad_bwd_add(ad_node *n, ad_node *g, ad_node **d)
{
    (void)n;
    d[0] = g;
    d[1] = g;
}
void ad_bwd_add_n(ad_node *n, ad_node *g, ad_node **d)
{
    for (int k = 0; k < n->ninputs; k++)
        d[k] = g;
}
void ad_bwd_sub(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = g;
    if (n->inputs[1]->flags & NODE_REQGRAD)
        d[1] = ad_neg(g);
}
void ad_bwd_mul(ad_node *n, ad_node *g, ad_node **d)
{
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = ad_mul(g, n->inputs[1]);
    if (n->inputs[1]->flags & NODE_REQGRAD)
        d[1] = ad_mul(g, n->inputs[0]);
}
void ad_bwd_div(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *b = n->inputs[1];
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = ad_div(g, b);
    if (b->flags & NODE_REQGRAD)
        d[1] = ad_neg(ad_div(ad_mul(g, n), b)); /* -g a / b^2 = -g y / b */
}
/* d(a^b)/da = b a^(b-1); d(a^b)/db = a^b ln a, taken as 0 where a = 0 and
 * b >= 0 (as PyTorch: 0^b is flat in b there). ln reads a where a != 0, 1
 * elsewhere, so no infinity enters the product or its derivatives. */
void ad_bwd_power(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *a = n->inputs[0], *b = n->inputs[1];
    if (a->flags & NODE_REQGRAD)
        d[0] = ad_mul(g, ad_mul(b, ad_power(a, ad_affine(b, 1, -1))));
    if (b->flags & NODE_REQGRAD) {
        ad_node *zero = ad_eq(a, ad_zeros_like(a));
        ad_node *safe = ad_where(zero, ad_affine(zero, 0, 1), a);
        d[1] = ad_mul(g, ad_where(zero, ad_zeros_like(n), ad_mul(n, ad_log(safe))));
    }
}
static void bwd_extremum(ad_node *n, ad_node *g, ad_node **d, ad_node *winner, ad_node *loser)
{
    /* 1 where the first operand wins, 1/2 at ties (as PyTorch), else 0 */
    ad_node *m = ad_step_at(ad_sub(winner, loser), 0.5);
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = ad_mul(g, m);
    if (n->inputs[1]->flags & NODE_REQGRAD)
        d[1] = ad_mul(g, ad_affine(m, -1, 1));
}
void ad_bwd_maximum(ad_node *n, ad_node *g, ad_node **d)
{
    bwd_extremum(n, g, d, n->inputs[0], n->inputs[1]);
}
void ad_bwd_minimum(ad_node *n, ad_node *g, ad_node **d)
{
    bwd_extremum(n, g, d, n->inputs[1], n->inputs[0]);
}
void ad_bwd_where(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *c = n->inputs[0], *zero = ad_zeros_like(g);
    if (n->inputs[1]->flags & NODE_REQGRAD)
        d[1] = ad_where(c, g, zero);
    if (n->inputs[2]->flags & NODE_REQGRAD)
        d[2] = ad_where(c, zero, g);
}
void ad_bwd_straight_through(ad_node *n, ad_node *g, ad_node **d)
{
    (void)n;
    d[0] = g;
}

/* ------------------------------------------------------- scaled addition */

/* p += step * g in the element type, as torch's p.add_(g, alpha=-lr) for the
 * plain SGD step (nn/optim.c) and ad_backward_sgd: branch-free, compiled for
 * SSE2 and AVX2 (chosen at load time; no FMA, so the same bits either way),
 * in chunks of 4,096 elements split over the library's threads by the
 * elements' count (each element written by one thread: the same result for
 * any thread count). */
#define ADD_SCALED_CHUNK 4096

#define ADD_SCALED_KERNEL(T, name)                                                                 \
    AD_SIMD_CLONES static void name(T *p, const T *g, T step, int64_t n)                           \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++)                                                            \
            p[i] += step * g[i];                                                                   \
    }
ADD_SCALED_KERNEL(float, add_scaled_f32)
ADD_SCALED_KERNEL(double, add_scaled_f64)

#define add_scaled(P, G, step, n)                                                                  \
    _Generic((P), float * : add_scaled_f32, default : add_scaled_f64)(P, G, step, n)

void ad_add_scaled(ad_dtype dt, void *p, const void *g, double step, int64_t n)
{
    const int64_t chunks = (n + ADD_SCALED_CHUNK - 1) / ADD_SCALED_CHUNK;
    AD_DISPATCH_DTYPE(dt, {
        T *P = p;
        const T *G = g;
        const T s = (T)step;
        AD_FOR_SPLIT(k, chunks, n >= AD_PARALLEL_MIN, {
            const int64_t lo = k * ADD_SCALED_CHUNK;
            const int64_t len = n - lo < ADD_SCALED_CHUNK ? n - lo : ADD_SCALED_CHUNK;
            add_scaled(P + lo, G + lo, s, len);
        });
    });
}
