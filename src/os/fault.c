/*
** fault.c — a fault-injecting file layer for tests (SQLite's test6.c idea).
**
** Wraps the POSIX table. Counts pwritev and sync calls and fails the Nth one
** with the planned errno; a failing write may first write half its bytes
** (a torn write). It also remembers, per path, the file length at the last
** successful sync and the range written since, so tally_fault_drop_unsynced()
** can simulate power loss: every file is cut back to its synced length, and
** bytes below it written since the last sync become zeros again (the only
** in-place overwrites Tally makes are of the log's preallocated zeros, so
** zeros are what those bytes held before).
** Limits: tracks at most FAULT_FILES_MAX files; single-threaded bookkeeping
** under one mutex.
*/
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAULT_FILES_MAX 256

typedef struct fault_file {
    char path[PATH_MAX];
    int fd;           /* -1 when closed */
    int64_t synced;   /* length at last successful sync */
    int dirty;
    int64_t dirty_lo, dirty_hi; /* bytes written since the last sync (when dirty) */
} fault_file;

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static tally_fault_plan plan;
static int64_t fired;
static fault_file files[FAULT_FILES_MAX];
static int nfiles;

static fault_file *by_fd(int fd) {
    for (int i = 0; i < nfiles; i++)
        if (files[i].fd == fd) return &files[i];
    return NULL;
}

static int f_open(const char *path, int flags, mode_t mode) {
    int fd = tally_io_posix.open(path, flags, mode);
    if (fd < 0 || (flags & O_DIRECTORY)) return fd;
    pthread_mutex_lock(&fault_mu);
    fault_file *f = NULL;
    for (int i = 0; i < nfiles; i++)
        if (strcmp(files[i].path, path) == 0) f = &files[i];
    if (!f && nfiles < FAULT_FILES_MAX) {
        f = &files[nfiles++];
        snprintf(f->path, sizeof f->path, "%s", path);
        struct stat st;
        f->synced = fstat(fd, &st) == 0 ? (int64_t)st.st_size : 0;
        if (flags & O_TRUNC) f->synced = 0;
    }
    if (f) f->fd = fd;
    pthread_mutex_unlock(&fault_mu);
    return fd;
}

static int f_close(int fd) {
    pthread_mutex_lock(&fault_mu);
    fault_file *f = by_fd(fd);
    if (f) f->fd = -1;
    pthread_mutex_unlock(&fault_mu);
    return tally_io_posix.close(fd);
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    pthread_mutex_lock(&fault_mu);
    int fail = plan.fail_write_after > 0 && --plan.fail_write_after == 0;
    fault_file *f = by_fd(fd);
    if (f) {
        int64_t len = 0;
        for (int i = 0; i < n; i++) len += (int64_t)iov[i].iov_len;
        if (!f->dirty || (int64_t)off < f->dirty_lo) f->dirty_lo = (int64_t)off;
        if (!f->dirty || (int64_t)off + len > f->dirty_hi) f->dirty_hi = (int64_t)off + len;
        f->dirty = 1;
    }
    if (fail) fired++;
    pthread_mutex_unlock(&fault_mu);
    if (fail) {
        if (plan.torn && n > 0 && iov[0].iov_len > 1)
            (void)pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, off);
        errno = plan.write_errno ? plan.write_errno : EIO;
        return -1;
    }
    return tally_io_posix.pwritev(fd, iov, n, off);
}

static int f_sync_common(int fd, int (*real)(int)) {
    pthread_mutex_lock(&fault_mu);
    int fail = plan.fail_sync_after > 0 && --plan.fail_sync_after == 0;
    if (fail) fired++;
    pthread_mutex_unlock(&fault_mu);
    if (fail) {
        errno = plan.sync_errno ? plan.sync_errno : EIO;
        return -1;
    }
    int rc = real(fd);
    if (rc == 0) {
        struct stat st;
        pthread_mutex_lock(&fault_mu);
        fault_file *f = by_fd(fd);
        if (f && fstat(fd, &st) == 0) {
            f->synced = (int64_t)st.st_size;
            f->dirty = 0;
        }
        pthread_mutex_unlock(&fault_mu);
    }
    return rc;
}
static int f_fdatasync(int fd) { return f_sync_common(fd, tally_io_posix.fdatasync); }
static int f_fsync(int fd) { return f_sync_common(fd, tally_io_posix.fsync); }

