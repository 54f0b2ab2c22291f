/*
** handlers_proof.c — proofs, signed checkpoints and the verified reads and
** writes of docs/API.md ("The proof bundle").
**
** Every bundle is built against one signed checkpoint of size S taken from
** the per-ledger cache (registry.c): the tx inclusion proof is in the tree of
** size S, the consistency proof goes from the client's trusted size to S, and
** the value read is one visible at S.
**
** verified/getmany answers up to SRV_GETMANY_KEYS_MAX keys under one
** checkpoint, as JSON or as the binary TVB1 form (docs/API.md, "Batched
** verified reads"); every key's bundle is built by the same code as
** verified/get's (vitem_*).
**
** Invariants:
**   (1) a bundle's proofs and its checkpoint name the same size S, and the
**       transaction it proves is <= S (for a batch: every result's);
**   (2) trusted > S is refused (400) before anything is committed;
**   (3) a consistency proof is included only when 0 < trusted < S (trusted 0
**       means "nothing trusted yet"; trusted == S needs no proof);
**   (4) an event loop hashes at most SRV_LOOP_HASH_BYTES_MAX of transactions
**       for one request: beyond, the handler moves to the worker pool
**       (http_to_pool); a batch is refused (413) past
**       SRV_GETMANY_HASH_BYTES_MAX, and its answer past SRV_GETMANY_BYTES_MAX.
*/
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* {"index","size","proof"} (or {"old","size","proof"} when old_name). */
static json_t *proof_json(const tally_proof *p, const char *index_name)
{
    json_t *path = srv_json_path(p);
    return path ? json_pack("{s:I,s:I,s:o}", index_name, (json_int_t)p->index, "size",
                            (json_int_t)p->size, "proof", path)
                : NULL;
}

static int bundle_cp(srv_req *r, srv_err *e, json_t *o, uint64_t trusted,
                     const srv_checkpoint *cp);

