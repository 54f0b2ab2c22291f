/*
** cli_remote.c — server mode of `tally`: `tally --server URL [--ledger NAME]
** COMMAND ...` runs the embedded commands against tallyd through the
** verifying client (include/tally_client.h), with the same output formats
** and exit codes, plus login, ledger, user and checkpoint.
**
** What is verified (docs/API.md "Client"): get, set, set -, del, tx, state,
** checkpoint, proof, verify, history and scan check every proof against the
** pinned server key, the pinned ledger id and the trusted state in the state
** directory ($TALLY_HOME, else ~/.tally); any failed check exits 2 with a
** message on stderr and leaves evidence in <state>/evidence/. history and
** scan prove each row they print (its order and key too); that no row is
** missing is the server's word (API v1 cannot prove it).
**
** Credentials: TALLY_USER and TALLY_PASSWORD (a login per run), else the
** token saved by `tally --server URL login USER`. The ledger is --ledger,
** else $TALLY_LEDGER, else "default".
*/
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "tally_client.h"
#include "util/err.h"

static int rcmd_help(cli_ctx *c);

/* ---- connecting ---- */

#define CLI_CLOCK_SKEW_MS_MAX 86400000L /* TALLY_CLOCK_SKEW_MS: at most a day */

const char *cli_ledger_or_default(const char *given)
{
    const char *l = given;
    if (!l || !*l)
        l = getenv("TALLY_LEDGER");
    return l && *l ? l : "default";
}

static const char *ledger_name(const cli_args *a) { return cli_ledger_or_default(a->ledger); }

int cli_client_open(tally_client **out, const char *url, const char *ledger, const char *vkey, long timeout_ms,
                    int with_creds)
{
    tally_client_options o;
    tally_client_options_init(&o);
    o.ledger = cli_ledger_or_default(ledger);
    o.server_vkey = vkey;
    if (timeout_ms > 0)
        o.timeout_ms = timeout_ms;
    /* TALLY_CLOCK_SKEW_MS: how far before this machine's clock a verified
    ** write's transaction time may lie (default 5 min; -1: not checked). */
    const char *skew = getenv("TALLY_CLOCK_SKEW_MS");
    if (skew && *skew) {
        char *end;
        errno = 0;
        long ms = strtol(skew, &end, 10);
        if (*end || errno || (ms != -1 && (ms < 1 || ms > CLI_CLOCK_SKEW_MS_MAX)))
            return tally_seterr(TALLY_EINVAL, "TALLY_CLOCK_SKEW_MS must be milliseconds "
                                "(1..%ld) or -1, not '%s'", CLI_CLOCK_SKEW_MS_MAX, skew);
        o.clock_skew_ms = ms;
    }
    const char *u = getenv("TALLY_USER"), *p = getenv("TALLY_PASSWORD");
    if (with_creds && u && *u && p) {
        o.user = u;
        o.password = p;
    }
    return tally_client_connect(out, url, &o);
}

/* Connects with the command line's and the environment's settings. */
static int rconnect(cli_ctx *c, tally_client **out, int with_creds)
{
    int rc = cli_client_open(out, c->args->server, c->args->ledger, c->args->server_key, 0, with_creds);
    if (rc != TALLY_OK)
        return cli_fail(rc, "connecting to %s", c->args->server);
    return 0;
}

/* Reads a password: without echo from a TTY (prompt on stderr), else one
** line of stdin. Returns 0 or -1. */
static int read_password(const char *prompt, char *buf, size_t cap)
{
    int tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fputs(prompt, stderr);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        } else {
            tty = 0;
        }
    }
    char *r = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!r)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* ---- output (the formats of cli_kv.c and cli_ledger.c) ---- */

static void print_value(const cli_ctx *c, const char *key, const tally_client_version *v)
{
    cli_out_version(c->args->json, key, v->value, v->value_len, v->tx, v->rev, v->ts_ns);
}

static void print_hash_line(const char *name, const uint8_t h[TALLY_HASH_LEN])
{
    printf("%s: ", name);
    cli_hex(stdout, h, TALLY_HASH_LEN);
    putchar('\n');
}

/* ---- set KEY VALUE ... ---- */

static int rset_stdin(cli_ctx *c, tally_client *cl);

