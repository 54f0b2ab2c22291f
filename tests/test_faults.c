/*
** test_faults.c — injected I/O failures and simulated power loss
** (src/os/fault.c through tally_fault_install).
**
** Every scenario commits some acknowledged transactions first. What is
** asserted, exactly:
**
** (a) pwritev #N fails with EIO, N = 1..6 (with large segments, and with
**     4 KiB segments so segment creation is in the write path): the commit
**     that hits it returns TALLY_EIO; every later commit returns TALLY_EFATAL
**     and leaves *out_tx alone; tally_state still reports only acknowledged
**     txs; exactly one fault fired. After close, tally_fault_remove() and
**     reopen: tx_count is the acknowledged count, or one more (the failed
**     tx may be durable if only a derived-file write failed) and then it holds
**     exactly the failed commit's entries; every acknowledged tx holds its
**     entries (tx_entry) and its keys read back (tally_get); a new commit
**     after reopen gets the next id; tally_verify_dir is ok.
** (b) the same with ENOSPC: the failing commit returns TALLY_ENOSPC.
** (c) fdatasync/fsync #N fails (N = 1..4, both segment sizes): the commit
**     returns TALLY_EIO, later ones TALLY_EFATAL; reopen keeps every
**     acknowledged tx (as in (a)). Variant: after the failure,
**     tally_fault_drop_unsynced() (the kernel dropped the dirty pages) before
**     reopening: then tx_count equals the acknowledged count exactly.
** (d) a torn log write (torn=1, the next pwritev = the next commit's record):
**     TALLY_EIO; reopen reports torn_bytes_dropped > 0, tx_count equals the
**     acknowledged count, data intact, verify ok. Before reopen,
**     tally_verify_dir reports the torn tail (ok == 0, first_bad_tx = next).
** (e) power loss in a forked child: the child installs the fault layer,
**     opens, commits (sending each acknowledged tx id to the parent through
**     a pipe), waits until no index checkpoint is in flight, calls
**     tally_fault_drop_unsynced() (every file back to its last synced
**     length) and adds unsynced junk to the last segment, then _exit()s
**     without closing. Junk variants: none, 4 KiB of zeros, random bytes,
**     the first half of an unacknowledged record (its sync was failed) and
**     that whole unacknowledged record. The parent reopens: every
**     acknowledged tx is there with its entries, tx_count is the acknowledged
**     count (+1 only for the "whole record" variant), torn_bytes_dropped
**     equals the junk's size, verify ok. Variants with default options,
**     and with checkpoints + small segments + a close/reopen in the child.
** (g) pwritev #N fails while 4 threads commit (group commit): every
**     thread's first error is TALLY_EIO (or TALLY_EFATAL if its commit was
**     queued after the failure), no commit succeeds after a thread saw an
**     error, the acknowledged txs are exactly 1..state size, and after
**     reopen each holds its thread's entries; verify ok.
** (h) the background checkpoint's own fsync fails (checkpoint_entries_min
**     100, the 67th commit freezes): tally_db_stats reports checkpoint_error
**     TALLY_EIO with a message and no checkpoint; 30 more commits and
**     every read still work; after tally_fault_remove, tally_db_checkpoint()
**     succeeds and clears the error, and background checkpoints run again;
**     reopen keeps every tx; verify ok.
** (f) a write or sync failure during the final checkpoint of
**     tally_db_close: close returns an error; reopen replays the log and
**     keeps every tx; verify ok.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/db_int.h"
#include "os/io.h"
#include "tally.h"
#include "testutil.h"

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void new_dir(char *buf, size_t len) {
    snprintf(buf, len, "/tmp/tally-faults-XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
}

/* ---- deterministic transaction contents, by attempt number a (1, 2, ...) ---- */

static void key_of(char *buf, size_t len, uint64_t a) { snprintf(buf, len, "key-%05llu", (unsigned long long)a); }
static size_t value_of(uint8_t *buf, uint64_t a) { /* 40..939 bytes */
    size_t n = 40 + (size_t)((a * 37) % 900);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(a * 131 + i * 7 + (i % 5 == 0 ? 0 : 0xF0));
    return n;
}

