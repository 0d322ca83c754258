/* model.c -- the sequential model: layer declarations, the build that turns
 * them into one graph over flat parameter, gradient and state buffers,
 * introspection and parameter access. Passes and prediction: train.c. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nn_impl.h"

/* ------------------------------------------------------------ memory, errors */

void *nn_model_mem(nn_model *m, void *p, size_t osize, size_t nsize)
{
    return m->alloc(m->ud, p, osize, nsize);
}

int nn_model_fail(nn_model *m, ad_errcode code, const char *fmt, ...)
{
    if (!m) /* nothing to record: a NULL model is a failed constructor's result */
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    m->errcode = code;
    return -1;
}

const char *nn_model_error(const nn_model *m)
{
    if (!m)
        return "nn: model is NULL";
    if (m->err[0])
        return m->err;
    return m->g ? ad_graph_error(m->g) : NULL;
}

ad_errcode nn_model_errcode(const nn_model *m)
{
    if (!m)
        return AD_EINVAL;
    if (m->err[0])
        return m->errcode;
    return m->g && ad_graph_error(m->g) ? AD_EGRAPH : AD_OK;
}

void nn_model_clear_error(nn_model *m)
{
    if (!m)
        return;
    m->err[0] = '\0';
    m->errcode = AD_OK;
    if (m->g)
        ad_graph_clear_error(m->g);
}

static void *elem_at(const nn_model *m, void *base, int64_t off)
{
    return (char *)base + (size_t)off * ad_dtype_bytes(m->dtype);
}

/* ------------------------------------------------------------ create, free */

