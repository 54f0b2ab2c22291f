/*
** handlers_proof.c — proofs, signed checkpoints and the verified reads and
** writes of docs/API.md ("The proof bundle").
**
** Every bundle is built against one signed checkpoint of size S taken from
** the per-ledger cache (registry.c): the tx inclusion proof is in the tree of
** size S, the consistency proof goes from the client's trusted size to S, and
** the value read is one visible at S.
**
** Invariants:
**   (1) a bundle's proofs and its checkpoint name the same size S, and the
**       transaction it proves is <= S;
**   (2) trusted > S is refused (400) before anything is committed;
**   (3) a consistency proof is included only when 0 < trusted < S (trusted 0
**       means "nothing trusted yet"; trusted == S needs no proof).
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
    if (trusted > 0 && trusted < cp->size) {
        if ((rc = tally_proof_consistency(r->db, &p, trusted, cp->size)) != TALLY_OK)
            return srv_fail_engine(e, rc);
        if (json_object_set_new(o, "consistency", proof_json(&p, "old")) < 0)
            return srv_fail(e, 500, "internal", "out of memory");
    }
    json_t *note = json_stringn(cp->note, cp->note_len);
    if (json_object_set_new(o, "checkpoint", note) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    return 0;
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
/* size= or the current size. Returns 0 or an HTTP status (e). */
static int size_arg(srv_req *r, srv_err *e, uint64_t *size)
{
    uint8_t root[TALLY_HASH_LEN];
    int has = http_arg_u64(r, "size", size);
    if (has < 0)
        return srv_fail(e, 400, "bad_request", "size must be a tree size");
    int rc = has ? TALLY_OK : tally_state(r->db, size, root);
    return rc == TALLY_OK ? 0 : srv_fail_engine(e, rc);
}

