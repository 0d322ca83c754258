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
 * stride 1 and no padding uses the image itself, one image at a time).
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
 *   conv_bias(x, w, b)       as conv, ∂/∂b = sum of G over the batch and spatial axes
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
 * Scratch memory (the im2col buffer, shared by the graph), max pool's
 * argmax and a Winograd forward's kept transform (per node) are sized by the
 * shape rules, so replay allocates nothing unless a resize makes them grow. */
#include <math.h>
#include <string.h>

#include "graph_impl.h"

/* the loop after it carries no dependence through memory (GCC does not
 * prove it for the Winograd transforms' several output arrays) */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_ALIAS_LOOP _Pragma("GCC ivdep")
#else
#define NO_ALIAS_LOOP
#endif

typedef struct {
    int64_t N, C, H, W; /* x (N, C, H, W) */
    int64_t O, KH, KW;  /* w (O, C/G, KH, KW) */
    int64_t OH, OW;     /* y (N, O, OH, OW) */
    int64_t sh, sw, ph, pw, dh, dw, G;
} conv_geom;

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
    const int64_t *p = n->iparam;
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
        if (n->iparam[i] > INT32_MAX || n->iparam[i] < INT32_MIN) {
            ad_fail(n->g, "%s: parameter %d (%lld) is beyond 32 bits", nm, i,
                    (long long)n->iparam[i]);
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
    const int64_t *p = n->iparam;
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

/* m, k = the maximum of the 2×2 window a b / c d (values without NaN, as
 * after a ReLU) and its place 0, 1, W or W + 1 in a plane W wide: the first
 * maximum in scan order on ties, as max_pool; selects, so a loop over
 * windows vectorizes */
#define MAX_OF_FOUR(a, b, c, d, W, m, k)                                                           \
    do {                                                                                           \
        bool t_ = (b) > (a);                                                                       \
        m = t_ ? (b) : (a);                                                                        \
        k = t_ ? 1 : 0;                                                                            \
        t_ = (c) > m;                                                                              \
        m = t_ ? (c) : m;                                                                          \
        k = t_ ? (W) : k;                                                                          \
        t_ = (d) > m;                                                                              \
        m = t_ ? (d) : m;                                                                          \
        k = t_ ? (W) + 1 : k;                                                                      \
    } while (0)

/* ------------------------------------------------ Winograd F(2×2, 3×3) and F(4×4, 3×3)
 *
 * A stride-1 3×3 convolution computes each 2×2 block of outputs from the
 * 4×4 input tile under it with 16 products per channel pair instead of 36
 * (Lavin and Gray, "Fast algorithms for convolutional neural networks"):
 *   y = Aᵀ [ (G w Gᵀ) ⊙ (Bᵀ d B) ] A
 *   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]
 *   G  = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]      Aᵀ = [1 1 1 0; 0 1 −1 −1]
 * Summed over the input channels, the 16 elementwise products become 16
 * GEMMs, U_k (Co, Ci) @ V_k (Ci, T) = M_k (Co, T), one per position k of
 * the 4×4 transformed tile, over the T tiles of a chunk of images: 2.25
 * times fewer multiply-adds than the im2col GEMM, at the same GEMM rate
 * (the shapes are as wide; docs/benchmarks.md). conv and the bias forms use
 * it, and conv_transpose, which is the same correlation of the output
 * gradient with the weights flipped and transposed, padding 2 − p, and
 * conv_weight_grad, the adjoint in w: dw = Gᵀ [Σ_tiles (A g Aᵀ) ⊙ (Bᵀ d B)] G,
 * g the output gradient's 2×2 block: 16 GEMMs (A g Aᵀ)_k (Co, T) @
 * V_kᵀ (T, Ci) summed over the chunks. Exact in exact arithmetic; in
 * floating point the transforms add a few roundings (the ½ are exact).
 *
 * F(4×4, 3×3) does the same with 4×4 output blocks from 6×6 input tiles:
 * 36 products per 16 outputs (4 times fewer than direct, against 2.25),
 * interpolation points 0, ±1, ±2 and ∞:
 *   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0;
 *         0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
 *   G  = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1]
 *   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
 * Its transforms scale by up to 8 (Aᵀ) and 5 (Bᵀ), so in f32 it rounds
 * worse than F(2×2) (test_conv.c states the tolerance), and ⅙, 1/12 and
 * 1/24 are rounded. wino_tile_size says which one a shape uses. Where the
 * forward uses F(4×4), conv_transpose runs as its adjoint instead of a
 * correlation of its own: dx = Σ_tiles B [U_kᵀ (A g Aᵀ)_k] Bᵀ
 * (wino_adjoint_run). */

/* a stride-1 3×3 correlation of x (N, Ci, H, W), padded by (ph, pw) on
 * both sides (the far side as far as the output needs), into y (N, Co,
 * OH, OW): th × tw tiles of m×m outputs per image */
typedef struct {
    int64_t N, Ci, Co, H, W, OH, OW, ph, pw, th, tw;
    int m;  /* outputs per tile side: 2 for F(2×2, 3×3), 4 for F(4×4, 3×3) */
    int nk; /* (m + 2)²: products, and GEMMs, per tile */
} wino_geom;

/* Winograd pays where both channel counts are wide enough for the GEMMs
 * (the CNN's 32 → 64 layer) and not for a first layer of one channel,
 * whose GEMM has 9 rows; q is the forward geometry (conv_transpose: the
 * convolution it is the adjoint of), padding up to 2 so that the
 * transpose's 2 − p is not negative */
#define WINO_MIN_CHANNELS 8

static bool use_winograd(const ad_node *n, const conv_geom *q)
{
    if (n->op != AD_OP_CONV && n->op != AD_OP_CONV_BIAS && n->op != AD_OP_CONV_BIAS_RELU &&
        n->op != AD_OP_CONV_BIAS_RELU_POOL && n->op != AD_OP_CONV_TRANSPOSE &&
        n->op != AD_OP_CONV_WEIGHT_GRAD)
        return false;
    return q->KH == 3 && q->KW == 3 && q->sh == 1 && q->sw == 1 && q->dh == 1 && q->dw == 1 &&
           q->G == 1 && q->ph <= 2 && q->pw <= 2 && q->C >= WINO_MIN_CHANNELS &&
           q->O >= WINO_MIN_CHANNELS;
}

/* Tiles per image: F(2×2), th rows of tw tiles and one more per row, whose
 * values are never used: with it a row of tiles is as long as half a
 * padded input row (2·(tw + 1)), so the transforms address every tile of
 * a plane by one index and run as single loops over the plane instead of
 * a short loop per row (1/tw more GEMM columns; measured faster,
 * docs/benchmarks.md). F(4×4), th·tw: its transforms run over the chunk's
 * tiles and patch the rows' last tiles instead (wino4_input), as the
 * unused tile would be 1/4 more GEMM columns at 14×14. */
static int64_t wino_tiles(const wino_geom *w)
{
    return w->th * (w->m == 2 ? w->tw + 1 : w->tw); /* F(4×4): see wino4_input */
}

/* F(4×4, 3×3) where both channel counts are at least WINO4_MIN_CHANNELS
 * (its transforms cost more per output than F(2×2)'s, its products less:
 * it pays where the products, Ci·Co per tile, outweigh the transforms,
 * Ci + Co) and its products, tiles included, are at most WINO4_MAX_RATIO
 * of F(2×2)'s (not for outputs 1 or 2 wide). Measured at 14×14, 32 → 64
 * channels (docs/benchmarks.md); the bounds are not tuned beyond that. */
#define WINO4_MIN_CHANNELS 16
#define WINO4_MAX_RATIO 0.9

static int wino_tile_size(int64_t Ci, int64_t Co, int64_t OH, int64_t OW)
{
    if (Ci < WINO4_MIN_CHANNELS || Co < WINO4_MIN_CHANNELS)
        return 2;
    const double p2 = 16.0 * (double)((OH + 1) / 2) * (double)((OW + 1) / 2 + 1);
    const double p4 = 36.0 * (double)((OH + 3) / 4) * (double)((OW + 3) / 4);
    return p4 <= WINO4_MAX_RATIO * p2 ? 4 : 2;
}

static wino_geom wino_make(const conv_geom *q, bool transpose)
{
    wino_geom w;
    w.N = q->N;
    w.Ci = transpose ? q->O : q->C;
    w.Co = transpose ? q->C : q->O;
    w.H = transpose ? q->OH : q->H;
    w.W = transpose ? q->OW : q->W;
    w.OH = transpose ? q->H : q->OH;
    w.OW = transpose ? q->W : q->OW;
    w.ph = transpose ? 2 - q->ph : q->ph;
    w.pw = transpose ? 2 - q->pw : q->pw;
    w.m = wino_tile_size(w.Ci, w.Co, w.OH, w.OW);
    w.nk = (w.m + 2) * (w.m + 2);
    w.th = (w.OH + w.m - 1) / w.m;
    w.tw = (w.OW + w.m - 1) / w.m;
    return w;
}

/* Images per chunk: the fewest that make WINO_CHUNK_TILES tiles, within
 * WINO_CHUNK_BYTES for V and M (then the GEMMs read what the input
 * transform just wrote, and the output transform what they wrote) */
#define WINO_CHUNK_TILES 128
#define WINO_CHUNK_BYTES ((size_t)1 << 20)

static int64_t wino_chunk(const wino_geom *w, size_t elem)
{
    const int64_t tiles = wino_tiles(w);
    const size_t per_image = (size_t)(w->nk * (w->Ci + w->Co) * tiles) * elem;
    int64_t nb = (WINO_CHUNK_TILES + tiles - 1) / tiles,
            fit = (int64_t)(WINO_CHUNK_BYTES / per_image);
    nb = nb < fit ? nb : fit;
    nb = nb < w->N ? nb : w->N;
    return nb < 1 ? 1 : nb;
}

/* per-plane work space of the input transform, S = tw + 1: F(2×2), the
 * padded plane's even and odd rows (th + 1 each, 2S wide, and 4 elements
 * over for the last tile's reads) and its column-transformed rows (8
 * arrays of (th + 1)·S); F(4×4), the padded plane as 16 arrays of
 * (th + 1)·S (and one over) and 24 arrays of d B */
static int64_t wino_input_work(const wino_geom *w, int64_t nb)
{
    const int64_t S = w->tw + 1, rows = w->th + 1, nt = nb * wino_tiles(w);
    if (w->m == 4) /* a zero row (wino4_adjoint_input: six spare rows), f, its overhang, q */
        return 6 * w->W + 6 * 4 * nt + 6 * nb * w->th * 2 + 36 * nt;
    return 2 * (rows * 2 * S + 4) + 8 * rows * S;
}

/* and after it, the output transform's rows (F(2×2): 4 per tile and the
 * argmax places, one per tile; F(4×4): 24 + 16 per tile of the chunk) or
 * the output gradient's (F(2×2): 4 per tile, F(4×4): 56 per tile of the
 * chunk) */
static int64_t wino_work_elems(const wino_geom *w, int64_t nb)
{
    return wino_input_work(w, nb) + (w->m == 2 ? 5 * wino_tiles(w) : 56 * nb * wino_tiles(w));
}

/* Elements from one V_k (rows Ci) or M_k (rows Co) to the next: the
 * matrix and 32 over, so that the nk matrices, which the transforms read
 * or write side by side, do not start at multiples of 4 KiB from each
 * other when rows·nt is a power of two (measured: 16 tiles an image at
 * 14×14 in chunks of 4, 64 columns, made the input transform 1.5 times
 * slower by 4 KiB aliasing) */
#define WINO_KPAD 32

static int64_t wino_kstride(int64_t rows, int64_t nt) { return rows * nt + WINO_KPAD; }

/* the scratch: U (nk, Co, Ci), V (nk, Ci, T), M (nk, Co, T) (V_k and M_k
 * wino_kstride apart), then the transforms' work space */
static size_t wino_scratch_elems(const wino_geom *w, size_t elem)
{
    const int64_t nb = wino_chunk(w, elem), nt = nb * wino_tiles(w);
    return (size_t)(w->nk * (w->Co * w->Ci + wino_kstride(w->Ci, nt) + wino_kstride(w->Co, nt)) +
                    wino_work_elems(w, nb));
}

/* The scratch's parts for a whole chunk (wino_scratch_elems' order), at
 * the same places for every chunk, a last smaller one too (the output
 * gradient's buffer keeps zeros written once) */
typedef struct {
    char *u, *v, *m, *work, *gbuf; /* U or dU, V or dV, M or Mg, work space, gradient rows */
} wino_bufs;

static wino_bufs wino_layout(const ad_graph *g, const wino_geom *w)
{
    const size_t es = g->elem;
    const int64_t chunk = wino_chunk(w, es), nt = chunk * wino_tiles(w);
    wino_bufs b;
    b.u = g->scratch;
    b.v = b.u + (size_t)(w->nk * w->Co * w->Ci) * es;
    b.m = b.v + (size_t)(w->nk * wino_kstride(w->Ci, nt)) * es;
    b.work = b.m + (size_t)(w->nk * wino_kstride(w->Co, nt)) * es;
    b.gbuf = b.work + (size_t)wino_input_work(w, chunk) * es;
    return b;
}

/* The forward's transformed input, kept for the weight gradient. In a
 * training step the forward convolution y = conv(x, w) transforms x into V
 * and conv_weight_grad(x, g) would transform the same x again. bwd_conv
 * builds conv_weight_grad(x, g, y) instead: y's forward writes every
 * chunk's V into y's aux (after the argmax of conv_bias_relu_pool) rather
 * than the scratch, and the weight gradient reads it there, as
 * max_pool_scatter(g, y) reads the argmax y's forward recorded (y is an
 * operand for that data only; no gradient flows to it). y->op_data holds
 * whether V is there and the geometry it was written for: y's forward
 * clears it first and sets it when the last chunk is written (when aux has
 * room), and the weight gradient's shape rule clears it when it grows aux,
 * so the weight gradient transforms x itself whenever the kept V is not
 * from y's latest forward at its own geometry (the first pass, which built
 * it; a batch that grew). Replay, partial replay and ad_backward run y
 * before it (y is an operand), so V is of the x the step's forward saw;
 * like the ReLU mask and the argmax, a backward pass run after x changed
 * without a forward uses the forward that last ran. */
enum { KEEP_VALID, KEEP_N, KEEP_CI, KEEP_CO, KEEP_H, KEEP_W, KEEP_PH, KEEP_PW, KEEP_WORDS };

static bool keeps_transform(const ad_node *y)
{
    return y->op == AD_OP_CONV || y->op == AD_OP_CONV_BIAS || y->op == AD_OP_CONV_BIAS_RELU ||
           y->op == AD_OP_CONV_BIAS_RELU_POOL;
}

/* bytes of y's aux before the kept chunks: the argmax, to a cache line */
static size_t kept_offset(const ad_node *y)
{
    const size_t arg = y->op == AD_OP_CONV_BIAS_RELU_POOL ? (size_t)y->numel * sizeof(int32_t) : 0;
    return (arg + 63) & ~(size_t)63;
}

/* elements of one kept chunk (V of a whole chunk, to a cache line) */
static int64_t kept_chunk_elems(const wino_geom *w, size_t elem)
{
    const int64_t v = w->nk * wino_kstride(w->Ci, wino_chunk(w, elem) * wino_tiles(w));
    return (v + 15) & ~(int64_t)15;
}

/* bytes y's aux needs to keep the V of all chunks */
static size_t kept_end(const ad_node *y, const wino_geom *w, size_t elem)
{
    const int64_t chunk = wino_chunk(w, elem), chunks = (w->N + chunk - 1) / chunk;
    return kept_offset(y) + (size_t)(chunks * kept_chunk_elems(w, elem)) * elem;
}

static void keep_sign(int64_t *k, const wino_geom *w)
{
    k[KEEP_N] = w->N;
    k[KEEP_CI] = w->Ci;
    k[KEEP_CO] = w->Co;
    k[KEEP_H] = w->H;
    k[KEEP_W] = w->W;
    k[KEEP_PH] = w->ph;
    k[KEEP_PW] = w->pw;
}

/* n's op_data, made (cleared) with the node (not on a replay), for what its
 * forward keeps; false without memory */
static bool keep_header(ad_node *n)
{
    if (n->op_data || n->id != n->g->nnodes)
        return true;
    n->op_data = ad_arena_alloc(n->g, sizeof(int64_t) * KEEP_WORDS);
    if (n->op_data)
        memset(n->op_data, 0, sizeof(int64_t) * KEEP_WORDS);
    return n->op_data != NULL;
}

/* the same stride, padding, dilation and groups */
static bool same_params(const ad_node *a, const ad_node *b)
{
    return memcmp(a->iparam, b->iparam, sizeof(int64_t) * 7) == 0;
}

/* the kept chunks of y when they hold V of geometry w, else NULL */
static char *kept_chunks(const ad_node *y, const wino_geom *w, size_t elem)
{
    const int64_t *k = y->op_data;
    int64_t want[KEEP_WORDS] = {0};
    keep_sign(want, w);
    if (!k || !k[KEEP_VALID] || memcmp(k + 1, want + 1, sizeof(int64_t) * (KEEP_WORDS - 1)) != 0 ||
        !y->aux || y->aux_bytes < kept_end(y, w, elem))
        return NULL;
    return (char *)y->aux + kept_offset(y);
}

/* The 1-d weight transforms over nq kernels at once (inside AD_DISPATCH, T
 * the element type; m is loop-invariant, so the compiler unswitches it):
 * G k for k = (k0, k1, k2)[j] into u[i·us + j], i < m + 2, and its adjoint
 * Gᵀ s for s = (s0..s[m+1])[j] into a[i·as + j], i < 3. The factors
 * ⅙, 1/12 and 1/24 of F(4×4) are rounded once, as T. */
#define WINO_G_ROWS(m, k0, k1, k2, u, us, nq)                                                      \
    for (int64_t j_ = 0; j_ < (nq); j_++) {                                                        \
        const T a_ = (k0)[j_], b_ = (k1)[j_], c_ = (k2)[j_];                                       \
        if ((m) == 2) {                                                                            \
            (u)[j_] = a_;                                                                          \
            (u)[(us) + j_] = (T)0.5 * (a_ + b_ + c_);                                              \
            (u)[2 * (us) + j_] = (T)0.5 * (a_ - b_ + c_);                                          \
            (u)[3 * (us) + j_] = c_;                                                               \
        } else {                                                                                   \
            (u)[j_] = (T)0.25 * a_;                                                                \
            (u)[(us) + j_] = -(a_ + b_ + c_) * (T)(1.0 / 6);                                       \
            (u)[2 * (us) + j_] = -(a_ - b_ + c_) * (T)(1.0 / 6);                                   \
            (u)[3 * (us) + j_] = (a_ + 2 * b_ + 4 * c_) * (T)(1.0 / 24);                           \
            (u)[4 * (us) + j_] = (a_ - 2 * b_ + 4 * c_) * (T)(1.0 / 24);                           \
            (u)[5 * (us) + j_] = c_;                                                               \
        }                                                                                          \
    }

#define WINO_GT_ROWS(m, s, ss, a, as, nq)                                                          \
    for (int64_t j_ = 0; j_ < (nq); j_++) {                                                        \
        const T s0_ = (s)[j_], s1_ = (s)[(ss) + j_], s2_ = (s)[2 * (ss) + j_],                     \
                s3_ = (s)[3 * (ss) + j_];                                                          \
        if ((m) == 2) {                                                                            \
            (a)[j_] = s0_ + (T)0.5 * (s1_ + s2_);                                                  \
            (a)[(as) + j_] = (T)0.5 * (s1_ - s2_);                                                 \
            (a)[2 * (as) + j_] = (T)0.5 * (s1_ + s2_) + s3_;                                       \
        } else {                                                                                   \
            const T s4_ = (s)[4 * (ss) + j_], s5_ = (s)[5 * (ss) + j_];                            \
            (a)[j_] = (T)0.25 * s0_ - (s1_ + s2_) * (T)(1.0 / 6) + (s3_ + s4_) * (T)(1.0 / 24);    \
            (a)[(as) + j_] = (s2_ - s1_) * (T)(1.0 / 6) + (s3_ - s4_) * (T)(1.0 / 12);             \
            (a)[2 * (as) + j_] = (s3_ + s4_ - s1_ - s2_) * (T)(1.0 / 6) + s5_;                     \
        }                                                                                          \
    }

/* U_k[o][c] = (G w[o,c] Gᵀ)_k for w (O, C, 3, 3); transpose: U_k[c][o]
 * from w[o,c] rotated by 180°, the weights of the adjoint. A row of U_k
 * (fixed o, or c) is made in blocks of WINO_WEIGHT_BLOCK kernels, each
 * step of the transform one loop over the block (vectorized), the last one
 * writing along the rows of U_k, U_k+1, ... (whole (O, C) matrices apart) */
#define WINO_WEIGHT_BLOCK 64

static void wino_weights(ad_graph *g, int m, const void *wv, void *uv, int64_t O, int64_t C,
                         bool transpose)
{
    const int64_t R = transpose ? C : O, Q = transpose ? O : C; /* U_k is (R, Q) */
    const int n = m + 2;
    enum { B = WINO_WEIGHT_BLOCK };
    AD_DISPATCH(g, {
        const T *wt = wv;
        T *u = uv, kk[9 * B], gk[18 * B]; /* rows of B */
        for (int64_t r = 0; r < R; r++)
            for (int64_t q0 = 0; q0 < Q; q0 += B) {
                const int64_t nq = Q - q0 < B ? Q - q0 : B;
                for (int64_t j = 0; j < nq; j++) {
                    const int64_t o = transpose ? q0 + j : r, c = transpose ? r : q0 + j;
                    const T *f = wt + (o * C + c) * 9;
                    for (int e = 0; e < 9; e++) /* rotated: (2 − a, 2 − b) is 8 − e */
                        kk[e * B + j] = f[transpose ? 8 - e : e];
                }
                for (int b = 0; b < 3; b++) { /* G k, column b into rows 3a + b */
                    const T *k0 = kk + b * B, *k1 = k0 + 3 * B, *k2 = k1 + 3 * B;
                    if (m == 2) { /* a constant m to each copy: no branch in the loop */
                        WINO_G_ROWS(2, k0, k1, k2, gk + b * B, 3 * B, nq);
                    } else {
                        WINO_G_ROWS(4, k0, k1, k2, gk + b * B, 3 * B, nq);
                    }
                }
                for (int a = 0; a < n; a++) { /* (G k) Gᵀ, row a into U_{n·a + b} */
                    const T *g0 = gk + 3 * a * B, *g1 = g0 + B, *g2 = g1 + B;
                    T *ua = u + (n * a * R + r) * Q + q0;
                    if (m == 2) {
                        WINO_G_ROWS(2, g0, g1, g2, ua, R * Q, nq);
                    } else {
                        WINO_G_ROWS(4, g0, g1, g2, ua, R * Q, nq);
                    }
                }
            }
    });
}

/* dw[o][c] = Gᵀ dU[o][c] G (the adjoint of wino_weights) from dU (nk, O, C)
 * into w (O, C, 3, 3), WINO_WEIGHT_BLOCK pairs (o, c) at a time */
static void wino_weights_adjoint(ad_graph *g, int m, const void *duv, void *wv, int64_t O,
                                 int64_t C)
{
    const int n = m + 2;
    const int64_t stride = O * C;
    enum { B = WINO_WEIGHT_BLOCK };
    AD_DISPATCH(g, {
        const T *du = duv;
        T *wt = wv, a3[18 * B], f[9 * B]; /* rows of B */
        for (int64_t oc0 = 0; oc0 < stride; oc0 += B) {
            const int64_t nq = stride - oc0 < B ? stride - oc0 : B;
            for (int j = 0; j < n; j++) { /* Gᵀ s, column j into rows n·a + j */
                const T *sj = du + j * stride + oc0;
                if (m == 2) { /* a constant m to each copy: no branch in the loop */
                    WINO_GT_ROWS(2, sj, n * stride, a3 + j * B, n * B, nq);
                } else {
                    WINO_GT_ROWS(4, sj, n * stride, a3 + j * B, n * B, nq);
                }
            }
            for (int a = 0; a < 3; a++) { /* (Gᵀ s) G, row a into rows 3a + b */
                if (m == 2) {
                    WINO_GT_ROWS(2, a3 + n * a * B, B, f + 3 * a * B, B, nq);
                } else {
                    WINO_GT_ROWS(4, a3 + n * a * B, B, f + 3 * a * B, B, nq);
                }
            }
            for (int64_t j = 0; j < nq; j++)
                for (int e = 0; e < 9; e++)
                    wt[(oc0 + j) * 9 + e] = f[e * B + j];
        }
    });
}

/* V_k[c][t] = (Bᵀ d B)_k for the tiles d of nb images from x (their first
 * element), t = i·tiles + ti·S + tj for image i (wino_tiles, S = tw + 1).
 * Per plane: the image goes into the zero-padded plane split by row parity,
 * Pe and Po (rows 2r and 2r + 1 of the padded image, 2S wide), so that
 * row r's tiles start 2 apart at 2(r·S + tj): d B is one loop over
 * u = r·S + tj per parity (e, o), and row 2·ti + a of tile t is e[t], o[t],
 * e[t + S], o[t + S] for a = 0..3, so Bᵀ (d B) is one loop over t */
static void wino2_input(ad_graph *g, const wino_geom *w, const void *xv, int64_t nb, void *vv,
                        void *workv)
{
    const int64_t S = w->tw + 1, Wp = 2 * S, tiles = wino_tiles(w), nt = nb * tiles;
    const int64_t rows = w->th + 1, plane = rows * Wp + 4, rs = rows * S,
                  ks = wino_kstride(w->Ci, nt);
    AD_DISPATCH(g, {
        T *v = vv, *Pe = workv, *Po = Pe + plane, *eo = Po + plane;
        memset(Pe, 0, sizeof(T) * (size_t)(2 * plane)); /* the border stays 0 */
        for (int64_t i = 0; i < nb; i++)
            for (int64_t c = 0; c < w->Ci; c++) {
                const T *xp = (const T *)xv + (i * w->Ci + c) * w->H * w->W;
                for (int64_t r = 0; r < w->H; r++) {
                    const int64_t pr = r + w->ph;
                    memcpy((pr & 1 ? Po : Pe) + (pr >> 1) * Wp + w->pw, xp + r * w->W,
                           sizeof(T) * (size_t)w->W);
                }
                for (int par = 0; par < 2; par++) { /* d B */
                    const T *restrict p = par ? Po : Pe;
                    T *restrict e0 = eo + par * 4 * rs, *restrict e1 = e0 + rs;
                    T *restrict e2 = e1 + rs, *restrict e3 = e2 + rs;
                    NO_ALIAS_LOOP
                    for (int64_t u = 0; u < rs; u++) {
                        const T d0 = p[2 * u], d1 = p[2 * u + 1], d2 = p[2 * u + 2],
                                d3 = p[2 * u + 3];
                        e0[u] = d0 - d2;
                        e1[u] = d1 + d2;
                        e2[u] = d2 - d1;
                        e3[u] = d1 - d3;
                    }
                }
                T *vc = v + c * nt + i * tiles;
                for (int b = 0; b < 4; b++) { /* Bᵀ (d B) */
                    const T *restrict e = eo + b * rs, *restrict o = eo + 4 * rs + b * rs;
                    T *restrict v0 = vc + b * ks, *restrict v1 = v0 + 4 * ks;
                    T *restrict v2 = v1 + 4 * ks, *restrict v3 = v2 + 4 * ks;
                    NO_ALIAS_LOOP
                    for (int64_t t = 0; t < tiles; t++) {
                        const T r0 = e[t], r1 = o[t], r2 = e[t + S], r3 = o[t + S];
                        v0[t] = r0 - r2;
                        v1[t] = r1 + r2;
                        v2[t] = r2 - r1;
                        v3[t] = r1 - r3;
                    }
                }
            }
    });
}

/* y = Aᵀ m A for the chunk's tiles from M (16, Co, T), the valid part of
 * each 2×2 block written to y (nb images from its first element), with
 * the bias bv (Co) added when given and then max(·, 0) when relu. Per
 * plane, one loop over its tiles writes output rows 2·ti (ye) and 2·ti + 1
 * (yo) 2S wide (tile t = ti·S + tj at 2t, 2t + 1), then the rows' first OW
 * values are copied to y. arg given (conv_bias_relu_pool): a tile's block
 * is a pooling window; y (nb, Co, OH/2, OW/2) gets the windows' maxima and
 * arg their argmax, as conv_pool_epilogue. */
static void wino2_output(ad_graph *g, const wino_geom *w, const void *mv, int64_t nb, void *yv,
                         int32_t *arg, const void *bv, bool relu, void *workv)
{
    const int64_t S = w->tw + 1, tiles = wino_tiles(w), nt = nb * tiles,
                  ks = wino_kstride(w->Co, nt);
    const int64_t OW = w->OW, PH = w->OH / 2, PW = OW / 2;
    const int32_t W32 = (int32_t)OW;
    AD_DISPATCH(g, {
        T *restrict ye = (T *)workv, *restrict yo = ye + 2 * tiles;
        int32_t *restrict kk = (int32_t *)(void *)(yo + 2 * tiles); /* argmax places */
        for (int64_t i = 0; i < nb; i++)
            for (int64_t o = 0; o < w->Co; o++) {
                const T bias = bv ? ((const T *)bv)[o] : 0;
                const T *restrict m = (const T *)mv + o * nt + i * tiles;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < tiles; t++) {
                    T s[16];
                    for (int k = 0; k < 16; k++)
                        s[k] = m[k * ks + t];
                    /* Aᵀ m: rows 0 + 1 + 2 and 1 − 2 − 3 */
                    const T u0 = s[0] + s[4] + s[8], u1 = s[1] + s[5] + s[9],
                            u2 = s[2] + s[6] + s[10], u3 = s[3] + s[7] + s[11];
                    const T w0 = s[4] - s[8] - s[12], w1 = s[5] - s[9] - s[13],
                            w2 = s[6] - s[10] - s[14], w3 = s[7] - s[11] - s[15];
                    ye[2 * t] = u0 + u1 + u2 + bias;
                    ye[2 * t + 1] = u1 - u2 - u3 + bias;
                    yo[2 * t] = w0 + w1 + w2 + bias;
                    yo[2 * t + 1] = w1 - w2 - w3 + bias;
                }
                for (int64_t t = 0; relu && t < 4 * tiles; t++) /* ye and yo */
                    ye[t] = ye[t] > 0 ? ye[t] : 0;
                if (arg) {
                    T *yq = (T *)yv + (i * w->Co + o) * PH * PW;
                    int32_t *aq = arg + (i * w->Co + o) * PH * PW;
                    NO_ALIAS_LOOP
                    for (int64_t t = 0; t < tiles; t++) { /* maxima in place in ye */
                        T mx;
                        int32_t k;
                        MAX_OF_FOUR(ye[2 * t], ye[2 * t + 1], yo[2 * t], yo[2 * t + 1], W32, mx, k);
                        ye[t] = mx;
                        kk[t] = k;
                    }
                    for (int64_t pi = 0; pi < PH; pi++, yq += PW, aq += PW) {
                        memcpy(yq, ye + pi * S, sizeof(T) * (size_t)PW);
                        const int32_t base = (int32_t)(2 * pi * OW);
                        for (int64_t pj = 0; pj < PW; pj++)
                            aq[pj] = base + 2 * (int32_t)pj + kk[pi * S + pj];
                    }
                    continue;
                }
                T *yp = (T *)yv + (i * w->Co + o) * w->OH * OW; /* not pooled */
                for (int64_t r = 0; r < w->OH; r++)
                    memcpy(yp + r * OW, (r & 1 ? yo : ye) + (r >> 1) * 2 * S,
                           sizeof(T) * (size_t)OW);
            }
    });
}