/* A model of no layers and no graph (in_features 0 for nn_model_new). */
static nn_model *alloc_model(ad_dtype dtype, int64_t in_features, ad_alloc_fn alloc, void *ud,
                             const char *fn, ad_error *err)
{
    ad_error_ok(err);
    if (dtype != AD_F32 && dtype != AD_F64) {
        ad_error_set(err, AD_EINVAL, "%s: dtype %d is neither AD_F32 nor AD_F64", fn, (int)dtype);
        return NULL;
    }
    if (!alloc)
        alloc = ad_default_alloc;
    nn_model *m = alloc(ud, NULL, 0, sizeof *m);
    if (!m) {
        ad_error_set(err, AD_ENOMEM, "%s: out of memory", fn);
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

nn_model *nn_model_new_sequential_with(ad_dtype dtype, int64_t in_features, ad_alloc_fn alloc,
                                       void *ud, ad_error *err)
{
    const char *fn = "nn_model_new_sequential";
    if (in_features < 1) {
        ad_error_set(err, AD_EINVAL, "%s: zero-width input (in_features %lld, need >= 1)", fn,
                     (long long)in_features);
        return NULL;
    }
    return alloc_model(dtype, in_features, alloc, ud, fn, err);
}

nn_model *nn_model_new_sequential(ad_dtype dtype, int64_t in_features, ad_error *err)
{
    return nn_model_new_sequential_with(dtype, in_features, NULL, NULL, err);
}

/* Bytes of a flat buffer of n values: at least one, so that a tensor of
 * zero elements still points into a buffer. */
static size_t buffer_bytes(const nn_model *m, int64_t n)
{
    return (size_t)(n > 0 ? n : 1) * ad_dtype_bytes(m->dtype);
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
    if (m->sinfo)
        nn_model_mem(m, m->sinfo, sizeof *m->sinfo * (size_t)m->cap_sinfo, 0);
    if (m->batch_inputs)
        nn_model_mem(m, m->batch_inputs, sizeof *m->batch_inputs * (size_t)m->cap_batch_inputs, 0);
    m->params = m->grads = m->state = NULL;
    m->pinfo = m->sinfo = NULL;
    m->batch_inputs = NULL;
    m->npinfo = m->cap_pinfo = m->nsinfo = m->cap_sinfo = 0;
    m->nbatch_inputs = m->cap_batch_inputs = 0;
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
        return -1;
    if (m->built)
        return nn_model_fail(m, AD_ESTATE, "%s: the model is already built", fn);
    return 0;
}

nn_layer *nn_model_push_layer(nn_model *m, nn_layer_kind kind, const char *fn)
{
    if (m->nlayers == m->cap_layers) {
        int cap = m->cap_layers ? m->cap_layers * 2 : 8;
        nn_layer *l =
            nn_model_mem(m, m->layers, sizeof *l * (size_t)m->cap_layers, sizeof *l * (size_t)cap);
        if (!l) {
            nn_model_fail(m, AD_ENOMEM, "%s: out of memory", fn);
            return NULL;
        }
        m->layers = l;
        m->cap_layers = cap;
    }
    nn_layer *l = &m->layers[m->nlayers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->index = m->kind_count[kind]++;
    snprintf(l->name, sizeof l->name, "%s%d", nn_layer_kind_name(kind), l->index);
    l->first_param = -1;
    return l;
}

static nn_layer *push_layer(nn_model *m, nn_layer_kind kind, const char *fn)
{
    if (m->graph_mode) {
        nn_model_fail(m, AD_ESTATE,
                      "%s: this model is built from nodes (nn_model_new): use the nn_add_* layers",
                      fn);
        return NULL;
    }
    return nn_model_push_layer(m, kind, fn);
}

int nn_model_add_dense(nn_model *m, int64_t units, int bias, nn_init init)
{
    int rc = check_open(m, "nn_model_add_dense");
    if (rc)
        return rc;
    if (units < 1)
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_dense: zero-width layer (units %lld)",
                             (long long)units);
    if ((int)init < 0 || init >= NN_INIT_COUNT)
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_dense: unknown initializer %d", (int)init);
    nn_layer *l = push_layer(m, NN_LAYER_DENSE, "nn_model_add_dense");
    if (!l)
        return -1;
    l->units = units;
    l->bias = bias != 0;
    l->init = init;
    return 0;
}

int nn_model_add_activation_alpha(nn_model *m, nn_activation act, double alpha)
{
    int rc = check_open(m, "nn_model_add_activation");
    if (rc)
        return rc;
    if ((int)act < 0 || act >= NN_ACT_COUNT)
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_activation: unknown activation %d",
                             (int)act);
    if (!isfinite(alpha))
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_activation: alpha %g is not finite",
                             alpha);
    nn_layer *l = push_layer(m, NN_LAYER_ACTIVATION, "nn_model_add_activation");
    if (!l)
        return -1;
    l->act = act;
    l->alpha = alpha;
    return 0;
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
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_perceptron: zero-width layer (units %lld)",
                             (long long)units);
    if (step != NN_ACT_STEP && step != NN_ACT_SIGN && step != NN_ACT_STEP_ST &&
        step != NN_ACT_SIGN_ST)
        return nn_model_fail(m, AD_EINVAL,
                             "nn_model_add_perceptron: activation %s is not a step (step, sign, "
                             "step_st, sign_st)",
                             nn_activation_name(step) ? nn_activation_name(step) : "?");
    nn_layer *l = push_layer(m, NN_LAYER_PERCEPTRON, "nn_model_add_perceptron");
    if (!l)
        return -1;
    l->units = units;
    l->bias = 1;
    l->init = NN_INIT_ZEROS;
    l->act = step;
    return 0;
}

int nn_model_add_dropout(nn_model *m, double rate)
{
    int rc = check_open(m, "nn_model_add_dropout");
    if (rc)
        return rc;
    if (!(rate >= 0 && rate < 1))
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_dropout: rate %g is not in [0, 1)", rate);
    nn_layer *l = push_layer(m, NN_LAYER_DROPOUT, "nn_model_add_dropout");
    if (!l)
        return -1;
    l->rate = rate;
    return 0;
}

int nn_model_add_batch_norm(nn_model *m, double momentum, double eps)
{
    int rc = check_open(m, "nn_model_add_batch_norm");
    if (rc)
        return rc;
    if (!(momentum >= 0 && momentum <= 1))
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_batch_norm: momentum %g is not in [0, 1]",
                             momentum);
    if (!(eps > 0))
        return nn_model_fail(m, AD_EINVAL, "nn_model_add_batch_norm: eps %g must be > 0", eps);
    nn_layer *l = push_layer(m, NN_LAYER_BATCH_NORM, "nn_model_add_batch_norm");
    if (!l)
        return -1;
    l->momentum = momentum;
    l->eps = eps;
    l->affine = 1;
    return 0;
}

int nn_model_set_loss(nn_model *m, nn_loss loss)
{
    int rc = check_open(m, "nn_model_set_loss");
    if (rc)
        return rc;
    if ((int)loss < 0 || loss >= NN_LOSS_COUNT)
        return nn_model_fail(m, AD_EINVAL, "nn_model_set_loss: unknown loss %d", (int)loss);
    m->loss = loss;
    return 0;
}

