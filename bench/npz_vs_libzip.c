/* io_npz_read against libzip 1.7.3 on the malformed archives of
 * tests/test_io.c (malformed_npz_files) and on every truncation, and the
 * time to read a 64 MiB archive. Not built by Meson (libzip is no
 * dependency); docs/interop.md gives the command and the results. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zip.h>

#include <chainrule/io.h>

static void put16(unsigned char *p, unsigned v)
{
    p[0] = v & 0xFF;
    p[1] = (v >> 8) & 0xFF;
}
static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void spill(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n)
        abort();
    fclose(f);
    return b;
}

/* 1 when libzip (consistency checks on, every member read to its end, which
 * checks its CRC) rejects the archive; *bytes receives what it read. */
static int libzip_rejects(const char *path, size_t *bytes)
{
    int e = 0;
    zip_t *z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &e);
    *bytes = 0;
    if (!z)
        return 1;
    int bad = 0;
    zip_int64_t n = zip_get_num_entries(z, 0);
    for (zip_int64_t i = 0; i < n && !bad; i++) {
        zip_stat_t st;
        if (zip_stat_index(z, (zip_uint64_t)i, 0, &st) != 0) {
            bad = 1;
            break;
        }
        zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
        if (!f) {
            bad = 1;
            break;
        }
        char *buf = malloc(st.size ? st.size : 1);
        zip_int64_t got = zip_fread(f, buf, st.size);
        if (got < 0 || (zip_uint64_t)got != st.size)
            bad = 1;
        char extra;
        if (!bad && zip_fread(f, &extra, 1) < 0)
            bad = 1; /* the CRC is checked at the end of the data */
        if (zip_fclose(f) != 0)
            bad = 1;
        *bytes += (size_t)(got > 0 ? got : 0);
        free(buf);
    }
    zip_discard(z);
    return bad;
}

static int ours_rejects(const char *path)
{
    io_npz *z = io_npz_read(path, NULL);
    io_npz_free(z);
    return z == NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void)
{
    const char *good = "/tmp/good.npz", *p = "/tmp/bad.npz";
    float b32[3] = {1, 2, 3};
    double w64[6] = {1, 2, 3, 4, 5, 6};
    io_array a[2] = {{"a", AD_F32, 1, {3}, b32}, {"b", AD_F64, 2, {2, 3}, w64}};
    if (io_npz_write(good, a, 2, NULL) != 0)
        return 1;
    size_t len, got;
    unsigned char *z = slurp(good, &len), *m = malloc(len + 64);
    size_t end = len - 22;
    uint32_t cd = get32(z + end + 16);
    size_t cd2 = cd + 46 + 5;
    size_t a_data = 35 + 10 + ((size_t)z[35 + 8] | (size_t)z[35 + 9] << 8);
    int ours = 0, lz = 0, total = 0;
#define MUTATE(stmt, what)                                                                         \
    do {                                                                                           \
        memcpy(m, z, len);                                                                         \
        stmt;                                                                                      \
        spill(p, m, len);                                                                          \
        int o = ours_rejects(p), l = libzip_rejects(p, &got);                                      \
        ours += o;                                                                                 \
        lz += l;                                                                                   \
        total++;                                                                                   \
        printf("%-58s io_npz_read %-8s libzip %s\n", what, o ? "rejects" : "ACCEPTS",              \
               l ? "rejects" : "ACCEPTS");                                                         \
    } while (0)
    MUTATE(put32(m + end + 16, (uint32_t)len), "central directory offset past the end");
    MUTATE(put32(m + end + 12, 0xFFFFFF), "central directory size past the end");
    MUTATE((put16(m + end + 8, 60000), put16(m + end + 10, 60000)), "60000 entries");
    MUTATE(put16(m + end + 4, 1), "multi-disk");
    MUTATE(put32(m + cd, 0), "bad central entry signature");
    MUTATE(put32(m + cd + 42, 7), "bad local header offset (a)");
    MUTATE(put32(m + cd2 + 42, cd), "local header offset of b at the directory");
    MUTATE(put32(m + cd + 20, 100000), "compressed size past the members");
    MUTATE((put32(m + cd + 20, 10), put32(m + cd + 24, 10)), "sizes 10 (CRC mismatch)");
    MUTATE(put32(m + cd + 24, 10), "stored member, sizes differ");
    MUTATE(m[a_data + 1] ^= 1, "one data byte flipped (CRC mismatch)");
    MUTATE(put16(m + cd + 10, 12), "compression method 12");
    MUTATE(put16(m + cd + 8, 1), "encrypted flag");
    MUTATE(m[cd + 46 + 4] = 'z', "member a.npz (not .npy)");
    MUTATE(m[cd + 46] = 'b', "central name differs from the local name");
    MUTATE((m[cd + 46] = 'b', m[30] = 'b'), "two members named b.npy");
    MUTATE(put16(m + cd + 30, 400), "central extra field past the directory");
    MUTATE(put16(m + 28, 60000), "local extra field into the directory");
    MUTATE(m[30 + 5 + 6] = 9, ".npy version byte changed (CRC mismatch)");
    printf("mutations: io_npz_read rejects %d of %d, libzip %d of %d\n", ours, total, lz, total);
    int tours = 0, tlz = 0;
    for (size_t cut = 0; cut < len; cut++) {
        spill(p, z, cut);
        tours += ours_rejects(p);
        tlz += libzip_rejects(p, &got);
    }
    printf("truncations: io_npz_read rejects %d of %zu, libzip %d of %zu\n", tours, len, tlz, len);

    /* speed: 8 arrays of 2 Mi floats (64 MiB), best of 7, alternating */
    enum { K = 8, N = 2 * 1024 * 1024 };
    io_array big[K];
    char names[K][8];
    float *data = malloc(sizeof(float) * N * K);
    for (size_t i = 0; i < (size_t)N * K; i++)
        data[i] = (float)i;
    for (int k = 0; k < K; k++) {
        snprintf(names[k], sizeof names[k], "w%d", k);
        big[k] = (io_array){names[k], AD_F32, 1, {N}, data + (size_t)k * N};
    }
    const char *bp = "/tmp/big.npz";
    if (io_npz_write(bp, big, K, NULL) != 0)
        return 1;
    double best_o = 1e9, best_l = 1e9;
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        io_npz *zz = io_npz_read(bp, NULL);
        double t1 = now();
        if (!zz)
            return 1;
        io_npz_free(zz);
        double t2 = now();
        if (libzip_rejects(bp, &got))
            return 1;
        double t3 = now();
        best_o = t1 - t0 < best_o ? t1 - t0 : best_o;
        best_l = t3 - t2 < best_l ? t3 - t2 : best_l;
    }
    printf("64 MiB stored archive, best of 7: io_npz_read %.1f ms (parses every .npy), libzip "
           "%.1f ms (members' bytes only)\n",
           best_o * 1e3, best_l * 1e3);
    return 0;
}
