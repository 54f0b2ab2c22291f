/*
** read.c — reads of the key-value model, transactions, state and proofs.
**
** Readers take ixlock for reading and see transactions <= visible_tx only
** (db_int.h invariant 2). Returned pointers point into the mapped log.
*/
#include <stdlib.h>
#include <string.h>
#include "core/db_int.h"
#include "merkle/rfc6962.h"
#include "util/err.h"

static int key_ok(const void *key, size_t len) {
    if (!key || !len) return tally_seterr(TALLY_EINVAL, "empty key");
    if (len > TALLY_KEY_BYTES_MAX)
        return tally_seterr(TALLY_ETOOBIG, "key of %zu bytes (limit %u)", len, TALLY_KEY_BYTES_MAX);
    return 0;
}

/* Fills *out from an index version of (ns, key). The index is derived data,
** so its pointer is checked before use: the transaction was checked once
** (txcheck.c: record, entries root, tree leaf, tx index item), the run file
** passed its CRC at open, and here the entry must lie inside the log, decode,
** and carry the key and flags asked for. */
static int fill_version(tally_db *db, const ix_version *v, uint64_t rev, uint8_t ns, const void *key,
                        size_t key_len, tally_version *out) {
    int rc = v->tx ? db_tx_check(db, v->tx) : tally_seterr(TALLY_ECORRUPT, "the index names tx 0");
    if (rc) return rc;
    uint64_t pos, ts = 0;
    db_txidx_get(db, v->tx, &pos, &ts);
    uint32_t seg = LOG_SEG(v->pos);
    uint64_t off = LOG_OFF(v->pos), seg_size = seg < log_segment_count(db->log) ? log_segment_size(db->log, seg) : 0;
    entry_view e;
    if (v->pos <= pos || off + ENTRY_HDR_LEN > seg_size || !entry_decode(log_ptr(db->log, v->pos), seg_size - off, &e) ||
        e.ns != ns || e.key_len != key_len || memcmp(e.key, key, key_len) != 0 || e.flags != v->flags)
        return tally_seterr(TALLY_ECORRUPT, "the key-value index (derived) points at the wrong entry of tx %llu; "
                            "run `tally verify`, then `tally reindex`", (unsigned long long)v->tx);
    out->tx = v->tx;
    out->rev = rev;
    out->ts_ns = ts;
    out->entry_index = v->entry_index;
    out->deleted = v->flags & ENTRY_FLAG_DELETED;
    out->value = e.value;
    out->value_len = e.value_len;
    out->meta = e.meta;
    out->meta_len = e.meta_len;
    return 0;
}

int tally_get(tally_db *db, tally_version *out, uint8_t ns, const void *key, size_t key_len, uint64_t as_of) {
    int rc = key_ok(key, key_len);
    if (rc) return rc;
    uint64_t vis = db_visible(db);
    if (as_of > vis)
        return tally_seterr(TALLY_ERANGE, "tx %llu is beyond the ledger (size %llu)", (unsigned long long)as_of,
                            (unsigned long long)vis);
    if (!as_of) as_of = vis;
    ix_version v;
    uint64_t rev;
    uint64_t h = ix_hash(ns, key, key_len);
    pthread_rwlock_rdlock(&db->ixlock);
    rc = ix_lookup_asof(db, ns, key, key_len, h, as_of, &v, &rev);
    if (rc == 0 && (v.flags & ENTRY_FLAG_DELETED)) rc = TALLY_ENOTFOUND;
    if (rc == 0) rc = fill_version(db, &v, rev, ns, key, key_len, out);
    else rc = tally_seterr(rc, "key not found");
    pthread_rwlock_unlock(&db->ixlock);
    return rc;
}

