/*
 * chainrule/nn.h -- neural networks built from autodiff nodes.
 *
 * A worked example: Géron's Fashion-MNIST MLP (784-300-100-10, ReLU,
 * softmax cross-entropy, SGD lr 0.01, batch 32).
 *
 *     int64_t widths[] = {784, 300, 100, 10};
 *     nn_activation acts[] = {NN_ACT_RELU, NN_ACT_RELU, NN_ACT_IDENTITY};
 *     ad_error err;
 *     nn_model *m = nn_mlp_new(AD_F32, 4, widths, acts, NN_LOSS_CROSS_ENTROPY, 32, 42, &err);
 *     if (!m) { fprintf(stderr, "%s\n", err.message); return 1; }
 *     nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);   // lr 0.01
 *     nn_optimizer *opt = nn_optimizer_new(m, &cfg, &err);
 *     for (each mini-batch (x, y) of n <= 32 rows) {          // x: n*784 floats, y: n ints
 *         if (nn_model_set_input_f32(m, x, n, 784) || nn_model_set_labels(m, y, n) ||
 *             nn_model_train_step(m, opt, &loss)) {
 *             fprintf(stderr, "%s\n", nn_model_error(m));
 *             break;
 *         }
 *     }
 *     nn_model_predict_classes_f32(m, test_x, n_test, 784, predicted);  // eval mode, argmax
 *     nn_optimizer_free(opt);
 *     nn_model_free(m);
 *
 * The one rule: nn/ never writes a derivative. Every activation, layer and
 * loss below is a composition of ad_* ops, so backpropagation is the
 * engine's general chain rule (ad_backward) and nothing else.
 *
 * Concepts
 * - Functional layer (nn_linear, nn_activate, nn_batch_norm, losses...): a
 *   function of nodes that returns a new node in the same graph. They work
 *   on any graph and follow the engine's convention: NULL operands give
 *   NULL (like the ad_* ops); a bad shape or argument returns NULL and
 *   records the message as the graph's sticky error (ad_graph_set_error),
 *   so a whole model can be built and ad_graph_error checked once.
 * - Model (nn_model): a sequential stack of layers. Layers are declared
 *   (nn_model_add_*), then nn_model_build creates one ad_graph, one flat
 *   parameter buffer, one flat gradient buffer and one flat state buffer
 *   (batch-norm running statistics), all in the model's dtype, and points
 *   every parameter node into them (ad_param_external). The graph has an
 *   input leaf (batch, features), a target leaf, the output node and the
 *   loss node. A training step (set input and targets, ad_forward,
 *   ad_zero_grad, ad_backward, optimizer step over the flat arrays)
 *   allocates nothing after the first step, also for a smaller last batch.
 * - Optimizers (nn_optimizer) are tight loops over flat arrays; their
 *   state (moments, step count) is one flat buffer too, and can be saved and
 *   restored so that a resumed run continues bit for bit.
 * - Errors follow the library's one convention (docs/errors.md): never an
 *   abort, 0 / -1 or a pointer / NULL, and the message on the object the
 *   call was about, never in a global: the graph's (ad_graph_error) for
 *   functional layers and losses, the model's (nn_model_error,
 *   nn_model_errcode) for nn_model_* calls, the optimizer's
 *   (nn_optimizer_error) for nn_optimizer_* calls, and the caller's
 *   ad_error *err for constructors that return NULL. A call given a NULL
 *   model or optimizer returns -1 (or NULL) and records nothing: that NULL
 *   is what a failed constructor returned, and its err said why.
 * - Shapes: a batch of examples is a (batch, features) matrix, row-major.
 *   Weights are (in, out) so that a dense layer is X W + b (equation 4 of
 *   the lecture, h = phi(XW + b)).
 */
#ifndef CHAINRULE_NN_H
#define CHAINRULE_NN_H

#include <stdint.h>
#include <stdio.h>

#include "autodiff.h"
#include "data.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------- random numbers */

/**
 * The documented generator used for initialization and shuffling:
 * xoshiro256** (Blackman & Vigna) seeded through splitmix64, the same
 * algorithm as the engine's ad_graph_seed. Integer outputs and uniform
 * doubles are identical on every machine for a given seed; normal draws use
 * the Box-Muller transform and therefore libm's log, sqrt and cos.
 */
typedef struct {
    uint64_t s[4]; /**< xoshiro256** state */
} nn_rng;

/** Seeds r: s[i] = splitmix64 outputs 1..4 of seed. */
AD_API void nn_rng_seed(nn_rng *r, uint64_t seed);
/** The next 64 random bits. */
AD_API uint64_t nn_rng_next(nn_rng *r);
/** Uniform in [0, 1): the top 53 bits of nn_rng_next times 2^-53. */
AD_API double nn_rng_uniform(nn_rng *r);
/**
 * Standard normal N(0, 1) by Box-Muller: u1, u2 = two uniforms,
 * sqrt(-2 ln(1 - u1)) cos(2 pi u2). Two uniforms per draw, no caching.
 */
AD_API double nn_rng_normal(nn_rng *r);
/**
 * Uniform integer in [0, n) without modulo bias: draws x = nn_rng_next until
 * x >= 2^64 mod n, returns x % n; 0 when n is 0. The library's one bounded
 * draw (io_data_rng_below is the same rule on the data generator's stream).
 */
AD_API uint64_t nn_rng_below(nn_rng *r, uint64_t n);
/**
 * Shuffles idx[0..n) in place: Fisher-Yates, for i = n-1 down to 1 swap
 * idx[i] and idx[nn_rng_below(r, i + 1)]. The library's one shuffle
 * (io_data_permutation is the same loop on the data generator's stream).
 * Does nothing for NULL r or idx, or n < 2.
 */
AD_API void nn_rng_shuffle(nn_rng *r, int64_t *idx, int64_t n);

/* ----------------------------------------------------------- initializers */

/**
 * Weight initializers. fan_in and fan_out are the layer's input and output
 * widths. Normal variants are plain (not truncated) normals.
 *   GLOROT (Xavier):  uniform limit sqrt(6 / (fan_in + fan_out)), normal std sqrt(2 / (fan_in +
 * fan_out)) HE (Kaiming):     uniform limit sqrt(6 / fan_in),             normal std sqrt(2 /
 * fan_in) LECUN:            uniform limit sqrt(3 / fan_in),             normal std sqrt(1 / fan_in)
 *   TORCH (nn.Linear's default): uniform limit 1 / sqrt(fan_in)
 */
typedef enum {
    NN_INIT_ZEROS,
    NN_INIT_GLOROT_UNIFORM,
    NN_INIT_GLOROT_NORMAL,
    NN_INIT_HE_UNIFORM,
    NN_INIT_HE_NORMAL,
    NN_INIT_LECUN_UNIFORM,
    NN_INIT_LECUN_NORMAL,
    NN_INIT_TORCH,
    NN_INIT_COUNT
} nn_init;

/** "zeros", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
 *  "lecun_uniform", "lecun_normal", "torch"; NULL for an unknown kind. */
AD_API const char *nn_init_name(nn_init kind);
/** The kind for a name (also "xavier_uniform", "xavier_normal",
 *  "kaiming_uniform", "kaiming_normal"), or -1. */
AD_API int nn_init_from_name(const char *name);
/**
 * Fills n values of dtype at out with draws of the initializer, in order
 * (a uniform draw is (2u - 1) limit, a normal draw std * nn_rng_normal).
 * Values are computed in double and rounded once to float for AD_F32, so a
 * seed gives the same f32 weights as the f64 ones, rounded.
 * Returns 0, or -1 with the reason in *err (may be NULL): out or rng NULL
 * with n > 0, an unknown kind, fan_in < 1 or fan_out < 1
 * ("nn_init_fill: fan_in 0 and fan_out 3 must be >= 1").
 */
AD_API int nn_init_fill(nn_init kind, nn_rng *rng, int64_t fan_in, int64_t fan_out, ad_dtype dtype,
                        void *out, int64_t n, ad_error *err);

/* ------------------------------------------------------------ activations */

/**
 * Activation functions phi, applied elementwise (softmax, log-softmax: along
 * the last axis). Each is one or two ad_* ops:
 *   IDENTITY      x
 *   STEP          heaviside: 0 if x < 0 else 1      (ad_step; zero gradient)
 *   SIGN          -1, 0, +1                          (ad_sign; zero gradient)
 *   STEP_ST       heaviside, straight-through: value of step(x), gradient as if identity
 *   SIGN_ST       sign, straight-through
 *   SIGMOID       1 / (1 + e^-x)
 *   TANH          tanh x
 *   RELU          max(0, x)
 *   LEAKY_RELU    x > 0 ? x : alpha x                (default alpha 0.01)
 *   ELU           x > 0 ? x : alpha (e^x - 1)        (default alpha 1)
 *   SELU          1.0507009873554805 * elu(x, 1.6732632423543772)
 *   SOFTPLUS      ln(1 + e^x), stable
 *   SOFTMAX       e^x_i / sum_j e^x_j, stable
 *   LOG_SOFTMAX   x_i - logsumexp(x), stable
 */
typedef enum {
    NN_ACT_IDENTITY,
    NN_ACT_STEP,
    NN_ACT_SIGN,
    NN_ACT_STEP_ST,
    NN_ACT_SIGN_ST,
    NN_ACT_SIGMOID,
    NN_ACT_TANH,
    NN_ACT_RELU,
    NN_ACT_LEAKY_RELU,
    NN_ACT_ELU,
    NN_ACT_SELU,
    NN_ACT_SOFTPLUS,
    NN_ACT_SOFTMAX,
    NN_ACT_LOG_SOFTMAX,
    NN_ACT_COUNT
} nn_activation;

#define NN_LEAKY_RELU_ALPHA 0.01
#define NN_ELU_ALPHA 1.0
#define NN_SELU_ALPHA 1.6732632423543772
#define NN_SELU_SCALE 1.0507009873554805

