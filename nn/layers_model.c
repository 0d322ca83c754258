/* layers_model.c -- layers that belong to a model: each creates its
 * parameters once (named "<layer>.<tensor>", initialized as PyTorch does)
 * and returns its output node, composed of ad_* ops and the functional
 * layers. The same record serves the sequential declarations
 * (nn_model_add_*), the layer functions (nn_add_*) and the architecture
 * stored in model files. */
#include <math.h>
#include <string.h>

#include "nn_impl.h"

static const char *const kind_names[NN_LAYER_COUNT] = {
    [NN_LAYER_DENSE] = "dense",
    [NN_LAYER_ACTIVATION] = "activation",
    [NN_LAYER_PERCEPTRON] = "perceptron",
    [NN_LAYER_DROPOUT] = "dropout",
    [NN_LAYER_BATCH_NORM] = "batchnorm",
    [NN_LAYER_CONV1D] = "conv1d",
    [NN_LAYER_CONV2D] = "conv2d",
    [NN_LAYER_MAX_POOL1D] = "maxpool1d",
    [NN_LAYER_MAX_POOL2D] = "maxpool2d",
    [NN_LAYER_AVG_POOL1D] = "avgpool1d",
    [NN_LAYER_AVG_POOL2D] = "avgpool2d",
    [NN_LAYER_GLOBAL_AVG_POOL] = "globalavgpool",
    [NN_LAYER_FLATTEN] = "flatten",
    [NN_LAYER_EMBEDDING] = "embedding",
    [NN_LAYER_LAYER_NORM] = "layernorm",
    [NN_LAYER_RNN] = "rnn",
    [NN_LAYER_LSTM] = "lstm",
    [NN_LAYER_GRU] = "gru",
    [NN_LAYER_ATTENTION] = "attention",
    [NN_LAYER_FEED_FORWARD] = "feedforward",
    [NN_LAYER_TRANSFORMER_BLOCK] = "transformer",
};

const char *nn_layer_kind_name(nn_layer_kind kind)
{
    if ((int)kind < 0 || kind >= NN_LAYER_COUNT)
        return "layer";
    return kind_names[kind];
}

int nn_layer_kind_from_name(const char *name)
{
    for (int i = 0; name && i < NN_LAYER_COUNT; i++)
        if (strcmp(name, kind_names[i]) == 0)
            return i;
    return -1;
}

/* "<prefix><name>" as a parameter suffix. */
static const char *sub(char *buf, size_t size, const char *prefix, const char *name)
{
    snprintf(buf, size, "%s%s", prefix, name);
    return buf;
}

/* A dense map of the last axis: x (..., in) W (in, units) + b (units), then
 * relu(.) when relu is set (one fused node for an input with a bias). */
static ad_node *dense(nn_model *m, nn_layer *l, const char *prefix, ad_node *x, int64_t units,
                      int bias, nn_init init, bool relu)
{
    char nm[64];
    int64_t in = ad_shape(x)[ad_ndim(x) - 1];
    int64_t ws[2] = {in, units};
    ad_node *w =
        nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "weight"), 2, ws, init, in, units, 0.0);
    ad_node *b = NULL;
    if (w && bias) /* nn.Linear draws its bias like its weight; other inits start at zero */
        b = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "bias"), 1, &units,
                               init == NN_INIT_TORCH ? NN_INIT_TORCH : NN_INIT_ZEROS, in, units,
                               0.0);
    if (!w || (bias && !b))
        return NULL;
    /* w and b were shaped from x above; (..., in) is one product of all the rows */
    if (ad_ndim(x) >= 2 && b && relu)
        return ad_linear_relu(x, w, b);
    if (ad_ndim(x) > 2 && b)
        return ad_linear(x, w, b);
    ad_node *y;
    if (ad_ndim(x) == 2) {
        y = nn_linear(x, w, b);
    } else {
        y = ad_matmul(x, w);
        y = b ? ad_add(y, b) : y;
    }
    return relu ? ad_relu(y) : y;
}

static ad_node *layer_norm(nn_model *m, nn_layer *l, const char *prefix, ad_node *x, int naxes,
                           double eps, int affine)
{
    char nm[64];
    if (naxes < 1 || naxes > ad_ndim(x))
        return nn_layer_norm(x, naxes, NULL, NULL, eps); /* reports the error */
    const int64_t *sh = ad_shape(x) + ad_ndim(x) - naxes;
    ad_node *w = NULL, *b = NULL;
    if (affine) { /* nn.LayerNorm: weight ones, bias zeros */
        w = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "weight"), naxes, sh, NN_INIT_COUNT,
                               1, 1, 1.0);
        b = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "bias"), naxes, sh, NN_INIT_ZEROS,
                               1, 1, 0.0);
        if (!w || !b)
            return NULL;
    }
    return nn_layer_norm(x, naxes, w, b, eps);
}

