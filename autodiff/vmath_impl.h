/* vmath_impl.h -- exp, sigmoid and tanh for float written so that a loop
 * over an array vectorizes (internal, never installed). libm's expf and
 * tanhf are calls the compiler cannot vectorize; these are straight-line
 * code (selects, no branches, no calls) that GCC and clang turn into SIMD
 * code at -O2/-O3 with the baseline instruction set, under IEEE semantics
 * (no -ffast-math).
 *
 * Accuracy, measured over every float by bench/vmath_ulp against libm in
 * double (docs/benchmarks.md): exp within 1 ulp, sigmoid within 2.5 ulp,
 * tanh within 1.5 ulp of the exact value, subnormal results included. NaN
 * in gives NaN out; +-0, +-inf and subnormal inputs give what libm gives.
 * tests/test_vmath.c checks these bounds on a sample of every binade.
 *
 * double keeps libm (ad_sigmoid, ad_tanh below pick by type). */
#ifndef CHAINRULE_VMATH_IMPL_H
#define CHAINRULE_VMATH_IMPL_H

#include <math.h>
#include <stdint.h>

/* A float kernel compiled twice, for the baseline x86-64 (SSE2, 4 floats a
 * vector) and for AVX2 (8), the one the CPU runs chosen once at load time
 * (GNU ifunc). Both run the same operations in the same order with no
 * fused multiply-add, so the results are the same bits on every machine
 * (checked on 12 million inputs against SSE2 and AVX-512 builds). Kept to
 * these kernels: AVX2 copies of the binary kernels made the SSE code that
 * ran after them (libm's expf in softmax) 1.7x slower in the LSTM's step,
 * the cost of leaving the upper halves of the vector registers dirty. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#if defined(__has_attribute)
#if __has_attribute(target_clones)
#define AD_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#endif
#ifndef AD_SIMD_CLONES
#define AD_SIMD_CLONES
#endif

static inline float ad_bits_to_float(uint32_t u)
{
    union {
        uint32_t u;
        float f;
    } v = {u};
    return v.f;
}

/* 2^k for -126 <= k <= 127, from its exponent bits */
static inline float ad_pow2f(int32_t k) { return ad_bits_to_float((uint32_t)(k + 127) << 23); }

/* e^x. x = k ln2 + r with k an integer and |r| <= ln2/2 (ln2 in two
 * parts, the first with few enough bits that k ln2_hi is exact); e^r =
 * 1 + r + r^2 q(r), q a degree-4 fit of relative error 0.05 ulp; then
 * e^x = e^r 2^k, with 2^k applied in two halves so that results down in
 * the subnormals are rounded once and overflow gives inf. */
static inline float ad_vexpf(float x)
{
    /* clamp where the result is already 0 or inf; NaN goes to the low end
     * (the comparison is false) and is put back at the end */
    float xc = x >= -104.0f ? x : -104.0f;
    xc = xc <= 89.0f ? xc : 89.0f;
    /* k = round(x / ln2): adding 1.5 * 2^23 rounds to an integer */
    const float shifter = 0x1.8p23f;
    float kf = (xc * 0x1.715476p+0f + shifter) - shifter;
    float r = (xc - kf * 0x1.63p-1f) - kf * -0x1.bd0106p-13f; /* ln2 = 0x1.63p-1 + ... */
    float q = 0x1.6a24p-10f;
    q = q * r + 0x1.123ap-7f;
    q = q * r + 0x1.5558f2p-5f;
    q = q * r + 0x1.555492p-3f;
    q = q * r + 0x1.fffffcp-2f;
    float p = 1.0f + (r + r * r * q);
    int32_t k = (int32_t)kf, k1 = k / 2;
    float y = p * ad_pow2f(k1) * ad_pow2f(k - k1);
    return x == x ? y : x + x;
}

/* 1 / (1 + e^-x), computed as e/(1 + e) with e = e^-|x| for x < 0 so
 * that nothing overflows and small results keep their precision */
static inline float ad_vsigmoidf(float x)
{
    float e = ad_vexpf(-fabsf(x));
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

/* tanh x: below |x| = 0.5625, |x| + |x|^3 P(x^2) (P a degree-4 fit of
 * relative error 0.02 ulp); above, 1 - 2 / (e^2|x| + 1), whose result is
 * at least 0.5 there, so the subtraction loses nothing; then the sign of x
 * (tanh is odd; -0 stays -0) */
static inline float ad_vtanhf(float x)
{
    float a = fabsf(x), u = x * x;
    float p = -0x1.94fffcp-8f;
    p = p * u + 0x1.582faap-6f;
    p = p * u + -0x1.b90946p-5f;
    p = p * u + 0x1.110c72p-3f;
    p = p * u + -0x1.555548p-2f;
    float small = a + a * (u * p);
    float large = 1.0f - 2.0f / (ad_vexpf(2.0f * a) + 1.0f);
    return copysignf(a < 0.5625f ? small : large, x);
}

static inline double ad_sigmoid_double(double x)
{
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

/* Type-generic element functions for kernels written once for float and
 * double: the vectorizable float code above, libm for double. */
#define ad_exp_elem(x) _Generic((x), float : ad_vexpf, default : exp)(x)
#define ad_tanh_elem(x) _Generic((x), float : ad_vtanhf, default : tanh)(x)
#define ad_sigmoid_elem(x) _Generic((x), float : ad_vsigmoidf, default : ad_sigmoid_double)(x)

#endif
