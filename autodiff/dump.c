/* dump.c -- the dumps' model of a graph, shared by the Graphviz pictures
 * (dump_dot.c), the chain-rule traces (dump_trace.c) and the stepper page
 * (dump_html.c): symbols, definitions, local derivatives, what each edge
 * carries back, numbers as printed; ad_dump_symbol and dump_model.
 *
 * The engine does not keep the individual terms of a fan-out sum (it builds
 * one add_n node), nor the local derivatives (a gradient rule is a
 * composition of ops that multiplies them in). A lesson needs both. Every
 * label comes from the registry (ops.def): a node is drawn by its op's form
 * ("@A + @B"), an edge by its op's derivative text. Every number comes from
 * the engine: for an elementwise op the local derivative d user/d input is
 * the op's own gradient rule evaluated with a unit seed (its vector-Jacobian
 * product, which is the derivative element by element) on a side graph that
 * copies the user's inputs, and the points where the op is not
 * differentiable are those where the rule (or the op) differs just left and
 * right of the point. No derivative formula is written here, and the dumped
 * graph is never modified. The contribution an edge carries back is upstream
 * gradient × local derivative, summed over the broadcast axes. For the other
 * ops (matmul, reductions, shape ops) the op's rule text is shown, and the
 * contribution is the input's gradient when the input has one use. Tests
 * check that the contributions of every input sum to the engine's
 * gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule/dump.h"
#include "dump_impl.h"
#include "graph_impl.h"

/* ------------------------------------------------------------- context */

/* The local derivatives of one elementwise node, from its gradient rule. */
typedef struct local_info {
    bool done, ok;        /* computed; the side graphs could be built */
    int n;                /* inputs */
    double *local;        /* n * numel: d u/d input k at element i, [k * numel + i] */
    int64_t *undefined;   /* n: elements where the derivative is not defined */
    int64_t *first;       /* n: the first of them */
    unsigned char *gives; /* n: the rule sends a gradient to input k */
} local_info;

/* d loss/d v from the latest backward build through the loss, or NULL. */
ad_node *ad_dump_grad_of(const ctx *c, const ad_node *v)
{
    if (!c->loss || v->id >= c->n || !c->anc[v->id])
        return NULL;
    ad_node *gn = v->grad_node;
    return gn && gn->id > c->loss->id && gn->numel == v->numel ? gn : NULL;
}

