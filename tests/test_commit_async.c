/*
** test_commit_async.c — tally_commit_async: completions, ordering, mixing
** with tally_commit, refusals, close with transactions in flight, and a
** failed fdatasync.
**
** What is asserted, exactly:
** (a) 5000 async commits from one thread: every completion runs exactly once
**     with rc 0, tx ids are 1..5000 in submission order, each completion
**     already sees its own value with tally_get (durable = visible), and
**     after the last one every key reads back its value.
** (b) 4 threads, each alternating tally_commit and tally_commit_async (2000
**     transactions in all): every one is acknowledged, the ids are exactly
**     1..2000, each id holds its thread's key.
** (c) refusals return at once and never call the completion: no entries
**     (TALLY_EINVAL), a key twice (TALLY_EINVAL), NULL completion
**     (TALLY_EINVAL), TALLY_COND_ABSENT on an existing key (TALLY_ECONFLICT),
**     a read-only handle (TALLY_EINVAL); the ledger's size is unchanged.
** (d) tally_db_close with 3000 async commits queued returns only after all
**     3000 completions ran (each rc 0); reopen has 3000 transactions.
** (f) (a), (b) and (d) again with tally_options.group_commit_wait = 1.
** (e) the 2nd fdatasync fails (the 1st made tx 1 durable before the other
**     1999 async commits were queued): every
**     completion runs exactly once; those with rc 0 are exactly ids
**     1..state size; every other one is TALLY_EIO (or TALLY_EFATAL) with
**     tx 0; no completion succeeds after a failed one in id order; a new
**     tally_commit_async returns TALLY_EFATAL and calls nothing. After
**     reopen every acknowledged id holds its key.
*/
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "os/io.h"
#include "tally.h"
#include "testutil.h"

