/*
** bench_server.c — tallyd over HTTP on loopback: the same-run HTTP limit
** (h) (GET /health from the same load generator and connections), durable
** single-entry transactions from 64 keep-alive connections (as a ratio of
** (h)), batched writes, verified
** (single and batched: 10 and 100 keys per request) and plain reads through
** the verifying client, and PostgreSQL doing a hash-chained
** append-only table (bench/pg_compare.sh) for the ratio.
**
** Usage: build/bench_server [--duration S] [--only LIST] [--tallyd PATH]
**                           [--pg-script PATH] [--no-pg] [--perf S]
**   --duration S   seconds per measured run (default 5)
**   --only LIST    phases to run, e.g. "1,3" (1 limit (h) and single-entry tx, 2 batched
**                  writes, 3 reads, 4 PostgreSQL); 3 needs the keys of 1, so
**                  1 runs whenever 3 does
**   --tallyd PATH  server binary (default build/tallyd)
**   --pg-script P  default bench/pg_compare.sh
**   --no-pg        skip PostgreSQL
**   --perf S       also `perf record -g` tallyd for S seconds during each
**                  Tally run and print the top symbols (perturbs the numbers)
** Env: TMPDIR — where the temporary data directory goes (default /tmp; it
** should be on the disk you care about: the commits fdatasync there).
**      BENCH_ONLY_BIN=1 — phase 2 runs the binary batches only.
**      BENCH_NO_LIMIT=1 — phase 1 skips its limit (h) run (quicker A/B runs).
**      BENCH_PERF_DIR=D — with --perf, keep perf-<run>.data in D.
**
** tallyd and this load generator run on the same machine and share its cores;
** the CPU each used during every run is printed beside the result. So that
** the generator takes as little of it as it can, the writes (phases 1 and 2)
** are driven like wrk or pgbench drive theirs: one epoll loop per core over
** non-blocking keep-alive sockets, each request prebuilt (only the key
** counters change), each response checked for status 200 and read to its
** Content-Length. The reads (phase 3) go through the real verifying client
** library, one thread per client, because checking the proofs is the point. Every loop
** is bounded by the run's duration, every request by a timeout, the whole
** program by an alarm; the temporary directory is removed at the end.
** Results go to stdout, progress to stderr.
*/
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tally_client.h"

#define KEY_LEN 32
#define VAL_LEN 128
#define CONNS 64
#define BATCH 1000
#define GETMANY 100            /* most keys per tally_client_verified_get_many */
#define LAT_CAP (1u << 22)      /* latency samples kept per worker */
#define REQ_TIMEOUT_S 60L
#define ALARM_S 1200u           /* the whole program, whatever happens */
#define LEDGER "bench"
#define ADMIN_PW "bench-server-admin-pw"

/* ------------------------------------------------------------------ */
/* Small helpers.                                                      */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_server: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void hex16(char *dst, uint64_t v)
{
    static const char d[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        dst[i] = d[v & 15];
        v >>= 4;
    }
}

/* "12.3k" style with the unit. */
static const char *si(char *buf, size_t n, double v)
{
    if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
    return buf;
}

static const char *ms(char *buf, size_t n, double ns)
{
    if (ns < 1e6)
        snprintf(buf, n, "%.0f µs", ns / 1e3);
    else
        snprintf(buf, n, "%.2f ms", ns / 1e6);
    return buf;
}

/* ------------------------------------------------------------------ */
/* The server process.                                                 */

static char g_tmp[512];
static char g_url[64];
static char g_token[512];
static char g_vkey[512];
static volatile pid_t g_tallyd = -1;
static volatile pid_t g_perf = -1;
static int g_perf_secs;

static void on_fatal_signal(int sig)
{
    if (g_perf > 0)
        kill(g_perf, SIGKILL);
    if (g_tallyd > 0)
        kill(g_tallyd, SIGKILL);
    static const char m[] = "bench_server: stopped by a signal (alarm or interrupt); tallyd killed\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    _exit(128 + sig);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p) == 0 || errno == ENOENT ? 0 : -1;
}

