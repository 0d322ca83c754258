/* grad.c -- `chainrule grad`: the value and gradient of a scalar expression,
 * with the chain-rule trace and Graphviz pictures of its graph. The
 * expression becomes engine nodes (expr.c); the engine differentiates them,
 * and the library's dumps (chainrule/dump.h) explain the result. */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chainrule/autodiff.h>
#include <chainrule/dump.h>
#include <chainrule/io.h>

#include "commands.h"
#include "expr.h"
#include "train.h"

#define MAX_VARS 64
/* Arguments of one command line, at most (the command's name included). */
#define MAX_ARGS 256

/* The registry's callable ops, "tanh(a)" or "clamp(a, lo, hi)", wrapped. */
static void print_functions(FILE *out)
{
    int col = 0;
    for (int op = 0; op < ad_op_count(); op++) {
        const char *name = ad_op_call_name(op);
        if (!name)
            continue;
        char sig[128];
        int k = snprintf(sig, sizeof sig, "%s(", name);
        for (int i = 0; i < ad_op_arity(op) && k < (int)sizeof sig; i++)
            k += snprintf(sig + k, sizeof sig - (size_t)k, "%s%c", i ? ", " : "", 'a' + i);
        const char *params = ad_op_params(op);
        if (*params && k < (int)sizeof sig)
            k += snprintf(sig + k, sizeof sig - (size_t)k, ", %s", params);
        if (k < (int)sizeof sig)
            snprintf(sig + k, sizeof sig - (size_t)k, ")");
        int len = (int)strlen(sig);
        if (col && col + len + 1 > 78) {
            fprintf(out, "\n");
            col = 0;
        }
        col += fprintf(out, "%s%s", col ? " " : "         ", sig);
    }
    fprintf(out, "\n");
}

static void usage(FILE *out)
{
    fprintf(out, "usage: chainrule grad [OPTIONS] 'EXPR' NAME=VALUE ... [OPTIONS]\n\n"
                 "Evaluates a scalar expression in double precision and prints its value and its\n"
                 "gradient with respect to every variable, computed by reverse-mode autodiff.\n"
                 "The first operand is the expression (one that begins with '-' is too), the\n"
                 "others give the variables' values. Options may come anywhere, with their\n"
                 "value as the next argument or after '=' (--dot=g.dot); '--' ends them.\n\n"
                 "  EXPR   numbers (1.5, 1e-3), variables, + - * /, ^ or ** (power, right-\n"
                 "         associative, -x^2 = -(x^2)), parentheses and the functions of the op\n"
                 "         registry:\n");
    print_functions(out);
    fprintf(out, "         Statements NAME = EXPR; name intermediate nodes for the trace and\n"
                 "         pictures; the last part is the output: 'n = x*w + b; tanh(n)'.\n");
    fprintf(
        out,
        "\n"
        "options:\n"
        "  --json        print {\"value\": V, \"grad\": {\"NAME\": G, ...}} (17 digits)\n"
        "  --order 2     also print the Hessian, every pair of variables (with --json:\n"
        "                \"hessian\": {\"x\": {\"x\": H, \"y\": H}, ...})\n"
        "  --trace       print the chain-rule trace: every backward step, in order\n"
        "  --check       put a central finite-difference estimate beside each gradient and\n"
        "                give the gradient check's verdict; a mismatch where an op is not\n"
        "                differentiable (relu at 0: kink, step at 0: discontinuity) is\n"
        "                labelled and expected; one where the function is smooth fails\n"
        "                the check (exit status 1)\n"
        "  --dot FILE    write the graph in Graphviz DOT, edges labelled with derivatives\n"
        "  --svg FILE    render the graph as SVG (needs Graphviz 'dot')\n"
        "  --png FILE    render the graph as PNG (needs Graphviz 'dot')\n"
        "  --html FILE   write the backward-pass stepper: one self-contained page with the\n"
        "                graph; buttons or arrow keys step through the backward pass,\n"
        "                FILE#step=K opens at step K (needs Graphviz 'dot')\n"
        "  --backward    draw the backward graph the engine built, next to the forward one\n"
        "  --dpi N       resolution of --png in dots per inch (Graphviz's default 96)\n"
        "  --font-size PT  point size of the pictures' text (default 11; edges 1 smaller)\n"
        "  --compact     pictures for slides: value and gradient on one row, top to bottom,\n"
        "                sums' edges (local derivative 1) without text\n"
        "  -h, --help    this help\n\n"
        "The output is L (L = its value, ∂L/∂x its gradient), as in the trace and pictures.\n"
        "Exit status: 0 success; 1 undefined maths (a non-finite value or gradient: the op\n"
        "is named), a --check mismatch where the function is smooth, or a file that could\n"
        "not be written; 2 usage or expression error.\n\n"
        "example:\n"
        "  chainrule grad 'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432\n");
}

