/* `chainrule grad`, run as the built binary (CHAINRULE_CLI): --json values
 * against hand-computed derivatives, the grammar (precedence, associativity,
 * exponents), parser errors with their column, and the picture options. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chainrule/autodiff.h"
#include "chainrule/dump.h"

#ifndef CHAINRULE_CLI
#error "CHAINRULE_CLI must name the chainrule binary"
#endif

typedef struct {
    int status; /* exit status */
    char out[65536];
} result;

/* Runs "chainrule grad ARGS" (ARGS already shell-quoted), stdout and stderr together. */
static result run(const char *env, const char *args)
{
    result r;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s '%s' grad %s 2>&1", env ? env : "", CHAINRULE_CLI, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(r.out, 1, sizeof r.out - 1, p);
    r.out[n] = '\0';
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

/* --json of EXPR with the variables, checked against value and gradients. */
static void expect_json(const char *expr, const char *vars, double value, int n,
                        const char *const *names, const double *grads)
{
    char args[2048];
    snprintf(args, sizeof args, "'%s' %s --json", expr, vars);
    result r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s: exit %d: %s", expr, r.status, r.out);
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "%s: not JSON: %s", expr, r.out);
    cJSON *v = cJSON_GetObjectItem(root, "value"), *g = cJSON_GetObjectItem(root, "grad");
    cr_assert(cJSON_IsNumber(v) && cJSON_IsObject(g), "%s", r.out);
    cr_assert_float_eq(v->valuedouble, value, 1e-12 * (1 + fabs(value)), "%s = %.17g, want %.17g",
                       expr, v->valuedouble, value);
    cr_assert_eq(cJSON_GetArraySize(g), n);
    for (int i = 0; i < n; i++) {
        cJSON *gi = cJSON_GetArrayItem(g, i);
        cr_assert_str_eq(gi->string, names[i], "variables keep the command line's order");
        cr_assert_float_eq(gi->valuedouble, grads[i], 1e-12 * (1 + fabs(grads[i])),
                           "%s: d/d%s = %.17g, want %.17g", expr, names[i], gi->valuedouble,
                           grads[i]);
    }
    cJSON_Delete(root);
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__})
#define GRADS(...) ((const double[]){__VA_ARGS__})

Test(grad_cli, neuron_json_exact_format)
{
    result r =
        run(NULL, "'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432 --json");
    cr_assert_eq(r.status, 0, "%s", r.out);
    /* the format, byte for byte; numbers to 17 significant digits */
    cr_assert(strncmp(r.out, "{\"value\": 0.7071067811865", 25) == 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"grad\": {\"x1\": -1.4999999999999"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"w2\": 0, \"b\": 0.4999999999999"));
    cr_assert(strcmp(r.out + strlen(r.out) - 3, "}}\n") == 0);
    double o = tanh(2 * -3 + 6.8813735870195432), d = 1 - o * o;
    expect_json("tanh(x1*w1 + x2*w2 + b)", "x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432", o, 5,
                NAMES("x1", "x2", "w1", "w2", "b"), GRADS(d * -3, d * 1, d * 2, d * 0, d));
}

Test(grad_cli, hand_computed_values)
{
    expect_json("x^2", "x=3", 9, 1, NAMES("x"), GRADS(6));
    expect_json("-x^2", "x=3", -9, 1, NAMES("x"), GRADS(-6)); /* -(x^2), not (-x)^2 */
    expect_json("(-x)^2", "x=3", 9, 1, NAMES("x"), GRADS(6));
    expect_json("2^3^2", "", 512, 0, NAMES(NULL), GRADS(0)); /* 2^(3^2) */
    expect_json("x^-1", "x=4", 0.25, 1, NAMES("x"), GRADS(-1.0 / 16));
    expect_json("1 - 2 - 3", "", -4, 0, NAMES(NULL), GRADS(0)); /* left-associative */
    expect_json("8 / 4 / 2", "", 1, 0, NAMES(NULL), GRADS(0));
    expect_json("1 + 2 * 3", "", 7, 0, NAMES(NULL), GRADS(0));
    expect_json("x*y + sin(x)", "x=0.5 y=-2", 0.5 * -2 + sin(0.5), 2, NAMES("x", "y"),
                GRADS(-2 + cos(0.5), 0.5));
    expect_json("x / y", "x=3 y=2", 1.5, 2, NAMES("x", "y"), GRADS(0.5, -0.75));
    expect_json("exp(x) + log(y)", "x=1 y=4", exp(1) + log(4), 2, NAMES("x", "y"),
                GRADS(exp(1), 0.25));
    expect_json("sqrt(x)", "x=4", 2, 1, NAMES("x"), GRADS(0.25));
    expect_json("abs(x)", "x=-3", 3, 1, NAMES("x"), GRADS(-1));
    expect_json("cos(x)", "x=1", cos(1), 1, NAMES("x"), GRADS(-sin(1)));
    expect_json("sigmoid(x)", "x=0", 0.5, 1, NAMES("x"), GRADS(0.25));
    expect_json("softplus(x)", "x=0", log(2), 1, NAMES("x"), GRADS(0.5));
    expect_json("relu(x) + relu(y)", "x=-1 y=2", 2, 2, NAMES("x", "y"), GRADS(0, 1));
    expect_json("leaky_relu(x, 0.1)", "x=-2", -0.2, 1, NAMES("x"), GRADS(0.1));
    expect_json("max(x, y) + min(x, y)", "x=1 y=2", 3, 2, NAMES("x", "y"), GRADS(1, 1));
    expect_json("max(x, y)", "x=1 y=2", 2, 2, NAMES("x", "y"), GRADS(0, 1));
    expect_json("step(x) + sign(x)", "x=0.5", 2, 1, NAMES("x"), GRADS(0));
    expect_json("1e-3*x + 2.5E+1 + .5", "x=7", 0.007 + 25.5, 1, NAMES("x"), GRADS(1e-3));
    expect_json("x^y", "x=2 y=3", 8, 2, NAMES("x", "y"), GRADS(12, 8 * log(2)));
    /* a variable exponent is ad_power, not exp(y log x): defined for x <= 0 too */
    expect_json("x^y", "x=0 y=2", 0, 2, NAMES("x", "y"), GRADS(0, 0));
    expect_json("0^x", "x=0", 1, 1, NAMES("x"), GRADS(0));
    /* a negative base: 4 and d/dx = -4 as PyTorch; d/dy = 4 ln(-2) is undefined:
       named, and exit status 1 */
    result neg = run(NULL, "'x^y' x=-2 y=2 --json");
    cr_assert_eq(neg.status, 1);
    cr_assert_str_eq(neg.out, "chainrule grad: power: inputs -2, 2 give a non-finite derivative "
                              "at t1\n{\"value\": 4, \"grad\": {\"x\": -4, \"y\": null}}\n");
    expect_json("x*x*x", "x=2 unused=5", 8, 2, NAMES("x", "unused"), GRADS(12, 0));
    expect_json("a + a", "a=1", 2, 1, NAMES("a"), GRADS(2)); /* fan-out sums */
    expect_json("  tanh ( x )  ", "x=0", 0, 1, NAMES("x"), GRADS(1));
}

