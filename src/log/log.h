/*
** log.h — the transaction log: numbered segment files of records.
**
** Directory layout:  DIR/LOCK (flock'd, holds the writer's pid), DIR/log/NNNNNNNN.seg
** A segment file is a 32-byte segment header then records (record.h) packed
** back to back. Segment header:
**     0  [8] magic "TALLYSEG"
**     8  u32 version = 1
**    12  u32 segment index (= file name number, 0, 1, 2, ...)
**    16  u64 first_tx      id of the first record this segment holds
**    24  u32 reserved = 0
**    28  u32 crc           CRC-32C of bytes 0..27
** A record never spans segments. A log position is (segment << 32) | offset.
**
** Invariants:
**   (1) records are only appended; a byte of a synced record never changes
**       (only the preallocated zeros after the last record are overwritten);
**   (2) a new segment is created only after the previous one is fully synced,
**       so only the last segment can end in a torn record;
**   (3) recovery truncates an invalid tail only when no valid record header
**       follows it; otherwise it refuses with TALLY_ECORRUPT naming the tx;
**   (4) every segment is mapped read-only at its full capacity once, so a
**       pointer into a record stays valid until log_close;
**   (5) only the last segment may end in preallocated zero bytes (log.c);
**       a segment is trimmed to its records before the next is created.
*/
#ifndef TALLY_LOG_H
#define TALLY_LOG_H
#include <stdint.h>
#include <sys/uio.h>
#include "log/record.h"

#define LOG_SEG_HDR_LEN   32u
#define LOG_SEGMENTS_MAX  65536u
#define LOG_POS(seg, off) (((uint64_t)(seg) << 32) | (uint64_t)(off))
#define LOG_SEG(pos)      ((uint32_t)((pos) >> 32))
#define LOG_OFF(pos)      ((uint32_t)(pos))

typedef struct tlog tlog;

/* Opens DIR/log (creating it and segment 0 unless read_only). Does not scan
** records; call log_recover. seg_bytes_max <= 4 GiB. Returns 0 or a TALLY_E*
** code with tally_errmsg set. */
int log_open(tlog **out, const char *dir, uint64_t seg_bytes_max, int read_only);
void log_close(tlog *log);

/* Position of the first record of the log. */
uint64_t log_start_pos(const tlog *log);

typedef int (*log_record_fn)(void *ctx, uint64_t pos, const uint8_t *rec, const record_hdr *h);
/* Evidence from derived data that tx (whose record should be at pos) had been
** synced: returns 1 if so. May be NULL. */
typedef int (*log_synced_fn)(void *ctx, uint64_t tx, uint64_t pos);
/* Scans and checks (record_check) every record from pos, whose tx id must be
** expect_tx, to the end, calling fn for each (fn returning non-zero stops
** with that code). A torn tail is truncated (unless read-only) and its size
** added to *torn_bytes. Leaves the append point after the last good record;
** *last_tx receives its id (expect_tx - 1 if none). Returns 0, TALLY_ECORRUPT
** (message names the tx), TALLY_EIO. */
int log_recover(tlog *log, uint64_t pos, uint64_t expect_tx, log_record_fn fn, log_synced_fn synced_fn,
                void *ctx, uint64_t *torn_bytes, uint64_t *last_tx);

/* Reserves room for a record of len bytes; returns its position. Moves to a
** new segment when the current one cannot hold it. Called in commit order
** under the commit lock. */
uint64_t log_reserve(tlog *log, uint32_t len);

/* Writes a record whose parts are iov (iovcnt parts) at pos (from
** log_reserve, in order). Creates the next segment when pos is in it (after
** syncing the current). Data is written, not yet synced. Returns 0 or a
** negative errno. */
int log_write(tlog *log, uint64_t pos, const struct iovec *iov, int iovcnt);
/* Writes buffered iovecs [all at consecutive positions starting at pos in one
** segment] in one call. Returns 0 or -errno. */
int log_writev_at(tlog *log, uint64_t pos, const struct iovec *iov, int iovcnt);
/* fdatasync of the segment being written. Returns 0 or -errno. */
int log_sync(tlog *log);
/* Preallocation (log.c). log_group_end ends a group (the records written
** since the previous call) and returns 1 if the writer should now call
** log_prealloc: the group was small and fewer than a quarter of the next
** extension's zero bytes lie past the records. log_prealloc writes the next
** extension of zeros there (64 KiB, doubling up to 1 MiB; never past
** segment_bytes_max; best effort: a failure only turns preallocation off). Writer thread only, like
** log_write. */
int log_group_end(tlog *log);
void log_prealloc(tlog *log);
/* Cuts the preallocated zeros off the last segment and syncs it (a clean
** close leaves segments that end at their last record). Returns 0 or -errno. */
int log_trim(tlog *log);
/* Pointer to the byte at pos (a written position). */
const uint8_t *log_ptr(const tlog *log, uint64_t pos);
/* Asks the kernel to map every written page of segment s now (one call
** instead of a page fault per 4 KiB on a full scan). Best effort. */
void log_prefault(const tlog *log, uint32_t s);
/* Number of segments. */
uint32_t log_segment_count(const tlog *log);
/* Size in bytes of segment s: header and records (after log_recover; the
** file may be longer by preallocated zeros). */
uint64_t log_segment_size(const tlog *log, uint32_t s);

/* The directory lock (DIR/LOCK). Returns 0 or TALLY_ELOCKED ("in use by pid
** N") / TALLY_EIO. *fd_out is released by closing it. */
int dir_lock(const char *dir, int *fd_out);

#endif
