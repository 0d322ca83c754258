/* dump_html.c -- the backward-pass stepper: one self-contained HTML page
 * with the forward picture (Graphviz SVG, its nodes and edges carrying the
 * ids of DUMP_ELEMENT_IDS) and the backward pass as a list of steps, in the
 * order the engine visits the nodes (dump.c's model: the same steps as the
 * picture's "backward step K" and ad_trace). At step K the engine takes
 * node u, whose gradient is then complete, and its gradient rule adds one
 * contribution per input (upstream × local derivative) to that input's
 * pending sum; the page shows those contributions and every sum so far. All
 * numbers and texts are written here from the engine's values; the page's
 * script only shows the state of the step asked for. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule/dump.h"
#include "dump_impl.h"
#include "graph_impl.h"

#define TEXT_LEN 512
#define TERMS_LEN 256

/* ------------------------------------------------------------ output */

/* A JSON string that is safe inside <script>: no "</script>", no HTML. */
static void js_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == '<' || ch == '>' || ch == '&')
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void js_num(FILE *out, double v)
{
    if (v != v || v - v != 0) /* NaN, ±inf: JSON has no such numbers */
        fputs("null", out);
    else
        fprintf(out, "%.17g", v == 0 ? 0.0 : v);
}

/* a number for one element, an array otherwise */
static void js_values(FILE *out, const double *v, int64_t n)
{
    if (n == 1) {
        js_num(out, v[0]);
        return;
    }
    fputc('[', out);
    for (int64_t i = 0; i < n; i++) {
        if (i)
            fputc(',', out);
        js_num(out, v[i]);
    }
    fputc(']', out);
}

/* Appends formatted text to buf (bounded, cut at a UTF-8 boundary). */
static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t k = strlen(buf);
    if (k + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + k, size - k, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= size - k) {
        size_t end = size - 1;
        while (end > k && ((unsigned char)buf[end] & 0xC0) == 0x80)
            end--;
        buf[end] = '\0';
    }
}

/* The SVG element of dot's output file (its XML prolog and DOCTYPE, which
 * names a URL, left out). */
static bool copy_svg(FILE *in, FILE *out)
{
    static const char tag[] = "<svg";
    size_t m = 0;
    int ch;
    while (m < 4 && (ch = getc(in)) != EOF)
        m = ch == tag[m] ? m + 1 : (ch == '<' ? 1 : 0);
    if (m < 4)
        return false;
    fputs(tag, out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    return !ferror(in);
}

/* ------------------------------------------------------- the steps */

/* What the page knows of the gradient of each node at the current step. */
typedef struct {
    const dump_model *m;
    ad_graph *g;
    int64_t n;         /* nodes [0, n) */
    int64_t *received; /* contributions added to node i so far */
    bool *unknown;     /* one of them is known only through the sum */
    int64_t *off;      /* node i's partial sum at sum[off[i]] (numel elements) */
    double *sum;       /* partial sums */
    char *terms;       /* n * TERMS_LEN: "0.5 + 0.5" for one-element nodes */
    double *scratch;   /* values of the largest node */
    double *upstream;  /* the gradient of the node taken at this step */
    int64_t maxnumel;
} stepper;

static void *zeroed(ad_graph *g, size_t bytes)
{
    void *p = ad_mem(g, NULL, 0, bytes ? bytes : 1);
    if (p)
        memset(p, 0, bytes ? bytes : 1);
    return p;
}

static void release(ad_graph *g, void *p, size_t bytes)
{
    if (p)
        ad_mem(g, p, bytes ? bytes : 1, 0);
}

static void stepper_free(stepper *s)
{
    size_t n = (size_t)s->n;
    if (s->off)
        release(s->g, s->sum, sizeof(double) * (size_t)s->off[s->n]);
    release(s->g, s->received, sizeof(int64_t) * n);
    release(s->g, s->unknown, n);
    release(s->g, s->off, sizeof(int64_t) * (n + 1));
    release(s->g, s->terms, n * TERMS_LEN);
    release(s->g, s->scratch, sizeof(double) * (size_t)s->maxnumel);
    release(s->g, s->upstream, sizeof(double) * (size_t)s->maxnumel);
}

static bool stepper_init(stepper *s, const dump_model *m, ad_graph *g, const ad_node *loss)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    s->g = g;
    s->n = loss->id + 1;
    size_t n = (size_t)s->n;
    s->received = zeroed(g, sizeof(int64_t) * n);
    s->unknown = zeroed(g, n);
    s->off = zeroed(g, sizeof(int64_t) * (n + 1));
    s->terms = zeroed(g, n * TERMS_LEN);
    if (!s->received || !s->unknown || !s->off || !s->terms)
        return false;
    s->maxnumel = 1;
    for (int64_t i = 0; i < s->n; i++) {
        const ad_node *v = g->nodes[i];
        int64_t len = ad_dump_model_step(m, v) ? v->numel : 0;
        s->off[i + 1] = s->off[i] + len;
        s->maxnumel = v->numel > s->maxnumel ? v->numel : s->maxnumel;
    }
    s->sum = zeroed(g, sizeof(double) * (size_t)s->off[s->n]);
    s->scratch = zeroed(g, sizeof(double) * (size_t)s->maxnumel);
    s->upstream = zeroed(g, sizeof(double) * (size_t)s->maxnumel);
    return s->sum && s->scratch && s->upstream;
}

