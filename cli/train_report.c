/*
 * train_report.c -- the end-of-run report (per-class accuracy, confusion
 * matrix, `test accuracy: 0.XXXX`), and the `eval` and `predict` commands
 * that run a saved model.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "train.h"

int cr_report_test(FILE *out, nn_model *m, const nn_run *run, const io_dataset *ds, int quiet,
                   double *accuracy, char *err, size_t errlen)
{
    if (ds->n == 0) {
        snprintf(err, errlen, "the test set has no images; nothing to report accuracy on");
        return -1;
    }
    int k = (int)nn_model_out_features(m);
    int64_t *pred = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *pred);
    size_t *confusion = calloc((size_t)k * (size_t)k, sizeof *confusion);
    if (!pred || !confusion) {
        free(pred);
        free(confusion);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (ds->n > 0 && nn_model_predict_classes_f32(m, ds->x, ds->n, ds->d, pred) != 0) {
        snprintf(err, errlen, "%s", nn_model_error(m));
        free(pred);
        free(confusion);
        return -1;
    }
    int64_t correct = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        int t = ds->y[i];
        int p = (int)pred[i];
        if (t >= 0 && t < k && p >= 0 && p < k)
            confusion[(size_t)t * (size_t)k + (size_t)p]++;
        correct += p == t;
    }
    double acc = ds->n ? (double)correct / (double)ds->n : 0.0;
    if (!quiet) {
        int namew = 4;
        for (int c = 0; c < k && c < run->nclasses; c++) {
            int len = (int)strlen(run->class_names[c]);
            namew = len > namew ? len : namew;
        }
        fprintf(out, "\nper-class accuracy on %lld test images:\n", (long long)ds->n);
        fprintf(out, "  %-5s  %-*s  %7s  %7s  %8s\n", "class", namew, "name", "correct", "total",
                "accuracy");
        for (int c = 0; c < k; c++) {
            size_t total = 0;
            for (int p = 0; p < k; p++)
                total += confusion[(size_t)c * (size_t)k + (size_t)p];
            size_t ok = confusion[(size_t)c * (size_t)k + (size_t)c];
            fprintf(out, "  %-5d  %-*s  %7zu  %7zu  ", c, namew,
                    c < run->nclasses ? run->class_names[c] : "", ok, total);
            if (total)
                fprintf(out, "%8.4f\n", (double)ok / (double)total);
            else
                fprintf(out, "%8s\n", "-");
        }
        fprintf(out, "\nconfusion matrix (rows: true class, columns: predicted class):\n");
        fprintf(out, "  %5s", "");
        for (int p = 0; p < k; p++)
            fprintf(out, " %5d", p);
        fprintf(out, "\n");
        for (int c = 0; c < k; c++) {
            fprintf(out, "  %5d", c);
            for (int p = 0; p < k; p++)
                fprintf(out, " %5zu", confusion[(size_t)c * (size_t)k + (size_t)p]);
            fprintf(out, "  %s\n", c < run->nclasses ? run->class_names[c] : "");
        }
    }
    fprintf(out, "test accuracy: %.4f\n", acc);
    fflush(out);
    if (accuracy)
        *accuracy = acc;
    free(pred);
    free(confusion);
    return 0;
}

/* ------------------------------------------------------- eval and predict */

/* The model and run of a checkpoint written by `chainrule train --save`
 * (the library's training checkpoint); NULL with a message in err. */
static nn_model *load_model(const char *path, bool allow_nonfinite, nn_run *run, char *err,
                            size_t errlen)
{
    ad_error e;
    nn_model *m = nn_checkpoint_load(path, 0, allow_nonfinite ? NN_CHECKPOINT_ALLOW_NONFINITE : 0,
                                     NULL, run, &e);
    if (!m)
        snprintf(err, errlen, "%s%s", e.message,
                 e.code == AD_ESTATE ? "; --allow-nonfinite loads it anyway" : "");
    return m;
}

/* Whether the examples of ds fit m's input: as many values per row, and
 * for a model that reads images (N, C, H, W), images of H x W. */
