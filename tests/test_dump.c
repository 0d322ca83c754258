/* Graph dumps and chain-rule traces: DOT structure and parsing by Graphviz
 * (without Graphviz the test exits with Meson's skip status 77), the derivative and contribution on
 * each edge of known graphs, fan-out, undefined points, broadcasting, and the trace's steps against
 * the engine's gradients. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"
#include "test_needs_dot.h"
#include "test_neuron.h"

/* ---------------------------------------------------------------- helpers */

static char *dump_to_string(ad_graph *g, ad_node *out, unsigned flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(ad_dump_dot(g, out, f, flags), 0, "ad_dump_dot: %s", ad_graph_error(g));
    fclose(f);
    return buf;
}

static char *trace_to_string(ad_node *loss, unsigned flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    int rc = ad_trace(loss, f, flags);
    fclose(f);
    cr_assert_eq(rc, 0, "ad_trace: %s", ad_graph_error(ad_node_graph(loss)));
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Graphviz accepts the text (main() skips the whole test where dot is not
 * installed, rather than passing without checking). */
static void assert_dot_parses(const char *text)
{
    char path[] = "/tmp/chainrule-test-dump-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "dot -Tsvg -o /dev/null %s 2>/dev/null", path);
    int rc = system(cmd);
    unlink(path);
    cr_assert_eq(rc, 0, "dot rejected the output:\n%s", text);
}

/* Structure regardless of Graphviz: a digraph, balanced braces, every edge
 * joins declared nodes, and the number of edges. */
static void assert_structure(const char *text, int edges)
{
    cr_assert(strncmp(text, "digraph chainrule {\n", 20) == 0);
    cr_assert(strcmp(text + strlen(text) - 2, "}\n") == 0);
    int depth = 0, nedges = 0;
    bool in_str = false;
    for (const char *p = text; *p; p++) {
        if (*p == '"' && p[-1] != '\\')
            in_str = !in_str;
        if (in_str)
            continue;
        depth += *p == '{' ? 1 : (*p == '}' ? -1 : 0);
        cr_assert(depth >= 0);
    }
    cr_assert_eq(depth, 0);
    for (const char *p = strstr(text, " -> "); p; p = strstr(p + 1, " -> ")) {
        const char *line = p;
        while (line > text && line[-1] != '\n')
            line--;
        long from = -1, to = -1;
        cr_assert_eq(sscanf(line, " n%ld -> n%ld", &from, &to), 2, "edge line: %.60s", line);
        char decl[48];
        snprintf(decl, sizeof decl, "  n%ld [", from);
        cr_assert_not_null(strstr(text, decl), "edge from undeclared node n%ld", from);
        snprintf(decl, sizeof decl, "  n%ld [", to);
        cr_assert_not_null(strstr(text, decl), "edge to undeclared node n%ld", to);
        nedges++;
    }
    if (edges >= 0)
        cr_assert_eq(nedges, edges, "%d edges, expected %d", nedges, edges);
}

typedef test_neuron neuron;

/* The lecture's neuron with its backward pass. */
static neuron make_neuron(void)
{
    neuron m = test_neuron_new();
    cr_assert_eq(ad_backward(m.o), 0);
    return m;
}

/* ------------------------------------------------------------------- DOT */

Test(dump, neuron_edges_carry_local_derivatives)
{
    neuron m = make_neuron();
    char *dot = dump_to_string(m.g, m.o, AD_DUMP_DEFAULT);
    assert_structure(dot, 9);
    assert_dot_parses(dot);
    /* the lecture's numbers: ∂o/∂n = 1 − o² = 0.5, carried back as 1 × 0.5 */
    cr_assert_not_null(strstr(dot, "∂o/∂n = 1 − o² = 0.5\\ncontribution 1 × 0.5 = 0.5"), "%s", dot);
    cr_assert_not_null(strstr(dot, "∂n/∂b = 1\\ncontribution 0.5 × 1 = 0.5"));
    /* mul: the other operand */
    cr_assert_not_null(strstr(dot, "= x1 = 2\\ncontribution 0.5 × 2 = 1"));
    cr_assert_not_null(strstr(dot, "= w1 = -3\\ncontribution 0.5 × (-3) = -1.5"));
    cr_assert_not_null(strstr(dot, "= x2 = 0\\ncontribution 0.5 × 0 = 0"));
    /* nodes: definition, value, gradient, backward step */
    cr_assert_not_null(strstr(dot, "<B>o = tanh(n)</B>"));
    cr_assert_not_null(strstr(dot, "value 0.7071"));
    cr_assert_not_null(strstr(dot, "grad -1.5"));
    cr_assert_eq(count(dot, "backward step "), 10);
    cr_assert_not_null(strstr(dot, "<B>backward step 1</B>"));
    cr_assert_not_null(strstr(dot, "<B>backward step 10</B>"));
    free(dot);
    ad_graph_free(m.g);
}

Test(dump, steps_follow_reverse_creation_order)
{
    neuron m = make_neuron();
    char *dot = dump_to_string(m.g, m.o, AD_DUMP_DEFAULT);
    /* o is visited first, then n, ... x1 (created first) last */
    const char *o = strstr(dot, "  n9 ["), *n = strstr(dot, "  n8 ["), *x1 = strstr(dot, "  n0 [");
    cr_assert(o && n && x1);
    cr_assert(strstr(o, "backward step 1<") < strstr(o, "</TABLE>"));
    cr_assert(strstr(n, "backward step 2<") < strstr(n, "</TABLE>"));
    cr_assert(strstr(x1, "backward step 10<") < strstr(x1, "</TABLE>"));
    free(dot);
    ad_graph_free(m.g);
}

Test(dump, fan_out_gets_one_edge_per_use_and_the_node_shows_the_sum)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *a = ad_scalar(g, 3, "a");
    ad_node *s = ad_add(a, a);
    ad_node *y = ad_mul(s, a); /* y = 2a², dy/da = 4a = 12 = 3 + 3 + 6 */
    cr_assert_eq(ad_backward(y), 0);
    char *dot = dump_to_string(g, y, 0);
    assert_structure(dot, 4);
    assert_dot_parses(dot);
    cr_assert_eq(count(dot, "  n0 -> n1 "), 2);
    cr_assert_not_null(strstr(dot, "input 1: ∂t1/∂a = 1\\ncontribution 3 × 1 = 3"), "%s", dot);
    cr_assert_not_null(strstr(dot, "input 2: ∂t1/∂a = 1\\ncontribution 3 × 1 = 3"));
    cr_assert_not_null(strstr(dot, "∂t2/∂a = t1 = 6\\ncontribution 1 × 6 = 6"));
    cr_assert_not_null(strstr(dot, "grad 12 = 3 + 3 + 6"));
    cr_assert_float_eq(ad_grad_item(a), 12, 1e-12);
    free(dot);
    ad_graph_free(g);
}