Test(grad_cli, text_output_and_check)
{
    result r = run(NULL, "'x^2 + y' x=3 y=1 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "L = 10\n"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "∂L/∂x = 6    finite difference 6"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "∂L/∂y = 1    finite difference 1"));
    r = run(NULL, "'x^2' x=3 --json --check");
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "%s", r.out);
    cJSON *fd = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "finite_difference"), "x");
    cr_assert_float_eq(fd->valuedouble, 6, 1e-6);
    cJSON *gc = cJSON_GetObjectItem(root, "gradcheck");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(gc, "pass")), "%s", r.out);
    cr_assert_lt(cJSON_GetObjectItem(gc, "max_abs_err")->valuedouble, 1e-6);
    cJSON_Delete(root);
    r = run(NULL, "'x^2 + y' x=3 y=1 --check");
    cr_assert_not_null(strstr(r.out, "gradient check: pass (max |diff| "), "%s", r.out);
}

/* --check explains itself: a mismatch where an op is not differentiable (the
   registry's nondiff rule) is labelled kink or discontinuity and expected
   (exit 0); one where the function is smooth fails the check (exit 1). */
Test(grad_cli, check_labels_kinks_and_discontinuities)
{
    result r = run(NULL, "'relu(x) + y^2' x=0 y=2 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "∂L/∂x = 0    finite difference 0.5 (|diff| 0.5): kink of "
                                     "relu at t1 (the slope jumps), expected there\n"),
                       "%s", r.out);
    cr_assert_not_null(strstr(r.out, "∂L/∂y = 4    finite difference 4 (|diff| "), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "gradient check: pass (1 mismatch where the function is not "
                                     "differentiable, which a finite difference cannot estimate"),
                       "%s", r.out);
    r = run(NULL, "'relu(x) + y^2' x=0 y=2 --check --json");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "%s", r.out);
    cJSON *gc = cJSON_GetObjectItem(root, "gradcheck");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(gc, "pass")), "%s", r.out);
    /* the worst element among those not at a kink */
    cr_assert_str_eq(cJSON_GetObjectItem(gc, "worst")->valuestring, "y");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(gc, "mismatch")), 0);
    cJSON *x = cJSON_GetObjectItem(cJSON_GetObjectItem(gc, "nondifferentiable"), "x");
    cr_assert_not_null(x, "%s", r.out);
    cr_assert_str_eq(cJSON_GetObjectItem(x, "kind")->valuestring, "kink");
    cr_assert_str_eq(cJSON_GetObjectItem(x, "op")->valuestring, "relu");
    cr_assert_str_eq(cJSON_GetObjectItem(x, "node")->valuestring, "t1");
    cr_assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(gc, "nondifferentiable"), "y"));
    cJSON_Delete(root);

    /* a step at 0: the value jumps */
    r = run(NULL, "'step(x)' x=0 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "∂L/∂x = 0    finite difference 500000 (|diff| 5e+05): "
                                     "discontinuity of step at t1 (the value jumps: no "
                                     "derivative), expected there\n"),
                       "%s", r.out);
    /* a kink reached within the finite difference's step, through other ops */
    r = run(NULL, "'abs(x - 1e-9) * 2' x=0 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, ": kink of abs at t2 (the slope jumps), expected there\n"),
                       "%s", r.out);
    cr_assert_not_null(strstr(r.out, "kink of abs"), "%s", r.out);
    /* the other side of clamp's bound, a tie of max, sign */
    r = run(NULL, "'clamp(x, 0, 1)' x=1 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "kink of clamp at t1"), "%s", r.out);
    r = run(NULL, "'sign(x) + max(x, 0)' x=0 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "discontinuity of sign at t1"), "%s", r.out);

    /* the trace's check says the same, from the same library calls */
    r = run(NULL, "'relu(x)' x=0 --trace --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "  ∂L/∂x = 0   finite difference 0.5 (|diff| 0.5): kink of "
                                     "relu at t1, expected there\n"),
                       "%s", r.out);
    /* away from the kink, nothing to explain */
    r = run(NULL, "'relu(x)' x=0.5 --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_null(strstr(r.out, "kink"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "gradient check: pass (max |diff| "), "%s", r.out);
}

/* A real mismatch: detach stops the gradient of a smooth function, so the
   engine's 3 is not the derivative 6 of x·x. Exit status 1. */
Test(grad_cli, check_fails_on_a_real_mismatch)
{
    result r = run(NULL, "'x*detach(x)' x=3 --check");
    cr_assert_eq(r.status, 1, "%s", r.out);
    cr_assert_str_eq(r.out, "L = 9\n"
                            "∂L/∂x = 3    finite difference 6 (|diff| 3): MISMATCH\n"
                            "gradient check: FAIL at x (max |diff| 3, relative 0.5): the gradient "
                            "differs from the finite difference where the function is smooth\n");
    r = run(NULL, "'x*detach(x) + relu(y)' x=3 y=0 --check --json");
    cr_assert_eq(r.status, 1, "%s", r.out);
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "%s", r.out);
    cJSON *gc = cJSON_GetObjectItem(root, "gradcheck");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(gc, "pass")));
    cJSON *mm = cJSON_GetObjectItem(gc, "mismatch");
    cr_assert_eq(cJSON_GetArraySize(mm), 1, "%s", r.out);
    cr_assert_str_eq(cJSON_GetArrayItem(mm, 0)->valuestring, "x");
    cr_assert_not_null(cJSON_GetObjectItem(cJSON_GetObjectItem(gc, "nondifferentiable"), "y"));
    cJSON_Delete(root);
}

