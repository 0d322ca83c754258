/* ops_conv.c -- convolution and pooling over the trailing spatial axes.
 *
 * Shape legend: N batch, C input channels, O output channels, G groups,
 * (H, W) input size, (KH, KW) kernel, (OH, OW) output size; a 1-d tensor
 * (N, C, L) is the 2-d case with H = KH = OH = 1, so every kernel below is
 * written once (and, through AD_DISPATCH, once for f32 and f64).
 *
 * Convolution is cross-correlation, as in PyTorch:
 *   y[n,o,i,j] = Σ_{c,a,b} w[o,c,a,b] · x[n, g·C/G + c, i·sh − ph + a·dh, j·sw − pw + b·dw]
 * computed per group and chunk of images as one GEMM, W_g (O/G, C/G·KH·KW)
 * @ col (C/G·KH·KW, nb·OH·OW), where col is the im2col unfolding of the
 * chunk's images side by side (conv_chunk says how many; a 1×1 kernel with
 * stride 1 and no padding uses the image itself, one image at a time). A
 * forward of few taps (C/G·KH·KW up to FEW_TAPS_MAX) computes that product
 * with its own kernel, the bias and ReLU included (few_taps).
 *
 * conv_bias(x, w, b) adds b (O) per output channel while it moves the
 * chunk's GEMM output to the images' places, still in cache (no separate
 * broadcast add over the batch); conv_bias_relu applies the ReLU in that
 * same pass (the CNN's conv -> relu in one pass). conv_bias_relu_pool also
 * takes the 2×2 max pool (stride 2, no padding) of that in the same pass,
 * recording the argmax as max_pool does, so the full-size activation is
 * never written: relu and max commute, and the pooled value's sign is the
 * ReLU's mask at the argmax, which is all its gradient needs.
 *
 * Every gradient rule builds ops of this file, so gradients of gradients work:
 *   conv(x, w) -> y          ∂/∂x = conv_transpose(G, w)    ∂/∂w = conv_weight_grad(x, G)
 *     (Winograd: conv_transpose(G, w, y) and conv_weight_grad(x, G, y or that ∂/∂x node))
 *   conv_bias(x, w, b)       as conv, ∂/∂b = sum of G over the spatial axes and the batch
 *   conv_bias_relu(x, w, b)  as conv_bias with G·[y > 0] (relu_grad) for G
 *   conv_bias_relu_pool(x, w, b)  as conv_bias with max_pool_scatter(G·[y > 0], y) for G
 *   conv_transpose(g, w)     ∂/∂g = conv(G, w)              ∂/∂w = conv_weight_grad(G, g)
 *     (y, when given, lends it V and has it make dw too: fuses_weight_grad)
 *   conv_weight_grad(x, g)   ∂/∂x = conv_transpose(g, G)    ∂/∂g = conv(x, G)
 *     (a third operand lends it the transformed x y's forward kept, kept_chunks, or
 *     the dw that conv_transpose(g, w, y) made, fuses_weight_grad)
 *   max_pool(x)              ∂/∂x = max_pool_scatter(G, y)  (by the argmax recorded in y)
 *   max_pool_scatter(g, y)   ∂/∂g = max_pool_gather(G, y)
 *   max_pool_gather(h, y)    ∂/∂h = max_pool_scatter(G, y)
 *   avg_pool(x)              ∂/∂x = avg_pool_transpose(G)
 *   avg_pool_transpose(g)    ∂/∂g = avg_pool(G)
 *
 * Integer parameters. Convolution ops: iparam[0..1] stride (h, w), [2..3]
 * padding, [4..5] dilation, [6] groups, [7..8] the size the op cannot infer:
 * the input's (H, W) for conv_transpose, the kernel's (KH, KW) for
 * conv_weight_grad. Pooling ops: [0..1] kernel, [2..3] stride, [4..5]
 * padding, [6..7] the input's (H, W) for avg_pool_transpose.
 *
 * The Winograd kernels (stride-1 3×3 convolutions) are in conv_winograd.c;
 * conv_impl.h holds what the two files share.
 *
 * Scratch memory (the im2col buffer, shared by the graph), max pool's
 * argmax and a Winograd forward's kept transform (per node) are sized by the
 * shape rules, so replay allocates nothing unless a resize makes them grow. */
#include <math.h>
#include <string.h>

#include "conv_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CONV_HAVE_AVX2 1
#include <immintrin.h>
#endif

/* (H, W) of a 4-d tensor, (1, L) of a 3-d one */
static void spatial(const ad_node *t, int64_t *h, int64_t *w)
{
    *h = t->ndim == 4 ? t->shape[2] : 1;
    *w = t->shape[t->ndim - 1];
}

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* geometry from the node's parameters and the shapes of x, w, y (each may be
 * an input or the output of the op); w NULL: a pooling node's window */
static conv_geom make_geom(const ad_node *n, const ad_node *x, const ad_node *w, const ad_node *y)
{
    conv_geom q;
    const int64_t *p = n->rare->iparam;
    q.N = x->shape[0];
    q.C = x->shape[1];
    spatial(x, &q.H, &q.W);
    spatial(y, &q.OH, &q.OW);
    q.sh = p[0];
    q.sw = p[1];
    q.ph = p[2];
    q.pw = p[3];
    if (w) {
        q.O = w->shape[0];
        spatial(w, &q.KH, &q.KW);
        q.dh = p[4];
        q.dw = p[5];
        q.G = p[6];
    } else {
        q.O = q.G = q.C;
        q.KH = p[4];
        q.KW = p[5];
        q.dh = q.dw = 1;
    }
    return q;
}

/* rows [lo, hi) of the input under the window of output row i */
static void window(int64_t i, int64_t s, int64_t p, int64_t k, int64_t len, int64_t *lo,
                   int64_t *hi)
{
    int64_t a = i * s - p;
    *lo = a < 0 ? 0 : a;
    *hi = a + k < len ? a + k : len;
}

/* x must have nd axes (legend says which); false with an error otherwise */
static bool check_rank(const ad_node *x, int nd, const char *nm, const char *what,
                       const char *legend)
{
    if (x->ndim == nd)
        return true;
    char b1[96];
    ad_fail(x->g, "%s: %s %s must have %d axes %s", nm, what, ad_shape_str(x, b1, sizeof b1), nd,
            legend);
    return false;
}

static const char *conv_name(int op, int nd)
{
    switch (op) {
    case AD_OP_CONV_TRANSPOSE:
        return "ad_conv_transpose";
    case AD_OP_CONV_WEIGHT_GRAD:
        return "ad_conv_weight_grad";
    case AD_OP_CONV_BIAS:
        return nd == 3 ? "ad_conv1d_bias" : "ad_conv2d_bias";
    case AD_OP_CONV_BIAS_RELU:
        return nd == 3 ? "ad_conv1d_bias_relu" : "ad_conv2d_bias_relu";
    case AD_OP_CONV_BIAS_RELU_POOL:
        return "ad_conv2d_bias_relu_pool";
    default:
        return nd == 3 ? "ad_conv1d" : "ad_conv2d";
    }
}

/* the unfolded image is the image itself */
static bool is_pointwise(const conv_geom *q)
{
    return q->KH == 1 && q->KW == 1 && q->sh == 1 && q->sw == 1 && q->ph == 0 && q->pw == 0;
}

/* The first count integer parameters of n (strides, paddings, dilations,
 * groups, kernel and image sizes) fit in 32 bits, as the public options'
 * int fields do: then sums and products of a parameter with a size (below
 * AD_NUMEL_MAX) cannot overflow. ad_op_apply passes any int64. */
static bool params_fit(ad_node *n, int count, const char *nm)
{
    for (int i = 0; i < count; i++)
        if (n->rare->iparam[i] > INT32_MAX || n->rare->iparam[i] < INT32_MIN) {
            ad_fail(n->g, "%s: parameter %d (%lld) is beyond 32 bits", nm, i,
                    (long long)n->rare->iparam[i]);
            return false;
        }
    return true;
}

/* d·(k − 1) + 1, the extent of k taps dilated by d >= 1, saturated at
 * INT64_MAX instead of overflowing (k is a weight's axis, up to AD_NUMEL_MAX). */
static int64_t dilated(int64_t k, int64_t d)
{
    return k - 1 > (INT64_MAX - 1) / d ? INT64_MAX : d * (k - 1) + 1;
}

/* Checks the parameters of a convolution op whose tensors have nd axes. */
static bool conv_params_ok(ad_node *n, int nd, const char *nm)
{
    const int64_t *p = n->rare->iparam;
    if (!params_fit(n, 9, nm))
        return false;
    if (p[0] < 1 || p[1] < 1 || p[4] < 1 || p[5] < 1 || p[2] < 0 || p[3] < 0 || p[6] < 1) {
        ad_fail(n->g,
                "%s: stride (%lld,%lld) and dilation (%lld,%lld) must be positive, padding "
                "(%lld,%lld) not negative, groups %lld positive",
                nm, (long long)p[0], (long long)p[1], (long long)p[4], (long long)p[5],
                (long long)p[2], (long long)p[3], (long long)p[6]);
        return false;
    }
    if (nd == 3 && (p[0] != 1 || p[2] != 0 || p[4] != 1)) {
        ad_fail(n->g,
                "%s: a 1-d convolution has stride 1, padding 0, dilation 1 on the unused "
                "height axis",
                nm);
        return false;
    }
    return true;
}

