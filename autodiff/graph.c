/* graph.c -- the graph: memory (allocator hook and arena), errors, nodes,
 * leaves, reading and writing values, introspection. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"
#include "support_impl.h"

#define ARENA_ALIGN 64

/* the shape of every 0-d node and the rare record of every node made
 * without one: read-only, so a write through a node that has no storage of
 * its own faults rather than changing them all */
static const int64_t no_dims[AD_MAX_DIMS];
static const ad_node_rare no_rare = {.name = ""};
#define ARENA_MIN_BLOCK (64 * 1024)

/* ------------------------------------------------------------------ memory */

void *ad_mem(ad_graph *g, void *p, size_t osize, size_t nsize)
{
    void *q = g->alloc(g->ud, p, osize, nsize);
    if (nsize == 0) {
        g->bytes -= osize;
        return NULL;
    }
    if (!q) {
        ad_fail(g, "out of memory (asked for %zu bytes)", nsize);
        return NULL;
    }
    g->bytes = g->bytes - osize + nsize;
    return q;
}

static size_t align_up(size_t x) { return (x + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

/* Small objects (nodes, names) pack at 16 bytes; tensors start on a cache line. */
static size_t align_small(size_t x) { return (x + 15) & ~(size_t)15; }

static size_t block_header(void) { return align_up(sizeof(arena_block)); }

/* A spare block of at least size bytes, or NULL. */
static arena_block *arena_take_spare(ad_graph *g, size_t size)
{
    for (arena_block **p = &g->arena_spare; *p; p = &(*p)->prev)
        if ((*p)->size >= size) {
            arena_block *b = *p;
            *p = b->prev;
            return b;
        }
    return NULL;
}

/* A block with room for bytes becomes the arena's end (a spare one, else a
 * new one); NULL without memory. */
static arena_block *arena_grow(ad_graph *g, size_t bytes)
{
    size_t size = bytes + block_header();
    if (size < ARENA_MIN_BLOCK)
        size = ARENA_MIN_BLOCK;
    arena_block *nb = arena_take_spare(g, size);
    if (nb) {
        size = nb->size;
    } else {
        /* over-allocate to align the block's data */
        nb = ad_mem(g, NULL, 0, size + ARENA_ALIGN);
        if (!nb)
            return NULL;
    }
    nb->prev = g->arena;
    nb->size = size;
    nb->used = block_header();
    g->arena = nb;
    return nb;
}

/* bytes (a multiple of 16) at the arena's end; line: on a cache-line
 * boundary. Every node goes through here: the common case is a few
 * instructions, inline. */
static inline void *arena_alloc(ad_graph *g, size_t bytes, bool line)
{
    arena_block *b = g->arena;
    if (b && line)
        b->used = align_up(b->used) <= b->size ? align_up(b->used) : b->size;
    if (!b || b->size - b->used < bytes) {
        b = arena_grow(g, bytes);
        if (!b)
            return NULL;
    }
    uintptr_t base = ((uintptr_t)b + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    void *p = (char *)base + b->used;
    b->used += bytes;
    return p;
}

void *ad_arena_alloc(ad_graph *g, size_t bytes)
{
    return bytes >= 256 ? arena_alloc(g, align_up(bytes), true)
                        : arena_alloc(g, align_small(bytes ? bytes : 1), false);
}

/* The arena state just before p was allocated, p being the start of an
 * allocation made at a line boundary (a node: everything made after it is
 * discarded with it). A node that opened a new block leaves the previous
 * block's tail unused until that block is rewound or freed. */
static void arena_state_at(const ad_graph *g, const void *p, arena_block **blk, size_t *used)
{
    for (arena_block *b = g->arena; b; b = b->prev) {
        uintptr_t base = ((uintptr_t)b + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
        if ((uintptr_t)p >= base + block_header() && (uintptr_t)p < base + b->size) {
            *blk = b;
            *used = (size_t)((uintptr_t)p - base);
            return;
        }
    }
    assert(!"a node outside its graph's arena");
    *blk = NULL;
    *used = 0;
}

/* Frees the blocks made after keep (graph teardown and failed allocations). */
static void arena_free_until(ad_graph *g, arena_block *keep, size_t used)
{
    while (g->arena && g->arena != keep) {
        arena_block *prev = g->arena->prev;
        ad_mem(g, g->arena, g->arena->size + ARENA_ALIGN, 0);
        g->arena = prev;
    }
    if (g->arena)
        g->arena->used = used;
}

/* ad_graph_rewind: the blocks made after keep go to the spare list, never back
 * to the allocator, so a stale handle to a discarded node still points into
 * memory the graph owns (no use after free); new nodes reuse the blocks. */
static void arena_rewind(ad_graph *g, arena_block *keep, size_t used)
{
    while (g->arena && g->arena != keep) {
        arena_block *b = g->arena;
        g->arena = b->prev;
        b->prev = g->arena_spare;
        g->arena_spare = b;
    }
    if (g->arena)
        g->arena->used = used;
}

/* ------------------------------------------------------------------ errors */

void ad_fail(ad_graph *g, const char *fmt, ...)
{
    if (!g || g->has_error)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error_buf, sizeof g->error_buf, fmt, ap);
    va_end(ap);
    g->error = g->error_buf;
    g->has_error = true;
}

const char *ad_graph_error(const ad_graph *g)
{
    if (!g)
        return "ad_graph_error: graph is NULL";
    return g->has_error ? g->error : NULL;
}

int ad_graph_set_error(ad_graph *g, const char *message)
{
    ad_fail(g, "%s", message ? message : "error");
    return -1;
}

void ad_graph_clear_error(ad_graph *g)
{
    if (g) {
        g->has_error = false;
        g->error = NULL;
    }
}

/* ------------------------------------------------------------------ graph */

ad_graph *ad_graph_new_err(ad_dtype dtype, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    if (dtype != AD_F32 && dtype != AD_F64) {
        ad_error_set(err, AD_EINVAL, "ad_graph_new: dtype %d is not AD_F32 or AD_F64", (int)dtype);
        return NULL;
    }
    if (!alloc)
        alloc = ad_default_alloc;
    /* ad_gemm_held's table comes with the graph (an evaluation after the
       first training step allocates nothing) */
    const size_t bytes = sizeof(ad_graph) + ad_gemm_cache_bytes(dtype);
    ad_graph *g = alloc(ud, NULL, 0, bytes);
    if (!g) {
        ad_error_set(err, AD_ENOMEM, "ad_graph_new: out of memory (asked for %zu bytes)", bytes);
        return NULL;
    }
    ad_error_ok(err);
    memset(g, 0, bytes);
    if (bytes > sizeof *g)
        g->gemm_cache = (struct gemm_cache *)(g + 1);
    g->dtype = dtype;
    g->elem = dtype == AD_F32 ? sizeof(float) : sizeof(double);
    g->alloc = alloc;
    g->ud = ud;
    g->bytes = bytes;
    ad_graph_seed(g, 0x5eedULL);
    return g;
}

ad_graph *ad_graph_new_with(ad_dtype dtype, ad_alloc_fn alloc, void *ud)
{
    return ad_graph_new_err(dtype, alloc, ud, NULL);
}

ad_graph *ad_graph_new(ad_dtype dtype) { return ad_graph_new_err(dtype, NULL, NULL, NULL); }

/* Frees the heap blocks of n among kinds (NODE_HEAP_ flags; NODE_HEAP_ANY
 * for all) and clears their pointers; n leaves g's count of heap nodes when
 * it holds none any more. The one way a node's heap memory is given back:
 * ad_graph_free, node reuse and ad_leaf_move all come here. */
static void node_free_heap(ad_graph *g, ad_node *n, unsigned kinds)
{
    const unsigned held = n->flags & kinds & NODE_HEAP_ANY;
    if (!held)
        return;
    if (held & NODE_HEAP_VALUE) {
        ad_mem(g, n->value, (size_t)n->capacity * g->elem, 0);
        n->value = NULL;
    }
    if (held & NODE_HEAP_GRAD) {
        ad_mem(g, n->rare->grad, (size_t)n->numel * g->elem, 0);
        n->rare->grad = NULL;
    }
    if (held & NODE_HEAP_AUX) {
        ad_mem(g, n->rare->aux, n->rare->aux_bytes, 0);
        n->rare->aux = NULL;
        n->rare->aux_bytes = 0;
    }
    if (held & NODE_HEAP_NAME) {
        ad_mem(g, (char *)n->rare->name, strlen(n->rare->name) + 1, 0);
        n->rare->name = "";
    }
    if (held & NODE_HEAP_RARE) { /* last: the pointers above live in it */
        ad_mem(g, n->rare, sizeof *n->rare, 0);
        n->rare = (ad_node_rare *)&no_rare;
    }
    if (held & NODE_HEAP_SHAPE) {
        ad_mem(g, n->shape, sizeof(int64_t) * AD_MAX_DIMS, 0);
        n->shape = (int64_t *)no_dims;
        n->ndim = 0;
    }
    n->flags &= ~held;
    if (!(n->flags & NODE_HEAP_ANY))
        g->nheap--;
}

/* Marks n as holding heap memory (kind: one of the NODE_HEAP_ flags). */
static void node_took_heap(ad_graph *g, ad_node *n, unsigned kind)
{
    if (!(n->flags & NODE_HEAP_ANY))
        g->nheap++;
    n->flags |= kind;
}

static void borrows_end_from(ad_graph *g, int64_t mark);
static void input_unborrow(ad_node *n, bool keep);

static void free_tape(ad_graph *g, tape *t)
{
    ad_mem(g, t->leaves, sizeof(ad_node *) * (size_t)t->nleaves * 2, 0);
    t->leaves = t->grads = NULL;
    if (t->acc_pos)
        ad_mem(g, t->acc_pos, TAPE_ACC_BYTES(t->nleaves), 0);
    t->acc_pos = NULL;
    t->acc_leaf = t->acc_grad = NULL;
}

void ad_graph_free(ad_graph *g)
{
    if (!g)
        return;
    borrows_end_from(g, 0);
    if (g->borrows)
        ad_mem(g, g->borrows, sizeof *g->borrows * (size_t)g->cap_borrows, 0);
    for (int64_t i = 0; g->nheap > 0 && i < g->nnodes; i++)
        node_free_heap(g, g->nodes[i], NODE_HEAP_ANY);
    for (int i = 0; i < g->ntapes; i++)
        free_tape(g, &g->tapes[i]);
    ad_mem(g, g->tapes, sizeof(tape) * (size_t)g->cap_tapes, 0);
    ad_mem(g, g->nodes, sizeof(ad_node *) * (size_t)g->cap_nodes, 0);
    ad_mem(g, g->params, sizeof(ad_node *) * (size_t)g->cap_params, 0);
    if (g->scratch)
        ad_mem(g, g->scratch, g->scratch_bytes, 0);
    ad_gemm_cache_free(g);
    arena_free_until(g, NULL, 0);
    while (g->arena_spare) {
        arena_block *b = g->arena_spare;
        g->arena_spare = b->prev;
        ad_mem(g, b, b->size + ARENA_ALIGN, 0);
    }
    g->alloc(g->ud, g, sizeof *g + ad_gemm_cache_bytes(g->dtype), 0);
}

ad_dtype ad_graph_dtype(const ad_graph *g) { return g ? g->dtype : AD_F64; }
int64_t ad_graph_size(const ad_graph *g) { return g ? g->nnodes : 0; }
size_t ad_graph_bytes(const ad_graph *g) { return g ? g->bytes : 0; }

ad_node *ad_graph_node(const ad_graph *g, int64_t i)
{
    if (!g || i < 0 || i >= g->nnodes)
        return NULL;
    return g->nodes[i];
}

int64_t ad_graph_mark(const ad_graph *g) { return g ? g->nnodes : -1; }

int ad_graph_rewind(ad_graph *g, int64_t mark)
{
    if (!g)
        return -1;
    if (mark < 0 || mark > g->nnodes) {
        ad_fail(g, "ad_graph_rewind: mark %lld is not in [0, %lld]", (long long)mark,
                (long long)g->nnodes);
        return -1;
    }
    if (mark == g->nnodes)
        return 0;
    arena_block *blk;
    size_t used;
    arena_state_at(g, g->nodes[mark], &blk, &used);
    borrows_end_from(g, mark);
    for (int64_t i = mark; g->nheap > 0 && i < g->nnodes; i++)
        node_free_heap(g, g->nodes[i], NODE_HEAP_ANY);
    /* drop backward passes that reach past the mark */
    int kept = 0;
    for (int i = 0; i < g->ntapes; i++) {
        if (g->tapes[i].end > mark || g->tapes[i].loss->id >= mark)
            free_tape(g, &g->tapes[i]);
        else
            g->tapes[kept++] = g->tapes[i];
    }
    g->ntapes = kept;
    for (int64_t i = 0; i < mark; i++) {
        ad_node *n = g->nodes[i];
        if (n->grad_node && n->grad_node->id >= mark)
            n->grad_node = NULL;
    }
    while (g->nparams > 0 && g->params[g->nparams - 1]->id >= mark)
        g->nparams--;
    g->nnodes = mark;
    /* In the checking mode the discarded nodes' memory is not reused, so every
     * stale handle stays detectable (ad_node_live); otherwise it is reused. */
    if (!g->check_finite)
        arena_rewind(g, blk, used);
    return 0;
}

void ad_graph_seed(ad_graph *g, uint64_t seed)
{
    if (!g)
        return;
    ad_xoshiro_seed(g->rng, seed); /* the library's one generator (support_impl.h) */
}

void ad_graph_rng_state(const ad_graph *g, uint64_t state[4])
{
    if (g && state)
        memcpy(state, g->rng, sizeof g->rng);
}

void ad_graph_set_rng_state(ad_graph *g, const uint64_t state[4])
{
    if (g && state)
        memcpy(g->rng, state, sizeof g->rng);
}

void ad_graph_set_memory_reuse(ad_graph *g, int on)
{
    if (g)
        g->reuse_memory = on != 0;
}

void ad_graph_set_training(ad_graph *g, int on)
{
    if (g)
        g->eval_mode = !on;
}

void ad_graph_hold_leaves(ad_graph *g, bool on)
{
    g->leaves_held = on;
    if (on)
        g->held_epoch++;
}

int ad_graph_is_training(const ad_graph *g) { return g && !g->eval_mode; }

double ad_rng_uniform(ad_graph *g) { return ad_bits_to_unit(ad_xoshiro_next(g->rng)); }

void ad_graph_set_check_finite(ad_graph *g, int on)
{
    if (g)
        g->check_finite = on != 0;
}

/* ------------------------------------------------------------------ nodes */

const char *ad_dims_str(int ndim, const int64_t *dims, char *buf, size_t size)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, size - k, "(");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (k < size)
        snprintf(buf + k, size - k, ")");
    return buf;
}

const char *ad_shape_str(const ad_node *n, char *buf, size_t size)
{
    return ad_dims_str(n ? n->ndim : 0, n ? n->shape : NULL, buf, size);
}

void ad_axis_geometry(const ad_node *t, int axis, int64_t *outer, int64_t *len, int64_t *inner)
{
    if (axis < 0) {
        *outer = 1;
        *len = t->numel;
        *inner = 1;
        return;
    }
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++)
        *outer *= t->shape[d];
    for (int d = axis + 1; d < t->ndim; d++)
        *inner *= t->shape[d];
    *len = t->shape[axis];
}

