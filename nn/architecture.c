/* architecture.c -- a model built from the library's layers, chained one
 * after the other, described as JSON (stored in its model file's metadata
 * under NN_ARCH_KEY) and rebuilt from that description with no code:
 *
 *   {"format": 1, "dtype": "f32", "seed": 42, "input": [32, 1, 28, 28],
 *    "loss": "cross_entropy",
 *    "layers": [{"kind": "conv2d", "units": 32, "kernel": [3, 3], ...}, ...]}
 */
#include <cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/checkpoint.h"
#include "nn_impl.h"

/* Nonzero when m is a chain of library layers from its input to its output. */
int nn_model_has_architecture(const nn_model *m)
{
    if (!m || !m->built || m->nlayers == 0 || !m->input)
        return 0;
    if (m->loss_node && m->loss == NN_LOSS_NONE)
        return 0; /* a custom loss is code */
    int64_t owned = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (l->input != (i ? m->layers[i - 1].output : m->input) || l->h0 || l->c0)
            return 0;
        owned += l->nparams;
    }
    return m->layers[m->nlayers - 1].output == m->output && owned == m->npinfo;
}

static cJSON *int_pair(const int *v) { return cJSON_CreateIntArray(v, 2); }

static cJSON *layer_json(const nn_layer *l)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "kind", nn_layer_kind_name(l->kind));
    cJSON_AddNumberToObject(o, "units", (double)l->units);
    cJSON_AddNumberToObject(o, "vocab", (double)l->vocab);
    cJSON_AddNumberToObject(o, "bias", l->bias);
    cJSON_AddStringToObject(o, "init", nn_init_name(l->init) ? nn_init_name(l->init) : "zeros");
    cJSON_AddStringToObject(o, "act",
                            nn_activation_name(l->act) ? nn_activation_name(l->act) : "identity");
    cJSON_AddNumberToObject(o, "alpha", l->alpha);
    cJSON_AddNumberToObject(o, "rate", l->rate);
    cJSON_AddNumberToObject(o, "momentum", l->momentum);
    cJSON_AddNumberToObject(o, "eps", l->eps);
    cJSON_AddItemToObject(o, "kernel", int_pair(l->kernel));
    cJSON_AddItemToObject(o, "stride", int_pair(l->stride));
    cJSON_AddItemToObject(o, "padding", int_pair(l->padding));
    cJSON_AddItemToObject(o, "dilation", int_pair(l->dilation));
    cJSON_AddNumberToObject(o, "groups", l->groups);
    cJSON_AddNumberToObject(o, "naxes", l->naxes);
    cJSON_AddNumberToObject(o, "affine", l->affine);
    cJSON_AddNumberToObject(o, "heads", l->heads);
    cJSON_AddNumberToObject(o, "causal", l->causal);
    cJSON_AddNumberToObject(o, "batch_first", l->batch_first);
    return o;
}

char *nn_model_architecture(const nn_model *m)
{
    if (!nn_model_has_architecture(m))
        return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *layers = cJSON_CreateArray();
    if (!root || !layers) {
        cJSON_Delete(root);
        cJSON_Delete(layers);
        return NULL;
    }
    cJSON_AddNumberToObject(root, "format", 1);
    cJSON_AddStringToObject(root, "dtype", m->dtype == AD_F32 ? "f32" : "f64");
    cJSON_AddNumberToObject(root, "seed", (double)m->seed);
    cJSON *in = cJSON_CreateArray();
    for (int i = 0; in && i < ad_ndim(m->input); i++)
        cJSON_AddItemToArray(
            in, cJSON_CreateNumber((double)(i ? ad_shape(m->input)[i] : m->max_batch)));
    cJSON_AddItemToObject(root, "input", in);
    cJSON_AddStringToObject(root, "loss", nn_loss_name(m->loss));
    for (int i = 0; i < m->nlayers; i++)
        cJSON_AddItemToArray(layers, layer_json(&m->layers[i]));
    cJSON_AddItemToObject(root, "layers", layers);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* Numbers of a description are read through a reader that keeps the first
 * one out of range: the file is data from anywhere, and a double converted
 * to an integer type it does not fit is undefined behaviour. */
typedef struct {
    const char *key; /* the first bad field, NULL while every one is fine */
    double lo, hi;   /* the range it missed */
} reader;

static void bad_field(reader *r, const char *key, double lo, double hi)
{
    if (!r->key)
        *r = (reader){key, lo, hi};
}

/* A finite number (0 when absent). */
static double real_field(reader *r, const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return 0.0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        bad_field(r, key, -DBL_MAX, DBL_MAX);
        return 0.0;
    }
    return v->valuedouble;
}

