/*
** tally.h — the one public header of Tally's embedded engine.
**
** Tally is a verifiable ledger: an append-only, hash-chained transaction log
** accumulated in an RFC 6962 Merkle tree, with a versioned key-value index
** derived from it. This header is the whole embedded API.
**
** Conventions (LMDB / libgit2 style):
**   - Objects are opaque handles; functions are named tally_<object>_<verb>.
**   - Output parameters come first after the handle.
**   - Every function returns 0 (TALLY_OK) or a negative TALLY_E* code; the
**     calling thread's detailed message is in tally_errmsg().
**   - Ownership is stated on every function. Pointers into the ledger that a
**     read returns (values, metadata) point into read-only mappings of the
**     log and stay valid until tally_db_close(): the log never changes.
**   - Thread rules: a tally_db handle is fully thread-safe. Any number of
**     threads may read and commit concurrently; concurrent commits share
**     one fdatasync (group commit). Callbacks run with a read snapshot held:
**     they must not commit on the same handle.
**
** Namespaces: every entry carries a namespace byte. TALLY_NS_KV is the
** versioned key-value model; later data models (SQL, accounts, streams,
** system) get their own namespace in the same log (docs/FORMAT.md).
*/
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_VERSION_STRING "0.1.0"

/* ---- Error codes: a reserved negative range, like LMDB's. ---- */
#define TALLY_OK        0
#define TALLY_ENOTFOUND (-30700) /* key, revision or transaction does not exist */
#define TALLY_EINVAL    (-30701) /* bad argument or malformed input */
#define TALLY_ETOOBIG   (-30702) /* a limit was exceeded (see TALLY_*_MAX) */
#define TALLY_ECONFLICT (-30703) /* a write precondition failed; nothing written */
#define TALLY_EIO       (-30704) /* I/O error; the handle is now unusable */
#define TALLY_ECORRUPT  (-30705) /* integrity failure: corruption or tampering */
#define TALLY_ELOCKED   (-30706) /* data directory in use by another process */
#define TALLY_EFATAL    (-30707) /* handle failed earlier (write/fsync); reopen */
#define TALLY_ENOMEM    (-30708) /* out of memory */
#define TALLY_EBADPROOF (-30709) /* a proof did not verify */
#define TALLY_ENOSPC    (-30710) /* no space left on device; handle unusable */
#define TALLY_ERANGE    (-30711) /* transaction id or tree size out of range */

/* Static description of an error code ("not found", ...). Never NULL. */
const char *tally_strerror(int err);
/* The calling thread's most recent detailed error message (e.g. "data
** directory /x in use by pid 42"). Owned by the library, valid until the
** thread's next Tally call. Empty string if none. */
const char *tally_errmsg(void);

/* ---- Limits (enforced with TALLY_ETOOBIG; documented in docs/FORMAT.md). ---- */
#define TALLY_KEY_BYTES_MAX        1024u
#define TALLY_VALUE_BYTES_MAX      (1u << 20)  /* 1 MiB */
#define TALLY_META_BYTES_MAX       4096u       /* per entry and per transaction */
#define TALLY_TX_ENTRIES_MAX       65536u
#define TALLY_TX_BYTES_MAX         (64u << 20) /* encoded record, 64 MiB */
#define TALLY_HASH_LEN             32
#define TALLY_PROOF_MAX            64

/* Namespaces. */
#define TALLY_NS_KV      0u  /* versioned key-value */
#define TALLY_NS_SYSTEM  1u  /* reserved: server's system records */
#define TALLY_NS_SQL     2u  /* reserved */
#define TALLY_NS_ACCOUNT 3u  /* reserved */
#define TALLY_NS_STREAM  4u  /* reserved */

/* ---- Opening ---- */
typedef struct tally_db tally_db;

#define TALLY_SYNC_FULL 0 /* default: acknowledged only after fdatasync */
#define TALLY_SYNC_NONE 1 /* acknowledged after write(); a crash may lose a tail */

typedef struct tally_options {
    int durability;                 /* TALLY_SYNC_FULL or TALLY_SYNC_NONE */
    int read_only;                  /* 1: no lock for writing, no recovery writes */
    uint64_t segment_bytes_max;     /* log segment size; default 512 MiB */
    uint64_t checkpoint_entries_min;/* index checkpoint once this many entries are
                                       unindexed on disk (default 1M) */
    int group_commit_wait;          /* 1: before each group commit, wait (at most
                                       half the last fdatasync) for the committers
                                       the previous group answered to come back —
                                       fewer, larger groups and a lower p99 for
                                       many request/response clients (tallyd sets
                                       it); 0 (default): never wait */
} tally_options;

