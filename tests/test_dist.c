/* test_dist.c -- MPI data-parallel training (chainrule/dist.h).
 *
 * Plain C, not Criterion: it runs under mpirun (1, 2 and 4 ranks). Every
 * rank trains a single-process reference model on the whole global batch
 * and a replica with nn_dist_train_step on its shard; after two epochs the
 * replica must equal the reference:
 *   - on 1 rank bit for bit (the allreduce over one rank is the identity
 *     and the weight is 1);
 *   - on 2 and 4 ranks within rounding, because the batch sum is grouped
 *     by shard (f64: max |diff| / max |w| <= 1e-12, f32: <= 2e-5);
 * and the replicas must stay bit-identical to each other. 195 samples with
 * global batch 16 leave a last batch of 3 rows, so 4 ranks have shards of
 * 1, 1, 1 and 0 rows (an empty shard, unequal weights).
 * Prints the measured differences; exit status 0 when all checks pass. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/dist.h"

#define NS 195   /* samples */
#define NF 4     /* features */
#define NC 3     /* classes */
#define BATCH 16 /* global batch */
#define EPOCHS 2
#define SEED 42

static int rank_, size_;
static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", rank_, __FILE__, __LINE__,       \
                    #cond);                                                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static double xs[NS * NF];
static int ys[NS];

/* Three Gaussian blobs in 4-d, from a fixed seed. */
static void make_data(void)
{
    nn_rng r;
    nn_rng_seed(&r, 2024);
    for (int i = 0; i < NS; i++) {
        int c = (int)nn_rng_below(&r, NC);
        ys[i] = c;
        for (int j = 0; j < NF; j++)
            xs[i * NF + j] = nn_rng_normal(&r) + (j % NC == c ? 2.0 : -0.5);
    }
}