/* Adds tx_header_hex, tx_proof, consistency and checkpoint for tx under cp.
** Returns 0 or an HTTP status (e). */
static int bundle_tx(srv_req *r, srv_err *e, json_t *o, uint64_t tx, uint64_t trusted,
                     const srv_checkpoint *cp)
{
    tally_tx_info t;
    tally_proof p;
    int rc = tally_tx_get(r->db, &t, tx);
    if (rc == TALLY_OK)
        rc = tally_proof_tx(r->db, &p, tx, cp->size);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if (srv_json_set_hex(o, "tx_header_hex", t.header, t.header_len) < 0 ||
        json_object_set_new(o, "tx_proof", proof_json(&p, "index")) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    return bundle_cp(r, e, o, trusted, cp);
}

/* Reads trusted= (default 0). Returns 0 or an HTTP status (e). */
static int trusted_arg(srv_req *r, srv_err *e, uint64_t *trusted)
{
    int has = http_arg_u64(r, "trusted", trusted);
    if (has == 0)
        *trusted = 0;
    return has < 0 ? srv_fail(e, 400, "bad_request", "trusted must be a tree size") : 0;
}

/* The checkpoint, refreshed until it covers tx. Returns 0 or an HTTP status. */
static int checkpoint_covering(srv_req *r, srv_err *e, uint64_t tx, srv_checkpoint *cp)
{
    int rc = reg_checkpoint(r->s, r->lg, r->db, cp);
    if (rc == TALLY_OK && cp->size < tx)
        rc = reg_checkpoint(r->s, r->lg, r->db, cp);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if (cp->size < tx)
        return srv_fail(e, 404, "not_found", "tx %" PRIu64 " is beyond the ledger", tx);
    return 0;
}

static int trusted_check(srv_err *e, uint64_t trusted, uint64_t size)
{
    if (trusted > size)
        return srv_fail(e, 400, "bad_request",
                        "trusted size %" PRIu64 " beyond the ledger (size %" PRIu64 ")", trusted, size);
    return 0;
}

/* ---- proof/inclusion, proof/consistency, checkpoint ---- */
/* The rule of both proofs (docs/API.md): a number that is not a decimal, or
** 0, is 400; a tx or a tree size beyond the ledger's current size is 404; a
** tx or old size beyond size= (both within the ledger) is 400. */

/* The ledger's current size into *ledger_size and size= (default: that) into
** *size. Returns 0 or an HTTP status (e): 400 size= not a number, 404 size=
** beyond the ledger. */
static int size_arg(srv_req *r, srv_err *e, uint64_t *size, uint64_t *ledger_size)
{
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_state(r->db, ledger_size, root);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    int has = http_arg_u64(r, "size", size);
    if (has < 0)
        return srv_fail(e, 400, "bad_request", "size must be a tree size (a decimal number)");
    if (!has)
        *size = *ledger_size;
    else if (*size > *ledger_size)
        return srv_fail(e, 404, "not_found", "no tree of size %" PRIu64 ": the ledger has %" PRIu64
                        " transactions", *size, *ledger_size);
    return 0;
}

int h_proof_inclusion(srv_req *r)
{
    srv_err e;
    uint64_t tx, size, ledger_size;
    int has = http_arg_u64(r, "tx", &tx), rc;
    if (has != 1 || tx == 0)
        return http_errorf(r, 400, "bad_request", "needs tx=N (N >= 1)");
    if (size_arg(r, &e, &size, &ledger_size) != 0)
        return http_error(r, &e);
    if (tx > ledger_size)
        return http_errorf(r, 404, "not_found", "tx %" PRIu64 " is beyond the ledger (size %" PRIu64
                           ")", tx, ledger_size);
    if (tx > size)
        return http_errorf(r, 400, "bad_request", "tx %" PRIu64 " is not in a tree of size %" PRIu64
                           " (needs tx <= size)", tx, size);
    tally_tx_info t;
    tally_proof p;
    uint8_t root[TALLY_HASH_LEN];
    if ((rc = tally_tx_get(r->db, &t, tx)) != TALLY_OK ||
        (rc = tally_proof_tx(r->db, &p, tx, size)) != TALLY_OK ||
        (rc = tally_root_at(r->db, root, size)) != TALLY_OK)
        return http_engine_error(r, rc);
    if (tally_verify_inclusion(t.hash, &p, root) != TALLY_OK)
        return http_errorf(r, 500, "integrity", "inclusion proof of tx %" PRIu64 " failed its check", tx);
    json_t *o = json_pack("{s:I,s:I,s:I}", "index", (json_int_t)(tx - 1), "size",
                          (json_int_t)size, "tx", (json_int_t)tx);
    if (o && (srv_json_set_hex(o, "leaf_hash", t.hash, TALLY_HASH_LEN) < 0 ||
              srv_json_set_hex(o, "root", root, TALLY_HASH_LEN) < 0 ||
              json_object_set_new(o, "proof", srv_json_path(&p)) < 0)) {
        json_decref(o);
        o = NULL;
    }
    return http_json(r, 200, o);
}

int h_proof_consistency(srv_req *r)
{
    srv_err e;
    uint64_t old, size, ledger_size;
    int has = http_arg_u64(r, "old", &old), rc;
    if (has != 1 || old == 0)
        return http_errorf(r, 400, "bad_request", "needs old=M (M >= 1)");
    if (size_arg(r, &e, &size, &ledger_size) != 0)
        return http_error(r, &e);
    if (old > ledger_size)
        return http_errorf(r, 404, "not_found", "no tree of size %" PRIu64 ": the ledger has %"
                           PRIu64 " transactions", old, ledger_size);
    if (old > size)
        return http_errorf(r, 400, "bad_request", "needs old <= size (old %" PRIu64 ", size %"
                           PRIu64 ")", old, size);
    tally_proof p;
    uint8_t old_root[TALLY_HASH_LEN], root[TALLY_HASH_LEN];
    if ((rc = tally_proof_consistency(r->db, &p, old, size)) != TALLY_OK ||
        (rc = tally_root_at(r->db, old_root, old)) != TALLY_OK ||
        (rc = tally_root_at(r->db, root, size)) != TALLY_OK)
        return http_engine_error(r, rc);
    if (tally_verify_consistency(&p, old_root, root) != TALLY_OK)
        return http_errorf(r, 500, "integrity", "consistency proof failed its check");
    json_t *o = json_pack("{s:I,s:I}", "old", (json_int_t)old, "size", (json_int_t)size);
    if (o && (srv_json_set_hex(o, "old_root", old_root, TALLY_HASH_LEN) < 0 ||
              srv_json_set_hex(o, "root", root, TALLY_HASH_LEN) < 0 ||
              json_object_set_new(o, "proof", srv_json_path(&p)) < 0)) {
        json_decref(o);
        o = NULL;
    }
    return http_json(r, 200, o);
}

int h_checkpoint(srv_req *r)
{
    srv_checkpoint cp;
    int rc = reg_checkpoint(r->s, r->lg, r->db, &cp);
    if (rc != TALLY_OK)
        return http_engine_error(r, rc);
    char *text = malloc(cp.note_len + 1);
    if (!text)
        return http_errorf(r, 500, "internal", "out of memory");
    memcpy(text, cp.note, cp.note_len);
    return http_raw(r, 200, "text/plain; charset=utf-8", text, cp.note_len);
}

/* ---- verified/get and verified/getmany ---- */

/* Everything one key's bundle needs, fetched once, written as JSON or binary. */
typedef struct vitem {
    tally_version v;
    tally_entry_view ev;
    tally_proof ep;   /* entry in its tx */
    tally_tx_info t;
    tally_proof tp;   /* tx in the tree of the checkpoint's size */
} vitem;

/* Completes it (it->v set: a version visible at size) with the tx header,
** the entry and both proofs. Returns 0, an HTTP status (e), or -1 on an
** event loop when the entry proof would hash more than
** SRV_LOOP_HASH_BYTES_MAX (invariant 4: the caller moves to the pool). */
static int vitem_fetch(srv_req *r, srv_err *e, vitem *it, uint64_t size)
{
    int rc = tally_tx_get(r->db, &it->t, it->v.tx);
    if (rc == TALLY_OK && !r->defer && it->t.entries_len > SRV_LOOP_HASH_BYTES_MAX)
        return -1;
    if (rc == TALLY_OK)
        rc = tally_tx_entry(r->db, &it->ev, it->v.tx, it->v.entry_index);
    if (rc == TALLY_OK)
        rc = tally_proof_entry(r->db, &it->ep, it->v.tx, it->v.entry_index);
    if (rc == TALLY_OK)
        rc = tally_proof_tx(r->db, &it->tp, it->v.tx, size);
    return rc == TALLY_OK ? 0 : srv_fail_engine(e, rc);
}

/* Sets the bundle fields of it on o (all but checkpoint and consistency):
** key, value, tx, rev, ts, entry, entry_proof, tx_header_hex, tx_proof.
** Returns 0 or -1 (out of memory). */
static int vitem_json(json_t *o, const vitem *it)
{
    char ts[SRV_TIME_BUF];
    srv_fmt_time(ts, it->v.ts_ns);
    json_t *ej = json_pack("{s:I}", "index", (json_int_t)it->v.entry_index);
    return !ej || srv_json_set_hex(ej, "header_hex", it->ev.header, sizeof it->ev.header) < 0 ||
                   srv_json_set_hex(ej, "meta_hex", it->ev.meta, it->ev.meta_len) < 0 ||
                   srv_json_set_bytes(o, "key", it->ev.key, it->ev.key_len) < 0 ||
                   srv_json_set_bytes(o, "value", it->ev.value, it->ev.value_len) < 0 ||
                   json_object_set_new(o, "tx", json_integer((json_int_t)it->v.tx)) < 0 ||
                   json_object_set_new(o, "rev", json_integer((json_int_t)it->v.rev)) < 0 ||
                   json_object_set_new(o, "ts", json_string(ts)) < 0 ||
                   json_object_set_new(o, "entry", ej) < 0 ||
                   json_object_set_new(o, "entry_proof", proof_json(&it->ep, "index")) < 0 ||
                   srv_json_set_hex(o, "tx_header_hex", it->t.header, it->t.header_len) < 0 ||
                   json_object_set_new(o, "tx_proof", proof_json(&it->tp, "index")) < 0
               ? -1
               : 0;
}

/* Adds consistency (0 < trusted < cp->size) and checkpoint to o. */
static int bundle_cp(srv_req *r, srv_err *e, json_t *o, uint64_t trusted, const srv_checkpoint *cp)
{
    tally_proof p;
    int rc;
    if (trusted > 0 && trusted < cp->size) {
        if ((rc = tally_proof_consistency(r->db, &p, trusted, cp->size)) != TALLY_OK)
            return srv_fail_engine(e, rc);
        if (json_object_set_new(o, "consistency", proof_json(&p, "old")) < 0)
            return srv_fail(e, 500, "internal", "out of memory");
    }
    if (json_object_set_new(o, "checkpoint", json_stringn(cp->note, cp->note_len)) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    return 0;
}

/* Builds the verified/get answer. Returns 0 or an HTTP status (e). */
static int verified_get(srv_req *r, srv_err *e, json_t *o, vitem *it, uint8_t **owned)
{
    srv_checkpoint cp;
    uint64_t trusted;
    const uint8_t *key;
    size_t klen;
    int st, rc = reg_checkpoint(r->s, r->lg, r->db, &cp);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if ((st = trusted_arg(r, e, &trusted)) || (st = trusted_check(e, trusted, cp.size)))
        return st;
    /* The latest value as of S; an explicit tx/at/rev may need a newer checkpoint. */
    if ((st = kv_lookup(r, e, cp.size ? cp.size : 0, &key, &klen, owned, &it->v)))
        return st;
    if (it->v.tx > cp.size && (st = checkpoint_covering(r, e, it->v.tx, &cp)))
        return st;
    if ((st = vitem_fetch(r, e, it, cp.size)))
        return st;
    if (vitem_json(o, it) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    return bundle_cp(r, e, o, trusted, &cp);
}

int h_verified_get(srv_req *r)
{
    uint8_t *owned = NULL;
    srv_err e;
    vitem *it = malloc(sizeof *it);
    json_t *o = json_object();
    int st = o && it ? verified_get(r, &e, o, it, &owned)
                     : srv_fail(&e, 500, "internal", "out of memory");
    free(owned);
    free(it);
    if (st == -1) {
        json_decref(o);
        return http_to_pool(r);
    }
    if (st) {
        json_decref(o);
        return http_error(r, &e);
    }
    return http_json(r, 200, o);
}

/* The binary answer of verified/getmany (docs/API.md, "Batched verified
** reads"): a growing buffer; oom latches. */
typedef struct bbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} bbuf;

static void bb_put(bbuf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bb_le(bbuf *b, uint64_t v, unsigned bytes)
{
    uint8_t x[8];
    for (unsigned i = 0; i < bytes; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, x, bytes);
}

/* A proof's hashes: count (1 byte), then the hashes. */
static void bb_path(bbuf *b, const tally_proof *p)
{
    bb_le(b, p->len, 1);
    bb_put(b, p->path, p->len * TALLY_HASH_LEN);
}

static void vitem_bin(bbuf *b, const vitem *it)
{
    bb_le(b, 0, 1); /* found */
    bb_le(b, 0, 1);
    bb_le(b, it->ev.key_len, 2);
    bb_put(b, it->ev.key, it->ev.key_len);
    bb_le(b, it->v.rev, 8);
    bb_le(b, it->v.entry_index, 4);
    bb_put(b, it->ev.header, sizeof it->ev.header);
    bb_put(b, it->ev.meta, it->ev.meta_len);
    bb_put(b, it->ev.value, it->ev.value_len);
    bb_path(b, &it->ep);
    bb_le(b, it->t.header_len, 4);
    bb_put(b, it->t.header, it->t.header_len);
    bb_path(b, &it->tp);
}

/* The keys of a getmany body: "keys" (strings, zero copy: they point into j)
** or "keys_hex" (decoded into *owned). Returns 0 or an HTTP status (e). */
typedef struct gm_key {
    const uint8_t *p;
    size_t n;
} gm_key;

static int getmany_keys(srv_err *e, json_t *j, gm_key **out, size_t *out_n, uint8_t **owned)
{
    static const char *const fields[] = { "keys", "keys_hex", NULL };
    int st = srv_json_fields(e, j, fields, NULL);
    if (st)
        return st;
    json_t *ks = json_object_get(j, "keys"), *kh = json_object_get(j, "keys_hex");
    if ((ks != NULL) == (kh != NULL) || !json_is_array(ks ? ks : kh))
        return srv_fail(e, 400, "bad_request", "needs exactly one of \"keys\" and \"keys_hex\", an array");
    json_t *a = ks ? ks : kh;
    size_t n = json_array_size(a), hex_bytes = 0;
    if (n == 0)
        return srv_fail(e, 400, "bad_request", "no keys");
    if (n > SRV_GETMANY_KEYS_MAX)
        return srv_fail(e, 413, "too_large", "%zu keys; at most %u per request", n,
                        SRV_GETMANY_KEYS_MAX);
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(a, i);
        size_t len = json_is_string(k) ? json_string_length(k) : 0;
        if (kh)
            len = len % 2 ? 0 : len / 2;
        if (len == 0)
            return srv_fail(e, 400, "bad_request", "key %zu: keys are non-empty %s", i,
                            kh ? "hex strings of an even length" : "strings");
        if (len > TALLY_KEY_BYTES_MAX) /* 413 as for every other key over the limit */
            return srv_fail(e, 413, "too_large", "key %zu: %zu bytes (at most %u)", i, len,
                            TALLY_KEY_BYTES_MAX);
        hex_bytes += len;
    }
    gm_key *keys = calloc(n, sizeof *keys);
    uint8_t *buf = kh ? malloc(hex_bytes) : NULL;
    if (!keys || (kh && !buf)) {
        free(keys);
        free(buf);
        return srv_fail(e, 500, "internal", "out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(a, i);
        if (ks) {
            keys[i].p = (const uint8_t *)json_string_value(k);
            keys[i].n = json_string_length(k);
            continue;
        }
        keys[i].p = buf + off;
        keys[i].n = json_string_length(k) / 2;
        if (srv_unhex(json_string_value(k), json_string_length(k), buf + off) < 0) {
            free(keys);
            free(buf);
            return srv_fail(e, 400, "bad_request", "key %zu is not hex", i);
        }
        off += keys[i].n;
    }
    *out = keys;
    *out_n = n;
    *owned = buf;
    return 0;
}

/* The checkpoint S and the as-of point (tx=/at=, else S) every key is read
** at. Returns 0 or an HTTP status (e). */
static int getmany_point(srv_req *r, srv_err *e, srv_checkpoint *cp, uint64_t *trusted,
                         uint64_t *as_of)
{
    int st, rc = reg_checkpoint(r->s, r->lg, r->db, cp);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if (http_arg(r, "rev"))
        return srv_fail(e, 400, "bad_request", "rev is per key: use verified/get");
    if (!!http_arg(r, "tx") + !!http_arg(r, "at") > 1)
        return srv_fail(e, 400, "bad_request", "tx and at exclude each other");
    *as_of = 0;
    if ((st = trusted_arg(r, e, trusted)) || (st = kv_as_of(r, e, as_of)))
        return st;
    if (*as_of > cp->size && (st = checkpoint_covering(r, e, *as_of, cp)))
        return st;
    if ((st = trusted_check(e, *trusted, cp->size)))
        return st;
    if (*as_of == 0)
        *as_of = cp->size;
    return 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The work the keys' entry proofs need: each distinct transaction's entries
** are hashed once (the engine caches the trees of large ones). Returns 0 or
** 413 (e) when they exceed SRV_GETMANY_HASH_BYTES_MAX. */
static int getmany_budget(srv_req *r, srv_err *e, const tally_version *vs, const int *found,
                          size_t n, uint64_t *hash_bytes)
{
    uint64_t *txs = malloc((n ? n : 1) * sizeof *txs), bytes = 0;
    size_t m = 0;
    if (!txs)
        return srv_fail(e, 500, "internal", "out of memory");
    for (size_t i = 0; i < n; i++)
        if (found[i])
            txs[m++] = vs[i].tx;
    qsort(txs, m, sizeof *txs, u64_cmp);
    for (size_t i = 0; i < m; i++) {
        tally_tx_info t;
        if ((i > 0 && txs[i] == txs[i - 1]) || tally_tx_get(r->db, &t, txs[i]) != TALLY_OK)
            continue;
        bytes += t.entries_len;
    }
    free(txs);
    *hash_bytes = bytes;
    if (bytes > SRV_GETMANY_HASH_BYTES_MAX)
        return srv_fail(e, 413, "too_large",
                        "proving these keys means hashing %" PRIu64 " bytes of their transactions "
                        "(at most %u per request): ask for fewer keys", bytes,
                        SRV_GETMANY_HASH_BYTES_MAX);
    return 0;
}

/* Bytes a string or bytes field takes in the JSON answer, at most: a UTF-8
** string with its escapes (a control byte is \u00XX), else hex. */
static uint64_t json_field_bytes(const void *p, size_t n)
{
    if (!srv_utf8_valid(p, n))
        return 2 * (uint64_t)n + 16;
    uint64_t b = 16;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = ((const uint8_t *)p)[i];
        b += c < 0x20 ? 6 : c == '"' || c == '\\' ? 2 : 1;
    }
    return b;
}

/* Answers every key (found: a bundle; absent: not_found) into either form.
** Returns 0 or an HTTP status (e). */
static int getmany_answer(srv_req *r, srv_err *e, const gm_key *keys, size_t n, int binary,
                          json_t *o, bbuf *b)
{
    srv_checkpoint cp;
    uint64_t trusted, as_of;
    tally_proof cons;
    int st, rc;
    if ((st = getmany_point(r, e, &cp, &trusted, &as_of)))
        return st;
    cons.len = 0;
    cons.index = 0;
    if (trusted > 0 && trusted < cp.size &&
        (rc = tally_proof_consistency(r->db, &cons, trusted, cp.size)) != TALLY_OK)
        return srv_fail_engine(e, rc);
    json_t *results = NULL;
    if (binary) {
        bb_put(b, "TVB1", 4);
        bb_le(b, n, 4);
        bb_le(b, cp.note_len, 4);
        bb_put(b, cp.note, cp.note_len);
        bb_le(b, cons.index, 8);
        bb_path(b, &cons);
    } else if ((st = bundle_cp(r, e, o, trusted, &cp)) ||
               json_object_set_new(o, "results", results = json_array()) < 0) {
        return st ? st : srv_fail(e, 500, "internal", "out of memory");
    }
    vitem *it = malloc(sizeof *it);
    tally_version *vs = calloc(n, sizeof *vs);
    int *found = calloc(n, sizeof *found);
    if (!it || !vs || !found) {
        free(it);
        free(vs);
        free(found);
        return srv_fail(e, 500, "internal", "out of memory");
    }
    /* The lookups first, to bound the proofs' work before doing it. */
    for (size_t i = 0; i < n && st == 0; i++) {
        /* as_of >= 1 here unless the ledger is empty: then nothing is found. */
        rc = as_of ? tally_get(r->db, &vs[i], TALLY_NS_KV, keys[i].p, keys[i].n, as_of)
                   : TALLY_ENOTFOUND;
        found[i] = rc == TALLY_OK;
        if (rc != TALLY_OK && rc != TALLY_ENOTFOUND)
            st = srv_fail_engine(e, rc);
    }
    uint64_t hash_bytes = 0;
    if (st == 0)
        st = getmany_budget(r, e, vs, found, n, &hash_bytes);
    if (st == 0 && !r->defer && hash_bytes > SRV_LOOP_HASH_BYTES_MAX)
        st = -1; /* costly: the caller moves the request to the worker pool */
    uint64_t json_bytes = 0; /* an upper bound of the JSON answer's size */
    for (size_t i = 0; i < n && st == 0; i++) {
        rc = found[i] ? TALLY_OK : TALLY_ENOTFOUND;
        if (found[i]) {
            it->v = vs[i];
            st = vitem_fetch(r, e, it, cp.size);
        }
        if (st)
            break;
        if (binary) {
            if (rc == TALLY_OK) {
                vitem_bin(b, it);
            } else {
                bb_le(b, 1, 1);
                bb_le(b, 0, 1);
                bb_le(b, keys[i].n, 2);
                bb_put(b, keys[i].p, keys[i].n);
            }
            if (b->oom)
                st = srv_fail(e, 500, "internal", "out of memory");
            else if (b->len > SRV_GETMANY_BYTES_MAX)
                st = srv_fail(e, 413, "too_large", "the answer exceeds %u bytes: ask for fewer keys",
                              SRV_GETMANY_BYTES_MAX);
            continue;
        }
        json_bytes += 512 + json_field_bytes(keys[i].p, keys[i].n);
        if (rc == TALLY_OK)
            json_bytes += json_field_bytes(it->ev.value, it->ev.value_len) +
                          2 * ((uint64_t)it->ev.meta_len + it->t.header_len) +
                          68 * ((uint64_t)it->ep.len + it->tp.len);
        if (json_bytes > SRV_GETMANY_BYTES_MAX) {
            st = srv_fail(e, 413, "too_large", "the answer exceeds %u bytes: ask for fewer keys",
                          SRV_GETMANY_BYTES_MAX);
            break;
        }
        json_t *x = json_object();
        if (!x || json_array_append_new(results, x) < 0 ||
            (rc == TALLY_OK
                 ? vitem_json(x, it)
                 : (srv_json_set_bytes(x, "key", keys[i].p, keys[i].n) < 0 ||
                    json_object_set_new(x, "error",
                                        json_pack("{s:s,s:s}", "code", "not_found", "message",
                                                  "no such key at this point")) < 0)
                       ? -1 : 0) < 0)
            st = srv_fail(e, 500, "internal", "out of memory");
    }
    free(it);
    free(vs);
    free(found);
    return st;
}

int h_verified_getmany(srv_req *r)
{
    int res;
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    srv_err e;
    gm_key *keys = NULL;
    size_t n = 0;
    uint8_t *owned = NULL;
    int binary = http_accepts_bundles(r);
    bbuf b = { 0 };
    json_t *o = binary ? NULL : json_object();
    int st = !binary && !o ? srv_fail(&e, 500, "internal", "out of memory")
                           : getmany_keys(&e, j, &keys, &n, &owned);
    if (st == 0)
        st = getmany_answer(r, &e, keys, n, binary, o, &b);
    free(keys);
    free(owned);
    json_decref(j);
    if (st == -1) { /* proofs to hash beyond what a loop does: again, on the pool */
        json_decref(o);
        free(b.p);
        return http_to_pool(r);
    }
    if (st) {
        json_decref(o);
        free(b.p);
        return http_error(r, &e);
    }
    if (binary)
        return http_raw(r, 200, SRV_BUNDLES_CTYPE, (char *)b.p, b.len);
    return http_json(r, 200, o);
}

/* ---- verified/set ---- */
/* verified/set's continuation: the transaction is durable; bundle it. */
static int verified_set_done(srv_req *r)
{
    if (r->commit_rc != TALLY_OK)
        return http_commit_failed(r);
    uint64_t trusted = *(const uint64_t *)r->ctx, tx = r->commit_tx;
    srv_checkpoint cp;
    srv_err e;
    json_t *o = json_object();
    int st = !o ? srv_fail(&e, 500, "internal", "out of memory")
                : checkpoint_covering(r, &e, tx, &cp);
    if (st == 0 && json_object_set_new(o, "tx", json_integer((json_int_t)tx)) < 0)
        st = srv_fail(&e, 500, "internal", "out of memory");
    if (st == 0)
        st = bundle_tx(r, &e, o, tx, trusted, &cp);
    if (st) {
        json_decref(o);
        return http_error(r, &e);
    }
    return http_json(r, 200, o);
}

/* Parses, checks trusted, queues the commit. Returns 0 (queued: *res is
** MHD's result) or an HTTP status (e). */
static int verified_set(srv_req *r, srv_err *e, json_t *j, int *res)
{
    static const char *const fields[] = { "entries", "meta", "meta_hex", "trusted", NULL };
    srv_set ss;
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    json_t *jt = json_object_get(j, "trusted");
    int st = srv_json_fields(e, j, fields, NULL);
    if (st)
        return st;
    if (jt && (!json_is_integer(jt) || json_integer_value(jt) < 0))
        return srv_fail(e, 400, "bad_request", "\"trusted\" must be a tree size");
    uint64_t *trusted = malloc(sizeof *trusted);
    if (!trusted)
        return srv_fail(e, 500, "internal", "out of memory");
    *trusted = jt ? (uint64_t)json_integer_value(jt) : 0;
    r->ctx = trusted;
    r->ctx_free = free;
    int rc = tally_state(r->db, &size, root);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if ((st = trusted_check(e, *trusted, size)))
        return st;
    if ((st = set_parse(&ss, e, j, NULL)) == 0) /* the entries are copied before it returns */
        *res = http_commit_async(r, ss.e, ss.n, ss.meta, ss.meta_len, verified_set_done);
    set_free(&ss);
    return st;
}

int h_verified_set(srv_req *r)
{
    int res;
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    srv_err e;
    int st = verified_set(r, &e, j, &res);
    json_decref(j);
    return st ? http_error(r, &e) : res;
}

/* ---- verified/tx/N ---- */
/* tally_tx_entries callback: appends {"index","header_hex","key","value",
** "meta_hex"} of entry i to the array arg. */
static int verified_entry(void *arg, uint32_t i, const tally_entry_view *ev)
{
    json_t *o = json_pack("{s:I}", "index", (json_int_t)i);
    if (o && (srv_json_set_hex(o, "header_hex", ev->header, sizeof ev->header) < 0 ||
              srv_json_set_bytes(o, "key", ev->key, ev->key_len) < 0 ||
              srv_json_set_bytes(o, "value", ev->value, ev->value_len) < 0 ||
              srv_json_set_hex(o, "meta_hex", ev->meta, ev->meta_len) < 0)) {
        json_decref(o);
        o = NULL;
    }
    return o && json_array_append_new(arg, o) == 0 ? 0 : TALLY_ENOMEM;
}

static int verified_tx(srv_req *r, srv_err *e, json_t *o)
{
    srv_checkpoint cp;
    tally_tx_info t;
    uint64_t trusted, tx = r->path_n;
    char ts[SRV_TIME_BUF];
    int st, rc;
    if (tx == 0)
        return srv_fail(e, 404, "not_found", "transactions start at 1");
    if ((st = trusted_arg(r, e, &trusted)) || (st = checkpoint_covering(r, e, tx, &cp)) ||
        (st = trusted_check(e, trusted, cp.size)))
        return st;
    if ((rc = tally_tx_get(r->db, &t, tx)) != TALLY_OK)
        return srv_fail_engine(e, rc);
    if (!r->defer && (t.entries_len > SRV_LOOP_HASH_BYTES_MAX ||
                      t.entry_count > SRV_LOOP_TX_ENTRIES_MAX))
        return -1; /* a large transaction to send whole: on the pool */
    srv_fmt_time(ts, t.ts_ns);
    json_t *arr = json_array();
    if (json_object_set_new(o, "tx", json_integer((json_int_t)tx)) < 0 ||
        json_object_set_new(o, "ts", json_string(ts)) < 0 ||
        json_object_set_new(o, "entries", arr) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    if ((rc = tally_tx_entries(r->db, tx, verified_entry, arr)) != TALLY_OK)
        return srv_fail_engine(e, rc);
    return bundle_tx(r, e, o, tx, trusted, &cp);
}

int h_verified_tx(srv_req *r)
{
    srv_err e;
    json_t *o = json_object();
    int st = o ? verified_tx(r, &e, o) : srv_fail(&e, 500, "internal", "out of memory");
    if (st == -1) {
        json_decref(o);
        return http_to_pool(r);
    }
    if (st) {
        json_decref(o);
        return http_error(r, &e);
    }
    return http_json(r, 200, o);
}
