/* Shape ops and keepdims reductions: values, error messages naming the op
 * and shapes, replay after ad_resize (shapes follow the batch, nothing is
 * allocated for a smaller batch, a reshape that cannot follow is an error),
 * overflow-safe shape products. Gradients are checked for every op in
 * test_gradcheck.c and against PyTorch in test_reference.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/autodiff.h"

/* a (2,3,4) f64 input holding 0, 1, ..., 23 */
static ad_node *iota(ad_graph *g, int ndim, const int64_t *shape, const char *name)
{
    ad_node *x = ad_input(g, ndim, shape, name);
    double v[256];
    for (int64_t i = 0; i < ad_numel(x); i++)
        v[i] = (double)i;
    ad_set(x, v, ad_numel(x));
    return x;
}

static void assert_shape(const ad_node *n, int ndim, const int64_t *shape)
{
    cr_assert_not_null(n);
    cr_assert_eq(ad_ndim(n), ndim, "ndim %d, expected %d", ad_ndim(n), ndim);
    for (int d = 0; d < ndim; d++)
        cr_assert_eq(ad_shape(n)[d], shape[d], "axis %d: %lld, expected %lld", d,
                     (long long)ad_shape(n)[d], (long long)shape[d]);
}

/* ------------------------------------------------------------ permute */

Test(permute, moves_elements_like_numpy_transpose)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {2, 3, 4};
    ad_node *x = iota(g, 3, s, "x");
    int axes[3] = {2, 0, -2}; /* (4,2,3) */
    ad_node *y = ad_permute(x, axes);
    int64_t want[3] = {4, 2, 3};
    assert_shape(y, 3, want);
    double v[24];
    ad_get(y, v, 24);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++)
                cr_assert_eq(v[(i * 2 + j) * 3 + k], (double)(j * 12 + k * 4 + i));
    ad_graph_free(g);
}

Test(permute, errors_name_the_axes_and_shape)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {2, 3, 4};
    ad_node *x = ad_input(g, 3, s, "x");
    int twice[3] = {0, 1, 1};
    cr_assert_null(ad_permute(x, twice));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_permute: axes (0,1,1) are not a permutation of the 3 axes of (2,3,4)");
    ad_graph_clear_error(g);
    int out[3] = {0, 3, 1};
    cr_assert_null(ad_permute(x, out));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_permute: axes (0,3,1) are not a permutation of the 3 axes of (2,3,4)");
    ad_graph_clear_error(g);
    cr_assert_null(ad_permute(x, NULL));
    cr_assert_str_eq(ad_graph_error(g), "ad_permute: axes is NULL");
    ad_graph_free(g);
}

/* ------------------------------------------------------ squeeze, unsqueeze */

Test(squeeze, views_share_the_buffer_and_check_the_axis)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t s[3] = {2, 1, 3};
    ad_node *x = ad_input(g, 3, s, "x");
    ad_node *y = ad_squeeze(x, -2);
    int64_t want[2] = {2, 3};
    assert_shape(y, 2, want);
    cr_assert_eq(ad_data(y), ad_data(x), "squeeze copied");
    ad_node *z = ad_unsqueeze(y, -1);
    int64_t wz[3] = {2, 3, 1};
    assert_shape(z, 3, wz);
    cr_assert_eq(ad_data(z), ad_data(x), "unsqueeze copied");
    ad_node *f = ad_unsqueeze(y, 0);
    int64_t wf[3] = {1, 2, 3};
    assert_shape(f, 3, wf);
    cr_assert_null(ad_squeeze(x, 2));
    cr_assert_str_eq(ad_graph_error(g), "ad_squeeze: axis 2 of (2,1,3) has size 3, not 1");
    ad_graph_clear_error(g);
    cr_assert_null(ad_squeeze(x, AD_ALL));
    cr_assert_str_eq(ad_graph_error(g), "ad_squeeze: AD_ALL is not an axis");
    ad_graph_clear_error(g);
    cr_assert_null(ad_unsqueeze(x, 4));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_unsqueeze: axis 4 is out of range for a new axis of (2,1,3) (at most 8)");
    ad_graph_free(g);
}

/* ------------------------------------------------------------ keepdims */

