/*
** cli_shell.c — `tally shell`: an interactive session against tallyd through
** the verifying client (include/tally_client.h), in the spirit of immuclient.
**
** Entry point (a row of the command table in tools/tally.c):
**   int cli_shell_main(int argc, char **argv);
**       argv[0] = "shell"; parses --server URL (required), --ledger NAME
**       (else $TALLY_LEDGER, else "default"), --server-key VKEY, --json;
**       returns the process exit code.
**
** One client (one kept-alive connection) serves the whole session. Reads and
** writes are verified by default, exactly as in `tally --server URL ...`
** (docs/API.md "Client"): the trusted state lives in the state directory
** ($TALLY_HOME, else ~/.tally) and moves forward only after a call checked.
** `unsafe get` is the plain, unverified endpoint; history and scan prove
** every row they print (tally_client_verified_history/_scan), but that no
** row is missing stays the server's word (API v1 cannot prove it), and they
** say so.
**
** Input: on a terminal, libedit line editing with history in
** <state dir>/shell_history (mode 0600; a line starting with a space is not
** saved) and the prompt "tally:<ledger>> "; otherwise commands are read line
** by line from stdin without prompts, so scripts can drive it. Words are
** split at blanks; "double quotes" (with \" and \\) and 'single quotes' keep
** blanks; a line starting with '#' is a comment.
**
** Errors print one line on stderr ("error: …") and the session goes on; a
** failed verification prints "VERIFICATION FAILED: …" and the trusted state
** stays where it was. Exit status: 0; 2 if any verification failed during
** the session; with stdin not a terminal, otherwise the exit code of the last
** command that failed (so a script notices). Credentials: `login USER`
** (password read without echo on a terminal, else the next input line), or
** $TALLY_USER/$TALLY_PASSWORD at start, else the token saved by a login.
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>

#include "cli.h"
#include "tally_client.h"
#include "util/err.h"

int cli_shell_main(int argc, char **argv);

#define SHELL_ARGS_MAX 1024   /* words per command line */
#define SHELL_LINE_MAX (4u << 20) /* bytes per command line */
#define SHELL_HISTORY_MAX 1000
#define SHELL_PASSWORD_MAX 1024

typedef struct shell {
    tally_client *cl;
    int json;
    int tty;                 /* stdin is a terminal: line editing, prompt, history */
    int quit;
    int verify_failed;       /* a verification failed during the session */
    int last_fail;           /* exit code of the last failed command (0: none) */
    char hist_path[4096];    /* "" when history is off */
    char ledger[65];
    char prompt[96];
} shell;

typedef int (*shell_fn)(shell *s, int argc, char **argv);

typedef struct shell_cmd {
    const char *name;
    shell_fn fn;
    int min_args, max_args; /* words after the name, options included; -1: no limit */
    const char *usage;
    const char *summary;
} shell_cmd;

/* ---- messages ---- */

