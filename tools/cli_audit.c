/*
** cli_audit.c — `tally audit`: a monitor that keeps checking that a tallyd
** ledger only ever grows: each new signed checkpoint must extend the last
** one it trusted.
**
** Entry point (a row of the command table in tools/tally.c):
**   int cli_audit_main(int argc, char **argv);
**       argv[0] = "audit"; parses --server URL (required), --ledger NAME
**       (else $TALLY_LEDGER, else "default"), --interval DUR (500ms, 10s,
**       1m, 1h; default 10s), --rehash, --rounds N (stop after N rounds),
**       --server-key VKEY; returns the process exit code.
**
** One round:
**   (1) tally_client_verified_walk: the latest checkpoint, its signature
**       under the pinned server key, its origin (the pinned ledger id), and
**       its consistency with the trusted state of the state directory
**       ($TALLY_HOME, else ~/.tally), which moves forward to it only at the
**       end of a round in which every check below passed;
**   (2) independently of that shared state, against the (size, root) this
**       process last accepted: a smaller size is a rollback, the same size
**       with another root a fork, a larger size needs a consistency proof
**       from exactly that (size, root), checked here with RFC 6962;
**   (3) with --rehash, every transaction new since then: verified tx (the
**       client checks its inclusion), then here again: each entry's leaf
**       rebuilt from its fields with the value re-hashed, the entries root
**       recomputed and compared with the header's, and the hash chain
**       (prev_hash) followed from the last transaction already audited.
**       The first round starts from the size trusted before the auditor
**       started (everything when nothing was trusted yet).
** Output, one line per round on stdout (flushed):
**   audit: <RFC 3339 time> ledger=L size=N root=<hex> ok (+k tx)
** ("ok (+k tx, k rehashed)" with --rehash). Any failed check prints
** "ALERT: <time> ledger=L <reason>" on stdout and stderr and exits 2 at
** once; a check of the client library saves evidence under
** <state>/evidence/ (the ALERT names it), the auditor's own comparison with
** the checkpoint it accepted last (step 2) only the ALERT line. An ordinary error
** (network, 5xx, timeout) is logged on stderr as "audit: <time> ledger=L
** error: …" and retried next round; on the first round it ends the run with
** its exit code (misconfiguration: unknown ledger, no credentials). SIGINT
** and SIGTERM end the run with 0 after the current step. With --rounds N the
** exit status is 0 if every round passed, else 4.
** Credentials: $TALLY_USER/$TALLY_PASSWORD (re-login on expiry), else the
** token saved by `tally --server URL login USER`.
*/
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tally_client.h"
#include "merkle/rfc6962.h"
#include "util/err.h"
#include "util/sha256.h"

int cli_audit_main(int argc, char **argv);

#define AUDIT_INTERVAL_MS_MAX (24ull * 3600 * 1000)
#define AUDIT_INTERVAL_MS_DEFAULT 10000ull
#define AUDIT_TIMEOUT_MS 30000L /* per request: a server that hangs is an error, not a stall */
#define AUDIT_ENTRY_HDR_LEN 12  /* FORMAT.md §3: ns, flags, key_len, meta_len, value_len */

static volatile sig_atomic_t audit_stop;

static void on_signal(int sig)
{
    (void)sig;
    audit_stop = 1;
}

typedef struct auditor {
    tally_client *cl;
    const char *ledger;
    int rehash;
    int have_last;                 /* last_size/last_root hold an accepted checkpoint */
    uint64_t last_size;
    uint8_t last_root[TALLY_HASH_LEN];
    int have_chain;                /* chain_hash is the hash of tx chain_tx */
    uint64_t chain_tx;
    uint8_t chain_hash[TALLY_HASH_LEN];
} auditor;

