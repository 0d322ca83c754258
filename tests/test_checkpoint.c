/* Checkpoint files (safetensors): round trips, NumPy cross-checks, atomic
   replacement, write failures, and every kind of malformed file. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chainrule/checkpoint.h"
#include "test_files.h"

#ifndef CHAINRULE_TEST_DIR
#define CHAINRULE_TEST_DIR "tests"
#endif

#define PYTHON "/usr/bin/python3"

/* ------------------------------------------------------------ temp files */

static void make_tmpdir(void) { make_tmpdir_tagged("ckpt"); }

/* Number of entries of tmpdir whose name contains part. */
static int count_files(const char *part)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;
    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size + 1);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

/* -------------------------------------------------------- known content */

/* Mirrors known_tensors() in tests/safetensors_check.py. */
static float w[12], unicode_vals[2] = {1e-30f, -3.4e38f}, quoted_val[1] = {42.0f};
static double b[4], scalar_val[1] = {3.14159265358979311600};

static const io_ckpt_meta known_meta[3] = {
    {"arch", "784-300-100-10 relu"},
    {"optimizer", "{\"name\":\"adam\",\"step\":17}"},
    {"empty", ""},
};

static void known_tensors(io_array t[6])
{
    for (int i = 0; i < 12; i++)
        w[i] = (float)i * 0.5f - 1.0f;
    for (int i = 0; i < 4; i++)
        b[i] = 1.0 / (i + 1);
    memset(t, 0, 6 * sizeof *t);
    t[0] = (io_array){.name = "dense0.w", .dtype = AD_F32, .ndim = 2, .shape = {3, 4}, .data = w};
    t[1] = (io_array){.name = "dense0.b", .dtype = AD_F64, .ndim = 1, .shape = {4}, .data = b};
    t[2] = (io_array){.name = "scalar", .dtype = AD_F64, .ndim = 0, .data = scalar_val};
    t[3] = (io_array){.name = "empty", .dtype = AD_F32, .ndim = 2, .shape = {0, 5}};
    t[4] = (io_array){.name = "unicode.\xe5\x90\x8d\xe5\x89\x8d",
                      .dtype = AD_F32,
                      .ndim = 1,
                      .shape = {2},
                      .data = unicode_vals};
    t[5] = (io_array){.name = "quote\"back\\slash\nnewline",
                      .dtype = AD_F32,
                      .ndim = 1,
                      .shape = {1},
                      .data = quoted_val};
}

static void write_known(const char *path)
{
    io_array t[6];
    ad_error err;
    known_tensors(t);
    cr_assert_eq((io_checkpoint_write(path, t, 6, known_meta, 3, &err) == 0 ? AD_OK : err.code), 0,
                 "%s", err.message);
}

/* ---------------------------------------------------------- round trip */

Test(checkpoint, round_trip_values_shapes_metadata, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("model.safetensors");
    io_array t[6];
    io_checkpoint *ck = NULL;
    ad_error err;
    write_known(path);
    known_tensors(t);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert(io_checkpoint_verified(ck));
    cr_assert_eq(io_checkpoint_count(ck), 6);
    for (int64_t i = 0; i < 6; i++) {
        const io_array *r = io_checkpoint_tensor_at(ck, i);
        int64_t n = 1;
        cr_assert_str_eq(r->name, t[i].name, "header order is kept");
        cr_assert_eq(r->dtype, t[i].dtype);
        cr_assert_eq(r->ndim, t[i].ndim);
        for (int k = 0; k < r->ndim; k++) {
            cr_assert_eq(r->shape[k], t[i].shape[k]);
            n *= r->shape[k];
        }
        if (n)
            cr_assert_arr_eq(r->data, t[i].data, n * (r->dtype == AD_F64 ? 8 : 4));
        if (r->data)
            cr_assert_eq((uintptr_t)r->data % 8, 0, "tensor data is aligned");
    }
    cr_assert_null(io_checkpoint_tensor_at(ck, 6));
    cr_assert_eq(io_checkpoint_meta_count(ck), 3, "the checksum is not listed");
    cr_assert_str_eq(io_checkpoint_meta_at(ck, 1)->key, "optimizer");
    cr_assert_str_eq(io_checkpoint_meta(ck, "optimizer"), "{\"name\":\"adam\",\"step\":17}");
    cr_assert_str_eq(io_checkpoint_meta(ck, "empty"), "");
    cr_assert_null(io_checkpoint_meta(ck, "missing"));
    cr_assert_null(io_checkpoint_meta(ck, IO_CKPT_CHECKSUM_KEY));
    cr_assert_eq(*(const double *)io_checkpoint_find(ck, "scalar")->data, scalar_val[0]);
    cr_assert_null(io_checkpoint_find(ck, "nope"));
    io_checkpoint_free(ck);
    io_checkpoint_free(NULL);
    cr_assert_eq(count_files(".tmp-"), 0, "no temporary file is left");
}