int tally_get_rev(tally_db *db, tally_version *out, uint8_t ns, const void *key, size_t key_len, uint64_t rev) {
    int rc = key_ok(key, key_len);
    if (rc) return rc;
    uint64_t vis = db_visible(db);
    ix_version v;
    pthread_rwlock_rdlock(&db->ixlock);
    rc = ix_lookup_rev(db, ns, key, key_len, ix_hash(ns, key, key_len), rev, &v);
    if (rc == 0 && v.tx > vis) rc = TALLY_ENOTFOUND;
    if (rc == 0) rc = fill_version(db, &v, rev, ns, key, key_len, out);
    else rc = tally_seterr(rc, "revision %llu not found", (unsigned long long)rev);
    pthread_rwlock_unlock(&db->ixlock);
    return rc;
}

int tally_tx_at_time(tally_db *db, uint64_t *out_tx, uint64_t ts_ns) {
    uint64_t lo = 0, hi = db_visible(db); /* answer in [0, hi] */
    while (lo < hi) {
        /* times come from the records themselves (the tx index is derived) */
        uint64_t mid = lo + (hi - lo + 1) / 2, pos;
        record_hdr h;
        int rc = db_tx_locate(db, mid, &pos, &h);
        if (rc) return rc;
        uint64_t ts = rd64(log_ptr(db->log, pos) + RECORD_HDR_LEN + 9);
        if (ts <= ts_ns) lo = mid;
        else hi = mid - 1;
    }
    *out_tx = lo;
    return 0;
}

/* Number of revisions of a key visible now. Caller holds ixlock. */
static uint64_t visible_revs(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t h, uint64_t vis) {
    ix_version v;
    uint64_t rev;
    return ix_lookup_asof(db, ns, key, len, h, vis, &v, &rev) == 0 ? rev : 0;
}

int tally_history(tally_db *db, uint64_t *out_total, uint8_t ns, const void *key, size_t key_len,
                  uint64_t start_rev, size_t limit, tally_version_fn fn, void *ctx) {
    int rc = key_ok(key, key_len);
    if (rc) return rc;
    if (!fn) return tally_seterr(TALLY_EINVAL, "NULL callback");
    if (!start_rev) start_rev = 1;
    uint64_t vis = db_visible(db), h = ix_hash(ns, key, key_len);
    pthread_rwlock_rdlock(&db->ixlock);
    uint64_t total = visible_revs(db, ns, key, key_len, h, vis);
    size_t sent = 0;
    for (uint64_t r = start_rev; r <= total && (!limit || sent < limit); r++, sent++) {
        ix_version v;
        tally_version tv;
        if (ix_lookup_rev(db, ns, key, key_len, h, r, &v) != 0) break;
        if ((rc = fill_version(db, &v, r, ns, key, key_len, &tv)) != 0) break;
        if (fn(ctx, key, key_len, &tv)) break;
    }
    pthread_rwlock_unlock(&db->ixlock);
    if (out_total) *out_total = total;
    return rc;
}

/* ---- scan: merge of the three layers in key order ---- */

typedef struct cursor {
    mt_key **nodes;   /* memtable layer */
    int64_t n, i;
    const run *r;     /* run layer */
    uint64_t ri, rend;
} cursor;

static int cur_peek(const cursor *c, uint8_t *ns, const uint8_t **key, size_t *len) {
    if (c->r) {
        if (c->ri >= c->rend) return 0;
        run_key k;
        run_get(c->r, c->ri, &k);
        *ns = k.ns, *key = k.key, *len = k.key_len;
        return 1;
    }
    if (c->i >= c->n) return 0;
    *ns = c->nodes[c->i]->ns, *key = c->nodes[c->i]->key, *len = c->nodes[c->i]->key_len;
    return 1;
}
static void cur_next(cursor *c) {
    if (c->r) c->ri++;
    else c->i++;
}

static int prefix_match(uint8_t ns, const uint8_t *k, size_t kl, uint8_t pns, const void *p, size_t pl) {
    return ns == pns && kl >= pl && (pl == 0 || memcmp(k, p, pl) == 0);
}

