/**
 * @file chainrule/io.h
 * @brief Tensors and whole models as NumPy .npy / .npz files and as
 * safetensors, so arrays and trained models move between chainrule, NumPy
 * and PyTorch (docs/interop.md).
 *
 * A worked example: save a model's parameters for NumPy (nn_model_save_npz
 * is declared in chainrule/nn.h), read one back.
 *
 *     if (nn_model_save_npz(m, "mlp.npz") != 0)
 *         fprintf(stderr, "%s\n", nn_model_error(m));
 *     // Python: w = np.load("mlp.npz")["dense0.weight"]   # (in, out)
 *
 *     ad_error err;
 *     io_array *a = io_npy_read("x.npy", &err);
 *     if (!a) {
 *         fprintf(stderr, "%s\n", err.message);   // names the file and the problem
 *         return 1;
 *     }
 *     int64_t shape[2] = {100, 784};
 *     float *x = malloc(sizeof(float) * 100 * 784);
 *     if (io_array_copy(a, AD_F32, 2, shape, x, &err) != 0)  // converts
 *         fprintf(stderr, "%s\n", err.message);
 *     io_array_free(a);
 *
 *     nn_model *m2 = nn_mlp_new(...same widths..., &err);
 *     if (nn_model_load_npz(m2, "mlp.npz", 0) != 0)  // checks names, shapes
 *         fprintf(stderr, "%s\n", nn_model_error(m2));
 *
 * Formats
 * - .npy (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
 *   "\x93NUMPY", a version, a header length, a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded with
 *   spaces and a newline, then the raw values in C order. chainrule writes
 *   version 1.0, little-endian, with the data 64-byte aligned in the file.
 *   It reads versions 1.0, 2.0 and 3.0 with dtypes '<f4', '<f8', '<i4',
 *   '<i8', '|u1', '|i1' and '<i2' and refuses big-endian data, object and structured
 *   arrays and Fortran order, each with a message saying how to re-save.
 * - .npz: a zip archive holding one NAME.npy per array (np.savez,
 *   np.savez_compressed). chainrule writes stored (uncompressed) members;
 *   it reads stored and deflate members (through zlib), zip64 included,
 *   checking every offset, size and CRC-32.
 * - safetensors: see chainrule/checkpoint.h, which does the work.
 *
 * Models (functions in chainrule/nn.h, built on this header): nn_model_save_* writes every
 * parameter tensor under the name and shape nn_model_param_info reports ("dense0.weight" (in, out),
 * "dense0.bias" (out), "batchnorm0.gamma", ...), followed by the batch-norm running statistics
 * ("batchnorm0.running_mean", "batchnorm0.running_var"), in the model's dtype. nn_model_load_*
 * fills a built model of the same architecture. PyTorch's nn.Linear keeps its weight as (out, in):
 * transpose it on the way (docs/interop.md shows both directions).
 *
 * Conventions (docs/errors.md): functions that can fail return 0 / -1 or a
 * pointer / NULL and fill *err (a caller-owned ad_error, may be NULL) with
 * the code and a one-line message naming the file and the problem. They
 * never abort or print and leave nothing allocated on failure. Memory comes
 * from malloc, or from the allocator given to an X_with function (the
 * ad_alloc_fn contract of chainrule/autodiff.h); what a reader returns keeps
 * that allocator and is freed through it. Writers
 * replace the destination atomically (a temporary file in the same
 * directory, fsync'ed and renamed over it), so a failed write leaves an
 * existing file as it was. Destroy functions accept NULL.
 */
#ifndef CHAINRULE_IO_H
#define CHAINRULE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The NumPy descr of dtype ("<f4", "<f8", "<i4", "<i8", "|u1", "|i1", "<i2"), or NULL for an
 *  unknown value. */
AD_API const char *io_dtype_descr(ad_dtype dtype);
/** Bytes per element of dtype (4, 8, 4, 8, 1, 1, 2), or 0 for an unknown value. */
AD_API size_t io_dtype_size(ad_dtype dtype);

/**
 * A named n-dimensional array in C (row-major) order. For writers every
 * field is the caller's and data holds the product of shape elements of
 * dtype in host byte order (it may be NULL when that product is 0). From
 * readers everything is owned by the array, archive or checkpoint it came
 * from, in host byte order, and data is NULL for an empty array. ndim 0 is
 * a scalar.
 */
typedef struct io_array {
    const char *name;           /**< .npz member name without ".npy"; "" from io_npy_read */
    ad_dtype dtype;             /**< element type */
    int ndim;                   /**< 0 .. AD_MAX_DIMS */
    int64_t shape[AD_MAX_DIMS]; /**< the first ndim entries are used, each >= 0 */
    const void *data;           /**< the values */
} io_array;

/* ------------------------------------------------------------ any file */

/** Writes a whole file's content to fp; returns false on a write error (errno set). */
typedef bool (*io_writer)(FILE *fp, void *ctx);

/**
 * Writes path atomically, the way every file of the library is written: the
 * content goes to a new temporary file beside path with an unpredictable
 * name (path.tmp-XXXXXX, created exclusively, so a planted file or symbolic
 * link is never followed; mode 0644), which write(fp, ctx) fills, is flushed,
 * synced to disk and renamed over path; then the directory is synced. A
 * reader or a crash sees the old file or the new one, never half of one.
 * While it is written the temporary file holds an flock; temporary files of
 * path that no live writer holds (left by a killed process) are removed
 * before writing. A process that writes big files should ignore SIGXFSZ
 * (the chainrule command does) so that a file-size limit is an error, EFBIG,
 * rather than death. Returns 0, or -1 with *err: AD_EIO naming the file and
 * the system's reason (path is then left as it was and the temporary file
 * removed), AD_ENOMEM.
 */