/* Attempt a: entry 0 = key-a -> value_of(a); odd a also sets "shared" -> a. */
static int do_commit(tally_db *h, uint64_t a, uint64_t *tx) {
    char k[32], sv[32];
    uint8_t v[1024];
    key_of(k, sizeof k, a);
    tally_entry e[2];
    memset(e, 0, sizeof e);
    e[0].key = k, e[0].key_len = strlen(k), e[0].value = v, e[0].value_len = value_of(v, a);
    snprintf(sv, sizeof sv, "shared=%llu", (unsigned long long)a);
    e[1].key = "shared", e[1].key_len = 6, e[1].value = sv, e[1].value_len = strlen(sv);
    return tally_commit(h, tx, e, (a & 1) ? 2 : 1, NULL, 0);
}

/* 1 if tx holds exactly attempt a's entries. */
static int tx_is(tally_db *h, uint64_t tx, uint64_t a) {
    tally_tx_info ti;
    if (tally_tx_get(h, &ti, tx) != 0) return 0;
    uint32_t n = (a & 1) ? 2 : 1;
    if (ti.entry_count != n) return 0;
    char k[32], sv[32];
    uint8_t v[1024];
    key_of(k, sizeof k, a);
    size_t vl = value_of(v, a);
    tally_entry_view ev;
    if (tally_tx_entry(h, &ev, tx, 0) != 0) return 0;
    if (ev.key_len != strlen(k) || memcmp(ev.key, k, ev.key_len) || ev.value_len != vl || memcmp(ev.value, v, vl))
        return 0;
    if (n == 2) {
        snprintf(sv, sizeof sv, "shared=%llu", (unsigned long long)a);
        if (tally_tx_entry(h, &ev, tx, 1) != 0 || ev.key_len != 6 || memcmp(ev.key, "shared", 6) ||
            ev.value_len != strlen(sv) || memcmp(ev.value, sv, ev.value_len))
            return 0;
    }
    /* the key reads back at that tx */
    tally_version ver;
    if (tally_get(h, &ver, TALLY_NS_KV, k, strlen(k), tx) != 0 || ver.tx != tx || ver.value_len != vl ||
        memcmp(ver.value, v, vl) != 0)
        return 0;
    return 1;
}

/* Reopens dir (no fault layer) and checks acknowledged txs 1..acked (tx t is
** attempt t) and at most one more: attempt `extra_a` (0: none allowed).
** expect_exact: tx_count must be exactly acked. Returns the tx count. */
static uint64_t reopen_and_check(const char *dir, const tally_options *o, uint64_t acked, uint64_t extra_a,
                                 int expect_exact, tally_open_report *rep_out) {
    tally_db *h = NULL;
    tally_open_report rep;
    int rc = tally_db_open(&h, dir, o, &rep);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "reopen %s: %s\n", dir, tally_errmsg());
        return 0;
    }
    if (rep_out) *rep_out = rep;
    if (expect_exact || !extra_a) CHECK_EQ_INT(rep.tx_count, acked);
    else CHECK(rep.tx_count == acked || rep.tx_count == acked + 1);
    uint64_t bad = 0;
    for (uint64_t t = 1; t <= acked; t++)
        if (!tx_is(h, t, t)) bad++;
    CHECK_EQ_INT(bad, 0);
    if (rep.tx_count == acked + 1 && extra_a) CHECK(tx_is(h, acked + 1, extra_a));
    uint64_t size = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    CHECK_EQ_INT(size, rep.tx_count);
    /* "shared" holds the value of the last odd attempt in the ledger */
    uint64_t last_odd = 0;
    for (uint64_t t = 1; t <= rep.tx_count; t++) {
        uint64_t a = t <= acked ? t : extra_a;
        if (a & 1) last_odd = a;
    }
    tally_version v;
    if (last_odd) {
        char sv[32];
        snprintf(sv, sizeof sv, "shared=%llu", (unsigned long long)last_odd);
        CHECK_EQ_INT(tally_get(h, &v, TALLY_NS_KV, "shared", 6, 0), 0);
        CHECK(v.value_len == strlen(sv) && memcmp(v.value, sv, v.value_len) == 0);
    }
    /* the ledger takes new commits with the next id */
    uint64_t tx = 0;
    CHECK_EQ_INT(do_commit(h, 90000, &tx), 0);
    CHECK_EQ_INT(tx, rep.tx_count + 1);
    CHECK(tx_is(h, tx, 90000));
    CHECK_EQ_INT(tally_db_close(h), 0);
    tally_verify_result vr;
    CHECK_EQ_INT(tally_verify_dir(dir, &vr, NULL, NULL), 0);
    CHECK_EQ_INT(vr.ok, 1);
    CHECK_EQ_INT(vr.tx_checked, rep.tx_count + 1);
    if (!vr.ok) fprintf(stderr, "verify %s: %s\n", dir, vr.error);
    return rep.tx_count;
}

