/*
 * run.c -- training checkpoints: a model file (nn_model_save_safetensors:
 * the parameters, running statistics and architecture) that also holds what
 * a training run needs to continue bit for bit (docs/training.md):
 *
 * Tensors, beside the model's:
 *   optimizer.<slot>       (n)   the optimizer's state, one tensor per slot ("exp_avg",
 *                                "exp_avg_sq", "momentum", ...), over the flat parameter
 *                                vector in the order of the model's tensors
 * Metadata (all strings), beside the architecture (NN_ARCH_KEY):
 *   chainrule.format       NN_CHECKPOINT_FORMAT
 *   chainrule.optimizer    the optimizer's name ("sgd", "momentum", "adam", ...);
 *   chainrule.optim.*      every nn_optim_config setting
 *   chainrule.optimizer_state  hex of nn_optimizer_save_state's header (kind, dtype, n,
 *                          slots, step count, lr); the rest of those bytes is the
 *                          optimizer.* tensors
 *   chainrule.rng          the graph generator's state (dropout masks), 4 hex words
 *   chainrule.input_scale, chainrule.class_names ("T-shirt/top,Trouser,...")
 *   chainrule.schedule, chainrule.gamma, chainrule.batch, chainrule.seed,
 *   chainrule.subset, chainrule.val, chainrule.epochs, chainrule.epochs_done
 *   chainrule.shuffle      how the batch order is drawn: io_data_permutation(seed, epoch)
 *                          reseeds its generator from (seed, epoch) every epoch, so seed
 *                          and epochs_done are the whole state of the shuffling
 *   chainrule.history      per-epoch "loss acc val_loss val_acc seconds" separated by ';'
 * Numbers are written with 17 significant digits, so they read back exactly.
 * Every field is range-checked on load: the checksum guards against
 * corruption, not against crafted files.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_impl.h"

#define MAX_META 48

/* ------------------------------------------------------------------- runs */

void nn_run_init(nn_run *run)
{
    if (!run)
        return;
    memset(run, 0, sizeof *run);
    snprintf(run->optimizer, sizeof run->optimizer, "sgd");
    run->lr = 0.01;
    run->schedule = NN_SCHED_CONSTANT;
    run->gamma = 0.9;
    run->batch = 32;
    run->input_scale = 1.0;
    run->epochs = 1;
}

void nn_run_finish(nn_run *run)
{
    if (!run)
        return;
    free(run->class_names);
    free(run->history);
    run->class_names = NULL;
    run->history = NULL;
    run->nclasses = 0;
    run->nhistory = 0;
}

int nn_run_resize_classes(nn_run *run, int n, ad_error *err)
{
    if (!run || n < 0 || n > IO_DATA_MAX_CLASSES)
        return ad_error_set(err, AD_EINVAL, "nn_run_resize_classes: %d classes", n);
    void *p = realloc(run->class_names, (size_t)(n > 0 ? n : 1) * sizeof *run->class_names);
    if (!p)
        return ad_error_set(err, AD_ENOMEM, "nn_run_resize_classes: out of memory");
    run->class_names = p;
    for (int k = run->nclasses; k < n; k++)
        run->class_names[k][0] = '\0';
    run->nclasses = n;
    return 0;
}

