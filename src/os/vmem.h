/*
** vmem.h — large zeroed memory straight from the kernel (anonymous mmap).
**
** Two uses, two modes:
**   VMEM_LAZY  tables sized for the worst case and mostly empty (a ledger's
**              65536 log segment slots, an append-only file's 65536 chunk
**              pointers): a page costs memory only once it is written.
**              malloc is wrong here: once glibc has freed a large mapped
**              chunk it raises its mmap threshold, serves later large callocs
**              from its heaps and memsets them, so every byte of an empty
**              table became resident (measured: 2.5 MiB + 1 MiB per ledger
**              handle, ~1 GB for a tallyd reopening 1000 ledgers).
**   VMEM_FILL  memory about to be written whole (memtable blocks and slot
**              arrays, a checkpoint's sort arrays and run slot table): the
**              pages are faulted in now, in one call, as 2 MiB transparent
**              huge pages where the kernel allows them (madvise mode).
**              Measured on the project's VM, per GiB of fresh memory: a
**              fault per 4 KiB page 3.6 s of CPU, MAP_POPULATE 1.2 s, huge
**              pages populated by madvise 0.14-0.18 s.
** Below VMEM_MMAP_MIN bytes both are plain calloc (a mapping per small
** table would cost more than it saves).
**
** vmem_alloc returns len zeroed bytes or NULL; free with vmem_free and the
** same len.
*/
#ifndef TALLY_VMEM_H
#define TALLY_VMEM_H
#include <stddef.h>

#define VMEM_LAZY 0
#define VMEM_FILL 1
#define VMEM_MMAP_MIN (256u << 10)

void *vmem_alloc(size_t len, int mode);
void vmem_free(void *p, size_t len);

#endif