/* ---- (a) (b) (d): a failing pwritev ---- */

static void write_fault(int err, int64_t nth, int torn, uint64_t seg_bytes, int check_torn) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_options o;
    tally_options_init(&o);
    o.segment_bytes_max = seg_bytes;
    tally_db *h;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    uint64_t a = 0, acked = 0, tx;
    for (int i = 0; i < 6; i++) {
        a++;
        tx = 0;
        CHECK_EQ_INT(do_commit(h, a, &tx), 0);
        CHECK_EQ_INT(tx, a);
        acked = tx;
    }
    tally_fault_plan plan = {0};
    plan.fail_write_after = nth;
    plan.write_errno = err;
    plan.torn = torn;
    tally_fault_install(&plan);
    int expect = err == ENOSPC ? TALLY_ENOSPC : TALLY_EIO;
    uint64_t failed_a = 0;
    int rc = 0;
    for (int i = 0; i < 10 && !failed_a; i++) {
        a++;
        tx = 0;
        rc = do_commit(h, a, &tx);
        if (rc == 0) {
            CHECK_EQ_INT(tx, acked + 1);
            acked = tx;
        } else {
            failed_a = a;
        }
    }
    CHECK(failed_a != 0);
    CHECK_EQ_INT(rc, expect);
    CHECK_EQ_INT(tally_fault_fired(), 1);
    /* no acknowledgement after the failure */
    for (int i = 0; i < 3; i++) {
        tx = 4242;
        CHECK_EQ_INT(do_commit(h, 80000 + (uint64_t)i, &tx), TALLY_EFATAL);
        CHECK_EQ_INT(tx, 4242);
    }
    uint64_t size = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    CHECK_EQ_INT(size, acked);
    tally_version v;
    char k[32];
    key_of(k, sizeof k, failed_a);
    CHECK_EQ_INT(tally_get(h, &v, TALLY_NS_KV, k, strlen(k), 0), TALLY_ENOTFOUND);
    tally_db_close(h); /* the handle failed: no checkpoint; its rc is not specified */
    tally_fault_remove();
    if (check_torn) { /* before recovery, verify sees the torn tail */
        tally_verify_result vr;
        CHECK_EQ_INT(tally_verify_dir(dir, &vr, NULL, NULL), 0);
        CHECK_EQ_INT(vr.ok, 0);
        CHECK_EQ_INT(vr.first_bad_tx, acked + 1);
    }
    tally_open_report rep;
    memset(&rep, 0, sizeof rep);
    reopen_and_check(dir, &o, acked, failed_a, check_torn, &rep);
    if (check_torn) CHECK(rep.torn_bytes_dropped > 0);
    rm_rf(dir);
}

/* ---- (c): a failing fdatasync / fsync ---- */

static void sync_fault(int64_t nth, uint64_t seg_bytes, int drop) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_options o;
    tally_options_init(&o);
    o.segment_bytes_max = seg_bytes;
    tally_fault_plan none = {0};
    if (drop) tally_fault_install(&none); /* track every file from the start */
    tally_db *h;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    uint64_t a = 0, acked = 0, tx;
    for (int i = 0; i < 6; i++) {
        a++;
        CHECK_EQ_INT(do_commit(h, a, &tx), 0);
        acked = tx;
    }
    tally_fault_plan plan = {0};
    plan.fail_sync_after = nth;
    plan.sync_errno = EIO;
    tally_fault_install(&plan);
    uint64_t failed_a = 0;
    int rc = 0;
    for (int i = 0; i < 10 && !failed_a; i++) {
        a++;
        tx = 0;
        rc = do_commit(h, a, &tx);
        if (rc == 0) {
            CHECK_EQ_INT(tx, acked + 1);
            acked = tx;
        } else {
            failed_a = a;
        }
    }
    CHECK(failed_a != 0);
    CHECK_EQ_INT(rc, TALLY_EIO);
    CHECK_EQ_INT(tally_fault_fired(), 1);
    for (int i = 0; i < 3; i++) {
        tx = 4242;
        CHECK_EQ_INT(do_commit(h, 80000 + (uint64_t)i, &tx), TALLY_EFATAL);
        CHECK_EQ_INT(tx, 4242);
    }
    uint64_t size = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    CHECK_EQ_INT(size, acked);
    tally_db_close(h);
    if (drop) {
        int64_t dropped = tally_fault_drop_unsynced();
        CHECK(dropped > 0); /* at least the failed record */
    }
    tally_fault_remove();
    reopen_and_check(dir, &o, acked, failed_a, drop, NULL);
    rm_rf(dir);
}

