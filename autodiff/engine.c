/* engine.c -- the chain rule: backward passes built as graph nodes, replay.
 *
 * Creation order is a topological order, so building a backward pass is one
 * sweep from the output back to node 0: each node that received a gradient
 * hands it to its op's gradient rule, which returns one contribution per
 * input as new nodes; contributions to the same input are summed (fan-out,
 * a + a), and a contribution in a broadcast shape is summed back to the
 * input's shape here, in one place, for every op. */
#include <string.h>

#include "graph_impl.h"

#define MAX_LOCAL_INPUTS 8

static bool same_shape(const ad_node *a, const ad_node *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

typedef struct {
    ad_node *term;
    int64_t next; /* index of the next contribution to the same node, -1 ends */
} contribution;

typedef struct {
    ad_graph *g;
    int64_t *head; /* per node id: first pending contribution, -1 when none */
    contribution *pool;
    int64_t npool, cap;
} pending;

static bool pending_push(pending *p, int64_t id, ad_node *term)
{
    if (p->npool == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 256;
        contribution *q = ad_mem(p->g, p->pool, sizeof(contribution) * (size_t)p->cap,
                                 sizeof(contribution) * (size_t)cap);
        if (!q)
            return false;
        p->pool = q;
        p->cap = cap;
    }
    p->pool[p->npool] = (contribution){term, p->head[id]};
    p->head[id] = p->npool++;
    return true;
}

/* The gradient of node id: its single contribution, or one add_n node over
 * all of them (fan-out), in the order they were made. */
static ad_node *pending_sum(pending *p, int64_t id)
{
    int64_t k = 0;
    for (int64_t e = p->head[id]; e >= 0; e = p->pool[e].next)
        k++;
    if (k <= 1)
        return k ? p->pool[p->head[id]].term : NULL;
    ad_node *local[16], **terms = local;
    if (k > 16) {
        terms = ad_mem(p->g, NULL, 0, sizeof(ad_node *) * (size_t)k);
        if (!terms)
            return NULL;
    }
    int64_t i = k;
    for (int64_t e = p->head[id]; e >= 0; e = p->pool[e].next)
        terms[--i] = p->pool[e].term;
    ad_node *sum = k > INT32_MAX ? NULL : ad_add_n((int)k, terms);
    if (terms != local)
        ad_mem(p->g, terms, sizeof(ad_node *) * (size_t)k, 0);
    return sum;
}

/* Builds d y/d node for every node before y that y depends on; returns the
 * array (indexed by node id, heap memory of nbefore entries) or NULL. */
static ad_node **build_gradients(ad_node *y, int64_t *nbefore)
{
    ad_graph *g = y->g;
    int64_t n = y->id + 1;
    *nbefore = n;
    pending p = {.g = g};
    ad_node **grads = ad_mem(g, NULL, 0, sizeof(ad_node *) * (size_t)n);
    p.head = grads ? ad_mem(g, NULL, 0, sizeof(int64_t) * (size_t)n) : NULL;
    if (!p.head)
        goto fail;
    memset(grads, 0, sizeof(ad_node *) * (size_t)n);
    memset(p.head, 0xff, sizeof(int64_t) * (size_t)n); /* all -1 */
    ad_node *seed = ad_op_apply(AD_OP_ONES_LIKE, 1, &y, NULL, 0, NULL, 0);
    if (!seed || !pending_push(&p, y->id, seed))
        goto fail;
    for (int64_t i = y->id; i >= 0; i--) {
        if (p.head[i] < 0)
            continue;
        ad_node *node = g->nodes[i], *gnode = pending_sum(&p, i);
        if (!gnode)
            goto fail;
        grads[i] = gnode;
        node->grad_node = gnode;
        const ad_op_info *op = &ad_ops[node->op];
        if (op->kind == AD_KIND_LEAF || op->backward == ad_nograd ||
            !(node->flags & NODE_REQGRAD))
            continue;
        ad_node *local[MAX_LOCAL_INPUTS] = {0};
        ad_node **contrib = local;
        if (node->ninputs > MAX_LOCAL_INPUTS) {
            contrib = ad_mem(g, NULL, 0, sizeof(ad_node *) * (size_t)node->ninputs);
            if (!contrib)
                goto fail;
            memset(contrib, 0, sizeof(ad_node *) * (size_t)node->ninputs);
        }
        op->backward(node, gnode, contrib);
        bool ok = !g->has_error;
        for (int k = 0; ok && k < node->ninputs; k++) {
            ad_node *in = node->inputs[k], *c = contrib[k];
            if (!c || !(in->flags & NODE_REQGRAD))
                continue;
            if (!same_shape(c, in))
                c = ad_sum_to(c, in);
            ok = c && pending_push(&p, in->id, c);
        }
        if (contrib != local)
            ad_mem(g, contrib, sizeof(ad_node *) * (size_t)node->ninputs, 0);
        if (!ok || g->has_error)
            goto fail;
    }
    ad_mem(g, p.pool, sizeof(contribution) * (size_t)p.cap, 0);
    ad_mem(g, p.head, sizeof(int64_t) * (size_t)n, 0);
    return grads;
fail:
    ad_mem(g, p.pool, sizeof(contribution) * (size_t)p.cap, 0);
    if (p.head)
        ad_mem(g, p.head, sizeof(int64_t) * (size_t)n, 0);
    if (grads)
        ad_mem(g, grads, sizeof(ad_node *) * (size_t)n, 0);
    return NULL;
}

static bool check_loss(ad_node *y, const char *fn)
{
    if (y->numel != 1) {
        char sh[96];
        ad_fail(y->g, "%s: output '%s' %s has %lld elements, expected 1", fn, y->name,
                ad_shape_str(y, sh, sizeof sh), (long long)y->numel);
        return false;
    }
    if (y->flags & NODE_TAPE) {
        ad_fail(y->g, "%s: '%s' belongs to a backward pass; use ad_grad for higher order", fn,
                y->name);
        return false;
    }
    return true;
}

static void accumulate(tape *t)
{
    ad_graph *g = t->loss->g;
    for (int64_t i = 0; i < t->nleaves; i++) {
        ad_node *leaf = t->leaves[i], *gn = t->grads[i];
        AD_DISPATCH(g, {
            T *acc = leaf->grad;
            const T *v = gn->value;
            for (int64_t j = 0; j < leaf->numel; j++)
                acc[j] += v[j];
        });
    }
}

static tape *find_tape(ad_graph *g, ad_node *loss)
{
    for (int i = 0; i < g->ntapes; i++)
        if (g->tapes[i].loss == loss)
            return &g->tapes[i];
    return NULL;
}

static tape *build_tape(ad_node *loss)
{
    ad_graph *g = loss->g;
    if (g->ntapes == g->cap_tapes) {
        int cap = g->cap_tapes ? g->cap_tapes * 2 : 4;
        tape *t = ad_mem(g, g->tapes, sizeof(tape) * (size_t)g->cap_tapes, sizeof(tape) * (size_t)cap);
        if (!t)
            return NULL;
        g->tapes = t;
        g->cap_tapes = cap;
    }
    int64_t mark = g->nnodes, nbefore = 0;
    g->building_tape = true;
    ad_node **grads = build_gradients(loss, &nbefore);
    g->building_tape = false;
    if (!grads) {
        ad_graph_rewind(g, mark);
        return NULL;
    }
    int64_t nleaves = 0;
    for (int64_t i = 0; i < nbefore; i++)
        if (grads[i] && (g->nodes[i]->flags & NODE_TRAINABLE))
            nleaves++;
    ad_node **list = NULL;
    if (nleaves) {
        list = ad_mem(g, NULL, 0, sizeof(ad_node *) * (size_t)nleaves * 2);
        if (!list) {
            ad_mem(g, grads, sizeof(ad_node *) * (size_t)nbefore, 0);
            ad_graph_rewind(g, mark);
            return NULL;
        }
    }
    int64_t k = 0;
    for (int64_t i = 0; i < nbefore; i++)
        if (grads[i] && (g->nodes[i]->flags & NODE_TRAINABLE)) {
            list[k] = g->nodes[i];
            list[nleaves + k] = grads[i];
            k++;
        }
    ad_mem(g, grads, sizeof(ad_node *) * (size_t)nbefore, 0);
    tape *t = &g->tapes[g->ntapes++];
    t->loss = loss;
    t->begin = mark;
    t->end = g->nnodes;
    t->nleaves = nleaves;
    t->leaves = list;
    t->grads = list ? list + nleaves : NULL;
    t->dirty = false;
    return t;
}

int ad_backward(ad_node *loss)
{
    if (!loss)
        return -1;
    ad_graph *g = loss->g;
    if (g->has_error)
        return -1;
    if (!check_loss(loss, "ad_backward"))
        return -1;
    tape *t = find_tape(g, loss);
    if (!t) {
        t = build_tape(loss);
        if (!t)
            return -1;
    } else {
        bool infer = t->dirty;
        for (int64_t i = t->begin; i < t->end; i++)
            if (!ad_compute(g->nodes[i], infer))
                return -1;
        if (g->has_error)
            return -1;
        t->dirty = false;
    }
    accumulate(t);
    return 0;
}

void ad_zero_grad(ad_graph *g)
{
    if (!g)
        return;
    for (int64_t i = 0; i < g->nparams; i++) {
        ad_node *n = g->params[i];
        memset(n->grad, 0, (size_t)n->numel * g->elem);
    }
}

int ad_forward(ad_graph *g)
{
    if (!g)
        return -1;
    if (g->has_error)
        return -1;
    bool infer = g->shapes_dirty;
    for (int64_t i = 0; i < g->nnodes; i++) {
        ad_node *n = g->nodes[i];
        if (n->flags & (NODE_TAPE | NODE_TRAINABLE | NODE_INPUT | NODE_CONST))
            continue;
        if (!ad_compute(n, infer))
            return -1;
    }
    if (g->has_error)
        return -1;
    if (infer) {
        g->shapes_dirty = false;
        for (int i = 0; i < g->ntapes; i++)
            g->tapes[i].dirty = true;
    }
    return 0;
}

ad_node *ad_grad(ad_node *y, ad_node *x)
{
    if (!y || !x)
        return NULL;
    ad_graph *g = y->g;
    if (x->g != g) {
        ad_fail(g, "ad_grad: y and x belong to different graphs");
        return NULL;
    }
    if (!check_loss(y, "ad_grad"))
        return NULL;
    if (x->id > y->id || !(x->flags & NODE_REQGRAD))
        return ad_zeros_like(x);
    int64_t nbefore = 0;
    ad_node **grads = build_gradients(y, &nbefore);
    if (!grads)
        return NULL;
    ad_node *r = grads[x->id];
    ad_mem(g, grads, sizeof(ad_node *) * (size_t)nbefore, 0);
    return r ? r : ad_zeros_like(x);
}
