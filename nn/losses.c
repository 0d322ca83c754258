/* losses.c -- loss functions as compositions of engine ops. Stability comes
 * from the engine's stable primitives: log_softmax (log-sum-exp with the
 * maximum subtracted) and softplus (ln(1 + e^z) without overflow), so
 * logits of magnitude 1e4 give finite losses and gradients. */
#include <string.h>

#include "nn_impl.h"

static const char *const loss_names[NN_LOSS_COUNT] = {
    [NN_LOSS_NONE] = "none",
    [NN_LOSS_MSE] = "mse",
    [NN_LOSS_HALF_SSE] = "half_sse",
    [NN_LOSS_BCE_LOGITS] = "bce_logits",
    [NN_LOSS_CROSS_ENTROPY] = "cross_entropy",
    [NN_LOSS_HINGE] = "hinge",
    [NN_LOSS_PERCEPTRON] = "perceptron",
};

const char *nn_loss_name(nn_loss kind)
{
    if ((int)kind < 0 || kind >= NN_LOSS_COUNT)
        return NULL;
    return loss_names[kind];
}

int nn_loss_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NN_LOSS_COUNT; i++)
        if (strcmp(name, loss_names[i]) == 0)
            return i;
    static const struct {
        const char *alias;
        nn_loss kind;
    } aliases[] = {
        {"bce", NN_LOSS_BCE_LOGITS},
        {"ce", NN_LOSS_CROSS_ENTROPY},
        {"xent", NN_LOSS_CROSS_ENTROPY},
        {"sse", NN_LOSS_HALF_SSE},
        {"perceptron_criterion", NN_LOSS_PERCEPTRON},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (strcmp(name, aliases[i].alias) == 0)
            return (int)aliases[i].kind;
    return -1;
}

static bool same_shape(ad_node *p, ad_node *t, const char *fn)
{
    char s1[96], s2[96];
    if (ad_node_graph(p) != ad_node_graph(t)) {
        nn_graph_fail(p, "%s: prediction and target belong to different graphs", fn);
        return false;
    }
    bool ok = ad_ndim(p) == ad_ndim(t);
    for (int i = 0; ok && i < ad_ndim(p); i++)
        ok = ad_shape(p)[i] == ad_shape(t)[i];
    if (!ok)
        nn_graph_fail(p, "%s: prediction %s and target %s differ in shape", fn,
                      ad_shape_str(p, s1, sizeof s1), ad_shape_str(t, s2, sizeof s2));
    return ok;
}

static bool is_matrix(ad_node *p, const char *fn)
{
    char s1[96];
    if (ad_ndim(p) != 2) {
        nn_graph_fail(p, "%s: prediction %s is not (batch, outputs)", fn,
                      ad_shape_str(p, s1, sizeof s1));
        return false;
    }
    return true;
}

/* mean over rows of the per-row sum: (batch, k) -> scalar */
static ad_node *row_sum_mean(ad_node *a) { return ad_mean(ad_sum(a, 1), 0); }

ad_node *nn_mse(ad_node *pred, ad_node *target)
{
    if (!pred || !target || !same_shape(pred, target, "nn_mse"))
        return NULL;
    ad_node *d = ad_sub(pred, target);
    return ad_mean(ad_mul(d, d), AD_ALL);
}

ad_node *nn_half_sse(ad_node *pred, ad_node *target)
{
    if (!pred || !target || !same_shape(pred, target, "nn_half_sse") ||
        !is_matrix(pred, "nn_half_sse"))
        return NULL;
    ad_node *d = ad_sub(pred, target);
    return ad_scale(row_sum_mean(ad_mul(d, d)), 0.5);
}

ad_node *nn_bce_with_logits(ad_node *logits, ad_node *target)
{
    if (!logits || !target || !same_shape(logits, target, "nn_bce_with_logits"))
        return NULL;
    /* -t ln s(z) - (1 - t) ln(1 - s(z)) = softplus(z) - t z */
    return ad_mean(ad_sub(ad_softplus(logits), ad_mul(target, logits)), AD_ALL);
}

ad_node *nn_cross_entropy(ad_node *logits, ad_node *labels)
{
    if (!logits || !labels)
        return NULL;
    char s1[96], s2[96];
    if (ad_node_graph(logits) != ad_node_graph(labels)) {
        return nn_graph_fail(logits,
                             "nn_cross_entropy: logits and labels belong to different graphs");
    }
    if (!is_matrix(logits, "nn_cross_entropy"))
        return NULL;
    if (ad_ndim(labels) != 1 || ad_shape(labels)[0] != ad_shape(logits)[0]) {
        return nn_graph_fail(
            logits, "nn_cross_entropy: labels %s must hold one class index per row of logits %s",
            ad_shape_str(labels, s1, sizeof s1), ad_shape_str(logits, s2, sizeof s2));
    }
    /* mean of logsumexp(z) - z[label] in one op, its gradient
     * (softmax(z) - onehot) / rows in one op too */
    return ad_softmax_cross_entropy(logits, labels);
}

ad_node *nn_hinge(ad_node *scores, ad_node *target)
{
    if (!scores || !target || !same_shape(scores, target, "nn_hinge"))
        return NULL;
    /* max(0, 1 - t s) */
    return ad_mean(ad_relu(ad_affine(ad_mul(target, scores), -1.0, 1.0)), AD_ALL);
}

ad_node *nn_perceptron_criterion(ad_node *scores, ad_node *target)
{
    if (!scores || !target || !same_shape(scores, target, "nn_perceptron_criterion") ||
        !is_matrix(scores, "nn_perceptron_criterion"))
        return NULL;
    /* (step(s) - t) s: the step (no gradient) selects the misclassified
     * units, whose |s| is the loss; d/ds = step(s) - t, Rosenblatt's error */
    ad_node *err = ad_sub(ad_step(scores), target);
    return row_sum_mean(ad_mul(err, scores));
}

ad_node *nn_loss_apply(nn_loss kind, ad_node *pred, ad_node *target)
{
    switch (kind) {
    case NN_LOSS_MSE:
        return nn_mse(pred, target);
    case NN_LOSS_HALF_SSE:
        return nn_half_sse(pred, target);
    case NN_LOSS_BCE_LOGITS:
        return nn_bce_with_logits(pred, target);
    case NN_LOSS_CROSS_ENTROPY:
        return nn_cross_entropy(pred, target);
    case NN_LOSS_HINGE:
        return nn_hinge(pred, target);
    case NN_LOSS_PERCEPTRON:
        return nn_perceptron_criterion(pred, target);
    case NN_LOSS_NONE:
    case NN_LOSS_COUNT:
        break;
    }
    if (!pred)
        return NULL;
    return nn_graph_fail(pred, "nn_loss_apply: %d is not a loss", (int)kind);
}
