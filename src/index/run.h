/*
** run.h — an immutable, checkpointed key-value index file (DIR/index/run-N.idx).
**
** A run holds, for every key written in transactions 1..index_tx, all its
** versions, sorted by key, with an open-addressing hash table for point
** lookups. It is mapped read-only and used in place: opening a ledger does not
** load or rebuild it. Format (little-endian, sections 8-byte aligned):
**
**   header, 64 bytes
**     0 [8] "TALLYRUN"   8 u32 version = 1   12 u32 reserved = 0
**    16 u64 index_tx     24 u64 key_count    32 u64 version_count
**    40 u64 slot_count (power of two, >= 2 * key_count, >= 16)
**    48 u64 heap_bytes   56 u32 reserved = 0   60 u32 CRC-32C of bytes 0..59
**   keys      key_count x 24: u64 heap_off | u64 first_version | u32 nver | u16 key_len | u8 ns | u8 0
**   versions  version_count x 24: u64 tx | u64 pos | u32 entry_index | u32 flags
**   slots     slot_count x u64: 0 = empty, else (hash >> 32) << 32 | (key index + 1)
**   heap      key bytes, heap_bytes rounded up to 8
**   trailer   u32 CRC-32C of every byte before it | u32 0
**
** Invariants:
**   (1) keys are strictly increasing in (ns, key) order (ix_key_cmp);
**   (2) a key's versions are consecutive, increasing in tx, all <= index_tx;
**       the revision of its i-th version is i + 1;
**   (3) every key is found from its slot by linear probing from hash & (slot_count-1).
*/
#ifndef TALLY_RUN_H
#define TALLY_RUN_H
#include "index/ixtypes.h"
#include "index/memtable.h"

#define RUN_HDR_LEN 64u

typedef struct run run;

typedef struct run_key {
    uint8_t ns;
    uint16_t key_len;
    const uint8_t *key;
    const ix_version *vers;
    uint32_t nver;
} run_key;

/* Maps and checks the header and section sizes (not the CRC: run_check_crc).
** Returns 0 or a TALLY_E* code with tally_errmsg set. Caller frees with run_close. */
int run_open(run **out, const char *path);
void run_close(run *r);
uint64_t run_index_tx(const run *r);
uint64_t run_key_count(const run *r);
uint64_t run_version_count(const run *r);
/* Key index of (ns, key) or -1. */
int64_t run_find(const run *r, uint8_t ns, const void *key, size_t len, uint64_t hash);
/* First key index >= (ns, key) (key_count if none). */
uint64_t run_lower_bound(const run *r, uint8_t ns, const void *key, size_t len);
void run_get(const run *r, uint64_t i, run_key *out);
/* Hints the CPU to load the hash slot of hash (batch lookups call this first). */
void run_prefetch(const run *r, uint64_t hash);
/* 0 if the trailer CRC matches. */
int run_check_crc(const run *r);

/* Writes a new run = old (may be NULL) merged with the frozen, sorted
** memtable mt (may be NULL), covering transactions 1..index_tx, to path
** (via path.tmp, fsync, rename, directory fsync). With spare != NULL, the
** file dir/spare (a run no longer in use, see RUN_SPARE_NAME) becomes the
** temp file and is written over (its cached pages are reused rather than
** new ones allocated), then cut to the new run's length; if it cannot be
** renamed, a new temp file is made. Returns 0 or -errno. */
int run_write(const char *dir, const char *name, uint64_t index_tx, const run *old, const memtable *mt,
              const char *spare);

/* The name in the index directory of the previous run kept to be written
** over by the next checkpoint. Not a run of the ledger: open and close
** delete it (run_spare_drop). */
#define RUN_SPARE_NAME "spare.idx"
/* Keeps the run file dir/name, no longer in use, as the spare (deleted if
** it cannot be renamed). */
void run_spare_keep(const char *dir, const char *name);
/* Deletes dir/RUN_SPARE_NAME if there is one. */
void run_spare_drop(const char *dir);

#endif
