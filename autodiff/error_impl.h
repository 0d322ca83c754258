/* error_impl.h -- filling a caller's ad_error (internal, every module).
   Never installed. */
#ifndef CHAINRULE_ERROR_IMPL_H
#define CHAINRULE_ERROR_IMPL_H

#include "chainrule/autodiff.h"

#if defined(__GNUC__)
#define AD_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define AD_PRINTF_LIKE(f, a)
#endif

/* Clears *err (when not NULL) to AD_OK and ""; returns 0. */
int ad_error_ok(ad_error *err);
/* Fills *err (when not NULL) with code and the formatted one-line message;
   returns -1, so a failing call can end with `return ad_error_set(...)`. */
AD_PRINTF_LIKE(3, 4)
int ad_error_set(ad_error *err, ad_errcode code, const char *fmt, ...);

#endif
