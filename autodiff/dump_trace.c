/* dump_trace.c -- chain-rule traces (ad_trace): the backward pass step by
 * step, as text or JSON, and the leaves' gradients with an optional
 * finite-difference check, from the model in dump.c (dump_impl.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chainrule/dump.h"
#include "dump_impl.h"
#include "graph_impl.h"

/* --------------------------------------------------------------- trace */

static void shape_text(const ad_node *n, char *buf, size_t size)
{
    if (n->ndim == 0)
        snprintf(buf, size, "scalar");
    else
        ad_shape_str(n, buf, size);
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void json_num(FILE *out, double v)
{
    if (isfinite(v))
        fprintf(out, "%.17g", v == 0 ? 0.0 : v);
    else
        fputs("null", out);
}

/* a number for one element, an array otherwise */
static void json_values(FILE *out, const double *v, int64_t n, bool scalar)
{
    if (scalar && n == 1) {
        json_num(out, v[0]);
        return;
    }
    fputc('[', out);
    for (int64_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", out);
        json_num(out, v[i]);
    }
    fputc(']', out);
}

static void json_node_values(const ctx *c, FILE *out, const ad_node *n)
{
    double *v = ad_dump_values_of(c, n);
    if (!v) {
        fputs("null", out);
        return;
    }
    json_values(out, v, n->numel, n->ndim == 0 || n->numel == 1);
    zfree(c->g, v, sizeof(double) * (size_t)n->numel);
}

static void trace_step_text(const ctx *c, FILE *out, const ad_node *v, bool *ok)
{
    char def[DEF_LEN], vals[TEXT_LEN], sh[96];
    const ad_node *gn = ad_dump_grad_of(c, v);
    ad_dump_fmt_node_values(c, vals, sizeof vals, v, v);
    shape_text(v, sh, sizeof sh);
    fprintf(out, "step %lld: ", (long long)c->step[v->id]);
    if (ad_ops[v->op].kind == AD_KIND_LEAF && (v->flags & NODE_TRAINABLE)) {
        fprintf(out, "%s = %s", sym(c, v), vals);
    } else if (ad_ops[v->op].kind == AD_KIND_LEAF) {
        fprintf(out, "%s (%s) = %s", sym(c, v), ad_dump_leaf_kind(v), vals);
    } else {
        ad_dump_definition(c, v, def, sizeof def);
        fprintf(out, "%s = %s = %s", sym(c, v), def, vals);
    }
    fprintf(out, "%s%s%s\n", v->ndim ? "  " : "", v->ndim ? sh : "", "");
    if (v == c->loss) {
        if (strcmp(sym(c, v), "L") == 0)
            fprintf(out, "  ∂L/∂L = 1 (seed)\n");
        else
            fprintf(out, "  ∂L/∂%s = 1 (seed: L = %s)\n", sym(c, v), sym(c, v));
        goto zero_edges;
    }
    int64_t nterms = 0;
    for (int64_t j = c->ustart[v->id]; j < c->ustart[v->id + 1]; j++) {
        const ad_node *u = c->g->nodes[c->uid[j]];
        int k = c->uk[j];
        if (ad_dump_edge_kind(c, u, k) != EDGE_FLOWS)
            continue;
        edge_info e;
        if (!ad_dump_edge_compute(c, u, k, &e)) {
            ad_dump_edge_free(c->g, u, v, &e);
            *ok = false;
            return;
        }
        const ad_node *gu = ad_dump_grad_of(c, u);
        char us[SYM_LEN + 2], vs[SYM_LEN + 2], loc[48], up[48], lf[48], con[TEXT_LEN];
        char which[32] = "";
        for (int j2 = 0; j2 < u->ninputs; j2++)
            if (j2 != k && u->inputs[j2] == v)
                snprintf(which, sizeof which, " (input %d)", k + 1);
        size_t ku = 0, kv = 0;
        us[0] = vs[0] = '\0';
        ad_dump_put_sym(c, us, sizeof us, &ku, u);
        ad_dump_put_sym(c, vs, sizeof vs, &kv, v);
        if (e.contrib)
            ad_dump_fmt_values(con, sizeof con, v, e.contrib, v->numel, c->prec);
        else
            snprintf(con, sizeof con, "(see the sum)");
        if (e.has_local && u->numel == 1 && v->numel == 1) {
            ad_dump_fmt_num(loc, sizeof loc, e.local[0], c->prec);
            ad_dump_fmt_factor(lf, sizeof lf, e.local[0], c->prec);
            ad_dump_fmt_factor(up, sizeof up, val(gu, 0), c->prec);
            fprintf(out, "  ∂%s/∂%s%s = %s", us, vs, which, e.rule);
            if (strcmp(loc, e.rule) != 0)
                fprintf(out, " = %s", loc);
            fprintf(out, "; ∂L/∂%s %s ∂L/∂%s · ∂%s/∂%s = %s · %s = %s", vs,
                    c->uses[v->id] > 1 ? "+=" : "=", us, us, vs, up, lf, con);
        } else {
            fprintf(out, "  ∂%s/∂%s%s: %s; ∂L/∂%s %s %s", us, vs, which, e.rule, vs,
                    c->uses[v->id] > 1 ? "+=" : "=", con);
        }
        if (e.undefined)
            fprintf(out, "  [⚠ %s]", e.undef_note);
        if (e.axes[0])
            fprintf(out, "  [broadcast: summed over axes %s]", e.axes);
        fputc('\n', out);
        nterms++;
        ad_dump_edge_free(c->g, u, v, &e);
    }
    if (nterms > 1) {
        ad_dump_fmt_node_values(c, vals, sizeof vals, gn, v);
        char terms[TEXT_LEN];
        ad_dump_fanout_sum(c, v, terms, sizeof terms);
        fprintf(out, "  fan-out: ∂L/∂%s = %s = %s\n", sym(c, v), v->numel == 1 ? terms : "Σ", vals);
    }
zero_edges:
    for (int k = 0; k < v->ninputs; k++)
        if (ad_dump_edge_kind(c, v, k) == EDGE_ZERO) {
            edge_info e;
            if (!ad_dump_edge_compute(c, v, k, &e)) {
                ad_dump_edge_free(c->g, v, v->inputs[k], &e);
                *ok = false;
                return;
            }
            fprintf(out, "  ∂%s/∂%s = 0%s%s: the gradient stops here, nothing reaches %s\n",
                    sym(c, v), sym(c, v->inputs[k]), e.undefined ? " and " : "",
                    e.undefined ? e.undef_note : "", sym(c, v->inputs[k]));
            ad_dump_edge_free(c->g, v, v->inputs[k], &e);
        }
}

static void trace_step_json(const ctx *c, FILE *out, const ad_node *v, bool *ok)
{
    char def[DEF_LEN];
    fprintf(out, "    {\"step\": %lld, \"id\": %lld, \"node\": ", (long long)c->step[v->id],
            (long long)v->id);
    json_str(out, sym(c, v));
    fprintf(out, ", \"op\": ");
    json_str(out, ad_ops[v->op].name);
    if (ad_ops[v->op].kind != AD_KIND_LEAF) {
        ad_dump_definition(c, v, def, sizeof def);
        fprintf(out, ", \"definition\": ");
        json_str(out, def);
    }
    fprintf(out, ", \"shape\": [");
    for (int d = 0; d < v->ndim; d++)
        fprintf(out, d ? ", %lld" : "%lld", (long long)v->shape[d]);
    fprintf(out, "], \"value\": ");
    json_node_values(c, out, v);
    fprintf(out, ", \"grad\": ");
    json_node_values(c, out, ad_dump_grad_of(c, v));
    fprintf(out, ", \"terms\": [");
    int nt = 0;
    for (int64_t j = c->ustart[v->id]; j < c->ustart[v->id + 1]; j++) {
        const ad_node *u = c->g->nodes[c->uid[j]];
        int k = c->uk[j];
        if (v == c->loss || ad_dump_edge_kind(c, u, k) != EDGE_FLOWS)
            continue;
        edge_info e;
        if (!ad_dump_edge_compute(c, u, k, &e)) {
            ad_dump_edge_free(c->g, u, v, &e);
            *ok = false;
            return;
        }
        fprintf(out, "%s{\"user\": ", nt++ ? ", " : "");
        json_str(out, sym(c, u));
        fprintf(out, ", \"user_id\": %lld, \"input\": %d, \"rule\": ", (long long)u->id, k);
        json_str(out, e.rule);
        bool scalar = u->numel == 1 && v->numel == 1;
        if (e.has_local) {
            fprintf(out, ", \"local\": ");
            json_values(out, e.local, u->numel, scalar);
        }
        fprintf(out, ", \"upstream\": ");
        json_node_values(c, out, ad_dump_grad_of(c, u));
        fprintf(out, ", \"contribution\": ");
        if (e.contrib)
            json_values(out, e.contrib, v->numel, v->numel == 1);
        else
            fputs("null", out);
        if (e.undefined) {
            fprintf(out, ", \"undefined\": ");
            json_str(out, e.undef_note);
        }
        if (e.axes[0]) {
            fprintf(out, ", \"summed_axes\": ");
            json_str(out, e.axes);
        }
        fputc('}', out);
        ad_dump_edge_free(c->g, u, v, &e);
    }
    fprintf(out, "]}");
}

int ad_trace(ad_node *loss, FILE *out, unsigned flags)
{
    if (!loss)
        return -1;
    ad_graph *g = loss->g;
    if (!out) {
        ad_fail(g, "ad_trace: no output file");
        return -1;
    }
    if (loss->numel != 1 || (loss->flags & NODE_TAPE)) {
        ad_fail(g, "ad_trace: '%s' is not a loss (one element, not a backward node)",
                loss->rare->name);
        return -1;
    }
    ctx c;
    bool json = flags & AD_TRACE_JSON;
    if (!ad_dump_ctx_init(&c, g, loss, loss, json ? 17 : 6))
        return -1;
    if (!ad_dump_grad_of(&c, loss)) {
        ad_dump_ctx_free_all(&c);
        ad_fail(g, "ad_trace: no backward pass through '%s': call ad_backward first",
                loss->rare->name);
        return -1;
    }
    bool ok = true;
    if (json) {
        fprintf(out, "{\"loss\": ");
        json_str(out, sym(&c, loss));
        fprintf(out, ", \"value\": ");
        json_num(out, val(loss, 0));
        fprintf(out, ", \"steps\": [\n");
    } else {
        if (strcmp(sym(&c, loss), "L") == 0)
            fprintf(out, "chain-rule trace of L = ");
        else
            fprintf(out, "chain-rule trace of L = %s = ", sym(&c, loss));
        char v[40];
        ad_dump_fmt_num(v, sizeof v, val(loss, 0), c.prec);
        fprintf(out, "%s: %lld backward step%s, in the order the engine visits the nodes\n", v,
                (long long)c.nsteps, c.nsteps == 1 ? "" : "s");
    }
    int64_t nsteps = 0;
    for (int64_t i = loss->id; i >= 0 && ok; i--) {
        ad_node *v = g->nodes[i];
        if (!c.step[i])
            continue;
        if (json) {
            if (nsteps)
                fprintf(out, ",\n");
            trace_step_json(&c, out, v, &ok);
        } else {
            trace_step_text(&c, out, v, &ok);
        }
        nsteps++;
    }
    /* every trainable leaf the loss depends on */
    if (json)
        fprintf(out, "\n  ],\n  \"leaves\": [");
    else
        fprintf(out, "gradients of the leaves:\n");
    int nl = 0;
    for (int64_t i = 0; i <= loss->id && ok; i++) {
        ad_node *v = g->nodes[i];
        if (!(v->flags & NODE_TRAINABLE) || !c.anc[i])
            continue;
        ad_node *gn = ad_dump_grad_of(&c, v);
        double *grad = zalloc(g, sizeof(double) * (size_t)v->numel);
        double *fd = zalloc(g, sizeof(double) * (size_t)v->numel);
        if (!grad || !fd) {
            zfree(g, grad, sizeof(double) * (size_t)v->numel);
            zfree(g, fd, sizeof(double) * (size_t)v->numel);
            ok = false;
            break;
        }
        for (int64_t j = 0; j < v->numel; j++)
            grad[j] = gn ? val(gn, j) : 0;
        int64_t nfd = (flags & AD_TRACE_CHECK) ? (v->numel < 64 ? v->numel : 64) : 0;
        double maxdiff = 0;
        /* the gradient check's verdict on the element furthest off: a kink
           or a jump there (ad_smoothness_at, the registry's rule) or a
           mismatch where the function is smooth */
        int64_t off = -1, worst_kind = AD_SMOOTH;
        const ad_node *where = NULL;
        for (int64_t j = 0; j < nfd; j++) {
            fd[j] = ad_finite_difference(loss, v, j, 0);
            double d = fabs(fd[j] - grad[j]);
            maxdiff = d > maxdiff || isnan(d) ? d : maxdiff;
            if (!ad_gradcheck_agree(g, grad[j], fd[j])) {
                const ad_node *w = NULL;
                int kind = ad_smoothness_at(loss, v, j, 0, &w);
                if (off < 0 || (kind == AD_SMOOTH && worst_kind != AD_SMOOTH)) {
                    off = j;
                    worst_kind = kind;
                    where = w;
                }
            }
        }
        char verdict[TEXT_LEN] = "";
        if (off >= 0 && worst_kind == AD_SMOOTH)
            snprintf(verdict, sizeof verdict, "MISMATCH");
        else if (off >= 0 && where)
            snprintf(verdict, sizeof verdict, "%s of %s at %s, expected there",
                     worst_kind == AD_KINK ? "kink" : "discontinuity", ad_ops[where->op].name,
                     sym(&c, g->nodes[c.alias[where->id]]));
        if (json) {
            fprintf(out, "%s\n    {\"name\": ", nl ? "," : "");
            json_str(out, sym(&c, v));
            fprintf(out, ", \"value\": ");
            json_node_values(&c, out, v);
            fprintf(out, ", \"grad\": ");
            json_values(out, grad, v->numel, v->numel == 1);
            if (nfd) {
                fprintf(out, ", \"finite_difference\": ");
                json_values(out, fd, nfd, v->numel == 1);
                fprintf(out, ", \"max_abs_diff\": ");
                json_num(out, maxdiff);
                fprintf(out, ", \"check\": \"%s\"",
                        off < 0                   ? "pass"
                        : worst_kind == AD_SMOOTH ? "mismatch"
                        : worst_kind == AD_KINK   ? "kink"
                                                  : "discontinuity");
            }
            fputc('}', out);
        } else {
            char gs[TEXT_LEN], fs[TEXT_LEN], ds[40];
            ad_dump_fmt_values(gs, sizeof gs, v, grad, v->numel, c.prec);
            fprintf(out, "  ∂L/∂%s = %s%s", sym(&c, v), gs, gn ? "" : " (no gradient reaches it)");
            if (nfd) {
                ad_dump_fmt_values(fs, sizeof fs, v, fd, nfd, c.prec);
                ad_dump_fmt_num(ds, sizeof ds, maxdiff, 2);
                fprintf(out, "   finite difference %s%s (|diff| %s)%s%s", fs,
                        nfd < v->numel ? " (first 64)" : "", ds, *verdict ? ": " : "", verdict);
            }
            fputc('\n', out);
        }
        nl++;
        zfree(g, grad, sizeof(double) * (size_t)v->numel);
        zfree(g, fd, sizeof(double) * (size_t)v->numel);
    }
    if (json)
        fprintf(out, "\n  ]\n}\n");
    ad_dump_ctx_free_all(&c);
    if (!ok) {
        ad_fail(g, "ad_trace: out of memory");
        return -1;
    }
    if (fflush(out) != 0 || ferror(out)) {
        ad_fail(g, "ad_trace: write error");
        return -1;
    }
    return g->has_error ? -1 : 0;
}
