/* ops_linalg.c -- matrix product (through ad_gemm, gemm.c) and transpose.
 *
 * C = op(A) op(B) where op transposes the last two axes when its flag is set
 * (iparam[0] for A, iparam[1] for B), so gradient rules never copy a
 * transpose: dA = G op(B)^T and dB = op(A)^T G are matmuls with flags. */
#include <string.h>

#include "graph_impl.h"

static void mat_dims(const ad_node *t, bool trans, int64_t *rows, int64_t *cols)
{
    int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
    *rows = trans ? c : r;
    *cols = trans ? r : c;
}

bool ad_shape_matmul(ad_node *n)
{
    ad_node *a = n->inputs[0], *b = n->inputs[1];
    char b1[96], b2[96];
    if (a->ndim < 2 || b->ndim < 2) {
        ad_fail(n->g, "ad_matmul: shapes %s and %s: both operands need at least 2 axes",
                ad_shape_str(a, b1, sizeof b1), ad_shape_str(b, b2, sizeof b2));
        return false;
    }
    int64_t m, ka, kb, nn;
    mat_dims(a, n->rare->iparam[0], &m, &ka);
    mat_dims(b, n->rare->iparam[1], &kb, &nn);
    if (ka != kb) {
        ad_fail(n->g, "ad_matmul: shapes %s%s and %s%s do not align",
                ad_shape_str(a, b1, sizeof b1), n->rare->iparam[0] ? "ᵀ" : "",
                ad_shape_str(b, b2, sizeof b2), n->rare->iparam[1] ? "ᵀ" : "");
        return false;
    }
    /* broadcast the leading (batch) axes */
    int nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0; d < nb; d++) {
        int da = d - (nb - (a->ndim - 2)), db = d - (nb - (b->ndim - 2));
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            ad_fail(n->g, "ad_matmul: batch axes of %s and %s do not broadcast",
                    ad_shape_str(a, b1, sizeof b1), ad_shape_str(b, b2, sizeof b2));
            return false;
        }
        shape[d] = sa == 1 ? sb : sa;
    }
    shape[nb] = m;
    shape[nb + 1] = nn;
    return ad_shape_set(n, nb + 2, shape, "ad_matmul");
}

void ad_matmul_2d(const ad_node *n, double alpha, bool add, void *c)
{
    const ad_node *a = n->inputs[0], *b = n->inputs[1];
    bool ta = n->rare->iparam[0] != 0, tb = n->rare->iparam[1] != 0;
    ad_mm_dims d;
    mat_dims(a, ta, &d.m, &d.k);
    d.n = n->shape[n->ndim - 1];
    ad_gemm_rows(n->g->dtype, ta, tb, alpha, add, d, a->value, b->value, c, NULL);
}

void ad_fwd_matmul(ad_node *n)
{
    const ad_node *a = n->inputs[0], *b = n->inputs[1];
    bool ta = n->rare->iparam[0] != 0, tb = n->rare->iparam[1] != 0;
    if (n->ndim == 2) {
        /* NODE_ACCUMULATE: the node's buffer is a leaf's gradient, added into
         * (memory reuse), or written over (ad_backward_overwrite, and
         * ad_backward_sgd where the step is not fused: engine.c) */
        bool add = (n->flags & NODE_ACCUMULATE) && n->g->grad_mode == GRAD_ADD;
        ad_matmul_2d(n, 1.0, add, n->value);
        return;
    }
    ad_mm_dims d;
    mat_dims(a, ta, &d.m, &d.k);
    d.n = n->shape[n->ndim - 1];
    const size_t es = n->g->elem;
    const int64_t sa = a->shape[a->ndim - 2] * a->shape[a->ndim - 1];
    const int64_t sb = b->shape[b->ndim - 2] * b->shape[b->ndim - 1];
    const int64_t sc = d.m * d.n;
    if (b->ndim == 2 && !ta) {
        /* (..., m, k) times one matrix: the stacked rows of a are one (rows, k)
         * matrix and the output's rows follow them, so one product of all the
         * rows instead of one small product per batch entry */
        d.m = a->numel / d.k;
        ad_gemm(n->g->dtype, false, tb, false, d, a->value, b->value, n->value);
        return;
    }
    /* batched: iterate the broadcast batch axes; matrices are the last two */
    int nb = n->ndim - 2;
    int64_t idx[AD_MAX_DIMS] = {0}, batches = 1;
    for (int i = 0; i < nb; i++)
        batches *= n->shape[i];
    for (int64_t t = 0; t < batches; t++) {
        int64_t oa = 0, ob = 0, stra = 1, strb = 1;
        for (int i = nb - 1; i >= 0; i--) {
            int da = i - (nb - (a->ndim - 2)), db = i - (nb - (b->ndim - 2));
            if (da >= 0) {
                if (a->shape[da] != 1)
                    oa += idx[i] * stra;
                stra *= a->shape[da];
            }
            if (db >= 0) {
                if (b->shape[db] != 1)
                    ob += idx[i] * strb;
                strb *= b->shape[db];
            }
        }
        ad_gemm(n->g->dtype, ta, tb, false, d, (const char *)a->value + (size_t)(oa * sa) * es,
                (const char *)b->value + (size_t)(ob * sb) * es,
                (char *)n->value + (size_t)(t * sc) * es);
        for (int i = nb - 1; i >= 0; i--) {
            if (++idx[i] < n->shape[i])
                break;
            idx[i] = 0;
        }
    }
}

