/*
** http.c — tallyd's HTTP layer on libmicrohttpd: the daemon, request bodies,
** the route table, authentication and role checks, and JSON responses.
**
** Event loops, not a thread per connection: MHD runs cfg.threads poll()
** loops (default: one per CPU) that parse requests and run the fast
** handlers. A write never blocks a loop: the handler suspends its connection
** and queues the transaction with tally_commit_async; its completion (on the
** ledger's completion thread) resumes it after the group's fdatasync, and the loop then sends
** the answer. Thousands of transactions are thus in flight (one group commit)
** with a handful of threads. Slow handlers (scrypt logins, administrative
** changes, del's read-check-commit loop) run on a pool of SRV_WORKERS
** threads, their connection suspended meanwhile, so they never stall a loop.
**
** A request runs in steps of MHD's access callback: (0) MHD's URI log
** callback, on the raw request line, allocates r and notes an encoded NUL in
** the path; (1) first call: framing (Content-Length, Transfer-Encoding), route,
** authenticate, authorize, check Content-Length — every refusal is queued
** here, before any body byte is read; (2) body chunks are appended (at most
** SRV_BODY_BYTES_MAX); (3) the last call runs the handler (or hands the
** request to the pool); (4) after a suspension, the call that follows the
** resume runs r->cont, which queues the response.
**
** Invariants:
**   (1) a handler runs only after the route's role check passed;
**   (2) every request ends in exactly one queued response, counted once in
**       the metrics by the completion callback;
**   (3) a body is never larger than SRV_BODY_BYTES_MAX bytes in memory;
**   (4) a suspended connection is resumed exactly once, by the party that
**       owns it meanwhile (commit completion or pool worker), after it set
**       r->cont; s->inflight counts suspended requests, and http_stop stops
**       the daemon only once it is 0 (a resume never reaches a freed daemon);
**   (5) the request is suspended BEFORE the transaction is queued: its
**       completion may run before tally_commit_async returns;
**   (6) a ledger is opened (lazily, on its first request) on the worker pool,
**       never on an event loop; the handler then runs as it would have;
**   (7) a request whose framing is ambiguous (two Content-Length headers,
**       Content-Length with Transfer-Encoding) or unsupported (a transfer
**       coding other than chunked), or whose path holds %00, is refused on
**       the first call, before its body; what libmicrohttpd refuses itself
**       (malformed request line or headers, headers over its memory pool,
**       another HTTP version) never reaches tallyd (docs/API.md lists it);
**   (8) no client address holds more than cfg.per_ip_max connections, and a
**       connection silent for cfg.idle_timeout_s is closed (MHD's per-IP
**       limit and inactivity timeout; a suspended request is not silent:
**       MHD restarts its clock on resume);
**   (9) a request is received and answered within cfg.request_timeout_s of
**       its connection becoming ready for it (accepted, or the previous
**       answer completed), not counting the time it is suspended (the
**       server's own work), or the sweeper shuts the socket down
**       (shutdown(2), never close: MHD still owns the descriptor and closes
**       it; a connection leaves s->conns, under conns_mu, before MHD closes
**       it, so the sweeper never touches a reused descriptor). This bounds
**       what the idle timeout cannot: a client that trickles one byte at a
**       time, or reads an answer that slowly. A request other than GET/HEAD
**       is exempt from the moment it has arrived whole until it completes:
**       it may have written, and a client (libcurl) resends a request whose
**       reused connection died before any answer, so resetting it could
**       write it twice;
**  (10) a GET/HEAD that waited on the worker pool is dropped, not run, when
**       its client has meanwhile closed the connection (FIN or reset seen
**       on the socket): a large answer is not built for nobody.
*/
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"

#define SCOPE_PUBLIC 0 /* no token */
#define SCOPE_USER   1 /* any valid token */
#define SCOPE_LEDGER 2 /* token + role on the ledger of the path */

typedef struct srv_route {
    const char *method;
    int scope;
    const char *path; /* global: full path; ledger: after "/v1/ledgers/L" ("#" = a number) */
    int role;         /* needed for SCOPE_LEDGER */
    srv_handler fn;
    int slow;         /* 1: runs on the worker pool (may block for long) */
    uint32_t body_max; /* request body bytes it accepts; beyond: 413 */
} srv_route;

#define SLOW 1 /* in the route table */
#define BIG SRV_BODY_BYTES_MAX       /* batches: set, verified/set, verified/getmany */
#define SMALL SRV_SMALL_BODY_BYTES_MAX /* every other route */