/* Copies at most size - 1 bytes of src without splitting a UTF-8 sequence. */
static void copy_utf8(char *dst, size_t size, const char *src)
{
    size_t len = strlen(src);
    if (len >= size) {
        len = size - 1;
        while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Significant digits of a printed number ("0.99995" has 5, "1" has 1). */
static int digits(const char *s)
{
    int n = 0, lead = 1;
    for (; *s && *s != 'e' && *s != 'E'; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (*s == '0' && lead)
            continue;
        lead = 0;
        n++;
    }
    return n;
}

/* v with prec significant digits, or more when prec digits round it to a
 * shorter number it is not: sigmoid(10) = 0.9999546 prints 0.99995, not 1
 * (students would compute 1·(1 − 1) = 0). A relative difference below 1e-9
 * is rounding noise (1 − tanh²(0.8814) is 0.4999999999999999), printed 0.5. */
void ad_dump_fmt_num(char *buf, size_t size, double v, int prec)
{
    if (v == 0)
        v = 0; /* no "-0" */
    for (int p = prec;; p++) {
        snprintf(buf, size, "%.*g", p, v);
        double back = strtod(buf, NULL);
        if (p >= 17 || back == v || !isfinite(v) || digits(buf) >= prec ||
            fabs(back - v) <= 1e-9 * fabs(v))
            return;
    }
}

/* A number as a factor of a product: negative ones in parentheses. */
void ad_dump_fmt_factor(char *buf, size_t size, double v, int prec)
{
    char num[40];
    ad_dump_fmt_num(num, sizeof num, v, prec);
    snprintf(buf, size, num[0] == '-' ? "(%s)" : "%s", num);
}

/* "∂²y/∂x²" or "∂²y/∂x∂w" for a node ad_grad returned (deriv_of), from the
 * symbols of what it differentiates; false for other nodes. */
static bool derivative_name(const ctx *c, const ad_node *v, char *buf, size_t size)
{
    static const char *const sup[] = {"", "", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
    const ad_node *vars[9], *base = v;
    int n = 0;
    while (base->rare->deriv_of[0] && n < 9) {
        vars[n++] = base->rare->deriv_of[1];
        base = base->rare->deriv_of[0];
    }
    if (n == 0 || base->rare->deriv_of[0])
        return false;
    bool same = true;
    for (int i = 1; i < n; i++)
        same = same && vars[i] == vars[0];
    size_t k = 0;
    buf[0] = '\0';
    put(buf, size, &k, "∂");
    put(buf, size, &k, sup[n]);
    ad_dump_put_sym(c, buf, size, &k, base);
    put(buf, size, &k, "/");
    for (int i = 0; i < (same ? 1 : n); i++) {
        put(buf, size, &k, "∂");
        ad_dump_put_sym(c, buf, size, &k, vars[i]);
        if (same)
            put(buf, size, &k, sup[n]);
    }
    return true;
}

/* Node i's value when all its elements are equal, else NaN. */
static double uniform_value(const ad_node *v)
{
    double x = v->numel ? val(v, 0) : NAN;
    for (int64_t i = 1; i < v->numel && !isnan(x); i++)
        if (val(v, i) != x)
            x = NAN;
    return x;
}

/* Do nodes a and b compute the same thing from the same (drawn) inputs? */
static bool same_computation(const ctx *c, const ad_node *a, const ad_node *b)
{
    if (a->op != b->op || a->ninputs != b->ninputs || !ad_same_shape(a, b) ||
        memcmp(a->fparam, b->fparam, sizeof a->fparam) != 0 ||
        memcmp(a->rare->iparam, b->rare->iparam, sizeof(int64_t) * AD_MAX_IPARAMS) != 0)
        return false;
    for (int k = 0; k < a->ninputs; k++)
        if (c->alias[a->inputs[k]->id] != c->alias[b->inputs[k]->id])
            return false;
    return true;
}

static uint64_t computation_hash(const ctx *c, const ad_node *v)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)v->op;
    for (int k = 0; k < v->ninputs; k++)
        h = (h ^ (uint64_t)c->alias[v->inputs[k]->id]) * 1099511628211ull;
    for (int k = 0; k < AD_MAX_FPARAMS; k++) {
        uint64_t bits;
        memcpy(&bits, &v->fparam[k], sizeof bits);
        h = (h ^ bits) * 1099511628211ull;
    }
    return h;
}

/* The picture of a gradient graph leaves out what is only bookkeeping, in
 * nodes shown without gradients (a backward pass, or an ad_grad result that
 * is drawn rather than differentiated): the seed and other constants are
 * printed as their value (fold), a product by 1 is drawn as its other
 * factor, and a node that recomputes a node already drawn (tanh's y² built
 * again by the second derivative) as that node (alias). Only the picture
 * changes: the engine's nodes are untouched. */
static bool simplify_model(ctx *c, const ad_node *output)
{
    ad_graph *g = c->g;
    size_t cap = 16;
    while (cap < 2 * (size_t)c->n)
        cap *= 2;
    int64_t *table = zalloc(g, sizeof(int64_t) * cap);
    if (!table)
        return false;
    for (int64_t i = 0; i < c->n; i++) {
        ad_node *v = g->nodes[i];
        c->alias[i] = i;
        bool backward = v->flags & NODE_TAPE;
        bool eligible = ad_ops[v->op].kind != AD_KIND_LEAF && !*v->rare->name && v != output &&
                        (backward || (v->order > 0 && !c->grads));
        if (eligible) {
            double u = uniform_value(v);
            bool inputs_folded = v->ninputs > 0;
            for (int k = 0; k < v->ninputs; k++)
                inputs_folded = inputs_folded && c->fold[c->alias[v->inputs[k]->id]];
            if ((v->op == AD_OP_ONES_LIKE || v->op == AD_OP_ZEROS_LIKE || inputs_folded) &&
                isfinite(u) && v->op != AD_OP_DROPOUT_MASK) {
                c->fold[i] = 1;
                continue;
            }
            if (v->op == AD_OP_MUL)
                for (int k = 0; k < 2; k++) {
                    const ad_node *one = g->nodes[c->alias[v->inputs[k]->id]];
                    const ad_node *other = g->nodes[c->alias[v->inputs[1 - k]->id]];
                    if (c->fold[one->id] && uniform_value(one) == 1 && ad_same_shape(other, v)) {
                        c->alias[i] = other->id;
                        break;
                    }
                }
        }
        if (c->alias[i] != i || ad_ops[v->op].kind == AD_KIND_LEAF || (output && !c->anc[i]) ||
            (v->flags & NODE_ALIAS) || v->op == AD_OP_DROPOUT_MASK)
            continue;
        /* an earlier drawn node computing the same (forward ones included):
           open addressing over node ids + 1 */
        uint64_t h = computation_hash(c, v);
        for (size_t at = h & (cap - 1);; at = (at + 1) & (cap - 1)) {
            int64_t j = table[at] - 1;
            if (j < 0) {
                table[at] = i + 1;
                break;
            }
            if (eligible && same_computation(c, g->nodes[j], v)) {
                c->alias[i] = j;
                break;
            }
        }
    }
    zfree(g, table, sizeof(int64_t) * cap);
    return true;
}

/* named[i] = 1 when node i (drawn for itself) gets a name below (∂y/∂x for
 * an ad_grad result, ∂L/∂v for a gradient of the ad_backward pass): it
 * takes no number. */
static void mark_named(const ctx *c, unsigned char *named)
{
    for (int64_t j = 0; j < c->n; j++) {
        const ad_node *w = c->g->nodes[j], *gn = ad_dump_grad_of(c, w);
        if (w->rare->deriv_of[0])
            named[c->alias[j]] = 1;
        if (gn && (gn->flags & NODE_TAPE) && gn->id < c->n)
            named[c->alias[gn->id]] = 1;
    }
    for (int64_t i = 0; i < c->n; i++)
        if (*c->g->nodes[i]->rare->name || c->fold[i])
            named[i] = 0;
}

static void make_symbols(ctx *c)
{
    int64_t t = 0, b = 0;
    unsigned char *named = zalloc(c->g, (size_t)c->n); /* NULL: numbers with gaps */
    if (named)
        mark_named(c, named);
    for (int64_t i = 0; i < c->n; i++) {
        ad_node *v = c->g->nodes[i];
        char *s = c->sym + (size_t)i * SYM_LEN;
        if (c->alias[i] != i)
            continue;
        if (((v->flags & NODE_TAPE) || v->order > 0) && named && named[i]) {
            snprintf(s, SYM_LEN, "g₀"); /* named below */
            continue;
        }
        if (*v->rare->name)
            copy_utf8(s, SYM_LEN, v->rare->name);
        else if ((v->op == AD_OP_CONST && v->numel == 1) || c->fold[i])
            ad_dump_fmt_num(s, SYM_LEN, val(v, 0), 6);
        else if ((v->flags & NODE_TAPE) || v->order > 0) {
            /* g₁, g₂, ...: subscripts, so no user name can be the same */
            static const char *const sub[] = {"₀", "₁", "₂", "₃", "₄", "₅", "₆", "₇", "₈", "₉"};
            char num[24];
            size_t k = 0;
            snprintf(num, sizeof num, "%lld", (long long)++b);
            put(s, SYM_LEN, &k, "g");
            for (const char *d = num; *d; d++)
                put(s, SYM_LEN, &k, sub[*d - '0']);
        } else
            snprintf(s, SYM_LEN, "t%lld", (long long)++t);
    }
    /* results of ad_grad are ∂y/∂x, ∂²y/∂x², ... (in creation order: a
       second derivative's name reads the first's) */
    for (int64_t i = 0; i < c->n; i++) {
        ad_node *v = c->g->nodes[i];
        int64_t at = c->alias[i];
        char name[2 * SYM_LEN];
        if (v->rare->deriv_of[0] && !*c->g->nodes[at]->rare->name && !c->fold[at] &&
            derivative_name(c, v, name, sizeof name))
            copy_utf8(c->sym + (size_t)at * SYM_LEN, SYM_LEN, name);
    }
    /* gradient nodes of an ad_backward pass are better known as ∂L/∂v
       (first, i.e. latest, wins) */
    for (int64_t i = c->n - 1; c->loss && i >= 0; i--) {
        ad_node *v = c->g->nodes[i], *gn = ad_dump_grad_of(c, v);
        if (!gn || *gn->rare->name || !(gn->flags & NODE_TAPE) || gn->id >= c->n)
            continue;
        int64_t at = c->alias[gn->id];
        char *s = c->sym + (size_t)at * SYM_LEN;
        if (!*c->g->nodes[at]->rare->name && !c->fold[at] && strncmp(s, "g₁", 3) == 0) {
            char tmp[SYM_LEN + 16];
            snprintf(tmp, sizeof tmp, "∂L/∂%s", sym(c, v));
            copy_utf8(s, SYM_LEN, tmp);
        }
    }
    for (int64_t i = 0; i < c->n; i++)
        if (c->alias[i] != i)
            memcpy(c->sym + (size_t)i * SYM_LEN, c->sym + (size_t)c->alias[i] * SYM_LEN, SYM_LEN);
    zfree(c->g, named, (size_t)c->n);
}

/* A symbol needs parentheses inside a formula unless it is a name, a
 * number or a function call f(...). */
static bool atomic(const char *s)
{
    if (!*s)
        return true;
    bool plain = true;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || (unsigned char)*p >= 0x80))
            plain = false;
    if (plain)
        return true;
    const char *open = strchr(s, '(');
    size_t len = strlen(s);
    if (!open || open == s || s[len - 1] != ')')
        return false;
    int depth = 0;
    for (const char *p = open; *p; p++) {
        depth += *p == '(' ? 1 : (*p == ')' ? -1 : 0);
        if (depth == 0 && p[1])
            return false;
    }
    return true;
}