/* The checks shared by the three convolution ops, given x, w, y shapes
 * (whichever of them is the op's output has its spatial size from
 * expected_out; the others are inputs). */
static bool conv_check(ad_node *n, const conv_geom *q, const ad_node *x, const ad_node *w,
                       const char *nm)
{
    char b1[96], b2[96];
    if (q->C % q->G != 0 || q->O % q->G != 0) {
        ad_fail(n->g,
                "%s: groups %lld does not divide the %lld input channels of %s and the %lld "
                "output channels of weight %s",
                nm, (long long)q->G, (long long)q->C, ad_shape_str(x, b1, sizeof b1),
                (long long)q->O, ad_shape_str(w, b2, sizeof b2));
        return false;
    }
    if (w->shape[1] != q->C / q->G) {
        ad_fail(n->g, "%s: input %s has %lld channels, weight %s expects %lld", nm,
                ad_shape_str(x, b1, sizeof b1), (long long)q->C, ad_shape_str(w, b2, sizeof b2),
                (long long)(w->shape[1] <= INT64_MAX / q->G ? w->shape[1] * q->G : INT64_MAX));
        return false;
    }
    if (q->O < 1 || q->KH < 1 || q->KW < 1 || q->C < 1) {
        ad_fail(n->g, "%s: weight %s and input %s need at least one channel and kernel element", nm,
                ad_shape_str(w, b2, sizeof b2), ad_shape_str(x, b1, sizeof b1));
        return false;
    }
    int64_t ekh = dilated(q->KH, q->dh), ekw = dilated(q->KW, q->dw);
    if (ekh > q->H + 2 * q->ph || ekw > q->W + 2 * q->pw) {
        ad_fail(n->g,
                "%s: kernel %lldx%lld (dilated %lldx%lld) is larger than the padded input "
                "%lldx%lld of %s",
                nm, (long long)q->KH, (long long)q->KW, (long long)ekh, (long long)ekw,
                (long long)(q->H + 2 * q->ph), (long long)(q->W + 2 * q->pw),
                ad_shape_str(x, b1, sizeof b1));
        return false;
    }
    if ((q->H * q->W) > INT32_MAX || q->KH * q->KW > INT32_MAX / q->C) {
        ad_fail(n->g, "%s: input %s is too large for one image GEMM", nm,
                ad_shape_str(x, b1, sizeof b1));
        return false;
    }
    return true;
}

/* Images per GEMM: the GEMMs of a convolution run over a chunk of nb images
 * at once, on a column matrix (C/G·KH·KW, nb·P) that holds the chunk's
 * unfolded images side by side, and a (O/G, nb·P) matrix for the output (or
 * the output's gradient) in the same column order, which the images' (O, P)
 * blocks are moved to and from. Per image, an output of few positions makes
 * a narrow product (the CNN's second layer: 64×288 by 288×196); nb is the
 * fewest images that make CONV_CHUNK_COLS columns, at most as many as keep
 * both matrices within CONV_CHUNK_BYTES (half of a core's L2 cache here) so
 * that they are still in cache when the GEMM reads them and when the output
 * moves. Wider chunks (the whole batch) measured slower, and a chunk costs a
 * move of the output that a wide image does not repay (docs/benchmarks.md,
 * "Convolution GEMMs over the batch"). A pointwise convolution, whose image
 * is its own column matrix, runs one image at a time. */
#define CONV_CHUNK_COLS 512
#define CONV_CHUNK_BYTES ((size_t)1 << 20)

static int64_t conv_chunk(const conv_geom *q, size_t elem)
{
    const int64_t P = q->OH * q->OW;
    if (is_pointwise(q) || P >= CONV_CHUNK_COLS || q->N <= 1)
        return 1;
    const size_t per_image = (size_t)(q->C / q->G * q->KH * q->KW + q->O / q->G) * (size_t)P * elem;
    int64_t nb = (CONV_CHUNK_COLS + P - 1) / P, fit = (int64_t)(CONV_CHUNK_BYTES / per_image);
    nb = nb < fit ? nb : fit;
    nb = nb < q->N ? nb : q->N;
    return nb < 1 ? 1 : nb;
}

/* the same stride, padding, dilation and groups */
static bool same_params(const ad_node *a, const ad_node *b)
{
    return memcmp(a->rare->iparam, b->rare->iparam, sizeof(int64_t) * 7) == 0;
}

/* scratch for a chunk: the column matrix (none for a pointwise
 * convolution), and when nb > 1 or the output is pooled the output matrix
 * after it */
static bool conv_scratch(ad_node *n, const conv_geom *q)
{
    if (ad_wino_use(n, q)) {
        const bool adjoint = n->op == AD_OP_CONV_TRANSPOSE && ad_wino_transpose_by_adjoint(q);
        const wino_geom w = ad_wino_make(q, n->op == AD_OP_CONV_TRANSPOSE && !adjoint);
        const size_t du = adjoint && n->ninputs == 3 ? ad_wino_u_elems(&w) : 0;
        return ad_scratch(n->g, (ad_wino_scratch_elems(&w, n->g->elem) + du) * n->g->elem);
    }
    const bool pool = n->op == AD_OP_CONV_BIAS_RELU_POOL; /* the output is never t */
    if (is_pointwise(q) && !pool)
        return true;
    const int64_t nb = conv_chunk(q, n->g->elem);
    size_t cols = is_pointwise(q) ? 0 : (size_t)(q->C / q->G * q->KH * q->KW);
    size_t rows = (size_t)(nb * q->OH * q->OW);
    if (nb > 1 || pool)
        cols += (size_t)(q->O / q->G);
    return ad_scratch(n->g, cols * rows * n->g->elem);
}

static bool set_spatial_shape(ad_node *n, int nd, int64_t a, int64_t b, int64_t h, int64_t w,
                              const char *nm)
{
    int64_t shape[4] = {a, b, h, w};
    if (nd == 3)
        shape[2] = w;
    return ad_shape_set(n, nd, shape, nm);
}

bool ad_shape_conv(ad_node *n)
{
    const ad_node *x = n->inputs[0], *w = n->inputs[1];
    char b1[96], b2[96];
    if ((x->ndim != 3 && x->ndim != 4) || w->ndim != x->ndim) {
        ad_fail(n->g,
                "ad_conv: input %s and weight %s must both have 3 axes (N,C,L), (O,C/groups,K) "
                "or 4 (N,C,H,W), (O,C/groups,KH,KW)",
                ad_shape_str(x, b1, sizeof b1), ad_shape_str(w, b2, sizeof b2));
        return false;
    }
    const char *nm = conv_name(n->op, x->ndim);
    if (!conv_params_ok(n, x->ndim, nm))
        return false;
    conv_geom q = make_geom(n, x, w, x);
    if (!conv_check(n, &q, x, w, nm))
        return false;
    if (n->ninputs == 3) { /* conv_bias, conv_bias_relu: one bias per output channel */
        const ad_node *b = n->inputs[2];
        if (b->ndim != 1 || b->shape[0] != q.O) {
            char b3[96];
            ad_fail(n->g, "%s: bias %s must have one element per output channel of weight %s", nm,
                    ad_shape_str(b, b3, sizeof b3), ad_shape_str(w, b2, sizeof b2));
            return false;
        }
    }
    q.OH = out_size(q.H, q.KH, q.sh, q.ph, q.dh);
    q.OW = out_size(q.W, q.KW, q.sw, q.pw, q.dw);
    if (ad_wino_use(n, &q) && !ad_wino_keep_header(n)) /* where a weight gradient may keep V */
        return false;
    if (n->op == AD_OP_CONV_BIAS_RELU_POOL) { /* 2×2 windows, stride 2: (N, O, OH/2, OW/2) */
        if (x->ndim != 4 || q.OH < 2 || q.OW < 2) {
            ad_fail(n->g,
                    "%s: input %s and weight %s give a %lldx%lld convolution output; the 2x2 "
                    "pooling needs 4 axes and at least 2x2",
                    nm, ad_shape_str(x, b1, sizeof b1), ad_shape_str(w, b2, sizeof b2),
                    (long long)q.OH, (long long)q.OW);
            return false;
        }
        return set_spatial_shape(n, 4, q.N, q.O, q.OH / 2, q.OW / 2, nm) &&
               ad_node_aux(n, (size_t)n->numel * sizeof(int32_t)) && conv_scratch(n, &q);
    }
    return set_spatial_shape(n, x->ndim, q.N, q.O, q.OH, q.OW, nm) && conv_scratch(n, &q);
}

/* conv_transpose's third operand y: the convolution whose input gradient
 * this is (its weight is operand 2, its input has n's shape, the same
 * parameters); makes n's room for dw */
