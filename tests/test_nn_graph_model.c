/* Models that are any graph: built from nodes (nn_model_new, nn_add_*,
 * ad_* ops), parameters of any rank collected by name into the flat
 * buffers, custom losses that train with the same optimizers, any batch
 * size through nodes the user added. */
#include "test_nn_common.h"

static void fill_rows(double *x, int64_t n, unsigned seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = 2 * nn_rng_uniform(&r) - 1;
}

/* The case: an MLP without a built-in loss, a loss attached by hand. */
Test(nn_graph_model, custom_loss_on_an_mlp_trains_and_predicts_any_batch)
{
    int64_t widths[] = {3, 16, 1};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    ad_error m_err;
    nn_model *m = nn_mlp_new(AD_F64, 3, widths, acts, NN_LOSS_NONE, 32, 1, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    double x[32 * 3], y[32], out[5];
    fill_rows(x, 32 * 3, 2);
    for (int i = 0; i < 32; i++)
        y[i] = x[3 * i] - 0.5 * x[3 * i + 1] * x[3 * i + 2];
    /* without a target leaf the model refuses targets, with a reason */
    cr_assert_eq(nn_model_set_targets(m, y, 32, 1), -1);
    cr_assert_eq(nn_model_errcode(m), AD_ESTATE);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_set_targets: the model has no loss, hence no targets");
    /* a Huber-like custom loss: mean(sqrt(1 + d^2) - 1), built from ad_* ops */
    ad_graph *g = nn_model_graph(m);
    int64_t ys[2] = {32, 1};
    ad_node *t = ad_input(g, 2, ys, "t");
    ad_node *d = ad_sub(nn_model_output(m), t);
    ad_node *loss = ad_mean(ad_affine(ad_sqrt(ad_affine(ad_mul(d, d), 1, 1)), 1, -1), AD_ALL);
    cr_assert_eq(nn_model_set_loss_node(m, loss, t), 0, "%s", nn_model_error(m));
    nn_optim_config c = nn_optim_defaults(NN_OPT_ADAM);
    c.lr = 0.01;
    c.clip_norm = 1.0;
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    cr_assert_not_null(o);
    double first = 0, last = 0;
    for (int s = 0; s < 200; s++) {
        cr_assert_eq(nn_model_set_input(m, x, 32, 3), 0);
        cr_assert_eq(nn_model_set_targets(m, y, 32, 1), 0, "%s", nn_model_error(m));
        cr_assert_eq(nn_model_train_step(m, o, &last), 0, "%s", nn_model_error(m));
        if (s == 0)
            first = last;
    }
    cr_assert(last < 0.1 * first, "custom loss fell from %g to %g", first, last);
    /* predict on 5 rows: the hand-made target follows the batch */
    cr_assert_eq(nn_model_predict(m, x, 5, 3, out), 0, "%s", nn_model_error(m));
    for (int i = 0; i < 5; i++)
        cr_assert(fabs(out[i] - y[i]) < 0.3, "row %d: %g vs %g", i, out[i], y[i]);
    /* and training continues on a smaller batch */
    cr_assert_eq(nn_model_set_input(m, x, 7, 3), 0);
    cr_assert_eq(nn_model_set_targets(m, y, 7, 1), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_train_step(m, o, &last), 0, "%s", nn_model_error(m));
    double ml;
    int labels[5] = {0};
    cr_assert_eq(nn_model_evaluate(m, x, labels, 5, 3, &ml, NULL), 0, "%s", nn_model_error(m));
    nn_optimizer_free(o);
    nn_model_free(m);
}

/* A graph of ad_* ops with a rank-3 parameter of its own and a node that
 * depends on the batch: predicts with any batch size. */
Test(nn_graph_model, any_graph_with_a_rank_3_parameter)
{
    ad_error err;
    nn_model *m = nn_model_new(AD_F64, 3, &err);
    cr_assert_not_null(m, "%s", err.message);
    int64_t xs[3] = {8, 2, 3}, ks[3] = {2, 3, 4}, ms[2] = {8, 4};
    ad_node *x = nn_model_add_input(m, 3, xs, "x");
    ad_node *k = nn_model_add_param(m, "kernel", 3, ks, NN_INIT_GLOROT_UNIFORM, 6, 4);
    ad_node *mask = nn_model_add_input(m, 2, ms, "mask"); /* batch-dependent, user-made */
    cr_assert_not_null(k);
    /* y[b, o] = sum_{i,j} x[b,i,j] k[i,j,o], then masked */
    int64_t flat_x[2] = {-1, 6}, flat_k[2] = {6, 4};
    ad_node *h = ad_matmul(ad_reshape(x, 2, flat_x), ad_reshape(k, 2, flat_k));
    ad_node *y = nn_add_dense(m, ad_mul(ad_tanh(h), ad_affine(mask, 0, 1)), 2, 1);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_MSE), 0);
    cr_assert_eq(nn_model_finish(m, y), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_in_features(m), 6);
    cr_assert_eq(nn_model_out_features(m), 2);
    nn_param_info pi;
    cr_assert_eq(nn_model_param_tensors(m), 3);
    cr_assert_eq(nn_model_param_info(m, 0, &pi), 0);
    cr_assert_str_eq(pi.name, "kernel");
    cr_assert_eq(pi.ndim, 3);
    cr_assert_eq(pi.shape[2], 4);
    cr_assert_eq(pi.offset, 0);
    cr_assert_eq(nn_model_param_info(m, 1, &pi), 0);
    cr_assert_str_eq(pi.name, "dense0.weight");
    cr_assert_eq(pi.offset, 24);
    cr_assert_eq(nn_model_param_count(m), 24 + 8 + 2);
    /* the parameter lives in the flat buffer now */
    cr_assert_eq(ad_data(k), nn_model_params(m));
    cr_assert_eq(ad_grad_data(k), nn_model_grads(m));
    double xv[13 * 6], out[13 * 2], direct[2];
    fill_rows(xv, 13 * 6, 4);
    cr_assert_eq(nn_model_predict(m, xv, 13, 6, out), 0, "%s", nn_model_error(m));
    /* row 12 by hand */
    const double *p = nn_model_params(m);
    for (int o = 0; o < 2; o++) {
        double s = p[24 + 8 + o];
        for (int j = 0; j < 4; j++) {
            double z = 0;
            for (int i = 0; i < 6; i++)
                z += xv[12 * 6 + i] * p[i * 4 + j];
            s += tanh(z) * p[24 + j * 2 + o];
        }
        direct[o] = s;
    }
    cr_assert_float_eq(out[24], direct[0], 1e-12);
    cr_assert_float_eq(out[25], direct[1], 1e-12);
    /* gradients flow into the flat buffer, checked by central differences */
    double tv[8 * 2];
    fill_rows(tv, 16, 5);
    cr_assert_eq(nn_model_set_input(m, xv, 8, 6), 0);
    cr_assert_eq(nn_model_set_targets(m, tv, 8, 2), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_forward(m), 0);
    cr_assert_eq(nn_model_backward(m), 0, "%s", nn_model_error(m));
    double *pm = nn_model_params(m), *gm = nn_model_grads(m);
    for (int i = 0; i < 34; i += 3) {
        double keep = pm[i], h2 = 1e-6;
        pm[i] = keep + h2;
        nn_model_forward(m);
        double lp = nn_model_loss_value(m);
        pm[i] = keep - h2;
        nn_model_forward(m);
        double lm = nn_model_loss_value(m);
        pm[i] = keep;
        cr_assert_float_eq(gm[i], (lp - lm) / (2 * h2), 1e-7, "param %d", i);
    }
    nn_model_free(m);
}

