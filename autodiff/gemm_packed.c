/* gemm_packed.c -- the library's own matrix-product kernel (gemm.c chooses it).
 *
 * BLIS-style: C in tiles of R x NR (R = 6, or 4 where 6-row slivers would
 * leave a sliver of 1 or 2 rows: 32 rows are 4 + 4 x 6 + 4) computed by a
 * microkernel holding the tile in registers, from a sliver of R rows of
 * op(A) and a panel of NR columns of op(B) over a block of k (at most
 * PACK_KC). op(A) is read in place, transposed or not (a sliver reads R
 * neighbours of a row or of a column per k). op(B) is packed a panel at a
 * time (contiguous, in L1 for every sliver), with alpha folded in, unless
 * the panel is whole columns of B, not transposed, not scaled and k at most
 * PACK_B_KC, where it is read in place (bench/sgemm_rate measured both ways
 * on the MLP's shapes: a panel read in place from rows 1200 bytes apart
 * spans more lines than L1 holds, and packing a transposed op(A) cost 10 %
 * of the weight gradients' time). Edges: zero-padded packing of op(B),
 * rows of a short sliver past the end read row 0 again (their results
 * unused), and the kernel reads and writes only the tile's rows and columns
 * inside C (masked loads and stores in the AVX2 kernel).
 *
 * Every element of C is one chain c = c0 + a_0 b_0 + a_1 b_1 + ... in the
 * order of k (c0 is C's value when accumulating, else 0; each step one fused
 * multiply-add in the AVX2 kernel, a multiply then an add in the portable
 * one), whatever the blocking, the tile it falls in or the block of rows or
 * columns a thread was given: the same bits on any thread count.
 *
 * The AVX2+FMA microkernel (f32, 6 x 16: 12 ymm accumulators, A broadcast,
 * two loads of B per k; 4 x 16: 8) is compiled for that target alone, with
 * the loops over blocks inlined around it, and chosen at run time by what
 * the CPU supports; the portable microkernel serves f64, other CPUs and
 * compilers. */
#include <string.h>

#include "graph_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PACK_HAVE_AVX2 1
#include <immintrin.h>
#endif

enum {
    MR = 6,         /* rows of a tile */
    MR4 = 4,        /* rows of the narrower tile that fills edges (32 = 4 x 6 + 2 x 4) */
    NR = 16,        /* columns of a tile */
    PACK_KC = 512,  /* k of a block at most (in f32: a packed panel 32 KB) */
    PACK_B_KC = 64, /* op(B) is read in place (not transposed, whole panels) up to this k */
    /* elements of the thread's buffer: a panel of PACK_KC, or all the panels
       of a short k (k 32, the MLP's weight gradients at batch 32: n up to 512) */
    PACK_CAP = 2 * PACK_KC * NR,
    /* without the thread's buffer (its allocation failed): a smaller block
       on the stack, the same sums in the same order */
    SMALL_KC = 64,
};

bool ad_gemm_portable_only = false;
bool ad_gemm_stack_block = false;

/* One thread's packing buffer, reserved by its first product and kept (a
 * fixed size: no allocation in a training step after the first). */
#define PACK_BYTES (sizeof(double) * PACK_CAP + 64)
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
/* C (R, NR), rows ldc apart, = [C +] a b over kc: a (R, kc) with element
 * (r, p) at a[r ars + p aks], its rows from `rows` on repeating row 0 (their
 * results are not used), and b (kc, NR) with row p at b + p bks. R is 6 (12
 * accumulators: A broadcast, two loads of B per k) or 4 (8 accumulators),
 * a constant once inlined: the loops over r unroll into registers. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
kernel_rows_avx2(const int R, int64_t kc, const float *a, int64_t ars, int64_t aks, int64_t rows,
                 int64_t cols, const float *b, int64_t bks, float *c, int64_t ldc, bool load)
{
    /* an edge tile: rows and columns of C past rows and cols are neither
       read nor written (masked loads and stores) */
    const bool whole = rows == R && cols == NR;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cols), lane),
                  m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cols - 8), lane);
    int64_t o[MR];
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        o[r] = r < rows ? r * ars : 0;
        c0[r] = c1[r] = _mm256_setzero_ps();
        if (load && whole)
            c0[r] = _mm256_loadu_ps(c + r * ldc), c1[r] = _mm256_loadu_ps(c + r * ldc + 8);
        else if (load && r < rows)
            c0[r] = _mm256_maskload_ps(c + r * ldc, m0),
            c1[r] = _mm256_maskload_ps(c + r * ldc + 8, m1);
    }
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++, a += aks, b += bks) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m256 x = _mm256_broadcast_ss(a + o[r]);
            c0[r] = _mm256_fmadd_ps(x, b0, c0[r]), c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        if (whole)
            _mm256_storeu_ps(c + r * ldc, c0[r]), _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
        else if (r < rows)
            _mm256_maskstore_ps(c + r * ldc, m0, c0[r]),
                _mm256_maskstore_ps(c + r * ldc + 8, m1, c1[r]);
    }
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
kernel_avx2(int R, int64_t kc, const float *a, int64_t ars, int64_t aks, int64_t rows, int64_t cols,
            const float *b, int64_t bks, float *c, int64_t ldc, bool load)
{
    if (R == MR)
        kernel_rows_avx2(MR, kc, a, ars, aks, rows, cols, b, bks, c, ldc, load);
    else
        kernel_rows_avx2(MR4, kc, a, ars, aks, rows, cols, b, bks, c, ldc, load);
}
#endif

