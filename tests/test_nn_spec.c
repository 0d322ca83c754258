/* test_nn_spec.c -- models from a layer list (nn_model_from_spec): the
 * presets, the grammar and its errors with their columns, the list written
 * back (nn_model_spec), the architecture carried by the model file, and the
 * mlp preset drawing exactly nn_mlp_new's weights. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule/checkpoint.h"
#include "chainrule/nn.h"

static nn_spec_options image_options(int64_t batch)
{
    nn_spec_options o = {.dtype = AD_F32,
                         .ndim = 3,
                         .shape = {1, 28, 28},
                         .outputs = 10,
                         .loss = NN_LOSS_CROSS_ENTROPY,
                         .batch = batch,
                         .seed = 42};
    return o;
}

static nn_model *build(const char *spec, const nn_spec_options *o)
{
    ad_error err;
    int col = -1;
    nn_model *m = nn_model_from_spec(spec, o, &err, &col);
    cr_assert_not_null(m, "%s: %s", spec, err.message);
    cr_assert_eq(col, 0);
    cr_assert_eq(err.code, AD_OK);
    return m;
}

/* The error of spec, with its column. */
static void expect_error(const char *spec, int column, const char *needle)
{
    nn_spec_options o = image_options(4);
    ad_error err;
    int col = -1;
    nn_model *m = nn_model_from_spec(spec, &o, &err, &col);
    cr_expect_null(m, "'%s' was accepted", spec);
    nn_model_free(m);
    cr_expect_eq(col, column, "'%s': column %d, expected %d (%s)", spec, col, column, err.message);
    cr_expect_eq(err.code, AD_EINVAL, "'%s': %s", spec, err.message);
    cr_expect(strstr(err.message, needle) != NULL, "'%s': '%s' lacks '%s'", spec, err.message,
              needle);
    if (column > 0) {
        char at[32];
        snprintf(at, sizeof at, "column %d: ", column);
        cr_expect(strstr(err.message, at) != NULL, "'%s': '%s' lacks '%s'", spec, err.message, at);
    }
}

Test(nn_spec, cnn_preset_shapes_and_parameters)
{
    nn_spec_options o = image_options(8);
    nn_model *m = build("cnn", &o);
    const int64_t *xs = ad_shape(nn_model_input(m));
    cr_expect_eq(ad_ndim(nn_model_input(m)), 4);
    cr_expect(xs[0] == 8 && xs[1] == 1 && xs[2] == 28 && xs[3] == 28);
    cr_expect_eq(nn_model_in_features(m), 784);
    cr_expect_eq(nn_model_out_features(m), 10);
    /* conv 32*9+32, conv 64*32*9+64, dense 3136*128+128, dense 128*10+10 */
    cr_expect_eq(nn_model_param_count(m), 320 + 18496 + 401536 + 1290);
    cr_expect_eq(nn_model_layer_count(m), 11);
    nn_param_info info;
    cr_assert_eq(nn_model_param_info(m, 0, &info), 0);
    cr_expect_str_eq(info.name, "conv2d0.weight");
    cr_expect(info.ndim == 4 && info.shape[0] == 32 && info.shape[1] == 1 && info.shape[2] == 3);
    char spec[512];
    cr_assert_eq(nn_model_spec(m, spec, sizeof spec), 0);
    cr_expect_str_eq(spec, "conv2d(32,3,pad=1),relu,maxpool2d(2),conv2d(64,3,pad=1),relu,"
                           "maxpool2d(2),flatten,dense(128),relu,dropout(0.25),dense(10)");
    /* conv, ReLU and pool run as one node; the summary still gives each
       layer its own output shape */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(nn_model_print_summary(m, f), 0);
    fclose(f);
    const char *rows[][2] = {{"conv2d0 ", "(8,32,28,28)"},     {"activation0 ", "(8,32,28,28)"},
                             {"maxpool2d0 ", "(8,32,14,14)"},  {"conv2d1 ", "(8,64,14,14)"},
                             {"activation1 ", "(8,64,14,14)"}, {"maxpool2d1 ", "(8,64,7,7)"}};
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        const char *line = strstr(text, rows[r][0]);
        cr_assert_not_null(line, "no row %s in\n%s", rows[r][0], text);
        const char *end = strchr(line, '\n');
        cr_assert(strstr(line, rows[r][1]) && strstr(line, rows[r][1]) < end,
                  "row %s should show %s:\n%s", rows[r][0], rows[r][1], text);
    }
    free(text);
    nn_model_free(m);
    /* the preset ends with the number of classes */
    o.outputs = 3;
    m = build(" cnn ", &o);
    cr_expect_eq(nn_model_out_features(m), 3);
    nn_model_free(m);
}

