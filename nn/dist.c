/* dist.c -- data-parallel training over MPI (chainrule/dist.h): parameter
 * broadcast, one gradient allreduce per step over the flat gradient buffer,
 * batch sharding. Compiled only when Meson found MPI (CR_HAVE_MPI).
 *
 * Errors never abort: every call swaps the communicator's error handler for
 * MPI_ERRORS_RETURN while it runs and restores the caller's afterwards. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/dist.h"
#include "nn_impl.h"

int nn_dist_shard(int64_t global_batch, int rank, int size, int64_t *begin, int64_t *count)
{
    if (!begin || !count || global_batch < 0 || size < 1 || rank < 0 || rank >= size)
        return -1;
    nn_shard_rows(global_batch, rank, size, begin, count);
    return 0;
}

/* ------------------------------------------------------- error handling */

/* The communicator guard: MPI initialized, comm not null, errors returned. */
/* Where a call's error goes: the model, else the optimizer, else *err. */
typedef struct {
    nn_model *m;
    const nn_optimizer *o;
    ad_error *err;
} sink;

typedef struct {
    MPI_Comm comm;
    MPI_Errhandler saved;
    int swapped;
    sink to; /* where this call reports */
} guard;

AD_PRINTF_LIKE(3, 4)
static int report(const sink *to, ad_errcode code, const char *fmt, ...)
{
    char buf[NN_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (to->m)
        return nn_model_fail(to->m, code, "%s", buf);
    if (to->o)
        return nn_optimizer_fail(to->o, code, "%s", buf);
    return ad_error_set(to->err, code, "%s", buf);
}

static int mpi_fail(const sink *to, const char *fn, const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error code %d", rc);
    return report(to, AD_EIO, "%s: %s failed: %s", fn, what, msg);
}

static int guard_enter(guard *g, MPI_Comm comm, sink to_, const char *fn)
{
    int init = 0, fin = 0;
    g->comm = comm;
    g->swapped = 0;
    g->to = to_;
    const sink *to = &g->to;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) {
        const char *why = fin ? "MPI is already finalized" : "MPI is not initialized (MPI_Init)";
        return report(to, AD_EIO, "%s: %s", fn, why);
    }
    if (comm == MPI_COMM_NULL)
        return report(to, AD_EIO, "%s: the communicator is MPI_COMM_NULL", fn);
    int rc = MPI_Comm_get_errhandler(comm, &g->saved);
    if (rc != MPI_SUCCESS)
        return mpi_fail(to, fn, "MPI_Comm_get_errhandler", rc);
    rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        MPI_Errhandler_free(&g->saved);
        return mpi_fail(to, fn, "MPI_Comm_set_errhandler", rc);
    }
    g->swapped = 1;
    return 0;
}

/* Restores the caller's handler; passes rc through. */
static int guard_leave(guard *g, int rc)
{
    if (g->swapped) {
        MPI_Comm_set_errhandler(g->comm, g->saved);
        MPI_Errhandler_free(&g->saved);
        g->swapped = 0;
    }
    return rc;
}

static int check_model(nn_model *m, const char *fn)
{
    if (!m)
        return -1;
    if (!nn_model_graph(m) || !nn_model_params(m))
        return nn_model_fail(m, AD_ESTATE, "%s: the model is not built (nn_model_build)", fn);
    return 0;
}

/* check_model, then guard_enter reporting on m. */
static int model_enter(guard *g, nn_model *m, MPI_Comm comm, const char *fn)
{
    int rc = check_model(m, fn);
    return rc ? rc : guard_enter(g, comm, (sink){m, NULL, NULL}, fn);
}

static MPI_Datatype mpi_type(ad_dtype dtype) { return dtype == AD_F32 ? MPI_FLOAT : MPI_DOUBLE; }

/* MPI counts are int: buffers above INT_MAX elements go in several calls. */
#define CHUNK ((int64_t)(INT_MAX / 2 + 1))

static int bcast_buffer(void *buf, int64_t n, ad_dtype dtype, MPI_Comm comm)
{
    size_t es = ad_dtype_bytes(dtype);
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t c = n - off < CHUNK ? n - off : CHUNK;
        int rc = MPI_Bcast((char *)buf + (size_t)off * es, (int)c, mpi_type(dtype), 0, comm);
        if (rc != MPI_SUCCESS)
            return rc;
    }
    return MPI_SUCCESS;
}

static int sum_buffer(void *buf, int64_t n, ad_dtype dtype, MPI_Comm comm)
{
    size_t es = ad_dtype_bytes(dtype);
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t c = n - off < CHUNK ? n - off : CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * es, (int)c,
                               mpi_type(dtype), MPI_SUM, comm);
        if (rc != MPI_SUCCESS)
            return rc;
    }
    return MPI_SUCCESS;
}