typedef struct {
    const char *expr;
    const char *names[MAX_VARS];
    double values[MAX_VARS];
    int nvars;
    const ad_node *nodes[MAX_VARS]; /* the variables' leaves, once built */
    int order;                      /* --order: 1, or 2 for the Hessian */
    bool json, trace, check, backward, compact;
    double dpi, font_size; /* 0: the dumps' defaults */
    const char *dot, *svg, *png, *html;
} options;

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* The options, getopt_long's through cr_parse_options (cli/train.h), as
   train, eval and predict parse theirs. */
enum {
    OPT_JSON,
    OPT_TRACE,
    OPT_CHECK,
    OPT_BACKWARD,
    OPT_DOT,
    OPT_SVG,
    OPT_PNG,
    OPT_HTML,
    OPT_ORDER,
    OPT_DPI,
    OPT_FONT_SIZE,
    OPT_COMPACT,
    OPT_HELP,
    NOPTS
};

static const cr_opt grad_opts[] = {
    {"json", OPT_JSON, false},
    {"trace", OPT_TRACE, false},
    {"check", OPT_CHECK, false},
    {"backward", OPT_BACKWARD, false},
    {"dot", OPT_DOT, true},
    {"svg", OPT_SVG, true},
    {"png", OPT_PNG, true},
    {"html", OPT_HTML, true},
    {"order", OPT_ORDER, true},
    {"dpi", OPT_DPI, true},
    {"font-size", OPT_FONT_SIZE, true},
    {"compact", OPT_COMPACT, false},
    {"help", OPT_HELP, false},
    {NULL, 0, false},
};

/* Does option text a (as typed) take its value from the next argument? */
static bool takes_next(const char *a)
{
    if (strncmp(a, "--", 2) != 0 || strchr(a, '='))
        return false;
    for (const cr_opt *o = grad_opts; o->name; o++)
        if (o->value && strcmp(a + 2, o->name) == 0)
            return true;
    return false;
}

/* NAME=VALUE into o's next variable. 0, or the exit status after a message. */
static int add_variable(options *o, const char *a, char **namebuf)
{
    const char *eq = strchr(a, '=');
    if (!eq || !valid_name(a, (size_t)(eq - a))) {
        fprintf(stderr,
                "chainrule grad: '%s' is not NAME=VALUE (a name is a letter or '_' "
                "followed by letters, digits, '_')\n",
                a);
        return 2;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end) {
        fprintf(stderr, "chainrule grad: '%s': the value is not a number\n", a);
        return 2;
    }
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)) {
        fprintf(stderr,
                "chainrule grad: '%s': the value is out of range (a double's magnitude is at "
                "most %g)\n",
                a, DBL_MAX);
        return 2;
    }
    size_t len = (size_t)(eq - a);
    for (int k = 0; k < o->nvars; k++)
        if (strlen(o->names[k]) == len && strncmp(o->names[k], a, len) == 0) {
            fprintf(stderr, "chainrule grad: variable '%.*s' is given twice\n", (int)len, a);
            return 2;
        }
    if (o->nvars == MAX_VARS) {
        fprintf(stderr, "chainrule grad: more than %d variables\n", MAX_VARS);
        return 2;
    }
    namebuf[o->nvars] = malloc(len + 1);
    if (!namebuf[o->nvars]) {
        fprintf(stderr, "chainrule grad: out of memory\n");
        return 1;
    }
    memcpy(namebuf[o->nvars], a, len);
    namebuf[o->nvars][len] = '\0';
    o->names[o->nvars] = namebuf[o->nvars];
    o->values[o->nvars++] = v;
    return 0;
}

/* -1 to go on, or the exit status (0 after --help, 2 usage error: message
   printed). The first operand is the expression, the others NAME=VALUE. An
   operand that begins with one '-' ('-x^2', '-1') is the expression or a
   value, not a cluster of short options: getopt_long sees a stand-in for it
   and the operand is mapped back. */
