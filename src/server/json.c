/*
** json.c — small helpers shared by tallyd's handlers: the strict UTF-8 check
** behind the "name" / "name_hex" rule of docs/API.md, hex, RFC 3339 times
** (UTC, nanoseconds), name and number validation, and jansson glue.
**
** Invariants:
**   (1) bytes that are valid UTF-8 travel as JSON strings, all others as hex
**       under "<name>_hex" — the same rule as the CLI's --json output;
**   (2) parsers are strict: no sign, no spaces, no trailing bytes; a request
**       object with a field its endpoint does not know is refused
**       (srv_json_fields), never read as if the field were absent.
*/
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"
#include "util/text.h"













int srv_name_valid(const char *s)
{
    size_t n = 0, dots = 0; /* a name of dots only ("..") cannot travel in a URL path */
    for (; s[n]; n++) {
        dots += s[n] == '.';
        char c = s[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || n >= SRV_NAME_LEN_MAX)
            return 0;
    }
    return n >= 1 && dots < n;
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

#define FIELD_SHOWN_BYTES_MAX 64 /* of an unknown field's name, in the message */

int srv_json_fields(srv_err *e, json_t *obj, const char *const *allowed, const char *where_fmt,
                    ...)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (*a)
            continue;
        /* jansson keys are UTF-8 without NUL; cut a long one at a character boundary */
        size_t n = strlen(key);
        int cut = n > FIELD_SHOWN_BYTES_MAX;
        if (cut) {
            n = FIELD_SHOWN_BYTES_MAX;
            while (n > 0 && ((unsigned char)key[n] & 0xC0) == 0x80)
                n--;
        }
        char where[64] = "";
        if (where_fmt) {
            va_list ap;
            va_start(ap, where_fmt);
            vsnprintf(where, sizeof where, where_fmt, ap);
            va_end(ap);
        }
        return srv_fail(e, 400, "bad_request", "%sunknown field \"%.*s%s\"", where, (int)n, key,
                        cut ? "..." : "");
    }
    return 0;
}

const char *srv_json_text(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* The shared implementations: src/util/text.c (also used by the CLI and the client). */
int srv_utf8_valid(const void *p, size_t n) { return tally_utf8_valid(p, n); }
void srv_hex(char *out, const void *p, size_t n) { tally_hex_encode(out, p, n); }
int srv_unhex(const char *s, size_t n, uint8_t *out) { return tally_hex_decode(s, n, out); }
void srv_fmt_time(char buf[SRV_TIME_BUF], uint64_t ts_ns) { tally_time_format(buf, ts_ns); }
int srv_parse_time(const char *s, int64_t *out_ns) { return tally_time_parse(s, out_ns); }
int srv_parse_u64(const char *s, uint64_t *out) { return tally_parse_u64(s, out); }
