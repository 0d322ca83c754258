/**
 * @file chainrule/autodiff.h
 * @brief Reverse-mode automatic differentiation in C11.
 *
 * A worked example: the classic single neuron o = tanh(x1*w1 + x2*w2 + b).
 *
 *     ad_graph *g = ad_graph_new(AD_F64);
 *     ad_node *x1 = ad_scalar(g, 2.0, "x1"), *x2 = ad_scalar(g, 0.0, "x2");
 *     ad_node *w1 = ad_scalar(g, -3.0, "w1"), *w2 = ad_scalar(g, 1.0, "w2");
 *     ad_node *b  = ad_scalar(g, 6.8813735870195432, "b");
 *     ad_node *n  = ad_add(ad_add(ad_mul(x1, w1), ad_mul(x2, w2)), b);
 *     ad_node *o  = ad_tanh(n);            // value is computed now: ad_item(o) == 0.7071...
 *     if (ad_backward(o) != 0) puts(ad_graph_error(g));
 *     printf("do/dw1 = %g\n", ad_grad_item(w1));   // -1.5
 *     ad_graph_free(g);                    // frees every node, value and gradient
 *
 * Concepts
 * - A graph owns everything created in it (nodes, shapes, values, gradients).
 *   Nothing returned by this API is freed by the caller except the graph.
 * - Ops compute their value eagerly when called. ad_forward() replays the whole
 *   graph after new leaf values are set, with no allocation.
 * - ad_backward() appends the backward pass to the graph as ordinary nodes,
 *   evaluates it and adds d loss/d leaf into each trainable leaf's gradient.
 *   Later calls on the same loss reuse those nodes (no allocation).
 * - ad_grad() returns gradients as differentiable nodes: second order.
 * - Errors never abort: an op given bad operands records a sticky error on the
 *   graph (the first message is kept, see ad_graph_error) and returns NULL;
 *   every op given a NULL operand returns NULL, so check once at the end.
 * - Shapes: up to AD_MAX_DIMS axes, row-major. A scalar is a 0-d tensor.
 *   Binary elementwise ops broadcast as NumPy does.
 */
#ifndef CHAINRULE_AUTODIFF_H
#define CHAINRULE_AUTODIFF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CHAINRULE_BUILDING) && defined(__GNUC__)
#define AD_API __attribute__((visibility("default")))
#else
/** Marks the exported functions of the library. */
#define AD_API
#endif

/** Major version: changes when the API or ABI breaks. */
#define AD_VERSION_MAJOR 0
/** Minor version: new API, compatible. */
#define AD_VERSION_MINOR 1
/** Patch version: fixes only. */
#define AD_VERSION_PATCH 0

/** Most axes a tensor may have. */
#define AD_MAX_DIMS 8
/** Pass as the axis of a reduction to reduce over every axis. */
#define AD_ALL (-1000)

/**
 * Element types. A graph holds AD_F32 or AD_F64 tensors; the file formats
 * (chainrule/io.h) also read and write the integer types.
 */
typedef enum {
    AD_F32, /**< float */
    AD_F64, /**< double */
    AD_I32, /**< int32_t (files only) */
    AD_I64, /**< int64_t (files only) */
    AD_U8,  /**< uint8_t (files only) */
    AD_I8,  /**< int8_t (files only) */
    AD_I16  /**< int16_t (files only) */
} ad_dtype;

/** A computation graph: owns every node, value and gradient made in it. */
typedef struct ad_graph ad_graph;
/** A node of a graph (a tensor and the op that made it); owned by its graph. */
typedef struct ad_node ad_node;

/**
 * Allocator hook, the same contract as Lua's lua_Alloc: when nsize is 0 free
 * ptr (which may be NULL) and return NULL; otherwise behave like
 * realloc(ptr, nsize) (ptr NULL allocates) and return NULL on failure.
 * osize is the old size of ptr (0 when ptr is NULL).
 */