Test(keepdims, every_reduction_keeps_the_axis)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {2, 3, 4};
    ad_node *x = iota(g, 3, s, "x");
    ad_node *(*fn[5])(ad_node *, int) = {ad_sum_keepdims, ad_mean_keepdims, ad_max_keepdims,
                                         ad_min_keepdims, ad_logsumexp_keepdims};
    ad_node *(*plain[5])(ad_node *, int) = {ad_sum, ad_mean, ad_max, ad_min, ad_logsumexp};
    for (int f = 0; f < 5; f++) {
        ad_node *k = fn[f](x, 1), *p = plain[f](x, -2);
        int64_t want[3] = {2, 1, 4};
        assert_shape(k, 3, want);
        double a[8], b[8];
        ad_get(k, a, 8);
        ad_get(p, b, 8);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "reduction %d differs with keepdims", f);
        ad_node *all = fn[f](x, AD_ALL);
        int64_t ones[3] = {1, 1, 1};
        assert_shape(all, 3, ones);
        cr_assert_eq(ad_item(all), ad_item(plain[f](x, AD_ALL)));
    }
    /* the point of keepdims: it broadcasts back against the input */
    ad_node *centered = ad_sub(x, ad_max_keepdims(x, -1));
    double v[24];
    ad_get(centered, v, 24);
    cr_assert_eq(v[0], -3.0);
    cr_assert_eq(v[23], 0.0);
    cr_assert_null(ad_sum_keepdims(x, 3));
    cr_assert_str_eq(ad_graph_error(g), "ad_sum: axis 3 is out of range for shape (2,3,4)");
    ad_graph_free(g);
}

Test(keepdims, softmax_by_hand_matches_softmax_with_gradients)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {3, 4};
    ad_node *x = ad_param(g, 2, s, "x");
    double v[12];
    for (int i = 0; i < 12; i++)
        v[i] = sin(1.3 * i);
    ad_set(x, v, 12);
    ad_node *by_hand = ad_exp(ad_sub(x, ad_logsumexp_keepdims(x, -1)));
    ad_node *w = ad_const(g, 2, s, v, "w");
    ad_node *l1 = ad_sum(ad_mul(by_hand, w), AD_ALL),
            *l2 = ad_sum(ad_mul(ad_softmax(x, 1), w), AD_ALL);
    ad_node *g1 = ad_grad(l1, x), *g2 = ad_grad(l2, x);
    double a[12], b[12];
    ad_get(g1, a, 12);
    ad_get(g2, b, 12);
    for (int i = 0; i < 12; i++)
        cr_assert(fabs(a[i] - b[i]) < 1e-14, "element %d: %g vs %g", i, a[i], b[i]);
    ad_graph_free(g);
}

/* ------------------------------------------------------------ reshape */

Test(reshape, zero_keeps_an_axis_and_errors_name_the_shapes)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {4, 3, 2};
    ad_node *x = iota(g, 3, s, "x");
    int64_t keep[2] = {0, -1};
    int64_t want[2] = {4, 6};
    assert_shape(ad_reshape(x, 2, keep), 2, want);
    int64_t mid[3] = {-1, 0, 2};
    int64_t wm[3] = {4, 3, 2};
    assert_shape(ad_reshape(x, 3, mid), 3, wm);
    int64_t past[4] = {0, 0, 0, 0};
    cr_assert_null(ad_reshape(x, 4, past));
    cr_assert_str_eq(ad_graph_error(g), "ad_reshape: axis 3 of (0,0,0,0) is 0 (keep the input's "
                                        "axis 3) but (4,3,2) has 3 axes");
    ad_graph_clear_error(g);
    int64_t two[2] = {-1, -1};
    cr_assert_null(ad_reshape(x, 2, two));
    cr_assert_str_eq(ad_graph_error(g), "ad_reshape: more than one axis is -1 in (-1,-1)");
    ad_graph_clear_error(g);
    int64_t bad[2] = {5, -1};
    cr_assert_null(ad_reshape(x, 2, bad));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_reshape: cannot infer axis 1 of (5,-1) reshaping (4,3,2) (24 elements)");
    ad_graph_clear_error(g);
    int64_t wrong[2] = {5, 5};
    cr_assert_null(ad_reshape(x, 2, wrong));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_reshape: (4,3,2) has 24 elements, the new shape (5,5) has 25");
    ad_graph_free(g);
}