Test(nn_graph_model, errors_are_the_models_and_the_graphs)
{
    ad_error err;
    cr_assert_null(nn_model_new((ad_dtype)7, 1, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "nn_model_new: dtype 7 is neither AD_F32 nor AD_F64");
    nn_model *m = nn_model_new(AD_F32, 1, NULL);
    int64_t xs[2] = {4, 3};
    ad_node *x = nn_model_add_input(m, 2, xs, "x");
    int64_t ws[2] = {5, 2};
    ad_node *w = nn_model_add_param(m, "w", 2, ws, NN_INIT_ZEROS, 1, 1);
    ad_node *h = nn_add_dense(m, nn_linear(x, w, NULL), 4, 1); /* NULL in, NULL out */
    cr_assert_null(h);
    cr_assert_eq(nn_model_finish(m, h), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EGRAPH);
    cr_assert_str_eq(nn_model_error(m), "nn_model_finish: nn_linear: input (4,3) has 3 features "
                                        "but weight (5,2) expects 5");
    cr_assert_null(nn_model_add_param(m, "w", 2, ws, NN_INIT_ZEROS, 1, 1));
    cr_assert_str_eq(nn_model_error(m), "nn_model_new_param: a tensor named 'w' already exists");
    cr_assert_eq(nn_model_add_dense(m, 3, 1, NN_INIT_ZEROS), -1);
    cr_assert_eq(nn_model_errcode(m), AD_ESTATE);
    nn_model_free(m);
}

Test(nn_graph_model, layers_from_the_api_meet_the_ranges_of_model_files)
{
    /* nn_layer_check is the one range check: a layer declared through the
       API is refused as a model file or a --model list with it would be */
    nn_model *m = nn_model_new(AD_F32, 1, NULL);
    int64_t xs[2] = {4, 3};
    ad_node *x = nn_model_add_input(m, 2, xs, "x");
    cr_assert_null(nn_add_batch_norm(m, x, 0.1, 0.0));
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m), "batchnorm: eps 0 is not a number in (0, 1]");
    cr_assert_str_eq(ad_graph_error(nn_model_graph(m)),
                     "batchnorm: eps 0 is not a number in (0, 1]");
    nn_model_free(m);
}