static int f_ftruncate(int fd, off_t len) {
    int rc = tally_io_posix.ftruncate(fd, len);
    pthread_mutex_lock(&fault_mu);
    fault_file *f = by_fd(fd);
    if (rc == 0 && f && f->synced > (int64_t)len) f->synced = (int64_t)len;
    pthread_mutex_unlock(&fault_mu);
    return rc;
}

static int f_rename(const char *a, const char *b) {
    int rc = tally_io_posix.rename(a, b);
    if (rc == 0) {
        pthread_mutex_lock(&fault_mu);
        for (int i = 0; i < nfiles; i++)
            if (strcmp(files[i].path, b) == 0) files[i].path[0] = 0;
        for (int i = 0; i < nfiles; i++)
            if (strcmp(files[i].path, a) == 0) snprintf(files[i].path, sizeof files[i].path, "%s", b);
        pthread_mutex_unlock(&fault_mu);
    }
    return rc;
}

static ssize_t f_pread(int fd, void *buf, size_t len, off_t off) {
    return tally_io_posix.pread(fd, buf, len, off);
}
static int f_unlink(const char *path) { return tally_io_posix.unlink(path); }

static const tally_io_ops fault_ops = {f_open, f_close, f_pread, f_pwritev,
                                       f_fdatasync, f_fsync, f_ftruncate, f_rename, f_unlink};

void tally_fault_install(const tally_fault_plan *p) {
    pthread_mutex_lock(&fault_mu);
    plan = *p;
    fired = 0;
    pthread_mutex_unlock(&fault_mu);
    tally_io_set(&fault_ops);
}

void tally_fault_remove(void) {
    tally_io_set(NULL);
    pthread_mutex_lock(&fault_mu);
    memset(&plan, 0, sizeof plan);
    nfiles = 0;
    pthread_mutex_unlock(&fault_mu);
}

int64_t tally_fault_fired(void) {
    pthread_mutex_lock(&fault_mu);
    int64_t n = fired;
    pthread_mutex_unlock(&fault_mu);
    return n;
}

int64_t tally_fault_drop_unsynced(void) {
    int64_t dropped = 0;
    pthread_mutex_lock(&fault_mu);
    for (int i = 0; i < nfiles; i++) {
        struct stat st;
        if (!files[i].path[0] || stat(files[i].path, &st) != 0) continue;
        int64_t lo = files[i].dirty_lo, hi = files[i].dirty_hi < files[i].synced ? files[i].dirty_hi : files[i].synced;
        if (files[i].dirty && lo < hi) { /* overwritten since the sync: zeros again */
            static const uint8_t z[4096];
            int fd = open(files[i].path, O_WRONLY);
            for (int64_t o = lo; fd >= 0 && o < hi; o += (int64_t)sizeof z) {
                size_t k = hi - o < (int64_t)sizeof z ? (size_t)(hi - o) : sizeof z;
                if (pwrite(fd, z, k, (off_t)o) != (ssize_t)k) dropped = -EIO;
            }
            if (fd < 0) dropped = -errno;
            else close(fd);
            if (dropped >= 0) dropped += hi - lo;
        }
        files[i].dirty = 0;
        if (dropped >= 0 && (int64_t)st.st_size > files[i].synced) {
            dropped += (int64_t)st.st_size - files[i].synced;
            if (truncate(files[i].path, files[i].synced) != 0) dropped = -errno;
        }
    }
    pthread_mutex_unlock(&fault_mu);
    return dropped;
}
