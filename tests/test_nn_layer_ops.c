/* The layers of nn_add_*: outputs and gradients (parameters and input)
 * against PyTorch with the same weights (tests/reference/
 * make_nn_layer_fixtures.py), and ad_gradcheck's central differences in
 * f64. Each case builds a nn_model_new model around one layer, with
 * loss = sum(y * c). */
#include "test_nn_common.h"

typedef struct {
    const fixture *fx;
    ad_node *x;
    ad_node *extra[4]; /* initial states given to the layer */
    ad_node *out[2];   /* last states returned by the layer */
} layer_case;

typedef ad_node *(*build_fn)(nn_model *m, layer_case *lc);

/* An input leaf holding fixture tensor name (its first axis the batch). */
static ad_node *fixture_input(nn_model *m, const fixture *fx, const char *name)
{
    const fix_tensor *t = fixture_get(fx, name);
    ad_node *n = nn_model_add_input(m, t->ndim, t->shape, name);
    cr_assert_not_null(n, "%s", nn_model_error(m));
    cr_assert_eq(ad_set(n, t->v, t->numel), 0);
    return n;
}

/* Copies every "p.NAME" fixture tensor into the parameter NAME. */
static int load_params(nn_model *m, const fixture *fx)
{
    int loaded = 0;
    double *p = nn_model_params(m);
    for (int i = 0; i < fx->n; i++) {
        if (strncmp(fx->t[i].name, "p.", 2) != 0)
            continue;
        int k = nn_model_param_find(m, fx->t[i].name + 2);
        cr_assert_geq(k, 0, "no parameter %s", fx->t[i].name + 2);
        nn_param_info info;
        nn_model_param_info(m, k, &info);
        cr_assert_eq(info.numel, fx->t[i].numel, "%s", info.name);
        cr_assert_eq(info.ndim, fx->t[i].ndim, "%s", info.name);
        for (int d = 0; d < info.ndim; d++)
            cr_assert_eq(info.shape[d], fx->t[i].shape[d], "%s axis %d", info.name, d);
        memcpy(p + info.offset, fx->t[i].v, sizeof(double) * (size_t)info.numel);
        loaded++;
    }
    return loaded;
}

static void check_layer(const char *name, build_fn build, double rtol, int input_grad)
{
    fixture *fx = fixture_load(name);
    ad_error err;
    nn_model *m = nn_model_new(AD_F64, 1, &err);
    cr_assert_not_null(m, "%s", err.message);
    layer_case lc = {.fx = fx};
    lc.x = fixture_input(m, fx, "x");
    ad_node *y = build(m, &lc);
    cr_assert_not_null(y, "%s: %s", name, ad_graph_error(nn_model_graph(m)));
    const fix_tensor *c = fixture_get(fx, "c");
    ad_node *cn = ad_const(nn_model_graph(m), c->ndim, c->shape, c->v, "c");
    ad_node *loss = ad_sum(ad_mul(y, cn), AD_ALL);
    if (lc.out[1]) { /* the LSTM case also weighs the last cell state */
        const fix_tensor *cc = fixture_get(fx, "cc");
        ad_node *ccn = ad_const(nn_model_graph(m), cc->ndim, cc->shape, cc->v, "cc");
        loss = ad_add(loss, ad_sum(ad_mul(lc.out[1], ccn), AD_ALL));
    }
    cr_assert_eq(nn_model_finish(m, y), 0, "%s: %s", name, nn_model_error(m));
    cr_assert_eq(nn_model_set_loss_node(m, loss, NULL), 0, "%s", nn_model_error(m));
    int nloaded = load_params(m, fx);
    cr_assert_eq(nloaded, nn_model_param_tensors(m), "%s: every parameter comes from torch", name);
    cr_assert_eq(nn_model_forward(m), 0, "%s", nn_model_error(m));
    const fix_tensor *yt = fixture_get(fx, "y");
    cr_assert_eq(ad_ndim(y), yt->ndim, "%s: output rank", name);
    for (int d = 0; d < yt->ndim; d++)
        cr_assert_eq(ad_shape(y)[d], yt->shape[d], "%s: output axis %d", name, d);
    assert_node_close(y, yt->v, yt->numel, rtol, 1e-12, name);
    if (lc.out[0] && fixture_get(fx, "h_last"))
        assert_node_close(lc.out[0], fixture_get(fx, "h_last")->v, fixture_get(fx, "h_last")->numel,
                          rtol, 1e-12, "h_last");
    for (int i = 0; i < fx->n; i++) /* batch norm: running statistics after one forward */
        if (strncmp(fx->t[i].name, "running_", 8) == 0) {
            char sname[64];
            snprintf(sname, sizeof sname, "batchnorm0.%s", fx->t[i].name);
            for (int k = 0; k < nn_model_state_tensors(m); k++) {
                nn_param_info info;
                nn_model_state_info(m, k, &info);
                if (strcmp(info.name, sname) == 0)
                    assert_close((const double *)nn_model_state(m) + info.offset, fx->t[i].v,
                                 info.numel, rtol, 1e-12, sname);
            }
        }
    cr_assert_eq(nn_model_backward(m), 0, "%s", nn_model_error(m));
    const double *g = nn_model_grads(m);
    for (int i = 0; i < fx->n; i++) {
        if (strncmp(fx->t[i].name, "g.", 2) != 0)
            continue;
        nn_param_info info;
        nn_model_param_info(m, nn_model_param_find(m, fx->t[i].name + 2), &info);
        assert_close(g + info.offset, fx->t[i].v, info.numel, rtol, 1e-10, fx->t[i].name);
    }
    if (input_grad) { /* d loss / d x through the engine's gradient of an input */
        ad_node *dx = ad_grad(loss, lc.x);
        const fix_tensor *dt = fixture_get(fx, "dx");
        assert_node_close(dx, dt->v, dt->numel, rtol, 1e-10, "dx");
    }
    /* central differences in f64 over every parameter (a sample of large ones) */
    ad_node *leaves[16];
    int nl = 0;
    for (int i = 0; i < nn_model_param_tensors(m) && nl < 15; i++) {
        nn_param_info info;
        nn_model_param_info(m, i, &info);
        leaves[nl++] = info.node;
    }
    if (input_grad)
        leaves[nl++] = lc.x;
    ad_gradcheck_opts o = {.max_elements = 40, .seed = 3};
    ad_gradcheck_result r;
    int verdict = ad_gradcheck(loss, nl, leaves, &o, &r);
    cr_assert_eq(verdict, 0, "%s: gradcheck %d, max rel err %g at %s[%lld] (%s)", name, verdict,
                 r.max_rel_err, r.worst_leaf ? ad_node_name(r.worst_leaf) : "-",
                 (long long)r.worst_index, ad_graph_error(nn_model_graph(m)));
    cr_assert_gt(r.checked, 0);
    nn_model_free(m);
    fixture_free(fx);
}

