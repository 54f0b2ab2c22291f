/*
** db.c — opening (with recovery) and closing a ledger directory.
**
** Directory layout (docs/FORMAT.md):
**   LOCK        flock'd by the writing process; holds its pid
**   log/        the segments: the only source of truth
**   txindex     derived: 16 bytes per tx (u64 log position, u64 ts_ns)
**   merkle      derived: the ledger tree's nodes in post-order (merkle/store.h)
**   INDEX       derived: names the key-value index checkpoint in force
**   index/      derived: run files
**
** Open: derived files are trusted only up to the checkpoint's index_tx (they
** were synced before INDEX was written); everything after it is rebuilt by
** scanning the log tail, which also checks every tail record and the hash
** chain, truncates a torn tail and refuses corruption (log.h).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/db_int.h"
#include "os/io.h"
#include "util/err.h"

#define DIR_BYTES_MAX 3000
#define REPLAY_LEAVES_BATCH 1024
#define CLOSE_CHECKPOINT_DIVISOR 16

void tally_options_init(tally_options *o) {
    memset(o, 0, sizeof *o);
    o->durability = TALLY_SYNC_FULL;
    o->segment_bytes_max = 512ull << 20;
    o->checkpoint_entries_min = 1000000;
}

int db_txidx_get(tally_db *db, uint64_t tx, uint64_t *pos, uint64_t *ts) {
    const uint8_t *it = afile_item(db->txidx, tx - 1);
    if (!it) return tally_seterr(TALLY_EIO, "cannot map the tx index");
    *pos = rd64(it) & ~TXIDX_SYNCED;
    if (ts) *ts = rd64(it + 8);
    return 0;
}

int db_tx_locate(tally_db *db, uint64_t tx, uint64_t *pos, record_hdr *h) {
    int rc = db_txidx_get(db, tx, pos, NULL);
    if (rc) return rc;
    uint32_t seg = LOG_SEG(*pos);
    uint64_t off = LOG_OFF(*pos);
    if (seg >= log_segment_count(db->log) || off < LOG_SEG_HDR_LEN ||
        off + RECORD_HDR_LEN > log_segment_size(db->log, seg) ||
        record_hdr_decode(log_ptr(db->log, *pos), h) != 0 || h->tx_id != tx ||
        off + RECORD_HDR_LEN + h->body_len > log_segment_size(db->log, seg))
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: the tx index (derived) does not point at its record; "
                            "run `tally verify`, then `tally reindex`", (unsigned long long)tx);
    return 0;
}

/* Derived items of the scanned tail are collected in memory and written only
** once the whole scan succeeded, so a refused open changes no file. */
typedef struct replay {
    tally_db *db;
    uint64_t replayed;
    rfc6962_hash *leaves;
    uint8_t (*items)[TXIDX_ITEM_LEN];
    size_t nleaves, cap;
} replay;

static int replay_push(replay *r, const uint8_t leaf[32], uint64_t pos, uint64_t ts) {
    if (r->nleaves == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        rfc6962_hash *l = realloc(r->leaves, cap * sizeof *l);
        if (l) r->leaves = l;
        uint8_t (*it)[TXIDX_ITEM_LEN] = l ? realloc(r->items, cap * TXIDX_ITEM_LEN) : NULL;
        if (!l || !it) return tally_seterr(TALLY_ENOMEM, "out of memory rebuilding derived files");
        r->items = it;
        r->cap = cap;
    }
    memcpy(r->leaves[r->nleaves], leaf, 32);
    wr64(r->items[r->nleaves], pos | TXIDX_SYNCED); /* recovery syncs the log it keeps */
    wr64(r->items[r->nleaves] + 8, ts);
    r->nleaves++;
    return 0;
}

static int replay_flush(replay *r, uint64_t k) {
    int rc = afile_truncate(r->db->txidx, k);
    if (rc == 0) rc = mstore_truncate(r->db->ms, k);
    for (size_t i = 0; rc == 0 && i < r->nleaves; i += REPLAY_LEAVES_BATCH) {
        size_t n = r->nleaves - i < REPLAY_LEAVES_BATCH ? r->nleaves - i : REPLAY_LEAVES_BATCH;
        rc = afile_append(r->db->txidx, r->items[i], n);
        if (rc == 0) rc = mstore_append(r->db->ms, (const rfc6962_hash *)&r->leaves[i], n);
    }
    return rc ? tally_seterr(tally_err_from_errno(rc), "rebuilding derived files: %s", strerror(-rc)) : 0;
}