Test(checkpoint, copy_converts_and_refuses_mismatches, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("model.safetensors");
    io_checkpoint *ck = NULL;
    ad_error err;
    double wd[12];
    float bf[4];
    int64_t shape_w[2] = {3, 4}, shape_wt[2] = {4, 3}, shape_b[1] = {4};
    write_known(path);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), 0);
    cr_assert_eq(
        (io_checkpoint_copy(ck, "dense0.w", AD_F64, 2, shape_w, wd, &err) == 0 ? AD_OK : err.code),
        0);
    cr_assert_eq(wd[11], 4.5);
    cr_assert_eq(
        (io_checkpoint_copy(ck, "dense0.b", AD_F32, 1, shape_b, bf, &err) == 0 ? AD_OK : err.code),
        0);
    cr_assert_eq(bf[2], (float)(1.0 / 3.0));
    cr_assert_eq(
        (io_checkpoint_copy(ck, "dense0.w", AD_F32, 2, shape_wt, wd, &err) == 0 ? AD_OK : err.code),
        AD_EMISMATCH);
    cr_assert_str_eq(err.message, "tensor 'dense0.w' has shape [3, 4] but [4, 3] is expected");
    cr_assert_eq(
        (io_checkpoint_copy(ck, "dense0.w", AD_F32, 1, shape_b, wd, &err) == 0 ? AD_OK : err.code),
        AD_EMISMATCH);
    cr_assert_str_eq(err.message, "tensor 'dense0.w' has shape [3, 4] but [4] is expected");
    cr_assert_eq(
        (io_checkpoint_copy(ck, "dense1.w", AD_F32, 2, shape_w, wd, &err) == 0 ? AD_OK : err.code),
        AD_EMISMATCH);
    cr_assert_str_eq(err.message, "no tensor 'dense1.w' in the checkpoint");
    io_checkpoint_free(ck);
}

