/*
** verify.c — `tally verify` and `tally reindex`: recompute from raw bytes.
**
** verify reads the log from its first byte and, for every transaction:
** checks framing and checksums, recomputes every entry's leaf hash and the
** entries root, checks the id sequence, the time order and the previous-hash
** chain, recomputes the tx hash and every Merkle node it completes and
** compares them with DIR/merkle (where present), and compares DIR/txindex.
** Then it checks the key-value index checkpoint against the log: the run's
** header and trailer CRC, key order, slot lookups, revision order, that
** every version names an entry of its transaction with that key, and that
** the run holds exactly the log's entries of txs 1..index_tx (a count and an
** order-independent 64-bit sum of per-entry fingerprints must both match).
** It stops at the first bad transaction and names it.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <dirent.h>
#include <unistd.h>
#include "core/db_int.h"
#include "merkle/rfc6962.h"
#include "os/io.h"
#include "util/err.h"

/* A second thread recomputes the entries root of two transactions in three:
** that hashing is independent per transaction, while the chain, the tree
** fold and the index fingerprints stay on the scanning thread. The smallest
** bad transaction either thread finds is the one reported. */
#define VQ_SLOTS 128

typedef struct vjob {
    uint64_t tx;
    const uint8_t *entries, *root;
    uint32_t len, count;
} vjob;

typedef struct vworker {
    pthread_t th;
    int started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_space;
    vjob q[VQ_SLOTS];
    unsigned head, n;
    _Atomic uint64_t bad_tx; /* smallest tx whose entries root failed, 0 = none */
    uint8_t (*scratch)[32];
} vworker;

static void *vworker_main(void *arg) {
    vworker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->n && !w->stop) pthread_cond_wait(&w->cv_work, &w->mu);
        if (!w->n) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        vjob j = w->q[w->head];
        w->head = (w->head + 1) % VQ_SLOTS;
        w->n--;
        pthread_cond_signal(&w->cv_space);
        pthread_mutex_unlock(&w->mu);
        uint8_t root[32];
        if (entries_root_compute(j.entries, j.len, j.count, w->scratch, root) != 0 || memcmp(root, j.root, 32) != 0) {
            uint64_t b = atomic_load(&w->bad_tx);
            while ((!b || j.tx < b) && !atomic_compare_exchange_weak(&w->bad_tx, &b, j.tx)) {
            }
        }
    }
}

static void vworker_push(vworker *w, const vjob *j) {
    pthread_mutex_lock(&w->mu);
    while (w->n == VQ_SLOTS) pthread_cond_wait(&w->cv_space, &w->mu);
    w->q[(w->head + w->n) % VQ_SLOTS] = *j;
    w->n++;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
}

/* Drains and stops the worker. */
static void vworker_finish(vworker *w) {
    if (!w->started) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    w->started = 0;
}

/* The index run's whole-file CRC is computed on a thread of its own while the
** log is scanned (it is independent of the log and sequential). */
typedef struct vcrc {
    pthread_t th;
    int started, open_rc, crc_ok;
    char path[PATH_MAX], err[200];
    run *r;
} vcrc;

static void *vcrc_main(void *arg) {
    vcrc *c = arg;
    c->open_rc = run_open(&c->r, c->path);
    if (c->open_rc == 0) c->crc_ok = run_check_crc(c->r) == 0;
    else snprintf(c->err, sizeof c->err, "%s", tally_errmsg());
    return NULL;
}

typedef struct vstate {
    tally_verify_result *res;
    tlog *log;
    afile *txidx;
    mstore *ms;
    uint64_t ms_nodes_avail;  /* nodes present in DIR/merkle */
    uint64_t n;               /* leaves folded so far */
    rfc6962_hash frontier[64];
    uint8_t last_hash[32];
    uint64_t last_ts;
    uint8_t (*scratch)[32];
    vworker *worker;          /* NULL: hash everything on this thread */
    uint32_t prefaulted_seg;
    vcrc crc;
    uint64_t index_tx, fp_sum, fp_count;
    uint8_t index_tx_hash[32], index_root[32];
    tally_progress_fn progress;
    void *ctx;
    uint64_t total_hint, last_progress_ns;
} vstate;

