/*
** db_int.h — the tally_db handle, shared by the files of src/core.
**
** Data flow (docs/ARCHITECTURE.md):
**   commit:  prepare (caller thread: encode, hash entries, entries root)
**            -> serial section under `mu`: preconditions, tx id, time, chain
**               hash, log position, index versions (invisible until durable)
**            -> group commit: the log writer thread takes every queued
**               record, writes them, one fdatasync, appends tx index +
**               Merkle leaves, publishes visible_tx, wakes each committer.
**   read:    under ixlock (read): active memtable -> frozen memtable -> run,
**            versions with tx <= as_of <= visible_tx.
**   checkpoint thread: frozen memtable + run -> new run, then DIR/INDEX.
**
** Lock order: mu before ixlock. Invariants:
**   (1) visible_tx <= last tx whose record is synced (durability FULL) and
**       whose tx index item and Merkle leaf are written;
**   (2) every version in the index with tx <= visible_tx points at its entry;
**       versions with tx > visible_tx are invisible to readers;
**   (3) run covers exactly txs 1..index_tx; frozen covers (index_tx, freeze_tx];
**       active covers (freeze_tx or index_tx, next_tx);
**   (4) once `failed` is set no transaction is acknowledged by this handle.
*/
#ifndef TALLY_DB_INT_H
#define TALLY_DB_INT_H
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include "tally.h"
#include "index/memtable.h"
#include "index/run.h"
#include "log/log.h"
#include "merkle/store.h"
#include "os/afile.h"

#define ETREE_SLOTS 4          /* cached entry trees (read.c) */
#define ETREE_ENTRIES_MIN 64u  /* smaller transactions (and under ETREE_BYTES_MIN of */
#define ETREE_BYTES_MIN 65536u /* entries) are hashed again for each proof */

#define TXIDX_ITEM_LEN 16 /* u64 log position | u64 ts_ns */
/* Bit 63 of an item's position: its record had been fdatasynced when the item
** was written (always so with durability FULL). Recovery takes it as proof
** that the record was acknowledged. */
#define TXIDX_SYNCED   (1ull << 63)
#define TXCHECK_CHUNKS 4096 /* read-check bitmap chunks of 2^20 txs (txcheck.c) */

typedef struct pending {
    uint8_t *rec;          /* the whole record, in one buffer with the scratch below */
    size_t rec_len, mem_len;
    uint32_t txh_len;
    const tally_entry *e;
    size_t n;
    uint64_t *hashes;      /* key hash per entry */
    mt_key **nodes;        /* active memtable node per entry (serial section) */
    uint64_t tx, pos, ts;
    uint8_t leaf[32];      /* tx hash */
    uint32_t entries_crc;  /* CRC-32C of the entries section (prepare) */
    int rc;
    _Atomic int done;      /* set (release) by the writer; rc is valid after */
    uint64_t batch;        /* the batch number this record is written in */
    tally_commit_fn done_fn; /* tally_commit_async: called by the writer, then
                              ** the writer frees rec and this pending */
    void *done_ctx;
    struct pending *next;
} pending;

struct tally_db {
    char dir[PATH_MAX];
    tally_options opt;
    int lock_fd;
    tlog *log;
    afile *txidx;
    mstore *ms;

    pthread_mutex_t mu;
    pthread_cond_t queue_cond;  /* wakes the log writer: queue or sync request */
    pthread_cond_t synced_cond; /* a requested sync finished */
    pthread_rwlock_t ixlock;
    memtable *active, *frozen;
    mt_pool *mt_pool;           /* arena blocks passed from checkpointed memtables to new ones */
    run *run;
    uint64_t index_tx, freeze_tx;
    uint8_t index_root[32];     /* ledger root at index_tx, from INDEX */
    uint64_t next_tx, last_ts, attempt;
    uint64_t synced_tx;         /* last tx whose record is synced (leader only) */
    uint8_t last_hash[32];
    pending *q_head, *q_tail;
    uint64_t batch_seq;         /* number of the batch the queue will become (mu) */
    /* The group-commit wait (commit.c, herd_wait): under mu, except
    ** last_sync_ns, which only the writer thread reads and writes */
    uint64_t q_count;           /* records queued */
    uint64_t q_last_ns;         /* CLOCK_MONOTONIC of the last arrival */
    uint64_t herd_target;       /* the writer waits for this many (0: not waiting) */
    uint64_t last_batch_n;      /* records in the previous batch */
    uint64_t last_sync_ns;      /* duration of the previous batch's fdatasync */
    pthread_cond_t herd_cond;   /* CLOCK_MONOTONIC: the herd is in */
    _Atomic uint32_t done_word[2]; /* futex words: batch g's committers wait on [g & 1] */
    pthread_t writer_thread;
    int writer_started, writer_stop;
    /* tally_commit_async's completions run on their own thread (started by
    ** the first async commit), off the writer's path between two fsyncs */
    pthread_mutex_t cq_mu;      /* guards cq_*; taken after mu, never before */
    pthread_cond_t cq_cond;
    struct pending *cq_head, *cq_tail;
    pthread_t cq_thread;
    _Atomic int cq_started;
    int cq_stop;
    int sync_request;           /* checkpoint asks the writer for an fdatasync */
    int failed;                 /* 0 or the TALLY_E* that failed the handle */
    _Atomic uint64_t visible_tx;