Test(checkpoint, negative_counts_and_sizes_are_refused, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("neg.safetensors");
    ad_error err;
    float v[3] = {1, 2, 3};
    io_array neg = {.name = "w", .dtype = AD_F32, .ndim = 1, .shape = {-3}, .data = v};
    cr_assert_eq(io_checkpoint_write(path, &neg, -1, NULL, 0, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message,
                     "io_checkpoint_write: negative count (-1 tensors, 0 metadata entries)");
    cr_assert_eq(io_checkpoint_write(path, &neg, 1, NULL, 0, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert(strstr(err.message, "tensor 'w' has a negative size -3 on axis 0"), "%s",
              err.message);
    write_known(path);
    io_checkpoint *ck = NULL;
    cr_assert_not_null(ck = io_checkpoint_read(path, &err), "%s", err.message);
    cr_assert_null(io_checkpoint_tensor_at(ck, -1));
    cr_assert_null(io_checkpoint_meta_at(ck, -1));
    cr_assert_eq(io_checkpoint_copy(ck, "dense0.b", AD_F32, 1, (int64_t[]){-4}, v, &err), -1);
    cr_assert_eq(err.code, AD_EINVAL);
    cr_assert_str_eq(err.message, "io_checkpoint_copy: size -4 of axis 0 is negative");
    io_checkpoint_free(ck);
}

/* ------------------------------------------------------------- NumPy */

static bool have_numpy(void)
{
    return access(PYTHON, X_OK) == 0 && system(PYTHON " -c 'import numpy' >/dev/null 2>&1") == 0;
}

Test(checkpoint, numpy_reads_what_chainrule_writes, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char cmd[1024];
    const char *path = tmp_path("model.safetensors");
    if (!have_numpy())
        cr_skip_test("%s with numpy not found (Debian: python3-numpy)", PYTHON);
    write_known(path);
    snprintf(cmd, sizeof cmd, PYTHON " %s/safetensors_check.py check %s", CHAINRULE_TEST_DIR, path);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

Test(checkpoint, chainrule_reads_what_numpy_writes, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char cmd[1024];
    const char *path = tmp_path("foreign.safetensors");
    io_checkpoint *ck = NULL;
    ad_error err;
    const io_array *t;
    const double *bd;
    const float *af;
    if (!have_numpy())
        cr_skip_test("%s with numpy not found (Debian: python3-numpy)", PYTHON);
    snprintf(cmd, sizeof cmd, PYTHON " %s/safetensors_check.py write %s >/dev/null",
             CHAINRULE_TEST_DIR, path);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_not(io_checkpoint_verified(ck), "other tools write no checksum");
    cr_assert_eq(io_checkpoint_count(ck), 4);
    cr_assert_str_eq(io_checkpoint_tensor_at(ck, 0)->name, "a.f32");
    cr_assert_str_eq(io_checkpoint_meta(ck, "format"), "pt");
    t = io_checkpoint_find(ck, "b.f64");
    cr_assert_eq(t->dtype, AD_F64);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[1], 3);
    bd = t->data;
    cr_assert_eq(bd[0], -2.5);
    cr_assert_eq(bd[5], 2.5);
    af = io_checkpoint_find(ck, "a.f32")->data;
    cr_assert_eq(af[3], 1e-3f);
    cr_assert_eq(io_checkpoint_find(ck, "s.scalar")->ndim, 0);
    cr_assert_eq(*(const float *)io_checkpoint_find(ck, "s.scalar")->data, 2.5f);
    cr_assert_eq(io_checkpoint_find(ck, "z.empty")->shape[0], 0);
    io_checkpoint_free(ck);
}

/* ------------------------------------------------------ atomic writes */

Test(checkpoint, overwrite_replaces_and_leaves_no_temporary, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
    const char *path = tmp_path("m.safetensors");
    float v1[2] = {1, 2}, v2[3] = {3, 4, 5};
    io_array t = {.name = "v", .dtype = AD_F32, .ndim = 1, .shape = {2}, .data = v1};
    io_checkpoint *ck = NULL;
    struct stat sb;
    cr_assert_eq(io_checkpoint_write(path, &t, 1, NULL, 0, NULL), 0);
    t.shape[0] = 3;
    t.data = v2;
    cr_assert_eq(io_checkpoint_write(path, &t, 1, NULL, 0, NULL), 0);
    cr_assert_eq(((ck = io_checkpoint_read(path, NULL)) ? 0 : -1), 0);
    cr_assert_eq(io_checkpoint_find(ck, "v")->shape[0], 3);
    cr_assert_eq(((const float *)io_checkpoint_find(ck, "v")->data)[2], 5.0f);
    io_checkpoint_free(ck);
    cr_assert_eq(count_files(".tmp-"), 0);
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0644);
    /* A relative path (temporary file in the current directory). */
    cr_assert_eq(chdir(tmpdir), 0);
    cr_assert_eq(io_checkpoint_write("rel.safetensors", &t, 1, NULL, 0, NULL), 0);
    cr_assert_eq(access(tmp_path("rel.safetensors"), R_OK), 0);
}

Test(checkpoint, unwritable_and_missing_directories, .init = make_tmpdir, .fini = remove_tmpdir)
{
    float v[1] = {1};
    io_array t = {.name = "v", .dtype = AD_F32, .ndim = 1, .shape = {1}, .data = v};
    ad_error err;
    cr_assert_eq((io_checkpoint_write("/no/such/dir/m.safetensors", &t, 1, NULL, 0, &err) == 0
                      ? AD_OK
                      : err.code),
                 AD_EIO);
    cr_assert_str_eq(err.message, "cannot create a temporary file in /no/such/dir for "
                                  "/no/such/dir/m.safetensors: No such file or directory");
    /* The path is a directory: the rename fails, the directory survives. */
    cr_assert_eq(mkdir(tmp_path("sub"), 0700), 0);
    cr_assert_eq(
        (io_checkpoint_write(tmp_path("sub"), &t, 1, NULL, 0, &err) == 0 ? AD_OK : err.code),
        AD_EIO);
    assert_contains(err.message, "cannot rename");
    assert_contains(err.message, "Is a directory");
    cr_assert_eq(count_files(".tmp-"), 0, "the temporary file is removed");
    if (geteuid() != 0) {
        cr_assert_eq(chmod(tmp_path("sub"), 0500), 0);
        cr_assert_eq((io_checkpoint_write(tmp_path("sub/m.safetensors"), &t, 1, NULL, 0, &err) == 0
                          ? AD_OK
                          : err.code),
                     AD_EIO);
        assert_contains(err.message, "Permission denied");
    }
    if (access("/proc/self", F_OK) == 0) { /* unwritable even for root */
        cr_assert_eq((io_checkpoint_write("/proc/m.safetensors", &t, 1, NULL, 0, &err) == 0
                          ? AD_OK
                          : err.code),
                     AD_EIO);
        assert_contains(err.message, "cannot create a temporary file in /proc");
    }
}

Test(checkpoint, full_disk_keeps_the_old_file, .init = make_tmpdir, .fini = remove_tmpdir)
{
    enum { N = 64 * 1024 };
    static float big[N];
    float small[2] = {7, 8};
    const char *path = tmp_path("m.safetensors");
    io_array t = {.name = "v", .dtype = AD_F32, .ndim = 1, .shape = {2}, .data = small};
    ad_error err;
    io_checkpoint *ck = NULL;
    struct rlimit rl;
    cr_assert_eq((io_checkpoint_write(path, &t, 1, NULL, 0, &err) == 0 ? AD_OK : err.code), 0);
    /* A file size limit makes write() fail like a full disk (EFBIG instead
       of ENOSPC); this test runs in its own process. */
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = 16 * 1024;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    t.shape[0] = N;
    t.data = big;
    cr_assert_eq((io_checkpoint_write(path, &t, 1, NULL, 0, &err) == 0 ? AD_OK : err.code), AD_EIO);
    assert_contains(err.message, "failed: File too large");
    assert_contains(err.message, "is unchanged");
    cr_assert_eq(count_files(".tmp-"), 0);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), 0, "%s", err.message);
    cr_assert_eq(io_checkpoint_find(ck, "v")->shape[0], 2);
    io_checkpoint_free(ck);
}

