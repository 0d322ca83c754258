/**
 * @file chainrule/checkpoint.h
 * @brief Saving and loading named tensors in the
 * safetensors format, so other tools (NumPy, PyTorch, Hugging Face's
 * safetensors) read chainrule's models and chainrule reads theirs.
 *
 * A worked example: save two parameters and the optimizer step, load them.
 *
 *     float w[300 * 784], b[300];
 *     io_array t[2] = {
 *         {.name = "dense0.w", .dtype = AD_F32, .ndim = 2, .shape = {300, 784}, .data = w},
 *         {.name = "dense0.b", .dtype = AD_F32, .ndim = 1, .shape = {300}, .data = b},
 *     };
 *     io_ckpt_meta m[1] = {{"optimizer.step", "1719"}};
 *     ad_error err;
 *     if (io_checkpoint_write("model.safetensors", t, 2, m, 1, &err) != 0)
 *         fprintf(stderr, "%s\n", err.message);    // the old file is untouched
 *
 *     int64_t shape[2] = {300, 784};
 *     io_checkpoint *ck = io_checkpoint_read("model.safetensors", &err);
 *     if (!ck || io_checkpoint_copy(ck, "dense0.w", AD_F32, 2, shape, w, &err) != 0)
 *         fprintf(stderr, "%s\n", err.message);    // names the problem
 *     const char *step = io_checkpoint_meta(ck, "optimizer.step");  // "1719"
 *     io_checkpoint_free(ck);
 *
 * The file (https://github.com/huggingface/safetensors): an unsigned 64-bit
 * little-endian header length N, N bytes of JSON, then the raw little-endian
 * tensor bytes. The JSON object maps each tensor name to
 * {"dtype":"F32"|"F64","shape":[...],"data_offsets":[begin,end]} (offsets
 * relative to the first data byte) and "__metadata__" to an object of
 * string values (model architecture, optimizer state description).
 * chainrule pads the header with spaces to a multiple of 8 bytes and lays the
 * F64 tensors out before the F32 ones so every tensor is aligned.
 *
 * Integrity: the writer adds the metadata entry IO_CKPT_CHECKSUM_KEY, eight
 * lowercase hex digits of the CRC-32 (IEEE, zlib's crc32) of, in order:
 * for each tensor in header order, its name, a 0 byte, its dtype, a 0 byte,
 * its shape dims in decimal joined by ',' and a 0 byte, "begin,end" and a 0
 * byte; then for each other metadata entry in header order, key, 0 byte,
 * value, 0 byte; then the whole data section. The reader checks it when
 * present, so a flipped byte is refused (or, if the flip hits the checksum's
 * own key, the file reads as unverified: see io_checkpoint_verified); files
 * from other tools have none.
 *
 * Conventions (docs/errors.md): functions that can fail return 0 / -1 or a
 * pointer / NULL and fill *err (a caller-owned ad_error, may be NULL) with
 * the code and a one-line message naming the file and the problem. They
 * never abort or print, and leave nothing allocated on failure. Free
 * functions accept NULL. Memory comes from malloc or from the allocator
 * given to an X_with function; a checkpoint read with one keeps it. The
 * JSON parser and printer (libcjson) use malloc.
 */
#ifndef CHAINRULE_CHECKPOINT_H
#define CHAINRULE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "autodiff.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Metadata key of the checksum the writer adds (see the top of this file). */
#define IO_CKPT_CHECKSUM_KEY "chainrule.crc32"

/** One metadata entry: UTF-8 key and value. */
typedef struct io_ckpt_meta {
    const char *key;   /**< unique within the file */
    const char *value; /**< any UTF-8 text, e.g. JSON */
} io_ckpt_meta;

/**
 * Writes count tensors and meta_count metadata entries to path, atomically:
 * the bytes go to a new temporary file in the same directory (named
 * path.tmp-XXXXXX, mode 0644), which is flushed, fsync'ed and renamed over
 * path, and then the directory is fsync'ed. Every write is checked; on any
 * failure the temporary file is removed and an existing file at path is
 * left as it was (a crash or kill may leave a stray temporary file, never a
 * half-written path). Each tensor is an io_array (name, dtype AD_F32 or
 * AD_F64, ndim, shape, data in host order). Nothing passed in is retained.
 * Returns 0, or -1 with *err: AD_EINVAL (empty, duplicate, non-UTF-8 or reserved name,
 * "__metadata__" as a tensor name, IO_CKPT_CHECKSUM_KEY as a metadata key,
 * bad dtype or ndim, NULL data for a non-empty tensor), AD_EIO (the
 * directory is missing or not writable, the disk is full, fsync or rename
 * fails; the message names the path and the system's reason),
 * AD_ENOMEM.
 */
