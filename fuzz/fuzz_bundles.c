/*
** fuzz_bundles.c — fuzz target for the verifying client's parsers of untrusted
** server answers (src/client/client_verify.c): tc_verify_bundle (a JSON proof
** bundle, docs/API.md "The proof bundle"), tc_verify_batch (the binary TVB1
** answer of verified/getmany, "Batched verified reads"), tc_verify_checkpoint
** (a note and a JSON consistency proof) and tc_extract_checkpoint.
**
** The trust is fixed: an Ed25519 key derived from a constant seed (FB_PRIV,
** note_key_public), key name FB_KEYNAME and origin FB_ORIGIN. So that valid
** answers exist (fuzz/corpus/bundles: real answers from a real ledger, written
** by `build/tests/test_fuzz_bundles --generate DIR`), an input carries the
** rest of the request context in a fixed header:
**
**   offset  size  field
**   0       1     mode: bit 7 = the client also holds the trusted note (the
**                 harness signs the checkpoint of (trusted size, root) with
**                 the fixed key, as tc_trust.note); bits 0..6 % FB_NMODES
**                 index fb_modes[] (what was asked: the kind, keys, selector)
**   1       8     trusted size, little-endian (0: nothing trusted yet)
**   9       32    trusted root (unused when the trusted size is 0)
**   41      8     param, little-endian: the selector value (TC_SEL_TX/REV/AT),
**                 the tx asked (TC_TX) or acknowledged (TC_SET, 0: none)
**   49      ...   the server's answer (body)
**
** For the checkpoint mode the body is a 2-byte little-endian note length, the
** note, then the consistency JSON (absent when empty).
**
** The invariant: no input crashes, reads out of bounds, leaks or hangs; the
** return codes and ownership follow verify.h (a refused batch leaves nothing
** to free); an accepted answer is what was asked (the keys, the selector,
** the tx) and never moves the trusted state backwards or onto another root.
** Any violation abort()s.
**
** libFuzzer (`make fuzz`):
**   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Iinclude -Isrc \
**     fuzz/fuzz_bundles.c src/client/client_verify.c src/note/note.c src/merkle/rfc6962.c \
**     src/log/record.c src/util/sha256.c src/util/crc32c.c src/util/err.c src/util/text.c \
**     -ljansson -lcrypto -o build/fuzz_bundles
**   build/fuzz_bundles -max_len=16384 CORPUS_DIR fuzz/corpus/bundles
** In `make test`, tests/test_fuzz_bundles.c replays fuzz/corpus/bundles (every
** ok-* seed must verify, every bad-* seed must be refused) and a deterministic
** stream of mutations of them through fb_run (an accepted mutant must verify
** to its seed's content).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/verify.h"
#include "log/record.h"
#include "merkle/rfc6962.h"
#include "note/note.h"
#include "tally.h"
#include "util/sha256.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FB_KEYNAME "tally.fuzz"
#define FB_LEDGER_ID "f0220f0220f0220f0220f0220f0220f0"
#define FB_ORIGIN FB_KEYNAME "/ledger/" FB_LEDGER_ID
#define FB_HDR 49
#define FB_TRUSTED_NOTE 0x80u

/* The fixed signing key's seed (RFC 8032 Ed25519 private key). */
static const uint8_t FB_PRIV[32] = {
    0x74, 0x61, 0x6c, 0x6c, 0x79, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x62, 0x75, 0x6e, 0x64, 0x6c,
    0x65, 0x73, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30, 0x30, 0x31, 0x00, 0x5a, 0xa5, 0x3c, 0xc3,
};

enum { FB_BATCH = 1, FB_BUNDLE, FB_CHECKPOINT };

typedef struct fb_key {
    const char *p;
    size_t n;
} fb_key;
#define K(s) { s, sizeof(s) - 1 }
#define FB_MAX_KEYS 5

/* The keys and sends of the seed ledger (tests/test_fuzz_bundles.c). */
static const fb_key FB_K5[] = { K("key5"), K("other11"), K("absent"), K("third14"), K("key1") };
static const fb_key FB_KBIN[] = { K("bin\0\xff"), K("c"), K("a") };
static const tc_sent FB_SENT_FRESH[] = { { "fresh", 5, "val", 3, 0 } };
static const tc_sent FB_SENT_DEL1[] = { { "key1", 4, "", 0, 1 } };
static const tc_sent FB_SENT_MULTI[] = { { "a", 1, "1", 1, 0 }, { "b", 1, "", 0, 0 },
                                         { "bin\0\xff", 5, "\x00\x01\xfe", 3, 0 } };
