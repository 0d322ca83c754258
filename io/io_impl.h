/* Internals shared by io/npy.c (.npy), io/npz.c (.npz), io/checkpoint.c
   and nn/model_files.c. Never installed. */
#ifndef CHAINRULE_IO_IMPL_H
#define CHAINRULE_IO_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "chainrule/io.h"
#include "support_impl.h"

/* An array from a reader: the public struct and the allocator that owns its
   data and name (io_array_free frees through it). */
typedef struct {
    io_array pub;
    ad_allocator mem;
} io_owned_array;

/* "(3, 4)", "(3,)", "()" into buf. */
const char *io_shape_text(char *buf, size_t size, const int64_t *shape, int ndim);
/* Checks an array given to a writer; what names it in messages. */
int io_check_array(const char *path, const char *what, const io_array *a, ad_error *err);
/* Bytes of a valid array's data. */
size_t io_array_bytes(const io_array *a);
/* Frees an array's data and name (not the struct) through mem. */
void io_array_release(const ad_allocator *mem, io_array *a);

/* The .npy header (magic to newline, a multiple of 64 bytes) for a valid
   array; returns its length, 0 when it does not fit in size. */
size_t io_npy_header(const io_array *a, unsigned char *buf, size_t size);
/* Feeds the array's data in little-endian order to out(ctx, bytes, len). */
typedef bool (*io_sink)(void *ctx, const void *bytes, size_t len);
bool io_emit_le(const io_array *a, io_sink out, void *ctx);
/* Parses a whole .npy image of n bytes; what names it in messages. Fills
   dtype, ndim, shape and data (allocated from mem, host order) of out. */
int io_npy_parse(const ad_allocator *mem, const unsigned char *p, size_t n, const char *what,
                 io_array *out, ad_error *err);

/* fopen(path, "rb") for a file that must be a regular file (readers seek or
   size it): opened with O_NONBLOCK so that a FIFO without a writer cannot
   block, checked with fstat, then switched back to blocking reads. NULL with
   *err AD_EIO ("cannot open P: ...", "cannot read P: Is a directory",
   "cannot read P: a FIFO (named pipe), not a regular file") and errno set. */
FILE *io_fopen_regular(const char *path, ad_error *err);
/* The whole file in memory: *len bytes at *data (NULL when it is empty) in
   a block of *size bytes; free with ad_free(mem, *data, *size). */
int io_read_file(const ad_allocator *mem, const char *path, unsigned char **data, size_t *len,
                 size_t *size, ad_error *err);

#endif
