/*
** test_byteflip.c — tally_verify_dir catches every single-byte flip.
**
** A ledger of 12 transactions (1-3 entries, tx and entry metadata, rewrites
** of a key, a tombstone), closed cleanly so the index checkpoint (INDEX +
** index/run-*.idx), txindex and merkle all cover every tx. Then, one byte at
** a time, in a working copy:
**   pass 1: every byte of the log segment;
**   pass 2: every byte of txindex, merkle, INDEX and the run file;
** flip it (xor 0x01 / 0x80 alternately), run tally_verify_dir, restore it.
** verify must not crash, must return 0 with res.ok == 0 and must not modify
** any file. For a flip inside record of tx T: res.first_bad_tx == T. For
** txindex item T-1 and for a Merkle node first completed by leaf T-1:
** first_bad_tx == T. For the segment header, INDEX and the run: !ok only.
**
**   pass 3: flips in the derived files again, then (in a forked child)
**     tally_db_open read-only and read every key, tx and entry: open may
**     refuse, reads may fail, but nothing may crash and no read may return
**     a wrong answer (a wrong value/tx, or ENOTFOUND for a live key).
** Default mode samples bytes (every header byte around a field boundary plus
** every STRIDE-th byte) to keep the ASan run short; TALLY_LONG=1 flips every
** byte. Every byte not caught is listed.
*/
#include "tally.h"
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

#define NTX 12
#define STRIDE 23 /* default mode: about one body byte in STRIDE (hashed choice) */

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

static int put_byte(const char *path, size_t off, uint8_t v) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    int rc = pwrite(fd, &v, 1, (off_t)off) == 1 ? 0 : -1;
    close(fd);
    return rc;
}

/* ------------------------------------------------------------ the ledger */

/* The model: every key's latest version after the 12 txs. */
typedef struct mkey {
    char key[48];
    uint64_t tx;
    int deleted;
    uint8_t val[300];
    size_t val_len;
} mkey;
static mkey model[64];
static int nmodel;

static void model_put(const char *k, uint64_t tx, int del, const uint8_t *v, size_t vl) {
    int i = 0;
    while (i < nmodel && strcmp(model[i].key, k)) i++;
    if (i == nmodel) nmodel++;
    snprintf(model[i].key, sizeof model[i].key, "%s", k);
    model[i].tx = tx;
    model[i].deleted = del;
    if (vl) memcpy(model[i].val, v, vl);
    model[i].val_len = vl;
}

static int build_ledger(const char *dir) {
    tally_db *db;
    if (tally_db_open(&db, dir, NULL, NULL) != 0) return -1;
    for (unsigned t = 1; t <= NTX; t++) {
        tally_entry e[3];
        char keys[3][48];
        uint8_t vals[3][300];
        char emeta[3][16];
        memset(e, 0, sizeof e);
        unsigned n = 1 + (t * 5) % 3;
        for (unsigned i = 0; i < n; i++) {
            e[i].ns = TALLY_NS_KV;
            e[i].key = keys[i];
            /* entry 0 of every 3rd tx rewrites "hot"; tx 11 deletes k04-0 */
            if (i == 0 && t % 3 == 0) e[i].key_len = (size_t)sprintf(keys[i], "hot");
            else if (i == 0 && t == 11) e[i].key_len = (size_t)sprintf(keys[i], "k04-0");
            else e[i].key_len = (size_t)sprintf(keys[i], "k%02u-%u", t, i);
            if (t == 11 && i == 0) {
                e[i].deleted = 1;
            } else {
                size_t vl = 3 + (t * 41 + i * 17) % 260;
                for (size_t j = 0; j < vl; j++) vals[i][j] = (uint8_t)(t * 31 + i * 7 + j * 3);
                e[i].value = vals[i];
                e[i].value_len = vl;
            }
            if ((t + i) % 4 == 0) {
                e[i].meta = emeta[i];
                e[i].meta_len = (size_t)sprintf(emeta[i], "m%u.%u", t, i);
            }
        }
        char meta[32];
        int ml = sprintf(meta, "tx %u metadata", t);
        uint64_t id = 0;
        int rc = tally_commit(db, &id, e, n, meta, t % 2 ? (size_t)ml : 0);
        for (unsigned i = 0; rc == 0 && i < n; i++) model_put(keys[i], t, e[i].deleted, e[i].value, e[i].value_len);
        if (rc != 0 || id != t) {
            fprintf(stderr, "commit %u: %s\n", t, tally_errmsg());
            tally_db_close(db);
            return -1;
        }
    }
    /* a clean shutdown with the index checkpointed (close alone leaves a small tail) */
    int ck = tally_db_checkpoint(db);
    int cl = tally_db_close(db);
    return ck ? ck : cl;
}

