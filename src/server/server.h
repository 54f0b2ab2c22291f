/*
** server.h — internal declarations of tallyd, the HTTP server (docs/API.md).
**
** Files, one concern each:
**   strmap.c          string-keyed hash map (ledgers, users, roles, tokens)
**   json.c            UTF-8 check, hex, RFC 3339, key/key_hex rule, error bodies
**   keys.c            server.key / server.vkey files (C2SP note signer keys)
**   registry.c        the system ledger and the registry of data ledgers,
**                     lazy opening, the per-ledger signed-checkpoint cache
**   auth.c            users, roles, scrypt passwords, tokens, login rate limit
**   http.c            libmicrohttpd daemon, request bodies, routing, responses
**   handlers_admin.c  login, ledgers, users
**   handlers_kv.c     set, del, get, history, scan, tx, state
**   handlers_proof.c  proofs, checkpoint, verified get/set/tx
**   metrics.c         counters, latency histogram, /metrics text
**   tallyd.c          tallyd_open/start/stop: the server's life cycle
**
** Invariants:
**   (1) A request that fails (any non-2xx status) changed nothing: every
**       check (auth, role, body, limits) happens before the one commit.
**   (2) Every administrative change is first committed to the system ledger
**       and only then applied to the in-memory tables, under admin_mu.
**   (3) On the request path the only shared locks are read locks (registry,
**       auth) and the short per-ledger checkpoint mutex.
*/
#ifndef TALLY_SERVER_H
#define TALLY_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "note/note.h"
#include "tally.h"

/* ---- Limits ---- */
#define SRV_LOGINS_INFLIGHT_MAX 2u /* logins hashing at once; beyond: 503 busy (a flood of
                                       logins, even with random names, leaves the rest of
                                       the worker pool to writes and administration) */
#define SRV_ANSWER_TRACKED_BYTES (1u << 20) /* answers this large are counted... */
#define SRV_ANSWERS_BYTES_MAX   (1ull << 30) /* ...and together at most this; beyond: 503 busy */
#define SRV_ANSWERS_USER_BYTES_MAX (256ull << 20) /* ...and per user (bucket) at most this */
#define SRV_ANSWER_BUCKETS      256u /* users share a bucket by a hash of their name */
#define SRV_QUERY_ARGS_MAX      16u /* query parameters of one request (each at most once) */
#define SRV_BODY_BYTES_MAX      (64u << 20)  /* request body of a batch route; beyond: 413 */
#define SRV_SMALL_BODY_BYTES_MAX (64u << 10) /* request body of every other route (login,
                                                users, ledgers, del, logout, GETs) */
#define SRV_CONNECTIONS_MAX     1024u        /* open connections, all clients */
#define SRV_PER_IP_CONNECTIONS_DEFAULT 256u  /* --max-connections-per-ip */
#define SRV_IDLE_TIMEOUT_S_DEFAULT 60u       /* --idle-timeout */
#define SRV_IDLE_TIMEOUT_S_MAX  3600u
#define SRV_REQUEST_TIMEOUT_S_DEFAULT 120u   /* --request-timeout */
#define SRV_REQUEST_TIMEOUT_S_MAX 3600u
#define SRV_SWEEP_MS            500u         /* how often the deadlines are checked */
#define SRV_NAME_LEN_MAX        64u          /* ledger and user names */
#define SRV_PASSWORD_LEN_MAX    1024u
#define SRV_LEDGERS_MAX         100000u
#define SRV_USERS_MAX           100000u
#define SRV_ROLES_MAX           1000000u
#define SRV_TOKENS_MAX          100000u
#define SRV_RATE_ENTRIES_MAX    10000u
#define SRV_LOGIN_FAILS_MAX     5u           /* per user per window */
#define SRV_LOGIN_WINDOW_S      60u
#define SRV_HISTORY_LIMIT_MAX   10000u
#define SRV_SCAN_LIMIT_MAX      10000u
#define SRV_PATH_MAX            4096u
#define SRV_ID_HEX_LEN          32u          /* ledger id: 16 random bytes */
#define SRV_TOKEN_HEX_LEN       64u          /* token: 32 random bytes */
#define SRV_SCRYPT_N            32768u
#define SRV_SCRYPT_R            8u
#define SRV_SCRYPT_P            1u
#define SRV_SCRYPT_MAXMEM_BYTES (64u << 20)
#define SRV_SALT_BYTES          16u
#define SRV_HASH_BYTES          32u
#define SRV_NOTE_MAX            1024u        /* one signed checkpoint note */
#define SRV_EVENT_THREADS_MAX   64u          /* --threads: HTTP event loops */
#define SRV_WORKERS             8u           /* threads for slow requests (scrypt, admin, del) */
#define SRV_GETMANY_KEYS_MAX    1000u        /* keys of one verified/getmany */
#define SRV_GETMANY_BYTES_MAX   (64u << 20)  /* its answer; beyond: 413 */
#define SRV_GETMANY_HASH_BYTES_MAX (256u << 20) /* entry bytes its proofs hash; beyond: 413 */
#define SRV_DRAIN_MS_MAX        30000u       /* shutdown: wait for suspended requests */

