/*
** afile.h — an append-only file of fixed-size items, readable through mmap.
**
** Used for derived data that is append-only and item-addressed: the Merkle
** node store (32-byte nodes) and the transaction index (16-byte items).
** Writes go through the io layer (pwrite at the end); reads go through
** read-only MAP_SHARED chunks of AFILE_CHUNK_BYTES, mapped lazily and kept
** until close, so a pointer returned by afile_item stays valid until close.
**
** Invariants:
**   (1) items [0, count) are written; only the single appender thread calls
**       afile_append/afile_truncate; readers only touch items < a count the
**       appender published to them (after the write returned);
**   (2) item_size divides AFILE_CHUNK_BYTES, so no item straddles chunks;
**   (3) at most AFILE_CHUNKS_MAX chunks (4 TiB).
*/
#ifndef TALLY_AFILE_H
#define TALLY_AFILE_H
#include <stddef.h>
#include <stdint.h>

#define AFILE_CHUNK_BYTES (64ull << 20)
#define AFILE_CHUNKS_MAX  65536u

typedef struct afile afile;

/* Opens or creates path for items of item_size bytes (a power of two <= 4096).
** A trailing partial item is cut off. Returns 0 or -errno; *out is freed
** with afile_close. */
int afile_open(afile **out, const char *path, size_t item_size);
void afile_close(afile *f);
uint64_t afile_count(const afile *f);
/* Appends n items. Returns 0 or -errno (the file is then in an unknown state
** past the old count: the caller must treat its handle as failed). */
int afile_append(afile *f, const void *items, uint64_t n);
/* Drops items from index `count` on. Returns 0 or -errno. */
int afile_truncate(afile *f, uint64_t count);
/* fdatasync. Returns 0 or -errno. */
int afile_sync(afile *f);
/* Pointer to item i (< count). NULL if the mapping fails. */
const void *afile_item(afile *f, uint64_t i);

#endif