/** "identity", "step", "sign", "step_st", "sign_st", "sigmoid", "tanh",
 *  "relu", "leaky_relu", "elu", "selu", "softplus", "softmax",
 *  "log_softmax"; NULL for an unknown kind. */
AD_API const char *nn_activation_name(nn_activation act);
/** The kind for a name (also "linear", "none", "heaviside", "logistic"), or -1. */
AD_API int nn_activation_from_name(const char *name);
/** phi(x) with the default parameter (alpha). NULL for NULL x or an unknown kind. */
AD_API ad_node *nn_activate(ad_node *x, nn_activation act);
/** phi(x) with alpha for LEAKY_RELU and ELU (ignored by the others). */
AD_API ad_node *nn_activate_alpha(ad_node *x, nn_activation act, double alpha);
/**
 * The heaviside step of the lecture's TLU, 0 if z < 0 else 1. Its true
 * derivative is zero almost everywhere; with straight_through nonzero the
 * node takes step(z)'s value and passes the gradient through unchanged
 * (d step/dz taken as 1), which is what makes the perceptron rule come out
 * of backpropagation.
 */
AD_API ad_node *nn_step(ad_node *z, int straight_through);
/** sign(z) in {-1, 0, +1}, optionally straight-through (see nn_step). */
AD_API ad_node *nn_sign(ad_node *z, int straight_through);

/* ---------------------------------------------------- functional layers */

/**
 * Fully connected layer: x (batch, in) @ w (in, out) + b (out), b may be
 * NULL (no bias). NULL with the graph's error on mismatched widths
 * ("nn_linear: input (32,784) has 784 features but weight (300,100) expects 300").
 */
AD_API ad_node *nn_linear(ad_node *x, ad_node *w, ad_node *b);
/**
 * A layer of threshold logic units (lecture eq. 2 and 4): step(x w + b) with
 * step one of NN_ACT_STEP, NN_ACT_SIGN, NN_ACT_STEP_ST, NN_ACT_SIGN_ST.
 */
AD_API ad_node *nn_tlu(ad_node *x, ad_node *w, ad_node *b, nn_activation step);
/**
 * Inverted dropout: x * mask / (1 - rate) where mask keeps each element with
 * probability 1 - rate, drawn afresh on every forward (ad_dropout_mask, the
 * graph's generator). training is a 0-d node: where it is nonzero the mask
 * applies, where it is zero the output equals x. training NULL: always on.
 * rate must be in [0, 1); rate 0 returns x itself.
 */
AD_API ad_node *nn_dropout(ad_node *x, double rate, ad_node *training);
/**
 * Batch normalization over the batch axis of x (batch, features):
 *   training: y = (x - mean_b) / sqrt(var_b + eps) * gamma + beta
 *   eval:     y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta
 * where mean_b, var_b (biased) are the batch statistics, selected by the
 * 0-d training node (NULL: always training). gamma and beta (features) may
 * be NULL (no affine part). running_mean and running_var (features) are
 * read but not written (no gradient flows into them); the batch statistics
 * are returned in *batch_mean and *batch_var (either may be NULL) so the
 * caller can update the running averages. eps > 0.
 */
AD_API ad_node *nn_batch_norm(ad_node *x, ad_node *gamma, ad_node *beta, ad_node *running_mean,
                              ad_node *running_var, ad_node *training, double eps,
                              ad_node **batch_mean, ad_node **batch_var);

/*
 * Shape legend for the layers below: N or B batch, C channels, L length,
 * H x W image size, T time steps, I input features, E embedding width,
 * D = E / heads, F features, V vocabulary, K the normalized size.
 */
/**
 * Layer normalization over the last naxes axes of x (as torch.nn.LayerNorm
 * with normalized_shape = those axes): y = (x - mean) / sqrt(var + eps)
 * * gamma + beta, mean and biased var over the K normalized values of each
 * row. gamma and beta have the shape of the last naxes axes, or are NULL.
 */
AD_API ad_node *nn_layer_norm(ad_node *x, int naxes, ad_node *gamma, ad_node *beta, double eps);
/** x + fx: a residual connection (an ad_add, named for what it is). */
AD_API ad_node *nn_residual(ad_node *x, ad_node *fx);
/**
 * Embedding lookup: ids (any shape, integral values in [0, V)) picks rows
 * of table (V, E): the result is ids' shape + (E). An id out of range is an
 * error at forward time. Gradient: the picked rows accumulate (repeated ids
 * add up), as torch.nn.Embedding.
 */
AD_API ad_node *nn_embedding(ad_node *ids, ad_node *table);
/**
 * Elman RNN cell (torch.nn.RNNCell): h' = act(x W_ih^T + b_ih + h W_hh^T
 * + b_hh), act NN_ACT_TANH or NN_ACT_RELU. x (B, I), h (B, H) or NULL
 * (zeros), w_ih (H, I), w_hh (H, H), biases (H) or NULL. Returns h' (B, H).
 */
AD_API ad_node *nn_rnn_cell(ad_node *x, ad_node *h, ad_node *w_ih, ad_node *w_hh, ad_node *b_ih,
                            ad_node *b_hh, nn_activation act);
/**
 * LSTM cell (torch.nn.LSTMCell), gates in PyTorch's order i, f, g, o:
 * [i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh; i, f, o sigmoid, g tanh;
 * c' = f c + i g; h' = o tanh(c'). x (B, I); h, c (B, H) or NULL (zeros);
 * w_ih (4H, I), w_hh (4H, H), biases (4H) or NULL. Returns h' and stores
 * c' in *c_out (may be NULL).
 */
AD_API ad_node *nn_lstm_cell(ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih, ad_node *w_hh,
                             ad_node *b_ih, ad_node *b_hh, ad_node **c_out);
/**
 * GRU cell (torch.nn.GRUCell), gates in PyTorch's order r, z, n:
 * r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
 * n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h.
 * x (B, I), h (B, H) or NULL, w_ih (3H, I), w_hh (3H, H), biases (3H).
 */
AD_API ad_node *nn_gru_cell(ad_node *x, ad_node *h, ad_node *w_ih, ad_node *w_hh, ad_node *b_ih,
                            ad_node *b_hh);
/**
 * Multi-head self-attention (torch.nn.MultiheadAttention with
 * batch_first=True, query = key = value = x): x (B, T, E);
 * [q k v] = x in_w^T + in_b with in_w (3E, E), in_b (3E) or NULL; per head
 * softmax(q_h k_h^T / sqrt(D) + mask) v_h, (B, T, D), mask -inf above the
 * diagonal when causal; dropout on the attention weights while the 0-d
 * training node is nonzero (NULL: always); heads concatenated (B, T, E)
 * and projected by out_w (E, E), out_b (E) or NULL. Returns (B, T, E).
 */
AD_API ad_node *nn_attention(ad_node *x, int heads, ad_node *in_w, ad_node *in_b, ad_node *out_w,
                             ad_node *out_b, int causal, double dropout, ad_node *training);

/* ----------------------------------------------------------------- losses */

/**
 * Losses, each a one-element node (averaged over the batch):
 *   MSE            mean over all elements of (p - t)^2                   (PyTorch MSELoss)
 *   HALF_SSE       mean over rows of 1/2 sum_j (p_j - t_j)^2             (the
 * perceptron/Widrow-Hoff form) BCE_LOGITS     mean of softplus(z) - t z, t in [0, 1]
 * (BCEWithLogitsLoss) CROSS_ENTROPY  mean over rows of -log_softmax(z)[label]; target holds (batch)
 * class indices stored as integral values                     (CrossEntropyLoss) HINGE mean over
 * all elements of max(0, 1 - t s), t in {-1, +1} PERCEPTRON     mean over rows of sum_j (step(s_j)
 * - t_j) s_j with step not differentiated, t in {0, 1}: the perceptron criterion max(0, -(2t-1) s)
 * (zero at s = 0), whose gradient (step(s) - t) x is exactly Rosenblatt's rule. All are stable for
 * logits of any magnitude (1e4 included): they use log-softmax and softplus, never log(softmax) or
 * log(sigmoid). Targets have the prediction's shape (batch, out) except CROSS_ENTROPY.
 */
typedef enum {
    NN_LOSS_NONE,
    NN_LOSS_MSE,
    NN_LOSS_HALF_SSE,
    NN_LOSS_BCE_LOGITS,
    NN_LOSS_CROSS_ENTROPY,
    NN_LOSS_HINGE,
    NN_LOSS_PERCEPTRON,
    NN_LOSS_COUNT
} nn_loss;

/** "none", "mse", "half_sse", "bce_logits", "cross_entropy", "hinge",
 *  "perceptron"; NULL for an unknown kind. */
AD_API const char *nn_loss_name(nn_loss kind);
/** The kind for a name (also "bce", "ce", "xent"), or -1. */
AD_API int nn_loss_from_name(const char *name);
/** The loss node for pred and target; NULL (the graph's error) on a shape mismatch. */
AD_API ad_node *nn_loss_apply(nn_loss kind, ad_node *pred, ad_node *target);
/** MSE: mean((pred - target)^2) over all elements; same shapes. */
AD_API ad_node *nn_mse(ad_node *pred, ad_node *target);
/** 1/2 sum_j (pred_j - target_j)^2 averaged over rows; pred (batch, out). */
AD_API ad_node *nn_half_sse(ad_node *pred, ad_node *target);
/** mean(softplus(z) - t z): binary cross-entropy of sigmoid(z) against t in [0, 1]. */
AD_API ad_node *nn_bce_with_logits(ad_node *logits, ad_node *target);
/** logits (batch, classes), labels (batch) of class indices. An index outside
 *  [0, classes) is an error of the engine's one-hot op at forward time. */