/* ---- (e): simulated power loss in a forked child ---- */

enum junk { J_NONE, J_ZEROS, J_RANDOM, J_HALF_RECORD, J_WHOLE_RECORD };

static int last_segment(const char *dir, char *path, size_t len) {
    int n = 0;
    for (;; n++) {
        snprintf(path, len, "%s/log/%08d.seg", dir, n);
        if (access(path, F_OK) != 0) break;
    }
    if (n == 0) return -1;
    snprintf(path, len, "%s/log/%08d.seg", dir, n - 1);
    return n - 1;
}

/* Writes buf at off of the file at path (past its records: into the
** preallocated zeros or beyond the end). */
static void write_file_at(const char *path, const void *buf, size_t len, size_t off) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) _exit(20);
    close(fd);
}

/* The whole file at path (malloc'd, caller frees) and where its records end. */
static uint8_t *read_segment(const char *path, size_t *len, size_t *records_end) {
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) _exit(17);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    if (!b || pread(fd, b, (size_t)st.st_size, 0) != st.st_size) _exit(18);
    close(fd);
    *len = (size_t)st.st_size;
    *records_end = tu_records_end(b, *len);
    return b;
}

/* Child: never returns. Writes each acknowledged tx id (u64) to fd, then a
** final u64: the number of junk bytes appended, and the attempt number of an
** unacknowledged-but-restored record (0 if none). */
static void power_loss_child(const char *dir, const tally_options *o, int ncommit, int reopen_midway,
                             enum junk junk, int fd) {
    tally_fault_plan none = {0};
    tally_fault_install(&none);
    tally_db *h;
    if (tally_db_open(&h, dir, o, NULL) != 0) _exit(10);
    uint64_t a = 0;
    for (int i = 0; i < ncommit; i++) {
        uint64_t tx = 0;
        a++;
        if (do_commit(h, a, &tx) != 0 || tx != a) _exit(11);
        if (write(fd, &tx, 8) != 8) _exit(12);
        if (reopen_midway && i == ncommit / 2) {
            if (tally_db_close(h) != 0) _exit(13);
            if (tally_db_open(&h, dir, o, NULL) != 0) _exit(14);
        }
    }
    /* let an in-flight index checkpoint finish, so nothing writes after the
    ** "power loss" below (polling; no timing is asserted) */
    for (;;) {
        pthread_rwlock_rdlock(&h->ixlock);
        int busy = h->frozen != NULL;
        pthread_rwlock_unlock(&h->ixlock);
        if (!busy) break;
        usleep(1000);
    }
    char seg[512];
    uint8_t *tail = NULL;
    size_t tail_len = 0, tail_end = 0;
    uint64_t restored_a = 0;
    if (junk == J_HALF_RECORD || junk == J_WHOLE_RECORD) {
        /* one more commit whose fdatasync fails: its record is written, unsynced */
        tally_fault_plan p = {0};
        p.fail_sync_after = 1;
        p.sync_errno = EIO;
        tally_fault_install(&p);
        a++;
        uint64_t tx = 0;
        if (do_commit(h, a, &tx) != TALLY_EIO) _exit(15);
        if (last_segment(dir, seg, sizeof seg) < 0) _exit(16);
        /* the unsynced tail of the last segment = that record */
        tail = read_segment(seg, &tail_len, &tail_end);
        restored_a = a;
    }
    int64_t dropped = tally_fault_drop_unsynced();
    if (dropped < 0) _exit(19);
    if (last_segment(dir, seg, sizeof seg) < 0) _exit(16);
    size_t seg_len = 0, rec_end = 0;
    free(read_segment(seg, &seg_len, &rec_end));
    uint64_t junk_len = 0;
    uint8_t buf[4096];
    switch (junk) {
    case J_NONE: break;
    case J_ZEROS:
        /* zeros past the records are preallocated space, not a torn tail */
        memset(buf, 0, sizeof buf);
        write_file_at(seg, buf, sizeof buf, seg_len);
        junk_len = 0;
        break;
    case J_RANDOM: {
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < 1000; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        buf[999] |= 1; /* the torn bytes end at a non-zero one */
        write_file_at(seg, buf, 1000, rec_end);
        junk_len = 1000;
        break;
    }
    case J_HALF_RECORD:
    case J_WHOLE_RECORD: {
        if (rec_end >= tail_end) _exit(21); /* the record must have been dropped */
        size_t rec_len = tail_end - rec_end;
        size_t put = junk == J_HALF_RECORD ? rec_len / 2 : rec_len;
        write_file_at(seg, tail + rec_end, put, rec_end);
        junk_len = junk == J_HALF_RECORD ? tu_nonzero_end(tail, rec_end, rec_end + put) - rec_end : 0;
        if (junk == J_HALF_RECORD) restored_a = 0;
        break;
    }
    }
    free(tail);
    uint64_t end[2] = {UINT64_MAX, junk_len};
    if (write(fd, end, sizeof end) != sizeof end || write(fd, &restored_a, 8) != 8) _exit(22);
    _exit(0); /* without closing the handle */
}

