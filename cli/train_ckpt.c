/*
 * train_ckpt.c -- checkpoints of `chainrule train` in the safetensors format
 * (chainrule/checkpoint.h), readable by NumPy, PyTorch and safetensors.
 *
 * Tensors:
 *   denseK.weight          (in, out)  layer K's weights, y = x W + b (transpose for torch)
 *   denseK.bias            (out)
 *   optimizer.<slot>       (n)        the optimizer's state, one tensor per slot
 *                                     ("exp_avg", "exp_avg_sq", "momentum", ...), over
 *                                     the flat parameter vector in the order of the
 *                                     tensors above
 * Metadata ("__metadata__", all strings):
 *   chainrule.format       "chainrule-mlp/1"
 *   chainrule.widths       "784,300,100,10"     chainrule.activation "relu"
 *   chainrule.loss         "cross_entropy"      chainrule.dtype "f32"
 *   chainrule.input_scale  "255" (pixels are divided by it)
 *   chainrule.class_names  "T-shirt/top,Trouser,..."
 *   chainrule.optimizer    "sgd", "momentum", "adam", ...; chainrule.optim.* its settings
 *   chainrule.optimizer_state  hex of nn_optimizer_save_state's header (kind, dtype, n,
 *                          slots, step count, lr); the rest of those bytes is the
 *                          optimizer.* tensors
 *   chainrule.schedule, chainrule.gamma, chainrule.batch, chainrule.seed,
 *   chainrule.subset, chainrule.val, chainrule.epochs, chainrule.epochs_done
 *   chainrule.shuffle      how the batch order is drawn: io_data_permutation(seed, epoch)
 *                          reseeds its generator from (seed, epoch) every epoch, so seed
 *                          and epochs_done are the whole state of the shuffling RNG
 *   chainrule.history      per-epoch "loss acc val_loss val_acc seconds" separated by ';'
 * Numbers are written with 17 significant digits, so they read back exactly.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chainrule/checkpoint.h>

#include "train.h"

#define FORMAT "chainrule-mlp/1"
#define MAX_META 48

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The optimizer settings kept in the metadata, by key. */
typedef struct {
    const char *key;
    size_t offset; /* in nn_optim_config */
    bool is_int;
} optim_field;

#define DFIELD(f)                                                                                  \
    {                                                                                              \
        "chainrule.optim." #f, offsetof(nn_optim_config, f), false                                 \
    }
#define IFIELD(f)                                                                                  \
    {                                                                                              \
        "chainrule.optim." #f, offsetof(nn_optim_config, f), true                                  \
    }
static const optim_field optim_fields[] = {
    DFIELD(lr),
    DFIELD(momentum),
    DFIELD(dampening),
    IFIELD(nesterov),
    DFIELD(weight_decay),
    DFIELD(beta1),
    DFIELD(beta2),
    DFIELD(eps),
    IFIELD(amsgrad),
    DFIELD(alpha),
    IFIELD(centered),
    DFIELD(lr_decay),
    DFIELD(initial_accumulator),
    DFIELD(clip_norm),
};
#define N_OPTIM_FIELDS (sizeof optim_fields / sizeof optim_fields[0])

/* ------------------------------------------------------------------ saving */

/* Metadata values are formatted into one arena of fixed-size strings. */
typedef struct {
    io_ckpt_meta meta[MAX_META];
    char text[MAX_META][64];
    size_t count;
} meta_list;

static void meta_add(meta_list *l, const char *key, const char *fmt, ...)
{
    if (l->count == MAX_META)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text[l->count], sizeof l->text[0], fmt, ap);
    va_end(ap);
    l->meta[l->count].key = key;
    l->meta[l->count].value = l->text[l->count];
    l->count++;
}

/* Appends to a growing string; false when out of memory. */
static bool append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    char piece[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    if (k < 0)
        return false;
    if (*len + (size_t)k + 1 > *cap) {
        size_t ncap = (*cap ? *cap * 2 : 256) + (size_t)k;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return false;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, piece, (size_t)k + 1);
    *len += (size_t)k;
    return true;
}

