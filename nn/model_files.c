/* Model files: a built model's parameters and batch-norm running
   statistics as .npz archives and safetensors files, through the io/
   readers and writers (docs/interop.md). Memory comes from the model's
   allocator; a failure is recorded on the model (nn_model_error). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/checkpoint.h"
#include "io_impl.h"
#include "nn_impl.h"

/* ------------------------------------------------------------------ models */

/* A tensor of a model: a parameter or a state tensor (running statistics). */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    void *data;
} model_tensor;

static int model_tensors(nn_model *m, const ad_allocator *mem, const char *path, model_tensor **out,
                         size_t *count, ad_error *err)
{
    *out = NULL;
    *count = 0;
    char *params = nn_model_params(m);
    char *state = nn_model_state(m);
    int nparams = nn_model_param_tensors(m), nstate = nn_model_state_tensors(m);
    if (!nn_model_graph(m) || !nn_model_output(m) || (nparams > 0 && !params))
        return ad_error_set(err, AD_ESTATE, "%s: the model is not built", path);
    size_t esize = ad_dtype_bytes(nn_model_dtype(m));
    size_t n = (size_t)nparams + (size_t)nstate;
    model_tensor *t = ad_alloc(mem, (n + 1) * sizeof *t);
    if (!t)
        return ad_error_set(err, AD_ENOMEM, "out of memory for %s", path);
    memset(t, 0, (n + 1) * sizeof *t);
    for (int i = 0; i < nparams + nstate; i++) {
        nn_param_info info;
        bool st = i >= nparams;
        int rc = st ? nn_model_state_info(m, i - nparams, &info) : nn_model_param_info(m, i, &info);
        if (rc != 0 || info.ndim < 0 || info.ndim > AD_MAX_DIMS) {
            ad_free(mem, t, (n + 1) * sizeof *t);
            return ad_error_set(err, AD_EINVAL, "%s: cannot describe tensor %d", path, i);
        }
        snprintf(t[i].name, sizeof t[i].name, "%s", info.name);
        t[i].ndim = info.ndim;
        for (int k = 0; k < info.ndim; k++)
            t[i].shape[k] = info.shape[k];
        t[i].data = (st ? state : params) + (size_t)info.offset * esize;
    }
    *out = t;
    *count = n;
    return 0;
}

/* Records a failure on the model; returns -1. */
static int model_failed(nn_model *m, const ad_error *err)
{
    return nn_model_fail(m, err->code, "%s", err->message);
}

/* The model's tensors as arrays pointing into its buffers (room more
   entries left for the caller). */
static io_array *model_arrays(nn_model *m, const ad_allocator *mem, const model_tensor *t, size_t n,
                              size_t room)
{
    io_array *a = ad_alloc(mem, (n + room) * sizeof *a);
    if (!a)
        return NULL;
    ad_dtype dt = nn_model_dtype(m) == AD_F32 ? AD_F32 : AD_F64;
    for (size_t i = 0; i < n; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].name = t[i].name;
        a[i].dtype = dt;
        a[i].ndim = t[i].ndim;
        for (int k = 0; k < t[i].ndim; k++)
            a[i].shape[k] = t[i].shape[k];
        a[i].data = t[i].data;
    }
    return a;
}

/* Writes a model file: arrays, count tensors and meta_count metadata entries. */
typedef int (*model_writer)(const char *path, const io_array *arrays, int64_t count,
                            const io_ckpt_meta *meta, int64_t meta_count, const ad_allocator *mem,
                            ad_error *err);

/* Saves through write (io_npz_write_with or the safetensors writer), with
   the model's architecture as metadata when it has one, then the extra
   tensors and metadata entries given (a training checkpoint's). */
