/* makemore_model.h -- the three character models of examples/makemore.c,
 * built in one place for the example and for the transformer row of the
 * benchmarks (bench/mlp_bench.c, `transformer`), so the row times exactly
 * the model the example trains. Sizes: */
#ifndef MAKEMORE_MODEL_H
#define MAKEMORE_MODEL_H

#include <stdint.h>

#include <chainrule/autodiff.h>
#include <chainrule/nn.h>

#define MAKEMORE_VOCAB 27       /* '.' and a..z */
#define MAKEMORE_MLP_CONTEXT 3  /* characters seen by the MLP */
#define MAKEMORE_SEQ_CONTEXT 16 /* window T of the sequence models */
#define MAKEMORE_EMBED 64       /* transformer width E (and the LSTM's input) */
#define MAKEMORE_HEADS 4        /* attention heads of a transformer block */
#define MAKEMORE_FF 256         /* transformer feed-forward width */
#define MAKEMORE_BLOCKS 2       /* transformer blocks */

typedef enum { MAKEMORE_MLP, MAKEMORE_LSTM, MAKEMORE_TRANSFORMER } makemore_kind;

/* Builds the model for batch b with its loss (mean cross-entropy per
 * predicted character): inputs "ids" (b, T) and "targets" ((b, T) for the
 * sequence models, (b) for the MLP, whose T is MAKEMORE_MLP_CONTEXT);
 * logits (b, 27) for the MLP and (b, T, 27) for the others. *target is set
 * to the targets node. The caller frees the model; NULL with a message on
 * stderr on failure. */
nn_model *makemore_model(makemore_kind kind, int64_t b, uint64_t seed, ad_node **target);

#endif