/* The engine's d loss/d v into buf (numel of v). */
static const double *engine_grad(const stepper *s, const ad_node *v, double *buf)
{
    const ad_node *gn = ad_dump_model_grad(s->m, v);
    if (!gn || ad_get(gn, buf, v->numel) != 0)
        return NULL;
    return buf;
}

/* One state of node v's gradient: {"node": id, "value": V, "text": "...", "done": bool}. */
static void write_update(stepper *s, FILE *out, const ad_node *v, bool seed)
{
    int64_t uses = ad_dump_model_uses(s->m, v), got = s->received[v->id];
    bool done = seed || got >= uses;
    char text[TEXT_LEN] = "", vals[TEXT_LEN];
    const double *value = NULL;
    if (done) {
        value = engine_grad(s, v, s->scratch);
        if (value)
            ad_dump_model_format(s->m, v, value, v->numel, vals, sizeof vals);
        else
            snprintf(vals, sizeof vals, "?");
        if (seed)
            append(text, sizeof text, "%s (seed)", vals);
        else if (got > 1 && v->numel == 1)
            append(text, sizeof text, "%s = %s", vals, s->terms + (size_t)v->id * TERMS_LEN);
        else
            append(text, sizeof text, "%s", vals);
    } else if (v->numel == 1) {
        append(text, sizeof text, "%s + …", s->terms + (size_t)v->id * TERMS_LEN);
        if (!s->unknown[v->id])
            value = s->sum + s->off[v->id];
    } else if (!s->unknown[v->id]) {
        value = s->sum + s->off[v->id];
        ad_dump_model_format(s->m, v, value, v->numel, vals, sizeof vals);
        append(text, sizeof text, "%lld of %lld terms so far: %s + …", (long long)got,
               (long long)uses, vals);
    } else {
        append(text, sizeof text, "%lld of %lld terms so far + …", (long long)got, (long long)uses);
    }
    fprintf(out, "{\"node\":%lld,\"value\":", (long long)v->id);
    if (value)
        js_values(out, value, v->numel);
    else
        fputs("null", out);
    fputs(",\"text\":", out);
    js_str(out, text);
    fprintf(out, ",\"done\":%s}", done ? "true" : "false");
}