Test(dump, undefined_points_are_marked)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0, "x");
    ad_node *r = ad_relu(x); /* t1 */
    ad_node *a = ad_abs(x);  /* t2 */
    ad_node *y = ad_add(r, a);
    cr_assert_eq(ad_backward(y), 0);
    char *dot = dump_to_string(g, y, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(
        strstr(dot, "∂t1/∂x = 1 if x > 0 else 0 = 0\\n⚠ undefined at x = 0 (engine uses 0)"), "%s",
        dot);
    cr_assert_not_null(strstr(dot, "∂t2/∂x = sign(x) = 0\\n⚠ undefined at x = 0"));
    free(dot);
    /* away from 0: no mark */
    ad_graph *g2 = ad_graph_new(AD_F64);
    ad_node *x2 = ad_scalar(g2, 1.5, "x");
    ad_node *y2 = ad_relu(x2);
    cr_assert_eq(ad_backward(y2), 0);
    dot = dump_to_string(g2, y2, 0);
    cr_assert_null(strstr(dot, "undefined"));
    cr_assert_not_null(strstr(dot, "∂t1/∂x = 1 if x > 0 else 0 = 1\\ncontribution 1 × 1 = 1"));
    free(dot);
    ad_graph_free(g);
    ad_graph_free(g2);
}

Test(dump, step_stops_the_gradient)
{
    /* a TLU: o = step(w·x + b); the step's derivative is 0, nothing flows back */
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_const_scalar(g, 2, "x");
    ad_node *w = ad_scalar(g, 0.5, "w");
    ad_node *b = ad_scalar(g, -0.25, "b");
    ad_node *z = ad_add(ad_mul(w, x), b);
    ad_node_set_name(z, "z");
    ad_node *o = ad_step(z);
    ad_node_set_name(o, "o");
    cr_assert_eq(ad_backward(o), 0);
    char *dot = dump_to_string(g, o, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "∂o/∂z = 0\\ncontribution 1 × 0 = 0\", color=\"#cc0000\""), "%s",
                       dot);
    cr_assert_eq(count(dot, "grad 0: no gradient reaches it"), 4); /* z, w·x, w, b */
    cr_assert_not_null(strstr(dot, "(no gradient: constant)"));
    free(dot);
    char *tr = trace_to_string(o, 0);
    cr_assert_not_null(strstr(tr, "∂o/∂z = 0: the gradient stops here, nothing reaches z"), "%s",
                       tr);
    cr_assert_not_null(strstr(tr, "∂L/∂w = 0 (no gradient reaches it)"));
    free(tr);
    ad_graph_free(g);
}

Test(dump, broadcast_edges_name_the_summed_axes)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {2, 3}, bs[1] = {3};
    ad_node *x = ad_param(g, 2, xs, "x");
    ad_node *b = ad_param(g, 1, bs, "b");
    double xv[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {0.5, -1, 2};
    ad_set(x, xv, 6);
    ad_set(b, bv, 3);
    ad_node *h = ad_mul(ad_add(x, b), ad_const_scalar(g, 2, NULL));
    ad_node *L = ad_sum(h, AD_ALL);
    ad_node_set_name(L, "L");
    cr_assert_eq(ad_backward(L), 0);
    char *dot = dump_to_string(g, L, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "∂t1/∂b = 1\\nbroadcast: gradient summed over axes 0\\n"
                                   "contribution [4, 4, 4]"),
                       "%s", dot);
    cr_assert_not_null(strstr(dot, "∂t1/∂x = 1\\ncontribution [2, 2, 2; 2, 2, 2]"));
    /* the reduction shows its rule text */
    cr_assert_not_null(strstr(dot, "∂Σa/∂aᵢ = 1"));
    /* the scalar constant 2 is broadcast too, but gets no gradient */
    cr_assert_not_null(strstr(dot, "(no gradient: constant)"));
    free(dot);
    ad_graph_free(g);
}