static int parse_args(int argc, char **argv, options *o, char **namebuf)
{
    if (argc > MAX_ARGS) {
        fprintf(stderr, "chainrule grad: more than %d arguments\n", MAX_ARGS - 1);
        return 2;
    }
    char *args[MAX_ARGS + 1];
    static char stand_in[] = "_";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool operand = i > 0 && a[0] == '-' && a[1] != '-' && a[1] != '\0' &&
                       strcmp(a, "-h") != 0 && !takes_next(argv[i - 1]);
        args[i] = operand ? stand_in : argv[i];
    }
    args[argc] = NULL;
    bool given[NOPTS] = {false};
    const char *value[NOPTS] = {NULL}, *positional[MAX_ARGS];
    int npositional = 0;
    int status = cr_parse_options("grad", argc, args, grad_opts, given, value, positional, MAX_ARGS,
                                  &npositional);
    if (status >= 0)
        return status;
    if (given[OPT_HELP]) {
        usage(stdout);
        return 0;
    }
    /* getopt_long hands back operands in order; the stand-ins by position */
    for (int i = 1, k = 0; i < argc && k < npositional; i++)
        if (positional[k] == args[i])
            positional[k++] = argv[i];
    o->json = given[OPT_JSON];
    o->trace = given[OPT_TRACE];
    o->check = given[OPT_CHECK];
    o->backward = given[OPT_BACKWARD];
    o->dot = value[OPT_DOT];
    o->svg = value[OPT_SVG];
    o->png = value[OPT_PNG];
    o->html = value[OPT_HTML];
    o->compact = given[OPT_COMPACT];
    const int sizes[2] = {OPT_DPI, OPT_FONT_SIZE};
    double *size_dst[2] = {&o->dpi, &o->font_size};
    for (int i = 0; i < 2; i++) {
        if (!given[sizes[i]])
            continue;
        char *end = NULL;
        errno = 0;
        double v = strtod(value[sizes[i]], &end);
        if (end == value[sizes[i]] || *end || errno == ERANGE || !(v > 0 && v <= 10000))
            return cr_usage_error("grad", "option --%s takes a number in (0, 10000], not '%s'",
                                  i ? "font-size" : "dpi", value[sizes[i]]);
        *size_dst[i] = v;
    }
    o->order = 1;
    if (given[OPT_ORDER]) {
        const char *v = value[OPT_ORDER];
        if (strcmp(v, "1") != 0 && strcmp(v, "2") != 0)
            return cr_usage_error("grad",
                                  "option --order takes 1 (gradient) or 2 (Hessian), "
                                  "not '%s'",
                                  v);
        o->order = v[0] - '0';
    }
    if (npositional == 0) {
        fprintf(stderr, "chainrule grad: no expression (see 'chainrule grad --help')\n");
        return 2;
    }
    o->expr = positional[0];
    for (int k = 1; k < npositional; k++) {
        int rc = add_variable(o, positional[k], namebuf);
        if (rc)
            return rc;
    }
    return -1;
}

typedef struct {
    ad_graph *g;
    ad_node *root;
    const ad_dump_opts *pic;
    bool html; /* the stepper page (ad_dump_html), else DOT */
    int rc;
} dot_job;

static bool dump_dot(FILE *fp, void *ctx)
{
    dot_job *job = ctx;
    job->rc = job->html ? ad_dump_html(job->g, job->root, fp, job->pic->flags)
                        : ad_dump_dot_opts(job->g, job->root, fp, job->pic);
    return job->rc == 0 && !ferror(fp);
}

/* --dot FILE and --html FILE: through the library's atomic writer, like every
   file the CLI writes (no planted link followed, never half a file). */
static int write_dump(ad_graph *g, ad_node *root, const char *path, const ad_dump_opts *pic,
                      bool html)
{
    dot_job job = {g, root, pic, html, 0};
    ad_error err;
    if (io_write_atomic(path, dump_dot, &job, &err) != 0) {
        /* the dump's own reason when it failed, else the writer's */
        if (job.rc && ad_graph_error(g))
            fprintf(stderr, "chainrule grad: cannot write '%s' (left unchanged): %s\n", path,
                    ad_graph_error(g));
        else
            fprintf(stderr, "chainrule grad: cannot write '%s': %s\n", path, err.message);
        ad_graph_clear_error(g); /* the other pictures are still written */
        return 1;
    }
    return 0;
}