static int rcmd_set(cli_ctx *c, tally_client *cl)
{
    const cli_args *a = c->args;
    if ((a->seen & CLI_OPT_IF_ABSENT) && (a->seen & CLI_OPT_IF_REV))
        return cli_usage(c, "--if-absent and --if-rev exclude each other");
    if (a->npos == 1 && strcmp(a->pos[0], "-") == 0)
        return rset_stdin(c, cl);
    if (a->seen & CLI_OPT_BATCH)
        return cli_usage(c, "--batch applies to 'set -' only");
    if (a->npos % 2)
        return cli_usage(c, "set needs KEY VALUE pairs");
    size_t n = (size_t)a->npos / 2;
    if ((a->seen & CLI_OPT_IF_REV) && n != 1)
        return cli_usage(c, "--if-rev applies to exactly one key");
    tally_client_entry *e = calloc(n, sizeof *e);
    if (!e)
        return cli_failx(TALLY_ENOMEM, NULL);
    for (size_t i = 0; i < n; i++) {
        e[i].key = a->pos[2 * i];
        e[i].key_len = strlen(a->pos[2 * i]);
        e[i].value = a->pos[2 * i + 1];
        e[i].value_len = strlen(a->pos[2 * i + 1]);
        e[i].cond = (a->seen & CLI_OPT_IF_ABSENT) ? TALLY_COND_ABSENT
                    : (a->seen & CLI_OPT_IF_REV) ? TALLY_COND_REV : TALLY_COND_NONE;
        e[i].cond_rev = a->if_rev;
    }
    uint64_t tx = 0;
    int rc = tally_client_verified_set(cl, &tx, e, n, a->meta);
    free(e);
    if (rc != TALLY_OK)
        return cli_fail(rc, "set failed");
    cli_print_tx_ack(c, tx);
    return CLI_EXIT_OK;
}

/* ---- set - [--batch N]: KEY<TAB>VALUE lines, N per verified transaction ---- */

typedef struct rbatch {
    tally_client_entry *e;
    char **lines;   /* owned copies, one per entry */
    size_t n, max;
    size_t bytes;
    uint8_t cond;
} rbatch;

static int rbatch_flush(cli_ctx *c, tally_client *cl, rbatch *b)
{
    if (b->n == 0)
        return 0;
    uint64_t tx = 0;
    int rc = tally_client_verified_set(cl, &tx, b->e, b->n, c->args->meta);
    if (rc != TALLY_OK)
        return cli_fail(rc, "committing a batch of %zu lines", b->n);
    cli_print_tx_ack(c, tx);
    for (size_t i = 0; i < b->n; i++)
        free(b->lines[i]);
    b->n = 0;
    b->bytes = 0;
    return 0;
}

/* A key already in the batch? (Linear: batches are checked as they fill;
** the batch is flushed before a repeated key, as in cli_stdin.c.) */
static int rbatch_has(const rbatch *b, const char *key, size_t klen)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].key_len == klen && memcmp(b->e[i].key, key, klen) == 0)
            return 1;
    return 0;
}

static int rset_line(cli_ctx *c, tally_client *cl, rbatch *b, const char *line, size_t len,
                     unsigned long lineno)
{
    const char *tab = memchr(line, '\t', len);
    if (!tab)
        return cli_usage(c, "line %lu: expected KEY<TAB>VALUE", lineno);
    size_t klen = (size_t)(tab - line), vlen = len - klen - 1;
    if (klen == 0)
        return cli_failx(TALLY_EINVAL, "line %lu: empty key", lineno);
    if (klen > TALLY_KEY_BYTES_MAX || vlen > TALLY_VALUE_BYTES_MAX)
        return cli_failx(TALLY_ETOOBIG, "line %lu: key or value too long", lineno);
    int rc;
    if ((b->n && rbatch_has(b, line, klen)) || b->bytes + len + 64 > (32u << 20))
        if ((rc = rbatch_flush(c, cl, b)) != 0)
            return rc;
    char *copy = malloc(len + 1);
    if (!copy)
        return cli_failx(TALLY_ENOMEM, NULL);
    memcpy(copy, line, len);
    copy[len] = '\0';
    b->lines[b->n] = copy;
    tally_client_entry *e = &b->e[b->n++];
    memset(e, 0, sizeof *e);
    e->key = copy;
    e->key_len = klen;
    e->value = copy + klen + 1;
    e->value_len = vlen;
    e->cond = b->cond;
    b->bytes += len + 64;
    return b->n == b->max ? rbatch_flush(c, cl, b) : 0;
}

static int rset_stdin(cli_ctx *c, tally_client *cl)
{
    const cli_args *a = c->args;
    if (a->seen & CLI_OPT_IF_REV)
        return cli_usage(c, "--if-rev applies to one key, not to 'set -'");
    uint64_t max = (a->seen & CLI_OPT_BATCH) ? a->batch : 1;
    if (max < 1 || max > 4096)
        return cli_usage(c, "--batch needs 1..4096 in server mode");
    rbatch b = { calloc(max, sizeof *b.e), calloc(max, sizeof *b.lines), 0, (size_t)max, 0,
                 (a->seen & CLI_OPT_IF_ABSENT) ? TALLY_COND_ABSENT : TALLY_COND_NONE };
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long lineno = 0;
    int rc = b.e && b.lines ? 0 : cli_failx(TALLY_ENOMEM, NULL);
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n')
            len--;
        rc = rset_line(c, cl, &b, line, len, ++lineno);
    }
    if (rc == 0 && ferror(stdin))
        rc = cli_failx(TALLY_EIO, "reading standard input");
    if (rc == 0)
        rc = rbatch_flush(c, cl, &b);
    for (size_t i = 0; i < b.n; i++)
        free(b.lines[i]);
    free(b.lines);
    free(b.e);
    free(line);
    return rc;
}

