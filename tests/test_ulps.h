/* test_ulps.h -- the error of a float result in ulps, for tests/test_vmath.c
 * and bench/vmath_ulp.c. */
#ifndef CHAINRULE_TEST_ULPS_H
#define CHAINRULE_TEST_ULPS_H

#include <math.h>

/* |y - ref| in units of the last place of the float nearest ref (the
 * subnormal spacing 2^-149 below FLT_MIN); 0 when y is NaN for a NaN ref or
 * the same infinity as ref rounds to, infinite when y is NaN or inf wrongly. */
static inline double ulps_f32(float y, double ref)
{
    if (isnan(ref))
        return isnan(y) ? 0 : INFINITY;
    float rf = (float)ref;
    if (isinf(rf))
        return y == rf ? 0 : INFINITY;
    if (isnan(y) || isinf(y))
        return INFINITY;
    int e = 0;
    frexp(rf == 0 ? ref : rf, &e);
    double spacing = ldexp(1, e - 24 < -149 ? -149 : e - 24);
    return fabs((double)y - ref) / (rf == 0 ? ldexp(1, -149) : spacing);
}

#endif
