/* graph_impl.h -- internal structures of the autodiff engine. Never installed. */
#ifndef CHAINRULE_GRAPH_IMPL_H
#define CHAINRULE_GRAPH_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "chainrule/autodiff.h"
#include "support_impl.h"

/* The op enum, generated from ops.def so names and the table never drift. */
typedef enum {
#define AD_OP(id, name, arity, kind, shape, fwd, bwd, check, params, call, form, deriv, domain,    \
              nondiff)                                                                             \
    AD_OP_##id,
#include "ops.def"
#undef AD_OP
    AD_OP_COUNT_
} ad_op_id;

enum {
    NODE_TRAINABLE = 1u << 0,   /* leaf with a gradient */
    NODE_INPUT = 1u << 1,       /* data leaf */
    NODE_CONST = 1u << 2,       /* constant leaf */
    NODE_TAPE = 1u << 3,        /* built by ad_backward; re-run by it, skipped by ad_forward */
    NODE_REQGRAD = 1u << 4,     /* a trainable leaf's gradient flows through it */
    NODE_ALIAS = 1u << 5,       /* value points at the first input's buffer */
    NODE_EXT_VALUE = 1u << 6,   /* value buffer owned by the caller */
    NODE_HEAP_VALUE = 1u << 7,  /* value buffer grown on the heap (ad_resize) */
    NODE_EXT_GRAD = 1u << 8,    /* gradient buffer owned by the caller */
    NODE_PLANNED = 1u << 9,     /* backward node whose buffer comes from its tape's shared pool */
    NODE_HEAP_AUX = 1u << 10,   /* aux buffer grown on the heap (ad_resize) */
    NODE_ACCUMULATE = 1u << 11, /* matmul whose buffer is a leaf's gradient, added into (reuse) */
    NODE_HEAP_SHAPE = 1u << 12, /* shape storage on the heap (a 0-d node grown on replay) */
    NODE_HEAP_GRAD = 1u << 13,  /* gradient buffer on the heap (a large ad_param, made lazily) */
    NODE_BORROWED = 1u << 14,   /* input reading the caller's memory (ad_input_borrow) */
    NODE_MARK = 1u << 15,       /* scratch mark of a walk over a tape (plan_tape) */
    NODE_HEAP_RARE = 1u << 16,  /* rare record on the heap (made after the node) */
    NODE_HEAP_NAME = 1u << 17,  /* name on the heap (set after the node was made) */
};

/* How a backward pass hands each trainable leaf its gradient (ad_graph.grad_mode). */
typedef enum {
    GRAD_ADD,       /* ad_backward: added into the leaf's gradient */
    GRAD_OVERWRITE, /* ad_backward_overwrite: written over it */
    GRAD_SGD_STEP,  /* ad_backward_sgd: value -= lr * gradient, fused where it can be */
} grad_mode;

/* any of the heap buffers a node may hold (freed with it) */
#define NODE_HEAP_ANY                                                                              \
    (NODE_HEAP_VALUE | NODE_HEAP_AUX | NODE_HEAP_SHAPE | NODE_HEAP_GRAD | NODE_HEAP_RARE |         \
     NODE_HEAP_NAME)

#define AD_MAX_FPARAMS 2
#define AD_MAX_IPARAMS (AD_MAX_DIMS + 2)

/* What few nodes need, behind one pointer (ad_node.rare): integer
 * parameters, a name, a trainable leaf's gradient, what ad_grad returned it
 * as, op data. A node that needs none of it points at a shared read-only
 * record of zeros (name ""), so reading through any node is valid and a
 * write through one without a record of its own faults; ad_node_rare gives
 * a node its own. */
typedef struct ad_node_rare {
    int64_t iparam[AD_MAX_IPARAMS]; /* integer parameters (0 when the op takes none) */
    const char *name;               /* "" when unnamed */
    void *grad;           /* accumulated gradient, trainable leaves only (numel elements) */
    ad_node *deriv_of[2]; /* ad_grad returned this node as d [0] / d [1] (dumps name it) */
    int64_t *op_data;     /* op-specific data in the arena (reshape: the input shape
                             it was built for), NULL for most ops */
    void *aux;            /* per-node data kept between forward and backward (argmax) */
    size_t aux_bytes;     /* capacity of aux */
} ad_node_rare;

