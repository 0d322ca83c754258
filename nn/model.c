/* model.c -- the sequential model: layer declarations, the build that turns
 * them into one graph over flat parameter, gradient and state buffers,
 * introspection and parameter access. Passes and prediction: train.c. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nn_impl.h"

/* ------------------------------------------------------------ memory, errors */

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

void *nn_model_mem(nn_model *m, void *p, size_t osize, size_t nsize)
{
    return m->alloc(m->ud, p, osize, nsize);
}

int nn_model_fail(nn_model *m, int status, const char *fmt, ...)
{
    char buf[NN_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!m) /* no object to hold the message: the documented fallback */
        return nn_fail(status, "%s", buf);
    memcpy(m->err, buf, sizeof buf);
    return status;
}

const char *nn_model_error(const nn_model *m)
{
    if (!m)
        return "nn: model is NULL";
    if (m->err[0])
        return m->err;
    return m->g ? ad_graph_error(m->g) : NULL;
}

void nn_model_clear_error(nn_model *m)
{
    if (!m)
        return;
    m->err[0] = '\0';
    if (m->g)
        ad_graph_clear_error(m->g);
}

static void *elem_at(const nn_model *m, void *base, int64_t off)
{
    return (char *)base + (size_t)off * nn_dtype_size(m->dtype);
}

/* ------------------------------------------------------------ create, free */

nn_model *nn_model_create_with(ad_dtype dtype, int64_t in_features, ad_alloc_fn alloc, void *ud)
{
    if (dtype != AD_F32 && dtype != AD_F64) {
        nn_fail(NN_ERR_ARG, "nn_model_create: dtype %d is neither AD_F32 nor AD_F64", (int)dtype);
        return NULL;
    }
    if (in_features < 1) {
        nn_fail(NN_ERR_ARG, "nn_model_create: zero-width input (in_features %lld, need >= 1)",
                (long long)in_features);
        return NULL;
    }
    if (!alloc)
        alloc = default_alloc;
    nn_model *m = alloc(ud, NULL, 0, sizeof *m);
    if (!m) {
        nn_fail(NN_ERR_MEMORY, "nn_model_create: out of memory");
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->dtype = dtype;
    m->alloc = alloc;
    m->ud = ud;
    m->in_features = in_features;
    m->loss = NN_LOSS_NONE;
    return m;
}

nn_model *nn_model_create(ad_dtype dtype, int64_t in_features)
{
    return nn_model_create_with(dtype, in_features, NULL, NULL);
}

static size_t buffer_bytes(const nn_model *m, int64_t n)
{
    return (size_t)n * nn_dtype_size(m->dtype);
}

static void free_built(nn_model *m)
{
    ad_graph_free(m->g);
    m->g = NULL;
    if (m->params)
        nn_model_mem(m, m->params, buffer_bytes(m, m->nparams), 0);
    if (m->grads)
        nn_model_mem(m, m->grads, buffer_bytes(m, m->nparams), 0);
    if (m->state)
        nn_model_mem(m, m->state, buffer_bytes(m, m->nstate), 0);
    if (m->pinfo)
        nn_model_mem(m, m->pinfo, sizeof *m->pinfo * (size_t)m->cap_pinfo, 0);
    m->params = m->grads = m->state = NULL;
    m->pinfo = NULL;
    m->npinfo = m->cap_pinfo = 0;
    m->nparams = m->nstate = 0;
    m->input = m->target = m->output = m->loss_node = m->train_flag = NULL;
    m->built = false;
}

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    free_built(m);
    if (m->layers)
        nn_model_mem(m, m->layers, sizeof *m->layers * (size_t)m->cap_layers, 0);
    m->alloc(m->ud, m, sizeof *m, 0);
}

/* ------------------------------------------------------------ declaring layers */

static int check_open(nn_model *m, const char *fn)
{
    if (!m)
        return nn_fail(NN_ERR_NULL, "%s: model is NULL", fn);
    if (m->built)
        return nn_model_fail(m, NN_ERR_STATE, "%s: the model is already built", fn);
    return NN_OK;
}