/* Is n in its graph (made), rather than being made or discarded? Memory
 * given to a made node comes from the heap: the arena's end may be rewound
 * under it. */
static bool node_made(const ad_node *n)
{
    const ad_graph *g = n->g;
    return n->id >= 0 && n->id < g->nnodes && g->nodes[n->id] == n;
}

/* Shape storage for a node that had none (0-d so far): in the arena while it
 * is being made, on the heap once it is in the graph (a replay that gives a
 * 0-d node axes). */
static bool shape_storage(ad_node *n)
{
    ad_graph *g = n->g;
    bool made = node_made(n);
    int64_t *p = made ? ad_mem(g, NULL, 0, sizeof(int64_t) * AD_MAX_DIMS)
                      : ad_arena_alloc(g, sizeof(int64_t) * AD_MAX_DIMS);
    if (!p)
        return false;
    memset(p, 0, sizeof(int64_t) * AD_MAX_DIMS);
    n->shape = p;
    if (made)
        node_took_heap(g, n, NODE_HEAP_SHAPE);
    return true;
}

bool ad_shape_set(ad_node *n, int ndim, const int64_t *shape, const char *opname)
{
    if (ndim < 0 || ndim > AD_MAX_DIMS) {
        ad_fail(n->g, "%s: %d axes requested, at most %d are supported", opname, ndim, AD_MAX_DIMS);
        return false;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            ad_fail(n->g, "%s: axis %d has negative size %lld", opname, i, (long long)shape[i]);
            return false;
        }
    int64_t total;
    if (!ad_shape_numel(ndim, shape, &total)) {
        ad_fail(n->g, "%s: element count overflows", opname);
        return false;
    }
    if (ndim > 0 && n->shape == no_dims && !shape_storage(n))
        return false;
    n->ndim = ndim;
    if (shape != n->shape)
        for (int i = 0; i < ndim; i++)
            n->shape[i] = shape[i];
    n->numel = total;
    return true;
}

