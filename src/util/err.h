/*
** err.h — per-thread detailed error messages behind tally_errmsg().
*/
#ifndef TALLY_ERR_H
#define TALLY_ERR_H
#include "tally.h"

/* Sets the calling thread's message (printf format) and returns code, so
** callers can write `return tally_seterr(TALLY_EINVAL, "key too long");`. */
int tally_seterr(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears the message. */
void tally_clearerr(void);
/* Maps a negative errno from the io layer to TALLY_EIO / TALLY_ENOSPC / TALLY_ENOMEM. */
int tally_err_from_errno(int neg_errno);

#endif