static nn_model *make_model(ad_dtype dt, uint64_t seed)
{
    int64_t widths[] = {NF, 8, NC};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    ad_error err;
    nn_model *m = nn_mlp_new(dt, 3, widths, acts, NN_LOSS_CROSS_ENTROPY, BATCH, seed, &err);
    if (!m) {
        fprintf(stderr, "rank %d: nn_mlp_new: %s\n", rank_, err.message);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return m;
}

static void gather(const int64_t *idx, int64_t n, double *x, int *y)
{
    for (int64_t i = 0; i < n; i++) {
        memcpy(x + i * NF, xs + idx[i] * NF, NF * sizeof *x);
        y[i] = ys[idx[i]];
    }
}

/* max |a - b| and max |b| over the flat parameters */
static void param_diff(nn_model *a, nn_model *b, double *maxdiff, double *maxabs)
{
    int64_t n = nn_model_param_count(a);
    double *pa = malloc((size_t)n * sizeof *pa), *pb = malloc((size_t)n * sizeof *pb);
    nn_model_get_params(a, pa, n);
    nn_model_get_params(b, pb, n);
    *maxdiff = 0;
    *maxabs = 0;
    for (int64_t i = 0; i < n; i++) {
        *maxdiff = fmax(*maxdiff, fabs(pa[i] - pb[i]));
        *maxabs = fmax(*maxabs, fabs(pb[i]));
    }
    free(pa);
    free(pb);
}

static int same_bits(nn_model *a, nn_model *b)
{
    size_t bytes = (size_t)nn_model_param_count(a) * (nn_model_dtype(a) == AD_F32 ? 4 : 8);
    return nn_model_param_count(a) == nn_model_param_count(b) &&
           memcmp(nn_model_params(a), nn_model_params(b), bytes) == 0;
}

/* Trains reference and replica for EPOCHS epochs; returns max |diff| / max |w|. */
static double run_equivalence(ad_dtype dt, nn_optim_kind kind)
{
    const char *name = nn_optim_name(kind);
    const char *dname = dt == AD_F32 ? "f32" : "f64";
    nn_model *ref = make_model(dt, SEED);
    /* a different seed on every rank: the broadcast must fix it */
    nn_model *rep = make_model(dt, SEED + 1000u * (uint64_t)rank_);
    nn_optim_config cfg = nn_optim_defaults(kind);
    if (kind == NN_OPT_SGD) {
        cfg.lr = 0.1;
        cfg.momentum = 0.9;
    } else {
        cfg.lr = 0.01;
    }
    ad_error err;
    nn_optimizer *oref = nn_optimizer_new(ref, &cfg, &err);
    nn_optimizer *orep = oref ? nn_optimizer_new(rep, &cfg, &err) : NULL;
    CHECK(oref && orep, "nn_optimizer_new: %s", err.message);

    int rc = nn_dist_broadcast_params(rep, MPI_COMM_WORLD);
    CHECK(rc == 0, "nn_dist_broadcast_params: %s", nn_model_error(rep));
    CHECK(same_bits(ref, rep), "after the broadcast the replica differs from rank 0's init");

    nn_rng shuf;
    nn_rng_seed(&shuf, 7); /* the same shuffle on every rank */
    int64_t perm[NS];
    double x[BATCH * NF];
    int y[BATCH];
    double ref_loss = 0, dist_loss[2] = {0, 0};
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        for (int64_t i = 0; i < NS; i++)
            perm[i] = i;
        nn_rng_shuffle(&shuf, perm, NS);
        for (int64_t start = 0; start < NS; start += BATCH) {
            int64_t n = NS - start < BATCH ? NS - start : BATCH;
            double l = 0;
            /* one process, whole batch */
            gather(perm + start, n, x, y);
            rc = nn_model_set_input(ref, x, n, NF) || nn_model_set_labels(ref, y, n) ||
                 nn_model_train_step(ref, oref, &l);
            CHECK(rc == 0, "reference step: %s", nn_model_error(ref));
            ref_loss += l * (double)n;
            /* this rank's shard */
            int64_t begin = 0, count = 0;
            rc = nn_dist_shard(n, rank_, size_, &begin, &count);
            CHECK(rc == 0, "nn_dist_shard: bad arguments");
            if (count > 0) {
                gather(perm + start + begin, count, x, y);
                rc = nn_model_set_input(rep, x, count, NF) || nn_model_set_labels(rep, y, count);
                CHECK(rc == 0, "set shard: %s", nn_model_error(rep));
            }
            rc = nn_dist_train_step(rep, orep, MPI_COMM_WORLD, count, n, &l);
            CHECK(rc == 0, "nn_dist_train_step: %s", nn_model_error(rep));
            CHECK((count == 0) == (l != l), "the loss of an empty shard is NaN, else a number");
            if (count > 0) {
                dist_loss[0] += l * (double)count;
                dist_loss[1] += (double)count;
            }
        }
    }
    /* the mean training loss, combined across ranks once at the end */
    rc = nn_dist_sum(dist_loss, 2, MPI_COMM_WORLD, &err);
    CHECK(rc == 0, "nn_dist_sum: %s", err.message);
    CHECK(dist_loss[1] == (double)NS * EPOCHS, "rows seen %g, want %d", dist_loss[1], NS * EPOCHS);
    double lref = ref_loss / (NS * EPOCHS), ldist = dist_loss[0] / dist_loss[1];

    double maxdiff = 0, maxabs = 0;
    param_diff(rep, ref, &maxdiff, &maxabs);
    double rel = maxdiff / maxabs;
    int eq = nn_dist_replicas_equal(rep, MPI_COMM_WORLD);
    CHECK(eq == 1, "replicas differ across ranks (%d: %s)", eq,
          eq < 0 ? nn_model_error(rep) : "different bits");
    double tol = dt == AD_F32 ? 2e-5 : 1e-12;
    if (size_ == 1)
        CHECK(same_bits(rep, ref), "one rank must be bit-identical (max diff %.3g)", maxdiff);
    CHECK(rel <= tol, "%s %s: max |diff| %.3g, max |w| %.3g, relative %.3g > %.1g", dname, name,
          maxdiff, maxabs, rel, tol);
    CHECK(fabs(lref - ldist) <= 10 * tol * fabs(lref) + 1e-12, "mean loss %.17g vs %.17g", ldist,
          lref);
    CHECK(nn_optimizer_steps(orep) == nn_optimizer_steps(oref), "step counts differ");

    double worst = rel;
    MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank_ == 0)
        printf("ranks %d  %s %-4s  %d epochs: max |w_dist - w_single| = %.3g (max |w| %.3g, "
               "relative %.3g)%s, mean loss %.9g vs %.9g\n",
               size_, dname, name, EPOCHS, maxdiff, maxabs, worst,
               same_bits(rep, ref) ? " bit-identical" : "", ldist, lref);
    nn_optimizer_free(oref);
    nn_optimizer_free(orep);
    nn_model_free(ref);
    nn_model_free(rep);
    return worst;
}

