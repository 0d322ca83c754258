/* gemm_packed.c -- the library's own matrix-product kernel (gemm.c chooses it).
 *
 * BLIS-style: op(A) is packed a block of rows at a time (at most PACK_MC rows
 * by PACK_KC of k, alpha folded in) into slivers of MR rows, k-major; op(B)
 * one panel of NR columns by the same k at a time; a microkernel computes an
 * MR x NR tile of C from a sliver and a panel held in registers. Transposes
 * are handled by the packing; edges by zero-padding it (a partial tile is
 * computed into a local tile and its valid part copied out).
 *
 * Every element of C is one chain c = c0 + a_0 b_0 + a_1 b_1 + ... in the
 * order of k (c0 is C's value when accumulating, else 0; each step one fused
 * multiply-add in the AVX2 kernel, a multiply then an add in the portable
 * one), whatever the blocking, the tile it falls in or the block of rows or
 * columns a thread was given: the same bits on any thread count.
 *
 * The AVX2+FMA microkernel (f32, 6 x 16: 12 ymm accumulators, A broadcast,
 * two loads of B per k) is compiled for that target alone and chosen at run
 * time by what the CPU supports; the portable microkernel serves f64, other
 * CPUs and compilers. */
#include <string.h>

#include "graph_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PACK_HAVE_AVX2 1
#include <immintrin.h>
#endif

enum {
    MR = 6,        /* rows of a tile */
    NR = 16,       /* columns of a tile */
    PACK_KC = 256, /* k of a packed block: a panel (16 KB in f32) stays in L1 */
    PACK_MC = 120, /* rows of a packed block of A (120 KB in f32, in L2) */
    /* without the thread's buffer (its allocation failed): a smaller block
       on the stack, the same sums in the same order */
    SMALL_KC = 64,
    SMALL_MC = MR,
};

bool ad_gemm_portable_only = false;

/* One thread's packing buffer, reserved by its first product and kept (a
 * fixed size: no allocation in a training step after the first). */
#define PACK_BYTES (sizeof(double) * (PACK_MC * PACK_KC + PACK_KC * NR) + 64)
static _Thread_local void *pack_buffer;