static ad_node *attention(nn_model *m, nn_layer *l, const char *prefix, ad_node *x)
{
    char nm[64];
    if (ad_ndim(x) != 3)
        return nn_attention(x, l->heads, x, NULL, x, NULL, 0, 0, NULL); /* reports it */
    int64_t e = ad_shape(x)[2], in_s[2] = {3 * e, e}, out_s[2] = {e, e}, e3 = 3 * e;
    /* nn.MultiheadAttention: in_proj Xavier uniform, out_proj as nn.Linear,
     * both biases zero */
    ad_node *in_w = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "in_proj_weight"), 2, in_s,
                                       NN_INIT_GLOROT_UNIFORM, e, 3 * e, 0.0);
    ad_node *in_b = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "in_proj_bias"), 1, &e3,
                                       NN_INIT_ZEROS, 1, 1, 0.0);
    ad_node *out_w = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "out_proj.weight"), 2,
                                        out_s, NN_INIT_TORCH, e, e, 0.0);
    ad_node *out_b = nn_model_new_param(m, l, sub(nm, sizeof nm, prefix, "out_proj.bias"), 1, &e,
                                        NN_INIT_ZEROS, 1, 1, 0.0);
    if (!in_w || !in_b || !out_w || !out_b)
        return NULL;
    return nn_attention(x, l->heads, in_w, in_b, out_w, out_b, l->causal, l->rate, m->train_flag);
}

static ad_node *feed_forward(nn_model *m, nn_layer *l, const char *prefix, ad_node *x)
{
    char nm[64];
    int64_t e = ad_shape(x)[ad_ndim(x) - 1];
    bool relu = l->act == NN_ACT_RELU;
    ad_node *h =
        dense(m, l, sub(nm, sizeof nm, prefix, "linear1."), x, l->units, 1, NN_INIT_TORCH, relu);
    h = nn_dropout(relu ? h : nn_activate_alpha(h, l->act, l->alpha), l->rate, m->train_flag);
    if (!h)
        return NULL;
    return dense(m, l, sub(nm, sizeof nm, prefix, "linear2."), h, e, 1, NN_INIT_TORCH, false);
}

/* Pre-norm block: h = x + drop(attn(ln1(x))); y = h + drop(ff(ln2(h))). */
static ad_node *transformer_block(nn_model *m, nn_layer *l, ad_node *x)
{
    ad_node *a = attention(m, l, "attn.", layer_norm(m, l, "ln1.", x, 1, l->eps, 1));
    ad_node *h = nn_residual(x, nn_dropout(a, l->rate, m->train_flag));
    if (!h)
        return NULL;
    ad_node *f = feed_forward(m, l, "ff.", layer_norm(m, l, "ln2.", h, 1, l->eps, 1));
    return nn_residual(h, nn_dropout(f, l->rate, m->train_flag));
}

/* Batch normalization with parameters and running statistics of the channels. */
static ad_node *batch_norm(nn_model *m, nn_layer *l, ad_node *x)
{
    if (ad_ndim(x) < 2)
        return nn_batch_norm(x, NULL, NULL, NULL, NULL, NULL, l->eps, NULL, NULL); /* reports */
    int64_t c = ad_shape(x)[1];
    ad_node *w = NULL, *b = NULL;
    if (l->affine) {
        w = nn_model_new_param(m, l, "gamma", 1, &c, NN_INIT_COUNT, 1, 1, 1.0);
        b = nn_model_new_param(m, l, "beta", 1, &c, NN_INIT_ZEROS, 1, 1, 0.0);
    }
    l->rmean = nn_model_new_state(m, l, "running_mean", 1, &c, 0.0);
    l->rvar = nn_model_new_state(m, l, "running_var", 1, &c, 1.0);
    if ((l->affine && (!w || !b)) || !l->rmean || !l->rvar)
        return NULL;
    return nn_batch_norm(x, w, b, l->rmean, l->rvar, m->train_flag, l->eps, &l->bmean, &l->bvar);
}

