/*
** cli.h — shared declarations of the `tally` command-line tool.
**
** The tool is split by concern:
**   tally.c        main(): argument parsing, the command table, help, dispatch
**   cli_common.c   exit codes, error messages, number parsing, opening, progress
**   cli_json.c     output helpers: JSON string escaping, UTF-8 check, hex
**   cli_time.c     RFC 3339 parsing and formatting (Unix nanoseconds)
**   cli_kv.c       set KEY VALUE, get, del, history, scan
**   cli_stdin.c    set - (streaming ingest from stdin, batched)
**   cli_ledger.c   tx, state, verify, reindex, proof
**   cli_merkle.c   merkle root | inclusion | consistency (auditor's toolkit)
**   cli_remote.c   server mode (--server URL): the same commands through the
**                  verifying client (include/tally_client.h), plus login,
**                  ledger, user, checkpoint; its own command table
**
** Every handler returns the process exit code; it has already printed the
** one-line error message on stderr when that code is non-zero.
*/
#ifndef TALLY_CLI_H
#define TALLY_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tally.h"

/* ---- Exit codes (part of the CLI contract) ---- */
#define CLI_EXIT_OK        0
#define CLI_EXIT_NOTFOUND  1  /* unknown key/rev/tx, ENOTFOUND, ERANGE */
#define CLI_EXIT_INTEGRITY 2  /* ECORRUPT, EBADPROOF, verify failed, bad self-check */
#define CLI_EXIT_CONFLICT  3  /* ECONFLICT: a precondition failed */
#define CLI_EXIT_ERROR     4  /* anything else: I/O, locked, too big, invalid */
#define CLI_EXIT_USAGE     64 /* bad arguments, unknown command */

/* ---- Options (bit set of what a command accepts / what was given) ---- */
#define CLI_OPT_JSON      (1u << 0)
#define CLI_OPT_TX        (1u << 1)
#define CLI_OPT_AT        (1u << 2)
#define CLI_OPT_REV       (1u << 3)
#define CLI_OPT_BATCH     (1u << 4)
#define CLI_OPT_SIZE      (1u << 5)
#define CLI_OPT_IF_ABSENT (1u << 6)
#define CLI_OPT_IF_REV    (1u << 7)
#define CLI_OPT_DIR       (1u << 8)
#define CLI_OPT_HELP      (1u << 9)
#define CLI_OPT_VERSION   (1u << 10)
#define CLI_OPT_SERVER    (1u << 11) /* --server URL: server mode (cli_remote.c) */
#define CLI_OPT_LEDGER    (1u << 12) /* --ledger NAME (server mode) */
#define CLI_OPT_SERVER_KEY (1u << 13) /* --server-key VKEY (server mode) */
#define CLI_OPT_ROLE      (1u << 14) /* --role ROLE (server mode: user create) */
#define CLI_OPT_LAST      (1u << 15) /* --last N (server mode: verify) */
#define CLI_OPT_META      (1u << 16) /* --meta TEXT (set: transaction metadata) */
/* Accepted by every command. */
#define CLI_OPT_GLOBAL (CLI_OPT_JSON | CLI_OPT_DIR | CLI_OPT_HELP | CLI_OPT_VERSION | \
                        CLI_OPT_SERVER | CLI_OPT_LEDGER | CLI_OPT_SERVER_KEY)

typedef struct cli_args {
    const char *dir;   /* -D DIR, else $TALLY_DIR, else ./tally-data */
    unsigned seen;     /* CLI_OPT_* bits given on the command line */
    int json;          /* --json */
    uint64_t tx, rev, batch, size, if_rev;
    const char *at;    /* --at TIME, unparsed */
    const char *server, *ledger, *server_key, *role; /* server mode */
    uint64_t last;     /* --last N */
    const char *meta;  /* --meta TEXT: transaction metadata of set */
    int npos;          /* positional arguments after the command name */
    char **pos;
} cli_args;

typedef struct cli_cmd cli_cmd;

typedef struct cli_ctx {
    cli_args *args;
    const cli_cmd *cmd;
    tally_db *db;      /* open handle if the command asked for one, else NULL */
} cli_ctx;

typedef int (*cli_handler)(cli_ctx *c);

#define CLI_OPEN_NONE 0 /* handler works on the directory or on stdin */
#define CLI_OPEN_RW   1 /* read-write handle (takes the writer lock) */
#define CLI_OPEN_RO   2 /* read-only handle (readers run beside a writer) */

/* One row of the command table: dispatch and help both come from it. */
struct cli_cmd {
    const char *name;
    cli_handler fn;
    int open;          /* CLI_OPEN_* */
    unsigned opts;     /* options accepted besides CLI_OPT_GLOBAL */
    int min_pos;       /* positional arguments after the name */
    int max_pos;       /* -1: no limit */
    const char *usage; /* one or more lines ("\n"-separated), without "tally " */
    const char *summary;
};

/* ---- Handlers (one per command-table row) ---- */
int cli_cmd_set(cli_ctx *c);
int cli_cmd_get(cli_ctx *c);
int cli_cmd_del(cli_ctx *c);
int cli_cmd_history(cli_ctx *c);
int cli_cmd_scan(cli_ctx *c);
int cli_cmd_tx(cli_ctx *c);
int cli_cmd_state(cli_ctx *c);
int cli_cmd_verify(cli_ctx *c);
int cli_cmd_reindex(cli_ctx *c);
int cli_cmd_proof(cli_ctx *c);
int cli_cmd_merkle(cli_ctx *c);
/* `set -`: called by cli_cmd_set. */
int cli_set_stdin(cli_ctx *c);

/* ---- cli_remote.c: server mode ---- */
/* The row of the server-mode command table named name, or NULL. */
const cli_cmd *cli_remote_find(const char *name);
/* The help text of server mode. */
void cli_remote_help(FILE *f);