static int save_model(nn_model *m, const char *path, const char *fn, model_writer write,
                      const io_array *extra, size_t nextra, const io_ckpt_meta *more, size_t nmore,
                      ad_error *err)
{
    model_tensor *t;
    size_t n;
    if (!m || !path)
        return ad_error_set(err, AD_EINVAL, "%s: NULL argument", fn);
    ad_allocator mem = ad_allocator_of(m->alloc, m->ud);
    if (model_tensors(m, &mem, path, &t, &n, err) != 0)
        return -1;
    io_array *a = model_arrays(m, &mem, t, n, nextra);
    io_ckpt_meta *meta = a ? ad_alloc(&mem, (nmore + 1) * sizeof *meta) : NULL;
    /* a model built from the library's layers carries its architecture */
    char *arch = meta ? nn_model_architecture(m) : NULL;
    size_t nmeta = 0;
    if (meta) {
        if (arch)
            meta[nmeta++] = (io_ckpt_meta){NN_ARCH_KEY, arch};
        for (size_t i = 0; i < nmore; i++)
            meta[nmeta++] = more[i];
        for (size_t i = 0; i < nextra; i++)
            a[n + i] = extra[i];
    }
    int st = meta ? write(path, a, (int64_t)(n + nextra), meta, (int64_t)nmeta, &mem, err)
                  : ad_error_set(err, AD_ENOMEM, "out of memory writing %s", path);
    free(arch);
    ad_free(&mem, meta, (nmore + 1) * sizeof *meta);
    ad_free(&mem, a, (n + nextra) * sizeof *a);
    ad_free(&mem, t, (n + 1) * sizeof *t);
    return st;
}

static int write_npz(const char *path, const io_array *arrays, int64_t count,
                     const io_ckpt_meta *meta, int64_t meta_count, const ad_allocator *mem,
                     ad_error *err)
{
    (void)meta; /* an .npz has no place for metadata */
    (void)meta_count;
    return io_npz_write_with(path, arrays, count, mem->fn, mem->ud, err);
}

int nn_model_save_npz(nn_model *m, const char *path)
{
    ad_error err;
    if (save_model(m, path, "nn_model_save_npz", write_npz, NULL, 0, NULL, 0, &err) != 0)
        return model_failed(m, &err);
    return 0;
}

/* A kind of file whose tensors are seen through one interface (an .npz
   archive or a safetensors checkpoint). */
typedef struct {
    const char *load_name; /* the public function, for messages */
    void *(*read)(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err);
    void (*release)(void *src);
    int64_t (*count)(const void *src);
    const io_array *(*at)(const void *src, int64_t i);
    const io_array *(*find)(const void *src, const char *name); /* NULL when absent */
} file_kind;

/* An open file of a kind. */
typedef struct {
    const file_kind *kind;
    const void *src;
} tensor_source;

static bool shape_equal(int na, const int64_t *a, int nb, const int64_t *b)
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
static int check_source(const char *path, const tensor_source *s, const model_tensor *t, size_t n,
                        unsigned flags, ad_error *err)
{
    char have[256], want[256];
    for (size_t i = 0; i < n; i++) {
        const io_array *a = s->kind->find(s->src, t[i].name);
        if (!a)
            return ad_error_set(err, AD_EMISMATCH, "%s: no tensor '%s' for the model", path,
                                t[i].name);
        int ndim = a->ndim;
        const int64_t *shape = a->shape;
        if (!shape_equal(ndim, shape, t[i].ndim, t[i].shape)) {
            bool transposed = ndim == 2 && t[i].ndim == 2 && shape[0] == t[i].shape[1] &&
                              shape[1] == t[i].shape[0];
            return ad_error_set(
                err, AD_EMISMATCH, "%s: tensor '%s' has shape %s but the model expects %s%s", path,
                t[i].name, io_shape_text(have, sizeof have, shape, ndim),
                io_shape_text(want, sizeof want, t[i].shape, t[i].ndim),
                transposed ? " (transposed? PyTorch's nn.Linear weight is (out, in), "
                             "chainrule's is (in, out))"
                           : "");
        }
    }
    if (flags & NN_MODEL_ALLOW_EXTRA)
        return 0;
    int64_t count = s->kind->count(s->src);
    for (int64_t k = 0; k < count; k++) {
        const char *name = s->kind->at(s->src, k)->name;
        bool known = (flags & NN_MODEL_ALLOW_OPTIMIZER) && strncmp(name, "optimizer.", 10) == 0;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(name, t[i].name) == 0;
        if (!known)
            return ad_error_set(err, AD_EMISMATCH,
                                "%s: tensor '%s' is not in the model (its tensors are named like "
                                "'%s'; pass NN_MODEL_ALLOW_EXTRA to ignore extra tensors)",
                                path, name, t[0].name);
    }
    return 0;
}

