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
    io_data_error err;
    memset(&err, 0, sizeof err);
    io_data_status st = io_idx_read(path, &idx, &err);
    if (st == IO_DATA_OK) {
        if (!idx)
            abort();
        io_dataset *ds = NULL;
        if (io_dataset_from_idx(idx, NULL, &ds, &err) == IO_DATA_OK)
            io_dataset_destroy(ds);
        io_idx_destroy(idx);
    } else if (err.message[0] == '\0') {
        abort(); /* an error without a message */
    }
    return 0;
}
