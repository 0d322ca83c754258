/* Engine behaviour: error messages, replay without allocation, batch resize,
 * mark/rewind, allocator failure, accumulation, fan-out, anomaly mode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/autodiff.h"

/* ------------------------------------------------------------ allocators */

typedef struct {
    long calls;   /* allocations and growths */
    long live;    /* blocks outstanding */
    size_t bytes; /* bytes outstanding */
    long fail_at; /* fail the fail_at-th allocation (1-based), 0: never */
} counter;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *c = ud;
    if (nsize == 0) {
        if (ptr) {
            c->live--;
            c->bytes -= osize;
        }
        free(ptr);
        return NULL;
    }
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p) {
        if (!ptr)
            c->live++;
        c->bytes = c->bytes - osize + nsize;
    }
    return p;
}

/* ------------------------------------------------------------ errors */

Test(errors, matmul_shapes_do_not_align)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t s1[2] = {32, 784}, s2[2] = {300, 100};
    ad_node *x = ad_input(g, 2, s1, "x"), *w = ad_param(g, 2, s2, "W");
    cr_assert_null(ad_graph_error(g));
    ad_node *y = ad_matmul(x, w);
    cr_assert_null(y);
    cr_assert_str_eq(ad_graph_error(g), "ad_matmul: shapes (32,784) and (300,100) do not align");
    /* NULL propagates without replacing the first message */
    cr_assert_null(ad_relu(y));
    cr_assert_null(ad_add(y, x));
    cr_assert_eq(ad_backward(y), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_matmul: shapes (32,784) and (300,100) do not align");
    ad_graph_clear_error(g);
    cr_assert_null(ad_graph_error(g));
    ad_graph_free(g);
}

Test(errors, broadcast_mismatch_names_op_and_shapes)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s1[2] = {2, 3}, s2[1] = {4};
    cr_assert_null(ad_add(ad_input(g, 2, s1, "a"), ad_input(g, 1, s2, "b")));
    cr_assert_str_eq(ad_graph_error(g), "ad_add: shapes (2,3) and (4) do not broadcast");
    ad_graph_free(g);
}

Test(errors, axis_out_of_range)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 3};
    cr_assert_null(ad_sum(ad_input(g, 2, s, "a"), 2));
    cr_assert_str_eq(ad_graph_error(g), "ad_sum: axis 2 is out of range for shape (2,3)");
    ad_graph_clear_error(g);
    cr_assert_null(ad_softmax(ad_input(g, 2, s, "a"), -3));
    cr_assert_str_eq(ad_graph_error(g), "ad_softmax: axis -3 is out of range for shape (2,3)");
    ad_graph_free(g);
}

Test(errors, count_does_not_match_numel)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 3};
    ad_node *a = ad_input(g, 2, s, "a");
    double v[5] = {0};
    cr_assert_eq(ad_set(a, v, 5), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_set: count 5 does not match 6 elements of 'a' (2,3)");
    ad_graph_free(g);
}

Test(errors, backward_from_non_scalar)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {3};
    ad_node *a = ad_param(g, 1, s, "a");
    ad_node *y = ad_tanh(a);
    ad_node_set_name(y, "y");
    cr_assert_eq(ad_backward(y), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_backward: output 'y' (3) has 3 elements, expected 1");
    ad_graph_free(g);
}

Test(errors, element_count_overflow)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[4] = {1LL << 20, 1LL << 20, 1LL << 20, 4};
    cr_assert_null(ad_input(g, 4, s, "huge"));
    cr_assert_str_eq(ad_graph_error(g), "ad_input: element count overflows");
    ad_graph_free(g);
}

Test(errors, bad_leaf_arguments_and_null_graph)
{
    cr_assert_null(ad_scalar(NULL, 1.0, "x"));
    cr_assert_null(ad_tanh(NULL));
    ad_graph_free(NULL);
    ad_graph *g = ad_graph_new(AD_F64);
    cr_assert_null(ad_input(g, 9, NULL, "x"));
    cr_assert_str_eq(ad_graph_error(g), "ad_input: ndim 9 is not in [0, 8]");
    ad_graph_free(g);
}

Test(errors, one_hot_index_out_of_range)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {3};
    double idx[3] = {0, 4, 1};
    ad_node *labels = ad_const(g, 1, s, idx, "y");
    cr_assert_null(ad_one_hot(labels, 3));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_one_hot: index 4 at position 1 is not a class in [0, 3)");
    ad_graph_free(g);
}

Test(errors, one_hot_error_on_replay)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t s[1] = {2};
    ad_node *labels = ad_input(g, 1, s, "y");
    cr_assert_not_null(ad_one_hot(labels, 3));
    double bad[2] = {1, 7};
    ad_set(labels, bad, 2);
    cr_assert_eq(ad_forward(g), -1);
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_one_hot: index 7 at position 1 is not a class in [0, 3)");
    ad_graph_free(g);
}

Test(errors, anomaly_mode_names_op_node_and_pass)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_graph_set_check_finite(g, 1);
    ad_node *x = ad_scalar(g, -1.0, "x");
    cr_assert_null(ad_log(x));
    cr_assert_str_eq(ad_graph_error(g),
                     "log: non-finite value at element 0 of node 1 '' () in the forward pass");
    ad_graph_free(g);

    /* the backward pass: d sqrt(x)/dx at 0 is infinite */
    g = ad_graph_new(AD_F64);
    ad_graph_set_check_finite(g, 1);
    x = ad_scalar(g, 0.0, "x");
    ad_node *y = ad_sqrt(x);
    cr_assert_not_null(y);
    cr_assert_eq(ad_backward(y), -1);
    cr_assert(strstr(ad_graph_error(g), "in the backward pass") != NULL, "%s", ad_graph_error(g));
    cr_assert(strstr(ad_graph_error(g), "div: non-finite") == ad_graph_error(g), "%s",
              ad_graph_error(g));
    ad_graph_free(g);
}

Test(errors, rewind_to_bad_mark)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_scalar(g, 1, "a");
    cr_assert_eq(ad_graph_rewind(g, 5), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_graph_rewind: mark 5 is not in [0, 1]");
    ad_graph_free(g);
}

/* ------------------------------------------------------------ semantics */

Test(semantics, fan_out_sums_contributions)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *a = ad_scalar(g, 3.0, "a");
    ad_node *y = ad_add(a, a);
    cr_assert_eq(ad_node_ninputs(y), 2);
    cr_assert_eq(ad_node_input(y, 0), a);
    cr_assert_eq(ad_node_input(y, 1), a);
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_eq(ad_grad_item(a), 2.0);
    ad_zero_grad(g);
    ad_node *z = ad_mul(ad_mul(a, a), a); /* a^3 */
    cr_assert_eq(ad_backward(z), 0);
    cr_assert_float_eq(ad_grad_item(a), 27.0, 1e-12);
    ad_graph_free(g);
}

Test(semantics, gradients_accumulate_until_zero_grad)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *a = ad_scalar(g, 2.0, "a");
    ad_node *y = ad_mul(a, a);
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_eq(ad_grad_item(a), 4.0);
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_eq(ad_grad_item(a), 8.0);
    ad_zero_grad(g);
    cr_assert_eq(ad_grad_item(a), 0.0);
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_eq(ad_grad_item(a), 4.0);
    ad_graph_free(g);
}

Test(semantics, detach_and_constants_get_no_gradient)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *a = ad_scalar(g, 2.0, "a");
    ad_node *c = ad_const_scalar(g, 5.0, "c");
    ad_node *y = ad_add(ad_mul(a, c), ad_mul(ad_detach(a), a)); /* 5a + a0*a */
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_eq(ad_grad_item(a), 7.0);
    cr_assert(isnan(ad_grad_item(c)));
    cr_assert_str_eq(ad_graph_error(g), "ad_get_grad: node 'c' (const) is not a trainable leaf");
    ad_graph_free(g);
}