static ad_node *build_layernorm(nn_model *m, layer_case *lc)
{
    return nn_add_layer_norm(m, lc->x, 2, 1e-5, 1);
}

static ad_node *build_batchnorm(nn_model *m, layer_case *lc)
{
    return nn_add_batch_norm(m, lc->x, 0.1, 1e-5);
}

static ad_node *build_embedding(nn_model *m, layer_case *lc)
{
    return nn_add_embedding(m, lc->x, 7, 5);
}

static ad_node *build_conv2d(nn_model *m, layer_case *lc)
{
    ad_conv_opts o = {.stride = {2, 2}, .padding = {1, 1}};
    return nn_add_conv2d(m, lc->x, 4, 3, 3, &o, 1);
}

static ad_node *build_conv1d(nn_model *m, layer_case *lc)
{
    ad_conv_opts o = {.padding = {2, 0}, .dilation = {2, 0}, .groups = 2};
    return nn_add_conv1d(m, lc->x, 6, 3, &o, 1);
}

static ad_node *build_pooling(nn_model *m, layer_case *lc)
{
    ad_pool_opts mp = {.kernel = {2, 2}},
                 ap = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}};
    return nn_add_global_avg_pool(m, nn_add_avg_pool2d(m, nn_add_max_pool2d(m, lc->x, &mp), &ap));
}

static ad_node *build_rnn(nn_model *m, layer_case *lc)
{
    return nn_add_rnn(m, lc->x, 6, NN_ACT_TANH, 0, NULL, &lc->out[0]);
}

static ad_node *build_lstm(nn_model *m, layer_case *lc)
{
    lc->extra[0] = fixture_input(m, lc->fx, "h0");
    lc->extra[1] = fixture_input(m, lc->fx, "c0");
    return nn_add_lstm(m, lc->x, 4, 1, lc->extra[0], lc->extra[1], &lc->out[0], &lc->out[1]);
}

static ad_node *build_gru(nn_model *m, layer_case *lc)
{
    return nn_add_gru(m, lc->x, 5, 0, NULL, &lc->out[0]);
}

static ad_node *build_attention(nn_model *m, layer_case *lc)
{
    return nn_add_attention(m, lc->x, 2, 1, 0.0);
}

static ad_node *build_transformer(nn_model *m, layer_case *lc)
{
    return nn_add_transformer_block(m, lc->x, 2, 16, 1, 0.0);
}

Test(nn_layer_torch, layer_norm) { check_layer("layer_layernorm", build_layernorm, 1e-10, 1); }
Test(nn_layer_torch, batch_norm_2d) { check_layer("layer_batchnorm2d", build_batchnorm, 1e-10, 1); }
Test(nn_layer_torch, embedding) { check_layer("layer_embedding", build_embedding, 1e-10, 0); }
Test(nn_layer_torch, conv2d) { check_layer("layer_conv2d", build_conv2d, 1e-10, 1); }
Test(nn_layer_torch, conv1d_groups_dilation)
{
    check_layer("layer_conv1d", build_conv1d, 1e-10, 1);
}
Test(nn_layer_torch, max_avg_global_pooling)
{
    check_layer("layer_pooling", build_pooling, 1e-10, 1);
}
Test(nn_layer_torch, elman_rnn) { check_layer("layer_rnn", build_rnn, 1e-10, 1); }
Test(nn_layer_torch, lstm_batch_first_with_initial_state)
{
    check_layer("layer_lstm", build_lstm, 1e-10, 1);
}
Test(nn_layer_torch, gru) { check_layer("layer_gru", build_gru, 1e-10, 1); }
Test(nn_layer_torch, causal_multi_head_attention)
{
    check_layer("layer_attention", build_attention, 1e-10, 1);
}
Test(nn_layer_torch, pre_norm_transformer_block)
{
    check_layer("layer_transformer", build_transformer, 1e-10, 1);
}