Test(nn_spec, mlp_preset_draws_nn_mlp_new_weights)
{
    nn_spec_options o = {.dtype = AD_F32,
                         .ndim = 3,
                         .shape = {1, 28, 28},
                         .outputs = 10,
                         .loss = NN_LOSS_CROSS_ENTROPY,
                         .batch = 32,
                         .seed = 42};
    nn_model *m = build("mlp", &o);
    cr_expect_eq(ad_ndim(nn_model_input(m)), 2);
    int64_t widths[] = {784, 300, 100, 10};
    nn_activation acts[] = {NN_ACT_RELU, NN_ACT_RELU, NN_ACT_IDENTITY};
    nn_model *ref = nn_mlp_new(AD_F32, 4, widths, acts, NN_LOSS_CROSS_ENTROPY, 32, 42, NULL);
    cr_assert_not_null(ref);
    cr_assert_eq(nn_model_param_count(m), 266610);
    cr_assert_eq(nn_model_param_count(ref), 266610);
    cr_expect(memcmp(nn_model_params(m), nn_model_params(ref), 266610 * sizeof(float)) == 0,
              "the mlp preset's initial weights differ from nn_mlp_new's");
    for (int i = 0; i < nn_model_param_tensors(m); i++) {
        nn_param_info a, b;
        nn_model_param_info(m, i, &a);
        nn_model_param_info(ref, i, &b);
        cr_expect_str_eq(a.name, b.name);
    }
    char spec[256];
    cr_assert_eq(nn_model_spec(m, spec, sizeof spec), 0);
    cr_expect_str_eq(spec, "dense(300,init=he_uniform),relu,dense(100,init=he_uniform),relu,"
                           "dense(10,init=glorot_uniform)");
    int64_t hidden[1] = {8};
    cr_assert_eq(nn_mlp_spec(1, hidden, NN_ACT_TANH, 3, spec, sizeof spec), 0);
    cr_expect_str_eq(spec, "dense(8,init=glorot_uniform),tanh,dense(3,init=glorot_uniform)");
    cr_assert_eq(nn_mlp_spec(0, NULL, NN_ACT_RELU, 3, spec, sizeof spec), 0);
    cr_expect_str_eq(spec, "dense(3,init=glorot_uniform)");
    cr_expect_eq(nn_mlp_spec(1, hidden, NN_ACT_RELU, 3, spec, 10), -1);
    nn_model_free(m);
    nn_model_free(ref);
}

Test(nn_spec, grammar_keywords_spaces_and_round_trip)
{
    nn_spec_options o = image_options(2);
    const char *specs[][2] = {
        {" conv2d( 8 , 3x5, stride=2, pad=1x2, bias=false ) , tanh,avgpool2d(2,stride=1),"
         "globalavgpool,dense(4,init=he_normal)",
         "conv2d(8,3x5,stride=2,pad=1x2,bias=false),tanh,avgpool2d(2,stride=1),globalavgpool,"
         "dense(4,init=he_normal)"},
        {"conv2d(channels=4,kernel=3,dilation=2,groups=1),leaky_relu(0.2),batchnorm,"
         "maxpool2d(3,pad=1),flatten,dropout(p=0.5),dense(10,bias=false)",
         "conv2d(4,3,dilation=2),leaky_relu(0.20000000000000001),batchnorm(momentum=0."
         "10000000000000001,"
         "eps=1.0000000000000001e-05),maxpool2d(3,pad=1),flatten,dropout(0.5),dense(10,bias="
         "false)"},
        {"conv1d(6,5,stride=2),relu,maxpool1d(2),flatten,dense(10)",
         "conv1d(6,5,stride=2),relu,maxpool1d(2),flatten,dense(10)"},
        {"lstm(16),flatten,dense(10)", "lstm(16),flatten,dense(10)"},
        {"dense(64),softplus,layernorm,dense(10)",
         "dense(64),softplus,layernorm(eps=1.0000000000000001e-05,axes=1,affine=true),dense(10)"},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        nn_model *m = build(specs[i][0], &o);
        char text[1024];
        cr_assert_eq(nn_model_spec(m, text, sizeof text), 0, "%s", specs[i][0]);
        cr_expect_str_eq(text, specs[i][1]);
        /* the text written builds the same model */
        nn_model *again = build(text, &o);
        char text2[1024];
        cr_assert_eq(nn_model_spec(again, text2, sizeof text2), 0);
        cr_expect_str_eq(text2, text);
        cr_expect_eq(nn_model_param_count(again), nn_model_param_count(m));
        nn_model_free(again);
        nn_model_free(m);
    }
}

