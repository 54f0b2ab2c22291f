/*
** bench.c — Tally's benchmarks, each printed beside limits measured in the
** same run and beside SQLite doing the same work in the same run.
**
** Usage: build/bench [--scale F] [--quick] [--only NAME]
**   --scale F   entry counts scale with F (default 1.0)
**   --quick     --scale 0.05 (smoke run)
**   --only NAME one of: limits ingest commit64 get proofs verify open
**               (a benchmark's prerequisites run too, e.g. `get` builds the
**               ingest ledger and the SQLite table first)
** Env: TALLY_BENCH_DIR (default ./bench-data): work directory, removed at the end.
**
** Every phase runs in a forked child; its peak RSS is the child's ru_maxrss
** (from wait4), which includes file pages mapped and touched (the log, the
** index run and the Merkle store are read through mmap). Results travel back
** through a shared anonymous mapping. Progress goes to stderr, results to stdout.
*/
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tally.h"
#include "log/record.h"
#include "util/sha256.h"

/* ------------------------------------------------------------------ */
/* Workload constants (from the issue).                                */
#define KEY_LEN        32
#define VAL_LEN        128
#define ING_TX_ENTRIES 1000
#define SMALL_THREADS  64
#define PF_THREADS     4
#define PF_CAP_SEC     180.0
#define VAL_POOL       (1u << 20)

/* Bytes one entry / one record takes in the log (record.h). */
#define ENTRY_BYTES (ENTRY_HDR_LEN + KEY_LEN + VAL_LEN)
#define REC_BYTES(n) ((uint64_t)RECORD_HDR_LEN + TXH_FIXED_LEN + (uint64_t)(n) * ENTRY_BYTES)

/* ------------------------------------------------------------------ */
/* Phases.                                                             */
enum {
    PH_LIMITS, PH_ING1, PH_ING2, PH_REOPEN, PH_SQL_ING, PH_SMALL, PH_SQL_SMALL, PH_GET, PH_SQL_GET,
    PH_VERIFY, PH_PFBUILD, PH_PROOFS, PH_OPEN, PH_COUNT
};
static const char *ph_name[PH_COUNT] = {
    "limits", "ingest-1thr", "ingest-2thr", "ingest-reopen", "sqlite-ingest", "commit64", "sqlite-commit64",
    "get", "sqlite-get", "verify", "proofs-build", "proofs", "open"};

typedef struct lat { double p50, p99, mean; } lat;
typedef struct adj { double a_eps, b1_eps, b2_eps; } adj;

typedef struct results {
    double scale;
    uint64_t key_seed, pf_seed;
    /* limits */
    double la_bytes, la_sec, la_mbps, la_eps, la_sync_us;   /* (a) */
    double ls_group_bytes, ls_sync_us, ls_tps;               /* (a') 64 x single-entry group */
    double lb1_eps, lb2_eps, lb_bytes_per_entry;             /* (b) */
    /* ingest */
    uint64_t ing_tx, ing_entries;
    double ing_bytes;
    double ing1_sec, ing1_eps, ing1_group, ing1_close;
    double ing2_sec, ing2_eps, ing2_mbps, ing2_group, ing2_sync_us, ing2_close;
    uint64_t ing2_ckpts, ing_checked;
    adj ing1_adj, ing2_adj, ver_adj;
    double reopen_sec;
    tally_open_report reopen_rep;
    uint64_t sql_rows;
    double sql_ing_sec, sql_ing_eps;
    /* commit64 */
    double sm_sec, sm_tps, sm_group, sm_sync_us;
    uint64_t sm_commits, sm_syncs;
    lat sm_lat;
    double sqs_tps;
    uint64_t sqs_commits, sqs_busy;
    /* get */
    uint64_t get_ops;
    lat get_lat, asof_lat;
    double get_batch_ns, get2_ops_s, timer_ns;
    lat sql_get_lat;
    double sql_get_batch_ns;
    /* verify */
    double ver_sec, ver_bytes, ver_mbps, ver_eps;
    int ver_ok;
    char ver_err[256];
    /* proofs */
    uint64_t pf_target, pf_tx;
    int pf_capped;
    double pf_build_sec, pf_build_tps, pf_close_sec;
    uint64_t pf_ops;
    lat inc, con, vinc, vcon, root_at;
    double open_sec;
    tally_open_report open_rep;
    /* bookkeeping */
    int ran[PH_COUNT], ok[PH_COUNT];
    long rss_kb[PH_COUNT];
    double wall[PH_COUNT], own_cpu[PH_COUNT], other_load[PH_COUNT], wr_bytes[PH_COUNT];
} results;

static results *R;
static char g_dir[PATH_MAX];
static uint8_t *g_pool; /* VAL_POOL + VAL_LEN random bytes: values are slices of it */

/* ------------------------------------------------------------------ */
/* Helpers.                                                            */
static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
static double secs(uint64_t ns) { return (double)ns / 1e9; }

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stdout);
    fflush(stderr);
    _exit(1);
}
static void check(int rc, const char *what) {
    if (rc) die("%s: %s (%s)", what, tally_strerror(rc), tally_errmsg());
}
static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[bench] ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Key i of a data set: 32 pseudo-random bytes, distinct for distinct i. */
static void key_of(uint64_t seed, uint64_t i, uint8_t out[KEY_LEN]) {
    uint64_t s = seed + i * 0x9E3779B97F4A7C15ull;
    for (int j = 0; j < KEY_LEN / 8; j++) {
        uint64_t w = splitmix(&s);
        memcpy(out + 8 * j, &w, 8);
    }
}
static const uint8_t *value_of(uint64_t i) { return g_pool + (i * 0x9E3779B1ull) % VAL_POOL; }

typedef struct rng { uint64_t s; } rng;
static uint64_t rnd(rng *r) { return splitmix(&r->s); }
static uint64_t rnd_in(rng *r, uint64_t lo, uint64_t hi) { /* [lo, hi] */
    return lo + rnd(r) % (hi - lo + 1);
}

static void path_in(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p);
}
static void rm_rf(const char *p) {
    struct stat st;
    if (lstat(p, &st) != 0) return;
    nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
static uint64_t g_du;
static int du_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)p, (void)f;
    if (flag == FTW_F) g_du += (uint64_t)sb->st_size;
    return 0;
}
static uint64_t du(const char *p) {
    g_du = 0;
    nftw(p, du_cb, 16, FTW_PHYS);
    return g_du;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}
/* Percentiles (ns) of n samples; sorts them. */
static lat lat_of(uint32_t *v, size_t n) {
    lat l = {0, 0, 0};
    if (!n) return l;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    qsort(v, n, sizeof *v, cmp_u32);
    l.p50 = v[n / 2];
    l.p99 = v[(size_t)((double)n * 0.99) < n ? (size_t)((double)n * 0.99) : n - 1];
    l.mean = sum / (double)n;
    return l;
}
static uint32_t clamp32(uint64_t x) { return x > UINT32_MAX ? UINT32_MAX : (uint32_t)x; }

static uint64_t scaled(double base, double min) {
    double v = base * R->scale;
    return (uint64_t)(v < min ? min : v);
}

static const char *human(double x, char *buf, size_t len) { /* 12.3M / 456k */
    if (x >= 1e9) snprintf(buf, len, "%.2fG", x / 1e9);
    else if (x >= 1e6) snprintf(buf, len, "%.2fM", x / 1e6);
    else if (x >= 1e3) snprintf(buf, len, "%.1fk", x / 1e3);
    else snprintf(buf, len, "%.1f", x);
    return buf;
}

/* ------------------------------------------------------------------ */
/* Machine header.                                                     */
static void print_machine(void) {
    char line[512], model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n")] = 0;
            }
            break;
        }
    }
    if (f) fclose(f);
    int shani = 0;
    f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            shani = strstr(line, " sha_ni") != NULL;
            break;
        }
    if (f) fclose(f);
    unsigned long long memkb = 0;
    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %llu kB", &memkb) == 1) break;
    if (f) fclose(f);
    struct utsname u;
    uname(&u);
    /* filesystem of the bench dir: the longest mount point that prefixes it */
    char real[PATH_MAX], dev[256] = "?", mnt[PATH_MAX] = "?", fstype[64] = "?", opts[512] = "?";
    if (!realpath(g_dir, real)) snprintf(real, sizeof real, "%s", g_dir);
    size_t best = 0;
    f = fopen("/proc/mounts", "r");
    while (f && fgets(line, sizeof line, f)) {
        char d[256], m[PATH_MAX], t[64], o[512];
        if (sscanf(line, "%255s %4095s %63s %511s", d, m, t, o) != 4) continue;
        size_t ml = strlen(m);
        int pre = strncmp(real, m, ml) == 0 && (real[ml] == '/' || real[ml] == 0 || strcmp(m, "/") == 0);
        if (pre && ml >= best) {
            best = ml;
            snprintf(dev, sizeof dev, "%s", d);
            snprintf(mnt, sizeof mnt, "%s", m);
            snprintf(fstype, sizeof fstype, "%s", t);
            snprintf(opts, sizeof opts, "%s", o);
        }
    }
    if (f) fclose(f);
    printf("# Tally benchmarks (tally %s, SQLite %s)\n\n", TALLY_VERSION_STRING, sqlite3_libversion());
    printf("machine: CPU %s (%s), %ld cores online, RAM %.1f GiB, kernel %s %s\n", model,
           shani ? "SHA extensions: yes" : "SHA extensions: no", sysconf(_SC_NPROCESSORS_ONLN),
           (double)memkb / (1024.0 * 1024.0), u.sysname, u.release);
    printf("bench dir: %s on %s (%s, mounted at %s, %s)\n", real, dev, fstype, mnt, opts);
    printf("scale: %.3g (entry counts scale with it)\n", R->scale);
    fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* 1. Limits.                                                          */
