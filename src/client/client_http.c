/*
** client_http.c — the verifying client's transport, JSON bodies, the bearer
** token, and the mapping of HTTP statuses and tallyd's error codes to
** TALLY_E* (tally_client.h). Responses are capped at TC_BODY_MAX bytes;
** redirects are not followed; only http and https are allowed.
**
** Two transports, one connection per client, kept alive between requests:
**   direct   for a plain "http://host[:port]" URL when no proxy is set in the
**            environment (http_proxy, all_proxy, ALL_PROXY): HTTP/1.1 written
**            and read here on one blocking socket. A request is one sendmsg
**            and usually one recv (libcurl spent ~25% of a verified get's
**            client CPU: three polls, its state machine, allocations).
**            Responses: Content-Length, chunked, or up to EOF; 1xx skipped.
**            A request on a reused connection that fails before any
**            response byte arrived (the server closed it meanwhile) is sent
**            again once on a new connection, as libcurl does; an answer sent
**            before the whole request was read (413, then a close) is still
**            read after the send fails. The timeout is for the whole request
**            (SO_RCVTIMEO/SO_SNDTIMEO, poll for what remains after the first
**            wait).
**   libcurl  for everything else (https, proxies, URLs with a path or user).
*/
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "client/client_int.h"
#include "util/err.h"

/* ---- growing strings ---- */
void tc_buf_add(tc_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void tc_buf_puts(tc_buf *b, const char *s) { tc_buf_add(b, s, strlen(s)); }

void tc_buf_printf(tc_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        b->oom = 1;
    else
        tc_buf_add(b, tmp, (size_t)n);
}

void tc_buf_escape(tc_buf *b, const char *s, size_t n)
{
    static const char hx[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            tc_buf_add(b, (const char *)&ch, 1);
        } else {
            char e[3] = { '%', hx[ch >> 4], hx[ch & 15] };
            tc_buf_add(b, e, 3);
        }
    }
}

void tc_buf_query_bytes(tc_buf *b, char sep, const char *name, const void *p, size_t n)
{
    tc_buf_add(b, &sep, 1);
    if (tc_utf8_valid(p, n)) {
        tc_buf_printf(b, "%s=", name);
        tc_buf_escape(b, p, n);
        return;
    }
    tc_buf_printf(b, "%s_hex=", name);
    static const char d[] = "0123456789abcdef";
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        char h[2] = { d[s[i] >> 4], d[s[i] & 15] };
        tc_buf_add(b, h, 2);
    }
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
int tc_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (len == 0 || c > 0xf4 || len > n - i)
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) ||
            (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))
            return 0;
        i += len;
    }
    return 1;
}

/* ---- libcurl ---- */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx);

static int env_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v;
}

/* "http://host[:port]" with nothing else, and no proxy configured: direct. */
static void direct_init(tally_client *c)
{
    const char *u = c->url;
    c->direct = 0;
    c->sock = -1;
    if (strncmp(u, "http://", 7) != 0 || env_set("http_proxy") || env_set("all_proxy") ||
        env_set("ALL_PROXY"))
        return;
    const char *h = u + 7, *e;
    size_t hl;
    if (*h == '[') {
        e = strchr(h, ']');
        if (!e || e == h + 1 || strspn(h + 1, "0123456789abcdefABCDEF:.") != (size_t)(e - h - 1))
            return;
        hl = (size_t)(e - h - 1);
        memcpy(c->host, h + 1, hl < sizeof c->host ? hl : 0);
        e++;
    } else {
        hl = strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-");
        e = h + hl;
        memcpy(c->host, h, hl < sizeof c->host ? hl : 0);
    }
    if (hl == 0 || hl >= sizeof c->host)
        return;
    c->host[hl] = '\0';
    snprintf(c->port, sizeof c->port, "80");
    if (*e == ':') {
        size_t pl = strspn(e + 1, "0123456789");
        long port = pl && pl <= 5 ? strtol(e + 1, NULL, 10) : 0;
        if (port < 1 || port > 65535)
            return;
        snprintf(c->port, sizeof c->port, "%ld", port);
        e += 1 + pl;
    }
    if (*e != '\0')
        return;
    snprintf(c->hosthdr, sizeof c->hosthdr, "%.*s", (int)(e - h), h);
    c->direct = 1;
}

