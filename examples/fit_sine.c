/* The complete program of docs/nn.md: fit y = sin(x) on [-pi, pi] with a
 * 1-32-32-1 tanh MLP, Adam and a cosine schedule, mini-batches of 16 with a
 * smaller last batch. Kept identical to the page so the page compiles. */
#include <math.h>
#include <stdio.h>

#include <chainrule/nn.h>

enum { N = 200, BATCH = 16, EPOCHS = 300 };

int main(void)
{
    const double pi = 3.14159265358979323846;
    static double x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = -pi + 2 * pi * i / (N - 1);
        y[i] = sin(x[i]);
    }
    int64_t widths[] = {1, 32, 32, 1};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_TANH, NN_ACT_IDENTITY};
    ad_error err;
    nn_model *m = nn_mlp_new(AD_F64, 4, widths, acts, NN_LOSS_MSE, BATCH, 1, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, &err);
    nn_schedule sched = nn_schedule_cosine(0.01, EPOCHS, 1e-4);
    nn_rng rng;
    nn_rng_seed(&rng, 3);
    int64_t order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        nn_optimizer_set_lr(opt, nn_schedule_lr(&sched, epoch));
        nn_rng_shuffle(&rng, order, N);
        double sum = 0;
        for (int start = 0; start < N; start += BATCH) {
            int n = N - start < BATCH ? N - start : BATCH; /* 200 = 12 * 16 + 8 */
            double bx[BATCH], by[BATCH], loss;
            for (int r = 0; r < n; r++) {
                bx[r] = x[order[start + r]];
                by[r] = y[order[start + r]];
            }
            if (nn_model_set_input(m, bx, n, 1) || nn_model_set_targets(m, by, n, 1) ||
                nn_model_train_step(m, opt, &loss)) {
                fprintf(stderr, "%s\n", nn_model_error(m));
                return 1;
            }
            sum += loss * n;
        }
        if ((epoch + 1) % 100 == 0)
            printf("epoch %d: mse %.2e\n", epoch + 1, sum / N);
    }
    double probe[3] = {-2.0, 0.5, 3.0}, out[3];
    nn_model_predict(m, probe, 3, 1, out);
    for (int i = 0; i < 3; i++)
        printf("sin(%+.1f) = %+.4f, model %+.4f\n", probe[i], sin(probe[i]), out[i]);
    nn_optimizer_free(opt);
    nn_model_free(m);
    return 0;
}