/* ---- get KEY [--tx N | --at TIME | --rev R] ---- */

/* get K1 K2 …: one verified/getmany per TALLY_CLIENT_GETMANY_MAX keys (fewer
** when the server finds an answer too large), each value printed as a single
** get prints it, in the order given, once its request verified; an absent
** key is reported on stderr and makes the exit code 1 once all are printed. */
tally_client_key *cli_words_as_keys(char *const *words, size_t n)
{
    tally_client_key *keys = calloc(n ? n : 1, sizeof *keys);
    for (size_t i = 0; keys && i < n; i++) {
        keys[i].key = words[i];
        keys[i].key_len = strlen(words[i]);
    }
    return keys;
}

static int rget_many(cli_ctx *c, tally_client *cl, int how, uint64_t arg)
{
    const cli_args *a = c->args;
    size_t n = (size_t)a->npos;
    tally_client_key *keys = cli_words_as_keys(a->pos, n);
    tally_client_version *out = calloc(TALLY_CLIENT_GETMANY_MAX, sizeof *out);
    if (!keys || !out) {
        free(keys);
        free(out);
        return cli_failx(TALLY_ENOMEM, "%zu keys", n);
    }
    int ec = CLI_EXIT_OK;
    size_t chunk = TALLY_CLIENT_GETMANY_MAX;
    for (size_t at = 0; at < n && ec != CLI_EXIT_INTEGRITY;) {
        size_t m = n - at < chunk ? n - at : chunk;
        int rc = tally_client_verified_get_many(cl, out, NULL, keys + at, m, how, arg);
        if (rc == TALLY_ETOOBIG && m > 1) { /* the answer would be too large: halve */
            chunk = m / 2;
            continue;
        }
        if (rc != TALLY_OK) {
            ec = cli_fail(rc, "%zu keys", m);
            break;
        }
        for (size_t i = 0; i < m; i++) {
            const char *key = a->pos[at + i];
            if (out[i].tx == 0) {
                cli_failx(TALLY_ENOTFOUND, "key '%s'", cli_show(key, strlen(key)));
                ec = CLI_EXIT_NOTFOUND;
            } else {
                print_value(c, key, &out[i]);
            }
            tally_client_version_free(&out[i]);
        }
        at += m;
    }
    free(keys);
    free(out);
    return ec;
}

static int rcmd_get(cli_ctx *c, tally_client *cl)
{
    const cli_args *a = c->args;
    const char *key = a->pos[0];
    unsigned sel = a->seen & (CLI_OPT_TX | CLI_OPT_AT | CLI_OPT_REV);
    if (sel & (sel - 1))
        return cli_usage(c, "--tx, --at and --rev exclude each other");
    int how = TALLY_CLIENT_LATEST;
    uint64_t arg = 0;
    if (sel == CLI_OPT_TX) {
        if (a->tx == 0)
            return cli_usage(c, "--tx needs a transaction id >= 1");
        how = TALLY_CLIENT_AS_OF_TX;
        arg = a->tx;
    } else if (sel == CLI_OPT_REV) {
        if (a->rev == 0)
            return cli_usage(c, "--rev needs a revision >= 1");
        how = TALLY_CLIENT_REV;
        arg = a->rev;
    } else if (sel == CLI_OPT_AT) {
        int64_t ns;
        if (cli_parse_time(a->at, &ns) < 0)
            return cli_usage(c, "--at needs an RFC 3339 time, not '%s'", a->at);
        if (ns < 0)
            return cli_failx(TALLY_ENOTFOUND, "no transaction at or before %s", a->at);
        how = TALLY_CLIENT_AT_TIME;
        arg = (uint64_t)ns;
    }
    if (a->npos > 1) {
        if (how == TALLY_CLIENT_REV)
            return cli_usage(c, "--rev selects one key's revision: give one key");
        return rget_many(c, cl, how, arg);
    }
    tally_client_version v;
    int rc = tally_client_verified_get(cl, &v, key, strlen(key), how, arg);
    if (rc != TALLY_OK)
        return cli_fail(rc, "key '%s'", cli_show(key, strlen(key)));
    if (v.deleted) {
        uint64_t rev = v.rev;
        tally_client_version_free(&v);
        v.rev = rev;
        return cli_failx(TALLY_ENOTFOUND, "key '%s' revision %" PRIu64 " is a deletion",
                         cli_show(key, strlen(key)), v.rev);
    }
    print_value(c, key, &v);
    tally_client_version_free(&v);
    return CLI_EXIT_OK;
}

/* ---- del KEY ---- */

static int rcmd_del(cli_ctx *c, tally_client *cl)
{
    const char *key = c->args->pos[0];
    uint64_t tx = 0;
    int rc = tally_client_verified_del(cl, &tx, key, strlen(key), 0);
    if (rc != TALLY_OK)
        return cli_fail(rc, "key '%s'", cli_show(key, strlen(key)));
    cli_print_tx_ack(c, tx);
    return CLI_EXIT_OK;
}

/* ---- history KEY, scan PREFIX (unverified: no proofs in API v1) ---- */

