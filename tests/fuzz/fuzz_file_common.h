/* Shared by the file-reader fuzz targets: the readers take paths, so each
 * input is written to one temporary file that is reused across runs. */
#ifndef CHAINRULE_FUZZ_FILE_COMMON_H
#define CHAINRULE_FUZZ_FILE_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix)
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

#endif
