/* PyTorch reference values for composite graphs (issue 2).
 *
 * tests/reference/make_autodiff_fixtures.py evaluates small graph programs
 * with PyTorch in float64 and writes them, with their inputs, to
 * tests/reference/autodiff/<case>.txt (the format is described there). This
 * test rebuilds each program with the chainrule API, sets the same leaf
 * values and checks every node's value and every trainable leaf's gradient:
 * within 1e-10 relative in f64, 1e-4 relative in f32. Programs may call
 * ad_grad (second order: nested derivatives, Hessian-vector products) with
 * respect to any node (inputs, constants, intermediates), and a case may
 * list Jacobians and Hessians (ad_jacobian, ad_hessian against
 * torch.autograd.functional), checked on both value sets.
 *
 * Each case also checks replay: the graph built on leaf values set 0 gets the
 * values of set 1 (ad_set + ad_forward + ad_zero_grad + ad_backward), must
 * match PyTorch on set 1 and be bit-identical to a graph built afresh on set
 * 1; then it goes back to set 0 and two backward calls without zero_grad
 * must accumulate twice the gradient. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/autodiff.h"

#define FX_MAXNODES 512
#define FX_MAXIN 8
#define FX_MAXNAME 64
#define FX_NSETS 2
#define FX_MAXREPORT 6
#define FX_MAXDENSE 16

/* The fixtures, one Criterion test each per dtype. Every file in
 * tests/reference/autodiff/ must be listed (checked below). */
#define REFERENCE_CASES(X)                                                                         \
    X(mlp_ce_tanh)                                                                                 \
    X(mlp_ce_mixed)                                                                                \
    X(broadcast_arith)                                                                             \
    X(broadcast_explog)                                                                            \
    X(broadcast_reduce)                                                                            \
    X(softmax_chain)                                                                               \
    X(fanout)                                                                                      \
    X(micrograd_scalars)                                                                           \
    X(micrograd_scalars_random)                                                                    \
    X(second_tanh)                                                                                 \
    X(second_scalars)                                                                              \
    X(second_tensor)                                                                               \
    X(hvp_w1)                                                                                      \
    X(hvp_full)                                                                                    \
    X(hvp_sigmoid_mse)                                                                             \
    X(matmul_t)                                                                                    \
    X(matmul_batched)                                                                              \
    X(shape_chain)                                                                                 \
    X(elementwise_chain)                                                                           \
    X(where_input_cond)                                                                            \
    X(ties_and_kinks)                                                                              \
    X(grad_inputs)                                                                                 \
    X(grad_saliency)                                                                               \
    X(conv2d_default)                                                                              \
    X(conv2d_options)                                                                              \
    X(conv2d_depthwise)                                                                            \
    X(conv1d)                                                                                      \
    X(max_pool2d)                                                                                  \
    X(max_pool1d)                                                                                  \
    X(avg_pool)                                                                                    \
    X(cnn)                                                                                         \
    X(second_conv2d)                                                                               \
    X(second_max_pool2d)                                                                           \
    X(conv_bias)                                                                                   \
    X(second_conv_bias)                                                                            \
    X(winograd)                                                                                    \
    X(second_winograd)                                                                             \
    X(conv_bias_relu_pool)                                                                         \
    X(second_conv_bias_relu_pool)                                                                  \
    X(mlp_jacobian)                                                                                \
    X(take_embedding)                                                                              \
    X(permute_heads)                                                                               \
    X(pad_slice_step)                                                                              \
    X(keepdims)                                                                                    \
    X(second_shape)                                                                                \
    X(mlp_hessian)                                                                                 \
    X(jacobian_wide)                                                                               \
    X(layer_norm)                                                                                  \
    X(softmax_second)

typedef struct {
    char name[FX_MAXNAME];
    char op[32];
    int nin;
    int in[FX_MAXIN];
    int nf;
    double f[2];
    int ni;
    int64_t ip[AD_MAX_DIMS + 2];
} fx_node;

typedef struct {
    int node; /* index into fx_case.nodes */
    int wrt;  /* jacobian/hessian: the node x of d node/d x */
    bool hessian;
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    int64_t n;
    double *v;
} fx_tensor;

typedef struct {
    int nleaf, nvalue, ngrad, ndense;
    fx_tensor leaf[FX_MAXNODES], value[FX_MAXNODES], grad[FX_MAXNODES];
    fx_tensor dense[FX_MAXDENSE]; /* Jacobians and Hessians */
} fx_set;