/* Options that never change are set once here, not per request. */
int tc_http_init(tally_client *c)
{
    direct_init(c);
    pthread_once(&curl_once, curl_init_once);
    CURL *h = c->curl = curl_easy_init();
    if (!h)
        return tally_seterr(TALLY_ENOMEM, "curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    return 0;
}

static void free_hdrs(tally_client *c, int auth)
{
    for (int b = 0; b < 2; b++) {
        curl_slist_free_all(c->hdrs[auth][b]);
        c->hdrs[auth][b] = NULL;
    }
    if (auth) {
        free(c->hdrs_token);
        c->hdrs_token = NULL;
    }
}

void tc_http_free(tally_client *c)
{
    if (c->sock >= 0)
        close(c->sock);
    c->sock = -1;
    free(c->req);
    c->req = NULL;
    c->req_cap = 0;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
    free_hdrs(c, 0);
    free_hdrs(c, 1);
    free(c->url_buf);
    c->url_buf = NULL;
    c->url_cap = 0;
    free(c->body);
    c->body = NULL;
}

/* The request headers for (auth, has body), built once per token. */
static struct curl_slist *headers(tally_client *c, int auth, int has_body)
{
    auth = auth && c->token;
    if (auth && (!c->hdrs_token || strcmp(c->hdrs_token, c->token) != 0)) {
        free_hdrs(c, 1);
        if (!(c->hdrs_token = strdup(c->token)))
            return NULL;
    }
    struct curl_slist **l = (struct curl_slist **)&c->hdrs[auth][has_body];
    if (*l)
        return *l;
    char authz[4200];
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json, text/plain");
    struct curl_slist *t = h;
    if (t)
        t = curl_slist_append(h, "Expect:");
    if (t && has_body)
        t = curl_slist_append(h, "Content-Type: application/json");
    if (t && auth) {
        snprintf(authz, sizeof authz, "Authorization: Bearer %s", c->token);
        t = curl_slist_append(h, authz);
    }
    if (!t) {
        curl_slist_free_all(h);
        return NULL;
    }
    return *l = h;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
    tally_client *c = ctx;
    size_t n = size * nmemb;
    if (c->body_len + n + 1 > TC_BODY_MAX)
        return 0; /* aborts the transfer */
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + n + 1)
            cap *= 2;
        char *nb = realloc(c->body, cap);
        if (!nb)
            return 0;
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return n;
}

/* Maps a non-2xx response; the message comes from the error JSON. */
static int map_status(tally_client *c)
{
    json_error_t err;
    json_t *j = json_loadb(c->body ? c->body : "", c->body_len, 0, &err);
    json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    snprintf(c->err_code, sizeof c->err_code, "%s", code ? code : "");
    char text[400];
    snprintf(text, sizeof text, "%s (HTTP %d%s%s)", msg ? msg : "server error", c->status,
             code ? " " : "", code ? code : "");
    json_decref(j);
    int rc;
    switch (c->status) {
    case 400: rc = TALLY_EINVAL; break;
    case 401: rc = TALLY_EINVAL; break;
    case 403: rc = TALLY_EINVAL; break;
    case 404: rc = TALLY_ENOTFOUND; break;
    case 409: rc = TALLY_ECONFLICT; break;
    case 413: rc = TALLY_ETOOBIG; break;
    case 429: rc = TALLY_EINVAL; break;
    default:
        rc = strcmp(c->err_code, "integrity") == 0 ? TALLY_ECORRUPT
             : c->status >= 400 && c->status < 500 ? TALLY_EINVAL : TALLY_EIO;
    }
    if (c->status == 401)
        return tally_seterr(rc, "unauthorized: %s; log in with 'tally --server %s login USER' "
                            "or set TALLY_USER/TALLY_PASSWORD", text, c->url);
    if (c->status == 403)
        return tally_seterr(rc, "forbidden: %s", text);
    return tally_seterr(rc, "%s", text);
}

