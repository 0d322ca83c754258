/**
 * @file chainrule/io.h
 * @brief Tensors and whole models as NumPy .npy / .npz files and as
 * safetensors, so arrays and trained models move between chainrule, NumPy
 * and PyTorch (docs/interop.md).
 *
 * A worked example: save a model's parameters for NumPy, read one back.
 *
 *     nn_io_error err;
 *     if (nn_model_save_npz(m, "mlp.npz", &err) != NN_IO_OK)
 *         fprintf(stderr, "%s\n", err.message);
 *     // Python: w = np.load("mlp.npz")["dense0.weight"]   # (in, out)
 *
 *     nn_io_array *a = NULL;
 *     if (nn_npy_read("x.npy", &a, &err) != NN_IO_OK) {
 *         fprintf(stderr, "%s\n", err.message);   // names the file and the problem
 *         return 1;
 *     }
 *     size_t shape[2] = {100, 784};
 *     float *x = malloc(sizeof(float) * 100 * 784);
 *     if (nn_io_array_copy(a, NN_IO_F32, 2, shape, x, &err) != NN_IO_OK)  // converts
 *         fprintf(stderr, "%s\n", err.message);
 *     nn_io_array_free(a);
 *
 *     nn_model *m2 = nn_mlp_create(...same widths...);
 *     if (nn_model_load_npz(m2, "mlp.npz", 0, &err) != NN_IO_OK)  // checks names, shapes
 *         fprintf(stderr, "%s\n", err.message);
 *
 * Formats
 * - .npy (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
 *   "\x93NUMPY", a version, a header length, a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded with
 *   spaces and a newline, then the raw values in C order. chainrule writes
 *   version 1.0, little-endian, with the data 64-byte aligned in the file.
 *   It reads versions 1.0, 2.0 and 3.0 with dtypes '<f4', '<f8', '<i4',
 *   '<i8' and '|u1' and refuses big-endian data, object and structured
 *   arrays and Fortran order, each with a message saying how to re-save.
 * - .npz: a zip archive holding one NAME.npy per array (np.savez,
 *   np.savez_compressed). chainrule writes stored (uncompressed) members;
 *   it reads stored and deflate members (deflate needs chainrule built with
 *   zlib), zip64 included, checking every offset, size and CRC-32.
 * - safetensors: see chainrule/checkpoint.h, which does the work.
 *
 * Models: nn_model_save_* writes every parameter tensor under the name and
 * shape nn_model_param_info reports ("dense0.weight" (in, out), "dense0.bias"
 * (out), "batchnorm0.gamma", ...), followed by the batch-norm running
 * statistics ("batchnorm0.running_mean", "batchnorm0.running_var"), in the
 * model's dtype. nn_model_load_* fills a built model of the same
 * architecture. PyTorch's nn.Linear keeps its weight as (out, in): transpose
 * it on the way (docs/interop.md shows both directions).
 *
 * Conventions: functions that can fail return an nn_io_status and fill *err
 * (when not NULL) with a one-line message naming the file and the problem.
 * They never abort or print and leave nothing allocated on failure. Writers
 * replace the destination atomically (a temporary file in the same
 * directory, fsync'ed and renamed over it), so a failed write leaves an
 * existing file as it was. Destroy functions accept NULL.
 */
#ifndef CHAINRULE_IO_H
#define CHAINRULE_IO_H

#include <stddef.h>

#include "autodiff.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Result of every fallible function of this header. */
typedef enum nn_io_status {
    NN_IO_OK = 0,       /**< success */
    NN_IO_ENOMEM,       /**< out of memory */
    NN_IO_EIO,          /**< cannot open, read, create, write, sync or rename a file */
    NN_IO_EFORMAT,      /**< not a valid .npy/.npz/safetensors file, truncated or corrupt */
    NN_IO_EUNSUPPORTED, /**< valid, but a feature chainrule does not read (dtype, order...) */
    NN_IO_EMISMATCH,    /**< valid file, but not what the caller expects (names, shapes) */
    NN_IO_EINVAL        /**< a bad argument from the caller */
} nn_io_status;

/** Longest message kept in nn_io_error, terminator included. */
#define NN_IO_ERROR_MAX 512

/** Filled by failing functions when the caller passes one; may be NULL. */
typedef struct nn_io_error {
    nn_io_status status;           /**< the value the function returned */
    char message[NN_IO_ERROR_MAX]; /**< "" on success */
} nn_io_error;

/** A constant name for a status ("ok", "out of memory", ...). Never NULL. */
NN_API const char *nn_io_status_string(nn_io_status status);

/** Element types of arrays, with their NumPy descr. */
typedef enum nn_io_dtype {
    NN_IO_F32, /**< float, '<f4' */
    NN_IO_F64, /**< double, '<f8' */
    NN_IO_I32, /**< int32_t, '<i4' */
    NN_IO_I64, /**< int64_t, '<i8' */
    NN_IO_U8   /**< uint8_t, '|u1' */
} nn_io_dtype;