/* "2026-11-23T01:20:00.123Z" */
static void now_rfc3339(char buf[48])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, 48, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 48 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static int audit_alert(const auditor *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int audit_alert(const auditor *a, const char *fmt, ...)
{
    char when[48], what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    now_rfc3339(when);
    printf("ALERT: %s ledger=%s %s\n", when, a->ledger, what);
    fflush(stdout);
    fprintf(stderr, "ALERT: %s ledger=%s %s\n", when, a->ledger, what);
    return CLI_EXIT_INTEGRITY;
}

static void audit_error(const auditor *a, int rc, const char *what)
{
    char when[48];
    const char *em = tally_errmsg();
    now_rfc3339(when);
    fprintf(stderr, "audit: %s ledger=%s error: %s: %s%s%s\n", when, a->ledger, what,
            tally_strerror(rc), em && *em ? ": " : "", em ? em : "");
}

/* An integrity failure (exit 2) or an ordinary error? */
static int is_integrity(int rc)
{
    return rc == TALLY_EBADPROOF || rc == TALLY_ECORRUPT;
}

/* Checks the server's consistency proof from (a->last_size, a->last_root)
** to (size, root). Returns 0, TALLY_EBADPROOF (reason in *why) or the
** error of fetching it. */
static int check_consistency(auditor *a, uint64_t size, const uint8_t root[TALLY_HASH_LEN],
                             char *why, size_t why_len)
{
    char *body = NULL;
    int rc = tally_client_proof_consistency_json(a->cl, &body, a->last_size, size);
    if (rc != TALLY_OK)
        return rc;
    json_error_t err;
    json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, &err);
    free(body);
    json_t *arr = json_object_get(j, "proof");
    json_t *old = json_object_get(j, "old"), *n = json_object_get(j, "size");
    rfc6962_hash path[RFC6962_PROOF_MAX + 1];
    size_t len = json_is_array(arr) ? json_array_size(arr) : 0;
    int ok = json_is_array(arr) && len <= RFC6962_PROOF_MAX + 1 && json_is_integer(old) &&
             json_is_integer(n) && (uint64_t)json_integer_value(old) == a->last_size &&
             (uint64_t)json_integer_value(n) == size;
    for (size_t i = 0; ok && i < len; i++) {
        const char *h = json_string_value(json_array_get(arr, i));
        ok = h && strlen(h) == 64 && cli_unhex(h, 64, path[i]) == 0;
    }
    json_decref(j);
    if (!ok) {
        snprintf(why, why_len, "malformed consistency proof %" PRIu64 " -> %" PRIu64,
                 a->last_size, size);
        return TALLY_EBADPROOF;
    }
    if (rfc6962_verify_consistency(a->last_size, size, a->last_root, root,
                                   (const rfc6962_hash *)path, len) != 0) {
        snprintf(why, why_len, "checkpoint at size %" PRIu64 " is not consistent with the one "
                 "trusted at size %" PRIu64 " (fork or rewritten history)", size, a->last_size);
        return TALLY_EBADPROOF;
    }
    return 0;
}

