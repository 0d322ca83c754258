/* spec.c -- models written as a layer list, the grammar of `chainrule
 * train --model` (docs/training.md, "Models"):
 *
 *   spec   := preset | layer ("," layer)*          presets: mlp, cnn
 *   layer  := name ["(" [arg ("," arg)*] ")"]
 *   arg    := value | key "=" value                positional first
 *   value  := integer | integer "x" integer | number | name
 *
 * e.g. "conv2d(32,3,pad=1),relu,maxpool2d(2),flatten,dense(10)". Spaces
 * are allowed between tokens. The list is parsed into the same layer
 * records the nn_add_* functions fill, then built as nn_model_build builds
 * a stack (nn_layers_apply_chain), so the model carries its architecture
 * and nn_model_load rebuilds it. nn_model_spec writes a model back as a
 * list. Every error names its column. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_impl.h"

/* Longest spec read (a preset expands to far less). */
#define SPEC_MAX 4096
/* Most layers in a list. */
#define SPEC_MAX_LAYERS 256

/* ------------------------------------------------------------- arguments */

typedef enum {
    A_UNITS,
    A_KERNEL,
    A_STRIDE,
    A_PAD,
    A_DILATION,
    A_GROUPS,
    A_BIAS,
    A_INIT,
    A_RATE,
    A_MOMENTUM,
    A_EPS,
    A_ALPHA,
    A_HEADS,
    A_CAUSAL,
    A_AFFINE,
    A_AXES,
    A_ACT,
    A_VOCAB,
    A_COUNT
} arg_id;

#define BIT(a) (1u << (a))

/* Keyword names (the first for each argument is the one nn_model_spec writes). */
static const struct {
    const char *name;
    arg_id id;
} keys[] = {
    {"units", A_UNITS},       {"kernel", A_KERNEL},     {"stride", A_STRIDE},
    {"pad", A_PAD},           {"dilation", A_DILATION}, {"groups", A_GROUPS},
    {"bias", A_BIAS},         {"init", A_INIT},         {"rate", A_RATE},
    {"momentum", A_MOMENTUM}, {"eps", A_EPS},           {"alpha", A_ALPHA},
    {"heads", A_HEADS},       {"causal", A_CAUSAL},     {"affine", A_AFFINE},
    {"axes", A_AXES},         {"act", A_ACT},           {"vocab", A_VOCAB},
    {"padding", A_PAD},       {"dropout", A_RATE},      {"p", A_RATE},
    {"hidden", A_UNITS},      {"channels", A_UNITS},    {"dim", A_UNITS},
};

static const char *key_name(arg_id id)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].id == id)
            return keys[i].name;
    return "?";
}

/* How a value is read and the layer parameter whose range it has
   (nn_layer_check's table; NN_PARAM_COUNT: no range). */
typedef enum { V_INT, V_PAIR, V_REAL, V_BOOL, V_INIT, V_ACT } value_kind;

static const struct {
    value_kind kind;
    nn_layer_param param;
} values[A_COUNT] = {
    [A_UNITS] = {V_INT, NN_PARAM_UNITS},        [A_KERNEL] = {V_PAIR, NN_PARAM_KERNEL},
    [A_STRIDE] = {V_PAIR, NN_PARAM_STRIDE},     [A_PAD] = {V_PAIR, NN_PARAM_PADDING},
    [A_DILATION] = {V_PAIR, NN_PARAM_DILATION}, [A_GROUPS] = {V_INT, NN_PARAM_GROUPS},
    [A_BIAS] = {V_BOOL, NN_PARAM_COUNT},        [A_INIT] = {V_INIT, NN_PARAM_COUNT},
    [A_RATE] = {V_REAL, NN_PARAM_RATE},         [A_MOMENTUM] = {V_REAL, NN_PARAM_MOMENTUM},
    [A_EPS] = {V_REAL, NN_PARAM_EPS},           [A_ALPHA] = {V_REAL, NN_PARAM_ALPHA},
    [A_HEADS] = {V_INT, NN_PARAM_HEADS},        [A_CAUSAL] = {V_BOOL, NN_PARAM_COUNT},
    [A_AFFINE] = {V_BOOL, NN_PARAM_COUNT},      [A_AXES] = {V_INT, NN_PARAM_AXES},
    [A_ACT] = {V_ACT, NN_PARAM_COUNT},          [A_VOCAB] = {V_INT, NN_PARAM_VOCAB},
};

/* ---------------------------------------------------------------- layers */

/* What a layer name accepts: positional arguments in order (the first
 * `required` of them required) and the keywords. */
typedef struct {
    const char *name;
    nn_layer_kind kind;
    int npos, required;
    arg_id pos[2];
    unsigned keys;
} layer_syntax;

#define CONV_KEYS                                                                                  \
    (BIT(A_UNITS) | BIT(A_KERNEL) | BIT(A_STRIDE) | BIT(A_PAD) | BIT(A_DILATION) | BIT(A_GROUPS) | \
     BIT(A_BIAS))
#define POOL_KEYS (BIT(A_KERNEL) | BIT(A_STRIDE) | BIT(A_PAD))