Test(nn_spec, errors_name_the_column)
{
    /*                     123456789012345678901234567890 */
    expect_error("conv2d(32,3),conv3d(1)", 14, "unknown layer 'conv3d'");
    expect_error("conv2d(32,3,pad=-1)", 17, "pad of conv2d: '-1' is not an integer in [0, 4096]");
    expect_error("conv2d(32)", 1, "conv2d needs kernel (e.g. conv2d(32,3))");
    expect_error("conv2d(32,3,pads=1)", 13, "conv2d has no argument 'pads'");
    expect_error("conv2d(32,3,stride=1,stride=2)", 22, "stride given twice");
    expect_error("dense(10", 9, "expected ')', found the end");
    expect_error("dense(10))", 10, "expected ',' between layers, found ')'");
    expect_error("dense(10),", 11, "expected a layer name, found the end");
    expect_error("", 1, "expected a layer name, found the end");
    expect_error("dense(1,2)", 9, "dense takes one positional argument");
    expect_error("dense(units=3,4)", 15, "a positional argument after a keyword one");
    expect_error("dense(0)", 7, "units of dense: '0' is not an integer in [1, 16777216]");
    expect_error("dense(12x3)", 7, "units of dense: '12x3' is not an integer");
    /* the ranges are nn_layer_check's (the check of model files too) */
    expect_error("dense(16777217)", 7,
                 "units of dense: '16777217' is not an integer in [1, 16777216]");
    expect_error("layernorm(eps=0)", 15, "eps of layernorm: '0' is not a number in (0, 1]");
    expect_error("conv2d(8,3,stride=2x5000)", 19,
                 "stride of conv2d: '2x5000' is not an integer in [1, 4096] or 0 (the default), "
                 "or a pair like 3x5");
    expect_error("relu(3)", 6, "relu takes no arguments");
    expect_error("dropout(1)", 9, "rate of dropout: '1' is not a number in [0, 1)");
    expect_error("dense(10,bias=maybe)", 15, "bias of dense: 'maybe' is not true or false");
    expect_error("dense(10,init=fancy)", 15, "unknown initializer 'fancy'");
    expect_error("flatten,softmax", 9, "the cross-entropy loss applies softmax itself");
    expect_error("maxpool2d(2,pad=2)", 1, "pad may be at most half the kernel");
    expect_error("dense(10);relu", 10, "expected ',' between layers, found ';'");
    expect_error("dense(,)", 7, "expected a value, found ','");
    expect_error("dense(3,)", 9, "expected an argument after ','");
    /* shapes that do not fit name the layer's column */
    expect_error("conv2d(8,3),maxpool2d(2),conv2d(8,30)", 26,
                 "conv2d (input (4,8,13,13)): ad_conv2d");
    expect_error("dense(10),conv2d(3,3)", 11,
                 "conv2d (input (4,10)): ad_conv2d: input (4,10) must have 4 axes");
    /* presets have no column */
    nn_spec_options o = image_options(4);
    o.shape[1] = 2;
    o.shape[2] = 3;
    ad_error err;
    int col = -1;
    cr_expect_null(nn_model_from_spec("cnn", &o, &err, &col));
    cr_expect_eq(col, 0);
    cr_expect(strstr(err.message, "preset cnn (conv2d(32,3,pad=1),relu,maxpool2d(2)"), "%s",
              err.message);
    o.ndim = 1;
    o.shape[0] = 6;
    cr_expect_null(nn_model_from_spec("relu, conv2d(3,3)", &o, &err, &col));
    cr_expect_eq(col, 7);
    cr_expect(strstr(err.message, "conv2d needs images (channels, height, width); the examples "
                                  "are rows of 6 values"),
              "%s", err.message);
    o.batch = 0;
    cr_expect_null(nn_model_from_spec("mlp", &o, &err, NULL));
    cr_expect(strstr(err.message, "bad options"), "%s", err.message);
    cr_expect_null(nn_model_from_spec(NULL, &o, &err, NULL));
    cr_expect_str_eq(err.message, "nn_model_from_spec: spec is NULL");
}

Test(nn_spec, the_model_file_carries_the_architecture)
{
    nn_spec_options o = image_options(4);
    o.shape[1] = 8;
    o.shape[2] = 8;
    nn_model *m = build("conv2d(4,3,pad=1),relu,maxpool2d(2),flatten,dropout(0.25),dense(10)", &o);
    char path[] = "/tmp/cr_spec_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(nn_model_save_safetensors(m, path), 0, "%s", nn_model_error(m));
    ad_error err;
    io_checkpoint *ck = io_checkpoint_read(path, &err);
    cr_assert_not_null(ck, "%s", err.message);
    const char *arch = io_checkpoint_meta(ck, NN_ARCH_KEY);
    cr_assert_not_null(arch);
    cr_expect(strstr(arch, "\"input\":[4,1,8,8]") != NULL, "%s", arch);
    cr_expect(strstr(arch, "\"kind\":\"conv2d\"") != NULL, "%s", arch);
    io_checkpoint_free(ck);
    nn_model *back = nn_model_load(path, 0, &err);
    cr_assert_not_null(back, "%s", err.message);
    char a[256], b[256];
    cr_assert_eq(nn_model_spec(m, a, sizeof a), 0);
    cr_assert_eq(nn_model_spec(back, b, sizeof b), 0);
    cr_expect_str_eq(a, b);
    float x[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        x[i] = (float)((i * 37) % 11) / 11.0f;
    double ya[40], yb[40];
    cr_assert_eq(nn_model_predict_f32(m, x, 4, 64, ya), 0);
    cr_assert_eq(nn_model_predict_f32(back, x, 4, 64, yb), 0);
    cr_expect(memcmp(ya, yb, sizeof ya) == 0, "the loaded model predicts differently");
    nn_model_free(back);
    nn_model_free(m);
    unlink(path);
}