/* Prints the one-line message of a failed call and returns its exit code.
** A failed verification is reported as such, with the trusted size kept. */
static int shell_fail(shell *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int shell_fail(shell *s, int rc, const char *fmt, ...)
{
    char detail[1024] = "", what[512] = "";
    const char *em = tally_errmsg();
    if (em && *em)
        snprintf(detail, sizeof detail, "%s", em);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (rc == TALLY_EBADPROOF) {
        uint64_t size = 0;
        uint8_t root[TALLY_HASH_LEN];
        s->verify_failed = 1;
        fprintf(stderr, "VERIFICATION FAILED: %s: %s\n", what, detail[0] ? detail : "proof "
                "does not verify");
        if (tally_client_trusted_state(s->cl, &size, root) == TALLY_OK)
            fprintf(stderr, "  (the trusted state of '%s' is kept at size %" PRIu64 ")\n",
                    s->ledger, size);
    } else {
        if (rc == TALLY_ECORRUPT) /* the trusted state or the ledger is damaged: exit 2 */
            s->verify_failed = 1;
        const char *name = rc == TALLY_ECONFLICT ? "precondition failed" : tally_strerror(rc);
        if (detail[0])
            fprintf(stderr, "error: %s: %s: %s\n", what, name, detail);
        else
            fprintf(stderr, "error: %s: %s\n", what, name);
    }
    return cli_exit_code(rc);
}

/* A usage error of one command: the message and its usage line. */
static int shell_usage(const shell_cmd *cmd, const char *msg)
{
    fflush(stdout);
    if (msg)
        fprintf(stderr, "error: %s\n", msg);
    if (cmd)
        fprintf(stderr, "usage: %s\n", cmd->usage);
    return CLI_EXIT_USAGE;
}

static void hash_line(const char *name, const uint8_t h[TALLY_HASH_LEN])
{
    printf("%s", name);
    cli_hex(stdout, h, TALLY_HASH_LEN);
    putchar('\n');
}

/* ---- the line: words ---- */

/* Splits line into words in place (quotes removed). Returns the number of
** words, or -1 with *err set (unterminated quote, too many words). */
static int split_words(char *line, char **argv, int max, const char **err)
{
    int n = 0;
    char *r = line, *w = line;
    for (;;) {
        while (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n')
            r++;
        if (!*r)
            return n;
        if (n == max) {
            *err = "too many words on one line";
            return -1;
        }
        argv[n++] = w;
        while (*r && *r != ' ' && *r != '\t' && *r != '\r' && *r != '\n') {
            char q = *r;
            if (q != '"' && q != '\'') {
                *w++ = *r++;
                continue;
            }
            r++;
            while (*r && *r != q) {
                if (q == '"' && *r == '\\' && (r[1] == '"' || r[1] == '\\'))
                    r++;
                *w++ = *r++;
            }
            if (*r != q) {
                *err = q == '"' ? "unterminated \"quote\"" : "unterminated 'quote'";
                return -1;
            }
            r++;
        }
        /* w <= r: the terminator never overwrites unread input. */
        int more = *r != '\0';
        *w++ = '\0';
        if (!more)
            return n;
        r++;
    }
}

/* ---- options of one command ---- */

typedef struct shell_opts {
    int sel;           /* TALLY_CLIENT_* selector of get */
    uint64_t arg;
    int if_absent;
    int has_if_rev;
    uint64_t if_rev;
    int has_tx;
    uint64_t tx;
    int has_last;
    uint64_t last;
    int npos;
    char **pos;        /* positional words (points into the caller's argv) */
} shell_opts;

#define SO_SEL 1u      /* --tx N | --rev R | --at TIME (get) */
#define SO_COND 2u     /* --if-absent | --if-rev R (set, del) */
#define SO_TX 4u       /* --tx N (scan) */

/* Separates options from positional words ("--" ends the options). Returns
** 0 or a usage error (printed). */
static int parse_opts(const shell_cmd *cmd, unsigned allowed, int argc, char **argv,
                      shell_opts *o)
{
    memset(o, 0, sizeof *o);
    o->pos = argv;
    int only_pos = 0, nsel = 0;
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (only_pos || strncmp(w, "--", 2) != 0) {
            o->pos[o->npos++] = argv[i];
            continue;
        }
        if (strcmp(w, "--") == 0) {
            only_pos = 1;
            continue;
        }
        int needs_arg = strcmp(w, "--tx") == 0 || strcmp(w, "--rev") == 0 ||
                        strcmp(w, "--at") == 0 || strcmp(w, "--if-rev") == 0;
        if (needs_arg && i + 1 >= argc) {
            char m[96];
            snprintf(m, sizeof m, "%s needs a value", w);
            return shell_usage(cmd, m);
        }
        const char *v = needs_arg ? argv[++i] : NULL;
        uint64_t n = 0;
        if (needs_arg && strcmp(w, "--at") != 0 && (cli_parse_u64(v, &n) < 0 || n == 0)) {
            char m[160];
            snprintf(m, sizeof m, "%s needs a number >= 1, not '%s'", w, cli_show(v, strlen(v)));
            return shell_usage(cmd, m);
        }
        if ((allowed & SO_SEL) && strcmp(w, "--tx") == 0) {
            o->sel = TALLY_CLIENT_AS_OF_TX, o->arg = n, nsel++;
        } else if ((allowed & SO_SEL) && strcmp(w, "--rev") == 0) {
            o->sel = TALLY_CLIENT_REV, o->arg = n, nsel++;
        } else if ((allowed & SO_SEL) && strcmp(w, "--at") == 0) {
            int64_t ns;
            if (cli_parse_time(v, &ns) < 0 || ns < 0)
                return shell_usage(cmd, "--at needs an RFC 3339 time after 1970");
            o->sel = TALLY_CLIENT_AT_TIME, o->arg = (uint64_t)ns, nsel++;
        } else if ((allowed & SO_TX) && strcmp(w, "--tx") == 0) {
            o->has_tx = 1, o->tx = n;
        } else if ((allowed & SO_COND) && strcmp(w, "--if-absent") == 0) {
            o->if_absent = 1;
        } else if ((allowed & SO_COND) && strcmp(w, "--if-rev") == 0) {
            o->has_if_rev = 1, o->if_rev = n;
        } else {
            char m[160];
            snprintf(m, sizeof m, "unknown option '%s'", cli_show(w, strlen(w)));
            return shell_usage(cmd, m);
        }
    }
    if (nsel > 1)
        return shell_usage(cmd, "--tx, --rev and --at exclude each other");
    if (o->if_absent && o->has_if_rev)
        return shell_usage(cmd, "--if-absent and --if-rev exclude each other");
    return 0;
}

/* ---- reading input ---- */

/* One input line without its newline, malloc'ed; NULL at end of input. */
static char *read_line(shell *s)
{
    if (s->tty)
        return readline(s->prompt);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    return line;
}

/* A password: on a terminal, read without echo straight from the descriptor
** (libedit and stdio keep no buffered bytes of it); else the next input line.
** Returns 0 or -1. */
static int read_password(shell *s, char *buf, size_t cap)
{
    if (!s->tty) {
        char *l = read_line(s);
        if (!l)
            return -1;
        snprintf(buf, cap, "%s", l);
        memset(l, 0, strlen(l));
        free(l);
        return 0;
    }
    struct termios old, quiet;
    int have = tcgetattr(STDIN_FILENO, &old) == 0;
    fputs("password: ", stdout);
    fflush(stdout);
    if (have) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ICANON;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    size_t n = 0;
    int rc = -1;
    for (;;) {
        char ch;
        ssize_t r = read(STDIN_FILENO, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (ch == '\n' || ch == '\r') {
            rc = 0;
            break;
        }
        if (n + 1 < cap)
            buf[n++] = ch;
    }
    buf[n] = '\0';
    if (have)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    putchar('\n');
    return rc;
}

/* ---- history (terminal only) ---- */

static void history_open(shell *s)
{
    snprintf(s->hist_path, sizeof s->hist_path, "%s/shell_history",
             tally_client_state_dir(s->cl));
    int fd = open(s->hist_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "warning: no history: cannot open %s: %s\n", s->hist_path,
                strerror(errno));
        s->hist_path[0] = '\0';
        return;
    }
    fchmod(fd, 0600); /* also an older file made with a looser mode */
    close(fd);
    using_history();
    stifle_history(SHELL_HISTORY_MAX);
    read_history(s->hist_path);
}

static void history_add(shell *s, const char *line)
{
    if (!s->hist_path[0] || line[0] == ' ' || !line[0])
        return;
    add_history(line);
    /* Written after every line: a killed session keeps its history. The
    ** file exists with mode 0600, so fopen("w") inside keeps that mode. */
    write_history(s->hist_path);
    chmod(s->hist_path, 0600);
}

/* ---- commands ---- */

static void set_prompt(shell *s)
{
    snprintf(s->prompt, sizeof s->prompt, "tally:%s> ", s->ledger);
}

static int sh_login(shell *s, int argc, char **argv)
{
    char pw[SHELL_PASSWORD_MAX];
    if (read_password(s, pw, sizeof pw) < 0) {
        fflush(stdout);
        fputs("error: login: no password given\n", stderr);
        return CLI_EXIT_ERROR;
    }
    int rc = tally_client_login(s->cl, NULL, argv[0], pw, 1);
    memset(pw, 0, sizeof pw);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "login as '%s'", argv[0]);
    if (s->json) {
        putchar('{');
        cli_json_bytes(stdout, "user", argv[0], strlen(argv[0]));
        fputs(",\"ok\":true}\n", stdout);
    } else {
        printf("logged in as %s\n", argv[0]);
    }
    return 0;
}

