/*
 * test_cli_train.c -- `chainrule train`, `eval` and `predict`, run as the
 * built binary (CHAINRULE_CLI): option checking and exit statuses, short
 * trainings on subsets, checkpoints (resume equals an uninterrupted run bit
 * for bit, corrupt files refused), eval and predict, and a checkpoint loaded
 * in PyTorch. Tests that need Fashion-MNIST skip when it is not installed;
 * the tiny fixtures in tests/data/mnist_small cover the rest everywhere.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chainrule/checkpoint.h>
#include <chainrule/nn.h>

#include "test_cli_run.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define SMALL CHAINRULE_TEST_DIR "/data/mnist_small"
#define PYTHON "/usr/bin/python3"
/* a quick run on the tiny fixtures (5 training images of 2x3 pixels) */
/* mnist_small's test labels (9, 2, 6) go beyond its training labels (3, 1, 4,
 * 1, 5): naming 10 classes makes the network 10-way */
#define NAMES10                                                                                    \
    "--class-names 'T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot'"
#define SMALL_RUN "train --data " SMALL " " NAMES10 " --val 0 --hidden 8 --batch 2 --threads 1"

/* ---------------------------------------------------------------- helpers */

static void make_workdir(void) { make_workdir_tagged("cr_cli_train"); }

