/* bench/scalar_mlp -- the micrograd demo workload built from scalar (0-d)
 * nodes: an MLP 2-16-16-1 with ReLU hidden units over 100 two-moons points,
 * max-margin (hinge) loss plus 1e-4 L2, one forward and backward per step,
 * SGD. Prints nanoseconds per graph node in two modes:
 *   replay:   the graph is built once, each step is ad_forward + ad_backward
 *   rebuild:  define-by-run, the graph is built anew each step (mark/rewind)
 * "per node" divides a step's time by the number of forward nodes (what the
 * user's code creates, as micrograd counts Value objects); the count of
 * backward nodes is printed too.
 *
 * usage: scalar_mlp [steps [replay]] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <chainrule/autodiff.h>

#define NPTS 100
#define PI 3.14159265358979323846
#define H 16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 42;
static double uniform(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}
static double normal(void)
{
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * PI * v);
}

/* two interleaved half circles with noise 0.1; labels -1 / +1 */
static void make_moons(double *x, double *y)
{
    for (int i = 0; i < NPTS; i++) {
        int upper = i < NPTS / 2;
        double t = PI * (upper ? i : i - NPTS / 2) / (NPTS / 2 - 1);
        x[2 * i] = upper ? cos(t) : 1 - cos(t);
        x[2 * i + 1] = upper ? sin(t) : 0.5 - sin(t);
        x[2 * i] += 0.1 * normal();
        x[2 * i + 1] += 0.1 * normal();
        y[i] = upper ? -1 : 1;
    }
}

typedef struct {
    ad_node *w1[H][2], *b1[H], *w2[H][H], *b2[H], *w3[H], *b3;
    ad_node *all[H * 2 + H + H * H + H + H + 1];
    int nparams;
} model;

static void init_model(ad_graph *g, model *m)
{
    m->nparams = 0;
    for (int j = 0; j < H; j++) {
        for (int i = 0; i < 2; i++)
            m->all[m->nparams++] = m->w1[j][i] = ad_scalar(g, 2 * uniform() - 1, "w1");
        m->all[m->nparams++] = m->b1[j] = ad_scalar(g, 0, "b1");
    }
    for (int j = 0; j < H; j++) {
        for (int i = 0; i < H; i++)
            m->all[m->nparams++] = m->w2[j][i] = ad_scalar(g, 2 * uniform() - 1, "w2");
        m->all[m->nparams++] = m->b2[j] = ad_scalar(g, 0, "b2");
    }
    for (int i = 0; i < H; i++)
        m->all[m->nparams++] = m->w3[i] = ad_scalar(g, 2 * uniform() - 1, "w3");
    m->all[m->nparams++] = m->b3 = ad_scalar(g, 0, "b3");
}

/* builds the loss over all points; returns it */
static ad_node *build_loss(ad_graph *g, model *m, const double *x, const double *y, int *accuracy)
{
    ad_node *total = NULL;
    int correct = 0;
    for (int p = 0; p < NPTS; p++) {
        ad_node *in[2] = {ad_const_scalar(g, x[2 * p], "x0"),
                          ad_const_scalar(g, x[2 * p + 1], "x1")};
        ad_node *h1[H], *h2[H];
        for (int j = 0; j < H; j++) {
            ad_node *s = m->b1[j];
            for (int i = 0; i < 2; i++)
                s = ad_add(s, ad_mul(m->w1[j][i], in[i]));
            h1[j] = ad_relu(s);
        }
        for (int j = 0; j < H; j++) {
            ad_node *s = m->b2[j];
            for (int i = 0; i < H; i++)
                s = ad_add(s, ad_mul(m->w2[j][i], h1[i]));
            h2[j] = ad_relu(s);
        }
        ad_node *score = m->b3;
        for (int i = 0; i < H; i++)
            score = ad_add(score, ad_mul(m->w3[i], h2[i]));
        /* hinge: relu(1 - y * score) */
        ad_node *margin = ad_relu(ad_affine(score, -y[p], 1.0));
        total = total ? ad_add(total, margin) : margin;
        if ((ad_item(score) > 0) == (y[p] > 0))
            correct++;
    }
    ad_node *data_loss = ad_scale(total, 1.0 / NPTS);
    ad_node *reg = NULL;
    for (int k = 0; k < m->nparams; k++) {
        ad_node *sq = ad_mul(m->all[k], m->all[k]);
        reg = reg ? ad_add(reg, sq) : sq;
    }
    if (accuracy)
        *accuracy = correct;
    return ad_add(data_loss, ad_scale(reg, 1e-4));
}

