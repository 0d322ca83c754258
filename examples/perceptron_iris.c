/* Rosenblatt's perceptron on Fisher's iris: setosa against versicolor.
 *
 *   build/examples/perceptron_iris [path/to/iris.csv]
 *
 * The perceptron is trained by the autodiff engine: a threshold logic unit
 * h = step(w.x + b) whose step is straight-through (its gradient taken as
 * 1), the squared error 1/2 (h - y)^2 and plain SGD, one flower at a time.
 * Backpropagation then computes d loss/d w = (h - y) x and SGD applies
 * w <- w - eta (h - y) x, which is the perceptron learning rule
 * w <- w + eta (y - h) x (lecture eq. 5). A hand-written loop of the rule
 * runs alongside; the two sets of weights agree bit for bit after every
 * sample. Exits 0 when they agree and the training set is separated. */
#include <stdio.h>
#include <string.h>

#include <chainrule/nn.h>

#ifndef CHAINRULE_SOURCE_DIR
#define CHAINRULE_SOURCE_DIR "."
#endif

enum { N = 100, D = 4 };

static const char *const FEATURES[D] = {"sepal length", "sepal width", "petal length",
                                        "petal width"};

/* The first 100 rows of sklearn's iris.csv: setosa (0) then versicolor (1). */
static int load_iris(const char *path, double x[N][D], double y[N])
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s (pass the path of iris.csv)\n", path);
        return -1;
    }
    char line[256];
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return -1;
    }
    for (int i = 0; i < N; i++) {
        int cls;
        if (fscanf(f, "%lf,%lf,%lf,%lf,%d", &x[i][0], &x[i][1], &x[i][2], &x[i][3], &cls) != 5 ||
            (cls != 0 && cls != 1)) {
            fprintf(stderr, "%s: row %d is not a setosa or versicolor row\n", path, i + 2);
            fclose(f);
            return -1;
        }
        y[i] = cls == 0 ? 1.0 : 0.0; /* 1: "is setosa" */
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : CHAINRULE_SOURCE_DIR "/tests/data/iris.csv";
    static double x[N][D], y[N];
    if (load_iris(path, x, y))
        return 1;

    ad_error error;
    nn_model *m = nn_model_new_sequential(AD_F64, D, &error);
    if (!m || nn_model_add_perceptron(m, 1, NN_ACT_STEP_ST) ||
        nn_model_set_loss(m, NN_LOSS_HALF_SSE) || nn_model_build(m, 1, 0)) {
        fprintf(stderr, "error: %s\n", m ? nn_model_error(m) : error.message);
        return 1;
    }
    const double eta = 0.1;
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = eta;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, &error);
    if (!opt) {
        fprintf(stderr, "error: %s\n", error.message);
        return 1;
    }
    const double *p = nn_model_params(m); /* w1..w4, b: the flat parameter buffer */

    /* a fixed shuffle, so both classes appear early */
    int64_t order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    nn_rng rng;
    nn_rng_seed(&rng, 2024);
    nn_rng_shuffle(&rng, order, N);

    printf("perceptron on iris (%s): setosa (y = 1) vs versicolor (y = 0), %d flowers\n", path, N);
    printf("h = step(w.x + b), straight-through step, loss 1/2 (h - y)^2, SGD eta = %g\n\n", eta);
    double w[D] = {0}, b = 0; /* the classical rule, by hand */
    long samples = 0, identical = 0;
    int epoch, errors = 1;
    for (epoch = 1; epoch <= 20 && errors > 0; epoch++) {
        errors = 0;
        for (int k = 0; k < N; k++) {
            int i = (int)order[k];
            double z = b;
            for (int d = 0; d < D; d++)
                z += w[d] * x[i][d];
            double h = z >= 0 ? 1.0 : 0.0, err = y[i] - h;
            errors += err != 0;
            for (int d = 0; d < D; d++)
                w[d] += eta * (err * x[i][d]);
            b += eta * err;

            if (nn_model_set_input(m, x[i], 1, D) || nn_model_set_targets(m, &y[i], 1, 1) ||
                nn_model_train_step(m, opt, NULL)) {
                fprintf(stderr, "error: %s\n", nn_model_error(m));
                return 1;
            }
            samples++;
            identical += memcmp(p, w, sizeof w) == 0 && memcmp(p + D, &b, sizeof b) == 0;
        }
        printf("epoch %d: %2d mistakes   w = (%+.2f, %+.2f, %+.2f, %+.2f)  b = %+.2f\n", epoch,
               errors, p[0], p[1], p[2], p[3], p[4]);
    }
    int labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = (int)y[i];
    double acc = 0;
    if (nn_model_evaluate(m, &x[0][0], labels, N, D, NULL, &acc)) {
        fprintf(stderr, "error: %s\n", nn_model_error(m));
        return 1;
    }
    printf("\nconverged: a full epoch without a mistake; training accuracy %.0f%%\n", 100 * acc);
    printf("decision rule: setosa when");
    for (int d = 0; d < D; d++)
        printf(" %+.2f %s", p[d], FEATURES[d]);
    printf(" %+.2f >= 0\n", p[4]);
    printf("engine vs hand-written rule: identical bit for bit after %ld of %ld updates\n",
           identical, samples);
    nn_optimizer_free(opt);
    nn_model_free(m);
    return errors == 0 && acc == 1.0 && identical == samples ? 0 : 1;
}