TestSuite(cli_train, .init = make_workdir, .fini = remove_workdir, .timeout = 600);

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The last line of s (without its newline) into buf. */
static const char *last_line(const char *s, char *buf, size_t size)
{
    size_t len = strlen(s);
    while (len && s[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start && s[start - 1] != '\n')
        start--;
    snprintf(buf, size, "%.*s", (int)(len - start), s + start);
    return buf;
}

/* Checks the last line is exactly "test accuracy: 0.XXXX" and returns the value. */
static double test_accuracy(const char *out)
{
    char line[256];
    last_line(out, line, sizeof line);
    cr_assert_eq(strlen(line), strlen("test accuracy: 0.0000"), "last line '%s'", line);
    cr_assert(strncmp(line, "test accuracy: ", 15) == 0, "last line '%s'", line);
    char *end;
    double acc = strtod(line + 15, &end);
    cr_assert(end[0] == '\0' && acc >= 0 && acc <= 1, "last line '%s'", line);
    return acc;
}

static bool have_fmnist(void)
{
    struct stat st;
    return stat(FMNIST "/train-images-idx3-ubyte.gz", &st) == 0 ||
           stat(FMNIST "/train-images-idx3-ubyte", &st) == 0;
}

#define NEED_FMNIST()                                                                              \
    do {                                                                                           \
        if (!have_fmnist())                                                                        \
            cr_skip_test("Fashion-MNIST not installed in " FMNIST                                  \
                         " (Debian: dataset-fashion-mnist)");                                      \
    } while (0)

/* Expects exit status `status`, nothing on stdout, one line on stderr holding `needle`. */
static void expect_error(int status, const char *needle, const char *args)
{
    result r = run_cli("%s", args);
    cr_expect_eq(r.status, status, "chainrule %s: status %d, expected %d; stderr: %s", args,
                 r.status, status, r.err);
    cr_expect_str_empty(r.out, "chainrule %s printed to stdout: %s", args, r.out);
    cr_expect_eq(count_lines(r.err), 1, "chainrule %s: stderr is not one line: %s", args, r.err);
    cr_expect(strstr(r.err, needle) != NULL, "chainrule %s: stderr '%s' lacks '%s'", args, r.err,
              needle);
    result_free(&r);
}

/* Every parameter and optimizer tensor of a and b has the same bytes. */
static void expect_same_tensors(const char *a, const char *b)
{
    io_checkpoint *ca = NULL, *cb = NULL;
    ad_error err;
    cr_assert_eq(((ca = io_checkpoint_read(a, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_eq(((cb = io_checkpoint_read(b, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_eq(io_checkpoint_count(ca), io_checkpoint_count(cb));
    for (int64_t i = 0; i < io_checkpoint_count(ca); i++) {
        const io_array *ta = io_checkpoint_tensor_at(ca, i);
        const io_array *tb = io_checkpoint_find(cb, ta->name);
        cr_assert_not_null(tb, "%s has no tensor %s", b, ta->name);
        cr_assert_eq(ta->dtype, tb->dtype);
        cr_assert_eq(ta->ndim, tb->ndim);
        size_t n = ta->dtype == AD_F32 ? 4 : 8;
        for (int k = 0; k < ta->ndim; k++) {
            cr_assert_eq(ta->shape[k], tb->shape[k]);
            n *= ta->shape[k];
        }
        cr_expect(memcmp(ta->data, tb->data, n) == 0, "tensor %s differs between %s and %s",
                  ta->name, a, b);
    }
    cr_expect_str_eq(io_checkpoint_meta(ca, "chainrule.optimizer_state"),
                     io_checkpoint_meta(cb, "chainrule.optimizer_state"));
    cr_expect_str_eq(io_checkpoint_meta(ca, "chainrule.epochs_done"),
                     io_checkpoint_meta(cb, "chainrule.epochs_done"));
    io_checkpoint_free(ca);
    io_checkpoint_free(cb);
}

/* Trains opts for total epochs into whole.st and for part epochs into
 * part.st, resumes part.st (with resume_opts) to total epochs into
 * resumed.st, and expects the same last line and the same tensors, bit for
 * bit; the last line into last. */
static void expect_resume_exact(const char *opts, const char *resume_opts, int part, int total,
                                char *last, size_t size)
{
    result r = run_cli("%s --epochs %d --save '%s'", opts, total, wpath("whole.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    last_line(r.out, last, size);
    result_free(&r);
    r = run_cli("%s --quiet --epochs %d --save '%s'", opts, part, wpath("part.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    result_free(&r);
    r = run_cli("train %s --quiet --resume '%s' --epochs %d --save '%s'", resume_opts,
                wpath("part.st"), total, wpath("resumed.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    char resumed_last[64];
    cr_expect_str_eq(last_line(r.out, resumed_last, sizeof resumed_last), last);
    result_free(&r);
    expect_same_tensors(wpath("whole.st"), wpath("resumed.st"));
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* ------------------------------------------------------------------ usage */

Test(cli_train, help_texts)
{
    result r = run_cli("--help");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "train") && strstr(r.out, "eval") && strstr(r.out, "predict"), "%s",
              r.out);
    result_free(&r);

    /* the version comes from meson.build's project() */
    r = run_cli("--version");
    cr_expect_eq(r.status, 0);
    cr_expect_str_eq(r.out, "chainrule " CHAINRULE_VERSION "\n");
    result_free(&r);

    r = run_cli("train --help");
    cr_expect_eq(r.status, 0);
    const char *must[] = {"784-300-100-10", "5,000",        "--data",
                          "--hidden",       "--activation", "--optimizer",
                          "--lr",           "--batch",      "--epochs",
                          "--seed",         "--threads",    "--save",
                          "--resume",       "--log",        "--plot",
                          "--subset",       "--quiet",      "test accuracy: 0.XXXX"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        cr_expect(strstr(r.out, must[i]) != NULL, "train --help lacks '%s'", must[i]);
    cr_expect_str_empty(r.err);
    result_free(&r);

    r = run_cli("eval --help");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: chainrule eval MODEL") != NULL, "%s", r.out);
    result_free(&r);
    r = run_cli("predict -h");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: chainrule predict MODEL FILE") != NULL, "%s", r.out);
    result_free(&r);
}

Test(cli_train, bad_options_are_usage_errors)
{
    /* parsing happens before any data is read: these need no data set */
    const struct {
        const char *args, *needle;
    } cases[] = {
        {"train --lr -1", "bad value '-1' for --lr: the learning rate must be a number > 0"},
        {"train --lr 0", "bad value '0' for --lr"},
        {"train --lr abc", "bad value 'abc' for --lr"},
        {"train --lr nan", "bad value 'nan' for --lr"},
        {"train --lr=1e999", "bad value '1e999' for --lr"},
        {"train --batch 0", "bad value '0' for --batch: must be an integer in [1, 1048576]"},
        {"train --batch 3x", "bad value '3x' for --batch"},
        {"train --batch ' 3'", "bad value ' 3' for --batch"},
        {"train --epochs 0", "bad value '0' for --epochs"},
        {"train --epochs 1.5", "bad value '1.5' for --epochs"},
        {"train --hidden 300,,100", "bad value '300,,100' for --hidden: an empty width"},
        {"train --hidden 300,", "bad value '300,' for --hidden: an empty width"},
        {"train --hidden ''", "bad value '' for --hidden: an empty width"},
        {"train --hidden 300,0", "width '0' is not an integer in [1, 1048576]"},
        {"train --hidden 300,-5", "width '-5' is not an integer"},
        {"train --activation softmax", "unknown hidden activation 'softmax'"},
        {"train --activation bogus", "unknown hidden activation 'bogus'"},
        {"train --optimizer sgdd", "unknown optimizer 'sgdd'"},
        {"train --momentum 1", "bad value '1' for --momentum"},
        {"train --optimizer adam --momentum 0.9", "--momentum applies to sgd and rmsprop"},
        {"train --weight-decay -0.1", "bad value '-0.1' for --weight-decay"},
        {"train --schedule step", "unknown schedule 'step'"},
        {"train --gamma 0", "bad value '0' for --gamma"},
        {"train --dtype f16", "bad value 'f16' for --dtype"},
        {"train --seed -1", "bad value '-1' for --seed"},
        {"train --seed 99999999999999999999999", "bad value '99999999999999999999999' for --seed"},
        {"train --threads 0", "bad value '0' for --threads"},
        {"train --subset 0", "bad value '0' for --subset"},
        {"train --val -1", "bad value '-1' for --val"},
        {"train --class-names a,,b", "bad value 'a,,b' for --class-names"},
        {"train --bogus", "unknown option '--bogus'"},
        {"train --lr", "option --lr needs a value"},
        {"train --quiet=yes", "option --quiet takes no value"},
        {"train extra", "unexpected argument 'extra'"},
        {"train -x", "unexpected argument '-x'"},
        {"train --save ''", "--save needs a file name"},
        {"train --data ''", "--data needs a directory"},
        {"frobnicate", "unknown command 'frobnicate'"},
        {"eval", "needs a MODEL file"},
        {"eval a b", "unexpected argument 'b'"},
        {"eval m --bogus", "unknown option '--bogus'"},
        {"eval m --threads x", "bad value 'x' for --threads"},
        {"predict m", "needs a MODEL file and an IDX FILE"},
        {"predict m f --data d", "unknown option '--data'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(2, cases[i].needle, cases[i].args);
}

Test(cli_train, bad_data_is_a_runtime_error)
{
    expect_error(1, "data directory /nonexistent/dir", "train --data /nonexistent/dir");
    expect_error(1, "has 5 examples but",
                 "train --data " CHAINRULE_TEST_DIR "/data/mnist_mismatch");
    expect_error(1, "t10k-images-idx3-ubyte",
                 "train --data " CHAINRULE_TEST_DIR "/data/mnist_missing");
    expect_error(1, "expected 3-d unsigned-byte images",
                 "train --data " CHAINRULE_TEST_DIR "/data/mnist_not_images");
    /* mnist_small has 5 training images: 5000 cannot be held out */
    expect_error(1, "cannot hold out 5000 validation images from 5 training images",
                 "train --data " SMALL);
    expect_error(1, "training diverged in epoch 1", SMALL_RUN " --lr 1e30 --quiet");
    expect_error(1, "--class-names gives 2 names for 6 classes",
                 "train --data " SMALL " --val 0 --class-names a,b");
    /* a test label the training labels do not have is an error, it does not
     * widen the network */
    expect_error(1, "test image 0 has label 9, but the network has 6 classes (0 to 5",
                 "train --data " SMALL " --val 0");
    expect_error(1, "cannot open", "train --resume /nonexistent/model.safetensors");
    const char text[] = "this is a text file, certainly not a checkpoint of chainrule\n";
    write_bytes(wpath("text.st"), text, sizeof text - 1);
    char args[1024];
    snprintf(args, sizeof args, "train --resume '%s'", wpath("text.st"));
    expect_error(1, "not a safetensors file", args);
    expect_error(1, "cannot open", "eval /nonexistent/model.safetensors");
}

/* ------------------------------------------------------------ tiny fixtures */

Test(cli_train, tiny_run_saves_logs_and_plots)
{
    result r = run_cli(SMALL_RUN " --epochs 3 --save '%s' --log '%s' --plot '%s'", wpath("m.st"),
                       wpath("log.csv"), wpath("plot.svg"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.out, "data: " SMALL ": 5 training, 0 validation, 3 test images") != NULL,
              "%s", r.out);
    cr_expect(strstr(r.out, "model: 6-8-10, relu hidden") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "\nepoch 1/3  loss ") && strstr(r.out, "\nepoch 3/3  loss "), "%s",
              r.out);
    cr_expect(strstr(r.out, "val_acc") == NULL, "no validation set, yet: %s", r.out);
    cr_expect(strstr(r.out, "Ankle boot") && strstr(r.out, "confusion matrix"), "%s", r.out);
    double acc = test_accuracy(r.out);
    /* stderr is not a terminal: no progress bar */
    cr_expect_str_empty(r.err);
    result_free(&r);

    char *log = slurp(wpath("log.csv"), NULL);
    cr_assert_not_null(log);
    cr_expect(strncmp(log, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n", 62) ==
                  0,
              "%s", log);
    cr_expect_eq(count_lines(log), 4, "%s", log);
    free(log);
    char *svg = slurp(wpath("plot.svg"), NULL);
    cr_assert_not_null(svg);
    cr_expect(strstr(svg, "<svg") && strstr(svg, "</svg>"), "not an SVG");
    free(svg);

    /* eval of the saved model prints the same last line */
    r = run_cli("eval '%s' --data " SMALL, wpath("m.st"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_float_eq(test_accuracy(r.out), acc, 1e-9);
    cr_expect(strstr(r.out, "confusion matrix") != NULL, "%s", r.out);
    result_free(&r);
    r = run_cli("eval '%s' --data " SMALL " --quiet", wpath("m.st"));
    cr_expect_eq(count_lines(r.out), 1, "%s", r.out);
    result_free(&r);

    /* quiet training prints only the last line */
    r = run_cli(SMALL_RUN " --epochs 1 --quiet");
    cr_expect_eq(r.status, 0);
    cr_expect_eq(count_lines(r.out), 1, "%s", r.out);
    test_accuracy(r.out);
    result_free(&r);
}

Test(cli_train, tiny_resume_equals_uninterrupted)
{
    char last[64];
    expect_resume_exact(SMALL_RUN " --optimizer adam --quiet", "--data " SMALL " --threads 1", 2, 4,
                        last, sizeof last);

    /* architecture and optimizer cannot change on resume */
    char args[1024];
    snprintf(args, sizeof args, "train --data " SMALL " --resume '%s' --hidden 9",
             wpath("part.st"));
    expect_error(2, "--hidden 9 differs from the network of", args);
    snprintf(args, sizeof args, "train --data " SMALL " --resume '%s' --optimizer sgd",
             wpath("part.st"));
    expect_error(2, "--optimizer sgd differs from", args);
}

Test(cli_train, corrupt_checkpoints_are_refused)
{
    result r = run_cli(SMALL_RUN " --epochs 1 --quiet --save '%s'", wpath("m.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    result_free(&r);
    char *bytes = NULL;
    FILE *f = fopen(wpath("m.st"), "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    bytes = malloc((size_t)n);
    cr_assert_eq(fread(bytes, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    char args[1024];

    write_bytes(wpath("truncated.st"), bytes, (size_t)n / 2);
    snprintf(args, sizeof args, "eval '%s' --data " SMALL, wpath("truncated.st"));
    expect_error(1, "truncated.st", args);
    snprintf(args, sizeof args, "train --data " SMALL " --resume '%s'", wpath("truncated.st"));
    expect_error(1, "truncated.st", args);

    write_bytes(wpath("empty.st"), bytes, 0);
    snprintf(args, sizeof args, "eval '%s' --data " SMALL, wpath("empty.st"));
    expect_error(1, "empty.st", args);

    /* a flipped byte in the weights fails the checksum */
    bytes[n - 3] ^= 0x40;
    write_bytes(wpath("flipped.st"), bytes, (size_t)n);
    snprintf(args, sizeof args, "predict '%s' " SMALL "/t10k-images-idx3-ubyte",
             wpath("flipped.st"));
    expect_error(1, "checksum", args);
    free(bytes);

    /* a valid safetensors file that is not a chainrule model */
    float w[2] = {1, 2};
    io_array t = {.name = "w", .dtype = AD_F32, .ndim = 1, .shape = {2}, .data = w};
    ad_error err;
    cr_assert_eq(
        (io_checkpoint_write(wpath("other.st"), &t, 1, NULL, 0, &err) == 0 ? AD_OK : err.code), 0);
    snprintf(args, sizeof args, "eval '%s' --data " SMALL, wpath("other.st"));
    expect_error(1, "not a chainrule model", args);

    /* a model for other images */
    snprintf(args, sizeof args, "predict '%s' " SMALL "/t10k-labels-idx1-ubyte", wpath("m.st"));
    expect_error(1, "examples of 1 values, but the model", args);
    snprintf(args, sizeof args, "predict '%s' /nonexistent.idx", wpath("m.st"));
    expect_error(1, "/nonexistent.idx", args);
}

/* ------------------------------------------------------------------ --model */

Test(cli_train, model_grammar_errors_point_at_the_column)
{
    /* the list is checked before any data is read: a usage error with the
     * list and a caret under the column */
    result r = run_cli("train --model 'conv2d(32,3),conv3d(1)'");
    cr_expect_eq(r.status, 2, "stderr: %s", r.err);
    cr_expect_str_empty(r.out);
    cr_expect_str_eq(r.err, "chainrule train: bad value for --model: column 14: unknown layer "
                            "'conv3d' (dense, conv1d, conv2d, maxpool1d, maxpool2d, avgpool1d, "
                            "avgpool2d, flatten, globalavgpool, dropout, batchnorm, layernorm, an "
                            "activation such as relu, ...)\n"
                            "  conv2d(32,3),conv3d(1)\n"
                            "               ^\n");
    result_free(&r);
    r = run_cli("train --model 'conv2d(32,3,pad=1),relu,maxpool2d(2,stride=-1)'");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "column 44: stride of maxpool2d: '-1' is not an integer in [1, 4096] "
                            "or 0 (the default)"),
              "%s", r.err);
    cr_expect(strstr(r.err, "\n  conv2d(32,3,pad=1),relu,maxpool2d(2,stride=-1)\n  "
                            "                                           ^\n"),
              "%s", r.err);
    result_free(&r);
    expect_error(2, "--hidden and --activation shape the mlp preset; with --model 'cnn'",
                 "train --model cnn --hidden 8");
    /* what depends on the data is a runtime error: the 2x3 images of
     * mnist_small are too small for the cnn preset's pooling */
    r = run_cli("train --data " SMALL " --val 0 --model cnn");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "chainrule train: cannot build --model: preset cnn (conv2d(32,3,pad=1)"
                            ",relu,maxpool2d(2),conv2d(64,3,pad=1),relu...): maxpool2d (input "
                            "(32,64,1,1)): ad_max_pool2d: kernel 2x2 is larger than the padded "
                            "input 1x1"),
              "%s", r.err);
    result_free(&r);
    r = run_cli("train --data " SMALL " --val 0 --model 'conv2d(4,2),conv2d(4,3)'");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "cannot build --model: column 13: conv2d (input (32,4,1,2)): "
                            "ad_conv2d_bias: kernel 3x3"),
              "%s", r.err);
    cr_expect(strstr(r.err, "\n  conv2d(4,2),conv2d(4,3)\n              ^\n"), "%s", r.err);
    result_free(&r);
    r = run_cli("train --data " SMALL " " NAMES10 " --val 0 --model 'conv2d(4,2),relu'");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "column 13: the list ends with relu output (32,4,1,2); a classifier's "
                            "is (batch, classes): end it with flatten and dense(10)\n"),
              "%s", r.err);
    result_free(&r);
    expect_error(1, "the model has 3 outputs but the labels name 10 classes",
                 "train --data " SMALL " " NAMES10 " --val 0 --model 'flatten,dense(3)'");
}

/* A small convolutional network with dropout (the graph's generator is part
 * of the state a resume restores) on the 2x3 images of mnist_small. */
#define CONV_MODEL "conv2d(4,2),relu,flatten,dropout(0.5),dense(10)"

Test(cli_train, conv_model_trains_evaluates_predicts_and_resumes_exactly)
{
    const char *opts = "train --data " SMALL " " NAMES10
                       " --val 0 --batch 2 --threads 1 --model '" CONV_MODEL "' --optimizer adam";
    char two_last[64];
    expect_resume_exact(opts, "--data " SMALL " --threads 1", 1, 2, two_last, sizeof two_last);
    result r = run_cli("%s --epochs 1", opts);
    cr_expect(strstr(r.out, "model: " CONV_MODEL ", softmax cross-entropy, f32, 110 parameters"),
              "%s", r.out);
    result_free(&r);
    /* the generator (dropout masks) too */
    io_checkpoint *a = NULL, *b = NULL;
    ad_error err;
    cr_assert_eq(((a = io_checkpoint_read(wpath("whole.st"), &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(((b = io_checkpoint_read(wpath("resumed.st"), &err)) ? AD_OK : err.code), 0);
    cr_expect_str_eq(io_checkpoint_meta(a, "chainrule.rng"),
                     io_checkpoint_meta(b, "chainrule.rng"));
    io_checkpoint_free(a);
    io_checkpoint_free(b);

    /* the file carries the architecture: images keep their (1, 2, 3) shape */
    nn_model *m = nn_model_load(wpath("whole.st"), 0, &err);
    cr_assert_not_null(m, "%s", err.message);
    const ad_node *x = nn_model_input(m);
    cr_expect_eq(ad_ndim(x), 4);
    cr_expect(ad_shape(x)[1] == 1 && ad_shape(x)[2] == 2 && ad_shape(x)[3] == 3);
    char spec[256];
    cr_assert_eq(nn_model_spec(m, spec, sizeof spec), 0);
    cr_expect_str_eq(spec, CONV_MODEL);
    nn_model_free(m);

    /* eval and predict need no option repeated */
    r = run_cli("eval '%s' --data " SMALL, wpath("whole.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "model: "), "%s", r.out);
    cr_expect(strstr(r.out, ": " CONV_MODEL ", 2 epochs\n"), "%s", r.out);
    char eval_last[64];
    cr_expect_str_eq(last_line(r.out, eval_last, sizeof eval_last), two_last);
    result_free(&r);
    r = run_cli("predict '%s' " SMALL "/t10k-images-idx3-ubyte", wpath("whole.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(count_lines(r.out), 3, "%s", r.out);
    result_free(&r);

    /* another model on resume is refused, the same one is not */
    char args[1024];
    snprintf(args, sizeof args, "train --data " SMALL " --resume '%s' --model 'flatten,dense(10)'",
             wpath("part.st"));
    expect_error(2, "--model flatten,dense(10) differs from the network of", args);
    r = run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2 --model '%s'",
                wpath("part.st"), CONV_MODEL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    result_free(&r);
}

/* ----------------------------------------------------------- Fashion-MNIST */

Test(cli_train, fashion_subset_learns)
{
    NEED_FMNIST();
    result r =
        run_cli("train --subset 2000 --val 1000 --epochs 1 --threads 1 --save '%s'", wpath("f.st"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.out, "2000 training, 1000 validation, 10000 test images") != NULL, "%s",
              r.out);
    cr_expect(strstr(r.out, "model: 784-300-100-10, relu hidden, softmax cross-entropy, f32, "
                            "266610 parameters") != NULL,
              "%s", r.out);
    cr_expect(strstr(r.out, "epoch 1/1  loss ") && strstr(r.out, "val_acc "), "%s", r.out);
    const char *names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                           "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    for (int k = 0; k < 10; k++)
        cr_expect(strstr(r.out, names[k]) != NULL, "no class %s in %s", names[k], r.out);
    double acc = test_accuracy(r.out);
    /* one epoch of SGD on 2,000 images: far above chance (0.1) */
    cr_expect_gt(acc, 0.55, "test accuracy %.4f", acc);
    result_free(&r);

    r = run_cli("eval '%s'", wpath("f.st"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_float_eq(test_accuracy(r.out), acc, 1e-9);
    result_free(&r);

    r = run_cli("predict '%s' " FMNIST "/t10k-images-idx3-ubyte.gz", wpath("f.st"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_eq(count_lines(r.out), 10000);
    int index, cls;
    char name[64];
    cr_expect_eq(sscanf(r.out, "%d %d %63[^\n]", &index, &cls, name), 3, "%.80s", r.out);
    cr_expect_eq(index, 0);
    cr_expect(cls >= 0 && cls < 10);
    cr_expect_str_eq(name, names[cls]);
    result_free(&r);
}

Test(cli_train, fashion_resume_equals_uninterrupted)
{
    NEED_FMNIST();
    char last[64];
    expect_resume_exact("train --subset 600 --val 200 --optimizer adam --threads 1 --quiet",
                        "--threads 1", 2, 3, last, sizeof last);
}

Test(cli_train, fashion_conv_resume_equals_uninterrupted)
{
    NEED_FMNIST();
    char last[64];
    expect_resume_exact("train --subset 256 --val 64 --optimizer adam --threads 1 --quiet --model "
                        "'conv2d(4,3,pad=1),relu,maxpool2d(2),flatten,dropout(0.25),dense(10)'",
                        "--threads 1", 1, 2, last, sizeof last);
    result r = run_cli("eval '%s' --quiet", wpath("whole.st"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    char eval_last[64];
    cr_expect_str_eq(last_line(r.out, eval_last, sizeof eval_last), last);
    result_free(&r);
}

Test(cli_train, torch_predictions_match)
{
    NEED_FMNIST();
    if (access(PYTHON, X_OK) != 0)
        cr_skip_test(PYTHON " not found (Debian: python3-torch)");
    /* the perceptron and a convolutional network, rebuilt in PyTorch from
       the architecture in the file */
    const char *models[] = {"mlp", "conv2d(4,3,pad=1),relu,maxpool2d(2),flatten,dense(10)"};
    for (int k = 0; k < 2; k++) {
        result r = run_cli("train --subset 1000 --val 100 --epochs 1 --threads 1 --quiet "
                           "--model '%s' --save '%s'",
                           models[k], wpath("t.st"));
        cr_assert_eq(r.status, 0, "%s", r.err);
        result_free(&r);
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 PYTHON " '%s/torch_predict_check.py' '%s' '%s' " FMNIST
                        "/t10k-images-idx3-ubyte.gz >'%s' 2>&1",
                 CHAINRULE_TEST_DIR, CHAINRULE_CLI, wpath("t.st"), wpath("torch.txt"));
        int st = system(cmd);
        char *text = slurp(wpath("torch.txt"), NULL);
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (code == 77)
            cr_skip_test("PyTorch not available: %s", text ? text : "");
        cr_expect_eq(code, 0, "torch check of %s failed: %s", models[k], text ? text : "");
        free(text);
    }
}