typedef struct rlist {
    const cli_ctx *c;
    size_t n;
} rlist;

static int print_rev(void *ctx, const tally_client_version *v)
{
    rlist *l = ctx;
    cli_out_revision(l->c->args->json, l->n == 0, v->rev, v->tx, v->ts_ns, v->deleted, v->value, v->value_len);
    l->n++;
    return 0;
}

static int rcmd_history(cli_ctx *c, tally_client *cl)
{
    const char *key = c->args->pos[0];
    size_t klen = strlen(key);
    uint64_t total = 0;
    tally_client_version first;
    /* Probe the first revision so "not found" prints nothing on stdout. */
    int rc = tally_client_get(cl, &first, key, klen, TALLY_CLIENT_REV, 1);
    if (rc != TALLY_OK)
        return cli_fail(rc, "key '%s'", cli_show(key, klen));
    tally_client_version_free(&first);
    if (c->args->json) {
        putchar('{');
        cli_json_bytes(stdout, "key", key, klen);
        fputs(",\"revisions\":[", stdout);
    }
    rlist l = { c, 0 };
    rc = tally_client_verified_history(cl, &total, key, klen, 1, print_rev, &l);
    if (c->args->json)
        fputs("]}\n", stdout);
    if (rc != TALLY_OK)
        return cli_fail(rc, "key '%s'", cli_show(key, klen));
    return CLI_EXIT_OK;
}

static int print_key(void *ctx, const tally_client_version *v)
{
    rlist *l = ctx;
    if (!l->c->args->json) {
        fwrite(v->key, 1, v->key_len, stdout);
        putchar('\t');
        fwrite(v->value, 1, v->value_len, stdout);
        putchar('\n');
    } else {
        fputs(l->n ? ",{" : "{", stdout);
        cli_json_bytes(stdout, "key", v->key, v->key_len);
        putchar(',');
        cli_json_bytes(stdout, "value", v->value, v->value_len);
        printf(",\"tx\":%" PRIu64 ",\"rev\":%" PRIu64 "}", v->tx, v->rev);
    }
    l->n++;
    return 0;
}

static int rcmd_scan(cli_ctx *c, tally_client *cl)
{
    const cli_args *a = c->args;
    const char *prefix = a->npos ? a->pos[0] : "";
    uint64_t as_of = 0, size = 0;
    uint8_t root[TALLY_HASH_LEN];
    if (a->seen & CLI_OPT_TX) {
        if (a->tx == 0)
            return cli_usage(c, "--tx needs a transaction id >= 1");
        as_of = a->tx;
    } else {
        /* Pin the snapshot to a verified size, as embedded scan pins its size. */
        int rc = tally_client_verified_state(cl, &size, root, NULL);
        if (rc != TALLY_OK)
            return cli_fail(rc, "reading state");
        as_of = size;
    }
    if (as_of == 0) { /* an empty ledger */
        if (a->json) {
            putchar('{');
            cli_json_bytes(stdout, "prefix", prefix, strlen(prefix));
            fputs(",\"tx\":0,\"keys\":[]}\n", stdout);
        }
        return CLI_EXIT_OK;
    }
    if (a->json) {
        putchar('{');
        cli_json_bytes(stdout, "prefix", prefix, strlen(prefix));
        printf(",\"tx\":%" PRIu64 ",\"keys\":[", as_of);
    }
    rlist l = { c, 0 };
    int rc = tally_client_verified_scan(cl, NULL, prefix, strlen(prefix), as_of, print_key, &l);
    if (a->json)
        fputs(rc == TALLY_OK ? "]}\n" : "\n", stdout);
    if (rc != TALLY_OK)
        return cli_fail(rc, "scanning '%s'", cli_show(prefix, strlen(prefix)));
    return CLI_EXIT_OK;
}

/* ---- tx N (verified) ---- */

void cli_out_client_tx(int json, const tally_client_tx *t)
{
    cli_tx_head head = {t->tx, t->ts_ns, t->hash, t->prev_hash, t->entries_root, t->entry_count,
                        t->meta, t->meta_len};
    cli_out_tx_head(json, &head);
    for (uint32_t i = 0; i < t->entry_count; i++) {
        const tally_client_tx_entry *e = &t->entries[i];
        cli_tx_item it = {e->ns,     e->deleted,    e->key,  e->value,
                          e->key_len, e->value_len, e->leaf_hash, e->meta, e->meta_len};
        cli_out_tx_item(json, i, &it);
    }
}

static int rcmd_tx(cli_ctx *c, tally_client *cl)
{
    uint64_t n;
    if (cli_parse_u64(c->args->pos[0], &n) < 0)
        return cli_usage(c, "not a transaction id: '%s'", c->args->pos[0]);
    if (n == 0)
        return cli_failx(TALLY_ERANGE, "tx 0 does not exist");
    tally_client_tx t;
    int rc = tally_client_verified_tx(cl, &t, n);
    if (rc != TALLY_OK)
        return cli_fail(rc, "tx %" PRIu64, n);
    cli_out_client_tx(c->args->json, &t);
    cli_out_tx_end(c->args->json);
    tally_client_tx_free(&t);
    return CLI_EXIT_OK;
}