static char *slurp(const char *path, size_t *len);
static cJSON *trace_step(cJSON *root, const char *sym);

/* Relative agreement to tol (absolute near 0). */
static bool close_to(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

/* --order 2 against PyTorch (tests/reference/make_hessian_fixtures.py):
   value, gradient and every pair of the Hessian, keyed by name as written. */
Test(grad_cli, hessian_against_pytorch)
{
    char path[512];
    snprintf(path, sizeof path, "%s/reference/cli/hessian.json", CHAINRULE_TEST_DIR);
    size_t len = 0;
    char *text = slurp(path, &len);
    cr_assert_not_null(text, "%s", path);
    cJSON *cases = cJSON_Parse(text);
    cr_assert(cJSON_IsArray(cases), "%s", path);
    int n = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *expr = cJSON_GetObjectItem(c, "expr")->valuestring;
        char args[1024];
        int k = snprintf(args, sizeof args, "'%s'", expr);
        cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(c, "vars"))
        {
            k += snprintf(args + k, sizeof args - (size_t)k, " %s=%.17g",
                          cJSON_GetArrayItem(v, 0)->valuestring,
                          cJSON_GetArrayItem(v, 1)->valuedouble);
        }
        snprintf(args + k, sizeof args - (size_t)k, " --order 2 --json");
        result r = run(NULL, args);
        cr_assert_eq(r.status, 0, "%s: %s", args, r.out);
        cJSON *got = cJSON_Parse(r.out);
        cr_assert_not_null(got, "%s: %s", args, r.out);
        cr_assert(close_to(cJSON_GetObjectItem(got, "value")->valuedouble,
                           cJSON_GetObjectItem(c, "value")->valuedouble, 1e-12),
                  "%s: value", expr);
        cJSON *want_h = cJSON_GetObjectItem(c, "hessian"),
              *got_h = cJSON_GetObjectItem(got, "hessian");
        cr_assert_eq(cJSON_GetArraySize(got_h), cJSON_GetArraySize(want_h), "%s: %s", expr, r.out);
        cJSON *row;
        cJSON_ArrayForEach(row, want_h)
        {
            double g =
                cJSON_GetObjectItem(cJSON_GetObjectItem(got, "grad"), row->string)->valuedouble;
            double w =
                cJSON_GetObjectItem(cJSON_GetObjectItem(c, "grad"), row->string)->valuedouble;
            cr_assert(close_to(g, w, 1e-12), "%s: d/d%s = %.17g, torch %.17g", expr, row->string, g,
                      w);
            cJSON *grow = cJSON_GetObjectItem(got_h, row->string), *cell;
            cr_assert_not_null(grow, "%s: no row %s: %s", expr, row->string, r.out);
            cr_assert_eq(cJSON_GetArraySize(grow), cJSON_GetArraySize(row));
            cJSON_ArrayForEach(cell, row)
            {
                cJSON *gc = cJSON_GetObjectItem(grow, cell->string);
                cr_assert_not_null(gc, "%s: no %s/%s", expr, row->string, cell->string);
                cr_assert(close_to(gc->valuedouble, cell->valuedouble, 1e-10),
                          "%s: d2/d%s d%s = %.17g, torch %.17g", expr, row->string, cell->string,
                          gc->valuedouble, cell->valuedouble);
            }
        }
        cJSON_Delete(got);
        n++;
    }
    cr_assert_geq(n, 10);
    cJSON_Delete(cases);
}