/* ------------------------------------------------------------ broadcast */

int nn_dist_broadcast_params(nn_model *m, MPI_Comm comm)
{
    const char *fn = "nn_dist_broadcast_params";
    guard g;
    int rc = model_enter(&g, m, comm, fn);
    if (rc)
        return rc;
    /* every rank must agree on the layout before any buffer moves, and a
     * mismatch must be reported on every rank (no rank left waiting) */
    long long mine[3] = {nn_model_param_count(m), nn_model_state_count(m),
                         (long long)nn_model_dtype(m)};
    long long lo[3], hi[3];
    if ((rc = MPI_Allreduce(mine, lo, 3, MPI_LONG_LONG, MPI_MIN, comm)) != MPI_SUCCESS ||
        (rc = MPI_Allreduce(mine, hi, 3, MPI_LONG_LONG, MPI_MAX, comm)) != MPI_SUCCESS)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
    if (memcmp(lo, hi, sizeof lo) != 0)
        return guard_leave(&g, nn_model_fail(m, AD_EMISMATCH,
                                             "%s: the replicas differ (parameters %lld..%lld, "
                                             "state %lld..%lld, dtype %lld..%lld "
                                             "across ranks)",
                                             fn, lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]));
    ad_dtype dt = nn_model_dtype(m);
    if ((rc = bcast_buffer(nn_model_params(m), nn_model_param_count(m), dt, comm)) != 0 ||
        (rc = bcast_buffer(nn_model_state(m), nn_model_state_count(m), dt, comm)) != 0)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Bcast", rc));
    m->forwarded = false; /* the weights changed */
    return guard_leave(&g, 0);
}

int nn_dist_broadcast_optimizer(nn_optimizer *opt, MPI_Comm comm)
{
    const char *fn = "nn_dist_broadcast_optimizer";
    if (!opt)
        return -1;
    guard g;
    int rc = guard_enter(&g, comm, (sink){NULL, opt, NULL}, fn);
    if (rc)
        return rc;
    size_t bytes = nn_optimizer_state_bytes(opt);
    unsigned long long mine = bytes, lo = 0, hi = 0;
    if ((rc = MPI_Allreduce(&mine, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm)) != 0 ||
        (rc = MPI_Allreduce(&mine, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm)) != 0)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
    if (lo != hi)
        return guard_leave(&g, report(&g.to, AD_EMISMATCH,
                                      "%s: the optimizers differ in size across ranks "
                                      "(%llu..%llu state bytes)",
                                      fn, lo, hi));
    unsigned char *buf = malloc(bytes ? bytes : 1);
    int ok = buf != NULL, all_ok = 0;
    /* agree on the allocation so that no rank is left inside the broadcast */
    if ((rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm)) != 0) {
        free(buf);
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
    }
    if (!all_ok) {
        free(buf);
        return guard_leave(&g, report(&g.to, AD_ENOMEM, "%s: out of memory on some rank", fn));
    }
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    int status = 0;
    if (rank == 0)
        status = nn_optimizer_save_state(opt, buf, bytes);
    for (size_t off = 0; status == 0 && off < bytes; off += (size_t)CHUNK) {
        size_t c = bytes - off < (size_t)CHUNK ? bytes - off : (size_t)CHUNK;
        if ((rc = MPI_Bcast(buf + off, (int)c, MPI_BYTE, 0, comm)) != 0)
            status = mpi_fail(&g.to, fn, "MPI_Bcast", rc);
    }
    if (status == 0 && rank != 0)
        status = nn_optimizer_load_state(opt, buf, bytes);
    free(buf);
    return guard_leave(&g, status);
}

/* ------------------------------------------------------------ gradients */

static void scale_buffer(void *buf, int64_t n, ad_dtype dtype, double w)
{
    if (w == 1.0)
        return;
    if (w == 0.0) { /* zeros whatever the buffer holds (stale values, NaN) */
        memset(buf, 0, (size_t)n * ad_dtype_bytes(dtype));
        return;
    }
    AD_DISPATCH_DTYPE(dtype, {
        T *p = buf;
        for (int64_t i = 0; i < n; i++)
            p[i] = (T)(p[i] * w);
    });
}

