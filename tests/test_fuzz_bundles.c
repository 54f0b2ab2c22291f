/*
** test_fuzz_bundles.c — runs fuzz/fuzz_bundles.c without libFuzzer: every file
** of fuzz/corpus/bundles (each ok-* seed is a real answer and must verify,
** each bad-* seed a lie and must be refused, any other file, e.g. a saved
** reproducer, must only not crash), then a deterministic stream of mutations
** of the ok-* seeds, 600 each (10000 with TALLY_LONG=1) (bit flips, byte
** sets, truncations, deletions, insertions, copied chunks, length fields
** pushed to their limits, header changes). No input may crash or leak (under
** ASan/UBSan), and a mutant that verifies must verify to exactly its seed's
** content (checkpoint, tx, entries: everything but the unprovable revisions)
** when it asks the same question (mode) as its seed.
**
**   build/tests/test_fuzz_bundles --generate DIR
** writes the seeds: it builds a real embedded ledger (tally_db_open /
** tally_commit) in a temporary directory, signs checkpoints with the fuzz
** target's fixed key (FB_PRIV) and writes, in the input format of
** fuzz_bundles.c (mode, trusted size and root, param, body), TVB1 batches and
** JSON bundles built from the ledger as tallyd would answer (docs/API.md).
** The ledger's roots depend on its commit times, so every seed carries the
** trusted root it needs: the corpus is self-contained.
*/
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fuzz/fuzz_bundles.c"
#include "util/text.h"
#include "bundle_util.h"
#include "testutil.h"

#define CORPUS "fuzz/corpus/bundles"

/* ---- the seed generator ---- */

static const char *g_dir;
static unsigned g_written;

/* Writes header (mode, trusted size and its root in db, param) + body. */
static void seed_write(const char *name, tally_db *db, unsigned mode, uint64_t trusted,
                       uint64_t param, const void *body, size_t len)
{
    tb f = { 0 };
    uint8_t root[32] = { 0 };
    if (trusted)
        CHECK_EQ_INT(tally_root_at(db, root, trusted), 0);
    tb_le(&f, mode, 1);
    tb_le(&f, trusted, 8);
    tb_put(&f, root, 32);
    tb_le(&f, param, 8);
    tb_put(&f, body, len);
    /* an ok-* seed must verify before it becomes a seed, a bad-* one must not */
    uint8_t d[32];
    int rc = fb_run(f.p, f.len, d), want = strncmp(name, "ok-", 3) == 0 ? 0 : TALLY_EBADPROOF;
    if (rc != want)
        fprintf(stderr, "generate: seed %s: rc %d, want %d\n", name, rc, want);
    CHECK_EQ_INT(rc, want);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (fp) {
        CHECK_EQ_INT(fwrite(f.p, 1, f.len, fp), f.len);
        CHECK_EQ_INT(fclose(fp), 0);
        g_written++;
    }
    free(f.p);
}

/* When set, the note every checkpoint of the generator is (a lie's seed). */
static const char *g_note;

static char *signed_checkpoint(tally_db *db, uint64_t size)
{
    if (g_note)
        return strdup(g_note);
    uint8_t root[32];
    char text[512], out[2048];
    CHECK_EQ_INT(tally_root_at(db, root, size), 0);
    CHECK(checkpoint_format(text, sizeof text, FB_ORIGIN, size, root) > 0);
    CHECK(note_sign(out, sizeof out, text, FB_KEYNAME, FB_PRIV) > 0);
    return strdup(out);
}

/* o[name] as UTF-8 text, or o[name_hex] when it is not valid UTF-8 (tallyd's rule). */
static void jbytes(json_t *o, const char *name, const void *p, size_t n)
{
    if (tally_utf8_valid(p, n)) {
        json_object_set_new(o, name, json_stringn(n ? p : "", n));
    } else {
        char hn[64];
        snprintf(hn, sizeof hn, "%s_hex", name);
        json_object_set_new(o, hn, jhex(p, n));
    }
}