static const layer_syntax syntax[] = {
    {"dense", NN_LAYER_DENSE, 1, 1, {A_UNITS}, BIT(A_UNITS) | BIT(A_BIAS) | BIT(A_INIT)},
    {"conv1d", NN_LAYER_CONV1D, 2, 2, {A_UNITS, A_KERNEL}, CONV_KEYS},
    {"conv2d", NN_LAYER_CONV2D, 2, 2, {A_UNITS, A_KERNEL}, CONV_KEYS},
    {"maxpool1d", NN_LAYER_MAX_POOL1D, 1, 1, {A_KERNEL}, POOL_KEYS},
    {"maxpool2d", NN_LAYER_MAX_POOL2D, 1, 1, {A_KERNEL}, POOL_KEYS},
    {"avgpool1d", NN_LAYER_AVG_POOL1D, 1, 1, {A_KERNEL}, POOL_KEYS},
    {"avgpool2d", NN_LAYER_AVG_POOL2D, 1, 1, {A_KERNEL}, POOL_KEYS},
    {"flatten", NN_LAYER_FLATTEN, 0, 0, {A_COUNT}, 0},
    {"globalavgpool", NN_LAYER_GLOBAL_AVG_POOL, 0, 0, {A_COUNT}, 0},
    {"dropout", NN_LAYER_DROPOUT, 1, 1, {A_RATE}, BIT(A_RATE)},
    {"batchnorm", NN_LAYER_BATCH_NORM, 0, 0, {A_COUNT}, BIT(A_MOMENTUM) | BIT(A_EPS)},
    {"layernorm", NN_LAYER_LAYER_NORM, 0, 0, {A_COUNT}, BIT(A_EPS) | BIT(A_AXES) | BIT(A_AFFINE)},
    {"embedding", NN_LAYER_EMBEDDING, 2, 2, {A_VOCAB, A_UNITS}, BIT(A_VOCAB) | BIT(A_UNITS)},
    {"rnn", NN_LAYER_RNN, 1, 1, {A_UNITS}, BIT(A_UNITS) | BIT(A_ACT)},
    {"lstm", NN_LAYER_LSTM, 1, 1, {A_UNITS}, BIT(A_UNITS)},
    {"gru", NN_LAYER_GRU, 1, 1, {A_UNITS}, BIT(A_UNITS)},
    {"attention", NN_LAYER_ATTENTION, 1, 1, {A_HEADS}, BIT(A_HEADS) | BIT(A_CAUSAL) | BIT(A_RATE)},
    {"feedforward",
     NN_LAYER_FEED_FORWARD,
     1,
     1,
     {A_UNITS},
     BIT(A_UNITS) | BIT(A_ACT) | BIT(A_RATE)},
    {"transformer",
     NN_LAYER_TRANSFORMER_BLOCK,
     2,
     2,
     {A_HEADS, A_UNITS},
     BIT(A_HEADS) | BIT(A_UNITS) | BIT(A_CAUSAL) | BIT(A_RATE)},
};
/* activations: their own names (relu, tanh, leaky_relu(0.2), ...) */
static const layer_syntax activation_syntax = {"activation", NN_LAYER_ACTIVATION, 1, 0,
                                               {A_ALPHA},    BIT(A_ALPHA)};

/* The preset cnn: two convolution blocks and a dense head (PyTorch's
   classic Fashion-MNIST network); %lld is the number of classes. */
#define CNN_PRESET                                                                                 \
    "conv2d(32,3,pad=1),relu,maxpool2d(2),conv2d(64,3,pad=1),relu,maxpool2d(2),flatten,"           \
    "dense(128),relu,dropout(0.25),dense(%lld)"

/* ---------------------------------------------------------------- parser */

typedef struct {
    const char *s; /* the text parsed (a preset's expansion or the caller's) */
    size_t at;     /* next byte */
    bool preset;   /* s is the expansion of the preset named in name */
    const char *name;
    ad_error *err;
    int *column;
} parser;

static int fail_at(parser *p, size_t at, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail_at(parser *p, size_t at, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->preset) {
        ad_error_set(p->err, AD_EINVAL, "nn_model_from_spec: preset %s (%.60s...): %s", p->name,
                     p->s, msg);
        if (p->column)
            *p->column = 0;
    } else {
        ad_error_set(p->err, AD_EINVAL, "nn_model_from_spec: column %zu: %s", at + 1, msg);
        if (p->column)
            *p->column = (int)at + 1;
    }
    return -1;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static void skip_space(parser *p)
{
    while (p->s[p->at] == ' ' || p->s[p->at] == '\t')
        p->at++;
}

/* A name [A-Za-z_][A-Za-z0-9_]* into buf; its length, 0 when there is none. */
static size_t read_name(parser *p, char *buf, size_t size)
{
    size_t n = 0;
    if (!is_alpha(p->s[p->at]))
        return 0;
    while (is_alpha(p->s[p->at + n]) || is_digit(p->s[p->at + n]))
        n++;
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), p->s + p->at);
    p->at += n;
    return n;
}

/* The text of a value: a run of characters that can appear in one. */
static size_t value_text(parser *p, char *buf, size_t size)
{
    size_t n = 0;
    for (char c; (c = p->s[p->at + n]) != '\0' &&
                 (is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '+');)
        n++;
    if (n >= size)
        n = size - 1;
    memcpy(buf, p->s + p->at, n);
    buf[n] = '\0';
    return n;
}

