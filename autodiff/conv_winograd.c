/* conv_winograd.c -- the Winograd kernels of the convolution ops
 * (ops_conv.c): the F(2×2, 3×3) and F(4×4, 3×3) geometry and chunking, the
 * weight, input, output and output-gradient transforms, the forward's kept
 * transform of x that the weight gradient reads, and the runs conv_run calls
 * (ad_wino_run, ad_wino_adjoint_run with the fused weight gradient,
 * ad_wino_weight_grad). Moved out of ops_conv.c unchanged; what both files share
 * is in conv_impl.h. */
#include <string.h>

#include "conv_impl.h"

/* the loop after it carries no dependence through memory (GCC does not
 * prove it for the Winograd transforms' several output arrays) */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_ALIAS_LOOP _Pragma("GCC ivdep")
#else
#define NO_ALIAS_LOOP
#endif

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
 * (ad_wino_adjoint_run). */

/* Winograd pays where both channel counts are wide enough for the GEMMs
 * (the CNN's 32 → 64 layer) and not for a first layer of one channel,
 * whose GEMM has 9 rows; q is the forward geometry (conv_transpose: the
 * convolution it is the adjoint of), padding up to 2 so that the
 * transpose's 2 − p is not negative */
#define WINO_MIN_CHANNELS 8

bool ad_wino_use(const ad_node *n, const conv_geom *q)
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

wino_geom ad_wino_make(const conv_geom *q, bool transpose)
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

/* The products' matrices, U_k (Co + 1, Ci) (the adjoint's U_kᵀ: (Ci,
 * Co + 1), wino_weights), V_k (Ci, T), M_k (Co + 1, T) and dU_k like
 * U_k, each dense and the nk of each side by side: one dense
 * batch each, which oneDNN's batched matmul computes in one call
 * (ad_gemm_batched; a gap between the matrices and it falls back to a loop
 * of its sgemm). U_k's last row is 0 (wino_weights), so is M_k's when it
 * is the output gradient's (wino_zero_pad_rows), and that row of M_k or
 * dU_k is never read: the row over is there so that the M_k, which the
 * transforms read or write side by side, do not start at multiples of
 * 4 KiB from each other (Co·T a multiple of 1024, as 64 channels and 16
 * tiles an image: measured, 4 KiB aliasing made the step 8 % slower at
 * 14×14, 32 -> 64 channels, chunks of 4; V_k's 8 KiB apart cost 1-2 %,
 * docs/benchmarks.md). */
static int64_t wino_vstride(const wino_geom *w, int64_t nt) { return w->Ci * nt; }

static int64_t wino_mstride(const wino_geom *w, int64_t nt) { return (w->Co + 1) * nt; }

static int64_t wino_ustride(const wino_geom *w) { return (w->Co + 1) * w->Ci; }

/* the scratch: U (nk, Co + 1, Ci), V (nk, Ci, T), M (nk, Co + 1, T), then
 * the transforms' work space */
size_t ad_wino_scratch_elems(const wino_geom *w, size_t elem)
{
    const int64_t nb = wino_chunk(w, elem), nt = nb * wino_tiles(w);
    return (size_t)(w->nk * (wino_ustride(w) + wino_vstride(w, nt) + wino_mstride(w, nt)) +
                    wino_work_elems(w, nb));
}

size_t ad_wino_u_elems(const wino_geom *w) { return (size_t)(w->nk * wino_ustride(w)); }

/* The scratch's parts for a whole chunk (ad_wino_scratch_elems' order), at
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
    b.v = b.u + ad_wino_u_elems(w) * es;
    b.m = b.v + (size_t)(w->nk * wino_vstride(w, nt)) * es;
    b.work = b.m + (size_t)(w->nk * wino_mstride(w, nt)) * es;
    b.gbuf = b.work + (size_t)wino_input_work(w, chunk) * es;
    return b;
}

/* The forward's transformed input, kept for the weight gradient. In a
 * training step the forward convolution y = conv(x, w) transforms x into V
 * and conv_weight_grad(x, g) would transform the same x again. ad_bwd_conv
 * builds conv_weight_grad(x, g, y) instead: y's forward writes every
 * chunk's V into y's aux (after the argmax of conv_bias_relu_pool) rather
 * than the scratch, and the weight gradient reads it there, as
 * max_pool_scatter(g, y) reads the argmax y's forward recorded (y is an
 * operand for that data only; no gradient flows to it). y->rare->op_data holds
 * whether V is there and the geometry it was written for: y's forward
 * clears it first and sets it when the last chunk is written (when aux has
 * room), and the weight gradient's shape rule clears it when it grows aux,
 * so the weight gradient transforms x itself whenever the kept V is not
 * from y's latest forward at its own geometry (the first pass, which built
 * it; a batch that grew). Replay, partial replay and ad_backward run y
 * before it (y is an operand), so V is of the x the step's forward saw;
 * like the ReLU mask and the argmax, a backward pass run after x changed
 * without a forward uses the forward that last ran. */
