/*
 * chainrule/checkpoint.h -- saving and loading named tensors in the
 * safetensors format, so other tools (NumPy, PyTorch, Hugging Face's
 * safetensors) read chainrule's models and chainrule reads theirs.
 *
 * A worked example: save two parameters and the optimizer step, load them.
 *
 *     float w[300 * 784], b[300];
 *     nn_ckpt_tensor t[2] = {
 *         {.name = "dense0.w", .dtype = NN_CKPT_F32, .ndim = 2, .shape = {300, 784}, .data = w},
 *         {.name = "dense0.b", .dtype = NN_CKPT_F32, .ndim = 1, .shape = {300}, .data = b},
 *     };
 *     nn_ckpt_meta m[1] = {{"optimizer.step", "1719"}};
 *     nn_ckpt_error err;
 *     if (nn_checkpoint_write("model.safetensors", t, 2, m, 1, &err) != NN_CKPT_OK)
 *         fprintf(stderr, "%s\n", err.message);    // the old file is untouched
 *
 *     nn_checkpoint *ck = NULL;
 *     size_t shape[2] = {300, 784};
 *     if (nn_checkpoint_read("model.safetensors", &ck, &err) != NN_CKPT_OK ||
 *         nn_checkpoint_copy(ck, "dense0.w", NN_CKPT_F32, 2, shape, w, &err) != NN_CKPT_OK)
 *         fprintf(stderr, "%s\n", err.message);    // names the problem
 *     const char *step = nn_checkpoint_meta(ck, "optimizer.step");  // "1719"
 *     nn_checkpoint_destroy(ck);
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
 * Integrity: the writer adds the metadata entry NN_CKPT_CHECKSUM_KEY, eight
 * lowercase hex digits of the CRC-32 (IEEE, zlib's crc32) of, in order:
 * for each tensor in header order, its name, a 0 byte, its dtype, a 0 byte,
 * its shape dims in decimal joined by ',' and a 0 byte, "begin,end" and a 0
 * byte; then for each other metadata entry in header order, key, 0 byte,
 * value, 0 byte; then the whole data section. The reader checks it when
 * present, so a flipped byte is refused (or, if the flip hits the checksum's
 * own key, the file reads as unverified: see nn_checkpoint_verified); files
 * from other tools have none.
 *
 * Conventions: functions that can fail return an nn_ckpt_status and fill
 * *err (when not NULL) with a one-line message naming the file and the
 * problem. They never abort or print, and leave nothing allocated on
 * failure. Destroy functions accept NULL.
 */
#ifndef CHAINRULE_CHECKPOINT_H
#define CHAINRULE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CHAINRULE_BUILDING) && defined(__GNUC__)
#define NN_CKPT_API __attribute__((visibility("default")))
#else
#define NN_CKPT_API
#endif

/** Result of every fallible checkpoint function. */
typedef enum nn_ckpt_status {
    NN_CKPT_OK = 0,
    NN_CKPT_ENOMEM,    /**< out of memory */
    NN_CKPT_EIO,       /**< cannot open, create, write, sync or rename a file */
    NN_CKPT_EFORMAT,   /**< not a valid safetensors file, truncated or corrupt */
    NN_CKPT_EMISMATCH, /**< valid file, but not what the caller expects */
    NN_CKPT_EINVAL     /**< a bad argument from the caller */
} nn_ckpt_status;

/** Longest message kept in nn_ckpt_error, terminator included. */
#define NN_CKPT_ERROR_MAX 512

/** Filled by failing functions when the caller passes one; may be NULL. */
typedef struct nn_ckpt_error {
    nn_ckpt_status status;           /**< the value the function returned */
    char message[NN_CKPT_ERROR_MAX]; /**< "" on success */
} nn_ckpt_error;

/** A constant name for a status ("ok", "out of memory", ...). Never NULL. */
NN_CKPT_API const char *nn_ckpt_status_string(nn_ckpt_status status);

/** Element types a checkpoint holds ("F32" and "F64" in the file). */
typedef enum nn_ckpt_dtype { NN_CKPT_F32, NN_CKPT_F64 } nn_ckpt_dtype;

/** Most axes a tensor may have. */
#define NN_CKPT_MAX_DIMS 8

/** Metadata key of the checksum the writer adds (see the top of this file). */
#define NN_CKPT_CHECKSUM_KEY "chainrule.crc32"

/**
 * A named tensor. For the writer every field is the caller's and data holds
 * the product of shape values of dtype in host order (may be NULL when that
 * product is 0). From the reader every pointer is owned by the checkpoint.
 * ndim 0 is a scalar (one element).
 */
typedef struct nn_ckpt_tensor {
    const char *name;               /**< non-empty, unique, UTF-8 */
    nn_ckpt_dtype dtype;            /**< element type */
    int ndim;                       /**< 0 .. NN_CKPT_MAX_DIMS */
    size_t shape[NN_CKPT_MAX_DIMS]; /**< the first ndim entries are used */
    const void *data;               /**< row-major values, host byte order */
} nn_ckpt_tensor;

/** One metadata entry: UTF-8 key and value. */
typedef struct nn_ckpt_meta {
    const char *key;   /**< unique within the file */
    const char *value; /**< any UTF-8 text, e.g. JSON */
} nn_ckpt_meta;

