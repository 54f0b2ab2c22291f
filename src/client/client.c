/*
** client.c — the public API of the verifying client (include/tally_client.h).
**
** A verified call runs as:
**   v_begin   pin the ledger id (first contact: GET /v1/ledgers/L, origin
**             checked), load the trusted checkpoint note of <key dir>/<ledger
**             id> (re-verified whenever it is read from the file);
**   request   send trusted=<size> so the server adds the consistency proof;
**   check     client_verify.c; any failure: evidence saved, TALLY_EBADPROOF,
**             the trusted state untouched;
**   v_commit  only then, and only if the new checkpoint is larger (or the
**             first): take the ledger's state lock, re-read the stored state,
**             and if another call stored a different one since v_begin,
**             relate the two (equal sizes: equal roots; else a consistency
**             proof from the smaller to the larger, fetched and verified;
**             failure: evidence, TALLY_EBADPROOF); then replace it atomically
**             if ours is larger;
**   v_end     unlock (if locked).
** The trusted state is selected only by the pinned key and the pinned ledger
** id — never by anything in a response.
**
** Locking: the state lock (<ledger id>.lock, flock) is held only while the
** stored state is re-read and replaced, not across the request: concurrent
** calls sharing a state directory would otherwise run one at a time (64
** threads on one directory: 3.3k verified gets/s, p99 75 ms). A call that
** only reads (the common case: the checkpoint equals the trusted one) takes
** no lock at all. This is sound because the file is only ever replaced by
** rename (a reader sees a whole old or a whole new note), and a call is
** checked against a state that was trusted when it began: any state stored
** meanwhile by a concurrent call extends that one (it was checked against
** it, or against its successors), so the call is ordered before it; what a
** call stores is related to whatever is stored at that moment, under the
** lock, so the stored state still only moves forward along one history.
**
** Caches (per handle; never shared between handles):
**   (1) ledger name -> pinned id: pins are written once (link, never
**       replaced) and never changed by this code, so the id read once stays
**       the pin. A pin removed by hand is noticed by the next handle.
**   (2) the trusted state (tc_state_cache): the note bytes, size and root
**       last read (and verified) or written by this handle, with the file's
**       identity (dev, inode, size, mtime, ctime) and an open descriptor of
**       it. Each call stat()s the path: if the identity is unchanged, it is
**       the same file — the descriptor we hold keeps the inode allocated, so
**       its number cannot have been reused by a newer file, and the file is
**       never written in place, only replaced — and the cached note is used
**       without reading and re-verifying it. Any difference re-reads and
**       re-verifies the file. v_commit always re-checks under the lock.
**   (3) a checkpoint byte-identical to the trusted note (the usual answer to
**       a read) is taken without checking its signature again
**       (tc_trust.note): those exact bytes were verified under the same key
**       and origin when read from the file or before being written.
**   Other signature checks are memoized (client_verify.c).
*/
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/client_int.h"
#include "merkle/rfc6962.h"
#include "util/err.h"

static void tc_state_cache_drop(tc_state_cache *k);

void tally_client_options_init(tally_client_options *opts) { memset(opts, 0, sizeof *opts); }

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int tally_client_use(tally_client *c, const char *ledger)
{
    if (!ledger || !name_ok(ledger))
        return tally_seterr(TALLY_EINVAL, "bad ledger name '%s'", ledger ? ledger : "");
    snprintf(c->ledger, sizeof c->ledger, "%s", ledger);
    return 0;
}

int tally_client_http_status(const tally_client *c) { return c->status; }
const char *tally_client_error_code(const tally_client *c) { return c->err_code; }
const char *tally_client_state_dir(const tally_client *c) { return c->state_dir; }

static char *default_state_dir(void)
{
    const char *h = getenv("TALLY_HOME");
    if (h && *h)
        return strdup(h);
    const char *home = getenv("HOME");
    char buf[TC_PATH_MAX];
    snprintf(buf, sizeof buf, "%s/.tally", home && *home ? home : ".");
    return strdup(buf);
}

