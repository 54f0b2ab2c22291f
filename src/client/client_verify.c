/*
** client_verify.c — the verifying client's checks of tallyd's proof bundles and
** checkpoints (rules: verify.h and docs/API.md). Pure: no I/O, no clock.
**
** Every value used after a successful check was either recomputed here from
** bytes the server sent (hashes, lengths, header fields) or compared with
** what the caller asked for; the only thing reported unverified is a get's
** revision number (tc_bundle.rev), which no bundle can prove.
*/
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/verify.h"
#include "util/text.h"
#include "log/record.h"
#include "merkle/rfc6962.h"
#include "util/sha256.h"

/* Returns TALLY_EBADPROOF after writing the reason. */
static int bad(char why[TC_WHY_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(char why[TC_WHY_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, TC_WHY_MAX, fmt, ap);
    va_end(ap);
    return TALLY_EBADPROOF;
}



void tc_hex(char *out, const uint8_t *in, size_t n)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void tc_checkpoint_free(tc_checkpoint *cp)
{
    free(cp->note);
    cp->note = NULL;
    cp->note_len = 0;
}

void tc_bundle_free(tc_bundle *b)
{
    tc_checkpoint_free(&b->cp);
    for (size_t i = 0; i < b->n_entries; i++) {
        free(b->entries[i].key);
        free(b->entries[i].meta);
        free(b->entries[i].value);
    }
    free(b->entries);
    free(b->txh);
    memset(b, 0, sizeof *b);
}

/* ---- strict JSON field access (jansson) ---- */

static int get_u64(json_t *o, const char *name, uint64_t *out, char why[TC_WHY_MAX])
{
    json_t *v = json_object_get(o, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(why, "field \"%s\" missing or not a non-negative integer", name);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Hex string v of exactly `want` bytes into out: 0, -1 (not a string),
** -2 (wrong length), -3 (not hex). */
static int hex_into(json_t *v, uint8_t *out, size_t want)
{
    if (!json_is_string(v))
        return -1;
    size_t n = json_string_length(v);
    return n != 2 * want ? -2 : tc_unhex(json_string_value(v), n, out) < 0 ? -3 : 0;
}

/* Hex field into a malloc'ed buffer (+1 NUL byte); exactly `want` bytes
** unless want == SIZE_MAX. */
static int get_hex(json_t *o, const char *name, uint8_t **out, size_t *out_len, size_t want,
                   char why[TC_WHY_MAX])
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v))
        return bad(why, "field \"%s\" missing or not a string", name);
    size_t n = json_string_length(v);
    if (n % 2 || (want != SIZE_MAX && n != 2 * want))
        return bad(why, "field \"%s\" has the wrong length", name);
    uint8_t *b = malloc(n / 2 + 1);
    if (!b)
        return TALLY_ENOMEM;
    if (tc_unhex(json_string_value(v), n, b) < 0) {
        free(b);
        return bad(why, "field \"%s\" is not hex", name);
    }
    b[n / 2] = 0;
    *out = b;
    *out_len = n / 2;
    return 0;
}

/* A hex field of exactly `want` bytes into out (no allocation). */
static int get_hex_fixed(json_t *o, const char *name, uint8_t *out, size_t want,
                         char why[TC_WHY_MAX])
{
    int rc = hex_into(json_object_get(o, name), out, want);
    return rc == 0 ? 0
           : rc == -1 ? bad(why, "field \"%s\" missing or not a string", name)
           : rc == -2 ? bad(why, "field \"%s\" has the wrong length", name)
                      : bad(why, "field \"%s\" is not hex", name);
}

/* "name" (UTF-8 text) or "name_hex" (hex), exactly one of them. */
static int get_bytes(json_t *o, const char *name, uint8_t **out, size_t *out_len,
                     char why[TC_WHY_MAX])
{
    char hname[64];
    snprintf(hname, sizeof hname, "%s_hex", name);
    json_t *t = json_object_get(o, name), *h = json_object_get(o, hname);
    if ((t != NULL) == (h != NULL))
        return bad(why, "need exactly one of \"%s\" and \"%s\"", name, hname);
    if (h)
        return get_hex(o, hname, out, out_len, SIZE_MAX, why);
    if (!json_is_string(t))
        return bad(why, "field \"%s\" is not a string", name);
    size_t n = json_string_length(t);
    uint8_t *b = malloc(n + 1);
    if (!b)
        return TALLY_ENOMEM;
    memcpy(b, json_string_value(t), n);
    b[n] = 0;
    *out = b;
    *out_len = n;
    return 0;
}

/* A proof object {"index"|"old", "size", "proof":[hex32...]}. */
typedef struct jproof {
    uint64_t a, size;
    size_t len;
    rfc6962_hash path[RFC6962_PROOF_MAX + 1];
} jproof;

static int get_proof(json_t *o, const char *first, jproof *p, char why[TC_WHY_MAX])
{
    if (!json_is_object(o))
        return bad(why, "proof object missing");
    int rc;
    if ((rc = get_u64(o, first, &p->a, why)) || (rc = get_u64(o, "size", &p->size, why)))
        return rc;
    json_t *arr = json_object_get(o, "proof");
    if (!json_is_array(arr))
        return bad(why, "field \"proof\" missing or not an array");
    p->len = json_array_size(arr);
    if (p->len > RFC6962_PROOF_MAX + 1)
        return bad(why, "proof has %zu elements", p->len);
    for (size_t i = 0; i < p->len; i++)
        if (hex_into(json_array_get(arr, i), p->path[i], 32) != 0)
            return bad(why, "proof element %zu is not a 32-byte hex hash", i);
    return 0;
}

/* Parses body; the root must be an object. NULL (why set) otherwise.
** Duplicate members are refused (a bundle has one meaning); NUL bytes are
** allowed inside strings (keys and values are binary-safe). */
static json_t *load(const char *body, size_t len, char why[TC_WHY_MAX])
{
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!j) {
        bad(why, "malformed JSON: %s", err.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        bad(why, "response is not a JSON object");
        return NULL;
    }
    return j;
}

/* ---- checkpoints ---- */

/* Signature checks are memoized: a success for the same (key name, public
** key, note bytes) is the same answer, and most calls see the checkpoint they
** already trust (two Ed25519 verifications per read otherwise: measured 65% of
** a verified get). Only successes are cached; NOTE_CACHE_SLOTS entries, one
** mutex, shared by every client of the process. */
#define NOTE_CACHE_SLOTS 64
static pthread_mutex_t note_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t note_cache[NOTE_CACHE_SLOTS][32];
static size_t note_cache_text_len[NOTE_CACHE_SLOTS];
static unsigned note_cache_next;

static void note_digest(const tc_trust *t, const char *note, size_t len, uint8_t out[32]) {
    tally_sha256_ctx c;
    tally_sha256_init(&c);
    tally_sha256_update(&c, t->key_name, strlen(t->key_name) + 1);
    tally_sha256_update(&c, t->pub, 32);
    tally_sha256_update(&c, note, len);
    tally_sha256_final(&c, out);
}

static int note_verify_cached(const tc_trust *t, const char *note, size_t len, size_t *text_len) {
    uint8_t d[32];
    note_digest(t, note, len, d);
    pthread_mutex_lock(&note_cache_mu);
    for (unsigned i = 0; i < NOTE_CACHE_SLOTS; i++)
        if (memcmp(note_cache[i], d, 32) == 0 && note_cache_text_len[i]) {
            *text_len = note_cache_text_len[i];
            pthread_mutex_unlock(&note_cache_mu);
            return 0;
        }
    pthread_mutex_unlock(&note_cache_mu);
    if (note_verify(note, len, t->key_name, t->pub, text_len) != 0) return -1;
    pthread_mutex_lock(&note_cache_mu);
    unsigned slot = note_cache_next++ % NOTE_CACHE_SLOTS;
    memcpy(note_cache[slot], d, 32);
    note_cache_text_len[slot] = *text_len;
    pthread_mutex_unlock(&note_cache_mu);
    return 0;
}

int tc_check_note(const tc_trust *t, const char *note, size_t note_len, uint64_t *size,
                  uint8_t root[32], char why[TC_WHY_MAX])
{
    size_t text_len = 0;
    char origin[NOTE_NAME_MAX + 1];
    if (note_len > NOTE_TEXT_MAX)
        return bad(why, "checkpoint note longer than %d bytes", NOTE_TEXT_MAX);
    if (t->note && t->size > 0 && note_len == t->note_len &&
        memcmp(note, t->note, note_len) == 0) {
        /* The very note already trusted (the common case of a read). */
        *size = t->size;
        memcpy(root, t->root, 32);
        return 0;
    }
    if (note_verify_cached(t, note, note_len, &text_len) != 0)
        return bad(why, "checkpoint signature does not verify under the pinned key %s",
                   t->key_name);
    if (checkpoint_parse(note, text_len, origin, size, root) != 0)
        return bad(why, "signed note is not a checkpoint");
    if (strcmp(origin, t->origin) != 0)
        return bad(why, "checkpoint origin '%s' is not the pinned '%s'", origin, t->origin);
    return 0;
}

/* Consistency of (t->size, t->root) -> (size, root) with proof p (NULL:
** none sent; p->a is its old size). */
static int consistency_core(const tc_trust *t, uint64_t size, const uint8_t root[32],
                            const jproof *p, char why[TC_WHY_MAX])
{
    if (size < t->size)
        return bad(why, "checkpoint size %" PRIu64 " is smaller than the trusted size %" PRIu64
                   " (rollback)", size, t->size);
    if (size == t->size && t->size > 0 && memcmp(root, t->root, 32) != 0)
        return bad(why, "checkpoint at the trusted size %" PRIu64 " has another root (fork)",
                   size);
    if (!p) {
        if (t->size == 0 || size == t->size)
            return 0;
        return bad(why, "consistency proof from trusted size %" PRIu64 " missing", t->size);
    }
    if (p->a != t->size || p->size != size)
        return bad(why, "consistency proof is %" PRIu64 "->%" PRIu64 ", need %" PRIu64
                   "->%" PRIu64, p->a, p->size, t->size, size);
    if (size == t->size && p->len != 0)
        return bad(why, "a non-empty consistency proof between equal sizes %" PRIu64, size);
    if (rfc6962_verify_consistency(t->size, size, t->root, root, (const rfc6962_hash *)p->path,
                                   p->len) != 0)
        return bad(why, "consistency proof %" PRIu64 "->%" PRIu64 " does not verify (fork)",
                   t->size, size);
    return 0;
}

/* The same with the JSON proof object cons (NULL: none sent). */
static int check_consistency(const tc_trust *t, uint64_t size, const uint8_t root[32],
                             json_t *cons, char why[TC_WHY_MAX])
{
    if (!cons)
        return consistency_core(t, size, root, NULL, why);
    jproof p;
    int rc = get_proof(cons, "old", &p, why);
    if (rc)
        return rc;
    /* Claimed roots, when sent, must be the ones we hold. */
    uint8_t r[32];
    static const char *const names[2] = { "old_root", "root" };
    for (int i = 0; i < 2; i++) {
        if (!json_object_get(cons, names[i]))
            continue;
        if ((rc = get_hex_fixed(cons, names[i], r, 32, why)))
            return rc;
        if (memcmp(r, i ? root : t->root, 32) != 0 && (i || t->size > 0))
            return bad(why, "consistency proof claims another %s", names[i]);
    }
    return consistency_core(t, size, root, &p, why);
}

static int checkpoint_core(const tc_trust *t, const char *note, size_t note_len, json_t *cons,
                           tc_checkpoint *out, char why[TC_WHY_MAX])
{
    memset(out, 0, sizeof *out);
    int rc = tc_check_note(t, note, note_len, &out->size, out->root, why);
    if (rc == 0)
        rc = check_consistency(t, out->size, out->root, cons, why);
    if (rc)
        return rc;
    out->note = malloc(note_len + 1);
    if (!out->note)
        return TALLY_ENOMEM;
    memcpy(out->note, note, note_len);
    out->note[note_len] = '\0';
    out->note_len = note_len;
    return 0;
}

int tc_verify_checkpoint(const tc_trust *t, const char *note, size_t note_len, const char *cons,
                         size_t cons_len, tc_checkpoint *out, char why[TC_WHY_MAX])
{
    json_t *j = NULL;
    why[0] = '\0';
    if (cons && !(j = load(cons, cons_len, why))) {
        memset(out, 0, sizeof *out);
        return TALLY_EBADPROOF;
    }
    int rc = checkpoint_core(t, note, note_len, j, out, why);
    json_decref(j);
    if (rc)
        tc_checkpoint_free(out);
    return rc;
}

/* ---- bundles ---- */

/* Tx header b->txh: decode, id == claimed, inclusion at tx-1 under the
** checkpoint root (b->cp) with proof p. */
static int tx_header_core(tc_bundle *b, uint64_t claimed, const jproof *p, char why[TC_WHY_MAX])
{
    txh_view h;
    if (txh_decode(b->txh, b->txh_len, &h) != 0)
        return bad(why, "tx header does not decode");
    if (h.tx_id != claimed || claimed == 0)
        return bad(why, "tx header is tx %" PRIu64 ", the response claims tx %" PRIu64, h.tx_id,
                   claimed);
    b->tx = h.tx_id;
    b->ts_ns = h.ts_ns;
    b->entry_count = h.entry_count;
    memcpy(b->prev_hash, h.prev_hash, 32);
    memcpy(b->entries_root, h.entries_root, 32);
    b->tx_meta = b->txh + TXH_FIXED_LEN;
    b->tx_meta_len = h.meta_len;
    rfc6962_leaf_hash(b->txh, b->txh_len, b->tx_hash);
    if (p->a != b->tx - 1 || p->size != b->cp.size)
        return bad(why, "tx proof is for index %" PRIu64 " size %" PRIu64 ", need %" PRIu64
                   " size %" PRIu64, p->a, p->size, b->tx - 1, b->cp.size);
    if (rfc6962_verify_inclusion(b->tx_hash, p->a, p->size, (const rfc6962_hash *)p->path,
                                 p->len, b->cp.root) != 0)
        return bad(why, "tx %" PRIu64 " is not included under the checkpoint root", b->tx);
    return 0;
}

static int check_tx_header(json_t *j, tc_bundle *b, char why[TC_WHY_MAX])
{
    int rc;
    uint64_t claimed = 0;
    jproof p;
    if ((rc = get_u64(j, "tx", &claimed, why)) ||
        (rc = get_hex(j, "tx_header_hex", &b->txh, &b->txh_len, SIZE_MAX, why)) ||
        (rc = get_proof(json_object_get(j, "tx_proof"), "index", &p, why)))
        return rc;
    return tx_header_core(b, claimed, &p, why);
}

/* Entry leaf from header || key || meta || SHA256(value), after checking
** the header's fields against the bytes received. */
static int entry_leaf(tc_entry *e, char why[TC_WHY_MAX])
{
    const uint8_t *h = e->header;
    uint8_t flags = h[1];
    e->ns = h[0];
    e->deleted = flags & ENTRY_FLAG_DELETED;
    if (flags & ~ENTRY_FLAGS_KNOWN)
        return bad(why, "entry %" PRIu32 " has unknown flags 0x%02x", e->index, flags);
    if (rd16(h + 2) != e->key_len || e->key_len == 0)
        return bad(why, "entry %" PRIu32 ": header key_len %u, key received has %zu bytes",
                   e->index, rd16(h + 2), e->key_len);
    if (rd32(h + 4) != e->meta_len)
        return bad(why, "entry %" PRIu32 ": header meta_len %" PRIu32 ", meta received has %zu"
                   " bytes", e->index, rd32(h + 4), e->meta_len);
    if (rd32(h + 8) != e->value_len)
        return bad(why, "entry %" PRIu32 ": header value_len %" PRIu32 ", value received has %zu"
                   " bytes", e->index, rd32(h + 8), e->value_len);
    if (e->deleted && e->value_len)
        return bad(why, "entry %" PRIu32 ": a tombstone with a value", e->index);
    uint8_t vh[32];
    tally_sha256_ctx c;
    tally_sha256(e->value, e->value_len, vh);
    static const uint8_t zero = 0;
    tally_sha256_init(&c);
    tally_sha256_update(&c, &zero, 1);
    tally_sha256_update(&c, h, ENTRY_HDR_LEN);
    tally_sha256_update(&c, e->key, e->key_len);
    tally_sha256_update(&c, e->meta, e->meta_len);
    tally_sha256_update(&c, vh, 32);
    tally_sha256_final(&c, e->leaf_hash);
    return 0;
}

static int bytes_eq(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* TC_GET, once b->entries[0] holds the entry received (header, key, meta,
** value) and b->rev the claimed revision: the entry, its proof p under the
** tx's entries root, the key and the selector asked for. */
static int get_core(const tc_expect *e, tc_bundle *b, uint64_t idx, int deleted_claim,
                    const jproof *p, char why[TC_WHY_MAX])
{
    tc_entry *x = &b->entries[0];
    int rc;
    if (idx >= b->entry_count)
        return bad(why, "entry index %" PRIu64 " outside the tx's %" PRIu32 " entries", idx,
                   b->entry_count);
    x->index = (uint32_t)idx;
    if (!bytes_eq(x->key, x->key_len, e->key, e->key_len))
        return bad(why, "the bundle is for another key");
    if ((rc = entry_leaf(x, why)))
        return rc;
    if (x->ns != TALLY_NS_KV)
        return bad(why, "entry is in namespace %u, not key-value", x->ns);
    if (deleted_claim != (x->deleted != 0))
        return bad(why, "claimed deletion flag differs from the entry header");
    if (p->a != idx || p->size != b->entry_count)
        return bad(why, "entry proof is for index %" PRIu64 " of %" PRIu64 ", need %" PRIu64
                   " of %" PRIu32, p->a, p->size, idx, b->entry_count);
    if (rfc6962_verify_inclusion(x->leaf_hash, p->a, p->size, (const rfc6962_hash *)p->path,
                                 p->len, b->entries_root) != 0)
        return bad(why, "entry is not included under the tx's entries root");
    /* The selector: what was asked for. */
    if (e->sel == TC_SEL_TX && b->tx > e->sel_val)
        return bad(why, "version is from tx %" PRIu64 ", after the requested tx %" PRIu64, b->tx,
                   e->sel_val);
    if (e->sel == TC_SEL_AT && b->ts_ns > e->sel_val)
        return bad(why, "version is from after the requested time");
    if (e->sel == TC_SEL_REV && b->rev != e->sel_val)
        return bad(why, "bundle is for revision %" PRIu64 ", not %" PRIu64, b->rev, e->sel_val);
    return 0;
}

/* TC_GET: the one entry and its proof under entries_root. */
static int check_get(json_t *j, const tc_expect *e, tc_bundle *b, char why[TC_WHY_MAX])
{
    int rc;
    json_t *ent = json_object_get(j, "entry");
    if (!json_is_object(ent))
        return bad(why, "field \"entry\" missing");
    if (!(b->entries = calloc(1, sizeof *b->entries)))
        return TALLY_ENOMEM;
    b->n_entries = 1;
    tc_entry *x = &b->entries[0];
    uint64_t idx = 0;
    if ((rc = get_u64(ent, "index", &idx, why)) ||
        (rc = get_hex_fixed(ent, "header_hex", x->header, ENTRY_HDR_LEN, why)))
        return rc;
    if ((rc = get_hex(ent, "meta_hex", &x->meta, &x->meta_len, SIZE_MAX, why)) ||
        (rc = get_bytes(j, "key", &x->key, &x->key_len, why)) ||
        (rc = get_bytes(j, "value", &x->value, &x->value_len, why)))
        return rc;
    json_t *del = json_object_get(j, "deleted");
    if (del && !json_is_boolean(del))
        return bad(why, "field \"deleted\" is not a boolean");
    jproof p;
    if ((rc = get_proof(json_object_get(j, "entry_proof"), "index", &p, why)))
        return rc;
    json_t *rev = json_object_get(j, "rev");
    b->rev = json_is_integer(rev) && json_integer_value(rev) > 0
                 ? (uint64_t)json_integer_value(rev) : 0;
    return get_core(e, b, idx, del && json_is_true(del), &p, why);
}

/* Root over leaves and the entries_len implied, against the header. */
static int check_entries_root(tc_bundle *b, char why[TC_WHY_MAX])
{
    rfc6962_hash *leaves = malloc((b->n_entries + 1) * sizeof *leaves);
    if (!leaves)
        return TALLY_ENOMEM;
    uint64_t len = 0;
    for (size_t i = 0; i < b->n_entries; i++) {
        memcpy(leaves[i], b->entries[i].leaf_hash, 32);
        len += ENTRY_HDR_LEN + b->entries[i].key_len + b->entries[i].meta_len +
               b->entries[i].value_len;
    }
    uint8_t root[32];
    int rc = rfc6962_root_of_leaves((const rfc6962_hash *)leaves, b->n_entries, NULL, root);
    free(leaves);
    if (rc != 0)
        return TALLY_ENOMEM;
    if (memcmp(root, b->entries_root, 32) != 0)
        return bad(why, "recomputed entries root differs from the tx header's");
    if (len != rd32(b->txh + 85))
        return bad(why, "entries take %" PRIu64 " bytes, the tx header says %" PRIu32, len,
                   rd32(b->txh + 85));
    return 0;
}

/* TC_TX: every entry, in order. */
static int check_tx(json_t *j, const tc_expect *e, tc_bundle *b, char why[TC_WHY_MAX])
{
    int rc;
    if (b->tx != e->tx)
        return bad(why, "bundle is for tx %" PRIu64 ", not %" PRIu64, b->tx, e->tx);
    json_t *arr = json_object_get(j, "entries");
    if (!json_is_array(arr))
        return bad(why, "field \"entries\" missing");
    if (json_array_size(arr) != b->entry_count)
        return bad(why, "%zu entries sent, the tx header says %" PRIu32, json_array_size(arr),
                   b->entry_count);
    if (!(b->entries = calloc(b->entry_count, sizeof *b->entries)))
        return TALLY_ENOMEM;
    for (size_t i = 0; i < b->entry_count; i++) {
        json_t *o = json_array_get(arr, i);
        tc_entry *x = &b->entries[i];
        uint64_t idx = 0;
        b->n_entries = i + 1;
        if (!json_is_object(o))
            return bad(why, "entry %zu is not an object", i);
        if ((rc = get_u64(o, "index", &idx, why)))
            return rc;
        if (idx != i)
            return bad(why, "entry %zu has index %" PRIu64, i, idx);
        x->index = (uint32_t)i;
        if ((rc = get_hex_fixed(o, "header_hex", x->header, ENTRY_HDR_LEN, why)))
            return rc;
        if ((rc = get_hex(o, "meta_hex", &x->meta, &x->meta_len, SIZE_MAX, why)) ||
            (rc = get_bytes(o, "key", &x->key, &x->key_len, why)) ||
            (rc = get_bytes(o, "value", &x->value, &x->value_len, why)) ||
            (rc = entry_leaf(x, why)))
            return rc;
    }
    return check_entries_root(b, why);
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

/* TC_SET: recompute from what was sent; the tx must be new: above the
** trusted size and above the checkpoint verified before the write. */
static int check_set(const tc_trust *t, const tc_expect *e, tc_bundle *b, char why[TC_WHY_MAX])
{
    if (e->tx && b->tx != e->tx)
        return bad(why, "bundle is for tx %" PRIu64 ", the write was acknowledged as %" PRIu64,
                   b->tx, e->tx);
    if (b->tx <= t->size)
        return bad(why, "tx %" PRIu64 " is not newer than the trusted size %" PRIu64
                   " (a replayed transaction)", b->tx, t->size);
    if (b->tx <= e->after)
        return bad(why, "tx %" PRIu64 " existed before the write was sent (the ledger had %"
                   PRIu64 " transactions then): a replayed transaction", b->tx, e->after);
    if (b->ts_ns < e->ts_min)
        return bad(why, "tx %" PRIu64 " is %.3f s older than the client's clock allows (a "
                   "replayed transaction, or clocks further apart than the allowed skew)",
                   b->tx, (double)(e->ts_min - b->ts_ns) / 1e9);
    if (e->n_sent != b->entry_count)
        return bad(why, "%zu entries sent, the tx header says %" PRIu32, e->n_sent,
                   b->entry_count);
    if (!bytes_eq(b->tx_meta, b->tx_meta_len, e->meta ? e->meta : "", e->meta ? e->meta_len : 0))
        return bad(why, "tx metadata differs from the metadata sent%s",
                   e->meta ? "" : " (none)");
    if (!(b->entries = calloc(e->n_sent, sizeof *b->entries)))
        return TALLY_ENOMEM;
    for (size_t i = 0; i < e->n_sent; i++) {
        const tc_sent *s = &e->sent[i];
        tc_entry *x = &b->entries[i];
        b->n_entries = i + 1;
        x->index = (uint32_t)i;
        x->header[0] = TALLY_NS_KV;
        x->header[1] = s->deleted ? ENTRY_FLAG_DELETED : 0;
        wr16(x->header + 2, (uint16_t)s->key_len);
        wr32(x->header + 4, 0);
        wr32(x->header + 8, s->deleted ? 0 : (uint32_t)s->value_len);
        x->key = dup_bytes(s->key, s->key_len);
        x->meta = dup_bytes("", 0);
        x->value = dup_bytes(s->value, s->deleted ? 0 : s->value_len);
        if (!x->key || !x->meta || !x->value)
            return TALLY_ENOMEM;
        x->key_len = s->key_len;
        x->value_len = s->deleted ? 0 : s->value_len;
        int rc = entry_leaf(x, why);
        if (rc)
            return rc;
    }
    return check_entries_root(b, why);
}

int tc_verify_bundle(const tc_trust *t, const tc_expect *e, const char *body, size_t len,
                     tc_bundle *out, char why[TC_WHY_MAX])
{
    memset(out, 0, sizeof *out);
    why[0] = '\0';
    json_t *j = load(body, len, why);
    if (!j)
        return TALLY_EBADPROOF;
    int rc;
    json_t *note = json_object_get(j, "checkpoint");
    json_t *cons = json_object_get(j, "consistency");
    if (!json_is_string(note))
        rc = bad(why, "field \"checkpoint\" missing or not a string");
    else /* the note's bytes as jansson holds them: no copy */
        rc = checkpoint_core(t, json_string_value(note), json_string_length(note),
                             json_is_null(cons) ? NULL : cons, &out->cp, why);
    if (rc == 0)
        rc = check_tx_header(j, out, why);
    if (rc == 0) {
        if (e->kind == TC_GET)
            rc = check_get(j, e, out, why);
        else if (e->kind == TC_TX)
            rc = check_tx(j, e, out, why);
        else if (e->kind == TC_SET)
            rc = check_set(t, e, out, why);
        else
            rc = bad(why, "unknown request kind");
    }
    json_decref(j);
    if (rc)
        tc_bundle_free(out);
    return rc;
}

/* ---- batched verified reads: the binary TVB1 form (docs/API.md) ---- */

/* A strict reader over body[0..len): every read checks the bytes left. */
typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd;

static const uint8_t *rd_take(rd *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const uint8_t *q = r->p;
    r->p += n;
    r->left -= n;
    return q;
}

static int rd_le(rd *r, unsigned bytes, uint64_t *out)
{
    const uint8_t *q = rd_take(r, bytes);
    if (!q)
        return -1;
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v |= (uint64_t)q[i] << (8 * i);
    *out = v;
    return 0;
}

/* count (1 byte) then count hashes, into p->path. */
static int rd_path(rd *r, jproof *p)
{
    uint64_t n;
    const uint8_t *q;
    if (rd_le(r, 1, &n) || n > TALLY_PROOF_MAX || !(q = rd_take(r, n * 32)))
        return -1;
    memcpy(p->path, q, n * 32);
    p->len = n;
    return 0;
}

/* One found result (after status, reserved, key) into b; b->cp set. */
static int batch_item(rd *r, const tc_expect *e, const uint8_t *key, size_t klen, tc_bundle *b,
                      char why[TC_WHY_MAX])
{
    uint64_t idx, txh_len;
    const uint8_t *hdr, *meta, *value, *txh;
    jproof ep, tp;
    if (rd_le(r, 8, &b->rev) || rd_le(r, 4, &idx) || !(hdr = rd_take(r, ENTRY_HDR_LEN)) ||
        !(meta = rd_take(r, rd32(hdr + 4))) || !(value = rd_take(r, rd32(hdr + 8))) ||
        rd_path(r, &ep) || rd_le(r, 4, &txh_len) || txh_len > TXH_FIXED_LEN + TALLY_META_BYTES_MAX ||
        !(txh = rd_take(r, txh_len)) || rd_path(r, &tp))
        return bad(why, "truncated or malformed");
    if (!(b->entries = calloc(1, sizeof *b->entries)))
        return TALLY_ENOMEM;
    b->n_entries = 1;
    tc_entry *x = &b->entries[0];
    memcpy(x->header, hdr, ENTRY_HDR_LEN);
    x->key = dup_bytes(key, klen);
    x->meta = dup_bytes(meta, rd32(hdr + 4));
    x->value = dup_bytes(value, rd32(hdr + 8));
    b->txh = dup_bytes(txh, txh_len);
    if (!x->key || !x->meta || !x->value || !b->txh)
        return TALLY_ENOMEM;
    x->key_len = klen;
    x->meta_len = rd32(hdr + 4);
    x->value_len = rd32(hdr + 8);
    b->txh_len = txh_len;
    /* What the binary form leaves out is what the verifier derives: the tx
    ** (from its header), the tx proof's index and size (tx-1, S), the entry
    ** proof's index and size (idx, the header's entry count). */
    txh_view h;
    if (txh_decode(b->txh, b->txh_len, &h) != 0)
        return bad(why, "tx header does not decode");
    tp.a = h.tx_id - 1;
    tp.size = b->cp.size;
    int rc = tx_header_core(b, h.tx_id, &tp, why);
    if (rc)
        return rc;
    ep.a = idx;
    ep.size = b->entry_count;
    /* A version returned by a get is never a tombstone (absent keys are
    ** "not found" results). */
    return get_core(e, b, idx, 0, &ep, why);
}

/* A key for a message: 'text' when printable ASCII (cut at 64 bytes), else
** hex:… of its first 32 bytes. */
static void show_key(char out[80], const uint8_t *key, size_t n)
{
    int text = 1;
    for (size_t i = 0; i < n && text; i++)
        text = key[i] >= 0x20 && key[i] < 0x7f;
    if (text)
        snprintf(out, 80, "'%.*s%s'", (int)(n > 64 ? 64 : n), (const char *)key,
                 n > 64 ? "…" : "");
    else {
        memcpy(out, "hex:", 4);
        tc_hex(out + 4, key, n > 32 ? 32 : n);
    }
}

int tc_verify_batch(const tc_trust *t, const tc_expect *e, size_t n, const char *body,
                    size_t len, tc_checkpoint *cp, tc_bundle *items, int *found,
                    char why[TC_WHY_MAX])
{
    memset(cp, 0, sizeof *cp);
    memset(items, 0, n * sizeof *items);
    why[0] = '\0';
    rd r = { (const uint8_t *)body, len };
    uint64_t count, note_len, old;
    const uint8_t *magic = rd_take(&r, 4), *note;
    jproof cons;
    int rc = 0;
    if (!magic || memcmp(magic, "TVB1", 4) != 0)
        return bad(why, "not a TVB1 bundle batch");
    if (rd_le(&r, 4, &count) || rd_le(&r, 4, &note_len) || note_len == 0 ||
        note_len > NOTE_TEXT_MAX || !(note = rd_take(&r, note_len)) || rd_le(&r, 8, &old) ||
        rd_path(&r, &cons))
        return bad(why, "batch header is truncated or malformed");
    if (count != n)
        return bad(why, "%" PRIu64 " results for %zu keys asked", count, n);
    /* The checkpoint and its consistency with the trusted state, once. */
    if ((rc = tc_check_note(t, (const char *)note, note_len, &cp->size, cp->root, why)))
        return rc;
    if (old != 0 && (old >= cp->size || t->size == 0))
        return bad(why, "a consistency proof from %" PRIu64 " where none belongs (size %" PRIu64
                   ", trusted %" PRIu64 ")", old, cp->size, t->size);
    cons.a = old;
    cons.size = cp->size;
    if ((rc = consistency_core(t, cp->size, cp->root, old || cons.len ? &cons : NULL, why)))
        return rc;
    /* Every result, in the order asked. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t status, reserved, klen;
        const uint8_t *key;
        found[i] = 0;
        if (rd_le(&r, 1, &status) || rd_le(&r, 1, &reserved) || rd_le(&r, 2, &klen) ||
            !(key = rd_take(&r, klen)))
            rc = bad(why, "result %zu is truncated", i);
        else if (status > 1 || reserved != 0)
            rc = bad(why, "result %zu has status %" PRIu64 " / reserved %" PRIu64, i, status,
                     reserved);
        else if (!bytes_eq(key, klen, e[i].key, e[i].key_len))
            rc = bad(why, "result %zu is for another key than the one asked", i);
        else if (status == 0) {
            items[i].cp.size = cp->size;
            memcpy(items[i].cp.root, cp->root, 32);
            if ((rc = batch_item(&r, &e[i], key, klen, &items[i], why)) == 0)
                found[i] = 1;
            else if (rc == TALLY_EBADPROOF) { /* name the result: the reason alone may not */
                char reason[TC_WHY_MAX], shown[80];
                memcpy(reason, why, TC_WHY_MAX);
                show_key(shown, key, klen);
                rc = bad(why, "result %zu (key %s): %s", i, shown, reason);
            }
        }
    }
    if (rc == 0 && r.left != 0)
        rc = bad(why, "%zu bytes after the last result", r.left);
    if (rc == 0) {
        if (!(cp->note = malloc(note_len + 1)))
            rc = TALLY_ENOMEM;
        else {
            memcpy(cp->note, note, note_len);
            cp->note[note_len] = '\0';
            cp->note_len = note_len;
        }
    }
    if (rc) {
        for (size_t i = 0; i < n; i++) {
            tc_bundle_free(&items[i]);
            found[i] = 0;
        }
        tc_checkpoint_free(cp);
    }
    return rc;
}