/* A decimal integer with nothing after it that fits an int (the record's
   kernel, stride... fields; units and vocab are checked against far less). */
static bool int_text(const char *t, int64_t *out)
{
    if (!is_digit(t[0]) && !(t[0] == '-' && is_digit(t[1])))
        return false;
    char *end;
    long long v = strtoll(t, &end, 10);
    if (*end != '\0' || v < INT_MIN || v > INT_MAX)
        return false;
    *out = v;
    return true;
}

/* One parsed layer: its record and where it starts. */
typedef struct {
    nn_layer rec;
    size_t column;
} parsed_layer;

/* Stores value text t of argument id into the record; its range is
   nn_layer_check's, asked once the value is stored. */
static int set_arg(parser *p, size_t at, const layer_syntax *ls, nn_layer *l, arg_id id,
                   const char *t)
{
    const char *key = key_name(id);
    int64_t a = 0, b = 0;
    double d = 0.0;
    char *end, range[80];
    nn_layer_param param = values[id].param;
    if (param != NN_PARAM_COUNT)
        nn_layer_param_range(param, range, sizeof range);
    switch (values[id].kind) {
    case V_INT:
        if (!int_text(t, &a))
            return fail_at(p, at, "%s of %s: '%s' is not %s", key, ls->name, t, range);
        break;
    case V_PAIR: {
        char first[32];
        const char *x = strchr(t, 'x');
        size_t n = x ? (size_t)(x - t) : strlen(t);
        snprintf(first, sizeof first, "%.*s", (int)(n < sizeof first ? n : sizeof first - 1), t);
        bool one_d = ls->kind == NN_LAYER_CONV1D || ls->kind == NN_LAYER_MAX_POOL1D ||
                     ls->kind == NN_LAYER_AVG_POOL1D;
        if (!int_text(first, &a) || (x && (one_d || !int_text(x + 1, &b))) ||
            !nn_layer_param_ok(param, (double)a) || (x && !nn_layer_param_ok(param, (double)b)))
            return fail_at(p, at, "%s of %s: '%s' is not %s%s", key, ls->name, t, range,
                           one_d ? "" : ", or a pair like 3x5");
        if (!x)
            b = one_d ? (id == A_KERNEL ? 1 : 0) : a;
        break;
    }
    case V_REAL:
        d = strtod(t, &end);
        if (end == t || *end != '\0')
            return fail_at(p, at, "%s of %s: '%s' is not %s", key, ls->name, t, range);
        break;
    case V_BOOL:
        if (strcmp(t, "true") == 0 || strcmp(t, "1") == 0)
            a = 1;
        else if (strcmp(t, "false") == 0 || strcmp(t, "0") == 0)
            a = 0;
        else
            return fail_at(p, at, "%s of %s: '%s' is not true or false", key, ls->name, t);
        break;
    case V_INIT:
        a = nn_init_from_name(t);
        if (a < 0)
            return fail_at(p, at,
                           "init of %s: unknown initializer '%s' (torch, he_uniform, he_normal, "
                           "glorot_uniform, glorot_normal, lecun_uniform, lecun_normal, zeros)",
                           ls->name, t);
        break;
    case V_ACT:
        a = nn_activation_from_name(t);
        if (a < 0 || a == NN_ACT_SOFTMAX || a == NN_ACT_LOG_SOFTMAX ||
            (ls->kind == NN_LAYER_RNN && a != NN_ACT_TANH && a != NN_ACT_RELU))
            return fail_at(p, at, "act of %s: '%s' is not %s", ls->name, t,
                           ls->kind == NN_LAYER_RNN ? "tanh or relu" : "an activation");
        break;
    }
    switch (id) {
    case A_UNITS:
        l->units = a;
        break;
    case A_VOCAB:
        l->vocab = a;
        break;
    case A_KERNEL:
        l->kernel[0] = (int)a;
        l->kernel[1] = (int)b;
        break;
    case A_STRIDE:
        l->stride[0] = (int)a;
        l->stride[1] = (int)b;
        break;
    case A_PAD:
        l->padding[0] = (int)a;
        l->padding[1] = (int)b;
        break;
    case A_DILATION:
        l->dilation[0] = (int)a;
        l->dilation[1] = (int)b;
        break;
    case A_GROUPS:
        l->groups = (int)a;
        break;
    case A_BIAS:
        l->bias = (int)a;
        break;
    case A_INIT:
        l->init = (nn_init)a;
        break;
    case A_RATE:
        l->rate = d;
        break;
    case A_MOMENTUM:
        l->momentum = d;
        break;
    case A_EPS:
        l->eps = d;
        break;
    case A_ALPHA:
        l->alpha = d;
        break;
    case A_HEADS:
        l->heads = (int)a;
        break;
    case A_CAUSAL:
        l->causal = (int)a;
        break;
    case A_AFFINE:
        l->affine = (int)a;
        break;
    case A_AXES:
        l->naxes = (int)a;
        break;
    case A_ACT:
        l->act = (nn_activation)a;
        break;
    default:
        break;
    }
    return 0;
}