static int load_token(tally_client *c)
{
    char path[TC_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/tokens/%s", c->state_dir, c->url_esc);
    char *t = NULL;
    size_t n;
    int rc = tc_read_file(path, &t, &n, 4096);
    if (rc == TALLY_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    t[strcspn(t, "\r\n")] = '\0';
    c->token = t;
    return 0;
}

int tally_client_connect(tally_client **out, const char *url, const tally_client_options *opts)
{
    tally_client_options def;
    if (!opts) {
        tally_client_options_init(&def);
        opts = &def;
    }
    *out = NULL;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return tally_seterr(TALLY_EINVAL, "server URL must start with http:// or https://");
    tally_client *c = calloc(1, sizeof *c);
    if (!c)
        return TALLY_ENOMEM;
    c->sc.fd = -1;
    int rc = TALLY_ENOMEM;
    c->url = strdup(url);
    c->state_dir = opts->state_dir ? strdup(opts->state_dir) : default_state_dir();
    c->url_esc = malloc(strlen(url) * 3 + 1);
    if (!c->url || !c->state_dir || !c->url_esc)
        goto fail;
    size_t ul = strlen(c->url);
    while (ul > 0 && c->url[ul - 1] == '/')
        c->url[--ul] = '\0';
    tc_escape_name(c->url_esc, strlen(url) * 3 + 1, c->url);
    c->timeout_ms = opts->timeout_ms;
    c->clock_skew_ms = opts->clock_skew_ms ? opts->clock_skew_ms
                                           : TALLY_CLIENT_CLOCK_SKEW_MS_DEFAULT;
    if ((rc = tally_client_use(c, opts->ledger ? opts->ledger : "default")) != 0 ||
        (rc = tc_http_init(c)) != 0)
        goto fail;
    if (tc_mkdirs(c->state_dir, 0700) != 0) {
        rc = tally_seterr(TALLY_EIO, "cannot create %s: %s", c->state_dir, strerror(errno));
        goto fail;
    }
    if ((rc = tc_pin_server(c, opts->server_vkey)) != 0)
        goto fail;
    if (opts->token) {
        if (!(c->token = strdup(opts->token)))
            goto fail;
    } else if (opts->user && opts->password) {
        rc = TALLY_ENOMEM;
        if (!(c->user = strdup(opts->user)) || !(c->password = strdup(opts->password)))
            goto fail;
        if ((rc = tc_login(c, c->user, c->password)) != 0)
            goto fail;
    } else if ((rc = load_token(c)) != 0) {
        goto fail;
    }
    *out = c;
    return 0;
fail:
    tally_client_close(c);
    return rc;
}

void tally_client_close(tally_client *c)
{
    if (!c)
        return;
    tc_http_free(c);
    tc_state_cache_drop(&c->sc);
    if (c->password)
        memset(c->password, 0, strlen(c->password));
    free(c->password);
    free(c->user);
    free(c->token);
    free(c->url);
    free(c->url_esc);
    free(c->state_dir);
    free(c);
}

int tally_client_login(tally_client *c, char **out_token, const char *user, const char *password,
                       int save)
{
    int rc = tc_login(c, user, password);
    if (rc != 0)
        return rc;
    if (save) {
        char dir[TC_PATH_MAX], path[TC_PATH_MAX * 2];
        snprintf(dir, sizeof dir, "%s/tokens", c->state_dir);
        if (tc_mkdirs(dir, 0700) != 0)
            return tally_seterr(TALLY_EIO, "cannot create %s: %s", dir, strerror(errno));
        snprintf(path, sizeof path, "%s/%s", dir, c->url_esc);
        tc_buf b = { 0 };
        tc_buf_printf(&b, "%s\n", c->token);
        rc = b.oom ? TALLY_ENOMEM : tc_write_atomic(path, b.p, b.len, 0600, 0);
        free(b.p);
        if (rc != 0)
            return rc;
    }
    if (out_token && !(*out_token = strdup(c->token)))
        return TALLY_ENOMEM;
    return 0;
}

int tally_client_logout(tally_client *c)
{
    char path[TC_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/tokens/%s", c->state_dir, c->url_esc);
    if (!c->token)
        return tally_seterr(TALLY_EINVAL, "not logged in: no token for %s", c->url);
    int rc = tc_http(c, "POST", "/v1/logout", "{}", 2, 1);
    /* A token the server no longer knows is as good as ended. */
    if (rc == TALLY_EINVAL && c->status == 401)
        rc = 0;
    if (rc == 0 && unlink(path) != 0 && errno != ENOENT)
        rc = tally_seterr(TALLY_EIO, "cannot remove %s: %s", path, strerror(errno));
    if (rc == 0) {
        free(c->token);
        c->token = NULL;
    }
    return rc;
}

/* ---- JSON helpers ---- */

static json_t *parse_body(tally_client *c)
{
    json_error_t err;
    json_t *j = json_loadb(c->body, c->body_len, JSON_ALLOW_NUL, &err);
    if (!json_is_object(j)) {
        json_decref(j);
        tally_seterr(TALLY_EIO, "%s: malformed response: %s", c->last_request, err.text);
        return NULL;
    }
    return j;
}

/* "name" or "name_hex" into a malloc'ed NUL-terminated buffer. */
static int json_bytes(json_t *o, const char *name, uint8_t **out, size_t *out_len)
{
    char hn[64];
    snprintf(hn, sizeof hn, "%s_hex", name);
    json_t *t = json_object_get(o, name), *h = json_object_get(o, hn);
    const char *s = json_string_value(t ? t : h);
    size_t n = json_string_length(t ? t : h);
    if (!s)
        return -1;
    uint8_t *b = malloc(n + 1);
    if (!b)
        return -1;
    if (t) {
        memcpy(b, s, n);
        b[n] = 0;
        *out_len = n;
    } else {
        if (tc_unhex(s, n, b) < 0) {
            free(b);
            return -1;
        }
        b[n / 2] = 0;
        *out_len = n / 2;
    }
    *out = b;
    return 0;
}

static void json_set_bytes(json_t *o, const char *name, const void *p, size_t n)
{
    if (tc_utf8_valid(p, n)) {
        json_object_set_new(o, name, json_stringn(p, n));
        return;
    }
    char hn[64];
    char *hex = malloc(2 * n + 1);
    if (!hex)
        return;
    tc_hex(hex, p, n);
    snprintf(hn, sizeof hn, "%s_hex", name);
    json_object_set_new(o, hn, json_string(hex));
    free(hex);
}

static uint64_t json_u64(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* RFC 3339 ("2026-11-22T10:00:00.123456789Z" or with an offset) to Unix ns. */
static uint64_t parse_ts(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s)
        return 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return 0;
    int64_t secs = (int64_t)timegm(&tm), ns = 0, scale = 100000000;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ns += (*p - '0') * scale;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
            secs -= (*p == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
    }
    return secs < 0 ? 0 : (uint64_t)secs * 1000000000u + (uint64_t)ns;
}

static void fmt_ts(char buf[48], uint64_t ns)
{
    time_t secs = (time_t)(ns / 1000000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000u));
}

void tally_client_version_free(tally_client_version *v)
{
    free(v->key);
    free(v->value);
    memset(v, 0, sizeof *v);
}

void tally_client_tx_free(tally_client_tx *t)
{
    for (uint32_t i = 0; t->entries && i < t->entry_count; i++) {
        free(t->entries[i].key);
        free(t->entries[i].value);
        free(t->entries[i].meta);
    }
    free(t->entries);
    free(t->meta);
    memset(t, 0, sizeof *t);
}

/* "/v1/ledgers/<ledger><suffix>" */
static void ledger_path(const tally_client *c, tc_buf *b, const char *suffix)
{
    tc_buf_printf(b, "/v1/ledgers/%s%s", c->ledger, suffix);
}

static int req_json(tally_client *c, const char *method, tc_buf *path, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int rc;
    if (path->oom || (body && !s))
        rc = tally_seterr(TALLY_ENOMEM, "building the request");
    else
        rc = tc_http(c, method, path->p, s, s ? strlen(s) : 0, 1);
    free(s);
    free(path->p);
    return rc;
}

/* ---- administration ---- */

int tally_client_ledger_create(tally_client *c, tally_client_ledger *out, const char *name)
{
    if (!name_ok(name))
        return tally_seterr(TALLY_EINVAL, "bad ledger name '%s'", name);
    tc_buf p = { 0 };
    tc_buf_puts(&p, "/v1/ledgers");
    int rc = req_json(c, "POST", &p, json_pack("{s:s}", "name", name));
    if (rc != 0 || !out)
        return rc;
    json_t *j = parse_body(c);
    if (!j)
        return TALLY_EIO;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    const char *id = json_string_value(json_object_get(j, "id"));
    snprintf(out->id, sizeof out->id, "%s", id ? id : "");
    json_decref(j);
    return 0;
}

int tally_client_ledger_list(tally_client *c, tally_client_ledger **out, size_t *out_n)
{
    *out = NULL;
    *out_n = 0;
    int rc = tc_http(c, "GET", "/v1/ledgers", NULL, 0, 1);
    if (rc != 0)
        return rc;
    json_t *j = parse_body(c);
    json_t *arr = json_object_get(j, "ledgers");
    if (!json_is_array(arr)) {
        json_decref(j);
        return tally_seterr(TALLY_EIO, "GET /v1/ledgers: no \"ledgers\" array");
    }
    size_t n = json_array_size(arr);
    tally_client_ledger *l = calloc(n + 1, sizeof *l);
    if (!l) {
        json_decref(j);
        return TALLY_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        const char *nm = json_string_value(json_object_get(o, "name"));
        const char *id = json_string_value(json_object_get(o, "id"));
        snprintf(l[i].name, sizeof l[i].name, "%s", nm ? nm : "");
        snprintf(l[i].id, sizeof l[i].id, "%s", id ? id : "");
        l[i].size = json_u64(o, "size");
    }
    json_decref(j);
    *out = l;
    *out_n = n;
    return 0;
}

int tally_client_user_create(tally_client *c, const char *name, const char *password,
                             const char *role, const char *ledger)
{
    if (!name_ok(name))
        return tally_seterr(TALLY_EINVAL, "bad user name '%s'", name);
    json_t *b = json_pack("{s:s, s:s, s:s}", "name", name, "role", role, "ledger", ledger);
    if (b && password)
        json_object_set_new(b, "password", json_string(password));
    tc_buf p = { 0 };
    tc_buf_puts(&p, "/v1/users");
    return req_json(c, "POST", &p, b);
}

/* ---- unverified key-value ---- */

static json_t *set_body(const tally_client_entry *e, size_t n, const char *meta)
{
    json_t *arr = json_array(), *b = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_set_bytes(o, "key", e[i].key, e[i].key_len);
        json_set_bytes(o, "value", e[i].value, e[i].value_len);
        if (e[i].cond == TALLY_COND_ABSENT)
            json_object_set_new(o, "if_absent", json_true());
        if (e[i].cond == TALLY_COND_REV)
            json_object_set_new(o, "if_rev", json_integer((json_int_t)e[i].cond_rev));
        json_array_append_new(arr, o);
    }
    json_object_set_new(b, "entries", arr);
    if (meta && json_object_set_new(b, "meta", json_string(meta)) != 0) {
        json_decref(b); /* not UTF-8: refused (sent as a JSON string) */
        return NULL;
    }
    return b;
}

static int meta_refused(void)
{
    return tally_seterr(TALLY_EINVAL, "transaction metadata must be UTF-8 text");
}

int tally_client_set(tally_client *c, uint64_t *out_tx, const tally_client_entry *e, size_t n,
                     const char *meta)
{
    json_t *body = set_body(e, n, meta);
    if (!body)
        return meta_refused();
    tc_buf p = { 0 };
    ledger_path(c, &p, "/set");
    int rc = req_json(c, "POST", &p, body);
    if (rc != 0)
        return rc;
    json_t *j = parse_body(c);
    if (!j)
        return TALLY_EIO;
    if (out_tx)
        *out_tx = json_u64(j, "tx");
    json_decref(j);
    return 0;
}

int tally_client_del(tally_client *c, uint64_t *out_tx, const void *key, size_t key_len,
                     uint64_t if_rev)
{
    json_t *b = json_object();
    json_set_bytes(b, "key", key, key_len);
    if (if_rev)
        json_object_set_new(b, "if_rev", json_integer((json_int_t)if_rev));
    tc_buf p = { 0 };
    ledger_path(c, &p, "/del");
    int rc = req_json(c, "POST", &p, b);
    if (rc != 0)
        return rc;
    json_t *j = parse_body(c);
    if (!j)
        return TALLY_EIO;
    if (out_tx)
        *out_tx = json_u64(j, "tx");
    json_decref(j);
    return 0;
}

static void add_selector(tc_buf *p, int sel, uint64_t arg)
{
    char ts[48];
    switch (sel) {
    case TALLY_CLIENT_AS_OF_TX: tc_buf_printf(p, "&tx=%" PRIu64, arg); break;
    case TALLY_CLIENT_REV: tc_buf_printf(p, "&rev=%" PRIu64, arg); break;
    case TALLY_CLIENT_AT_TIME:
        fmt_ts(ts, arg);
        tc_buf_puts(p, "&at=");
        tc_buf_escape(p, ts, strlen(ts));
        break;
    default: break;
    }
}

static int version_from(json_t *o, tally_client_version *v)
{
    memset(v, 0, sizeof *v);
    if (json_bytes(o, "value", &v->value, &v->value_len) != 0) {
        v->value = calloc(1, 1);
        v->value_len = 0;
    }
    v->tx = json_u64(o, "tx");
    v->rev = json_u64(o, "rev");
    v->ts_ns = parse_ts(json_string_value(json_object_get(o, "ts")));
    v->deleted = json_is_true(json_object_get(o, "deleted"));
    return v->value ? 0 : TALLY_ENOMEM;
}

int tally_client_get(tally_client *c, tally_client_version *out, const void *key, size_t key_len,
                     int sel, uint64_t arg)
{
    memset(out, 0, sizeof *out);
    tc_buf p = { 0 };
    ledger_path(c, &p, "/get");
    tc_buf_query_bytes(&p, '?', "key", key, key_len);
    add_selector(&p, sel, arg);
    int rc = req_json(c, "GET", &p, NULL);
    if (rc != 0)
        return rc;
    json_t *j = parse_body(c);
    if (!j)
        return TALLY_EIO;
    rc = version_from(j, out);
    if (rc == 0 && json_bytes(j, "key", &out->key, &out->key_len) != 0)
        rc = tally_seterr(TALLY_EIO, "get: response has no key");
    json_decref(j);
    if (rc)
        tally_client_version_free(out);
    return rc;
}

/* Calls fn for each element of array `name` of j; 1 if fn stopped. */
static int each_version(json_t *j, const char *name, json_t *key_of, tally_client_version_fn fn,
                        void *ctx, size_t *count, json_t **last)
{
    json_t *arr = json_object_get(j, name);
    *count = json_array_size(arr);
    for (size_t i = 0; i < *count; i++) {
        json_t *o = json_array_get(arr, i);
        tally_client_version v;
        if (version_from(o, &v) != 0)
            return TALLY_ENOMEM;
        if (json_bytes(key_of ? key_of : o, "key", &v.key, &v.key_len) != 0) {
            tally_client_version_free(&v);
            return tally_seterr(TALLY_EIO, "response element without a key");
        }
        int stop = fn(ctx, &v);
        tally_client_version_free(&v);
        *last = o;
        if (stop)
            return 1;
    }
    return 0;
}

int tally_client_history(tally_client *c, uint64_t *out_total, const void *key, size_t key_len,
                         uint64_t start_rev, tally_client_version_fn fn, void *ctx)
{
    uint64_t total = 0, next = start_rev ? start_rev : 1;
    for (int page = 0; page < 1000000; page++) {
        tc_buf p = { 0 };
        ledger_path(c, &p, "/history");
        tc_buf_query_bytes(&p, '?', "key", key, key_len);
        tc_buf_printf(&p, "&start=%" PRIu64 "&limit=100", next);
        int rc = req_json(c, "GET", &p, NULL);
        if (rc != 0)
            return rc;
        json_t *j = parse_body(c);
        if (!j)
            return TALLY_EIO;
        total = json_u64(j, "total");
        size_t n = 0;
        json_t *last = NULL;
        rc = each_version(j, "revisions", j, fn, ctx, &n, &last);
        uint64_t last_rev = last ? json_u64(last, "rev") : 0;
        json_decref(j);
        if (rc < 0)
            return rc;
        if (rc == 1 || n == 0 || last_rev >= total || last_rev < next)
            break;
        next = last_rev + 1;
    }
    if (out_total)
        *out_total = total;
    return 0;
}

int tally_client_scan(tally_client *c, uint64_t *out_tx, const void *prefix, size_t prefix_len,
                      uint64_t as_of, tally_client_version_fn fn, void *ctx)
{
    uint8_t *after = NULL;
    size_t after_len = 0;
    uint64_t snap = as_of;
    int rc = 0;
    for (int page = 0; page < 10000000; page++) {
        tc_buf p = { 0 };
        ledger_path(c, &p, "/scan");
        tc_buf_query_bytes(&p, '?', "prefix", prefix, prefix_len);
        if (snap)
            tc_buf_printf(&p, "&tx=%" PRIu64, snap);
        if (after)
            tc_buf_query_bytes(&p, '&', "after", after, after_len);
        tc_buf_puts(&p, "&limit=1000");
        if ((rc = req_json(c, "GET", &p, NULL)) != 0)
            break;
        json_t *j = parse_body(c);
        if (!j) {
            rc = TALLY_EIO;
            break;
        }
        if (!snap)
            snap = json_u64(j, "tx");
        if (page == 0 && out_tx)
            *out_tx = json_u64(j, "tx");
        size_t n = 0;
        json_t *last = NULL;
        rc = each_version(j, "keys", NULL, fn, ctx, &n, &last);
        free(after);
        after = NULL;
        json_t *next = json_object_get(j, "next");
        int more = rc == 0 && n > 0 && next && !json_is_null(next);
        if (more && json_bytes(j, "next", &after, &after_len) != 0)
            more = 0;
        json_decref(j);
        if (rc == 1)
            rc = 0;
        if (!more || snap == 0)
            break;
    }
    free(after);
    return rc;
}

/* ---- unverified tx, state, proofs, checkpoint ---- */

static int raw(tally_client *c, char **out, tc_buf *p)
{
    *out = NULL;
    int rc = req_json(c, "GET", p, NULL);
    if (rc != 0)
        return rc;
    *out = strndup(c->body, c->body_len);
    return *out ? 0 : TALLY_ENOMEM;
}

int tally_client_tx_json(tally_client *c, char **out_json, uint64_t tx)
{
    tc_buf p = { 0 };
    tc_buf_printf(&p, "/v1/ledgers/%s/tx/%" PRIu64, c->ledger, tx);
    return raw(c, out_json, &p);
}

int tally_client_state_raw(tally_client *c, uint64_t *out_size, uint8_t root[TALLY_HASH_LEN])
{
    tc_buf p = { 0 };
    ledger_path(c, &p, "/state");
    int rc = req_json(c, "GET", &p, NULL);
    if (rc != 0)
        return rc;
    json_t *j = parse_body(c);
    const char *r = json_string_value(json_object_get(j, "root"));
    rc = r && strlen(r) == 64 && tc_unhex(r, 64, root) == 0
             ? 0 : tally_seterr(TALLY_EIO, "state: malformed response");
    *out_size = json_u64(j, "tx");
    json_decref(j);
    return rc;
}

int tally_client_proof_inclusion_json(tally_client *c, char **out_json, uint64_t tx,
                                      uint64_t size)
{
    tc_buf p = { 0 };
    ledger_path(c, &p, "/proof/inclusion");
    tc_buf_printf(&p, "?tx=%" PRIu64 "&size=%" PRIu64, tx, size);
    return raw(c, out_json, &p);
}

int tally_client_proof_consistency_json(tally_client *c, char **out_json, uint64_t old_size,
                                        uint64_t size)
{
    tc_buf p = { 0 };
    ledger_path(c, &p, "/proof/consistency");
    tc_buf_printf(&p, "?old=%" PRIu64 "&size=%" PRIu64, old_size, size);
    return raw(c, out_json, &p);
}

int tally_client_checkpoint(tally_client *c, char **out_note)
{
    tc_buf p = { 0 };
    ledger_path(c, &p, "/checkpoint");
    return raw(c, out_note, &p);
}

/* ---- verified calls ---- */

typedef struct vctx {
    tc_trust t;
    char id[33];
    int lock_fd;
    int have_file;
    int pin_fresh;        /* id from first contact, not stored yet (store_pin) */
    char *trusted;        /* the trusted note as loaded (a copy), or NULL */
    size_t trusted_len;
    char state_path[TC_PATH_MAX + 64];
} vctx;

static int id_ok(const char *id)
{
    return id && strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32;
}

static void pin_path(const tally_client *c, char *path, size_t len)
{
    snprintf(path, len, "%s/names/%s", c->key_dir, c->ledger);
}

/* The pinned id of c->ledger (*fresh = 0), or on first contact (*fresh = 1)
** what GET /v1/ledgers/L says, checked for form only and NOT stored: the pin
** is written by store_pin together with the first trusted state, once a
** checkpoint signed under the pinned key has named that id, so a lying or
** failed first answer leaves nothing behind. */
static int pin_ledger_file(tally_client *c, char id[33], int *fresh)
{
    char path[TC_PATH_MAX * 2];
    pin_path(c, path, sizeof path);
    char *have = NULL;
    size_t hl;
    *fresh = 0;
    int rc = tc_read_file(path, &have, &hl, 64);
    if (rc == 0) {
        have[strcspn(have, "\r\n")] = '\0';
        rc = id_ok(have) ? 0 : tally_seterr(TALLY_ECORRUPT, "%s: not a ledger id", path);
        snprintf(id, 33, "%s", have);
        free(have);
        return rc;
    }
    if (rc != TALLY_ENOTFOUND)
        return rc;
    tc_buf p = { 0 };
    ledger_path(c, &p, "");
    if ((rc = req_json(c, "GET", &p, NULL)) != 0)
        return rc;
    json_t *j = parse_body(c);
    if (!j)
        return TALLY_EIO;
    const char *nid = json_string_value(json_object_get(j, "id"));
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *origin = json_string_value(json_object_get(j, "origin"));
    char want[TC_ORIGIN_MAX];
    snprintf(want, sizeof want, "%s/ledger/%s", c->key_name, nid ? nid : "");
    if (!id_ok(nid) || !name || strcmp(name, c->ledger) != 0 ||
        (origin && strcmp(origin, want) != 0)) {
        json_decref(j);
        return tally_seterr(TALLY_EBADPROOF, "ledger '%s': the server's description (id, name, "
                            "origin) does not fit the pinned key %s", c->ledger, c->key_name);
    }
    snprintf(id, 33, "%s", nid);
    json_decref(j);
    *fresh = 1;
    return 0;
}

/* Stores the pin c->ledger -> id (first contact, with the first trusted
** state). Another process may have pinned the name meanwhile: the same id
** is fine, another one is refused (TALLY_EBADPROOF). */
static int store_pin(tally_client *c, const char id[33])
{
    char path[TC_PATH_MAX * 2], line[40];
    pin_path(c, path, sizeof path);
    snprintf(line, sizeof line, "%s\n", id);
    int rc = tc_write_atomic(path, line, 33, 0600, 1);
    if (rc == TALLY_ECONFLICT) { /* pinned meanwhile by another process */
        char other[33];
        int fresh;
        if ((rc = pin_ledger_file(c, other, &fresh)) != 0)
            return rc;
        if (strcmp(other, id) != 0)
            return tally_seterr(TALLY_EBADPROOF, "ledger '%s' was pinned to id %s meanwhile, "
                                "not %s", c->ledger, other, id);
    }
    if (rc == 0) {
        snprintf(c->pin_name, sizeof c->pin_name, "%s", c->ledger);
        memcpy(c->pin_id, id, 33);
    }
    return rc;
}

/* pin_ledger_file, remembered for the handle's current ledger name once
** stored (cache 1). */
static int pin_ledger(tally_client *c, char id[33], int *fresh)
{
    *fresh = 0;
    if (c->pin_id[0] && strcmp(c->pin_name, c->ledger) == 0) {
        memcpy(id, c->pin_id, 33);
        return 0;
    }
    int rc = pin_ledger_file(c, id, fresh);
    if (rc == 0 && !*fresh) {
        snprintf(c->pin_name, sizeof c->pin_name, "%s", c->ledger);
        memcpy(c->pin_id, id, 33);
    }
    return rc;
}

/* ---- the trusted state file and its cache (cache 2) ---- */

static void tc_state_cache_drop(tc_state_cache *k)
{
    if (k->fd >= 0)
        close(k->fd);
    free(k->note);
    memset(k, 0, sizeof *k);
    k->fd = -1;
}

static void ident_of(const struct stat *st, uint64_t *dev, uint64_t *ino, uint64_t *fsize,
                     int64_t t[4])
{
    *dev = (uint64_t)st->st_dev;
    *ino = (uint64_t)st->st_ino;
    *fsize = (uint64_t)st->st_size;
    t[0] = (int64_t)st->st_mtim.tv_sec;
    t[1] = (int64_t)st->st_mtim.tv_nsec;
    t[2] = (int64_t)st->st_ctim.tv_sec;
    t[3] = (int64_t)st->st_ctim.tv_nsec;
}

static int cache_matches(const tc_state_cache *k, const char *id, const struct stat *st)
{
    uint64_t dev, ino, fsize;
    int64_t t[4];
    ident_of(st, &dev, &ino, &fsize, t);
    return k->fd >= 0 && strcmp(k->id, id) == 0 && k->dev == dev && k->ino == ino &&
           k->fsize == fsize && k->mtime_s == t[0] && k->mtime_ns == t[1] &&
           k->ctime_s == t[2] && k->ctime_ns == t[3];
}

/* Takes over fd and note (malloc'ed) as the cached state of ledger id. */
static void cache_install(tally_client *c, const char *id, int fd, const struct stat *st,
                          char *note, size_t note_len, uint64_t size, const uint8_t root[32])
{
    tc_state_cache *k = &c->sc;
    tc_state_cache_drop(k);
    int64_t t[4];
    snprintf(k->id, sizeof k->id, "%s", id);
    k->fd = fd;
    ident_of(st, &k->dev, &k->ino, &k->fsize, t);
    k->mtime_s = t[0], k->mtime_ns = t[1], k->ctime_s = t[2], k->ctime_ns = t[3];
    k->note = note;
    k->note_len = note_len;
    k->size = size;
    memcpy(k->root, root, 32);
}

/* Reads and verifies the state file into the cache. TALLY_ENOTFOUND if absent. */
static int read_state(tally_client *c, vctx *v)
{
    int fd = open(v->state_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TALLY_ENOTFOUND
                               : tally_seterr(TALLY_EIO, "%s: %s", v->state_path, strerror(errno));
    struct stat st;
    char *b = NULL;
    size_t got = 0;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = tally_seterr(TALLY_EIO, "%s: not a regular file", v->state_path);
    else if ((uint64_t)st.st_size > NOTE_TEXT_MAX)
        rc = tally_seterr(TALLY_ETOOBIG, "%s: larger than %d bytes", v->state_path,
                          NOTE_TEXT_MAX);
    else if (!(b = malloc((size_t)st.st_size + 1)))
        rc = TALLY_ENOMEM;
    while (rc == 0 && got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = tally_seterr(TALLY_EIO, "%s: %s", v->state_path,
                              r < 0 ? strerror(errno) : "changed while read");
        else
            got += (size_t)r;
    }
    char why[TC_WHY_MAX];
    uint64_t size = 0;
    uint8_t root[32];
    if (rc == 0) {
        b[got] = '\0';
        if (tc_check_note(&v->t, b, got, &size, root, why) != 0)
            rc = tally_seterr(TALLY_ECORRUPT, "trusted state %s: %s (not reset: inspect or "
                              "remove it yourself)", v->state_path, why);
    }
    if (rc != 0) {
        free(b);
        close(fd);
        return rc;
    }
    cache_install(c, v->id, fd, &st, b, got, size, root);
    return 0;
}

/* v trusts note (malloc'd, taken; the previous trusted note is freed) of a
** tree of size with root, as read from the state file. */
static void v_trust(vctx *v, char *note, size_t note_len, uint64_t size, const uint8_t root[32])
{
    free(v->trusted);
    v->trusted = note;
    v->trusted_len = note_len;
    v->t.note = v->trusted;
    v->t.note_len = v->trusted_len;
    v->have_file = 1;
    v->t.size = size;
    memcpy(v->t.root, root, 32);
}

/* Loads v's trusted state: from the handle's cache when the file at
** state_path is still the one cached, else from the file. */
static int load_state(tally_client *c, vctx *v)
{
    tc_state_cache *k = &c->sc;
    free(v->trusted);
    v->trusted = NULL;
    v->trusted_len = 0;
    v->t.note = NULL;
    v->t.note_len = 0;
    v->have_file = 0;
    v->t.size = 0;
    memset(v->t.root, 0, 32);
    struct stat st;
    int rc = 0;
    if (stat(v->state_path, &st) != 0) {
        if (errno != ENOENT)
            return tally_seterr(TALLY_EIO, "%s: %s", v->state_path, strerror(errno));
        rc = TALLY_ENOTFOUND;
    } else if (!cache_matches(k, v->id, &st)) {
        rc = read_state(c, v);
    }
    if (rc == TALLY_ENOTFOUND) {
        if (strcmp(k->id, v->id) == 0)
            tc_state_cache_drop(k);
        return 0; /* first contact with this ledger: nothing trusted yet */
    }
    if (rc != 0)
        return rc;
    char *copy = malloc(k->note_len + 1);
    if (!copy)
        return TALLY_ENOMEM;
    memcpy(copy, k->note, k->note_len + 1);
    v_trust(v, copy, k->note_len, k->size, k->root);
    return 0;
}

static void v_end(vctx *v)
{
    tc_unlock(v->lock_fd);
    v->lock_fd = -1;
    free(v->trusted);
    v->trusted = NULL;
}

/* Pins the ledger and loads its trusted state; no lock (v_commit takes it). */
static int v_begin(tally_client *c, vctx *v)
{
    memset(v, 0, sizeof *v);
    v->lock_fd = -1;
    int rc = pin_ledger(c, v->id, &v->pin_fresh);
    if (rc != 0)
        return rc;
    snprintf(v->t.key_name, sizeof v->t.key_name, "%s", c->key_name);
    memcpy(v->t.pub, c->pub, 32);
    snprintf(v->t.origin, sizeof v->t.origin, "%s/ledger/%s", c->key_name, v->id);
    snprintf(v->state_path, sizeof v->state_path, "%s/%s", c->key_dir, v->id);
    if ((rc = load_state(c, v)) != 0)
        v_end(v);
    return rc;
}

static int v_fail(tally_client *c, vctx *v, const char *why, const char *body, size_t body_len,
                  const char *body2, size_t body2_len, const char *offending)
{
    char *off = offending ? NULL : tc_extract_checkpoint(body, body_len);
    tc_save_evidence(c, v->id, why, v->trusted, v->trusted_len, offending ? offending : off,
                     body, body_len, body2, body2_len);
    free(off);
    return TALLY_EBADPROOF;
}

/* cp was verified against the state loaded at v_begin, but another call
** stored another state (v->t now) meanwhile: the two must be one history.
** Equal sizes need equal roots; otherwise the smaller must be consistent
** with the larger (a consistency proof from the server, verified). */
static int reconcile(tally_client *c, vctx *v, const tc_checkpoint *cp)
{
    char why[TC_WHY_MAX], *cons = NULL;
    if (cp->size == v->t.size) {
        if (memcmp(cp->root, v->t.root, 32) == 0)
            return 0;
        snprintf(why, sizeof why, "checkpoint at size %" PRIu64 " has another root than the "
                 "trusted state stored meanwhile (fork)", cp->size);
        return v_fail(c, v, why, cp->note, cp->note_len, NULL, 0, cp->note);
    }
    int up = cp->size > v->t.size;  /* stored -> cp, else cp -> stored */
    tc_trust lo = v->t;
    if (!up) {
        lo.size = cp->size;
        memcpy(lo.root, cp->root, 32);
        lo.note = NULL;
    }
    const char *hi = up ? cp->note : v->trusted;
    size_t hi_len = up ? cp->note_len : v->trusted_len;
    int rc = 0;
    if (lo.size > 0 &&
        (rc = tally_client_proof_consistency_json(c, &cons, lo.size, up ? cp->size : v->t.size))
            != 0)
        return rc;
    tc_checkpoint out;
    rc = tc_verify_checkpoint(&lo, hi, hi_len, cons, cons ? strlen(cons) : 0, &out, why);
    if (rc == TALLY_EBADPROOF) {
        char w2[TC_WHY_MAX + 80];
        snprintf(w2, sizeof w2, "against the trusted state stored meanwhile: %s", why);
        rc = v_fail(c, v, w2, cons ? cons : cp->note, cons ? strlen(cons) : cp->note_len, NULL,
                    0, cp->note);
    } else if (rc == 0) {
        tc_checkpoint_free(&out);
    }
    free(cons);
    return rc;
}

/* Moves the trusted state forward to cp (never back). Under the ledger's
** lock, re-reads what is stored (another call may have moved it since
** v_begin), relates cp to it if so, and replaces it atomically if cp is
** larger. Afterwards v holds the stored state. */
static int v_commit(tally_client *c, vctx *v, const tc_checkpoint *cp)
{
    if (v->pin_fresh) { /* first contact: cp, signed, names v->id; pin it now */
        int rc = store_pin(c, v->id);
        if (rc != 0)
            return rc;
        v->pin_fresh = 0;
    }
    if (v->have_file && cp->size <= v->t.size)
        return 0; /* verified equal to the trusted state: nothing to move */
    if (v->lock_fd < 0) {
        char lock[TC_PATH_MAX + 80];
        snprintf(lock, sizeof lock, "%s.lock", v->state_path);
        if ((v->lock_fd = tc_lock(lock)) < 0)
            return tally_seterr(TALLY_EIO, "cannot lock %s: %s", lock, strerror(errno));
    }
    int had = v->have_file;
    uint64_t had_size = v->t.size;
    uint8_t had_root[32];
    memcpy(had_root, v->t.root, 32);
    int rc = load_state(c, v);
    if (rc != 0)
        return rc;
    if (v->have_file && (!had || v->t.size != had_size || memcmp(v->t.root, had_root, 32) != 0) &&
        (rc = reconcile(c, v, cp)) != 0)
        return rc;
    if (v->have_file && cp->size <= v->t.size)
        return 0; /* what is stored is as new as cp, and consistent with it */
    char *note = malloc(cp->note_len + 1), *copy = malloc(cp->note_len + 1);
    if (!note || !copy) {
        free(note);
        free(copy);
        return TALLY_ENOMEM;
    }
    memcpy(note, cp->note, cp->note_len);
    note[cp->note_len] = '\0';
    memcpy(copy, note, cp->note_len + 1);
    int fd = -1;
    struct stat st;
    if ((rc = tc_write_atomic_keep(v->state_path, cp->note, cp->note_len, 0600, &fd)) != 0) {
        free(note);
        free(copy);
        return rc;
    }
    if (fstat(fd, &st) == 0) {
        cache_install(c, v->id, fd, &st, note, cp->note_len, cp->size, cp->root);
    } else {
        close(fd);
        free(note);
        if (strcmp(c->sc.id, v->id) == 0)
            tc_state_cache_drop(&c->sc);
    }
    v_trust(v, copy, cp->note_len, cp->size, cp->root);
    return 0;
}

static int latest_verified(tally_client *c, vctx *v, tc_checkpoint *cp);

/* A verified request failed with rc. A server refusing our trusted size
** (400) may have lost or replaced the ledger: its checkpoint tells (rollback,
** fork, another key: TALLY_EBADPROOF); otherwise rc stays, with its message.
** Either way the trusted state does not move (the call failed). */
static int v_refused(tally_client *c, vctx *v, int rc)
{
    if (c->status == 400 && v->t.size > 0) {
        char msg[512];
        tc_checkpoint cp;
        snprintf(msg, sizeof msg, "%s", tally_errmsg());
        int vr = latest_verified(c, v, &cp); /* checked, not trusted: the call failed */
        tc_checkpoint_free(&cp);
        if (vr == TALLY_EBADPROOF)
            return TALLY_EBADPROOF;
        tally_seterr(rc, "%s", msg);
    }
    return rc;
}

/* Runs a bundle request and its verification; on success *b is filled and
** the state moved forward. */
static int v_bundle(tally_client *c, vctx *v, const char *method, tc_buf *path, json_t *body,
                    const tc_expect *e, tc_bundle *b)
{
    memset(b, 0, sizeof *b);
    int rc = req_json(c, method, path, body);
    if (rc != 0)
        return v_refused(c, v, rc);
    char why[TC_WHY_MAX];
    rc = tc_verify_bundle(&v->t, e, c->body, c->body_len, b, why);
    if (rc == TALLY_EBADPROOF)
        return v_fail(c, v, why, c->body, c->body_len, NULL, 0, NULL);
    if (rc != 0)
        return tally_seterr(rc, "verifying the response");
    return v_commit(c, v, &b->cp); /* on failure *b is still the verified bundle */
}

int tally_client_trusted_state(tally_client *c, uint64_t *out_size, uint8_t root[TALLY_HASH_LEN])
{
    vctx v;
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    *out_size = v.t.size;
    memcpy(root, v.t.root, TALLY_HASH_LEN);
    v_end(&v);
    return 0;
}

/* The latest checkpoint, verified against v's trusted state (signature,
** identity, and consistency with it) into *cp, which the caller frees with
** tc_checkpoint_free; the trusted state does not move. With v locked. */
static int latest_verified(tally_client *c, vctx *v, tc_checkpoint *cp)
{
    char *note = NULL, *cons = NULL, why[TC_WHY_MAX];
    size_t note_len = 0, cons_len = 0;
    uint64_t size;
    uint8_t r[32];
    memset(cp, 0, sizeof *cp);
    tc_buf p = { 0 };
    ledger_path(c, &p, "/checkpoint");
    int rc = raw(c, &note, &p);
    if (rc != 0)
        goto out;
    note_len = strlen(note);
    if (tc_check_note(&v->t, note, note_len, &size, r, why) != 0) {
        rc = v_fail(c, v, why, note, note_len, NULL, 0, note);
        goto out;
    }
    if (size > v->t.size && v->t.size > 0) {
        if ((rc = tally_client_proof_consistency_json(c, &cons, v->t.size, size)) != 0)
            goto out;
        cons_len = strlen(cons);
    }
    rc = tc_verify_checkpoint(&v->t, note, note_len, cons, cons_len, cp, why);
    if (rc == TALLY_EBADPROOF)
        rc = v_fail(c, v, why, note, note_len, cons, cons_len, note);
out:
    free(note);
    free(cons);
    return rc;
}

/* The latest checkpoint verified against v's trusted state, which then moves
** forward; with v locked. */
static int state_locked(tally_client *c, vctx *v, uint64_t *out_size, uint8_t root[32],
                        char **out_note)
{
    tc_checkpoint cp;
    int rc = latest_verified(c, v, &cp);
    if (rc == 0 && (rc = v_commit(c, v, &cp)) == 0) {
        *out_size = cp.size;
        memcpy(root, cp.root, 32);
        if (out_note) {
            *out_note = cp.note;
            cp.note = NULL;
        }
    }
    tc_checkpoint_free(&cp);
    return rc;
}

int tally_client_verified_state(tally_client *c, uint64_t *out_size,
                                uint8_t root[TALLY_HASH_LEN], char **out_note)
{
    vctx v;
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    rc = state_locked(c, &v, out_size, root, out_note);
    v_end(&v);
    return rc;
}

/* Parses a proof JSON response ({"index"|"old","size","proof",...} plus the
** named hashes) into *p; returns 0 or -1 with why. */
static int parse_proof(const char *body, size_t len, const char *first, tally_proof *p,
                       const char *h1, uint8_t o1[32], const char *h2, uint8_t o2[32],
                       char why[TC_WHY_MAX])
{
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    json_t *arr = json_object_get(j, "proof");
    const char *s1 = json_string_value(json_object_get(j, h1));
    const char *s2 = json_string_value(json_object_get(j, h2));
    json_t *a = json_object_get(j, first), *n = json_object_get(j, "size");
    int ok = json_is_array(arr) && json_array_size(arr) <= TALLY_PROOF_MAX && s1 && s2 &&
             strlen(s1) == 64 && strlen(s2) == 64 && tc_unhex(s1, 64, o1) == 0 &&
             tc_unhex(s2, 64, o2) == 0 && json_is_integer(a) && json_is_integer(n) &&
             json_integer_value(a) >= 0 && json_integer_value(n) >= 0;
    if (ok) {
        p->index = (uint64_t)json_integer_value(a);
        p->size = (uint64_t)json_integer_value(n);
        p->len = json_array_size(arr);
        for (size_t i = 0; ok && i < p->len; i++) {
            const char *h = json_string_value(json_array_get(arr, i));
            ok = h && strlen(h) == 64 && tc_unhex(h, 64, p->path[i]) == 0;
        }
    }
    json_decref(j);
    if (!ok)
        snprintf(why, TC_WHY_MAX, "malformed proof response");
    return ok ? 0 : -1;
}

/* Anchors root_s (claimed root at size s) to the verified (t, root_t), the
** root of the checkpoint cp_note (kept as the offending note if it fails). */
static int anchor(tally_client *c, vctx *v, uint64_t s, const uint8_t root_s[32], uint64_t t,
                  const uint8_t root_t[32], const char *body1, size_t len1, const char *cp_note)
{
    char why[TC_WHY_MAX], *cons = NULL;
    if (s == t) {
        if (memcmp(root_s, root_t, 32) == 0)
            return 0;
        snprintf(why, sizeof why, "root at size %" PRIu64 " differs from the verified checkpoint's",
                 s);
        return v_fail(c, v, why, body1, len1, NULL, 0, cp_note);
    }
    int rc = tally_client_proof_consistency_json(c, &cons, s, t);
    if (rc != 0)
        return rc;
    tally_proof p;
    uint8_t o1[32], o2[32];
    if (parse_proof(cons, strlen(cons), "old", &p, "old_root", o1, "root", o2, why) != 0)
        rc = v_fail(c, v, why, body1, len1, cons, strlen(cons), cp_note);
    else if (p.index != s || p.size != t ||
             rfc6962_verify_consistency(s, t, root_s, root_t, (const rfc6962_hash *)p.path,
                                        p.len) != 0) {
        snprintf(why, sizeof why, "root at size %" PRIu64 " is not consistent with the verified"
                 " checkpoint at %" PRIu64, s, t);
        rc = v_fail(c, v, why, body1, len1, cons, strlen(cons), cp_note);
    }
    free(cons);
    return rc;
}

/* The verified proofs: an inclusion proof of tx `a` (cons == 0) or a
** consistency proof from size `a` (cons == 1), both up to `size` (0: the
** trusted size), checked and then anchored to the trusted state. h1_out is
** the leaf hash or the old root, root_out the root at `size`; they and *out
** are written only on success (the server's claims stay in locals until
** then). */
static int verified_proof(tally_client *c, int cons, tally_proof *out,
                          uint8_t h1_out[TALLY_HASH_LEN], uint8_t root_out[TALLY_HASH_LEN],
                          uint64_t a, uint64_t size)
{
    vctx v;
    tc_checkpoint cp;
    tally_proof pr;
    uint8_t h1[TALLY_HASH_LEN], root[TALLY_HASH_LEN];
    memset(&cp, 0, sizeof cp);
    char *body = NULL, why[TC_WHY_MAX];
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    /* The latest checkpoint becomes the trusted state only once the proof
    ** checks out too: a failed call leaves the trusted state as it was. */
    if ((rc = latest_verified(c, &v, &cp)) != 0)
        goto out;
    uint64_t t = cp.size;
    if (size == 0)
        size = t;
    if (a == 0 || a > size || size > t) {
        rc = tally_seterr(TALLY_ERANGE, cons ? "sizes %" PRIu64 " -> %" PRIu64 ": the verified "
                                               "ledger has %" PRIu64 " transactions"
                                             : "tx %" PRIu64 " in size %" PRIu64 ": the verified "
                                               "ledger has %" PRIu64 " transactions",
                          a, size, t);
        goto out;
    }
    rc = cons ? tally_client_proof_consistency_json(c, &body, a, size)
              : tally_client_proof_inclusion_json(c, &body, a, size);
    if (rc != 0)
        goto out;
    if (parse_proof(body, strlen(body), cons ? "old" : "index", &pr,
                    cons ? "old_root" : "leaf_hash", h1, "root", root, why) != 0) {
        rc = v_fail(c, &v, why, body, strlen(body), NULL, 0, cp.note);
        goto out;
    }
    const rfc6962_hash *path = (const rfc6962_hash *)pr.path;
    int bad = cons ? pr.index != a || pr.size != size ||
                         rfc6962_verify_consistency(a, size, h1, root, path, pr.len) != 0
                   : pr.index != a - 1 || pr.size != size ||
                         rfc6962_verify_inclusion(h1, a - 1, size, path, pr.len, root) != 0;
    if (bad) {
        if (cons)
            snprintf(why, sizeof why, "consistency proof %" PRIu64 " -> %" PRIu64
                     " does not verify", a, size);
        else
            snprintf(why, sizeof why, "inclusion proof of tx %" PRIu64 " in size %" PRIu64
                     " does not verify", a, size);
        rc = v_fail(c, &v, why, body, strlen(body), NULL, 0, cp.note);
        goto out;
    }
    if ((rc = anchor(c, &v, size, root, t, cp.root, body, strlen(body), cp.note)) == 0 &&
        (rc = v_commit(c, &v, &cp)) == 0) {
        *out = pr;
        memcpy(h1_out, h1, TALLY_HASH_LEN);
        memcpy(root_out, root, TALLY_HASH_LEN);
    }
out:
    tc_checkpoint_free(&cp);
    free(body);
    v_end(&v);
    return rc;
}

int tally_client_verified_inclusion(tally_client *c, tally_proof *out,
                                    uint8_t leaf_hash[TALLY_HASH_LEN],
                                    uint8_t root[TALLY_HASH_LEN], uint64_t tx, uint64_t size)
{
    return verified_proof(c, 0, out, leaf_hash, root, tx, size);
}

int tally_client_verified_consistency(tally_client *c, tally_proof *out,
                                      uint8_t old_root[TALLY_HASH_LEN],
                                      uint8_t root[TALLY_HASH_LEN], uint64_t old_size,
                                      uint64_t size)
{
    return verified_proof(c, 1, out, old_root, root, old_size, size);
}

static int version_of_bundle(tally_client_version *out, tc_bundle *b)
{
    tc_entry *x = &b->entries[0];
    out->tx = b->tx;
    out->rev = b->rev;
    out->ts_ns = b->ts_ns;
    out->deleted = x->deleted;
    out->key = x->key;
    out->key_len = x->key_len;
    out->value = x->value;
    out->value_len = x->value_len;
    x->key = x->value = NULL; /* moved */
    return 0;
}

int tally_client_verified_get(tally_client *c, tally_client_version *out, const void *key,
                              size_t key_len, int sel, uint64_t arg)
{
    memset(out, 0, sizeof *out);
    vctx v;
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    tc_buf p = { 0 };
    ledger_path(c, &p, "/verified/get");
    tc_buf_query_bytes(&p, '?', "key", key, key_len);
    add_selector(&p, sel, arg);
    tc_buf_printf(&p, "&trusted=%" PRIu64, v.t.size);
    tc_expect e = { .kind = TC_GET, .key = key, .key_len = key_len };
    e.sel = sel == TALLY_CLIENT_AS_OF_TX ? TC_SEL_TX : sel == TALLY_CLIENT_REV ? TC_SEL_REV
          : sel == TALLY_CLIENT_AT_TIME ? TC_SEL_AT : TC_SEL_LATEST;
    e.sel_val = arg;
    tc_bundle b;
    rc = v_bundle(c, &v, "GET", &p, NULL, &e, &b);
    if (rc == 0)
        version_of_bundle(out, &b);
    tc_bundle_free(&b);
    v_end(&v);
    return rc;
}

/* {"keys":[…]} when every key is UTF-8, else {"keys_hex":[…]}. */
static json_t *getmany_body(const tally_client_key *keys, size_t n)
{
    int text = 1;
    for (size_t i = 0; i < n && text; i++)
        text = tc_utf8_valid(keys[i].key, keys[i].key_len);
    json_t *arr = json_array(), *b = json_object();
    char *hex = NULL;
    for (size_t i = 0; i < n && arr; i++) {
        if (text) {
            json_array_append_new(arr, json_stringn(keys[i].key, keys[i].key_len));
            continue;
        }
        char *h = realloc(hex, 2 * keys[i].key_len + 1);
        if (!h)
            break;
        hex = h;
        tc_hex(hex, keys[i].key, keys[i].key_len);
        json_array_append_new(arr, json_string(hex));
    }
    free(hex);
    if (!arr || !b || json_array_size(arr) != n) {
        json_decref(arr);
        json_decref(b);
        return NULL;
    }
    json_object_set_new(b, text ? "keys" : "keys_hex", arr);
    return b;
}

int tally_client_verified_get_many(tally_client *c, tally_client_version *out,
                                   uint64_t *out_size, const tally_client_key *keys, size_t n,
                                   int sel, uint64_t arg)
{
    if (n)
        memset(out, 0, n * sizeof *out);
    if (n == 0 || n > TALLY_CLIENT_GETMANY_MAX)
        return tally_seterr(TALLY_EINVAL, "a batched get takes 1..%d keys",
                            TALLY_CLIENT_GETMANY_MAX);
    if (sel == TALLY_CLIENT_REV)
        return tally_seterr(TALLY_EINVAL, "a batched get cannot select revisions (per key)");
    for (size_t i = 0; i < n; i++)
        if (keys[i].key_len == 0 || keys[i].key_len > TALLY_KEY_BYTES_MAX)
            return tally_seterr(TALLY_EINVAL, "key %zu: keys have 1..%u bytes", i,
                                TALLY_KEY_BYTES_MAX);
    tc_expect *e = calloc(n, sizeof *e);
    tc_bundle *items = calloc(n, sizeof *items);
    int *found = calloc(n, sizeof *found);
    json_t *body = getmany_body(keys, n);
    vctx v;
    int rc = !e || !items || !found || !body ? tally_seterr(TALLY_ENOMEM, "a batched get")
                                             : v_begin(c, &v);
    if (rc != 0) {
        json_decref(body);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        e[i].kind = TC_GET;
        e[i].key = keys[i].key;
        e[i].key_len = keys[i].key_len;
        e[i].sel = sel == TALLY_CLIENT_AS_OF_TX ? TC_SEL_TX
                 : sel == TALLY_CLIENT_AT_TIME  ? TC_SEL_AT : TC_SEL_LATEST;
        e[i].sel_val = arg;
    }
    tc_buf p = { 0 };
    ledger_path(c, &p, "/verified/getmany");
    tc_buf_printf(&p, "?trusted=%" PRIu64, v.t.size);
    add_selector(&p, sel, arg);
    c->accept_bundles = 1;
    rc = req_json(c, "POST", &p, body);
    c->accept_bundles = 0; /* also when the request was never sent */
    if (rc != 0)
        rc = v_refused(c, &v, rc);
    tc_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    char why[TC_WHY_MAX];
    if (rc == 0) {
        rc = tc_verify_batch(&v.t, e, n, c->body, c->body_len, &cp, items, found, why);
        if (rc == TALLY_EBADPROOF)
            rc = v_fail(c, &v, why, c->body, c->body_len, NULL, 0, NULL);
        else if (rc != 0)
            rc = tally_seterr(rc, "verifying the response");
        else
            rc = v_commit(c, &v, &cp);
    }
    if (rc == 0 && out_size)
        *out_size = cp.size;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (found[i])
            version_of_bundle(&out[i], &items[i]);
    for (size_t i = 0; i < n; i++)
        tc_bundle_free(&items[i]);
    tc_checkpoint_free(&cp);
    v_end(&v);
out:
    free(e);
    free(items);
    free(found);
    return rc;
}

/* What a verified write's transaction must be newer than: *after, the size
** of the latest checkpoint, verified against v's trusted state (which does
** not move), and *ts_min, the client's clock now less the allowed skew (0:
** not checked). So no transaction that existed before the write was sent
** can be passed off as its acknowledgement: not one below a fresh
** checkpoint, and not an older one even if that checkpoint was stale. */
static int write_floor(tally_client *c, vctx *v, uint64_t *after, uint64_t *ts_min)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    uint64_t skew_ns = c->clock_skew_ms < 0 ? UINT64_MAX : (uint64_t)c->clock_skew_ms * 1000000u;
    *ts_min = now_ns > skew_ns ? now_ns - skew_ns : 0;
    tc_checkpoint cp;
    int rc = latest_verified(c, v, &cp);
    if (rc == 0)
        *after = cp.size;
    tc_checkpoint_free(&cp);
    return rc;
}

int tally_client_verified_set(tally_client *c, uint64_t *out_tx, const tally_client_entry *e,
                              size_t n, const char *meta)
{
    if (n == 0 || n > TALLY_TX_ENTRIES_MAX)
        return tally_seterr(TALLY_EINVAL, "a transaction needs 1..%u entries",
                            TALLY_TX_ENTRIES_MAX);
    tc_sent *sent = calloc(n, sizeof *sent);
    if (!sent)
        return TALLY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        sent[i].key = e[i].key;
        sent[i].key_len = e[i].key_len;
        sent[i].value = e[i].value;
        sent[i].value_len = e[i].value_len;
    }
    json_t *body = set_body(e, n, meta);
    if (!body) {
        free(sent);
        return meta_refused();
    }
    vctx v;
    uint64_t after = 0, ts_min = 0;
    int rc = v_begin(c, &v);
    if (rc == 0 && (rc = write_floor(c, &v, &after, &ts_min)) != 0)
        v_end(&v);
    if (rc != 0) {
        json_decref(body);
        free(sent);
        return rc;
    }
    json_object_set_new(body, "trusted", json_integer((json_int_t)v.t.size));
    tc_buf p = { 0 };
    ledger_path(c, &p, "/verified/set");
    tc_expect x = { .kind = TC_SET, .sent = sent, .n_sent = n, .meta = meta,
                    .meta_len = meta ? strlen(meta) : 0, .after = after, .ts_min = ts_min };
    tc_bundle b;
    rc = v_bundle(c, &v, "POST", &p, body, &x, &b);
    if (rc == 0 || (b.tx && out_tx)) {
        if (out_tx) /* verified, also when storing the state failed afterwards */
            *out_tx = b.tx;
    } else if (rc == TALLY_EBADPROOF && out_tx) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tally_errmsg());
        json_error_t err;
        json_t *j = json_loadb(c->body, c->body_len, 0, &err);
        *out_tx = json_u64(j, "tx");
        json_decref(j);
        tally_seterr(TALLY_EBADPROOF, "%s", msg);
    }
    tc_bundle_free(&b);
    v_end(&v);
    free(sent);
    return rc;
}

