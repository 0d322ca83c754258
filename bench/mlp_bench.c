/* bench/mlp_bench -- chainrule's side of the tensor benchmarks (bench/run).
 *
 * Workloads (f32, one process; the PyTorch side is bench/torch_bench.py):
 *   train B N    Fashion-MNIST MLP 784-300-100-10 (ReLU, softmax cross-entropy,
 *                SGD lr 0.01): one pass over the first N training images in
 *                order, mini-batches of B (the last may be smaller). Also
 *                counts allocator calls per step after the first and the peak
 *                bytes the model holds (through nn_model_new_sequential_with's hook).
 *   infer        predicted classes of the 10,000 test images (a model built
 *                for 10,000 rows; the library runs it in cache-sized chunks).
 *   matmul K     chain of 4 matmuls 1024x1024 with tanh between, sum as the
 *                loss: K times forward + backward, time per iteration.
 *   mem B S      S steps at batch B on synthetic data (no dataset loaded) and
 *                getrusage maxrss before and after (run in a fresh process).
 *   conv L K     one convolution layer with bias, forward + backward of the
 *                sum of its output, K times, time per iteration: L = 1 is
 *                batch 32, 1 -> 32 channels, 3x3, 28x28, padding 1 (input
 *                needs no gradient); L = 2 is batch 32, 32 -> 64 channels,
 *                3x3, 14x14, padding 1 (input gradient too, as inside a CNN).
 *   transformer K  examples/makemore.c's transformer (makemore_model.c: batch
 *                32, context 16, embedding 64, 2 pre-norm blocks of 4 heads,
 *                feed-forward 256, 27 symbols; Adam lr 3e-3, clipping at norm
 *                1): one warm-up step, then K training steps on random
 *                windows of a fixed random stream; time per step.
 *
 * usage: mlp_bench [--data DIR] serve     commands on stdin, one JSON line out each
 *        mlp_bench [--data DIR] CMD ARGS  one command
 * Each answer is one JSON line with "time" in seconds (and details). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <chainrule/autodiff.h>
#include <chainrule/data.h>
#include <chainrule/nn.h>

#include "makemore_model.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process (less sensitive than wall time to a shared machine) */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------- counting allocator */

typedef struct {
    long long calls; /* allocations and reallocations (nsize > 0) */
    long long frees;
    size_t cur, peak; /* bytes held */
} counter;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *c = ud;
    if (nsize == 0) {
        if (ptr) {
            c->frees++;
            c->cur -= osize;
        }
        free(ptr);
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    c->calls++;
    c->cur = c->cur - (ptr ? osize : 0) + nsize;
    if (c->cur > c->peak)
        c->peak = c->cur;
    return p;
}

static const int64_t widths[4] = {784, 300, 100, 10};

static nn_model *make_mlp(int64_t batch, nn_loss loss, counter *c)
{
    nn_model *m = nn_model_new_sequential_with(AD_F32, 784, count_alloc, c, NULL);
    if (!m)
        return NULL;
    for (int i = 1; i < 4; i++) {
        if (nn_model_add_dense(m, widths[i], 1, NN_INIT_HE_UNIFORM) ||
            (i < 3 && nn_model_add_activation(m, NN_ACT_RELU))) {
            nn_model_free(m);
            return NULL;
        }
    }
    if (nn_model_set_loss(m, loss) || nn_model_build(m, batch, 42)) {
        fprintf(stderr, "build: %s\n", nn_model_error(m));
        nn_model_free(m);
        return NULL;
    }
    return m;
}

/* parameters + gradients + optimizer state + one batch's activations (x,
 * pre-activations and activations of each layer, logits), in bytes */
