/* makemore.c -- a character-level language model on a word list, in the
 * spirit of Karpathy's makemore: every next character of a stream of words
 * is predicted from the characters before it. Three models, chosen with
 * --model:
 *   mlp          the last k = 3 characters, each embedded in 10 dimensions,
 *                a 200-unit tanh layer (Bengio et al. 2003);
 *   lstm         an embedding (64), one LSTM layer (128), a dense read-out,
 *                over windows of T = 16 characters;
 *   transformer  a causal transformer: embedding + learned positions (64),
 *                2 pre-norm blocks of 4 heads (feed-forward 256), a final
 *                layer norm, context T = 16.
 * Every model is built from nn layers (no derivative is written here; the
 * builder is makemore_model.c, shared with the benchmarks' transformer row), and
 * trained with Adam on random mini-batches. The program reports the train
 * and held-out loss in nats per character and samples words.
 *
 * Data: Debian's wamerican list (/usr/share/dict/american-english) by
 * default; words of lowercase letters a-z only. Every tenth word (in file
 * order) is held out. The stream is ".word.word.word." with '.' the
 * boundary (27 symbols).
 *
 *   makemore [--model mlp|lstm|transformer] [--words FILE] [--limit N]
 *            [--steps N] [--batch N] [--lr X] [--seed N] [--samples N]
 *            [--eval-chars N] [--threads N]
 *
 * --threads (default 1) is the library's thread count (ad_set_threads),
 * so a one-thread run is one thread whatever the environment says; it also
 * lets the library pick oneDNN's sgemm for the shapes where it is faster
 * (autodiff/gemm.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chainrule/autodiff.h>
#include <chainrule/nn.h>

#include "makemore_model.h"

#define VOCAB MAKEMORE_VOCAB
#define DEFAULT_WORDS "/usr/share/dict/american-english"
#define MLP_CONTEXT MAKEMORE_MLP_CONTEXT
#define SEQ_CONTEXT MAKEMORE_SEQ_CONTEXT

typedef struct {
    makemore_kind kind;
    const char *words;
    long limit, steps, batch, samples, eval_chars, threads;
    double lr;
    unsigned long long seed;
} options;

typedef struct {
    unsigned char *ids; /* the stream, 0 = '.', 1..26 = a..z */
    long len;
} stream;

typedef struct {
    nn_model *m;
    ad_node *target;
    int context; /* characters seen per example */
    int seq;     /* 1: every position of a window is predicted */
} lm;

static int usage(const char *msg)
{
    fprintf(stderr,
            "makemore: %s\nusage: makemore [--model mlp|lstm|transformer] [--words FILE] "
            "[--limit N] [--steps N] [--batch N] [--lr X] [--seed N] [--samples N] "
            "[--eval-chars N] [--threads N]\n",
            msg);
    return 2;
}

static int parse_long(const char *s, long lo, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){MAKEMORE_MLP, DEFAULT_WORDS, 0, 2000, 32, 20, 20000, 1, 3e-3, 42};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("every option takes a value");
        long n;
        if (!strcmp(a, "--model")) {
            if (!strcmp(v, "mlp"))
                o->kind = MAKEMORE_MLP;
            else if (!strcmp(v, "lstm"))
                o->kind = MAKEMORE_LSTM;
            else if (!strcmp(v, "transformer"))
                o->kind = MAKEMORE_TRANSFORMER;
            else
                return usage("--model must be mlp, lstm or transformer");
        } else if (!strcmp(a, "--words")) {
            o->words = v;
        } else if (!strcmp(a, "--lr")) {
            char *end;
            o->lr = strtod(v, &end);
            if (end == v || *end || !(o->lr > 0) || !isfinite(o->lr))
                return usage("--lr must be a positive number");
        } else if (parse_long(v, 0, &n) != 0) {
            return usage("option values must be non-negative integers");
        } else if (!strcmp(a, "--limit")) {
            o->limit = n;
        } else if (!strcmp(a, "--steps")) {
            o->steps = n;
        } else if (!strcmp(a, "--batch") && n >= 1) {
            o->batch = n;
        } else if (!strcmp(a, "--seed")) {
            o->seed = (unsigned long long)n;
        } else if (!strcmp(a, "--samples")) {
            o->samples = n;
        } else if (!strcmp(a, "--eval-chars") && n >= 1) {
            o->eval_chars = n;
        } else if (!strcmp(a, "--threads") && n >= 1 && n <= 1024) {
            o->threads = n;
        } else {
            return usage("unknown option or value out of range");
        }
    }
    return 0;
}

