/*
** test_spare_run.c — the spare run (docs/FORMAT.md section 1, src/core/checkpoint.c).
**
** A running writer keeps its previous index run as index/spare.idx and the
** next checkpoint writes over it (its cached pages are reused instead of new
** ones being allocated). What must hold, through the public API and the
** files alone:
**   1. after a second checkpoint there is exactly one run (the one INDEX
**      names) and the spare; every key reads back;
**   2. a spare longer than the next run (here: 8 MiB of 0xFF planted in its
**      place) is written over and cut to the run's exact length: the
**      reopened ledger's run passes its checksum, every key and revision
**      reads back and `verify` is clean;
**   3. a clean close leaves neither a spare nor a temp file;
**   4. a spare left by a crashed writer (garbage) is deleted on open and
**      changes nothing.
*/
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tally.h"
#include "testutil.h"

#define TX_ENTRIES 500

static char g_dir[4096];

static void key_of(char *k, size_t cap, int i) { snprintf(k, cap, "acct:%06d", i); }

/* Commits keys [from, to) with value "v<round>-<i>", TX_ENTRIES per tx. */
static int put_range(tally_db *db, int from, int to, int round) {
    static char keys[TX_ENTRIES][32], vals[TX_ENTRIES][32];
    tally_entry e[TX_ENTRIES];
    for (int at = from; at < to;) {
        int n = 0;
        for (; n < TX_ENTRIES && at < to; n++, at++) {
            key_of(keys[n], sizeof keys[n], at);
            snprintf(vals[n], sizeof vals[n], "v%d-%d", round, at);
            e[n] = (tally_entry){.ns = TALLY_NS_KV, .key = keys[n], .key_len = strlen(keys[n]),
                                 .value = vals[n], .value_len = strlen(vals[n])};
        }
        uint64_t tx;
        if (tally_commit(db, &tx, e, (size_t)n, NULL, 0) != 0) return -1;
    }
    return 0;
}

/* Keys [0, n) read back with the value of the round that last wrote them. */
static size_t bad_reads(tally_db *db, int n, int split, int round_lo, int round_hi) {
    size_t bad = 0;
    for (int i = 0; i < n; i++) {
        char k[32], want[32];
        key_of(k, sizeof k, i);
        snprintf(want, sizeof want, "v%d-%d", i < split ? round_hi : round_lo, i);
        tally_version v;
        bad += tally_get(db, &v, TALLY_NS_KV, k, strlen(k), 0) != 0 || v.value_len != strlen(want) ||
               memcmp(v.value, want, v.value_len) != 0;
    }
    return bad;
}

static int exists(const char *rel) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    return stat(p, &st) == 0;
}

/* Files in index/: runs, spares, temp files. */
static void count_index(int *runs, int *spares, int *tmps) {
    char p[4200];
    snprintf(p, sizeof p, "%s/index", g_dir);
    *runs = *spares = *tmps = 0;
    DIR *d = opendir(p);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (!strcmp(de->d_name, "spare.idx")) (*spares)++;
        else if (n > 4 && !strcmp(de->d_name + n - 4, ".tmp")) (*tmps)++;
        else if (!strncmp(de->d_name, "run-", 4)) (*runs)++;
    }
    closedir(d);
}

static void plant_spare(size_t bytes) {
    char p[4200];
    snprintf(p, sizeof p, "%s/index/spare.idx", g_dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd < 0) return;
    static uint8_t junk[1 << 16];
    memset(junk, 0xFF, sizeof junk);
    for (size_t done = 0; done < bytes; done += sizeof junk) CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close(fd);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tally-spare-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    tally_options o;
    tally_options_init(&o);
    o.checkpoint_entries_min = 1u << 30; /* only explicit checkpoints */
    tally_db *db;
    int runs, spares, tmps;

    /* 1. two checkpoints: one run, one spare */
    CHECK_EQ_INT(tally_db_open(&db, g_dir, &o, NULL), 0);
    CHECK_EQ_INT(put_range(db, 0, 3000, 1), 0);
    CHECK_EQ_INT(tally_db_checkpoint(db), 0);
    CHECK(!exists("index/spare.idx")); /* no previous run yet */
    CHECK_EQ_INT(put_range(db, 0, 4000, 2), 0);
    CHECK_EQ_INT(tally_db_checkpoint(db), 0);
    count_index(&runs, &spares, &tmps);
    CHECK_EQ_INT(runs, 1);
    CHECK_EQ_INT(spares, 1);
    CHECK_EQ_INT(tmps, 0);
    CHECK_EQ_INT(bad_reads(db, 4000, 4000, 1, 2), 0);

    /* 2. a longer spare (garbage) is written over and cut to length */
    plant_spare(8u << 20);
    CHECK_EQ_INT(put_range(db, 0, 2000, 3), 0);
    CHECK_EQ_INT(tally_db_checkpoint(db), 0);
    count_index(&runs, &spares, &tmps);
    CHECK_EQ_INT(runs, 1);
    CHECK_EQ_INT(spares, 1);
    CHECK_EQ_INT(bad_reads(db, 4000, 2000, 2, 3), 0);
    tally_version v;
    CHECK_EQ_INT(tally_get(db, &v, TALLY_NS_KV, "acct:000007", 11, 0), 0);
    CHECK_EQ_INT(v.rev, 3);

    /* 3. a clean close leaves neither a spare nor a temp file */
    CHECK_EQ_INT(tally_db_close(db), 0);
    count_index(&runs, &spares, &tmps);
    CHECK_EQ_INT(runs, 1);
    CHECK_EQ_INT(spares, 0);
    CHECK_EQ_INT(tmps, 0);
    tally_verify_result vr;
    CHECK_EQ_INT(tally_verify_dir(g_dir, &vr, NULL, NULL), 0);
    CHECK(vr.ok);

    /* 4. a crashed writer's spare is deleted on open and changes nothing */
    plant_spare(1u << 20);
    tally_open_report rep;
    CHECK_EQ_INT(tally_db_open(&db, g_dir, &o, &rep), 0);
    CHECK_EQ_INT(rep.replayed_tx, 0);
    CHECK(!exists("index/spare.idx"));
    CHECK_EQ_INT(bad_reads(db, 4000, 2000, 2, 3), 0);
    CHECK_EQ_INT(tally_db_close(db), 0);
    CHECK_EQ_INT(tally_verify_dir(g_dir, &vr, NULL, NULL), 0);
    CHECK(vr.ok);

    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) { /* best effort */ }
    TEST_END("test_spare_run");
}
