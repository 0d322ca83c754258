/* The library's own packed GEMM kernel (autodiff/gemm_packed.c), called
 * directly: C = alpha op(A) op(B) [+ C] against sums in long double, within
 * the worst case of any order of the sums, over shapes with edges that are
 * not whole 6 x 16 or 4 x 16 tiles, k across several 256-blocks, rows across several
 * 120-row blocks, every transpose pair, acc and alpha, operands and C inside
 * larger arrays (lda, ldb, ldc of a block), f32 and f64, the AVX2 and the
 * portable microkernel. A block of rows or of columns computed alone equals
 * the whole product's bit for bit (what gemm_split relies on), and C's
 * elements outside the block are left alone. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"
#include "test_bound.h"

typedef struct {
    int64_t m, n, k;
} shape;

static const shape shapes[] = {
    {1, 1, 1},
    {1, 1, 700},
    {6, 16, 256},
    {7, 17, 257},
    {5, 15, 3},
    {13, 33, 513},
    {2, 100, 1},
    {250, 3, 31},
    {121, 40, 300},
    {32, 300, 97},
    {245, 19, 40},
    {12, 32, 64},
    /* slivers of 4 rows (8: 4 + 4, 14: 4 + 6 + 4, 20: 6 + 6 + 4 + 4), op(B)
       read in place (k <= 64) or packed (65) */
    {8, 16, 5},
    {14, 17, 65},
    {20, 48, 64},
};

/* element (i, j) of a matrix of dt stored with rows ld apart, as long double */
static long double at(ad_dtype dt, const void *p, int64_t ld, int64_t i, int64_t j)
{
    return dt == AD_F32 ? ((const float *)p)[i * ld + j] : ((const double *)p)[i * ld + j];
}

/* a value in [-1, 1) from a counter, different for each element */
static double value(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / (double)(1ULL << 53) * 2 - 1;
}

static void *filled(ad_dtype dt, int64_t len, uint64_t *s)
{
    void *p = malloc((size_t)len * ad_dtype_bytes(dt));
    cr_assert_not_null(p);
    for (int64_t i = 0; i < len; i++) {
        if (dt == AD_F32)
            ((float *)p)[i] = (float)value(s);
        else
            ((double *)p)[i] = value(s);
    }
    return p;
}

/* One product: checks the whole against long double, then a block of rows
 * and a block of columns computed alone against the whole, bit for bit. */
static void check(ad_dtype dt, shape sh, bool ta, bool tb, bool acc, double alpha)
{
    const size_t es = ad_dtype_bytes(dt);
    const double gamma = rounding_gamma(sh.k + 3, unit_roundoff(dt));
    const int64_t m = sh.m, n = sh.n, k = sh.k;
    /* stored op(A) is (m, k), or (k, m) when ta; rows padded by 3 */
    const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const int64_t lda = ac + 3, ldb = bc + 2, ldc = n + 5;
    uint64_t s = (uint64_t)(m * 131 + n * 17 + k) * 4 + ta * 2 + tb;
    void *A = filled(dt, ar * lda, &s), *B = filled(dt, br * ldb, &s);
    void *C0 = filled(dt, m * ldc, &s), *C = malloc(es * (size_t)(m * ldc));
    void *part = malloc(es * (size_t)(m * ldc));
    cr_assert(C && part);
    memcpy(C, C0, es * (size_t)(m * ldc));
    ad_gemm_block g = {ta, tb, acc, alpha, m, n, k, lda, ldb, ldc, A, B, C};
    ad_gemm_packed(dt, &g);
    double *mag = malloc(sizeof *mag * (size_t)(m * n)); /* sum |a b| per element */
    cr_assert(mag && product_magnitudes(dt, ta, tb, m, n, k, A, lda, B, ldb, mag));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ldc; j++) {
            const long double got = at(dt, C, ldc, i, j);
            if (j >= n) { /* outside the block: untouched */
                cr_assert(got == at(dt, C0, ldc, i, j),
                          "%s (%lld,%lld,%lld) ta %d tb %d: "
                          "C(%lld, %lld) past n changed",
                          dt == AD_F32 ? "f32" : "f64", (long long)m, (long long)n, (long long)k,
                          ta, tb, (long long)i, (long long)j);
                continue;
            }
            long double sum = 0;
            for (int64_t p = 0; p < k; p++) {
                const long double a = ta ? at(dt, A, lda, p, i) : at(dt, A, lda, i, p);
                const long double b = tb ? at(dt, B, ldb, j, p) : at(dt, B, ldb, p, j);
                sum += a * b;
            }
            const long double c0 = acc ? at(dt, C0, ldc, i, j) : 0;
            const long double want = c0 + alpha * sum;
            /* alpha folded into op(B) (one rounding), k + 1 sums of rounded
               products: gamma_(k+3), and twice that for slack */
            const long double bound =
                2 * gamma * (fabsl(c0) + fabs(alpha) * mag[i * n + j]) + 1e-30L;
            cr_assert(fabsl(got - want) <= bound,
                      "%s (%lld,%lld,%lld) ta %d tb %d acc %d alpha %g: C(%lld, %lld) = %.17Lg, "
                      "want %.17Lg (bound %.3Lg)",
                      dt == AD_F32 ? "f32" : "f64", (long long)m, (long long)n, (long long)k, ta,
                      tb, acc, alpha, (long long)i, (long long)j, got, want, bound);
        }
    /* rows [lo, m) alone, then columns [lo, n) alone: C's block of rows or
       columns, A's or B's block of the operand, as gemm_split cuts them */
    for (int by_rows = 0; by_rows < 2; by_rows++) {
        const int64_t len = by_rows ? m : n, lo = len / 2 - (len > 2); /* not a tile edge */
        if (lo <= 0)
            continue;
        memcpy(part, C0, es * (size_t)(m * ldc));
        ad_gemm_block h = g;
        h.C = part;
        h.m = by_rows ? lo : m;
        h.n = by_rows ? n : lo;
        ad_gemm_packed(dt, &h); /* the first block */
        if (by_rows) {
            h.m = m - lo;
            h.A = (const char *)A + es * (size_t)(ta ? lo : lo * lda);
            h.C = (char *)part + es * (size_t)(lo * ldc);
        } else {
            h.n = n - lo;
            h.B = (const char *)B + es * (size_t)(tb ? lo * ldb : lo);
            h.C = (char *)part + es * (size_t)lo;
        }
        ad_gemm_packed(dt, &h);
        cr_assert_eq(memcmp(part, C, es * (size_t)(m * ldc)), 0,
                     "%s (%lld,%lld,%lld) ta %d tb %d acc %d: split by %s at %lld differs",
                     dt == AD_F32 ? "f32" : "f64", (long long)m, (long long)n, (long long)k, ta, tb,
                     acc, by_rows ? "rows" : "columns", (long long)lo);
    }
    free(A);
    free(B);
    free(C0);
    free(C);
    free(part);
    free(mag);
}