AD_API int io_write_atomic(const char *path, io_writer write, void *ctx, ad_error *err);

/** io_write_atomic with its two small buffers from alloc(ud, ...). */
AD_API int io_write_atomic_with(const char *path, io_writer write, void *ctx, ad_alloc_fn alloc,
                                void *ud, ad_error *err);

/* ------------------------------------------------------------------- .npy */

/**
 * Writes one array as a .npy file (format 1.0, little-endian, C order; any
 * dtype). The name field is ignored. Nothing passed in is retained. Returns
 * 0, or -1 with *err: AD_EINVAL (NULL path or array, bad dtype or ndim, NULL
 * data for a non-empty array, a size that overflows), AD_EIO (naming the
 * path and the system's reason; an existing file is left as it was),
 * AD_ENOMEM.
 */
AD_API int io_npy_write(const char *path, const io_array *array, ad_error *err);

/**
 * Reads a .npy file (see the top of this file for what is accepted) into a
 * new array in host byte order, keeping the file's dtype. The array is the
 * caller's; free it with io_array_free. Returns NULL on failure with *err:
 * AD_EIO (cannot open or read), AD_EFORMAT (truncated, bad magic, bad
 * header dict, data shorter or longer than the shape says), AD_EUNSUPPORTED
 * (big-endian, object or structured dtype, Fortran order, another dtype,
 * more than AD_MAX_DIMS axes, unknown version), AD_ENOMEM, AD_EINVAL (NULL
 * path).
 */
AD_API io_array *io_npy_read(const char *path, ad_error *err);

/** io_npy_read with every allocation (the array's included) from alloc(ud, ...). */
AD_API io_array *io_npy_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err);

/** Frees an array from io_npy_read, through its allocator. Accepts NULL. */
AD_API void io_array_free(io_array *array);

/**
 * Copies array's values into dst (the caller's memory for the product of
 * shape elements of dtype, AD_F32 or AD_F64), converting from any dtype,
 * after checking that the array has exactly that shape. Returns 0, or -1
 * with *err: AD_EMISMATCH ("'w' has shape (3, 4) but (4, 3) is expected"),
 * AD_EINVAL (NULL arguments, dtype not F32/F64, bad ndim).
 */
AD_API int io_array_copy(const io_array *array, ad_dtype dtype, int ndim, const int64_t *shape,
                         void *dst, ad_error *err);

/**
 * Writes a node's current value (its shape, in the graph's dtype) as a .npy
 * file. Errors as io_npy_write; AD_EINVAL for a NULL node.
 */
AD_API int io_npy_write_node(const char *path, const ad_node *node, ad_error *err);

/**
 * Reads a .npy file into a leaf node (ad_param, ad_input, ad_const...) that
 * has the same shape, converting to the graph's dtype; memory comes from the
 * graph's allocator. Run ad_forward before reading nodes computed from it.
 * Errors as io_npy_read and io_array_copy; AD_EINVAL when node is NULL or
 * not a leaf.
 */
AD_API int io_npy_read_node(const char *path, ad_node *node, ad_error *err);

/* ------------------------------------------------------------------- .npz */

/**
 * Writes count arrays as an uncompressed .npz archive, member NAME.npy for
 * each (np.load(path)[NAME] reads it back). Names must be non-empty, unique
 * and shorter than 65,000 bytes; at most 65,535 arrays and 4 GiB in total
 * (zip64 is read but not written). Nothing passed in is retained.
 * Errors: as io_npy_write, and AD_EINVAL for a bad, duplicate or missing
 * name or an archive too large.
 */
AD_API int io_npz_write(const char *path, const io_array *arrays, int64_t count, ad_error *err);

/** io_npz_write with its working memory from alloc(ud, ...). */
AD_API int io_npz_write_with(const char *path, const io_array *arrays, int64_t count,
                             ad_alloc_fn alloc, void *ud, ad_error *err);

/** An .npz archive read into memory. Opaque; query it with the functions below. */
typedef struct io_npz io_npz;

/**
 * Reads a .npz archive: parses the zip central directory (zip64 included)
 * and checks every offset and size against the file, each member's local
 * header, name (NAME.npy, unique), compression (stored or deflate), CRC-32
 * and .npy contents. The archive is the caller's; free it with io_npz_free.
 * Returns NULL on failure with *err: AD_EIO, AD_EFORMAT (the message names
 * the member: "no zip end-of-central-directory record", "central directory
 * at offset 9999 past the end of the file", "member 'w.npy': CRC-32
 * mismatch", ...), AD_EUNSUPPORTED (encryption, another compression method,
 * multi-disk archives, a member that is not .npy, and what io_npy_read
 * refuses), AD_ENOMEM, AD_EINVAL.
 */
AD_API io_npz *io_npz_read(const char *path, ad_error *err);

/** io_npz_read with every allocation (zlib's included) from alloc(ud, ...). */
AD_API io_npz *io_npz_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err);

/** Frees an archive and all of its arrays. Accepts NULL. */
AD_API void io_npz_free(io_npz *npz);

/** Number of arrays, in the order of the zip central directory. */
AD_API int64_t io_npz_count(const io_npz *npz);

/** Array i (0 <= i < io_npz_count), owned by npz; NULL when out of range. */
AD_API const io_array *io_npz_at(const io_npz *npz, int64_t i);

/** The array called name (without ".npy"), owned by npz, or NULL. */
AD_API const io_array *io_npz_find(const io_npz *npz, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* CHAINRULE_IO_H */