static const tc_sent FB_SENT_DELMULTI[] = { { "a", 1, "", 0, 1 }, { "c", 1, "3", 1, 0 } };

typedef struct fb_mode {
    int fmt;                  /* FB_BATCH / FB_BUNDLE / FB_CHECKPOINT */
    int kind;                 /* TC_GET / TC_TX / TC_SET */
    const fb_key *keys;       /* TC_GET: the keys asked (a bundle: keys[0]) */
    size_t n_keys;
    int sel;                  /* TC_GET: TC_SEL_*; its value is the param */
    const tc_sent *sent;      /* TC_SET */
    size_t n_sent;
    const char *meta;         /* TC_SET: the tx metadata sent, checked when not NULL */
} fb_mode;

static const fb_mode fb_modes[] = {
    /* 0 */ { FB_BATCH, TC_GET, FB_K5, 1, TC_SEL_LATEST, NULL, 0, NULL },
    /* 1 */ { FB_BATCH, TC_GET, FB_K5, 3, TC_SEL_LATEST, NULL, 0, NULL },
    /* 2 */ { FB_BATCH, TC_GET, FB_K5, 5, TC_SEL_LATEST, NULL, 0, NULL },
    /* 3 */ { FB_BATCH, TC_GET, FB_K5, 5, TC_SEL_TX, NULL, 0, NULL },
    /* 4 */ { FB_BATCH, TC_GET, FB_K5, 5, TC_SEL_AT, NULL, 0, NULL },
    /* 5 */ { FB_BATCH, TC_GET, FB_KBIN, 3, TC_SEL_LATEST, NULL, 0, NULL },
    /* 6 */ { FB_BATCH, TC_GET, FB_K5 + 1, 2, TC_SEL_REV, NULL, 0, NULL },
    /* 7 */ { FB_BUNDLE, TC_GET, FB_K5 + 0, 1, TC_SEL_LATEST, NULL, 0, NULL },
    /* 8 */ { FB_BUNDLE, TC_GET, FB_K5 + 1, 1, TC_SEL_TX, NULL, 0, NULL },
    /* 9 */ { FB_BUNDLE, TC_GET, FB_K5 + 3, 1, TC_SEL_REV, NULL, 0, NULL },
    /* 10 */ { FB_BUNDLE, TC_GET, FB_K5 + 4, 1, TC_SEL_AT, NULL, 0, NULL },
    /* 11 */ { FB_BUNDLE, TC_GET, FB_KBIN, 1, TC_SEL_LATEST, NULL, 0, NULL },
    /* 12 */ { FB_BUNDLE, TC_TX, NULL, 0, 0, NULL, 0, NULL },
    /* 13 */ { FB_BUNDLE, TC_SET, NULL, 0, 0, FB_SENT_FRESH, 1, "note" },
    /* 14 */ { FB_BUNDLE, TC_SET, NULL, 0, 0, FB_SENT_DEL1, 1, NULL },
    /* 15 */ { FB_BUNDLE, TC_SET, NULL, 0, 0, FB_SENT_MULTI, 3, NULL },
    /* 16 */ { FB_BUNDLE, TC_SET, NULL, 0, 0, FB_SENT_DELMULTI, 2, NULL },
    /* 17 */ { FB_CHECKPOINT, 0, NULL, 0, 0, NULL, 0, NULL },
};
#define FB_NMODES (sizeof fb_modes / sizeof fb_modes[0])

static uint8_t fb_pub[32];
static int fb_ready;

static void fb_init(void)
{
    if (fb_ready)
        return;
    if (note_key_public(FB_PRIV, fb_pub) != 0)
        abort();
    fb_ready = 1;
}