/* tx, tx_header_hex, tx_proof, consistency (trusted > 0; with the claimed
** roots when roots), checkpoint. */
static void add_tx_parts(json_t *b, tally_db *db, uint64_t tx, uint64_t trusted, uint64_t size,
                         int roots)
{
    tally_tx_info t;
    tally_proof p;
    CHECK_EQ_INT(tally_tx_get(db, &t, tx), 0);
    json_object_set_new(b, "tx", json_integer((json_int_t)tx));
    json_object_set_new(b, "tx_header_hex", jhex(t.header, t.header_len));
    CHECK_EQ_INT(tally_proof_tx(db, &p, tx, size), 0);
    json_object_set_new(b, "tx_proof", jproof("index", tx - 1, &p));
    if (trusted > 0) {
        CHECK_EQ_INT(tally_proof_consistency(db, &p, trusted, size), 0);
        json_t *c = jproof("old", trusted, &p);
        if (roots) {
            uint8_t r[32];
            CHECK_EQ_INT(tally_root_at(db, r, trusted), 0);
            json_object_set_new(c, "old_root", jhex(r, 32));
            CHECK_EQ_INT(tally_root_at(db, r, size), 0);
            json_object_set_new(c, "root", jhex(r, 32));
        }
        json_object_set_new(b, "consistency", c);
    }
    char *note = signed_checkpoint(db, size);
    json_object_set_new(b, "checkpoint", json_string(note));
    free(note);
}

/* A verified/get bundle: entry i of tx (revision rev of its key). */
static json_t *get_bundle(tally_db *db, uint64_t tx, uint32_t i, uint64_t rev, uint64_t trusted,
                          uint64_t size, int roots)
{
    tally_entry_view e;
    tally_tx_info t;
    tally_proof p;
    char ts[TALLY_TIME_BUF];
    CHECK_EQ_INT(tally_tx_entry(db, &e, tx, i), 0);
    CHECK_EQ_INT(tally_tx_get(db, &t, tx), 0);
    tally_time_format(ts, t.ts_ns);
    json_t *b = json_object();
    jbytes(b, "key", e.key, e.key_len);
    jbytes(b, "value", e.value, e.value_len);
    if (e.deleted)
        json_object_set_new(b, "deleted", json_true());
    json_object_set_new(b, "rev", json_integer((json_int_t)rev));
    json_object_set_new(b, "ts", json_string(ts));
    json_object_set_new(b, "entry", json_pack("{s:i, s:o, s:o}", "index", (int)i, "header_hex",
                                               jhex(e.header, 12), "meta_hex",
                                               jhex(e.meta, e.meta_len)));
    CHECK_EQ_INT(tally_proof_entry(db, &p, tx, i), 0);
    json_object_set_new(b, "entry_proof", jproof("index", i, &p));
    add_tx_parts(b, db, tx, trusted, size, roots);
    return b;
}

/* A verified/tx bundle (with_entries 0: a verified/set answer without them). */
static json_t *tx_bundle(tally_db *db, uint64_t tx, uint64_t trusted, uint64_t size,
                         int with_entries)
{
    tally_tx_info t;
    CHECK_EQ_INT(tally_tx_get(db, &t, tx), 0);
    json_t *b = json_object();
    if (with_entries) {
        json_t *arr = json_array();
        for (uint32_t i = 0; i < t.entry_count; i++) {
            tally_entry_view e;
            CHECK_EQ_INT(tally_tx_entry(db, &e, tx, i), 0);
            json_t *o = json_pack("{s:i, s:o, s:o}", "index", (int)i, "header_hex",
                                  jhex(e.header, 12), "meta_hex", jhex(e.meta, e.meta_len));
            jbytes(o, "key", e.key, e.key_len);
            jbytes(o, "value", e.value, e.value_len);
            json_array_append_new(arr, o);
        }
        json_object_set_new(b, "entries", arr);
    }
    add_tx_parts(b, db, tx, trusted, size, 0);
    return b;
}

static void seed_json(const char *name, tally_db *db, unsigned mode, uint64_t trusted,
                      uint64_t param, json_t *b)
{
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    seed_write(name, db, mode, trusted, param, s, strlen(s));
    free(s);
}