/* ---- the direct transport ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct dreq {
    uint64_t deadline;  /* ms, CLOCK_MONOTONIC; 0: none */
    int timed_out;
    const char *what;   /* failure text */
    int err;            /* its errno */
} dreq;

/* Waits until fd is ready for events, within the deadline. 0 or -1. */
static int wait_fd(int fd, short events, dreq *q)
{
    for (;;) {
        int ms = -1;
        if (q->deadline) {
            uint64_t now = now_ms();
            if (now >= q->deadline) {
                q->timed_out = 1;
                return -1;
            }
            ms = q->deadline - now > 1000000000u ? 1000000000 : (int)(q->deadline - now);
        }
        struct pollfd p = { fd, events, 0 };
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 0;
        if (r == 0) {
            q->timed_out = 1;
            return -1;
        }
        if (errno != EINTR) {
            q->what = "poll";
            q->err = errno;
            return -1;
        }
    }
}

/* Before a blocking call: if less than the whole timeout remains, wait for
** readiness within what remains (SO_*TIMEO bound the call to the whole
** timeout only). */
static int before_io(tally_client *c, short events, dreq *q)
{
    if (!q->deadline)
        return 0;
    uint64_t now = now_ms();
    if (now >= q->deadline) {
        q->timed_out = 1;
        return -1;
    }
    if (q->deadline - now + 5 >= (uint64_t)c->timeout_ms)
        return 0;
    return wait_fd(c->sock, events, q);
}

static int direct_connect(tally_client *c, dreq *q)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(c->host, c->port, &hints, &res);
    if (gai != 0) {
        q->what = gai_strerror(gai);
        q->err = 0;
        return -1;
    }
    uint64_t cdl = now_ms() + 10000; /* connect timeout, as CURLOPT_CONNECTTIMEOUT */
    q->what = "connect";
    q->err = ECONNREFUSED;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        a->ai_protocol);
        if (fd < 0) {
            q->what = "socket";
            q->err = errno;
            continue;
        }
        int ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        if (!ok && errno == EINPROGRESS) {
            dreq cq = *q;
            cq.deadline = q->deadline && q->deadline < cdl ? q->deadline : cdl;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (wait_fd(fd, POLLOUT, &cq) == 0 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                ok = 1;
            else if (cq.timed_out)
                q->what = "connect timed out", q->err = 0;
            else
                q->what = "connect", q->err = soerr ? soerr : cq.err;
        } else if (!ok) {
            q->what = "connect";
            q->err = errno;
        }
        if (!ok) {
            close(fd);
            continue;
        }
        int one = 1, fl = fcntl(fd, F_GETFL);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
            q->what = "fcntl";
            q->err = errno;
            close(fd);
            continue;
        }
        if (c->timeout_ms > 0) {
            struct timeval tv = { c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000 };
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        }
        c->sock = fd;
        break;
    }
    freeaddrinfo(res);
    return c->sock >= 0 ? 0 : -1;
}

static void direct_close(tally_client *c)
{
    if (c->sock >= 0)
        close(c->sock);
    c->sock = -1;
}