/* ------------------------------------------------------------ the files */

typedef struct tfile {
    char rel[128];
    uint8_t *b;
    size_t n;
} tfile;

static tfile files[16];
static int nfiles;

static tfile *load(const char *dir, const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    tfile *f = &files[nfiles];
    snprintf(f->rel, sizeof f->rel, "%s", rel);
    f->b = slurp(p, &f->n);
    if (!f->b) return NULL;
    nfiles++;
    return f;
}

/* Every data file of the working copy equals the pristine bytes (except,
** for file `skip`, byte skip_off which holds skip_val). */
static const char *dir_differs(const char *dir, const tfile *skip, size_t skip_off, uint8_t skip_val) {
    static char why[256];
    for (int i = 0; i < nfiles; i++) {
        char p[4096];
        size_t n;
        snprintf(p, sizeof p, "%s/%s", dir, files[i].rel);
        uint8_t *b = slurp(p, &n);
        int same = b && n == files[i].n;
        if (same && &files[i] == skip) {
            same = b[skip_off] == skip_val;
            b[skip_off] = files[i].b[skip_off];
        }
        if (same) same = memcmp(b, files[i].b, n) == 0;
        free(b);
        if (!same) {
            snprintf(why, sizeof why, "%s", files[i].rel);
            return why;
        }
    }
    /* no new file in index/ */
    char p[4096];
    snprintf(p, sizeof p, "%s/index", dir);
    DIR *d = opendir(p);
    int extra = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char rel[300];
        snprintf(rel, sizeof rel, "index/%s", de->d_name);
        int known = 0;
        for (int i = 0; i < nfiles; i++)
            if (!strcmp(rel, files[i].rel)) known = 1;
        if (!known) extra = 1;
    }
    if (d) closedir(d);
    if (extra) {
        snprintf(why, sizeof why, "new file in index/");
        return why;
    }
    return NULL;
}

static void restore_all(const char *dir) {
    for (int i = 0; i < nfiles; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, files[i].rel);
        FILE *f = fopen(p, "wb");
        if (f) {
            fwrite(files[i].b, 1, files[i].n, f);
            fclose(f);
        }
    }
}

/* ------------------------------------------------------------ expectations */

static size_t rec_start[NTX + 2]; /* rec_start[t] for tx t; [NTX+1] = end */

/* tx whose record holds segment byte off; 0 for the segment header. */
static uint64_t tx_of_log_byte(size_t off) {
    for (unsigned t = 1; t <= NTX; t++)
        if (off >= rec_start[t] && off < rec_start[t + 1]) return t;
    return 0;
}

/* tx whose verification first checks Merkle node at post-order position p. */
static uint64_t tx_of_merkle_node(uint64_t p) {
    /* walk the post-order layout exactly as the store appends it */
    uint64_t pos = 0, n = 0;
    for (uint64_t leaf = 0; leaf < 64; leaf++) {
        if (pos == p) return leaf + 1;
        pos++;
        for (unsigned l = 0; (n >> l) & 1; l++) {
            if (pos == p) return leaf + 1;
            pos++;
        }
        n++;
    }
    return 0;
}