Test(dump, large_tensors_are_summarized)
{
    ad_graph *g = ad_graph_new(AD_F32);
    int64_t s[2] = {4, 5};
    ad_node *w = ad_param(g, 2, s, "W");
    double v[20];
    for (int i = 0; i < 20; i++)
        v[i] = i - 10;
    ad_set(w, v, 20);
    ad_node *L = ad_mean(ad_relu(w), AD_ALL);
    cr_assert_eq(ad_backward(L), 0);
    char *dot = dump_to_string(g, L, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "value mean -0.5, range [-10, 9]"), "%s", dot);
    cr_assert_not_null(strstr(dot, "⚠ 1 element(s): undefined at W = 0 (engine uses 0)"));
    free(dot);
    ad_graph_free(g);
}

Test(dump, backward_view_draws_the_gradient_nodes)
{
    neuron m = make_neuron();
    char *dot = dump_to_string(m.g, m.o, AD_DUMP_DEFAULT | AD_DUMP_BACKWARD);
    assert_structure(dot, -1);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "cluster_forward"));
    cr_assert_not_null(strstr(dot, "subgraph cluster_order1 {\n  label=\"backward graph (built by "
                                   "ad_backward)\""));
    /* the seed and the product by it are bookkeeping: ∂L/∂n is 1 − o² */
    cr_assert_null(strstr(dot, "ones_like"), "%s", dot);
    cr_assert_not_null(strstr(dot, "<B>g₁ = o^2</B>"), "%s", dot);
    cr_assert_not_null(strstr(dot, "<B>∂L/∂n = −g₁ + 1</B>"), "%s", dot);
    cr_assert_not_null(strstr(dot, "<B>∂L/∂w1 = (∂L/∂n)·x1</B>"));
    free(dot);
    /* the backward view alone: only nodes flagged as backward get tables */
    dot = dump_to_string(m.g, m.o, AD_DUMP_BACKWARD | AD_DUMP_VALUES);
    assert_structure(dot, -1);
    assert_dot_parses(dot);
    cr_assert_null(strstr(dot, "<B>o = tanh(n)</B>"));
    cr_assert_not_null(strstr(dot, "shape=ellipse"));
    free(dot);
    ad_graph_free(m.g);
}

Test(dump, whole_graph_without_an_output_node)
{
    neuron m = make_neuron();
    ad_node *unused = ad_scalar(m.g, 7, "unused");
    (void)unused;
    char *dot = dump_to_string(m.g, NULL, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "<B>unused</B>"));        /* a variable needs no tag */
    cr_assert_not_null(strstr(dot, "∂o/∂n = 1 − o² = 0.5")); /* last loss backpropagated */
    free(dot);
    /* restricted to o: the unused leaf is not drawn */
    dot = dump_to_string(m.g, m.o, 0);
    cr_assert_null(strstr(dot, "unused"));
    free(dot);
    ad_graph_free(m.g);
}

Test(dump, values_only_before_backward)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 2, "x");
    ad_node *y = ad_pow(x, 3);
    char *dot = dump_to_string(g, y, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "value 8"));
    cr_assert_null(strstr(dot, "grad "));
    cr_assert_null(strstr(dot, "contribution"));
    free(dot);
    ad_graph_free(g);
}

Test(dump, errors_are_return_codes)
{
    cr_assert_eq(ad_dump_dot(NULL, NULL, stdout, 0), -1);
    cr_assert_eq(ad_trace(NULL, stdout, 0), -1);
    ad_graph *g = ad_graph_new(AD_F64), *h = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 1, "x"), *y = ad_scalar(h, 1, "y");
    cr_assert_eq(ad_dump_dot(g, x, NULL, 0), -1);
    cr_assert_not_null(strstr(ad_graph_error(g), "no output file"));
    ad_graph_clear_error(g);
    cr_assert_eq(ad_dump_dot(g, y, stdout, 0), -1);
    cr_assert_not_null(strstr(ad_graph_error(g), "another graph"));
    ad_graph_clear_error(g);
    ad_node *sq = ad_mul(x, x);
    cr_assert_eq(ad_trace(sq, stdout, 0), -1);
    cr_assert_not_null(strstr(ad_graph_error(g), "no backward pass"), "%s", ad_graph_error(g));
    ad_graph_clear_error(g);
    int64_t s[1] = {2};
    ad_node *v = ad_param(g, 1, s, "v");
    cr_assert_eq(ad_trace(v, stdout, 0), -1);
    cr_assert_not_null(strstr(ad_graph_error(g), "not a loss"));
    ad_graph_free(g);
    ad_graph_free(h);
}

/* ----------------------------------------------------------------- trace */

Test(trace, neuron_text)
{
    neuron m = make_neuron();
    char *tr = trace_to_string(m.o, AD_TRACE_CHECK);
    cr_assert_not_null(strstr(tr, "step 1: o = tanh(n) = 0.707107\n  ∂L/∂o = 1 (seed: L = o)\n"),
                       "%s", tr);
    cr_assert_not_null(strstr(tr,
                              "step 2: n = t3 + b = 0.881374\n"
                              "  ∂o/∂n = 1 − o² = 0.5; ∂L/∂n = ∂L/∂o · ∂o/∂n = 1 · 0.5 = 0.5\n"));
    cr_assert_not_null(strstr(tr, "∂L/∂x1 = ∂L/∂t1 · ∂t1/∂x1 = 0.5 · (-3) = -1.5"), "%s", tr);
    cr_assert_not_null(strstr(tr, "  ∂L/∂w1 = 1   finite difference 1 (|diff| "));
    cr_assert_eq(count(tr, "\nstep "), 10);
    free(tr);
    ad_graph_free(m.g);
}

