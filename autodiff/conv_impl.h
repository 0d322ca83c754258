/* conv_impl.h -- what ops_conv.c (the convolution and pooling ops: shape
 * rules, im2col kernels, gradient rules) and conv_winograd.c (the Winograd
 * F(2×2, 3×3) and F(4×4, 3×3) kernels) share: the geometries, the 2×2 max of
 * the fused pooling, the layout of a forward's kept transform, and the
 * Winograd entry points the shape rules and conv_run call. Internal: never
 * installed. */
#ifndef CHAINRULE_CONV_IMPL_H
#define CHAINRULE_CONV_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph_impl.h"

typedef struct {
    int64_t N, C, H, W; /* x (N, C, H, W) */
    int64_t O, KH, KW;  /* w (O, C/G, KH, KW) */
    int64_t OH, OW;     /* y (N, O, OH, OW) */
    int64_t sh, sw, ph, pw, dh, dw, G;
} conv_geom;

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

/* a stride-1 3×3 correlation of x (N, Ci, H, W), padded by (ph, pw) on
 * both sides (the far side as far as the output needs), into y (N, Co,
 * OH, OW): th × tw tiles of m×m outputs per image */
typedef struct {
    int64_t N, Ci, Co, H, W, OH, OW, ph, pw, th, tw;
    int m;  /* outputs per tile side: 2 for F(2×2, 3×3), 4 for F(4×4, 3×3) */
    int nk; /* (m + 2)²: products, and GEMMs, per tile */
} wino_geom;

/* the words of a forward's op_data that say whether, and for which
 * geometry, its kept transform is in its aux (conv_winograd.c, kept_chunks) */
enum { KEEP_VALID, KEEP_N, KEEP_CI, KEEP_CO, KEEP_H, KEEP_W, KEEP_PH, KEEP_PW, KEEP_WORDS };

/* whether node n runs by Winograd at forward geometry q */
bool ad_wino_use(const ad_node *n, const conv_geom *q);
/* the Winograd geometry of q, or of its transpose */
wino_geom ad_wino_make(const conv_geom *q, bool transpose);
/* elements of scratch the Winograd kernels need for w */
size_t ad_wino_scratch_elems(const wino_geom *w, size_t elem);
/* elements of the transformed weights U, or their gradient dU */
size_t ad_wino_u_elems(const wino_geom *w);
/* whether y's forward keeps its transformed input for a weight gradient */
bool ad_wino_keeps_transform(const ad_node *y);
/* bytes y's aux needs to keep that transform for geometry w */
size_t ad_wino_kept_end(const ad_node *y, const wino_geom *w, size_t elem);
/* makes n's op_data for what its forward keeps; false without memory */
bool ad_wino_keep_header(ad_node *n);
/* whether conv_transpose at forward geometry q runs as F(4×4)'s adjoint */
bool ad_wino_transpose_by_adjoint(const conv_geom *q);
/* conv (and its bias forms) or conv_transpose by Winograd */
void ad_wino_run(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                 const ad_node *Y, bool transpose);
/* conv_transpose as the adjoint of the forward's F(4×4), with dw when fused */
void ad_wino_adjoint_run(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                         const ad_node *Y);
/* conv_weight_grad by Winograd */
void ad_wino_weight_grad(ad_node *n, const conv_geom *q, const ad_node *X, const ad_node *K,
                         const ad_node *Y);

#endif
