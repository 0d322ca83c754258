/* registry.c -- the op table, generated from ops.def, and the generic driver. */
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"

const ad_op_info ad_ops[] = {
#define AD_OP(id, nm, ar, kd, sh, fw, bw, ck, pa, cl, fo, de, dm, nd)                              \
    [AD_OP_##id] = {.name = nm,                                                                    \
                    .arity = ar,                                                                   \
                    .kind = kd,                                                                    \
                    .shape = sh,                                                                   \
                    .forward = fw,                                                                 \
                    .backward = bw,                                                                \
                    .check = ck,                                                                   \
                    .params = pa,                                                                  \
                    .call = cl,                                                                    \
                    .form = fo,                                                                    \
                    .derivative = de,                                                              \
                    .domain = dm,                                                                  \
                    .nondiff = nd},
#include "ops.def"
#undef AD_OP
};

int ad_op_count(void) { return AD_OP_COUNT_; }

static bool valid(int op) { return op >= 0 && op < AD_OP_COUNT_; }

const char *ad_op_name(int op) { return valid(op) ? ad_ops[op].name : NULL; }
int ad_op_arity(int op) { return valid(op) ? ad_ops[op].arity : 0; }
ad_op_kind ad_op_kind_of(int op) { return valid(op) ? ad_ops[op].kind : AD_KIND_INTERNAL; }
const char *ad_op_rule(int op) { return valid(op) ? ad_ops[op].derivative : NULL; }
const char *ad_op_domain(int op) { return valid(op) ? ad_ops[op].domain : NULL; }
int ad_op_differentiable(int op) { return valid(op) && ad_ops[op].backward != ad_nograd; }

ad_smoothness ad_smooth(const double *a, const double *b, const double *fparam)
{
    (void)a, (void)b, (void)fparam;
    return AD_SMOOTH;
}

ad_smoothness ad_op_smoothness(int op, const double *a, const double *b, const double *fparams)
{
    if (!valid(op) || !a)
        return AD_SMOOTH;
    const double none[AD_MAX_FPARAMS] = {0};
    return ad_ops[op].nondiff(a, b ? b : a, fparams ? fparams : none);
}

const char *ad_op_form(int op) { return valid(op) ? ad_ops[op].form : NULL; }
const char *ad_op_call_name(int op) { return valid(op) ? ad_ops[op].call : NULL; }
const char *ad_op_params(int op) { return valid(op) ? ad_ops[op].params : NULL; }

/* The i-th entry of the op's params column ("c, d = 0"): its text in
 * [*begin, *end), or false when there is none. */
static bool param_entry(int op, int i, const char **begin, const char **end)
{
    if (!valid(op) || i < 0)
        return false;
    const char *s = ad_ops[op].params;
    for (; i > 0 && s; i--) {
        s = strchr(s, ',');
        s = s ? s + 1 : NULL;
    }
    if (!s)
        return false;
    while (*s == ' ')
        s++;
    if (!*s)
        return false;
    const char *e = strchr(s, ',');
    *begin = s;
    *end = e ? e : s + strlen(s);
    return true;
}

int ad_op_param_count(int op)
{
    const char *b, *e;
    int n = 0;
    while (param_entry(op, n, &b, &e))
        n++;
    return n;
}

int ad_op_param_name(int op, int i, char *buf, size_t size)
{
    const char *b, *e;
    if (!buf || size == 0 || !param_entry(op, i, &b, &e))
        return -1;
    const char *eq = memchr(b, '=', (size_t)(e - b));
    if (eq)
        e = eq;
    while (e > b && e[-1] == ' ')
        e--;
    size_t len = (size_t)(e - b) < size - 1 ? (size_t)(e - b) : size - 1;
    memcpy(buf, b, len);
    buf[len] = '\0';
    return 0;
}

int ad_op_param_default(int op, int i, double *value)
{
    const char *b, *e;
    if (!param_entry(op, i, &b, &e))
        return 0;
    const char *eq = memchr(b, '=', (size_t)(e - b));
    if (!eq)
        return 0;
    if (value)
        *value = strtod(eq + 1, NULL);
    return 1;
}

int ad_op_find_call(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < AD_OP_COUNT_; i++)
        if (ad_ops[i].call && strcmp(ad_ops[i].call, name) == 0)
            return i;
    return -1;
}

int ad_op_find(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < AD_OP_COUNT_; i++)
        if (strcmp(ad_ops[i].name, name) == 0)
            return i;
    return -1;
}

ad_node *ad_op_apply(int op, int ninputs, ad_node *const *inputs, const double *fparams, int nf,
                     const int64_t *iparams, int ni)
{
    if (ninputs < 1 || !inputs)
        return NULL;
    for (int i = 0; i < ninputs; i++)
        if (!inputs[i])
            return NULL;
    ad_graph *g = inputs[0]->g;
    if (!valid(op)) {
        ad_fail(g, "ad_op_apply: op %d is not in the registry (%d ops)", op, AD_OP_COUNT_);
        return NULL;
    }
    const ad_op_info *info = &ad_ops[op];
    if (info->kind == AD_KIND_LEAF) {
        ad_fail(g, "ad_op_apply: %s is a leaf; create it with ad_%s", info->name, info->name);
        return NULL;
    }
    if (info->arity >= 0 && ninputs != info->arity) {
        ad_fail(g, "ad_op_apply: %s takes %d inputs, got %d", info->name, info->arity, ninputs);
        return NULL;
    }
    for (int i = 1; i < ninputs; i++)
        if (inputs[i]->g != g) {
            ad_fail(g, "ad_%s: operands belong to different graphs", info->name);
            return NULL;
        }
    if (nf < 0 || nf > AD_MAX_FPARAMS || ni < 0 || ni > AD_MAX_IPARAMS || (nf && !fparams) ||
        (ni && !iparams)) {
        ad_fail(g, "ad_op_apply: %s: bad parameter counts (%d, %d)", info->name, nf, ni);
        return NULL;
    }
    double fp[AD_MAX_FPARAMS] = {0};
    int64_t ip[AD_MAX_IPARAMS] = {0};
    for (int i = 0; i < nf; i++)
        fp[i] = fparams[i];
    for (int i = 0; i < ni; i++)
        ip[i] = iparams[i];
    /* elementwise ops take no integer parameters: given none, they need no
       storage for them (a gradient's add_n over a scalar's many uses) */
    bool no_ip = ni == 0 && ad_op_elementwise(info);
    return ad_node_make(g, op, ninputs, inputs, fp, no_ip ? NULL : ip);
}
