/* The model object: building, parameter listing and flat buffers, inputs
 * and targets, errors, train/eval mode, prediction, the no-allocation
 * training step, smaller last batches and exact resumption. */
#include "graph_impl.h" /* the graph's held-weights table */
#include "test_nn_common.h"

static nn_model *fashion_mlp(ad_dtype dt, int64_t batch, uint64_t seed)
{
    int64_t widths[] = {784, 300, 100, 10};
    nn_activation acts[] = {NN_ACT_RELU, NN_ACT_RELU, NN_ACT_IDENTITY};
    ad_error m_err;
    nn_model *m = nn_mlp_new(dt, 4, widths, acts, NN_LOSS_CROSS_ENTROPY, batch, seed, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    return m;
}

Test(nn_model, lists_parameters_by_name_and_shape)
{
    nn_model *m = fashion_mlp(AD_F32, 32, 42);
    cr_assert_eq(nn_model_param_count(m), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
    cr_assert_eq(nn_model_param_count(m), 266610);
    cr_assert_eq(nn_model_param_tensors(m), 6);
    cr_assert_eq(nn_model_in_features(m), 784);
    cr_assert_eq(nn_model_out_features(m), 10);
    cr_assert_eq(nn_model_max_batch(m), 32);
    cr_assert_eq(nn_model_layer_count(m), 5, "3 dense + 2 ReLU (identity adds no layer)");
    cr_assert_eq(nn_model_layer_kind(m, 1), NN_LAYER_ACTIVATION);
    nn_layer_info li;
    cr_assert_eq(nn_model_layer_info(m, 2, &li), 0);
    cr_assert_eq(li.kind, NN_LAYER_DENSE);
    cr_assert_eq(li.in, 300);
    cr_assert_eq(li.out, 100);
    cr_assert_eq(li.units, 100);
    cr_assert_eq(li.bias, 1);
    cr_assert_eq(li.init, NN_INIT_HE_UNIFORM);
    cr_assert_eq(nn_model_layer_info(m, 3, &li), 0);
    cr_assert_eq(li.act, NN_ACT_RELU);
    cr_assert_eq(nn_model_layer_info(m, 5, &li), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m), "nn_model_layer_info: layer 5 is not in [0, 5)");
    const char *names[] = {"dense0.weight", "dense0.bias",   "dense1.weight",
                           "dense1.bias",   "dense2.weight", "dense2.bias"};
    int64_t shapes[6][2] = {{784, 300}, {300, 0}, {300, 100}, {100, 0}, {100, 10}, {10, 0}};
    int64_t offset = 0;
    for (int i = 0; i < 6; i++) {
        nn_param_info info;
        cr_assert_eq(nn_model_param_info(m, i, &info), 0);
        cr_assert_str_eq(info.name, names[i]);
        cr_assert_eq(info.ndim, shapes[i][1] ? 2 : 1);
        cr_assert_eq(info.shape[0], shapes[i][0]);
        cr_assert_eq(info.shape[1], shapes[i][1]);
        cr_assert_eq(info.offset, offset, "%s is contiguous after the previous tensor", names[i]);
        cr_assert_eq(nn_model_param_find(m, names[i]), i);
        /* the graph's leaf lives in the flat buffers */
        cr_assert_eq(ad_data(info.node), (float *)nn_model_params(m) + offset);
        cr_assert_eq(ad_grad_data(info.node), (float *)nn_model_grads(m) + offset);
        cr_assert_str_eq(ad_node_name(info.node), names[i]);
        offset += info.numel;
    }
    cr_assert_eq(offset, nn_model_param_count(m));
    cr_assert_eq(nn_model_param_find(m, "dense9.weight"), -1);
    nn_param_info info;
    cr_assert_eq(nn_model_param_info(m, 6, &info), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m), "nn_model_param_info: tensor 6 is not in [0, 6)");
    /* He-uniform weights for ReLU layers, zero biases */
    const float *p = nn_model_params(m);
    float mx = 0;
    for (int64_t i = 0; i < 784 * 300; i++)
        mx = fmaxf(mx, fabsf(p[i]));
    cr_assert(mx <= sqrtf(6.0f / 784) && mx > 0.99f * sqrtf(6.0f / 784), "max %g", mx);
    for (int64_t i = 784 * 300; i < 784 * 300 + 300; i++)
        cr_assert_eq(p[i], 0.0f);
    /* shapes of the graph's interface nodes */
    cr_assert_eq(ad_shape(nn_model_input(m))[1], 784);
    cr_assert_eq(ad_ndim(nn_model_target(m)), 1);
    cr_assert_eq(ad_shape(nn_model_output(m))[0], 32);
    cr_assert_eq(ad_shape(nn_model_output(m))[1], 10);
    cr_assert_eq(ad_numel(nn_model_loss_node(m)), 1);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(nn_model_print_summary(m, f), 0);
    fclose(f);
    cr_assert(strstr(text, "total: 266610 parameters in 6 tensors (f32)") != NULL, "%s", text);
    cr_assert(strstr(text, "dense0") && strstr(text, "784 -> 300"), "%s", text);
    free(text);
    nn_model_free(m);
}

Test(nn_model, same_seed_same_weights)
{
    nn_model *a = fashion_mlp(AD_F64, 8, 7), *b = fashion_mlp(AD_F64, 16, 7);
    nn_model *c = fashion_mlp(AD_F64, 8, 8);
    size_t bytes = sizeof(double) * (size_t)nn_model_param_count(a);
    cr_assert(memcmp(nn_model_params(a), nn_model_params(b), bytes) == 0);
    cr_assert(memcmp(nn_model_params(a), nn_model_params(c), bytes) != 0);
    nn_model *f = fashion_mlp(AD_F32, 8, 7);
    const double *pa = nn_model_params(a);
    const float *pf = nn_model_params(f);
    for (int64_t i = 0; i < nn_model_param_count(a); i += 97)
        cr_assert_eq(pf[i], (float)pa[i]);
    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(c);
    nn_model_free(f);
}