static void power_loss(const char *name, const tally_options *o, int ncommit, int reopen_midway, enum junk junk) {
    char dir[64];
    new_dir(dir, sizeof dir);
    int pfd[2];
    if (pipe(pfd) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(pfd[0]);
        power_loss_child(dir, o, ncommit, reopen_midway, junk, pfd[1]);
    }
    close(pfd[1]);
    uint64_t acked = 0, junk_len = 0, restored_a = 0, x;
    int in_order = 1, ended = 0;
    while (read(pfd[0], &x, 8) == 8) {
        if (x == UINT64_MAX) {
            if (read(pfd[0], &junk_len, 8) != 8 || read(pfd[0], &restored_a, 8) != 8) break;
            ended = 1;
            break;
        }
        if (x != acked + 1) in_order = 0;
        acked = x;
    }
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "%s: child status %d\n", name, status);
    CHECK(ended);
    CHECK(in_order);
    CHECK_EQ_INT(acked, (uint64_t)ncommit);
    tally_open_report rep;
    memset(&rep, 0, sizeof rep);
    uint64_t n = reopen_and_check(dir, o, acked, restored_a, !restored_a, &rep);
    if (restored_a) CHECK_EQ_INT(n, acked + 1);
    CHECK_EQ_INT(rep.torn_bytes_dropped, junk_len);
    printf("power loss %-28s acked %llu, reopened with %llu txs, %llu torn bytes dropped, %llu replayed\n", name,
           (unsigned long long)acked, (unsigned long long)n, (unsigned long long)rep.torn_bytes_dropped,
           (unsigned long long)rep.replayed_tx);
    rm_rf(dir);
}

/* Closes h, checks that tally_verify_dir passes on dir, removes dir. */
static void close_verify_remove(tally_db *h, const char *dir) {
    CHECK_EQ_INT(tally_db_close(h), 0);
    tally_verify_result vr;
    CHECK_EQ_INT(tally_verify_dir(dir, &vr, NULL, NULL), 0);
    CHECK_EQ_INT(vr.ok, 1);
    rm_rf(dir);
}

/* ---- (g): a write fault while 4 threads commit (group commit) ---- */

#define GT_THREADS 4
#define GT_COMMITS 40

typedef struct gt_arg {
    tally_db *h;
    int id;
    uint64_t tx[GT_COMMITS], a[GT_COMMITS];
    int nacked, first_err, errs_after, acked_after_err;
} gt_arg;

static void *gt_main(void *p) {
    gt_arg *g = p;
    for (int i = 0; i < GT_COMMITS; i++) {
        uint64_t a = 1000 * (uint64_t)(g->id + 1) + (uint64_t)i, tx = 0;
        int rc = do_commit(g->h, a, &tx);
        if (rc == 0) {
            if (g->first_err) g->acked_after_err++;
            g->tx[g->nacked] = tx;
            g->a[g->nacked++] = a;
        } else if (!g->first_err) {
            g->first_err = rc;
        } else if (rc != TALLY_EFATAL) {
            g->errs_after++;
        }
    }
    return NULL;
}

