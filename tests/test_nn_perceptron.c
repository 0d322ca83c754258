/* The lecture's perceptron, from the engine: training a TLU with the
 * straight-through step and squared error (or the perceptron criterion),
 * one sample at a time with SGD, gives bit for bit the weights of the
 * classical rule w <- w + eta (y - yhat) x (lecture eq. 5), on iris setosa
 * against versicolor. And XOR: one perceptron cannot, a 2-2-1 MLP can. */
#include "test_nn_common.h"

enum { IRIS_N = 100, IRIS_D = 4 };

/* The first 100 rows of sklearn's iris.csv: 50 setosa (class 0), 50
 * versicolor (class 1). y = 1 for setosa, 0 for versicolor. */
static void load_iris(double x[IRIS_N][IRIS_D], double y[IRIS_N])
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data/iris.csv", CHAINRULE_TEST_DIR);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[256];
    cr_assert_not_null(fgets(line, sizeof line, f)); /* "150,4,setosa,versicolor,virginica" */
    for (int i = 0; i < IRIS_N; i++) {
        int cls;
        cr_assert_eq(fscanf(f, "%lf,%lf,%lf,%lf,%d", &x[i][0], &x[i][1], &x[i][2], &x[i][3], &cls),
                     5, "iris row %d", i);
        cr_assert(cls == 0 || cls == 1);
        y[i] = cls == 0 ? 1.0 : 0.0;
    }
    fclose(f);
}

/* A one-unit perceptron model trained by the engine. */
static nn_model *perceptron_model(nn_loss loss)
{
    nn_model *m = nn_model_new_sequential(AD_F64, IRIS_D, NULL);
    if (loss == NN_LOSS_HALF_SSE)
        cr_assert_eq(nn_model_add_perceptron(m, 1, NN_ACT_STEP_ST), 0);
    else /* the perceptron criterion takes the raw score z */
        cr_assert_eq(nn_model_add_dense(m, 1, 1, NN_INIT_ZEROS), 0);
    cr_assert_eq(nn_model_set_loss(m, loss), 0);
    cr_assert_eq(nn_model_build(m, 1, 0), 0, "%s", nn_model_error(m));
    return m;
}

static void rule_equivalence(nn_loss loss)
{
    static double x[IRIS_N][IRIS_D], y[IRIS_N];
    load_iris(x, y);
    int64_t order[IRIS_N];
    for (int i = 0; i < IRIS_N; i++)
        order[i] = i;
    nn_rng r;
    nn_rng_seed(&r, 2024);
    nn_rng_shuffle(&r, order, IRIS_N);

    const double eta = 0.1;
    nn_model *m = perceptron_model(loss);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = eta;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    cr_assert_eq(nn_model_param_count(m), 5);
    const double *p = nn_model_params(m); /* w0..w3, b */

    double w[IRIS_D] = {0, 0, 0, 0}, b = 0; /* the classical loop */
    int epochs_to_zero = -1;
    for (int epoch = 0; epoch < 20 && epochs_to_zero < 0; epoch++) {
        int errors = 0;
        for (int k = 0; k < IRIS_N; k++) {
            int i = (int)order[k];
            /* classical rule: yhat = step(w.x + b); w += eta (y - yhat) x */
            double z = b;
            for (int d = 0; d < IRIS_D; d++)
                z += w[d] * x[i][d];
            double yhat = z >= 0 ? 1.0 : 0.0, err = y[i] - yhat;
            errors += err != 0;
            for (int d = 0; d < IRIS_D; d++)
                w[d] += eta * (err * x[i][d]);
            b += eta * err;
            /* the engine: forward, backward, SGD step */
            cr_assert_eq(nn_model_set_input(m, x[i], 1, IRIS_D), 0);
            cr_assert_eq(nn_model_set_targets(m, &y[i], 1, 1), 0);
            cr_assert_eq(nn_model_train_step(m, opt, NULL), 0, "%s", nn_model_error(m));
            for (int d = 0; d < IRIS_D; d++)
                cr_assert(memcmp(&p[d], &w[d], sizeof(double)) == 0,
                          "%s: epoch %d sample %d: w%d = %.17g by the engine, %.17g by the rule",
                          nn_loss_name(loss), epoch, i, d, p[d], w[d]);
            cr_assert(memcmp(&p[4], &b, sizeof(double)) == 0, "bias %.17g vs %.17g", p[4], b);
        }
        if (errors == 0)
            epochs_to_zero = epoch;
    }
    /* linearly separable: the rule converges within a few epochs */
    cr_assert(epochs_to_zero >= 0 && epochs_to_zero <= 5, "%s: zero errors at epoch %d",
              nn_loss_name(loss), epochs_to_zero);
    /* and the trained model classifies all 100 flowers correctly */
    int labels[IRIS_N];
    for (int i = 0; i < IRIS_N; i++)
        labels[i] = (int)y[i];
    double acc = 0;
    cr_assert_eq(nn_model_evaluate(m, &x[0][0], labels, IRIS_N, IRIS_D, NULL, &acc), 0, "%s",
                 nn_model_error(m));
    cr_assert_eq(acc, 1.0);
    nn_optimizer_free(opt);
    nn_model_free(m);
}

