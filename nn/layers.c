/* layers.c -- functional layers: dense (fully connected), threshold logic
 * units, dropout and batch normalization, each composed of engine ops. */
#include <math.h>

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
                      ad_shape_str(x, s1, sizeof s1), ad_shape_str(w, s2, sizeof s2));
        return NULL;
    }
    int64_t in = ad_shape(x)[1], win = ad_shape(w)[0], out = ad_shape(w)[1];
    if (in != win) {
        nn_graph_fail(x, "nn_linear: input %s has %lld features but weight %s expects %lld",
                      ad_shape_str(x, s1, sizeof s1), (long long)in, ad_shape_str(w, s2, sizeof s2),
                      (long long)win);
        return NULL;
    }
    if (b && (ad_ndim(b) != 1 || ad_shape(b)[0] != out)) {
        nn_graph_fail(x, "nn_linear: bias %s does not match the %lld outputs of weight %s",
                      ad_shape_str(b, s1, sizeof s1), (long long)out,
                      ad_shape_str(w, s2, sizeof s2));
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
    int nd = ad_ndim(x);
    if (nd < 2)
        return nn_graph_fail(x, "nn_batch_norm: input %s is not (batch, features) or (N, C, ...)",
                             ad_shape_str(x, s1, sizeof s1));
    if (!(eps > 0))
        return nn_graph_fail(x, "nn_batch_norm: eps %g must be > 0", eps);
    int64_t f = ad_shape(x)[1];
    ad_node *vecs[4] = {gamma, beta, running_mean, running_var};
    const char *names[4] = {"gamma", "beta", "running mean", "running variance"};
    for (int i = 0; i < 4; i++) {
        if (!same_graph(x, vecs[i], "nn_batch_norm", names[i]))
            return NULL;
        if (!is_vector_of(vecs[i], f))
            return nn_graph_fail(x, "nn_batch_norm: %s %s does not match input %s (%lld %s)",
                                 names[i], ad_shape_str(vecs[i], s1, sizeof s1),
                                 ad_shape_str(x, s2, sizeof s2), (long long)f,
                                 nd == 2 ? "features" : "channels");
    }
    if (training && (!running_mean || !running_var))
        return nn_graph_fail(x, "nn_batch_norm: evaluation mode needs the running statistics");
    /* statistics over every axis but the channels (axis 1) */
    ad_node *mean, *var, *centered;
    int64_t bshape[AD_MAX_DIMS]; /* (C, 1, ...): a statistic broadcast against x */
    bshape[0] = f;
    for (int i = 1; i < nd - 1; i++)
        bshape[i] = 1;
    if (nd == 2) {
        mean = ad_mean(x, 0);                         /* (features) */
        centered = ad_sub(x, mean);                   /* (batch, features) */
        var = ad_mean(ad_mul(centered, centered), 0); /* biased, (features) */
    } else {
        int64_t s = ad_numel(x) / (ad_shape(x)[0] * f), rows[3] = {-1, f, s};
        ad_node *xr = ad_reshape(x, 3, rows);                          /* (N, C, S) */
        mean = ad_mean(ad_mean(xr, 2), 0);                             /* (C) */
        centered = ad_sub(x, ad_reshape(mean, nd - 1, bshape));        /* (N, C, ...) */
        ad_node *sq = ad_reshape(ad_mul(centered, centered), 3, rows); /* (N, C, S) */
        var = ad_mean(ad_mean(sq, 2), 0);                              /* biased, (C) */
    }
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
    ad_node *scale = ad_sqrt(ad_affine(sigma2, 1.0, eps));
    if (nd > 2) {
        mu = ad_reshape(mu, nd - 1, bshape);
        scale = ad_reshape(scale, nd - 1, bshape);
        gamma = gamma ? ad_reshape(gamma, nd - 1, bshape) : NULL;
        beta = beta ? ad_reshape(beta, nd - 1, bshape) : NULL;
    }
    ad_node *y = ad_div(ad_sub(x, mu), scale);
    if (gamma)
        y = ad_mul(y, gamma);
    if (beta)
        y = ad_add(y, beta);
    return y;
}