/* Step K: node u is taken; its rule adds a contribution to each input. */
static bool write_step(stepper *s, FILE *out, const ad_node *u, const ad_node *loss)
{
    const dump_model *m = s->m;
    const char *us = ad_dump_model_symbol(m, u);
    char text[4 * TEXT_LEN] = "", def[TEXT_LEN], num[TEXT_LEN];
    const double *gu = engine_grad(s, u, s->upstream);
    if (gu)
        ad_dump_model_format(m, u, gu, u->numel, num, sizeof num);
    else
        snprintf(num, sizeof num, "?");
    ad_dump_model_definition(m, u, def, sizeof def);
    if (u == loss && strcmp(us, "L") == 0)
        append(text, sizeof text,
               "The backward pass starts at the loss L with the seed ∂L/∂L = 1.");
    else if (u == loss)
        append(text, sizeof text,
               "The backward pass starts at the loss L = %s with the seed ∂L/∂%s = 1.", us, us);
    else if (ad_ops[u->op].kind == AD_KIND_LEAF)
        append(text, sizeof text, "∂L/∂%s = %s is complete; %s is a leaf (%s).", us, num, us, def);
    else
        append(text, sizeof text, "∂L/∂%s = %s is complete (%s = %s).", us, num, us, def);

    fprintf(out, "{\"step\":%lld,\"node\":%lld,\"sym\":", (long long)ad_dump_model_step(m, u),
            (long long)u->id);
    js_str(out, us);
    fputs(",\"edges\":[", out);
    int nflows = 0;
    for (int k = 0; k < u->ninputs; k++) {
        dump_edge e;
        if (ad_dump_model_edge(m, u, k, &e) != 0)
            return false;
        if (e.flows)
            fprintf(out, "%s\"n%lld_in%d\"", nflows++ ? "," : "", (long long)u->id, k);
        ad_dump_model_edge_free(m, u, k, &e);
    }
    fputs("],\"updates\":[", out);
    if (u == loss)
        write_update(s, out, u, true);
    int written = u == loss;
    nflows = 0;
    for (int k = 0; k < u->ninputs; k++) {
        const ad_node *in = u->inputs[k];
        dump_edge e;
        if (ad_dump_model_edge(m, u, k, &e) != 0)
            return false;
        if (!e.flows || in->id >= s->n) {
            ad_dump_model_edge_free(m, u, k, &e);
            continue;
        }
        const char *is = ad_dump_model_symbol(m, in);
        char *terms = s->terms + (size_t)in->id * TERMS_LEN;
        char c[TEXT_LEN];
        s->received[in->id]++;
        if (e.contribution) {
            double *acc = s->sum + s->off[in->id];
            for (int64_t i = 0; i < in->numel; i++)
                acc[i] += e.contribution[i];
            ad_dump_model_format(m, in, e.contribution, in->numel, c, sizeof c);
        } else {
            s->unknown[in->id] = true;
            snprintf(c, sizeof c, "?");
        }
        if (in->numel == 1 && s->received[in->id] > 1)
            append(terms, TERMS_LEN, c[0] == '-' ? " + (%s)" : " + %s", c);
        else if (in->numel == 1)
            append(terms, TERMS_LEN, "%s", c);
        append(text, sizeof text, nflows++ ? "; " : " Its rule adds ");
        if (e.scalar_local && gu && in->numel == 1) {
            char up[64], lo[64], factor[TEXT_LEN];
            ad_dump_model_format(m, u, gu, 1, up, sizeof up);
            ad_dump_model_format(m, u, &e.local, 1, lo, sizeof lo);
            if (strcmp(e.rule, lo) != 0)
                snprintf(factor, sizeof factor, "(%s = %s)", e.rule, lo);
            else
                snprintf(factor, sizeof factor, lo[0] == '-' ? "(%s)" : "%s", lo);
            append(text, sizeof text, "∂L/∂%s · ∂%s/∂%s = %s%s%s × %s = %s to ∂L/∂%s", us, us, is,
                   up[0] == '-' ? "(" : "", up, up[0] == '-' ? ")" : "", factor, c, is);
        } else {
            append(text, sizeof text, "%s (%s) to ∂L/∂%s", c, e.rule, is);
        }
        fputs(written++ ? "," : "", out);
        write_update(s, out, in, false);
        ad_dump_model_edge_free(m, u, k, &e);
    }
    if (nflows)
        append(text, sizeof text, ".");
    else if (u != loss && ad_ops[u->op].kind != AD_KIND_LEAF)
        append(text, sizeof text, " Nothing flows further back from it.");
    fputs("],\"text\":", out);
    js_str(out, text);
    fputc('}', out);
    return true;
}

/* ------------------------------------------------------------- the page */