Test(checkpoint, killed_mid_save_leaves_old_or_new, .init = make_tmpdir, .fini = remove_tmpdir,
     .timeout = 120)
{
    enum { N = 256 * 1024 };
    static float a[N], bb[N];
    const char *path = tmp_path("m.safetensors");
    io_array t = {.name = "v", .dtype = AD_F32, .ndim = 1, .shape = {N}, .data = a};
    int old_or_new[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        a[i] = 1.0f;
        bb[i] = 2.0f;
    }
    cr_assert_eq(io_checkpoint_write(path, &t, 1, NULL, 0, NULL), 0);
    srand(12345);
    for (int round = 0; round < 40; round++) {
        io_checkpoint *ck = NULL;
        ad_error err;
        float first;
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) { /* keep saving, alternating contents */
            for (int k = 0;; k++) {
                t.data = k % 2 ? a : bb;
                io_checkpoint_write(path, &t, 1, NULL, 0, NULL);
            }
        }
        {
            struct timespec ts = {0, 1000000L + (long)(rand() % 20) * 1000000L};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), 0, "round %d: %s",
                     round, err.message);
        cr_assert(io_checkpoint_verified(ck));
        first = ((const float *)io_checkpoint_find(ck, "v")->data)[0];
        cr_assert(first == 1.0f || first == 2.0f);
        old_or_new[first == 2.0f]++;
        io_checkpoint_free(ck);
    }
    /* Stray temporary files show that kills did land in the middle of saves. */
    cr_log_info("after SIGKILL: %d times contents A, %d times B, %d interrupted saves",
                old_or_new[0], old_or_new[1], count_files(".tmp-"));
}

