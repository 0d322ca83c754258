/* The graphs of docs/teaching.md, written as Graphviz DOT with
 * chainrule/dump.h: the single neuron (forward, and with its backward
 * graph), a TLU, and a two-layer MLP at tensor granularity.
 *
 *     teaching_pictures DIR     writes DIR/neuron.dot, neuron_backward.dot,
 *                               tlu.dot, mlp.dot, mlp_scalar.dot,
 *                               tanh_second.dot and neuron_trace.txt
 *     teaching_pictures         builds them all and checks they can be written
 *
 * docs/img/render.sh turns them into the PNGs next to the tutorial. */
#include <math.h>
#include <stdio.h>

#include <chainrule/autodiff.h>
#include <chainrule/dump.h>

static FILE *open_out(const char *dir, const char *name)
{
    if (!dir)
        return tmpfile();
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        perror(path);
    return f;
}

static int save(ad_graph *g, ad_node *out, const char *dir, const char *name, unsigned flags)
{
    FILE *f = open_out(dir, name);
    if (!f)
        return -1;
    int rc = ad_dump_dot(g, out, f, flags);
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "%s: %s\n", name, ad_graph_error(g) ? ad_graph_error(g) : "write error");
        return -1;
    }
    return 0;
}

/* o = tanh(x1*w1 + x2*w2 + b), the lecture's neuron */
static int neuron(const char *dir)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x1 = ad_scalar(g, 2.0, "x1"), *x2 = ad_scalar(g, 0.0, "x2");
    ad_node *w1 = ad_scalar(g, -3.0, "w1"), *w2 = ad_scalar(g, 1.0, "w2");
    ad_node *b = ad_scalar(g, 6.8813735870195432, "b");
    ad_node *x1w1 = ad_mul(x1, w1);
    ad_node *x2w2 = ad_mul(x2, w2);
    ad_node *n = ad_add(ad_add(x1w1, x2w2), b);
    ad_node_set_name(n, "n");
    ad_node *o = ad_tanh(n);
    ad_node_set_name(o, "o");
    int rc = ad_backward(o);
    rc = rc ? rc : save(g, o, dir, "neuron.dot", AD_DUMP_DEFAULT);
    rc = rc ? rc : save(g, o, dir, "neuron_backward.dot", AD_DUMP_DEFAULT | AD_DUMP_BACKWARD);
    FILE *f = rc ? NULL : open_out(dir, "neuron_trace.txt");
    if (!f || ad_trace(o, f, AD_TRACE_CHECK) != 0)
        rc = -1;
    if (f)
        fclose(f);
    /* with DIR, also the backward-pass stepper page (Graphviz draws its
       picture): DIR/neuron_stepper.html */
    if (rc == 0 && dir) {
        f = open_out(dir, "neuron_stepper.html");
        if (!f || ad_dump_html(g, o, f, AD_DUMP_DEFAULT) != 0) {
            fprintf(stderr, "neuron_stepper.html: %s\n", f ? ad_graph_error(g) : "not written");
            rc = -1;
        }
        if (f && fclose(f) != 0)
            rc = -1;
    }
    ad_graph_free(g);
    return rc;
}

/* A threshold logic unit: o = step(x1*w1 + x2*w2 + b). */
static int tlu(const char *dir)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x1 = ad_const_scalar(g, 2.0, "x1"), *x2 = ad_const_scalar(g, 0.0, "x2");
    ad_node *w1 = ad_scalar(g, -3.0, "w1"), *w2 = ad_scalar(g, 1.0, "w2");
    ad_node *b = ad_scalar(g, 6.8813735870195432, "b");
    ad_node *x1w1 = ad_mul(x1, w1);
    ad_node *x2w2 = ad_mul(x2, w2);
    ad_node *z = ad_add(ad_add(x1w1, x2w2), b);
    ad_node_set_name(z, "z");
    ad_node *o = ad_step(z);
    ad_node_set_name(o, "o");
    int rc = ad_backward(o);
    rc = rc ? rc : save(g, o, dir, "tlu.dot", AD_DUMP_DEFAULT);
    ad_graph_free(g);
    return rc;
}

