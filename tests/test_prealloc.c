/*
** test_prealloc.c — the log's preallocated zeros (src/log/log.c) are never
** data, never a torn tail, and never outlive a segment or a clean close.
**
**  1. A writer that dies (fork, _exit without close) leaves its last segment
**     longer than its records, the rest zeros; reopening finds every
**     acknowledged tx, reports no torn bytes, and keeps the zeros for reuse.
**  2. Segments rolled by a writer (segment_bytes_max 2 MiB, small commits)
**     end exactly at their last record, crashed or not: only the last one
**     carries zeros (log.h invariant 5).
**  3. A clean close trims the last segment to its records.
**  4. A record replaced by zeros up to the end of the file while the tx
**     index says it was synced is corruption, refused and named — zeros
**     are the end of the log only when nothing vouches for more.
**  5. Non-zero bytes far out in the zeros are a torn tail: reported (up to
**     the last non-zero byte) and truncated; the txs before them stay.
**  6. A failing zero write (ENOSPC through the fault layer) does not fail
**     the handle: commits go on, and everything reopens and verifies.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "os/io.h"
#include "tally.h"
#include "testutil.h"

static char g_tmp[64];

static void commit_n(tally_db *db, unsigned from, unsigned to) {
    for (unsigned i = from; i <= to; i++) {
        char k[32], v[64];
        snprintf(k, sizeof k, "key-%05u", i);
        snprintf(v, sizeof v, "value of %u, with some padding to make it longer", i);
        tally_entry e = {.key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
        uint64_t tx = 0;
        CHECK_EQ_INT(tally_commit(db, &tx, &e, 1, NULL, 0), 0);
        CHECK_EQ_INT(tx, i);
    }
}

/* Opens dir, commits txs from..to one by one, dies without closing. */
static void crash_commit(const char *dir, const tally_options *o, unsigned from, unsigned to) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        tally_db *db;
        if (tally_db_open(&db, dir, o, NULL) != 0) _exit(3);
        commit_n(db, from, to);
        _exit(tu_failed ? 4 : 0);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static uint8_t *slurp(const char *path, size_t *len) {
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) return NULL;
    uint8_t *b = malloc((size_t)st.st_size + 1);
    if (b && pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
        free(b);
        b = NULL;
    }
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static int nsegments(const char *dir) {
    int n = 0;
    char p[256];
    for (;; n++) {
        snprintf(p, sizeof p, "%s/log/%08d.seg", dir, n);
        if (access(p, F_OK) != 0) return n;
    }
}

/* Checks segment s of dir: *len = file length, returns where its records end;
** everything after them must be zeros. */
static size_t seg_check(const char *dir, int s, size_t *len) {
    char p[256];
    snprintf(p, sizeof p, "%s/log/%08d.seg", dir, s);
    uint8_t *b = slurp(p, len);
    CHECK(b != NULL);
    if (!b) return 0;
    size_t end = tu_records_end(b, *len);
    CHECK_EQ_INT(tu_nonzero_end(b, end, *len), end);
    free(b);
    return end;
}

/* Reopens dir: tx_count and torn bytes as expected, every key readable. */
static void reopen_check(const char *dir, const tally_options *o, unsigned ntx, uint64_t torn) {
    tally_db *db = NULL;
    tally_open_report rep;
    int rc = tally_db_open(&db, dir, o, &rep);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "open %s: %s\n", dir, tally_errmsg());
        return;
    }
    CHECK_EQ_INT(rep.tx_count, ntx);
    CHECK_EQ_INT(rep.torn_bytes_dropped, torn);
    unsigned bad = 0;
    for (unsigned i = 1; i <= ntx; i++) {
        char k[32];
        snprintf(k, sizeof k, "key-%05u", i);
        tally_version v;
        if (tally_get(db, &v, TALLY_NS_KV, k, strlen(k), 0) != 0 || v.tx != i) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(tally_db_close(db), 0);
    tally_verify_result vr;
    CHECK_EQ_INT(tally_verify_dir(dir, &vr, NULL, NULL), 0);
    CHECK(vr.ok);
    if (!vr.ok) fprintf(stderr, "verify %s: %s\n", dir, vr.error);
}

