/* gemm.c -- the library's one matrix-product entry point, ad_gemm.
 *
 * Every matmul, linear layer and convolution computes C = op(A) op(B) (or
 * C += op(A) op(B)) here, row-major, with op transposing when its flag is set.
 * Backends, chosen when the library is built (meson option -Dgemm):
 *   openblas  cblas_sgemm / cblas_dgemm (the default dependency);
 *   onednn    dnnl_sgemm for f32 products (oneDNN has no f64 GEMM: f64 goes
 *             to OpenBLAS when present, else to the built-in kernel);
 *   auto      both when found: f32 products pick per shape by the rule in
 *             prefer_onednn (measured on the MLP's GEMM shapes, see
 *             docs/benchmarks.md), f64 goes to OpenBLAS;
 *   builtin   the portable kernel below (also what -Dblas=none gives).
 * The choice depends on the shape only, never on a timing taken at run time,
 * so a run is bit-reproducible. */
#include <string.h>

#include "graph_impl.h"

#ifdef AD_HAVE_BLAS
#include <cblas.h>
/* OpenBLAS's own API (not in cblas.h). */
void openblas_set_num_threads(int num_threads);
#endif
#ifdef AD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef AD_HAVE_OPENMP
#include <omp.h>
#endif

/* One block of a product: C (m, n), rows ldc apart, = alpha op(A) op(B) [+ C],
 * op(A) (m, k) and op(B) (k, n) stored row-major with rows lda and ldb apart
 * (a block of a larger product points into its operands). */
typedef struct {
    bool ta, tb, acc;
    double alpha;
    int64_t m, n, k, lda, ldb, ldc;
    const void *A, *B;
    void *C;
} gemm_block;

#if !defined(AD_HAVE_BLAS)
/* Built-in kernel. */
#define GEMM_KERNEL(T)                                                                             \
    static void gemm_##T(const gemm_block *g)                                                      \
    {                                                                                              \
        const int64_t M = g->m, K = g->k, N = g->n, lda = g->lda, ldb = g->ldb, ldc = g->ldc;      \
        const T *A = g->A, *B = g->B;                                                              \
        const T alpha = (T)g->alpha;                                                               \
        T *C = g->C;                                                                               \
        if (!g->acc)                                                                               \
            for (int64_t i = 0; i < M; i++)                                                        \
                memset(C + i * ldc, 0, sizeof(T) * (size_t)N);                                     \
        if (!g->tb) {                                                                              \
            /* rows of C accumulate scaled rows of B: unit stride inner loop */                    \
            for (int64_t i = 0; i < M; i++) {                                                      \
                T *c = C + i * ldc;                                                                \
                for (int64_t p = 0; p < K; p++) {                                                  \
                    const T s = alpha * (g->ta ? A[p * lda + i] : A[i * lda + p]);                 \
                    const T *b = B + p * ldb;                                                      \
                    for (int64_t j = 0; j < N; j++)                                                \
                        c[j] += s * b[j];                                                          \
                }                                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < M; i++)                                                        \
                for (int64_t j = 0; j < N; j++) {                                                  \
                    const T *b = B + j * ldb;                                                      \
                    T s = 0;                                                                       \
                    if (!g->ta) {                                                                  \
                        const T *a = A + i * lda;                                                  \
                        for (int64_t p = 0; p < K; p++)                                            \
                            s += a[p] * b[p];                                                      \
                    } else {                                                                       \
                        for (int64_t p = 0; p < K; p++)                                            \
                            s += A[p * lda + i] * b[p];                                            \
                    }                                                                              \
                    T *c = C + i * ldc + j;                                                        \
                    *c = g->acc ? *c + alpha * s : alpha * s;                                      \
                }                                                                                  \
        }                                                                                          \
    }
GEMM_KERNEL(float)
GEMM_KERNEL(double)
#endif

#ifdef AD_HAVE_DNNL
/* Where oneDNN's sgemm is faster than OpenBLAS's on this project's machines
 * (bench/sgemm_rate --compare, one thread, best of 7): every MLP shape except
 * the thin ones (N < 32 columns: the 10-class output layer and its weight
 * gradient), where OpenBLAS's small-matrix path wins by 10-50 %. Without
 * OpenBLAS every f32 product goes to oneDNN. */
static bool prefer_onednn(bool ta, bool tb, ad_mm_dims d)
{
    (void)ta;
    (void)tb;
#ifdef AD_HAVE_BLAS
    return d.n >= 32;
#else
    (void)d;
    return true;
#endif
}
#endif

/* Threads asked for with ad_set_threads; 0 until it is called. */
int ad_threads_requested = 0;
#ifdef AD_HAVE_OPENMP
_Thread_local bool ad_in_group = false;
/* the OpenMP team was sized by ad_set_threads (omp_set_num_threads) */
static bool omp_team_set;
#endif