/* Index the entries of one record into the active memtable. */
static int replay_entries(tally_db *db, uint64_t pos, const uint8_t *rec, const record_hdr *h) {
    const uint8_t *ent = rec + RECORD_HDR_LEN + h->txh_len;
    size_t len = h->body_len - h->txh_len, off = 0;
    for (uint32_t i = 0; off < len; i++) {
        entry_view e;
        size_t n = entry_decode(ent + off, len - off, &e);
        uint64_t hash = ix_hash(e.ns, e.key, e.key_len);
        mt_key *k = ix_node(db, e.ns, e.key, e.key_len, hash);
        ix_version v = {h->tx_id, pos + RECORD_HDR_LEN + h->txh_len + off, i, e.flags};
        if (!k || mt_add_version(db->active, k, &v) != 0)
            return tally_seterr(TALLY_ENOMEM, "out of memory rebuilding the index");
        off += n;
    }
    return 0;
}

static int replay_record(void *ctx, uint64_t pos, const uint8_t *rec, const record_hdr *h) {
    replay *r = ctx;
    tally_db *db = r->db;
    txh_view t;
    const uint8_t *txh = rec + RECORD_HDR_LEN;
    txh_decode(txh, h->txh_len, &t); /* record_check passed */
    if (memcmp(t.prev_hash, db->last_hash, 32) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: previous-hash link does not match tx %llu",
                            (unsigned long long)h->tx_id, (unsigned long long)h->tx_id - 1);
    if (t.ts_ns < db->last_ts)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: commit time goes backwards", (unsigned long long)h->tx_id);
    uint8_t leaf[32];
    rfc6962_leaf_hash(txh, h->txh_len, leaf);
    memcpy(db->last_hash, leaf, 32);
    int rc = replay_push(r, leaf, pos, t.ts_ns);
    if (rc) return rc;
    db->last_ts = t.ts_ns;
    if (h->tx_id > db->index_tx) {
        r->replayed++;
        return replay_entries(db, pos, rec, h);
    }
    return 0;
}

/* The writer appends a tx index item only after the record's fdatasync
** returned, so an item on disk that points exactly at a record proves that
** record had been synced (acknowledged). */
static int txidx_vouches(void *ctx, uint64_t tx, uint64_t pos) {
    replay *r = ctx;
    if (tx > afile_count(r->db->txidx)) return 0;
    const uint8_t *it = afile_item(r->db->txidx, tx - 1);
    return it && rd64(it) == (pos | TXIDX_SYNCED);
}