/* A small MLP with softmax cross-entropy, f32 or f64. */
typedef struct {
    ad_graph *g;
    ad_node *x, *labels, *w1, *b1, *w2, *b2, *loss;
} mlp;

static void mlp_build(mlp *m, ad_dtype dt, int64_t batch, ad_alloc_fn alloc, void *ud)
{
    memset(m, 0, sizeof *m);
    m->g = ad_graph_new_with(dt, alloc, ud);
    if (!m->g)
        return;
    int64_t sx[2] = {batch, 4}, sy[1] = {batch}, sw1[2] = {4, 5}, sb1[1] = {5}, sw2[2] = {5, 3},
            sb2[1] = {3};
    m->x = ad_input(m->g, 2, sx, "x");
    m->labels = ad_input(m->g, 1, sy, "labels");
    m->w1 = ad_param(m->g, 2, sw1, "W1");
    m->b1 = ad_param(m->g, 1, sb1, "b1");
    m->w2 = ad_param(m->g, 2, sw2, "W2");
    m->b2 = ad_param(m->g, 1, sb2, "b2");
    double w[20];
    for (int i = 0; i < 20; i++)
        w[i] = sin(i * 1.7) * 0.5;
    ad_set(m->w1, w, 20);
    ad_set(m->w2, w, 15);
    ad_set(m->b1, w + 3, 5);
    ad_set(m->b2, w + 7, 3);
    ad_node *h = ad_relu(ad_add(ad_matmul(m->x, m->w1), m->b1));
    ad_node *logits = ad_add(ad_matmul(h, m->w2), m->b2);
    ad_node *nll = ad_neg(ad_sum(ad_mul(ad_log_softmax(logits, -1), ad_one_hot(m->labels, 3)), -1));
    m->loss = ad_mean(nll, AD_ALL);
}

static void mlp_data(mlp *m, int64_t batch, int step)
{
    double xv[64 * 4], yv[64];
    for (int64_t i = 0; i < batch * 4; i++)
        xv[i] = cos((double)(i + 13 * step) * 0.9);
    for (int64_t i = 0; i < batch; i++)
        yv[i] = (double)((i + step) % 3);
    ad_set(m->x, xv, batch * 4);
    ad_set(m->labels, yv, batch);
}

/* A batch of b rows (mlp_data's step) in place of the last one, forward run. */
static void mlp_feed(mlp *m, int64_t b, int step)
{
    cr_assert_eq(ad_resize(m->x, b), 0);
    cr_assert_eq(ad_resize(m->labels, b), 0);
    mlp_data(m, b, step);
    cr_assert_eq(ad_forward(m->g), 0);
}

/* The 43 parameters' gradients (or values: params_of) in one array. */
static void read_params(mlp *m, double *out, int (*get)(const ad_node *, double *, int64_t))
{
    get(m->w1, out, 20);
    get(m->b1, out + 20, 5);
    get(m->w2, out + 25, 15);
    get(m->b2, out + 40, 3);
}

static void grads_of(mlp *m, double *out) { read_params(m, out, ad_get_grad); }
static void params_of(mlp *m, double *out) { read_params(m, out, ad_get); }

Test(replay, matches_rebuilt_graph_and_allocates_nothing)
{
    counter c = {0};
    mlp m;
    mlp_build(&m, AD_F64, 8, counting_alloc, &c);
    mlp_data(&m, 8, 0);
    cr_assert_eq(ad_forward(m.g), 0);
    cr_assert_eq(ad_backward(m.loss), 0, "%s", ad_graph_error(m.g));
    long calls_after_first = c.calls;
    int64_t nodes = ad_graph_size(m.g);
    for (int step = 1; step <= 5; step++) {
        mlp_data(&m, 8, step);
        cr_assert_eq(ad_forward(m.g), 0);
        ad_zero_grad(m.g);
        cr_assert_eq(ad_backward(m.loss), 0);
        cr_assert_eq(c.calls, calls_after_first, "step %d allocated", step);
        cr_assert_eq(ad_graph_size(m.g), nodes, "replay added nodes");

        mlp fresh;
        mlp_build(&fresh, AD_F64, 8, NULL, NULL);
        mlp_data(&fresh, 8, step);
        cr_assert_eq(ad_forward(fresh.g), 0);
        cr_assert_eq(ad_backward(fresh.loss), 0);
        cr_assert_eq(ad_item(m.loss), ad_item(fresh.loss));
        double g1[43], g2[43];
        grads_of(&m, g1);
        grads_of(&fresh, g2);
        for (int i = 0; i < 43; i++)
            cr_assert_eq(g1[i], g2[i], "gradient %d differs after replay", i);
        ad_graph_free(fresh.g);
    }
    ad_graph_free(m.g);
    cr_assert_eq(c.live, 0, "%ld blocks leaked", c.live);
    cr_assert_eq(c.bytes, 0);
}

/* ad_forward steps over the backward passes' nodes by their ranges of ids:
 * nodes made between and after two passes are still recomputed, and both
 * passes replay from the new values. */
Test(replay, forward_steps_over_backward_passes_to_the_nodes_after_them)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 1, "x");
    ad_node *y = ad_mul(x, x);
    cr_assert_eq(ad_backward(y), 0);
    ad_node *z = ad_add(y, x); /* made after the first pass */
    cr_assert_eq(ad_backward(z), 0);
    ad_node *w = ad_scale(z, 2); /* after the second */
    cr_assert_not_null(w);
    double three = 3;
    ad_set(x, &three, 1);
    cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_item(y), 9);
    cr_assert_eq(ad_item(z), 12);
    cr_assert_eq(ad_item(w), 24);
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(z), 0);
    cr_assert_eq(ad_grad_item(x), 7); /* 2x + 1 */
    ad_zero_grad(g);
    cr_assert_eq(ad_backward(y), 0);
    cr_assert_eq(ad_grad_item(x), 6);
    ad_graph_free(g);
}

Test(replay, smaller_last_batch)
{
    for (int dt = 0; dt < 2; dt++) {
        counter c = {0};
        mlp m, fresh;
        mlp_build(&m, dt ? AD_F64 : AD_F32, 8, counting_alloc, &c);
        mlp_data(&m, 8, 0);
        ad_forward(m.g);
        cr_assert_eq(ad_backward(m.loss), 0);
        long calls = c.calls;
        cr_assert_eq(ad_resize(m.x, 3), 0);
        cr_assert_eq(ad_resize(m.labels, 3), 0);
        mlp_data(&m, 3, 4);
        cr_assert_eq(ad_forward(m.g), 0, "%s", ad_graph_error(m.g));
        ad_zero_grad(m.g);
        cr_assert_eq(ad_backward(m.loss), 0, "%s", ad_graph_error(m.g));
        cr_assert_eq(c.calls, calls, "a smaller batch allocated");
        mlp_build(&fresh, dt ? AD_F64 : AD_F32, 3, NULL, NULL);
        mlp_data(&fresh, 3, 4);
        ad_forward(fresh.g);
        cr_assert_eq(ad_backward(fresh.loss), 0);
        cr_assert_eq(ad_item(m.loss), ad_item(fresh.loss));
        double g1[43], g2[43];
        grads_of(&m, g1);
        grads_of(&fresh, g2);
        for (int i = 0; i < 43; i++)
            cr_assert_eq(g1[i], g2[i], "gradient %d differs after resize", i);
        /* and back to a bigger batch than ever: allowed to allocate, still right */
        cr_assert_eq(ad_resize(m.x, 16), 0);
        cr_assert_eq(ad_resize(m.labels, 16), 0);
        mlp_data(&m, 16, 1);
        cr_assert_eq(ad_forward(m.g), 0);
        ad_zero_grad(m.g);
        cr_assert_eq(ad_backward(m.loss), 0);
        cr_assert(isfinite(ad_item(m.loss)));
        ad_graph_free(fresh.g);
        ad_graph_free(m.g);
        cr_assert_eq(c.live, 0);
    }
}

