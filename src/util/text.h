/*
** text.h — the text conventions shared by the CLI, the server and the client:
** UTF-8 validity (a key or value that is not valid UTF-8 travels as hex),
** lowercase hex, RFC 3339 times and decimal numbers.
*/
#ifndef TALLY_TEXT_H
#define TALLY_TEXT_H
#include <stddef.h>
#include <stdint.h>

#define TALLY_TIME_BUF 40 /* "2026-11-22T10:00:00.123456789Z" + NUL, with room */

/* 1 if p[0..n) is valid UTF-8 (no overlong forms, surrogates or code points
** above U+10FFFF), else 0. */
int tally_utf8_valid(const void *p, size_t n);
/* Writes 2n lowercase hex digits and a NUL to out (2n+1 bytes). */
void tally_hex_encode(char *out, const void *p, size_t n);
/* Decodes n hex digits (n even, either case) into n/2 bytes. Returns 0 or -1. */
int tally_hex_decode(const char *s, size_t n, uint8_t *out);
/* RFC 3339 UTC with nanoseconds: "2026-11-22T10:00:00.123456789Z". */
void tally_time_format(char buf[TALLY_TIME_BUF], uint64_t ts_ns);
/* Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" ('t', 'z' and a
** space separator accepted; fraction digits beyond ns ignored; second 60 is
** a leap second). Returns 0 or -1. */
int tally_time_parse(const char *s, int64_t *out_ns);
/* Parses a whole decimal string into a u64 (no sign, no overflow). 0 or -1. */
int tally_parse_u64(const char *s, uint64_t *out);

#endif
