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

#if !defined(AD_HAVE_BLAS)
/* Built-in kernel: C (M, N) = op(A) op(B) [+ C]. */
#define GEMM_KERNEL(T)                                                                             \
    static void gemm_##T(bool ta, bool tb, bool acc, ad_mm_dims d, const T *A, const T *B, T *C)   \
    {                                                                                              \
        const int64_t M = d.m, K = d.k, N = d.n;                                                   \
        if (!acc)                                                                                  \
            memset(C, 0, sizeof(T) * (size_t)(M * N));                                             \
        if (!tb) {                                                                                 \
            /* rows of C accumulate scaled rows of B: unit stride inner loop */                    \
            for (int64_t i = 0; i < M; i++) {                                                      \
                T *c = C + i * N;                                                                  \
                for (int64_t p = 0; p < K; p++) {                                                  \
                    const T s = ta ? A[p * M + i] : A[i * K + p];                                  \
                    const T *b = B + p * N;                                                        \
                    for (int64_t j = 0; j < N; j++)                                                \
                        c[j] += s * b[j];                                                          \
                }                                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < M; i++)                                                        \
                for (int64_t j = 0; j < N; j++) {                                                  \
                    const T *b = B + j * K;                                                        \
                    T s = 0;                                                                       \
                    if (!ta) {                                                                     \
                        const T *a = A + i * K;                                                    \
                        for (int64_t p = 0; p < K; p++)                                            \
                            s += a[p] * b[p];                                                      \
                    } else {                                                                       \
                        for (int64_t p = 0; p < K; p++)                                            \
                            s += A[p * M + i] * b[p];                                              \
                    }                                                                              \
                    C[i * N + j] = acc ? C[i * N + j] + s : s;                                     \
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

void ad_gemm(ad_dtype dt, bool ta, bool tb, bool acc, ad_mm_dims d, const void *A, const void *B,
             void *C)
{
    const size_t es = dt == AD_F32 ? sizeof(float) : sizeof(double);
    if (d.m == 0 || d.n == 0)
        return;
    if (d.k == 0) {
        if (!acc)
            memset(C, 0, es * (size_t)(d.m * d.n));
        return;
    }
    const int64_t lda = ta ? d.m : d.k, ldb = tb ? d.k : d.n;
#ifdef AD_HAVE_DNNL
    if (dt == AD_F32 && onednn_allowed() && prefer_onednn(ta, tb, d) &&
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', d.m, d.n, d.k, 1.0f, A, lda, B, ldb,
                   acc ? 1.0f : 0.0f, C, d.n) == dnnl_success)
        return; /* on failure (out of memory) the next backend computes it */
#endif
#ifdef AD_HAVE_BLAS
    const int M = (int)d.m, N = (int)d.n, K = (int)d.k;
    if (dt == AD_F32)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, 1.0f, A, (int)lda, B, (int)ldb, acc ? 1.0f : 0.0f, C, N);
    else
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, 1.0, A, (int)lda, B, (int)ldb, acc ? 1.0 : 0.0, C, N);
#else
    (void)lda;
    (void)ldb;
    if (dt == AD_F32)
        gemm_float(ta, tb, acc, d, A, B, C);
    else
        gemm_double(ta, tb, acc, d, A, B, C);
#endif
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
#ifdef AD_HAVE_BLAS
    openblas_set_num_threads(threads);
#endif
#ifdef AD_HAVE_OPENMP
#ifdef KMP_VERSION_MAJOR
    /* LLVM's libomp (clang builds): one thread never enters a parallel region
     * (AD_FOR_ELEMENTS checks ad_threads_requested), so the runtime is left
     * unstarted; libomp registers itself in a /dev/shm file when it starts,
     * which died by SIGBUS under a small file-size limit (ulimit -f). */
    if (threads > 1 || omp_team_set) {
        omp_set_num_threads(threads);
        omp_team_set = true;
    }
#else
    /* GNU libgomp: also the team oneDNN's sgemm runs on (Debian's libdnnl
     * uses libgomp), so it is set for one thread too */
    omp_set_num_threads(threads);
    omp_team_set = true;
#endif
#endif
}