/* Where the scan starts: after the last tx whose derived data we trust. */
static int recovery_start(tally_db *db, uint64_t *start_tx, uint64_t *start_pos) {
    uint64_t k = db->index_tx;
    if (afile_count(db->txidx) < k) k = afile_count(db->txidx);
    if (mstore_size(db->ms) < k) k = mstore_size(db->ms);
    int rc;
    *start_tx = k + 1;
    *start_pos = log_start_pos(db->log);
    memset(db->last_hash, 0, 32);
    db->last_ts = 0;
    if (k == 0) return 0;
    uint64_t pos = 0, ts = 0;
    record_hdr h;
    char why[160];
    if ((rc = db_tx_locate(db, k, &pos, &h)) != 0) return rc;
    db_txidx_get(db, k, &pos, &ts);
    if (record_check(log_ptr(db->log, pos), log_segment_size(db->log, LOG_SEG(pos)) - LOG_OFF(pos), k, why,
                     sizeof why) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu (the checkpoint's last): %s; run `tally verify`",
                            (unsigned long long)k, why);
    uint8_t leaf[32];
    rfc6962_leaf_hash(log_ptr(db->log, pos) + RECORD_HDR_LEN, h.txh_len, leaf);
    if (memcmp(leaf, mstore_leaf(db->ms, k - 1), 32) != 0)
        return tally_seterr(TALLY_ECORRUPT, "tx %llu: hash differs from the stored Merkle leaf; "
                            "run `tally verify`", (unsigned long long)k);
    memcpy(db->last_hash, leaf, 32);
    db->last_ts = ts;
    *start_pos = pos + RECORD_HDR_LEN + h.body_len;
    if (LOG_OFF(*start_pos) >= log_segment_size(db->log, LOG_SEG(pos)) &&
        LOG_SEG(pos) + 1 < log_segment_count(db->log))
        *start_pos = LOG_POS(LOG_SEG(pos) + 1, LOG_SEG_HDR_LEN);
    return 0;
}

static int open_index(tally_db *db) {
    uint8_t h[32];
    char path[PATH_MAX], name[64];
    snprintf(path, sizeof path, "%s/index", db->dir);
    if (!db->opt.read_only && mkdir(path, 0755) == 0) io_fsync_dir(db->dir);
    if (!db->opt.read_only) run_spare_drop(path); /* a crashed writer's spare run: garbage */
    int rc = manifest_read(db->dir, &db->index_tx, h, db->index_root);
    if (rc || db->index_tx == 0) return rc;
    run_file_name(name, sizeof name, db->index_tx);
    snprintf(path, sizeof path, "%s/index/%s", db->dir, name);
    if ((rc = run_open(&db->run, path)) != 0) return rc;
    if (run_index_tx(db->run) != db->index_tx)
        return tally_seterr(TALLY_ECORRUPT, "index run %s covers tx %llu, INDEX says %llu", path,
                            (unsigned long long)run_index_tx(db->run), (unsigned long long)db->index_tx);
    /* reads trust the run's pointers: check every byte of it once (sequential,
    ** CRC-32C runs at memory speed) */
    if (run_check_crc(db->run) != 0)
        return tally_seterr(TALLY_ECORRUPT, "index checkpoint %s is damaged (checksum); the log is not affected: "
                            "run `tally reindex`", path);
    return 0;
}

static int db_recover(tally_db *db, tally_open_report *rep) {
    uint64_t start_tx = 1, start_pos = 0, last_tx = 0, torn = 0;
    int rc = recovery_start(db, &start_tx, &start_pos);
    if (rc) return rc;
    replay r;
    memset(&r, 0, sizeof r);
    r.db = db;
    rc = log_recover(db->log, start_pos, start_tx, replay_record, txidx_vouches, &r, &torn, &last_tx);
    if (rc == 0) rc = replay_flush(&r, start_tx - 1);
    free(r.leaves);
    free(r.items);
    if (rc) return rc;
    uint8_t root[32];
    if (db->index_tx <= last_tx &&
        (rfc6962_root(mstore_node, db->ms, db->index_tx, root) != 0 || memcmp(root, db->index_root, 32) != 0))
        return tally_seterr(TALLY_ECORRUPT, "the ledger root at tx %llu differs from the one recorded at the "
                            "checkpoint: the Merkle node file or the log changed; run `tally verify`",
                            (unsigned long long)db->index_tx);
    if (last_tx < db->index_tx)
        return tally_seterr(TALLY_ECORRUPT, "the log ends at tx %llu but the index covers tx %llu",
                            (unsigned long long)last_tx, (unsigned long long)db->index_tx);
    /* what recovery kept is durable from here on (it may have been written
    ** with durability NONE by a process that died before syncing) */
    if (!db->opt.read_only && (rc = log_sync(db->log)) != 0)
        return tally_seterr(TALLY_EIO, "sync the log after recovery: %s", strerror(-rc));
    db->synced_tx = last_tx;
    db->next_tx = last_tx + 1;
    atomic_store(&db->visible_tx, last_tx);
    rep->tx_count = last_tx;
    rep->torn_bytes_dropped = torn;
    rep->replayed_tx = r.replayed;
    return 0;
}

static void db_free(tally_db *db) {
    ckpt_stop(db);
    writer_stop(db);
    completer_stop(db);
    db_tx_check_free(db);
    mt_free(db->active);
    mt_free(db->frozen);
    mt_pool_free(db->mt_pool);
    run_close(db->run);
    mstore_close(db->ms);
    afile_close(db->txidx);
    log_close(db->log);
    if (db->lock_fd >= 0) close(db->lock_fd);
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->queue_cond);
    pthread_cond_destroy(&db->herd_cond);
    pthread_mutex_destroy(&db->cq_mu);
    pthread_cond_destroy(&db->cq_cond);
    pthread_cond_destroy(&db->synced_cond);
    pthread_cond_destroy(&db->ckpt_cond);
    pthread_rwlock_destroy(&db->ixlock);
    pthread_mutex_destroy(&db->ckpt_mu);
    etree_cache_free(db);
    pthread_mutex_destroy(&db->etree_mu);
    free(db);
}

