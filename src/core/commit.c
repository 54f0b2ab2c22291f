/*
** commit.c — the write path: prepare, serial section, group commit.
**
** A committer encodes its record and hashes its entries in its own thread
** (the SHA-256 work runs on every core), then takes `mu` for the short serial
** part, queues the record and sleeps on its own condition variable. The log
** writer thread takes the whole queue, writes it with as few pwritev calls as
** segments allow, issues ONE fdatasync for the group, appends the tx index
** items and Merkle leaves, publishes visible_tx and wakes exactly the
** committers of that group. While it syncs, the next group gathers. A
** dedicated writer (rather than a leader chosen among committers) removes the
** hand-off between groups and the wake-everyone herd: measured with 64
** threads, the hand-off cost more than the fsync.
** A failed write or fsync fails the handle (invariant 4 of db_int.h): the
** queued transactions get the error, none is acknowledged.
** tally_commit_async queues the same record without a waiting thread: after
** the group's fdatasync (or failure) the writer hands it to the completion
** thread, which calls its completion and frees it (the writer itself goes
** straight on to the next group). An event-driven server thus keeps thousands of
** transactions in flight without a thread for each.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "core/db_int.h"
#include "merkle/rfc6962.h"
#include "util/crc32c.h"
#include "util/err.h"

#define BATCH_IOV_MAX 512
/* The group-commit wait (opts.group_commit_wait): before taking the queue
** the writer waits for the committers the previous batch answered, at most
** 1/HERD_WAIT_FRACTION of the last fdatasync's duration (and
** HERD_WAIT_NS_MAX), and no longer once no record has arrived for
** HERD_QUIET_NS. See herd_wait. */
#define HERD_WAIT_NS_MAX   2000000u /* 2 ms */
#define HERD_WAIT_FRACTION 2u       /* of the last fdatasync: at most a half */
#define HERD_QUIET_NS      100000u  /* 100 us without an arrival: the herd is in */

static uint64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

uint64_t db_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int validate(const tally_entry *e, size_t n, size_t tx_meta_len, size_t *rec_len) {
    if (!e || n == 0) return tally_seterr(TALLY_EINVAL, "a transaction needs at least one entry");
    if (n > TALLY_TX_ENTRIES_MAX)
        return tally_seterr(TALLY_ETOOBIG, "%zu entries in one transaction (limit %u)", n, TALLY_TX_ENTRIES_MAX);
    if (tx_meta_len > TALLY_META_BYTES_MAX)
        return tally_seterr(TALLY_ETOOBIG, "transaction metadata of %zu bytes (limit %u)", tx_meta_len,
                            TALLY_META_BYTES_MAX);
    size_t total = RECORD_HDR_LEN + TXH_FIXED_LEN + tx_meta_len;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].key || e[i].key_len == 0) return tally_seterr(TALLY_EINVAL, "entry %zu: empty key", i);
        if (e[i].key_len > TALLY_KEY_BYTES_MAX)
            return tally_seterr(TALLY_ETOOBIG, "entry %zu: key of %zu bytes (limit %u)", i, e[i].key_len,
                                TALLY_KEY_BYTES_MAX);
        if (e[i].value_len > TALLY_VALUE_BYTES_MAX)
            return tally_seterr(TALLY_ETOOBIG, "entry %zu: value of %zu bytes (limit %u)", i, e[i].value_len,
                                TALLY_VALUE_BYTES_MAX);
        if (e[i].meta_len > TALLY_META_BYTES_MAX)
            return tally_seterr(TALLY_ETOOBIG, "entry %zu: metadata of %zu bytes (limit %u)", i, e[i].meta_len,
                                TALLY_META_BYTES_MAX);
        if ((e[i].value_len && !e[i].value) || (e[i].meta_len && !e[i].meta))
            return tally_seterr(TALLY_EINVAL, "entry %zu: NULL value or metadata with a length", i);
        if (e[i].deleted > 1 || (e[i].deleted && e[i].value_len))
            return tally_seterr(TALLY_EINVAL, "entry %zu: a tombstone carries no value", i);
        if (e[i].cond > TALLY_COND_REV) return tally_seterr(TALLY_EINVAL, "entry %zu: unknown condition", i);
        total += ENTRY_HDR_LEN + e[i].key_len + e[i].meta_len + e[i].value_len;
        if (total > TALLY_TX_BYTES_MAX)
            return tally_seterr(TALLY_ETOOBIG, "transaction larger than %u bytes", TALLY_TX_BYTES_MAX);
    }
    *rec_len = total;
    return 0;
}