/* ---------------------------------------------------- writer arguments */

Test(checkpoint, writer_rejects_bad_arguments, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("m.safetensors");
    float v[2] = {1, 2};
    io_array t[2] = {
        {.name = "a", .dtype = AD_F32, .ndim = 1, .shape = {2}, .data = v},
        {.name = "a", .dtype = AD_F32, .ndim = 1, .shape = {2}, .data = v},
    };
    io_ckpt_meta m[2] = {{"k", "v"}, {"k", "w"}};
    ad_error err;
    cr_assert_eq((io_checkpoint_write(path, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "two tensors are called 'a'");
    t[1].name = "__metadata__";
    cr_assert_eq((io_checkpoint_write(path, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "'__metadata__' is reserved");
    t[1].name = "\xff\xfe";
    cr_assert_eq((io_checkpoint_write(path, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "not valid UTF-8");
    t[1].name = "";
    cr_assert_eq((io_checkpoint_write(path, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "tensor 1 has no name");
    t[1].name = "b";
    t[1].data = NULL;
    cr_assert_eq((io_checkpoint_write(path, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "tensor 'b' has no data");
    t[1].data = v;
    t[1].ndim = 9;
    cr_assert_eq((io_checkpoint_write(path, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    assert_contains(err.message, "tensor 'b' has 9 dimensions");
    t[1].ndim = 1;
    cr_assert_eq((io_checkpoint_write(path, t, 2, m, 2, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    assert_contains(err.message, "two metadata entries are called 'k'");
    m[1].key = IO_CKPT_CHECKSUM_KEY;
    cr_assert_eq((io_checkpoint_write(path, t, 2, m, 2, &err) == 0 ? AD_OK : err.code), AD_EINVAL);
    assert_contains(err.message, "reserved for the checksum");
    cr_assert_eq((io_checkpoint_write(NULL, t, 2, NULL, 0, &err) == 0 ? AD_OK : err.code),
                 AD_EINVAL);
    cr_assert_eq(access(path, F_OK), -1, "nothing was written");
    cr_assert_eq((io_checkpoint_write(path, t, 2, m, 1, &err) == 0 ? AD_OK : err.code), 0, "%s",
                 err.message);
    cr_assert_str_eq(err.message, "");
}

/* ---------------------------------------------------- malformed files */

/* A file of an 8-byte length, the JSON header text, then data bytes. */
static void craft(const char *path, const char *json, const void *data, size_t data_len)
{
    size_t n = strlen(json);
    unsigned char *buf = malloc(8 + n + data_len + 1);
    for (int k = 0; k < 8; k++)
        buf[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(buf + 8, json, n);
    if (data_len)
        memcpy(buf + 8 + n, data, data_len);
    write_bytes(path, buf, 8 + n + data_len);
    free(buf);
}

static void expect_read_error(const char *json, size_t data_len, ad_errcode status,
                              const char *text)
{
    static const unsigned char zeros[64];
    const char *path = tmp_path("bad.safetensors");
    io_checkpoint *ck = (io_checkpoint *)&ck;
    ad_error err;
    craft(path, json, zeros, data_len);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), status,
                 "%s: got \"%s\"", json, err.message);
    cr_assert_null(ck);
    assert_contains(err.message, path);
    assert_contains(err.message, text);
}

Test(checkpoint, malformed_headers_are_named, .init = make_tmpdir, .fini = remove_tmpdir)
{
    expect_read_error("[1, 2]", 0, AD_EFORMAT, "the header does not start with '{'");
    expect_read_error("{\"a\":", 0, AD_EFORMAT, "the header is not valid JSON");
    expect_read_error("{} x", 0, AD_EFORMAT, "unexpected bytes after the header's JSON");
    expect_read_error("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                      AD_EFORMAT, "tensor 'a' has dtype 'BF16'; only F32 and F64");
    expect_read_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, AD_EFORMAT,
                      "tensor 'a' has no \"dtype\" string");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, AD_EFORMAT,
                      "tensor 'a' has no \"shape\" array");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                      AD_EFORMAT, "shape entry 0 is not a non-negative integer");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
                      AD_EFORMAT, "shape entry 0 is not a non-negative integer");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,4]}}",
                      4, AD_EFORMAT, "has 9 dimensions");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                      AD_EFORMAT, "needs \"data_offsets\" [begin, end]");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                      AD_EFORMAT,
                      "tensor 'a': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] "
                      "hold 8");
    expect_read_error("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8,
                      AD_EFORMAT,
                      "truncated file: tensor 'a' has data_offsets [0, 16] but the data "
                      "section holds 8 bytes");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      12, AD_EFORMAT, "tensors 'a' and 'b' overlap");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                      12, AD_EFORMAT, "4 bytes before tensor 'b' belong to no tensor");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
                      AD_EFORMAT, "8 bytes at the end of the file belong to no tensor");
    expect_read_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, AD_EFORMAT, "tensor 'a' appears twice");
    expect_read_error("{\"__metadata__\":{\"k\":1}}", 0, AD_EFORMAT,
                      "metadata 'k' is not a string");
    expect_read_error("{\"__metadata__\":[]}", 0, AD_EFORMAT,
                      "\"__metadata__\" is not a JSON object");
    expect_read_error("{\"__metadata__\":{\"chainrule.crc32\":\"12345678\"}}", 0, AD_EFORMAT,
                      "checksum mismatch");
}

Test(checkpoint, bad_lengths_and_missing_files, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("x.safetensors");
    unsigned char huge[16] = {0x40, 0x42, 0x0f, 0, 0, 0, 0, 0, '{', '}'};
    io_checkpoint *ck = NULL;
    ad_error err;
    cr_assert_eq(((ck = io_checkpoint_read(tmp_path("none.safetensors"), &err)) ? AD_OK : err.code),
                 AD_EIO);
    assert_contains(err.message, "none.safetensors: No such file or directory");
    write_bytes(path, "", 0);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), AD_EFORMAT);
    assert_contains(err.message, "truncated file: 0 bytes, shorter than the 8-byte header length");
    write_bytes(path, huge, 10);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), AD_EFORMAT);
    assert_contains(err.message, "header length 1000000 goes past the end of the file");
    huge[3] = 0x10; /* 268 MB */
    write_bytes(path, huge, 10);
    cr_assert_eq(((ck = io_checkpoint_read(path, &err)) ? AD_OK : err.code), AD_EFORMAT);
    assert_contains(err.message, "is over the 100 MB limit");
    cr_assert_eq(((ck = io_checkpoint_read(tmpdir, &err)) ? AD_OK : err.code), AD_EIO);
    assert_contains(err.message, "Is a directory");
    cr_assert_null(ck);
}