static nn_layer *push_layer(nn_model *m, nn_layer_kind kind, const char *fn)
{
    if (m->nlayers == m->cap_layers) {
        int cap = m->cap_layers ? m->cap_layers * 2 : 8;
        nn_layer *l =
            nn_model_mem(m, m->layers, sizeof *l * (size_t)m->cap_layers, sizeof *l * (size_t)cap);
        if (!l) {
            nn_model_fail(m, NN_ERR_MEMORY, "%s: out of memory", fn);
            return NULL;
        }
        m->layers = l;
        m->cap_layers = cap;
    }
    nn_layer *l = &m->layers[m->nlayers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->index = m->kind_count[kind]++;
    l->w_off = l->b_off = l->s_off = -1;
    return l;
}

int nn_model_add_dense(nn_model *m, int64_t units, int bias, nn_init init)
{
    int rc = check_open(m, "nn_model_add_dense");
    if (rc)
        return rc;
    if (units < 1)
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_dense: zero-width layer (units %lld)",
                             (long long)units);
    if ((int)init < 0 || init >= NN_INIT_COUNT)
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_dense: unknown initializer %d",
                             (int)init);
    nn_layer *l = push_layer(m, NN_LAYER_DENSE, "nn_model_add_dense");
    if (!l)
        return NN_ERR_MEMORY;
    l->units = units;
    l->bias = bias != 0;
    l->init = init;
    return NN_OK;
}

int nn_model_add_activation_alpha(nn_model *m, nn_activation act, double alpha)
{
    int rc = check_open(m, "nn_model_add_activation");
    if (rc)
        return rc;
    if ((int)act < 0 || act >= NN_ACT_COUNT)
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_activation: unknown activation %d",
                             (int)act);
    if (!isfinite(alpha))
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_activation: alpha %g is not finite",
                             alpha);
    nn_layer *l = push_layer(m, NN_LAYER_ACTIVATION, "nn_model_add_activation");
    if (!l)
        return NN_ERR_MEMORY;
    l->act = act;
    l->alpha = alpha;
    return NN_OK;
}

int nn_model_add_activation(nn_model *m, nn_activation act)
{
    double alpha = act == NN_ACT_LEAKY_RELU ? NN_LEAKY_RELU_ALPHA : NN_ELU_ALPHA;
    return nn_model_add_activation_alpha(m, act, alpha);
}

int nn_model_add_perceptron(nn_model *m, int64_t units, nn_activation step)
{
    int rc = check_open(m, "nn_model_add_perceptron");
    if (rc)
        return rc;
    if (units < 1)
        return nn_model_fail(m, NN_ERR_ARG,
                             "nn_model_add_perceptron: zero-width layer (units %lld)",
                             (long long)units);
    if (step != NN_ACT_STEP && step != NN_ACT_SIGN && step != NN_ACT_STEP_ST &&
        step != NN_ACT_SIGN_ST)
        return nn_model_fail(m, NN_ERR_ARG,
                             "nn_model_add_perceptron: activation %s is not a step (step, sign, "
                             "step_st, sign_st)",
                             nn_activation_name(step) ? nn_activation_name(step) : "?");
    nn_layer *l = push_layer(m, NN_LAYER_PERCEPTRON, "nn_model_add_perceptron");
    if (!l)
        return NN_ERR_MEMORY;
    l->units = units;
    l->bias = 1;
    l->init = NN_INIT_ZEROS;
    l->act = step;
    return NN_OK;
}

int nn_model_add_dropout(nn_model *m, double rate)
{
    int rc = check_open(m, "nn_model_add_dropout");
    if (rc)
        return rc;
    if (!(rate >= 0 && rate < 1))
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_dropout: rate %g is not in [0, 1)", rate);
    nn_layer *l = push_layer(m, NN_LAYER_DROPOUT, "nn_model_add_dropout");
    if (!l)
        return NN_ERR_MEMORY;
    l->rate = rate;
    return NN_OK;
}

