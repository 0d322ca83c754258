/* expr.c -- recursive-descent parser of `chainrule grad` expressions (see
 * expr.h for the grammar). Each rule returns the engine node it built. */
#include "expr.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ad_graph *g;
    const char *text;
    size_t pos;
    const cr_var *vars;
    int nvars;
    cr_expr_error *err;
    bool failed;
    int depth; /* nesting of parse_unary: parentheses, signs, exponents, calls */
    /* names given by statements NAME = EXPR; so far (grown as needed) */
    struct definition {
        const char *name; /* in text, len bytes */
        size_t len, pos;
        ad_node *node;
    } * defs;
    int ndefs, capdefs;
} parser;

/* Deeper nesting is refused instead of overflowing the C stack: every cycle
 * of the grammar goes through parse_unary, a few frames per level. */
#define MAX_DEPTH 256

/* Tensor arguments plus parameters of one call, at most. */
#define MAX_CALL_ARGS 8

static ad_node *parse_expr(parser *p);
static ad_node *parse_unary(parser *p);

#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static ad_node *
fail_at(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return NULL;
    p->failed = true;
    p->err->column = (int)pos + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
    va_end(ap);
    return NULL;
}

/* An engine error (a node came back NULL without a parse error). */
static ad_node *check(parser *p, ad_node *n, size_t pos)
{
    if (n || p->failed)
        return n;
    const char *msg = ad_graph_error(p->g);
    fail_at(p, pos, "%s", msg ? msg : "out of memory");
    p->err->column = 0;
    return NULL;
}

static void skip_space(parser *p)
{
    while (isspace((unsigned char)p->text[p->pos]))
        p->pos++;
}

static char peek(parser *p)
{
    skip_space(p);
    return p->text[p->pos];
}

static bool name_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* What the parser found at pos, for messages: "')'", "end of input", "'foo'" */
static const char *found(parser *p, size_t pos, char *buf, size_t size)
{
    const char *s = p->text + pos;
    if (!*s)
        return "the end of the expression";
    if (name_start(*s) || isdigit((unsigned char)*s)) {
        size_t n = 0;
        while (name_char(s[n]) || s[n] == '.')
            n++;
        snprintf(buf, size, "'%.*s'", (int)(n > 40 ? 40 : n), s);
    } else {
        snprintf(buf, size, "'%c'", *s);
    }
    return buf;
}

static ad_node *parse_number(parser *p)
{
    size_t start = p->pos;
    const char *s = p->text;
    size_t i = start;
    bool digits = false;
    while (isdigit((unsigned char)s[i])) {
        i++;
        digits = true;
    }
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i])) {
            i++;
            digits = true;
        }
    }
    if (!digits)
        return fail_at(p, start, "malformed number");
    if (s[i] == 'e' || s[i] == 'E') {
        size_t e = i + 1;
        if (s[e] == '+' || s[e] == '-')
            e++;
        if (!isdigit((unsigned char)s[e]))
            return fail_at(p, start, "malformed number '%.*s': the exponent has no digits",
                           (int)(e - start), s + start);
        while (isdigit((unsigned char)s[e]))
            e++;
        i = e;
    }
    if (name_start(s[i]) || s[i] == '.')
        return fail_at(p, i, "unexpected '%c' after the number '%.*s'", s[i], (int)(i - start),
                       s + start);
    /* the token is a complete decimal number: strtod reads exactly it */
    errno = 0;
    double v = strtod(s + start, NULL);
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))
        return fail_at(p, start,
                       "the number '%.*s' is out of range (a double's magnitude is at most %g)",
                       (int)(i - start > 40 ? 40 : i - start), s + start, DBL_MAX);
    p->pos = i;
    return check(p, ad_const_scalar(p->g, v, NULL), start);
}

/* The registry op that `chainrule grad` calls name (len bytes), or -1. */
static int find_function(const char *name, size_t len)
{
    char buf[64];
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, name, len);
    buf[len] = '\0';
    return ad_op_find_call(buf);
}

/* name(tensor arguments, parameters...): the op, its arity and its
 * parameters (with their defaults) all come from the registry. */