/* Mg_k[o][t] = (A g Aᵀ)_k for the 2×2 blocks g of the output gradient of
 * nb images from gv (their first element), in V's tile order; an unused
 * tile, or the part of a block past the output's edge, counts as 0. Per
 * plane: the rows go to ge (even) and go (odd), 2S wide, zeroed by the
 * caller once (the places written are the same for every plane), so that
 * tile t's block is ge[2t], ge[2t + 1], go[2t], go[2t + 1] */
static void wino2_grad_input(ad_graph *gr, const wino_geom *w, const void *gv, int64_t nb, void *mv,
                             void *gev)
{
    const int64_t S = w->tw + 1, tiles = wino_tiles(w), nt = nb * tiles,
                  ks = wino_kstride(w->Co, nt);
    const int64_t OW = w->OW;
    AD_DISPATCH(gr, {
        T *restrict ge = gev, *restrict go = ge + 2 * tiles;
        for (int64_t i = 0; i < nb; i++)
            for (int64_t o = 0; o < w->Co; o++) {
                const T *gp = (const T *)gv + (i * w->Co + o) * w->OH * OW;
                for (int64_t r = 0; r < w->OH; r++)
                    memcpy((r & 1 ? go : ge) + (r >> 1) * 2 * S, gp + r * OW,
                           sizeof(T) * (size_t)OW);
                T *restrict m = (T *)mv + o * nt + i * tiles;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < tiles; t++) {
                    const T g00 = ge[2 * t], g01 = ge[2 * t + 1], g10 = go[2 * t],
                            g11 = go[2 * t + 1];
                    /* A g: rows g0, g0 + g1, g0 − g1, −g1; then · Aᵀ per row
                       (x0, x1) -> (x0, x0 + x1, x0 − x1, −x1) */
                    const T r[4][2] = {
                        {g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}};
                    for (int a = 0; a < 4; a++) {
                        m[(a * 4 + 0) * ks + t] = r[a][0];
                        m[(a * 4 + 1) * ks + t] = r[a][0] + r[a][1];
                        m[(a * 4 + 2) * ks + t] = r[a][0] - r[a][1];
                        m[(a * 4 + 3) * ks + t] = -r[a][1];
                    }
                }
            }
    });
}