/* The route table: dispatch comes from this data only. */
static const srv_route routes[] = {
    { "GET", SCOPE_PUBLIC, "/health", 0, h_health, 0, SMALL },
    { "GET", SCOPE_PUBLIC, "/metrics", 0, h_metrics, 0, SMALL },
    { "GET", SCOPE_PUBLIC, "/v1/server", 0, h_server, 0, SMALL },
    { "POST", SCOPE_PUBLIC, "/v1/login", 0, h_login, SLOW, SMALL },
    { "POST", SCOPE_USER, "/v1/logout", 0, h_logout, SLOW, SMALL },
    { "GET", SCOPE_USER, "/v1/ledgers", 0, h_ledgers_list, 0, SMALL },
    { "POST", SCOPE_USER, "/v1/ledgers", 0, h_ledgers_create, SLOW, SMALL },
    { "POST", SCOPE_USER, "/v1/users", 0, h_users, SLOW, SMALL },
    { "GET", SCOPE_LEDGER, "", ROLE_READER, h_ledger_info, 0, SMALL },
    { "POST", SCOPE_LEDGER, "/set", ROLE_WRITER, h_set, 0, BIG },
    { "POST", SCOPE_LEDGER, "/del", ROLE_WRITER, h_del, SLOW, SMALL },
    { "GET", SCOPE_LEDGER, "/get", ROLE_READER, h_get, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/history", ROLE_READER, h_history, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/scan", ROLE_READER, h_scan, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/tx/#", ROLE_READER, h_tx, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/state", ROLE_READER, h_state, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/proof/inclusion", ROLE_READER, h_proof_inclusion, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/proof/consistency", ROLE_READER, h_proof_consistency, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/checkpoint", ROLE_READER, h_checkpoint, 0, SMALL },
    { "GET", SCOPE_LEDGER, "/verified/get", ROLE_READER, h_verified_get, 0, SMALL },
    { "POST", SCOPE_LEDGER, "/verified/set", ROLE_WRITER, h_verified_set, 0, BIG },
    { "GET", SCOPE_LEDGER, "/verified/tx/#", ROLE_READER, h_verified_tx, 0, SMALL },
    { "POST", SCOPE_LEDGER, "/verified/getmany", ROLE_READER, h_verified_getmany, 0, BIG }, /* pool if costly */
};
#define ROUTES_COUNT (sizeof routes / sizeof routes[0])

uint64_t srv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void srv_cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

void srv_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *mu, uint64_t ms)
{
    uint64_t until = srv_mono_ns() + ms * 1000000ull;
    struct timespec ts = { .tv_sec = (time_t)(until / 1000000000ull),
                           .tv_nsec = (long)(until % 1000000000ull) };
    pthread_cond_timedwait(c, mu, &ts);
}

/* ---- Errors ---- */
int srv_fail(srv_err *e, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->code = code;
    return status;
}

int srv_fail_engine(srv_err *e, int rc)
{
    int st = 500;
    const char *code = "io_error";
    switch (rc) {
    case TALLY_ENOTFOUND: case TALLY_ERANGE: st = 404; code = "not_found"; break;
    case TALLY_ECONFLICT: st = 409; code = "conflict"; break;
    case TALLY_ETOOBIG:   st = 413; code = "too_large"; break;
    case TALLY_EINVAL:    st = 400; code = "bad_request"; break;
    case TALLY_ECORRUPT: case TALLY_EBADPROOF: code = "integrity"; break;
    case TALLY_ENOMEM:    code = "internal"; break;
    default: break;
    }
    const char *m = tally_errmsg();
    if (!m || !*m)
        m = tally_strerror(rc);
    if (rc == TALLY_ECONFLICT && strncmp(m, "entry ", 6) == 0)
        return srv_fail(e, st, code, "precondition failed: %s", m);
    return srv_fail(e, st, code, "%s", m);
}

/* ---- Responses ---- */
static int queue_response(srv_req *r, unsigned status, const char *ctype, char *buf, size_t len)
{
    /* Large answers stay in memory until the client has read them: all of
    ** them together are bounded (a reader that asks and never reads must not
    ** pile up gigabytes). */
    if (len >= SRV_ANSWER_TRACKED_BYTES) {
        /* a share per user (by a hash of the name; no user: bucket 0), so one
        ** reader alone cannot take the whole budget from everyone else */
        unsigned b = 0;
        for (const char *p = r->user ? r->user->name : ""; *p; p++)
            b = b * 31u + (unsigned char)*p;
        b %= SRV_ANSWER_BUCKETS;
        uint64_t mine = atomic_fetch_add(&r->s->answer_user_bytes[b], len);
        uint64_t held = atomic_fetch_add(&r->s->answer_bytes, len);
        if (held + len > SRV_ANSWERS_BYTES_MAX || mine + len > SRV_ANSWERS_USER_BYTES_MAX) {
            atomic_fetch_sub(&r->s->answer_user_bytes[b], len);
            atomic_fetch_sub(&r->s->answer_bytes, len);
            free(buf);
            return http_errorf(r, 503, "busy", "answers waiting to be read hold %" PRIu64
                               " MiB already (%" PRIu64 " MiB for this user); try again",
                               held >> 20, mine >> 20);
        }
        r->answer_bytes = len;
        r->answer_bucket = b;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 405 && r->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ok;
}

int http_raw(srv_req *r, unsigned status, const char *ctype, char *buf, size_t len)
{
    if (!r->defer)
        return queue_response(r, status, ctype, buf, len);
    free(r->d_buf); /* a handler answers once; keep the last */
    r->d_status = status;
    r->d_ctype = ctype;
    r->d_buf = buf;
    r->d_len = len;
    return MHD_YES;
}

/* A continuation: queues the response stored while deferred. */
static int send_stored(srv_req *r)
{
    if (!r->d_status) /* the handler gave up (out of memory): drop the connection */
        return MHD_NO;
    char *buf = r->d_buf;
    r->d_buf = NULL;
    return queue_response(r, r->d_status, r->d_ctype, buf, r->d_len);
}

int http_json(srv_req *r, unsigned status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text)
        return http_errorf(r, 500, "internal", "out of memory building the response");
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves a NUL we may overwrite: not sent as a C string */
    return http_raw(r, status, "application/json", text, n + 1);
}