/* Rebuilds the entries root of a verified transaction from its entries
** (leaf = SHA256(0x00 || header || key || meta || SHA256(value)), the
** header rebuilt from the fields). 0, or -1 with *why. */
static int rehash_tx(const tally_client_tx *t, uint64_t n, char *why, size_t why_len)
{
    if (t->tx != n) {
        snprintf(why, why_len, "asked for tx %" PRIu64 ", got tx %" PRIu64, n, t->tx);
        return -1;
    }
    rfc6962_hash *leaves = malloc(((size_t)t->entry_count + 1) * sizeof *leaves);
    if (!leaves) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < t->entry_count; i++) {
        const tally_client_tx_entry *e = &t->entries[i];
        if (e->key_len == 0 || e->key_len > 0xffff || (e->deleted && e->value_len)) {
            snprintf(why, why_len, "tx %" PRIu64 " entry %" PRIu32 " is malformed", n, i);
            free(leaves);
            return -1;
        }
        uint8_t h[AUDIT_ENTRY_HDR_LEN], vh[TALLY_HASH_LEN];
        uint16_t kl = (uint16_t)e->key_len;
        uint32_t ml = (uint32_t)e->meta_len, vl = (uint32_t)e->value_len;
        h[0] = e->ns;
        h[1] = e->deleted ? 1 : 0; /* the only flag defined (FORMAT.md §3) */
        for (int b = 0; b < 2; b++)
            h[2 + b] = (uint8_t)(kl >> (8 * b));
        for (int b = 0; b < 4; b++) {
            h[4 + b] = (uint8_t)(ml >> (8 * b));
            h[8 + b] = (uint8_t)(vl >> (8 * b));
        }
        static const uint8_t zero = 0;
        tally_sha256(e->value, e->value_len, vh);
        tally_sha256_ctx c;
        tally_sha256_init(&c);
        tally_sha256_update(&c, &zero, 1);
        tally_sha256_update(&c, h, sizeof h);
        tally_sha256_update(&c, e->key, e->key_len);
        tally_sha256_update(&c, e->meta, e->meta_len);
        tally_sha256_update(&c, vh, sizeof vh);
        tally_sha256_final(&c, leaves[i]);
        if (memcmp(leaves[i], e->leaf_hash, TALLY_HASH_LEN) != 0) {
            snprintf(why, why_len, "tx %" PRIu64 " entry %" PRIu32 ": re-hashed leaf differs",
                     n, i);
            free(leaves);
            return -1;
        }
    }
    uint8_t root[TALLY_HASH_LEN];
    int rc = rfc6962_root_of_leaves((const rfc6962_hash *)leaves, t->entry_count, NULL, root);
    free(leaves);
    if (rc != 0) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (memcmp(root, t->entries_root, TALLY_HASH_LEN) != 0) {
        snprintf(why, why_len, "tx %" PRIu64 ": recomputed entries root differs from the header's",
                 n);
        return -1;
    }
    return 0;
}

/* One round's walk (tally_client_verified_walk): nothing of it is accepted,
** here or in the shared trusted state, unless every step passed. */
typedef struct audit_walk {
    auditor *a;
    int started;      /* the checkpoint passed the client's checks */
    int reported;     /* an ALERT or error line was printed already */
    uint64_t size;    /* the checkpoint */
    uint8_t root[TALLY_HASH_LEN];
    uint64_t from;    /* the size accepted in the previous round (0: none) */
    uint64_t next;    /* the tx being checked */
    uint64_t done;    /* txs re-hashed above `from` */
    int have_chain;   /* chain_hash is the hash of tx chain_tx (this walk's view) */
    uint64_t chain_tx;
    uint8_t chain_hash[TALLY_HASH_LEN];
} audit_walk;

enum { AUDIT_STOPPED = 100 }; /* a signal: the round ends, nothing accepted */

/* The checkpoint, verified by the client against the shared trusted state;
** here against what this process accepted last. Chooses the txs to walk. */
static int audit_start(audit_walk *w, uint64_t size, const uint8_t root[TALLY_HASH_LEN],
                       uint64_t *from)
{
    auditor *a = w->a;
    char why[512];
    w->started = 1;
    w->size = size;
    memcpy(w->root, root, TALLY_HASH_LEN);
    if (a->have_last) {
        w->reported = 1;
        if (size < a->last_size)
            return audit_alert(a, "rollback: checkpoint size %" PRIu64 " is below the trusted "
                               "size %" PRIu64, size, a->last_size);
        if (size == a->last_size && memcmp(root, a->last_root, TALLY_HASH_LEN) != 0)
            return audit_alert(a, "fork: another root at the trusted size %" PRIu64, size);
        if (size > a->last_size) {
            int rc = check_consistency(a, size, root, why, sizeof why);
            if (rc == TALLY_EBADPROOF)
                return audit_alert(a, "%s", why);
            if (rc != TALLY_OK) {
                audit_error(a, rc, "consistency proof");
                return rc;
            }
        }
        w->reported = 0;
    }
    w->from = a->have_last ? a->last_size : 0;
    w->have_chain = a->have_chain;
    w->chain_tx = a->chain_tx;
    memcpy(w->chain_hash, a->chain_hash, TALLY_HASH_LEN);
    if (!a->rehash)
        *from = size + 1; /* no transactions */
    else if (w->from > 0 && !(w->have_chain && w->chain_tx == w->from))
        *from = w->from; /* the chain's starting point first */
    else
        *from = w->from + 1;
    w->next = *from;
    return 0;
}