Test(reshape, overflowing_shape_is_refused_without_overflow)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {4};
    ad_node *x = ad_input(g, 1, s, "x");
    int64_t huge[2] = {1LL << 62, 4};
    cr_assert_null(ad_reshape(x, 2, huge));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_reshape: the element count of (4611686018427387904,4) overflows");
    ad_graph_clear_error(g);
    int64_t inferred[3] = {1LL << 40, -1, 1LL << 40};
    cr_assert_null(ad_reshape(x, 3, inferred));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_reshape: the element count of (1099511627776,-1,1099511627776) overflows");
    ad_graph_free(g);
}

/* (4,3,2) -> reshape -> resize the batch to 2: (0,-1) and (-1,3) follow it,
 * (4,-1) and (12,2) were written with the old batch and must fail. */
Test(reshape, after_resize_follows_the_batch_or_fails)
{
    int64_t follow[][4] = {{2, 0, -1}, {2, -1, 3}, {3, 1, -1, 6}, {1, -1}};
    int64_t after[][3] = {{2, 6}, {4, 3}, {1, 2, 6}, {12}};
    for (int c = 0; c < 4; c++) {
        ad_graph *g = ad_graph_new(AD_F64);
        int64_t s[3] = {4, 3, 2};
        ad_node *x = iota(g, 3, s, "x");
        int nd = (int)follow[c][0];
        ad_node *y = ad_reshape(x, nd, &follow[c][1]);
        cr_assert_not_null(y, "%s", ad_graph_error(g));
        size_t bytes = ad_graph_bytes(g);
        cr_assert_eq(ad_resize(x, 2), 0);
        cr_assert_eq(ad_forward(g), 0, "case %d: %s", c, ad_graph_error(g));
        assert_shape(y, nd, after[c]);
        cr_assert_eq(ad_graph_bytes(g), bytes, "a smaller batch allocated");
        ad_graph_free(g);
    }
    int64_t fixed[][4] = {{2, 4, -1}, {2, 12, 2}, {3, 4, 3, 2}};
    const char *msg[] = {
        "ad_reshape: the input changed from (4,3,2) to (2,3,2) (ad_resize) and the new shape "
        "(4,-1) does not follow it; write 0 (keep) or -1 (infer) for the axis that holds the "
        "changed one",
        "ad_reshape: the input changed from (4,3,2) to (2,3,2) (ad_resize) and the new shape "
        "(12,2) does not follow it; write 0 (keep) or -1 (infer) for the axis that holds the "
        "changed one",
        "ad_reshape: the input changed from (4,3,2) to (2,3,2) (ad_resize) and the new shape "
        "(4,3,2) does not follow it; write 0 (keep) or -1 (infer) for the axis that holds the "
        "changed one"};
    for (int c = 0; c < 3; c++) {
        ad_graph *g = ad_graph_new(AD_F32);
        int64_t s[3] = {4, 3, 2};
        ad_node *x = iota(g, 3, s, "x");
        cr_assert_not_null(ad_reshape(x, (int)fixed[c][0], &fixed[c][1]));
        cr_assert_eq(ad_resize(x, 2), 0);
        cr_assert_eq(ad_forward(g), -1, "case %d replayed", c);
        cr_assert_str_eq(ad_graph_error(g), msg[c]);
        cr_assert_eq(ad_forward(g), -1, "the error is sticky");
        ad_graph_free(g);
    }
}

Test(reshape, batch_inside_a_later_axis_follows)
{
    /* (B,T,C) permuted to (T,B,C), then (T,-1): the batch is merged into axis 1 */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {4, 3, 2};
    ad_node *x = iota(g, 3, s, "x");
    int axes[3] = {1, 0, 2};
    int64_t spec[2] = {3, -1};
    ad_node *y = ad_reshape(ad_permute(x, axes), 2, spec);
    cr_assert_eq(ad_resize(x, 2), 0);
    double v[12];
    for (int i = 0; i < 12; i++)
        v[i] = (double)i;
    ad_set(x, v, 12);
    cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
    int64_t want[2] = {3, 4};
    assert_shape(y, 2, want);
    double out[12];
    ad_get(y, out, 12);
    cr_assert_eq(out[2], 6.0); /* y[0, 2] = x[1, 0, 0] */
    ad_graph_free(g);
}