Test(checkpoint, every_truncation_is_refused, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("m.safetensors"), *cut = tmp_path("cut.safetensors");
    size_t len;
    unsigned char *bytes;
    write_known(path);
    bytes = read_bytes(path, &len);
    for (size_t n = 0; n < len; n++) {
        io_checkpoint *ck = NULL;
        ad_error err;
        write_bytes(cut, bytes, n);
        cr_assert_eq(((ck = io_checkpoint_read(cut, &err)) ? AD_OK : err.code), AD_EFORMAT,
                     "cut at %zu of %zu", n, len);
        cr_assert_null(ck);
    }
    free(bytes);
}

Test(checkpoint, every_flipped_byte_is_detected, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("m.safetensors"), *bad = tmp_path("flip.safetensors");
    const unsigned char masks[3] = {0x01, 0x80, 0xff};
    size_t len, unverified = 0;
    unsigned char *bytes;
    write_known(path);
    bytes = read_bytes(path, &len);
    for (size_t i = 0; i < len; i++)
        for (int m = 0; m < 3; m++) {
            io_checkpoint *ck = NULL;
            int st;
            bytes[i] ^= masks[m];
            write_bytes(bad, bytes, len);
            bytes[i] ^= masks[m];
            st = ((ck = io_checkpoint_read(bad, NULL)) ? 0 : -1);
            if (st == 0) {
                /* Only a flip inside the checksum's own key can pass, and
                   then the file is no longer verified. */
                cr_assert_not(io_checkpoint_verified(ck),
                              "flip of byte %zu (mask %02x) "
                              "went unnoticed",
                              i, masks[m]);
                unverified++;
            }
            io_checkpoint_free(ck);
        }
    cr_assert_leq(unverified, 3 * strlen(IO_CKPT_CHECKSUM_KEY));
    free(bytes);
}