int nn_model_add_batch_norm(nn_model *m, double momentum, double eps)
{
    int rc = check_open(m, "nn_model_add_batch_norm");
    if (rc)
        return rc;
    if (!(momentum >= 0 && momentum <= 1))
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_batch_norm: momentum %g is not in [0, 1]",
                             momentum);
    if (!(eps > 0))
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_add_batch_norm: eps %g must be > 0", eps);
    nn_layer *l = push_layer(m, NN_LAYER_BATCH_NORM, "nn_model_add_batch_norm");
    if (!l)
        return NN_ERR_MEMORY;
    l->momentum = momentum;
    l->eps = eps;
    return NN_OK;
}

int nn_model_set_loss(nn_model *m, nn_loss loss)
{
    int rc = check_open(m, "nn_model_set_loss");
    if (rc)
        return rc;
    if ((int)loss < 0 || loss >= NN_LOSS_COUNT)
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_set_loss: unknown loss %d", (int)loss);
    m->loss = loss;
    return NN_OK;
}

/* ------------------------------------------------------------------ build */

static const char *kind_prefix(nn_layer_kind k)
{
    switch (k) {
    case NN_LAYER_DENSE:
        return "dense";
    case NN_LAYER_ACTIVATION:
        return "activation";
    case NN_LAYER_PERCEPTRON:
        return "perceptron";
    case NN_LAYER_DROPOUT:
        return "dropout";
    case NN_LAYER_BATCH_NORM:
        return "batchnorm";
    }
    return "layer";
}

/* Creates a parameter leaf over the flat buffers and records it. */
static ad_node *make_param(nn_model *m, const nn_layer *l, const char *suffix, int ndim,
                           const int64_t *shape, int64_t off)
{
    nn_param_entry *e = &m->pinfo[m->npinfo];
    snprintf(e->name, sizeof e->name, "%s%d.%s", kind_prefix(l->kind), l->index, suffix);
    e->ndim = ndim;
    e->shape[0] = shape[0];
    e->shape[1] = ndim > 1 ? shape[1] : 0;
    e->numel = ndim > 1 ? shape[0] * shape[1] : shape[0];
    e->offset = off;
    e->node = ad_param_external(m->g, ndim, shape, elem_at(m, m->params, off),
                                elem_at(m, m->grads, off), e->name);
    if (e->node)
        m->npinfo++;
    return e->node;
}

static void fill_const(nn_model *m, void *base, int64_t off, int64_t n, double v)
{
    NN_DISPATCH(m->dtype, {
        T *p = (T *)base + off;
        for (int64_t i = 0; i < n; i++)
            p[i] = (T)v;
    });
}

/* Layer widths, parameter and state offsets; returns 0 or an error. */
static int plan(nn_model *m, int *ntensors)
{
    int64_t width = m->in_features, np = 0, ns = 0;
    int nt = 0;
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        l->in = width;
        l->out = width;
        switch (l->kind) {
        case NN_LAYER_DENSE:
        case NN_LAYER_PERCEPTRON:
            l->out = l->units;
            l->w_off = np;
            np += l->in * l->units;
            nt++;
            if (l->bias) {
                l->b_off = np;
                np += l->units;
                nt++;
            }
            break;
        case NN_LAYER_BATCH_NORM:
            l->w_off = np;
            l->b_off = np + width;
            np += 2 * width;
            l->s_off = ns;
            ns += 2 * width;
            nt += 2;
            break;
        case NN_LAYER_ACTIVATION:
        case NN_LAYER_DROPOUT:
            break;
        }
        width = l->out;
    }
    m->out_features = width;
    m->nparams = np;
    m->nstate = ns;
    *ntensors = nt;
    return NN_OK;
}