static bool fused_operand(ad_node *n, const conv_geom *q, const char *nm)
{
    const ad_node *y = n->inputs[2], *w = n->inputs[1];
    char b1[96], b2[96], b3[96];
    if (!ad_wino_keeps_transform(y) || y->inputs[1] != w || !ad_same_shape(y->inputs[0], n) ||
        !same_params(y, n)) {
        ad_fail(n->g,
                "%s: operand 3 must be the convolution by operand 2 %s of an input of shape %s "
                "with the same parameters, got %s node %s",
                nm, ad_shape_str(w, b1, sizeof b1), ad_shape_str(n, b2, sizeof b2),
                ad_ops[y->op].name, ad_shape_str(y, b3, sizeof b3));
        return false;
    }
    if (!ad_wino_use(n, q) || !ad_wino_transpose_by_adjoint(q))
        return true; /* nothing fused */
    if (!ad_wino_keep_header(n))
        return false;
    return !n->rare->op_data || ad_node_aux(n, (size_t)ad_numel(w) * n->g->elem);
}

bool ad_shape_conv_transpose(ad_node *n)
{
    const ad_node *g = n->inputs[0], *w = n->ninputs >= 2 ? n->inputs[1] : NULL;
    char b1[96], b2[96];
    const char *nm = "ad_conv_transpose";
    if (!w || n->ninputs > 3) {
        ad_fail(n->g, "%s: takes 2 operands (gradient, weight) or 3 (and the convolution), got %d",
                nm, n->ninputs);
        return false;
    }
    if ((g->ndim != 3 && g->ndim != 4) || w->ndim != g->ndim) {
        ad_fail(n->g, "%s: gradient %s and weight %s must both have 3 or 4 axes", nm,
                ad_shape_str(g, b1, sizeof b1), ad_shape_str(w, b2, sizeof b2));
        return false;
    }
    if (!conv_params_ok(n, g->ndim, nm))
        return false;
    int64_t H = n->rare->iparam[7], W = n->rare->iparam[8];
    if (H < 1 || W < 1 || (g->ndim == 3 && H != 1) || w->shape[0] != g->shape[1]) {
        ad_fail(n->g, "%s: gradient %s, weight %s and output size %lldx%lld do not fit", nm,
                ad_shape_str(g, b1, sizeof b1), ad_shape_str(w, b2, sizeof b2), (long long)H,
                (long long)W);
        return false;
    }
    if (w->shape[1] > AD_NUMEL_MAX / n->rare->iparam[6]) {
        ad_fail(n->g, "%s: weight %s with %lld groups: too many input channels", nm,
                ad_shape_str(w, b2, sizeof b2), (long long)n->rare->iparam[6]);
        return false;
    }
    if (!set_spatial_shape(n, g->ndim, g->shape[0], w->shape[1] * n->rare->iparam[6], H, W, nm))
        return false;
    conv_geom q = make_geom(n, n, w, g);
    if (!conv_check(n, &q, n, w, nm))
        return false;
    if (out_size(H, q.KH, q.sh, q.ph, q.dh) != q.OH ||
        out_size(W, q.KW, q.sw, q.pw, q.dw) != q.OW) {
        ad_fail(n->g, "%s: gradient %s is not the convolution output of a %lldx%lld input", nm,
                ad_shape_str(g, b1, sizeof b1), (long long)H, (long long)W);
        return false;
    }
    return (n->ninputs == 2 || fused_operand(n, &q, nm)) && conv_scratch(n, &q);
}

/* conv_weight_grad's third operand y: the convolution of its x with its
 * parameters and a weight of its shape; reserves y's room for V */
static bool keep_operand(ad_node *n, const conv_geom *q, const char *nm)
{
    ad_node *y = n->inputs[2];
    const ad_node *x = n->inputs[0];
    char b1[96], b2[96], b3[96];
    if (y->op == AD_OP_CONV_TRANSPOSE && y->ninputs == 3 && y->inputs[0] == n->inputs[1] &&
        y->inputs[2]->inputs[0] == x && ad_same_shape(y->inputs[1], n) && same_params(y, n))
        y = y->inputs[2]; /* dx = conv_transpose(g, w, y) of this g: y lends V to both */
    else if (!ad_wino_keeps_transform(y) || y->inputs[0] != x || !ad_same_shape(y->inputs[1], n) ||
             !same_params(y, n)) {
        ad_fail(n->g,
                "%s: operand 3 must be the convolution of operand 1 %s with the same parameters "
                "and a weight of shape %s, or its input gradient of operand 2, got %s node %s",
                nm, ad_shape_str(x, b1, sizeof b1), ad_shape_str(n, b2, sizeof b2),
                ad_ops[y->op].name, ad_shape_str(y, b3, sizeof b3));
        return false;
    }
    if (!y->rare->op_data || !ad_wino_use(n, q))
        return true; /* nothing kept: conv_run transforms x itself */
    const wino_geom w = ad_wino_make(q, false);
    const size_t need = ad_wino_kept_end(y, &w, n->g->elem);
    if (y->rare->aux && y->rare->aux_bytes >= need)
        return true;
    y->rare->op_data[KEEP_VALID] = 0; /* not written there yet */
    return ad_node_aux(y, need);
}

bool ad_shape_conv_weight_grad(ad_node *n)
{
    const ad_node *x = n->inputs[0], *g = n->ninputs >= 2 ? n->inputs[1] : NULL;
    char b1[96], b2[96];
    const char *nm = "ad_conv_weight_grad";
    if (!g || n->ninputs > 3) {
        ad_fail(n->g, "%s: takes 2 operands (input, gradient) or 3 (and the convolution), got %d",
                nm, n->ninputs);
        return false;
    }
    if ((x->ndim != 3 && x->ndim != 4) || g->ndim != x->ndim || g->shape[0] != x->shape[0]) {
        ad_fail(n->g, "%s: input %s and gradient %s must both have 3 or 4 axes and one batch", nm,
                ad_shape_str(x, b1, sizeof b1), ad_shape_str(g, b2, sizeof b2));
        return false;
    }
    if (!conv_params_ok(n, x->ndim, nm))
        return false;
    int64_t KH = n->rare->iparam[7], KW = n->rare->iparam[8], G = n->rare->iparam[6];
    if (KH < 1 || KW < 1 || (x->ndim == 3 && KH != 1) || x->shape[1] % G != 0) {
        ad_fail(n->g, "%s: input %s, kernel %lldx%lld and groups %lld do not fit", nm,
                ad_shape_str(x, b1, sizeof b1), (long long)KH, (long long)KW, (long long)G);
        return false;
    }
    if (!set_spatial_shape(n, x->ndim, g->shape[1], x->shape[1] / G, KH, KW, nm))
        return false;
    conv_geom q = make_geom(n, x, n, g);
    if (!conv_check(n, &q, x, n, nm))
        return false;
    if (out_size(q.H, KH, q.sh, q.ph, q.dh) != q.OH ||
        out_size(q.W, KW, q.sw, q.pw, q.dw) != q.OW) {
        ad_fail(n->g, "%s: gradient %s is not the convolution output of input %s", nm,
                ad_shape_str(g, b2, sizeof b2), ad_shape_str(x, b1, sizeof b1));
        return false;
    }
    return (n->ninputs == 2 || keep_operand(n, &q, nm)) && conv_scratch(n, &q);
}

/* [lo, hi): the output columns j whose input column j·s + off lies in [0, len) */
static void valid_range(int64_t off, int64_t s, int64_t len, int64_t outlen, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = len - off <= 0 ? 0 : (len - off + s - 1) / s;
    *lo = a < outlen ? a : outlen;
    *hi = b < *lo ? *lo : (b < outlen ? b : outlen);
}

/* unfold for unit strides and an output as wide as the input (a "same"
 * convolution, the usual 3x3 with padding 1): the row of col for tap (c, a, b)
 * is plane c shifted by (a·dh − ph) rows and off = b·dw − pw columns, so its
 * valid output rows [i0, i1) are one contiguous copy; the columns that fall
 * off the image's left or right edge (j < lo, j >= hi, at most |off| per
 * row) are zeroed afterwards (im2col), or zeroed in col beforehand so the
 * one contiguous add puts 0 on the neighbouring row (col2im; col is
 * scratch). Same values as the general loop. */
/* row[i·W + j] = 0 for rows [i0, i1) and columns j < lo or j >= hi, a column
 * at a time: strided stores, not a library call per row for the one or two
 * elements a row has there (what a loop along the row compiles to) */
#define ZERO_EDGES(row, W, i0, i1, lo, hi)                                                         \
    do {                                                                                           \
        for (int64_t j_ = 0; j_ < (lo); j_++)                                                      \
            for (int64_t i_ = (i0); i_ < (i1); i_++)                                               \
                (row)[i_ * (W) + j_] = 0;                                                          \
        for (int64_t j_ = (hi); j_ < (W); j_++)                                                    \
            for (int64_t i_ = (i0); i_ < (i1); i_++)                                               \
                (row)[i_ * (W) + j_] = 0;                                                          \
    } while (0)

