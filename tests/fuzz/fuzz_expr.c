/* libFuzzer target: the `chainrule grad` expression parser (cli/expr.c) on
 * arbitrary text. The first byte picks the dtype, whether anomaly mode is on
 * and, with its high bit set, an allocator that fails at a chosen call; the
 * rest is the expression. Parsing must either return a node (then backward
 * either succeeds or leaves an error) or fill the error with a message and a
 * column inside the text; nothing may crash, overflow the stack or leak.
 * Expressions include statements (NAME = EXPR;) and '**'; a parsed one also
 * goes through the gradient check and its kink/jump classification
 * (ad_gradcheck, ad_smoothness_at), as `chainrule grad --check` runs them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../cli/expr.h"

typedef struct {
    long live, calls, fail_at;
} counter;

static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *c = ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr)
            c->live--;
        free(ptr);
        return NULL;
    }
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return NULL;
    void *q = realloc(ptr, nsize);
    if (q && !ptr)
        c->live++;
    return q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int head = data[0];
    counter c = {0, 0, 0};
    if (head & 0x80)
        c.fail_at = 1 + ((head >> 2) & 0x1f) * 3;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0'; /* stops at the first NUL byte, like argv */
    size_t len = strlen(text);

    ad_graph *g = ad_graph_new_with((head & 1) ? AD_F32 : AD_F64, fuzz_alloc, &c);
    if (!g) {
        free(text);
        return 0;
    }
    ad_graph_set_check_finite(g, (head >> 1) & 1);
    cr_var vars[3] = {{"x", ad_scalar(g, 0.5, "x")},
                      {"y", ad_scalar(g, -2.0, "y")},
                      {"long_name_2", ad_scalar(g, 3.0, "long_name_2")}};
    if (!ad_graph_error(g)) {
        cr_expr_error err;
        ad_node *f = cr_expr_parse(g, text, vars, 3, &err);
        if (f) {
            if (err.message[0])
                abort(); /* success with an error message */
            if (ad_backward(f) != 0 && !ad_graph_error(g))
                abort(); /* backward failed without saying why */
            /* the gradient check and its classification of kinks and jumps
               (what `chainrule grad --check` runs) on whatever was built */
            if (!ad_graph_error(g)) {
                ad_node *leaves[3] = {vars[0].node, vars[1].node, vars[2].node};
                const ad_node *where = NULL;
                int kind = ad_smoothness_at(f, leaves[head % 3], 0, 0, &where);
                if (kind < 0 ? !ad_graph_error(g) : (kind > 0) != (where != NULL))
                    abort(); /* an error without a message, or a kind without its node */
                ad_gradcheck_result r;
                if (!ad_graph_error(g) && ad_gradcheck(f, 3, leaves, NULL, &r) < 0 &&
                    !ad_graph_error(g))
                    abort();
            }
        } else {
            if (!err.message[0])
                abort(); /* failed without saying why */
            if (err.column < 0 || (size_t)err.column > len + 1)
                abort(); /* the caret would point outside the text */
        }
    }
    ad_graph_free(g);
    free(text);
    if (c.live != 0)
        abort(); /* the graph leaked a block */
    return 0;
}