void ad_dump_put_sym(const ctx *c, char *buf, size_t size, size_t *k, const ad_node *n)
{
    const char *s = sym(c, n);
    bool paren = !atomic(s) || s[0] == '-';
    if (paren)
        put(buf, size, k, "(");
    put(buf, size, k, s);
    if (paren)
        put(buf, size, k, ")");
}

/* Does buf end with text? Then drop it (true). */
static bool unput(char *buf, size_t *k, const char *text)
{
    size_t len = strlen(text);
    if (*k < len || memcmp(buf + *k - len, text, len) != 0)
        return false;
    *k -= len;
    buf[*k] = '\0';
    return true;
}

/* Expands an ops.def template (its header comment lists the markers) for
 * node u: "@A + @B" -> "t3 + b". */
static void subst(const ctx *c, const ad_node *u, const char *tmpl, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (const char *p = tmpl; *p; p++) {
        char one[2] = {*p, 0};
        if (*p != '@' || !p[1]) {
            put(buf, size, &k, one);
            continue;
        }
        char num[48];
        double v;
        switch (*++p) {
        case 'Y':
            ad_dump_put_sym(c, buf, size, &k, u);
            break;
        case 'A':
        case 'B':
        case 'C':
            if (*p - 'A' < u->ninputs)
                ad_dump_put_sym(c, buf, size, &k, u->inputs[*p - 'A']);
            break;
        case 'a':
        case 'b':
            if (*p - 'a' < u->ninputs) {
                ad_dump_put_sym(c, buf, size, &k, u->inputs[*p - 'a']);
                if (u->rare->iparam[*p - 'a'])
                    put(buf, size, &k, "ᵀ");
            }
            break;
        case 'P':
            v = u->fparam[0];
            if ((v == 1 || v == -1) && strncmp(p + 1, "·", strlen("·")) == 0) {
                p += strlen("·"); /* 1·a is a, −1·a is −a */
                if (v == -1)
                    put(buf, size, &k, "−");
                break;
            }
            ad_dump_fmt_num(num, sizeof num, v, 6);
            put(buf, size, &k, num);
            break;
        case 'Q':
            v = u->fparam[1];
            if (unput(buf, &k, " + ")) {
                if (v == 0)
                    break; /* a + 0 is a */
                put(buf, size, &k, v < 0 ? " − " : " + ");
                v = fabs(v);
            }
            ad_dump_fmt_num(num, sizeof num, v, 6);
            put(buf, size, &k, num);
            break;
        case 'R':
            v = u->fparam[0] - 1;
            if (v == 1 && unput(buf, &k, "^"))
                break; /* a^1 is a */
            ad_dump_fmt_num(num, sizeof num, v, 6);
            put(buf, size, &k, num);
            break;
        case 'X':
            if (u->rare->iparam[0] == AD_ALL)
                snprintf(num, sizeof num, ", all axes");
            else
                snprintf(num, sizeof num, ", axis %lld", (long long)u->rare->iparam[0]);
            put(buf, size, &k, num);
            break;
        case 'N':
            snprintf(num, sizeof num, "%lld",
                     (long long)(u->ninputs && u->numel ? u->inputs[0]->numel / u->numel : 0));
            put(buf, size, &k, num);
            break;
        case '*':
        case '+':
            for (int i = 0; i < u->ninputs; i++) {
                if (i)
                    put(buf, size, &k, *p == '*' ? ", " : " + ");
                if (*p == '*')
                    put(buf, size, &k, sym(c, u->inputs[i]));
                else
                    ad_dump_put_sym(c, buf, size, &k, u->inputs[i]);
            }
            break;
        default: /* not a marker: "@ " is the matrix product's @ */
            put(buf, size, &k, "@");
            one[0] = *p;
            put(buf, size, &k, one);
        }
    }
    /* (aᵀ)ᵀ is a */
    for (char *t; (t = strstr(buf, "ᵀᵀ")) != NULL;)
        memmove(t, t + 2 * strlen("ᵀ"), strlen(t + 2 * strlen("ᵀ")) + 1);
}