int nn_run_set_class_names(nn_run *run, const char *list, ad_error *err)
{
    if (!run || !list)
        return ad_error_set(err, AD_EINVAL, "nn_run_set_class_names: NULL argument");
    int count = 1;
    for (const char *p = list; *p; p++)
        count += *p == ',';
    if (count > IO_DATA_MAX_CLASSES)
        return ad_error_set(err, AD_EINVAL, "%d names, more than %d classes", count,
                            IO_DATA_MAX_CLASSES);
    if (nn_run_resize_classes(run, count, err) != 0)
        return -1;
    const char *p = list;
    for (int k = 0; k < count; k++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= NN_CLASS_NAME_MAX)
            return ad_error_set(err, AD_EINVAL, "each name needs 1 to %d characters",
                                NN_CLASS_NAME_MAX - 1);
        /* names are printed one per line and to terminals */
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                return ad_error_set(err, AD_EINVAL, "name %d has a control character (byte 0x%02x)",
                                    k + 1, (unsigned char)p[i]);
        memcpy(run->class_names[k], p, len);
        run->class_names[k][len] = '\0';
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

int nn_run_add_epoch(nn_run *run, const nn_epoch_record *e, ad_error *err)
{
    if (!run || !e)
        return ad_error_set(err, AD_EINVAL, "nn_run_add_epoch: NULL argument");
    nn_epoch_record *h = realloc(run->history, (size_t)(run->nhistory + 1) * sizeof *h);
    if (!h)
        return ad_error_set(err, AD_ENOMEM, "nn_run_add_epoch: out of memory");
    run->history = h;
    h[run->nhistory++] = *e;
    return 0;
}

/* ----------------------------------------------------------------- saving */

/* The optimizer settings kept in the metadata, by key. */
typedef struct {
    const char *key;
    size_t offset; /* in nn_optim_config */
    bool is_int;
    bool optional; /* newer than the format: absent from older files, which mean 0 */
} optim_field;

#define DFIELD(f)                                                                                  \
    {                                                                                              \
        "chainrule.optim." #f, offsetof(nn_optim_config, f), false, false                          \
    }
#define IFIELD(f)                                                                                  \
    {                                                                                              \
        "chainrule.optim." #f, offsetof(nn_optim_config, f), true, false                           \
    }
#define IFIELD_NEW(f)                                                                              \
    {                                                                                              \
        "chainrule.optim." #f, offsetof(nn_optim_config, f), true, true                            \
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
    IFIELD_NEW(fused),
};
#define N_OPTIM_FIELDS (sizeof optim_fields / sizeof optim_fields[0])

/* Metadata values: short ones formatted into fixed slots, long ones owned. */
typedef struct {
    io_ckpt_meta meta[MAX_META];
    char text[MAX_META][80];
    char *owned[MAX_META];
    size_t count;
    bool oom;
} meta_list;

static void meta_add(meta_list *l, const char *key, const char *fmt, ...) AD_PRINTF_LIKE(3, 4);

static void meta_add(meta_list *l, const char *key, const char *fmt, ...)
{
    if (l->count == MAX_META) {
        l->oom = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text[l->count], sizeof l->text[0], fmt, ap);
    va_end(ap);
    l->meta[l->count].key = key;
    l->meta[l->count].value = l->text[l->count];
    l->count++;
}

/* A long value (taken over: freed with the list); NULL marks the list failed. */
static void meta_own(meta_list *l, const char *key, char *value)
{
    if (!value || l->count == MAX_META) {
        free(value);
        l->oom = true;
        return;
    }
    l->owned[l->count] = value;
    l->meta[l->count].key = key;
    l->meta[l->count].value = value;
    l->count++;
}

static void meta_free(meta_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->owned[i]);
    free(l);
}

/* A growing string; NULL when out of memory. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void text_add(text *t, const char *fmt, ...) AD_PRINTF_LIKE(2, 3);

static void text_add(text *t, const char *fmt, ...)
{
    char piece[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    if (k < 0 || t->failed)
        return;
    if (t->len + (size_t)k + 1 > t->cap) {
        size_t ncap = (t->cap ? t->cap * 2 : 256) + (size_t)k;
        char *nb = realloc(t->buf, ncap);
        if (!nb) {
            t->failed = true;
            return;
        }
        t->buf = nb;
        t->cap = ncap;
    }
    memcpy(t->buf + t->len, piece, (size_t)k + 1);
    t->len += (size_t)k;
}

/* The string made (the caller's), or NULL when it failed. */
static char *text_take(text *t)
{
    if (t->failed || !t->buf) {
        free(t->buf);
        return t->failed ? NULL : calloc(1, 1);
    }
    return t->buf;
}

static char *hex_of(const unsigned char *b, size_t n)
{
    char *h = malloc(2 * n + 1);
    if (!h)
        return NULL;
    for (size_t i = 0; i < n; i++)
        snprintf(h + 2 * i, 3, "%02x", b[i]);
    h[2 * n] = '\0';
    return h;
}

