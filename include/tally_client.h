/*
** tally_client.h — the verifying C client of tallyd (docs/API.md).
**
** Conventions are those of tally.h: an opaque handle, functions named
** tally_client_<verb>, output parameters first after the handle, 0 or a
** negative TALLY_E* code, the detail in tally_errmsg(). HTTP statuses map to:
** 400 TALLY_EINVAL, 401/403/429 TALLY_EINVAL ("unauthorized: …" in the
** message; tally_client_http_status() tells them apart), 404 TALLY_ENOTFOUND,
** 409 TALLY_ECONFLICT, 413 TALLY_ETOOBIG, 500 "integrity" TALLY_ECORRUPT,
** other 5xx and network failures TALLY_EIO.
**
** Verification: the tally_client_verified_* functions (and state,
** checkpoint_verified) trust nothing the server says. They check every proof
** against the pinned server key, the pinned ledger identity and the client's
** trusted state, and return TALLY_EBADPROOF on any failure, after saving
** evidence; the trusted state moves forward only after everything checked.
** The rules and the state files are described in docs/API.md "Client".
** Unverified reads (get, history, scan, tx, proofs, checkpoint) return what
** the server says.
**
** Thread rules: a tally_client (one libcurl easy handle, its connection kept
** alive) must be used by one thread at a time; use one client per thread.
** Different clients, also in different processes, may share a state
** directory: a verified call that moves its ledger's trusted state forward
** takes an exclusive lock (flock) on it, re-reads it and checks that the new
** state extends whatever another call stored meanwhile, so the state only
** ever moves forward along one history. Calls that do not move it take no
** lock.
*/
#ifndef TALLY_CLIENT_H
#define TALLY_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "tally.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tally_client tally_client;

typedef struct tally_client_options {
    const char *ledger;      /* ledger to work on; NULL: "default" */
    const char *server_vkey; /* pin this verifier key; NULL: the key pinned for this
                                URL, else the one GET /v1/server reports (pinned then) */
    const char *state_dir;   /* NULL: $TALLY_HOME, else $HOME/.tally */
    const char *user;        /* with password: log in on connect */
    const char *password;
    const char *token;       /* bearer token to use; NULL: user/password, else the
                                token saved by a previous login for this URL */
    long timeout_ms;         /* whole-request timeout; 0: none */
    long clock_skew_ms;      /* verified set/del: the new transaction's time may be at
                                most this much before the client's clock when the write
                                was sent (a replay of an older identical transaction
                                fails it); 0: TALLY_CLIENT_CLOCK_SKEW_MS_DEFAULT;
                                negative: not checked */
} tally_client_options;
#define TALLY_CLIENT_CLOCK_SKEW_MS_DEFAULT 300000L /* 5 minutes */

/* Fills *opts with the defaults (all NULL / 0). */
void tally_client_options_init(tally_client_options *opts);

/* Creates a client for the server at url ("http://host:port", no path).
** Pins the server key if none is pinned for url yet (one GET /v1/server) and
** logs in when opts->user and opts->password are given. opts may be NULL.
** The client copies what it needs from opts. *out is closed with
** tally_client_close. Returns 0, TALLY_EINVAL (bad url/name/key, login
** refused), TALLY_EBADPROOF (--server-key differs from the key pinned for
** url), TALLY_EIO, TALLY_ENOMEM. */
int tally_client_connect(tally_client **out, const char *url, const tally_client_options *opts);
/* Frees the client (closes its connection). */
void tally_client_close(tally_client *c);

/* Switches the ledger the client works on (no network). 0 or TALLY_EINVAL. */
int tally_client_use(tally_client *c, const char *ledger);
/* The HTTP status of the last response (0 if none), and the server's error
** code string ("" if none; owned by the client, valid until the next call). */
int tally_client_http_status(const tally_client *c);
const char *tally_client_error_code(const tally_client *c);
/* The state directory in use (owned by the client). */
const char *tally_client_state_dir(const tally_client *c);

