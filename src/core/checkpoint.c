/*
** checkpoint.c — turning memtables into runs, and the INDEX manifest.
**
** DIR/INDEX (96 bytes) names the checkpoint in force:
**     0 [8] "TALLYIDX"   8 u32 version = 1   12 u32 reserved = 0
**    16 u64 index_tx     24 [32] hash of tx index_tx (zeros if 0)
**    56 [32] ledger root at size index_tx
**    88 u32 reserved = 0 92 u32 CRC-32C of bytes 0..91
** The run it names is DIR/index/run-<index_tx, 20 digits>.idx. Order of a
** checkpoint (each step durable before the next):
**   1. the log is synced up to freeze_tx (it is already, unless durability NONE);
**   2. the new run is written to a temp file, fsynced, renamed, dir fsynced;
**   3. the tx index and Merkle node files are fdatasynced (they cover >= freeze_tx);
**   4. INDEX is replaced atomically (temp, fsync, rename, dir fsync);
**   5. readers switch to the new run; the frozen memtable and old run are
**      dropped, the old run's file renamed index/spare.idx: the next
**      checkpoint writes its run over it (run_write), reusing its cached
**      pages; close and open delete it (it is never part of the ledger).
** A crash between steps leaves the previous INDEX in force, which is still
** correct: open replays the log from its index_tx.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include "core/db_int.h"
#include "merkle/rfc6962.h"
#include "os/io.h"
#include "util/crc32c.h"
#include "util/err.h"

void run_file_name(char *buf, size_t len, uint64_t index_tx) {
    snprintf(buf, len, "run-%020llu.idx", (unsigned long long)index_tx);
}

int manifest_write(const char *dir, uint64_t index_tx, const uint8_t tx_hash[32], const uint8_t root[32]) {
    uint8_t m[MANIFEST_LEN] = {0};
    memcpy(m, "TALLYIDX", 8);
    wr32(m + 8, 1);
    wr64(m + 16, index_tx);
    memcpy(m + 24, tx_hash, 32);
    memcpy(m + 56, root, 32);
    wr32(m + 92, tally_crc32c(0, m, 92));
    return io_write_file_atomic(dir, "INDEX", m, sizeof m);
}

int manifest_read(const char *dir, uint64_t *index_tx, uint8_t tx_hash[32], uint8_t root[32]) {
    char path[PATH_MAX];
    void *buf;
    size_t len;
    snprintf(path, sizeof path, "%s/INDEX", dir);
    int rc = io_read_file(path, 4096, &buf, &len);
    if (rc == -ENOENT) {
        *index_tx = 0;
        memset(tx_hash, 0, 32);
        rfc6962_empty_root(root);
        return 0;
    }
    if (rc) return tally_seterr(TALLY_EIO, "read %s: %s", path, strerror(-rc));
    const uint8_t *m = buf;
    int ok = len == MANIFEST_LEN && memcmp(m, "TALLYIDX", 8) == 0 && rd32(m + 8) == 1 &&
             rd32(m + 12) == 0 && rd32(m + 88) == 0 && rd32(m + 92) == tally_crc32c(0, m, 92);
    if (ok) {
        *index_tx = rd64(m + 16);
        memcpy(tx_hash, m + 24, 32);
        memcpy(root, m + 56, 32);
    }
    free(buf);
    return ok ? 0 : tally_seterr(TALLY_ECORRUPT, "%s is damaged; run `tally reindex`", path);
}

int ckpt_run_once(tally_db *db, int final) {
    char idir[PATH_MAX], name[64], path[PATH_MAX];
    snprintf(idir, sizeof idir, "%s/index", db->dir);
    memtable *fr = db->frozen;
    uint64_t upto = db->freeze_tx;
    if (final) { /* close: everything is quiescent; checkpoint the active memtable */
        fr = db->active;
        upto = db_visible(db);
    }
    if (mt_sort(fr) != 0) return TALLY_ENOMEM;
    /* step 1: with durability NONE, have the writer sync the log first */
    int rc = db->opt.durability == TALLY_SYNC_FULL ? 0 : writer_sync(db);
    if (rc) return tally_seterr(rc, "index checkpoint: the log could not be synced");
    run_file_name(name, sizeof name, upto);
    if (rc == 0) rc = run_write(idir, name, upto, db->run, fr, RUN_SPARE_NAME);
    if (rc == 0) rc = afile_sync(db->txidx);
    if (rc == 0) rc = mstore_sync(db->ms);
    uint8_t h[32] = {0}, root[32];
    if (rc == 0 && upto) memcpy(h, mstore_leaf(db->ms, upto - 1), 32);
    if (rc == 0 && rfc6962_root(mstore_node, db->ms, upto, root) != 0) rc = -EIO;
    if (rc == 0) rc = manifest_write(db->dir, upto, h, root);
    if (rc) return tally_seterr(tally_err_from_errno(rc), "index checkpoint at tx %llu failed: %s",
                                (unsigned long long)upto, strerror(-rc));
    run *nr;
    snprintf(path, sizeof path, "%s/%s", idir, name);
    if ((rc = run_open(&nr, path)) != 0) return rc;
    uint64_t old_tx = db->index_tx;
    pthread_rwlock_wrlock(&db->ixlock);
    run *old = db->run;
    db->run = nr;
    db->index_tx = upto;
    if (final) {
        db->active = mt_new(db->mt_pool); /* NULL is tolerated only because the handle is closing */
    } else {
        db->frozen = NULL;
    }
    pthread_rwlock_unlock(&db->ixlock);
    mt_free(fr);
    run_close(old);
    if (old && old_tx != upto) { /* kept as the next checkpoint's spare (close deletes it) */
        run_file_name(name, sizeof name, old_tx);
        run_spare_keep(idir, name);
    }
    atomic_fetch_add(&db->st_checkpoints, 1);
    return 0;
}