static void rm_tree(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

static void stop_tallyd(void)
{
    if (g_tallyd <= 0)
        return;
    pid_t p = g_tallyd;
    kill(p, SIGTERM);
    int st;
    for (int i = 0; i < 300; i++) { /* 30 s, then SIGKILL */
        if (waitpid(p, &st, WNOHANG) == p) {
            g_tallyd = -1;
            return;
        }
        usleep(100000);
    }
    kill(p, SIGKILL);
    waitpid(p, &st, 0);
    g_tallyd = -1;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_server: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    stop_tallyd();
    rm_tree(g_tmp);
    exit(1);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* Server CPU time so far (user + system), seconds. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long ut = 0, stt = 0;
    /* after ")": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
        return 0;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* The machine's stolen CPU time so far (the hypervisor ran someone else on
** our vCPUs), seconds over all cores: /proc/stat "cpu" field 8. A noisy
** neighbour shows here, so a slow run can be told from a slow build. */
static double steal_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    return n == 8 ? (double)v[7] / (double)sysconf(_SC_CLK_TCK) : 0;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ */
/* Plain libcurl requests (setup, metrics, and the write load).        */

typedef struct rbuf {
    char *p;
    size_t len, cap;
} rbuf;

static size_t on_body(char *d, size_t sz, size_t nm, void *ud)
{
    rbuf *b = ud;
    size_t n = sz * nm;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* One request on handle h (kept alive between calls). Returns the HTTP
** status, or -1 on a transport error. */
static long http_do(CURL *h, struct curl_slist *hdrs, const char *method, const char *url,
                    const char *body, size_t body_len, rbuf *out)
{
    out->len = 0;
    if (out->p)
        out->p[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, REQ_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    if (curl_easy_perform(h) != CURLE_OK)
        return -1;
    long st = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
    return st;
}

static struct curl_slist *auth_headers(void)
{
    char a[600];
    snprintf(a, sizeof a, "Authorization: Bearer %s", g_token);
    struct curl_slist *h = curl_slist_append(NULL, a);
    h = curl_slist_append(h, "Content-Type: application/json");
    return curl_slist_append(h, "Expect:");
}

/* One-off request with a fresh handle; the body is returned in *out. */
static long http_once(const char *method, const char *path, const char *body, rbuf *out,
                      int auth)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hd = auth ? auth_headers() : curl_slist_append(NULL, "Expect:");
    char url[1024];
    snprintf(url, sizeof url, "%s%s", g_url, path);
    long st = http_do(h, hd, method, url, body, body ? strlen(body) : 0, out);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return st;
}

typedef struct metrics {
    double commits, syncs, sync_s;
} metrics;

static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return 0;
}

static metrics get_metrics(void)
{
    rbuf b = { 0 };
    metrics m = { 0, 0, 0 };
    if (http_once("GET", "/metrics", NULL, &b, 0) == 200 && b.p) {
        m.commits = metric(b.p, "tally_commits_total");
        m.syncs = metric(b.p, "tally_fdatasync_total");
        m.sync_s = metric(b.p, "tally_fdatasync_seconds_total");
    }
    free(b.p);
    return m;
}

static void start_tallyd(const char *bin)
{
    int port = free_port();
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%d", port);
    char data[600], listen[64], log[600];
    snprintf(data, sizeof data, "%s/data", g_tmp);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(log, sizeof log, "%s/tallyd.log", g_tmp);
    pid_t p = fork();
    if (p < 0)
        die("fork: %s", strerror(errno));
    if (p == 0) {
        FILE *f = freopen(log, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        setenv("TALLY_ADMIN_PASSWORD", ADMIN_PW, 1);
        execl(bin, bin, "--data", data, "--listen", listen, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    g_tallyd = p;
    for (int i = 0; i < 200; i++) { /* 20 s */
        int st;
        if (waitpid(p, &st, WNOHANG) == p) {
            g_tallyd = -1;
            char cmd[700];
            snprintf(cmd, sizeof cmd, "cat '%s' >&2", log);
            if (system(cmd)) { /* best effort */ }
            die("tallyd exited during start-up");
        }
        rbuf b = { 0 };
        long st2 = http_once("GET", "/health", NULL, &b, 0);
        free(b.p);
        if (st2 == 200) {
            progress("tallyd pid %d on %s, data in %s", (int)p, g_url, data);
            return;
        }
        usleep(100000);
    }
    die("tallyd did not answer /health within 20 s (log: %s)", log);
}

static void setup_ledger(void)
{
    rbuf b = { 0 };
    long st = http_once("POST", "/v1/login",
                        "{\"user\":\"admin\",\"password\":\"" ADMIN_PW "\"}", &b, 0);
    json_error_t err;
    json_t *j = st == 200 ? json_loads(b.p, 0, &err) : NULL;
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
        die("login failed: HTTP %ld %s", st, b.p ? b.p : "");
    snprintf(g_token, sizeof g_token, "%s", tok);
    json_decref(j);
    st = http_once("POST", "/v1/ledgers", "{\"name\":\"" LEDGER "\"}", &b, 1);
    if (st != 201)
        die("creating the ledger: HTTP %ld %s", st, b.p ? b.p : "");
    st = http_once("GET", "/v1/server", NULL, &b, 0);
    j = st == 200 ? json_loads(b.p, 0, &err) : NULL;
    const char *vk = json_string_value(json_object_get(j, "vkey"));
    if (!vk)
        die("GET /v1/server: HTTP %ld", st);
    snprintf(g_vkey, sizeof g_vkey, "%s", vk);
    json_decref(j);
    free(b.p);
}

/* ------------------------------------------------------------------ */
/* perf (optional).                                                    */

/* BENCH_PERF_DIR keeps the perf data for a closer look (default: the temporary
** directory, removed at the end). */
static const char *perf_dir(void)
{
    const char *d = getenv("BENCH_PERF_DIR");
    return d && *d ? d : g_tmp;
}

static void perf_start(const char *tag)
{
    if (g_perf_secs <= 0 || g_tallyd <= 0)
        return;
    char out[700], pid[16], secs[16];
    snprintf(out, sizeof out, "%s/perf-%s.data", perf_dir(), tag);
    snprintf(pid, sizeof pid, "%d", (int)g_tallyd);
    snprintf(secs, sizeof secs, "%d", g_perf_secs);
    pid_t p = fork();
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("perf", "perf", "record", "-g", "-q", "-p", pid, "-o", out, "--", "sleep", secs,
               (char *)NULL);
        _exit(127);
    }
    g_perf = p;
}

static void perf_report(const char *tag)
{
    if (g_perf <= 0)
        return;
    int st;
    waitpid(g_perf, &st, 0);
    g_perf = -1;
    char cmd[1600];
    snprintf(cmd, sizeof cmd,
             "perf report -i '%s/perf-%s.data' --stdio --no-children --sort dso,symbol "
             "--percent-limit 1.5 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 "
             "| sed 's/^/  perf[%s] /'",
             perf_dir(), tag, tag);
    printf("  perf record -g of tallyd during \"%s\" (self time, symbols >= 1.5%%):\n", tag);
    fflush(stdout);
    if (system(cmd)) { /* best effort */ }
    fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Workers.                                                            */

enum { W_SET1, W_SETN, W_SETBIN, W_VGET, W_GET, W_VGETN, W_HEALTH };

typedef struct worker {
    int id, kind;
    pthread_t th;
    CURL *h;
    struct curl_slist *hdrs;
    tally_client *cl;
    char url[256];
    char *body;
    size_t body_len, nkeys;
    size_t *koff;          /* offsets of the 16-hex counter of each key in body */
    uint64_t ctr;          /* keys written by this worker (phase 1: read back in 3) */
    uint64_t ops, errs, first_status;
    char first_err[256];
    uint64_t *lat;
    size_t nlat;
    uint64_t rng;
    uint64_t t_end;        /* when its last op finished */
    rbuf resp;
    /* event-driven HTTP (writes) */
    int fd;
    char *req;             /* the whole request: headers + body */
    size_t req_len, sent;
    size_t hdr_len;        /* body offset in req (koff is relative to the body) */
    uint64_t t0;           /* when the current request started */
    int counted;           /* the current request is a measured one */
} worker;

static atomic_int g_ready;
static atomic_int g_go;
static uint64_t g_deadline_ns;
static worker g_w1[CONNS]; /* phase 1 workers: their keys are read in phase 3 */

/* Key: 16 chars of prefix ("p<phase>w<worker>" padded with '.') + 16 hex of a counter. */
static void key_prefix(char out[17], int phase, int w)
{
    char t[32];
    snprintf(t, sizeof t, "p%dw%03d................", phase, w);
    memcpy(out, t, 16);
    out[16] = '\0';
}

static void put32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}

/* The same entries as a binary batch (docs/API.md "Binary batches"). */
static void build_body_binary(worker *w, int phase, size_t n)
{
    size_t per = 20 + KEY_LEN + VAL_LEN;
    w->body = calloc(1, 12 + n * per);
    w->koff = malloc(n * sizeof *w->koff);
    if (!w->body || !w->koff)
        die("out of memory");
    char pre[17];
    key_prefix(pre, phase, w->id);
    memcpy(w->body, "TB01", 4);
    put32(w->body + 4, (uint32_t)n);
    char *p = w->body + 12;
    for (size_t i = 0; i < n; i++) {
        p[2] = KEY_LEN; /* cond 0, reserved 0, key length (u16), value length, meta 0, if_rev 0 */
        put32(p + 4, VAL_LEN);
        p += 20;
        memcpy(p, pre, 16);
        w->koff[i] = (size_t)(p + 16 - w->body);
        memset(p + 16, '0', 16);
        p += KEY_LEN;
        for (int k = 0; k < VAL_LEN; k++)
            p[k] = "abcdefghijklmnopqrstuvwxyz0123456789"[rng_next(&w->rng) % 36];
        p += VAL_LEN;
    }
    w->body_len = (size_t)(p - w->body);
    w->nkeys = n;
}

static void build_body(worker *w, int phase, size_t n)
{
    size_t per = 32 + KEY_LEN + VAL_LEN;
    w->body = malloc(32 + n * per);
    w->koff = malloc(n * sizeof *w->koff);
    if (!w->body || !w->koff)
        die("out of memory");
    char pre[17], val[VAL_LEN + 1];
    key_prefix(pre, phase, w->id);
    for (int i = 0; i < VAL_LEN; i++)
        val[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[rng_next(&w->rng) % 36];
    val[VAL_LEN] = '\0';
    char *p = w->body;
    p += sprintf(p, "{\"entries\":[");
    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "%s{\"key\":\"%s", i ? "," : "", pre);
        w->koff[i] = (size_t)(p - w->body);
        p += sprintf(p, "0000000000000000\",\"value\":\"%s\"}", val);
    }
    p += sprintf(p, "]}");
    w->body_len = (size_t)(p - w->body);
    w->nkeys = n;
}

static void fail_note(worker *w, long st, const char *msg)
{
    if (w->errs++ == 0) {
        w->first_status = (uint64_t)(st < 0 ? 0 : st);
        snprintf(w->first_err, sizeof w->first_err, "%s", msg ? msg : "");
        w->first_err[strcspn(w->first_err, "\n")] = '\0';
    }
}

/* One operation; returns 0 if it succeeded. */
static int one_op(worker *w)
{
    switch (w->kind) {
    case W_SET1:
    case W_SETN: {
        for (size_t i = 0; i < w->nkeys; i++)
            hex16(w->body + w->koff[i], w->ctr + i);
        long st = http_do(w->h, w->hdrs, "POST", w->url, w->body, w->body_len, &w->resp);
        w->ctr += w->nkeys; /* counted as written even if refused: reads then miss */
        if (st != 200) {
            fail_note(w, st, st < 0 ? "transport error" : w->resp.p);
            return -1;
        }
        return 0;
    }
    case W_VGETN: {
        char keys[GETMANY][KEY_LEN];
        tally_client_key k[GETMANY];
        tally_client_version v[GETMANY];
        int m = w->nkeys > 0 && w->nkeys <= GETMANY ? (int)w->nkeys : GETMANY;
        for (int j = 0; j < m; j++) {
            int t;
            do
                t = (int)(rng_next(&w->rng) % CONNS);
            while (g_w1[t].ctr == 0);
            char pre[17];
            key_prefix(pre, 1, t);
            memcpy(keys[j], pre, 16);
            hex16(keys[j] + 16, rng_next(&w->rng) % g_w1[t].ctr);
            k[j].key = keys[j];
            k[j].key_len = KEY_LEN;
        }
        int rc = tally_client_verified_get_many(w->cl, v, NULL, k, (size_t)m, TALLY_CLIENT_LATEST, 0);
        for (int j = 0; rc == 0 && j < m; j++)
            if (v[j].tx == 0 || v[j].key_len != KEY_LEN || memcmp(v[j].key, keys[j], KEY_LEN) ||
                v[j].value_len != VAL_LEN)
                rc = TALLY_ECORRUPT;
        if (rc != 0)
            fail_note(w, tally_client_http_status(w->cl), tally_errmsg());
        for (int j = 0; j < m; j++)
            tally_client_version_free(&v[j]);
        return rc == 0 ? 0 : -1;
    }
    case W_VGET:
    case W_GET: {
        int t;
        do
            t = (int)(rng_next(&w->rng) % CONNS);
        while (g_w1[t].ctr == 0);
        uint64_t i = rng_next(&w->rng) % g_w1[t].ctr;
        char key[KEY_LEN + 1];
        key_prefix(key, 1, t);
        hex16(key + 16, i);
        tally_client_version v;
        int rc = w->kind == W_VGET
                     ? tally_client_verified_get(w->cl, &v, key, KEY_LEN, TALLY_CLIENT_LATEST, 0)
                     : tally_client_get(w->cl, &v, key, KEY_LEN, TALLY_CLIENT_LATEST, 0);
        if (rc == 0 && (v.key_len != KEY_LEN || memcmp(v.key, key, KEY_LEN) != 0 ||
                        v.value_len != VAL_LEN))
            rc = TALLY_ECORRUPT;
        if (rc != 0)
            fail_note(w, tally_client_http_status(w->cl), tally_errmsg());
        else
            tally_client_version_free(&v);
        return rc == 0 ? 0 : -1;
    }
    }
    return -1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    /* warm-up: open the connection (and, for verified reads, pin the ledger
    ** and take the first trusted state); not counted */
    one_op(w);
    w->errs = 0;
    w->first_err[0] = '\0';
    atomic_fetch_add(&g_ready, 1);
    for (int i = 0; i < 60000 && !atomic_load(&g_go); i++)
        usleep(500);
    for (;;) {
        uint64_t t0 = now_ns();
        if (t0 >= g_deadline_ns)
            break;
        int rc = one_op(w);
        uint64_t t1 = now_ns();
        if (rc == 0) {
            w->ops++;
            if (w->nlat < LAT_CAP)
                w->lat[w->nlat++] = t1 - t0;
        }
        w->t_end = t1;
    }
    return NULL;
}

/* ---- The event-driven HTTP/1.1 writer (phases 1 and 2) ---- */
#define EV_THREADS_MAX 8

static void ev_connect(worker *w)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    a.sin_port = htons((uint16_t)atoi(strrchr(g_url, ':') + 1));
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect %s: %s", g_url, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    w->fd = fd;
}

/* Starts the next request of w: patches the key counters, sends what the
** socket takes. */
static void ev_begin(worker *w)
{
    for (size_t i = 0; i < w->nkeys; i++)
        hex16(w->req + w->hdr_len + w->koff[i], w->ctr + i);
    w->ctr += w->nkeys; /* counted as written even if refused: reads then miss */
    w->sent = 0;
    w->resp.len = 0;
    w->t0 = now_ns();
}

/* Sends what it can. Returns 0, or -1 on a transport error. */
static int ev_send(worker *w)
{
    while (w->sent < w->req_len) {
        ssize_t n = send(w->fd, w->req + w->sent, w->req_len - w->sent, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        w->sent += (size_t)n;
    }
    return 0;
}

/* 1 when a whole response is in w->resp (its status in *status; the body
** moved to the front), 0 when more is needed, -1 if more than one arrived. */
static int ev_parse(worker *w, long *status)
{
    char *end = strstr(w->resp.p, "\r\n\r\n");
    if (!end)
        return 0;
    size_t hl = (size_t)(end + 4 - w->resp.p), cl = 0;
    const char *c = strcasestr(w->resp.p, "\r\nContent-Length:");
    if (c && c < end)
        cl = (size_t)strtoull(c + 17, NULL, 10);
    if (w->resp.len < hl + cl)
        return 0;
    if (w->resp.len > hl + cl)
        return -1; /* one request at a time: nothing may follow */
    *status = strtol(w->resp.p + 9, NULL, 10);
    memmove(w->resp.p, w->resp.p + hl, cl + 1); /* keep the body for error notes */
    w->resp.len = cl;
    return 1;
}

/* Reads what is there. Returns 1 when a whole response is in w->resp (its
** status in *status), 0 when more is needed, -1 on a transport error. It
** stops reading as soon as the response is whole: with one request in flight
** nothing else can be pending, so the edge-triggered loop loses no event, and
** the recv that would only return EAGAIN (one syscall per request) is saved. */
static int ev_recv(worker *w, long *status)
{
    for (;;) {
        if (w->resp.cap - w->resp.len < 4096) {
            size_t cap = w->resp.cap ? w->resp.cap * 2 : 16384;
            char *p = realloc(w->resp.p, cap);
            if (!p)
                die("out of memory");
            w->resp.p = p;
            w->resp.cap = cap;
        }
        ssize_t n = recv(w->fd, w->resp.p + w->resp.len, w->resp.cap - w->resp.len - 1, 0);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        w->resp.len += (size_t)n;
        w->resp.p[w->resp.len] = '\0';
        int rc = ev_parse(w, status);
        if (rc != 0)
            return rc;
    }
}

typedef struct ev_loop {
    worker *ws;
    int nw;
    pthread_t th;
} ev_loop;

/* Drives its workers until the deadline: each keeps exactly one request in
** flight. Requests started before g_go are the warm-up (not counted). */
static void *ev_main(void *arg)
{
    ev_loop *L = arg;
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    int warm = 0;
    for (int i = 0; i < L->nw; i++) {
        worker *w = &L->ws[i];
        ev_connect(w);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = w };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, w->fd, &ev) != 0)
            die("epoll_ctl: %s", strerror(errno));
        ev_begin(w);
        w->counted = 0;
        if (ev_send(w) < 0)
            die("send: %s", strerror(errno));
    }
    int active = L->nw;
    struct epoll_event evs[64];
    while (active > 0) {
        int n = epoll_wait(ep, evs, 64, 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            worker *w = evs[k].data.ptr;
            if (w->fd < 0)
                continue;
            long st = 0;
            int rc = w->sent < w->req_len ? ev_send(w) : 0;
            if (rc == 0 && w->sent == w->req_len)
                rc = ev_recv(w, &st);
            if (rc < 0) {
                fail_note(w, -1, "transport error");
                close(w->fd);
                w->fd = -1;
                active--;
                continue;
            }
            if (rc == 0)
                continue;
            uint64_t t1 = now_ns();
            w->t_end = t1;
            if (!w->counted) {
                if (st != 200)
                    die("warm-up request: HTTP %ld %s", st, w->resp.p);
                if (++warm < L->nw)
                    continue; /* idle until every connection of this loop is warm */
                atomic_fetch_add(&g_ready, L->nw);
                while (!atomic_load(&g_go))
                    usleep(200);
                for (int i = 0; i < L->nw; i++) { /* go: the measured requests */
                    worker *x = &L->ws[i];
                    ev_begin(x);
                    x->counted = 1;
                    if (ev_send(x) < 0)
                        die("send: %s", strerror(errno));
                }
                continue;
            } else if (st == 200) {
                w->ops++;
                if (w->nlat < LAT_CAP)
                    w->lat[w->nlat++] = t1 - w->t0;
            } else {
                fail_note(w, st, w->resp.p);
            }
            if (t1 >= g_deadline_ns) {
                close(w->fd);
                w->fd = -1;
                active--;
                continue;
            }
            ev_begin(w);
            w->counted = 1;
            if (ev_send(w) < 0) {
                fail_note(w, -1, "transport error");
                close(w->fd);
                w->fd = -1;
                active--;
            }
        }
    }
    close(ep);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double ops_s, items_s;   /* requests/s, entries or reads/s */
    double p50, p99, mean;   /* ns */
    uint64_t ops, errs;
    double secs, srv_cpu, cli_cpu, steal;
    double group;            /* commits per fdatasync during the run (writes) */
    double sync_ms;          /* mean fdatasync time */
    double syncs_s;          /* fdatasyncs per second (group-commit cycles) */
    char err[300];
} result;

