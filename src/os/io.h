/*
** io.h — the one layer through which Tally touches files.
**
** Every open/read/write/sync/truncate/rename of the engine goes through the
** function table `tally_io`. Tests swap the table (tally_io_set) to inject
** faults: EIO, ENOSPC, torn (short) writes, failing fsync, and, with the
** record of synced lengths kept by the fault layer, "crashes" that drop
** every unsynced byte (src/os/fault.c).
**
** Rules the callers keep (docs/ARCHITECTURE.md):
**   (1) a short write is retried until complete or an error: io_pwrite_all;
**   (2) a failed fsync/fdatasync is never retried: the caller treats it as
**       fatal for its handle (Linux may drop the dirty pages on failure);
**   (3) creating or renaming a file is followed by io_fsync_dir on its directory.
*/
#ifndef TALLY_IO_H
#define TALLY_IO_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct tally_io_ops {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
} tally_io_ops;

/* The table in use. Defaults to the POSIX calls. */
extern const tally_io_ops *tally_io;
/* Installs ops (NULL restores POSIX). Not thread-safe: call with no handle open. */
void tally_io_set(const tally_io_ops *ops);
/* The POSIX table, for fault layers that wrap it. */
extern const tally_io_ops tally_io_posix;

/* Writes all of iov (count <= IOV_MAX handled by chunking) at off, retrying
** short writes. Returns 0 or -errno. */
int io_pwritev_all(int fd, const struct iovec *iov, int iovcnt, off_t off);
int io_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* Reads exactly len bytes at off. Returns 0, -errno, or -ENODATA at EOF. */
int io_pread_all(int fd, void *buf, size_t len, off_t off);
/* fsync of a directory (after create/rename inside it). Returns 0 or -errno. */
int io_fsync_dir(const char *dir);
/* Size of an open file, or -errno. */
int64_t io_file_size(int fd);
/* Starts writeback of [off, off+len) of fd without waiting (sync_file_range
** SYNC_FILE_RANGE_WRITE): a hint that spreads a large file's writes over the
** time it is being written instead of one burst at its fsync. It changes no
** bytes and promises no durability, so it is not in the table (fault layers
** have nothing to model); errors are ignored (the fsync reports them). */
void io_writeback_start(int fd, uint64_t off, uint64_t len);
/* Writes a whole small file atomically: path.tmp, fsync, rename, fsync dir.
** Returns 0 or -errno. */
int io_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len);
/* Reads a whole small file (<= max bytes) into a malloc'd buffer the caller
** frees. Returns 0, -ENOENT, -EFBIG, -errno. */
int io_read_file(const char *path, size_t max, void **out, size_t *out_len);

/* ---- Fault injection (src/os/fault.c), used by tests ---- */
typedef struct tally_fault_plan {
    int64_t fail_write_after;   /* fail the Nth pwritev from now (1 = next); 0 = never */
    int write_errno;            /* EIO or ENOSPC */
    int torn;                   /* when failing a write: first write half of it */
    int64_t fail_sync_after;    /* fail the Nth fdatasync/fsync from now; 0 = never */
    int sync_errno;
} tally_fault_plan;
/* Installs the fault layer with this plan (copied). */
void tally_fault_install(const tally_fault_plan *plan);
/* Removes it (restores POSIX). */
void tally_fault_remove(void);
/* Number of faults fired so far. */
int64_t tally_fault_fired(void);
/* Simulated power loss: for every file written through the fault layer,
** truncate it to its length at its last successful sync and zero the bytes
** below that length written after it (bytes written after the last sync are
** dropped). Call after the handle is abandoned. Returns the number of bytes
** dropped or zeroed, or -errno. */
int64_t tally_fault_drop_unsynced(void);

#endif
