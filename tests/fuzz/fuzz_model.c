/* libFuzzer target: model files that carry an architecture. The first byte
 * chooses the input: bit 0 clear, the rest is a safetensors model file given
 * to nn_model_load; bit 0 set, the rest is the architecture JSON given to
 * nn_model_from_architecture. Bits 1-2 are the batch asked for (0: the
 * saved one). Each call must return a model or an error message; a model
 * that loads is run (predict on zeros, a training forward and backward) and
 * saved and loaded again. Nothing may crash, trip a sanitizer or leak.
 * Seeds: make_model_seeds (one model of every layer kind). */
#include <stdlib.h>
#include <string.h>

#include <chainrule/autodiff.h>
#include <chainrule/nn.h>

#include "fuzz_file_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The model's allocator: blocks over 64 MB are refused. */
static fuzz_heap heap = {0, (size_t)64 << 20};

static void exercise(nn_model *m)
{
    int64_t in = nn_model_in_features(m), out = nn_model_out_features(m);
    if (in < 1 || out < 1 || in > 4096 || out > 4096)
        return;
    double *x = calloc((size_t)(2 * in), sizeof(double));
    double *y = calloc((size_t)(2 * out), sizeof(double));
    if (x && y && nn_model_predict(m, x, 2, in, y) != 0 && !nn_model_error(m))
        abort();
    if (x && nn_model_set_input(m, x, 1, in) == 0 && nn_model_forward(m) == 0 &&
        nn_model_loss_node(m))
        (void)nn_model_backward(m);
    free(x);
    free(y);
    static char path[256];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/chainrule-fuzz-%ld-again.safetensors", (long)getpid());
    if (nn_model_save_safetensors(m, path) == 0) {
        ad_error err;
        nn_model *again = nn_model_load_with(path, 0, fuzz_heap_alloc, &heap, &err);
        if (!again && !err.message[0])
            abort();
        nn_model_free(again);
    } else if (!nn_model_error(m)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int64_t batch = (data[0] >> 1) & 3;
    ad_error err;
    memset(&err, 0, sizeof err);
    nn_model *m = NULL;
    if (data[0] & 1) {
        char *json = malloc(size);
        if (!json)
            return 0;
        memcpy(json, data + 1, size - 1);
        json[size - 1] = '\0';
        m = nn_model_from_architecture_with(json, batch, fuzz_heap_alloc, &heap, &err);
        free(json);
    } else {
        m = nn_model_load_with(fuzz_write_file(data + 1, size - 1, ".safetensors"), batch,
                               fuzz_heap_alloc, &heap, &err);
    }
    if (!m) {
        if (!err.message[0])
            abort(); /* failed without saying why */
    } else {
        exercise(m);
        nn_model_free(m);
    }
    if (heap.live != 0)
        abort(); /* a block of the model was not freed */
    return 0;
}