/* nn_layer_check on a parsed layer: a value out of range is reported at the
   argument that gave it (the layer's column for a default). */
static int check_layer(parser *p, const layer_syntax *ls, const nn_layer *l, size_t start,
                       const size_t *arg_at, char (*arg_text)[64])
{
    char why[160], range[80];
    nn_layer_param bad;
    if (nn_layer_check(l, why, sizeof why, &bad) == 0)
        return 0;
    for (int id = 0; id < A_COUNT; id++)
        if (values[id].param == bad && bad != NN_PARAM_COUNT && arg_text[id][0])
            return fail_at(p, arg_at[id], "%s of %s: '%s' is not %s", key_name((arg_id)id),
                           ls->name, arg_text[id], nn_layer_param_range(bad, range, sizeof range));
    return fail_at(p, start, "%s: %s", ls->name, why);
}

/* The defaults of a layer kind (PyTorch's where it has them). */
static void layer_defaults(nn_layer *l, nn_layer_kind kind, nn_activation act)
{
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->act = act;
    switch (kind) {
    case NN_LAYER_DENSE:
    case NN_LAYER_CONV1D:
    case NN_LAYER_CONV2D:
        l->bias = 1;
        l->init = NN_INIT_TORCH;
        l->stride[0] = l->stride[1] = 1;
        l->dilation[0] = l->dilation[1] = 1;
        l->groups = 1;
        break;
    case NN_LAYER_BATCH_NORM:
        l->momentum = 0.1;
        l->eps = 1e-5;
        l->affine = 1;
        break;
    case NN_LAYER_LAYER_NORM:
        l->eps = 1e-5;
        l->naxes = 1;
        l->affine = 1;
        break;
    case NN_LAYER_ACTIVATION:
        l->alpha = act == NN_ACT_LEAKY_RELU ? NN_LEAKY_RELU_ALPHA
                   : act == NN_ACT_ELU      ? NN_ELU_ALPHA
                                            : 0.0;
        break;
    case NN_LAYER_RNN:
        l->act = NN_ACT_TANH;
        l->batch_first = 1;
        break;
    case NN_LAYER_LSTM:
    case NN_LAYER_GRU:
        l->act = NN_ACT_TANH;
        l->batch_first = 1;
        break;
    case NN_LAYER_FEED_FORWARD:
        l->act = NN_ACT_RELU;
        break;
    case NN_LAYER_TRANSFORMER_BLOCK:
        l->eps = 1e-5;
        l->act = NN_ACT_RELU;
        break;
    default:
        break;
    }
}