static void unfold_same(ad_graph *g, const conv_geom *q, void *xv, void *colv, int64_t ld, bool add)
{
    const int64_t Cg = q->C / q->G, W = q->W, P = q->OH * W;
    AD_DISPATCH(g, {
        T *x = xv, *col = colv;
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t a = 0; a < q->KH; a++) {
                const int64_t roff = a * q->dh - q->ph;
                const int64_t i0 = roff < 0 ? -roff : 0;
                const int64_t i1 = q->H - roff < q->OH ? q->H - roff : q->OH;
                for (int64_t b = 0; b < q->KW; b++) {
                    T *row = col + ((c * q->KH + a) * q->KW + b) * ld;
                    const int64_t off = b * q->dw - q->pw;
                    const int64_t lo = off < 0 ? -off : 0, hi = off > 0 ? W - off : W;
                    if (i0 >= i1 || lo >= hi) { /* the tap never meets the image */
                        if (!add)
                            memset(row, 0, sizeof(T) * (size_t)P);
                        continue;
                    }
                    /* row[d] reads src[d] for d in [d0, d1) */
                    const int64_t d0 = i0 * W + lo, d1 = (i1 - 1) * W + hi;
                    T *src = x + c * q->H * W + roff * W + off;
                    if (add) {
                        ZERO_EDGES(row, W, i0, i1, lo, hi);
                        for (int64_t d = d0; d < d1; d++)
                            src[d] += row[d];
                        continue;
                    }
                    memset(row, 0, sizeof(T) * (size_t)d0);
                    memcpy(row + d0, src + d0, sizeof(T) * (size_t)(d1 - d0));
                    memset(row + d1, 0, sizeof(T) * (size_t)(P - d1));
                    ZERO_EDGES(row, W, i0, i1, lo, hi);
                }
            }
    });
}

/* col (C/G·KH·KW, OH·OW), rows ld elements apart, from one image group x
 * (C/G, H, W); add = false. add = true is the adjoint, col2im: x += the
 * columns folded back. */
static void unfold(ad_graph *g, const conv_geom *q, void *xv, void *colv, int64_t ld, bool add)
{
    const int64_t Cg = q->C / q->G;
    if (q->sh == 1 && q->sw == 1 && q->OW == q->W) {
        unfold_same(g, q, xv, colv, ld, add);
        return;
    }
    AD_DISPATCH(g, {
        T *x = xv, *col = colv;
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t a = 0; a < q->KH; a++)
                for (int64_t b = 0; b < q->KW; b++) {
                    T *row = col + ((c * q->KH + a) * q->KW + b) * ld;
                    const int64_t off = b * q->dw - q->pw;
                    int64_t lo, hi;
                    valid_range(off, q->sw, q->W, q->OW, &lo, &hi);
                    for (int64_t i = 0; i < q->OH; i++) {
                        const int64_t ih = i * q->sh - q->ph + a * q->dh;
                        T *r = row + i * q->OW;
                        if (ih < 0 || ih >= q->H) {
                            if (!add)
                                memset(r, 0, sizeof(T) * (size_t)q->OW);
                            continue;
                        }
                        /* the valid columns: image xs[j·sw] and column rs[j], j < m */
                        T *xs = x + (c * q->H + ih) * q->W + lo * q->sw + off, *rs = r + lo;
                        const int64_t m = hi - lo, sw = q->sw;
                        if (add) {
                            if (sw == 1) /* unit stride: vectorizes */
                                for (int64_t j = 0; j < m; j++)
                                    xs[j] += rs[j];
                            else
                                for (int64_t j = 0; j < m; j++)
                                    xs[j * sw] += rs[j];
                            continue;
                        }
                        for (int64_t j = 0; j < lo; j++)
                            r[j] = 0;
                        if (sw == 1) /* rows are short (OW): a loop, not a memcpy call */
                            for (int64_t j = 0; j < m; j++)
                                rs[j] = xs[j];
                        else
                            for (int64_t j = 0; j < m; j++)
                                rs[j] = xs[j * sw];
                        for (int64_t j = hi; j < q->OW; j++)
                            r[j] = 0;
                    }
                }
    });
}

/* The chunk's output matrix t (Og, nb·P) moved to its images' places y
 * (each image's (Og, P) block ys elements after the previous one), adding
 * bv (Og) on every row when given and then max(·, 0) when relu; t may be y
 * itself (nb = 1). One pass over an output still in cache after its GEMM. */
static void conv_epilogue(ad_graph *g, const void *tv, void *yv, const void *bv, int64_t Og,
                          int64_t P, int64_t nb, int64_t ys, bool relu)
{
    AD_DISPATCH(g, {
        const T *t = tv;
        for (int64_t o = 0; o < Og; o++) {
            const T v = bv ? ((const T *)bv)[o] : 0;
            for (int64_t i = 0; i < nb; i++) {
                const T *s = t + (o * nb + i) * P;
                T *y = (T *)yv + i * ys + o * P;
                if (relu)
                    for (int64_t p = 0; p < P; p++) {
                        const T u = s[p] + v;
                        y[p] = u > 0 ? u : 0;
                    }
                else if (bv)
                    for (int64_t p = 0; p < P; p++)
                        y[p] = s[p] + v;
                else if (s != y)
                    memcpy(y, s, sizeof(T) * (size_t)P);
            }
        }
    });
}

/* conv_bias_relu_pool's move: the chunk's output matrix t (Og, nb·P), planes
 * (OH, OW), to the pooled images y (Og, OH/2, OW/2), ys elements apart:
 * relu(t + bv[o]) (bv NULL: t holds the bias already) and its 2×2 max
 * pool, the argmax (the place in the (OH, OW) plane, as max_pool records
 * it) in arg at y's places */
static void conv_pool_epilogue(ad_graph *g, const void *tv, void *yv, int32_t *arg, const void *bv,
                               int64_t Og, const conv_geom *q, int64_t nb, int64_t ys)
{
    const int64_t OW = q->OW, P = q->OH * OW, PH = q->OH / 2, PW = OW / 2;
    const int32_t W32 = (int32_t)OW;
    AD_DISPATCH(g, {
        for (int64_t o = 0; o < Og; o++) {
            const T v = bv ? ((const T *)bv)[o] : 0;
            for (int64_t i = 0; i < nb; i++) {
                const T *s = (const T *)tv + (o * nb + i) * P;
                T *y = (T *)yv + i * ys + o * PH * PW;
                int32_t *ai = arg + i * ys + o * PH * PW;
                for (int64_t pi = 0; pi < PH; pi++, y += PW, ai += PW) {
                    const T *r0 = s + 2 * pi * OW, *r1 = r0 + OW;
                    const int32_t base = (int32_t)(2 * pi * OW);
                    for (int64_t pj = 0; pj < PW; pj++) {
                        T a = r0[2 * pj] + v, b = r0[2 * pj + 1] + v, c = r1[2 * pj] + v,
                          d = r1[2 * pj + 1] + v, m;
                        a = a > 0 ? a : 0;
                        b = b > 0 ? b : 0;
                        c = c > 0 ? c : 0;
                        d = d > 0 ? d : 0;
                        int32_t k;
                        MAX_OF_FOUR(a, b, c, d, W32, m, k);
                        y[pj] = m;
                        ai[pj] = base + 2 * (int32_t)pj + k;
                    }
                }
            }
        }
    });
}

/* A forward whose product has few taps, Kc = C/G·KH·KW (the CNN's first
 * layer: one input channel, 3×3, Kc 9), is not handed to ad_gemm: the
 * library's result of a thin (Og, Kc) by (Kc, P) product needs a second
 * pass for the bias (measured at Kc 9: oneDNN's call at 96 GFLOP/s, the
 * bias pass over its output, 3.2 MB at batch 32, as long again). The
 * kernel below computes each image's (Og, P) block straight into its
 * place in y, starting from the bias and applying the ReLU before the
 * store: y is written once, and a chunk of images needs no move. f32 with
 * AVX2+FMA (where gemm_packed.c runs its own kernel); f64 and other CPUs
 * take ad_gemm and the epilogue. FEW_TAPS_MAX: the 9 taps measured, not
 * tuned beyond (long sums are the library's). The weight gradient, the
 * (Og, P) by (P, Kc) product, stays with the library: OpenBLAS ran it at
 * the core's peak, a kernel of 8 rows of g by one tap at 0.75 of that. */
#define FEW_TAPS_MAX 16

static bool few_taps(const ad_node *n, const conv_geom *q)
{
#ifdef CONV_HAVE_AVX2
    return n->g->dtype == AD_F32 &&
           (n->op == AD_OP_CONV || n->op == AD_OP_CONV_BIAS || n->op == AD_OP_CONV_BIAS_RELU ||
            n->op == AD_OP_CONV_BIAS_RELU_POOL) &&
           q->C / q->G * q->KH * q->KW <= FEW_TAPS_MAX && ad_gemm_packed_avx2();
#else
    (void)n;
    (void)q;
    return false;
#endif
}

