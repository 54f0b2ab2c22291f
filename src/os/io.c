/*
** io.c — POSIX implementation of the file layer (see io.h).
*/
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int px_open(const char *path, int flags, mode_t mode) { return open(path, flags | O_CLOEXEC, mode); }
static int px_close(int fd) { return close(fd); }
static ssize_t px_pread(int fd, void *buf, size_t len, off_t off) { return pread(fd, buf, len, off); }
static ssize_t px_pwritev(int fd, const struct iovec *iov, int n, off_t off) { return pwritev(fd, iov, n, off); }
static int px_fdatasync(int fd) { return fdatasync(fd); }
static int px_fsync(int fd) { return fsync(fd); }
static int px_ftruncate(int fd, off_t len) { return ftruncate(fd, len); }
static int px_rename(const char *a, const char *b) { return rename(a, b); }
static int px_unlink(const char *p) { return unlink(p); }

const tally_io_ops tally_io_posix = {px_open, px_close, px_pread, px_pwritev, px_fdatasync,
                                     px_fsync, px_ftruncate, px_rename, px_unlink};
const tally_io_ops *tally_io = &tally_io_posix;

void tally_io_set(const tally_io_ops *ops) { tally_io = ops ? ops : &tally_io_posix; }

int io_pwritev_all(int fd, const struct iovec *iov_in, int iovcnt, off_t off) {
    enum { CHUNK = 512 };
    struct iovec local[CHUNK];
    int i = 0;
    size_t skip = 0; /* bytes of iov_in[i] already written */
    while (i < iovcnt) {
        int n = 0;
        for (int j = i; j < iovcnt && n < CHUNK; j++, n++) {
            local[n] = iov_in[j];
            if (j == i) {
                local[n].iov_base = (char *)local[n].iov_base + skip;
                local[n].iov_len -= skip;
            }
        }
        ssize_t w = tally_io->pwritev(fd, local, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        off += w;
        size_t left = (size_t)w;
        while (i < iovcnt && left >= iov_in[i].iov_len - skip) {
            left -= iov_in[i].iov_len - skip;
            skip = 0;
            i++;
        }
        skip += left;
    }
    return 0;
}

int io_pwrite_all(int fd, const void *buf, size_t len, off_t off) {
    struct iovec v = {(void *)buf, len};
    return io_pwritev_all(fd, &v, 1, off);
}

int io_pread_all(int fd, void *buf, size_t len, off_t off) {
    char *p = buf;
    while (len) {
        ssize_t r = tally_io->pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return -ENODATA;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

int io_fsync_dir(const char *dir) {
    int fd = tally_io->open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) return -errno;
    int rc = tally_io->fsync(fd) < 0 ? -errno : 0;
    tally_io->close(fd);
    return rc;
}

int64_t io_file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return (int64_t)st.st_size;
}

void io_writeback_start(int fd, uint64_t off, uint64_t len) {
    if (len) (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int io_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len) {
    char tmp[PATH_MAX], dst[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name) >= (int)sizeof tmp) return -ENAMETOOLONG;
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    int fd = tally_io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -errno;
    int rc = io_pwrite_all(fd, buf, len, 0);
    if (rc == 0 && tally_io->fsync(fd) < 0) rc = -errno;
    tally_io->close(fd);
    if (rc == 0 && tally_io->rename(tmp, dst) < 0) rc = -errno;
    if (rc == 0) rc = io_fsync_dir(dir);
    if (rc != 0) tally_io->unlink(tmp);
    return rc;
}

int io_read_file(const char *path, size_t max, void **out, size_t *out_len) {
    int fd = tally_io->open(path, O_RDONLY, 0);
    if (fd < 0) return -errno;
    int64_t sz = io_file_size(fd);
    int rc = 0;
    void *buf = NULL;
    if (sz < 0) rc = (int)sz;
    else if ((uint64_t)sz > max) rc = -EFBIG;
    else if (!(buf = malloc(sz ? (size_t)sz : 1))) rc = -ENOMEM;
    else rc = io_pread_all(fd, buf, (size_t)sz, 0);
    tally_io->close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = (size_t)sz;
    return 0;
}
