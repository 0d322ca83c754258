/* Heap use of reading /tmp/good.npz (written by npz_vs_libzip): mode 0 io_npz_read_with (a counting
 * allocator), mode 1 libzip (open, read every member to its end). */
#include <stdio.h>
#include <stdlib.h>
#include <zip.h>

#include <chainrule/io.h>

static long calls;
static void *counting(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    calls++;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, nsize);
}

int main(int argc, char **argv)
{
    const char *path = "/tmp/good.npz";
    if (argc > 1 && argv[1][0] == '2')
        return 0;
    if (argc > 1 && argv[1][0] == '1') {
        zip_t *z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, NULL);
        if (!z)
            return 1;
        for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0); i++) {
            zip_stat_t st;
            zip_stat_index(z, (zip_uint64_t)i, 0, &st);
            zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
            char buf[4096];
            while (zip_fread(f, buf, sizeof buf) > 0)
                ;
            zip_fclose(f);
        }
        zip_discard(z);
        return 0;
    }
    io_npz *z = io_npz_read_with(path, counting, NULL, NULL);
    if (!z)
        return 1;
    io_npz_free(z);
    printf("allocator calls through the hook: %ld\n", calls);
    return 0;
}
