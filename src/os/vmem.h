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
** The reserve. A VMEM_FILL region of VMEM_RESERVE_MIN bytes or more is not
** unmapped when freed: it is kept (2 MiB-aligned, coalesced with adjacent
** kept regions) and handed out again, zeroed by memset, to a later VMEM_FILL
** allocation that fits. The guest kernel of a VM hands pages it has had free
** for a few seconds back to the host (free page reporting), and faulting
** them in again costs 4-17x a memset of pages the process kept (measured on
** the project's VM, per GiB: populate 2.2 s brand-new, 0.5-1.2 s after 5 s
** unmapped, 0.13 s right after unmapping; memset of kept pages 0.09 s). A
** checkpoint allocates and frees ~200 B of such memory per key it writes,
** and the next one needs it again. Bounds: at most VMEM_RESERVE_BYTES_MAX
** (and an eighth of physical memory), VMEM_RESERVE_REGIONS_MAX regions, and
** a region unused for VMEM_RESERVE_AGE_MS is unmapped at the next vmem call
** or vmem_trim.
**
** vmem_alloc returns len zeroed bytes or NULL; free with vmem_free and the
** same len and mode. Thread-safe.
*/
#ifndef TALLY_VMEM_H
#define TALLY_VMEM_H
#include <stddef.h>
#include <stdint.h>

#define VMEM_LAZY 0
#define VMEM_FILL 1
#define VMEM_MMAP_MIN (256u << 10)
#define VMEM_RESERVE_MIN (2u << 20)
#define VMEM_RESERVE_BYTES_MAX ((size_t)4 << 30)
#define VMEM_RESERVE_REGIONS_MAX 256
#define VMEM_RESERVE_AGE_MS 10000

void *vmem_alloc(size_t len, int mode);
void vmem_free(void *p, size_t len, int mode);
/* Unmaps reserve regions unused for at least older_than_ms (0: all of them).
** Returns the bytes unmapped. */
size_t vmem_trim(uint64_t older_than_ms);
/* Bytes held in the reserve now (for metrics and tests). */
size_t vmem_reserve_bytes(void);

#endif