static ad_node *parse_call(parser *p, const char *name, size_t len, size_t start)
{
    int op = find_function(name, len);
    if (op < 0)
        return fail_at(p, start, "unknown function '%.*s'", (int)len, name);
    const char *fname = ad_op_call_name(op);
    int arity = ad_op_arity(op), nparams = ad_op_param_count(op);
    int least = arity, most = arity + nparams;
    for (int i = 0; i < nparams; i++)
        if (!ad_op_param_default(op, i, NULL))
            least = arity + i + 1;
    char want[64];
    if (least == most)
        snprintf(want, sizeof want, "%d argument%s", most, most > 1 ? "s" : "");
    else
        snprintf(want, sizeof want, "%d to %d arguments", least, most);
    p->pos++; /* '(' */
    ad_node *args[MAX_CALL_ARGS] = {NULL};
    size_t argpos[MAX_CALL_ARGS] = {0};
    int nargs = 0;
    if (peek(p) == ')')
        return fail_at(p, p->pos, "%s() takes %s, got 0", fname, want);
    for (;;) {
        skip_space(p);
        size_t at = p->pos;
        ad_node *a = parse_expr(p);
        if (!a)
            return NULL;
        if (nargs < MAX_CALL_ARGS) {
            args[nargs] = a;
            argpos[nargs] = at;
        }
        nargs++;
        char c = peek(p);
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == ')') {
            p->pos++;
            break;
        }
        char buf[64];
        if (c && !isalnum((unsigned char)c) && !strchr("_.()+-*/^", c))
            return fail_at(p, p->pos, "unexpected character '%c'", c);
        return fail_at(p, p->pos, "expected ',' or ')' in the arguments of %s(), found %s", fname,
                       found(p, p->pos, buf, sizeof buf));
    }
    if (nargs < least || nargs > most)
        return fail_at(p, start, "%s() takes %s, got %d", fname, want, nargs);
    double fp[MAX_CALL_ARGS] = {0};
    for (int i = 0; i < nparams; i++) {
        ad_node *a = arity + i < nargs ? args[arity + i] : NULL;
        if (!a) {
            ad_op_param_default(op, i, &fp[i]);
            continue;
        }
        if (ad_node_requires_grad(a)) {
            char pname[64];
            ad_op_param_name(op, i, pname, sizeof pname);
            return fail_at(p, argpos[arity + i], "the %s of %s() must be a constant", pname, fname);
        }
        fp[i] = ad_item(a);
    }
    return check(p, ad_op_apply(op, arity, args, fp, nparams, NULL, 0), start);
}

static bool same_name(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncmp(a, b, alen) == 0;
}

/* The node a name stands for: a statement's or a variable's, or NULL. */
static ad_node *lookup(parser *p, const char *name, size_t len)
{
    for (int i = 0; i < p->ndefs; i++)
        if (same_name(p->defs[i].name, p->defs[i].len, name, len))
            return p->defs[i].node;
    for (int i = 0; i < p->nvars; i++)
        if (same_name(p->vars[i].name, strlen(p->vars[i].name), name, len))
            return p->vars[i].node;
    return NULL;
}

/* Where a statement NAME = ... defines name after the current position (a
   1-based column, for the message), or 0. */
static size_t defined_later(const parser *p, const char *name, size_t len)
{
    for (size_t i = p->pos; p->text[i]; i++) {
        if (p->text[i] != ';')
            continue;
        size_t k = i + 1;
        while (isspace((unsigned char)p->text[k]))
            k++;
        size_t start = k;
        while (name_char(p->text[k]))
            k++;
        if (!same_name(p->text + start, k - start, name, len))
            continue;
        while (isspace((unsigned char)p->text[k]))
            k++;
        if (p->text[k] == '=')
            return start + 1;
    }
    return 0;
}