/* The TVB1 answer to mode's keys as of transaction as_of (0: latest) under
** the checkpoint at size, with a consistency proof from trusted (docs/API.md). */
static void seed_batch(const char *name, tally_db *db, unsigned mode, uint64_t trusted,
                       uint64_t param, uint64_t as_of, uint64_t size)
{
    const fb_mode *m = &fb_modes[(mode & 0x7f) % FB_NMODES];
    CHECK(m->fmt == FB_BATCH);
    tb b = { 0 };
    char *note = signed_checkpoint(db, size);
    tb_put(&b, "TVB1", 4);
    tb_le(&b, m->n_keys, 4);
    tb_le(&b, strlen(note), 4);
    tb_put(&b, note, strlen(note));
    free(note);
    tally_proof p;
    p.len = 0;
    if (trusted > 0 && trusted < size)
        CHECK_EQ_INT(tally_proof_consistency(db, &p, trusted, size), 0);
    tb_le(&b, trusted > 0 && trusted < size ? trusted : 0, 8);
    tb_path(&b, &p);
    for (size_t i = 0; i < m->n_keys; i++) {
        tally_version v;
        const fb_key *k = &m->keys[i];
        int rc = tally_get(db, &v, TALLY_NS_KV, k->p, k->n, as_of ? as_of : size);
        tb_le(&b, rc == TALLY_OK ? 0 : 1, 1);
        tb_le(&b, 0, 1);
        tb_le(&b, k->n, 2);
        tb_put(&b, k->p, k->n);
        if (rc != TALLY_OK)
            continue;
        tally_entry_view ev;
        tally_tx_info t;
        CHECK_EQ_INT(tally_tx_entry(db, &ev, v.tx, v.entry_index), 0);
        CHECK_EQ_INT(tally_tx_get(db, &t, v.tx), 0);
        tb_le(&b, v.rev, 8);
        tb_le(&b, v.entry_index, 4);
        tb_put(&b, ev.header, 12);
        tb_put(&b, ev.meta, ev.meta_len);
        tb_put(&b, ev.value, ev.value_len);
        CHECK_EQ_INT(tally_proof_entry(db, &p, v.tx, v.entry_index), 0);
        tb_path(&b, &p);
        tb_le(&b, t.header_len, 4);
        tb_put(&b, t.header, t.header_len);
        CHECK_EQ_INT(tally_proof_tx(db, &p, v.tx, size), 0);
        tb_path(&b, &p);
    }
    seed_write(name, db, mode, trusted, param, b.p, b.len);
    free(b.p);
}

/* tc_verify_checkpoint input: note length (2, LE), note, consistency JSON. */
static void seed_checkpoint(const char *name, tally_db *db, uint64_t trusted, uint64_t size)
{
    tb b = { 0 };
    char *note = signed_checkpoint(db, size);
    tb_le(&b, strlen(note), 2);
    tb_put(&b, note, strlen(note));
    free(note);
    if (trusted) {
        json_t *o = json_object();
        add_tx_parts(o, db, 1, trusted, size, 1);
        char *s = json_dumps(json_object_get(o, "consistency"), JSON_COMPACT);
        tb_put(&b, s, strlen(s));
        free(s);
        json_decref(o);
    }
    seed_write(name, db, 17, trusted, 0, b.p, b.len);
    free(b.p);
}

static void commit(tally_db *db, uint64_t want_tx, const tally_entry *e, size_t n,
                   const char *meta)
{
    uint64_t tx = 0;
    CHECK_EQ_INT(tally_commit(db, &tx, e, n, meta, meta ? strlen(meta) : 0), 0);
    CHECK_EQ_INT(tx, want_tx);
}