/* --order 2 in text, the exact JSON layout, and --order's usage errors. */
Test(grad_cli, order_two_output)
{
    result r = run(NULL, "'x^2*y' x=3 y=2 --order 2");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_str_eq(r.out, "L = 18\n∂L/∂x = 12\n∂L/∂y = 9\n∂²L/∂x² = 4\n∂²L/∂x∂y = 6\n"
                            "∂²L/∂y∂x = 6\n∂²L/∂y² = 0\n");
    r = run(NULL, "'x^3' x=2 --order 2 --json");
    cr_assert_str_eq(r.out,
                     "{\"value\": 8, \"grad\": {\"x\": 12}, \"hessian\": {\"x\": {\"x\": 12}}}\n");
    r = run(NULL, "'x^3' x=2 --order=1 --json");
    cr_assert_str_eq(r.out, "{\"value\": 8, \"grad\": {\"x\": 12}}\n");
    r = run(NULL, "'x^3' x=2 --order 3");
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.out, "chainrule grad: option --order takes 1 (gradient) or 2 (Hessian), "
                            "not '3' (see 'chainrule grad --help')\n");
}

Test(grad_cli, trace)
{
    result r = run(NULL, "'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432 "
                         "--trace --check");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "step 1: t5 = tanh(t4) = 0.707107\n"), "%s", r.out);
    cr_assert_not_null(
        strstr(r.out, "∂t5/∂t4 = 1 − t5² = 0.5; ∂L/∂t4 = ∂L/∂t5 · ∂t5/∂t4 = 1 · 0.5 = 0.5"));
    cr_assert_not_null(strstr(r.out, "  ∂L/∂x1 = -1.5   finite difference -1.5 (|diff| "));
    r = run(NULL, "'x*x' x=3 --json --trace");
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "%s", r.out);
    cJSON *trace = cJSON_GetObjectItem(root, "trace");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(trace, "steps")), 2);
    cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItem(trace, "steps"), 1);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(x, "terms")), 2); /* x*x: two edges */
    cJSON_Delete(root);
}

/* A parse error: exit 2, "column N: message", and a caret under column N. */
static void expect_error(const char *expr, const char *vars, int column, const char *message)
{
    char args[1024], want[512];
    snprintf(args, sizeof args, "'%s' %s", expr, vars);
    result r = run(NULL, args);
    cr_assert_eq(r.status, 2, "%s: exit %d: %s", expr, r.status, r.out);
    snprintf(want, sizeof want, "chainrule grad: column %d: %s\n  %s\n  %*s^\n", column, message,
             expr, column - 1, "");
    cr_assert_str_eq(r.out, want, "%s", expr);
}

Test(grad_cli, parse_errors_point_at_the_column)
{
    expect_error("tanx(x)", "x=1", 1, "unknown function 'tanx'");
    expect_error("x + y", "x=1", 5, "unknown variable 'y' (give it a value: y=...)");
    expect_error(
        "x +", "x=1", 4,
        "expected a number, a variable, a function or '(', found the end of the expression");
    expect_error("(x + 1", "x=1", 7,
                 "expected ')' to close the '(' at column 1, found the end of the expression");
    expect_error("x + 1)", "x=1", 6, "unmatched ')'");
    expect_error("2 * * x", "x=1", 5,
                 "expected a number, a variable, a function or '(', found '*'");
    expect_error("x x", "x=1", 3, "expected an operator or the end of the expression, found 'x'");
    expect_error("x $ 2", "x=1", 3, "unexpected character '$'");
    expect_error("1e+", "", 1, "malformed number '1e+': the exponent has no digits");
    expect_error("2x", "x=1", 2, "unexpected 'x' after the number '2'");
    expect_error("max(x)", "x=1", 1, "max() takes 2 arguments, got 1");
    expect_error("sin(x, x)", "x=1", 1, "sin() takes 1 argument, got 2");
    expect_error("exp()", "", 5, "exp() takes 1 argument, got 0");
    expect_error("exp + 1", "", 1, "function 'exp' needs arguments in parentheses");
    expect_error("leaky_relu(x, x)", "x=1", 15, "the slope of leaky_relu() must be a constant");
    expect_error("max(x; 2)", "x=1", 6, "unexpected character ';'");
    expect_error("", "", 1, "the expression is empty");
    expect_error("x + 1e999", "x=1", 5,
                 "the number '1e999' is out of range (a double's magnitude is at most "
                 "1.79769e+308)");
}

/* '**' is '^' (Python's spelling): the same precedence and associativity. */
Test(grad_cli, double_star_is_power)
{
    expect_json("x**3", "x=2", 8, 1, NAMES("x"), GRADS(12));
    expect_json("-x**2", "x=3", -9, 1, NAMES("x"), GRADS(-6)); /* -(x**2) */
    expect_json("2**3**2", "", 512, 0, NAMES(NULL), GRADS(0)); /* 2**(3**2) */
    expect_json("2**3^2", "", 512, 0, NAMES(NULL), GRADS(0));  /* mixed: one operator */
    expect_json("x**-1", "x=4", 0.25, 1, NAMES("x"), GRADS(-1.0 / 16));
    expect_json("2*x**2*3", "x=1", 6, 1, NAMES("x"), GRADS(12)); /* tighter than * */
    expect_json("x ** y", "x=2 y=3", 8, 2, NAMES("x", "y"), GRADS(12, 8 * log(2)));
    expect_error("x ** * 2", "x=1", 6,
                 "expected a number, a variable, a function or '(', found '*'");
    expect_error("x * * 2", "x=1", 5,
                 "expected a number, a variable, a function or '(', found '*'");
}

/* Statements NAME = EXPR; name intermediate nodes; the last part is the
   output. The names are the nodes' own: the trace and the pictures show them. */
