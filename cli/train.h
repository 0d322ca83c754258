/*
 * cli/train.h -- what `chainrule train`, `eval` and `predict` share
 * (internal to the CLI): the description of a run, its checkpoint and the
 * end-of-run report.
 *
 * A run is an MLP classifier: widths[0] inputs, hidden layers with one
 * activation, widths[nwidths - 1] logits, softmax cross-entropy. Everything
 * needed to rebuild it and to continue training bit for bit is a cr_run
 * plus the weights and the optimizer state, which is what a checkpoint holds
 * (cli/train_ckpt.c). Files: train.c (options, the training loop),
 * train_ckpt.c (safetensors checkpoints), train_report.c (confusion matrix,
 * eval, predict).
 */
#ifndef CHAINRULE_CLI_TRAIN_H
#define CHAINRULE_CLI_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <chainrule/data.h>
#include <chainrule/nn.h>

#include "plot.h"

/* Longest network: inputs, up to 32 hidden layers, outputs. */
#define CR_MAX_WIDTHS 34
/* Longest class name, terminator included (any number of classes). */
#define CR_CLASS_NAME_MAX 48
/* Longest message of a failing step, terminator included. */
#define CR_ERR_MAX 768

/* Everything that defines a run, saved in every checkpoint's metadata. */
typedef struct cr_run {
    /* architecture */
    int nwidths; /* inputs, hidden..., outputs */
    int64_t widths[CR_MAX_WIDTHS];
    nn_activation activation; /* of every hidden layer */
    ad_dtype dtype;
    /* optimizer and schedule */
    char optimizer[16];    /* "sgd", "momentum", "nesterov", "adam", ... */
    nn_optim_config optim; /* optim.lr is the base learning rate */
    nn_schedule_kind schedule;
    double gamma; /* exponential schedule */
    /* data and order */
    int64_t batch;
    uint64_t seed;     /* weights and the batch order of every epoch */
    int64_t subset;    /* training images used (0: all) */
    int64_t val;       /* validation images held out (first of the file) */
    float input_scale; /* pixels are divided by this (255) */
    /* progress */
    int64_t epochs; /* target: epochs in total */
    int64_t epochs_done;
    int nclasses;                           /* names in class_names (0: not named yet) */
    char (*class_names)[CR_CLASS_NAME_MAX]; /* (nclasses) owned, sized by the data */
    cr_history history;                     /* per-epoch figures so far (owned) */
} cr_run;

/* An option of a subcommand: name without the leading "--", the caller's
 * id (an index into its given/value arrays), whether it takes a value. */
typedef struct cr_opt {
    const char *name;
    int id;
    bool value;
} cr_opt;

/*
 * Parses argv[1..] with getopt_long against opts (ended by a NULL name; an
 * option named "help" is also -h): given[id] and value[id] (the text as
 * typed, "--lr=0.1" or "--lr 0.1") for each option seen, operands into
 * positional (at most max_positional, in order). Returns -1 to go on, or
 * the exit status after printing the usage error: "unknown option
 * '--bogus'", "option --lr needs a value", "option --quiet takes no value",
 * "unexpected argument 'extra'" (status 2).
 */
int cr_parse_options(const char *cmd, int argc, char **argv, const cr_opt *opts, bool *given,
                     const char **value, const char **positional, int max_positional,
                     int *npositional);

/* Prints "chainrule CMD: message (see 'chainrule CMD --help')"; returns 2. */
int cr_usage_error(const char *cmd, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Fills run with the defaults of Géron's chapter 10 network. */
void cr_run_defaults(cr_run *run);
/* Frees what run owns (the history, the class names). */
void cr_run_finish(cr_run *run);
/* Makes run name n classes (new names empty). 0, or -1 when out of memory. */
int cr_run_resize_classes(cr_run *run, int n);
/* Parses "a,b,c" into run's class names: any number of names of 1 to
 * CR_CLASS_NAME_MAX - 1 bytes without control characters (they are printed
 * one per line and to terminals). 0, or -1 with the reason in why. */
int cr_run_parse_class_names(cr_run *run, const char *list, char *why, size_t whylen);
/* "784-300-100-10" into buf. */
void cr_run_widths_string(const cr_run *run, char *buf, size_t size);
/* The model of run (built for run->batch rows, weights drawn from run->seed).
 * NULL with a message in err. */
nn_model *cr_run_build_model(const cr_run *run, char *err, size_t errlen);
/* The optimizer of run for m (config from run->optim). NULL with a message. */
nn_optimizer *cr_run_create_optimizer(const cr_run *run, nn_model *m, char *err, size_t errlen);
/* Sets the number of OpenBLAS threads (no effect without BLAS). */
void cr_set_threads(int threads);

/*
 * Writes the checkpoint: every parameter tensor of m under its model name
 * ("dense0.weight" (in, out), "dense0.bias" (out)), the optimizer's state
 * slots as "optimizer.<slot>" tensors, and run (architecture, optimizer
 * configuration and header, epoch, seed, history) as metadata, atomically.
 * Refuses (writing nothing) when a weight or an optimizer state value is NaN
 * or infinite: the run diverged even if its loss did not show it.
 * opt may be NULL (no optimizer state). 0, or -1 with a message in err.
 */
int cr_checkpoint_save(const char *path, const cr_run *run, nn_model *m, const nn_optimizer *opt,
                       char *err, size_t errlen);

/*
 * Reads a checkpoint written by cr_checkpoint_save: fills run (the caller
 * frees it with cr_run_finish), builds the model with the saved weights
 * (*model, the caller's) and, when opt is not NULL, the optimizer with its
 * saved state (*opt). Refuses files that are not chainrule checkpoints,
 * unverified, truncated or inconsistent, naming the problem; every field is
 * range-checked (the checksum guards against corruption, not crafted files),
 * and weights or optimizer state that are NaN or infinite are refused unless
 * allow_nonfinite.
 * 0, or -1 with a message in err (nothing left allocated).
 */
int cr_checkpoint_load(const char *path, cr_run *run, nn_model **model, nn_optimizer **opt,
                       bool allow_nonfinite, char *err, size_t errlen);

/*
 * Takes an advisory lock (fcntl) on path's lock file, path.lock beside it,
 * so that two runs cannot save the same checkpoint: the second one fails
 * with a message naming the process that holds the lock. Returns the lock's
 * descriptor (keep it open while writing path; closing it or exiting
 * releases the lock), or -1 with a message in err. The lock file is left in
 * place (removing it would race with a run taking it).
 */
int cr_checkpoint_lock(const char *path, char *err, size_t errlen);

/*
 * Classifies every example of ds with m and prints the per-class accuracy
 * table and the confusion matrix to out (unless quiet), then the last line
 * "test accuracy: 0.XXXX". *accuracy (may be NULL) receives the accuracy.
 * 0, or -1 with a message in err.
 */
int cr_report_test(FILE *out, nn_model *m, const cr_run *run, const io_dataset *ds, int quiet,
                   double *accuracy, char *err, size_t errlen);

#endif /* CHAINRULE_CLI_TRAIN_H */