static int fail(vstate *v, uint64_t tx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(vstate *v, uint64_t tx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->res->ok = 0;
    v->res->first_bad_tx = tx;
    snprintf(v->res->error, sizeof v->res->error, "tx %llu: %s", (unsigned long long)tx, msg);
    return 1;
}

/* Per-entry fingerprint shared by the log side and the index side. */
static uint64_t entry_fp(uint64_t tx, uint64_t pos, uint32_t idx, uint32_t flags, uint64_t keyhash) {
    uint64_t w[4] = {tx, pos, ((uint64_t)idx << 32) | flags, keyhash};
    return ix_hash(0xFF, w, sizeof w);
}

static int check_node(vstate *v, uint64_t tx, unsigned level, uint64_t index, const uint8_t h[32]) {
    uint64_t last_leaf = ((index + 1) << level) - 1;
    uint64_t pos = 2 * last_leaf - (uint64_t)__builtin_popcountll(last_leaf) + level;
    if (pos >= v->ms_nodes_avail) return 0; /* not stored yet: open rebuilds it */
    uint8_t got[32];
    if (mstore_node(v->ms, level, index, got) != 0 || memcmp(got, h, 32) != 0)
        return fail(v, tx, "stored Merkle node (level %u, index %llu) differs from the recomputed one", level,
                    (unsigned long long)index);
    return 0;
}

static int verify_record(void *ctx, uint64_t pos, const uint8_t *rec, const record_hdr *h) {
    vstate *v = ctx;
    uint64_t tx = h->tx_id;
    if (LOG_SEG(pos) != v->prefaulted_seg) { /* a full scan: map the next segment in one call */
        v->prefaulted_seg = LOG_SEG(pos);
        log_prefault(v->log, LOG_SEG(pos) + 1 < log_segment_count(v->log) ? LOG_SEG(pos) + 1 : LOG_SEG(pos));
    }
    txh_view t;
    const uint8_t *txh = rec + RECORD_HDR_LEN;
    txh_decode(txh, h->txh_len, &t);
    uint8_t root[32], leaf[32];
    uint64_t wbad = v->worker ? atomic_load(&v->worker->bad_tx) : 0;
    if (wbad) return fail(v, wbad, "entries root does not match its entries");
    if (v->worker && tx % 3 != 0) { /* the scanning thread has framing, chain and tree work too */
        vjob j = {tx, txh + h->txh_len, t.entries_root, t.entries_len, t.entry_count};
        vworker_push(v->worker, &j);
    } else {
        if (entries_root_compute(txh + h->txh_len, t.entries_len, t.entry_count, v->scratch, root) != 0)
            return fail(v, tx, "malformed entries");
        if (memcmp(root, t.entries_root, 32) != 0) return fail(v, tx, "entries root does not match its entries");
    }
    if (memcmp(t.prev_hash, v->last_hash, 32) != 0) return fail(v, tx, "previous-hash link broken");
    if (t.ts_ns < v->last_ts) return fail(v, tx, "commit time goes backwards");
    rfc6962_leaf_hash(txh, h->txh_len, leaf);
    memcpy(v->last_hash, leaf, 32);
    if (tx == v->index_tx) memcpy(v->index_tx_hash, leaf, 32);
    v->last_ts = t.ts_ns;
    if (tx <= afile_count(v->txidx)) {
        const uint8_t *it = afile_item(v->txidx, tx - 1);
        if (!it || (rd64(it) & ~TXIDX_SYNCED) != pos || rd64(it + 8) != t.ts_ns)
            return fail(v, tx, "tx index item differs from the log");
    }
    /* fold into the tree, checking every node this leaf completes */
    if (check_node(v, tx, 0, v->n, leaf)) return 1;
    uint8_t hsh[32];
    memcpy(hsh, leaf, 32);
    unsigned l = 0;
    while ((v->n >> l) & 1) {
        rfc6962_node_hash(v->frontier[l], hsh, hsh);
        l++;
        if (check_node(v, tx, l, v->n >> l, hsh)) return 1;
    }
    memcpy(v->frontier[l], hsh, 32);
    v->n++;
    if (tx == v->index_tx) { /* the root at the checkpoint: fold the frontier */
        int first = 1;
        for (unsigned b = 0; b < 64; b++) {
            if (!((v->n >> b) & 1)) continue;
            if (first) memcpy(v->index_root, v->frontier[b], 32), first = 0;
            else rfc6962_node_hash(v->frontier[b], v->index_root, v->index_root);
        }
    }
    if (tx <= v->index_tx) {
        const uint8_t *ent = txh + h->txh_len;
        size_t off = 0;
        for (uint32_t i = 0; i < t.entry_count; i++) {
            entry_view e;
            size_t n = entry_decode(ent + off, t.entries_len - off, &e);
            uint64_t epos = pos + RECORD_HDR_LEN + h->txh_len + off;
            v->fp_sum += entry_fp(tx, epos, i, e.flags, ix_hash(e.ns, e.key, e.key_len));
            v->fp_count++;
            off += n;
        }
    }
    v->res->tx_checked = tx;
    if (v->progress && (tx & 1023) == 0) {
        uint64_t now = db_now_ns();
        if (now - v->last_progress_ns > 200000000ull) {
            v->last_progress_ns = now;
            if (v->progress(v->ctx, tx, v->total_hint)) return fail(v, tx, "interrupted");
        }
    }
    return 0;
}

/* As in db.c: a tx index item pointing exactly at a record proves it was synced. */
static int verify_txidx_vouches(void *ctx, uint64_t tx, uint64_t pos) {
    vstate *v = ctx;
    if (tx > afile_count(v->txidx)) return 0;
    const uint8_t *it = afile_item(v->txidx, tx - 1);
    return it && rd64(it) == (pos | TXIDX_SYNCED);
}

/* The key-value index checkpoint against the log. The run's versions must be
** exactly the log's entries of txs 1..index_tx: the counts match and the sums
** of per-entry fingerprints match (an order-independent multiset hash; each
** fingerprint binds tx, entry position, entry index, flags and key hash). */
static void verify_index(vstate *v, const char *dir) {
    uint64_t itx;
    uint8_t ih[32], iroot[32];
    if (manifest_read(dir, &itx, ih, iroot) != 0) {
        fail(v, 0, "%s", tally_errmsg());
        return;
    }
    if (itx == 0) return;
    if (itx > v->res->tx_checked) {
        fail(v, v->res->tx_checked + 1, "the index checkpoint covers tx %llu beyond the log", (unsigned long long)itx);
        return;
    }
    if (!v->crc.started || itx != v->index_tx) {
        fail(v, itx, "INDEX changed during verify");
        return;
    }
    pthread_join(v->crc.th, NULL);
    v->crc.started = 0;
    run *r = v->crc.r;
    v->crc.r = NULL;
    if (v->crc.open_rc != 0) {
        fail(v, itx, "index checkpoint: %s", v->crc.err);
        return;
    }
    uint64_t sum = 0, count = 0;
    if (!v->crc.crc_ok) fail(v, itx, "index run checksum mismatch");
    if (itx != v->index_tx || memcmp(ih, v->index_tx_hash, 32) != 0) fail(v, itx, "INDEX names another tx hash");
    else if (memcmp(iroot, v->index_root, 32) != 0) fail(v, itx, "INDEX records another ledger root");
    run_key prev = {0};
    for (uint64_t i = 0; v->res->ok && i < run_key_count(r); i++) {
        run_key k;
        run_get(r, i, &k);
        uint64_t hash = ix_hash(k.ns, k.key, k.key_len);
        /* (That each key is reachable from its hash slot is the writer's logic,
        ** tested by the suite; the slots' bytes are covered by the run's CRC.) */
        if (!k.key_len || !k.nver) fail(v, itx, "index run: key %llu malformed", (unsigned long long)i);
        else if (i && ix_key_cmp(prev.ns, prev.key, prev.key_len, k.ns, k.key, k.key_len) >= 0)
            fail(v, itx, "index run: keys out of order at %llu", (unsigned long long)i);
        for (uint32_t j = 0; v->res->ok && j < k.nver; j++) {
            const ix_version *x = &k.vers[j];
            if (x->tx == 0 || x->tx > itx || (j && x->tx <= k.vers[j - 1].tx)) {
                fail(v, x->tx && x->tx <= itx ? x->tx : itx, "index run: bad version order for a key");
                break;
            }
            /* that this version names a real entry of its transaction with this
            ** key is proven by the fingerprint sum below: each fingerprint binds
            ** (tx, entry position, entry index, flags, key hash) */
            sum += entry_fp(x->tx, x->pos, x->entry_index, x->flags, hash);
            count++;
        }
        prev = k;
    }
    if (v->res->ok && (count != v->fp_count || sum != v->fp_sum))
        fail(v, itx, "index checkpoint holds %llu versions, the log has %llu entries in txs 1..%llu%s",
             (unsigned long long)count, (unsigned long long)v->fp_count, (unsigned long long)itx,
             count == v->fp_count ? " (same count, different entries)" : "");
    run_close(r);
}

int tally_verify_dir(const char *dir, tally_verify_result *res, tally_progress_fn progress, void *ctx) {
    memset(res, 0, sizeof *res);
    res->ok = 1;
    tally_clearerr();
    int lock_fd = -1, rc = dir_lock(dir, &lock_fd);
    if (rc) return rc;
    vstate v;
    memset(&v, 0, sizeof v);
    v.res = res;
    v.progress = progress;
    v.ctx = ctx;
    char path[PATH_MAX];
    uint8_t ih[32];
    rc = log_open(&v.log, dir, 512ull << 20, 1);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/txindex", dir);
        int e = afile_open(&v.txidx, path, TXIDX_ITEM_LEN);
        snprintf(path, sizeof path, "%s/merkle", dir);
        if (!e) e = mstore_open(&v.ms, path);
        if (e) rc = tally_seterr(TALLY_EIO, "open %s: %s", path, strerror(-e));
    }
    uint8_t iroot[32];
    if (rc == 0 && manifest_read(dir, &v.index_tx, ih, iroot) != 0) v.index_tx = 0;
    if (rc == 0 && v.index_tx) {
        char name[64];
        run_file_name(name, sizeof name, v.index_tx);
        snprintf(v.crc.path, sizeof v.crc.path, "%s/index/%s", dir, name);
        v.crc.started = pthread_create(&v.crc.th, NULL, vcrc_main, &v.crc) == 0;
    }
    if (rc == 0 && !(v.scratch = malloc((size_t)(TALLY_TX_ENTRIES_MAX + TALLY_TX_ENTRIES_MAX / 2 + 1) * 32)))
        rc = tally_seterr(TALLY_ENOMEM, "out of memory");
    vworker w;
    memset(&w, 0, sizeof w);
    if (rc == 0 && (w.scratch = malloc((size_t)(TALLY_TX_ENTRIES_MAX + TALLY_TX_ENTRIES_MAX / 2 + 1) * 32))) {
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv_work, NULL);
        pthread_cond_init(&w.cv_space, NULL);
        if (pthread_create(&w.th, NULL, vworker_main, &w) == 0) w.started = 1, v.worker = &w;
    }
    if (rc == 0) {
        v.ms_nodes_avail = mstore_nodes_for(mstore_size(v.ms));
        log_prefault(v.log, 0);
        v.total_hint = afile_count(v.txidx);
        uint64_t torn = 0, last = 0;
        rc = log_recover(v.log, log_start_pos(v.log), 1, verify_record, verify_txidx_vouches, &v, &torn, &last);
        vworker_finish(&w);
        /* The worker only hashes records the scan had already framed and
        ** passed, so any tx it finds bad precedes whatever stopped the scan. */
        uint64_t wbad = atomic_load(&w.bad_tx);
        if (wbad && (rc == 0 || rc == 1 || rc == TALLY_ECORRUPT)) {
            fail(&v, wbad, "entries root does not match its entries");
            res->tx_checked = wbad - 1;
            rc = 1;
        }
        if (rc == 1) rc = 0; /* a check failed: res says which */
        else if (rc == TALLY_ECORRUPT) {
            res->ok = 0;
            res->first_bad_tx = res->tx_checked + 1;
            snprintf(res->error, sizeof res->error, "%s", tally_errmsg());
            rc = 0;
        } else if (rc == 0 && torn) {
            res->ok = 0;
            res->first_bad_tx = last + 1;
            snprintf(res->error, sizeof res->error,
                     "tx %llu: incomplete or damaged last record (%llu bytes; a torn write, or damage to the "
                     "last transaction)", (unsigned long long)last + 1, (unsigned long long)torn);
        }
        if (rc == 0 && res->ok) verify_index(&v, dir);
        if (rc == 0 && res->ok && progress) progress(ctx, res->tx_checked, res->tx_checked);
    }
    vworker_finish(&w);
    if (v.crc.started) pthread_join(v.crc.th, NULL);
    run_close(v.crc.r);
    if (w.scratch) {
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv_work);
        pthread_cond_destroy(&w.cv_space);
    }
    free(w.scratch);
    free(v.scratch);
    mstore_close(v.ms);
    afile_close(v.txidx);
    log_close(v.log);
    close(lock_fd);
    return rc;
}