/* ---- strmap.c: open addressing, linear probing, backward-shift delete ---- */
typedef struct strmap_slot {
    char *key;     /* owned copy; NULL = empty slot */
    uint64_t hash;
    void *val;     /* not owned */
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    size_t cap;    /* power of two */
    size_t count;
    size_t count_max; /* insertions beyond this fail */
} strmap;

/* Initializes an empty map holding at most count_max keys. Returns 0 or -1. */
int strmap_init(strmap *m, size_t count_max);
/* Frees the slots and key copies (values are the caller's). */
void strmap_free(strmap *m);
/* Value of key, or NULL. */
void *strmap_get(const strmap *m, const char *key);
/* Inserts or replaces. Returns 0, or -1 (out of memory or count_max reached). */
int strmap_put(strmap *m, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *strmap_del(strmap *m, const char *key);

/* ---- json.c ---- */
#define SRV_TIME_BUF 48
int srv_utf8_valid(const void *p, size_t n);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void srv_hex(char *out, const void *p, size_t n);
/* Decodes a hex string of n digits into out (n/2 bytes). Returns 0 or -1. */
int srv_unhex(const char *s, size_t n, uint8_t *out);
/* "2026-11-22T10:00:00.000000000Z" */
void srv_fmt_time(char buf[SRV_TIME_BUF], uint64_t ts_ns);
/* RFC 3339 to Unix ns. Returns 0 or -1. */
int srv_parse_time(const char *s, int64_t *out_ns);
/* 1 if s is a valid ledger/user name ([A-Za-z0-9._-]{1,64}). */
int srv_name_valid(const char *s);
/* Strict decimal u64. Returns 0 or -1. */
int srv_parse_u64(const char *s, uint64_t *out);

struct json_t;
/* Sets obj[name] = string (valid UTF-8) or obj[name_hex] = hex. Returns 0 or -1. */
int srv_json_set_bytes(struct json_t *obj, const char *name, const void *p, size_t n);
/* Sets obj[name] = hex of n bytes. Returns 0 or -1. */
int srv_json_set_hex(struct json_t *obj, const char *name, const void *p, size_t n);
/* New JSON array of hex proof hashes. */
struct json_t *srv_json_path(const tally_proof *p);
/* obj[name] as a C string, or NULL when it is absent, not a string, or holds
** a NUL (bodies are parsed with JSON_ALLOW_NUL for keys and values; a name,
** role or password with a NUL would be cut at it). Valid while obj lives. */
const char *srv_json_text(struct json_t *obj, const char *name);
/* Reads obj[name] (string, zero copy: valid while obj lives) or obj[name_hex]
** (decoded into *owned, which the caller frees; NULL for a string).
** Returns 1 found, 0 absent, -1 malformed (both given, not a string, bad
** hex) or out of memory. */
int srv_json_get_bytes(struct json_t *obj, const char *name, const uint8_t **out,
                       size_t *out_len, uint8_t **owned);

/* ---- Ledgers (registry.c) ---- */
typedef struct srv_checkpoint {
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    size_t note_len;
    char note[SRV_NOTE_MAX];
} srv_checkpoint;

#define CLOSED_SIZE_UNKNOWN UINT64_MAX

typedef struct srv_ledger {
    char name[SRV_NAME_LEN_MAX + 1];
    char id[SRV_ID_HEX_LEN + 1];
    char origin[SRV_NAME_LEN_MAX * 2 + SRV_ID_HEX_LEN + 16];
    uint64_t created_ns;
    _Atomic(tally_db *) db;     /* NULL until first use, and again once closed idle */
    pthread_mutex_t open_mu;    /* serializes opening and closing */
    /* Handles in use (registry.c, reg_acquire): requests hold the handle from
    ** admission to their completion; an idle ledger is closed only while
    ** users == 0, and `closing` turns new users away meanwhile. */
    atomic_uint users;
    atomic_int closing;
    _Atomic uint64_t last_used_ns; /* srv_mono_ns() of the last release */
    _Atomic uint64_t closed_size;  /* its size when last closed idle, so listing does not
                                   ** reopen it; CLOSED_SIZE_UNKNOWN while open or never closed */
    pthread_mutex_t cp_mu;      /* guards cp */
    srv_checkpoint cp;          /* latest signed checkpoint (size 0: none yet) */
} srv_ledger;

/* ---- Users (auth.c) ---- */
typedef struct srv_user {
    char name[SRV_NAME_LEN_MAX + 1];
    uint8_t salt[SRV_SALT_BYTES];
    uint8_t hash[SRV_HASH_BYTES];
    uint64_t scrypt_n, scrypt_r, scrypt_p;
    uint64_t created_ns;
} srv_user;

#define ROLE_NONE    0
#define ROLE_READER  1
#define ROLE_AUDITOR 2 /* same rights as reader */
#define ROLE_WRITER  3
#define ROLE_ADMIN   4

/* ---- The server ---- */
typedef struct tallyd_config {
    const char *data_dir;
    const char *host;
    uint16_t port;
    const char *tls_cert_path, *tls_key_path; /* both or neither */
    const char *name;        /* NULL: from server.key, else "tally.local" */
    uint64_t token_ttl_s;
    int verbose;             /* a log line per request on stderr */
    unsigned threads;        /* HTTP event-loop threads; 0: one per CPU */
    uint64_t idle_close_s;   /* close a ledger unused this long (0: never) */
    unsigned per_ip_max;     /* connections from one IP address (0: no limit) */
    unsigned idle_timeout_s; /* close a connection silent this long (1..SRV_IDLE_TIMEOUT_S_MAX) */
    unsigned request_timeout_s; /* a request (in and answered) takes at most this long,
                                   counted from when its connection was ready for it
                                   (1..SRV_REQUEST_TIMEOUT_S_MAX; 0: the default) */
} tallyd_config;

typedef struct tallyd {
    tallyd_config cfg;
    char data_dir[SRV_PATH_MAX];
    char name[NOTE_NAME_MAX + 1];
    uint8_t priv[32], pub[32];
    char vkey[512];

    tally_db *sys;               /* the system ledger */
    pthread_mutex_t admin_mu;    /* serializes administrative changes */
    /* Two descriptors on /dev/null held in reserve (registry.c): a ledger
    ** creation that failed for want of descriptors releases them to remove
    ** its directory, then takes them back. -1 when not held. Under admin_mu. */
    int fd_reserve[2];
    int trash_pending;           /* ledgers/.trash-* left to remove (under admin_mu) */

    pthread_rwlock_t reg_lock;   /* guards ledgers (the map, not the ledger) */
    strmap ledgers;              /* name -> srv_ledger* */
    atomic_uint_fast64_t ledgers_open;
    /* Closing idle ledgers (registry.c, reg_reaper): a thread wakes every
    ** reap_interval and closes the ledgers unused for cfg.idle_close_s. The
    ** statistics of closed handles are kept in retired, so the metrics'
    ** counters never go back. */
    pthread_t reaper;
    int reaper_started, reaper_stop;
    pthread_mutex_t reaper_mu;
    pthread_cond_t reaper_cond;
    tally_stats retired;         /* under reaper_mu */
    atomic_uint_fast64_t ledgers_closed_idle;

    pthread_rwlock_t auth_lock;  /* guards users, roles */
    strmap users;                /* name -> srv_user* */
    strmap roles;                /* "user/ledger" -> (void*)(uintptr_t)role */
    pthread_rwlock_t token_lock; /* guards tokens and tokens_pending */
    size_t tokens_pending;      /* logins committing their session: slots reserved */
    strmap tokens;               /* hex -> srv_token* */
    pthread_mutex_t rate_mu;     /* guards rate */
    strmap rate;                 /* user name -> srv_rate* */

    struct MHD_Daemon *mhd;
    char *tls_cert, *tls_key;    /* PEM text, owned */
    /* Suspended requests (http.c): waiting for a commit or on the worker pool */
    atomic_int stopping;         /* set by http_stop: new requests get 503 */
    atomic_int inflight;         /* suspended requests not yet resumed */
    atomic_int logins;           /* logins on the worker pool (each a scrypt) */
    _Atomic uint64_t answer_bytes; /* large answers queued and not yet completed */
    _Atomic uint64_t answer_user_bytes[SRV_ANSWER_BUCKETS]; /* the same per user bucket */
    /* Open connections and their request deadlines (http.c, sweep_main):
    ** a thread checks them every SRV_SWEEP_MS and shuts down the socket of
    ** a connection whose request is overdue. Under conns_mu. */
    pthread_mutex_t conns_mu;
    pthread_cond_t conns_cond;
    struct srv_conn *conns;      /* doubly linked */
    pthread_t sweeper;
    int sweeper_started, sweeper_stop, conns_init;
    atomic_uint_fast64_t conns_timed_out; /* metric: connections closed by the deadline */
    atomic_uint_fast64_t dropped_gone;    /* metric: pool GETs dropped, their client gone */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cond;
    struct srv_req *pool_head, *pool_tail;
    int pool_stop;
    unsigned pool_started;
    pthread_t pool[SRV_WORKERS];
} tallyd;

/* Stops a housekeeping thread (the reaper, the sweeper): sets *stop under mu,
** wakes it on cond, joins it. Does nothing unless *started. */
static inline void srv_thread_stop(pthread_mutex_t *mu, pthread_cond_t *cond, int *stop,
                                   pthread_t th, int *started)
{
    if (!*started)
        return;
    pthread_mutex_lock(mu);
    *stop = 1;
    pthread_cond_signal(cond);
    pthread_mutex_unlock(mu);
    pthread_join(th, NULL);
    *started = 0;
}

/* ---- Errors: an HTTP status, an API error code and a message ---- */
typedef struct srv_err {
    int status;
    const char *code;
    char msg[512];
} srv_err;
/* Fills e and returns status. */
int srv_fail(srv_err *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fills e from an engine error (status by code, message tally_errmsg()) and
** returns the status. */
int srv_fail_engine(srv_err *e, int rc);
/* json.c: checks that every key of the object obj is one of allowed (a
** NULL-terminated list), in one pass over obj's keys. Returns 0, or 400
** bad_request with e filled: "<where>unknown field \"K\"" for the first
** other key K, where is where_fmt formatted (only then; NULL: no prefix).
** A misspelled condition ("ifRev") would otherwise be ignored and the write
** made unconditionally. */
int srv_json_fields(srv_err *e, struct json_t *obj, const char *const *allowed,
                    const char *where_fmt, ...) __attribute__((format(printf, 4, 5)));

uint64_t srv_now_ns(void);      /* Unix ns, CLOCK_REALTIME */
uint64_t srv_mono_ns(void);     /* CLOCK_MONOTONIC ns */
/* A condition variable whose timed waits run on CLOCK_MONOTONIC (a stepped
** wall clock neither stalls nor hurries them), and a wait of at most ms on
** it. The housekeeping threads (reaper, sweeper) wait with these. */
void srv_cond_init_mono(pthread_cond_t *c);
void srv_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *mu, uint64_t ms);

/* ---- keys.c ---- */
/* Loads DIR/server.key or creates it (and server.vkey). Returns 0 or -1 (err). */
int keys_load_or_create(tallyd *s, char *err, size_t err_len);

/* ---- registry.c ---- */
/* Commits entries to the system ledger with metadata {"actor","action"}. */
int sys_commit(tallyd *s, const char *actor, const char *action, const tally_entry *e, size_t n);
/* Opens DIR/system, creates DIR/ledgers, loads the ledger records. 0 or -1 (err). */
int reg_open(tallyd *s, char *err, size_t err_len);
/* The ledger named name, or NULL. Never freed while the server runs. */
srv_ledger *reg_find(tallyd *s, const char *name);
/* The ledger's handle, opened if it is not (first use, or closed idle), and
** held: the caller gives it back with reg_release. May block (opening).
** Returns a TALLY_E* code (nothing held on error). */
int reg_acquire(tallyd *s, srv_ledger *lg, tally_db **out);
/* The handle if the ledger is open and not being closed, held; else NULL
** (then use reg_acquire off the event loop). Never blocks. */
tally_db *reg_try_acquire(srv_ledger *lg);
void reg_release(srv_ledger *lg);
/* Starts / stops the idle-ledger closer (no-op when cfg.idle_close_s is 0).
** reg_reaper_start returns 0 or -1. */
int reg_reaper_start(tallyd *s);
void reg_reaper_stop(tallyd *s);
/* Creates a ledger (directory + system record). TALLY_ECONFLICT if it exists. */
int reg_create(tallyd *s, const char *actor, const char *name, srv_ledger **out);
/* The signed checkpoint for the ledger's current size (re-signed only when
** the size grew). Returns a TALLY_E* code. */
int reg_checkpoint(tallyd *s, srv_ledger *lg, tally_db *db, srv_checkpoint *out);
/* A malloc'd array of every ledger (caller frees the array only). */
size_t reg_snapshot(tallyd *s, srv_ledger ***out);
/* Sums tally_db_stats over open ledgers; checkpoint_error becomes the number
** of ledgers whose background checkpoints are paused (message: the last). */
void reg_stats(tallyd *s, tally_stats *sum);
/* Closes every ledger and the system ledger; frees the registry. */
void reg_close_all(tallyd *s);

/* ---- auth.c ---- */
int role_parse(const char *name);   /* ROLE_* or -1; "" and "none" are ROLE_NONE */
const char *role_name(int role);
int role_allows(int have, int need);
/* Loads users and roles from the system ledger. 0 or -1 (err). */
int auth_open(tallyd *s, char *err, size_t err_len);
/* Creates user admin with role admin on "*". 0 or -1 (err). */
int auth_init_admin(tallyd *s, const char *password, char *err, size_t err_len);
/* Creates user name (when password != NULL) and sets its role on ledger.
** Returns 0 or an HTTP status with e filled (409 conflict: the user exists
** and a password was given; 409 last_admin: the change would leave no user
** with admin on "*"; 400: a new user without password). */
int auth_grant(tallyd *s, srv_err *e, const char *actor, const char *name,
               const char *password, int role, const char *ledger);
/* Effective role of user on ledger (ROLE_NONE if none). */
int auth_role(tallyd *s, const char *user, const char *ledger);
/* The user of a live token, or NULL. */
const srv_user *auth_token(tallyd *s, const char *token);
/* Checks the password and issues a token. 0, or 401 / 429 / 500 with e filled. */
int auth_login(tallyd *s, srv_err *e, const char *user, const char *password,
               char token[SRV_TOKEN_HEX_LEN + 1], uint64_t *expires_ns);
/* Ends the session of token (its deletion is committed to the system
** ledger first). 0, or 401 / 500 with e filled. */
int auth_logout(tallyd *s, srv_err *e, const char *token);
/* Frees every auth table. */
void auth_close(tallyd *s);

/* ---- metrics.c ---- */
void metrics_observe(unsigned status, uint64_t dur_ns);
/* The Prometheus text (malloc'd, *len bytes), or NULL. */
char *metrics_render(tallyd *s, size_t *len);

/* ---- http.c ---- */
/* Starts the daemon on cfg host:port. Returns 0 or -1 (err). */
int http_start(tallyd *s, char *err, size_t err_len);
/* The bound port (useful with port 0). */
uint16_t http_port(tallyd *s);
void http_stop(tallyd *s);

/* ---- Requests (http.c) and handlers (handlers_*.c) ---- */
struct MHD_Connection;
struct srv_route;

/* Per connection (MHD's socket context): the request whose request line
** arrived but which has not started yet, so that one MHD drops without
** on_completed is still freed; and the request deadline (s->conns). */
typedef struct srv_conn {
    struct srv_req *pending;
    struct srv_conn *prev, *next; /* in s->conns, under conns_mu */
    int fd;                       /* the socket (shut down, never closed, by the sweeper) */
    int shut;                     /* the sweeper shut it down (under conns_mu) */
    _Atomic uint64_t ready_ns;    /* srv_mono_ns() when it became ready for a request:
                                     accepted, or the previous answer completed;
                                     moved on by the time its request was suspended */
    _Atomic uint64_t suspended_ns; /* when its request was suspended; 0: it is not */
    atomic_int exempt;            /* 1: its request (not GET/HEAD) is in the handler or
                                     answered: no reset until it completes (a reset
                                     write could be resent and written twice) */
} srv_conn;

typedef struct srv_req {
    tallyd *s;
    srv_conn *sc;               /* its connection's context (may be NULL) */
    size_t answer_bytes;        /* counted in s->answer_bytes (released by on_completed) */
    unsigned answer_bucket;     /* ...and in s->answer_user_bytes[answer_bucket] */
    struct MHD_Connection *conn;
    const struct srv_route *rt;
    const char *method, *url;   /* MHD's, valid for the request */
    uint64_t start_ns;          /* srv_mono_ns() at the first callback */
    unsigned status;            /* status of the queued response (0: none yet) */
    const srv_user *user;       /* authenticated user (NULL for public routes) */
    srv_ledger *lg;             /* the ledger of /v1/ledgers/L/... */
    tally_db *db;               /* its open handle */
    int role;                   /* user's role on lg */
    uint64_t path_n;            /* N of .../tx/N */
    char *body;                 /* request body (NUL-terminated), owned */
    size_t body_len, body_cap;
    int body_too_big;
    int started;                /* the access handler's first call ran */
    int path_nul;               /* the raw path (before '?') holds %00 */
    const char *allow;          /* a 405's Allow header (static text), else NULL */
    /* Suspension (http.c). While the connection is suspended no event thread
    ** touches r; exactly one party resumes it (a commit completion or a pool
    ** worker), after setting cont. */
    int (*cont)(struct srv_req *r); /* run on the event thread once resumed */
    int defer;                  /* off the event thread: responses are stored in d_* */
    unsigned d_status;
    const char *d_ctype;
    char *d_buf;                /* stored response body, owned */
    size_t d_len;
    int commit_rc;              /* http_commit_async: the outcome... */
    uint64_t commit_tx;         /* ...and the transaction id */
    void *ctx;                  /* a handler's state across a suspension... */
    void (*ctx_free)(void *ctx);/* ...freed with r */
    struct srv_req *pool_next;
} srv_req;

/* A handler queues exactly one response and returns MHD's result (as int),
** or suspends the request (http_commit_async) and leaves the response to its
** continuation. Handlers of routes marked slow run on the worker pool. */
typedef int (*srv_handler)(srv_req *r);

/* Responses. Each queues the response and returns MHD's result. */
int http_json(srv_req *r, unsigned status, struct json_t *obj);  /* steals obj */
int http_raw(srv_req *r, unsigned status, const char *ctype, char *buf, size_t len); /* takes buf (malloc'd) */
int http_error(srv_req *r, const srv_err *e);
int http_errorf(srv_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int http_engine_error(srv_req *r, int rc);
/* Query arguments. */
const char *http_arg(srv_req *r, const char *name);
/* name=N: 1 present (in *out), 0 absent, -1 not a number. */
int http_arg_u64(srv_req *r, const char *name, uint64_t *out);
/* name=text or name_hex=hex: 1 present, 0 absent, -1 malformed/both.
** *owned (caller frees) holds decoded hex, NULL otherwise. */
int http_arg_bytes(srv_req *r, const char *name, const uint8_t **p, size_t *len,
                   uint8_t **owned);
/* Suspends r, queues the transaction with tally_commit_async and returns
** MHD's result. Once it is durable (or failed, or refused at once), the
** event thread runs cont(r) with r->commit_rc (a TALLY_E* code) and
** r->commit_tx set; cont queues the response. The entries are copied before
** this returns. Only from a handler on the event thread (not a slow route). */
int http_commit_async(srv_req *r, const tally_entry *e, size_t n, const void *meta,
                      size_t meta_len, int (*cont)(srv_req *r));
/* From a handler on an event loop that finds its request costly: moves r to
** the worker pool, where the handler runs again from the start with
** r->defer set (it must then do the work). Returns MHD's result. */
int http_to_pool(srv_req *r);
/* Work a handler on an event loop does itself; above it, http_to_pool. */
#define SRV_LOOP_HASH_BYTES_MAX (1u << 20)
/* ... and at most this many entries of one transaction to send whole. */
#define SRV_LOOP_TX_ENTRIES_MAX 4096u
/* In a continuation: the error response for a failed r->commit_rc. */
int http_commit_failed(srv_req *r);
/* 1 if the request's Content-Type is SRV_BINARY_CTYPE (a binary batch). */
int http_body_is_binary(srv_req *r);
#define SRV_BINARY_CTYPE "application/vnd.tally.batch"
/* The body parsed as a JSON object, or NULL after queueing a 400. */
struct json_t *http_body_json(srv_req *r, int *mhd_result);

/* handlers_kv.c: the body of set / verified/set, parsed and ready to commit. */
typedef struct srv_set {
    tally_entry *e;
    size_t n;
    const uint8_t *meta;        /* transaction metadata */
    size_t meta_len;
    uint8_t **owned;            /* decoded hex buffers to free */
    size_t owned_n;
} srv_set;
/* Parses {"entries":[...],"meta"?} of body j (which must outlive ss); the
** body's fields must be among fields (NULL-terminated; NULL: the caller
** checked them), each entry's among set's. Returns 0 or an HTTP status (e). */
int set_parse(srv_set *ss, srv_err *e, struct json_t *j, const char *const *fields);
/* Parses a binary batch body (docs/API.md); the entries point into body.
** Returns 0 or an HTTP status (e). */
int set_parse_binary(srv_set *ss, srv_err *e, const uint8_t *body, size_t len);
void set_free(srv_set *ss);
/* The as-of transaction of tx=N or at=T in the query (*as_of untouched when
** neither is given). Returns 0 or an HTTP status (e). */
int kv_as_of(srv_req *r, srv_err *e, uint64_t *as_of);
/* Looks up key per get's query (tx= | at= | rev=; none: as of latest_as_of,
** 0 = latest). Returns 0 or an HTTP status (e). *owned is freed by the caller. */
int kv_lookup(srv_req *r, srv_err *e, uint64_t latest_as_of, const uint8_t **key,
              size_t *key_len, uint8_t **owned, tally_version *v);

int h_health(srv_req *r);
int h_metrics(srv_req *r);
int h_server(srv_req *r);
int h_login(srv_req *r);
int h_logout(srv_req *r);
int h_ledgers_list(srv_req *r);
int h_ledgers_create(srv_req *r);
int h_ledger_info(srv_req *r);
int h_users(srv_req *r);
int h_set(srv_req *r);
int h_del(srv_req *r);
int h_get(srv_req *r);
int h_history(srv_req *r);
int h_scan(srv_req *r);
int h_tx(srv_req *r);
int h_state(srv_req *r);
int h_proof_inclusion(srv_req *r);
int h_proof_consistency(srv_req *r);
int h_checkpoint(srv_req *r);
int h_verified_get(srv_req *r);
int h_verified_set(srv_req *r);
int h_verified_tx(srv_req *r);
int h_verified_getmany(srv_req *r);
#define SRV_BUNDLES_CTYPE "application/vnd.tally.bundles"
/* 1 if the request's Accept header asks for SRV_BUNDLES_CTYPE. */
int http_accepts_bundles(srv_req *r);

/* ---- tallyd.c: the life cycle (used by tools/tallyd.c) ---- */
/* Opens DIR (creating it, the keys, the system ledger and the admin user on
** first start). When the admin password was generated it is copied to
** admin_password (else admin_password[0] = 0). Returns 0 or -1 (err). */
int tallyd_open(tallyd **out, const tallyd_config *cfg, char *admin_password,
                size_t admin_password_len, char *err, size_t err_len);
/* Starts serving. Returns 0 or -1 (err). */
int tallyd_start(tallyd *s, char *err, size_t err_len);
/* Stops serving, closes every ledger, frees s. */
void tallyd_close(tallyd *s);

#endif /* TALLY_SERVER_H */
