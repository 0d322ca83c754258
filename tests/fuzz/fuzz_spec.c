/* libFuzzer target: the layer-list grammar of `chainrule train --model`
 * (nn_spec_check, nn_model_from_spec, nn_model_spec). The first byte picks
 * the options: bits 0-1 the example's shape ((1,8,8), (3,6,5), (12), (2,9)),
 * bit 2 the dtype, bits 3-4 the batch (1 to 4), bits 5-7 the outputs (1 to
 * 8); the rest is the text. Checks: every failure has a message and a
 * column inside the text (or 0); a text the checker refuses is refused by
 * the builder too; a model that is built writes itself back as a list
 * (nn_model_spec) that builds the same list again, and runs a forward
 * pass; memory comes from an allocator that refuses blocks over 16 MB (a
 * list may ask for any size: that must be an error) and counts blocks, so
 * a leak aborts. Seeds: tests/fuzz/corpus/spec. */
#include <stdlib.h>
#include <string.h>

#include <chainrule/autodiff.h>
#include <chainrule/nn.h>

#include "fuzz_file_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The model's allocator: blocks over 16 MB are refused. */
static fuzz_heap heap = {0, (size_t)16 << 20};

/* A failure must say why, at a column inside the text (0: none). */
static void check_failure(const ad_error *err, int column, size_t len)
{
    if (!err->message[0] || err->code == AD_OK || column < 0 || (size_t)column > len + 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    static const int64_t shapes[4][3] = {{1, 8, 8}, {3, 6, 5}, {12, 0, 0}, {2, 9, 0}};
    static const int ndims[4] = {3, 3, 1, 2};
    int pick = data[0] & 3;
    nn_spec_options o = {.dtype = (data[0] & 4) ? AD_F64 : AD_F32,
                         .ndim = ndims[pick],
                         .outputs = 1 + (data[0] >> 5),
                         .loss = NN_LOSS_CROSS_ENTROPY,
                         .batch = 1 + ((data[0] >> 3) & 3),
                         .seed = 1,
                         .alloc = fuzz_heap_alloc,
                         .alloc_ud = &heap};
    memcpy(o.shape, shapes[pick], sizeof o.shape);
    if (o.outputs < 2)
        o.loss = NN_LOSS_MSE; /* cross-entropy needs two classes */
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    size_t len = strlen(text);
    ad_error err;
    int column = -1;
    int checked = nn_spec_check(text, &err, &column);
    if (checked != 0)
        check_failure(&err, column, len);
    nn_model *m = nn_model_from_spec(text, &o, &err, &column);
    if (!m) {
        check_failure(&err, column, len);
    } else {
        if (checked != 0)
            abort(); /* built what the checker refused */
        /* the list written back builds a model that writes the same list */
        char *a = malloc(16384), *b = malloc(16384);
        if (a && b && nn_model_spec(m, a, 16384) == 0) {
            nn_model *again = nn_model_from_spec(a, &o, &err, &column);
            if (!again && err.code != AD_ENOMEM && !strstr(err.message, "out of memory"))
                abort();
            if (again && (nn_model_spec(again, b, 16384) != 0 || strcmp(a, b) != 0 ||
                          nn_model_param_count(again) != nn_model_param_count(m)))
                abort();
            nn_model_free(again);
        }
        free(a);
        free(b);
        if (nn_model_forward(m) != 0 && !nn_model_error(m))
            abort();
        nn_model_free(m);
    }
    free(text);
    if (heap.live != 0)
        abort(); /* a block of the model was not freed */
    return 0;
}
