/*
 * test_cli_hostile.c -- the chainrule command as a hostile user meets it
 * (issue "Reliability 2"): every path ends with a message and an exit status
 * in 1..127, never a signal, a hang or silently wrong output. Each test
 * fails without its fix: file-size limits and write errors on standard
 * output, FIFOs as data files, stale and planted temporary files, crafted
 * checkpoints (optimizer step counts, learning rates, class names with
 * control characters), more than 256 classes, test labels the training set
 * lacks, empty test sets, conflicting --resume options, diverged weights,
 * two runs saving one file, NaN pixels.
 */
#define _DEFAULT_SOURCE /* flock */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chainrule/checkpoint.h>
#include <chainrule/nn.h>

#include "test_cli_run.h"

#define SMALL CHAINRULE_TEST_DIR "/data/mnist_small"
/* mnist_small's test labels (9, 2, 6) go beyond its training labels (3, 1, 4,
 * 1, 5): naming 10 classes makes the network 10-way */
#define NAMES10                                                                                    \
    "--class-names 'T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot'"
#define SMALL_RUN                                                                                  \
    "train --data " SMALL " " NAMES10 " --val 0 --hidden 8 --batch 2 --threads 1 --quiet"

static void make_workdir(void) { make_workdir_tagged("cr_hostile"); }

TestSuite(hostile, .init = make_workdir, .fini = remove_workdir, .timeout = 300);

static void expect_status(const result *r, int status, const char *needle, const char *what)
{
    cr_expect_eq(r->status, status, "%s: status %d, expected %d; stderr: %s", what, r->status,
                 status, r->err);
    cr_expect(strstr(r->err, needle) != NULL, "%s: stderr '%s' lacks '%s'", what, r->err, needle);
}

/* A checkpoint of a tiny run (1 epoch) at wpath(name). */
static void tiny_checkpoint(const char *name, const char *extra)
{
    result r = run_cli(SMALL_RUN " --epochs 1 %s --save '%s'", extra, wpath(name));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    result_free(&r);
}

