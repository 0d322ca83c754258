/* bench/fp32_peak -- this core's FP32 peak, measured: an FMA loop of
 * independent chains (12 accumulators of 8 floats with AVX2 + FMA, and of 16
 * floats with AVX-512F where the CPU has it; the faster is the peak), and a
 * 1024³ sgemm of the BLAS for reference. bench/run divides each training
 * row's FLOPs by this peak to print its time as a multiple of the peak time.
 * Prints one JSON line. Times: best of REPS runs of >= SEC seconds each.
 *
 * usage: fp32_peak [SEC=0.2 [REPS=5]] */
#include <cblas.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHAINS 12
#define ITERS 4096

/* CHAINS independent a = a * m + c chains (fused multiply-adds through the
 * intrinsics: C11 mode does not contract a * m + c by itself): no chain
 * waits for another, so the FMA units, not their latency, set the rate. */
#define FMA_LOOP(NAME, V, W, TARGET, SET1, FMADD, STORE)                                           \
    __attribute__((target(TARGET), noinline)) static float NAME(long reps)                         \
    {                                                                                              \
        V acc[CHAINS];                                                                             \
        const V m = SET1(0.999999f), c = SET1(1e-7f);                                              \
        for (int i = 0; i < CHAINS; i++)                                                           \
            acc[i] = SET1((float)i);                                                               \
        for (long r = 0; r < reps; r++)                                                            \
            for (int it = 0; it < ITERS; it++)                                                     \
                for (int i = 0; i < CHAINS; i++)                                                   \
                    acc[i] = FMADD(acc[i], m, c);                                                  \
        float out[W], s = 0;                                                                       \
        for (int i = 0; i < CHAINS; i++) {                                                         \
            STORE(out, acc[i]);                                                                    \
            for (int j = 0; j < W; j++)                                                            \
                s += out[j];                                                                       \
        }                                                                                          \
        return s;                                                                                  \
    }
FMA_LOOP(fma8, __m256, 8, "avx2,fma", _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps)
FMA_LOOP(fma16, __m512, 16, "avx512f", _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps)

static volatile float sink;

static double best_rate(float (*f)(long), int width, double sec, int reps)
{
    double best = 0;
    for (int r = 0; r < reps; r++) {
        long n = 0, step = 16;
        double t0 = now(), t;
        do {
            sink = f(step);
            n += step;
            t = now() - t0;
        } while (t < sec);
        double rate = 2.0 * CHAINS * width * ITERS * (double)n / t;
        best = rate > best ? rate : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    double sec = argc > 1 ? atof(argv[1]) : 0.2;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (!(sec > 0) || reps < 1) {
        fprintf(stderr, "usage: fp32_peak [SEC [REPS]]\n");
        return 2;
    }
    __builtin_cpu_init();
    double avx2 = 0, avx512 = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        avx2 = best_rate(fma8, 8, sec, reps);
    if (__builtin_cpu_supports("avx512f"))
        avx512 = best_rate(fma16, 16, sec, reps);
    const int N = 1024;
    float *A = malloc(sizeof *A * N * N), *B = malloc(sizeof *B * N * N),
          *C = malloc(sizeof *C * N * N);
    if (!A || !B || !C)
        return 1;
    for (long i = 0; i < (long)N * N; i++) {
        A[i] = (float)(i % 1000) / 1000.0f - 0.5f;
        B[i] = (float)(i * 7 % 1000) / 1000.0f - 0.5f;
    }
    double sg = 0;
    for (int r = 0; r < reps; r++) {
        long n = 0;
        double t0 = now(), t;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, A, N, B, N, 0.0f,
                        C, N);
            n++;
            t = now() - t0;
        } while (t < sec);
        double rate = 2.0 * N * N * N * (double)n / t;
        sg = rate > sg ? rate : sg;
    }
    free(A);
    free(B);
    free(C);
    double peak = avx2 > avx512 ? avx2 : avx512;
    printf("{\"fma_avx2_gflops\": %.2f, \"fma_avx512_gflops\": %.2f, \"peak_gflops\": %.2f, "
           "\"sgemm1024_gflops\": %.2f}\n",
           avx2 * 1e-9, avx512 * 1e-9, peak * 1e-9, sg * 1e-9);
    return 0;
}
