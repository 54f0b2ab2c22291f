/*
** vmem.h — zeroed memory straight from the kernel (anonymous mmap).
**
** For tables sized for the worst case and mostly empty (a ledger's 65536
** log segment slots, an append-only file's 65536 chunk pointers) and for
** large blocks that are recycled rather than freed. malloc is wrong for
** both: once glibc has freed a large mapped chunk it raises its mmap
** threshold, serves later large callocs from its heaps and must memset them,
** so every byte of an empty table becomes resident (measured: 2.5 MiB + 1 MiB
** per ledger handle, ~1 GiB for a tallyd reopening 1000 ledgers).
** From here a page costs memory only once it is written.
**
** vmem_alloc returns len zeroed bytes (page-aligned), or NULL; with populate
** they are faulted in now (for memory about to be filled: the faults are
** taken in one system call instead of one per page). Freed with vmem_free
** and the same len.
*/
#ifndef TALLY_VMEM_H
#define TALLY_VMEM_H
#include <stddef.h>

void *vmem_alloc(size_t len, int populate);
void vmem_free(void *p, size_t len);

#endif
