/*
** registry.c — the system ledger and the registry of data ledgers.
**
** DIR/system is a tally_db whose entries live in namespace TALLY_NS_SYSTEM;
** every administrative change is one transaction there with metadata
** {"actor","action"}. DIR/ledgers/<id>/ is one data ledger (id = 16 random
** bytes, 32 hex). The registry maps name -> srv_ledger; a ledger's tally_db
** is opened on first use and closed again once unused for cfg.idle_close_s
** (a thread per open ledger's writer, checkpointer and completions, its
** files and memtable are not kept for ledgers nobody uses).
**
** Invariants:
**   (1) a srv_ledger is never freed or moved before tallyd_stop: pointers
**       taken under reg_lock stay valid after it is released;
**   (2) lg->db changes only under open_mu (or in reg_create, before the
**       ledger is in the map): NULL -> open handle (reg_acquire),
**       open handle -> NULL (the reaper, only while users == 0 with closing
**       set, so no request holds or can take the handle it closes);
**   (2a) a request's handle is held (users) from reg_acquire/reg_try_acquire
**       to reg_release: users++ happens before closing is read, and the
**       reaper sets closing before it reads users (both seq_cst), so either
**       the reaper sees the user or the user sees closing and backs off;
**   (3) lg->cp.size only grows; a checkpoint is signed at most once per
**       size (signing happens under cp_mu after a recheck).
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "note/note.h"
#include "server/server.h"
#include "os/vmem.h"
#include "util/err.h"

uint64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sys_commit(tallyd *s, const char *actor, const char *action, const tally_entry *e,
               size_t n)
{
    json_t *m = json_pack("{s:s,s:s}", "actor", actor, "action", action);
    char *meta = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!meta)
        return TALLY_ENOMEM;
    int rc = tally_commit(s->sys, NULL, e, n, meta, strlen(meta));
    free(meta);
    return rc;
}

/* New srv_ledger (not yet in the map). */
static srv_ledger *ledger_new(tallyd *s, const char *name, const char *id, uint64_t created_ns)
{
    srv_ledger *lg = calloc(1, sizeof *lg);
    if (!lg)
        return NULL;
    snprintf(lg->name, sizeof lg->name, "%s", name);
    snprintf(lg->id, sizeof lg->id, "%s", id);
    snprintf(lg->origin, sizeof lg->origin, "%s/ledger/%s", s->name, id);
    lg->created_ns = created_ns;
    atomic_init(&lg->db, NULL);
    atomic_init(&lg->users, 0);
    atomic_init(&lg->closing, 0);
    atomic_init(&lg->last_used_ns, srv_mono_ns());
    atomic_init(&lg->closed_size, CLOSED_SIZE_UNKNOWN);
    pthread_mutex_init(&lg->open_mu, NULL);
    pthread_mutex_init(&lg->cp_mu, NULL);
    return lg;
}

static void ledger_dir(const tallyd *s, const srv_ledger *lg, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s/ledgers/%s", s->data_dir, lg->id);
}

typedef struct load_ctx {
    tallyd *s;
    int rc;
} load_ctx;

/* tally_scan callback over "ledger/<name>" records. */
static int load_one(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    load_ctx *lc = ctx;
    json_t *j = json_loadb(v->value, v->value_len, 0, NULL);
    const char *name = srv_json_text(j, "name"); /* NULL for a NUL inside: corrupt */
    const char *id = srv_json_text(j, "id");
    int64_t created = 0;
    const char *cts = srv_json_text(j, "created");
    if (cts && srv_parse_time(cts, &created) < 0)
        created = 0;
    if (!name || !id || !srv_name_valid(name) || strlen(id) != SRV_ID_HEX_LEN) {
        json_decref(j);
        lc->rc = TALLY_ECORRUPT;
        return 1;
    }
    srv_ledger *lg = ledger_new(lc->s, name, id, (uint64_t)created);
    json_decref(j);
    if (!lg || strmap_put(&lc->s->ledgers, lg->name, lg) < 0) {
        free(lg);
        lc->rc = TALLY_ENOMEM;
        return 1;
    }
    return 0;
}

static void trash_sweep(tallyd *s);