static void test_shard(void)
{
    for (int size = 1; size <= 7; size++)
        for (int64_t b = 0; b <= 50; b++) {
            int64_t next = 0, lo = b, hi = 0;
            for (int r = 0; r < size; r++) {
                int64_t begin = -1, count = -1;
                CHECK(nn_dist_shard(b, r, size, &begin, &count) == 0, "shard");
                CHECK(begin == next, "batch %lld size %d rank %d begins at %lld", (long long)b,
                      size, r, (long long)begin);
                next = begin + count;
                lo = count < lo ? count : lo;
                hi = count > hi ? count : hi;
            }
            CHECK(next == b && hi - lo <= 1, "shards of %lld over %d", (long long)b, size);
        }
    int64_t b, c;
    CHECK(nn_dist_shard(10, 2, 2, &b, &c) == -1, "rank out of range");
    CHECK(nn_dist_shard(10, 0, 0, &b, &c) == -1, "size 0");
    CHECK(nn_dist_shard(-1, 0, 1, &b, &c) == -1, "negative batch");
    CHECK(nn_dist_shard(10, 0, 1, NULL, &c) == -1, "NULL begin");
}

static void test_errors(void)
{
    nn_model *m = make_model(AD_F64, SEED);
    /* MPI failures come back as a status and a message, never an abort */
    int rc = nn_dist_allreduce_grads(m, MPI_COMM_NULL, 1.0);
    CHECK(rc == -1 && nn_model_errcode(m) == AD_EIO && strstr(nn_model_error(m), "MPI_COMM_NULL"),
          "%d %s", rc, nn_model_error(m));
    ad_error err;
    CHECK(nn_dist_sum(NULL, 1, MPI_COMM_NULL, &err) == -1 && err.code == AD_EINVAL,
          "sum of NULL: %s", err.message);
    double one = 1;
    CHECK(nn_dist_sum(&one, 1, MPI_COMM_NULL, &err) == -1 && err.code == AD_EIO &&
              strstr(err.message, "MPI_COMM_NULL"),
          "sum over MPI_COMM_NULL: %s", err.message);
    CHECK(nn_dist_allreduce_grads(NULL, MPI_COMM_WORLD, 1.0) == -1, "NULL model");
    CHECK(nn_dist_allreduce_grads(m, MPI_COMM_WORLD, -1.0) == -1 &&
              nn_model_errcode(m) == AD_EINVAL,
          "negative weight");
    CHECK(nn_dist_allreduce_grads(m, MPI_COMM_WORLD, NAN) == -1, "NaN weight");
    CHECK(nn_dist_broadcast_params(NULL, MPI_COMM_WORLD) == -1, "NULL model");
    CHECK(nn_dist_sum(NULL, 3, MPI_COMM_WORLD, NULL) == -1, "NULL values");
    nn_model *unbuilt = nn_model_new_sequential(AD_F64, 4, NULL);
    CHECK(nn_dist_allreduce_grads(unbuilt, MPI_COMM_WORLD, 1.0) == -1 &&
              nn_model_errcode(unbuilt) == AD_ESTATE,
          "unbuilt");
    nn_model_free(unbuilt);

    /* a rank-local failure (wrong shard size on the last rank) is reported
     * there, the others complete the step: nobody hangs */
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    nn_optimizer *o = nn_optimizer_new(m, &cfg, NULL);
    double x[2 * NF] = {0};
    int y[2] = {0, 1};
    nn_model_set_input(m, x, 2, NF);
    nn_model_set_labels(m, y, 2);
    int bad = rank_ == size_ - 1;
    rc = nn_dist_train_step(m, o, MPI_COMM_WORLD, bad ? 3 : 2, 2 * size_, NULL);
    CHECK(bad ? rc == -1 && nn_model_errcode(m) == AD_EMISMATCH : rc == 0, "local failure: %d %s",
          rc, nn_model_error(m));

    /* weight 0 zeros the buffer even when it holds NaN */
    double *g = nn_model_grads(m);
    for (int64_t i = 0; i < nn_model_param_count(m); i++)
        g[i] = rank_ == 0 ? NAN : 1.0;
    rc = nn_dist_allreduce_grads(m, MPI_COMM_WORLD, rank_ == 0 ? 0.0 : 0.5);
    CHECK(rc == 0, "%s", nn_model_error(m));
    CHECK(g[0] == 0.5 * (size_ - 1), "weighted sum %g", g[0]);

    /* optimizer state broadcast: rank 0 has taken steps, the others not */
    if (rank_ == 0) {
        nn_optimizer_reset(o);
        for (int i = 0; i < 3; i++)
            nn_model_train_step(m, o, NULL);
        nn_optimizer_set_lr(o, 0.123);
    }
    rc = nn_dist_broadcast_optimizer(o, MPI_COMM_WORLD);
    CHECK(rc == 0, "nn_dist_broadcast_optimizer: %s", nn_optimizer_error(o));
    CHECK(nn_optimizer_steps(o) == 3 && nn_optimizer_lr(o) == 0.123, "steps %lld lr %g",
          (long long)nn_optimizer_steps(o), nn_optimizer_lr(o));
    nn_optimizer_free(o);
    nn_model_free(m);

    /* the caller's error handler is left in place */
    MPI_Errhandler h;
    MPI_Comm_get_errhandler(MPI_COMM_WORLD, &h);
    CHECK(h == MPI_ERRORS_ARE_FATAL, "error handler changed");
    MPI_Errhandler_free(&h);
}