/* Points n at the buffer p; the nodes that alias n's old buffer (reshape,
 * detach) follow it now, not only at the next ad_forward. */
static void node_move_value(ad_node *n, void *p)
{
    ad_graph *g = n->g;
    if (n->value && n->value != p)
        for (int64_t i = n->id + 1; i < g->nnodes; i++)
            if ((g->nodes[i]->flags & NODE_ALIAS) && g->nodes[i]->value == n->value)
                g->nodes[i]->value = p;
    n->value = p;
}

bool ad_node_reserve(ad_node *n)
{
    if (n->flags & NODE_ALIAS)
        return true;
    if (n->numel <= n->capacity && n->value)
        return true;
    ad_graph *g = n->g;
    /* one-element nodes (define-by-run scalars): the inline buffer, before
     * the overflow check's division */
    if (n->value == NULL && n->numel <= 2 && (size_t)n->numel * g->elem <= sizeof n->inline_value) {
        n->value = &n->inline_value;
        n->capacity = (int64_t)(sizeof n->inline_value / g->elem);
        return true;
    }
    if (n->flags & NODE_EXT_VALUE) {
        ad_fail(g, "%s: node '%s' has caller-owned memory of %lld elements, needs %lld",
                ad_ops[n->op].name, n->rare->name, (long long)n->capacity, (long long)n->numel);
        return false;
    }
    if ((size_t)n->numel > SIZE_MAX / g->elem) {
        ad_fail(g, "%s: element count overflows", ad_ops[n->op].name);
        return false;
    }
    void *p;
    if (n->value == NULL && (size_t)n->numel * g->elem <= sizeof n->inline_value) {
        n->value = &n->inline_value;
        n->capacity = (int64_t)(sizeof n->inline_value / g->elem);
        return true;
    }
    if (n->value == NULL) {
        p = ad_arena_alloc(g, (size_t)n->numel * g->elem);
    } else {
        /* grown after creation (a bigger batch): own heap memory, so that
         * rewinding the arena never frees a buffer still in use */
        size_t old = (n->flags & NODE_HEAP_VALUE) ? (size_t)n->capacity * g->elem : 0;
        p = ad_mem(g, (n->flags & NODE_HEAP_VALUE) ? n->value : NULL, old,
                   (size_t)n->numel * g->elem);
        if (p)
            node_took_heap(g, n, NODE_HEAP_VALUE);
    }
    if (!p)
        return false;
    node_move_value(n, p);
    n->capacity = n->numel;
    return true;
}