Test(nn_model, null_model_and_state_errors)
{
    cr_assert_str_eq(nn_model_error(NULL), "nn: model is NULL");
    cr_assert_eq(nn_model_add_dense(NULL, 3, 1, NN_INIT_ZEROS), -1);
    cr_assert_eq(nn_model_forward(NULL), -1);
    cr_assert_eq(nn_model_set_input(NULL, NULL, 1, 1), -1);
    cr_assert_eq(nn_model_train_step(NULL, NULL, NULL), -1);
    cr_assert_null(nn_model_params(NULL));
    cr_assert_null(nn_model_graph(NULL));
    cr_assert_eq(nn_model_param_count(NULL), 0);
    ad_error err;
    cr_assert_null(nn_optimizer_new(NULL, NULL, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "nn_optimizer_new: model is NULL");
    cr_assert_str_eq(nn_optimizer_error(NULL), "nn: optimizer is NULL");
    cr_assert_eq(nn_optimizer_step(NULL), -1);
    cr_assert(isnan(nn_model_loss_value(NULL)));
    nn_model_free(NULL);
    nn_optimizer_free(NULL);

    nn_model *m = nn_model_new_sequential(AD_F64, 3, NULL);
    cr_assert_eq(nn_model_forward(m), -1);
    cr_assert_eq(nn_model_errcode(m), AD_ESTATE);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_forward: the model is not built (nn_model_build)");
    cr_assert_eq(nn_model_build(m, 4, 1), -1);
    cr_assert_eq(nn_model_errcode(m), AD_ESTATE);
    cr_assert_str_eq(nn_model_error(m), "nn_model_build: the model has no layers");
    cr_assert_eq(nn_model_add_dense(m, 2, 1, NN_INIT_GLOROT_UNIFORM), 0);
    cr_assert_eq(nn_model_build(m, 0, 1), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_eq(nn_model_build(m, 4, 1), 0);
    cr_assert_eq(nn_model_add_dense(m, 2, 1, NN_INIT_ZEROS), -1);
    cr_assert_eq(nn_model_errcode(m), AD_ESTATE);
    cr_assert_str_eq(nn_model_error(m), "nn_model_add_dense: the model is already built");
    cr_assert_eq(nn_model_backward(m), -1, "no loss");
    cr_assert_eq(nn_model_errcode(m), AD_ESTATE);
    cr_assert_str_eq(nn_model_error(m), "nn_model_backward: the model has no loss");
    nn_model_clear_error(m);
    cr_assert_null(nn_model_error(m));
    nn_model_free(m);
}

Test(nn_model, zero_width_layers)
{
    nn_model *m = nn_model_new_sequential(AD_F64, 3, NULL);
    cr_assert_eq(nn_model_add_dense(m, 0, 1, NN_INIT_ZEROS), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m), "nn_model_add_dense: zero-width layer (units 0)");
    cr_assert_eq(nn_model_add_perceptron(m, 0, NN_ACT_STEP), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m), "nn_model_add_perceptron: zero-width layer (units 0)");
    cr_assert_eq(nn_model_add_dropout(m, 1.5), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m), "nn_model_add_dropout: rate 1.5 is not in [0, 1)");
    nn_model_free(m);
    ad_error err;
    cr_assert_null(nn_model_new_sequential(AD_F64, 0, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message,
                     "nn_model_new_sequential: zero-width input (in_features 0, need >= 1)");
    int64_t widths[] = {4, 8, 0, 3};
    nn_activation acts[] = {NN_ACT_RELU, NN_ACT_RELU, NN_ACT_IDENTITY};
    cr_assert_null(nn_mlp_new(AD_F64, 4, widths, acts, NN_LOSS_MSE, 8, 1, &err));
    cr_assert_str_eq(err.message, "nn_mlp_new: zero-width layer (widths[2] = 0)");
    int64_t one[] = {4, 1};
    cr_assert_null(nn_mlp_new(AD_F64, 2, one, acts, NN_LOSS_CROSS_ENTROPY, 8, 1, &err));
    cr_assert_eq(err.code, AD_EMISMATCH);
    cr_assert_str_eq(err.message, "nn_model_build: cross-entropy needs at least 2 outputs "
                                  "(classes), the model has 1");
}