/* Two layers at tensor granularity: L = mean((relu(X W1 + b1) W2 + b2 − T)²). */
static int mlp(const char *dir)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {4, 3}, w1s[2] = {3, 5}, b1s[1] = {5}, w2s[2] = {5, 2}, b2s[1] = {2},
            ts[2] = {4, 2};
    double xv[12], w1v[15], w2v[10], tv[8], b1v[5] = {0.1, 0, -0.1, 0.2, 0}, b2v[2] = {0, 0.1};
    for (int i = 0; i < 12; i++)
        xv[i] = sin(1.0 + i);
    for (int i = 0; i < 15; i++)
        w1v[i] = 0.6 * cos(2.0 * i + 0.5);
    for (int i = 0; i < 10; i++)
        w2v[i] = 0.5 * sin(3.0 * i + 1);
    for (int i = 0; i < 8; i++)
        tv[i] = i % 2;
    ad_node *X = ad_const(g, 2, xs, xv, "X"), *T = ad_const(g, 2, ts, tv, "T");
    ad_node *W1 = ad_param(g, 2, w1s, "W1"), *b1 = ad_param(g, 1, b1s, "b1");
    ad_node *W2 = ad_param(g, 2, w2s, "W2"), *b2 = ad_param(g, 1, b2s, "b2");
    ad_set(W1, w1v, 15);
    ad_set(b1, b1v, 5);
    ad_set(W2, w2v, 10);
    ad_set(b2, b2v, 2);
    ad_node *Z1 = ad_add(ad_matmul(X, W1), b1);
    ad_node_set_name(Z1, "Z1");
    ad_node *H = ad_relu(Z1);
    ad_node_set_name(H, "H");
    ad_node *Y = ad_add(ad_matmul(H, W2), b2);
    ad_node_set_name(Y, "Y");
    ad_node *L = ad_mean(ad_pow(ad_sub(Y, T), 2), AD_ALL);
    ad_node_set_name(L, "L");
    int rc = ad_backward(L);
    rc = rc ? rc : save(g, L, dir, "mlp.dot", AD_DUMP_DEFAULT);
    ad_graph_free(g);
    return rc;
}

/* A 2-3-1 MLP neuron by neuron (13 parameters), the size of a slide:
 * h_j = tanh(x1·w1j + x2·w2j + bj), y = h1·v1 + h2·v2 + h3·v3 + c,
 * L = (y − t)². */
static int mlp_scalar(const char *dir)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x[2] = {ad_const_scalar(g, 0.5, "x1"), ad_const_scalar(g, -1.0, "x2")};
    ad_node *t = ad_const_scalar(g, 1.0, "t");
    static const double w[2][3] = {{0.8, -0.4, 0.3}, {0.2, 0.9, -0.6}}, bv[3] = {0.1, -0.2, 0};
    static const double v[3] = {1.2, -0.7, 0.5};
    ad_node *y = ad_scalar(g, 0.05, "c");
    for (int j = 0; j < 3; j++) {
        char name[8];
        ad_node *z = NULL;
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "w%d%d", i + 1, j + 1);
            ad_node *p = ad_mul(x[i], ad_scalar(g, w[i][j], name));
            z = z ? ad_add(z, p) : p;
        }
        snprintf(name, sizeof name, "b%d", j + 1);
        z = ad_add(z, ad_scalar(g, bv[j], name));
        snprintf(name, sizeof name, "z%d", j + 1);
        ad_node_set_name(z, name);
        ad_node *h = ad_tanh(z);
        snprintf(name, sizeof name, "h%d", j + 1);
        ad_node_set_name(h, name);
        snprintf(name, sizeof name, "v%d", j + 1);
        y = ad_add(y, ad_mul(h, ad_scalar(g, v[j], name)));
    }
    ad_node_set_name(y, "y");
    ad_node *L = ad_pow(ad_sub(y, t), 2);
    ad_node_set_name(L, "L");
    int rc = ad_backward(L);
    rc = rc ? rc : save(g, L, dir, "mlp_scalar.dot", AD_DUMP_DEFAULT | AD_DUMP_COMPACT);
    ad_graph_free(g);
    return rc;
}

/* Second order: d²tanh(x)/dx² at x = 0.5, the gradient graph of the
 * gradient graph, drawn one cluster per order of differentiation. */
static int tanh_second(const char *dir)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.5, "x");
    ad_node *y = ad_tanh(x);
    ad_node_set_name(y, "y");
    ad_node *dy = ad_grad(y, x);
    ad_node *d2y = dy ? ad_grad(dy, x) : NULL;
    int rc = d2y ? 0 : -1;
    rc = rc ? rc : save(g, d2y, dir, "tanh_second.dot", AD_DUMP_DEFAULT | AD_DUMP_BACKWARD);
    if (rc)
        fprintf(stderr, "tanh_second: %s\n", ad_graph_error(g));
    ad_graph_free(g);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : NULL;
    if (neuron(dir) != 0 || tlu(dir) != 0 || mlp(dir) != 0 || mlp_scalar(dir) != 0 ||
        tanh_second(dir) != 0)
        return 1;
    return 0;
}
