/* errors.c -- the functional layers' errors (on the graph) and shape text. */
#include <stdarg.h>
#include <stdio.h>

#include "nn_impl.h"

void *nn_graph_fail(const ad_node *at, const char *fmt, ...)
{
    char buf[NN_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ad_graph_set_error(ad_node_graph(at), buf);
    return NULL;
}