/* Renders the graph with Graphviz (the library's ad_dump_render runs dot). */
static int render(ad_graph *g, ad_node *root, const char *fmt, const char *out,
                  const ad_dump_opts *opts)
{
    fflush(NULL);
    if (ad_dump_render_opts(g, root, fmt, out, opts) == 0)
        return 0;
    fprintf(stderr, "chainrule grad: --%s '%s': %s\n", fmt, out, ad_graph_error(g));
    ad_graph_clear_error(g); /* the other pictures are still written */
    return 1;
}

static void json_number(double v)
{
    if (isfinite(v))
        printf("%.17g", v);
    else
        printf("null");
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void print_error_caret(const char *expr, const cr_expr_error *e)
{
    fprintf(stderr, "chainrule grad: ");
    if (e->column > 0)
        fprintf(stderr, "column %d: ", e->column);
    fprintf(stderr, "%s\n", e->message);
    if (e->column > 0) {
        fprintf(stderr, "  %s\n  ", expr);
        for (int i = 1; i < e->column; i++)
            fputc(expr[i - 1] == '\t' ? '\t' : ' ', stderr);
        fprintf(stderr, "^\n");
    }
}

/* The expression's graph in *gp (NULL when out of memory), its output or NULL
   (graph error or err set). anomaly: the engine's anomaly mode is on. */
static ad_node *build(const options *o, ad_graph **gp, cr_var *vars, bool anomaly,
                      cr_expr_error *err)
{
    memset(err, 0, sizeof *err);
    ad_graph *g = *gp = ad_graph_new(AD_F64);
    if (!g)
        return NULL;
    ad_graph_set_check_finite(g, anomaly);
    for (int i = 0; i < o->nvars; i++) {
        vars[i].name = o->names[i];
        vars[i].node = ad_scalar(g, o->values[i], o->names[i]);
    }
    return ad_graph_error(g) ? NULL : cr_expr_parse(g, o->expr, vars, o->nvars, err);
}

/* The node's name as the trace and pictures of output f give it (the
   library's naming: ad_dump_symbol). */
static void node_label(ad_node *f, const ad_node *n, char *buf, size_t size)
{
    if (ad_dump_symbol(f, n, buf, size) != 0)
        snprintf(buf, size, "node %lld", (long long)ad_node_id(n));
}

/* Names the first op whose value (forward) or whose input's gradient
   (backward) is not finite: op, input values, the registry's domain, node. */
static double grad_value(ad_node *v);

static void report_anomaly(ad_graph *g, ad_node *f)
{
    int64_t count = ad_graph_size(g), bad = -1;
    bool backward = false;
    for (int64_t i = 0; i < count && bad < 0; i++) {
        ad_node *v = ad_graph_node(g, i);
        if (!ad_node_is_backward(v) && !isfinite(ad_item(v)))
            bad = i;
    }
    /* else the backward pass: the last op whose input got a non-finite
       gradient while its own gradient is finite */
    for (int64_t i = count - 1; i >= 0 && bad < 0; i--) {
        ad_node *v = ad_graph_node(g, i);
        if (ad_node_is_backward(v) || !isfinite(grad_value(v)))
            continue;
        for (int k = 0; k < ad_node_ninputs(v); k++) {
            ad_node *in = ad_node_input(v, k);
            double gi = grad_value(in);
            if (!isfinite(gi) && !isnan(gi))
                bad = i, backward = true;
            else if (isnan(gi) && (ad_node_is_trainable(in) || ad_node_grad(in)))
                bad = i, backward = true;
        }
    }
    if (bad < 0) {
        fprintf(stderr, "chainrule grad: %s\n", ad_graph_error(g));
        return;
    }
    ad_node *n = ad_graph_node(g, bad);
    char where[128], inputs[256] = "";
    node_label(f, n, where, sizeof where);
    int len = 0, nin = ad_node_ninputs(n);
    for (int k = 0; k < nin && len < (int)sizeof inputs; k++)
        len += snprintf(inputs + len, sizeof inputs - (size_t)len, "%s%g", k ? ", " : "",
                        ad_item(ad_node_input(n, k)));
    const char *op = ad_op_name(ad_node_op(n)), *domain = ad_op_domain(ad_node_op(n));
    fprintf(stderr, "chainrule grad: %s: input%s %s ", op, nin > 1 ? "s" : "", inputs);
    if (backward)
        fprintf(stderr, "give%s a non-finite derivative", nin > 1 ? "" : "s");
    else if (domain)
        fprintf(stderr, "%s outside its domain (%s)", nin > 1 ? "are" : "is", domain);
    else
        fprintf(stderr, "give%s the non-finite value %g", nin > 1 ? "" : "s", ad_item(n));
    fprintf(stderr, " at %s\n", where);
}

/* v's gradient after ad_backward; NaN when it has none */
static double grad_value(ad_node *v)
{
    if (ad_node_is_trainable(v))
        return ad_grad_item(v);
    return ad_node_grad(v) ? ad_item(ad_node_grad(v)) : NAN;
}

static bool is_anomaly(const ad_graph *g)
{
    return ad_graph_error(g) && strstr(ad_graph_error(g), ": non-finite value at element");
}

/* What --check found for one variable. */
typedef struct {
    double fd;  /* the library's finite-difference estimate */
    bool wrong; /* outside the tolerance at a smooth point: the check fails */
    int kind;   /* AD_KINK or AD_DISCONTINUITY when the mismatch is explained, else AD_SMOOTH */
    const ad_node *where; /* the node whose op is not differentiable there */
} var_check;

/* The gradient check of every variable: the library's estimator, verdict
   and classification (ad_finite_difference, ad_gradcheck, ad_smoothness_at).
   0 pass, 1 a mismatch at a smooth point, -1 error (graph's message). */
static int check_vars(ad_node *f, int n, const cr_var *vars, var_check *vc,
                      ad_gradcheck_result *all)
{
    ad_node *nodes[MAX_VARS];
    for (int i = 0; i < n; i++) {
        nodes[i] = vars[i].node;
        memset(&vc[i], 0, sizeof vc[i]);
        vc[i].fd = ad_finite_difference(f, nodes[i], 0, 0);
        ad_gradcheck_result r;
        if (ad_gradcheck(f, 1, &nodes[i], NULL, &r) < 0)
            return -1;
        vc[i].wrong = r.failed > 0;
        if (r.nondifferentiable > 0) {
            int kind = ad_smoothness_at(f, nodes[i], 0, 0, &vc[i].where);
            if (kind < 0)
                return -1;
            vc[i].kind = kind;
        }
    }
    return ad_gradcheck(f, n, nodes, NULL, all);
}

static const char *kind_name(int kind)
{
    return kind == AD_DISCONTINUITY ? "discontinuity" : kind == AD_KINK ? "kink" : "smooth";
}

static void json_key(int i, const char *name)
{
    printf("%s", i ? ", " : "");
    json_string(name);
    printf(": ");
}

/* The Hessian d²L/dxᵢdxⱼ of every pair of variables into h (row-major),
   in a graph of its own (the pictures keep the first-order gradients):
   the gradient nodes, then the gradient of each of them. 0, or 1 with a
   message. */
static int hessian(const options *o, double *h)
{
    ad_graph *g = NULL;
    cr_var vars[MAX_VARS];
    cr_expr_error err;
    ad_node *f = build(o, &g, vars, false, &err);
    ad_node *xs[MAX_VARS], *d1[MAX_VARS], *d2[MAX_VARS];
    int n = o->nvars;
    for (int i = 0; i < n; i++)
        xs[i] = vars[i].node;
    int rc = f && ad_grad_n(f, n, xs, d1) == 0 ? 0 : 1;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (ad_grad_n(d1[i], n, xs, d2) != 0) {
            rc = 1;
            break;
        }
        for (int j = 0; j < n; j++)
            h[i * n + j] = ad_item(d2[j]);
    }
    if (rc)
        fprintf(stderr, "chainrule grad: the second derivatives: %s\n",
                g && ad_graph_error(g) ? ad_graph_error(g) : "out of memory");
    ad_graph_free(g);
    return rc;
}

