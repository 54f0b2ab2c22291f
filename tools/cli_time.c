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

void cli_fmt_time(char buf[CLI_TIME_BUF], uint64_t ts_ns)
{
    time_t secs = (time_t)(ts_ns / 1000000000u);
    unsigned nsec = (unsigned)(ts_ns % 1000000000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(buf, CLI_TIME_BUF, "@%" PRIu64, ts_ns);
        return;
    }
    snprintf(buf, CLI_TIME_BUF, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dm[m - 1];
}

/* Reads exactly n digits at *s; returns the value or -1. */
static int digits(const char **s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (**s < '0' || **s > '9')
            return -1;
        v = v * 10 + (**s - '0');
    }
    return v;
}

static int expect(const char **s, const char *any)
{
    for (; *any; any++)
        if (**s == *any) {
            (*s)++;
            return 0;
        }
    return -1;
}

/* ".123" -> nanoseconds; no fraction -> 0. Returns -1 on a bare '.'. */
static int64_t fraction(const char **s)
{
    int64_t ns = 0, scale = 100000000;
    int n = 0;
    if (**s != '.')
        return 0;
    for ((*s)++; **s >= '0' && **s <= '9'; (*s)++, n++) {
        ns += (**s - '0') * scale;
        scale /= 10;
    }
    return n ? ns : -1;
}

/* "Z" -> 0, "+HH:MM" -> seconds east of UTC; returns 0 or -1. */
static int offset(const char **s, int64_t *off)
{
    if (expect(s, "Zz") == 0) {
        *off = 0;
        return 0;
    }
    int sign = **s == '-' ? -1 : 1;
    if (expect(s, "+-") < 0)
        return -1;
    int hh = digits(s, 2);
    if (hh < 0 || hh > 23 || expect(s, ":") < 0)
        return -1;
    int mm = digits(s, 2);
    if (mm < 0 || mm > 59)
        return -1;
    *off = sign * (int64_t)(hh * 3600 + mm * 60);
    return 0;
}

int cli_parse_time(const char *s, int64_t *out_ns)
{
    int y = digits(&s, 4);
    if (y < 0 || expect(&s, "-") < 0) return -1;
    int mo = digits(&s, 2);
    if (mo < 1 || mo > 12 || expect(&s, "-") < 0) return -1;
    int d = digits(&s, 2);
    if (d < 1 || d > days_in_month(y, mo) || expect(&s, "Tt ") < 0) return -1;
    int h = digits(&s, 2);
    if (h < 0 || h > 23 || expect(&s, ":") < 0) return -1;
    int mi = digits(&s, 2);
    if (mi < 0 || mi > 59 || expect(&s, ":") < 0) return -1;
    int sec = digits(&s, 2);
    if (sec < 0 || sec > 60) return -1; /* 60: a leap second */
    int64_t ns = fraction(&s), off;
    if (ns < 0 || offset(&s, &off) < 0 || *s != '\0') return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    /* Years 0000..9999 fit in int64 seconds; nanoseconds saturate. */
    if (t > INT64_MAX / 1000000000 - 1)
        *out_ns = INT64_MAX;
    else if (t < INT64_MIN / 1000000000 + 1)
        *out_ns = INT64_MIN;
    else
        *out_ns = t * 1000000000 + ns;
    return 0;
}