#ifdef AD_HAVE_DNNL
/* oneDNN's sgemm runs on an OpenMP team as wide as the machine unless the
 * thread count was set. Its idle threads spin: on a busy machine (parallel
 * test runs, other jobs) they take the CPU from the thread doing the work —
 * measured 30 steps of the LSTM character model at 167 s instead of 0.8 s.
 * So oneDNN is used once ad_set_threads chose the team, or when it is the
 * only fast backend. */
static bool onednn_allowed(void)
{
#ifdef AD_HAVE_BLAS
#ifdef AD_HAVE_OPENMP
    /* oneDNN's team is the OpenMP runtime's: used once its size was set */
    return ad_threads_requested > 0 && omp_team_set;
#else
    return ad_threads_requested > 0;
#endif
#else
    return true;
#endif
}
#endif

/* One block on the calling thread. The backends run single-threaded once
 * ad_set_threads was called (see there), so a block's every element is one
 * dot product in the order of k, the same whichever block it falls in. */
static void gemm_run(ad_dtype dt, const gemm_block *g)
{
#ifdef AD_HAVE_DNNL
    ad_mm_dims d = {g->m, g->k, g->n};
    if (dt == AD_F32 && onednn_allowed() && prefer_onednn(g->ta, g->tb, d) &&
        dnnl_sgemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k, (float)g->alpha, g->A,
                   g->lda, g->B, g->ldb, g->acc ? 1.0f : 0.0f, g->C, g->ldc) == dnnl_success)
        return; /* on failure (out of memory) the next backend computes it */
#endif
#ifdef AD_HAVE_BLAS
    const enum CBLAS_TRANSPOSE ta = g->ta ? CblasTrans : CblasNoTrans,
                               tb = g->tb ? CblasTrans : CblasNoTrans;
    const int M = (int)g->m, N = (int)g->n, K = (int)g->k;
    if (dt == AD_F32)
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, (float)g->alpha, g->A, (int)g->lda, g->B,
                    (int)g->ldb, g->acc ? 1.0f : 0.0f, g->C, (int)g->ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, g->alpha, g->A, (int)g->lda, g->B, (int)g->ldb,
                    g->acc ? 1.0 : 0.0, g->C, (int)g->ldc);
#else
    if (dt == AD_F32)
        gemm_float(g);
    else
        gemm_double(g);
#endif
}

#ifdef AD_HAVE_OPENMP
/* The split rule's thresholds (see gemm_split): at least 2^17
 * multiply-adds (about 1 µs on one core; the MLP's 256 x 10 products at
 * batch 256, 2.6·10^5, took 6-7 µs split on two threads against 9-10 µs on
 * one, best per step), and at least 64 rows (else 64 columns) per thread
 * (its 100 x 10 weight gradient split as 48 + 52 rows was slower). */
#define GEMM_SPLIT_MIN_MACS 131072.0
#define GEMM_SPLIT_ROWS 64
#define GEMM_SPLIT_COLS 64
/* Blocks start at multiples of these rows or columns of C: whole register
 * tiles of the backends' kernels (both are column-major inside: a row-major
 * C's columns are their 16-float vectors, its rows their 4- or 8-wide
 * unroll), small enough to keep the blocks even (784 rows: 392 + 392). */
#define GEMM_SPLIT_ALIGN_ROWS 8
#define GEMM_SPLIT_ALIGN_COLS 16

/* How a product is split over t > 1 threads: 'r' (blocks of rows of C), 'c'
 * (blocks of columns) or 0 (one thread computes it). Never over k, so every
 * element is summed by one thread in the order one thread would use: the
 * result is the same for any thread count. The rule is measured with
 * bench/sgemm_rate (SGEMM_THREADS=2; docs/benchmarks.md, "Two threads"). */
static char gemm_split(ad_mm_dims d, int t)
{
    /* a block's work must pay for waking a thread (a few microseconds) */
    if ((double)d.m * (double)d.n * (double)d.k < GEMM_SPLIT_MIN_MACS)
        return 0;
    if (d.m >= (int64_t)t * GEMM_SPLIT_ROWS)
        return 'r';
    if (d.n >= (int64_t)t * GEMM_SPLIT_COLS)
        return 'c';
    return 0;
}
#endif

void ad_gemm(ad_dtype dt, bool ta, bool tb, bool acc, ad_mm_dims d, const void *A, const void *B,
             void *C)
{
    ad_gemm_rows(dt, ta, tb, 1.0, acc, d, A, B, C, NULL);
}

/* The hook's pre or post pass over rows [lo, hi), if it has one. */
static void run_hook(const ad_gemm_hook *h, bool post, int64_t lo, int64_t hi)
{
    void (*fn)(void *, int64_t, int64_t) = !h ? NULL : post ? h->post : h->pre;
    if (fn && hi > lo)
        fn(h->ctx, lo, hi);
}