int http_error(srv_req *r, const srv_err *e)
{
    const char *msg = srv_utf8_valid(e->msg, strlen(e->msg)) ? e->msg : "(message not UTF-8)";
    char *text = NULL;
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", e->code, "message", msg);
    if (j)
        text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return MHD_NO;
    size_t n = strlen(text);
    text[n] = '\n';
    return http_raw(r, (unsigned)e->status, "application/json", text, n + 1);
}

int http_errorf(srv_req *r, int status, const char *code, const char *fmt, ...)
{
    srv_err e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    e.status = status;
    e.code = code;
    return http_error(r, &e);
}

int http_engine_error(srv_req *r, int rc)
{
    srv_err e;
    srv_fail_engine(&e, rc);
    return http_error(r, &e);
}

/* ---- Query arguments ---- */
const char *http_arg(srv_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_arg_u64(srv_req *r, const char *name, uint64_t *out)
{
    const char *v = http_arg(r, name);
    if (!v)
        return 0;
    return srv_parse_u64(v, out) == 0 ? 1 : -1;
}

int http_arg_bytes(srv_req *r, const char *name, const uint8_t **p, size_t *len,
                   uint8_t **owned)
{
    char hname[64];
    snprintf(hname, sizeof hname, "%s_hex", name);
    const char *v = NULL, *h = NULL;
    size_t vlen = 0, hlen = 0;
    MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &vlen);
    MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, hname, strlen(hname), &h,
                                  &hlen);
    *p = NULL;
    *len = 0;
    *owned = NULL;
    if (v && h)
        return -1;
    if (v) {
        *p = (const uint8_t *)v;
        *len = vlen;
        return 1;
    }
    if (!h)
        return 0;
    uint8_t *buf = malloc(hlen / 2 + 1);
    if (!buf || srv_unhex(h, hlen, buf) < 0) {
        free(buf);
        return -1;
    }
    *p = *owned = buf;
    *len = hlen / 2;
    return 1;
}

int http_body_is_binary(srv_req *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen(SRV_BINARY_CTYPE);
    return ct && strncasecmp(ct, SRV_BINARY_CTYPE, n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

int http_accepts_bundles(srv_req *r)
{
    const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    size_t tl = strlen(SRV_BUNDLES_CTYPE);
    /* Accept: a comma-separated list of "type/subtype; params"; ours must be
    ** named exactly, and not with q=0 ("not acceptable"). */
    while (a && *a) {
        a += strspn(a, " \t,");
        size_t n = strcspn(a, ",");
        if (n >= tl && strncasecmp(a, SRV_BUNDLES_CTYPE, tl) == 0 &&
            (n == tl || a[tl] == ';' || a[tl] == ' ' || a[tl] == '\t')) {
            int q0 = 0;
            for (const char *p = a + tl; p < a + n; p++)
                if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=' && (p[-1] == ';' ||
                                                                    p[-1] == ' ')) {
                    char *end;
                    double q = strtod(p + 2, &end);
                    q0 = end != p + 2 && q <= 0.0;
                }
            return !q0;
        }
        a += n;
    }
    return 0;
}

