/*
** http.c — tallyd's HTTP layer on libmicrohttpd: the daemon, request bodies,
** the route table, authentication and role checks, and JSON responses.
**
** One thread per connection (MHD_USE_THREAD_PER_CONNECTION): a handler may
** block in tally_commit, and the commits of many connections then share one
** fdatasync (group commit). A request runs in three steps of MHD's access
** callback: (1) first call: route, authenticate, authorize, check
** Content-Length — every refusal is queued here, before any body byte is
** read; (2) body chunks are appended (at most SRV_BODY_BYTES_MAX); (3) the
** last call runs the handler.
**
** Invariants:
**   (1) a handler runs only after the route's role check passed;
**   (2) every request ends in exactly one queued response, counted once in
**       the metrics by the completion callback;
**   (3) a body is never larger than SRV_BODY_BYTES_MAX bytes in memory.
*/
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

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
} srv_route;

/* The route table: dispatch comes from this data only. */
static const srv_route routes[] = {
    { "GET", SCOPE_PUBLIC, "/health", 0, h_health },
    { "GET", SCOPE_PUBLIC, "/metrics", 0, h_metrics },
    { "GET", SCOPE_PUBLIC, "/v1/server", 0, h_server },
    { "POST", SCOPE_PUBLIC, "/v1/login", 0, h_login },
    { "GET", SCOPE_USER, "/v1/ledgers", 0, h_ledgers_list },
    { "POST", SCOPE_USER, "/v1/ledgers", 0, h_ledgers_create },
    { "POST", SCOPE_USER, "/v1/users", 0, h_users },
    { "GET", SCOPE_LEDGER, "", ROLE_READER, h_ledger_info },
    { "POST", SCOPE_LEDGER, "/set", ROLE_WRITER, h_set },
    { "POST", SCOPE_LEDGER, "/del", ROLE_WRITER, h_del },
    { "GET", SCOPE_LEDGER, "/get", ROLE_READER, h_get },
    { "GET", SCOPE_LEDGER, "/history", ROLE_READER, h_history },
    { "GET", SCOPE_LEDGER, "/scan", ROLE_READER, h_scan },
    { "GET", SCOPE_LEDGER, "/tx/#", ROLE_READER, h_tx },
    { "GET", SCOPE_LEDGER, "/state", ROLE_READER, h_state },
    { "GET", SCOPE_LEDGER, "/proof/inclusion", ROLE_READER, h_proof_inclusion },
    { "GET", SCOPE_LEDGER, "/proof/consistency", ROLE_READER, h_proof_consistency },
    { "GET", SCOPE_LEDGER, "/checkpoint", ROLE_READER, h_checkpoint },
    { "GET", SCOPE_LEDGER, "/verified/get", ROLE_READER, h_verified_get },
    { "POST", SCOPE_LEDGER, "/verified/set", ROLE_WRITER, h_verified_set },
    { "GET", SCOPE_LEDGER, "/verified/tx/#", ROLE_READER, h_verified_tx },
};
#define ROUTES_COUNT (sizeof routes / sizeof routes[0])

uint64_t srv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
int http_raw(srv_req *r, unsigned status, const char *ctype, char *buf, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ok;
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

json_t *http_body_json(srv_req *r, int *mhd_result)
{
    json_error_t jerr;
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, JSON_ALLOW_NUL, &jerr);
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

/* ---- Routing ---- */
/* Matches a ledger route's path pattern against rest; fills r->path_n. */
static int pattern_match(const char *pat, const char *rest, srv_req *r)
{
    const char *hash = strchr(pat, '#');
    if (!hash)
        return strcmp(pat, rest) == 0;
    size_t pre = (size_t)(hash - pat);
    return strncmp(pat, rest, pre) == 0 && srv_parse_u64(rest + pre, &r->path_n) == 0;
}

/* Finds the route of (method, url). Returns the route, or NULL with
** *status 404 (no such path) or 405 (path known, other method). The ledger
** name of a ledger route is copied to ledger. */
static const srv_route *route_find(srv_req *r, const char *method, const char *url,
                                   char ledger[SRV_NAME_LEN_MAX + 1], int *status)
{
    const char *rest = NULL;
    const char *pfx = "/v1/ledgers/";
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
        int match = rt->scope == SCOPE_LEDGER ? rest && pattern_match(rt->path, rest, r)
                                              : !rest && strcmp(rt->path, url) == 0;
        if (!match)
            continue;
        if (strcmp(rt->method, method) == 0)
            return rt;
        *status = 405;
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
    if (auth && strncmp(auth, "Bearer ", 7) == 0)
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
    if (!role_allows(r->role, r->rt->role)) {
        *res = http_errorf(r, 403, "forbidden", "user '%s' may not %s on ledger '%s'",
                           r->user->name, role_name(r->rt->role)[0] == 'w' ? "write" : "read",
                           r->lg->name);
        return 1;
    }
    int rc = reg_db(r->s, r->lg, &r->db);
    if (rc != TALLY_OK) {
        *res = http_engine_error(r, rc);
        return 1;
    }
    return 0;
}

/* Step (1): route, admit, check the announced body size. */
static int first_call(srv_req *r, const char *method, const char *url)
{
    char ledger[SRV_NAME_LEN_MAX + 1] = "";
    int status, res = MHD_YES;
    if (!(r->rt = route_find(r, method, url, ledger, &status)))
        return status == 405 ? http_errorf(r, 405, "bad_request", "method %s not allowed", method)
                             : http_errorf(r, 404, "not_found", "no such endpoint");
    if (admit(r, ledger, &res))
        return res;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n;
    if (cl && srv_parse_u64(cl, &n) == 0 && n > SRV_BODY_BYTES_MAX)
        return http_errorf(r, 413, "too_large", "body over %u bytes", SRV_BODY_BYTES_MAX);
    return MHD_YES;
}

/* Step (2): appends a body chunk; beyond the limit the rest is discarded. */
static void append_body(srv_req *r, const char *data, size_t n)
{
    if (r->body_too_big || r->body_len + n > SRV_BODY_BYTES_MAX) {
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
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        r->s = cls;
        r->conn = conn;
        r->method = method;
        r->url = url;
        r->start_ns = srv_mono_ns();
        return (enum MHD_Result)first_call(r, method, url);
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
                                            SRV_BODY_BYTES_MAX);
    return (enum MHD_Result)r->rt->fn(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    tallyd *s = cls;
    srv_req *r = *con_cls;
    if (!r)
        return;
    uint64_t dur = srv_mono_ns() - r->start_ns;
    metrics_observe(r->status, dur);
    if (s->cfg.verbose)
        fprintf(stderr, "tallyd: %s %s %u %.3f ms%s\n", r->method, r->url, r->status,
                (double)dur / 1e6, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    free(r->body);
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
    /* poll(), not select(): 1000 open ledgers push descriptors past FD_SETSIZE. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (s->tls_cert)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
        { MHD_OPTION_END, 0, NULL },
    };
    s->mhd = MHD_start_daemon(
        flags, s->cfg.port, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SRV_CONNECTIONS_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
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
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
}
