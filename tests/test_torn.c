/*
** test_torn.c — crash recovery of a torn log tail, and refusal of damage in
** the middle of the log.
**
** Ledger B ("crash ledger"): txs 1..7 committed and closed cleanly (index
** checkpoint at tx 7), then txs 8..10 committed in a forked child that
** _exit()s without tally_db_close (the log is synced per commit; the
** checkpoint stays at tx 7). So the last 3 records are not covered by the
** derived files and a cut anywhere inside them is a torn tail.
**
**  1. For every byte offset inside the last 3 records (and the file end):
**     truncate the segment there (a torn write) in a fresh copy, reopen.
**  2. Same offsets: overwrite from the offset to the end with zeros (file
**     extended but not written).
**     Both must: open OK; tx_count == whole records kept; torn_bytes_dropped
**     == bytes beyond the last whole record, not counting the zeros that
**     end the file (preallocated space, kept unless a torn record precedes
**     them: the crashed writer leaves ~1 MiB of them); every kept tx's entries and
**     every key's latest value correct; dropped txs/keys absent (ERANGE /
**     ENOTFOUND); tally_state == (kept, reference root at kept); a new
**     commit gets id kept+1; close OK; tally_verify_dir ok.
**     (The commit/close/verify part costs fsyncs; in the default mode it is
**     run at record boundaries +-2 bytes and every 5th offset, TALLY_LONG=1
**     runs it for every offset.)
**  3. Ledger M: 10 txs and no checkpoint at all (child crash). Flip every
**     byte of record 5: open must fail with TALLY_ECORRUPT, tally_errmsg()
**     naming tx 5, and must not modify any file (LOCK excepted: it holds the
**     opener's pid). The same for every byte of record 9 of ledger B (above
**     its checkpoint) -> names tx 9.
*/
#include "tally.h"
#include "os/io.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTX 10
#define NCLEAN 7
#define MAXE 3
/* Default mode samples offsets (sampled() below) to stay fast under ASan;
** TALLY_LONG=1 tries every offset and runs the full check at each. */
#define SAMPLE_STRIDE 13
#define FULL_EVERY 3 /* default mode: commit+close+verify at every 3rd sampled offset */

/* ------------------------------------------------------------ file helpers */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int rc = len && fwrite(b, 1, len, f) != len ? -1 : 0;
    return fclose(f) || rc ? -1 : 0;
}

