/*
** cli_common.c — what every `tally` command shares: the mapping from
** TALLY_E* codes to exit codes, the one-line error message on stderr,
** usage errors, strict number parsing, opening the data directory (with the
** torn-tail recovery notice), acknowledgements, and the TTY progress line
** of verify/reindex.
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_exit_code(int rc)
{
    switch (rc) {
    case TALLY_OK:        return CLI_EXIT_OK;
    case TALLY_ENOTFOUND:
    case TALLY_ERANGE:    return CLI_EXIT_NOTFOUND;
    case TALLY_ECORRUPT:
    case TALLY_EBADPROOF: return CLI_EXIT_INTEGRITY;
    case TALLY_ECONFLICT: return CLI_EXIT_CONFLICT;
    default:              return CLI_EXIT_ERROR;
    }
}

static int vfail(int rc, int use_errmsg, const char *fmt, va_list ap)
{
    /* Capture the thread's message first: it is valid until the next call. */
    const char *em = use_errmsg ? tally_errmsg() : NULL;
    const char *what = rc == TALLY_ECONFLICT ? "precondition failed" : tally_strerror(rc);
    char detail[512] = "";
    if (em && em[0])
        snprintf(detail, sizeof detail, "%s", em);
    else if (fmt)
        vsnprintf(detail, sizeof detail, fmt, ap);
    if (detail[0])
        fprintf(stderr, "tally: %s: %s\n", what, detail);
    else
        fprintf(stderr, "tally: %s\n", what);
    return cli_exit_code(rc);
}

int cli_fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ec = vfail(rc, 1, fmt, ap);
    va_end(ap);
    return ec;
}

int cli_failx(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ec = vfail(rc, 0, fmt, ap);
    va_end(ap);
    return ec;
}

void cli_print_cmd_usage(FILE *f, const cli_cmd *cmd)
{
    const char *s = cmd->usage;
    while (*s) {
        size_t n = strcspn(s, "\n");
        fprintf(f, "usage: tally %.*s\n", (int)n, s);
        s += n;
        if (*s == '\n')
            s++;
    }
}

int cli_usage(const cli_ctx *c, const char *fmt, ...)
{
    va_list ap;
    fputs("tally: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (c && c->cmd)
        cli_print_cmd_usage(stderr, c->cmd);
    else
        fputs("usage: tally [-D DIR] [--json] COMMAND [ARGS...]  (tally --help)\n", stderr);
    return CLI_EXIT_USAGE;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A read-only open needs an existing ledger. A read of a directory that does
** not exist is "not found" and creates nothing; an existing directory without
** a ledger yet opens as the empty ledger. */
static int dir_exists(const char *dir)
{
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

int cli_open(cli_ctx *c, int ro)
{
    tally_options opts;
    tally_open_report rep;
    tally_options_init(&opts);
    if (ro && !dir_exists(c->args->dir)) {
        c->db = NULL;
        return cli_fail(TALLY_ENOTFOUND, "no ledger at %s", c->args->dir);
    }
    opts.read_only = ro;
    memset(&rep, 0, sizeof rep);
    int rc = tally_db_open(&c->db, c->args->dir, &opts, &rep);
    if (rc == TALLY_ENOTFOUND && opts.read_only) {
        /* An existing directory without a ledger yet: open it the way a
        ** writer would, as the empty ledger (state then reads "tx: 0"). */
        opts.read_only = 0;
        memset(&rep, 0, sizeof rep);
        rc = tally_db_open(&c->db, c->args->dir, &opts, &rep);
    }
    if (rc != TALLY_OK) {
        c->db = NULL;
        return cli_fail(rc, "cannot open %s", c->args->dir);
    }
    if (rep.torn_bytes_dropped > 0)
        fprintf(stderr, "tally: recovered: dropped %" PRIu64 " bytes of a torn tail\n",
                rep.torn_bytes_dropped);
    return CLI_EXIT_OK;
}

const char *cli_show(const void *p, size_t n)
{
    static char buf[256];
    const unsigned char *s = p;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 8 >= sizeof buf) {
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
            buf[o++] = (char)s[i];
        else
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", s[i]);
    }
    buf[o] = '\0';
    return buf;
}

void cli_print_tx_ack(const cli_ctx *c, uint64_t tx)
{
    if (c->args->json)
        printf("{\"tx\":%" PRIu64 "}\n", tx);
    else
        printf("%" PRIu64 "\n", tx);
    fflush(stdout); /* an acknowledgement: the caller may act on it now */
}

/* ---- progress ---- */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, const char *what)
{
    p->what = what;
    p->tty = isatty(STDERR_FILENO);
    p->shown = 0;
    p->last_ns = mono_ns();
}

int cli_progress_cb(void *ctx, uint64_t done_tx, uint64_t total_tx)
{
    cli_progress *p = ctx;
    if (!p->tty)
        return 0;
    uint64_t now = mono_ns();
    if (now - p->last_ns < 250000000u)
        return 0;
    p->last_ns = now;
    unsigned pct = total_tx ? (unsigned)(100.0 * (double)done_tx / (double)total_tx) : 100;
    fprintf(stderr, "\r%s: %" PRIu64 "/%" PRIu64 " tx (%u%%)", p->what, done_tx, total_tx,
            pct);
    fflush(stderr);
    p->shown = 1;
    return 0;
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown)
        fputc('\n', stderr);
    p->shown = 0;
}