/* ------------------------------------------------------------ parameters */

static bool grow(nn_model *m, void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = nn_model_mem(m, *arr, elem * (size_t)*cap, elem * (size_t)ncap);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static bool name_taken(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->npinfo; i++)
        if (strcmp(m->pinfo[i].name, name) == 0)
            return true;
    for (int i = 0; i < m->nsinfo; i++)
        if (strcmp(m->sinfo[i].name, name) == 0)
            return true;
    return false;
}

/* Records a named tensor in list (pinfo or sinfo); node is set by the caller. */
/* A failure while a layer makes its tensors: the model's error and the
 * graph's, so the layer's NULL output is explained where the caller looks. */
AD_PRINTF_LIKE(3, 4)
static void entry_fail(nn_model *m, ad_errcode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    m->errcode = code;
    if (m->g)
        ad_graph_set_error(m->g, m->err);
}

static nn_param_entry *new_entry(nn_model *m, bool state, const nn_layer *l, const char *suffix,
                                 int ndim, const int64_t *shape, const char *fn)
{
    char name[64];
    if (l)
        snprintf(name, sizeof name, "%s.%s", l->name, suffix);
    else
        snprintf(name, sizeof name, "%s", suffix);
    if (m->built && !state) {
        entry_fail(m, AD_ESTATE, "%s: the model is finished; no new parameters", fn);
        return NULL;
    }
    if (ndim < 0 || ndim > AD_MAX_DIMS || (ndim > 0 && !shape)) {
        entry_fail(m, AD_EINVAL, "%s: %d axes for '%s'", fn, ndim, name);
        return NULL;
    }
    if (name_taken(m, name)) {
        entry_fail(m, AD_EINVAL, "%s: a tensor named '%s' already exists", fn, name);
        return NULL;
    }
    bool ok = state ? grow(m, (void **)&m->sinfo, &m->cap_sinfo, m->nsinfo + 1, sizeof *m->sinfo)
                    : grow(m, (void **)&m->pinfo, &m->cap_pinfo, m->npinfo + 1, sizeof *m->pinfo);
    if (!ok) {
        entry_fail(m, AD_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    nn_param_entry *e = state ? &m->sinfo[m->nsinfo] : &m->pinfo[m->npinfo];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, sizeof name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= shape[i];
    }
    e->offset = -1;
    return e;
}

static void fill_const(ad_dtype dtype, void *p, int64_t n, double v)
{
    AD_DISPATCH_DTYPE(dtype, {
        T *q = p;
        for (int64_t i = 0; i < n; i++)
            q[i] = (T)v;
    });
}

ad_node *nn_model_new_param(nn_model *m, nn_layer *l, const char *suffix, int ndim,
                            const int64_t *shape, nn_init init, int64_t fan_in, int64_t fan_out,
                            double fill)
{
    const char *fn = "nn_model_new_param";
    ad_error err;
    nn_param_entry *e = new_entry(m, false, l, suffix, ndim, shape, fn);
    if (!e)
        return NULL;
    ad_node *n = ad_param(m->g, ndim, shape, e->name);
    if (!n)
        return NULL;
    if (init == NN_INIT_COUNT)
        fill_const(m->dtype, ad_data(n), e->numel, fill);
    else if (init != NN_INIT_ZEROS && nn_init_fill(init, &m->rng, fan_in, fan_out, m->dtype,
                                                   ad_data(n), e->numel, &err) != 0) {
        entry_fail(m, err.code, "%s: %s", fn, err.message);
        return NULL;
    }
    e->node = n;
    if (l && l->first_param < 0)
        l->first_param = m->npinfo;
    if (l)
        l->nparams++;
    m->npinfo++;
    return n;
}

ad_node *nn_model_new_state(nn_model *m, nn_layer *l, const char *suffix, int ndim,
                            const int64_t *shape, double fill)
{
    nn_param_entry *e = new_entry(m, true, l, suffix, ndim, shape, "nn_model_new_state");
    if (!e)
        return NULL;
    ad_node *n = ad_const(m->g, ndim, shape, NULL, e->name);
    if (!n)
        return NULL;
    fill_const(m->dtype, ad_data(n), e->numel, fill);
    e->node = n;
    m->nsinfo++;
    return n;
}

ad_node *nn_model_add_param(nn_model *m, const char *name, int ndim, const int64_t *shape,
                            nn_init init, int64_t fan_in, int64_t fan_out)
{
    if (!m) {
        return NULL;
    }
    if (!m->graph_mode) {
        nn_model_fail(m, AD_ESTATE, "nn_model_add_param: only for models made by nn_model_new");
        return NULL;
    }
    if (!name || !name[0]) {
        nn_model_fail(m, AD_EINVAL, "nn_model_add_param: a parameter needs a name");
        return NULL;
    }
    if ((int)init < 0 || init >= NN_INIT_COUNT) {
        nn_model_fail(m, AD_EINVAL, "nn_model_add_param: unknown initializer %d", (int)init);
        return NULL;
    }
    return nn_model_new_param(m, NULL, name, ndim, shape, init, fan_in, fan_out, 0.0);
}

/* Every input leaf whose leading axis is the batch: resized with the input. */
static int find_batch_inputs(nn_model *m)
{
    int input_op = ad_op_find("input");
    m->nbatch_inputs = 0;
    for (int64_t i = 0; i < ad_graph_size(m->g); i++) {
        ad_node *n = ad_graph_node(m->g, i);
        if (ad_node_op(n) != input_op || ad_ndim(n) < 1 || ad_shape(n)[0] != m->batch)
            continue;
        if (!grow(m, (void **)&m->batch_inputs, &m->cap_batch_inputs, m->nbatch_inputs + 1,
                  sizeof *m->batch_inputs))
            return nn_model_fail(m, AD_ENOMEM, "nn_model_finish: out of memory");
        m->batch_inputs[m->nbatch_inputs++] = n;
    }
    return 0;
}

/* Moves every parameter and state tensor into the flat buffers. */
static int gather(nn_model *m, const char *fn)
{
    int64_t np = 0, ns = 0;
    for (int i = 0; i < m->npinfo; i++) {
        m->pinfo[i].offset = np;
        np += m->pinfo[i].numel;
    }
    for (int i = 0; i < m->nsinfo; i++) {
        m->sinfo[i].offset = ns;
        ns += m->sinfo[i].numel;
    }
    /* the values move first, then the gradients get their buffer: a large
     * parameter's own blocks are given back as it moves, so the parameters
     * are held at most twice over at any moment, never three times
     * (the counts first: free_built gives the buffers back by them) */
    m->nparams = np;
    m->nstate = ns;
    if (m->npinfo)
        m->params = nn_model_mem(m, NULL, 0, buffer_bytes(m, np));
    if (m->npinfo && !m->params)
        return nn_model_fail(m, AD_ENOMEM, "%s: out of memory", fn);
    for (int i = 0; i < m->npinfo; i++) {
        nn_param_entry *e = &m->pinfo[i];
        if (ad_leaf_move(e->node, elem_at(m, m->params, e->offset), NULL) != 0)
            return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
    }
    if (m->npinfo)
        m->grads = nn_model_mem(m, NULL, 0, buffer_bytes(m, np));
    if (m->nsinfo)
        m->state = nn_model_mem(m, NULL, 0, buffer_bytes(m, ns));
    if ((m->npinfo && !m->grads) || (m->nsinfo && !m->state))
        return nn_model_fail(m, AD_ENOMEM, "%s: out of memory", fn);
    for (int i = 0; i < m->npinfo; i++) {
        nn_param_entry *e = &m->pinfo[i];
        if (ad_leaf_move(e->node, elem_at(m, m->params, e->offset),
                         elem_at(m, m->grads, e->offset)) != 0)
            return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
    }
    for (int i = 0; i < m->nsinfo; i++) {
        nn_param_entry *e = &m->sinfo[i];
        if (ad_leaf_move(e->node, elem_at(m, m->state, e->offset), NULL) != 0)
            return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
    }
    return 0;
}

/* A graph, the training flag and the generators, seeded from seed. */
static int start_graph(nn_model *m, uint64_t seed)
{
    m->g = ad_graph_new_with(m->dtype, m->alloc, m->ud);
    if (!m->g)
        return nn_model_fail(m, AD_ENOMEM, "out of memory");
    m->seed = seed;
    nn_rng_seed(&m->rng, seed);
    ad_graph_seed(m->g, seed);
    /* training loops only read leaf gradients: share the backward buffers */
    ad_graph_set_memory_reuse(m->g, 1);
    m->train_flag = ad_const_scalar(m->g, 1.0, "training");
    return m->train_flag ? 0 : nn_model_fail(m, AD_EGRAPH, "%s", ad_graph_error(m->g));
}

static int64_t per_row(const ad_node *n, int64_t batch)
{
    return ad_ndim(n) >= 1 && batch > 0 ? ad_numel(n) / batch : ad_numel(n);
}

/* The common end of nn_model_build and nn_model_finish. */
static int finish(nn_model *m, ad_node *output, const char *fn)
{
    if (ad_graph_error(m->g))
        return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
    if (!output)
        return nn_model_fail(m, AD_EINVAL, "%s: the output node is NULL", fn);
    if (ad_node_graph(output) != m->g)
        return nn_model_fail(m, AD_EINVAL, "%s: the output belongs to another graph", fn);
    if (ad_ndim(output) < 1 || ad_shape(output)[0] != m->batch)
        return nn_model_fail(m, AD_EMISMATCH,
                             "%s: the output's first axis is not the batch (%lld rows)", fn,
                             (long long)m->batch);
    m->output = output;
    m->out_features = per_row(output, m->batch);
    if (m->loss != NN_LOSS_NONE && !m->loss_node) {
        if (m->loss == NN_LOSS_CROSS_ENTROPY && ad_shape(output)[ad_ndim(output) - 1] < 2)
            return nn_model_fail(m, AD_EMISMATCH,
                                 "%s: cross-entropy needs at least 2 outputs (classes), the "
                                 "model has %lld",
                                 fn, (long long)ad_shape(output)[ad_ndim(output) - 1]);
        bool ce = m->loss == NN_LOSS_CROSS_ENTROPY;
        int yd = ce ? ad_ndim(output) - 1 : ad_ndim(output);
        m->target = ad_input(m->g, yd, ad_shape(output), "y");
        m->loss_node = nn_loss_apply(m->loss, output, m->target);
        if (!m->loss_node)
            return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
        ad_node_set_name(m->loss_node, "loss");
    }
    ad_node_set_name(output, "output");
    int rc = gather(m, fn);
    if (rc == 0)
        rc = find_batch_inputs(m);
    if (rc)
        return rc;
    if (ad_forward(m->g) != 0)
        return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
    m->built = true;
    m->training = true;
    m->forwarded = false;
    m->max_batch = m->batch;
    return 0;
}

int nn_model_build(nn_model *m, int64_t batch, uint64_t seed)
{
    const char *fn = "nn_model_build";
    int rc = check_open(m, fn);
    if (rc)
        return rc;
    if (m->graph_mode)
        return nn_model_fail(m, AD_ESTATE,
                             "%s: this model is built from nodes (nn_model_new): finish it with "
                             "nn_model_finish",
                             fn);
    if (m->nlayers == 0)
        return nn_model_fail(m, AD_ESTATE, "%s: the model has no layers", fn);
    if (batch < 1)
        return nn_model_fail(m, AD_EINVAL, "%s: batch %lld must be >= 1", fn, (long long)batch);
    rc = start_graph(m, seed);
    if (rc == 0) {
        int64_t xshape[2] = {batch, m->in_features};
        m->batch = batch;
        m->input = ad_input(m->g, 2, xshape, "x");
        rc = finish(m, nn_layers_apply_chain(m, 0, m->input, NULL), fn);
    } else {
        char why[NN_ERRLEN];
        snprintf(why, sizeof why, "%s", m->err);
        rc = nn_model_fail(m, m->errcode, "%s: %s", fn, why);
    }
    if (rc) {
        char msg[NN_ERRLEN];
        ad_errcode code = m->errcode;
        snprintf(msg, sizeof msg, "%s", m->err);
        free_built(m);
        for (int i = 0; i < NN_LAYER_COUNT; i++)
            m->kind_count[i] = 0;
        for (int i = 0; i < m->nlayers; i++) {
            nn_layer *l = &m->layers[i];
            l->index = m->kind_count[l->kind]++;
            l->first_param = -1;
            l->nparams = 0;
        }
        nn_model_fail(m, code, "%s", msg);
        return rc;
    }
    return 0;
}

/* -------------------------------------------------- models from nodes */

nn_model *nn_model_new_with(ad_dtype dtype, uint64_t seed, ad_alloc_fn alloc, void *ud,
                            ad_error *err)
{
    nn_model *m = alloc_model(dtype, 0, alloc, ud, "nn_model_new", err);
    if (m && start_graph(m, seed) != 0) {
        ad_error_set(err, m->errcode, "nn_model_new: %s", m->err);
        nn_model_free(m);
        return NULL;
    }
    if (!m)
        return NULL;
    m->graph_mode = true;
    return m;
}

nn_model *nn_model_new(ad_dtype dtype, uint64_t seed, ad_error *err)
{
    return nn_model_new_with(dtype, seed, NULL, NULL, err);
}

ad_node *nn_model_add_input(nn_model *m, int ndim, const int64_t *shape, const char *name)
{
    const char *fn = "nn_model_add_input";
    if (!m)
        return NULL;
    if (!m->graph_mode || m->built) {
        nn_model_fail(m, AD_ESTATE, "%s: only before nn_model_finish of a nn_model_new model", fn);
        return NULL;
    }
    if (ndim < 1 || !shape || shape[0] < 1) {
        nn_model_fail(m, AD_EINVAL, "%s: an input needs a batch axis first (ndim %d)", fn, ndim);
        return NULL;
    }
    if (m->input && shape[0] != m->batch) {
        nn_model_fail(m, AD_EMISMATCH, "%s: batch %lld differs from the first input's %lld", fn,
                      (long long)shape[0], (long long)m->batch);
        return NULL;
    }
    ad_node *x = ad_input(m->g, ndim, shape, name);
    if (!x) {
        nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
        return NULL;
    }
    if (!m->input) {
        m->input = x;
        m->batch = shape[0];
        m->in_features = per_row(x, m->batch);
    }
    return x;
}

int nn_model_finish(nn_model *m, ad_node *output)
{
    const char *fn = "nn_model_finish";
    if (!m)
        return -1;
    if (!m->graph_mode || m->built)
        return nn_model_fail(m, AD_ESTATE, "%s: %s", fn,
                             m->built ? "the model is already finished"
                                      : "only for models made by nn_model_new");
    if (!m->input)
        return nn_model_fail(m, AD_ESTATE, "%s: the model has no input (nn_model_add_input)", fn);
    return finish(m, output, fn);
}

int nn_model_set_loss_node(nn_model *m, ad_node *loss, ad_node *target)
{
    const char *fn = "nn_model_set_loss_node";
    if (!m)
        return -1;
    if (!m->g)
        return nn_model_fail(m, AD_ESTATE, "%s: the model has no graph yet", fn);
    if (ad_graph_error(m->g))
        return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, ad_graph_error(m->g));
    if (!loss)
        return nn_model_fail(m, AD_EINVAL, "%s: loss is NULL", fn);
    if (ad_node_graph(loss) != m->g || (target && ad_node_graph(target) != m->g))
        return nn_model_fail(m, AD_EINVAL, "%s: the loss or target belongs to another graph", fn);
    if (ad_numel(loss) != 1) {
        char s1[96];
        return nn_model_fail(m, AD_EMISMATCH, "%s: the loss %s is not one element", fn,
                             ad_shape_str(loss, s1, sizeof s1));
    }
    if (target && (ad_ndim(target) < 1 || ad_shape(target)[0] != m->batch))
        return nn_model_fail(m, AD_EMISMATCH,
                             "%s: the target's first axis is not the batch (%lld rows)", fn,
                             (long long)m->batch);
    m->loss_node = loss;
    m->target = target;
    m->loss = NN_LOSS_NONE;
    m->forwarded = false;
    return m->built ? find_batch_inputs(m) : 0;
}