int tally_reindex_dir(const char *dir, tally_progress_fn progress, void *ctx) {
    tally_clearerr();
    int lock_fd = -1, rc = dir_lock(dir, &lock_fd);
    if (rc) return rc;
    char path[PATH_MAX], name[64];
    uint64_t itx = 0;
    uint8_t ih[32];
    (void)itx, (void)ih, (void)name;
    snprintf(path, sizeof path, "%s/index", dir);
    DIR *d = opendir(path);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strncmp(de->d_name, "run-", 4) != 0) continue;
        char p2[PATH_MAX];
        snprintf(p2, sizeof p2, "%s/%s", path, de->d_name);
        unlink(p2);
    }
    if (d) closedir(d);
    const char *derived[] = {"INDEX", "txindex", "merkle"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, derived[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            close(lock_fd);
            return tally_seterr(TALLY_EIO, "remove %s: %s", path, strerror(errno));
        }
    }
    io_fsync_dir(dir);
    close(lock_fd); /* tally_db_open takes it again */
    tally_db *db;
    tally_open_report rep;
    rc = tally_db_open(&db, dir, NULL, &rep);
    if (rc) return rc;
    if (progress) progress(ctx, rep.tx_count, rep.tx_count);
    rc = tally_db_checkpoint(db);
    int rc2 = tally_db_close(db);
    return rc ? rc : rc2;
}
