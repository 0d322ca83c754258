/*
 * train.c -- `chainrule train`: options, data, and the run around the
 * library's training loop.
 *
 * The CLI is a thin client: the batches of an epoch come from the library's
 * batcher (io_batcher, in io_data_permutation(seed, epoch) order, a pure
 * function of (seed, epoch), so every process and a resumed run see the same
 * batches), the epoch loop is nn_train_epoch (forward, backward, divergence
 * check, optimizer step), and under mpirun (built with MPI) it is
 * nn_dist_train_epoch: each rank trains on its shard of every batch and the
 * flat gradient buffer is averaged with one MPI_Allreduce per step; rank 0's
 * parameters are broadcast at the start, and only rank 0 prints and writes
 * files. Launched without mpirun, nothing of MPI is touched. The model is the
 * library's from the --model list (nn_model_from_spec), checkpoints are the
 * library's training checkpoints (nn_checkpoint_save, nn_checkpoint_load),
 * the report is train_report.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef CR_HAVE_MPI
#include "chainrule/dist.h"
#endif
#include "commands.h"
#include "plot.h"
#include "progress.h"
#include "train.h"

void cr_set_threads(int threads) { ad_set_threads(threads); }

/* ------------------------------------------------------------------ cr_run */

void cr_run_defaults(cr_run *run)
{
    memset(run, 0, sizeof *run);
    run->model = "mlp";
    run->nhidden = 2;
    run->hidden[0] = 300;
    run->hidden[1] = 100;
    run->activation = NN_ACT_RELU;
    run->dtype = AD_F32;
    run->optim = nn_optim_defaults(NN_OPT_SGD);
    nn_run_init(&run->r);
    snprintf(run->r.optimizer, sizeof run->r.optimizer, "sgd");
    run->r.lr = run->optim.lr;
    run->r.schedule = NN_SCHED_CONSTANT;
    run->r.gamma = 0.9;
    run->r.batch = 32;
    run->r.seed = 42;
    run->r.subset = 0;
    run->r.val = 5000;
    run->r.input_scale = 255.0;
    run->r.epochs = 20;
    /* class names come with the data (load_train_data) or --class-names */
}

void cr_run_finish(cr_run *run)
{
    if (run)
        nn_run_finish(&run->r);
}

/* "bad --model: column 14: ...", the list and a caret under the column. */
static void spec_error(char *err, size_t errlen, const char *what, const char *spec,
                       const ad_error *e, int column)
{
    const char *msg = e->message;
    if (strncmp(msg, "nn_model_from_spec: ", 20) == 0)
        msg += 20;
    if (column > 0)
        snprintf(err, errlen, "%s: %s\n  %s\n  %*s^", what, msg, spec, column - 1, "");
    else
        snprintf(err, errlen, "%s: %s", what, msg);
}

nn_model *cr_run_build_model(const cr_run *run, int ndim, const int64_t *shape, int64_t outputs,
                             char *err, size_t errlen)
{
    char mlp[CR_SPEC_MAX];
    const char *spec = run->model;
    if (strcmp(spec, "mlp") == 0) {
        if (nn_mlp_spec(run->nhidden, run->hidden, run->activation, outputs, mlp, sizeof mlp)) {
            snprintf(err, errlen, "cannot build the model: too many hidden layers");
            return NULL;
        }
        spec = mlp;
    }
    nn_spec_options so = {.dtype = run->dtype,
                          .ndim = ndim,
                          .outputs = outputs,
                          .loss = NN_LOSS_CROSS_ENTROPY,
                          .batch = run->r.batch,
                          .seed = run->r.seed};
    memcpy(so.shape, shape, (size_t)ndim * sizeof *shape);
    ad_error e;
    int column;
    nn_model *m = nn_model_from_spec(spec, &so, &e, &column);
    if (!m)
        spec_error(err, errlen, "cannot build --model", spec, &e, column);
    return m;
}

nn_optimizer *cr_run_create_optimizer(const cr_run *run, nn_model *m, char *err, size_t errlen)
{
    ad_error aerr;
    nn_optimizer *o = nn_optimizer_new(m, &run->optim, &aerr);
    if (!o)
        snprintf(err, errlen, "cannot create the optimizer: %s", aerr.message);
    return o;
}

void cr_model_text(const nn_model *m, char *buf, size_t size)
{
    /* a perceptron (as --hidden and --activation make) by its widths */
    int64_t hidden[CR_MAX_HIDDEN];
    int nhidden = 0, nlayers = nn_model_layer_count(m);
    nn_activation act = NN_ACT_IDENTITY;
    bool mlp = ad_ndim(nn_model_input(m)) == 2;
    for (int i = 0; mlp && i < nlayers; i++) {
        nn_layer_info li;
        nn_model_layer_info(m, i, &li);
        bool last = i + 1 == nlayers;
        if (li.kind == NN_LAYER_DENSE && !last) {
            mlp = nhidden < CR_MAX_HIDDEN;
            if (mlp)
                hidden[nhidden++] = li.units;
        } else if (li.kind == NN_LAYER_ACTIVATION && i > 0 && !last) {
            mlp = act == NN_ACT_IDENTITY || act == li.act;
            act = li.act;
        } else {
            mlp = last && li.kind == NN_LAYER_DENSE;
        }
    }
    char want[CR_SPEC_MAX], have[CR_SPEC_MAX];
    int64_t outputs = nn_model_out_features(m);
    if (nn_model_spec(m, have, sizeof have) != 0)
        snprintf(have, sizeof have, "(no architecture)");
    if (mlp && nn_mlp_spec(nhidden, hidden, act, outputs, want, sizeof want) == 0 &&
        strcmp(want, have) == 0) {
        size_t used = (size_t)snprintf(buf, size, "%lld", (long long)nn_model_in_features(m));
        for (int i = 0; i < nhidden && used < size; i++)
            used += (size_t)snprintf(buf + used, size - used, "-%lld", (long long)hidden[i]);
        if (used < size)
            snprintf(buf + used, size - used, "-%lld, %s hidden", (long long)outputs,
                     nhidden ? nn_activation_name(act) : "no");
        return;
    }
    snprintf(buf, size, "%s", have);
}

/* ----------------------------------------------------------------- options */

enum {
    OPT_DATA,
    OPT_SUBSET,
    OPT_VAL,
    OPT_CLASS_NAMES,
    OPT_MODEL,
    OPT_HIDDEN,
    OPT_ACTIVATION,
    OPT_DTYPE,
    OPT_OPTIMIZER,
    OPT_LR,
    OPT_MOMENTUM,
    OPT_WEIGHT_DECAY,
    OPT_SCHEDULE,
    OPT_GAMMA,
    OPT_BATCH,
    OPT_EPOCHS,
    OPT_SEED,
    OPT_THREADS,
    OPT_SAVE,
    OPT_RESUME,
    OPT_LOG,
    OPT_PLOT,
    OPT_QUIET,
    OPT_ALLOW_NONFINITE,
    OPT_HELP,
    OPT_COUNT
};

