/*
** test_vmem.c — large zeroed memory (src/os/vmem.c).
**
** Both modes, at sizes on both sides of VMEM_MMAP_MIN, a page and the 2 MiB
** huge-page size: the memory is zeroed, every byte is writable (ASan and the
** kernel would catch a short mapping), a VMEM_FILL region of 2 MiB or more is
** 2 MiB-aligned (so the kernel can back it with huge pages), and VMEM_LAZY
** memory is not resident until written (the point of the mode: a
** ledger's mostly-empty tables). Freeing with the same length unmaps it all:
** 200 cycles of 8 MiB leave the process's mappings as they were.
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
            vmem_free(p, len);
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
            vmem_free(p, len);
        }
        p = vmem_alloc(len, VMEM_FILL); /* fill: all resident at once */
        CHECK(p != NULL);
        if (p) {
            CHECK_EQ_INT(resident_pages(p, len), len / 4096);
            vmem_free(p, len);
        }
    }
    {   /* frees unmap everything they mapped (incl. the alignment slack) */
        int before = map_count();
        for (int i = 0; i < 200; i++) {
            void *a = vmem_alloc((8u << 20) + 123, VMEM_FILL), *b = vmem_alloc(8u << 20, VMEM_LAZY);
            CHECK(a && b);
            vmem_free(a, (8u << 20) + 123);
            vmem_free(b, 8u << 20);
        }
        CHECK_EQ_INT(map_count(), before);
    }
    vmem_free(NULL, 1 << 20); /* a no-op, like free(NULL) */
    TEST_END("test_vmem");
}