ad_node *nn_residual(ad_node *x, ad_node *fx) { return ad_add(x, fx); }

ad_node *nn_embedding(ad_node *ids, ad_node *table)
{
    if (!ids || !table)
        return NULL;
    char s1[96];
    if (!same_graph(ids, table, "nn_embedding", "the table"))
        return NULL;
    if (ad_ndim(table) != 2)
        return nn_graph_fail(ids, "nn_embedding: table %s is not (vocab, dim)",
                             ad_shape_str(table, s1, sizeof s1));
    if (ad_ndim(ids) < 1)
        return nn_graph_fail(ids, "nn_embedding: ids need at least one axis");
    /* rows of the table gathered by id: cost independent of the vocabulary;
     * the gradient scatter-adds into the rows used */
    return ad_take(table, ids, 0);
}

/* -------------------------------------------------------- normalization */

/* The normalization of nn_layer_norm over the last naxes > 1 axes, composed:
 * mean and biased variance kept as size-1 axes so they broadcast back (the
 * mean of equal-sized means is the mean). */
static ad_node *normalize_axes(ad_node *x, int naxes, double eps)
{
    int nd = ad_ndim(x);
    ad_node *mu = x;
    for (int i = 0; i < naxes; i++)
        mu = ad_mean_keepdims(mu, nd - 1 - i);
    ad_node *c = ad_sub(x, mu);
    ad_node *var = ad_mul(c, c);
    for (int i = 0; i < naxes; i++)
        var = ad_mean_keepdims(var, nd - 1 - i);
    return ad_div(c, ad_sqrt(ad_affine(var, 1.0, eps))); /* the shape of x */
}

ad_node *nn_layer_norm(ad_node *x, int naxes, ad_node *gamma, ad_node *beta, double eps)
{
    if (!x)
        return NULL;
    char s1[96], s2[96];
    int nd = ad_ndim(x);
    if (naxes < 1 || naxes > nd)
        return nn_graph_fail(x, "nn_layer_norm: %d normalized axes for input %s", naxes,
                             ad_shape_str(x, s1, sizeof s1));
    if (!(eps > 0))
        return nn_graph_fail(x, "nn_layer_norm: eps %g must be > 0", eps);
    const int64_t *sh = ad_shape(x);
    ad_node *vecs[2] = {gamma, beta};
    for (int v = 0; v < 2; v++) {
        if (!vecs[v])
            continue;
        if (!same_graph(x, vecs[v], "nn_layer_norm", v ? "beta" : "gamma"))
            return NULL;
        bool ok = ad_ndim(vecs[v]) == naxes;
        for (int i = 0; ok && i < naxes; i++)
            ok = ad_shape(vecs[v])[i] == sh[nd - naxes + i];
        if (!ok)
            return nn_graph_fail(x, "nn_layer_norm: %s %s does not match the last %d axes of %s",
                                 v ? "beta" : "gamma", ad_shape_str(vecs[v], s1, sizeof s1), naxes,
                                 ad_shape_str(x, s2, sizeof s2));
    }
    /* the last axis alone: one node, and one for its gradient */
    ad_node *y = naxes == 1 ? ad_layer_norm(x, eps) : normalize_axes(x, naxes, eps);
    if (gamma)
        y = ad_mul(y, gamma);
    if (beta)
        y = ad_add(y, beta);
    return y;
}

/* -------------------------------------------------------------- recurrent */

/* x (B, I) @ w (G*H, I)^T + b (G*H): one projection of a cell. */
static ad_node *project(ad_node *x, ad_node *w, ad_node *b)
{
    ad_node *p = ad_matmul_t(x, 0, w, 1);
    return b ? ad_add(p, b) : p;
}

