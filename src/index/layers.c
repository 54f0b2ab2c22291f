/*
** layers.c — lookups across the index layers: active memtable, frozen
** memtable, run (newest to oldest). See src/core/db_int.h for the invariants.
** Callers hold db->ixlock (read for lookups, write for ix_node/ix_freeze).
*/
#include "core/db_int.h"
#include <stdlib.h>

/* Last index i in vers[0..n) with vers[i].tx <= as_of, or -1. */
static int64_t last_at_or_before(const ix_version *vers, uint32_t n, uint64_t as_of) {
    if (!n || vers[0].tx > as_of) return -1;
    uint32_t lo = 0, hi = n - 1; /* vers[lo].tx <= as_of */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (vers[mid].tx <= as_of) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

uint64_t ix_older_count(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash) {
    if (db->frozen) {
        mt_key *k = mt_find(db->frozen, ns, key, len, hash);
        if (k) return k->base_rev + k->nver;
    }
    if (db->run) {
        int64_t i = run_find(db->run, ns, key, len, hash);
        if (i >= 0) {
            run_key rk;
            run_get(db->run, (uint64_t)i, &rk);
            return rk.nver;
        }
    }
    return 0;
}

mt_key *ix_node(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash) {
    mt_key *k = mt_find(db->active, ns, key, len, hash);
    if (k) return k;
    return mt_insert(db->active, ns, key, len, hash, ix_older_count(db, ns, key, len, hash));
}

void ix_latest_any(tally_db *db, mt_key *node, uint8_t ns, const void *key, size_t len, uint64_t hash,
                   uint64_t *rev, int *deleted) {
    *rev = 0;
    *deleted = 0;
    if (node && node->nver) {
        *rev = node->base_rev + node->nver;
        *deleted = node->vers[node->nver - 1].flags & 1;
        return;
    }
    ix_version v;
    uint64_t r = node ? node->base_rev : ix_older_count(db, ns, key, len, hash);
    if (r && ix_lookup_rev(db, ns, key, len, hash, r, &v) == 0) {
        *rev = r;
        *deleted = v.flags & 1;
    }
}

int ix_lookup_asof(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t as_of,
                   ix_version *out, uint64_t *rev) {
    memtable *layers[2] = {db->active, db->frozen};
    for (int l = 0; l < 2; l++) {
        if (!layers[l]) continue;
        mt_key *k = mt_find(layers[l], ns, key, len, hash);
        if (!k) continue;
        int64_t i = last_at_or_before(k->vers, k->nver, as_of);
        if (i >= 0) {
            *out = k->vers[i];
            *rev = k->base_rev + (uint64_t)i + 1;
            return 0;
        }
        if (k->base_rev == 0) return TALLY_ENOTFOUND;
    }
    if (db->run) {
        int64_t ki = run_find(db->run, ns, key, len, hash);
        if (ki >= 0) {
            run_key rk;
            run_get(db->run, (uint64_t)ki, &rk);
            int64_t i = last_at_or_before(rk.vers, rk.nver, as_of);
            if (i >= 0) {
                *out = rk.vers[i];
                *rev = (uint64_t)i + 1;
                return 0;
            }
        }
    }
    return TALLY_ENOTFOUND;
}

int ix_lookup_rev(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t rev,
                  ix_version *out) {
    if (rev == 0) return TALLY_ENOTFOUND;
    memtable *layers[2] = {db->active, db->frozen};
    for (int l = 0; l < 2; l++) {
        if (!layers[l]) continue;
        mt_key *k = mt_find(layers[l], ns, key, len, hash);
        if (!k) continue;
        if (rev > k->base_rev + k->nver) return TALLY_ENOTFOUND;
        if (rev > k->base_rev) {
            *out = k->vers[rev - k->base_rev - 1];
            return 0;
        }
    }
    if (db->run) {
        int64_t ki = run_find(db->run, ns, key, len, hash);
        if (ki >= 0) {
            run_key rk;
            run_get(db->run, (uint64_t)ki, &rk);
            if (rev <= rk.nver) {
                *out = rk.vers[rev - 1];
                return 0;
            }
        }
    }
    return TALLY_ENOTFOUND;
}

void ix_prefetch(tally_db *db, const uint64_t *hashes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        mt_prefetch(db->active, hashes[i]);
        if (db->frozen) mt_prefetch(db->frozen, hashes[i]);
        if (db->run) run_prefetch(db->run, hashes[i]);
    }
}

int ix_checkpoint_due(const tally_db *db) {
    uint64_t min = db->opt.checkpoint_entries_min;
    uint64_t run_v = db->run ? run_version_count(db->run) : 0;
    uint64_t due = run_v / 2 > min ? run_v / 2 : min;
    return !db->frozen && db->active->nversions >= due;
}

int ix_freeze(tally_db *db) {
    memtable *fresh = mt_new(db->mt_pool);
    if (!fresh) return TALLY_ENOMEM;
    db->frozen = db->active;
    db->active = fresh;
    db->freeze_tx = db->next_tx - 1;
    return 0;
}