/* A deterministic, structure-independent choice of about one byte in k. */
static int one_in(size_t i, unsigned k) { return ((uint32_t)(i * 2654435761u) >> 13) % k == 0; }

/* Default-mode choice of byte rel of the record of tx t (len bytes): every
** field boundary of the header of records 1, 6 and 12, a few header bytes of
** the others, the last byte, and about one body byte in STRIDE. */
static int sampled_rec(unsigned t, size_t rel, size_t len, int longmode) {
    static const size_t pick[] = {0, 3, 4, 7, 8, 15, 16, 19, 20, 23, 24, 27, 28, 31};
    static const size_t few[] = {0, 4, 8, 20, 28};
    if (longmode) return 1;
    if (rel < 32) {
        int all = t == 1 || t == 6 || t == NTX;
        const size_t *p = all ? pick : few;
        size_t n = all ? sizeof pick / sizeof pick[0] : sizeof few / sizeof few[0];
        for (size_t i = 0; i < n; i++)
            if (rel == p[i]) return 1;
        return 0;
    }
    return rel + 1 == len || one_in(rel, STRIDE);
}

typedef struct stats {
    unsigned long tested, caught, wrong_tx, bad_rc, modified;
} stats;

static int g_longmode;

/* Flips byte off of file f in dir, verifies, restores. expect_tx: the
** first_bad_tx required (0 = any). */
static void flip_one(const char *dir, tfile *f, size_t off, uint64_t expect_tx, stats *st) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, f->rel);
    uint8_t v = f->b[off] ^ (uint8_t)((st->tested & 1) ? 0x80 : 0x01);
    CHECK(put_byte(p, off, v) == 0);
    tally_verify_result res;
    memset(&res, 0x5A, sizeof res);
    int rc = tally_verify_dir(dir, &res, NULL, NULL);
    st->tested++;
    if (rc != 0) {
        st->bad_rc++;
        if (st->bad_rc <= 5)
            fprintf(stderr, "  %s byte %zu: tally_verify_dir returned %d (%s), res.ok=%d: %s\n", f->rel, off, rc,
                    tally_strerror(rc), res.ok, tally_errmsg());
    }
    CHECK_EQ_INT(rc, 0);
    int caught = rc == 0 && res.ok == 0;
    CHECK(caught);
    if (caught) st->caught++;
    else if (rc == 0)
        fprintf(stderr, "  NOT CAUGHT: %s byte %zu (xor 0x%02x): verify reports ok, %llu txs checked\n", f->rel,
                off, v ^ f->b[off], (unsigned long long)res.tx_checked);
    if (caught && expect_tx) {
        CHECK_EQ_INT(res.first_bad_tx, expect_tx);
        if (res.first_bad_tx != expect_tx) {
            st->wrong_tx++;
            fprintf(stderr, "  %s byte %zu: first_bad_tx %llu, expected %llu (%s)\n", f->rel, off,
                    (unsigned long long)res.first_bad_tx, (unsigned long long)expect_tx, res.error);
        }
    }
    if (caught) CHECK(res.error[0] != '\0');
    const char *d = dir_differs(dir, f, off, v);
    if (d) {
        st->modified++;
        if (st->modified <= 5) fprintf(stderr, "  %s byte %zu: tally_verify_dir modified %s\n", f->rel, off, d);
        restore_all(dir);
    }
    CHECK(d == NULL);
    CHECK(put_byte(p, off, f->b[off]) == 0);
}

/* Pass 3: the engine itself on a damaged derived file. tally_db_open may
** refuse (any error code) or succeed; if it succeeds, every read must return
** the true answer or an error, never a wrong answer, and nothing may crash. */
typedef struct ostats {
    unsigned long tested, refused, opened, read_errors, wrong, crashed;
} ostats;

