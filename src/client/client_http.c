/*
** client_http.c — the verifying client's transport: libcurl for every URL
** (http and https, proxies from the environment as libcurl reads them), JSON
** bodies (jansson), the bearer token, and the mapping of HTTP statuses and
** tallyd's error codes to TALLY_E* (tally_client.h). Responses are capped at
** TC_BODY_MAX bytes; redirects are not followed; only http and https are
** allowed.
**
** One easy handle per client, run in the client's own multi handle, which
** keeps the connection alive between requests: a request on it does no DNS
** lookup and no connect (a new connection within libcurl's DNS cache time
** reuses the resolved address). What does not change between requests is
** set once, in tc_http_init: the options (TCP_NODELAY, NOSIGNAL, timeouts,
** the write callback, the size cap) and the request header lists (no
** "Expect: 100-continue"), built once per (token, has body). Per request
** only the URL, the method and the body are set. The response buffer is
** allocated once per handle, grows when needed and is reused by every later
** request.
*/
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

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

/* The response buffer's first size: a verified get's bundle is ~3 KB, a
** history or a scan page more; larger bodies grow it (and it stays grown). */
#define TC_BODY_INIT ((size_t)64 << 10)

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx);

/* Options that never change are set once here, not per request. */
int tc_http_init(tally_client *c)
{
    pthread_once(&curl_once, curl_init_once);
    if (!(c->body = malloc(TC_BODY_INIT)))
        return tally_seterr(TALLY_ENOMEM, "response buffer");
    c->body_cap = TC_BODY_INIT;
    c->body_len = 0;
    c->body[0] = '\0';
    CURL *h = c->curl = curl_easy_init();
    if (!h || !(c->multi = curl_multi_init()))
        return tally_seterr(TALLY_ENOMEM, "curl_easy_init failed");
    CURLcode cc = CURLE_OK;
#define SETOPT(opt, val) \
    do { \
        if (cc == CURLE_OK) \
            cc = curl_easy_setopt(h, opt, val); \
    } while (0)
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);           /* no SIGALRM around resolves */
    SETOPT(CURLOPT_TCP_NODELAY, 1L);        /* a request is one small write */
    SETOPT(CURLOPT_CONNECTTIMEOUT, 10L);
    SETOPT(CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)TC_BODY_MAX); /* announced: refused at once */
    SETOPT(CURLOPT_WRITEFUNCTION, on_data);
    SETOPT(CURLOPT_WRITEDATA, c);
    SETOPT(CURLOPT_ERRORBUFFER, c->curl_err); /* more precise than curl_easy_strerror */
#undef SETOPT
    if (cc != CURLE_OK)
        return tally_seterr(TALLY_EIO, "libcurl: %s", curl_easy_strerror(cc));
    return 0;
}

static void free_hdrs(tally_client *c, int auth)
{
    for (int b = 0; b < 3; b++) {
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
    if (c->multi)
        curl_multi_cleanup(c->multi); /* the easy handle is never left in it */
    c->multi = NULL;
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
    c->body_cap = c->body_len = 0;
}

/* The request headers for (auth, kind: 0 no body, 1 JSON body, 2 JSON body
** answered in the binary bundle form), built once per token. */
static struct curl_slist *headers(tally_client *c, int auth, int kind)
{
    auth = auth && c->token;
    if (auth && (!c->hdrs_token || strcmp(c->hdrs_token, c->token) != 0)) {
        free_hdrs(c, 1);
        if (!(c->hdrs_token = strdup(c->token)))
            return NULL;
    }
    struct curl_slist **l = (struct curl_slist **)&c->hdrs[auth][kind];
    if (*l)
        return *l;
    char authz[4200];
    struct curl_slist *h = curl_slist_append(
        NULL, kind == 2 ? "Accept: application/vnd.tally.bundles, application/json"
                        : "Accept: application/json, text/plain");
    struct curl_slist *t = h;
    if (t)
        t = curl_slist_append(h, "Expect:");
    if (t && kind)
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

/* Replaces each control character of s with '?': text from the server may
** reach a terminal, where ESC sequences could erase or forge lines. */
static void no_controls(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
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
    no_controls(text); /* the server's words reach a terminal */
    no_controls(c->err_code);
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

/* What curl_easy_perform does, through the client's multi handle (its
** connection cache keeps the connection): the transfer is started at once
** (curl_easy_perform polls before the first curl_multi_perform, one poll
** more per request) and waits in curl_multi_poll only while libcurl waits. */
static CURLcode transfer(tally_client *c)
{
    CURLM *m = c->multi;
    CURL *h = c->curl;
    if (curl_multi_add_handle(m, h) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode cc = CURLE_OK;
    int running = 1;
    for (;;) {
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc == CURLM_OK && running)
            mc = curl_multi_poll(m, NULL, 0, 1000, NULL);
        if (mc != CURLM_OK) {
            cc = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *msg;
            while ((msg = curl_multi_info_read(m, &left)) != NULL)
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
                    cc = msg->data.result;
            break;
        }
    }
    curl_multi_remove_handle(m, h);
    return cc;
}

static int perform(tally_client *c, const char *method, const char *path, const char *body,
                   size_t body_len, int auth)
{
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
    if (auth && c->token && strpbrk(c->token, "\r\n"))
        return tally_seterr(TALLY_EINVAL, "the token contains a line break");
    struct curl_slist *hdrs = headers(c, auth, !body ? 0 : c->accept_bundles ? 2 : 1);
    if (!hdrs)
        return tally_seterr(TALLY_ENOMEM, "building the request headers");
    c->body_len = 0;
    c->body[0] = '\0';
    c->status = 0;
    c->err_code[0] = '\0';
    c->curl_err[0] = '\0';
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
    CURLcode cc = transfer(c);
    if (cc != CURLE_OK) {
        int big = cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED;
        c->body_len = 0;
        c->body[0] = '\0';
        return tally_seterr(big ? TALLY_ETOOBIG : TALLY_EIO, "%s %s%s: %s", method, c->url, path,
                            big ? "response too large or out of memory"
                            : c->curl_err[0] ? c->curl_err
                                             : curl_easy_strerror(cc));
    }
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
        int bundles = c->accept_bundles;
        c->accept_bundles = 0;
        int lrc = tc_login(c, c->user, c->password);
        if (lrc != 0)
            return lrc;
        c->accept_bundles = bundles;
        rc = perform(c, method, path, body, body_len, auth);
    }
    c->accept_bundles = 0;
    return rc;
}

#define TC_LOGIN_BUSY_RETRIES 60 /* 503 busy answers to one login (50-250 ms apart) */

int tc_login(tally_client *c, const char *user, const char *password)
{
    json_t *req = json_pack("{s:s, s:s}", "user", user, "password", password);
    char *s = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!s)
        return tally_seterr(TALLY_EINVAL, "user name and password must be UTF-8");
    /* tallyd checks a few logins at a time and answers 503 "busy" beyond
    ** (a flood of logins must not take its worker pool): wait and retry,
    ** for up to ~10 s, with jitter so that many clients spread out. */
    int rc = perform(c, "POST", "/v1/login", s, strlen(s), 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned seed = (unsigned)now.tv_nsec ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)c;
    for (int i = 0; i < TC_LOGIN_BUSY_RETRIES && rc != 0 && c->status == 503 &&
                    strcmp(c->err_code, "busy") == 0; i++) {
        struct timespec pause = { 0, (long)(50 + (unsigned)rand_r(&seed) % 200) * 1000000L };
        nanosleep(&pause, NULL);
        rc = perform(c, "POST", "/v1/login", s, strlen(s), 0);
    }
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