#ifdef CONV_HAVE_AVX2
/* A tile of y: R rows (rows of them stored, ldy apart) by 16 columns (cols
 * of them when not whole: masked), = [max(0,] b + w col [)] over Kc taps,
 * w's rows at wr, col's rows ld apart; 2R ymm accumulators, two loads of
 * col and R broadcasts of w per tap. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
few_taps_tile(const float *const *wr, const __m256 *bv, int64_t Kc, const float *cp, int64_t ld,
              bool relu, int rows, bool whole, int cols, float *y, int64_t ldy)
{
    enum { R = 4 };
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lane),
                  m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lane);
    const __m256 zero = _mm256_setzero_ps();
    __m256 c0[R], c1[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        c0[r] = c1[r] = bv[r];
    for (int64_t k = 0; k < Kc; k++, cp += ld) {
        const __m256 x0 = whole ? _mm256_loadu_ps(cp) : _mm256_maskload_ps(cp, m0),
                     x1 = whole ? _mm256_loadu_ps(cp + 8) : _mm256_maskload_ps(cp + 8, m1);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256 a = _mm256_broadcast_ss(wr[r] + k);
            c0[r] = _mm256_fmadd_ps(a, x0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, x1, c1[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        if (r >= rows)
            break;
        if (relu) /* max(u, 0): 0 for NaN and −0, as u > 0 ? u : 0 */
            c0[r] = _mm256_max_ps(c0[r], zero), c1[r] = _mm256_max_ps(c1[r], zero);
        if (whole)
            _mm256_storeu_ps(y + r * ldy, c0[r]), _mm256_storeu_ps(y + r * ldy + 8, c1[r]);
        else
            _mm256_maskstore_ps(y + r * ldy, m0, c0[r]),
                _mm256_maskstore_ps(y + r * ldy + 8, m1, c1[r]);
    }
}

/* y (rows [o0, o1) of one image, ldy apart, P long) = [max(0,] b + w col
 * [)]: w (Og, Kc) row-major, col (Kc, P) rows ld apart, b NULL for none;
 * tiles of 4 rows (the last rows of a short tile repeat row o, not
 * stored) */
__attribute__((target("avx2,fma"))) static void
few_taps_rows(const float *w, int64_t Kc, const float *col, int64_t ld, const float *b, bool relu,
              int64_t o0, int64_t o1, int64_t P, float *y, int64_t ldy)
{
    enum { R = 4, NC = 16 };
    for (int64_t o = o0; o < o1; o += R) {
        const float *wr[R];
        __m256 bv[R];
        const int rows = o1 - o < R ? (int)(o1 - o) : R;
        for (int r = 0; r < R; r++) {
            const int64_t oi = o + (r < rows ? r : 0);
            wr[r] = w + oi * Kc;
            bv[r] = _mm256_set1_ps(b ? b[oi] : 0.0f);
        }
        int64_t p = 0;
        for (; p + NC <= P; p += NC)
            few_taps_tile(wr, bv, Kc, col + p, ld, relu, rows, true, NC, y + o * ldy + p, ldy);
        if (p < P)
            few_taps_tile(wr, bv, Kc, col + p, ld, relu, rows, false, (int)(P - p), y + o * ldy + p,
                          ldy);
    }
}
#endif

/* the few-taps forward of one image: col (Kc, P) rows ld apart into y (Og,
 * P) rows ldy apart, split by blocks of rows over the threads where the
 * product is large enough to pay for waking them (gemm.c's rule,
 * AD_SPLIT_MIN_MACS) */
static void few_taps_image(const void *w, int64_t Og, int64_t Kc, const void *col, int64_t ld,
                           const void *b, bool relu, int64_t P, void *y, int64_t ldy)
{
#ifdef CONV_HAVE_AVX2
    const int64_t blocks = (Og + 3) / 4;
    const bool split = (double)Og * (double)P * (double)Kc >= AD_SPLIT_MIN_MACS && blocks > 1;
    AD_FOR_SPLIT(i, blocks, split, {
        const int64_t o1 = 4 * i + 4 < Og ? 4 * i + 4 : Og;
        few_taps_rows(w, Kc, col, ld, b, relu, 4 * i, o1, P, y, ldy);
    });
#else
    (void)w, (void)Og, (void)Kc, (void)col, (void)ld, (void)b, (void)relu, (void)P, (void)y,
        (void)ldy;
#endif
}

/* The reverse move: t (Og, nb·P) from the chunk's images' blocks y (Og, P),
 * ys elements apart (the output gradient in the column order of col). */
static void conv_gather(const char *y, char *t, int64_t Og, int64_t P, int64_t nb, int64_t ys,
                        size_t es)
{
    for (int64_t o = 0; o < Og; o++)
        for (int64_t i = 0; i < nb; i++, t += (size_t)P * es)
            memcpy(t, y + (size_t)(i * ys + o * P) * es, (size_t)P * es);
}

/* One loop over chunks of images and groups for the three convolution ops:
 * X the images (N, C, H, W), K the weights (O, C/G, KH, KW), Y (N, O, OH, OW);
 * the op says which of the three is its output. Per chunk of nb images and
 * group g, with col (C/G·KH·KW, nb·P) the images' columns side by side and
 * t (O/G, nb·P) the outputs (or their gradients) in the same order:
 *   conv               t = K_g col, moved to Y with the bias [and ReLU]
 *   conv_transpose     col = K_gᵀ t, folded back onto the images
 *   conv_weight_grad   K_g (+)= t colᵀ */
static void conv_run(ad_node *n, const ad_node *X, const ad_node *K, const ad_node *Y)
{
    conv_geom q = make_geom(n, X, K, Y);
    const bool pool = n->op == AD_OP_CONV_BIAS_RELU_POOL;
    if (pool) { /* Y is pooled: the convolution's own output size */
        q.OH = out_size(q.H, q.KH, q.sh, q.ph, q.dh);
        q.OW = out_size(q.W, q.KW, q.sw, q.pw, q.dw);
    }
    const int64_t Cg = q.C / q.G, Og = q.O / q.G, Kc = Cg * q.KH * q.KW, P = q.OH * q.OW;
    const int64_t PP = pool ? (q.OH / 2) * (q.OW / 2) : P; /* positions of one plane of Y */
    const int64_t xs = q.C * q.H * q.W, ys = q.O * PP;     /* one image of X, of Y */
    const size_t es = n->g->elem;
    const ad_dtype dt = n->g->dtype;
    const bool pw = is_pointwise(&q);
    const int64_t chunk = conv_chunk(&q, es);
    const bool taps = few_taps(n, &q);
    char *xv = X->value, *kv = K->value, *yv = Y->value;
    const char *bias = n->ninputs == 3 ? (const char *)n->inputs[2]->value : NULL;
    if (n->op == AD_OP_CONV_WEIGHT_GRAD && q.N == 0)
        memset(kv, 0, (size_t)n->numel * es);
    if (ad_wino_use(n, &q)) {
        if (n->op == AD_OP_CONV_WEIGHT_GRAD)
            ad_wino_weight_grad(n, &q, X, K, Y);
        else if (n->op == AD_OP_CONV_TRANSPOSE && ad_wino_transpose_by_adjoint(&q))
            ad_wino_adjoint_run(n, &q, X, K, Y);
        else
            ad_wino_run(n, &q, X, K, Y, n->op == AD_OP_CONV_TRANSPOSE);
        return;
    }
    for (int64_t i0 = 0; i0 < q.N; i0 += chunk) {
        const int64_t nb = chunk < q.N - i0 ? chunk : q.N - i0, ld = nb * P;
        for (int64_t gi = 0; gi < q.G; gi++) {
            char *xb = xv + (size_t)(i0 * xs + gi * Cg * q.H * q.W) * es;
            char *kb = kv + (size_t)(gi * Og * Kc) * es;
            char *yb = yv + (size_t)(i0 * ys + gi * Og * PP) * es;
            char *col = pw ? xb : n->g->scratch;
            char *t = nb > 1 || pool ? (char *)n->g->scratch + (size_t)(pw ? 0 : Kc * ld) * es : yb;
            switch (n->op) {
            case AD_OP_CONV:
            case AD_OP_CONV_BIAS:
            case AD_OP_CONV_BIAS_RELU:
            case AD_OP_CONV_BIAS_RELU_POOL:
                for (int64_t i = 0; !pw && i < nb; i++)
                    unfold(n->g, &q, xb + (size_t)(i * xs) * es, col + (size_t)(i * P) * es, ld,
                           false);
                if (taps) /* the bias added here; pooled: into t, for the epilogue */
                    for (int64_t i = 0; i < nb; i++)
                        few_taps_image(kb, Og, Kc, col + (size_t)(i * P) * es, ld,
                                       bias ? bias + (size_t)(gi * Og) * es : NULL,
                                       n->op == AD_OP_CONV_BIAS_RELU, P,
                                       pool ? t + (size_t)(i * P) * es : yb + (size_t)(i * ys) * es,
                                       pool ? ld : P);
                else
                    ad_gemm(dt, false, false, false, (ad_mm_dims){Og, Kc, ld}, kb, col, t);
                if (pool)
                    conv_pool_epilogue(n->g, t, yb,
                                       (int32_t *)n->rare->aux + (i0 * ys + gi * Og * PP),
                                       taps ? NULL : bias + (size_t)(gi * Og) * es, Og, &q, nb, ys);
                else if (!taps && (nb > 1 || bias)) /* few taps: y is written already */
                    conv_epilogue(n->g, t, yb, bias ? bias + (size_t)(gi * Og) * es : NULL, Og, P,
                                  nb, ys, n->op == AD_OP_CONV_BIAS_RELU);
                break;
            case AD_OP_CONV_TRANSPOSE:
                if (nb > 1)
                    conv_gather(yb, t, Og, P, nb, ys, es);
                ad_gemm(dt, true, false, false, (ad_mm_dims){Kc, Og, ld}, kb, t, col);
                for (int64_t i = 0; !pw && i < nb; i++) {
                    char *xi = xb + (size_t)(i * xs) * es;
                    memset(xi, 0, (size_t)(Cg * q.H * q.W) * es);
                    unfold(n->g, &q, xi, col + (size_t)(i * P) * es, ld, true);
                }
                break;
            default: /* conv_weight_grad, accumulated over the chunks */
                for (int64_t i = 0; !pw && i < nb; i++)
                    unfold(n->g, &q, xb + (size_t)(i * xs) * es, col + (size_t)(i * P) * es, ld,
                           false);
                if (nb > 1)
                    conv_gather(yb, t, Og, P, nb, ys, es);
                ad_gemm(dt, false, true, i0 > 0, (ad_mm_dims){Og, ld, Kc}, t, col, kb);
                break;
            }
        }
    }
}