ad_node_rare *ad_node_rare_own(ad_node *n)
{
    if (n->rare != &no_rare)
        return n->rare;
    ad_graph *g = n->g;
    bool made = node_made(n);
    ad_node_rare *r = made ? ad_mem(g, NULL, 0, sizeof *r) : ad_arena_alloc(g, sizeof *r);
    if (!r)
        return NULL;
    *r = no_rare;
    n->rare = r;
    if (made)
        node_took_heap(g, n, NODE_HEAP_RARE);
    return r;
}

bool ad_node_aux(ad_node *n, size_t bytes)
{
    if (bytes <= n->rare->aux_bytes && n->rare->aux)
        return true;
    ad_graph *g = n->g;
    if (!ad_node_rare_own(n))
        return false;
    void *p;
    if (!n->rare->aux && n->id == g->nnodes) { /* n is being made */
        p = ad_arena_alloc(g, bytes ? bytes : 1);
    } else {
        /* grown after creation, or made for n by a later node's shape rule:
           heap, so that rewinding never frees it under us; the contents are
           kept (a realloc, or a copy out of the arena) */
        bool heap = (n->flags & NODE_HEAP_AUX) != 0;
        p = ad_mem(g, heap ? n->rare->aux : NULL, heap ? n->rare->aux_bytes : 0, bytes);
        if (p && n->rare->aux && !heap)
            memcpy(p, n->rare->aux, n->rare->aux_bytes);
        if (p)
            node_took_heap(g, n, NODE_HEAP_AUX);
    }
    if (!p)
        return false;
    n->rare->aux = p;
    n->rare->aux_bytes = bytes;
    return true;
}

bool ad_scratch(ad_graph *g, size_t bytes)
{
    if (bytes <= g->scratch_bytes)
        return true;
    /* contents need not survive: free and allocate rather than copy */
    if (g->scratch)
        ad_mem(g, g->scratch, g->scratch_bytes, 0);
    g->scratch = NULL;
    g->scratch_bytes = 0;
    void *p = ad_mem(g, NULL, 0, bytes);
    if (!p)
        return false;
    g->scratch = p;
    g->scratch_bytes = bytes;
    return true;
}

/* Gives back the arena memory of n and of everything made after it. */
static void node_discard(ad_graph *g, ad_node *n)
{
    arena_block *blk;
    size_t used;
    arena_state_at(g, n, &blk, &used);
    arena_rewind(g, blk, used);
}

static bool graph_push(ad_graph *g, ad_node *n)
{
    if (g->nnodes == g->cap_nodes) {
        int64_t cap = g->cap_nodes ? g->cap_nodes * 2 : 256;
        ad_node **nodes = ad_mem(g, g->nodes, sizeof(ad_node *) * (size_t)g->cap_nodes,
                                 sizeof(ad_node *) * (size_t)cap);
        if (!nodes)
            return false;
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    n->id = g->nnodes;
    g->nodes[g->nnodes++] = n;
    return true;
}

static const char *copy_name(ad_graph *g, const char *name)
{
    if (!name || !*name)
        return "";
    size_t len = strlen(name);
    char *s = ad_arena_alloc(g, len + 1);
    if (!s)
        return NULL;
    memcpy(s, name, len + 1);
    return s;
}

/* Zeroes a node in 16-byte stores where the compiler has vectors: a memset
 * of its 128 bytes becomes a string instruction whose start-up costs about
 * what the rest of creating a scalar node does. */
static void node_clear(ad_node *node)
{
#ifdef __GNUC__
    typedef long long v2 __attribute__((vector_size(16), may_alias)); /* stores of any type */
    _Static_assert(sizeof *node % (4 * sizeof(v2)) == 0, "ad_node is whole lines");
    v2 *p = (v2 *)(void *)node, z = {0, 0};
    for (size_t i = 0; i < sizeof *node / sizeof(v2); i += 4) {
        p[i] = z;
        p[i + 1] = z;
        p[i + 2] = z;
        p[i + 3] = z;
    }
#else
    memset(node, 0, sizeof *node);
#endif
}

static ad_node *node_alloc(ad_graph *g, int op, int n, ad_node *const *inputs)
{
    ad_node *node = arena_alloc(g, sizeof *node, true);
    if (!node)
        return NULL;
    /* Nodes follow one another in the arena: ask for the lines of the node
     * made AD_AHEAD_BUILD nodes from now, so that writing it does not wait for its
     * memory (the step before last used it; a scalar step writes megabytes
     * of nodes, which leaves them out of the near caches) */
    const char *ahead = (const char *)node + AD_AHEAD_BUILD * sizeof *node;
    for (size_t k = 0; k < sizeof *node; k += 64)
        AD_PREFETCH_WRITE(ahead + k);
    node_clear(node);
    node->shape = (int64_t *)no_dims;
    node->rare = (ad_node_rare *)&no_rare;
    node->g = g;
    node->op = op;
    node->id = g->nnodes; /* not in the graph yet (shape_storage); for messages */
    node->ninputs = n;
    if (n <= 2) {
        node->inputs = node->small_inputs;
    } else {
        node->inputs = ad_arena_alloc(g, sizeof(ad_node *) * (size_t)n);
        if (!node->inputs) {
            node_discard(g, node);
            return NULL;
        }
    }
    for (int i = 0; i < n; i++)
        node->inputs[i] = inputs[i];
    return node;
}

bool ad_node_live(const ad_node *n, const char *fn)
{
    if (node_made(n))
        return true;
    ad_fail(n->g, "%s: node %lld was discarded by ad_graph_rewind (a stale handle)", fn,
            (long long)n->id);
    return false;
}

bool ad_check_values(ad_node *n)
{
    bool ok = true;
    int64_t bad = 0;
    AD_DISPATCH(n->g, {
        const T *v = n->value;
        for (int64_t i = 0; i < n->numel; i++)
            if (!isfinite(v[i])) {
                ok = false;
                bad = i;
                break;
            }
    });
    if (!ok) {
        char sh[96];
        ad_fail(n->g, "%s: non-finite value at element %lld of node %lld '%s' %s in the %s pass",
                ad_ops[n->op].name, (long long)bad, (long long)n->id, n->rare->name,
                ad_shape_str(n, sh, sizeof sh), (n->flags & NODE_TAPE) ? "backward" : "forward");
    }
    return ok;
}

/* A node's shape never promises more elements than its buffer holds: when a
 * replay's new shape cannot get its memory, the old shape (which its buffer
 * follows) is put back, so a caller who clears the error and goes on reads
 * within bounds. */
static bool infer_shape(ad_node *n, const ad_op_info *op)
{
    const int ndim = n->ndim;
    const int64_t numel = n->numel;
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, n->shape, sizeof(int64_t) * (size_t)ndim);
    if (op->shape(n) && ad_node_reserve(n))
        return true;
    n->ndim = ndim;
    n->numel = numel;
    memcpy(n->shape, shape, sizeof(int64_t) * (size_t)ndim);
    return false;
}

