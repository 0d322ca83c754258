/* train.c -- running a built model: setting inputs and targets, forward and
 * backward passes (the engine's ad_forward / ad_backward), the training
 * step, batch-norm running statistics, prediction and evaluation. */
#include <math.h>
#include <string.h>

#include "graph_impl.h" /* ad_graph_hold_leaves: weights packed once per evaluation */
#include "nn_impl.h"

static int check_built(nn_model *m, const char *fn)
{
    if (!m)
        return -1;
    if (!m->built)
        return nn_model_fail(m, AD_ESTATE, "%s: the model is not built (nn_model_build)", fn);
    if (ad_graph_error(m->g))
        return nn_model_fail(m, AD_EGRAPH, "%s: the graph has an error: %s", fn,
                             ad_graph_error(m->g));
    return 0;
}

static int graph_fail(nn_model *m, const char *fn)
{
    const char *e = ad_graph_error(m->g);
    return nn_model_fail(m, AD_EGRAPH, "%s: %s", fn, e ? e : "autodiff error");
}

/* Makes the current batch n rows (resizing the input and target leaves). */
static int set_rows(nn_model *m, int64_t n, const char *fn)
{
    if (n < 1)
        return nn_model_fail(m, AD_EINVAL, "%s: %lld rows, need >= 1", fn, (long long)n);
    if (n == m->batch)
        return 0;
    /* the input, the targets and every other input leaf of the batch */
    for (int i = 0; i < m->nbatch_inputs; i++)
        if (ad_resize(m->batch_inputs[i], n))
            return graph_fail(m, fn);
    m->batch = n;
    m->forwarded = false;
    return 0;
}

/* Copies count values (double or float) into a leaf of the model. */
static int copy_into(nn_model *m, ad_node *leaf, const void *v, bool f32, int64_t count,
                     const char *fn)
{
    if ((f32 ? ad_set_f32(leaf, v, count) : ad_set(leaf, v, count)) != 0)
        return graph_fail(m, fn);
    m->forwarded = false;
    return 0;
}

/* Gives the input leaf n rows from x (double or float): copied, or with
 * borrow, read in place where x has the model's dtype (ad_input_borrow; the
 * caller ends the borrow with nn_model_input_end_borrow while x is alive). */
int nn_model_input_rows(nn_model *m, const void *x, bool f32, int64_t n, int64_t cols, bool borrow,
                        const char *fn)
{
    int rc = check_built(m, fn);
    if (rc)
        return rc;
    if (!x)
        return nn_model_fail(m, AD_EINVAL, "%s: x is NULL", fn);
    if (cols != m->in_features)
        return nn_model_fail(m, AD_EMISMATCH,
                             "%s: rows have %lld features but the model expects %lld", fn,
                             (long long)cols, (long long)m->in_features);
    rc = set_rows(m, n, fn);
    if (rc)
        return rc;
    if (!borrow || f32 != (m->dtype == AD_F32))
        return copy_into(m, m->input, x, f32, n * cols, fn);
    if (ad_input_borrow(m->input, x) != 0)
        return graph_fail(m, fn);
    m->forwarded = false;
    return 0;
}

int nn_model_input_end_borrow(nn_model *m, const char *fn)
{
    if (m->input && ad_input_borrow(m->input, NULL) != 0)
        return graph_fail(m, fn);
    return 0;
}

int nn_model_set_input(nn_model *m, const double *x, int64_t n, int64_t cols)
{
    return nn_model_input_rows(m, x, false, n, cols, false, "nn_model_set_input");
}

int nn_model_set_input_f32(nn_model *m, const float *x, int64_t n, int64_t cols)
{
    return nn_model_input_rows(m, x, true, n, cols, false, "nn_model_set_input_f32");
}

static int check_targets(nn_model *m, int64_t n, const void *y, const char *fn)
{
    int rc = check_built(m, fn);
    if (rc)
        return rc;
    if (!m->target)
        return nn_model_fail(m, AD_ESTATE, "%s: the model has no loss, hence no targets", fn);
    if (!y)
        return nn_model_fail(m, AD_EINVAL, "%s: targets are NULL", fn);
    if (n != m->batch)
        return nn_model_fail(m, AD_EMISMATCH, "%s: targets have %lld rows but the input has %lld",
                             fn, (long long)n, (long long)m->batch);
    return 0;
}