static int build_layers(nn_model *m, uint64_t seed)
{
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    ad_node *h = m->input;
    for (int i = 0; i < m->nlayers && h; i++) {
        nn_layer *l = &m->layers[i];
        switch (l->kind) {
        case NN_LAYER_DENSE:
        case NN_LAYER_PERCEPTRON: {
            int64_t wshape[2] = {l->in, l->units};
            /* values first, so the eager forward of the next op sees them */
            nn_init_fill(l->init, &rng, l->in, l->units, m->dtype, elem_at(m, m->params, l->w_off),
                         l->in * l->units);
            l->w = make_param(m, l, "weight", 2, wshape, l->w_off);
            l->b = NULL;
            if (l->bias) {
                fill_const(m, m->params, l->b_off, l->units, 0.0);
                l->b = make_param(m, l, "bias", 1, &l->units, l->b_off);
            }
            if (!l->w || (l->bias && !l->b))
                return NN_ERR_GRAPH;
            h = l->kind == NN_LAYER_DENSE ? nn_linear(h, l->w, l->b)
                                          : nn_tlu(h, l->w, l->b, l->act);
            break;
        }
        case NN_LAYER_ACTIVATION:
            h = nn_activate_alpha(h, l->act, l->alpha);
            break;
        case NN_LAYER_DROPOUT:
            h = nn_dropout(h, l->rate, m->train_flag);
            break;
        case NN_LAYER_BATCH_NORM: {
            char name[64];
            fill_const(m, m->params, l->w_off, l->in, 1.0);
            fill_const(m, m->params, l->b_off, l->in, 0.0);
            fill_const(m, m->state, l->s_off, l->in, 0.0);
            fill_const(m, m->state, l->s_off + l->in, l->in, 1.0);
            l->w = make_param(m, l, "gamma", 1, &l->in, l->w_off);
            l->b = make_param(m, l, "beta", 1, &l->in, l->b_off);
            /* running statistics: constants over the state buffer (no
             * gradient, not trainable), updated by nn_model_forward */
            snprintf(name, sizeof name, "batchnorm%d.running_mean", l->index);
            ad_node *rm = ad_const_external(m->g, 1, &l->in, elem_at(m, m->state, l->s_off), name);
            snprintf(name, sizeof name, "batchnorm%d.running_var", l->index);
            ad_node *rv =
                ad_const_external(m->g, 1, &l->in, elem_at(m, m->state, l->s_off + l->in), name);
            h = nn_batch_norm(h, l->w, l->b, rm, rv, m->train_flag, l->eps, &l->bmean, &l->bvar);
            break;
        }
        }
        l->output = h;
    }
    if (!h)
        return ad_graph_error(m->g) ? NN_ERR_GRAPH : NN_ERR_SHAPE;
    m->output = h;
    return NN_OK;
}

