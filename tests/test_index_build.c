/*
** test_index_build.c — the index build (src/index/): the memtable's sort
** (memtable.c, prefixes refined by depth) must give exactly ix_key_cmp's
** order, and a run built from it (run.c, slots filled bucket by bucket) must
** find every key and no other, alone and merged with an older run.
**
** Keys are chosen to hit the sort's edges: long shared prefixes (longer than
** one 6- or 7-byte level), keys that prefix other keys, 0x00 and 0xFF bytes
** at every position, several namespaces, lengths 1..40; and enough of them
** (200k) that the slot array has many buckets (> 32768 slots per bucket).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/memtable.h"
#include "index/run.h"
#include "testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A key of one of several shapes into k[0..*len). */
static void make_key(uint8_t *k, size_t *len, uint8_t *ns)
{
    static const char pre[] = "account:0000000000/ledger-";
    uint64_t r = next_rand();
    *ns = (uint8_t)(r % 3);
    switch ((r >> 8) % 4) {
    case 0: /* long shared prefix + a counter */
        memcpy(k, pre, 26);
        *len = 26 + 1 + (r >> 16) % 12;
        for (size_t i = 26; i < *len; i++) k[i] = (uint8_t)('0' + next_rand() % 10);
        break;
    case 1: /* binary: 0x00 / 0xFF / other, short */
        *len = 1 + (r >> 16) % 6;
        for (size_t i = 0; i < *len; i++) {
            uint64_t x = next_rand() % 4;
            k[i] = x == 0 ? 0x00 : x == 1 ? 0xFF : (uint8_t)next_rand();
        }
        break;
    case 2: /* a prefix of the long shape */
        *len = 1 + (r >> 16) % 26;
        memcpy(k, pre, *len);
        break;
    default: /* random bytes, any length 1..40 */
        *len = 1 + (r >> 16) % 40;
        for (size_t i = 0; i < *len; i++) k[i] = (uint8_t)next_rand();
    }
}

/* Fills mt with up to n distinct keys (versions at tx), returns how many. */
static uint64_t fill(memtable *mt, size_t n, uint64_t tx, const run *old)
{
    uint64_t added = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t k[64], ns;
        size_t len;
        make_key(k, &len, &ns);
        uint64_t h = ix_hash(ns, k, len);
        if (mt_find(mt, ns, k, len, h))
            continue;
        uint64_t base = 0;
        if (old) {
            int64_t ki = run_find(old, ns, k, len, h);
            if (ki >= 0) {
                run_key rk;
                run_get(old, (uint64_t)ki, &rk);
                base = rk.nver;
            }
        }
        mt_key *node = mt_insert(mt, ns, k, len, h, base);
        ix_version v = { tx, tx * 100 + i, 0, 0 };
        CHECK(node != NULL && mt_add_version(mt, node, &v) == 0);
        added++;
    }
    return added;
}

static void check_sorted(const memtable *mt)
{
    size_t bad = 0;
    for (size_t i = 1; i < mt->nsorted; i++) {
        const mt_key *a = mt->sorted[i - 1], *b = mt->sorted[i];
        bad += ix_key_cmp(a->ns, a->key, a->key_len, b->ns, b->key, b->key_len) >= 0;
    }
    CHECK_EQ_INT(bad, 0);
}