/** The NumPy descr of dtype ("<f4", ...), or NULL for an unknown value. */
NN_API const char *nn_io_dtype_descr(nn_io_dtype dtype);
/** Bytes per element of dtype (4, 8, 4, 8, 1), or 0 for an unknown value. */
NN_API size_t nn_io_dtype_size(nn_io_dtype dtype);

/** Most axes an array may have. */
#define NN_IO_MAX_DIMS 8

/**
 * A named n-dimensional array in C (row-major) order. For writers every
 * field is the caller's and data holds the product of shape elements of
 * dtype in host byte order (it may be NULL when that product is 0). From
 * readers everything is owned by the array or archive it came from, in host
 * byte order, and data is NULL for an empty array. ndim 0 is a scalar.
 */
typedef struct nn_io_array {
    const char *name;             /**< .npz member name without ".npy"; "" from nn_npy_read */
    nn_io_dtype dtype;            /**< element type */
    int ndim;                     /**< 0 .. NN_IO_MAX_DIMS */
    size_t shape[NN_IO_MAX_DIMS]; /**< the first ndim entries are used */
    const void *data;             /**< the values */
} nn_io_array;

/**
 * Allocator hook with lua_Alloc's contract: when nsize is 0 free ptr (which
 * may be NULL) and return NULL; otherwise act like realloc(ptr, nsize) and
 * return NULL on failure. osize is the old size of ptr (0 for NULL).
 */