/* The derivative template of op for input k: the k-th " | " separated part
 * of its ops.def column (the last part repeats). */
static void derivative_template(int op, int k, char *buf, size_t size)
{
    const char *t = ad_ops[op].derivative;
    for (const char *bar; k > 0 && (bar = strstr(t, " | ")) != NULL; k--)
        t = bar + 3;
    const char *end = strstr(t, " | ");
    size_t len = end ? (size_t)(end - t) : strlen(t);
    if (len >= size)
        len = size - 1;
    memcpy(buf, t, len);
    buf[len] = '\0';
}

/* The definition of a node in terms of its inputs' symbols: "t3 + b". */
void ad_dump_definition(const ctx *c, const ad_node *u, char *buf, size_t size)
{
    /* a product by the constant −1 of a gradient build is a negation */
    for (int k = 0; u->op == AD_OP_MUL && k < 2; k++) {
        const ad_node *f = c->g->nodes[c->alias[u->inputs[k]->id]];
        if (c->fold[f->id] && uniform_value(f) == -1) {
            size_t pos = 0;
            buf[0] = '\0';
            put(buf, size, &pos, "−");
            ad_dump_put_sym(c, buf, size, &pos, u->inputs[1 - k]);
            return;
        }
    }
    subst(c, u, ad_ops[u->op].form, buf, size);
}

/* ---------------------------------------------------- local derivatives */

/* Flat index into input `in` of element i of the (broadcast) output. */
static int64_t bcast_index(const ad_node *out, const ad_node *in, int64_t i)
{
    if (in->numel == out->numel)
        return i;
    if (in->numel == 1)
        return 0;
    int64_t off = 0, stride = 1;
    for (int d = out->ndim - 1; d >= 0; d--) {
        int64_t idx = i % out->shape[d];
        i /= out->shape[d];
        int td = d - (out->ndim - in->ndim);
        if (td < 0)
            continue;
        if (in->shape[td] != 1)
            off += idx * stride;
        stride *= in->shape[td];
    }
    return off;
}

/* The op's derivative text for input k is "0" (step, sign, where's condition). */
static bool zero_text(const ad_node *u, int k)
{
    char t[DEF_LEN];
    derivative_template(u->op, k, t, sizeof t);
    return strcmp(t, "0") == 0;
}

/* Builds u's op over fresh trainable leaves of len elements in the side graph
 * s (leaf j element i is x(j, i)) and runs the op's own gradient rule on it
 * with a unit seed: for an elementwise op, grads[k] is then the local
 * derivative d u/d input k, element by element (NULL when the rule sends
 * nothing to input k). Returns the op's node, NULL on an error. */
static ad_node *side_rule(ad_graph *s, const ad_node *u, int64_t len,
                          double (*x)(const ad_node *u, int j, int64_t i, const void *arg),
                          const void *arg, ad_node **leaves, ad_node **grads)
{
    for (int j = 0; j < u->ninputs; j++) {
        leaves[j] = ad_param(s, 1, &len, NULL);
        if (!leaves[j])
            return NULL;
        AD_DISPATCH(s, {
            T *v = leaves[j]->value;
            for (int64_t i = 0; i < len; i++)
                v[i] = (T)x(u, j, i, arg);
        });
    }
    ad_node *y = ad_node_make(s, u->op, u->ninputs, leaves, u->fparam, u->rare->iparam);
    ad_node *seed = y ? ad_node_make(s, AD_OP_ONES_LIKE, 1, &y, NULL, NULL) : NULL;
    if (!seed)
        return NULL;
    for (int j = 0; j < u->ninputs; j++)
        grads[j] = NULL;
    ad_ops[u->op].backward(y, seed, grads);
    return s->has_error ? NULL : y;
}

