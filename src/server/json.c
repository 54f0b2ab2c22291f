/*
** json.c — small helpers shared by tallyd's handlers: the strict UTF-8 check
** behind the "name" / "name_hex" rule of docs/API.md, hex, RFC 3339 times
** (UTC, nanoseconds), name and number validation, and jansson glue.
**
** Invariants:
**   (1) bytes that are valid UTF-8 travel as JSON strings, all others as hex
**       under "<name>_hex" — the same rule as the CLI's --json output;
**   (2) parsers are strict: no sign, no spaces, no trailing bytes.
*/
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

/* Length of the UTF-8 sequence at s[0..n), or 0 if invalid (overlong forms,
** surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || c > 0xf4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0;
    if (c == 0xed && s[1] > 0x9f) return 0;
    if (c == 0xf0 && s[1] < 0x90) return 0;
    if (c == 0xf4 && s[1] > 0x8f) return 0;
    return len;
}

int srv_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { /* fast path for ASCII */
            i++;
            continue;
        }
        size_t len = utf8_seq(s + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

void srv_hex(char *out, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int srv_unhex(const char *s, size_t n, uint8_t *out)
{
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void srv_fmt_time(char buf[SRV_TIME_BUF], uint64_t ts_ns)
{
    time_t secs = (time_t)(ts_ns / 1000000000u);
    unsigned nsec = (unsigned)(ts_ns % 1000000000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(buf, SRV_TIME_BUF, "@%" PRIu64, ts_ns);
        return;
    }
    snprintf(buf, SRV_TIME_BUF, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
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

/* ".123" -> ns; none -> 0; a bare '.' -> -1. Digits past 9 are ignored. */
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

/* "Z" -> 0, "+HH:MM" -> seconds east of UTC. Returns 0 or -1. */
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

int srv_parse_time(const char *s, int64_t *out_ns)
{
    static const int dm[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y = digits(&s, 4);
    if (y < 0 || expect(&s, "-") < 0) return -1;
    int mo = digits(&s, 2);
    if (mo < 1 || mo > 12 || expect(&s, "-") < 0) return -1;
    int d = digits(&s, 2);
    if (d < 1 || d > dm[mo - 1] || expect(&s, "Tt ") < 0) return -1;
    int h = digits(&s, 2);
    if (h < 0 || h > 23 || expect(&s, ":") < 0) return -1;
    int mi = digits(&s, 2);
    if (mi < 0 || mi > 59 || expect(&s, ":") < 0) return -1;
    int sec = digits(&s, 2);
    if (sec < 0 || sec > 60) return -1;
    int64_t ns = fraction(&s), off;
    if (ns < 0 || offset(&s, &off) < 0 || *s != '\0') return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    if (t > INT64_MAX / 1000000000 - 1)
        *out_ns = INT64_MAX;
    else if (t < INT64_MIN / 1000000000 + 1)
        *out_ns = INT64_MIN;
    else
        *out_ns = t * 1000000000 + ns;
    return 0;
}

int srv_name_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || n >= SRV_NAME_LEN_MAX)
            return 0;
    }
    return n >= 1;
}

int srv_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int srv_json_set_hex(json_t *obj, const char *name, const void *p, size_t n)
{
    char *hex = malloc(2 * n + 1);
    if (!hex)
        return -1;
    srv_hex(hex, p, n);
    json_t *s = json_stringn_nocheck(hex, 2 * n);
    free(hex);
    return s ? json_object_set_new_nocheck(obj, name, s) : -1;
}

int srv_json_set_bytes(json_t *obj, const char *name, const void *p, size_t n)
{
    if (srv_utf8_valid(p, n)) {
        json_t *s = json_stringn_nocheck(n ? p : "", n);
        return s ? json_object_set_new_nocheck(obj, name, s) : -1;
    }
    char hname[80];
    snprintf(hname, sizeof hname, "%s_hex", name);
    return srv_json_set_hex(obj, hname, p, n);
}

json_t *srv_json_path(const tally_proof *p)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < p->len && i < TALLY_PROOF_MAX; i++) {
        char hex[2 * TALLY_HASH_LEN + 1];
        srv_hex(hex, p->path[i], TALLY_HASH_LEN);
        if (json_array_append_new(a, json_stringn_nocheck(hex, 2 * TALLY_HASH_LEN)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

int srv_json_get_bytes(json_t *obj, const char *name, const uint8_t **out, size_t *out_len,
                       uint8_t **owned)
{
    char hname[80];
    snprintf(hname, sizeof hname, "%s_hex", name);
    json_t *s = json_object_get(obj, name), *h = json_object_get(obj, hname);
    *out = NULL;
    *owned = NULL;
    *out_len = 0;
    if (!s && !h)
        return 0;
    if ((s && h) || (s && !json_is_string(s)) || (h && !json_is_string(h)))
        return -1;
    if (s) { /* zero copy: valid while obj lives */
        *out = (const uint8_t *)json_string_value(s);
        *out_len = json_string_length(s);
        return 1;
    }
    const char *txt = json_string_value(h);
    size_t len = json_string_length(h);
    uint8_t *buf = malloc(len / 2 + 1);
    if (!buf || srv_unhex(txt, len, buf) < 0) {
        free(buf);
        return -1;
    }
    *out = *owned = buf;
    *out_len = len / 2;
    return 1;
}