/* The ledger fuzz_bundles.c's modes ask about:
**   tx 1..21  key<i>=value<i>, other<i>=v<i> (entry meta "m"), third<i>=x:
**             the first (i % 3) + 1 of them; tx meta "tm"
**   tx 22     key1 deleted
**   tx 23     fresh=val, tx meta "note"
**   tx 24     a=1, b="", "bin\0\xff"=00 01 fe
**   tx 25     a deleted, c=3 */
static int generate(const char *dir)
{
    char ldir[64], cmd[128];
    snprintf(ldir, sizeof ldir, "/tmp/tally-fzb-gen-%ld", (long)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s", ldir);
    CHECK_EQ_INT(system(cmd), 0);
    g_dir = dir;
    tally_db *db;
    CHECK_EQ_INT(tally_db_open(&db, ldir, NULL, NULL), 0);
    for (int i = 1; i <= 21; i++) {
        char k[32], v[32], k2[32], v2[32], k3[32];
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "value%d", i);
        snprintf(k2, sizeof k2, "other%d", i);
        snprintf(v2, sizeof v2, "v%d", i);
        snprintf(k3, sizeof k3, "third%d", i);
        tally_entry e[3] = {
            { .ns = TALLY_NS_KV, .key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v) },
            { .ns = TALLY_NS_KV, .key = k2, .key_len = strlen(k2), .value = v2,
              .value_len = strlen(v2), .meta = "m", .meta_len = 1 },
            { .ns = TALLY_NS_KV, .key = k3, .key_len = strlen(k3), .value = "x", .value_len = 1 },
        };
        commit(db, (uint64_t)i, e, (size_t)(i % 3) + 1, "tm");
    }
    tally_entry d1 = { .ns = TALLY_NS_KV, .deleted = 1, .key = "key1", .key_len = 4, .value = "" };
    commit(db, 22, &d1, 1, NULL);
    tally_entry f = { .ns = TALLY_NS_KV, .key = "fresh", .key_len = 5, .value = "val", .value_len = 3 };
    commit(db, 23, &f, 1, "note");
    tally_entry m3[3] = {
        { .ns = TALLY_NS_KV, .key = "a", .key_len = 1, .value = "1", .value_len = 1 },
        { .ns = TALLY_NS_KV, .key = "b", .key_len = 1, .value = "", .value_len = 0 },
        { .ns = TALLY_NS_KV, .key = "bin\0\xff", .key_len = 5, .value = "\x00\x01\xfe", .value_len = 3 },
    };
    commit(db, 24, m3, 3, NULL);
    tally_entry m2[2] = {
        { .ns = TALLY_NS_KV, .deleted = 1, .key = "a", .key_len = 1, .value = "" },
        { .ns = TALLY_NS_KV, .key = "c", .key_len = 1, .value = "3", .value_len = 1 },
    };
    commit(db, 25, m2, 2, NULL);
    tally_tx_info t21, t22;
    CHECK_EQ_INT(tally_tx_get(db, &t21, 21), 0);
    CHECK_EQ_INT(tally_tx_get(db, &t22, 22), 0);

    /* TVB1 batches (modes 0..6) */
    seed_batch("ok-batch-m0-1key-t0", db, 0, 0, 0, 0, 20);
    seed_batch("ok-batch-m1-3keys-t13", db, 1, 13, 0, 0, 20);
    seed_batch("ok-batch-m2-5keys-t20-same-note", db, 2 | FB_TRUSTED_NOTE, 20, 0, 0, 20);
    seed_batch("ok-batch-m2-5keys-t22", db, 2, 22, 0, 0, 25);
    seed_batch("ok-batch-m3-5keys-tx20-t7", db, 3, 7, 20, 20, 22);
    seed_batch("ok-batch-m4-5keys-at21-t0", db, 4, 0, t21.ts_ns, 21, 25);
    seed_batch("ok-batch-m5-binkey-t24", db, 5, 24, 0, 0, 25);
    seed_batch("ok-batch-m6-rev1-t1", db, 6, 1, 1, 0, 23);
    /* JSON bundles: get (modes 7..11) */
    seed_json("ok-get-m7-key5-t0", db, 7, 0, 0, get_bundle(db, 5, 0, 1, 0, 20, 0));
    seed_json("ok-get-m8-other11-tx15-t13", db, 8, 13, 15, get_bundle(db, 11, 1, 1, 13, 20, 1));
    seed_json("ok-get-m9-third14-rev1-t20-same-note", db, 9 | FB_TRUSTED_NOTE, 20, 1,
              get_bundle(db, 14, 2, 1, 20, 20, 1));
    seed_json("ok-get-m10-key1-tombstone-at22-t21", db, 10, 21, t22.ts_ns,
              get_bundle(db, 22, 0, 2, 21, 22, 0));
    seed_json("ok-get-m11-binkey-t0", db, 11, 0, 0, get_bundle(db, 24, 2, 1, 0, 25, 0));
    /* tx (mode 12) */
    seed_json("ok-tx-m12-tx14-t10", db, 12, 10, 14, tx_bundle(db, 14, 10, 20, 1));
    seed_json("ok-tx-m12-tx24-bin-t0", db, 12, 0, 24, tx_bundle(db, 24, 0, 25, 1));
    seed_json("ok-tx-m12-tx22-tombstone-t22-note", db, 12 | FB_TRUSTED_NOTE, 22, 22,
              tx_bundle(db, 22, 22, 22, 1));
    /* set / del (modes 13..16) */
    seed_json("ok-set-m13-fresh-t20", db, 13, 20, 23, tx_bundle(db, 23, 20, 23, 0));
    seed_json("ok-set-m14-del-key1-t21", db, 14, 21, 22, tx_bundle(db, 22, 21, 23, 0));
    seed_json("ok-set-m15-multi-t23", db, 15, 23, 0, tx_bundle(db, 24, 23, 24, 0));
    seed_json("ok-set-m16-delmulti-t24", db, 16, 24, 25, tx_bundle(db, 25, 24, 25, 1));
    /* checkpoint + consistency (mode 17) */
    seed_checkpoint("ok-checkpoint-m17-t7", db, 7, 20);
    seed_checkpoint("ok-checkpoint-m17-t0", db, 0, 20);

    /* Notes signed by the pinned key: with extension lines, with another
    ** key's signature line first (both valid); not a checkpoint; another
    ** origin; too long. */
    {
        uint8_t root[32], opriv[32];
        char text[512], note[2048], other[2048];
        CHECK_EQ_INT(tally_root_at(db, root, 20), 0);
        int n = checkpoint_format(text, sizeof text, FB_ORIGIN, 20, root);
        CHECK(n > 0);
        snprintf(text + n, sizeof text - (size_t)n, "extension line\n");
        CHECK(note_sign(note, sizeof note, text, FB_KEYNAME, FB_PRIV) > 0);
        g_note = note;
        seed_batch("ok-batch-m1-note-extension-t0", db, 1, 0, 0, 0, 20);
        text[n] = '\0';
        tally_sha256("other key", 9, opriv);
        CHECK(note_sign(other, sizeof other, text, "other.key", opriv) > 0);
        CHECK(note_sign(note, sizeof note, text, FB_KEYNAME, FB_PRIV) > 0);
        snprintf(other + strlen(other), sizeof other - strlen(other), "%s",
                 strstr(note, "\n\n") + 2); /* append the pinned key's line */
        g_note = other;
        seed_json("ok-get-m7-two-signatures-t13", db, 7, 13, 0, get_bundle(db, 5, 0, 1, 13, 20, 0));
        CHECK(note_sign(note, sizeof note, "not a checkpoint\n", FB_KEYNAME, FB_PRIV) > 0);
        g_note = note;
        seed_json("bad-get-m7-note-not-checkpoint", db, 7, 0, 0, get_bundle(db, 5, 0, 1, 0, 20, 0));
        CHECK(checkpoint_format(text, sizeof text, FB_KEYNAME "/ledger/00000000000000000000000000000000",
                                20, root) > 0);
        CHECK(note_sign(note, sizeof note, text, FB_KEYNAME, FB_PRIV) > 0);
        seed_batch("bad-batch-m0-note-other-origin", db, 0, 0, 0, 0, 20);
        g_note = NULL;
        json_t *b = get_bundle(db, 5, 0, 1, 0, 20, 0);
        char *longnote = calloc(1, NOTE_TEXT_MAX + 100);
        memset(longnote, 'a', NOTE_TEXT_MAX + 50);
        json_object_set_new(b, "checkpoint", json_string(longnote));
        free(longnote);
        seed_json("bad-get-m7-note-too-long", db, 7, 0, 0, b);
    }
    /* Other refusals the mutations rarely reach. */
    {
        json_t *b = get_bundle(db, 5, 0, 1, 20, 20, 0); /* equal sizes, a proof element */
        json_array_append_new(json_object_get(json_object_get(b, "consistency"), "proof"),
                              json_string("00000000000000000000000000000000"
                                          "00000000000000000000000000000000"));
        seed_json("bad-get-m7-nonempty-proof-equal-sizes", db, 7, 20, 0, b);
        b = get_bundle(db, 5, 0, 1, 0, 20, 0);
        json_object_set_new(b, "deleted", json_integer(0));
        seed_json("bad-get-m7-deleted-not-boolean", db, 7, 0, 0, b);
        b = tx_bundle(db, 14, 10, 20, 1);
        json_array_set_new(json_object_get(b, "entries"), 1, json_integer(1));
        seed_json("bad-tx-m12-entry-not-object", db, 12, 10, 14, b);
        seed_json("bad-set-m13-other-meta", db, 13, 0, 0, tx_bundle(db, 3, 0, 20, 0));
        seed_write("bad-get-m7-not-an-object", db, 7, 0, 0, "[]", 2);
    }

    tally_db_close(db);
    CHECK_EQ_INT(system(cmd), 0);
    printf("generate: %u seeds written to %s\n", g_written, dir);
    TEST_END("test_fuzz_bundles --generate");
}