static void *npz_read(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    return io_npz_read_with(path, alloc, ud, err);
}
static void npz_release(void *src) { io_npz_free(src); }
static int64_t npz_count(const void *src) { return io_npz_count(src); }
static const io_array *npz_at(const void *src, int64_t i) { return io_npz_at(src, i); }
static const io_array *npz_find(const void *src, const char *name)
{
    return io_npz_find(src, name);
}
static const file_kind npz_files = {"nn_model_load_npz", npz_read, npz_release,
                                    npz_count,           npz_at,   npz_find};

static void *ckpt_read(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err)
{
    return io_checkpoint_read_with(path, alloc, ud, err);
}
static void ckpt_release(void *src) { io_checkpoint_free(src); }
static int64_t ckpt_count(const void *src) { return io_checkpoint_count(src); }
static const io_array *ckpt_at(const void *src, int64_t i)
{
    return io_checkpoint_tensor_at(src, i);
}
static const io_array *ckpt_find(const void *src, const char *name)
{
    return io_checkpoint_find(src, name);
}
static const file_kind ckpt_files = {
    "nn_model_load_safetensors", ckpt_read, ckpt_release, ckpt_count, ckpt_at, ckpt_find};

/* Loads every model tensor from s after checking them all. */
static int load_from(nn_model *m, const ad_allocator *mem, const char *path, const tensor_source *s,
                     unsigned flags, ad_error *err)
{
    model_tensor *t;
    size_t n;
    if (model_tensors(m, mem, path, &t, &n, err) != 0)
        return -1;
    int st = check_source(path, s, t, n, flags, err);
    ad_dtype dt = nn_model_dtype(m) == AD_F32 ? AD_F32 : AD_F64;
    for (size_t i = 0; st == 0 && i < n; i++)
        st = io_array_copy(s->kind->find(s->src, t[i].name), dt, t[i].ndim, t[i].shape, t[i].data,
                           err);
    ad_free(mem, t, (n + 1) * sizeof *t);
    return st;
}

static int load_model(nn_model *m, const char *path, unsigned flags, const file_kind *kind)
{
    ad_error err;
    if (!m || !path) {
        ad_error_set(&err, AD_EINVAL, "%s: NULL argument", kind->load_name);
        return model_failed(m, &err);
    }
    ad_allocator mem = ad_allocator_of(m->alloc, m->ud);
    void *src = kind->read(path, mem.fn, mem.ud, &err);
    tensor_source s = {kind, src};
    int st = src ? load_from(m, &mem, path, &s, flags, &err) : -1;
    kind->release(src);
    return st == 0 ? 0 : model_failed(m, &err);
}

int nn_model_load_npz(nn_model *m, const char *path, unsigned flags)
{
    return load_model(m, path, flags, &npz_files);
}

static int write_safetensors(const char *path, const io_array *arrays, int64_t count,
                             const io_ckpt_meta *meta, int64_t meta_count, const ad_allocator *mem,
                             ad_error *err)
{
    return io_checkpoint_write_with(path, arrays, count, meta, meta_count, mem->fn, mem->ud, err);
}

int nn_model_save_safetensors(nn_model *m, const char *path)
{
    ad_error err;
    if (save_model(m, path, "nn_model_save_safetensors", write_safetensors, NULL, 0, NULL, 0,
                   &err) != 0)
        return model_failed(m, &err);
    return 0;
}

int nn_model_write_file(nn_model *m, const char *path, const io_array *extra, size_t nextra,
                        const io_ckpt_meta *meta, size_t nmeta, ad_error *err)
{
    return save_model(m, path, "nn_checkpoint_save", write_safetensors, extra, nextra, meta, nmeta,
                      err);
}

int nn_model_read_tensors(nn_model *m, const io_checkpoint *ck, const char *path, unsigned flags,
                          ad_error *err)
{
    ad_allocator mem = ad_allocator_of(m->alloc, m->ud);
    tensor_source s = {&ckpt_files, ck};
    return load_from(m, &mem, path, &s, flags, err);
}

int nn_model_load_safetensors(nn_model *m, const char *path, unsigned flags)
{
    return load_model(m, path, flags, &ckpt_files);
}
