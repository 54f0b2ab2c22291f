/*
** cli_json.c — output helpers of the `tally` tool: a strict UTF-8 check,
** JSON string escaping per RFC 8259, the "name"/"name_hex" rule for bytes
** that are not valid UTF-8, lowercase hex, and proof paths.
** No third-party JSON library: the output is small and flat.
*/
#include <stdio.h>

#include "cli.h"
#include "util/text.h"



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

/* The shared implementations: src/util/text.c. */
int cli_utf8_valid(const void *p, size_t n) { return tally_utf8_valid(p, n); }

int cli_unhex(const char *s, size_t n, uint8_t *out) { return tally_hex_decode(s, n, out); }