int h_proof_inclusion(srv_req *r)
{
    srv_err e;
    uint64_t tx, size;
    int has = http_arg_u64(r, "tx", &tx), rc;
    if (has != 1 || tx == 0)
        return http_errorf(r, 400, "bad_request", "needs tx=N (N >= 1)");
    if (size_arg(r, &e, &size) != 0)
        return http_error(r, &e);
    if (tx > size)
        return http_errorf(r, 404, "not_found", "tx %" PRIu64 " is not in a tree of size %" PRIu64, tx, size);
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
    uint64_t old, size;
    int has = http_arg_u64(r, "old", &old), rc;
    if (has != 1)
        return http_errorf(r, 400, "bad_request", "needs old=M");
    if (size_arg(r, &e, &size) != 0)
        return http_error(r, &e);
    if (old == 0 || old > size)
        return http_errorf(r, 400, "bad_request", "needs 1 <= old <= size");
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

/* ---- verified/get ---- */
/* Adds entry and entry_proof of entry i of tx to o. Returns 0 or a status. */
static int bundle_entry(srv_req *r, srv_err *e, json_t *o, uint64_t tx, uint32_t i)
{
    tally_entry_view ev;
    tally_proof p;
    int rc = tally_tx_entry(r->db, &ev, tx, i);
    if (rc == TALLY_OK)
        rc = tally_proof_entry(r->db, &p, tx, i);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    json_t *ej = json_pack("{s:I}", "index", (json_int_t)i);
    if (!ej || srv_json_set_hex(ej, "header_hex", ev.header, sizeof ev.header) < 0 ||
        srv_json_set_hex(ej, "meta_hex", ev.meta, ev.meta_len) < 0 ||
        json_object_set_new(o, "entry", ej) < 0 ||
        json_object_set_new(o, "entry_proof", proof_json(&p, "index")) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    return 0;
}

/* Builds the verified/get answer. Returns 0 or an HTTP status (e). */
static int verified_get(srv_req *r, srv_err *e, json_t *o, const uint8_t **key, size_t *klen,
                        uint8_t **owned)
{
    srv_checkpoint cp;
    tally_version v;
    uint64_t trusted;
    char ts[SRV_TIME_BUF];
    int st, rc = reg_checkpoint(r->s, r->lg, r->db, &cp);
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if ((st = trusted_arg(r, e, &trusted)) || (st = trusted_check(e, trusted, cp.size)))
        return st;
    /* The latest value as of S; an explicit tx/at/rev may need a newer checkpoint. */
    if ((st = kv_lookup(r, e, cp.size ? cp.size : 0, key, klen, owned, &v)))
        return st;
    if (v.tx > cp.size && (st = checkpoint_covering(r, e, v.tx, &cp)))
        return st;
    srv_fmt_time(ts, v.ts_ns);
    if (srv_json_set_bytes(o, "key", *key, *klen) < 0 ||
        srv_json_set_bytes(o, "value", v.value, v.value_len) < 0 ||
        json_object_set_new(o, "tx", json_integer((json_int_t)v.tx)) < 0 ||
        json_object_set_new(o, "rev", json_integer((json_int_t)v.rev)) < 0 ||
        json_object_set_new(o, "ts", json_string(ts)) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    if ((st = bundle_entry(r, e, o, v.tx, v.entry_index)))
        return st;
    return bundle_tx(r, e, o, v.tx, trusted, &cp);
}

int h_verified_get(srv_req *r)
{
    const uint8_t *key = NULL;
    size_t klen = 0;
    uint8_t *owned = NULL;
    srv_err e;
    json_t *o = json_object();
    int st = o ? verified_get(r, &e, o, &key, &klen, &owned)
               : srv_fail(&e, 500, "internal", "out of memory");
    free(owned);
    if (st) {
        json_decref(o);
        return http_error(r, &e);
    }
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
    srv_set ss;
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    json_t *jt = json_object_get(j, "trusted");
    if (jt && (!json_is_integer(jt) || json_integer_value(jt) < 0))
        return srv_fail(e, 400, "bad_request", "\"trusted\" must be a tree size");
    uint64_t *trusted = malloc(sizeof *trusted);
    if (!trusted)
        return srv_fail(e, 500, "internal", "out of memory");
    *trusted = jt ? (uint64_t)json_integer_value(jt) : 0;
    r->ctx = trusted;
    r->ctx_free = free;
    int rc = tally_state(r->db, &size, root), st;
    if (rc != TALLY_OK)
        return srv_fail_engine(e, rc);
    if ((st = trusted_check(e, *trusted, size)))
        return st;
    if ((st = set_parse(&ss, e, j)) == 0) /* the entries are copied before it returns */
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
/* {"index","header_hex","key","value","meta_hex"} of entry i, or NULL. */
static json_t *verified_entry(srv_req *r, uint64_t tx, uint32_t i, int *rc)
{
    tally_entry_view ev;
    if ((*rc = tally_tx_entry(r->db, &ev, tx, i)) != TALLY_OK)
        return NULL;
    json_t *o = json_pack("{s:I}", "index", (json_int_t)i);
    if (o && (srv_json_set_hex(o, "header_hex", ev.header, sizeof ev.header) < 0 ||
              srv_json_set_bytes(o, "key", ev.key, ev.key_len) < 0 ||
              srv_json_set_bytes(o, "value", ev.value, ev.value_len) < 0 ||
              srv_json_set_hex(o, "meta_hex", ev.meta, ev.meta_len) < 0)) {
        json_decref(o);
        o = NULL;
    }
    if (!o)
        *rc = TALLY_ENOMEM;
    return o;
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
    srv_fmt_time(ts, t.ts_ns);
    json_t *arr = json_array();
    if (json_object_set_new(o, "tx", json_integer((json_int_t)tx)) < 0 ||
        json_object_set_new(o, "ts", json_string(ts)) < 0 ||
        json_object_set_new(o, "entries", arr) < 0)
        return srv_fail(e, 500, "internal", "out of memory");
    for (uint32_t i = 0; i < t.entry_count; i++) {
        json_t *ej = verified_entry(r, tx, i, &rc);
        if (!ej || json_array_append_new(arr, ej) < 0)
            return srv_fail_engine(e, rc == TALLY_OK ? TALLY_ENOMEM : rc);
    }
    return bundle_tx(r, e, o, tx, trusted, &cp);
}

int h_verified_tx(srv_req *r)
{
    srv_err e;
    json_t *o = json_object();
    int st = o ? verified_tx(r, &e, o) : srv_fail(&e, 500, "internal", "out of memory");
    if (st) {
        json_decref(o);
        return http_error(r, &e);
    }
    return http_json(r, 200, o);
}
