/**
 * @file dist.h
 * @brief Data-parallel training over MPI: replicas, sharded batches, one
 * gradient allreduce per step.
 *
 * Every rank holds a full replica of the model. Each global mini-batch of
 * N rows is split into contiguous shards (nn_dist_shard); rank r runs the
 * forward and backward passes on its n_r rows, and the gradients are
 * averaged with one MPI_Allreduce over the model's flat gradient buffer
 * (nn_dist_allreduce_grads), each rank weighting its shard's mean gradient
 * by n_r / N. The result is the gradient of the mean loss over all N rows,
 * as one process would compute it on the whole batch (up to the order of
 * floating-point additions), so every rank applies the same optimizer step
 * and the replicas stay identical.
 *
 *     MPI_Init(&argc, &argv);
 *     int rank, size;
 *     MPI_Comm_rank(MPI_COMM_WORLD, &rank);
 *     MPI_Comm_size(MPI_COMM_WORLD, &size);
 *     nn_model *m = nn_mlp_new(AD_F32, 4, widths, acts, NN_LOSS_CROSS_ENTROPY, 32, 42, &err);
 *     nn_optimizer *opt = nn_optimizer_new(m, &cfg, &err);
 *     if (nn_dist_broadcast_params(m, MPI_COMM_WORLD)) { ... nn_model_error(m) ... }
 *     for (each global mini-batch of n rows, the same order on every rank) {
 *         int64_t begin, count;
 *         nn_dist_shard(n, rank, size, &begin, &count);
 *         if (count > 0) { set input and labels to rows [begin, begin + count) of the batch }
 *         if (nn_dist_train_step(m, opt, MPI_COMM_WORLD, count, n, &loss)) { ... }
 *     }
 *
 * Notes
 * - Every rank must take part in every call (they are collective), in the
 *   same order, also a rank whose shard is empty (count 0).
 * - The shuffle must be the same on every rank: seed nn_rng identically.
 * - Dropout masks come from each replica's graph generator, so with dropout
 *   the runs are valid but not identical to one process. Batch
 *   normalization uses the statistics of the local shard (like PyTorch's
 *   DistributedDataParallel without SyncBatchNorm); nn_dist_average_state
 *   averages the running statistics, e.g. before evaluating or saving.
 * - Errors never abort: while a call runs, the communicator's error handler
 *   is MPI_ERRORS_RETURN (the caller's handler is restored afterwards), and
 *   a failure returns -1 with the message where docs/errors.md puts it:
 *   nn_model_error(m) for calls on a model, nn_optimizer_error for
 *   nn_dist_broadcast_optimizer, the caller's ad_error *err otherwise; an
 *   MPI failure has the code AD_EIO and MPI's own error string. A
 *   failed collective leaves the ranks in an unknown state; the usual
 *   reaction is to print the message and MPI_Abort.
 * - Only the library is MPI-aware; this header exists when chainrule was
 *   built with MPI (meson -Dmpi=enabled, or auto and MPI found). The
 *   program calls MPI itself (MPI_Init), so it links MPI too: build it with
 *   mpicc, or add pkg-config's ompi-c (Meson: dependency('mpi', language : 'c')).
 */
#ifndef CHAINRULE_DIST_H
#define CHAINRULE_DIST_H

#include <stdint.h>

#include <mpi.h>

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The rows of a global batch of global_batch rows that rank takes out of
 * size ranks: a contiguous block [*begin, *begin + *count). The first
 * global_batch % size ranks take one row more than the others, so shards
 * differ by at most one row and together cover the batch in order; a rank
 * beyond the batch (global_batch < size) gets *count 0.
 * Returns 0, or -1 for begin or count NULL, global_batch < 0, size < 1 or
 * rank outside [0, size) (arguments only: nothing to record).
 */
AD_API int nn_dist_shard(int64_t global_batch, int rank, int size, int64_t *begin, int64_t *count);