/* ---- state, checkpoint (verified) ---- */

static int rcmd_state(cli_ctx *c, tally_client *cl)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_client_verified_state(cl, &size, root, NULL);
    if (rc != TALLY_OK)
        return cli_fail(rc, "reading state");
    cli_out_state(c->args->json, size, root);
    return CLI_EXIT_OK;
}

static int rcmd_checkpoint(cli_ctx *c, tally_client *cl)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    char *note = NULL;
    int rc = tally_client_verified_state(cl, &size, root, &note);
    if (rc != TALLY_OK)
        return cli_fail(rc, "reading the checkpoint");
    if (c->args->json) {
        printf("{\"tx\":%" PRIu64 ",", size);
        cli_json_hash(stdout, "root", root);
        fputs(",\"checkpoint\":", stdout);
        cli_json_str(stdout, note, strlen(note));
        fputs("}\n", stdout);
    } else {
        fputs(note, stdout);
    }
    free(note);
    return CLI_EXIT_OK;
}

/* ---- verify [--last N] ---- */

static int verify_fail(const cli_ctx *c, uint64_t tx, const char *msg)
{
    if (c->args->json) {
        printf("{\"ok\":false,\"first_bad_tx\":%" PRIu64 ",\"error\":", tx);
        cli_json_str(stdout, msg, strlen(msg));
        fputs("}\n", stdout);
    } else {
        printf("FAILED at tx %" PRIu64 ": %s\n", tx, msg);
    }
    fprintf(stderr, "tally: %s: tx %" PRIu64 ": %s\n", tally_strerror(TALLY_EBADPROOF), tx, msg);
    return CLI_EXIT_INTEGRITY;
}

/* The walk of `verify`: the range, the hash chain and the progress. */
typedef struct verify_walk {
    const cli_ctx *c;
    int started;             /* the checkpoint passed */
    uint64_t from, size;
    uint64_t next;           /* the tx being checked */
    uint8_t prev[TALLY_HASH_LEN];
    cli_progress p;
} verify_walk;

enum { VERIFY_BROKEN_CHAIN = 1 };

static int verify_step(void *arg, const tally_client_tx *t, uint64_t size,
                       const uint8_t root[TALLY_HASH_LEN], uint64_t *from)
{
    verify_walk *w = arg;
    (void)root;
    if (!t) { /* the checkpoint, verified: choose the range */
        w->started = 1;
        w->size = size;
        w->from = 1;
        if ((w->c->args->seen & CLI_OPT_LAST) && w->c->args->last < size)
            w->from = size - w->c->args->last + 1;
        *from = w->next = w->from;
        return 0;
    }
    /* The chain: each header names its predecessor's hash. */
    if (t->tx > w->from && memcmp(t->prev_hash, w->prev, TALLY_HASH_LEN) != 0)
        return VERIFY_BROKEN_CHAIN;
    memcpy(w->prev, t->hash, TALLY_HASH_LEN);
    cli_progress_cb(&w->p, t->tx - w->from + 1, size - w->from + 1);
    w->next = t->tx + 1;
    return 0;
}

/* verify [--last N]: every transaction (or the last N) of the latest
** checkpoint, which becomes the trusted state only if all of them pass. */
static int rcmd_verify(cli_ctx *c, tally_client *cl)
{
    char msg[600];
    if ((c->args->seen & CLI_OPT_LAST) && c->args->last == 0)
        return cli_usage(c, "--last needs a number of transactions >= 1");
    verify_walk w = { .c = c };
    cli_progress_init(&w.p, "verify");
    int rc = tally_client_verified_walk(cl, verify_step, &w);
    cli_progress_end(&w.p);
    if (rc == VERIFY_BROKEN_CHAIN)
        return verify_fail(c, w.next, "prev_hash is not the hash of the previous transaction");
    if (rc == TALLY_EBADPROOF) {
        snprintf(msg, sizeof msg, "%s%s", w.started ? "" : "checkpoint: ", tally_errmsg());
        return verify_fail(c, w.started ? w.next : 0, msg);
    }
    if (rc != TALLY_OK && w.started)
        return cli_fail(rc, "tx %" PRIu64, w.next);
    if (rc != TALLY_OK)
        return cli_fail(rc, "reading the checkpoint");
    uint64_t checked = w.size >= w.from ? w.size - w.from + 1 : 0;
    if (c->args->json)
        printf("{\"ok\":true,\"tx\":%" PRIu64 ",\"checked\":%" PRIu64 "}\n", w.size, checked);
    else
        printf("ok: checkpoint at %" PRIu64 " verified; %" PRIu64 " transactions verified\n",
               w.size, checked);
    return CLI_EXIT_OK;
}

/* ---- proof inclusion N [--size S] | proof consistency M N (verified) ---- */