static void print_json(const options *o, ad_node *f, double value, const double *grads,
                       const double *h, const var_check *vc, const ad_gradcheck_result *check,
                       int verdict, int *rc)
{
    const int n = o->nvars;
    printf("{\"value\": ");
    json_number(value);
    printf(", \"grad\": {");
    for (int i = 0; i < n; i++) {
        json_key(i, o->names[i]);
        json_number(grads[i]);
    }
    printf("}");
    if (h) {
        printf(", \"hessian\": {");
        for (int i = 0; i < n; i++) {
            json_key(i, o->names[i]);
            printf("{");
            for (int j = 0; j < n; j++) {
                json_key(j, o->names[j]);
                json_number(h[i * n + j]);
            }
            printf("}");
        }
        printf("}");
    }
    if (vc) {
        printf(", \"finite_difference\": {");
        for (int i = 0; i < n; i++) {
            json_key(i, o->names[i]);
            json_number(vc[i].fd);
        }
        const char *worst = "";
        for (int i = 0; i < n; i++)
            if (check->worst_leaf == o->nodes[i])
                worst = o->names[i];
        printf("}, \"gradcheck\": {\"pass\": %s, \"max_abs_err\": ", verdict ? "false" : "true");
        json_number(check->max_abs_err);
        printf(", \"max_rel_err\": ");
        json_number(check->max_rel_err);
        printf(", \"worst\": ");
        json_string(worst);
        printf(", \"mismatch\": [");
        for (int i = 0, k = 0; i < n; i++)
            if (vc[i].wrong) {
                printf("%s", k++ ? ", " : "");
                json_string(o->names[i]);
            }
        printf("], \"nondifferentiable\": {");
        for (int i = 0, k = 0; i < n; i++) {
            if (vc[i].kind == AD_SMOOTH)
                continue;
            char where[128];
            node_label(f, vc[i].where, where, sizeof where);
            json_key(k++, o->names[i]);
            printf("{\"kind\": \"%s\", \"op\": ", kind_name(vc[i].kind));
            json_string(ad_op_name(ad_node_op(vc[i].where)));
            printf(", \"node\": ");
            json_string(where);
            printf("}");
        }
        printf("}}");
    }
    if (o->trace) {
        printf(", \"trace\": ");
        fflush(stdout);
        if (ad_trace(f, stdout, AD_TRACE_JSON | (vc ? AD_TRACE_CHECK : 0)) != 0) {
            fprintf(stderr, "chainrule grad: %s\n", ad_graph_error(ad_node_graph(f)));
            *rc = 1;
        }
    }
    printf("}\n");
}