Test(grad_cli, statements_name_nodes)
{
    double o = tanh(2 * -3 + 6.8813735870195432), d = 1 - o * o;
    expect_json("n = x1*w1 + x2*w2 + b; tanh(n)", "x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432", o, 5,
                NAMES("x1", "x2", "w1", "w2", "b"), GRADS(d * -3, d * 1, d * 2, d * 0, d));
    /* the last part may be a statement (its name is the output's), ';' may end */
    expect_json("n = x*w + b; o = tanh(n);", "x=0.5 w=2 b=-1", 0, 3, NAMES("x", "w", "b"),
                GRADS(2, 0.5, 1));
    expect_json("a = 2*x; c = a + 1; a*c", "x=1", 6, 1, NAMES("x"), GRADS(10)); /* 4x²+2x */
    expect_json("s = 0.1; leaky_relu(x, s)", "x=-2", -0.2, 1, NAMES("x"), GRADS(0.1));
    expect_json("  n=x*x  ;n*n", "x=2", 16, 1, NAMES("x"), GRADS(32));

    result r = run(NULL, "'n = x1*w1 + x2*w2 + b; o = tanh(n)' x1=2 x2=0 w1=-3 w2=1 "
                         "b=6.8813735870195432 --trace");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "chain-rule trace of L = o = 0.707107"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "step 1: o = tanh(n) = 0.707107\n"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "step 2: n = t3 + b = 0.881374\n"), "%s", r.out);
    /* and in the messages: undefined maths at a named node */
    r = run(NULL, "'n = log(x); n*2' x=-1");
    cr_assert_eq(r.status, 1, "%s", r.out);
    const char *named = "chainrule grad: log: input -1 is outside its domain (x > 0) at n\n";
    cr_assert(strncmp(r.out, named, strlen(named)) == 0, "%s", r.out);
    /* and in the JSON trace */
    r = run(NULL, "'n = x*w + b; tanh(n)' x=2 w=3 b=1 --json --trace");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "%s", r.out);
    cJSON *step = trace_step(root, "n");
    cr_assert_not_null(step, "%s", r.out);
    cr_assert_str_eq(cJSON_GetObjectItem(step, "op")->valuestring, "add");
    cJSON_Delete(root);
    char dir[] = "/tmp/chainrule-grad-test-XXXXXX", args[512], path[300];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/n.dot", dir);
    snprintf(args, sizeof args, "'n = x*w + b; tanh(n)' x=2 w=3 b=1 --dot '%s'", path);
    r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.out);
    size_t len = 0;
    char *dot = slurp(path, &len);
    cr_assert_not_null(dot);
    cr_assert_not_null(strstr(dot, "<B>n = t1 + b</B>"), "%s", dot);
    cr_assert_not_null(strstr(dot, "<B>t2 = tanh(n)</B>"), "%s", dot);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
}

Test(grad_cli, statement_errors)
{
    expect_error("y = n*2; n = x; y", "x=1", 5, "'n' is used before its definition at column 10");
    expect_error("n = x*2; n = x*3; n", "x=1", 10, "'n' is already defined at column 1");
    expect_error("x = 2; x", "x=1", 1,
                 "'x' is a variable (given as x=...): a statement needs a new name");
    expect_error("tanh = x*2; tanh", "x=1", 1,
                 "'tanh' is a function: a statement needs a new name");
    expect_error("n = x; n", "x=1", 5,
                 "'n = x' only renames 'x': a statement names a value it computes");
    expect_error("x*2; x", "x=1", 1,
                 "only the last part may be an expression without a name (write NAME = EXPR; "
                 "before it)");
    expect_error("x*2 = 3", "x=1", 5, "'=' after an expression: a statement is NAME = EXPR;");
    expect_error("n == x", "x=1", 4, "'==' is not an operator; a statement is NAME = EXPR;");
    expect_error("n = ; n", "x=1", 5,
                 "expected a number, a variable, a function or '(', found ';'");
    expect_error("n = x*2; m", "x=1", 10, "unknown variable 'm' (give it a value: m=...)");
    expect_error("n = x*2;; n", "x=1", 9, "an empty statement (';' twice)");
    expect_error("x;;", "x=1", 3, "an empty statement (';' twice)");
}

Test(grad_cli, usage_errors)
{
    result r = run(NULL, "'x' x=abc");
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.out, "chainrule grad: 'x=abc': the value is not a number\n");
    r = run(NULL, "'x' x=1 x=2");
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.out, "chainrule grad: variable 'x' is given twice\n");
    r = run(NULL, "'x' 1x=2");
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.out, "is not NAME=VALUE"));
    r = run(NULL, "--json");
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.out, "no expression"));
    r = run(NULL, "'x' x=1 --frobnicate");
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.out, "unknown option '--frobnicate'"));
    r = run(NULL, "--help");
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "usage: chainrule grad"));
}