/* "/v1/ledgers/<ledger>/verified/tx/<tx>?trusted=<trusted>" */
static void tx_bundle_path(const tally_client *c, tc_buf *p, uint64_t tx, uint64_t trusted)
{
    ledger_path(c, p, "/verified/tx/");
    tc_buf_printf(p, "%" PRIu64 "?trusted=%" PRIu64, tx, trusted);
}

static int verified_tx_expect(tally_client *c, vctx *v, uint64_t tx, const tc_expect *e,
                              tc_bundle *b)
{
    tc_buf p = { 0 };
    tx_bundle_path(c, &p, tx, v->t.size);
    return v_bundle(c, v, "GET", &p, NULL, e, b);
}

int tally_client_verified_del(tally_client *c, uint64_t *out_tx, const void *key,
                              size_t key_len, uint64_t if_rev)
{
    vctx v;
    uint64_t tx = 0, after = 0, ts_min = 0;
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    if ((rc = write_floor(c, &v, &after, &ts_min)) == 0 &&
        (rc = tally_client_del(c, &tx, key, key_len, if_rev)) == 0) {
        if (out_tx)
            *out_tx = tx;
        tc_sent s = { key, key_len, "", 0, 1 };
        tc_expect e = { .kind = TC_SET, .tx = tx, .sent = &s, .n_sent = 1, .after = after,
                        .ts_min = ts_min };
        tc_bundle b;
        if (tx == 0)
            rc = v_fail(c, &v, "delete acknowledged without a transaction id", c->body,
                        c->body_len, NULL, 0, NULL);
        else {
            rc = verified_tx_expect(c, &v, tx, &e, &b);
            tc_bundle_free(&b);
        }
    }
    v_end(&v);
    return rc;
}