/* POST /v1/login. On success the client uses the token; with save != 0 it is
** also written to <statedir>/tokens/<escaped url> (mode 0600).
** *out_token (may be NULL) receives a malloc'ed copy the caller frees. */
int tally_client_login(tally_client *c, char **out_token, const char *user, const char *password,
                       int save);

/* POST /v1/logout: ends the session of the client's token on the server
** (committed there: it does not come back after a restart), then removes the
** token saved for this URL. A token the server no longer knows counts as
** ended. Returns 0, TALLY_EINVAL (no token), TALLY_EIO. */
int tally_client_logout(tally_client *c);

/* ---- Administration ---- */
typedef struct tally_client_ledger {
    char name[65];
    char id[33];     /* 32 hex digits */
    uint64_t size;
} tally_client_ledger;

/* POST /v1/ledgers. *out (may be NULL) receives name and id. */
int tally_client_ledger_create(tally_client *c, tally_client_ledger *out, const char *name);
/* GET /v1/ledgers. *out is malloc'ed (caller frees), *out_n entries. */
int tally_client_ledger_list(tally_client *c, tally_client_ledger **out, size_t *out_n);
/* POST /v1/users. password may be NULL for an existing user (grant only). */
int tally_client_user_create(tally_client *c, const char *name, const char *password,
                             const char *role, const char *ledger);

/* ---- Key-value ---- */
typedef struct tally_client_version {
    uint64_t tx, rev, ts_ns;
    int deleted;
    uint8_t *key;   size_t key_len;   /* malloc'ed (NUL after the length) */
    uint8_t *value; size_t value_len; /* malloc'ed (NUL after the length) */
} tally_client_version;
/* Frees the members (not v itself). */
void tally_client_version_free(tally_client_version *v);

/* Selector of a get: latest, as of transaction, at time, or revision. */
#define TALLY_CLIENT_LATEST 0
#define TALLY_CLIENT_AS_OF_TX 1
#define TALLY_CLIENT_AT_TIME 2 /* arg = Unix ns */
#define TALLY_CLIENT_REV 3

/* One entry of a write: key/value bytes (caller-owned), a precondition
** (TALLY_COND_NONE / _ABSENT / _REV with cond_rev). */
typedef struct tally_client_entry {
    const void *key; size_t key_len;
    const void *value; size_t value_len;
    uint8_t cond;
    uint64_t cond_rev;
} tally_client_entry;

/* POST set: one transaction. *out_tx (may be NULL) receives its id. meta
** (may be NULL) is the transaction metadata (sent as a JSON string: UTF-8). */
int tally_client_set(tally_client *c, uint64_t *out_tx, const tally_client_entry *e, size_t n,
                     const char *meta);
/* POST del (if_rev 0: unconditional). TALLY_ENOTFOUND if absent. */
int tally_client_del(tally_client *c, uint64_t *out_tx, const void *key, size_t key_len,
                     uint64_t if_rev);
/* GET get. *out freed with tally_client_version_free. */
int tally_client_get(tally_client *c, tally_client_version *out, const void *key, size_t key_len,
                     int sel, uint64_t arg);

/* Callback for history and scan; return non-zero to stop. v is valid during
** the call only. */
typedef int (*tally_client_version_fn)(void *ctx, const tally_client_version *v);
/* GET history, every page from start_rev (>= 1); *out_total may be NULL. */
int tally_client_history(tally_client *c, uint64_t *out_total, const void *key, size_t key_len,
                         uint64_t start_rev, tally_client_version_fn fn, void *ctx);
/* GET scan, every page, pinned to one snapshot: *out_tx (may be NULL)
** receives it; as_of 0 = latest. */
int tally_client_scan(tally_client *c, uint64_t *out_tx, const void *prefix, size_t prefix_len,
                      uint64_t as_of, tally_client_version_fn fn, void *ctx);

/* ---- Transactions, state, proofs ---- */
typedef struct tally_client_tx_entry {
    uint32_t index;
    uint8_t ns;
    int deleted;
    uint8_t *key;   size_t key_len;   /* malloc'ed */
    uint8_t *value; size_t value_len; /* malloc'ed */
    uint8_t *meta;  size_t meta_len;  /* malloc'ed */
    uint8_t leaf_hash[TALLY_HASH_LEN];
} tally_client_tx_entry;