int nn_dist_allreduce_grads(nn_model *m, MPI_Comm comm, double weight)
{
    const char *fn = "nn_dist_allreduce_grads";
    if (m && !(weight >= 0 && isfinite(weight)))
        return nn_model_fail(m, AD_EINVAL, "%s: weight %g must be finite and >= 0", fn, weight);
    guard g;
    int rc = model_enter(&g, m, comm, fn);
    if (rc)
        return rc;
    ad_dtype dt = nn_model_dtype(m);
    int64_t n = nn_model_param_count(m);
    scale_buffer(nn_model_grads(m), n, dt, weight);
    if ((rc = sum_buffer(nn_model_grads(m), n, dt, comm)) != MPI_SUCCESS)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
    return guard_leave(&g, 0);
}

int nn_dist_train_step(nn_model *m, nn_optimizer *opt, MPI_Comm comm, int64_t local_rows,
                       int64_t global_rows, double *loss)
{
    const char *fn = "nn_dist_train_step";
    int rc = check_model(m, fn);
    if (rc || (rc = nn_model_check_optimizer(m, opt, fn)) != 0)
        return rc;
    if (loss)
        *loss = NAN;
    /* A local failure must not leave the other ranks waiting in the
     * allreduce: the rank still takes part, with zero weight, and reports. */
    int local = 0;
    if (global_rows < 1 || local_rows < 0 || local_rows > global_rows)
        local = nn_model_fail(m, AD_EMISMATCH, "%s: %lld local rows of a global batch of %lld", fn,
                              (long long)local_rows, (long long)global_rows);
    else if (local_rows > 0 && local_rows != nn_model_batch(m))
        local = nn_model_fail(m, AD_EMISMATCH,
                              "%s: %lld local rows but the input holds %lld (set the shard first)",
                              fn, (long long)local_rows, (long long)nn_model_batch(m));
    if (local == 0 && local_rows > 0) {
        local = nn_model_forward(m);
        if (local == 0 && loss)
            *loss = nn_model_loss_value(m);
        if (local == 0)
            local = nn_model_backward(m);
    }
    double w = local == 0 ? (double)local_rows / (double)global_rows : 0.0;
    char saved[NN_ERRLEN] = "";
    ad_errcode code = AD_OK;
    if (local != 0) {
        snprintf(saved, sizeof saved, "%s", nn_model_error(m));
        code = nn_model_errcode(m);
    }
    rc = nn_dist_allreduce_grads(m, comm, w);
    if (local != 0)
        return nn_model_fail(m, code, "%s", saved);
    return rc ? rc : nn_model_apply_step(m, opt, fn);
}

/* ---------------------------------------------------------------- epochs */

typedef struct {
    MPI_Comm comm;
    double seconds; /* in the allreduce */
    void (*after_step)(const nn_epoch_stats *, int64_t, int64_t, void *);
    void *ctx;
} epoch_ctx;

static int allreduce_hook(nn_model *m, int64_t local_rows, int64_t global_rows, void *ctx)
{
    epoch_ctx *e = ctx;
    double t0 = MPI_Wtime();
    int rc = nn_dist_allreduce_grads(m, e->comm, (double)local_rows / (double)global_rows);
    e->seconds += MPI_Wtime() - t0;
    return rc;
}

static void step_hook(const nn_epoch_stats *so_far, int64_t batch, int64_t batches, void *ctx)
{
    epoch_ctx *e = ctx;
    if (e->after_step)
        e->after_step(so_far, batch, batches, e->ctx);
}

int nn_dist_train_epoch(nn_model *m, nn_optimizer *opt, io_batcher *b, uint64_t epoch,
                        MPI_Comm comm,
                        void (*after_step)(const nn_epoch_stats *so_far, int64_t batch,
                                           int64_t batches, void *ctx),
                        void *ctx, nn_epoch_stats *stats, double *reduce_seconds)
{
    const char *fn = "nn_dist_train_epoch";
    int rank = 0, size = 1;
    guard g;
    int rc = model_enter(&g, m, comm, fn);
    if (rc)
        return rc;
    int mrc = MPI_Comm_rank(comm, &rank);
    if (mrc == MPI_SUCCESS)
        mrc = MPI_Comm_size(comm, &size);
    rc = guard_leave(&g, mrc == MPI_SUCCESS ? 0 : mpi_fail(&g.to, fn, "MPI_Comm_rank", mrc));
    if (rc)
        return rc;
    epoch_ctx e = {comm, 0.0, after_step, ctx};
    nn_epoch_options o = {rank, size, allreduce_hook, step_hook, &e};
    if ((rc = nn_train_epoch(m, opt, b, epoch, &o, stats)) != 0)
        return rc;
    double v[4] = {stats->loss_sum, (double)stats->correct, (double)stats->rows, e.seconds};
    ad_error err;
    if (nn_dist_sum(v, 4, comm, &err) != 0)
        return nn_model_fail(m, err.code, "%s", err.message);
    stats->loss_sum = v[0];
    stats->correct = (int64_t)v[1];
    stats->rows = (int64_t)v[2];
    if (reduce_seconds)
        *reduce_seconds = v[3] / size;
    return 0;
}