/* Checks a cell's operands: x (B, I), h (B, H) or NULL, w_ih (G H, I),
 * w_hh (G H, H), biases (G H) or NULL. */
static bool cell_ok(const char *fn, int gates, ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih,
                    ad_node *w_hh, ad_node *b_ih, ad_node *b_hh)
{
    char s1[96], s2[96];
    ad_node *ops[6] = {h, c, w_ih, w_hh, b_ih, b_hh};
    for (int i = 0; i < 6; i++)
        if (!same_graph(x, ops[i], fn, "an operand"))
            return false;
    if (ad_ndim(x) != 2 || ad_ndim(w_ih) != 2 || ad_ndim(w_hh) != 2) {
        nn_graph_fail(x, "%s: input %s and weights %s must be matrices", fn,
                      ad_shape_str(x, s1, sizeof s1), ad_shape_str(w_ih, s2, sizeof s2));
        return false;
    }
    int64_t hid = ad_shape(w_hh)[1];
    if (ad_shape(w_ih)[0] != gates * hid || ad_shape(w_hh)[0] != gates * hid ||
        ad_shape(w_ih)[1] != ad_shape(x)[1]) {
        nn_graph_fail(x,
                      "%s: weights %s and %s do not fit input %s with %d gates of hidden "
                      "size %lld",
                      fn, ad_shape_str(w_ih, s1, sizeof s1), ad_shape_str(w_hh, s2, sizeof s2),
                      ad_shape_str(x, s2, sizeof s2), gates, (long long)hid);
        return false;
    }
    ad_node *st[2] = {h, c};
    for (int i = 0; i < 2; i++)
        if (st[i] && (ad_ndim(st[i]) != 2 || ad_shape(st[i])[0] != ad_shape(x)[0] ||
                      ad_shape(st[i])[1] != hid)) {
            nn_graph_fail(x, "%s: state %s is not (%lld, %lld)", fn,
                          ad_shape_str(st[i], s1, sizeof s1), (long long)ad_shape(x)[0],
                          (long long)hid);
            return false;
        }
    ad_node *bs[2] = {b_ih, b_hh};
    for (int i = 0; i < 2; i++)
        if (bs[i] && (ad_ndim(bs[i]) != 1 || ad_shape(bs[i])[0] != gates * hid)) {
            nn_graph_fail(x, "%s: bias %s is not (%lld)", fn, ad_shape_str(bs[i], s1, sizeof s1),
                          (long long)(gates * hid));
            return false;
        }
    return true;
}

/* Gate k of width hid along the last axis. */
static ad_node *gate(ad_node *a, int k, int64_t hid)
{
    return ad_slice(a, ad_ndim(a) - 1, k * hid, (k + 1) * hid);
}

ad_node *nn_rnn_cell(ad_node *x, ad_node *h, ad_node *w_ih, ad_node *w_hh, ad_node *b_ih,
                     ad_node *b_hh, nn_activation act)
{
    if (!x || !w_ih || !w_hh || !cell_ok("nn_rnn_cell", 1, x, h, NULL, w_ih, w_hh, b_ih, b_hh))
        return NULL;
    if (act != NN_ACT_TANH && act != NN_ACT_RELU)
        return nn_graph_fail(x, "nn_rnn_cell: activation %s is neither tanh nor relu",
                             nn_activation_name(act) ? nn_activation_name(act) : "?");
    /* h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh) */
    ad_node *z = project(x, w_ih, b_ih);
    if (h)
        z = ad_add(z, project(h, w_hh, b_hh));
    else if (b_hh)
        z = ad_add(z, b_hh);
    return nn_activate(z, act);
}