int cr_checkpoint_save(const char *path, const cr_run *run, nn_model *m, const nn_optimizer *opt,
                       char *err, size_t errlen)
{
    int rc = -1;
    /* a diverged run can have a finite loss: never save non-finite values */
    int64_t bad_params = nn_model_nonfinite_params(m);
    int64_t bad_state = opt ? nn_optimizer_nonfinite_state(opt) : 0;
    if (bad_params != 0 || bad_state != 0)
        return fail(err, errlen,
                    "training diverged: %lld of %lld weights and %lld of %lld optimizer state "
                    "values are NaN or infinite; %s was not written: try a smaller --lr",
                    (long long)bad_params, (long long)nn_model_param_count(m), (long long)bad_state,
                    (long long)(opt ? nn_optimizer_state_count(opt) : 0), path);
    int ntensors = nn_model_param_tensors(m);
    int nslots = opt ? nn_optimizer_state_slots(opt) : 0;
    io_array *t = calloc((size_t)(ntensors + nslots), sizeof *t);
    char *widths = NULL, *names = NULL, *history = NULL, *header_hex = NULL;
    unsigned char *state = NULL;
    size_t wl = 0, wc = 0, nl = 0, nc = 0, hl = 0, hc = 0;
    meta_list *meta = calloc(1, sizeof *meta);
    if (!t || !meta)
        goto oom;
    ad_dtype cdt = run->dtype == AD_F32 ? AD_F32 : AD_F64;
    size_t esize = run->dtype == AD_F32 ? sizeof(float) : sizeof(double);
    char *params = nn_model_params(m);
    for (int i = 0; i < ntensors; i++) {
        nn_param_info info;
        if (nn_model_param_info(m, i, &info) != 0) {
            fail(err, errlen, "%s", nn_model_error(m));
            goto out;
        }
        t[i].name = info.name;
        t[i].dtype = cdt;
        t[i].ndim = info.ndim;
        for (int k = 0; k < info.ndim; k++)
            t[i].shape[k] = (size_t)info.shape[k];
        t[i].data = params + (size_t)info.offset * esize;
    }

    char slot_names[8][64];
    if (opt) {
        /* the serialized state: a header (kept as hex) then the slots (as tensors) */
        size_t bytes = nn_optimizer_state_bytes(opt);
        size_t data_bytes = (size_t)nn_optimizer_state_count(opt) * esize;
        size_t header = bytes - data_bytes;
        state = malloc(bytes);
        header_hex = malloc(2 * header + 1);
        if (!state || !header_hex)
            goto oom;
        if (nn_optimizer_save_state(opt, state, bytes) != 0) {
            fail(err, errlen, "%s", nn_optimizer_error(opt));
            goto out;
        }
        for (size_t i = 0; i < header; i++)
            snprintf(header_hex + 2 * i, 3, "%02x", state[i]);
        size_t n = (size_t)nn_model_param_count(m);
        for (int s = 0; s < nslots && s < 8; s++) {
            io_array *ts = &t[ntensors + s];
            snprintf(slot_names[s], sizeof slot_names[s], "optimizer.%s",
                     nn_optimizer_slot_name(opt, s));
            ts->name = slot_names[s];
            ts->dtype = cdt;
            ts->ndim = 1;
            ts->shape[0] = n;
            ts->data = state + header + (size_t)s * n * esize;
        }
    }

    for (int i = 0; i < run->nwidths; i++)
        if (!append(&widths, &wl, &wc, "%s%lld", i ? "," : "", (long long)run->widths[i]))
            goto oom;
    for (int k = 0; k < run->nclasses; k++)
        if (!append(&names, &nl, &nc, "%s%s", k ? "," : "", run->class_names[k]))
            goto oom;
    if (!append(&history, &hl, &hc, "%s", ""))
        goto oom;
    const cr_history *h = &run->history;
    for (size_t e = 0; e < h->epochs; e++)
        if (!append(&history, &hl, &hc, "%s%.17g %.17g %.17g %.17g %.17g", e ? ";" : "",
                    h->train_loss[e], h->train_acc[e], h->val_loss[e], h->val_acc[e],
                    h->seconds[e]))
            goto oom;

    meta_add(meta, "chainrule.format", "%s", FORMAT);
    meta_add(meta, "chainrule.activation", "%s", nn_activation_name(run->activation));
    meta_add(meta, "chainrule.loss", "cross_entropy");
    meta_add(meta, "chainrule.dtype", "%s", run->dtype == AD_F32 ? "f32" : "f64");
    meta_add(meta, "chainrule.input_scale", "%.9g", (double)run->input_scale);
    meta_add(meta, "chainrule.optimizer", "%s", run->optimizer);
    for (size_t i = 0; i < N_OPTIM_FIELDS; i++) {
        const char *base = (const char *)&run->optim + optim_fields[i].offset;
        if (optim_fields[i].is_int)
            meta_add(meta, optim_fields[i].key, "%d", *(const int *)(const void *)base);
        else
            meta_add(meta, optim_fields[i].key, "%.17g", *(const double *)(const void *)base);
    }
    if (opt)
        meta_add(meta, "chainrule.optimizer_steps", "%lld", (long long)nn_optimizer_steps(opt));
    meta_add(meta, "chainrule.schedule", "%s", nn_schedule_name(run->schedule));
    meta_add(meta, "chainrule.gamma", "%.17g", run->gamma);
    meta_add(meta, "chainrule.batch", "%lld", (long long)run->batch);
    meta_add(meta, "chainrule.seed", "%llu", (unsigned long long)run->seed);
    meta_add(meta, "chainrule.subset", "%lld", (long long)run->subset);
    meta_add(meta, "chainrule.val", "%lld", (long long)run->val);
    meta_add(meta, "chainrule.epochs", "%lld", (long long)run->epochs);
    meta_add(meta, "chainrule.epochs_done", "%lld", (long long)run->epochs_done);
    meta_add(meta, "chainrule.shuffle", "io_data_permutation(seed, epoch)");
    /* long values point at their own buffers */
    const char *long_keys[] = {"chainrule.widths", "chainrule.class_names", "chainrule.history",
                               "chainrule.optimizer_state"};
    const char *long_values[] = {widths, names, history, header_hex};
    for (int i = 0; i < (opt ? 4 : 3) && meta->count < MAX_META; i++) {
        meta->meta[meta->count].key = long_keys[i];
        meta->meta[meta->count].value = long_values[i];
        meta->count++;
    }
    ad_error cerr;
    if (io_checkpoint_write(path, t, (size_t)(ntensors + (nslots < 8 ? nslots : 8)), meta->meta,
                            meta->count, &cerr) != 0) {
        fail(err, errlen, "%s", cerr.message);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    fail(err, errlen, "%s: out of memory", path);
out:
    free(t);
    free(meta);
    free(widths);
    free(names);
    free(history);
    free(header_hex);
    free(state);
    return rc;
}

/* ----------------------------------------------------------------- loading */

typedef struct {
    const io_checkpoint *ck;
    const char *path;
    char *err;
    size_t errlen;
    bool allow_nonfinite;
} reader;

static const char *need(reader *r, const char *key)
{
    const char *v = io_checkpoint_meta(r->ck, key);
    if (!v)
        fail(r->err, r->errlen, "%s: metadata '%s' is missing", r->path, key);
    return v;
}

static int bad(reader *r, const char *key, const char *v)
{
    return fail(r->err, r->errlen, "%s: metadata %s '%.60s' is not valid", r->path, key, v);
}

static int get_double(reader *r, const char *key, double *out)
{
    const char *v = need(r, key);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0')
        return bad(r, key, v);
    *out = d;
    return 0;
}

static int get_int(reader *r, const char *key, long long lo, long long hi, long long *out)
{
    const char *v = need(r, key);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    long long k = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE || k < lo || k > hi)
        return bad(r, key, v);
    *out = k;
    return 0;
}

