/* error.c -- the caller-owned error of calls that have no object to hold a
   message (docs/errors.md), shared by every module. */
#include <stdarg.h>
#include <stdio.h>

#include "error_impl.h"

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