static int sh_logout(shell *s, int argc, char **argv)
{
    int rc = tally_client_logout(s->cl);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "logout");
    if (s->json)
        puts("{\"ok\":true}");
    else
        puts("logged out");
    return 0;
}

static int sh_use(shell *s, int argc, char **argv)
{
    char old[sizeof s->ledger];
    snprintf(old, sizeof old, "%s", s->ledger);
    int rc = tally_client_use(s->cl, argv[0]);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "use '%s'", cli_show(argv[0], strlen(argv[0])));
    /* Pins the ledger id on first contact; an unknown ledger is not switched to. */
    uint64_t size = 0;
    uint8_t root[TALLY_HASH_LEN];
    rc = tally_client_trusted_state(s->cl, &size, root);
    if (rc == TALLY_ENOTFOUND || rc == TALLY_EBADPROOF || rc == TALLY_ECORRUPT) {
        int ec = shell_fail(s, rc, "use '%s'", argv[0]);
        tally_client_use(s->cl, old);
        return ec;
    }
    snprintf(s->ledger, sizeof s->ledger, "%s", argv[0]);
    set_prompt(s);
    if (s->json) {
        putchar('{');
        cli_json_bytes(stdout, "ledger", s->ledger, strlen(s->ledger));
        if (rc == TALLY_OK)
            printf(",\"trusted\":%" PRIu64, size);
        fputs("}\n", stdout);
    } else if (rc == TALLY_OK) {
        printf("using ledger %s (trusted size %" PRIu64 ")\n", s->ledger, size);
    } else {
        printf("using ledger %s (not checked yet: %s)\n", s->ledger, tally_errmsg());
    }
    return 0;
}

