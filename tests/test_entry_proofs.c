/*
** test_entry_proofs.c — tally_proof_entry for transactions of every size
** class: below the entry-tree cache's threshold (hashed per proof), at and
** above it (src/core/read.c caches each large transaction's tree of
** complete-subtree hashes), with more large transactions than the cache
** holds, proven in an order that makes it evict and rebuild. Every proof of
** every entry must verify against the entries root in the transaction's
** header, and a proof must not verify for another entry.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tally.h"
#include "testutil.h"

static const uint32_t SIZES[] = { 1, 2, 3, 63, 64, 65, 100, 127, 128, 129, 1000, 4097 };
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

/* Proves every entry of tx and checks each proof; returns the failures. */
static int prove_all(tally_db *db, uint64_t tx, uint32_t n, uint32_t step)
{
    tally_tx_info t;
    CHECK_EQ_INT(tally_tx_get(db, &t, tx), 0);
    CHECK_EQ_INT(t.entry_count, n);
    int bad = 0;
    for (uint32_t i = 0; i < n; i += step) {
        tally_entry_view e;
        tally_proof p;
        if (tally_tx_entry(db, &e, tx, i) != 0 || tally_proof_entry(db, &p, tx, i) != 0) {
            bad++;
            continue;
        }
        bad += p.index != i || p.size != n;
        bad += tally_verify_inclusion(e.leaf_hash, &p, t.entries_root) != TALLY_OK;
        if (n > 1) { /* the same path does not prove a neighbour */
            tally_entry_view o;
            CHECK_EQ_INT(tally_tx_entry(db, &o, tx, (i + 1) % n), 0);
            bad += tally_verify_inclusion(o.leaf_hash, &p, t.entries_root) == TALLY_OK;
        }
    }
    return bad;
}

/* tally_tx_entries sees every entry, in order, as tally_tx_entry does. */
typedef struct walk { tally_db *db; uint64_t tx; uint32_t seen, stop_at; int bad; } walk;

static int walk_one(void *arg, uint32_t i, const tally_entry_view *v)
{
    walk *w = arg;
    tally_entry_view e;
    w->bad += i != w->seen || tally_tx_entry(w->db, &e, w->tx, i) != 0 ||
              e.key_len != v->key_len || memcmp(e.key, v->key, e.key_len) != 0 ||
              e.value_len != v->value_len || memcmp(e.value, v->value, e.value_len) != 0 ||
              memcmp(e.leaf_hash, v->leaf_hash, TALLY_HASH_LEN) != 0 ||
              memcmp(e.header, v->header, sizeof e.header) != 0;
    w->seen++;
    return i + 1 == w->stop_at ? 42 : 0;
}

static void check_walk(tally_db *db, uint64_t tx, uint32_t n)
{
    walk w = { db, tx, 0, 0, 0 };
    CHECK_EQ_INT(tally_tx_entries(db, tx, walk_one, &w), 0);
    CHECK_EQ_INT(w.seen, n);
    CHECK_EQ_INT(w.bad, 0);
    walk s = { db, tx, 0, (n + 1) / 2, 0 }; /* a nonzero return stops it and comes back */
    CHECK_EQ_INT(tally_tx_entries(db, tx, walk_one, &s), 42);
    CHECK_EQ_INT(s.seen, (n + 1) / 2);
}

int main(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/tally-tep-%ld", (long)getpid());
    tally_db *db;
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, NULL), 0);
    uint64_t txs[NSIZES];
    for (size_t s = 0; s < NSIZES; s++) {
        uint32_t n = SIZES[s];
        tally_entry *e = calloc(n, sizeof *e);
        char (*keys)[24] = calloc(n, 24), (*vals)[24] = calloc(n, 24);
        for (uint32_t i = 0; i < n; i++) {
            snprintf(keys[i], 24, "k%zu-%u", s, i);
            snprintf(vals[i], 24, "v%u", i * 7919u);
            e[i] = (tally_entry){ .ns = TALLY_NS_KV, .key = keys[i], .key_len = strlen(keys[i]),
                                  .value = vals[i], .value_len = strlen(vals[i]),
                                  .meta = i % 5 ? NULL : "m", .meta_len = i % 5 ? 0 : 1 };
        }
        CHECK_EQ_INT(tally_commit(db, &txs[s], e, n, NULL, 0), 0);
        free(e);
        free(keys);
        free(vals);
    }
    /* every size, twice (the second pass from the cache), then the large
    ** ones interleaved so the 4-slot cache keeps evicting */
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < NSIZES; s++)
            CHECK_EQ_INT(prove_all(db, txs[s], SIZES[s], 1), 0);
    for (int round = 0; round < 3; round++)
        for (size_t s = 0; s < NSIZES; s++)
            if (SIZES[s] >= 64)
                CHECK_EQ_INT(prove_all(db, txs[s], SIZES[s], 61), 0);
    for (size_t s = 0; s < NSIZES; s++)
        check_walk(db, txs[s], SIZES[s]);
    walk none = { db, 0, 0, 0, 0 };
    CHECK_EQ_INT(tally_tx_entries(db, txs[NSIZES - 1] + 1, walk_one, &none), TALLY_ERANGE);
    /* out of range */
    tally_proof p;
    CHECK_EQ_INT(tally_proof_entry(db, &p, txs[NSIZES - 1], SIZES[NSIZES - 1]), TALLY_ERANGE);
    CHECK_EQ_INT(tally_db_close(db), 0);
    /* after a reopen (empty cache) the proofs are the same */
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, NULL), 0);
    CHECK_EQ_INT(prove_all(db, txs[NSIZES - 1], SIZES[NSIZES - 1], 13), 0);
    CHECK_EQ_INT(tally_db_close(db), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    TEST_END("test_entry_proofs");
}