/* Fills *opts with the defaults. */
void tally_options_init(tally_options *opts);

/* What recovery did on open. */
typedef struct tally_open_report {
    uint64_t tx_count;           /* transactions in the ledger after recovery */
    uint64_t torn_bytes_dropped; /* bytes of an incomplete tail record truncated, up to its
                                    last non-zero byte (zeros after it cannot be told from
                                    the log's preallocated space, docs/FORMAT.md 6) */
    uint64_t replayed_tx;        /* transactions re-indexed from the log tail */
} tally_open_report;

/* Opens (creating if absent) the ledger in directory `dir`.
** opts may be NULL (defaults); report may be NULL.
** On success *out is a handle the caller closes with tally_db_close().
** Recovery: a torn tail is truncated and reported in *report; a damaged
** record followed by valid ones is refused with TALLY_ECORRUPT naming the
** transaction. A second writer gets TALLY_ELOCKED ("in use by pid N").
** Returns 0, TALLY_ELOCKED, TALLY_ECORRUPT, TALLY_EIO, TALLY_ENOMEM, TALLY_EINVAL. */
int tally_db_open(tally_db **out, const char *dir, const tally_options *opts,
                  tally_open_report *report);

/* Frees the handle. When many transactions are not yet in an index checkpoint
** (at least checkpoint_entries_min / 16), it first writes one, so the next
** open replays little; a small tail is left to be replayed from the log (a
** checkpoint rewrites the whole index run, which a one-key write on a large
** ledger should not pay for). Call with no other call in progress.
** Returns 0 or the error of that checkpoint (the handle is freed anyway). */
int tally_db_close(tally_db *db);

/* Writes an index checkpoint covering every acknowledged transaction and
** waits for it to be durable, so the next open replays nothing. Thread-safe;
** commits may continue meanwhile. Returns 0, TALLY_EIO, TALLY_ENOSPC,
** TALLY_ENOMEM, TALLY_EFATAL, TALLY_EINVAL (read-only handle). */
int tally_db_checkpoint(tally_db *db);

/* ---- Writing ---- */
#define TALLY_COND_NONE   0 /* unconditional */
#define TALLY_COND_ABSENT 1 /* key must not exist (never set, or deleted) */
#define TALLY_COND_REV    2 /* key's latest revision must be cond_rev */

typedef struct tally_entry {
    uint8_t ns;            /* namespace, TALLY_NS_KV for key-value */
    uint8_t deleted;       /* 1: a tombstone (value must be empty) */
    uint8_t cond;          /* TALLY_COND_* precondition */
    uint64_t cond_rev;     /* for TALLY_COND_REV */
    const void *key;   size_t key_len;   /* 1..TALLY_KEY_BYTES_MAX */
    const void *value; size_t value_len; /* 0..TALLY_VALUE_BYTES_MAX */
    const void *meta;  size_t meta_len;  /* optional per-entry metadata */
} tally_entry;

/* Appends one transaction of n entries atomically and waits until it is
** durable (per opts.durability). Entries are copied; the caller keeps
** ownership. Keys must be distinct within one transaction.
** *out_tx (may be NULL) receives the transaction id (1, 2, ...).
** Returns 0; TALLY_EINVAL / TALLY_ETOOBIG (bad input, nothing written);
** TALLY_ECONFLICT (a precondition failed, nothing written);
** TALLY_EIO / TALLY_ENOSPC (the write or fsync failed: the transaction is
** not acknowledged and the handle is unusable: every later call returns
** TALLY_EFATAL; reopen to recover); TALLY_EFATAL. */
int tally_commit(tally_db *db, uint64_t *out_tx, const tally_entry *entries, size_t n,
                 const void *tx_meta, size_t tx_meta_len);

/* Completion of tally_commit_async. rc is 0 (the transaction is durable and
** visible to readers; tx is its id) or the error it failed with (TALLY_EIO,
** TALLY_ENOSPC, TALLY_EFATAL; tx is 0). */
typedef void (*tally_commit_fn)(void *ctx, int rc, uint64_t tx);
/* tally_commit without waiting: validates, checks preconditions and queues
** the transaction like tally_commit, then returns. On 0, done(ctx, ...) is
** called exactly once, in commit order, on the handle's completion thread
** (started by the first async commit), once the transaction's group is
** durable or has failed; it should be short (it delays the completions
** behind it), must not block, and must not commit to or close db
** (tally_db_close waits for every completion first).
** On an error (the same codes as tally_commit before its wait: TALLY_EINVAL,
** TALLY_ETOOBIG, TALLY_ECONFLICT, TALLY_ENOMEM, TALLY_EFATAL) nothing was
** queued and done is never called. Entries are copied before it returns. */
int tally_commit_async(tally_db *db, const tally_entry *entries, size_t n,
                       const void *tx_meta, size_t tx_meta_len, tally_commit_fn done,
                       void *ctx);