/* ------------------------------------------- zero allocations per step */

/* Trains m (finished, with a loss and a target) at batches 8, 8, 5, 8 and
 * predicts/evaluates: nothing is allocated after the first step. */
static void no_allocation_after_first_step(nn_model *m, counting *cnt, int64_t in_cols,
                                           int64_t target_cols, int classes)
{
    nn_optim_config c = nn_optim_defaults(NN_OPT_ADAM);
    c.clip_norm = 1.0;
    ad_error o_err;
    nn_optimizer *o = nn_optimizer_new(m, &c, &o_err);
    cr_assert_not_null(o, "%s", o_err.message);
    double *x = malloc(sizeof(double) * 8 * (size_t)in_cols);
    double *y = malloc(sizeof(double) * 8 * (size_t)target_cols);
    double *out = malloc(sizeof(double) * 8 * (size_t)nn_model_out_features(m));
    nn_rng r;
    nn_rng_seed(&r, 11);
    for (int64_t i = 0; i < 8 * in_cols; i++)
        x[i] = classes ? (double)nn_rng_below(&r, (uint64_t)classes) : 2 * nn_rng_uniform(&r) - 1;
    for (int64_t i = 0; i < 8 * target_cols; i++)
        y[i] = (double)nn_rng_below(&r, 3);
    int64_t sizes[] = {8, 8, 5, 8, 3};
    long after_first = 0;
    size_t live = 0;
    double loss = 0, first = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        cr_assert_eq(nn_model_set_input(m, x, sizes[k], in_cols), 0, "%s", nn_model_error(m));
        cr_assert_eq(nn_model_set_targets(m, y, sizes[k], target_cols), 0, "%s", nn_model_error(m));
        cr_assert_eq(nn_model_train_step(m, o, &loss), 0, "%s", nn_model_error(m));
        cr_assert(isfinite(loss));
        if (k == 0) {
            after_first = cnt->calls;
            live = cnt->live;
            first = loss;
        }
    }
    cr_assert_eq(nn_model_predict(m, x, 7, in_cols, out), 0, "%s", nn_model_error(m));
    cr_assert_eq(cnt->calls, after_first, "%ld allocations after the first step",
                 cnt->calls - after_first);
    cr_assert_eq(cnt->live, live);
    cr_assert(first > 0);
    nn_optimizer_free(o);
    free(x);
    free(y);
    free(out);
}