static double side_val(const ad_node *n, int64_t i) { return val(n, n->numel == 1 ? 0 : i); }

/* input j of u at element i of u (broadcast) */
static double at_point(const ad_node *u, int j, int64_t i, const void *arg)
{
    (void)arg;
    return val(u->inputs[j], bcast_index(u, u->inputs[j], i));
}

static double step_of(double x) { return 1e-7 * (fabs(x) > 1e-3 ? fabs(x) : 1e-3); }

/* segment 2k (input k moved down by a step) and 2k + 1 (up) of u's elements */
static double nudged(const ad_node *u, int j, int64_t i, const void *arg)
{
    (void)arg;
    int64_t seg = u->numel ? i / u->numel : 0, e = u->numel ? i % u->numel : 0;
    double x = at_point(u, j, e, NULL);
    if (seg / 2 != j)
        return x;
    return seg % 2 ? x + step_of(x) : x - step_of(x);
}

/* Two one-sided values agree (a smooth function or derivative). */
static bool agree(double a, double b)
{
    if (a == b || (isnan(a) && isnan(b)))
        return true;
    return isfinite(a) && isfinite(b) && fabs(a - b) <= 1e-3 * (1 + fabs(a) + fabs(b));
}

/* Fills li for elementwise node u: the local derivatives the gradient rule
 * gives at u's inputs (in u's dtype, so the numbers are the engine's), and
 * the points where the op is not differentiable, found by evaluating the
 * op and its rule just left and right of each point (in double). The side
 * graphs use u's allocator and never touch u's graph. */
static void local_compute(const ad_graph *g, const ad_node *u, local_info *li)
{
    const int n = u->ninputs;
    const int64_t len = u->numel;
    li->done = true;
    li->n = n;
    li->local = zalloc((ad_graph *)g, sizeof(double) * (size_t)(n * len));
    li->undefined = zalloc((ad_graph *)g, sizeof(int64_t) * (size_t)n);
    li->first = zalloc((ad_graph *)g, sizeof(int64_t) * (size_t)n);
    li->gives = zalloc((ad_graph *)g, (size_t)n);
    ad_node **nodes = zalloc((ad_graph *)g, sizeof(ad_node *) * (size_t)(2 * n));
    ad_graph *s = ad_graph_new_with(g->dtype, g->alloc, g->ud);
    ad_graph *s64 = ad_graph_new_with(AD_F64, g->alloc, g->ud);
    ad_node *y = NULL, *y64 = NULL;
    if (li->local && li->undefined && li->first && li->gives && nodes && s && s64)
        y64 = side_rule(s64, u, 2 * n * len, nudged, NULL, nodes, nodes + n);
    for (int k = 0; y64 && k < n; k++) {
        ad_node *d64 = nodes[n + k];
        for (int64_t i = 0; i < len; i++) {
            int64_t lo = 2 * k * len + i, hi = lo + len;
            double dl = d64 ? side_val(d64, lo) : 0, dr = d64 ? side_val(d64, hi) : 0;
            if (agree(dl, dr) && agree(val(y64, lo), val(y64, hi)))
                continue;
            if (!li->undefined[k]++)
                li->first[k] = i;
        }
    }
    /* the numbers shown: the rule in u's own dtype, at u's own inputs */
    if (y64)
        y = side_rule(s, u, len, at_point, NULL, nodes, nodes + n);
    if (y64 && y) {
        li->ok = true;
        for (int k = 0; k < n; k++) {
            li->gives[k] = nodes[n + k] != NULL;
            for (int64_t i = 0; i < len && nodes[n + k]; i++)
                li->local[k * len + i] = side_val(nodes[n + k], i);
        }
    }
    ad_graph_free(s);
    ad_graph_free(s64);
    zfree((ad_graph *)g, nodes, sizeof(ad_node *) * (size_t)(2 * n));
}

static bool elementwise(const ad_node *u)
{
    ad_op_kind kind = ad_ops[u->op].kind;
    return kind == AD_KIND_UNARY || kind == AD_KIND_BINARY || kind == AD_KIND_TERNARY;
}

/* The local derivatives of elementwise node u (computed once per dump), or
 * NULL for other ops and when the side graphs could not be built. */
static const local_info *local_of(const ctx *c, const ad_node *u)
{
    if (!elementwise(u) || u->id >= c->n)
        return NULL;
    local_info *li = &c->li[u->id];
    if (!li->done)
        local_compute(c->g, u, li);
    return li->ok ? li : NULL;
}

static void local_free(const ad_graph *g, const ad_node *u, local_info *li)
{
    if (!li->done)
        return;
    zfree((ad_graph *)g, li->local, sizeof(double) * (size_t)(li->n * u->numel));
    zfree((ad_graph *)g, li->undefined, sizeof(int64_t) * (size_t)li->n);
    zfree((ad_graph *)g, li->first, sizeof(int64_t) * (size_t)li->n);
    zfree((ad_graph *)g, li->gives, (size_t)li->n);
}