/**
 * Copies rank 0's trainable parameters and non-trainable state (batch-norm
 * running statistics) to every other rank of comm (MPI_Bcast), so that all
 * replicas start from the same weights whatever seed they were built with.
 * Collective. Returns 0, or -1 (nn_model_error; nothing for m NULL):
 * AD_ESTATE (model not built), AD_EMISMATCH (the parameter count or dtype
 * differs between ranks) or AD_EIO (MPI).
 */
AD_API int nn_dist_broadcast_params(nn_model *m, MPI_Comm comm);

/**
 * Averages the gradients of all ranks in place: multiplies this rank's
 * flat gradient buffer by weight, then sums the buffers of all ranks with
 * ONE MPI_Allreduce (MPI_IN_PLACE, MPI_SUM, MPI_FLOAT or MPI_DOUBLE as the
 * model's dtype). weight is the share of this rank's shard in the global
 * batch, n_r / N: the buffer of every rank then holds the gradient of the
 * mean loss over the N rows even when shards are unequal. weight 0
 * contributes zeros whatever the buffer holds (a rank with an empty shard,
 * which ran no backward). Models above INT_MAX parameters are reduced in
 * several calls. Call between nn_model_backward and nn_optimizer_step (the
 * optimizer clips after the average, as one process would).
 * Collective. Returns 0, or -1 (nn_model_error): AD_ESTATE (model not
 * built), AD_EINVAL (weight negative or not finite) or AD_EIO (MPI).
 */
AD_API int nn_dist_allreduce_grads(nn_model *m, MPI_Comm comm, double weight);

/**
 * One data-parallel training step on this rank's shard, already set with
 * nn_model_set_input and nn_model_set_labels (or set_targets):
 * forward, backward, nn_dist_allreduce_grads with weight
 * local_rows / global_rows, nn_optimizer_step. With local_rows 0 the rank
 * runs no pass and contributes zeros (its input is not read).
 * local_rows must equal the current batch (nn_model_batch) when nonzero.
 * *loss (may be NULL) receives the mean loss of the local shard before the
 * step (NaN for an empty shard); combine losses across ranks with
 * nn_dist_sum, weighted by local_rows, e.g. once per epoch.
 * Collective. Returns 0 or -1 (the message in
 * nn_model_error); AD_EMISMATCH when local_rows does not
 * match the batch or exceeds global_rows. A failure on one rank only (a bad
 * shard, a graph error) still joins the allreduce with a zero contribution,
 * so the other ranks are not left waiting, and is reported on that rank,
 * which skips the optimizer step: stop the run (MPI_Abort) when it happens.
 */
AD_API int nn_dist_train_step(nn_model *m, nn_optimizer *opt, MPI_Comm comm, int64_t local_rows,
                              int64_t global_rows, double *loss);

/**
 * One data-parallel epoch: nn_train_epoch over this rank's shard of every
 * batch of b (every rank holds the same data and the same batcher, so all
 * see the same batches), averaging the gradient after each backward pass
 * with nn_dist_allreduce_grads (weight local_rows / global_rows), then
 * stats summed over the ranks (nn_dist_sum): loss_sum, correct and rows
 * are the whole epoch's. after_step (may be NULL) gets this rank's running
 * figures. *reduce_seconds (may be NULL) receives the mean time per rank
 * spent in the gradient allreduce. Collective.
 * Errors: as nn_train_epoch and AD_EIO (MPI); a failure on one rank
 * (divergence, bad data) leaves the others waiting in the next allreduce:
 * stop the run (MPI_Abort) when it happens, as `chainrule train` does.
 */
AD_API int nn_dist_train_epoch(nn_model *m, nn_optimizer *opt, io_batcher *b, uint64_t epoch,
                               MPI_Comm comm,
                               void (*after_step)(const nn_epoch_stats *so_far, int64_t batch,
                                                  int64_t batches, void *ctx),
                               void *ctx, nn_epoch_stats *stats, double *reduce_seconds);

