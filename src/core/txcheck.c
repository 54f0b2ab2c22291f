/*
** txcheck.c — every value a read returns comes from a checked transaction.
**
** Open checks only the records after the last checkpoint (that is what makes
** it fast), so the first time a read touches transaction N, its record is
** checked in full: the derived tx index item (position and time) against the
** record, checksums and framing, the entries root recomputed from the
** entries, and the tx hash compared with the ledger tree's stored leaf N-1
** (which the ledger root commits to). The result is cached in a lock-free
** bitmap, so later reads of N cost one atomic load. A failure is returned as
** TALLY_ECORRUPT naming the transaction; nothing is cached for it.
** Limits: the bitmap covers transactions below 2^32 (TXCHECK_CHUNKS chunks of
** 2^20 bits, allocated on first use); later ones are checked on every read.
*/
#include <stdlib.h>
#include <string.h>
#include "core/db_int.h"
#include "merkle/rfc6962.h"
#include "util/err.h"

#define CHUNK_BITS (1u << 20)

static int bit_get(tally_db *db, uint64_t tx, _Atomic(uint64_t) **word) {
    uint64_t i = tx - 1, c = i / CHUNK_BITS;
    *word = NULL;
    if (c >= TXCHECK_CHUNKS) return 0;
    _Atomic(uint64_t) *chunk = atomic_load_explicit(&db->checked[c], memory_order_acquire);
    if (!chunk) {
        _Atomic(uint64_t) *fresh = calloc(CHUNK_BITS / 64, sizeof *fresh), *expect = NULL;
        if (!fresh) return 0;
        if (!atomic_compare_exchange_strong(&db->checked[c], &expect, fresh)) {
            free(fresh);
            chunk = expect;
        } else {
            chunk = fresh;
        }
    }
    *word = &chunk[(i % CHUNK_BITS) / 64];
    return (atomic_load_explicit(*word, memory_order_relaxed) >> (i % 64)) & 1;
}

int db_tx_check(tally_db *db, uint64_t tx) {
    _Atomic(uint64_t) *word;
    if (bit_get(db, tx, &word)) return 0;
    uint64_t pos, ts;
    record_hdr h;
    int rc = db_tx_locate(db, tx, &pos, &h);
    if (rc) return rc;
    char why[160];
    const uint8_t *rec = log_ptr(db->log, pos);
    uint64_t avail = log_segment_size(db->log, LOG_SEG(pos)) - LOG_OFF(pos);
    if (record_check(rec, avail, tx, why, sizeof why) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: %s (corruption or tampering; run `tally verify`)",
                            (unsigned long long)tx, why);
    txh_view t;
    txh_decode(rec + RECORD_HDR_LEN, h.txh_len, &t);
    db_txidx_get(db, tx, &pos, &ts);
    if (ts != t.ts_ns)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: the tx index (derived) holds another commit time; run "
                            "`tally verify`, then `tally reindex`", (unsigned long long)tx);
    uint8_t (*scratch)[32] = malloc(((size_t)t.entry_count + t.entry_count / 2 + 1) * 32);
    if (!scratch) return tally_seterr(TALLY_ENOMEM, "out of memory");
    uint8_t root[32], leaf[32];
    rc = entries_root_compute(rec + RECORD_HDR_LEN + h.txh_len, t.entries_len, t.entry_count, scratch, root);
    free(scratch);
    if (rc != 0 || memcmp(root, t.entries_root, 32) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: entries do not match the entries root (corruption or "
                            "tampering; run `tally verify`)", (unsigned long long)tx);
    rfc6962_leaf_hash(rec + RECORD_HDR_LEN, h.txh_len, leaf);
    if (memcmp(leaf, mstore_leaf(db->ms, tx - 1), 32) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: hash differs from its leaf in the ledger tree (corruption "
                            "or tampering; run `tally verify`)", (unsigned long long)tx);
    if (word) atomic_fetch_or_explicit(word, 1ull << ((tx - 1) % 64), memory_order_relaxed);
    return 0;
}

void db_tx_check_free(tally_db *db) {
    for (uint32_t c = 0; c < TXCHECK_CHUNKS; c++) free(atomic_load(&db->checked[c]));
}