/* Runs nw workers of one kind for `secs`; items per op for the rate. */
static result run(worker *ws, int nw, double secs, double items_per_op, const char *tag)
{
    result r;
    memset(&r, 0, sizeof r);
    atomic_store(&g_ready, 0);
    atomic_store(&g_go, 0);
    g_deadline_ns = UINT64_MAX;
    int evented = ws[0].kind == W_SET1 || ws[0].kind == W_SETN || ws[0].kind == W_SETBIN ||
                  ws[0].kind == W_HEALTH;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nloops = ncpu < 1 ? 1 : ncpu > EV_THREADS_MAX ? EV_THREADS_MAX : (int)ncpu;
    if (nloops > nw)
        nloops = nw;
    ev_loop loops[EV_THREADS_MAX];
    for (int i = 0; i < nw; i++) {
        ws[i].lat = malloc(LAT_CAP * sizeof(uint64_t));
        if (!ws[i].lat)
            die("out of memory");
        ws[i].nlat = 0;
        ws[i].ops = ws[i].errs = 0;
        if (!evented && pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0)
            die("pthread_create failed");
    }
    for (int l = 0; evented && l < nloops; l++) { /* workers split evenly over the loops */
        int lo = nw * l / nloops, hi = nw * (l + 1) / nloops;
        loops[l] = (ev_loop){ .ws = ws + lo, .nw = hi - lo };
        if (pthread_create(&loops[l].th, NULL, ev_main, &loops[l]) != 0)
            die("pthread_create failed");
    }
    for (int i = 0; i < 600 && atomic_load(&g_ready) < nw; i++) /* 60 s for the warm-up */
        usleep(100000);
    if (atomic_load(&g_ready) < nw)
        progress("warning: only %d of %d workers warmed up within 60 s", atomic_load(&g_ready), nw);
    metrics m0 = get_metrics();
    double s0 = proc_cpu_s(g_tallyd), c0 = self_cpu_s(), st0 = steal_s();
    uint64_t t0 = now_ns();
    g_deadline_ns = t0 + (uint64_t)(secs * 1e9);
    atomic_store(&g_go, 1);
    if (g_perf_secs > 0) {
        usleep(500000);
        perf_start(tag);
    }
    uint64_t tend = t0;
    for (int l = 0; evented && l < nloops; l++)
        pthread_join(loops[l].th, NULL);
    for (int i = 0; i < nw; i++) {
        if (!evented)
            pthread_join(ws[i].th, NULL);
        if (ws[i].t_end > tend)
            tend = ws[i].t_end;
    }
    double s1 = proc_cpu_s(g_tallyd), c1 = self_cpu_s(), st1 = steal_s();
    metrics m1 = get_metrics();
    size_t total = 0;
    for (int i = 0; i < nw; i++) {
        r.ops += ws[i].ops;
        r.errs += ws[i].errs;
        total += ws[i].nlat;
        if (ws[i].errs && !r.err[0])
            snprintf(r.err, sizeof r.err, "HTTP %" PRIu64 ": %s", ws[i].first_status,
                     ws[i].first_err);
    }
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        die("out of memory");
    size_t k = 0;
    double sum = 0;
    for (int i = 0; i < nw; i++) {
        memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof *all);
        k += ws[i].nlat;
        free(ws[i].lat);
        ws[i].lat = NULL;
    }
    qsort(all, total, sizeof *all, cmp_u64);
    for (size_t i = 0; i < total; i++)
        sum += (double)all[i];
    if (total) {
        r.p50 = (double)all[total / 2];
        r.p99 = (double)all[(size_t)((double)total * 0.99)];
        r.mean = sum / (double)total;
    }
    free(all);
    r.secs = (double)(tend - t0) / 1e9;
    r.ops_s = (double)r.ops / r.secs;
    r.items_s = r.ops_s * items_per_op;
    r.srv_cpu = s1 - s0;
    r.cli_cpu = c1 - c0;
    r.steal = st1 - st0;
    double dc = m1.commits - m0.commits, ds = m1.syncs - m0.syncs;
    r.group = ds > 0 ? dc / ds : 0;
    r.sync_ms = ds > 0 ? (m1.sync_s - m0.sync_s) / ds * 1e3 : 0;
    r.syncs_s = r.secs > 0 ? ds / r.secs : 0;
    perf_report(tag);
    return r;
}