/* Takes back the reserve descriptors that are not held (see fd_reserve). */
static void fd_reserve_take(tallyd *s)
{
    for (int i = 0; i < 2; i++)
        if (s->fd_reserve[i] < 0)
            s->fd_reserve[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void fd_reserve_release(tallyd *s)
{
    for (int i = 0; i < 2; i++) {
        if (s->fd_reserve[i] >= 0)
            close(s->fd_reserve[i]);
        s->fd_reserve[i] = -1;
    }
}

int reg_open(tallyd *s, char *err, size_t err_len)
{
    char path[SRV_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/ledgers", s->data_dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    fd_reserve_take(s);
    trash_sweep(s);
    snprintf(path, sizeof path, "%s/system", s->data_dir);
    int rc = tally_db_open(&s->sys, path, NULL, NULL);
    if (rc != TALLY_OK) {
        snprintf(err, err_len, "cannot open the system ledger %s: %s", path, tally_errmsg());
        return -1;
    }
    load_ctx lc = { s, 0 };
    rc = tally_scan(s->sys, TALLY_NS_SYSTEM, "ledger/", 7, NULL, 0, 0, 0, load_one, &lc);
    if (rc == TALLY_OK)
        rc = lc.rc;
    if (rc != TALLY_OK) {
        snprintf(err, err_len, "cannot load ledgers from the system ledger: %s",
                 tally_strerror(rc));
        return -1;
    }
    return 0;
}

srv_ledger *reg_find(tallyd *s, const char *name)
{
    pthread_rwlock_rdlock(&s->reg_lock);
    srv_ledger *lg = strmap_get(&s->ledgers, name);
    pthread_rwlock_unlock(&s->reg_lock);
    return lg;
}

/* Options of a data ledger: the defaults plus the group-commit wait, which
** suits many HTTP clients each waiting for its answer (include/tally.h). */
static tally_options ledger_options(void)
{
    tally_options o;
    tally_options_init(&o);
    o.group_commit_wait = 1;
    return o;
}

tally_db *reg_try_acquire(srv_ledger *lg)
{
    atomic_fetch_add(&lg->users, 1); /* before reading closing: invariant (2a) */
    tally_db *db = atomic_load(&lg->db);
    if (db && !atomic_load(&lg->closing))
        return db;
    reg_release(lg);
    return NULL;
}

void reg_release(srv_ledger *lg)
{
    atomic_store_explicit(&lg->last_used_ns, srv_mono_ns(), memory_order_relaxed);
    atomic_fetch_sub(&lg->users, 1);
}

int reg_acquire(tallyd *s, srv_ledger *lg, tally_db **out)
{
    int rc = TALLY_OK;
    pthread_mutex_lock(&lg->open_mu); /* a close in progress finishes first */
    tally_db *db = atomic_load(&lg->db);
    if (!db) {
        char dir[SRV_PATH_MAX + 64];
        ledger_dir(s, lg, dir, sizeof dir);
        tally_options opts = ledger_options();
        rc = tally_db_open(&db, dir, &opts, NULL);
        if (rc == TALLY_OK) {
            atomic_store(&lg->closed_size, CLOSED_SIZE_UNKNOWN);
            atomic_store(&lg->db, db);
            atomic_fetch_add(&s->ledgers_open, 1);
        }
    }
    if (rc == TALLY_OK)
        atomic_fetch_add(&lg->users, 1); /* closing is 0: the reaper holds open_mu while it is set */
    pthread_mutex_unlock(&lg->open_mu);
    *out = rc == TALLY_OK ? db : NULL;
    return rc;
}

/* Adds one handle's statistics into sum. */
static void stats_add(tally_stats *sum, const tally_stats *st)
{
    sum->commits += st->commits;
    sum->syncs += st->syncs;
    sum->sync_ns_total += st->sync_ns_total;
    sum->checkpoints += st->checkpoints;
}

/* Closes lg's handle if nobody holds it and it was last used before
** idle_before (srv_mono_ns). */
static void close_if_idle(tallyd *s, srv_ledger *lg, uint64_t idle_before)
{
    pthread_mutex_lock(&lg->open_mu);
    tally_db *db = atomic_load(&lg->db);
    if (db && atomic_load(&lg->users) == 0 &&
        atomic_load_explicit(&lg->last_used_ns, memory_order_relaxed) < idle_before) {
        atomic_store(&lg->closing, 1); /* before reading users: invariant (2a) */
        if (atomic_load(&lg->users) == 0) {
            /* its statistics move to retired in the same step that hides the
            ** handle from reg_stats, so the metrics' counters never dip */
            tally_stats st;
            uint64_t size = 0;
            uint8_t root[TALLY_HASH_LEN];
            if (tally_state(db, &size, root) == TALLY_OK)
                atomic_store(&lg->closed_size, size);
            pthread_mutex_lock(&s->reaper_mu);
            tally_db_stats(db, &st);
            stats_add(&s->retired, &st);
            atomic_store(&lg->db, NULL);
            pthread_mutex_unlock(&s->reaper_mu);
            if (tally_db_close(db) != TALLY_OK)
                fprintf(stderr, "tallyd: closing idle ledger %s: %s\n", lg->name, tally_errmsg());
            atomic_fetch_sub(&s->ledgers_open, 1);
            atomic_fetch_add(&s->ledgers_closed_idle, 1);
        }
        atomic_store(&lg->closing, 0);
    }
    pthread_mutex_unlock(&lg->open_mu);
}

static void *reaper_main(void *arg)
{
    tallyd *s = arg;
    pthread_setname_np(pthread_self(), "tallyd-reaper");
    uint64_t idle_ns = s->cfg.idle_close_s * 1000000000ull;
    uint64_t every_ns = idle_ns / 2 < 10000000000ull ? idle_ns / 2 : 10000000000ull; /* <= 10 s */
    if (every_ns < 100000000ull)
        every_ns = 100000000ull;
    pthread_mutex_lock(&s->reaper_mu);
    while (!s->reaper_stop) {
        srv_cond_wait_ms(&s->reaper_cond, &s->reaper_mu, every_ns / 1000000ull);
        if (s->reaper_stop)
            break;
        pthread_mutex_unlock(&s->reaper_mu);
        srv_ledger **all;
        size_t n = reg_snapshot(s, &all);
        uint64_t now = srv_mono_ns(), before = now > idle_ns ? now - idle_ns : 0;
        uint64_t closed0 = atomic_load(&s->ledgers_closed_idle);
        for (size_t i = 0; i < n; i++)
            close_if_idle(s, all[i], before);
        free(all);
        if (atomic_load(&s->ledgers_closed_idle) != closed0)
            malloc_trim(0); /* the closed handles' freed heap goes back to the system too */
        vmem_trim(VMEM_RESERVE_AGE_MS); /* kept checkpoint memory nobody reused (os/vmem.h) */
        pthread_mutex_lock(&s->reaper_mu);
    }
    pthread_mutex_unlock(&s->reaper_mu);
    return NULL;
}

int reg_reaper_start(tallyd *s)
{
    if (!s->cfg.idle_close_s)
        return 0;
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0)
        return -1;
    s->reaper_started = 1;
    return 0;
}

void reg_reaper_stop(tallyd *s)
{
    srv_thread_stop(&s->reaper_mu, &s->reaper_cond, &s->reaper_stop, s->reaper,
                    &s->reaper_started);
}

/* The system record of a new ledger: {"name","id","created"}. */
static char *ledger_record(const srv_ledger *lg)
{
    char ts[SRV_TIME_BUF];
    srv_fmt_time(ts, lg->created_ns);
    json_t *j = json_pack("{s:s,s:s,s:s}", "name", lg->name, "id", lg->id, "created", ts);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Removes the directory of a ledger whose creation failed (its id is new and
** random: nothing else refers to it), so a failed request leaves nothing.
** The creation may have failed for want of descriptors, and walking the
** directory needs one: the reserve is released for the walk, which keeps at
** most one directory open (nopenfd 1), and taken back after. If another
** thread took the released descriptors first, the directory is renamed
** (which needs none) to ledgers/.trash-ID, removed by the next creation or
** start (trash_sweep). Under admin_mu. */
static void create_undo(tallyd *s, const srv_ledger *lg, const char *dir)
{
    fd_reserve_release(s);
    int rc = nftw(dir, rm_entry, 1, FTW_DEPTH | FTW_PHYS);
    int err = errno;
    fd_reserve_take(s);
    if (rc == 0)
        return;
    char trash[SRV_PATH_MAX + 64];
    snprintf(trash, sizeof trash, "%s/ledgers/.trash-%s", s->data_dir, lg->id);
    if (rename(dir, trash) == 0) {
        s->trash_pending = 1;
        return;
    }
    fprintf(stderr, "tallyd: could not remove %s after a failed ledger creation: %s "
                    "(unreferenced; safe to delete)\n", dir, strerror(err));
}

/* Removes the ledgers/.trash-* directories create_undo left. Under admin_mu
** (or at start). */
static void trash_sweep(tallyd *s)
{
    char path[SRV_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/ledgers", s->data_dir);
    DIR *d = opendir(path);
    if (!d)
        return;
    int left = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".trash-", 7) != 0)
            continue;
        snprintf(path, sizeof path, "%s/ledgers/%s", s->data_dir, e->d_name);
        if (nftw(path, rm_entry, 4, FTW_DEPTH | FTW_PHYS) != 0)
            left = 1;
    }
    closedir(d);
    s->trash_pending = left;
}

/* Creates the ledger's directory and the system record. Called under admin_mu.
** On failure the directory is removed again. */
static int create_locked(tallyd *s, const char *actor, srv_ledger *lg)
{
    char dir[SRV_PATH_MAX + 64], key[SRV_NAME_LEN_MAX + 16];
    ledger_dir(s, lg, dir, sizeof dir);
    tally_db *db = NULL;
    tally_options opts = ledger_options();
    int rc = tally_db_open(&db, dir, &opts, NULL);
    if (rc != TALLY_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tally_errmsg());
        create_undo(s, lg, dir);
        return tally_seterr(rc, "%s", msg);
    }
    char *rec = ledger_record(lg);
    if (!rec) {
        tally_db_close(db);
        create_undo(s, lg, dir);
        return TALLY_ENOMEM;
    }
    int klen = snprintf(key, sizeof key, "ledger/%s", lg->name);
    tally_entry e = { .ns = TALLY_NS_SYSTEM, .cond = TALLY_COND_ABSENT, .key = key,
                      .key_len = (size_t)klen, .value = rec, .value_len = strlen(rec) };
    rc = sys_commit(s, actor, "create_ledger", &e, 1);
    free(rec);
    if (rc != TALLY_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tally_errmsg());
        tally_db_close(db);
        create_undo(s, lg, dir);
        return tally_seterr(rc, "%s", msg);
    }
    atomic_store_explicit(&lg->last_used_ns, srv_mono_ns(), memory_order_relaxed);
    atomic_store(&lg->db, db);
    atomic_fetch_add(&s->ledgers_open, 1);
    return TALLY_OK;
}