static double budget_bytes(int64_t batch, int64_t nparams, int64_t nstate)
{
    int64_t acts = batch * (784 + 2 * 300 + 2 * 100 + 10);
    return 4.0 * (double)(2 * nparams + nstate + acts);
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* current resident set (VmRSS of /proc/self/status) in kB, -1 if unknown */
static long rss_now_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* ------------------------------------------------------------ workloads */

static io_dataset *train_ds, *test_ds;
static const char *data_dir = IO_FASHION_MNIST_DIR;

static int load_data(void)
{
    if (train_ds)
        return 0;
    ad_error err;
    if (io_mnist_load(data_dir, &train_ds, &test_ds, &err) != 0) {
        fprintf(stderr, "mlp_bench: %s\n", err.message);
        return -1;
    }
    io_dataset_scale(train_ds, 255.0f);
    io_dataset_scale(test_ds, 255.0f);
    return 0;
}

static int cmd_train(int64_t batch, int64_t n)
{
    if (load_data())
        return -1;
    if (n <= 0 || n > train_ds->n)
        n = train_ds->n;
    counter c = {0};
    nn_model *m = make_mlp(batch, NN_LOSS_CROSS_ENTROPY, &c);
    if (!m)
        return -1;
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.lr = 0.01;
    /* the step inside the backward pass, as `chainrule train` takes it;
       MLP_BENCH_FUSED=0 times the separate step */
    const char *fused = getenv("MLP_BENCH_FUSED");
    cfg.fused = !(fused && strcmp(fused, "0") == 0);
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    if (!opt)
        return -1;
    long long calls_after_first = 0;
    int64_t steps = 0;
    double loss = 0, first_loss = 0, t_first = 0;
    double t0 = now(), c0 = cpu_now();
    for (int64_t i = 0; i < n; i += batch) {
        int64_t rows = n - i < batch ? n - i : batch;
        const float *x = train_ds->x + (size_t)i * 784;
        /* the rows are read in place, as PyTorch's side reads its slices:
           the input borrows the dataset's rows (ad_input_borrow); a shorter
           last batch first resizes the model (nn_model_set_input_f32) */
        if ((rows != nn_model_batch(m) && nn_model_set_input_f32(m, x, rows, 784)) ||
            nn_model_set_labels(m, train_ds->y + i, rows) ||
            ad_input_borrow(nn_model_input(m), x) || nn_model_train_step(m, opt, &loss)) {
            fprintf(stderr, "train: %s\n", nn_model_error(m));
            return -1;
        }
        if (steps == 0) {
            first_loss = loss;
            t_first = now() - t0;
            calls_after_first = c.calls;
        }
        steps++;
    }
    double t = now() - t0, cpu = cpu_now() - c0;
    long long extra = c.calls - calls_after_first;
    printf("{\"time\": %.6f, \"cpu_time\": %.6f, \"first_step\": %.6f, \"examples\": %lld, "
           "\"steps\": %lld, "
           "\"first_loss\": %.5f, \"last_loss\": %.5f, \"allocs_after_first\": %lld, "
           "\"allocs_per_step\": %.3f, \"peak_bytes\": %zu, \"budget_bytes\": %.0f}\n",
           t, cpu, t_first, (long long)n, (long long)steps, first_loss, loss, extra,
           steps > 1 ? (double)extra / (double)(steps - 1) : 0.0, c.peak,
           budget_bytes(batch, nn_model_param_count(m), nn_optimizer_state_count(opt)));
    nn_optimizer_free(opt);
    nn_model_free(m);
    return 0;
}

static int64_t *classes_buf;

static int cmd_infer(void)
{
    if (load_data())
        return -1;
    int64_t n = test_ds->n;
    counter c = {0};
    nn_model *m = make_mlp(n, NN_LOSS_NONE, &c);
    if (!m)
        return -1;
    if (!classes_buf)
        classes_buf = malloc(sizeof *classes_buf * (size_t)n);
    /* warm-up: the first forward may touch fresh pages */
    if (nn_model_predict_classes_f32(m, test_ds->x, n, 784, classes_buf))
        return -1;
    double t0 = now();
    if (nn_model_predict_classes_f32(m, test_ds->x, n, 784, classes_buf)) {
        fprintf(stderr, "infer: %s\n", nn_model_error(m));
        return -1;
    }
    double t = now() - t0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++)
        correct += classes_buf[i] == test_ds->y[i];
    printf("{\"time\": %.6f, \"examples\": %lld, \"accuracy_untrained\": %.4f}\n", t, (long long)n,
           (double)correct / (double)n);
    nn_model_free(m);
    return 0;
}

static int cmd_matmul(int iters)
{
    const int64_t N = 1024, sh[2] = {N, N};
    ad_graph *g = ad_graph_new(AD_F32);
    ad_node *x = ad_input(g, 2, sh, "x");
    float *xv = ad_data(x);
    uint64_t s = 7;
    for (int64_t i = 0; i < N * N; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        xv[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 2 - 1);
    }
    ad_node *h = x;
    for (int l = 0; l < 4; l++) {
        ad_node *w = ad_param(g, 2, sh, "w");
        float *wv = ad_data(w);
        for (int64_t i = 0; i < N * N; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            wv[i] = (float)(((double)(s >> 11) * 0x1.0p-53 * 2 - 1) / 32.0);
        }
        h = ad_matmul(h, w);
        if (l < 3)
            h = ad_tanh(h);
    }
    ad_node *loss = ad_sum(h, AD_ALL);
    if (!loss || ad_backward(loss)) { /* builds the backward pass */
        fprintf(stderr, "matmul: %s\n", ad_graph_error(g));
        return -1;
    }
    double best_total = 0;
    double t0 = now();
    for (int i = 0; i < iters; i++) {
        ad_forward(g);
        ad_zero_grad(g);
        ad_backward(loss);
    }
    best_total = now() - t0;
    if (ad_graph_error(g)) {
        fprintf(stderr, "matmul: %s\n", ad_graph_error(g));
        return -1;
    }
    printf("{\"time\": %.6f, \"iters\": %d, \"loss\": %.6g}\n", best_total / iters, iters,
           ad_item(loss));
    ad_graph_free(g);
    return 0;
}

