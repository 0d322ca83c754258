/* optim.c -- optimizers as tight loops over flat arrays: SGD (momentum,
 * Nesterov, weight decay), Adam, AdamW, RMSprop, Adagrad; global-norm
 * gradient clipping; state save/restore for exact resumption.
 *
 * The update rules follow torch.optim (1.13) operation by operation so that
 * the PyTorch fixtures agree to rounding. Arithmetic is done in double and
 * rounded once per stored value, for both dtypes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h" /* AD_FOR_SPLIT: the library's one split of elementwise loops */
#include "vmath_impl.h" /* AD_SIMD_CLONES: kernels with an AVX2 copy */
#include "nn_impl.h"

#define MAX_SLOTS 3

struct nn_optimizer {
    nn_optim_config cfg;
    ad_dtype dtype;
    int64_t n;
    nn_model *model; /* bound model, or NULL */
    ad_alloc_fn alloc;
    void *ud;
    void *state; /* nslots arrays of n elements */
    int nslots;
    const char *slot_names[MAX_SLOTS];
    int64_t steps;
    char err[NN_ERRLEN]; /* the optimizer's error ("" when none) */
    ad_errcode errcode;  /* its code */
};

int nn_optimizer_fail(const nn_optimizer *co, ad_errcode code, const char *fmt, ...)
{
    nn_optimizer *o = (nn_optimizer *)(uintptr_t)co; /* errors are kept on const calls too */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->err, sizeof o->err, fmt, ap);
    va_end(ap);
    o->errcode = code;
    return -1;
}

const char *nn_optimizer_error(const nn_optimizer *o)
{
    if (!o)
        return "nn: optimizer is NULL";
    return o->err[0] ? o->err : NULL;
}

ad_errcode nn_optimizer_errcode(const nn_optimizer *o)
{
    if (!o)
        return AD_EINVAL;
    return o->err[0] ? o->errcode : AD_OK;
}

void nn_optimizer_clear_error(nn_optimizer *o)
{
    if (o) {
        o->err[0] = '\0';
        o->errcode = AD_OK;
    }
}

static const char *const optim_names[NN_OPT_COUNT] = {
    [NN_OPT_SGD] = "sgd",         [NN_OPT_ADAM] = "adam",       [NN_OPT_ADAMW] = "adamw",
    [NN_OPT_RMSPROP] = "rmsprop", [NN_OPT_ADAGRAD] = "adagrad",
};

const char *nn_optim_name(nn_optim_kind kind)
{
    if ((int)kind < 0 || kind >= NN_OPT_COUNT)
        return NULL;
    return optim_names[kind];
}

int nn_optim_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NN_OPT_COUNT; i++)
        if (strcmp(name, optim_names[i]) == 0)
            return i;
    if (strcmp(name, "momentum") == 0 || strcmp(name, "nesterov") == 0)
        return NN_OPT_SGD;
    return -1;
}

nn_optim_config nn_optim_defaults(nn_optim_kind kind)
{
    nn_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    switch (kind) {
    case NN_OPT_SGD:
        c.lr = 0.01;
        break;
    case NN_OPT_ADAMW:
        c.weight_decay = 0.01; /* fall through */
    case NN_OPT_ADAM:
        c.lr = 1e-3;
        c.beta1 = 0.9;
        c.beta2 = 0.999;
        c.eps = 1e-8;
        break;
    case NN_OPT_RMSPROP:
        c.lr = 0.01;
        c.alpha = 0.99;
        c.eps = 1e-8;
        break;
    case NN_OPT_ADAGRAD:
        c.lr = 0.01;
        c.eps = 1e-10;
        break;
    case NN_OPT_COUNT:
        break;
    }
    return c;
}

nn_model *nn_optimizer_model(const nn_optimizer *o) { return o ? o->model : NULL; }

static bool in01(double x) { return x >= 0 && x < 1; }