/* Moves a verified TC_TX bundle's header and entries into *out (the entry
** bytes are taken from b). 0 or TALLY_ENOMEM (then *out is freed). */
static int tx_from_bundle(tally_client_tx *out, tc_bundle *b)
{
    memset(out, 0, sizeof *out);
    out->tx = b->tx;
    out->ts_ns = b->ts_ns;
    out->entry_count = b->entry_count;
    memcpy(out->hash, b->tx_hash, 32);
    memcpy(out->prev_hash, b->prev_hash, 32);
    memcpy(out->entries_root, b->entries_root, 32);
    out->meta = malloc(b->tx_meta_len + 1);
    out->entries = calloc(b->n_entries ? b->n_entries : 1, sizeof *out->entries);
    if (!out->meta || !out->entries) {
        tally_client_tx_free(out);
        return TALLY_ENOMEM;
    }
    if (b->tx_meta_len)
        memcpy(out->meta, b->tx_meta, b->tx_meta_len);
    out->meta[b->tx_meta_len] = '\0';
    out->meta_len = b->tx_meta_len;
    for (size_t i = 0; i < b->n_entries; i++) {
        tc_entry *x = &b->entries[i];
        tally_client_tx_entry *o = &out->entries[i];
        o->index = x->index;
        o->ns = x->ns;
        o->deleted = x->deleted;
        o->key = x->key, o->key_len = x->key_len;
        o->value = x->value, o->value_len = x->value_len;
        o->meta = x->meta, o->meta_len = x->meta_len;
        memcpy(o->leaf_hash, x->leaf_hash, 32);
        x->key = x->value = x->meta = NULL;
    }
    return 0;
}