/* One layer at p->at into out. */
static int parse_layer(parser *p, parsed_layer *out)
{
    char name[40];
    skip_space(p);
    size_t start = p->at;
    out->column = start;
    if (!read_name(p, name, sizeof name))
        return p->s[start] ? fail_at(p, start, "expected a layer name, found '%c'", p->s[start])
                           : fail_at(p, start, "expected a layer name, found the end");
    const layer_syntax *ls = NULL;
    nn_activation act = NN_ACT_IDENTITY;
    for (size_t i = 0; i < sizeof syntax / sizeof syntax[0] && !ls; i++)
        if (strcmp(name, syntax[i].name) == 0)
            ls = &syntax[i];
    if (!ls) {
        int a = nn_activation_from_name(name);
        if (a == NN_ACT_SOFTMAX || a == NN_ACT_LOG_SOFTMAX)
            return fail_at(p, start,
                           "%s: the cross-entropy loss applies softmax itself; end the list with "
                           "the logits (e.g. dense(10))",
                           name);
        if (a < 0)
            return fail_at(p, start,
                           "unknown layer '%s' (dense, conv1d, conv2d, maxpool1d, maxpool2d, "
                           "avgpool1d, avgpool2d, flatten, globalavgpool, dropout, batchnorm, "
                           "layernorm, an activation such as relu, ...)",
                           name);
        ls = &activation_syntax;
        act = (nn_activation)a;
    }
    nn_layer *l = &out->rec;
    layer_defaults(l, ls->kind, act);
    size_t arg_at[A_COUNT] = {0};
    char arg_text[A_COUNT][64] = {{0}};
    unsigned seen = 0;
    int npos = 0;
    skip_space(p);
    if (p->s[p->at] == '(') {
        p->at++;
        skip_space(p);
        bool keyword_seen = false;
        while (p->s[p->at] != ')') {
            size_t at = p->at;
            arg_id id = A_COUNT;
            /* key=value? */
            char key[40];
            size_t save = p->at;
            if (read_name(p, key, sizeof key)) {
                skip_space(p);
                if (p->s[p->at] == '=') {
                    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                        if (strcmp(key, keys[i].name) == 0)
                            id = keys[i].id;
                    if (id == A_COUNT || !(ls->keys & BIT(id)))
                        return fail_at(p, at, "%s has no argument '%s'", name, key);
                    p->at++;
                    skip_space(p);
                    keyword_seen = true;
                } else {
                    p->at = save; /* a value that is a name (true, he_uniform) */
                }
            }
            if (id == A_COUNT) {
                if (keyword_seen)
                    return fail_at(p, at, "a positional argument after a keyword one");
                if (npos == ls->npos)
                    return fail_at(p, at, "%s takes %s", name,
                                   ls->npos == 0   ? "no arguments"
                                   : ls->npos == 1 ? "one positional argument"
                                                   : "two positional arguments");
                id = ls->pos[npos++];
                if (ls->kind == NN_LAYER_ACTIVATION && act != NN_ACT_LEAKY_RELU &&
                    act != NN_ACT_ELU)
                    return fail_at(p, at, "%s takes no arguments", name);
            }
            if (seen & BIT(id))
                return fail_at(p, at, "%s given twice", key_name(id));
            seen |= BIT(id);
            char text[64];
            size_t vat = p->at;
            if (value_text(p, text, sizeof text) == 0)
                return p->s[vat] ? fail_at(p, vat, "expected a value, found '%c'", p->s[vat])
                                 : fail_at(p, vat, "expected a value, found the end");
            if (set_arg(p, vat, ls, l, id, text))
                return -1;
            arg_at[id] = vat;
            memcpy(arg_text[id], text, sizeof text);
            p->at += strlen(text);
            skip_space(p);
            if (p->s[p->at] == ',') {
                p->at++;
                skip_space(p);
                if (p->s[p->at] == ')')
                    return fail_at(p, p->at, "expected an argument after ','");
            } else if (p->s[p->at] != ')') {
                return p->s[p->at]
                           ? fail_at(p, p->at, "expected ',' or ')', found '%c'", p->s[p->at])
                           : fail_at(p, p->at, "expected ')', found the end");
            }
        }
        p->at++; /* ')' */
    }
    for (int i = 0; i < ls->required; i++)
        if (!(seen & BIT(ls->pos[i])))
            return fail_at(p, start, "%s needs %s (e.g. %s)", name, key_name(ls->pos[i]),
                           ls->kind == NN_LAYER_DENSE               ? "dense(128)"
                           : ls->kind == NN_LAYER_CONV2D            ? "conv2d(32,3)"
                           : ls->kind == NN_LAYER_CONV1D            ? "conv1d(32,3)"
                           : ls->kind == NN_LAYER_DROPOUT           ? "dropout(0.25)"
                           : ls->kind == NN_LAYER_EMBEDDING         ? "embedding(1000,64)"
                           : ls->kind == NN_LAYER_ATTENTION         ? "attention(4)"
                           : ls->kind == NN_LAYER_TRANSFORMER_BLOCK ? "transformer(4,256)"
                           : ls->npos && ls->pos[0] == A_KERNEL     ? "maxpool2d(2)"
                                                                    : "lstm(128)");
    /* pooling strides default to the kernel (PyTorch) */
    if (ls->keys == POOL_KEYS && !(seen & BIT(A_STRIDE))) {
        l->stride[0] = l->kernel[0];
        l->stride[1] = l->kernel[1];
    }
    if (check_layer(p, ls, l, start, arg_at, arg_text))
        return -1;
    if ((ls->kind == NN_LAYER_MAX_POOL1D || ls->kind == NN_LAYER_MAX_POOL2D ||
         ls->kind == NN_LAYER_AVG_POOL1D || ls->kind == NN_LAYER_AVG_POOL2D) &&
        (2 * l->padding[0] > l->kernel[0] || 2 * l->padding[1] > l->kernel[1]))
        return fail_at(p, start, "%s: pad may be at most half the kernel", name);
    return 0;
}

/* Parses the whole list into layers (at most max); the count or -1. */
static int parse_list(parser *p, parsed_layer *layers, int max)
{
    int n = 0;
    for (;;) {
        if (n == max)
            return fail_at(p, p->at, "more than %d layers", max);
        if (parse_layer(p, &layers[n]))
            return -1;
        n++;
        skip_space(p);
        if (p->s[p->at] == '\0')
            return n;
        if (p->s[p->at] != ',')
            return fail_at(p, p->at, "expected ',' between layers, found '%c'", p->s[p->at]);
        p->at++;
    }
}

/* ----------------------------------------------------------------- build */

/* How the first layer that cares reads an example of the given shape: the
 * input leaf's shape after the batch axis. */