static int bad_class(nn_model *m, const char *fn, double v, int64_t row)
{
    return nn_model_fail(m, AD_EINVAL, "%s: class index %g at row %lld is out of range [0, %lld)",
                         fn, v, (long long)row, (long long)m->out_features);
}

static int set_targets(nn_model *m, const void *y, bool f32, int64_t n, int64_t cols,
                       const char *fn)
{
    int rc = check_targets(m, n, y, fn);
    if (rc)
        return rc;
    bool ce = m->loss == NN_LOSS_CROSS_ENTROPY && ad_ndim(m->target) == 1;
    int64_t want = ad_numel(m->target) / m->batch;
    if (cols != want)
        return nn_model_fail(
            m, AD_EMISMATCH, "%s: targets have %lld columns but the model needs %lld (%s)", fn,
            (long long)cols, (long long)want,
            ce                                          ? "one class index per row"
            : (m->loss_node && m->loss == NN_LOSS_NONE) ? "the values of the target leaf per row"
                                                        : "one per output");
    if (ce)
        for (int64_t i = 0; i < n; i++) {
            double v = f32 ? (double)((const float *)y)[i] : ((const double *)y)[i];
            if (!(v >= 0 && v < (double)m->out_features) || v != floor(v))
                return bad_class(m, fn, v, i);
        }
    return copy_into(m, m->target, y, f32, n * cols, fn);
}

int nn_model_set_targets(nn_model *m, const double *y, int64_t n, int64_t cols)
{
    return set_targets(m, y, false, n, cols, "nn_model_set_targets");
}

int nn_model_set_targets_f32(nn_model *m, const float *y, int64_t n, int64_t cols)
{
    return set_targets(m, y, true, n, cols, "nn_model_set_targets_f32");
}

int nn_model_set_labels(nn_model *m, const int *labels, int64_t n)
{
    const char *fn = "nn_model_set_labels";
    int rc = check_targets(m, n, labels, fn);
    if (rc)
        return rc;
    bool ce = m->loss == NN_LOSS_CROSS_ENTROPY;
    if (!ce && m->out_features != 1)
        return nn_model_fail(m, AD_EMISMATCH,
                             "%s: integer labels need cross-entropy or a single output (the "
                             "model has %lld outputs and loss %s); use nn_model_set_targets",
                             fn, (long long)m->out_features, nn_loss_name(m->loss));
    if (ce)
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= m->out_features)
                return bad_class(m, fn, (double)labels[i], i);
    AD_DISPATCH_DTYPE(m->dtype, {
        T *t = ad_data(m->target);
        for (int64_t i = 0; i < n; i++)
            t[i] = (T)labels[i];
    });
    m->forwarded = false;
    return 0;
}

/* ------------------------------------------------------------------ passes */

/* running = (1 - momentum) running + momentum batch, unbiased variance */
static void update_running_stats(nn_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (l->kind != NN_LAYER_BATCH_NORM || !l->bmean)
            continue;
        int64_t c = ad_numel(l->bmean);
        double n = (double)(ad_numel(l->input) / c); /* values per channel */
        double unbias = n > 1 ? n / (n - 1) : 1.0;
        double mom = l->momentum;
        AD_DISPATCH_DTYPE(m->dtype, {
            T *rm = ad_data(l->rmean), *rv = ad_data(l->rvar);
            const T *bm = ad_data(l->bmean), *bv = ad_data(l->bvar);
            for (int64_t j = 0; j < c; j++) {
                rm[j] = (T)((1 - mom) * (double)rm[j] + mom * (double)bm[j]);
                rv[j] = (T)((1 - mom) * (double)rv[j] + mom * (double)bv[j] * unbias);
            }
        });
    }
}

int nn_model_forward(nn_model *m)
{
    int rc = check_built(m, "nn_model_forward");
    if (rc)
        return rc;
    if (ad_forward(m->g) != 0)
        return graph_fail(m, "nn_model_forward");
    if (m->training)
        update_running_stats(m);
    m->forwarded = true;
    return 0;
}

double nn_model_loss_value(const nn_model *m)
{
    if (!m || !m->loss_node)
        return NAN;
    return ad_item(m->loss_node);
}

/* A backward pass may start: built, a loss, a forward since the inputs changed. */
static int backward_ready(nn_model *m, const char *fn)
{
    int rc = check_built(m, fn);
    if (rc)
        return rc;
    if (!m->loss_node)
        return nn_model_fail(m, AD_ESTATE, "%s: the model has no loss", fn);
    if (!m->forwarded)
        return nn_model_fail(m, AD_ESTATE, "%s: inputs changed since the last forward", fn);
    return 0;
}

