/*
 * chainrule/checkpoint.h -- saving and loading named tensors in the
 * safetensors format, so other tools (NumPy, PyTorch, Hugging Face's
 * safetensors) read chainrule's models and chainrule reads theirs.
 *
 * A worked example: save two parameters and the optimizer step, load them.
 *
 *     float w[300 * 784], b[300];
 *     io_ckpt_tensor t[2] = {
 *         {.name = "dense0.w", .dtype = IO_CKPT_F32, .ndim = 2, .shape = {300, 784}, .data = w},
 *         {.name = "dense0.b", .dtype = IO_CKPT_F32, .ndim = 1, .shape = {300}, .data = b},
 *     };
 *     io_ckpt_meta m[1] = {{"optimizer.step", "1719"}};
 *     io_ckpt_error err;
 *     if (io_checkpoint_write("model.safetensors", t, 2, m, 1, &err) != IO_CKPT_OK)
 *         fprintf(stderr, "%s\n", err.message);    // the old file is untouched
 *
 *     io_checkpoint *ck = NULL;
 *     size_t shape[2] = {300, 784};
 *     if (io_checkpoint_read("model.safetensors", &ck, &err) != IO_CKPT_OK ||
 *         io_checkpoint_copy(ck, "dense0.w", IO_CKPT_F32, 2, shape, w, &err) != IO_CKPT_OK)
 *         fprintf(stderr, "%s\n", err.message);    // names the problem
 *     const char *step = io_checkpoint_meta(ck, "optimizer.step");  // "1719"
 *     io_checkpoint_destroy(ck);
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
 * Conventions: functions that can fail return an io_ckpt_status and fill
 * *err (when not NULL) with a one-line message naming the file and the
 * problem. They never abort or print, and leave nothing allocated on
 * failure. Destroy functions accept NULL.
 */
#ifndef CHAINRULE_CHECKPOINT_H
#define CHAINRULE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Result of every fallible checkpoint function. */
typedef enum io_ckpt_status {
    IO_CKPT_OK = 0,
    IO_CKPT_ENOMEM,    /**< out of memory */
    IO_CKPT_EIO,       /**< cannot open, create, write, sync or rename a file */
    IO_CKPT_EFORMAT,   /**< not a valid safetensors file, truncated or corrupt */
    IO_CKPT_EMISMATCH, /**< valid file, but not what the caller expects */
    IO_CKPT_EINVAL     /**< a bad argument from the caller */
} io_ckpt_status;

/** Longest message kept in io_ckpt_error, terminator included. */
#define IO_CKPT_ERROR_MAX 512

/** Filled by failing functions when the caller passes one; may be NULL. */
typedef struct io_ckpt_error {
    io_ckpt_status status;           /**< the value the function returned */
    char message[IO_CKPT_ERROR_MAX]; /**< "" on success */
} io_ckpt_error;

/** A constant name for a status ("ok", "out of memory", ...). Never NULL. */
AD_API const char *io_ckpt_status_string(io_ckpt_status status);

/** Element types a checkpoint holds ("F32" and "F64" in the file). */
typedef enum io_ckpt_dtype { IO_CKPT_F32, IO_CKPT_F64 } io_ckpt_dtype;

/** Most axes a tensor may have. */
#define IO_CKPT_MAX_DIMS 8

/** Metadata key of the checksum the writer adds (see the top of this file). */
#define IO_CKPT_CHECKSUM_KEY "chainrule.crc32"

/**
 * A named tensor. For the writer every field is the caller's and data holds
 * the product of shape values of dtype in host order (may be NULL when that
 * product is 0). From the reader every pointer is owned by the checkpoint.
 * ndim 0 is a scalar (one element).
 */
typedef struct io_ckpt_tensor {
    const char *name;               /**< non-empty, unique, UTF-8 */
    io_ckpt_dtype dtype;            /**< element type */
    int ndim;                       /**< 0 .. IO_CKPT_MAX_DIMS */
    size_t shape[IO_CKPT_MAX_DIMS]; /**< the first ndim entries are used */
    const void *data;               /**< row-major values, host byte order */
} io_ckpt_tensor;

/** One metadata entry: UTF-8 key and value. */
typedef struct io_ckpt_meta {
    const char *key;   /**< unique within the file */
    const char *value; /**< any UTF-8 text, e.g. JSON */
} io_ckpt_meta;

/**
 * Allocator hook with lua_Alloc's contract: when nsize is 0 free ptr (which
 * may be NULL) and return NULL; otherwise act like realloc(ptr, nsize) and
 * return NULL on failure. osize is the old size of ptr (0 for NULL).
 */