/* uniform values in [-scale, scale) from a fixed LCG */
static void fill_uniform(ad_node *n, uint64_t seed, double scale)
{
    float *v = ad_data(n);
    for (int64_t i = 0; i < ad_numel(n); i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i] = (float)(((double)(seed >> 11) * 0x1.0p-53 * 2 - 1) * scale);
    }
}

static int cmd_conv(int layer, int iters)
{
    const int64_t cin = layer == 1 ? 1 : 32, cout = layer == 1 ? 32 : 64;
    const int64_t hw = layer == 1 ? 28 : 14;
    const int64_t xs[4] = {32, cin, hw, hw}, ws[4] = {cout, cin, 3, 3}, bs[1] = {cout};
    ad_graph *g = ad_graph_new(AD_F32);
    ad_graph_set_memory_reuse(g, 1);
    /* layer 2's input is an intermediate of a network: it needs its gradient */
    ad_node *x = layer == 1 ? ad_input(g, 4, xs, "x") : ad_param(g, 4, xs, "x");
    ad_node *w = ad_param(g, 4, ws, "w"), *b = ad_param(g, 1, bs, "b");
    if (!x || !w || !b)
        return -1;
    fill_uniform(x, 3, 1.0);
    fill_uniform(w, 5, 1.0 / sqrt((double)(cin * 9)));
    ad_conv_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad_node *loss = ad_sum(ad_conv2d_bias(x, w, b, &o), AD_ALL); /* nn.Conv2d's bias */
    if (!loss || ad_backward(loss)) {                            /* builds the backward pass */
        fprintf(stderr, "conv: %s\n", ad_graph_error(g));
        return -1;
    }
    double t0 = now();
    for (int i = 0; i < iters; i++) {
        ad_forward(g);
        ad_zero_grad(g);
        ad_backward(loss);
    }
    double t = (now() - t0) / iters;
    if (ad_graph_error(g)) {
        fprintf(stderr, "conv: %s\n", ad_graph_error(g));
        return -1;
    }
    printf("{\"time\": %.6f, \"iters\": %d, \"loss\": %.6g}\n", t, iters, ad_item(loss));
    ad_graph_free(g);
    return 0;
}

/* makemore's transformer: K Adam steps at batch 32, time per step (after
 * one warm-up step, which sizes the optimizer state and pages in buffers) */
static int cmd_transformer(int iters)
{
    enum { B = 32, T = MAKEMORE_SEQ_CONTEXT, LEN = 4096 };
    ad_node *target = NULL;
    nn_model *m = makemore_model(MAKEMORE_TRANSFORMER, B, 42, &target);
    if (!m)
        return -1;
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.lr = 3e-3;
    cfg.clip_norm = 1.0;
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    if (!opt) {
        nn_model_free(m);
        return -1;
    }
    static unsigned char stream[LEN];
    uint64_t s = 11;
    for (int i = 0; i < LEN; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        stream[i] = (unsigned char)((s >> 33) % MAKEMORE_VOCAB);
    }
    double x[B * T], y[B * T], loss = 0, first_loss = 0, t0 = 0;
    for (int step = 0; step <= iters; step++) {
        if (step == 1)
            t0 = now();
        for (int i = 0; i < B; i++) { /* a window and the characters that follow it */
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            int64_t p = (int64_t)((s >> 33) % (LEN - T - 1));
            for (int t = 0; t < T; t++) {
                x[i * T + t] = stream[p + t];
                y[i * T + t] = stream[p + t + 1];
            }
        }
        if (nn_model_set_input(m, x, B, T) || ad_set(target, y, B * T) ||
            nn_model_train_step(m, opt, &loss)) {
            fprintf(stderr, "transformer: %s\n", nn_model_error(m));
            nn_optimizer_free(opt);
            nn_model_free(m);
            return -1;
        }
        if (step == 0)
            first_loss = loss;
    }
    double t = iters > 0 ? (now() - t0) / iters : 0;
    printf("{\"time\": %.6f, \"iters\": %d, \"first_loss\": %.5f, \"last_loss\": %.5f, "
           "\"batch\": %d, \"context\": %d, \"embed\": %d, \"heads\": %d, \"ff\": %d, "
           "\"blocks\": %d, \"vocab\": %d, \"params\": %lld}\n",
           t, iters, first_loss, loss, B, T, MAKEMORE_EMBED, MAKEMORE_HEADS, MAKEMORE_FF,
           MAKEMORE_BLOCKS, MAKEMORE_VOCAB, (long long)nn_model_param_count(m));
    nn_optimizer_free(opt);
    nn_model_free(m);
    return 0;
}

