/*
** cli_json.c — output helpers of the `tally` tool: a strict UTF-8 check,
** JSON string escaping per RFC 8259, the "name"/"name_hex" rule for bytes
** that are not valid UTF-8, lowercase hex, and proof paths.
** No third-party JSON library: the output is small and flat.
*/
#include <stdio.h>

#include "cli.h"

/* Length of the UTF-8 sequence starting at s[0..n), or 0 if invalid
** (overlong forms, surrogates and code points above U+10FFFF are invalid). */
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
    if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
    if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
    if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0; /* > U+10FFFF */
    return len;
}

int cli_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq(s + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

void cli_json_str(FILE *f, const void *p, size_t n)
{
    const unsigned char *s = p;
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        switch (c) {
        case '"':  fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

void cli_hex(FILE *f, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        fputc(digits[s[i] >> 4], f);
        fputc(digits[s[i] & 15], f);
    }
}

void cli_json_bytes(FILE *f, const char *name, const void *p, size_t n)
{
    if (cli_utf8_valid(p, n)) {
        fprintf(f, "\"%s\":", name);
        cli_json_str(f, p, n);
    } else {
        fprintf(f, "\"%s_hex\":\"", name);
        cli_hex(f, p, n);
        fputc('"', f);
    }
}

void cli_json_hash(FILE *f, const char *name, const uint8_t h[TALLY_HASH_LEN])
{
    fprintf(f, "\"%s\":\"", name);
    cli_hex(f, h, TALLY_HASH_LEN);
    fputc('"', f);
}

void cli_json_path(FILE *f, const uint8_t (*path)[TALLY_HASH_LEN], size_t len)
{
    fputs("\"proof\":[", f);
    for (size_t i = 0; i < len; i++) {
        fputs(i ? ",\"" : "\"", f);
        cli_hex(f, path[i], TALLY_HASH_LEN);
        fputc('"', f);
    }
    fputc(']', f);
}

void cli_plain_path(FILE *f, const uint8_t (*path)[TALLY_HASH_LEN], size_t len)
{
    fputs("proof:\n", f);
    for (size_t i = 0; i < len; i++) {
        cli_hex(f, path[i], TALLY_HASH_LEN);
        fputc('\n', f);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cli_unhex(const char *s, size_t n, uint8_t *out)
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