static void *aligned64(void *p) { return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

bool ad_gemm_packed_avx2(void)
{
#ifdef PACK_HAVE_AVX2
    return !ad_gemm_portable_only && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

#ifdef PACK_HAVE_AVX2
/* C (MR, NR), rows ldc apart, = [C +] a b over kc: a sliver (kc, MR) and a
 * panel (kc, NR), both k-major. */
__attribute__((target("avx2,fma"))) static void
kernel_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool load)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (load) {
        c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
        c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    for (int64_t p = 0; p < kc; p++, a += MR, b += NR) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 x = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}
#endif

/* The packed product for element type T: the portable microkernel, the
 * packing of A and B, and the loops over blocks. */
#define GEMM_PACKED(T)                                                                             \
    static void kernel_##T(int64_t kc, const T *a, const T *b, T *c, int64_t ldc, bool load)       \
    {                                                                                              \
        T t[MR][NR];                                                                               \
        for (int r = 0; r < MR; r++)                                                               \
            for (int j = 0; j < NR; j++)                                                           \
                t[r][j] = load ? c[r * ldc + j] : 0;                                               \
        for (int64_t p = 0; p < kc; p++, a += MR, b += NR)                                         \
            for (int r = 0; r < MR; r++)                                                           \
                for (int j = 0; j < NR; j++)                                                       \
                    t[r][j] += a[r] * b[j];                                                        \
        for (int r = 0; r < MR; r++)                                                               \
            memcpy(c + r * ldc, t[r], sizeof t[r]);                                                \
    }                                                                                              \
                                                                                                   \
    /* rows [i0, i0 + mc) of alpha op(A), its k [p0, p0 + kc), in slivers of                       \
       MR rows (k-major), rows past the end zero */                                                \
    static void pack_a_##T(const ad_gemm_block *g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, \
                           T *dst)                                                                 \
    {                                                                                              \
        const T *A = g->A, alpha = (T)g->alpha;                                                    \
        for (int64_t s = 0; s < mc; s += MR) {                                                     \
            const int64_t rows = mc - s < MR ? mc - s : MR;                                        \
            for (int64_t p = 0; p < kc; p++, dst += MR) {                                          \
                for (int64_t r = 0; r < rows; r++) {                                               \
                    const int64_t i = i0 + s + r, q = p0 + p;                                      \
                    dst[r] = alpha * (g->ta ? A[q * g->lda + i] : A[i * g->lda + q]);              \
                }                                                                                  \
                for (int64_t r = rows; r < MR; r++)                                                \
                    dst[r] = 0;                                                                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* columns [j0, j0 + cols) of op(B), its k [p0, p0 + kc), k-major in rows                      \
       of NR, columns past cols zero */                                                            \
    static void pack_b_##T(const ad_gemm_block *g, int64_t j0, int64_t cols, int64_t p0,           \
                           int64_t kc, T *dst)                                                     \
    {                                                                                              \
        const T *B = g->B;                                                                         \
        for (int64_t p = 0; p < kc; p++, dst += NR) {                                              \
            if (!g->tb)                                                                            \
                memcpy(dst, B + (p0 + p) * g->ldb + j0, sizeof(T) * (size_t)cols);                 \
            else                                                                                   \
                for (int64_t j = 0; j < cols; j++)                                                 \
                    dst[j] = B[(j0 + j) * g->ldb + p0 + p];                                        \
            for (int64_t j = cols; j < NR; j++)                                                    \
                dst[j] = 0;                                                                        \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* blocks of at most max_kc of k by max_mc rows; buf holds max_mc * max_kc                     \
       + max_kc * NR elements, 64-byte aligned */                                                  \
    static void packed_##T(const ad_gemm_block *g, T *buf, int64_t max_mc, int64_t max_kc,         \
                           void (*kernel)(int64_t, const T *, const T *, T *, int64_t, bool))      \
    {                                                                                              \
        T *pa = buf, *pb = buf + max_mc * max_kc, *C = g->C;                                       \
        /* blocks of rows as even as whole slivers allow */                                        \
        const int64_t nblocks = (g->m + max_mc - 1) / max_mc;                                      \
        const int64_t mc_even = ((g->m + nblocks - 1) / nblocks + MR - 1) / MR * MR;               \
        for (int64_t p0 = 0; p0 < g->k; p0 += max_kc) {                                            \
            const int64_t kc = g->k - p0 < max_kc ? g->k - p0 : max_kc;                            \
            const bool load = g->acc || p0 > 0;                                                    \
            for (int64_t i0 = 0; i0 < g->m; i0 += mc_even) {                                       \
                const int64_t mc = g->m - i0 < mc_even ? g->m - i0 : mc_even;                      \
                pack_a_##T(g, i0, mc, p0, kc, pa);                                                 \
                for (int64_t j0 = 0; j0 < g->n; j0 += NR) {                                        \
                    const int64_t cols = g->n - j0 < NR ? g->n - j0 : NR;                          \
                    pack_b_##T(g, j0, cols, p0, kc, pb);                                           \
                    for (int64_t s = 0; s < mc; s += MR) {                                         \
                        const int64_t rows = mc - s < MR ? mc - s : MR;                            \
                        T *c = C + (i0 + s) * g->ldc + j0;                                         \
                        if (rows == MR && cols == NR) {                                            \
                            kernel(kc, pa + s * kc, pb, c, g->ldc, load);                          \
                            continue;                                                              \
                        }                                                                          \
                        T t[MR * NR];                                                              \
                        if (load)                                                                  \
                            for (int64_t r = 0; r < rows; r++)                                     \
                                memcpy(t + r * NR, c + r * g->ldc, sizeof(T) * (size_t)cols);      \
                        kernel(kc, pa + s * kc, pb, t, NR, load);                                  \
                        for (int64_t r = 0; r < rows; r++)                                         \
                            memcpy(c + r * g->ldc, t + r * NR, sizeof(T) * (size_t)cols);          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
GEMM_PACKED(float)
GEMM_PACKED(double)

void ad_gemm_packed(ad_dtype dt, const ad_gemm_block *g)
{
    if (!pack_buffer)
        pack_buffer = ad_default_alloc(NULL, NULL, 0, PACK_BYTES);
    void *buf = pack_buffer ? aligned64(pack_buffer) : NULL;
    const int64_t mc = buf ? PACK_MC : SMALL_MC, kc = buf ? PACK_KC : SMALL_KC;
    _Alignas(64) double small[SMALL_MC * SMALL_KC + SMALL_KC * NR];
    if (!buf)
        buf = small;
    if (dt == AD_F64) {
        packed_double(g, buf, mc, kc, kernel_double);
        return;
    }
#ifdef PACK_HAVE_AVX2
    if (ad_gemm_packed_avx2()) {
        packed_float(g, buf, mc, kc, kernel_avx2);
        return;
    }
#endif
    packed_float(g, buf, mc, kc, kernel_float);
}