int nn_model_backward(nn_model *m)
{
    int rc = backward_ready(m, "nn_model_backward");
    if (rc)
        return rc;
    if (ad_backward_overwrite(m->loss_node) != 0)
        return graph_fail(m, "nn_model_backward");
    return 0;
}

int nn_model_set_training(nn_model *m, int on)
{
    int rc = check_built(m, "nn_model_set_training");
    if (rc)
        return rc;
    double v = on ? 1.0 : 0.0;
    if (ad_set(m->train_flag, &v, 1) != 0)
        return graph_fail(m, "nn_model_set_training");
    /* evaluation draws no dropout masks: the generator is left as it was */
    ad_graph_set_training(m->g, on);
    m->training = on != 0;
    m->forwarded = false;
    return 0;
}

int nn_model_is_training(const nn_model *m) { return m && m->training; }

int nn_model_check_optimizer(nn_model *m, const nn_optimizer *opt, const char *fn)
{
    if (!opt)
        return nn_model_fail(m, AD_EINVAL, "%s: optimizer is NULL", fn);
    if (nn_optimizer_model(opt) != m)
        return nn_model_fail(m, AD_EINVAL, "%s: the optimizer is bound to another model", fn);
    return 0;
}

int nn_model_apply_step(nn_model *m, nn_optimizer *opt, const char *fn)
{
    if (nn_optimizer_step(opt) != 0)
        return nn_model_fail(m, nn_optimizer_errcode(opt), "%s: %s", fn, nn_optimizer_error(opt));
    /* the parameters changed: outputs are stale until the next forward */
    m->forwarded = false;
    return 0;
}

int nn_model_backward_step(nn_model *m, nn_optimizer *opt, const char *fn)
{
    if (!nn_optimizer_fused(opt)) {
        int rc = nn_model_backward(m);
        return rc ? rc : nn_model_apply_step(m, opt, fn);
    }
    int rc = backward_ready(m, fn);
    if (rc)
        return rc;
    if (nn_optimizer_can_step(opt, fn) != 0)
        return nn_model_fail(m, nn_optimizer_errcode(opt), "%s", nn_optimizer_error(opt));
    if (ad_backward_sgd(m->loss_node, nn_optimizer_lr(opt)) != 0)
        return graph_fail(m, fn);
    nn_optimizer_set_steps(opt, nn_optimizer_steps(opt) + 1);
    /* the parameters changed: outputs are stale until the next forward */
    m->forwarded = false;
    return 0;
}

int nn_model_train_step(nn_model *m, nn_optimizer *opt, double *loss)
{
    const char *fn = "nn_model_train_step";
    int rc = check_built(m, fn);
    if (rc || (rc = nn_model_check_optimizer(m, opt, fn)) != 0)
        return rc;
    if (!m->loss_node)
        return nn_model_fail(m, AD_ESTATE, "%s: the model has no loss", fn);
    if ((rc = nn_model_forward(m)) != 0)
        return rc;
    if (loss)
        *loss = nn_model_loss_value(m);
    return nn_model_backward_step(m, opt, fn);
}

/* ---------------------------------------------------------------- predict */

int64_t nn_argmax(const double *values, int64_t n)
{
    if (!values || n < 1)
        return -1;
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (values[i] > values[best])
            best = i;
    return best;
}

/* Decision threshold for a single output: 0.5 after a sigmoid or a heaviside
 * step (outputs in [0, 1]), else 0 (logits, scores, sign). */
static double single_threshold(const nn_model *m)
{
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const nn_layer *l = &m->layers[i];
        if (l->kind == NN_LAYER_DROPOUT || l->kind == NN_LAYER_BATCH_NORM)
            continue;
        if (l->kind == NN_LAYER_DENSE)
            return 0.0;
        nn_activation a = l->act;
        if (a == NN_ACT_SIGMOID || a == NN_ACT_STEP || a == NN_ACT_STEP_ST || a == NN_ACT_SOFTMAX)
            return 0.5;
        if (a != NN_ACT_IDENTITY)
            return 0.0;
    }
    return 0.0;
}

/* The class of row r of the current output: argmax, or for one output
   1 when it is >= thr (single_threshold) else 0. */