static const cr_opt train_opts[] = {
    {"data", OPT_DATA, true},
    {"subset", OPT_SUBSET, true},
    {"val", OPT_VAL, true},
    {"class-names", OPT_CLASS_NAMES, true},
    {"model", OPT_MODEL, true},
    {"hidden", OPT_HIDDEN, true},
    {"activation", OPT_ACTIVATION, true},
    {"dtype", OPT_DTYPE, true},
    {"optimizer", OPT_OPTIMIZER, true},
    {"lr", OPT_LR, true},
    {"momentum", OPT_MOMENTUM, true},
    {"weight-decay", OPT_WEIGHT_DECAY, true},
    {"schedule", OPT_SCHEDULE, true},
    {"gamma", OPT_GAMMA, true},
    {"batch", OPT_BATCH, true},
    {"epochs", OPT_EPOCHS, true},
    {"seed", OPT_SEED, true},
    {"threads", OPT_THREADS, true},
    {"save", OPT_SAVE, true},
    {"resume", OPT_RESUME, true},
    {"log", OPT_LOG, true},
    {"plot", OPT_PLOT, true},
    {"quiet", OPT_QUIET, false},
    {"allow-nonfinite", OPT_ALLOW_NONFINITE, false},
    {"help", OPT_HELP, false},
    {NULL, 0, false},
};

static void train_help(FILE *out)
{
    /* clang-format off */
    fprintf(out,
"usage: chainrule train [OPTIONS]\n"
"\n"
"Trains a classifier on images in MNIST-layout IDX files: a multi-layer perceptron,\n"
"a convolutional network or any list of layers (--model).\n"
"With no options: the network of Geron's Hands-On ML, chapter 10, on Fashion-MNIST:\n"
"784-300-100-10, ReLU hidden layers, softmax cross-entropy, SGD with learning rate\n"
"0.01, mini-batches of 32, 20 epochs, pixels scaled to [0, 1], f32. The first 5,000\n"
"training images are held out for validation (--val) and the other 55,000 train;\n"
"the 10,000 test images are used only for the final report.\n"
"\n"
"data:\n"
"  --data DIR          directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
"                      t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each possibly\n"
"                      ending in .gz (MNIST works too) [" IO_FASHION_MNIST_DIR "]\n"
"  --subset N          train on only the first N training images after the validation\n"
"                      ones, for quick runs [all]\n"
"  --val N             validation images held out from the start of the training file;\n"
"                      0 for none [5000]\n"
"  --class-names LIST  comma-separated class names for the reports [Fashion-MNIST's]\n"
"model:\n"
"  --model SPEC        a preset, mlp (the perceptron of --hidden and --activation) or\n"
"                      cnn (conv2d(32,3,pad=1),relu,maxpool2d(2),conv2d(64,3,pad=1),relu,\n"
"                      maxpool2d(2),flatten,dense(128),relu,dropout(0.25),dense(10)), or\n"
"                      a list of layers: dense(units), conv2d(channels,kernel,stride=,\n"
"                      pad=,dilation=,groups=,bias=), maxpool2d(k), avgpool2d(k), flatten,\n"
"                      globalavgpool, dropout(rate), batchnorm, layernorm, relu, tanh,\n"
"                      ...; images keep their (1,28,28) shape when the first layer is\n"
"                      2-d (grammar: man chainrule, docs/training.md) [mlp]\n"
"  --hidden LIST       hidden layer widths of the mlp, e.g. 300,100; 'none' for softmax\n"
"                      regression [300,100]\n"
"  --activation NAME   of the mlp's hidden layers: relu, leaky_relu, elu, selu, tanh,\n"
"                      sigmoid, softplus, identity, step_st, sign_st [relu]\n"
"  --dtype f32|f64     floating-point type of weights and arithmetic [f32]\n"
    );
    fprintf(out,
"training:\n"
"  --optimizer NAME    sgd, momentum (SGD with momentum 0.9), nesterov, adam, adamw,\n"
"                      rmsprop, adagrad (PyTorch's update rules) [sgd]\n"
"  --lr X              learning rate > 0 [0.01; adam and adamw 0.001]\n"
"  --momentum X        momentum in [0, 1) of sgd and rmsprop [0; momentum, nesterov 0.9]\n"
"  --weight-decay X    L2 penalty >= 0 (decoupled for adamw) [0; adamw 0.01]\n"
"  --schedule NAME     learning rate per epoch: constant, cosine (annealed to 0 at the\n"
"                      last epoch), exponential (lr * gamma^epoch) [constant]\n"
"  --gamma X           decay of the exponential schedule, in (0, 1] [0.9]\n"
"  --batch N           mini-batch size [32]\n"
"  --epochs N          epochs in total, counting those of a resumed checkpoint [20]\n"
"  --seed N            seed of the initial weights and of every epoch's batch order [42]\n"
"  --threads N         threads of the matrix products and kernels (ad_set_threads)\n"
"                      [OpenBLAS's default for the products]; any N >= 1 gives the same\n"
"                      bits run to run\n"
"checkpoints and output:\n"
"  --save FILE         write a checkpoint (safetensors: weights, architecture, optimizer\n"
"                      state, epoch, history) after every epoch, atomically; a lock on\n"
"                      FILE.lock keeps two runs from writing the same FILE\n"
"  --resume FILE       continue training from a checkpoint: architecture, optimizer\n"
"                      state, seed and epoch come from it, so the run continues exactly\n"
"                      as if never stopped; --epochs is the new total; options that\n"
"                      differ from the checkpoint (--lr, --batch, --seed, --val, ...)\n"
"                      are refused\n"
"  --allow-nonfinite   load a checkpoint whose weights or optimizer state hold NaN or\n"
"                      infinite values (refused otherwise)\n"
"  --log FILE          per-epoch loss and accuracy as CSV, rewritten every epoch\n"
"  --plot FILE         the same as an SVG chart, rewritten every epoch\n"
"  --quiet             print only the last line\n"
"  -h, --help          this text\n"
"\n"
"Output: a line per epoch on stdout (and a progress bar on stderr when it is a\n"
"terminal), then the test set's per-class accuracy and confusion matrix, and as the\n"
"last line 'test accuracy: 0.XXXX'.\n"
"Exit status: 0 success, 1 runtime error (data, files, divergence), 2 usage error.\n"
"\n"
"examples:\n"
"  chainrule train --epochs 2 --subset 20000\n"
"  chainrule train --model cnn --optimizer adam --lr 0.001 --epochs 1\n"
"  chainrule train --optimizer adam --save model.safetensors --plot run.svg\n"
"  chainrule train --resume model.safetensors --epochs 30\n");
    /* clang-format on */
}