/* ------------------------------------------------------------------ linear */

/* ad_fwd_linear's passes over rows [lo, hi) of its output: the bias copied in
 * before the product, and linear_relu's clamp after it (the epilogue, one
 * (batch, out) buffer and one pass less than linear + relu). */
static void linear_bias_rows(void *ctx, int64_t lo, int64_t hi)
{
    const ad_node *n = ctx, *b = n->inputs[2];
    const int64_t m = n->shape[n->ndim - 1];
    const size_t es = n->g->elem;
    AD_FOR_SPLIT(r, hi - lo, (hi - lo) * m >= AD_PARALLEL_MIN,
                 memcpy((char *)n->value + (size_t)((lo + r) * m) * es, b->value, (size_t)m * es););
}

static void linear_relu_rows(void *ctx, int64_t lo, int64_t hi)
{
    const ad_node *n = ctx;
    const int64_t m = n->shape[n->ndim - 1];
    AD_DISPATCH(n->g, {
        T *o = (T *)n->value + lo * m;
        AD_FOR_ELEMENTS(i, (hi - lo) * m, o[i] = o[i] > 0 ? o[i] : 0;);
    });
}

bool ad_shape_linear(ad_node *n)
{
    const ad_node *x = n->inputs[0], *w = n->inputs[1], *b = n->inputs[2];
    const char *fn = n->op == AD_OP_LINEAR ? "ad_linear" : "ad_linear_relu";
    char b1[96], b2[96], b3[96];
    if (x->ndim < 2 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[0]) {
        ad_fail(n->g, "%s: shapes %s and %s do not align", fn, ad_shape_str(x, b1, sizeof b1),
                ad_shape_str(w, b2, sizeof b2));
        return false;
    }
    int64_t m = w->shape[1];
    bool bias_ok = (b->ndim == 1 && b->shape[0] == m) ||
                   (b->ndim == 2 && b->shape[0] == 1 && b->shape[1] == m);
    if (!bias_ok) {
        ad_fail(n->g, "%s: bias %s does not match %s @ %s", fn, ad_shape_str(b, b3, sizeof b3),
                ad_shape_str(x, b1, sizeof b1), ad_shape_str(w, b2, sizeof b2));
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = m;
    return ad_shape_set(n, x->ndim, shape, fn);
}

void ad_fwd_linear(ad_node *n)
{
    const ad_node *x = n->inputs[0], *w = n->inputs[1];
    const int64_t m = n->shape[n->ndim - 1];
    int64_t rows = 1; /* the leading axes' rows, one matrix */
    for (int i = 0; i < n->ndim - 1; i++)
        rows *= n->shape[i];
    /* bias first, the product added (beta = 1), and for linear_relu the
     * ReLU: each thread's rows copied, multiplied and clamped while they are
     * in its cache (ad_gemm_rows: one parallel region, not three) */
    ad_mm_dims d = {rows, x->shape[x->ndim - 1], m};
    /* weights held by an evaluation loop: packed once for all its chunks */
    if (ad_gemm_held(n->g, d, x->value, w->value, n->inputs[2]->value, n->op == AD_OP_LINEAR_RELU,
                     n->value))
        return;
    const ad_gemm_hook hook = {linear_bias_rows,
                               n->op == AD_OP_LINEAR_RELU ? linear_relu_rows : NULL, n};
    ad_gemm_rows(n->g->dtype, false, false, 1.0, true, d, x->value, w->value, n->value, &hook);
}

ad_node *ad_linear(ad_node *x, ad_node *w, ad_node *b)
{
    ad_node *in[3] = {x, w, b};
    if (!x || !w || !b)
        return NULL;
    return ad_op_apply(AD_OP_LINEAR, 3, in, NULL, 0, NULL, 0);
}

ad_node *ad_linear_relu(ad_node *x, ad_node *w, ad_node *b)
{
    ad_node *in[3] = {x, w, b};
    if (!x || !w || !b)
        return NULL;
    return ad_op_apply(AD_OP_LINEAR_RELU, 3, in, NULL, 0, NULL, 0);
}

/* gradients of XW + b given g = d loss / d(XW + b) */
static void linear_grads(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *x = n->inputs[0], *w = n->inputs[1], *b = n->inputs[2];
    /* the bias's sum over the rows first, while g is in cache: a planned
     * pass on two threads then runs it beside the products, on the thread
     * that computed g (engine.c, groups), not after the weight's product */
    if ((b->flags & NODE_REQGRAD) && !ad_same_shape(g, b))
        d[2] = ad_sum_to(g, b);
    if (x->flags & NODE_REQGRAD)
        d[0] = ad_matmul_t(g, 0, w, 1);
    if (w->flags & NODE_REQGRAD) {
        if (x->ndim > 2) { /* the rows of all leading axes as one matrix (views) */
            x = ad_reshape(x, 2, (int64_t[]){-1, x->shape[x->ndim - 1]});
            g = ad_reshape(g, 2, (int64_t[]){-1, g->shape[g->ndim - 1]});
        }
        d[1] = ad_matmul_t(x, 1, g, 0);
    }
    if (!d[2])
        d[2] = g;
}

void ad_bwd_linear(ad_node *n, ad_node *g, ad_node **d) { linear_grads(n, g, d); }

void ad_bwd_linear_relu(ad_node *n, ad_node *g, ad_node **d)
{
    /* y > 0 exactly where XW + b > 0: the mask is read from the output */
    linear_grads(n, ad_relu_grad(g, n), d);
}

bool ad_shape_transpose(ad_node *n)
{
    ad_node *a = n->inputs[0];
    if (a->ndim < 2) {
        char sh[96];
        ad_fail(n->g, "ad_transpose: shape %s has fewer than 2 axes",
                ad_shape_str(a, sh, sizeof sh));
        return false;
    }
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 2] = a->shape[a->ndim - 1];
    shape[a->ndim - 1] = a->shape[a->ndim - 2];
    return ad_shape_set(n, a->ndim, shape, "ad_transpose");
}