#define WAIT_MS_MAX 60000

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void new_dir(char *buf, size_t len) {
    snprintf(buf, len, "/tmp/tally-async-XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void key_of(char *buf, size_t len, int who, int i) { snprintf(buf, len, "k-%d-%06d", who, i); }
static void val_of(char *buf, size_t len, int who, int i) { snprintf(buf, len, "value %d/%d", who, i); }

/* One completion record per submitted transaction. */
typedef struct done_rec {
    tally_db *db;
    int who, i;
    _Atomic int calls;
    int rc;
    uint64_t tx;
    int saw_value; /* the completion read its own value back */
} done_rec;

static _Atomic int g_done;

static int reads_back(tally_db *db, int who, int i) {
    char k[64], v[64];
    key_of(k, sizeof k, who, i);
    val_of(v, sizeof v, who, i);
    tally_version ver;
    return tally_get(db, &ver, TALLY_NS_KV, k, strlen(k), 0) == 0 && ver.value_len == strlen(v) &&
           memcmp(ver.value, v, ver.value_len) == 0;
}

static void on_done(void *ctx, int rc, uint64_t tx) {
    done_rec *d = ctx;
    d->rc = rc;
    d->tx = tx;
    if (rc == 0 && d->db) d->saw_value = reads_back(d->db, d->who, d->i);
    atomic_fetch_add(&d->calls, 1);
    atomic_fetch_add(&g_done, 1);
}

static int submit(tally_db *db, done_rec *d, int who, int i, int check_visible) {
    char k[64], v[64];
    key_of(k, sizeof k, who, i);
    val_of(v, sizeof v, who, i);
    tally_entry e = {.ns = TALLY_NS_KV, .key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
    d->db = check_visible ? db : NULL;
    d->who = who;
    d->i = i;
    return tally_commit_async(db, &e, 1, NULL, 0, on_done, d);
}

static void wait_done(int n) {
    for (int ms = 0; atomic_load(&g_done) < n && ms < WAIT_MS_MAX; ms++) usleep(1000);
}

static int g_group_wait; /* tally_options.group_commit_wait for open_dir */

static tally_db *open_dir(const char *dir) {
    tally_options o;
    tally_options_init(&o);
    o.group_commit_wait = g_group_wait;
    tally_db *h = NULL;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    return h;
}

/* A fresh directory and handle, the completion records cleared. */
static tally_db *scenario_begin(char *dir, size_t dir_len, done_rec *d, size_t d_bytes) {
    new_dir(dir, dir_len);
    memset(d, 0, d_bytes);
    atomic_store(&g_done, 0);
    return open_dir(dir);
}

/* ---- (a) ---- */
#define A_N 5000
static void scenario_order(void) {
    char dir[64];
    static done_rec d[A_N];
    tally_db *h = scenario_begin(dir, sizeof dir, d, sizeof d);
    int refused = 0;
    for (int i = 0; i < A_N; i++)
        if (submit(h, &d[i], 0, i, 1) != 0) refused++;
    CHECK_EQ_INT(refused, 0);
    wait_done(A_N);
    CHECK_EQ_INT(atomic_load(&g_done), A_N);
    int bad_calls = 0, bad_rc = 0, bad_tx = 0, unseen = 0, unread = 0;
    for (int i = 0; i < A_N; i++) {
        if (atomic_load(&d[i].calls) != 1) bad_calls++;
        if (d[i].rc != 0) bad_rc++;
        if (d[i].tx != (uint64_t)i + 1) bad_tx++;
        if (!d[i].saw_value) unseen++;
        if (!reads_back(h, 0, i)) unread++;
    }
    CHECK_EQ_INT(bad_calls, 0);
    CHECK_EQ_INT(bad_rc, 0);
    CHECK_EQ_INT(bad_tx, 0);
    CHECK_EQ_INT(unseen, 0);
    CHECK_EQ_INT(unread, 0);
    uint64_t size = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    CHECK_EQ_INT(size, A_N);
    CHECK_EQ_INT(tally_db_close(h), 0);
    rm_rf(dir);
}

/* ---- (b) ---- */
#define B_THREADS 4
#define B_PER 500
typedef struct b_arg {
    tally_db *h;
    int who;
    done_rec d[B_PER];
    uint64_t sync_tx[B_PER];
    int sync_rc_bad;
} b_arg;

static void *b_main(void *p) {
    b_arg *a = p;
    for (int i = 0; i < B_PER; i++) {
        if (i % 2) {
            if (submit(a->h, &a->d[i], a->who, i, 0) != 0) a->sync_rc_bad++;
        } else {
            char k[64], v[64];
            key_of(k, sizeof k, a->who, i);
            val_of(v, sizeof v, a->who, i);
            tally_entry e = {.ns = TALLY_NS_KV, .key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
            if (tally_commit(a->h, &a->sync_tx[i], &e, 1, NULL, 0) != 0) a->sync_rc_bad++;
            atomic_fetch_add(&g_done, 1);
        }
    }
    return NULL;
}

static void scenario_mixed(void) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_db *h = open_dir(dir);
    static b_arg a[B_THREADS];
    memset(a, 0, sizeof a);
    atomic_store(&g_done, 0);
    pthread_t th[B_THREADS];
    for (int t = 0; t < B_THREADS; t++) {
        a[t].h = h, a[t].who = t;
        pthread_create(&th[t], NULL, b_main, &a[t]);
    }
    for (int t = 0; t < B_THREADS; t++) pthread_join(th[t], NULL);
    wait_done(B_THREADS * B_PER);
    CHECK_EQ_INT(atomic_load(&g_done), B_THREADS * B_PER);
    static uint8_t seen[B_THREADS * B_PER + 1];
    memset(seen, 0, sizeof seen);
    int bad = 0, dup = 0, wrong = 0;
    for (int t = 0; t < B_THREADS; t++) {
        bad += a[t].sync_rc_bad;
        for (int i = 0; i < B_PER; i++) {
            uint64_t tx = i % 2 ? a[t].d[i].tx : a[t].sync_tx[i];
            if (i % 2 && (a[t].d[i].rc != 0 || atomic_load(&a[t].d[i].calls) != 1)) bad++;
            if (tx == 0 || tx > B_THREADS * B_PER) {
                bad++;
                continue;
            }
            if (seen[tx]++) dup++;
            /* the transaction with that id holds this thread's key */
            char k[64];
            key_of(k, sizeof k, t, i);
            tally_version v;
            if (tally_get(h, &v, TALLY_NS_KV, k, strlen(k), 0) != 0 || v.tx != tx) wrong++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(dup, 0);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(tally_db_close(h), 0);
    rm_rf(dir);
}

/* ---- (c) ---- */
static void scenario_refusals(void) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_db *h = open_dir(dir);
    static done_rec d[8];
    memset(d, 0, sizeof d);
    atomic_store(&g_done, 0);
    CHECK_EQ_INT(submit(h, &d[0], 9, 1, 0), 0);
    wait_done(1);
    CHECK_EQ_INT(atomic_load(&g_done), 1);
    CHECK_EQ_INT(tally_commit_async(h, NULL, 0, NULL, 0, on_done, &d[1]), TALLY_EINVAL);
    tally_entry two[2] = {{.ns = TALLY_NS_KV, .key = "dup", .key_len = 3, .value = "a", .value_len = 1},
                          {.ns = TALLY_NS_KV, .key = "dup", .key_len = 3, .value = "b", .value_len = 1}};
    CHECK_EQ_INT(tally_commit_async(h, two, 2, NULL, 0, on_done, &d[2]), TALLY_EINVAL);
    CHECK_EQ_INT(tally_commit_async(h, two, 1, NULL, 0, NULL, NULL), TALLY_EINVAL);
    char k[64];
    key_of(k, sizeof k, 9, 1);
    tally_entry cond = {.ns = TALLY_NS_KV, .key = k, .key_len = strlen(k), .value = "x", .value_len = 1,
                        .cond = TALLY_COND_ABSENT};
    CHECK_EQ_INT(tally_commit_async(h, &cond, 1, NULL, 0, on_done, &d[3]), TALLY_ECONFLICT);
    tally_entry big = {.ns = TALLY_NS_KV, .key = "big", .key_len = TALLY_KEY_BYTES_MAX + 1u};
    CHECK_EQ_INT(tally_commit_async(h, &big, 1, NULL, 0, on_done, &d[4]), TALLY_ETOOBIG);
    usleep(20000);
    CHECK_EQ_INT(atomic_load(&g_done), 1); /* no refused commit called its completion */
    uint64_t size = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    CHECK_EQ_INT(size, 1);
    CHECK_EQ_INT(tally_db_close(h), 0);
    tally_options o;
    tally_options_init(&o);
    o.read_only = 1;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    CHECK_EQ_INT(submit(h, &d[5], 9, 2, 0), TALLY_EINVAL);
    CHECK_EQ_INT(atomic_load(&g_done), 1);
    CHECK_EQ_INT(tally_db_close(h), 0);
    rm_rf(dir);
}

/* ---- (d) ---- */
#define D_N 3000
static void scenario_close(void) {
    char dir[64];
    static done_rec d[D_N];
    tally_db *h = scenario_begin(dir, sizeof dir, d, sizeof d);
    int refused = 0;
    for (int i = 0; i < D_N; i++)
        if (submit(h, &d[i], 1, i, 0) != 0) refused++;
    CHECK_EQ_INT(refused, 0);
    CHECK_EQ_INT(tally_db_close(h), 0);
    CHECK_EQ_INT(atomic_load(&g_done), D_N); /* close waited for every completion */
    int bad = 0;
    for (int i = 0; i < D_N; i++)
        if (d[i].rc != 0 || atomic_load(&d[i].calls) != 1 || d[i].tx != (uint64_t)i + 1) bad++;
    CHECK_EQ_INT(bad, 0);
    tally_open_report rep;
    tally_options o;
    tally_options_init(&o);
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, &rep), 0);
    CHECK_EQ_INT(rep.tx_count, D_N);
    CHECK_EQ_INT(tally_db_close(h), 0);
    rm_rf(dir);
}

/* ---- (e) ---- */
#define E_N 2000
static void scenario_sync_fault(void) {
    char dir[64];
    static done_rec d[E_N];
    tally_db *h = scenario_begin(dir, sizeof dir, d, sizeof d);
    tally_fault_plan plan = {0};
    plan.fail_sync_after = 2;
    plan.sync_errno = EIO;
    tally_fault_install(&plan);
    int queued = 0;
    for (int i = 0; i < E_N; i++) {
        if (submit(h, &d[i], 2, i, 0) == 0) queued++;
        if (i == 0) wait_done(1); /* tx 1 is durable by fdatasync #1: #2 fails */
    }
    wait_done(queued);
    CHECK_EQ_INT(atomic_load(&g_done), queued);
    CHECK_EQ_INT(tally_fault_fired(), 1);
    done_rec extra;
    memset(&extra, 0, sizeof extra);
    CHECK_EQ_INT(submit(h, &extra, 2, E_N, 0), TALLY_EFATAL);
    uint64_t size = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    int acked = 0, bad = 0, ok_after_fail = 0, failed = 0;
    for (int i = 0; i < queued; i++) {
        if (atomic_load(&d[i].calls) != 1) bad++;
        if (d[i].rc == 0) {
            acked++;
            if (failed) ok_after_fail++;
            if (d[i].tx != (uint64_t)i + 1) bad++;
        } else {
            failed++;
            if ((d[i].rc != TALLY_EIO && d[i].rc != TALLY_EFATAL) || d[i].tx != 0) bad++;
        }
    }
    CHECK(failed > 0);
    CHECK(acked >= 1);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(ok_after_fail, 0);
    CHECK_EQ_INT(size, (uint64_t)acked);
    tally_db_close(h);
    tally_fault_remove();
    tally_open_report rep;
    tally_options o;
    tally_options_init(&o);
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, &rep), 0);
    CHECK(rep.tx_count >= (uint64_t)acked);
    int missing = 0;
    for (int i = 0; i < acked; i++)
        if (!reads_back(h, 2, i)) missing++;
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(tally_db_close(h), 0);
    rm_rf(dir);
}

int main(void) {
    scenario_order();
    scenario_mixed();
    g_group_wait = 1; /* (f): the same with the group-commit wait */
    scenario_order();
    scenario_mixed();
    scenario_close();
    g_group_wait = 0;
    scenario_refusals();
    scenario_close();
    scenario_sync_fault();
    TEST_END("test_commit_async");
}