typedef struct sha_arg { uint64_t n; uint8_t sink[32]; } sha_arg;

/* Exactly the hashing Tally does per entry (value hash, entry leaf hash, one
** node hash of the entries tree) plus, per 1000 entries, the tx leaf hash and
** one ledger-tree node — with tally_sha256_init/update/final. */
static void *sha_work(void *p) {
    sha_arg *a = p;
    uint8_t hdrkey[ENTRY_HDR_LEN + KEY_LEN], vh[32], leaf[32], node[65], txh[1 + TXH_FIXED_LEN];
    memset(hdrkey, 0x5a, sizeof hdrkey);
    memset(node, 0x01, sizeof node);
    memset(txh, 0x02, sizeof txh);
    static const uint8_t zero = 0;
    for (uint64_t i = 0; i < a->n; i++) {
        tally_sha256_ctx c;
        tally_sha256_init(&c);
        tally_sha256_update(&c, value_of(i), VAL_LEN);
        tally_sha256_final(&c, vh);
        tally_sha256_init(&c);
        tally_sha256_update(&c, &zero, 1);
        tally_sha256_update(&c, hdrkey, sizeof hdrkey);
        tally_sha256_update(&c, vh, 32);
        tally_sha256_final(&c, leaf);
        memcpy(node + 1, leaf, 32);
        tally_sha256_init(&c);
        tally_sha256_update(&c, node, 65);
        tally_sha256_final(&c, node + 33);
        if (i % ING_TX_ENTRIES == 0) {
            tally_sha256_init(&c);
            tally_sha256_update(&c, txh, sizeof txh);
            tally_sha256_final(&c, txh + 1);
            tally_sha256_init(&c);
            tally_sha256_update(&c, node, 65);
            tally_sha256_final(&c, txh + 40);
        }
    }
    memcpy(a->sink, node + 33, 32);
    return NULL;
}