Test(rewind, define_by_run_loop_does_not_grow)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *w = ad_scalar(g, 0.5, "w");
    int64_t mark = ad_graph_mark(g);
    size_t bytes_after_first = 0;
    for (int step = 0; step < 2000; step++) {
        ad_node *x = ad_const_scalar(g, step * 0.001, "x");
        ad_node *loss = ad_pow(ad_sub(ad_mul(w, x), ad_const_scalar(g, 1.0, "t")), 2);
        cr_assert_eq(ad_backward(loss), 0);
        cr_assert_eq(ad_graph_rewind(g, mark), 0);
        cr_assert_eq(ad_graph_size(g), mark);
        if (step == 0)
            bytes_after_first = ad_graph_bytes(g);
        cr_assert_eq(ad_graph_bytes(g), bytes_after_first, "memory grew at step %d", step);
    }
    /* the gradient accumulated over all steps is kept on w */
    double expect = 0;
    for (int step = 0; step < 2000; step++) {
        double x = step * 0.001;
        expect += 2 * (0.5 * x - 1) * x;
    }
    cr_assert_float_eq(ad_grad_item(w), expect, 1e-9);
    ad_graph_free(g);
}

Test(rewind, stale_handle_after_rewind_is_an_error_not_an_alias)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_graph_set_check_finite(g, 1); /* the checking mode keeps stale handles detectable */
    ad_node *w = ad_scalar(g, 0.5, "w");
    int64_t mark = ad_graph_mark(g);
    ad_node *old = ad_mul(w, ad_const_scalar(g, 3.0, "x"));
    cr_assert_float_eq(ad_item(old), 1.5, 1e-15);
    cr_assert_eq(ad_graph_rewind(g, mark), 0);
    ad_node *fresh = ad_add(w, ad_const_scalar(g, 7.0, "y"));
    cr_assert_float_eq(ad_item(fresh), 7.5, 1e-15);
    cr_assert_null(ad_graph_error(g));
    /* the stale handle neither aliases the new node nor reads freed memory */
    cr_assert(isnan(ad_item(old)));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_get: node 2 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_clear_error(g);
    cr_assert_eq(ad_backward(old), -1);
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_backward: node 2 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_clear_error(g);
    cr_assert_null(ad_tanh(old));
    cr_assert_str_eq(ad_graph_error(g),
                     "tanh: node 2 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_free(g);
}

Test(rewind, a_name_given_after_later_nodes_survives_their_rewind)
{
    /* A node made before the mark is named once nodes after the mark exist:
     * the name must not sit in the arena past the mark, where rewinding and
     * making new nodes writes over it. */
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *w = ad_scalar(g, 0.5, "w");
    ad_node *h = ad_tanh(w);
    int64_t mark = ad_graph_mark(g);
    for (int step = 0; step < 3; step++) {
        ad_node *y = ad_mul(h, ad_const_scalar(g, 2.0, "two"));
        char name[32];
        snprintf(name, sizeof name, "hidden-%d", step);
        cr_assert_eq(ad_node_set_name(h, name), 0);
        cr_assert_eq(ad_backward(y), 0);
        cr_assert_eq(ad_graph_rewind(g, mark), 0);
        for (int k = 0; k < 8; k++)
            ad_const_scalar(g, k, "overwritten-if-the-name-was-here");
        cr_assert_str_eq(ad_node_name(h), name);
        cr_assert_eq(ad_graph_rewind(g, mark), 0);
    }
    cr_assert_str_eq(ad_node_name(w), "w");
    cr_assert_eq(ad_node_set_name(w, ""), 0);
    cr_assert_str_eq(ad_node_name(w), "");
    cr_assert_eq(ad_node_set_name(h, NULL), 0);
    cr_assert_str_eq(ad_node_name(h), "");
    /* a stale handle is refused, not written through */
    ad_node *stale = ad_exp(h);
    cr_assert_eq(ad_graph_rewind(g, mark), 0);
    cr_assert_eq(ad_node_set_name(stale, "late"), -1);
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_node_set_name: node 2 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_clear_error(g);
    cr_assert_eq(ad_node_set_name(stale, ""), -1, "unnaming a stale handle is refused too");
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_node_set_name: node 2 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_free(g);
}

Test(rewind, rewind_to_zero_never_frees_memory_a_stale_handle_reaches)
{
    /* Without the checking mode: rewinding to 0 used to free the arena, so
     * using an old node was a heap use after free (caught by ASan and
     * valgrind). Now the blocks are kept for reuse and the stale handle is
     * refused while its memory is not yet reused. */
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 2.0, "x");
    ad_node *y = ad_exp(x);
    size_t bytes = ad_graph_bytes(g);
    cr_assert_eq(ad_graph_rewind(g, 0), 0);
    cr_assert_eq(ad_graph_bytes(g), bytes, "rewind gave memory back to the allocator");
    cr_assert(isnan(ad_item(y)));
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_get: node 1 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_clear_error(g);
    cr_assert_null(ad_neg(x));
    cr_assert_str_eq(ad_graph_error(g),
                     "neg: node 0 was discarded by ad_graph_rewind (a stale handle)");
    ad_graph_free(g);
}

Test(alloc, failure_at_every_allocation_is_reported_and_leaks_nothing)
{
    counter probe = {0};
    mlp m;
    mlp_build(&m, AD_F32, 8, counting_alloc, &probe);
    mlp_data(&m, 8, 0);
    ad_backward(m.loss);
    ad_graph_free(m.g);
    long total = probe.calls;
    cr_assert_gt(total, 3);
    for (long n = 1; n <= total; n++) {
        counter c = {.fail_at = n};
        mlp_build(&m, AD_F32, 8, counting_alloc, &c);
        if (!m.g) {
            cr_assert_eq(n, 1);
            cr_assert_eq(c.live, 0);
            continue;
        }
        mlp_data(&m, 8, 0);
        int rc = m.loss ? ad_backward(m.loss) : -1;
        if (rc != 0) {
            const char *err = ad_graph_error(m.g);
            cr_assert_not_null(err, "allocation %ld failed without an error", n);
            cr_assert(strstr(err, "out of memory") != NULL, "allocation %ld: %s", n, err);
        }
        ad_graph_free(m.g);
        cr_assert_eq(c.live, 0, "allocation %ld failing leaked %ld blocks", n, c.live);
    }
}

/* Engine-private state is never a parameter: matmul's "accumulate into the
 * leaf's gradient" is a node flag, and a third integer parameter is refused
 * on apply (it used to make every ad_forward add the product again: 2, 4, 6). */
Test(registry, matmul_refuses_engine_flags_as_parameters)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {1, 1};
    ad_node *a = ad_const(g, 2, s, (double[]){1}, "a");
    ad_node *b = ad_const(g, 2, s, (double[]){2}, "b");
    ad_node *in[2] = {a, b};
    int64_t ip[3] = {0, 0, 1};
    cr_assert_null(ad_op_apply(ad_op_find("matmul"), 2, in, NULL, 0, ip, 3));
    cr_assert_str_eq(ad_graph_error(g), "ad_matmul: integer parameter 2 is 1; matmul takes two "
                                        "transpose flags (0 or 1) and nothing else");
    ad_graph_clear_error(g);
    int64_t flags[2] = {0, 2};
    cr_assert_null(ad_op_apply(ad_op_find("matmul"), 2, in, NULL, 0, flags, 2));
    cr_assert_not_null(strstr(ad_graph_error(g), "integer parameter 1 is 2"));
    ad_graph_clear_error(g);
    ad_node *y = ad_op_apply(ad_op_find("matmul"), 2, in, NULL, 0, ip, 2);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ad_forward(g), 0);
        cr_assert_float_eq(ad_item(y), 2.0, 0, "replay %d", i);
    }
    ad_graph_free(g);
}