void ad_fwd_transpose(ad_node *n)
{
    const ad_node *a = n->inputs[0];
    const int64_t r = a->shape[a->ndim - 2], c = a->shape[a->ndim - 1];
    const int64_t mats = (r != 0 && c != 0) ? a->numel / (r * c) : 0;
    AD_DISPATCH(n->g, {
        const T *A = a->value;
        T *O = n->value;
        /* in 32 x 32 tiles, each written row by row: the tile's lines of A
         * and O stay in cache (row by row over the whole matrix, every write
         * of a (512, 128) weight went to a new line, 2-3 ns per element) */
        enum { TILE = 32 };
        for (int64_t t = 0; t < mats; t++) {
            const T *At = A + t * r * c;
            T *Ot = O + t * r * c;
            for (int64_t i0 = 0; i0 < r; i0 += TILE)
                for (int64_t j0 = 0; j0 < c; j0 += TILE) {
                    const int64_t i1 = i0 + TILE < r ? i0 + TILE : r;
                    const int64_t j1 = j0 + TILE < c ? j0 + TILE : c;
                    for (int64_t j = j0; j < j1; j++)
                        for (int64_t i = i0; i < i1; i++)
                            Ot[j * r + i] = At[i * c + j];
                }
        }
    });
}

ad_node *ad_matmul_t(ad_node *a, int trans_a, ad_node *b, int trans_b)
{
    if (!a || !b)
        return NULL;
    ad_node *in[2] = {a, b};
    int64_t ip[2] = {trans_a != 0, trans_b != 0};
    return ad_op_apply(AD_OP_MATMUL, 2, in, NULL, 0, ip, 2);
}

ad_node *ad_matmul(ad_node *a, ad_node *b) { return ad_matmul_t(a, 0, b, 0); }

/* Two transpose flags, 0 or 1; every other integer parameter unused (0). */
bool ad_check_matmul(const ad_node *n)
{
    for (int i = 0; i < AD_MAX_IPARAMS; i++) {
        int64_t v = n->rare->iparam[i];
        if (i < 2 ? (v == 0 || v == 1) : v == 0)
            continue;
        ad_fail(n->g,
                "ad_matmul: integer parameter %d is %lld; matmul takes two transpose flags "
                "(0 or 1) and nothing else",
                i, (long long)v);
        return false;
    }
    return true;
}

ad_node *ad_transpose(ad_node *a)
{
    if (!a)
        return NULL;
    return ad_node_make(a->g, AD_OP_TRANSPOSE, 1, &a, NULL, NULL);
}

void ad_bwd_matmul(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *a = n->inputs[0], *b = n->inputs[1];
    int ta = (int)n->rare->iparam[0], tb = (int)n->rare->iparam[1];
    if (a->flags & NODE_REQGRAD)
        d[0] = ta ? ad_matmul_t(b, tb, g, 1) : ad_matmul_t(g, 0, b, !tb);
    if (!(b->flags & NODE_REQGRAD))
        return;
    if (b->ndim == 2 && a->ndim > 2 && !ta) {
        /* one matrix against stacked rows: its gradient is one product over
         * all the rows (a and g seen as matrices), not one per batch entry
         * summed afterwards over the batch axes */
        ad_node *a2 = ad_reshape(a, 2, (int64_t[]){-1, a->shape[a->ndim - 1]});
        ad_node *g2 = ad_reshape(g, 2, (int64_t[]){-1, g->shape[g->ndim - 1]});
        d[1] = tb ? ad_matmul_t(g2, 1, a2, 0) : ad_matmul_t(a2, 1, g2, 0);
        return;
    }
    d[1] = tb ? ad_matmul_t(g, 1, a, ta) : ad_matmul_t(a, !ta, g, 0);
}

void ad_bwd_transpose(ad_node *n, ad_node *g, ad_node **d)
{
    (void)n;
    d[0] = ad_transpose(g);
}
