/*
** vmem.c — large zeroed memory straight from the kernel (see vmem.h).
*/
#include "os/vmem.h"
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_BYTES (2u << 20)
#define PAGE_BYTES 4096u

static size_t page_round(size_t len) { return (len + PAGE_BYTES - 1) & ~(size_t)(PAGE_BYTES - 1); }

/* Faults p[0, len) in for writing: one madvise, else a write per page. */
static void populate(uint8_t *p, size_t len) {
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0) return;
#endif
    for (size_t i = 0; i < len; i += PAGE_BYTES) ((volatile uint8_t *)p)[i] = 0;
}

void *vmem_alloc(size_t len, int mode) {
    if (len < VMEM_MMAP_MIN) return calloc(1, len ? len : 1);
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
    len = page_round(len);
    if (mode != VMEM_FILL) {
        void *p = mmap(NULL, len, prot, flags, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    /* Huge pages need 2 MiB-aligned ranges: map 2 MiB more, cut both ends. */
    size_t span = len >= HUGE_BYTES ? len + HUGE_BYTES : len;
    uint8_t *m = mmap(NULL, span, prot, flags, -1, 0);
    if (m == MAP_FAILED) return NULL;
    uint8_t *p = m;
    if (span != len) {
        p = (uint8_t *)(((uintptr_t)m + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
        if (p > m) munmap(m, (size_t)(p - m));
        if (m + span > p + len) munmap(p + len, (size_t)(m + span - (p + len)));
#ifdef MADV_HUGEPAGE
        (void)madvise(p, len & ~(size_t)(HUGE_BYTES - 1), MADV_HUGEPAGE); /* advice only */
#endif
    }
    populate(p, len);
    return p;
}

void vmem_free(void *p, size_t len) {
    if (!p) return;
    if (len < VMEM_MMAP_MIN) free(p);
    else munmap(p, page_round(len));
}