int tally_client_verified_tx(tally_client *c, tally_client_tx *out, uint64_t tx)
{
    memset(out, 0, sizeof *out);
    vctx v;
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    tc_expect e = { .kind = TC_TX, .tx = tx };
    tc_bundle b;
    if ((rc = verified_tx_expect(c, &v, tx, &e, &b)) == 0)
        rc = tx_from_bundle(out, &b);
    tc_bundle_free(&b);
    v_end(&v);
    return rc;
}

/* One tx of a walk: GET verified/tx/n with trusted = cp's size, checked
** against trust `at` (cp: its key, origin, size and root), never stored. */
static int walk_tx(tally_client *c, vctx *v, const tc_trust *at, const tc_checkpoint *cp,
                   uint64_t n, tally_client_tx *out)
{
    tc_buf p = { 0 };
    tx_bundle_path(c, &p, n, cp->size);
    int rc = req_json(c, "GET", &p, NULL);
    if (rc != 0)
        return rc;
    tc_expect e = { .kind = TC_TX, .tx = n };
    tc_bundle b;
    char why[TC_WHY_MAX];
    rc = tc_verify_bundle(at, &e, c->body, c->body_len, &b, why);
    if (rc == TALLY_EBADPROOF) {
        char w2[TC_WHY_MAX + 64];
        snprintf(w2, sizeof w2, "tx %" PRIu64 " against the checkpoint of size %" PRIu64 ": %s",
                 n, cp->size, why);
        return v_fail(c, v, w2, c->body, c->body_len, cp->note, cp->note_len, NULL);
    }
    if (rc != 0)
        return tally_seterr(rc, "verifying tx %" PRIu64, n);
    rc = tx_from_bundle(out, &b);
    tc_bundle_free(&b);
    return rc;
}