static void print_proof_tail(const cli_ctx *c, const tally_proof *p)
{
    if (c->args->json) {
        cli_json_path(stdout, (const uint8_t(*)[TALLY_HASH_LEN])p->path, p->len);
        fputs("}\n", stdout);
    } else {
        cli_plain_path(stdout, (const uint8_t(*)[TALLY_HASH_LEN])p->path, p->len);
    }
}

static int rcmd_proof(cli_ctx *c, tally_client *cl)
{
    const cli_args *a = c->args;
    const char *sub = a->pos[0];
    tally_proof p;
    uint8_t h1[TALLY_HASH_LEN], h2[TALLY_HASH_LEN];
    uint64_t m, n;
    int rc;
    if (strcmp(sub, "inclusion") == 0) {
        if (a->npos != 2 || cli_parse_u64(a->pos[1], &n) < 0 || n == 0)
            return cli_usage(c, "proof inclusion needs a transaction id N >= 1");
        if ((a->seen & CLI_OPT_SIZE) && a->size < n)
            return cli_failx(TALLY_ERANGE, "tx %" PRIu64 " is not in a tree of size %" PRIu64,
                             n, a->size);
        rc = tally_client_verified_inclusion(cl, &p, h1, h2, n,
                                             (a->seen & CLI_OPT_SIZE) ? a->size : 0);
        if (rc != TALLY_OK)
            return cli_fail(rc, "proof of tx %" PRIu64, n);
        if (a->json) {
            printf("{\"index\":%" PRIu64 ",\"size\":%" PRIu64 ",\"tx\":%" PRIu64 ",", n - 1,
                   p.size, n);
            cli_json_hash(stdout, "leaf_hash", h1);
            putchar(',');
            cli_json_hash(stdout, "root", h2);
            putchar(',');
        } else {
            printf("index: %" PRIu64 "\nsize: %" PRIu64 "\ntx: %" PRIu64 "\n", n - 1, p.size, n);
            print_hash_line("leaf_hash", h1);
            print_hash_line("root", h2);
        }
        print_proof_tail(c, &p);
        return CLI_EXIT_OK;
    }
    if (strcmp(sub, "consistency") == 0) {
        if (a->seen & CLI_OPT_SIZE)
            return cli_usage(c, "--size applies to 'proof inclusion' only");
        if (a->npos != 3 || cli_parse_u64(a->pos[1], &m) < 0 || cli_parse_u64(a->pos[2], &n) < 0)
            return cli_usage(c, "proof consistency needs sizes M and N");
        if (m == 0 || m > n)
            return cli_usage(c, "proof consistency needs 1 <= M <= N");
        rc = tally_client_verified_consistency(cl, &p, h1, h2, m, n);
        if (rc != TALLY_OK)
            return cli_fail(rc, "consistency proof %" PRIu64 " -> %" PRIu64, m, n);
        if (a->json) {
            printf("{\"old\":%" PRIu64 ",\"size\":%" PRIu64 ",", m, n);
            cli_json_hash(stdout, "old_root", h1);
            putchar(',');
            cli_json_hash(stdout, "root", h2);
            putchar(',');
        } else {
            printf("old: %" PRIu64 "\nsize: %" PRIu64 "\n", m, n);
            print_hash_line("old_root", h1);
            print_hash_line("root", h2);
        }
        print_proof_tail(c, &p);
        return CLI_EXIT_OK;
    }
    return cli_usage(c, "unknown proof kind '%s'", sub);
}

/* ---- login USER ---- */

static int rcmd_login(cli_ctx *c, tally_client *cl)
{
    const char *user = c->args->pos[0];
    char pw[1024];
    const char *env = getenv("TALLY_PASSWORD");
    if (env && *env)
        snprintf(pw, sizeof pw, "%s", env);
    else if (read_password("password: ", pw, sizeof pw) < 0)
        return cli_failx(TALLY_EINVAL, "no password given");
    int rc = tally_client_login(cl, NULL, user, pw, 1);
    memset(pw, 0, sizeof pw);
    if (rc != TALLY_OK)
        return cli_fail(rc, "login as '%s'", user);
    if (c->args->json) {
        putchar('{');
        cli_json_bytes(stdout, "user", user, strlen(user));
        fputs(",\"ok\":true}\n", stdout);
    } else {
        printf("logged in as %s (token saved in %s/tokens/)\n", user,
               tally_client_state_dir(cl));
    }
    return CLI_EXIT_OK;
}

static int rcmd_logout(cli_ctx *c, tally_client *cl)
{
    int rc = tally_client_logout(cl);
    if (rc != TALLY_OK)
        return cli_fail(rc, "logout");
    if (c->args->json)
        puts("{\"ok\":true}");
    else
        puts("logged out (the session is ended on the server; the saved token is removed)");
    return CLI_EXIT_OK;
}

/* ---- ledger create NAME | ledger list ---- */

