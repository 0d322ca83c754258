/* support_impl.h -- the support code every module shares (internal, never
   installed): the caller-owned ad_error, the allocator contract, byte order
   and size arithmetic. One copy each; docs/errors.md, docs/architecture.md. */
#ifndef CHAINRULE_SUPPORT_IMPL_H
#define CHAINRULE_SUPPORT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chainrule/autodiff.h"

#if defined(__GNUC__)
#define AD_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define AD_PRINTF_LIKE(f, a)
#endif

/* ----------------------------------------------------------------- errors */

/* Clears *err (when not NULL) to AD_OK and ""; returns 0. */
int ad_error_ok(ad_error *err);
/* Fills *err (when not NULL) with code and the formatted one-line message;
   returns -1, so a failing call can end with `return ad_error_set(...)`. */
AD_PRINTF_LIKE(3, 4)
int ad_error_set(ad_error *err, ad_errcode code, const char *fmt, ...);

/* ---------------------------------------------------------------- memory */

/* malloc/realloc/free with the ad_alloc_fn contract. */
void *ad_default_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* An object's allocator: the caller's hook and its user data, or
   ad_default_alloc. Every object that allocates keeps one and frees with it. */
typedef struct {
    ad_alloc_fn fn;
    void *ud;
} ad_allocator;

static inline ad_allocator ad_allocator_of(ad_alloc_fn fn, void *ud)
{
    ad_allocator a = {fn ? fn : ad_default_alloc, fn ? ud : NULL};
    return a;
}

/* size bytes (NULL for 0 or when out of memory). */
static inline void *ad_alloc(const ad_allocator *a, size_t size)
{
    return size ? a->fn(a->ud, NULL, 0, size) : NULL;
}

/* Resizes p (osize bytes) to nsize bytes; nsize 0 frees and returns NULL. */
static inline void *ad_realloc(const ad_allocator *a, void *p, size_t osize, size_t nsize)
{
    if (nsize == 0) {
        if (p)
            a->fn(a->ud, p, osize, 0);
        return NULL;
    }
    return a->fn(a->ud, p, p ? osize : 0, nsize);
}

/* Frees p of size bytes; p may be NULL. */
static inline void ad_free(const ad_allocator *a, const void *p, size_t size)
{
    if (p)
        a->fn(a->ud, (void *)(uintptr_t)p, size, 0);
}

/* A copy of the len bytes of s plus a terminator, or NULL. */
static inline char *ad_strndup(const ad_allocator *a, const char *s, size_t len)
{
    char *copy = ad_alloc(a, len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

/* Frees a string from ad_strndup. */
static inline void ad_strfree(const ad_allocator *a, const char *s)
{
    if (s)
        ad_free(a, s, strlen(s) + 1);
}

/* ------------------------------------------------------ sizes, byte order */

/* a * b into *out; false when it overflows size_t. */
static inline bool ad_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* Bytes of ndim/shape of esize-byte elements; false on overflow. */
static inline bool ad_shape_bytes(const size_t *shape, int ndim, size_t esize, size_t *bytes)
{
    size_t n = esize;
    for (int i = 0; i < ndim; i++)
        if (!ad_mul_size(n, shape[i], &n))
            return false;
    *bytes = n;
    return true;
}

static inline bool ad_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Reverses the bytes of each esize-byte element of p (bytes long). */
static inline void ad_swap_bytes(unsigned char *p, size_t bytes, size_t esize)
{
    for (size_t i = 0; esize > 1 && i + esize <= bytes; i += esize)
        for (size_t j = 0; j < esize / 2; j++) {
            unsigned char t = p[i + j];
            p[i + j] = p[i + esize - 1 - j];
            p[i + esize - 1 - j] = t;
        }
}

/* Bytes per element of dtype (4, 8, 4, 8, 1), 0 for an unknown value. */
size_t ad_dtype_bytes(ad_dtype dtype);

/* CRC-32 (IEEE) through zlib, for any length. */
uint32_t ad_crc32(uint32_t crc, const void *data, size_t len);

#endif