/* The 1-d transforms of F(4×4, 3×3), on values of type T (inside
 * AD_DISPATCH): Bᵀ d for d (6) into o (6); Aᵀ s for s (6) into o (4),
 * plus b; A g for g (4) into o (6). The factors 2, 4 and 8 are exact. */
#define WINO4_BT(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                                   \
    do {                                                                                           \
        const T p_ = (d4) - (d2), q_ = 2 * ((d3) - (d1));                                          \
        o0 = 4 * (d0)-5 * (d2) + (d4);                                                             \
        o1 = (d3) + (d4)-4 * ((d1) + (d2));                                                        \
        o2 = (d4) - (d3) + 4 * ((d1) - (d2));                                                      \
        o3 = p_ + q_;                                                                              \
        o4 = p_ - q_;                                                                              \
        o5 = 4 * (d1)-5 * (d3) + (d5);                                                             \
    } while (0)

#define WINO4_AT(s0, s1, s2, s3, s4, s5, b, o0, o1, o2, o3)                                        \
    do {                                                                                           \
        const T p12_ = (s1) + (s2), m12_ = (s1) - (s2), p34_ = (s3) + (s4), m34_ = (s3) - (s4);    \
        o0 = (s0) + p12_ + p34_ + (b);                                                             \
        o1 = m12_ + 2 * m34_ + (b);                                                                \
        o2 = p12_ + 4 * p34_ + (b);                                                                \
        o3 = m12_ + 8 * m34_ + (s5) + (b);                                                         \
    } while (0)

