/* The backward-pass page (ad_dump_html) in a real browser: headless Chromium
 * opens page.html#step=K, runs the page's script and prints the DOM; the
 * gradient the page shows for a node at step K must be the engine's (the
 * complete gradient, or the contribution its rule has added so far), and
 * another step must show the other value. Exit 77 (Meson's skip) without
 * Chromium or Graphviz. Not Criterion: a plain program with exit codes. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"
#include "test_neuron.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char dir[] = "/tmp/chainrule-stepper-XXXXXX";

static bool have(const char *program)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", program);
    return system(cmd) == 0;
}

static void write_page(ad_graph *g, ad_node *loss, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || ad_dump_html(g, loss, f, 0) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, f ? ad_graph_error(g) : "fopen failed");
        exit(1);
    }
    fclose(f);
}

/* The DOM of name#step=K after the page's script ran (malloc'd). */
static char *dom_at(const char *name, int step)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "timeout 120 chromium --headless --disable-gpu --no-sandbox "
             "--disable-dev-shm-usage --no-first-run --user-data-dir=%s/profile "
             "--dump-dom 'file://%s/%s#step=%d' 2>/dev/null",
             dir, dir, name, step);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096)
            buf = realloc(buf, cap *= 2);
    }
    int rc = pclose(p);
    if (!buf || rc != 0 || len == 0) {
        fprintf(stderr, "chromium failed (status %d) on %s#step=%d\n", rc, name, step);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* The element with id="grad-n<id>": its data-value and its text. false when
   the page does not have it. */
static bool shown(const char *dom, const ad_node *v, char *value, size_t vsize, char *text,
                  size_t tsize)
{
    char key[64];
    snprintf(key, sizeof key, "id=\"grad-n%lld\"", (long long)ad_node_id(v));
    const char *tag = strstr(dom, key);
    if (!tag)
        return false;
    const char *end = strchr(tag, '>'), *dv = strstr(tag, "data-value=\"");
    if (!end || !dv || dv > end)
        return false;
    dv += strlen("data-value=\"");
    const char *q = strchr(dv, '"');
    snprintf(value, vsize, "%.*s", (int)(q - dv), dv);
    const char *close = strstr(end, "</td>");
    snprintf(text, tsize, "%.*s", close ? (int)(close - end - 1) : 0, end + 1);
    return true;
}

/* The page shows `expect` (the engine's value) for v at step K. */
static void expect_value(const char *dom, const char *page, int step, const ad_node *v,
                         double expect)
{
    char value[128], text[512];
    if (!shown(dom, v, value, sizeof value, text, sizeof text)) {
        CHECK(false, "%s#step=%d: no gradient cell for %s", page, step, ad_node_name(v));
        return;
    }
    char *end = NULL;
    double got = strtod(value, &end);
    CHECK(end != value && *end == '\0' && got == expect,
          "%s#step=%d: the page shows ∂L/∂%s = '%s' (\"%s\"), the engine %.17g", page, step,
          ad_node_name(v), value, text, expect);
    printf("%s#step=%d: ∂L/∂%s shown as \"%s\" (data-value %s), engine %.17g\n", page, step,
           ad_node_name(v), text, value, expect);
}

/* The page shows no gradient yet for v at step K. */
static void expect_nothing_yet(const char *dom, const char *page, int step, const ad_node *v)
{
    char value[128], text[512];
    bool ok = shown(dom, v, value, sizeof value, text, sizeof text);
    CHECK(ok && value[0] == '\0' && strcmp(text, "—") == 0,
          "%s#step=%d: %s should have no gradient yet, shows '%s' (\"%s\")", page, step,
          ad_node_name(v), ok ? value : "?", ok ? text : "?");
}

static void expect_step(const char *dom, const char *page, int step)
{
    char key[64];
    snprintf(key, sizeof key, "data-step=\"%d\"", step);
    CHECK(strstr(dom, key) != NULL, "%s#step=%d: the script did not show step %d", page, step,
          step);
}

int main(void)
{
    if (!have("chromium") || !have("dot")) {
        printf("SKIP: needs chromium and Graphviz dot on PATH\n");
        return 77;
    }
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    /* the neuron of docs/teaching.md: o = tanh(x1·w1 + x2·w2 + b) */
    test_neuron neuron = test_neuron_new();
    ad_graph *g = neuron.g;
    ad_node *x1 = neuron.x1, *x2 = neuron.x2, *n = neuron.n, *o = neuron.o;
    if (ad_backward(o) != 0)
        return 1;
    write_page(g, o, "neuron.html");
    /* x1·w1 is visited at step 5 (creation order backwards: o, n, t3, x2·w2,
       x1·w1): from then on x1 shows its gradient, at step 4 nothing yet */
    char *dom = dom_at("neuron.html", 5);
    if (dom) {
        expect_step(dom, "neuron.html", 5);
        expect_value(dom, "neuron.html", 5, x1, ad_grad_item(x1));
        expect_value(dom, "neuron.html", 5, n, ad_item(ad_node_grad(n)));
        CHECK(strstr(dom, "class=\"node current\"") != NULL, "no node highlighted at step 5");
        free(dom);
    } else
        failures++;
    dom = dom_at("neuron.html", 4);
    if (dom) {
        expect_step(dom, "neuron.html", 4);
        expect_nothing_yet(dom, "neuron.html", 4, x1);
        /* the picture's own gradient row of x1 says so too */
        char key[64];
        snprintf(key, sizeof key, "<g id=\"n%lld\"", (long long)ad_node_id(x1));
        const char *node = strstr(dom, key), *end = node ? strstr(node, "</g>") : NULL;
        const char *row = node ? strstr(node, ">grad —</text>") : NULL;
        CHECK(row && row < end, "neuron.html#step=4: x1's node in the SVG does not show 'grad —'");
        expect_value(dom, "neuron.html", 4, x2, ad_grad_item(x2));
        free(dom);
    } else
        failures++;
    ad_graph_free(g);

    /* fan-out: f = tanh(x·y)·x. Step 1 (f) adds ∂L/∂f · tanh(x·y) to x; step 3
       (x·y) adds the second term: x's sum so far, then the engine's gradient */
    g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.8, "x"), *y = ad_scalar(g, -1.3, "y");
    ad_node *t = ad_tanh(ad_mul(x, y));
    ad_node *f = ad_mul(t, x);
    ad_node_set_name(f, "f");
    if (ad_backward(f) != 0)
        return 1;
    write_page(g, f, "fanout.html");
    dom = dom_at("fanout.html", 1);
    if (dom) {
        expect_step(dom, "fanout.html", 1);
        expect_value(dom, "fanout.html", 1, x, ad_item(ad_node_grad(f)) * ad_item(t));
        char value[128], text[512];
        CHECK(shown(dom, x, value, sizeof value, text, sizeof text) && strstr(text, " + …") != NULL,
              "fanout.html#step=1: x's sum should wait for a term: \"%s\"", text);
        free(dom);
    } else
        failures++;
    dom = dom_at("fanout.html", 3);
    if (dom) {
        expect_step(dom, "fanout.html", 3);
        expect_value(dom, "fanout.html", 3, x, ad_grad_item(x));
        free(dom);
    } else
        failures++;
    ad_graph_free(g);

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