/* An integral number v in [lo, hi] (0 when v is NULL). */
static int64_t int_value(reader *r, const cJSON *v, const char *key, double lo, double hi)
{
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : lo - 1;
    if (!(d >= lo && d <= hi) || d != floor(d)) {
        bad_field(r, key, lo, hi);
        return 0;
    }
    return (int64_t)d;
}

/* Field key of o, an integer in [0, hi] (0 when absent). */
static int64_t int_field(reader *r, const cJSON *o, const char *key, double hi)
{
    return int_value(r, cJSON_GetObjectItemCaseSensitive(o, key), key, 0, hi);
}

/* Sizes (units, vocabulary rows, input axes): below 2^53, exact in a double. */
#define SIZE_MAX_FIELD 9007199254740992.0

static void pair(reader *r, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    for (int i = 0; i < 2; i++)
        out[i] =
            (int)int_value(r, cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : NULL, key, 0, INT_MAX);
}

static int name_of(const cJSON *o, const char *key, int (*from)(const char *), int fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    int k = cJSON_IsString(v) ? from(v->valuestring) : -1;
    return k >= 0 ? k : fallback;
}

nn_model *nn_model_from_architecture_with(const char *json, int64_t batch, ad_alloc_fn alloc,
                                          void *ud, ad_error *err)
{
    if (err) {
        err->code = AD_OK;
        err->message[0] = '\0';
    }
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    int nd = cJSON_IsArray(input) ? cJSON_GetArraySize(input) : 0;
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!root || !cJSON_IsNumber(format) || format->valuedouble != 1 || !cJSON_IsArray(layers) ||
        nd < 1 || nd > AD_MAX_DIMS || !cJSON_IsString(dt)) {
        ad_error_set(err, AD_EFORMAT, "nn_model_from_architecture: %s%s",
                     root ? "not a chainrule architecture (format 1, dtype, input, layers)"
                          : "the architecture is not JSON",
                     "");
        cJSON_Delete(root);
        return NULL;
    }
    reader r = {NULL, 0, 0};
    int64_t shape[AD_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        shape[i] = int_value(&r, cJSON_GetArrayItem(input, i), "input", 1, SIZE_MAX_FIELD);
    if (batch > 0)
        shape[0] = batch;
    /* a seed is written as a double: 2^64 and above do not convert */
    uint64_t seed = (uint64_t)int_field(&r, root, "seed", 9223372036854774784.0);
    if (r.key) {
        ad_error_set(err, AD_EFORMAT,
                     "nn_model_from_architecture: \"%s\" is not an integer in [%.0f, %.0f]", r.key,
                     r.lo, r.hi);
        cJSON_Delete(root);
        return NULL;
    }
    nn_model *m = nn_model_new_with(strcmp(dt->valuestring, "f64") == 0 ? AD_F64 : AD_F32, seed,
                                    alloc, ud, err);
    ad_node *h = m ? nn_model_add_input(m, nd, shape, "x") : NULL;
    int nl = cJSON_GetArraySize(layers);
    for (int i = 0; h && i < nl; i++) {
        const cJSON *o = cJSON_GetArrayItem(layers, i);
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
        int k = cJSON_IsString(kind) ? nn_layer_kind_from_name(kind->valuestring) : -1;
        if (k < 0) {
            ad_error_set(err, AD_EFORMAT,
                         "nn_model_from_architecture: unknown layer kind '%.64s'%s",
                         cJSON_IsString(kind) ? kind->valuestring : "?", "");
            nn_model_free(m);
            cJSON_Delete(root);
            return NULL;
        }
        nn_layer *l = nn_model_push_layer(m, (nn_layer_kind)k, "nn_model_from_architecture");
        if (!l) {
            h = NULL;
            break;
        }
        l->units = int_field(&r, o, "units", SIZE_MAX_FIELD);
        l->vocab = int_field(&r, o, "vocab", SIZE_MAX_FIELD);
        l->bias = (int)int_field(&r, o, "bias", 1);
        l->init = (nn_init)name_of(o, "init", nn_init_from_name, NN_INIT_ZEROS);
        l->act = (nn_activation)name_of(o, "act", nn_activation_from_name, NN_ACT_IDENTITY);
        l->alpha = real_field(&r, o, "alpha");
        l->rate = real_field(&r, o, "rate");
        l->momentum = real_field(&r, o, "momentum");
        l->eps = real_field(&r, o, "eps");
        pair(&r, o, "kernel", l->kernel);
        pair(&r, o, "stride", l->stride);
        pair(&r, o, "padding", l->padding);
        pair(&r, o, "dilation", l->dilation);
        l->groups = (int)int_field(&r, o, "groups", INT_MAX);
        l->naxes = (int)int_field(&r, o, "naxes", AD_MAX_DIMS);
        l->affine = (int)int_field(&r, o, "affine", 1);
        l->heads = (int)int_field(&r, o, "heads", INT_MAX);
        l->causal = (int)int_field(&r, o, "causal", 1);
        l->batch_first = (int)int_field(&r, o, "batch_first", 1);
        char why[160];
        if (r.key || nn_layer_check(l, why, sizeof why, NULL) != 0) {
            if (r.key && r.hi == DBL_MAX)
                snprintf(why, sizeof why, "\"%s\" is not a finite number", r.key);
            else if (r.key)
                snprintf(why, sizeof why, "\"%s\" is not an integer in [%.0f, %.0f]", r.key, r.lo,
                         r.hi);
            ad_error_set(err, AD_EFORMAT, "nn_model_from_architecture: layer %d (%s): %s", i,
                         nn_layer_kind_name(l->kind), why);
            nn_model_free(m);
            cJSON_Delete(root);
            return NULL;
        }
    }
    /* applied as nn_model_build applies layers, so the rebuilt model
       computes what the saved one did, bit for bit */
    if (h)
        h = nn_layers_apply_chain(m, 0, h, NULL);
    int loss = name_of(root, "loss", nn_loss_from_name, NN_LOSS_NONE);
    cJSON_Delete(root);
    if (!m || !h || nn_model_set_loss(m, (nn_loss)loss) || nn_model_finish(m, h)) {
        if (m)
            ad_error_set(err, AD_EFORMAT, "nn_model_from_architecture: %.200s%s",
                         nn_model_error(m) ? nn_model_error(m) : "cannot build the model", "");
        nn_model_free(m);
        return NULL;
    }
    return m;
}

