/*
** bundle_util.h — builders the client-verification tests share to write
** tallyd's answers from the spec (docs/API.md), independently of tallyd's
** own encoders: a growing byte buffer for TVB1 batches, and JSON hex/proof
** fields (jansson). Header-only; include once per test program.
*/
#ifndef TALLY_TESTS_BUNDLE_UTIL_H
#define TALLY_TESTS_BUNDLE_UTIL_H

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"
#include "util/text.h"

/* A growing byte buffer (aborts when out of memory: tests only). */
typedef struct tb {
    uint8_t *p;
    size_t len, cap;
} tb;

static inline void tb_put(tb *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* v as `bytes` little-endian bytes. */
static inline void tb_le(tb *b, uint64_t v, unsigned bytes)
{
    uint8_t x[8];
    for (unsigned i = 0; i < bytes; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    tb_put(b, x, bytes);
}

/* A TVB1 proof: count (1 byte), then the hashes. */
static inline void tb_path(tb *b, const tally_proof *p)
{
    tb_le(b, p->len, 1);
    tb_put(b, p->path, p->len * 32);
}

/* A JSON string of the hex of p[0..n). */
static inline json_t *jhex(const void *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (!s)
        abort();
    tally_hex_encode(s, p, n);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* {"<first>":a, "size", "proof":[hex…]} */
static inline json_t *jproof(const char *first, uint64_t a, const tally_proof *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < p->len; i++)
        json_array_append_new(arr, jhex(p->path[i], 32));
    return json_pack("{s:I, s:I, s:o}", first, (json_int_t)a, "size", (json_int_t)p->size,
                     "proof", arr);
}

#endif