static int check_config(const nn_optim_config *c, const char *fn, ad_error *err)
{
    if ((int)c->kind < 0 || c->kind >= NN_OPT_COUNT)
        return ad_error_set(err, AD_EINVAL, "%s: unknown optimizer %d", fn, (int)c->kind);
#define BAD(cond, ...)                                                                             \
    if (cond)                                                                                      \
    return ad_error_set(err, AD_EINVAL, __VA_ARGS__)
    BAD(!(c->lr >= 0 && isfinite(c->lr)), "%s: learning rate %g must be >= 0", fn, c->lr);
    BAD(!(c->weight_decay >= 0 && isfinite(c->weight_decay)),
        "%s: weight decay %g must be finite and >= 0", fn, c->weight_decay);
    BAD(!(c->clip_norm >= 0 && isfinite(c->clip_norm)), "%s: clip norm %g must be finite and >= 0",
        fn, c->clip_norm);
    BAD(!(c->eps >= 0 && isfinite(c->eps)), "%s: eps %g must be finite and >= 0", fn, c->eps);
    BAD(c->nesterov != 0 && c->nesterov != 1, "%s: nesterov is %d, not 0 or 1", fn, c->nesterov);
    BAD(c->amsgrad != 0 && c->amsgrad != 1, "%s: amsgrad is %d, not 0 or 1", fn, c->amsgrad);
    BAD(c->centered != 0 && c->centered != 1, "%s: centered is %d, not 0 or 1", fn, c->centered);
    BAD(c->fused != 0 && c->fused != 1, "%s: fused is %d, not 0 or 1", fn, c->fused);
    BAD(c->fused && (c->kind != NN_OPT_SGD || c->momentum != 0 || c->weight_decay != 0 ||
                     c->clip_norm != 0),
        "%s: fused needs plain SGD (no momentum, weight decay or clipping), not %s%s%s%s", fn,
        optim_names[c->kind], c->kind == NN_OPT_SGD && c->momentum != 0 ? " with momentum" : "",
        c->weight_decay != 0 ? " with weight decay" : "",
        c->clip_norm != 0 ? " with clipping" : "");
    switch (c->kind) {
    case NN_OPT_SGD:
        BAD(!in01(c->momentum), "%s: momentum %g is not in [0, 1)", fn, c->momentum);
        BAD(!(c->dampening >= 0 && c->dampening <= 1), "%s: dampening %g is not in [0, 1]", fn,
            c->dampening);
        BAD(c->nesterov && (c->momentum <= 0 || c->dampening != 0),
            "%s: Nesterov momentum needs momentum > 0 and zero dampening", fn);
        break;
    case NN_OPT_ADAM:
    case NN_OPT_ADAMW:
        BAD(!in01(c->beta1) || !in01(c->beta2), "%s: betas (%g, %g) must be in [0, 1)", fn,
            c->beta1, c->beta2);
        break;
    case NN_OPT_RMSPROP:
        BAD(!(c->alpha >= 0 && c->alpha <= 1), "%s: alpha %g is not in [0, 1]", fn, c->alpha);
        BAD(!in01(c->momentum), "%s: momentum %g is not in [0, 1)", fn, c->momentum);
        break;
    case NN_OPT_ADAGRAD:
        BAD(!(c->lr_decay >= 0 && isfinite(c->lr_decay)), "%s: lr decay %g must be finite and >= 0",
            fn, c->lr_decay);
        BAD(!(c->initial_accumulator >= 0 && isfinite(c->initial_accumulator)),
            "%s: initial accumulator %g must be finite and >= 0", fn, c->initial_accumulator);
        break;
    case NN_OPT_COUNT:
        break;
    }
#undef BAD
    return 0;
}