void ad_fwd_conv(ad_node *n) { conv_run(n, n->inputs[0], n->inputs[1], n); }
void ad_fwd_conv_transpose(ad_node *n) { conv_run(n, n, n->inputs[1], n->inputs[0]); }
void ad_fwd_conv_weight_grad(ad_node *n) { conv_run(n, n->inputs[0], n, n->inputs[1]); }

/* op(a, b[, c]) with the 7 convolution parameters and the two extra sizes */
static ad_node *conv_op3(int op, ad_node *a, ad_node *b, ad_node *c, const int64_t *params,
                         int64_t e0, int64_t e1)
{
    if (!a || !b)
        return NULL;
    ad_node *in[3] = {a, b, c};
    int64_t ip[AD_MAX_IPARAMS] = {0};
    memcpy(ip, params, sizeof(int64_t) * 7);
    ip[7] = e0;
    ip[8] = e1;
    return ad_node_make(a->g, op, c ? 3 : 2, in, NULL, ip);
}

static ad_node *conv_op(int op, ad_node *a, ad_node *b, const int64_t *params, int64_t e0,
                        int64_t e1)
{
    return conv_op3(op, a, b, NULL, params, e0, e1);
}

static ad_node *pool_op(int op, ad_node *a, ad_node *b, const int64_t *params, int64_t h,
                        int64_t w);

void ad_bwd_conv(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *x = n->inputs[0], *w = n->inputs[1];
    int64_t h, wd;
    if (n->op == AD_OP_CONV_BIAS_RELU) /* y > 0 exactly where the sum is: the mask from y */
        g = ad_relu_grad(g, n);
    if (n->op == AD_OP_CONV_BIAS_RELU_POOL) /* the same mask, at each window's argmax */
        g = pool_op(AD_OP_MAX_POOL_SCATTER, ad_relu_grad(g, n), n, NULL, 0, 0);
    if (n->ninputs == 3 && (n->inputs[2]->flags & NODE_REQGRAD)) {
        /* Σ over the positions of each plane, then over the batch, where a
           plane is long enough for the sum's vector partial sums (one read
           of G, not a read and a write of an (O, P) sum per image: the
           step of bench's conv 1, 28×28, 1 → 32 channels, 0.96 of the
           other order's time, paired); else Σ over the batch first,
           where the kernel adds whole rows (vectors), and only O·P values
           are left for the sums along an axis */
        const int64_t planes = g ? g->shape[0] * g->shape[1] : 0;
        if (planes > 0 && ad_numel(g) / planes >= AD_SUM_LANES_FROM) {
            int64_t sh[3] = {0, 0, -1}; /* (keep N, O, infer P) */
            d[2] = ad_sum(ad_sum(ad_reshape(g, 3, sh), 2), 0);
        } else {
            int64_t sh[2] = {0, -1}; /* (keep O, infer P) */
            d[2] = ad_sum(ad_reshape(ad_sum(g, 0), 2, sh), 1);
        }
    }
    /* n: its forward may keep V (kept_chunks); both gradients of an F(4×4)
       convolution in dx's node (fuses_weight_grad) */
    const bool both = (x->flags & NODE_REQGRAD) && (w->flags & NODE_REQGRAD);
    conv_geom q = make_geom(n, x, w, x);
    const bool fuse = both && n->rare->op_data && ad_wino_transpose_by_adjoint(&q);
    if (x->flags & NODE_REQGRAD) {
        spatial(x, &h, &wd);
        d[0] = conv_op3(AD_OP_CONV_TRANSPOSE, g, w, fuse ? n : NULL, n->rare->iparam, h, wd);
    }
    if (w->flags & NODE_REQGRAD) {
        spatial(w, &h, &wd);
        d[1] = conv_op3(AD_OP_CONV_WEIGHT_GRAD, x, g,
                        fuse               ? d[0]
                        : n->rare->op_data ? n
                                           : NULL,
                        n->rare->iparam, h, wd);
    }
}

void ad_bwd_conv_transpose(ad_node *n, ad_node *u, ad_node **d)
{
    ad_node *g = n->inputs[0], *w = n->inputs[1];
    if (g->flags & NODE_REQGRAD)
        d[0] = conv_op(AD_OP_CONV, u, w, n->rare->iparam, 0, 0);
    if (w->flags & NODE_REQGRAD) {
        int64_t h, wd;
        spatial(w, &h, &wd);
        d[1] = conv_op(AD_OP_CONV_WEIGHT_GRAD, u, g, n->rare->iparam, h, wd);
    }
}

void ad_bwd_conv_weight_grad(ad_node *n, ad_node *u, ad_node **d)
{
    ad_node *x = n->inputs[0], *g = n->inputs[1];
    if (x->flags & NODE_REQGRAD) {
        int64_t h, wd;
        spatial(x, &h, &wd);
        d[0] = conv_op(AD_OP_CONV_TRANSPOSE, g, u, n->rare->iparam, h, wd);
    }
    if (g->flags & NODE_REQGRAD)
        d[1] = conv_op(AD_OP_CONV, x, u, n->rare->iparam, 0, 0);
}

/* The user's options as the op's parameters; false (error set) when bad. */
static bool conv_opts(ad_graph *g, const ad_conv_opts *o, bool one_d, const char *nm, int64_t *ip)
{
    ad_conv_opts z = {{0, 0}, {0, 0}, {0, 0}, 0};
    if (!o)
        o = &z;
    int dims = one_d ? 1 : 2;
    for (int k = 0; k < dims; k++)
        if (o->stride[k] < 0 || o->padding[k] < 0 || o->dilation[k] < 0) {
            ad_fail(g, "%s: stride %d, padding %d and dilation %d must not be negative", nm,
                    o->stride[k], o->padding[k], o->dilation[k]);
            return false;
        }
    if (o->groups < 0) {
        ad_fail(g, "%s: groups %d must not be negative", nm, o->groups);
        return false;
    }
    for (int k = 0; k < 2; k++) {
        int src = one_d ? 0 : k;
        bool unused = one_d && k == 0; /* the height axis of a 1-d convolution */
        ip[k] = unused || !o->stride[src] ? 1 : o->stride[src];
        ip[2 + k] = unused ? 0 : o->padding[src];
        ip[4 + k] = unused || !o->dilation[src] ? 1 : o->dilation[src];
    }
    ip[6] = o->groups ? o->groups : 1;
    return true;
}

static ad_node *conv_public(int op, ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o,
                            int nd)
{
    if (!x || !w || (op != AD_OP_CONV && !b))
        return NULL;
    const char *nm = conv_name(op, nd);
    if (x->g != w->g || (b && b->g != x->g)) {
        ad_fail(x->g, "%s: operands belong to different graphs", nm);
        return NULL;
    }
    if (!check_rank(x, nd, nm, "input", nd == 3 ? "(N,C,L)" : "(N,C,H,W)") ||
        !check_rank(w, nd, nm, "weight", nd == 3 ? "(O,C/groups,K)" : "(O,C/groups,KH,KW)"))
        return NULL;
    int64_t ip[7];
    if (!conv_opts(x->g, o, nd == 3, nm, ip))
        return NULL;
    return conv_op3(op, x, w, op == AD_OP_CONV ? NULL : b, ip, 0, 0);
}

ad_node *ad_conv1d(ad_node *x, ad_node *w, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV, x, w, NULL, o, 3);
}

ad_node *ad_conv2d(ad_node *x, ad_node *w, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV, x, w, NULL, o, 4);
}

ad_node *ad_conv1d_bias(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV_BIAS, x, w, b, o, 3);
}

ad_node *ad_conv2d_bias(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV_BIAS, x, w, b, o, 4);
}

ad_node *ad_conv1d_bias_relu(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV_BIAS_RELU, x, w, b, o, 3);
}

ad_node *ad_conv2d_bias_relu(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV_BIAS_RELU, x, w, b, o, 4);
}

ad_node *ad_conv2d_bias_relu_pool(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    return conv_public(AD_OP_CONV_BIAS_RELU_POOL, x, w, b, o, 4);
}

/* ------------------------------------------------------------------ pooling */

static const char *pool_name(int op, int nd)
{
    switch (op) {
    case AD_OP_MAX_POOL:
        return nd == 3 ? "ad_max_pool1d" : "ad_max_pool2d";
    case AD_OP_AVG_POOL:
        return nd == 3 ? "ad_avg_pool1d" : "ad_avg_pool2d";
    case AD_OP_MAX_POOL_SCATTER:
        return "ad_max_pool_scatter";
    case AD_OP_MAX_POOL_GATHER:
        return "ad_max_pool_gather";
    default:
        return "ad_avg_pool_transpose";
    }
}

