/* fit.c -- the training loop over a data set: epochs of mini-batches from a
 * batcher, optionally one shard of every batch per process with a hook that
 * averages the gradients (data-parallel), and the finiteness checks a
 * training run makes before it saves anything. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_impl.h"

int64_t nn_model_nonfinite_params(nn_model *m)
{
    if (!m)
        return -1;
    const void *p = nn_model_params(m);
    int64_t n = nn_model_param_count(m), bad = 0;
    if (!p || n <= 0)
        return 0;
    AD_DISPATCH_DTYPE(nn_model_dtype(m), {
        const T *v = p;
        for (int64_t i = 0; i < n; i++)
            bad += !isfinite(v[i]);
    });
    return bad;
}

void nn_shard_rows(int64_t n, int rank, int size, int64_t *begin, int64_t *count)
{
    int64_t base = n / size, extra = n % size;
    *count = base + (rank < extra ? 1 : 0);
    *begin = rank * base + (rank < extra ? rank : extra);
}

int nn_train_epoch(nn_model *m, nn_optimizer *opt, io_batcher *b, uint64_t epoch,
                   const nn_epoch_options *options, nn_epoch_stats *stats)
{
    const char *fn = "nn_train_epoch";
    if (!m)
        return -1;
    int rc = nn_model_check_optimizer(m, opt, fn);
    if (rc)
        return rc;
    if (!b || !stats)
        return nn_model_fail(m, AD_EINVAL, "%s: %s is NULL", fn, !b ? "batcher" : "stats");
    nn_epoch_options o = {0, 1, NULL, NULL, NULL};
    if (options)
        o = *options;
    if (o.size < 1)
        o.size = 1;
    if (o.rank < 0 || o.rank >= o.size)
        return nn_model_fail(m, AD_EINVAL, "%s: rank %d is not in [0, %d)", fn, o.rank, o.size);
    /* the step inside the backward pass when no hook reads the gradients */
    const bool fused = nn_optimizer_fused(opt) && !o.after_backward && o.size == 1;
    memset(stats, 0, sizeof *stats);
    stats->failed_batch = -1;
    int64_t nbatches = io_batcher_count(b), *classes = NULL, cap = 0;
    io_batch batch;
    io_batcher_start_epoch(b, epoch);
    while (rc == 0 && io_batcher_next(b, &batch)) {
        if (!batch.y) {
            rc = nn_model_fail(m, AD_EINVAL, "%s: the data set has no labels", fn);
            break;
        }
        int64_t begin, rows, d = nn_model_in_features(m);
        nn_shard_rows(batch.size, o.rank, o.size, &begin, &rows);
        double loss = 0.0;
        int64_t ok = 0;
        if (rows > cap) {
            int64_t *p = nn_model_mem(m, classes, (size_t)cap * sizeof *classes,
                                      (size_t)rows * sizeof *classes);
            if (!p) {
                rc = nn_model_fail(m, AD_ENOMEM, "%s: out of memory", fn);
                break;
            }
            classes = p;
            cap = rows;
        }
        /* a process whose shard is empty (a last batch smaller than the
           number of processes) runs no pass and contributes zeros */
        if (rows > 0) {
            const float *x = batch.x + (size_t)begin * (size_t)d;
            const int *y = batch.y + begin;
            if ((rc = nn_model_input_rows(m, x, true, rows, d, true, fn)) != 0 ||
                (rc = nn_model_set_labels(m, y, rows)) != 0 || (rc = nn_model_forward(m)) != 0 ||
                (rc = nn_model_output_classes(m, classes)) != 0 ||
                (!fused && (rc = nn_model_backward(m)) != 0))
                break;
            loss = nn_model_loss_value(m);
            for (int64_t r = 0; r < rows; r++)
                ok += classes[r] == y[r];
        }
        if (o.after_backward && (rc = o.after_backward(m, rows, batch.size, o.ctx)) != 0)
            break;
        if (isnan(loss))
            loss = NAN; /* the sign of a NaN means nothing: print "nan", never "-nan" */
        stats->loss = loss;
        if (!isfinite(loss)) {
            stats->failed_batch = batch.index;
            rc = nn_model_fail(m, AD_ESTATE,
                               "%s: training diverged in epoch %llu, batch %lld (loss %g)", fn,
                               (unsigned long long)epoch + 1, (long long)batch.index + 1, loss);
            break;
        }
        /* a fused step is the backward pass, after the loss was found finite */
        rc = fused ? nn_model_backward_step(m, opt, fn) : nn_model_apply_step(m, opt, fn);
        if (rc != 0)
            break;
        stats->loss_sum += loss * (double)rows;
        stats->correct += ok;
        stats->rows += rows;
        stats->batches++;
        if (o.after_step)
            o.after_step(stats, stats->batches, nbatches, o.ctx);
    }
    if (classes)
        nn_model_mem(m, classes, (size_t)cap * sizeof *classes, 0);
    /* the input keeps the last batch's rows, as if they had been copied */
    int rc2 = nn_model_input_end_borrow(m, fn);
    return rc ? rc : rc2;
}
