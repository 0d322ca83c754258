/* init.c -- nn_rng (a caller-held state of the library's one generator,
 * splitmix64 seeding xoshiro256**) and the weight initializers built on it.
 * Same seed, same weights everywhere. */
#include <math.h>
#include <string.h>

#include "nn_impl.h"

/* nn_rng is a caller-held state of the graph's generator (support_impl.h):
   the same seed gives the same stream as ad_graph_seed. */
void nn_rng_seed(nn_rng *r, uint64_t seed)
{
    if (r)
        ad_xoshiro_seed(r->s, seed);
}

uint64_t nn_rng_next(nn_rng *r) { return ad_xoshiro_next(r->s); }

double nn_rng_uniform(nn_rng *r) { return ad_bits_to_unit(nn_rng_next(r)); }

double nn_rng_normal(nn_rng *r)
{
    /* 1 - u1 is in (0, 1], so the logarithm is finite */
    double u1 = nn_rng_uniform(r), u2 = nn_rng_uniform(r);
    const double two_pi = 6.283185307179586476925286766559;
    return sqrt(-2.0 * log(1.0 - u1)) * cos(two_pi * u2);
}

/* The library's one bounded draw and one shuffle (support_impl.h), on this
   state's xoshiro256** stream. */
uint64_t nn_rng_below(nn_rng *r, uint64_t n) { return ad_bits_below(ad_xoshiro_bits, r->s, n); }

void nn_rng_shuffle(nn_rng *r, int64_t *idx, int64_t n)
{
    if (r && idx)
        ad_shuffle(ad_xoshiro_bits, r->s, n, ad_swap_int64, idx);
}

/* ------------------------------------------------------------ initializers */

static const char *const init_names[NN_INIT_COUNT] = {
    [NN_INIT_ZEROS] = "zeros",
    [NN_INIT_GLOROT_UNIFORM] = "glorot_uniform",
    [NN_INIT_GLOROT_NORMAL] = "glorot_normal",
    [NN_INIT_HE_UNIFORM] = "he_uniform",
    [NN_INIT_HE_NORMAL] = "he_normal",
    [NN_INIT_LECUN_UNIFORM] = "lecun_uniform",
    [NN_INIT_LECUN_NORMAL] = "lecun_normal",
    [NN_INIT_TORCH] = "torch",
};

const char *nn_init_name(nn_init kind)
{
    if ((int)kind < 0 || kind >= NN_INIT_COUNT)
        return NULL;
    return init_names[kind];
}

int nn_init_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NN_INIT_COUNT; i++)
        if (strcmp(name, init_names[i]) == 0)
            return i;
    static const struct {
        const char *alias;
        nn_init kind;
    } aliases[] = {
        {"xavier_uniform", NN_INIT_GLOROT_UNIFORM},
        {"xavier_normal", NN_INIT_GLOROT_NORMAL},
        {"kaiming_uniform", NN_INIT_HE_UNIFORM},
        {"kaiming_normal", NN_INIT_HE_NORMAL},
        {"zero", NN_INIT_ZEROS},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (strcmp(name, aliases[i].alias) == 0)
            return (int)aliases[i].kind;
    return -1;
}

int nn_init_fill(nn_init kind, nn_rng *rng, int64_t fan_in, int64_t fan_out, ad_dtype dtype,
                 void *out, int64_t n, ad_error *err)
{
    ad_error_ok(err);
    if ((int)kind < 0 || kind >= NN_INIT_COUNT)
        return ad_error_set(err, AD_EINVAL, "nn_init_fill: unknown initializer %d", (int)kind);
    if (fan_in < 1 || fan_out < 1)
        return ad_error_set(err, AD_EINVAL,
                            "nn_init_fill: fan_in %lld and fan_out %lld must be >= 1",
                            (long long)fan_in, (long long)fan_out);
    if (n <= 0)
        return 0;
    if (!out || (!rng && kind != NN_INIT_ZEROS))
        return ad_error_set(err, AD_EINVAL, "nn_init_fill: %s is NULL", out ? "rng" : "out");
    double fi = (double)fan_in, fo = (double)fan_out;
    double limit = 0, std = 0;
    bool normal = false;
    switch (kind) {
    case NN_INIT_ZEROS:
        break;
    case NN_INIT_GLOROT_UNIFORM:
        limit = sqrt(6.0 / (fi + fo));
        break;
    case NN_INIT_GLOROT_NORMAL:
        std = sqrt(2.0 / (fi + fo)), normal = true;
        break;
    case NN_INIT_HE_UNIFORM:
        limit = sqrt(6.0 / fi);
        break;
    case NN_INIT_HE_NORMAL:
        std = sqrt(2.0 / fi), normal = true;
        break;
    case NN_INIT_LECUN_UNIFORM:
        limit = sqrt(3.0 / fi);
        break;
    case NN_INIT_LECUN_NORMAL:
        std = sqrt(1.0 / fi), normal = true;
        break;
    case NN_INIT_TORCH:
        limit = 1.0 / sqrt(fi);
        break;
    case NN_INIT_COUNT:
        break;
    }
    AD_DISPATCH_DTYPE(dtype, {
        T *o = out;
        for (int64_t i = 0; i < n; i++) {
            double v = 0;
            if (kind == NN_INIT_ZEROS)
                v = 0;
            else if (normal)
                v = std * nn_rng_normal(rng);
            else
                v = (2.0 * nn_rng_uniform(rng) - 1.0) * limit;
            o[i] = (T)v;
        }
    });
    return 0;
}