AD_API ad_node *nn_cross_entropy(ad_node *logits, ad_node *labels);
/** mean(max(0, 1 - t s)) with t in {-1, +1}; same shapes. */
AD_API ad_node *nn_hinge(ad_node *scores, ad_node *target);
/** The perceptron criterion (see NN_LOSS_PERCEPTRON); scores (batch, out), t in {0, 1}. */
AD_API ad_node *nn_perceptron_criterion(ad_node *scores, ad_node *target);

/* ------------------------------------------------------------------ model */

typedef struct nn_model nn_model;

/** Kinds of sequential layers (for nn_model_layer_kind). */
typedef enum {
    NN_LAYER_DENSE,
    NN_LAYER_ACTIVATION,
    NN_LAYER_PERCEPTRON,
    NN_LAYER_DROPOUT,
    NN_LAYER_BATCH_NORM,
    NN_LAYER_CONV1D,
    NN_LAYER_CONV2D,
    NN_LAYER_MAX_POOL1D,
    NN_LAYER_MAX_POOL2D,
    NN_LAYER_AVG_POOL1D,
    NN_LAYER_AVG_POOL2D,
    NN_LAYER_GLOBAL_AVG_POOL,
    NN_LAYER_FLATTEN,
    NN_LAYER_EMBEDDING,
    NN_LAYER_LAYER_NORM,
    NN_LAYER_RNN,
    NN_LAYER_LSTM,
    NN_LAYER_GRU,
    NN_LAYER_ATTENTION,
    NN_LAYER_FEED_FORWARD,
    NN_LAYER_TRANSFORMER_BLOCK,
    NN_LAYER_COUNT
} nn_layer_kind;

/**
 * A new, empty sequential model whose examples have in_features values. Add
 * layers, optionally set a loss, then nn_model_build. Free with
 * nn_model_free. NULL with the reason in *err (may be NULL) for
 * in_features < 1 (AD_EINVAL), a bad dtype or no memory (AD_ENOMEM).
 */
AD_API nn_model *nn_model_new_sequential(ad_dtype dtype, int64_t in_features, ad_error *err);
/** The same, taking all memory (graph included) from alloc(ud, ...). */
AD_API nn_model *nn_model_new_sequential_with(ad_dtype dtype, int64_t in_features,
                                              ad_alloc_fn alloc, void *ud, ad_error *err);
/** Frees the model, its graph and its buffers. Accepts NULL. */
AD_API void nn_model_free(nn_model *m);
/**
 * The message of the model's most recent failure, else the graph's sticky
 * error, else NULL. For m NULL: "nn: model is NULL". Owned by the model.
 */
AD_API const char *nn_model_error(const nn_model *m);
/**
 * The code of that failure (docs/errors.md): AD_EINVAL (a bad argument),
 * AD_EMISMATCH (widths, rows or shapes that do not fit), AD_ESTATE (not
 * built, already built), AD_EGRAPH (the graph's error), AD_ENOMEM, the
 * readers' codes for model files; AD_OK when there is no error.
 */
AD_API ad_errcode nn_model_errcode(const nn_model *m);
/** Forgets the model's message and the graph's sticky error. */
AD_API void nn_model_clear_error(nn_model *m);

/*
 * Declaring layers (before nn_model_build). Each returns 0, or -1 with the
 * message in nn_model_error (nothing for m NULL): AD_ESTATE (already
 * built), AD_EINVAL (units < 1: "nn_model_add_dense: zero-width layer
 * (units 0)", a bad kind or rate), AD_ENOMEM.
 */
/** A dense layer x W + b (W: (in, units), b: (units), b omitted when bias is 0),
 *  weights drawn from init, biases zero. Parameters "denseK.weight", "denseK.bias". */
AD_API int nn_model_add_dense(nn_model *m, int64_t units, int bias, nn_init init);
/** An activation (default alpha). */
AD_API int nn_model_add_activation(nn_model *m, nn_activation act);
/** An activation with alpha (LEAKY_RELU, ELU). */
AD_API int nn_model_add_activation_alpha(nn_model *m, nn_activation act, double alpha);
/** A perceptron: units TLUs, step(x W + b) with zero-initialized W and b and
 *  step one of the four step activations. Parameters "perceptronK.weight", ".bias". */
AD_API int nn_model_add_perceptron(nn_model *m, int64_t units, nn_activation step);
/** Inverted dropout with drop probability rate in [0, 1), active in training mode only. */
AD_API int nn_model_add_dropout(nn_model *m, double rate);
/**
 * Batch normalization of the current width with learnable gamma (ones) and
 * beta (zeros), parameters "batchnormK.gamma", ".beta", and running
 * statistics in the state buffer ("batchnormK.running_mean" zeros,
 * ".running_var" ones). After every forward in training mode:
 * running = (1 - momentum) running + momentum batch_stat, with the unbiased
 * batch variance (PyTorch's convention; momentum 0.1, eps 1e-5 there).
 */
AD_API int nn_model_add_batch_norm(nn_model *m, double momentum, double eps);
/** The loss the model trains on (default NN_LOSS_NONE: no target, no loss node). */
AD_API int nn_model_set_loss(nn_model *m, nn_loss loss);
/**
 * Creates the graph for mini-batches of batch rows and the flat buffers,
 * and initializes the weights from seed (one nn_rng, weight matrices drawn
 * layer by layer in declaration order; biases start at zero). The same seed also
 * seeds the graph's generator (dropout masks). Starts in training mode.
 * Errors (-1, nn_model_error): AD_ESTATE (no layers, already built),
 * AD_EINVAL (batch < 1), AD_EMISMATCH (the loss does not fit the output
 * width, e.g. cross-entropy on one output), AD_EGRAPH, AD_ENOMEM.
 */
AD_API int nn_model_build(nn_model *m, int64_t batch, uint64_t seed);

/**
 * A built multi-layer perceptron y = phi_L(W_L ... phi_1(W_1 x + b_1) + b_L):
 * widths[0] inputs, then nwidths - 1 dense layers of widths[1..] units, each
 * followed by acts[i] (nwidths - 1 entries; NN_ACT_IDENTITY adds nothing).
 * Weights: He uniform before ReLU-like activations (relu, leaky_relu, elu),
 * LeCun normal before SELU, Glorot uniform otherwise. NULL with the reason
 * in *err (may be NULL) on a zero width, fewer than 2 widths or another
 * build error ("nn_mlp_new: zero-width layer (widths[2] = 0)").
 */
AD_API nn_model *nn_mlp_new(ad_dtype dtype, int nwidths, const int64_t *widths,
                            const nn_activation *acts, nn_loss loss, int64_t batch, uint64_t seed,
                            ad_error *err);

/* ------------------------------------------------- models that are any graph */

/*
 * A model is any graph whose parameters are collected by name into the flat
 * parameter, gradient and optimizer buffers. Build one from nodes:
 *
 *     ad_error err;
 *     nn_model *m = nn_model_new(AD_F32, 42, &err);          // NULL: err.message
 *     int64_t xs[4] = {32, 1, 28, 28};
 *     ad_node *x = nn_model_add_input(m, 4, xs, "x");        // axis 0 is the batch
 *     ad_node *h = nn_add_flatten(m, x);                     // (32, 784)
 *     h = nn_add_activation(m, nn_add_dense(m, h, 128, 1), NN_ACT_RELU, 0);
 *     ad_node *logits = nn_add_dense(m, h, 10, 1);
 *     nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY);           // or nn_model_set_loss_node
 *     if (nn_model_finish(m, logits)) puts(nn_model_error(m));
 *
 * then train it like any model (nn_model_set_input, nn_model_set_labels or
 * nn_model_set_targets, nn_model_train_step, nn_model_predict, save/load).
 * The layer functions nn_add_* create their parameters once, in the
 * model's graph, named "<layer><k>.<tensor>" ("conv2d0.weight"), drawn as
 * PyTorch initializes them, and return the output node; between them any
 * ad_* op may be used. Errors of a layer function are the graph's sticky
 * error (and the model's): build everything, check once.
 * A model built only from nn_add_* layers chained one after the other
 * (each layer's input is the previous one's output) stores its
 * architecture in its model file, so nn_model_load rebuilds it with no code.
 */

/**
 * A new model to be built from nodes: a graph (memory reuse on, the
 * generator seeded with seed), the 0-d training flag and the
 * initialization generator (nn_rng seeded with seed, draws in the order
 * parameters are created). NULL with *err filled (err may be NULL) for a bad
 * dtype or no memory.
 */
AD_API nn_model *nn_model_new(ad_dtype dtype, uint64_t seed, ad_error *err);
/** The same, taking all memory from alloc(ud, ...). */
AD_API nn_model *nn_model_new_with(ad_dtype dtype, uint64_t seed, ad_alloc_fn alloc, void *ud,
                                   ad_error *err);
/**
 * An input leaf of the model (ad_input). Axis 0 is the batch: shape[0] is
 * the build batch (the largest that allocates nothing). The first input is
 * the model's input (nn_model_set_input fills it with rows of
 * numel / batch values); later inputs (targets, masks) are resized with it.
 * NULL with the model's error after nn_model_finish or for a bad shape.
 */
AD_API ad_node *nn_model_add_input(nn_model *m, int ndim, const int64_t *shape, const char *name);
/**
 * A trainable parameter of any shape named name (unique), drawn from init
 * with fan_in and fan_out (nn_init_fill), collected into the flat buffers
 * by nn_model_finish. For custom layers written with ad_* ops.
 */
AD_API ad_node *nn_model_add_param(nn_model *m, const char *name, int ndim, const int64_t *shape,
                                   nn_init init, int64_t fan_in, int64_t fan_out);
/**
 * Ends the building of a nn_model_new model: output (axis 0 the batch) is
 * the model's output; with a built-in loss (nn_model_set_loss) the target
 * leaf and the loss node are made (cross-entropy: targets are the class
 * indices, output's shape without its last axis). Every parameter and
 * state tensor moves into the flat buffers (ad_leaf_move). 0 or -1
 * (AD_EGRAPH with the graph's first error when a layer failed).
 */