int tally_scan(tally_db *db, uint8_t ns, const void *prefix, size_t prefix_len, const void *after,
               size_t after_len, uint64_t as_of, size_t limit, tally_version_fn fn, void *ctx) {
    if (!fn || (prefix_len && !prefix) || (after_len && !after))
        return tally_seterr(TALLY_EINVAL, "NULL callback, prefix or start key");
    if (prefix_len > TALLY_KEY_BYTES_MAX) return tally_seterr(TALLY_ETOOBIG, "prefix too long");
    uint64_t vis = db_visible(db);
    if (as_of > vis) return tally_seterr(TALLY_ERANGE, "tx %llu is beyond the ledger", (unsigned long long)as_of);
    if (!as_of) as_of = vis;
    cursor cur[3];
    memset(cur, 0, sizeof cur);
    int rc = 0;
    pthread_rwlock_rdlock(&db->ixlock);
    memtable *mts[2] = {db->active, db->frozen};
    for (int l = 0; l < 2 && rc == 0; l++)
        if (mts[l] && (cur[l].n = mt_collect_prefix(mts[l], ns, prefix, prefix_len, &cur[l].nodes)) < 0)
            rc = tally_seterr(TALLY_ENOMEM, "out of memory in scan");
    if (db->run) {
        cur[2].r = db->run;
        cur[2].ri = run_lower_bound(db->run, ns, prefix_len ? prefix : "", prefix_len);
        cur[2].rend = run_key_count(db->run);
    }
    size_t sent = 0;
    while (rc == 0 && (!limit || sent < limit)) {
        /* smallest key among the cursors */
        uint8_t bns = 0;
        const uint8_t *bk = NULL;
        size_t bl = 0;
        for (int l = 0; l < 3; l++) {
            uint8_t cns;
            const uint8_t *ck;
            size_t cl;
            if (!cur_peek(&cur[l], &cns, &ck, &cl)) continue;
            if (!bk || ix_key_cmp(cns, ck, cl, bns, bk, bl) < 0) bns = cns, bk = ck, bl = cl;
        }
        if (!bk || !prefix_match(bns, bk, bl, ns, prefix, prefix_len)) break;
        /* advance every cursor past this key (key bytes stay valid: nodes and
        ** the run mapping do not move while ixlock is held) */
        for (int l = 0; l < 3; l++) {
            uint8_t cns;
            const uint8_t *ck;
            size_t cl;
            if (cur_peek(&cur[l], &cns, &ck, &cl) && ix_key_cmp(cns, ck, cl, bns, bk, bl) == 0) cur_next(&cur[l]);
        }
        const uint8_t *key = bk;
        size_t klen = bl;
        if (after && ix_key_cmp(bns, key, klen, ns, after, after_len) <= 0) continue;
        ix_version v;
        uint64_t rev;
        if (ix_lookup_asof(db, ns, key, klen, ix_hash(ns, key, klen), as_of, &v, &rev) != 0 ||
            (v.flags & ENTRY_FLAG_DELETED))
            continue;
        tally_version tv;
        if ((rc = fill_version(db, &v, rev, ns, key, klen, &tv)) != 0) break;
        sent++;
        if (fn(ctx, key, klen, &tv)) break;
    }
    pthread_rwlock_unlock(&db->ixlock);
    free(cur[0].nodes);
    free(cur[1].nodes);
    return rc;
}

/* ---- transactions ---- */