/* Every step's terms sum to its gradient; leaves match the engine. */
static void check_json_trace(ad_node *loss, ad_node *const *leaves, int nleaves, double tol)
{
    char *tr = trace_to_string(loss, AD_TRACE_JSON | AD_TRACE_CHECK);
    cJSON *root = cJSON_Parse(tr);
    cr_assert_not_null(root, "not JSON:\n%s", tr);
    cJSON *steps = cJSON_GetObjectItem(root, "steps");
    cr_assert(cJSON_IsArray(steps));
    int expect = 1;
    cJSON *st;
    cJSON_ArrayForEach(st, steps)
    {
        cr_assert_eq(cJSON_GetObjectItem(st, "step")->valueint, expect++);
        cJSON *grad = cJSON_GetObjectItem(st, "grad"), *terms = cJSON_GetObjectItem(st, "terms");
        if (expect == 2 || cJSON_GetArraySize(terms) == 0)
            continue;
        int n = cJSON_IsArray(grad) ? cJSON_GetArraySize(grad) : 1;
        for (int i = 0; i < n; i++) {
            double sum = 0, g = cJSON_IsArray(grad) ? cJSON_GetArrayItem(grad, i)->valuedouble
                                                    : grad->valuedouble;
            bool known = true;
            cJSON *t;
            cJSON_ArrayForEach(t, terms)
            {
                cJSON *c = cJSON_GetObjectItem(t, "contribution");
                if (cJSON_IsNull(c)) {
                    known = false;
                    break;
                }
                sum += cJSON_IsArray(c) ? cJSON_GetArrayItem(c, i)->valuedouble : c->valuedouble;
            }
            if (known)
                cr_assert_float_eq(sum, g, tol * (1 + fabs(g)), "step %d element %d: %g vs %g",
                                   expect - 1, i, sum, g);
        }
    }
    cJSON *jl = cJSON_GetObjectItem(root, "leaves");
    cr_assert_eq(cJSON_GetArraySize(jl), nleaves);
    for (int k = 0; k < nleaves; k++) {
        cJSON *leaf = cJSON_GetArrayItem(jl, k);
        cr_assert_str_eq(cJSON_GetObjectItem(leaf, "name")->valuestring, ad_node_name(leaves[k]));
        int64_t n = ad_numel(leaves[k]);
        double *eg = malloc(sizeof(double) * (size_t)n);
        ad_get_grad(leaves[k], eg, n);
        cJSON *grad = cJSON_GetObjectItem(leaf, "grad");
        cJSON *fd = cJSON_GetObjectItem(leaf, "finite_difference");
        for (int64_t i = 0; i < n; i++) {
            double g = n == 1 ? grad->valuedouble : cJSON_GetArrayItem(grad, (int)i)->valuedouble;
            double f = n == 1 ? fd->valuedouble : cJSON_GetArrayItem(fd, (int)i)->valuedouble;
            cr_assert_float_eq(g, eg[i], 1e-12 * (1 + fabs(eg[i])));
            cr_assert_float_eq(f, eg[i], 1e-5 * (1 + fabs(eg[i])), "%s[%ld]: fd %g vs %g",
                               ad_node_name(leaves[k]), (long)i, f, eg[i]);
        }
        free(eg);
    }
    cJSON_Delete(root);
    free(tr);
}

Test(trace, json_terms_sum_to_the_engine_gradients)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *a = ad_scalar(g, 0.7, "a"), *b = ad_scalar(g, -1.3, "b");
    /* fan-out everywhere: a feeds four ops, b three */
    ad_node *y = ad_add(ad_mul(a, b), ad_div(ad_mul(ad_sin(a), ad_exp(b)), ad_add(a, a)));
    y = ad_add(y, ad_sub(ad_sigmoid(ad_mul(a, b)), ad_pow(ad_tanh(b), 3)));
    y = ad_add(y, ad_maximum(ad_leaky_relu(b, 0.1), ad_softplus(a)));
    cr_assert_eq(ad_backward(y), 0);
    ad_node *leaves[] = {a, b};
    check_json_trace(y, leaves, 2, 1e-12);
    ad_graph_free(g);
}