int nn_model_build(nn_model *m, int64_t batch, uint64_t seed)
{
    int rc = check_open(m, "nn_model_build");
    if (rc)
        return rc;
    if (m->nlayers == 0)
        return nn_model_fail(m, NN_ERR_STATE, "nn_model_build: the model has no layers");
    if (batch < 1)
        return nn_model_fail(m, NN_ERR_ARG, "nn_model_build: batch %lld must be >= 1",
                             (long long)batch);
    int ntensors = 0;
    plan(m, &ntensors);
    if (m->loss == NN_LOSS_CROSS_ENTROPY && m->out_features < 2)
        return nn_model_fail(m, NN_ERR_SHAPE,
                             "nn_model_build: cross-entropy needs at least 2 outputs (classes), "
                             "the model has %lld",
                             (long long)m->out_features);
    const char *what = "out of memory";
    if (m->nparams) {
        m->params = nn_model_mem(m, NULL, 0, buffer_bytes(m, m->nparams));
        m->grads = nn_model_mem(m, NULL, 0, buffer_bytes(m, m->nparams));
        if (!m->params || !m->grads)
            goto oom;
        memset(m->params, 0, buffer_bytes(m, m->nparams));
        memset(m->grads, 0, buffer_bytes(m, m->nparams));
    }
    if (m->nstate) {
        m->state = nn_model_mem(m, NULL, 0, buffer_bytes(m, m->nstate));
        if (!m->state)
            goto oom;
    }
    if (ntensors) {
        m->pinfo = nn_model_mem(m, NULL, 0, sizeof *m->pinfo * (size_t)ntensors);
        if (!m->pinfo)
            goto oom;
        m->cap_pinfo = ntensors;
    }
    m->g = ad_graph_new_with(m->dtype, m->alloc, m->ud);
    if (!m->g)
        goto oom;
    ad_graph_seed(m->g, seed);
    /* training loops only read leaf gradients: share the backward buffers */
    ad_graph_set_memory_reuse(m->g, 1);
    m->train_flag = ad_const_scalar(m->g, 1.0, "training");
    int64_t xshape[2] = {batch, m->in_features};
    m->input = ad_input(m->g, 2, xshape, "x");
    if (!m->train_flag || !m->input)
        goto graph_fail;
    rc = build_layers(m, seed);
    if (rc == NN_ERR_GRAPH)
        goto graph_fail;
    if (rc) {
        what = "a layer gave no output node";
        goto fail;
    }
    if (m->loss != NN_LOSS_NONE) {
        int64_t yshape[2] = {batch, m->out_features};
        int yd = m->loss == NN_LOSS_CROSS_ENTROPY ? 1 : 2;
        m->target = ad_input(m->g, yd, yshape, "y");
        m->loss_node = nn_loss_apply(m->loss, m->output, m->target);
        if (!m->loss_node) {
            if (ad_graph_error(m->g))
                goto graph_fail;
            what = "the loss gave no node";
            goto fail;
        }
        ad_node_set_name(m->loss_node, "loss");
    }
    ad_node_set_name(m->output, "output");
    if (ad_graph_error(m->g))
        goto graph_fail;
    m->built = true;
    m->training = true;
    m->forwarded = false;
    m->batch = m->max_batch = batch;
    return NN_OK;
oom:
    free_built(m);
    return nn_model_fail(m, NN_ERR_MEMORY, "nn_model_build: %s", what);
graph_fail : {
    char msg[NN_ERRLEN];
    snprintf(msg, sizeof msg, "%s", m->g ? ad_graph_error(m->g) : "no graph");
    free_built(m);
    return nn_model_fail(m, NN_ERR_GRAPH, "nn_model_build: %s", msg);
}
fail : {
    char msg[NN_ERRLEN];
    snprintf(msg, sizeof msg, "%s", what);
    free_built(m);
    return nn_model_fail(m, NN_ERR_SHAPE, "nn_model_build: %s", msg);
}
}

static nn_init init_for(nn_activation act)
{
    switch (act) {
    case NN_ACT_RELU:
    case NN_ACT_LEAKY_RELU:
    case NN_ACT_ELU:
        return NN_INIT_HE_UNIFORM;
    case NN_ACT_SELU:
        return NN_INIT_LECUN_NORMAL;
    default:
        return NN_INIT_GLOROT_UNIFORM;
    }
}

nn_model *nn_mlp_create(ad_dtype dtype, int nwidths, const int64_t *widths,
                        const nn_activation *acts, nn_loss loss, int64_t batch, uint64_t seed)
{
    if (!widths || !acts) {
        nn_fail(NN_ERR_NULL, "nn_mlp_create: %s is NULL", widths ? "acts" : "widths");
        return NULL;
    }
    if (nwidths < 2) {
        nn_fail(NN_ERR_ARG, "nn_mlp_create: %d widths given, need the input and >= 1 layer",
                nwidths);
        return NULL;
    }
    for (int i = 0; i < nwidths; i++)
        if (widths[i] < 1) {
            nn_fail(NN_ERR_ARG, "nn_mlp_create: zero-width layer (widths[%d] = %lld)", i,
                    (long long)widths[i]);
            return NULL;
        }
    nn_model *m = nn_model_create(dtype, widths[0]);
    if (!m)
        return NULL;
    for (int i = 1; i < nwidths; i++) {
        nn_activation a = acts[i - 1];
        if (nn_model_add_dense(m, widths[i], 1, init_for(a)) ||
            (a != NN_ACT_IDENTITY && nn_model_add_activation(m, a)))
            goto fail;
    }
    if (nn_model_set_loss(m, loss) || nn_model_build(m, batch, seed))
        goto fail;
    return m;
fail:
    nn_fail(NN_ERR_ARG, "%s", m->err); /* the constructor's fallback: nn_last_error */
    nn_model_free(m);
    return NULL;
}

/* ------------------------------------------------------------ introspection */