nn_init nn_init_for_activation(nn_activation act)
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

nn_model *nn_mlp_new(ad_dtype dtype, int nwidths, const int64_t *widths, const nn_activation *acts,
                     nn_loss loss, int64_t batch, uint64_t seed, ad_error *err)
{
    ad_error_ok(err);
    if (!widths || !acts) {
        ad_error_set(err, AD_EINVAL, "nn_mlp_new: %s is NULL", widths ? "acts" : "widths");
        return NULL;
    }
    if (nwidths < 2) {
        ad_error_set(err, AD_EINVAL, "nn_mlp_new: %d widths given, need the input and >= 1 layer",
                     nwidths);
        return NULL;
    }
    for (int i = 0; i < nwidths; i++)
        if (widths[i] < 1) {
            ad_error_set(err, AD_EINVAL, "nn_mlp_new: zero-width layer (widths[%d] = %lld)", i,
                         (long long)widths[i]);
            return NULL;
        }
    nn_model *m = nn_model_new_sequential(dtype, widths[0], err);
    if (!m)
        return NULL;
    for (int i = 1; i < nwidths; i++) {
        nn_activation a = acts[i - 1];
        if (nn_model_add_dense(m, widths[i], 1, nn_init_for_activation(a)) ||
            (a != NN_ACT_IDENTITY && nn_model_add_activation(m, a)))
            goto fail;
    }
    if (nn_model_set_loss(m, loss) || nn_model_build(m, batch, seed))
        goto fail;
    return m;
fail:
    ad_error_set(err, m->errcode, "%s", m->err);
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
    if (!m)
        return -1;
    if (!out)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "nn_model_layer_info: out is NULL");
    if (i < 0 || i >= m->nlayers)
        return nn_model_fail((nn_model *)m, AD_EINVAL,
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
    out->vocab = l->vocab;
    memcpy(out->kernel, l->kernel, sizeof out->kernel);
    memcpy(out->stride, l->stride, sizeof out->stride);
    memcpy(out->padding, l->padding, sizeof out->padding);
    memcpy(out->dilation, l->dilation, sizeof out->dilation);
    out->groups = l->groups;
    out->naxes = l->naxes;
    out->affine = l->affine;
    out->heads = l->heads;
    out->causal = l->causal;
    out->batch_first = l->batch_first;
    out->name = l->name;
    return 0;
}

