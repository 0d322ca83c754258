/* Shared by the file-reader fuzz targets: the readers take paths, so each
 * input is written to one temporary file that is reused across runs. */
#ifndef CHAINRULE_FUZZ_FILE_COMMON_H
#define CHAINRULE_FUZZ_FILE_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[256];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/chainrule-fuzz-%ld%s", (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    return path;
}

/* A model's allocator for the fuzz targets: counts live blocks (a block
 * left after the model is freed is a leak) and refuses blocks over cap
 * bytes, as a machine with little memory would (a crafted input may ask for
 * any size: that must be an error, not a crash). */
typedef struct {
    long live;
    size_t cap;
} fuzz_heap;

static inline void *fuzz_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    fuzz_heap *h = ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr)
            h->live--;
        free(ptr);
        return NULL;
    }
    if (nsize > h->cap)
        return NULL;
    void *q = realloc(ptr, nsize);
    if (q && !ptr)
        h->live++;
    return q;
}

#endif