typedef void *(*nn_io_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/**
 * Routes this module's allocations (zlib's inflate state included) through
 * alloc(ud, ...); NULL restores malloc. Process-wide: set it before use,
 * never while another thread uses the module, and free arrays and archives
 * with the allocator that made them. The safetensors model functions
 * allocate through nn_checkpoint_set_allocator's hook instead.
 */
NN_API void nn_io_set_allocator(nn_io_alloc_fn alloc, void *ud);

/* ------------------------------------------------------------------- .npy */

/**
 * Writes one array as a .npy file (format 1.0, little-endian, C order; any
 * nn_io_dtype). The name field is ignored. Nothing passed in is retained.
 * Errors: NN_IO_EINVAL (NULL path or array, bad dtype or ndim, NULL data
 * for a non-empty array, a size that overflows), NN_IO_EIO (naming the path
 * and the system's reason; an existing file is left as it was),
 * NN_IO_ENOMEM.
 */
NN_API nn_io_status nn_npy_write(const char *path, const nn_io_array *array, nn_io_error *err);

/**
 * Reads a .npy file (see the top of this file for what is accepted) into a
 * new array in host byte order, keeping the file's dtype. *out is the
 * caller's; free it with nn_io_array_free.
 * Errors: NN_IO_EIO (cannot open or read), NN_IO_EFORMAT (truncated, bad
 * magic, bad header dict, data shorter or longer than the shape says),
 * NN_IO_EUNSUPPORTED (big-endian, object or structured dtype, Fortran order,
 * another dtype, more than NN_IO_MAX_DIMS axes, unknown version),
 * NN_IO_ENOMEM, NN_IO_EINVAL (NULL arguments).
 */
NN_API nn_io_status nn_npy_read(const char *path, nn_io_array **out, nn_io_error *err);

/** Frees an array from nn_npy_read. Accepts NULL. */
NN_API void nn_io_array_free(nn_io_array *array);

/**
 * Copies array's values into dst (the caller's memory for the product of
 * shape elements of dtype, NN_IO_F32 or NN_IO_F64), converting from any
 * dtype, after checking that the array has exactly that shape.
 * Errors: NN_IO_EMISMATCH ("'w' has shape (3, 4) but (4, 3) is expected"),
 * NN_IO_EINVAL (NULL arguments, dtype not F32/F64, bad ndim).
 */
NN_API nn_io_status nn_io_array_copy(const nn_io_array *array, nn_io_dtype dtype, int ndim,
                                     const size_t *shape, void *dst, nn_io_error *err);

/**
 * Writes a node's current value (its shape, in the graph's dtype) as a .npy
 * file. Errors as nn_npy_write; NN_IO_EINVAL for a NULL node.
 */
NN_API nn_io_status nn_npy_write_node(const char *path, const ad_node *node, nn_io_error *err);

/**
 * Reads a .npy file into a leaf node (ad_param, ad_input, ad_const...) that
 * has the same shape, converting to the graph's dtype. Run ad_forward
 * before reading nodes computed from it.
 * Errors as nn_npy_read and nn_io_array_copy; NN_IO_EINVAL when node is
 * NULL or not a leaf.
 */
NN_API nn_io_status nn_npy_read_node(const char *path, ad_node *node, nn_io_error *err);

/* ------------------------------------------------------------------- .npz */

/**
 * Writes count arrays as an uncompressed .npz archive, member NAME.npy for
 * each (np.load(path)[NAME] reads it back). Names must be non-empty, unique
 * and shorter than 65,000 bytes; at most 65,535 arrays and 4 GiB in total
 * (zip64 is read but not written). Nothing passed in is retained.
 * Errors: as nn_npy_write, and NN_IO_EINVAL for a bad, duplicate or missing
 * name or an archive too large.
 */
NN_API nn_io_status nn_npz_write(const char *path, const nn_io_array *arrays, size_t count,
                                 nn_io_error *err);

/** An .npz archive read into memory. Opaque; query it with the functions below. */
typedef struct nn_npz nn_npz;

/**
 * Reads a .npz archive: parses the zip central directory (zip64 included)
 * and checks every offset and size against the file, each member's local
 * header, name (NAME.npy, unique), compression (stored, or deflate when
 * built with zlib), CRC-32 and .npy contents. *out is the caller's; free it
 * with nn_npz_destroy.
 * Errors: NN_IO_EIO, NN_IO_EFORMAT (the message names the member: "no zip
 * end-of-central-directory record", "central directory at offset 9999 past
 * the end of the file", "member 'w.npy': CRC-32 mismatch", ...),
 * NN_IO_EUNSUPPORTED (encryption, another compression method, multi-disk
 * archives, a member that is not .npy, deflate without zlib, and what
 * nn_npy_read refuses), NN_IO_ENOMEM, NN_IO_EINVAL.
 */
NN_API nn_io_status nn_npz_read(const char *path, nn_npz **out, nn_io_error *err);

/** Frees an archive and all of its arrays. Accepts NULL. */
NN_API void nn_npz_destroy(nn_npz *npz);

/** Number of arrays, in the order of the zip central directory. */
NN_API size_t nn_npz_count(const nn_npz *npz);

/** Array i (< nn_npz_count), owned by npz; NULL when out of range. */
NN_API const nn_io_array *nn_npz_at(const nn_npz *npz, size_t i);

/** The array called name (without ".npy"), owned by npz, or NULL. */
NN_API const nn_io_array *nn_npz_find(const nn_npz *npz, const char *name);

/* ------------------------------------------------------------------ models */

/**
 * Flag for the model loaders: ignore tensors in the file that the model
 * does not have (a chainrule train checkpoint's "optimizer.*" tensors).
 * Without it they are an error, like PyTorch's load_state_dict(strict=True).
 */
#define NN_IO_ALLOW_EXTRA 1u

/**
 * Saves a built model's parameters and batch-norm running statistics as an
 * .npz archive (see "Models" at the top of this file).
 * Errors: NN_IO_EINVAL (NULL arguments, model not built), and those of
 * nn_npz_write.
 */
NN_API nn_io_status nn_model_save_npz(nn_model *m, const char *path, nn_io_error *err);

/**
 * Loads a built model's parameters and running statistics from an .npz
 * archive holding a tensor for each, by name, with the same shape (any
 * dtype the reader accepts; values are converted to the model's dtype).
 * Everything is checked before anything is copied, so on failure the model
 * is unchanged. flags: 0 or NN_IO_ALLOW_EXTRA.
 * Errors: NN_IO_EMISMATCH naming the tensor ("mlp.npz: no tensor
 * 'dense1.bias' for the model", "tensor 'dense0.weight' has shape (8, 2)
 * but the model expects (2, 8)", "tensor '0.weight' is not in the model"),
 * NN_IO_EINVAL (NULL arguments, model not built), and those of nn_npz_read.
 */
NN_API nn_io_status nn_model_load_npz(nn_model *m, const char *path, unsigned flags,
                                      nn_io_error *err);

/**
 * Saves a built model like nn_model_save_npz, as a safetensors file written
 * by nn_checkpoint_write (F32 or F64 by the model's dtype).
 * Errors: NN_IO_EINVAL, NN_IO_EIO, NN_IO_ENOMEM.
 */
NN_API nn_io_status nn_model_save_safetensors(nn_model *m, const char *path, nn_io_error *err);

/**
 * Loads a built model like nn_model_load_npz from a safetensors file (F32
 * or F64 tensors, read by nn_checkpoint_read, so also the checkpoints of
 * chainrule train with NN_IO_ALLOW_EXTRA).
 * Errors: NN_IO_EMISMATCH, NN_IO_EINVAL, and nn_checkpoint_read's failures
 * as NN_IO_EIO, NN_IO_EFORMAT or NN_IO_ENOMEM with its message.
 */
NN_API nn_io_status nn_model_load_safetensors(nn_model *m, const char *path, unsigned flags,
                                              nn_io_error *err);

#ifdef __cplusplus
}
#endif

#endif /* CHAINRULE_IO_H */
