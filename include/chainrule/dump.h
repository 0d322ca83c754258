/**
 * @file chainrule/dump.h
 * @brief Pictures and traces of a graph: Graphviz DOT, the chain-rule trace and
 *        the interactive backward-pass page (HTML).
 *
 * A worked example: draw the single neuron and explain its backward pass.
 *
 *     ad_node *o = ad_tanh(n);                 // built as in autodiff.h
 *     ad_backward(o);
 *     FILE *f = fopen("neuron.dot", "w");
 *     ad_dump_dot(g, o, f, AD_DUMP_DEFAULT);    // then: dot -Tpng neuron.dot -o neuron.png
 *     fclose(f);
 *     ad_trace(o, stdout, AD_TRACE_CHECK);      // every backward step, FD check of leaves
 *
 * What the forward picture shows
 * - Each node: its symbol (its name, or t1, t2, ... for unnamed results and
 *   the value for unnamed scalar constants) with its definition
 *   (`n = t3 + b`), op, shape, value and gradient d loss/d node, and the
 *   step at which the backward pass visited it (step 1 is the loss).
 * - Each edge (input -> user, one edge per use: `a + a` has two) carries the
 *   local derivative d user/d input as a rule (`∂o/∂n = 1 − o²`) and, for
 *   scalars, its value (`= 0.5`), and the contribution it carries back
 *   (upstream gradient × local derivative). The input's gradient is the sum
 *   of the contributions on its outgoing edges (fan-out); the node shows it.
 * - Points where the derivative is not defined (relu, abs, step, sign at 0,
 *   ties of max/min, clamp at its bounds) are marked, with the value the
 *   engine uses. A broadcast input's edge names the axes its gradient is
 *   summed over. Ops other than elementwise ones (matmul, reductions, shape
 *   ops) show the op's rule text and the contribution summarized.
 * - An edge whose local derivative is exactly 0 is red and dashed, at a
 *   point where the derivative is not defined orange with ⚠; an edge that
 *   carries no gradient (constants, data) grey and dashed. A node whose
 *   value or gradient is not finite (NaN, ±inf) is purple, with its edges.
 *   A legend in the picture lists the styles it uses.
 * - Values get at least 4 significant digits, more where 4 would round to
 *   a number the value is not (sigmoid(10) = 0.99995, not 1).
 * - Large tensors are summarized (mean, min, max); up to
 *   AD_DUMP_INLINE_MAX elements are printed in full.
 *
 * What a picture of a gradient graph shows (ad_grad, AD_DUMP_BACKWARD)
 * - Each order of differentiation is its own labelled cluster: the forward
 *   graph, the first derivative's nodes, the second's, ...
 * - The results are named by what they are: `∂y/∂x`, `∂²y/∂x²`, and the
 *   gradients of an ad_backward pass `∂L/∂n`; other backward nodes are
 *   g₁, g₂, ... (subscripts: no identifier a user can type).
 * - Bookkeeping is left out: the seed (a tensor of ones), products by 1 and
 *   nodes that recompute a value already drawn (the y² of tanh's rule built
 *   again by the second derivative) are drawn as what they equal.
 *
 * Gradients are those of the most recent backward build through the loss
 * (ad_backward or ad_grad); before any backward the picture shows values only.
 */
#ifndef CHAINRULE_DUMP_H
#define CHAINRULE_DUMP_H

#include <stdio.h>

#include "chainrule/autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Tensors with at most this many elements are printed in full in dumps. */
#define AD_DUMP_INLINE_MAX 6