/* Checks pooling parameters against an input of spatial size (H, W) with
 * nd axes (sh is the shape string of the input for messages). */
static bool pool_check(ad_node *n, int nd, int64_t H, int64_t W, const char *sh, const char *nm)
{
    const int64_t *p = n->rare->iparam;
    if (!params_fit(n, 8, nm))
        return false;
    if (p[4] < 1 || p[5] < 1 || p[0] < 1 || p[1] < 1 || p[2] < 0 || p[3] < 0) {
        ad_fail(n->g,
                "%s: kernel (%lld,%lld) and stride (%lld,%lld) must be positive, padding "
                "(%lld,%lld) not negative",
                nm, (long long)p[4], (long long)p[5], (long long)p[0], (long long)p[1],
                (long long)p[2], (long long)p[3]);
        return false;
    }
    if (nd == 3 && (p[4] != 1 || p[0] != 1 || p[2] != 0)) {
        ad_fail(n->g,
                "%s: a 1-d pooling has kernel 1, stride 1, padding 0 on the unused height "
                "axis",
                nm);
        return false;
    }
    if (H < 1 || W < 1) {
        ad_fail(n->g, "%s: input %s has an empty spatial axis", nm, sh);
        return false;
    }
    if (2 * p[2] > p[4] || 2 * p[3] > p[5]) {
        ad_fail(n->g, "%s: padding (%lld,%lld) is more than half the kernel (%lld,%lld)", nm,
                (long long)p[2], (long long)p[3], (long long)p[4], (long long)p[5]);
        return false;
    }
    if (p[4] > H + 2 * p[2] || p[5] > W + 2 * p[3]) {
        ad_fail(n->g, "%s: kernel %lldx%lld is larger than the padded input %lldx%lld of %s", nm,
                (long long)p[4], (long long)p[5], (long long)(H + 2 * p[2]),
                (long long)(W + 2 * p[3]), sh);
        return false;
    }
    if (H * W > INT32_MAX) {
        ad_fail(n->g, "%s: input %s has more than 2^31 elements per channel", nm, sh);
        return false;
    }
    return true;
}

bool ad_shape_pool(ad_node *n)
{
    const ad_node *x = n->inputs[0];
    char b1[96];
    ad_shape_str(x, b1, sizeof b1);
    if (x->ndim != 3 && x->ndim != 4) {
        ad_fail(n->g, "%s: input %s must have 3 axes (N,C,L) or 4 (N,C,H,W)", pool_name(n->op, 4),
                b1);
        return false;
    }
    const char *nm = pool_name(n->op, x->ndim);
    int64_t H, W;
    spatial(x, &H, &W);
    if (!pool_check(n, x->ndim, H, W, b1, nm))
        return false;
    const int64_t *p = n->rare->iparam;
    int64_t OH = out_size(H, p[4], p[0], p[2], 1), OW = out_size(W, p[5], p[1], p[3], 1);
    if (!set_spatial_shape(n, x->ndim, x->shape[0], x->shape[1], OH, OW, nm))
        return false;
    if (n->op == AD_OP_MAX_POOL) /* the argmax: one int32 per output element */
        return ad_node_aux(n, (size_t)n->numel * sizeof(int32_t));
    return true;
}

bool ad_shape_avg_pool_transpose(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    const char *nm = "ad_avg_pool_transpose";
    char b1[96];
    ad_shape_str(g, b1, sizeof b1);
    int64_t H = n->rare->iparam[6], W = n->rare->iparam[7];
    if ((g->ndim != 3 && g->ndim != 4) || H < 1 || W < 1 || (g->ndim == 3 && H != 1)) {
        ad_fail(n->g, "%s: gradient %s and input size %lldx%lld do not fit", nm, b1, (long long)H,
                (long long)W);
        return false;
    }
    if (!pool_check(n, g->ndim, H, W, b1, nm))
        return false;
    const int64_t *p = n->rare->iparam;
    int64_t OH, OW;
    spatial(g, &OH, &OW);
    if (out_size(H, p[4], p[0], p[2], 1) != OH || out_size(W, p[5], p[1], p[3], 1) != OW) {
        ad_fail(n->g, "%s: gradient %s is not the pooling output of a %lldx%lld input", nm, b1,
                (long long)H, (long long)W);
        return false;
    }
    return set_spatial_shape(n, g->ndim, g->shape[0], g->shape[1], H, W, nm);
}

/* The pooling's input shape (N, C, H, W) of y, a max_pool node (its input)
 * or a conv_bias_relu_pool node (its convolution's output). */
static void pooled_from(const ad_node *y, int64_t *shape)
{
    const ad_node *x = y->inputs[0];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    if (y->op == AD_OP_CONV_BIAS_RELU_POOL) {
        conv_geom q = make_geom(y, x, y->inputs[1], y);
        shape[1] = q.O;
        shape[2] = out_size(q.H, q.KH, q.sh, q.ph, q.dh);
        shape[3] = out_size(q.W, q.KW, q.sw, q.pw, q.dw);
    }
}

/* the pooling geometry of y, full the tensor of the pooling's input shape */
static conv_geom pool_index_geom(const ad_node *y, const ad_node *full)
{
    conv_geom q = make_geom(y, full, NULL, y);
    if (y->op == AD_OP_CONV_BIAS_RELU_POOL) { /* 2×2 windows, stride 2 */
        q.sh = q.sw = q.KH = q.KW = 2;
        q.ph = q.pw = 0;
    }
    return q;
}

/* scatter and gather: input 1 must be the max_pool (or conv_bias_relu_pool)
 * node holding the argmax */
bool ad_shape_pool_index(ad_node *n)
{
    const ad_node *a = n->inputs[0], *y = n->inputs[1];
    const char *nm = pool_name(n->op, 4);
    char b1[96], b2[96];
    if (y->op != AD_OP_MAX_POOL && y->op != AD_OP_CONV_BIAS_RELU_POOL) {
        ad_fail(n->g, "%s: operand 2 must be a max_pool node, got %s %s", nm, ad_ops[y->op].name,
                ad_shape_str(y, b2, sizeof b2));
        return false;
    }
    int64_t full[AD_MAX_DIMS];
    pooled_from(y, full);
    const bool scatter = n->op == AD_OP_MAX_POOL_SCATTER;
    const int64_t *want = scatter ? y->shape : full, *out = scatter ? full : y->shape;
    if (a->ndim != y->ndim || memcmp(a->shape, want, sizeof(int64_t) * (size_t)a->ndim) != 0) {
        ad_fail(n->g, "%s: operand %s does not have the shape %s", nm,
                ad_shape_str(a, b1, sizeof b1), ad_dims_str(y->ndim, want, b2, sizeof b2));
        return false;
    }
    return ad_shape_set(n, y->ndim, out, nm);
}

void ad_fwd_max_pool(ad_node *n)
{
    const ad_node *x = n->inputs[0];
    conv_geom q = make_geom(n, x, NULL, n);
    int32_t *arg = n->rare->aux;
    AD_DISPATCH(n->g, {
        const T *xv = x->value;
        T *y = n->value;
        /* 2x2 windows at stride 2 without padding (the common pooling)
           are always whole: the same scan order, comparisons and tie/NaN
           rule as the general loop below (a value replaces the maximum
           when it is larger or NaN), written with selects instead of
           branches so that a row of windows vectorizes */
        const bool two = q.KH == 2 && q.KW == 2 && q.sh == 2 && q.sw == 2 && q.ph == 0 && q.pw == 0;
        const int32_t W32 = (int32_t)q.W;
        for (int64_t p = 0; two && p < q.N * q.C; p++) {
            const T *xp = xv + p * q.H * q.W;
            for (int64_t i = 0; i < q.OH; i++, y += q.OW, arg += q.OW) {
                const T *r0 = xp + 2 * i * q.W, *r1 = r0 + q.W;
                const int32_t base = (int32_t)(2 * i * q.W);
                for (int64_t j = 0; j < q.OW; j++) {
                    const T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
                    T m = a;
                    int32_t k = 0;
                    bool t = (b > m) | isnan(b);
                    m = t ? b : m;
                    k = t ? 1 : k;
                    t = (c > m) | isnan(c);
                    m = t ? c : m;
                    k = t ? W32 : k;
                    t = (d > m) | isnan(d);
                    m = t ? d : m;
                    k = t ? W32 + 1 : k;
                    y[j] = m;
                    arg[j] = base + 2 * (int32_t)j + k;
                }
            }
        }
        for (int64_t p = 0; !two && p < q.N * q.C; p++) {
            const T *xp = xv + p * q.H * q.W;
            for (int64_t i = 0; i < q.OH; i++) {
                int64_t hs, he, ws, we;
                window(i, q.sh, q.ph, q.KH, q.H, &hs, &he);
                for (int64_t j = 0; j < q.OW; j++) {
                    window(j, q.sw, q.pw, q.KW, q.W, &ws, &we);
                    /* the first maximum in scan order wins a tie, as in PyTorch */
                    int64_t best = hs * q.W + ws;
                    T m = (T)-INFINITY;
                    for (int64_t a = hs; a < he; a++)
                        for (int64_t b = ws; b < we; b++) {
                            T v = xp[a * q.W + b];
                            if (v > m || isnan(v)) {
                                m = v;
                                best = a * q.W + b;
                            }
                        }
                    *y++ = m;
                    *arg++ = (int32_t)best;
                }
            }
        }
    });
}