static int input_shape(const parsed_layer *layers, int n, const nn_spec_options *o, int64_t *shape,
                       int *ndim, parser *p)
{
    int64_t numel = 1;
    for (int i = 0; i < o->ndim; i++)
        numel *= o->shape[i];
    /* an example (C, H, W), (C, L) or (F) */
    int64_t c = o->ndim >= 2 ? o->shape[0] : 1;
    int64_t h = o->ndim == 3 ? o->shape[1] : 1;
    int64_t w = o->ndim >= 2 ? o->shape[o->ndim - 1] : o->shape[0];
    for (int i = 0; i < n; i++) {
        switch (layers[i].rec.kind) {
        case NN_LAYER_CONV2D:
        case NN_LAYER_MAX_POOL2D:
        case NN_LAYER_AVG_POOL2D:
            if (o->ndim != 3)
                return fail_at(p, layers[i].column,
                               "%s needs images (channels, height, width); the examples are "
                               "rows of %lld values",
                               nn_layer_kind_name(layers[i].rec.kind), (long long)numel);
            *ndim = 3;
            shape[0] = c;
            shape[1] = h;
            shape[2] = w;
            return 0;
        case NN_LAYER_CONV1D:
        case NN_LAYER_MAX_POOL1D:
        case NN_LAYER_AVG_POOL1D: /* (C, H W): channels of one long row */
        case NN_LAYER_GLOBAL_AVG_POOL:
            *ndim = 2;
            shape[0] = c;
            shape[1] = numel / c;
            return 0;
        case NN_LAYER_RNN:
        case NN_LAYER_LSTM:
        case NN_LAYER_GRU:
        case NN_LAYER_ATTENTION:
        case NN_LAYER_TRANSFORMER_BLOCK: /* (T, F): an image's rows are the steps */
            *ndim = 2;
            shape[0] = o->ndim == 3 ? h : o->ndim == 2 ? c : 1;
            shape[1] = numel / shape[0];
            return 0;
        case NN_LAYER_FLATTEN: /* flattens whatever it is given */
            *ndim = o->ndim;
            memcpy(shape, o->shape, (size_t)o->ndim * sizeof *shape);
            return 0;
        case NN_LAYER_DENSE:
        case NN_LAYER_EMBEDDING:
        case NN_LAYER_PERCEPTRON:
        case NN_LAYER_FEED_FORWARD:
            i = n; /* rows of values */
            break;
        default:
            break; /* activations, dropout, norms: decided by what follows */
        }
    }
    *ndim = 1;
    shape[0] = numel;
    return 0;
}

/* A description of a shape for messages: "(32,1,28,28)". */
static const char *shape_text(const ad_node *x, char *buf, size_t size)
{
    return x ? ad_shape_str(x, buf, size) : "?";
}

int nn_mlp_spec(int nhidden, const int64_t *hidden, nn_activation act, int64_t outputs, char *buf,
                size_t size)
{
    if (!buf || size == 0 || nhidden < 0 || (nhidden > 0 && !hidden) || outputs < 1 ||
        (act != NN_ACT_IDENTITY && !nn_activation_name(act)))
        return -1;
    size_t used = 0;
    buf[0] = '\0';
    const char *init = nn_init_name(nn_init_for_activation(act));
    for (int i = 0; i <= nhidden; i++) {
        bool last = i == nhidden;
        int64_t units = last ? outputs : hidden[i];
        int k = snprintf(buf + used, size - used, "%sdense(%lld,init=%s)", i ? "," : "",
                         (long long)units,
                         last ? nn_init_name(nn_init_for_activation(NN_ACT_IDENTITY)) : init);
        if (k < 0 || (size_t)k >= size - used)
            return -1;
        used += (size_t)k;
        if (!last && act != NN_ACT_IDENTITY) {
            k = snprintf(buf + used, size - used, ",%s", nn_activation_name(act));
            if (k < 0 || (size_t)k >= size - used)
                return -1;
            used += (size_t)k;
        }
    }
    return 0;
}

/* The list a preset name stands for (outputs: the last layer's width), or
 * NULL when spec is not a preset. */
static const char *preset(const char *spec, int64_t outputs, char *buf, size_t size)
{
    if (strcmp(spec, "mlp") == 0) {
        const int64_t hidden[2] = {300, 100};
        return nn_mlp_spec(2, hidden, NN_ACT_RELU, outputs, buf, size) == 0 ? buf : NULL;
    }
    if (strcmp(spec, "cnn") == 0) {
        snprintf(buf, size, CNN_PRESET, (long long)outputs);
        return buf;
    }
    return NULL;
}

/* Sets up p for spec (a preset's expansion into buf) after the checks
 * common to parsing and building; -1 with *err. */
static int start(parser *p, const char *spec, int64_t outputs, char *buf, size_t size, char *name,
                 ad_error *err, int *column)
{
    if (err) {
        err->code = AD_OK;
        err->message[0] = '\0';
    }
    if (column)
        *column = 0;
    *p = (parser){spec, 0, false, spec, err, column};
    if (!spec)
        return ad_error_set(err, AD_EINVAL, "nn_model_from_spec: spec is NULL");
    if (strlen(spec) > SPEC_MAX)
        return ad_error_set(err, AD_EINVAL,
                            "nn_model_from_spec: the list is longer than %d characters", SPEC_MAX);
    size_t lead = strspn(spec, " \t"), len = strlen(spec + lead);
    while (len && (spec[lead + len - 1] == ' ' || spec[lead + len - 1] == '\t'))
        len--;
    if (len < 16) {
        snprintf(name, 16, "%.*s", (int)len, spec + lead);
        if (preset(name, outputs, buf, size)) {
            p->s = buf;
            p->preset = true;
            p->name = name;
        }
    }
    return 0;
}

int nn_spec_check(const char *spec, ad_error *err, int *column)
{
    parser p;
    char expanded[512], name[16];
    if (start(&p, spec, 10, expanded, sizeof expanded, name, err, column) != 0)
        return -1;
    parsed_layer *layers = calloc(SPEC_MAX_LAYERS, sizeof *layers);
    if (!layers)
        return ad_error_set(err, AD_ENOMEM, "nn_model_from_spec: out of memory");
    int n = parse_list(&p, layers, SPEC_MAX_LAYERS);
    free(layers);
    return n < 0 ? -1 : 0;
}