/** Flags of ad_dump_dot (combine with |). */
enum {
    AD_DUMP_FORWARD = 1u << 0,  /**< the forward graph with derivative-labelled edges */
    AD_DUMP_BACKWARD = 1u << 1, /**< the nodes ad_backward built (the backward graph) */
    AD_DUMP_VALUES = 1u << 2,   /**< print each node's value */
    AD_DUMP_GRADS = 1u << 3,    /**< print gradients, local derivatives, contributions */
    AD_DUMP_COMPACT = 1u << 4,  /**< slides: value and gradient on one row, short step rows */
};
/** The usual picture: forward graph with values, gradients and derivatives. */
#define AD_DUMP_DEFAULT (AD_DUMP_FORWARD | AD_DUMP_VALUES | AD_DUMP_GRADS)

/**
 * Writes the graph in Graphviz DOT to out.
 *
 * g is the graph; output (may be NULL) restricts the picture to the nodes
 * output depends on and makes it the loss whose gradients are shown. With
 * output NULL every node is drawn and the gradients are those of the last
 * loss ad_backward was called on. flags: AD_DUMP_* (0 means
 * AD_DUMP_DEFAULT); with both AD_DUMP_FORWARD and AD_DUMP_BACKWARD the two
 * graphs are drawn side by side, and each order of differentiation has its
 * own cluster. Backward nodes that hold a gradient are named after it
 * (`∂L/∂n`, `∂y/∂x`), the others g₁, g₂, ...
 *
 * Reads the graph only (nothing is computed or changed). Returns 0, or -1
 * with the graph's sticky error set (NULL arguments, output from another
 * graph, a write error, out of memory); never aborts.
 */
AD_API int ad_dump_dot(ad_graph *g, ad_node *output, FILE *out, unsigned flags);

/** Options of ad_dump_dot_opts; a field left 0 takes its default. */
typedef struct {
    unsigned flags;   /**< AD_DUMP_* (0: AD_DUMP_DEFAULT) */
    double dpi;       /**< resolution of PNG renderings (Graphviz's dpi); 0: Graphviz's 96 */
    double font_size; /**< points of node text, edge text 1 point smaller; 0: 11 */
} ad_dump_opts;

/**
 * ad_dump_dot with options: the resolution and the font size of the
 * rendered picture (for slides: `{AD_DUMP_DEFAULT | AD_DUMP_COMPACT, 150,
 * 14}`). opts NULL is ad_dump_dot(g, output, out, 0). Errors as ad_dump_dot,
 * and a dpi or font size that is negative, not finite or above 10000.
 */
AD_API int ad_dump_dot_opts(ad_graph *g, ad_node *output, FILE *out, const ad_dump_opts *opts);

/**
 * Renders the picture of ad_dump_dot with Graphviz: writes the DOT text to a
 * temporary file and runs `dot -T<format> -o <path>` (started with
 * posix_spawnp: no shell, `dot` looked up on PATH).
 *
 * g, output and flags are those of ad_dump_dot; format is a Graphviz output
 * format ("svg", "png", "pdf", ...); path is written by Graphviz (the
 * caller's file, replaced). Returns 0, or -1 with the graph's sticky error
 * set: Graphviz not installed ("Graphviz 'dot' is not installed (not found
 * on PATH) ..."), dot failing, no temporary file (TMPDIR or /tmp), and the
 * errors of ad_dump_dot; never aborts.
 */
AD_API int ad_dump_render(ad_graph *g, ad_node *output, const char *format, const char *path,
                          unsigned flags);
/**
 * ad_dump_render with the options of ad_dump_dot_opts (resolution, font
 * size, compact layout); opts NULL is flags 0. Errors as ad_dump_render and
 * ad_dump_dot_opts.
 */
AD_API int ad_dump_render_opts(ad_graph *g, ad_node *output, const char *format, const char *path,
                               const ad_dump_opts *opts);

