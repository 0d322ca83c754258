/* The backward-pass page (ad_dump_html) as text: self-contained (no URL in a
 * src or href, no external script or style), the picture's ids, and the
 * step data against the engine: the order of the steps is the engine's
 * visiting order, each complete gradient is the engine's, a partial fan-out
 * sum is the contribution the engine's gradient rule gives. The page in a
 * browser: test_stepper_browser.c. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"
#include "test_needs_dot.h" /* exit 77 without Graphviz */

static char *page_of(ad_graph *g, ad_node *loss, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = ad_dump_html(g, loss, f, 0);
    fclose(f);
    return buf;
}

/* The step data of the page, parsed. */
static cJSON *steps_of(const char *page)
{
    const char *open = "<script type=\"application/json\" id=\"steps\">";
    const char *p = strstr(page, open);
    cr_assert_not_null(p, "the page has no step data");
    p += strlen(open);
    const char *end = strstr(p, "</script>");
    cr_assert_not_null(end);
    char *json = strndup(p, (size_t)(end - p));
    cJSON *data = cJSON_Parse(json);
    free(json);
    cr_assert_not_null(data, "the step data is not JSON");
    return data;
}

static double num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    cr_assert(cJSON_IsNumber(v), "\"%s\" is not a number", key);
    return v->valuedouble;
}

/* The last state of node id written at steps 1..k. */
static const cJSON *state_at(const cJSON *data, int64_t id, int k)
{
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(data, "steps"), *step, *found = NULL;
    int s = 0;
    cJSON_ArrayForEach(step, steps)
    {
        if (++s > k)
            break;
        const cJSON *u;
        cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(step, "updates"))
        {
            if ((int64_t)num(u, "node") == id)
                found = u;
        }
    }
    return found;
}

static ad_node *neuron(ad_graph *g, ad_node **leaves)
{
    const char *names[] = {"x1", "x2", "w1", "w2", "b"};
    const double values[] = {2, 0, -3, 1, 6.8813735870195432};
    for (int i = 0; i < 5; i++)
        leaves[i] = ad_scalar(g, values[i], names[i]);
    ad_node *x1w1 = ad_mul(leaves[0], leaves[2]);
    ad_node *x2w2 = ad_mul(leaves[1], leaves[3]);
    ad_node *n = ad_add(ad_add(x1w1, x2w2), leaves[4]);
    ad_node_set_name(n, "n");
    ad_node *o = ad_tanh(n);
    ad_node_set_name(o, "o");
    return o;
}

Test(dump_html, self_contained_with_the_engines_steps)
{
    if (!have_dot())
        cr_skip_test("Graphviz is not installed");
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *leaf[5], *o = neuron(g, leaf);
    cr_assert_eq(ad_backward(o), 0);
    int rc;
    char *page = page_of(g, o, &rc);
    cr_assert_eq(rc, 0, "ad_dump_html: %s", ad_graph_error(g));
    cr_assert(strncmp(page, "<!DOCTYPE html>", 15) == 0);
    cr_assert_not_null(strstr(page, "<svg"));
    /* self-contained: nothing fetched */
    const char *forbidden[] = {"src=\"http", "href=\"http", "src='http",   "href='http",   "<link",
                               "@import",    "url(",        "<script src", "<!DOCTYPE svg"};
    for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++)
        cr_assert_null(strstr(page, forbidden[i]), "the page contains %s", forbidden[i]);
    /* ids the script finds: each node and each edge that carries a gradient */
    char id[64];
    for (int64_t i = 0; i <= ad_node_id(o); i++) {
        snprintf(id, sizeof id, "id=\"n%lld\"", (long long)i);
        cr_assert_not_null(strstr(page, id), "no %s in the SVG", id);
        snprintf(id, sizeof id, "id=\"grad-n%lld\"", (long long)i);
        cr_assert_not_null(strstr(page, id), "no %s in the panel", id);
    }
    cJSON *data = steps_of(page);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(data, "steps"), *step;
    cr_assert_eq(cJSON_GetArraySize(steps), 10);
    /* the engine's order: creation order backwards, loss first */
    int k = 0;
    int64_t prev = ad_node_id(o) + 1;
    cJSON_ArrayForEach(step, steps)
    {
        k++;
        cr_assert_eq(num(step, "step"), k);
        int64_t node = (int64_t)num(step, "node");
        cr_assert_lt(node, prev);
        prev = node;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(step, "edges"))
        {
            snprintf(id, sizeof id, "id=\"%s\"", e->valuestring);
            cr_assert_not_null(strstr(page, id), "edge %s is not in the SVG", id);
        }
        /* every complete gradient is the engine's, bit for bit */
        const cJSON *u;
        cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(step, "updates"))
        {
            ad_node *v = ad_graph_node(g, (int64_t)num(u, "node"));
            cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(u, "done")));
            double engine = v == o ? 1 : ad_item(ad_node_grad(v));
            if (ad_node_is_trainable(v))
                engine = ad_grad_item(v);
            cr_assert_eq(num(u, "value"), engine, "step %d, node %s", k, ad_node_name(v));
        }
    }
    cr_assert_eq(num(cJSON_GetArrayItem(steps, 0), "node"), ad_node_id(o));
    /* x1 = leaf[0] gets its gradient from x1·w1, which the engine visits
       (step 4 or 5 by the order of creation) before x1 itself (step 10) */
    const cJSON *s10 = cJSON_GetArrayItem(steps, 9);
    cr_assert_eq(num(s10, "node"), ad_node_id(leaf[0]));
    const char *text = cJSON_GetObjectItemCaseSensitive(s10, "text")->valuestring;
    cr_assert_not_null(strstr(text, "∂L/∂x1 = -1.5 is complete; x1 is a leaf"), "%s", text);
    cr_assert_null(state_at(data, ad_node_id(leaf[0]), 3));
    cr_assert_eq(num(state_at(data, ad_node_id(leaf[0]), 5), "value"), ad_grad_item(leaf[0]));
    /* the seed */
    const cJSON *seed = state_at(data, ad_node_id(o), 1);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(seed, "text")->valuestring, "1 (seed)");
    cJSON_Delete(data);
    free(page);
    ad_graph_free(g);
}