nn_model *nn_model_from_spec(const char *spec, const nn_spec_options *o, ad_error *err, int *column)
{
    parser p;
    char expanded[512], name[16];
    if (!o) {
        start(&p, "", 1, expanded, sizeof expanded, name, err, column);
        ad_error_set(err, AD_EINVAL, "nn_model_from_spec: options is NULL");
        return NULL;
    }
    if (start(&p, spec, o->outputs, expanded, sizeof expanded, name, err, column) != 0)
        return NULL;
    int64_t numel = 1;
    bool shape_ok = o->ndim >= 1 && o->ndim <= 3;
    for (int i = 0; shape_ok && i < o->ndim; i++) {
        shape_ok = o->shape[i] >= 1 && o->shape[i] <= (INT64_C(1) << 31);
        numel *= shape_ok ? o->shape[i] : 1;
    }
    if (!shape_ok || numel > (INT64_C(1) << 31) || o->batch < 1 || o->batch > (1 << 20) ||
        o->outputs < 1 || (o->dtype != AD_F32 && o->dtype != AD_F64)) {
        ad_error_set(err, AD_EINVAL,
                     "nn_model_from_spec: bad options (an example of 1 to 3 axes, batch in [1, "
                     "2^20], outputs >= 1, dtype f32 or f64)");
        return NULL;
    }
    parsed_layer *layers = calloc(SPEC_MAX_LAYERS, sizeof *layers);
    if (!layers) {
        ad_error_set(err, AD_ENOMEM, "nn_model_from_spec: out of memory");
        return NULL;
    }
    nn_model *m = NULL;
    int n = parse_list(&p, layers, SPEC_MAX_LAYERS);
    int64_t shape[4] = {o->batch};
    int nd = 0;
    if (n < 0 || input_shape(layers, n, o, shape + 1, &nd, &p) != 0)
        goto out;
    m = nn_model_new_with(o->dtype, o->seed, o->alloc, o->alloc_ud, err);
    ad_node *x = m ? nn_model_add_input(m, nd + 1, shape, "x") : NULL;
    for (int i = 0; x && i < n; i++) {
        nn_layer *l = nn_model_push_layer(m, layers[i].rec.kind, "nn_model_from_spec");
        if (!l) {
            x = NULL;
            break;
        }
        nn_layer keep = *l; /* its index and name */
        *l = layers[i].rec;
        l->index = keep.index;
        memcpy(l->name, keep.name, sizeof l->name);
        l->first_param = -1;
    }
    int failed = -1;
    ad_node *y = x ? nn_layers_apply_chain(m, 0, x, &failed) : NULL;
    if (y && o->loss == NN_LOSS_CROSS_ENTROPY && ad_ndim(y) != 2) {
        char s1[64];
        fail_at(&p, layers[n - 1].column,
                "the list ends with %s output %s; a classifier's is (batch, classes): end it with "
                "flatten and dense(%lld)",
                m->layers[n - 1].kind == NN_LAYER_ACTIVATION
                    ? nn_activation_name(m->layers[n - 1].act)
                    : nn_layer_kind_name(m->layers[n - 1].kind),
                shape_text(y, s1, sizeof s1), (long long)o->outputs);
        nn_model_free(m);
        m = NULL;
        goto out;
    }
    if (y && nn_model_set_loss(m, o->loss) == 0 && nn_model_finish(m, y) == 0)
        goto out;
    if (m && failed >= 0) {
        char s1[64];
        const nn_layer *l = &m->layers[failed];
        fail_at(&p, layers[failed].column, "%s (input %s): %.150s", nn_layer_kind_name(l->kind),
                shape_text(l->input, s1, sizeof s1),
                ad_graph_error(m->g) ? ad_graph_error(m->g) : nn_model_error(m));
    } else if (m) {
        ad_error_set(err, AD_EINVAL, "nn_model_from_spec: %.200s", nn_model_error(m));
    }
    nn_model_free(m);
    m = NULL;
out:
    free(layers);
    return m;
}

/* --------------------------------------------------------------- writing */

/* Appends to buf; false when it does not fit. */
static bool put(char *buf, size_t size, size_t *used, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static bool put(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= size - *used)
        return false;
    *used += (size_t)k;
    return true;
}

/* "3" or "3x5" for a pair of a 2-d layer (the first only for 1-d ones). */
static bool put_pair(char *buf, size_t size, size_t *used, const char *sep, const char *key,
                     const int *v, bool two)
{
    if (two && v[0] != v[1])
        return put(buf, size, used, "%s%s%s%dx%d", sep, key, key[0] ? "=" : "", v[0], v[1]);
    return put(buf, size, used, "%s%s%s%d", sep, key, key[0] ? "=" : "", v[0]);
}