bool ad_compute_shaped(ad_node *n)
{
    const ad_op_info *op = &ad_ops[n->op];
    if (!infer_shape(n, op))
        return false;
    op->forward(n);
    return !n->g->check_finite || ad_check_values(n);
}

/* An elementwise op over 0-d inputs gives a 0-d node: define-by-run scalar
 * code makes one per operation, so its shape rule, the broadcast of its
 * inputs and the choice of its buffer are skipped (a one-element node keeps
 * its value inline, as ad_node_reserve would give it). */
bool ad_op_elementwise(const ad_op_info *info)
{
    return info->shape == ad_shape_same || info->shape == ad_shape_bcast;
}

ad_node *ad_node_make(ad_graph *g, int op, int n, ad_node *const *inputs, const double *fp,
                      const int64_t *ip)
{
    const ad_op_info *info = &ad_ops[op];
    bool scalar = n > 0 && ad_op_elementwise(info), reqgrad = false;
    int order = g->building_order;
    /* A gradient build (building_order > 0) hands its rules only nodes of
     * the live graph, and what they make is of the build's order: what they
     * read is the output's ancestors (of its order or lower) or the build's
     * own nodes. So a build reads only its inputs' first lines: no liveness
     * check (its read of g->nodes at the input's id missed the caches for
     * the far-apart terms of an add_n), no order. */
    const bool building = g->building_order > 0;
    for (int i = 0; i < n; i++) {
        const ad_node *in = inputs[i];
        if (i + AD_AHEAD_BUILD < n) /* an add_n's terms: made far apart, read ahead */
            AD_PREFETCH(inputs[i + AD_AHEAD_BUILD]);
        scalar = scalar && in->ndim == 0;
        reqgrad = reqgrad || (in->flags & NODE_REQGRAD);
        if (building)
            continue;
        if (!ad_node_live(in, info->name))
            return NULL;
        order = in->order > order ? in->order : order;
    }
    ad_node *node = node_alloc(g, op, n, inputs);
    if (!node)
        return NULL;
    if (fp)
        memcpy(node->fparam, fp, sizeof node->fparam);
    if (ip) {
        if (!ad_node_rare_own(node)) {
            node_discard(g, node);
            return NULL;
        }
        memcpy(node->rare->iparam, ip, sizeof(int64_t) * AD_MAX_IPARAMS);
    }
    if (reqgrad && info->backward != ad_nograd)
        node->flags |= NODE_REQGRAD;
    if (g->building_tape)
        node->flags |= g->reuse_memory ? NODE_TAPE | NODE_PLANNED : NODE_TAPE;
    /* NODE_PLANNED: shape now; buffer and value when the tape is planned */
    if (info->forward == ad_fwd_alias)
        node->flags |= NODE_ALIAS;
    node->order = order;
    if (info->check != ad_nocheck && !info->check(node)) {
        arena_block *blk;
        size_t used;
        arena_state_at(g, node, &blk, &used);
        arena_free_until(g, blk, used);
        return NULL;
    }
    bool had_error = g->has_error;
    bool ok;
    if (scalar) {
        node->numel = 1; /* ndim 0 */
        if (!(node->flags & (NODE_ALIAS | NODE_PLANNED))) {
            node->value = &node->inline_value;
            node->capacity = (int64_t)(sizeof node->inline_value / g->elem);
        }
        ok = (node->flags & NODE_PLANNED) || ad_compute(node, false);
    } else {
        ok = (node->flags & NODE_PLANNED) ? info->shape(node) : ad_compute(node, true);
    }
    /* ad_compute may set g->has_error (a forward-time error such as a bad
     * one-hot index): cppcheck does not see that */
    // cppcheck-suppress incorrectLogicOperator
    if (!ok || (!had_error && g->has_error)) {
        node_discard(g, node);
        return NULL;
    }
    if (!graph_push(g, node)) {
        node_free_heap(g, node, NODE_HEAP_ANY);
        node_discard(g, node);
        return NULL;
    }
    return node;
}

/* ------------------------------------------------------------------ leaves */

bool ad_shape_leaf(ad_node *n)
{
    (void)n;
    return true;
}

void ad_fwd_leaf(ad_node *n) { (void)n; }

void ad_nograd(ad_node *n, ad_node *g, ad_node **grads)
{
    (void)n;
    (void)g;
    (void)grads;
}

bool ad_nocheck(const ad_node *n)
{
    (void)n;
    return true;
}

