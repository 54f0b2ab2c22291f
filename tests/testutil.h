/*
** testutil.h — the tiny assertion harness every C test uses.
**
** CHECK(cond) counts one check; a failure prints file:line and the condition
** but the test goes on. Each test binary ends with TEST_END(), which prints
** "<binary>: N checks, M failed" and exits 1 if any failed. tests/run.sh runs
** every binary and prints the closing "N passed, N failed" line CI reads.
*/
#ifndef TALLY_TESTUTIL_H
#define TALLY_TESTUTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long tu_checks, tu_failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        tu_checks++;                                                             \
        if (!(cond)) {                                                           \
            tu_failed++;                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                       \
    do {                                                                         \
        long long tu_a = (long long)(a), tu_b = (long long)(b);                  \
        tu_checks++;                                                             \
        if (tu_a != tu_b) {                                                      \
            tu_failed++;                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",    \
                    __FILE__, __LINE__, #a, #b, tu_a, tu_b);                     \
        }                                                                        \
    } while (0)

/* Where the records of a segment image seg[0, n) end: record headers are
** followed from offset 32 (the segment header) while their magic "TXR1" is
** there and their body fits; what follows is preallocated zeros or a tail.
** Byte-level, from docs/FORMAT.md section 2 (no engine code). */
static inline size_t tu_records_end(const unsigned char *seg, size_t n) {
    size_t off = 32;
    while (off + 32 <= n && seg[off] == 'T' && seg[off + 1] == 'X' && seg[off + 2] == 'R' && seg[off + 3] == '1') {
        size_t body = (size_t)seg[off + 4] | (size_t)seg[off + 5] << 8 | (size_t)seg[off + 6] << 16 |
                      (size_t)seg[off + 7] << 24;
        if (off + 32 + body > n) break;
        off += 32 + body;
    }
    return off;
}
/* Index just past the last non-zero byte of seg[from, to) (from if none). */
static inline size_t tu_nonzero_end(const unsigned char *seg, size_t from, size_t to) {
    while (to > from && !seg[to - 1]) to--;
    return to;
}

#define TEST_END(name)                                                           \
    do {                                                                         \
        printf("%s: %lu checks, %lu failed\n", (name), tu_checks, tu_failed);    \
        return tu_failed ? 1 : 0;                                                \
    } while (0)

#endif
