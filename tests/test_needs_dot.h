/* test_needs_dot.h -- the Criterion runner of a test program whose checks
 * need Graphviz: without `dot` on PATH the program exits with Meson's skip
 * status 77 instead of passing without checking. Include it once, in place
 * of Criterion's own main. */
#ifndef CHAINRULE_TEST_NEEDS_DOT_H
#define CHAINRULE_TEST_NEEDS_DOT_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static bool have_dot(void) { return system("command -v dot >/dev/null 2>&1") == 0; }

int main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    int rc = 0;
    if (!have_dot()) {
        fprintf(stderr, "Graphviz 'dot' is not installed: skipped (these checks need it)\n");
        rc = 77;
    } else if (criterion_handle_args(argc, argv, true)) {
        rc = !criterion_run_all_tests(tests);
    }
    criterion_finalize(tests);
    return rc;
}

#endif
