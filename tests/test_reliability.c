/*
 * test_reliability.c -- reliability of a whole training run through nn:
 * allocation failure at every allocation of a small training run (build,
 * optimizer, train steps, predict, evaluate) reports an error and leaks
 * nothing; one thread and one seed give bit-identical weights run after run
 * (in-process and through `chainrule train --save`); anomaly mode on a
 * model's graph stops a diverging run naming the op, the node and the pass,
 * and the CLI stops on a non-finite loss with status 1.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chainrule/autodiff.h>
#include <chainrule/checkpoint.h>
#include <chainrule/data.h>
#include <chainrule/nn.h>

#include "test_cli_run.h"

/* ------------------------------------------------------------ allocator */

typedef struct {
    long calls;   /* allocations and growths */
    long live;    /* blocks outstanding */
    long fail_at; /* fail the fail_at-th call (1-based); 0: never */
    long failed;  /* calls refused */
} counter;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *c = ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr)
            c->live--;
        free(ptr);
        return NULL;
    }
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at) {
        c->failed++;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p && !ptr)
        c->live++;
    return p;
}

/* ------------------------------------------------------------ a small run */

/* 10 examples of 4 features in 3 classes */
#define NROWS 10
#define NFEAT 4
static const double X[NROWS * NFEAT] = {0.1, 0.9,  -0.3, 0.5,  -1.2, 0.4, 0.8,  -0.1, 0.7,  -0.6,
                                        0.2, 1.1,  -0.5, -0.9, 0.3,  0.4, 1.4,  0.2,  -0.7, -0.8,
                                        0.0, 1.0,  0.6,  -0.4, -0.2, 0.3, -1.1, 0.9,  0.9,  -0.3,
                                        0.5, -0.2, 0.4,  0.8,  -0.9, 0.1, -1.0, 0.6,  0.7,  -0.5};
static const int Y[NROWS] = {0, 1, 2, 1, 0, 2, 1, 0, 2, 1};

#define NSTEPS 7

typedef struct {
    int rc;              /* 0 or -1 */
    ad_errcode code;     /* the error's code when rc != 0 */
    char msg[512];       /* the error message when rc != 0 */
    double loss[NSTEPS]; /* loss of every step */
    double eval_loss, eval_acc;
    void *params; /* a malloc'd copy of the final parameters (when asked) */
    size_t params_bytes;
} run_result;

static int fail_with(run_result *r, int rc, ad_errcode code, const char *msg)
{
    r->rc = rc;
    r->code = code;
    snprintf(r->msg, sizeof r->msg, "%s", msg && *msg ? msg : "(no message)");
    return rc;
}

/*
 * A training run with every allocation from the counting allocator (the
 * dataset's, and through it the batcher's, too): a dataset of the 10 examples and a shuffling
 * batcher (batch 4), a 4-8-3 MLP (ReLU, batch norm, dropout, cross-entropy), an Adam optimizer, two
 * epochs (batches of 4, 4, 2) and a step on a larger batch of 6 (which grows the graph), then
 * predict and evaluate, and free everything.
 */