Test(trace, tensor_mlp_matches_the_engine)
{
    /* two-layer MLP at tensor granularity: (4,3) @ (3,5) + (5) -> relu -> @ (5,2) + (2) */
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {4, 3}, w1s[2] = {3, 5}, b1s[1] = {5}, w2s[2] = {5, 2}, b2s[1] = {2};
    ad_node *X = ad_const(g, 2, xs, NULL, "X");
    ad_node *W1 = ad_param(g, 2, w1s, "W1"), *b1 = ad_param(g, 1, b1s, "b1");
    ad_node *W2 = ad_param(g, 2, w2s, "W2"), *b2 = ad_param(g, 1, b2s, "b2");
    double buf[15];
    for (int i = 0; i < 12; i++)
        buf[i] = sin(i + 1.0);
    ad_set(X, buf, 12);
    for (int i = 0; i < 15; i++)
        buf[i] = cos(2.0 * i + 0.5);
    ad_set(W1, buf, 15);
    for (int i = 0; i < 5; i++)
        buf[i] = 0.1 * i - 0.2;
    ad_set(b1, buf, 5);
    for (int i = 0; i < 10; i++)
        buf[i] = sin(3.0 * i);
    ad_set(W2, buf, 10);
    buf[0] = 0.3;
    buf[1] = -0.1;
    ad_set(b2, buf, 2);
    ad_node *H = ad_relu(ad_add(ad_matmul(X, W1), b1));
    ad_node *Y = ad_add(ad_matmul(H, W2), b2);
    ad_node *L = ad_mean(ad_pow(Y, 2), AD_ALL);
    ad_node_set_name(L, "L");
    cr_assert_eq(ad_backward(L), 0);
    ad_node *leaves[] = {W1, b1, W2, b2};
    check_json_trace(L, leaves, 4, 1e-12);
    char *dot = dump_to_string(g, L, 0);
    assert_structure(dot, 11);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "∂L/∂W1 = Xᵀ · ∂L/∂t1"), "%s", dot);
    cr_assert_not_null(strstr(dot, "∂L/∂t3 = ∂L/∂t4 · W2ᵀ"));
    cr_assert_not_null(strstr(dot, "∂mean/∂aᵢ = 1/n = 1/8"));
    cr_assert_not_null(strstr(dot, "rankdir=TB"));
    cr_assert_not_null(strstr(dot, "broadcast: gradient summed over axes 0"));
    free(dot);
    ad_graph_free(g);
}

Test(trace, f32_graph)
{
    ad_graph *g = ad_graph_new(AD_F32);
    ad_node *x = ad_scalar(g, 0.5, "x");
    ad_node *y = ad_mul(ad_tanh(x), ad_add(x, ad_const_scalar(g, 1, NULL)));
    cr_assert_eq(ad_backward(y), 0);
    char *tr = trace_to_string(y, AD_TRACE_JSON | AD_TRACE_CHECK);
    cJSON *root = cJSON_Parse(tr);
    cr_assert_not_null(root);
    cJSON *leaf = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "leaves"), 0);
    double gr = cJSON_GetObjectItem(leaf, "grad")->valuedouble;
    double fd = cJSON_GetObjectItem(leaf, "finite_difference")->valuedouble;
    double t = tanh(0.5), want = (1 - t * t) * 1.5 + t;
    cr_assert_float_eq(gr, want, 1e-6);
    cr_assert_float_eq(fd, want, 1e-3);
    cr_assert_float_eq(ad_item(y), t * 1.5, 1e-6, "values restored after the check");
    cJSON_Delete(root);
    free(tr);
    ad_graph_free(g);
}

/* Every value of g (nodes in creation order, then leaf gradients) and its
 * generator state, as bytes. */
typedef struct {
    unsigned char *bytes;
    size_t len;
    int64_t nodes;
    uint64_t rng[4];
} snapshot;

static snapshot take_snapshot(ad_graph *g)
{
    snapshot s = {0};
    size_t es = ad_graph_dtype(g) == AD_F32 ? sizeof(float) : sizeof(double);
    for (int64_t pass = 0; pass < 2; pass++) {
        size_t at = 0;
        for (int64_t i = 0; ad_graph_node(g, i); i++) {
            ad_node *n = ad_graph_node(g, i);
            size_t nb = (size_t)ad_numel(n) * es;
            if (pass)
                memcpy(s.bytes + at, ad_data(n), nb);
            at += nb;
            if (ad_grad_data(n)) {
                if (pass)
                    memcpy(s.bytes + at, ad_grad_data(n), nb);
                at += nb;
            }
            s.nodes = i + 1;
        }
        if (!pass) {
            s.len = at;
            s.bytes = malloc(at ? at : 1);
        }
    }
    ad_graph_rng_state(g, s.rng);
    return s;
}

/* A dump never changes the graph: every value, gradient and the generator
 * are bit-identical afterwards, and no node was added. */
Test(dump, dumps_leave_the_graph_bit_identical)
{
    for (int dt = 0; dt < 2; dt++) {
        ad_graph *g = ad_graph_new(dt ? AD_F32 : AD_F64);
        int64_t s[2] = {2, 3}, bs[1] = {3};
        ad_node *x = ad_param(g, 2, s, "x");
        ad_node *b = ad_param(g, 1, bs, "b");
        ad_set(x, (double[]){0.5, -1, 0, 2, -0.25, 1.5}, 6);
        ad_set(b, (double[]){0.1, 0, -0.3}, 3);
        ad_node *h = ad_mul(ad_relu(ad_add(x, b)), ad_dropout_mask(x, 0.5));
        ad_node *y = ad_add(ad_tanh(h), ad_abs(ad_maximum(x, ad_const_scalar(g, 0, NULL))));
        ad_node *L = ad_mean(ad_pow(y, 2), AD_ALL);
        cr_assert_eq(ad_backward(L), 0, "%s", ad_graph_error(g));
        snapshot before = take_snapshot(g);
        cr_assert(before.nodes > 20 && before.len > 0);
        free(dump_to_string(g, L, AD_DUMP_DEFAULT | AD_DUMP_BACKWARD));
        free(dump_to_string(g, NULL, 0));
        free(trace_to_string(L, AD_TRACE_CHECK));
        free(trace_to_string(L, AD_TRACE_JSON | AD_TRACE_CHECK));
        snapshot after = take_snapshot(g);
        cr_assert_eq(after.nodes, before.nodes, "a dump added nodes");
        cr_assert_eq(after.len, before.len);
        cr_assert(memcmp(after.bytes, before.bytes, before.len) == 0, "a dump changed values (%s)",
                  dt ? "f32" : "f64");
        cr_assert(memcmp(after.rng, before.rng, sizeof before.rng) == 0,
                  "a dump advanced the generator");
        cr_assert_null(ad_graph_error(g));
        free(before.bytes);
        free(after.bytes);
        ad_graph_free(g);
    }
}