int reg_create(tallyd *s, const char *actor, const char *name, srv_ledger **out)
{
    uint8_t raw[SRV_ID_HEX_LEN / 2];
    char id[SRV_ID_HEX_LEN + 1];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return tally_seterr(TALLY_EIO, "no random bytes for a ledger id");
    srv_hex(id, raw, sizeof raw);
    pthread_mutex_lock(&s->admin_mu);
    fd_reserve_take(s); /* if a failed creation lost one to another thread */
    if (s->trash_pending)
        trash_sweep(s);
    int rc = TALLY_OK;
    srv_ledger *lg = NULL;
    if (reg_find(s, name)) {
        rc = tally_seterr(TALLY_ECONFLICT, "ledger '%s' already exists", name);
    } else if (s->ledgers.count >= SRV_LEDGERS_MAX) {
        rc = tally_seterr(TALLY_ETOOBIG, "too many ledgers (%u)", SRV_LEDGERS_MAX);
    } else if (!(lg = ledger_new(s, name, id, srv_now_ns()))) {
        rc = TALLY_ENOMEM;
    } else if ((rc = create_locked(s, actor, lg)) == TALLY_OK) {
        pthread_rwlock_wrlock(&s->reg_lock);
        if (strmap_put(&s->ledgers, lg->name, lg) < 0)
            rc = TALLY_ENOMEM; /* recorded; the next start loads it */
        pthread_rwlock_unlock(&s->reg_lock);
    }
    pthread_mutex_unlock(&s->admin_mu);
    if (rc != TALLY_OK && lg && !atomic_load(&lg->db))
        free(lg);
    *out = rc == TALLY_OK ? lg : NULL;
    return rc;
}