nn_model *nn_model_from_architecture(const char *json, int64_t batch, ad_error *err)
{
    return nn_model_from_architecture_with(json, batch, NULL, NULL, err);
}

nn_model *nn_model_load_with(const char *path, int64_t batch, ad_alloc_fn alloc, void *ud,
                             ad_error *err)
{
    ad_error cerr;
    if (!path) {
        ad_error_set(err, AD_EINVAL, "nn_model_load: path is NULL");
        return NULL;
    }
    io_checkpoint *ck = io_checkpoint_read_with(path, alloc, ud, &cerr);
    if (!ck) {
        ad_error_set(err, cerr.code, "nn_model_load: %.200s", cerr.message);
        return NULL;
    }
    const char *json = io_checkpoint_meta(ck, NN_ARCH_KEY);
    if (!json) {
        ad_error_set(err, AD_EUNSUPPORTED,
                     "nn_model_load: %.100s has no architecture (build the model in code, then "
                     "nn_model_load_safetensors)",
                     path);
        io_checkpoint_free(ck);
        return NULL;
    }
    nn_model *m = nn_model_from_architecture_with(json, batch, alloc, ud, err);
    io_checkpoint_free(ck);
    if (!m)
        return NULL;
    /* a training checkpoint's optimizer state is not the model's */
    if (nn_model_load_safetensors(m, path, NN_MODEL_ALLOW_OPTIMIZER) != 0) {
        ad_error_set(err, AD_EMISMATCH, "nn_model_load: %.200s", nn_model_error(m));
        nn_model_free(m);
        return NULL;
    }
    return m;
}

nn_model *nn_model_load(const char *path, int64_t batch, ad_error *err)
{
    return nn_model_load_with(path, batch, NULL, NULL, err);
}