json_t *http_body_json(srv_req *r, int *mhd_result)
{
    json_error_t jerr;
    /* A key twice is refused, not "the last one wins": a condition or a name
    ** that a proxy or an audit log read from the first copy must not be
    ** silently replaced by the second. */
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len,
                           JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        *mhd_result = http_errorf(r, 400, "bad_request", "malformed JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *mhd_result = http_errorf(r, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- Suspension: async commits and the worker pool ---- */
static void suspend(srv_req *r)
{
    atomic_fetch_add(&r->s->inflight, 1);
    /* the server's own time does not count against the deadline; an exempt
    ** request (a write, invariant 9) has no deadline to move */
    if (r->sc && !atomic_load(&r->sc->exempt))
        atomic_store(&r->sc->suspended_ns, srv_mono_ns());
    MHD_suspend_connection(r->conn);
}

/* The owner of a suspended r hands it back to its event loop (invariant 4). */
static void resume(srv_req *r)
{
    tallyd *s = r->s; /* r may be gone once resumed */
    uint64_t since = r->sc ? atomic_load(&r->sc->suspended_ns) : 0;
    if (since) { /* the deadline moves by the time suspended, then the sweeper sees it */
        atomic_fetch_add(&r->sc->ready_ns, srv_mono_ns() - since);
        atomic_store(&r->sc->suspended_ns, 0);
    }
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&s->inflight, 1);
}

/* tally_commit_async's completion, on the ledger's completion thread: record
** the outcome and resume. */
static void commit_done(void *ctx, int rc, uint64_t tx)
{
    srv_req *r = ctx;
    r->commit_rc = rc;
    r->commit_tx = tx;
    resume(r);
}

int http_commit_async(srv_req *r, const tally_entry *e, size_t n, const void *meta,
                      size_t meta_len, int (*cont)(srv_req *r))
{
    r->cont = cont;
    suspend(r); /* before queueing: the completion may come first (invariant 5) */
    int rc = tally_commit_async(r->db, e, n, meta, meta_len, commit_done, r);
    if (rc != TALLY_OK) { /* refused at once: answer now (the message is this thread's) */
        r->defer = 1;
        http_engine_error(r, rc);
        r->defer = 0;
        r->cont = send_stored;
        resume(r);
    }
    return MHD_YES;
}

int http_commit_failed(srv_req *r)
{
    srv_err e;
    srv_fail_engine(&e, r->commit_rc);
    snprintf(e.msg, sizeof e.msg, "the transaction was not acknowledged: %s (the ledger "
             "refuses writes until tallyd is restarted, which recovers it from its log)",
             tally_strerror(r->commit_rc));
    return http_error(r, &e);
}

static int run_route(srv_req *r);

/* GET and HEAD change nothing: they may be dropped or reset at any point. */
static int req_is_read(const srv_req *r)
{
    return r->method && (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0);
}

/* 1 if r's client has closed the connection (an orderly FIN with no bytes
** pending, or a reset) while its request waited for the server. */
static int client_gone(const srv_req *r)
{
    char c;
    if (!r->sc)
        return 0;
    ssize_t n = recv(r->sc->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void *pool_main(void *arg)
{
    tallyd *s = arg;
    pthread_setname_np(pthread_self(), "tallyd-pool");
    pthread_mutex_lock(&s->pool_mu);
    for (;;) {
        while (!s->pool_head && !s->pool_stop)
            pthread_cond_wait(&s->pool_cond, &s->pool_mu);
        srv_req *r = s->pool_head;
        if (!r)
            break;
        if (!(s->pool_head = r->pool_next))
            s->pool_tail = NULL;
        pthread_mutex_unlock(&s->pool_mu);
        r->defer = 1;
        if (req_is_read(r) && client_gone(r)) { /* invariant 10 */
            atomic_fetch_add(&s->dropped_gone, 1);
            r->cont = send_stored; /* nothing stored: the connection is dropped */
        } else if (r->lg && !r->db) { /* the ledger's first use: open it here, not on a loop */
            int rc = reg_acquire(r->s, r->lg, &r->db); /* held until on_completed */
            if (rc != TALLY_OK)
                http_engine_error(r, rc); /* stored */
            r->cont = rc == TALLY_OK ? run_route : send_stored;
        } else {
            r->rt->fn(r); /* its response is stored in r->d_* */
            r->cont = send_stored;
        }
        r->defer = 0;
        resume(r);
        pthread_mutex_lock(&s->pool_mu);
    }
    pthread_mutex_unlock(&s->pool_mu);
    return NULL;
}

static int pool_submit(srv_req *r)
{
    tallyd *s = r->s;
    suspend(r);
    r->pool_next = NULL;
    pthread_mutex_lock(&s->pool_mu);
    if (s->pool_tail)
        s->pool_tail->pool_next = r;
    else
        s->pool_head = r;
    s->pool_tail = r;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_mu);
    return MHD_YES;
}

int http_to_pool(srv_req *r)
{
    return pool_submit(r);
}

static int pool_start(tallyd *s)
{
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    for (unsigned i = 0; i < SRV_WORKERS; i++) {
        if (pthread_create(&s->pool[i], NULL, pool_main, s) != 0)
            return -1;
        s->pool_started++;
    }
    return 0;
}

static void pool_stop(tallyd *s)
{
    if (!s->pool_started)
        return;
    pthread_mutex_lock(&s->pool_mu);
    s->pool_stop = 1;
    pthread_cond_broadcast(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_mu);
    for (unsigned i = 0; i < s->pool_started; i++)
        pthread_join(s->pool[i], NULL);
    s->pool_started = 0;
}

/* ---- Routing ---- */
/* Matches a ledger route's path pattern against rest. Returns 1 (r->path_n
** filled for a "#"), 0 (another path), or -1: the pattern's path with a last
** segment that is not a decimal number (".../tx/abc", ".../tx/"). */
static int pattern_match(const char *pat, const char *rest, srv_req *r)
{
    const char *hash = strchr(pat, '#');
    if (!hash)
        return strcmp(pat, rest) == 0;
    size_t pre = (size_t)(hash - pat);
    if (strncmp(pat, rest, pre) != 0 || strchr(rest + pre, '/'))
        return 0;
    return srv_parse_u64(rest + pre, &r->path_n) == 0 ? 1 : -1;
}

/* Finds the route of (method, url); HEAD is served by the GET route (MHD
** sends the headers only). Returns the route, or NULL with *status 404 (no
** such path), 400 (a route's path whose number is malformed) or 405 (path
** known, other method: r->allow names the methods it takes). The ledger
** name of a ledger route is copied to ledger. */
static const srv_route *route_find(srv_req *r, const char *method, const char *url,
                                   char ledger[SRV_NAME_LEN_MAX + 1], int *status)
{
    const char *rest = NULL;
    const char *pfx = "/v1/ledgers/";
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
    unsigned allow = 0; /* 1: GET (and HEAD), 2: POST */
    *status = 404;
    if (strncmp(url, pfx, strlen(pfx)) == 0) {
        const char *name = url + strlen(pfx);
        size_t n = strcspn(name, "/");
        if (n == 0 || n > SRV_NAME_LEN_MAX)
            return NULL;
        memcpy(ledger, name, n);
        ledger[n] = '\0';
        rest = name + n;
    }
    for (size_t i = 0; i < ROUTES_COUNT; i++) {
        const srv_route *rt = &routes[i];
        int match = rt->scope == SCOPE_LEDGER ? (rest ? pattern_match(rt->path, rest, r) : 0)
                                              : !rest && strcmp(rt->path, url) == 0;
        if (!match)
            continue;
        if (strcmp(rt->method, want) == 0) {
            if (match > 0)
                return rt;
            *status = 400;
            return NULL;
        }
        allow |= strcmp(rt->method, "GET") == 0 ? 1u : 2u;
    }
    if (allow) {
        *status = 405;
        r->allow = allow == 1 ? "GET, HEAD" : allow == 2 ? "POST" : "GET, HEAD, POST";
    }
    return NULL;
}

/* Authenticates and authorizes r for its route. Returns 0, or queues the
** refusal and returns 1 (with the MHD result in *res). */
static int admit(srv_req *r, const char *ledger, int *res)
{
    if (r->rt->scope == SCOPE_PUBLIC)
        return 0;
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) /* the scheme: any case (RFC 7235) */
        r->user = auth_token(r->s, auth + 7);
    if (!r->user) {
        *res = http_errorf(r, 401, "unauthorized", "no, unknown or expired token");
        return 1;
    }
    if (r->rt->scope == SCOPE_USER)
        return 0;
    if (!srv_name_valid(ledger) || !(r->lg = reg_find(r->s, ledger))) {
        *res = http_errorf(r, 404, "not_found", "no ledger '%s'", ledger);
        return 1;
    }
    r->role = auth_role(r->s, r->user->name, r->lg->name);
    if (r->role == ROLE_NONE) { /* as if absent: a ledger's existence is not disclosed */
        *res = http_errorf(r, 404, "not_found", "no ledger '%s'", ledger);
        r->lg = NULL;
        return 1;
    }
    if (!role_allows(r->role, r->rt->role)) {
        *res = http_errorf(r, 403, "forbidden", "user '%s' may not %s on ledger '%s'",
                           r->user->name, role_name(r->rt->role)[0] == 'w' ? "write" : "read",
                           r->lg->name);
        return 1;
    }
    /* an open ledger's handle now, held until the request completes; a
    ** closed one (or one being closed) is opened on the worker pool once the
    ** body is in (opening a large ledger takes a while) */
    r->db = reg_try_acquire(r->lg);
    return 0;
}

/* Counts the request headers named cls (an int array: [0] Content-Length,
** [1] Transfer-Encoding). */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    int *n = cls;
    n[0] += strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0;
    n[1] += strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0;
    return MHD_YES;
}