Test(registry, parameter_rules_run_on_apply)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.5, "x");
    double lohi[2] = {1, -1};
    cr_assert_null(ad_op_apply(ad_op_find("clamp"), 1, &x, lohi, 2, NULL, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_clamp: lo 1 is greater than hi -1");
    ad_graph_clear_error(g);
    double keep = 0;
    cr_assert_null(ad_op_apply(ad_op_find("dropout_mask"), 1, &x, &keep, 1, NULL, 0));
    cr_assert_str_eq(ad_graph_error(g), "ad_dropout_mask: keep probability 0 is not in (0, 1]");
    ad_graph_free(g);
}

/* Found by fuzzing: an offset of INT64_MAX made slice_backward's fit check
 * overflow (undefined behaviour) instead of refusing. */
Test(registry, slice_backward_refuses_an_offset_past_the_end)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s2[1] = {2}, s5[1] = {5};
    ad_node *in[2] = {ad_const(g, 1, s2, (double[]){1, 2}, "a"), ad_const(g, 1, s5, NULL, "like")};
    int64_t ip[2] = {0, INT64_MAX};
    cr_assert_null(ad_op_apply(ad_op_find("slice_backward"), 2, in, NULL, 0, ip, 2));
    cr_assert_str_eq(ad_graph_error(g), "ad_slice_backward: shape (2) does not fit (5)");
    ad_graph_clear_error(g);
    ip[1] = 4; /* rows 4 and 5 of 5: one past the end */
    cr_assert_null(ad_op_apply(ad_op_find("slice_backward"), 2, in, NULL, 0, ip, 2));
    ad_graph_clear_error(g);
    ip[1] = 3; /* rows 3 and 4: fits */
    ad_node *y = ad_op_apply(ad_op_find("slice_backward"), 2, in, NULL, 0, ip, 2);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    const double *v = ad_data(y);
    cr_assert(v[0] == 0 && v[2] == 0 && v[3] == 1 && v[4] == 2);
    ad_graph_free(g);
}

/* Where the reason of a failure is, when there is no object to hold it. */
Test(errors, a_graph_that_cannot_be_made_says_why)
{
    ad_error err = {.code = AD_OK};
    cr_assert_null(ad_graph_new((ad_dtype)7));
    cr_assert_null(ad_graph_new_err((ad_dtype)7, NULL, NULL, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "ad_graph_new: dtype 7 is not AD_F32 or AD_F64");
    counter c = {.fail_at = 1};
    cr_assert_null(ad_graph_new_err(AD_F64, counting_alloc, &c, &err));
    cr_assert_eq(err.code, AD_ENOMEM);
    cr_assert_not_null(strstr(err.message, "out of memory"));
    ad_graph *g = ad_graph_new_err(AD_F32, NULL, NULL, &err);
    cr_assert_not_null(g);
    cr_assert_eq(err.code, AD_OK);
    cr_assert_str_eq(err.message, "");
    ad_graph_free(g);
}

Test(errors, a_null_node_points_at_the_graph_error)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s23[2] = {2, 3};
    ad_node *a = ad_param(g, 2, s23, "a");
    ad_node *bad = ad_matmul(a, a); /* (2,3) @ (2,3): fails, returns NULL */
    cr_assert_null(bad);
    ad_node *loss = ad_sum(bad, AD_ALL);
    cr_assert_null(loss);
    cr_assert_eq(ad_backward(loss), -1);
    cr_assert_eq(ad_set(NULL, (double[]){1}, 1), -1);
    /* the reason of both is the failing op's, kept on the graph */
    cr_assert_not_null(strstr(ad_graph_error(g), "ad_matmul: shapes (2,3) and (2,3)"), "%s",
                       ad_graph_error(g));
    ad_graph_free(g);
}

Test(introspection, registry_and_nodes)
{
    int n = ad_op_count();
    cr_assert_gt(n, 40);
    cr_assert_eq(ad_op_find("tanh") >= 0, 1);
    cr_assert_str_eq(ad_op_name(ad_op_find("matmul")), "matmul");
    cr_assert_eq(ad_op_arity(ad_op_find("where")), 3);
    cr_assert_eq(ad_op_arity(ad_op_find("concat")), -1);
    cr_assert_eq(ad_op_find("no such op"), -1);
    for (int i = 0; i < n; i++) {
        cr_assert_not_null(ad_op_name(i));
        cr_assert_not_null(ad_op_rule(i));
        cr_assert_eq(ad_op_find(ad_op_name(i)), i, "op names must be unique: %s", ad_op_name(i));
    }
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 3};
    ad_node *x = ad_param(g, 2, s, "x");
    ad_node *y = ad_sum(x, 1);
    cr_assert_eq(ad_ndim(y), 1);
    cr_assert_eq(ad_shape(y)[0], 2);
    cr_assert_str_eq(ad_op_name(ad_node_op(y)), "sum");
    cr_assert_eq(ad_node_id(y), 1);
    cr_assert_eq(ad_graph_node(g, 1), y);
    cr_assert(ad_node_requires_grad(y));
    ad_backward(ad_sum(y, AD_ALL));
    cr_assert_not_null(ad_node_grad(x));
    cr_assert(ad_node_is_backward(ad_node_grad(x)));
    ad_graph_free(g);
}

Test(print, tensor_and_scalar)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[2] = {2, 2};
    double v[4] = {1, 2.5, -3, 4};
    ad_node *a = ad_const(g, 2, s, v, "A");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ad_print(a, f);
    ad_print(ad_sum(a, AD_ALL), f);
    fclose(f);
    cr_assert_str_eq(buf, "A const (2,2) = [1, 2.5;\n -3, 4]\nsum () = 4.5\n");
    free(buf);
    ad_graph_free(g);
}

Test(replay, resize_keeps_aliases_valid_and_failure_keeps_shape)
{
    counter c = {0};
    ad_graph *g = ad_graph_new_with(AD_F64, counting_alloc, &c);
    int64_t s[2] = {2, 3}, flat[1] = {-1};
    ad_node *x = ad_input(g, 2, s, "x");
    ad_node *r = ad_reshape(x, 1, flat);
    cr_assert_eq(ad_resize(x, 50), 0); /* grows: a new buffer */
    double v[150];
    for (int i = 0; i < 150; i++)
        v[i] = i;
    cr_assert_eq(ad_set(x, v, 150), 0);
    /* the reshape follows the new buffer before any replay */
    cr_assert_eq(ad_data(r), ad_data(x));
    cr_assert_eq(ad_forward(g), 0);
    cr_assert_eq(ad_numel(r), 150);
    cr_assert_eq(((double *)ad_data(r))[149], 149.0);
    /* an allocation failure while growing leaves the input as it was */
    c.fail_at = c.calls + 1;
    cr_assert_eq(ad_resize(x, 5000), -1);
    cr_assert(strstr(ad_graph_error(g), "out of memory") != NULL);
    cr_assert_eq(ad_shape(x)[0], 50);
    cr_assert_eq(ad_numel(x), 150);
    ad_graph_clear_error(g);
    cr_assert_eq(ad_set(x, v, 150), 0);
    ad_graph_free(g);
    cr_assert_eq(c.live, 0);
}