static int rcmd_ledger(cli_ctx *c, tally_client *cl)
{
    const char *sub = c->args->pos[0];
    if (strcmp(sub, "create") == 0 && c->args->npos == 2) {
        tally_client_ledger l;
        int rc = tally_client_ledger_create(cl, &l, c->args->pos[1]);
        if (rc != TALLY_OK)
            return cli_fail(rc, "creating ledger '%s'", c->args->pos[1]);
        if (c->args->json)
            printf("{\"name\":\"%s\",\"id\":\"%s\"}\n", l.name, l.id);
        else
            printf("%s %s\n", l.name, l.id);
        return CLI_EXIT_OK;
    }
    if (strcmp(sub, "list") == 0 && c->args->npos == 1) {
        tally_client_ledger *l;
        size_t n;
        int rc = tally_client_ledger_list(cl, &l, &n);
        if (rc != TALLY_OK)
            return cli_fail(rc, "listing ledgers");
        if (c->args->json)
            fputs("{\"ledgers\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            if (c->args->json) {
                printf("%s{", i ? "," : "");
                cli_json_bytes(stdout, "name", l[i].name, strlen(l[i].name));
                putchar(',');
                cli_json_bytes(stdout, "id", l[i].id, strlen(l[i].id));
                printf(",\"size\":%" PRIu64 "}", l[i].size);
            } else {
                printf("%s\t%s\t%" PRIu64 "\n", l[i].name, l[i].id, l[i].size);
            }
        }
        if (c->args->json)
            fputs("]}\n", stdout);
        free(l);
        return CLI_EXIT_OK;
    }
    return cli_usage(c, "ledger create NAME | ledger list");
}

/* ---- user create NAME --role ROLE [--ledger NAME] ---- */

static int rcmd_user(cli_ctx *c, tally_client *cl)
{
    const cli_args *a = c->args;
    if (strcmp(a->pos[0], "create") != 0 || a->npos != 2)
        return cli_usage(c, "user create NAME --role ROLE [--ledger NAME]");
    if (!a->role || !*a->role)
        return cli_usage(c, "user create needs --role reader|auditor|writer|admin");
    char pw[1024];
    const char *env = getenv("TALLY_NEW_PASSWORD");
    const char *pass = NULL;
    if (env) {
        pass = *env ? env : NULL;
    } else if (read_password("new user's password (empty: grant only): ", pw, sizeof pw) == 0 &&
               pw[0]) {
        pass = pw;
    }
    const char *ledger = a->role && strcmp(a->role, "admin") == 0 && a->ledger &&
                         strcmp(a->ledger, "*") == 0 ? "*" : ledger_name(a);
    int rc = tally_client_user_create(cl, a->pos[1], pass, a->role, ledger);
    memset(pw, 0, sizeof pw);
    if (rc != TALLY_OK)
        return cli_fail(rc, "creating user '%s'", a->pos[1]);
    if (a->json)
        printf("{\"name\":\"%s\",\"role\":\"%s\",\"ledger\":\"%s\"}\n", a->pos[1], a->role, ledger);
    else
        printf("%s: %s on %s\n", a->pos[1], a->role, ledger);
    return CLI_EXIT_OK;
}

/* ---- the table ---- */

typedef int (*rhandler)(cli_ctx *c, tally_client *cl);

/* A handler that needs a connected client: handler, whether to log in. */
typedef struct rrow {
    const char *name;
    rhandler fn;
    int creds;
} rrow;

static const rrow RHANDLERS[] = {
    { "set", rcmd_set, 1 },         { "get", rcmd_get, 1 },     { "del", rcmd_del, 1 },
    { "history", rcmd_history, 1 }, { "scan", rcmd_scan, 1 },   { "tx", rcmd_tx, 1 },
    { "state", rcmd_state, 1 },     { "verify", rcmd_verify, 1 }, { "proof", rcmd_proof, 1 },
    { "checkpoint", rcmd_checkpoint, 1 }, { "login", rcmd_login, 0 }, { "logout", rcmd_logout, 0 },
    { "ledger", rcmd_ledger, 1 },   { "user", rcmd_user, 1 },
};

/* The one cli_handler of every connected row: connects, runs, closes. */
static int rrun(cli_ctx *c)
{
    for (size_t i = 0; i < sizeof RHANDLERS / sizeof RHANDLERS[0]; i++) {
        if (strcmp(RHANDLERS[i].name, c->cmd->name) != 0)
            continue;
        tally_client *cl;
        int rc = rconnect(c, &cl, RHANDLERS[i].creds);
        if (rc)
            return rc;
        rc = RHANDLERS[i].fn(c, cl);
        tally_client_close(cl);
        return rc;
    }
    return cli_failx(TALLY_EINVAL, "no handler for '%s'", c->cmd->name);
}