/* ---- Reading the key-value model ---- */
typedef struct tally_version {
    uint64_t tx;         /* transaction that wrote this version */
    uint64_t rev;        /* 1-based revision of the key (tombstones count) */
    uint64_t ts_ns;      /* commit time, Unix nanoseconds UTC */
    uint32_t entry_index;/* position of the entry in its transaction */
    int deleted;         /* 1: this version is a tombstone */
    const void *value; size_t value_len; /* owned by db, valid until close */
    const void *meta;  size_t meta_len;  /* owned by db, valid until close */
} tally_version;

/* Latest version of key visible at transaction as_of_tx (0 = latest).
** A key whose visible version is a tombstone is TALLY_ENOTFOUND.
** Returns 0, TALLY_ENOTFOUND, TALLY_EINVAL, TALLY_ERANGE (as_of_tx beyond the ledger). */
int tally_get(tally_db *db, tally_version *out, uint8_t ns, const void *key, size_t key_len,
              uint64_t as_of_tx);
/* Revision rev (1-based) of key, tombstones included (out->deleted says).
** Returns 0, TALLY_ENOTFOUND, TALLY_EINVAL. */
int tally_get_rev(tally_db *db, tally_version *out, uint8_t ns, const void *key, size_t key_len,
                  uint64_t rev);
/* The last transaction committed at or before ts_ns (Unix ns). *out_tx is 0
** when the ledger had no transaction then. Returns 0. */
int tally_tx_at_time(tally_db *db, uint64_t *out_tx, uint64_t ts_ns);

/* Callback for history and scan. Return 0 to continue, non-zero to stop.
** key is valid only during the call (a scan's key points into the index,
** which a background checkpoint may free once the scan has returned: copy
** it to keep it); v's value and meta point into the log, valid until close. */
typedef int (*tally_version_fn)(void *ctx, const void *key, size_t key_len,
                                const tally_version *v);
/* Versions of key in revision order, starting at revision start_rev (>= 1),
** at most limit (0 = no limit). *out_total (may be NULL) receives the
** key's number of revisions. Returns 0 (also for an unknown key: total 0). */
int tally_history(tally_db *db, uint64_t *out_total, uint8_t ns, const void *key, size_t key_len,
                  uint64_t start_rev, size_t limit, tally_version_fn fn, void *ctx);
/* Keys with the given prefix in byte order, each with its version visible at
** as_of_tx (0 = latest); deleted keys are skipped. Starts after key `after`
** (NULL = from the start; for paging), at most limit keys (0 = no limit).
** Returns 0, TALLY_EINVAL, TALLY_ERANGE. */
int tally_scan(tally_db *db, uint8_t ns, const void *prefix, size_t prefix_len,
               const void *after, size_t after_len, uint64_t as_of_tx, size_t limit,
               tally_version_fn fn, void *ctx);

/* ---- Transactions, state, proofs ---- */
typedef struct tally_tx_info {
    uint64_t tx;
    uint64_t ts_ns;
    uint32_t entry_count;
    uint32_t entries_len;                 /* bytes of its entries (FORMAT.md §2.3): what
                                             an entry proof of this tx hashes */
    uint8_t hash[TALLY_HASH_LEN];         /* RFC 6962 leaf hash of the tx header */
    uint8_t prev_hash[TALLY_HASH_LEN];
    uint8_t entries_root[TALLY_HASH_LEN];
    const void *meta; size_t meta_len;    /* owned by db, valid until close */
    const void *header; size_t header_len;/* the tx header bytes: the ledger tree's
                                             leaf data (docs/FORMAT.md §2.3); owned
                                             by db, valid until close */
} tally_tx_info;

typedef struct tally_entry_view {
    uint8_t ns;
    int deleted;
    const void *key;   size_t key_len;   /* owned by db, valid until close */
    const void *value; size_t value_len;
    const void *meta;  size_t meta_len;
    uint8_t leaf_hash[TALLY_HASH_LEN];   /* RFC 6962 leaf hash in the entry tree */
    uint8_t header[12];                  /* the entry's 12 header bytes (FORMAT.md §2.4) */
} tally_entry_view;