/* One recurrent layer over T steps. x (T, B, I), or (B, T, I) batch-first. */
static ad_node *recurrent(nn_model *m, nn_layer *l, ad_node *x)
{
    char s1[96];
    if (ad_ndim(x) != 3)
        return nn_graph_fail(x, "nn_add_%s: input %s is not (time, batch, features)%s",
                             nn_layer_kind_name(l->kind), ad_shape_str(x, s1, sizeof s1),
                             l->batch_first ? " or batch-first" : "");
    int gates = l->kind == NN_LAYER_LSTM ? 4 : l->kind == NN_LAYER_GRU ? 3 : 1;
    int ta = l->batch_first ? 1 : 0;
    int64_t steps = ad_shape(x)[ta], in = ad_shape(x)[2], hid = l->units;
    int64_t wi[2] = {gates * hid, in}, wh[2] = {gates * hid, hid}, bs = gates * hid;
    /* nn.RNN / LSTM / GRU: every tensor uniform in +-1/sqrt(hidden) */
    ad_node *w_ih = nn_model_new_param(m, l, "weight_ih", 2, wi, NN_INIT_TORCH, hid, hid, 0.0);
    ad_node *w_hh = nn_model_new_param(m, l, "weight_hh", 2, wh, NN_INIT_TORCH, hid, hid, 0.0);
    ad_node *b_ih = nn_model_new_param(m, l, "bias_ih", 1, &bs, NN_INIT_TORCH, hid, hid, 0.0);
    ad_node *b_hh = nn_model_new_param(m, l, "bias_hh", 1, &bs, NN_INIT_TORCH, hid, hid, 0.0);
    if (!w_ih || !w_hh || !b_ih || !b_hh)
        return NULL;
    ad_node *h = l->h0, *c = l->c0;
    int64_t row[2] = {-1, in}, step_shape[3] = {1, -1, hid};
    if (l->batch_first) {
        step_shape[0] = -1;
        step_shape[1] = 1;
    }
    ad_node *outs[512];
    if (steps > 512)
        return nn_graph_fail(x, "nn_add_%s: %lld steps, at most 512", nn_layer_kind_name(l->kind),
                             (long long)steps);
    ad_node *w_ih_t = NULL, *w_hh_t = NULL, *b = NULL;
    for (int64_t t = 0; t < steps; t++) {
        ad_node *xt = ad_reshape(ad_slice(x, ta, t, t + 1), 2, row); /* (B, I) */
        switch (l->kind) {
        case NN_LAYER_LSTM:
            if (t == 0) { /* checked as nn_lstm_cell does; then W_ih^T, W_hh^T and
                             b_ih + b_hh once for all steps */
                if (!nn_lstm_operands_ok(xt, h, c, w_ih, w_hh, b_ih, b_hh))
                    return NULL;
                w_ih_t = ad_transpose(w_ih);
                w_hh_t = ad_transpose(w_hh);
                b = ad_add(b_ih, b_hh);
            }
            h = nn_lstm_step(xt, h, c, w_ih_t, w_hh_t, b, &c);
            break;
        case NN_LAYER_GRU:
            h = nn_gru_cell(xt, h, w_ih, w_hh, b_ih, b_hh);
            break;
        default:
            h = nn_rnn_cell(xt, h, w_ih, w_hh, b_ih, b_hh, l->act);
            break;
        }
        if (!h)
            return NULL;
        outs[t] = ad_reshape(h, 3, step_shape); /* (1, B, H) or (B, 1, H) */
    }
    l->state_out = h;
    l->state_cell = c;
    return steps == 1 ? outs[0] : ad_concat((int)steps, outs, ta);
}

/* conv1d/conv2d: weight (O, C/groups, K...) and bias (O) as nn.ConvNd:
 * uniform in +-1/sqrt(C/groups * prod K). With a bias the convolution, the
 * bias and (relu set) the ReLU after it are one node (ad_conv2d_bias_relu),
 * and with pool set also the 2x2 max pool after that
 * (ad_conv2d_bias_relu_pool; the caller checked that it applies). */
static ad_node *conv(nn_model *m, nn_layer *l, ad_node *x, bool relu, bool pool)
{
    int sp = l->kind == NN_LAYER_CONV2D ? 2 : 1;
    if (ad_ndim(x) != 2 + sp)
        return l->kind == NN_LAYER_CONV2D ? ad_conv2d(x, x, NULL) : ad_conv1d(x, x, NULL);
    ad_conv_opts o = {{l->stride[0], l->stride[1]},
                      {l->padding[0], l->padding[1]},
                      {l->dilation[0], l->dilation[1]},
                      l->groups};
    int groups = l->groups > 0 ? l->groups : 1;
    int64_t c = ad_shape(x)[1];
    if (c % groups != 0 || l->units % groups != 0)
        return nn_graph_fail(x,
                             "nn_add_conv%dd: groups %d divide neither %lld input nor %lld "
                             "output channels",
                             sp, groups, (long long)c, (long long)l->units);
    int64_t ws[4] = {l->units, c / groups, l->kernel[0], l->kernel[1]};
    int64_t fan_in = c / groups * l->kernel[0] * (sp == 2 ? l->kernel[1] : 1);
    ad_node *w = nn_model_new_param(m, l, "weight", 2 + sp, ws, NN_INIT_TORCH, fan_in, 1, 0.0);
    if (!w)
        return NULL;
    if (!l->bias) {
        ad_node *y = sp == 2 ? ad_conv2d(x, w, &o) : ad_conv1d(x, w, &o);
        return relu ? ad_relu(y) : y;
    }
    ad_node *b = nn_model_new_param(m, l, "bias", 1, &l->units, NN_INIT_TORCH, fan_in, 1, 0.0);
    if (pool)
        return ad_conv2d_bias_relu_pool(x, w, b, &o);
    if (relu)
        return sp == 2 ? ad_conv2d_bias_relu(x, w, b, &o) : ad_conv1d_bias_relu(x, w, b, &o);
    return sp == 2 ? ad_conv2d_bias(x, w, b, &o) : ad_conv1d_bias(x, w, b, &o);
}

static ad_node *pool(nn_layer *l, ad_node *x)
{
    ad_pool_opts o = {
        {l->kernel[0], l->kernel[1]}, {l->stride[0], l->stride[1]}, {l->padding[0], l->padding[1]}};
    switch (l->kind) {
    case NN_LAYER_MAX_POOL1D:
        return ad_max_pool1d(x, &o);
    case NN_LAYER_MAX_POOL2D:
        return ad_max_pool2d(x, &o);
    case NN_LAYER_AVG_POOL1D:
        return ad_avg_pool1d(x, &o);
    default:
        return ad_avg_pool2d(x, &o);
    }
}

