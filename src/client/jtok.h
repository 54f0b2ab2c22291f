/*
** jtok.h — the verifying client's strict JSON reader for the responses on its
** hot path (proof bundles, proofs, get). One pass over the text builds a flat
** array of tokens pointing into it; nothing is copied or allocated unless a
** document has more than JT_INLINE tokens or a caller asks for a decoded
** string. Replaces jansson there (a verified get spent ~20% of its client CPU
** in json_loadb building hash tables it read a dozen fields from).
**
** It accepts exactly what jansson's json_loadb(JSON_REJECT_DUPLICATES |
** JSON_ALLOW_NUL) accepts (RFC 8259, top level an object or array, strict
** UTF-8 in strings, no lone surrogates, integers within int64, reals that do
** not overflow, no NUL in object keys, no duplicate keys after decoding
** escapes), with two stricter limits no tallyd response comes near: nesting
** deeper than JT_DEPTH_MAX and objects of more than JT_MEMBERS_MAX members
** (the duplicate check is quadratic) are refused. tests/test_client_verify.c
** compares the two parsers on mutated documents.
*/
#ifndef TALLY_CLIENT_JTOK_H
#define TALLY_CLIENT_JTOK_H
#include <stddef.h>
#include <stdint.h>

#define JT_INLINE 128
#define JT_DEPTH_MAX 64
#define JT_MEMBERS_MAX 1024

enum { JT_NONE = 0, JT_OBJECT, JT_ARRAY, JT_STRING, JT_INTEGER, JT_REAL, JT_TRUE, JT_FALSE,
       JT_NULL };

typedef struct jt_tok {
    uint8_t type;
    uint8_t esc;        /* string: has escapes (read it with jt_str_decode / jt_str_dup) */
    uint32_t off, len;  /* string: the raw content between the quotes; other: the text */
    uint32_t count;     /* object: members; array: elements */
    uint32_t next;      /* index of the token after this value and everything in it */
    int64_t i;          /* integer: the value */
} jt_tok;

/* An object's members are (key string, value) token pairs in order; an
** array's elements follow it in order; jt_next skips over one value. */
typedef struct jt_doc {
    const char *s;
    size_t len;
    jt_tok *t;
    size_t n, cap;
    char err[96];
    jt_tok inl[JT_INLINE];
} jt_doc;

/* Parses s[0..len). 0, or -1 with the reason in d->err (also for ENOMEM).
** Call jt_free afterwards either way. The root is token 0. */
int jt_parse(jt_doc *d, const char *s, size_t len);
void jt_free(jt_doc *d);

/* The type of token i (JT_NONE for i < 0). */
int jt_type(const jt_doc *d, int i);
/* The value of member name of object obj, or -1 (also if obj is not an object). */
int jt_get(const jt_doc *d, int obj, const char *name);
/* Elements of array arr: the first (or -1), then jt_next of each, count of them. */
int jt_first(const jt_doc *d, int arr);
int jt_next(const jt_doc *d, int i);
size_t jt_count(const jt_doc *d, int i); /* members or elements; 0 for others */
/* Integer value: 0, or -1 if i is not an integer. */
int jt_int(const jt_doc *d, int i, int64_t *out);
/* String i: (*p, *n) its raw bytes if it has no escapes (return 1), else 0;
** -1 if not a string. */
int jt_str_raw(const jt_doc *d, int i, const char **p, size_t *n);
/* Decoded length bound: the raw length (a decoded string is never longer). */
size_t jt_str_rawlen(const jt_doc *d, int i);
/* Decodes string i into out (room for jt_str_rawlen + 1 bytes; NUL added);
** 0, or -1 if i is not a string. */
int jt_str_decode(const jt_doc *d, int i, char *out, size_t *out_len);
/* Decoded copy, malloc'ed with a NUL after it. 0, -1 (not a string), or -2 (ENOMEM). */
int jt_str_dup(const jt_doc *d, int i, uint8_t **out, size_t *out_len);

#endif