static int push(stream *s, long *cap, unsigned char id)
{
    if (s->len == *cap) {
        long ncap = *cap ? *cap * 2 : 4096;
        unsigned char *p = realloc(s->ids, (size_t)ncap);
        if (!p)
            return -1;
        s->ids = p;
        *cap = ncap;
    }
    s->ids[s->len++] = id;
    return 0;
}

/* Reads the word list into a training and a held-out stream (every tenth
 * kept word). Words with anything but a-z are skipped. */
static int load_words(const options *o, stream *train, stream *held, long *nwords)
{
    FILE *f = fopen(o->words, "r");
    if (!f) {
        fprintf(stderr,
                "makemore: cannot open the word list %s: %s\n"
                "  (on Debian: apt-get install wamerican, or give --words FILE)\n",
                o->words, strerror(errno));
        return -1;
    }
    long cap_t = 0, cap_h = 0, kept = 0;
    char line[256];
    int ok = push(train, &cap_t, 0) == 0 && push(held, &cap_h, 0) == 0;
    while (ok && fgets(line, sizeof line, f) && (o->limit == 0 || kept < o->limit)) {
        size_t len = strcspn(line, "\r\n");
        if (len == 0 || len > 40)
            continue;
        bool letters = true;
        for (size_t i = 0; i < len; i++)
            letters = letters && line[i] >= 'a' && line[i] <= 'z';
        if (!letters)
            continue;
        stream *s = kept % 10 == 0 ? held : train;
        long *cap = kept % 10 == 0 ? &cap_h : &cap_t;
        for (size_t i = 0; i < len && ok; i++)
            ok = push(s, cap, (unsigned char)(line[i] - 'a' + 1)) == 0;
        ok = ok && push(s, cap, 0) == 0;
        kept++;
    }
    fclose(f);
    if (!ok) {
        fprintf(stderr, "makemore: out of memory reading %s\n", o->words);
        return -1;
    }
    *nwords = kept;
    if (held->len < SEQ_CONTEXT + 2 || train->len < SEQ_CONTEXT + 2) {
        fprintf(stderr, "makemore: %s holds too few words of the letters a-z (%ld)\n", o->words,
                kept);
        return -1;
    }
    return 0;
}

static int build(lm *L, makemore_kind kind, int64_t b, uint64_t seed)
{
    L->seq = kind != MAKEMORE_MLP;
    L->context = L->seq ? SEQ_CONTEXT : MLP_CONTEXT;
    L->m = makemore_model(kind, b, seed, &L->target);
    return L->m ? 0 : -1;
}

/* Example at stream position p: the context before p and what follows. */
static void example(const lm *L, const stream *s, long p, double *x, double *y)
{
    if (L->seq) { /* a window: x = ids[p .. p+T-1], y = ids[p+1 .. p+T] */
        for (int t = 0; t < L->context; t++) {
            x[t] = s->ids[p + t];
            y[t] = s->ids[p + t + 1];
        }
    } else { /* the k characters before p ('.' before the start) */
        for (int t = 0; t < L->context; t++) {
            long q = p - L->context + t;
            x[t] = q >= 0 ? s->ids[q] : 0;
        }
        y[0] = s->ids[p];
    }
}

static int set_batch(lm *L, const double *x, const double *y, int64_t n)
{
    int64_t per = L->seq ? L->context : 1;
    if (nn_model_set_input(L->m, x, n, L->context) != 0 || ad_set(L->target, y, n * per) != 0) {
        fprintf(stderr, "makemore: %s\n", nn_model_error(L->m));
        return -1;
    }
    return 0;
}

/* Mean loss per character over the first `chars` predictions of s: every
 * position for the MLP, non-overlapping windows for the sequence models. */