/* Refuses (queues the answer, returns 1 with *res) a request whose path
** holds %00 (MHD would unescape it and cut the path there) or whose body
** framing tallyd does not take: libmicrohttpd reads the first of two
** Content-Length headers, and waits forever for the end of a body in a
** transfer coding other than chunked. Returns 0 otherwise. */
static int framing_refused(srv_req *r, int *res)
{
    int n[2] = { 0, 0 };
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, n);
    const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (r->path_nul)
        *res = http_errorf(r, 400, "bad_request", "the path holds an encoded NUL (%%00)");
    else if (n[0] > 1)
        *res = http_errorf(r, 400, "bad_request", "more than one Content-Length header");
    else if (n[1] > 1 || (n[1] == 1 && n[0] == 1))
        *res = http_errorf(r, 400, "bad_request",
                           "Transfer-Encoding with Content-Length, or repeated");
    else if (te && strcasecmp(te, "chunked") != 0)
        *res = http_errorf(r, 501, "not_implemented",
                           "Transfer-Encoding other than chunked is not supported");
    else
        return 0;
    return 1;
}

typedef struct qnames {
    const char *names[SRV_QUERY_ARGS_MAX];
    unsigned n;
    const char *repeated; /* the first name seen twice, or NULL */
    int too_many;
} qnames;