Test(nn_graph_model, cnn_layers_allocate_nothing_per_step)
{
    counting cnt = {0, 0, 0};
    nn_model *m = nn_model_new_with(AD_F32, 5, count_alloc, &cnt, NULL);
    int64_t xs[4] = {8, 1, 8, 8};
    ad_conv_opts pad = {.padding = {1, 1}};
    ad_pool_opts p2 = {.kernel = {2, 2}};
    ad_node *h = nn_model_add_input(m, 4, xs, "x");
    h = nn_add_activation(m, nn_add_conv2d(m, h, 4, 3, 3, &pad, 1), NN_ACT_RELU, 0);
    h = nn_add_batch_norm(m, nn_add_max_pool2d(m, h, &p2), 0.1, 1e-5); /* (8, 4, 4, 4) */
    h = nn_add_flatten(m, nn_add_avg_pool2d(m, h, &p2));               /* (8, 16) */
    h = nn_add_dense(m, nn_add_dropout(m, h, 0.25), 3, 1);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY), 0);
    cr_assert_eq(nn_model_finish(m, h), 0, "%s", nn_model_error(m));
    no_allocation_after_first_step(m, &cnt, 64, 1, 0);
    nn_model_free(m);
    cr_assert_eq(cnt.live, 0);
}

Test(nn_graph_model, conv1d_and_pooling_allocate_nothing_per_step)
{
    counting cnt = {0, 0, 0};
    nn_model *m = nn_model_new_with(AD_F64, 5, count_alloc, &cnt, NULL);
    int64_t xs[3] = {8, 2, 10};
    ad_conv_opts g2 = {.groups = 2};
    ad_pool_opts p2 = {.kernel = {2, 0}}, a2 = {.kernel = {2, 0}, .stride = {1, 0}};
    ad_node *h = nn_model_add_input(m, 3, xs, "x");
    h = nn_add_max_pool1d(m, nn_add_conv1d(m, h, 4, 3, &g2, 1), &p2); /* (8, 4, 4) */
    h = nn_add_global_avg_pool(m, nn_add_avg_pool1d(m, h, &a2));      /* (8, 4) */
    h = nn_add_dense(m, h, 3, 1);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY), 0);
    cr_assert_eq(nn_model_finish(m, h), 0, "%s", nn_model_error(m));
    no_allocation_after_first_step(m, &cnt, 20, 1, 0);
    nn_model_free(m);
    cr_assert_eq(cnt.live, 0);
}

/* Embedding, every recurrent layer, layer norm, attention, the
 * feed-forward and transformer blocks, with a custom sequence loss. */
Test(nn_graph_model, sequence_layers_allocate_nothing_per_step)
{
    counting cnt = {0, 0, 0};
    nn_model *m = nn_model_new_with(AD_F32, 5, count_alloc, &cnt, NULL);
    int64_t xs[2] = {8, 6};
    ad_node *ids = nn_model_add_input(m, 2, xs, "ids");
    ad_node *h = nn_add_embedding(m, ids, 3, 8);         /* (8, 6, 8) */
    h = nn_add_lstm(m, h, 8, 1, NULL, NULL, NULL, NULL); /* batch-first */
    h = nn_add_gru(m, h, 8, 1, NULL, NULL);
    h = nn_add_rnn(m, h, 8, NN_ACT_RELU, 1, NULL, NULL);
    h = nn_add_layer_norm(m, h, 1, 1e-5, 1);
    h = nn_add_transformer_block(m, h, 2, 16, 1, 0.1);
    h = nn_add_attention(m, h, 4, 0, 0.1);
    h = nn_add_feed_forward(m, h, 12, NN_ACT_RELU, 0.1);
    ad_node *logits = nn_add_dense(m, h, 3, 1);        /* (8, 6, 3) */
    ad_node *t = nn_model_add_input(m, 2, xs, "next"); /* (8, 6) class per step */
    int64_t flat_logits[2] = {-1, 3}, flat_t[1] = {-1};
    ad_node *loss = nn_cross_entropy(ad_reshape(logits, 2, flat_logits), ad_reshape(t, 1, flat_t));
    cr_assert_eq(nn_model_finish(m, logits), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_set_loss_node(m, loss, t), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_out_features(m), 18);
    no_allocation_after_first_step(m, &cnt, 6, 6, 3);
    nn_model_free(m);
    cr_assert_eq(cnt.live, 0);
}

