/* errors.c -- status texts and the thread's last error message. */
#include <stdarg.h>
#include <stdio.h>

#include "nn_impl.h"

static _Thread_local char last_error[NN_ERRLEN];

const char *nn_status_string(int status)
{
    switch (status) {
    case NN_OK:
        return "ok";
    case NN_ERR_NULL:
        return "NULL argument";
    case NN_ERR_ARG:
        return "bad argument";
    case NN_ERR_SHAPE:
        return "mismatched shape";
    case NN_ERR_LABEL:
        return "class index out of range";
    case NN_ERR_STATE:
        return "wrong state";
    case NN_ERR_GRAPH:
        return "autodiff graph error";
    case NN_ERR_MEMORY:
        return "out of memory";
    default:
        return "unknown status";
    }
}

const char *nn_last_error(void) { return last_error; }

int nn_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

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

size_t nn_dtype_size(ad_dtype dtype) { return dtype == AD_F32 ? sizeof(float) : sizeof(double); }