/* In a child: open (read-only) and read everything. Exit status: bit 0 open
** refused, bit 1 some read returned an error, bit 2 some read returned a
** WRONG answer. */
static int open_and_read(const char *dir, const char *what, size_t off) {
    tally_db *db = NULL;
    tally_options o;
    tally_options_init(&o);
    o.read_only = 1; /* no recovery writes: the working copy stays as it is */
    if (tally_db_open(&db, dir, &o, NULL) != 0) return 1;
    int status = 0;
    for (int i = 0; i < nmodel; i++) {
        tally_version ver;
        int rc = tally_get(db, &ver, TALLY_NS_KV, model[i].key, strlen(model[i].key), 0);
        int right = model[i].deleted ? rc == TALLY_ENOTFOUND
                                     : rc == 0 && ver.tx == model[i].tx && ver.value_len == model[i].val_len &&
                                           memcmp(ver.value, model[i].val, ver.value_len) == 0;
        int wrong = !right && (rc == 0 || rc == TALLY_ENOTFOUND);
        if (!right && !wrong) status |= 2;
        if (wrong) {
            status |= 4;
            fprintf(stderr, "  WRONG ANSWER: %s byte %zu flipped: get(%s) -> rc %d tx %llu (true: tx %llu%s)\n",
                    what, off, model[i].key, rc, rc == 0 ? (unsigned long long)ver.tx : 0ull,
                    (unsigned long long)model[i].tx, model[i].deleted ? ", deleted" : "");
        }
    }
    for (uint64_t t = 1; t <= NTX; t++) {
        tally_tx_info ti;
        int rc = tally_tx_get(db, &ti, t);
        if (rc == 0 && ti.tx != t) status |= 4;
        else if (rc) status |= 2;
        for (uint32_t i = 0; rc == 0 && i < ti.entry_count; i++) {
            tally_entry_view ev;
            if (tally_tx_entry(db, &ev, t, i) != 0) status |= 2;
        }
    }
    uint64_t size = 0;
    uint8_t root[TALLY_HASH_LEN];
    if (tally_state(db, &size, root) != 0) status |= 2;
    else if (size != NTX) status |= 4;
    tally_db_close(db);
    return status;
}

static void open_one(const char *dir, tfile *f, size_t off, ostats *st) {
    char p[4096], errp[4096];
    snprintf(p, sizeof p, "%s/%s", dir, f->rel);
    snprintf(errp, sizeof errp, "%s/../child.err", dir);
    uint8_t v = f->b[off] ^ (uint8_t)((st->tested & 1) ? 0x80 : 0x01);
    CHECK(put_byte(p, off, v) == 0);
    st->tested++;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errp, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        if (fd >= 0) dup2(fd, 2);
        _exit(16 + open_and_read(dir, f->rel, off)); /* 16..23: ASan's own error exit is 1 */
    }
    int ws = 0;
    CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid);
    int code = WIFEXITED(ws) ? WEXITSTATUS(ws) - 16 : -1;
    if (code < 0 || code > 7) {
        st->crashed++;
        CHECK(!"the engine crashed reading a ledger with one damaged derived byte");
        if (st->crashed <= 2) {
            fprintf(stderr, "  CRASH: %s byte %zu (0x%02x -> 0x%02x): %s; the child's stderr:\n", f->rel, off,
                    f->b[off], v, WIFSIGNALED(ws) ? strsignal(WTERMSIG(ws)) : "exit status 1 (a sanitizer report)");
            FILE *ef = fopen(errp, "r");
            char line[512];
            for (int n = 0; ef && n < 14 && fgets(line, sizeof line, ef); n++) fprintf(stderr, "    %s", line);
            if (ef) fclose(ef);
        }
    } else {
        if (code & 1) st->refused++;
        else st->opened++;
        if (code & 2) st->read_errors++;
        if (code & 4) {
            st->wrong++;
            CHECK(!"a read returned a wrong answer");
            if (st->wrong <= 3) {
                FILE *ef = fopen(errp, "r");
                char line[512];
                for (int n = 0; ef && n < 4 && fgets(line, sizeof line, ef); n++) fputs(line, stderr);
                if (ef) fclose(ef);
            }
        }
    }
    const char *d = dir_differs(dir, f, off, v);
    if (d) restore_all(dir);
    CHECK(put_byte(p, off, f->b[off]) == 0);
}