static const char page_style[] =
    "body{font-family:'DejaVu Sans',sans-serif;margin:0;color:#222}\n"
    "header{padding:8px 14px;border-bottom:1px solid #ccc;background:#fafafa}\n"
    "header h1{font-size:17px;margin:0 0 6px}\n"
    "button{font-size:15px;margin-right:4px;padding:2px 10px}\n"
    "#counter{font-weight:bold;margin:0 10px}\n"
    "#explain{margin:6px 0 0;font-size:15px;min-height:1.3em}\n"
    "#keys{color:#666;font-size:12px}\n"
    "main{display:flex;align-items:flex-start}\n"
    "#graph{flex:1;overflow:auto;padding:8px}\n"
    "#graph svg{max-width:100%;height:auto}\n"
    "aside{width:24em;padding:8px 14px;border-left:1px solid #ccc}\n"
    "aside h2{font-size:15px;margin:4px 0}\n"
    "aside table{border-collapse:collapse;font-size:14px;width:100%}\n"
    "aside th,aside td{text-align:left;padding:2px 6px;border-bottom:1px solid #eee}\n"
    "tr.current{background:#fde0dc}tr.done td{color:#2e7d32}tr.waiting td{color:#999}\n"
    "#graph g.node.current polygon{stroke:#c62828;stroke-width:3px}\n"
    "#graph g.node.waiting{opacity:.45}\n"
    "#graph g.edge.flowing path{stroke:#c62828;stroke-width:3px}\n"
    "#graph g.edge.flowing polygon{stroke:#c62828;fill:#c62828}\n"
    "#graph g.edge.flowing text{fill:#c62828}\n"
    "#graph g.edge.later{opacity:.3}\n";

/* Shows the state after step K: every node's sum so far is the last update
 * of steps 1..K written by the library; nothing is computed here. */
// clang-format off
static const char page_script[] =
    "(function () {\n"
    "var data = JSON.parse(document.getElementById('steps').textContent);\n"
    "var N = data.steps.length, cur = -1, edgeStep = {}, gradText = {}, room = {};\n"
    "data.steps.forEach(function (s) { s.edges.forEach(function (e) { edgeStep[e] = s.step; }); });\n"
    "/* the \"grad\" row of each node in the SVG, and the room its cell has */\n"
    "data.nodes.forEach(function (n) {\n"
    "  var g = document.getElementById('n' + n.id);\n"
    "  if (!g) return;\n"
    "  var t = g.getElementsByTagName('text');\n"
    "  for (var i = 0; i < t.length; i++)\n"
    "    if (/^grad\\b/.test(t[i].textContent)) {\n"
    "      var b = g.getBBox();\n"
    "      gradText[n.id] = t[i];\n"
    "      room[n.id] = b.x + b.width - t[i].getBBox().x - 3;\n"
    "      break;\n"
    "    }\n"
    "});\n"
    "function setGrad(id, text) {\n"
    "  var t = gradText[id];\n"
    "  if (!t) return;\n"
    "  t.textContent = 'grad ' + text;\n"
    "  t.removeAttribute('textLength');\n"
    "  t.removeAttribute('lengthAdjust');\n"
    "  if (t.getComputedTextLength() > room[id]) {\n"
    "    t.setAttribute('textLength', room[id]);\n"
    "    t.setAttribute('lengthAdjust', 'spacingAndGlyphs');\n"
    "  }\n"
    "}\n"
    "function mark(el, name, on) { if (el) el.classList.toggle(name, on); }\n"
    "function show(k) {\n"
    "  k = Math.max(0, Math.min(N, k | 0));\n"
    "  cur = k;\n"
    "  var state = {};\n"
    "  for (var s = 0; s < k; s++)\n"
    "    data.steps[s].updates.forEach(function (u) { state[u.node] = u; });\n"
    "  data.nodes.forEach(function (n) {\n"
    "    var u = state[n.id], text = u ? u.text : '\\u2014';\n"
    "    var cell = document.getElementById('grad-n' + n.id);\n"
    "    cell.textContent = text;\n"
    "    cell.setAttribute('data-value', u ? JSON.stringify(u.value) : '');\n"
    "    setGrad(n.id, text);\n"
    "    var g = document.getElementById('n' + n.id), row = document.getElementById('row-n' + n.id);\n"
    "    [g, row].forEach(function (el) {\n"
    "      mark(el, 'current', n.step === k);\n"
    "      mark(el, 'done', n.step < k);\n"
    "      mark(el, 'waiting', n.step > k && !u);\n"
    "    });\n"
    "  });\n"
    "  Object.keys(edgeStep).forEach(function (id) {\n"
    "    var e = document.getElementById(id);\n"
    "    mark(e, 'flowing', edgeStep[id] === k);\n"
    "    mark(e, 'later', edgeStep[id] > k);\n"
    "  });\n"
    "  document.getElementById('counter').textContent = 'step ' + k + ' of ' + N;\n"
    "  document.getElementById('explain').textContent =\n"
    "    k ? 'Step ' + k + ': ' + data.steps[k - 1].text : data.start;\n"
    "  document.getElementById('stepper').setAttribute('data-step', k);\n"
    "  document.getElementById('first').disabled = document.getElementById('prev').disabled = k === 0;\n"
    "  document.getElementById('last').disabled = document.getElementById('next').disabled = k === N;\n"
    "  if (location.hash !== '#step=' + k) history.replaceState(null, '', '#step=' + k);\n"
    "}\n"
    "function fromHash() { var m = /step=(\\d+)/.exec(location.hash); show(m ? +m[1] : 0); }\n"
    "document.getElementById('first').onclick = function () { show(0); };\n"
    "document.getElementById('prev').onclick = function () { show(cur - 1); };\n"
    "document.getElementById('next').onclick = function () { show(cur + 1); };\n"
    "document.getElementById('last').onclick = function () { show(N); };\n"
    "document.addEventListener('keydown', function (e) {\n"
    "  var k = {ArrowRight: 1, ArrowDown: 1, PageDown: 1, ' ': 1,\n"
    "           ArrowLeft: -1, ArrowUp: -1, PageUp: -1}[e.key];\n"
    "  if (e.key === 'Home') show(0);\n"
    "  else if (e.key === 'End') show(N);\n"
    "  else if (k) show(cur + k);\n"
    "  else return;\n"
    "  e.preventDefault();\n"
    "});\n"
    "window.addEventListener('hashchange', fromHash);\n"
    "fromHash();\n"
    "})();\n";