static int64_t row_class(const nn_model *m, int64_t r, double thr)
{
    int64_t k = m->out_features, best = 0;
    AD_DISPATCH_DTYPE(m->dtype, {
        const T *row = (const T *)ad_data(m->output) + r * k;
        if (k == 1)
            best = (double)row[0] >= thr ? 1 : 0;
        else
            for (int64_t j = 1; j < k; j++)
                if (row[j] > row[best])
                    best = j;
    });
    return best;
}

/* Classes of rows [0, rows) of the current output into classes. */
static void output_classes(const nn_model *m, int64_t rows, int64_t *classes)
{
    double thr = single_threshold(m);
    for (int64_t r = 0; r < rows; r++)
        classes[r] = row_class(m, r, thr);
}

int nn_model_output_classes(const nn_model *m, int64_t *classes)
{
    int rc = check_built((nn_model *)m, "nn_model_output_classes");
    if (rc)
        return rc;
    if (!classes)
        return nn_model_fail((nn_model *)m, AD_EINVAL, "nn_model_output_classes: classes is NULL");
    output_classes(m, m->batch, classes);
    return 0;
}

/* Evaluation runs in chunks whose activations stay in the core's cache: at
 * most NN_EVAL_CACHE_BYTES of batch-sized tensors per chunk (measured on the
 * 784-300-100-10 MLP over 10,000 images: chunks of 64-256 rows took 0.8x the
 * time of one 10,000-row pass, whose products stream their inputs from
 * memory), never fewer than NN_EVAL_MIN_ROWS rows (the products' efficiency)
 * nor more than the build batch (nothing is allocated). */
#define NN_EVAL_CACHE_BYTES ((int64_t)1 << 20)
#define NN_EVAL_MIN_ROWS 32

static int64_t eval_chunk_rows(const nn_model *m)
{
    int64_t b = m->batch, row_bytes = 0, es = (int64_t)ad_dtype_bytes(m->dtype);
    if (b < NN_EVAL_MIN_ROWS) /* a leading size this small may not be the batch */
        return m->max_batch;
    for (int64_t i = 0; i < ad_graph_size(m->g); i++) {
        const ad_node *n = ad_graph_node(m->g, i);
        if (ad_ndim(n) >= 1 && ad_shape(n)[0] == b)
            row_bytes += ad_numel(n) / b * es;
    }
    int64_t rows = row_bytes > 0 ? NN_EVAL_CACHE_BYTES / row_bytes : m->max_batch;
    if (rows < NN_EVAL_MIN_ROWS)
        rows = NN_EVAL_MIN_ROWS;
    return rows < m->max_batch ? rows : m->max_batch;
}

/* Runs the model in eval mode over n rows in chunks (eval_chunk_rows); per
 * chunk calls visit(m, start, rows, ctx). */
typedef int (*chunk_fn)(nn_model *m, int64_t start, int64_t rows, void *ctx);

static int run_chunks(nn_model *m, const void *x, bool f32, int64_t n, int64_t cols, const char *fn,
                      chunk_fn before, chunk_fn visit, void *ctx)
{
    int rc = check_built(m, fn);
    if (rc)
        return rc;
    if (!x)
        return nn_model_fail(m, AD_EINVAL, "%s: x is NULL", fn);
    if (n < 1)
        return nn_model_fail(m, AD_EINVAL, "%s: %lld rows, need >= 1", fn, (long long)n);
    bool was_training = m->training;
    if (was_training && (rc = nn_model_set_training(m, 0)) != 0)
        return rc;
    size_t row_bytes = (size_t)cols * (f32 ? sizeof(float) : sizeof(double));
    int64_t chunk = eval_chunk_rows(m);
    /* nothing writes a parameter until the last chunk: the products may
       pack their weights once for all the chunks (ad_gemm_held) */
    ad_graph_hold_leaves(m->g, true);
    for (int64_t start = 0; start < n && rc == 0; start += chunk) {
        int64_t rows = n - start < chunk ? n - start : chunk;
        const void *xs = (const char *)x + (size_t)start * row_bytes;
        rc = nn_model_input_rows(m, xs, f32, rows, cols, true, fn);
        if (rc == 0 && before)
            rc = before(m, start, rows, ctx);
        if (rc == 0)
            rc = nn_model_forward(m);
        if (rc == 0)
            rc = visit(m, start, rows, ctx);
    }
    ad_graph_hold_leaves(m->g, false);
    /* the input keeps the last chunk's rows, as if they had been copied */
    int rc_borrow = nn_model_input_end_borrow(m, fn);
    if (rc == 0)
        rc = rc_borrow;
    if (was_training) {
        int rc2 = nn_model_set_training(m, 1);
        if (rc == 0)
            rc = rc2;
    }
    return rc;
}

