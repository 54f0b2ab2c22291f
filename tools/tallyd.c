/*
** tallyd.c — main() of tallyd, the HTTP server of Tally (docs/API.md).
**
**   tallyd --data DIR --listen HOST:PORT [--tls-cert F --tls-key F]
**          [--name NAME] [--token-ttl SECONDS] [--threads N]
**          [--ledger-idle-close SECONDS] [--max-connections-per-ip N]
**          [--idle-timeout SECONDS] [--request-timeout SECONDS] [--verbose]
**
** Parses flags, opens the data directory (src/server/server.c), prints the
** generated admin password (first start only), the listening address and the
** verifier key, then waits for SIGINT/SIGTERM and shuts down cleanly: stop
** accepting, finish in-flight requests, close every ledger, exit 0.
** Exit codes: 0 clean stop, 1 start-up failure, 64 usage.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "server/server.h"

#define EXIT_USAGE 64
#define TOKEN_TTL_S_DEFAULT 3600u
#define TOKEN_TTL_S_MAX (366u * 86400u)
#define IDLE_CLOSE_S_DEFAULT 300u
#define IDLE_CLOSE_S_MAX (366u * 86400u)

static const char usage_text[] =
    "usage: tallyd --data DIR --listen HOST:PORT [--tls-cert F --tls-key F]\n"
    "              [--name NAME] [--token-ttl SECONDS] [--threads N]\n"
    "              [--ledger-idle-close SECONDS] [--max-connections-per-ip N]\n"
    "              [--idle-timeout SECONDS] [--request-timeout SECONDS] [--verbose]\n"
    "  --threads N   HTTP event-loop threads (default: one per CPU, at most 64)\n"
    "  --ledger-idle-close SECONDS\n"
    "                close a ledger's handle (its threads, files, memtable) once\n"
    "                unused this long; the next request reopens it (default 300,\n"
    "                0: keep every ledger open)\n"
    "  --max-connections-per-ip N\n"
    "                open connections from one IP address (default 256, 0: no\n"
    "                limit; behind a proxy every client has the proxy's address)\n"
    "  --idle-timeout SECONDS\n"
    "                close a connection that sends nothing for this long, also\n"
    "                an idle keep-alive one (default 60, 1..3600)\n"
    "  --request-timeout SECONDS\n"
    "                close a connection whose request has not been received and\n"
    "                answered this long after the connection was ready for it\n"
    "                (accepted, or its previous answer sent): bounds a client\n"
    "                that trickles a request or reads an answer byte by byte\n"
    "                (default 120, 1..3600)\n";

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "tallyd: %s\n", msg);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* Parses a flag's value v as an integer in lo..hi into *out. 0 or -1. */
static int flag_uint(const char *v, unsigned lo, unsigned hi, unsigned *out)
{
    uint64_t n;
    if (srv_parse_u64(v, &n) < 0 || n < lo || n > hi)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* Splits HOST:PORT (IPv6 as [::1]:PORT). host is a static buffer. */
static int parse_listen(const char *arg, tallyd_config *cfg)
{
    static char host[256];
    const char *colon = strrchr(arg, ':');
    uint64_t port;
    if (!colon || colon == arg || srv_parse_u64(colon + 1, &port) < 0 || port > 65535)
        return -1;
    size_t n = (size_t)(colon - arg);
    if (arg[0] == '[' && n >= 2 && arg[n - 1] == ']') {
        arg++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof host)
        return -1;
    memcpy(host, arg, n);
    host[n] = '\0';
    cfg->host = host;
    cfg->port = (uint16_t)port;
    return 0;
}

/* Fills cfg from argv. Returns 0 or an exit code (message printed). */
static int parse_args(int argc, char **argv, tallyd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->token_ttl_s = TOKEN_TTL_S_DEFAULT;
    cfg->idle_close_s = IDLE_CLOSE_S_DEFAULT;
    cfg->per_ip_max = SRV_PER_IP_CONNECTIONS_DEFAULT;
    cfg->idle_timeout_s = SRV_IDLE_TIMEOUT_S_DEFAULT;
    cfg->request_timeout_s = SRV_REQUEST_TIMEOUT_S_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = strcmp(a, "--verbose") && strcmp(a, "--help") && strcmp(a, "-h");
        if (takes && !v)
            return usage("a flag is missing its value");
        if (!strcmp(a, "--data")) cfg->data_dir = v;
        else if (!strcmp(a, "--listen")) { if (parse_listen(v, cfg) < 0) return usage("--listen needs HOST:PORT"); }
        else if (!strcmp(a, "--tls-cert")) cfg->tls_cert_path = v;
        else if (!strcmp(a, "--tls-key")) cfg->tls_key_path = v;
        else if (!strcmp(a, "--name")) cfg->name = v;
        else if (!strcmp(a, "--token-ttl")) {
            if (srv_parse_u64(v, &cfg->token_ttl_s) < 0 || cfg->token_ttl_s == 0 ||
                cfg->token_ttl_s > TOKEN_TTL_S_MAX)
                return usage("--token-ttl needs 1..31622400 seconds");
        } else if (!strcmp(a, "--threads")) {
            if (flag_uint(v, 1, SRV_EVENT_THREADS_MAX, &cfg->threads) < 0)
                return usage("--threads needs 1..64");
        } else if (!strcmp(a, "--ledger-idle-close")) {
            if (srv_parse_u64(v, &cfg->idle_close_s) < 0 || cfg->idle_close_s > IDLE_CLOSE_S_MAX)
                return usage("--ledger-idle-close needs 0..31622400 seconds");
        } else if (!strcmp(a, "--max-connections-per-ip")) {
            if (flag_uint(v, 0, SRV_CONNECTIONS_MAX, &cfg->per_ip_max) < 0)
                return usage("--max-connections-per-ip needs 0..1024");
        } else if (!strcmp(a, "--idle-timeout")) {
            if (flag_uint(v, 1, SRV_IDLE_TIMEOUT_S_MAX, &cfg->idle_timeout_s) < 0)
                return usage("--idle-timeout needs 1..3600 seconds");
        } else if (!strcmp(a, "--request-timeout")) {
            if (flag_uint(v, 1, SRV_REQUEST_TIMEOUT_S_MAX, &cfg->request_timeout_s) < 0)
                return usage("--request-timeout needs 1..3600 seconds");
        } else if (!strcmp(a, "--verbose")) { cfg->verbose = 1; continue; }
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage_text, stdout); exit(0); }
        else return usage("unknown flag");
        i++;
    }
    if (!cfg->data_dir || !cfg->host)
        return usage("--data and --listen are required");
    if (cfg->name && (strlen(cfg->name) == 0 || strlen(cfg->name) > NOTE_NAME_MAX ||
                      strpbrk(cfg->name, "+ \t\n")))
        return usage("--name must be non-empty, without '+' or spaces");
    return 0;
}

int main(int argc, char **argv)
{
    tallyd_config cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc)
        return rc;
    /* Block the stop signals in every thread; main waits for them below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Each open ledger holds a few descriptors; 1000 ledgers + 1024 connections. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    char err[1024], pw[128];
    tallyd *s;
    if (tallyd_open(&s, &cfg, pw, sizeof pw, err, sizeof err) < 0 ||
        tallyd_start(s, err, sizeof err) < 0) {
        fprintf(stderr, "tallyd: %s\n", err);
        return 1;
    }
    if (pw[0])
        printf("admin password: %s\n", pw);
    int v6 = strchr(cfg.host, ':') != NULL;
    printf("tallyd listening on http%s://%s%s%s:%u\n", cfg.tls_cert_path ? "s" : "",
           v6 ? "[" : "", cfg.host, v6 ? "]" : "", (unsigned)http_port(s));
    printf("vkey: %s\n", s->vkey);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    fprintf(stderr, "tallyd: signal %d: shutting down\n", sig);
    tallyd_close(s);
    return 0;
}