static ad_node *make_leaf(ad_graph *g, int op, unsigned flags, int ndim, const int64_t *shape,
                          const char *name, const char *fn, void *ext_value)
{
    if (!g)
        return NULL;
    if (ndim < 0 || ndim > AD_MAX_DIMS) {
        ad_fail(g, "%s: ndim %d is not in [0, %d]", fn, ndim, AD_MAX_DIMS);
        return NULL;
    }
    if (ndim > 0 && !shape) {
        ad_fail(g, "%s: shape is NULL for %d axes", fn, ndim);
        return NULL;
    }
    ad_node *n = node_alloc(g, op, 0, NULL);
    if (!n)
        return NULL;
    n->flags = flags;
    if (!ad_shape_set(n, ndim, shape, fn))
        goto fail;
    /* a trainable leaf's record holds its gradient */
    if ((name && *name) || (flags & NODE_TRAINABLE)) {
        if (!ad_node_rare_own(n))
            goto fail;
        n->rare->name = copy_name(g, name);
        if (!n->rare->name)
            goto fail;
    }
    if (ext_value) {
        n->value = ext_value;
        n->capacity = n->numel;
        n->flags |= NODE_EXT_VALUE;
    } else {
        if (!ad_node_reserve(n))
            goto fail;
        memset(n->value, 0, (size_t)n->numel * g->elem);
    }
    if (!graph_push(g, n))
        goto fail;
    return n;
fail:
    node_discard(g, n);
    return NULL;
}

static bool push_param(ad_graph *g, ad_node *n)
{
    if (g->nparams == g->cap_params) {
        int64_t cap = g->cap_params ? g->cap_params * 2 : 64;
        ad_node **p = ad_mem(g, g->params, sizeof(ad_node *) * (size_t)g->cap_params,
                             sizeof(ad_node *) * (size_t)cap);
        if (!p)
            return false;
        g->params = p;
        g->cap_params = cap;
    }
    g->params[g->nparams++] = n;
    return true;
}

static bool alloc_grad(ad_node *n, void *ext_grad)
{
    if (ext_grad) {
        n->rare->grad = ext_grad;
        n->flags |= NODE_EXT_GRAD;
        return true;
    }
    n->rare->grad = ad_arena_alloc(n->g, (size_t)(n->numel ? n->numel : 1) * n->g->elem);
    if (!n->rare->grad)
        return false;
    memset(n->rare->grad, 0, (size_t)n->numel * n->g->elem);
    return true;
}

/* A parameter of at least this many bytes holds its value and gradient in
 * heap blocks of its own rather than in the arena: ad_leaf_move (nn models
 * gather their parameters into flat buffers after building) gives them back,
 * and the gradient is made only when first needed, so a model's build never
 * holds its parameters' gradients twice. */
#define PARAM_HEAP_BYTES 4096

bool ad_leaf_grad_ready(ad_node *n)
{
    if (n->rare->grad || !(n->flags & NODE_TRAINABLE))
        return true;
    ad_graph *g = n->g;
    size_t bytes = (size_t)n->numel * g->elem;
    n->rare->grad = ad_mem(g, NULL, 0, bytes);
    if (!n->rare->grad)
        return false;
    memset(n->rare->grad, 0, bytes);
    node_took_heap(g, n, NODE_HEAP_GRAD);
    return true;
}

ad_node *ad_param(ad_graph *g, int ndim, const int64_t *shape, const char *name)
{
    /* a shape make_leaf will refuse gets no block (it reports why) */
    size_t bytes = 0;
    void *heap = NULL;
    if (g && ndim > 0 && ndim <= AD_MAX_DIMS && shape &&
        ad_shape_bytes(shape, ndim, g->elem, &bytes) && bytes >= PARAM_HEAP_BYTES) {
        heap = ad_mem(g, NULL, 0, bytes);
        if (!heap)
            return NULL;
        memset(heap, 0, bytes);
    }
    ad_node *n = make_leaf(g, AD_OP_PARAM, NODE_TRAINABLE | NODE_REQGRAD, ndim, shape, name,
                           "ad_param", heap);
    if (heap && n) { /* the graph's own block, not the caller's */
        n->flags &= ~(unsigned)NODE_EXT_VALUE;
        node_took_heap(g, n, NODE_HEAP_VALUE);
    } else if (heap) {
        ad_mem(g, heap, bytes, 0);
    }
    if (n && ((!heap && !alloc_grad(n, NULL)) || !push_param(g, n))) {
        node_free_heap(g, n, NODE_HEAP_ANY);
        g->nnodes--;
        node_discard(g, n);
        return NULL;
    }
    return n;
}

ad_node *ad_param_external(ad_graph *g, int ndim, const int64_t *shape, void *value, void *grad,
                           const char *name)
{
    if (!g)
        return NULL;
    if (!value) {
        ad_fail(g, "ad_param_external: value buffer is NULL");
        return NULL;
    }
    ad_node *n = make_leaf(g, AD_OP_PARAM, NODE_TRAINABLE | NODE_REQGRAD, ndim, shape, name,
                           "ad_param_external", value);
    if (n && (!alloc_grad(n, grad) || !push_param(g, n))) {
        g->nnodes--;
        node_discard(g, n);
        return NULL;
    }
    return n;
}

ad_node *ad_scalar(ad_graph *g, double value, const char *name)
{
    ad_node *n = ad_param(g, 0, NULL, name);
    if (n)
        ad_set(n, &value, 1);
    return n;
}

ad_node *ad_input(ad_graph *g, int ndim, const int64_t *shape, const char *name)
{
    return make_leaf(g, AD_OP_INPUT, NODE_INPUT, ndim, shape, name, "ad_input", NULL);
}

ad_node *ad_const(ad_graph *g, int ndim, const int64_t *shape, const double *values,
                  const char *name)
{
    ad_node *n = make_leaf(g, AD_OP_CONST, NODE_CONST, ndim, shape, name, "ad_const", NULL);
    if (n && values)
        ad_set(n, values, n->numel);
    return n;
}

ad_node *ad_const_external(ad_graph *g, int ndim, const int64_t *shape, void *value,
                           const char *name)
{
    if (!g)
        return NULL;
    if (!value) {
        ad_fail(g, "ad_const_external: value buffer is NULL");
        return NULL;
    }
    return make_leaf(g, AD_OP_CONST, NODE_CONST, ndim, shape, name, "ad_const_external", value);
}

ad_node *ad_const_scalar(ad_graph *g, double value, const char *name)
{
    return ad_const(g, 0, NULL, &value, name);
}

static bool check_count(const ad_node *n, int64_t count, const char *fn)
{
    if (count != n->numel) {
        char sh[96];
        ad_fail(n->g, "%s: count %lld does not match %lld elements of '%s' %s", fn,
                (long long)count, (long long)n->numel, n->rare->name,
                ad_shape_str(n, sh, sizeof sh));
        return false;
    }
    return true;
}

/* leaf's values = values (count of them) converted to the graph's type: the
 * threads copy a block each when there are enough (a training step's input
 * batch, copied from a dataset that is not in cache) */
