/* Sigmoid saturation: per-layer gradient norms of a deep sigmoid MLP against
 * the same MLP with ReLU (Géron, chapter 11: vanishing gradients).
 *
 * σ'(z) = σ(z)(1 − σ(z)) is at most 0.25, so every sigmoid layer the
 * gradient passes on its way back multiplies it by at most 0.25 (times the
 * weights): the first layers of a deep sigmoid stack barely learn. ReLU's
 * derivative is 1 on its active half, and with He initialisation the norm
 * of the gradient stays of the same order in every layer.
 *
 *     saturation                  prints the table
 *     saturation --svg FILE       also draws it (log scale) as SVG
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chainrule/autodiff.h>

#define LAYERS 10
#define WIDTH 64
#define BATCH 128

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static double uniform(void) /* splitmix64 -> (0, 1) */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void) /* Box-Muller */
{
    return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}

/* Builds the MLP (LAYERS hidden layers of WIDTH, sigmoid or ReLU), runs
 * one backward pass of a squared-error loss and stores ‖∂L/∂W_l‖ per layer. */
static int gradient_norms(int relu, double norms[LAYERS])
{
    rng_state = 0x9E3779B97F4A7C15u; /* the same data for both networks */
    ad_graph *g = ad_graph_new(AD_F64);
    if (!g)
        return -1;
    static double buf[WIDTH * WIDTH > BATCH * WIDTH ? WIDTH * WIDTH : BATCH * WIDTH];
    int64_t xs[2] = {BATCH, WIDTH}, ws[2] = {WIDTH, WIDTH}, ts[2] = {BATCH, 1};
    for (int i = 0; i < BATCH * WIDTH; i++)
        buf[i] = normal();
    ad_node *h = ad_const(g, 2, xs, buf, "X");
    ad_node *W[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        char name[16];
        snprintf(name, sizeof name, "W%d", l + 1);
        W[l] = ad_param(g, 2, ws, name);
        /* LeCun init (std 1/√fan_in) for sigmoid, He (√(2/fan_in)) for ReLU */
        double std = (relu ? sqrt(2.0) : 1.0) / sqrt((double)WIDTH);
        for (int i = 0; i < WIDTH * WIDTH; i++)
            buf[i] = std * normal();
        ad_set(W[l], buf, WIDTH * WIDTH);
        ad_node *z = ad_matmul(h, W[l]);
        h = relu ? ad_relu(z) : ad_sigmoid(z);
    }
    int64_t os[2] = {WIDTH, 1};
    ad_node *wout = ad_param(g, 2, os, "Wout");
    for (int i = 0; i < WIDTH; i++)
        buf[i] = normal() / sqrt((double)WIDTH);
    ad_set(wout, buf, WIDTH);
    for (int i = 0; i < BATCH; i++)
        buf[i] = normal();
    ad_node *t = ad_const(g, 2, ts, buf, "T");
    ad_node *loss = ad_mean(ad_pow(ad_sub(ad_matmul(h, wout), t), 2), AD_ALL);
    if (ad_backward(loss) != 0) {
        fprintf(stderr, "saturation: %s\n", ad_graph_error(g));
        ad_graph_free(g);
        return -1;
    }
    for (int l = 0; l < LAYERS; l++) {
        ad_get_grad(W[l], buf, WIDTH * WIDTH);
        double s = 0;
        for (int i = 0; i < WIDTH * WIDTH; i++)
            s += buf[i] * buf[i];
        norms[l] = sqrt(s);
    }
    ad_graph_free(g);
    return 0;
}

/* A log-scale line chart of both series. */
static int write_svg(const char *path, const double sig[LAYERS], const double rel[LAYERS])
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const double W = 780, H = 420, L = 80, R = 210, T = 50, B = 60;
    double lo = 1e300, hi = 0;
    for (int l = 0; l < LAYERS; l++) {
        lo = fmin(lo, fmin(sig[l], rel[l]));
        hi = fmax(hi, fmax(sig[l], rel[l]));
    }
    int dlo = (int)floor(log10(lo)), dhi = (int)ceil(log10(hi));
    if (dhi == dlo)
        dhi++;
