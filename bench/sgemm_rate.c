/* bench/sgemm_rate -- this machine's OpenBLAS sgemm rate on the GEMM shapes
 * of one training step of the Fashion-MNIST MLP 784-300-100-10 at batch B
 * (row-major, as chainrule calls cblas_sgemm):
 *   forward   Z1 = X H0..: (B,784)x(784,300), (B,300)x(300,100), (B,100)x(100,10)
 *   backward  dW = H^T dZ: (784,B)x(B,300), (300,B)x(B,100), (100,B)x(B,10)
 *             dH = dZ W^T: (B,100)x(100,300), (B,10)x(10,100)
 *             (no dX for the input layer: the data needs no gradient)
 * Each shape is timed alone (repeated for >= SEC s, median of 5 runs).
 * Prints one JSON line: per-shape GFLOP/s, the step's flops and time, the
 * aggregate rate and the sgemm-bound time of one epoch of EPOCH examples.
 *
 * With "conv", the GEMMs of one forward + backward of a 3x3 convolution
 * (padding 1, stride 1) at batch N as chainrule runs it, one per chunk of
 * CHUNK images (P = H·W output positions, K = 9·C, the chunk's columns side
 * by side; CHUNK = 1: one per image):
 *   forward  Y_c = W col_c:       (O,K)x(K,CHUNK·P)
 *   weights  dW += dY_c col_cᵀ:   (O,CHUNK·P)x(CHUNK·P,K)
 *   input    dcol_c = Wᵀ dY_c:    (K,O)x(O,CHUNK·P)   (only when DX is 1)
 * and the bound is the time of one step (EPOCH = 1). chainrule's chunk is
 * the fewest images that make 512 columns (autodiff/ops_conv.c, conv_chunk):
 * 1 for the CNN's 28×28 layer, 3 for its 14×14 layer.
 *
 * The backend is OpenBLAS, oneDNN's dnnl_sgemm with SGEMM_BACKEND=onednn
 * in the environment (when built with it), or the library's own packed
 * kernel (autodiff/gemm_packed.c) with SGEMM_BACKEND=builtin: bench/run and
 * docs/benchmarks.md compare them per shape.
 *
 * With SGEMM_STAT=min a shape's time is its fastest single call instead
 * (for a shared, noisy machine: docs/benchmarks.md, "The own kernel against
 * the libraries, AVX2").
 *
 * With SGEMM_THREADS=T (T >= 2, built with OpenMP) each shape is also timed
 * the ways a T-thread product can run (docs/benchmarks.md, "Two threads"):
 *   one      the backend on one thread;
 *   backend  the backend threading itself over T threads;
 *   rows     C cut into T blocks of rows (multiples of 8), each computed by
 *            the one-thread backend on its own thread of one OpenMP region;
 *   cols     the same with blocks of columns (multiples of 16);
 * as autodiff/gemm.c's ad_gemm splits a product (the per-shape rule there
 * comes from this table). "gflops" is then the best of the four.
 *
 * usage: sgemm_rate B [EPOCH=60000 [SEC=0.1]]
 *        sgemm_rate conv N C O HW DX [SEC=0.1 [CHUNK=1]] */
#include <cblas.h>
#ifdef HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#include <stdbool.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "graph_impl.h" /* ad_gemm_packed */
#ifdef HAVE_OPENMP
#include <omp.h>
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *what;
    int ta, tb, m, n, k;
} shape;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double run_seconds = 0.1;
static bool use_onednn, use_builtin;

/* OpenBLAS's own API (not in cblas.h) */
void openblas_set_num_threads(int num_threads);