ad_graph *nn_model_graph(const nn_model *m) { return m ? m->g : NULL; }
ad_node *nn_model_input(const nn_model *m) { return m ? m->input : NULL; }
ad_node *nn_model_target(const nn_model *m) { return m ? m->target : NULL; }
ad_node *nn_model_output(const nn_model *m) { return m ? m->output : NULL; }
ad_node *nn_model_loss_node(const nn_model *m) { return m ? m->loss_node : NULL; }
ad_node *nn_model_training_node(const nn_model *m) { return m ? m->train_flag : NULL; }
ad_dtype nn_model_dtype(const nn_model *m) { return m ? m->dtype : AD_F64; }
nn_loss nn_model_loss_kind(const nn_model *m) { return m ? m->loss : NN_LOSS_NONE; }
int64_t nn_model_in_features(const nn_model *m) { return m ? m->in_features : -1; }
int64_t nn_model_out_features(const nn_model *m) { return m && m->built ? m->out_features : -1; }
int64_t nn_model_max_batch(const nn_model *m) { return m && m->built ? m->max_batch : -1; }
int64_t nn_model_batch(const nn_model *m) { return m && m->built ? m->batch : -1; }
int nn_model_layer_count(const nn_model *m) { return m ? m->nlayers : 0; }

int nn_model_layer_kind(const nn_model *m, int i)
{
    if (!m || i < 0 || i >= m->nlayers)
        return -1;
    return (int)m->layers[i].kind;
}

int nn_model_layer_info(const nn_model *m, int i, nn_layer_info *out)
{
    if (!m || !out)
        return nn_fail(NN_ERR_NULL, "nn_model_layer_info: %s is NULL", m ? "out" : "model");
    if (i < 0 || i >= m->nlayers)
        return nn_model_fail((nn_model *)m, NN_ERR_ARG,
                             "nn_model_layer_info: layer %d is not in [0, %d)", i, m->nlayers);
    const nn_layer *l = &m->layers[i];
    memset(out, 0, sizeof *out);
    out->kind = l->kind;
    out->in = m->built ? l->in : 0;
    out->out = m->built ? l->out : 0;
    out->units = l->units;
    out->bias = l->bias;
    out->init = l->init;
    out->act = l->act;
    out->alpha = l->alpha;
    out->rate = l->rate;
    out->momentum = l->momentum;
    out->eps = l->eps;
    return NN_OK;
}

int nn_model_print_summary(const nn_model *m, FILE *out)
{
    if (!m || !out)
        return nn_fail(NN_ERR_NULL, "nn_model_print_summary: %s is NULL", m ? "out" : "model");
    if (!m->built)
        return nn_model_fail((nn_model *)m, NN_ERR_STATE,
                             "nn_model_print_summary: the model is not built");
    fprintf(out, "%-14s %-22s %12s %12s\n", "layer", "kind", "shape", "params");
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        char kind[64], shape[48];
        int64_t np = 0;
        switch (l->kind) {
        case NN_LAYER_DENSE:
        case NN_LAYER_PERCEPTRON:
            np = l->in * l->units + (l->bias ? l->units : 0);
            snprintf(kind, sizeof kind, "%s%s", l->kind == NN_LAYER_DENSE ? "dense" : "perceptron ",
                     l->kind == NN_LAYER_DENSE ? (l->bias ? "" : " (no bias)")
                                               : nn_activation_name(l->act));
            break;
        case NN_LAYER_ACTIVATION:
            snprintf(kind, sizeof kind, "%s", nn_activation_name(l->act));
            break;
        case NN_LAYER_DROPOUT:
            snprintf(kind, sizeof kind, "dropout %g", l->rate);
            break;
        case NN_LAYER_BATCH_NORM:
            np = 2 * l->in;
            snprintf(kind, sizeof kind, "batch norm");
            break;
        }
        snprintf(shape, sizeof shape, "%lld -> %lld", (long long)l->in, (long long)l->out);
        char name[32];
        snprintf(name, sizeof name, "%s%d", kind_prefix(l->kind), l->index);
        fprintf(out, "%-14s %-22s %12s %12lld\n", name, kind, shape, (long long)np);
    }
    fprintf(out, "total: %lld parameters in %d tensors (%s), %lld state values, loss %s\n",
            (long long)m->nparams, m->npinfo, m->dtype == AD_F32 ? "f32" : "f64",
            (long long)m->nstate, nn_loss_name(m->loss));
    return NN_OK;
}

