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

const char *nn_shape_str(const ad_node *n, char *buf, size_t size)
{
    size_t k = 0;
    int nd = ad_ndim(n);
    const int64_t *sh = ad_shape(n);
    k += (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < nd && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, i ? ",%lld" : "%lld", (long long)sh[i]);
    if (k < size)
        snprintf(buf + k, size - k, ")");
    return buf;
}
