/* libFuzzer target: the .npy and .npz readers on arbitrary bytes (the first
 * byte chooses which). Each must return a status with a message, or a
 * consistent result; never crash or leak. */
#include <string.h>

#include "chainrule/io.h"
#include "fuzz_file_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int npz = data[0] & 1;
    const char *path = fuzz_write_file(data + 1, size - 1, npz ? ".npz" : ".npy");
    ad_error err;
    memset(&err, 0, sizeof err);
    if (npz) {
        io_npz *z = NULL;
        if ((z = io_npz_read(path, &err)) != NULL) {
            if (!z)
                abort();
            (void)io_npz_count(z);
            io_npz_free(z);
        } else if (err.message[0] == '\0') {
            abort();
        }
    } else {
        io_array *a = NULL;
        if ((a = io_npy_read(path, &err)) != NULL) {
            if (!a)
                abort();
            io_array_free(a);
        } else if (err.message[0] == '\0') {
            abort();
        }
    }
    return 0;
}