AD_API int nn_model_finish(nn_model *m, ad_node *output);
/**
 * Makes any one-element node the model's loss (a custom loss built from
 * ad_* ops on nn_model_output and target): training steps, clipping,
 * schedules and evaluation use it as they use a built-in loss. target is
 * the input leaf nn_model_set_targets fills (axis 0 the batch), or NULL.
 * Works before or after nn_model_finish, also on nn_model_build and
 * nn_mlp_new models; input leaves made by hand (ad_input with the
 * batch as axis 0) are resized with the batch. 0 or -1 (nn_model_error).
 */
AD_API int nn_model_set_loss_node(nn_model *m, ad_node *loss, ad_node *target);

/** The metadata key of a model file that holds its architecture (JSON). */
#define NN_ARCH_KEY "chainrule.architecture"
/**
 * Nonzero when m can be rebuilt from a description: it is finished and is
 * a chain of the library's layers (nn_add_* or nn_model_add_*), each
 * taking the previous one's output, from the model's input to its output,
 * with no initial recurrent states, parameters of its own or custom loss.
 */
AD_API int nn_model_has_architecture(const nn_model *m);
/**
 * The architecture of m as JSON ({"format": 1, "dtype", "seed", "input"
 * (shape with the build batch), "loss", "layers": [{"kind", "units",
 * "kernel", ...}]}), or NULL when m has none (nn_model_has_architecture) or
 * out of memory. The caller frees it with free(). nn_model_save_safetensors
 * stores it in the file's metadata under NN_ARCH_KEY.
 */
AD_API char *nn_model_architecture(const nn_model *m);
/**
 * A finished model rebuilt from a description made by nn_model_architecture
 * (parameters initialized from its seed), with batch rows per build batch
 * (<= 0: the batch it was saved with). NULL with *err filled (AD_EFORMAT)
 * for text that is not such a description.
 */
AD_API nn_model *nn_model_from_architecture(const char *json, int64_t batch, ad_error *err);
/** The same, taking all memory of the model from alloc(ud, ...) (as nn_model_new_with). */
AD_API nn_model *nn_model_from_architecture_with(const char *json, int64_t batch, ad_alloc_fn alloc,
                                                 void *ud, ad_error *err);
/**
 * Loads a model file written by nn_model_save_safetensors for a model with
 * an architecture: rebuilds the model (nn_model_from_architecture) and
 * loads every parameter and state tensor by name, with no code describing
 * the model. NULL with *err: AD_EIO (cannot read), AD_EUNSUPPORTED (the file
 * has no architecture: build the model, then nn_model_load_safetensors),
 * AD_EFORMAT, AD_EMISMATCH (tensors that do not fit).
 */
AD_API nn_model *nn_model_load(const char *path, int64_t batch, ad_error *err);
/** The same, taking all memory of the model and of reading the file from alloc(ud, ...). */
AD_API nn_model *nn_model_load_with(const char *path, int64_t batch, ad_alloc_fn alloc, void *ud,
                                    ad_error *err);

/* ------------------------------------------------------ models from a list */

/** What nn_model_from_spec builds for: the data and the run. */
typedef struct nn_spec_options {
    ad_dtype dtype;    /**< AD_F32 or AD_F64 */
    int ndim;          /**< axes of one example: 1 (features), 2 (channels, length) or 3 */
    int64_t shape[3];  /**< one example: (F), (C, L) or an image (C, H, W), e.g. (1, 28, 28) */
    int64_t outputs;   /**< the width the presets end with: the number of classes */
    nn_loss loss;      /**< the loss (NN_LOSS_CROSS_ENTROPY for a classifier) */
    int64_t batch;     /**< the build batch, in [1, 2^20] */
    uint64_t seed;     /**< initial weights (in layer order) and the graph's generator */
    ad_alloc_fn alloc; /**< all of the model's memory (NULL: malloc), as nn_model_new_with */
    void *alloc_ud;    /**< alloc's user data */
} nn_spec_options;

/**
 * A finished model built from a layer list, the grammar of `chainrule train
 * --model` (docs/training.md "Models"): a preset name, "mlp" (dense(300),
 * relu, dense(100), relu, dense(outputs), as nn_mlp_new draws them) or
 * "cnn" (conv2d(32,3,pad=1),relu,maxpool2d(2),conv2d(64,3,pad=1),relu,
 * maxpool2d(2),flatten,dense(128),relu,dropout(0.25),dense(outputs)), or
 * layers separated by commas, each a name with optional arguments in
 * parentheses, positional first, then key=value:
 *   dense(units, bias=true, init=torch), conv1d/conv2d(channels, kernel,
 *   stride=1, pad=0, dilation=1, groups=1, bias=true), maxpool1d/2d and
 *   avgpool1d/2d(kernel, stride=kernel, pad=0), flatten, globalavgpool,
 *   dropout(rate), batchnorm(momentum=0.1, eps=1e-5), layernorm(eps=1e-5,
 *   axes=1, affine=true), an activation by name (relu, tanh,
 *   leaky_relu(0.01), elu(1), ...), rnn(hidden, act=tanh), lstm(hidden),
 *   gru(hidden), attention(heads, causal=false, rate=0), feedforward(hidden,
 *   act=relu, rate=0), transformer(heads, ff, causal=false, rate=0),
 *   embedding(vocab, dim). 2-d kernels, strides, pads and dilations are
 *   one number or a pair "3x5".
 * Parameters are drawn as PyTorch draws them (nn_add_*). The first layer
 * that depends on it decides the input's shape: 2-d convolution and pooling
 * read (N, C, H, W), 1-d ones (N, C, H W), recurrent and attention layers
 * (N, H, C W) (an image's rows are the steps), dense layers (N, C H W).
 * The model carries its architecture (nn_model_save_safetensors,
 * nn_model_load). NULL with *err (AD_EINVAL, AD_ENOMEM; err may be NULL)
 * naming the column ("nn_model_from_spec: column 12: unknown layer
 * 'conv3d' ...", or a layer whose shapes do not fit: "column 35: maxpool2d
 * (input (32,64,1,1)): ..."); *column (may be NULL) receives that 1-based
 * column, or 0 when the error has none (a preset, bad options).
 */
AD_API nn_model *nn_model_from_spec(const char *spec, const nn_spec_options *o, ad_error *err,
                                    int *column);
/**
 * Checks the grammar of a layer list (or a preset name) without building
 * anything: what nn_model_from_spec would say about the text itself (the
 * shapes need the data). 0, or -1 with *err and *column as there.
 */
AD_API int nn_spec_check(const char *spec, ad_error *err, int *column);
/**
 * Writes the layer list of a model with an architecture (nn_model_has_architecture)
 * into buf (size bytes), in the grammar of nn_model_from_spec with default
 * arguments left out, so that parsing it builds the same model. 0, or -1
 * (no architecture, a layer kind the grammar lacks, or buf too small: buf
 * is then "").
 */
AD_API int nn_model_spec(const nn_model *m, char *buf, size_t size);
/**
 * The layer list of nn_mlp_new's perceptron: nhidden dense layers of
 * hidden[i] units each followed by act (none for NN_ACT_IDENTITY), then
 * dense(outputs), with nn_mlp_new's initializers named (init=he_uniform
 * before ReLU, ...), so nn_model_from_spec draws the same weights. 0, or -1
 * (bad arguments, buf too small).
 */
AD_API int nn_mlp_spec(int nhidden, const int64_t *hidden, nn_activation act, int64_t outputs,
                       char *buf, size_t size);

/* Layers of a nn_model_new model. Each returns its output node, or NULL
 * (the message in ad_graph_error and nn_model_error). */
/** Dense layer on the last axis: x (..., I) -> (..., units); weight (I,
 *  units), bias (units); both uniform in +-1/sqrt(I) (nn.Linear). */
AD_API ad_node *nn_add_dense(nn_model *m, ad_node *x, int64_t units, int bias);
/** An activation (alpha for leaky ReLU and ELU; pass 0 for the others). */
AD_API ad_node *nn_add_activation(nn_model *m, ad_node *x, nn_activation act, double alpha);
/** Inverted dropout with drop probability rate, active in training mode only. */
AD_API ad_node *nn_add_dropout(nn_model *m, ad_node *x, double rate);
/**
 * Batch normalization of x (N, F) or (N, C, ...) over every axis but 1
 * (nn.BatchNorm1d/2d): gamma ones, beta zeros ("gamma", "beta"), running
 * statistics "running_mean" zeros and "running_var" ones in the state
 * buffer, updated after each training forward with momentum and the
 * unbiased variance (PyTorch: momentum 0.1, eps 1e-5).
 */
AD_API ad_node *nn_add_batch_norm(nn_model *m, ad_node *x, double momentum, double eps);
/** Layer normalization over the last naxes axes (nn.LayerNorm: "weight"
 *  ones, "bias" zeros when affine; PyTorch's eps 1e-5). */
AD_API ad_node *nn_add_layer_norm(nn_model *m, ad_node *x, int naxes, double eps, int affine);
/**
 * Convolution layers (nn.Conv1d / nn.Conv2d): x (N, C, L) -> (N, O, Lout)
 * and x (N, C, H, W) -> (N, O, OH, OW) through ad_conv1d / ad_conv2d with
 * the options o (stride, padding, dilation, groups; NULL: defaults).
 * "weight" (O, C/groups, K) or (O, C/groups, KH, KW) and "bias" (O) when
 * bias is nonzero, both uniform in +-1/sqrt(C/groups * K...) (PyTorch's
 * default kaiming_uniform(a = sqrt(5))).
 */
AD_API ad_node *nn_add_conv1d(nn_model *m, ad_node *x, int64_t out_channels, int kernel,
                              const ad_conv_opts *o, int bias);
/** 2-d convolution layer (see nn_add_conv1d), kernel kh x kw. */
AD_API ad_node *nn_add_conv2d(nn_model *m, ad_node *x, int64_t out_channels, int kh, int kw,
                              const ad_conv_opts *o, int bias);