/* A node is two cache lines (128 bytes, 64-aligned in the arena): a
 * define-by-run scalar workload creates one per operation, so its size is
 * the memory traffic per operation. What a scalar never needs lives outside:
 * the shape (a 0-d node points at a shared empty one) and the rare fields
 * (ad_node_rare: a node made without them points at shared zeros). */
struct ad_node {
    /* line 1, what replay reads (op, kernel operands, output) and what a
       node's users read first (flags, ndim) */
    int16_t op;
    int16_t ndim;
    unsigned flags;
    void *value;
    ad_node **inputs;
    int64_t numel;
    ad_graph *g;
    union {
        double d;
        float f[2];
    } inline_value; /* the value buffer of one-element nodes */
    ad_node *small_inputs[2];
    /* line 2: shape, parameters, identity (read from the inputs of a new node) */
    int ninputs;
    int order;      /* 0: forward; k: made by a gradient build of an order k − 1
                       output, or from such nodes (dumps draw one cluster per k) */
    int64_t *shape; /* ndim sizes; storage of AD_MAX_DIMS (see ad_shape_set) */
    double fparam[AD_MAX_FPARAMS];
    int64_t id;
    ad_node *grad_node; /* d loss / d this node from the latest backward build */
    int64_t capacity;   /* elements the value buffer can hold */
    ad_node_rare *rare; /* its own record, or the shared zeros */
};
#if UINTPTR_MAX > 0xffffffffu
_Static_assert(sizeof(struct ad_node) == 128, "a node is two cache lines");
#endif

typedef struct arena_block {
    struct arena_block *prev;
    size_t size, used;
    /* data follows, aligned */
} arena_block;

typedef struct tape {
    ad_node *loss;
    int64_t begin, end; /* node ids of the backward nodes [begin, end) */
    int64_t nleaves;
    ad_node **leaves;   /* trainable leaves reached */
    ad_node **grads;    /* their gradient nodes */
    bool dirty;         /* shapes changed since the tape last ran */
    bool planned;       /* buffers shared by lifetime (ad_graph_set_memory_reuse) */
    int64_t *acc_pos;   /* planned: per leaf (sorted), the tape index after which it accumulates */
    ad_node **acc_leaf; /* planned: the leaves in that order */
    ad_node **acc_grad; /* planned: their gradient nodes */
    bool *acc_final;    /* planned: no later node of the tape reads the leaf's value, so an
                           SGD step may change it as soon as the gradient is complete */
    bool *acc_beside;   /* planned: only a node beside its gradient node in a group reads
                           the leaf's value: the step may follow the group */
    unsigned char *group; /* planned: per tape index, nodes run side by side on two threads
                             (engine.c, plan_groups) */
} tape;

/* Bytes of a planned tape's per-leaf block (acc_pos, acc_leaf, acc_grad, acc_final,
 * acc_beside). */
#define TAPE_ACC_BYTES(nleaves)                                                                    \
    ((sizeof(int64_t) + 2 * sizeof(ad_node *) + 2 * sizeof(bool)) * (size_t)(nleaves))

struct ad_graph {
    ad_dtype dtype;
    size_t elem; /* sizeof(float) or sizeof(double) */
    ad_alloc_fn alloc;
    void *ud;
    size_t bytes; /* held from the allocator */

    ad_node **nodes;
    int64_t nnodes, cap_nodes;
    ad_node **params; /* trainable leaves, in creation order */
    int64_t nparams, cap_params;

    arena_block *arena;
    arena_block *arena_spare; /* blocks given back by ad_graph_rewind, kept for reuse */
    int64_t nheap;            /* nodes holding heap memory (value, aux or shape) */

    tape *tapes;
    int ntapes, cap_tapes;

