/* Internal to io/dataset.c and io/data_read.c: the module's allocator, error
   helpers and the private side of io_dataset. Never installed. */
#ifndef CHAINRULE_IO_DATA_IMPL_H
#define CHAINRULE_IO_DATA_IMPL_H

#include "chainrule/data.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* The allocator chosen with io_data_set_allocator (lua_Alloc contract):
   nsize 0 frees p. A zero-byte request succeeds with NULL. */
void *io_data_realloc(void *p, size_t osize, size_t nsize);

static inline void *mem_realloc(void *p, size_t osize, size_t nsize)
{
    return io_data_realloc(p, osize, nsize);
}

static inline void *mem_alloc(size_t size) { return io_data_realloc(NULL, 0, size); }

static inline void mem_free(void *p, size_t size)
{
    if (p)
        io_data_realloc(p, size, 0);
}

/* a * b, or false when it overflows size_t. */
static inline bool mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* An array of count elements of size bytes; false only when out of memory
   or when the byte count overflows (count 0 gives NULL and true). */
static inline bool alloc_array(void **out, size_t count, size_t size)
{
    size_t bytes;
    *out = NULL;
    if (!mul_size(count, size, &bytes))
        return false;
    if (bytes == 0)
        return true;
    *out = mem_alloc(bytes);
    return *out != NULL;
}

static inline io_data_status ok(io_data_error *err)
{
    if (err) {
        err->status = IO_DATA_OK;
        err->message[0] = '\0';
    }
    return IO_DATA_OK;
}

PRINTF_LIKE(3, 4)
static inline io_data_status fail(io_data_error *err, io_data_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

static inline io_data_status out_of_memory(io_data_error *err, const char *what)
{
    return fail(err, IO_DATA_ENOMEM, "out of memory %s", what);
}

/* The public struct plus the sizes its buffers were allocated with, which
   io_dataset_truncate and callers changing `classes` must not disturb. */
typedef struct dataset_impl {
    io_dataset pub;
    size_t x_cap;    /* floats allocated for x */
    size_t y_cap;    /* ints allocated for y */
    int names_count; /* entries of class_names */
} dataset_impl;

/* A dataset of n x d uninitialised features (and n labels when labelled). */
io_data_status io_data_dataset_alloc(size_t n, size_t d, bool labelled, io_dataset **out,
                                     io_data_error *err);

/* Gives ds a copy of names[0..count); false when out of memory. */
bool io_data_set_names(io_dataset *ds, const char *const *names, int count);

#endif /* CHAINRULE_IO_DATA_IMPL_H */