typedef struct {
    char name[FX_MAXNAME];
    int nnodes;
    fx_node nodes[FX_MAXNODES];
    int loss;
    int nsets;
    fx_set sets[FX_NSETS];
} fx_case;

/* ------------------------------------------------------------ the parser */

typedef struct {
    char *p;
    const char *file;
} lexer;

/* Next whitespace-separated token ('#' comments run to the end of the line),
 * NUL-terminated in place; NULL at the end of the text. */
static char *next_tok(lexer *lx)
{
    for (;;) {
        while (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\n' || *lx->p == '\r')
            lx->p++;
        if (*lx->p == '#') {
            while (*lx->p && *lx->p != '\n')
                lx->p++;
            continue;
        }
        break;
    }
    if (!*lx->p)
        return NULL;
    char *t = lx->p;
    while (*lx->p && *lx->p != ' ' && *lx->p != '\t' && *lx->p != '\n' && *lx->p != '\r')
        lx->p++;
    if (*lx->p)
        *lx->p++ = '\0';
    return t;
}

static char *need_tok(lexer *lx)
{
    char *t = next_tok(lx);
    cr_assert_not_null(t, "%s: unexpected end of fixture", lx->file);
    return t;
}

static long long need_int(lexer *lx)
{
    char *t = need_tok(lx), *end;
    long long v = strtoll(t, &end, 10);
    cr_assert(*end == '\0', "%s: expected an integer, got '%s'", lx->file, t);
    return v;
}

static double need_double(lexer *lx)
{
    char *t = need_tok(lx), *end;
    double v = strtod(t, &end);
    cr_assert(*end == '\0', "%s: expected a number, got '%s'", lx->file, t);
    return v;
}

static int find_node(const fx_case *c, const char *name, const char *file)
{
    for (int i = 0; i < c->nnodes; i++)
        if (strcmp(c->nodes[i].name, name) == 0)
            return i;
    cr_assert_fail("%s: unknown node '%s'", file, name);
    return -1;
}

static void read_tensor(lexer *lx, const fx_case *c, fx_tensor *t)
{
    t->node = find_node(c, need_tok(lx), lx->file);
    t->ndim = (int)need_int(lx);
    cr_assert(t->ndim >= 0 && t->ndim <= AD_MAX_DIMS, "%s: bad ndim", lx->file);
    t->n = 1;
    for (int d = 0; d < t->ndim; d++) {
        t->shape[d] = need_int(lx);
        t->n *= t->shape[d];
    }
    t->v = malloc(sizeof(double) * (size_t)(t->n ? t->n : 1));
    cr_assert_not_null(t->v);
    for (int64_t i = 0; i < t->n; i++)
        t->v[i] = need_double(lx);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open fixture %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    cr_assert(len >= 0);
    cr_assert_eq(fseek(f, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static fx_case *load_case(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/reference/autodiff/%s.txt", CHAINRULE_TEST_DIR, name);
    char *text = read_file(path);
    fx_case *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->loss = -1;
    lexer lx = {text, path};
    fx_set *set = NULL;
    bool ended = false;
    for (char *t; !ended && (t = next_tok(&lx)) != NULL;) {
        if (strcmp(t, "case") == 0) {
            snprintf(c->name, sizeof c->name, "%s", need_tok(&lx));
        } else if (strcmp(t, "node") == 0) {
            cr_assert_lt(c->nnodes, FX_MAXNODES, "%s: too many nodes", path);
            fx_node *nd = &c->nodes[c->nnodes];
            snprintf(nd->name, sizeof nd->name, "%s", need_tok(&lx));
            snprintf(nd->op, sizeof nd->op, "%s", need_tok(&lx));
            nd->nin = (int)need_int(&lx);
            cr_assert(nd->nin >= 0 && nd->nin <= FX_MAXIN, "%s: bad input count", path);
            for (int i = 0; i < nd->nin; i++)
                nd->in[i] = find_node(c, need_tok(&lx), path);
            nd->nf = (int)need_int(&lx);
            cr_assert(nd->nf >= 0 && nd->nf <= 2, "%s: bad float count", path);
            for (int i = 0; i < nd->nf; i++)
                nd->f[i] = need_double(&lx);
            nd->ni = (int)need_int(&lx);
            cr_assert(nd->ni >= 0 && nd->ni <= AD_MAX_DIMS + 2, "%s: bad int count", path);
            for (int i = 0; i < nd->ni; i++)
                nd->ip[i] = need_int(&lx);
            c->nnodes++;
        } else if (strcmp(t, "loss") == 0) {
            c->loss = find_node(c, need_tok(&lx), path);
        } else if (strcmp(t, "set") == 0) {
            long long k = need_int(&lx);
            cr_assert(k == c->nsets && k < FX_NSETS, "%s: sets out of order", path);
            set = &c->sets[c->nsets++];
        } else if (strcmp(t, "leaf") == 0 || strcmp(t, "value") == 0 || strcmp(t, "grad") == 0) {
            cr_assert_not_null(set, "%s: '%s' before 'set'", path, t);
            fx_tensor *dst = t[0] == 'l'   ? &set->leaf[set->nleaf++]
                             : t[0] == 'v' ? &set->value[set->nvalue++]
                                           : &set->grad[set->ngrad++];
            read_tensor(&lx, c, dst);
        } else if (strcmp(t, "jacobian") == 0 || strcmp(t, "hessian") == 0) {
            cr_assert_not_null(set, "%s: '%s' before 'set'", path, t);
            cr_assert_lt(set->ndense, FX_MAXDENSE, "%s: too many Jacobians", path);
            fx_tensor *dst = &set->dense[set->ndense++];
            int y = find_node(c, need_tok(&lx), path);
            read_tensor(&lx, c, dst);
            dst->wrt = dst->node;
            dst->node = y;
            dst->hessian = t[0] == 'h';
            cr_assert_eq(dst->ndim, 2, "%s: a %s is a matrix", path, t);
        } else if (strcmp(t, "end") == 0) {
            ended = true;
        } else {
            cr_assert_fail("%s: unknown keyword '%s'", path, t);
        }
    }
    cr_assert(ended, "%s: no 'end' (truncated fixture?)", path);
    cr_assert_str_eq(c->name, name, "%s: case name", path);
    cr_assert_geq(c->loss, 0, "%s: no loss", path);
    cr_assert_eq(c->nsets, FX_NSETS, "%s: expected %d value sets", path, FX_NSETS);
    for (int k = 0; k < c->nsets; k++)
        cr_assert_gt(c->sets[k].ngrad, 0, "%s: set %d checks no gradient", path, k);
    free(text);
    return c;
}

static void free_case(fx_case *c)
{
    for (int k = 0; k < c->nsets; k++) {
        fx_set *s = &c->sets[k];
        for (int i = 0; i < s->nleaf; i++)
            free(s->leaf[i].v);
        for (int i = 0; i < s->nvalue; i++)
            free(s->value[i].v);
        for (int i = 0; i < s->ngrad; i++)
            free(s->grad[i].v);
        for (int i = 0; i < s->ndense; i++)
            free(s->dense[i].v);
    }
    free(c);
}

/* ------------------------------------------- building graphs from a case */

typedef struct {
    const char *name;
    ad_node *(*fn)(ad_node *);
} unary_entry;

typedef struct {
    const char *name;
    ad_node *(*fn)(ad_node *, ad_node *);
} binary_entry;

typedef struct {
    const char *name;
    ad_node *(*fn)(ad_node *, int);
} axis_entry;

static const unary_entry unary_ops[] = {
    {"neg", ad_neg},   {"exp", ad_exp},           {"log", ad_log},
    {"sqrt", ad_sqrt}, {"abs", ad_abs},           {"sin", ad_sin},
    {"cos", ad_cos},   {"tanh", ad_tanh},         {"sigmoid", ad_sigmoid},
    {"relu", ad_relu}, {"softplus", ad_softplus}, {"step", ad_step},
    {"sign", ad_sign}, {"detach", ad_detach},     {"transpose", ad_transpose},
};

static const binary_entry binary_ops[] = {
    {"add", ad_add},         {"sub", ad_sub},         {"mul", ad_mul}, {"div", ad_div},
    {"maximum", ad_maximum}, {"minimum", ad_minimum}, {"gt", ad_gt},   {"eq", ad_eq},
    {"matmul", ad_matmul},   {"grad", ad_grad},
};

static const axis_entry axis_ops[] = {
    {"sum", ad_sum},
    {"mean", ad_mean},
    {"max", ad_max},
    {"min", ad_min},
    {"logsumexp", ad_logsumexp},
    {"softmax", ad_softmax},
    {"log_softmax", ad_log_softmax},
    {"sum_keepdims", ad_sum_keepdims},
    {"mean_keepdims", ad_mean_keepdims},
    {"max_keepdims", ad_max_keepdims},
    {"min_keepdims", ad_min_keepdims},
    {"logsumexp_keepdims", ad_logsumexp_keepdims},
    {"squeeze", ad_squeeze},
    {"unsqueeze", ad_unsqueeze},
};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void need_args(const fx_node *nd, int nin, int nf, int ni)
{
    cr_assert(nd->nin == nin && nd->nf >= nf && nd->ni >= ni,
              "node '%s' (%s): expected %d inputs, %d floats, %d ints; got %d, %d, %d", nd->name,
              nd->op, nin, nf, ni, nd->nin, nd->nf, nd->ni);
}

static const fx_tensor *leaf_values(const fx_set *s, int node)
{
    for (int i = 0; i < s->nleaf; i++)
        if (s->leaf[i].node == node)
            return &s->leaf[i];
    return NULL;
}

static ad_node *make_node(ad_graph *g, const fx_node *nd, ad_node *const *in)
{
    const char *op = nd->op;
    for (int i = 0; i < NELEM(unary_ops); i++)
        if (strcmp(op, unary_ops[i].name) == 0) {
            need_args(nd, 1, 0, 0);
            return unary_ops[i].fn(in[0]);
        }
    for (int i = 0; i < NELEM(binary_ops); i++)
        if (strcmp(op, binary_ops[i].name) == 0) {
            need_args(nd, 2, 0, 0);
            return binary_ops[i].fn(in[0], in[1]);
        }
    for (int i = 0; i < NELEM(axis_ops); i++)
        if (strcmp(op, axis_ops[i].name) == 0) {
            need_args(nd, 1, 0, 1);
            return axis_ops[i].fn(in[0], (int)nd->ip[0]);
        }
    if (strcmp(op, "param") == 0)
        return ad_param(g, nd->ni, nd->ip, nd->name);
    if (strcmp(op, "input") == 0)
        return ad_input(g, nd->ni, nd->ip, nd->name);
    if (strcmp(op, "const") == 0)
        return ad_const(g, nd->ni, nd->ip, NULL, nd->name);
    if (strcmp(op, "scalar") == 0)
        return ad_scalar(g, 0.0, nd->name);
    if (strcmp(op, "leaky_relu") == 0) {
        need_args(nd, 1, 1, 0);
        return ad_leaky_relu(in[0], nd->f[0]);
    }
    if (strcmp(op, "elu") == 0) {
        need_args(nd, 1, 1, 0);
        return ad_elu(in[0], nd->f[0]);
    }
    if (strcmp(op, "pow") == 0) {
        need_args(nd, 1, 1, 0);
        return ad_pow(in[0], nd->f[0]);
    }
    if (strcmp(op, "scale") == 0) {
        need_args(nd, 1, 1, 0);
        return ad_scale(in[0], nd->f[0]);
    }
    if (strcmp(op, "affine") == 0) {
        need_args(nd, 1, 2, 0);
        return ad_affine(in[0], nd->f[0], nd->f[1]);
    }
    if (strcmp(op, "clamp") == 0) {
        need_args(nd, 1, 2, 0);
        return ad_clamp(in[0], nd->f[0], nd->f[1]);
    }
    if (strcmp(op, "layer_norm") == 0) {
        need_args(nd, 1, 1, 0);
        return ad_layer_norm(in[0], nd->f[0]);
    }
    if (strcmp(op, "where") == 0) {
        need_args(nd, 3, 0, 0);
        return ad_where(in[0], in[1], in[2]);
    }
    if (strcmp(op, "matmul_t") == 0) {
        need_args(nd, 2, 0, 2);
        return ad_matmul_t(in[0], (int)nd->ip[0], in[1], (int)nd->ip[1]);
    }
    if (strcmp(op, "reshape") == 0) {
        need_args(nd, 1, 0, 0);
        return ad_reshape(in[0], nd->ni, nd->ip);
    }
    if (strcmp(op, "broadcast_to") == 0) {
        need_args(nd, 1, 0, 0);
        return ad_broadcast_to(in[0], nd->ni, nd->ip);
    }
    if (strcmp(op, "slice") == 0) {
        need_args(nd, 1, 0, 3);
        return ad_slice(in[0], (int)nd->ip[0], nd->ip[1], nd->ip[2]);
    }
    if (strcmp(op, "concat") == 0) {
        cr_assert(nd->nin >= 1 && nd->ni >= 1, "node '%s': concat arguments", nd->name);
        return ad_concat(nd->nin, in, (int)nd->ip[0]);
    }
    if (strcmp(op, "take") == 0) {
        need_args(nd, 2, 0, 1);
        return ad_take(in[0], in[1], (int)nd->ip[0]);
    }
    if (strcmp(op, "permute") == 0) {
        need_args(nd, 1, 0, 0);
        int axes[AD_MAX_DIMS];
        cr_assert(nd->ni <= AD_MAX_DIMS, "node '%s': %d axes", nd->name, nd->ni);
        for (int k = 0; k < nd->ni; k++)
            axes[k] = (int)nd->ip[k];
        return ad_permute(in[0], axes);
    }
    if (strcmp(op, "pad") == 0) {
        need_args(nd, 1, 1, 3);
        return ad_pad(in[0], (int)nd->ip[0], nd->ip[1], nd->ip[2], nd->f[0]);
    }
    if (strcmp(op, "slice_step") == 0) {
        need_args(nd, 1, 0, 4);
        return ad_slice_step(in[0], (int)nd->ip[0], nd->ip[1], nd->ip[2], nd->ip[3]);
    }
    if (strcmp(op, "one_hot") == 0) {
        need_args(nd, 1, 0, 1);
        return ad_one_hot(in[0], nd->ip[0]);
    }
    if (strncmp(op, "conv", 4) == 0 && (op[4] == '1' || op[4] == '2') && op[5] == 'd') {
        /* conv1d, conv2d (x w), their _bias and _bias_relu forms (x w b),
         * conv2d_bias_relu_pool (x w b); ints: stride, padding, dilation
         * (per axis), groups */
        bool one_d = op[4] == '1', relu = strcmp(op + 6, "_bias_relu") == 0;
        bool pool = !one_d && strcmp(op + 6, "_bias_relu_pool") == 0;
        bool bias = relu || pool || strcmp(op + 6, "_bias") == 0;
        cr_assert(bias || op[6] == '\0', "node '%s': op '%s' unknown", nd->name, op);
        need_args(nd, bias ? 3 : 2, 0, one_d ? 4 : 7);
        ad_conv_opts o = {{0, 0}, {0, 0}, {0, 0}, 0};
        int axes = one_d ? 1 : 2;
        for (int k = 0; k < axes; k++) {
            o.stride[k] = (int)nd->ip[k];
            o.padding[k] = (int)nd->ip[axes + k];
            o.dilation[k] = (int)nd->ip[2 * axes + k];
        }
        o.groups = (int)nd->ip[3 * axes];
        if (pool)
            return ad_conv2d_bias_relu_pool(in[0], in[1], in[2], &o);
        if (relu)
            return one_d ? ad_conv1d_bias_relu(in[0], in[1], in[2], &o)
                         : ad_conv2d_bias_relu(in[0], in[1], in[2], &o);
        if (bias)
            return one_d ? ad_conv1d_bias(in[0], in[1], in[2], &o)
                         : ad_conv2d_bias(in[0], in[1], in[2], &o);
        return one_d ? ad_conv1d(in[0], in[1], &o) : ad_conv2d(in[0], in[1], &o);
    }
    if (strstr(op, "_pool") != NULL) { /* ints: kernel, stride, padding (per axis) */
        bool one_d = strstr(op, "1d") != NULL;
        int axes = one_d ? 1 : 2;
        need_args(nd, 1, 0, 3 * axes);
        ad_pool_opts o = {{0, 0}, {0, 0}, {0, 0}};
        for (int k = 0; k < axes; k++) {
            o.kernel[k] = (int)nd->ip[k];
            o.stride[k] = (int)nd->ip[axes + k];
            o.padding[k] = (int)nd->ip[2 * axes + k];
        }
        if (strncmp(op, "max", 3) == 0)
            return one_d ? ad_max_pool1d(in[0], &o) : ad_max_pool2d(in[0], &o);
        return one_d ? ad_avg_pool1d(in[0], &o) : ad_avg_pool2d(in[0], &o);
    }
    cr_assert_fail("node '%s': op '%s' unknown to test_reference.c", nd->name, op);
    return NULL;
}

static bool is_leaf_op(const char *op)
{
    return strcmp(op, "param") == 0 || strcmp(op, "input") == 0 || strcmp(op, "const") == 0 ||
           strcmp(op, "scalar") == 0;
}

static const char *dtype_name(ad_dtype dt) { return dt == AD_F64 ? "f64" : "f32"; }

/* Builds case c in a new graph, leaves set from value set k (each leaf right
 * after its creation, since ops compute eagerly). nodes[i] gets fixture node i. */
static ad_graph *build(const fx_case *c, ad_dtype dt, int k, ad_node **nodes)
{
    ad_graph *g = ad_graph_new(dt);
    cr_assert_not_null(g);
    for (int i = 0; i < c->nnodes; i++) {
        const fx_node *nd = &c->nodes[i];
        ad_node *in[FX_MAXIN];
        for (int j = 0; j < nd->nin; j++)
            in[j] = nodes[nd->in[j]];
        nodes[i] = make_node(g, nd, in);
        cr_assert_not_null(nodes[i], "%s %s: building node '%s' (%s) failed: %s", c->name,
                           dtype_name(dt), nd->name, nd->op, ad_graph_error(g));
        if (is_leaf_op(nd->op)) {
            const fx_tensor *t = leaf_values(&c->sets[k], i);
            cr_assert_not_null(t, "%s: set %d gives no value for leaf '%s'", c->name, k, nd->name);
            cr_assert_eq(ad_set(nodes[i], t->v, t->n), 0, "%s: ad_set '%s': %s", c->name, nd->name,
                         ad_graph_error(g));
        }
    }
    cr_assert_null(ad_graph_error(g), "%s %s: %s", c->name, dtype_name(dt), ad_graph_error(g));
    return g;
}

static void set_leaves(const fx_case *c, int k, ad_node **nodes)
{
    const fx_set *s = &c->sets[k];
    for (int i = 0; i < s->nleaf; i++) {
        const fx_tensor *t = &s->leaf[i];
        cr_assert_eq(ad_set(nodes[t->node], t->v, t->n), 0, "%s: ad_set '%s': %s", c->name,
                     c->nodes[t->node].name, ad_graph_error(ad_node_graph(nodes[t->node])));
    }
}

/* ------------------------------------------------------------ comparisons */

typedef struct {
    double rtol, atol;
} tolerance;

static bool quiet_compare; /* set by the test of compare() itself */

static double max_abs(const double *v, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

/* Compares got with the expected tensor t (scale = factor * t); returns the
 * number of elements outside |got - want| <= rtol max(|got|, |want|) +
 * atol max(1, max|want|), logging the first few. */
static int compare(const char *what, const fx_case *c, ad_dtype dt, int k, const fx_tensor *t,
                   const double *got, double factor, tolerance tol)
{
    double scale = fmax(1.0, fabs(factor) * max_abs(t->v, t->n));
    int bad = 0;
    for (int64_t i = 0; i < t->n; i++) {
        double want = factor * t->v[i], err = fabs(got[i] - want);
        double lim = tol.rtol * fmax(fabs(got[i]), fabs(want)) + tol.atol * scale;
        if (!(err <= lim)) {
            if (bad < FX_MAXREPORT && !quiet_compare)
                cr_log_error("%s %s set %d: %s of '%s' [%lld]: PyTorch %.17g, chainrule %.17g "
                             "(|diff| %.3g, rel %.3g)",
                             c->name, dtype_name(dt), k, what, c->nodes[t->node].name, (long long)i,
                             want, got[i], err, err / fmax(fabs(want), 1e-300));
            bad++;
        }
    }
    return bad;
}

static void check_shape(const fx_case *c, ad_dtype dt, const fx_tensor *t, const ad_node *n)
{
    const char *nm = c->nodes[t->node].name;
    cr_assert_eq(ad_ndim(n), t->ndim, "%s %s: '%s' has %d axes, PyTorch %d", c->name,
                 dtype_name(dt), nm, ad_ndim(n), t->ndim);
    const int64_t *sh = ad_shape(n);
    for (int d = 0; d < t->ndim; d++)
        cr_assert_eq(sh[d], t->shape[d], "%s %s: '%s' axis %d is %lld, PyTorch %lld", c->name,
                     dtype_name(dt), nm, d, (long long)sh[d], (long long)t->shape[d]);
}

/* Every node value of set k; returns the number of bad elements. */
static int check_values(const fx_case *c, ad_dtype dt, int k, ad_node **nodes, tolerance tol,
                        double *buf)
{
    const fx_set *s = &c->sets[k];
    int bad = 0;
    for (int i = 0; i < s->nvalue; i++) {
        const fx_tensor *t = &s->value[i];
        check_shape(c, dt, t, nodes[t->node]);
        cr_assert_eq(ad_get(nodes[t->node], buf, t->n), 0);
        bad += compare("value", c, dt, k, t, buf, 1.0, tol);
    }
    return bad;
}

/* Every trainable leaf's accumulated gradient (expected times factor). */
static int check_grads(const fx_case *c, ad_dtype dt, int k, ad_node **nodes, tolerance tol,
                       double factor, double *buf)
{
    const fx_set *s = &c->sets[k];
    int bad = 0;
    for (int i = 0; i < s->ngrad; i++) {
        const fx_tensor *t = &s->grad[i];
        cr_assert_eq(ad_get_grad(nodes[t->node], buf, t->n), 0, "%s: %s", c->name,
                     ad_graph_error(ad_node_graph(nodes[t->node])));
        bad += compare("gradient", c, dt, k, t, buf, factor, tol);
    }
    return bad;
}

/* Every Jacobian and Hessian of set k (ad_jacobian, ad_hessian). */
static int check_dense(const fx_case *c, ad_dtype dt, int k, ad_node **nodes, tolerance tol)
{
    const fx_set *s = &c->sets[k];
    int bad = 0;
    for (int i = 0; i < s->ndense; i++) {
        const fx_tensor *t = &s->dense[i];
        ad_node *y = nodes[t->node], *x = nodes[t->wrt];
        cr_assert_eq(t->shape[0], t->hessian ? ad_numel(x) : ad_numel(y));
        cr_assert_eq(t->shape[1], ad_numel(x));
        double *m = malloc(sizeof(double) * (size_t)t->n);
        cr_assert_not_null(m);
        int rc = t->hessian ? ad_hessian(y, x, m) : ad_jacobian(y, x, m);
        cr_assert_eq(rc, 0, "%s: %s of '%s' w.r.t. '%s': %s", c->name,
                     t->hessian ? "ad_hessian" : "ad_jacobian", c->nodes[t->node].name,
                     c->nodes[t->wrt].name, ad_graph_error(ad_node_graph(y)));
        bad += compare(t->hessian ? "Hessian" : "Jacobian", c, dt, k, t, m, 1.0, tol);
        free(m);
    }
    return bad;
}

static void backward(const fx_case *c, ad_node **nodes)
{
    ad_node *loss = nodes[c->loss];
    cr_assert_eq(ad_backward(loss), 0, "%s: ad_backward: %s", c->name,
                 ad_graph_error(ad_node_graph(loss)));
}

/* Values and gradients of two graphs of the same case, bit for bit. */
static void check_identical(const fx_case *c, ad_dtype dt, ad_node **a, ad_node **b, double *b1,
                            double *b2)
{
    for (int i = 0; i < c->nnodes; i++) {
        int64_t n = ad_numel(a[i]);
        cr_assert_eq(n, ad_numel(b[i]));
        cr_assert_eq(ad_get(a[i], b1, n), 0);
        cr_assert_eq(ad_get(b[i], b2, n), 0);
        for (int64_t j = 0; j < n; j++)
            cr_assert(b1[j] == b2[j],
                      "%s %s: replayed value of '%s' [%lld] %.17g differs from a fresh build %.17g",
                      c->name, dtype_name(dt), c->nodes[i].name, (long long)j, b1[j], b2[j]);
        if (ad_node_is_trainable(a[i])) {
            cr_assert_eq(ad_get_grad(a[i], b1, n), 0);
            cr_assert_eq(ad_get_grad(b[i], b2, n), 0);
            for (int64_t j = 0; j < n; j++)
                cr_assert(b1[j] == b2[j],
                          "%s %s: replayed gradient of '%s' [%lld] %.17g differs from a fresh "
                          "build %.17g",
                          c->name, dtype_name(dt), c->nodes[i].name, (long long)j, b1[j], b2[j]);
        }
    }
}

static int64_t largest_tensor(const fx_case *c)
{
    int64_t m = 1;
    for (int k = 0; k < c->nsets; k++) {
        const fx_set *s = &c->sets[k];
        for (int i = 0; i < s->nvalue; i++)
            m = s->value[i].n > m ? s->value[i].n : m;
        for (int i = 0; i < s->nleaf; i++)
            m = s->leaf[i].n > m ? s->leaf[i].n : m;
    }
    return m;
}

static void run_case(const char *name, ad_dtype dt)
{
    /* f64: the 1e-10 relative; f32 is compared with the f64
     * PyTorch values, so its error includes rounding the inputs to float. */
    tolerance tol = dt == AD_F64 ? (tolerance){1e-10, 1e-13} : (tolerance){1e-4, 1e-5};
    fx_case *c = load_case(name);
    size_t bytes = sizeof(double) * (size_t)largest_tensor(c);
    double *buf = malloc(bytes), *buf2 = malloc(bytes);
    ad_node **nodes = calloc((size_t)c->nnodes, sizeof *nodes);
    ad_node **fresh = calloc((size_t)c->nnodes, sizeof *fresh);
    cr_assert(buf && buf2 && nodes && fresh);

    /* 1. a fresh graph on set 0: eager values, then gradients */
    ad_graph *g = build(c, dt, 0, nodes);
    int bad = check_values(c, dt, 0, nodes, tol, buf);
    backward(c, nodes);
    bad += check_values(c, dt, 0, nodes, tol, buf); /* backward changes no forward value */
    bad += check_grads(c, dt, 0, nodes, tol, 1.0, buf);
    bad += check_dense(c, dt, 0, nodes, tol);
    cr_assert_eq(bad, 0, "%s %s: %d elements differ from PyTorch on set 0 (see log)", name,
                 dtype_name(dt), bad);

    /* 2. replay on set 1: PyTorch's values, and bit-identical to a fresh build */
    set_leaves(c, 1, nodes);
    cr_assert_eq(ad_forward(g), 0, "%s: ad_forward: %s", name, ad_graph_error(g));
    ad_zero_grad(g);
    backward(c, nodes);
    bad = check_values(c, dt, 1, nodes, tol, buf) + check_grads(c, dt, 1, nodes, tol, 1.0, buf);
    bad += check_dense(c, dt, 1, nodes, tol);
    cr_assert_eq(bad, 0, "%s %s: %d elements differ from PyTorch after replay on set 1", name,
                 dtype_name(dt), bad);
    ad_graph *g1 = build(c, dt, 1, fresh);
    backward(c, fresh);
    check_identical(c, dt, nodes, fresh, buf, buf2);
    ad_graph_free(g1);

    /* 3. back to set 0; two backward passes accumulate twice the gradient */
    set_leaves(c, 0, nodes);
    cr_assert_eq(ad_forward(g), 0, "%s: ad_forward: %s", name, ad_graph_error(g));
    ad_zero_grad(g);
    backward(c, nodes);
    backward(c, nodes);
    bad = check_values(c, dt, 0, nodes, tol, buf) + check_grads(c, dt, 0, nodes, tol, 2.0, buf);
    cr_assert_eq(bad, 0, "%s %s: %d elements differ after replay back to set 0", name,
                 dtype_name(dt), bad);
    cr_assert_null(ad_graph_error(g));

    ad_graph_free(g);
    free(fresh);
    free(nodes);
    free(buf2);
    free(buf);
    free_case(c);
}

#define DEFINE_REFERENCE_TESTS(n)                                                                  \
    Test(reference_f64, n) { run_case(#n, AD_F64); }                                               \
    Test(reference_f32, n) { run_case(#n, AD_F32); }
REFERENCE_CASES(DEFINE_REFERENCE_TESTS)

#define CASE_NAME(n) #n,
static const char *const case_names[] = {REFERENCE_CASES(CASE_NAME)};

/* A fixture added by the script but not listed above would never run. */
Test(reference, every_fixture_is_tested)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/reference/autodiff", CHAINRULE_TEST_DIR);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".txt") != 0)
            continue;
        files++;
        bool listed = false;
        for (int i = 0; i < NELEM(case_names); i++)
            listed = listed || (strlen(case_names[i]) == len - 4 &&
                                strncmp(case_names[i], e->d_name, len - 4) == 0);
        cr_expect(listed, "fixture %s is not in REFERENCE_CASES of test_reference.c", e->d_name);
    }
    closedir(d);
    cr_assert_eq(files, NELEM(case_names), "%d fixtures on disk, %d cases listed", files,
                 NELEM(case_names));
}

/* The tolerance check itself must be able to fail: a value off by 1e-9
 * relative is rejected in f64. */
Test(reference, tolerance_rejects_a_perturbed_value)
{
    fx_case *c = load_case("second_tanh");
    const fx_tensor *t = &c->sets[0].value[0];
    double got = t->v[0] * (1 + 1e-9);
    tolerance tol = {1e-10, 1e-13};
    quiet_compare = true;
    cr_assert_eq(compare("value", c, AD_F64, 0, t, &got, 1.0, tol), 1);
    got = t->v[0] * (1 + 1e-12);
    cr_assert_eq(compare("value", c, AD_F64, 0, t, &got, 1.0, tol), 0);
    quiet_compare = false;
    free_case(c);
}