static uint64_t fb_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define FB_CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_bundles: invariant failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static int fb_eq(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void fb_rc_ok(int rc, const char why[TC_WHY_MAX])
{
    FB_CHECK(rc == 0 || rc == TALLY_EBADPROOF || rc == TALLY_ENOMEM);
    FB_CHECK(memchr(why, '\0', TC_WHY_MAX) != NULL);
    if (rc == TALLY_EBADPROOF)
        FB_CHECK(why[0] != '\0');
}

/* The checkpoint must not move the trusted state backwards or elsewhere. */
static void fb_cp_ok(const tc_trust *t, uint64_t size, const uint8_t root[32], const char *note,
                     size_t note_len)
{
    FB_CHECK(size >= t->size);
    if (size == t->size && t->size > 0)
        FB_CHECK(memcmp(root, t->root, 32) == 0);
    FB_CHECK(note != NULL && note_len > 0 && note_len <= NOTE_TEXT_MAX && note[note_len] == '\0');
}

/* The content a verification vouches for (everything but rev) into a hash.
** Of the note: its signed text and the pinned key's signature line (the one
** note_verify decides on: the first with the pinned name and key ID); other
** keys' lines are not vouched for (C2SP: ignored), so not hashed. */
static void fb_digest_cp(tally_sha256_ctx *c, uint64_t size, const uint8_t root[32],
                         const char *note, size_t note_len)
{
    tally_sha256_update(c, &size, 8);
    tally_sha256_update(c, root, 32);
    size_t split = 0;
    for (size_t i = note_len - 1; i >= 1; i--)
        if (note[i] == '\n' && note[i - 1] == '\n') {
            split = i;
            break;
        }
    tally_sha256_update(c, &split, sizeof split);
    tally_sha256_update(c, note, split);
    static const char pfx[] = "\xE2\x80\x94 " FB_KEYNAME " ";
    const size_t pl = sizeof pfx - 1;
    const uint32_t want = note_key_id(FB_KEYNAME, fb_pub);
    for (const char *p = note + split + 1, *end = note + note_len, *eol; p < end; p = eol + 1) {
        if (!(eol = memchr(p, '\n', (size_t)(end - p))))
            break;
        uint8_t sig[68];
        if ((size_t)(eol - p) > pl && memcmp(p, pfx, pl) == 0 &&
            b64_decode(sig, sizeof sig, p + pl, (size_t)(eol - p) - pl) == 68 &&
            ((uint32_t)sig[0] << 24 | (uint32_t)sig[1] << 16 | (uint32_t)sig[2] << 8 | sig[3]) == want) {
            tally_sha256_update(c, p, (size_t)(eol - p));
            break;
        }
    }
}

static void fb_digest_bundle(tally_sha256_ctx *c, const tc_bundle *b)
{
    tally_sha256_update(c, &b->tx, 8);
    tally_sha256_update(c, &b->ts_ns, 8);
    tally_sha256_update(c, &b->entry_count, 4);
    tally_sha256_update(c, b->tx_hash, 32);
    tally_sha256_update(c, b->prev_hash, 32);
    tally_sha256_update(c, b->entries_root, 32);
    tally_sha256_update(c, &b->txh_len, sizeof b->txh_len);
    tally_sha256_update(c, b->txh, b->txh_len);
    tally_sha256_update(c, &b->n_entries, sizeof b->n_entries);
    for (size_t i = 0; i < b->n_entries; i++) {
        const tc_entry *x = &b->entries[i];
        tally_sha256_update(c, &x->index, 4);
        tally_sha256_update(c, x->header, 12);
        tally_sha256_update(c, &x->key_len, sizeof x->key_len);
        tally_sha256_update(c, x->key, x->key_len);
        tally_sha256_update(c, &x->meta_len, sizeof x->meta_len);
        tally_sha256_update(c, x->meta, x->meta_len);
        tally_sha256_update(c, &x->value_len, sizeof x->value_len);
        tally_sha256_update(c, x->value, x->value_len);
        tally_sha256_update(c, x->leaf_hash, 32);
    }
}

/* An accepted single bundle: what was asked, consistent in itself. */
static void fb_bundle_ok(const tc_trust *t, const tc_expect *e, const tc_bundle *b)
{
    fb_cp_ok(t, b->cp.size, b->cp.root, b->cp.note, b->cp.note_len);
    FB_CHECK(b->tx >= 1 && b->tx <= b->cp.size);
    FB_CHECK(b->txh && b->txh_len >= TXH_FIXED_LEN);
    uint8_t h[32];
    rfc6962_leaf_hash(b->txh, b->txh_len, h);
    FB_CHECK(memcmp(h, b->tx_hash, 32) == 0);
    FB_CHECK(b->tx_meta == b->txh + TXH_FIXED_LEN && b->tx_meta_len <= b->txh_len - TXH_FIXED_LEN);
    for (size_t i = 0; i < b->n_entries; i++) {
        const tc_entry *x = &b->entries[i];
        FB_CHECK(x->key && x->meta && x->value);
        FB_CHECK(x->key[x->key_len] == 0 && x->meta[x->meta_len] == 0 && x->value[x->value_len] == 0);
        FB_CHECK(x->index < b->entry_count);
        FB_CHECK(rd16(x->header + 2) == x->key_len && rd32(x->header + 4) == x->meta_len &&
                 rd32(x->header + 8) == x->value_len);
        FB_CHECK(!x->deleted || x->value_len == 0);
    }
    if (e->kind == TC_GET) {
        FB_CHECK(b->n_entries == 1);
        FB_CHECK(fb_eq(b->entries[0].key, b->entries[0].key_len, e->key, e->key_len));
        FB_CHECK(b->entries[0].ns == TALLY_NS_KV);
        if (e->sel == TC_SEL_TX)
            FB_CHECK(b->tx <= e->sel_val);
        if (e->sel == TC_SEL_AT)
            FB_CHECK(b->ts_ns <= e->sel_val);
        if (e->sel == TC_SEL_REV)
            FB_CHECK(b->rev == e->sel_val);
    } else if (e->kind == TC_TX) {
        FB_CHECK(b->tx == e->tx && b->n_entries == b->entry_count);
        for (size_t i = 0; i < b->n_entries; i++)
            FB_CHECK(b->entries[i].index == i);
    } else {
        FB_CHECK(b->tx > t->size && (!e->tx || b->tx == e->tx));
        FB_CHECK(b->n_entries == e->n_sent && b->entry_count == e->n_sent);
        for (size_t i = 0; i < e->n_sent; i++) {
            const tc_sent *s = &e->sent[i];
            const tc_entry *x = &b->entries[i];
            FB_CHECK(fb_eq(x->key, x->key_len, s->key, s->key_len));
            FB_CHECK(!x->deleted == !s->deleted);
            if (!s->deleted)
                FB_CHECK(fb_eq(x->value, x->value_len, s->value, s->value_len));
        }
        FB_CHECK(fb_eq(b->tx_meta, b->tx_meta_len, e->meta ? e->meta : "",
                       e->meta ? e->meta_len : 0));
    }
}

static int fb_zero(const void *p, size_t n)
{
    const uint8_t *q = p;
    for (size_t i = 0; i < n; i++)
        if (q[i])
            return 0;
    return 1;
}

/* Runs one input. Returns -1 when it is shorter than the header, else the
** verifier's result code; on 0 and digest != NULL, *digest is the hash of
** everything the verification vouched for (not the unprovable revisions). */
static int fb_run(const uint8_t *data, size_t size, uint8_t digest[32])
{
    fb_init();
    if (size < FB_HDR)
        return -1;
    const fb_mode *m = &fb_modes[(data[0] & 0x7fu) % FB_NMODES];
    tc_trust t;
    memset(&t, 0, sizeof t);
    snprintf(t.key_name, sizeof t.key_name, "%s", FB_KEYNAME);
    memcpy(t.pub, fb_pub, 32);
    snprintf(t.origin, sizeof t.origin, "%s", FB_ORIGIN);
    t.size = fb_le64(data + 1);
    memcpy(t.root, data + 9, 32);
    uint64_t param = fb_le64(data + 41);
    char trusted_note[1024];
    if ((data[0] & FB_TRUSTED_NOTE) && t.size > 0) {
        /* The client's stored note of its trusted state (signed: it verified). */
        char text[512];
        int n = checkpoint_format(text, sizeof text, FB_ORIGIN, t.size, t.root);
        FB_CHECK(n > 0);
        n = note_sign(trusted_note, sizeof trusted_note, text, FB_KEYNAME, FB_PRIV);
        FB_CHECK(n > 0);
        t.note = trusted_note;
        t.note_len = (size_t)n;
    }

    /* The body in a buffer of its exact size, so any over-read is caught. */
    size_t len = size - FB_HDR;
    char *body = malloc(len ? len : 1);
    if (!body)
        return -1;
    memcpy(body, data + FB_HDR, len);
    char *ex = tc_extract_checkpoint(body, len);
    free(ex);

    char why[TC_WHY_MAX];
    tally_sha256_ctx dc;
    tally_sha256_init(&dc);
    int rc;
    if (m->fmt == FB_BATCH) {
        tc_expect e[FB_MAX_KEYS];
        tc_bundle items[FB_MAX_KEYS];
        int found[FB_MAX_KEYS];
        tc_checkpoint cp;
        memset(e, 0, sizeof e);
        for (size_t i = 0; i < m->n_keys; i++) {
            e[i].kind = TC_GET;
            e[i].key = m->keys[i].p;
            e[i].key_len = m->keys[i].n;
            e[i].sel = m->sel;
            e[i].sel_val = param;
        }
        memset(items, 0xa5, sizeof items); /* the verifier must initialize them */
        rc = tc_verify_batch(&t, e, m->n_keys, body, len, &cp, items, found, why);
        fb_rc_ok(rc, why);
        if (rc == 0) {
            fb_cp_ok(&t, cp.size, cp.root, cp.note, cp.note_len);
            fb_digest_cp(&dc, cp.size, cp.root, cp.note, cp.note_len);
            for (size_t i = 0; i < m->n_keys; i++) {
                FB_CHECK(found[i] == 0 || found[i] == 1);
                uint8_t f = (uint8_t)found[i];
                tally_sha256_update(&dc, &f, 1);
                if (found[i]) {
                    /* cp.note is not set in the items; the rest as a bundle */
                    FB_CHECK(items[i].cp.note == NULL && items[i].cp.size == cp.size &&
                             memcmp(items[i].cp.root, cp.root, 32) == 0);
                    items[i].cp.note = cp.note;
                    items[i].cp.note_len = cp.note_len;
                    fb_bundle_ok(&t, &e[i], &items[i]);
                    FB_CHECK(!items[i].entries[0].deleted);
                    items[i].cp.note = NULL;
                    items[i].cp.note_len = 0;
                    fb_digest_bundle(&dc, &items[i]);
                } else {
                    FB_CHECK(items[i].entries == NULL && items[i].txh == NULL &&
                             items[i].cp.note == NULL);
                }
                tc_bundle_free(&items[i]);
            }
            tc_checkpoint_free(&cp);
        } else {
            /* a refusal leaves nothing to free */
            FB_CHECK(cp.note == NULL);
            for (size_t i = 0; i < m->n_keys; i++)
                FB_CHECK(fb_zero(&items[i], sizeof items[i]));
        }
    } else if (m->fmt == FB_BUNDLE) {
        tc_expect e;
        memset(&e, 0, sizeof e);
        e.kind = m->kind;
        if (m->kind == TC_GET) {
            e.key = m->keys[0].p;
            e.key_len = m->keys[0].n;
            e.sel = m->sel;
            e.sel_val = param;
        } else {
            e.tx = param;
            e.sent = m->sent;
            e.n_sent = m->n_sent;
            if (m->meta) {
                e.meta = m->meta;
                e.meta_len = strlen(m->meta);
            }
        }
        tc_bundle b;
        memset(&b, 0xa5, sizeof b);
        rc = tc_verify_bundle(&t, &e, body, len, &b, why);
        fb_rc_ok(rc, why);
        if (rc == 0) {
            fb_bundle_ok(&t, &e, &b);
            fb_digest_cp(&dc, b.cp.size, b.cp.root, b.cp.note, b.cp.note_len);
            fb_digest_bundle(&dc, &b);
        } else {
            FB_CHECK(fb_zero(&b, sizeof b)); /* freed and cleared on failure */
        }
        tc_bundle_free(&b);
    } else {
        /* note_len (2, LE), note, consistency JSON (none when empty) */
        size_t nl = len >= 2 ? (size_t)((uint8_t)body[0] | (uint8_t)body[1] << 8) : 0;
        if (len < 2 || nl > len - 2) {
            rc = -1;
        } else {
            /* each piece in its own exact-size buffer */
            char *note = malloc(nl ? nl : 1), *cons = NULL;
            size_t cl = len - 2 - nl;
            if (!note) {
                free(body);
                return -1;
            }
            memcpy(note, body + 2, nl);
            if (cl && (cons = malloc(cl)))
                memcpy(cons, body + 2 + nl, cl);
            tc_checkpoint cp;
            rc = tc_verify_checkpoint(&t, note, nl, cons, cons ? cl : 0, &cp, why);
            fb_rc_ok(rc, why);
            if (rc == 0) {
                fb_cp_ok(&t, cp.size, cp.root, cp.note, cp.note_len);
                FB_CHECK(fb_eq(cp.note, cp.note_len, note, nl));
                fb_digest_cp(&dc, cp.size, cp.root, cp.note, cp.note_len);
            } else {
                FB_CHECK(cp.note == NULL);
            }
            tc_checkpoint_free(&cp);
            free(note);
            free(cons);
        }
    }
    free(body);
    if (rc == 0 && digest)
        tally_sha256_final(&dc, digest);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fb_run(data, size, NULL);
    return 0;
}
