/* engine.c -- the chain rule: backward passes built as graph nodes, replay.
 *
 * Creation order is a topological order, so building a backward pass is one
 * sweep from the output back to node 0: each node that received a gradient
 * hands it to its op's gradient rule, which returns one contribution per
 * input as new nodes; contributions to the same input are summed (fan-out,
 * a + a), and a contribution in a broadcast shape is summed back to the
 * input's shape here, in one place, for every op. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"

#define MAX_LOCAL_INPUTS 8

bool ad_same_shape(const ad_node *a, const ad_node *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* The contributions to each node's gradient while a backward pass is built.
 * Most nodes get exactly one: it waits in first[id] (the array that then
 * holds the gradients). A node that fans out gets a list, contiguous in one
 * shared array (moved to twice the room when full), so summing a weight's
 * hundred uses reads one run of memory, not a chain across the pass. */
typedef struct {
    int64_t off, len, cap; /* terms[off, off + len), room for cap */
} fan_list;

typedef struct {
    ad_graph *g;
    ad_node **first; /* per node id: the first contribution, NULL when none */
    int64_t *more;   /* per node id: its fan_list once a second one came, -1 before */
    fan_list *lists;
    int64_t nlists, cap_lists;
    ad_node **terms; /* the lists' storage */
    int64_t nterms, cap_terms;
} pending;

/* Room for n more terms at the end of p->terms; its offset, -1 without memory. */
static int64_t pending_room(pending *p, int64_t n)
{
    if (p->nterms + n > p->cap_terms) {
        int64_t cap = p->cap_terms ? p->cap_terms : 256;
        while (cap < p->nterms + n)
            cap *= 2;
        ad_node **t = ad_mem(p->g, p->terms, sizeof(ad_node *) * (size_t)p->cap_terms,
                             sizeof(ad_node *) * (size_t)cap);
        if (!t)
            return -1;
        p->terms = t;
        p->cap_terms = cap;
    }
    p->nterms += n;
    return p->nterms - n;
}

static bool pending_push(pending *p, int64_t id, ad_node *term)
{
    if (!p->first[id]) {
        p->first[id] = term;
        return true;
    }
    if (p->more[id] < 0) { /* the second one: a list that starts with the first */
        if (p->nlists == p->cap_lists) {
            int64_t cap = p->cap_lists ? p->cap_lists * 2 : 64;
            fan_list *l = ad_mem(p->g, p->lists, sizeof(fan_list) * (size_t)p->cap_lists,
                                 sizeof(fan_list) * (size_t)cap);
            if (!l)
                return false;
            p->lists = l;
            p->cap_lists = cap;
        }
        int64_t off = pending_room(p, 4);
        if (off < 0)
            return false;
        p->terms[off] = p->first[id];
        p->lists[p->nlists] = (fan_list){off, 1, 4};
        p->more[id] = p->nlists++;
    }
    fan_list *l = &p->lists[p->more[id]];
    if (l->len == l->cap) {
        int64_t off = pending_room(p, 2 * l->cap);
        if (off < 0)
            return false;
        memcpy(p->terms + off, p->terms + l->off, sizeof(ad_node *) * (size_t)l->len);
        l->off = off;
        l->cap *= 2;
    }
    p->terms[l->off + l->len++] = term;
    return true;
}

/* The gradient of node id: its single contribution, or one add_n node over
 * all of them (fan-out), in the order they were made. The terms are the
 * build's own nodes: made without ad_add_n's checks of the caller's
 * arguments (its read of every term's graph, far apart in memory, came
 * before the node's own reads could be asked for ahead). */
static ad_node *pending_sum(pending *p, int64_t id)
{
    if (p->more[id] < 0)
        return p->first[id];
    const fan_list *l = &p->lists[p->more[id]];
    if (l->len > INT32_MAX) {
        ad_fail(p->g, "ad_backward: %lld contributions to one gradient, at most %d",
                (long long)l->len, INT32_MAX);
        return NULL;
    }
    return ad_node_make(p->g, AD_OP_ADD_N, (int)l->len, p->terms + l->off, NULL, NULL);
}

static void pending_free(pending *p, int64_t n)
{
    ad_mem(p->g, p->lists, sizeof(fan_list) * (size_t)p->cap_lists, 0);
    ad_mem(p->g, p->terms, sizeof(ad_node *) * (size_t)p->cap_terms, 0);
    if (p->more)
        ad_mem(p->g, p->more, sizeof(int64_t) * (size_t)n, 0);
}

/* Builds d y/d node for every node before y that y depends on through nodes
 * flagged NODE_REQGRAD; returns the array (indexed by node id, heap memory
 * of nbefore entries) or NULL. record: remember each gradient in its node's
 * grad_node (what the dumps show). */
static ad_node **build_gradients(ad_node *y, int64_t *nbefore, bool record)
{
    ad_graph *g = y->g;
    int64_t n = y->id + 1;
    *nbefore = n;
    pending p = {.g = g};
    const int outer_order = g->building_order;
    ad_node **grads = ad_mem(g, NULL, 0, sizeof(ad_node *) * (size_t)n);
    p.first = grads;
    p.more = grads ? ad_mem(g, NULL, 0, sizeof(int64_t) * (size_t)n) : NULL;
    if (!p.more)
        goto fail;
    memset(grads, 0, sizeof(ad_node *) * (size_t)n);
    memset(p.more, 0xff, sizeof(int64_t) * (size_t)n); /* all -1 */
    g->building_order = y->order + 1;
    ad_node *seed = ad_op_apply(AD_OP_ONES_LIKE, 1, &y, NULL, 0, NULL, 0);
    if (!seed || !pending_push(&p, y->id, seed))
        goto fail;
    for (int64_t i = y->id; i >= 0; i--) {
        /* the node 2·AD_AHEAD_BUILD ahead: op and inputs (line 1), ninputs and
           id (line 2); the operands of the node AD_AHEAD_BUILD ahead (read
           from its first line, asked for earlier): its gradient rule reads
           them, and their ids place its contributions */
        if (i >= 2 * AD_AHEAD_BUILD) {
            AD_PREFETCH(g->nodes[i - 2 * AD_AHEAD_BUILD]);
            AD_PREFETCH((char *)g->nodes[i - 2 * AD_AHEAD_BUILD] + 64);
        }
        if (i >= AD_AHEAD_BUILD)
            AD_PREFETCH_OPERANDS(g->nodes[i - AD_AHEAD_BUILD], 2);
        if (!grads[i])
            continue;
        ad_node *node = g->nodes[i], *gnode = pending_sum(&p, i);
        if (!gnode)
            goto fail;
        grads[i] = gnode;
        if (record)
            node->grad_node = gnode;
        const ad_op_info *op = &ad_ops[node->op];
        if (op->kind == AD_KIND_LEAF || op->backward == ad_nograd || !(node->flags & NODE_REQGRAD))
            continue;
        bool inputs_want = false; /* a node asked for by ad_grad_n may be where it stops */
        for (int k = 0; k < node->ninputs; k++)
            inputs_want = inputs_want || (node->inputs[k]->flags & NODE_REQGRAD);
        if (!inputs_want)
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
            if (!ad_same_shape(c, in))
                c = ad_sum_to(c, in);
            ok = c && pending_push(&p, in->id, c);
        }
        if (contrib != local)
            ad_mem(g, contrib, sizeof(ad_node *) * (size_t)node->ninputs, 0);
        if (!ok || g->has_error)
            goto fail;
    }
    g->building_order = outer_order;
    pending_free(&p, n);
    return grads;