static int parse_widths(reader *r, cr_run *run)
{
    const char *key = "chainrule.widths", *v = need(r, key);
    if (!v)
        return -1;
    const char *p = v;
    run->nwidths = 0;
    for (;;) {
        char *end;
        errno = 0;
        long long w = strtoll(p, &end, 10);
        if (end == p || errno == ERANGE || w < 1 || w > (1 << 24) ||
            run->nwidths == CR_MAX_WIDTHS || (*end != ',' && *end != '\0'))
            return bad(r, key, v);
        run->widths[run->nwidths++] = w;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    if (run->nwidths < 2)
        return bad(r, key, v);
    return 0;
}

static int parse_class_names(reader *r, cr_run *run)
{
    const char *key = "chainrule.class_names", *v = need(r, key);
    char why[128];
    if (!v)
        return -1;
    if (cr_run_parse_class_names(run, v, why, sizeof why) != 0)
        return fail(r->err, r->errlen, "%s: metadata %s is not valid: %s", r->path, key, why);
    if (run->nclasses < run->widths[run->nwidths - 1])
        return fail(r->err, r->errlen, "%s: %d class names for %lld outputs", r->path,
                    run->nclasses, (long long)run->widths[run->nwidths - 1]);
    return 0;
}

static int parse_history(reader *r, cr_run *run)
{
    const char *key = "chainrule.history", *v = need(r, key);
    if (!v)
        return -1;
    const char *p = v;
    while (*p) {
        double f[5];
        for (int k = 0; k < 5; k++) {
            char *end;
            f[k] = strtod(p, &end);
            if (end == p)
                return bad(r, key, v);
            p = end;
        }
        if (cr_history_add(&run->history, f[0], f[1], f[2], f[3], f[4]) != 0)
            return fail(r->err, r->errlen, "%s: out of memory", r->path);
        if (*p == ';')
            p++;
        else if (*p != '\0')
            return bad(r, key, v);
    }
    return 0;
}

/* Every field of run from the metadata. */
static int read_run(reader *r, cr_run *run)
{
    const char *v;
    long long k;
    double d;
    if (!(v = need(r, "chainrule.format")))
        return fail(r->err, r->errlen,
                    "%s: not a chainrule model (its metadata has no chainrule.format)", r->path);
    if (strcmp(v, FORMAT) != 0)
        return fail(r->err, r->errlen, "%s: format '%.40s', this chainrule reads '%s'", r->path, v,
                    FORMAT);
    if (parse_widths(r, run))
        return -1;
    if (!(v = need(r, "chainrule.activation")))
        return -1;
    int a = nn_activation_from_name(v);
    if (a < 0)
        return bad(r, "chainrule.activation", v);
    run->activation = (nn_activation)a;
    if (!(v = need(r, "chainrule.loss")))
        return -1;
    if (strcmp(v, "cross_entropy") != 0)
        return bad(r, "chainrule.loss", v);
    if (!(v = need(r, "chainrule.dtype")))
        return -1;
    if (strcmp(v, "f32") != 0 && strcmp(v, "f64") != 0)
        return bad(r, "chainrule.dtype", v);
    run->dtype = strcmp(v, "f32") == 0 ? AD_F32 : AD_F64;
    if (get_double(r, "chainrule.input_scale", &d))
        return -1;
    if (!(d > 0 && d < 1e30))
        return bad(r, "chainrule.input_scale", need(r, "chainrule.input_scale"));
    run->input_scale = (float)d;
    if (parse_class_names(r, run))
        return -1;
    if (!(v = need(r, "chainrule.optimizer")))
        return -1;
    int kind = nn_optim_from_name(v);
    if (kind < 0 || strlen(v) >= sizeof run->optimizer)
        return bad(r, "chainrule.optimizer", v);
    snprintf(run->optimizer, sizeof run->optimizer, "%s", v);
    run->optim = nn_optim_defaults((nn_optim_kind)kind);
    for (size_t i = 0; i < N_OPTIM_FIELDS; i++) {
        char *base = (char *)&run->optim + optim_fields[i].offset;
        if (optim_fields[i].is_int) {
            if (get_int(r, optim_fields[i].key, 0, 1, &k))
                return -1;
            *(int *)(void *)base = (int)k;
        } else {
            if (get_double(r, optim_fields[i].key, (double *)(void *)base))
                return -1;
        }
    }
    if (!(v = need(r, "chainrule.schedule")))
        return -1;
    int s = nn_schedule_from_name(v);
    if (s < 0)
        return bad(r, "chainrule.schedule", v);
    run->schedule = (nn_schedule_kind)s;
    if (get_double(r, "chainrule.gamma", &run->gamma))
        return -1;
    if (!(run->gamma > 0 && run->gamma <= 1))
        return bad(r, "chainrule.gamma", need(r, "chainrule.gamma"));
    if (get_int(r, "chainrule.batch", 1, 1 << 20, &k))
        return -1;
    run->batch = k;
    if (!(v = need(r, "chainrule.seed")))
        return -1;
    char *end;
    errno = 0;
    unsigned long long seed = strtoull(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE || v[0] == '-')
        return bad(r, "chainrule.seed", v);
    run->seed = (uint64_t)seed;
    if (get_int(r, "chainrule.subset", 0, INT64_MAX, &k))
        return -1;
    run->subset = k;
    if (get_int(r, "chainrule.val", 0, INT64_MAX, &k))
        return -1;
    run->val = k;
    if (get_int(r, "chainrule.epochs", 1, 1000000, &k))
        return -1;
    run->epochs = k;
    if (get_int(r, "chainrule.epochs_done", 0, 1000000, &k))
        return -1;
    run->epochs_done = k;
    if (parse_history(r, run))
        return -1;
    if ((int64_t)run->history.epochs != run->epochs_done)
        return fail(r->err, r->errlen, "%s: history of %zu epochs but epochs_done is %lld", r->path,
                    run->history.epochs, (long long)run->epochs_done);
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The optimizer with its saved state. */
static int read_optimizer(reader *r, const cr_run *run, nn_model *m, nn_optimizer **out)
{
    nn_optimizer *o = cr_run_create_optimizer(run, m, r->err, r->errlen);
    if (!o)
        return -1;
    size_t esize = run->dtype == AD_F32 ? sizeof(float) : sizeof(double);
    size_t bytes = nn_optimizer_state_bytes(o);
    size_t data_bytes = (size_t)nn_optimizer_state_count(o) * esize;
    size_t header = bytes - data_bytes, n = (size_t)nn_model_param_count(m);
    const char *hex = need(r, "chainrule.optimizer_state");
    unsigned char *state = hex ? malloc(bytes) : NULL;
    if (!hex)
        goto fail;
    if (!state) {
        fail(r->err, r->errlen, "%s: out of memory", r->path);
        goto fail;
    }
    if (strlen(hex) != 2 * header) {
        fail(r->err, r->errlen, "%s: the optimizer state header has %zu hex digits, not %zu",
             r->path, strlen(hex), 2 * header);
        goto fail;
    }
    for (size_t i = 0; i < header; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fail(r->err, r->errlen, "%s: the optimizer state header is not hex", r->path);
            goto fail;
        }
        state[i] = (unsigned char)(hi * 16 + lo);
    }
    for (int s = 0; s < nn_optimizer_state_slots(o); s++) {
        char name[80];
        snprintf(name, sizeof name, "optimizer.%s", nn_optimizer_slot_name(o, s));
        ad_error cerr;
        if (io_checkpoint_copy(r->ck, name, run->dtype == AD_F32 ? AD_F32 : AD_F64, 1, &n,
                               state + header + (size_t)s * n * esize, &cerr) != 0) {
            fail(r->err, r->errlen, "%s", cerr.message);
            goto fail;
        }
    }
    if (nn_optimizer_load_state(o, state, bytes) != 0) {
        fail(r->err, r->errlen, "%s: %s", r->path, nn_optimizer_error(o));
        goto fail;
    }
    int64_t bad = nn_optimizer_nonfinite_state(o);
    if (bad != 0 && !r->allow_nonfinite) {
        fail(r->err, r->errlen,
             "%s: %lld of %lld optimizer state values are NaN or infinite (a diverged run); "
             "--allow-nonfinite loads it anyway",
             r->path, (long long)bad, (long long)nn_optimizer_state_count(o));
        goto fail;
    }
    free(state);
    *out = o;
    return 0;
fail:
    free(state);
    nn_optimizer_free(o);
    return -1;
}

int cr_checkpoint_load(const char *path, cr_run *run, nn_model **model, nn_optimizer **opt,
                       bool allow_nonfinite, char *err, size_t errlen)
{
    io_checkpoint *ck = NULL;
    nn_model *m = NULL;
    ad_error cerr;
    cr_run_defaults(run);
    *model = NULL;
    if (opt)
        *opt = NULL;
    if (!(ck = io_checkpoint_read(path, &cerr))) {
        fail(err, errlen, "%s", cerr.message);
        goto fail;
    }
    if (!io_checkpoint_verified(ck)) {
        fail(err, errlen, "%s: no valid chainrule checksum; not a checkpoint written by chainrule",
             path);
        goto fail;
    }
    reader r = {ck, path, err, errlen, allow_nonfinite};
    if (read_run(&r, run))
        goto fail;
    if (!(m = cr_run_build_model(run, err, errlen)))
        goto fail;
    char *params = nn_model_params(m);
    size_t esize = run->dtype == AD_F32 ? sizeof(float) : sizeof(double);
    for (int i = 0; i < nn_model_param_tensors(m); i++) {
        nn_param_info info;
        size_t shape[2];
        if (nn_model_param_info(m, i, &info) != 0) {
            fail(err, errlen, "%s", nn_model_error(m));
            goto fail;
        }
        for (int k = 0; k < info.ndim; k++)
            shape[k] = (size_t)info.shape[k];
        if (io_checkpoint_copy(ck, info.name, run->dtype == AD_F32 ? AD_F32 : AD_F64, info.ndim,
                               shape, params + (size_t)info.offset * esize, &cerr) != 0) {
            fail(err, errlen, "%s", cerr.message);
            goto fail;
        }
    }
    int64_t bad = nn_model_nonfinite_params(m);
    if (bad != 0 && !allow_nonfinite) {
        fail(err, errlen,
             "%s: %lld of %lld weights are NaN or infinite (a diverged run); --allow-nonfinite "
             "loads it anyway",
             path, (long long)bad, (long long)nn_model_param_count(m));
        goto fail;
    }
    if (opt && read_optimizer(&r, run, m, opt))
        goto fail;
    io_checkpoint_free(ck);
    *model = m;
    return 0;
fail:
    io_checkpoint_free(ck);
    nn_model_free(m);
    cr_run_finish(run);
    return -1;
}

/* ------------------------------------------------------------------ locking */

int cr_checkpoint_lock(const char *path, char *err, size_t errlen)
{
    char lock[4096];
    if ((size_t)snprintf(lock, sizeof lock, "%s.lock", path) >= sizeof lock)
        return fail(err, errlen, "file name too long: %s", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return fail(err, errlen, "cannot create the lock file %s: %s", lock, strerror(errno));
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock q;
        memset(&q, 0, sizeof q);
        q.l_type = F_WRLCK;
        q.l_whence = SEEK_SET;
        long holder = fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
        close(fd);
        if (e == EACCES || e == EAGAIN)
            return fail(err, errlen,
                        "%s is being written by another run: process %ld holds %s; wait for it "
                        "or save elsewhere",
                        path, holder, lock);
        return fail(err, errlen, "cannot lock %s: %s", lock, strerror(e));
    }
    /* the holder's pid, for people looking at the file (the lock itself is
       what counts: it goes away with the process) */
    if (ftruncate(fd, 0) == 0)
        dprintf(fd, "%ld\n", (long)getpid());
    return fd;
}