/* ---------------------------------------------------- allocation failure */

typedef struct {
    long calls, fail_at, live;
    long long bytes;
} counting_alloc;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counting_alloc *a = ud;
    void *p;
    if (nsize == 0) {
        if (ptr) {
            a->live--;
            a->bytes -= (long long)osize;
        }
        free(ptr);
        return NULL;
    }
    if (a->calls++ == a->fail_at)
        return NULL;
    p = realloc(ptr, nsize);
    if (p) {
        a->live += ptr ? 0 : 1;
        a->bytes += (long long)nsize - (long long)(ptr ? osize : 0);
    }
    return p;
}

Test(checkpoint, allocation_failures_leak_nothing, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *path = tmp_path("m.safetensors");
    io_array t[6];
    long n;
    known_tensors(t);
    for (int phase = 0; phase < 2; phase++) {
        for (n = 0; n < 1000; n++) {
            counting_alloc a = {0, n, 0, 0};
            io_checkpoint *ck = NULL;
            ad_error err;
            int st;
            if (phase == 0)
                st = io_checkpoint_write_with(path, t, 6, known_meta, 3, failing_alloc, &a, &err) ==
                             0
                         ? AD_OK
                         : err.code;
            else
                st = (ck = io_checkpoint_read_with(path, failing_alloc, &a, &err)) ? AD_OK
                                                                                   : err.code;
            io_checkpoint_free(ck);
            cr_assert_eq(a.live, 0, "phase %d: leak when allocation %ld fails", phase, n);
            cr_assert_eq(a.bytes, 0, "phase %d: size bookkeeping", phase);
            if (st == 0)
                break;
            cr_assert_eq(st, AD_ENOMEM, "phase %d, allocation %ld: %s", phase, n, err.message);
        }
        cr_assert_gt(n, 0);
        cr_assert_eq(count_files(".tmp-"), 0);
    }
    cr_assert_str_eq(ad_errcode_string(AD_EFORMAT), "bad file format");
}