static ad_node *parse_primary(parser *p)
{
    char c = peek(p);
    size_t start = p->pos;
    char buf[64];
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)p->text[p->pos + 1])))
        return parse_number(p);
    if (name_start(c)) {
        const char *name = p->text + start;
        size_t len = 0;
        while (name_char(name[len]))
            len++;
        p->pos += len;
        if (peek(p) == '(')
            return parse_call(p, name, len, start);
        ad_node *known = lookup(p, name, len);
        if (known)
            return known;
        if (find_function(name, len) >= 0)
            return fail_at(p, start, "function '%.*s' needs arguments in parentheses", (int)len,
                           name);
        size_t later = defined_later(p, name, len);
        if (later)
            return fail_at(p, start, "'%.*s' is used before its definition at column %zu", (int)len,
                           name, later);
        return fail_at(p, start, "unknown variable '%.*s' (give it a value: %.*s=...)", (int)len,
                       name, (int)len, name);
    }
    if (c == '(') {
        p->pos++;
        ad_node *e = parse_expr(p);
        if (!e)
            return NULL;
        if (peek(p) != ')')
            return fail_at(p, p->pos, "expected ')' to close the '(' at column %d, found %s",
                           (int)start + 1, found(p, p->pos, buf, sizeof buf));
        p->pos++;
        return e;
    }
    if (!c || strchr("),;=+-*/^", c))
        return fail_at(p, start, "expected a number, a variable, a function or '(', found %s",
                       found(p, start, buf, sizeof buf));
    return fail_at(p, start, "unexpected character '%c'", c);
}

/* a ^ b: ad_pow for a constant exponent, else ad_power. */
static ad_node *make_power(parser *p, ad_node *base, ad_node *expo, size_t pos)
{
    if (!ad_node_requires_grad(expo))
        return check(p, ad_pow(base, ad_item(expo)), pos);
    return check(p, ad_power(base, expo), pos);
}

/* The power operator at the current position: '^' or '**' (its length), or 0. */
static int power_op(parser *p)
{
    char c = peek(p);
    if (c == '^')
        return 1;
    return c == '*' && p->text[p->pos + 1] == '*' ? 2 : 0;
}

static ad_node *parse_power(parser *p)
{
    ad_node *base = parse_primary(p);
    if (!base)
        return NULL;
    int op = power_op(p);
    if (!op)
        return base;
    size_t at = p->pos;
    p->pos += (size_t)op;
    ad_node *expo = parse_unary(p); /* right-associative: a^b^c = a^(b^c); 2^-1 allowed */
    if (!expo)
        return NULL;
    return make_power(p, base, expo, at);
}

static ad_node *parse_unary_nested(parser *p)
{
    char c = peek(p);
    if (c == '-' || c == '+') {
        size_t at = p->pos++;
        ad_node *a = parse_unary(p); /* parse_power inside: -x^2 = -(x^2) */
        if (!a || c == '+')
            return a;
        return check(p, ad_neg(a), at);
    }
    return parse_power(p);
}

static ad_node *parse_unary(parser *p)
{
    if (p->depth >= MAX_DEPTH) {
        skip_space(p);
        return fail_at(p, p->pos, "the expression nests too deeply (more than %d levels)",
                       MAX_DEPTH);
    }
    p->depth++;
    ad_node *n = parse_unary_nested(p);
    p->depth--;
    return n;
}

static ad_node *parse_term(parser *p)
{
    ad_node *left = parse_unary(p);
    while (left) {
        char c = peek(p);
        if (c != '*' && c != '/')
            break;
        size_t at = p->pos++;
        ad_node *right = parse_unary(p);
        if (!right)
            return NULL;
        left = check(p, c == '*' ? ad_mul(left, right) : ad_div(left, right), at);
    }
    return left;
}

static ad_node *parse_expr(parser *p)
{
    ad_node *left = parse_term(p);
    while (left) {
        char c = peek(p);
        if (c != '+' && c != '-')
            break;
        size_t at = p->pos++;
        ad_node *right = parse_term(p);
        if (!right)
            return NULL;
        left = check(p, c == '+' ? ad_add(left, right) : ad_sub(left, right), at);
    }
    return left;
}

/* At a statement NAME = ...? Then the name's extent (the position is not moved). */
static bool at_statement(parser *p, size_t *len)
{
    size_t i = p->pos;
    if (!name_start(p->text[i]))
        return false;
    while (name_char(p->text[i]))
        i++;
    *len = i - p->pos;
    while (isspace((unsigned char)p->text[i]))
        i++;
    return p->text[i] == '=';
}