/* Every key of mt is found in r, with the expected version count. */
static void check_found(const run *r, const memtable *mt, uint32_t extra_versions_max)
{
    size_t missing = 0, wrong = 0;
    for (size_t i = 0; i < mt->nsorted; i++) {
        const mt_key *k = mt->sorted[i];
        int64_t ki = run_find(r, k->ns, k->key, k->key_len, ix_hash(k->ns, k->key, k->key_len));
        if (ki < 0) {
            missing++;
            continue;
        }
        run_key rk;
        run_get(r, (uint64_t)ki, &rk);
        wrong += rk.nver < k->base_rev + k->nver || rk.nver > k->nver + extra_versions_max;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(wrong, 0);
}

int main(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/tally-tib-%ld", (long)getpid());
    CHECK_EQ_INT(mkdir(dir, 0700), 0);

    /* 1. A first run from a memtable alone. */
    memtable *m1 = mt_new(NULL);
    uint64_t n1 = fill(m1, 200000, 1, NULL);
    CHECK(n1 > 100000);
    CHECK_EQ_INT(mt_sort(m1), 0);
    CHECK_EQ_INT(m1->nsorted, n1);
    check_sorted(m1);
    CHECK_EQ_INT(run_write(dir, "run-1.idx", 1, NULL, m1, NULL), 0);
    run *r1;
    char path[128];
    snprintf(path, sizeof path, "%s/run-1.idx", dir);
    CHECK_EQ_INT(run_open(&r1, path), 0);
    CHECK_EQ_INT(run_key_count(r1), n1);
    CHECK_EQ_INT(run_check_crc(r1), 0);
    check_found(r1, m1, 0);
    /* the run's keys are in order too, and absent keys are not found */
    size_t order_bad = 0, phantom = 0;
    for (uint64_t i = 1; i < run_key_count(r1); i++) {
        run_key a, b;
        run_get(r1, i - 1, &a);
        run_get(r1, i, &b);
        order_bad += ix_key_cmp(a.ns, a.key, a.key_len, b.ns, b.key, b.key_len) >= 0;
    }
    for (int i = 0; i < 20000; i++) {
        char k[48];
        int len = snprintf(k, sizeof k, "absent-%d-%llu", i, (unsigned long long)next_rand());
        phantom += run_find(r1, 0, k, (size_t)len, ix_hash(0, k, (size_t)len)) >= 0;
    }
    CHECK_EQ_INT(order_bad, 0);
    CHECK_EQ_INT(phantom, 0);

    /* 2. Merged with a newer memtable (new keys and new versions of old ones). */
    memtable *m2 = mt_new(NULL);
    uint64_t n2 = fill(m2, 100000, 2, r1);
    CHECK_EQ_INT(mt_sort(m2), 0);
    check_sorted(m2);
    CHECK_EQ_INT(run_write(dir, "run-2.idx", 2, r1, m2, NULL), 0);
    run *r2;
    snprintf(path, sizeof path, "%s/run-2.idx", dir);
    CHECK_EQ_INT(run_open(&r2, path), 0);
    CHECK_EQ_INT(run_check_crc(r2), 0);
    check_found(r2, m1, 1); /* a key of m1 may have a version in m2 too */
    check_found(r2, m2, 1);
    CHECK(run_key_count(r2) >= n1 && run_key_count(r2) <= n1 + n2);
    CHECK_EQ_INT(run_version_count(r2), run_version_count(r1) + m2->nversions);

    /* 3. Small memtables: the fallback sort and a one-bucket run. */
    for (size_t n = 0; n < 5; n++) {
        memtable *m = mt_new(NULL);
        fill(m, n, 3, NULL);
        CHECK_EQ_INT(mt_sort(m), 0);
        check_sorted(m);
        char name[32];
        snprintf(name, sizeof name, "run-small-%zu.idx", n);
        CHECK_EQ_INT(run_write(dir, name, 3, NULL, m, NULL), 0);
        run *r;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        CHECK_EQ_INT(run_open(&r, path), 0);
        check_found(r, m, 0);
        run_close(r);
        mt_free(m);
    }

    /* 4. A memtable whose arena blocks come back from a freed one (the
    ** ledger's pool): stale bytes must not show through. The first fills
    ** several 4 MiB blocks; the second, with other keys, must find each of
    ** its own keys with its own versions, and no key of the first. */
    {
        mt_pool *pool = mt_pool_new();
        CHECK(pool != NULL);
        memtable *a = mt_new(pool);
        uint64_t na = fill(a, 200000, 7, NULL);
        CHECK(a->nblocks >= 8); /* 6 growing blocks (64 KiB..2 MiB), then 4 MiB ones: those are pooled */
        CHECK_EQ_INT(mt_sort(a), 0);
        size_t nsa = a->nsorted;
        uint8_t (*copy)[64] = malloc(nsa * 64);
        uint16_t *lens = malloc(nsa * sizeof *lens);
        uint8_t *nss = malloc(nsa);
        CHECK(copy && lens && nss);
        for (size_t i = 0; i < nsa; i++) {
            memcpy(copy[i], a->sorted[i]->key, a->sorted[i]->key_len);
            lens[i] = a->sorted[i]->key_len;
            nss[i] = a->sorted[i]->ns;
        }
        mt_free(a); /* its blocks go to the pool */
        memtable *b = mt_new(pool);
        uint64_t nb = fill(b, 150000, 8, NULL); /* the generator has moved on: other keys */
        CHECK(na > 0 && nb > 0);
        CHECK_EQ_INT(mt_sort(b), 0);
        check_sorted(b);
        size_t wrong = 0, leaked = 0;
        for (size_t i = 0; i < b->nsorted; i++) {
            const mt_key *k = b->sorted[i];
            const mt_key *f = mt_find(b, k->ns, k->key, k->key_len, ix_hash(k->ns, k->key, k->key_len));
            wrong += f != k || k->nver != 1 || k->vers[0].tx != 8 || k->base_rev != 0;
        }
        for (size_t i = 0; i < nsa; i++) {
            const mt_key *f = mt_find(b, nss[i], copy[i], lens[i], ix_hash(nss[i], copy[i], lens[i]));
            leaked += f && f->vers[0].tx != 8;
        }
        CHECK_EQ_INT(wrong, 0);
        CHECK_EQ_INT(leaked, 0);
        mt_free(b);
        mt_pool_free(pool);
        free(copy);
        free(lens);
        free(nss);
    }

    run_close(r1);
    run_close(r2);
    mt_free(m1);
    mt_free(m2);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    TEST_END("test_index_build");
}
