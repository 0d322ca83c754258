/* vmath_ulp.c -- the float kernels of exp, sigmoid and tanh (what ad_exp,
 * ad_sigmoid and ad_tanh run on an f32 graph, autodiff/vmath_impl.h) over
 * every one of the 2^32 floats, against libm in double: the largest error
 * in ulps of the float nearest the exact value and where it occurs, and
 * that NaN stays NaN. Then the time per element of the kernels and of
 * libm's expf/tanhf on 2^16 inputs in [-8, 8]. One thread; about 5 minutes
 * of CPU.
 *   vmath_ulp [STRIDE]   (STRIDE > 1 checks every STRIDE-th float only)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chainrule/autodiff.h>

#include "test_ulps.h"

#define CHUNK (1 << 20)

static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    uint64_t stride = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    if (stride < 1)
        stride = 1;
    ad_set_threads(1);
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t n = CHUNK;
    ad_node *x = ad_input(g, 1, &n, "x");
    ad_node *f[3] = {ad_exp(x), ad_sigmoid(x), ad_tanh(x)};
    double (*ref[3])(double) = {exp, ref_sigmoid, tanh};
    const char *name[3] = {"exp", "sigmoid", "tanh"};
    if (!f[0] || !f[1] || !f[2]) {
        fprintf(stderr, "vmath_ulp: %s\n", ad_graph_error(g));
        return 1;
    }
    float *xs = ad_data(x);
    double worst[3] = {0, 0, 0};
    float at[3] = {0, 0, 0};
    uint64_t checked = 0;
    for (uint64_t b = 0; b <= UINT32_MAX;) {
        int64_t k = 0;
        for (; k < CHUNK && b <= UINT32_MAX; k++, b += stride) {
            uint32_t u = (uint32_t)b;
            memcpy(&xs[k], &u, sizeof u);
        }
        for (int64_t i = k; i < CHUNK; i++)
            xs[i] = 0;
        ad_forward(g);
        for (int j = 0; j < 3; j++) {
            const float *y = ad_data(f[j]);
            for (int64_t i = 0; i < k; i++) {
                double e = ulps_f32(y[i], ref[j](xs[i]));
                if (!(e <= worst[j])) {
                    worst[j] = e;
                    at[j] = xs[i];
                }
            }
        }
        checked += (uint64_t)k;
    }
    printf("%llu floats checked against libm in double\n", (unsigned long long)checked);
    for (int j = 0; j < 3; j++)
        printf("%-8s max error %.3f ulp at x = %a (%.9g)\n", name[j], worst[j], (double)at[j],
               (double)at[j]);

    /* speed: 2^16 inputs in [-8, 8], best of 20 passes */
    enum { M = 1 << 16 };
    static float in[M], out[M];
    for (int i = 0; i < M; i++)
        in[i] = -8.0f + 16.0f * (float)i / M;
    int64_t m = M;
    for (int j = 0; j < 3; j++) {
        ad_graph *h = ad_graph_new(AD_F32);
        ad_node *hx = ad_input(h, 1, &m, "x");
        memcpy(ad_data(hx), in, sizeof in);
        if (!(j == 0 ? ad_exp(hx) : j == 1 ? ad_sigmoid(hx) : ad_tanh(hx))) {
            fprintf(stderr, "vmath_ulp: %s\n", ad_graph_error(h));
            return 1;
        }
        double best = INFINITY;
        for (int r = 0; r < 20; r++) {
            double t0 = now();
            ad_forward(h);
            double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("%-8s %.2f ns per element (ad_%s, f32)\n", name[j], 1e9 * best / M, name[j]);
        ad_graph_free(h);
    }
    float (*libm[2])(float) = {expf, tanhf};
    const char *lname[2] = {"expf", "tanhf"};
    for (int j = 0; j < 2; j++) {
        double best = INFINITY;
        for (int r = 0; r < 20; r++) {
            double t0 = now();
            for (int i = 0; i < M; i++)
                out[i] = libm[j](in[i]);
            double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("%-8s %.2f ns per element (libm, one call each)\n", lname[j], 1e9 * best / M);
    }
    ad_graph_free(g);
    return out[M / 2] == 12345 ? 2 : 0;
}