/* A verified tx (the client checked its inclusion), re-hashed and chained. */
static int audit_step(void *arg, const tally_client_tx *t, uint64_t size,
                      const uint8_t root[TALLY_HASH_LEN], uint64_t *from)
{
    audit_walk *w = arg;
    char why[512];
    if (!t)
        return audit_start(w, size, root, from);
    if (audit_stop)
        return AUDIT_STOPPED;
    int bad = rehash_tx(t, w->next, why, sizeof why) != 0;
    if (!bad && w->have_chain && w->chain_tx + 1 == t->tx &&
        memcmp(t->prev_hash, w->chain_hash, TALLY_HASH_LEN) != 0) {
        snprintf(why, sizeof why, "tx %" PRIu64 ": prev_hash is not the hash of tx %" PRIu64,
                 t->tx, w->chain_tx);
        bad = 1;
    }
    if (bad) {
        w->reported = 1;
        return audit_alert(w->a, "%s", why);
    }
    w->have_chain = 1;
    w->chain_tx = t->tx;
    memcpy(w->chain_hash, t->hash, TALLY_HASH_LEN);
    if (t->tx > w->from)
        w->done++;
    w->next = t->tx + 1;
    return 0;
}

/* One round. Returns 0, CLI_EXIT_INTEGRITY (alert printed) or a negative
** TALLY_E* error (printed). */
static int audit_round(auditor *a)
{
    char when[48];
    audit_walk w = { .a = a };
    tally_clearerr();
    int rc = tally_client_verified_walk(a->cl, audit_step, &w);
    if (rc == AUDIT_STOPPED)
        return 0; /* interrupted: nothing accepted */
    if (w.reported)
        return rc;
    if (is_integrity(rc) && !w.started)
        return audit_alert(a, "checkpoint: %s", tally_errmsg());
    if (is_integrity(rc))
        return audit_alert(a, "tx %" PRIu64 ": %s", w.next, tally_errmsg());
    if (rc != TALLY_OK) {
        audit_error(a, rc, w.started ? "re-hashing transactions" : "checkpoint");
        return rc;
    }
    a->have_last = w.size > 0; /* an empty ledger: nothing to extend yet */
    a->last_size = w.size;
    memcpy(a->last_root, w.root, TALLY_HASH_LEN);
    a->have_chain = w.have_chain;
    a->chain_tx = w.chain_tx;
    memcpy(a->chain_hash, w.chain_hash, TALLY_HASH_LEN);
    now_rfc3339(when);
    printf("audit: %s ledger=%s size=%" PRIu64 " root=", when, a->ledger, w.size);
    cli_hex(stdout, w.root, TALLY_HASH_LEN);
    if (a->rehash)
        printf(" ok (+%" PRIu64 " tx, %" PRIu64 " rehashed)\n", w.size - w.from, w.done);
    else
        printf(" ok (+%" PRIu64 " tx)\n", w.size - w.from);
    fflush(stdout);
    return 0;
}

/* "500ms", "10s", "1m", "1h", or plain seconds. 0 or -1. */
static int parse_interval(const char *s, uint64_t *out_ms)
{
    uint64_t n = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        if (n > AUDIT_INTERVAL_MS_MAX)
            return -1;
        n = n * 10 + (uint64_t)(*p++ - '0');
    }
    uint64_t mult = strcmp(p, "ms") == 0 ? 1 : (strcmp(p, "s") == 0 || !*p) ? 1000
                  : strcmp(p, "m") == 0 ? 60000 : strcmp(p, "h") == 0 ? 3600000 : 0;
    if (mult == 0 || n == 0 || n > AUDIT_INTERVAL_MS_MAX / mult)
        return -1;
    *out_ms = n * mult;
    return 0;
}