/* ---- cli_common.c ---- */
/* Exit code for a TALLY_E* code. */
int cli_exit_code(int rc);
/* Prints "tally: <what rc is>: <detail>" on stderr and returns the exit code
** for rc. The detail is tally_errmsg() when it is not empty, else the
** formatted fallback (fmt may be NULL). ECONFLICT reads "precondition failed". */
int cli_fail(int rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Same for an error the CLI itself detected (the engine's message, possibly
** stale, is not used). */
int cli_failx(int rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "tally: <message>" and the command's usage on stderr; returns 64. */
int cli_usage(const cli_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints the usage lines of cmd (each prefixed with "usage: tally "). */
void cli_print_cmd_usage(FILE *f, const cli_cmd *cmd);
/* Strict unsigned decimal; returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);
/* Opens c->args->dir (read-only if ro) into c->db; reports a torn tail.
** Returns 0 or an exit code (message printed). */
int cli_open(cli_ctx *c, int ro);
/* Bytes made printable for a message (static buffer: one use per message). */
const char *cli_show(const void *p, size_t n);
/* Writes a transaction id acknowledgement ("N" or {"tx":N}) and flushes. */
void cli_print_tx_ack(const cli_ctx *c, uint64_t tx);

/* Progress on stderr for verify/reindex: only on a TTY, at most every 250 ms. */
typedef struct cli_progress {
    const char *what;
    int tty;
    int shown;
    uint64_t last_ns;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *what);
int cli_progress_cb(void *ctx, uint64_t done_tx, uint64_t total_tx);
void cli_progress_end(cli_progress *p);

/* ---- cli_json.c ---- */
int cli_utf8_valid(const void *p, size_t n);
/* A JSON string literal (quotes included) of valid UTF-8 bytes. */
void cli_json_str(FILE *f, const void *p, size_t n);
/* "name":"text" when p is valid UTF-8, else "name_hex":"hex". */
void cli_json_bytes(FILE *f, const char *name, const void *p, size_t n);
/* "name":"hex" for a 32-byte hash. */
void cli_json_hash(FILE *f, const char *name, const uint8_t h[TALLY_HASH_LEN]);
/* "proof":["hex",...] */
void cli_json_path(FILE *f, const uint8_t (*path)[TALLY_HASH_LEN], size_t len);
/* Plain "proof:" followed by one hex hash per line. */
void cli_plain_path(FILE *f, const uint8_t (*path)[TALLY_HASH_LEN], size_t len);
/* Lowercase hex of n bytes. */
void cli_hex(FILE *f, const void *p, size_t n);
/* Decodes n hex digits (n even) into out; returns 0 or -1. */
int cli_unhex(const char *s, size_t n, uint8_t *out);

/* ---- cli_time.c ---- */
/* cli_remote.c: the server mode's connection, shared with the shell and the
** auditor. ledger NULL/empty: $TALLY_LEDGER, else "default"; timeout_ms 0:
** the client's default; with_creds: TALLY_USER/TALLY_PASSWORD if set.
** Returns a TALLY_E* code (the caller words the failure). */
struct tally_client;
const char *cli_ledger_or_default(const char *given);
int cli_client_open(struct tally_client **out, const char *url, const char *ledger, const char *vkey,
                    long timeout_ms, int with_creds);
/* The keys of a batched verified get: words[0..n) as their text bytes (the
** array points at the words). Caller frees the array with free(). NULL if
** out of memory. */
struct tally_client_key;
struct tally_client_key *cli_words_as_keys(char *const *words, size_t n);
/* A verified transaction's header and entries in the `tx` format (text, or
** JSON up to the open entries array: the caller closes it). */
struct tally_client_tx;
void cli_out_client_tx(int json, const struct tally_client_tx *t);

/* cli_shell.c, cli_audit.c: commands with their own option parsing */
int cli_shell_main(int argc, char **argv);
int cli_audit_main(int argc, char **argv);

/* cli_out.c: output shared by the embedded and the server mode */
typedef struct cli_tx_head {
    uint64_t tx, ts_ns;
    const uint8_t *hash, *prev_hash, *entries_root;
    uint32_t entry_count;
    const void *meta; size_t meta_len; /* the tx metadata: printed when not empty */
} cli_tx_head;
typedef struct cli_tx_item {
    uint8_t ns;
    int deleted;
    const void *key, *value;
    size_t key_len, value_len;
    const uint8_t *leaf_hash;
    const void *meta; size_t meta_len; /* the entry's metadata: printed when not empty */
} cli_tx_item;
void cli_out_version(int json, const char *key, const void *value, size_t value_len, uint64_t tx, uint64_t rev,
                     uint64_t ts_ns);
void cli_out_tx_head(int json, const cli_tx_head *t);
void cli_out_tx_item(int json, uint32_t i, const cli_tx_item *e);
void cli_out_tx_end(int json);
/* One revision of `history` (first: no leading comma in JSON). */
void cli_out_revision(int json, int first, uint64_t rev, uint64_t tx, uint64_t ts_ns, int deleted, const void *value,
                      size_t value_len);
/* `state`: {"tx":N,"root":"hex"} or two lines. */
void cli_out_state(int json, uint64_t size, const uint8_t root[TALLY_HASH_LEN]);

#define CLI_TIME_BUF 48
/* "2026-11-22T10:00:00.000000000Z" */
void cli_fmt_time(char buf[CLI_TIME_BUF], uint64_t ts_ns);
/* RFC 3339 to Unix ns (negative before 1970; clamped to the int64 range).
** Returns 0 or -1 if s is not RFC 3339. */
int cli_parse_time(const char *s, int64_t *out_ns);

#endif /* TALLY_CLI_H */
