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

static nn_optimizer *adam(nn_model *m, double lr)
{
    nn_optim_config c = nn_optim_defaults(NN_OPT_ADAM);
    c.lr = lr;
    ad_error o_err;
    nn_optimizer *o = nn_optimizer_new(m, &c, &o_err);
    cr_assert_not_null(o, "%s", o_err.message);
    return o;
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

Test(train_epoch, divergence_names_the_batch_and_skips_its_update)
{
    io_dataset *ds = toy_data();
    io_batcher *b = NULL;
    cr_assert_eq(((b = io_batcher_new(ds, 4, false, 0, NULL)) ? 0 : -1), 0);
    nn_model *m = model_with(NN_ACT_IDENTITY);
    nn_optim_config c = nn_optim_defaults(NN_OPT_SGD);
    c.lr = 1e30;
    ad_error o_err;
    nn_optimizer *o = nn_optimizer_new(m, &c, &o_err);
    cr_assert_not_null(o, "%s", o_err.message);
    nn_epoch_stats st;
    int rc = nn_train_epoch(m, o, b, 0, NULL, &st);
    cr_assert_eq(rc, -1, "%s", nn_model_error(m));
    cr_expect_geq(st.failed_batch, 1);
    cr_expect(!isfinite(st.loss));
    cr_expect_eq(nn_optimizer_steps(o), st.failed_batch, "the diverged batch was applied");
    cr_expect(strstr(nn_model_error(m), "nn_train_epoch: training diverged in epoch 1, batch "),
              "%s", nn_model_error(m));
    nn_optimizer_free(o);
    nn_model_free(m);
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