/** Max pooling (ad_max_pool1d): x (N, C, L) -> (N, C, Lout); o required. */
AD_API ad_node *nn_add_max_pool1d(nn_model *m, ad_node *x, const ad_pool_opts *o);
/** Max pooling (ad_max_pool2d): x (N, C, H, W) -> (N, C, OH, OW); o required. */
AD_API ad_node *nn_add_max_pool2d(nn_model *m, ad_node *x, const ad_pool_opts *o);
/** Average pooling (ad_avg_pool1d, padded zeros counted); o required. */
AD_API ad_node *nn_add_avg_pool1d(nn_model *m, ad_node *x, const ad_pool_opts *o);
/** Average pooling (ad_avg_pool2d, padded zeros counted); o required. */
AD_API ad_node *nn_add_avg_pool2d(nn_model *m, ad_node *x, const ad_pool_opts *o);
/** (N, ...) -> (N, product of the rest). */
AD_API ad_node *nn_add_flatten(nn_model *m, ad_node *x);
/** Global average pooling: x (N, C, ...) -> (N, C), the mean over the spatial axes. */
AD_API ad_node *nn_add_global_avg_pool(nn_model *m, ad_node *x);
/** Embedding: ids (any shape, e.g. (B, T)) -> ids' shape + (dim); table
 *  "weight" (vocab, dim) drawn from N(0, 1) (nn.Embedding). */
AD_API ad_node *nn_add_embedding(nn_model *m, ad_node *ids, int64_t vocab, int64_t dim);
/**
 * Recurrent sequence layers: the cell unrolled over the T steps of x,
 * (T, B, I) time-major, or (B, T, I) when batch_first. h0 (and c0 for the
 * LSTM) is the initial state (B, H), NULL for zeros. Returns every step's
 * output, (T, B, H) or (B, T, H); *h_last (and *c_last) receive the last
 * state (B, H) (either may be NULL); at most 512 steps. Parameters in PyTorch's layout and
 * names (without the _l0 suffix): "weight_ih" (G H, I), "weight_hh"
 * (G H, H), "bias_ih", "bias_hh" (G H), G = 1 (RNN), 4 (LSTM, gates i f g
 * o), 3 (GRU, gates r z n), all uniform in +-1/sqrt(H). act: NN_ACT_TANH
 * or NN_ACT_RELU (RNN only).
 */
AD_API ad_node *nn_add_rnn(nn_model *m, ad_node *x, int64_t hidden, nn_activation act,
                           int batch_first, ad_node *h0, ad_node **h_last);
/** LSTM sequence layer (see nn_add_rnn). */
AD_API ad_node *nn_add_lstm(nn_model *m, ad_node *x, int64_t hidden, int batch_first, ad_node *h0,
                            ad_node *c0, ad_node **h_last, ad_node **c_last);
/** GRU sequence layer (see nn_add_rnn). */
AD_API ad_node *nn_add_gru(nn_model *m, ad_node *x, int64_t hidden, int batch_first, ad_node *h0,
                           ad_node **h_last);
/**
 * Multi-head self-attention on x (B, T, E) (nn_attention): "in_proj_weight"
 * (3E, E) Xavier uniform, "in_proj_bias" zeros, "out_proj.weight" (E, E)
 * as nn.Linear, "out_proj.bias" zeros (nn.MultiheadAttention). Dropout on
 * the attention weights in training mode.
 */
AD_API ad_node *nn_add_attention(nn_model *m, ad_node *x, int heads, int causal, double dropout);
/** The transformer feed-forward block on the last axis: linear2(dropout(act(linear1(x)))),
 *  E -> hidden -> E, parameters "linear1.weight" (E, hidden) ... as nn_add_dense. */
AD_API ad_node *nn_add_feed_forward(nn_model *m, ad_node *x, int64_t hidden, nn_activation act,
                                    double dropout);
/**
 * Pre-norm transformer block on x (B, T, E) (nn.TransformerEncoderLayer
 * with norm_first=True, ReLU): h = x + dropout(attn(ln1(x))),
 * y = h + dropout(ff(ln2(h))); layer norms eps 1e-5. Parameters
 * "transformerK.ln1.weight", ".attn.in_proj_weight", ".ff.linear1.weight", ...
 */
AD_API ad_node *nn_add_transformer_block(nn_model *m, ad_node *x, int heads, int64_t ff_hidden,
                                         int causal, double dropout);

/* Introspection (valid after build; NULL / 0 / -1 before or for NULL m). */
/** The model's graph (owned by the model: do not free). Nodes may be added
 *  to it (a custom metric, a dump); ad_forward replays them too. */
AD_API ad_graph *nn_model_graph(const nn_model *m);
/** The input leaf (batch, in_features). */
AD_API ad_node *nn_model_input(const nn_model *m);
/** The target leaf: (batch) class indices for cross-entropy, else (batch, out). NULL without a
 * loss. */
AD_API ad_node *nn_model_target(const nn_model *m);
/** The output node (batch, out_features), before any loss. */
AD_API ad_node *nn_model_output(const nn_model *m);
/** The one-element loss node, NULL without a loss. */
AD_API ad_node *nn_model_loss_node(const nn_model *m);
/** The 0-d leaf holding 1 in training mode and 0 in eval mode. */
AD_API ad_node *nn_model_training_node(const nn_model *m);
/** Element type of the graph and of the flat buffers. */
AD_API ad_dtype nn_model_dtype(const nn_model *m);
/** The loss given to nn_model_set_loss. */
AD_API nn_loss nn_model_loss_kind(const nn_model *m);
/** Features per example (the input width). */
AD_API int64_t nn_model_in_features(const nn_model *m);
/** Width of the output (-1 before build). */
AD_API int64_t nn_model_out_features(const nn_model *m);
/** The batch given to nn_model_build (the largest batch that allocates nothing). */
AD_API int64_t nn_model_max_batch(const nn_model *m);
/** Rows of the current batch (after the latest nn_model_set_input). */
AD_API int64_t nn_model_batch(const nn_model *m);
/** Number of declared layers (an identity activation of nn_mlp_new adds none). */
AD_API int nn_model_layer_count(const nn_model *m);
/** The nn_layer_kind of layer i, or -1. */
AD_API int nn_model_layer_kind(const nn_model *m, int i);
/** Everything declared about one layer (for checkpoints and summaries). */
typedef struct {
    nn_layer_kind kind; /**< the layer's kind */
    int64_t in;         /**< width of the input's last axis (0 before build/finish) */
    int64_t out;        /**< width of the output's last axis (0 before build/finish) */
    int64_t units; /**< outputs (dense, perceptron), channels (conv), width (embedding), hidden size
                      (recurrent, feed-forward, transformer) */
    int bias;      /**< dense: has a bias (perceptron: always) */
    nn_init init;  /**< dense, perceptron (NN_INIT_ZEROS) */
    nn_activation act; /**< activation; the perceptron's step */
    double alpha;      /**< activation parameter (leaky ReLU, ELU) */
    double rate;       /**< dropout */
    double momentum;   /**< batch norm: running-statistics momentum */
    double eps;        /**< batch norm, layer norm: added to the variance */
    int64_t vocab;     /**< embedding: rows of the table (units: its width) */
    int kernel[2];     /**< conv, pooling: window ([1] for 2-d) */
    int stride[2];     /**< conv, pooling (0: default) */
    int padding[2];    /**< conv, pooling */
    int dilation[2];   /**< conv (0: 1) */
    int groups;        /**< conv (0: 1) */
    int naxes;         /**< layer norm: normalized trailing axes */
    int affine;        /**< layer norm, batch norm: learnable scale and shift */
    int heads;         /**< attention, transformer block */
    int causal;        /**< attention, transformer block: causal mask */
    int batch_first;   /**< recurrent: (B, T, I) instead of (T, B, I) */
    const char *name;  /**< "conv2d0": the prefix of its parameter names, owned by the model */
} nn_layer_info;
/** Describes layer i in [0, nn_model_layer_count). 0 or -1 (i out of range, out NULL). */
AD_API int nn_model_layer_info(const nn_model *m, int i, nn_layer_info *out);
/** Prints one line per layer (kind, widths, parameters) and the totals. 0 or -1 (nn_model_error).
 */
AD_API int nn_model_print_summary(const nn_model *m, FILE *out);

/* --------------------------------------------------- parameters, buffers */

/** One parameter (or state) tensor, a view into the model (do not free anything). */
typedef struct {
    const char *name;           /**< "dense0.weight", owned by the model */
    int ndim;                   /**< 0 to AD_MAX_DIMS axes */
    int64_t shape[AD_MAX_DIMS]; /**< e.g. (in, out) for dense weights, (O, C, KH, KW) for conv */
    int64_t numel;              /**< elements */
    int64_t offset;             /**< first element in the flat parameter and gradient buffers */
    ad_node *node; /**< the graph's leaf (value and gradient point into the flat buffers) */
} nn_param_info;

/** Number of parameter tensors. */
AD_API int nn_model_param_tensors(const nn_model *m);
/** Total number of trainable scalars (the length of the flat buffers). */
AD_API int64_t nn_model_param_count(const nn_model *m);
/** Describes tensor i in [0, nn_model_param_tensors). 0 or -1 (i out of range, out NULL). */
AD_API int nn_model_param_info(const nn_model *m, int i, nn_param_info *out);
/** The index of the tensor with that name, or -1. */
AD_API int nn_model_param_find(const nn_model *m, const char *name);
/**
 * The flat parameter buffer: nn_model_param_count elements of the model's
 * dtype (float or double), owned by the model, stable for its lifetime.
 * Writing into it changes the weights (run a forward before reading outputs).
 */
AD_API void *nn_model_params(nn_model *m);
/** The flat gradient buffer, same layout: d loss / d params after a backward.
 *  Safe to modify in place between backward and the optimizer step (e.g. an
 *  MPI allreduce averaging it across ranks). */