static double sha_rate(int threads, uint64_t n) {
    pthread_t th[8];
    sha_arg a[8];
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        a[i].n = n;
        pthread_create(&th[i], NULL, sha_work, &a[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    return (double)n * threads / secs(now_ns() - t0);
}

/* pwrite `len` bytes `count` times sequentially into a fresh file, fdatasync
** after each. prealloc_bytes > 0: the file first gets that many zero bytes
** (written and synced before the clock starts), so the writes overwrite
** allocated blocks as the engine's log does after small groups (log.c):
** each fdatasync then writes data only, no allocation metadata or length. */
static double raw_write_sync(const char *name, size_t len, uint64_t count, double max_sec, uint64_t prealloc_bytes,
                             uint64_t *done, double *sync_us) {
    char path[PATH_MAX];
    path_in(path, sizeof path, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    if (prealloc_bytes) {
        size_t zlen = 1u << 20;
        uint8_t *z = calloc(1, zlen);
        if (!z) die("out of memory");
        for (uint64_t o = 0; o < prealloc_bytes; o += zlen)
            if (pwrite(fd, z, zlen, (off_t)o) != (ssize_t)zlen) die("pwrite: %s", strerror(errno));
        if (fsync(fd) != 0) die("fsync: %s", strerror(errno));
        free(z);
    }
    uint8_t *buf = malloc(len);
    if (!buf) die("out of memory");
    for (size_t i = 0; i < len; i++) buf[i] = g_pool[i % VAL_POOL];
    uint64_t off = 0, sync_ns = 0, t0 = now_ns(), i;
    for (i = 0; i < count; i++) {
        size_t w = 0;
        while (w < len) {
            ssize_t r = pwrite(fd, buf + w, len - w, (off_t)(off + w));
            if (r < 0) die("pwrite: %s", strerror(errno));
            w += (size_t)r;
        }
        off += len;
        uint64_t s0 = now_ns();
        if (fdatasync(fd) != 0) die("fdatasync: %s", strerror(errno));
        sync_ns += now_ns() - s0;
        if (max_sec > 0 && (i & 15) == 15 && secs(now_ns() - t0) > max_sec) {
            i++;
            break;
        }
    }
    double sec = secs(now_ns() - t0);
    close(fd);
    unlink(path);
    free(buf);
    *done = i;
    *sync_us = (double)sync_ns / 1e3 / (double)i;
    return sec;
}

static void ph_limits(void) {
    printf("\n## 1. Limits measured in this run\n");
    /* (a) the ingest benchmark's log bytes, one write + fdatasync per transaction */
    uint64_t ntx = R->ing_tx, done;
    size_t rec = (size_t)REC_BYTES(ING_TX_ENTRIES);
    progress("limits: raw write+fdatasync of %llu x %zu bytes", (unsigned long long)ntx, rec);
    double sec = raw_write_sync("raw-ingest.dat", rec, ntx, 0, 0, &done, &R->la_sync_us);
    R->la_bytes = (double)rec * (double)done;
    R->la_sec = sec;
    R->la_mbps = R->la_bytes / 1e6 / sec;
    R->la_eps = (double)done * ING_TX_ENTRIES / sec;
    printf("(a) raw sequential pwrite+fdatasync, %llu writes of %zu bytes (= one %u-entry transaction record "
           "each), %.0f MB total: %.2f s, %.1f MB/s = %.0f entries/s equivalent; mean fdatasync %.0f us\n",
           (unsigned long long)done, rec, ING_TX_ENTRIES, R->la_bytes / 1e6, sec, R->la_mbps, R->la_eps,
           R->la_sync_us);
    /* (a') commit64 limit: each of 64 threads has one transaction in flight, so
    ** a group holds at most 64 single-entry records: 64 records per write+sync */
    /* measured both ways: appending (the file grows), and overwriting zeros
    ** written beforehand, as the log does after small groups; the limit is
    ** the better of the two */
    size_t grp = (size_t)REC_BYTES(1) * SMALL_THREADS;
    double max_sec = R->scale < 0.2 ? 0.3 : 1.0;
    progress("limits: raw write+fdatasync of %zu-byte groups for ~2 x %.1f s", grp, max_sec);
    double app_us, pre_us;
    sec = raw_write_sync("raw-small.dat", grp, UINT64_MAX, max_sec, 0, &done, &app_us);
    double app_tps = (double)done * SMALL_THREADS / sec;
    sec = raw_write_sync("raw-small.dat", grp, UINT64_MAX, max_sec, 256ull << 20, &done, &pre_us);
    double pre_tps = (double)done * SMALL_THREADS / sec;
    R->ls_group_bytes = (double)grp;
    R->ls_tps = pre_tps > app_tps ? pre_tps : app_tps;
    R->ls_sync_us = pre_tps > app_tps ? pre_us : app_us;
    printf("(a') raw pwrite+fdatasync of %zu-byte groups (%d single-entry records of %llu bytes): appending %.0f "
           "syncs/s (mean fdatasync %.0f us), over preallocated zeros %.0f syncs/s (%.0f us) -> at most %.0f tx/s "
           "for %d threads with one transaction in flight each\n",
           grp, SMALL_THREADS, (unsigned long long)REC_BYTES(1), app_tps / SMALL_THREADS, app_us,
           pre_tps / SMALL_THREADS, pre_us, R->ls_tps, SMALL_THREADS);
    /* (b) SHA-256 */
    uint64_t n = scaled(2000000, 200000);
    progress("limits: SHA-256 of %llu entries on 1 and 2 threads", (unsigned long long)n);
    R->lb1_eps = sha_rate(1, n);
    R->lb2_eps = sha_rate(2, n);
    R->lb_bytes_per_entry = (double)REC_BYTES(ING_TX_ENTRIES) / ING_TX_ENTRIES;
    printf("(b) raw SHA-256 (tally_sha256_*) of the per-entry work (128-byte value hash + 77-byte leaf hash + "
           "65-byte node hash, + per 1000 entries a 94-byte tx leaf and a node): 1 thread %.0f entries/s "
           "(%.0f ns/entry, %.1f MB/s of log bytes), 2 threads %.0f entries/s\n",
           R->lb1_eps, 1e9 / R->lb1_eps, R->lb1_eps * R->lb_bytes_per_entry / 1e6, R->lb2_eps);
}

/* Short samples of limits (a) and (b), taken right next to a benchmark in the
** same process, so the ratio is not skewed by load that changes during the run. */
static adj adjacent_limits(void) {
    adj x;
    uint64_t done;
    double us, max_sec = R->scale < 0.2 ? 0.3 : 1.0;
    double sec = raw_write_sync("raw-adjacent.dat", (size_t)REC_BYTES(ING_TX_ENTRIES), R->ing_tx, max_sec, 0, &done, &us);
    x.a_eps = (double)done * ING_TX_ENTRIES / sec;
    uint64_t n = R->scale < 0.2 ? 100000 : 300000;
    x.b1_eps = sha_rate(1, n);
    x.b2_eps = sha_rate(2, n);
    return x;
}

/* ------------------------------------------------------------------ */
/* 2. Ingest.                                                          */
typedef struct ing_ctx {
    tally_db *db;
    uint64_t ntx;
    _Atomic uint64_t next, done;
} ing_ctx;

static void *ing_thread(void *p) {
    ing_ctx *c = p;
    tally_entry *e = calloc(ING_TX_ENTRIES, sizeof *e);
    uint8_t *keys = malloc((size_t)ING_TX_ENTRIES * KEY_LEN);
    if (!e || !keys) die("out of memory");
    for (;;) {
        uint64_t t = atomic_fetch_add(&c->next, 1);
        if (t >= c->ntx) break;
        for (uint64_t j = 0; j < ING_TX_ENTRIES; j++) {
            uint64_t i = t * ING_TX_ENTRIES + j;
            key_of(R->key_seed, i, keys + j * KEY_LEN);
            e[j].ns = TALLY_NS_KV;
            e[j].key = keys + j * KEY_LEN;
            e[j].key_len = KEY_LEN;
            e[j].value = value_of(i);
            e[j].value_len = VAL_LEN;
        }
        check(tally_commit(c->db, NULL, e, ING_TX_ENTRIES, NULL, 0), "commit");
        atomic_fetch_add(&c->done, 1);
    }
    free(e);
    free(keys);
    return NULL;
}

/* Checks that `n` random keys of the data set are readable with their values. */
static uint64_t check_sample(tally_db *db, uint64_t entries, uint64_t n) {
    rng r = {12345};
    for (uint64_t k = 0; k < n; k++) {
        uint64_t i = rnd(&r) % entries;
        uint8_t key[KEY_LEN];
        key_of(R->key_seed, i, key);
        tally_version v;
        check(tally_get(db, &v, TALLY_NS_KV, key, KEY_LEN, 0), "get after ingest");
        if (v.value_len != VAL_LEN || memcmp(v.value, value_of(i), VAL_LEN) != 0)
            die("get after ingest: entry %llu has a wrong value", (unsigned long long)i);
    }
    return n;
}

static void ingest(int threads, const char *name) {
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, name);
    rm_rf(dir);
    tally_db *db;
    tally_options o;
    tally_options_init(&o);
    o.durability = TALLY_SYNC_FULL;
    progress("ingest: adjacent limit samples (before)");
    adj before = adjacent_limits();
    check(tally_db_open(&db, dir, &o, NULL), "open");
    ing_ctx c = {.db = db, .ntx = R->ing_tx};
    pthread_t th[16];
    progress("ingest (%d committer thread%s): %llu transactions of %d entries", threads, threads > 1 ? "s" : "",
             (unsigned long long)c.ntx, ING_TX_ENTRIES);
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, ing_thread, &c);
    for (;;) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        uint64_t d = atomic_load(&c.done);
        static uint64_t last_print;
        if (d >= c.ntx) break;
        if (now_ns() - last_print > 2000000000ull) {
            last_print = now_ns();
            progress("  %llu/%llu tx after %.1f s", (unsigned long long)d, (unsigned long long)c.ntx,
                     secs(now_ns() - t0));
        }
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    /* every commit returned = durable; prove readable */
    uint64_t checked = check_sample(db, c.ntx * ING_TX_ENTRIES, 1000);
    double sec = secs(now_ns() - t0);
    tally_stats st;
    tally_db_stats(db, &st);
    uint64_t tc0 = now_ns();
    check(tally_db_close(db), "close");
    double close_sec = secs(now_ns() - tc0);
    progress("ingest: adjacent limit samples (after)");
    adj after = adjacent_limits();
    adj m = {(before.a_eps + after.a_eps) / 2, (before.b1_eps + after.b1_eps) / 2, (before.b2_eps + after.b2_eps) / 2};
    double eps = (double)c.ntx * ING_TX_ENTRIES / sec;
    double bytes = (double)REC_BYTES(ING_TX_ENTRIES) * (double)c.ntx;
    double group = st.syncs ? (double)st.commits / (double)st.syncs : 0;
    double sync_us = st.syncs ? (double)st.sync_ns_total / 1e3 / (double)st.syncs : 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/log", dir);
    uint64_t logb = du(path), dirb = du(dir);
    printf("ingest, %d committer thread%s: %llu entries in %llu tx, durable and readable (%llu sampled keys "
           "read back with tally_get) after %.2f s: %.0f entries/s, %.1f MB/s of log records\n",
           threads, threads > 1 ? "s" : "", (unsigned long long)(c.ntx * ING_TX_ENTRIES),
           (unsigned long long)c.ntx, (unsigned long long)checked, sec, eps, bytes / 1e6 / sec);
    printf("    %.2f x of limit (a) raw write+fdatasync (%.0f entries/s); %.2f x of limit (b) SHA-256 on 2 "
           "threads (%.0f entries/s); %.2f x of limit (b) on 1 thread\n",
           eps / R->la_eps, R->la_eps, eps / R->lb2_eps, R->lb2_eps, eps / R->lb1_eps);
    printf("    limits sampled in this process right before / after: (a) %.0f / %.0f entries/s, (b 1 thr) %.0f / %.0f, "
           "(b 2 thr) %.0f / %.0f entries/s -> %.2f x of adjacent limit (a), %.2f x of adjacent limit (b 2 thr), "
           "%.2f x of adjacent limit (b 1 thr)\n",
           before.a_eps, after.a_eps, before.b1_eps, after.b1_eps, before.b2_eps, after.b2_eps, eps / m.a_eps,
           eps / m.b2_eps, eps / m.b1_eps);
    printf("    group commit: %llu commits / %llu fdatasyncs = %.2f tx per sync, mean fdatasync %.0f us; "
           "index checkpoints during the run: %llu; close (final checkpoint) %.2f s; on disk: log %.1f MB, "
           "everything %.1f MB\n",
           (unsigned long long)st.commits, (unsigned long long)st.syncs, group, sync_us,
           (unsigned long long)st.checkpoints, close_sec, (double)logb / 1e6, (double)dirb / 1e6);
    if (threads == 1) {
        R->ing1_sec = sec, R->ing1_eps = eps, R->ing1_group = group, R->ing1_close = close_sec;
        R->ing1_adj = m;
    } else {
        R->ing2_sec = sec, R->ing2_eps = eps, R->ing2_mbps = bytes / 1e6 / sec, R->ing2_group = group;
        R->ing2_sync_us = sync_us, R->ing2_close = close_sec, R->ing2_ckpts = st.checkpoints;
        R->ing_bytes = bytes, R->ing_checked = checked;
        R->ing2_adj = m;
    }
}
/* Committer threads of the main ingest figure: the engine hashes each
** transaction in its committer's thread and groups concurrent commits into one
** fdatasync, so a loader uses several (as a client uses several connections). */
#define ING_COMMITTERS 8

static void ph_ing1(void) {
    printf("\n## 2. Ingest: %d entries/tx, %d-byte random keys, %d-byte values, durability FULL\n",
           ING_TX_ENTRIES, KEY_LEN, VAL_LEN);
    ingest(1, "ingest1");
}
static void ph_ing2(void) {
    if (!R->ran[PH_ING1])
        printf("\n## 2. Ingest: %d entries/tx, %d-byte random keys, %d-byte values, durability FULL\n",
               ING_TX_ENTRIES, KEY_LEN, VAL_LEN);
    ingest(ING_COMMITTERS, "ingest");
}
static void ph_reopen(void) {
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, "ingest");
    tally_db *db;
    tally_open_report rep;
    uint64_t t0 = now_ns();
    check(tally_db_open(&db, dir, NULL, &rep), "reopen");
    R->reopen_sec = secs(now_ns() - t0);
    R->reopen_rep = rep;
    uint64_t sz;
    uint8_t root[32];
    check(tally_state(db, &sz, root), "state");
    check_sample(db, R->ing_entries, 100);
    printf("reopen of the ingest ledger (tally_db_open after a clean close): %.3f s (goal <= 1 s); open report: "
           "tx_count %llu, torn_bytes_dropped %llu, replayed_tx %llu\n",
           R->reopen_sec, (unsigned long long)rep.tx_count, (unsigned long long)rep.torn_bytes_dropped,
           (unsigned long long)rep.replayed_tx);
    check(tally_db_close(db), "close");
}

/* ---- SQLite: what a user would build instead ---- */
static sqlite3 *sql_open(const char *path) {
    sqlite3 *s;
    if (sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        die("sqlite open %s: %s", path, sqlite3_errmsg(s));
    sqlite3_busy_timeout(s, 60000);
    char *err = NULL;
    if (sqlite3_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &err) != SQLITE_OK)
        die("sqlite pragmas: %s", err);
    return s;
}
static void sql_exec(sqlite3 *s, const char *q) {
    char *err = NULL;
    if (sqlite3_exec(s, q, NULL, NULL, &err) != SQLITE_OK) die("sqlite %s: %s", q, err);
}
static void sql_schema(sqlite3 *s) {
    sql_exec(s, "CREATE TABLE IF NOT EXISTS kv(key BLOB, value BLOB, tx INTEGER, hash BLOB);"
                "CREATE INDEX IF NOT EXISTS kv_key ON kv(key);");
}
static void sql_row_hash(const uint8_t *key, const uint8_t *val, uint8_t out[32]) {
    tally_sha256_ctx c;
    tally_sha256_init(&c);
    tally_sha256_update(&c, key, KEY_LEN);
    tally_sha256_update(&c, val, VAL_LEN);
    tally_sha256_final(&c, out);
}

