/* Gradient check of every op in the registry (not a hand-kept list): random
 * shapes of rank 0 to 4 with random broadcasting, f64 central differences for
 * the first derivative and for the derivative of the gradient (second order),
 * and the f32 engine against the f64 one. An op without a generator here
 * fails the test, so a new op cannot skip its check. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "graph_impl.h"

#define TRIALS 6
#define MAXIN 4

typedef struct {
    uint64_t s;
} rng_t;

static double urand(rng_t *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(r->s >> 11) * 0x1.0p-53;
}
static int irand(rng_t *r, int lo, int hi) { return lo + (int)(urand(r) * (hi - lo + 1)); }

/* One generated case: input shapes/values, op parameters. */
typedef struct {
    int nin;
    int ndim[MAXIN];
    int64_t shape[MAXIN][AD_MAX_DIMS];
    double values[MAXIN][256];
    bool trainable[MAXIN];
    double fp[2];
    int64_t ip[AD_MAX_IPARAMS];
    int nf, ni;
    bool fd_ok;  /* the op's value is a deterministic smooth function here */
    bool second; /* check second order too */
} gencase;

static int64_t numel_of(int nd, const int64_t *sh)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++)
        n *= sh[d];
    return n;
}

static void random_shape(rng_t *r, int minrank, int maxrank, int *nd, int64_t *sh)
{
    *nd = irand(r, minrank, maxrank);
    for (int d = 0; d < *nd; d++)
        sh[d] = irand(r, 1, 3);
}

/* a shape that broadcasts to (nd, sh): drop leading axes, set some to 1 */
static void broadcastable(rng_t *r, int nd, const int64_t *sh, int *ond, int64_t *osh)
{
    int drop = irand(r, 0, nd);
    if (urand(r) < 0.5)
        drop = 0;
    *ond = nd - drop;
    for (int d = 0; d < *ond; d++)
        osh[d] = urand(r) < 0.3 ? 1 : sh[d + drop];
}

/* values in [lo, hi] kept at least gap away from each kink */
static void fill(rng_t *r, gencase *c, int k, double lo, double hi, const double *kinks, int nk,
                 double gap)
{
    int64_t n = numel_of(c->ndim[k], c->shape[k]);
    cr_assert(n <= 256);
    for (int64_t i = 0; i < n; i++) {
        double v;
        bool ok;
        do {
            v = lo + (hi - lo) * urand(r);
            ok = true;
            for (int j = 0; j < nk; j++)
                if (fabs(v - kinks[j]) < gap)
                    ok = false;
        } while (!ok);
        c->values[k][i] = v;
    }
}

/* distinct values (no ties for max/min), well separated */
static void fill_distinct(rng_t *r, gencase *c, int k)
{
    int64_t n = numel_of(c->ndim[k], c->shape[k]);
    for (int64_t i = 0; i < n; i++)
        c->values[k][i] = (double)i * 0.37 - 1.0;
    for (int64_t i = n - 1; i > 0; i--) { /* shuffle */
        int64_t j = (int64_t)(urand(r) * (double)(i + 1));
        double t = c->values[k][i];
        c->values[k][i] = c->values[k][j];
        c->values[k][j] = t;
    }
}

static const double zero_kink[] = {0.0};

/* a second, trainable input of the first one's shape */
static void second_like_first(gencase *c)
{
    c->nin = 2;
    c->trainable[1] = true;
    c->ndim[1] = c->ndim[0];
    memcpy(c->shape[1], c->shape[0], sizeof c->shape[0]);
}

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* (N, C, [H,] W) into shape k of c */
static void spatial_shape(gencase *c, int k, int one_d, int64_t a, int64_t b, int64_t h, int64_t w)
{
    c->ndim[k] = one_d ? 3 : 4;
    c->shape[k][0] = a;
    c->shape[k][1] = b;
    c->shape[k][2] = one_d ? w : h;
    c->shape[k][3] = w;
}

/* Convolution ops: a random geometry; successive calls cycle through 2-d
 * with stride 2, padding and groups 2; 2-d with dilation 2 and padding;
 * 1-d with anything. conv takes (x, w), conv_bias, conv_bias_relu and
 * conv_bias_relu_pool (x, w, b; the last 2-d only, with an output of 2×2 or
 * more), conv_transpose (g, w) and conv_weight_grad (x, g), g of the
 * output's shape. */
static void conv_case(int op, rng_t *r, gencase *c)
{
    static int calls;
    const bool pool = op == AD_OP_CONV_BIAS_RELU_POOL;
    int variant = calls++ % (pool ? 2 : 3), one_d = variant == 2;
    int64_t N, G, Cg, Og, sh, sw, ph, pw, dh, dw, KH, KW, H, W, OH, OW;
    do {
        N = irand(r, 1, 2);
        G = variant == 0 ? 2 : irand(r, 1, 2);
        Cg = irand(r, 1, 2);
        Og = irand(r, 1, 2);
        sh = one_d ? 1 : (variant == 0 ? 2 : irand(r, 1, 2));
        sw = variant == 0 ? 2 : irand(r, 1, 2);
        ph = one_d ? 0 : irand(r, variant < 2, 2);
        pw = irand(r, variant < 2, 2);
        dh = one_d ? 1 : (variant == 1 ? 2 : irand(r, 1, 2));
        dw = variant == 1 ? 2 : irand(r, 1, 2);
        KH = one_d ? 1 : irand(r, 1, 3);
        KW = irand(r, 1, 3);
        int64_t eh = dh * (KH - 1) + 1 - 2 * ph, ew = dw * (KW - 1) + 1 - 2 * pw;
        H = one_d ? 1 : (eh > 1 ? eh : 1) + irand(r, 0, 2);
        W = (ew > 1 ? ew : 1) + irand(r, 0, 3);
        if (pool) { /* room for 2×2 windows */
            H += 2 * sh;
            W += 2 * sw;
        }
    } while (N * G * Cg * H * W > 256 || G * Og * G * Cg * KH * KW > 256);
    OH = conv_out(H, KH, sh, ph, dh);
    OW = conv_out(W, KW, sw, pw, dw);
    c->nin = 2;
    c->trainable[1] = true;
    int64_t ip[9] = {sh, sw, ph, pw, dh, dw, G, 0, 0};
    if (op == AD_OP_CONV || op == AD_OP_CONV_BIAS || op == AD_OP_CONV_BIAS_RELU || pool) {
        spatial_shape(c, 0, one_d, N, G * Cg, H, W);
        spatial_shape(c, 1, one_d, G * Og, Cg, KH, KW);
        if (op != AD_OP_CONV) { /* the bias (O), trainable */
            c->nin = 3;
            c->trainable[2] = true;
            c->ndim[2] = 1;
            c->shape[2][0] = G * Og;
            fill(r, c, 2, -1, 1, NULL, 0, 0);
        }
    } else if (op == AD_OP_CONV_TRANSPOSE) {
        spatial_shape(c, 0, one_d, N, G * Og, OH, OW);
        spatial_shape(c, 1, one_d, G * Og, Cg, KH, KW);
        ip[7] = H;
        ip[8] = W;
    } else {
        spatial_shape(c, 0, one_d, N, G * Cg, H, W);
        spatial_shape(c, 1, one_d, N, G * Og, OH, OW);
        ip[7] = KH;
        ip[8] = KW;
    }
    fill(r, c, 0, -2, 2, NULL, 0, 0);
    fill(r, c, 1, -2, 2, NULL, 0, 0);
    c->ni = 9;
    memcpy(c->ip, ip, sizeof ip);
}