AD_API void *nn_model_grads(nn_model *m);
/** Number of state tensors (batch-norm running means and variances). */
AD_API int nn_model_state_tensors(const nn_model *m);
/** Describes state tensor i ("batchnorm0.running_mean", its shape and its
 *  offset in the state buffer). 0 or -1 (i out of range, out NULL). */
AD_API int nn_model_state_info(const nn_model *m, int i, nn_param_info *out);
/** Number of non-trainable state values (batch-norm running means and
 *  variances: for each batch-norm layer, F means then F variances). */
AD_API int64_t nn_model_state_count(const nn_model *m);
/** The state buffer (dtype elements, owned by the model); save it in checkpoints. */
AD_API void *nn_model_state(nn_model *m);
/** Copies count doubles into the parameters / out of them (converting). 0 or -1 (AD_EMISMATCH). */
AD_API int nn_model_set_params(nn_model *m, const double *values, int64_t count);
/** Copies the count (= nn_model_param_count) parameters out as doubles. */
AD_API int nn_model_get_params(const nn_model *m, double *out, int64_t count);
/** Copies the count gradients out as doubles. */
AD_API int nn_model_get_grads(const nn_model *m, double *out, int64_t count);

/* ---------------------------------------------------------- mode, passes */

/** Training mode (on nonzero: dropout active, batch norm on batch statistics
 *  and updating running ones) or evaluation mode. 0 or -1 (nn_model_error). */
AD_API int nn_model_set_training(nn_model *m, int on);
/** Nonzero in training mode (the mode after nn_model_build). */
AD_API int nn_model_is_training(const nn_model *m);
/**
 * Sets the input to n rows of cols values (n * cols numbers, row-major);
 * cols must equal the model's in_features (AD_EMISMATCH otherwise: "rows
 * have 780 features but the model expects 784"). When n differs from the
 * current batch the input and target leaves are resized to n rows (targets
 * become zero: set the input first). n above nn_model_max_batch works but
 * allocates. Errors: AD_EINVAL (n < 1, x NULL), AD_ESTATE (not built).
 */
AD_API int nn_model_set_input(nn_model *m, const double *x, int64_t n, int64_t cols);
/** The same from float data (Fashion-MNIST pixels, io_batch.x). */
AD_API int nn_model_set_input_f32(nn_model *m, const float *x, int64_t n, int64_t cols);
/**
 * Sets the targets of the current n rows: for cross-entropy n class indices
 * (cols 1), otherwise n * cols values with cols equal to out_features.
 * AD_EMISMATCH when n is not the current batch ("targets have 20 rows but
 * the input has 16") or cols does not match, AD_EINVAL for a class index
 * out of range or not integral, AD_ESTATE without a loss.
 */
AD_API int nn_model_set_targets(nn_model *m, const double *y, int64_t n, int64_t cols);
/** The same from float data. */
AD_API int nn_model_set_targets_f32(nn_model *m, const float *y, int64_t n, int64_t cols);
/**
 * Integer labels: class indices for cross-entropy; for a model with one
 * output and another loss the label value itself is the target (0/1 for
 * BCE and the perceptron criterion, -1/+1 for hinge). AD_EINVAL for an
 * index out of range, naming the row.
 */
AD_API int nn_model_set_labels(nn_model *m, const int *labels, int64_t n);
/**
 * Replays the graph (ad_forward) on the current input; in training mode it
 * then updates the batch-norm running statistics. 0 or -1 (nn_model_error).
 */
AD_API int nn_model_forward(nn_model *m);
/** The loss value of the latest forward (NaN without a loss). */
AD_API double nn_model_loss_value(const nn_model *m);
/**
 * Zeros the gradient buffer and backpropagates the loss (ad_backward): the
 * flat gradient buffer then holds d loss / d params. Needs a forward first.
 */
AD_API int nn_model_backward(nn_model *m);

typedef struct nn_optimizer nn_optimizer;

/**
 * One training step on the batch already set: forward, zero gradients,
 * backward, optimizer step (clipping first when its config says so); for a
 * fused optimizer (nn_optim_config.fused) the backward pass takes the step
 * (ad_backward_sgd) and the gradient buffer is not written.
 * *loss (may be NULL) receives the loss before the step. No allocation
 * after the first call. 0 or -1 (nn_model_error).
 */
AD_API int nn_model_train_step(nn_model *m, nn_optimizer *opt, double *loss);

/* ------------------------------------------------------------ prediction */

/** Index of the largest of n values (the first on ties); -1 for n < 1. */
AD_API int64_t nn_argmax(const double *values, int64_t n);
/**
 * Class of every row of the current output: argmax of the row, or for a
 * single output, 1 if the output is >= threshold else 0, where threshold is
 * 0.5 after a sigmoid or step activation and 0 otherwise (logits, scores,
 * sign). classes receives nn_model_batch values.
 */
AD_API int nn_model_output_classes(const nn_model *m, int64_t *classes);
/**
 * Runs the model in evaluation mode on n rows of x (in chunks of at most
 * the build batch, so nothing is allocated, and of about 1 MiB of
 * batch-sized tensors, so they stay in cache) and writes n * out_features
 * outputs to out. The training mode is restored afterwards. 0 or -1 (nn_model_error).
 */
AD_API int nn_model_predict(nn_model *m, const double *x, int64_t n, int64_t cols, double *out);
AD_API int nn_model_predict_f32(nn_model *m, const float *x, int64_t n, int64_t cols, double *out);
/** The same, writing the class of every row (see nn_model_output_classes). */
AD_API int nn_model_predict_classes(nn_model *m, const double *x, int64_t n, int64_t cols,
                                    int64_t *classes);
AD_API int nn_model_predict_classes_f32(nn_model *m, const float *x, int64_t n, int64_t cols,
                                        int64_t *classes);
/**
 * Evaluation mode over n rows: mean loss (weighted by chunk size) and
 * accuracy (fraction of rows whose class equals the label; for one output
 * with labels -1/+1, class 1 matches +1 and 0 matches -1). labels as in
 * nn_model_set_labels. Either output may be NULL. 0 or -1 (nn_model_error).
 */
AD_API int nn_model_evaluate(nn_model *m, const double *x, const int *labels, int64_t n,
                             int64_t cols, double *mean_loss, double *accuracy);
AD_API int nn_model_evaluate_f32(nn_model *m, const float *x, const int *labels, int64_t n,
                                 int64_t cols, double *mean_loss, double *accuracy);

/* ------------------------------------------------------------- optimizers */

typedef enum {
    NN_OPT_SGD,
    NN_OPT_ADAM,
    NN_OPT_ADAMW,
    NN_OPT_RMSPROP,
    NN_OPT_ADAGRAD,
    NN_OPT_COUNT
} nn_optim_kind;

/**
 * Optimizer settings; the update rules are PyTorch's (torch.optim, 1.13),
 * with g the gradient, p the parameter and t the step number from 1:
 *   SGD      g += wd p; b = t == 1 ? g : momentum b + (1 - dampening) g;
 *            g = nesterov ? g + momentum b : b (when momentum != 0); p -= lr g
 *   ADAM     g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *            (amsgrad: vmax = max(vmax, v), used for v)
 *            p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   ADAMW    p *= 1 - lr wd; then ADAM without the g += wd p term
 *   RMSPROP  g += wd p; s = alpha s + (1 - alpha) g^2; (centered: a = alpha a + (1 - alpha) g,
 *            s - a^2 used for s); d = sqrt(s) + eps;
 *            momentum > 0: b = momentum b + g / d, p -= lr b; else p -= lr g / d
 *   ADAGRAD  g += wd p; s += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)
 * clip_norm > 0 clips the gradient buffer by its global L2 norm before each
 * step (nn_clip_grad_norm). fused takes a plain SGD step inside the backward
 * pass (as torch.optim.SGD(fused=True)).
 */
typedef struct {
    nn_optim_kind kind;         /**< the update rule */
    double lr;                  /**< learning rate */
    double momentum;            /**< SGD, RMSprop */
    double dampening;           /**< SGD */
    int nesterov;               /**< SGD (needs momentum > 0 and dampening 0) */
    double weight_decay;        /**< L2 added to g; decoupled for AdamW */
    double beta1;               /**< Adam, AdamW: first-moment decay */
    double beta2;               /**< Adam, AdamW: second-moment decay */
    double eps;                 /**< Adam, AdamW, RMSprop, Adagrad */
    int amsgrad;                /**< Adam, AdamW */
    double alpha;               /**< RMSprop smoothing constant */
    int centered;               /**< RMSprop */
    double lr_decay;            /**< Adagrad */
    double initial_accumulator; /**< Adagrad: starting value of s */
    double clip_norm;           /**< > 0: clip by global norm before each step */
    /** 1: plain SGD only (momentum, weight_decay and clip_norm 0). The step is
     *  taken inside the backward pass (ad_backward_sgd: a weight's update is
     *  added by its gradient's matrix product, with no pass over the
     *  gradients) by nn_model_train_step and nn_train_epoch; the gradient
     *  buffer is then not written (nn_model_backward + nn_optimizer_step,
     *  and nn_train_epoch with an after_backward hook, work as without it).
     *  Results agree with the separate step to one rounding per update. */
    int fused;
} nn_optim_config;

/** PyTorch's defaults for kind: SGD lr 0.01 (PyTorch has none), Adam/AdamW
 *  lr 1e-3 b1 0.9 b2 0.999 eps 1e-8 (AdamW weight_decay 0.01), RMSprop lr
 *  0.01 alpha 0.99 eps 1e-8, Adagrad lr 0.01 eps 1e-10; everything else 0. */
AD_API nn_optim_config nn_optim_defaults(nn_optim_kind kind);
/** "sgd", "adam", "adamw", "rmsprop", "adagrad"; NULL for an unknown kind. */
AD_API const char *nn_optim_name(nn_optim_kind kind);
/** The kind for a name (also "momentum" and "nesterov" for SGD), or -1. */
AD_API int nn_optim_from_name(const char *name);