static int training_run(ad_dtype dt, uint64_t seed, counter *c, run_result *r, int keep_params)
{
    memset(r, 0, sizeof *r);
    io_dataset *ds = NULL;
    io_batcher *bat = NULL;
    nn_model *m = NULL;
    nn_optimizer *opt = NULL;
    ad_error derr;
    int rc;
    if (!(ds = io_dataset_new_with(NROWS, NFEAT, true, counting_alloc, c, &derr))) {
        fail_with(r, -1, derr.code, derr.message);
        goto done;
    }
    for (int i = 0; i < NROWS * NFEAT; i++)
        ds->x[i] = (float)X[i];
    memcpy(ds->y, Y, sizeof Y);
    ds->classes = 3;
    if (!(bat = io_batcher_new(ds, 4, true, seed, &derr))) {
        fail_with(r, -1, derr.code, derr.message);
        goto done;
    }
    m = nn_model_new_sequential_with(dt, NFEAT, counting_alloc, c, &derr);
    if (!m) {
        fail_with(r, -1, derr.code, derr.message);
        goto done;
    }
    if ((rc = nn_model_add_dense(m, 8, 1, NN_INIT_HE_UNIFORM)) ||
        (rc = nn_model_add_activation(m, NN_ACT_RELU)) ||
        (rc = nn_model_add_batch_norm(m, 0.1, 1e-5)) || (rc = nn_model_add_dropout(m, 0.25)) ||
        (rc = nn_model_add_dense(m, 3, 1, NN_INIT_GLOROT_UNIFORM)) ||
        (rc = nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY)) || (rc = nn_model_build(m, 4, seed))) {
        fail_with(r, rc, nn_model_errcode(m), nn_model_error(m));
        goto done;
    }
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.lr = 0.05;
    cfg.clip_norm = 5.0;
    opt = nn_optimizer_new(m, &cfg, &derr);
    if (!opt) {
        fail_with(r, -1, derr.code, derr.message);
        goto done;
    }
    int step = 0;
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
        io_batch b;
        io_batcher_start_epoch(bat, epoch);
        while (io_batcher_next(bat, &b)) {
            cr_assert_lt(step, NSTEPS - 1);
            if ((rc = nn_model_set_input_f32(m, b.x, b.size, NFEAT)) ||
                (rc = nn_model_set_labels(m, b.y, b.size)) ||
                (rc = nn_model_train_step(m, opt, &r->loss[step++]))) {
                fail_with(r, rc, nn_model_errcode(m), nn_model_error(m));
                goto done;
            }
        }
    }
    cr_assert_eq(step, NSTEPS - 1);
    /* a batch larger than the build's: the graph grows */
    if ((rc = nn_model_set_input(m, X + 2 * NFEAT, 6, NFEAT)) ||
        (rc = nn_model_set_labels(m, Y + 2, 6)) ||
        (rc = nn_model_train_step(m, opt, &r->loss[step]))) {
        fail_with(r, rc, nn_model_errcode(m), nn_model_error(m));
        goto done;
    }
    int64_t classes[NROWS];
    if ((rc = nn_model_predict_classes(m, X, NROWS, NFEAT, classes)) ||
        (rc = nn_model_evaluate(m, X, Y, NROWS, NFEAT, &r->eval_loss, &r->eval_acc))) {
        fail_with(r, rc, nn_model_errcode(m), nn_model_error(m));
        goto done;
    }
    for (int i = 0; i < NROWS; i++)
        cr_assert(classes[i] >= 0 && classes[i] < 3, "class %lld", (long long)classes[i]);
    if (keep_params) {
        r->params_bytes = (size_t)nn_model_param_count(m) * (dt == AD_F32 ? 4 : 8);
        r->params = malloc(r->params_bytes);
        cr_assert_not_null(r->params);
        memcpy(r->params, nn_model_params(m), r->params_bytes);
    }
done:
    nn_optimizer_free(opt);
    nn_model_free(m);
    io_batcher_free(bat);
    io_dataset_free(ds);
    return r->rc;
}

Test(alloc_failure, every_allocation_of_a_training_run)
{
    for (int d = 0; d < 2; d++) {
        ad_dtype dt = d ? AD_F64 : AD_F32;
        counter probe = {0};
        run_result r;
        cr_assert_eq(training_run(dt, 7, &probe, &r, 0), 0, "%s", r.msg);
        cr_assert_eq(probe.live, 0, "a clean run leaked %ld blocks", probe.live);
        for (int s = 0; s < NSTEPS; s++)
            cr_assert(isfinite(r.loss[s]) && r.loss[s] > 0, "loss %g", r.loss[s]);
        cr_assert(r.eval_acc >= 0 && r.eval_acc <= 1);
        long total = probe.calls;
        cr_assert_gt(total, 20, "only %ld allocations: is the allocator used?", total);
        for (long n = 1; n <= total; n++) {
            counter c = {.fail_at = n};
            int rc = training_run(dt, 7, &c, &r, 0);
            cr_assert_eq(c.failed, 1, "allocation %ld was never reached", n);
            cr_assert_lt(rc, 0, "allocation %ld of %ld failed, yet the run succeeded", n, total);
            cr_assert(rc == -1 && (r.code == AD_ENOMEM || r.code == AD_EGRAPH),
                      "allocation %ld: status %d, code %s: %s", n, rc, ad_errcode_string(r.code),
                      r.msg);
            cr_assert(strstr(r.msg, "out of memory") != NULL, "allocation %ld: message '%s'", n,
                      r.msg);
            cr_assert_eq(c.live, 0, "allocation %ld failing leaked %ld blocks (%s)", n, c.live,
                         r.msg);
        }
    }
}