static int copy_output(nn_model *m, int64_t start, int64_t rows, void *ctx)
{
    double *out = (double *)ctx + start * m->out_features;
    if (ad_get(m->output, out, rows * m->out_features) != 0)
        return graph_fail(m, "nn_model_predict");
    return 0;
}

static int predict(nn_model *m, const void *x, bool f32, int64_t n, int64_t cols, double *out,
                   const char *fn)
{
    if (m && !out)
        return nn_model_fail(m, AD_EINVAL, "%s: out is NULL", fn);
    return run_chunks(m, x, f32, n, cols, fn, NULL, copy_output, out);
}

int nn_model_predict(nn_model *m, const double *x, int64_t n, int64_t cols, double *out)
{
    return predict(m, x, false, n, cols, out, "nn_model_predict");
}

int nn_model_predict_f32(nn_model *m, const float *x, int64_t n, int64_t cols, double *out)
{
    return predict(m, x, true, n, cols, out, "nn_model_predict_f32");
}

static int copy_classes(nn_model *m, int64_t start, int64_t rows, void *ctx)
{
    output_classes(m, rows, (int64_t *)ctx + start);
    return 0;
}

static int predict_classes(nn_model *m, const void *x, bool f32, int64_t n, int64_t cols,
                           int64_t *classes, const char *fn)
{
    if (m && !classes)
        return nn_model_fail(m, AD_EINVAL, "%s: classes is NULL", fn);
    return run_chunks(m, x, f32, n, cols, fn, NULL, copy_classes, classes);
}

int nn_model_predict_classes(nn_model *m, const double *x, int64_t n, int64_t cols,
                             int64_t *classes)
{
    return predict_classes(m, x, false, n, cols, classes, "nn_model_predict_classes");
}

int nn_model_predict_classes_f32(nn_model *m, const float *x, int64_t n, int64_t cols,
                                 int64_t *classes)
{
    return predict_classes(m, x, true, n, cols, classes, "nn_model_predict_classes_f32");
}

typedef struct {
    const int *labels;
    double loss_sum;
    int64_t correct;
} eval_ctx;

static int eval_labels(nn_model *m, int64_t start, int64_t rows, void *ctx)
{
    eval_ctx *e = ctx;
    return m->target ? nn_model_set_labels(m, e->labels + start, rows) : 0;
}

static int eval_visit(nn_model *m, int64_t start, int64_t rows, void *ctx)
{
    eval_ctx *e = ctx;
    if (m->loss_node)
        e->loss_sum += nn_model_loss_value(m) * (double)rows;
    double thr = single_threshold(m);
    for (int64_t r = 0; r < rows; r++) {
        int64_t c = row_class(m, r, thr);
        int label = e->labels[start + r];
        if (c == label || (m->out_features == 1 && c == 0 && label == -1))
            e->correct++;
    }
    return 0;
}

static int evaluate(nn_model *m, const void *x, bool f32, const int *labels, int64_t n,
                    int64_t cols, double *mean_loss, double *accuracy, const char *fn)
{
    if (m && !labels)
        return nn_model_fail(m, AD_EINVAL, "%s: labels is NULL", fn);
    eval_ctx e = {labels, 0.0, 0};
    int rc = run_chunks(m, x, f32, n, cols, fn, eval_labels, eval_visit, &e);
    if (rc)
        return rc;
    if (mean_loss)
        *mean_loss = m->loss_node ? e.loss_sum / (double)n : NAN;
    if (accuracy)
        *accuracy = (double)e.correct / (double)n;
    return 0;
}

int nn_model_evaluate(nn_model *m, const double *x, const int *labels, int64_t n, int64_t cols,
                      double *mean_loss, double *accuracy)
{
    return evaluate(m, x, false, labels, n, cols, mean_loss, accuracy, "nn_model_evaluate");
}

int nn_model_evaluate_f32(nn_model *m, const float *x, const int *labels, int64_t n, int64_t cols,
                          double *mean_loss, double *accuracy)
{
    return evaluate(m, x, true, labels, n, cols, mean_loss, accuracy, "nn_model_evaluate_f32");
}
