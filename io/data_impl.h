/* Internal to io/dataset.c and io/data_read.c: the module's allocator, error
   helpers and the private side of io_dataset. Never installed. */
#ifndef CHAINRULE_IO_DATA_IMPL_H
#define CHAINRULE_IO_DATA_IMPL_H

#include "chainrule/data.h"

#include <stdint.h>
#include <stdio.h>

#include "support_impl.h"

/* Memory through an object's allocator m (see support_impl.h). A zero-byte
   request succeeds with NULL. */
static inline void *mem_realloc(const ad_allocator *m, void *p, size_t osize, size_t nsize)
{
    return ad_realloc(m, p, osize, nsize);
}

static inline void *mem_alloc(const ad_allocator *m, size_t size) { return ad_alloc(m, size); }

static inline void mem_free(const ad_allocator *m, const void *p, size_t size)
{
    ad_free(m, p, size);
}

/* An array of count elements of size bytes; false only when out of memory
   or when the byte count overflows (count 0 gives NULL and true). */
static inline bool alloc_array(const ad_allocator *m, void **out, size_t count, size_t size)
{
    size_t bytes;
    *out = NULL;
    if (!ad_mul_size(count, size, &bytes))
        return false;
    if (bytes == 0)
        return true;
    *out = mem_alloc(m, bytes);
    return *out != NULL;
}

static inline int out_of_memory(ad_error *err, const char *what)
{
    return ad_error_set(err, AD_ENOMEM, "out of memory %s", what);
}

/* The public struct plus the sizes its buffers were allocated with, which
   io_dataset_truncate and callers changing `classes` must not disturb. */
typedef struct dataset_impl {
    io_dataset pub;
    ad_allocator mem; /* owns the struct and its buffers */
    size_t x_cap;     /* floats allocated for x */
    size_t y_cap;     /* ints allocated for y */
    int names_count;  /* entries of class_names */
} dataset_impl;

/* The allocator of a dataset. */
static inline ad_allocator dataset_mem(const io_dataset *ds)
{
    return ad_allocator_of(ds->alloc, ds->alloc_ud);
}

/* A dataset of n x d uninitialised features (and n labels when labelled),
   with memory from m. */
io_dataset *io_data_dataset_alloc(const ad_allocator *m, int64_t n, int64_t d, bool labelled,
                                  ad_error *err);

/* Gives ds a copy of names[0..count); false when out of memory. */
bool io_data_set_names(io_dataset *ds, const char *const *names, int count);

#endif /* CHAINRULE_IO_DATA_IMPL_H */