/* Each committing thread keeps its record buffer between commits: a fresh
** ~200 KiB malloc per transaction is an mmap/munmap pair and ~50 page faults
** (measured: a quarter of ingest CPU). Buffers up to TLS_BUF_BYTES_MAX are
** kept; larger ones are freed after the commit. */
#define TLS_BUF_BYTES_MAX (8u << 20)
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
typedef struct tls_buf {
    uint8_t *p;
    size_t cap;
} tls_buf;
static void tls_free(void *v) {
    tls_buf *b = v;
    free(b->p);
    free(b);
}
static void tls_init(void) { (void)pthread_key_create(&tls_key, tls_free); }

static uint8_t *buf_get(size_t len) {
    pthread_once(&tls_once, tls_init);
    if (len > TLS_BUF_BYTES_MAX) return malloc(len);
    tls_buf *b = pthread_getspecific(tls_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) return NULL;
        if (pthread_setspecific(tls_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < len) {
        size_t cap = len < (256u << 10) ? (256u << 10) : len;
        uint8_t *np = malloc(cap);
        if (!np) return NULL;
        free(b->p);
        b->p = np;
        b->cap = cap;
    }
    return b->p;
}

static void buf_put(uint8_t *p, size_t len) {
    if (len > TLS_BUF_BYTES_MAX) free(p);
}

/* Encodes the record (all but tx id, time and prev hash) and hashes it.
** own: the buffer is malloc'd for this record alone (tally_commit_async: it
** outlives the call), else it is the thread's reusable buffer. */
static int prepare(pending *p, const tally_entry *e, size_t n, const void *meta, size_t meta_len, int own) {
    size_t rec_len = 0;
    int rc = validate(e, n, meta_len, &rec_len);
    if (rc) return rc;
    size_t scratch = (n + (n + 1) / 2) * 32;
    size_t rec_room = (rec_len + 63) & ~(size_t)63; /* scratch arrays start aligned */
    p->mem_len = rec_room + scratch + n * 8 + n * sizeof(mt_key *);
    uint8_t *mem = own ? malloc(p->mem_len) : buf_get(p->mem_len);
    if (!mem) return tally_seterr(TALLY_ENOMEM, "out of memory for a %zu-byte transaction", rec_len);
    uint8_t (*leaves)[32] = (uint8_t (*)[32])(mem + rec_room);
    p->rec = mem;
    p->rec_len = rec_len;
    p->txh_len = (uint32_t)(TXH_FIXED_LEN + meta_len);
    p->hashes = (uint64_t *)(mem + rec_room + scratch);
    p->nodes = (mt_key **)(p->hashes + n);
    p->e = e;
    p->n = n;
    uint8_t *txh = mem + RECORD_HDR_LEN, *ent = txh + p->txh_len, *w = ent;
    for (size_t i = 0; i < n; i++) {
        entry_view v = {.ns = e[i].ns, .flags = e[i].deleted ? ENTRY_FLAG_DELETED : 0,
                        .key_len = (uint16_t)e[i].key_len, .meta_len = (uint32_t)e[i].meta_len,
                        .value_len = (uint32_t)e[i].value_len, .hdr = w};
        w[0] = v.ns;
        w[1] = v.flags;
        wr16(w + 2, v.key_len);
        wr32(w + 4, v.meta_len);
        wr32(w + 8, v.value_len);
        uint8_t *q = w + ENTRY_HDR_LEN;
        memcpy(q, e[i].key, e[i].key_len);
        if (e[i].meta_len) memcpy(q + e[i].key_len, e[i].meta, e[i].meta_len);
        if (e[i].value_len) memcpy(q + e[i].key_len + e[i].meta_len, e[i].value, e[i].value_len);
        v.key = q;
        v.meta = q + v.key_len;
        v.value = v.meta + v.meta_len;
        entry_leaf_hash(&v, leaves[i]);
        p->hashes[i] = ix_hash(e[i].ns, e[i].key, e[i].key_len);
        w += ENTRY_HDR_LEN + e[i].key_len + e[i].meta_len + e[i].value_len;
    }
    uint32_t entries_len = (uint32_t)(w - ent);
    memset(txh, 0, TXH_FIXED_LEN);
    txh[0] = TXH_KIND_TX_V1;
    rfc6962_root_of_leaves((const rfc6962_hash *)leaves, n, (rfc6962_hash *)(leaves + n), txh + 49);
    wr32(txh + 81, (uint32_t)n);
    wr32(txh + 85, entries_len);
    wr32(txh + 89, (uint32_t)meta_len);
    if (meta_len) memcpy(txh + TXH_FIXED_LEN, meta, meta_len);
    p->entries_crc = tally_crc32c(0, ent, entries_len);
    return 0;
}

/* Serial part, 1: preconditions and duplicate keys. Caller holds mu + ixlock(w). */
static int check_entries(tally_db *db, pending *p) {
    uint64_t mark = ++db->attempt;
    ix_prefetch(db, p->hashes, p->n);
    for (size_t i = 0; i < p->n; i++) {
        const tally_entry *e = &p->e[i];
        mt_key *k = ix_node(db, e->ns, e->key, e->key_len, p->hashes[i]);
        if (!k) return tally_seterr(TALLY_ENOMEM, "out of memory in the index");
        p->nodes[i] = k;
        if (k->mark == mark)
            return tally_seterr(TALLY_EINVAL, "entry %zu: key %.*s appears twice in one transaction", i,
                                (int)(e->key_len > 64 ? 64 : e->key_len), (const char *)e->key);
        k->mark = mark;
        if (e->cond == TALLY_COND_NONE) continue;
        uint64_t rev;
        int deleted;
        ix_latest_any(db, k, e->ns, e->key, e->key_len, p->hashes[i], &rev, &deleted);
        if (e->cond == TALLY_COND_ABSENT && rev && !deleted)
            return tally_seterr(TALLY_ECONFLICT, "entry %zu: key exists (revision %llu)", i,
                                (unsigned long long)rev);
        if (e->cond == TALLY_COND_REV && rev != e->cond_rev)
            return tally_seterr(TALLY_ECONFLICT, "entry %zu: key is at revision %llu, not %llu", i,
                                (unsigned long long)rev, (unsigned long long)e->cond_rev);
    }
    return 0;
}

/* Serial part, 2: id, time, chain, position, index versions. */
static int assign(tally_db *db, pending *p) {
    uint8_t *txh = p->rec + RECORD_HDR_LEN;
    p->tx = db->next_tx;
    p->ts = db_now_ns();
    if (p->ts < db->last_ts) p->ts = db->last_ts; /* times never go backwards */
    wr64(txh + 1, p->tx);
    wr64(txh + 9, p->ts);
    memcpy(txh + 17, db->last_hash, 32);
    record_hdr h = {.body_len = (uint32_t)(p->rec_len - RECORD_HDR_LEN), .tx_id = p->tx, .txh_len = p->txh_len,
                    .body_crc = tally_crc32c(p->entries_crc, txh, p->txh_len), .sync_lag = SYNC_LAG_UNKNOWN};
    record_hdr_encode(p->rec, &h); /* sync_lag is set by the leader that writes it */
    rfc6962_leaf_hash(txh, p->txh_len, p->leaf);
    p->pos = log_reserve(db->log, (uint32_t)p->rec_len);
    uint64_t off = RECORD_HDR_LEN + p->txh_len;
    for (size_t i = 0; i < p->n; i++) {
        const tally_entry *e = &p->e[i];
        mt_key *k = p->nodes[i];
        ix_version v = {p->tx, p->pos + off, (uint32_t)i, e->deleted ? ENTRY_FLAG_DELETED : 0};
        if (!k || mt_add_version(db->active, k, &v) != 0) {
            /* the index may now hold part of this tx: fail the handle (invariant 4) */
            db->failed = TALLY_ENOMEM;
            return tally_seterr(TALLY_ENOMEM, "out of memory in the index; handle failed");
        }
        off += ENTRY_HDR_LEN + e->key_len + e->meta_len + e->value_len;
    }
    db->next_tx++;
    db->last_ts = p->ts;
    memcpy(db->last_hash, p->leaf, 32);
    return 0;
}

/* Committers of batch g sleep on the futex word done_word[g & 1]; the writer
** marks every record of the batch done, bumps the word and wakes them all with
** one FUTEX_WAKE. Alternating words keep the next batch's committers asleep.
** (Measured: a condition variable per committer cost one syscall per commit
** on the writer's path between two fsyncs, plus a mutex hand-off per waiter.) */
static void batch_wake(tally_db *db, uint64_t g) {
    _Atomic uint32_t *w = &db->done_word[g & 1];
    atomic_fetch_add_explicit(w, 1, memory_order_release);
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void batch_wait(tally_db *db, pending *p) {
    _Atomic uint32_t *w = &db->done_word[p->batch & 1];
    for (;;) {
        uint32_t seen = atomic_load_explicit(w, memory_order_acquire);
        if (atomic_load_explicit(&p->done, memory_order_acquire)) return;
        syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    }
}

/* Ends every record of list with rc (0: acknowledged): marks the waiting
** ones done (each may vanish at once, so next is read first) and chains the
** asynchronous ones onto *async_tail for complete_async. */
static void end_records(pending *list, int rc, pending ***async_tail) {
    pending *next;
    for (pending *p = list; p; p = next) {
        next = p->next;
        p->rc = rc;
        if (p->done_fn) {
            **async_tail = p;
            *async_tail = &p->next;
        } else {
            atomic_store_explicit(&p->done, 1, memory_order_release);
        }
    }
    **async_tail = NULL;
}

/* Hands the async list to the completion thread (one signal per batch), so
** the writer goes straight on to the next group. Called by the writer with
** mu held (lock order: mu, then cq_mu). */
static void complete_async(tally_db *db, pending *async) {
    if (!async) return;
    pending *last = async;
    while (last->next) last = last->next;
    pthread_mutex_lock(&db->cq_mu);
    if (db->cq_tail) {
        db->cq_tail->next = async;
    } else {
        db->cq_head = async;
        pthread_cond_signal(&db->cq_cond);
    }
    db->cq_tail = last;
    pthread_mutex_unlock(&db->cq_mu);
}

/* The completion thread: calls each completion in commit order, then frees
** the record. Exits when stopped and nothing is queued. */
static void *completer_main(void *arg) {
    tally_db *db = arg;
    pthread_setname_np(pthread_self(), "tally-complete"); /* for top -H, perf, gdb */
    pthread_mutex_lock(&db->cq_mu);
    for (;;) {
        while (!db->cq_head && !db->cq_stop) pthread_cond_wait(&db->cq_cond, &db->cq_mu);
        pending *list = db->cq_head, *next;
        if (!list) break;
        db->cq_head = db->cq_tail = NULL;
        pthread_mutex_unlock(&db->cq_mu);
        for (pending *p = list; p; p = next) {
            next = p->next;
            p->done_fn(p->done_ctx, p->rc, p->rc ? 0 : p->tx);
            free(p->rec);
            free(p);
        }
        pthread_mutex_lock(&db->cq_mu);
    }
    pthread_mutex_unlock(&db->cq_mu);
    return NULL;
}

static int completer_start(tally_db *db) {
    int rc = 0;
    pthread_mutex_lock(&db->cq_mu);
    if (!atomic_load(&db->cq_started)) {
        if (pthread_create(&db->cq_thread, NULL, completer_main, db) != 0)
            rc = tally_seterr(TALLY_ENOMEM, "cannot start the completion thread");
        else
            atomic_store(&db->cq_started, 1);
    }
    pthread_mutex_unlock(&db->cq_mu);
    return rc;
}

void completer_stop(tally_db *db) {
    if (!atomic_load(&db->cq_started)) return;
    pthread_mutex_lock(&db->cq_mu);
    db->cq_stop = 1;
    pthread_cond_signal(&db->cq_cond);
    pthread_mutex_unlock(&db->cq_mu);
    pthread_join(db->cq_thread, NULL);
    atomic_store(&db->cq_started, 0);
}

/* Writes, syncs and publishes one batch (possibly empty: a sync request).
** Called by the writer with mu held; drops it meanwhile. */
static void run_batch(tally_db *db) {
    pending *batch = db->q_head;
    uint64_t g = db->batch_seq++;
    db->last_batch_n = db->q_count;
    db->q_head = db->q_tail = NULL;
    db->q_count = 0;
    pthread_mutex_unlock(&db->mu);

    struct iovec iov[BATCH_IOV_MAX];
    int niov = 0, rc = 0;
    uint64_t first_pos = 0, next_pos = 0, count = 0;
    for (pending *p = batch; p && rc == 0; p = p->next, count++) {
        /* how far the log is synced as this record is written: lets recovery
        ** tell an unacknowledged hole from damage to an acknowledged record */
        uint64_t lag = p->tx - db->synced_tx;
        record_hdr_set_sync_lag(p->rec, lag < SYNC_LAG_UNKNOWN ? (uint32_t)lag : SYNC_LAG_UNKNOWN);
        if (niov && (niov == BATCH_IOV_MAX || p->pos != next_pos)) {
            rc = log_write(db->log, first_pos, iov, niov);
            niov = 0;
        }
        if (!niov) first_pos = p->pos;
        iov[niov].iov_base = p->rec;
        iov[niov++].iov_len = p->rec_len;
        next_pos = p->pos + p->rec_len;
    }
    if (rc == 0 && niov) rc = log_write(db->log, first_pos, iov, niov);
    int sync_req = db->sync_request;
    if (rc == 0 && (db->opt.durability == TALLY_SYNC_FULL || sync_req)) {
        uint64_t t0 = db_now_ns();
        rc = log_sync(db->log);
        if (rc == 0 && batch) {
            pending *last = batch;
            while (last->next) last = last->next;
            db->synced_tx = last->tx;
        } else if (rc == 0 && sync_req) {
            db->synced_tx = db_visible(db);
        }
        uint64_t took = db_now_ns() - t0;
        atomic_fetch_add(&db->st_syncs, 1);
        atomic_fetch_add(&db->st_sync_ns, took);
        db->last_sync_ns = took; /* read by the writer itself (this thread) */
    }
    /* derived data: tx index items and Merkle leaves, in chunks */
    uint8_t items[256][TXIDX_ITEM_LEN];
    rfc6962_hash leaves[256];
    size_t k = 0;
    uint64_t last_tx = 0;
    for (pending *p = batch; p && rc == 0; p = p->next) {
        wr64(items[k], p->pos | (db->opt.durability == TALLY_SYNC_FULL ? TXIDX_SYNCED : 0));
        wr64(items[k] + 8, p->ts);
        memcpy(leaves[k], p->leaf, 32);
        last_tx = p->tx;
        if (++k == 256 || !p->next) {
            rc = afile_append(db->txidx, items, k);
            if (rc == 0) rc = mstore_append(db->ms, (const rfc6962_hash *)leaves, k);
            k = 0;
        }
    }
    int err = rc ? tally_err_from_errno(rc) : 0;

    pthread_mutex_lock(&db->mu);
    if (sync_req) { /* writer_sync reads the outcome from db->failed */
        db->sync_request = 0;
        pthread_cond_broadcast(&db->synced_cond);
    }
    pending *async = NULL, **async_tail = &async;
    if (err) {
        db->failed = err;
        end_records(batch, err, &async_tail);
        end_records(db->q_head, err, &async_tail); /* queued behind the batch */
        db->q_head = db->q_tail = NULL;
        db->q_count = 0;
        batch_wake(db, g);
        batch_wake(db, g + 1); /* the queued ones were waiting for the next batch */
        pthread_cond_broadcast(&db->ckpt_cond); /* tally_db_checkpoint waiters */
    } else {
        if (last_tx) atomic_store_explicit(&db->visible_tx, last_tx, memory_order_release);
        if (db->frozen && last_tx >= db->freeze_tx) pthread_cond_broadcast(&db->ckpt_cond);
        atomic_fetch_add(&db->st_commits, count);
        end_records(batch, 0, &async_tail);
        batch_wake(db, g);
    }
    complete_async(db, async);
}

/* The herd wait (mu held). Committers that are answered together come back
** together: with C clients each keeping one transaction in flight, a batch of
** n releases n clients whose next commits arrive a moment later, while the
** writer is already syncing the few that arrived meanwhile; each commit then
** waits for two fdatasyncs, and only about C/2 share one. So, like
** PostgreSQL's commit_delay or MySQL's binlog_group_commit_sync_delay but
** adaptive, the writer waits for as many records as the previous batch had,
** bounded by half the last fdatasync and ended early once none arrived for
** HERD_QUIET_NS. A lone committer (previous batch of 1) never waits; nor does
** a sync request, a stop, or durability NONE (no fdatasync to amortize).
** Off unless opts.group_commit_wait: measured with 64 committing threads in
** one process (they come back within microseconds) it cost 7%; with 64 HTTP
** clients (tallyd) it doubled the group, halved p99 and added 3-8%. */
static void herd_wait(tally_db *db) {
    /* the committers answered by the previous batch come back on top of those
    ** queued meanwhile */
    if (!db->opt.group_commit_wait) return;
    uint64_t want = db->q_count + db->last_batch_n, cap = db->last_sync_ns / HERD_WAIT_FRACTION;
    if (db->last_batch_n <= 1 || cap == 0 || db->sync_request || db->writer_stop) return;
    if (cap > HERD_WAIT_NS_MAX) cap = HERD_WAIT_NS_MAX;
    uint64_t start = mono_ns(), deadline = start + cap;
    db->herd_target = want;
    for (;;) {
        uint64_t now = mono_ns();
        if (db->q_count >= want || now >= deadline || db->sync_request || db->writer_stop) break;
        uint64_t last = db->q_last_ns > start ? db->q_last_ns : start;
        if (now - last >= HERD_QUIET_NS) break;
        uint64_t until = last + HERD_QUIET_NS < deadline ? last + HERD_QUIET_NS : deadline;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000ull), .tv_nsec = (long)(until % 1000000000ull)};
        pthread_cond_timedwait(&db->herd_cond, &db->mu, &ts); /* submit signals at want */
    }
    db->herd_target = 0;
}