static void oreport(const char *what, const ostats *st) {
    printf("  open+read after %-9s %5lu flips: %5lu refused by open, %5lu opened (%lu with read errors), "
           "%lu CRASHED, %lu WRONG answers\n",
           what, st->tested, st->refused, st->opened, st->read_errors, st->crashed, st->wrong);
}

static void report(const char *what, const stats *st) {
    printf("  %-28s %5lu flips tested, %5lu caught, %lu wrong first_bad_tx, %lu error returns, "
           "%lu modified files\n",
           what, st->tested, st->caught, st->wrong_tx, st->bad_rc, st->modified);
}

int main(void) {
    const char *l = getenv("TALLY_LONG");
    g_longmode = l && *l && strcmp(l, "0") != 0;
    /* Each verify callocs a few MiB (the log's segment table, the item files'
    ** chunk tables); keep glibc from mmap/munmap-ing them every time. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    char tmp[] = "/tmp/tally-flip-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    CHECK_EQ_INT(build_ledger(dir), 0);

    /* the pristine ledger verifies */
    tally_verify_result res;
    CHECK_EQ_INT(tally_verify_dir(dir, &res, NULL, NULL), 0);
    CHECK_EQ_INT(res.ok, 1);
    CHECK_EQ_INT(res.tx_checked, NTX);
    CHECK_EQ_INT(res.first_bad_tx, 0);

    /* load every data file */
    tfile *seg = load(dir, "log/00000000.seg");
    tfile *txi = load(dir, "txindex");
    tfile *mrk = load(dir, "merkle");
    tfile *idx = load(dir, "INDEX");
    char runrel[128] = "";
    {
        char p[4096];
        snprintf(p, sizeof p, "%s/index", dir);
        DIR *d = opendir(p);
        int nrun = 0;
        for (struct dirent *de; d && (de = readdir(d));)
            if (!strncmp(de->d_name, "run-", 4)) {
                snprintf(runrel, sizeof runrel, "index/%s", de->d_name);
                nrun++;
            }
        if (d) closedir(d);
        CHECK_EQ_INT(nrun, 1);
    }
    tfile *run = runrel[0] ? load(dir, runrel) : NULL;
    CHECK(seg && txi && mrk && idx && run);
    if (!(seg && txi && mrk && idx && run)) TEST_END("test_byteflip");
    {
        char p[4096];
        snprintf(p, sizeof p, "%s/log/00000001.seg", dir);
        CHECK(access(p, F_OK) != 0);
    }
    CHECK_EQ_INT(txi->n, NTX * 16);
    CHECK_EQ_INT(mrk->n, (2 * NTX - __builtin_popcount(NTX)) * 32);
    CHECK_EQ_INT(idx->n, 96);

    /* record boundaries */
    size_t off = 32;
    for (unsigned t = 1; t <= NTX; t++) {
        uint32_t body;
        uint64_t id;
        CHECK(off + 32 <= seg->n);
        if (off + 32 > seg->n) TEST_END("test_byteflip");
        memcpy(&body, seg->b + off + 4, 4);
        memcpy(&id, seg->b + off + 8, 8);
        CHECK_EQ_INT(id, t);
        rec_start[t] = off;
        off += 32 + body;
    }
    rec_start[NTX + 1] = off;
    CHECK_EQ_INT(off, seg->n);

    /* pass 1: the log */
    stats s_seghdr = {0}, s_log = {0};
    for (size_t i = 0; i < seg->n; i++) {
        uint64_t tx = tx_of_log_byte(i);
        if (tx == 0) {
            if (g_longmode || i % 4 == 0 || i % 4 == 3) flip_one(dir, seg, i, 0, &s_seghdr);
            continue;
        }
        if (!sampled_rec((unsigned)tx, i - rec_start[tx], rec_start[tx + 1] - rec_start[tx], g_longmode)) continue;
        flip_one(dir, seg, i, tx, &s_log);
    }

    /* pass 2: derived files */
    stats s_txi = {0}, s_mrk = {0}, s_idx = {0}, s_run = {0};
    for (size_t i = 0; i < txi->n; i++)
        if (g_longmode || i % 16 == 0 || i % 16 == 15 || one_in(i, 8)) flip_one(dir, txi, i, i / 16 + 1, &s_txi);
    for (size_t i = 0; i < mrk->n; i++)
        if (g_longmode || i % 32 == 0 || i % 32 == 31)
            flip_one(dir, mrk, i, tx_of_merkle_node(i / 32), &s_mrk);
    for (size_t i = 0; i < idx->n; i++) flip_one(dir, idx, i, 0, &s_idx);
    for (size_t i = 0; i < run->n; i++)
        if (g_longmode || i < 64 || i + 16 >= run->n || one_in(i, 17)) flip_one(dir, run, i, 0, &s_run);

    printf("  log %zu bytes (%u records), txindex %zu, merkle %zu, INDEX %zu, %s %zu; %s\n", seg->n, NTX, txi->n,
           mrk->n, idx->n, run->rel, run->n, g_longmode ? "every byte" : "sampled bytes (TALLY_LONG=1: every byte)");
    report("segment header:", &s_seghdr);
    report("records:", &s_log);
    report("txindex:", &s_txi);
    report("merkle:", &s_mrk);
    report("INDEX:", &s_idx);
    report("run:", &s_run);
    stats all = {0};
    const stats *ss[] = {&s_seghdr, &s_log, &s_txi, &s_mrk, &s_idx, &s_run};
    for (int i = 0; i < 6; i++) {
        all.tested += ss[i]->tested;
        all.caught += ss[i]->caught;
        all.bad_rc += ss[i]->bad_rc;
    }
    printf("  total: %lu flips tested, %lu caught (returned 0 with ok == 0), %lu refused with an error code "
           "but res.ok left 1, %lu reported ok\n",
           all.tested, all.caught, all.bad_rc, all.tested - all.caught - all.bad_rc);

    /* pass 3: open and read with a damaged derived file */
    ostats o_txi = {0}, o_mrk = {0}, o_idx = {0}, o_run = {0};
    /* (each trial forks; default mode samples fewer bytes than passes 1-2) */
    for (size_t i = 0; i < txi->n; i++)
        if (g_longmode || i % 16 == 1 || i % 16 == 2 || i % 16 == 9) open_one(dir, txi, i, &o_txi);
    for (size_t i = 0; i < mrk->n; i++)
        if (g_longmode || i % 64 == 0) open_one(dir, mrk, i, &o_mrk);
    for (size_t i = 0; i < idx->n; i++)
        if (g_longmode || i % 8 == 0) open_one(dir, idx, i, &o_idx);
    for (size_t i = 0; i < run->n; i++)
        if (g_longmode || (i < 64 && i % 8 == 0) || one_in(i, 19)) open_one(dir, run, i, &o_run);
    oreport("txindex:", &o_txi);
    oreport("merkle:", &o_mrk);
    oreport("INDEX:", &o_idx);
    oreport("run:", &o_run);

    /* and the pristine copy still verifies after all that */
    CHECK_EQ_INT(tally_verify_dir(dir, &res, NULL, NULL), 0);
    CHECK_EQ_INT(res.ok, 1);

    for (int i = 0; i < nfiles; i++) free(files[i].b);
    rm_rf(tmp);
    TEST_END("test_byteflip");
}
