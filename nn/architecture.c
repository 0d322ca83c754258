/* architecture.c -- a model built from the library's layers, chained one
 * after the other, described as JSON (stored in its model file's metadata
 * under NN_ARCH_KEY) and rebuilt from that description with no code:
 *
 *   {"format": 1, "dtype": "f32", "seed": 42, "input": [32, 1, 28, 28],
 *    "loss": "cross_entropy",
 *    "layers": [{"kind": "conv2d", "units": 32, "kernel": [3, 3], ...}, ...]}
 */
#include <cJSON.h>
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

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

static void pair(const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : NULL;
        out[i] = cJSON_IsNumber(e) ? e->valueint : 0;
    }
}

static int name_of(const cJSON *o, const char *key, int (*from)(const char *), int fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    int k = cJSON_IsString(v) ? from(v->valuestring) : -1;
    return k >= 0 ? k : fallback;
}

nn_model *nn_model_from_architecture(const char *json, int64_t batch, ad_error *err)
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
    if (!root || num(root, "format") != 1 || !cJSON_IsArray(layers) || nd < 1 || nd > AD_MAX_DIMS ||
        !cJSON_IsString(dt)) {
        ad_error_set(err, AD_EFORMAT, "nn_model_from_architecture: %s%s",
                     root ? "not a chainrule architecture (format 1, dtype, input, layers)"
                          : "the architecture is not JSON",
                     "");
        cJSON_Delete(root);
        return NULL;
    }
    int64_t shape[AD_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        shape[i] = (int64_t)cJSON_GetArrayItem(input, i)->valuedouble;
    if (batch > 0)
        shape[0] = batch;
    nn_model *m = nn_model_new(strcmp(dt->valuestring, "f64") == 0 ? AD_F64 : AD_F32,
                               (uint64_t)num(root, "seed"), err);
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
        if (!l)
            break;
        l->units = (int64_t)num(o, "units");
        l->vocab = (int64_t)num(o, "vocab");
        l->bias = (int)num(o, "bias");
        l->init = (nn_init)name_of(o, "init", nn_init_from_name, NN_INIT_ZEROS);
        l->act = (nn_activation)name_of(o, "act", nn_activation_from_name, NN_ACT_IDENTITY);
        l->alpha = num(o, "alpha");
        l->rate = num(o, "rate");
        l->momentum = num(o, "momentum");
        l->eps = num(o, "eps");
        pair(o, "kernel", l->kernel);
        pair(o, "stride", l->stride);
        pair(o, "padding", l->padding);
        pair(o, "dilation", l->dilation);
        l->groups = (int)num(o, "groups");
        l->naxes = (int)num(o, "naxes");
        l->affine = (int)num(o, "affine");
        l->heads = (int)num(o, "heads");
        l->causal = (int)num(o, "causal");
        l->batch_first = (int)num(o, "batch_first");
        h = nn_layer_apply(m, l, h);
    }
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

nn_model *nn_model_load(const char *path, int64_t batch, ad_error *err)
{
    ad_error cerr;
    if (!path) {
        ad_error_set(err, AD_EINVAL, "nn_model_load: path is NULL");
        return NULL;
    }
    io_checkpoint *ck = io_checkpoint_read(path, &cerr);
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
    nn_model *m = nn_model_from_architecture(json, batch, err);
    io_checkpoint_free(ck);
    if (!m)
        return NULL;
    if (nn_model_load_safetensors(m, path, 0) != 0) {
        ad_error_set(err, AD_EMISMATCH, "nn_model_load: %.200s", nn_model_error(m));
        nn_model_free(m);
        return NULL;
    }
    return m;
}