/* ------------------------------------------------------------ determinism */

Test(determinism, same_seed_same_bits_in_process)
{
    for (int d = 0; d < 2; d++) {
        ad_dtype dt = d ? AD_F64 : AD_F32;
        run_result a, b, other;
        counter ca = {0}, cb = {0}, co = {0};
        cr_assert_eq(training_run(dt, 11, &ca, &a, 1), 0, "%s", a.msg);
        cr_assert_eq(training_run(dt, 11, &cb, &b, 1), 0, "%s", b.msg);
        cr_assert_eq(training_run(dt, 12, &co, &other, 1), 0, "%s", other.msg);
        cr_assert_eq(a.params_bytes, b.params_bytes);
        cr_assert_gt(a.params_bytes, 0);
        cr_expect(memcmp(a.params, b.params, a.params_bytes) == 0,
                  "the same seed gave different weights (%s)", d ? "f64" : "f32");
        cr_expect(memcmp(a.loss, b.loss, sizeof a.loss) == 0, "the same seed gave other losses");
        cr_expect(memcmp(&a.eval_loss, &b.eval_loss, sizeof a.eval_loss) == 0);
        /* and the comparison can fail: another seed gives other weights */
        cr_expect(memcmp(a.params, other.params, a.params_bytes) != 0,
                  "seeds 11 and 12 gave the same weights");
        free(a.params);
        free(b.params);
        free(other.params);
    }
}

/* ---------------------------------------------------------- CLI helpers */

static void make_workdir(void) { make_workdir_tagged("cr_reliability"); }

#define SMALL CHAINRULE_TEST_DIR "/data/mnist_small"
/* mnist_small's test labels (9, 2, 6) go beyond its training labels (3, 1, 4,
 * 1, 5): naming 10 classes makes the network 10-way */
#define NAMES10                                                                                    \
    "--class-names 'T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot'"
#define SMALL_RUN                                                                                  \
    "train --data " SMALL " " NAMES10 " --val 0 --hidden 8 --batch 2 --threads 1 --quiet"

/* Number of tensors of a and b whose bytes differ; fails when a and b do
 * not hold the same tensor names, dtypes and shapes. */
