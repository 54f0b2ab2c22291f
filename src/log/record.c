/*
** record.c — encode, decode and check transaction records (format in record.h).
*/
#include "record.h"
#include <stdio.h>
#include "merkle/rfc6962.h"
#include "util/crc32c.h"
#include "util/sha256.h"

int record_hdr_decode(const uint8_t *p, record_hdr *out) {
    if (rd32(p) != RECORD_MAGIC) return -1;
    if (tally_crc32c(0, p, 28) != rd32(p + 28)) return -1;
    out->body_len = rd32(p + 4);
    out->tx_id = rd64(p + 8);
    out->txh_len = rd32(p + 16);
    out->body_crc = rd32(p + 20);
    out->sync_lag = rd32(p + 24);
    if (out->txh_len < TXH_FIXED_LEN || out->txh_len > TXH_FIXED_LEN + TALLY_META_BYTES_MAX) return -1;
    if (out->body_len < out->txh_len || out->body_len > TALLY_TX_BYTES_MAX) return -1;
    if (out->tx_id == 0) return -1;
    return 0;
}

void record_hdr_encode(uint8_t *p, const record_hdr *h) {
    wr32(p, RECORD_MAGIC);
    wr32(p + 4, h->body_len);
    wr64(p + 8, h->tx_id);
    wr32(p + 16, h->txh_len);
    wr32(p + 20, h->body_crc);
    wr32(p + 24, h->sync_lag);
    wr32(p + 28, tally_crc32c(0, p, 28));
}

void record_hdr_set_sync_lag(uint8_t *p, uint32_t lag) {
    wr32(p + 24, lag);
    wr32(p + 28, tally_crc32c(0, p, 28));
}

uint64_t record_synced_tx(const record_hdr *h) {
    if (h->sync_lag == SYNC_LAG_UNKNOWN || h->sync_lag > h->tx_id) return 0;
    return h->tx_id - h->sync_lag;
}

int txh_decode(const uint8_t *p, size_t len, txh_view *out) {
    if (len < TXH_FIXED_LEN || p[0] != TXH_KIND_TX_V1) return -1;
    out->tx_id = rd64(p + 1);
    out->ts_ns = rd64(p + 9);
    out->prev_hash = p + 17;
    out->entries_root = p + 49;
    out->entry_count = rd32(p + 81);
    out->entries_len = rd32(p + 85);
    out->meta_len = rd32(p + 89);
    out->meta = p + TXH_FIXED_LEN;
    if (out->meta_len > TALLY_META_BYTES_MAX || TXH_FIXED_LEN + (size_t)out->meta_len != len) return -1;
    if (out->entry_count == 0 || out->entry_count > TALLY_TX_ENTRIES_MAX) return -1;
    return 0;
}

size_t entry_decode(const uint8_t *p, size_t avail, entry_view *out) {
    if (avail < ENTRY_HDR_LEN) return 0;
    out->hdr = p;
    out->ns = p[0];
    out->flags = p[1];
    out->key_len = rd16(p + 2);
    out->meta_len = rd32(p + 4);
    out->value_len = rd32(p + 8);
    if (out->flags & ~ENTRY_FLAGS_KNOWN) return 0;
    if (out->key_len == 0 || out->key_len > TALLY_KEY_BYTES_MAX) return 0;
    if (out->meta_len > TALLY_META_BYTES_MAX || out->value_len > TALLY_VALUE_BYTES_MAX) return 0;
    if ((out->flags & ENTRY_FLAG_DELETED) && out->value_len) return 0;
    size_t total = ENTRY_HDR_LEN + (size_t)out->key_len + out->meta_len + out->value_len;
    if (total > avail) return 0;
    out->key = p + ENTRY_HDR_LEN;
    out->meta = out->key + out->key_len;
    out->value = out->meta + out->meta_len;
    return total;
}

int record_check(const uint8_t *rec, size_t avail, uint64_t expect_tx, char *why, size_t why_len) {
    record_hdr h;
    txh_view t;
    if (avail < RECORD_HDR_LEN || record_hdr_decode(rec, &h) != 0) {
        snprintf(why, why_len, "bad record header (magic, checksum or lengths)");
        return -1;
    }
    if (expect_tx && h.tx_id != expect_tx) {
        snprintf(why, why_len, "record header names tx %llu, expected %llu",
                 (unsigned long long)h.tx_id, (unsigned long long)expect_tx);
        return -1;
    }
    if ((size_t)RECORD_HDR_LEN + h.body_len > avail) {
        snprintf(why, why_len, "record extends past the end of its segment");
        return -1;
    }
    const uint8_t *txh = rec + RECORD_HDR_LEN, *ent = txh + h.txh_len;
    size_t ent_len = h.body_len - h.txh_len;
    if (tally_crc32c(tally_crc32c(0, ent, ent_len), txh, h.txh_len) != h.body_crc) {
        snprintf(why, why_len, "record body checksum mismatch");
        return -1;
    }
    if (txh_decode(txh, h.txh_len, &t) != 0 || t.tx_id != h.tx_id || t.entries_len != ent_len) {
        snprintf(why, why_len, "malformed tx header");
        return -1;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < t.entry_count; i++) {
        entry_view e;
        size_t n = entry_decode(ent + off, ent_len - off, &e);
        if (!n) {
            snprintf(why, why_len, "malformed entry %u", i);
            return -1;
        }
        off += n;
    }
    if (off != ent_len) {
        snprintf(why, why_len, "%zu trailing bytes after the last entry", ent_len - off);
        return -1;
    }
    return 0;
}

void entry_leaf_hash(const entry_view *e, uint8_t out[32]) {
    uint8_t vh[32];
    static const uint8_t zero = 0x00;
    tally_sha256(e->value, e->value_len, vh);
    tally_sha256_ctx c;
    tally_sha256_init(&c);
    tally_sha256_update(&c, &zero, 1);
    tally_sha256_update(&c, e->hdr, ENTRY_HDR_LEN + (size_t)e->key_len + e->meta_len);
    tally_sha256_update(&c, vh, 32);
    tally_sha256_final(&c, out);
}

int entries_root_compute(const uint8_t *entries, size_t len, uint32_t count,
                         uint8_t (*scratch)[32], uint8_t out[32]) {
    size_t off = 0;
    for (uint32_t i = 0; i < count; i++) {
        entry_view e;
        size_t n = entry_decode(entries + off, len - off, &e);
        if (!n) return -1;
        entry_leaf_hash(&e, scratch[i]);
        off += n;
    }
    if (off != len) return -1;
    return rfc6962_root_of_leaves((const rfc6962_hash *)scratch, count,
                                  (rfc6962_hash *)(scratch + count), out);
}