static enum MHD_Result q_each(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value)
{
    (void)kind, (void)value;
    qnames *q = cls;
    for (unsigned i = 0; i < q->n; i++)
        if (strcmp(q->names[i], key) == 0) {
            q->repeated = q->names[i];
            return MHD_NO;
        }
    if (q->n == SRV_QUERY_ARGS_MAX) {
        q->too_many = 1;
        return MHD_NO;
    }
    q->names[q->n++] = key;
    return MHD_YES;
}

/* A query parameter given twice is refused (which one counts would be a
** guess a proxy or log could make differently), and so are more than
** SRV_QUERY_ARGS_MAX of them. 1 with the refusal queued, or 0. */
static int query_repeats(srv_req *r, int *res)
{
    qnames q = { .n = 0 };
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, q_each, &q);
    if (q.repeated)
        *res = http_errorf(r, 400, "bad_request", "query parameter \"%.64s\" given twice",
                           q.repeated);
    else if (q.too_many)
        *res = http_errorf(r, 400, "bad_request", "more than %u query parameters",
                           SRV_QUERY_ARGS_MAX);
    else
        return 0;
    return 1;
}

/* Step (1): framing, route, admit, check the announced body size. */
static int first_call(srv_req *r, const char *method, const char *url)
{
    char ledger[SRV_NAME_LEN_MAX + 1] = "";
    int status, res = MHD_YES;
    if (framing_refused(r, &res))
        return res;
    if (atomic_load(&r->s->stopping))
        return http_errorf(r, 503, "unavailable", "the server is shutting down");
    if (!(r->rt = route_find(r, method, url, ledger, &status)))
        return status == 405 ? http_errorf(r, 405, "method_not_allowed",
                                           "method %s not allowed here (allowed: %s)", method,
                                           r->allow)
               : status == 400 ? http_errorf(r, 400, "bad_request",
                                             "the transaction number in the path is not a "
                                             "decimal number")
                               : http_errorf(r, 404, "not_found", "no such endpoint");
    if (query_repeats(r, &res))
        return res;
    if (admit(r, ledger, &res))
        return res;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n;
    if (cl && srv_parse_u64(cl, &n) == 0 && n > r->rt->body_max)
        return http_errorf(r, 413, "too_large", "body over %u bytes", r->rt->body_max);
    if (cl && srv_parse_u64(cl, &n) == 0 && n > 0 && (r->body = malloc(n + 1)))
        r->body_cap = n + 1; /* one buffer of the announced size: no regrowth copies */
    return MHD_YES;
}

/* Step (2): appends a body chunk; beyond the limit the rest is discarded. */
static void append_body(srv_req *r, const char *data, size_t n)
{
    if (r->body_too_big || r->body_len + n > r->rt->body_max) {
        r->body_too_big = 1;
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            r->body_too_big = 1;
            return;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    srv_req *r = *con_cls;
    if (!r) { /* not allocated by on_uri (out of memory there) */
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        r->s = cls;
        r->start_ns = srv_mono_ns();
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->sc = ci ? ci->socket_context : NULL; /* for the deadline (invariant 9) */
    }
    if (!r->started) {
        r->started = 1;
        if (r->sc && r->sc->pending == r) /* from now on on_completed frees it */
            r->sc->pending = NULL;
        r->conn = conn;
        r->method = method;
        r->url = url;
        return (enum MHD_Result)first_call(r, method, url);
    }
    if (r->cont) { /* resumed after a suspension */
        int (*cont)(srv_req *) = r->cont;
        r->cont = NULL;
        return (enum MHD_Result)cont(r);
    }
    if (r->status) /* a refusal was queued on the first call */
        return MHD_YES;
    if (*upload_data_size > 0) {
        append_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->body_too_big)
        return (enum MHD_Result)http_errorf(r, 413, "too_large", "body over %u bytes",
                                            r->rt->body_max);
    if (r->sc && !req_is_read(r)) /* arrived whole: no reset until it completes (9) */
        atomic_store(&r->sc->exempt, 1);
    if (r->lg && !r->db)
        return (enum MHD_Result)pool_submit(r); /* opens it, then run_route */
    return (enum MHD_Result)run_route(r);
}

/* Runs r's handler: on the worker pool for slow routes, else right here (the
** event loop). Also the continuation after a ledger was opened on the pool. */
static int run_route(srv_req *r)
{
    return r->rt->slow ? pool_submit(r) : r->rt->fn(r);
}

/* Step (0), MHD's URI log callback: the request line is in, its headers
** not yet. Allocates the request (MHD keeps it as the request's context,
** and calls on_completed for it even when it refuses the request itself).
** uri is raw (not yet unescaped): an encoded NUL would cut the path there. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    srv_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->s = cls;
    r->start_ns = srv_mono_ns();
    for (const char *p = uri; *p && *p != '?'; p++)
        if (p[0] == '%' && p[1] == '0' && p[2] == '0')
            r->path_nul = 1;
    /* MHD may drop a request before its headers are in without calling
    ** on_completed (e.g. its memory pool overflows on a long query): the
    ** connection keeps the one not yet started, and frees it with the next
    ** request line or when the connection closes (on_connection). */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    srv_conn *sc = ci ? ci->socket_context : NULL;
    if (sc) {
        free(sc->pending);
        sc->pending = r;
        r->sc = sc;
    }
    return r;
}