static int evaluate(lm *L, const stream *s, long chars, int64_t batch, double *x, double *y,
                    double *mean)
{
    nn_model_set_training(L->m, 0);
    long step = L->seq ? L->context : 1, first = L->seq ? 0 : 1;
    long last = L->seq ? s->len - L->context - 1 : s->len - 1; /* last usable start */
    double total = 0;
    long counted = 0;
    for (long p = first; p <= last && counted < chars;) {
        int64_t n = 0;
        for (; n < batch && p <= last; n++, p += step)
            example(L, s, p, x + n * L->context, y + n * (L->seq ? L->context : 1));
        if (set_batch(L, x, y, n) != 0 || nn_model_forward(L->m) != 0) {
            fprintf(stderr, "makemore: %s\n", nn_model_error(L->m));
            return -1;
        }
        long c = (long)n * (L->seq ? L->context : 1);
        total += nn_model_loss_value(L->m) * (double)c;
        counted += c;
    }
    nn_model_set_training(L->m, 1);
    *mean = total / (double)counted;
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One word sampled character by character from the model's softmax. */
static int sample_word(lm *L, nn_rng *rng, char *word, int max)
{
    double ctx[SEQ_CONTEXT] = {0}, logits[SEQ_CONTEXT * VOCAB];
    int len = 0;
    for (;;) {
        if (nn_model_predict(L->m, ctx, 1, L->context, logits) != 0) {
            fprintf(stderr, "makemore: %s\n", nn_model_error(L->m));
            return -1;
        }
        const double *z = L->seq ? logits + (L->context - 1) * VOCAB : logits;
        double top = z[0], p[VOCAB], sum = 0;
        for (int v = 1; v < VOCAB; v++)
            top = z[v] > top ? z[v] : top;
        for (int v = 0; v < VOCAB; v++)
            sum += p[v] = exp(z[v] - top);
        double u = nn_rng_uniform(rng) * sum;
        int c = 0;
        while (c < VOCAB - 1 && (u -= p[c]) > 0)
            c++;
        if (c == 0 || len == max)
            break;
        word[len++] = (char)('a' + c - 1);
        memmove(ctx, ctx + 1, sizeof(double) * (size_t)(L->context - 1));
        ctx[L->context - 1] = c;
    }
    word[len] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    static const char *names[] = {"mlp", "lstm", "transformer"};
    stream train = {0}, held = {0};
    long nwords = 0;
    lm L = {0};
    double *x = NULL, *y = NULL;
    nn_optimizer *opt = NULL;
    rc = 1;
    if (load_words(&o, &train, &held, &nwords) != 0)
        goto done;
    ad_set_threads((int)o.threads);
    if (build(&L, o.kind, o.batch, o.seed) != 0)
        goto done;
    x = malloc(sizeof(double) * (size_t)(o.batch * SEQ_CONTEXT));
    y = malloc(sizeof(double) * (size_t)(o.batch * SEQ_CONTEXT));
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.lr = o.lr;
    cfg.clip_norm = 1.0;
    ad_error oerr;
    opt = nn_optimizer_new(L.m, &cfg, &oerr);
    if (!x || !y || !opt) {
        fprintf(stderr, "makemore: %s\n", opt ? "out of memory" : oerr.message);
        goto done;
    }
    printf("model %s: %lld parameters; %ld words (%ld train chars, %ld held-out chars)\n",
           names[o.kind], (long long)nn_model_param_count(L.m), nwords, train.len, held.len);
    nn_rng rng;
    nn_rng_seed(&rng, o.seed);
    long lo = L.seq ? 0 : 1, hi = L.seq ? train.len - L.context - 1 : train.len - 1;
    double t0 = now(), recent = 0;
    for (long step = 1; step <= o.steps; step++) {
        for (int64_t i = 0; i < o.batch; i++) {
            long p = lo + (long)nn_rng_below(&rng, (uint64_t)(hi - lo + 1));
            example(&L, &train, p, x + i * L.context, y + i * (L.seq ? L.context : 1));
        }
        double loss;
        if (set_batch(&L, x, y, o.batch) != 0 || nn_model_train_step(L.m, opt, &loss) != 0) {
            fprintf(stderr, "makemore: step %ld: %s\n", step, nn_model_error(L.m));
            goto done;
        }
        recent += loss;
        if (step % 500 == 0 || step == o.steps) {
            long k = step % 500 ? step % 500 : 500;
            printf("step %ld: train batch loss %.4f (mean of the last %ld)\n", step, recent / k, k);
            recent = 0;
        }
    }
    double per_step = o.steps ? (now() - t0) / (double)o.steps : 0;
    double tr, he;
    if (evaluate(&L, &train, o.eval_chars, o.batch, x, y, &tr) != 0 ||
        evaluate(&L, &held, held.len, o.batch, x, y, &he) != 0)
        goto done;
    printf("train loss %.4f nats/char (first %ld chars)\n", tr, o.eval_chars);
    printf("held-out loss %.4f nats/char\n", he);
    printf("time per step %.3f ms (batch %ld)\n", per_step * 1e3, o.batch);
    nn_rng_seed(&rng, o.seed + 1);
    for (long i = 0; i < o.samples; i++) {
        char word[64];
        if (sample_word(&L, &rng, word, 40) != 0)
            goto done;
        printf("%s%s", i ? " " : "samples: ", word);
    }
    if (o.samples)
        printf("\n");
    rc = 0;
done:
    nn_optimizer_free(opt);
    nn_model_free(L.m);
    free(x);
    free(y);
    free(train.ids);
    free(held.ids);
    return rc;
}