static bool put_layer(char *buf, size_t size, size_t *used, const nn_layer *l, bool first)
{
    const char *sep = first ? "" : ",";
    bool ok = true;
    bool two = l->kind == NN_LAYER_CONV2D || l->kind == NN_LAYER_MAX_POOL2D ||
               l->kind == NN_LAYER_AVG_POOL2D;
    nn_layer d;
    switch (l->kind) {
    case NN_LAYER_ACTIVATION:
        layer_defaults(&d, l->kind, l->act);
        ok = put(buf, size, used, "%s%s", sep, nn_activation_name(l->act));
        if (ok && l->alpha != d.alpha)
            ok = put(buf, size, used, "(%.17g)", l->alpha);
        return ok;
    case NN_LAYER_DENSE:
        ok = put(buf, size, used, "%sdense(%lld", sep, (long long)l->units);
        if (ok && !l->bias)
            ok = put(buf, size, used, ",bias=false");
        if (ok && l->init != NN_INIT_TORCH)
            ok = put(buf, size, used, ",init=%s", nn_init_name(l->init));
        return ok && put(buf, size, used, ")");
    case NN_LAYER_CONV1D:
    case NN_LAYER_CONV2D: {
        int one[2] = {1, 1}, zero[2] = {0, 0};
        const int *stride = l->stride[0] ? l->stride : one;
        const int *dil = l->dilation[0] ? l->dilation : one;
        ok = put(buf, size, used, "%s%s(%lld", sep, nn_layer_kind_name(l->kind),
                 (long long)l->units) &&
             put_pair(buf, size, used, ",", "", l->kernel, two);
        if (ok && (stride[0] != 1 || (two && stride[1] != 1)))
            ok = put_pair(buf, size, used, ",", "stride", stride, two);
        if (ok && memcmp(l->padding, zero, (two ? 2 : 1) * sizeof(int)) != 0)
            ok = put_pair(buf, size, used, ",", "pad", l->padding, two);
        if (ok && (dil[0] != 1 || (two && dil[1] != 1)))
            ok = put_pair(buf, size, used, ",", "dilation", dil, two);
        if (ok && l->groups > 1)
            ok = put(buf, size, used, ",groups=%d", l->groups);
        if (ok && !l->bias)
            ok = put(buf, size, used, ",bias=false");
        return ok && put(buf, size, used, ")");
    }
    case NN_LAYER_MAX_POOL1D:
    case NN_LAYER_MAX_POOL2D:
    case NN_LAYER_AVG_POOL1D:
    case NN_LAYER_AVG_POOL2D:
        ok = put(buf, size, used, "%s%s(", sep, nn_layer_kind_name(l->kind)) &&
             put_pair(buf, size, used, "", "", l->kernel, two);
        if (ok && l->stride[0] != 0 &&
            (l->stride[0] != l->kernel[0] || (two && l->stride[1] != l->kernel[1])))
            ok = put_pair(buf, size, used, ",", "stride", l->stride, two);
        if (ok && (l->padding[0] || (two && l->padding[1])))
            ok = put_pair(buf, size, used, ",", "pad", l->padding, two);
        return ok && put(buf, size, used, ")");
    case NN_LAYER_FLATTEN:
    case NN_LAYER_GLOBAL_AVG_POOL:
        return put(buf, size, used, "%s%s", sep, nn_layer_kind_name(l->kind));
    case NN_LAYER_DROPOUT:
        return put(buf, size, used, "%sdropout(%.17g)", sep, l->rate);
    case NN_LAYER_BATCH_NORM:
        return put(buf, size, used, "%sbatchnorm(momentum=%.17g,eps=%.17g)", sep, l->momentum,
                   l->eps);
    case NN_LAYER_LAYER_NORM:
        return put(buf, size, used, "%slayernorm(eps=%.17g,axes=%d,affine=%s)", sep, l->eps,
                   l->naxes, l->affine ? "true" : "false");
    case NN_LAYER_EMBEDDING:
        return put(buf, size, used, "%sembedding(%lld,%lld)", sep, (long long)l->vocab,
                   (long long)l->units);
    case NN_LAYER_RNN:
        return put(buf, size, used, "%srnn(%lld,act=%s)", sep, (long long)l->units,
                   nn_activation_name(l->act));
    case NN_LAYER_LSTM:
    case NN_LAYER_GRU:
        return put(buf, size, used, "%s%s(%lld)", sep, nn_layer_kind_name(l->kind),
                   (long long)l->units);
    case NN_LAYER_ATTENTION:
        return put(buf, size, used, "%sattention(%d,causal=%s,rate=%.17g)", sep, l->heads,
                   l->causal ? "true" : "false", l->rate);
    case NN_LAYER_FEED_FORWARD:
        return put(buf, size, used, "%sfeedforward(%lld,act=%s,rate=%.17g)", sep,
                   (long long)l->units, nn_activation_name(l->act), l->rate);
    case NN_LAYER_TRANSFORMER_BLOCK:
        return put(buf, size, used, "%stransformer(%d,%lld,causal=%s,rate=%.17g)", sep, l->heads,
                   (long long)l->units, l->causal ? "true" : "false", l->rate);
    default:
        return false; /* perceptrons and recurrent layers of other inputs: no syntax */
    }
}

int nn_model_spec(const nn_model *m, char *buf, size_t size)
{
    if (!m || !buf || size == 0)
        return -1;
    buf[0] = '\0';
    if (!nn_model_has_architecture(m))
        return -1;
    size_t used = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (!put_layer(buf, size, &used, &m->layers[i], i == 0)) {
            buf[0] = '\0';
            return -1;
        }
    return 0;
}
