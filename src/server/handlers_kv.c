/*
** handlers_kv.c — the key-value endpoints of a ledger (docs/API.md): set,
** del, get, history, scan, tx/N and state. Keys and values travel as JSON
** strings, or hex under "<name>_hex" when not UTF-8.
**
** Invariants:
**   (1) every input is checked before the commit; a failed request commits
**       nothing (the engine itself refuses the whole transaction on a broken
**       precondition or limit);
**   (2) every list has a limit: entries per set (TALLY_TX_ENTRIES_MAX),
**       history (SRV_HISTORY_LIMIT_MAX), scan (SRV_SCAN_LIMIT_MAX).
*/
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define DEL_RETRIES_MAX 8 /* del without if_rev re-reads on a concurrent change */

/* ---- set ---- */
void set_free(srv_set *ss)
{
    for (size_t i = 0; i < ss->owned_n; i++)
        free(ss->owned[i]);
    free(ss->owned);
    free(ss->e);
    memset(ss, 0, sizeof *ss);
}

/* Reads obj[name]/obj[name_hex]; records a decoded buffer. 1, 0 absent, -1 bad. */
static int set_bytes(srv_set *ss, json_t *obj, const char *name, const uint8_t **p, size_t *n)
{
    uint8_t *owned = NULL;
    int rc = srv_json_get_bytes(obj, name, p, n, &owned);
    if (owned)
        ss->owned[ss->owned_n++] = owned;
    return rc;
}

/* The fields of one entry of a set body (the most frequent first). */
static const char *const entry_fields[] = { "key", "value", "key_hex", "value_hex", "meta",
                                            "meta_hex", "if_absent", "if_rev", NULL };

/* Parses entry i. Returns 0 or an HTTP status (e). */
static int set_entry(srv_set *ss, srv_err *e, json_t *o, size_t i)
{
    tally_entry *t = &ss->e[i];
    t->ns = TALLY_NS_KV;
    if (!json_is_object(o))
        return srv_fail(e, 400, "bad_request", "entry %zu is not an object", i);
    int st = srv_json_fields(e, o, entry_fields, "entry %zu: ", i);
    if (st)
        return st;
    if (set_bytes(ss, o, "key", (const uint8_t **)&t->key, &t->key_len) != 1)
        return srv_fail(e, 400, "bad_request",
                        "entry %zu needs one of \"key\" or \"key_hex\" (valid hex)", i);
    if (set_bytes(ss, o, "value", (const uint8_t **)&t->value, &t->value_len) != 1)
        return srv_fail(e, 400, "bad_request", "entry %zu needs \"value\" or \"value_hex\"", i);
    if (set_bytes(ss, o, "meta", (const uint8_t **)&t->meta, &t->meta_len) < 0)
        return srv_fail(e, 400, "bad_request", "entry %zu: bad \"meta\"", i);
    json_t *ia = json_object_get(o, "if_absent"), *ir = json_object_get(o, "if_rev");
    if ((ia && !json_is_boolean(ia)) || (ir && (!json_is_integer(ir) || json_integer_value(ir) < 1)))
        return srv_fail(e, 400, "bad_request",
                        "entry %zu: if_absent is a boolean, if_rev an integer >= 1", i);
    if (json_is_true(ia) && ir)
        return srv_fail(e, 400, "bad_request", "entry %zu: if_absent and if_rev exclude each other", i);
    if (json_is_true(ia))
        t->cond = TALLY_COND_ABSENT;
    if (ir) {
        t->cond = TALLY_COND_REV;
        t->cond_rev = (uint64_t)json_integer_value(ir);
    }
    return 0;
}

int set_parse(srv_set *ss, srv_err *e, json_t *j, const char *const *fields)
{
    memset(ss, 0, sizeof *ss);
    int st = fields ? srv_json_fields(e, j, fields, NULL) : 0;
    if (st)
        return st;
    json_t *arr = json_object_get(j, "entries");
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0)
        return srv_fail(e, 400, "bad_request", "\"entries\" must be a non-empty array");
    if (n > TALLY_TX_ENTRIES_MAX)
        return srv_fail(e, 413, "too_large", "more than %u entries", TALLY_TX_ENTRIES_MAX);
    ss->e = calloc(n, sizeof *ss->e);
    ss->owned = calloc(3 * n + 1, sizeof *ss->owned);
    if (!ss->e || !ss->owned)
        return srv_fail(e, 500, "internal", "out of memory");
    ss->n = n;
    for (size_t i = 0; i < n; i++)
        if ((st = set_entry(ss, e, json_array_get(arr, i), i)))
            return st;
    if (set_bytes(ss, j, "meta", &ss->meta, &ss->meta_len) < 0)
        return srv_fail(e, 400, "bad_request", "\"meta\" must be a string (or \"meta_hex\")");
    return 0;
}