/* A short description of layer l's kind and settings. */
static void layer_kind_text(const nn_layer *l, char *buf, size_t size)
{
    switch (l->kind) {
    case NN_LAYER_DENSE:
        snprintf(buf, size, "dense%s", l->bias ? "" : " (no bias)");
        break;
    case NN_LAYER_PERCEPTRON:
        snprintf(buf, size, "perceptron %s", nn_activation_name(l->act));
        break;
    case NN_LAYER_ACTIVATION:
        snprintf(buf, size, "%s", nn_activation_name(l->act) ? nn_activation_name(l->act) : "?");
        break;
    case NN_LAYER_DROPOUT:
        snprintf(buf, size, "dropout %g", l->rate);
        break;
    case NN_LAYER_BATCH_NORM:
        snprintf(buf, size, "batch norm");
        break;
    case NN_LAYER_LAYER_NORM:
        snprintf(buf, size, "layer norm");
        break;
    case NN_LAYER_ATTENTION:
        snprintf(buf, size, "attention %dh%s", l->heads, l->causal ? " causal" : "");
        break;
    case NN_LAYER_TRANSFORMER_BLOCK:
        snprintf(buf, size, "transformer %dh%s", l->heads, l->causal ? " causal" : "");
        break;
    default:
        snprintf(buf, size, "%s", nn_layer_kind_name(l->kind));
        break;
    }
}