/** The processes of a data-parallel run, as nn_dist_join found them. */
typedef struct nn_dist_job {
    int rank;        /**< this process, from 0 */
    int size;        /**< number of processes (1 without an MPI launcher) */
    MPI_Comm comm;   /**< MPI_COMM_WORLD, or MPI_COMM_NULL for a single process */
    int initialized; /**< 1 when nn_dist_join called MPI_Init (nn_dist_leave finalizes) */
} nn_dist_job;

/**
 * Joins the MPI job when an MPI launcher started this process (mpirun sets
 * OMPI_COMM_WORLD_SIZE, MPICH's hydra PMI_SIZE, Slurm/PMIx PMIX_RANK):
 * MPI_Init unless MPI is already initialized, errors returned instead of
 * fatal, rank and size of MPI_COMM_WORLD. Without a launcher the job is one
 * process (rank 0 of 1) and MPI is never touched, so a plain `chainrule
 * train` works in a build with MPI. 0, or -1 with the reason in *err (may
 * be NULL): AD_EINVAL for job NULL, AD_EIO with MPI's message.
 */
AD_API int nn_dist_join(nn_dist_job *job, ad_error *err);

/** MPI_Finalize when nn_dist_join initialized MPI; nothing otherwise. */
AD_API void nn_dist_leave(nn_dist_job *job);

/**
 * Whether every process of the job succeeded at a step that can fail on
 * some of them only (reading files, building the model): ok from each, one
 * MPI_Allreduce (MPI_MIN) when size > 1. *print (may be NULL) says whether
 * this process should print its own error: rank 0 when it failed (the
 * others most likely failed the same way), else each process that failed.
 * Collective. Returns 1 when all succeeded, 0 otherwise (also when the
 * allreduce fails).
 */
AD_API int nn_dist_all_ok(const nn_dist_job *job, int ok, int *print);

/**
 * Stops every process of a job of more than one (MPI_Abort with status),
 * e.g. when one rank failed while the others may wait in a collective;
 * returns at once for a single process.
 */
AD_API void nn_dist_abort(const nn_dist_job *job, int status);

/**
 * Sums n doubles over all ranks in place (MPI_Allreduce, MPI_SUM), for
 * metrics: e.g. {sum of loss * rows, correct predictions, rows} once per
 * epoch. Collective. Returns 0, or -1 with the reason in *err (may be
 * NULL): AD_EINVAL (values NULL with n > 0, n < 0 or above INT_MAX) or
 * AD_EIO (MPI).
 */
AD_API int nn_dist_sum(double *values, int64_t n, MPI_Comm comm, ad_error *err);

/**
 * Averages the non-trainable state (batch-norm running mean and variance)
 * over the ranks (one MPI_Allreduce). Without batch norm it does nothing
 * but still takes part in the collective. Collective. Returns 0, or -1
 * (nn_model_error): AD_ESTATE or AD_EIO (MPI).
 */
AD_API int nn_dist_average_state(nn_model *m, MPI_Comm comm);

/**
 * Copies rank 0's optimizer state (step count, learning rate, moments) to
 * every other rank (MPI_Bcast of the nn_optimizer_save_state bytes), e.g.
 * after rank 0 alone restored a checkpoint. The optimizers must have the
 * same kind, dtype and size on every rank. Collective. Returns 0, or -1
 * (nn_optimizer_error; nothing for opt NULL): AD_ENOMEM, AD_EMISMATCH or
 * AD_EINVAL (the optimizers differ) or AD_EIO (MPI).
 */
AD_API int nn_dist_broadcast_optimizer(nn_optimizer *opt, MPI_Comm comm);

/**
 * Checks that the replicas are identical: compares a 64-bit hash of the
 * raw parameter bytes across ranks (two tiny allreduces, MPI_MIN and
 * MPI_MAX). Returns 1 when every rank holds the same bits, 0 when some
 * differ, or -1 (nn_model_error: AD_ESTATE, AD_EIO). Collective. Meant for
 * tests and debugging.
 */
AD_API int nn_dist_replicas_equal(nn_model *m, MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
