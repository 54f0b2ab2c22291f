/*
** vmem.c — zeroed memory straight from the kernel (see vmem.h).
*/
#include "os/vmem.h"
#include <sys/mman.h>

void *vmem_alloc(size_t len, int populate) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void vmem_free(void *p, size_t len) {
    if (p) munmap(p, len);
}