static bool have_dot(void) { return system("command -v dot >/dev/null 2>&1") == 0; }

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    *len = fread(buf, 1, sizeof buf - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Options through getopt_long (as train, eval and predict): anywhere on the
   line, "--opt VALUE" or "--opt=VALUE", "--" ends them; the first operand is
   the expression even when it begins with '-'. */
Test(grad_cli, options_through_getopt_long)
{
    expect_json("x^2", "x=3", 9, 1, NAMES("x"), GRADS(6));
    result r = run(NULL, "--json 'x^2' x=3");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_str_eq(r.out, "{\"value\": 9, \"grad\": {\"x\": 6}}\n");
    r = run(NULL, "--json -- '-x^2' x=3");
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert_str_eq(r.out, "{\"value\": -9, \"grad\": {\"x\": -6}}\n");
    r = run(NULL, "-- 'x' x=1 --json");
    cr_assert_eq(r.status, 2, "after '--', --json is an operand: %s", r.out);
    cr_assert_str_eq(r.out, "chainrule grad: '--json' is not NAME=VALUE (a name is a letter or "
                            "'_' followed by letters, digits, '_')\n");
    r = run(NULL, "'-x' x=-2 --json");
    cr_assert_str_eq(r.out, "{\"value\": 2, \"grad\": {\"x\": -1}}\n");
    r = run(NULL, "'-1' --json");
    cr_assert_str_eq(r.out, "{\"value\": -1, \"grad\": {}}\n");
    char dir[] = "/tmp/chainrule-grad-test-XXXXXX", args[512], path[300];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/eq.dot", dir);
    snprintf(args, sizeof args, "'x*y' --dot='%s' x=1 y=2", path);
    r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.out);
    size_t len = 0;
    cr_assert_not_null(slurp(path, &len), "--dot=FILE writes FILE");
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
    r = run(NULL, "'x' x=1 --dot");
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.out, "chainrule grad: option --dot needs a value (see 'chainrule grad "
                            "--help')\n");
    r = run(NULL, "'x' x=1 --json=yes");
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.out, "chainrule grad: option --json takes no value (see 'chainrule grad "
                            "--help')\n");
    r = run(NULL, "-h");
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "usage: chainrule grad"));
}

/* A value beyond a double's range is out of range, not "not a number". */
Test(grad_cli, out_of_range_values)
{
    result r = run(NULL, "'x' x=1e400");
    cr_assert_eq(r.status, 2, "%s", r.out);
    cr_assert_str_eq(r.out, "chainrule grad: 'x=1e400': the value is out of range (a double's "
                            "magnitude is at most 1.79769e+308)\n");
    r = run(NULL, "'x' x=-1e400");
    cr_assert_eq(r.status, 2, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "'x=-1e400': the value is out of range"), "%s", r.out);
    /* underflow to 0 or a subnormal is a number */
    expect_json("x*1", "x=1e-400", 0, 1, NAMES("x"), GRADS(1));
}

Test(grad_cli, pictures)
{
    char dir[] = "/tmp/chainrule-grad-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char args[1024], dotf[256], svg[256], png[256];
    snprintf(dotf, sizeof dotf, "%s/g.dot", dir);
    snprintf(svg, sizeof svg, "%s/g.svg", dir);
    snprintf(png, sizeof png, "%s/g.png", dir);
    snprintf(args, sizeof args, "'relu(x) * y' x=0 y=2 --dot '%s'", dotf);
    result r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.out);
    size_t len = 0;
    char *text = slurp(dotf, &len);
    cr_assert_not_null(text);
    cr_assert(strncmp(text, "digraph chainrule {", 19) == 0);
    cr_assert_not_null(strstr(text, "⚠ undefined at x = 0 (engine uses 0)"), "%s", text);
    if (have_dot()) {
        snprintf(args, sizeof args, "'relu(x) * y' x=0 y=2 --svg '%s' --png '%s' --backward", svg,
                 png);
        r = run(NULL, args);
        cr_assert_eq(r.status, 0, "%s", r.out);
        text = slurp(svg, &len);
        cr_assert(text && strstr(text, "<svg"));
        text = slurp(png, &len);
        cr_assert(text && len > 8 && memcmp(text, "\x89PNG", 4) == 0);
    }
    /* without Graphviz: a clear message and exit 1, the result still printed */
    snprintf(args, sizeof args, "'x' x=1 --png '%s/none.png'", dir);
    r = run("PATH=/nonexistent", args);
    cr_assert_eq(r.status, 1, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "Graphviz 'dot' is not installed"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "L = 1\n"));
    /* an unwritable DOT path */
    r = run(NULL, "'x' x=1 --dot /nonexistent-dir/g.dot");
    cr_assert_eq(r.status, 1);
    cr_assert_not_null(strstr(r.out, "cannot write '/nonexistent-dir/g.dot'"));
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
}

/* The trace step of node sym in a --trace --json answer. */
static cJSON *trace_step(cJSON *root, const char *sym)
{
    cJSON *steps = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "trace"), "steps"), *st;
    cJSON_ArrayForEach(st, steps)
    {
        if (strcmp(cJSON_GetObjectItem(st, "node")->valuestring, sym) == 0)
            return st;
    }
    return NULL;
}

/* Every unary op of the registry works in `chainrule grad` and in the dumps
 * with no edit outside ops.def: it is called by its registry name with the
 * parameters its registry entry describes, its value and gradient are the
 * engine's, the trace shows its form and, as the local derivative, the
 * engine's gradient, and the DOT picture has no unexpanded template. */