static void sgd(model *m, double lr)
{
    for (int k = 0; k < m->nparams; k++) {
        double v = ad_item(m->all[k]) - lr * ad_grad_item(m->all[k]);
        ad_set(m->all[k], &v, 1);
    }
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 100;
    if (steps < 1) {
        fprintf(stderr, "usage: scalar_mlp [steps >= 1]\n");
        return 2;
    }
    double x[2 * NPTS], y[NPTS];
    make_moons(x, y);

    /* replay mode */
    ad_graph *g = ad_graph_new(AD_F64);
    model m;
    init_model(g, &m);
    int64_t leaves = ad_graph_size(g);
    int acc = 0;
    ad_node *loss = build_loss(g, &m, x, y, &acc);
    int64_t forward_nodes = ad_graph_size(g) - leaves;
    if (!loss || ad_backward(loss) != 0) {
        fprintf(stderr, "error: %s\n", ad_graph_error(g));
        return 1;
    }
    int64_t backward_nodes = ad_graph_size(g) - leaves - forward_nodes;
    double first_loss = ad_item(loss);
    double t0 = now();
    for (int s = 0; s < steps; s++) {
        double lr = 1.0 - 0.9 * s / steps;
        sgd(&m, lr);
        ad_forward(g);
        ad_zero_grad(g);
        ad_backward(loss);
    }
    double t_replay = (now() - t0) / steps;
    double last_loss = ad_item(loss);
    if (ad_graph_error(g)) {
        fprintf(stderr, "error: %s\n", ad_graph_error(g));
        return 1;
    }
    ad_graph_free(g);

    if (argc > 2 && argv[2][0] == 'r') { /* "replay": profile replay alone */
        printf("replay: %.1f ns per forward node\n", t_replay * 1e9 / (double)forward_nodes);
        return 0;
    }
    /* define-by-run mode */
    g = ad_graph_new(AD_F64);
    rng_state = 42;
    make_moons(x, y);
    init_model(g, &m);
    int64_t mark = ad_graph_mark(g);
    t0 = now();
    for (int s = 0; s < steps; s++) {
        ad_graph_rewind(g, mark);
        ad_zero_grad(g);
        loss = build_loss(g, &m, x, y, s == steps - 1 ? &acc : NULL);
        ad_backward(loss);
        sgd(&m, 1.0 - 0.9 * s / steps);
    }
    double t_rebuild = (now() - t0) / steps;
    ad_graph_free(g);

    printf("scalar MLP 2-16-16-1, %d points, %d steps, f64\n", NPTS, steps);
    printf("  graph: %lld forward nodes, %lld backward nodes, %d parameters\n",
           (long long)forward_nodes, (long long)backward_nodes, m.nparams);
    printf("  loss %.4f -> %.4f, training accuracy %d%%\n", first_loss, last_loss, acc);
    printf("  replay : %8.1f us/step  %6.1f ns per forward node  %5.1f ns per node (fwd+bwd)\n",
           t_replay * 1e6, t_replay * 1e9 / (double)forward_nodes,
           t_replay * 1e9 / (double)(forward_nodes + backward_nodes));
    printf("  rebuild: %8.1f us/step  %6.1f ns per forward node\n", t_rebuild * 1e6,
           t_rebuild * 1e9 / (double)forward_nodes);
    return 0;
}