/* ----------------------------------------------------- gradient graphs */

/* the text between two markers of a dump */
static char *between(const char *text, const char *from, const char *to)
{
    const char *a = strstr(text, from);
    cr_assert_not_null(a, "no '%s' in\n%s", from, text);
    const char *b = to ? strstr(a, to) : a + strlen(a);
    cr_assert_not_null(b, "no '%s' after '%s'", to, from);
    return strndup(a, (size_t)(b - a));
}

Test(dump, second_derivative_of_tanh_without_bookkeeping)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.5, "x");
    ad_node *y = ad_tanh(x);
    ad_node_set_name(y, "y");
    ad_node *dy = ad_grad(y, x);
    ad_node *d2y = ad_grad(dy, x);
    cr_assert_not_null(d2y, "%s", ad_graph_error(g));
    double t = tanh(0.5);
    cr_assert_float_eq(ad_item(d2y), -2 * t * (1 - t * t), 1e-12);
    int64_t nodes = ad_graph_size(g);
    char *dot = dump_to_string(g, d2y, AD_DUMP_DEFAULT | AD_DUMP_BACKWARD);
    cr_assert_eq(ad_graph_size(g), nodes); /* the picture only: the graph is untouched */
    assert_structure(dot, 7);
    assert_dot_parses(dot);
    /* no seed, no product by 1, y² computed once, no "no gradient" edges */
    cr_assert_null(strstr(dot, "ones_like"), "%s", dot);
    cr_assert_null(strstr(dot, "·1"));
    cr_assert_null(strstr(dot, "1·"));
    cr_assert_eq(count(dot, "= y^2</B>"), 1, "%s", dot);
    cr_assert_null(strstr(dot, "no gradient"));
    cr_assert_null(strstr(dot, "dashed"));
    /* the results are named, each order is its own labelled cluster */
    char *fwd = between(dot, "subgraph cluster_forward {\n  label=\"forward graph\"", "  }\n");
    char *o1 =
        between(dot, "subgraph cluster_order1 {\n  label=\"first derivative: ∂y/∂x\"", "  }\n");
    char *o2 =
        between(dot, "subgraph cluster_order2 {\n  label=\"second derivative: ∂²y/∂x²\"", "  }\n");
    cr_assert_not_null(strstr(fwd, "<B>y = tanh(x)</B>"));
    cr_assert_null(strstr(fwd, "g₁"), "a backward node in the forward cluster:\n%s", fwd);
    cr_assert_not_null(strstr(o1, "<B>g₁ = y^2</B>"), "%s", o1);
    cr_assert_not_null(strstr(o1, "<B>∂y/∂x = −g₁ + 1</B>"), "%s", o1);
    cr_assert_not_null(strstr(o2, "<B>g₂ = 2·y</B>"), "%s", o2);
    cr_assert_not_null(strstr(o2, "<B>g₃ = −g₂</B>"), "%s", o2);
    cr_assert_not_null(strstr(o2, "<B>∂²y/∂x² = g₃·(∂y/∂x)</B>"), "%s", o2);
    cr_assert_not_null(strstr(o2, "value -0.7269"));
    free(fwd);
    free(o1);
    free(o2);
    free(dot);
    /* a mixed partial is named by both variables, outermost first */
    ad_node *w = ad_scalar(g, 2, "w");
    ad_node *z = ad_tanh(ad_mul(w, x));
    ad_node_set_name(z, "z");
    ad_node *dzdxdw = ad_grad(ad_grad(z, w), x);
    cr_assert_not_null(dzdxdw);
    dot = dump_to_string(g, dzdxdw, 0);
    cr_assert_not_null(strstr(dot, "<B>∂²z/∂x∂w = "), "%s", dot);
    cr_assert_not_null(strstr(dot, "label=\"first derivative: ∂z/∂w\""));
    free(dot);
    ad_graph_free(g);
}

Test(dump, backward_names_cannot_be_user_names)
{
    /* a bias named b, and b2: the backward nodes are g₁, g₂, ... */
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, 0.3, "x"), *b = ad_scalar(g, 0.1, "b");
    ad_node *b2 = ad_scalar(g, -0.2, "b2");
    ad_node *L = ad_sigmoid(ad_add(ad_tanh(ad_add(x, b)), b2));
    ad_node_set_name(L, "L");
    cr_assert_eq(ad_backward(L), 0);
    char *dot = dump_to_string(g, L, AD_DUMP_DEFAULT | AD_DUMP_BACKWARD);
    assert_dot_parses(dot);
    cr_assert_eq(count(dot, "<B>b2</B>"), 1, "%s", dot); /* the user's b2, only */
    cr_assert_eq(count(dot, "<B>b2 ="), 0);
    cr_assert_not_null(strstr(dot, "<B>g₁ = "));
    free(dot);
    /* one loss name: a loss named L is not "L = L" */
    char *tr = trace_to_string(L, 0);
    cr_assert_null(strstr(tr, "L = L"), "%s", tr);
    cr_assert(strncmp(tr, "chain-rule trace of L = 0.", 26) == 0, "%s", tr);
    cr_assert_not_null(strstr(tr, "  ∂L/∂L = 1 (seed)\n"));
    free(tr);
    ad_graph_free(g);
}