/**
 * Writes the interactive backward-pass page: one self-contained HTML file
 * (inline SVG, style and script; no network access, no external file) with
 * the forward picture of ad_dump_dot and a stepper through the backward
 * pass through loss. Buttons, the arrow keys (→ or space: next; ←: back;
 * Home, End) and the address (`page.html#step=K` opens at step K; stepping
 * updates it) move from step 0 (no gradient yet) to the last step. Step K
 * is the node the engine visits K-th (the picture's "backward step K", the
 * trace's step K): its gradient is complete, and the page highlights it and
 * the edges along which its gradient rule adds contributions to its inputs,
 * and shows every gradient accumulated so far, on the nodes and in a side
 * panel (`w1: 2 + …` while a fan-out sum still waits for terms).
 *
 * Every number comes from the engine's backward build (call ad_backward(loss)
 * first) and the dumps' local derivatives, written into the page as data;
 * the page's script only shows the state of the step asked for. The picture
 * is drawn by Graphviz (as ad_dump_render); flags as for ad_dump_dot (0 means
 * AD_DUMP_DEFAULT; the forward graph and gradients are always drawn). In the
 * SVG, node i has the id `n<i>` and the edge from input k of node u the id
 * `n<u>_in<k>`; the panel cell of node i is `grad-n<i>`, whose `data-value`
 * holds the value shown (JSON, 17 significant digits).
 *
 * Returns 0, or -1 with the graph's sticky error set (NULL arguments, a loss
 * without a backward build or with more than one element, Graphviz not
 * installed: "ad_dump_html: Graphviz 'dot' is not installed (not found on
 * PATH) ...", a write error, out of memory); never aborts.
 */
AD_API int ad_dump_html(ad_graph *g, ad_node *loss, FILE *out, unsigned flags);

/**
 * The name the dumps and the trace give node n of loss's graph, into buf
 * (NUL-terminated, cut at a character boundary): its own name, t1, t2, ...
 * for unnamed forward results in creation order, the value of an unnamed
 * scalar constant, ∂y/∂x for gradients, g₁, g₂, ... for other backward
 * nodes; a node the pictures fold into another has that one's name. loss
 * is the output the names are given for (as in ad_trace). `chainrule grad`
 * names nodes in its messages with it. 0, or -1 with the graph's error set
 * (NULL arguments, a node of another graph, out of memory).
 */
AD_API int ad_dump_symbol(ad_node *loss, const ad_node *n, char *buf, size_t size);

/** Flags of ad_trace. */
enum {
    AD_TRACE_JSON = 1u << 0,  /**< JSON instead of text */
    AD_TRACE_CHECK = 1u << 1, /**< a central finite-difference estimate beside each leaf gradient */
};

/**
 * Writes the chain-rule trace of the backward pass through loss: one step per
 * node, in the order the backward pass visits them (creation order
 * reversed), each giving its gradient as the sum over its uses of
 * upstream gradient × local derivative, e.g.
 * `step 2: n = t3 + b = 0.881374` then
 * `∂o/∂n = 1 − o² = 0.5; ∂L/∂n = ∂L/∂o · ∂o/∂n = 1 · 0.5 = 0.5`;
 * and last every trainable leaf's gradient d loss/d leaf.
 *
 * loss must have one element and a backward build (call ad_backward(loss)
 * first). With AD_TRACE_CHECK the first 64 elements of each leaf get a
 * central finite-difference estimate from ad_finite_difference (the
 * estimator ad_gradcheck uses; every value is bit-identical afterwards and
 * dropout masks are not redrawn); a leaf with an element outside
 * ad_gradcheck's default tolerance is labelled as ad_gradcheck judges it:
 * "kink of relu at t1, expected there" or "discontinuity of step at ..."
 * (ad_smoothness_at), else "MISMATCH" (JSON: "check": "pass", "kink",
 * "discontinuity" or "mismatch"). JSON output is one object:
 * `{"loss": ..., "value": V, "steps": [...], "leaves": [...]}`.
 *
 * Returns 0, or -1 with the graph's sticky error set (NULL arguments, a loss
 * without a backward build or with more than one element, a write error,
 * out of memory); never aborts.
 */
AD_API int ad_trace(ad_node *loss, FILE *out, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
