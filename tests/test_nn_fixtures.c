/* nn against PyTorch: an MLP with every activation and every loss (values
 * and gradients), batch normalization, every optimizer over a few steps and
 * the learning-rate schedules. Fixtures: tests/reference/make_nn_fixtures.py. */
#include "test_nn_common.h"

typedef struct {
    double rtol, atol;
} tol;

static tol tol_for(ad_dtype dt) { return dt == AD_F64 ? (tol){1e-10, 1e-12} : (tol){2e-4, 2e-5}; }

static const char *dtype_name(ad_dtype dt) { return dt == AD_F64 ? "f64" : "f32"; }

static const char *const PARAMS[] = {"dense0.weight", "dense0.bias", "dense1.weight",
                                     "dense1.bias"};

/* 4 -> dense 5 -> act -> dense 3 with loss, batch 6; parameters from the fixture. */
static nn_model *fixture_mlp(ad_dtype dt, nn_activation act, nn_loss loss, const fixture *fx)
{
    ad_error m_err;
    nn_model *m = nn_model_new_sequential(dt, 4, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    cr_assert_eq(nn_model_add_dense(m, 5, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_add_activation(m, act), 0);
    cr_assert_eq(nn_model_add_dense(m, 3, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_set_loss(m, loss), 0);
    cr_assert_eq(nn_model_build(m, 6, 0), 0, "%s", nn_model_error(m));
    for (int i = 0; i < 4; i++)
        model_load_param(m, fx, PARAMS[i]);
    const fix_tensor *x = fixture_get(fx, "x"), *t = fixture_get(fx, "t");
    cr_assert_eq(nn_model_set_input(m, x->v, 6, 4), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_set_targets(m, t->v, 6, t->ndim == 1 ? 1 : 3), 0, "%s",
                 nn_model_error(m));
    return m;
}

static void check_values_and_grads(nn_model *m, const fixture *fx, const char *what)
{
    tol tl = tol_for(nn_model_dtype(m));
    char label[160];
    cr_assert_eq(nn_model_forward(m), 0, "%s", nn_model_error(m));
    const fix_tensor *out = fixture_get(fx, "output");
    snprintf(label, sizeof label, "%s output", what);
    assert_node_close(nn_model_output(m), out->v, out->numel, tl.rtol, tl.atol, label);
    double loss = nn_model_loss_value(m);
    snprintf(label, sizeof label, "%s loss", what);
    assert_close(&loss, fixture_get(fx, "loss")->v, 1, tl.rtol, tl.atol, label);
    cr_assert_eq(nn_model_backward(m), 0, "%s", nn_model_error(m));
    for (int i = 0; i < nn_model_param_tensors(m); i++) {
        nn_param_info info;
        cr_assert_eq(nn_model_param_info(m, i, &info), 0);
        char key[96];
        snprintf(key, sizeof key, "grad.%s", info.name);
        const fix_tensor *g = fixture_get(fx, key);
        int64_t n;
        double *grad = model_param_grad(m, info.name, &n);
        snprintf(label, sizeof label, "%s d loss/d %s", what, info.name);
        assert_close(grad, g->v, n, tl.rtol, tl.atol, label);
        free(grad);
    }
}

Test(nn_torch, mlp_with_every_activation)
{
    ad_dtype dtypes[] = {AD_F64, AD_F32};
    for (int a = 0; a < NN_ACT_COUNT; a++) {
        char name[64], what[96];
        snprintf(name, sizeof name, "act_%s", nn_activation_name((nn_activation)a));
        fixture *fx = fixture_load(name);
        for (int d = 0; d < 2; d++) {
            nn_model *m = fixture_mlp(dtypes[d], (nn_activation)a, NN_LOSS_MSE, fx);
            snprintf(what, sizeof what, "%s (%s)", name, dtype_name(dtypes[d]));
            check_values_and_grads(m, fx, what);
            nn_model_free(m);
        }
        fixture_free(fx);
    }
}

Test(nn_torch, mlp_with_every_loss)
{
    ad_dtype dtypes[] = {AD_F64, AD_F32};
    for (int l = NN_LOSS_MSE; l < NN_LOSS_COUNT; l++) {
        char name[64], what[96];
        snprintf(name, sizeof name, "loss_%s", nn_loss_name((nn_loss)l));
        fixture *fx = fixture_load(name);
        for (int d = 0; d < 2; d++) {
            nn_model *m = fixture_mlp(dtypes[d], NN_ACT_TANH, (nn_loss)l, fx);
            snprintf(what, sizeof what, "%s (%s)", name, dtype_name(dtypes[d]));
            check_values_and_grads(m, fx, what);
            nn_model_free(m);
        }
        fixture_free(fx);
    }
}

/* The functional API on logits of magnitude 1e4: finite and equal to torch. */
static void large_logits(const char *name, nn_loss loss, ad_dtype dt)
{
    fixture *fx = fixture_load(name);
    ad_graph *g = ad_graph_new(dt);
    int64_t xs[2] = {6, 4}, w0s[2] = {4, 5}, w1s[2] = {5, 3};
    int64_t b0s = 5, b1s = 3;
    ad_node *x = ad_input(g, 2, xs, "x");
    ad_node *w0 = ad_param(g, 2, w0s, "dense0.weight"), *b0 = ad_param(g, 1, &b0s, "dense0.bias");
    ad_node *w1 = ad_param(g, 2, w1s, "dense1.weight"), *b1 = ad_param(g, 1, &b1s, "dense1.bias");
    const fix_tensor *t = fixture_get(fx, "t");
    int64_t ts[2] = {6, 3};
    ad_node *target = ad_input(g, t->ndim, ts, "t");
    ad_node *leaves[4] = {w0, b0, w1, b1};
    for (int i = 0; i < 4; i++) {
        const fix_tensor *p = fixture_get(fx, PARAMS[i]);
        cr_assert_eq(ad_set(leaves[i], p->v, p->numel), 0);
    }
    cr_assert_eq(ad_set(x, fixture_get(fx, "x")->v, 24), 0);
    cr_assert_eq(ad_set(target, t->v, t->numel), 0);
    ad_node *logits =
        ad_scale(nn_linear(nn_activate(nn_linear(x, w0, b0), NN_ACT_TANH), w1, b1), 1e4);
    ad_node *l = nn_loss_apply(loss, logits, target);
    cr_assert_not_null(l, "%s", ad_graph_error(g));
    cr_assert_eq(ad_backward(l), 0, "%s", ad_graph_error(g));
    /* relative to the loss scale (1e4): f32 rounds logits to about 1e-3 */
    double rtol = dt == AD_F64 ? 1e-10 : 1e-5;
    double lv = ad_item(l);
    cr_assert(isfinite(lv), "%s: loss %g", name, lv);
    assert_close(&lv, fixture_get(fx, "loss")->v, 1, rtol, 0, name);
    for (int i = 0; i < 4; i++) {
        char key[96];
        snprintf(key, sizeof key, "grad.%s", PARAMS[i]);
        const fix_tensor *e = fixture_get(fx, key);
        double *gbuf = malloc(sizeof(double) * (size_t)e->numel);
        cr_assert_eq(ad_get_grad(leaves[i], gbuf, e->numel), 0);
        double scale = 0;
        for (int64_t k = 0; k < e->numel; k++)
            scale = fmax(scale, fabs(e->v[k]));
        assert_close(gbuf, e->v, e->numel, rtol, rtol * scale, key);
        free(gbuf);
    }
    ad_graph_free(g);
    fixture_free(fx);
}

Test(nn_torch, losses_stable_at_logits_1e4)
{
    large_logits("loss_cross_entropy_1e4", NN_LOSS_CROSS_ENTROPY, AD_F64);
    large_logits("loss_bce_logits_1e4", NN_LOSS_BCE_LOGITS, AD_F64);
    large_logits("loss_cross_entropy_1e4", NN_LOSS_CROSS_ENTROPY, AD_F32);
    large_logits("loss_bce_logits_1e4", NN_LOSS_BCE_LOGITS, AD_F32);
}

Test(nn_torch, batch_norm_train_and_eval)
{
    fixture *fx = fixture_load("batchnorm");
    ad_dtype dtypes[] = {AD_F64, AD_F32};
    for (int d = 0; d < 2; d++) {
        tol tl = tol_for(dtypes[d]);
        nn_model *m = nn_model_new_sequential(dtypes[d], 4, NULL);
        cr_assert_eq(nn_model_add_dense(m, 5, 1, NN_INIT_ZEROS), 0);
        cr_assert_eq(nn_model_add_batch_norm(m, 0.1, 1e-5), 0);
        cr_assert_eq(nn_model_add_activation(m, NN_ACT_RELU), 0);
        cr_assert_eq(nn_model_add_dense(m, 3, 1, NN_INIT_ZEROS), 0);
        cr_assert_eq(nn_model_set_loss(m, NN_LOSS_MSE), 0);
        cr_assert_eq(nn_model_build(m, 6, 0), 0, "%s", nn_model_error(m));
        cr_assert_eq(nn_model_param_tensors(m), 6);
        cr_assert_eq(nn_model_state_count(m), 10);
        for (int i = 0; i < 4; i++)
            model_load_param(m, fx, PARAMS[i]);
        model_load_param(m, fx, "batchnorm0.gamma");
        model_load_param(m, fx, "batchnorm0.beta");
        cr_assert_eq(nn_model_set_input(m, fixture_get(fx, "x")->v, 6, 4), 0);
        cr_assert_eq(nn_model_set_targets(m, fixture_get(fx, "t")->v, 6, 3), 0);
        check_values_and_grads(m, fx, dtypes[d] == AD_F64 ? "batchnorm f64" : "batchnorm f32");
        /* one training forward moved the running statistics once */
        double state[10];
        for (int i = 0; i < 10; i++)
            state[i] = dtypes[d] == AD_F64 ? ((double *)nn_model_state(m))[i]
                                           : ((float *)nn_model_state(m))[i];
        assert_close(state, fixture_get(fx, "running_mean")->v, 5, tl.rtol, tl.atol,
                     "running_mean");
        assert_close(state + 5, fixture_get(fx, "running_var")->v, 5, tl.rtol, tl.atol,
                     "running_var");
        cr_assert_eq(nn_model_set_training(m, 0), 0);
        cr_assert_eq(nn_model_forward(m), 0);
        const fix_tensor *oe = fixture_get(fx, "output_eval");
        assert_node_close(nn_model_output(m), oe->v, oe->numel, tl.rtol, tl.atol, "output_eval");
        /* evaluation does not move the running statistics */
        double again = dtypes[d] == AD_F64 ? ((double *)nn_model_state(m))[0]
                                           : ((float *)nn_model_state(m))[0];
        cr_assert_eq(again, state[0]);
        nn_model_free(m);
    }
    fixture_free(fx);
}

/* ------------------------------------------------------------- optimizers */

typedef struct {
    const char *name;
    nn_optim_config cfg;
} optim_case;

static nn_optim_config cfg_of(nn_optim_kind k, double lr)
{
    nn_optim_config c = nn_optim_defaults(k);
    c.lr = lr;
    return c;
}

static int optim_cases(optim_case *out)
{
    int n = 0;
    nn_optim_config c;
    out[n++] = (optim_case){"sgd", cfg_of(NN_OPT_SGD, 0.1)};
    c = cfg_of(NN_OPT_SGD, 0.1), c.momentum = 0.9;
    out[n++] = (optim_case){"sgd_momentum", c};
    c = cfg_of(NN_OPT_SGD, 0.1), c.momentum = 0.9, c.nesterov = 1, c.weight_decay = 0.01;
    out[n++] = (optim_case){"sgd_nesterov_wd", c};
    c = cfg_of(NN_OPT_SGD, 0.05), c.momentum = 0.8, c.dampening = 0.5, c.weight_decay = 0.1;
    out[n++] = (optim_case){"sgd_dampening_wd", c};
    out[n++] = (optim_case){"adam", cfg_of(NN_OPT_ADAM, 0.01)};
    c = cfg_of(NN_OPT_ADAM, 0.01), c.beta1 = 0.8, c.beta2 = 0.9, c.weight_decay = 0.1;
    out[n++] = (optim_case){"adam_wd", c};
    c = cfg_of(NN_OPT_ADAM, 0.01), c.amsgrad = 1;
    out[n++] = (optim_case){"adam_amsgrad", c};
    c = cfg_of(NN_OPT_ADAMW, 0.01), c.weight_decay = 0.1;
    out[n++] = (optim_case){"adamw", c};
    c = cfg_of(NN_OPT_ADAMW, 0.02), c.weight_decay = 0.05, c.amsgrad = 1;
    out[n++] = (optim_case){"adamw_amsgrad", c};
    out[n++] = (optim_case){"rmsprop", cfg_of(NN_OPT_RMSPROP, 0.01)};
    c = cfg_of(NN_OPT_RMSPROP, 0.01), c.alpha = 0.9, c.momentum = 0.9, c.centered = 1,
    c.weight_decay = 0.01;
    out[n++] = (optim_case){"rmsprop_centered_momentum_wd", c};
    c = cfg_of(NN_OPT_RMSPROP, 0.005), c.momentum = 0.5;
    out[n++] = (optim_case){"rmsprop_momentum", c};
    out[n++] = (optim_case){"adagrad", cfg_of(NN_OPT_ADAGRAD, 0.1)};
    c = cfg_of(NN_OPT_ADAGRAD, 0.1), c.lr_decay = 0.1, c.weight_decay = 0.01,
    c.initial_accumulator = 0.1;
    out[n++] = (optim_case){"adagrad_decay_wd", c};
    c = cfg_of(NN_OPT_SGD, 0.1), c.momentum = 0.9, c.clip_norm = 0.5;
    out[n++] = (optim_case){"sgd_clip", c};
    return n;
}

static void run_optimizer_case(const optim_case *oc, ad_dtype dt)
{
    char name[96];
    snprintf(name, sizeof name, "optim_%s", oc->name);
    fixture *fx = fixture_load(name);
    nn_model *m = nn_model_new_sequential(dt, 4, NULL);
    cr_assert_eq(nn_model_add_dense(m, 5, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_add_activation(m, NN_ACT_TANH), 0);
    cr_assert_eq(nn_model_add_dense(m, 3, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_MSE), 0);
    cr_assert_eq(nn_model_build(m, 6, 0), 0);
    const int64_t np = nn_model_param_count(m);
    cr_assert_eq(np, 43);
    const fix_tensor *p0 = fixture_get(fx, "params0");
    cr_assert_eq(p0->numel, np);
    cr_assert_eq(nn_model_set_params(m, p0->v, np), 0);
    cr_assert_eq(nn_model_set_input(m, fixture_get(fx, "x")->v, 6, 4), 0);
    cr_assert_eq(nn_model_set_targets(m, fixture_get(fx, "t")->v, 6, 3), 0);
    nn_optimizer *opt = nn_optimizer_new(m, &oc->cfg, NULL);
    cr_assert_not_null(opt, "%s: %s", oc->name, nn_model_error(m));
    /* f64 is asked to agree within 1e-6 relative; it does far better */
    double rtol = dt == AD_F64 ? 1e-9 : 1e-4, atol = dt == AD_F64 ? 1e-12 : 1e-5;
    double params[64];
    for (int step = 1; step <= 5; step++) {
        char key[32], what[160];
        double loss = 0;
        cr_assert_eq(nn_model_train_step(m, opt, &loss), 0, "%s", nn_model_error(m));
        snprintf(key, sizeof key, "loss%d", step);
        snprintf(what, sizeof what, "%s %s loss before step %d", oc->name, dtype_name(dt), step);
        assert_close(&loss, fixture_get(fx, key)->v, 1, rtol, atol, what);
        snprintf(key, sizeof key, "params%d", step);
        snprintf(what, sizeof what, "%s %s params after step %d", oc->name, dtype_name(dt), step);
        cr_assert_eq(nn_model_get_params(m, params, np), 0);
        assert_close(params, fixture_get(fx, key)->v, np, rtol, atol, what);
    }
    cr_assert_eq(nn_optimizer_steps(opt), 5);
    nn_optimizer_free(opt);
    nn_model_free(m);
    fixture_free(fx);
}

Test(nn_torch, every_optimizer_five_steps)
{
    optim_case cases[32];
    int n = optim_cases(cases);
    cr_assert_eq(n, 15);
    for (int i = 0; i < n; i++) {
        run_optimizer_case(&cases[i], AD_F64);
        run_optimizer_case(&cases[i], AD_F32);
    }
}

Test(nn_torch, clip_grad_norm_reports_torch_norm)
{
    fixture *fx = fixture_load("optim_sgd_clip");
    nn_model *m = nn_model_new_sequential(AD_F64, 4, NULL);
    cr_assert_eq(nn_model_add_dense(m, 5, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_add_activation(m, NN_ACT_TANH), 0);
    cr_assert_eq(nn_model_add_dense(m, 3, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_MSE), 0);
    cr_assert_eq(nn_model_build(m, 6, 0), 0);
    cr_assert_eq(nn_model_set_params(m, fixture_get(fx, "params0")->v, 43), 0);
    cr_assert_eq(nn_model_set_input(m, fixture_get(fx, "x")->v, 6, 4), 0);
    cr_assert_eq(nn_model_set_targets(m, fixture_get(fx, "t")->v, 6, 3), 0);
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    c.lr = 0.1, c.momentum = 0.9; /* clipping done by hand below */
    nn_optimizer *opt = nn_optimizer_new(m, &c, NULL);
    for (int step = 1; step <= 5; step++) {
        char key[32];
        cr_assert_eq(nn_model_forward(m), 0);
        cr_assert_eq(nn_model_backward(m), 0);
        double norm = nn_model_clip_grad_norm(m, 0.5);
        snprintf(key, sizeof key, "norm%d", step);
        assert_close(&norm, fixture_get(fx, key)->v, 1, 1e-12, 0, key);
        double after = nn_clip_grad_norm(AD_F64, nn_model_grads(m), 43, 1e9);
        cr_assert(after <= 0.5 + 1e-9, "clipped norm %g", after);
        cr_assert_eq(nn_optimizer_step(opt), 0);
        double params[43];
        nn_model_get_params(m, params, 43);
        snprintf(key, sizeof key, "params%d", step);
        assert_close(params, fixture_get(fx, key)->v, 43, 1e-9, 1e-12, key);
    }
    nn_optimizer_free(opt);
    nn_model_free(m);
    fixture_free(fx);
}

Test(nn_torch, schedules_match_torch_lr_schedulers)
{
    fixture *fx = fixture_load("schedules");
    nn_schedule s[3] = {nn_schedule_step(0.1, 3, 0.5), nn_schedule_exponential(0.1, 0.9),
                        nn_schedule_cosine(0.1, 10, 0.001)};
    const char *names[3] = {"step", "exponential", "cosine"};
    for (int k = 0; k < 3; k++) {
        const fix_tensor *t = fixture_get(fx, names[k]);
        cr_assert_eq(t->numel, 15);
        double lr[15];
        for (int e = 0; e < 15; e++)
            lr[e] = nn_schedule_lr(&s[k], e);
        assert_close(lr, t->v, 15, 1e-12, 1e-15, names[k]);
    }
    fixture_free(fx);
}
