/*
 * cli/plot.h -- the training history of `chainrule train` as an SVG chart
 * (--plot) and a CSV log (--log). Internal to the CLI.
 *
 *     cr_history h = {0};
 *     for (each epoch) {
 *         ...train, evaluate...
 *         if (cr_history_add(&h, train_loss, train_acc, val_loss, val_acc, seconds) != 0)
 *             ...out of memory...
 *         if (cr_plot_svg("run.svg", &h, "784-300-100-10, SGD 0.01", err, sizeof err) != 0 ||
 *             cr_log_csv("run.csv", &h, err, sizeof err) != 0)
 *             fprintf(stderr, "chainrule: %s\n", err);
 *     }
 *     cr_history_free(&h);
 *
 * Both files are rewritten whole (by the library's atomic writer, io_write_atomic)
 * after every epoch, so they are always complete and can be watched while
 * training runs. Numbers are printed with the C library in the "C" locale
 * (the CLI does not call setlocale), so the decimal point is always '.'.
 */
#ifndef CHAINRULE_CLI_PLOT_H
#define CHAINRULE_CLI_PLOT_H

#include <stddef.h>

/**
 * Per-epoch figures; entry i is epoch i + 1. A value that does not exist
 * (no validation set, a loss that overflowed) is NaN or infinite: it is left
 * out of the chart and written as an empty CSV field. The arrays are owned
 * by the history. Zero-initialise, then cr_history_add.
 */
typedef struct cr_history {
    size_t epochs; /* entries in each array */
    size_t capacity;
    double *train_loss; /* (epochs) mean training loss */
    double *train_acc;  /* (epochs) training accuracy in [0, 1] */
    double *val_loss;   /* (epochs) validation loss */
    double *val_acc;    /* (epochs) validation accuracy */
    double *seconds;    /* (epochs) wall time of the epoch */
} cr_history;

/** Appends one epoch. Returns 0, or -1 when out of memory (h unchanged). */
int cr_history_add(cr_history *h, double train_loss, double train_acc, double val_loss,
                   double val_acc, double seconds);

/** Frees the arrays and zeroes h. Accepts NULL. */
void cr_history_free(cr_history *h);

/**
 * Writes an SVG (960 x 420) with two panels, loss and accuracy per epoch,
 * each with axes, ticks, grid lines, axis labels and a legend giving the
 * last value of each series: training solid blue, validation dashed orange.
 * title (may be NULL) heads the picture and is XML-escaped. Returns 0, or
 * -1 with a message naming path and the reason in err (errlen bytes).
 */
int cr_plot_svg(const char *path, const cr_history *h, const char *title, char *err, size_t errlen);

/**
 * Writes the history as CSV: a header
 * "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds" and one row
 * per epoch (numbers with 6 significant digits, missing values empty).
 * Returns 0, or -1 with a message in err.
 */
int cr_log_csv(const char *path, const cr_history *h, char *err, size_t errlen);

#endif /* CHAINRULE_CLI_PLOT_H */