/* Spatial axes folded: x (N, C, ...) -> (N, C, S). */
static ad_node *channels_rows(ad_node *x)
{
    int64_t s = 1;
    for (int i = 2; i < ad_ndim(x); i++)
        s *= ad_shape(x)[i];
    int64_t sh[3] = {-1, ad_shape(x)[1], s};
    return ad_reshape(x, 3, sh);
}

/* The range of every layer parameter, written once: nn_layer_check applies
   it to a record (model files, the --model grammar of spec.c, whose
   messages quote nn_layer_param_range). Strides, dilations and groups may
   also be 0, the default. */
static const struct {
    const char *name;
    bool integer, lo_open, hi_open, zero_default;
    double lo, hi;
} param_ranges[NN_PARAM_COUNT] = {
    [NN_PARAM_UNITS] = {"units", true, false, false, false, 1, 1 << 24},
    [NN_PARAM_VOCAB] = {"vocab", true, false, false, false, 1, 1 << 24},
    [NN_PARAM_KERNEL] = {"kernel", true, false, false, false, 1, 4096},
    [NN_PARAM_STRIDE] = {"stride", true, false, false, true, 1, 4096},
    [NN_PARAM_PADDING] = {"pad", true, false, false, false, 0, 4096},
    [NN_PARAM_DILATION] = {"dilation", true, false, false, true, 1, 4096},
    [NN_PARAM_GROUPS] = {"groups", true, false, false, true, 1, 1 << 16},
    [NN_PARAM_HEADS] = {"heads", true, false, false, false, 1, 4096},
    [NN_PARAM_AXES] = {"axes", true, false, false, false, 1, AD_MAX_DIMS - 1},
    [NN_PARAM_RATE] = {"rate", false, false, true, false, 0, 1},
    [NN_PARAM_MOMENTUM] = {"momentum", false, false, false, false, 0, 1},
    [NN_PARAM_EPS] = {"eps", false, true, false, false, 0, 1},
    [NN_PARAM_ALPHA] = {"alpha", false, false, false, false, -1e6, 1e6},
};

const char *nn_layer_param_range(nn_layer_param param, char *buf, size_t size)
{
    if ((int)param < 0 || param >= NN_PARAM_COUNT) {
        snprintf(buf, size, "?");
        return buf;
    }
    if (param_ranges[param].integer)
        snprintf(buf, size, "an integer in [%.0f, %.0f]%s", param_ranges[param].lo,
                 param_ranges[param].hi,
                 param_ranges[param].zero_default ? " or 0 (the default)" : "");
    else
        snprintf(buf, size, "a number in %c%g, %g%c", param_ranges[param].lo_open ? '(' : '[',
                 param_ranges[param].lo, param_ranges[param].hi,
                 param_ranges[param].hi_open ? ')' : ']');
    return buf;
}

bool nn_layer_param_ok(nn_layer_param param, double v)
{
    if ((int)param < 0 || param >= NN_PARAM_COUNT)
        return false;
    if (param_ranges[param].zero_default && v == 0)
        return true;
    return isfinite(v) &&
           (param_ranges[param].lo_open ? v > param_ranges[param].lo
                                        : v >= param_ranges[param].lo) &&
           (param_ranges[param].hi_open ? v < param_ranges[param].hi
                                        : v <= param_ranges[param].hi) &&
           (!param_ranges[param].integer || v == floor(v));
}

/* Checks value v of param; on failure writes the reason and sets *bad. */
static bool check_param(nn_layer_param param, double v, char *why, size_t size, nn_layer_param *bad)
{
    if (nn_layer_param_ok(param, v))
        return true;
    char range[80];
    snprintf(why, size, "%s %.17g is not %s", param_ranges[param].name, v,
             nn_layer_param_range(param, range, sizeof range));
    *bad = param;
    return false;
}