static int differing_tensors(const char *a, const char *b)
{
    io_checkpoint *ca = NULL, *cb = NULL;
    ad_error err;
    cr_assert_eq(((ca = io_checkpoint_read(a, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_eq(((cb = io_checkpoint_read(b, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_eq(io_checkpoint_count(ca), io_checkpoint_count(cb));
    cr_assert_gt(io_checkpoint_count(ca), 0);
    int differ = 0;
    for (int64_t i = 0; i < io_checkpoint_count(ca); i++) {
        const io_array *ta = io_checkpoint_tensor_at(ca, i);
        const io_array *tb = io_checkpoint_find(cb, ta->name);
        cr_assert_not_null(tb, "%s has no tensor %s", b, ta->name);
        cr_assert_eq(ta->dtype, tb->dtype);
        cr_assert_eq(ta->ndim, tb->ndim);
        size_t n = ta->dtype == AD_F32 ? 4 : 8;
        for (int k = 0; k < ta->ndim; k++) {
            cr_assert_eq(ta->shape[k], tb->shape[k]);
            n *= ta->shape[k];
        }
        differ += memcmp(ta->data, tb->data, n) != 0;
    }
    io_checkpoint_free(ca);
    io_checkpoint_free(cb);
    return differ;
}

TestSuite(cli_reliability, .init = make_workdir, .fini = remove_workdir, .timeout = 300);

Test(cli_reliability, same_seed_same_saved_tensors)
{
    const char *names[] = {"a.st", "b.st", "c.st"};
    const char *seeds[] = {"5", "5", "6"};
    for (int dt = 0; dt < 2; dt++) {
        for (int i = 0; i < 3; i++) {
            result r = run_cli(SMALL_RUN " --optimizer adam --epochs 3 --dtype %s --seed %s "
                                         "--save '%s'",
                               dt ? "f64" : "f32", seeds[i], wpath(names[i]));
            cr_assert_eq(r.status, 0, "stderr: %s", r.err);
            result_free(&r);
        }
        cr_expect_eq(differing_tensors(wpath("a.st"), wpath("b.st")), 0,
                     "two runs with seed 5 saved different tensors (%s)", dt ? "f64" : "f32");
        cr_expect_gt(differing_tensors(wpath("a.st"), wpath("c.st")), 0,
                     "seeds 5 and 6 saved the same tensors");
    }
}

/* -------------------------------------------------------- anomaly mode */

/* A 2-2-2 linear model (no activation) with cross-entropy, f64. */
static nn_model *linear2(void)
{
    ad_error m_err;
    nn_model *m = nn_model_new_sequential(AD_F64, 2, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    cr_assert_eq(nn_model_add_dense(m, 2, 0, NN_INIT_GLOROT_UNIFORM), 0);
    cr_assert_eq(nn_model_add_dense(m, 2, 0, NN_INIT_GLOROT_UNIFORM), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY), 0);
    cr_assert_eq(nn_model_build(m, 2, 1), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_param_count(m), 8);
    return m;
}

/* Sets every weight of dense layer 0 to w0, layer 1 to w1 times the identity,
 * every input to x and both labels to 0. */
static void set_linear2(nn_model *m, double w0, double w1, double x)
{
    double p[8] = {w0, w0, w0, w0, w1, 0, 0, w1};
    cr_assert_eq(nn_model_set_params(m, p, 8), 0);
    double in[4] = {x, x, x, x};
    int labels[2] = {0, 0};
    cr_assert_eq(nn_model_set_input(m, in, 2, 2), 0, "%s", nn_model_error(m));
    cr_assert_eq(nn_model_set_labels(m, labels, 2), 0, "%s", nn_model_error(m));
}

Test(anomaly, forward_overflow_names_op_node_and_pass)
{
    nn_model *m = linear2();
    /* h = x W0 = 2e200, then h W1 = 2e200 * 1e200 overflows in the second matmul */
    set_linear2(m, 1e200, 1e200, 1.0);
    /* without anomaly mode the overflow goes by silently */
    cr_assert_eq(nn_model_forward(m), 0, "%s", nn_model_error(m));
    cr_assert(!isfinite(nn_model_loss_value(m)), "loss %g", nn_model_loss_value(m));

    ad_graph_set_check_finite(nn_model_graph(m), 1);
    cr_assert_eq(nn_model_forward(m), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EGRAPH);
    const char *e = nn_model_error(m);
    cr_assert_not_null(e);
    cr_expect(strncmp(e, "nn_model_forward: matmul: non-finite value at element 0 of node ",
                      strlen("nn_model_forward: matmul: non-finite value at element 0 of node ")) ==
                  0,
              "%s", e);
    cr_expect(strstr(e, "'output' (2,2) in the forward pass") != NULL, "%s", e);
    /* the graph keeps the error: nothing runs until it is cleared */
    nn_optimizer *opt =
        nn_optimizer_new(m, &(nn_optim_config){.kind = NN_OPT_SGD, .lr = 0.1}, NULL);
    cr_assert_not_null(opt, "%s", nn_model_error(m));
    double loss = 0;
    cr_expect_eq(nn_model_train_step(m, opt, &loss), -1);
    cr_expect_eq(nn_model_errcode(m), AD_EGRAPH);
    cr_expect(strstr(nn_model_error(m), "the graph has an error") != NULL, "%s", nn_model_error(m));

    /* with sane weights and the error cleared it trains again */
    nn_model_clear_error(m);
    set_linear2(m, 0.5, -0.25, 1.0);
    cr_expect_eq(nn_model_train_step(m, opt, &loss), 0, "%s", nn_model_error(m));
    cr_expect(isfinite(loss));
    nn_optimizer_free(opt);
    nn_model_free(m);
}

Test(anomaly, backward_overflow_names_the_backward_pass_and_skips_the_step)
{
    nn_model *m = linear2();
    /* forward: h = x W0 = 2e150 * 1e-200 = 2e-50, logits h W1 = 2e150 (finite);
     * backward: dh = dz W1^T ~ 1e200, dW0 = x^T dh ~ 1e150 * 1e200 overflows */
    set_linear2(m, 1e-200, 1e200, 1e150);
    ad_graph_set_check_finite(nn_model_graph(m), 1);
    nn_optimizer *opt =
        nn_optimizer_new(m, &(nn_optim_config){.kind = NN_OPT_SGD, .lr = 0.1}, NULL);
    cr_assert_not_null(opt, "%s", nn_model_error(m));
    double before[8], after[8], loss = 0;
    cr_assert_eq(nn_model_get_params(m, before, 8), 0);
    cr_assert_eq(nn_model_train_step(m, opt, &loss), -1);
    cr_assert_eq(nn_model_errcode(m), AD_EGRAPH);
    cr_expect(isfinite(loss), "the forward pass was finite, loss %g", loss);
    const char *e = nn_model_error(m);
    cr_assert_not_null(e);
    cr_expect(strncmp(e, "nn_model_backward: matmul: non-finite value at element ",
                      strlen("nn_model_backward: matmul: non-finite value at element ")) == 0,
              "%s", e);
    cr_expect(strstr(e, " in the backward pass") != NULL, "%s", e);
    cr_expect(strstr(e, " of node ") != NULL, "%s", e);
    /* the optimizer did not step on the broken gradients */
    cr_assert_eq(nn_model_get_params(m, after, 8), 0);
    cr_expect(memcmp(before, after, sizeof before) == 0, "the parameters changed");
    cr_expect_eq(nn_optimizer_steps(opt), 0);
    nn_optimizer_free(opt);
    nn_model_free(m);
}

/* SGD with a huge learning rate on a small MLP: with anomaly mode the run
 * stops at the first non-finite value with a message; without it the loss
 * silently becomes NaN or Inf. Returns the step that failed (or 100). */
static int diverging_run(int check_finite, char *msg, size_t msgsize, double *last_loss)
{
    int64_t widths[] = {NFEAT, 8, 3};
    nn_activation acts[] = {NN_ACT_RELU, NN_ACT_IDENTITY};
    ad_error m_err;
    nn_model *m = nn_mlp_new(AD_F32, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, NROWS, 3, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    ad_graph_set_check_finite(nn_model_graph(m), check_finite);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 1e30;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    cr_assert_not_null(opt);
    cr_assert_eq(nn_model_set_input(m, X, NROWS, NFEAT), 0);
    cr_assert_eq(nn_model_set_labels(m, Y, NROWS), 0);
    int step;
    msg[0] = '\0';
    for (step = 0; step < 100; step++) {
        double loss = 0;
        int rc = nn_model_train_step(m, opt, &loss);
        *last_loss = loss;
        if (rc) {
            cr_assert_eq(rc, -1, "%s", nn_model_error(m));
            snprintf(msg, msgsize, "%s", nn_model_error(m));
            break;
        }
        if (!isfinite(loss))
            break;
    }
    nn_optimizer_free(opt);
    nn_model_free(m);
    return step;
}

Test(anomaly, huge_learning_rate_stops_with_a_message)
{
    char msg[512];
    double loss;
    int plain = diverging_run(0, msg, sizeof msg, &loss);
    cr_assert_lt(plain, 100, "lr 1e30 did not diverge");
    cr_expect(!isfinite(loss), "loss %g", loss);
    cr_expect_str_empty(msg);

    int checked = diverging_run(1, msg, sizeof msg, &loss);
    cr_assert_lt(checked, 100);
    cr_expect_leq(checked, plain, "anomaly mode stopped later than the loss went bad");
    cr_expect(strstr(msg, ": non-finite value at element ") != NULL, "'%s'", msg);
    cr_expect(strstr(msg, " of node ") != NULL, "'%s'", msg);
    cr_expect(strstr(msg, " in the forward pass") != NULL || strstr(msg, " in the backward pass"),
              "'%s'", msg);
    /* the op named after the function prefix is a registered op */
    const char *op = strchr(msg, ' ');
    cr_assert_not_null(op, "'%s'", msg);
    char name[64];
    size_t len = strcspn(op + 1, ":");
    cr_assert_lt(len, sizeof name);
    memcpy(name, op + 1, len);
    name[len] = '\0';
    cr_expect_geq(ad_op_find(name), 0, "'%s' in '%s' is not an op", name, msg);
}

Test(cli_reliability, nan_loss_stops_with_status_1_and_keeps_the_checkpoint)
{
    /* a good checkpoint first */
    result r = run_cli(SMALL_RUN " --epochs 1 --save '%s'", wpath("keep.st"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    result_free(&r);
    size_t n0 = 0, n1 = 0;
    char *before = slurp(wpath("keep.st"), &n0);
    cr_assert_not_null(before);

    /* lr 1e30: the first step sends the weights to infinity, the loss of the
     * second batch is NaN */
    r = run_cli(SMALL_RUN " --epochs 3 --lr 1e30 --save '%s'", wpath("keep.st"));
    cr_expect_eq(r.status, 1, "status %d, stderr: %s", r.status, r.err);
    cr_expect_str_eq(r.err, "chainrule train: training diverged in epoch 1, batch 2 (loss nan): "
                            "try a smaller --lr\n");
    cr_expect_str_empty(r.out);
    result_free(&r);

    /* the diverged run did not overwrite the checkpoint */
    char *after = slurp(wpath("keep.st"), &n1);
    cr_assert_not_null(after);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "the checkpoint changed");
    free(before);
    free(after);
    r = run_cli("eval '%s' --data " SMALL " --quiet", wpath("keep.st"));
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strncmp(r.out, "test accuracy: ", 15) == 0, "%s", r.out);
    result_free(&r);
}

/* ------------------------------------------- grad parser: deep nesting */

/* Regression (found with fuzz_expr): `chainrule grad` recursed once per
 * nesting level and overflowed the stack (SIGSEGV) on 60,000 parentheses or
 * minus signs. Nesting is now limited to 256 levels, with a parse error. */
static void expect_too_deep(const char *prefix, char open, const char *middle, char close,
                            int levels)
{
    size_t len = strlen(prefix) + strlen(middle) + 2 * (size_t)levels + 1;
    char *expr = malloc(len);
    cr_assert_not_null(expr);
    size_t k = 0;
    memcpy(expr, prefix, strlen(prefix));
    k += strlen(prefix);
    memset(expr + k, open, (size_t)levels);
    k += (size_t)levels;
    memcpy(expr + k, middle, strlen(middle));
    k += strlen(middle);
    if (close) {
        memset(expr + k, close, (size_t)levels);
        k += (size_t)levels;
    }
    expr[k] = '\0';
    FILE *f = fopen(wpath("expr.txt"), "w");
    cr_assert_not_null(f);
    cr_assert(fputs(expr, f) >= 0);
    fclose(f);
    free(expr);
    result r = run_cli("grad \"$(cat '%s')\" x=1", wpath("expr.txt"));
    cr_expect_eq(r.status, 2, "%d levels of '%c': status %d (a crash is -1)", levels, open,
                 r.status);
    cr_expect(strstr(r.err, "the expression nests too deeply (more than 256 levels)") != NULL,
              "%d levels of '%c': %.300s", levels, open, r.err);
    result_free(&r);
}

Test(cli_reliability, grad_refuses_deep_nesting_instead_of_crashing)
{
    expect_too_deep("", '(', "x", ')', 50000);
    expect_too_deep("1+", '-', "x", 0, 100000);
    expect_too_deep("", '(', "x", ')', 257);
    /* 255 levels of parentheses (256 with the whole expression) still parse */
    result r = run_cli("grad \"$(printf '%%.0s(' $(seq 255))x$(printf '%%.0s)' $(seq 255))\" "
                       "x=3 --json");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "{\"value\": 3, \"grad\": {\"x\": 1}}\n");
    result_free(&r);
}