#define SET_VALUES(leaf, values, count)                                                            \
    AD_DISPATCH((leaf)->g, {                                                                       \
        T *v = (leaf)->value;                                                                      \
        AD_FOR_ELEMENTS(i, count, v[i] = (T)(values)[i];);                                         \
    })

int ad_set(ad_node *leaf, const double *values, int64_t count)
{
    if (!leaf || !ad_node_live(leaf, "ad_set"))
        return -1;
    if (ad_ops[leaf->op].kind != AD_KIND_LEAF) {
        ad_fail(leaf->g, "ad_set: node '%s' (%s) is not a leaf", leaf->rare->name,
                ad_ops[leaf->op].name);
        return -1;
    }
    if (!check_count(leaf, count, "ad_set"))
        return -1;
    if (count && !values) {
        ad_fail(leaf->g, "ad_set: values is NULL");
        return -1;
    }
    if (leaf->flags & NODE_BORROWED) /* every element is written below */
        input_unborrow(leaf, false);
    SET_VALUES(leaf, values, count);
    return 0;
}

int ad_set_f32(ad_node *leaf, const float *values, int64_t count)
{
    if (!leaf || !ad_node_live(leaf, "ad_set_f32"))
        return -1;
    if (ad_ops[leaf->op].kind != AD_KIND_LEAF) {
        ad_fail(leaf->g, "ad_set_f32: node '%s' (%s) is not a leaf", leaf->rare->name,
                ad_ops[leaf->op].name);
        return -1;
    }
    if (!check_count(leaf, count, "ad_set_f32"))
        return -1;
    if (count && !values) {
        ad_fail(leaf->g, "ad_set_f32: values is NULL");
        return -1;
    }
    if (leaf->flags & NODE_BORROWED) /* every element is written below */
        input_unborrow(leaf, false);
    SET_VALUES(leaf, values, count);
    return 0;
}

/* ------------------------------------------------------- borrowed inputs */

/* The borrow entries: inline until they outgrow it, then on the heap. */
static struct ad_borrow *borrow_table(ad_graph *g)
{
    return g->borrows ? g->borrows : g->borrow_inline;
}

/* Gives a borrowed input its own buffer back; with keep, the values it read
 * are copied into it first, so the input holds them as if ad_set had. */
static void input_unborrow(ad_node *n, bool keep)
{
    ad_graph *g = n->g;
    struct ad_borrow *t = borrow_table(g);
    for (int i = 0; i < g->nborrows; i++) {
        if (t[i].node != n)
            continue;
        void *own = t[i].own;
        if (keep)
            memcpy(own, n->value, (size_t)n->numel * g->elem);
        node_move_value(n, own);
        n->flags &= ~(unsigned)NODE_BORROWED;
        t[i] = t[--g->nborrows];
        return;
    }
}

/* Ends the borrows of the inputs made at or after node mark (ad_graph_rewind;
 * 0: every borrow, ad_graph_free), without copying: the caller's memory may
 * be gone by now. */
static void borrows_end_from(ad_graph *g, int64_t mark)
{
    for (int i = g->nborrows - 1; i >= 0; i--)
        if (borrow_table(g)[i].node->id >= mark)
            input_unborrow(borrow_table(g)[i].node, false);
}

int ad_input_borrow(ad_node *input, const void *values)
{
    if (!input || !ad_node_live(input, "ad_input_borrow"))
        return -1;
    ad_graph *g = input->g;
    if (!(input->flags & NODE_INPUT)) {
        ad_fail(g, "ad_input_borrow: node '%s' (%s) is not an input leaf", input->rare->name,
                ad_ops[input->op].name);
        return -1;
    }
    if (!values) {
        if (input->flags & NODE_BORROWED)
            input_unborrow(input, true);
        return 0;
    }
    if (!(input->flags & NODE_BORROWED)) {
        const int inline_cap = (int)(sizeof g->borrow_inline / sizeof *g->borrow_inline);
        if (g->nborrows == (g->borrows ? g->cap_borrows : inline_cap)) {
            int cap = 2 * g->nborrows;
            struct ad_borrow *b =
                ad_mem(g, g->borrows, sizeof *b * (size_t)g->cap_borrows, sizeof *b * (size_t)cap);
            if (!b)
                return -1;
            if (!g->borrows)
                memcpy(b, g->borrow_inline, sizeof g->borrow_inline);
            g->borrows = b;
            g->cap_borrows = cap;
        }
        borrow_table(g)[g->nborrows].node = input;
        borrow_table(g)[g->nborrows++].own = input->value;
        input->flags |= NODE_BORROWED;
    }
    /* read only: no kernel writes into a leaf's value, and ad_set, ad_set_f32,
     * ad_resize and ad_leaf_move end the borrow before they write */
    node_move_value(input, (void *)(uintptr_t)values);
    return 0;
}

static int copy_out(const ad_node *n, const void *src, double *out, int64_t count, const char *fn)
{
    if (!ad_node_live(n, fn) || !check_count(n, count, fn))
        return -1;
    if (count && !out) {
        ad_fail(n->g, "%s: out is NULL", fn);
        return -1;
    }
    AD_DISPATCH(n->g, {
        const T *v = src;
        for (int64_t i = 0; i < count; i++)
            out[i] = v ? (double)v[i] : 0.0;
    });
    return 0;
}

int ad_get(const ad_node *n, double *out, int64_t count)
{
    if (!n)
        return -1;
    return copy_out(n, n->value, out, count, "ad_get");
}

int ad_get_grad(const ad_node *n, double *out, int64_t count)
{
    if (!n)
        return -1;
    if (!(n->flags & NODE_TRAINABLE)) {
        ad_fail(n->g, "ad_get_grad: node '%s' (%s) is not a trainable leaf", n->rare->name,
                ad_ops[n->op].name);
        return -1;
    }
    return copy_out(n, n->rare->grad, out, count, "ad_get_grad");
}

double ad_item(const ad_node *n)
{
    double v = NAN;
    if (n && ad_get(n, &v, 1) != 0)
        return NAN;
    return v;
}

double ad_grad_item(const ad_node *n)
{
    double v = NAN;
    if (n && ad_get_grad(n, &v, 1) != 0)
        return NAN;
    return v;
}