/* set's continuation: the transaction is durable (or failed). */
static int set_done(srv_req *r)
{
    if (r->commit_rc != TALLY_OK)
        return http_commit_failed(r);
    char *out = malloc(40);
    if (!out)
        return http_errorf(r, 500, "internal", "out of memory");
    int n = snprintf(out, 40, "{\"tx\":%" PRIu64 "}\n", r->commit_tx);
    return http_raw(r, 200, "application/json", out, (size_t)n);
}

/* The binary batch body (docs/API.md "Binary batches"): fixed little-endian
** headers, keys, metadata and values in place. Fills ss with entries that
** point into body (zero copy). Returns 0 or an HTTP status (e). */
#define BIN_MAGIC "TB01"
#define BIN_HDR_LEN 12u
#define BIN_ENTRY_HDR_LEN 20u
static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

int set_parse_binary(srv_set *ss, srv_err *e, const uint8_t *body, size_t len)
{
    memset(ss, 0, sizeof *ss);
    if (len < BIN_HDR_LEN || memcmp(body, BIN_MAGIC, 4) != 0)
        return srv_fail(e, 400, "bad_request", "a binary batch starts with \"" BIN_MAGIC "\", "
                        "the entry count and the metadata length (%u bytes)", BIN_HDR_LEN);
    uint32_t n = rd32(body + 4), mlen = rd32(body + 8);
    if (n == 0)
        return srv_fail(e, 400, "bad_request", "a binary batch needs at least one entry");
    if (n > TALLY_TX_ENTRIES_MAX)
        return srv_fail(e, 413, "too_large", "more than %u entries", TALLY_TX_ENTRIES_MAX);
    if (mlen > TALLY_META_BYTES_MAX)
        return srv_fail(e, 413, "too_large", "transaction metadata over %u bytes", TALLY_META_BYTES_MAX);
    size_t off = BIN_HDR_LEN;
    if (len - off < mlen)
        return srv_fail(e, 400, "bad_request", "binary batch truncated in the metadata");
    ss->meta = body + off;
    ss->meta_len = mlen;
    off += mlen;
    if (!(ss->e = calloc(n, sizeof *ss->e)))
        return srv_fail(e, 500, "internal", "out of memory");
    ss->n = n;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < BIN_ENTRY_HDR_LEN)
            return srv_fail(e, 400, "bad_request", "binary batch truncated at entry %u (byte %zu)", i, off);
        const uint8_t *h = body + off;
        uint32_t klen = (uint32_t)h[2] | (uint32_t)h[3] << 8, vlen = rd32(h + 4), emlen = rd32(h + 8);
        uint64_t rev = rd64(h + 12);
        tally_entry *t = &ss->e[i];
        t->ns = TALLY_NS_KV;
        if (h[0] > TALLY_COND_REV || h[1] != 0 || (h[0] != TALLY_COND_REV && rev != 0) ||
            (h[0] == TALLY_COND_REV && rev == 0))
            return srv_fail(e, 400, "bad_request", "entry %u (byte %zu): bad condition byte, "
                            "reserved byte or if_rev", i, off);
        if (klen == 0)
            return srv_fail(e, 400, "bad_request", "entry %u: empty key", i);
        if (klen > TALLY_KEY_BYTES_MAX || vlen > TALLY_VALUE_BYTES_MAX || emlen > TALLY_META_BYTES_MAX)
            return srv_fail(e, 413, "too_large", "entry %u: key, value or metadata over its limit", i);
        off += BIN_ENTRY_HDR_LEN;
        if (len - off < (uint64_t)klen + emlen + vlen)
            return srv_fail(e, 400, "bad_request", "binary batch truncated in entry %u", i);
        t->cond = h[0];
        t->cond_rev = rev;
        t->key = body + off, t->key_len = klen;
        t->meta = body + off + klen, t->meta_len = emlen;
        t->value = body + off + klen + emlen, t->value_len = vlen;
        off += (size_t)klen + emlen + vlen;
    }
    if (off != len)
        return srv_fail(e, 400, "bad_request", "%zu bytes after the last entry of the binary batch",
                        len - off);
    return 0;
}