Test(grad_cli, every_registry_unary_op)
{
    const double x0 = 0.7;
    int tested = 0;
    for (int op = 0; op < ad_op_count(); op++) {
        if (ad_op_kind_of(op) != AD_KIND_UNARY)
            continue;
        const char *name = ad_op_call_name(op);
        cr_assert_not_null(name, "unary op %s is not callable in chainrule grad", ad_op_name(op));
        cr_assert_eq(ad_op_find_call(name), op);
        double fp[2] = {0, 0};
        int np = ad_op_param_count(op);
        char expr[128];
        int k = snprintf(expr, sizeof expr, "%s(x", name);
        for (int i = 0; i < np; i++) {
            fp[i] = 0.3 + i; /* lo < hi for clamp */
            k += snprintf(expr + k, sizeof expr - (size_t)k, ", %g", fp[i]);
        }
        snprintf(expr + k, sizeof expr - (size_t)k, ")");

        /* the engine's own value and gradient */
        ad_graph *g = ad_graph_new(AD_F64);
        ad_node *x = ad_scalar(g, x0, "x");
        ad_node *y = ad_op_apply(op, 1, &x, fp, np, NULL, 0);
        cr_assert_not_null(y, "%s: %s", expr, ad_graph_error(g));
        cr_assert_eq(ad_node_op(y), ad_op_find(ad_op_name(op)));
        cr_assert_eq(ad_backward(y), 0, "%s: %s", expr, ad_graph_error(g));
        double value = ad_item(y), grad = ad_grad_item(x);
        expect_json(expr, "x=0.7", value, 1, NAMES("x"), GRADS(grad));

        /* the trace, through the CLI */
        char args[256];
        snprintf(args, sizeof args, "'%s' x=0.7 --json --trace", expr);
        result r = run(NULL, args);
        cr_assert_eq(r.status, 0, "%s: %s", expr, r.out);
        cJSON *root = cJSON_Parse(r.out);
        cr_assert_not_null(root, "%s: not JSON: %s", expr, r.out);
        cJSON *top = trace_step(root, "t1"), *xs = trace_step(root, "x");
        cr_assert_not_null(top, "%s: %s", expr, r.out);
        cr_assert_str_eq(cJSON_GetObjectItem(top, "op")->valuestring, ad_op_name(op));
        char def[128];
        snprintf(def, sizeof def, "%s", cJSON_GetObjectItem(top, "definition")->valuestring);
        cr_assert(strchr(def, '@') == NULL && strstr(def, "x") != NULL, "%s: definition '%s'", expr,
                  def);
        if (!ad_op_differentiable(op) || grad == 0) {
            /* nothing reaches x: no step for it, or a step without terms */
            cr_assert(!xs || cJSON_GetArraySize(cJSON_GetObjectItem(xs, "terms")) == 0,
                      "%s: no gradient flows: %s", expr, r.out);
        } else {
            cr_assert_not_null(xs, "%s: %s", expr, r.out);
            cJSON *terms = cJSON_GetObjectItem(xs, "terms");
            cr_assert_eq(cJSON_GetArraySize(terms), 1, "%s: %s", expr, r.out);
            cJSON *t = cJSON_GetArrayItem(terms, 0);
            cr_assert(strchr(cJSON_GetObjectItem(t, "rule")->valuestring, '@') == NULL);
            cr_assert_float_eq(cJSON_GetObjectItem(t, "local")->valuedouble, grad,
                               1e-15 * (1 + fabs(grad)), "%s: local derivative", expr);
            cr_assert_float_eq(cJSON_GetObjectItem(t, "contribution")->valuedouble, grad,
                               1e-15 * (1 + fabs(grad)), "%s: contribution", expr);
            cr_assert_float_eq(cJSON_GetObjectItem(xs, "grad")->valuedouble, grad, 1e-15);
        }
        cJSON_Delete(root);

        /* the picture, in-process: the node drawn by its form, the edge by its rule */
        char *dot = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&dot, &len);
        cr_assert_eq(ad_dump_dot(g, y, f, 0), 0, "%s: %s", expr, ad_graph_error(g));
        fclose(f);
        cr_assert_null(strchr(dot, '@'), "%s: unexpanded template in\n%s", expr, dot);
        char head[160];
        snprintf(head, sizeof head, "<B>t1 = %s</B>", def);
        cr_assert_not_null(strstr(dot, head), "%s: '%s' not drawn:\n%s", expr, head, dot);
        free(dot);
        ad_graph_free(g);
        tested++;
    }
    cr_assert_geq(tested, 19, "the registry's unary ops: %d", tested);
}

/* Undefined maths is named (anomaly mode): the op, its input, the registry's
   domain and the node; the result and the requested files are still written,
   and the exit status is 1. */