/* NAME = EXPR: the value of EXPR, named. Checks the name first. */
static ad_node *parse_statement(parser *p, size_t len)
{
    const char *name = p->text + p->pos;
    size_t at = p->pos;
    for (int i = 0; i < p->ndefs; i++)
        if (same_name(p->defs[i].name, p->defs[i].len, name, len))
            return fail_at(p, at, "'%.*s' is already defined at column %zu", (int)len, name,
                           p->defs[i].pos + 1);
    for (int i = 0; i < p->nvars; i++)
        if (same_name(p->vars[i].name, strlen(p->vars[i].name), name, len))
            return fail_at(p, at,
                           "'%.*s' is a variable (given as %.*s=...): a statement needs "
                           "a new name",
                           (int)len, name, (int)len, name);
    if (find_function(name, len) >= 0)
        return fail_at(p, at, "'%.*s' is a function: a statement needs a new name", (int)len, name);
    p->pos += len;
    skip_space(p);
    p->pos++; /* '=' */
    if (peek(p) == '=')
        return fail_at(p, p->pos, "'==' is not an operator; a statement is NAME = EXPR;");
    size_t value_at = p->pos;
    ad_node *n = parse_expr(p);
    if (!n)
        return NULL;
    if (*ad_node_name(n) || ad_node_is_trainable(n))
        return fail_at(p, value_at,
                       "'%.*s = %s' only renames '%s': a statement names a value "
                       "it computes",
                       (int)len, name, ad_node_name(n), ad_node_name(n));
    if (p->ndefs == p->capdefs) {
        int cap = p->capdefs ? 2 * p->capdefs : 8;
        struct definition *d = realloc(p->defs, sizeof *d * (size_t)cap);
        if (!d)
            return fail_at(p, at, "out of memory");
        p->defs = d;
        p->capdefs = cap;
    }
    char buf[128];
    if (len >= sizeof buf)
        return fail_at(p, at, "the name '%.40s...' is longer than %zu bytes", name, sizeof buf - 1);
    memcpy(buf, name, len);
    buf[len] = '\0';
    if (ad_node_set_name(n, buf) != 0)
        return check(p, NULL, at);
    p->defs[p->ndefs++] = (struct definition){name, len, at, n};
    return n;
}

/* program := (NAME '=' expr ';')* (NAME '=' expr | expr) [';'] */
static ad_node *parse_program(parser *p)
{
    ad_node *last = NULL;
    for (;;) {
        skip_space(p);
        size_t len = 0;
        bool statement = at_statement(p, &len);
        size_t at = p->pos;
        ad_node *n = statement ? parse_statement(p, len) : parse_expr(p);
        if (!n)
            return NULL;
        last = n;
        char c = peek(p);
        if (c == ';') {
            p->pos++;
            if (peek(p) == ';')
                return fail_at(p, p->pos, "an empty statement (';' twice)");
            if (peek(p) == '\0')
                return last;
            if (!statement)
                return fail_at(p, at,
                               "only the last part may be an expression without a name "
                               "(write NAME = EXPR; before it)");
            continue;
        }
        if (c == '\0')
            return last;
        char buf[64];
        if (c == ')')
            return fail_at(p, p->pos, "unmatched ')'");
        if (c == '=')
            return fail_at(p, p->pos, "'=' after an expression: a statement is NAME = EXPR;");
        if (!isalnum((unsigned char)c) && !strchr("_.(,", c))
            return fail_at(p, p->pos, "unexpected character '%c'", c);
        return fail_at(p, p->pos, "expected an operator or the end of the expression, found %s",
                       found(p, p->pos, buf, sizeof buf));
    }
}

ad_node *cr_expr_parse(ad_graph *g, const char *text, const cr_var *vars, int nvars,
                       cr_expr_error *err)
{
    cr_expr_error dummy;
    if (!err)
        err = &dummy;
    err->column = 0;
    err->message[0] = '\0';
    if (!g || !text) {
        snprintf(err->message, sizeof err->message, "no graph or no expression");
        return NULL;
    }
    parser p = {.g = g, .text = text, .vars = vars, .nvars = nvars, .err = err};
    if (peek(&p) == '\0') {
        fail_at(&p, p.pos, "the expression is empty");
        return NULL;
    }
    ad_node *root = parse_program(&p);
    free(p.defs);
    return root;
}