int h_set(srv_req *r)
{
    int res;
    if (http_body_is_binary(r)) {
        srv_set ss;
        srv_err e;
        int st = set_parse_binary(&ss, &e, (const uint8_t *)(r->body ? r->body : ""), r->body_len);
        if (st == 0) /* the entries are copied before it returns */
            res = http_commit_async(r, ss.e, ss.n, ss.meta, ss.meta_len, set_done);
        set_free(&ss);
        return st ? http_error(r, &e) : res;
    }
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    static const char *const fields[] = { "entries", "meta", "meta_hex", NULL };
    srv_set ss;
    srv_err e;
    int st = set_parse(&ss, &e, j, fields);
    if (st == 0) /* the entries are copied before it returns */
        res = http_commit_async(r, ss.e, ss.n, ss.meta, ss.meta_len, set_done);
    set_free(&ss);
    json_decref(j);
    return st ? http_error(r, &e) : res;
}

/* ---- del ---- */
/* Writes a tombstone for the revision seen. Returns 0 or an HTTP status. */
static int del_commit(srv_req *r, srv_err *e, const uint8_t *key, size_t klen, json_t *ir,
                      uint64_t *tx)
{
    for (int attempt = 0; attempt < DEL_RETRIES_MAX; attempt++) {
        tally_version v;
        int rc = tally_get(r->db, &v, TALLY_NS_KV, key, klen, 0);
        if (rc != TALLY_OK)
            return srv_fail_engine(e, rc);
        if (ir && (uint64_t)json_integer_value(ir) != v.rev)
            return srv_fail(e, 409, "conflict", "precondition failed: the key is at revision %" PRIu64, v.rev);
        tally_entry t = { .ns = TALLY_NS_KV, .deleted = 1, .cond = TALLY_COND_REV,
                          .cond_rev = v.rev, .key = key, .key_len = klen, .value = "" };
        rc = tally_commit(r->db, tx, &t, 1, NULL, 0);
        if (rc == TALLY_OK)
            return 0;
        if (rc != TALLY_ECONFLICT || ir)
            return srv_fail_engine(e, rc);
    }
    return srv_fail(e, 409, "conflict", "the key kept changing concurrently");
}

int h_del(srv_req *r)
{
    int res;
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    const uint8_t *key;
    size_t klen;
    uint8_t *owned = NULL;
    uint64_t tx = 0;
    srv_err e;
    json_t *ir = json_object_get(j, "if_rev");
    static const char *const fields[] = { "key", "key_hex", "if_rev", NULL };
    int st;
    if ((st = srv_json_fields(&e, j, fields, NULL)))
        ; /* an unknown field: refused before anything is read */
    else if (srv_json_get_bytes(j, "key", &key, &klen, &owned) != 1)
        st = srv_fail(&e, 400, "bad_request", "del needs one of \"key\" or \"key_hex\" (valid hex)");
    else if (ir && (!json_is_integer(ir) || json_integer_value(ir) < 1))
        st = srv_fail(&e, 400, "bad_request", "\"if_rev\" must be an integer >= 1");
    else
        st = del_commit(r, &e, key, klen, ir, &tx);
    free(owned);
    json_decref(j);
    if (st)
        return http_error(r, &e);
    return http_json(r, 200, json_pack("{s:I}", "tx", (json_int_t)tx));
}

/* ---- get ---- */
/* Resolves tx= / at= into *as_of (unchanged when neither). Returns 0 or a status. */
int kv_as_of(srv_req *r, srv_err *e, uint64_t *as_of)
{
    uint64_t tx;
    int has_tx = http_arg_u64(r, "tx", &tx);
    if (has_tx < 0 || (has_tx && tx == 0))
        return srv_fail(e, 400, "bad_request", "tx must be a transaction id >= 1");
    if (has_tx) {
        *as_of = tx;
        return 0;
    }
    const char *at = http_arg(r, "at");
    if (!at)
        return 0;
    int64_t ns;
    if (srv_parse_time(at, &ns) < 0)
        return srv_fail(e, 400, "bad_request", "at must be an RFC 3339 time");
    uint64_t t = 0;
    if (ns >= 0)
        tally_tx_at_time(r->db, &t, (uint64_t)ns);
    if (t == 0)
        return srv_fail(e, 404, "not_found", "no transaction at or before %s", at);
    *as_of = t;
    return 0;
}

