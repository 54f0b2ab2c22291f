/*
** text.c — shared text conventions (see text.h). The civil-to-days
** conversion is Howard Hinnant's algorithm, so no timegm()/TZ dependency.
*/
#include "util/text.h"
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

/* Length of the UTF-8 sequence starting at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || c > 0xf4 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
    if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
    if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0; /* > U+10FFFF */
    return len;
}

int tally_utf8_valid(const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        if (len == 0) return 0;
        i += len;
    }
    return 1;
}

void tally_hex_encode(char *out, const void *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) out[2 * i] = digits[b[i] >> 4], out[2 * i + 1] = digits[b[i] & 15];
    out[2 * n] = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tally_hex_decode(const char *s, size_t n, uint8_t *out) {
    if (n % 2) return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void tally_time_format(char buf[TALLY_TIME_BUF], uint64_t ts_ns) {
    time_t secs = (time_t)(ts_ns / 1000000000u);
    unsigned nsec = (unsigned)(ts_ns % 1000000000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(buf, TALLY_TIME_BUF, "@%" PRIu64, ts_ns);
        return;
    }
    snprintf(buf, TALLY_TIME_BUF, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dm[m - 1];
}

/* Reads exactly n digits at *s; returns the value or -1. */
static int digits(const char **s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (**s < '0' || **s > '9') return -1;
        v = v * 10 + (**s - '0');
    }
    return v;
}

static int expect(const char **s, const char *any) {
    for (; *any; any++)
        if (**s == *any) {
            (*s)++;
            return 0;
        }
    return -1;
}

/* ".123" -> nanoseconds; no fraction -> 0; a bare '.' -> -1. */
static int64_t fraction(const char **s) {
    int64_t ns = 0, scale = 100000000;
    int n = 0;
    if (**s != '.') return 0;
    for ((*s)++; **s >= '0' && **s <= '9'; (*s)++, n++) {
        ns += (**s - '0') * scale;
        scale /= 10;
    }
    return n ? ns : -1;
}

/* "Z" -> 0, "+HH:MM" -> seconds east of UTC; returns 0 or -1. */
static int offset(const char **s, int64_t *off) {
    if (expect(s, "Zz") == 0) {
        *off = 0;
        return 0;
    }
    int sign = **s == '-' ? -1 : 1;
    if (expect(s, "+-") < 0) return -1;
    int hh = digits(s, 2);
    if (hh < 0 || hh > 23 || expect(s, ":") < 0) return -1;
    int mm = digits(s, 2);
    if (mm < 0 || mm > 59) return -1;
    *off = sign * (int64_t)(hh * 3600 + mm * 60);
    return 0;
}

int tally_time_parse(const char *s, int64_t *out_ns) {
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
    if (t > INT64_MAX / 1000000000 - 1) *out_ns = INT64_MAX; /* years 0..9999 fit; ns saturate */
    else if (t < INT64_MIN / 1000000000 + 1) *out_ns = INT64_MIN;
    else *out_ns = t * 1000000000 + ns;
    return 0;
}

int tally_parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
