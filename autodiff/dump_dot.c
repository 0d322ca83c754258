/* dump_dot.c -- Graphviz pictures of a graph (ad_dump_dot, ad_dump_dot_opts):
 * the DOT text, its HTML-like node tables, edge labels, clusters and
 * legend, from the model in dump.c (dump_impl.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chainrule/dump.h"
#include "dump_impl.h"
#include "graph_impl.h"

/* the edge and node styles a legend explains */
enum {
    LEGEND_ZERO = 1u << 0,
    LEGEND_UNDEFINED = 1u << 1,
    LEGEND_NONE = 1u << 2,
    LEGEND_NONFINITE = 1u << 3,
    LEGEND_ONE = 1u << 4,
};
#define COLOR_NONFINITE "#7b3294"
#define FILL_NONFINITE "#d7b5e8"

/* DOT double-quoted strings */
static void dot_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if (*s == '\n') {
            fputs("\\n", out);
            continue;
        }
        fputc(*s, out);
    }
    fputc('"', out);
}

/* HTML-like label text */
static void html_str(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

/* ----------------------------------------------------------------- DOT */

/* A value or gradient element that is NaN or infinite: the maths is not
 * defined there (log of a negative number, 1/0). */
static bool nonfinite(const ctx *c, const ad_node *v)
{
    for (int64_t i = 0; i < v->numel; i++)
        if (!isfinite(val(v, i)))
            return true;
    const ad_node *gn = ad_dump_grad_of(c, v);
    for (int64_t i = 0; gn && i < gn->numel; i++)
        if (!isfinite(val(gn, i)))
            return true;
    return false;
}

static const char *header_color(const ctx *c, const ad_node *v)
{
    if (nonfinite(c, v))
        return FILL_NONFINITE;
    if (c->loss && v == c->loss)
        return "#d5e8d4";
    if (v->flags & NODE_TRAINABLE)
        return "#fff2cc";
    if (v->flags & (NODE_INPUT | NODE_CONST))
        return "#eeeeee";
    if ((v->flags & NODE_TAPE) || v->order > 0)
        return "#f8cecc";
    return "#dae8fc";
}

static void row(FILE *out, const char *bg, const char *text, bool bold)
{
    fprintf(out, "<TR><TD ALIGN=\"LEFT\"%s%s%s>%s", bg ? " BGCOLOR=\"" : "", bg ? bg : "",
            bg ? "\"" : "", bold ? "<B>" : "");
    html_str(out, text);
    fprintf(out, "%s</TD></TR>", bold ? "</B>" : "");
}

/* With DUMP_ELEMENT_IDS: the id the SVG keeps, "n<id>" for node u (k < 0),
 * "n<id>_in<k>" for the edge from its input k. */
static void dot_id(FILE *out, unsigned flags, const ad_node *u, int k)
{
    if (!(flags & DUMP_ELEMENT_IDS))
        return;
    if (k < 0)
        fprintf(out, "id=\"n%lld\", ", (long long)u->id);
    else
        fprintf(out, "id=\"n%lld_in%d\", ", (long long)u->id, k);
}

static void node_header(const ctx *c, FILE *out, const ad_node *v, unsigned flags)
{
    char text[3 * TEXT_LEN], def[DEF_LEN];
    fprintf(out, "  n%lld [", (long long)v->id);
    dot_id(out, flags, v, -1);
    fprintf(out, "label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" "
                 "CELLPADDING=\"3\" BGCOLOR=\"white\">");
    if (ad_ops[v->op].kind == AD_KIND_LEAF) {
        if (v->flags & NODE_TRAINABLE)
            snprintf(text, sizeof text, "%s", sym(c, v));
        else
            snprintf(text, sizeof text, "%s  (%s)", sym(c, v), ad_dump_leaf_kind(v));
    } else {
        ad_dump_definition(c, v, def, sizeof def);
        snprintf(text, sizeof text, "%s = %s", sym(c, v), def);
    }
    row(out, header_color(c, v), text, true);
    /* shapes for tensors only: a scalar's op is its definition */
    if (v->ndim > 0) {
        char sh[96];
        ad_shape_str(v, sh, sizeof sh);
        if (ad_ops[v->op].kind == AD_KIND_LEAF)
            snprintf(text, sizeof text, "%s", sh);
        else
            snprintf(text, sizeof text, "%s · %s", ad_ops[v->op].name, sh);
        row(out, NULL, text, false);
    }
}

/* The row that says why a node is purple. */
static void nonfinite_row(ctx *c, FILE *out, const ad_node *v)
{
    if (!nonfinite(c, v))
        return;
    char text[TEXT_LEN];
    const char *domain = ad_ops[v->op].domain;
    bool own = true; /* the value is bad while the inputs are fine: this op is where */
    for (int k = 0; k < v->ninputs; k++)
        for (int64_t i = 0; i < v->inputs[k]->numel && own; i++)
            own = isfinite(val(v->inputs[k], i));
    if (own && domain)
        snprintf(text, sizeof text, "⚠ not finite: %s is defined for %s", ad_ops[v->op].name,
                 domain);
    else
        snprintf(text, sizeof text, "⚠ not finite (NaN or ±inf)");
    row(out, FILL_NONFINITE, text, false);
    c->legend |= LEGEND_NONFINITE;
}

static void dot_forward_node(ctx *c, FILE *out, const ad_node *v, unsigned flags)
{
    char text[3 * TEXT_LEN], vals[TEXT_LEN];
    bool compact = flags & AD_DUMP_COMPACT;
    node_header(c, out, v, flags);
    ad_node *gn = (flags & AD_DUMP_GRADS) && c->grads ? ad_dump_grad_of(c, v) : NULL;
    if (flags & AD_DUMP_VALUES) {
        ad_dump_fmt_node_values(c, vals, sizeof vals, v, v);
        snprintf(text, sizeof text, "value %s", vals);
        if (!(compact && gn))
            row(out, NULL, text, false);
    }
    if (gn) {
        char sum[TEXT_LEN], g[TEXT_LEN];
        ad_dump_fmt_node_values(c, g, sizeof g, gn, v);
        size_t k = 0;
        text[0] = '\0';
        if (compact && (flags & AD_DUMP_VALUES)) {
            put(text, sizeof text, &k, "value ");
            put(text, sizeof text, &k, vals);
            put(text, sizeof text, &k, " · ");
        }
        put(text, sizeof text, &k, "grad ");
        put(text, sizeof text, &k, g);
        if (ad_dump_fanout_sum(c, v, sum, sizeof sum)) {
            put(text, sizeof text, &k, " = ");
            put(text, sizeof text, &k, sum);
        }
        bool zero = true;
        for (int64_t i = 0; i < gn->numel && zero; i++)
            zero = val(gn, i) == 0;
        row(out, zero ? "#f4cccc" : "#e1f0da", text, false);
        snprintf(text, sizeof text, compact ? "step %lld" : "backward step %lld",
                 (long long)c->step[v->id]);
        row(out, "#fde9b8", text, true);
    } else if ((flags & AD_DUMP_GRADS) && c->grads && c->anc[v->id] &&
               (v->flags & (NODE_REQGRAD | NODE_TRAINABLE))) {
        row(out, "#f4cccc", "grad 0: no gradient reaches it", false);
    }
    nonfinite_row(c, out, v);
    fprintf(out, "</TABLE>>];\n");
}

/* Every element of the edge's local derivative is exactly 0. */
static bool all_zero(const edge_info *e, int64_t n)
{
    if (!e->has_local)
        return false;
    for (int64_t i = 0; i < n; i++)
        if (e->local[i] != 0)
            return false;
    return true;
}

static void dot_edge(ctx *c, FILE *out, const ad_node *u, int k, unsigned flags)
{
    const ad_node *in = u->inputs[k];
    char label[4 * TEXT_LEN], line[2 * TEXT_LEN], vals[TEXT_LEN];
    size_t pos = 0;
    label[0] = '\0';
    bool repeated = false, compact = flags & AD_DUMP_COMPACT;
    for (int j = 0; j < u->ninputs; j++)
        repeated = repeated || (j != k && u->inputs[j] == in);
    const char *style = "";
    edge_info e;
    memset(&e, 0, sizeof e);
    /* the edges inside a drawn (not differentiated) gradient graph carry no
       derivative text: only the forward graph's edges or a graph the loss
       is differentiated through */
    bool derivs = (flags & AD_DUMP_GRADS) && ad_ops[u->op].kind != AD_KIND_LEAF &&
                  (u->order == 0 || c->grads);
    if (derivs) {
        if (!ad_dump_edge_compute(c, u, k, &e)) {
            ad_dump_edge_free(c->g, u, in, &e);
            return;
        }
        if (repeated) {
            snprintf(line, sizeof line, "input %d: ", k + 1);
            put(label, sizeof label, &pos, line);
        }
        bool differentiable = e.has_local || ad_ops[u->op].backward != ad_nograd;
        char head[2 * SYM_LEN + 16];
        {
            char a[SYM_LEN + 2], b[SYM_LEN + 2];
            size_t ka = 0, kb = 0;
            a[0] = b[0] = '\0';
            ad_dump_put_sym(c, a, sizeof a, &ka, u);
            ad_dump_put_sym(c, b, sizeof b, &kb, in);
            snprintf(head, sizeof head, "∂%s/∂%s", a, b);
        }
        if (!differentiable)
            snprintf(line, sizeof line, "%s", e.rule);
        else if (e.has_local && u->numel == 1) {
            ad_dump_fmt_num(vals, sizeof vals, e.local[0], c->prec);
            if (strcmp(vals, e.rule) == 0)
                snprintf(line, sizeof line, "%s = %s", head, e.rule);
            else
                snprintf(line, sizeof line, "%s = %s = %s", head, e.rule, vals);
        } else if (e.has_local) {
            snprintf(line, sizeof line, "%s = %s", head, e.rule);
        } else {
            snprintf(line, sizeof line, "%s", e.rule);
        }
        put(label, sizeof label, &pos, line);
        if (e.undefined) {
            if (u->numel == 1)
                snprintf(line, sizeof line, "\n⚠ %s", e.undef_note);
            else
                snprintf(line, sizeof line, "\n⚠ %lld element(s): %s", (long long)e.undefined,
                         e.undef_note);
            put(label, sizeof label, &pos, line);
        }
        if (e.axes[0] && e.kind != EDGE_NONE) {
            snprintf(line, sizeof line, "\nbroadcast: gradient summed over axes %s", e.axes);
            put(label, sizeof label, &pos, line);
        }
        ad_node *gn = ad_dump_grad_of(c, u);
        const char *word = compact ? "\n" : "\ncontribution ";
        if (e.kind != EDGE_NONE && e.contrib) {
            ad_dump_fmt_values(vals, sizeof vals, in, e.contrib, in->numel, c->prec);
            if (u->numel == 1 && in->numel == 1 && e.has_local && gn) {
                char up[48], lo[48];
                ad_dump_fmt_factor(up, sizeof up, val(gn, 0), c->prec);
                ad_dump_fmt_factor(lo, sizeof lo, e.local[0], c->prec);
                snprintf(line, sizeof line, "%s%s × %s = %s", word, up, lo, vals);
            } else {
                snprintf(line, sizeof line, "%s%s", word, vals);
            }
            put(label, sizeof label, &pos, line);
        } else if (e.kind == EDGE_FLOWS) {
            put(label, sizeof label, &pos, "\ncontribution: part of the fan-out sum");
        } else if (c->grads && !(in->flags & NODE_REQGRAD) && ad_ops[in->op].kind == AD_KIND_LEAF) {
            put(label, sizeof label, &pos, "\n(no gradient: constant)");
        }
        /* the legend's order: undefined point, no gradient at all, exactly 0 */
        if (e.undefined) {
            style = ", color=\"#e69138\", fontcolor=\"#b45f06\", penwidth=2";
            c->legend |= LEGEND_UNDEFINED;
        } else if (e.kind == EDGE_ZERO || (e.kind != EDGE_NONE && all_zero(&e, u->numel))) {
            style = ", color=\"#cc0000\", fontcolor=\"#cc0000\", style=dashed";
            c->legend |= LEGEND_ZERO;
        } else if (e.kind == EDGE_NONE && c->grads) {
            style = ", color=\"#999999\", fontcolor=\"#666666\", style=dashed";
            c->legend |= LEGEND_NONE;
        }
        /* slides: the edges that only hand a gradient on, and those that
           carry none, are told by their style (and the legend) */
        bool one = e.kind == EDGE_FLOWS && e.has_local && !e.undefined && !e.axes[0] &&
                   strcmp(e.rule, "1") == 0;
        for (int64_t i = 0; one && i < u->numel; i++)
            one = e.local[i] == 1;
        if (compact && (one || (e.kind == EDGE_NONE && c->grads))) {
            pos = 0;
            label[0] = '\0';
            c->legend |= one ? LEGEND_ONE : 0;
        }
        ad_dump_edge_free(c->g, u, in, &e);
    } else if (repeated) {
        snprintf(line, sizeof line, "input %d", k + 1);
        put(label, sizeof label, &pos, line);
    }
    if (nonfinite(c, u) || nonfinite(c, in)) {
        style = ", color=\"" COLOR_NONFINITE "\", fontcolor=\"" COLOR_NONFINITE "\", penwidth=2";
        c->legend |= LEGEND_NONFINITE;
    }
    fprintf(out, "  n%lld -> n%lld [", (long long)c->alias[in->id], (long long)u->id);
    dot_id(out, flags, u, k);
    if (label[0]) {
        /* a line from the label to its edge: no label can be read as
           another edge's */
        fprintf(out, "decorate=true, label=");
        dot_str(out, label);
    } else {
        fprintf(out, "label=\"\"");
    }
    fprintf(out, "%s];\n", style);
}

static void dot_backward_node(ctx *c, FILE *out, const ad_node *v, unsigned flags)
{
    char text[3 * TEXT_LEN], vals[TEXT_LEN];
    node_header(c, out, v, flags);
    if (flags & AD_DUMP_VALUES) {
        ad_dump_fmt_node_values(c, vals, sizeof vals, v, v);
        snprintf(text, sizeof text, "value %s", vals);
        row(out, NULL, text, false);
    }
    nonfinite_row(c, out, v);
    fprintf(out, "</TABLE>>];\n");
}

/* The legend: one line per style the picture used. */
static void dot_legend(const ctx *c, FILE *out, bool bottom)
{
    static const struct {
        unsigned bit;
        const char *color, *text;
    } items[] = {
        {LEGEND_ZERO, "#cc0000", "red dashed edge: the local derivative is exactly 0"},
        {LEGEND_UNDEFINED, "#b45f06",
         "orange edge ⚠: the derivative is not defined here (the engine's value is shown)"},
        {LEGEND_NONE, "#666666", "grey dashed edge: no gradient flows (constant, data)"},
        {LEGEND_ONE, "#000000",
         "black edge without text: the local derivative is 1 (a sum hands its gradient on)"},
        {LEGEND_NONFINITE, COLOR_NONFINITE,
         "purple: a value or gradient that is not finite (NaN, ±inf): undefined maths"},
    };
    if (!c->legend)
        return;
    fprintf(out, "  legend [shape=plaintext, label=<<TABLE BORDER=\"0\" CELLBORDER=\"0\" "
                 "CELLSPACING=\"1\"><TR><TD ALIGN=\"LEFT\"><B>legend</B></TD></TR>");
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        if (c->legend & items[i].bit) {
            fprintf(out, "<TR><TD ALIGN=\"LEFT\"><FONT COLOR=\"%s\">", items[i].color);
            html_str(out, items[i].text);
            fprintf(out, "</FONT></TD></TR>");
        }
    fprintf(out, "</TABLE>>];\n");
    if (bottom) /* beside the loss, where a top-down picture has room */
        fprintf(out, "  { rank=sink; legend; }\n");
}

/* The cluster label of order k: "first derivative: ∂y/∂x" */
static void cluster_label(const ctx *c, const unsigned char *draw, int k, char *buf, size_t size)
{
    static const char *const ordinal[] = {"",      "first", "second",  "third",  "fourth",
                                          "fifth", "sixth", "seventh", "eighth", "ninth"};
    size_t pos = 0;
    buf[0] = '\0';
    if (k == 0) {
        put(buf, size, &pos, "forward graph");
        return;
    }
    bool backward = false;
    for (int64_t i = 0; i < c->n; i++)
        backward = backward ||
                   (draw[i] && c->g->nodes[i]->order == k && (c->g->nodes[i]->flags & NODE_TAPE));
    if (backward) {
        put(buf, size, &pos, "backward graph (built by ad_backward)");
        return;
    }
    char head[48];
    if (k < 10)
        snprintf(head, sizeof head, "%s derivative", ordinal[k]);
    else
        snprintf(head, sizeof head, "derivative of order %d", k);
    put(buf, size, &pos, head);
    int named = 0;
    for (int64_t i = 0; i < c->n && named < 4; i++) {
        const ad_node *v = c->g->nodes[i];
        int64_t at = c->alias[i];
        if (!v->rare->deriv_of[0] || !draw[at] || c->g->nodes[at]->order != k || c->fold[at])
            continue;
        bool again = false; /* aliases share a symbol */
        for (int64_t j = 0; j < i && !again; j++)
            again = c->g->nodes[j]->rare->deriv_of[0] && c->alias[j] == at;
        if (again)
            continue;
        put(buf, size, &pos, named++ ? ", " : ": ");
        put(buf, size, &pos, named > 3 ? "..." : sym(c, v));
    }
}

static bool valid_opt(double v) { return isfinite(v) && v >= 0 && v <= 10000; }

int ad_dump_dot(ad_graph *g, ad_node *output, FILE *out, unsigned flags)
{
    ad_dump_opts o = {flags, 0, 0};
    return ad_dump_dot_opts(g, output, out, &o);
}

int ad_dump_dot_opts(ad_graph *g, ad_node *output, FILE *out, const ad_dump_opts *opts)
{
    if (!g)
        return -1;
    ad_dump_opts o = opts ? *opts : (ad_dump_opts){0, 0, 0};
    if (!out || (output && output->g != g)) {
        ad_fail(g, "ad_dump_dot: %s",
                !out ? "no output file" : "the node belongs to another graph");
        return -1;
    }
    if (!valid_opt(o.dpi) || !valid_opt(o.font_size)) {
        ad_fail(g, "ad_dump_dot: dpi %g and font size %g must be in [0, 10000] (0: default)", o.dpi,
                o.font_size);
        return -1;
    }
    unsigned flags = o.flags;
    if (flags == 0 || flags == AD_DUMP_COMPACT)
        flags |= AD_DUMP_DEFAULT;
    if (!(flags & (AD_DUMP_FORWARD | AD_DUMP_BACKWARD)))
        flags |= AD_DUMP_FORWARD;
    ad_node *loss = output;
    if (!loss && g->ntapes > 0)
        loss = g->tapes[g->ntapes - 1].loss;
    ctx c;
    if (!ad_dump_ctx_init(&c, g, loss, output, 4))
        return -1;
    c.opts = o;
    /* which nodes are drawn: 1 forward (and ad_grad results), 2 backward,
       4 a forward node a backward node reads, drawn small */
    unsigned char *draw = zalloc(g, (size_t)c.n);
    if (!draw) {
        ad_dump_ctx_free_all(&c);
        ad_fail(g, "ad_dump_dot: out of memory");
        return -1;
    }
    for (int64_t i = 0; i < c.n; i++) {
        const ad_node *v = g->nodes[i];
        bool shown = v == output || (c.alias[i] == i && !c.fold[i]);
        bool fwd = !(v->flags & NODE_TAPE) && (!output || c.anc[i]);
        const tape *t = NULL;
        for (int j = 0; j < g->ntapes; j++)
            if (g->tapes[j].loss == loss)
                t = &g->tapes[j];
        bool bwd = (v->flags & NODE_TAPE) &&
                   (!output || (t && i >= t->begin && i < t->end) || (!t && i > loss->id));
        draw[i] = (unsigned char)(!shown ? 0
                                         : (fwd && (flags & AD_DUMP_FORWARD) ? 1 : 0) |
                                               (bwd && (flags & AD_DUMP_BACKWARD) ? 2 : 0));
    }
    /* the backward view also shows the forward nodes its nodes read */
    if (flags & AD_DUMP_BACKWARD)
        for (int64_t i = 0; i < c.n; i++)
            if (draw[i] & 2)
                for (int k = 0; k < g->nodes[i]->ninputs; k++) {
                    int64_t j = c.alias[g->nodes[i]->inputs[k]->id];
                    if (!(draw[j] & 3) && !c.fold[j])
                        draw[j] = 4; /* referenced forward node, drawn small */
                }
    /* tensors make wide tables: top-down reads better; scalars go left to
       right, except on slides (compact), which are wider than a long chain */
    bool tensors = false;
    int maxorder = 0, minorder = 1 << 30;
    for (int64_t i = 0; i < c.n; i++) {
        tensors = tensors || (draw[i] && g->nodes[i]->numel > 1);
        if (draw[i] & 3) {
            maxorder = g->nodes[i]->order > maxorder ? g->nodes[i]->order : maxorder;
            minorder = g->nodes[i]->order < minorder ? g->nodes[i]->order : minorder;
        }
    }
    double fs = o.font_size > 0 ? o.font_size : 11;
    const bool top_down = tensors || (flags & AD_DUMP_COMPACT);
    fprintf(out, "digraph chainrule {\n  graph [rankdir=%s, fontname=\"DejaVu Sans\", fontsize=%g",
            top_down ? "TB" : "LR", fs + 1);
    if (o.dpi > 0)
        fprintf(out, ", dpi=%g", o.dpi);
    fprintf(out,
            ", nodesep=%s, ranksep=%s];\n"
            "  node [shape=plaintext, fontname=\"DejaVu Sans\", fontsize=%g];\n"
            "  edge [fontname=\"DejaVu Sans\", fontsize=%g, arrowsize=0.7];\n",
            (flags & AD_DUMP_COMPACT) ? "0.15" : "0.3", (flags & AD_DUMP_COMPACT) ? "0.3" : "0.5",
            fs, fs > 2 ? fs - 1 : fs);
    /* one cluster per order of differentiation when there is more than one */
    bool clusters = maxorder > minorder;
    static const char *const fill[] = {"#fbeeee", "#eef3fb", "#f1f8ec", "#fdf6e3"};
    for (int k = minorder; k <= maxorder; k++) {
        if (clusters) {
            char label[TEXT_LEN];
            cluster_label(&c, draw, k, label, sizeof label);
            if (k == 0)
                fprintf(out, "  subgraph cluster_forward {\n  label=");
            else
                fprintf(out, "  subgraph cluster_order%d {\n  label=", k);
            dot_str(out, label);
            if (k > 0)
                fprintf(out, ";\n  style=filled; color=\"%s\"", fill[(k - 1) % 4]);
            fprintf(out, ";\n");
        }
        for (int64_t i = 0; i < c.n; i++) {
            if (!(draw[i] & 3) || g->nodes[i]->order != k)
                continue;
            if (draw[i] & 1)
                dot_forward_node(&c, out, g->nodes[i], flags);
            else
                dot_backward_node(&c, out, g->nodes[i], flags);
        }
        if (clusters)
            fprintf(out, "  }\n");
    }
    for (int64_t i = 0; i < c.n; i++)
        if (draw[i] == 4) {
            fprintf(out,
                    "  n%lld [shape=ellipse, style=filled, fillcolor=\"#eeeeee\", "
                    "fontsize=%g, label=",
                    (long long)i, fs > 2 ? fs - 2 : fs);
            dot_str(out, sym(&c, g->nodes[i]));
            fprintf(out, "];\n");
        }
    for (int64_t i = 0; i < c.n; i++) {
        const ad_node *u = g->nodes[i];
        if (!draw[i] || draw[i] == 4)
            continue;
        for (int k = 0; k < u->ninputs; k++) {
            int64_t from = c.alias[u->inputs[k]->id];
            if (!draw[from] || c.fold[from])
                continue;
            if (draw[i] & 1)
                dot_edge(&c, out, u, k, flags);
            else
                fprintf(out, "  n%lld -> n%lld [color=\"#b85450\"];\n", (long long)from,
                        (long long)i);
        }
    }
    dot_legend(&c, out, top_down);
    fprintf(out, "}\n");
    zfree(g, draw, (size_t)c.n);
    ad_dump_ctx_free_all(&c);
    if (fflush(out) != 0 || ferror(out)) {
        ad_fail(g, "ad_dump_dot: write error");
        return -1;
    }
    return g->has_error ? -1 : 0;
}

void ad_dump_html_text(FILE *out, const char *s) { html_str(out, s); }