static void print_cpu(const result *r)
{
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("  CPU during the run: tallyd %.2f s (%.0f%% of %ld cores), load generator %.2f s "
           "(%.0f%%), stolen by the hypervisor %.2f s (%.0f%%), other/idle the rest\n",
           r->srv_cpu, 100 * r->srv_cpu / (r->secs * (double)nc), nc, r->cli_cpu,
           100 * r->cli_cpu / (r->secs * (double)nc), r->steal, 100 * r->steal / (r->secs * (double)nc));
    if (r->errs)
        printf("  ERRORS: %" PRIu64 " failed operations; first: %s\n", r->errs, r->err);
}

static void init_http_worker(worker *w, int id, int kind, int phase, size_t n)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->kind = kind;
    w->fd = -1;
    w->rng = 0x5eed0000u + (uint64_t)id * 7919u + (uint64_t)phase * 104729u;
    if (kind == W_HEALTH) { /* the HTTP limit: no body, no authentication, no commit */
        char hdr[256];
        int hl = snprintf(hdr, sizeof hdr, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", g_url + 7);
        if (hl < 0 || (size_t)hl >= sizeof hdr || !(w->req = malloc((size_t)hl)))
            die("building a request");
        memcpy(w->req, hdr, (size_t)hl);
        w->hdr_len = w->req_len = (size_t)hl;
        return;
    }
    if (kind == W_SETBIN)
        build_body_binary(w, phase, n);
    else
        build_body(w, phase, n);
    char hdr[1024];
    int hl = snprintf(hdr, sizeof hdr,
                      "POST /v1/ledgers/" LEDGER "/set HTTP/1.1\r\nHost: %s\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      g_url + 7, g_token,
                      kind == W_SETBIN ? "application/vnd.tally.batch" : "application/json",
                      w->body_len);
    if (hl < 0 || (size_t)hl >= sizeof hdr || !(w->req = malloc((size_t)hl + w->body_len)))
        die("building a request");
    memcpy(w->req, hdr, (size_t)hl);
    memcpy(w->req + hl, w->body, w->body_len);
    w->hdr_len = (size_t)hl;
    w->req_len = (size_t)hl + w->body_len;
}