int kv_lookup(srv_req *r, srv_err *e, uint64_t latest_as_of, const uint8_t **key,
              size_t *key_len, uint8_t **owned, tally_version *v)
{
    int has_key = http_arg_bytes(r, "key", key, key_len, owned);
    if (has_key != 1)
        return srv_fail(e, 400, "bad_request", "needs one of key= or key_hex= (valid hex)");
    int sel = !!http_arg(r, "tx") + !!http_arg(r, "at") + !!http_arg(r, "rev");
    if (sel > 1)
        return srv_fail(e, 400, "bad_request", "tx, at and rev exclude each other");
    uint64_t rev, as_of = latest_as_of;
    int has_rev = http_arg_u64(r, "rev", &rev), rc, st;
    if (has_rev < 0 || (has_rev && rev == 0))
        return srv_fail(e, 400, "bad_request", "rev must be a revision >= 1");
    if (has_rev) {
        rc = tally_get_rev(r->db, v, TALLY_NS_KV, *key, *key_len, rev);
        if (rc == TALLY_OK && v->deleted)
            return srv_fail(e, 404, "not_found", "revision %" PRIu64 " is a deletion", rev);
    } else {
        if ((st = kv_as_of(r, e, &as_of)) != 0)
            return st;
        rc = tally_get(r->db, v, TALLY_NS_KV, *key, *key_len, as_of);
    }
    return rc == TALLY_OK ? 0 : srv_fail_engine(e, rc);
}

/* Sets "value"/"tx"/"rev"/"ts" of a version on o. Returns 0 or -1. */
static int set_version(json_t *o, const tally_version *v)
{
    char ts[SRV_TIME_BUF];
    srv_fmt_time(ts, v->ts_ns);
    return srv_json_set_bytes(o, "value", v->value, v->deleted ? 0 : v->value_len) < 0 ||
                   json_object_set_new(o, "tx", json_integer((json_int_t)v->tx)) < 0 ||
                   json_object_set_new(o, "rev", json_integer((json_int_t)v->rev)) < 0 ||
                   json_object_set_new(o, "ts", json_string(ts)) < 0
               ? -1
               : 0;
}

int h_get(srv_req *r)
{
    const uint8_t *key;
    size_t klen;
    uint8_t *owned = NULL;
    tally_version v;
    srv_err e;
    if (kv_lookup(r, &e, 0, &key, &klen, &owned, &v) != 0) {
        free(owned);
        return http_error(r, &e);
    }
    json_t *o = json_object();
    if (o && (srv_json_set_bytes(o, "key", key, klen) < 0 || set_version(o, &v) < 0)) {
        json_decref(o);
        o = NULL;
    }
    free(owned);
    return http_json(r, 200, o);
}

/* ---- history ---- */
static int history_cb(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    /* {"rev","tx","value","deleted","ts"}: the order of `tally history --json` */
    char ts[SRV_TIME_BUF];
    srv_fmt_time(ts, v->ts_ns);
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "rev", json_integer((json_int_t)v->rev)) < 0 ||
        json_object_set_new(o, "tx", json_integer((json_int_t)v->tx)) < 0 ||
        srv_json_set_bytes(o, "value", v->value, v->deleted ? 0 : v->value_len) < 0 ||
        json_object_set_new(o, "deleted", json_boolean(v->deleted)) < 0 ||
        json_object_set_new(o, "ts", json_string(ts)) < 0) {
        json_decref(o);
        return 1;
    }
    return json_array_append_new(ctx, o) < 0;
}

/* Reads name=N with a default; limit-style values are clamped to max. */
static int arg_u64_default(srv_req *r, const char *name, uint64_t def, uint64_t *out)
{
    int has = http_arg_u64(r, name, out);
    if (has == 0)
        *out = def;
    return has < 0 ? -1 : 0;
}