#define WINO4_A(g0, g1, g2, g3, o0, o1, o2, o3, o4, o5)                                            \
    do {                                                                                           \
        const T e_ = (g0) + (g2), f_ = (g1) + (g3), e4_ = (g0) + 4 * (g2),                         \
                f4_ = 2 * (g1) + 8 * (g3);                                                         \
        o0 = (g0);                                                                                 \
        o1 = e_ + f_;                                                                              \
        o2 = e_ - f_;                                                                              \
        o3 = e4_ + f4_;                                                                            \
        o4 = e4_ - f4_;                                                                            \
        o5 = (g3);                                                                                 \
    } while (0)

/* B i for i (6) into o (6): the adjoint of WINO4_BT (Bᵀ's columns) */
#define WINO4_B(i0, i1, i2, i3, i4, i5, o0, o1, o2, o3, o4, o5)                                    \
    do {                                                                                           \
        const T s12_ = (i1) + (i2), d21_ = (i2) - (i1), s34_ = (i3) + (i4), d43_ = (i4) - (i3);    \
        o0 = 4 * (i0);                                                                             \
        o1 = 4 * (d21_ + (i5)) + 2 * d43_;                                                         \
        o2 = -5 * (i0)-4 * s12_ - s34_;                                                            \
        o3 = -d21_ - 2 * d43_ - 5 * (i5);                                                          \
        o4 = (i0) + s12_ + s34_;                                                                   \
        o5 = (i5);                                                                                 \
    } while (0)

/* o0..o5 += B i (wino4_adjoint_input's rows) */
#define WINO4_B_ADD(i0, i1, i2, i3, i4, i5, o0, o1, o2, o3, o4, o5)                                \
    do {                                                                                           \
        T b0_, b1_, b2_, b3_, b4_, b5_;                                                            \
        WINO4_B(i0, i1, i2, i3, i4, i5, b0_, b1_, b2_, b3_, b4_, b5_);                             \
        o0 += b0_;                                                                                 \
        o1 += b1_;                                                                                 \
        o2 += b2_;                                                                                 \
        o3 += b3_;                                                                                 \
        o4 += b4_;                                                                                 \
        o5 += b5_;                                                                                 \
    } while (0)

/* F(4×4, 3×3)'s transforms run their loops over the tiles of all nb
 * images of the chunk at once (nt = nb·tiles: V, M and the buffers below
 * hold the images' tiles side by side), not over one plane's: with 20
 * tiles a plane at 14×14, per-plane loops were mostly vector remainders */

/* src (4·n, a row of tiles 4 wide each) split by column mod 4 into 4
 * arrays n long from dst on: dst_j[t] = src[4t + j] (whole groups of 4:
 * strided loads that vectorize) */
#define WINO4_SPLIT(src, dst, n)                                                                   \
    do {                                                                                           \
        const T *restrict s_ = (src);                                                              \
        T *restrict d0_ = (dst), *restrict d1_ = d0_ + (n), *restrict d2_ = d1_ + (n),             \
                    *restrict d3_ = d2_ + (n);                                                     \
        NO_ALIAS_LOOP                                                                              \
        for (int64_t t_ = 0; t_ < (n); t_++) {                                                     \
            d0_[t_] = s_[4 * t_];                                                                  \
            d1_[t_] = s_[4 * t_ + 1];                                                              \
            d2_[t_] = s_[4 * t_ + 2];                                                              \
            d3_[t_] = s_[4 * t_ + 3];                                                              \
        }                                                                                          \
    } while (0)

/* wino2_input for F(4×4, 3×3): V_k[c][t] = (Bᵀ d B)_k, k = 6a + b, for
 * the 6×6 tiles d, th rows of tw tiles per image (no unused tile: at
 * 14×14 it would be 1/4 more GEMM columns; tile t = ti·tw + tj). Bᵀ d
 * first, down the columns: for tile row ti, padded rows 4·ti + a
 * (a = 0..5) are image rows or zeros, and one loop over the image's
 * columns writes the 6 results into f_a's row ti, 4·tw wide, at the padded
 * columns, and the last two columns, 4·tw and 4·tw + 1, to the overhang
 * array (the columns outside the image stay 0: written once; the images'
 * planes side by side). Then, per input channel, each f_a is split by
 * column mod 4 (a whole group of 4 per tile: strided loads that
 * vectorize) into q_6a..q_6a+3; q_6a+4 and q_6a+5, columns 4·tj + 4 and
 * 4·tj + 5, are q_6a and q_6a+1 one tile on, except at a row's last tile,
 * whose come from the overhang; and (Bᵀ d) B is one loop over the chunk's
 * tiles per a */