Test(nn_model, mismatched_widths_and_rows)
{
    nn_model *m = fashion_mlp(AD_F64, 32, 1);
    double *x = calloc(32 * 784, sizeof(double));
    cr_assert_eq(nn_model_set_input(m, x, 32, 780), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EMISMATCH);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_set_input: rows have 780 features but the model expects 784");
    cr_assert_eq(nn_model_set_input(m, x, 16, 784), 0);
    int labels[32] = {0};
    cr_assert_eq(nn_model_set_labels(m, labels, 20), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EMISMATCH);
    cr_assert_str_eq(nn_model_error(m), "nn_model_set_labels: targets have 20 rows but the input "
                                        "has 16");
    double y[32] = {0};
    cr_assert_eq(nn_model_set_targets(m, y, 16, 10), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EMISMATCH);
    cr_assert_str_eq(nn_model_error(m), "nn_model_set_targets: targets have 10 columns but the "
                                        "model needs 1 (one class index per row)");
    cr_assert_eq(nn_model_set_input(m, x, 0, 784), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_eq(nn_model_set_input(m, NULL, 4, 784), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_null(ad_graph_error(nn_model_graph(m)), "nn validates before the engine sees data");
    free(x);
    nn_model_free(m);
}

Test(nn_model, class_index_out_of_range)
{
    int64_t widths[] = {2, 4, 3};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    nn_model *m = nn_mlp_new(AD_F64, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 4, 3, NULL);
    double x[8] = {0, 1, 1, 0, 1, 1, 0, 0};
    cr_assert_eq(nn_model_set_input(m, x, 4, 2), 0);
    int bad[4] = {0, 3, 1, 2};
    cr_assert_eq(nn_model_set_labels(m, bad, 4), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_set_labels: class index 3 at row 1 is out of range [0, 3)");
    int neg[4] = {0, 1, -1, 2};
    cr_assert_eq(nn_model_set_labels(m, neg, 4), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_set_labels: class index -1 at row 2 is out of range [0, 3)");
    double frac[4] = {0, 1.5, 1, 2};
    cr_assert_eq(nn_model_set_targets(m, frac, 4, 1), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_set_targets: class index 1.5 at row 1 is out of range [0, 3)");
    /* the model is still usable */
    int good[4] = {0, 1, 2, 1};
    cr_assert_eq(nn_model_set_labels(m, good, 4), 0);
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    double loss;
    cr_assert_eq(nn_model_train_step(m, o, &loss), 0, "%s", nn_model_error(m));
    cr_assert(isfinite(loss) && loss > 0);
    nn_optimizer_free(o);
    nn_model_free(m);
}

/* ------------------------------------------------ optimizers and threads */

/* Every optimizer's update is elementwise, split over the library's threads
 * from 16,384 elements: the same bits with 1, 2 and 3 threads, f32 and f64,
 * on the plain paths (vectorized) and the general ones. */
Test(nn_model, optimizer_updates_are_the_same_bits_for_any_thread_count)
{
    enum { N = 70001, STEPS = 3 };
    nn_optim_config cfgs[6];
    cfgs[0] = nn_optim_defaults(NN_OPT_SGD);
    cfgs[1] = nn_optim_defaults(NN_OPT_SGD);
    cfgs[1].momentum = 0.9;
    cfgs[1].nesterov = 1;
    cfgs[1].weight_decay = 1e-3;
    cfgs[2] = nn_optim_defaults(NN_OPT_ADAM);
    cfgs[3] = nn_optim_defaults(NN_OPT_ADAMW);
    cfgs[3].amsgrad = 1;
    cfgs[4] = nn_optim_defaults(NN_OPT_RMSPROP);
    cfgs[4].momentum = 0.5;
    cfgs[4].centered = 1;
    cfgs[5] = nn_optim_defaults(NN_OPT_ADAGRAD);
    for (int dt = 0; dt < 2; dt++) {
        const ad_dtype dtype = dt ? AD_F64 : AD_F32;
        const size_t es = dt ? sizeof(double) : sizeof(float);
        char *p[3], *g = malloc(N * es), *state[3];
        for (int k = 0; k < 6; k++) {
            for (int t = 0; t < 3; t++) {
                ad_set_threads(t + 1);
                p[t] = malloc(N * es);
                nn_optimizer *o = nn_optimizer_new_flat(dtype, N, &cfgs[k], NULL);
                cr_assert_not_null(o);
                for (int64_t i = 0; i < N; i++) {
                    double pv = sin(0.37 * (double)i), gv = cos(0.11 * (double)i) * 0.3;
                    if (dt) {
                        ((double *)p[t])[i] = pv;
                        ((double *)g)[i] = gv;
                    } else {
                        ((float *)p[t])[i] = (float)pv;
                        ((float *)g)[i] = (float)gv;
                    }
                }
                for (int s = 0; s < STEPS; s++)
                    cr_assert_eq(nn_optimizer_update(o, p[t], g), 0);
                size_t sb = (size_t)nn_optimizer_state_count(o) * es;
                state[t] = malloc(sb ? sb : 1);
                if (sb) /* plain SGD has no state */
                    memcpy(state[t], nn_optimizer_state(o), sb);
                if (t > 0) {
                    cr_assert_eq(memcmp(p[0], p[t], N * es), 0,
                                 "%s (%s): parameters differ with %d threads",
                                 nn_optim_name(cfgs[k].kind), dt ? "f64" : "f32", t + 1);
                    cr_assert_eq(memcmp(state[0], state[t], sb), 0,
                                 "%s (%s): state differs with %d threads",
                                 nn_optim_name(cfgs[k].kind), dt ? "f64" : "f32", t + 1);
                }
                nn_optimizer_free(o);
            }
            for (int t = 0; t < 3; t++) {
                free(p[t]);
                free(state[t]);
            }
        }
        free(g);
    }
    ad_set_threads(1);
}

/* -------------------------------------------------------- no allocation */

/* The MLP of bench/mlp_bench: the graph does not keep its own copy of the
 * parameters or their gradients once they moved into the flat buffers, and
 * the most memory held at once (build and steps) stays within 1.25 x the
 * parameters + gradients + one batch's activations (x, pre-activations and
 * activations of each layer, logits): it was 2.03 x while every parameter's
 * first value and gradient buffers stayed in the graph's arena. */
Test(nn_model, memory_peak_holds_the_parameters_once)
{
    counting cnt = {0, 0, 0};
    const int64_t batch = 32, widths[4] = {784, 300, 100, 10};
    nn_model *m = nn_model_new_sequential_with(AD_F32, widths[0], count_alloc, &cnt, NULL);
    for (int i = 1; i < 4; i++) {
        cr_assert_eq(nn_model_add_dense(m, widths[i], 1, NN_INIT_HE_UNIFORM), 0);
        if (i < 3)
            cr_assert_eq(nn_model_add_activation(m, NN_ACT_RELU), 0);
    }
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY), 0);
    cr_assert_eq(nn_model_build(m, batch, 5), 0, "%s", nn_model_error(m));
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    cr_assert_not_null(o);
    float *x = calloc((size_t)(batch * widths[0]), sizeof(float));
    int y[32] = {0};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(nn_model_set_input_f32(m, x, batch, widths[0]), 0);
        cr_assert_eq(nn_model_set_labels(m, y, batch), 0);
        cr_assert_eq(nn_model_train_step(m, o, NULL), 0, "%s", nn_model_error(m));
    }
    const size_t pbytes = sizeof(float) * (size_t)nn_model_param_count(m);
    cr_assert_eq(nn_model_param_count(m), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
    size_t graph = ad_graph_bytes(nn_model_graph(m));
    cr_assert_lt(graph, pbytes / 2, "the graph holds %zu bytes, the parameters are %zu", graph,
                 pbytes);
    double budget =
        (double)(2 * pbytes) + sizeof(float) * (double)(batch * (784 + 2 * 300 + 2 * 100 + 10));
    cr_assert_leq((double)cnt.peak, 1.25 * budget, "peak %zu bytes, budget %.0f (%.2f x)", cnt.peak,
                  budget, (double)cnt.peak / budget);
    free(x);
    nn_optimizer_free(o);
    nn_model_free(m);
}

Test(nn_model, training_step_allocates_nothing_after_the_first)
{
    counting cnt = {0, 0, 0};
    nn_model *m = nn_model_new_sequential_with(AD_F32, 784, count_alloc, &cnt, NULL);
    cr_assert_eq(nn_model_add_dense(m, 300, 1, NN_INIT_HE_UNIFORM), 0);
    cr_assert_eq(nn_model_add_activation(m, NN_ACT_RELU), 0);
    cr_assert_eq(nn_model_add_dropout(m, 0.2), 0);
    cr_assert_eq(nn_model_add_dense(m, 100, 1, NN_INIT_HE_UNIFORM), 0);
    cr_assert_eq(nn_model_add_batch_norm(m, 0.1, 1e-5), 0);
    cr_assert_eq(nn_model_add_activation(m, NN_ACT_RELU), 0);
    cr_assert_eq(nn_model_add_dense(m, 10, 1, NN_INIT_GLOROT_UNIFORM), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY), 0);
    cr_assert_eq(nn_model_build(m, 32, 5), 0, "%s", nn_model_error(m));
    nn_optim_config c = nn_optim_defaults(NN_OPT_ADAM);
    c.clip_norm = 1.0;
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    cr_assert_not_null(o);
    float *x = malloc(sizeof(float) * 32 * 784);
    int y[32];
    nn_rng r;
    nn_rng_seed(&r, 3);
    for (int i = 0; i < 32 * 784; i++)
        x[i] = (float)nn_rng_uniform(&r);
    for (int i = 0; i < 32; i++)
        y[i] = (int)nn_rng_below(&r, 10);
    double loss;
    cr_assert_eq(nn_model_set_input_f32(m, x, 32, 784), 0);
    cr_assert_eq(nn_model_set_labels(m, y, 32), 0);
    cr_assert_eq(nn_model_train_step(m, o, &loss), 0, "%s", nn_model_error(m));
    long after_first = cnt.calls;
    size_t live = cnt.live;
    int64_t sizes[] = {32, 32, 20, 7, 32, 1, 32};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        cr_assert_eq(nn_model_set_input_f32(m, x, sizes[k], 784), 0);
        cr_assert_eq(nn_model_set_labels(m, y, sizes[k]), 0);
        cr_assert_eq(nn_model_train_step(m, o, &loss), 0, "%s", nn_model_error(m));
        cr_assert(isfinite(loss));
    }
    int64_t classes[32];
    double acc = 0, mean_loss = 0;
    cr_assert_eq(nn_model_predict_classes_f32(m, x, 32, 784, classes), 0);
    cr_assert_eq(nn_model_evaluate_f32(m, x, y, 32, 784, &mean_loss, &acc), 0);
    cr_assert_eq(cnt.calls, after_first, "%ld allocations after the first step",
                 cnt.calls - after_first);
    cr_assert_eq(cnt.live, live);
    nn_optimizer_free(o);
    nn_model_free(m);
    free(x);
    cr_assert_eq(cnt.live, 0, "everything freed through the allocator");
}

Test(nn_model, smaller_last_batch_gives_the_same_gradient)
{
    int64_t widths[] = {6, 5, 4};
    nn_activation acts[] = {NN_ACT_SIGMOID, NN_ACT_IDENTITY};
    nn_model *big = nn_mlp_new(AD_F64, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 8, 11, NULL);
    nn_model *small = nn_mlp_new(AD_F64, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 5, 11, NULL);
    double x[8 * 6];
    nn_rng r;
    nn_rng_seed(&r, 5);
    for (int i = 0; i < 48; i++)
        x[i] = nn_rng_normal(&r);
    int y[8] = {0, 1, 2, 3, 1, 2, 0, 3};
    /* big: one full step first (builds the backward pass at 8 rows) */
    cr_assert_eq(nn_model_set_input(big, x, 8, 6), 0);
    cr_assert_eq(nn_model_set_labels(big, y, 8), 0);
    cr_assert_eq(nn_model_forward(big), 0);
    cr_assert_eq(nn_model_backward(big), 0);
    /* then the last, smaller batch of 5 rows */
    cr_assert_eq(nn_model_set_input(big, x + 18, 5, 6), 0);
    cr_assert_eq(nn_model_set_labels(big, y + 3, 5), 0);
    cr_assert_eq(nn_model_forward(big), 0);
    cr_assert_eq(nn_model_batch(big), 5);
    cr_assert_eq(ad_shape(nn_model_output(big))[0], 5);
    cr_assert_eq(nn_model_backward(big), 0, "%s", nn_model_error(big));
    cr_assert_eq(nn_model_set_input(small, x + 18, 5, 6), 0);
    cr_assert_eq(nn_model_set_labels(small, y + 3, 5), 0);
    cr_assert_eq(nn_model_forward(small), 0);
    cr_assert_eq(nn_model_backward(small), 0);
    cr_assert_float_eq(nn_model_loss_value(big), nn_model_loss_value(small), 1e-15);
    int64_t n = nn_model_param_count(big);
    double *gb = malloc(sizeof(double) * (size_t)n), *gs = malloc(sizeof(double) * (size_t)n);
    cr_assert_eq(nn_model_get_grads(big, gb, n), 0);
    cr_assert_eq(nn_model_get_grads(small, gs, n), 0);
    assert_close(gb, gs, n, 1e-13, 1e-15, "gradient after resize");
    free(gb);
    free(gs);
    nn_model_free(big);
    nn_model_free(small);
}

Test(nn_model, batch_above_the_build_batch_works)
{
    int64_t widths[] = {3, 4, 2};
    nn_activation acts[] = {NN_ACT_ELU, NN_ACT_IDENTITY};
    nn_model *m = nn_mlp_new(AD_F32, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 4, 1, NULL);
    float x[40 * 3];
    int y[40];
    for (int i = 0; i < 120; i++)
        x[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < 40; i++)
        y[i] = i % 2;
    nn_optim_config c = nn_optim_defaults(NN_OPT_RMSPROP);
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    int64_t sizes[] = {4, 40, 3, 40, 4};
    for (int k = 0; k < 5; k++) {
        double loss;
        cr_assert_eq(nn_model_set_input_f32(m, x, sizes[k], 3), 0);
        cr_assert_eq(nn_model_set_labels(m, y, sizes[k]), 0);
        cr_assert_eq(nn_model_train_step(m, o, &loss), 0, "%s", nn_model_error(m));
        cr_assert(isfinite(loss));
        cr_assert_eq(ad_shape(nn_model_output(m))[0], sizes[k]);
    }
    nn_optimizer_free(o);
    nn_model_free(m);
}

/* ---------------------------------------------------- train / eval mode */

Test(nn_model, dropout_only_in_training_mode)
{
    nn_model *m = nn_model_new_sequential(AD_F64, 4, NULL);
    cr_assert_eq(nn_model_add_dense(m, 50, 1, NN_INIT_GLOROT_UNIFORM), 0);
    cr_assert_eq(nn_model_add_dropout(m, 0.5), 0);
    cr_assert_eq(nn_model_add_dense(m, 2, 1, NN_INIT_GLOROT_UNIFORM), 0);
    cr_assert_eq(nn_model_build(m, 3, 9), 0);
    cr_assert(nn_model_is_training(m));
    double x[12] = {1, 2, 3, 4, -1, 0.5, 2, 0, 0.1, 0.2, 0.3, 0.4};
    double o1[6], o2[6], e1[6], e2[6];
    cr_assert_eq(nn_model_set_input(m, x, 3, 4), 0);
    cr_assert_eq(nn_model_forward(m), 0);
    ad_get(nn_model_output(m), o1, 6);
    cr_assert_eq(nn_model_forward(m), 0);
    ad_get(nn_model_output(m), o2, 6);
    cr_assert(memcmp(o1, o2, sizeof o1) != 0, "a fresh mask every training forward");
    uint64_t before[4], after[4];
    ad_graph_rng_state(nn_model_graph(m), before);
    cr_assert_eq(nn_model_predict(m, x, 3, 4, e1), 0);
    cr_assert_eq(nn_model_predict(m, x, 3, 4, e2), 0);
    ad_graph_rng_state(nn_model_graph(m), after);
    cr_assert(memcmp(before, after, sizeof before) == 0,
              "predict draws nothing from the graph's generator");
    cr_assert(memcmp(e1, e2, sizeof e1) == 0, "evaluation is deterministic");
    cr_assert(nn_model_is_training(m), "predict restores the mode");
    /* eval output = the network without dropout */
    const double *p = nn_model_params(m);
    const double *w0 = p, *b0 = p + 200, *w1 = p + 250, *b1 = p + 350;
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 2; j++) {
            double s = b1[j];
            for (int h = 0; h < 50; h++) {
                double z = b0[h];
                for (int k = 0; k < 4; k++)
                    z += x[r * 4 + k] * w0[k * 50 + h];
                s += z * w1[h * 2 + j];
            }
            cr_assert_float_eq(e1[r * 2 + j], s, 1e-12);
        }
    nn_model_free(m);
}