int tally_client_verified_walk(tally_client *c, tally_client_walk_fn fn, void *arg)
{
    vctx v;
    int rc = v_begin(c, &v);
    if (rc != 0)
        return rc;
    tc_checkpoint cp;
    if ((rc = latest_verified(c, &v, &cp)) != 0)
        goto out;
    uint64_t from = 1;
    if ((rc = fn(arg, NULL, cp.size, cp.root, &from)) != 0)
        goto out;
    tc_trust at = v.t; /* each tx is proven in a tree consistent with cp */
    at.size = cp.size;
    memcpy(at.root, cp.root, 32);
    at.note = cp.note;
    at.note_len = cp.note_len;
    for (uint64_t n = from ? from : 1; n <= cp.size; n++) {
        tally_client_tx t;
        if ((rc = walk_tx(c, &v, &at, &cp, n, &t)) != 0)
            goto out;
        rc = fn(arg, &t, cp.size, cp.root, NULL);
        tally_client_tx_free(&t);
        if (rc != 0)
            goto out;
    }
    rc = v_commit(c, &v, &cp);
out:
    tc_checkpoint_free(&cp);
    v_end(&v);
    return rc;
}

/* ---- history and scan, every row proven ---- */

/* The server's list contradicted what its own proof showed: evidence (the
** proven answer, last in c->body, and the checkpoint it was proven under:
** the one it carries, else the trusted state it just became) and
** TALLY_EBADPROOF. */
static int claim_fail(tally_client *c, const char *why)
{
    vctx v;
    if (v_begin(c, &v) != 0)
        return tally_seterr(TALLY_EBADPROOF, "%s", why);
    char *cp = tc_extract_checkpoint(c->body, c->body_len);
    int rc = v_fail(c, &v, why, c->body, c->body_len, NULL, 0, cp ? cp : v.trusted);
    free(cp);
    v_end(&v);
    return rc;
}