Test(replay, shape_ops_follow_a_resize_without_allocating)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {4, 3, 2};
    ad_node *x = iota(g, 3, s, "x");
    ad_node *w = ad_param(g, 1, s + 2, "w");
    double wv[2] = {0.5, -1.5};
    ad_set(w, wv, 2);
    int axes[4] = {0, 3, 2, 1};
    ad_node *h = ad_permute(ad_unsqueeze(ad_mul(x, w), 1), axes); /* (B,2,3,1) */
    ad_node *k = ad_squeeze(ad_sum_keepdims(h, 2), -1);           /* (B,2,1) */
    ad_node *loss = ad_sum(ad_logsumexp_keepdims(k, 0), AD_ALL);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    ad_zero_grad(g);
    cr_assert_eq(ad_resize(x, 2), 0);
    double v[12];
    for (int i = 0; i < 12; i++)
        v[i] = 0.1 * i;
    ad_set(x, v, 12);
    size_t bytes = ad_graph_bytes(g);
    cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_graph_bytes(g), bytes, "replay allocated");
    int64_t wk[3] = {2, 2, 1};
    assert_shape(k, 3, wk);
    /* against a graph built for batch 2 */
    ad_graph *f = ad_graph_new(AD_F64);
    int64_t s2[3] = {2, 3, 2};
    ad_node *x2 = ad_input(f, 3, s2, "x");
    ad_set(x2, v, 12);
    ad_node *w2 = ad_param(f, 1, s + 2, "w");
    ad_set(w2, wv, 2);
    ad_node *h2 = ad_permute(ad_unsqueeze(ad_mul(x2, w2), 1), axes);
    ad_node *l2 = ad_sum(ad_logsumexp_keepdims(ad_squeeze(ad_sum_keepdims(h2, 2), -1), 0), AD_ALL);
    cr_assert_eq(ad_backward(l2), 0);
    cr_assert_eq(ad_item(loss), ad_item(l2));
    double g1[2], g2[2];
    ad_get_grad(w, g1, 2);
    ad_get_grad(w2, g2, 2);
    cr_assert_eq(g1[0], g2[0]);
    cr_assert_eq(g1[1], g2[1]);
    ad_graph_free(f);
    ad_graph_free(g);
}

/* ------------------------------------------------------------ take */

Test(take, embedding_lookup_with_repeated_ids_accumulates)
{
    for (int dt = 0; dt < 2; dt++) {
        ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
        int64_t es[2] = {5, 3}, is[2] = {2, 3};
        ad_node *E = ad_param(g, 2, es, "E");
        double ev[15];
        for (int i = 0; i < 15; i++)
            ev[i] = (double)i;
        ad_set(E, ev, 15);
        double ids[6] = {4, 1, 4, 0, -1, 2}; /* -1 is row 4 */
        ad_node *idx = ad_input(g, 2, is, "ids");
        ad_set(idx, ids, 6);
        ad_node *y = ad_take(E, idx, 0);
        int64_t want[3] = {2, 3, 3};
        assert_shape(y, 3, want);
        double v[18];
        ad_get(y, v, 18);
        for (int j = 0; j < 6; j++) {
            int row = ids[j] < 0 ? (int)ids[j] + 5 : (int)ids[j];
            for (int k = 0; k < 3; k++)
                cr_assert_eq(v[j * 3 + k], ev[row * 3 + k]);
        }
        cr_assert_eq(ad_backward(ad_sum(y, AD_ALL)), 0, "%s", ad_graph_error(g));
        double gr[15];
        ad_get_grad(E, gr, 15);
        double count[5] = {1, 1, 1, 0, 3};
        for (int i = 0; i < 15; i++)
            cr_assert_eq(gr[i], count[i / 3], "row %d: %g", i / 3, gr[i]);
        ad_graph_free(g);
    }
}

Test(take, along_a_middle_axis_and_second_order)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[3] = {2, 4, 3}, is[1] = {3};
    ad_node *x = ad_param(g, 3, s, "x");
    double v[24];
    for (int i = 0; i < 24; i++)
        v[i] = 0.1 * i - 1;
    ad_set(x, v, 24);
    double ids[3] = {3, 3, 0};
    ad_node *y = ad_take(x, ad_const(g, 1, is, ids, "i"), -2); /* (2,3,3) */
    double out[18];
    ad_get(y, out, 18);
    cr_assert_eq(out[0], v[9]); /* y[0,0,0] = x[0,3,0] */
    cr_assert_eq(out[8], v[2]); /* y[0,2,2] = x[0,0,2] */
    /* L = sum(y^3): dL/dx = 3 x^2 times the count; d/dx of sum(dL/dx) = 6 x count */
    ad_node *loss = ad_sum(ad_pow(y, 3), AD_ALL);
    ad_node *gx = ad_grad(loss, x);
    ad_node *hx = ad_grad(ad_sum(gx, AD_ALL), x);
    double gv[24], hv[24];
    ad_get(gx, gv, 24);
    ad_get(hx, hv, 24);
    for (int i = 0; i < 24; i++) {
        int row = (i / 3) % 4;
        double c = row == 3 ? 2 : row == 0 ? 1 : 0;
        cr_assert(fabs(gv[i] - 3 * v[i] * v[i] * c) < 1e-14, "gradient %d", i);
        cr_assert(fabs(hv[i] - 6 * v[i] * c) < 1e-14, "second derivative %d", i);
    }
    ad_graph_free(g);
}