/* Does gradient flow from user u back into its input k? EDGE_ZERO marks a
 * derivative that is 0 by the op's rule (a step): the engine sends nothing. */
int ad_dump_edge_kind(const ctx *c, const ad_node *u, int k)
{
    const ad_node *in = u->inputs[k];
    if (!ad_dump_grad_of(c, u) || !(in->flags & NODE_REQGRAD))
        return EDGE_NONE;
    const local_info *li = local_of(c, u);
    if (li && !li->gives[k] && zero_text(u, k))
        return EDGE_ZERO;
    if (ad_ops[u->op].backward == ad_nograd || !(u->flags & NODE_REQGRAD))
        return EDGE_NONE;
    if (li && !li->gives[k])
        return EDGE_NONE;
    return EDGE_FLOWS;
}

/* "0, 1": the axes of u's shape over which input in was broadcast. */
static bool broadcast_axes(const ad_node *u, const ad_node *in, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    if (in->numel == u->numel && in->ndim == u->ndim)
        return false;
    for (int d = 0; d < u->ndim; d++) {
        int td = d - (u->ndim - in->ndim);
        if (td < 0 || (in->shape[td] == 1 && u->shape[d] != 1)) {
            char ax[24];
            snprintf(ax, sizeof ax, k ? ", %d" : "%d", d);
            put(buf, size, &k, ax);
        }
    }
    return k > 0;
}

void ad_dump_edge_free(ad_graph *g, const ad_node *u, const ad_node *in, edge_info *e)
{
    (void)u;
    zfree(g, e->contrib, sizeof(double) * (size_t)in->numel);
    e->contrib = NULL;
}

/* Fills e for the edge input k -> u. false: out of memory. */
bool ad_dump_edge_compute(const ctx *c, const ad_node *u, int k, edge_info *e)
{
    const ad_node *in = u->inputs[k];
    memset(e, 0, sizeof *e);
    e->kind = ad_dump_edge_kind(c, u, k);
    char t[DEF_LEN];
    derivative_template(u->op, k, t, sizeof t);
    subst(c, u, t, e->rule, sizeof e->rule);
    const local_info *li = local_of(c, u);
    /* a shape op that grows its one input broadcasts it (broadcast_to) */
    bool grows = ad_ops[u->op].kind == AD_KIND_SHAPE && u->ninputs == 1 && u->numel > in->numel;
    if (elementwise(u) || grows)
        broadcast_axes(u, in, e->axes, sizeof e->axes);

    ad_graph *g = c->g;
    ad_node *gn = e->kind != EDGE_NONE ? ad_dump_grad_of(c, u) : NULL;
    if (li && (li->gives[k] || zero_text(u, k))) {
        e->has_local = true;
        e->local = li->local + (size_t)k * (size_t)u->numel;
        e->undefined = li->undefined[k];
        if (e->undefined) {
            int64_t i = li->first[k];
            char s[SYM_LEN + 2], x[48], d[48];
            size_t ks = 0;
            s[0] = '\0';
            ad_dump_put_sym(c, s, sizeof s, &ks, in);
            ad_dump_fmt_num(x, sizeof x, val(in, bcast_index(u, in, i)), 6);
            ad_dump_fmt_num(d, sizeof d, e->local[i], 6);
            snprintf(e->undef_note, sizeof e->undef_note, "undefined at %s = %s (engine uses %s)",
                     s, x, d);
        }
        if (gn) {
            e->contrib = zalloc(g, sizeof(double) * (size_t)in->numel);
            if (!e->contrib)
                return false;
            for (int64_t i = 0; i < u->numel; i++)
                e->contrib[bcast_index(u, in, i)] +=
                    e->kind == EDGE_ZERO ? 0 : val(gn, i) * e->local[i];
        }
    } else if (gn && c->uses[in->id] == 1) {
        /* the only use: its contribution is the whole gradient */
        ad_node *gi = ad_dump_grad_of(c, in);
        if (gi) {
            e->contrib = zalloc(g, sizeof(double) * (size_t)in->numel);
            if (!e->contrib)
                return false;
            for (int64_t i = 0; i < in->numel; i++)
                e->contrib[i] = val(gi, i);
        }
    }
    return true;
}

/* ---------------------------------------------------------- the context */

static void ctx_free(ctx *c)
{
    ad_graph *g = c->g;
    size_t n = (size_t)c->n;
    zfree(g, c->anc, n);
    zfree(g, c->step, sizeof(int64_t) * n);
    zfree(g, c->uses, sizeof(int64_t) * n);
    zfree(g, c->ustart, sizeof(int64_t) * (n + 1));
    zfree(g, c->sym, n * SYM_LEN);
    zfree(g, c->alias, sizeof(int64_t) * n);
    zfree(g, c->fold, n);
    if (c->li)
        for (int64_t i = 0; i < c->n; i++)
            local_free(g, g->nodes[i], &c->li[i]);
    zfree(g, c->li, sizeof(local_info) * n);
    memset(c, 0, sizeof *c);
}

static int64_t count_edges(const ad_graph *g, int64_t n)
{
    int64_t e = 0;
    for (int64_t i = 0; i < n; i++)
        e += g->nodes[i]->ninputs;
    return e;
}