static void group_fault(int64_t nth) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_options o;
    tally_options_init(&o);
    tally_db *h;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    tally_fault_plan plan = {0};
    plan.fail_write_after = nth;
    plan.write_errno = EIO;
    tally_fault_install(&plan);
    static gt_arg g[GT_THREADS];
    pthread_t th[GT_THREADS];
    memset(g, 0, sizeof g);
    for (int t = 0; t < GT_THREADS; t++) {
        g[t].h = h, g[t].id = t;
        pthread_create(&th[t], NULL, gt_main, &g[t]);
    }
    for (int t = 0; t < GT_THREADS; t++) pthread_join(th[t], NULL);
    CHECK_EQ_INT(tally_fault_fired(), 1);
    uint64_t size = 0, max_acked = 0;
    uint8_t root[32];
    CHECK_EQ_INT(tally_state(h, &size, root), 0);
    int nacked = 0;
    for (int t = 0; t < GT_THREADS; t++) {
        CHECK(g[t].first_err == TALLY_EIO || g[t].first_err == TALLY_EFATAL);
        CHECK_EQ_INT(g[t].errs_after, 0);
        CHECK_EQ_INT(g[t].acked_after_err, 0); /* no acknowledgement after a failure */
        for (int i = 0; i < g[t].nacked; i++) {
            if (g[t].tx[i] > max_acked) max_acked = g[t].tx[i];
            nacked++;
        }
    }
    CHECK_EQ_INT(size, (uint64_t)nacked); /* acknowledged = visible, ids 1..n */
    tally_db_close(h);
    tally_fault_remove();
    tally_open_report rep;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, &rep), 0);
    CHECK(rep.tx_count >= max_acked);
    int bad = 0;
    for (int t = 0; t < GT_THREADS; t++)
        for (int i = 0; i < g[t].nacked; i++)
            if (!tx_is(h, g[t].tx[i], g[t].a[i])) bad++;
    CHECK_EQ_INT(bad, 0);
    close_verify_remove(h, dir);
}

/* ---- (f): failure in an explicit checkpoint (tally_db_checkpoint), then close ---- */

static void close_fault(int sync) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_options o;
    tally_options_init(&o);
    tally_db *h;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    uint64_t tx = 0;
    for (uint64_t a = 1; a <= 20; a++) CHECK_EQ_INT(do_commit(h, a, &tx), 0);
    tally_fault_plan plan = {0};
    if (sync) plan.fail_sync_after = 1, plan.sync_errno = EIO;
    else plan.fail_write_after = 1, plan.write_errno = ENOSPC;
    tally_fault_install(&plan);
    int rc = tally_db_checkpoint(h);
    CHECK(rc == TALLY_EIO || rc == TALLY_ENOSPC);
    CHECK_EQ_INT(tally_fault_fired(), 1);
    tally_fault_remove();
    tally_db_close(h);
    tally_open_report rep;
    reopen_and_check(dir, &o, 20, 0, 1, &rep);
    /* close retries the frozen checkpoint (the fault is gone): all or nothing indexed */
    CHECK(rep.replayed_tx == 0 || rep.replayed_tx == 20);
    rm_rf(dir);
}

/* ---- (h): a background checkpoint fails: paused, reported, resumed ---- */