static void free_http_worker(worker *w, int keep_ctr)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->req);
    free(w->body);
    free(w->koff);
    free(w->resp.p);
    uint64_t ctr = w->ctr;
    int id = w->id;
    memset(w, 0, sizeof *w);
    if (keep_ctr) {
        w->ctr = ctr;
        w->id = id;
    }
}

static void init_client_worker(worker *w, int id, int kind, const char *state_dir)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->kind = kind;
    w->rng = 0xabcd0000u + (uint64_t)id * 31337u + (uint64_t)kind;
    tally_client_options o;
    tally_client_options_init(&o);
    o.ledger = LEDGER;
    o.server_vkey = g_vkey;
    o.state_dir = state_dir;
    o.token = g_token;
    o.timeout_ms = REQ_TIMEOUT_S * 1000;
    int rc = tally_client_connect(&w->cl, g_url, &o);
    if (rc != 0)
        die("tally_client_connect: %s", tally_errmsg());
}

/* ------------------------------------------------------------------ */
/* Output.                                                             */

typedef struct row {
    char what[200], result[300], goal[80], met[16];
} row;
static row g_rows[32];
static int g_nrows;

static void add_row(const char *what, const char *res, const char *goal, const char *met)
{
    if (g_nrows >= 32)
        return;
    row *r = &g_rows[g_nrows++];
    snprintf(r->what, sizeof r->what, "%s", what);
    snprintf(r->result, sizeof r->result, "%s", res);
    snprintf(r->goal, sizeof r->goal, "%s", goal);
    snprintf(r->met, sizeof r->met, "%s", met);
}