static void run_meta(meta_list *meta, const nn_run *run)
{
    meta_add(meta, "chainrule.input_scale", "%.17g", run->input_scale);
    meta_add(meta, "chainrule.lr", "%.17g", run->lr);
    meta_add(meta, "chainrule.schedule", "%s", nn_schedule_name(run->schedule));
    meta_add(meta, "chainrule.gamma", "%.17g", run->gamma);
    meta_add(meta, "chainrule.batch", "%lld", (long long)run->batch);
    meta_add(meta, "chainrule.seed", "%llu", (unsigned long long)run->seed);
    meta_add(meta, "chainrule.subset", "%lld", (long long)run->subset);
    meta_add(meta, "chainrule.val", "%lld", (long long)run->val);
    meta_add(meta, "chainrule.epochs", "%lld", (long long)run->epochs);
    meta_add(meta, "chainrule.epochs_done", "%lld", (long long)run->epochs_done);
    meta_add(meta, "chainrule.shuffle", "io_data_permutation(seed, epoch)");
    text names = {0}, hist = {0};
    for (int k = 0; k < run->nclasses; k++)
        text_add(&names, "%s%s", k ? "," : "", run->class_names[k]);
    meta_own(meta, "chainrule.class_names", text_take(&names));
    for (int64_t e = 0; e < run->nhistory; e++) {
        const nn_epoch_record *r = &run->history[e];
        text_add(&hist, "%s%.17g %.17g %.17g %.17g %.17g", e ? ";" : "", r->loss, r->accuracy,
                 r->val_loss, r->val_accuracy, r->seconds);
    }
    meta_own(meta, "chainrule.history", text_take(&hist));
}

int nn_checkpoint_save(const char *path, nn_model *m, const nn_optimizer *opt, const nn_run *run,
                       ad_error *err)
{
    if (!path || !m || !run)
        return ad_error_set(err, AD_EINVAL, "nn_checkpoint_save: NULL argument");
    if (!nn_model_has_architecture(m))
        return ad_error_set(err, AD_EUNSUPPORTED,
                            "nn_checkpoint_save: %s: the model has no architecture to store (a "
                            "chain of the library's layers)",
                            path);
    if (opt && nn_optimizer_model(opt) != m)
        return ad_error_set(err, AD_EINVAL,
                            "nn_checkpoint_save: the optimizer is bound to another model");
    /* a diverged run can have a finite loss: never save non-finite values */
    int64_t bad_params = nn_model_nonfinite_params(m);
    int64_t bad_state = opt ? nn_optimizer_nonfinite_state(opt) : 0;
    if (bad_params != 0 || bad_state != 0)
        return ad_error_set(err, AD_ESTATE,
                            "training diverged: %lld of %lld weights and %lld of %lld optimizer "
                            "state values are NaN or infinite; %s was not written",
                            (long long)bad_params, (long long)nn_model_param_count(m),
                            (long long)bad_state,
                            (long long)(opt ? nn_optimizer_state_count(opt) : 0), path);
    int rc = -1;
    int nslots = opt ? nn_optimizer_state_slots(opt) : 0;
    size_t esize = nn_model_dtype(m) == AD_F32 ? sizeof(float) : sizeof(double);
    int64_t n = nn_model_param_count(m);
    io_array *t = calloc((size_t)nslots + 1, sizeof *t);
    char(*slot_names)[64] = calloc((size_t)nslots + 1, sizeof *slot_names);
    meta_list *meta = calloc(1, sizeof *meta);
    unsigned char *state = NULL;
    if (!t || !meta || !slot_names)
        goto oom;
    if (opt) {
        /* the serialized state: a header (kept as hex) then the slots (as tensors) */
        size_t bytes = nn_optimizer_state_bytes(opt);
        size_t header = bytes - (size_t)nn_optimizer_state_count(opt) * esize;
        if (!(state = malloc(bytes)))
            goto oom;
        if (nn_optimizer_save_state(opt, state, bytes) != 0) {
            ad_error_set(err, AD_EINVAL, "nn_checkpoint_save: %s", nn_optimizer_error(opt));
            goto out;
        }
        for (int s = 0; s < nslots; s++) {
            snprintf(slot_names[s], sizeof slot_names[s], "optimizer.%s",
                     nn_optimizer_slot_name(opt, s));
            t[s] = (io_array){.name = slot_names[s],
                              .dtype = nn_model_dtype(m),
                              .ndim = 1,
                              .shape = {n},
                              .data = state + header + (size_t)s * (size_t)n * esize};
        }
        const nn_optim_config *cfg = nn_optimizer_config(opt);
        for (size_t i = 0; i < N_OPTIM_FIELDS; i++) {
            const char *base = (const char *)cfg + optim_fields[i].offset;
            if (optim_fields[i].is_int)
                meta_add(meta, optim_fields[i].key, "%d", *(const int *)(const void *)base);
            else
                meta_add(meta, optim_fields[i].key, "%.17g", *(const double *)(const void *)base);
        }
        meta_add(meta, "chainrule.optimizer_steps", "%lld", (long long)nn_optimizer_steps(opt));
        meta_own(meta, "chainrule.optimizer_state", hex_of(state, header));
    }
    meta_add(meta, "chainrule.format", "%s", NN_CHECKPOINT_FORMAT);
    /* the name chosen ("momentum" for SGD with momentum) when it names the
       optimizer's kind, else the kind's */
    const char *oname = run->optimizer;
    if (opt && nn_optim_from_name(oname) != (int)nn_optimizer_config(opt)->kind)
        oname = nn_optim_name(nn_optimizer_config(opt)->kind);
    meta_add(meta, "chainrule.optimizer", "%s", oname);
    uint64_t rng[4];
    ad_graph_rng_state(nn_model_graph(m), rng);
    meta_add(meta, "chainrule.rng", "%016llx%016llx%016llx%016llx", (unsigned long long)rng[0],
             (unsigned long long)rng[1], (unsigned long long)rng[2], (unsigned long long)rng[3]);
    run_meta(meta, run);
    if (meta->oom)
        goto oom;
    rc = nn_model_write_file(m, path, t, (size_t)nslots, meta->meta, meta->count, err);
    goto out;
oom:
    ad_error_set(err, AD_ENOMEM, "nn_checkpoint_save: %s: out of memory", path);
out:
    free(t);
    free(slot_names);
    if (meta)
        meta_free(meta);
    free(state);
    return rc;
}