static void wino4_input(ad_graph *g, const wino_geom *w, const void *xv, int64_t nb, void *vv,
                        void *workv)
{
    const int64_t tw = w->tw, th = w->th, Wf = 4 * tw, tiles = wino_tiles(w), nt = nb * tiles;
    const int64_t fs = th * Wf, ks = wino_kstride(w->Ci, nt), W = w->W, os = nb * th * 2;
    const int64_t in_f = W < Wf - w->pw ? W : Wf - w->pw; /* columns of x in f's rows */
    AD_DISPATCH(g, {
        T *v = vv, *zero = workv, *f = zero + W, *ov = f + 6 * nb * fs, *q = ov + 6 * os;
        memset(zero, 0, sizeof(T) * (size_t)(W + 6 * nb * fs + 6 * os)); /* padding: 0 */
        for (int64_t c = 0; c < w->Ci; c++) {
            for (int64_t i = 0; i < nb; i++) {
                const T *xp = (const T *)xv + (i * w->Ci + c) * w->H * W, *row[6];
                for (int64_t ti = 0; ti < th; ti++) {
                    for (int a = 0; a < 6; a++) {
                        const int64_t r = 4 * ti + a - w->ph;
                        row[a] = r >= 0 && r < w->H ? xp + r * W : zero;
                    }
                    const T *restrict x0 = row[0], *restrict x1 = row[1], *restrict x2 = row[2];
                    const T *restrict x3 = row[3], *restrict x4 = row[4], *restrict x5 = row[5];
                    T *restrict f0 = f + i * fs + ti * Wf + w->pw, *restrict f1 = f0 + nb * fs;
                    T *restrict f2 = f1 + nb * fs, *restrict f3 = f2 + nb * fs;
                    T *restrict f4 = f3 + nb * fs, *restrict f5 = f4 + nb * fs;
                    NO_ALIAS_LOOP
                    for (int64_t col = 0; col < in_f; col++) /* Bᵀ d */
                        WINO4_BT(x0[col], x1[col], x2[col], x3[col], x4[col], x5[col], f0[col],
                                 f1[col], f2[col], f3[col], f4[col], f5[col]);
                    for (int64_t col = in_f; col < W; col++) { /* columns 4·tw, 4·tw + 1 */
                        const int64_t e = (i * th + ti) * 2 + col + w->pw - Wf;
                        WINO4_BT(x0[col], x1[col], x2[col], x3[col], x4[col], x5[col], ov[e],
                                 ov[os + e], ov[2 * os + e], ov[3 * os + e], ov[4 * os + e],
                                 ov[5 * os + e]);
                    }
                }
            }
            for (int a = 0; a < 6; a++) /* all six split before any is read back */
                WINO4_SPLIT(f + a * nb * fs, q + 6 * a * nt, nt);
            for (int a = 0; a < 6; a++) { /* q_6a+4, q_6a+5: not right after the stores */
                T *q0 = q + 6 * a * nt, *q4 = q0 + 4 * nt, *q5 = q4 + nt;
                const T *oa = ov + a * os;
                memcpy(q4, q0 + 1, sizeof(T) * (size_t)(nt - 1));
                memcpy(q5, q0 + nt + 1, sizeof(T) * (size_t)(nt - 1));
                for (int64_t e = 0; e < nb * th; e++) { /* rows' last tiles */
                    q4[e * tw + tw - 1] = oa[2 * e];
                    q5[e * tw + tw - 1] = oa[2 * e + 1];
                }
            }
            T *vc = v + c * nt;
            for (int a = 0; a < 6; a++) { /* (Bᵀ d) B */
                const T *restrict q0 = q + 6 * a * nt, *restrict q1 = q0 + nt;
                const T *restrict q2 = q1 + nt, *restrict q3 = q2 + nt;
                const T *restrict q4 = q3 + nt, *restrict q5 = q4 + nt;
                T *restrict v0 = vc + 6 * a * ks, *restrict v1 = v0 + ks;
                T *restrict v2 = v1 + ks, *restrict v3 = v2 + ks;
                T *restrict v4 = v3 + ks, *restrict v5 = v4 + ks;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++)
                    WINO4_BT(q0[t], q1[t], q2[t], q3[t], q4[t], q5[t], v0[t], v1[t], v2[t], v3[t],
                             v4[t], v5[t]);
            }
        }
    });
}

/* The adjoint of wino4_input: dx += Σ_tiles B dV_t Bᵀ, each tile's 6×6
 * block added at its place in the padded image (the parts on the padding
 * dropped), for nb images into dx (their first element; zeroed here) from
 * dV (36, Ci, T). wino4_input's steps backwards, per input channel: B along
 * the tiles' columns (one loop over the chunk's tiles per row a, into
 * q_6a..q_6a+5), columns 4 and 5 of each tile added to columns 0 and 1 of
 * the next one (a row's last tile: to the overhang), q_6a..q_6a+3 merged
 * into f_a's rows, then B down the columns of each tile row, one loop over
 * the image's columns adding the six rows into dx (tile rows overlap by
 * two; rows on the padding go to rows of their own that are never read) */
static void wino4_adjoint_input(ad_graph *g, const wino_geom *w, const void *vv, int64_t nb,
                                void *xv, void *workv)
{
    const int64_t tw = w->tw, th = w->th, Wf = 4 * tw, tiles = wino_tiles(w), nt = nb * tiles;
    const int64_t fs = th * Wf, ks = wino_kstride(w->Ci, nt), W = w->W, os = nb * th * 2;
    const int64_t in_f = W < Wf - w->pw ? W : Wf - w->pw; /* columns of x in f's rows */
    const int64_t plane = w->H * W;
    AD_DISPATCH(g, {
        const T *v = vv;
        T *spare = workv, *f = spare + 6 * W, *ov = f + 6 * nb * fs, *q = ov + 6 * os;
        memset(xv, 0, sizeof(T) * (size_t)(nb * w->Ci * plane));
        for (int64_t c = 0; c < w->Ci; c++) {
            const T *vc = v + c * nt;
            for (int a = 0; a < 6; a++) { /* dV B (B on each tile's row a) */
                const T *restrict v0 = vc + 6 * a * ks, *restrict v1 = v0 + ks;
                const T *restrict v2 = v1 + ks, *restrict v3 = v2 + ks;
                const T *restrict v4 = v3 + ks, *restrict v5 = v4 + ks;
                T *restrict q0 = q + 6 * a * nt, *restrict q1 = q0 + nt, *restrict q2 = q1 + nt;
                T *restrict q3 = q2 + nt, *restrict q4 = q3 + nt, *restrict q5 = q4 + nt;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++)
                    WINO4_B(v0[t], v1[t], v2[t], v3[t], v4[t], v5[t], q0[t], q1[t], q2[t], q3[t],
                            q4[t], q5[t]);
            }
            for (int a = 0; a < 6; a++) { /* columns 4, 5 onto the next tile's 0, 1 */
                T *q0 = q + 6 * a * nt, *q1 = q0 + nt, *q4 = q0 + 4 * nt, *q5 = q4 + nt;
                T *oa = ov + a * os;
                for (int64_t e = 0; e < nb * th; e++) { /* rows' last tiles: the overhang */
                    oa[2 * e] = q4[e * tw + tw - 1];
                    oa[2 * e + 1] = q5[e * tw + tw - 1];
                    q4[e * tw + tw - 1] = q5[e * tw + tw - 1] = 0;
                }
                for (int64_t t = 0; t + 1 < nt; t++) {
                    q0[t + 1] += q4[t];
                    q1[t + 1] += q5[t];
                }
            }
            for (int a = 0; a < 6; a++) { /* q_6a..q_6a+3 merged into f_a */
                const T *restrict q0 = q + 6 * a * nt, *restrict q1 = q0 + nt;
                const T *restrict q2 = q1 + nt, *restrict q3 = q2 + nt;
                T *restrict fa = f + a * nb * fs;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++) {
                    fa[4 * t] = q0[t];
                    fa[4 * t + 1] = q1[t];
                    fa[4 * t + 2] = q2[t];
                    fa[4 * t + 3] = q3[t];
                }
            }
            for (int64_t i = 0; i < nb; i++) {
                T *xp = (T *)xv + (i * w->Ci + c) * plane, *row[6];
                for (int64_t ti = 0; ti < th; ti++) {
                    for (int a = 0; a < 6; a++) {
                        const int64_t r = 4 * ti + a - w->ph;
                        row[a] = r >= 0 && r < w->H ? xp + r * W : spare + a * W;
                    }
                    T *restrict x0 = row[0], *restrict x1 = row[1], *restrict x2 = row[2];
                    T *restrict x3 = row[3], *restrict x4 = row[4], *restrict x5 = row[5];
                    const T *restrict f0 = f + i * fs + ti * Wf + w->pw, *restrict f1 =
                                                                             f0 + nb * fs;
                    const T *restrict f2 = f1 + nb * fs, *restrict f3 = f2 + nb * fs;
                    const T *restrict f4 = f3 + nb * fs, *restrict f5 = f4 + nb * fs;
                    NO_ALIAS_LOOP
                    for (int64_t col = 0; col < in_f; col++) /* B down the columns */
                        WINO4_B_ADD(f0[col], f1[col], f2[col], f3[col], f4[col], f5[col], x0[col],
                                    x1[col], x2[col], x3[col], x4[col], x5[col]);
                    for (int64_t col = in_f; col < W; col++) { /* columns 4·tw, 4·tw + 1 */
                        const int64_t e = (i * th + ti) * 2 + col + w->pw - Wf;
                        WINO4_B_ADD(ov[e], ov[os + e], ov[2 * os + e], ov[3 * os + e],
                                    ov[4 * os + e], ov[5 * os + e], x0[col], x1[col], x2[col],
                                    x3[col], x4[col], x5[col]);
                    }
                }
            }
        }
    });
}

/* wino2_output for F(4×4, 3×3): y = Aᵀ m A from M (36, Co, T). Per output
 * channel, Aᵀ m is one loop over the chunk's tiles per column b into Z (24
 * arrays, row i of column b at 6i + b), then (Aᵀ m) A one loop per row i
 * into the output rows by their index mod 4, Y_0..Y_3 (tile t's row i at
 * Y_i[4t..4t + 3]: an image's row of tiles 4S wide), whose first OW values
 * are then copied to y; arg given (conv_bias_relu_pool), the 2×2 windows'
 * maxima and argmax instead, as conv_pool_epilogue. Two loops rather than
 * one that holds 36 products and 24 partial sums: those do not fit in the
 * vector registers */