/* ---- the replay ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* One mutation of in[0..len) into out (room for len + 64); returns its length. */
static size_t mutate(uint8_t *out, const uint8_t *in, size_t len)
{
    memcpy(out, in, len);
    size_t n = len, body = FB_HDR, blen = len - FB_HDR;
    size_t at = body + (blen ? next() % blen : 0);
    switch (next() % 10) {
    case 0: /* one bit of the body */
        if (blen)
            out[at] ^= (uint8_t)(1u << (next() % 8));
        break;
    case 1: /* a few bits anywhere */
        for (int k = 1 + (int)(next() % 4); k > 0; k--)
            out[next() % n] ^= (uint8_t)(1u << (next() % 8));
        break;
    case 2: /* a byte of the body */
        if (blen)
            out[at] = (uint8_t)next();
        break;
    case 3: /* truncated */
        n = body + (blen ? next() % blen : 0);
        break;
    case 4: { /* bytes removed */
        size_t k = 1 + next() % 16;
        if (at + k > n)
            k = n - at;
        memmove(out + at, out + at + k, n - at - k);
        n -= k;
        break;
    }
    case 5: { /* bytes inserted */
        size_t k = 1 + next() % 8;
        memmove(out + at + k, out + at, n - at);
        for (size_t i = 0; i < k; i++)
            out[at + i] = (uint8_t)next();
        n += k;
        break;
    }
    case 6: { /* a chunk copied over another place */
        size_t k = 1 + next() % 64, from = body + (blen ? next() % blen : 0);
        if (from + k > n)
            k = n - from;
        if (at + k > n)
            k = n - at;
        memmove(out + at, in + from, k);
        break;
    }
    case 7: { /* a 1..8-byte field set to a limit */
        static const uint64_t lim[] = { 0, 1, 0x7f, 0x80, 0xff, 0xffff, 0xffffffffu,
                                        0xffffffffffffffffull, 64, 65, 93, 4096 };
        uint64_t v = lim[next() % (sizeof lim / sizeof lim[0])];
        size_t w = 1 + next() % 8;
        for (size_t i = 0; i < w && at + i < n; i++)
            out[at + i] = (uint8_t)(v >> (8 * i));
        break;
    }
    case 8: /* a decimal or hex digit of JSON replaced */
        for (int tries = 0; tries < 64 && blen; tries++) {
            size_t p = body + next() % blen;
            uint8_t c = out[p];
            if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
                out[p] = (uint8_t)"0123456789abcdef"[next() % 16];
                break;
            }
        }
        break;
    default: /* the header: mode, trusted size or root, param */
        if (next() % 2)
            out[next() % FB_HDR] ^= (uint8_t)(1u << (next() % 8));
        else
            out[next() % FB_HDR] = (uint8_t)next();
        break;
    }
    return n;
}