/* Evaluation splits a large build batch into chunks that fit the cache
 * (wide rows: 4,096 features of 4 or 8 bytes give chunks of 32 to 63 rows);
 * every row still gets the same output, and training at the build batch
 * goes on. */
static void cache_sized_chunks_case(ad_dtype dt)
{
    enum { N = 100, F = 4096 };
    int64_t widths[] = {F, 2};
    nn_activation acts[] = {NN_ACT_IDENTITY};
    nn_model *m = nn_mlp_new(dt, 2, widths, acts, NN_LOSS_CROSS_ENTROPY, N, 3, NULL);
    cr_assert_not_null(m);
    double *x = malloc(sizeof *x * N * F), out[N * 2], p[F * 2 + 2];
    int labels[N];
    cr_assert_not_null(x);
    nn_rng r;
    nn_rng_seed(&r, 5);
    for (int i = 0; i < N * F; i++)
        x[i] = nn_rng_normal(&r);
    cr_assert_eq(nn_model_predict(m, x, N, F, out), 0, "%s", nn_model_error(m));
    cr_assert_lt(nn_model_batch(m), N, "the last chunk is smaller than the build batch");
    cr_assert_eq(nn_model_param_count(m), F * 2 + 2);
    for (int i = 0; i < F * 2 + 2; i++)
        p[i] = dt == AD_F64 ? ((const double *)nn_model_params(m))[i]
                            : (double)((const float *)nn_model_params(m))[i];
    /* f32: the model's inputs and sums are floats, 4,096 terms of about 0.03 */
    const double tol = dt == AD_F64 ? 1e-11 : 2e-4;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < 2; j++) {
            double z = p[F * 2 + j];
            for (int k = 0; k < F; k++)
                z += x[i * F + k] * p[k * 2 + j];
            cr_assert_float_eq(out[i * 2 + j], z, tol, "dtype %d row %d output %d", (int)dt, i, j);
        }
    for (int i = 0; i < N; i++)
        labels[i] = i % 2;
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    double loss = -1;
    cr_assert_eq(nn_model_set_input(m, x, N, F), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_set_labels(m, labels, N), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_train_step(m, opt, &loss), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_batch(m), N);
    cr_assert(isfinite(loss) && loss > 0, "loss %g", loss);
    nn_optimizer_free(opt);
    nn_model_free(m);
    free(x);
}

