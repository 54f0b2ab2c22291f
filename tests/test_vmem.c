/*
** test_vmem.c — large zeroed memory (src/os/vmem.c).
**
** Both modes, at sizes on both sides of VMEM_MMAP_MIN, a page and the 2 MiB
** huge-page size: the memory is zeroed, every byte is writable (ASan and the
** kernel would catch a short mapping), a VMEM_FILL region of 2 MiB or more is
** 2 MiB-aligned (so the kernel can back it with huge pages), and VMEM_LAZY
** memory is not resident until written (the point of the mode: a
** ledger's mostly-empty tables). Freeing with the same length unmaps it all
** once the reserve is trimmed: 200 cycles of 8 MiB leave the process's
** mappings as they were.
**
** The reserve: a freed VMEM_FILL region comes back zeroed (however it was
** scribbled on) to the next allocation that fits; adjacent freed regions
** merge and can serve a larger one; pieces of a kept region stay 2 MiB-aligned;
** the reserve never exceeds its bounds (bytes, regions); a region older than
** the age bound goes at the next call; vmem_trim gives everything back.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "os/vmem.h"
#include "testutil.h"

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Lines in /proc/self/maps (one per mapping). */
static int map_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    if (!f) return -1;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* Resident pages of [p, p+len) (mincore). */
static size_t resident_pages(void *p, size_t len) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = (len + pg - 1) / pg, r = 0;
    unsigned char vec[4096];
    if (n > sizeof vec || mincore(p, len, vec) != 0) return (size_t)-1;
    for (size_t i = 0; i < n; i++) r += vec[i] & 1;
    return r;
}

#define MIB ((size_t)1 << 20)