int tally_db_open(tally_db **out, const char *dir, const tally_options *opts, tally_open_report *report) {
    tally_open_report dummy;
    tally_open_report *rep = report ? report : &dummy;
    memset(rep, 0, sizeof *rep);
    tally_clearerr();
    if (!out || !dir || !*dir) return tally_seterr(TALLY_EINVAL, "NULL or empty directory");
    if (strlen(dir) > DIR_BYTES_MAX) return tally_seterr(TALLY_EINVAL, "directory path too long");
    tally_db *db = calloc(1, sizeof *db);
    if (!db) return tally_seterr(TALLY_ENOMEM, "out of memory");
    snprintf(db->dir, sizeof db->dir, "%s", dir);
    if (opts) db->opt = *opts;
    else tally_options_init(&db->opt);
    if (!db->opt.segment_bytes_max) db->opt.segment_bytes_max = 512ull << 20;
    if (!db->opt.checkpoint_entries_min) db->opt.checkpoint_entries_min = 1000000;
    db->lock_fd = -1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->queue_cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&db->herd_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&db->cq_mu, NULL);
    pthread_cond_init(&db->cq_cond, NULL);
    pthread_cond_init(&db->synced_cond, NULL);
    pthread_cond_init(&db->ckpt_cond, NULL);
    pthread_rwlock_init(&db->ixlock, NULL);
    pthread_mutex_init(&db->ckpt_mu, NULL);
    pthread_mutex_init(&db->etree_mu, NULL);
    int rc = 0;
    if (db->opt.segment_bytes_max < 4096 || db->opt.segment_bytes_max > (4ull << 30) - 1)
        rc = tally_seterr(TALLY_EINVAL, "segment_bytes_max must be in [4 KiB, 4 GiB)");
    if (db->opt.durability != TALLY_SYNC_FULL && db->opt.durability != TALLY_SYNC_NONE)
        rc = tally_seterr(TALLY_EINVAL, "unknown durability mode");
    if (rc == 0 && !db->opt.read_only && mkdir(dir, 0755) != 0 && errno != EEXIST)
        rc = tally_seterr(TALLY_EIO, "create %s: %s", dir, strerror(errno));
    if (rc == 0) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = tally_seterr(TALLY_ENOTFOUND, "no ledger directory %s", dir);
    }
    if (rc == 0) rc = dir_lock(dir, &db->lock_fd);
    if (rc == 0) rc = log_open(&db->log, dir, db->opt.segment_bytes_max, db->opt.read_only);
    char path[PATH_MAX];
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/txindex", dir);
        int e = afile_open(&db->txidx, path, TXIDX_ITEM_LEN);
        if (!e) {
            snprintf(path, sizeof path, "%s/merkle", dir);
            e = mstore_open(&db->ms, path);
        }
        if (e) rc = tally_seterr(TALLY_EIO, "open %s: %s", path, strerror(-e));
    }
    if (rc == 0) rc = open_index(db);
    if (rc == 0 && (!(db->mt_pool = mt_pool_new()) || !(db->active = mt_new(db->mt_pool))))
        rc = tally_seterr(TALLY_ENOMEM, "out of memory");
    if (rc == 0) rc = db_recover(db, rep);
    if (rc == 0 && !db->opt.read_only) {
        if (ix_checkpoint_due(db)) ix_freeze(db);
        rc = writer_start(db);
        if (rc == 0) rc = ckpt_start(db);
        if (rc == 0 && db->frozen) {
            pthread_mutex_lock(&db->mu);
            pthread_cond_signal(&db->ckpt_cond);
            pthread_mutex_unlock(&db->mu);
        }
    }
    if (rc) {
        db_free(db);
        return rc;
    }
    *out = db;
    return 0;
}

int tally_db_close(tally_db *db) {
    if (!db) return 0;
    ckpt_stop(db); /* the writer stays up: a NONE-durability checkpoint asks it to sync */
    int rc = 0;
    /* A checkpoint rewrites the whole index run, so close writes one only when
    ** the unindexed tail is big enough to slow the next open (replaying
    ** CLOSE_CHECKPOINT_DIVISOR-th of checkpoint_entries_min entries takes
    ** tens of milliseconds); a one-key `tally set` on a large ledger stays cheap. */
    if (!db->failed && !db->opt.read_only) {
        if (db->frozen) rc = ckpt_run_once(db, 0);
        if (rc == 0 && db->active->nversions &&
            db->active->nversions >= db->opt.checkpoint_entries_min / CLOSE_CHECKPOINT_DIVISOR)
            rc = ckpt_run_once(db, 1);
    }
    if (!db->opt.read_only) { /* the spare run is scratch for the next checkpoint */
        char idir[PATH_MAX];
        snprintf(idir, sizeof idir, "%s/index", db->dir);
        run_spare_drop(idir);
    }
    if (!db->failed && !db->opt.read_only) {
        writer_stop(db); /* no more appends: trim the preallocated zeros */
        int trc = log_trim(db->log);
        if (trc && rc == 0) rc = tally_seterr(tally_err_from_errno(trc), "close: trim the log: %s", strerror(-trc));
    }
    db_free(db);
    return rc;
}

void tally_db_stats(tally_db *db, tally_stats *out) {
    out->commits = atomic_load(&db->st_commits);
    out->syncs = atomic_load(&db->st_syncs);
    out->sync_ns_total = atomic_load(&db->st_sync_ns);
    out->checkpoints = atomic_load(&db->st_checkpoints);
    pthread_mutex_lock(&db->mu);
    out->checkpoint_error = db->ckpt_error;
    snprintf(out->checkpoint_message, sizeof out->checkpoint_message, "%s",
             db->ckpt_error ? db->ckpt_errmsg : "");
    pthread_mutex_unlock(&db->mu);
}