/* The sign of a NaN means nothing: print "nan", never "-nan". */
static double shown(double v) { return isnan(v) ? NAN : v; }

static void print_text(const options *o, ad_node *f, double value, const double *grads,
                       const double *h, const var_check *vc, const ad_gradcheck_result *check,
                       int verdict)
{
    const int n = o->nvars;
    printf("L = %.10g\n", shown(value));
    int width = 1;
    for (int i = 0; i < n; i++)
        width = (int)strlen(o->names[i]) > width ? (int)strlen(o->names[i]) : width;
    int explained = 0;
    for (int i = 0; i < n; i++) {
        printf("∂L/∂%-*s = %.10g", width, o->names[i], shown(grads[i]));
        if (vc) {
            printf("    finite difference %.8g (|diff| %.2g)", vc[i].fd, fabs(vc[i].fd - grads[i]));
            if (vc[i].wrong)
                printf(": MISMATCH");
            else if (vc[i].kind != AD_SMOOTH) {
                char where[128];
                node_label(f, vc[i].where, where, sizeof where);
                printf(": %s of %s at %s (%s), expected there", kind_name(vc[i].kind),
                       ad_op_name(ad_node_op(vc[i].where)), where,
                       vc[i].kind == AD_KINK ? "the slope jumps"
                                             : "the value jumps: no derivative");
                explained++;
            }
        }
        printf("\n");
    }
    for (int i = 0; h && i < n; i++)
        for (int j = 0; j < n; j++) {
            if (i == j)
                printf("∂²L/∂%s² = %.10g\n", o->names[i], shown(h[i * n + j]));
            else
                printf("∂²L/∂%s∂%s = %.10g\n", o->names[i], o->names[j], shown(h[i * n + j]));
        }
    if (!vc)
        return;
    const char *worst = "";
    for (int i = 0; i < n; i++)
        if (check->worst_leaf == o->nodes[i])
            worst = o->names[i];
    if (verdict == 0 && explained == 0)
        printf("gradient check: pass (max |diff| %.2g)\n", check->max_abs_err);
    else if (verdict == 0)
        printf("gradient check: pass (%d mismatch%s where the function is not differentiable, "
               "which a finite difference cannot estimate: docs/autodiff.md)\n",
               explained, explained > 1 ? "es" : "");
    else
        printf("gradient check: FAIL at %s (max |diff| %.2g, relative %.2g): the gradient "
               "differs from the finite difference where the function is smooth\n",
               worst, check->max_abs_err, check->max_rel_err);
}