/* C[m x n, row stride ldc] = op(A) op(B) */
static void sgemm_block(const shape *s, int m, int n, const float *A, int lda, const float *B,
                        int ldb, float *C, int ldc)
{
    if (use_builtin) {
        const ad_gemm_block g = {s->ta, s->tb, false, 1.0, m, n, s->k, lda, ldb, ldc, A, B, C};
        ad_gemm_packed(AD_F32, &g);
        return;
    }
#ifdef HAVE_DNNL
    if (use_onednn) {
        dnnl_sgemm(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', m, n, s->k, 1.0f, A, lda, B, ldb, 0.0f, C,
                   ldc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                m, n, s->k, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}

/* how a product runs on `threads` threads (see the header comment) */
enum { RUN_ONE, RUN_BACKEND, RUN_ROWS, RUN_COLS, RUN_WAYS };
static const char *const way_name[RUN_WAYS] = {"one", "backend", "rows", "cols"};
static int way = RUN_ONE, threads = 1;

/* sets the backend's own thread count */
static void backend_threads(int t)
{
    openblas_set_num_threads(t);
#ifdef HAVE_OPENMP
    omp_set_num_threads(t); /* oneDNN's team */
#endif
}

static void sgemm(const shape *s, const float *A, int lda, const float *B, int ldb, float *C)
{
#ifdef HAVE_OPENMP
    if (way == RUN_ROWS || way == RUN_COLS) {
        const int len = way == RUN_ROWS ? s->m : s->n;
#pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            /* block bounds at multiples of 8 rows or 16 columns, as in ad_gemm */
            const int al = way == RUN_ROWS ? 8 : 16;
            const int lo = (int)((long)len * t / nt) / al * al;
            const int hi = t == nt - 1 ? len : (int)((long)len * (t + 1) / nt) / al * al;
            if (hi > lo && way == RUN_ROWS)
                sgemm_block(s, hi - lo, s->n, s->ta ? A + lo : A + (long)lo * lda, lda, B, ldb,
                            C + (long)lo * s->n, s->n);
            else if (hi > lo)
                sgemm_block(s, s->m, hi - lo, A, lda, s->tb ? B + (long)lo * ldb : B + lo, ldb,
                            C + lo, s->n);
        }
        return;
    }
#endif
    sgemm_block(s, s->m, s->n, A, lda, B, ldb, C, s->n);
}

/* seconds per call of one shape, median of 5 runs of >= run_seconds each;
 * with best_call (SGEMM_STAT=min), the fastest single call of those runs,
 * which a shared machine's preemptions (milliseconds, longer than a call)
 * do not reach */
static bool best_call;
static double time_shape(const shape *s, float *A, float *B, float *C)
{
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    double runs[5], fastest = 1e30;
    for (int r = 0; r < 5; r++) {
        long reps = 0;
        double t0 = now(), t, prev = t0;
        do {
            sgemm(s, A, lda, B, ldb, C);
            reps++;
            const double at = now();
            fastest = at - prev < fastest ? at - prev : fastest;
            prev = at;
            t = at - t0;
        } while (t < run_seconds);
        runs[r] = t / (double)reps;
    }
    qsort(runs, 5, sizeof *runs, cmp_double);
    return best_call ? fastest : runs[2];
}

int main(int argc, char **argv)
{
    bool conv = argc > 1 && strcmp(argv[1], "conv") == 0;
    const char *backend = getenv("SGEMM_BACKEND");
    use_onednn = backend && strcmp(backend, "onednn") == 0;
    use_builtin = backend && strcmp(backend, "builtin") == 0;
    const char *stat = getenv("SGEMM_STAT");
    best_call = stat && strcmp(stat, "min") == 0;
    const char *th = getenv("SGEMM_THREADS");
    threads = th ? atoi(th) : 1;
#ifndef HAVE_OPENMP
    if (threads > 1) {
        fprintf(stderr, "sgemm_rate: built without OpenMP\n");
        return 2;
    }
#endif
    if (threads < 1)
        threads = 1;
    if (threads > 1) /* else the backend's threads are what the environment says */
        backend_threads(1);
#ifndef HAVE_DNNL
    if (use_onednn) {
        fprintf(stderr, "sgemm_rate: built without oneDNN\n");
        return 2;
    }
#endif
    int b = argc > 1 ? atoi(argv[1]) : 32;
    long epoch = argc > 2 ? atol(argv[2]) : 60000;
    int cin = 0, cout = 0, hw = 0, dx = 0, chunk = 1;
    if (conv) {
        if (argc < 7) {
            fprintf(stderr, "usage: sgemm_rate conv N C O HW DX [SEC [CHUNK]]\n");
            return 2;
        }
        b = atoi(argv[2]);
        cin = atoi(argv[3]);
        cout = atoi(argv[4]);
        hw = atoi(argv[5]);
        dx = atoi(argv[6]);
        epoch = b; /* one step */
        if (argc > 7)
            run_seconds = atof(argv[7]);
        if (argc > 8)
            chunk = atoi(argv[8]);
    } else if (argc > 3) {
        run_seconds = atof(argv[3]);
    }
    if (b < 1 || epoch < 1 || !(run_seconds > 0) ||
        (conv && (cin < 1 || cout < 1 || hw < 1 || chunk < 1 || chunk > b))) {
        fprintf(stderr, "usage: sgemm_rate B [EPOCH [SEC]]\n");
        return 2;
    }
    const int P = hw * hw, K = 9 * cin, NP = chunk * P;
    /* conv: one chunk per shape entry, counted b / chunk times below */
    const shape mlp_shapes[] = {
        {"fwd1", 0, 0, b, 300, 784}, {"fwd2", 0, 0, b, 100, 300}, {"fwd3", 0, 0, b, 10, 100},
        {"dW1", 1, 0, 784, 300, b},  {"dW2", 1, 0, 300, 100, b},  {"dW3", 1, 0, 100, 10, b},
        {"dH1", 0, 1, b, 300, 100},  {"dH2", 0, 1, b, 100, 10},
    };
    const shape conv_shapes[] = {
        {"fwd", 0, 0, cout, NP, K}, {"dW", 0, 1, cout, K, NP}, {"dX", 1, 0, K, NP, cout}};
    const shape *shapes = conv ? conv_shapes : mlp_shapes;
    const int ns = conv ? (dx ? 3 : 2) : (int)(sizeof mlp_shapes / sizeof *mlp_shapes);
    const double per_step = conv ? (double)b / chunk : 1; /* calls of each shape per step */
    size_t big = conv ? (size_t)K * NP + (size_t)cout * (K > NP ? K : NP)
                      : (size_t)784 * 300 + (size_t)b * 784;
    float *A = malloc(sizeof *A * big), *B = malloc(sizeof *B * big), *C = malloc(sizeof *C * big);
    if (!A || !B || !C)
        return 1;
    for (size_t i = 0; i < big; i++) {
        A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        C[i] = 0;
    }
    double step_flops = 0, step_time = 0;
    printf("{\"batch\": %d, \"chunk\": %d, \"backend\": \"%s\", \"threads\": %d, \"shapes\": [", b,
           chunk,
           use_onednn    ? "onednn"
           : use_builtin ? "builtin"
                         : "openblas",
           threads);
    for (int i = 0; i < ns; i++) {
        const shape *s = &shapes[i];
        double fl = 2.0 * s->m * s->n * s->k * per_step, t = 0;
        printf("%s{\"gemm\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d", i ? ", " : "", s->what, s->m,
               s->n, s->k);
        for (way = 0; way < (threads > 1 ? RUN_WAYS : 1); way++) {
            if (threads > 1)
                backend_threads(way == RUN_BACKEND ? threads : 1);
            double tw = time_shape(s, A, B, C) * per_step;
            if (threads > 1)
                printf(", \"%s\": %.2f", way_name[way], fl / tw * 1e-9);
            t = way == 0 || tw < t ? tw : t;
        }
        if (threads > 1)
            backend_threads(1);
        step_flops += fl;
        step_time += t;
        printf(", \"gflops\": %.2f}", fl / t * 1e-9);
    }
    double steps = (double)epoch / b; /* flops scale with examples */
    printf("], \"step_flops\": %.0f, \"step_time\": %.9f, \"rate_gflops\": %.3f, "
           "\"epoch_flops\": %.0f, \"epoch_bound_time\": %.6f}\n",
           step_flops, step_time, step_flops / step_time * 1e-9, step_flops * steps,
           step_time * steps);
    free(A);
    free(B);
    free(C);
    return 0;
}
