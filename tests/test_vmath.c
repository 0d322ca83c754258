/* The float kernels of exp, sigmoid and tanh (autodiff/vmath_impl.h, run by
 * ad_exp, ad_sigmoid and ad_tanh on an f32 graph) against libm in double:
 * the error in ulps over a sample of every binade, and the special values
 * (+-0, +-inf, NaN, subnormals in and out, overflow and underflow edges).
 * bench/vmath_ulp measures the same over every float. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "chainrule/autodiff.h"
#include "test_ulps.h"

static double ref_exp(double x) { return exp(x); }
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double ref_tanh(double x) { return tanh(x); }

typedef ad_node *(*unary_op)(ad_node *);

/* Runs op over xs on an f32 graph; the outputs into ys. */
static void run(unary_op op, const float *xs, float *ys, int64_t n)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_node *x = ad_input(g, 1, &n, "x");
    cr_assert_not_null(x);
    memcpy(ad_data(x), xs, sizeof(float) * (size_t)n);
    ad_node *y = op(x);
    cr_assert_not_null(y, "%s", ad_graph_error(g) ? ad_graph_error(g) : "");
    memcpy(ys, ad_data(y), sizeof(float) * (size_t)n);
    ad_graph_free(g);
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Every 8191st bit pattern (both signs, every binade, subnormals, inf and
 * NaNs), about 524,000 inputs. */
#define SAMPLES 524353
static float xs[SAMPLES], ys[SAMPLES];

static double max_ulps(unary_op op, double (*ref)(double), float *worst_x)
{
    int64_t n = 0;
    for (uint64_t b = 0; b <= UINT32_MAX && n < SAMPLES; b += 8191)
        xs[n++] = from_bits((uint32_t)b);
    run(op, xs, ys, n);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double u = ulps_f32(ys[i], ref(xs[i]));
        if (!(u <= worst)) {
            worst = u;
            *worst_x = xs[i];
        }
    }
    return worst;
}

Test(vmath, exp_within_1_ulp)
{
    float at = 0;
    double w = max_ulps(ad_exp, ref_exp, &at);
    cr_expect_leq(w, 1.0, "exp: %.3f ulp at %a", w, (double)at);
}

Test(vmath, sigmoid_within_2_5_ulp)
{
    float at = 0;
    double w = max_ulps(ad_sigmoid, ref_sigmoid, &at);
    cr_expect_leq(w, 2.5, "sigmoid: %.3f ulp at %a", w, (double)at);
}

Test(vmath, tanh_within_1_5_ulp)
{
    float at = 0;
    double w = max_ulps(ad_tanh, ref_tanh, &at);
    cr_expect_leq(w, 1.5, "tanh: %.3f ulp at %a", w, (double)at);
}

/* Dense near the places where the kernels change branch or range: the
 * overflow and underflow edges of exp, the switch of tanh at 0.5625, 0. */
Test(vmath, edges_dense)
{
    static const float centers[] = {88.72283f, -87.33655f, -103.2789f, -103.9721f, 0.5625f,
                                    -0.5625f,  0.3465736f, 1e-3f,      0.0f,       44.36142f};
    static const struct {
        unary_op op;
        double (*ref)(double);
        double bound;
        const char *name;
    } f[3] = {{ad_exp, ref_exp, 1.0, "exp"},
              {ad_sigmoid, ref_sigmoid, 2.5, "sigmoid"},
              {ad_tanh, ref_tanh, 1.5, "tanh"}};
    int64_t n = 0;
    for (size_t c = 0; c < sizeof centers / sizeof centers[0]; c++) {
        float x = centers[c], y = centers[c];
        for (int k = 0; k < 2000; k++) {
            xs[n++] = x;
            xs[n++] = y;
            x = nextafterf(x, INFINITY);
            y = nextafterf(y, -INFINITY);
        }
    }
    for (int k = 0; k < 3; k++) {
        run(f[k].op, xs, ys, n);
        for (int64_t i = 0; i < n; i++) {
            double u = ulps_f32(ys[i], f[k].ref(xs[i]));
            cr_assert_leq(u, f[k].bound, "%s(%a) = %a: %.3f ulp", f[k].name, (double)xs[i],
                          (double)ys[i], u);
        }
    }
}

