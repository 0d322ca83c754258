/* fit.c -- the training loop over a data set: epochs of mini-batches from a
 * batcher, optionally one shard of every batch per process with a hook that
 * averages the gradients (data-parallel), and the finiteness checks a
 * training run makes before it saves anything. */
#include <math.h>

#include "nn_impl.h"

int64_t nn_model_nonfinite_params(nn_model *m)
{
    if (!m)
        return -1;
    const void *p = nn_model_params(m);
    int64_t n = nn_model_param_count(m), bad = 0;
    if (!p || n <= 0)
        return 0;
    NN_DISPATCH(nn_model_dtype(m), {
        const T *v = p;
        for (int64_t i = 0; i < n; i++)
            bad += !isfinite(v[i]);
    });
    return bad;
}