typedef struct seed {
    char name[256];
    uint8_t *p;
    size_t len;
    uint8_t digest[32];
} seed;

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--generate") == 0)
        return generate(argv[2]);
    struct dirent **names = NULL;
    int nn = scandir(CORPUS, &names, NULL, alphasort);
    CHECK(nn > 0);
    seed *seeds = calloc(nn > 0 ? (size_t)nn : 1, sizeof *seeds);
    size_t nseeds = 0, inputs = 0, ok_seeds = 0;
    int modes_seen[FB_NMODES] = { 0 };
    for (int i = 0; i < nn; i++) {
        const char *nm = names[i]->d_name;
        char p[512];
        snprintf(p, sizeof p, CORPUS "/%s", nm);
        FILE *f = nm[0] == '.' ? NULL : fopen(p, "rb");
        uint8_t *buf = NULL;
        size_t len = 0;
        if (f) {
            tb b = { 0 };
            uint8_t chunk[4096];
            size_t r;
            while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
                tb_put(&b, chunk, r);
            fclose(f);
            buf = b.p ? b.p : malloc(1);
            len = b.len;
        }
        if (!buf) {
            free(names[i]);
            continue;
        }
        uint8_t d[32];
        int rc = fb_run(buf, len, d);
        inputs++;
        int ok = strncmp(nm, "ok-", 3) == 0;
        if (strncmp(nm, "bad-", 4) == 0) { /* a lie: refused */
            if (rc != TALLY_EBADPROOF)
                fprintf(stderr, "seed %s is not refused (rc %d)\n", nm, rc);
            CHECK_EQ_INT(rc, TALLY_EBADPROOF);
        }
        if (!ok) {
            free(buf);
            free(names[i]);
            continue;
        }
        /* a valid seed: must verify */
        if (rc != 0)
            fprintf(stderr, "seed %s does not verify (rc %d)\n", nm, rc);
        CHECK_EQ_INT(rc, 0);
        ok_seeds++;
        if (rc != 0) {
            free(buf);
            free(names[i]);
            continue;
        }
        modes_seen[(buf[0] & 0x7f) % FB_NMODES] = 1;
        seed *s = &seeds[nseeds++];
        snprintf(s->name, sizeof s->name, "%s", nm);
        free(names[i]);
        s->p = buf;
        s->len = len;
        memcpy(s->digest, d, 32);
    }
    free(names);
    /* every mode has a valid seed */
    for (size_t m = 0; m < FB_NMODES; m++) {
        if (!modes_seen[m])
            fprintf(stderr, "no ok-* seed for mode %zu\n", m);
        CHECK(modes_seen[m]);
    }

    /* Mutants: none may crash; one that verifies must say what its seed says. */
    size_t per_seed = getenv("TALLY_LONG") && strcmp(getenv("TALLY_LONG"), "1") == 0 ? 10000 : 600;
    size_t accepted = 0, differs = 0, other_mode = 0;
    for (size_t i = 0; i < nseeds; i++) {
        seed *s = &seeds[i];
        uint8_t *mut = malloc(s->len + 64);
        for (size_t k = 0; k < per_seed; k++) {
            size_t n = mutate(mut, s->p, s->len);
            uint8_t d[32];
            int rc = fb_run(mut, n, d);
            inputs++;
            if (rc != 0)
                continue;
            accepted++;
            /* Another question (mode) may have the same true answer (a get's
            ** bundle is also the set's of its tx): fb_run's invariants only. */
            if ((mut[0] & 0x7f) % FB_NMODES != (s->p[0] & 0x7f) % FB_NMODES) {
                other_mode++;
                continue;
            }
            if (memcmp(d, s->digest, 32) != 0) {
                differs++;
                if (differs <= 5) {
                    char path[300];
                    snprintf(path, sizeof path, "/tmp/fuzz-bundles-accepted-%s-%zu", s->name, k);
                    FILE *f = fopen(path, "wb");
                    if (f) {
                        fwrite(mut, 1, n, f);
                        fclose(f);
                    }
                    fprintf(stderr, "a mutant of %s verified to other content: %s\n", s->name,
                            path);
                }
            }
        }
        free(mut);
        free(s->p);
    }
    free(seeds);
    CHECK(ok_seeds >= FB_NMODES);
    CHECK_EQ_INT(differs, 0);
    printf("fuzz replay: %zu inputs, %zu valid seeds; mutants accepted: %zu with the seed's"
           " content, %zu as the answer to another question\n", inputs, ok_seeds,
           accepted - differs - other_mode, other_mode);
    TEST_END("test_fuzz_bundles");
}