static bool fits(const nn_model *m, const io_dataset *ds)
{
    const ad_node *x = nn_model_input(m);
    if (ds->d != nn_model_in_features(m))
        return false;
    return ad_ndim(x) != 4 || ds->height == 0 ||
           (ad_shape(x)[2] == ds->height && ad_shape(x)[3] == ds->width);
}

typedef struct {
    const char *positional[2];
    int npositional;
    const char *data_dir;
    int threads;
    bool quiet;
    bool allow_nonfinite;
} run_options;

enum { RUN_DATA, RUN_THREADS, RUN_QUIET, RUN_ALLOW_NONFINITE, RUN_HELP, RUN_COUNT };

/* Options of eval and predict; returns -1 to go on, else an exit status. */
static int parse_run_options(const char *cmd, int argc, char **argv, int want_positional,
                             bool allow_data, void (*help)(FILE *), run_options *o)
{
    /* predict takes no --data and no --quiet */
    const cr_opt all[] = {
        {"threads", RUN_THREADS, true}, {"allow-nonfinite", RUN_ALLOW_NONFINITE, false},
        {"help", RUN_HELP, false},      {"data", RUN_DATA, true},
        {"quiet", RUN_QUIET, false},    {NULL, 0, false},
    };
    cr_opt opts[6];
    int k = 0;
    for (const cr_opt *d = all; d->name; d++)
        if (allow_data || (d->id != RUN_DATA && d->id != RUN_QUIET))
            opts[k++] = *d;
    opts[k] = (cr_opt){NULL, 0, false};
    bool given[RUN_COUNT] = {false};
    const char *value[RUN_COUNT] = {NULL};
    memset(o, 0, sizeof *o);
    o->data_dir = IO_FASHION_MNIST_DIR;
    int status = cr_parse_options(cmd, argc, argv, opts, given, value, o->positional,
                                  want_positional, &o->npositional);
    if (status >= 0)
        return status;
    if (given[RUN_HELP]) {
        help(stdout);
        return 0;
    }
    if (given[RUN_DATA] && !value[RUN_DATA][0])
        return cr_usage_error(cmd, "option --data needs a value");
    if (given[RUN_DATA])
        o->data_dir = value[RUN_DATA];
    if (given[RUN_THREADS]) {
        const char *v = value[RUN_THREADS];
        char *end;
        errno = 0;
        long t = strtol(v, &end, 10);
        if (!*v)
            return cr_usage_error(cmd, "option --threads needs a value");
        if (*end != '\0' || errno == ERANGE || t < 1 || t > 1024)
            return cr_usage_error(
                cmd, "bad value '%s' for --threads: must be an integer in [1, 1024]", v);
        o->threads = (int)t;
    }
    o->quiet = given[RUN_QUIET];
    o->allow_nonfinite = given[RUN_ALLOW_NONFINITE];
    if (o->npositional < want_positional)
        return cr_usage_error(cmd, want_positional == 1 ? "needs a MODEL file"
                                                        : "needs a MODEL file and an IDX FILE");
    return -1;
}

static void eval_help(FILE *out)
{
    /* clang-format off */
    fprintf(out,
"usage: chainrule eval MODEL [--data DIR] [--threads N] [--quiet] [--allow-nonfinite]\n"
"\n"
"Classifies the test images of DIR (t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte,\n"
"possibly .gz; default " IO_FASHION_MNIST_DIR ") with the model saved by\n"
"'chainrule train --save MODEL', and prints the per-class accuracy, the confusion\n"
"matrix and, last, 'test accuracy: 0.XXXX' (--quiet: only that line).\n"
"Exit status: 0 success, 1 runtime error, 2 usage error.\n");
    /* clang-format on */
}

static void predict_help(FILE *out)
{
    /* clang-format off */
    fprintf(out,
"usage: chainrule predict MODEL FILE [--threads N] [--allow-nonfinite]\n"
"\n"
"Classifies every image of the IDX file FILE (plain or .gz, e.g.\n"
IO_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz) with the model\n"
"saved by 'chainrule train --save MODEL'. Prints one line per image: its index from 0,\n"
"the class number and the class name, separated by spaces.\n"
"Exit status: 0 success, 1 runtime error, 2 usage error.\n");
    /* clang-format on */
}