static int cmd_mem(int64_t batch, int steps)
{
    long rss0 = maxrss_kb(), cur0 = rss_now_kb();
    counter c = {0};
    nn_model *m = make_mlp(batch, NN_LOSS_CROSS_ENTROPY, &c);
    if (!m)
        return -1;
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_SGD);
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, NULL);
    float *x = malloc(sizeof *x * (size_t)(batch * 784));
    int *y = malloc(sizeof *y * (size_t)batch);
    if (!opt || !x || !y)
        return -1;
    uint64_t s = 1;
    for (int64_t i = 0; i < batch * 784; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((double)(s >> 11) * 0x1.0p-53);
    }
    for (int64_t i = 0; i < batch; i++)
        y[i] = (int)(i % 10);
    long rss_data = maxrss_kb();
    for (int k = 0; k < steps; k++)
        if (nn_model_set_input_f32(m, x, batch, 784) || nn_model_set_labels(m, y, batch) ||
            nn_model_train_step(m, opt, NULL)) {
            fprintf(stderr, "mem: %s\n", nn_model_error(m));
            return -1;
        }
    long rss1 = maxrss_kb(), cur1 = rss_now_kb();
    printf("{\"time\": 0, \"maxrss_start_kb\": %ld, \"maxrss_built_kb\": %ld, "
           "\"maxrss_end_kb\": %ld, \"rss_start_kb\": %ld, \"rss_end_kb\": %ld, "
           "\"peak_bytes\": %zu, \"budget_bytes\": %.0f, "
           "\"graph_bytes\": %zu, \"graph_nodes\": %lld}\n",
           rss0, rss_data, rss1, cur0, cur1, c.peak,
           budget_bytes(batch, nn_model_param_count(m), nn_optimizer_state_count(opt)),
           ad_graph_bytes(nn_model_graph(m)), (long long)ad_graph_size(nn_model_graph(m)));
    free(x);
    free(y);
    nn_optimizer_free(opt);
    nn_model_free(m);
    return 0;
}

static int run(int argc, char **argv)
{
    if (argc < 1)
        return -1;
    const char *cmd = argv[0];
    if (strcmp(cmd, "train") == 0 && argc >= 2)
        return cmd_train(atoll(argv[1]), argc >= 3 ? atoll(argv[2]) : 0);
    if (strcmp(cmd, "infer") == 0)
        return cmd_infer();
    if (strcmp(cmd, "matmul") == 0)
        return cmd_matmul(argc >= 2 ? atoi(argv[1]) : 3);
    if (strcmp(cmd, "conv") == 0 && argc >= 2)
        return cmd_conv(atoi(argv[1]), argc >= 3 ? atoi(argv[2]) : 20);
    if (strcmp(cmd, "transformer") == 0)
        return cmd_transformer(argc >= 2 ? atoi(argv[1]) : 50);
    if (strcmp(cmd, "mem") == 0 && argc >= 2)
        return cmd_mem(atoll(argv[1]), argc >= 3 ? atoi(argv[2]) : 5);
    if (strcmp(cmd, "load") == 0) {
        int rc = load_data();
        if (!rc)
            printf("{\"time\": 0}\n");
        return rc;
    }
    fprintf(stderr, "mlp_bench: unknown command '%s'\n", cmd);
    return -1;
}

int main(int argc, char **argv)
{
    /* bench/run sets OMP_NUM_THREADS per row; the library starts no
     * OpenMP team (and leaves oneDNN out) until told the count */
    const char *threads = getenv("OMP_NUM_THREADS");
    ad_set_threads(threads ? atoi(threads) : 1);
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--data") == 0) {
        data_dir = argv[2];
        i = 3;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: mlp_bench [--data DIR] serve | train B [N] | infer | "
                        "matmul K | conv L [K] | transformer [K] | mem B [S]\n");
        return 2;
    }
    if (strcmp(argv[i], "serve") != 0) {
        int rc = run(argc - i, argv + i);
        free(classes_buf);
        io_dataset_free(train_ds);
        io_dataset_free(test_ds);
        return rc ? 1 : 0;
    }
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        char *args[8];
        int n = 0;
        for (char *tok = strtok(line, " \t\n"); tok && n < 8; tok = strtok(NULL, " \t\n"))
            args[n++] = tok;
        if (n == 0)
            continue;
        if (strcmp(args[0], "quit") == 0)
            break;
        if (run(n, args))
            printf("{\"error\": \"%s failed\"}\n", args[0]);
        fflush(stdout);
    }
    free(classes_buf);
    io_dataset_free(train_ds);
    io_dataset_free(test_ds);
    return 0;
}