/* ------------------------------------------------------ slides and text */

Test(dump, saturated_values_keep_their_digits)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *z = ad_scalar(g, 10, "z");
    ad_node *y = ad_sigmoid(z);
    ad_node_set_name(y, "y");
    cr_assert_eq(ad_backward(y), 0);
    char *dot = dump_to_string(g, y, 0);
    /* 0.9999546 is not 1: with "1", y·(1 − y) would read 0 */
    cr_assert_not_null(strstr(dot, "value 0.99995<"), "%s", dot);
    cr_assert_not_null(strstr(dot, "∂y/∂z = y·(1 − y) = 4.5396e-05"));
    free(dot);
    char *tr = trace_to_string(y, 0);
    cr_assert_not_null(strstr(tr, "y = sigmoid(z) = 0.999955\n"), "%s", tr);
    free(tr);
    ad_graph_free(g);
}

Test(dump, labels_sit_on_their_own_edge)
{
    neuron m = make_neuron();
    char *dot = dump_to_string(m.g, m.o, 0);
    /* the label is an attribute of the w1 -> t1 edge, drawn with a line to it */
    const char *at = strstr(dot, "∂t1/∂w1");
    cr_assert_not_null(at);
    while (at > dot && at[-1] != '\n')
        at--;
    char want[128];
    snprintf(want, sizeof want, "  n%lld -> n%lld [decorate=true, label=\"∂t1/∂w1",
             (long long)ad_node_id(m.w1), (long long)ad_node_id(m.x1) + 5);
    cr_assert(strncmp(at, want, strlen(want)) == 0, "%.80s", at);
    /* no "scalar" row, no "(param)" tag: x1 and w1 are variables */
    cr_assert_null(strstr(dot, "scalar"));
    cr_assert_null(strstr(dot, "(param)"));
    cr_assert_not_null(strstr(dot, "<B>x1</B>"));
    free(dot);
    ad_graph_free(m.g);
}

Test(dump, matmul_is_printed_with_its_operator)
{
    ad_graph *g = ad_graph_new(AD_F64);
    int64_t xs[2] = {2, 3}, ws[2] = {3, 2};
    ad_node *X = ad_input(g, 2, xs, "X"), *W = ad_param(g, 2, ws, "W");
    ad_node *L = ad_sum(ad_matmul(X, W), AD_ALL);
    cr_assert_eq(ad_backward(L), 0);
    char *dot = dump_to_string(g, L, 0);
    cr_assert_not_null(strstr(dot, "<B>t1 = X @ W</B>"), "%s", dot);
    cr_assert_not_null(strstr(dot, "matmul · (2,2)"));
    cr_assert_not_null(strstr(dot, "<B>X  (input)</B>"));
    free(dot);
    ad_graph_free(g);
}

Test(dump, options_for_slides)
{
    neuron m = make_neuron();
    ad_dump_opts o = {AD_DUMP_DEFAULT | AD_DUMP_COMPACT, 150, 14};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(ad_dump_dot_opts(m.g, m.o, f, &o), 0, "%s", ad_graph_error(m.g));
    fclose(f);
    assert_dot_parses(buf);
    cr_assert_not_null(strstr(buf, "rankdir=TB, fontname=\"DejaVu Sans\", fontsize=15, dpi=150"),
                       "%s", buf);
    cr_assert_not_null(
        strstr(buf, "node [shape=plaintext, fontname=\"DejaVu Sans\", fontsize=14]"));
    cr_assert_not_null(strstr(buf, "edge [fontname=\"DejaVu Sans\", fontsize=13"));
    cr_assert_not_null(strstr(buf, "value 0.8814 · grad 0.5"));
    cr_assert_not_null(strstr(buf, "<B>step 2</B>"));
    /* the edges of the sums are plain (the legend says why), the others keep
       their derivative and contribution */
    cr_assert_not_null(strstr(buf, "∂o/∂n = 1 − o² = 0.5\\n1 × 0.5 = 0.5"), "%s", buf);
    cr_assert_null(strstr(buf, "∂n/∂b"));
    cr_assert_not_null(strstr(buf, "the local derivative is 1"));
    free(buf);
    o.dpi = -1;
    f = open_memstream(&buf, &len);
    cr_assert_eq(ad_dump_dot_opts(m.g, m.o, f, &o), -1);
    fclose(f);
    free(buf);
    cr_assert_not_null(strstr(ad_graph_error(m.g), "dpi -1"), "%s", ad_graph_error(m.g));
    ad_graph_free(m.g);
}

/* ------------------------------------------------ the legend, every op */

/* The DOT line of the edge from node a to node b. */
static char *edge_line(const char *dot, const ad_node *a, const ad_node *b)
{
    char head[64];
    snprintf(head, sizeof head, "  n%lld -> n%lld [", (long long)ad_node_id(a),
             (long long)ad_node_id(b));
    const char *at = strstr(dot, head);
    cr_assert_not_null(at, "no edge %s in\n%s", head, dot);
    const char *end = strchr(at, '\n');
    return strndup(at, (size_t)(end - at));
}