ad_node *nn_lstm_step(ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih_t, ad_node *w_hh_t,
                      ad_node *b, ad_node **c_out)
{
    if (c_out)
        *c_out = NULL;
    if (!x || !w_ih_t || !w_hh_t)
        return NULL;
    int64_t hid = ad_shape(w_hh_t)[0];
    /* gates (B, 4H) in PyTorch's order i, f, g, o: the bias is written first
     * and x W_ih^T added onto it by the GEMM (ad_linear), then h W_hh^T */
    ad_node *z = b ? ad_linear(x, w_ih_t, b) : ad_matmul(x, w_ih_t);
    if (h)
        z = ad_add(z, ad_matmul(h, w_hh_t));
    ad_node *i = ad_sigmoid(gate(z, 0, hid)), *f = ad_sigmoid(gate(z, 1, hid));
    ad_node *g = ad_tanh(gate(z, 2, hid)), *o = ad_sigmoid(gate(z, 3, hid));
    ad_node *c2 = ad_mul(i, g); /* c' = f c + i g */
    if (c)
        c2 = ad_add(ad_mul(f, c), c2);
    if (c_out)
        *c_out = c2;
    return ad_mul(o, ad_tanh(c2)); /* h' = o tanh(c') */
}

bool nn_lstm_operands_ok(ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih, ad_node *w_hh,
                         ad_node *b_ih, ad_node *b_hh)
{
    return x && w_ih && w_hh && cell_ok("nn_lstm_cell", 4, x, h, c, w_ih, w_hh, b_ih, b_hh);
}

ad_node *nn_lstm_cell(ad_node *x, ad_node *h, ad_node *c, ad_node *w_ih, ad_node *w_hh,
                      ad_node *b_ih, ad_node *b_hh, ad_node **c_out)
{
    if (c_out)
        *c_out = NULL;
    if (!nn_lstm_operands_ok(x, h, c, w_ih, w_hh, b_ih, b_hh))
        return NULL;
    /* x W_ih^T + b_ih + h W_hh^T + b_hh with the two biases added first */
    ad_node *b = b_ih && b_hh ? ad_add(b_ih, b_hh) : b_ih ? b_ih : b_hh;
    return nn_lstm_step(x, h, c, ad_transpose(w_ih), ad_transpose(w_hh), b, c_out);
}

ad_node *nn_gru_cell(ad_node *x, ad_node *h, ad_node *w_ih, ad_node *w_hh, ad_node *b_ih,
                     ad_node *b_hh)
{
    if (!x || !w_ih || !w_hh || !cell_ok("nn_gru_cell", 3, x, h, NULL, w_ih, w_hh, b_ih, b_hh))
        return NULL;
    int64_t hid = ad_shape(w_hh)[1];
    /* PyTorch's order r, z, n:
     *   r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(W_iz x + b_iz + W_hz h + b_hz)
     *   n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h */
    ad_node *gi = project(x, w_ih, b_ih);
    ad_node *gh = h ? project(h, w_hh, b_hh) : b_hh; /* h = 0: only the bias */
    ad_node *r_in = gate(gi, 0, hid), *z_in = gate(gi, 1, hid), *n_in = gate(gi, 2, hid);
    ad_node *r = ad_sigmoid(gh ? ad_add(r_in, gate(gh, 0, hid)) : r_in);
    ad_node *z = ad_sigmoid(gh ? ad_add(z_in, gate(gh, 1, hid)) : z_in);
    ad_node *n = ad_tanh(gh ? ad_add(n_in, ad_mul(r, gate(gh, 2, hid))) : n_in);
    /* h' = n + z (h - n) */
    return ad_add(n, ad_mul(z, h ? ad_sub(h, n) : ad_neg(n)));
}

/* -------------------------------------------------------------- attention */