int h_history(srv_req *r)
{
    const uint8_t *key;
    size_t klen;
    uint8_t *owned = NULL;
    uint64_t start, limit, total = 0;
    if (http_arg_bytes(r, "key", &key, &klen, &owned) != 1)
        return http_errorf(r, 400, "bad_request", "needs one of key= or key_hex= (valid hex)");
    if (arg_u64_default(r, "start", 1, &start) < 0 || start == 0 ||
        arg_u64_default(r, "limit", 100, &limit) < 0 || limit == 0) {
        free(owned);
        return http_errorf(r, 400, "bad_request", "start and limit must be numbers >= 1");
    }
    if (limit > SRV_HISTORY_LIMIT_MAX)
        limit = SRV_HISTORY_LIMIT_MAX;
    json_t *revs = json_array();
    int rc = revs ? tally_history(r->db, &total, TALLY_NS_KV, key, klen, start, (size_t)limit,
                                  history_cb, revs)
                  : TALLY_ENOMEM;
    json_t *o = NULL;
    if (rc == TALLY_OK && total > 0 && (o = json_object())) {
        if (srv_json_set_bytes(o, "key", key, klen) < 0 ||
            json_object_set_new(o, "total", json_integer((json_int_t)total)) < 0 ||
            json_object_set(o, "revisions", revs) < 0) {
            json_decref(o);
            o = NULL;
        }
    }
    json_decref(revs);
    free(owned);
    if (rc != TALLY_OK)
        return http_engine_error(r, rc);
    if (total == 0)
        return http_errorf(r, 404, "not_found", "no such key");
    return http_json(r, 200, o);
}

/* ---- scan ---- */
typedef struct scan_ctx {
    json_t *keys;
    size_t count, limit;
    int more, oom;
} scan_ctx;

static int scan_cb(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    scan_ctx *sc = ctx;
    if (sc->count == sc->limit) {
        sc->more = 1;
        return 1;
    }
    json_t *o = json_object();
    if (!o || srv_json_set_bytes(o, "key", key, key_len) < 0 ||
        srv_json_set_bytes(o, "value", v->value, v->value_len) < 0 ||
        json_object_set_new(o, "tx", json_integer((json_int_t)v->tx)) < 0 ||
        json_object_set_new(o, "rev", json_integer((json_int_t)v->rev)) < 0 ||
        json_array_append_new(sc->keys, o) < 0) {
        sc->oom = 1;
        return 1;
    }
    sc->count++;
    return 0;
}

/* Adds "next" (the last key returned, or null) to o. Returns 0 or -1. */
static int scan_next(json_t *o, const scan_ctx *sc)
{
    if (!sc->more)
        return json_object_set_new(o, "next", json_null());
    json_t *last = json_array_get(sc->keys, sc->count - 1);
    json_t *k = json_object_get(last, "key");
    if (k)
        return json_object_set(o, "next", k);
    return json_object_set(o, "next_hex", json_object_get(last, "key_hex")) < 0 ||
                   json_object_set_new(o, "next", json_null()) < 0
               ? -1
               : 0;
}

/* Reads the scan query. Returns 0 or an HTTP status (e). */
static int scan_args(srv_req *r, srv_err *e, uint64_t *as_of, uint64_t *limit)
{
    uint8_t root[TALLY_HASH_LEN];
    if (arg_u64_default(r, "tx", 0, as_of) < 0 || arg_u64_default(r, "limit", 1000, limit) < 0 ||
        *limit == 0)
        return srv_fail(e, 400, "bad_request", "tx and limit must be numbers (limit >= 1)");
    if (*limit > SRV_SCAN_LIMIT_MAX)
        *limit = SRV_SCAN_LIMIT_MAX;
    int rc = *as_of == 0 ? tally_state(r->db, as_of, root) : TALLY_OK;
    return rc == TALLY_OK ? 0 : srv_fail_engine(e, rc);
}

