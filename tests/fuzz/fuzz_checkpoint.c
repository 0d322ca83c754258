/* libFuzzer target: the safetensors checkpoint loader on arbitrary bytes. */
#include <string.h>

#include "chainrule/checkpoint.h"
#include "fuzz_file_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".safetensors");
    io_checkpoint *ck = NULL;
    ad_error err;
    memset(&err, 0, sizeof err);
    if ((ck = io_checkpoint_read(path, &err)) != NULL) {
        if (!ck)
            abort();
        (void)io_checkpoint_count(ck);
        io_checkpoint_free(ck);
    } else if (err.message[0] == '\0') {
        abort();
    }
    return 0;
}