static void ph_sql_ing(void) {
    char path[PATH_MAX];
    path_in(path, sizeof path, "sqlite-ingest.db");
    sqlite3 *s = sql_open(path);
    sql_schema(s);
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(s, "INSERT INTO kv(key, value, tx, hash) VALUES(?,?,?,?)", -1, &ins, NULL))
        die("sqlite prepare: %s", sqlite3_errmsg(s));
    uint64_t ntx = R->sql_rows / ING_TX_ENTRIES;
    progress("sqlite ingest: %llu transactions of %d rows", (unsigned long long)ntx, ING_TX_ENTRIES);
    uint64_t t0 = now_ns();
    for (uint64_t t = 0; t < ntx; t++) {
        sql_exec(s, "BEGIN");
        for (uint64_t j = 0; j < ING_TX_ENTRIES; j++) {
            uint64_t i = t * ING_TX_ENTRIES + j;
            uint8_t key[KEY_LEN], h[32];
            key_of(R->key_seed, i, key);
            sql_row_hash(key, value_of(i), h);
            sqlite3_bind_blob(ins, 1, key, KEY_LEN, SQLITE_TRANSIENT);
            sqlite3_bind_blob(ins, 2, value_of(i), VAL_LEN, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 3, (sqlite3_int64)(t + 1));
            sqlite3_bind_blob(ins, 4, h, 32, SQLITE_TRANSIENT);
            if (sqlite3_step(ins) != SQLITE_DONE) die("sqlite insert: %s", sqlite3_errmsg(s));
            sqlite3_reset(ins);
        }
        sql_exec(s, "COMMIT");
        if ((t & 255) == 255)
            progress("  sqlite %llu/%llu tx after %.1f s", (unsigned long long)t + 1, (unsigned long long)ntx,
                     secs(now_ns() - t0));
    }
    double sec = secs(now_ns() - t0);
    sqlite3_finalize(ins);
    sqlite3_close(s);
    R->sql_ing_sec = sec;
    R->sql_ing_eps = (double)R->sql_rows / sec;
    printf("SQLite ingest (WAL, synchronous=FULL, kv table + key index, SHA-256 per row, %d rows per "
           "BEGIN..COMMIT): %llu rows in %.2f s: %.0f rows/s\n",
           ING_TX_ENTRIES, (unsigned long long)R->sql_rows, sec, R->sql_ing_eps);
    if (R->ran[PH_ING2] && R->ok[PH_ING2])
        printf("    Tally ingest (%d threads) = %.1f x SQLite (%llu-row SQLite run)\n", ING_COMMITTERS, R->ing2_eps / R->sql_ing_eps,
               (unsigned long long)R->sql_rows);
}

/* ------------------------------------------------------------------ */
/* 3. Single-entry transactions from 64 threads.                      */
typedef struct sm_ctx {
    tally_db *db;
    sqlite3 *s;           /* per-thread connection for SQLite, else NULL */
    const char *sql_path;
    int id;
    _Atomic int *stop;
    uint64_t commits, busy;
    uint32_t *lat;
    size_t nlat, cap;
} sm_ctx;

static void *sm_thread(void *p) {
    sm_ctx *c = p;
    tally_entry e = {.ns = TALLY_NS_KV, .key_len = KEY_LEN, .value_len = VAL_LEN};
    uint8_t key[KEY_LEN];
    uint64_t i = 0;
    while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
        uint64_t k = ((uint64_t)c->id << 40) | i++;
        key_of(R->key_seed ^ 0x5555, k, key);
        e.key = key;
        e.value = value_of(k);
        uint64_t t0 = now_ns();
        check(tally_commit(c->db, NULL, &e, 1, NULL, 0), "commit");
        uint64_t d = now_ns() - t0;
        if (c->nlat < c->cap) c->lat[c->nlat++] = clamp32(d);
        c->commits++;
    }
    return NULL;
}

static void *sqs_thread(void *p) {
    sm_ctx *c = p;
    sqlite3 *s = sql_open(c->sql_path);
    sqlite3_stmt *ins, *beg, *com, *rb;
    if (sqlite3_prepare_v2(s, "INSERT INTO kv(key, value, tx, hash) VALUES(?,?,?,?)", -1, &ins, NULL) ||
        sqlite3_prepare_v2(s, "BEGIN IMMEDIATE", -1, &beg, NULL) || sqlite3_prepare_v2(s, "COMMIT", -1, &com, NULL) ||
        sqlite3_prepare_v2(s, "ROLLBACK", -1, &rb, NULL))
        die("sqlite prepare: %s", sqlite3_errmsg(s));
    uint8_t key[KEY_LEN], h[32];
    uint64_t i = 0;
    while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
        uint64_t k = ((uint64_t)c->id << 40) | i++;
        key_of(R->key_seed ^ 0x7777, k, key);
        sql_row_hash(key, value_of(k), h);
        int rc = sqlite3_step(beg);
        sqlite3_reset(beg);
        if (rc == SQLITE_BUSY) {
            c->busy++;
            continue;
        }
        if (rc != SQLITE_DONE) die("sqlite begin: %s", sqlite3_errmsg(s));
        sqlite3_bind_blob(ins, 1, key, KEY_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 2, value_of(k), VAL_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, (sqlite3_int64)k);
        sqlite3_bind_blob(ins, 4, h, 32, SQLITE_STATIC);
        rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (rc != SQLITE_DONE) die("sqlite insert: %s", sqlite3_errmsg(s));
        do {
            rc = sqlite3_step(com);
            sqlite3_reset(com);
            if (rc == SQLITE_BUSY) c->busy++;
        } while (rc == SQLITE_BUSY);
        if (rc != SQLITE_DONE) die("sqlite commit: %s", sqlite3_errmsg(s));
        c->commits++;
    }
    sqlite3_finalize(ins), sqlite3_finalize(beg), sqlite3_finalize(com), sqlite3_finalize(rb);
    sqlite3_close(s);
    return NULL;
}

static double sm_duration(void) { return R->scale * 3.0 < 0.5 ? 0.5 : R->scale * 3.0; }