static int sh_ledgers(shell *s, int argc, char **argv)
{
    tally_client_ledger *l = NULL;
    size_t n = 0;
    int rc = tally_client_ledger_list(s->cl, &l, &n);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "ledgers");
    if (s->json)
        fputs("{\"ledgers\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        if (s->json) {
            printf("%s{", i ? "," : "");
            cli_json_bytes(stdout, "name", l[i].name, strlen(l[i].name));
            putchar(',');
            cli_json_bytes(stdout, "id", l[i].id, strlen(l[i].id));
            printf(",\"size\":%" PRIu64 "}", l[i].size);
        } else {
            printf("%s%s\t%s\t%" PRIu64 "\n", strcmp(l[i].name, s->ledger) == 0 ? "* " : "  ",
                   l[i].name, l[i].id, l[i].size);
        }
    }
    if (s->json)
        fputs("]}\n", stdout);
    free(l);
    return 0;
}

static const shell_cmd *find_cmd(const char *name);

static void print_ack(shell *s, const char *what, uint64_t tx)
{
    if (s->json)
        printf("{\"tx\":%" PRIu64 ",\"verified\":true}\n", tx);
    else
        printf("%s: tx %" PRIu64 " (verified)\n", what, tx);
}

static int sh_set(shell *s, int argc, char **argv)
{
    const shell_cmd *cmd = find_cmd("set");
    shell_opts o;
    int ec = parse_opts(cmd, SO_COND, argc, argv, &o);
    if (ec)
        return ec;
    if (o.npos == 0 || o.npos % 2)
        return shell_usage(cmd, "set needs KEY VALUE pairs");
    size_t n = (size_t)o.npos / 2;
    if (o.has_if_rev && n != 1)
        return shell_usage(cmd, "--if-rev applies to exactly one key");
    tally_client_entry *e = calloc(n, sizeof *e);
    if (!e)
        return shell_fail(s, TALLY_ENOMEM, "set");
    for (size_t i = 0; i < n; i++) {
        e[i].key = o.pos[2 * i];
        e[i].key_len = strlen(o.pos[2 * i]);
        e[i].value = o.pos[2 * i + 1];
        e[i].value_len = strlen(o.pos[2 * i + 1]);
        e[i].cond = o.if_absent ? TALLY_COND_ABSENT : o.has_if_rev ? TALLY_COND_REV
                                                                   : TALLY_COND_NONE;
        e[i].cond_rev = o.if_rev;
    }
    uint64_t tx = 0;
    int rc = tally_client_verified_set(s->cl, &tx, e, n, NULL);
    free(e);
    if (rc == TALLY_EBADPROOF && tx)
        return shell_fail(s, rc, "set (acknowledged as tx %" PRIu64 ", NOT confirmed)", tx);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "set");
    print_ack(s, "set", tx);
    return 0;
}