/* 2x2 windows at stride 2 without padding tile the image (its last row and
 * column stay out when H or W is odd): each element of x is written once,
 * the gradient where the window's argmax is and 0 elsewhere, with selects
 * that vectorize along a row of windows, instead of zeroing x and then
 * adding into it (0 + g, so the same values, -0 included) */
#define SCATTER_TWO(T, gv, arg, out, q)                                                            \
    do {                                                                                           \
        const int64_t W_ = (q).W;                                                                  \
        for (int64_t p = 0; p < (q).N * (q).C; p++) {                                              \
            T *xp = (out) + p * (q).H * W_;                                                        \
            for (int64_t i = 0; i < (q).OH; i++, (gv) += (q).OW, (arg) += (q).OW) {                \
                T *r0 = xp + 2 * i * W_, *r1 = r0 + W_;                                            \
                const int32_t base = (int32_t)(2 * i * W_), w32 = (int32_t)W_;                     \
                for (int64_t j = 0; j < (q).OW; j++) {                                             \
                    const int32_t k = (arg)[j] - base - 2 * (int32_t)j;                            \
                    const T v = (T)0 + (gv)[j];                                                    \
                    r0[2 * j] = k == 0 ? v : 0;                                                    \
                    r0[2 * j + 1] = k == 1 ? v : 0;                                                \
                    r1[2 * j] = k == w32 ? v : 0;                                                  \
                    r1[2 * j + 1] = k == w32 + 1 ? v : 0;                                          \
                }                                                                                  \
                if (W_ & 1)                                                                        \
                    r0[W_ - 1] = r1[W_ - 1] = 0;                                                   \
            }                                                                                      \
            if ((q).H & 1)                                                                         \
                memset(xp + ((q).H - 1) * W_, 0, sizeof(T) * (size_t)W_);                          \
        }                                                                                          \
    } while (0)

void ad_fwd_max_pool_scatter(ad_node *n)
{
    const ad_node *g = n->inputs[0], *y = n->inputs[1];
    conv_geom q = pool_index_geom(y, n);
    const int32_t *arg = y->rare->aux;
    const bool two = q.KH == 2 && q.KW == 2 && q.sh == 2 && q.sw == 2 && q.ph == 0 && q.pw == 0;
    AD_DISPATCH(n->g, {
        const T *gv = g->value;
        T *out = n->value;
        if (two)
            SCATTER_TWO(T, gv, arg, out, q);
        else
            memset(out, 0, sizeof(T) * (size_t)n->numel);
        for (int64_t p = 0; !two && p < q.N * q.C; p++) {
            T *op = out + p * q.H * q.W;
            for (int64_t k = 0; k < q.OH * q.OW; k++)
                op[arg[k]] += gv[k];
            gv += q.OH * q.OW;
            arg += q.OH * q.OW;
        }
    });
}

void ad_fwd_max_pool_gather(ad_node *n)
{
    const ad_node *h = n->inputs[0], *y = n->inputs[1];
    conv_geom q = pool_index_geom(y, h);
    const int32_t *arg = y->rare->aux;
    AD_DISPATCH(n->g, {
        const T *hv = h->value;
        T *out = n->value;
        for (int64_t p = 0; p < q.N * q.C; p++) {
            const T *hp = hv + p * q.H * q.W;
            for (int64_t k = 0; k < q.OH * q.OW; k++)
                *out++ = hp[*arg++];
        }
    });
}

/* avg_pool (add = false): y = window sums / (kh·kw), padding counted as zeros;
 * its adjoint (add = true): x = each g / (kh·kw) spread over its window. */
static void avg_pool_kernel(ad_graph *gr, const conv_geom *q, void *xv, void *yv, bool add)
{
    AD_DISPATCH(gr, {
        T *x = xv, *y = yv;
        const T area = (T)(q->KH * q->KW);
        if (add)
            memset(x, 0, sizeof(T) * (size_t)(q->N * q->C * q->H * q->W));
        for (int64_t p = 0; p < q->N * q->C; p++) {
            T *xp = x + p * q->H * q->W;
            for (int64_t i = 0; i < q->OH; i++) {
                int64_t hs, he, ws, we;
                window(i, q->sh, q->ph, q->KH, q->H, &hs, &he);
                for (int64_t j = 0; j < q->OW; j++, y++) {
                    window(j, q->sw, q->pw, q->KW, q->W, &ws, &we);
                    if (add) {
                        const T v = *y / area;
                        for (int64_t a = hs; a < he; a++)
                            for (int64_t b = ws; b < we; b++)
                                xp[a * q->W + b] += v;
                    } else {
                        T s = 0;
                        for (int64_t a = hs; a < he; a++)
                            for (int64_t b = ws; b < we; b++)
                                s += xp[a * q->W + b];
                        *y = s / area;
                    }
                }
            }
        }
    });
}

void ad_fwd_avg_pool(ad_node *n)
{
    conv_geom q = make_geom(n, n->inputs[0], NULL, n);
    avg_pool_kernel(n->g, &q, n->inputs[0]->value, n->value, false);
}

void ad_fwd_avg_pool_transpose(ad_node *n)
{
    conv_geom q = make_geom(n, n, NULL, n->inputs[0]);
    avg_pool_kernel(n->g, &q, n->value, n->inputs[0]->value, true);
}

static ad_node *pool_op(int op, ad_node *a, ad_node *b, const int64_t *params, int64_t h, int64_t w)
{
    bool indexed = op == AD_OP_MAX_POOL_SCATTER || op == AD_OP_MAX_POOL_GATHER;
    if (!a || (indexed && !b))
        return NULL;
    ad_node *in[2] = {a, b};
    int64_t ip[AD_MAX_IPARAMS] = {0};
    if (params)
        memcpy(ip, params, sizeof(int64_t) * 6);
    ip[6] = h;
    ip[7] = w;
    return ad_node_make(a->g, op, b ? 2 : 1, in, NULL, ip);
}

void ad_bwd_max_pool(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = pool_op(AD_OP_MAX_POOL_SCATTER, g, n, NULL, 0, 0);
}

void ad_bwd_max_pool_scatter(ad_node *n, ad_node *u, ad_node **d)
{
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = pool_op(AD_OP_MAX_POOL_GATHER, u, n->inputs[1], NULL, 0, 0);
}

void ad_bwd_max_pool_gather(ad_node *n, ad_node *u, ad_node **d)
{
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = pool_op(AD_OP_MAX_POOL_SCATTER, u, n->inputs[1], NULL, 0, 0);
}

void ad_bwd_avg_pool(ad_node *n, ad_node *g, ad_node **d)
{
    int64_t h, w;
    spatial(n->inputs[0], &h, &w);
    d[0] = pool_op(AD_OP_AVG_POOL_TRANSPOSE, g, NULL, n->rare->iparam, h, w);
}

void ad_bwd_avg_pool_transpose(ad_node *n, ad_node *u, ad_node **d)
{
    d[0] = pool_op(AD_OP_AVG_POOL, u, NULL, n->rare->iparam, 0, 0);
}

static ad_node *pool_public(int op, ad_node *x, const ad_pool_opts *o, int nd)
{
    if (!x)
        return NULL;
    const char *nm = pool_name(op, nd);
    if (!check_rank(x, nd, nm, "input", nd == 3 ? "(N,C,L)" : "(N,C,H,W)"))
        return NULL;
    if (!o) {
        ad_fail(x->g, "%s: options are NULL (the kernel size is required)", nm);
        return NULL;
    }
    int dims = nd == 3 ? 1 : 2;
    for (int k = 0; k < dims; k++)
        if (o->kernel[k] < 1 || o->stride[k] < 0 || o->padding[k] < 0) {
            ad_fail(x->g, "%s: kernel %d must be positive, stride %d and padding %d not negative",
                    nm, o->kernel[k], o->stride[k], o->padding[k]);
            return NULL;
        }
    int64_t ip[6];
    for (int k = 0; k < 2; k++) {
        int src = nd == 3 ? 0 : k;
        bool unused = nd == 3 && k == 0;
        ip[k] = unused ? 1 : (o->stride[src] ? o->stride[src] : o->kernel[src]);
        ip[2 + k] = unused ? 0 : o->padding[src];
        ip[4 + k] = unused ? 1 : o->kernel[src];
    }
    return pool_op(op, x, NULL, ip, 0, 0);
}

ad_node *ad_max_pool1d(ad_node *x, const ad_pool_opts *o)
{
    return pool_public(AD_OP_MAX_POOL, x, o, 3);
}
ad_node *ad_max_pool2d(ad_node *x, const ad_pool_opts *o)
{
    return pool_public(AD_OP_MAX_POOL, x, o, 4);
}
ad_node *ad_avg_pool1d(ad_node *x, const ad_pool_opts *o)
{
    return pool_public(AD_OP_AVG_POOL, x, o, 3);
}
ad_node *ad_avg_pool2d(ad_node *x, const ad_pool_opts *o)
{
    return pool_public(AD_OP_AVG_POOL, x, o, 4);
}