static double run_threads(void *(*fn)(void *), sm_ctx *c, _Atomic int *stop) {
    pthread_t th[SMALL_THREADS];
    uint64_t t0 = now_ns();
    for (int i = 0; i < SMALL_THREADS; i++)
        if (pthread_create(&th[i], NULL, fn, &c[i])) die("pthread_create failed");
    struct timespec ts = {(time_t)sm_duration(), (long)((sm_duration() - (double)(time_t)sm_duration()) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(stop, 1);
    for (int i = 0; i < SMALL_THREADS; i++) pthread_join(th[i], NULL);
    return secs(now_ns() - t0);
}

static void ph_small(void) {
    printf("\n## 3. Single-entry transactions from %d threads, durability FULL (%.1f s run)\n", SMALL_THREADS,
           sm_duration());
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, "commit64");
    rm_rf(dir);
    tally_db *db;
    check(tally_db_open(&db, dir, NULL, NULL), "open");
    sm_ctx c[SMALL_THREADS];
    _Atomic int stop = 0;
    memset(c, 0, sizeof c);
    for (int i = 0; i < SMALL_THREADS; i++) {
        c[i].db = db, c[i].id = i, c[i].stop = &stop;
        c[i].cap = 1 << 16;
        c[i].lat = malloc(c[i].cap * sizeof *c[i].lat);
    }
    progress("commit64: %d threads for %.1f s", SMALL_THREADS, sm_duration());
    double sec = run_threads(sm_thread, c, &stop);
    tally_stats st;
    tally_db_stats(db, &st);
    check(tally_db_close(db), "close");
    uint64_t n = 0, nl = 0;
    for (int i = 0; i < SMALL_THREADS; i++) n += c[i].commits, nl += c[i].nlat;
    uint32_t *all = malloc((nl + 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < SMALL_THREADS; i++) {
        memcpy(all + k, c[i].lat, c[i].nlat * sizeof *all);
        k += c[i].nlat;
        free(c[i].lat);
    }
    R->sm_lat = lat_of(all, k);
    free(all);
    R->sm_sec = sec;
    R->sm_commits = n;
    R->sm_tps = (double)n / sec;
    R->sm_syncs = st.syncs;
    R->sm_group = st.syncs ? (double)st.commits / (double)st.syncs : 0;
    R->sm_sync_us = st.syncs ? (double)st.sync_ns_total / 1e3 / (double)st.syncs : 0;
    printf("Tally: %llu durable single-entry transactions in %.2f s: %.0f tx/s (goal >= 50k tx/s); %.2f x of "
           "limit (a') (%.0f tx/s)\n",
           (unsigned long long)n, sec, R->sm_tps, R->sm_tps / R->ls_tps, R->ls_tps);
    printf("    group commit: %llu commits / %llu fdatasyncs = %.1f tx per sync; mean fdatasync %.0f us (raw "
           "same-size group: %.0f us); commit latency p50 %.0f us, p99 %.0f us, mean %.0f us\n",
           (unsigned long long)st.commits, (unsigned long long)st.syncs, R->sm_group, R->sm_sync_us, R->ls_sync_us,
           R->sm_lat.p50 / 1e3, R->sm_lat.p99 / 1e3, R->sm_lat.mean / 1e3);
}

static void ph_sql_small(void) {
    char path[PATH_MAX];
    path_in(path, sizeof path, "sqlite-commit64.db");
    sqlite3 *s = sql_open(path);
    sql_schema(s);
    sm_ctx c[SMALL_THREADS];
    _Atomic int stop = 0;
    memset(c, 0, sizeof c);
    for (int i = 0; i < SMALL_THREADS; i++) c[i].sql_path = path, c[i].id = i, c[i].stop = &stop;
    progress("sqlite commit64: %d connections for %.1f s", SMALL_THREADS, sm_duration());
    double sec = run_threads(sqs_thread, c, &stop);
    sqlite3_close(s);
    uint64_t n = 0, busy = 0;
    for (int i = 0; i < SMALL_THREADS; i++) n += c[i].commits, busy += c[i].busy;
    R->sqs_tps = (double)n / sec;
    R->sqs_commits = n;
    R->sqs_busy = busy;
    printf("SQLite: %d threads, a connection each (WAL, synchronous=FULL, busy_timeout 60 s, BEGIN IMMEDIATE; "
           "INSERT; COMMIT): %llu transactions in %.2f s: %.0f tx/s (%llu SQLITE_BUSY retries)\n",
           SMALL_THREADS, (unsigned long long)n, sec, R->sqs_tps, (unsigned long long)busy);
    if (R->ran[PH_SMALL] && R->ok[PH_SMALL])
        printf("    Tally = %.1f x SQLite\n", R->sm_tps / R->sqs_tps);
}

/* ------------------------------------------------------------------ */
/* 4. Point reads.                                                     */
typedef struct get_ctx {
    tally_db *db;
    const uint64_t *idx;
    size_t n;
    uint64_t sink;
} get_ctx;

static void *get_thread(void *p) {
    get_ctx *g = p;
    uint8_t key[KEY_LEN];
    for (size_t k = 0; k < g->n; k++) {
        key_of(R->key_seed, g->idx[k], key);
        tally_version v;
        check(tally_get(g->db, &v, TALLY_NS_KV, key, KEY_LEN, 0), "get");
        g->sink += v.tx + ((const uint8_t *)v.value)[0];
    }
    return NULL;
}

static double timer_overhead(void) {
    uint64_t t0 = now_ns(), x = 0;
    for (int i = 0; i < 100000; i++) x += now_ns();
    (void)x;
    return (double)(now_ns() - t0) / 100000.0;
}

static void ph_get(void) {
    printf("\n## 4. Point reads on the ingest ledger (%llu keys, one version each), warm\n",
           (unsigned long long)R->ing_entries);
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, "ingest");
    tally_db *db;
    check(tally_db_open(&db, dir, NULL, NULL), "open");
    uint64_t size;
    uint8_t root[32];
    check(tally_state(db, &size, root), "state");
    size_t n = scaled(1000000, 20000);
    R->get_ops = n;
    uint64_t *idx = malloc(n * sizeof *idx), *asof = malloc(n * sizeof *asof);
    uint32_t *lt = malloc(n * sizeof *lt);
    rng r = {777};
    for (size_t k = 0; k < n; k++) idx[k] = rnd(&r) % R->ing_entries;
    progress("get: warm-up pass over %zu random keys", n);
    uint8_t key[KEY_LEN];
    for (size_t k = 0; k < n; k++) { /* warm-up; learn each key's tx for the as-of reads */
        key_of(R->key_seed, idx[k], key);
        tally_version v;
        check(tally_get(db, &v, TALLY_NS_KV, key, KEY_LEN, 0), "get");
        if (memcmp(v.value, value_of(idx[k]), VAL_LEN) != 0) die("get: wrong value");
        asof[k] = rnd_in(&r, v.tx, size);
    }
    R->timer_ns = timer_overhead();
    /* batch timing (mean without per-op timer) */
    get_ctx g = {db, idx, n, 0};
    uint64_t t0 = now_ns();
    get_thread(&g);
    R->get_batch_ns = (double)(now_ns() - t0) / (double)n;
    /* per-op timing, latest */
    progress("get: per-op timing");
    for (size_t k = 0; k < n; k++) {
        key_of(R->key_seed, idx[k], key);
        tally_version v;
        uint64_t a = now_ns();
        int rc = tally_get(db, &v, TALLY_NS_KV, key, KEY_LEN, 0);
        lt[k] = clamp32(now_ns() - a);
        if (rc) check(rc, "get");
    }
    R->get_lat = lat_of(lt, n);
    /* per-op timing, as of tx N (N uniform between the key's tx and the ledger size) */
    for (size_t k = 0; k < n; k++) {
        key_of(R->key_seed, idx[k], key);
        tally_version v;
        uint64_t a = now_ns();
        int rc = tally_get(db, &v, TALLY_NS_KV, key, KEY_LEN, asof[k]);
        lt[k] = clamp32(now_ns() - a);
        if (rc) check(rc, "get as of");
    }
    R->asof_lat = lat_of(lt, n);
    /* 2 threads */
    get_ctx g2[2] = {{db, idx, n / 2, 0}, {db, idx + n / 2, n - n / 2, 0}};
    pthread_t th[2];
    t0 = now_ns();
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, get_thread, &g2[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    R->get2_ops_s = (double)n / secs(now_ns() - t0);
    check(tally_db_close(db), "close");
    free(idx), free(asof), free(lt);
    printf("tally_get latest, %zu random keys: p50 %.2f us, p99 %.2f us, mean %.2f us per op (goal p50 <= 2 us); "
           "batch-timed mean %.2f us (%.0f gets/s on 1 thread); clock_gettime overhead ~%.0f ns included in "
           "per-op figures\n",
           n, R->get_lat.p50 / 1e3, R->get_lat.p99 / 1e3, R->get_lat.mean / 1e3, R->get_batch_ns / 1e3,
           1e9 / R->get_batch_ns, R->timer_ns);
    printf("tally_get as of tx N (N uniform in [key's tx, ledger size]): p50 %.2f us, p99 %.2f us, mean %.2f us "
           "(goal p50 <= 5 us)\n",
           R->asof_lat.p50 / 1e3, R->asof_lat.p99 / 1e3, R->asof_lat.mean / 1e3);
    printf("tally_get latest on 2 threads: %.0f gets/s\n", R->get2_ops_s);
}

static void ph_sql_get(void) {
    char path[PATH_MAX];
    path_in(path, sizeof path, "sqlite-ingest.db");
    sqlite3 *s = sql_open(path);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s, "SELECT value, tx, hash FROM kv WHERE key = ?", -1, &q, NULL))
        die("sqlite prepare: %s", sqlite3_errmsg(s));
    size_t n = scaled(1000000, 20000);
    uint32_t *lt = malloc(n * sizeof *lt);
    uint64_t *idx = malloc(n * sizeof *idx), sink = 0;
    rng r = {778};
    for (size_t k = 0; k < n; k++) idx[k] = rnd(&r) % R->sql_rows;
    uint8_t key[KEY_LEN];
    progress("sqlite get: %zu lookups", n);
    for (int pass = 0; pass < 3; pass++) { /* 0 warm-up, 1 batch, 2 per-op */
        uint64_t t0 = now_ns();
        for (size_t k = 0; k < n; k++) {
            key_of(R->key_seed, idx[k], key);
            uint64_t a = pass == 2 ? now_ns() : 0;
            sqlite3_bind_blob(q, 1, key, KEY_LEN, SQLITE_STATIC);
            if (sqlite3_step(q) != SQLITE_ROW) die("sqlite lookup: key not found");
            const uint8_t *v = sqlite3_column_blob(q, 0);
            sink += (uint64_t)sqlite3_column_int64(q, 1) + v[0];
            sqlite3_reset(q);
            if (pass == 2) lt[k] = clamp32(now_ns() - a);
        }
        if (pass == 1) R->sql_get_batch_ns = (double)(now_ns() - t0) / (double)n;
    }
    R->sql_get_lat = lat_of(lt, n);
    sqlite3_finalize(q);
    sqlite3_close(s);
    free(lt), free(idx);
    printf("SQLite point lookup (SELECT value, tx, hash WHERE key = ?, prepared; table of %llu rows): p50 %.2f "
           "us, p99 %.2f us, mean %.2f us; batch-timed mean %.2f us (sink %llu)\n",
           (unsigned long long)R->sql_rows, R->sql_get_lat.p50 / 1e3, R->sql_get_lat.p99 / 1e3,
           R->sql_get_lat.mean / 1e3, R->sql_get_batch_ns / 1e3, (unsigned long long)(sink & 1));
    if (R->ran[PH_GET] && R->ok[PH_GET])
        printf("    Tally get p50 = %.2f x SQLite's p50 latency (lower is faster; SQLite table is %.0fx smaller)\n",
               R->get_lat.p50 / R->sql_get_lat.p50, (double)R->ing_entries / (double)R->sql_rows);
}