#define X(l) (L + (W - L - R) * (l) / (LAYERS - 1))
#define Y(v) (T + (H - T - B) * (dhi - log10(v)) / (dhi - dlo))
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
            "font-family=\"DejaVu Sans, sans-serif\" font-size=\"13\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%g\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">Gradient norm "
            "‖∂L/∂Wₗ‖ per layer, %d-layer MLP (width %d)</text>\n",
            W, H, (W - R + L) / 2, LAYERS, WIDTH);
    for (int d = dlo; d <= dhi; d++) {
        double y = Y(pow(10, d));
        fprintf(f,
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#dddddd\"/>\n"
                "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">1e%d</text>\n",
                L, y, W - R, y, L - 8, y + 4, d);
    }
    for (int l = 0; l < LAYERS; l++)
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%d</text>\n", X(l), H - B + 20,
                l + 1);
    fprintf(f,
            "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">layer (1 = next to the input; "
            "the gradient flows from right to left)</text>\n",
            (W - R + L) / 2, H - 15);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, H - B,
            W - R, H - B);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, T, L,
            H - B);
    const double *series[2] = {sig, rel};
    const char *color[2] = {"#c0392b", "#2471a3"},
               *label[2] = {"sigmoid (LeCun init)", "ReLU (He init)"};
    for (int s = 0; s < 2; s++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\" points=\"",
                color[s]);
        for (int l = 0; l < LAYERS; l++)
            fprintf(f, "%g,%g ", X(l), Y(series[s][l]));
        fprintf(f, "\"/>\n");
        for (int l = 0; l < LAYERS; l++)
            fprintf(f, "<circle cx=\"%g\" cy=\"%g\" r=\"4\" fill=\"%s\"/>\n", X(l), Y(series[s][l]),
                    color[s]);
        fprintf(f,
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" "
                "stroke-width=\"2.5\"/><text x=\"%g\" y=\"%g\">%s</text>\n",
                W - R + 15, T + 20 + 24 * s, W - R + 40, T + 20 + 24 * s, color[s], W - R + 46,
                T + 24 + 24 * s, label[s]);
    }
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    double sig[LAYERS], rel[LAYERS];
    if (gradient_norms(0, sig) != 0 || gradient_norms(1, rel) != 0)
        return 1;
    printf("per-layer gradient norms |dL/dW_l|, %d layers of width %d, batch %d\n", LAYERS, WIDTH,
           BATCH);
    printf("layer   sigmoid      relu\n");
    for (int l = 0; l < LAYERS; l++)
        printf("%5d   %.3e    %.3e\n", l + 1, sig[l], rel[l]);
    printf("first/last layer ratio: sigmoid %.2g, relu %.2g\n", sig[0] / sig[LAYERS - 1],
           rel[0] / rel[LAYERS - 1]);
    /* the factor by which the gradient shrinks from one layer to the one
       below it (layer l + 1 to l), and the spread of the ReLU norms */
    double lo = INFINITY, hi = 0, rlo = INFINITY, rhi = 0;
    for (int l = 0; l + 1 < LAYERS; l++) {
        double r = sig[l + 1] / sig[l];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    for (int l = 0; l < LAYERS; l++) {
        rlo = rel[l] < rlo ? rel[l] : rlo;
        rhi = rel[l] > rhi ? rel[l] : rhi;
    }
    printf("sigmoid, shrink per layer |dL/dW_l+1| / |dL/dW_l|: %.2f to %.2f, geometric mean "
           "%.2f\n",
           lo, hi, pow(sig[LAYERS - 1] / sig[0], 1.0 / (LAYERS - 1)));
    printf("relu, largest / smallest layer norm: %.2f\n", rhi / rlo);
    /* the point of the example, checked: sigmoid gradients vanish toward the input */
    if (!(sig[0] < 1e-3 * sig[LAYERS - 1]) || !(rel[0] > 0.05 * rel[LAYERS - 1])) {
        fprintf(stderr, "saturation: unexpected gradient norms\n");
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "--svg") == 0 && write_svg(argv[2], sig, rel) != 0) {
        fprintf(stderr, "saturation: cannot write %s\n", argv[2]);
        return 1;
    }
    return 0;
}