static void wino4_output(ad_graph *g, const wino_geom *w, const void *mv, int64_t nb, void *yv,
                         int32_t *arg, const void *bv, bool relu, void *workv)
{
    const int64_t tiles = wino_tiles(w), nt = nb * tiles, ks = wino_kstride(w->Co, nt);
    const int64_t OW = w->OW, PH = w->OH / 2, PW = OW / 2, Wr = 4 * w->tw;
    const int32_t W32 = (int32_t)OW;
    AD_DISPATCH(g, {
        T *restrict Z = workv, *restrict Y = Z + 24 * nt; /* Y_i at Y + 4i·nt */
        for (int64_t o = 0; o < w->Co; o++) {
            const T bias = bv ? ((const T *)bv)[o] : 0;
            const T *m = (const T *)mv + o * nt;
            for (int b = 0; b < 6; b++) { /* Aᵀ m */
                const T *restrict s0 = m + b * ks, *restrict s1 = s0 + 6 * ks;
                const T *restrict s2 = s1 + 6 * ks, *restrict s3 = s2 + 6 * ks;
                const T *restrict s4 = s3 + 6 * ks, *restrict s5 = s4 + 6 * ks;
                T *restrict z0 = Z + b * nt, *restrict z1 = z0 + 6 * nt;
                T *restrict z2 = z1 + 6 * nt, *restrict z3 = z2 + 6 * nt;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++)
                    WINO4_AT(s0[t], s1[t], s2[t], s3[t], s4[t], s5[t], 0, z0[t], z1[t], z2[t],
                             z3[t]);
            }
            for (int r = 0; r < 4; r++) { /* (Aᵀ m) A */
                const T *restrict z0 = Z + 6 * r * nt, *restrict z1 = z0 + nt;
                const T *restrict z2 = z1 + nt, *restrict z3 = z2 + nt;
                const T *restrict z4 = z3 + nt, *restrict z5 = z4 + nt;
                T *restrict yr = Y + 4 * r * nt;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++)
                    WINO4_AT(z0[t], z1[t], z2[t], z3[t], z4[t], z5[t], 0, yr[4 * t], yr[4 * t + 1],
                             yr[4 * t + 2], yr[4 * t + 3]);
            }
            if (arg) /* the bias and ReLU before the pool's maxima */
                for (int64_t t = 0; t < 16 * nt; t++) {
                    const T u = Y[t] + bias;
                    Y[t] = u > 0 ? u : 0;
                }
            for (int64_t i = 0; i < nb; i++) {
                const T *Yi = Y + 4 * i * tiles; /* image i's rows */
                if (arg) {
                    T *yq = (T *)yv + (i * w->Co + o) * PH * PW;
                    int32_t *aq = arg + (i * w->Co + o) * PH * PW;
                    for (int64_t pi = 0; pi < PH; pi++, yq += PW, aq += PW) {
                        const int64_t r = 2 * pi; /* rows r, r + 1: Y_j, Y_j+1, j = r mod 4 */
                        const T *ra = Yi + (r & 3) * 4 * nt + (r >> 2) * Wr, *rb = ra + 4 * nt;
                        const int32_t base = (int32_t)(r * OW);
                        for (int64_t pj = 0; pj < PW; pj++) {
                            T mx;
                            int32_t k;
                            MAX_OF_FOUR(ra[2 * pj], ra[2 * pj + 1], rb[2 * pj], rb[2 * pj + 1], W32,
                                        mx, k);
                            yq[pj] = mx;
                            aq[pj] = base + 2 * (int32_t)pj + k;
                        }
                    }
                    continue;
                }
                T *yp = (T *)yv + (i * w->Co + o) * w->OH * OW; /* not pooled */
                for (int64_t r = 0; r < w->OH; r++, yp += OW) { /* with the bias and ReLU */
                    const T *restrict yr = Yi + (r & 3) * 4 * nt + (r >> 2) * Wr;
                    T *restrict yo = yp;
                    if (relu)
                        for (int64_t col = 0; col < OW; col++) {
                            const T u = yr[col] + bias;
                            yo[col] = u > 0 ? u : 0;
                        }
                    else
                        for (int64_t col = 0; col < OW; col++)
                            yo[col] = yr[col] + bias;
                }
            }
        }
    });
}

/* wino2_grad_input for F(4×4, 3×3): Mg_k[o][t] = (A g Aᵀ)_k for the 4×4
 * blocks g of the output gradient. Per plane its rows go by their index
 * mod 4 into G_0..G_3 (as wino4_output's Y_i; zeroed by the caller once:
 * the places written are the same for every plane); per output channel
 * they are split by column mod 4 (Gc, 16 arrays, row i column j at 4i + j),
 * then A g is one loop per column j into R (24 arrays, row a column j at
 * 4a + j) and (A g) Aᵀ one loop per row a into M */
static void wino4_grad_input(ad_graph *gr, const wino_geom *w, const void *gv, int64_t nb, void *mv,
                             void *gbv)
{
    const int64_t tiles = wino_tiles(w), nt = nb * tiles, ks = wino_kstride(w->Co, nt);
    const int64_t OW = w->OW, Wr = 4 * w->tw;
    AD_DISPATCH(gr, {
        T *restrict G = gbv, *restrict Gc = G + 16 * nt, *restrict R = Gc + 16 * nt;
        for (int64_t o = 0; o < w->Co; o++) {
            for (int64_t i = 0; i < nb; i++) {
                const T *gp = (const T *)gv + (i * w->Co + o) * w->OH * OW;
                for (int64_t r = 0; r < w->OH; r++)
                    memcpy(G + (r & 3) * 4 * nt + 4 * i * tiles + (r >> 2) * Wr, gp + r * OW,
                           sizeof(T) * (size_t)OW);
            }
            for (int r = 0; r < 4; r++)
                WINO4_SPLIT(G + 4 * r * nt, Gc + 4 * r * nt, nt);
            for (int j = 0; j < 4; j++) { /* A g */
                const T *restrict g0 = Gc + j * nt, *restrict g1 = g0 + 4 * nt;
                const T *restrict g2 = g1 + 4 * nt, *restrict g3 = g2 + 4 * nt;
                T *restrict r0 = R + j * nt, *restrict r1 = r0 + 4 * nt;
                T *restrict r2 = r1 + 4 * nt, *restrict r3 = r2 + 4 * nt;
                T *restrict r4 = r3 + 4 * nt, *restrict r5 = r4 + 4 * nt;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++)
                    WINO4_A(g0[t], g1[t], g2[t], g3[t], r0[t], r1[t], r2[t], r3[t], r4[t], r5[t]);
            }
            T *m = (T *)mv + o * nt;
            for (int a = 0; a < 6; a++) { /* (A g) Aᵀ */
                const T *restrict r0 = R + 4 * a * nt, *restrict r1 = r0 + nt;
                const T *restrict r2 = r1 + nt, *restrict r3 = r2 + nt;
                T *restrict m0 = m + 6 * a * ks, *restrict m1 = m0 + ks;
                T *restrict m2 = m1 + ks, *restrict m3 = m2 + ks;
                T *restrict m4 = m3 + ks, *restrict m5 = m4 + ks;
                NO_ALIAS_LOOP
                for (int64_t t = 0; t < nt; t++)
                    WINO4_A(r0[t], r1[t], r2[t], r3[t], m0[t], m1[t], m2[t], m3[t], m4[t], m5[t]);
            }
        }
    });
}

/* conv (transpose = false: x = X, y = Y with the bias and ReLU of the op)
 * or conv_transpose (x = Y, the output gradient; y = X) by Winograd */
static void wino_run(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                     const ad_node *Y, bool transpose)
{
    const wino_geom w = wino_make(q, transpose);
    const size_t es = n->g->elem;
    const ad_dtype dt = n->g->dtype;
    const int64_t chunk = wino_chunk(&w, es), tiles = wino_tiles(&w), nk = w.nk;
    const char *xv = transpose ? Y->value : X->value;
    char *yv = transpose ? X->value : Y->value;
    const char *bias = n->ninputs == 3 ? (const char *)n->inputs[2]->value : NULL;
    const bool pool = n->op == AD_OP_CONV_BIAS_RELU_POOL;
    const bool relu = n->op == AD_OP_CONV_BIAS_RELU || pool;
    const int64_t ys = pool ? w.Co * (w.OH / 2) * (w.OW / 2) : w.Co * w.OH * w.OW; /* an image */
    const wino_bufs sb = wino_layout(n->g, &w);
    char *u = sb.u, *v = sb.v, *m = sb.m, *work = sb.work;
    /* a weight gradient reads V from here (see kept_chunks) */
    int64_t *keep = transpose ? NULL : n->op_data;
    char *kept = keep && n->aux && n->aux_bytes >= kept_end(n, &w, es)
                     ? (char *)n->aux + kept_offset(n)
                     : NULL;
    const size_t kept_step = kept ? (size_t)kept_chunk_elems(&w, es) * es : 0;
    if (keep)
        keep[KEEP_VALID] = 0;
    wino_weights(n->g, w.m, K->value, u, q->O, q->C, transpose);
    for (int64_t i0 = 0; i0 < w.N; i0 += chunk) {
        const int64_t nb = chunk < w.N - i0 ? chunk : w.N - i0, nt = nb * tiles;
        const char *xi = xv + (size_t)(i0 * w.Ci * w.H * w.W) * es;
        if (kept)
            v = kept + (size_t)(i0 / chunk) * kept_step;
        if (w.m == 4)
            wino4_input(n->g, &w, xi, nb, v, work);
        else
            wino2_input(n->g, &w, xi, nb, v, work);
        for (int64_t k = 0; k < nk; k++)
            ad_gemm(dt, false, false, false, (ad_mm_dims){w.Co, w.Ci, nt},
                    u + (size_t)(k * w.Co * w.Ci) * es,
                    v + (size_t)(k * wino_kstride(w.Ci, nt)) * es,
                    m + (size_t)(k * wino_kstride(w.Co, nt)) * es);
        char *yi = yv + (size_t)(i0 * ys) * es;
        int32_t *arg = pool ? (int32_t *)n->aux + i0 * ys : NULL;
        if (w.m == 4)
            wino4_output(n->g, &w, m, nb, yi, arg, bias, relu, work);
        else
            wino2_output(n->g, &w, m, nb, yi, arg, bias, relu, work);
    }
    if (kept) {
        keep_sign(keep, &w);
        keep[KEEP_VALID] = 1;
    }
}