/* ------------------------------------------------------------------ */
/* 6. verify.                                                          */
static int ver_progress(void *ctx, uint64_t done, uint64_t total) {
    uint64_t *last = ctx;
    if (now_ns() - *last > 2000000000ull) {
        *last = now_ns();
        progress("  verify %llu/%llu tx", (unsigned long long)done, (unsigned long long)total);
    }
    return 0;
}
static void ph_verify(void) {
    printf("\n## 6. tally_verify_dir on the ingest ledger\n");
    char dir[PATH_MAX], logd[PATH_MAX];
    path_in(dir, sizeof dir, "ingest");
    snprintf(logd, sizeof logd, "%s/log", dir);
    R->ver_bytes = (double)du(logd);
    tally_verify_result res;
    uint64_t last = now_ns();
    uint64_t nsha = R->scale < 0.2 ? 100000 : 300000;
    double b_before = sha_rate(1, nsha);
    progress("verify: %.0f MB of log", R->ver_bytes / 1e6);
    uint64_t t0 = now_ns();
    check(tally_verify_dir(dir, &res, ver_progress, &last), "verify");
    R->ver_sec = secs(now_ns() - t0);
    R->ver_ok = res.ok;
    snprintf(R->ver_err, sizeof R->ver_err, "%s", res.error);
    R->ver_mbps = R->ver_bytes / 1e6 / R->ver_sec;
    R->ver_eps = (double)R->ing_entries / R->ver_sec;
    double lim_mbps = R->lb1_eps * (R->ver_bytes / (double)R->ing_entries) / 1e6;
    printf("verify: %s, %llu tx checked, %.0f MB of log in %.2f s: %.1f MB/s, %.0f entries/s; %.2f x of limit "
           "(b) raw SHA-256 of the same per-entry work on 1 core (%.0f entries/s = %.1f MB/s of these log bytes; "
           "goal >= 0.80)\n",
           res.ok ? "ok" : res.error, (unsigned long long)res.tx_checked, R->ver_bytes / 1e6, R->ver_sec,
           R->ver_mbps, R->ver_eps, R->ver_eps / R->lb1_eps, R->lb1_eps, lim_mbps);
    double b_after = sha_rate(1, nsha);
    R->ver_adj.b1_eps = (b_before + b_after) / 2;
    printf("    limit (b, 1 core) sampled in this process right before / after: %.0f / %.0f entries/s -> %.2f x of "
           "adjacent limit (b)\n",
           b_before, b_after, R->ver_eps / R->ver_adj.b1_eps);
    if (!res.ok) die("verify failed: %s", res.error);
}

/* ------------------------------------------------------------------ */
/* 5/7. The ledger of many single-entry transactions; proofs; open.   */
typedef struct pf_ctx {
    tally_db *db;
    uint64_t target, t0, deadline;
    _Atomic uint64_t next, done;
    _Atomic int stop;
} pf_ctx;

static void *pf_thread(void *p) {
    pf_ctx *c = p;
    tally_entry e = {.ns = TALLY_NS_KV, .key_len = KEY_LEN, .value_len = VAL_LEN};
    uint8_t key[KEY_LEN];
    for (;;) {
        if (atomic_load_explicit(&c->stop, memory_order_relaxed)) break;
        uint64_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->target) break;
        key_of(R->pf_seed, i, key);
        e.key = key;
        e.value = value_of(i);
        check(tally_commit(c->db, NULL, &e, 1, NULL, 0), "commit");
        atomic_fetch_add_explicit(&c->done, 1, memory_order_relaxed);
    }
    return NULL;
}

static void ph_pfbuild(void) {
    printf("\n## 5. Proofs on a ledger of single-entry transactions\n");
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, "proofs");
    rm_rf(dir);
    tally_db *db;
    tally_options o;
    tally_options_init(&o);
    o.durability = TALLY_SYNC_NONE;
    check(tally_db_open(&db, dir, &o, NULL), "open");
    pf_ctx c;
    memset(&c, 0, sizeof c);
    c.db = db;
    c.target = R->pf_target;
    progress("proofs: building %llu single-entry transactions (durability NONE, %d committer threads, cap %.0f s)",
             (unsigned long long)c.target, PF_THREADS, PF_CAP_SEC);
    pthread_t th[PF_THREADS];
    uint64_t t0 = now_ns(), lastp = t0;
    for (int i = 0; i < PF_THREADS; i++) pthread_create(&th[i], NULL, pf_thread, &c);
    for (;;) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        uint64_t d = atomic_load(&c.done), now = now_ns();
        if (atomic_load(&c.next) >= c.target) break;
        if (secs(now - t0) > PF_CAP_SEC) {
            atomic_store(&c.stop, 1);
            R->pf_capped = 1;
            break;
        }
        if (now - lastp > 5000000000ull) {
            lastp = now;
            progress("  %llu/%llu tx after %.0f s", (unsigned long long)d, (unsigned long long)c.target, secs(now - t0));
        }
    }
    for (int i = 0; i < PF_THREADS; i++) pthread_join(th[i], NULL);
    R->pf_build_sec = secs(now_ns() - t0);
    uint64_t size;
    uint8_t root[32];
    check(tally_state(db, &size, root), "state");
    R->pf_tx = size;
    R->pf_build_tps = (double)size / R->pf_build_sec;
    tally_stats st;
    tally_db_stats(db, &st);
    uint64_t tc = now_ns();
    check(tally_db_close(db), "close");
    R->pf_close_sec = secs(now_ns() - tc);
    printf("built %llu single-entry transactions%s in %.1f s (durability NONE, %d committer threads): %.0f tx/s; "
           "%llu index checkpoints; clean close %.2f s\n",
           (unsigned long long)size, R->pf_capped ? " (STOPPED at the time cap: fewer than the target)" : "",
           R->pf_build_sec, PF_THREADS, R->pf_build_tps, (unsigned long long)st.checkpoints, R->pf_close_sec);
}

static void ph_open(void) {
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, "proofs");
    tally_db *db;
    tally_open_report rep;
    uint64_t t0 = now_ns();
    check(tally_db_open(&db, dir, NULL, &rep), "open");
    R->open_sec = secs(now_ns() - t0);
    R->open_rep = rep;
    printf("\n## 7. Open (restart) of the %llu-transaction ledger after a clean close\n",
           (unsigned long long)rep.tx_count);
    printf("tally_db_open: %.3f s (goal <= 1 s); open report: tx_count %llu, torn_bytes_dropped %llu, replayed_tx "
           "%llu\n",
           R->open_sec, (unsigned long long)rep.tx_count, (unsigned long long)rep.torn_bytes_dropped,
           (unsigned long long)rep.replayed_tx);
    check(tally_db_close(db), "close");
}

static void ph_proofs(void) {
    char dir[PATH_MAX];
    path_in(dir, sizeof dir, "proofs");
    tally_db *db;
    check(tally_db_open(&db, dir, NULL, NULL), "open");
    uint64_t S;
    uint8_t root[32];
    check(tally_state(db, &S, root), "state");
    size_t n = scaled(100000, 5000), nv = n < 20000 ? n : 20000;
    R->pf_ops = n;
    uint32_t *lt = malloc(n * sizeof *lt);
    uint64_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    tally_proof *pr = malloc(nv * sizeof *pr);
    uint8_t (*ra)[32] = malloc(nv * 32), (*rb)[32] = malloc(nv * 32), (*lf)[32] = malloc(nv * 32);
    memset(pr, 0xa5, nv * sizeof *pr);
    memset(lt, 0, n * sizeof *lt);
    rng r = {99};
    progress("proofs: %zu inclusion and %zu consistency proofs on %llu tx", n, n, (unsigned long long)S);
    /* inclusion: tx uniform in [1, S], tree size uniform in [tx, S] */
    for (size_t k = 0; k < n; k++) a[k] = rnd_in(&r, 1, S), b[k] = rnd_in(&r, a[k], S);
    tally_proof p;
    /* warm-up: the same calls, into the same output memory (the first write into
    ** fresh memory costs ~10 us per proof on this VM, which is not the engine's) */
    for (size_t k = 0; k < n; k++) check(tally_proof_tx(db, k < nv ? &pr[k] : &p, a[k], b[k]), "proof_tx");
    for (size_t k = 0; k < n; k++) {
        uint64_t t = now_ns();
        int rc = tally_proof_tx(db, k < nv ? &pr[k] : &p, a[k], b[k]);
        lt[k] = clamp32(now_ns() - t);
        check(rc, "proof_tx");
    }
    R->inc = lat_of(lt, n);
    /* verification of the first nv (leaf and root fetched outside the timing) */
    for (size_t k = 0; k < nv; k++) {
        tally_tx_info info;
        check(tally_tx_get(db, &info, a[k]), "tx_get");
        memcpy(lf[k], info.hash, 32);
        uint64_t t = now_ns();
        check(tally_root_at(db, rb[k], b[k]), "root_at");
        lt[k] = clamp32(now_ns() - t);
    }
    R->root_at = lat_of(lt, nv);
    for (size_t k = 0; k < nv; k++) {
        uint64_t t = now_ns();
        int rc = tally_verify_inclusion(lf[k], &pr[k], rb[k]);
        lt[k] = clamp32(now_ns() - t);
        if (rc) die("inclusion proof %zu did not verify", k);
    }
    R->vinc = lat_of(lt, nv);
    /* consistency: old uniform in [1, S], new uniform in [old, S] */
    for (size_t k = 0; k < n; k++) a[k] = rnd_in(&r, 1, S), b[k] = rnd_in(&r, a[k], S);
    for (size_t k = 0; k < n; k++)
        check(tally_proof_consistency(db, k < nv ? &pr[k] : &p, a[k], b[k]), "proof_consistency");
    for (size_t k = 0; k < n; k++) {
        uint64_t t = now_ns();
        int rc = tally_proof_consistency(db, k < nv ? &pr[k] : &p, a[k], b[k]);
        lt[k] = clamp32(now_ns() - t);
        check(rc, "proof_consistency");
    }
    R->con = lat_of(lt, n);
    for (size_t k = 0; k < nv; k++) {
        check(tally_root_at(db, ra[k], a[k]), "root_at");
        check(tally_root_at(db, rb[k], b[k]), "root_at");
    }
    for (size_t k = 0; k < nv; k++) {
        uint64_t t = now_ns();
        int rc = tally_verify_consistency(&pr[k], ra[k], rb[k]);
        lt[k] = clamp32(now_ns() - t);
        if (rc) die("consistency proof %zu did not verify", k);
    }
    R->vcon = lat_of(lt, nv);
    check(tally_db_close(db), "close");
    printf("on %llu transactions, %zu random proofs each (warm):\n", (unsigned long long)S, n);
    printf("tally_proof_tx (tx uniform, tree size uniform in [tx, size]): p50 %.2f us, mean %.2f us, p99 %.2f us "
           "(goal <= 10 us)\n",
           R->inc.p50 / 1e3, R->inc.mean / 1e3, R->inc.p99 / 1e3);
    printf("tally_proof_consistency (random old <= new): p50 %.2f us, mean %.2f us, p99 %.2f us (goal <= 10 us)\n",
           R->con.p50 / 1e3, R->con.mean / 1e3, R->con.p99 / 1e3);
    printf("verification (%zu each, all verified): tally_verify_inclusion p50 %.2f us, mean %.2f us; "
           "tally_verify_consistency p50 %.2f us, mean %.2f us; tally_root_at p50 %.2f us, mean %.2f us\n",
           nv, R->vinc.p50 / 1e3, R->vinc.mean / 1e3, R->vcon.p50 / 1e3, R->vcon.mean / 1e3, R->root_at.p50 / 1e3,
           R->root_at.mean / 1e3);
    free(lt), free(a), free(b), free(pr), free(ra), free(rb), free(lf);
}