/* ------------------------------------------------- summary, save, load */

#include "chainrule/io.h"
#include "test_files.h"

static nn_model *small_cnn(int64_t batch, uint64_t seed)
{
    nn_model *m = nn_model_new(AD_F64, seed, NULL);
    int64_t xs[4] = {batch, 1, 6, 6};
    ad_conv_opts pad = {.padding = {1, 1}};
    ad_pool_opts p2 = {.kernel = {2, 2}};
    ad_node *h = nn_model_add_input(m, 4, xs, "x");
    h = nn_add_activation(m, nn_add_conv2d(m, h, 3, 3, 3, &pad, 1), NN_ACT_RELU, 0);
    h = nn_add_batch_norm(m, nn_add_max_pool2d(m, h, &p2), 0.1, 1e-5); /* (B, 3, 3, 3) */
    h = nn_add_dense(m, nn_add_dropout(m, nn_add_flatten(m, h), 0.5), 4, 1);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY), 0);
    cr_assert_eq(nn_model_finish(m, h), 0, "%s", nn_model_error(m));
    return m;
}

Test(nn_graph_model, summary_lists_layers_shapes_and_counts)
{
    nn_model *m = small_cnn(5, 1);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(nn_model_print_summary(m, f), 0);
    fclose(f);
    assert_contains(text, "conv2d0");
    assert_contains(text, "(5,3,6,6)");
    assert_contains(text, "(5,3,3,3)");
    assert_contains(text, "(5,27)");
    assert_contains(text, "dense0");
    cr_assert(strstr(text, "30") != NULL, "conv2d: 3*1*3*3 + 3 = 30 parameters\n%s", text);
    assert_contains(text, "total: 148 parameters in 6 tensors (f64), 6 state values");
    nn_layer_info li;
    cr_assert_eq(nn_model_layer_info(m, 0, &li), 0);
    cr_assert_eq(li.kind, NN_LAYER_CONV2D);
    cr_assert_str_eq(li.name, "conv2d0");
    cr_assert_eq(li.units, 3);
    cr_assert_eq(li.kernel[1], 3);
    cr_assert_eq(li.padding[0], 1);
    cr_assert_eq(li.in, 6);
    cr_assert_eq(li.out, 6);
    free(text);
    nn_model_free(m);
}

