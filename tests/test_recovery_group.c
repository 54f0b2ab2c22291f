/*
** test_recovery_group.c — recovery tells a torn group commit from damage.
**
** A crash during a group's fdatasync may persist a later record of the group
** but not an earlier one. Such a hole was never acknowledged: recovery must
** truncate it (torn tail). A damaged record that a later record proves was
** synced (its sync_lag) is corruption: open must refuse and name it.
** Durability NONE keeps the synced watermark still, which lets this test write
** records exactly as an unsynced group would be written.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "log/log.h"
#include "log/record.h"
#include "tally.h"
#include "testutil.h"

static void commit_kv(tally_db *db, const char *k, const char *v) {
    tally_entry e = {.key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
    uint64_t tx = 0;
    CHECK_EQ_INT(tally_commit(db, &tx, &e, 1, NULL, 0), 0);
}

/* Builds DIR with txs 1..3 durable and closed, then 4..6 committed with the
** given durability by a child that dies without closing. */
static void build(const char *dir, int durability_4_to_6) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    tally_db *db;
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, NULL), 0);
    commit_kv(db, "a", "1");
    commit_kv(db, "b", "2");
    commit_kv(db, "c", "3");
    CHECK_EQ_INT(tally_db_close(db), 0);
    pid_t pid = fork();
    if (pid == 0) {
        tally_options o;
        tally_options_init(&o);
        o.durability = durability_4_to_6;
        if (tally_db_open(&db, dir, &o, NULL) != 0) _exit(3);
        commit_kv(db, "d", "4");
        commit_kv(db, "e", "5");
        commit_kv(db, "f", "6");
        _exit(tu_failed ? 4 : 0); /* a crash: no close, no checkpoint */
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Offsets of the records in segment 0 (the crashed writer leaves
** preallocated zeros after them); *end = where the last one ends. */
static int record_offsets(const char *dir, long *off, int max, long *end) {
    char path[512];
    snprintf(path, sizeof path, "%s/log/00000000.seg", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t stop = tu_records_end(buf, n);
    int k = 0;
    for (size_t o = LOG_SEG_HDR_LEN; o < stop && k < max; k++) {
        off[k] = (long)o;
        o += RECORD_HDR_LEN + rd32(buf + o + 4);
    }
    *end = (long)stop;
    return k;
}

static void flip(const char *dir, long at) {
    char path[512];
    snprintf(path, sizeof path, "%s/log/00000000.seg", dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

int main(void) {
    char dir[] = "/tmp/tally-group.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    long off[16], end = 0;
    tally_open_report rep;
    tally_db *db;
    tally_version v;

    /* 1. The hole is in an unsynced group: truncated as a torn tail. */
    build(dir, TALLY_SYNC_NONE);
    CHECK_EQ_INT(record_offsets(dir, off, 16, &end), 6);
    flip(dir, off[4] + RECORD_HDR_LEN + 5); /* the body of tx 5; tx 6 is intact */
    struct stat st0;
    char seg[600];
    snprintf(seg, sizeof seg, "%s/log/00000000.seg", dir);
    stat(seg, &st0);
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, &rep), 0);
    CHECK_EQ_INT(rep.tx_count, 4);
    CHECK_EQ_INT(rep.torn_bytes_dropped, end - off[4]); /* not the zeros after the records */
    CHECK(st0.st_size > end);                            /* which the crashed writer preallocated */
    CHECK_EQ_INT(tally_get(db, &v, 0, "d", 1, 0), 0);
    CHECK_EQ_INT(tally_get(db, &v, 0, "e", 1, 0), TALLY_ENOTFOUND);
    uint64_t tx = 0;
    tally_entry e = {.key = "g", .key_len = 1, .value = "7", .value_len = 1};
    CHECK_EQ_INT(tally_commit(db, &tx, &e, 1, NULL, 0), 0);
    CHECK_EQ_INT(tx, 5);
    CHECK_EQ_INT(tally_db_close(db), 0);
    tally_verify_result vr;
    CHECK_EQ_INT(tally_verify_dir(dir, &vr, NULL, NULL), 0);
    CHECK(vr.ok);

    /* 2. Acknowledged (synced) records: damage to tx 5 is corruption, named. */
    build(dir, TALLY_SYNC_FULL);
    CHECK_EQ_INT(record_offsets(dir, off, 16, &end), 6);
    flip(dir, off[4] + RECORD_HDR_LEN + 5);
    stat(seg, &st0);
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, &rep), TALLY_ECORRUPT);
    CHECK(strstr(tally_errmsg(), "tx 5") != NULL);
    struct stat st1;
    stat(seg, &st1);
    CHECK_EQ_INT(st1.st_size, st0.st_size); /* nothing truncated */
    CHECK_EQ_INT(tally_verify_dir(dir, &vr, NULL, NULL), 0);
    CHECK(!vr.ok);
    CHECK_EQ_INT(vr.first_bad_tx, 5);

    /* 3. A damaged header (length field) in the synced part is corruption too. */
    build(dir, TALLY_SYNC_FULL);
    record_offsets(dir, off, 16, &end);
    flip(dir, off[3] + 5); /* body_len of tx 4 */
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, &rep), TALLY_ECORRUPT);
    CHECK(strstr(tally_errmsg(), "tx 4") != NULL);

    /* 4. The last record complete but damaged, nothing after it: the tx index
    ** item (written only after its fdatasync) proves it was acknowledged, so
    ** this is corruption ... */
    build(dir, TALLY_SYNC_FULL);
    record_offsets(dir, off, 16, &end);
    flip(dir, off[5] + RECORD_HDR_LEN + 3);
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, &rep), TALLY_ECORRUPT);
    CHECK(strstr(tally_errmsg(), "tx 6") != NULL);
    /* ... and without that evidence (the item never reached the disk) it is a torn write. */
    char txi[600];
    snprintf(txi, sizeof txi, "%s/txindex", dir);
    CHECK(truncate(txi, 5 * 16) == 0);
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, &rep), 0);
    CHECK_EQ_INT(rep.tx_count, 5);
    CHECK(rep.torn_bytes_dropped > 0);
    tally_db_close(db);
    /* 5. The last record cut short is always a torn write. */
    build(dir, TALLY_SYNC_FULL);
    record_offsets(dir, off, 16, &end);
    CHECK(truncate(seg, off[5] + RECORD_HDR_LEN + 2) == 0); /* its tx header's kind and tx id byte */
    CHECK_EQ_INT(tally_db_open(&db, dir, NULL, &rep), 0);
    CHECK_EQ_INT(rep.tx_count, 5);
    CHECK_EQ_INT(rep.torn_bytes_dropped, RECORD_HDR_LEN + 2);
    tally_db_close(db);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    TEST_END("test_recovery_group");
}