/* ------------------------------------------------------------------ */
/* Driver.                                                             */
typedef void (*phase_fn)(void);
static const phase_fn ph_fn[PH_COUNT] = {ph_limits, ph_ing1,     ph_ing2, ph_reopen, ph_sql_ing,
                                         ph_small,  ph_sql_small, ph_get,  ph_sql_get, ph_verify,
                                         ph_pfbuild, ph_proofs,   ph_open};

/* Busy CPU seconds of the whole machine so far (all CPUs, from /proc/stat). */
static double machine_busy_sec(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) != 8)
        memset(v, 0, sizeof v);
    fclose(f);
    /* user nice system idle iowait irq softirq steal: busy = all but idle and iowait */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static void run_phase(int ph) {
    fflush(stdout);
    fflush(stderr);
    uint64_t t0 = now_ns();
    double busy0 = machine_busy_sec();
    progress("phase %s", ph_name[ph]);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        ph_fn[ph]();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0) die("wait4: %s", strerror(errno));
    R->ran[ph] = 1;
    R->ok[ph] = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    R->rss_kb[ph] = ru.ru_maxrss;
    R->wall[ph] = secs(now_ns() - t0);
    double own = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    double other = machine_busy_sec() - busy0 - own;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    R->other_load[ph] = other > 0 ? other / (R->wall[ph] * (double)ncpu) : 0;
    R->own_cpu[ph] = own;
    R->wr_bytes[ph] = (double)ru.ru_oublock * 512.0;
    printf("    [%s: peak RSS %.1f MiB; wall %.1f s; own CPU %.1f s; written to storage %.1f MB; other processes "
           "used %.0f%% of the machine's %ld CPUs meanwhile%s]\n",
           ph_name[ph], (double)ru.ru_maxrss / 1024.0, R->wall[ph], own, R->wr_bytes[ph] / 1e6,
           R->other_load[ph] * 100, ncpu, R->ok[ph] ? "" : "; FAILED");
    fflush(stdout);
}

static const char *rss(int ph, char *buf, size_t len) {
    if (!R->ran[ph]) snprintf(buf, len, "-");
    else snprintf(buf, len, "%.0f MiB", (double)R->rss_kb[ph] / 1024.0);
    return buf;
}
static int have(int ph) { return R->ran[ph] && R->ok[ph]; }

static void print_table(void) {
    char b1[32], b2[32], b3[32], b4[32], rs[32], ld[32], sq[96];
#define RSS(ph) rss(ph, rs, sizeof rs)
#define LOAD(ph) (snprintf(ld, sizeof ld, "%.0f%%", R->other_load[ph] * 100), ld)
    printf("\n## Summary (Markdown, for docs/PERFORMANCE.md)\n\n");
    printf("Scale %.3g. Same-run limits: (a) raw pwrite+fdatasync of the same bytes in the same write sizes, (a') raw "
           "pwrite+fdatasync of a 64-record group, (b) raw SHA-256 (OpenSSL, tally_sha256_*) of the same hashing "
           "work. \"adj.\" = the limit sampled in the same process right before and after the benchmark. Peak RSS = "
           "ru_maxrss of the phase's process (includes touched file mappings). Other load = CPU used by other "
           "processes on the machine during the phase.\n\n",
           R->scale);
    printf("| Benchmark | Tally | Same-run limit | x of limit | SQLite (same run) | Goal | Peak RSS | Other load |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    if (have(PH_LIMITS)) {
        printf("| Limit (a): raw write+fdatasync, %.0f MB in %llu-byte writes | %.1f MB/s = %s entries/s (fdatasync "
               "%.0f us) | - | - | - | - | %s | %s |\n",
               R->la_bytes / 1e6, (unsigned long long)REC_BYTES(ING_TX_ENTRIES), R->la_mbps,
               human(R->la_eps, b1, sizeof b1), R->la_sync_us, RSS(PH_LIMITS), LOAD(PH_LIMITS));
        printf("| Limit (a'): raw write+fdatasync of %.0f-byte groups (the better of appending and overwriting preallocated zeros) | fdatasync %.0f us = %s tx/s for 64 threads | "
               "- | - | - | - | - | - |\n",
               R->ls_group_bytes, R->ls_sync_us, human(R->ls_tps, b1, sizeof b1));
        printf("| Limit (b): raw SHA-256 of the per-entry hashing | 1 core %s entries/s, 2 threads %s entries/s | - "
               "| - | - | - | - | - |\n",
               human(R->lb1_eps, b1, sizeof b1), human(R->lb2_eps, b2, sizeof b2));
    }
    if (have(PH_ING2)) {
        if (have(PH_SQL_ING))
            snprintf(sq, sizeof sq, "%s rows/s, %s rows (Tally = %.1f x SQLite)", human(R->sql_ing_eps, b3, sizeof b3),
                     human((double)R->sql_rows, b4, sizeof b4), R->ing2_eps / R->sql_ing_eps);
        else
            snprintf(sq, sizeof sq, "-");
        printf("| Ingest, 1000 entries/tx, FULL, %d committers, %s entries | %s entries/s, %.1f MB/s | (a) %s "
               "entries/s; (b, 2 thr) %s entries/s | %.2f x of limit (a) (adj. %.2f); %.2f x of limit (b) (adj. "
               "%.2f) | %s | >= 2M entries/s, >= 0.5 x of limit | %s | %s |\n",
               ING_COMMITTERS, human((double)R->ing_entries, b4, sizeof b4), human(R->ing2_eps, b1, sizeof b1), R->ing2_mbps,
               human(R->la_eps, b2, sizeof b2), human(R->lb2_eps, b3, sizeof b3), R->ing2_eps / R->la_eps,
               R->ing2_eps / R->ing2_adj.a_eps, R->ing2_eps / R->lb2_eps, R->ing2_eps / R->ing2_adj.b2_eps, sq,
               RSS(PH_ING2), LOAD(PH_ING2));
    }
    if (have(PH_ING1))
        printf("| Ingest, 1 committer | %s entries/s | (a) %s entries/s; (b, 1 thr) %s entries/s | %.2f x of limit "
               "(a) (adj. %.2f); %.2f x of limit (b, 1 thr) (adj. %.2f) | - | - | %s | %s |\n",
               human(R->ing1_eps, b1, sizeof b1), human(R->la_eps, b2, sizeof b2), human(R->lb1_eps, b3, sizeof b3),
               R->ing1_eps / R->la_eps, R->ing1_eps / R->ing1_adj.a_eps, R->ing1_eps / R->lb1_eps,
               R->ing1_eps / R->ing1_adj.b1_eps, RSS(PH_ING1), LOAD(PH_ING1));
    if (have(PH_REOPEN))
        printf("| Reopen of the ingest ledger (%s tx) | %.3f s (replayed %llu tx) | - | - | - | <= 1 s | %s | %s |\n",
               human((double)R->reopen_rep.tx_count, b1, sizeof b1), R->reopen_sec,
               (unsigned long long)R->reopen_rep.replayed_tx, RSS(PH_REOPEN), LOAD(PH_REOPEN));
    if (have(PH_SMALL)) {
        if (have(PH_SQL_SMALL))
            snprintf(sq, sizeof sq, "%.0f tx/s (Tally = %.1f x SQLite)", R->sqs_tps, R->sm_tps / R->sqs_tps);
        else
            snprintf(sq, sizeof sq, "-");
        printf("| 1-entry tx, 64 threads, FULL | %s tx/s (%.1f tx/sync, fdatasync %.0f us, commit p50 %.1f ms) | "
               "(a') %s tx/s | %.2f x of limit (a') | %s | >= 50k tx/s | %s | %s |\n",
               human(R->sm_tps, b1, sizeof b1), R->sm_group, R->sm_sync_us, R->sm_lat.p50 / 1e6,
               human(R->ls_tps, b2, sizeof b2), R->sm_tps / R->ls_tps, sq, RSS(PH_SMALL), LOAD(PH_SMALL));
    }
    if (have(PH_GET)) {
        if (have(PH_SQL_GET))
            snprintf(sq, sizeof sq, "p50 %.2f / p99 %.2f / mean %.2f us (%s rows)", R->sql_get_lat.p50 / 1e3,
                     R->sql_get_lat.p99 / 1e3, R->sql_get_lat.mean / 1e3, human((double)R->sql_rows, b3, sizeof b3));
        else
            snprintf(sq, sizeof sq, "-");
        printf("| get latest, %s keys, warm | p50 %.2f / p99 %.2f / mean %.2f us; 2 threads %s gets/s | - | - | %s "
               "| p50 <= 2 us | %s | %s |\n",
               human((double)R->ing_entries, b1, sizeof b1), R->get_lat.p50 / 1e3, R->get_lat.p99 / 1e3,
               R->get_lat.mean / 1e3, human(R->get2_ops_s, b2, sizeof b2), sq, RSS(PH_GET), LOAD(PH_GET));
        printf("| get as of tx N, %s keys, warm | p50 %.2f / p99 %.2f / mean %.2f us | - | - | - | p50 <= 5 us | %s "
               "| %s |\n",
               human((double)R->ing_entries, b1, sizeof b1), R->asof_lat.p50 / 1e3, R->asof_lat.p99 / 1e3,
               R->asof_lat.mean / 1e3, RSS(PH_GET), LOAD(PH_GET));
    }
    if (have(PH_VERIFY))
        printf("| verify, ingest ledger (%.0f MB of log) | %.1f MB/s, %s entries/s | (b, 1 core) %s entries/s | %.2f "
               "x of limit (b) (adj. %.2f) | - | >= 0.8 x of limit | %s | %s |\n",
               R->ver_bytes / 1e6, R->ver_mbps, human(R->ver_eps, b1, sizeof b1), human(R->lb1_eps, b2, sizeof b2),
               R->ver_eps / R->lb1_eps, R->ver_eps / R->ver_adj.b1_eps, RSS(PH_VERIFY), LOAD(PH_VERIFY));
    if (have(PH_PFBUILD))
        printf("| Build: %s 1-entry tx%s, durability NONE, %d committers | %s tx/s | - | - | - | - | %s | %s |\n",
               human((double)R->pf_tx, b2, sizeof b2), R->pf_capped ? " (time-capped)" : "", PF_THREADS,
               human(R->pf_build_tps, b1, sizeof b1), RSS(PH_PFBUILD), LOAD(PH_PFBUILD));
    if (have(PH_PROOFS)) {
        printf("| Inclusion proof, %s tx | p50 %.2f / mean %.2f / p99 %.2f us (verify mean %.2f us) | - | - | - | "
               "<= 10 us | %s | %s |\n",
               human((double)R->pf_tx, b1, sizeof b1), R->inc.p50 / 1e3, R->inc.mean / 1e3, R->inc.p99 / 1e3,
               R->vinc.mean / 1e3, RSS(PH_PROOFS), LOAD(PH_PROOFS));
        printf("| Consistency proof, %s tx | p50 %.2f / mean %.2f / p99 %.2f us (verify mean %.2f us) | - | - | - | "
               "<= 10 us | %s | %s |\n",
               human((double)R->pf_tx, b1, sizeof b1), R->con.p50 / 1e3, R->con.mean / 1e3, R->con.p99 / 1e3,
               R->vcon.mean / 1e3, RSS(PH_PROOFS), LOAD(PH_PROOFS));
    }
    if (have(PH_OPEN))
        printf("| Open after clean close, %s tx | %.3f s (replayed %llu tx) | - | - | - | <= 1 s | %s | %s |\n",
               human((double)R->open_rep.tx_count, b1, sizeof b1), R->open_sec,
               (unsigned long long)R->open_rep.replayed_tx, RSS(PH_OPEN), LOAD(PH_OPEN));
#undef RSS
#undef LOAD
    for (int i = 0; i < PH_COUNT; i++)
        if (R->ran[i] && !R->ok[i]) printf("\nphase %s FAILED (see stderr)\n", ph_name[i]);
}