/**
 * An optimizer bound to a built model's flat parameter and gradient
 * buffers. Allocates its state once (zeros; Adagrad's accumulator at
 * initial_accumulator) with the model's allocator. The model must outlive
 * it. Free with nn_optimizer_free. NULL with the reason in *err (may be
 * NULL) on a bad config (lr < 0, momentum outside [0, 1), betas outside
 * [0, 1), eps < 0, nesterov without momentum...: AD_EINVAL), an unbuilt
 * model (AD_ESTATE) or no memory (AD_ENOMEM).
 */
AD_API nn_optimizer *nn_optimizer_new(nn_model *m, const nn_optim_config *cfg, ad_error *err);
/**
 * An optimizer over any n parameters of dtype, not bound to a model: step
 * it with nn_optimizer_update. Memory from malloc (nn_optimizer_new_flat_with
 * takes an allocator). NULL with *err as nn_optimizer_new.
 */
AD_API nn_optimizer *nn_optimizer_new_flat(ad_dtype dtype, int64_t n, const nn_optim_config *cfg,
                                           ad_error *err);
/**
 * nn_optimizer_new_flat with its state from alloc(ud, ...) (NULL: malloc),
 * the contract of ad_graph_new_with; nn_optimizer_free returns it there.
 */
AD_API nn_optimizer *nn_optimizer_new_flat_with(ad_dtype dtype, int64_t n,
                                                const nn_optim_config *cfg, ad_alloc_fn alloc,
                                                void *ud, ad_error *err);
/** Frees the optimizer. Accepts NULL. */
AD_API void nn_optimizer_free(nn_optimizer *o);
/**
 * The message of the optimizer's most recent failure, else NULL. For o
 * NULL: "nn: optimizer is NULL". Owned by the optimizer.
 */
AD_API const char *nn_optimizer_error(const nn_optimizer *o);
/** The code of that failure (AD_EINVAL, AD_EMISMATCH, AD_ESTATE), AD_OK when none. */
AD_API ad_errcode nn_optimizer_errcode(const nn_optimizer *o);
/** Forgets the optimizer's message. */
AD_API void nn_optimizer_clear_error(nn_optimizer *o);
/** One update of the bound model's parameters from its gradient buffer.
 *  0, or -1 (nn_optimizer_error; AD_ESTATE for an optimizer bound to no model). */
AD_API int nn_optimizer_step(nn_optimizer *o);
/** One update of params (n elements of dtype) from grads (clipped in place
 *  when clip_norm > 0). 0, or -1 (nn_optimizer_error). */
AD_API int nn_optimizer_update(nn_optimizer *o, void *params, void *grads);
/** The configuration (owned by the optimizer; change lr with nn_optimizer_set_lr). */
AD_API const nn_optim_config *nn_optimizer_config(const nn_optimizer *o);
/** The current learning rate. */
AD_API double nn_optimizer_lr(const nn_optimizer *o);
/** Sets the learning rate for the next steps (a schedule calls this each epoch).
 *  0, or -1 (nn_optimizer_error) for a rate that is not a finite number >= 0. */
AD_API int nn_optimizer_set_lr(nn_optimizer *o, double lr);
/** Most steps an optimizer counts (2^53: t is exact as a double, t + 1 never
 *  overflows); a step beyond fails with AD_ESTATE. */
#define NN_OPTIM_MAX_STEPS (INT64_C(1) << 53)
/** Steps taken so far (t). */
AD_API int64_t nn_optimizer_steps(const nn_optimizer *o);
/** Sets t (restoring a checkpoint). 0, or -1 (AD_EINVAL) for t outside [0, NN_OPTIM_MAX_STEPS]. */
AD_API int nn_optimizer_set_steps(nn_optimizer *o, int64_t steps);
/** Number of state values (all slots) that are NaN or infinite: 0 for a
 *  healthy optimizer; -1 when o is NULL. Checked before a checkpoint is
 *  written, since a diverged run can have a finite loss. */
AD_API int64_t nn_optimizer_nonfinite_state(const nn_optimizer *o);
/** Zeros the state and the step count. */
AD_API void nn_optimizer_reset(nn_optimizer *o);
/**
 * The state buffer: nn_optimizer_state_slots(o) consecutive arrays of n
 * elements of the dtype (n = the parameter count), owned by the optimizer.
 * Slots: SGD "momentum" (when momentum != 0); Adam/AdamW "exp_avg",
 * "exp_avg_sq" (+ "max_exp_avg_sq" with amsgrad); RMSprop "square_avg"
 * (+ "momentum" when momentum > 0, + "grad_avg" when centered); Adagrad "sum".
 */
AD_API void *nn_optimizer_state(nn_optimizer *o);
/** Number of state slots (0 for plain SGD). */
AD_API int nn_optimizer_state_slots(const nn_optimizer *o);
/** Name of slot i, or NULL. */
AD_API const char *nn_optimizer_slot_name(const nn_optimizer *o, int i);
/** Elements in the state buffer (slots * n). */
AD_API int64_t nn_optimizer_state_count(const nn_optimizer *o);
/**
 * Serialized state for checkpoints: a 64-byte header ("CRNNOPT1", kind,
 * dtype, n, slots, step count, lr) followed by the raw state buffer, in
 * host byte order. nn_optimizer_state_bytes gives the size;
 * nn_optimizer_save_state writes it to buf (size at least that);
 * nn_optimizer_load_state restores the step count, lr and state buffer of
 * an optimizer of the same kind, dtype, n and slots (-1 otherwise, with
 * nn_optimizer_error naming the difference: AD_EINVAL for another kind or
 * dtype, AD_EMISMATCH for other sizes), so a resumed run continues exactly.
 * Every header field is range-checked, whatever produced the bytes: a step
 * count outside [0, NN_OPTIM_MAX_STEPS] or a learning rate that is not a
 * finite number >= 0 is AD_EINVAL. (The state values are copied as they
 * are; see nn_optimizer_nonfinite_state.) A buffer too small for save is
 * AD_EMISMATCH.
 */
AD_API size_t nn_optimizer_state_bytes(const nn_optimizer *o);
AD_API int nn_optimizer_save_state(const nn_optimizer *o, void *buf, size_t size);
AD_API int nn_optimizer_load_state(nn_optimizer *o, const void *buf, size_t size);

/**
 * Clips n gradients of dtype in place by their global L2 norm: when the
 * norm exceeds max_norm they are scaled by max_norm / (norm + 1e-6)
 * (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping, or
 * -1 for NULL grads or max_norm <= 0.
 */
AD_API double nn_clip_grad_norm(ad_dtype dtype, void *grads, int64_t n, double max_norm);
/** The same on a model's gradient buffer; -1 (nn_model_error) for a model that is not built. */
AD_API double nn_model_clip_grad_norm(nn_model *m, double max_norm);

/* ----------------------------------------------------- learning-rate schedules */

typedef enum {
    NN_SCHED_CONSTANT,
    NN_SCHED_STEP,        /* lr0 gamma^floor(epoch / step_size)                 (StepLR) */
    NN_SCHED_EXPONENTIAL, /* lr0 gamma^epoch                                    (ExponentialLR) */
    NN_SCHED_COSINE,      /* min_lr + (lr0 - min_lr)(1 + cos(pi epoch / t_max))/2; reaches
                             min_lr at t_max, then rises again      (CosineAnnealingLR) */
    NN_SCHED_COUNT
} nn_schedule_kind;

/** A learning-rate schedule: a pure function of the epoch (0-based). */
typedef struct {
    nn_schedule_kind kind; /**< the rule */
    double base_lr;        /**< learning rate at epoch 0 */
    int64_t step_size;     /**< STEP */
    double gamma;          /**< STEP, EXPONENTIAL */
    int64_t t_max;         /**< COSINE */
    double min_lr;         /**< COSINE */
} nn_schedule;

/** lr for every epoch. */
AD_API nn_schedule nn_schedule_constant(double lr);
/** lr gamma^floor(epoch / step_size) (step_size >= 1). */
AD_API nn_schedule nn_schedule_step(double lr, int64_t step_size, double gamma);
/** lr gamma^epoch. */
AD_API nn_schedule nn_schedule_exponential(double lr, double gamma);
/** Cosine annealing from lr at epoch 0 to min_lr at epoch t_max (t_max >= 1). */
AD_API nn_schedule nn_schedule_cosine(double lr, int64_t t_max, double min_lr);
/** The learning rate for epoch, or NaN for a bad schedule (NULL, step_size < 1, t_max < 1). */
AD_API double nn_schedule_lr(const nn_schedule *s, int64_t epoch);
/** "constant", "step", "exponential", "cosine"; NULL for an unknown kind. */
AD_API const char *nn_schedule_name(nn_schedule_kind kind);
/** The kind for a name (also "none", "exp"), or -1. */
AD_API int nn_schedule_from_name(const char *name);

/* ------------------------------------------------------------- model files */
/* Parameters and running statistics as .npy/.npz and safetensors files
   (chainrule/io.h, chainrule/checkpoint.h; docs/interop.md). */

/**
 * Flag for the model loaders: ignore tensors in the file that the model
 * does not have (a chainrule train checkpoint's "optimizer.*" tensors).
 * Without it they are an error, like PyTorch's load_state_dict(strict=True).
 */
#define NN_MODEL_ALLOW_EXTRA 1u

/**
 * Saves a built model's parameters and batch-norm running statistics as an
 * .npz archive (see "Models" in chainrule/io.h), with working memory from
 * the model's allocator. Returns 0, or -1 with the reason in
 * nn_model_error(m): NULL arguments, a model that is not built, and the
 * failures of io_npz_write (the message names the file).
 */
AD_API int nn_model_save_npz(nn_model *m, const char *path);