/* For every elementwise op of the registry at points on both sides of its
 * kinks: an edge whose local derivative (the engine's gradient of the op's
 * output with respect to that input) is exactly 0 is red and dashed unless
 * the point is one where the derivative is not defined (orange, ⚠) or the
 * op passes no gradient at all (grey); an edge with a nonzero derivative is
 * neither. */
Test(dump, zero_derivatives_are_drawn_as_the_legend_says)
{
    static const double pts[] = {-2, -0.5, 0, 0.5, 2};
    int checked = 0, zeros = 0;
    for (int op = 0; op < ad_op_count(); op++) {
        ad_op_kind kind = ad_op_kind_of(op);
        if (kind != AD_KIND_UNARY && kind != AD_KIND_BINARY && kind != AD_KIND_TERNARY)
            continue;
        int arity = ad_op_arity(op) < 0 ? 2 : ad_op_arity(op);
        double fp[2] = {0.5, 1}; /* slope, alpha, p, c/d, at0: any valid value */
        if (strcmp(ad_op_name(op), "clamp") == 0)
            fp[0] = -1;
        if (strcmp(ad_op_name(op), "pow") == 0)
            fp[0] = 3;
        int combos = 1;
        for (int k = 0; k < arity; k++)
            combos *= 5;
        for (int c = 0; c < combos; c++) {
            ad_graph *g = ad_graph_new(AD_F64);
            ad_node *in[3];
            for (int k = 0, cc = c; k < arity; k++, cc /= 5) {
                char name[4] = {(char)('a' + k), 0};
                in[k] = ad_scalar(g, pts[cc % 5], name);
            }
            ad_node *u = ad_op_apply(op, arity, in, fp, ad_op_param_count(op), NULL, 0);
            cr_assert_not_null(u, "%s: %s", ad_op_name(op), ad_graph_error(g));
            ad_node_set_name(u, "u");
            if (!isfinite(ad_item(u)) || ad_backward(u) != 0) {
                ad_graph_free(g); /* outside the domain: the purple style, tested below */
                continue;
            }
            char *dot = dump_to_string(g, u, 0);
            for (int k = 0; k < arity; k++) {
                double d = ad_grad_item(in[k]);
                char *line = edge_line(dot, in[k], u);
                bool red = strstr(line, "color=\"#cc0000\", fontcolor=\"#cc0000\", style=dashed");
                bool orange = strstr(line, "⚠") && strstr(line, "#e69138");
                bool grey = strstr(line, "#999999");
                if (d == 0) {
                    cr_assert(red || orange || (grey && !ad_op_differentiable(op)),
                              "%s at %s: derivative 0, edge %s", ad_op_name(op), line, line);
                    zeros += red;
                } else {
                    cr_assert(!red && !grey, "%s: derivative %g, edge %s", ad_op_name(op), d, line);
                }
                free(line);
            }
            checked++;
            if (zeros && strstr(dot, "#cc0000"))
                cr_assert_not_null(
                    strstr(dot, "red dashed edge: the local derivative is exactly 0"));
            free(dot);
            ad_graph_free(g);
        }
    }
    cr_assert_gt(checked, 100);
    cr_assert_gt(zeros, 10);
}

Test(dump, the_neuron_x2_edge_and_a_dead_relu_are_red)
{
    neuron m = make_neuron();
    char *dot = dump_to_string(m.g, m.o, 0);
    char *line = edge_line(dot, m.w2, ad_graph_node(m.g, ad_node_id(m.x1) + 6));
    cr_assert_not_null(strstr(line, "∂t2/∂w2 = x2 = 0"), "%s", line);
    cr_assert_not_null(strstr(line, "style=dashed"), "%s", line);
    free(line);
    free(dot);
    ad_graph_free(m.g);
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *z = ad_scalar(g, -1.5, "z");
    ad_node *r = ad_relu(z);
    cr_assert_eq(ad_backward(r), 0);
    dot = dump_to_string(g, r, 0);
    line = edge_line(dot, z, r);
    cr_assert_not_null(strstr(line, "color=\"#cc0000\", fontcolor=\"#cc0000\", style=dashed"), "%s",
                       line);
    free(line);
    free(dot);
    ad_graph_free(g);
}

Test(dump, nonfinite_nodes_are_purple_with_a_legend)
{
    ad_graph *g = ad_graph_new(AD_F64);
    ad_node *x = ad_scalar(g, -1, "x");
    ad_node *y = ad_log(x);
    ad_node *L = ad_mul(y, ad_const_scalar(g, 2, NULL));
    cr_assert_eq(ad_backward(L), 0);
    char *dot = dump_to_string(g, L, 0);
    assert_dot_parses(dot);
    cr_assert_not_null(strstr(dot, "BGCOLOR=\"#d7b5e8\"><B>t1 = log(x)</B>"), "%s", dot);
    cr_assert_not_null(strstr(dot, "⚠ not finite: log is defined for x &gt; 0"));
    char *line = edge_line(dot, x, y);
    cr_assert_not_null(strstr(line, "color=\"#7b3294\""), "%s", line);
    free(line);
    line = edge_line(dot, y, L);
    cr_assert_not_null(strstr(line, "color=\"#7b3294\""), "%s", line);
    free(line);
    cr_assert_not_null(strstr(dot, "purple: a value or gradient that is not finite"));
    /* x itself is fine, its gradient is -2, not purple */
    cr_assert_not_null(strstr(dot, "BGCOLOR=\"#fff2cc\"><B>x</B>"));
    free(dot);
    ad_graph_free(g);
}
