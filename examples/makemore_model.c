/* makemore_model.c -- the models of examples/makemore.c (see makemore_model.h). */
#include "makemore_model.h"

#include <stdio.h>

nn_model *makemore_model(makemore_kind kind, int64_t b, uint64_t seed, ad_node **target)
{
    ad_error err;
    nn_model *m = nn_model_new(AD_F32, seed, &err);
    if (!m) {
        fprintf(stderr, "makemore_model: %s\n", err.message);
        return NULL;
    }
    int seq = kind != MAKEMORE_MLP;
    int64_t T = seq ? MAKEMORE_SEQ_CONTEXT : MAKEMORE_MLP_CONTEXT, V = MAKEMORE_VOCAB;
    ad_node *ids = nn_model_add_input(m, 2, (int64_t[]){b, T}, "ids");
    *target = nn_model_add_input(m, seq ? 2 : 1, (int64_t[]){b, T}, "targets");
    ad_node *logits = NULL;
    if (kind == MAKEMORE_MLP) {
        ad_node *h = nn_add_flatten(m, nn_add_embedding(m, ids, V, 10)); /* (b, 30) */
        h = nn_add_activation(m, nn_add_dense(m, h, 200, 1), NN_ACT_TANH, 0);
        logits = nn_add_dense(m, h, V, 1); /* (b, 27) */
    } else if (kind == MAKEMORE_LSTM) {
        ad_node *x = nn_add_embedding(m, ids, V, MAKEMORE_EMBED);       /* (b, T, 64) */
        ad_node *h = nn_add_lstm(m, x, 128, 1, NULL, NULL, NULL, NULL); /* (b, T, 128) */
        logits = nn_add_dense(m, h, V, 1);                              /* (b, T, 27) */
    } else {
        double pos[MAKEMORE_SEQ_CONTEXT];
        for (int t = 0; t < MAKEMORE_SEQ_CONTEXT; t++)
            pos[t] = t;
        ad_node *where = ad_const(nn_model_graph(m), 1, (int64_t[]){T}, pos, "positions");
        /* one statement each: the order the parameters are made in (and
         * drawn from the model's generator) must not be left to the
         * compiler's order of evaluating a call's arguments */
        ad_node *tok = nn_add_embedding(m, ids, V, MAKEMORE_EMBED);  /* (b, T, E) */
        ad_node *at = nn_add_embedding(m, where, T, MAKEMORE_EMBED); /* (T, E), broadcast */
        ad_node *x = ad_add(tok, at);
        for (int k = 0; k < MAKEMORE_BLOCKS; k++)
            x = nn_add_transformer_block(m, x, MAKEMORE_HEADS, MAKEMORE_FF, 1, 0.0);
        x = nn_add_layer_norm(m, x, 1, 1e-5, 1);
        logits = nn_add_dense(m, x, V, 1); /* (b, T, 27) */
    }
    /* (b*T, 27) against (b*T) class indices; -1 follows the batch */
    ad_node *flat = ad_reshape(logits, 2, (int64_t[]){-1, V});
    ad_node *labels = ad_reshape(*target, 1, (int64_t[]){-1});
    ad_node *loss = nn_cross_entropy(flat, labels);
    if (nn_model_finish(m, logits) != 0 || nn_model_set_loss_node(m, loss, *target) != 0) {
        fprintf(stderr, "makemore_model: %s\n", nn_model_error(m));
        nn_model_free(m);
        return NULL;
    }
    return m;
}
