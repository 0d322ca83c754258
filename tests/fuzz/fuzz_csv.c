/* libFuzzer target: the CSV reader on arbitrary bytes. */
#include <string.h>

#include "chainrule/data.h"
#include "fuzz_file_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".csv");
    io_dataset *ds = NULL;
    ad_error err;
    memset(&err, 0, sizeof err);
    io_csv_options opt;
    memset(&opt, 0, sizeof opt);
    opt.label_index = -1;
    if ((ds = io_csv_read(path, &opt, &err)) != NULL) {
        if (!ds)
            abort();
        io_dataset_free(ds);
    } else if (err.message[0] == '\0') {
        abort();
    }
    return 0;
}