/* Prints "chainrule CMD: message (see ...)" and returns the usage status 2. */
int cr_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[CR_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "chainrule %s: %s (see 'chainrule %s --help')\n", cmd, msg, cmd);
    return 2;
}

/* getopt_long's values for the options: OPT_BASE + index in the table */
#define OPT_BASE 256

int cr_parse_options(const char *cmd, int argc, char **argv, const cr_opt *opts, bool *given,
                     const char **value, const char **positional, int max_positional,
                     int *npositional)
{
    int count = 0, help = -1;
    while (opts[count].name)
        count++;
    struct option *longopts = calloc((size_t)count + 1, sizeof *longopts);
    if (!longopts) {
        fprintf(stderr, "chainrule %s: out of memory\n", cmd);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        longopts[i].name = opts[i].name;
        longopts[i].has_arg = opts[i].value ? required_argument : no_argument;
        longopts[i].val = OPT_BASE + i;
        if (strcmp(opts[i].name, "help") == 0)
            help = i;
    }
    *npositional = 0;
    int status = -1, c;
    opterr = 0; /* our messages, not getopt's */
    optind = 0; /* (re)start scanning at argv[1] */
    /* '-': operands come back in order as 1; ':': a missing value is ':' */
    while (status < 0 && (c = getopt_long(argc, argv, "-:h", longopts, NULL)) != -1) {
        const char *arg = argv[optind - 1];
        if (c == 1) {
            if (*npositional == max_positional)
                status = cr_usage_error(cmd, "unexpected argument '%s'", optarg);
            else
                positional[(*npositional)++] = optarg;
        } else if (c == 'h' && help >= 0) {
            given[opts[help].id] = true;
        } else if (c >= OPT_BASE && c < OPT_BASE + count) {
            given[opts[c - OPT_BASE].id] = true;
            value[opts[c - OPT_BASE].id] = optarg;
        } else if (c == ':' && optopt >= OPT_BASE) {
            status = cr_usage_error(cmd, "option --%s needs a value", opts[optopt - OPT_BASE].name);
        } else if (optopt >= OPT_BASE) {
            status =
                cr_usage_error(cmd, "option --%s takes no value", opts[optopt - OPT_BASE].name);
        } else if (strncmp(arg, "--", 2) == 0) {
            size_t len = strcspn(arg, "=");
            status = cr_usage_error(cmd, "unknown option '%.*s'", (int)len, arg);
        } else {
            status = cr_usage_error(cmd, "unexpected argument '%s'", arg);
        }
    }
    for (int i = optind; status < 0 && i < argc; i++) { /* after "--" */
        if (*npositional == max_positional)
            status = cr_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        else
            positional[(*npositional)++] = argv[i];
    }
    free(longopts);
    return status;
}