Test(vmath, special_values)
{
    const float inf = INFINITY, tiny = from_bits(1), sub = from_bits(0x007fffff);
    float in[] = {
        0.0f,    -0.0f,  inf, -inf, NAN,    -NAN,    from_bits(0x7fa00001) /* signaling */,
        tiny,    -tiny,  sub, -sub, 200.0f, -200.0f, 89.0f,
        -104.0f, -150.0f};
    enum { N = sizeof in / sizeof in[0] };
    float e[N], s[N], t[N];
    run(ad_exp, in, e, N);
    run(ad_sigmoid, in, s, N);
    run(ad_tanh, in, t, N);
    /* +-0 */
    cr_assert_eq(e[0], 1.0f);
    cr_assert_eq(e[1], 1.0f);
    cr_assert_eq(s[0], 0.5f);
    cr_assert_eq(s[1], 0.5f);
    cr_assert(t[0] == 0 && !signbit(t[0]));
    cr_assert(t[1] == 0 && signbit(t[1]), "tanh(-0) keeps its sign");
    /* +-inf */
    cr_assert_eq(e[2], inf);
    cr_assert(e[3] == 0 && !signbit(e[3]));
    cr_assert_eq(s[2], 1.0f);
    cr_assert(s[3] == 0 && !signbit(s[3]));
    cr_assert_eq(t[2], 1.0f);
    cr_assert_eq(t[3], -1.0f);
    /* NaN in, NaN out (quiet, signaling, either sign) */
    for (int i = 4; i < 7; i++)
        cr_assert(isnan(e[i]) && isnan(s[i]) && isnan(t[i]), "input %d", i);
    /* subnormal inputs: exp 1, sigmoid 1/2, tanh x itself */
    for (int i = 7; i < 11; i++) {
        cr_assert_eq(e[i], 1.0f, "exp(%a)", (double)in[i]);
        cr_assert_eq(s[i], 0.5f, "sigmoid(%a)", (double)in[i]);
        cr_assert_eq(t[i], in[i], "tanh(%a) = %a", (double)in[i], (double)t[i]);
    }
    /* far out: overflow to inf, underflow to +0, saturation */
    cr_assert_eq(e[11], inf);
    cr_assert(e[12] == 0 && !signbit(e[12]));
    cr_assert_eq(e[13], inf);
    cr_assert_eq(e[14], 0.0f);
    cr_assert_eq(s[11], 1.0f);
    cr_assert_eq(s[12], 0.0f);
    cr_assert_eq(s[15], 0.0f);
    cr_assert_eq(t[11], 1.0f);
    cr_assert_eq(t[12], -1.0f);
}

/* Results in the subnormals are rounded once: exp(-100) and sigmoid(-100)
 * against the double reference rounded to float. */
Test(vmath, subnormal_results)
{
    float in[] = {-88.0f, -95.5f, -100.0f, -103.0f, -103.9f};
    enum { N = sizeof in / sizeof in[0] };
    float e[N], s[N];
    run(ad_exp, in, e, N);
    run(ad_sigmoid, in, s, N);
    for (int i = 0; i < N; i++) {
        cr_assert_leq(ulps_f32(e[i], exp(in[i])), 1.0, "exp(%g) = %a", (double)in[i], (double)e[i]);
        cr_assert_leq(ulps_f32(s[i], ref_sigmoid(in[i])), 2.5, "sigmoid(%g) = %a", (double)in[i],
                      (double)s[i]);
        cr_assert_eq(fpclassify(e[i]), FP_SUBNORMAL, "exp(%g)", (double)in[i]);
    }
}

/* f64 graphs keep libm: the same values bit for bit. */
Test(vmath, f64_is_libm)
{
    double in[] = {-30.5, -1.25, -1e-300, 0.0, 0.75, 3.0, 20.0};
    int64_t n = sizeof in / sizeof in[0];
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_const(g, 1, &n, in, "x");
    ad_node *e = ad_exp(x), *t = ad_tanh(x), *s = ad_sigmoid(x);
    const double *ev = ad_data(e), *tv = ad_data(t), *sv = ad_data(s);
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(ev[i], exp(in[i]));
        cr_assert_eq(tv[i], tanh(in[i]));
        double want = in[i] >= 0 ? 1 / (1 + exp(-in[i])) : exp(in[i]) / (1 + exp(in[i]));
        cr_assert_eq(sv[i], want);
    }
    ad_graph_free(g);
}
