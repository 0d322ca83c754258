/* Writes the seed corpus of fuzz_model: one small model file of every layer
 * kind (safetensors with the architecture in its metadata, first byte 0x00
 * selecting nn_model_load) and its architecture JSON alone (first byte 0x01
 * selecting nn_model_from_architecture).
 *   make_model_seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chainrule/autodiff.h>
#include <chainrule/nn.h>

static int write_seed(const char *dir, const char *name, unsigned char mode, const void *data,
                      size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%s", dir, mode ? "arch" : "file", name);
    FILE *f = fopen(path, "wb");
    int ok = f && fputc(mode, f) != EOF && fwrite(data, 1, size, f) == size;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "make_model_seeds: cannot write %s\n", path);
    return ok ? 0 : -1;
}

/* Saves m, then writes both seeds of it. */
static int seeds_of(const char *dir, const char *name, nn_model *m, ad_node *out, nn_loss loss)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/.tmp-model.safetensors", dir);
    if (!out || nn_model_set_loss(m, loss) || nn_model_finish(m, out) ||
        nn_model_save_safetensors(m, tmp)) {
        fprintf(stderr, "make_model_seeds: %s: %s\n", name, nn_model_error(m));
        nn_model_free(m);
        return -1;
    }
    char *arch = nn_model_architecture(m);
    FILE *f = fopen(tmp, "rb");
    char *bytes = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (bytes = malloc((size_t)n)) && fread(bytes, 1, (size_t)n, f) != (size_t)n)
        n = -1;
    if (f)
        fclose(f);
    remove(tmp);
    int rc = arch && bytes && n > 0 && write_seed(dir, name, 0, bytes, (size_t)n) == 0 &&
                     write_seed(dir, name, 1, arch, strlen(arch)) == 0
                 ? 0
                 : -1;
    free(bytes);
    free(arch);
    nn_model_free(m);
    return rc;
}

static nn_model *model_with(const char *name, int nd, const int64_t *shape, ad_node **x)
{
    ad_error err;
    nn_model *m = nn_model_new(AD_F32, 7, &err);
    if (!m) {
        fprintf(stderr, "make_model_seeds: %s: %s\n", name, err.message);
        exit(1);
    }
    *x = nn_model_add_input(m, nd, shape, "x");
    return m;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_model_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int bad = 0;
    ad_node *x, *h;
    nn_model *m;

    m = model_with("mlp", 2, (int64_t[]){2, 4}, &x);
    h = nn_add_activation(m, nn_add_dense(m, x, 3, 1), NN_ACT_RELU, 0);
    h = nn_add_dropout(m, nn_add_batch_norm(m, h, 0.1, 1e-5), 0.25);
    bad |= seeds_of(dir, "mlp", m, nn_add_dense(m, h, 2, 1), NN_LOSS_CROSS_ENTROPY);

    m = model_with("cnn", 4, (int64_t[]){2, 1, 6, 6}, &x);
    ad_conv_opts co = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad_pool_opts po = {{2, 2}, {2, 2}, {0, 0}};
    h = nn_add_activation(m, nn_add_conv2d(m, x, 2, 3, 3, &co, 1), NN_ACT_RELU, 0);
    h = nn_add_max_pool2d(m, h, &po);
    h = nn_add_avg_pool2d(m, nn_add_batch_norm(m, h, 0.1, 1e-5),
                          &(ad_pool_opts){{1, 1}, {1, 1}, {0, 0}});
    bad |=
        seeds_of(dir, "cnn", m, nn_add_dense(m, nn_add_flatten(m, h), 3, 1), NN_LOSS_CROSS_ENTROPY);

    m = model_with("conv1d", 3, (int64_t[]){2, 2, 8}, &x);
    ad_conv_opts c1 = {{2, 1}, {1, 0}, {2, 1}, 2};
    h = nn_add_conv1d(m, x, 2, 3, &c1, 1);
    h = nn_add_max_pool1d(m, h, &(ad_pool_opts){{2, 1}, {1, 1}, {1, 0}});
    h = nn_add_avg_pool1d(m, h, &(ad_pool_opts){{2, 1}, {0, 0}, {0, 0}});
    bad |= seeds_of(dir, "conv1d", m, nn_add_global_avg_pool(m, h), NN_LOSS_MSE);

    m = model_with("lstm", 3, (int64_t[]){3, 2, 2}, &x);
    h = nn_add_lstm(m, x, 3, 0, NULL, NULL, NULL, NULL);
    bad |= seeds_of(dir, "lstm", m, nn_add_layer_norm(m, h, 1, 1e-5, 1), NN_LOSS_MSE);

    m = model_with("gru", 3, (int64_t[]){2, 3, 2}, &x);
    h = nn_add_gru(m, x, 2, 1, NULL, NULL);
    bad |= seeds_of(dir, "gru", m, nn_add_rnn(m, h, 2, NN_ACT_TANH, 1, NULL, NULL), NN_LOSS_MSE);

    m = model_with("transformer", 2, (int64_t[]){2, 4}, &x);
    h = nn_add_embedding(m, x, 5, 4);
    h = nn_add_transformer_block(m, h, 2, 8, 1, 0.1);
    h = nn_add_attention(m, h, 2, 0, 0.0);
    h = nn_add_feed_forward(m, h, 6, NN_ACT_ELU, 0.0);
    bad |= seeds_of(dir, "transformer", m, nn_add_dense(m, nn_add_flatten(m, h), 5, 1),
                    NN_LOSS_CROSS_ENTROPY);
    return bad ? 1 : 0;
}