/* Sleeps ms, waking early when a signal asks to stop. */
static void audit_sleep(uint64_t ms)
{
    struct timespec left = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (!audit_stop && nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

static int audit_usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "tally: %s\n", msg);
    fputs("usage: tally audit --server URL --ledger NAME [--interval DUR] [--rehash] "
          "[--rounds N] [--server-key VKEY]\n"
          "  DUR: 500ms, 10s, 1m, 1h (default 10s)\n", stderr);
    return CLI_EXIT_USAGE;
}

int cli_audit_main(int argc, char **argv)
{
    const char *server = NULL, *ledger = NULL, *vkey = NULL, *interval = "10s", *rounds_s = NULL;
    int rehash = 0;
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i], **dst = NULL;
        if (strcmp(w, "--rehash") == 0) {
            rehash = 1;
            continue;
        }
        if (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0) {
            audit_usage(NULL);
            return CLI_EXIT_OK;
        }
        static const char *const names[] = { "--server", "--ledger", "--server-key",
                                             "--interval", "--rounds" };
        const char **dsts[] = { &server, &ledger, &vkey, &interval, &rounds_s };
        const char *v = NULL;
        for (size_t k = 0; k < sizeof names / sizeof names[0] && !dst; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(w, names[k], n) != 0)
                continue;
            if (w[n] == '=')
                v = w + n + 1, dst = dsts[k];
            else if (w[n] == '\0')
                v = i + 1 < argc ? argv[++i] : NULL, dst = dsts[k];
        }
        if (!dst) {
            char m[128];
            snprintf(m, sizeof m, "audit: unknown argument '%s'", cli_show(w, strlen(w)));
            return audit_usage(m);
        }
        if (!v || !*v)
            return audit_usage("an option needs a value");
        *dst = v;
    }
    uint64_t interval_ms = AUDIT_INTERVAL_MS_DEFAULT, rounds = 0;
    if (!server)
        return audit_usage("audit needs --server URL");
    if (parse_interval(interval, &interval_ms) < 0)
        return audit_usage("--interval needs a duration like 500ms, 10s, 1m");
    if (rounds_s && (cli_parse_u64(rounds_s, &rounds) < 0 || rounds == 0))
        return audit_usage("--rounds needs a number >= 1");
    ledger = cli_ledger_or_default(ledger);
    auditor a;
    memset(&a, 0, sizeof a);
    a.ledger = ledger;
    a.rehash = rehash;
    int rc = cli_client_open(&a.cl, server, ledger, vkey, AUDIT_TIMEOUT_MS, 1);
    if (rc != TALLY_OK)
        return is_integrity(rc) ? audit_alert(&a, "connecting to %s: %s", server, tally_errmsg())
                                : cli_fail(rc, "connecting to %s", server);
    /* Start from what this state directory already trusts, if anything. */
    rc = tally_client_trusted_state(a.cl, &a.last_size, a.last_root);
    if (is_integrity(rc)) {
        int ec = audit_alert(&a, "trusted state: %s", tally_errmsg());
        tally_client_close(a.cl);
        return ec;
    }
    a.have_last = rc == TALLY_OK && a.last_size > 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: a sleep ends at once */
    sigaction(SIGTERM, &sa, NULL);

    int exit_code = CLI_EXIT_OK, ok_rounds = 0;
    for (uint64_t round = 1; !audit_stop; round++) {
        rc = audit_round(&a);
        if (rc == CLI_EXIT_INTEGRITY) {
            exit_code = rc;
            break;
        }
        if (rc != 0 && ok_rounds == 0) { /* the first round: misconfigured */
            exit_code = cli_exit_code(rc);
            break;
        }
        if (rc != 0)
            exit_code = CLI_EXIT_ERROR;
        else
            ok_rounds++;
        if (rounds && round >= rounds)
            break;
        audit_sleep(interval_ms);
    }
    tally_client_close(a.cl);
    if (audit_stop && exit_code != CLI_EXIT_INTEGRITY) {
        fprintf(stderr, "audit: stopped by signal after %d good rounds\n", ok_rounds);
        return CLI_EXIT_OK;
    }
    return exit_code;
}