/* Columns [0, returned) of a panel packed from a transposed source, k
 * [0, kc rounded down to 8): dst[p w + x] = scale src[x sx + p] by 8 x 8
 * transposes in registers; the caller packs the rest. Only f32 (es 4) where
 * the AVX2 kernel runs, else 0. The same values as the caller's loop. */
static int64_t pack_transposed(const void *src, size_t es, int64_t sx, int64_t cnt, int w,
                               int64_t kc, double scale, void *dst);

#ifdef PACK_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void
transpose8_avx2(const float *src, int64_t sx, int64_t kc8, int w, float scale, float *dst)
{
    const __m256 s = _mm256_set1_ps(scale);
    for (int64_t p = 0; p < kc8; p += 8, src += 8, dst += 8 * w) {
        const __m256 r0 = _mm256_mul_ps(s, _mm256_loadu_ps(src)),
                     r1 = _mm256_mul_ps(s, _mm256_loadu_ps(src + sx)),
                     r2 = _mm256_mul_ps(s, _mm256_loadu_ps(src + 2 * sx)),
                     r3 = _mm256_mul_ps(s, _mm256_loadu_ps(src + 3 * sx)),
                     r4 = _mm256_mul_ps(s, _mm256_loadu_ps(src + 4 * sx)),
                     r5 = _mm256_mul_ps(s, _mm256_loadu_ps(src + 5 * sx)),
                     r6 = _mm256_mul_ps(s, _mm256_loadu_ps(src + 6 * sx)),
                     r7 = _mm256_mul_ps(s, _mm256_loadu_ps(src + 7 * sx));
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                     t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                     t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                     t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee),
                     u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee),
                     u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee),
                     u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
        _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(dst + w, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(dst + 2 * w, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(dst + 3 * w, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(dst + 4 * w, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(dst + 5 * w, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(dst + 6 * w, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(dst + 7 * w, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
}
#endif

static int64_t pack_transposed(const void *src, size_t es, int64_t sx, int64_t cnt, int w,
                               int64_t kc, double scale, void *dst)
{
#ifdef PACK_HAVE_AVX2
    if (es != sizeof(float) || kc < 8 || !ad_gemm_packed_avx2())
        return 0;
    const int64_t done = cnt / 8 * 8;
    for (int64_t x = 0; x < done; x += 8)
        transpose8_avx2((const float *)src + x * sx, sx, kc / 8 * 8, w, (float)scale,
                        (float *)dst + x);
    return done;
#else
    (void)src, (void)es, (void)sx, (void)cnt, (void)w, (void)kc, (void)scale, (void)dst;
    return 0;
#endif
}

/* Rows of the next sliver when rem rows are left: 6, or 4 where a 6-row
 * sliver would leave 1 or 2 rows for a last one (32 rows: 4 + 4 x 6 + 4,
 * not 5 x 6 + 2; the same rule packs A and runs the kernels). */
static int sliver_rows(int64_t rem)
{
    return rem <= MR4 || rem % MR == 1 || rem % MR == 2 ? MR4 : MR;
}

/* The packed product for element type T: the portable microkernel, the
 * packing of A and B, and the loops over blocks. */
#define GEMM_PACKED(T)                                                                             \
    static void kernel_##T(int R, int64_t kc, const T *a, int64_t ars, int64_t aks, int64_t rows,  \
                           int64_t cols, const T *b, int64_t bks, T *c, int64_t ldc, bool load)    \
    {                                                                                              \
        T t[MR][NR];                                                                               \
        int64_t o[MR];                                                                             \
        for (int r = 0; r < R; r++) {                                                              \
            o[r] = r < rows ? r * ars : 0;                                                         \
            for (int j = 0; j < NR; j++)                                                           \
                t[r][j] = load && r < rows && j < cols ? c[r * ldc + j] : 0;                       \
        }                                                                                          \
        for (int64_t p = 0; p < kc; p++, a += aks, b += bks)                                       \
            for (int r = 0; r < R; r++)                                                            \
                for (int j = 0; j < NR; j++)                                                       \
                    t[r][j] += a[o[r]] * b[j];                                                     \
        for (int64_t r = 0; r < rows; r++)                                                         \
            memcpy(c + r * ldc, t[r], sizeof(T) * (size_t)cols);                                   \
    }                                                                                              \
                                                                                                   \
    /* a panel of w (a sliver's rows or NR) by kc, k-major: element (p, x) =                       \
       scale src[p sp + x sx] for x < cnt, zero past it (either stride is 1;                       \
       scale 1 is exact) */                                                                        \
    static inline void pack_##T(const T *src, int64_t sp, int64_t sx, int64_t cnt, int w,          \
                                int64_t kc, T scale, T *dst)                                       \
    {                                                                                              \
        if (sx == 1 && cnt == w) /* whole rows along x: fixed-length, vectorized */                \
            for (int64_t p = 0; p < kc; p++)                                                       \
                for (int x = 0; x < w; x++)                                                        \
                    dst[p * w + x] = scale * src[p * sp + x];                                      \
        else if (sx == 1)                                                                          \
            for (int64_t p = 0; p < kc; p++)                                                       \
                for (int64_t x = 0; x < cnt; x++)                                                  \
                    dst[p * w + x] = scale * src[p * sp + x];                                      \
        else { /* along k is contiguous: read it in order */                                       \
            const int64_t done = pack_transposed(src, sizeof(T), sx, cnt, w, kc, scale, dst);      \
            for (int64_t x = 0; x < cnt; x++)                                                      \
                for (int64_t p = x < done ? kc / 8 * 8 : 0; p < kc; p++)                           \
                    dst[p * w + x] = scale * src[x * sx + p * sp];                                 \
        }                                                                                          \
        for (int64_t x = cnt; x < w; x++)                                                          \
            for (int64_t p = 0; p < kc; p++)                                                       \
                dst[p * w + x] = 0;                                                                \
    }                                                                                              \
                                                                                                   \
    /* columns [j0, j0 + cols) of alpha op(B), its k [p0, p0 + kc) */                              \
    static void pack_b_##T(const ad_gemm_block *g, int64_t j0, int64_t cols, int64_t p0,           \
                           int64_t kc, T *dst)                                                     \
    {                                                                                              \
        const int64_t sp = g->tb ? 1 : g->ldb, sj = g->tb ? g->ldb : 1;                            \
        pack_##T((const T *)g->B + j0 * sj + p0 * sp, sp, sj, cols, NR, kc, (T)g->alpha, dst);     \
    }

GEMM_PACKED(float)
GEMM_PACKED(double)

/* The loops over blocks for element type T, the microkernel `kernel` called
 * (inlined where it can be: the AVX2 one into a driver compiled for AVX2,
 * no call per tile when k is short), NAME's attributes ATTR. */
#define GEMM_DRIVER(NAME, T, kernel, ATTR)                                                         \
    /* blocks of at most max_kc of k; buf holds cap elements (at least                             \
       max_kc * NR), 64-byte aligned. op(A) is read where it is (both                              \
       orientations read R neighbours per k: a row's or a column's), op(B)                         \
       packed a panel of NR columns at a time (contiguous, in L1 for every                         \
       sliver) with alpha folded in, unless the panel is whole rows of B, not                      \
       scaled and k short. With k short and every panel in buf at once, a                          \
       sliver runs along all the panels (C's rows in order, each tile's load                       \
       and store its cost, not k's), else a panel down all the slivers. */                         \
    ATTR static void NAME(const ad_gemm_block *g, T *buf, int64_t cap, int64_t max_kc)             \
    {                                                                                              \
        T *C = g->C;                                                                               \
        const T *A = g->A, *B = g->B;                                                              \
        const int64_t sp = g->ta ? g->lda : 1, si = g->ta ? 1 : g->lda;                            \
        const int64_t panels = (g->n + NR - 1) / NR;                                               \
        /* blocks of k as even as they can be (784: 392 + 392) */                                  \
        const int64_t kc_even =                                                                    \
            (g->k + (g->k + max_kc - 1) / max_kc - 1) / ((g->k + max_kc - 1) / max_kc);            \
        for (int64_t p0 = 0; p0 < g->k; p0 += kc_even) {                                           \
            const int64_t kc = g->k - p0 < kc_even ? g->k - p0 : kc_even;                          \
            const bool load = g->acc || p0 > 0;                                                    \
            /* panel q: packed at buf + q kc NR (all at once) or buf (one at a time) */            \
            const bool along = kc <= PACK_B_KC && panels * kc * NR <= cap;                         \
            /* op(B) packed, else read in place where its panel is whole */                        \
            const bool packed = g->tb || kc > PACK_B_KC || g->alpha != 1;                          \
            for (int64_t q = 0; q < panels; q++) {                                                 \
                const int64_t j0 = q * NR, cols = g->n - j0 < NR ? g->n - j0 : NR;                 \
                T *pb = along ? buf + q * kc * NR : buf;                                           \
                const T *b = pb;                                                                   \
                int64_t bks = NR;                                                                  \
                if (packed || cols < NR)                                                           \
                    pack_b_##T(g, j0, cols, p0, kc, pb);                                           \
                else                                                                               \
                    b = B + p0 * g->ldb + j0, bks = g->ldb;                                        \
                if (along) /* the slivers run once every panel is packed */                        \
                    continue;                                                                      \
                for (int64_t s = 0, R; s < g->m; s += R) {                                         \
                    R = sliver_rows(g->m - s);                                                     \
                    const int64_t rows = g->m - s < R ? g->m - s : R;                              \
                    T *c = C + s * g->ldc + j0;                                                    \
                    /* the next sliver's tile of C on its way to L1 while this one                 \
                       computes */                                                                 \
                    for (int64_t r = 0; s + R + r < g->m && r < MR; r++) {                         \
                        AD_PREFETCH(c + (R + r) * g->ldc);                                         \
                        AD_PREFETCH(c + (R + r) * g->ldc + NR - 1);                                \
                    }                                                                              \
                    kernel((int)R, kc, A + s * si + p0 * sp, si, sp, rows, cols, b, bks, c,        \
                           g->ldc, load);                                                          \
                }                                                                                  \
            }                                                                                      \
            if (!along)                                                                            \
                continue;                                                                          \
            for (int64_t s = 0, R; s < g->m; s += R) {                                             \
                R = sliver_rows(g->m - s);                                                         \
                const int64_t rows = g->m - s < R ? g->m - s : R;                                  \
                for (int64_t q = 0; q < panels; q++) {                                             \
                    const int64_t j0 = q * NR, cols = g->n - j0 < NR ? g->n - j0 : NR;             \
                    const bool own = packed || cols < NR;                                          \
                    kernel((int)R, kc, A + s * si + p0 * sp, si, sp, rows, cols,                   \
                           own ? buf + q * kc * NR : B + p0 * g->ldb + j0, own ? NR : g->ldb,      \
                           C + s * g->ldc + j0, g->ldc, load);                                     \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

GEMM_DRIVER(packed_float, float, kernel_float, )
GEMM_DRIVER(packed_double, double, kernel_double, )
#ifdef PACK_HAVE_AVX2
GEMM_DRIVER(packed_avx2, float, kernel_avx2, __attribute__((target("avx2,fma"))))
#endif

void ad_gemm_packed(ad_dtype dt, const ad_gemm_block *g)
{
    if (!pack_buffer)
        pack_buffer = ad_default_alloc(NULL, NULL, 0, PACK_BYTES);
    void *buf = pack_buffer && !ad_gemm_stack_block ? aligned64(pack_buffer) : NULL;
    const int64_t kc = buf ? PACK_KC : SMALL_KC, cap = buf ? PACK_CAP : SMALL_KC * NR;
    _Alignas(64) double small[SMALL_KC * NR];
    if (!buf)
        buf = small;
    if (dt == AD_F64) {
        packed_double(g, buf, cap, kc);
        return;
    }
#ifdef PACK_HAVE_AVX2
    if (ad_gemm_packed_avx2()) {
        packed_avx2(g, buf, cap, kc);
        return;
    }
#endif
    packed_float(g, buf, cap, kc);
}