char *tc_extract_checkpoint(const char *body, size_t len)
{
    if (len >= 12 && memcmp(body, "TVB1", 4) == 0) { /* the binary batch: the note at 12 */
        uint32_t n = rd32((const uint8_t *)body + 8);
        return n > 0 && n <= NOTE_TEXT_MAX && n <= len - 12 ? strndup(body + 12, n) : NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    json_t *n = json_is_object(j) ? json_object_get(j, "checkpoint") : NULL;
    char *s = json_is_string(n) ? strndup(json_string_value(n), json_string_length(n)) : NULL;
    json_decref(j);
    return s;
}

/* Same contract as tally_hex_decode (src/util/text.c: n even, either case),
** table-driven: the proofs of every verified call are ~1 KB of hex, and the
** branchy shared decoder was 5% of a verified get's client CPU. */
static const int8_t hexv[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
}; /* value + 1; 0: not a hex digit */

int tc_unhex(const char *s, size_t n, uint8_t *out)
{
    if (n % 2)
        return -1;
    const unsigned char *u = (const unsigned char *)s;
    int bad = 0;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexv[u[i]], lo = hexv[u[i + 1]];
        bad |= (hi == 0) | (lo == 0);
        out[i / 2] = (uint8_t)((unsigned)(hi - 1) << 4 | (unsigned)(lo - 1));
    }
    return bad ? -1 : 0;
}