/* A listed row and the version a proof showed for it agree (the time too
** when the list carries it: history does, scan does not). */
static int same_version(const tally_client_version *claim, const tally_client_version *v,
                        int check_ts)
{
    return claim->tx == v->tx && (!check_ts || claim->ts_ns == v->ts_ns) &&
           !claim->deleted == !v->deleted &&
           claim->key_len == v->key_len && memcmp(claim->key, v->key, v->key_len) == 0 &&
           (claim->deleted || (claim->value_len == v->value_len &&
                               (v->value_len == 0 ||
                                memcmp(claim->value, v->value, v->value_len) == 0)));
}

typedef struct vlist {
    tally_client *c;
    tally_client_version_fn fn;
    void *ctx;
    int rc;                       /* the first failure, kept for the caller */
    const void *want; size_t want_len; /* history: the key asked for; scan: the prefix */
    uint64_t next_rev;            /* history: the revision the next row must carry */
    uint64_t last_tx, last_ts;    /* history: the previous row's (0: none yet) */
    uint8_t *last_key;            /* scan: the previous row's key (malloc'ed) or NULL */
    size_t last_key_len;
    uint64_t as_of;               /* scan: the snapshot */
    tally_client_version *held;   /* scan: rows waiting for their batch proof */
    size_t n, held_bytes;
} vlist;