typedef struct tally_client_tx {
    uint64_t tx, ts_ns;
    uint32_t entry_count;
    uint8_t hash[TALLY_HASH_LEN], prev_hash[TALLY_HASH_LEN], entries_root[TALLY_HASH_LEN];
    uint8_t *meta; size_t meta_len;   /* malloc'ed */
    tally_client_tx_entry *entries;   /* malloc'ed, entry_count of them */
} tally_client_tx;
void tally_client_tx_free(tally_client_tx *t);

/* GET tx/N: the raw JSON (as `tally tx N --json`), malloc'ed, unverified. */
int tally_client_tx_json(tally_client *c, char **out_json, uint64_t tx);
/* GET state (unverified). */
int tally_client_state_raw(tally_client *c, uint64_t *out_size, uint8_t root[TALLY_HASH_LEN]);
/* GET proof/inclusion and proof/consistency: the raw JSON, malloc'ed,
** unverified (the CLI checks them against a verified checkpoint). */
int tally_client_proof_inclusion_json(tally_client *c, char **out_json, uint64_t tx,
                                      uint64_t size);
int tally_client_proof_consistency_json(tally_client *c, char **out_json, uint64_t old_size,
                                        uint64_t size);
/* GET checkpoint: the signed note text, malloc'ed, unverified. */
int tally_client_checkpoint(tally_client *c, char **out_note);

/* ---- Verified ---- */
/* The latest checkpoint, verified (signature, origin, consistency with the
** trusted state) and made the trusted state. *out_note (may be NULL)
** receives the note, malloc'ed. */
int tally_client_verified_state(tally_client *c, uint64_t *out_size,
                                uint8_t root[TALLY_HASH_LEN], char **out_note);
/* The trusted state of the current ledger (size 0 if none), read from the
** state directory; no request once the ledger's id is pinned (on first
** contact, GET /v1/ledgers/L learns it). */
int tally_client_trusted_state(tally_client *c, uint64_t *out_size,
                               uint8_t root[TALLY_HASH_LEN]);
/* Verified get. A tombstone (only with TALLY_CLIENT_REV) is returned with
** out->deleted = 1. out->rev is the server's claim (not provable). */
int tally_client_verified_get(tally_client *c, tally_client_version *out, const void *key,
                              size_t key_len, int sel, uint64_t arg);
/* One key of a batched read; the bytes are the caller's. */
typedef struct tally_client_key {
    const void *key;
    size_t key_len;
} tally_client_key;
#define TALLY_CLIENT_GETMANY_MAX 1000 /* keys per tally_client_verified_get_many */

/* Verified get of n keys (1..TALLY_CLIENT_GETMANY_MAX) in one request
** (POST verified/getmany, binary form): one checkpoint, checked once (its
** signature, origin and consistency with the trusted state), and per key the
** same checks as tally_client_verified_get. sel is TALLY_CLIENT_LATEST,
** _AS_OF_TX or _AT_TIME and applies to every key (_REV: TALLY_EINVAL).
** out[0..n) receives the versions in the order of keys (free each with
** tally_client_version_free); a key absent at that point has out[i].tx == 0
** and no key/value (the server's word: absence is not provable). Any failed
** check fails the whole call with TALLY_EBADPROOF (evidence saved, the
** trusted state kept, out[] all empty). *out_size (may be NULL) receives the
** checkpoint's size, which becomes the trusted state. Returns 0,
** TALLY_EINVAL, TALLY_EBADPROOF, TALLY_ETOOBIG, TALLY_EIO, TALLY_ENOMEM. */
int tally_client_verified_get_many(tally_client *c, tally_client_version *out,
                                   uint64_t *out_size, const tally_client_key *keys, size_t n,
                                   int sel, uint64_t arg);
/* Verified set: the write, then its proof; the entries root is recomputed
** from e. A TALLY_EBADPROOF after an acknowledged write means the server
** acknowledged something the client cannot confirm (*out_tx still set). */
int tally_client_verified_set(tally_client *c, uint64_t *out_tx, const tally_client_entry *e,
                              size_t n, const char *meta);