void ad_gemm_rows(ad_dtype dt, bool ta, bool tb, double alpha, bool acc, ad_mm_dims d,
                  const void *A, const void *B, void *C, const ad_gemm_hook *hook)
{
    const size_t es = dt == AD_F32 ? sizeof(float) : sizeof(double);
    if (d.m == 0 || d.n == 0)
        return; /* rows of no element: nothing for the hook either */
    if (d.k == 0) {
        run_hook(hook, false, 0, d.m);
        if (!acc)
            memset(C, 0, es * (size_t)(d.m * d.n));
        run_hook(hook, true, 0, d.m);
        return;
    }
    const gemm_block whole = {ta,  tb, acc, alpha, d.m, d.n, d.k, ta ? d.m : d.k, tb ? d.k : d.n,
                              d.n, A,  B,   C};
#ifdef AD_HAVE_OPENMP
    const int t = ad_threads_requested;
    const char split = AD_SPLIT_HERE() ? gemm_split(d, t) : 0;
    if (split) {
        if (split == 'c')
            run_hook(hook, false, 0, d.m);
        const int64_t len = split == 'r' ? d.m : d.n;
        const int64_t align = split == 'r' ? GEMM_SPLIT_ALIGN_ROWS : GEMM_SPLIT_ALIGN_COLS;
        AD_OMP_TEAM(t);
#pragma omp parallel
        {
            /* block i of nt (the team may be smaller than asked for):
               [len·i/nt, len·(i+1)/nt) with inner bounds rounded down to
               whole tiles */
            const int i = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t lo = len * i / nt / align * align;
            const int64_t hi = i == nt - 1 ? len : len * (i + 1) / nt / align * align;
            gemm_block g = whole;
            if (split == 'r') {
                g.m = hi - lo;
                g.A = (const char *)A + es * (size_t)(ta ? lo : lo * whole.lda);
                g.C = (char *)C + es * (size_t)(lo * whole.ldc);
            } else {
                g.n = hi - lo;
                g.B = (const char *)B + es * (size_t)(tb ? lo * whole.ldb : lo);
                g.C = (char *)C + es * (size_t)lo;
            }
            /* by rows, the hook's passes over this thread's rows run here,
               unsplit (ad_in_group), while the block is in this core's cache */
            ad_in_group = true;
            if (split == 'r')
                run_hook(hook, false, lo, hi);
            if (hi > lo)
                gemm_run(dt, &g);
            if (split == 'r')
                run_hook(hook, true, lo, hi);
            ad_in_group = false;
        }
        AD_OMP_TEAM_END();
        if (split == 'c')
            run_hook(hook, true, 0, d.m);
        return;
    }
#endif
    run_hook(hook, false, 0, d.m);
    gemm_run(dt, &whole);
    run_hook(hook, true, 0, d.m);
}

const char *ad_gemm_backend(void)
{
#if defined(AD_HAVE_DNNL) && defined(AD_HAVE_BLAS)
    return "onednn+openblas";
#elif defined(AD_HAVE_DNNL)
    return "onednn";
#elif defined(AD_HAVE_BLAS)
    return "openblas";
#else
    return "builtin";
#endif
}

void ad_set_threads(int threads)
{
    if (threads < 1)
        return;
    ad_threads_requested = threads;
#ifdef AD_HAVE_OPENMP
    /* The library splits products and kernels over its own OpenMP regions
     * (AD_OMP_TEAM(ad_threads_requested)); the backends run on one thread
     * each, so no product's sum is cut along k by a backend's own threading
     * and results do not depend on the thread count. oneDNN's sgemm sizes
     * its team from the OpenMP default, set to 1 here (inside the library's
     * regions it runs on one thread anyway). */
#ifdef AD_HAVE_BLAS
    openblas_set_num_threads(1);
#endif
#ifdef KMP_VERSION_MAJOR
    /* LLVM's libomp (clang builds): one thread never enters a parallel region
     * (AD_FOR_ELEMENTS checks ad_threads_requested), so the runtime is left
     * unstarted; libomp registers itself in a /dev/shm file when it starts,
     * which died by SIGBUS under a small file-size limit (ulimit -f). */
    if (threads > 1 || omp_team_set) {
        omp_set_num_threads(1);
        omp_team_set = true;
    }
#else
    /* GNU libgomp: also the team oneDNN's sgemm runs on (Debian's libdnnl
     * uses libgomp), so it is set for one thread too */
    omp_set_num_threads(1);
    omp_team_set = true;
#endif
#elif defined(AD_HAVE_BLAS)
    openblas_set_num_threads(threads); /* no OpenMP: OpenBLAS threads itself */
#endif
}