Test(nn_model, predict_in_cache_sized_chunks)
{
    cache_sized_chunks_case(AD_F64);
    cache_sized_chunks_case(AD_F32);
}

/* The MLP's outputs computed in double from its flat f32 parameters. */
static void mlp_reference(const float *p, const int64_t *widths, int nw, const float *x,
                          int64_t rows, double *out)
{
    double h[256], z[256];
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < widths[0]; k++)
            h[k] = x[r * widths[0] + k];
        const float *q = p;
        for (int l = 1; l < nw; l++) {
            const int64_t in = widths[l - 1], units = widths[l];
            const float *w = q, *b = q + in * units;
            for (int64_t j = 0; j < units; j++) {
                z[j] = b[j];
                for (int64_t k = 0; k < in; k++)
                    z[j] += h[k] * (double)w[k * units + j];
            }
            for (int64_t j = 0; j < units; j++)
                h[j] = l < nw - 1 && z[j] < 0 ? 0 : z[j];
            q = b + units;
        }
        memcpy(out + r * widths[nw - 1], h, sizeof(double) * (size_t)widths[nw - 1]);
    }
}

/* Evaluation holds the parameters for its chunks, and a backend may pack
 * the weights once per hold (ad_gemm_held): outputs agree with the
 * parameters of each call, after the caller wrote them in place and after
 * a training step, for every chunk size (64, 64, 22 rows). */
Test(nn_model, predict_sees_every_change_of_the_weights)
{
    enum { N = 150, NW = 4 };
    const int64_t widths[NW] = {20, 48, 40, 10};
    nn_activation acts[] = {NN_ACT_RELU, NN_ACT_RELU, NN_ACT_IDENTITY};
    /* the library's backends on one thread with the OpenMP team set, so
       oneDNN is allowed in every build (gemm.c, onednn_allowed) */
    ad_set_threads(2);
    ad_set_threads(1);
    nn_model *m = nn_mlp_new(AD_F32, NW, widths, acts, NN_LOSS_CROSS_ENTROPY, 64, 9, NULL);
    cr_assert_not_null(m);
    float x[N * 20];
    double out[N * 10], ref[N * 10];
    int labels[64];
    nn_rng r;
    nn_rng_seed(&r, 6);
    for (int i = 0; i < N * 20; i++)
        x[i] = (float)nn_rng_normal(&r);
    for (int i = 0; i < 64; i++)
        labels[i] = i % 10;
    float *p = nn_model_params(m);
    const int64_t np = nn_model_param_count(m);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 0.5;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    cr_assert_not_null(opt);
    double first = 0;
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(nn_model_predict_f32(m, x, N, 20, out), 0, "%s", nn_model_error(m));
        mlp_reference(p, widths, NW, x, N, ref);
        for (int i = 0; i < N * 10; i++)
            cr_assert_float_eq(out[i], ref[i], 1e-4 * (1 + fabs(ref[i])),
                               "round %d output %d: %.7g, expected %.7g", round, i, out[i], ref[i]);
        if (round == 0) {
            first = out[N * 10 - 1];
            for (int64_t i = 0; i < np; i++) /* in place, as a caller may */
                p[i] = -0.75f * p[i] + 0.01f * (float)(i % 7);
        } else if (round == 1) {
            cr_assert(fabs(out[N * 10 - 1] - first) > 1e-3, "the new weights changed the output");
            double loss = -1;
            cr_assert_eq(nn_model_set_input_f32(m, x, 64, 20), 0, "%s", nn_model_error(m));
            cr_assert_eq(nn_model_set_labels(m, labels, 64), 0, "%s", nn_model_error(m));
            cr_assert_eq(nn_model_train_step(m, opt, &loss), 0, "%s", nn_model_error(m));
        }
    }
    /* where the library has oneDNN, the held path ran: three layers, chunks
       of 64 and 22 rows */
    const ad_graph *g = nn_model_graph(m);
    cr_assert_eq(ad_gemm_held_entries(g), strstr(ad_gemm_backend(), "onednn") ? 6 : 0,
                 "backend %s: %d entries", ad_gemm_backend(), ad_gemm_held_entries(g));
    cr_assert(!g->leaves_held, "the hold ends with the call");
    nn_optimizer_free(opt);
    nn_model_free(m);
}