fail:
    g->building_order = outer_order;
    pending_free(&p, n);
    if (grads)
        ad_mem(g, grads, sizeof(ad_node *) * (size_t)n, 0);
    return NULL;
}

static bool check_loss(ad_node *y, const char *fn)
{
    if (!ad_node_live(y, fn))
        return false;
    if (y->numel != 1) {
        char sh[96];
        ad_fail(y->g, "%s: output '%s' %s has %lld elements, expected 1", fn, y->rare->name,
                ad_shape_str(y, sh, sizeof sh), (long long)y->numel);
        return false;
    }
    if (y->flags & NODE_TAPE) {
        ad_fail(y->g, "%s: '%s' belongs to a backward pass; use ad_grad for higher order", fn,
                y->rare->name);
        return false;
    }
    return true;
}

static void add_into(ad_graph *g, ad_node *leaf, const ad_node *gn);

static void accumulate(tape *t)
{
    for (int64_t i = 0; i < t->nleaves; i++)
        add_into(t->loss->g, t->leaves[i], t->grads[i]);
}

static tape *find_tape(ad_graph *g, ad_node *loss)
{
    for (int i = 0; i < g->ntapes; i++)
        if (g->tapes[i].loss == loss)
            return &g->tapes[i];
    return NULL;
}

/* ------------------------------------------------------------------
 * Memory reuse: one pool per backward pass. Node k of the pass lives from
 * its computation until its last reader (a node that aliases it, such as a
 * reshape, extends that); a leaf's gradient is accumulated right after it is
 * computed. Offsets are given first-fit in creation order, a buffer being
 * released only after the node that reads it last has run, so no node ever
 * writes over an input it reads. */

typedef struct {
    size_t off, size;
} span;

typedef struct {
    span *free;
    int64_t nfree, cap;
    size_t top;
    ad_graph *g;
} pool_plan;

static bool plan_release(pool_plan *p, size_t off, size_t size)
{
    int64_t i = 0;
    while (i < p->nfree && p->free[i].off < off)
        i++;
    /* merge with the neighbours */
    if (i > 0 && p->free[i - 1].off + p->free[i - 1].size == off) {
        p->free[i - 1].size += size;
        if (i < p->nfree && off + size == p->free[i].off) {
            p->free[i - 1].size += p->free[i].size;
            memmove(&p->free[i], &p->free[i + 1], sizeof(span) * (size_t)(p->nfree - i - 1));
            p->nfree--;
        }
        return true;
    }
    if (i < p->nfree && off + size == p->free[i].off) {
        p->free[i].off = off;
        p->free[i].size += size;
        return true;
    }
    if (p->nfree == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 32;
        span *f = ad_mem(p->g, p->free, sizeof(span) * (size_t)p->cap, sizeof(span) * (size_t)cap);
        if (!f)
            return false;
        p->free = f;
        p->cap = cap;
    }
    memmove(&p->free[i + 1], &p->free[i], sizeof(span) * (size_t)(p->nfree - i));
    p->free[i] = (span){off, size};
    p->nfree++;
    return true;
}

static size_t plan_take(pool_plan *p, size_t size)
{
    for (int64_t i = 0; i < p->nfree; i++)
        if (p->free[i].size >= size) {
            size_t off = p->free[i].off;
            p->free[i].off += size;
            p->free[i].size -= size;
            if (p->free[i].size == 0) {
                memmove(&p->free[i], &p->free[i + 1], sizeof(span) * (size_t)(p->nfree - i - 1));
                p->nfree--;
            }
            return off;
        }
    size_t off = p->top;
    p->top += size;
    return off;
}

/* A matmul whose buffer is a leaf's gradient (see plan_tape). */
static bool in_place(const ad_node *n)
{
    return n->op == AD_OP_MATMUL && (n->flags & NODE_ACCUMULATE);
}