int nn_layer_check(const nn_layer *l, char *why, size_t size, nn_layer_param *bad)
{
    nn_layer_param unused;
    if (!bad)
        bad = &unused;
    *bad = NN_PARAM_COUNT;
    if ((int)l->init < 0 || l->init >= NN_INIT_COUNT || (int)l->act < 0 || l->act >= NN_ACT_COUNT ||
        (int)l->kind < 0 || l->kind >= NN_LAYER_COUNT) {
        snprintf(why, size, "unknown kind, initializer or activation");
        return -1;
    }
    bool conv = l->kind == NN_LAYER_CONV1D || l->kind == NN_LAYER_CONV2D;
    bool pool = l->kind >= NN_LAYER_MAX_POOL1D && l->kind <= NN_LAYER_AVG_POOL2D;
    bool two_d = l->kind == NN_LAYER_CONV2D || l->kind == NN_LAYER_MAX_POOL2D ||
                 l->kind == NN_LAYER_AVG_POOL2D;
    bool sized = l->kind == NN_LAYER_DENSE || l->kind == NN_LAYER_PERCEPTRON || conv ||
                 l->kind == NN_LAYER_EMBEDDING || l->kind == NN_LAYER_RNN ||
                 l->kind == NN_LAYER_LSTM || l->kind == NN_LAYER_GRU ||
                 l->kind == NN_LAYER_FEED_FORWARD || l->kind == NN_LAYER_TRANSFORMER_BLOCK;
    bool dropout = l->kind == NN_LAYER_DROPOUT || l->kind == NN_LAYER_ATTENTION ||
                   l->kind == NN_LAYER_FEED_FORWARD || l->kind == NN_LAYER_TRANSFORMER_BLOCK;
    bool heads = l->kind == NN_LAYER_ATTENTION || l->kind == NN_LAYER_TRANSFORMER_BLOCK;
    bool eps = l->kind == NN_LAYER_BATCH_NORM || l->kind == NN_LAYER_LAYER_NORM ||
               l->kind == NN_LAYER_TRANSFORMER_BLOCK;
    int axes = two_d ? 2 : 1;
    bool ok = !sized || check_param(NN_PARAM_UNITS, (double)l->units, why, size, bad);
    if (ok && l->kind == NN_LAYER_EMBEDDING)
        ok = check_param(NN_PARAM_VOCAB, (double)l->vocab, why, size, bad);
    for (int k = 0; ok && (conv || pool) && k < axes; k++)
        ok = check_param(NN_PARAM_KERNEL, l->kernel[k], why, size, bad) &&
             check_param(NN_PARAM_STRIDE, l->stride[k], why, size, bad) &&
             check_param(NN_PARAM_PADDING, l->padding[k], why, size, bad) &&
             (!conv || check_param(NN_PARAM_DILATION, l->dilation[k], why, size, bad));
    if (ok && conv)
        ok = check_param(NN_PARAM_GROUPS, l->groups, why, size, bad);
    if (ok && heads)
        ok = check_param(NN_PARAM_HEADS, l->heads, why, size, bad);
    if (ok && dropout)
        ok = check_param(NN_PARAM_RATE, l->rate, why, size, bad);
    if (ok && l->kind == NN_LAYER_BATCH_NORM)
        ok = check_param(NN_PARAM_MOMENTUM, l->momentum, why, size, bad);
    if (ok && eps)
        ok = check_param(NN_PARAM_EPS, l->eps, why, size, bad);
    if (ok && l->kind == NN_LAYER_LAYER_NORM)
        ok = check_param(NN_PARAM_AXES, l->naxes, why, size, bad);
    if (ok && l->kind == NN_LAYER_ACTIVATION)
        ok = check_param(NN_PARAM_ALPHA, l->alpha, why, size, bad);
    return ok ? 0 : -1;
}

/* The one range check of a layer before it is built, whichever way it was
   declared (nn_add_*, nn_model_add_*, a model file, a --model list). */
static bool layer_in_range(nn_model *m, const nn_layer *l, ad_node *x)
{
    char why[160];
    if (nn_layer_check(l, why, sizeof why, NULL) == 0)
        return true;
    nn_model_fail(m, AD_EINVAL, "%s: %s", nn_layer_kind_name(l->kind), why);
    nn_graph_fail(x, "%s: %s", nn_layer_kind_name(l->kind), why);
    return false;
}

ad_node *nn_layer_apply(nn_model *m, nn_layer *l, ad_node *x)
{
    if (!x || !layer_in_range(m, l, x))
        return NULL;
    char s1[96];
    l->input = x;
    l->in = ad_ndim(x) ? ad_shape(x)[ad_ndim(x) - 1] : 1;
    ad_node *y = NULL;
    switch (l->kind) {
    case NN_LAYER_DENSE:
        y = dense(m, l, "", x, l->units, l->bias, l->init, false);
        break;
    case NN_LAYER_PERCEPTRON: {
        int64_t ws[2] = {l->in, l->units};
        ad_node *w = nn_model_new_param(m, l, "weight", 2, ws, NN_INIT_ZEROS, 1, 1, 0.0);
        ad_node *b = nn_model_new_param(m, l, "bias", 1, &l->units, NN_INIT_ZEROS, 1, 1, 0.0);
        y = w && b ? nn_tlu(x, w, b, l->act) : NULL;
        break;
    }
    case NN_LAYER_ACTIVATION:
        y = nn_activate_alpha(x, l->act, l->alpha);
        break;
    case NN_LAYER_DROPOUT:
        y = nn_dropout(x, l->rate, m->train_flag);
        break;
    case NN_LAYER_BATCH_NORM:
        y = batch_norm(m, l, x);
        break;
    case NN_LAYER_LAYER_NORM:
        y = layer_norm(m, l, "", x, l->naxes, l->eps, l->affine);
        break;
    case NN_LAYER_CONV1D:
    case NN_LAYER_CONV2D:
        y = conv(m, l, x, false, false);
        break;
    case NN_LAYER_MAX_POOL1D:
    case NN_LAYER_MAX_POOL2D:
    case NN_LAYER_AVG_POOL1D:
    case NN_LAYER_AVG_POOL2D:
        y = pool(l, x);
        break;
    case NN_LAYER_FLATTEN: {
        int64_t sh[2] = {-1, ad_ndim(x) ? ad_numel(x) / ad_shape(x)[0] : 1};
        y = ad_ndim(x) < 1 ? nn_graph_fail(x, "nn_add_flatten: input %s has no batch axis",
                                           ad_shape_str(x, s1, sizeof s1))
                           : ad_reshape(x, 2, sh);
        break;
    }
    case NN_LAYER_GLOBAL_AVG_POOL:
        y = ad_ndim(x) < 3 ? nn_graph_fail(x, "nn_add_global_avg_pool: input %s is not (N, C, ...)",
                                           ad_shape_str(x, s1, sizeof s1))
                           : ad_mean(channels_rows(x), 2);
        break;
    case NN_LAYER_EMBEDDING: {
        int64_t ts[2] = {l->vocab, l->units};
        /* nn.Embedding: N(0, 1) (LeCun normal with fan_in 1) */
        ad_node *table = nn_model_new_param(m, l, "weight", 2, ts, NN_INIT_LECUN_NORMAL, 1, 1, 0.0);
        y = nn_embedding(x, table);
        break;
    }
    case NN_LAYER_RNN:
    case NN_LAYER_LSTM:
    case NN_LAYER_GRU:
        y = recurrent(m, l, x);
        break;
    case NN_LAYER_ATTENTION:
        y = attention(m, l, "", x);
        break;
    case NN_LAYER_FEED_FORWARD:
        y = feed_forward(m, l, "", x);
        break;
    case NN_LAYER_TRANSFORMER_BLOCK:
        y = transformer_block(m, l, x);
        break;
    default:
        y = nn_graph_fail(x, "nn: layer kind %s needs an op this build does not have",
                          nn_layer_kind_name(l->kind));
        break;
    }
    l->output = y;
    if (y)
        l->out = ad_ndim(y) ? ad_shape(y)[ad_ndim(y) - 1] : 1;
    return y;
}

