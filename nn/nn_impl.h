/* nn_impl.h -- internals shared by the nn/ sources. Never installed. */
#ifndef CHAINRULE_NN_IMPL_H
#define CHAINRULE_NN_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "chainrule/checkpoint.h"
#include "chainrule/nn.h"
#include "support_impl.h"

#define NN_ERRLEN 512

/* errors.c: records the message as the sticky error of at's graph (the
 * functional layers' convention: check ad_graph_error once) and returns NULL. */
void *nn_graph_fail(const ad_node *at, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* layers.c: one LSTM step (nn_lstm_cell's equations) from the weights
 * already transposed, w_ih_t (I, 4H) and w_hh_t (H, 4H), and the sum of the
 * two biases b (4H) or NULL: a sequence layer transposes and adds them once
 * for all its steps. Operands are not checked: nn_lstm_operands_ok checks
 * them as nn_lstm_cell does (false with the graph's error set). */
ad_node *nn_lstm_step(ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih_t, ad_node *w_hh_t,
                      ad_node *b, ad_node **c_out);
bool nn_lstm_operands_ok(ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih, ad_node *w_hh,
                         ad_node *b_ih, ad_node *b_hh);

/* ------------------------------------------------------------------ model */

/* One layer of a model: its declaration (hyperparameters, enough to build
 * it again from the architecture in a model file) and, once applied, its
 * nodes. Sequential declarations (nn_model_add_*) and the layer functions
 * (nn_add_*) fill the same record. */
typedef struct {
    nn_layer_kind kind;
    int index;         /* number among layers of the same kind (names) */
    char name[32];     /* "conv2d0": prefix of its parameter names */
    int64_t units;     /* dense/perceptron/conv out; embedding dim; hidden; ff hidden */
    int64_t vocab;     /* embedding rows */
    int bias;          /* dense, conv: has a bias */
    nn_init init;      /* dense, perceptron */
    nn_activation act; /* activation, perceptron step, ff activation */
    double alpha;      /* activation parameter */
    double rate;       /* dropout, attention/ff/block dropout */
    double momentum;   /* batch norm */
    double eps;        /* batch norm, layer norm */
    int kernel[2], stride[2], padding[2], dilation[2], groups; /* conv, pool */
    int naxes;                /* layer norm: trailing axes normalized */
    int affine;               /* layer norm, batch norm */
    int heads, causal;        /* attention, transformer block */
    int batch_first;          /* recurrent: (B,T,F) instead of (T,B,F) */
    int64_t in, out;          /* widths of the last axis (info, summary) */
    int64_t unpooled_hw[2];   /* conv2d and its ReLU with a max pool fused into their node: the
                                 (H, W) their output has before the pooling (summary); else 0 */
    int first_param, nparams; /* its tensors in the model's parameter list */
    ad_node *input, *output;
    ad_node *state_out;    /* recurrent: last hidden state (B,H) */
    ad_node *state_cell;   /* LSTM: last cell state (B,H) */
    ad_node *bmean, *bvar; /* batch norm: batch statistics (C) */
    ad_node *rmean, *rvar; /* batch norm: running statistics (C), constants */
    ad_node *h0, *c0;      /* recurrent: initial states given to nn_add_* (or NULL) */
} nn_layer;

/* A named tensor of the model: a parameter (value and gradient in the flat
 * buffers) or a state tensor (running statistics, in the state buffer). */
typedef struct {
    char name[64];
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    int64_t numel, offset;
    ad_node *node;
} nn_param_entry;

struct nn_model {
    ad_dtype dtype;
    ad_alloc_fn alloc;
    void *ud;
    int64_t in_features, out_features;
    int64_t max_batch, batch;
    uint64_t seed;
    nn_rng rng; /* initialization draws, in creation order */

    nn_layer *layers;
    int nlayers, cap_layers;
    int kind_count[NN_LAYER_COUNT];
    nn_loss loss;

    bool graph_mode; /* nn_model_new: the caller builds the graph with nn_add_* */
    bool built, training, forwarded;
    ad_graph *g;
    ad_node *input, *target, *output, *loss_node, *train_flag;

    void *params, *grads, *state;
    int64_t nparams, nstate;
    nn_param_entry *pinfo, *sinfo;
    int npinfo, cap_pinfo, nsinfo, cap_sinfo;
    ad_node **batch_inputs; /* input leaves whose axis 0 is the batch */
    int nbatch_inputs, cap_batch_inputs;

    char err[NN_ERRLEN]; /* the model's error ("" when none) */
    ad_errcode errcode;  /* its code */
};

/* model.c: records code and the message on m (nothing for m NULL); returns -1. */
AD_PRINTF_LIKE(3, 4)
int nn_model_fail(nn_model *m, ad_errcode code, const char *fmt, ...);
/* The input leaf gets n rows of x (float with f32, else double), checked
 * against the model's features: copied, or with borrow read in place where x
 * has the model's dtype (ad_input_borrow) until nn_model_input_end_borrow,
 * which the caller must reach while x is alive. 0 or the model's error. */
int nn_model_input_rows(nn_model *m, const void *x, bool f32, int64_t n, int64_t cols, bool borrow,
                        const char *fn);
/* Ends a borrow of nn_model_input_rows (none: nothing); the input keeps the
 * rows it read. 0 or the model's error. */
int nn_model_input_end_borrow(nn_model *m, const char *fn);
void *nn_model_mem(nn_model *m, void *p, size_t osize, size_t nsize);
/* model.c: a layer record of kind (NULL with the model's error). */
nn_layer *nn_model_push_layer(nn_model *m, nn_layer_kind kind, const char *fn);
/* model.c: a parameter "<layer>.<suffix>" (or just suffix for l NULL) of the
 * given shape, drawn from init with fan_in/fan_out (NN_INIT_ZEROS: zeros;
 * fill >= 0 with init NN_INIT_COUNT: that constant). */
ad_node *nn_model_new_param(nn_model *m, nn_layer *l, const char *suffix, int ndim,
                            const int64_t *shape, nn_init init, int64_t fan_in, int64_t fan_out,
                            double fill);
/* model.c: a state tensor (a constant leaf moved into the state buffer). */
ad_node *nn_model_new_state(nn_model *m, nn_layer *l, const char *suffix, int ndim,
                            const int64_t *shape, double fill);
/* layers_model.c: applies the declared layer l to x; NULL with the graph's error. */
ad_node *nn_layer_apply(nn_model *m, nn_layer *l, ad_node *x);
/* The layer parameters that have a range (nn_layer_check). */
typedef enum {
    NN_PARAM_UNITS,
    NN_PARAM_VOCAB,
    NN_PARAM_KERNEL,
    NN_PARAM_STRIDE,
    NN_PARAM_PADDING,
    NN_PARAM_DILATION,
    NN_PARAM_GROUPS,
    NN_PARAM_HEADS,
    NN_PARAM_AXES,
    NN_PARAM_RATE,
    NN_PARAM_MOMENTUM,
    NN_PARAM_EPS,
    NN_PARAM_ALPHA,
    NN_PARAM_COUNT
} nn_layer_param;
/* layers_model.c: 0 when the fields of l are in range for its kind (sizes,
 * kernels, options, rates), else -1 with the reason in why ("units 0 is not
 * an integer in [1, 16777216]") and the parameter in *bad (NN_PARAM_COUNT
 * for a bad kind, initializer or activation; bad may be NULL). The one
 * range check of layer records: nn_layer_apply runs it on every layer
 * (nn_add_*, nn_model_add_*), the architecture reader and the --model
 * grammar (which points at the argument's column) before; the ranges live
 * in its table. */
int nn_layer_check(const nn_layer *l, char *why, size_t size, nn_layer_param *bad);
/* layers_model.c: the range of param as text ("an integer in [1, 4096]",
 * "a number in [0, 1)") into buf. */
const char *nn_layer_param_range(nn_layer_param param, char *buf, size_t size);
/* layers_model.c: whether v is in param's range. */
bool nn_layer_param_ok(nn_layer_param param, double v);
/* layers_model.c: a dense or convolution layer l and the ReLU activation
 * layer act after it as one fused node (ad_linear_relu, ad_conv2d_bias_relu),
 * with pool (NULL: none) the 2x2 max pool layer after act in it too
 * (ad_conv2d_bias_relu_pool); every record gets its output. */
ad_node *nn_layer_apply_with_relu(nn_model *m, nn_layer *l, nn_layer *act, nn_layer *pool,
                                  ad_node *x);
/* model.c: the initializer nn_mlp_new draws a dense layer's weights
 * from, by the activation after it (He uniform before ReLU-like ones, LeCun
 * normal before SELU, Glorot uniform otherwise). */
nn_init nn_init_for_activation(nn_activation act);
/* layers_model.c: applies layers [first, nlayers) one after the other to h
 * (a dense or convolution layer followed by a ReLU as one fused node, and a
 * conv2d, ReLU, 2x2 max pool as one, as nn_model_build
 * does, so a model rebuilt from a description computes bit for bit what
 * the original did); the output, or NULL with *failed (may be NULL) the
 * index of the layer that failed. */
ad_node *nn_layers_apply_chain(nn_model *m, int first, ad_node *h, int *failed);
/* layers_model.c: "dense", "conv2d", ... (names in files and summaries). */
const char *nn_layer_kind_name(nn_layer_kind kind);
int nn_layer_kind_from_name(const char *name);

/* train.c: -1 with the model's error unless opt is an optimizer of m. */
int nn_model_check_optimizer(nn_model *m, const nn_optimizer *opt, const char *fn);
/* train.c: nn_optimizer_step; its failure becomes the model's error (fn: ...). */
int nn_model_apply_step(nn_model *m, nn_optimizer *opt, const char *fn);
/* train.c: the backward pass and opt's step after a forward: one pass,
 * ad_backward_sgd, for a fused optimizer (nn_optim_config.fused), else
 * nn_model_backward then nn_model_apply_step. */
int nn_model_backward_step(nn_model *m, nn_optimizer *opt, const char *fn);
/* optim.c: 0, or -1 with o's error when o has counted the most steps it can (fn: ...). */
int nn_optimizer_can_step(const nn_optimizer *o, const char *fn);
/* optim.c: does o take its step inside the backward pass (nn_optim_config.fused)? */
bool nn_optimizer_fused(const nn_optimizer *o);
/* optim.c: records code and the message on o (not NULL, const or not); returns -1. */
AD_PRINTF_LIKE(3, 4)
int nn_optimizer_fail(const nn_optimizer *o, ad_errcode code, const char *fmt, ...);
/* model_files.c: a flag of the loaders, beside NN_MODEL_ALLOW_EXTRA: the
   tensors named "optimizer.*" (a training checkpoint's) are not the model's. */
#define NN_MODEL_ALLOW_OPTIMIZER (1u << 8)
/* model_files.c: writes m as a safetensors model file (its tensors and its
   architecture) with nextra more tensors and nmeta metadata entries. */
int nn_model_write_file(nn_model *m, const char *path, const io_array *extra, size_t nextra,
                        const io_ckpt_meta *meta, size_t nmeta, ad_error *err);
/* model_files.c: loads every tensor of m from an open checkpoint (checked
   first: names and shapes; flags as nn_model_load_safetensors). */
int nn_model_read_tensors(nn_model *m, const io_checkpoint *ck, const char *path, unsigned flags,
                          ad_error *err);

/* optim.c: the model an optimizer is bound to (NULL for a flat one). */
nn_model *nn_optimizer_model(const nn_optimizer *o);

/* fit.c: the rows [*begin, *begin + *count) of a batch of n that process
   rank of size trains on: nearly equal shards, the first n % size one row
   longer (nn_train_epoch, nn_dist_shard). */
void nn_shard_rows(int64_t n, int rank, int size, int64_t *begin, int64_t *count);

#endif
