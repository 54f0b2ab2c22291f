/*
** err.c — error codes and messages (tally_strerror, tally_errmsg).
*/
#include "err.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char errmsg[512];

int tally_seterr(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return code;
}

void tally_clearerr(void) { errmsg[0] = 0; }

const char *tally_errmsg(void) { return errmsg; }

int tally_err_from_errno(int e) {
    if (e == -ENOSPC || e == -EDQUOT) return TALLY_ENOSPC;
    if (e == -ENOMEM) return TALLY_ENOMEM;
    return TALLY_EIO;
}

const char *tally_strerror(int err) {
    switch (err) {
    case TALLY_OK: return "success";
    case TALLY_ENOTFOUND: return "not found";
    case TALLY_EINVAL: return "invalid argument";
    case TALLY_ETOOBIG: return "too big";
    case TALLY_ECONFLICT: return "precondition failed";
    case TALLY_EIO: return "I/O error";
    case TALLY_ECORRUPT: return "integrity failure";
    case TALLY_ELOCKED: return "data directory locked";
    case TALLY_EFATAL: return "handle failed earlier; reopen";
    case TALLY_ENOMEM: return "out of memory";
    case TALLY_EBADPROOF: return "proof does not verify";
    case TALLY_ENOSPC: return "no space left on device";
    case TALLY_ERANGE: return "out of range";
    default: return "unknown error";
    }
}
