/*
** record.h — the byte format of one transaction record, and its hashes.
**
** This file and docs/FORMAT.md describe the same bytes; change both together.
** All integers are little-endian. A record is:
**
**   record header (32 bytes, RECORD_HDR_LEN)
**     0  u32 magic        0x31525854 ("TXR1")
**     4  u32 body_len     tx header bytes + entries bytes
**     8  u64 tx_id
**    16  u32 txh_len      length of the tx header (93 + tx meta_len)
**    20  u32 body_crc     CRC-32C of the entries bytes followed by the tx header
**                         bytes (entries first: the committer checksums them
**                         outside the commit lock)
**    24  u32 sync_lag     tx_id minus the last tx whose record was synced when
**                         this record was written (0xFFFFFFFF: unknown / too far)
**    28  u32 hdr_crc      CRC-32C of header bytes 0..27
**   tx header (txh_len bytes) = the ledger tree's leaf data for this tx
**     0  u8  kind = 0x01
**     1  u64 tx_id
**     9  u64 ts_ns        commit time, Unix ns UTC, non-decreasing
**    17  [32] prev_hash   hash of tx_id-1 (32 zero bytes for tx 1)
**    49  [32] entries_root RFC 6962 root over the entries' leaf data
**    81  u32 entry_count  1..TALLY_TX_ENTRIES_MAX
**    85  u32 entries_len  bytes of the entries section
**    89  u32 meta_len
**    93  meta
**   entries, entry_count times:
**     0  u8  ns           namespace
**     1  u8  flags        bit0 = tombstone; other bits 0 (bit1 reserved: redacted)
**     2  u16 key_len      1..1024
**     4  u32 meta_len     0..4096
**     8  u32 value_len    0..1 MiB (0 for a tombstone)
**    12  key | meta | value
**
** Hashes (all SHA-256, RFC 6962 domain separation):
**   entry leaf data = the entry's 12 header bytes | key | meta | SHA-256(value)
**   entry leaf hash = SHA-256(0x00 | entry leaf data)
**   entries_root    = RFC 6962 MTH over the entries in order
**   tx hash         = SHA-256(0x00 | tx header)  (its leaf hash in the ledger tree)
** Committing to SHA-256(value) rather than the value lets a future redaction
** drop a value while every proof stays valid.
**
** Invariants a well-formed record satisfies (record_check):
**   (1) hdr_crc and body_crc match;
**   (2) txh_len == 93 + meta_len, body_len == txh_len + entries_len;
**   (3) the entries section parses exactly: entry_count entries, no bytes left;
**   (4) every limit of tally.h holds and flags has no unknown bit.
*/
#ifndef TALLY_RECORD_H
#define TALLY_RECORD_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "tally.h"

#define RECORD_MAGIC        0x31525854u
#define RECORD_HDR_LEN      32u
#define TXH_FIXED_LEN       93u
#define ENTRY_HDR_LEN       12u
#define TXH_KIND_TX_V1      0x01u
#define ENTRY_FLAG_DELETED  0x01u
#define ENTRY_FLAGS_KNOWN   0x01u
#define SYNC_LAG_UNKNOWN    0xFFFFFFFFu

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* The decoded record header. */
typedef struct record_hdr {
    uint32_t body_len;
    uint64_t tx_id;
    uint32_t txh_len, body_crc, sync_lag;
} record_hdr;

/* The decoded tx header; pointers into the record bytes. */
typedef struct txh_view {
    uint64_t tx_id, ts_ns;
    const uint8_t *prev_hash, *entries_root;
    uint32_t entry_count, entries_len, meta_len;
    const uint8_t *meta;
} txh_view;

/* One decoded entry; pointers into the record bytes. */
typedef struct entry_view {
    uint8_t ns, flags;
    uint16_t key_len;
    uint32_t meta_len, value_len;
    const uint8_t *hdr; /* the entry's first byte */
    const uint8_t *key, *meta, *value;
} entry_view;

/* Parses and checks a 32-byte record header (magic and hdr_crc, lengths in
** bounds). Returns 0 or -1. */
int record_hdr_decode(const uint8_t *p, record_hdr *out);
/* Fills the 32-byte header given its fields (computes hdr_crc). */
void record_hdr_encode(uint8_t *p, const record_hdr *h);
/* Sets sync_lag in an encoded header (recomputes hdr_crc). */
void record_hdr_set_sync_lag(uint8_t *p, uint32_t lag);
/* The last tx known synced when the record with this header was written,
** or 0 if unknown. */
uint64_t record_synced_tx(const record_hdr *h);
/* Decodes a tx header of len bytes; checks kind and lengths. Returns 0 or -1. */
int txh_decode(const uint8_t *p, size_t len, txh_view *out);
/* Decodes the entry at *p with at most `avail` bytes left. Returns the
** entry's size in bytes, or 0 if malformed (a limit or flag broken). */
size_t entry_decode(const uint8_t *p, size_t avail, entry_view *out);
/* Checks a whole record in memory (invariants 1..4). On failure writes a
** reason to why (why_len bytes). Returns 0 or -1. */
int record_check(const uint8_t *rec, size_t avail, uint64_t expect_tx, char *why, size_t why_len);

/* Entry leaf hash from a decoded entry (hashes the value). */
void entry_leaf_hash(const entry_view *e, uint8_t out[32]);
/* Recomputes entries_root of a record's entries section. scratch holds
** entry_count hashes + (entry_count+1)/2 more. Returns 0 or -1 if malformed. */
int entries_root_compute(const uint8_t *entries, size_t len, uint32_t count,
                         uint8_t (*scratch)[32], uint8_t out[32]);

#endif