static void machine_header(void)
{
    char model[256] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    int sha = 0;
    f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            sha = strstr(line, " sha_ni") != NULL;
            break;
        }
    if (f)
        fclose(f);
    double mem_gib = 0;
    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        unsigned long kb;
        if (sscanf(line, "MemTotal: %lu kB", &kb) == 1) {
            mem_gib = (double)kb / 1048576.0;
            break;
        }
    }
    if (f)
        fclose(f);
    struct utsname u;
    uname(&u);
    struct statfs sf;
    const char *fs = "?";
    if (statfs(g_tmp, &sf) == 0)
        fs = sf.f_type == 0xEF53 ? "ext4" : sf.f_type == 0x01021994 ? "tmpfs (NOT durable!)"
           : sf.f_type == 0x58465342 ? "xfs" : sf.f_type == 0x9123683E ? "btrfs" : "other";
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("# tallyd HTTP benchmark (bench/bench_server.c)\n\n");
    printf("Machine: %s%s, %ld cores, %.1f GiB RAM, %s %s %s\n", model,
           sha ? " (SHA extensions)" : "", nc, mem_gib, u.sysname, u.release, u.machine);
    printf("Data dir: %s (%s)\n", g_tmp, fs);
    printf("Software: libmicrohttpd %s, libcurl %s, jansson %s\n", MHD_get_version(),
           curl_version_info(CURLVERSION_NOW)->version, JANSSON_VERSION);
    printf("NOTE: loopback only (127.0.0.1); the load generator (this process: one epoll loop "
           "per core for the writes, one thread per verifying client for the reads) runs on the "
           "same %ld cores as tallyd and competes with it for CPU; every run prints the CPU each "
           "side used.\n\n",
           nc);
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    double secs = 5;
    const char *tallyd = "build/tallyd", *pg_script = "bench/pg_compare.sh";
    int do_pg = 1, ph[5] = { 0, 1, 1, 1, 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--duration") && v) { secs = atof(v); i++; }
        else if (!strcmp(a, "--tallyd") && v) { tallyd = v; i++; }
        else if (!strcmp(a, "--pg-script") && v) { pg_script = v; i++; }
        else if (!strcmp(a, "--no-pg")) do_pg = 0;
        else if (!strcmp(a, "--perf") && v) { g_perf_secs = atoi(v); i++; }
        else if (!strcmp(a, "--only") && v) {
            memset(ph, 0, sizeof ph);
            for (const char *p = v; *p; p++)
                if (*p >= '1' && *p <= '4')
                    ph[*p - '0'] = 1;
            i++;
        } else {
            fprintf(stderr, "usage: %s [--duration S] [--only 1,2,3,4] [--tallyd PATH] "
                            "[--pg-script PATH] [--no-pg] [--perf S]\n", argv[0]);
            return 64;
        }
    }
    if (secs < 0.5 || secs > 120) {
        fprintf(stderr, "bench_server: --duration must be 0.5..120 s\n");
        return 64;
    }
    if (ph[3])
        ph[1] = 1;
    if (!do_pg)
        ph[4] = 0;
    if (g_perf_secs > 0 && g_perf_secs > (int)secs - 1)
        g_perf_secs = (int)secs - 1 > 0 ? (int)secs - 1 : 1;

    signal(SIGALRM, on_fatal_signal);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGPIPE, SIG_IGN);
    alarm(ALARM_S);

    const char *td = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/tally-bench-server.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(g_tmp))
        die("mkdtemp %s: %s", g_tmp, strerror(errno));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
    machine_header();

    char b1[32], b2[32], b3[32], b4[32], line[400];
    double tally_tps = 0;

    if (ph[1] || ph[2] || ph[3]) {
        start_tallyd(tallyd);
        setup_ledger();
        printf("tallyd pid %d, %s, ledger \"%s\"; keys %d B, values %d B (ASCII in JSON)\n\n",
               (int)g_tallyd, g_url, LEDGER, KEY_LEN, VAL_LEN);
    }

    /* ---- 1: single-entry durable transactions, 64 keep-alive connections ---- */
    if (ph[1]) {
        /* the same-run limit: the same generator and connections, GET /health
        ** (HTTP parse, route, a small JSON answer; no body, token, commit or
        ** suspension): what loopback HTTP on these cores allows at all */
        double health_rps = 0;
        const char *no_limit = getenv("BENCH_NO_LIMIT");
        if (!no_limit || !*no_limit) {
            progress("phase 1, limit (h): %d connections, GET /health, %.0f s", CONNS, secs);
            for (int i = 0; i < CONNS; i++)
                init_http_worker(&g_w1[i], i, W_HEALTH, 1, 0);
            result h = run(g_w1, CONNS, secs, 1, "health");
            printf("Limit (h): the same generator, %d keep-alive connections, GET /health: %s "
                   "req/s, p50 %s\n",
                   CONNS, si(b1, sizeof b1, h.items_s), ms(b2, sizeof b2, h.p50));
            print_cpu(&h);
            printf("\n");
            health_rps = h.items_s;
            for (int i = 0; i < CONNS; i++)
                free_http_worker(&g_w1[i], 0);
        }
        progress("phase 1: %d connections, 1 entry per POST /set, %.0f s", CONNS, secs);
        for (int i = 0; i < CONNS; i++)
            init_http_worker(&g_w1[i], i, W_SET1, 1, 1);
        result r = run(g_w1, CONNS, secs, 1, "1-entry-tx");
        tally_tps = r.items_s;
        printf("1. Single-entry durable transactions, %d keep-alive connections (%d epoll "
               "loops, one request in flight per connection), POST /v1/ledgers/%s/set, %.1f s\n",
               CONNS, (int)(sysconf(_SC_NPROCESSORS_ONLN) < CONNS ? sysconf(_SC_NPROCESSORS_ONLN) : CONNS),
               LEDGER, r.secs);
        printf("  %s tx/s (%" PRIu64 " tx); latency p50 %s, p99 %s, mean %s\n",
               si(b1, sizeof b1, r.items_s), r.ops, ms(b2, sizeof b2, r.p50),
               ms(b3, sizeof b3, r.p99), ms(b4, sizeof b4, r.mean));
        printf("  server group commit: %.1f tx per fdatasync (tally_commits_total / "
               "tally_fdatasync_total over the run), mean fdatasync %.2f ms, %.0f group "
               "commits/s: a request's mean latency is %.1f group-commit cycles\n",
               r.group, r.sync_ms, r.syncs_s, r.syncs_s > 0 ? r.mean / 1e9 * r.syncs_s : 0);
        print_cpu(&r);
        printf("\n");
        snprintf(line, sizeof line, "**%s tx/s** = %.2f × limit (h) %s req/s, p50 %s, p99 %s; "
                 "%.1f tx per fdatasync",
                 si(b1, sizeof b1, r.items_s), health_rps > 0 ? r.items_s / health_rps : 0,
                 si(b4, sizeof b4, health_rps), ms(b2, sizeof b2, r.p50), ms(b3, sizeof b3, r.p99),
                 r.group);
        add_row("1-entry durable tx, 64 keep-alive connections", line, "≥ 50k tx/s",
                r.items_s >= 50000 ? "yes" : "no");
        for (int i = 0; i < CONNS; i++)
            free_http_worker(&g_w1[i], 1);
    }

    /* ---- 2: 1000-entry writes over a few connections ---- */
    if (ph[2]) {
        static const int nconn[] = { 2, 4, 8 };
        const char *only_bin = getenv("BENCH_ONLY_BIN");
        printf("2. Batched writes, %d entries per POST /set (~%zu KB body), one durable "
               "transaction each\n",
               BATCH, (size_t)(BATCH * (32 + KEY_LEN + VAL_LEN)) / 1024);
        for (size_t c = 0; c < 2 * sizeof nconn / sizeof nconn[0]; c++) {
            int n = nconn[c % 3], bin = c >= 3;
            if (only_bin && !bin)
                continue;
            if (c == 3)
                printf("  The same entries as binary batches (Content-Type: "
                       "application/vnd.tally.batch, ~%zu KB body):\n",
                       (size_t)(BATCH * (20 + KEY_LEN + VAL_LEN)) / 1024);
            progress("phase 2: %d connections x %d entries (%s), %.0f s", n, BATCH,
                     bin ? "binary" : "JSON", secs);
            worker *ws = calloc((size_t)n, sizeof *ws);
            if (!ws)
                die("out of memory");
            for (int i = 0; i < n; i++)
                init_http_worker(&ws[i], i, bin ? W_SETBIN : W_SETN, 20 + n + 10 * bin, BATCH);
            char tag[32];
            snprintf(tag, sizeof tag, "batch-%s-%dconn", bin ? "bin" : "json", n);
            result r = run(ws, n, secs, BATCH, tag);
            printf("  %d connections: %s entries/s (%.0f requests/s, %" PRIu64 " entries in "
                   "%.1f s); request latency p50 %s, p99 %s; %.2f tx per fdatasync, "
                   "fdatasync %.2f ms\n",
                   n, si(b1, sizeof b1, r.items_s), r.ops_s, r.ops * BATCH, r.secs,
                   ms(b2, sizeof b2, r.p50), ms(b3, sizeof b3, r.p99), r.group, r.sync_ms);
            print_cpu(&r);
            snprintf(line, sizeof line, "**%s entries/s**, p50 %s per request",
                     si(b1, sizeof b1, r.items_s), ms(b2, sizeof b2, r.p50));
            char what[120];
            snprintf(what, sizeof what, "Batched writes, 1000 entries/request (%s), %d connections",
                     bin ? "binary batch" : "JSON", n);
            add_row(what, line, "≥ 1M entries/s", r.items_s >= 1e6 ? "yes" : "no");
            for (int i = 0; i < n; i++)
                free_http_worker(&ws[i], 0);
            free(ws);
        }
        printf("\n");
    }

    /* ---- 3: verified and plain reads through tally_client ---- */
    if (ph[3]) {
        static worker wr[CONNS];
        uint64_t nkeys = 0;
        for (int i = 0; i < CONNS; i++)
            nkeys += g_w1[i].ctr;
        printf("3. Reads through the verifying client (tally_client, %d clients, 1 thread "
               "each), random keys among the %" PRIu64 " written in 1, latest version\n",
               CONNS, nkeys);
        static const struct { int kind; int shared, per; const char *name, *tag; } rd[] = {
            { W_VGET, 0, 1, "tally_client_verified_get, all proofs checked, own state dir per client", "vget-own" },
            { W_VGET, 1, 1, "tally_client_verified_get, all proofs checked, ONE shared state dir", "vget-shared" },
            { W_GET, 0, 1, "tally_client_get (unverified), for comparison", "get" },
            { W_VGETN, 0, 10, "tally_client_verified_get_many, 10 keys per request, all proofs checked, own state dir per client", "vgetmany10" },
            { W_VGETN, 0, GETMANY, "tally_client_verified_get_many, 100 keys per request, all proofs checked, own state dir per client", "vgetmany100" },
        };
        for (size_t k = 0; k < sizeof rd / sizeof rd[0]; k++) {
            progress("phase 3: %s, %.0f s", rd[k].name, secs);
            for (int i = 0; i < CONNS; i++) {
                char sd[700];
                snprintf(sd, sizeof sd, "%s/state-%s/%02d", g_tmp, rd[k].tag,
                         rd[k].shared ? 0 : i);
                init_client_worker(&wr[i], i, rd[k].kind, sd);
                wr[i].nkeys = (size_t)rd[k].per;
            }
            int per = rd[k].per;
            result r = run(wr, CONNS, secs, per, rd[k].tag);
            printf("  %s:\n    %s reads/s (%" PRIu64 " reads); latency p50 %s, p99 %s, mean %s"
                   "%s\n", rd[k].name, si(b1, sizeof b1, r.items_s), r.ops * (uint64_t)per,
                   ms(b2, sizeof b2, r.p50), ms(b3, sizeof b3, r.p99), ms(b4, sizeof b4, r.mean),
                   per > 1 ? " per request" : "");
            print_cpu(&r);
            snprintf(line, sizeof line, "**%s reads/s**, p50 %s, p99 %s%s",
                     si(b1, sizeof b1, r.items_s), ms(b2, sizeof b2, r.p50),
                     ms(b3, sizeof b3, r.p99), per > 1 ? " per request" : "");
            char what[200];
            snprintf(what, sizeof what, "%s, 64 clients",
                     k == 0 ? "Verified get (client checks every proof), own state dir each"
                     : k == 1 ? "Verified get, one shared state dir (flock per call)"
                     : k == 2 ? "Plain get (unverified), same client"
                     : per == 10 ? "Batched verified get, 10 keys per request (client checks "
                                   "every proof of every key)"
                              : "Batched verified get, 100 keys per request (client checks "
                                "every proof of every key)");
            int goal = rd[k].kind != W_GET;
            add_row(what, line, goal ? "≥ 100k/s" : "—",
                    goal ? (r.items_s >= 1e5 ? "yes" : "no") : "");
            for (int i = 0; i < CONNS; i++)
                tally_client_close(wr[i].cl);
        }
        printf("\n");
    }

    if (g_tallyd > 0) {
        metrics m = get_metrics();
        printf("tallyd totals: %.0f commits, %.0f fdatasyncs (%.1f tx per fdatasync overall)\n\n",
               m.commits, m.syncs, m.syncs > 0 ? m.commits / m.syncs : 0);
        stop_tallyd();
        progress("tallyd stopped");
    }

    /* ---- 4: PostgreSQL, hash-chained append-only table ---- */
    double pg_tps = -1, pg_plain = -1;
    if (ph[4]) {
        progress("phase 4: %s", pg_script);
        printf("4. PostgreSQL: append-only table with a SHA-256 hash chain (QLDB migration "
               "shape), %d connections, one row per synchronous commit (tallyd stopped)\n",
               CONNS);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "'%s' -c %d -j 2 -T %d 2>&1", pg_script,
                 CONNS, (int)(secs + 0.5));
        FILE *p = popen(cmd, "r");
        char l[1024];
        while (p && fgets(l, sizeof l, p)) {
            printf("  %s", l);
            if (!strncmp(l, "PG_TPS=", 7) && strcmp(l + 7, "skipped\n"))
                pg_tps = atof(l + 7);
            if (!strncmp(l, "PG_PLAIN_TPS=", 13))
                pg_plain = atof(l + 13);
        }
        int st = p ? pclose(p) : -1;
        if (pg_tps <= 0)
            printf("  PostgreSQL comparison not measured (exit status %d)\n", st);
        printf("\n");
        if (pg_tps > 0) {
            snprintf(line, sizeof line, "%.0f tps hash-chained%s", pg_tps, "");
            if (pg_plain > 0)
                snprintf(line + strlen(line), sizeof line - strlen(line),
                         " (%.0f tps without the chain)", pg_plain);
            add_row("PostgreSQL, hash-chained append-only table, 64 connections, "
                    "synchronous commit (pgbench)", line, "", "");
            if (tally_tps > 0) {
                snprintf(line, sizeof line, "**%.0f×** (%s tx/s ÷ %.0f tps)", tally_tps / pg_tps,
                         si(b1, sizeof b1, tally_tps), pg_tps);
                add_row("Tally 1-entry tx/s ÷ PostgreSQL hash-chained tps", line, "≥ 30×",
                        tally_tps / pg_tps >= 30 ? "yes" : "no");
            }
        }
    }

    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("## Results (Markdown, for docs/PERFORMANCE.md)\n\n");
    printf("Loopback HTTP on one %ld-core machine: the load generator shares the cores with "
           "tallyd. %.0f s per run.\n\n", nc, secs);
    printf("| Benchmark | Result | Goal | Met |\n|---|---|---|---|\n");
    for (int i = 0; i < g_nrows; i++)
        printf("| %s | %s | %s | %s |\n", g_rows[i].what, g_rows[i].result, g_rows[i].goal,
               g_rows[i].met);
    rm_tree(g_tmp);
    curl_global_cleanup();
    return 0;
}