    pthread_mutex_t ckpt_mu;    /* one checkpoint at a time (thread or API) */
    pthread_t ckpt_thread;
    int ckpt_started, ckpt_stop, ckpt_error;
    char ckpt_errmsg[256];      /* the message of ckpt_error (under mu) */
    pthread_cond_t ckpt_cond;

    _Atomic(uint64_t) *checked[TXCHECK_CHUNKS]; /* txcheck.c */

    /* read.c: the entry trees of the last few large transactions proven, so
    ** proofs of many entries of one transaction hash it once. */
    pthread_mutex_t etree_mu;
    struct etree *etree[ETREE_SLOTS];
    unsigned etree_next;

    _Atomic uint64_t st_commits, st_syncs, st_sync_ns, st_checkpoints;
};

/* read.c: frees the entry-tree cache (close). */
void etree_cache_free(tally_db *db);

/* index.c */
/* Latest version count of (ns,key) in the layers older than `active`. */
uint64_t ix_older_count(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash);
/* Finds or creates the active node. NULL on allocation failure. */
mt_key *ix_node(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash);
/* Latest version overall (visible or not): *rev (0 = never written), *deleted. */
void ix_latest_any(tally_db *db, mt_key *node, uint8_t ns, const void *key, size_t len, uint64_t hash,
                   uint64_t *rev, int *deleted);
/* The version of (ns,key) visible at as_of. Returns 0 or TALLY_ENOTFOUND. */
int ix_lookup_asof(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t as_of,
                   ix_version *out, uint64_t *rev);
/* Version with revision rev (no visibility filter). Returns 0 or TALLY_ENOTFOUND. */
int ix_lookup_rev(tally_db *db, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t rev,
                  ix_version *out);
/* Prefetches every layer's hash slot for n key hashes (before a batch of lookups). */
void ix_prefetch(tally_db *db, const uint64_t *hashes, size_t n);
/* Freezes the active memtable (caller holds mu and ixlock for writing). */
int ix_freeze(tally_db *db);
/* Whether the active memtable is due for a checkpoint. */
int ix_checkpoint_due(const tally_db *db);

/* commit.c: the log writer thread. */
int writer_start(tally_db *db);
void writer_stop(tally_db *db);
void completer_stop(tally_db *db); /* after writer_stop: runs what is queued */
/* Makes the writer fdatasync the log now (durability NONE checkpoints). */
int writer_sync(tally_db *db);

/* checkpoint.c */
int ckpt_start(tally_db *db);
void ckpt_stop(tally_db *db);
/* Writes the frozen memtable (or, with final=1, everything) as the new run. */
int ckpt_run_once(tally_db *db, int final);
#define MANIFEST_LEN 96
int manifest_read(const char *dir, uint64_t *index_tx, uint8_t tx_hash[32], uint8_t root[32]);
int manifest_write(const char *dir, uint64_t index_tx, const uint8_t tx_hash[32], const uint8_t root[32]);
void run_file_name(char *buf, size_t len, uint64_t index_tx);

/* txcheck.c: checks tx once (record, entries root, tree leaf) before a read
** returns data from it. Returns 0 or TALLY_ECORRUPT. */
int db_tx_check(tally_db *db, uint64_t tx);
void db_tx_check_free(tally_db *db);

/* helpers */
uint64_t db_now_ns(void);
static inline uint64_t db_visible(tally_db *db) {
    return atomic_load_explicit(&db->visible_tx, memory_order_acquire);
}
int db_txidx_get(tally_db *db, uint64_t tx, uint64_t *pos, uint64_t *ts);
/* Position and header of tx's record, validated before the log is touched:
** the derived tx index item must point inside a segment at a record header
** with a good checksum naming tx. Returns 0 or TALLY_ECORRUPT. */
int db_tx_locate(tally_db *db, uint64_t tx, uint64_t *pos, record_hdr *h);

#endif