static void set_slots(nn_optimizer *o)
{
    const nn_optim_config *c = &o->cfg;
    int k = 0;
    switch (c->kind) {
    case NN_OPT_SGD:
        if (c->momentum != 0)
            o->slot_names[k++] = "momentum";
        break;
    case NN_OPT_ADAM:
    case NN_OPT_ADAMW:
        o->slot_names[k++] = "exp_avg";
        o->slot_names[k++] = "exp_avg_sq";
        if (c->amsgrad)
            o->slot_names[k++] = "max_exp_avg_sq";
        break;
    case NN_OPT_RMSPROP:
        o->slot_names[k++] = "square_avg";
        if (c->momentum > 0)
            o->slot_names[k++] = "momentum";
        if (c->centered)
            o->slot_names[k++] = "grad_avg";
        break;
    case NN_OPT_ADAGRAD:
        o->slot_names[k++] = "sum";
        break;
    case NN_OPT_COUNT:
        break;
    }
    o->nslots = k;
}

static size_t state_bytes(const nn_optimizer *o)
{
    return (size_t)o->nslots * (size_t)o->n * ad_dtype_bytes(o->dtype);
}

void nn_optimizer_reset(nn_optimizer *o)
{
    if (!o)
        return;
    o->steps = 0;
    if (!o->state)
        return;
    memset(o->state, 0, state_bytes(o));
    if (o->cfg.kind == NN_OPT_ADAGRAD && o->cfg.initial_accumulator != 0) {
        double v = o->cfg.initial_accumulator;
        AD_DISPATCH_DTYPE(o->dtype, {
            T *s = o->state;
            for (int64_t i = 0; i < o->n; i++)
                s[i] = (T)v;
        });
    }
}