static bool parse_double(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* A decimal integer in [lo, hi], nothing else (no spaces, no suffix). */
static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (*s == '\0' || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno == ERANGE || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* "300,100" or "none" into widths[1..]; returns the number of hidden layers
 * or -1 with a reason in why. */
static int parse_hidden(const char *s, int64_t *hidden, int max, char *why, size_t whylen)
{
    if (strcmp(s, "none") == 0)
        return 0;
    int count = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0) {
            snprintf(why, whylen, "an empty width");
            return -1;
        }
        if (len >= sizeof item) {
            snprintf(why, whylen, "a width that is not a number");
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        long long v;
        if (!parse_int(item, 1, 1 << 20, &v)) {
            snprintf(why, whylen, "width '%s' is not an integer in [1, 1048576]", item);
            return -1;
        }
        if (count == max) {
            snprintf(why, whylen, "more than %d hidden layers", max);
            return -1;
        }
        hidden[count++] = v;
        if (!comma)
            return count;
        p = comma + 1;
    }
}

typedef struct {
    const char *data_dir, *save, *resume, *log, *plot;
    int threads;
    bool quiet;
    bool given[OPT_COUNT];
    const char *value[OPT_COUNT]; /* as typed, for messages */
    cr_run run;                   /* the options applied to the defaults */
    bool class_names_given;
} train_options;

/* Applies the optimizer name and the explicit rates to run->optim. */
static int set_optimizer(train_options *o, const char *cmd)
{
    cr_run *run = &o->run;
    char name[sizeof run->r.optimizer];
    const char *given = o->given[OPT_OPTIMIZER] ? o->value[OPT_OPTIMIZER] : run->r.optimizer;
    if (strlen(given) >= sizeof name)
        return cr_usage_error(cmd, "unknown optimizer '%s'", given);
    snprintf(name, sizeof name, "%s", given);
    int kind = nn_optim_from_name(name);
    if (kind < 0)
        return cr_usage_error(cmd,
                              "unknown optimizer '%s' (sgd, momentum, nesterov, adam, adamw, "
                              "rmsprop, adagrad)",
                              name);
    snprintf(run->r.optimizer, sizeof run->r.optimizer, "%s", name);
    run->optim = nn_optim_defaults((nn_optim_kind)kind);
    if (strcmp(name, "momentum") == 0 || strcmp(name, "nesterov") == 0)
        run->optim.momentum = 0.9;
    run->optim.nesterov = strcmp(name, "nesterov") == 0;
    double v;
    if (o->given[OPT_LR]) {
        if (!parse_double(o->value[OPT_LR], &v) || !(v > 0))
            return cr_usage_error(cmd,
                                  "bad value '%s' for --lr: the learning rate must be a "
                                  "number > 0",
                                  o->value[OPT_LR]);
        run->optim.lr = v;
    }
    if (o->given[OPT_MOMENTUM]) {
        if (!parse_double(o->value[OPT_MOMENTUM], &v) || !(v >= 0 && v < 1))
            return cr_usage_error(cmd, "bad value '%s' for --momentum: must be a number in [0, 1)",
                                  o->value[OPT_MOMENTUM]);
        if (kind != NN_OPT_SGD && kind != NN_OPT_RMSPROP)
            return cr_usage_error(cmd, "--momentum applies to sgd and rmsprop, not %s", name);
        if (run->optim.nesterov && v == 0)
            return cr_usage_error(cmd, "nesterov needs --momentum > 0");
        run->optim.momentum = v;
    }
    if (o->given[OPT_WEIGHT_DECAY]) {
        if (!parse_double(o->value[OPT_WEIGHT_DECAY], &v) || !(v >= 0))
            return cr_usage_error(cmd, "bad value '%s' for --weight-decay: must be a number >= 0",
                                  o->value[OPT_WEIGHT_DECAY]);
        run->optim.weight_decay = v;
    }
    /* plain SGD takes its step inside the backward pass (nn_optim_config.fused) */
    run->optim.fused = run->optim.kind == NN_OPT_SGD && run->optim.momentum == 0 &&
                       run->optim.weight_decay == 0 && run->optim.clip_norm == 0;
    run->r.lr = run->optim.lr;
    return 0;
}

/* Parses argv into o; returns -1 to go on, or an exit status (0 for --help). */
static int parse_train_options(int argc, char **argv, train_options *o)
{
    const char *cmd = "train";
    memset(o, 0, sizeof *o);
    cr_run_defaults(&o->run);
    int npositional;
    int status =
        cr_parse_options(cmd, argc, argv, train_opts, o->given, o->value, NULL, 0, &npositional);
    if (status >= 0)
        return status;
    if (o->given[OPT_HELP]) {
        train_help(stdout);
        return 0;
    }

    cr_run *run = &o->run;
    long long n;
    double v;
    char why[256];
    o->data_dir = o->given[OPT_DATA] ? o->value[OPT_DATA] : IO_FASHION_MNIST_DIR;
    if (o->given[OPT_DATA] && o->data_dir[0] == '\0')
        return cr_usage_error(cmd, "--data needs a directory");
    if (o->given[OPT_SUBSET]) {
        if (!parse_int(o->value[OPT_SUBSET], 1, INT64_MAX, &n))
            return cr_usage_error(cmd, "bad value '%s' for --subset: must be an integer >= 1",
                                  o->value[OPT_SUBSET]);
        run->r.subset = n;
    }
    if (o->given[OPT_VAL]) {
        if (!parse_int(o->value[OPT_VAL], 0, INT64_MAX, &n))
            return cr_usage_error(cmd, "bad value '%s' for --val: must be an integer >= 0",
                                  o->value[OPT_VAL]);
        run->r.val = n;
    }
    if (o->given[OPT_CLASS_NAMES]) {
        ad_error e;
        if (nn_run_set_class_names(&run->r, o->value[OPT_CLASS_NAMES], &e) != 0)
            return cr_usage_error(cmd, "bad value '%s' for --class-names: %s",
                                  o->value[OPT_CLASS_NAMES], e.message);
        o->class_names_given = true;
    }
    if (o->given[OPT_MODEL]) {
        const char *spec = o->value[OPT_MODEL];
        ad_error e;
        int column;
        if (nn_spec_check(spec, &e, &column) != 0) {
            char msg[CR_ERR_MAX];
            spec_error(msg, sizeof msg, "bad value for --model", spec, &e, column);
            fprintf(stderr, "chainrule %s: %s\n", cmd, msg);
            return 2;
        }
        size_t lead = strspn(spec, " \t");
        run->model =
            strncmp(spec + lead, "mlp", 3) == 0 && !spec[lead + 3 + strspn(spec + lead + 3, " \t")]
                ? "mlp"
                : spec;
        if ((o->given[OPT_HIDDEN] || o->given[OPT_ACTIVATION]) && strcmp(run->model, "mlp") != 0)
            return cr_usage_error(cmd,
                                  "--hidden and --activation shape the mlp preset; with --model "
                                  "'%s' write the layers in the list",
                                  spec);
    }
    if (o->given[OPT_HIDDEN]) {
        o->run.nhidden =
            parse_hidden(o->value[OPT_HIDDEN], o->run.hidden, CR_MAX_HIDDEN, why, sizeof why);
        if (o->run.nhidden < 0)
            return cr_usage_error(cmd, "bad value '%s' for --hidden: %s (e.g. --hidden 300,100)",
                                  o->value[OPT_HIDDEN], why);
    }
    if (o->given[OPT_ACTIVATION]) {
        int a = nn_activation_from_name(o->value[OPT_ACTIVATION]);
        if (a < 0 || a == NN_ACT_SOFTMAX || a == NN_ACT_LOG_SOFTMAX)
            return cr_usage_error(cmd,
                                  "unknown hidden activation '%s' (relu, leaky_relu, elu, selu, "
                                  "tanh, sigmoid, softplus, identity, step_st, sign_st)",
                                  o->value[OPT_ACTIVATION]);
        run->activation = (nn_activation)a;
    }
    if (o->given[OPT_DTYPE]) {
        if (strcmp(o->value[OPT_DTYPE], "f32") == 0)
            run->dtype = AD_F32;
        else if (strcmp(o->value[OPT_DTYPE], "f64") == 0)
            run->dtype = AD_F64;
        else
            return cr_usage_error(cmd, "bad value '%s' for --dtype: f32 or f64",
                                  o->value[OPT_DTYPE]);
    }
    int rc = set_optimizer(o, cmd);
    if (rc)
        return rc;
    if (o->given[OPT_SCHEDULE]) {
        int s = nn_schedule_from_name(o->value[OPT_SCHEDULE]);
        if (s != NN_SCHED_CONSTANT && s != NN_SCHED_COSINE && s != NN_SCHED_EXPONENTIAL)
            return cr_usage_error(cmd, "unknown schedule '%s' (constant, cosine, exponential)",
                                  o->value[OPT_SCHEDULE]);
        run->r.schedule = (nn_schedule_kind)s;
    }
    if (o->given[OPT_GAMMA]) {
        if (!parse_double(o->value[OPT_GAMMA], &v) || !(v > 0 && v <= 1))
            return cr_usage_error(cmd, "bad value '%s' for --gamma: must be a number in (0, 1]",
                                  o->value[OPT_GAMMA]);
        run->r.gamma = v;
    }
    if (o->given[OPT_BATCH]) {
        if (!parse_int(o->value[OPT_BATCH], 1, 1 << 20, &n))
            return cr_usage_error(cmd,
                                  "bad value '%s' for --batch: must be an integer in [1, "
                                  "1048576]",
                                  o->value[OPT_BATCH]);
        run->r.batch = n;
    }
    if (o->given[OPT_EPOCHS]) {
        if (!parse_int(o->value[OPT_EPOCHS], 1, 1000000, &n))
            return cr_usage_error(cmd,
                                  "bad value '%s' for --epochs: must be an integer in [1, "
                                  "1000000]",
                                  o->value[OPT_EPOCHS]);
        run->r.epochs = n;
    }
    if (o->given[OPT_SEED] && !parse_u64(o->value[OPT_SEED], &run->r.seed))
        return cr_usage_error(cmd, "bad value '%s' for --seed: must be an integer in [0, 2^64)",
                              o->value[OPT_SEED]);
    if (o->given[OPT_THREADS]) {
        if (!parse_int(o->value[OPT_THREADS], 1, 1024, &n))
            return cr_usage_error(cmd,
                                  "bad value '%s' for --threads: must be an integer in [1, "
                                  "1024]",
                                  o->value[OPT_THREADS]);
        o->threads = (int)n;
    }
    const int files[] = {OPT_SAVE, OPT_RESUME, OPT_LOG, OPT_PLOT};
    const char *file_opts[] = {"save", "resume", "log", "plot"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        if (o->given[files[k]] && o->value[files[k]][0] == '\0')
            return cr_usage_error(cmd, "--%s needs a file name", file_opts[k]);
    o->save = o->value[OPT_SAVE];
    o->resume = o->value[OPT_RESUME];
    o->log = o->value[OPT_LOG];
    o->plot = o->value[OPT_PLOT];
    o->quiet = o->given[OPT_QUIET];
    return -1;
}

/*
 * On --resume: the checkpoint's run replaces the defaults. Every option that
 * defines the run (architecture, optimizer, learning rate and schedule, batch,
 * seed, --subset, --val) must agree with it, or the command is refused naming
 * the option and the stored value; --epochs (the new total) and
 * --class-names may change.
 */
/* The name of option id ("hidden"). */
static const char *opt_name(int id)
{
    for (const cr_opt *d = train_opts; d->name; d++)
        if (d->id == id)
            return d->name;
    return "?";
}

static int merge_resumed(train_options *o, nn_model *m, const nn_optimizer *opt, nn_run *saved)
{
    const char *cmd = "train";
    cr_run *want = &o->run;
    const int model_opts[] = {OPT_MODEL, OPT_HIDDEN, OPT_ACTIVATION};
    for (size_t k = 0; k < sizeof model_opts / sizeof model_opts[0]; k++) {
        int id = model_opts[k];
        if (!o->given[id])
            continue;
        /* the model the options describe, for the saved model's data */
        const ad_node *x = nn_model_input(m);
        int64_t shape[3] = {1, 1, 1};
        int ndim = ad_ndim(x) - 1;
        for (int i = 0; i < ndim && i < 3; i++)
            shape[i] = ad_shape(x)[i + 1];
        char err[CR_ERR_MAX], have[CR_SPEC_MAX], asked[CR_SPEC_MAX] = "";
        cr_run probe = *want;
        probe.r.batch = saved->batch;
        nn_model *p =
            ndim >= 1 && ndim <= 3
                ? cr_run_build_model(&probe, ndim, shape, nn_model_out_features(m), err, sizeof err)
                : NULL;
        if (p)
            nn_model_spec(p, asked, sizeof asked);
        nn_model_free(p);
        if (nn_model_spec(m, have, sizeof have) != 0 || strcmp(asked, have) != 0) {
            cr_model_text(m, have, sizeof have);
            return cr_usage_error(cmd, "--%s %s differs from the network of %s (%s)", opt_name(id),
                                  o->value[id], o->resume, have);
        }
        break;
    }
    if (o->given[OPT_DTYPE] && want->dtype != nn_model_dtype(m))
        return cr_usage_error(cmd, "--dtype %s differs from %s's %s", o->value[OPT_DTYPE],
                              o->resume, nn_model_dtype(m) == AD_F32 ? "f32" : "f64");
    if (o->given[OPT_OPTIMIZER] && strcmp(want->r.optimizer, saved->optimizer) != 0)
        return cr_usage_error(cmd, "--optimizer %s differs from %s's %s", want->r.optimizer,
                              o->resume, saved->optimizer);
    const nn_optim_config *have = nn_optimizer_config(opt);
    if ((o->given[OPT_MOMENTUM] && want->optim.momentum != have->momentum) ||
        (o->given[OPT_WEIGHT_DECAY] && want->optim.weight_decay != have->weight_decay))
        return cr_usage_error(cmd, "--momentum and --weight-decay cannot change on --resume");
    /* The data split, the batch order and the learning rate are part of the
       run too: a different --val would move validation images into
       training, a different --seed or --batch would not continue the run. */
    char stored[64];
    const char *conflict = NULL;
    if (o->given[OPT_LR] && want->optim.lr != saved->lr) {
        conflict = "lr";
        snprintf(stored, sizeof stored, "%g", saved->lr);
    } else if (o->given[OPT_SCHEDULE] && want->r.schedule != saved->schedule) {
        conflict = "schedule";
        snprintf(stored, sizeof stored, "%s", nn_schedule_name(saved->schedule));
    } else if (o->given[OPT_GAMMA] && want->r.gamma != saved->gamma) {
        conflict = "gamma";
        snprintf(stored, sizeof stored, "%g", saved->gamma);
    } else if (o->given[OPT_BATCH] && want->r.batch != saved->batch) {
        conflict = "batch";
        snprintf(stored, sizeof stored, "%lld", (long long)saved->batch);
    } else if (o->given[OPT_SEED] && want->r.seed != saved->seed) {
        conflict = "seed";
        snprintf(stored, sizeof stored, "%llu", (unsigned long long)saved->seed);
    } else if (o->given[OPT_SUBSET] && want->r.subset != saved->subset) {
        conflict = "subset";
        snprintf(stored, sizeof stored, "%lld%s", (long long)saved->subset,
                 saved->subset ? "" : " (all)");
    } else if (o->given[OPT_VAL] && want->r.val != saved->val) {
        conflict = "val";
        snprintf(stored, sizeof stored, "%lld", (long long)saved->val);
    }
    if (conflict) {
        int id = 0;
        for (int k = 0; k < OPT_COUNT; k++)
            if (strcmp(opt_name(k), conflict) == 0)
                id = k;
        return cr_usage_error(cmd,
                              "--%s %s differs from %s's %s; a resumed run keeps its checkpoint's "
                              "settings (only --epochs and --class-names may change)",
                              conflict, o->value[id], o->resume, stored);
    }
    if (o->given[OPT_EPOCHS])
        saved->epochs = want->r.epochs;
    if (o->class_names_given) {
        free(saved->class_names);
        saved->nclasses = want->r.nclasses;
        saved->class_names = want->r.class_names;
        want->r.class_names = NULL;
        want->r.nclasses = 0;
    }
    nn_run_finish(&want->r);
    want->r = *saved; /* takes over the names and the history */
    memset(saved, 0, sizeof *saved);
    want->optim = *have;
    want->optim.lr = want->r.lr; /* the base rate; the optimizer holds the scheduled one */
    want->dtype = nn_model_dtype(m);
    return 0;
}

/* -------------------------------------------------------------------- data */

/* The training file holds the validation images first, then the training
 * images; train and valid are views into it (borrowed rows, no copy of the
 * 188 MB of images), which the library's batcher and evaluation read. */
typedef struct {
    io_dataset *full, *test;
    io_dataset train, valid; /* views into full: never destroyed */
} train_data;

/* Rows [begin, begin + n) of ds as a borrowed data set. */
static io_dataset rows_of(const io_dataset *ds, int64_t begin, int64_t n)
{
    io_dataset v = *ds;
    v.x = ds->x + begin * ds->d;
    v.y = ds->y + begin;
    v.n = n;
    v.class_names = NULL;
    return v;
}

static void train_data_free(train_data *td)
{
    io_dataset_free(td->full);
    io_dataset_free(td->test);
    memset(td, 0, sizeof *td);
}

/* Loads and scales the data and checks it against run (classes, inputs). */
static int load_train_data(const char *dir, cr_run *run, nn_model **model, train_data *td,
                           char *err, size_t errlen)
{
    bool resumed = *model != NULL;
    ad_error derr;
    memset(td, 0, sizeof *td);
    if (io_mnist_load(dir, &td->full, &td->test, &derr) != 0) {
        snprintf(err, errlen, "%s", derr.message);
        return -1;
    }
    io_dataset *full = td->full, *test = td->test;
    if (full->d != test->d) {
        snprintf(err, errlen, "%s: training images have %lld pixels but test images %lld", dir,
                 (long long)full->d, (long long)test->d);
        return -1;
    }
    if (test->n == 0) {
        snprintf(err, errlen, "%s: the test set has no images; nothing to report accuracy on", dir);
        return -1;
    }
    if (run->r.val >= full->n) {
        snprintf(err, errlen,
                 "%s: cannot hold out %lld validation images from %lld training images "
                 "(use --val)",
                 dir, (long long)run->r.val, (long long)full->n);
        return -1;
    }
    /* The classes are the training labels' (or the named ones, when
       --class-names names more): a test label outside them is an error, it
       never widens the model. */
    int classes = full->classes;
    if (!resumed && run->r.nclasses > classes)
        classes = run->r.nclasses;
    if (classes < 2) {
        snprintf(err, errlen, "%s: the labels name %d class; a classifier needs 2 or more", dir,
                 classes);
        return -1;
    }
    if (resumed) {
        const ad_node *x = nn_model_input(*model);
        bool fits = full->d == nn_model_in_features(*model) &&
                    full->classes <= nn_model_out_features(*model);
        if (fits && ad_ndim(x) == 4 && full->height > 0)
            fits = ad_shape(x)[2] == full->height && ad_shape(x)[3] == full->width;
        if (!fits) {
            char w[CR_SPEC_MAX];
            cr_model_text(*model, w, sizeof w);
            snprintf(err, errlen,
                     "%s: images of %lld pixels in %d classes do not fit the saved network %.300s",
                     dir, (long long)full->d, full->classes, w);
            return -1;
        }
    } else {
        /* images keep their (1, H, W) shape: the model's first layer decides */
        int64_t shape[3] = {1, full->height, full->width}, flat = full->d;
        bool image = full->height > 0 && full->height * full->width == full->d;
        if (!(*model = cr_run_build_model(run, image ? 3 : 1, image ? shape : &flat, classes, err,
                                          errlen)))
            return -1;
        if (nn_model_out_features(*model) < classes) {
            snprintf(err, errlen, "the model has %lld outputs but the labels name %d classes",
                     (long long)nn_model_out_features(*model), classes);
            return -1;
        }
    }
    int outputs = (int)nn_model_out_features(*model);
    if (run->r.nclasses < outputs) {
        if (run->r.nclasses > 0) {
            snprintf(err, errlen, "--class-names gives %d names for %d classes", run->r.nclasses,
                     outputs);
            return -1;
        }
        ad_error e;
        if (nn_run_resize_classes(&run->r, outputs, &e) != 0) {
            snprintf(err, errlen, "%s", e.message);
            return -1;
        }
        for (int k = 0; k < outputs; k++) {
            const char *name =
                outputs <= IO_FASHION_MNIST_CLASSES ? io_fashion_mnist_class_name(k) : NULL;
            if (name)
                snprintf(run->r.class_names[k], NN_CLASS_NAME_MAX, "%s", name);
            else
                snprintf(run->r.class_names[k], NN_CLASS_NAME_MAX, "class %d", k);
        }
    }
    for (int64_t i = 0; i < test->n; i++)
        if (test->y[i] >= outputs) {
            snprintf(err, errlen,
                     "%s: test image %lld has label %d, but the network has %d classes "
                     "(0 to %d, from the training labels%s)",
                     dir, (long long)i, test->y[i], outputs, outputs - 1,
                     resumed ? " of the checkpoint" : " and --class-names");
            return -1;
        }
    io_dataset_scale(full, (float)run->r.input_scale);
    io_dataset_scale(test, (float)run->r.input_scale);
    int64_t val = run->r.val, rest = full->n - val;
    int64_t ntrain = run->r.subset > 0 && run->r.subset < rest ? run->r.subset : rest;
    td->valid = rows_of(full, 0, val);
    td->train = rows_of(full, val, ntrain);
    return 0;
}

/* ------------------------------------------------------------------ locking */

static int lock_fail(char *err, size_t errlen, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int lock_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int cr_checkpoint_lock(const char *path, char *err, size_t errlen)
{
    char lock[4096];
    if ((size_t)snprintf(lock, sizeof lock, "%s.lock", path) >= sizeof lock)
        return lock_fail(err, errlen, "file name too long: %s", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return lock_fail(err, errlen, "cannot create the lock file %s: %s", lock, strerror(errno));
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock q;
        memset(&q, 0, sizeof q);
        q.l_type = F_WRLCK;
        q.l_whence = SEEK_SET;
        long holder = fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
        close(fd);
        if (e == EACCES || e == EAGAIN)
            return lock_fail(
                err, errlen,
                "%s is being written by another run: process %ld holds %s; wait for it "
                "or save elsewhere",
                path, holder, lock);
        return lock_fail(err, errlen, "cannot lock %s: %s", lock, strerror(e));
    }
    /* the holder's pid, for people looking at the file (the lock itself is
       what counts: it goes away with the process) */
    if (ftruncate(fd, 0) == 0)
        dprintf(fd, "%ld\n", (long)getpid());
    return fd;
}

/* ---------------------------------------------------------- data parallel */

/* The processes of a run: one (rank 0 of 1) unless an MPI launcher started
 * this process (then the library's nn_dist_join joined the job). */
typedef struct {
    int rank, size;
    bool abort_all; /* from now on a failure on one rank must stop every rank */
#ifdef CR_HAVE_MPI
    nn_dist_job job;
    MPI_Comm comm;
#endif
} dist_ctx;

static int dist_begin(dist_ctx *dc, char *err, size_t errlen)
{
    memset(dc, 0, sizeof *dc);
    dc->size = 1;
#ifdef CR_HAVE_MPI
    ad_error aerr;
    if (nn_dist_join(&dc->job, &aerr) != 0) {
        snprintf(err, errlen, "%s", aerr.message);
        return -1;
    }
    dc->rank = dc->job.rank;
    dc->size = dc->job.size;
    dc->comm = dc->job.comm;
#else
    (void)err;
    (void)errlen;
#endif
    return 0;
}

static void dist_end(dist_ctx *dc)
{
#ifdef CR_HAVE_MPI
    nn_dist_leave(&dc->job);
#else
    (void)dc;
#endif
}

/* Whether the setup succeeded on every rank (nn_dist_all_ok). */
static bool dist_all_ok(dist_ctx *dc, bool ok, bool *print)
{
#ifdef CR_HAVE_MPI
    int p = 0;
    bool all = nn_dist_all_ok(&dc->job, ok, &p) != 0;
    *print = p != 0;
    return all;
#else
    (void)dc;
    *print = !ok;
    return ok;
#endif
}

/* Gives every rank rank 0's weights and optimizer state. */
static int dist_sync_start(dist_ctx *dc, nn_model *m, nn_optimizer *opt, char *err, size_t errlen)
{
#ifdef CR_HAVE_MPI
    if (dc->size > 1 && nn_dist_broadcast_params(m, dc->comm) != 0) {
        snprintf(err, errlen, "%s", nn_model_error(m));
        return -1;
    }
    if (dc->size > 1 && nn_dist_broadcast_optimizer(opt, dc->comm) != 0) {
        snprintf(err, errlen, "%s", nn_optimizer_error(opt));
        return -1;
    }
#else
    (void)dc;
    (void)m;
    (void)opt;
    (void)err;
    (void)errlen;
#endif
    return 0;
}

/* --------------------------------------------------------- training loop */

/* The epoch loop, the batching and the gradient allreduce are the library's
 * (nn_train_epoch, io_batcher, nn_dist_train_epoch); the CLI chooses the
 * learning rate, shows progress and writes files. */

static void show_progress(const nn_epoch_stats *so_far, int64_t batch, int64_t batches, void *ctx)
{
    (void)batches;
    double rows = so_far->rows > 0 ? (double)so_far->rows : 1.0;
    /* (data-parallel: rank 0's shards; the epoch line has everyone's) */
    cr_progress_update(ctx, batch, so_far->loss_sum / rows, (double)so_far->correct / rows);
}

static double schedule_lr(const cr_run *run, int64_t epoch)
{
    nn_schedule s;
    switch (run->r.schedule) {
    case NN_SCHED_COSINE:
        s = nn_schedule_cosine(run->optim.lr, run->r.epochs, 0.0);
        break;
    case NN_SCHED_EXPONENTIAL:
        s = nn_schedule_exponential(run->optim.lr, run->r.gamma);
        break;
    default:
        s = nn_schedule_constant(run->optim.lr);
        break;
    }
    return nn_schedule_lr(&s, epoch);
}

typedef struct {
    double loss, acc, val_loss, val_acc, seconds;
    double comm_seconds; /* data-parallel: mean time per rank in the gradient allreduce */
} epoch_result;

/* One epoch over td->train (this rank's shards of it), then the validation
 * figures (on rank 0). */
static int run_epoch(nn_model *m, nn_optimizer *opt, const cr_run *run, const train_data *td,
                     io_batcher *batcher, const dist_ctx *dc, int64_t epoch, bool quiet,
                     epoch_result *res, char *err, size_t errlen)
{
    if (nn_optimizer_set_lr(opt, schedule_lr(run, epoch)) != 0) {
        snprintf(err, errlen, "%s", nn_optimizer_error(opt));
        return -1;
    }
    cr_progress bar;
    cr_progress_begin(&bar, stderr, quiet ? CR_PROGRESS_NEVER : CR_PROGRESS_AUTO, (int)epoch + 1,
                      (int)run->r.epochs, io_batcher_count(batcher));
    nn_epoch_stats st;
    double comm = 0;
    int rc;
#ifdef CR_HAVE_MPI
    if (dc->size > 1)
        rc = nn_dist_train_epoch(m, opt, batcher, (uint64_t)epoch, dc->comm, show_progress, &bar,
                                 &st, &comm);
    else
#endif
    {
        nn_epoch_options eo = {0, 1, NULL, show_progress, &bar};
        rc = nn_train_epoch(m, opt, batcher, (uint64_t)epoch, &eo, &st);
    }
    cr_progress_end(&bar);
    if (rc != 0) {
        if (st.failed_batch >= 0)
            snprintf(err, errlen,
                     "training diverged in epoch %lld, batch %lld (loss %g): try a smaller --lr",
                     (long long)epoch + 1, (long long)st.failed_batch + 1, st.loss);
        else
            snprintf(err, errlen, "%s", nn_model_error(m));
        return -1;
    }
    double rows = st.rows > 0 ? (double)st.rows : 1.0;
    res->loss = st.loss_sum / rows;
    res->acc = (double)st.correct / rows;
    res->comm_seconds = comm;
    res->val_loss = res->val_acc = NAN;
    if (dc->rank == 0 && td->valid.n > 0 &&
        nn_model_evaluate_f32(m, td->valid.x, td->valid.y, td->valid.n, td->valid.d, &res->val_loss,
                              &res->val_acc) != 0) {
        snprintf(err, errlen, "%s", nn_model_error(m));
        return -1;
    }
    res->seconds = cr_progress_elapsed(&bar);
    return 0;
}

/* Writes the per-epoch outputs: log, plot, checkpoint (rank 0 only). */
/* The run's history as the plot and the log take it. */
static int history_of(const nn_run *r, cr_history *h)
{
    memset(h, 0, sizeof *h);
    for (int64_t e = 0; e < r->nhistory; e++) {
        const nn_epoch_record *x = &r->history[e];
        if (cr_history_add(h, x->loss, x->accuracy, x->val_loss, x->val_accuracy, x->seconds))
            return -1;
    }
    return 0;
}

/* Writes the per-epoch outputs: log, plot, checkpoint (rank 0 only). */
static int write_epoch_files(const train_options *o, const cr_run *run, const dist_ctx *dc,
                             nn_model *m, const nn_optimizer *opt, char *err, size_t errlen)
{
    if (dc->rank != 0)
        return 0;
    char title[512], w[CR_SPEC_MAX];
    cr_model_text(m, w, sizeof w);
    snprintf(title, sizeof title, "%.300s, %s lr %g, batch %lld", w, run->r.optimizer,
             run->optim.lr, (long long)run->r.batch);
    cr_history h;
    int rc = history_of(&run->r, &h);
    if (rc)
        snprintf(err, errlen, "out of memory");
    if (!rc && o->log)
        rc = cr_log_csv(o->log, &h, err, errlen);
    if (!rc && o->plot)
        rc = cr_plot_svg(o->plot, &h, title, err, errlen);
    cr_history_free(&h);
    ad_error e;
    if (!rc && o->save && nn_checkpoint_save(o->save, m, opt, &run->r, &e) != 0) {
        snprintf(err, errlen, "%s%s", e.message, e.code == AD_ESTATE ? ": try a smaller --lr" : "");
        rc = -1;
    }
    return rc;
}

static void print_header(FILE *out, const cr_run *run, const train_data *td, nn_model *m,
                         const char *dir, bool resumed)
{
    char w[CR_SPEC_MAX];
    cr_model_text(m, w, sizeof w);
    fprintf(out, "data: %s: %lld training, %lld validation, %lld test images\n", dir,
            (long long)td->train.n, (long long)td->valid.n, (long long)td->test->n);
    fprintf(out, "model: %s, softmax cross-entropy, %s, %lld parameters\n", w,
            nn_model_dtype(m) == AD_F32 ? "f32" : "f64", (long long)nn_model_param_count(m));
    fprintf(out, "optimizer: %s lr %g", run->r.optimizer, run->optim.lr);
    if (run->optim.momentum > 0)
        fprintf(out, " momentum %g", run->optim.momentum);
    if (run->optim.weight_decay > 0)
        fprintf(out, " weight_decay %g", run->optim.weight_decay);
    if (run->r.schedule != NN_SCHED_CONSTANT)
        fprintf(out, " schedule %s", nn_schedule_name(run->r.schedule));
    fprintf(out, ", batch %lld, %lld epochs, seed %llu\n", (long long)run->r.batch,
            (long long)run->r.epochs, (unsigned long long)run->r.seed);
    if (resumed)
        fprintf(out, "resumed after epoch %lld\n", (long long)run->r.epochs_done);
    fflush(out);
}

int cr_cmd_train(int argc, char **argv)
{
    train_options o;
    int status = parse_train_options(argc, argv, &o);
    if (status >= 0) {
        cr_run_finish(&o.run);
        return status;
    }
    char err[CR_ERR_MAX];
    cr_run *run = &o.run;
    nn_model *m = NULL;
    nn_optimizer *opt = NULL;
    train_data td = {0};
    io_batcher *batcher = NULL;
    int lock_fd = -1;
    FILE *out = stdout;
    status = 1;
    err[0] = '\0';
    dist_ctx dc;
    if (dist_begin(&dc, err, sizeof err) != 0)
        goto fail;
    cr_set_threads(o.threads);
    /* data-parallel: rank 0 prints, the others only report their errors */
    bool quiet = o.quiet || dc.rank != 0, print_err;
    int setup = 0; /* exit status of a failed setup step */

    if (o.save && dc.rank == 0 && (lock_fd = cr_checkpoint_lock(o.save, err, sizeof err)) < 0) {
        setup = 1;
        goto agree;
    }
    if (o.resume) {
        nn_run saved;
        ad_error e;
        unsigned flags = o.given[OPT_ALLOW_NONFINITE] ? NN_CHECKPOINT_ALLOW_NONFINITE : 0;
        if (!(m = nn_checkpoint_load(o.resume, 0, flags, &opt, &saved, &e))) {
            snprintf(err, sizeof err, "%s%s", e.message,
                     e.code == AD_ESTATE ? "; --allow-nonfinite loads it anyway" : "");
            setup = 1;
            goto agree;
        }
        int rc = merge_resumed(&o, m, opt, &saved);
        nn_run_finish(&saved);
        if (rc) {
            setup = rc; /* the message is printed */
            goto agree;
        }
    }
    if (load_train_data(o.data_dir, run, &m, &td, err, sizeof err) != 0 ||
        (!opt && !(opt = cr_run_create_optimizer(run, m, err, sizeof err)))) {
        setup = 1;
        goto agree;
    }
    /* every epoch's batches in io_data_permutation(seed, epoch) order: a
       pure function of (seed, epoch), the same on every rank and after a
       resume */
    ad_error derr;
    if (!(batcher = io_batcher_new(&td.train, run->r.batch, true, run->r.seed, &derr))) {
        snprintf(err, sizeof err, "%s", derr.message);
        setup = 1;
    }
agree:
    if (!dist_all_ok(&dc, setup == 0, &print_err)) {
        status = setup ? setup : 1;
        if (!print_err || !err[0])
            goto done;
        goto fail;
    }
    /* from here on the ranks work in lockstep: a failure on one stops all */
    dc.abort_all = dc.size > 1;
    if (dist_sync_start(&dc, m, opt, err, sizeof err) != 0)
        goto fail;
    if (!quiet) {
        print_header(out, run, &td, m, o.data_dir, o.resume != NULL);
        if (dc.size > 1)
            fprintf(out,
                    "data-parallel: %d processes, each batch of %lld split into shards of "
                    "%lld to %lld rows, one allreduce of %lld %s gradients per step\n",
                    dc.size, (long long)run->r.batch, (long long)run->r.batch / dc.size,
                    (long long)(run->r.batch + dc.size - 1) / dc.size,
                    (long long)nn_model_param_count(m), run->dtype == AD_F32 ? "f32" : "f64");
    }
    if (o.resume && run->r.epochs_done >= run->r.epochs && !quiet)
        fprintf(out, "%s has %lld epochs already; nothing to train (raise --epochs)\n", o.resume,
                (long long)run->r.epochs_done);
    for (int64_t epoch = run->r.epochs_done; epoch < run->r.epochs; epoch++) {
        epoch_result r;
        if (run_epoch(m, opt, run, &td, batcher, &dc, epoch, quiet, &r, err, sizeof err) != 0)
            goto fail;
        run->r.epochs_done = epoch + 1;
        nn_epoch_record rec = {r.loss, r.acc, r.val_loss, r.val_acc, r.seconds};
        ad_error e;
        if (nn_run_add_epoch(&run->r, &rec, &e) != 0) {
            snprintf(err, sizeof err, "%s", e.message);
            goto fail;
        }
        if (!quiet) {
            cr_progress_epoch_line(out, (int)epoch + 1, (int)run->r.epochs, r.loss, r.acc,
                                   r.val_loss, r.val_acc, r.seconds);
            if (dc.size > 1)
                fprintf(out, "  allreduce %.3f s per process (%.1f%% of the epoch)\n",
                        r.comm_seconds, r.seconds > 0 ? 100 * r.comm_seconds / r.seconds : 0.0);
        }
        if (write_epoch_files(&o, run, &dc, m, opt, err, sizeof err) != 0)
            goto fail;
    }
    if (!quiet && (o.save || o.log || o.plot)) {
        fprintf(out, "wrote");
        if (o.save)
            fprintf(out, " %s", o.save);
        if (o.log)
            fprintf(out, " %s", o.log);
        if (o.plot)
            fprintf(out, " %s", o.plot);
        fprintf(out, "\n");
    }
    if (dc.rank == 0 &&
        cr_report_test(out, m, &run->r, td.test, o.quiet, NULL, err, sizeof err) != 0)
        goto fail;
    status = 0;
    goto done;
fail:
    fflush(out);
    if (dc.size > 1)
        fprintf(stderr, "chainrule train (rank %d of %d): %s\n", dc.rank, dc.size, err);
    else
        fprintf(stderr, "chainrule train: %s\n", err);
#ifdef CR_HAVE_MPI
    if (dc.abort_all) /* the other ranks may wait in a collective */
        nn_dist_abort(&dc.job, status);
#endif
done:
    if (lock_fd >= 0)
        close(lock_fd);
    dist_end(&dc);
    io_batcher_free(batcher);
    train_data_free(&td);
    nn_optimizer_free(opt);
    nn_model_free(m);
    cr_run_finish(run);
    return status;
}