/* A replay whose new shape cannot get memory keeps the node's old shape, the
 * one its buffer holds.  Found by fuzzing: a one-hot replayed at a bigger
 * batch whose buffer could not grow kept the new shape, and after the error
 * was cleared ad_take read the one-hot as if it had those elements. */
Test(replay, failed_growth_keeps_the_shape_its_buffer_holds)
{
    counter c = {0};
    ad_graph *g = ad_graph_new_with(AD_F64, counting_alloc, &c);
    int64_t s[1] = {1}, two[1] = {2};
    ad_node *x = ad_input(g, 1, s, "x");
    ad_node *h = ad_one_hot(x, 1000);
    cr_assert_not_null(h, "%s", ad_graph_error(g));
    cr_assert_eq(ad_resize(x, 64), 0);
    double zeros[64] = {0};
    cr_assert_eq(ad_set(x, zeros, 64), 0);
    c.fail_at = c.calls + 1; /* the one-hot's bigger buffer */
    cr_assert_eq(ad_forward(g), -1);
    cr_assert(strstr(ad_graph_error(g), "out of memory") != NULL, "%s", ad_graph_error(g));
    cr_assert_eq(ad_ndim(h), 2);
    cr_assert_eq(ad_shape(h)[0], 1);
    cr_assert_eq(ad_shape(h)[1], 1000);
    cr_assert_eq(ad_numel(h), 1000);
    ad_graph_clear_error(g);
    /* the node is still usable after the cleared error, within what it holds */
    ad_node *t = ad_take(h, ad_const(g, 1, two, zeros, "i"), 1);
    cr_assert_not_null(t, "%s", ad_graph_error(g));
    cr_assert_eq(ad_shape(t)[0], 1);
    cr_assert_eq(ad_shape(t)[1], 2);
    cr_assert_eq(((double *)ad_data(t))[0], 1.0);
    /* with memory the replay completes at the new batch */
    cr_assert_eq(ad_forward(g), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_shape(h)[0], 64);
    cr_assert_eq(ad_shape(t)[0], 64);
    ad_graph_free(g);
    cr_assert_eq(c.live, 0);
}

/* Stable forms: finite values and gradients for inputs up to +-1e4 in both dtypes. */
Test(stability, extreme_inputs_stay_finite)
{
    for (int dt = 0; dt < 2; dt++) {
        ad_graph *g = ad_graph_new(dt ? AD_F64 : AD_F32);
        ad_graph_set_check_finite(g, 1);
        int64_t s[2] = {2, 3};
        double v[6] = {1e4, -1e4, 0, -1e4, 1e4, 5e3};
        ad_node *x = ad_param(g, 2, s, "x");
        ad_set(x, v, 6);
        ad_node *parts[5] = {
            ad_sum(ad_sigmoid(x), AD_ALL),         ad_sum(ad_softplus(x), AD_ALL),
            ad_sum(ad_log_softmax(x, -1), AD_ALL), ad_sum(ad_logsumexp(x, -1), AD_ALL),
            ad_sum(ad_softmax(x, 0), AD_ALL),
        };
        ad_node *loss = ad_add_n(5, parts);
        cr_assert_not_null(loss, "%s", ad_graph_error(g));
        cr_assert_eq(ad_backward(loss), 0, "%s", ad_graph_error(g));
        double out[6];
        ad_get_grad(x, out, 6);
        for (int i = 0; i < 6; i++)
            cr_assert(isfinite(out[i]), "gradient %d is %g", i, out[i]);
        /* spot values: softplus(1e4) = 1e4, logsumexp of row 0 = 1e4 */
        cr_assert_float_eq(ad_item(parts[1]), 1e4 + 1e4 + log(2.0) + 5e3, 1e-2 * (dt ? 1e-6 : 1));
        cr_assert_float_eq(ad_item(parts[3]), 2e4, dt ? 1e-9 : 1e-2);
        ad_graph_free(g);
    }
}

Test(semantics, rng_state_training_mode_external_const_and_set_error)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t s[1] = {64};
    ad_node *x = ad_input(g, 1, s, "x");
    uint64_t st[4];
    ad_graph_rng_state(g, st);
    ad_node *m = ad_dropout_mask(x, 0.5);
    double first[64], again[64];
    ad_get(m, first, 64);
    int zeros = 0;
    for (int i = 0; i < 64; i++) {
        cr_assert(first[i] == 0.0 || first[i] == 2.0);
        zeros += first[i] == 0.0;
    }
    cr_assert(zeros > 10 && zeros < 54, "%d zeros", zeros);
    ad_graph_set_rng_state(g, st); /* the same masks again */
    cr_assert_eq(ad_forward(g), 0);
    ad_get(m, again, 64);
    cr_assert_eq(memcmp(first, again, sizeof first), 0);
    ad_graph_rng_state(g, st);
    ad_graph_set_training(g, 0); /* evaluation: ones, the generator untouched */
    cr_assert_eq(ad_graph_is_training(g), 0);
    cr_assert_eq(ad_forward(g), 0);
    ad_get(m, again, 64);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(again[i], 1.0);
    uint64_t st2[4];
    ad_graph_rng_state(g, st2);
    cr_assert_eq(memcmp(st, st2, sizeof st), 0);
    ad_graph_set_training(g, 1);

    double buf[3] = {1, 2, 3};
    int64_t s3[1] = {3};
    ad_node *c = ad_const_external(g, 1, s3, buf, "stats");
    ad_node *y = ad_sum(c, AD_ALL);
    cr_assert_eq(ad_item(y), 6.0);
    buf[2] = 10; /* the caller changes it between replays */
    cr_assert_eq(ad_forward(g), 0);
    cr_assert_eq(ad_item(y), 13.0);

    cr_assert_eq(ad_graph_set_error(g, "nn_dense: zero-width layer"), -1);
    ad_graph_set_error(g, "second");
    cr_assert_str_eq(ad_graph_error(g), "nn_dense: zero-width layer");
    ad_graph_free(g);
}

/* Memory reuse: the same gradients, bit for bit, with fewer bytes, across
 * replays and batch changes. */
Test(replay, memory_reuse_gives_identical_gradients)
{
    for (int dt = 0; dt < 2; dt++) {
        counter c1 = {0}, c2 = {0};
        mlp plain, reuse;
        mlp_build(&plain, dt ? AD_F64 : AD_F32, 8, counting_alloc, &c1);
        mlp_build(&reuse, dt ? AD_F64 : AD_F32, 8, counting_alloc, &c2);
        ad_graph_set_memory_reuse(reuse.g, 1);
        int64_t batches[4] = {8, 3, 16, 8};
        for (int step = 0; step < 4; step++) {
            int64_t b = batches[step];
            mlp *ms[2] = {&plain, &reuse};
            for (int k = 0; k < 2; k++) {
                mlp_feed(ms[k], b, step);
                ad_zero_grad(ms[k]->g);
                cr_assert_eq(ad_backward(ms[k]->loss), 0, "%s", ad_graph_error(ms[k]->g));
            }
            double g1[43], g2[43];
            grads_of(&plain, g1);
            grads_of(&reuse, g2);
            for (int i = 0; i < 43; i++)
                cr_assert_eq(g1[i], g2[i], "dtype %d step %d: gradient %d differs with reuse", dt,
                             step, i);
            /* and against finite differences of the loss for one weight */
        }
        long calls = c2.calls;
        mlp_data(&reuse, 8, 9);
        ad_forward(reuse.g);
        ad_zero_grad(reuse.g);
        cr_assert_eq(ad_backward(reuse.loss), 0);
        cr_assert_eq(c2.calls, calls, "a replay with reuse allocated");
        cr_assert_lt(ad_graph_bytes(reuse.g), ad_graph_bytes(plain.g) + 1);
        ad_graph_free(plain.g);
        ad_graph_free(reuse.g);
        cr_assert_eq(c1.live, 0);
        cr_assert_eq(c2.live, 0);
    }
}