/* Signs the checkpoint (size, root) into lg->cp. Called under cp_mu. */
static int sign_locked(tallyd *s, srv_ledger *lg, uint64_t size, const uint8_t root[32])
{
    char body[NOTE_TEXT_MAX];
    if (checkpoint_format(body, sizeof body, lg->origin, size, root) < 0)
        return tally_seterr(TALLY_EINVAL, "checkpoint origin too long");
    int n = note_sign(lg->cp.note, sizeof lg->cp.note, body, s->name, s->priv);
    if (n < 0)
        return tally_seterr(TALLY_EIO, "cannot sign the checkpoint");
    lg->cp.note_len = (size_t)n;
    lg->cp.size = size;
    memcpy(lg->cp.root, root, 32);
    return TALLY_OK;
}

int reg_checkpoint(tallyd *s, srv_ledger *lg, tally_db *db, srv_checkpoint *out)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_state(db, &size, root);
    if (rc != TALLY_OK)
        return rc;
    pthread_mutex_lock(&lg->cp_mu);
    /* Another thread may have signed a newer size meanwhile: that one serves. */
    if (lg->cp.note_len == 0 || lg->cp.size < size)
        rc = sign_locked(s, lg, size, root);
    if (rc == TALLY_OK)
        memcpy(out, &lg->cp, offsetof(srv_checkpoint, note) + lg->cp.note_len);
    pthread_mutex_unlock(&lg->cp_mu);
    if (rc == TALLY_OK)
        out->note[out->note_len] = '\0';
    return rc;
}