/* f = tanh(x·y)·x: x's gradient is the sum of two contributions, the first
   (from f, step 1) = ∂L/∂f · tanh(x·y), the second from x·y (step 3). */
Test(dump_html, fan_out_sum_so_far)
{
    if (!have_dot())
        cr_skip_test("Graphviz is not installed");
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.8, "x"), *y = ad_scalar(g, -1.3, "y");
    ad_node *t = ad_tanh(ad_mul(x, y));
    ad_node *f = ad_mul(t, x);
    ad_node_set_name(f, "f");
    cr_assert_eq(ad_backward(f), 0);
    int rc;
    char *page = page_of(g, f, &rc);
    cr_assert_eq(rc, 0, "ad_dump_html: %s", ad_graph_error(g));
    cJSON *data = steps_of(page);
    const cJSON *s1 = state_at(data, ad_node_id(x), 1), *s3 = state_at(data, ad_node_id(x), 3);
    cr_assert_not_null(s1);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s1, "done")));
    cr_assert_eq(num(s1, "value"), ad_item(ad_node_grad(f)) * ad_item(t));
    const char *text = cJSON_GetObjectItemCaseSensitive(s1, "text")->valuestring;
    const char *waits = " + …";
    cr_assert(strlen(text) > strlen(waits) &&
                  strcmp(text + strlen(text) - strlen(waits), waits) == 0,
              "%s", text);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s3, "done")));
    cr_assert_eq(num(s3, "value"), ad_grad_item(x));
    text = cJSON_GetObjectItemCaseSensitive(s3, "text")->valuestring;
    cr_assert_not_null(strstr(text, " = "), "the complete sum shows its terms: %s", text);
    cJSON_Delete(data);
    free(page);
    ad_graph_free(g);
}

Test(dump_html, errors)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *leaf[5], *o = neuron(g, leaf);
    int rc;
    char *page = page_of(g, o, &rc);
    cr_assert_eq(rc, -1);
    cr_assert_str_eq(ad_graph_error(g),
                     "ad_dump_html: no backward pass through 'o': call ad_backward first");
    free(page);
    ad_graph_clear_error(g);
    cr_assert_eq(ad_dump_html(g, o, NULL, 0), -1);
    cr_assert_str_eq(ad_graph_error(g), "ad_dump_html: no output file");
    ad_graph_clear_error(g);
    cr_assert_eq(ad_dump_html(NULL, o, stdout, 0), -1);

    /* Graphviz absent: a clear message, nothing written */
    cr_assert_eq(ad_backward(o), 0);
    char *path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    setenv("PATH", "/nonexistent-chainrule-test", 1);
    page = page_of(g, o, &rc);
    if (path)
        setenv("PATH", path, 1);
    free(path);
    cr_assert_eq(rc, -1);
    cr_assert_not_null(strstr(ad_graph_error(g), "ad_dump_html: Graphviz 'dot' is not installed"),
                       "%s", ad_graph_error(g));
    cr_assert_eq(strlen(page), 0);
    free(page);
    ad_graph_free(g);
}

/* Tensors, and an input used by two matmuls (W and Wᵀ): a matmul's
   contribution is known only through the fan-out sum, so W's sum so far
   says how many terms it has and no value; once complete it is the
   engine's gradient, element by element. */
Test(dump_html, tensors_and_sums_known_only_whole)
{
    if (!have_dot())
        cr_skip_test("Graphviz is not installed");
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {2, 3}, ws[2] = {3, 2};
    ad_node *X = ad_input(g, 2, xs, "X"), *W = ad_param(g, 2, ws, "W");
    const double xv[6] = {1, 2, 3, 4, 5, 6}, wv[6] = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6};
    cr_assert_eq(ad_set(X, xv, 6), 0);
    cr_assert_eq(ad_set(W, wv, 6), 0);
    ad_node *h = ad_tanh(ad_matmul(X, W));
    ad_node *y = ad_matmul(h, ad_transpose(W));
    ad_node *L = ad_sum(ad_mul(y, y), AD_ALL);
    ad_node_set_name(L, "L");
    cr_assert_eq(ad_backward(L), 0);
    int rc;
    char *page = page_of(g, L, &rc);
    cr_assert_eq(rc, 0, "ad_dump_html: %s", ad_graph_error(g));
    cr_assert_not_null(strstr(page, "<h1>The backward pass of L, one step at a time</h1>"));
    cJSON *data = steps_of(page);
    int nsteps = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, "steps"));
    const cJSON *first = NULL, *last = state_at(data, ad_node_id(W), nsteps);
    for (int k = 1; k <= nsteps && !first; k++)
        first = state_at(data, ad_node_id(W), k);
    cr_assert_not_null(first);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(first, "done")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(first, "value")));
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(first, "text")->valuestring,
                     "1 of 2 terms so far + …");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(last, "done")));
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(last, "value");
    cr_assert_eq(cJSON_GetArraySize(value), 6);
    double grad[6];
    cr_assert_eq(ad_get_grad(W, grad, 6), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(cJSON_GetArrayItem(value, i)->valuedouble, grad[i], "element %d", i);
    cJSON_Delete(data);
    free(page);
    ad_graph_free(g);
}