static void background_checkpoint_fault(void) {
    char dir[64];
    new_dir(dir, sizeof dir);
    tally_options o;
    tally_options_init(&o);
    o.checkpoint_entries_min = 100;
    tally_db *h;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, NULL), 0);
    uint64_t a = 1, tx = 0;
    /* commit a holds 1 entry (even a) or 2: after 66 commits the index has 99
    ** versions, so commit 67 freezes the memtable. The checkpoint thread
    ** starts once tx 67 is durable, i.e. after fdatasync #1: #2 is its own. */
    for (; a <= 66; a++) CHECK_EQ_INT(do_commit(h, a, &tx), 0);
    tally_stats st;
    tally_db_stats(h, &st);
    CHECK_EQ_INT(st.checkpoints, 0);
    tally_fault_plan plan = {0};
    plan.fail_sync_after = 2;
    plan.sync_errno = EIO;
    tally_fault_install(&plan);
    CHECK_EQ_INT(do_commit(h, a++, &tx), 0);
    for (int ms = 0; ms < 20000; ms++) { /* bounded wait for the background thread */
        tally_db_stats(h, &st);
        if (st.checkpoint_error) break;
        usleep(1000);
    }
    CHECK_EQ_INT(tally_fault_fired(), 1);
    CHECK_EQ_INT(st.checkpoint_error, TALLY_EIO);
    CHECK(st.checkpoint_message[0] != '\0');
    CHECK_EQ_INT(st.checkpoints, 0);
    /* the log is intact: commits and reads go on */
    for (int i = 0; i < 30; i++, a++) CHECK_EQ_INT(do_commit(h, a, &tx), 0);
    int bad = 0;
    for (uint64_t t = 1; t < a; t++)
        if (!tx_is(h, t, t)) bad++;
    CHECK_EQ_INT(bad, 0);
    tally_fault_remove();
    /* an explicit checkpoint succeeds and resumes the background ones */
    CHECK_EQ_INT(tally_db_checkpoint(h), 0);
    tally_db_stats(h, &st);
    CHECK_EQ_INT(st.checkpoint_error, 0);
    CHECK_EQ_INT(st.checkpoint_message[0], '\0');
    CHECK(st.checkpoints >= 1);
    for (int i = 0; i < 60; i++, a++) CHECK_EQ_INT(do_commit(h, a, &tx), 0);
    for (int ms = 0; ms < 20000; ms++) { /* a background one runs again */
        tally_db_stats(h, &st);
        if (st.checkpoints >= 2) break;
        usleep(1000);
    }
    CHECK(st.checkpoints >= 2);
    CHECK_EQ_INT(st.checkpoint_error, 0);
    CHECK_EQ_INT(tally_db_close(h), 0);
    tally_open_report rep;
    CHECK_EQ_INT(tally_db_open(&h, dir, &o, &rep), 0);
    CHECK_EQ_INT(rep.tx_count, a - 1);
    bad = 0;
    for (uint64_t t = 1; t < a; t++)
        if (!tx_is(h, t, t)) bad++;
    CHECK_EQ_INT(bad, 0);
    close_verify_remove(h, dir);
}

int main(void) {
    const char *lg = getenv("TALLY_LONG");
    int long_run = lg && *lg && strcmp(lg, "0") != 0;
    /* (a) EIO and (b) ENOSPC on pwritev #N, big and 4 KiB segments */
    uint64_t segs[2] = {512ull << 20, 4096};
    for (int s = 0; s < 2; s++)
        for (int64_t n = 1; n <= (long_run ? 12 : 6); n++) {
            write_fault(EIO, n, 0, segs[s], 0);
            write_fault(ENOSPC, n, 0, segs[s], 0);
        }
    printf("write faults: done\n");
    /* (c) fdatasync / fsync #N */
    for (int s = 0; s < 2; s++)
        for (int64_t n = 1; n <= (long_run ? 8 : 4); n++) {
            sync_fault(n, segs[s], 0);
            sync_fault(n, segs[s], 1);
        }
    printf("sync faults: done\n");
    /* (d) torn log write: the next pwritev is the next commit's record */
    write_fault(EIO, 1, 1, segs[0], 1);
    write_fault(EIO, 1, 1, segs[1], 0); /* may hit a segment header instead */
    printf("torn writes: done\n");
    /* (e) power loss */
    tally_options def, small;
    tally_options_init(&def);
    tally_options_init(&small);
    small.checkpoint_entries_min = 50;
    small.segment_bytes_max = 8192;
    power_loss("default/none", &def, 30, 0, J_NONE);
    power_loss("default/zeros", &def, 30, 0, J_ZEROS);
    power_loss("default/random", &def, 30, 0, J_RANDOM);
    power_loss("default/half-record", &def, 30, 0, J_HALF_RECORD);
    power_loss("default/whole-record", &def, 30, 0, J_WHOLE_RECORD);
    power_loss("ckpt+reopen/none", &small, 150, 1, J_NONE);
    power_loss("ckpt+reopen/zeros", &small, 150, 1, J_ZEROS);
    power_loss("ckpt+reopen/half-record", &small, 150, 1, J_HALF_RECORD);
    power_loss("ckpt/whole-record", &small, 150, 0, J_WHOLE_RECORD);
    /* (g) */
    for (int64_t n = 1; n <= 40; n += 13) group_fault(n);
    printf("group-commit faults: done\n");
    /* (f) */
    close_fault(0);
    close_fault(1);
    /* (h) */
    background_checkpoint_fault();
    printf("background checkpoint faults: done\n");
    TEST_END("test_faults");
}
