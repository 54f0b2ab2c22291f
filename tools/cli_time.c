/*
** cli_time.c — RFC 3339 timestamps for the `tally` tool.
**
** Output: UTC with nanoseconds, "2026-11-22T10:00:00.123456789Z".
** Input (--at): "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"; 't', 'z'
** and a space separator are accepted (RFC 3339 section 5.6 note); digits of
** the fraction beyond nanoseconds are ignored. The civil-to-days conversion
** is Howard Hinnant's algorithm, so no timegm()/TZ dependency.
*/
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "cli.h"
#include "util/text.h"

/* The shared implementation: src/util/text.c (also used by tallyd and the client). */
void cli_fmt_time(char buf[CLI_TIME_BUF], uint64_t ts_ns) { tally_time_format(buf, ts_ns); }

int cli_parse_time(const char *s, int64_t *out_ns) { return tally_time_parse(s, out_ns); }