static int tx_record(tally_db *db, uint64_t tx, const uint8_t **rec, record_hdr *h, txh_view *t) {
    uint64_t vis = db_visible(db), pos;
    if (tx == 0 || tx > vis)
        return tally_seterr(TALLY_ERANGE, "tx %llu does not exist (ledger size %llu)", (unsigned long long)tx,
                            (unsigned long long)vis);
    int rc = db_tx_check(db, tx);
    if (rc == 0) rc = db_txidx_get(db, tx, &pos, NULL);
    if (rc) return rc;
    *rec = log_ptr(db->log, pos);
    if (record_hdr_decode(*rec, h) != 0 || h->tx_id != tx ||
        txh_decode(*rec + RECORD_HDR_LEN, h->txh_len, t) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: record damaged; run `tally verify`", (unsigned long long)tx);
    return 0;
}

int tally_tx_get(tally_db *db, tally_tx_info *out, uint64_t tx) {
    const uint8_t *rec;
    record_hdr h;
    txh_view t;
    int rc = tx_record(db, tx, &rec, &h, &t);
    if (rc) return rc;
    out->tx = tx;
    out->ts_ns = t.ts_ns;
    out->entry_count = t.entry_count;
    out->entries_len = t.entries_len;
    memcpy(out->hash, mstore_leaf(db->ms, tx - 1), 32);
    memcpy(out->prev_hash, t.prev_hash, 32);
    memcpy(out->entries_root, t.entries_root, 32);
    out->meta = t.meta;
    out->meta_len = t.meta_len;
    out->header = rec + RECORD_HDR_LEN;
    out->header_len = h.txh_len;
    return 0;
}

/* Decodes entry i of a record; *ent_out receives the entries section. */
static int tx_entry_at(const uint8_t *rec, const record_hdr *h, const txh_view *t, uint32_t i, entry_view *e) {
    const uint8_t *ent = rec + RECORD_HDR_LEN + h->txh_len;
    size_t len = t->entries_len, off = 0;
    for (uint32_t k = 0; k <= i; k++) {
        size_t n = entry_decode(ent + off, len - off, e);
        if (!n) return -1;
        off += n;
    }
    return 0;
}

/* The public view of a decoded entry, with its leaf hash. */
static void entry_view_out(const entry_view *e, tally_entry_view *out) {
    out->ns = e->ns;
    out->deleted = e->flags & ENTRY_FLAG_DELETED;
    out->key = e->key, out->key_len = e->key_len;
    out->value = e->value, out->value_len = e->value_len;
    out->meta = e->meta, out->meta_len = e->meta_len;
    memcpy(out->header, e->hdr, ENTRY_HDR_LEN);
    entry_leaf_hash(e, out->leaf_hash);
}

int tally_tx_entry(tally_db *db, tally_entry_view *out, uint64_t tx, uint32_t i) {
    const uint8_t *rec;
    record_hdr h;
    txh_view t;
    entry_view e;
    int rc = tx_record(db, tx, &rec, &h, &t);
    if (rc) return rc;
    if (i >= t.entry_count)
        return tally_seterr(TALLY_ERANGE, "tx %llu has %u entries", (unsigned long long)tx, t.entry_count);
    if (tx_entry_at(rec, &h, &t, i, &e) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: entry %u damaged", (unsigned long long)tx, i);
    entry_view_out(&e, out);
    return 0;
}

int tally_tx_entries(tally_db *db, uint64_t tx, tally_entry_fn fn, void *arg) {
    const uint8_t *rec;
    record_hdr h;
    txh_view t;
    int rc = tx_record(db, tx, &rec, &h, &t);
    if (rc) return rc;
    const uint8_t *ent = rec + RECORD_HDR_LEN + h.txh_len;
    size_t len = t.entries_len, off = 0;
    for (uint32_t i = 0; i < t.entry_count; i++) {
        entry_view e;
        size_t n = entry_decode(ent + off, len - off, &e);
        if (!n) return tally_seterr(TALLY_ECORRUPT, "tx %llu: entry %u damaged", (unsigned long long)tx, i);
        off += n;
        tally_entry_view v;
        entry_view_out(&e, &v);
        if ((rc = fn(arg, i, &v)) != 0) return rc;
    }
    return 0;
}

int tally_state(tally_db *db, uint64_t *out_size, uint8_t root[TALLY_HASH_LEN]) {
    uint64_t vis = db_visible(db);
    if (rfc6962_root(mstore_node, db->ms, vis, root) != 0)
        return tally_seterr(TALLY_EIO, "cannot read the Merkle store");
    *out_size = vis;
    return 0;
}

int tally_root_at(tally_db *db, uint8_t root[TALLY_HASH_LEN], uint64_t size) {
    if (size > db_visible(db)) return tally_seterr(TALLY_ERANGE, "size %llu beyond the ledger", (unsigned long long)size);
    return rfc6962_root(mstore_node, db->ms, size, root) ? tally_seterr(TALLY_EIO, "cannot read the Merkle store") : 0;
}

int tally_proof_tx(tally_db *db, tally_proof *out, uint64_t tx, uint64_t size) {
    uint64_t vis = db_visible(db);
    if (!size) size = vis;
    if (size > vis || tx == 0 || tx > size)
        return tally_seterr(TALLY_ERANGE, "no tx %llu in a tree of size %llu (ledger size %llu)",
                            (unsigned long long)tx, (unsigned long long)size, (unsigned long long)vis);
    out->index = tx - 1;
    out->size = size;
    if (rfc6962_inclusion_proof(mstore_node, db->ms, tx - 1, size, (rfc6962_hash *)out->path, &out->len))
        return tally_seterr(TALLY_EIO, "cannot read the Merkle store");
    return 0;
}

int tally_proof_consistency(tally_db *db, tally_proof *out, uint64_t old_size, uint64_t size) {
    uint64_t vis = db_visible(db);
    if (!old_size || old_size > size || size > vis)
        return tally_seterr(TALLY_ERANGE, "need 0 < old size (%llu) <= size (%llu) <= ledger size (%llu)",
                            (unsigned long long)old_size, (unsigned long long)size, (unsigned long long)vis);
    out->index = old_size;
    out->size = size;
    if (rfc6962_consistency_proof(mstore_node, db->ms, old_size, size, (rfc6962_hash *)out->path, &out->len))
        return tally_seterr(TALLY_EIO, "cannot read the Merkle store");
    return 0;
}

/* The entry tree of one transaction with every complete subtree's hash:
** level l holds n >> l nodes, from off[l]. An entry proof then reads
** O(log n) of them instead of hashing the whole transaction (a 65,536-entry
** transaction is ~30 ms of SHA-256, a 64 MiB one more: too much per key of a
** batched read). */
typedef struct etree {
    uint64_t tx;
    uint32_t n;
    unsigned levels;
    uint64_t off[33];
    rfc6962_hash *h;
} etree;

static int etree_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]) {
    const etree *t = ctx;
    if (level >= t->levels || index >= ((uint64_t)t->n >> level)) return -1;
    memcpy(out, t->h[t->off[level] + index], 32);
    return 0;
}