static void check_all(ad_dtype dt)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++)
            for (int acc = 0; acc < 2; acc++)
                check(dt, shapes[i], t & 1, t >> 1, acc, acc ? -0.375 : 1.0);
}

Test(gemm_packed, f32) { check_all(AD_F32); }

Test(gemm_packed, f64) { check_all(AD_F64); }

/* The portable microkernel, on a CPU with AVX2 too */
Test(gemm_packed, f32_portable)
{
    const bool avx2 = ad_gemm_packed_avx2();
    ad_gemm_portable_only = true;
    cr_assert_not(ad_gemm_packed_avx2());
    check_all(AD_F32);
    ad_gemm_portable_only = false;
    cr_assert_eq(ad_gemm_packed_avx2(), avx2);
}

/* The two microkernels agree within roundings (they differ only in fused
 * multiply-adds), and the AVX2 one is the one used where the CPU has it. */
Test(gemm_packed, kernels_agree)
{
    const int64_t m = 13, n = 35, k = 300;
    uint64_t s = 7;
    float *A = filled(AD_F32, m * k, &s), *B = filled(AD_F32, k * n, &s);
    float C1[13 * 35], C2[13 * 35];
    ad_gemm_block g = {false, false, false, 1.0, m, n, k, k, n, n, A, B, C1};
    ad_gemm_packed(AD_F32, &g);
    ad_gemm_portable_only = true;
    g.C = C2;
    ad_gemm_packed(AD_F32, &g);
    ad_gemm_portable_only = false;
    for (int64_t i = 0; i < m * n; i++)
        cr_assert(fabsf(C1[i] - C2[i]) <= 1e-4f, "element %lld: %g against %g", (long long)i, C1[i],
                  C2[i]);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        cr_assert(ad_gemm_packed_avx2(), "the CPU has AVX2 and FMA: the AVX2 kernel is used");
#endif
    free(A);
    free(B);
}

/* Without the thread's buffer (its allocation failed) the small block on the
 * stack (k in blocks of 64) gives the same bits, every transpose pair, acc
 * and alpha (op(B) packed and scaled). */
Test(gemm_packed, stack_block)
{
    const int64_t m = 14, n = 37, k = 300;
    uint64_t s = 11;
    float *A = filled(AD_F32, m * k, &s), *B = filled(AD_F32, k * n, &s);
    float *C0 = filled(AD_F32, m * n, &s);
    float C1[14 * 37], C2[14 * 37];
    for (int t = 0; t < 8; t++) {
        const bool ta = t & 1, tb = t & 2, acc = t & 4;
        ad_gemm_block g = {ta, tb, acc, acc ? -0.375 : 1.0, m, n, k, ta ? m : k, tb ? k : n, n,
                           A,  B,  C1};
        memcpy(C1, C0, sizeof C1);
        memcpy(C2, C0, sizeof C2);
        ad_gemm_packed(AD_F32, &g);
        ad_gemm_stack_block = true;
        g.C = C2;
        ad_gemm_packed(AD_F32, &g);
        ad_gemm_stack_block = false;
        cr_assert_eq(memcmp(C1, C2, sizeof C1), 0, "ta %d tb %d acc %d: the stack block differs",
                     ta, tb, acc);
        cr_assert(memcmp(C1, C0, sizeof C1) != 0);
    }
    free(A);
    free(B);
    free(C0);
}