static void *writer_main(void *arg) {
    tally_db *db = arg;
    pthread_setname_np(pthread_self(), "tally-writer");
    pthread_mutex_lock(&db->mu);
    for (;;) {
        while (!db->q_head && !db->sync_request && !db->writer_stop)
            pthread_cond_wait(&db->queue_cond, &db->mu);
        if (!db->q_head && !db->sync_request) break; /* stop, nothing queued */
        if (db->q_head) herd_wait(db);
        run_batch(db);
        if (log_group_end(db->log) && !db->failed) { /* zeros ahead of the log: log.c */
            pthread_mutex_unlock(&db->mu);
            log_prealloc(db->log);
            pthread_mutex_lock(&db->mu);
        }
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

int writer_start(tally_db *db) {
    if (pthread_create(&db->writer_thread, NULL, writer_main, db) != 0)
        return tally_seterr(TALLY_ENOMEM, "cannot start the log writer thread");
    db->writer_started = 1;
    return 0;
}

void writer_stop(tally_db *db) {
    if (!db->writer_started) return;
    pthread_mutex_lock(&db->mu);
    db->writer_stop = 1;
    pthread_cond_signal(&db->queue_cond);
    pthread_mutex_unlock(&db->mu);
    pthread_join(db->writer_thread, NULL);
    db->writer_started = 0;
}

int writer_sync(tally_db *db) {
    pthread_mutex_lock(&db->mu);
    if (db->failed) {
        pthread_mutex_unlock(&db->mu);
        return TALLY_EFATAL;
    }
    db->sync_request = 1;
    pthread_cond_signal(&db->queue_cond);
    while (db->sync_request && !db->failed) pthread_cond_wait(&db->synced_cond, &db->mu);
    int rc = db->failed ? db->failed : 0;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Checks preconditions, assigns the id and queues p (prepared) for the
** writer. Returns 0 (queued: p now belongs to the writer until done) or an
** error (nothing queued). */
static int submit(tally_db *db, pending *p) {
    int rc;
    pthread_mutex_lock(&db->mu);
    if (db->failed) {
        rc = tally_seterr(TALLY_EFATAL, "handle failed earlier (%s); reopen to recover", tally_strerror(db->failed));
    } else {
        pthread_rwlock_wrlock(&db->ixlock);
        rc = check_entries(db, p);
        if (rc == 0) rc = assign(db, p);
        if (rc == 0 && ix_checkpoint_due(db) && ix_freeze(db) == 0) pthread_cond_signal(&db->ckpt_cond);
        pthread_rwlock_unlock(&db->ixlock);
    }
    if (rc) {
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    if (db->q_tail) {
        db->q_tail->next = p;
    } else {
        db->q_head = p;
        pthread_cond_signal(&db->queue_cond);
    }
    db->q_tail = p;
    p->batch = db->batch_seq;
    if (db->opt.group_commit_wait) db->q_last_ns = mono_ns(); /* no clock read otherwise */
    if (++db->q_count == db->herd_target) pthread_cond_signal(&db->herd_cond);
    pthread_mutex_unlock(&db->mu);
    return 0;
}

static int commit_args_check(tally_db *db, const void *tx_meta, size_t tx_meta_len) {
    if (!db) return tally_seterr(TALLY_EINVAL, "NULL handle");
    if (db->opt.read_only) return tally_seterr(TALLY_EINVAL, "handle is read-only");
    if (tx_meta_len && !tx_meta) return tally_seterr(TALLY_EINVAL, "NULL transaction metadata");
    return 0;
}

int tally_commit(tally_db *db, uint64_t *out_tx, const tally_entry *entries, size_t n, const void *tx_meta,
                 size_t tx_meta_len) {
    int rc = commit_args_check(db, tx_meta, tx_meta_len);
    if (rc) return rc;
    pending p;
    memset(&p, 0, sizeof p);
    rc = prepare(&p, entries, n, tx_meta, tx_meta_len, 0);
    if (rc) return rc;
    rc = submit(db, &p);
    if (rc) {
        buf_put(p.rec, p.mem_len);
        return rc;
    }
    batch_wait(db, &p);
    rc = p.rc;
    buf_put(p.rec, p.mem_len);
    if (rc) return tally_seterr(rc, "transaction %llu not acknowledged: the log write or fsync failed",
                                (unsigned long long)p.tx);
    if (out_tx) *out_tx = p.tx;
    return 0;
}

int tally_commit_async(tally_db *db, const tally_entry *entries, size_t n, const void *tx_meta,
                       size_t tx_meta_len, tally_commit_fn done, void *ctx) {
    int rc = commit_args_check(db, tx_meta, tx_meta_len);
    if (rc) return rc;
    if (!done) return tally_seterr(TALLY_EINVAL, "NULL completion function");
    if (!atomic_load(&db->cq_started) && (rc = completer_start(db)) != 0) return rc;
    pending *p = calloc(1, sizeof *p);
    if (!p) return tally_seterr(TALLY_ENOMEM, "out of memory for a transaction");
    rc = prepare(p, entries, n, tx_meta, tx_meta_len, 1);
    if (rc == 0) {
        p->done_fn = done;
        p->done_ctx = ctx;
        rc = submit(db, p);
    }
    if (rc) {
        free(p->rec);
        free(p);
    }
    return rc;
}
