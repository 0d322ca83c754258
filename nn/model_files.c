/* Model files: a built model's parameters and batch-norm running
   statistics as .npz archives and safetensors files, through the io/
   readers and writers (docs/interop.md). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/checkpoint.h"
#include "chainrule/nn.h"
#include "io_impl.h"

/* ------------------------------------------------------------------ models */

/* A tensor of a model: a parameter or a batch-norm running statistic. */
typedef struct {
    char name[96];
    int ndim;
    size_t shape[AD_MAX_DIMS];
    void *data;
} model_tensor;

static io_status model_tensors(nn_model *m, const char *path, model_tensor **out, size_t *count,
                               io_error *err)
{
    *out = NULL;
    *count = 0;
    char *params = nn_model_params(m);
    char *state = nn_model_state(m);
    int nparams = nn_model_param_tensors(m), nstate = nn_model_state_tensors(m);
    if (!nn_model_graph(m) || !nn_model_output(m) || (nparams > 0 && !params))
        return io_fail(err, IO_EINVAL, "%s: the model is not built", path);
    size_t esize = nn_model_dtype(m) == AD_F32 ? sizeof(float) : sizeof(double);
    size_t n = (size_t)nparams + (size_t)nstate;
    model_tensor *t = io_alloc((n + 1) * sizeof *t);
    if (!t)
        return io_fail(err, IO_ENOMEM, "out of memory for %s", path);
    memset(t, 0, (n + 1) * sizeof *t);
    for (int i = 0; i < nparams + nstate; i++) {
        nn_param_info info;
        bool st = i >= nparams;
        int rc = st ? nn_model_state_info(m, i - nparams, &info) : nn_model_param_info(m, i, &info);
        if (rc != 0 || info.ndim < 0 || info.ndim > AD_MAX_DIMS) {
            io_free(t, (n + 1) * sizeof *t);
            return io_fail(err, IO_EINVAL, "%s: cannot describe tensor %d", path, i);
        }
        snprintf(t[i].name, sizeof t[i].name, "%s", info.name);
        t[i].ndim = info.ndim;
        for (int k = 0; k < info.ndim; k++)
            t[i].shape[k] = (size_t)info.shape[k];
        t[i].data = (st ? state : params) + (size_t)info.offset * esize;
    }
    *out = t;
    *count = n;
    return IO_OK;
}

io_status nn_model_save_npz(nn_model *m, const char *path, io_error *err)
{
    model_tensor *t;
    size_t n;
    if (!m || !path)
        return io_fail(err, IO_EINVAL, "nn_model_save_npz: NULL argument");
    io_status st = model_tensors(m, path, &t, &n, err);
    if (st != IO_OK)
        return st;
    io_array *a = io_alloc(n * sizeof *a);
    if (!a) {
        io_free(t, (n + 1) * sizeof *t);
        return io_fail(err, IO_ENOMEM, "out of memory writing %s", path);
    }
    io_dtype dt = nn_model_dtype(m) == AD_F32 ? IO_F32 : IO_F64;
    for (size_t i = 0; i < n; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].name = t[i].name;
        a[i].dtype = dt;
        a[i].ndim = t[i].ndim;
        for (int k = 0; k < t[i].ndim; k++)
            a[i].shape[k] = t[i].shape[k];
        a[i].data = t[i].data;
    }
    st = io_npz_write(path, a, n, err);
    io_free(a, n * sizeof *a);
    io_free(t, (n + 1) * sizeof *t);
    return st;
}

/* A file's tensors seen through one interface (an .npz or a checkpoint). */
typedef struct {
    const void *src;
    size_t (*count)(const void *src);
    const char *(*name_at)(const void *src, size_t i);
    /* false when absent */
    bool (*find)(const void *src, const char *name, int *ndim, const size_t **shape);
} tensor_source;

static bool shape_equal(int na, const size_t *a, int nb, const size_t *b)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Checks that src has every model tensor with its shape, and (without
   NN_MODEL_ALLOW_EXTRA) nothing else. */
static io_status check_source(const char *path, const tensor_source *s, const model_tensor *t,
                              size_t n, unsigned flags, io_error *err)
{
    char have[256], want[256];
    for (size_t i = 0; i < n; i++) {
        int ndim;
        const size_t *shape;
        if (!s->find(s->src, t[i].name, &ndim, &shape))
            return io_fail(err, IO_EMISMATCH, "%s: no tensor '%s' for the model", path, t[i].name);
        if (!shape_equal(ndim, shape, t[i].ndim, t[i].shape)) {
            bool transposed = ndim == 2 && t[i].ndim == 2 && shape[0] == t[i].shape[1] &&
                              shape[1] == t[i].shape[0];
            return io_fail(err, IO_EMISMATCH,
                           "%s: tensor '%s' has shape %s but the model expects %s%s", path,
                           t[i].name, io_shape_text(have, sizeof have, shape, ndim),
                           io_shape_text(want, sizeof want, t[i].shape, t[i].ndim),
                           transposed ? " (transposed? PyTorch's nn.Linear weight is (out, in), "
                                        "chainrule's is (in, out))"
                                      : "");
        }
    }
    if (flags & NN_MODEL_ALLOW_EXTRA)
        return IO_OK;
    size_t count = s->count(s->src);
    for (size_t k = 0; k < count; k++) {
        const char *name = s->name_at(s->src, k);
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(name, t[i].name) == 0;
        if (!known)
            return io_fail(err, IO_EMISMATCH,
                           "%s: tensor '%s' is not in the model (its tensors are named like "
                           "'%s'; pass NN_MODEL_ALLOW_EXTRA to ignore extra tensors)",
                           path, name, t[0].name);
    }
    return IO_OK;
}

