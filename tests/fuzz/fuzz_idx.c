/* libFuzzer target: the IDX reader (plain or gzip) on arbitrary bytes. It
 * must return a status with a message, or a consistent tensor; never crash. */
#include <string.h>

#include "chainrule/data.h"
#include "fuzz_file_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".idx");
    io_idx *idx = NULL;
    ad_error err;
    memset(&err, 0, sizeof err);
    int st = ((idx = io_idx_read(path, &err)) ? 0 : -1);
    if (st == 0) {
        if (!idx)
            abort();
        io_dataset *ds = NULL;
        if ((ds = io_dataset_from_idx(idx, NULL, &err)) != NULL)
            io_dataset_free(ds);
        io_idx_free(idx);
    } else if (err.message[0] == '\0') {
        abort(); /* an error without a message */
    }
    return 0;
}