Test(take, bad_indices_fail_at_build_and_on_replay)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t es[2] = {5, 3}, is[1] = {3};
    ad_node *E = ad_param(g, 2, es, "E");
    ad_node *idx = ad_input(g, 1, is, "ids");
    double bad[3] = {0, 5, 1};
    ad_set(idx, bad, 3);
    cr_assert_null(ad_take(E, idx, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_take: index 5 at position 1 is not an integer in "
                                        "[-5, 5) (axis 0 of (5,3))");
    ad_graph_clear_error(g);
    double ok[3] = {0, 4, 1};
    ad_set(idx, ok, 3);
    ad_node *y = ad_take(E, idx, 0);
    cr_assert_not_null(y);
    cr_assert_eq(ad_backward(ad_sum(y, AD_ALL)), 0);
    double frac[3] = {0, 1.5, 1};
    ad_set(idx, frac, 3);
    cr_assert_eq(ad_forward(g), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_take: index 1.5 at position 1 is not an integer in "
                                        "[-5, 5) (axis 0 of (5,3))");
    ad_graph_clear_error(g);
    double neg[3] = {-6, 0, 0};
    ad_set(idx, neg, 3);
    cr_assert_eq(ad_forward(g), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_take: index -6 at position 0 is not an integer in "
                                        "[-5, 5) (axis 0 of (5,3))");
    ad_graph_clear_error(g);
    cr_assert_null(ad_take(E, idx, AD_ALL));
    cr_assert_str_eq(ad_graph_error(g), "ad_take: AD_ALL is not an axis");
    ad_graph_clear_error(g);
    int64_t big[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    ad_node *many = ad_const(g, 8, big, NULL, "i");
    cr_assert_null(ad_take(E, many, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_take: table (5,3) and index (1,1,1,1,1,1,1,1) make 9 "
                                        "axes, at most 8 are supported");
    ad_graph_free(g);
}

/* ------------------------------------------------------- pad, slice_step */

Test(pad, fills_and_slices_back)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 2};
    ad_node *x = ad_param(g, 2, s, "x");
    double v[4] = {1, 2, 3, 4};
    ad_set(x, v, 4);
    ad_node *y = ad_pad(x, -1, 1, 2, -7);
    int64_t want[2] = {2, 5};
    assert_shape(y, 2, want);
    double out[10], exp[10] = {-7, 1, 2, -7, -7, -7, 3, 4, -7, -7};
    ad_get(y, out, 10);
    cr_assert_eq(memcmp(out, exp, sizeof out), 0);
    cr_assert_eq(ad_backward(ad_sum(ad_mul(y, y), AD_ALL)), 0);
    double gr[4];
    ad_get_grad(x, gr, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gr[i], 2 * v[i]);
    cr_assert_null(ad_pad(x, 0, -1, 0, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_pad: before -1 and after 0 must be in [0, "
                                        "144115188075855871] (axis 0 of (2,2))");
    ad_graph_free(g);
}

Test(slice_step, every_kth_row_and_errors)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t s[2] = {7, 2};
    ad_node *x = iota(g, 2, s, "x");
    ad_node *y = ad_slice_step(x, 0, 1, 7, 3); /* rows 1, 4 */
    int64_t want[2] = {2, 2};
    assert_shape(y, 2, want);
    double out[4];
    ad_get(y, out, 4);
    cr_assert_eq(out[0], 2.0);
    cr_assert_eq(out[2], 8.0);
    ad_node *e = ad_slice_step(x, 1, 2, 2, 5);
    int64_t empty[2] = {7, 0};
    assert_shape(e, 2, empty);
    /* the largest step takes the first row only (end - start + step
       overflowed: found by fuzz_graph) */
    ad_node *one = ad_slice_step(x, 0, 6, 7, INT64_MAX);
    int64_t first[2] = {1, 2};
    assert_shape(one, 2, first);
    ad_get(one, out, 2);
    cr_assert_eq(out[0], 12.0);
    cr_assert_null(ad_slice_step(x, 0, 1, 8, 2));
    cr_assert_str_eq(ad_graph_error(g), "ad_slice_step: range [1, 8) step 2 does not fit axis 0 "
                                        "of shape (7,2) (need 0 <= start <= end <= 7, step >= 1)");
    ad_graph_clear_error(g);
    cr_assert_null(ad_slice_step(x, -1, 0, 2, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_slice_step: range [0, 2) step 0 does not fit axis 1 "
                                        "of shape (7,2) (need 0 <= start <= end <= 2, step >= 1)");
    ad_graph_free(g);
}

Test(replay, take_pad_slice_step_follow_a_resize)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t es[2] = {6, 2}, is[2] = {4, 3};
    ad_node *E = ad_param(g, 2, es, "E");
    double ev[12];
    for (int i = 0; i < 12; i++)
        ev[i] = sin(i + 1.0);
    ad_set(E, ev, 12);
    ad_node *ids = ad_input(g, 2, is, "ids");
    double iv[12] = {0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0};
    ad_set(ids, iv, 12);
    ad_node *h = ad_pad(ad_take(E, ids, 0), 1, 2, 0, 0.0); /* (B,5,2) */
    ad_node *loss = ad_sum(ad_pow(ad_slice_step(h, 1, 0, 5, 2), 2), AD_ALL);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_resize(ids, 2), 0);
    double iv2[6] = {5, 5, 5, 1, 1, 1};
    ad_set(ids, iv2, 6);
    size_t bytes = ad_graph_bytes(g);
    cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_graph_bytes(g), bytes, "replay allocated");
    /* rows 0, 2, 4 of the padded (B,5,2) are zero, id 0, id 2: ids[:, 0] and ids[:, 2] */
    double want = 2 * (ev[10] * ev[10] + ev[11] * ev[11]) + 2 * (ev[2] * ev[2] + ev[3] * ev[3]);
    cr_assert(fabs(ad_item(loss) - want) < 1e-14, "loss %g, expected %g", ad_item(loss), want);
    double gr[12];
    ad_get_grad(E, gr, 12);
    cr_assert(fabs(gr[10] - 4 * ev[10]) < 1e-14); /* id 5 used twice, 2 e each */
    cr_assert_eq(gr[0], 0.0);
    ad_graph_free(g);
}