/* ---------------------------------------------------------------- loading */

typedef struct {
    const io_checkpoint *ck;
    const char *path;
    ad_error *err;
} reader;

static const char *need(reader *r, const char *key)
{
    const char *v = io_checkpoint_meta(r->ck, key);
    if (!v)
        ad_error_set(r->err, AD_EFORMAT, "%.100s: metadata '%s' is missing", r->path, key);
    return v;
}

static int bad(reader *r, const char *key, const char *v)
{
    return ad_error_set(r->err, AD_EFORMAT, "%.100s: metadata %s '%.60s' is not valid", r->path,
                        key, v);
}

static int get_double(reader *r, const char *key, double lo, double hi, double *out)
{
    const char *v = need(r, key);
    if (!v)
        return -1;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || !(d >= lo && d <= hi))
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

static int parse_history(reader *r, nn_run *run)
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
        nn_epoch_record e = {f[0], f[1], f[2], f[3], f[4]};
        if (nn_run_add_epoch(run, &e, r->err) != 0)
            return -1;
        if (*p == ';')
            p++;
        else if (*p != '\0')
            return bad(r, key, v);
    }
    return 0;
}

/* Every field of run from the metadata. */
static int read_run(reader *r, nn_run *run, int64_t outputs)
{
    const char *v;
    long long k;
    ad_error why;
    if (get_double(r, "chainrule.input_scale", 1e-30, 1e30, &run->input_scale))
        return -1;
    if (!(v = need(r, "chainrule.class_names")))
        return -1;
    if (nn_run_set_class_names(run, v, &why) != 0)
        return ad_error_set(r->err, AD_EFORMAT,
                            "%.100s: metadata chainrule.class_names is not "
                            "valid: %s",
                            r->path, why.message);
    if (run->nclasses < outputs)
        return ad_error_set(r->err, AD_EFORMAT, "%.100s: %d class names for %lld outputs", r->path,
                            run->nclasses, (long long)outputs);
    if (!(v = need(r, "chainrule.optimizer")))
        return -1;
    if (nn_optim_from_name(v) < 0 || strlen(v) >= sizeof run->optimizer)
        return bad(r, "chainrule.optimizer", v);
    snprintf(run->optimizer, sizeof run->optimizer, "%s", v);
    if (get_double(r, "chainrule.lr", 0, 1e300, &run->lr))
        return -1;
    if (!(v = need(r, "chainrule.schedule")))
        return -1;
    int s = nn_schedule_from_name(v);
    if (s < 0)
        return bad(r, "chainrule.schedule", v);
    run->schedule = (nn_schedule_kind)s;
    if (get_double(r, "chainrule.gamma", 0, 1, &run->gamma))
        return -1;
    if (!(run->gamma > 0))
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
    if (run->nhistory != run->epochs_done)
        return ad_error_set(r->err, AD_EFORMAT,
                            "%.100s: history of %lld epochs but epochs_done is %lld", r->path,
                            (long long)run->nhistory, (long long)run->epochs_done);
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

/* n bytes from 2n hex digits; false when v is not that. */
static bool unhex(const char *v, unsigned char *out, size_t n)
{
    if (strlen(v) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return true;
}

/* The optimizer's configuration from the metadata. */
static int read_config(reader *r, const char *name, nn_optim_config *cfg)
{
    *cfg = nn_optim_defaults((nn_optim_kind)nn_optim_from_name(name));
    for (size_t i = 0; i < N_OPTIM_FIELDS; i++) {
        char *base = (char *)cfg + optim_fields[i].offset;
        const char *v = optim_fields[i].optional ? io_checkpoint_meta(r->ck, optim_fields[i].key)
                                                 : need(r, optim_fields[i].key);
        if (!v && optim_fields[i].optional)
            continue; /* the default's 0 */
        if (!v)
            return -1;
        char *end;
        if (optim_fields[i].is_int) {
            long k = strtol(v, &end, 10);
            if (end == v || *end != '\0' || (k != 0 && k != 1))
                return bad(r, optim_fields[i].key, v);
            *(int *)(void *)base = (int)k;
        } else {
            double d = strtod(v, &end);
            if (end == v || *end != '\0')
                return bad(r, optim_fields[i].key, v);
            *(double *)(void *)base = d; /* ranges: nn_optimizer_new's checks */
        }
    }
    return 0;
}

/* The optimizer with its saved state. */
static nn_optimizer *read_optimizer(reader *r, const nn_run *run, nn_model *m, bool allow_nonfinite)
{
    nn_optim_config cfg;
    if (read_config(r, run->optimizer, &cfg) != 0)
        return NULL;
    ad_error oerr;
    nn_optimizer *o = nn_optimizer_new(m, &cfg, &oerr);
    if (!o) {
        ad_error_set(r->err, AD_EFORMAT, "%.100s: %.150s", r->path, oerr.message);
        return NULL;
    }
    size_t esize = nn_model_dtype(m) == AD_F32 ? sizeof(float) : sizeof(double);
    size_t bytes = nn_optimizer_state_bytes(o);
    size_t header = bytes - (size_t)nn_optimizer_state_count(o) * esize;
    int64_t n = nn_model_param_count(m);
    const char *hex = need(r, "chainrule.optimizer_state");
    unsigned char *state = hex ? malloc(bytes) : NULL;
    if (!hex)
        goto fail;
    if (!state) {
        ad_error_set(r->err, AD_ENOMEM, "%.100s: out of memory", r->path);
        goto fail;
    }
    if (!unhex(hex, state, header)) {
        ad_error_set(r->err, AD_EFORMAT,
                     "%.100s: the optimizer state header is not %zu bytes of hex digits", r->path,
                     header);
        goto fail;
    }
    for (int s = 0; s < nn_optimizer_state_slots(o); s++) {
        char name[80];
        snprintf(name, sizeof name, "optimizer.%s", nn_optimizer_slot_name(o, s));
        if (io_checkpoint_copy(r->ck, name, nn_model_dtype(m), 1, &n,
                               state + header + (size_t)s * (size_t)n * esize, r->err) != 0)
            goto fail;
    }
    if (nn_optimizer_load_state(o, state, bytes) != 0) {
        ad_error_set(r->err, AD_EFORMAT, "%.100s: %.150s", r->path, nn_optimizer_error(o));
        goto fail;
    }
    int64_t nonfinite = nn_optimizer_nonfinite_state(o);
    if (nonfinite != 0 && !allow_nonfinite) {
        ad_error_set(r->err, AD_ESTATE,
                     "%.100s: %lld of %lld optimizer state values are NaN or infinite (a "
                     "diverged run)",
                     r->path, (long long)nonfinite, (long long)nn_optimizer_state_count(o));
        goto fail;
    }
    free(state);
    return o;
fail:
    free(state);
    nn_optimizer_free(o);
    return NULL;
}

nn_model *nn_checkpoint_load(const char *path, int64_t batch, unsigned flags, nn_optimizer **opt,
                             nn_run *run, ad_error *err)
{
    io_checkpoint *ck = NULL;
    nn_model *m = NULL;
    nn_run_init(run);
    if (opt)
        *opt = NULL;
    if (!path || !run) {
        ad_error_set(err, AD_EINVAL, "nn_checkpoint_load: NULL argument");
        return NULL;
    }
    if (!(ck = io_checkpoint_read(path, err)))
        return NULL;
    reader r = {ck, path, err};
    const char *v = io_checkpoint_meta(ck, "chainrule.format");
    const char *arch = io_checkpoint_meta(ck, NN_ARCH_KEY);
    if (!io_checkpoint_verified(ck)) {
        ad_error_set(err, AD_EFORMAT,
                     "%.100s: no valid chainrule checksum; not a checkpoint written by chainrule",
                     path);
        goto fail;
    }
    if (v && strcmp(v, NN_CHECKPOINT_FORMAT) != 0) {
        ad_error_set(err, AD_EUNSUPPORTED, "%.100s: format '%.40s', this chainrule reads '%s'%s",
                     path, v, NN_CHECKPOINT_FORMAT,
                     strcmp(v, "chainrule-mlp/1") == 0
                         ? " (an earlier chainrule's file, without the architecture: retrain it)"
                         : "");
        goto fail;
    }
    if (!arch) {
        ad_error_set(err, AD_EFORMAT, "%.100s: not a chainrule model (its metadata has no %s)",
                     path, NN_ARCH_KEY);
        goto fail;
    }
    if (!v) {
        ad_error_set(err, AD_EFORMAT,
                     "%.100s: a model without a training run (its metadata has no "
                     "chainrule.format): nn_model_load reads it; chainrule train --save and "
                     "nn_checkpoint_save write checkpoints",
                     path);
        goto fail;
    }
    ad_error aerr;
    if (!(m = nn_model_from_architecture(arch, batch, &aerr))) {
        ad_error_set(err, aerr.code, "%.100s: %.150s", path, aerr.message);
        goto fail;
    }
    if (read_run(&r, run, nn_model_out_features(m)) != 0)
        goto fail;
    if (nn_model_read_tensors(m, ck, path, NN_MODEL_ALLOW_OPTIMIZER, err) != 0)
        goto fail;
    int64_t nonfinite = nn_model_nonfinite_params(m);
    if (nonfinite != 0 && !(flags & NN_CHECKPOINT_ALLOW_NONFINITE)) {
        ad_error_set(err, AD_ESTATE,
                     "%.100s: %lld of %lld weights are NaN or infinite (a diverged run)", path,
                     (long long)nonfinite, (long long)nn_model_param_count(m));
        goto fail;
    }
    unsigned char rng[32];
    if (!(v = need(&r, "chainrule.rng")))
        goto fail;
    if (!unhex(v, rng, sizeof rng)) {
        bad(&r, "chainrule.rng", v);
        goto fail;
    }
    uint64_t words[4] = {0, 0, 0, 0};
    for (int w = 0; w < 4; w++)
        for (int b = 0; b < 8; b++)
            words[w] = words[w] << 8 | rng[8 * w + b];
    ad_graph_set_rng_state(nn_model_graph(m), words);
    if (opt && !(*opt = read_optimizer(&r, run, m, (flags & NN_CHECKPOINT_ALLOW_NONFINITE) != 0)))
        goto fail;
    io_checkpoint_free(ck);
    return m;
fail:
    io_checkpoint_free(ck);
    nn_model_free(m);
    nn_run_finish(run);
    return NULL;
}
