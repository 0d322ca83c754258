/* libFuzzer target: fuzz bytes become a random sequence of autodiff API calls
 * (random ops from the registry, shapes of up to 5 axes, axes and integer
 * parameters from small to extreme (INT64_MIN ... INT64_MAX), NULL operands,
 * the public constructors of the shape, reduction, convolution and pooling
 * ops with arbitrary options, backward, replay, resize, rewind, allocation
 * failure). Every call must either succeed with finite values (anomaly mode
 * is on, so a non-finite result is an error, not a success) or leave an
 * error message; nothing may crash or leak. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"

typedef struct {
    const uint8_t *p;
    size_t n;
} bytes;

static int take(bytes *b)
{
    if (b->n == 0)
        return -1;
    b->n--;
    return *b->p++;
}

static int take_or(bytes *b, int dflt)
{
    int v = take(b);
    return v < 0 ? dflt : v;
}

/* An integer parameter: mostly small (-2 ... 3, the interesting range of
 * axes, strides and paddings), sometimes extreme. */
static int64_t take_int(bytes *b, int dflt)
{
    static const int64_t extreme[] = {INT64_MAX,
                                      INT64_MIN,
                                      INT32_MAX,
                                      INT32_MIN,
                                      (int64_t)1 << 31,
                                      (int64_t)1 << 62,
                                      -((int64_t)1 << 62),
                                      4096,
                                      AD_ALL,
                                      -7,
                                      64};
    int v = take_or(b, dflt);
    if (v < 245)
        return v % 6 - 2;
    return extreme[(v - 245) % (int)(sizeof extreme / sizeof extreme[0])];
}

/* The same clipped to int (the public constructors' option fields). */
static int take_cint(bytes *b, int dflt)
{
    int64_t v = take_int(b, dflt);
    return v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
}

typedef struct {
    long live, calls, fail_at;
} counter;

static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *c = ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr)
            c->live--;
        free(ptr);
        return NULL;
    }
    if (nsize > ((size_t)1 << 20))
        return NULL; /* keep the fuzzer's memory and time bounded: a valid 2^28-byte
                        one-hot (grown by resizing its input) replayed 60 times took
                        10 s under the sanitizers */
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return NULL;
    void *q = realloc(ptr, nsize);
    if (q && !ptr)
        c->live++;
    return q;
}

#define POOL 16

static void check_result(ad_graph *g, ad_node *r, int had_null)
{
    if (r) {
        int finite = 1;
        for (int64_t i = 0; i < r->numel; i++) {
            double v = g->dtype == AD_F32 ? ((float *)r->value)[i] : ((double *)r->value)[i];
            if (!isfinite(v))
                finite = 0;
        }
        if (!finite)
            abort(); /* anomaly mode should have refused it */
    } else if (!had_null && !ad_graph_error(g)) {
        abort(); /* failed without saying why */
    }
    ad_graph_clear_error(g);
}

/* The public constructors of the shape, keepdims-reduction, convolution and
 * pooling ops, called as a user would, with options from the bytes. */