static int cmp_pos(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------
 * Backward nodes side by side. A linear layer's input gradient G W^T,
 * weight gradient H^T G and bias sum read G and nothing of each other. On
 * two threads, a few adjacent nodes of a planned tape that fall into two
 * independent chains (dH, then the ReLU mask that reads it; dW, then the
 * bias sum) run as one group: each chain on its own thread, each node
 * whole, instead of one node after the other with each split over both
 * threads (a mid-sized product split in two scales 1.57-1.66x, the
 * 10-column products and small bias sums not at all: docs/benchmarks.md,
 * "Two threads"). A node computed whole gives the bits one thread gives,
 * whatever the thread count. */

/* The node owning the buffer n reads: an alias's source, followed. */
static ad_node *storage_of(ad_node *n)
{
    while (n->flags & NODE_ALIAS)
        n = n->inputs[0];
    return n;
}

/* Marks (set) or unmarks the trainable leaves node reads, itself or through an alias. */
static void mark_leaves_read(ad_node *node, bool set)
{
    for (int i = 0; i < node->ninputs; i++) {
        ad_node *src = storage_of(node->inputs[i]);
        if (src->flags & NODE_TRAINABLE)
            src->flags = set ? src->flags | NODE_MARK : src->flags & ~NODE_MARK;
    }
}

/* A node's work as grouping weighs it: multiply-adds of a product, an
 * element of an elementwise gradient or a bias sum counting as 8 (the MLP
 * at batch 256, one thread: the 25,600-element bias sum 2.7 us and ReLU
 * mask 5.6 us, the 256 x 10 x 100 products 7-10 us, 256 x 100 x 300 95-118
 * us). 0: never grouped: the kernel may set the graph's error or share a
 * buffer with other nodes (scratch, random draws), or it is too big (more
 * than GROUP_MAX_WORK: its own split scales well, as the MLP's first-layer
 * weight gradient, 6*10^7 multiply-adds, 1.93x). */
#define GROUP_ELEMENT_WORK 8.0
#define GROUP_MAX_WORK 16777216.0
static double group_work(const ad_node *n)
{
    double w = 0;
    if (n->flags & NODE_ALIAS)
        return 0;
    switch (n->op) {
    case AD_OP_MATMUL:
        if (n->ndim == 2) { /* batched products may use the scratch buffer */
            const ad_node *a = n->inputs[0];
            w = (double)n->numel * (double)(n->rare->iparam[0] ? a->shape[0] : a->shape[1]);
        }
        break;
    case AD_OP_SUM_TO:
        w = GROUP_ELEMENT_WORK * (double)n->inputs[0]->numel;
        break;
    case AD_OP_RELU_GRAD:
        w = GROUP_ELEMENT_WORK * (double)n->numel;
        break;
    default:
        break;
    }
    return w <= GROUP_MAX_WORK ? w : 0;
}

/* Does n read the buffer of owner (directly or through an alias)? */
static bool reads_from(const ad_node *n, const ad_node *owner)
{
    for (int i = 0; i < n->ninputs; i++)
        if (storage_of(n->inputs[i]) == owner)
            return true;
    return false;
}

/* t->group[k], for the first node k of a group of GROUP_MAX or fewer
 * nodes: its length (0 elsewhere) and the side of each node (bit
 * GROUP_SIDES + j: node k + j runs on the second thread). A weight's
 * gradient product beside a node that reads the weight (dW = H^T G beside
 * dH = G W^T) never takes an SGD step inside the product (read_beside):
 * the weight changes after the pass. The sides are balanced when the
 * lighter has at least 1/GROUP_MAX_RATIO of the heavier's work (a thread
 * waiting for the other's long chain loses what the nodes' own splits
 * would gain); the heavier side runs on the thread that opens the region
 * (it starts first). */
#define GROUP_MAX 5
#define GROUP_LEN_MASK 7
#define GROUP_SIDES 3
#define GROUP_MAX_RATIO 4.0
_Static_assert(GROUP_SIDES + GROUP_MAX <= 8, "a group's length and sides fit in one byte");

/* Node j of a group is on the second thread. */
static bool group_side(unsigned char grp, int j) { return (grp >> (GROUP_SIDES + j)) & 1; }

/* The group of the len nodes of t from index k, or 0 when they do not fall
 * into two balanced independent sets. */
static unsigned char find_group(const tape *t, int64_t k, int len)
{
    ad_graph *g = t->loss->g;
    ad_node *nodes[GROUP_MAX];
    double work[GROUP_MAX];
    int comp[GROUP_MAX]; /* connected parts: comp[j] is the smallest index of j's part */
    for (int j = 0; j < len; j++) {
        nodes[j] = g->nodes[t->begin + k + j];
        work[j] = group_work(nodes[j]);
        if (work[j] <= 0)
            return 0;
        comp[j] = j;
    }
    for (int j = 0; j < len; j++)
        for (int i = 0; i < j; i++) {
            if (reads_from(nodes[j], nodes[i])) { /* merge j's part into i's */
                const int from = comp[j] > comp[i] ? comp[j] : comp[i];
                const int to = comp[j] > comp[i] ? comp[i] : comp[j];
                for (int q = 0; q < len; q++)
                    if (comp[q] == from)
                        comp[q] = to;
            }
        }
    /* the parts, heaviest first, each to the lighter side */
    double part[GROUP_MAX] = {0}, side_work[2] = {0, 0};
    int side_of_part[GROUP_MAX] = {0};
    for (int j = 0; j < len; j++)
        part[comp[j]] += work[j];
    for (int round = 0; round < len; round++) {
        int best = -1;
        for (int j = 0; j < len; j++)
            if (part[j] > 0 && (best < 0 || part[j] > part[best]))
                best = j;
        if (best < 0)
            break;
        const int side = side_work[1] < side_work[0];
        side_of_part[best] = side;
        side_work[side] += part[best];
        part[best] = 0;
    }
    const bool flip = side_work[1] > side_work[0]; /* the heavier side first */
    for (int j = 0; flip && j < len; j++)
        side_of_part[j] = !side_of_part[j];
    const double lo = side_work[0] < side_work[1] ? side_work[0] : side_work[1];
    const double hi = side_work[0] < side_work[1] ? side_work[1] : side_work[0];
    if (lo <= 0 || lo * GROUP_MAX_RATIO < hi)
        return 0;
    unsigned grp = (unsigned)len;
    for (int j = 0; j < len; j++)
        grp |= (unsigned)side_of_part[comp[j]] << (GROUP_SIDES + j);
    return (unsigned char)grp;
}

/* Is leaf's value read by a node of the group that holds tape index k, on
 * the other side from node k? (Node k may then not change it: they run at
 * the same time.) */
static bool read_beside(const tape *t, const ad_node *leaf, int64_t k)
{
    const ad_graph *g = leaf->g;
    for (int64_t s = k; s >= 0 && s > k - GROUP_MAX; s--) {
        const int len = t->group[s] & GROUP_LEN_MASK;
        if (!len)
            continue;
        if (s + len <= k)
            return false; /* k is in no group */
        for (int j = 0; j < len; j++)
            if (group_side(t->group[s], j) != group_side(t->group[s], (int)(k - s)) &&
                reads_from(g->nodes[t->begin + s + j], leaf))
                return true;
        return false;
    }
    return false;
}

/* acc_final for t's leaves in accumulation order: does no node after a
 * leaf's gradient node read its value, and none beside it in a group
 * (read_beside)? acc_beside: no node after it, but one beside it. One walk
 * back over the tape, marking the leaves read so far (each leaf's mark is
 * read before its own gradient node's reads are marked: the node that
 * completes a gradient may read the leaf, it has run by then). */
static void find_final_reads(tape *t)
{
    ad_graph *g = t->loss->g;
    int64_t a = t->nleaves - 1;
    for (int64_t k = t->end - t->begin - 1; k >= 0; k--) {
        for (; a >= 0 && t->acc_pos[a] == k; a--) {
            const bool later = t->acc_leaf[a]->flags & NODE_MARK,
                       beside = read_beside(t, t->acc_leaf[a], k);
            t->acc_final[a] = !later && !beside;
            t->acc_beside[a] = !later && beside;
        }
        mark_leaves_read(g->nodes[t->begin + k], true);
    }
    for (int64_t k = 0; k < t->end - t->begin; k++)
        mark_leaves_read(g->nodes[t->begin + k], false);
}

/* Chooses the groups of t (t->group), the longest first from each node on,
 * and extends the lifetimes of last[] (tape index of each node's last
 * reader): whatever would be released inside a group is released after its
 * last node, so no buffer that one of the group reads or writes is given to
 * another of it. end: room for the tape's length. false without memory
 * (error set). */
static bool plan_groups(tape *t, int64_t *last, int64_t *end)
{
    ad_graph *g = t->loss->g;
    const int64_t n = t->end - t->begin;
    if (!t->group) {
        t->group = ad_arena_alloc(g, (size_t)(n ? n : 1));
        if (!t->group)
            return false;
    }
    memset(t->group, 0, (size_t)n);
    for (int64_t k = 0; k + 1 < n; k++)
        for (int len = GROUP_MAX; len >= 2; len--)
            if (k + len <= n && (t->group[k] = find_group(t, k, len)) != 0) {
                k += len - 1;
                break;
            }
    for (int64_t k = 0; k < n;) { /* end[k]: the last index of k's group */
        const int len = t->group[k] & GROUP_LEN_MASK;
        for (int j = 0; j < (len ? len : 1); j++)
            end[k + j] = k + (len ? len : 1) - 1;
        k += len ? len : 1;
    }
    for (int64_t j = 0; j < n; j++)
        last[j] = end[last[j]];
    return true;
}

/* Gives every planned node of t an offset in one new pool; fills the
 * accumulation order. false on allocation failure (error set). */
static bool plan_tape(tape *t)
{
    ad_graph *g = t->loss->g;
    const int64_t n = t->end - t->begin;
    bool ok = false;
    int64_t *last = ad_mem(g, NULL, 0, sizeof(int64_t) * (size_t)n * 3);
    size_t *off = last ? ad_mem(g, NULL, 0, sizeof(size_t) * (size_t)n) : NULL;
    pool_plan p = {.g = g};
    if (!off)
        goto done;
    int64_t *head = last + n, *next = last + 2 * n; /* release lists per step */
    for (int64_t k = 0; k < n; k++) {
        last[k] = k;
        head[k] = -1;
    }
    for (int64_t k = 0; k < n; k++) {
        ad_node *node = g->nodes[t->begin + k];
        for (int i = 0; i < node->ninputs; i++) {
            int64_t j = node->inputs[i]->id - t->begin;
            if (j >= 0 && j < n && last[j] < k)
                last[j] = k;
        }
    }
    for (int64_t k = n - 1; k >= 0; k--) { /* an alias keeps its source alive */
        ad_node *node = g->nodes[t->begin + k];
        if (node->flags & NODE_ALIAS) {
            int64_t j = node->inputs[0]->id - t->begin;
            if (j >= 0 && last[j] < last[k])
                last[j] = last[k];
        }
    }
    /* a weight's gradient that is one 2-d matmul read by nothing else is
     * computed straight into the leaf's gradient buffer (beta = 1) */
    for (int64_t i = 0; i < t->nleaves; i++) {
        ad_node *gn = t->grads[i], *leaf = t->leaves[i];
        int64_t k = gn->id - t->begin;
        bool sole = true;
        for (int64_t j = 0; j < t->nleaves; j++)
            sole = sole && (j == i || t->grads[j] != gn);
        if (gn->op == AD_OP_MATMUL && gn->ndim == 2 && k >= 0 && last[k] == k && sole &&
            gn->numel == leaf->numel) {
            gn->flags |= NODE_ACCUMULATE;
            gn->value = leaf->rare->grad;
            gn->capacity = leaf->numel;
        }
    }
    if (!plan_groups(t, last, next))
        goto done;
    for (int64_t k = 0; k < n; k++) {
        next[k] = head[last[k]];
        head[last[k]] = k;
    }
    for (int64_t k = 0; k < n; k++) {
        ad_node *node = g->nodes[t->begin + k];
        if (!(node->flags & NODE_ALIAS) && !in_place(node)) {
            size_t bytes = (size_t)(node->numel ? node->numel : 1) * g->elem;
            bytes = (bytes + 63) & ~(size_t)63;
            off[k] = plan_take(&p, bytes);
        }
        for (int64_t j = head[k]; j >= 0; j = next[j]) {
            ad_node *dead = g->nodes[t->begin + j];
            if ((dead->flags & NODE_ALIAS) || in_place(dead))
                continue;
            size_t bytes = (size_t)(dead->numel ? dead->numel : 1) * g->elem;
            if (!plan_release(&p, off[j], (bytes + 63) & ~(size_t)63))
                goto done;
        }
    }
    char *pool = ad_arena_alloc(g, p.top ? p.top : 64);
    if (!pool)
        goto done;
    for (int64_t k = 0; k < n; k++) {
        ad_node *node = g->nodes[t->begin + k];
        if ((node->flags & NODE_ALIAS) || in_place(node))
            continue;
        node->value = pool + off[k];
        node->capacity = node->numel ? node->numel : 1;
    }
    /* leaves in the order their gradients complete */
    if (t->nleaves && !t->acc_pos) {
        t->acc_pos = ad_mem(g, NULL, 0, TAPE_ACC_BYTES(t->nleaves));
        if (!t->acc_pos)
            goto done;
        t->acc_leaf = (ad_node **)(t->acc_pos + t->nleaves);
        t->acc_grad = t->acc_leaf + t->nleaves;
        t->acc_final = (bool *)(t->acc_grad + t->nleaves);
        t->acc_beside = t->acc_final + t->nleaves;
    }
    if (t->nleaves) {
        /* sort (position, leaf index) pairs packed into the position array */
        int64_t *pairs = ad_mem(g, NULL, 0, sizeof(int64_t) * 2 * (size_t)t->nleaves);
        if (!pairs)
            goto done;
        for (int64_t i = 0; i < t->nleaves; i++) {
            pairs[2 * i] = t->grads[i]->id - t->begin;
            pairs[2 * i + 1] = i;
        }
        qsort(pairs, (size_t)t->nleaves, 2 * sizeof(int64_t), cmp_pos);
        for (int64_t i = 0; i < t->nleaves; i++) {
            t->acc_pos[i] = pairs[2 * i];
            t->acc_leaf[i] = t->leaves[pairs[2 * i + 1]];
            t->acc_grad[i] = t->grads[pairs[2 * i + 1]];
        }
        ad_mem(g, pairs, sizeof(int64_t) * 2 * (size_t)t->nleaves, 0);
        find_final_reads(t);
    }
    t->planned = true;
    ok = true;
done:
    ad_mem(g, p.free, sizeof(span) * (size_t)p.cap, 0);
    if (off)
        ad_mem(g, off, sizeof(size_t) * (size_t)n, 0);
    if (last)
        ad_mem(g, last, sizeof(int64_t) * (size_t)n * 3, 0);
    return ok;
}

static void add_into(ad_graph *g, ad_node *leaf, const ad_node *gn)
{
    AD_DISPATCH(g, {
        T *acc = leaf->rare->grad;
        const T *v = gn->value;
        for (int64_t j = 0; j < leaf->numel; j++)
            acc[j] += v[j];
    });
}

/* Leaf a of t's accumulation order takes its SGD step as soon as its
 * gradient is complete: nothing later in the tape reads its value, and no
 * check of the values may still refuse the pass. */
static bool step_now(const tape *t, int64_t a)
{
    const ad_graph *g = t->loss->g;
    return g->grad_mode == GRAD_SGD_STEP && t->acc_final[a] && !g->check_finite;
}

/* Leaf a of t's accumulation order takes its SGD step once the group that
 * holds its gradient node has run: only a node beside that node reads its
 * value (acc_beside). */
static bool step_after_group(const tape *t, int64_t a)
{
    const ad_graph *g = t->loss->g;
    return g->grad_mode == GRAD_SGD_STEP && t->acc_beside[a] && !g->check_finite;
}

/* Leaf a of t's accumulation order from its gradient node, whose kernel has
 * run: added into the gradient (ad_backward), written over it
 * (ad_backward_overwrite), or for ad_backward_sgd the step taken now (value
 * -= lr gradient), taken after the node's group (step_group_leaves), or the
 * gradient kept for the step after the pass. A matmul computed in place
 * (NODE_ACCUMULATE) already did its part. */
static void leaf_gradient(tape *t, int64_t a)
{
    ad_graph *g = t->loss->g;
    ad_node *leaf = t->acc_leaf[a];
    const ad_node *gn = t->acc_grad[a];
    if (in_place(gn))
        return;
    if (g->grad_mode == GRAD_ADD)
        add_into(g, leaf, gn);
    else if (step_now(t, a))
        ad_add_scaled(g->dtype, leaf->value, gn->value, -g->step_lr, leaf->numel);
    else if (!step_after_group(t, a))
        memcpy(leaf->rare->grad, gn->value, (size_t)leaf->numel * g->elem);
}

/* The SGD steps of the leaves whose gradient nodes are in the group of t
 * from node k (a: the accumulation index of node k) and that take them after
 * it (step_after_group), from their gradient nodes' buffers (kept until the
 * group's last node ran): the elements [n·i/nt, n·(i+1)/nt) of each, thread i
 * of nt (each element's step is the same whoever takes it). */
static void step_group_leaves(tape *t, int64_t k, int64_t a, int i, int nt)
{
    ad_graph *g = t->loss->g;
    const int64_t end = k + (t->group[k] & GROUP_LEN_MASK);
    for (; a < t->nleaves && t->acc_pos[a] < end; a++) {
        if (!step_after_group(t, a))
            continue;
        const int64_t n = t->acc_leaf[a]->numel, lo = n * i / nt, hi = n * (i + 1) / nt;
        if (hi > lo)
            ad_add_scaled(g->dtype, (char *)t->acc_leaf[a]->value + (size_t)lo * g->elem,
                          (const char *)t->acc_grad[a]->value + (size_t)lo * g->elem, -g->step_lr,
                          hi - lo);
    }
}

/* A node's kernel in a planned pass: a weight's gradient product computed in
 * place either writes the gradient (ad_fwd_matmul) or, when leaf a takes its
 * SGD step now, adds -lr times the product into the weight itself. */
static void run_node(tape *t, ad_node *node, int64_t a)
{
    ad_graph *g = t->loss->g;
    if (a < t->nleaves && t->acc_grad[a] == node && in_place(node) && step_now(t, a))
        ad_matmul_2d(node, -g->step_lr, true, t->acc_leaf[a]->value);
    else
        ad_ops[node->op].forward(node);
}

/* The group of t from node k (plan_groups), a the accumulation index of
 * node k (see run_planned): each side's nodes in tape order on its thread,
 * the heavier side on the calling thread, then the steps that follow the
 * group (step_group_leaves) shared by both threads in the same region.
 * Inside the region the kernels do not split (ad_in_group, AD_SPLIT_HERE). */
static void run_group(tape *t, int64_t k, int64_t a)
{
    ad_graph *g = t->loss->g;
    const unsigned char grp = t->group[k];
    const int len = grp & GROUP_LEN_MASK;
    int64_t acc[GROUP_MAX]; /* each node's accumulation index */
    const int64_t first = a;
    bool steps = false; /* a leaf steps after the group */
    for (int64_t b = first; b < t->nleaves && t->acc_pos[b] < k + len; b++)
        steps = steps || step_after_group(t, b);
    for (int j = 0; j < len; j++) {
        while (a < t->nleaves && t->acc_pos[a] < k + j)
            a++;
        acc[j] = a;
    }
#ifdef AD_HAVE_OPENMP
    AD_OMP_TEAM(2);
#pragma omp parallel
    {
        const int i = omp_get_thread_num(), nt = omp_get_num_threads();
        AD_OMP_TEAM_END(); /* a backend's own team (oneDNN) stays one thread here */
        ad_in_group = true;
        for (int j = 0; j < len; j++)
            if (nt == 1 || group_side(grp, j) == (i == 1))
                run_node(t, g->nodes[t->begin + k + j], acc[j]);
        if (steps) {
#pragma omp barrier
            step_group_leaves(t, k, first, i, nt);
        }
        ad_in_group = false;
    }
    AD_OMP_TEAM_END();
#else
    for (int j = 0; j < len; j++)
        run_node(t, g->nodes[t->begin + k + j], acc[j]);
    if (steps)
        step_group_leaves(t, k, first, 0, 1);
#endif
}

/* Runs a planned pass: shapes (after a resize; a bigger batch re-plans),
 * kernels, and each leaf's accumulation as soon as its gradient is ready. */
static bool run_planned(tape *t, bool infer)
{
    ad_graph *g = t->loss->g;
    if (infer) {
        bool grow = false;
        for (int64_t i = t->begin; i < t->end; i++) {
            ad_node *node = g->nodes[i];
            if (!ad_ops[node->op].shape(node))
                return false;
            if (!(node->flags & NODE_ALIAS) && !in_place(node) && node->numel > node->capacity)
                grow = true;
        }
        if (grow && !plan_tape(t))
            return false;
    }
    const bool side_by_side = ad_threads_requested > 1;
    int64_t a = 0, ran = t->begin - 1;                 /* the kernels have run up to node ran */
    int64_t group_k = 0, group_a = 0, group_last = -1; /* the group one thread runs */
    for (int64_t i = t->begin; i < t->end; i++) {
        ad_node *node = g->nodes[i];
        const int len = t->group[i - t->begin] & GROUP_LEN_MASK;
        if (i > ran && side_by_side && len) {
            run_group(t, i - t->begin, a);
            ran = i + len - 1;
        } else if (i > ran) {
            if (len) { /* node by node, the steps after its last node */
                group_k = i - t->begin;
                group_a = a;
                group_last = i + len - 1;
            }
            run_node(t, node, a);
        }
        /* per node, in tape order, after the whole of a group ran */
        if (g->check_finite && !ad_check_values(node))
            return false;
        for (; a < t->nleaves && t->acc_pos[a] == i - t->begin; a++)
            leaf_gradient(t, a);
        if (i == group_last)
            step_group_leaves(t, group_k, group_a, 0, 1);
    }
    return !g->has_error;
}

static tape *build_tape(ad_node *loss)
{
    ad_graph *g = loss->g;
    /* a large parameter's gradient buffer is made by its first backward pass */
    for (int64_t i = 0; i < g->nparams; i++)
        if (!ad_leaf_grad_ready(g->params[i]))
            return NULL;
    if (g->ntapes == g->cap_tapes) {
        int cap = g->cap_tapes ? g->cap_tapes * 2 : 4;
        tape *t =
            ad_mem(g, g->tapes, sizeof(tape) * (size_t)g->cap_tapes, sizeof(tape) * (size_t)cap);
        if (!t)
            return NULL;
        g->tapes = t;
        g->cap_tapes = cap;
    }
    int64_t mark = g->nnodes, nbefore = 0;
    g->building_tape = true;
    ad_node **grads = build_gradients(loss, &nbefore, true);
    g->building_tape = false;
    if (!grads) {
        ad_graph_rewind(g, mark);
        return NULL;
    }
    /* the trainable leaves reached, in creation order (g->params holds every
       trainable leaf in that order: no sweep over the nodes) */
    int64_t nleaves = 0;
    for (int64_t i = 0; i < g->nparams && g->params[i]->id < nbefore; i++)
        if (grads[g->params[i]->id])
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
    for (int64_t i = 0; i < g->nparams && g->params[i]->id < nbefore; i++)
        if (grads[g->params[i]->id]) {
            list[k] = g->params[i];
            list[nleaves + k] = grads[g->params[i]->id];
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
    t->planned = false;
    t->acc_pos = NULL;
    t->acc_leaf = t->acc_grad = NULL;
    t->group = NULL;
    if (g->reuse_memory && (!plan_tape(t) || !run_planned(t, false))) {
        ad_graph_rewind(g, mark); /* drops t too */
        return NULL;
    }
    return t;
}

/* A loss that a backward pass may start from (no earlier error, one element). */
static bool backward_ready(ad_node *loss, const char *fn)
{
    return loss && !loss->g->has_error && check_loss(loss, fn);
}

int ad_backward(ad_node *loss)
{
    if (!backward_ready(loss, "ad_backward"))
        return -1;
    ad_graph *g = loss->g;
    tape *t = find_tape(g, loss);
    if (!t) {
        t = build_tape(loss);
        if (!t)
            return -1;
        if (t->planned)
            return 0; /* accumulated while it ran */
    } else if (t->planned) {
        if (!run_planned(t, t->dirty))
            return -1;
        t->dirty = false;
        return 0;
    } else {
        bool infer = t->dirty;
        for (int64_t i = t->begin; i < t->end; i++) {
            if (i + AD_AHEAD < t->end)
                AD_PREFETCH(g->nodes[i + AD_AHEAD]);
            if (i + AD_AHEAD / 2 < t->end)
                AD_PREFETCH_OPERANDS(g->nodes[i + AD_AHEAD / 2], 1);
            if (!ad_compute(g->nodes[i], infer))
                return -1;
        }
        if (g->has_error)
            return -1;
        t->dirty = false;
    }
    accumulate(t);
    return 0;
}

/* Zeros the gradients of the trainable leaves that t does not reach (both
 * lists are in creation order). */
static void zero_unreached(ad_graph *g, const tape *t)
{
    int64_t k = 0;
    for (int64_t i = 0; i < g->nparams; i++) {
        ad_node *n = g->params[i];
        if (k < t->nleaves && t->leaves[k] == n) {
            k++;
            continue;
        }
        if (n->rare->grad)
            memset(n->rare->grad, 0, (size_t)n->numel * g->elem);
    }
}

int ad_backward_overwrite(ad_node *loss)
{
    if (!backward_ready(loss, "ad_backward_overwrite"))
        return -1;
    ad_graph *g = loss->g;
    tape *t = find_tape(g, loss);
    if (!t || !t->planned) { /* the first pass, or no memory reuse: zero, then add */
        ad_zero_grad(g);
        return ad_backward(loss);
    }
    /* each leaf's gradient is written once, by its gradient node: a weight's
     * matmul gradient with beta = 0, the others copied */
    g->grad_mode = GRAD_OVERWRITE;
    bool ok = run_planned(t, t->dirty);
    g->grad_mode = GRAD_ADD;
    if (!ok)
        return -1;
    t->dirty = false;
    zero_unreached(g, t);
    return 0;
}

int ad_backward_sgd(ad_node *loss, double lr)
{
    if (!backward_ready(loss, "ad_backward_sgd"))
        return -1;
    ad_graph *g = loss->g;
    if (!(lr >= 0 && isfinite(lr))) {
        ad_fail(g, "ad_backward_sgd: learning rate %g must be finite and >= 0", lr);
        return -1;
    }
    tape *t = find_tape(g, loss);
    if (!t || !t->planned) {
        /* the first pass (it plans the tape), or no memory reuse: the
         * gradients, then the step from them */
        if (ad_backward_overwrite(loss) != 0)
            return -1;
        t = find_tape(g, loss);
        for (int64_t i = 0; i < t->nleaves; i++)
            ad_add_scaled(g->dtype, t->leaves[i]->value, t->leaves[i]->rare->grad, -lr,
                          t->leaves[i]->numel);
        return 0;
    }
    g->grad_mode = GRAD_SGD_STEP;
    g->step_lr = lr;
    bool ok = run_planned(t, t->dirty);
    if (ok) {
        t->dirty = false;
        /* the leaves whose value a later node read, or all of them when the
         * values were being checked: their gradients were kept, the step now */
        for (int64_t a = 0; a < t->nleaves; a++)
            if (!step_now(t, a) && !step_after_group(t, a))
                ad_add_scaled(g->dtype, t->acc_leaf[a]->value, t->acc_leaf[a]->rare->grad, -lr,
                              t->acc_leaf[a]->numel);
    }
    g->grad_mode = GRAD_ADD;
    return ok ? 0 : -1;
}

void ad_zero_grad(ad_graph *g)
{
    if (!g)
        return;
    for (int64_t i = 0; i < g->nparams; i++) {
        ad_node *n = g->params[i];
        if (n->rare->grad) /* one not made yet is zero */
            memset(n->rare->grad, 0, (size_t)n->numel * g->elem);
    }
}

int ad_forward(ad_graph *g)
{
    if (!g)
        return -1;
    if (g->has_error)
        return -1;
    bool infer = g->shapes_dirty;
    /* The backward passes' nodes (NODE_TAPE) are the tapes' ranges of ids,
     * in creation order and apart: they are stepped over, not read (a
     * scalar workload has as many of them as forward nodes, and testing
     * their flags read a line of each). */
    int next = 0; /* the next tape at or after node i */
    for (int64_t i = 0; i < g->nnodes; i++) {
        if (next < g->ntapes && i == g->tapes[next].begin) {
            i = g->tapes[next++].end - 1;
            continue;
        }
        ad_node *n = g->nodes[i];
        if (i + AD_AHEAD < g->nnodes)
            AD_PREFETCH(g->nodes[i + AD_AHEAD]);
        if (i + AD_AHEAD / 2 < g->nnodes)
            AD_PREFETCH_OPERANDS(g->nodes[i + AD_AHEAD / 2], 1);
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

/* ------------------------------------------------------------------
 * Gradients with respect to any nodes. NODE_REQGRAD says which nodes a
 * trainable leaf's gradient flows through, which is what ad_backward needs;
 * gradient rules read it to skip inputs that need nothing. A construction for
 * chosen nodes xs (inputs, constants, intermediates, leaves) sets the flag,
 * for the duration of the build only, on exactly the nodes that depend on
 * some x through differentiable ops, so the same rules build exactly what is
 * asked; afterwards the flags are put back and those of the new nodes are
 * recomputed with their usual meaning (a gradient node that reads a weight
 * is differentiable with respect to it). */

enum { FLAG_WAS = 1, FLAG_WANT = 2 };

bool ad_grad_build(ad_node *y, int n, ad_node *const *xs, ad_node **out, bool record,
                   const char *fn)
{
    ad_graph *g = y->g;
    if (g->has_error)
        return false;
    if (n < 0 || (n > 0 && (!xs || !out))) {
        ad_fail(g, "%s: %d nodes with xs %s and out %s", fn, n, xs ? "set" : "NULL",
                out ? "set" : "NULL");
        return false;
    }
    for (int i = 0; i < n; i++) {
        if (!xs[i]) {
            ad_fail(g, "%s: xs[%d] is NULL", fn, i);
            return false;
        }
        if (xs[i]->g != g) {
            ad_fail(g, "%s: y and xs[%d] belong to different graphs", fn, i);
            return false;
        }
    }
    if (!check_loss(y, fn))
        return false;
    const int64_t m = y->id + 1, mark = g->nnodes;
    unsigned char *st = ad_mem(g, NULL, 0, (size_t)m);
    if (!st)
        return false;
    memset(st, 0, (size_t)m);
    for (int i = 0; i < n; i++)
        if (xs[i]->id < m)
            st[xs[i]->id] = FLAG_WANT;
    for (int64_t k = 0; k < m; k++) {
        ad_node *node = g->nodes[k];
        if (!(st[k] & FLAG_WANT) && ad_ops[node->op].backward != ad_nograd)
            for (int j = 0; j < node->ninputs; j++)
                if (st[node->inputs[j]->id] & FLAG_WANT) {
                    st[k] |= FLAG_WANT;
                    break;
                }
        if (node->flags & NODE_REQGRAD)
            st[k] |= FLAG_WAS;
        node->flags = (node->flags & ~(unsigned)NODE_REQGRAD) |
                      ((st[k] & FLAG_WANT) ? (unsigned)NODE_REQGRAD : 0u);
    }
    ad_node **grads = NULL;
    int64_t nbefore = 0;
    if (st[y->id] & FLAG_WANT)
        grads = build_gradients(y, &nbefore, record);
    bool ok = !g->has_error && (grads || !(st[y->id] & FLAG_WANT));
    for (int64_t k = 0; k < m; k++) {
        ad_node *node = g->nodes[k];
        node->flags = (node->flags & ~(unsigned)NODE_REQGRAD) |
                      ((st[k] & FLAG_WAS) ? (unsigned)NODE_REQGRAD : 0u);
    }
    ad_mem(g, st, (size_t)m, 0);
    for (int64_t k = mark; k < g->nnodes; k++) { /* the usual meaning for the new nodes */
        ad_node *node = g->nodes[k];
        if (ad_ops[node->op].kind == AD_KIND_LEAF)
            continue;
        bool req = false;
        if (ad_ops[node->op].backward != ad_nograd)
            for (int j = 0; j < node->ninputs; j++)
                req = req || (node->inputs[j]->flags & NODE_REQGRAD);
        node->flags = (node->flags & ~(unsigned)NODE_REQGRAD) | (req ? (unsigned)NODE_REQGRAD : 0u);
    }
    for (int i = 0; ok && i < n; i++) {
        ad_node *r = grads && xs[i]->id < nbefore ? grads[xs[i]->id] : NULL;
        out[i] = r ? r : ad_zeros_like(xs[i]);
        ok = out[i] != NULL;
        if (ok && record && out[i]->id >= mark) {
            ok = ad_node_rare_own(out[i]) != NULL; /* on the heap: a made node */
            if (!ok)
                break;
            out[i]->rare->deriv_of[0] = y;
            out[i]->rare->deriv_of[1] = xs[i];
        }
    }
    if (grads)
        ad_mem(g, grads, sizeof(ad_node *) * (size_t)nbefore, 0);
    if (!ok) {
        ad_graph_rewind(g, mark);
        for (int i = 0; i < n; i++)
            out[i] = NULL;
    }
    return ok;
}

int ad_grad_n(ad_node *y, int n, ad_node *const *xs, ad_node **out)
{
    if (!y) {
        for (int i = 0; out && xs && i < n; i++)
            if (xs[i]) {
                ad_fail(xs[i]->g, "ad_grad_n: y is NULL");
                break;
            }
        return -1;
    }
    return ad_grad_build(y, n, xs, out, true, "ad_grad_n") ? 0 : -1;
}

ad_node *ad_grad(ad_node *y, ad_node *x)
{
    if (!y || !x)
        return NULL;
    ad_node *r = NULL;
    return ad_grad_build(y, 1, &x, &r, true, "ad_grad") ? r : NULL;
}

/* ------------------------------------------------------------------
 * Partial replay: after a leaf's value changes, only the nodes between it and
 * an output that depend on it need recomputing. Used by the finite-difference
 * estimator (one leaf element moved) and by the Jacobians (one seed moved). A
 * dropout mask is never replayed: its value is a draw, not a function of its
 * input, so differences see the same mask on both sides. */

bool ad_replay_plan(ad_node *src, ad_node *dst, ad_replay *p, const char *fn)
{
    ad_graph *g = src->g;
    p->ids = NULL;
    p->n = 0;
    if (dst->id <= src->id)
        return true;
    const int64_t lo = src->id, m = dst->id - lo + 1;
    unsigned char *mark = ad_mem(g, NULL, 0, (size_t)m);
    if (!mark)
        return false;
    memset(mark, 0, (size_t)m);
    enum { DEP = 1, ANC = 2 };
    mark[0] = DEP;
    for (int64_t k = 1; k < m; k++) {
        ad_node *node = g->nodes[lo + k];
        if (node->op == AD_OP_DROPOUT_MASK)
            continue;
        for (int j = 0; j < node->ninputs; j++)
            if (node->inputs[j]->id >= lo && (mark[node->inputs[j]->id - lo] & DEP)) {
                mark[k] |= DEP;
                break;
            }
    }
    mark[m - 1] |= ANC;
    int64_t count = 0;
    for (int64_t k = m - 1; k > 0; k--) {
        if (!(mark[k] & ANC))
            continue;
        ad_node *node = g->nodes[lo + k];
        for (int j = 0; j < node->ninputs; j++)
            if (node->inputs[j]->id > lo)
                mark[node->inputs[j]->id - lo] |= ANC;
        if (mark[k] & DEP) {
            count++;
            if (node->flags & NODE_PLANNED) {
                ad_fail(g,
                        "%s: '%s' depends on backward node %lld, whose buffer memory reuse "
                        "shares (ad_graph_set_memory_reuse)",
                        fn, dst->rare->name, (long long)node->id);
                ad_mem(g, mark, (size_t)m, 0);
                return false;
            }
        }
    }
    p->ids = count ? ad_mem(g, NULL, 0, sizeof(int64_t) * (size_t)count) : NULL;
    if (count && !p->ids) {
        ad_mem(g, mark, (size_t)m, 0);
        return false;
    }
    for (int64_t k = 1; k < m; k++)
        if ((mark[k] & (DEP | ANC)) == (DEP | ANC))
            p->ids[p->n++] = lo + k;
    ad_mem(g, mark, (size_t)m, 0);
    return true;
}

bool ad_replay_run(ad_graph *g, const ad_replay *p)
{
    for (int64_t i = 0; i < p->n; i++)
        if (!ad_compute(g->nodes[p->ids[i]], false))
            return false;
    return !g->has_error;
}

void ad_replay_free(ad_graph *g, ad_replay *p)
{
    if (p->ids)
        ad_mem(g, p->ids, sizeof(int64_t) * (size_t)p->n, 0);
    p->ids = NULL;
    p->n = 0;
}