static void print_version(shell *s, const char *key, const tally_client_version *v,
                          int verified)
{
    char ts[CLI_TIME_BUF];
    cli_fmt_time(ts, v->ts_ns);
    if (s->json) {
        putchar('{');
        cli_json_bytes(stdout, "key", key, strlen(key));
        putchar(',');
        cli_json_bytes(stdout, "value", v->value, v->value_len);
        printf(",\"tx\":%" PRIu64 ",\"rev\":%" PRIu64 ",\"ts\":\"%s\",\"verified\":%s}\n", v->tx,
               v->rev, ts, verified ? "true" : "false");
        return;
    }
    fwrite(v->value, 1, v->value_len, stdout);
    printf("\n  (key %s, tx %" PRIu64 ", rev %" PRIu64 ", %s, %s)\n", cli_show(key, strlen(key)),
           v->tx, v->rev, ts,
           verified ? "verified" : "NOT verified: the server's word");
}

/* get, verified-get and unsafe get. */
/* get K1 K2 …: one verified/getmany (up to 1000 keys, as the words of a
** line allow), every value printed as a single get prints it. */
static int get_many(shell *s, const shell_cmd *cmd, const shell_opts *o)
{
    if (o->sel == TALLY_CLIENT_REV)
        return shell_usage(cmd, "--rev selects one key's revision: give one key");
    size_t n = (size_t)o->npos;
    tally_client_key *keys = cli_words_as_keys(o->pos, n);
    tally_client_version *v = calloc(n, sizeof *v);
    if (!v || !keys) {
        free(keys);
        free(v);
        return shell_fail(s, TALLY_ENOMEM, "get of %zu keys", n);
    }
    int rc = tally_client_verified_get_many(s->cl, v, NULL, keys, n, o->sel, o->arg), ec = 0;
    free(keys);
    if (rc != TALLY_OK) {
        free(v);
        return shell_fail(s, rc, "get of %zu keys", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].tx == 0) {
            fflush(stdout);
            fprintf(stderr, "error: get '%s': not found\n", cli_show(o->pos[i], strlen(o->pos[i])));
            ec = CLI_EXIT_NOTFOUND;
        } else {
            print_version(s, o->pos[i], &v[i], 1);
        }
        tally_client_version_free(&v[i]);
    }
    free(v);
    return ec;
}

static int do_get(shell *s, const shell_cmd *cmd, int argc, char **argv, int verified)
{
    shell_opts o;
    int ec = parse_opts(cmd, SO_SEL, argc, argv, &o);
    if (ec)
        return ec;
    if (o.npos > 1 && verified)
        return get_many(s, cmd, &o);
    if (o.npos != 1)
        return shell_usage(cmd, verified ? "get needs a KEY" : "unsafe get needs exactly one KEY");
    const char *key = o.pos[0];
    tally_client_version v;
    int rc = verified ? tally_client_verified_get(s->cl, &v, key, strlen(key), o.sel, o.arg)
                      : tally_client_get(s->cl, &v, key, strlen(key), o.sel, o.arg);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "get '%s'", cli_show(key, strlen(key)));
    if (v.deleted) {
        fflush(stdout);
        fprintf(stderr, "error: get '%s': revision %" PRIu64 " (tx %" PRIu64 ") is a deletion\n",
                cli_show(key, strlen(key)), v.rev, v.tx);
        tally_client_version_free(&v);
        return CLI_EXIT_NOTFOUND;
    }
    print_version(s, key, &v, verified);
    tally_client_version_free(&v);
    return 0;
}

static int sh_get(shell *s, int argc, char **argv)
{
    return do_get(s, find_cmd("get"), argc, argv, 1);
}

static int sh_unsafe(shell *s, int argc, char **argv)
{
    const shell_cmd *cmd = find_cmd("unsafe");
    if (strcmp(argv[0], "get") != 0)
        return shell_usage(cmd, "only 'unsafe get' exists");
    return do_get(s, cmd, argc - 1, argv + 1, 0);
}

static int sh_del(shell *s, int argc, char **argv)
{
    const shell_cmd *cmd = find_cmd("del");
    shell_opts o;
    int ec = parse_opts(cmd, SO_COND, argc, argv, &o);
    if (ec)
        return ec;
    if (o.npos != 1 || o.if_absent)
        return shell_usage(cmd, o.if_absent ? "--if-absent does not apply to del"
                                            : "del needs exactly one KEY");
    uint64_t tx = 0;
    const char *key = o.pos[0];
    int rc = tally_client_verified_del(s->cl, &tx, key, strlen(key), o.if_rev);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "del '%s'", cli_show(key, strlen(key)));
    print_ack(s, "del", tx);
    return 0;
}