/* Recursive copy of a ledger directory (regular files and directories). */
static int copy_dir(const char *src, const char *dst) {
    if (mkdir(dst, 0755) != 0 && errno != EEXIST) return -1;
    DIR *d = opendir(src);
    if (!d) return -1;
    int rc = 0;
    for (struct dirent *de; rc == 0 && (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char s[4096], t[4096];
        snprintf(s, sizeof s, "%s/%s", src, de->d_name);
        snprintf(t, sizeof t, "%s/%s", dst, de->d_name);
        struct stat st;
        if (lstat(s, &st) != 0) { rc = -1; break; }
        if (S_ISDIR(st.st_mode)) rc = copy_dir(s, t);
        else if (S_ISREG(st.st_mode)) {
            size_t n;
            uint8_t *b = slurp(s, &n);
            rc = b ? spit(t, b, n) : -1;
            free(b);
        }
    }
    closedir(d);
    return rc;
}

/* Snapshot of every regular file under dir (LOCK excluded), for comparing. */
typedef struct snapfile {
    char rel[256];
    uint8_t *b;
    size_t n;
} snapfile;
typedef struct snap {
    snapfile f[64];
    int n;
} snap;

static void snap_take_rel(snap *s, const char *root, const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(p);
    if (!d) return;
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char r2[256], p2[4096];
        snprintf(r2, sizeof r2, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        snprintf(p2, sizeof p2, "%s/%s", root, r2);
        struct stat st;
        if (lstat(p2, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) snap_take_rel(s, root, r2);
        else if (S_ISREG(st.st_mode) && strcmp(r2, "LOCK") != 0 && s->n < 64) {
            snapfile *f = &s->f[s->n++];
            snprintf(f->rel, sizeof f->rel, "%s", r2);
            f->b = slurp(p2, &f->n);
        }
    }
    closedir(d);
}
static void snap_take(snap *s, const char *root) {
    s->n = 0;
    snap_take_rel(s, root, "");
}
static void snap_free(snap *s) {
    for (int i = 0; i < s->n; i++) free(s->f[i].b);
    s->n = 0;
}
/* Returns NULL if equal, else the name of the first differing file. */
static const char *snap_diff(const snap *a, const snap *b) {
    static char why[300];
    for (int i = 0; i < a->n; i++) {
        int j = 0;
        while (j < b->n && strcmp(a->f[i].rel, b->f[j].rel)) j++;
        if (j == b->n) {
            snprintf(why, sizeof why, "%s removed", a->f[i].rel);
            return why;
        }
        if (a->f[i].n != b->f[j].n || (a->f[i].n && memcmp(a->f[i].b, b->f[j].b, a->f[i].n))) {
            snprintf(why, sizeof why, "%s changed (%zu -> %zu bytes)", a->f[i].rel, a->f[i].n, b->f[j].n);
            return why;
        }
    }
    if (b->n != a->n) {
        snprintf(why, sizeof why, "files added");
        return why;
    }
    return NULL;
}

/* The trials run thousands of open/commit/close cycles on throw-away copies;
** their fsyncs would dominate the runtime and test nothing here (every byte
** is read back from the page cache), so they go through a no-sync io table.
** The ledgers the trials copy are built with the real POSIX calls. */
static int nosync(int fd) { (void)fd; return 0; }
static tally_io_ops g_nosync_ops;
static void io_nosync(int on) {
    if (on) {
        g_nosync_ops = tally_io_posix;
        g_nosync_ops.fdatasync = nosync;
        g_nosync_ops.fsync = nosync;
        tally_io_set(&g_nosync_ops);
    } else {
        tally_io_set(NULL);
    }
}

/* ------------------------------------------------------------ ledger data */

static unsigned nent(unsigned t) { return 1 + (t * 2) % 3; } /* 1..3 entries */

/* Key of entry i of tx t: unique per tx, except the last entry of even txs
** with >= 2 entries, which rewrites the shared key "shared". */
static int is_shared(unsigned t, unsigned i) { return t % 2 == 0 && nent(t) >= 2 && i == nent(t) - 1; }
static size_t key_for(unsigned t, unsigned i, char *buf) {
    if (is_shared(t, i)) return (size_t)sprintf(buf, "shared");
    return (size_t)sprintf(buf, "k%02u-%u%.*s", t, i, (int)((t * 5 + i * 11) % 17), "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
}
/* Value: varied length (5..200), no zero byte, ends with a non-zero byte. */
static size_t val_for(unsigned t, unsigned i, uint8_t *buf) {
    size_t n = 5 + (t * 37 + i * 53) % 196;
    for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)('!' + (t * 7 + i * 3 + j * 13) % 90);
    return n;
}

static int commit_tx(tally_db *db, unsigned t, uint64_t *out) {
    tally_entry e[MAXE];
    char keys[MAXE][64];
    uint8_t vals[MAXE][256];
    memset(e, 0, sizeof e);
    for (unsigned i = 0; i < nent(t); i++) {
        e[i].ns = TALLY_NS_KV;
        e[i].key = keys[i];
        e[i].key_len = key_for(t, i, keys[i]);
        e[i].value = vals[i];
        e[i].value_len = val_for(t, i, vals[i]);
    }
    char meta[32];
    int ml = sprintf(meta, "tx-meta-%u", t);
    return tally_commit(db, out, e, nent(t), meta, t % 3 == 0 ? (size_t)ml : 0);
}

static tally_options ledger_opts(void) {
    tally_options o;
    tally_options_init(&o);
    o.checkpoint_entries_min = 1ull << 40; /* no background checkpoint */
    return o;
}

/* Commits txs from..to in a forked child that exits without closing. */
static int crash_commit(const char *dir, unsigned from, unsigned to) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        tally_options o = ledger_opts();
        tally_db *db;
        if (tally_db_open(&db, dir, &o, NULL) != 0) _exit(3);
        for (unsigned t = from; t <= to; t++) {
            uint64_t id = 0;
            if (commit_tx(db, t, &id) != 0 || id != t) _exit(4);
        }
        _exit(0); /* no tally_db_close: a crash */
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

/* Record boundaries of segment 0: start[t] for t = 1..NTX, start[NTX+1] = end. */
static int parse_segment(const uint8_t *seg, size_t n, size_t start[NTX + 2]) {
    size_t off = 32;
    for (unsigned t = 1; t <= NTX; t++) {
        if (off + 32 > n) return -1;
        uint32_t body;
        uint64_t id;
        memcpy(&body, seg + off + 4, 4);
        memcpy(&id, seg + off + 8, 8);
        if (id != t) return -1;
        start[t] = off;
        off += 32 + (size_t)body;
    }
    start[NTX + 1] = off;
    return tu_nonzero_end(seg, off, n) == off ? 0 : -1; /* then only preallocated zeros */
}

/* ------------------------------------------------------------ the checks */

static uint8_t ref_root[NTX + 2][TALLY_HASH_LEN];
static char g_tmp[4096];
static unsigned long g_open_fail, g_full_runs;

/* Latest tx <= kept that wrote "shared" (0 if none). */
static unsigned shared_latest(unsigned kept) {
    for (unsigned t = kept; t >= 1; t--)
        for (unsigned i = 0; i < nent(t); i++)
            if (is_shared(t, i)) return t;
    return 0;
}

/* The ledger holds the original txs 1..kept, then (extra = 1) tx kept+1 =
** the content commit_tx() gives tx NTX+1. */
static void check_ledger_contents(tally_db *db, unsigned kept, unsigned extra) {
    if (extra) {
        tally_tx_info ti;
        int rc = tally_tx_get(db, &ti, kept + 1);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0) CHECK_EQ_INT(ti.entry_count, nent(NTX + 1));
        for (unsigned i = 0; rc == 0 && i < nent(NTX + 1); i++) {
            char k[64];
            uint8_t v[256];
            size_t kl = key_for(NTX + 1, i, k), vl = val_for(NTX + 1, i, v);
            tally_entry_view ev;
            CHECK_EQ_INT(tally_tx_entry(db, &ev, kept + 1, i), 0);
            CHECK(ev.key_len == kl && memcmp(ev.key, k, kl) == 0);
            CHECK(ev.value_len == vl && memcmp(ev.value, v, vl) == 0);
            tally_version ver;
            CHECK_EQ_INT(tally_get(db, &ver, TALLY_NS_KV, k, kl, 0), 0);
            CHECK_EQ_INT(ver.tx, kept + 1);
        }
        tally_tx_info t2;
        CHECK_EQ_INT(tally_tx_get(db, &t2, kept + 2), TALLY_ERANGE);
        uint64_t size = 0;
        uint8_t root[TALLY_HASH_LEN];
        CHECK_EQ_INT(tally_state(db, &size, root), 0);
        CHECK_EQ_INT(size, kept + 1);
        uint8_t r0[TALLY_HASH_LEN];
        CHECK_EQ_INT(tally_root_at(db, r0, kept), 0);
        CHECK(memcmp(r0, ref_root[kept], TALLY_HASH_LEN) == 0);
    }
    for (unsigned t = 1; t <= NTX; t++) {
        tally_tx_info ti;
        int rc = tally_tx_get(db, &ti, t);
        if (t == kept + 1 && extra) {
            /* checked above */
        } else if (t > kept) {
            CHECK_EQ_INT(rc, TALLY_ERANGE);
        } else {
            CHECK_EQ_INT(rc, 0);
            if (rc == 0) {
                CHECK_EQ_INT(ti.tx, t);
                CHECK_EQ_INT(ti.entry_count, nent(t));
            }
        }
        for (unsigned i = 0; i < nent(t); i++) {
            char k[64];
            uint8_t v[256];
            size_t kl = key_for(t, i, k), vl = val_for(t, i, v);
            if (t <= kept) {
                tally_entry_view ev;
                rc = tally_tx_entry(db, &ev, t, i);
                CHECK_EQ_INT(rc, 0);
                if (rc == 0) {
                    CHECK(ev.key_len == kl && memcmp(ev.key, k, kl) == 0);
                    CHECK(ev.value_len == vl && memcmp(ev.value, v, vl) == 0);
                }
            }
            if (is_shared(t, i)) continue;
            tally_version ver;
            rc = tally_get(db, &ver, TALLY_NS_KV, k, kl, 0);
            if (t <= kept) {
                CHECK_EQ_INT(rc, 0);
                if (rc == 0) {
                    CHECK_EQ_INT(ver.tx, t);
                    CHECK(ver.value_len == vl && memcmp(ver.value, v, vl) == 0);
                }
            } else {
                CHECK_EQ_INT(rc, TALLY_ENOTFOUND);
            }
        }
        if (t > kept + extra) {
            tally_entry_view ev;
            CHECK_EQ_INT(tally_tx_entry(db, &ev, t, 0), TALLY_ERANGE);
        }
    }
    if (extra) return; /* shared and state: checked above / by the caller */
    unsigned st = shared_latest(kept);
    tally_version ver;
    int rc = tally_get(db, &ver, TALLY_NS_KV, "shared", 6, 0);
    if (st == 0) {
        CHECK_EQ_INT(rc, TALLY_ENOTFOUND);
    } else {
        CHECK_EQ_INT(rc, 0);
        if (rc == 0) {
            uint8_t v[256];
            size_t vl = val_for(st, nent(st) - 1, v);
            CHECK_EQ_INT(ver.tx, st);
            CHECK(ver.value_len == vl && memcmp(ver.value, v, vl) == 0);
        }
    }
    uint64_t size = 0;
    uint8_t root[TALLY_HASH_LEN];
    CHECK_EQ_INT(tally_state(db, &size, root), 0);
    CHECK_EQ_INT(size, kept);
    CHECK(memcmp(root, ref_root[kept], TALLY_HASH_LEN) == 0);
}

/* Opens a damaged copy and checks the recovery. */
static void check_recovered(const char *dir, unsigned kept, uint64_t torn, size_t seg_len_after, int full,
                            const char *what, size_t off) {
    tally_options o = ledger_opts();
    tally_db *db = NULL;
    tally_open_report rep;
    unsigned long before = tu_failed;
    int rc = tally_db_open(&db, dir, &o, &rep);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        g_open_fail++;
        fprintf(stderr, "  %s at offset %zu: open failed: %s\n", what, off, tally_errmsg());
        return;
    }
    CHECK_EQ_INT(rep.tx_count, kept);
    CHECK_EQ_INT(rep.torn_bytes_dropped, torn);
    CHECK_EQ_INT(rep.replayed_tx, kept - NCLEAN);
    char seg[4096];
    snprintf(seg, sizeof seg, "%s/log/00000000.seg", dir);
    struct stat st;
    CHECK(stat(seg, &st) == 0 && (size_t)st.st_size == seg_len_after);
    check_ledger_contents(db, kept, 0);
    if (full) {
        g_full_runs++;
        uint64_t id = 0;
        rc = commit_tx(db, NTX + 1, &id); /* its keys are new: k11-* */
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(id, kept + 1);
        uint64_t size = 0;
        uint8_t root[TALLY_HASH_LEN];
        CHECK_EQ_INT(tally_state(db, &size, root), 0);
        CHECK_EQ_INT(size, kept + 1);
        CHECK_EQ_INT(tally_db_checkpoint(db), 0);
        rc = tally_db_close(db);
        CHECK_EQ_INT(rc, 0);
        tally_verify_result vr;
        rc = tally_verify_dir(dir, &vr, NULL, NULL);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(vr.ok, 1);
        CHECK_EQ_INT(vr.tx_checked, kept + 1);
        if (!vr.ok) fprintf(stderr, "  verify: %s\n", vr.error);
        /* and it opens again with nothing to recover */
        rc = tally_db_open(&db, dir, &o, &rep);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0) {
            CHECK_EQ_INT(rep.tx_count, kept + 1);
            CHECK_EQ_INT(rep.torn_bytes_dropped, 0);
            check_ledger_contents(db, kept, 1);
            tally_db_close(db);
        }
    } else {
        CHECK_EQ_INT(tally_db_close(db), 0);
    }
    if (tu_failed != before) fprintf(stderr, "  ^ %s at offset %zu (kept %u, torn %llu)\n", what, off, kept,
                                     (unsigned long long)torn);
}