/* the output size along spatial axis k (0 height, 1 width) of conv2d layer l
 * on x (N, C, H, W) */
static int64_t conv2d_out_len(const nn_layer *l, ad_node *x, int k)
{
    int64_t s = l->stride[k] ? l->stride[k] : 1, d = l->dilation[k] ? l->dilation[k] : 1;
    return (ad_shape(x)[2 + k] + 2 * l->padding[k] - d * (l->kernel[k] - 1) - 1) / s + 1;
}

ad_node *nn_layer_apply_with_relu(nn_model *m, nn_layer *l, nn_layer *act, nn_layer *pool,
                                  ad_node *x)
{
    if (!x || !layer_in_range(m, l, x) || (pool && !layer_in_range(m, pool, x)))
        return NULL;
    l->input = x;
    l->in = ad_ndim(x) ? ad_shape(x)[ad_ndim(x) - 1] : 1;
    ad_node *y = l->kind == NN_LAYER_DENSE ? dense(m, l, "", x, l->units, l->bias, l->init, true)
                                           : conv(m, l, x, true, pool != NULL);
    act->input = l->output = act->output = y;
    if (y)
        act->in = l->out = act->out = ad_shape(y)[ad_ndim(y) - 1];
    l->unpooled_hw[0] = l->unpooled_hw[1] = act->unpooled_hw[0] = act->unpooled_hw[1] = 0;
    if (pool) { /* the widths and sizes before the pooling, as without the fusion */
        pool->input = pool->output = y;
        pool->out = act->out;
        for (int k = 0; k < 2; k++)
            l->unpooled_hw[k] = act->unpooled_hw[k] = conv2d_out_len(l, x, k);
        l->out = act->in = act->out = pool->in = l->unpooled_hw[1];
    }
    return y;
}

/* A conv2d layer l with a bias, then p a 2x2 max pool at stride 2 without
 * padding (after its ReLU), on x whose convolution output is 2x2 or more:
 * conv, ReLU and pool make one ad_conv2d_bias_relu_pool node. */
static bool pool_fuses(const nn_layer *l, const nn_layer *p, ad_node *x)
{
    if (l->kind != NN_LAYER_CONV2D || !l->bias || !p || p->kind != NN_LAYER_MAX_POOL2D ||
        ad_ndim(x) != 4)
        return false;
    for (int k = 0; k < 2; k++)
        if (p->kernel[k] != 2 || (p->stride[k] != 0 && p->stride[k] != 2) || p->padding[k] != 0 ||
            conv2d_out_len(l, x, k) < 2)
            return false;
    return true;
}

ad_node *nn_layers_apply_chain(nn_model *m, int first, ad_node *h, int *failed)
{
    for (int i = first; i < m->nlayers && h; i++) {
        nn_layer *l = &m->layers[i], *next = i + 1 < m->nlayers ? &m->layers[i + 1] : NULL;
        int at = i;
        bool fusable =
            l->kind == NN_LAYER_DENSE || l->kind == NN_LAYER_CONV1D || l->kind == NN_LAYER_CONV2D;
        if (fusable && next && next->kind == NN_LAYER_ACTIVATION && next->act == NN_ACT_RELU) {
            nn_layer *p = i + 2 < m->nlayers ? &m->layers[i + 2] : NULL;
            p = pool_fuses(l, p, h) ? p : NULL;
            h = nn_layer_apply_with_relu(m, l, &m->layers[i + 1], p, h);
            i += p ? 2 : 1;
        } else
            h = nn_layer_apply(m, l, h);
        if (!h && failed)
            *failed = at;
    }
    return h;
}