static size_t npz_source_count(const void *src) { return io_npz_count(src); }
static const char *npz_source_name(const void *src, size_t i) { return io_npz_at(src, i)->name; }
static bool npz_source_find(const void *src, const char *name, int *ndim, const size_t **shape)
{
    const io_array *a = io_npz_find(src, name);
    if (!a)
        return false;
    *ndim = a->ndim;
    *shape = a->shape;
    return true;
}

io_status nn_model_load_npz(nn_model *m, const char *path, unsigned flags, io_error *err)
{
    model_tensor *t;
    size_t n;
    io_npz *npz = NULL;
    if (!m || !path)
        return io_fail(err, IO_EINVAL, "nn_model_load_npz: NULL argument");
    io_status st = model_tensors(m, path, &t, &n, err);
    if (st != IO_OK)
        return st;
    st = io_npz_read(path, &npz, err);
    if (st == IO_OK) {
        tensor_source s = {npz, npz_source_count, npz_source_name, npz_source_find};
        st = check_source(path, &s, t, n, flags, err);
    }
    io_dtype dt = nn_model_dtype(m) == AD_F32 ? IO_F32 : IO_F64;
    for (size_t i = 0; st == IO_OK && i < n; i++)
        st = io_array_copy(io_npz_find(npz, t[i].name), dt, t[i].ndim, t[i].shape, t[i].data, err);
    io_npz_destroy(npz);
    io_free(t, (n + 1) * sizeof *t);
    return st == IO_OK ? io_ok(err) : st;
}

static io_status from_ckpt(const io_ckpt_error *cerr, io_error *err)
{
    io_status st = IO_EINVAL;
    switch (cerr->status) {
    case IO_CKPT_OK:
        return io_ok(err);
    case IO_CKPT_ENOMEM:
        st = IO_ENOMEM;
        break;
    case IO_CKPT_EIO:
        st = IO_EIO;
        break;
    case IO_CKPT_EFORMAT:
        st = IO_EFORMAT;
        break;
    case IO_CKPT_EMISMATCH:
        st = IO_EMISMATCH;
        break;
    case IO_CKPT_EINVAL:
        st = IO_EINVAL;
        break;
    }
    return io_fail(err, st, "%s", cerr->message);
}

io_status nn_model_save_safetensors(nn_model *m, const char *path, io_error *err)
{
    model_tensor *t;
    size_t n;
    io_ckpt_error cerr;
    if (!m || !path)
        return io_fail(err, IO_EINVAL, "nn_model_save_safetensors: NULL argument");
    io_status st = model_tensors(m, path, &t, &n, err);
    if (st != IO_OK)
        return st;
    io_ckpt_tensor *c = io_alloc(n * sizeof *c);
    if (!c) {
        io_free(t, (n + 1) * sizeof *t);
        return io_fail(err, IO_ENOMEM, "out of memory writing %s", path);
    }
    io_ckpt_dtype dt = nn_model_dtype(m) == AD_F32 ? IO_CKPT_F32 : IO_CKPT_F64;
    for (size_t i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].name = t[i].name;
        c[i].dtype = dt;
        c[i].ndim = t[i].ndim;
        for (int k = 0; k < t[i].ndim; k++)
            c[i].shape[k] = t[i].shape[k];
        c[i].data = t[i].data;
    }
    /* a model built from the library's layers carries its architecture */
    char *arch = nn_model_architecture(m);
    io_ckpt_meta meta[1] = {{NN_ARCH_KEY, arch}};
    io_ckpt_status cst = io_checkpoint_write(path, c, n, arch ? meta : NULL, arch ? 1 : 0, &cerr);
    free(arch);
    io_free(c, n * sizeof *c);
    io_free(t, (n + 1) * sizeof *t);
    if (cst != IO_CKPT_OK)
        return from_ckpt(&cerr, err);
    return io_ok(err);
}

static size_t ckpt_source_count(const void *src) { return io_checkpoint_count(src); }
static const char *ckpt_source_name(const void *src, size_t i)
{
    return io_checkpoint_tensor_at(src, i)->name;
}
static bool ckpt_source_find(const void *src, const char *name, int *ndim, const size_t **shape)
{
    const io_ckpt_tensor *c = io_checkpoint_find(src, name);
    if (!c)
        return false;
    *ndim = c->ndim;
    *shape = c->shape;
    return true;
}

io_status nn_model_load_safetensors(nn_model *m, const char *path, unsigned flags, io_error *err)
{
    model_tensor *t;
    size_t n;
    io_checkpoint *ck = NULL;
    io_ckpt_error cerr;
    if (!m || !path)
        return io_fail(err, IO_EINVAL, "nn_model_load_safetensors: NULL argument");
    io_status st = model_tensors(m, path, &t, &n, err);
    if (st != IO_OK)
        return st;
    if (io_checkpoint_read(path, &ck, &cerr) != IO_CKPT_OK) {
        st = from_ckpt(&cerr, err);
    } else {
        tensor_source s = {ck, ckpt_source_count, ckpt_source_name, ckpt_source_find};
        st = check_source(path, &s, t, n, flags, err);
    }
    io_ckpt_dtype dt = nn_model_dtype(m) == AD_F32 ? IO_CKPT_F32 : IO_CKPT_F64;
    for (size_t i = 0; st == IO_OK && i < n; i++)
        if (io_checkpoint_copy(ck, t[i].name, dt, t[i].ndim, t[i].shape, t[i].data, &cerr) !=
            IO_CKPT_OK)
            st = from_ckpt(&cerr, err);
    io_checkpoint_destroy(ck);
    io_free(t, (n + 1) * sizeof *t);
    return st == IO_OK ? io_ok(err) : st;
}