static int run(const options *o)
{
    ad_graph *g = NULL;
    int rc = 0;
    cr_var vars[MAX_VARS];
    cr_expr_error err;
    ad_node *f = build(o, &g, vars, true, &err);
    bool anomaly = false, parsed = f != NULL;
    if (g && (!f || ad_backward(f) != 0) && is_anomaly(g)) {
        /* again without the anomaly mode, for the whole graph and picture */
        anomaly = true;
        ad_graph_free(g);
        f = build(o, &g, vars, false, &err);
        parsed = f != NULL;
        if (f && ad_backward(f) != 0)
            f = NULL;
    } else if (f && ad_graph_error(g))
        f = NULL;
    if (!g) {
        fprintf(stderr, "chainrule grad: out of memory\n");
        return 1;
    }
    if (!f) {
        int code = 2;
        if (ad_graph_error(g) && err.column == 0) {
            fprintf(stderr, "chainrule grad: %s\n", ad_graph_error(g));
            code = parsed ? 1 : 2;
        } else
            print_error_caret(o->expr, &err);
        ad_graph_free(g);
        return code;
    }
    if (anomaly) {
        report_anomaly(g, f);
        rc = 1;
    }
    double value = ad_item(f);
    double grads[MAX_VARS];
    for (int i = 0; i < o->nvars; i++)
        grads[i] = ad_grad_item(vars[i].node);
    double *h = NULL;
    if (o->order == 2) {
        h = malloc(sizeof(double) * (size_t)(o->nvars * o->nvars + 1));
        if (!h || hessian(o, h) != 0) {
            if (!h)
                fprintf(stderr, "chainrule grad: out of memory\n");
            free(h);
            ad_graph_free(g);
            return 1;
        }
    }
    ad_gradcheck_result check = {0};
    var_check vc[MAX_VARS];
    int verdict = 0;
    if (o->check) {
        verdict = check_vars(f, o->nvars, vars, vc, &check);
        if (verdict < 0) {
            fprintf(stderr, "chainrule grad: %s\n", ad_graph_error(g));
            free(h);
            ad_graph_free(g);
            return 1;
        }
    }
    options shown = *o;
    for (int i = 0; i < o->nvars; i++)
        shown.nodes[i] = vars[i].node;
    if (o->trace && !o->json && ad_trace(f, stdout, o->check ? AD_TRACE_CHECK : 0) != 0) {
        fprintf(stderr, "chainrule grad: %s\n", ad_graph_error(g));
        rc = 1;
    }
    if (o->json)
        print_json(&shown, f, value, grads, h, o->check ? vc : NULL, &check, verdict, &rc);
    else
        print_text(&shown, f, value, grads, h, o->check ? vc : NULL, &check, verdict);
    free(h);
    if (verdict == 1)
        rc = 1;
    fflush(stdout);

    unsigned flags =
        AD_DUMP_DEFAULT | (o->backward ? AD_DUMP_BACKWARD : 0) | (o->compact ? AD_DUMP_COMPACT : 0);
    ad_dump_opts pic = {flags, o->dpi, o->font_size};
    if (o->dot && write_dump(g, f, o->dot, &pic, false) != 0)
        rc = 1;
    if (o->html && write_dump(g, f, o->html, &pic, true) != 0)
        rc = 1;
    if (o->svg && render(g, f, "svg", o->svg, &pic) != 0)
        rc = 1;
    if (o->png && render(g, f, "png", o->png, &pic) != 0)
        rc = 1;
    ad_graph_free(g);
    return rc;
}

int cr_cmd_grad(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    char *namebuf[MAX_VARS] = {0};
    int rc = parse_args(argc, argv, &o, namebuf);
    if (rc < 0)
        rc = run(&o);
    for (int i = 0; i < MAX_VARS; i++)
        free(namebuf[i]);
    return rc;
}