ad_node *nn_attention(ad_node *x, int heads, ad_node *in_w, ad_node *in_b, ad_node *out_w,
                      ad_node *out_b, int causal, double dropout, ad_node *training)
{
    if (!x || !in_w || !out_w)
        return NULL;
    char s1[96], s2[96];
    const char *fn = "nn_attention";
    ad_node *ops[4] = {in_b, out_w, out_b, training};
    if (!same_graph(x, in_w, fn, "a weight"))
        return NULL;
    for (int i = 0; i < 4; i++)
        if (!same_graph(x, ops[i], fn, "an operand"))
            return NULL;
    if (ad_ndim(x) != 3)
        return nn_graph_fail(x, "%s: input %s is not (batch, time, embed)", fn,
                             ad_shape_str(x, s1, sizeof s1));
    int64_t t = ad_shape(x)[1], e = ad_shape(x)[2];
    if (heads < 1 || e % heads != 0)
        return nn_graph_fail(x, "%s: embed size %lld is not a multiple of %d heads", fn,
                             (long long)e, heads);
    if (ad_ndim(in_w) != 2 || ad_shape(in_w)[0] != 3 * e || ad_shape(in_w)[1] != e ||
        ad_ndim(out_w) != 2 || ad_shape(out_w)[0] != e || ad_shape(out_w)[1] != e)
        return nn_graph_fail(x, "%s: weights %s and %s do not fit embed size %lld", fn,
                             ad_shape_str(in_w, s1, sizeof s1), ad_shape_str(out_w, s2, sizeof s2),
                             (long long)e);
    if ((in_b && (ad_ndim(in_b) != 1 || ad_shape(in_b)[0] != 3 * e)) ||
        (out_b && (ad_ndim(out_b) != 1 || ad_shape(out_b)[0] != e)))
        return nn_graph_fail(x, "%s: biases do not fit embed size %lld", fn, (long long)e);
    if (!(dropout >= 0 && dropout < 1))
        return nn_graph_fail(x, "%s: dropout %g is not in [0, 1)", fn, dropout);
    ad_graph *g = ad_node_graph(x);
    int64_t d = e / heads;
    ad_node *mask = NULL;
    if (causal) { /* -inf above the diagonal: position i sees j <= i */
        int64_t ms[2] = {t, t};
        mask = ad_const(g, 2, ms, NULL, "causal_mask");
        if (!mask)
            return NULL;
        AD_DISPATCH_DTYPE(ad_graph_dtype(g), {
            T *mv = ad_data(mask);
            for (int64_t i = 0; i < t; i++)
                for (int64_t j = 0; j < t; j++)
                    mv[i * t + j] = j > i ? (T)-INFINITY : (T)0;
        });
    }
    /* heads side by side: (B, T, E) -> (B, T, heads, D) -> (B, heads, T, D);
     * 0 keeps the batch and time axes, so the reshape follows any batch */
    int64_t split[4] = {0, 0, heads, d}, merge[3] = {0, 0, e};
    int to_heads[4] = {0, 2, 1, 3};
    /* q, k and v (B, T, E) each from its rows of in_w and in_b: slices of the
     * (3E, E) weight rather than of a (B, T, 3E) product, whose slices and
     * their gradients (placed back and summed) move B·T/E times more values */
    ad_node *part[3];
    for (int p = 0; p < 3; p++)
        part[p] = project(x, ad_slice(in_w, 0, p * e, (p + 1) * e),
                          in_b ? ad_slice(in_b, 0, p * e, (p + 1) * e) : NULL);
    ad_node *q = ad_permute(ad_reshape(part[0], 4, split), to_heads);
    ad_node *k = ad_permute(ad_reshape(part[1], 4, split), to_heads);
    ad_node *v = ad_permute(ad_reshape(part[2], 4, split), to_heads);
    ad_node *s = ad_scale(ad_matmul_t(q, 0, k, 1), 1.0 / sqrt((double)d)); /* (B, heads, T, T) */
    if (mask)
        s = ad_add(s, mask);
    ad_node *a = ad_softmax(s, 3);
    if (dropout > 0)
        a = nn_dropout(a, dropout, training);
    ad_node *o = ad_permute(ad_matmul(a, v), to_heads); /* (B, T, heads, D) */
    ad_node *cat = ad_reshape(o, 3, merge);             /* (B, T, E) */
    return project(cat, out_w, out_b);
}