/* Files in the work directory whose name starts with prefix. */
static int count_files(const char *prefix)
{
    DIR *d = opendir(workdir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* Rewrites checkpoint src as dst (a valid checksum: a crafted file, not a
 * corrupt one) with metadata key set to value. */
static void craft(const char *src, const char *dst, const char *key, const char *value)
{
    io_checkpoint *ck = NULL;
    ad_error err;
    cr_assert_eq(((ck = io_checkpoint_read(src, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    size_t nt = io_checkpoint_count(ck), nm = io_checkpoint_meta_count(ck);
    io_array *t = calloc(nt, sizeof *t);
    io_ckpt_meta *m = calloc(nm, sizeof *m);
    cr_assert(t && m);
    for (size_t i = 0; i < nt; i++)
        t[i] = *io_checkpoint_tensor_at(ck, i);
    bool found = false;
    for (size_t i = 0; i < nm; i++) {
        m[i] = *io_checkpoint_meta_at(ck, i);
        if (strcmp(m[i].key, key) == 0) {
            m[i].value = value;
            found = true;
        }
    }
    cr_assert(found, "%s has no metadata %s", src, key);
    cr_assert_eq(((io_checkpoint_write(dst, t, nt, m, nm, &err) == 0 ? AD_OK : err.code) == 0
                      ? AD_OK
                      : err.code),
                 0, "%s", err.message);
    free(t);
    free(m);
    io_checkpoint_free(ck);
}

/* The optimizer-state header of checkpoint path with the 8 bytes at offset
 * replaced by value (little-endian), as hex. */
static char *header_with(const char *path, size_t offset, const void *value)
{
    io_checkpoint *ck = NULL;
    ad_error err;
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    char *hex = strdup(io_checkpoint_meta(ck, "chainrule.optimizer_state"));
    io_checkpoint_free(ck);
    cr_assert_not_null(hex);
    cr_assert_geq(strlen(hex), 2 * (offset + 8));
    const unsigned char *b = value;
    for (size_t i = 0; i < 8; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * (offset + i)] = digits[b[i] >> 4];
        hex[2 * (offset + i) + 1] = digits[b[i] & 15];
    }
    return hex;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX file: type byte, dims, then count elements of size bytes each
 * (already big-endian). */
static void write_idx(const char *path, unsigned char type, int ndim, const uint32_t *dims,
                      const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    unsigned char head[4 + 4 * 4] = {0, 0, type, (unsigned char)ndim};
    for (int k = 0; k < ndim; k++)
        put_be32(head + 4 + 4 * k, dims[k]);
    cr_assert_eq(fwrite(head, 1, 4 + 4 * (size_t)ndim, f), 4 + 4 * (size_t)ndim);
    if (bytes)
        cr_assert_eq(fwrite(data, 1, bytes, f), bytes);
    cr_assert_eq(fclose(f), 0);
}

/* An MNIST-layout directory dir with n_train / n_test images of 2x3 u8
 * pixels and int32 labels. */
static void write_mnist_dir(const char *dir, const int *train_labels, uint32_t n_train,
                            const int *test_labels, uint32_t n_test)
{
    char p[600];
    cr_assert_eq(mkdir(dir, 0700), 0);
    const struct {
        const char *images, *labels;
        const int *y;
        uint32_t n;
    } half[2] = {
        {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", train_labels, n_train},
        {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test_labels, n_test},
    };
    for (int h = 0; h < 2; h++) {
        uint32_t n = half[h].n, dims[3] = {n, 2, 3};
        unsigned char *px = malloc(6 * (size_t)n + 1), *lab = malloc(4 * (size_t)n + 1);
        cr_assert(px && lab);
        for (uint32_t i = 0; i < 6 * n; i++)
            px[i] = (unsigned char)(37 * i + 11 * (uint32_t)h);
        for (uint32_t i = 0; i < n; i++)
            put_be32(lab + 4 * i, (uint32_t)half[h].y[i]);
        snprintf(p, sizeof p, "%s/%s", dir, half[h].images);
        write_idx(p, 0x08, 3, dims, px, 6 * (size_t)n);
        snprintf(p, sizeof p, "%s/%s", dir, half[h].labels);
        write_idx(p, 0x0C, 1, dims, lab, 4 * (size_t)n);
        free(px);
        free(lab);
    }
}

/* ------------------------------------------------- signals and write errors */

Test(hostile, stdout_write_errors_exit_1_with_a_message)
{
    result r = run_sh("\"$CLI\" grad 'x*y' x=2 y=3 --json > /dev/full");
    expect_status(&r, 1, "chainrule grad: cannot write standard output: No space left on device",
                  "grad --json > /dev/full");
    result_free(&r);
    tiny_checkpoint("m.st", "");
    r = run_sh("\"$CLI\" eval '%s' --data " SMALL " > /dev/full", wpath("m.st"));
    expect_status(&r, 1, "chainrule eval: cannot write standard output", "eval > /dev/full");
    result_free(&r);
    r = run_sh("\"$CLI\" predict '%s' " SMALL "/t10k-images-idx3-ubyte > /dev/full", wpath("m.st"));
    expect_status(&r, 1, "chainrule predict: cannot write", "predict > /dev/full");
    result_free(&r);
}

Test(hostile, file_size_limit_is_a_write_error_not_a_signal)
{
    /* the checkpoint is over 1 KiB; stdout and stderr stay small */
    result r =
        run_sh("ulimit -f 1; exec \"$CLI\" " SMALL_RUN " --epochs 1 --save '%s'", wpath("big.st"));
    expect_status(&r, 1, "File too large", "train under ulimit -f 1");
    cr_expect(strstr(r.err, "big.st is unchanged") != NULL, "%s", r.err);
    result_free(&r);
    cr_expect_eq(count_files("big.st.tmp"), 0, "a temporary file was left behind");
    struct stat sb;
    cr_expect_neq(stat(wpath("big.st"), &sb), 0, "a partial checkpoint was left");
}

Test(hostile, stale_temporary_files_are_removed_live_ones_kept)
{
    /* left by a killed save: removed by the next save of the same file */
    FILE *f = fopen(wpath("m.st.tmp-Ab3xYz"), "w");
    cr_assert_not_null(f);
    fputs("half a checkpoint", f);
    fclose(f);
    /* a save in progress (it holds the flock): kept */
    int live = open(wpath("m.st.tmp-L1ve00"), O_RDWR | O_CREAT, 0600);
    cr_assert_geq(live, 0);
    cr_assert_eq(flock(live, LOCK_EX), 0);
    /* not a temporary file of m.st: kept */
    f = fopen(wpath("m.st.tmp-notmine"), "w");
    cr_assert_not_null(f);
    fclose(f);
    tiny_checkpoint("m.st", "");
    struct stat sb;
    cr_expect_neq(stat(wpath("m.st.tmp-Ab3xYz"), &sb), 0,
                  "the stale temporary file is still there");
    cr_expect_eq(stat(wpath("m.st.tmp-L1ve00"), &sb), 0, "a live writer's file was removed");
    cr_expect_eq(stat(wpath("m.st.tmp-notmine"), &sb), 0, "another file was removed");
    close(live);
}

Test(hostile, log_and_plot_never_follow_a_planted_link)
{
    FILE *f = fopen(wpath("victim"), "w");
    cr_assert_not_null(f);
    fputs("precious\n", f);
    fclose(f);
    cr_assert_eq(symlink(wpath("victim"), wpath("log.csv.tmp")), 0);
    cr_assert_eq(symlink(wpath("victim"), wpath("plot.svg.tmp")), 0);
    result r = run_cli(SMALL_RUN " --epochs 1 --log '%s' --plot '%s'", wpath("log.csv"),
                       wpath("plot.svg"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    result_free(&r);
    char *v = slurp(wpath("victim"), NULL);
    cr_expect_str_eq(v, "precious\n");
    free(v);
    char *log = slurp(wpath("log.csv"), NULL);
    cr_assert_not_null(log);
    cr_expect(strncmp(log, "epoch,", 6) == 0, "%s", log);
    free(log);
}

Test(hostile, fifo_as_a_data_file_is_refused_without_blocking)
{
    tiny_checkpoint("m.st", "");
    cr_assert_eq(mkfifo(wpath("fifo"), 0600), 0);
    /* without the fix open() blocks: timeout turns that into status 124 */
    result r = run_sh("timeout 20 \"$CLI\" predict '%s' '%s'", wpath("m.st"), wpath("fifo"));
    expect_status(&r, 1, "fifo: a FIFO (named pipe), not a regular file", "predict FIFO");
    result_free(&r);
    r = run_sh("timeout 20 \"$CLI\" train --resume '%s'", wpath("fifo"));
    expect_status(&r, 1, "a FIFO (named pipe), not a regular file", "train --resume FIFO");
    result_free(&r);
    r = run_sh("timeout 20 \"$CLI\" eval /dev/null");
    expect_status(&r, 1, "/dev/null: a device, not a regular file", "eval /dev/null");
    result_free(&r);
}

/* -------------------------------------------------------- crafted checkpoints */

Test(hostile, crafted_optimizer_state_is_range_checked)
{
    tiny_checkpoint("adam.st", "--optimizer adam");
    /* header: magic[8], kind, dtype, slots, reserved (int32), n, steps (int64), lr (double) */
    int64_t steps = INT64_MAX;
    char *hex = header_with(wpath("adam.st"), 32, &steps);
    craft(wpath("adam.st"), wpath("steps.st"), "chainrule.optimizer_state", hex);
    free(hex);
    result r =
        run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2", wpath("steps.st"));
    expect_status(&r, 1, "step count 9223372036854775807 is not in [0, 2^53]", "steps INT64_MAX");
    result_free(&r);

    double lr = INFINITY;
    hex = header_with(wpath("adam.st"), 40, &lr);
    craft(wpath("adam.st"), wpath("lr.st"), "chainrule.optimizer_state", hex);
    free(hex);
    r = run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2", wpath("lr.st"));
    expect_status(&r, 1, "learning rate inf is not a finite number >= 0", "lr inf in the state");
    result_free(&r);

    craft(wpath("adam.st"), wpath("wd.st"), "chainrule.optim.weight_decay", "inf");
    r = run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2", wpath("wd.st"));
    expect_status(&r, 1, "weight decay inf must be finite", "weight decay inf");
    result_free(&r);
    craft(wpath("adam.st"), wpath("gamma.st"), "chainrule.gamma", "7");
    r = run_cli("eval '%s' --data " SMALL, wpath("gamma.st"));
    expect_status(&r, 1, "metadata chainrule.gamma '7' is not valid", "gamma 7");
    result_free(&r);
}

Test(hostile, optimizer_step_count_is_bounded_in_the_library)
{
    nn_optim_config c = nn_optim_defaults(NN_OPT_ADAM);
    ad_error a_err;
    nn_optimizer *a = nn_optimizer_new_flat(AD_F64, 3, &c, &a_err);
    cr_assert_not_null(a, "%s", a_err.message);
    size_t bytes = nn_optimizer_state_bytes(a);
    unsigned char *buf = calloc(1, bytes);
    cr_assert_not_null(buf);
    cr_assert_eq(nn_optimizer_save_state(a, buf, bytes), 0);
    int64_t steps = INT64_MAX;
    memcpy(buf + 32, &steps, 8);
    cr_expect_eq(nn_optimizer_load_state(a, buf, bytes), -1);
    cr_expect_eq(nn_optimizer_errcode(a), AD_EINVAL);
    cr_expect(strstr(nn_optimizer_error(a), "step count 9223372036854775807 is not in [0, 2^53]"),
              "%s", nn_optimizer_error(a));
    cr_expect_eq(nn_optimizer_set_steps(a, NN_OPTIM_MAX_STEPS + 1), -1);
    cr_expect_eq(nn_optimizer_errcode(a), AD_EINVAL);
    cr_assert_eq(nn_optimizer_set_steps(a, NN_OPTIM_MAX_STEPS), 0);
    double p[3] = {1, 2, 3}, g[3] = {0.1, 0.2, 0.3};
    cr_expect_eq(nn_optimizer_update(a, p, g), -1, "an update past the bound overflows");
    cr_expect_eq(nn_optimizer_errcode(a), AD_ESTATE);
    cr_expect_eq(p[0], 1.0);
    free(buf);
    nn_optimizer_free(a);
}

Test(hostile, class_names_with_control_characters_are_refused)
{
    tiny_checkpoint("m.st", "");
    craft(wpath("m.st"), wpath("esc.st"), "chainrule.class_names",
          "a\x1b[31mred,b,c,d,e,f,g,h,i,j");
    result r = run_cli("predict '%s' " SMALL "/t10k-images-idx3-ubyte", wpath("esc.st"));
    expect_status(&r, 1, "name 1 has a control character (byte 0x1b)", "escape in a class name");
    cr_expect_str_empty(r.out);
    result_free(&r);
    craft(wpath("m.st"), wpath("nl.st"), "chainrule.class_names", "a,b\nfake line,c,d,e,f,g,h,i,j");
    r = run_cli("predict '%s' " SMALL "/t10k-images-idx3-ubyte", wpath("nl.st"));
    expect_status(&r, 1, "name 2 has a control character (byte 0x0a)", "newline in a class name");
    result_free(&r);
    r = run_cli(SMALL_RUN " --epochs 1 --class-names \"$(printf 'a\\tb')\"");
    expect_status(&r, 2, "has a control character (byte 0x09)", "--class-names with a tab");
    result_free(&r);
}

/* ------------------------------------------------------------------ classes */

Test(hostile, three_hundred_classes)
{
    int train[6] = {0, 299, 5, 100, 200, 299}, test[3] = {0, 299, 100};
    write_mnist_dir(wpath("c300"), train, 6, test, 3);
    result r = run_cli("train --data '%s' --val 0 --hidden 4 --batch 2 --epochs 1 --threads 1 "
                       "--quiet --save '%s'",
                       wpath("c300"), wpath("c300.st"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    result_free(&r);
    io_checkpoint *ck = NULL;
    ad_error err;
    cr_assert_eq(((ck = io_checkpoint_read(wpath("c300.st"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    const char *names = io_checkpoint_meta(ck, "chainrule.class_names");
    cr_assert_not_null(names);
    int commas = 0;
    for (const char *p = names; *p; p++)
        commas += *p == ',';
    cr_expect_eq(commas, 299, "%d class names", commas + 1);
    cr_expect(strncmp(names, "class 0,class 1,", 16) == 0, "%.40s", names);
    size_t len = strlen(names);
    cr_expect(len > 10 && strcmp(names + len - 10, ",class 299") == 0, "...%s",
              names + (len > 30 ? len - 30 : 0));
    io_checkpoint_free(ck);
    /* the architecture in the file: 6 inputs, 4 hidden, 300 outputs */
    nn_model *m = nn_model_load(wpath("c300.st"), 0, &err);
    cr_assert_not_null(m, "%s", err.message);
    char spec[256];
    cr_assert_eq(nn_model_spec(m, spec, sizeof spec), 0);
    cr_expect_eq(nn_model_in_features(m), 6);
    cr_expect_str_eq(spec, "dense(4,init=he_uniform),relu,dense(300,init=glorot_uniform)");
    nn_model_free(m);
    r = run_cli("eval '%s' --data '%s'", wpath("c300.st"), wpath("c300"));
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.out, "class 299") != NULL, "the report names class 299");
    result_free(&r);
}

Test(hostile, test_labels_must_be_training_classes_and_the_test_set_nonempty)
{
    int train[4] = {0, 1, 2, 1}, test[2] = {1, 200};
    write_mnist_dir(wpath("wide"), train, 4, test, 2);
    result r = run_cli("train --data '%s' --val 0 --hidden 4 --epochs 1 --quiet", wpath("wide"));
    expect_status(&r, 1, "test image 1 has label 200, but the network has 3 classes (0 to 2",
                  "test label 200");
    cr_expect_str_empty(r.out);
    result_free(&r);

    int test0[1] = {0};
    write_mnist_dir(wpath("notest"), train, 4, test0, 0);
    r = run_cli("train --data '%s' --val 0 --hidden 4 --epochs 1 --quiet", wpath("notest"));
    expect_status(&r, 1, "the test set has no images", "empty test set");
    cr_expect_str_empty(r.out);
    result_free(&r);
    tiny_checkpoint("m.st", "");
    r = run_cli("eval '%s' --data '%s'", wpath("m.st"), wpath("notest"));
    expect_status(&r, 1, "the test set has no images", "eval of an empty test set");
    cr_expect_str_empty(r.out);
    result_free(&r);
}

/* ------------------------------------------------------------------- resume */

Test(hostile, resume_refuses_options_that_differ_from_the_checkpoint)
{
    tiny_checkpoint("m.st", "--seed 7");
    const struct {
        const char *opt, *needle;
    } cases[] = {
        {"--val 2", "--val 2 differs from"},     {"--seed 8", "--seed 8 differs from"},
        {"--batch 4", "--batch 4 differs from"}, {"--subset 3", "--subset 3 differs from"},
        {"--lr 0.5", "--lr 0.5 differs from"},   {"--schedule cosine", "--schedule cosine"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result r = run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2 %s",
                           wpath("m.st"), cases[i].opt);
        expect_status(&r, 2, cases[i].needle, cases[i].opt);
        result_free(&r);
    }
    result r =
        run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2 --val 2", wpath("m.st"));
    cr_expect(strstr(r.err, "m.st's 0; a resumed run keeps its checkpoint's settings"), "%s",
              r.err);
    result_free(&r);
    r = run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2 --seed 8", wpath("m.st"));
    cr_expect(strstr(r.err, "m.st's 7;"), "%s", r.err);
    result_free(&r);
    /* the same values are fine */
    r = run_cli("train --data " SMALL " --quiet --resume '%s' --epochs 2 --seed 7 --val 0 "
                "--batch 2 --lr 0.01",
                wpath("m.st"));
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    result_free(&r);
}

/* ---------------------------------------------------------- divergence, locks */

Test(hostile, non_finite_weights_are_never_saved_nor_loaded)
{
    /* a checkpoint holding a NaN bias is refused unless asked */
    tiny_checkpoint("keep.st", "");
    io_checkpoint *ck = NULL;
    ad_error err;
    cr_assert_eq(((ck = io_checkpoint_read(wpath("keep.st"), &err)) ? AD_OK : err.code), 0, "%s",
                 err.message);
    size_t nt = io_checkpoint_count(ck), nm = io_checkpoint_meta_count(ck);
    io_array *t = calloc(nt, sizeof *t);
    io_ckpt_meta *m = calloc(nm, sizeof *m);
    float *bias = NULL;
    for (size_t i = 0; i < nt; i++) {
        t[i] = *io_checkpoint_tensor_at(ck, i);
        if (strcmp(t[i].name, "dense0.bias") == 0) {
            bias = malloc(t[i].shape[0] * sizeof *bias);
            memcpy(bias, t[i].data, t[i].shape[0] * sizeof *bias);
            bias[3] = NAN;
            t[i].data = bias;
        }
    }
    cr_assert_not_null(bias);
    for (size_t i = 0; i < nm; i++)
        m[i] = *io_checkpoint_meta_at(ck, i);
    cr_assert_eq(
        ((io_checkpoint_write(wpath("nan.st"), t, nt, m, nm, &err) == 0 ? AD_OK : err.code) == 0
             ? AD_OK
             : err.code),
        0);
    free(t);
    free(m);
    free(bias);
    io_checkpoint_free(ck);
    result r = run_cli("eval '%s' --data " SMALL, wpath("nan.st"));
    expect_status(&r, 1, "1 of 146 weights are NaN or infinite (a diverged run); --allow-nonfinite",
                  "eval of a NaN weight");
    result_free(&r);
    r = run_cli("eval '%s' --data " SMALL " --quiet --allow-nonfinite", wpath("nan.st"));
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    result_free(&r);

    /* a NaN bias behind a ReLU keeps the loss finite: the run goes on, but
     * the check before the save refuses to write the diverged weights */
    r = run_cli("train --data " SMALL " --quiet --resume '%s' --allow-nonfinite --epochs 2 "
                "--save '%s'",
                wpath("nan.st"), wpath("out.st"));
    expect_status(&r, 1, " of 146 weights and 0 of 0 optimizer state values are NaN or infinite",
                  "training from a NaN bias");
    cr_expect(strstr(r.err, "out.st was not written: try a smaller --lr"), "%s", r.err);
    result_free(&r);
    struct stat sb;
    cr_expect_neq(stat(wpath("out.st"), &sb), 0, "diverged weights were saved");
}

Test(hostile, two_runs_cannot_save_the_same_file)
{
    /* this process holds the lock, as a running `train --save` does */
    int fd = open(wpath("same.st.lock"), O_RDWR | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    cr_assert_eq(fcntl(fd, F_SETLK, &fl), 0);
    result r = run_cli(SMALL_RUN " --epochs 1 --save '%s'", wpath("same.st"));
    char needle[256];
    snprintf(needle, sizeof needle, "same.st is being written by another run: process %ld holds",
             (long)getpid());
    expect_status(&r, 1, needle, "a locked --save");
    result_free(&r);
    struct stat sb;
    cr_expect_neq(stat(wpath("same.st"), &sb), 0, "the locked file was written");
    close(fd);
    tiny_checkpoint("same.st", "");
}

/* ------------------------------------------------------------------- inputs */

Test(hostile, nan_pixels_are_refused_like_the_csv_reader_does)
{
    tiny_checkpoint("m.st", "");
    uint32_t dims[3] = {2, 2, 3};
    unsigned char px[12 * 4];
    for (int i = 0; i < 12; i++) {
        float v = i == 7 ? NAN : 0.5f;
        uint32_t bits;
        memcpy(&bits, &v, 4);
        put_be32(px + 4 * i, bits);
    }
    write_idx(wpath("nan.idx"), 0x0D, 3, dims, px, sizeof px);
    result r = run_cli("predict '%s' '%s'", wpath("m.st"), wpath("nan.idx"));
    expect_status(&r, 1, "nan.idx: value nan of example 1 (feature 1) is not a finite number",
                  "NaN pixels");
    cr_expect_str_empty(r.out);
    result_free(&r);
}
