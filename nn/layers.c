/* layers.c -- functional layers: dense (fully connected), threshold logic
 * units, dropout and batch normalization, each composed of engine ops. */
#include "nn_impl.h"

static bool same_graph(ad_node *a, ad_node *b, const char *fn, const char *what)
{
    if (b && ad_node_graph(a) != ad_node_graph(b)) {
        nn_graph_fail(a, "%s: %s belongs to another graph", fn, what);
        return false;
    }
    return true;
}

ad_node *nn_linear(ad_node *x, ad_node *w, ad_node *b)
{
    if (!x || !w)
        return NULL;
    char s1[96], s2[96];
    if (!same_graph(x, w, "nn_linear", "the weight") || !same_graph(x, b, "nn_linear", "the bias"))
        return NULL;
    if (ad_ndim(x) != 2 || ad_ndim(w) != 2) {
        nn_graph_fail(x, "nn_linear: input %s and weight %s must both be matrices",
                      nn_shape_str(x, s1, sizeof s1), nn_shape_str(w, s2, sizeof s2));
        return NULL;
    }
    int64_t in = ad_shape(x)[1], win = ad_shape(w)[0], out = ad_shape(w)[1];
    if (in != win) {
        nn_graph_fail(x, "nn_linear: input %s has %lld features but weight %s expects %lld",
                      nn_shape_str(x, s1, sizeof s1), (long long)in, nn_shape_str(w, s2, sizeof s2),
                      (long long)win);
        return NULL;
    }
    if (b && (ad_ndim(b) != 1 || ad_shape(b)[0] != out)) {
        nn_graph_fail(x, "nn_linear: bias %s does not match the %lld outputs of weight %s",
                      nn_shape_str(b, s1, sizeof s1), (long long)out,
                      nn_shape_str(w, s2, sizeof s2));
        return NULL;
    }
    /* (batch, out); with a bias, one fused node (no separate product buffer) */
    return b ? ad_linear(x, w, b) : ad_matmul(x, w);
}

static bool is_step(nn_activation a)
{
    return a == NN_ACT_STEP || a == NN_ACT_SIGN || a == NN_ACT_STEP_ST || a == NN_ACT_SIGN_ST;
}

ad_node *nn_tlu(ad_node *x, ad_node *w, ad_node *b, nn_activation step)
{
    if (!x || !w)
        return NULL;
    if (!is_step(step)) {
        nn_graph_fail(x, "nn_tlu: activation %s is not a step (step, sign, step_st, sign_st)",
                      nn_activation_name(step) ? nn_activation_name(step) : "?");
        return NULL;
    }
    return nn_activate(nn_linear(x, w, b), step);
}

ad_node *nn_dropout(ad_node *x, double rate, ad_node *training)
{
    if (!x)
        return NULL;
    if (!(rate >= 0 && rate < 1)) {
        nn_graph_fail(x, "nn_dropout: rate %g is not in [0, 1)", rate);
        return NULL;
    }
    if (!same_graph(x, training, "nn_dropout", "the training flag"))
        return NULL;
    if (rate == 0)
        return x;
    ad_node *mask = ad_dropout_mask(x, 1.0 - rate); /* 1/keep or 0, fresh each forward */
    if (training)
        mask = ad_where(training, mask, ad_const_scalar(ad_node_graph(x), 1.0, "one"));
    return ad_mul(x, mask);
}

static bool is_vector_of(ad_node *v, int64_t n)
{
    return !v || (ad_ndim(v) == 1 && ad_shape(v)[0] == n);
}

ad_node *nn_batch_norm(ad_node *x, ad_node *gamma, ad_node *beta, ad_node *running_mean,
                       ad_node *running_var, ad_node *training, double eps, ad_node **batch_mean,
                       ad_node **batch_var)
{
    if (batch_mean)
        *batch_mean = NULL;
    if (batch_var)
        *batch_var = NULL;
    if (!x)
        return NULL;
    char s1[96], s2[96];
    if (ad_ndim(x) != 2) {
        nn_graph_fail(x, "nn_batch_norm: input %s is not (batch, features)",
                      nn_shape_str(x, s1, sizeof s1));
        return NULL;
    }
    if (!(eps > 0)) {
        nn_graph_fail(x, "nn_batch_norm: eps %g must be > 0", eps);
        return NULL;
    }
    int64_t f = ad_shape(x)[1];
    ad_node *vecs[4] = {gamma, beta, running_mean, running_var};
    const char *names[4] = {"gamma", "beta", "running mean", "running variance"};
    for (int i = 0; i < 4; i++) {
        if (!same_graph(x, vecs[i], "nn_batch_norm", names[i]))
            return NULL;
        if (!is_vector_of(vecs[i], f)) {
            nn_graph_fail(x, "nn_batch_norm: %s %s does not match input %s (%lld features)",
                          names[i], nn_shape_str(vecs[i], s1, sizeof s1),
                          nn_shape_str(x, s2, sizeof s2), (long long)f);
            return NULL;
        }
    }
    if (training && (!running_mean || !running_var)) {
        nn_graph_fail(x, "nn_batch_norm: evaluation mode needs the running statistics");
        return NULL;
    }
    ad_node *mean = ad_mean(x, 0);                         /* (features) */
    ad_node *centered = ad_sub(x, mean);                   /* (batch, features) */
    ad_node *var = ad_mean(ad_mul(centered, centered), 0); /* biased, (features) */
    if (batch_mean)
        *batch_mean = mean;
    if (batch_var)
        *batch_var = var;
    ad_node *mu = mean, *sigma2 = var;
    if (training) {
        /* the running statistics are read, never differentiated */
        mu = ad_where(training, mean, ad_detach(running_mean));
        sigma2 = ad_where(training, var, ad_detach(running_var));
    }
    ad_node *y = ad_div(ad_sub(x, mu), ad_sqrt(ad_affine(sigma2, 1.0, eps)));
    if (gamma)
        y = ad_mul(y, gamma);
    if (beta)
        y = ad_add(y, beta);
    return y;
}