/**
 * Allocator hook with lua_Alloc's contract: when nsize is 0 free ptr (which
 * may be NULL) and return NULL; otherwise act like realloc(ptr, nsize) and
 * return NULL on failure. osize is the old size of ptr (0 for NULL).
 */
typedef void *(*nn_ckpt_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/**
 * Routes this module's allocations through alloc(ud, ...); NULL restores
 * malloc. Process-wide: set it before use, never while another thread uses
 * the module, and destroy checkpoints with the allocator that made them.
 * The JSON parser (libcjson) keeps using malloc.
 */
NN_CKPT_API void nn_checkpoint_set_allocator(nn_ckpt_alloc_fn alloc, void *ud);

/**
 * Writes count tensors and meta_count metadata entries to path, atomically:
 * the bytes go to a new temporary file in the same directory (named
 * path.tmp-XXXXXX, mode 0644), which is flushed, fsync'ed and renamed over
 * path, and then the directory is fsync'ed. Every write is checked; on any
 * failure the temporary file is removed and an existing file at path is
 * left as it was (a crash or kill may leave a stray temporary file, never a
 * half-written path). Nothing passed in is retained.
 * Errors: NN_CKPT_EINVAL (empty, duplicate, non-UTF-8 or reserved name,
 * "__metadata__" as a tensor name, NN_CKPT_CHECKSUM_KEY as a metadata key,
 * bad dtype or ndim, NULL data for a non-empty tensor), NN_CKPT_EIO (the
 * directory is missing or not writable, the disk is full, fsync or rename
 * fails; the message names the path and the system's reason),
 * NN_CKPT_ENOMEM.
 */
NN_CKPT_API nn_ckpt_status nn_checkpoint_write(const char *path, const nn_ckpt_tensor *tensors,
                                               size_t count, const nn_ckpt_meta *meta,
                                               size_t meta_count, nn_ckpt_error *err);

/** A checkpoint read into memory. Opaque; query it with the functions below. */
typedef struct nn_checkpoint nn_checkpoint;

/**
 * Reads and validates a safetensors file: the header length against the
 * file size, the JSON, every tensor's dtype (F32 or F64), shape and
 * data_offsets (in range, consistent with shape times element size, not
 * overlapping, covering the data section without gaps), duplicate names,
 * string metadata, and the checksum when NN_CKPT_CHECKSUM_KEY is present.
 * The tensors' data is copied into aligned memory in host byte order.
 * *out is the caller's; free it with nn_checkpoint_destroy.
 * Errors: NN_CKPT_EIO (cannot open or read, naming the path),
 * NN_CKPT_EFORMAT (the message names the problem and the tensor: a
 * truncated file, a header length past the end, invalid JSON, an unknown
 * dtype, a shape that does not match its offsets, overlapping tensors, a
 * checksum mismatch), NN_CKPT_ENOMEM.
 */
NN_CKPT_API nn_ckpt_status nn_checkpoint_read(const char *path, nn_checkpoint **out,
                                              nn_ckpt_error *err);

/** Frees a checkpoint and everything it owns. Accepts NULL. */
NN_CKPT_API void nn_checkpoint_destroy(nn_checkpoint *ck);

/**
 * True when the file carried NN_CKPT_CHECKSUM_KEY (and it matched, or the
 * read would have failed). False for files from other tools, and for a file
 * whose checksum key itself was damaged: callers that only accept their own
 * checkpoints should refuse unverified ones.
 */
NN_CKPT_API bool nn_checkpoint_verified(const nn_checkpoint *ck);

/** Number of tensors, in the order of the file's header. */
NN_CKPT_API size_t nn_checkpoint_count(const nn_checkpoint *ck);

/** Tensor i (< nn_checkpoint_count), owned by ck; NULL when out of range. */
NN_CKPT_API const nn_ckpt_tensor *nn_checkpoint_tensor_at(const nn_checkpoint *ck, size_t i);

/** The tensor called name, owned by ck, or NULL when there is none. */
NN_CKPT_API const nn_ckpt_tensor *nn_checkpoint_find(const nn_checkpoint *ck, const char *name);

/** Number of metadata entries (the checksum entry is not counted). */
NN_CKPT_API size_t nn_checkpoint_meta_count(const nn_checkpoint *ck);

/** Metadata entry i in file order, owned by ck; NULL when out of range. */
NN_CKPT_API const nn_ckpt_meta *nn_checkpoint_meta_at(const nn_checkpoint *ck, size_t i);

/** The metadata value for key, owned by ck, or NULL when absent. */
NN_CKPT_API const char *nn_checkpoint_meta(const nn_checkpoint *ck, const char *key);

/**
 * Copies the tensor called name into dst (the caller's memory for the
 * product of shape elements of dtype), converting F32 <-> F64 when the file
 * holds the other type. For restoring a model: a missing tensor or another
 * shape is an error naming both shapes.
 * Errors: NN_CKPT_EMISMATCH ("no tensor 'x' in FILE", "tensor 'x' has shape
 * [300, 784] but [100, 784] is expected"), NN_CKPT_EINVAL (NULL arguments,
 * bad ndim).
 */
NN_CKPT_API nn_ckpt_status nn_checkpoint_copy(const nn_checkpoint *ck, const char *name,
                                              nn_ckpt_dtype dtype, int ndim, const size_t *shape,
                                              void *dst, nn_ckpt_error *err);

#ifdef __cplusplus
}
#endif

#endif /* CHAINRULE_CHECKPOINT_H */