/* The same with the products split over threads (ad_gemm_held packs the
 * weights once per hold for all the blocks of rows): on 1, 2 and 3 threads,
 * chunks of 200 rows and 40 (the first layer's split by rows on two
 * threads, on one thread on three: fewer than 16 rows per thread), the
 * outputs agree with sums in double, also after the caller rewrote the
 * weights in place; with oneDNN every product ran on packed weights (6
 * entries on one thread, 9 on two, 10 on three) and the thread counts
 * agree within a few roundings (the same bits where the kernel's order of
 * the sums does not depend on a block's rows). */
Test(nn_model, predict_on_threads_sees_every_change_of_the_weights)
{
    enum { N = 440, NW = 4, IN = 100 };
    const int64_t widths[NW] = {IN, 200, 48, 10};
    nn_activation acts[] = {NN_ACT_RELU, NN_ACT_RELU, NN_ACT_IDENTITY};
    static float x[N * IN];
    static double out[3][2][N * 10], ref[N * 10];
    nn_rng r;
    nn_rng_seed(&r, 8);
    for (int i = 0; i < N * IN; i++)
        x[i] = (float)nn_rng_normal(&r);
    const bool onednn = strstr(ad_gemm_backend(), "onednn") != NULL;
    const int entries[3] = {6, 9, 10};
    /* the OpenMP team set once, so oneDNN is allowed on one thread in every
       build (gemm.c, onednn_allowed) */
    ad_set_threads(2);
    for (int t = 1; t <= 3; t++) {
        ad_set_threads(t);
        nn_model *m = nn_mlp_new(AD_F32, NW, widths, acts, NN_LOSS_CROSS_ENTROPY, 200, 9, NULL);
        cr_assert_not_null(m);
        float *p = nn_model_params(m);
        const int64_t np = nn_model_param_count(m);
        for (int round = 0; round < 2; round++) {
            double *o = out[t - 1][round];
            cr_assert_eq(nn_model_predict_f32(m, x, N, IN, o), 0, "%s", nn_model_error(m));
            mlp_reference(p, widths, NW, x, N, ref);
            for (int i = 0; i < N * 10; i++)
                cr_assert_float_eq(o[i], ref[i], 1e-4 * (1 + fabs(ref[i])),
                                   "%d threads, round %d, output %d: %.7g, expected %.7g", t, round,
                                   i, o[i], ref[i]);
            for (int64_t i = 0; i < np; i++) /* in place, as a caller may */
                p[i] = -0.75f * p[i] + 0.01f * (float)(i % 7);
        }
        const ad_graph *g = nn_model_graph(m);
        cr_assert_eq(ad_gemm_held_entries(g), onednn ? entries[t - 1] : 0,
                     "%d threads, backend %s: %d entries", t, ad_gemm_backend(),
                     ad_gemm_held_entries(g));
        /* oneDNN's kernel may order a block's sums by the block's row
           count (AVX2's gemm:jit does; AVX-512's did not): the thread
           counts agree within a few f32 roundings, ten times tighter than
           the check against double sums above */
        for (int round = 0; round < 2 && t > 1; round++)
            for (int i = 0; i < N * 10; i++) {
                const double a = out[0][round][i], b = out[t - 1][round][i];
                cr_assert(fabs(a - b) <= 1e-5 * (1 + fabs(a)),
                          "%d threads, round %d, output %d: %.9g, one thread %.9g", t, round, i, b,
                          a);
            }
        nn_model_free(m);
    }
    ad_set_threads(1);
}

Test(nn_model, predict_in_chunks_and_evaluate)
{
    int64_t widths[] = {3, 4};
    nn_activation acts[] = {NN_ACT_IDENTITY};
    nn_model *m = nn_mlp_new(AD_F64, 2, widths, acts, NN_LOSS_CROSS_ENTROPY, 8, 2, NULL);
    enum { N = 37 };
    double x[N * 3], out[N * 4];
    int labels[N];
    int64_t classes[N];
    nn_rng r;
    nn_rng_seed(&r, 4);
    for (int i = 0; i < N * 3; i++)
        x[i] = nn_rng_normal(&r);
    cr_assert_eq(nn_model_predict(m, x, N, 3, out), 0);
    cr_assert_eq(nn_model_predict_classes(m, x, N, 3, classes), 0);
    const double *p = nn_model_params(m);
    int64_t agree = 0;
    for (int i = 0; i < N; i++) {
        double z[4];
        for (int j = 0; j < 4; j++) {
            z[j] = p[12 + j];
            for (int k = 0; k < 3; k++)
                z[j] += x[i * 3 + k] * p[k * 4 + j];
            cr_assert_float_eq(out[i * 4 + j], z[j], 1e-13);
        }
        cr_assert_eq(classes[i], nn_argmax(z, 4));
        labels[i] = i % 2 ? (int)classes[i] : (int)(classes[i] + 1) % 4;
        agree += labels[i] == classes[i];
    }
    double acc = -1, loss = -1;
    cr_assert_eq(nn_model_evaluate(m, x, labels, N, 3, &loss, &acc), 0, "%s", nn_model_error(m));
    cr_assert_float_eq(acc, (double)agree / N, 1e-15);
    double ce = 0;
    for (int i = 0; i < N; i++) {
        const double *z = out + i * 4;
        double mx = z[nn_argmax(z, 4)], s = 0;
        for (int j = 0; j < 4; j++)
            s += exp(z[j] - mx);
        ce += mx + log(s) - z[labels[i]];
    }
    cr_assert_float_eq(loss, ce / N, 1e-12);
    cr_assert_eq(nn_argmax(NULL, 3), -1);
    double ties[3] = {1, 5, 5};
    cr_assert_eq(nn_argmax(ties, 3), 1, "first maximum on ties");
    nn_model_free(m);
}

/* ------------------------------------------------------------- optimizers */