static void etree_free(etree *t) {
    if (t) free(t->h);
    free(t);
}

void etree_cache_free(tally_db *db) {
    for (unsigned s = 0; s < ETREE_SLOTS; s++) {
        etree_free(db->etree[s]);
        db->etree[s] = NULL;
    }
}

/* Leaves of the entries of a tx record into leaves[0..t->entry_count). */
static void entry_leaves(const uint8_t *rec, const record_hdr *h, const txh_view *t, rfc6962_hash *leaves) {
    const uint8_t *ent = rec + RECORD_HDR_LEN + h->txh_len;
    size_t off = 0;
    for (uint32_t k = 0; k < t->entry_count; k++) {
        entry_view e;
        off += entry_decode(ent + off, t->entries_len - off, &e);
        entry_leaf_hash(&e, leaves[k]);
    }
}

static etree *etree_build(uint64_t tx, const uint8_t *rec, const record_hdr *h, const txh_view *t) {
    uint32_t n = t->entry_count;
    etree *e = calloc(1, sizeof *e);
    if (!e || !(e->h = malloc(2 * (size_t)n * sizeof *e->h))) {
        etree_free(e);
        return NULL;
    }
    e->tx = tx;
    e->n = n;
    entry_leaves(rec, h, t, e->h);
    uint64_t at = n;
    for (unsigned l = 1; (n >> l) > 0; l++) {
        e->off[l] = at;
        for (uint64_t j = 0; j < (n >> l); j++)
            rfc6962_node_hash(e->h[e->off[l - 1] + 2 * j], e->h[e->off[l - 1] + 2 * j + 1], e->h[at + j]);
        at += n >> l;
        e->levels = l + 1;
    }
    if (e->levels == 0) e->levels = 1;
    return e;
}

