/* support.c -- the support code every module shares: the caller-owned error
   of calls that have no object to hold a message (docs/errors.md), the
   default allocator, element sizes, CRC-32 (zlib's). */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#endif
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "support_impl.h"

const char *ad_errcode_string(ad_errcode code)
{
    switch (code) {
    case AD_OK:
        return "ok";
    case AD_EINVAL:
        return "invalid argument";
    case AD_ENOMEM:
        return "out of memory";
    case AD_EIO:
        return "input/output error";
    case AD_EFORMAT:
        return "bad file format";
    case AD_EMISMATCH:
        return "mismatch";
    case AD_EUNSUPPORTED:
        return "unsupported";
    case AD_ESTATE:
        return "wrong state";
    case AD_EGRAPH:
        return "graph error";
    }
    return "unknown error code";
}

int ad_error_ok(ad_error *err)
{
    if (err) {
        err->code = AD_OK;
        err->message[0] = '\0';
    }
    return 0;
}

int ad_error_set(ad_error *err, ad_errcode code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void *ad_default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

void ad_advise_huge_pages(const ad_allocator *a, void *p, size_t bytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21; /* x86-64's and arm64's (4 KiB granule) */
    uintptr_t begin = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)p + bytes) & ~(huge - 1);
    /* only malloc's memory: a caller's allocator may hand out anything
       (a file mapping, memory it locks or shares) */
    if (a->fn == ad_default_alloc && p && bytes >= huge && end > begin)
        (void)madvise((void *)begin, end - begin, MADV_HUGEPAGE);
#else
    (void)a;
    (void)p;
    (void)bytes;
#endif
}

size_t ad_dtype_bytes(ad_dtype dtype)
{
    switch (dtype) {
    case AD_F32:
    case AD_I32:
        return 4;
    case AD_F64:
    case AD_I64:
        return 8;
    case AD_U8:
    case AD_I8:
        return 1;
    case AD_I16:
        return 2;
    }
    return 0;
}

uint32_t ad_crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        uInt chunk = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return crc;
}

/* ----------------------------------------------------- bounded draw, shuffle */

uint64_t ad_xoshiro_bits(void *state) { return ad_xoshiro_next(state); }

uint64_t ad_splitmix64_bits(void *state) { return ad_splitmix64(state); }

uint64_t ad_bits_below(ad_bits_fn next, void *state, uint64_t bound)
{
    if (bound == 0)
        return 0;
    uint64_t threshold = (0 - bound) % bound; /* (2^64 - bound) mod bound = 2^64 mod bound */
    uint64_t r;
    do
        r = next(state);
    while (r < threshold);
    return r % bound;
}

void ad_shuffle(ad_bits_fn next, void *state, int64_t n,
                void (*swap)(void *ctx, int64_t i, int64_t j), void *ctx)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ad_bits_below(next, state, (uint64_t)i + 1);
        if (j != i)
            swap(ctx, i, j);
    }
}

void ad_swap_int64(void *ctx, int64_t i, int64_t j)
{
    int64_t *a = ctx, t = a[i];
    a[i] = a[j];
    a[j] = t;
}