/* conv_transpose (x = X, the input gradient; g = Y) as the adjoint of the
 * forward's F(4×4, 3×3) rather than a correlation of its own: per chunk,
 * Mg = A g Aᵀ (wino4_grad_input), 36 GEMMs dV_k = U_kᵀ Mg_k (Ci, T), then
 * dx = Σ_tiles B dV Bᵀ (wino4_adjoint_input). The output gradient's
 * transform is the weight gradient's (cheaper than wino4_input over its
 * Co channels), and the input-side one runs over the Ci channels of dx:
 * measured faster than the transposed correlation (docs/benchmarks.md).
 * Used where the forward geometry takes F(4×4) (transpose_by_adjoint). */
static bool transpose_by_adjoint(const conv_geom *q)
{
    const wino_geom w = wino_make(q, false);
    return w.m == 4;
}

/* The backward pass of a Winograd F(4×4) convolution y = conv(x, w) in one
 * node. bwd_conv builds dx = conv_transpose(g, w, y) and then
 * dw = conv_weight_grad(x, g, dx): dx's forward, per chunk, transforms g
 * once (A g Aᵀ, still in cache) for both products, its own (U_kᵀ Mg_k) and
 * the weight gradient's (Mg_k V_kᵀ, V the forward's kept transform of x,
 * kept_chunks), and keeps dw in its aux; dw's forward copies it. dx's
 * op_data says whether dw is there and for which geometry (set when the
 * kept V was there, cleared otherwise), so dw computes itself otherwise
 * (the first pass, which built them; a batch that grew). dw's operand dx
 * makes every replay run dx first. */
static bool fuses_weight_grad(const ad_node *dx)
{
    return dx->op == AD_OP_CONV_TRANSPOSE && dx->ninputs == 3 && dx->op_data;
}

static void wino_adjoint_run(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                             const ad_node *Y)
{
    const wino_geom w = wino_make(q, false);
    const size_t es = n->g->elem;
    const ad_dtype dt = n->g->dtype;
    const int64_t chunk = wino_chunk(&w, es), tiles = wino_tiles(&w), nk = w.nk;
    const wino_bufs sb = wino_layout(n->g, &w);
    char *u = sb.u, *v = sb.v, *m = sb.m, *work = sb.work, *gbuf = sb.gbuf;
    /* the weight gradient too, from the forward's kept V (fuses_weight_grad) */
    int64_t *fused = n->ninputs == 3 ? n->op_data : NULL;
    const char *kept = fused && n->aux ? kept_chunks(n->inputs[2], &w, es) : NULL;
    const size_t kept_step = (size_t)kept_chunk_elems(&w, es) * es;
    char *du = sb.gbuf + (size_t)(56 * chunk * tiles) * es; /* conv_scratch's room */
    if (fused)
        fused[KEEP_VALID] = 0;
    wino_weights(n->g, 4, K->value, u, q->O, q->C, false);
    for (int64_t i0 = 0; i0 < w.N; i0 += chunk) {
        const int64_t nb = chunk < w.N - i0 ? chunk : w.N - i0, nt = nb * tiles;
        char *xi = (char *)X->value + (size_t)(i0 * w.Ci * w.H * w.W) * es;
        const char *gi = (const char *)Y->value + (size_t)(i0 * w.Co * w.OH * w.OW) * es;
        if (i0 == 0 || nb < chunk) /* its rows' places follow nb */
            memset(gbuf, 0, (size_t)(16 * nb * tiles) * es);
        wino4_grad_input(n->g, &w, gi, nb, m, gbuf);
        for (int64_t k = 0; kept && k < nk; k++) /* as wino_weight_grad */
            ad_gemm(dt, false, true, i0 > 0, (ad_mm_dims){w.Co, nt, w.Ci},
                    m + (size_t)(k * wino_kstride(w.Co, nt)) * es,
                    kept + (size_t)(i0 / chunk) * kept_step +
                        (size_t)(k * wino_kstride(w.Ci, nt)) * es,
                    du + (size_t)(k * w.Co * w.Ci) * es);
        for (int64_t k = 0; k < nk; k++)
            ad_gemm(dt, true, false, false, (ad_mm_dims){w.Ci, w.Co, nt},
                    u + (size_t)(k * w.Co * w.Ci) * es,
                    m + (size_t)(k * wino_kstride(w.Co, nt)) * es,
                    v + (size_t)(k * wino_kstride(w.Ci, nt)) * es);
        wino4_adjoint_input(n->g, &w, v, nb, xi, work);
    }
    if (kept && w.N > 0) {
        wino_weights_adjoint(n->g, 4, du, n->aux, w.Co, w.Ci);
        keep_sign(fused, &w);
        fused[KEEP_VALID] = 1;
    }
}

/* conv_weight_grad by Winograd: x = X (N, C, H, W), g = Y (N, O, OH, OW),
 * the weights' gradient into K (O, C, 3, 3) */
static void wino_weight_grad(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                             const ad_node *Y)
{
    const wino_geom w = wino_make(q, false);
    const size_t es = n->g->elem;
    const ad_dtype dt = n->g->dtype;
    const int64_t chunk = wino_chunk(&w, es), tiles = wino_tiles(&w), nk = w.nk;
    if (w.N == 0)
        return; /* conv_run zeroed K */
    const ad_node *lender = n->ninputs == 3 ? n->inputs[2] : NULL;
    if (lender && fuses_weight_grad(lender)) { /* conv_weight_grad(x, g, dx) */
        int64_t want[KEEP_WORDS] = {0};
        keep_sign(want, &w);
        if (lender->op_data[KEEP_VALID] &&
            memcmp(lender->op_data + 1, want + 1, sizeof(int64_t) * (KEEP_WORDS - 1)) == 0) {
            memcpy(K->value, lender->aux, (size_t)K->numel * es); /* dx's forward made it */
            return;
        }
    }
    if (lender && lender->op == AD_OP_CONV_TRANSPOSE)
        lender = lender->inputs[2]; /* y, through dx */
    const wino_bufs sb = wino_layout(n->g, &w);
    char *du = sb.u, *v = sb.v, *m = sb.m, *work = sb.work, *gbuf = sb.gbuf;
    /* the forward's V of x, when it kept it (conv_weight_grad(x, g, y)) */
    const char *kept = lender ? kept_chunks(lender, &w, es) : NULL;
    const size_t kept_step = (size_t)kept_chunk_elems(&w, es) * es;
    for (int64_t i0 = 0; i0 < w.N; i0 += chunk) {
        const int64_t nb = chunk < w.N - i0 ? chunk : w.N - i0, nt = nb * tiles;
        const char *xi = (const char *)X->value + (size_t)(i0 * w.Ci * w.H * w.W) * es;
        const char *gi = (const char *)Y->value + (size_t)(i0 * w.Co * w.OH * w.OW) * es;
        if (i0 == 0 || (w.m == 4 && nb < chunk)) /* F(4×4): its rows' places follow nb */
            memset(gbuf, 0, (size_t)(w.m * w.m * (w.m == 4 ? nb : 1) * tiles) * es);
        if (kept)
            v = (char *)kept + (size_t)(i0 / chunk) * kept_step;
        else if (w.m == 4)
            wino4_input(n->g, &w, xi, nb, v, work);
        else
            wino2_input(n->g, &w, xi, nb, v, work);
        if (w.m == 4)
            wino4_grad_input(n->g, &w, gi, nb, m, gbuf);
        else
            wino2_grad_input(n->g, &w, gi, nb, m, gbuf);
        for (int64_t k = 0; k < nk; k++)
            ad_gemm(dt, false, true, i0 > 0, (ad_mm_dims){w.Co, nt, w.Ci},
                    m + (size_t)(k * wino_kstride(w.Co, nt)) * es,
                    v + (size_t)(k * wino_kstride(w.Ci, nt)) * es,
                    du + (size_t)(k * w.Co * w.Ci) * es);
    }
    wino_weights_adjoint(n->g, w.m, du, K->value, w.Co, w.Ci);
}

/* scratch for a chunk: the column matrix (none for a pointwise
 * convolution), and when nb > 1 or the output is pooled the output matrix
 * after it */
static bool conv_scratch(ad_node *n, const conv_geom *q)
{
    if (use_winograd(n, q)) {
        const bool adjoint = n->op == AD_OP_CONV_TRANSPOSE && transpose_by_adjoint(q);
        const wino_geom w = wino_make(q, n->op == AD_OP_CONV_TRANSPOSE && !adjoint);
        const size_t du = adjoint && n->ninputs == 3 ? (size_t)(w.nk * w.Co * w.Ci) : 0;
        return ad_scratch(n->g, (wino_scratch_elems(&w, n->g->elem) + du) * n->g->elem);
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

bool shape_conv(ad_node *n)
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
    if (use_winograd(n, &q) && !keep_header(n)) /* where a weight gradient may keep V */
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
    if (!keeps_transform(y) || y->inputs[1] != w || !ad_same_shape(y->inputs[0], n) ||
        !same_params(y, n)) {
        ad_fail(n->g,
                "%s: operand 3 must be the convolution by operand 2 %s of an input of shape %s "
                "with the same parameters, got %s node %s",
                nm, ad_shape_str(w, b1, sizeof b1), ad_shape_str(n, b2, sizeof b2),
                ad_ops[y->op].name, ad_shape_str(y, b3, sizeof b3));
        return false;
    }
    if (!use_winograd(n, q) || !transpose_by_adjoint(q))
        return true; /* nothing fused */
    if (!keep_header(n))
        return false;
    return !n->op_data || ad_node_aux(n, (size_t)ad_numel(w) * n->g->elem);
}

bool shape_conv_transpose(ad_node *n)
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
    int64_t H = n->iparam[7], W = n->iparam[8];
    if (H < 1 || W < 1 || (g->ndim == 3 && H != 1) || w->shape[0] != g->shape[1]) {
        ad_fail(n->g, "%s: gradient %s, weight %s and output size %lldx%lld do not fit", nm,
                ad_shape_str(g, b1, sizeof b1), ad_shape_str(w, b2, sizeof b2), (long long)H,
                (long long)W);
        return false;
    }
    if (w->shape[1] > AD_NUMEL_MAX / n->iparam[6]) {
        ad_fail(n->g, "%s: weight %s with %lld groups: too many input channels", nm,
                ad_shape_str(w, b2, sizeof b2), (long long)n->iparam[6]);
        return false;
    }
    if (!set_spatial_shape(n, g->ndim, g->shape[0], w->shape[1] * n->iparam[6], H, W, nm))
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
    else if (!keeps_transform(y) || y->inputs[0] != x || !ad_same_shape(y->inputs[1], n) ||
             !same_params(y, n)) {
        ad_fail(n->g,
                "%s: operand 3 must be the convolution of operand 1 %s with the same parameters "
                "and a weight of shape %s, or its input gradient of operand 2, got %s node %s",
                nm, ad_shape_str(x, b1, sizeof b1), ad_shape_str(n, b2, sizeof b2),
                ad_ops[y->op].name, ad_shape_str(y, b3, sizeof b3));
        return false;
    }
    if (!y->op_data || !use_winograd(n, q))
        return true; /* nothing kept: conv_run transforms x itself */
    const wino_geom w = wino_make(q, false);
    const size_t need = kept_end(y, &w, n->g->elem);
    if (y->aux && y->aux_bytes >= need)
        return true;
    y->op_data[KEEP_VALID] = 0; /* not written there yet */
    return ad_node_aux(y, need);
}