static void rm_dir(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tally-prealloc-XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/a", g_tmp);
    tally_options o;
    tally_options_init(&o);
    size_t len = 0, end = 0;

    /* 1. a crashed writer's zeros */
    crash_commit(dir, &o, 1, 50);
    CHECK_EQ_INT(nsegments(dir), 1);
    end = seg_check(dir, 0, &len);
    CHECK(len >= end + (16u << 10)); /* at least a quarter of the first 64 KiB extension */
    printf("crashed writer: records end at %zu, file %zu bytes\n", end, len);
    reopen_check(dir, &o, 50, 0);
    /* 3. the clean close of reopen_check trimmed them */
    size_t len2 = 0, end2 = seg_check(dir, 0, &len2);
    CHECK_EQ_INT(end2, end);  /* the same records ... */
    CHECK_EQ_INT(len2, end2); /* ... and the file ends with them */
    /* and once more through a crash after a reopen: the zeros come back */
    crash_commit(dir, &o, 51, 60);
    end = seg_check(dir, 0, &len);
    CHECK(len > end);
    reopen_check(dir, &o, 60, 0);

    /* 4. zeros where a synced record was: corruption */
    crash_commit(dir, &o, 61, 62);
    {
        char p[256];
        snprintf(p, sizeof p, "%s/log/00000000.seg", dir);
        uint8_t *b = slurp(p, &len);
        CHECK(b != NULL);
        end = tu_records_end(b, len);
        /* find the start of the last record (tx 62) */
        size_t off = 32, last = 0;
        while (off < end) {
            last = off;
            off += 32 + ((size_t)b[off + 4] | (size_t)b[off + 5] << 8 | (size_t)b[off + 6] << 16);
        }
        free(b);
        int fd = open(p, O_WRONLY);
        static const uint8_t z[4096];
        CHECK(fd >= 0 && pwrite(fd, z, end - last, (off_t)last) == (ssize_t)(end - last));
        close(fd);
        tally_db *db = NULL;
        CHECK_EQ_INT(tally_db_open(&db, dir, &o, NULL), TALLY_ECORRUPT);
        CHECK(strstr(tally_errmsg(), "tx 62") != NULL && strstr(tally_errmsg(), "zero") != NULL);
        printf("zeroed synced record: %s\n", tally_errmsg());
        /* without the tx index's word for it, it is the end of the log */
        char txi[256];
        snprintf(txi, sizeof txi, "%s/txindex", dir);
        CHECK(truncate(txi, 61 * 16) == 0);
        reopen_check(dir, &o, 61, 0);
    }

    /* 5. a stray non-zero byte out in the zeros: a torn tail */
    crash_commit(dir, &o, 62, 70);
    end = seg_check(dir, 0, &len);
    {
        char p[256];
        snprintf(p, sizeof p, "%s/log/00000000.seg", dir);
        int fd = open(p, O_WRONLY);
        uint8_t one = 0x5a;
        CHECK(len >= end + 10001); /* the byte lands inside the preallocated zeros */
        CHECK(fd >= 0 && pwrite(fd, &one, 1, (off_t)(end + 10000)) == 1);
        close(fd);
        reopen_check(dir, &o, 70, 10001);
        size_t len3 = 0;
        CHECK_EQ_INT(seg_check(dir, 0, &len3), len3); /* truncated, then trimmed at close */
    }
    rm_dir(dir);

    /* 2. rolled segments end at their records */
    tally_options small = o;
    small.segment_bytes_max = 2u << 20;
    small.durability = TALLY_SYNC_NONE; /* 30,000 one-record groups without 30,000 fdatasyncs */
    crash_commit(dir, &small, 1, 30000);
    int n = nsegments(dir);
    CHECK(n >= 3);
    for (int s = 0; s < n; s++) {
        end = seg_check(dir, s, &len);
        if (s + 1 < n) CHECK_EQ_INT(len, end);
        if (s + 1 < n && len != end) fprintf(stderr, "segment %d: %zu bytes, records end at %zu\n", s, len, end);
    }
    printf("rolled: %d segments, the last %zu bytes with records to %zu\n", n, len, end);
    reopen_check(dir, &small, 30000, 0);
    for (int s = 0; s < n; s++) {
        end = seg_check(dir, s, &len);
        CHECK_EQ_INT(len, end);
    }
    rm_dir(dir);

    /* 6. a failing zero write is not a failure */
    int tolerated = 0;
    for (int nth = 1; nth <= 8; nth++) {
        tally_db *db = NULL;
        CHECK_EQ_INT(tally_db_open(&db, dir, &o, NULL), 0);
        tally_fault_plan plan = {0};
        plan.fail_write_after = nth;
        plan.write_errno = ENOSPC;
        tally_fault_install(&plan);
        unsigned ok = 0;
        for (unsigned i = 1; i <= 20; i++) {
            char k[32], v[64];
            snprintf(k, sizeof k, "key-%05u", i);
            snprintf(v, sizeof v, "value %u", i);
            tally_entry e = {.key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
            uint64_t tx = 0;
            if (tally_commit(db, &tx, &e, 1, NULL, 0) != 0) break;
            ok++;
        }
        int fired = (int)tally_fault_fired();
        tally_fault_remove();
        CHECK_EQ_INT(fired, 1);
        tally_db_close(db);
        if (ok == 20) { /* the failed write was a zero write */
            tolerated++;
            reopen_check(dir, &o, 20, 0);
        }
        rm_dir(dir);
    }
    CHECK(tolerated >= 1);
    printf("ENOSPC on each of the first 8 writes: %d were zero writes, ignored\n", tolerated);
    rm_dir(g_tmp);
    TEST_END("test_prealloc");
}
