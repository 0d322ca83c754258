/*
 * cli/progress.h -- what `chainrule train` shows while an epoch runs.
 * Internal to the CLI.
 *
 * On a terminal a one-line bar is redrawn in place (at most ten times a
 * second) on stderr:
 *
 *     epoch 3/20 [=========>          ]  812/1719  47%  ETA 0:07  loss 0.4321  acc 0.8456
 *
 * When stderr is not a terminal (a log file, CI) nothing is written per
 * batch; the caller prints cr_progress_epoch_line() once per epoch, in both
 * cases, so logs stay short and greppable.
 *
 *     cr_progress bar;
 *     cr_progress_begin(&bar, stderr, CR_PROGRESS_AUTO, epoch, epochs, batches);
 *     for (each batch b) { ...; cr_progress_update(&bar, b + 1, mean_loss, accuracy); }
 *     cr_progress_end(&bar);                 // erases the bar
 *     cr_progress_epoch_line(stdout, epoch, epochs, loss, acc, val_loss, val_acc,
 *                            cr_progress_elapsed(&bar));
 */
#ifndef CHAINRULE_CLI_PROGRESS_H
#define CHAINRULE_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* When to draw the bar. */
typedef enum cr_progress_mode {
    CR_PROGRESS_AUTO,   /* only when the stream is a terminal */
    CR_PROGRESS_ALWAYS, /* also into files and pipes (tests) */
    CR_PROGRESS_NEVER
} cr_progress_mode;

/* State of one epoch's bar; lives on the caller's stack, owns nothing. */
typedef struct cr_progress {
    FILE *out;
    bool enabled;      /* drawing: the stream is a terminal or mode is ALWAYS */
    int epoch, epochs; /* 1-based epoch number and total, for the label */
    int64_t total;     /* batches in the epoch */
    int64_t done;      /* batches finished at the last update */
    double start;      /* cr_progress_now() at begin */
    double last_draw;  /* when the bar was last drawn; < 0 before the first */
    int columns;       /* terminal width */
    bool drawn;        /* a bar is on screen and must be erased by end */
} cr_progress;

/* Seconds from a monotonic clock (for timing epochs). */
double cr_progress_now(void);

/*
 * Starts an epoch of total batches: records the time and decides whether to
 * draw (see cr_progress_mode). The terminal width comes from the terminal,
 * else $COLUMNS, else 80.
 */
void cr_progress_begin(cr_progress *p, FILE *out, cr_progress_mode mode, int epoch, int epochs,
                       int64_t total);

/*
 * Reports that done batches are finished, with the running mean loss and
 * accuracy of the epoch so far (NaN to leave one out). Redraws at most every
 * 0.1 s, and always for the first and the last batch. Does nothing when not
 * enabled.
 */
void cr_progress_update(cr_progress *p, int64_t done, double loss, double accuracy);

/* Erases the bar (if one was drawn) so the next line starts clean. */
void cr_progress_end(cr_progress *p);

/* Seconds since cr_progress_begin. */
double cr_progress_elapsed(const cr_progress *p);

/*
 * Prints the plain per-epoch line, e.g.
 * "epoch 3/20  loss 0.4321  acc 0.8456  val_loss 0.4012  val_acc 0.8598  12.3 s";
 * the validation figures are left out when NaN.
 */
void cr_progress_epoch_line(FILE *out, int epoch, int epochs, double loss, double accuracy,
                            double val_loss, double val_accuracy, double seconds);

#endif /* CHAINRULE_CLI_PROGRESS_H */
