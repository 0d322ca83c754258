/* Internals shared by io/npy.c (.npy), io/npz.c (.npz) and nn/model_files.c
   (model files). Never installed. */
#ifndef CHAINRULE_IO_IMPL_H
#define CHAINRULE_IO_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "chainrule/io.h"

#if defined(__GNUC__)
#define IO_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define IO_PRINTF_LIKE(f, a)
#endif

/* Memory through io_set_allocator's hook. io_alloc(0) is NULL. */
void *io_alloc(size_t size);
void io_free(void *p, size_t size);
char *io_strdup(const char *s, size_t len); /* len bytes of s plus a 0 */
void io_strfree(const char *s);

io_status io_ok(io_error *err);
IO_PRINTF_LIKE(3, 4)
io_status io_fail(io_error *err, io_status status, const char *fmt, ...);

/* "(3, 4)", "(3,)", "()" into buf. */
const char *io_shape_text(char *buf, size_t size, const size_t *shape, int ndim);
/* Bytes of ndim/shape of esize-byte elements; false on overflow. */
bool io_shape_bytes(const size_t *shape, int ndim, size_t esize, size_t *bytes);
/* Checks an array given to a writer; what names it in messages. */
io_status io_check_array(const char *path, const char *what, const io_array *a, io_error *err);
/* Bytes of a valid array's data. */
size_t io_array_bytes(const io_array *a);
/* Frees an array's data and name (not the struct). */
void io_array_release(io_array *a);

/* The .npy header (magic to newline, a multiple of 64 bytes) for a valid
   array; returns its length, 0 when it does not fit in size. */
size_t io_npy_header(const io_array *a, unsigned char *buf, size_t size);
/* Feeds the array's data in little-endian order to out(ctx, bytes, len). */
typedef bool (*io_sink)(void *ctx, const void *bytes, size_t len);
bool io_emit_le(const io_array *a, io_sink out, void *ctx);
/* Parses a whole .npy image of n bytes; what names it in messages. Fills
   dtype, ndim, shape and data (allocated, host order) of out. */
io_status io_npy_parse(const unsigned char *p, size_t n, const char *what, io_array *out,
                       io_error *err);

/* The whole file in memory: *len bytes at *data (NULL when it is empty) in
   a block of *size bytes; free with io_free(*data, *size). */
io_status io_read_file(const char *path, unsigned char **data, size_t *len, size_t *size,
                       io_error *err);

/* CRC-32 (IEEE, zlib's crc32). */
uint32_t io_crc32(uint32_t crc, const void *data, size_t len);

#endif