/* ------------------------------------------------------------ nn_add_* */

/* A new layer record of m for x, or NULL (the message on the graph and the model). */
static nn_layer *open_layer(nn_model *m, ad_node *x, nn_layer_kind kind, const char *fn)
{
    if (!m || !x)
        return NULL; /* a NULL model is what a failed constructor returned (its err says why) */
    if (!m->graph_mode || m->built || ad_node_graph(x) != m->g) {
        const char *why = !m->graph_mode ? "the model was not made by nn_model_new"
                          : m->built     ? "the model is finished"
                                         : "the input belongs to another graph";
        nn_model_fail(m, AD_ESTATE, "%s: %s", fn, why);
        nn_graph_fail(x, "%s: %s", fn, why);
        return NULL;
    }
    nn_layer *l = nn_model_push_layer(m, kind, fn);
    if (!l)
        nn_graph_fail(x, "%s: out of memory", fn);
    return l;
}

static ad_node *bad_arg(nn_model *m, ad_node *x, const char *msg)
{
    m->nlayers--; /* the record is not kept */
    nn_model_fail(m, AD_EINVAL, "%s", msg);
    return nn_graph_fail(x, "%s", msg);
}

ad_node *nn_add_dense(nn_model *m, ad_node *x, int64_t units, int bias)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_DENSE, "nn_add_dense");
    if (!l)
        return NULL;
    if (units < 1)
        return bad_arg(m, x, "nn_add_dense: units must be >= 1");
    l->units = units;
    l->bias = bias != 0;
    l->init = NN_INIT_TORCH;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_activation(nn_model *m, ad_node *x, nn_activation act, double alpha)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_ACTIVATION, "nn_add_activation");
    if (!l)
        return NULL;
    l->act = act;
    l->alpha = alpha;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_dropout(nn_model *m, ad_node *x, double rate)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_DROPOUT, "nn_add_dropout");
    if (!l)
        return NULL;
    l->rate = rate;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_batch_norm(nn_model *m, ad_node *x, double momentum, double eps)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_BATCH_NORM, "nn_add_batch_norm");
    if (!l)
        return NULL;
    if (!(momentum >= 0 && momentum <= 1))
        return bad_arg(m, x, "nn_add_batch_norm: momentum must be in [0, 1]");
    l->momentum = momentum;
    l->eps = eps;
    l->affine = 1;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_layer_norm(nn_model *m, ad_node *x, int naxes, double eps, int affine)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_LAYER_NORM, "nn_add_layer_norm");
    if (!l)
        return NULL;
    l->naxes = naxes;
    l->eps = eps;
    l->affine = affine != 0;
    return nn_layer_apply(m, l, x);
}

static ad_node *add_conv(nn_model *m, ad_node *x, nn_layer_kind kind, int64_t out_channels,
                         const int *kernel, const ad_conv_opts *o, int bias, const char *fn)
{
    nn_layer *l = open_layer(m, x, kind, fn);
    if (!l)
        return NULL;
    if (out_channels < 1 || kernel[0] < 1 || (kind == NN_LAYER_CONV2D && kernel[1] < 1))
        return bad_arg(m, x, "nn_add_conv: out_channels and kernel sizes must be >= 1");
    l->units = out_channels;
    l->kernel[0] = kernel[0];
    l->kernel[1] = kind == NN_LAYER_CONV2D ? kernel[1] : 1;
    if (o) {
        memcpy(l->stride, o->stride, sizeof l->stride);
        memcpy(l->padding, o->padding, sizeof l->padding);
        memcpy(l->dilation, o->dilation, sizeof l->dilation);
        l->groups = o->groups;
    }
    l->bias = bias != 0;
    l->init = NN_INIT_TORCH;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_conv1d(nn_model *m, ad_node *x, int64_t out_channels, int kernel,
                       const ad_conv_opts *o, int bias)
{
    int k[2] = {kernel, 1};
    return add_conv(m, x, NN_LAYER_CONV1D, out_channels, k, o, bias, "nn_add_conv1d");
}

ad_node *nn_add_conv2d(nn_model *m, ad_node *x, int64_t out_channels, int kh, int kw,
                       const ad_conv_opts *o, int bias)
{
    int k[2] = {kh, kw};
    return add_conv(m, x, NN_LAYER_CONV2D, out_channels, k, o, bias, "nn_add_conv2d");
}

static ad_node *add_pool(nn_model *m, ad_node *x, nn_layer_kind kind, const ad_pool_opts *o,
                         const char *fn)
{
    nn_layer *l = open_layer(m, x, kind, fn);
    if (!l)
        return NULL;
    if (!o)
        return bad_arg(m, x, "nn_add_pool: options are required (the kernel size)");
    memcpy(l->kernel, o->kernel, sizeof l->kernel);
    memcpy(l->stride, o->stride, sizeof l->stride);
    memcpy(l->padding, o->padding, sizeof l->padding);
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_max_pool1d(nn_model *m, ad_node *x, const ad_pool_opts *o)
{
    return add_pool(m, x, NN_LAYER_MAX_POOL1D, o, "nn_add_max_pool1d");
}

ad_node *nn_add_max_pool2d(nn_model *m, ad_node *x, const ad_pool_opts *o)
{
    return add_pool(m, x, NN_LAYER_MAX_POOL2D, o, "nn_add_max_pool2d");
}

ad_node *nn_add_avg_pool1d(nn_model *m, ad_node *x, const ad_pool_opts *o)
{
    return add_pool(m, x, NN_LAYER_AVG_POOL1D, o, "nn_add_avg_pool1d");
}

ad_node *nn_add_avg_pool2d(nn_model *m, ad_node *x, const ad_pool_opts *o)
{
    return add_pool(m, x, NN_LAYER_AVG_POOL2D, o, "nn_add_avg_pool2d");
}

ad_node *nn_add_flatten(nn_model *m, ad_node *x)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_FLATTEN, "nn_add_flatten");
    return l ? nn_layer_apply(m, l, x) : NULL;
}