/**
 * Loads a built model's parameters and running statistics from an .npz
 * archive holding a tensor for each, by name, with the same shape (any
 * dtype the reader accepts; values are converted to the model's dtype).
 * Everything is checked before anything is copied, so on failure the model
 * is unchanged. flags: 0 or NN_MODEL_ALLOW_EXTRA. Returns 0, or -1 with the
 * reason in nn_model_error(m), naming the tensor ("mlp.npz: no tensor
 * 'dense1.bias' for the model", "tensor 'dense0.weight' has shape (8, 2)
 * but the model expects (2, 8)", "tensor '0.weight' is not in the model"),
 * or NULL arguments, a model that is not built, and io_npz_read's failures.
 */
AD_API int nn_model_load_npz(nn_model *m, const char *path, unsigned flags);

/**
 * Saves a built model like nn_model_save_npz, as a safetensors file written
 * by io_checkpoint_write (F32 or F64 by the model's dtype). 0 or -1 (the
 * reason in nn_model_error).
 */
AD_API int nn_model_save_safetensors(nn_model *m, const char *path);

/**
 * Loads a built model like nn_model_load_npz from a safetensors file (F32
 * or F64 tensors, read by io_checkpoint_read, so also the checkpoints of
 * chainrule train with NN_MODEL_ALLOW_EXTRA). 0 or -1 (the reason in
 * nn_model_error, with io_checkpoint_read's message when reading failed).
 */
AD_API int nn_model_load_safetensors(nn_model *m, const char *path, unsigned flags);

/* ----------------------------------------------------- training checkpoints */

/** Longest class name of a run, terminator included. */
#define NN_CLASS_NAME_MAX 48
/** The value of a training checkpoint's "chainrule.format" metadata. */
#define NN_CHECKPOINT_FORMAT "chainrule-train/2"

/** One epoch of a run's history. */
typedef struct nn_epoch_record {
    double loss;         /**< mean training loss */
    double accuracy;     /**< training accuracy in [0, 1] */
    double val_loss;     /**< validation loss (NaN without a validation set) */
    double val_accuracy; /**< validation accuracy (NaN without a validation set) */
    double seconds;      /**< wall time of the epoch */
} nn_epoch_record;

/**
 * What a training checkpoint keeps beside the model and the optimizer: the
 * settings and the progress of a run (`chainrule train`), enough to
 * continue it exactly and to refuse a resume with other settings.
 * nn_run_init sets the defaults; the caller frees what it owns with
 * nn_run_finish.
 */
typedef struct nn_run {
    char optimizer[16]; /**< the optimizer's name as chosen: "sgd", "momentum", "adam", ... */
    double lr;          /**< the base learning rate the schedule starts from */
    nn_schedule_kind schedule; /**< learning rate per epoch (from lr) */
    double gamma;              /**< the exponential schedule's decay, in (0, 1] */
    int64_t batch;             /**< rows per training step */
    uint64_t seed;  /**< initial weights and the batch order, io_data_permutation(seed, epoch) */
    int64_t subset; /**< training rows used (0: all) */
    int64_t val;    /**< validation rows held out from the start of the training data */
    double input_scale;  /**< features are divided by this (255 for 8-bit pixels) */
    int64_t epochs;      /**< epochs in total */
    int64_t epochs_done; /**< epochs completed */
    int nclasses;        /**< names in class_names */
    char (*class_names)[NN_CLASS_NAME_MAX]; /**< (nclasses), owned by the run (malloc) */
    int64_t nhistory;                       /**< entries in history */
    nn_epoch_record *history;               /**< (nhistory) per epoch, owned by the run (malloc) */
} nn_run;

/** Defaults: optimizer "sgd", lr 0.01, constant schedule, gamma 0.9, batch 32, scale 1, 1 epoch, no
 *  names, no history. */
AD_API void nn_run_init(nn_run *run);
/** Frees the class names and the history (run itself is the caller's). Accepts NULL. */
AD_API void nn_run_finish(nn_run *run);
/** Makes run name n classes (new names empty). 0, or -1 with *err (err may be NULL). */
AD_API int nn_run_resize_classes(nn_run *run, int n, ad_error *err);
/**
 * Parses "a,b,c" into run's class names: any number of names of 1 to
 * NN_CLASS_NAME_MAX - 1 bytes without control characters (they are printed
 * one per line and to terminals). 0, or -1 with *err: "name 2 has a control
 * character (byte 0x0a)", "each name needs 1 to 47 characters".
 */
AD_API int nn_run_set_class_names(nn_run *run, const char *list, ad_error *err);
/** Appends one epoch to the history. 0, or -1 with *err (out of memory). */
AD_API int nn_run_add_epoch(nn_run *run, const nn_epoch_record *e, ad_error *err);

/**
 * Writes a training checkpoint, atomically: a model file of m (its tensors
 * and architecture, readable by nn_model_load and PyTorch's safetensors),
 * the optimizer's state as "optimizer.<slot>" tensors and its settings,
 * the graph generator's state (dropout masks), and run, as metadata
 * (docs/training.md lists the keys). opt may be NULL. Refuses, writing
 * nothing, when a weight or an optimizer state value is NaN or infinite (a
 * diverged run can keep a finite loss): AD_ESTATE "training diverged: 1 of
 * 146 weights and 0 of 0 optimizer state values are NaN or infinite; PATH
 * was not written". Other errors: AD_EUNSUPPORTED (m has no architecture),
 * AD_EINVAL, AD_EIO, AD_ENOMEM. 0, or -1 with *err.
 */
AD_API int nn_checkpoint_save(const char *path, nn_model *m, const nn_optimizer *opt,
                              const nn_run *run, ad_error *err);

/** Flag of nn_checkpoint_load: load NaN or infinite weights and optimizer state. */
#define NN_CHECKPOINT_ALLOW_NONFINITE 1u

/**
 * Reads a checkpoint written by nn_checkpoint_save: rebuilds the model from
 * its architecture (batch rows per build batch; <= 0: as saved) with the
 * saved tensors and generator state, fills run (the caller frees it with
 * nn_run_finish; it is initialized even on failure) and, when opt is not
 * NULL, makes the optimizer with its saved settings and state (*opt, the
 * caller's), so training continues exactly. Every field is range-checked
 * (the checksum guards against corruption, not crafted files). NULL with
 * *err: AD_EIO, AD_EFORMAT (not a chainrule checkpoint, no valid checksum,
 * a field out of range, naming it: "metadata chainrule.gamma '7' is not
 * valid"), AD_EUNSUPPORTED (another format version), AD_EMISMATCH (tensors
 * that do not fit), AD_ESTATE (NaN or infinite weights or optimizer state
 * without NN_CHECKPOINT_ALLOW_NONFINITE), AD_ENOMEM.
 */
AD_API nn_model *nn_checkpoint_load(const char *path, int64_t batch, unsigned flags,
                                    nn_optimizer **opt, nn_run *run, ad_error *err);

/* ------------------------------------------------------------ training loop */

/**
 * Number of parameters of m that are NaN or infinite: 0 for a healthy
 * model; -1 when m is NULL. A diverged run can keep a finite loss (a NaN
 * bias behind a ReLU), so a trainer checks this, and
 * nn_optimizer_nonfinite_state, before it saves a checkpoint.
 */
AD_API int64_t nn_model_nonfinite_params(nn_model *m);

/** What one epoch of nn_train_epoch did, over this process's rows. */
typedef struct nn_epoch_stats {
    double loss_sum;      /**< sum over batches of the batch's mean loss times its rows */
    int64_t correct;      /**< rows classified right by the weights before their update */
    int64_t rows;         /**< rows trained on */
    int64_t batches;      /**< batches done (updates applied) */
    double loss;          /**< mean loss of the last batch (the non-finite one on divergence) */
    int64_t failed_batch; /**< 0-based batch whose loss was not finite, else -1 */
} nn_epoch_stats;

/** How nn_train_epoch runs; NULL means one process, no hooks. */
typedef struct nn_epoch_options {
    /** Data-parallel: this process trains on shard rank of size of every
        batch (nearly equal shards, the first batch % size rows one longer,
        as nn_dist_shard). 0 and 1 for the whole batch. */
    int rank;
    int size; /**< number of processes (>= 1; 0 counts as 1) */
    /** After each backward pass, before the update: average the gradient
        buffer across processes (nn_dist_train_epoch's allreduce), clip, log.
        local_rows (0 for an empty shard, whose gradient was not computed) of
        global_rows. A nonzero return stops the epoch and is returned. NULL:
        nothing. */
    int (*after_backward)(nn_model *m, int64_t local_rows, int64_t global_rows, void *ctx);
    /** After each update with the figures so far, e.g. for a progress bar.
        NULL: nothing. */
    void (*after_step)(const nn_epoch_stats *so_far, int64_t batch, int64_t batches, void *ctx);
    void *ctx; /**< passed to both hooks */
} nn_epoch_options;

/**
 * One epoch of mini-batch training: rewinds the batcher b (over a labelled
 * data set whose rows have nn_model_in_features values; shuffled batchers
 * visit io_data_permutation(seed, epoch)'s order, so a resumed run sees the
 * same batches) to epoch, and for every batch sets the input and the labels
 * (this process's shard of them), runs forward and backward, counts the
 * rows classified right, calls after_backward, checks that the loss is
 * finite and applies one nn_optimizer_step. The loop of `chainrule train`.
 * stats (required) is filled even on failure.
 * Errors (-1, message in nn_model_error(m)): AD_EINVAL (NULL arguments, a
 * rank outside [0, size), an optimizer of another model), the model's
 * errors for the data (wrong width, labels out of range),
 * AD_ESTATE when a batch's loss is NaN or infinite ("nn_train_epoch:
 * training diverged in epoch 1, batch 2 (loss nan)"; stats->failed_batch
 * says which batch; its update is not applied), AD_ENOMEM.
 */
AD_API int nn_train_epoch(nn_model *m, nn_optimizer *opt, io_batcher *b, uint64_t epoch,
                          const nn_epoch_options *options, nn_epoch_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