/* Pooling ops: overlapping (stride < kernel) and padded windows, 1-d and
 * 2-d. Max pooling gets distinct values (a tie is a kink, tested apart);
 * max_pool_scatter (g) and max_pool_gather (h) take the pooled tensor as a
 * constant second input that build() wraps in max_pool. */
static void pool_case(int op, rng_t *r, gencase *c)
{
    int one_d = urand(r) < 0.3;
    int64_t kh = one_d ? 1 : irand(r, 1, 3), kw = irand(r, 1, 3);
    int64_t sh = one_d ? 1 : irand(r, 1, 3), sw = irand(r, 1, 3);
    int64_t ph = one_d ? 0 : irand(r, 0, (int)kh / 2), pw = irand(r, 0, (int)kw / 2);
    int64_t H = one_d ? 1 : (kh - 2 * ph > 1 ? kh - 2 * ph : 1) + irand(r, 0, 3);
    int64_t W = (kw - 2 * pw > 1 ? kw - 2 * pw : 1) + irand(r, 0, 4);
    int64_t N = irand(r, 1, 2), C = irand(r, 1, 2);
    int64_t OH = conv_out(H, kh, sh, ph, 1), OW = conv_out(W, kw, sw, pw, 1);
    int64_t ip[8] = {sh, sw, ph, pw, kh, kw, 0, 0};
    c->ni = 8;
    if (op == AD_OP_AVG_POOL_TRANSPOSE || op == AD_OP_MAX_POOL_SCATTER) {
        spatial_shape(c, 0, one_d, N, C, OH, OW);
        ip[6] = H;
        ip[7] = W;
    } else {
        spatial_shape(c, 0, one_d, N, C, H, W);
    }
    if (op == AD_OP_MAX_POOL)
        fill_distinct(r, c, 0);
    else
        fill(r, c, 0, -2, 2, NULL, 0, 0);
    if (op == AD_OP_MAX_POOL_SCATTER || op == AD_OP_MAX_POOL_GATHER) {
        c->nin = 2;
        spatial_shape(c, 1, one_d, N, C, H, W);
        fill_distinct(r, c, 1);
    }
    memcpy(c->ip, ip, sizeof ip);
}