bool shape_conv_weight_grad(ad_node *n)
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
    int64_t KH = n->iparam[7], KW = n->iparam[8], G = n->iparam[6];
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
 * relu(t + bv[o]) and its 2×2 max pool, the argmax (the place in the
 * (OH, OW) plane, as max_pool records it) in arg at y's places */
static void conv_pool_epilogue(ad_graph *g, const void *tv, void *yv, int32_t *arg, const void *bv,
                               int64_t Og, const conv_geom *q, int64_t nb, int64_t ys)
{
    const int64_t OW = q->OW, P = q->OH * OW, PH = q->OH / 2, PW = OW / 2;
    const int32_t W32 = (int32_t)OW;
    AD_DISPATCH(g, {
        for (int64_t o = 0; o < Og; o++) {
            const T v = ((const T *)bv)[o];
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
    char *xv = X->value, *kv = K->value, *yv = Y->value;
    const char *bias = n->ninputs == 3 ? (const char *)n->inputs[2]->value : NULL;
    if (n->op == AD_OP_CONV_WEIGHT_GRAD && q.N == 0)
        memset(kv, 0, (size_t)n->numel * es);
    if (use_winograd(n, &q)) {
        if (n->op == AD_OP_CONV_WEIGHT_GRAD)
            wino_weight_grad(n, &q, X, K, Y);
        else if (n->op == AD_OP_CONV_TRANSPOSE && transpose_by_adjoint(&q))
            wino_adjoint_run(n, &q, X, K, Y);
        else
            wino_run(n, &q, X, K, Y, n->op == AD_OP_CONV_TRANSPOSE);
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
                ad_gemm(dt, false, false, false, (ad_mm_dims){Og, Kc, ld}, kb, col, t);
                if (pool)
                    conv_pool_epilogue(n->g, t, yb, (int32_t *)n->aux + (i0 * ys + gi * Og * PP),
                                       bias + (size_t)(gi * Og) * es, Og, &q, nb, ys);
                else if (nb > 1 || bias)
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

void fwd_conv(ad_node *n) { conv_run(n, n->inputs[0], n->inputs[1], n); }
void fwd_conv_transpose(ad_node *n) { conv_run(n, n, n->inputs[1], n->inputs[0]); }
void fwd_conv_weight_grad(ad_node *n) { conv_run(n, n->inputs[0], n, n->inputs[1]); }

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

void bwd_conv(ad_node *n, ad_node *g, ad_node **d)
{
    ad_node *x = n->inputs[0], *w = n->inputs[1];
    int64_t h, wd;
    if (n->op == AD_OP_CONV_BIAS_RELU) /* y > 0 exactly where the sum is: the mask from y */
        g = ad_relu_grad(g, n);
    if (n->op == AD_OP_CONV_BIAS_RELU_POOL) /* the same mask, at each window's argmax */
        g = pool_op(AD_OP_MAX_POOL_SCATTER, ad_relu_grad(g, n), n, NULL, 0, 0);
    if (n->ninputs == 3 && (n->inputs[2]->flags & NODE_REQGRAD)) {
        /* Σ over the batch, then over the positions of (O, P): the long sum
           runs across the batch, where the kernel adds whole rows (vectors),
           and only O·P values are left for the sums along an axis */
        int64_t sh[2] = {0, -1}; /* (keep O, infer P) */
        d[2] = ad_sum(ad_reshape(ad_sum(g, 0), 2, sh), 1);
    }
    /* n: its forward may keep V (kept_chunks); both gradients of an F(4×4)
       convolution in dx's node (fuses_weight_grad) */
    const bool both = (x->flags & NODE_REQGRAD) && (w->flags & NODE_REQGRAD);
    conv_geom q = make_geom(n, x, w, x);
    const bool fuse = both && n->op_data && transpose_by_adjoint(&q);
    if (x->flags & NODE_REQGRAD) {
        spatial(x, &h, &wd);
        d[0] = conv_op3(AD_OP_CONV_TRANSPOSE, g, w, fuse ? n : NULL, n->iparam, h, wd);
    }
    if (w->flags & NODE_REQGRAD) {
        spatial(w, &h, &wd);
        d[1] = conv_op3(AD_OP_CONV_WEIGHT_GRAD, x, g,
                        fuse         ? d[0]
                        : n->op_data ? n
                                     : NULL,
                        n->iparam, h, wd);
    }
}

void bwd_conv_transpose(ad_node *n, ad_node *u, ad_node **d)
{
    ad_node *g = n->inputs[0], *w = n->inputs[1];
    if (g->flags & NODE_REQGRAD)
        d[0] = conv_op(AD_OP_CONV, u, w, n->iparam, 0, 0);
    if (w->flags & NODE_REQGRAD) {
        int64_t h, wd;
        spatial(w, &h, &wd);
        d[1] = conv_op(AD_OP_CONV_WEIGHT_GRAD, u, g, n->iparam, h, wd);
    }
}

void bwd_conv_weight_grad(ad_node *n, ad_node *u, ad_node **d)
{
    ad_node *x = n->inputs[0], *g = n->inputs[1];
    if (x->flags & NODE_REQGRAD) {
        int64_t h, wd;
        spatial(x, &h, &wd);
        d[0] = conv_op(AD_OP_CONV_TRANSPOSE, g, u, n->iparam, h, wd);
    }
    if (g->flags & NODE_REQGRAD)
        d[1] = conv_op(AD_OP_CONV, x, u, n->iparam, 0, 0);
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
    const int64_t *p = n->iparam;
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

bool shape_pool(ad_node *n)
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
    const int64_t *p = n->iparam;
    int64_t OH = out_size(H, p[4], p[0], p[2], 1), OW = out_size(W, p[5], p[1], p[3], 1);
    if (!set_spatial_shape(n, x->ndim, x->shape[0], x->shape[1], OH, OW, nm))
        return false;
    if (n->op == AD_OP_MAX_POOL) /* the argmax: one int32 per output element */
        return ad_node_aux(n, (size_t)n->numel * sizeof(int32_t));
    return true;
}

bool shape_avg_pool_transpose(ad_node *n)
{
    const ad_node *g = n->inputs[0];
    const char *nm = "ad_avg_pool_transpose";
    char b1[96];
    ad_shape_str(g, b1, sizeof b1);
    int64_t H = n->iparam[6], W = n->iparam[7];
    if ((g->ndim != 3 && g->ndim != 4) || H < 1 || W < 1 || (g->ndim == 3 && H != 1)) {
        ad_fail(n->g, "%s: gradient %s and input size %lldx%lld do not fit", nm, b1, (long long)H,
                (long long)W);
        return false;
    }
    if (!pool_check(n, g->ndim, H, W, b1, nm))
        return false;
    const int64_t *p = n->iparam;
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
bool shape_pool_index(ad_node *n)
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

void fwd_max_pool(ad_node *n)
{
    const ad_node *x = n->inputs[0];
    conv_geom q = make_geom(n, x, NULL, n);
    int32_t *arg = n->aux;
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

void fwd_max_pool_scatter(ad_node *n)
{
    const ad_node *g = n->inputs[0], *y = n->inputs[1];
    conv_geom q = pool_index_geom(y, n);
    const int32_t *arg = y->aux;
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

void fwd_max_pool_gather(ad_node *n)
{
    const ad_node *h = n->inputs[0], *y = n->inputs[1];
    conv_geom q = pool_index_geom(y, h);
    const int32_t *arg = y->aux;
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

void fwd_avg_pool(ad_node *n)
{
    conv_geom q = make_geom(n, n->inputs[0], NULL, n);
    avg_pool_kernel(n->g, &q, n->inputs[0]->value, n->value, false);
}

void fwd_avg_pool_transpose(ad_node *n)
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

void bwd_max_pool(ad_node *n, ad_node *g, ad_node **d)
{
    d[0] = pool_op(AD_OP_MAX_POOL_SCATTER, g, n, NULL, 0, 0);
}

void bwd_max_pool_scatter(ad_node *n, ad_node *u, ad_node **d)
{
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = pool_op(AD_OP_MAX_POOL_GATHER, u, n->inputs[1], NULL, 0, 0);
}

void bwd_max_pool_gather(ad_node *n, ad_node *u, ad_node **d)
{
    if (n->inputs[0]->flags & NODE_REQGRAD)
        d[0] = pool_op(AD_OP_MAX_POOL_SCATTER, u, n->inputs[1], NULL, 0, 0);
}

void bwd_avg_pool(ad_node *n, ad_node *g, ad_node **d)
{
    int64_t h, w;
    spatial(n->inputs[0], &h, &w);
    d[0] = pool_op(AD_OP_AVG_POOL_TRANSPOSE, g, NULL, n->iparam, h, w);
}

void bwd_avg_pool_transpose(ad_node *n, ad_node *u, ad_node **d)
{
    d[0] = pool_op(AD_OP_AVG_POOL, u, NULL, n->iparam, 0, 0);
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