void ad_dump_ctx_free_all(ctx *c)
{
    int64_t e = count_edges(c->g, c->n);
    zfree(c->g, c->uid, sizeof(int64_t) * (size_t)e);
    zfree(c->g, c->uk, sizeof(int) * (size_t)e);
    ctx_free(c);
}

/* output: the node the picture is restricted to (NULL: the whole graph) */
bool ad_dump_ctx_init(ctx *c, ad_graph *g, ad_node *loss, const ad_node *output, int prec)
{
    memset(c, 0, sizeof *c);
    c->g = g;
    c->loss = loss;
    c->n = g->nnodes;
    c->prec = prec;
    size_t n = (size_t)c->n;
    int64_t nedges = count_edges(g, c->n);
    c->anc = zalloc(g, n);
    c->step = zalloc(g, sizeof(int64_t) * n);
    c->uses = zalloc(g, sizeof(int64_t) * n);
    c->ustart = zalloc(g, sizeof(int64_t) * (n + 1));
    c->uid = zalloc(g, sizeof(int64_t) * (size_t)nedges);
    c->uk = zalloc(g, sizeof(int) * (size_t)nedges);
    c->sym = zalloc(g, n * SYM_LEN);
    c->li = zalloc(g, sizeof(local_info) * n);
    c->alias = zalloc(g, sizeof(int64_t) * n);
    c->fold = zalloc(g, n);
    if (!c->anc || !c->step || !c->uses || !c->ustart || !c->uid || !c->uk || !c->sym || !c->li ||
        !c->alias || !c->fold) {
        ad_dump_ctx_free_all(c);
        ad_fail(g, "dump: out of memory");
        return false;
    }
    /* users, in creation order (so the terms of a sum appear in order) */
    for (int64_t i = 0; i < c->n; i++)
        for (int k = 0; k < g->nodes[i]->ninputs; k++)
            c->ustart[g->nodes[i]->inputs[k]->id + 1]++;
    for (int64_t i = 0; i < c->n; i++)
        c->ustart[i + 1] += c->ustart[i];
    int64_t *fill = c->step; /* borrowed as a cursor, cleared below */
    for (int64_t i = 0; i < c->n; i++)
        for (int k = 0; k < g->nodes[i]->ninputs; k++) {
            int64_t in = g->nodes[i]->inputs[k]->id, at = c->ustart[in] + fill[in]++;
            c->uid[at] = i;
            c->uk[at] = k;
        }
    memset(c->step, 0, sizeof(int64_t) * n);
    if (loss) {
        c->anc[loss->id] = 1;
        for (int64_t i = loss->id; i >= 0; i--)
            if (c->anc[i])
                for (int k = 0; k < g->nodes[i]->ninputs; k++)
                    c->anc[g->nodes[i]->inputs[k]->id] = 1;
        for (int64_t i = loss->id; i >= 0; i--) {
            ad_node *v = g->nodes[i];
            if (ad_dump_grad_of(c, v))
                c->step[i] = ++c->nsteps;
            for (int k = 0; k < v->ninputs; k++)
                if (ad_dump_edge_kind(c, v, k) == EDGE_FLOWS)
                    c->uses[v->inputs[k]->id]++;
        }
    }
    c->grads = loss && ad_dump_grad_of(c, loss);
    if (!simplify_model(c, output)) {
        ad_dump_ctx_free_all(c);
        ad_fail(g, "dump: out of memory");
        return false;
    }
    make_symbols(c);
    return true;
}

/* ------------------------------------------------------------ formatting */

/* Values of a tensor: in full when small, else summarized. */
void ad_dump_fmt_values(char *buf, size_t size, const ad_node *shape_of, const double *v, int64_t n,
                        int prec)
{
    size_t k = 0;
    char num[40];
    buf[0] = '\0';
    if (n == 1) {
        ad_dump_fmt_num(buf, size, v[0], prec);
        return;
    }
    if (n <= AD_DUMP_INLINE_MAX) {
        int64_t last = shape_of->ndim ? shape_of->shape[shape_of->ndim - 1] : 1;
        put(buf, size, &k, "[");
        for (int64_t i = 0; i < n; i++) {
            if (i)
                put(buf, size, &k, last && i % last == 0 ? "; " : ", ");
            ad_dump_fmt_num(num, sizeof num, v[i], prec);
            put(buf, size, &k, num);
        }
        put(buf, size, &k, "]");
        return;
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
        sum += v[i];
        sq += v[i] * v[i];
    }
    char a[32], b[32], m[32], r[32];
    prec = prec > 4 ? prec : 3; /* summaries are approximate anyway */
    ad_dump_fmt_num(m, sizeof m, n ? sum / (double)n : 0, prec);
    ad_dump_fmt_num(a, sizeof a, lo, prec);
    ad_dump_fmt_num(b, sizeof b, hi, prec);
    ad_dump_fmt_num(r, sizeof r, sqrt(sq), prec);
    snprintf(buf, size, "mean %s, range [%s, %s], ‖·‖ %s", m, a, b, r);
}

/* Node values into a fresh double array. */
double *ad_dump_values_of(const ctx *c, const ad_node *n)
{
    double *v = zalloc(c->g, sizeof(double) * (size_t)n->numel);
    if (v)
        for (int64_t i = 0; i < n->numel; i++)
            v[i] = val(n, i);
    return v;
}