Test(perceptron, rule_from_straight_through_step_and_squared_error)
{
    rule_equivalence(NN_LOSS_HALF_SSE);
}

Test(perceptron, rule_from_the_perceptron_criterion) { rule_equivalence(NN_LOSS_PERCEPTRON); }

Test(perceptron, iris_in_f32_also_separates)
{
    static double x[IRIS_N][IRIS_D], y[IRIS_N];
    load_iris(x, y);
    nn_model *m = nn_model_new_sequential(AD_F32, IRIS_D, NULL);
    cr_assert_eq(nn_model_add_perceptron(m, 1, NN_ACT_STEP_ST), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_HALF_SSE), 0);
    cr_assert_eq(nn_model_build(m, 1, 0), 0);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 0.1;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    int labels[IRIS_N];
    for (int i = 0; i < IRIS_N; i++)
        labels[i] = (int)y[i];
    double acc = 0;
    for (int epoch = 0; epoch < 10 && acc < 1; epoch++) {
        for (int i = 0; i < IRIS_N; i++) {
            int k = (i * 37) % IRIS_N; /* a fixed interleaving of the two classes */
            nn_model_set_input(m, x[k], 1, IRIS_D);
            nn_model_set_targets(m, &y[k], 1, 1);
            cr_assert_eq(nn_model_train_step(m, opt, NULL), 0);
        }
        cr_assert_eq(nn_model_evaluate(m, &x[0][0], labels, IRIS_N, IRIS_D, NULL, &acc), 0);
    }
    cr_assert_eq(acc, 1.0);
    nn_optimizer_free(opt);
    nn_model_free(m);
}

/* ------------------------------------------------------------------- XOR */

static const double XOR_X[8] = {0, 0, 0, 1, 1, 0, 1, 1};
static const int XOR_Y[4] = {0, 1, 1, 0};

Test(xor, a_single_perceptron_cannot_fit_it)
{
    nn_model *m = nn_model_new_sequential(AD_F64, 2, NULL);
    cr_assert_eq(nn_model_add_perceptron(m, 1, NN_ACT_STEP_ST), 0);
    cr_assert_eq(nn_model_set_loss(m, NN_LOSS_HALF_SSE), 0);
    cr_assert_eq(nn_model_build(m, 1, 0), 0);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 0.1;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    double best = 0;
    for (int epoch = 0; epoch < 200; epoch++) {
        for (int i = 0; i < 4; i++) {
            double t = XOR_Y[i];
            nn_model_set_input(m, XOR_X + 2 * i, 1, 2);
            nn_model_set_targets(m, &t, 1, 1);
            cr_assert_eq(nn_model_train_step(m, opt, NULL), 0);
        }
        double acc;
        cr_assert_eq(nn_model_evaluate(m, XOR_X, XOR_Y, 4, 2, NULL, &acc), 0);
        best = fmax(best, acc);
    }
    /* XOR is not linearly separable: a line gets at most 3 of the 4 points */
    cr_assert_leq(best, 0.75, "a perceptron classified XOR with accuracy %g", best);
    nn_optimizer_free(opt);
    nn_model_free(m);
}

Test(xor, a_2_2_1_mlp_fits_it)
{
    int64_t widths[] = {2, 2, 1};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    /* seed 2: about half of the seeds end in the well-known local minimum of
     * the 2-2-1 network (one point wrong, loss ln(2)/2); seed 1 does */
    ad_error m_err;
    nn_model *m = nn_mlp_new(AD_F64, 3, widths, acts, NN_LOSS_BCE_LOGITS, 4, 2, &m_err);
    cr_assert_not_null(m, "%s", m_err.message);
    cr_assert_eq(nn_model_param_count(m), 9);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.lr = 0.05;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    double loss = 0;
    for (int step = 0; step < 1000; step++) {
        cr_assert_eq(nn_model_set_input(m, XOR_X, 4, 2), 0);
        cr_assert_eq(nn_model_set_labels(m, XOR_Y, 4), 0);
        cr_assert_eq(nn_model_train_step(m, opt, &loss), 0, "%s", nn_model_error(m));
    }
    cr_assert_lt(loss, 0.05, "final loss %g", loss);
    int64_t cls[4];
    cr_assert_eq(nn_model_predict_classes(m, XOR_X, 4, 2, cls), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(cls[i], XOR_Y[i], "XOR(%g, %g) predicted %lld", XOR_X[2 * i], XOR_X[2 * i + 1],
                     (long long)cls[i]);
    nn_optimizer_free(opt);
    nn_model_free(m);
}