typedef struct shell_list {
    shell *s;
    size_t n;
} shell_list;

static int print_rev(void *ctx, const tally_client_version *v)
{
    shell_list *l = ctx;
    cli_out_revision(l->s->json, l->n == 0, v->rev, v->tx, v->ts_ns, v->deleted, v->value, v->value_len);
    l->n++;
    return 0;
}

static int sh_history(shell *s, int argc, char **argv)
{
    const char *key = argv[0];
    size_t klen = strlen(key);
    uint64_t total = 0;
    if (s->json) {
        putchar('{');
        cli_json_bytes(stdout, "key", key, klen);
        fputs(",\"revisions\":[", stdout);
    }
    shell_list l = { s, 0 };
    int rc = tally_client_verified_history(s->cl, &total, key, klen, 1, print_rev, &l);
    if (s->json)
        printf("],\"verified\":%s}\n", rc == TALLY_OK ? "true" : "false");
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "history '%s'", cli_show(key, klen));
    if (!s->json)
        printf("  (%zu revisions, each verified; that none is missing is the server's word)\n",
               l.n);
    return 0;
}

static int print_key(void *ctx, const tally_client_version *v)
{
    shell_list *l = ctx;
    if (l->s->json) {
        fputs(l->n ? ",{" : "{", stdout);
        cli_json_bytes(stdout, "key", v->key, v->key_len);
        putchar(',');
        cli_json_bytes(stdout, "value", v->value, v->value_len);
        printf(",\"tx\":%" PRIu64 ",\"rev\":%" PRIu64 "}", v->tx, v->rev);
    } else {
        fwrite(v->key, 1, v->key_len, stdout);
        putchar('\t');
        fwrite(v->value, 1, v->value_len, stdout);
        putchar('\n');
    }
    l->n++;
    return 0;
}

static int sh_scan(shell *s, int argc, char **argv)
{
    const shell_cmd *cmd = find_cmd("scan");
    shell_opts o;
    int ec = parse_opts(cmd, SO_TX, argc, argv, &o);
    if (ec)
        return ec;
    if (o.npos > 1)
        return shell_usage(cmd, "scan takes one PREFIX");
    const char *prefix = o.npos ? o.pos[0] : "";
    uint64_t as_of = o.tx;
    if (!o.has_tx) {
        /* Pin the snapshot to a verified size, as `tally --server … scan` does. */
        uint8_t root[TALLY_HASH_LEN];
        int rc = tally_client_verified_state(s->cl, &as_of, root, NULL);
        if (rc != TALLY_OK)
            return shell_fail(s, rc, "scan: reading the checkpoint");
    }
    if (s->json) {
        putchar('{');
        cli_json_bytes(stdout, "prefix", prefix, strlen(prefix));
        printf(",\"tx\":%" PRIu64 ",\"keys\":[", as_of);
    }
    shell_list l = { s, 0 };
    int rc = as_of ? tally_client_verified_scan(s->cl, NULL, prefix, strlen(prefix), as_of,
                                                print_key, &l)
                   : TALLY_OK;
    if (s->json)
        printf("],\"verified\":%s}\n", rc == TALLY_OK ? "true" : "false");
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "scan '%s'", cli_show(prefix, strlen(prefix)));
    if (!s->json)
        printf("  (%zu keys as of tx %" PRIu64 ", each verified; that none is missing is the "
               "server's word)\n", l.n, as_of);
    return 0;
}

static void print_tx(shell *s, const tally_client_tx *t)
{
    cli_out_client_tx(s->json, t);
    if (s->json)
        fputs("],\"verified\":true}\n", stdout);
    else
        puts("  (verified: included in the checkpoint, entries root recomputed)");
}

static int sh_tx(shell *s, int argc, char **argv)
{
    uint64_t n;
    if (cli_parse_u64(argv[0], &n) < 0 || n == 0)
        return shell_usage(find_cmd("tx"), "tx needs a transaction id >= 1");
    tally_client_tx t;
    int rc = tally_client_verified_tx(s->cl, &t, n);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "tx %" PRIu64, n);
    print_tx(s, &t);
    tally_client_tx_free(&t);
    return 0;
}