/* -------------------------------------------------------------- metrics */

int nn_dist_sum(double *values, int64_t n, MPI_Comm comm, ad_error *err)
{
    const char *fn = "nn_dist_sum";
    ad_error_ok(err);
    if (n < 0 || n > INT_MAX)
        return ad_error_set(err, AD_EINVAL, "%s: count %lld outside [0, INT_MAX]", fn,
                            (long long)n);
    if (!values && n > 0)
        return ad_error_set(err, AD_EINVAL, "%s: values is NULL", fn);
    guard g;
    int rc = guard_enter(&g, comm, (sink){NULL, NULL, err}, fn);
    if (rc)
        return rc;
    if (n > 0 && (rc = MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_SUM, comm)) !=
                     MPI_SUCCESS)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
    return guard_leave(&g, 0);
}

int nn_dist_average_state(nn_model *m, MPI_Comm comm)
{
    const char *fn = "nn_dist_average_state";
    guard g;
    int rc = model_enter(&g, m, comm, fn);
    if (rc)
        return rc;
    int size = 1;
    if ((rc = MPI_Comm_size(comm, &size)) != MPI_SUCCESS)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Comm_size", rc));
    int64_t n = nn_model_state_count(m);
    ad_dtype dt = nn_model_dtype(m);
    if (n > 0) {
        scale_buffer(nn_model_state(m), n, dt, 1.0 / size);
        if ((rc = sum_buffer(nn_model_state(m), n, dt, comm)) != MPI_SUCCESS)
            return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
        m->forwarded = false;
    }
    return guard_leave(&g, 0);
}

/* FNV-1a over the raw bytes: equal bits give equal hashes. */
static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

int nn_dist_replicas_equal(nn_model *m, MPI_Comm comm)
{
    const char *fn = "nn_dist_replicas_equal";
    guard g;
    int rc = model_enter(&g, m, comm, fn);
    if (rc)
        return rc;
    unsigned long long h = fnv1a(nn_model_params(m), (size_t)nn_model_param_count(m) *
                                                         ad_dtype_bytes(nn_model_dtype(m)));
    unsigned long long lo = 0, hi = 0;
    if ((rc = MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm)) != 0 ||
        (rc = MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm)) != 0)
        return guard_leave(&g, mpi_fail(&g.to, fn, "MPI_Allreduce", rc));
    return guard_leave(&g, lo == hi ? 1 : 0);
}

/* ------------------------------------------------------------------ jobs */

int nn_dist_join(nn_dist_job *job, ad_error *err)
{
    ad_error_ok(err);
    if (!job)
        return ad_error_set(err, AD_EINVAL, "nn_dist_join: job is NULL");
    const sink to = {NULL, NULL, err};
    job->rank = 0;
    job->size = 1;
    job->comm = MPI_COMM_NULL;
    job->initialized = 0;
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK"))
        return 0;
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        int rc = MPI_Init(NULL, NULL);
        if (rc != MPI_SUCCESS)
            return mpi_fail(&to, "nn_dist_join", "MPI_Init", rc);
        job->initialized = 1;
    }
    job->comm = MPI_COMM_WORLD;
    MPI_Comm_set_errhandler(job->comm, MPI_ERRORS_RETURN);
    int rc = MPI_Comm_rank(job->comm, &job->rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(job->comm, &job->size);
    if (rc != MPI_SUCCESS)
        return mpi_fail(&to, "nn_dist_join", "MPI_Comm_rank", rc);
    return 0;
}

void nn_dist_leave(nn_dist_job *job)
{
    if (job && job->initialized)
        MPI_Finalize();
    if (job)
        job->initialized = 0;
}

int nn_dist_all_ok(const nn_dist_job *job, int ok, int *print)
{
    ok = ok != 0;
    if (print)
        *print = !ok;
    if (!job || job->size <= 1)
        return ok;
    int v[2] = {ok, job->rank == 0 ? ok : 1};
    if (MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MIN, job->comm) != MPI_SUCCESS)
        return 0;
    if (print)
        *print = !ok && (job->rank == 0 || v[1]);
    return v[0] != 0;
}

void nn_dist_abort(const nn_dist_job *job, int status)
{
    if (job && job->size > 1)
        MPI_Abort(job->comm, status ? status : 1);
}