static void test_reserve(void) {
    vmem_trim(0);
    /* reuse: the same region comes back, zeroed */
    uint8_t *a = vmem_alloc(6 * MIB, VMEM_FILL);
    CHECK(a != NULL);
    if (!a) return;
    memset(a, 0x5A, 6 * MIB);
    vmem_free(a, 6 * MIB, VMEM_FILL);
    CHECK(vmem_reserve_bytes() == 6 * MIB);
    uint8_t *b = vmem_alloc(5 * MIB + 1, VMEM_FILL); /* rounds to 6 MiB: fits exactly */
    CHECK(b == a);
    CHECK(b && all_zero(b, 5 * MIB + 1));
    CHECK(vmem_reserve_bytes() == 0);
    /* split: a smaller request takes the front piece, the rest stays */
    vmem_free(b, 5 * MIB + 1, VMEM_FILL);
    uint8_t *c = vmem_alloc(2 * MIB, VMEM_FILL);
    CHECK(c == a);
    CHECK(vmem_reserve_bytes() == 4 * MIB);
    uint8_t *d = vmem_alloc(3 * MIB, VMEM_FILL); /* 4 MiB piece, 2 MiB-aligned */
    CHECK(d == a + 2 * MIB);
    CHECK(d && ((uintptr_t)d & (2 * MIB - 1)) == 0 && all_zero(d, 3 * MIB));
    CHECK(vmem_reserve_bytes() == 0);
    /* merge: the two pieces freed in either order are one 6 MiB region again */
    vmem_free(d, 3 * MIB, VMEM_FILL);
    vmem_free(c, 2 * MIB, VMEM_FILL);
    uint8_t *e = vmem_alloc(6 * MIB, VMEM_FILL);
    CHECK(e == a);
    CHECK(e && all_zero(e, 6 * MIB));
    /* three neighbours put back out of order merge into one */
    vmem_free(e, 6 * MIB, VMEM_FILL);
    uint8_t *p1 = vmem_alloc(2 * MIB, VMEM_FILL), *p2 = vmem_alloc(2 * MIB, VMEM_FILL),
            *p3 = vmem_alloc(2 * MIB, VMEM_FILL);
    CHECK(p1 == a && p2 == a + 2 * MIB && p3 == a + 4 * MIB);
    vmem_free(p1, 2 * MIB, VMEM_FILL);
    vmem_free(p3, 2 * MIB, VMEM_FILL);
    vmem_free(p2, 2 * MIB, VMEM_FILL);
    CHECK(vmem_alloc(6 * MIB, VMEM_FILL) == a);
    vmem_free(a, 6 * MIB, VMEM_FILL);
    /* gather: regions that do not fit alone are moved side by side (mremap)
    ** into one larger range, the rest faulted in fresh; all of it zeroed */
    vmem_free(a, 6 * MIB, VMEM_FILL);
    vmem_trim(0);
    uint8_t *r1 = vmem_alloc(2 * MIB, VMEM_FILL), *gap = vmem_alloc(2 * MIB, VMEM_FILL),
            *r2 = vmem_alloc(4 * MIB, VMEM_FILL);
    CHECK(r1 && gap && r2);
    memset(r1, 0x11, 2 * MIB);
    memset(r2, 0x22, 4 * MIB);
    vmem_free(r1, 2 * MIB, VMEM_FILL);
    vmem_free(r2, 4 * MIB, VMEM_FILL); /* gap keeps them apart */
    CHECK(vmem_reserve_bytes() == 6 * MIB);
    uint8_t *big8 = vmem_alloc(8 * MIB + 5, VMEM_FILL); /* 10 MiB: 6 gathered + 4 fresh */
    CHECK(big8 != NULL);
    CHECK(vmem_reserve_bytes() == 0);
    CHECK(big8 && ((uintptr_t)big8 & (2 * MIB - 1)) == 0 && all_zero(big8, 8 * MIB + 5));
    if (big8) memset(big8, 0x33, 8 * MIB + 5);
    vmem_free(big8, 8 * MIB + 5, VMEM_FILL);
    vmem_free(gap, 2 * MIB, VMEM_FILL);
    CHECK(vmem_reserve_bytes() == 12 * MIB);
    uint8_t *part = vmem_alloc(11 * MIB, VMEM_FILL); /* 12 MiB: one region fits or two gather */
    CHECK(part && all_zero(part, 11 * MIB));
    CHECK(vmem_reserve_bytes() == 0);
    vmem_free(part, 11 * MIB, VMEM_FILL);
    uint8_t *small = vmem_alloc(3 * MIB, VMEM_FILL); /* a piece of the 12 MiB */
    CHECK(small && all_zero(small, 3 * MIB));
    CHECK(vmem_reserve_bytes() == 8 * MIB);
    vmem_free(small, 3 * MIB, VMEM_FILL);
    vmem_trim(0);
    a = vmem_alloc(6 * MIB, VMEM_FILL);
    vmem_free(a, 6 * MIB, VMEM_FILL);
    /* lazy and small regions are never kept */
    void *l = vmem_alloc(4 * MIB, VMEM_LAZY), *s = vmem_alloc(VMEM_MMAP_MIN, VMEM_FILL);
    vmem_free(l, 4 * MIB, VMEM_LAZY);
    vmem_free(s, VMEM_MMAP_MIN, VMEM_FILL);
    CHECK(vmem_reserve_bytes() == 6 * MIB);
    CHECK(vmem_trim(0) == 6 * MIB);
    /* bounds: never more than VMEM_RESERVE_REGIONS_MAX regions, never more
    ** bytes than its cap (an eighth of RAM, at most VMEM_RESERVE_BYTES_MAX) */
    enum { N = VMEM_RESERVE_REGIONS_MAX + 8 };
    static uint8_t *v[N];
    for (int i = 0; i < N; i++) v[i] = vmem_alloc(2 * MIB, VMEM_FILL);
    for (int i = 0; i < N; i += 2) vmem_free(v[i], 2 * MIB, VMEM_FILL); /* not adjacent: no merging */
    for (int i = 1; i < N; i += 2) vmem_free(v[i], 2 * MIB, VMEM_FILL);
    CHECK(vmem_reserve_bytes() <= (size_t)VMEM_RESERVE_REGIONS_MAX * 2 * MIB);
    CHECK(vmem_reserve_bytes() <= VMEM_RESERVE_BYTES_MAX);
    vmem_trim(0);
    size_t big = VMEM_RESERVE_BYTES_MAX + 2 * MIB; /* larger than the cap: unmapped at once */
    uint8_t *g = vmem_alloc(big, VMEM_LAZY);       /* (lazy: a test must not fill 4 GiB) */
    CHECK(g != NULL);
    vmem_free(g, big, VMEM_LAZY);
    CHECK(vmem_reserve_bytes() == 0);
    /* age: trim(ms) keeps what was freed just now, trim(0) takes all */
    uint8_t *h = vmem_alloc(2 * MIB, VMEM_FILL);
    vmem_free(h, 2 * MIB, VMEM_FILL);
    CHECK(vmem_trim(VMEM_RESERVE_AGE_MS) == 0);
    CHECK(vmem_reserve_bytes() == 2 * MIB);
    CHECK(vmem_trim(0) == 2 * MIB);
    /* many mixed sizes: each allocation takes a kept region when one fits,
    ** maps a new one only when none does, so the reserve stays small */
    size_t total = 0;
    for (int round = 0; round < 50; round++) {
        size_t len = (size_t)(round % 7 + 1) * MIB + (size_t)round * 4096;
        uint8_t *x = vmem_alloc(len, VMEM_FILL);
        CHECK(x && all_zero(x, len));
        if (x) memset(x, round, len);
        vmem_free(x, len, VMEM_FILL);
        total = vmem_reserve_bytes();
    }
    CHECK(total >= 8 * MIB && total <= 8 * 8 * MIB);
    vmem_trim(0);
}

