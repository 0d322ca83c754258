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

/* Type dispatch: the body is written once and compiled for float and double
   (T is the element type); every module's kernels use this one. */
#define AD_DISPATCH_DTYPE(dtype, ...)                                                              \
    do {                                                                                           \
        if ((dtype) == AD_F32) {                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            typedef double T;                                                                      \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

/* ----------------------------------------------------------------- errors */

/* Clears *err (when not NULL) to AD_OK and ""; returns 0. */
int ad_error_ok(ad_error *err);
/* Fills *err (when not NULL) with code and the formatted one-line message;
   returns -1, so a failing call can end with `return ad_error_set(...)`. */
AD_PRINTF_LIKE(3, 4)
int ad_error_set(ad_error *err, ad_errcode code, const char *fmt, ...);

/* graph.c: a node's shape as "(2,3)" into buf ("()" for a NULL node), the
   one shape text of the engine's and nn's messages. */
const char *ad_shape_str(const ad_node *n, char *buf, size_t size);
/* The same for any list of ndim sizes (a shape not yet set on a node). */
const char *ad_dims_str(int ndim, const int64_t *dims, char *buf, size_t size);

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

/* Asks the kernel to back the whole 2 MiB pages inside [p, p + bytes) with
   transparent huge pages (Linux; elsewhere, and for memory from a caller's
   allocator, nothing). For arrays read in random order: a shuffled batcher
   gathers a row from anywhere in a data set every few microseconds, and with
   4 KiB pages nearly every row is a TLB miss, a two-dimensional page walk on
   a virtual machine. Advice only: call it before the memory is first
   written; a refusal changes nothing but the speed. */
void ad_advise_huge_pages(const ad_allocator *a, void *p, size_t bytes);

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

/* Largest element count of a tensor: byte counts and strides of every dtype
 * stay far from overflow below it. */
#define AD_NUMEL_MAX (INT64_MAX / 64)

/* The product of ndim sizes into *out, without signed overflow: false when a
 * size is negative or the product of the nonzero sizes exceeds AD_NUMEL_MAX
 * (so that a product of any of the axes of an empty tensor stays in range).
 * Every product of sizes not yet validated (shape rules, file headers) goes
 * through it; kernels multiply parts of shapes already accepted, which stay
 * below AD_NUMEL_MAX. */
static inline bool ad_shape_numel(int ndim, const int64_t *shape, int64_t *out)
{
    int64_t nonzero = 1;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && nonzero > AD_NUMEL_MAX / shape[i]))
            return false;
        if (shape[i] == 0)
            empty = true;
        else
            nonzero *= shape[i];
    }
    *out = empty ? 0 : nonzero;
    return true;
}

/* Bytes of ndim/shape of esize-byte elements; false when the shape fails
   ad_shape_numel or the byte count overflows size_t. */
static inline bool ad_shape_bytes(const int64_t *shape, int ndim, size_t esize, size_t *bytes)
{
    int64_t n;
    return ad_shape_numel(ndim, shape, &n) && (uint64_t)n <= SIZE_MAX &&
           ad_mul_size((size_t)n, esize, bytes);
}

static inline bool ad_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* The unsigned integer in the n <= 8 bytes at p, least significant first
   (file formats: zip, .npy, safetensors). */
static inline uint64_t ad_load_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;)
        v = v << 8 | p[k];
    return v;
}

/* The same, most significant byte first (IDX). */
static inline uint64_t ad_load_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++)
        v = v << 8 | p[k];
    return v;
}

/* Stores the low n <= 8 bytes of v at p, least significant first; returns p + n. */
static inline unsigned char *ad_store_le(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t k = 0; k < n; k++, v >>= 8)
        p[k] = (unsigned char)(v & 0xFF);
    return p + n;
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

/* ----------------------------------------------------------- random bits */

/* The one generator of the library: xoshiro256** (Blackman & Vigna) on a
   state of four words, seeded by splitmix64. The graph's generator
   (dropout, ad_graph_seed), nn_rng and io's data streams all step these. */

/* The next splitmix64 output of the stream *x (advances *x). */
static inline uint64_t ad_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* s[i] = splitmix64 outputs 1..4 of seed. */
static inline void ad_xoshiro_seed(uint64_t s[4], uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        s[i] = ad_splitmix64(&seed);
}

static inline uint64_t ad_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* The next 64 bits of xoshiro256** (advances s). */
static inline uint64_t ad_xoshiro_next(uint64_t s[4])
{
    uint64_t r = ad_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ad_rotl64(s[3], 45);
    return r;
}

/* Uniform in [0, 1): the top 53 bits times 2^-53. */
static inline double ad_bits_to_unit(uint64_t bits) { return (double)(bits >> 11) * 0x1.0p-53; }

/* A stream of random words: returns the next 64 bits of *state and advances
   it. The two streams of the one generator: */
typedef uint64_t (*ad_bits_fn)(void *state);
/* xoshiro256** on uint64_t[4] (the graph's generator, nn_rng) */
uint64_t ad_xoshiro_bits(void *state);
/* splitmix64 on one uint64_t (io's data permutations, reseeded per epoch) */
uint64_t ad_splitmix64_bits(void *state);

/* The one bounded draw: uniform in [0, bound) without modulo bias. Draws r
   until r >= 2^64 mod bound (the low, incomplete copy of [0, bound) is
   rejected), returns r % bound; bound 0 gives 0. nn_rng_below and
   io_data_rng_below are this rule on their streams. */
uint64_t ad_bits_below(ad_bits_fn next, void *state, uint64_t bound);

/* The one shuffle: Fisher-Yates over n items, for i = n-1 down to 1
   swap(ctx, i, j) with j = ad_bits_below(next, state, i + 1). Index arrays
   (nn_rng_shuffle, io_data_permutation) pass ad_swap_int64; io_dataset_shuffle
   swaps rows with the same draws. n <= 1 draws nothing. */
void ad_shuffle(ad_bits_fn next, void *state, int64_t n,
                void (*swap)(void *ctx, int64_t i, int64_t j), void *ctx);
/* swap for an int64_t array ctx */
void ad_swap_int64(void *ctx, int64_t i, int64_t j);

/* Elements of esize bytes stored big-endian (bytes long) to host order, in place. */
static inline void ad_big_endian_to_host(unsigned char *p, size_t bytes, size_t esize)
{
    if (ad_host_is_little_endian())
        ad_swap_bytes(p, bytes, esize);
}

/* Bytes per element of dtype (4, 8, 4, 8, 1, 1, 2), 0 for an unknown value. */
size_t ad_dtype_bytes(ad_dtype dtype);

/* CRC-32 (IEEE) through zlib, for any length. */
uint32_t ad_crc32(uint32_t crc, const void *data, size_t len);

#endif