static void test_state(void)
{
    nn_model *m = nn_model_new_sequential(AD_F32, NF, NULL);
    nn_model_add_dense(m, 5, 1, NN_INIT_GLOROT_UNIFORM);
    nn_model_add_batch_norm(m, 0.1, 1e-5);
    nn_model_add_dense(m, NC, 1, NN_INIT_GLOROT_UNIFORM);
    nn_model_set_loss(m, NN_LOSS_CROSS_ENTROPY);
    CHECK(nn_model_build(m, 8, (uint64_t)rank_) == 0, "%s", nn_model_error(m));
    int64_t n = nn_model_state_count(m);
    CHECK(n == 10, "state count %lld", (long long)n);
    float *s = nn_model_state(m);
    for (int64_t i = 0; i < n; i++)
        s[i] = (float)rank_;
    CHECK(nn_dist_average_state(m, MPI_COMM_WORLD) == 0, "%s", nn_model_error(m));
    CHECK(fabsf(s[0] - 0.5f * (float)(size_ - 1)) < 1e-6f, "averaged state %g", s[0]);
    /* broadcast brings rank 0's weights and state everywhere */
    s[1] = (float)rank_;
    CHECK(nn_dist_broadcast_params(m, MPI_COMM_WORLD) == 0, "%s", nn_model_error(m));
    CHECK(s[1] == 0.0f, "state after broadcast %g", s[1]);
    CHECK(nn_dist_replicas_equal(m, MPI_COMM_WORLD) == 1, "replicas after broadcast");
    nn_model_free(m);
}

/* nn_dist_join under mpirun finds the job MPI_Init already joined;
 * nn_dist_all_ok agrees on a step that failed on one rank only. */
static void test_job(void)
{
    nn_dist_job job;
    ad_error err;
    CHECK(nn_dist_join(&job, &err) == 0, "%s", err.message);
    CHECK(job.rank == rank_ && job.size == size_ && job.initialized == 0,
          "job rank %d of %d, initialized %d", job.rank, job.size, job.initialized);
    int print = -1;
    CHECK(nn_dist_all_ok(&job, 1, &print) == 1 && print == 0, "all ok");
    int ok = size_ == 1 || rank_ != size_ - 1; /* the last rank fails */
    int all = nn_dist_all_ok(&job, ok, &print);
    CHECK(all == (size_ == 1), "one failing rank: all_ok %d", all);
    CHECK(print == !ok, "only the failing rank prints (rank %d: %d)", rank_, print);
    nn_dist_leave(&job); /* not initialized here: MPI stays up */
    int fin = 1;
    MPI_Finalized(&fin);
    CHECK(!fin, "nn_dist_leave finalized MPI it did not initialize");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    make_data();
    test_shard();
    test_errors();
    test_state();
    test_job();
    run_equivalence(AD_F64, NN_OPT_SGD);
    run_equivalence(AD_F64, NN_OPT_ADAM);
    run_equivalence(AD_F32, NN_OPT_SGD);
    run_equivalence(AD_F32, NN_OPT_ADAM);
    int total = failures;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank_ == 0)
        printf("%s: %d failed checks on %d ranks\n", total ? "FAIL" : "ok", total, size_);
    MPI_Finalize();
    return total ? 1 : 0;
}