#define RW CLI_OPEN_NONE
static const cli_cmd RCOMMANDS[] = {
    { "set", rrun, RW, CLI_OPT_IF_ABSENT | CLI_OPT_IF_REV | CLI_OPT_BATCH | CLI_OPT_META, 1, -1,
      "set KEY VALUE [KEY VALUE ...] [--if-absent | --if-rev R] [--meta TEXT]\n"
      "set - [--batch N] [--if-absent] [--meta TEXT]",
      "write keys in one transaction, then verify it (entries root and metadata\n"
      "recomputed from what was sent, a tx appended after the write was sent,\n"
      "included in a checkpoint consistent with the trusted one)" },
    { "get", rrun, RW, CLI_OPT_TX | CLI_OPT_AT | CLI_OPT_REV, 1, -1,
      "get KEY [--tx N | --at TIME | --rev R]\n"
      "get KEY KEY ... [--tx N | --at TIME]",
      "verified value of KEY (entry and transaction proofs, checkpoint, consistency);\n"
      "several keys: one request per 1000 keys, proven under one checkpoint" },
    { "del", rrun, RW, 0, 1, 1, "del KEY", "delete KEY, then verify the tombstone" },
    { "history", rrun, RW, 0, 1, 1, "history KEY",
      "every revision of KEY, each proven (one verified get per revision);\n"
      "that none is missing is the server's word" },
    { "scan", rrun, RW, CLI_OPT_TX, 0, 1, "scan PREFIX [--tx N]",
      "keys starting with PREFIX, each proven as of the scan's tx (verified/getmany,\n"
      "1000 keys per request); that none is missing is the server's word" },
    { "tx", rrun, RW, 0, 1, 1, "tx N", "verified transaction N with every entry" },
    { "state", rrun, RW, 0, 0, 0, "state",
      "verified checkpoint: size and root (becomes the trusted state)" },
    { "verify", rrun, RW, CLI_OPT_LAST, 0, 0, "verify [--last N]",
      "verify the checkpoint, then every transaction (or the last N): inclusion,\n"
      "entries root, hash chain" },
    { "proof", rrun, RW, CLI_OPT_SIZE, 2, 3,
      "proof inclusion N [--size S]\n"
      "proof consistency M N",
      "proofs from the server, checked against a verified checkpoint" },
    { "checkpoint", rrun, RW, 0, 0, 0, "checkpoint",
      "the latest signed checkpoint note, verified" },
    { "login", rrun, RW, 0, 1, 1, "login USER",
      "log in (password from a TTY without echo, else stdin); saves the token" },
    { "logout", rrun, RW, 0, 0, 0, "logout",
      "end the saved token's session on the server and remove the token" },
    { "ledger", rrun, RW, 0, 1, 2, "ledger create NAME\nledger list", "create or list ledgers" },
    { "user", rrun, RW, CLI_OPT_ROLE, 2, 2, "user create NAME --role ROLE [--ledger NAME]",
      "create a user (password: $TALLY_NEW_PASSWORD or prompted) or grant a role" },
    { "merkle", cli_cmd_merkle, CLI_OPEN_NONE, 0, 1, 2,
      "merkle root\nmerkle inclusion I\nmerkle consistency M",
      "RFC 6962 tools over hex-encoded leaf data, one leaf per stdin line" },
    { "help", rcmd_help, CLI_OPEN_NONE, 0, 0, 1, "help [COMMAND]", "this help" },
};
#define N_RCOMMANDS (sizeof RCOMMANDS / sizeof RCOMMANDS[0])

const cli_cmd *cli_remote_find(const char *name)
{
    for (size_t i = 0; i < N_RCOMMANDS; i++)
        if (strcmp(RCOMMANDS[i].name, name) == 0)
            return &RCOMMANDS[i];
    return NULL;
}

static void print_lines(FILE *f, const char *indent, const char *s)
{
    while (*s) {
        size_t n = strcspn(s, "\n");
        fprintf(f, "%s%.*s\n", indent, (int)n, s);
        s += n + (s[n] == '\n');
    }
}

void cli_remote_help(FILE *f)
{
    fputs("usage: tally --server URL [--ledger NAME] [--server-key VKEY] [--json] COMMAND ...\n\n"
          "Server mode: commands run against tallyd through the verifying client.\n"
          "The server key is pinned per URL on first contact (or --server-key), the\n"
          "ledger id per ledger name; trusted checkpoints live in $TALLY_HOME (default\n"
          "~/.tally). NAME defaults to $TALLY_LEDGER, else 'default'. Credentials:\n"
          "TALLY_USER/TALLY_PASSWORD, else the token of 'login'. Exit codes: 0 ok,\n"
          "1 not found, 2 verification failed, 3 precondition failed, 4 error, 64 usage.\n\n"
          "Commands:\n", f);
    for (size_t i = 0; i < N_RCOMMANDS; i++) {
        print_lines(f, "  ", RCOMMANDS[i].usage);
        print_lines(f, "      ", RCOMMANDS[i].summary);
    }
}

static int rcmd_help(cli_ctx *c)
{
    if (c->args->npos == 1) {
        const cli_cmd *cmd = cli_remote_find(c->args->pos[0]);
        if (!cmd)
            return cli_usage(c, "unknown command '%s'", c->args->pos[0]);
        cli_print_cmd_usage(stdout, cmd);
        printf("  %s\n", cmd->summary);
        return CLI_EXIT_OK;
    }
    cli_remote_help(stdout);
    return CLI_EXIT_OK;
}