// clang-format on

static bool write_page(FILE *out, FILE *svg, const dump_model *m, ad_graph *g, ad_node *loss)
{
    const char *ls = ad_dump_model_symbol(m, loss);
    const char *is = strcmp(ls, "L") == 0 ? "" : " = "; /* "L = o", not "L = L" */
    int64_t nsteps = ad_dump_model_steps(m);
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", out);
    fprintf(out, "chainrule: the backward pass of L%s", is);
    ad_dump_html_text(out, *is ? ls : "");
    fprintf(out, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", page_style);
    fprintf(out, "<header>\n<h1>The backward pass of L%s", is);
    ad_dump_html_text(out, *is ? ls : "");
    fprintf(
        out,
        ", one step at a time</h1>\n"
        "<button id=\"first\" title=\"Home\">« start</button><button id=\"prev\" "
        "title=\"←\">◀ back</button><span id=\"counter\">step 0 of %lld</span><button "
        "id=\"next\" title=\"→\">next ▶</button><button id=\"last\" title=\"End\">end »</button>\n"
        "<span id=\"keys\">keys: → or space next, ← back, Home, End; the address ends in "
        "#step=K</span>\n<p id=\"explain\"></p>\n</header>\n",
        (long long)nsteps);
    fputs("<main id=\"stepper\" data-step=\"0\">\n<div id=\"graph\">\n", out);
    if (!copy_svg(svg, out)) {
        ad_fail(g, "ad_dump_html: Graphviz wrote no SVG");
        return false;
    }
    fputs("</div>\n<aside>\n<h2>Gradients so far, ∂L/∂node</h2>\n<table>\n", out);
    for (int64_t i = loss->id; i >= 0; i--) {
        const ad_node *v = g->nodes[i];
        if (!ad_dump_model_step(m, v))
            continue;
        fprintf(out, "<tr id=\"row-n%lld\"><th>", (long long)i);
        ad_dump_html_text(out, ad_dump_model_symbol(m, v));
        fprintf(out, "</th><td class=\"grad\" id=\"grad-n%lld\" data-value=\"\">—</td></tr>\n",
                (long long)i);
    }
    fputs("</table>\n<p>red: the node the engine takes at this step and the edges along which "
          "its rule adds contributions; faded: not reached yet. A sum ending in … still waits "
          "for contributions.</p>\n</aside>\n</main>\n",
          out);

    /* the steps, from the engine's order and values */
    stepper s;
    bool ok = stepper_init(&s, m, g, loss);
    if (ok) {
        fputs("<script type=\"application/json\" id=\"steps\">\n{\"loss\":", out);
        js_str(out, ls);
        char start[TEXT_LEN];
        snprintf(start, sizeof start,
                 "Before the backward pass: no gradient yet. Step 1 seeds ∂L/∂%s = 1; each "
                 "step then takes one node, in the order the engine visits them.",
                 ls);
        fputs(",\"start\":", out);
        js_str(out, start);
        fputs(",\"nodes\":[", out);
        int nn = 0;
        for (int64_t i = loss->id; i >= 0; i--)
            if (ad_dump_model_step(m, g->nodes[i])) {
                fprintf(out, "%s{\"id\":%lld,\"step\":%lld,\"sym\":", nn++ ? "," : "", (long long)i,
                        (long long)ad_dump_model_step(m, g->nodes[i]));
                js_str(out, ad_dump_model_symbol(m, g->nodes[i]));
                fputc('}', out);
            }
        fputs("],\n\"steps\":[\n", out);
        int ns = 0;
        for (int64_t i = loss->id; i >= 0 && ok; i--) {
            const ad_node *u = g->nodes[i];
            if (!ad_dump_model_step(m, u))
                continue;
            fputs(ns++ ? ",\n" : "", out);
            ok = write_step(&s, out, u, loss);
        }
        fputs("\n]}\n</script>\n", out);
    }
    stepper_free(&s);
    if (!ok) {
        if (!g->has_error)
            ad_fail(g, "ad_dump_html: out of memory");
        return false;
    }
    fprintf(out, "<script>\n%s</script>\n</body>\n</html>\n", page_script);
    return true;
}

int ad_dump_html(ad_graph *g, ad_node *loss, FILE *out, unsigned flags)
{
    if (!g)
        return -1;
    if (!out || !loss || loss->g != g) {
        ad_fail(g, "ad_dump_html: %s",
                !out ? "no output file"
                     : (!loss ? "no loss node" : "the loss belongs to another graph"));
        return -1;
    }
    if (loss->numel != 1 || (loss->flags & NODE_TAPE)) {
        ad_fail(g, "ad_dump_html: '%s' is not a loss (one element, not a backward node)",
                loss->rare->name);
        return -1;
    }
    dump_model *m = ad_dump_model_new(g, loss, 6);
    if (!m)
        return -1;
    if (!ad_dump_model_grad(m, loss)) {
        ad_fail(g, "ad_dump_html: no backward pass through '%s': call ad_backward first",
                ad_dump_model_symbol(m, loss));
        ad_dump_model_free(m);
        return -1;
    }
    /* the forward picture with the gradient rows the page rewrites */
    flags = (flags ? flags : AD_DUMP_DEFAULT) | AD_DUMP_FORWARD | AD_DUMP_GRADS | DUMP_ELEMENT_IDS;
    const char *tmpdir = getenv("TMPDIR");
    char svg_path[4096];
    snprintf(svg_path, sizeof svg_path, "%s/chainrule-svg-XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(svg_path);
    if (fd < 0) {
        ad_dump_model_free(m);
        ad_fail(g, "ad_dump_html: cannot create a temporary file in %s: %s",
                tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
        return -1;
    }
    close(fd);
    int rc = ad_dump_render_as(g, loss, "svg", svg_path, flags, "ad_dump_html");
    FILE *svg = rc == 0 ? fopen(svg_path, "r") : NULL;
    if (rc == 0 && !svg) {
        ad_fail(g, "ad_dump_html: cannot read Graphviz's SVG: %s", strerror(errno));
        rc = -1;
    }
    if (rc == 0 && !write_page(out, svg, m, g, loss))
        rc = -1;
    if (svg)
        fclose(svg);
    unlink(svg_path);
    ad_dump_model_free(m);
    if (rc == 0 && (fflush(out) != 0 || ferror(out))) {
        ad_fail(g, "ad_dump_html: write error");
        rc = -1;
    }
    return rc;
}