Test(nn_optim, bad_configs_are_refused_with_a_reason)
{
    nn_model *m = nn_model_new_sequential(AD_F64, 2, NULL);
    nn_model_add_dense(m, 1, 1, NN_INIT_ZEROS);
    nn_model_set_loss(m, NN_LOSS_MSE);
    cr_assert_eq(nn_model_build(m, 1, 0), 0);
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    c.nesterov = 1;
    ad_error err;
    cr_assert_null(nn_optimizer_new(m, &c, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message,
                     "nn_optimizer_new: Nesterov momentum needs momentum > 0 and zero dampening");
    c = nn_optim_defaults(NN_OPT_ADAM);
    c.beta2 = 1.0;
    cr_assert_null(nn_optimizer_new(m, &c, &err));
    cr_assert_str_eq(err.message, "nn_optimizer_new: betas (0.9, 1) must be in [0, 1)");
    c = nn_optim_defaults(NN_OPT_RMSPROP);
    c.lr = -1;
    cr_assert_null(nn_optimizer_new(m, &c, &err));
    cr_assert_str_eq(err.message, "nn_optimizer_new: learning rate -1 must be >= 0");
    c = nn_optim_defaults(NN_OPT_SGD);
    c.fused = 2;
    cr_assert_null(nn_optimizer_new(m, &c, &err));
    cr_assert_str_eq(err.message, "nn_optimizer_new: fused is 2, not 0 or 1");
    c = nn_optim_defaults(NN_OPT_ADAM);
    c.fused = 1;
    cr_assert_null(nn_optimizer_new(m, &c, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "nn_optimizer_new: fused needs plain SGD (no momentum, weight "
                                  "decay or clipping), not adam");
    c = nn_optim_defaults(NN_OPT_SGD);
    c.fused = 1;
    c.momentum = 0.9;
    c.clip_norm = 1;
    cr_assert_null(nn_optimizer_new(m, &c, &err));
    cr_assert_str_eq(err.message, "nn_optimizer_new: fused needs plain SGD (no momentum, weight "
                                  "decay or clipping), not sgd with momentum with clipping");
    nn_model *unbuilt = nn_model_new_sequential(AD_F64, 2, NULL);
    c = nn_optim_defaults(NN_OPT_SGD);
    cr_assert_null(nn_optimizer_new(unbuilt, &c, &err));
    cr_assert_eq(err.code, AD_ESTATE);
    cr_assert_str_eq(err.message, "nn_optimizer_new: the model is not built (nn_model_build)");
    nn_optimizer *flat = nn_optimizer_new_flat(AD_F64, 3, &c, NULL);
    cr_assert_eq(nn_optimizer_step(flat), -1);
    cr_assert_eq(nn_optimizer_errcode(flat), AD_ESTATE);
    cr_assert_eq(nn_model_train_step(m, flat, NULL), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EINVAL);
    cr_assert_str_eq(nn_model_error(m),
                     "nn_model_train_step: the optimizer is bound to another model");
    nn_optimizer_free(flat);
    nn_model_free(unbuilt);
    nn_model_free(m);
}

Test(nn_optim, defaults_and_slots)
{
    nn_optim_config a = nn_optim_defaults(NN_OPT_ADAMW);
    cr_assert_eq(a.lr, 1e-3);
    cr_assert_eq(a.beta1, 0.9);
    cr_assert_eq(a.beta2, 0.999);
    cr_assert_eq(a.eps, 1e-8);
    cr_assert_eq(a.weight_decay, 0.01);
    cr_assert_eq(nn_optim_defaults(NN_OPT_ADAM).weight_decay, 0.0);
    cr_assert_eq(nn_optim_defaults(NN_OPT_ADAGRAD).eps, 1e-10);
    cr_assert_eq(nn_optim_defaults(NN_OPT_RMSPROP).alpha, 0.99);
    a.amsgrad = 1;
    nn_optimizer *o = nn_optimizer_new_flat(AD_F32, 10, &a, NULL);
    cr_assert_eq(nn_optimizer_state_slots(o), 3);
    cr_assert_str_eq(nn_optimizer_slot_name(o, 0), "exp_avg");
    cr_assert_str_eq(nn_optimizer_slot_name(o, 2), "max_exp_avg_sq");
    cr_assert_null(nn_optimizer_slot_name(o, 3));
    cr_assert_eq(nn_optimizer_state_count(o), 30);
    cr_assert_eq(nn_optimizer_state_bytes(o), 64 + 30 * sizeof(float));
    nn_optimizer_free(o);
    nn_optim_config s = nn_optim_defaults(NN_OPT_SGD);
    o = nn_optimizer_new_flat(AD_F64, 10, &s, NULL);
    cr_assert_eq(nn_optimizer_state_slots(o), 0, "plain SGD has no state");
    nn_optimizer_free(o);
    nn_optim_config g = nn_optim_defaults(NN_OPT_ADAGRAD);
    g.initial_accumulator = 0.5;
    o = nn_optimizer_new_flat(AD_F64, 4, &g, NULL);
    cr_assert_eq(((double *)nn_optimizer_state(o))[3], 0.5);
    nn_optimizer_free(o);
}

Test(optim, flat_optimizer_state_comes_from_the_given_allocator)
{
    counting cnt = {0, 0, 0};
    nn_optim_config a = nn_optim_defaults(NN_OPT_ADAM);
    ad_error err;
    nn_optimizer *o = nn_optimizer_new_flat_with(AD_F64, 10, &a, count_alloc, &cnt, &err);
    cr_assert_not_null(o, "%s", err.message);
    cr_assert_geq(cnt.calls, 2, "the object and its state: %ld calls", cnt.calls);
    cr_assert_geq(cnt.live, 2 * 10 * sizeof(double), "Adam's two slots: %zu bytes live", cnt.live);
    nn_optimizer_free(o);
    cr_assert_eq(cnt.live, 0, "%zu bytes not returned", cnt.live);
    a.lr = -1;
    cr_assert_null(nn_optimizer_new_flat_with(AD_F64, 10, &a, count_alloc, &cnt, &err));
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_eq(cnt.live, 0, "a refused config keeps nothing");
}

/* Trains model copies: 10 steps straight, or 5 + save + restore into fresh
 * objects + 5; the results must be identical bit for bit. */
static void resume_case(nn_optim_kind kind, ad_dtype dt)
{
    int64_t widths[] = {5, 7, 3};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    double x[10 * 5];
    int y[10];
    nn_rng r;
    nn_rng_seed(&r, 12);
    for (int i = 0; i < 50; i++)
        x[i] = nn_rng_normal(&r);
    for (int i = 0; i < 10; i++)
        y[i] = (int)nn_rng_below(&r, 3);
    nn_optim_config c = nn_optim_defaults(kind);
    c.lr = 0.05;
    if (kind == NN_OPT_SGD)
        c.momentum = 0.9, c.nesterov = 1;
    if (kind == NN_OPT_RMSPROP)
        c.momentum = 0.5, c.centered = 1;

    nn_model *a = nn_mlp_new(dt, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 10, 3, NULL);
    nn_optimizer *oa = nn_optimizer_new(a, &c, NULL);
    for (int s = 0; s < 10; s++) {
        cr_assert_eq(nn_model_set_input(a, x, 10, 5), 0);
        cr_assert_eq(nn_model_set_labels(a, y, 10), 0);
        cr_assert_eq(nn_model_train_step(a, oa, NULL), 0);
    }

    nn_model *b = nn_mlp_new(dt, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 10, 3, NULL);
    nn_optimizer *ob = nn_optimizer_new(b, &c, NULL);
    for (int s = 0; s < 5; s++) {
        cr_assert_eq(nn_model_set_input(b, x, 10, 5), 0);
        cr_assert_eq(nn_model_set_labels(b, y, 10), 0);
        cr_assert_eq(nn_model_train_step(b, ob, NULL), 0);
    }
    size_t pbytes = (size_t)nn_model_param_count(b) * (dt == AD_F64 ? 8 : 4);
    void *saved_params = malloc(pbytes);
    memcpy(saved_params, nn_model_params(b), pbytes);
    size_t sbytes = nn_optimizer_state_bytes(ob);
    void *saved_state = malloc(sbytes);
    cr_assert_eq(nn_optimizer_save_state(ob, saved_state, sbytes), 0);
    nn_optimizer_free(ob);
    nn_model_free(b);

    /* a fresh process would build with another seed: the checkpoint decides */
    nn_model *c2 = nn_mlp_new(dt, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 10, 99, NULL);
    nn_optimizer *oc = nn_optimizer_new(c2, &c, NULL);
    memcpy(nn_model_params(c2), saved_params, pbytes);
    cr_assert_eq(nn_optimizer_load_state(oc, saved_state, sbytes), 0, "%s", nn_optimizer_error(oc));
    cr_assert_eq(nn_optimizer_steps(oc), 5);
    for (int s = 0; s < 5; s++) {
        cr_assert_eq(nn_model_set_input(c2, x, 10, 5), 0);
        cr_assert_eq(nn_model_set_labels(c2, y, 10), 0);
        cr_assert_eq(nn_model_train_step(c2, oc, NULL), 0);
    }
    cr_assert(memcmp(nn_model_params(a), nn_model_params(c2), pbytes) == 0,
              "%s: resumed run differs", nn_optim_name(kind));
    cr_assert(memcmp(nn_optimizer_state(oa), nn_optimizer_state(oc),
                     (size_t)nn_optimizer_state_count(oa) * (dt == AD_F64 ? 8 : 4)) == 0);
    free(saved_params);
    free(saved_state);
    nn_optimizer_free(oa);
    nn_optimizer_free(oc);
    nn_model_free(a);
    nn_model_free(c2);
}

Test(nn_optim, resume_from_saved_state_is_exact)
{
    for (int k = 0; k < NN_OPT_COUNT; k++) {
        resume_case((nn_optim_kind)k, AD_F64);
        resume_case((nn_optim_kind)k, AD_F32);
    }
}

Test(nn_optim, load_state_refuses_a_different_optimizer)
{
    nn_optim_config adam = nn_optim_defaults(NN_OPT_ADAM), sgd = nn_optim_defaults(NN_OPT_SGD);
    sgd.momentum = 0.9;
    nn_optimizer *a = nn_optimizer_new_flat(AD_F64, 4, &adam, NULL);
    nn_optimizer *s = nn_optimizer_new_flat(AD_F64, 4, &sgd, NULL);
    nn_optimizer *a5 = nn_optimizer_new_flat(AD_F64, 5, &adam, NULL);
    unsigned char buf[512];
    cr_assert_eq(nn_optimizer_save_state(a, buf, sizeof buf), 0);
    cr_assert_eq(nn_optimizer_load_state(s, buf, sizeof buf), -1);
    cr_assert_eq(nn_optimizer_errcode(s), AD_EINVAL);
    cr_assert_str_eq(nn_optimizer_error(s),
                     "nn_optimizer_load_state: state of a adam optimizer, this one is sgd");
    cr_assert_eq(nn_optimizer_load_state(a5, buf, sizeof buf), -1);
    cr_assert_eq(nn_optimizer_errcode(a5), AD_EMISMATCH);
    cr_assert_str_eq(nn_optimizer_error(a5), "nn_optimizer_load_state: state for 4 parameters in 2 "
                                             "slots, optimizer has 5 in 2");
    cr_assert_eq(nn_optimizer_save_state(a, buf, 10), -1);
    cr_assert_eq(nn_optimizer_errcode(a), AD_EMISMATCH);
    buf[0] = 'X';
    cr_assert_eq(nn_optimizer_load_state(a, buf, sizeof buf), -1);
    cr_assert_eq(nn_optimizer_errcode(a), AD_EINVAL);
    nn_optimizer_free(a);
    nn_optimizer_free(s);
    nn_optimizer_free(a5);
}

Test(nn_optim, flat_update_and_lr_changes)
{
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    c.lr = 0.5;
    nn_optimizer *o = nn_optimizer_new_flat(AD_F32, 3, &c, NULL);
    float p[3] = {1, 2, 3}, g[3] = {1, -2, 0.5f};
    cr_assert_eq(nn_optimizer_update(o, p, g), 0);
    cr_assert_eq(p[0], 0.5f);
    cr_assert_eq(p[1], 3.0f);
    cr_assert_eq(p[2], 2.75f);
    nn_schedule s = nn_schedule_exponential(0.5, 0.5);
    cr_assert_eq(nn_optimizer_set_lr(o, nn_schedule_lr(&s, 2)), 0);
    cr_assert_eq(nn_optimizer_lr(o), 0.125);
    cr_assert_eq(nn_optimizer_update(o, p, g), 0);
    cr_assert_eq(p[0], 0.375f);
    cr_assert_eq(nn_optimizer_steps(o), 2);
    cr_assert_eq(nn_optimizer_set_lr(o, NAN), -1);
    cr_assert_eq(nn_optimizer_errcode(o), AD_EINVAL);
    nn_optimizer_free(o);
}

Test(nn_model, batch_norm_and_perceptron_names)
{
    nn_model *m = nn_model_new_sequential(AD_F64, 3, NULL);
    cr_assert_eq(nn_model_add_perceptron(m, 2, NN_ACT_STEP_ST), 0);
    cr_assert_eq(nn_model_add_dense(m, 4, 0, NN_INIT_LECUN_NORMAL), 0);
    cr_assert_eq(nn_model_add_batch_norm(m, 0.1, 1e-5), 0);
    cr_assert_eq(nn_model_build(m, 2, 0), 0, "%s", nn_model_error(m));
    const char *names[] = {"perceptron0.weight", "perceptron0.bias", "dense0.weight",
                           "batchnorm0.gamma", "batchnorm0.beta"};
    cr_assert_eq(nn_model_param_tensors(m), 5);
    for (int i = 0; i < 5; i++) {
        nn_param_info info;
        nn_model_param_info(m, i, &info);
        cr_assert_str_eq(info.name, names[i]);
    }
    cr_assert_eq(nn_model_param_count(m), 3 * 2 + 2 + 2 * 4 + 4 + 4);
    cr_assert_eq(nn_model_state_count(m), 8);
    const double *st = nn_model_state(m);
    cr_assert_eq(st[0], 0.0);
    cr_assert_eq(st[4], 1.0, "running variance starts at 1");
    /* running statistics are constants: not trainable, no gradient buffer */
    ad_graph *g = nn_model_graph(m);
    int found = 0;
    for (int64_t i = 0; i < ad_graph_size(g); i++) {
        ad_node *n = ad_graph_node(g, i);
        if (strstr(ad_node_name(n), "running_")) {
            found++;
            cr_assert(!ad_node_is_trainable(n), "%s", ad_node_name(n));
            cr_assert_null(ad_grad_data(n));
        }
    }
    cr_assert_eq(found, 2);
    nn_model_free(m);
}