    char *error; /* first error, NULL when healthy */
    char error_buf[512];
    bool has_error;
    bool building_tape; /* nodes created now get NODE_TAPE */
    int building_order; /* order of the gradient build under way (ad_node.order), 0 outside */
    bool shapes_dirty;  /* an input was resized: re-infer shapes on replay */
    bool check_finite;
    bool in_backward;    /* for anomaly messages */
    bool eval_mode;      /* ad_graph_set_training(g, 0): dropout masks are ones */
    bool reuse_memory;   /* ad_graph_set_memory_reuse: plan backward buffers by lifetime */
    grad_mode grad_mode; /* how the backward pass under way hands leaves their gradients */
    double step_lr;      /* GRAD_SGD_STEP: the learning rate */
    uint64_t rng[4];
    /* ad_graph_hold_leaves: no leaf's value changes until the hold ends, so
       products may keep their weights packed from one forward to the next
       (gemm.c, ad_gemm_held); each hold has its own epoch */
    bool leaves_held;
    uint64_t held_epoch;
    struct gemm_cache *gemm_cache; /* ad_gemm_held's table, after the struct; NULL: none */
    void *scratch; /* temporary buffer shared by kernels (im2col), heap, grown by ad_scratch */
    size_t scratch_bytes;
    /* inputs reading the caller's memory (ad_input_borrow), each with the
       buffer of its own that it goes back to: the first few in the graph
       (borrowing allocates nothing), more on the heap (borrows, not NULL) */
    struct ad_borrow {
        ad_node *node;
        void *own;
    } borrow_inline[4], *borrows;
    int nborrows, cap_borrows; /* cap_borrows: of the heap table, 0 before it */
};

/* Intra-op parallelism: a loop over `len` independent elements (each output
 * element computed by one thread, the same way whatever the thread count,
 * so results do not depend on it) is split over the OpenMP threads
 * (ad_set_threads) when it is long enough to pay for waking them: a ReLU
 * over 16,384 floats takes as long split on two threads as on one (the
 * MLP's 25,600-element ReLU mask and bias + ReLU epilogue gain 1-4 µs). */
#define AD_PARALLEL_MIN 16384
/* ad_set_threads' count, 0 until it is called: only then does a kernel start
 * an OpenMP team (see onednn_allowed in gemm.c for why). */
extern int ad_threads_requested;
#ifdef AD_HAVE_OPENMP
#include <omp.h>
/* A library region's team is sized by setting the OpenMP default around it
 * (AD_OMP_TEAM, then AD_OMP_TEAM_END back to the one thread ad_set_threads
 * leaves as the default, the team oneDNN's sgemm runs on), never with a
 * num_threads clause: for a clause clang asks LLVM's libomp for the thread
 * id at the entry of the function holding the region, which starts the
 * runtime even when the path that forks is not taken, and libomp's start-up
 * dies by SIGBUS under a small file-size limit (ulimit -f). */
#define AD_OMP_TEAM(n) omp_set_num_threads(n)
#define AD_OMP_TEAM_END() omp_set_num_threads(1)
/* True on a thread while it runs its side of a group of backward nodes
 * (engine.c, run_group): each node computes whole on its thread. */
extern _Thread_local bool ad_in_group;
/* A kernel may split its work: more than one thread was asked for and it is
 * not running inside a group (a nested region would only add a team of
 * one). Not omp_in_parallel(): a call clang may make even where the
 * condition before it is false, which starts LLVM's libomp (see above). */
#define AD_SPLIT_HERE() (ad_threads_requested > 1 && !ad_in_group)
/* for (int64_t i = 0; i < len; i++) { body }, split statically over the
 * threads when `parallel` is true and more than one thread was asked for; a
 * loop that is not split never enters the OpenMP runtime (an if clause
 * would: a team of one costs a scalar node more than its arithmetic). The
 * body must not leave the loop (no return, break or goto). */
#define AD_FOR_SPLIT(i, len, parallel, ...)                                                        \
    do {                                                                                           \
        if ((parallel) && AD_SPLIT_HERE()) {                                                       \
            AD_OMP_TEAM(ad_threads_requested);                                                     \
            _Pragma("omp parallel for schedule(static)") for (int64_t i = 0; i < (len);            \
                                                              i++){__VA_ARGS__} AD_OMP_TEAM_END(); \
        } else {                                                                                   \
            for (int64_t i = 0; i < (len); i++) {                                                  \
                __VA_ARGS__                                                                        \
            }                                                                                      \
        }                                                                                          \
    } while (0)
#else
#define AD_FOR_SPLIT(i, len, parallel, ...)                                                        \
    for (int64_t i = 0; i < (len); i++) {                                                          \
        __VA_ARGS__                                                                                \
    }
#endif
/* A loop over `len` elements, split when it is long enough to pay for waking
 * the threads. */
#define AD_FOR_ELEMENTS(i, len, ...) AD_FOR_SPLIT(i, len, (len) >= AD_PARALLEL_MIN, __VA_ARGS__)