/* Header of transaction tx. Returns 0, TALLY_ERANGE. */
int tally_tx_get(tally_db *db, tally_tx_info *out, uint64_t tx);
/* Entry i (0-based) of transaction tx. Returns 0, TALLY_ERANGE. Decodes the
** entries before i too: to read them all, use tally_tx_entries. */
int tally_tx_entry(tally_db *db, tally_entry_view *out, uint64_t tx, uint32_t i);
/* Every entry of transaction tx in order, in one pass: fn(arg, i, view) for
** i = 0..entry_count-1 (view valid during the call; its bytes until close).
** A nonzero return of fn stops the walk and is returned. Returns 0,
** TALLY_ERANGE, TALLY_ECORRUPT (a damaged entry), or fn's value. */
typedef int (*tally_entry_fn)(void *arg, uint32_t i, const tally_entry_view *view);
int tally_tx_entries(tally_db *db, uint64_t tx, tally_entry_fn fn, void *arg);

/* The ledger's current size (= last transaction id) and RFC 6962 root. */
int tally_state(tally_db *db, uint64_t *out_size, uint8_t root[TALLY_HASH_LEN]);
/* Root of the ledger tree at an earlier size (0..current). */
int tally_root_at(tally_db *db, uint8_t root[TALLY_HASH_LEN], uint64_t size);

typedef struct tally_proof {
    uint64_t index;  /* leaf index (inclusion) or old size (consistency) */
    uint64_t size;   /* tree size */
    size_t len;
    uint8_t path[TALLY_PROOF_MAX][TALLY_HASH_LEN];
} tally_proof;

/* Inclusion of transaction tx (leaf tx-1) in the tree of `size` leaves
** (0 = current size). Returns 0, TALLY_ERANGE. */
int tally_proof_tx(tally_db *db, tally_proof *out, uint64_t tx, uint64_t size);
/* Consistency from old_size to size (0 < old_size <= size <= current). */
int tally_proof_consistency(tally_db *db, tally_proof *out, uint64_t old_size, uint64_t size);
/* Inclusion of entry i of transaction tx in that transaction's entry tree
** (root = tally_tx_info.entries_root). */
int tally_proof_entry(tally_db *db, tally_proof *out, uint64_t tx, uint32_t i);

/* Pure verifiers (no handle). Return 0 or TALLY_EBADPROOF. Exact: index < size,
** exact path length, every element used. */
int tally_verify_inclusion(const uint8_t leaf_hash[TALLY_HASH_LEN], const tally_proof *p,
                           const uint8_t root[TALLY_HASH_LEN]);
int tally_verify_consistency(const tally_proof *p, const uint8_t old_root[TALLY_HASH_LEN],
                             const uint8_t root[TALLY_HASH_LEN]);

/* ---- Maintenance ---- */
typedef int (*tally_progress_fn)(void *ctx, uint64_t done_tx, uint64_t total_tx);

typedef struct tally_verify_result {
    int ok;                 /* 1 if everything checked */
    uint64_t tx_checked;    /* transactions fully verified */
    uint64_t first_bad_tx;  /* 0 if ok, else the first transaction found bad */
    char error[256];        /* what is wrong, if !ok */
} tally_verify_result;

/* Recomputes everything in directory dir from its raw bytes: framing and
** checksums, every entry hash and entry root, the hash chain, every Merkle
** node, the transaction index, and the key-value index against the log.
** Takes the directory lock (TALLY_ELOCKED if a writer holds it). progress may
** be NULL. Returns 0 when the check ran (see res->ok), or an error when it
** could not run at all. */
int tally_verify_dir(const char *dir, tally_verify_result *res, tally_progress_fn progress,
                     void *ctx);

/* Drops every derived structure (key-value index, Merkle nodes, tx index)
** in dir and rebuilds them from the log alone. Returns 0 or an error. */
int tally_reindex_dir(const char *dir, tally_progress_fn progress, void *ctx);

/* Statistics for benchmarks and metrics. */
typedef struct tally_stats {
    uint64_t commits;        /* transactions committed by this handle */
    uint64_t syncs;          /* fdatasync calls on the log */
    uint64_t sync_ns_total;  /* time spent in those calls */
    uint64_t checkpoints;    /* index checkpoints written */
    int checkpoint_error;    /* 0, or the TALLY_E* that paused background
                                checkpoints (the log is intact; the in-memory
                                index grows until tally_db_checkpoint()
                                succeeds, which resumes them) */
    char checkpoint_message[256]; /* its message ("" when checkpoint_error is 0) */
} tally_stats;
void tally_db_stats(tally_db *db, tally_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_H */