AD_API int io_checkpoint_write(const char *path, const io_array *tensors, int64_t count,
                               const io_ckpt_meta *meta, int64_t meta_count, ad_error *err);

/** io_checkpoint_write with its working memory from alloc(ud, ...). */
AD_API int io_checkpoint_write_with(const char *path, const io_array *tensors, int64_t count,
                                    const io_ckpt_meta *meta, int64_t meta_count, ad_alloc_fn alloc,
                                    void *ud, ad_error *err);

/** A checkpoint read into memory. Opaque; query it with the functions below. */
typedef struct io_checkpoint io_checkpoint;

/**
 * Reads and validates a safetensors file: the header length against the
 * file size, the JSON, every tensor's dtype (F32 or F64), shape and
 * data_offsets (in range, consistent with shape times element size, not
 * overlapping, covering the data section without gaps), duplicate names,
 * string metadata, and the checksum when IO_CKPT_CHECKSUM_KEY is present.
 * The tensors' data is copied into aligned memory in host byte order.
 * The checkpoint is the caller's; free it with io_checkpoint_free. Returns
 * NULL on failure with *err: AD_EINVAL (NULL path), AD_EIO (cannot open or read, naming the path),
 * AD_EFORMAT (the message names the problem and the tensor: a
 * truncated file, a header length past the end, invalid JSON, an unknown
 * dtype, a shape that does not match its offsets, overlapping tensors, a
 * checksum mismatch), AD_ENOMEM.
 */
AD_API io_checkpoint *io_checkpoint_read(const char *path, ad_error *err);

/** io_checkpoint_read with every allocation but the JSON parser's from alloc(ud, ...). */
AD_API io_checkpoint *io_checkpoint_read_with(const char *path, ad_alloc_fn alloc, void *ud,
                                              ad_error *err);

/** Frees a checkpoint and everything it owns. Accepts NULL. */
AD_API void io_checkpoint_free(io_checkpoint *ck);

/**
 * True when the file carried IO_CKPT_CHECKSUM_KEY (and it matched, or the
 * read would have failed). False for files from other tools, and for a file
 * whose checksum key itself was damaged: callers that only accept their own
 * checkpoints should refuse unverified ones.
 */
AD_API bool io_checkpoint_verified(const io_checkpoint *ck);

/** Number of tensors, in the order of the file's header. */
AD_API int64_t io_checkpoint_count(const io_checkpoint *ck);

/** Tensor i (0 <= i < io_checkpoint_count), owned by ck; NULL when out of range. */
AD_API const io_array *io_checkpoint_tensor_at(const io_checkpoint *ck, int64_t i);

/** The tensor called name, owned by ck, or NULL when there is none. */
AD_API const io_array *io_checkpoint_find(const io_checkpoint *ck, const char *name);

/** Number of metadata entries (the checksum entry is not counted). */
AD_API int64_t io_checkpoint_meta_count(const io_checkpoint *ck);

/** Metadata entry i in file order, owned by ck; NULL when out of range. */
AD_API const io_ckpt_meta *io_checkpoint_meta_at(const io_checkpoint *ck, int64_t i);

/** The metadata value for key, owned by ck, or NULL when absent. */
AD_API const char *io_checkpoint_meta(const io_checkpoint *ck, const char *key);

/**
 * Copies the tensor called name into dst (the caller's memory for the
 * product of shape elements of dtype), converting F32 <-> F64 when the file
 * holds the other type. For restoring a model: a missing tensor or another
 * shape is an error naming both shapes.
 * Returns 0, or -1 with *err: AD_EMISMATCH ("no tensor 'x' in FILE", "tensor 'x' has shape
 * [300, 784] but [100, 784] is expected"), AD_EINVAL (NULL arguments,
 * bad ndim).
 */
AD_API int io_checkpoint_copy(const io_checkpoint *ck, const char *name, ad_dtype dtype, int ndim,
                              const int64_t *shape, void *dst, ad_error *err);

#ifdef __cplusplus
}
#endif

#endif /* CHAINRULE_CHECKPOINT_H */