/* Loops over the node array touch each node once, far apart in memory when
 * a step makes a hundred thousand scalar nodes: ask for node i + AD_AHEAD
 * while replaying node i (ad_forward, ad_backward: a few nanoseconds of
 * work per scalar node, so 32 nodes ahead, 2 KiB of lines in flight, a
 * small part of any L1; 6 ahead left the replay waiting on memory on a
 * loaded AMD EPYC, issue 17, docs/benchmarks.md). Making nodes (node i +
 * AD_AHEAD_BUILD) and building a backward pass (node i − AD_AHEAD_BUILD)
 * do more per node. */
#define AD_AHEAD 32
#define AD_AHEAD_BUILD 6
#ifdef __GNUC__
#define AD_PREFETCH(p) __builtin_prefetch(p)
#define AD_PREFETCH_WRITE(p) __builtin_prefetch(p, 1)
#else
#define AD_PREFETCH(p) ((void)(p))
#define AD_PREFETCH_WRITE(p) ((void)(p))
#endif

/* Asks for the first `lines` cache lines of each operand of node, when its
 * inputs are its own small_inputs (in its line 1, asked for earlier, so no
 * load that can miss). Replay of node i asks for line 1 of the operands of
 * node i + AD_AHEAD / 2 (a backward node reads forward nodes made far
 * earlier); a gradient build for lines 1 and 2 of the operands of the node
 * AD_AHEAD_BUILD ahead (its rule reads them, their ids place its
 * contributions). A macro: GCC 12 split a static inline function's body
 * into a part that it then took for pure and dropped with its prefetches. */
#define AD_PREFETCH_OPERANDS(node, lines)                                                          \
    do {                                                                                           \
        const ad_node *pf_ = (node);                                                               \
        if (pf_->inputs == pf_->small_inputs)                                                      \
            for (int pk_ = 0; pk_ < 2; pk_++)                                                      \
                if (pf_->small_inputs[pk_])                                                        \
                    for (int pl_ = 0; pl_ < (lines); pl_++)                                        \
                        AD_PREFETCH((const char *)pf_->small_inputs[pk_] + 64 * pl_);              \
    } while (0)

/* Type dispatch on a graph's (or node's) dtype (support_impl.h). */
#define AD_DISPATCH(g, ...) AD_DISPATCH_DTYPE((g)->dtype, __VA_ARGS__)