/* Fills every element of a trainable leaf's gradient with v. */
static void poison_grad(ad_graph *g, ad_node *n, double v)
{
    int64_t k = ad_numel(n);
    if (ad_graph_dtype(g) == AD_F32)
        for (int64_t i = 0; i < k; i++)
            ((float *)ad_grad_data(n))[i] = (float)v;
    else
        for (int64_t i = 0; i < k; i++)
            ((double *)ad_grad_data(n))[i] = v;
}

/* ad_backward_overwrite: the gradients of ad_zero_grad + ad_backward, with
 * and without memory reuse, whatever the gradient buffers held, across
 * batch changes; a parameter the loss does not reach gets zeros. */
Test(replay, backward_overwrite_equals_zero_grad_then_backward)
{
    for (int dt = 0; dt < 2; dt++)
        for (int reuse_on = 0; reuse_on < 2; reuse_on++) {
            mlp plain, over;
            mlp_build(&plain, dt ? AD_F64 : AD_F32, 8, NULL, NULL);
            mlp_build(&over, dt ? AD_F64 : AD_F32, 8, NULL, NULL);
            ad_graph_set_memory_reuse(over.g, reuse_on);
            int64_t su[1] = {1100}; /* large enough for a block of its own */
            ad_node *unused = ad_param(over.g, 1, su, "unused");
            cr_assert_not_null(unused);
            int64_t batches[5] = {8, 3, 16, 8, 8};
            for (int step = 0; step < 5; step++) {
                int64_t b = batches[step];
                mlp_feed(&plain, b, step);
                mlp_feed(&over, b, step);
                ad_zero_grad(plain.g);
                cr_assert_eq(ad_backward(plain.loss), 0);
                ad_node *ps[5] = {over.w1, over.b1, over.w2, over.b2, unused};
                for (int k = 0; step > 0 && k < 5; k++)
                    poison_grad(over.g, ps[k], 7.0 + k);
                cr_assert_eq(ad_backward_overwrite(over.loss), 0, "%s", ad_graph_error(over.g));
                double g1[43], g2[43];
                grads_of(&plain, g1);
                grads_of(&over, g2);
                for (int i = 0; i < 43; i++)
                    cr_assert_eq(g1[i], g2[i], "dtype %d reuse %d step %d: gradient %d: %g, not %g",
                                 dt, reuse_on, step, i, g2[i], g1[i]);
                double u[1100];
                cr_assert_eq(ad_get_grad(unused, u, 1100), 0);
                for (int i = 0; i < 1100; i++)
                    cr_assert_eq(u[i], 0.0, "step %d: the unreached parameter's gradient", step);
            }
            /* and ad_backward still adds onto what the overwrite wrote (a
               backend may fold the add into the product's own sum, as
               oneDNN does with beta = 1: equal up to the last bits) */
            double before[43], after[43], tol = dt ? 1e-13 : 1e-6;
            grads_of(&over, before);
            cr_assert_eq(ad_backward(over.loss), 0);
            grads_of(&over, after);
            for (int i = 0; i < 43; i++)
                cr_assert_float_eq(after[i], before[i] + before[i], tol * (1 + fabs(before[i])),
                                   "dtype %d reuse %d gradient %d: %g, not twice %g", dt, reuse_on,
                                   i, after[i], before[i]);
            cr_assert_eq(ad_backward_overwrite(NULL), -1);
            ad_graph_free(plain.g);
            ad_graph_free(over.g);
        }
}

/* One plain SGD step from a leaf's gradient, in the element type (as
 * nn's optimizer and torch's p.add_(g, alpha=-lr)). */
static void sgd_reference_step(ad_node *p, double lr)
{
    int64_t n = ad_numel(p);
    if (ad_graph_dtype(ad_node_graph(p)) == AD_F32) {
        float *v = ad_data(p);
        const float *g = ad_grad_data(p), step = (float)-lr;
        for (int64_t i = 0; i < n; i++)
            v[i] += step * g[i];
    } else {
        double *v = ad_data(p);
        const double *g = ad_grad_data(p);
        for (int64_t i = 0; i < n; i++)
            v[i] += -lr * g[i];
    }
}

/* ad_backward_sgd: the parameters of ad_backward_overwrite followed by the
 * SGD step, to one rounding per step, with and without memory reuse and
 * with the values checked or not, across batch changes; a parameter the
 * loss does not reach is left alone. Once the pass is planned (reuse on,
 * values unchecked), W1's step is inside its gradient's product: its
 * gradient buffer is never written. */
Test(replay, backward_sgd_equals_overwrite_then_step)
{
    const double lr = 0.25;
    for (int dt = 0; dt < 2; dt++)
        for (int mode = 0; mode < 3; mode++) { /* no reuse; reuse; reuse + check_finite */
            mlp ref, sgd;
            mlp_build(&ref, dt ? AD_F64 : AD_F32, 8, NULL, NULL);
            mlp_build(&sgd, dt ? AD_F64 : AD_F32, 8, NULL, NULL);
            ad_graph_set_memory_reuse(ref.g, mode > 0);
            ad_graph_set_memory_reuse(sgd.g, mode > 0);
            ad_graph_set_check_finite(sgd.g, mode == 2);
            int64_t su[1] = {3};
            ad_node *unused = ad_param(sgd.g, 1, su, "unused");
            double uv[3] = {1.5, -2.0, 0.25}, got[3];
            cr_assert_eq(ad_set(unused, uv, 3), 0);
            int64_t batches[5] = {8, 3, 16, 8, 8};
            for (int step = 0; step < 5; step++) {
                int64_t b = batches[step];
                mlp_feed(&ref, b, step);
                mlp_feed(&sgd, b, step);
                cr_assert_eq(ad_backward_overwrite(ref.loss), 0);
                ad_node *rp[4] = {ref.w1, ref.b1, ref.w2, ref.b2};
                for (int k = 0; k < 4; k++)
                    sgd_reference_step(rp[k], lr);
                if (step > 0)
                    poison_grad(sgd.g, sgd.w1, 7.0);
                cr_assert_eq(ad_backward_sgd(sgd.loss, lr), 0, "%s", ad_graph_error(sgd.g));
                double p1[43], p2[43], tol = dt ? 1e-14 : 1e-6;
                params_of(&ref, p1);
                params_of(&sgd, p2);
                for (int i = 0; i < 43; i++)
                    cr_assert_float_eq(p2[i], p1[i], tol * (1 + fabs(p1[i])),
                                       "dtype %d mode %d step %d: parameter %d: %.17g, not %.17g",
                                       dt, mode, step, i, p2[i], p1[i]);
                cr_assert_eq(ad_get(unused, got, 3), 0);
                for (int i = 0; i < 3; i++)
                    cr_assert_eq(got[i], uv[i], "step %d: the unreached parameter moved", step);
                if (step > 0) {
                    double g[20];
                    cr_assert_eq(ad_get_grad(sgd.w1, g, 20), 0);
                    for (int i = 0; i < 20; i++)
                        if (mode == 1)
                            cr_assert_eq(g[i], 7.0, "step %d: W1's step was not fused", step);
                        else
                            cr_assert_neq(g[i], 7.0, "mode %d step %d: W1's gradient unwritten",
                                          mode, step);
                }
            }
            ad_graph_free(ref.g);
            ad_graph_free(sgd.g);
        }
}