int nn_model_print_summary(const nn_model *m, FILE *out)
{
    if (!m)
        return -1;
    if (!out)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "nn_model_print_summary: out is NULL");
    if (!m->built)
        return nn_model_fail((nn_model *)m, AD_ESTATE,
                             "nn_model_print_summary: the model is not built");
    fprintf(out, "%-16s %-22s %14s %16s %10s\n", "layer", "kind", "widths", "output", "params");
    int64_t in_layers = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        char kind[64], widths[48], shape[96] = "-";
        int64_t np = 0;
        for (int k = 0; k < l->nparams; k++)
            np += m->pinfo[l->first_param + k].numel;
        in_layers += np;
        layer_kind_text(l, kind, sizeof kind);
        snprintf(widths, sizeof widths, "%lld -> %lld", (long long)l->in, (long long)l->out);
        if (l->output && l->unpooled_hw[0] > 0 && ad_ndim(l->output) == 4) {
            /* a conv2d or ReLU whose node also pools: its own output's size */
            int64_t dims[4];
            memcpy(dims, ad_shape(l->output), sizeof dims);
            dims[2] = l->unpooled_hw[0];
            dims[3] = l->unpooled_hw[1];
            ad_dims_str(4, dims, shape, sizeof shape);
        } else if (l->output) {
            ad_shape_str(l->output, shape, sizeof shape);
        }
        fprintf(out, "%-16s %-22s %14s %16s %10lld\n", l->name, kind, widths, shape, (long long)np);
    }
    /* parameters made outside the layers (nn_model_add_param) */
    for (int i = 0; i < m->npinfo && in_layers < m->nparams; i++) {
        bool owned = false;
        for (int k = 0; k < m->nlayers && !owned; k++)
            owned = i >= m->layers[k].first_param &&
                    i < m->layers[k].first_param + m->layers[k].nparams;
        if (!owned)
            fprintf(out, "%-16s %-22s %14s %16s %10lld\n", m->pinfo[i].name, "parameter", "",
                    ad_shape_str(m->pinfo[i].node, (char[96]){0}, 96),
                    (long long)m->pinfo[i].numel);
    }
    fprintf(out, "total: %lld parameters in %d tensors (%s), %lld state values, loss %s\n",
            (long long)m->nparams, m->npinfo, m->dtype == AD_F32 ? "f32" : "f64",
            (long long)m->nstate,
            m->loss_node && m->loss == NN_LOSS_NONE ? "custom" : nn_loss_name(m->loss));
    return 0;
}