static nn_optimizer *create(ad_dtype dtype, int64_t n, const nn_optim_config *cfg,
                            ad_alloc_fn alloc, void *ud, const char *fn, ad_error *err)
{
    if (!cfg) {
        ad_error_set(err, AD_EINVAL, "%s: config is NULL", fn);
        return NULL;
    }
    if (dtype != AD_F32 && dtype != AD_F64) {
        ad_error_set(err, AD_EINVAL, "%s: dtype %d is neither AD_F32 nor AD_F64", fn, (int)dtype);
        return NULL;
    }
    if (n < 0) {
        ad_error_set(err, AD_EINVAL, "%s: %lld parameters", fn, (long long)n);
        return NULL;
    }
    if (check_config(cfg, fn, err))
        return NULL;
    nn_optimizer *o = alloc(ud, NULL, 0, sizeof *o);
    if (!o) {
        ad_error_set(err, AD_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->dtype = dtype;
    o->n = n;
    o->alloc = alloc;
    o->ud = ud;
    set_slots(o);
    if (state_bytes(o)) {
        o->state = alloc(ud, NULL, 0, state_bytes(o));
        if (!o->state) {
            int nslots = o->nslots; /* read before o is freed */
            alloc(ud, o, sizeof *o, 0);
            ad_error_set(err, AD_ENOMEM, "%s: out of memory for %d state slots", fn, nslots);
            return NULL;
        }
    }
    nn_optimizer_reset(o);
    return o;
}

nn_optimizer *nn_optimizer_new(nn_model *m, const nn_optim_config *cfg, ad_error *err)
{
    const char *fn = "nn_optimizer_new";
    ad_error_ok(err);
    if (!m) {
        ad_error_set(err, AD_EINVAL, "%s: model is NULL", fn);
        return NULL;
    }
    if (!m->built) {
        ad_error_set(err, AD_ESTATE, "%s: the model is not built (nn_model_build)", fn);
        return NULL;
    }
    nn_optimizer *o = create(m->dtype, m->nparams, cfg, m->alloc, m->ud, fn, err);
    if (o)
        o->model = m;
    return o;
}

nn_optimizer *nn_optimizer_new_flat(ad_dtype dtype, int64_t n, const nn_optim_config *cfg,
                                    ad_error *err)
{
    return nn_optimizer_new_flat_with(dtype, n, cfg, NULL, NULL, err);
}

nn_optimizer *nn_optimizer_new_flat_with(ad_dtype dtype, int64_t n, const nn_optim_config *cfg,
                                         ad_alloc_fn alloc, void *ud, ad_error *err)
{
    ad_error_ok(err);
    return create(dtype, n, cfg, alloc ? alloc : ad_default_alloc, ud, "nn_optimizer_new_flat",
                  err);
}

void nn_optimizer_free(nn_optimizer *o)
{
    if (!o)
        return;
    if (o->state)
        o->alloc(o->ud, o->state, state_bytes(o), 0);
    o->alloc(o->ud, o, sizeof *o, 0);
}

/* ---------------------------------------------------------------- clipping */

double nn_clip_grad_norm(ad_dtype dtype, void *grads, int64_t n, double max_norm)
{
    if ((!grads && n > 0) || !(max_norm > 0))
        return -1;
    double sq = 0;
    AD_DISPATCH_DTYPE(dtype, {
        const T *g = grads;
        for (int64_t i = 0; i < n; i++)
            sq += (double)g[i] * (double)g[i];
    });
    double norm = sqrt(sq);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        AD_DISPATCH_DTYPE(dtype, {
            T *g = grads;
            for (int64_t i = 0; i < n; i++)
                g[i] = (T)((double)g[i] * coef);
        });
    return norm;
}

double nn_model_clip_grad_norm(nn_model *m, double max_norm)
{
    if (!m)
        return -1;
    if (!m->built)
        return nn_model_fail(m, AD_ESTATE, "nn_model_clip_grad_norm: the model is not built");
    if (!(max_norm > 0))
        return nn_model_fail(m, AD_EINVAL, "nn_model_clip_grad_norm: max_norm %g must be > 0",
                             max_norm);
    return nn_clip_grad_norm(m->dtype, m->grads, m->nparams, max_norm);
}

/* ------------------------------------------------------------------ updates */

/* The kernels: P params, G grads, S0..S2 state slots, all n elements of T. */
#define SLOT(k) ((T *)o->state + (size_t)(k) * (size_t)n)

/* Every update is elementwise: element i reads and writes index i of each
 * array and nothing else, so the loops split over the library's threads
 * (ad_set_threads) from AD_PARALLEL_MIN elements (AD_FOR_ELEMENTS), with the same results
 * for any thread count. The plain SGD step is the library's scaled addition
 * (ad_add_scaled: vectorized, split the same way), which ad_backward_sgd
 * also uses. */
static void step_sgd(nn_optimizer *o, void *params, const void *grads)
{
    const nn_optim_config *c = &o->cfg;
    const int64_t n = o->n;
    const double lr = c->lr, wd = c->weight_decay, mom = c->momentum, damp = c->dampening;
    const bool first = o->steps == 0;
    AD_DISPATCH_DTYPE(o->dtype, {
        T *P = params, *B = o->nslots ? SLOT(0) : NULL;
        const T *G = grads;
        if (wd == 0 && mom == 0) {
            /* plain SGD, the hot loop of the default recipe: in the element type
             * (as torch's p.add_(g, alpha=-lr)), branch-free, vectorized */
            ad_add_scaled(o->dtype, P, G, -lr, n);
            return;
        }
        const bool nesterov = c->nesterov != 0;
        AD_FOR_ELEMENTS(i, n, {
            double g = (double)G[i], p = (double)P[i];
            if (wd != 0)
                g = g + wd * p;
            if (mom != 0) {
                double b = first ? g : mom * (double)B[i] + (1 - damp) * g;
                B[i] = (T)b;
                b = (double)B[i];
                g = nesterov ? g + mom * b : b;
            }
            P[i] = (T)(p - lr * g);
        });
    });
}

/* sqrt in the argument's own type (sqrtf for float: no double round trip) */
#define sqrt_t(x) _Generic((x), float : sqrtf, default : sqrt)(x)

static void step_adam(nn_optimizer *o, void *params, const void *grads, double t)
{
    const nn_optim_config *c = &o->cfg;
    const int64_t n = o->n;
    const double lr = c->lr, wd = c->weight_decay, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const bool decoupled = c->kind == NN_OPT_ADAMW;
    const double step_size = lr / (1 - pow(b1, t));
    const double bc2_sqrt = sqrt(1 - pow(b2, t));
    AD_DISPATCH_DTYPE(o->dtype, {
        T *P = params, *M = SLOT(0), *V = SLOT(1), *VMAX = c->amsgrad ? SLOT(2) : NULL;
        const T *G = grads;
        if (!VMAX && wd == 0) {
            /* plain Adam, the common case: in the element type, branch-free,
             * vectorizable (the same operations as below, so f64 is unchanged) */
            const T tb1 = (T)b1, tc1 = (T)(1 - b1), tb2 = (T)b2, tc2 = (T)(1 - b2);
            const T tstep = (T)step_size, tbc2 = (T)bc2_sqrt, teps = (T)eps;
            AD_FOR_ELEMENTS(i, n, {
                const T g = G[i];
                const T m = M[i] * tb1 + g * tc1;
                const T v = V[i] * tb2 + g * g * tc2;
                M[i] = m;
                V[i] = v;
                P[i] = P[i] - tstep * (m / (sqrt_t(v) / tbc2 + teps));
            });
            return;
        }
        AD_FOR_ELEMENTS(i, n, {
            double g = (double)G[i], p = (double)P[i];
            if (decoupled)
                p = p * (1 - lr * wd);
            else if (wd != 0)
                g = g + wd * p;
            M[i] = (T)((double)M[i] * b1 + g * (1 - b1));
            V[i] = (T)((double)V[i] * b2 + g * g * (1 - b2));
            double v = (double)V[i];
            if (VMAX) {
                if (v > (double)VMAX[i])
                    VMAX[i] = (T)v;
                v = (double)VMAX[i];
            }
            double denom = sqrt(v) / bc2_sqrt + eps;
            P[i] = (T)(p - step_size * ((double)M[i] / denom));
        });
    });
}

static void step_rmsprop(nn_optimizer *o, void *params, const void *grads)
{
    const nn_optim_config *c = &o->cfg;
    const int64_t n = o->n;
    const double lr = c->lr, wd = c->weight_decay, a = c->alpha, eps = c->eps, mom = c->momentum;
    const int mslot = mom > 0 ? 1 : -1, cslot = c->centered ? (mom > 0 ? 2 : 1) : -1;
    AD_DISPATCH_DTYPE(o->dtype, {
        T *P = params, *S = SLOT(0);
        T *B = mslot > 0 ? SLOT(mslot) : NULL, *A = cslot > 0 ? SLOT(cslot) : NULL;
        const T *G = grads;
        AD_FOR_ELEMENTS(i, n, {
            double g = (double)G[i], p = (double)P[i];
            if (wd != 0)
                g = g + wd * p;
            S[i] = (T)((double)S[i] * a + g * g * (1 - a));
            double avg;
            if (A) {
                A[i] = (T)((double)A[i] * a + g * (1 - a));
                avg = sqrt((double)S[i] - (double)A[i] * (double)A[i]);
            } else {
                avg = sqrt((double)S[i]);
            }
            avg += eps;
            if (B) {
                B[i] = (T)((double)B[i] * mom + g / avg);
                P[i] = (T)(p - lr * (double)B[i]);
            } else {
                P[i] = (T)(p - lr * (g / avg));
            }
        });
    });
}

static void step_adagrad(nn_optimizer *o, void *params, const void *grads, double t)
{
    const nn_optim_config *c = &o->cfg;
    const int64_t n = o->n;
    const double wd = c->weight_decay, eps = c->eps;
    const double clr = c->lr / (1 + (t - 1) * c->lr_decay);
    AD_DISPATCH_DTYPE(o->dtype, {
        T *P = params, *S = SLOT(0);
        const T *G = grads;
        AD_FOR_ELEMENTS(i, n, {
            double g = (double)G[i], p = (double)P[i];
            if (wd != 0)
                g = g + wd * p;
            S[i] = (T)((double)S[i] + g * g);
            double std = sqrt((double)S[i]) + eps;
            P[i] = (T)(p - clr * (g / std));
        });
    });
}

int nn_optimizer_can_step(const nn_optimizer *o, const char *fn)
{
    if (o->steps >= NN_OPTIM_MAX_STEPS)
        return nn_optimizer_fail(o, AD_ESTATE, "%s: %lld steps, the most an optimizer counts", fn,
                                 (long long)o->steps);
    return 0;
}

bool nn_optimizer_fused(const nn_optimizer *o) { return o->cfg.fused != 0; }

int nn_optimizer_update(nn_optimizer *o, void *params, void *grads)
{
    if (!o)
        return -1;
    if (o->n > 0 && (!params || !grads))
        return nn_optimizer_fail(o, AD_EINVAL, "nn_optimizer_update: %s is NULL",
                                 params ? "grads" : "params");
    if (nn_optimizer_can_step(o, "nn_optimizer_update") != 0)
        return -1;
    if (o->cfg.clip_norm > 0)
        nn_clip_grad_norm(o->dtype, grads, o->n, o->cfg.clip_norm);
    double t = (double)(o->steps + 1);
    switch (o->cfg.kind) {
    case NN_OPT_SGD:
        step_sgd(o, params, grads);
        break;
    case NN_OPT_ADAM:
    case NN_OPT_ADAMW:
        step_adam(o, params, grads, t);
        break;
    case NN_OPT_RMSPROP:
        step_rmsprop(o, params, grads);
        break;
    case NN_OPT_ADAGRAD:
        step_adagrad(o, params, grads, t);
        break;
    case NN_OPT_COUNT:
        break;
    }
    o->steps++;
    return 0;
}

int nn_optimizer_step(nn_optimizer *o)
{
    if (!o)
        return -1;
    if (!o->model)
        return nn_optimizer_fail(o, AD_ESTATE,
                                 "nn_optimizer_step: the optimizer is not bound to a model "
                                 "(use nn_optimizer_update)");
    return nn_optimizer_update(o, o->model->params, o->model->grads);
}

/* --------------------------------------------------------------- accessors */

const nn_optim_config *nn_optimizer_config(const nn_optimizer *o) { return o ? &o->cfg : NULL; }
double nn_optimizer_lr(const nn_optimizer *o) { return o ? o->cfg.lr : NAN; }
int64_t nn_optimizer_steps(const nn_optimizer *o) { return o ? o->steps : -1; }
void *nn_optimizer_state(nn_optimizer *o) { return o ? o->state : NULL; }
int nn_optimizer_state_slots(const nn_optimizer *o) { return o ? o->nslots : 0; }
int64_t nn_optimizer_state_count(const nn_optimizer *o) { return o ? o->nslots * o->n : 0; }

int nn_optimizer_set_lr(nn_optimizer *o, double lr)
{
    if (!o)
        return -1;
    if (!(lr >= 0 && isfinite(lr)))
        return nn_optimizer_fail(o, AD_EINVAL, "nn_optimizer_set_lr: learning rate %g must be >= 0",
                                 lr);
    o->cfg.lr = lr;
    return 0;
}

int nn_optimizer_set_steps(nn_optimizer *o, int64_t steps)
{
    if (!o)
        return -1;
    if (steps < 0 || steps > NN_OPTIM_MAX_STEPS)
        return nn_optimizer_fail(o, AD_EINVAL,
                                 "nn_optimizer_set_steps: step count %lld is not in [0, 2^53]",
                                 (long long)steps);
    o->steps = steps;
    return 0;
}

const char *nn_optimizer_slot_name(const nn_optimizer *o, int i)
{
    if (!o || i < 0 || i >= o->nslots)
        return NULL;
    return o->slot_names[i];
}

/* ------------------------------------------------------------- save, load */

#define STATE_MAGIC "CRNNOPT1"
#define HEADER_BYTES 64

typedef struct {
    char magic[8];
    int32_t kind, dtype, nslots, reserved;
    int64_t n, steps;
    double lr;
} state_header;

_Static_assert(sizeof(state_header) <= HEADER_BYTES, "optimizer state header fits");

size_t nn_optimizer_state_bytes(const nn_optimizer *o)
{
    return o ? HEADER_BYTES + state_bytes(o) : 0;
}

int nn_optimizer_save_state(const nn_optimizer *o, void *buf, size_t size)
{
    if (!o)
        return -1;
    if (!buf)
        return nn_optimizer_fail(o, AD_EINVAL, "nn_optimizer_save_state: buf is NULL");
    if (size < nn_optimizer_state_bytes(o))
        return nn_optimizer_fail(o, AD_EMISMATCH,
                                 "nn_optimizer_save_state: buffer of %zu bytes, need %zu", size,
                                 nn_optimizer_state_bytes(o));
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.kind = (int32_t)o->cfg.kind;
    h.dtype = (int32_t)o->dtype;
    h.nslots = o->nslots;
    h.n = o->n;
    h.steps = o->steps;
    h.lr = o->cfg.lr;
    memset(buf, 0, HEADER_BYTES);
    memcpy(buf, &h, sizeof h);
    if (state_bytes(o))
        memcpy((char *)buf + HEADER_BYTES, o->state, state_bytes(o));
    return 0;
}

int nn_optimizer_load_state(nn_optimizer *o, const void *buf, size_t size)
{
    const char *fn = "nn_optimizer_load_state";
    if (!o)
        return -1;
    if (!buf)
        return nn_optimizer_fail(o, AD_EINVAL, "%s: buf is NULL", fn);
    state_header h;
    if (size < HEADER_BYTES)
        return nn_optimizer_fail(o, AD_EMISMATCH, "%s: %zu bytes is too short for a state header",
                                 fn, size);
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, STATE_MAGIC, 8) != 0)
        return nn_optimizer_fail(o, AD_EINVAL, "%s: not an optimizer state (bad magic)", fn);
    if (h.kind != (int32_t)o->cfg.kind)
        return nn_optimizer_fail(
            o, AD_EINVAL, "%s: state of a %s optimizer, this one is %s", fn,
            nn_optim_name((nn_optim_kind)h.kind) ? nn_optim_name((nn_optim_kind)h.kind) : "unknown",
            nn_optim_name(o->cfg.kind));
    if (h.dtype != (int32_t)o->dtype)
        return nn_optimizer_fail(o, AD_EINVAL, "%s: state dtype %s, optimizer dtype %s", fn,
                                 h.dtype == AD_F32 ? "f32" : "f64",
                                 o->dtype == AD_F32 ? "f32" : "f64");
    if (h.n != o->n || h.nslots != o->nslots)
        return nn_optimizer_fail(
            o, AD_EMISMATCH, "%s: state for %lld parameters in %d slots, optimizer has %lld in %d",
            fn, (long long)h.n, (int)h.nslots, (long long)o->n, o->nslots);
    if (size < nn_optimizer_state_bytes(o))
        return nn_optimizer_fail(o, AD_EMISMATCH, "%s: %zu bytes, need %zu", fn, size,
                                 nn_optimizer_state_bytes(o));
    /* a checksum guards against corruption, not against a crafted file:
       every field is range-checked (a step count near INT64_MAX would
       overflow, an infinite rate would poison every parameter) */
    if (h.steps < 0 || h.steps > NN_OPTIM_MAX_STEPS)
        return nn_optimizer_fail(o, AD_EINVAL, "%s: step count %lld is not in [0, 2^53]", fn,
                                 (long long)h.steps);
    if (!(h.lr >= 0 && isfinite(h.lr)))
        return nn_optimizer_fail(o, AD_EINVAL, "%s: learning rate %g is not a finite number >= 0",
                                 fn, h.lr);
    o->steps = h.steps;
    o->cfg.lr = h.lr;
    if (state_bytes(o))
        memcpy(o->state, (const char *)buf + HEADER_BYTES, state_bytes(o));
    return 0;
}

int64_t nn_optimizer_nonfinite_state(const nn_optimizer *o)
{
    if (!o)
        return -1;
    int64_t bad = 0, count = (int64_t)o->nslots * o->n;
    AD_DISPATCH_DTYPE(o->dtype, {
        const T *v = o->state;
        for (int64_t i = 0; i < count; i++)
            bad += !isfinite(v[i]);
    });
    return bad;
}