/* MHD_OPTION_NOTIFY_CONNECTION: a connection's small context (srv_conn),
** linked into s->conns for the request deadline (invariant 9). MHD calls
** CLOSED before it closes the socket. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    tallyd *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_conn *sc = calloc(1, sizeof *sc); /* NULL: no tracking (no deadline), no harm */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (sc && ci) {
            sc->fd = ci->connect_fd;
            atomic_store(&sc->ready_ns, srv_mono_ns());
            pthread_mutex_lock(&s->conns_mu);
            sc->next = s->conns;
            if (s->conns)
                s->conns->prev = sc;
            s->conns = sc;
            pthread_mutex_unlock(&s->conns_mu);
        } else {
            free(sc);
            sc = NULL;
        }
        *socket_context = sc;
        return;
    }
    srv_conn *sc = *socket_context;
    if (sc) {
        pthread_mutex_lock(&s->conns_mu);
        if (sc->prev)
            sc->prev->next = sc->next;
        else
            s->conns = sc->next;
        if (sc->next)
            sc->next->prev = sc->prev;
        pthread_mutex_unlock(&s->conns_mu);
        free(sc->pending); /* a request MHD dropped before it started */
        free(sc);
    }
    *socket_context = NULL;
}

/* The sweeper (invariant 9): every SRV_SWEEP_MS, shuts down the sockets of
** connections whose request is overdue. At most SRV_CONNECTIONS_MAX to walk. */
static void *sweep_main(void *arg)
{
    tallyd *s = arg;
    pthread_setname_np(pthread_self(), "tallyd-sweep");
    uint64_t limit_ns = (uint64_t)(s->cfg.request_timeout_s ? s->cfg.request_timeout_s
                                                            : SRV_REQUEST_TIMEOUT_S_DEFAULT) *
                        1000000000ull;
    pthread_mutex_lock(&s->conns_mu);
    while (!s->sweeper_stop) {
        srv_cond_wait_ms(&s->conns_cond, &s->conns_mu, SRV_SWEEP_MS);
        unsigned closed = 0;
        for (srv_conn *sc = s->conns; sc && !s->sweeper_stop; sc = sc->next) {
            if (sc->shut || atomic_load(&sc->exempt) || atomic_load(&sc->suspended_ns))
                continue;
            /* the clock after ready_ns: an event loop may move ready_ns on
            ** meanwhile (it does not take conns_mu), never past this now */
            uint64_t ready = atomic_load(&sc->ready_ns), now = srv_mono_ns();
            if (now <= ready || now - ready <= limit_ns)
                continue;
            sc->shut = 1;
            /* linger 0: MHD's close resets the connection and drops what is
            ** still queued to a slow reader, instead of sending it on */
            struct linger lg0 = { .l_onoff = 1, .l_linger = 0 };
            setsockopt(sc->fd, SOL_SOCKET, SO_LINGER, &lg0, sizeof lg0);
            shutdown(sc->fd, SHUT_RDWR); /* MHD sees the socket fail and closes it */
            closed++;
        }
        pthread_mutex_unlock(&s->conns_mu); /* never log holding it: on_connection waits */
        if (closed) {
            atomic_fetch_add(&s->conns_timed_out, closed);
            if (s->cfg.verbose)
                fprintf(stderr, "tallyd: %u connection(s) over the request deadline (%u s): "
                                "closed\n", closed, (unsigned)(limit_ns / 1000000000ull));
        }
        pthread_mutex_lock(&s->conns_mu);
    }
    pthread_mutex_unlock(&s->conns_mu);
    return NULL;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    tallyd *s = cls;
    srv_req *r = *con_cls;
    if (!r)
        return;
    if (!r->started) { /* libmicrohttpd refused it, or the client left, before its headers */
        if (s->cfg.verbose)
            fprintf(stderr, "tallyd: a request ended before its headers were in (refused by "
                            "libmicrohttpd, or the client went away)\n");
        if (r->sc && r->sc->pending == r)
            r->sc->pending = NULL;
        free(r);
        *con_cls = NULL;
        return;
    }
    if (r->answer_bytes) { /* MHD has sent it, or dropped it with the connection */
        atomic_fetch_sub(&s->answer_bytes, r->answer_bytes);
        atomic_fetch_sub(&s->answer_user_bytes[r->answer_bucket], r->answer_bytes);
    }
    uint64_t now = srv_mono_ns(), dur = now - r->start_ns;
    if (r->sc) { /* the deadline of the connection's next request starts now */
        atomic_store(&r->sc->ready_ns, now);
        atomic_store(&r->sc->exempt, 0);
    }
    metrics_observe(r->status, dur);
    if (s->cfg.verbose)
        fprintf(stderr, "tallyd: %s %s %u %.3f ms%s\n", r->method, r->url, r->status,
                (double)dur / 1e6, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    free(r->body);
    free(r->d_buf);
    if (r->ctx_free)
        r->ctx_free(r->ctx);
    if (r->db) /* the handle admit or the pool acquired */
        reg_release(r->lg);
    free(r);
    *con_cls = NULL;
}

/* Resolves host:port into addr. Returns 0 or -1. */
static int resolve(const tallyd *s, struct sockaddr_storage *addr, char *err, size_t err_len)
{
    struct addrinfo hints, *ai = NULL;
    char port[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%u", (unsigned)s->cfg.port);
    int rc = getaddrinfo(s->cfg.host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, err_len, "cannot resolve %s: %s", s->cfg.host, gai_strerror(rc));
        return -1;
    }
    memset(addr, 0, sizeof *addr);
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

int http_start(tallyd *s, char *err, size_t err_len)
{
    struct sockaddr_storage addr;
    if (resolve(s, &addr, err, err_len) < 0)
        return -1;
    /* poll() loops, not select() (1000 open ledgers push descriptors past
    ** FD_SETSIZE) and not epoll: MHD takes a suspended connection out of the
    ** epoll set and puts it back on resume, two epoll_ctl calls per write.
    ** Measured with 64 connections of 1-entry writes: poll 35k tx/s at 30 us
    ** of tallyd CPU per tx, epoll 30k tx/s at 35 us (docs/PERFORMANCE.md). */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = s->cfg.threads ? s->cfg.threads : ncpu > 0 ? (unsigned)ncpu : 1u;
    if (threads > SRV_EVENT_THREADS_MAX)
        threads = SRV_EVENT_THREADS_MAX;
    if (pool_start(s) < 0) {
        snprintf(err, err_len, "cannot start the worker threads");
        return -1;
    }
    pthread_mutex_init(&s->conns_mu, NULL);
    srv_cond_init_mono(&s->conns_cond);
    s->conns_init = 1;
    if (pthread_create(&s->sweeper, NULL, sweep_main, s) != 0) {
        snprintf(err, err_len, "cannot start the request-deadline thread");
        return -1;
    }
    s->sweeper_started = 1;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (s->tls_cert)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem pool[] = {
        { MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL },
        { MHD_OPTION_END, 0, NULL },
    };
    struct MHD_OptionItem tls[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
        { MHD_OPTION_END, 0, NULL },
    };
    s->mhd = MHD_start_daemon(
        flags, s->cfg.port, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SRV_CONNECTIONS_MAX,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.per_ip_max,
        MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_timeout_s ? s->cfg.idle_timeout_s
                                                             : SRV_IDLE_TIMEOUT_S_DEFAULT,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_ARRAY, threads > 1 ? pool : pool + 1, /* a pool of 1 (or 0) warns */
        MHD_OPTION_ARRAY, s->tls_cert ? tls : tls + 2,
        MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, err_len, "cannot listen on %s:%u", s->cfg.host, (unsigned)s->cfg.port);
        return -1;
    }
    return 0;
}

uint16_t http_port(tallyd *s)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : s->cfg.port;
}

void http_stop(tallyd *s)
{
    if (s->mhd) {
        /* Refuse new requests, let the suspended ones finish (invariant 4):
        ** commits complete within a group commit, pool work within seconds. */
        atomic_store(&s->stopping, 1);
        for (unsigned ms = 0; atomic_load(&s->inflight) > 0; ms++) {
            if (ms && ms % SRV_DRAIN_MS_MAX == 0)
                fprintf(stderr, "tallyd: still waiting for %d suspended requests\n",
                        atomic_load(&s->inflight));
            usleep(1000);
        }
        MHD_stop_daemon(s->mhd);
    }
    s->mhd = NULL;
    srv_thread_stop(&s->conns_mu, &s->conns_cond, &s->sweeper_stop, s->sweeper,
                    &s->sweeper_started);
    if (s->conns_init) {
        pthread_mutex_destroy(&s->conns_mu);
        pthread_cond_destroy(&s->conns_cond);
        s->conns_init = 0;
    }
    pool_stop(s);
}