/* Two graphs of one shape: graph 0 steps with ad_backward_overwrite and the
 * separate step, graph 1 with ad_backward_sgd; W is the leaf checked. */
typedef struct {
    ad_graph *g[2];
    ad_node *w[2], *loss[2];
    ad_node *params[2][2]; /* each graph's trainable leaves, W last */
    int nparams;
} sgd_pair;

static void sgd_pair_check(sgd_pair *p, int dt, int64_t nw, bool grad_written)
{
    for (int step = 0; step < 4; step++) {
        for (int k = 0; k < 2; k++)
            cr_assert_eq(ad_forward(p->g[k]), 0);
        cr_assert_eq(ad_backward_overwrite(p->loss[0]), 0);
        for (int i = 0; i < p->nparams; i++)
            sgd_reference_step(p->params[0][i], 0.5);
        if (step > 0)
            poison_grad(p->g[1], p->w[1], 7.0);
        cr_assert_eq(ad_backward_sgd(p->loss[1], 0.5), 0, "%s", ad_graph_error(p->g[1]));
        double a[24], b[24], gw[24], tol = dt ? 1e-14 : 1e-6;
        for (int i = 0; i < p->nparams; i++) {
            int64_t n = ad_numel(p->params[0][i]);
            ad_get(p->params[0][i], a, n);
            ad_get(p->params[1][i], b, n);
            for (int64_t j = 0; j < n; j++)
                cr_assert_float_eq(b[j], a[j], tol * (1 + fabs(a[j])),
                                   "dtype %d step %d: parameter %d[%d] %.17g, not %.17g", dt, step,
                                   i, (int)j, b[j], a[j]);
        }
        ad_get_grad(p->w[1], gw, nw);
        for (int64_t i = 0; step > 0 && i < nw; i++)
            cr_assert_eq(gw[i] != 7.0, grad_written, "dtype %d step %d: W's gradient buffer %s", dt,
                         step, grad_written ? "unwritten" : "written");
    }
    for (int k = 0; k < 2; k++)
        ad_graph_free(p->g[k]);
}

static void fill_sin(ad_node *n, double scale)
{
    double v[64];
    int64_t k = ad_numel(n);
    for (int64_t i = 0; i < k; i++)
        v[i] = scale * sin(1.3 * (double)i + 0.4);
    ad_set(n, v, k);
}

/* A weight whose value a later backward node reads (y = W * h, W of h's
 * shape: h's gradient, G * W, comes after W's, G * h) keeps its gradient and takes its step
 * after the pass; a weight shared by three products (its gradient a sum
 * complete at the end of the pass) takes it then. Both match the separate
 * step. */
Test(replay, backward_sgd_waits_for_a_weight_read_later)
{
    for (int dt = 0; dt < 2; dt++) {
        sgd_pair p;
        for (int k = 0; k < 2; k++) {
            p.g[k] = ad_graph_new(dt ? AD_F64 : AD_F32);
            ad_graph_set_memory_reuse(p.g[k], 1);
            int64_t sx[2] = {6, 4}, sa[2] = {4, 4}, sw[2] = {6, 4};
            ad_node *x = ad_input(p.g[k], 2, sx, "x");
            ad_node *a = ad_param(p.g[k], 2, sa, "A");
            p.w[k] = ad_param(p.g[k], 2, sw, "W");
            fill_sin(x, 1.0);
            fill_sin(a, 0.3);
            fill_sin(p.w[k], 0.8);
            ad_node *y = ad_mul(p.w[k], ad_tanh(ad_matmul(x, a)));
            p.params[k][0] = a;
            p.params[k][1] = p.w[k];
            p.nparams = 2;
            p.loss[k] = ad_mean(ad_mul(y, y), AD_ALL);
            cr_assert_not_null(p.loss[k], "%s", ad_graph_error(p.g[k]));
        }
        sgd_pair_check(&p, dt, 24, true);

        for (int k = 0; k < 2; k++) {
            p.g[k] = ad_graph_new(dt ? AD_F64 : AD_F32);
            ad_graph_set_memory_reuse(p.g[k], 1);
            int64_t sx[2] = {6, 4}, sw[2] = {4, 4};
            ad_node *x = ad_input(p.g[k], 2, sx, "x");
            p.w[k] = ad_param(p.g[k], 2, sw, "W");
            fill_sin(x, 1.0);
            fill_sin(p.w[k], 0.3);
            ad_node *h = ad_tanh(ad_matmul(x, p.w[k]));
            p.params[k][0] = p.w[k];
            p.nparams = 1;
            p.loss[k] = ad_mean(ad_mul(ad_matmul(h, p.w[k]), ad_matmul(h, p.w[k])), AD_ALL);
            cr_assert_not_null(p.loss[k], "%s", ad_graph_error(p.g[k]));
        }
        sgd_pair_check(&p, dt, 16, false);
    }
}

Test(errors, backward_sgd_refuses_a_bad_learning_rate)
{
    mlp m;
    mlp_build(&m, AD_F64, 8, NULL, NULL);
    mlp_data(&m, 8, 0);
    cr_assert_eq(ad_forward(m.g), 0);
    double before[43], after[43];
    params_of(&m, before);
    cr_assert_eq(ad_backward_sgd(m.loss, -1.0), -1);
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_backward_sgd: learning rate -1 must be finite and >= 0");
    params_of(&m, after);
    for (int i = 0; i < 43; i++)
        cr_assert_eq(after[i], before[i], "parameter %d changed by a refused step", i);
    ad_graph_free(m.g);
    mlp_build(&m, AD_F64, 8, NULL, NULL);
    mlp_data(&m, 8, 0);
    cr_assert_eq(ad_forward(m.g), 0);
    cr_assert_eq(ad_backward_sgd(m.loss, NAN), -1);
    cr_assert_str_eq(ad_graph_error(m.g),
                     "ad_backward_sgd: learning rate nan must be finite and >= 0");
    ad_graph_free(m.g);
    cr_assert_eq(ad_backward_sgd(NULL, 0.1), -1);
}

Test(errors, softmax_of_an_empty_axis_beside_huge_ones_is_immediate)
{
    /* (0, 2^28, 2^28) holds no element; the softmax over axis 0 used to loop
       2^56 times over nothing (found by fuzz_graph: 23 s for (0, 64, ..., 64)) */
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t shape[3] = {0, (int64_t)1 << 28, (int64_t)1 << 28};
    ad_node *x = ad_input(g, 3, shape, "x");
    ad_node *y = ad_softmax(x, 0), *z = ad_log_softmax(x, 0);
    cr_assert_not_null(y, "%s", ad_graph_error(g));
    cr_assert_not_null(z, "%s", ad_graph_error(g));
    cr_assert_eq(ad_numel(y), 0);
    cr_assert_eq(ad_shape(z)[2], (int64_t)1 << 28);
    cr_assert_eq(ad_forward(g), 0);
    /* an empty tensor's other axes are bounded like a full one's: (0, 2^62, 3)
       made outer x inner overflow (signed overflow found by fuzz_graph) */
    int64_t huge[3] = {0, (int64_t)1 << 62, 3};
    cr_assert_null(ad_input(g, 3, huge, "e"));
    cr_assert_str_eq(ad_graph_error(g), "ad_input: element count overflows");
    ad_graph_free(g);
}

/* ------------------------------------------------------- borrowed inputs */

/* loss = sum(reshape(x, (6)) * w): the reshape aliases x's buffer, and w's
   gradient is x's values */
typedef struct {
    ad_graph *g;
    ad_node *x, *w, *flat, *loss;
} borrow_net;