static int sh_current(shell *s, int argc, char **argv)
{
    uint64_t before = 0, size = 0;
    uint8_t root[TALLY_HASH_LEN], broot[TALLY_HASH_LEN];
    int have_before = tally_client_trusted_state(s->cl, &before, broot) == TALLY_OK;
    int rc = tally_client_verified_state(s->cl, &size, root, NULL);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "current state of '%s'", s->ledger);
    if (s->json) {
        putchar('{');
        cli_json_bytes(stdout, "ledger", s->ledger, strlen(s->ledger));
        printf(",\"tx\":%" PRIu64 ",", size);
        cli_json_hash(stdout, "root", root);
        if (have_before)
            printf(",\"trusted_before\":%" PRIu64, before);
        printf(",\"trusted\":%" PRIu64 ",\"verified\":true}\n", size);
        return 0;
    }
    printf("ledger: %s\nsize: %" PRIu64 "\n", s->ledger, size);
    hash_line("root: ", root);
    if (!have_before || before == 0)
        printf("trusted: size %" PRIu64 " (first contact: signature and origin checked)\n", size);
    else if (before == size)
        printf("trusted: size %" PRIu64 " (unchanged: same size, same root)\n", size);
    else
        printf("trusted: size %" PRIu64 " (was %" PRIu64 "; consistency proof checked)\n", size,
               before);
    return 0;
}

static int sh_checkpoint(shell *s, int argc, char **argv)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    char *note = NULL;
    int rc = tally_client_verified_state(s->cl, &size, root, &note);
    if (rc != TALLY_OK)
        return shell_fail(s, rc, "checkpoint of '%s'", s->ledger);
    if (s->json) {
        printf("{\"tx\":%" PRIu64 ",", size);
        cli_json_hash(stdout, "root", root);
        fputs(",\"checkpoint\":", stdout);
        cli_json_str(stdout, note, strlen(note));
        fputs(",\"verified\":true}\n", stdout);
    } else {
        fputs(note, stdout);
        if (!*note || note[strlen(note) - 1] != '\n')
            putchar('\n');
    }
    free(note);
    return 0;
}

static int sh_help(shell *s, int argc, char **argv);

static int sh_quit(shell *s, int argc, char **argv)
{
    s->quit = 1;
    return 0;
}

/* The table: dispatch and help both come from it. */
static const shell_cmd COMMANDS[] = {
    { "login", sh_login, 1, 1, "login USER",
      "log in (the password is asked for); saves the token" },
    { "logout", sh_logout, 0, 0, "logout", "end the session on the server; removes the saved token" },
    { "use", sh_use, 1, 1, "use LEDGER", "work on LEDGER from now on" },
    { "ledgers", sh_ledgers, 0, 0, "ledgers", "the ledgers you have a role on (* = in use)" },
    { "set", sh_set, 2, -1, "set KEY VALUE [KEY VALUE ...] [--if-absent | --if-rev R]",
      "write one transaction, then verify it" },
    { "get", sh_get, 1, -1, "get KEY [--tx N | --rev R | --at TIME] | get KEY KEY ... [--tx N | --at TIME]",
      "verified value of KEY (several keys: one request, one checkpoint)" },
    { "verified-get", sh_get, 1, 4, "verified-get KEY [--tx N | --rev R | --at TIME]",
      "the same as get" },
    { "unsafe", sh_unsafe, 2, 5, "unsafe get KEY [--tx N | --rev R | --at TIME]",
      "the server's answer, NOT verified" },
    { "del", sh_del, 1, 4, "del KEY [--if-rev R]", "delete KEY, then verify the tombstone" },
    { "history", sh_history, 1, 1, "history KEY",
      "every revision of KEY, each verified (completeness: server's word)" },
    { "scan", sh_scan, 0, 3, "scan [PREFIX] [--tx N]",
      "keys starting with PREFIX at a verified size, each verified" },
    { "tx", sh_tx, 1, 1, "tx N", "verified transaction N with every entry" },
    { "current", sh_current, 0, 0, "current",
      "verify the latest checkpoint: size, root; it becomes the trusted state" },
    { "state", sh_current, 0, 0, "state", "the same as current" },
    { "checkpoint", sh_checkpoint, 0, 0, "checkpoint", "the latest signed checkpoint, verified" },
    { "help", sh_help, 0, 1, "help [COMMAND]", "this list" },
    { "quit", sh_quit, 0, 0, "quit", "leave (also: exit, end of input)" },
    { "exit", sh_quit, 0, 0, "exit", "leave" },
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static const shell_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

static int sh_help(shell *s, int argc, char **argv)
{
    if (argc == 1) {
        const shell_cmd *c = find_cmd(argv[0]);
        if (!c)
            return shell_usage(NULL, "no such command (try 'help')");
        printf("%s\n  %s\n", c->usage, c->summary);
        return 0;
    }
    puts("Commands (reads and writes are verified against the trusted checkpoint):");
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("  %s\n      %s\n", COMMANDS[i].usage, COMMANDS[i].summary);
    puts("Quote words with blanks: set greeting \"hello world\".");
    return 0;
}

/* Runs one input line. Returns 0 or the command's exit code. */
static int run_line(shell *s, char *line)
{
    char *argv[SHELL_ARGS_MAX];
    const char *err = NULL;
    while (*line == ' ' || *line == '\t')
        line++;
    if (*line == '#')
        return 0;
    int argc = split_words(line, argv, SHELL_ARGS_MAX, &err);
    if (argc < 0)
        return shell_usage(NULL, err);
    if (argc == 0)
        return 0;
    const shell_cmd *cmd = find_cmd(argv[0]);
    if (!cmd) {
        char m[160];
        snprintf(m, sizeof m, "unknown command '%s' (try 'help')",
                 cli_show(argv[0], strlen(argv[0])));
        return shell_usage(NULL, m);
    }
    int n = argc - 1;
    if (n < cmd->min_args || (cmd->max_args >= 0 && n > cmd->max_args))
        return shell_usage(cmd, "wrong number of arguments");
    tally_clearerr();
    int ec = cmd->fn(s, n, argv + 1);
    fflush(stdout);
    return ec;
}

/* ---- arguments, connecting ---- */

static int main_usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "tally: %s\n", msg);
    fputs("usage: tally shell --server URL [--ledger NAME] [--server-key VKEY] [--json]\n",
          stderr);
    return CLI_EXIT_USAGE;
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]; 1 if matched (value set). */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    *out = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