/* --------------------------------------------------------------- parameters */

int nn_model_param_tensors(const nn_model *m) { return m ? m->npinfo : 0; }
int64_t nn_model_param_count(const nn_model *m) { return m ? m->nparams : 0; }
void *nn_model_params(nn_model *m) { return m ? m->params : NULL; }
void *nn_model_grads(nn_model *m) { return m ? m->grads : NULL; }
int64_t nn_model_state_count(const nn_model *m) { return m ? m->nstate : 0; }
void *nn_model_state(nn_model *m) { return m ? m->state : NULL; }

/* Describes entry i of a tensor list (parameters or state). */
static int entry_info(const nn_model *m, const nn_param_entry *list, int n, int i,
                      nn_param_info *out, const char *fn)
{
    if (!m)
        return -1;
    if (!out)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "%s: out is NULL", fn);
    if (i < 0 || i >= n)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "%s: tensor %d is not in [0, %d)", fn, i, n);
    const nn_param_entry *e = &list[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->ndim = e->ndim;
    for (int k = 0; k < e->ndim; k++)
        out->shape[k] = e->shape[k];
    out->numel = e->numel;
    out->offset = e->offset;
    out->node = e->node;
    return 0;
}

int nn_model_param_info(const nn_model *m, int i, nn_param_info *out)
{
    return entry_info(m, m ? m->pinfo : NULL, m ? m->npinfo : 0, i, out, "nn_model_param_info");
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

int nn_model_state_tensors(const nn_model *m) { return m ? m->nsinfo : 0; }

int nn_model_state_info(const nn_model *m, int i, nn_param_info *out)
{
    return entry_info(m, m ? m->sinfo : NULL, m ? m->nsinfo : 0, i, out, "nn_model_state_info");
}

static int copy_params(const nn_model *m, const void *src, double *dst, const double *in, void *out,
                       int64_t count, const char *fn)
{
    if (!m)
        return -1;
    if (!m->built)
        return nn_model_fail((nn_model *)m, AD_ESTATE, "%s: the model is not built", fn);
    if (count != m->nparams)
        return nn_model_fail((nn_model *)m, AD_EMISMATCH,
                             "%s: count %lld does not match the %lld parameters", fn,
                             (long long)count, (long long)m->nparams);
    if (count && ((src && !dst) || (in && !out) || (!src && !in)))
        return nn_model_fail((nn_model *)m, AD_EINVAL, "%s: buffer is NULL", fn);
    AD_DISPATCH_DTYPE(m->dtype, {
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
    return 0;
}

int nn_model_set_params(nn_model *m, const double *values, int64_t count)
{
    if (!values && count)
        return nn_model_fail(m, AD_EINVAL, "nn_model_set_params: values is NULL");
    return copy_params(m, NULL, NULL, values, m ? m->params : NULL, count, "nn_model_set_params");
}

int nn_model_get_params(const nn_model *m, double *out, int64_t count)
{
    if (!out && count)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "nn_model_get_params: out is NULL");
    return copy_params(m, m ? m->params : NULL, out, NULL, NULL, count, "nn_model_get_params");
}

int nn_model_get_grads(const nn_model *m, double *out, int64_t count)
{
    if (!out && count)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "nn_model_get_grads: out is NULL");
    return copy_params(m, m ? m->grads : NULL, out, NULL, NULL, count, "nn_model_get_grads");
}