/* Default-mode choice of a byte offset `rel` into a record of `len` bytes:
** the header bytes around every field boundary, the first body bytes, the
** last two bytes, and every SAMPLE_STRIDE-th byte. */
static int sampled(size_t rel, size_t len) {
    static const size_t pick[] = {0, 1, 2, 3, 4, 5, 8, 12, 16, 20, 24, 27, 28, 31, 32, 33, 34};
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++)
        if (rel == pick[i]) return 1;
    return rel + 2 >= len || rel % SAMPLE_STRIDE == 0;
}

/* Record containing offset off (1..NTX), or NTX+1 at/after the end. */
static unsigned rec_of(size_t off, const size_t start[NTX + 2]) {
    unsigned r = 1;
    while (r <= NTX && start[r + 1] <= off) r++;
    return r;
}

static int is_long(void) {
    const char *l = getenv("TALLY_LONG");
    return l && *l && strcmp(l, "0") != 0;
}

/* Flip every byte of record `rec` of ledger `base`: open must refuse. */
static void middle_damage(const char *base, unsigned rec, const size_t start[NTX + 2], const char *label,
                          int longmode) {
    char work[4096], seg[4096], want[32];
    snprintf(work, sizeof work, "%s/mid", g_tmp);
    snprintf(want, sizeof want, "tx %u", rec);
    unsigned long tried = 0, refused = 0, named = 0, log_changed = 0, derived_changed = 0;
    const char *first_derived = NULL;
    static char derived_why[300];
    tally_options o = ledger_opts();
    for (size_t off = start[rec]; off < start[rec + 1]; off++) {
        if (!longmode && !sampled(off - start[rec], start[rec + 1] - start[rec])) continue;
        rm_rf(work);
        CHECK(copy_dir(base, work) == 0);
        snprintf(seg, sizeof seg, "%s/log/00000000.seg", work);
        size_t n;
        uint8_t *b = slurp(seg, &n);
        CHECK(b != NULL && off < n);
        if (!b) return;
        b[off] ^= (off & 1) ? 0x80 : 0x01;
        CHECK(spit(seg, b, n) == 0);
        free(b);
        snap before, after;
        snap_take(&before, work);
        tally_db *db = NULL;
        int rc = tally_db_open(&db, work, &o, NULL);
        const char *msg = tally_errmsg();
        char msgcopy[512];
        snprintf(msgcopy, sizeof msgcopy, "%s", msg);
        tried++;
        CHECK_EQ_INT(rc, TALLY_ECORRUPT);
        if (rc == 0) tally_db_close(db);
        if (rc == TALLY_ECORRUPT) refused++;
        const char *p = strstr(msgcopy, want);
        int ok_name = p && !(p[strlen(want)] >= '0' && p[strlen(want)] <= '9');
        CHECK(ok_name);
        if (ok_name) named++;
        else fprintf(stderr, "  %s: byte %zu of record %u: message \"%s\" does not name %s\n", label,
                     off - start[rec], rec, msgcopy, want);
        snap_take(&after, work);
        const char *d = snap_diff(&before, &after);
        if (d && strncmp(d, "log/", 4) == 0) {
            log_changed++;
            fprintf(stderr, "  %s: failed open changed the log: %s\n", label, d);
        } else if (d) {
            if (!first_derived) {
                snprintf(derived_why, sizeof derived_why, "%s", d);
                first_derived = derived_why;
            }
            derived_changed++;
        }
        snap_free(&before);
        snap_free(&after);
    }
    CHECK_EQ_INT(log_changed, 0);
    CHECK_EQ_INT(derived_changed, 0);
    if (derived_changed)
        fprintf(stderr, "  %s: %lu of %lu failed opens modified derived files (first: %s)\n", label,
                derived_changed, tried, first_derived);
    printf("  %s: %lu flips in record %u: %lu refused with ECORRUPT, %lu named \"%s\", "
           "%lu changed the log, %lu changed derived files\n",
           label, tried, rec, refused, named, want, log_changed, derived_changed);
    rm_rf(work);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tally-torn-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    int longmode = is_long();
    /* Every open callocs a few MiB (the log's segment table, the item files'
    ** chunk tables); keep glibc from mmap/munmap-ing them every time. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    char base[4096], ref[4096], work[4096], seg[4096];
    snprintf(base, sizeof base, "%s/base", g_tmp);
    snprintf(ref, sizeof ref, "%s/ref", g_tmp);
    snprintf(work, sizeof work, "%s/work", g_tmp);

    /* ---- build ledger B: 7 clean + 3 after a crash ---- */
    tally_options o = ledger_opts();
    tally_db *db = NULL;
    tally_open_report rep;
    CHECK_EQ_INT(tally_db_open(&db, base, &o, &rep), 0);
    for (unsigned t = 1; t <= NCLEAN; t++) {
        uint64_t id = 0;
        CHECK_EQ_INT(commit_tx(db, t, &id), 0);
        CHECK_EQ_INT(id, t);
    }
    CHECK_EQ_INT(tally_db_checkpoint(db), 0); /* the checkpoint covers txs 1..NCLEAN */
    CHECK_EQ_INT(tally_db_close(db), 0);
    CHECK_EQ_INT(crash_commit(base, NCLEAN + 1, NTX), 0);

    snprintf(seg, sizeof seg, "%s/log/00000000.seg", base);
    size_t seglen = 0;
    uint8_t *segb = slurp(seg, &seglen);
    size_t start[NTX + 2];
    CHECK(segb != NULL);
    int parsed = segb ? parse_segment(segb, seglen, start) : -1;
    CHECK_EQ_INT(parsed, 0);
    if (parsed) TEST_END("test_torn");
    {
        char s1[4096];
        snprintf(s1, sizeof s1, "%s/log/00000001.seg", base);
        CHECK(access(s1, F_OK) != 0); /* one segment */
        snprintf(s1, sizeof s1, "%s/INDEX", base);
        CHECK(access(s1, F_OK) == 0); /* the checkpoint of the clean close */
    }

    /* ---- reference: the intact crash ledger recovers all 10, roots per size ---- */
    CHECK(copy_dir(base, ref) == 0);
    CHECK_EQ_INT(tally_db_open(&db, ref, &o, &rep), 0);
    CHECK_EQ_INT(rep.tx_count, NTX);
    CHECK_EQ_INT(rep.torn_bytes_dropped, 0);
    CHECK_EQ_INT(rep.replayed_tx, NTX - NCLEAN);
    for (unsigned k = 0; k <= NTX; k++) CHECK_EQ_INT(tally_root_at(db, ref_root[k], k), 0);
    check_ledger_contents(db, NTX, 0);
    CHECK_EQ_INT(tally_db_close(db), 0);
    rm_rf(ref);

    io_nosync(1);
    /* The engine reports every torn-tail truncation on stderr; collect stderr
    ** in a file during the trials and replay all but those lines. */
    char errpath[4096];
    snprintf(errpath, sizeof errpath, "%s/stderr", g_tmp);
    fflush(stderr);
    int saved_err = dup(2), errfd = open(errpath, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (saved_err >= 0 && errfd >= 0) dup2(errfd, 2);
    /* ---- 1. truncation at every offset inside the last 3 records ---- */
    /* the crashed writer left preallocated zeros after the records */
    CHECK(seglen > start[NTX + 1]);
    size_t lo = start[NTX - 2], hi = start[NTX + 1];
    unsigned long ntrunc = 0, nzero = 0;
    unsigned long nsampled = 0;
    for (size_t off = lo; off <= hi; off++) {
        unsigned rr = rec_of(off, start);
        if (!longmode && rr <= NTX && !sampled(off - start[rr], start[rr + 1] - start[rr])) continue;
        unsigned kept = 0;
        while (kept < NTX && start[kept + 2] <= off) kept++;
        /* start[kept+1] is the end of record `kept` */
        size_t end_kept = start[kept + 1];
        uint64_t torn = tu_nonzero_end(segb, end_kept, off) - end_kept; /* up to its last non-zero byte */
        int full = longmode || off == start[rr] || (nsampled++ % FULL_EVERY) == 0;
        rm_rf(work);
        CHECK(copy_dir(base, work) == 0);
        snprintf(seg, sizeof seg, "%s/log/00000000.seg", work);
        CHECK(truncate(seg, (off_t)off) == 0);
        check_recovered(work, kept, torn, end_kept, full, "truncate", off);
        ntrunc++;
    }

    /* ---- 2. zeros from the offset to the end (extended, not written) ---- */
    for (size_t off = lo; off < hi; off++) {
        unsigned rr = rec_of(off, start);
        if (!longmode && !sampled(off - start[rr], start[rr + 1] - start[rr])) continue;
        unsigned kept = 0;
        while (kept < NTX && start[kept + 2] <= off) kept++;
        size_t end_kept = start[kept + 1];
        /* what is torn: the record's bytes before the zeros; the zeros are
        ** preallocated space, and stay when nothing before them was torn */
        uint64_t torn = tu_nonzero_end(segb, end_kept, off) - end_kept;
        size_t len_after = torn ? end_kept : seglen;
        int full = longmode || off == start[rr] || (nsampled++ % FULL_EVERY) == 1;
        rm_rf(work);
        CHECK(copy_dir(base, work) == 0);
        snprintf(seg, sizeof seg, "%s/log/00000000.seg", work);
        uint8_t *b = malloc(seglen);
        memcpy(b, segb, seglen);
        memset(b + off, 0, seglen - off);
        CHECK(spit(seg, b, seglen) == 0);
        free(b);
        /* Zeros can replace a record's bytes only if it was never synced (a
        ** file extended but not written), and then its tx index item (written
        ** only after the fdatasync) never reached the disk either. With that
        ** item present, the engine rightly calls the damage corruption
        ** (tests/test_recovery_group.c). */
        char txi[4200];
        snprintf(txi, sizeof txi, "%s/txindex", work);
        CHECK(truncate(txi, (off_t)kept * 16) == 0);
        check_recovered(work, kept, torn, len_after, full, "zero-fill", off);
        nzero++;
    }
    fflush(stderr);
    unsigned long recovery_lines = 0;
    if (saved_err >= 0 && errfd >= 0) {
        dup2(saved_err, 2);
        close(saved_err);
        close(errfd);
        FILE *ef = fopen(errpath, "r");
        char line[1024];
        while (ef && fgets(line, sizeof line, ef)) {
            if (strncmp(line, "tally: recovery: truncated a torn tail", 38) == 0) recovery_lines++;
            else fputs(line, stderr);
        }
        if (ef) fclose(ef);
    }
    printf("  (%lu torn-tail recovery notices from the engine suppressed)\n", recovery_lines);
    printf("  torn tails: %lu truncations, %lu zero-fills (offsets %zu..%zu), %lu with commit+verify, "
           "%lu failed opens\n",
           ntrunc, nzero, lo, hi, g_full_runs, g_open_fail);

    /* ---- 3. damage in the middle ---- */
    io_nosync(0);
    char mid[4096];
    snprintf(mid, sizeof mid, "%s/midbase", g_tmp);
    CHECK_EQ_INT(crash_commit(mid, 1, NTX), 0); /* no checkpoint at all */
    io_nosync(1);
    {
        char s1[4096];
        snprintf(s1, sizeof s1, "%s/INDEX", mid);
        CHECK(access(s1, F_OK) != 0);
        snprintf(s1, sizeof s1, "%s/log/00000000.seg", mid);
        size_t mlen;
        uint8_t *mb = slurp(s1, &mlen);
        size_t mstart[NTX + 2];
        CHECK(mb && parse_segment(mb, mlen, mstart) == 0);
        /* the same content: only the timestamps differ, so the same layout */
        int same = memcmp(mstart, start, sizeof start) == 0;
        CHECK(same);
        free(mb);
        if (same) middle_damage(mid, 5, mstart, "no-checkpoint ledger", longmode);
    }
    middle_damage(base, NTX - 1, start, "checkpoint-at-7 ledger", longmode);

    free(segb);
    rm_rf(g_tmp);
    TEST_END("test_torn");
}