static borrow_net borrow_net_new(ad_dtype dt, counter *c)
{
    borrow_net b;
    b.g = c ? ad_graph_new_with(dt, counting_alloc, c) : ad_graph_new(dt);
    int64_t xs[2] = {3, 2}, fs[1] = {6};
    b.x = ad_input(b.g, 2, xs, "x");
    b.w = ad_param(b.g, 1, fs, "w");
    double ones[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(ad_set(b.w, ones, 6), 0);
    b.flat = ad_reshape(b.x, 1, fs);
    b.loss = ad_sum(ad_mul(b.flat, b.w), AD_ALL);
    cr_assert_not_null(b.loss, "%s", ad_graph_error(b.g));
    return b;
}

Test(borrow, an_input_reads_the_callers_memory_in_place)
{
    for (int dt = 0; dt < 2; dt++) {
        borrow_net b = borrow_net_new(dt ? AD_F64 : AD_F32, NULL);
        float xf[6] = {1, 2, 3, 4, 5, 6}, yf[6] = {-1, 0.5f, 2, 0, 8, 1};
        double xd[6] = {1, 2, 3, 4, 5, 6}, yd[6] = {-1, 0.5, 2, 0, 8, 1};
        const void *xv = dt ? (const void *)xd : (const void *)xf;
        const void *yv = dt ? (const void *)yd : (const void *)yf;
        cr_assert_eq(ad_input_borrow(b.x, xv), 0, "%s", ad_graph_error(b.g));
        cr_assert_eq(ad_data(b.x), xv, "the input reads the caller's array");
        cr_assert_eq(ad_forward(b.g), 0, "%s", ad_graph_error(b.g));
        cr_assert_eq(ad_data(b.flat), xv, "the reshape follows the borrowed buffer");
        cr_assert_float_eq(ad_item(b.loss), 21.0, 1e-12);
        cr_assert_eq(ad_backward(b.loss), 0, "%s", ad_graph_error(b.g));
        double gw[6];
        cr_assert_eq(ad_get_grad(b.w, gw, 6), 0);
        for (int i = 0; i < 6; i++)
            cr_assert_float_eq(gw[i], xd[i], 1e-12, "dloss/dw[%d] = %g", i, gw[i]);
        /* another array: the borrow moves there */
        cr_assert_eq(ad_input_borrow(b.x, yv), 0);
        cr_assert_eq(ad_forward(b.g), 0);
        cr_assert_float_eq(ad_item(b.loss), 10.5, 1e-12);
        /* the end of the borrow keeps what the input read */
        cr_assert_eq(ad_input_borrow(b.x, NULL), 0);
        cr_assert_neq(ad_data(b.x), yv);
        if (dt)
            yd[4] = 100;
        else
            yf[4] = 100;
        double got[6];
        cr_assert_eq(ad_get(b.x, got, 6), 0);
        cr_assert_float_eq(got[4], 8.0, 1e-12, "the input's own copy, not the caller's array");
        cr_assert_eq(ad_forward(b.g), 0);
        cr_assert_float_eq(ad_item(b.loss), 10.5, 1e-12);
        cr_assert_eq(ad_data(b.flat), ad_data(b.x), "the reshape is back on the own buffer");
        /* nothing was ever written into the caller's arrays */
        for (int i = 0; i < 6; i++)
            cr_assert_float_eq(dt ? xd[i] : (double)xf[i], (double)(i + 1), 1e-12);
        cr_assert_eq(ad_input_borrow(b.x, NULL), 0, "ending no borrow is a no-op");
        ad_graph_free(b.g);
    }
}

Test(borrow, writing_the_input_ends_the_borrow_without_touching_the_callers_memory)
{
    borrow_net b = borrow_net_new(AD_F64, NULL);
    double x[6] = {1, 2, 3, 4, 5, 6}, v[6] = {2, 2, 2, 2, 2, 2}, got[6];
    cr_assert_eq(ad_input_borrow(b.x, x), 0);
    cr_assert_eq(ad_set(b.x, v, 6), 0);
    cr_assert_neq(ad_data(b.x), (void *)x);
    cr_assert_float_eq(x[0], 1.0, 0, "ad_set wrote into the borrowed array");
    cr_assert_eq(ad_forward(b.g), 0);
    cr_assert_float_eq(ad_item(b.loss), 12.0, 1e-12);
    float vf[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(ad_input_borrow(b.x, x), 0);
    cr_assert_eq(ad_set_f32(b.x, vf, 6), 0);
    cr_assert_float_eq(x[1], 2.0, 0, "ad_set_f32 wrote into the borrowed array");
    cr_assert_eq(ad_forward(b.g), 0);
    cr_assert_float_eq(ad_item(b.loss), 6.0, 1e-12);
    /* ad_resize zero-fills the input's own buffer, not the caller's */
    cr_assert_eq(ad_input_borrow(b.x, x), 0);
    cr_assert_eq(ad_resize(b.x, 3), 0);
    cr_assert_eq(ad_get(b.x, got, 6), 0);
    for (int i = 0; i < 6; i++) {
        cr_assert_float_eq(got[i], 0.0, 0);
        cr_assert_float_eq(x[i], (double)(i + 1), 0);
    }
    ad_graph_free(b.g);
}

Test(borrow, refusals_name_the_node)
{
    borrow_net b = borrow_net_new(AD_F32, NULL);
    float x[6] = {0};
    cr_assert_eq(ad_input_borrow(NULL, x), -1);
    cr_assert_eq(ad_input_borrow(b.w, x), -1);
    cr_assert_str_eq(ad_graph_error(b.g), "ad_input_borrow: node 'w' (param) is not an input leaf");
    ad_graph_clear_error(b.g);
    cr_assert_eq(ad_input_borrow(b.flat, NULL), -1, "not an input, even to end a borrow");
    ad_graph_free(b.g);
}

Test(borrow, many_inputs_rewind_and_free_give_every_block_back)
{
    counter c = {0};
    ad_graph *g = ad_graph_new_with(AD_F64, counting_alloc, &c);
    int64_t s[1] = {5};
    double data[9][5];
    ad_node *in[9];
    ad_node *sum = NULL;
    for (int k = 0; k < 9; k++) {
        for (int i = 0; i < 5; i++)
            data[k][i] = k + 0.1 * i;
        in[k] = ad_input(g, 1, s, "in");
        sum = sum ? ad_add(sum, in[k]) : in[k];
    }
    ad_node *total = ad_sum(sum, AD_ALL);
    int64_t mark = ad_graph_mark(g);
    long before = c.calls;
    for (int k = 0; k < 4; k++)
        cr_assert_eq(ad_input_borrow(in[k], data[k]), 0);
    cr_assert_eq(c.calls, before, "four borrows allocate nothing");
    for (int k = 4; k < 9; k++)
        cr_assert_eq(ad_input_borrow(in[k], data[k]), 0, "%s", ad_graph_error(g));
    cr_assert_eq(ad_forward(g), 0);
    double want = 0;
    for (int k = 0; k < 9; k++)
        for (int i = 0; i < 5; i++)
            want += data[k][i];
    cr_assert_float_eq(ad_item(total), want, 1e-9);
    /* inputs made after a mark end their borrows when rewound past */
    ad_node *late = ad_input(g, 1, s, "late");
    double z[5] = {0};
    cr_assert_eq(ad_input_borrow(late, z), 0);
    cr_assert_eq(ad_graph_rewind(g, mark), 0);
    cr_assert_eq(ad_input_borrow(in[8], NULL), 0);
    cr_assert_eq(ad_forward(g), 0);
    cr_assert_float_eq(ad_item(total), want, 1e-9, "in[8] kept the values it read");
    ad_graph_free(g);
    cr_assert_eq(c.live, 0, "%ld blocks leaked", c.live);
}