/* Proofs checked against a freshly verified checkpoint (which becomes the
** trusted state): the inclusion of tx in the tree of `size` (0: the
** checkpoint's size), or the consistency of old_size with size (0: the
** checkpoint's size); a root at a size below the checkpoint's is anchored
** to it with a consistency proof. *out, the leaf hash and the roots are
** filled only on success. TALLY_ERANGE if a size exceeds the checkpoint's. */
int tally_client_verified_inclusion(tally_client *c, tally_proof *out,
                                    uint8_t leaf_hash[TALLY_HASH_LEN],
                                    uint8_t root[TALLY_HASH_LEN], uint64_t tx, uint64_t size);
int tally_client_verified_consistency(tally_client *c, tally_proof *out,
                                      uint8_t old_root[TALLY_HASH_LEN],
                                      uint8_t root[TALLY_HASH_LEN], uint64_t old_size,
                                      uint64_t size);
/* Verified delete: POST del, then verified tx N: exactly one tombstone of key. */
int tally_client_verified_del(tally_client *c, uint64_t *out_tx, const void *key,
                              size_t key_len, uint64_t if_rev);
/* Verified tx N, every entry. *out freed with tally_client_tx_free. */
int tally_client_verified_tx(tally_client *c, tally_client_tx *out, uint64_t tx);

/* History with every listed revision proven: each row of GET history is
** checked with a verified get of that revision (entry and tx inclusion,
** value hash, checkpoint; a deletion: a verified tx holding its tombstone)
** and must show the same tx, time, tombstone flag and value; rows must be
** of the key asked for, number the revisions from start_rev on without a
** gap, and go forward in tx and time; only then is fn called with it. That no revision was left out
** stays the server's word (API v1 cannot prove it). One request per
** revision. Returns 0, TALLY_EBADPROOF (evidence saved; fn was called for
** the rows before it only), or tally_client_history's errors. */
int tally_client_verified_history(tally_client *c, uint64_t *out_total, const void *key,
                                  size_t key_len, uint64_t start_rev,
                                  tally_client_version_fn fn, void *ctx);
/* Scan with every listed key proven: the rows of GET scan (pinned to as_of;
** 0: the latest verified checkpoint's size, which *out_tx receives) are
** proven in batches of up to TALLY_CLIENT_GETMANY_MAX keys by one
** verified/getmany as of that tx each (fewer when their values exceed 16
** MiB); every row must start with the prefix, come strictly after the row
** before in key order, and show the version the proof shows (tx and value;
** scan rows carry no time) before fn sees it. That no key was left out
** stays the server's word. Returns as tally_client_verified_history. */
int tally_client_verified_scan(tally_client *c, uint64_t *out_tx, const void *prefix,
                               size_t prefix_len, uint64_t as_of, tally_client_version_fn fn,
                               void *ctx);

/* The callback of tally_client_verified_walk. First called once with
** tx == NULL: (size, root) is the latest checkpoint, verified (signature,
** origin, consistency with the trusted state) but not yet trusted, and
** *from (preset to 1) may be set to the first tx to walk (size + 1: none).
** Then called with each verified tx from *from to size in order (from ==
** NULL; *tx and its bytes are valid during the call only). Returning
** nonzero stops the walk, which returns that value. */
typedef int (*tally_client_walk_fn)(void *arg, const tally_client_tx *tx, uint64_t size,
                                    const uint8_t root[TALLY_HASH_LEN], uint64_t *from);
/* Verifies the latest checkpoint and then every transaction the callback
** asks for, each proven included in a tree consistent with that checkpoint
** (entries root, count and length recomputed). Only when every check passed
** and every call of fn returned 0 does the checkpoint become the trusted
** state; on any failure or stop the trusted state is kept as it was.
** Returns 0, fn's nonzero value, TALLY_EBADPROOF (evidence saved),
** TALLY_EIO, TALLY_ENOMEM, or the server's error. */
int tally_client_verified_walk(tally_client *c, tally_client_walk_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_CLIENT_H */
