/* registry.c -- the op table, generated from ops.def, and the generic driver. */
#include <string.h>

#include "graph_impl.h"

const ad_op_info ad_ops[] = {
#define AD_OP(id, nm, ar, kd, sh, fw, bw, ck, pa, cl, fo, de)                                      \
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
                    .derivative = de},
#include "ops.def"
#undef AD_OP
};

int ad_op_count(void) { return AD_OP_COUNT_; }

static bool valid(int op) { return op >= 0 && op < AD_OP_COUNT_; }

const char *ad_op_name(int op) { return valid(op) ? ad_ops[op].name : NULL; }
int ad_op_arity(int op) { return valid(op) ? ad_ops[op].arity : 0; }
ad_op_kind ad_op_kind_of(int op) { return valid(op) ? ad_ops[op].kind : AD_KIND_INTERNAL; }
const char *ad_op_rule(int op) { return valid(op) ? ad_ops[op].derivative : NULL; }
int ad_op_differentiable(int op) { return valid(op) && ad_ops[op].backward != ad_nograd; }

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
    return ad_node_make(g, op, ninputs, inputs, fp, ip);
}