Test(nn_graph_model, files_carry_the_architecture)
{
    make_tmpdir_tagged("nn_arch");
    nn_model *m = small_cnn(4, 7);
    cr_assert(nn_model_has_architecture(m));
    /* train a little so the running statistics and weights are not initial */
    double x[4 * 36], out1[6 * 4], out2[6 * 4];
    int labels[4] = {0, 1, 2, 3};
    fill_rows(x, 4 * 36, 8);
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(nn_model_set_input(m, x, 4, 36), 0);
        cr_assert_eq(nn_model_set_labels(m, labels, 4), 0);
        cr_assert_eq(nn_model_train_step(m, o, NULL), 0, "%s", nn_model_error(m));
    }
    const char *path = tmp_path("cnn.safetensors");
    cr_assert_eq(nn_model_save_safetensors(m, path), 0, "%s", nn_model_error(m));
    ad_error err;
    nn_model *back = nn_model_load(path, 6, &err); /* another build batch */
    cr_assert_not_null(back, "%s", err.message);
    cr_assert_eq(nn_model_max_batch(back), 6);
    cr_assert_eq(nn_model_param_count(back), nn_model_param_count(m));
    cr_assert_eq(nn_model_loss_kind(back), NN_LOSS_CROSS_ENTROPY);
    cr_assert_eq(memcmp(nn_model_params(back), nn_model_params(m),
                        sizeof(double) * (size_t)nn_model_param_count(m)),
                 0);
    cr_assert_eq(memcmp(nn_model_state(back), nn_model_state(m),
                        sizeof(double) * (size_t)nn_model_state_count(m)),
                 0, "running statistics restored");
    double x6[6 * 36];
    fill_rows(x6, 6 * 36, 9);
    cr_assert_eq(nn_model_predict(m, x6, 6, 36, out1), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_predict(back, x6, 6, 36, out2), 0, "%s", nn_model_error(back));
    for (int i = 0; i < 24; i++)
        cr_assert_float_eq(out1[i], out2[i], 1e-12, "%d", i);
    nn_model_free(back);
    /* an MLP of nn_mlp_new (sequential declarations) too */
    int64_t widths[] = {3, 5, 2};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    nn_model *mlp = nn_mlp_new(AD_F32, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 8, 3, NULL);
    const char *p2 = tmp_path("mlp.safetensors");
    cr_assert_eq(nn_model_save_safetensors(mlp, p2), 0, "%s", nn_model_error(mlp));
    nn_model *mlp2 = nn_model_load(p2, 0, &err);
    cr_assert_not_null(mlp2, "%s", err.message);
    cr_assert_eq(nn_model_dtype(mlp2), AD_F32);
    cr_assert_eq(nn_model_max_batch(mlp2), 8);
    cr_assert_eq(nn_model_param_find(mlp2, "dense1.bias"), 3);
    cr_assert_eq(memcmp(nn_model_params(mlp2), nn_model_params(mlp),
                        sizeof(float) * (size_t)nn_model_param_count(mlp)),
                 0);
    nn_model_free(mlp2);
    nn_model_free(mlp);
    /* a model with a custom loss saves by parameter name but has no architecture */
    ad_graph *g = nn_model_graph(m);
    ad_node *loss = ad_mean(ad_mul(nn_model_output(m), nn_model_output(m)), AD_ALL);
    cr_assert_not_null(loss, "%s", ad_graph_error(g));
    cr_assert_eq(nn_model_set_loss_node(m, loss, NULL), 0);
    cr_assert(!nn_model_has_architecture(m));
    cr_assert_null(nn_model_architecture(m));
    const char *p3 = tmp_path("custom.safetensors");
    cr_assert_eq(nn_model_save_safetensors(m, p3), 0, "%s", nn_model_error(m));
    cr_assert_null(nn_model_load(p3, 0, &err));
    cr_assert_eq(err.code, AD_EUNSUPPORTED);
    assert_contains(err.message, "has no architecture");
    nn_model *same = small_cnn(4, 99); /* the code that built it, other weights */
    cr_assert_eq(nn_model_load_safetensors(same, p3, 0), 0, "%s", nn_model_error(same));
    cr_assert_eq(memcmp(nn_model_params(same), nn_model_params(m),
                        sizeof(double) * (size_t)nn_model_param_count(m)),
                 0);
    nn_model_free(same);
    cr_assert_null(nn_model_from_architecture("{\"format\": 1}", 0, &err));
    cr_assert_eq(err.code, AD_EFORMAT);
    nn_optimizer_free(o);
    nn_model_free(m);
    remove_tmpdir();
}