int h_scan(srv_req *r)
{
    const uint8_t *prefix, *after;
    size_t plen, alen;
    uint8_t *pown = NULL, *aown = NULL;
    uint64_t as_of, limit;
    srv_err e;
    int hp = http_arg_bytes(r, "prefix", &prefix, &plen, &pown);
    int ha = http_arg_bytes(r, "after", &after, &alen, &aown);
    int st = hp < 0 || ha < 0 ? srv_fail(&e, 400, "bad_request", "bad prefix or after: give "
                                         "prefix or prefix_hex (after or after_hex), valid hex")
           : ha > 0 && alen > TALLY_KEY_BYTES_MAX
               ? srv_fail(&e, 413, "too_large", "\"after\" over %u bytes", TALLY_KEY_BYTES_MAX)
               : scan_args(r, &e, &as_of, &limit);
    scan_ctx sc = { json_array(), 0, (size_t)limit, 0, 0 };
    int rc = TALLY_OK;
    if (st == 0 && (rc = tally_scan(r->db, TALLY_NS_KV, hp ? prefix : (const uint8_t *)"", plen,
                                    ha ? after : NULL, alen, as_of, (size_t)limit + 1, scan_cb,
                                    &sc)) != TALLY_OK)
        st = srv_fail_engine(&e, rc);
    json_t *o = st == 0 ? json_object() : NULL;
    if (o && (srv_json_set_bytes(o, "prefix", hp ? prefix : (const uint8_t *)"", plen) < 0 ||
              json_object_set_new(o, "tx", json_integer((json_int_t)as_of)) < 0 ||
              json_object_set(o, "keys", sc.keys) < 0 || scan_next(o, &sc) < 0 || sc.oom)) {
        json_decref(o);
        o = NULL;
    }
    json_decref(sc.keys);
    free(pown);
    free(aown);
    return st ? http_error(r, &e) : http_json(r, 200, o);
}

/* ---- tx/N, state ---- */
/* {"index","ns","key","value","deleted","leaf_hash"} as `tally tx --json`. */
static json_t *tx_entry_json(const tally_entry_view *v, uint32_t i)
{
    json_t *o = json_pack("{s:I,s:i}", "index", (json_int_t)i, "ns", (int)v->ns);
    if (o && (srv_json_set_bytes(o, "key", v->key, v->key_len) < 0 ||
              srv_json_set_bytes(o, "value", v->value, v->value_len) < 0 ||
              (v->meta_len && srv_json_set_bytes(o, "meta", v->meta, v->meta_len) < 0) ||
              json_object_set_new(o, "deleted", json_boolean(v->deleted)) < 0 ||
              srv_json_set_hex(o, "leaf_hash", v->leaf_hash, TALLY_HASH_LEN) < 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The tx header fields of `tally tx --json`, or NULL. */
static json_t *tx_header_json(const tally_tx_info *t)
{
    char ts[SRV_TIME_BUF];
    srv_fmt_time(ts, t->ts_ns);
    json_t *o = json_pack("{s:I,s:s}", "tx", (json_int_t)t->tx, "ts", ts);
    if (o && (srv_json_set_hex(o, "hash", t->hash, TALLY_HASH_LEN) < 0 ||
              srv_json_set_hex(o, "prev_hash", t->prev_hash, TALLY_HASH_LEN) < 0 ||
              srv_json_set_hex(o, "entries_root", t->entries_root, TALLY_HASH_LEN) < 0 ||
              json_object_set_new(o, "entry_count", json_integer(t->entry_count)) < 0 ||
              (t->meta_len && srv_json_set_bytes(o, "meta", t->meta, t->meta_len) < 0))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* tally_tx_entries callback: appends entry i to the array arg. */
static int tx_entry_append(void *arg, uint32_t i, const tally_entry_view *v)
{
    return json_array_append_new(arg, tx_entry_json(v, i)) == 0 ? 0 : TALLY_ENOMEM;
}

int h_tx(srv_req *r)
{
    tally_tx_info t;
    int rc = tally_tx_get(r->db, &t, r->path_n);
    if (rc != TALLY_OK)
        return http_engine_error(r, rc);
    if (!r->defer && (t.entries_len > SRV_LOOP_HASH_BYTES_MAX ||
                      t.entry_count > SRV_LOOP_TX_ENTRIES_MAX))
        return http_to_pool(r); /* a large transaction (each entry hashed): on the pool */
    json_t *o = tx_header_json(&t), *arr = json_array();
    if (o && arr)
        rc = tally_tx_entries(r->db, r->path_n, tx_entry_append, arr);
    if (o && arr && rc == TALLY_OK && json_object_set(o, "entries", arr) == 0) {
        json_decref(arr);
        return http_json(r, 200, o);
    }
    json_decref(o);
    json_decref(arr);
    return rc != TALLY_OK ? http_engine_error(r, rc) : http_errorf(r, 500, "internal", "out of memory");
}

int h_state(srv_req *r)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_state(r->db, &size, root);
    if (rc != TALLY_OK)
        return http_engine_error(r, rc);
    json_t *o = json_pack("{s:I}", "tx", (json_int_t)size);
    if (o && srv_json_set_hex(o, "root", root, TALLY_HASH_LEN) < 0) {
        json_decref(o);
        o = NULL;
    }
    return http_json(r, 200, o);
}
