/* test_bound.h -- the worst-case rounding error of a matrix product, for
 * tests/test_gemm.c (one kernel against exact sums) and tests/test_threads.c
 * (products split over threads against one thread's).
 *
 * A sum of n rounded terms computed in any order is within
 * gamma_n sum |term| of the exact sum, gamma_n = n u / (1 - n u), u the unit
 * roundoff (Higham, Accuracy and Stability of Numerical Algorithms, 3.1).
 * For C = op(A) op(B) the terms of element (i, j) are op(A)_ip op(B)_pj. */
#ifndef CHAINRULE_TEST_BOUND_H
#define CHAINRULE_TEST_BOUND_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "chainrule/autodiff.h"

/* the unit roundoff of dt: 2^-24 for f32, 2^-53 for f64 */
static inline double unit_roundoff(ad_dtype dt) { return dt == AD_F32 ? 0x1p-24 : 0x1p-53; }

/* gamma_n for unit roundoff u; n u < 1 */
static inline double rounding_gamma(int64_t n, double u)
{
    return (double)n * u / (1 - (double)n * u);
}

/* mag[i n + j] = sum_p |op(A)_ip| |op(B)_pj| for C (m, n) = op(A) op(B) with A
 * and B of dt stored row-major with rows lda and ldb apart (op(A) is (m, k),
 * stored (k, m) when ta; op(B) (k, n), stored (n, k) when tb); mag is m n
 * doubles. false without memory. */
static inline bool product_magnitudes(ad_dtype dt, bool ta, bool tb, int64_t m, int64_t n,
                                      int64_t k, const void *A, int64_t lda, const void *B,
                                      int64_t ldb, double *mag)
{
    const bool f32 = dt == AD_F32;
    double *b = malloc(sizeof *b * (size_t)(k * n > 0 ? k * n : 1)); /* |op(B)|, (k, n) */
    if (!b)
        return false;
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < n; j++) {
            const int64_t at = tb ? j * ldb + p : p * ldb + j;
            b[p * n + j] = fabs(f32 ? (double)((const float *)B)[at] : ((const double *)B)[at]);
        }
    for (int64_t i = 0; i < m; i++) {
        double *row = mag + i * n;
        for (int64_t j = 0; j < n; j++)
            row[j] = 0;
        for (int64_t p = 0; p < k; p++) {
            const int64_t at = ta ? p * lda + i : i * lda + p;
            const double a = fabs(f32 ? (double)((const float *)A)[at] : ((const double *)A)[at]);
            for (int64_t j = 0; j < n; j++)
                row[j] += a * b[p * n + j];
        }
    }
    free(b);
    return true;
}

#endif