static ad_node *public_op(bytes *b, int which, ad_node *a, ad_node *o)
{
    int axis = take_cint(b, 0);
    switch (which) {
    case 0:
    case 1: {
        ad_conv_opts co = {{take_cint(b, 1), take_cint(b, 1)},
                           {take_cint(b, 2), take_cint(b, 2)},
                           {take_cint(b, 1), take_cint(b, 1)},
                           take_cint(b, 1)};
        int dflt = take_or(b, 0) & 1;
        return which == 0 ? ad_conv1d(a, o, dflt ? NULL : &co) : ad_conv2d(a, o, dflt ? NULL : &co);
    }
    case 2:
    case 3:
    case 4:
    case 5: {
        ad_pool_opts po = {{take_cint(b, 3), take_cint(b, 3)},
                           {take_cint(b, 2), take_cint(b, 2)},
                           {take_cint(b, 2), take_cint(b, 2)}};
        ad_pool_opts *p = take_or(b, 0) == 255 ? NULL : &po;
        return which == 2   ? ad_max_pool1d(a, p)
               : which == 3 ? ad_max_pool2d(a, p)
               : which == 4 ? ad_avg_pool1d(a, p)
                            : ad_avg_pool2d(a, p);
    }
    case 6:
        return ad_take(a, o, axis);
    case 7: {
        int axes[AD_MAX_DIMS];
        for (int k = 0; k < AD_MAX_DIMS; k++)
            axes[k] = take_cint(b, 2);
        return ad_permute(a, axes);
    }
    case 8:
        return ad_pad(a, axis, take_int(b, 3), take_int(b, 3),
                      ((double)take_or(b, 128) - 128.0) / 16.0);
    case 9:
        return ad_slice_step(a, axis, take_int(b, 2), take_int(b, 3), take_int(b, 3));
    case 10:
        return take_or(b, 0) & 1 ? ad_squeeze(a, axis) : ad_unsqueeze(a, axis);
    case 11:
        switch (take_or(b, 0) % 5) {
        case 0:
            return ad_sum_keepdims(a, axis);
        case 1:
            return ad_mean_keepdims(a, axis);
        case 2:
            return ad_max_keepdims(a, axis);
        case 3:
            return ad_min_keepdims(a, axis);
        default:
            return ad_logsumexp_keepdims(a, axis);
        }
    case 12: {
        int64_t shape[AD_MAX_DIMS];
        int nd = take_or(b, 2) % 6;
        double product = 1; /* a valid but large target only costs time */
        for (int k = 0; k < nd; k++) {
            shape[k] = take_int(b, 4);
            product *= shape[k] > 0 && shape[k] <= 4096 ? (double)shape[k] : 1.0;
        }
        if (product > 65536)
            return a; /* skipped */
        return take_or(b, 0) & 1 ? ad_reshape(a, nd, shape) : ad_broadcast_to(a, nd, shape);
    }
    case 13: {
        ad_node *parts[3] = {a, o, take_or(b, 0) == 255 ? NULL : a};
        return ad_concat(1 + take_or(b, 0) % 3, parts, axis);
    }
    case 14:
        return ad_slice(a, axis, take_int(b, 2), take_int(b, 3));
    default:
        return ad_one_hot(a, take_int(b, 3));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes b = {data, size};
    counter c = {0, 0, 0};
    int head = take_or(&b, 0);
    if (head & 0x80)
        c.fail_at = 1 + take_or(&b, 0) * 4 + (head & 3);
    ad_graph *g = ad_graph_new_with((head & 1) ? AD_F32 : AD_F64, fuzz_alloc, &c);
    if (!g)
        return 0;
    ad_graph_set_check_finite(g, 1);
    ad_node *pool[POOL] = {0};
    int64_t pool_id[POOL] = {0}; /* ids recorded at insertion: a rewound node is gone */
    int npool = 0;
    int64_t mark = -1;

    /* a few leaves */
    int nleaves = 1 + take_or(&b, 0) % 4;
    for (int i = 0; i < nleaves && npool < POOL; i++) {
        int v = take_or(&b, 1), nd = v < 248 ? v % 4 : 4 + v % 2; /* 0 to 5 axes */
        int64_t shape[AD_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            shape[d] = take_or(&b, 2) % 4;
        int kind = take_or(&b, 0) % 3;
        ad_node *leaf = kind == 0   ? ad_param(g, nd, shape, "p")
                        : kind == 1 ? ad_input(g, nd, shape, "x")
                                    : ad_const(g, nd, shape, NULL, "c");
        check_result(g, leaf, 0);
        if (!leaf)
            continue;
        double vals[64];
        int64_t n = leaf->numel < 64 ? leaf->numel : 64;
        for (int64_t k = 0; k < n; k++)
            vals[k] = ((double)take_or(&b, 100) - 100.0) / 37.0;
        if (n == leaf->numel)
            ad_set(leaf, vals, n);
        ad_graph_clear_error(g);
        pool_id[npool] = leaf->id;
        pool[npool++] = leaf;
    }
    if (npool == 0) {
        ad_graph_free(g);
        if (c.live)
            abort();
        return 0;
    }

    for (int step = 0; step < 64 && b.n > 0; step++) {
        int action = take_or(&b, 0);
        ad_node *a = pool[take_or(&b, 0) % npool];
        if (action >= 240) { /* a public constructor with arbitrary options */
            ad_node *o = pool[take_or(&b, 0) % npool];
            int64_t before = ad_graph_mark(g);
            ad_node *r = public_op(&b, action - 240, a, o);
            /* only a node made now was computed now: one the constructor
               returned as it was (a skipped reshape) may hold a replay's
               refused non-finite values */
            if (!r || r->id >= before)
                check_result(g, r, 0);
            else
                ad_graph_clear_error(g);
            if (r && r->numel <= 256) {
                int slot = npool < POOL ? npool++ : take_or(&b, 0) % POOL;
                pool[slot] = r;
                pool_id[slot] = r->id;
            } else if (r && r->numel > 4096) {
                ad_graph_rewind(g, before); /* checked; replaying it would only cost time */
            }
            continue;
        }
        switch (action % 8) {
        case 0:
        case 1:
        case 2:
        case 3: { /* an op from the registry */
            int op = take_or(&b, 0) % ad_op_count();
            int arity = ad_op_arity(op);
            int nin = arity < 0 ? 1 + take_or(&b, 1) % 3 : arity;
            ad_node *in[4] = {0};
            int had_null = 0;
            for (int k = 0; k < nin && k < 4; k++) {
                int pick = take_or(&b, 0);
                in[k] = pick == 255 ? NULL : pool[pick % npool];
                had_null |= in[k] == NULL;
            }
            double fp[2] = {((double)take_or(&b, 128) - 128.0) / 32.0,
                            ((double)take_or(&b, 160) - 128.0) / 32.0};
            int64_t ip[AD_MAX_IPARAMS];
            for (int k = 0; k < AD_MAX_IPARAMS; k++)
                ip[k] = take_int(&b, 1);
            ip[0] = (ip[0] == 3) ? AD_ALL : ip[0];
            int64_t before = ad_graph_mark(g);
            ad_node *r = ad_op_apply(op, nin, in, fp, 2, ip, AD_MAX_IPARAMS);
            if (ad_op_kind_of(op) == AD_KIND_LEAF || nin < 1)
                had_null = 1; /* refused without graph context */
            check_result(g, r, had_null);
            if (r && r->numel <= 256) { /* keep the tensors small: speed */
                int slot = npool < POOL ? npool++ : take_or(&b, 0) % POOL;
                pool[slot] = r;
                pool_id[slot] = r->id;
            } else if (r && r->numel > 4096) {
                ad_graph_rewind(g, before); /* checked; replaying it would only cost time */
            }
            break;
        }
        case 4: /* backward or second order */
            if (a->numel == 1 && !(a->flags & NODE_TAPE)) {
                if (take_or(&b, 0) & 1) {
                    ad_backward(a);
                } else {
                    ad_node *x = pool[take_or(&b, 0) % npool];
                    ad_node *gx = ad_grad(a, x);
                    if (gx && npool < POOL) {
                        pool_id[npool] = gx->id;
                        pool[npool++] = gx;
                    }
                }
            } else {
                if (ad_backward(a) == 0)
                    abort(); /* a non-scalar loss must be refused */
            }
            ad_graph_clear_error(g);
            break;
        case 5: /* replay, possibly after a resize */
            if ((a->flags & NODE_INPUT) && a->ndim > 0)
                ad_resize(a, 1 + take_or(&b, 0) % 4);
            ad_forward(g);
            ad_graph_clear_error(g);
            break;
        case 6: /* mark / rewind */
            if (mark < 0) {
                mark = ad_graph_mark(g);
            } else {
                ad_graph_rewind(g, mark);
                /* drop pool entries made after the mark */
                int kept = 0;
                for (int k = 0; k < npool; k++)
                    if (pool_id[k] < mark) {
                        pool_id[kept] = pool_id[k];
                        pool[kept++] = pool[k];
                    }
                npool = kept;
                mark = -1;
                if (npool == 0)
                    goto done;
            }
            break;
        default: { /* set values, sometimes with a wrong count */
            int64_t n = a->numel;
            int wrong = take_or(&b, 0) & 1;
            double vals[64] = {0};
            if (n <= 64)
                ad_set(a, vals, wrong ? n + 1 : n);
            ad_zero_grad(g);
            ad_graph_clear_error(g);
            break;
        }
        }
    }
done:
    ad_graph_free(g);
    if (c.live != 0)
        abort(); /* leak */
    return 0;
}