bool ad_wino_keeps_transform(const ad_node *y)
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
    const int64_t v = w->nk * wino_vstride(w, wino_chunk(w, elem) * wino_tiles(w));
    return (v + 15) & ~(int64_t)15;
}

/* bytes y's aux needs to keep the V of all chunks */
size_t ad_wino_kept_end(const ad_node *y, const wino_geom *w, size_t elem)
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
bool ad_wino_keep_header(ad_node *n)
{
    if (n->rare->op_data || n->id != n->g->nnodes)
        return true;
    if (!ad_node_rare_own(n))
        return false;
    n->rare->op_data = ad_arena_alloc(n->g, sizeof(int64_t) * KEEP_WORDS);
    if (n->rare->op_data)
        memset(n->rare->op_data, 0, sizeof(int64_t) * KEEP_WORDS);
    return n->rare->op_data != NULL;
}

/* the kept chunks of y when they hold V of geometry w, else NULL */
static char *kept_chunks(const ad_node *y, const wino_geom *w, size_t elem)
{
    const int64_t *k = y->rare->op_data;
    int64_t want[KEEP_WORDS] = {0};
    keep_sign(want, w);
    if (!k || !k[KEEP_VALID] || memcmp(k + 1, want + 1, sizeof(int64_t) * (KEEP_WORDS - 1)) != 0 ||
        !y->rare->aux || y->rare->aux_bytes < ad_wino_kept_end(y, w, elem))
        return NULL;
    return (char *)y->rare->aux + kept_offset(y);
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

/* The layouts of U_k (wino_weights): WINO_U_FORWARD, U_k[o][c] as
 * (O + 1, C) with a last row of zeros (wino_ustride); WINO_U_TRANSPOSE,
 * U_k[c][o] from w[o,c] rotated by 180° as (C + 1, O), the weights of a
 * transposed correlation (F(2×2)'s conv_transpose); WINO_U_ADJOINT, the
 * forward's U_k transposed, U_kᵀ[c][o] as (C, O + 1) with a last column of
 * zeros, so that the adjoint's products U_kᵀ Mg_k read their left operand
 * row by row (measured: 36 such products 53-55 µs against 61-63 µs through
 * a transposed U_k, conv2's shapes, docs/benchmarks.md) */
enum { WINO_U_FORWARD, WINO_U_TRANSPOSE, WINO_U_ADJOINT };

/* U_k = (G w[o,c] Gᵀ)_k for w (O, C, 3, 3), in layout `layout`. A row of
 * U_k (fixed o, or c) is made in blocks of WINO_WEIGHT_BLOCK kernels, each
 * step of the transform one loop over the block (vectorized), the last one
 * writing along the rows of U_k, U_k+1, ... (whole matrices apart) */
#define WINO_WEIGHT_BLOCK 64

static void wino_weights(ad_graph *g, int m, const void *wv, void *uv, int64_t O, int64_t C,
                         int layout)
{
    const bool by_c = layout != WINO_U_FORWARD, rotate = layout == WINO_U_TRANSPOSE;
    const int64_t R = by_c ? C : O, Q = by_c ? O : C; /* U_k's rows and columns in use */
    const int64_t Rp = R + (layout != WINO_U_ADJOINT), Qs = Q + (layout == WINO_U_ADJOINT);
    const int n = m + 2;
    enum { B = WINO_WEIGHT_BLOCK };
    AD_DISPATCH(g, {
        const T *wt = wv;
        T *u = uv, kk[9 * B], gk[18 * B]; /* rows of B */
        for (int k = 0; k < n * n; k++)   /* the zero row, or column */
            if (layout == WINO_U_ADJOINT)
                for (int64_t r = 0; r < R; r++)
                    u[(k * Rp + r) * Qs + Q] = 0;
            else
                memset(u + (k * Rp + R) * Qs, 0, sizeof(T) * (size_t)Q);
        for (int64_t r = 0; r < R; r++)
            for (int64_t q0 = 0; q0 < Q; q0 += B) {
                const int64_t nq = Q - q0 < B ? Q - q0 : B;
                for (int64_t j = 0; j < nq; j++) {
                    const int64_t o = by_c ? q0 + j : r, c = by_c ? r : q0 + j;
                    const T *f = wt + (o * C + c) * 9;
                    for (int e = 0; e < 9; e++) /* rotated: (2 − a, 2 − b) is 8 − e */
                        kk[e * B + j] = f[rotate ? 8 - e : e];
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
                    T *ua = u + (n * a * Rp + r) * Qs + q0;
                    if (m == 2) {
                        WINO_G_ROWS(2, g0, g1, g2, ua, Rp * Qs, nq);
                    } else {
                        WINO_G_ROWS(4, g0, g1, g2, ua, Rp * Qs, nq);
                    }
                }
            }
    });
}

/* dw[o][c] = Gᵀ dU[o][c] G (the adjoint of wino_weights) from dU (nk, O + 1,
 * C; the last row not read) into w (O, C, 3, 3), WINO_WEIGHT_BLOCK pairs
 * (o, c) at a time */
static void wino_weights_adjoint(ad_graph *g, int m, const void *duv, void *wv, int64_t O,
                                 int64_t C)
{
    const int n = m + 2;
    const int64_t pairs = O * C, stride = (O + 1) * C;
    enum { B = WINO_WEIGHT_BLOCK };
    AD_DISPATCH(g, {
        const T *du = duv;
        T *wt = wv, a3[18 * B], f[9 * B]; /* rows of B */
        for (int64_t oc0 = 0; oc0 < pairs; oc0 += B) {
            const int64_t nq = pairs - oc0 < B ? pairs - oc0 : B;
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
    const int64_t rows = w->th + 1, plane = rows * Wp + 4, rs = rows * S, ks = wino_vstride(w, nt);
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

/* y = Aᵀ m A for the chunk's tiles from M (16, Co + 1, T), the valid part of
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
    const int64_t S = w->tw + 1, tiles = wino_tiles(w), nt = nb * tiles, ks = wino_mstride(w, nt);
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
    const int64_t S = w->tw + 1, tiles = wino_tiles(w), nt = nb * tiles, ks = wino_mstride(w, nt);
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
    const int64_t fs = th * Wf, ks = wino_vstride(w, nt), W = w->W, os = nb * th * 2;
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
    const int64_t fs = th * Wf, ks = wino_vstride(w, nt), W = w->W, os = nb * th * 2;
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

/* wino2_output for F(4×4, 3×3): y = Aᵀ m A from M (36, Co + 1, T). Per output
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
    const int64_t tiles = wino_tiles(w), nt = nb * tiles, ks = wino_mstride(w, nt);
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
    const int64_t tiles = wino_tiles(w), nt = nb * tiles, ks = wino_mstride(w, nt);
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

/* M_k's last row, read by the input gradient's product U_kᵀ M_k (times
 * U_kᵀ's zero column), set to 0: the scratch may hold anything there (an infinity
 * times 0 would be NaN) */
static void wino_zero_pad_rows(ad_graph *g, const wino_geom *w, int64_t nt, char *m)
{
    const size_t es = g->elem;
    for (int64_t k = 0; k < w->nk; k++)
        memset(m + (size_t)(k * wino_mstride(w, nt) + w->Co * nt) * es, 0, (size_t)nt * es);
}

/* conv (transpose = false: x = X, y = Y with the bias and ReLU of the op)
 * or conv_transpose (x = Y, the output gradient; y = X) by Winograd */
void ad_wino_run(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                 const ad_node *Y, bool transpose)
{
    const wino_geom w = ad_wino_make(q, transpose);
    const size_t es = n->g->elem;
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
    int64_t *keep = transpose ? NULL : n->rare->op_data;
    char *kept = keep && n->rare->aux && n->rare->aux_bytes >= ad_wino_kept_end(n, &w, es)
                     ? (char *)n->rare->aux + kept_offset(n)
                     : NULL;
    const size_t kept_step = kept ? (size_t)kept_chunk_elems(&w, es) * es : 0;
    if (keep)
        keep[KEEP_VALID] = 0;
    wino_weights(n->g, w.m, K->value, u, q->O, q->C, transpose ? WINO_U_TRANSPOSE : WINO_U_FORWARD);
    for (int64_t i0 = 0; i0 < w.N; i0 += chunk) {
        const int64_t nb = chunk < w.N - i0 ? chunk : w.N - i0, nt = nb * tiles;
        const char *xi = xv + (size_t)(i0 * w.Ci * w.H * w.W) * es;
        if (kept)
            v = kept + (size_t)(i0 / chunk) * kept_step;
        if (w.m == 4)
            wino4_input(n->g, &w, xi, nb, v, work);
        else
            wino2_input(n->g, &w, xi, nb, v, work);
        ad_gemm_batched(n->g, false, false, false, (ad_mm_dims){w.Co + 1, w.Ci, nt}, nk, u, v, m);
        char *yi = yv + (size_t)(i0 * ys) * es;
        int32_t *arg = pool ? (int32_t *)n->rare->aux + i0 * ys : NULL;
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
 * Used where the forward geometry takes F(4×4) (ad_wino_transpose_by_adjoint). */
bool ad_wino_transpose_by_adjoint(const conv_geom *q)
{
    const wino_geom w = ad_wino_make(q, false);
    return w.m == 4;
}

/* The weight gradient's products of one chunk of nt tiles: dU_k (+)= M_k
 * V_kᵀ for each of the nk tile positions (m: the transformed output
 * gradient, v: the transformed input; acc: add to the chunks before). */
static void wino_dw_products(ad_graph *g, const wino_geom *w, int64_t nt, const char *m,
                             const char *v, char *du, bool acc)
{
    ad_gemm_batched(g, false, true, acc, (ad_mm_dims){w->Co + 1, nt, w->Ci}, w->nk, m, v, du);
}

/* The backward pass of a Winograd F(4×4) convolution y = conv(x, w) in one
 * node. ad_bwd_conv builds dx = conv_transpose(g, w, y) and then
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
    return dx->op == AD_OP_CONV_TRANSPOSE && dx->ninputs == 3 && dx->rare->op_data;
}

void ad_wino_adjoint_run(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                         const ad_node *Y)
{
    const wino_geom w = ad_wino_make(q, false);
    const size_t es = n->g->elem;
    const int64_t chunk = wino_chunk(&w, es), tiles = wino_tiles(&w), nk = w.nk;
    const wino_bufs sb = wino_layout(n->g, &w);
    char *u = sb.u, *v = sb.v, *m = sb.m, *work = sb.work, *gbuf = sb.gbuf;
    /* the weight gradient too, from the forward's kept V (fuses_weight_grad) */
    int64_t *fused = n->ninputs == 3 ? n->rare->op_data : NULL;
    const char *kept = fused && n->rare->aux ? kept_chunks(n->inputs[2], &w, es) : NULL;
    const size_t kept_step = (size_t)kept_chunk_elems(&w, es) * es;
    char *du = sb.gbuf + (size_t)(56 * chunk * tiles) * es; /* conv_scratch's room */
    if (fused)
        fused[KEEP_VALID] = 0;
    wino_weights(n->g, 4, K->value, u, q->O, q->C, WINO_U_ADJOINT);
    for (int64_t i0 = 0; i0 < w.N; i0 += chunk) {
        const int64_t nb = chunk < w.N - i0 ? chunk : w.N - i0, nt = nb * tiles;
        char *xi = (char *)X->value + (size_t)(i0 * w.Ci * w.H * w.W) * es;
        const char *gi = (const char *)Y->value + (size_t)(i0 * w.Co * w.OH * w.OW) * es;
        if (i0 == 0 || nb < chunk) /* its rows' places follow nb */
            memset(gbuf, 0, (size_t)(16 * nb * tiles) * es);
        wino4_grad_input(n->g, &w, gi, nb, m, gbuf);
        wino_zero_pad_rows(n->g, &w, nt, m);
        if (kept)
            wino_dw_products(n->g, &w, nt, m, kept + (size_t)(i0 / chunk) * kept_step, du, i0 > 0);
        ad_gemm_batched(n->g, false, false, false, (ad_mm_dims){w.Ci, w.Co + 1, nt}, nk, u, m, v);
        wino4_adjoint_input(n->g, &w, v, nb, xi, work);
    }
    if (kept && w.N > 0) {
        wino_weights_adjoint(n->g, 4, du, n->rare->aux, w.Co, w.Ci);
        keep_sign(fused, &w);
        fused[KEEP_VALID] = 1;
    }
}

/* conv_weight_grad by Winograd: x = X (N, C, H, W), g = Y (N, O, OH, OW),
 * the weights' gradient into K (O, C, 3, 3) */
void ad_wino_weight_grad(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                         const ad_node *Y)
{
    const wino_geom w = ad_wino_make(q, false);
    const size_t es = n->g->elem;
    const int64_t chunk = wino_chunk(&w, es), tiles = wino_tiles(&w);
    if (w.N == 0)
        return; /* conv_run zeroed K */
    const ad_node *lender = n->ninputs == 3 ? n->inputs[2] : NULL;
    if (lender && fuses_weight_grad(lender)) { /* conv_weight_grad(x, g, dx) */
        int64_t want[KEEP_WORDS] = {0};
        keep_sign(want, &w);
        if (lender->rare->op_data[KEEP_VALID] &&
            memcmp(lender->rare->op_data + 1, want + 1, sizeof(int64_t) * (KEEP_WORDS - 1)) == 0) {
            memcpy(K->value, lender->rare->aux, (size_t)K->numel * es); /* dx's forward made it */
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
        wino_dw_products(n->g, &w, nt, m, v, du, i0 > 0);
    }
    wino_weights_adjoint(n->g, w.m, du, K->value, w.Co, w.Ci);
}