int ad_leaf_move(ad_node *leaf, void *value, void *grad)
{
    if (!leaf)
        return -1;
    ad_graph *g = leaf->g;
    bool trainable = (leaf->flags & NODE_TRAINABLE) != 0;
    if (leaf->ninputs != 0 || ((leaf->flags & NODE_HEAP_VALUE) && !trainable)) {
        ad_fail(g, "ad_leaf_move: node '%s' is not a leaf of fixed size", leaf->rare->name);
        return -1;
    }
    if (!value) {
        ad_fail(g, "ad_leaf_move: value buffer is NULL");
        return -1;
    }
    if (g->ntapes > 0) {
        ad_fail(g, "ad_leaf_move: the graph already has a backward pass");
        return -1;
    }
    if (leaf->flags & NODE_BORROWED) /* moves the values it read */
        input_unborrow(leaf, true);
    size_t bytes = (size_t)leaf->numel * g->elem;
    void *old = leaf->value;
    if (value != old) {
        memcpy(value, old, bytes);
        if (leaf->flags & NODE_HEAP_VALUE) /* a large ad_param's own block */
            node_free_heap(g, leaf, NODE_HEAP_VALUE);
    }
    leaf->value = value;
    leaf->capacity = leaf->numel;
    leaf->flags |= NODE_EXT_VALUE;
    if (trainable && grad) {
        old = leaf->rare->grad;
        if (!old) /* not made yet: zeros */
            memset(grad, 0, bytes);
        else if (grad != old)
            memcpy(grad, old, bytes);
        if (old && grad != old && (leaf->flags & NODE_HEAP_GRAD))
            node_free_heap(g, leaf, NODE_HEAP_GRAD);
        leaf->rare->grad = grad;
        leaf->flags |= NODE_EXT_GRAD;
    }
    return 0;
}

int ad_resize(ad_node *input, int64_t batch)
{
    if (!input || !ad_node_live(input, "ad_resize"))
        return -1;
    ad_graph *g = input->g;
    if (!(input->flags & NODE_INPUT)) {
        ad_fail(g, "ad_resize: node '%s' is not an input leaf", input->rare->name);
        return -1;
    }
    if (input->ndim < 1) {
        ad_fail(g, "ad_resize: input '%s' is 0-d and has no batch axis", input->rare->name);
        return -1;
    }
    if (batch < 1) {
        ad_fail(g, "ad_resize: batch %lld must be at least 1", (long long)batch);
        return -1;
    }
    if (input->flags & NODE_BORROWED) /* zero-filled below */
        input_unborrow(input, false);
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, input->shape, sizeof shape);
    shape[0] = batch;
    int64_t old_batch = input->shape[0], old_numel = input->numel;
    if (!ad_shape_set(input, input->ndim, shape, "ad_resize"))
        return -1;
    if (!ad_node_reserve(input)) { /* out of memory: the input stays as it was */
        input->shape[0] = old_batch;
        input->numel = old_numel;
        return -1;
    }
    memset(input->value, 0, (size_t)input->numel * g->elem);
    g->shapes_dirty = true;
    return 0;
}

/* ------------------------------------------------------------ introspection */

int64_t ad_numel(const ad_node *n) { return n ? n->numel : -1; }
int ad_ndim(const ad_node *n) { return n ? n->ndim : -1; }
const int64_t *ad_shape(const ad_node *n) { return n ? n->shape : NULL; }
ad_graph *ad_node_graph(const ad_node *n) { return n ? n->g : NULL; }
const char *ad_node_name(const ad_node *n) { return n ? n->rare->name : ""; }
int64_t ad_node_id(const ad_node *n) { return n ? n->id : -1; }
int ad_node_op(const ad_node *n) { return n ? n->op : -1; }
int ad_node_ninputs(const ad_node *n) { return n ? n->ninputs : 0; }
int ad_node_is_trainable(const ad_node *n) { return n && (n->flags & NODE_TRAINABLE); }
int ad_node_requires_grad(const ad_node *n) { return n && (n->flags & NODE_REQGRAD); }
int ad_node_is_backward(const ad_node *n) { return n && (n->flags & NODE_TAPE); }
void *ad_data(ad_node *n) { return n ? n->value : NULL; }
void *ad_grad_data(ad_node *n) { return n && ad_leaf_grad_ready(n) ? n->rare->grad : NULL; }
ad_node *ad_node_grad(const ad_node *n) { return n ? n->grad_node : NULL; }

ad_node *ad_node_input(const ad_node *n, int i)
{
    if (!n || i < 0 || i >= n->ninputs)
        return NULL;
    return n->inputs[i];
}

int ad_node_set_name(ad_node *n, const char *name)
{
    if (!n)
        return -1;
    ad_graph *g = n->g;
    if (!ad_node_live(n, "ad_node_set_name"))
        return -1;
    if (!name || !*name) {
        node_free_heap(g, n, NODE_HEAP_NAME);
        if (n->rare != &no_rare)
            n->rare->name = "";
        return 0;
    }
    /* on the heap, as the node's record: the arena's end may be rewound
       under a node already made */
    const size_t len = strlen(name);
    char *s = ad_node_rare_own(n) ? ad_mem(g, NULL, 0, len + 1) : NULL;
    if (!s)
        return -1;
    memcpy(s, name, len + 1);
    node_free_heap(g, n, NODE_HEAP_NAME);
    n->rare->name = s;
    node_took_heap(g, n, NODE_HEAP_NAME);
    return 0;
}

static double value_at(const ad_node *n, int64_t i)
{
    if (n->g->dtype == AD_F32)
        return ((const float *)n->value)[i];
    return ((const double *)n->value)[i];
}

int ad_print(const ad_node *n, FILE *out)
{
    if (!n || !out)
        return -1;
    char sh[96];
    fprintf(out, "%s%s%s %s = ", n->rare->name, *n->rare->name ? " " : "", ad_ops[n->op].name,
            ad_shape_str(n, sh, sizeof sh));
    if (n->ndim == 0) {
        fprintf(out, "%.10g\n", value_at(n, 0));
        return 0;
    }
    int64_t last = n->shape[n->ndim - 1];
    const int64_t limit = 64;
    fprintf(out, "[");
    for (int64_t i = 0; i < n->numel; i++) {
        if (n->numel > limit && i == limit / 2) {
            fprintf(out, " ...");
            i = n->numel - limit / 2;
        }
        fprintf(out, "%s%.6g", (i % (last ? last : 1)) ? ", " : (i ? ";\n " : ""), value_at(n, i));
    }
    fprintf(out, "]\n");
    return 0;
}