/* graph.c */
void ad_fail(ad_graph *g, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void *ad_arena_alloc(ad_graph *g, size_t bytes);
void *ad_mem(ad_graph *g, void *p, size_t osize, size_t nsize);
/* Creates a node of op over inputs (NULL inputs already rejected); infers its
 * shape, allocates its value and computes it. Returns NULL with an error set. */
ad_node *ad_node_make(ad_graph *g, int op, int n, ad_node *const *inputs, const double *fp,
                      const int64_t *ip);
/* n's own rare record (made zeroed on first need: in the arena while n is
 * being made, on the heap once it is in the graph); NULL without memory. */
ad_node_rare *ad_node_rare_own(ad_node *n);
/* Ensures n's value buffer holds n->numel elements. */
bool ad_node_reserve(ad_node *n);
/* A trainable leaf's gradient buffer, made (zeroed) on first need; false without memory. */
bool ad_leaf_grad_ready(ad_node *n);
/* Ensures n->aux holds bytes (arena on creation, heap when it grows later
 * or is made later, as for values; growing keeps the contents). Call from a
 * shape rule (n's, or a later node's that keeps data in n) so replay never
 * allocates. */
bool ad_node_aux(ad_node *n, size_t bytes);
/* Ensures the graph's shared scratch buffer holds bytes (grown only, kept
 * until the graph is freed). Call from a shape rule; kernels read g->scratch. */
bool ad_scratch(ad_graph *g, size_t bytes);
/* A tensor seen along axis k as (outer, len, inner): outer is the product of
 * the axes before k, inner of those after it; axis < 0 (AD_ALL) is
 * (1, numel, 1). */
void ad_axis_geometry(const ad_node *t, int axis, int64_t *outer, int64_t *len, int64_t *inner);
/* ops_reduce.c: a sum of at least this many contiguous values runs in
 * vector partial sums (LANE_SUM there); a shorter one adds in order, one
 * value after the other (gradient rules choose their order of sums by it) */
#define AD_SUM_LANES_FROM 128
/* gemm.c: a product of fewer multiply-adds runs on one thread (about 1 µs
 * on one core: less than waking a second one); kernels that split a product
 * of their own over threads (ops_conv.c's few-taps forward) use the same
 * threshold */
#define AD_SPLIT_MIN_MACS 131072.0
bool ad_shape_set(ad_node *n, int ndim, const int64_t *shape, const char *opname);
double ad_rng_uniform(ad_graph *g);
/* [shape + reserve] + forward of one node: ad_compute (end of this file) is
 * inline, so a replayed node costs its kernel's call and no more. */
bool ad_compute_shaped(ad_node *n); /* shape + reserve + forward */
bool ad_check_values(ad_node *n);   /* anomaly mode */
/* False, with the graph error set, when n was discarded by ad_graph_rewind. */
bool ad_node_live(const ad_node *n, const char *fn);

/* engine.c: d y/d xs[i] into out[i] (any nodes; zeros where y does not
 * depend on xs[i]) from one backward construction. record: leave each
 * gradient in its node's grad_node for the dumps. false with an error set. */
bool ad_grad_build(ad_node *y, int n, ad_node *const *xs, ad_node **out, bool record,
                   const char *fn);

/* engine.c: the nodes after src up to dst that depend on src and that dst
 * depends on, in creation order (replaying them after src's value changed
 * brings dst up to date). Dropout masks are left out (a draw, not a function).
 * false with an error set (out of memory; a planned backward node on the way). */
typedef struct {
    int64_t *ids;
    int64_t n;
} ad_replay;
bool ad_replay_plan(ad_node *src, ad_node *dst, ad_replay *p, const char *fn);
/* gradcheck.c: does an analytic derivative agree with a finite difference
   within ad_gradcheck's default tolerance for g's dtype? (the trace's check) */
bool ad_gradcheck_agree(const ad_graph *g, double analytic, double numeric);
bool ad_replay_run(ad_graph *g, const ad_replay *p);
void ad_replay_free(ad_graph *g, ad_replay *p);

/* gemm.c: the one matrix product, C = op(A) op(B), or C += op(A) op(B) when
 * acc; row-major, op transposes when its flag is set; A, B, C contiguous.
 * ad_gemm_rows computes C = alpha op(A) op(B) [+ C] (alpha = -lr: an SGD
 * step fused into a weight's gradient product, into the weight, acc) with
 * passes over C's rows around it (hook, may be NULL). */
typedef struct {
    int64_t m, k, n; /* op(A) is (m, k), op(B) is (k, n), C is (m, n) */
} ad_mm_dims;
void ad_gemm(ad_dtype dt, bool ta, bool tb, bool acc, ad_mm_dims d, const void *A, const void *B,
             void *C);
/* One block of a product: C (m, n), rows ldc apart, = alpha op(A) op(B) [+ C],
 * op(A) (m, k) and op(B) (k, n) stored row-major with rows lda and ldb apart
 * (a block of a larger product points into its operands). */
typedef struct {
    bool ta, tb, acc;
    double alpha;
    int64_t m, n, k, lda, ldb, ldc;
    const void *A, *B;
    void *C;
} ad_gemm_block;
/* gemm_packed.c: the library's own packed kernel computes block g on the
 * calling thread, every element summed in the order of k whatever the block
 * (the same bits on any split). Its packing buffer is the thread's own,
 * allocated by its first product and kept; without it a small one on the
 * stack does the same sums. */
void ad_gemm_packed(ad_dtype dt, const ad_gemm_block *g);
/* Whether ad_gemm_packed's f32 products run the AVX2+FMA microkernel (the
 * CPU has both and ad_gemm_portable_only is false). */
bool ad_gemm_packed_avx2(void);
/* Tests: true makes ad_gemm_packed use its portable microkernel on any CPU. */
extern bool ad_gemm_portable_only;
/* Tests: true makes ad_gemm_packed use its small block on the stack, as
 * when its buffer could not be allocated. */
extern bool ad_gemm_stack_block;
/* Passes over rows of C around a product: pre(ctx, lo, hi) before rows
 * [lo, hi) are computed, post(ctx, lo, hi) after, either NULL. Every row is
 * in exactly one pre and one post call. When the product is split by rows
 * over the threads, each thread runs them on its own rows, unsplit
 * (ad_in_group), while its block is in its cache; otherwise once over all
 * the rows on the calling thread (where they may split themselves). */
typedef struct {
    void (*pre)(void *ctx, int64_t lo, int64_t hi);
    void (*post)(void *ctx, int64_t lo, int64_t hi);
    void *ctx;
} ad_gemm_hook;
void ad_gemm_rows(ad_dtype dt, bool ta, bool tb, double alpha, bool acc, ad_mm_dims d,
                  const void *A, const void *B, void *C, const ad_gemm_hook *hook);
/* A linear layer's product C = A B + bias (then max(C, 0) when relu), f32,
 * while g's leaves are held (ad_graph_hold_leaves): B is packed once per
 * hold into the layout the backend's kernel reads and the bias and ReLU are
 * the product's epilogue; split over the threads by rows of C (the packing
 * shared), the same bits on any thread count. False when this path does not
 * apply (not held, f64, no oneDNN, more than 4 threads, a shape oneDNN
 * refuses): the caller computes it the usual way. */
bool ad_gemm_held(ad_graph *g, ad_mm_dims d, const void *A, const void *B, const void *bias,
                  bool relu, void *C);
/* C_b = op(A_b) op(B_b) (C_b += ... when acc) for b < batch, f32: each
 * matrix dense row-major (op(A_b) (m, k) stored as its own rows, or as its
 * transpose's when ta; likewise B_b, C_b), the batch's matrices side by side
 * (A_b = A + b·m·k elements, B_b = B + b·k·n, C_b = C + b·m·n), as one
 * oneDNN batched matmul made once per shape and kept in g's table (the
 * held products' table); on t > 1 threads the batch split into t shares,
 * one batched matmul each, side by side (each product whole on one thread:
 * the same bits for any t). Where that path does not apply (f64, no
 * oneDNN, inside a group of threads side by side, more threads than the
 * table's slots, a shape oneDNN refuses), the products one by one with
 * ad_gemm. */
void ad_gemm_batched(ad_graph *g, bool ta, bool tb, bool acc, ad_mm_dims d, int64_t batch,
                     const void *A, const void *B, void *C);
/* Bytes of ad_gemm_held's table, allocated with a graph of dt after the
 * struct (0: none, f64 or no oneDNN); ad_gemm_cache_free destroys what the
 * table holds (ad_graph_free). */
size_t ad_gemm_cache_bytes(ad_dtype dt);
/* Entries of the table that oneDNN made a primitive for (tests: did the
 * held or batched path run?). */
int ad_gemm_held_entries(const ad_graph *g);
void ad_gemm_cache_free(ad_graph *g);
/* graph.c: on: a promise that no leaf's value changes until the hold ends
 * (off), for the forward passes of an evaluation loop (nn's chunks); each
 * hold is a new epoch for ad_gemm_held's packed weights. */
void ad_graph_hold_leaves(ad_graph *g, bool on);
/* ops_elementwise.c: p += step * g over n elements of dt (the plain SGD step). */
void ad_add_scaled(ad_dtype dt, void *p, const void *g, double step, int64_t n);
/* ops_linalg.c: a 2-d matmul node's product, c = alpha op(A) op(B) [+ c when add]. */
void ad_matmul_2d(const ad_node *n, double alpha, bool add, void *c);

/* registry.c */
typedef bool (*ad_shape_fn)(ad_node *n);
typedef void (*ad_forward_fn)(ad_node *n);
/* Fills grads[i] with d loss/d input i given upstream g (d loss/d n), in any
 * shape broadcastable to the output; the engine sums it down to the input's
 * shape. Leaves grads[i] NULL when no gradient flows to input i. */
typedef void (*ad_backward_fn)(ad_node *n, ad_node *g, ad_node **grads);
/* Validates n's parameters before its shape and value are computed. */
typedef bool (*ad_check_fn)(const ad_node *n);
/* Where an elementwise op is not differentiable (ops.def's nondiff column):
 * the inputs of one element at two points a and b, the node's fparam. */
typedef ad_smoothness (*ad_nondiff_fn)(const double *a, const double *b, const double *fparam);

/* One row of ops.def (its header comment describes every column). */
typedef struct {
    const char *name;
    int arity;
    ad_op_kind kind;
    ad_shape_fn shape;
    ad_forward_fn forward;
    ad_backward_fn backward; /* ad_nograd: no gradient */
    ad_check_fn check;       /* ad_nocheck: any parameters */
    const char *params;      /* "alpha", "lo, hi", "c, d = 0", "" */
    const char *call;        /* name in `chainrule grad`, NULL: not there */
    const char *form;        /* print template, "@A + @B" */
    const char *derivative;  /* local derivative templates, " | " between inputs */
    const char *domain;      /* where the value is finite ("x > 0"), or NULL */
    ad_nondiff_fn nondiff;   /* ad_smooth: differentiable everywhere */
} ad_op_info;

extern const ad_op_info ad_ops[];
/* Is the op elementwise (its shape that of its input, or its inputs'
 * broadcast)? Such an op takes no integer parameters, and over 0-d inputs
 * makes a 0-d node (ad_node_make's scalar path). */
bool ad_op_elementwise(const ad_op_info *info);
/* The gradient rule of ops through which no gradient flows. */
void ad_nograd(ad_node *n, ad_node *g, ad_node **grads);
/* The parameter check of ops that accept any parameters. */
bool ad_nocheck(const ad_node *n);
/* The nondiff rule of ops differentiable everywhere (AD_SMOOTH). */
ad_smoothness ad_smooth(const double *a, const double *b, const double *fparam);

/* Broadcast iteration over up to three operands, row by row: the last axis
 * is the inner loop (stride inner[j] for operand j), off[j] is the offset of
 * operand j at the start of the current row. */
typedef struct {
    int nd, k;
    int64_t shape[AD_MAX_DIMS];
    int64_t st[3][AD_MAX_DIMS];
    int64_t idx[AD_MAX_DIMS];
    int64_t off[3];
    int64_t inner, rows;
} ad_bcast_iter;

void ad_bcast_init(ad_bcast_iter *it, int ndim, const int64_t *shape, int k,
                   const ad_node *const *operands);
void ad_bcast_next(ad_bcast_iter *it);

/* Shape helpers shared by op families. */
bool ad_same_shape(const ad_node *a, const ad_node *b); /* engine.c */
bool ad_broadcast_shape(ad_node *n, int k, const char *opname);
int ad_norm_axis(ad_node *n, ad_node *a, int64_t axis, const char *opname);

/* Internal ops used by gradient rules (ops_shape.c, ops_reduce.c). */
ad_node *ad_sum_to(ad_node *g, ad_node *like);
ad_node *ad_broadcast_like(ad_node *a, ad_node *like);
ad_node *ad_reshape_like(ad_node *a, ad_node *like);
ad_node *ad_expand_axis(ad_node *g, ad_node *like, int axis, bool mean);
ad_node *ad_zeros_like(ad_node *a);
ad_node *ad_slice_backward(ad_node *g, ad_node *like, int axis, int64_t start);
/* Fused gradient ops (ops_elementwise.c, ops_reduce.c). */
ad_node *ad_relu_grad(ad_node *g, ad_node *a); /* g·[a > 0] */
/* (softmax(z) − onehot(labels))·g/rows, z (rows, classes), g one element */
ad_node *ad_softmax_cross_entropy_grad(ad_node *z, ad_node *labels, ad_node *g);
ad_node *ad_slice_step_backward(ad_node *g, ad_node *like, int axis, int64_t start, int64_t step);
ad_node *ad_scatter_add(ad_node *g, ad_node *index, ad_node *like, int axis);
ad_node *ad_layer_norm_grad(ad_node *x, ad_node *g, double eps);
ad_node *ad_softmax_grad(ad_node *y, ad_node *g, int axis);

/* Every op's functions, declared from ops.def. */
#define AD_OP(id, name, arity, kind, shape, fwd, bwd, check, params, call, form, deriv, domain,    \
              nondiff)                                                                             \
    bool shape(ad_node *n);                                                                        \
    void fwd(ad_node *n);                                                                          \
    void bwd(ad_node *n, ad_node *g, ad_node **grads);                                             \
    bool check(const ad_node *n);                                                                  \
    ad_smoothness nondiff(const double *a, const double *b, const double *fparam);
#include "ops.def"
#undef AD_OP

static inline bool ad_compute(ad_node *n, bool infer)
{
    if (infer)
        return ad_compute_shaped(n);
    ad_ops[n->op].forward(n);
    return !n->g->check_finite || ad_check_values(n);
}

#endif
