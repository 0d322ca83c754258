/*
 * cli/train.h -- what `chainrule train`, `eval` and `predict` share
 * (internal to the CLI): the description of a run and the end-of-run report.
 *
 * A run is a classifier built from a layer list (--model, nn_model_from_spec),
 * softmax cross-entropy. Everything needed to rebuild it and to continue
 * training bit for bit is the library's training checkpoint
 * (nn_checkpoint_save: the model file with its architecture, the optimizer
 * state and the nn_run). Files: train.c (options, the training loop, the
 * lock on the checkpoint), train_report.c (confusion matrix, eval, predict).
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

/* Most hidden layers of --hidden. */
#define CR_MAX_HIDDEN 32
/* Longest --model list, terminator included. */
#define CR_SPEC_MAX 4097
/* Longest message of a failing step, terminator included. */
#define CR_ERR_MAX 768

/* Everything that defines a run: what the library's training checkpoint
 * saves (nn_run) and the options that build the model. */
typedef struct cr_run {
    const char *model; /* --model: a preset ("mlp", "cnn") or a layer list */
    int nhidden;       /* the mlp preset's hidden layers (--hidden) */
    int64_t hidden[CR_MAX_HIDDEN];
    nn_activation activation; /* of the mlp preset's hidden layers (--activation) */
    ad_dtype dtype;
    nn_optim_config optim; /* optim.lr is the base learning rate (r.lr) */
    nn_run r;              /* saved in every checkpoint */
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
/* Frees what run owns (the class names, the history). */
void cr_run_finish(cr_run *run);
/* The model of run for examples of ndim axes of shape (an image (1, H, W)
 * or rows (F)) and outputs classes: the mlp preset from run's hidden
 * widths and activation, else run->model (weights drawn from the seed).
 * NULL with a message in err: a bad --model shows the list with a caret
 * under the column at fault. */
nn_model *cr_run_build_model(const cr_run *run, int ndim, const int64_t *shape, int64_t outputs,
                             char *err, size_t errlen);
/* The optimizer of run for m (config from run->optim). NULL with a message. */
nn_optimizer *cr_run_create_optimizer(const cr_run *run, nn_model *m, char *err, size_t errlen);
/* One line describing m: "784-300-100-10, relu hidden" for a perceptron,
 * else its layer list (nn_model_spec). */
void cr_model_text(const nn_model *m, char *buf, size_t size);
/* Sets the library's thread count (ad_set_threads); 0 leaves it unset. */
void cr_set_threads(int threads);

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
int cr_report_test(FILE *out, nn_model *m, const nn_run *run, const io_dataset *ds, int quiet,
                   double *accuracy, char *err, size_t errlen);

#endif /* CHAINRULE_CLI_TRAIN_H */