/* The proof of entry i from the cached tree of tx; 1 if not cached. Caller
** holds etree_mu. */
static int etree_proof(tally_db *db, uint64_t tx, uint32_t i, tally_proof *out) {
    for (unsigned s = 0; s < ETREE_SLOTS; s++) {
        etree *t = db->etree[s];
        if (!t || t->tx != tx) continue;
        return rfc6962_inclusion_proof(etree_node, t, i, t->n, (rfc6962_hash *)out->path, &out->len) ? -1 : 0;
    }
    return 1;
}

int tally_proof_entry(tally_db *db, tally_proof *out, uint64_t tx, uint32_t i) {
    const uint8_t *rec;
    record_hdr h;
    txh_view t;
    int rc = tx_record(db, tx, &rec, &h, &t);
    if (rc) return rc;
    if (i >= t.entry_count)
        return tally_seterr(TALLY_ERANGE, "tx %llu has %u entries", (unsigned long long)tx, t.entry_count);
    out->index = i;
    out->size = t.entry_count;
    if (t.entry_count >= ETREE_ENTRIES_MIN || t.entries_len >= ETREE_BYTES_MIN) {
        pthread_mutex_lock(&db->etree_mu);
        rc = etree_proof(db, tx, i, out);
        pthread_mutex_unlock(&db->etree_mu);
        if (rc <= 0) return rc ? tally_seterr(TALLY_EIO, "entry proof failed") : 0;
        etree *e = etree_build(tx, rec, &h, &t); /* outside the lock: it hashes the whole tx */
        if (!e) return tally_seterr(TALLY_ENOMEM, "out of memory");
        pthread_mutex_lock(&db->etree_mu);
        unsigned s = db->etree_next++ % ETREE_SLOTS;
        etree_free(db->etree[s]);
        db->etree[s] = e;
        rc = etree_proof(db, tx, i, out);
        pthread_mutex_unlock(&db->etree_mu);
        return rc ? tally_seterr(TALLY_EIO, "entry proof failed") : 0;
    }
    rfc6962_hash *leaves = malloc((size_t)t.entry_count * sizeof *leaves);
    if (!leaves) return tally_seterr(TALLY_ENOMEM, "out of memory");
    entry_leaves(rec, &h, &t, leaves);
    rfc6962_mem mem = {(const rfc6962_hash *)leaves, t.entry_count};
    rc = rfc6962_inclusion_proof(rfc6962_mem_node, &mem, i, t.entry_count, (rfc6962_hash *)out->path, &out->len);
    free(leaves);
    return rc ? tally_seterr(TALLY_EIO, "entry proof failed") : 0;
}

int tally_verify_inclusion(const uint8_t leaf_hash[TALLY_HASH_LEN], const tally_proof *p,
                           const uint8_t root[TALLY_HASH_LEN]) {
    if (!p || p->len > TALLY_PROOF_MAX) return TALLY_EBADPROOF;
    return rfc6962_verify_inclusion(leaf_hash, p->index, p->size, (const rfc6962_hash *)p->path, p->len, root)
               ? TALLY_EBADPROOF : 0;
}

int tally_verify_consistency(const tally_proof *p, const uint8_t old_root[TALLY_HASH_LEN],
                             const uint8_t root[TALLY_HASH_LEN]) {
    if (!p || p->len > TALLY_PROOF_MAX) return TALLY_EBADPROOF;
    return rfc6962_verify_consistency(p->index, p->size, old_root, root, (const rfc6962_hash *)p->path, p->len)
               ? TALLY_EBADPROOF : 0;
}