static void usage(void) {
    fprintf(stderr, "usage: bench [--scale F] [--quick] [--only limits|ingest|commit64|get|proofs|verify|open]\n");
    exit(2);
}

int main(int argc, char **argv) {
    double scale = 1.0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) scale = atof(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0) scale = 0.05;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else usage();
    }
    if (!(scale > 0) || scale > 100) usage();
    int want[PH_COUNT] = {0};
    if (!only || strcmp(only, "all") == 0) {
        for (int i = 0; i < PH_COUNT; i++) want[i] = 1;
    } else if (strcmp(only, "limits") == 0) {
        want[PH_LIMITS] = 1;
    } else if (strcmp(only, "ingest") == 0) {
        want[PH_LIMITS] = want[PH_ING1] = want[PH_ING2] = want[PH_REOPEN] = want[PH_SQL_ING] = 1;
    } else if (strcmp(only, "commit64") == 0) {
        want[PH_LIMITS] = want[PH_SMALL] = want[PH_SQL_SMALL] = 1;
    } else if (strcmp(only, "get") == 0) {
        want[PH_ING2] = want[PH_SQL_ING] = want[PH_GET] = want[PH_SQL_GET] = 1;
    } else if (strcmp(only, "verify") == 0) {
        want[PH_LIMITS] = want[PH_ING2] = want[PH_VERIFY] = 1;
    } else if (strcmp(only, "proofs") == 0) {
        want[PH_PFBUILD] = want[PH_PROOFS] = 1;
    } else if (strcmp(only, "open") == 0) {
        want[PH_PFBUILD] = want[PH_OPEN] = 1;
    } else {
        usage();
    }
    if (want[PH_ING2] && !want[PH_LIMITS]) want[PH_LIMITS] = 1; /* ratios need the limits */

    R = mmap(NULL, sizeof *R, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (R == MAP_FAILED) die("mmap: %s", strerror(errno));
    memset(R, 0, sizeof *R);
    R->scale = scale;
    R->key_seed = 0x7a11c0ffee123457ull;
    R->pf_seed = 0x0dd5eed5eed5eed5ull;
    R->ing_tx = scaled(10000, 10);
    R->ing_entries = R->ing_tx * ING_TX_ENTRIES;
    R->sql_rows = scaled(1000000, 10000) / ING_TX_ENTRIES * ING_TX_ENTRIES;
    R->pf_target = scaled(10000000, 20000);

    const char *env = getenv("TALLY_BENCH_DIR");
    snprintf(g_dir, sizeof g_dir, "%s", env && *env ? env : "./bench-data");
    /* the work dir: create it, or reuse one that a previous run left (marker) */
    char marker[PATH_MAX];
    path_in(marker, sizeof marker, ".tally-bench");
    if (mkdir(g_dir, 0755) != 0) {
        if (errno != EEXIST) die("mkdir %s: %s", g_dir, strerror(errno));
        if (access(marker, F_OK) != 0) die("%s exists and is not a bench directory; remove it or set TALLY_BENCH_DIR", g_dir);
        rm_rf(g_dir);
        if (mkdir(g_dir, 0755) != 0) die("mkdir %s: %s", g_dir, strerror(errno));
    }
    int mfd = open(marker, O_CREAT | O_WRONLY, 0644);
    if (mfd >= 0) close(mfd);

    g_pool = malloc(VAL_POOL + VAL_LEN);
    rng r = {42};
    for (size_t i = 0; i < VAL_POOL + VAL_LEN; i += 8) {
        uint64_t w = rnd(&r);
        memcpy(g_pool + i, &w, 8);
    }

    print_machine();
    uint64_t t0 = now_ns();
    for (int ph = 0; ph < PH_COUNT; ph++) {
        if (!want[ph]) continue;
        /* dependencies that failed: skip */
        if ((ph == PH_REOPEN || ph == PH_GET || ph == PH_VERIFY) && !have(PH_ING2)) continue;
        if (ph == PH_SQL_GET && !have(PH_SQL_ING)) continue;
        if ((ph == PH_OPEN || ph == PH_PROOFS) && !have(PH_PFBUILD)) continue;
        run_phase(ph);
        if (ph == PH_ING1) { /* free the disk: only the 2-thread ledger is reused */
            char d[PATH_MAX];
            path_in(d, sizeof d, "ingest1");
            rm_rf(d);
        }
    }
    print_table();
    printf("\ntotal wall time %.1f s\n", secs(now_ns() - t0));
    rm_rf(g_dir);
    int bad = 0;
    for (int i = 0; i < PH_COUNT; i++) bad |= R->ran[i] && !R->ok[i];
    return bad;
}
