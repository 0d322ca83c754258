/*
 * test_nn_fit.c -- the library's training loop (nn_train_epoch, the loop of
 * `chainrule train`): the same weights bit for bit as a hand-written loop
 * over the batcher, shards that cover every row once, hooks called once per
 * batch, divergence reported with its batch and without its update, and the
 * finiteness checks made before a save.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <string.h>

#include <chainrule/data.h>
#include <chainrule/nn.h>

#define N 10
#define D 3

static io_dataset *toy_data(void)
{
    io_dataset *ds = NULL;
    ad_error err;
    cr_assert_eq(((ds = io_dataset_new(N, D, true, &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    for (size_t i = 0; i < N * D; i++)
        ds->x[i] = (float)sin(0.7 * (double)i + 0.3);
    for (size_t i = 0; i < N; i++)
        ds->y[i] = (int)(i % 3);
    ds->classes = 3;
    return ds;
}

static nn_model *model_with(nn_activation hidden)
{
    int64_t widths[3] = {D, 5, 3};
    nn_activation acts[2] = {hidden, NN_ACT_IDENTITY};
    ad_error m_err;
    nn_model *m = nn_mlp_new(AD_F32, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, 4, 11, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    return m;
}

static nn_model *toy_model(void) { return model_with(NN_ACT_TANH); }

static nn_optimizer *optimizer(nn_model *m, nn_optim_kind kind, double lr, int fused)
{
    nn_optim_config c = nn_optim_defaults(kind);
    c.lr = lr;
    c.fused = fused;
    ad_error o_err;
    nn_optimizer *o = nn_optimizer_new(m, &c, &o_err);
    cr_assert_not_null(o, "%s", o_err.message);
    return o;
}

static nn_optimizer *adam(nn_model *m, double lr) { return optimizer(m, NN_OPT_ADAM, lr, 0); }
static nn_optimizer *sgd(nn_model *m, double lr, int fused)
{
    return optimizer(m, NN_OPT_SGD, lr, fused);
}

Test(train_epoch, equals_a_hand_written_loop_bit_for_bit)
{
    io_dataset *ds = toy_data();
    nn_model *a = toy_model(), *b = toy_model();
    nn_optimizer *oa = adam(a, 0.01), *ob = adam(b, 0.01);
    io_batcher *ba = NULL, *bb = NULL;
    cr_assert_eq(((ba = io_batcher_new(ds, 4, true, 5, NULL)) ? 0 : -1), 0);
    cr_assert_eq(((bb = io_batcher_new(ds, 4, true, 5, NULL)) ? 0 : -1), 0);
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        nn_epoch_stats st;
        cr_assert_eq(nn_train_epoch(a, oa, ba, epoch, NULL, &st), 0, "%s", nn_model_error(a));
        cr_expect_eq(st.rows, N);
        cr_expect_eq(st.batches, 3);
        cr_expect_eq(st.failed_batch, -1);
        cr_expect(st.correct >= 0 && st.correct <= N);
        double loss_sum = 0;
        io_batch batch;
        io_batcher_start_epoch(bb, epoch);
        while (io_batcher_next(bb, &batch)) {
            double loss;
            cr_assert_eq(nn_model_set_input_f32(b, batch.x, batch.size, D), 0);
            cr_assert_eq(nn_model_set_labels(b, batch.y, batch.size), 0);
            cr_assert_eq(nn_model_train_step(b, ob, &loss), 0, "%s", nn_model_error(b));
            loss_sum += loss * (double)batch.size;
        }
        cr_expect_eq(st.loss_sum, loss_sum, "epoch %d: %.17g vs %.17g", (int)epoch, st.loss_sum,
                     loss_sum);
    }
    cr_expect_eq(memcmp(nn_model_params(a), nn_model_params(b),
                        (size_t)nn_model_param_count(a) * sizeof(float)),
                 0, "the weights differ from the hand-written loop's");
    io_batcher_free(ba);
    io_batcher_free(bb);
    nn_optimizer_free(oa);
    nn_optimizer_free(ob);
    nn_model_free(a);
    nn_model_free(b);
    io_dataset_free(ds);
}

typedef struct {
    int64_t local, global, calls, steps;
} hook_count;

static int count_backward(nn_model *m, int64_t local_rows, int64_t global_rows, void *ctx)
{
    (void)m;
    hook_count *h = ctx;
    h->local += local_rows;
    h->global += global_rows;
    h->calls++;
    return 0;
}

static void count_steps(const nn_epoch_stats *so_far, int64_t batch, int64_t batches, void *ctx)
{
    hook_count *h = ctx;
    h->steps++;
    cr_expect_eq(so_far->batches, batch);
    cr_expect_eq(batches, 3);
}

Test(train_epoch, shards_cover_every_row_once_and_hooks_run_per_batch)
{
    io_dataset *ds = toy_data();
    io_batcher *b = NULL;
    cr_assert_eq(((b = io_batcher_new(ds, 4, true, 5, NULL)) ? 0 : -1), 0);
    int64_t rows = 0;
    for (int rank = 0; rank < 3; rank++) {
        nn_model *m = toy_model();
        nn_optimizer *o = adam(m, 0.01);
        hook_count h = {0, 0, 0, 0};
        nn_epoch_options eo = {rank, 3, count_backward, count_steps, &h};
        nn_epoch_stats st;
        cr_assert_eq(nn_train_epoch(m, o, b, 0, &eo, &st), 0, "%s", nn_model_error(m));
        cr_expect_eq(h.calls, 3);
        cr_expect_eq(h.steps, 3);
        cr_expect_eq(h.global, N);
        cr_expect_eq(h.local, st.rows);
        rows += st.rows;
        nn_optimizer_free(o);
        nn_model_free(m);
    }
    cr_expect_eq(rows, N, "the shards of 3 processes hold %lld rows", (long long)rows);
    nn_model *m = toy_model();
    nn_optimizer *o = adam(m, 0.01);
    nn_epoch_options bad = {3, 3, NULL, NULL, NULL};
    nn_epoch_stats st;
    cr_expect_eq(nn_train_epoch(m, o, b, 0, &bad, &st), -1);
    cr_expect_eq(nn_model_errcode(m), AD_EINVAL);
    cr_expect_str_eq(nn_model_error(m), "nn_train_epoch: rank 3 is not in [0, 3)");
    cr_expect_eq(nn_train_epoch(m, o, NULL, 0, NULL, &st), -1);
    cr_expect_eq(nn_model_errcode(m), AD_EINVAL);
    cr_expect_str_eq(nn_model_error(m), "nn_train_epoch: batcher is NULL");
    nn_optimizer_free(o);
    nn_model_free(m);
    io_batcher_free(b);
    io_dataset_free(ds);
}

/* A fused SGD optimizer (the step inside the backward pass): the weights of
 * the separate step to rounding, over three epochs, with as many steps
 * counted; nn_model_train_step takes the same fused step as the epoch loop
 * (bit for bit); with an after_backward hook (which reads the gradients)
 * the epoch falls back to the separate step, bit for bit. */