#define VSCAN_HELD_BYTES_MAX (16u << 20) /* values held for one getmany proof */

/* The list itself broke a rule no honest server breaks (another key, rows
** out of order, a repeat): TALLY_EBADPROOF with evidence (the list's page). */
static int list_fail(vlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int list_fail(vlist *l, const char *fmt, ...)
{
    char why[TC_WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    l->rc = claim_fail(l->c, why);
    return 1;
}

/* A tombstone cannot be fetched by revision (verified/get answers 404): its
** transaction is, and must hold a key-value tombstone of the key at the
** claimed time. 0, or TALLY_EBADPROOF (evidence) and the verified call's. */
static int vh_tombstone(vlist *l, const tally_client_version *claim)
{
    tally_client_tx t;
    int rc = tally_client_verified_tx(l->c, &t, claim->tx);
    if (rc != 0)
        return rc;
    int found = 0;
    for (uint32_t i = 0; i < t.entry_count && !found; i++) {
        const tally_client_tx_entry *e = &t.entries[i];
        found = e->ns == TALLY_NS_KV && e->deleted && e->key_len == claim->key_len &&
                memcmp(e->key, claim->key, e->key_len) == 0;
    }
    found = found && t.ts_ns == claim->ts_ns;
    tally_client_tx_free(&t);
    if (found)
        return 0;
    char why[TC_WHY_MAX];
    snprintf(why, sizeof why, "history lists revision %" PRIu64 " as a deletion in tx %" PRIu64
             ", which holds no such tombstone (or has another time)", claim->rev, claim->tx);
    return claim_fail(l->c, why);
}

/* One history row: the key asked for, the next revision number, a later tx
** and no earlier time than the row before (so rows cannot be reordered,
** repeated or taken from another key), then proven. */
static int vh_row(void *arg, const tally_client_version *claim)
{
    vlist *l = arg;
    if (claim->key_len != l->want_len || memcmp(claim->key, l->want, l->want_len) != 0)
        return list_fail(l, "history of one key lists a row of another key");
    if (claim->rev != l->next_rev)
        return list_fail(l, "history lists revision %" PRIu64 " where %" PRIu64 " comes next",
                         claim->rev, l->next_rev);
    if (l->last_tx && (claim->tx <= l->last_tx || claim->ts_ns < l->last_ts))
        return list_fail(l, "history lists revision %" PRIu64 " (tx %" PRIu64 ") after tx %"
                         PRIu64 ": not in commit order", claim->rev, claim->tx, l->last_tx);
    tally_client_version v;
    memset(&v, 0, sizeof v);
    int rc = claim->deleted ? vh_tombstone(l, claim)
                            : tally_client_verified_get(l->c, &v, claim->key, claim->key_len,
                                                        TALLY_CLIENT_REV, claim->rev);
    if (rc == 0 && !claim->deleted && !same_version(claim, &v, 1)) {
        char why[TC_WHY_MAX];
        snprintf(why, sizeof why, "history lists revision %" PRIu64 " as tx %" PRIu64
                 ", its proof shows tx %" PRIu64 " with another value or time", claim->rev,
                 claim->tx, v.tx);
        rc = claim_fail(l->c, why);
    }
    tally_client_version_free(&v);
    if (rc != 0) {
        l->rc = rc;
        return 1;
    }
    l->next_rev++;
    l->last_tx = claim->tx;
    l->last_ts = claim->ts_ns;
    return l->fn(l->ctx, claim);
}

int tally_client_verified_history(tally_client *c, uint64_t *out_total, const void *key,
                                  size_t key_len, uint64_t start_rev,
                                  tally_client_version_fn fn, void *ctx)
{
    vlist l = { .c = c, .fn = fn, .ctx = ctx, .want = key, .want_len = key_len,
                .next_rev = start_rev ? start_rev : 1 };
    int rc = tally_client_history(c, out_total, key, key_len, start_rev, vh_row, &l);
    return l.rc ? l.rc : rc;
}

static void vs_drop(vlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        tally_client_version_free(&l->held[i]);
    l->n = 0;
    l->held_bytes = 0;
}

/* Proves rows h[0..n) with verified/getmany as of the snapshot, halving the
** batch when the answer would be too large. 0 or an error (evidence saved
** for a row that disagrees with its proof). */
static int vs_prove(vlist *l, const tally_client_version *h, size_t n)
{
    tally_client_key *keys = calloc(n, sizeof *keys);
    tally_client_version *got = calloc(n, sizeof *got);
    int rc = keys && got ? 0 : TALLY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        keys[i].key = h[i].key, keys[i].key_len = h[i].key_len;
    if (rc == 0)
        rc = tally_client_verified_get_many(l->c, got, NULL, keys, n, TALLY_CLIENT_AS_OF_TX,
                                            l->as_of);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (got[i].tx == 0 || !same_version(&h[i], &got[i], 0)) {
            char why[TC_WHY_MAX];
            snprintf(why, sizeof why, "scan lists a key as tx %" PRIu64 ", its proof as of tx %"
                     PRIu64 " shows %s", h[i].tx, l->as_of,
                     got[i].tx ? "another version" : "no version");
            rc = claim_fail(l->c, why);
        }
    }
    for (size_t i = 0; got && i < n; i++)
        tally_client_version_free(&got[i]);
    free(got);
    free(keys);
    if (rc == TALLY_ETOOBIG && n > 1) { /* the answer would exceed the server's limit */
        tally_clearerr();
        if ((rc = vs_prove(l, h, n / 2)) == 0)
            rc = vs_prove(l, h + n / 2, n - n / 2);
    }
    return rc;
}

/* Proves the held rows, then hands them to the caller. 0, 1 (the caller
** stopped) or -1 (l->rc set). */
static int vs_flush(vlist *l)
{
    if (l->n == 0)
        return 0;
    int rc = vs_prove(l, l->held, l->n);
    int stop = 0;
    for (size_t i = 0; rc == 0 && i < l->n && !stop; i++)
        stop = l->fn(l->ctx, &l->held[i]);
    vs_drop(l);
    if (rc != 0) {
        l->rc = rc;
        return -1;
    }
    return stop ? 1 : 0;
}

/* The server's key order (bytes, a prefix first): <0, 0, >0. */
static int key_cmp(const void *a, size_t la, const void *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* One scan row: it starts with the prefix and comes strictly after the row
** before (key order; so no repeats and no going back across pages); held
** until its batch is proven. */
static int vs_row(void *arg, const tally_client_version *claim)
{
    vlist *l = arg;
    if (claim->key_len < l->want_len || memcmp(claim->key, l->want, l->want_len) != 0)
        return list_fail(l, "scan of a prefix lists a key without that prefix");
    if (l->last_key && key_cmp(l->last_key, l->last_key_len, claim->key, claim->key_len) >= 0)
        return list_fail(l, "scan lists a key that does not come after the one before it "
                         "(out of order or repeated)");
    tally_client_version *h = &l->held[l->n];
    memset(h, 0, sizeof *h);
    h->tx = claim->tx, h->rev = claim->rev, h->ts_ns = claim->ts_ns, h->deleted = claim->deleted;
    h->key = malloc(claim->key_len + 1);
    h->value = malloc(claim->value_len + 1);
    uint8_t *last = malloc(claim->key_len + 1);
    if (!h->key || !h->value || !last) {
        tally_client_version_free(h);
        free(last);
        l->rc = TALLY_ENOMEM;
        return 1;
    }
    memcpy(h->key, claim->key, claim->key_len + 1);
    memcpy(h->value, claim->value, claim->value_len + 1);
    h->key_len = claim->key_len, h->value_len = claim->value_len;
    memcpy(last, claim->key, claim->key_len);
    free(l->last_key);
    l->last_key = last;
    l->last_key_len = claim->key_len;
    l->held_bytes += claim->key_len + claim->value_len;
    if (++l->n < TALLY_CLIENT_GETMANY_MAX && l->held_bytes < VSCAN_HELD_BYTES_MAX)
        return 0;
    return vs_flush(l) != 0;
}

int tally_client_verified_scan(tally_client *c, uint64_t *out_tx, const void *prefix,
                               size_t prefix_len, uint64_t as_of, tally_client_version_fn fn,
                               void *ctx)
{
    uint8_t root[TALLY_HASH_LEN];
    int rc = as_of ? 0 : tally_client_verified_state(c, &as_of, root, NULL);
    if (rc != 0)
        return rc;
    if (out_tx)
        *out_tx = as_of;
    if (as_of == 0)
        return 0; /* an empty ledger */
    vlist l = { .c = c, .fn = fn, .ctx = ctx, .as_of = as_of, .want = prefix,
                .want_len = prefix_len };
    if (!(l.held = calloc(TALLY_CLIENT_GETMANY_MAX, sizeof *l.held)))
        return TALLY_ENOMEM;
    rc = tally_client_scan(c, NULL, prefix, prefix_len, as_of, vs_row, &l);
    if (rc == 0 && l.rc == 0)
        vs_flush(&l);
    vs_drop(&l);
    free(l.held);
    free(l.last_key);
    return l.rc ? l.rc : rc;
}