void ad_dump_fmt_node_values(const ctx *c, char *buf, size_t size, const ad_node *n,
                             const ad_node *shape_of)
{
    double *v = ad_dump_values_of(c, n);
    if (!v) {
        snprintf(buf, size, "?");
        return;
    }
    ad_dump_fmt_values(buf, size, shape_of, v, n->numel, c->prec);
    zfree(c->g, v, sizeof(double) * (size_t)n->numel);
}

/* The tag of a leaf: data and constants are told apart from the variables
 * (trainable leaves, which the colour shows and which need no tag). */
const char *ad_dump_leaf_kind(const ad_node *v)
{
    if (v->flags & NODE_TRAINABLE)
        return "variable";
    if (v->flags & NODE_INPUT)
        return "input";
    return "const";
}

/* The fan-out sum "0.5 + 0.5" of a scalar's incoming contributions. */
bool ad_dump_fanout_sum(const ctx *c, const ad_node *v, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    if (c->uses[v->id] < 2 || v->numel != 1)
        return false;
    for (int64_t j = c->ustart[v->id]; j < c->ustart[v->id + 1]; j++) {
        const ad_node *u = c->g->nodes[c->uid[j]];
        if (u->id >= c->n || ad_dump_edge_kind(c, u, c->uk[j]) != EDGE_FLOWS)
            continue;
        edge_info e;
        if (!ad_dump_edge_compute(c, u, c->uk[j], &e)) {
            ad_dump_edge_free(c->g, u, v, &e);
            return false;
        }
        char num[40];
        if (e.contrib)
            ad_dump_fmt_num(num, sizeof num, e.contrib[0], c->prec);
        else
            snprintf(num, sizeof num, "?");
        ad_dump_edge_free(c->g, u, v, &e);
        if (k)
            put(buf, size, &k, " + ");
        put(buf, size, &k, num);
    }
    return true;
}

int ad_dump_symbol(ad_node *loss, const ad_node *n, char *buf, size_t size)
{
    if (!loss || !n || !buf || size == 0) {
        if (loss)
            ad_fail(loss->g, "ad_dump_symbol: %s", !n ? "no node" : "no buffer");
        return -1;
    }
    ad_graph *g = loss->g;
    if (n->g != g || n->id >= g->nnodes) {
        ad_fail(g, "ad_dump_symbol: the node belongs to another graph");
        return -1;
    }
    ctx c;
    if (!ad_dump_ctx_init(&c, g, loss, loss, 6))
        return -1;
    copy_utf8(buf, size, sym(&c, g->nodes[c.alias[n->id]]));
    ad_dump_ctx_free_all(&c);
    return 0;
}

/* ------------------------------------------- the model, for dump_html.c */

struct dump_model {
    ctx c;
};

dump_model *ad_dump_model_new(ad_graph *g, ad_node *loss, int prec)
{
    dump_model *m = zalloc(g, sizeof *m);
    if (!m) {
        ad_fail(g, "dump: out of memory");
        return NULL;
    }
    if (!ad_dump_ctx_init(&m->c, g, loss, loss, prec)) {
        zfree(g, m, sizeof *m);
        return NULL;
    }
    return m;
}

void ad_dump_model_free(dump_model *m)
{
    if (!m)
        return;
    ad_graph *g = m->c.g;
    ad_dump_ctx_free_all(&m->c);
    zfree(g, m, sizeof *m);
}

int64_t ad_dump_model_steps(const dump_model *m) { return m->c.nsteps; }

int64_t ad_dump_model_step(const dump_model *m, const ad_node *v)
{
    return v->id < m->c.n ? m->c.step[v->id] : 0;
}

int64_t ad_dump_model_uses(const dump_model *m, const ad_node *v)
{
    return v->id < m->c.n ? m->c.uses[v->id] : 0;
}

const char *ad_dump_model_symbol(const dump_model *m, const ad_node *v) { return sym(&m->c, v); }

const ad_node *ad_dump_model_grad(const dump_model *m, const ad_node *v)
{
    return ad_dump_grad_of(&m->c, v);
}

int ad_dump_model_edge(const dump_model *m, const ad_node *u, int k, dump_edge *e)
{
    edge_info info;
    memset(e, 0, sizeof *e);
    if (!ad_dump_edge_compute(&m->c, u, k, &info)) {
        ad_dump_edge_free(m->c.g, u, u->inputs[k], &info);
        ad_fail(m->c.g, "dump: out of memory");
        return -1;
    }
    e->flows = info.kind == EDGE_FLOWS;
    copy_utf8(e->rule, sizeof e->rule, info.rule);
    e->scalar_local = info.has_local && u->numel == 1;
    e->local = e->scalar_local ? info.local[0] : 0;
    e->contribution = info.contrib; /* handed over */
    return 0;
}

void ad_dump_model_edge_free(const dump_model *m, const ad_node *u, int k, dump_edge *e)
{
    zfree(m->c.g, e->contribution, sizeof(double) * (size_t)u->inputs[k]->numel);
    e->contribution = NULL;
}

void ad_dump_model_format(const dump_model *m, const ad_node *shape_of, const double *v, int64_t n,
                          char *buf, size_t size)
{
    ad_dump_fmt_values(buf, size, shape_of, v, n, m->c.prec);
}

void ad_dump_model_definition(const dump_model *m, const ad_node *v, char *buf, size_t size)
{
    if (ad_ops[v->op].kind == AD_KIND_LEAF)
        snprintf(buf, size, "%s", ad_dump_leaf_kind(v));
    else
        ad_dump_definition(&m->c, v, buf, size);
}