static int send_all(tally_client *c, struct iovec *iov, int n, dreq *q)
{
    while (n > 0) {
        if (before_io(c, POLLOUT, q) != 0)
            return -1;
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->sock, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                q->timed_out = 1;
            q->what = "send";
            q->err = errno;
            return -1;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Grows c->body to hold at least need bytes (+1 for a NUL). */
static int body_room(tally_client *c, size_t need)
{
    if (need + 1 <= c->body_cap)
        return 0;
    if (need + 1 > TC_BODY_MAX + 65536)
        return -1;
    size_t cap = c->body_cap ? c->body_cap : 4096;
    while (cap < need + 1)
        cap *= 2;
    char *nb = realloc(c->body, cap);
    if (!nb)
        return -1;
    c->body = nb;
    c->body_cap = cap;
    return 0;
}

/* Reads more bytes into c->body at *have. 1: got some, 0: EOF, -1: error. */
static int recv_more(tally_client *c, size_t *have, dreq *q)
{
    if (body_room(c, *have + 16384) != 0) {
        q->what = "response too large or out of memory";
        q->err = 0;
        return -1;
    }
    for (;;) {
        if (before_io(c, POLLIN, q) != 0)
            return -1;
        ssize_t r = recv(c->sock, c->body + *have, c->body_cap - 1 - *have, 0);
        if (r > 0) {
            *have += (size_t)r;
            c->body[*have] = '\0'; /* the head is parsed as a string */
            return 1;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            q->timed_out = 1;
        q->what = "recv";
        q->err = errno;
        return -1;
    }
}

/* Case-insensitive header value of name in the head [p, end), or NULL. */
static const char *header(const char *p, const char *end, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *line = memchr(p, '\n', (size_t)(end - p)); /* skip the status line */
    while (line && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; v && i + tl <= n; i++)
        if (strncasecmp(v + i, tok, tl) == 0 && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + tl == n || v[i + tl] == ',' || v[i + tl] == ' ' || v[i + tl] == ';'))
            return 1;
    return 0;
}

/* Decodes a chunked body in place: c->body[start, *have) -> c->body[0, *len).
** Reads more as needed. 0, or -1 (q says why). */
static int read_chunked(tally_client *c, size_t start, size_t *have, size_t *len, dreq *q)
{
    size_t in = start, out = 0;
    for (;;) {
        /* the size line */
        char *eol;
        while (!(eol = memchr(c->body + in, '\n', *have - in))) {
            if (*have - in > 1024) {
                q->what = "malformed chunk";
                return -1;
            }
            int r = recv_more(c, have, q);
            if (r <= 0) {
                if (r == 0)
                    q->what = "connection closed inside a chunked body", q->err = 0;
                return -1;
            }
        }
        char *e = c->body + in;
        unsigned long long n = 0;
        errno = 0;
        if ((*e >= '0' && *e <= '9') || (*e >= 'a' && *e <= 'f') || (*e >= 'A' && *e <= 'F'))
            n = strtoull(c->body + in, &e, 16);
        if (e == c->body + in || errno || (*e != '\r' && *e != ';' && *e != '\n') ||
            n > TC_BODY_MAX || out + n > TC_BODY_MAX) {
            q->what = n > TC_BODY_MAX || out + n > TC_BODY_MAX
                          ? "response too large or out of memory" : "malformed chunk";
            q->err = 0;
            return -1;
        }
        in = (size_t)(eol - c->body) + 1;
        if (n == 0) {
            /* trailers, up to an empty line */
            for (;;) {
                while (!(eol = memchr(c->body + in, '\n', *have - in))) {
                    int r = recv_more(c, have, q);
                    if (r <= 0) {
                        if (r == 0)
                            q->what = "connection closed inside a chunked body", q->err = 0;
                        return -1;
                    }
                }
                int empty = eol == c->body + in || (eol == c->body + in + 1 && c->body[in] == '\r');
                in = (size_t)(eol - c->body) + 1;
                if (empty)
                    break;
            }
            *len = out;
            return in != *have ? -2 : 0; /* -2: complete, but more data followed */
        }
        while (*have - in < n + 1 || (*have - in == n + 1 && c->body[in + n] == '\r')) {
            int r = recv_more(c, have, q);
            if (r <= 0) {
                if (r == 0)
                    q->what = "connection closed inside a chunked body", q->err = 0;
                return -1;
            }
        }
        memmove(c->body + out, c->body + in, (size_t)n);
        out += (size_t)n;
        in += (size_t)n;
        if (c->body[in] == '\r')
            in++;
        if (c->body[in] != '\n') {
            q->what = "malformed chunk";
            q->err = 0;
            return -1;
        }
        in++;
    }
}

/* Reads one response into c->body (the body only, NUL-terminated).
** Returns 0 (*keep: the connection may be reused), -1 (error; *got_any: some
** response bytes had arrived). */
static int read_response(tally_client *c, int *keep, int *got_any, dreq *q)
{
    size_t have = 0, scan = 0;
    *keep = 0;
    *got_any = 0;
    for (;;) {
        /* the head */
        char *hend = NULL;
        for (;;) {
            if (have >= 4) {
                size_t from = scan > 3 ? scan - 3 : 0;
                char *f = memmem(c->body + from, have - from, "\r\n\r\n", 4);
                if (f) {
                    hend = f + 4;
                    break;
                }
            }
            scan = have;
            if (have > 65536) {
                q->what = "response head too large";
                q->err = 0;
                return -1;
            }
            int r = recv_more(c, &have, q);
            if (r <= 0) {
                if (r == 0)
                    q->what = have ? "connection closed inside the response head"
                                   : "connection closed", q->err = 0;
                return -1;
            }
            *got_any = 1;
        }
        /* "HTTP/1.x DDD[ reason]\r\n" */
        const char *sl = c->body;
        int minor = 0, status = 0;
        if (strncmp(sl, "HTTP/1.", 7) == 0 && (minor = sl[7] - '0') >= 0 && minor <= 9 &&
            sl[8] == ' ' &&
            sl[9] >= '1' && sl[9] <= '9' && sl[10] >= '0' && sl[10] <= '9' && sl[11] >= '0' &&
            sl[11] <= '9' && (sl[12] == ' ' || sl[12] == '\r'))
            status = (sl[9] - '0') * 100 + (sl[10] - '0') * 10 + (sl[11] - '0');
        if (status == 0) {
            q->what = "not an HTTP/1.x response";
            q->err = 0;
            return -1;
        }
        size_t hlen = (size_t)(hend - c->body);
        if (status < 200) { /* 1xx: another head follows */
            memmove(c->body, hend, have - hlen);
            have -= hlen;
            scan = 0;
            continue;
        }
        c->status = status;
        size_t vl = 0;
        const char *conn = header(c->body, hend, "connection", &vl);
        int keep_alive = minor >= 1 ? !has_token(conn, conn ? vl : 0, "close")
                                    : has_token(conn, conn ? vl : 0, "keep-alive");
        const char *te = header(c->body, hend, "transfer-encoding", &vl);
        size_t cll = 0;
        const char *cl = header(c->body, hend, "content-length", &cll);
        size_t len = 0;
        if (status == 204 || status == 304) {
            len = 0;
            if (have != hlen)
                keep_alive = 0;
        } else if (te) {
            if (!(vl == 7 && strncasecmp(te, "chunked", 7) == 0)) {
                q->what = "unsupported transfer encoding";
                q->err = 0;
                return -1;
            }
            int r = read_chunked(c, hlen, &have, &len, q);
            if (r == -2)
                keep_alive = 0;
            else if (r != 0)
                return -1;
        } else if (cl) {
            uint64_t n = 0;
            size_t i = 0;
            for (; i < cll && cl[i] >= '0' && cl[i] <= '9' && n <= TC_BODY_MAX; i++)
                n = n * 10 + (uint64_t)(cl[i] - '0');
            if (i == 0 || i != cll) {
                q->what = n > TC_BODY_MAX ? "response too large or out of memory"
                                          : "malformed Content-Length";
                q->err = 0;
                return -1;
            }
            while (have - hlen < n) {
                int r = recv_more(c, &have, q);
                if (r <= 0) {
                    if (r == 0)
                        q->what = "connection closed inside the body", q->err = 0;
                    return -1;
                }
            }
            if (have - hlen > n)
                keep_alive = 0; /* more than asked for: do not trust the connection */
            len = (size_t)n;
            memmove(c->body, c->body + hlen, len); /* c->body may have moved */
        } else {
            /* up to EOF */
            for (;;) {
                if (have - hlen > TC_BODY_MAX) {
                    q->what = "response too large or out of memory";
                    q->err = 0;
                    return -1;
                }
                int r = recv_more(c, &have, q);
                if (r < 0)
                    return -1;
                if (r == 0)
                    break;
            }
            keep_alive = 0;
            len = have - hlen;
            memmove(c->body, c->body + hlen, len);
        }
        c->body_len = len;
        c->body[len] = '\0';
        *keep = keep_alive;
        return 0;
    }
}

/* One request over the kept-alive socket (a new one if none or if the old
** one turns out closed before any answer). Fills c->body/c->status. */
static int direct_perform(tally_client *c, const char *method, const char *path,
                          const char *body, size_t body_len, int auth)
{
    if (auth && c->token && strpbrk(c->token, "\r\n"))
        return tally_seterr(TALLY_EINVAL, "the token contains a line break");
    size_t need = strlen(method) + strlen(path) + strlen(c->hosthdr) +
                  (auth && c->token ? strlen(c->token) : 0) + 256;
    if (need > c->req_cap) {
        char *nr = realloc(c->req, need);
        if (!nr)
            return tally_seterr(TALLY_ENOMEM, "building the request");
        c->req = nr;
        c->req_cap = need;
    }
    size_t n = 0; /* need covers all of it */
#define PUT(str) (n += (size_t)(stpcpy(c->req + n, (str)) - (c->req + n)))
    PUT(method);
    PUT(" ");
    PUT(path);
    PUT(" HTTP/1.1\r\nHost: ");
    PUT(c->hosthdr);
    PUT("\r\nAccept: application/json, text/plain\r\n");
    if (auth && c->token) {
        PUT("Authorization: Bearer ");
        PUT(c->token);
        PUT("\r\n");
    }
    if (body) {
        char num[32];
        snprintf(num, sizeof num, "%zu", body_len);
        PUT("Content-Type: application/json\r\nContent-Length: ");
        PUT(num);
        PUT("\r\n");
    }
    PUT("\r\n");
#undef PUT
    if (body_room(c, 16384) != 0)
        return tally_seterr(TALLY_ENOMEM, "response buffer");
    dreq q = { 0 };
    if (c->timeout_ms > 0)
        q.deadline = now_ms() + (uint64_t)c->timeout_ms;
    for (int attempt = 0;; attempt++) {
        int fresh = c->sock < 0;
        q.what = NULL;
        q.err = 0;
        q.timed_out = 0;
        if (fresh && direct_connect(c, &q) != 0)
            break;
        struct iovec iov[2] = { { c->req, n }, { (void *)body, body ? body_len : 0 } };
        int keep = 0, got_any = 0;
        if (send_all(c, iov, body && body_len ? 2 : 1, &q) == 0) {
            if (read_response(c, &keep, &got_any, &q) == 0) {
                if (!keep)
                    direct_close(c);
                return 0;
            }
        } else if (!q.timed_out && (q.err == EPIPE || q.err == ECONNRESET)) {
            /* The server may have answered early (413 before the whole
            ** body) and closed: that answer may still be readable. */
            dreq q2 = q;
            if (read_response(c, &keep, &got_any, &q2) == 0) {
                direct_close(c);
                return 0;
            }
        }
        direct_close(c);
        /* A reused connection the server had closed: once more, anew. */
        if (fresh || got_any || q.timed_out || attempt > 0)
            break;
    }
    c->status = 0;
    c->body_len = 0;
    c->body[0] = '\0';
    if (q.timed_out)
        return tally_seterr(TALLY_EIO, "%s %s%s: timed out after %ld ms", method, c->url, path,
                            c->timeout_ms);
    int big = q.what && strncmp(q.what, "response too large", 18) == 0;
    return tally_seterr(big ? TALLY_ETOOBIG : TALLY_EIO, "%s %s%s: %s%s%s", method, c->url, path,
                        q.what ? q.what : "failed", q.err ? ": " : "",
                        q.err ? strerror(q.err) : "");
}

static int perform(tally_client *c, const char *method, const char *path, const char *body,
                   size_t body_len, int auth)
{
    if (c->direct) {
        snprintf(c->last_request, sizeof c->last_request, "%s %s", method, path);
        c->err_code[0] = '\0';
        c->status = 0;
        int rc = direct_perform(c, method, path, body, body_len, auth);
        if (rc != 0)
            return rc;
        if (c->status >= 200 && c->status < 300)
            return 0;
        return map_status(c);
    }
    CURL *h = c->curl;
    size_t ul = strlen(c->url), pl = strlen(path);
    if (ul + pl + 1 > c->url_cap) {
        char *nu = realloc(c->url_buf, ul + pl + 64);
        if (!nu)
            return tally_seterr(TALLY_ENOMEM, "building the URL");
        c->url_buf = nu;
        c->url_cap = ul + pl + 64;
    }
    memcpy(c->url_buf, c->url, ul);
    memcpy(c->url_buf + ul, path, pl + 1);
    snprintf(c->last_request, sizeof c->last_request, "%s %s", method, path);
    struct curl_slist *hdrs = headers(c, auth, body != NULL);
    if (!hdrs)
        return tally_seterr(TALLY_ENOMEM, "building the request headers");
    c->body_len = 0;
    if (c->body)
        c->body[0] = '\0';
    c->status = 0;
    c->err_code[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, c->url_buf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    }
    CURLcode cc = curl_easy_perform(h);
    if (!c->body && (c->body = malloc(1)) != NULL) {
        c->body[0] = '\0';
        c->body_cap = 1;
    }
    if (!c->body)
        return tally_seterr(TALLY_ENOMEM, "response buffer");
    if (cc != CURLE_OK)
        return tally_seterr(cc == CURLE_WRITE_ERROR ? TALLY_ETOOBIG : TALLY_EIO, "%s %s%s: %s",
                            method, c->url, path,
                            cc == CURLE_WRITE_ERROR ? "response too large or out of memory"
                                                    : curl_easy_strerror(cc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    c->status = (int)status;
    if (status >= 200 && status < 300)
        return 0;
    return map_status(c);
}

int tc_http(tally_client *c, const char *method, const char *path, const char *body,
            size_t body_len, int auth)
{
    int rc = perform(c, method, path, body, body_len, auth);
    if (rc != 0 && auth && c->status == 401 && c->user && c->password) {
        /* The token expired: log in again once and retry. */
        int lrc = tc_login(c, c->user, c->password);
        if (lrc != 0)
            return lrc;
        rc = perform(c, method, path, body, body_len, auth);
    }
    return rc;
}

int tc_login(tally_client *c, const char *user, const char *password)
{
    json_t *req = json_pack("{s:s, s:s}", "user", user, "password", password);
    char *s = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!s)
        return tally_seterr(TALLY_EINVAL, "user name and password must be UTF-8");
    int rc = perform(c, "POST", "/v1/login", s, strlen(s), 0);
    free(s);
    if (rc != 0)
        return rc == TALLY_EINVAL && c->status == 401
                   ? tally_seterr(TALLY_EINVAL, "login as '%s' refused", user) : rc;
    json_error_t err;
    json_t *j = json_loadb(c->body, c->body_len, 0, &err);
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok || !*tok || strpbrk(tok, "\r\n")) {
        json_decref(j);
        return tally_seterr(TALLY_EIO, "login: response has no token");
    }
    free(c->token);
    c->token = strdup(tok);
    json_decref(j);
    return c->token ? 0 : tally_seterr(TALLY_ENOMEM, "token");
}