int cr_cmd_eval(int argc, char **argv)
{
    run_options o;
    int status = parse_run_options("eval", argc, argv, 1, true, eval_help, &o);
    if (status >= 0)
        return status;
    cr_set_threads(o.threads);
    char err[CR_ERR_MAX];
    nn_run run;
    nn_model *m = NULL;
    io_dataset *test = NULL;
    ad_error derr;
    status = 1;
    if (!(m = load_model(o.positional[0], o.allow_nonfinite, &run, err, sizeof err))) {
        fprintf(stderr, "chainrule eval: %s\n", err);
        return 1;
    }
    if (io_mnist_load(o.data_dir, NULL, &test, &derr) != 0) {
        snprintf(err, sizeof err, "%s", derr.message);
        goto fail;
    }
    if (test->n == 0) {
        snprintf(err, sizeof err, "%s: the test set has no images; nothing to report accuracy on",
                 o.data_dir);
        goto fail;
    }
    char w[CR_SPEC_MAX];
    cr_model_text(m, w, sizeof w);
    if (!fits(m, test) || test->classes > nn_model_out_features(m)) {
        snprintf(err, sizeof err,
                 "%s: test images of %lld pixels in %d classes do not fit the "
                 "model %.300s of %s",
                 o.data_dir, (long long)test->d, test->classes, w, o.positional[0]);
        goto fail;
    }
    io_dataset_scale(test, (float)run.input_scale);
    if (!o.quiet)
        printf("model: %s: %s, %lld epochs\n", o.positional[0], w, (long long)run.epochs_done);
    if (cr_report_test(stdout, m, &run, test, o.quiet, NULL, err, sizeof err) != 0)
        goto fail;
    status = 0;
    goto done;
fail:
    fprintf(stderr, "chainrule eval: %s\n", err);
done:
    io_dataset_free(test);
    nn_model_free(m);
    nn_run_finish(&run);
    return status;
}

int cr_cmd_predict(int argc, char **argv)
{
    run_options o;
    int status = parse_run_options("predict", argc, argv, 2, false, predict_help, &o);
    if (status >= 0)
        return status;
    cr_set_threads(o.threads);
    char err[CR_ERR_MAX];
    nn_run run;
    nn_model *m = NULL;
    io_dataset *ds = NULL;
    int64_t *pred = NULL;
    ad_error derr;
    status = 1;
    if (!(m = load_model(o.positional[0], o.allow_nonfinite, &run, err, sizeof err))) {
        fprintf(stderr, "chainrule predict: %s\n", err);
        return 1;
    }
    if (!(ds = io_idx_load_dataset(o.positional[1], NULL, &derr))) {
        snprintf(err, sizeof err, "%s", derr.message);
        goto fail;
    }
    if (!fits(m, ds)) {
        snprintf(err, sizeof err, "%s: examples of %lld values, but the model %s expects %lld",
                 o.positional[1], (long long)ds->d, o.positional[0],
                 (long long)nn_model_in_features(m));
        goto fail;
    }
    io_dataset_scale(ds, (float)run.input_scale);
    pred = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *pred);
    if (!pred) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    if (ds->n && nn_model_predict_classes_f32(m, ds->x, ds->n, ds->d, pred)) {
        snprintf(err, sizeof err, "%s", nn_model_error(m));
        goto fail;
    }
    for (int64_t i = 0; i < ds->n; i++) {
        int c = (int)pred[i];
        printf("%lld %d %s\n", (long long)i, c,
               c >= 0 && c < run.nclasses ? run.class_names[c] : "?");
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        snprintf(err, sizeof err, "cannot write the predictions: %s", strerror(errno));
        goto fail;
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "chainrule predict: %s\n", err);
done:
    free(pred);
    io_dataset_free(ds);
    nn_model_free(m);
    nn_run_finish(&run);
    return status;
}