typedef void *(*io_ckpt_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/**
 * Routes this module's allocations through alloc(ud, ...); NULL restores
 * malloc. Process-wide: set it before use, never while another thread uses
 * the module, and destroy checkpoints with the allocator that made them.
 * The JSON parser (libcjson) keeps using malloc.
 */
AD_API void io_checkpoint_set_allocator(io_ckpt_alloc_fn alloc, void *ud);

/**
 * Writes count tensors and meta_count metadata entries to path, atomically:
 * the bytes go to a new temporary file in the same directory (named
 * path.tmp-XXXXXX, mode 0644), which is flushed, fsync'ed and renamed over
 * path, and then the directory is fsync'ed. Every write is checked; on any
 * failure the temporary file is removed and an existing file at path is
 * left as it was (a crash or kill may leave a stray temporary file, never a
 * half-written path). Nothing passed in is retained.
 * Errors: IO_CKPT_EINVAL (empty, duplicate, non-UTF-8 or reserved name,
 * "__metadata__" as a tensor name, IO_CKPT_CHECKSUM_KEY as a metadata key,
 * bad dtype or ndim, NULL data for a non-empty tensor), IO_CKPT_EIO (the
 * directory is missing or not writable, the disk is full, fsync or rename
 * fails; the message names the path and the system's reason),
 * IO_CKPT_ENOMEM.
 */
AD_API io_ckpt_status io_checkpoint_write(const char *path, const io_ckpt_tensor *tensors,
                                          size_t count, const io_ckpt_meta *meta, size_t meta_count,
                                          io_ckpt_error *err);

/** A checkpoint read into memory. Opaque; query it with the functions below. */
typedef struct io_checkpoint io_checkpoint;

/**
 * Reads and validates a safetensors file: the header length against the
 * file size, the JSON, every tensor's dtype (F32 or F64), shape and
 * data_offsets (in range, consistent with shape times element size, not
 * overlapping, covering the data section without gaps), duplicate names,
 * string metadata, and the checksum when IO_CKPT_CHECKSUM_KEY is present.
 * The tensors' data is copied into aligned memory in host byte order.
 * *out is the caller's; free it with io_checkpoint_destroy.
 * Errors: IO_CKPT_EIO (cannot open or read, naming the path),
 * IO_CKPT_EFORMAT (the message names the problem and the tensor: a
 * truncated file, a header length past the end, invalid JSON, an unknown
 * dtype, a shape that does not match its offsets, overlapping tensors, a
 * checksum mismatch), IO_CKPT_ENOMEM.
 */
AD_API io_ckpt_status io_checkpoint_read(const char *path, io_checkpoint **out, io_ckpt_error *err);

/** Frees a checkpoint and everything it owns. Accepts NULL. */
AD_API void io_checkpoint_destroy(io_checkpoint *ck);

/**
 * True when the file carried IO_CKPT_CHECKSUM_KEY (and it matched, or the
 * read would have failed). False for files from other tools, and for a file
 * whose checksum key itself was damaged: callers that only accept their own
 * checkpoints should refuse unverified ones.
 */
AD_API bool io_checkpoint_verified(const io_checkpoint *ck);

/** Number of tensors, in the order of the file's header. */
AD_API size_t io_checkpoint_count(const io_checkpoint *ck);

/** Tensor i (< io_checkpoint_count), owned by ck; NULL when out of range. */
AD_API const io_ckpt_tensor *io_checkpoint_tensor_at(const io_checkpoint *ck, size_t i);

/** The tensor called name, owned by ck, or NULL when there is none. */
AD_API const io_ckpt_tensor *io_checkpoint_find(const io_checkpoint *ck, const char *name);

/** Number of metadata entries (the checksum entry is not counted). */
AD_API size_t io_checkpoint_meta_count(const io_checkpoint *ck);

/** Metadata entry i in file order, owned by ck; NULL when out of range. */
AD_API const io_ckpt_meta *io_checkpoint_meta_at(const io_checkpoint *ck, size_t i);

/** The metadata value for key, owned by ck, or NULL when absent. */
AD_API const char *io_checkpoint_meta(const io_checkpoint *ck, const char *key);

/**
 * Copies the tensor called name into dst (the caller's memory for the
 * product of shape elements of dtype), converting F32 <-> F64 when the file
 * holds the other type. For restoring a model: a missing tensor or another
 * shape is an error naming both shapes.
 * Errors: IO_CKPT_EMISMATCH ("no tensor 'x' in FILE", "tensor 'x' has shape
 * [300, 784] but [100, 784] is expected"), IO_CKPT_EINVAL (NULL arguments,
 * bad ndim).
 */
AD_API io_ckpt_status io_checkpoint_copy(const io_checkpoint *ck, const char *name,
                                         io_ckpt_dtype dtype, int ndim, const size_t *shape,
                                         void *dst, io_ckpt_error *err);

#ifdef __cplusplus
}
#endif

#endif /* CHAINRULE_CHECKPOINT_H */