int main(void) {
    const size_t sizes[] = {1, 4095, 4096, VMEM_MMAP_MIN - 1, VMEM_MMAP_MIN, VMEM_MMAP_MIN + 1,
                            (2u << 20) - 1, 2u << 20, (2u << 20) + 4097, (6u << 20) + 5};
    for (int mode = VMEM_LAZY; mode <= VMEM_FILL; mode++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t len = sizes[i];
            uint8_t *p = vmem_alloc(len, mode);
            CHECK(p != NULL);
            if (!p) continue;
            CHECK(all_zero(p, len));
            memset(p, 0xA5, len);
            CHECK(p[0] == 0xA5 && p[len - 1] == 0xA5);
            if (mode == VMEM_FILL && len >= (2u << 20)) CHECK(((uintptr_t)p & ((2u << 20) - 1)) == 0);
            vmem_free(p, len, mode);
        }
    }
    {   /* lazy: untouched pages cost nothing; a written page is resident */
        size_t len = 4u << 20;
        uint8_t *p = vmem_alloc(len, VMEM_LAZY);
        CHECK(p != NULL);
        if (p) {
            CHECK_EQ_INT(resident_pages(p, len), 0);
            p[5 * 4096] = 1;
            CHECK_EQ_INT(resident_pages(p, len), 1);
            vmem_free(p, len, VMEM_LAZY);
        }
        p = vmem_alloc(len, VMEM_FILL); /* fill: all resident at once */
        CHECK(p != NULL);
        if (p) {
            CHECK_EQ_INT(resident_pages(p, len), len / 4096);
            vmem_free(p, len, VMEM_FILL);
        }
    }
    {   /* frees unmap everything they mapped (incl. the alignment slack) */
        vmem_trim(0);
        int before = map_count();
        for (int i = 0; i < 200; i++) {
            void *a = vmem_alloc((8u << 20) + 123, VMEM_FILL), *b = vmem_alloc(8u << 20, VMEM_LAZY);
            CHECK(a && b);
            vmem_free(a, (8u << 20) + 123, VMEM_FILL);
            vmem_free(b, 8u << 20, VMEM_LAZY);
        }
        CHECK(vmem_reserve_bytes() == 10u << 20); /* one 10 MiB region kept, reused 199 times */
        CHECK(vmem_trim(0) == 10u << 20);
        CHECK_EQ_INT(map_count(), before);
        CHECK(vmem_reserve_bytes() == 0);
    }
    test_reserve();
    vmem_free(NULL, 1 << 20, VMEM_FILL); /* a no-op, like free(NULL) */
    TEST_END("test_vmem");
}