Test(grad_cli, bad_maths_is_named)
{
    static const struct {
        const char *args, *message;
    } cases[] = {
        {"'log(x)' x=-1", "chainrule grad: log: input -1 is outside its domain (x > 0) at t1\n"},
        {"'1/x' x=0",
         "chainrule grad: div: inputs 1, 0 are outside its domain (divisor ≠ 0) at t1\n"},
        {"'sqrt(x)' x=-1", "chainrule grad: sqrt: input -1 is outside its domain (x ≥ 0) at t1\n"},
        {"'exp(x)' x=1000",
         "chainrule grad: exp: input 1000 is outside its domain (x ≤ 709.78; larger overflows) "
         "at t1\n"},
        {"'x/y' x=0 y=0",
         "chainrule grad: div: inputs 0, 0 are outside its domain (divisor ≠ 0) at t1\n"},
        {"'sqrt(x)' x=0", "chainrule grad: sqrt: input 0 gives a non-finite derivative at t1\n"},
    };
    char dir[] = "/tmp/chainrule-grad-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024], dotf[300];
        snprintf(dotf, sizeof dotf, "%s/bad%zu.dot", dir, i);
        snprintf(args, sizeof args, "%s --json --dot '%s'", cases[i].args, dotf);
        result r = run(NULL, args);
        cr_assert_eq(r.status, 1, "%s: exit %d: %s", cases[i].args, r.status, r.out);
        size_t mlen = strlen(cases[i].message);
        cr_assert(strncmp(r.out, cases[i].message, mlen) == 0, "%s: %s", cases[i].args, r.out);
        cJSON *root = cJSON_Parse(r.out + mlen);
        cr_assert_not_null(root, "%s: the JSON is still printed: %s", cases[i].args, r.out);
        cJSON_Delete(root);
        size_t len = 0;
        char *text = slurp(dotf, &len);
        cr_assert(text && strncmp(text, "digraph chainrule {", 19) == 0, "%s", cases[i].args);
        /* the picture marks the bad node and its edges, with a legend entry */
        cr_assert_not_null(strstr(text, "color=\"#7b3294\""), "%s: %s", cases[i].args, text);
        cr_assert_not_null(strstr(text, "purple: a value or gradient that is not finite"));
    }
    /* the text output: a NaN is "nan", never "-nan" (its sign means nothing) */
    result t = run(NULL, "'log(x)' x=-1");
    cr_assert_eq(t.status, 1);
    cr_assert_not_null(strstr(t.out, "\nL = nan\n∂L/∂x = -1\n"), "%s", t.out);
    cr_assert_null(strstr(t.out, "-nan"), "%s", t.out);
    /* a defined point stays exit 0, with no message */
    result r = run(NULL, "'log(x)' x=2");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "L = 0.6931471806\n∂L/∂x = 0.5\n");
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    cr_assert_eq(system(rm), 0);
}

/* The width of a PNG file, from its IHDR chunk. */
static long png_width(const char *path)
{
    size_t len = 0;
    const unsigned char *p = (const unsigned char *)slurp(path, &len);
    cr_assert(p && len > 24 && memcmp(p, "\x89PNG", 4) == 0, "%s is not a PNG", path);
    return (long)p[16] << 24 | (long)p[17] << 16 | (long)p[18] << 8 | (long)p[19];
}

/* --dpi, --font-size and --compact reach the picture; bad values are usage
   errors. */
Test(grad_cli, pictures_for_slides)
{
    char dir[] = "/tmp/chainrule-grad-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char args[1024], dotf[256], png[2][256];
    snprintf(dotf, sizeof dotf, "%s/s.dot", dir);
    snprintf(args, sizeof args,
             "'sigmoid(x*w + b)' x=2 w=4 b=2 --dot '%s' --dpi 150 --font-size=14 --compact", dotf);
    result r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.out);
    size_t len = 0;
    char *text = slurp(dotf, &len);
    cr_assert_not_null(text);
    cr_assert_not_null(strstr(text, "rankdir=TB, fontname=\"DejaVu Sans\", fontsize=15, dpi=150"),
                       "%s", text);
    cr_assert_not_null(strstr(text, "fontsize=14]"));
    /* sigmoid(10): the value keeps the digits that tell it from 1 */
    cr_assert_not_null(strstr(text, "value 0.99995 · grad 1"), "%s", text);
    cr_assert_null(strstr(text, "scalar"));
    cr_assert_null(strstr(text, "(param)"));
    if (have_dot()) {
        for (int i = 0; i < 2; i++) {
            snprintf(png[i], sizeof png[i], "%s/s%d.png", dir, i);
            snprintf(args, sizeof args, "'tanh(x)' x=1 --png '%s' --dpi %d", png[i], 50 * (i + 1));
            r = run(NULL, args);
            cr_assert_eq(r.status, 0, "%s", r.out);
        }
        long w1 = png_width(png[0]), w2 = png_width(png[1]);
        cr_assert(w2 > 1.8 * w1 && w2 < 2.2 * w1, "50 dpi: %ld px, 100 dpi: %ld px", w1, w2);
    }
    r = run(NULL, "'x' x=1 --dpi 0");
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.out, "option --dpi takes a number in (0, 10000], not '0'"), "%s",
                       r.out);
    r = run(NULL, "'x' x=1 --font-size big");
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.out, "option --font-size takes a number"), "%s", r.out);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
}

/* --html FILE: the stepper page of the expression (its content and the
   browser's view: test_dump_html.c, test_stepper_browser.c); without
   Graphviz a clear message, exit 1, the result still printed. */
Test(grad_cli, html_stepper_page)
{
    char dir[] = "/tmp/chainrule-grad-html-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char args[1024], page[256];
    snprintf(page, sizeof page, "%s/neuron.html", dir);
    if (have_dot()) {
        snprintf(args, sizeof args,
                 "'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432 --html '%s'",
                 page);
        result r = run(NULL, args);
        cr_assert_eq(r.status, 0, "%s", r.out);
        size_t len = 0;
        char *text = slurp(page, &len);
        cr_assert(text && strncmp(text, "<!DOCTYPE html>", 15) == 0);
        cr_assert_not_null(strstr(text, "<svg"));
        cr_assert_not_null(strstr(text, "id=\"steps\""));
        cr_assert_not_null(strstr(text, "\"step\":10,"), "ten backward steps");
        cr_assert_null(strstr(text, "\"step\":11,"));
        cr_assert_null(strstr(text, "src=\"http"));
    }
    snprintf(args, sizeof args, "'x*x' x=3 --html '%s/none.html'", dir);
    result r = run("PATH=/nonexistent", args);
    cr_assert_eq(r.status, 1, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "Graphviz 'dot' is not installed"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "L = 9\n"), "%s", r.out);
    snprintf(args, sizeof args, "%s/none.html", dir);
    cr_assert_neq(access(args, F_OK), 0, "no page is left behind");
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
}