/* --------------------------------------------------------------- parameters */

int nn_model_param_tensors(const nn_model *m) { return m ? m->npinfo : 0; }
int64_t nn_model_param_count(const nn_model *m) { return m ? m->nparams : 0; }
void *nn_model_params(nn_model *m) { return m ? m->params : NULL; }
void *nn_model_grads(nn_model *m) { return m ? m->grads : NULL; }
int64_t nn_model_state_count(const nn_model *m) { return m ? m->nstate : 0; }
void *nn_model_state(nn_model *m) { return m ? m->state : NULL; }

int nn_model_param_info(const nn_model *m, int i, nn_param_info *out)
{
    if (!m || !out)
        return nn_fail(NN_ERR_NULL, "nn_model_param_info: %s is NULL", m ? "out" : "model");
    if (i < 0 || i >= m->npinfo)
        return nn_model_fail((nn_model *)m, NN_ERR_ARG,
                             "nn_model_param_info: tensor %d is not in [0, %d)", i, m->npinfo);
    const nn_param_entry *e = &m->pinfo[i];
    out->name = e->name;
    out->ndim = e->ndim;
    out->shape[0] = e->shape[0];
    out->shape[1] = e->shape[1];
    out->numel = e->numel;
    out->offset = e->offset;
    out->node = e->node;
    return NN_OK;
}

int nn_model_param_find(const nn_model *m, const char *name)
{
    if (!m || !name)
        return -1;
    for (int i = 0; i < m->npinfo; i++)
        if (strcmp(m->pinfo[i].name, name) == 0)
            return i;
    return -1;
}

static int copy_params(const nn_model *m, const void *src, double *dst, const double *in, void *out,
                       int64_t count, const char *fn)
{
    if (!m)
        return nn_fail(NN_ERR_NULL, "%s: model is NULL", fn);
    if (!m->built)
        return nn_model_fail((nn_model *)m, NN_ERR_STATE, "%s: the model is not built", fn);
    if (count != m->nparams)
        return nn_model_fail((nn_model *)m, NN_ERR_SHAPE,
                             "%s: count %lld does not match the %lld parameters", fn,
                             (long long)count, (long long)m->nparams);
    if (count && ((src && !dst) || (in && !out) || (!src && !in)))
        return nn_model_fail((nn_model *)m, NN_ERR_NULL, "%s: buffer is NULL", fn);
    NN_DISPATCH(m->dtype, {
        if (src) {
            const T *s = src;
            for (int64_t i = 0; i < count; i++)
                dst[i] = (double)s[i];
        } else {
            T *o = out;
            for (int64_t i = 0; i < count; i++)
                o[i] = (T)in[i];
        }
    });
    return NN_OK;
}

int nn_model_set_params(nn_model *m, const double *values, int64_t count)
{
    if (!values && count)
        return nn_model_fail(m, NN_ERR_NULL, "nn_model_set_params: values is NULL");
    return copy_params(m, NULL, NULL, values, m ? m->params : NULL, count, "nn_model_set_params");
}

int nn_model_get_params(const nn_model *m, double *out, int64_t count)
{
    if (!out && count)
        return nn_model_fail((nn_model *)m, NN_ERR_NULL, "nn_model_get_params: out is NULL");
    return copy_params(m, m ? m->params : NULL, out, NULL, NULL, count, "nn_model_get_params");
}

int nn_model_get_grads(const nn_model *m, double *out, int64_t count)
{
    if (!out && count)
        return nn_model_fail((nn_model *)m, NN_ERR_NULL, "nn_model_get_grads: out is NULL");
    return copy_params(m, m ? m->grads : NULL, out, NULL, NULL, count, "nn_model_get_grads");
}
