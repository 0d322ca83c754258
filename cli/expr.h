/*
 * cli/expr.h -- the expression language of `chainrule grad`, parsed by
 * recursive descent straight into engine nodes (no derivative code here:
 * the engine differentiates what the parser builds). Internal to the CLI.
 *
 * Grammar (whitespace is ignored between tokens):
 *
 *     program := (NAME '=' expr ';')* (NAME '=' expr | expr) [';']
 *     expr    := term (('+' | '-') term)*
 *     term    := unary (('*' | '/') unary)*
 *     unary   := ('-' | '+') unary | power
 *     power   := primary (('^' | '**') unary)?  right-associative; -x^2 is -(x^2)
 *     primary := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
 *     number  := digits ['.' digits] [('e' | 'E') ['+' | '-'] digits]  (or '.' digits ...)
 *     name    := letter (letter | digit | '_')*   ('_' counts as a letter)
 *
 * Functions are the op registry's (autodiff/ops.def, ad_op_find_call): every
 * op with a call name, called as name(tensor arguments, parameters...), e.g.
 * tanh(x), max(a, b), leaky_relu(x, 0.1), pow(x, 3), clamp(x, -1, 1),
 * affine(x, 2) (parameters with a default may be left out; ad_op_params
 * names them). Parameters must be constant expressions. A unary op added to
 * the registry is callable here with no edit. a ^ p with a constant exponent
 * is ad_pow; with an exponent that depends on a variable it is ad_power.
 * Nesting (parentheses, signs, exponents, calls) is limited to 256 levels;
 * deeper input is an error, not a stack overflow.
 *
 * '**' is the same operator as '^' (Python's spelling): same precedence,
 * right-associative, binds tighter than a sign on its left (-x**2 is
 * -(x**2)) and takes one on its right (2**-1).
 *
 * Statements name intermediate nodes: "n = x*w + b; tanh(n)" names the
 * node of x*w + b "n" (what the dumps and the trace show); the last part is
 * the output, an expression or a statement (then the output has its name).
 * A statement's name must be new: not defined before, not a variable, not a
 * function; using it before its statement is an error that says so, as is a
 * statement that would only rename a variable or another statement
 * ("m = n;").
 *
 *     cr_var vars[] = {{"x", ad_scalar(g, 3, "x")}};
 *     cr_expr_error err;
 *     ad_node *f = cr_expr_parse(g, "x^2 + 1", vars, 1, &err);
 *     if (!f) fprintf(stderr, "column %d: %s\n", err.column, err.message);
 */
#ifndef CHAINRULE_CLI_EXPR_H
#define CHAINRULE_CLI_EXPR_H

#include <chainrule/autodiff.h>

/** A variable the expression may use: its name and its (leaf) node. */
typedef struct {
    const char *name;
    ad_node *node;
} cr_var;

/** Where and why parsing failed. column is 1-based (0: not tied to a column). */
typedef struct {
    int column;
    char message[200];
} cr_expr_error;

/**
 * Parses text and builds its nodes in g, looking names up in vars[0..nvars).
 * Returns the node of the whole expression (owned by g), or NULL with err
 * filled: a syntax error, an unknown function or variable, a wrong number of
 * arguments, or an engine error (then column is 0 and the message is the
 * graph's). Nodes built before an error stay in g (free g to drop them).
 */
ad_node *cr_expr_parse(ad_graph *g, const char *text, const cr_var *vars, int nvars,
                       cr_expr_error *err);

#endif