/* Fills c for op; returns false when the op has no generator. */
static bool generate(int op, rng_t *r, gencase *c)
{
    memset(c, 0, sizeof *c);
    c->fd_ok = true;
    c->second = true;
    c->nin = 1;
    c->trainable[0] = true;
    const ad_op_info *info = &ad_ops[op];
    if (op == AD_OP_RELU_GRAD) { /* g·[a > 0]: g any values, a away from the kink */
        random_shape(r, 0, 3, &c->ndim[0], c->shape[0]);
        second_like_first(c);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        fill(r, c, 1, -2, 2, zero_kink, 1, 0.05);
        return true;
    }
    if (op == AD_OP_SOFTMAX_CE || op == AD_OP_SOFTMAX_CE_GRAD) {
        /* logits (rows, classes), labels (rows) constant class numbers, and
         * for the gradient op the upstream scalar */
        int64_t rows = irand(r, 1, 4), classes = irand(r, 2, 4);
        c->nin = op == AD_OP_SOFTMAX_CE ? 2 : 3;
        c->ndim[0] = 2;
        c->shape[0][0] = rows;
        c->shape[0][1] = classes;
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->ndim[1] = 1;
        c->shape[1][0] = rows;
        for (int64_t i = 0; i < rows; i++)
            c->values[1][i] = irand(r, 0, (int)classes - 1);
        if (op == AD_OP_SOFTMAX_CE_GRAD) {
            c->trainable[2] = true;
            c->ndim[2] = 0;
            c->values[2][0] = 0.5 + urand(r);
        }
        return true;
    }
    if (op == AD_OP_LINEAR || op == AD_OP_LINEAR_RELU) {
        /* x (n, k) or (b, n, k) @ w (k, m) + b (m) or (1, m) */
        int64_t rows = irand(r, 1, 4), k = irand(r, 1, 3), m = irand(r, 1, 3);
        c->nin = 3;
        c->trainable[1] = c->trainable[2] = true;
        c->ndim[0] = urand(r) < 0.4 ? 3 : 2;
        if (c->ndim[0] == 3)
            c->shape[0][0] = irand(r, 1, 3);
        c->shape[0][c->ndim[0] - 2] = rows;
        c->shape[0][c->ndim[0] - 1] = k;
        c->ndim[1] = 2;
        c->shape[1][0] = k;
        c->shape[1][1] = m;
        if (urand(r) < 0.5) {
            c->ndim[2] = 1;
            c->shape[2][0] = m;
        } else {
            c->ndim[2] = 2;
            c->shape[2][0] = 1;
            c->shape[2][1] = m;
        }
        for (int j = 0; j < 3; j++)
            fill(r, c, j, -2, 2, NULL, 0, 0);
        return true;
    }
    switch (info->kind) {
    case AD_KIND_UNARY:
        random_shape(r, 0, 4, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, zero_kink, 1, 0.05);
        c->nf = 2;
        switch (op) {
        case AD_OP_LOG:
        case AD_OP_SQRT:
            fill(r, c, 0, 0.5, 2.5, NULL, 0, 0);
            break;
        case AD_OP_POW: {
            static const double ps[] = {2, 3, -1.5, 0.5, 1, 2.5};
            c->fp[0] = ps[irand(r, 0, 5)];
            fill(r, c, 0, 0.5, 2.0, NULL, 0, 0);
            break;
        }
        case AD_OP_LEAKY_RELU:
            c->fp[0] = 0.1;
            break;
        case AD_OP_ELU:
            c->fp[0] = 1.3;
            break;
        case AD_OP_AFFINE:
            c->fp[0] = -1.7;
            c->fp[1] = 0.4;
            break;
        case AD_OP_CLAMP: {
            c->fp[0] = -0.5;
            c->fp[1] = 0.7;
            double k[] = {-0.5, 0.7};
            fill(r, c, 0, -2, 2, k, 2, 0.05);
            break;
        }
        case AD_OP_STEP:
            c->fp[0] = 1;
            break;
        case AD_OP_DETACH: /* the value follows x, by design no gradient does */
            c->fd_ok = false;
            break;
        default:
            break;
        }
        return true;
    case AD_KIND_BINARY: {
        int nd;
        int64_t sh[AD_MAX_DIMS] = {0};
        random_shape(r, 0, 4, &nd, sh);
        c->nin = 2;
        c->trainable[1] = true;
        broadcastable(r, nd, sh, &c->ndim[0], c->shape[0]);
        broadcastable(r, nd, sh, &c->ndim[1], c->shape[1]);
        if (urand(r) < 0.5) { /* one side full shape */
            c->ndim[0] = nd;
            memcpy(c->shape[0], sh, sizeof sh);
        }
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        fill(r, c, 1, -2, 2, zero_kink, 1, 0.5);
        if (op == AD_OP_ADD_N) { /* a third term */
            c->nin = 3;
            c->trainable[2] = true;
            broadcastable(r, nd, sh, &c->ndim[2], c->shape[2]);
            fill(r, c, 2, -2, 2, NULL, 0, 0);
        }
        if (op == AD_OP_MAXIMUM || op == AD_OP_MINIMUM || op == AD_OP_EQ || op == AD_OP_GT) {
            /* keep a - b away from 0: a in [-2,-1.2] u [1.2,2], b in [-1,1] */
            int64_t n0 = numel_of(c->ndim[0], c->shape[0]);
            for (int64_t i = 0; i < n0; i++)
                c->values[0][i] = (urand(r) < 0.5 ? -1 : 1) * (1.2 + 0.8 * urand(r));
            fill(r, c, 1, -1, 1, NULL, 0, 0);
        }
        if (op == AD_OP_POWER) { /* a positive base: ln a and a^b defined everywhere */
            fill(r, c, 0, 0.4, 2, NULL, 0, 0);
            fill(r, c, 1, -2, 2, NULL, 0, 0);
        }
        return true;
    }
    case AD_KIND_TERNARY: {
        int nd;
        int64_t sh[AD_MAX_DIMS] = {0};
        random_shape(r, 0, 3, &nd, sh);
        c->nin = 3;
        c->trainable[0] = false;
        c->trainable[1] = c->trainable[2] = true;
        for (int k = 0; k < 3; k++) {
            broadcastable(r, nd, sh, &c->ndim[k], c->shape[k]);
            fill(r, c, k, -2, 2, NULL, 0, 0);
        }
        int64_t n0 = numel_of(c->ndim[0], c->shape[0]);
        for (int64_t i = 0; i < n0; i++)
            c->values[0][i] = urand(r) < 0.5 ? 0.0 : 1.0;
        return true;
    }
    case AD_KIND_REDUCE:
    case AD_KIND_AXIS:
        random_shape(r, 1, 4, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        if (op == AD_OP_MAX || op == AD_OP_MIN)
            fill_distinct(r, c, 0);
        c->ni = 3;
        c->ip[0] = urand(r) < 0.25 ? AD_ALL : irand(r, -c->ndim[0], c->ndim[0] - 1);
        c->ip[2] = info->kind == AD_KIND_REDUCE && urand(r) < 0.5; /* keepdims */
        return true;
    case AD_KIND_MATMUL: {
        int64_t m = irand(r, 1, 3), k = irand(r, 1, 3), n = irand(r, 1, 3);
        int nb = irand(r, 0, 2);
        int64_t batch[2] = {irand(r, 1, 2), irand(r, 1, 3)};
        c->nin = 2;
        c->trainable[1] = true;
        c->ni = 2;
        c->ip[0] = irand(r, 0, 1);
        c->ip[1] = irand(r, 0, 1);
        for (int s = 0; s < 2; s++) {
            int keep = urand(r) < 0.3 ? 0 : nb;
            c->ndim[s] = keep + 2;
            for (int d = 0; d < keep; d++)
                c->shape[s][d] = urand(r) < 0.2 ? 1 : batch[d + nb - keep];
            int64_t rows = s == 0 ? m : k, cols = s == 0 ? k : n;
            bool t = c->ip[s] != 0;
            c->shape[s][keep] = t ? cols : rows;
            c->shape[s][keep + 1] = t ? rows : cols;
            fill(r, c, s, -2, 2, NULL, 0, 0);
        }
        return true;
    }
    case AD_KIND_SHAPE:
    case AD_KIND_INTERNAL:
    case AD_KIND_CONV:
        break;
    case AD_KIND_LEAF:
        return false;
    }
    /* shape ops and internal ops, one by one */
    switch (op) {
    case AD_OP_SOFTMAX_GRAD: /* y (any values: the rule is a polynomial) and g, along an axis or all
                              */
        random_shape(r, 1, 3, &c->ndim[0], c->shape[0]);
        second_like_first(c);
        fill(r, c, 0, -1, 1, NULL, 0, 0);
        fill(r, c, 1, -2, 2, NULL, 0, 0);
        c->ni = 1;
        c->ip[0] = irand(r, -1, c->ndim[0] - 1);
        return true;
    case AD_OP_LAYER_NORM:
    case AD_OP_LAYER_NORM_GRAD:
        /* rows of 2 to 4 values (the last axis), eps large and small; for
         * the gradient op an upstream g of the same shape */
        random_shape(r, 1, 3, &c->ndim[0], c->shape[0]);
        c->shape[0][c->ndim[0] - 1] = irand(r, 2, 4);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->nf = 1;
        c->fp[0] = urand(r) < 0.5 ? 1e-5 : 0.3;
        if (op == AD_OP_LAYER_NORM_GRAD) {
            second_like_first(c);
            fill(r, c, 1, -2, 2, NULL, 0, 0);
        }
        return true;
    case AD_OP_TRANSPOSE:
        random_shape(r, 2, 4, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        return true;
    case AD_OP_RESHAPE: {
        random_shape(r, 0, 4, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        int64_t n = numel_of(c->ndim[0], c->shape[0]);
        /* target (n) or (-1, 1) or (1, n, 1) */
        int pick = irand(r, 0, 2);
        c->ni = AD_MAX_DIMS + 1;
        if (pick == 0) {
            c->ip[0] = 1;
            c->ip[1] = n;
        } else if (pick == 1) {
            c->ip[0] = 2;
            c->ip[1] = -1;
            c->ip[2] = 1;
        } else {
            c->ip[0] = 3;
            c->ip[1] = 1;
            c->ip[2] = n;
            c->ip[3] = 1;
        }
        return true;
    }
    case AD_OP_SLICE: {
        random_shape(r, 1, 4, &c->ndim[0], c->shape[0]);
        c->shape[0][0] = 3;
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        int axis = irand(r, 0, c->ndim[0] - 1);
        int64_t len = c->shape[0][axis];
        int64_t s = irand(r, 0, (int)len - 1);
        c->ni = 3;
        c->ip[0] = axis;
        c->ip[1] = s;
        c->ip[2] = irand(r, (int)s, (int)len);
        return true;
    }
    case AD_OP_CONCAT: {
        random_shape(r, 1, 3, &c->ndim[0], c->shape[0]);
        int axis = irand(r, 0, c->ndim[0] - 1);
        c->nin = irand(r, 2, 3);
        for (int k = 0; k < c->nin; k++) {
            c->ndim[k] = c->ndim[0];
            memcpy(c->shape[k], c->shape[0], sizeof c->shape[0]);
            c->shape[k][axis] = irand(r, 1, 3);
            c->trainable[k] = true;
            fill(r, c, k, -2, 2, NULL, 0, 0);
        }
        c->ni = 1;
        c->ip[0] = axis;
        return true;
    }
    case AD_OP_BROADCAST_TO: {
        int nd;
        int64_t sh[AD_MAX_DIMS] = {0};
        random_shape(r, 0, 4, &nd, sh);
        broadcastable(r, nd, sh, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->ni = AD_MAX_DIMS + 1;
        c->ip[0] = nd;
        for (int d = 0; d < nd; d++)
            c->ip[1 + d] = sh[d];
        return true;
    }
    case AD_OP_PERMUTE: { /* a random permutation, some axes negative */
        random_shape(r, 0, 4, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        int nd = c->ndim[0];
        c->ni = nd;
        for (int d = 0; d < nd; d++)
            c->ip[d] = d;
        for (int d = nd - 1; d > 0; d--) {
            int j = irand(r, 0, d);
            int64_t t = c->ip[d];
            c->ip[d] = c->ip[j];
            c->ip[j] = t;
        }
        for (int d = 0; d < nd; d++)
            if (urand(r) < 0.3)
                c->ip[d] -= nd;
        return true;
    }
    case AD_OP_SQUEEZE:
    case AD_OP_UNSQUEEZE: {
        random_shape(r, op == AD_OP_SQUEEZE ? 1 : 0, 4, &c->ndim[0], c->shape[0]);
        int nd = c->ndim[0];
        if (op == AD_OP_SQUEEZE) {
            int axis = irand(r, 0, nd - 1);
            c->shape[0][axis] = 1;
            c->ip[0] = urand(r) < 0.5 ? axis : axis - nd;
        } else {
            c->ip[0] = irand(r, -nd - 1, nd);
        }
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->ni = 1;
        return true;
    }
    case AD_OP_CONV:
    case AD_OP_CONV_BIAS:
    case AD_OP_CONV_BIAS_RELU:
    case AD_OP_CONV_BIAS_RELU_POOL:
    case AD_OP_CONV_TRANSPOSE:
    case AD_OP_CONV_WEIGHT_GRAD:
        conv_case(op, r, c);
        return true;
    case AD_OP_MAX_POOL:
    case AD_OP_AVG_POOL:
    case AD_OP_AVG_POOL_TRANSPOSE:
    case AD_OP_MAX_POOL_SCATTER:
    case AD_OP_MAX_POOL_GATHER:
        pool_case(op, r, c);
        return true;
    case AD_OP_TAKE:
    case AD_OP_SCATTER_ADD: { /* table (rank 1-3), index (rank 0-2) with repeats and negatives */
        int tnd;
        int64_t tsh[AD_MAX_DIMS] = {0};
        random_shape(r, 1, 3, &tnd, tsh);
        int axis = irand(r, 0, tnd - 1);
        int64_t len = tsh[axis];
        int ind;
        int64_t ish[AD_MAX_DIMS] = {0};
        random_shape(r, 0, 2, &ind, ish);
        int t = op == AD_OP_TAKE ? 0 : 2, ix = 1;
        c->nin = op == AD_OP_TAKE ? 2 : 3;
        c->ndim[t] = tnd;
        memcpy(c->shape[t], tsh, sizeof tsh);
        c->ndim[ix] = ind;
        memcpy(c->shape[ix], ish, sizeof ish);
        int64_t m = numel_of(ind, ish);
        for (int64_t j = 0; j < m; j++) /* few distinct values: repeats are likely */
            c->values[ix][j] = irand(r, -(int)len, (int)len - 1);
        if (m > 1)
            c->values[ix][m - 1] = c->values[ix][0];
        fill(r, c, t, -2, 2, NULL, 0, 0);
        c->trainable[0] = true;
        c->trainable[1] = c->trainable[2] = false;
        if (op == AD_OP_SCATTER_ADD) { /* values shaped like take(table, index) */
            c->ndim[0] = 0;
            for (int d = 0; d < axis; d++)
                c->shape[0][c->ndim[0]++] = tsh[d];
            for (int d = 0; d < ind; d++)
                c->shape[0][c->ndim[0]++] = ish[d];
            for (int d = axis + 1; d < tnd; d++)
                c->shape[0][c->ndim[0]++] = tsh[d];
            fill(r, c, 0, -2, 2, NULL, 0, 0);
        }
        c->ni = 1;
        c->ip[0] = urand(r) < 0.5 ? axis : axis - tnd;
        return true;
    }
    case AD_OP_PAD:
        random_shape(r, 1, 4, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->ni = 3;
        c->ip[0] = irand(r, -c->ndim[0], c->ndim[0] - 1);
        c->ip[1] = irand(r, 0, 2);
        c->ip[2] = irand(r, 0, 2);
        c->nf = 1;
        c->fp[0] = urand(r) < 0.5 ? 0.0 : -1.5;
        return true;
    case AD_OP_SLICE_STEP: {
        random_shape(r, 1, 4, &c->ndim[0], c->shape[0]);
        int axis = irand(r, 0, c->ndim[0] - 1);
        c->shape[0][axis] = irand(r, 3, 7);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        int64_t len = c->shape[0][axis];
        c->ni = 4;
        c->ip[0] = urand(r) < 0.5 ? axis : axis - c->ndim[0];
        c->ip[1] = irand(r, 0, (int)len - 1);
        c->ip[2] = irand(r, (int)c->ip[1], (int)len);
        c->ip[3] = irand(r, 1, 3);
        return true;
    }
    case AD_OP_SLICE_STEP_BACKWARD: { /* g (count rows) into like (len rows) */
        random_shape(r, 1, 3, &c->ndim[1], c->shape[1]);
        int axis = irand(r, 0, c->ndim[1] - 1);
        int64_t len = irand(r, 3, 7), step = irand(r, 1, 3), start = irand(r, 0, (int)len - 1);
        c->shape[1][axis] = len;
        c->nin = 2;
        c->ndim[0] = c->ndim[1];
        memcpy(c->shape[0], c->shape[1], sizeof c->shape[1]);
        c->shape[0][axis] = irand(r, 0, (int)((len - 1 - start) / step) + 1);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        fill(r, c, 1, -2, 2, NULL, 0, 0);
        c->ni = 3;
        c->ip[0] = axis;
        c->ip[1] = start;
        c->ip[2] = step;
        return true;
    }
    case AD_OP_STRAIGHT_THROUGH:
        /* value of fx, gradient of x: not a true derivative; checked in its own test */
        return false;
    case AD_OP_ONE_HOT:
        c->ndim[0] = 1;
        c->shape[0][0] = 4;
        for (int i = 0; i < 4; i++)
            c->values[0][i] = irand(r, 0, 2);
        c->trainable[0] = false;
        c->ni = 1;
        c->ip[0] = 3;
        return true;
    case AD_OP_DROPOUT_MASK:
        random_shape(r, 0, 3, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->nf = 1;
        c->fp[0] = 0.6;
        c->fd_ok = false; /* random: only the zero gradient is checked */
        return true;
    /* internal ops: input 0 differentiable, input 1 a constant giving the shape */
    case AD_OP_CLAMP_MASK:
    case AD_OP_ONES_LIKE:
    case AD_OP_ZEROS_LIKE:
        random_shape(r, 0, 3, &c->ndim[0], c->shape[0]);
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        c->nf = 2;
        c->fp[0] = -0.5;
        c->fp[1] = 0.5;
        {
            double k[] = {-0.5, 0.5};
            fill(r, c, 0, -2, 2, k, 2, 0.05);
        }
        return true;
    case AD_OP_EXPAND_AXIS: {
        int nd;
        int64_t sh[AD_MAX_DIMS] = {0};
        random_shape(r, 1, 4, &nd, sh);
        int axis = urand(r) < 0.25 ? -1 : irand(r, 0, nd - 1);
        c->nin = 2;
        c->ndim[1] = nd;
        memcpy(c->shape[1], sh, sizeof sh);
        c->ndim[0] = 0;
        if (axis >= 0)
            for (int d = 0; d < nd; d++)
                if (d != axis)
                    c->shape[0][c->ndim[0]++] = sh[d];
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        fill(r, c, 1, -2, 2, NULL, 0, 0);
        c->ni = 2;
        c->ip[0] = axis;
        c->ip[1] = irand(r, 0, 1);
        return true;
    }
    case AD_OP_RESHAPE_LIKE:
    case AD_OP_BROADCAST_LIKE:
    case AD_OP_SUM_TO:
    case AD_OP_SLICE_BACKWARD: {
        int nd;
        int64_t big[AD_MAX_DIMS] = {0}, small[AD_MAX_DIMS] = {0};
        int snd;
        random_shape(r, 1, 4, &nd, big);
        broadcastable(r, nd, big, &snd, small);
        c->nin = 2;
        if (op == AD_OP_RESHAPE_LIKE) {
            c->ndim[0] = 1;
            c->shape[0][0] = numel_of(nd, big);
            c->ndim[1] = nd;
            memcpy(c->shape[1], big, sizeof big);
        } else if (op == AD_OP_BROADCAST_LIKE) {
            c->ndim[0] = snd;
            memcpy(c->shape[0], small, sizeof small);
            c->ndim[1] = nd;
            memcpy(c->shape[1], big, sizeof big);
        } else if (op == AD_OP_SUM_TO) {
            c->ndim[0] = nd;
            memcpy(c->shape[0], big, sizeof big);
            c->ndim[1] = snd;
            memcpy(c->shape[1], small, sizeof small);
        } else {
            int axis = irand(r, 0, nd - 1);
            c->ndim[1] = nd;
            memcpy(c->shape[1], big, sizeof big);
            c->shape[1][axis] = 3;
            c->ndim[0] = nd;
            memcpy(c->shape[0], c->shape[1], sizeof big);
            c->shape[0][axis] = irand(r, 1, 2);
            c->ni = 2;
            c->ip[0] = axis;
            c->ip[1] = irand(r, 0, 3 - (int)c->shape[0][axis]);
        }
        fill(r, c, 0, -2, 2, NULL, 0, 0);
        fill(r, c, 1, -2, 2, NULL, 0, 0);
        return true;
    }
    default:
        return false;
    }
}

typedef struct {
    ad_graph *g;
    ad_node *in[MAXIN];
    ad_node *out, *loss, *weights;
} built;

/* loss = sum(op(inputs) * W) with a fixed random W, so the upstream gradient
 * differs per element. */
static bool build(ad_dtype dt, int op, const gencase *c, rng_t *r, built *b)
{
    memset(b, 0, sizeof *b);
    b->g = ad_graph_new(dt);
    for (int k = 0; k < c->nin; k++) {
        b->in[k] = c->trainable[k] ? ad_param(b->g, c->ndim[k], c->shape[k], "x")
                                   : ad_const(b->g, c->ndim[k], c->shape[k], NULL, "c");
        ad_set(b->in[k], c->values[k], numel_of(c->ndim[k], c->shape[k]));
    }
    ad_node *args[MAXIN];
    memcpy(args, b->in, sizeof args);
    if (op == AD_OP_MAX_POOL_SCATTER || op == AD_OP_MAX_POOL_GATHER) /* the argmax holder */
        args[1] = ad_op_apply(AD_OP_MAX_POOL, 1, &b->in[1], NULL, 0, c->ip, 6);
    b->out = ad_op_apply(op, c->nin, args, c->fp, c->nf, c->ip, c->ni);
    if (!b->out)
        return false;
    double w[4096];
    cr_assert(b->out->numel <= 4096);
    for (int64_t i = 0; i < b->out->numel; i++)
        w[i] = 0.5 + urand(r);
    b->weights = ad_const(b->g, b->out->ndim, b->out->shape, w, "w");
    b->loss = ad_sum(ad_mul(b->out, b->weights), AD_ALL);
    return b->loss != NULL;
}

static double loss_at(built *b, ad_node *leaf, int64_t i, double v)
{
    double *x = leaf->value;
    double old = x[i];
    x[i] = v;
    cr_assert_eq(ad_forward(b->g), 0, "%s", ad_graph_error(b->g));
    double L = ad_item(b->loss);
    x[i] = old;
    return L;
}

static void check_close(double analytic, double numeric, double tol, const char *what, int op,
                        int64_t i)
{
    double scale = fmax(1.0, fmax(fabs(analytic), fabs(numeric)));
    cr_assert(fabs(analytic - numeric) <= tol * scale,
              "%s of op %s, element %lld: engine %.12g, finite difference %.12g", what,
              ad_ops[op].name, (long long)i, analytic, numeric);
}

static void check_op(int op, rng_t *r)
{
    gencase c;
    if (!generate(op, r, &c))
        cr_assert_fail("op '%s' has no gradient-check generator", ad_ops[op].name);
    uint64_t wseed = r->s;
    built b;
    rng_t wr = {wseed};
    bool ok = build(AD_F64, op, &c, &wr, &b);
    cr_assert(ok, "op %s: build failed: %s", ad_ops[op].name, ad_graph_error(b.g));
    cr_assert_eq(ad_backward(b.loss), 0, "op %s: %s", ad_ops[op].name, ad_graph_error(b.g));

    /* first order: every element of every trainable input */
    const double h = 1e-6;
    for (int k = 0; k < c.nin; k++) {
        if (!c.trainable[k])
            continue;
        ad_node *x = b.in[k];
        const double *grad = x->rare->grad;
        for (int64_t i = 0; i < x->numel; i++) {
            double v = ((double *)x->value)[i];
            double numeric =
                c.fd_ok ? (loss_at(&b, x, i, v + h) - loss_at(&b, x, i, v - h)) / (2 * h) : 0.0;
            if (!ad_op_differentiable(op))
                cr_assert_eq(grad[i], 0.0, "op %s passes a gradient", ad_ops[op].name);
            check_close(grad[i], numeric, 1e-6, "gradient", op, i);
        }
    }
    ad_forward(b.g);

    /* second order: s = sum(grad_x(loss) * V); d s/d x by ad_grad and by differences */
    if (c.fd_ok && ad_op_differentiable(op)) {
        for (int k = 0; k < c.nin; k++) {
            if (!c.trainable[k])
                continue;
            ad_node *x = b.in[k];
            ad_node *gx = ad_grad(b.loss, x);
            cr_assert_not_null(gx, "op %s: ad_grad failed: %s", ad_ops[op].name,
                               ad_graph_error(b.g));
            double v[256];
            for (int64_t i = 0; i < x->numel; i++)
                v[i] = urand(r) - 0.5;
            ad_node *vn = ad_const(b.g, x->ndim, x->shape, v, "v");
            ad_node *s = ad_sum(ad_mul(gx, vn), AD_ALL);
            ad_node *hv = ad_grad(s, x);
            cr_assert_not_null(hv, "op %s: second ad_grad failed: %s", ad_ops[op].name,
                               ad_graph_error(b.g));
            double hvv[256];
            cr_assert_eq(ad_get(hv, hvv, x->numel), 0);
            built save = b;
            save.loss = s;
            for (int64_t i = 0; i < x->numel; i++) {
                double xv = ((double *)x->value)[i];
                double numeric =
                    (loss_at(&save, x, i, xv + h) - loss_at(&save, x, i, xv - h)) / (2 * h);
                check_close(hvv[i], numeric, 1e-5, "second derivative", op, i);
            }
        }
    }
    ad_graph_free(b.g);

    /* memory reuse: bit-identical gradients */
    if (c.fd_ok) {
        built p1, p2;
        rng_t r1 = {wseed}, r2 = {wseed};
        cr_assert(build(AD_F64, op, &c, &r1, &p1));
        cr_assert(build(AD_F64, op, &c, &r2, &p2));
        ad_graph_set_memory_reuse(p2.g, 1);
        for (int rep = 0; rep < 2; rep++) { /* the build, then a replay */
            ad_zero_grad(p1.g);
            ad_zero_grad(p2.g);
            cr_assert_eq(ad_backward(p1.loss), 0);
            cr_assert_eq(ad_backward(p2.loss), 0, "op %s with reuse: %s", ad_ops[op].name,
                         ad_graph_error(p2.g));
            for (int k = 0; k < c.nin; k++) {
                if (!c.trainable[k])
                    continue;
                int64_t n = p1.in[k]->numel;
                cr_assert_eq(
                    memcmp(p1.in[k]->rare->grad, p2.in[k]->rare->grad, sizeof(double) * (size_t)n),
                    0, "op %s: gradient differs with memory reuse", ad_ops[op].name);
            }
        }
        ad_graph_free(p1.g);
        ad_graph_free(p2.g);
    }

    /* f32 engine against f64 values (same inputs and weights) */
    if (c.fd_ok) {
        built b32, b64;
        rng_t r1 = {wseed}, r2 = {wseed};
        cr_assert(build(AD_F32, op, &c, &r1, &b32));
        cr_assert(build(AD_F64, op, &c, &r2, &b64));
        cr_assert_eq(ad_backward(b32.loss), 0, "%s", ad_graph_error(b32.g));
        cr_assert_eq(ad_backward(b64.loss), 0);
        double l32 = ad_item(b32.loss), l64 = ad_item(b64.loss);
        cr_assert(fabs(l32 - l64) <= 1e-4 * fmax(1, fabs(l64)), "op %s f32 loss %g vs f64 %g",
                  ad_ops[op].name, l32, l64);
        for (int k = 0; k < c.nin; k++) {
            if (!c.trainable[k])
                continue;
            double g32[256], g64[256];
            int64_t n = b64.in[k]->numel;
            cr_assert_eq(ad_get_grad(b32.in[k], g32, n), 0);
            cr_assert_eq(ad_get_grad(b64.in[k], g64, n), 0);
            for (int64_t i = 0; i < n; i++)
                cr_assert(fabs(g32[i] - g64[i]) <= 1e-3 * fmax(1, fabs(g64[i])),
                          "op %s f32 gradient %g vs f64 %g", ad_ops[op].name, g32[i], g64[i]);
        }
        ad_graph_free(b32.g);
        ad_graph_free(b64.g);
    }
}

Test(gradcheck, every_registered_op)
{
    rng_t r = {12345};
    int checked = 0;
    for (int op = 0; op < ad_op_count(); op++) {
        if (ad_op_kind_of(op) == AD_KIND_LEAF || op == AD_OP_STRAIGHT_THROUGH)
            continue;
        for (int t = 0; t < TRIALS; t++)
            check_op(op, &r);
        checked++;
    }
    cr_assert_eq(checked, ad_op_count() - 4, "ops checked: %d", checked);
}

/* The fused ops give the values and gradients of the compositions they
 * replace: linear_relu = relu(linear) and its gradients exactly (the same
 * mask), softmax_cross_entropy = -mean(sum(onehot · log_softmax)). */
Test(gradcheck, fused_ops_match_their_compositions)
{
    double xv[12], wv[20], bv[5] = {0.3, -0.2, 0.1, 0, -0.4}, lv[3] = {2, 0, 4};
    for (int i = 0; i < 12; i++)
        xv[i] = sin(1.7 * i) * 1.5;
    for (int i = 0; i < 20; i++)
        wv[i] = cos(0.9 * i);
    int64_t xs[2] = {3, 4}, ws[2] = {4, 5}, bs[1] = {5}, ls[1] = {3};
    double grads[2][3][20], loss[2];
    for (int fused = 0; fused < 2; fused++) {
        ad_graph *g = ad_graph_new(AD_F64);
        ad_node *x = ad_param(g, 2, xs, "x"), *w = ad_param(g, 2, ws, "w");
        ad_node *b = ad_param(g, 1, bs, "b"), *labels = ad_const(g, 1, ls, lv, "labels");
        ad_set(x, xv, 12);
        ad_set(w, wv, 20);
        ad_set(b, bv, 5);
        ad_node *h = fused ? ad_linear_relu(x, w, b) : ad_relu(ad_linear(x, w, b));
        ad_node *l =
            fused ? ad_softmax_cross_entropy(h, labels)
                  : ad_neg(ad_mean(ad_sum(ad_mul(ad_one_hot(labels, 5), ad_log_softmax(h, 1)), 1),
                                   AD_ALL));
        cr_assert_not_null(l, "%s", ad_graph_error(g));
        cr_assert_eq(ad_ndim(l), 0);
        cr_assert_eq(ad_backward(l), 0, "%s", ad_graph_error(g));
        loss[fused] = ad_item(l);
        ad_get_grad(x, grads[fused][0], 12);
        ad_get_grad(w, grads[fused][1], 20);
        ad_get_grad(b, grads[fused][2], 5);
        ad_graph_free(g);
    }
    cr_assert_float_eq(loss[1], loss[0], 1e-12);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < (k == 0 ? 12 : k == 1 ? 20 : 5); i++)
            cr_assert_float_eq(grads[1][k][i], grads[0][k][i], 1e-12, "input %d element %d", k, i);
}

/* A batch of matrices against one matrix is one product of all their rows
 * (ad_matmul's forward, its weight gradient, ad_linear on (..., k)): the
 * values are those of the per-matrix definition, and the gradients first
 * and second order those of central differences, whatever the transposes. */
Test(gradcheck, stacked_rows_against_one_matrix)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[3] = {2, 3, 4}, ws[2] = {4, 5}, wts[2] = {5, 4}, bs[1] = {5};
    ad_node *x = ad_param(g, 3, xs, "x"), *w = ad_param(g, 2, ws, "w");
    ad_node *wt = ad_param(g, 2, wts, "wt"), *b = ad_param(g, 1, bs, "b");
    double *xv = ad_data(x), *wv = ad_data(w), *wtv = ad_data(wt), *bv = ad_data(b);
    for (int i = 0; i < 24; i++)
        xv[i] = sin(1.3 * i + 0.2);
    for (int i = 0; i < 20; i++) {
        wv[i] = cos(0.7 * i) * 0.8;
        wtv[i] = sin(0.9 * i + 1) * 0.8;
    }
    for (int i = 0; i < 5; i++)
        bv[i] = 0.1 * i - 0.2;
    ad_node *outs[3] = {ad_linear(x, w, b), ad_matmul(x, w), ad_matmul_t(x, 0, wt, 1)};
    ad_node *ws_of[3] = {w, w, wt};
    for (int k = 0; k < 3; k++) {
        cr_assert_not_null(outs[k], "%s", ad_graph_error(g));
        cr_assert_eq(ad_ndim(outs[k]), 3);
        cr_assert_eq(ad_shape(outs[k])[0], 2);
        cr_assert_eq(ad_shape(outs[k])[1], 3);
        cr_assert_eq(ad_shape(outs[k])[2], 5);
        const double *y = ad_data(outs[k]), *wk = ad_data(ws_of[k]);
        for (int r = 0; r < 6; r++) /* r: (batch, row) */
            for (int j = 0; j < 5; j++) {
                double want = k == 0 ? bv[j] : 0;
                for (int i = 0; i < 4; i++)
                    want += xv[r * 4 + i] * (k == 2 ? wk[j * 4 + i] : wk[i * 5 + j]);
                cr_assert_float_eq(y[r * 5 + j], want, 1e-12, "output %d (%d,%d)", k, r, j);
            }
    }
    ad_node *leaves[4] = {x, w, wt, b};
    ad_node *loss = ad_add(ad_sum(ad_tanh(outs[0]), AD_ALL),
                           ad_sum(ad_mul(ad_sin(outs[1]), ad_tanh(outs[2])), AD_ALL));
    ad_gradcheck_result res;
    cr_assert_eq(ad_gradcheck(loss, 4, leaves, NULL, &res), 0, "first order: %s, %lld failed",
                 ad_graph_error(g) ? ad_graph_error(g) : "", (long long)res.failed);
    /* second order: the gradient's own gradient */
    ad_node *gw = ad_grad(loss, w), *gwt = ad_grad(loss, wt);
    ad_node *loss2 = ad_add(ad_sum(ad_mul(gw, gw), AD_ALL), ad_sum(ad_mul(gwt, gwt), AD_ALL));
    cr_assert_not_null(loss2, "%s", ad_graph_error(g));
    cr_assert_eq(ad_gradcheck(loss2, 4, leaves, NULL, &res), 0, "second order: %s, %lld failed",
                 ad_graph_error(g) ? ad_graph_error(g) : "", (long long)res.failed);
    ad_graph_free(g);
}

Test(gradcheck, softmax_cross_entropy_refuses_a_label_outside_the_classes)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t zs[2] = {2, 4}, ls[1] = {2}, bad[1] = {3};
    double lv[2] = {1, 4};
    ad_node *z = ad_param(g, 2, zs, "z");
    cr_assert_null(ad_softmax_cross_entropy(z, ad_const(g, 1, bad, NULL, "labels")));
    cr_assert_str_eq(ad_graph_error(g), "ad_softmax_cross_entropy: labels (3) must hold one class "
                                        "number per row of logits (2,4)");
    ad_graph_free(g);
    g = ad_graph_new(AD_F32);
    z = ad_param(g, 2, zs, "z");
    cr_assert_null(ad_softmax_cross_entropy(z, ad_const(g, 1, ls, lv, "labels")));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_softmax_cross_entropy: label 4 of row 1 is not a class in [0, 4)");
    ad_graph_free(g);
}

/* The elementwise kernels split long loops over threads (ad_set_threads):
 * every element is computed the same way, so values are bit-identical for
 * any thread count. */
Test(gradcheck, elementwise_results_do_not_depend_on_the_thread_count)
{
    enum { N = 70000 };
    static float out[2][3][N];
    for (int t = 0; t < 2; t++) {
        ad_set_threads(t + 1);
        ad_graph *g = ad_graph_new(AD_F32);
        int64_t sh[1] = {N};
        ad_node *x = ad_param(g, 1, sh, "x"), *y = ad_param(g, 1, sh, "y");
        float *xv = ad_data(x), *yv = ad_data(y);
        for (int i = 0; i < N; i++) {
            xv[i] = (float)sin(0.37 * i);
            yv[i] = (float)cos(0.11 * i);
        }
        ad_node *r[3] = {ad_tanh(x), ad_mul(x, y), ad_relu_grad(x, y)};
        for (int k = 0; k < 3; k++) {
            cr_assert_not_null(r[k], "%s", ad_graph_error(g));
            memcpy(out[t][k], ad_data(r[k]), sizeof(float) * N);
        }
        ad_graph_free(g);
    }
    ad_set_threads(1);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(memcmp(out[0][k], out[1][k], sizeof(float) * N), 0, "op %d", k);
}

Test(gradcheck, relu_at_zero_has_derivative_zero)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t sh[1] = {3};
    ad_node *x = ad_param(g, 1, sh, "x");
    double v[3] = {-1, 0, 2};
    ad_set(x, v, 3);
    cr_assert_eq(ad_backward(ad_sum(ad_relu(x), AD_ALL)), 0);
    double gr[3];
    ad_get_grad(x, gr, 3);
    cr_assert_eq(gr[0], 0.0);
    cr_assert_eq(gr[1], 0.0);
    cr_assert_eq(gr[2], 1.0);
    ad_graph_free(g);
}

Test(gradcheck, leaky_relu_abs_step_sign_at_zero)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.0, "x");
    ad_node *y = ad_add(ad_add(ad_leaky_relu(x, 0.25), ad_abs(x)), ad_add(ad_step(x), ad_sign(x)));
    cr_assert_float_eq(ad_item(y), 1.0, 0); /* step(0) = 1, sign(0) = 0 */
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_float_eq(ad_grad_item(x), 0.25, 1e-15); /* alpha + sign(0) + 0 + 0 */
    ad_graph_free(g);
}

Test(gradcheck, straight_through_passes_the_gradient)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t sh[1] = {3};
    ad_node *x = ad_param(g, 1, sh, "x");
    double v[3] = {-0.3, 0.0, 0.8};
    ad_set(x, v, 3);
    ad_node *h = ad_straight_through(x, ad_step(x));
    double hv[3];
    ad_get(h, hv, 3);
    cr_assert_eq(hv[0], 0.0);
    cr_assert_eq(hv[1], 1.0);
    cr_assert_eq(hv[2], 1.0);
    double w[3] = {2, 3, 5};
    ad_node *loss = ad_sum(ad_mul(h, ad_const(g, 1, sh, w, "w")), AD_ALL);
    cr_assert_eq(ad_backward(loss), 0);
    double gr[3];
    ad_get_grad(x, gr, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(gr[i], w[i]);
    ad_graph_free(g);
}

Test(gradcheck, second_derivative_of_tanh)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.6, "x");
    ad_node *y = ad_tanh(x);
    ad_node *dy = ad_grad(y, x);
    ad_node *d2y = ad_grad(dy, x);
    ad_node *d3y = ad_grad(d2y, x);
    double t = tanh(0.6);
    cr_assert_float_eq(ad_item(dy), 1 - t * t, 1e-15);
    cr_assert_float_eq(ad_item(d2y), -2 * t * (1 - t * t), 1e-15);
    cr_assert_float_eq(ad_item(d3y), (1 - t * t) * (6 * t * t - 2), 1e-14);
    ad_graph_free(g);
}