typedef void *(*ad_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* ----------------------------------------------------------------- errors */
/*
 * The status convention of the whole library (docs/errors.md): every call
 * that can fail returns 0 / -1, or a pointer / NULL. The message is kept by
 * the object the call works on (ad_graph_error, nn_model_error); calls that
 * have no object to hold it (readers, writers, constructors that return
 * NULL) take a caller-owned ad_error *err, which may be NULL.
 */

/** Why a call failed, for calls that have no object to hold the message. */
typedef enum {
    AD_OK = 0,       /**< success */
    AD_EINVAL,       /**< a bad argument from the caller */
    AD_ENOMEM,       /**< out of memory */
    AD_EIO,          /**< a file cannot be opened, read, created, written, synced or renamed */
    AD_EFORMAT,      /**< not a valid file of its format: bad magic, truncated, corrupt */
    AD_EMISMATCH,    /**< valid, but not what the caller expects (names, shapes, counts) */
    AD_EUNSUPPORTED, /**< valid, but a feature chainrule does not read (dtype, order...) */
    AD_ESTATE,       /**< the call does not fit the object's state (not built, ...) */
    AD_EGRAPH        /**< the graph holds an error (ad_graph_error); the message repeats it */
} ad_errcode;

/** A failed call's code and message, for calls without an object to hold them. */
typedef struct ad_error {
    ad_errcode code;   /**< AD_OK, or why the call failed */
    char message[256]; /**< one line naming the call or file and the problem; "" on success */
} ad_error;

/** A constant name for a code ("ok", "out of memory", ...). Never NULL. */
AD_API const char *ad_errcode_string(ad_errcode code);

/*
 * NULL nodes. Every op and call that takes a node accepts NULL and then does
 * nothing: ops return NULL, calls return -1 (ad_backward(NULL),
 * ad_set(NULL, ...)), queries return their neutral value. A NULL node has no
 * graph to hold a message, and needs none: it is what a failed op returned,
 * and that op wrote the reason on its graph when it failed, so the reason of
 * ad_backward(NULL) is ad_graph_error(g) of the graph the computation was
 * built in (the first error is kept). A graph that could not be made at all
 * reports through ad_graph_new_err. No error text is kept in a global.
 */

/* ------------------------------------------------------------------ graph */

/**
 * A new empty graph using malloc. NULL when dtype is not AD_F32 or AD_F64 or
 * when out of memory; ad_graph_new_err says which.
 */
AD_API ad_graph *ad_graph_new(ad_dtype dtype);
/** A new empty graph that gets all of its memory from alloc(ud, ...) (NULL: malloc). */
AD_API ad_graph *ad_graph_new_with(ad_dtype dtype, ad_alloc_fn alloc, void *ud);
/**
 * ad_graph_new_with that says why it failed: on NULL, err (when not NULL)
 * holds AD_EINVAL ("ad_graph_new: dtype 7 is not AD_F32 or AD_F64") or
 * AD_ENOMEM; on success err->code is AD_OK. A graph that could not be made
 * has no ad_graph_error, so this is where a constructor's reason goes.
 */
AD_API ad_graph *ad_graph_new_err(ad_dtype dtype, ad_alloc_fn alloc, void *ud, ad_error *err);
/** Frees the graph and everything it owns. Accepts NULL. */
AD_API void ad_graph_free(ad_graph *g);
/** NULL while healthy, else the first error's message (owned by the graph). */
AD_API const char *ad_graph_error(const ad_graph *g);
/**
 * Records message as the graph's error unless one is already set (the first
 * is kept), for layers built on top of the engine. Returns -1.
 */
AD_API int ad_graph_set_error(ad_graph *g, const char *message);
/** Forgets the sticky error so the graph can be used again. */
AD_API void ad_graph_clear_error(ad_graph *g);
/** The element type of the graph (AD_F64 for NULL). */
AD_API ad_dtype ad_graph_dtype(const ad_graph *g);
/** Number of nodes in the graph, forward and backward. */
AD_API int64_t ad_graph_size(const ad_graph *g);
/** Node number i in creation order (a topological order), or NULL. */
AD_API ad_node *ad_graph_node(const ad_graph *g, int64_t i);
/** Bytes currently held from the allocator by the graph. */
AD_API size_t ad_graph_bytes(const ad_graph *g);

/**
 * Mark/rewind for define-by-run loops: ad_graph_mark() returns a mark;
 * ad_graph_rewind(g, mark) discards every node created after it (their
 * memory is reused by the next nodes). Nodes made before the mark, their
 * values and accumulated gradients are kept. Returns 0, or -1 for a bad mark.
 *
 * Handles to discarded nodes must not be used again. Rewinding never gives
 * memory back to the allocator before ad_graph_free, so a stale handle never
 * reads freed memory; a stale handle whose memory is not yet reused is
 * refused with an error ("node N was discarded by ad_graph_rewind"), but one
 * whose memory a newer node took silently names that newer node. In the
 * checking mode (ad_graph_set_check_finite) rewinding does not reuse the
 * discarded nodes' memory, so every use of a stale handle is reported as an
 * error; memory then grows with each rewind, so keep that mode for debugging.
 */
AD_API int64_t ad_graph_mark(const ad_graph *g);
/** Discards the nodes made after mark (see ad_graph_mark). 0, or -1 for a bad mark. */
AD_API int ad_graph_rewind(ad_graph *g, int64_t mark);

/* ------------------------------------------------------------------ leaves */

/** A trainable 0-d leaf holding value. */
AD_API ad_node *ad_scalar(ad_graph *g, double value, const char *name);
/**
 * A trainable leaf of the given shape, zero-filled. A parameter of 4 KiB or
 * more holds its value in a block of its own (given back by ad_leaf_move)
 * and gets its gradient buffer at its first backward pass or ad_grad_data.
 */
AD_API ad_node *ad_param(ad_graph *g, int ndim, const int64_t *shape, const char *name);
/**
 * A trainable leaf whose value and gradient live in caller memory (numel
 * elements of the graph's dtype each; grad may be NULL to let the graph own
 * it). The caller keeps both buffers alive as long as the graph. This lets a
 * model keep all parameters in one flat buffer.
 */
AD_API ad_node *ad_param_external(ad_graph *g, int ndim, const int64_t *shape, void *value,
                                  void *grad, const char *name);
/** A data leaf (no gradient), zero-filled. Its leading axis may later change: ad_resize. */
AD_API ad_node *ad_input(ad_graph *g, int ndim, const int64_t *shape, const char *name);
/** A constant leaf (no gradient) holding values (count must equal numel; NULL gives zeros). */
AD_API ad_node *ad_const(ad_graph *g, int ndim, const int64_t *shape, const double *values,
                         const char *name);
/**
 * A constant leaf whose values live in caller memory (numel elements of the
 * graph's dtype, kept alive by the caller as long as the graph); the caller
 * may change them between replays (running statistics, masks).
 */
AD_API ad_node *ad_const_external(ad_graph *g, int ndim, const int64_t *shape, void *value,
                                  const char *name);
/** A 0-d constant. */
AD_API ad_node *ad_const_scalar(ad_graph *g, double value, const char *name);
/**
 * Moves a leaf's value (and, for a trainable leaf, its accumulated
 * gradient) into caller memory: numel elements of the graph's dtype each,
 * the current contents copied over, kept alive by the caller as long as the
 * graph. Nodes that alias the leaf follow at the next ad_forward. This is
 * how a model gathers parameters created one by one into one flat buffer.
 * A NULL grad leaves the gradient where it is (a later call may move it),
 * so the values can move before the gradients' buffer exists. Memory the
 * graph held for the moved buffers is given back when it was the leaf's own
 * (parameters of 4 KiB or more made by ad_param). Refused (-1, with the
 * graph's error) once the graph has a backward pass, for a non-leaf, or a
 * NULL value buffer. 0 on success.
 */
AD_API int ad_leaf_move(ad_node *leaf, void *value, void *grad);

/**
 * Lets an input leaf (ad_input) read its values from the caller's memory
 * instead of copying them in: values holds ad_numel(input) elements of the
 * graph's dtype (float for AD_F32, double for AD_F64), row-major, and must
 * stay valid and unchanged for as long as the graph may read it (ad_forward,
 * ad_backward, replays). Nothing is copied and nothing is written through
 * values; ad_data(input) returns values meanwhile (do not write through it).
 * Calling it again with another pointer moves the borrow there. The borrow
 * ends with ad_input_borrow(input, NULL), which copies the values the input
 * read into its own buffer (so it holds them as if ad_set had been called),
 * or without copying when ad_set, ad_set_f32 or ad_resize write the input,
 * or when the graph is rewound past it or freed. For feeding a model from
 * the caller's arrays without a copy per batch (nn_model_predict and
 * nn_train_epoch use it). 0, or -1 with the graph's error (not an input
 * leaf; out of memory for the borrow table).
 */
AD_API int ad_input_borrow(ad_node *input, const void *values);

/**
 * Copies count values into a leaf; count must equal its numel. 0 on success,
 * -1 on error (see ad_graph_error; for a NULL leaf, the error of the op that
 * returned it).
 */
AD_API int ad_set(ad_node *leaf, const double *values, int64_t count);
/** The same from float data. */
AD_API int ad_set_f32(ad_node *leaf, const float *values, int64_t count);
/** Copies a node's count values (row-major, converted to double) into out. 0 or -1. */
AD_API int ad_get(const ad_node *n, double *out, int64_t count);
/** Copies the accumulated gradient of a trainable leaf (zeros before any backward). 0 or -1. */
AD_API int ad_get_grad(const ad_node *n, double *out, int64_t count);
/** Value of a one-element node (NaN, with an error, otherwise). */
AD_API double ad_item(const ad_node *n);
/** Gradient of a one-element trainable leaf. */
AD_API double ad_grad_item(const ad_node *n);
/**
 * Changes the leading (batch) axis of an input leaf to batch, which must be
 * >= 1. Values become zero; set them with ad_set, then ad_forward()
 * re-infers every shape. Memory is reused when the batch does not grow
 * beyond the largest seen. 0 or -1.
 */
AD_API int ad_resize(ad_node *input, int64_t batch);

/* ----------------------------------------------------------- introspection */

/** Number of elements of n (the product of its shape), -1 for NULL. */
AD_API int64_t ad_numel(const ad_node *n);
/** Number of axes of n (0 for a scalar), -1 for NULL. */
AD_API int ad_ndim(const ad_node *n);
/** The shape array (ad_ndim entries), owned by the node. */
AD_API const int64_t *ad_shape(const ad_node *n);
/** The graph that owns n. */
AD_API ad_graph *ad_node_graph(const ad_node *n);
AD_API const char *ad_node_name(const ad_node *n); /**< "" when unnamed */
/** Renames a node (the graph copies name; NULL or "" unnames it). 0, or -1
 *  without memory or for a node discarded by ad_graph_rewind (graph error
 *  set). */
AD_API int ad_node_set_name(ad_node *n, const char *name);
AD_API int64_t ad_node_id(const ad_node *n); /**< creation index */
/** Index of n's op in the registry, -1 for NULL. Compare it with ad_op_find("tanh"). */
AD_API int ad_node_op(const ad_node *n);
/** Number of inputs of n (0 for leaves). */
AD_API int ad_node_ninputs(const ad_node *n);
/** Input i of n, in order (a + a has input 0 and input 1 equal), or NULL. */
AD_API ad_node *ad_node_input(const ad_node *n, int i);
/** Nonzero for trainable leaves (ad_scalar, ad_param, ad_param_external). */
AD_API int ad_node_is_trainable(const ad_node *n);
/** Nonzero when the gradient of some trainable leaf flows through n. */
AD_API int ad_node_requires_grad(const ad_node *n);
/** Nonzero for nodes that ad_backward built (the backward pass). */
AD_API int ad_node_is_backward(const ad_node *n);
/** Raw value buffer (float* or double* by dtype), owned by the graph. */
AD_API void *ad_data(ad_node *n);
/** Raw accumulated-gradient buffer of a trainable leaf (made, zeroed, if it was not yet), or NULL.
 */
AD_API void *ad_grad_data(ad_node *n);
/**
 * The gradient node computed for n by the most recent ad_backward through n
 * (d loss/d n, the shape of n), or NULL. Useful for dumps and teaching.
 */
AD_API ad_node *ad_node_grad(const ad_node *n);
/** Prints "name = value" (tensor values row by row, summarized when large). */
AD_API int ad_print(const ad_node *n, FILE *out);

/* --------------------------------------------------------------- registry */

/** The family of an op in the registry. */
typedef enum {
    AD_KIND_LEAF,     /* input, param, const */
    AD_KIND_UNARY,    /* elementwise f(a) */
    AD_KIND_BINARY,   /* elementwise f(a, b), broadcasting */
    AD_KIND_TERNARY,  /* where(c, a, b), broadcasting */
    AD_KIND_REDUCE,   /* reduction over one axis or AD_ALL */
    AD_KIND_AXIS,     /* shape-preserving op along one axis (softmax) */
    AD_KIND_MATMUL,   /* (.., m, k) x (.., k, n) */
    AD_KIND_SHAPE,    /* reshape, transpose, slice, concat, ... */
    AD_KIND_INTERNAL, /* built by gradient rules; callable through ad_op_apply */
    AD_KIND_CONV,     /* convolution and pooling over the trailing spatial axes */
} ad_op_kind;

/** Number of ops in the registry. */
AD_API int ad_op_count(void);
/** The op's name ("tanh"), or NULL for an index out of range. */
AD_API const char *ad_op_name(int op);
/** Number of tensor inputs, or -1 when variadic (concat). */
AD_API int ad_op_arity(int op);
/** The op's family. */
AD_API ad_op_kind ad_op_kind_of(int op);
/**
 * The local derivative as the dumps print it: a template from the registry
 * (autodiff/ops.def), e.g. "1 − \@Y²" for tanh, "\@B | \@A" for mul (one part
 * per input, " | " between them), where \@A, \@B, \@C are the inputs, \@Y the
 * output and \@P, \@Q the op's parameters (ops.def's header lists every
 * marker). Ops that are not elementwise have a sentence. Text only: the
 * values are always computed by the op's gradient rule.
 */
AD_API const char *ad_op_rule(int op);
/**
 * Where the op's value is finite, as text from the registry (autodiff/ops.def):
 * "x > 0" for log, "divisor ≠ 0" for div. NULL when every finite input gives
 * a finite value, or for an unknown op. `chainrule grad` prints it when the
 * anomaly mode stops at the op.
 */
AD_API const char *ad_op_domain(int op);
/** Nonzero when the op passes gradient to at least one input. */
AD_API int ad_op_differentiable(int op);
/** How a function behaves at (or near) a point, as the gradient check sees it. */
typedef enum {
    AD_SMOOTH = 0,       /**< differentiable there: the engine's gradient is the derivative */
    AD_KINK = 1,         /**< continuous, but the derivative jumps (relu, abs at 0, a max tie) */
    AD_DISCONTINUITY = 2 /**< the value jumps (step, sign at 0): no derivative at all */
} ad_smoothness;
/**
 * The registry's rule for where an elementwise op is not differentiable
 * (autodiff/ops.def's nondiff column), asked for one element: a[k] and b[k]
 * are the values of input k at two points (pass b == a, or NULL, for one
 * point), fparams the op's float parameters (as for ad_op_apply; NULL: 0).
 * AD_DISCONTINUITY when the op's value jumps on the segment from a to b
 * (ends included), AD_KINK when only its derivative does, AD_SMOOTH
 * otherwise and for ops that are not elementwise or out of range.
 * Example: relu with a = {-1e-6}, b = {1e-6} is AD_KINK; step at {0} is
 * AD_DISCONTINUITY.
 */
AD_API ad_smoothness ad_op_smoothness(int op, const double *a, const double *b,
                                      const double *fparams);
/**
 * Op index by name, or -1. This is also the way to ask what a node is:
 * `ad_node_op(n) == ad_op_find("tanh")` (op indices are not a stable
 * public enum; names are).
 */
AD_API int ad_op_find(const char *name);
/**
 * How dumps print a node of this op: a template such as "@A + @B" or
 * "tanh(@A)" (markers: autodiff/ops.def's header), or NULL out of range.
 */
AD_API const char *ad_op_form(int op);
/**
 * The function name of the op in `chainrule grad` expressions ("tanh",
 * "max" for maximum), or NULL when the op is not callable there. Such a call
 * is name(tensor arguments, parameters...), e.g. leaky_relu(x, 0.1),
 * pow(x, 3), clamp(x, -1, 1); the parameters are ad_op_params().
 */
AD_API const char *ad_op_call_name(int op);
/** The op whose ad_op_call_name is name, or -1. */
AD_API int ad_op_find_call(const char *name);
/**
 * The op's float parameters as written after its tensor arguments, comma
 * separated, each "name" or "name = default": "slope", "lo, hi",
 * "c, d = 0"; "" when it has none, NULL out of range.
 */
AD_API const char *ad_op_params(int op);
/** Number of entries of ad_op_params (0 to 2). */
AD_API int ad_op_param_count(int op);
/** Copies the name of parameter i into buf (NUL-terminated). 0, or -1 when there is none. */
AD_API int ad_op_param_name(int op, int i, char *buf, size_t size);
/**
 * 1 when parameter i has a default (then stored in *value unless value is
 * NULL), 0 when it must be given or does not exist.
 */
AD_API int ad_op_param_default(int op, int i, double *value);
/**
 * Applies any op by registry index (generic driver for tests and tools).
 * fparams: up to 2 doubles (exponent, alpha, lo/hi, ...); iparams: up to
 * AD_MAX_DIMS + 2 integers (axis, shape, ...). Their meaning per op is the
 * same as the named function's arguments. Unused ones may be NULL.
 */
AD_API ad_node *ad_op_apply(int op, int ninputs, ad_node *const *inputs, const double *fparams,
                            int nf, const int64_t *iparams, int ni);

/* -------------------------------------------------------- elementwise ops */

AD_API ad_node *ad_add(ad_node *a, ad_node *b); /**< a + b */
AD_API ad_node *ad_sub(ad_node *a, ad_node *b); /**< a - b */
AD_API ad_node *ad_mul(ad_node *a, ad_node *b); /**< a * b */
AD_API ad_node *ad_div(ad_node *a, ad_node *b); /**< a / b */
/** terms[0] + ... + terms[n-1] in one node (broadcasting); n >= 1. */
AD_API ad_node *ad_add_n(int n, ad_node *const *terms);
/**
 * a^b elementwise with broadcasting (C's pow: a negative base with an
 * integral exponent is defined, (-2)^2 = 4). ∂/∂a = b·a^(b−1);
 * ∂/∂b = a^b·ln a, taken as 0 where a = 0 and b ≥ 0 (PyTorch's convention),
 * NaN where a < 0. For a constant exponent use ad_pow.
 */
AD_API ad_node *ad_power(ad_node *a, ad_node *b);
AD_API ad_node *ad_maximum(ad_node *a, ad_node *b); /**< max(a, b); ties split the gradient */
AD_API ad_node *ad_minimum(ad_node *a, ad_node *b); /**< min(a, b); ties split the gradient */
AD_API ad_node *ad_eq(ad_node *a, ad_node *b);      /**< 1 where a == b else 0; no gradient */
AD_API ad_node *ad_gt(ad_node *a, ad_node *b);      /**< 1 where a > b else 0; no gradient */
/** where(cond, a, b): a where cond != 0, else b. No gradient to cond. */
AD_API ad_node *ad_where(ad_node *cond, ad_node *a, ad_node *b);

AD_API ad_node *ad_neg(ad_node *a);      /**< -a */
AD_API ad_node *ad_exp(ad_node *a);      /**< e^a */
AD_API ad_node *ad_log(ad_node *a);      /**< ln a */
AD_API ad_node *ad_sqrt(ad_node *a);     /**< sqrt a */
AD_API ad_node *ad_abs(ad_node *a);      /**< |a|, derivative sign(a) (0 at 0) */
AD_API ad_node *ad_sin(ad_node *a);      /**< sin a */
AD_API ad_node *ad_cos(ad_node *a);      /**< cos a */
AD_API ad_node *ad_tanh(ad_node *a);     /**< tanh a, derivative 1 - tanh^2 */
AD_API ad_node *ad_sigmoid(ad_node *a);  /**< 1/(1+e^-a), derivative s(1-s); stable */
AD_API ad_node *ad_relu(ad_node *a);     /**< max(0, a), derivative 0 at a <= 0 */
AD_API ad_node *ad_softplus(ad_node *a); /**< ln(1 + e^a), stable; derivative sigmoid(a) */
AD_API ad_node *ad_leaky_relu(ad_node *a, double alpha);    /**< a > 0 ? a : alpha a */
AD_API ad_node *ad_elu(ad_node *a, double alpha);           /**< a > 0 ? a : alpha (e^a - 1) */
AD_API ad_node *ad_pow(ad_node *a, double p);               /**< a^p */
AD_API ad_node *ad_scale(ad_node *a, double c);             /**< c a */
AD_API ad_node *ad_affine(ad_node *a, double c, double d);  /**< c a + d */
AD_API ad_node *ad_clamp(ad_node *a, double lo, double hi); /**< gradient 1 inside [lo, hi] */
/** Heaviside step: 0 if a < 0, else 1. Gradient zero. */
AD_API ad_node *ad_step(ad_node *a);
/** The step op with a chosen value at 0 (numpy.heaviside): 0 if a < 0, at0 if a == 0,
 *  1 if a > 0. Gradient zero. ad_step(a) is ad_step_at(a, 1). */
AD_API ad_node *ad_step_at(ad_node *a, double at0);
/** Sign: -1, 0 or +1. Gradient zero. */
AD_API ad_node *ad_sign(ad_node *a);
/** The value of a, no gradient flows back through it. */
AD_API ad_node *ad_detach(ad_node *a);
/**
 * Straight-through estimator: the value of fx (same shape as x), the
 * gradient of x (passed through as if fx were x). Used for step units.
 */
AD_API ad_node *ad_straight_through(ad_node *x, ad_node *fx);
/**
 * Dropout mask: elementwise 1/keep with probability keep, else 0, the shape
 * of a, drawn afresh on every forward from the graph's generator
 * (ad_graph_seed). No gradient.
 */
AD_API ad_node *ad_dropout_mask(ad_node *a, double keep);
/** Seeds the graph's random generator (splitmix64/xoshiro256**). */
AD_API void ad_graph_seed(ad_graph *g, uint64_t seed);
/** Copies the generator's 4-word state into state (to save in a checkpoint). */
AD_API void ad_graph_rng_state(const ad_graph *g, uint64_t state[4]);
/** Restores a state from ad_graph_rng_state, so a resumed run draws the same masks. */
AD_API void ad_graph_set_rng_state(ad_graph *g, const uint64_t state[4]);
/**
 * Training mode (the default, on). Off, ad_dropout_mask nodes produce ones
 * and draw nothing from the generator, so evaluation does not disturb the
 * masks of later training steps.
 */
AD_API void ad_graph_set_training(ad_graph *g, int on);
/** Nonzero in training mode. */
AD_API int ad_graph_is_training(const ad_graph *g);

/* ------------------------------------------------------------- reductions */

/*
 * Axes: an axis k of a tensor with n axes is in [-n, n); a negative k counts
 * from the end (-1 is the last axis), as in NumPy. The reductions also take
 * AD_ALL (every axis). A reduction drops the reduced axis; its _keepdims form
 * keeps it with size 1 (AD_ALL: every axis becomes 1), so the result
 * broadcasts against the input: x - ad_max_keepdims(x, -1).
 */

AD_API ad_node *ad_sum(ad_node *a, int axis);       /**< sum over axis; AD_ALL reduces everything */
AD_API ad_node *ad_mean(ad_node *a, int axis);      /**< mean over axis (or AD_ALL) */
AD_API ad_node *ad_max(ad_node *a, int axis);       /**< ties share the gradient equally */
AD_API ad_node *ad_min(ad_node *a, int axis);       /**< ties share the gradient equally */
AD_API ad_node *ad_logsumexp(ad_node *a, int axis); /**< stable log(sum(exp(a))) over axis */
/** ad_sum keeping the reduced axis with size 1: (2,3,4) over axis 1 gives (2,1,4). */
AD_API ad_node *ad_sum_keepdims(ad_node *a, int axis);
/** ad_mean keeping the reduced axis with size 1. */
AD_API ad_node *ad_mean_keepdims(ad_node *a, int axis);
/** ad_max keeping the reduced axis with size 1. */
AD_API ad_node *ad_max_keepdims(ad_node *a, int axis);
/** ad_min keeping the reduced axis with size 1. */
AD_API ad_node *ad_min_keepdims(ad_node *a, int axis);
/** ad_logsumexp keeping the reduced axis with size 1. */
AD_API ad_node *ad_logsumexp_keepdims(ad_node *a, int axis);
AD_API ad_node *ad_softmax(ad_node *a, int axis);     /**< shape of a; axis may be negative */
AD_API ad_node *ad_log_softmax(ad_node *a, int axis); /**< shape of a, stable */
/**
 * (x − mean) / sqrt(var + eps) over the last axis of x, in one node (layer
 * normalization without its affine part: biased variance, as
 * torch.nn.functional.layer_norm). Shape of x, which needs at least one
 * axis; eps must be finite and > 0. The gradient is one node too
 * (layer_norm_grad), differentiable again. NULL with the graph's error set
 * on a 0-d x or a bad eps.
 */
AD_API ad_node *ad_layer_norm(ad_node *x, double eps);

/* ----------------------------------------------------- linear algebra, shape */

/** a @ b for a (..., m, k) and b (..., k, n); leading axes broadcast. */
AD_API ad_node *ad_matmul(ad_node *a, ad_node *b);
/** op(a) @ op(b) where op transposes the last two axes when the flag is set. */
AD_API ad_node *ad_matmul_t(ad_node *a, int trans_a, ad_node *b, int trans_b);
/**
 * x @ w + b in one node (a fully connected layer): x (n, k), w (k, m), b (m)
 * or (1, m); the result is (n, m). x may have more leading axes, (..., k),
 * giving (..., m): its rows are one matrix, one product. The bias is
 * written first and the product added onto it, so no separate product is
 * kept.
 */
AD_API ad_node *ad_linear(ad_node *x, ad_node *w, ad_node *b);
/**
 * relu(x @ w + b) in one node: ad_linear with the ReLU applied in the same
 * pass over the output (shapes and errors as ad_linear). The gradient masks
 * the upstream gradient by y > 0 in one op (no step node, no product node).
 */
AD_API ad_node *ad_linear_relu(ad_node *x, ad_node *w, ad_node *b);
/** Swaps the last two axes. */
AD_API ad_node *ad_transpose(ad_node *a);
/**
 * Same elements, new shape (a view: no copy). One entry may be -1 (inferred
 * from the element count); an entry 0 keeps the input's axis at the same
 * index (ONNX's rule), so (0, -1) flattens all but the batch axis.
 *
 * On replay after ad_resize the input may have a new batch: the reshape is
 * re-inferred, and it must still mean what it meant when built. The changed
 * input axis must land inside one output axis written 0 or -1 (with the
 * same elements before it); a reshape that fixed that axis to the old batch,
 * like (4,-1) of a (4,3,2) input resized to (2,3,2), makes ad_forward fail
 * with a message instead of silently reading the data as (4,3).
 */
AD_API ad_node *ad_reshape(ad_node *a, int ndim, const int64_t *shape);
/**
 * Reorders the axes: output axis d is input axis axes[d] (ad_ndim(a)
 * entries, a permutation; negative entries count from the end). A copy.
 * (B,T,H,D) with axes {0,2,1,3} gives (B,H,T,D). Gradient: the inverse
 * permutation.
 */
AD_API ad_node *ad_permute(ad_node *a, const int *axes);
/**
 * Inserts an axis of size 1 at position axis of the result (in
 * [-(n+1), n] for n axes; -1 appends). A view (no copy) that follows the
 * input's shape on replay.
 */
AD_API ad_node *ad_unsqueeze(ad_node *a, int axis);
/** Removes axis (negative counts from the end), which must have size 1. A view. */
AD_API ad_node *ad_squeeze(ad_node *a, int axis);
/**
 * Gather (numpy.take): the rows of table at the given indices along axis.
 * Shape table[:axis] + index.shape + table[axis+1:]: an embedding lookup is
 * ad_take(E (V,D), ids (B,T), 0) -> (B,T,D). index holds integral values
 * in [-n, n) for an axis of size n (negative ones count from the end, as
 * NumPy wraps them); anything else is an error, checked at every forward
 * (ad_set may change the indices before ad_forward). No gradient flows to
 * index; the gradient to table adds each upstream row at its index
 * (repeated indices accumulate), an op whose own gradient is ad_take.
 */
AD_API ad_node *ad_take(ad_node *table, ad_node *index, int axis);
/**
 * a padded along axis with before and after elements (both >= 0) of value.
 * (B,L,C) padded by (2, 1) along 1 gives (B,L+3,C). Gradient: the slice back.
 */
AD_API ad_node *ad_pad(ad_node *a, int axis, int64_t before, int64_t after, double value);
/**
 * Every step-th element of start <= i < end along axis (a[start:end:step]
 * in NumPy, with 0 <= start <= end <= size and step >= 1): ceil((end -
 * start) / step) elements. Gradient: the rows put back at their places,
 * zeros between (an op whose own gradient is ad_slice_step).
 */
AD_API ad_node *ad_slice_step(ad_node *a, int axis, int64_t start, int64_t end, int64_t step);
/** Elements start <= i < end along axis (negative axis counts from the end). */
AD_API ad_node *ad_slice(ad_node *a, int axis, int64_t start, int64_t end);
/** Joins n tensors along axis (all other axes equal). */
AD_API ad_node *ad_concat(int n, ad_node *const *parts, int axis);
/** Broadcasts a to shape (NumPy rules). */
AD_API ad_node *ad_broadcast_to(ad_node *a, int ndim, const int64_t *shape);
/**
 * One-hot rows: indices holds class numbers (integral values) of any shape;
 * the result has shape (..., classes). An index outside [0, classes) is an
 * error at forward time. No gradient.
 */
AD_API ad_node *ad_one_hot(ad_node *indices, int64_t classes);
/**
 * Softmax cross-entropy of logits (rows, classes) against labels (rows)
 * holding class numbers: the mean over rows of logsumexp(z) − z[label], a
 * 0-d node, computed stably in one op. Its gradient
 * (softmax(z) − onehot(label)) / rows is one op too, itself differentiable
 * (second order works). A label outside [0, classes) is an error at forward
 * time. No gradient flows to the labels.
 */
AD_API ad_node *ad_softmax_cross_entropy(ad_node *logits, ad_node *labels);

/* ------------------------------------------------- convolution and pooling */

/**
 * Options of ad_conv1d and ad_conv2d. Element [0] is the height axis and
 * [1] the width axis of a 2-d convolution; a 1-d convolution uses element
 * [0] of each pair. 0 in a field means the default (stride 1, padding 0,
 * dilation 1, groups 1); a NULL options pointer means all defaults.
 */
typedef struct {
    int stride[2];   /**< step between windows; 0 = 1 */
    int padding[2];  /**< zeros added on both sides of each spatial axis */
    int dilation[2]; /**< spacing between kernel taps; 0 = 1 */
    int groups;      /**< channels split into this many independent groups; 0 = 1 */
} ad_conv_opts;

/**
 * 1-d convolution (cross-correlation, as PyTorch's conv1d, no bias):
 * x (N, C, L), w (O, C/groups, K) -> (N, O, Lout) with
 * Lout = (L + 2·padding − dilation·(K − 1) − 1) / stride + 1. Errors (sticky,
 * NULL returned): wrong ranks, channel counts that do not match, groups not
 * dividing C or O, negative options, a kernel larger than the padded input.
 * Gradients to x and w are themselves differentiable (second order works).
 */
AD_API ad_node *ad_conv1d(ad_node *x, ad_node *w, const ad_conv_opts *o);
/**
 * 2-d convolution (cross-correlation, as PyTorch's conv2d, no bias):
 * x (N, C, H, W), w (O, C/groups, KH, KW) -> (N, O, OH, OW), each output size
 * as for ad_conv1d per axis. Computed as one GEMM per group and chunk of
 * images (im2col of the chunk side by side). Errors as ad_conv1d, e.g.
 * "ad_conv2d: input (8,3,32,32) has 3 channels, weight (16,4,3,3) expects 4".
 */
AD_API ad_node *ad_conv2d(ad_node *x, ad_node *w, const ad_conv_opts *o);
/**
 * 1-d convolution plus one bias per output channel, in one node:
 * y[n,o,l] = ad_conv1d(x, w, o)[n,o,l] + b[o], b (O) (PyTorch's conv1d with
 * a bias). The bias is added to each image's GEMM output while it is in
 * cache, so no separate broadcast add or temporary is made. Gradients to
 * x, w and b are differentiable again. Errors as ad_conv1d, and "bias (5)
 * must have one element per output channel of weight (4,2,3)".
 */
AD_API ad_node *ad_conv1d_bias(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);
/** 2-d convolution plus one bias per output channel, b (O): as ad_conv1d_bias. */
AD_API ad_node *ad_conv2d_bias(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);
/**
 * relu(ad_conv1d_bias(x, w, b, o)) in one node: the ReLU is applied to each
 * image's output right after its GEMM (one pass over the output less). The
 * gradient masks the upstream gradient by y > 0 in one op, as
 * ad_linear_relu's. Shapes and errors as ad_conv1d_bias.
 */
AD_API ad_node *ad_conv1d_bias_relu(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);
/** relu(ad_conv2d_bias(x, w, b, o)) in one node: as ad_conv1d_bias_relu. */
AD_API ad_node *ad_conv2d_bias_relu(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);
/**
 * max_pool2d(relu(ad_conv2d_bias(x, w, b, o))) with 2×2 windows at stride 2
 * and no padding, in one node: x (N, C, H, W) -> (N, O, OH/2, OW/2), OH and
 * OW the convolution's output size (an odd last row or column is dropped, as
 * PyTorch's max_pool2d(2)). The ReLU and the pooling run on each chunk of
 * images' product while it is in cache, so the (N, O, OH, OW) activation is
 * never stored; the node records each window's argmax as ad_max_pool2d
 * does (the first maximum in scan order on ties). Values are those of the
 * three ops one after the other; the gradient sends G·[y > 0] to each
 * window's argmax and is differentiable again. Errors as ad_conv2d_bias,
 * and "ad_conv2d_bias_relu_pool: input (2,4,3,3) and weight (4,4,3,3) give a
 * 1x1 convolution output; the 2x2 pooling needs 4 axes and at least 2x2".
 */
AD_API ad_node *ad_conv2d_bias_relu_pool(ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);

/**
 * Options of the pooling ops ([0] height, [1] width; 1-d ops use [0]).
 * Padding may be at most half the kernel (as in PyTorch).
 */
typedef struct {
    int kernel[2];  /**< window size, at least 1 */
    int stride[2];  /**< step between windows; 0 = the kernel size */
    int padding[2]; /**< added on both sides: -inf for max, zeros for avg */
} ad_pool_opts;

/**
 * Max pooling over windows of x (N, C, L) -> (N, C, Lout), Lout =
 * (L + 2·padding − kernel) / stride + 1. The node records each window's
 * argmax (the first maximum in scan order on ties, as PyTorch), recomputed
 * on replay; the gradient goes to that element only. o is required.
 */
AD_API ad_node *ad_max_pool1d(ad_node *x, const ad_pool_opts *o);
/** Max pooling of x (N, C, H, W) -> (N, C, OH, OW); as ad_max_pool1d per axis. */
AD_API ad_node *ad_max_pool2d(ad_node *x, const ad_pool_opts *o);
/**
 * Average pooling of x (N, C, L) -> (N, C, Lout): each window's sum divided
 * by the kernel size, padded zeros counted (PyTorch's default
 * count_include_pad). o is required.
 */
AD_API ad_node *ad_avg_pool1d(ad_node *x, const ad_pool_opts *o);
/** Average pooling of x (N, C, H, W) -> (N, C, OH, OW); as ad_avg_pool1d per axis. */
AD_API ad_node *ad_avg_pool2d(ad_node *x, const ad_pool_opts *o);

/* --------------------------------------------------------- differentiation */

/**
 * Backpropagates from a one-element loss: adds d loss/d leaf into every
 * trainable leaf's gradient (accumulating across calls, as PyTorch does).
 * The first call on a loss builds the backward nodes; later calls re-run
 * them. They read the values of the forward pass that last ran and what it
 * kept (ReLU masks, max-pool argmax, a convolution's transformed input): after
 * changing a leaf with ad_set, call ad_forward first. 0 on success, -1 on
 * error (see ad_graph_error). A NULL loss returns -1: it came from a failed
 * op, whose reason is already the graph's error.
 */
AD_API int ad_backward(ad_node *loss);
/**
 * Memory reuse for training loops (off by default). Backward passes built
 * after ad_graph_set_memory_reuse(g, 1) give their intermediate gradient
 * nodes buffers from one pool per pass, shared between nodes whose lifetimes
 * do not overlap (planned once, reused by every replay), and add each leaf's
 * gradient into it as soon as that gradient is computed. Leaf gradients are
 * exactly the same; the price is that the values of intermediate gradient
 * nodes (ad_node_grad of a non-leaf, and the backward view of the dumps) are
 * not kept after ad_backward returns. nn models turn it on.
 */
AD_API void ad_graph_set_memory_reuse(ad_graph *g, int on);
/**
 * ad_zero_grad(g) followed by ad_backward(loss), without the zeroing pass
 * once the backward pass is planned (ad_graph_set_memory_reuse): every
 * trainable leaf's gradient is set to d loss/d leaf (zeros for the leaves
 * loss does not depend on), each written once, a weight's matrix-product
 * gradient by the GEMM itself. The values equal those of the two calls (a
 * zero's sign aside: -0 where the two calls give +0). What a training step
 * calls (nn_model_backward). 0 or -1, as ad_backward.
 */
AD_API int ad_backward_overwrite(ad_node *loss);
/**
 * One backward pass and one plain SGD step: every trainable leaf that loss
 * depends on ends as value - lr * d loss/d leaf (the leaves it does not depend
 * on are left alone), as ad_backward_overwrite followed by that update would
 * leave it, with no pass over the gradients. Once the pass is planned
 * (ad_graph_set_memory_reuse, from the second call on a loss), a leaf whose
 * value no later backward node reads takes its step as soon as its gradient
 * is complete, and a weight whose gradient is one matrix product takes it
 * inside that product (the GEMM adds -lr times the product into the weight:
 * within one rounding of the separate update, which rounds the gradient
 * first). What nn_model_train_step calls for a fused SGD optimizer
 * (nn_optim_config.fused). The leaves' gradient buffers are left unspecified:
 * read gradients with ad_backward or ad_backward_overwrite. With
 * ad_graph_set_check_finite on, every update waits for the whole pass, so a
 * refused pass leaves every value as it was; otherwise only a kernel failing
 * mid-pass (out of memory) can leave the step partly taken. lr must be finite
 * and >= 0 (else the graph's error names it). 0 or -1, as ad_backward.
 */
AD_API int ad_backward_sgd(ad_node *loss, double lr);
/** Zeros every trainable leaf's accumulated gradient. */
AD_API void ad_zero_grad(ad_graph *g);
/**
 * Replay: recomputes every node (except backward passes) from the current
 * leaf values, in creation order; re-infers shapes after ad_resize.
 * Allocates nothing unless a batch grew. 0 or -1.
 */
AD_API int ad_forward(ad_graph *g);
/**
 * dy/dx as new graph nodes (shape of x) that can be differentiated again.
 * y must have one element. x may be any node made before y: a trainable
 * leaf, an input (ad_input: saliency maps, gradient penalties, d/dx of a
 * physics-informed net), a constant or an intermediate node (then dy/dx
 * treats x as a variable: the sum over the uses of x, not through what
 * made x). Returns zeros only when y does not depend on x through
 * differentiable ops. NULL with the graph's error set when y has more than
 * one element, belongs to an ad_backward pass, or x is from another graph.
 * Records the gradients in ad_node_grad (what the dumps show).
 */
AD_API ad_node *ad_grad(ad_node *y, ad_node *x);
/**
 * The gradients of one-element y with respect to n nodes at once:
 * out[i] = dy/dxs[i] (shape of xs[i], differentiable again), as ad_grad
 * gives them, from one backward construction shared by all of them (a
 * node's gradient is built once however many xs need it). Nothing is
 * accumulated into any leaf's gradient buffer. Returns 0, or -1 with the
 * graph's error set (the errors of ad_grad, a NULL xs[i] or out) and every
 * out[i] NULL; nodes made before the failure are discarded.
 */
AD_API int ad_grad_n(ad_node *y, int n, ad_node *const *xs, ad_node **out);
/**
 * Forward mode: the directional derivative J v = sum_i (dy/dxs[i]) vs[i] as
 * a node of y's shape (y of any shape; vs[i] of xs[i]'s shape; xs[i] any
 * nodes, as for ad_grad). Built from two reverse passes (J v = d/du of
 * (Jᵀu)·v for a dummy u), so the result is an ordinary node: it replays with
 * ad_forward and can be differentiated again (with respect to xs or vs).
 * n == 0 gives zeros. NULL with the graph's error set for NULL arguments,
 * nodes of another graph or a direction whose shape differs from its node's.
 */
AD_API ad_node *ad_jvp(ad_node *y, int n, ad_node *const *xs, ad_node *const *vs);
/**
 * The dense Jacobian dy/dx into caller memory: numel(y) rows of numel(x)
 * doubles, row-major (out[i * numel(x) + j] = d y_i/d x_j, both flattened
 * row-major). x may be any node (as for ad_grad). One backward construction
 * is built and replayed once per row with a different seed (or, when x has
 * fewer than a third as many elements as y, one ad_jvp construction
 * replayed once per column); its nodes are discarded before returning
 * (the graph does not grow, leaf gradients and node values are untouched).
 * 0, or -1 with the graph's error set (NULL arguments, another graph, y
 * part of an ad_backward pass, shapes changed by ad_resize and not yet
 * replayed).
 */
AD_API int ad_jacobian(ad_node *y, ad_node *x, double *out);
/**
 * The dense Hessian d²y/dx² of one-element y into caller memory: numel(x)
 * rows of numel(x) doubles, row-major (out[i * numel(x) + j] =
 * d²y/dx_i dx_j). The Jacobian of the gradient, computed as ad_jacobian
 * does (one construction, replayed per row, discarded). 0, or -1 with the
 * graph's error set (the errors of ad_jacobian, y with more than one
 * element).
 */
AD_API int ad_hessian(ad_node *y, ad_node *x, double *out);

/**
 * Options of ad_gradcheck. A field left 0 takes its default; NULL options
 * are all defaults.
 */
typedef struct {
    /** Relative step: x_i moves by ±eps·max(1, |x_i|). Default 1e-6 (f64), 1e-3 (f32). */
    double eps;
    /** Absolute tolerance. Default 1e-5 (f64), 1e-2 (f32). */
    double atol;
    /** Relative tolerance. Default 1e-3 (f64), 1e-2 (f32). */
    double rtol;
    /** Check a sample of this many elements of a leaf larger than it; 0 checks every element. */
    int64_t max_elements;
    /** Seed of the sample (the graph's own random stream is not disturbed). */
    uint64_t seed;
} ad_gradcheck_opts;

/** What ad_gradcheck found. */
typedef struct {
    /** Largest |analytic - numeric| over the checked elements. */
    double max_abs_err;
    /** Largest |analytic - numeric| / max(|analytic|, |numeric|) (0 where both are 0). */
    double max_rel_err;
    /**
     * The leaf of the element furthest outside (or least inside) the tolerance,
     * among those not at a non-differentiable point; NULL if none.
     */
    const ad_node *worst_leaf;
    /** That element's flat (row-major) index in worst_leaf; -1 if none. */
    int64_t worst_index;
    /** Number of elements compared. */
    int64_t checked;
    /**
     * Elements outside the tolerance at (or within the step of) a point where
     * the loss is not differentiable (ad_smoothness_at): expected there, so
     * they do not fail the check.
     */
    int64_t nondifferentiable;
    /** Elements outside the tolerance at a smooth point: the check fails when nonzero. */
    int64_t failed;
} ad_gradcheck_result;

/**
 * Gradient check: compares d loss/d leaves[i] (the engine's gradient, from
 * one ad_grad_n construction that is discarded afterwards) with central
 * differences (ad_finite_difference) in every element, or in a seeded
 * sample of o->max_elements elements of a larger leaf. An element passes
 * when |analytic - numeric| <= atol + rtol·|numeric| (as PyTorch's
 * gradcheck). loss must have one element; leaves are leaf nodes of any kind
 * (trainable, input, constant). Every value the check perturbs, and every
 * node it replays, is bit-identical afterwards; leaf gradient buffers are
 * not touched; dropout masks are not redrawn. Where an op is not
 * differentiable (relu at 0, max ties, ...: the registry's rule, see
 * ad_smoothness_at) a mismatch is expected: it is counted in
 * r->nondifferentiable and does not fail the check. r (may be NULL) gets the
 * verdict's details. Returns 0 pass, 1 fail (a mismatch at a smooth point),
 * -1 error (graph's error set: NULL arguments, a
 * non-leaf, another graph, a multi-element loss, out of memory).
 */
AD_API int ad_gradcheck(ad_node *loss, int n, ad_node *const *leaves, const ad_gradcheck_opts *o,
                        ad_gradcheck_result *r);
/**
 * The library's one finite-difference estimator (ad_gradcheck, the traces
 * and the CLI use it): d loss/d x_i by central differences,
 * (L(x_i + h) - L(x_i - h)) / (2h) with h = eps·max(1, |x_i|) (eps <= 0:
 * 1e-6 in f64, 1e-3 in f32), divided by the step actually stored in the
 * graph's dtype. x is a leaf; index its flat element. Only the nodes
 * between x and loss that depend on x are recomputed, and every value is
 * bit-identical afterwards. NaN with the graph's error set on error.
 */
AD_API double ad_finite_difference(ad_node *loss, ad_node *x, int64_t index, double eps);
/**
 * Is loss, as a function of element index of leaf x, at or within the
 * finite-difference step of a point where it is not differentiable? The
 * values at x - h, x and x + h (h as ad_finite_difference takes it for eps)
 * are replayed and every elementwise node between x and loss asks its op's
 * registry rule (ad_op_smoothness) whether its inputs meet such a point.
 * Returns the worst found (AD_DISCONTINUITY over AD_KINK over AD_SMOOTH)
 * and, when where is not NULL, the first node of that kind in creation
 * order (NULL when smooth). Ops that are not elementwise (reductions,
 * matmul, pooling) are not classified. Every value is bit-identical
 * afterwards. -1 with the graph's error set on error (as
 * ad_finite_difference).
 */
AD_API int ad_smoothness_at(ad_node *loss, ad_node *x, int64_t index, double eps,
                            const ad_node **where);
/**
 * Anomaly mode (the checking mode): when on, the first op that produces NaN
 * or Inf (forward or backward) sets an error naming the op, the node and the
 * pass, and ad_graph_rewind keeps discarded nodes detectable (see
 * ad_graph_mark).
 */
AD_API void ad_graph_set_check_finite(ad_graph *g, int on);

/**
 * Threads used by the matrix products and by the library's parallel
 * kernels, process-wide. threads < 1 is ignored. The library splits a large
 * product into blocks of rows or columns over its own OpenMP threads and has
 * OpenBLAS and oneDNN compute each block on one thread (their own thread
 * counts are set to 1; without OpenMP, OpenBLAS gets `threads`). Results of
 * the library's own kernels do not depend on the thread count; products
 * from OpenBLAS or oneDNN may differ in the last bits for some shapes (those
 * libraries block the sums by the block's shape; see docs/benchmarks.md).
 * Until it is called the library starts no OpenMP team of its own: its
 * kernels run on the calling thread and f32 products go to OpenBLAS (with
 * OpenBLAS's own default thread count), not to oneDNN, whose idle OpenMP
 * threads spin and slow a busy machine down many times over.
 */
AD_API void ad_set_threads(int threads);
/**
 * The matrix-product backend this library was built with (meson option
 * -Dgemm): "openblas", "onednn", "onednn+openblas" (f32 products choose per
 * shape) or "builtin". A static string; do not free it.
 */
AD_API const char *ad_gemm_backend(void);

#ifdef __cplusplus
}
#endif
#endif