Test(train_epoch, fused_sgd_matches_the_separate_step)
{
    io_dataset *ds = toy_data();
    enum { PLAIN, FUSED, FUSED_STEPS, FUSED_HOOK, NM };
    nn_model *m[NM];
    nn_optimizer *o[NM];
    io_batcher *b[NM];
    for (int k = 0; k < NM; k++) {
        m[k] = toy_model();
        o[k] = sgd(m[k], 0.3, k != PLAIN);
        cr_assert_eq(((b[k] = io_batcher_new(ds, 4, true, 5, NULL)) ? 0 : -1), 0);
    }
    hook_count h = {0, 0, 0, 0};
    nn_epoch_options with_hook = {0, 1, count_backward, NULL, &h};
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        nn_epoch_stats st[NM];
        for (int k = 0; k < NM; k++) {
            if (k == FUSED_STEPS) {
                io_batch batch;
                io_batcher_start_epoch(b[k], epoch);
                while (io_batcher_next(b[k], &batch)) {
                    cr_assert_eq(nn_model_set_input_f32(m[k], batch.x, batch.size, D), 0);
                    cr_assert_eq(nn_model_set_labels(m[k], batch.y, batch.size), 0);
                    cr_assert_eq(nn_model_train_step(m[k], o[k], NULL), 0, "%s",
                                 nn_model_error(m[k]));
                }
                continue;
            }
            cr_assert_eq(nn_train_epoch(m[k], o[k], b[k], epoch,
                                        k == FUSED_HOOK ? &with_hook : NULL, &st[k]),
                         0, "%s", nn_model_error(m[k]));
        }
        cr_expect_float_eq(st[FUSED].loss_sum, st[PLAIN].loss_sum, 1e-5 * fabs(st[PLAIN].loss_sum),
                           "epoch %d", (int)epoch);
    }
    const float *pp = nn_model_params(m[PLAIN]), *pf = nn_model_params(m[FUSED]);
    int64_t n = nn_model_param_count(m[PLAIN]);
    for (int64_t i = 0; i < n; i++)
        cr_expect_float_eq(pf[i], pp[i], 1e-5f * (1 + fabsf(pp[i])),
                           "parameter %lld: %.9g, not %.9g", (long long)i, pf[i], pp[i]);
    cr_expect_eq(memcmp(nn_model_params(m[FUSED_STEPS]), pf, (size_t)n * sizeof(float)), 0,
                 "nn_model_train_step's fused step differs from the epoch loop's");
    cr_expect_eq(memcmp(nn_model_params(m[FUSED_HOOK]), pp, (size_t)n * sizeof(float)), 0,
                 "with a gradient hook the fused optimizer did not take the separate step");
    cr_expect_eq(h.calls, 9);
    for (int k = 0; k < NM; k++) {
        cr_expect_eq(nn_optimizer_steps(o[k]), 9, "model %d counted %lld steps", k,
                     (long long)nn_optimizer_steps(o[k]));
        io_batcher_free(b[k]);
        nn_optimizer_free(o[k]);
        nn_model_free(m[k]);
    }
    io_dataset_free(ds);
}