static void *ckpt_main(void *arg) {
    tally_db *db = arg;
    pthread_setname_np(pthread_self(), "tally-ckpt");
    /* Checkpoints are derived work with no deadline: let committers and
    ** readers have the CPU first (Linux applies nice per thread). Memory is
    ** the bound: the active memtable keeps growing while a checkpoint lags. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    pthread_mutex_lock(&db->mu);
    for (;;) {
        while (!db->ckpt_stop && !(db->frozen && !db->ckpt_error && db_visible(db) >= db->freeze_tx) &&
               !(db->frozen && db->failed))
            pthread_cond_wait(&db->ckpt_cond, &db->mu);
        if (db->ckpt_stop || db->failed) break;
        pthread_mutex_unlock(&db->mu);
        pthread_mutex_lock(&db->ckpt_mu);
        int rc = db->frozen ? ckpt_run_once(db, 0) : 0; /* tally_db_checkpoint may have done it */
        pthread_mutex_unlock(&db->ckpt_mu);
        pthread_mutex_lock(&db->mu);
        if (rc) {
            /* reported through tally_db_stats (a library does not print) */
            db->ckpt_error = rc;
            snprintf(db->ckpt_errmsg, sizeof db->ckpt_errmsg, "%s", tally_errmsg());
        }
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* Waits (mu held) until the frozen memtable's transactions are visible. */
static int wait_frozen_durable(tally_db *db) {
    while (db->frozen && db_visible(db) < db->freeze_tx && !db->failed) pthread_cond_wait(&db->ckpt_cond, &db->mu);
    return db->failed ? TALLY_EFATAL : 0;
}

int tally_db_checkpoint(tally_db *db) {
    if (!db) return tally_seterr(TALLY_EINVAL, "NULL handle");
    if (db->opt.read_only) return tally_seterr(TALLY_EINVAL, "handle is read-only");
    pthread_mutex_lock(&db->ckpt_mu);
    int rc = 0;
    for (int round = 0; rc == 0 && round < 2; round++) {
        /* round 0 finishes a pending frozen memtable; round 1 freezes the rest */
        pthread_mutex_lock(&db->mu);
        if (round == 1 && !db->frozen && db->active->nversions) {
            pthread_rwlock_wrlock(&db->ixlock);
            rc = ix_freeze(db);
            pthread_rwlock_unlock(&db->ixlock);
        }
        if (rc == 0) rc = wait_frozen_durable(db);
        int have = db->frozen != NULL;
        pthread_mutex_unlock(&db->mu);
        if (rc == 0 && have) rc = ckpt_run_once(db, 0);
    }
    pthread_mutex_unlock(&db->ckpt_mu);
    if (rc == 0) { /* a paused background checkpointer may resume */
        pthread_mutex_lock(&db->mu);
        db->ckpt_error = 0;
        pthread_cond_broadcast(&db->ckpt_cond);
        pthread_mutex_unlock(&db->mu);
    }
    return rc;
}

int ckpt_start(tally_db *db) {
    if (pthread_create(&db->ckpt_thread, NULL, ckpt_main, db) != 0)
        return tally_seterr(TALLY_ENOMEM, "cannot start the checkpoint thread");
    db->ckpt_started = 1;
    return 0;
}

void ckpt_stop(tally_db *db) {
    if (!db->ckpt_started) return;
    pthread_mutex_lock(&db->mu);
    db->ckpt_stop = 1;
    pthread_cond_broadcast(&db->ckpt_cond);
    pthread_mutex_unlock(&db->mu);
    pthread_join(db->ckpt_thread, NULL);
    db->ckpt_started = 0;
}