size_t reg_snapshot(tallyd *s, srv_ledger ***out)
{
    pthread_rwlock_rdlock(&s->reg_lock);
    size_t n = 0;
    srv_ledger **v = malloc((s->ledgers.count + 1) * sizeof *v);
    for (size_t i = 0; v && i < s->ledgers.cap; i++)
        if (s->ledgers.slots[i].key)
            v[n++] = s->ledgers.slots[i].val;
    pthread_rwlock_unlock(&s->reg_lock);
    *out = v;
    return v ? n : 0;
}

void reg_stats(tallyd *s, tally_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    /* under reaper_mu no handle moves from open to retired, and none it shows
    ** is closed yet (close_if_idle closes only after that move) */
    pthread_mutex_lock(&s->reaper_mu);
    stats_add(sum, &s->retired);
    pthread_rwlock_rdlock(&s->reg_lock);
    for (size_t i = 0; i < s->ledgers.cap; i++) {
        srv_ledger *lg = s->ledgers.slots[i].key ? s->ledgers.slots[i].val : NULL;
        tally_db *db = lg ? atomic_load(&lg->db) : NULL;
        if (!db)
            continue;
        tally_stats st;
        tally_db_stats(db, &st);
        stats_add(sum, &st);
        if (st.checkpoint_error) { /* summed as a count of ledgers with paused checkpoints */
            sum->checkpoint_error++;
            snprintf(sum->checkpoint_message, sizeof sum->checkpoint_message, "%s",
                     st.checkpoint_message);
        }
    }
    pthread_rwlock_unlock(&s->reg_lock);
    pthread_mutex_unlock(&s->reaper_mu);
}

void reg_close_all(tallyd *s)
{
    for (size_t i = 0; s->ledgers.slots && i < s->ledgers.cap; i++) {
        srv_ledger *lg = s->ledgers.slots[i].key ? s->ledgers.slots[i].val : NULL;
        if (!lg)
            continue;
        tally_db *db = atomic_load(&lg->db);
        if (db && tally_db_close(db) != TALLY_OK)
            fprintf(stderr, "tallyd: closing ledger %s: %s\n", lg->name, tally_errmsg());
        pthread_mutex_destroy(&lg->open_mu);
        pthread_mutex_destroy(&lg->cp_mu);
        free(lg);
    }
    strmap_free(&s->ledgers);
    fd_reserve_release(s);
    if (s->sys && tally_db_close(s->sys) != TALLY_OK)
        fprintf(stderr, "tallyd: closing the system ledger: %s\n", tally_errmsg());
    s->sys = NULL;
}