/* A diverged batch is named and its update not applied; a fused step
 * (inside the backward pass) is taken only after the loss was found finite. */
Test(train_epoch, divergence_names_the_batch_and_skips_its_update)
{
    io_dataset *ds = toy_data();
    io_batcher *b = NULL;
    cr_assert_eq(((b = io_batcher_new(ds, 4, false, 0, NULL)) ? 0 : -1), 0);
    for (int fused = 0; fused < 2; fused++) {
        nn_model *m = model_with(NN_ACT_IDENTITY);
        nn_optimizer *o = sgd(m, 1e30, fused);
        nn_epoch_stats st;
        cr_assert_eq(nn_train_epoch(m, o, b, 0, NULL, &st), -1, "%s", nn_model_error(m));
        cr_expect_geq(st.failed_batch, 1);
        cr_expect(!isfinite(st.loss));
        cr_expect_eq(nn_optimizer_steps(o), st.failed_batch,
                     "fused %d: the diverged batch was applied", fused);
        cr_expect(strstr(nn_model_error(m), "nn_train_epoch: training diverged in epoch 1, batch "),
                  "%s", nn_model_error(m));
        nn_optimizer_free(o);
        nn_model_free(m);
    }
    io_batcher_free(b);
    io_dataset_free(ds);
}

Test(train_epoch, non_finite_weights_and_state_are_counted)
{
    nn_model *m = toy_model();
    nn_optimizer *o = adam(m, 0.01);
    cr_expect_eq(nn_model_nonfinite_params(m), 0);
    cr_expect_eq(nn_optimizer_nonfinite_state(o), 0);
    float *p = nn_model_params(m), *s = nn_optimizer_state(o);
    p[2] = NAN;
    p[7] = INFINITY;
    s[1] = -INFINITY;
    cr_expect_eq(nn_model_nonfinite_params(m), 2);
    cr_expect_eq(nn_optimizer_nonfinite_state(o), 1);
    cr_expect_eq(nn_model_nonfinite_params(NULL), -1);
    cr_expect_eq(nn_optimizer_nonfinite_state(NULL), -1);
    nn_optimizer_free(o);
    nn_model_free(m);
}