int cli_shell_main(int argc, char **argv)
{
    const char *server = NULL, *ledger = NULL, *vkey = NULL;
    shell s;
    memset(&s, 0, sizeof s);
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        const char **dst = NULL;
        if (opt_value(argc, argv, &i, "--server", &v))
            dst = &server;
        else if (opt_value(argc, argv, &i, "--ledger", &v))
            dst = &ledger;
        else if (opt_value(argc, argv, &i, "--server-key", &v))
            dst = &vkey;
        if (dst) {
            if (!v || !*v)
                return main_usage("--server, --ledger and --server-key need a value");
            *dst = v;
        } else if (strcmp(argv[i], "--json") == 0) {
            s.json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_usage(NULL);
            return CLI_EXIT_OK;
        } else {
            char m[128];
            snprintf(m, sizeof m, "shell: unknown argument '%s'",
                     cli_show(argv[i], strlen(argv[i])));
            return main_usage(m);
        }
    }
    if (!server)
        return main_usage("shell needs --server URL");
    ledger = cli_ledger_or_default(ledger);
    int rc = cli_client_open(&s.cl, server, ledger, vkey, 60000, 1);
    if (rc != TALLY_OK)
        return cli_fail(rc, "connecting to %s", server);
    snprintf(s.ledger, sizeof s.ledger, "%s", ledger);
    set_prompt(&s);
    s.tty = isatty(STDIN_FILENO);
    setvbuf(stdout, NULL, _IOLBF, 0); /* keeps stdout and stderr lines in order */
    if (s.tty) {
        history_open(&s);
        printf("tally shell: %s, ledger %s. 'help' lists the commands; 'quit' leaves.\n",
               server, s.ledger);
    }
    while (!s.quit) {
        char *line = read_line(&s);
        if (!line)
            break;
        if (strlen(line) > SHELL_LINE_MAX) {
            free(line);
            shell_usage(NULL, "line too long");
            continue;
        }
        if (s.tty)
            history_add(&s, line);
        int ec = run_line(&s, line);
        free(line);
        if (ec)
            s.last_fail = ec;
    }
    if (s.tty && !s.quit)
        putchar('\n'); /* end of input at the prompt */
    tally_client_close(s.cl);
    if (s.verify_failed)
        return CLI_EXIT_INTEGRITY;
    return s.tty ? CLI_EXIT_OK : s.last_fail;
}
