/* nn_impl.h -- internals shared by the nn/ sources. Never installed. */
#ifndef CHAINRULE_NN_IMPL_H
#define CHAINRULE_NN_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "chainrule/nn.h"

/* Type dispatch over the two dtypes: the body is written once. */
#define NN_DISPATCH(dtype, ...)                                                                    \
    do {                                                                                           \
        if ((dtype) == AD_F32) {                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            typedef double T;                                                                      \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

#define NN_ERRLEN 512

/* errors.c: records msg as the thread's last error and returns status. */
int nn_fail(int status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* errors.c: records the message as the sticky error of at's graph (the
 * functional layers' convention: check ad_graph_error once) and returns NULL. */
void *nn_graph_fail(const ad_node *at, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* "(2,3)" into buf. */
const char *nn_shape_str(const ad_node *n, char *buf, size_t size);
size_t nn_dtype_size(ad_dtype dtype);

/* ------------------------------------------------------------------ model */

typedef struct {
    nn_layer_kind kind;
    int64_t units;         /* dense/perceptron output width */
    int bias;              /* dense: has a bias */
    nn_init init;          /* dense */
    nn_activation act;     /* activation, perceptron step */
    double alpha;          /* activation parameter */
    double rate;           /* dropout */
    double momentum;       /* batch norm */
    double eps;            /* batch norm */
    int index;             /* number among layers of the same kind (parameter names) */
    int64_t in, out;       /* widths, set by build */
    int64_t w_off, b_off;  /* parameter offsets (-1 when absent) */
    int64_t s_off;         /* batch norm: running mean at s_off, running var at s_off + out */
    ad_node *w, *b;        /* weight/gamma and bias/beta leaves */
    ad_node *bmean, *bvar; /* batch norm: batch statistics nodes */
    ad_node *output;
} nn_layer;

typedef struct {
    char name[48];
    int ndim;
    int64_t shape[2];
    int64_t numel, offset;
    ad_node *node;
} nn_param_entry;

struct nn_model {
    ad_dtype dtype;
    ad_alloc_fn alloc;
    void *ud;
    int64_t in_features, out_features;
    int64_t max_batch, batch;

    nn_layer *layers;
    int nlayers, cap_layers;
    int kind_count[5];
    nn_loss loss;

    bool built, training, forwarded;
    ad_graph *g;
    ad_node *input, *target, *output, *loss_node, *train_flag;

    void *params, *grads, *state;
    int64_t nparams, nstate;
    nn_param_entry *pinfo;
    int npinfo, cap_pinfo;

    char err[NN_ERRLEN];
};

/* model.c: records the message on m (when not NULL) and in nn_last_error. */
int nn_model_fail(nn_model *m, int status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void *nn_model_mem(nn_model *m, void *p, size_t osize, size_t nsize);

/* optim.c: the model an optimizer is bound to (NULL for a flat one). */
nn_model *nn_optimizer_model(const nn_optimizer *o);

#endif
