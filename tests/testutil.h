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

#define TEST_END(name)                                                           \
    do {                                                                         \
        printf("%s: %lu checks, %lu failed\n", (name), tu_checks, tu_failed);    \
        return tu_failed ? 1 : 0;                                                \
    } while (0)

#endif