Test(nn_graph_model, architecture_fields_out_of_range_are_refused)
{
    /* a model file is data from anywhere: every number of its architecture is
       range-checked before use (found by fuzz_model: 2.2e92 units converted to
       int64_t, a dense layer of 0 units) */
    static const struct {
        const char *input, *layer, *message;
    } cases[] = {
        {"[2,4]", "{\"kind\":\"dense\",\"units\":2.2e92}",
         "layer 0 (dense): \"units\" is not an integer in [0, 9007199254740992]"},
        {"[2,4]", "{\"kind\":\"dense\",\"units\":2.5}",
         "layer 0 (dense): \"units\" is not an integer in [0, 9007199254740992]"},
        {"[2,4]", "{\"kind\":\"dense\",\"units\":0}",
         "layer 0 (dense): units 0 is not an integer in [1, 16777216]"},
        {"[2,4]", "{\"kind\":\"dense\",\"units\":2,\"bias\":7}",
         "layer 0 (dense): \"bias\" is not an integer in [0, 1]"},
        {"[2,1,4]", "{\"kind\":\"conv1d\",\"units\":2,\"kernel\":[3,-1]}",
         "layer 0 (conv1d): \"kernel\" is not an integer in [0, 2147483647]"},
        {"[2,1,4]", "{\"kind\":\"maxpool1d\",\"kernel\":[0,1]}",
         "layer 0 (maxpool1d): kernel 0 is not an integer in [1, 4096]"},
        {"[2,4]", "{\"kind\":\"dropout\",\"rate\":1.5}",
         "layer 0 (dropout): rate 1.5 is not a number in [0, 1)"},
        {"[2,4]", "{\"kind\":\"embedding\",\"units\":3}",
         "layer 0 (embedding): vocab 0 is not an integer in [1, 16777216]"},
        {"[2,4]", "{\"kind\":\"batchnorm\",\"momentum\":2}",
         "layer 0 (batchnorm): momentum 2 is not a number in [0, 1]"},
        {"[2,0]", "{\"kind\":\"flatten\"}", "\"input\" is not an integer in [1, 9007199254740992]"},
        {"[2,1e300]", "{\"kind\":\"flatten\"}",
         "\"input\" is not an integer in [1, 9007199254740992]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512], want[256];
        snprintf(json, sizeof json,
                 "{\"format\":1,\"dtype\":\"f32\",\"seed\":7,\"input\":%s,\"loss\":\"mse\","
                 "\"layers\":[%s]}",
                 cases[i].input, cases[i].layer);
        snprintf(want, sizeof want, "nn_model_from_architecture: %s", cases[i].message);
        ad_error err;
        cr_assert_null(nn_model_from_architecture(json, 0, &err), "%s", json);
        cr_assert_eq(err.code, AD_EFORMAT);
        cr_assert_str_eq(err.message, want);
    }
    ad_error err;
    cr_assert_null(nn_model_from_architecture(
        "{\"format\":1,\"dtype\":\"f32\",\"seed\":-1,\"input\":[2,4],\"layers\":[]}", 0, &err));
    cr_assert_str_eq(err.message, "nn_model_from_architecture: \"seed\" is not an integer in [0, "
                                  "9223372036854774784]");
    /* the writer's own output still loads */
    nn_model *m = nn_model_from_architecture(
        "{\"format\":1,\"dtype\":\"f32\",\"seed\":7,\"input\":[2,4],\"loss\":\"mse\",\"layers\":"
        "[{\"kind\":\"dense\",\"units\":3,\"bias\":1,\"init\":\"torch\"}]}",
        0, &err);
    cr_assert_not_null(m, "%s", err.message);
    cr_assert_eq(nn_model_param_count(m), 15);
    nn_model_free(m);
}

Test(nn_graph_model, parameters_of_zero_elements)
{
    /* a layer norm over an empty axis: every parameter has zero elements and
       the flat buffers are empty (no pointer arithmetic on NULL) */
    ad_error err;
    nn_model *m = nn_model_new(AD_F64, 1, &err);
    cr_assert_not_null(m, "%s", err.message);
    ad_node *x = nn_model_add_input(m, 2, (int64_t[]){2, 0}, "x");
    ad_node *y = nn_add_layer_norm(m, x, 1, 1e-5, 1);
    cr_assert_not_null(y, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_finish(m, y), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_param_count(m), 0);
    nn_model_free(m);
}
