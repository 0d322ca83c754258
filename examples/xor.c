/* XOR, the function that ended the first neural-network era: a single
 * perceptron (one threshold logic unit) cannot represent it, a multi-layer
 * perceptron with one hidden layer of two units can.
 *
 *   build/examples/xor
 *
 * Exits 0 when the perceptron fails and the 2-2-1 MLP succeeds, as the
 * lecture says they must. */
#include <math.h>
#include <stdio.h>

#include <chainrule/nn.h>

static const double X[8] = {0, 0, 0, 1, 1, 0, 1, 1};
static const int Y[4] = {0, 1, 1, 0};

/* Prints the model's error, or err's when there is no model. */
static int fail(nn_model *m, const ad_error *err)
{
    fprintf(stderr, "error: %s\n", m ? nn_model_error(m) : err->message);
    return -1;
}

/* A TLU h = step(w.x + b) trained by the engine: straight-through step,
 * squared error, SGD one sample at a time (the perceptron rule). Returns the
 * best accuracy seen, or -1 on error. */
static double train_perceptron(void)
{
    ad_error err;
    nn_model *m = nn_model_new_sequential(AD_F64, 2, &err);
    if (!m || nn_model_add_perceptron(m, 1, NN_ACT_STEP_ST) ||
        nn_model_set_loss(m, NN_LOSS_HALF_SSE) || nn_model_build(m, 1, 0))
        return fail(m, &err);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 0.1;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, &err);
    if (!opt)
        return fail(NULL, &err);
    double best = 0;
    for (int epoch = 0; epoch < 100; epoch++) {
        for (int i = 0; i < 4; i++) {
            double t = Y[i];
            if (nn_model_set_input(m, X + 2 * i, 1, 2) || nn_model_set_targets(m, &t, 1, 1) ||
                nn_model_train_step(m, opt, NULL))
                return fail(m, NULL);
        }
        double acc;
        if (nn_model_evaluate(m, X, Y, 4, 2, NULL, &acc))
            return fail(m, NULL);
        best = fmax(best, acc);
    }
    int64_t cls[4];
    nn_model_predict_classes(m, X, 4, 2, cls);
    const double *p = nn_model_params(m);
    printf("perceptron after 100 epochs: w = (%g, %g), b = %g\n", p[0], p[1], p[2]);
    for (int i = 0; i < 4; i++)
        printf("  XOR(%g, %g) = %d   perceptron says %lld%s\n", X[2 * i], X[2 * i + 1], Y[i],
               (long long)cls[i], cls[i] == Y[i] ? "" : "   <- wrong");
    printf("  best accuracy over all epochs: %.0f%% (a straight line separates at most 3 of "
           "the 4 points)\n\n",
           100 * best);
    nn_optimizer_free(opt);
    nn_model_free(m);
    return best;
}

/* A 2-2-1 MLP (tanh hidden layer, logistic output through BCE on logits),
 * full-batch Adam. Returns 1 when it learned XOR, 0 when it did not, -1 on
 * error; *loss_out gets the final loss. */
static int train_mlp(uint64_t seed, double *loss_out, int verbose)
{
    int64_t widths[] = {2, 2, 1};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    ad_error err;
    nn_model *m = nn_mlp_new(AD_F64, 3, widths, acts, NN_LOSS_BCE_LOGITS, 4, seed, &err);
    if (!m)
        return fail(NULL, &err);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.lr = 0.05;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, &err);
    if (!opt)
        return fail(NULL, &err);
    double loss = 0;
    for (int step = 0; step < 1000; step++) {
        if (nn_model_set_input(m, X, 4, 2) || nn_model_set_labels(m, Y, 4) ||
            nn_model_train_step(m, opt, &loss))
            return fail(m, NULL);
        if (verbose && (step == 0 || (step + 1) % 250 == 0))
            printf("  step %4d  loss %.6f\n", step + 1, loss);
    }
    double z[4];
    int64_t cls[4];
    if (nn_model_predict(m, X, 4, 2, z) || nn_model_predict_classes(m, X, 4, 2, cls))
        return fail(m, NULL);
    int ok = 1;
    for (int i = 0; i < 4; i++)
        ok &= cls[i] == Y[i];
    if (verbose) {
        for (int i = 0; i < 4; i++)
            printf("  XOR(%g, %g) = %d   MLP says %lld (p = sigmoid(z) = %.4f)\n", X[2 * i],
                   X[2 * i + 1], Y[i], (long long)cls[i], 1 / (1 + exp(-z[i])));
        const double *p = nn_model_params(m);
        printf("  hidden: h1 = tanh(%+.3f x1 %+.3f x2 %+.3f), h2 = tanh(%+.3f x1 %+.3f x2 %+.3f)\n",
               p[0], p[2], p[4], p[1], p[3], p[5]);
        printf("  output: z = %+.3f h1 %+.3f h2 %+.3f\n", p[6], p[7], p[8]);
    }
    *loss_out = loss;
    nn_optimizer_free(opt);
    nn_model_free(m);
    return ok;
}

int main(void)
{
    printf("== one threshold logic unit, h = step(w1 x1 + w2 x2 + b) ==\n");
    double best = train_perceptron();
    if (best < 0)
        return 1;

    printf("== multi-layer perceptron 2-2-1: y = sigmoid(W2 tanh(W1 x + b1) + b2) ==\n");
    /* two hidden units are just enough; some initializations end in a local
     * minimum (one point wrong, loss ln(2)/2 = 0.3466), so try a few seeds */
    uint64_t seed = 1;
    double loss = 0;
    int learned = 0;
    for (; seed <= 10; seed++) {
        learned = train_mlp(seed, &loss, 0);
        if (learned < 0)
            return 1;
        if (learned)
            break;
        printf("seed %llu: stuck in a local minimum (loss %.4f)\n", (unsigned long long)seed, loss);
    }
    if (!learned) {
        printf("no seed in 1..10 learned XOR\n");
        return 1;
    }
    printf("seed %llu:\n", (unsigned long long)seed);
    train_mlp(seed, &loss, 1);
    printf("\nperceptron: best %.0f%% correct; MLP: 100%% correct, loss %.4f\n", 100 * best, loss);
    return best < 1 ? 0 : 1;
}