/* ------------------------------------------------------------ concat */

Test(concat, null_part_sets_the_error)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {2};
    ad_node *a = ad_input(g, 1, s, "a");
    ad_node *parts[3] = {a, NULL, a};
    cr_assert_null(ad_concat(3, parts, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_concat: part 1 of 3 is NULL");
    ad_graph_free(g);
}

/* Fan-out through slices: the gradient of x is the sum of the slices'
 * zero-padded gradients (add_n reads only each slice's slab), with
 * overlapping slices, a slice first, a dense use of x between, along every
 * axis; each element's gradient is counted by hand. */
Test(slice, gradients_of_many_slices_add_up)
{
    const int64_t sh[3] = {2, 3, 4};
    for (int axis = 0; axis < 3; axis++) {
        ad_graph *g = ad_graph_new(AD_F64);
        ad_node *x = ad_param(g, 3, sh, "x");
        int64_t len = sh[axis];
        /* slices [0, len-1) scaled by 1, [1, len) by 10, x itself by 100, [0, 1) by 1000 */
        ad_node *terms[4] = {ad_sum(ad_slice(x, axis, 0, len - 1), AD_ALL),
                             ad_sum(ad_scale(ad_slice(x, axis, 1, len), 10), AD_ALL),
                             ad_sum(ad_scale(x, 100), AD_ALL),
                             ad_sum(ad_scale(ad_slice(x, axis, 0, 1), 1000), AD_ALL)};
        ad_node *loss = ad_add_n(4, terms);
        cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
        double gr[24];
        cr_assert_eq(ad_get_grad(x, gr, 24), 0);
        for (int64_t i = 0; i < 24; i++) {
            int64_t idx[3] = {i / 12, i / 4 % 3, i % 4}, k = idx[axis];
            double want = 100 + (k < len - 1 ? 1 : 0) + (k >= 1 ? 10 : 0) + (k == 0 ? 1000 : 0);
            cr_assert_eq(gr[i], want, "axis %d element %lld: %g, want %g", axis, (long long)i,
                         gr[i], want);
        }
        /* replay gives the same */
        cr_assert_eq(ad_backward(loss), 0);
        double again[24];
        ad_get_grad(x, again, 24);
        for (int64_t i = 0; i < 24; i++)
            cr_assert_eq(again[i], 2 * gr[i], "accumulated twice");
        ad_graph_free(g);
    }
}

/* Transpose in tiles: shapes larger than a tile and not multiples of it,
 * a batch of matrices, both dtypes; every element checked. */
Test(transpose, tiled_matches_the_definition)
{
    const int64_t shapes[3][3] = {{2, 45, 70}, {1, 33, 32}, {3, 1, 100}};
    for (int dt = 0; dt < 2; dt++)
        for (int s = 0; s < 3; s++) {
            const int64_t b = shapes[s][0], r = shapes[s][1], c = shapes[s][2];
            ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
            int64_t sh[3] = {b, r, c};
            ad_node *a = ad_input(g, 3, sh, "a");
            static double v[2 * 45 * 70 * 3], out[2 * 45 * 70 * 3];
            for (int64_t i = 0; i < b * r * c; i++)
                v[i] = (double)(i % 1021) - 300.5;
            cr_assert_eq(ad_set(a, v, b * r * c), 0);
            ad_node *t = ad_transpose(a);
            cr_assert_not_null(t, "%s", ad_graph_error(g));
            cr_assert_eq(ad_shape(t)[1], c);
            cr_assert_eq(ad_shape(t)[2], r);
            cr_assert_eq(ad_get(t, out, b * r * c), 0);
            for (int64_t m = 0; m < b; m++)
                for (int64_t i = 0; i < r; i++)
                    for (int64_t j = 0; j < c; j++)
                        cr_assert_eq(out[(m * c + j) * r + i], v[(m * r + i) * c + j],
                                     "shape %d (%lld, %lld, %lld)", s, (long long)m, (long long)i,
                                     (long long)j);
            ad_graph_free(g);
        }
}

/* Sums along contiguous values: short rows in order, long rows (128 and
 * more) in partial sums; both agree with the sum in f64 to the rounding of
 * the element type, and integers (exact either way) give the exact sum, for
 * rows of a (2, len) tensor, the whole tensor, and the mean. */
Test(sum, long_rows_match_the_definition)
{
    const int64_t lens[] = {5, 127, 128, 129, 1000, 4099};
    for (int dt = 0; dt < 2; dt++)
        for (size_t t = 0; t < sizeof lens / sizeof *lens; t++)
            for (int integers = 0; integers < 2; integers++) {
                const int64_t len = lens[t], shape[2] = {2, len};
                ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
                ad_node *x = ad_input(g, 2, shape, "x");
                double *v = malloc(sizeof *v * (size_t)(2 * len));
                cr_assert_not_null(v);
                double want[2] = {0, 0}, mag = 0;
                for (int64_t i = 0; i < 2 * len; i++) {
                    v[i] = integers ? (double)(i % 7) - 3 : 0.001 * (double)(i % 1013) - 0.3;
                    if (!dt)
                        v[i] = (float)v[i];
                    want[i / len] += v[i];
                    mag += fabs(v[i]);
                }
                ad_set(x, v, 2 * len);
                double rows[2], all = ad_item(ad_sum(x, AD_ALL)),
                                mean = ad_item(ad_mean(x, AD_ALL));
                ad_get(ad_sum(x, 1), rows, 2);
                const double tol = integers ? 0 : (dt ? 1e-15 : 1e-6) * mag;
                for (int r = 0; r < 2; r++)
                    cr_assert(fabs(rows[r] - want[r]) <= tol,
                              "dtype %d len %lld row %d: %.17g vs %.17g", dt, (long long)len, r,
                              rows[r], want[r]);
                cr_assert(fabs(all - (want[0] + want[1])) <= tol, "dtype %d len %lld: %.17g", dt,
                          (long long)len, all);
                /* the mean also rounds its division */
                cr_assert(fabs(mean - (want[0] + want[1]) / (double)(2 * len)) <=
                              tol / (double)len + (dt ? 1e-16 : 1e-7),
                          "dtype %d len %lld mean %.17g", dt, (long long)len, mean);
                free(v);
                ad_graph_free(g);
            }
}