ad_node *nn_add_global_avg_pool(nn_model *m, ad_node *x)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_GLOBAL_AVG_POOL, "nn_add_global_avg_pool");
    return l ? nn_layer_apply(m, l, x) : NULL;
}

ad_node *nn_add_embedding(nn_model *m, ad_node *ids, int64_t vocab, int64_t dim)
{
    nn_layer *l = open_layer(m, ids, NN_LAYER_EMBEDDING, "nn_add_embedding");
    if (!l)
        return NULL;
    if (vocab < 1 || dim < 1)
        return bad_arg(m, ids, "nn_add_embedding: vocab and dim must be >= 1");
    l->vocab = vocab;
    l->units = dim;
    return nn_layer_apply(m, l, ids);
}

static ad_node *add_recurrent(nn_model *m, ad_node *x, nn_layer_kind kind, int64_t hidden,
                              nn_activation act, int batch_first, ad_node *h0, ad_node *c0,
                              ad_node **h_last, ad_node **c_last, const char *fn)
{
    if (h_last)
        *h_last = NULL;
    if (c_last)
        *c_last = NULL;
    nn_layer *l = open_layer(m, x, kind, fn);
    if (!l)
        return NULL;
    if (hidden < 1)
        return bad_arg(m, x, "nn_add_rnn/lstm/gru: hidden size must be >= 1");
    l->units = hidden;
    l->act = act;
    l->batch_first = batch_first != 0;
    l->h0 = h0;
    l->c0 = c0;
    ad_node *y = nn_layer_apply(m, l, x);
    if (y && h_last)
        *h_last = l->state_out;
    if (y && c_last)
        *c_last = l->state_cell;
    return y;
}

ad_node *nn_add_rnn(nn_model *m, ad_node *x, int64_t hidden, nn_activation act, int batch_first,
                    ad_node *h0, ad_node **h_last)
{
    return add_recurrent(m, x, NN_LAYER_RNN, hidden, act, batch_first, h0, NULL, h_last, NULL,
                         "nn_add_rnn");
}

ad_node *nn_add_lstm(nn_model *m, ad_node *x, int64_t hidden, int batch_first, ad_node *h0,
                     ad_node *c0, ad_node **h_last, ad_node **c_last)
{
    return add_recurrent(m, x, NN_LAYER_LSTM, hidden, NN_ACT_TANH, batch_first, h0, c0, h_last,
                         c_last, "nn_add_lstm");
}

ad_node *nn_add_gru(nn_model *m, ad_node *x, int64_t hidden, int batch_first, ad_node *h0,
                    ad_node **h_last)
{
    return add_recurrent(m, x, NN_LAYER_GRU, hidden, NN_ACT_TANH, batch_first, h0, NULL, h_last,
                         NULL, "nn_add_gru");
}

ad_node *nn_add_attention(nn_model *m, ad_node *x, int heads, int causal, double dropout)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_ATTENTION, "nn_add_attention");
    if (!l)
        return NULL;
    l->heads = heads;
    l->causal = causal != 0;
    l->rate = dropout;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_feed_forward(nn_model *m, ad_node *x, int64_t hidden, nn_activation act,
                             double dropout)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_FEED_FORWARD, "nn_add_feed_forward");
    if (!l)
        return NULL;
    if (hidden < 1)
        return bad_arg(m, x, "nn_add_feed_forward: hidden size must be >= 1");
    l->units = hidden;
    l->act = act;
    l->alpha = act == NN_ACT_LEAKY_RELU ? NN_LEAKY_RELU_ALPHA : NN_ELU_ALPHA;
    l->rate = dropout;
    return nn_layer_apply(m, l, x);
}

ad_node *nn_add_transformer_block(nn_model *m, ad_node *x, int heads, int64_t ff_hidden, int causal,
                                  double dropout)
{
    nn_layer *l = open_layer(m, x, NN_LAYER_TRANSFORMER_BLOCK, "nn_add_transformer_block");
    if (!l)
        return NULL;
    if (ff_hidden < 1)
        return bad_arg(m, x, "nn_add_transformer_block: ff_hidden must be >= 1");
    l->heads = heads;
    l->units = ff_hidden;
    l->causal = causal != 0;
    l->rate = dropout;
    l->eps = 1e-5;
    l->act = NN_ACT_RELU;
    return nn_layer_apply(m, l, x);
}
