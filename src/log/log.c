/*
** log.c — segment files, the directory lock, recovery and appends (log.h).
**
** Preallocation. On ext4 (and most file systems) an fdatasync after an
** append that grows the file must also write the block-allocation metadata
** and the inode (the new length): three dependent disk writes. After an
** overwrite of blocks already allocated and written it writes the data
** alone. So after a small group (< LOG_PREALLOC_GROUP_BYTES_MAX) the writer
** keeps zeros written past the last record of the segment it appends to: it
** extends them when fewer than a quarter of the next extension are left;
** extensions start at LOG_PREALLOC_BYTES_MIN and double up to
** LOG_PREALLOC_BYTES (so a quiet ledger holds 64 KiB of zeros, a busy one
** about 1 MiB)
** (measured on this project's VM: fdatasync of a small group 0.51 -> 0.33 ms,
** about 40% less CPU per fdatasync). Zeros, not fallocate(): an unwritten
** extent must still be converted (metadata) at the first write. Large groups
** skip it: their metadata write is a small part of their fdatasync, and
** zero-filling would double their bytes.
** Only the last segment carries zeros: a segment is trimmed to its records
** before the next one is created, and at a clean close (log_trim). Recovery
** treats a record position whose bytes up to the end of the file are all
** zero as the end of the log (not a torn tail; docs/FORMAT.md section 6).
** Preallocation is an optimization only: a failed zero write is ignored (it
** can leave only zeros, which recovery accepts), and durability never
** depends on it (every fdatasync still covers whatever metadata changed).
*/
#include "log/log.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "os/io.h"
#include "os/vmem.h"
#include "util/crc32c.h"
#include "util/err.h"

typedef struct segment {
    int fd;
    int bad_header;     /* header damaged: log_recover reports it */
    uint64_t first_tx;
    uint64_t size;      /* bytes of the segment: header and records */
    uint64_t map_len;
    uint8_t *map;
} segment;

struct tlog {
    char dir[PATH_MAX];     /* DIR/log */
    uint64_t seg_bytes_max;
    int read_only;
    _Atomic uint32_t nseg;  /* segments published to readers */
    uint32_t nused;         /* slots of segs ever filled (close frees these) */
    segment *segs;          /* LOG_SEGMENTS_MAX slots (vmem: only used pages cost) */
    uint64_t reserve_pos;   /* next record position (commit lock) */
    uint32_t write_seg;     /* segment the writer appends to */
    /* writer-only preallocation state (the segment write_seg) */
    uint64_t alloc_end;     /* bytes of zeros written up to here (0: none known) */
    uint64_t group_bytes;   /* record bytes written since the last log_prealloc */
    uint32_t prealloc_next; /* bytes of the next extension (0: LOG_PREALLOC_BYTES_MIN) */
    int prealloc_off;       /* a zero write failed: no more for this handle */
};

#define LOG_PREALLOC_BYTES_MIN       (64u << 10) /* the first extension of a handle */
#define LOG_PREALLOC_BYTES           (1u << 20)  /* extensions double up to this */
#define LOG_PREALLOC_GROUP_BYTES_MAX (64u << 10)  /* only after groups smaller than this */
/* extend when fewer than a quarter of the next extension's bytes are left */
static const uint8_t zeros[LOG_PREALLOC_BYTES];

static void seg_name(const tlog *log, uint32_t s, char *buf, size_t len) {
    snprintf(buf, len, "%s/%08u.seg", log->dir, s);
}

static void seg_hdr_encode(uint8_t *p, uint32_t s, uint64_t first_tx) {
    memset(p, 0, LOG_SEG_HDR_LEN);
    memcpy(p, "TALLYSEG", 8);
    wr32(p + 8, 1);
    wr32(p + 12, s);
    wr64(p + 16, first_tx);
    wr32(p + 28, tally_crc32c(0, p, 28));
}

static int seg_map(tlog *log, segment *sg) {
    /* A record larger than seg_bytes_max goes alone into a fresh segment, so
    ** map room for one maximal record past the limit (address space only). */
    uint64_t cap = log->seg_bytes_max + TALLY_TX_BYTES_MAX;
    sg->map_len = sg->size > cap ? sg->size : cap;
    void *m = mmap(NULL, sg->map_len, PROT_READ, MAP_SHARED, sg->fd, 0);
    if (m == MAP_FAILED) return -errno;
    sg->map = m;
    return 0;
}

/* Creates segment s (header written and synced, directory synced). */
static int seg_create(tlog *log, uint32_t s, uint64_t first_tx) {
    char path[PATH_MAX];
    uint8_t hdr[LOG_SEG_HDR_LEN];
    if (s >= LOG_SEGMENTS_MAX) return -EFBIG;
    seg_name(log, s, path, sizeof path);
    int fd = tally_io->open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -errno;
    seg_hdr_encode(hdr, s, first_tx);
    int rc = io_pwrite_all(fd, hdr, sizeof hdr, 0);
    if (rc == 0 && tally_io->fdatasync(fd) < 0) rc = -errno;
    if (rc == 0) rc = io_fsync_dir(log->dir);
    segment *sg = &log->segs[s];
    if (s + 1 > log->nused) log->nused = s + 1;
    sg->fd = fd;
    sg->first_tx = first_tx;
    sg->size = LOG_SEG_HDR_LEN;
    if (rc == 0) rc = seg_map(log, sg);
    if (rc != 0) {
        tally_io->close(fd);
        sg->fd = 0;
        return rc;
    }
    atomic_store_explicit(&log->nseg, s + 1, memory_order_release);
    return 0;
}

/* Opens existing segment s; a last segment with a torn header is reported
** via *torn_header (the caller removes it). */
static int seg_load(tlog *log, uint32_t s, int *torn_header) {
    char path[PATH_MAX];
    uint8_t hdr[LOG_SEG_HDR_LEN];
    seg_name(log, s, path, sizeof path);
    int fd = tally_io->open(path, log->read_only ? O_RDONLY : O_RDWR, 0);
    if (fd < 0) return tally_seterr(TALLY_EIO, "open %s: %s", path, strerror(errno));
    int64_t sz = io_file_size(fd);
    segment *sg = &log->segs[s];
    if (s + 1 > log->nused) log->nused = s + 1;
    sg->fd = fd;
    sg->size = sz < 0 ? 0 : (uint64_t)sz;
    *torn_header = 0;
    if (sz < (int64_t)LOG_SEG_HDR_LEN || io_pread_all(fd, hdr, sizeof hdr, 0) != 0 ||
        memcmp(hdr, "TALLYSEG", 8) != 0 || rd32(hdr + 28) != tally_crc32c(0, hdr, 28) ||
        rd32(hdr + 8) != 1 || rd32(hdr + 12) != s) {
        *torn_header = 1;
        sg->bad_header = 1;
    } else {
        sg->first_tx = rd64(hdr + 16);
    }
    if (sg->size > UINT32_MAX)
        return tally_seterr(TALLY_ECORRUPT, "segment %s larger than 4 GiB", path);
    int rc = seg_map(log, sg);
    if (rc) return tally_seterr(TALLY_EIO, "mmap %s: %s", path, strerror(-rc));
    return 0;
}

int log_open(tlog **out, const char *dir, uint64_t seg_bytes_max, int read_only) {
    tlog *log = calloc(1, sizeof *log);
    if (!log || !(log->segs = vmem_alloc(LOG_SEGMENTS_MAX * sizeof(segment), VMEM_LAZY))) {
        free(log);
        return tally_seterr(TALLY_ENOMEM, "out of memory opening the log");
    }
    snprintf(log->dir, sizeof log->dir, "%s/log", dir);
    log->seg_bytes_max = seg_bytes_max;
    log->read_only = read_only;
    if (!read_only && mkdir(log->dir, 0755) == 0) io_fsync_dir(dir);
    uint32_t n = 0;
    for (;; n++) {
        char path[PATH_MAX];
        seg_name(log, n, path, sizeof path);
        if (access(path, F_OK) != 0) break;
        if (n >= LOG_SEGMENTS_MAX) break;
    }
    int rc = 0;
    for (uint32_t s = 0; s < n && rc == 0; s++) {
        int torn = 0;
        rc = seg_load(log, s, &torn);
        if (rc == 0 && torn && s + 1 == n && log->segs[s].size <= LOG_SEG_HDR_LEN) {
            /* a crash while creating the last segment (header unsynced): drop it */
            char path[PATH_MAX];
            segment *sg = &log->segs[s];
            seg_name(log, s, path, sizeof path);
            if (sg->map) munmap(sg->map, sg->map_len);
            tally_io->close(sg->fd);
            memset(sg, 0, sizeof *sg);
            if (!read_only) {
                tally_io->unlink(path);
                io_fsync_dir(log->dir);
            }
            n = s;
        }
    }
    if (rc == 0 && n == 0) {
        if (read_only) rc = tally_seterr(TALLY_ENOTFOUND, "no ledger in %s", dir);
        else if ((rc = seg_create(log, 0, 1)) != 0)
            rc = tally_seterr(tally_err_from_errno(rc), "create segment 0 in %s: %s", log->dir, strerror(-rc));
        n = 1;
    }
    if (rc) {
        log_close(log);
        return rc;
    }
    atomic_store(&log->nseg, n);
    log->write_seg = n - 1;
    log->reserve_pos = LOG_POS(n - 1, log->segs[n - 1].size);
    *out = log;
    return 0;
}

void log_close(tlog *log) {
    if (!log) return;
    for (uint32_t i = 0; i < log->nused; i++) {
        segment *sg = &log->segs[i];
        if (sg->map) munmap(sg->map, sg->map_len);
        sg->map = NULL;
        if (sg->fd > 0) tally_io->close(sg->fd); /* 0: slot never opened (fds 0..2 are stdio) */
    }
    vmem_free(log->segs, LOG_SEGMENTS_MAX * sizeof(segment), VMEM_LAZY);
    free(log);
}

uint64_t log_start_pos(const tlog *log) { (void)log; return LOG_POS(0, LOG_SEG_HDR_LEN); }
void log_prefault(const tlog *log, uint32_t s) {
#ifdef MADV_POPULATE_READ
    const segment *sg = &log->segs[s];
    if (sg->map && sg->size) (void)madvise(sg->map, sg->size, MADV_POPULATE_READ);
#else
    (void)log, (void)s;
#endif
}

uint32_t log_segment_count(const tlog *log) { return atomic_load(&log->nseg); }
uint64_t log_segment_size(const tlog *log, uint32_t s) { return log->segs[s].size; }
const uint8_t *log_ptr(const tlog *log, uint64_t pos) { return log->segs[LOG_SEG(pos)].map + LOG_OFF(pos); }

/* After an invalid record that should be tx bad_tx at offset `from`, is there
** evidence that bad_tx had been acknowledged? A later record header with a
** valid checksum whose sync_lag says the log was synced through bad_tx (or
** beyond) when it was written proves it: the damage is then corruption. Later
** records written before bad_tx was synced are the rest of an interrupted
** group commit (out-of-order writeback during a crash): a torn tail.
** Returns the first vouching tx id, or 0 if none. */
static uint64_t later_record_vouches(const uint8_t *seg, uint64_t from, uint64_t end, uint64_t bad_tx) {
    for (uint64_t o = from; o + RECORD_HDR_LEN <= end; o++) {
        record_hdr h;
        if (seg[o] != (RECORD_MAGIC & 0xFF) || record_hdr_decode(seg + o, &h) != 0) continue;
        if (h.tx_id <= bad_tx || record_synced_tx(&h) >= bad_tx) return h.tx_id;
    }
    return 0;
}

/* Index just past the last non-zero byte of seg[from, end) (from if none). */
static uint64_t nonzero_end(const uint8_t *seg, uint64_t from, uint64_t end) {
    while (end > from && (end - from) % 8) {
        if (seg[end - 1]) return end;
        end--;
    }
    for (; end > from; end -= 8) {
        uint64_t w;
        memcpy(&w, seg + end - 8, 8);
        if (w) break;
    }
    while (end > from && !seg[end - 1]) end--;
    return end;
}

/* Cuts segment s at off; torn_len of the bytes after off were a torn write
** (the rest were preallocated zeros). */
static int truncate_tail(tlog *log, uint32_t s, uint64_t off, uint64_t torn_len, uint64_t *torn_bytes) {
    segment *sg = &log->segs[s];
    *torn_bytes += torn_len;
    if (!log->read_only) {
        if (tally_io->ftruncate(sg->fd, (off_t)off) < 0 || tally_io->fdatasync(sg->fd) < 0)
            return tally_seterr(TALLY_EIO, "truncate torn tail of segment %08u: %s", s, strerror(errno));
    }
    sg->size = off;
    return 0;
}

int log_recover(tlog *log, uint64_t pos, uint64_t expect_tx, log_record_fn fn, log_synced_fn synced_fn,
                void *ctx, uint64_t *torn_bytes, uint64_t *last_tx) {
    uint32_t nseg = atomic_load(&log->nseg);
    uint32_t s = LOG_SEG(pos);
    uint64_t off = LOG_OFF(pos);
    char why[200];
    for (; s < nseg; s++, off = LOG_SEG_HDR_LEN) {
        segment *sg = &log->segs[s];
        if (sg->bad_header)
            return tally_seterr(TALLY_ECORRUPT, "tx %llu: segment %08u has a damaged header",
                                (unsigned long long)expect_tx, s);
        if (off == LOG_SEG_HDR_LEN && sg->first_tx != expect_tx)
            return tally_seterr(TALLY_ECORRUPT, "segment %08u starts at tx %llu, expected tx %llu", s,
                                (unsigned long long)sg->first_tx, (unsigned long long)expect_tx);
        while (off < sg->size) {
            const uint8_t *rec = sg->map + off;
            if (record_check(rec, sg->size - off, expect_tx, why, sizeof why) == 0) {
                record_hdr h;
                record_hdr_decode(rec, &h);
                int rc = fn ? fn(ctx, LOG_POS(s, off), rec, &h) : 0;
                if (rc) return rc;
                off += RECORD_HDR_LEN + h.body_len;
                expect_tx++;
                continue;
            }
            /* An invalid record: a torn tail only if it is in the last segment
            ** and no valid record header follows it. */
            record_hdr h;
            int hdr_ok = sg->size - off >= RECORD_HDR_LEN && record_hdr_decode(rec, &h) == 0;
            uint64_t scan_from = off + 1;
            if (hdr_ok && h.tx_id != expect_tx)
                return tally_seterr(TALLY_ECORRUPT, "tx %llu (segment %08u offset %llu): %s",
                                    (unsigned long long)expect_tx, s, (unsigned long long)off, why);
            if (s + 1 < nseg)
                return tally_seterr(TALLY_ECORRUPT, "tx %llu (segment %08u offset %llu): %s; later segments "
                                    "follow, refusing to truncate",
                                    (unsigned long long)expect_tx, s, (unsigned long long)off, why);
            /* zeros to the end of the file: preallocated space, the end of the log */
            uint64_t nz_end = nonzero_end(sg->map, off, sg->size);
            if (nz_end == off) {
                if (synced_fn && synced_fn(ctx, expect_tx, LOG_POS(s, off)))
                    return tally_seterr(TALLY_ECORRUPT,
                                        "tx %llu (segment %08u offset %llu): zero bytes where its record should be; "
                                        "the tx index shows it was synced (acknowledged), so this is damage; "
                                        "refusing to truncate", (unsigned long long)expect_tx, s,
                                        (unsigned long long)off);
                sg->size = off;
                break;
            }
            uint64_t voucher = later_record_vouches(sg->map, scan_from, nz_end, expect_tx);
            if (voucher)
                return tally_seterr(TALLY_ECORRUPT,
                                    "tx %llu (segment %08u offset %llu): %s; tx %llu after it was written once "
                                    "tx %llu was durable, so this is damage, not a torn write; refusing to "
                                    "truncate", (unsigned long long)expect_tx, s, (unsigned long long)off, why,
                                    (unsigned long long)voucher, (unsigned long long)expect_tx);
            /* A record cut short is a torn write whatever the evidence (damage
            ** cannot shorten a file); a complete record with a valid header
            ** whose body fails is damage if derived data proves it was synced. */
            int complete = hdr_ok && off + RECORD_HDR_LEN + h.body_len <= nz_end;
            if (complete && synced_fn && synced_fn(ctx, expect_tx, LOG_POS(s, off)))
                return tally_seterr(TALLY_ECORRUPT,
                                    "tx %llu (segment %08u offset %llu): %s; the tx index shows it was synced "
                                    "(acknowledged), so this is damage, not a torn write; refusing to truncate",
                                    (unsigned long long)expect_tx, s, (unsigned long long)off, why);
            int rc = truncate_tail(log, s, off, nz_end - off, torn_bytes);
            if (rc) return rc;
            break;
        }
    }
    log->write_seg = nseg - 1;
    log->reserve_pos = LOG_POS(nseg - 1, log->segs[nseg - 1].size);
    log->alloc_end = 0; /* unknown: the next log_prealloc starts after the records */
    *last_tx = expect_tx - 1;
    return 0;
}

uint64_t log_reserve(tlog *log, uint32_t len) {
    uint64_t pos = log->reserve_pos;
    if (LOG_OFF(pos) + (uint64_t)len > log->seg_bytes_max && LOG_OFF(pos) > LOG_SEG_HDR_LEN)
        pos = LOG_POS(LOG_SEG(pos) + 1, LOG_SEG_HDR_LEN);
    log->reserve_pos = pos + len;
    return pos;
}

/* Cuts preallocated zeros off the end of segment s (its records stay).
** Returns 0 or -errno. */
static int seg_trim(tlog *log, uint32_t s) {
    segment *sg = &log->segs[s];
    int64_t len = io_file_size(sg->fd);
    if (len < 0) return -errno;
    if ((uint64_t)len > sg->size && tally_io->ftruncate(sg->fd, (off_t)sg->size) < 0) return -errno;
    if (s == log->write_seg) log->alloc_end = 0;
    return 0;
}

int log_writev_at(tlog *log, uint64_t pos, const struct iovec *iov, int iovcnt) {
    uint32_t s = LOG_SEG(pos);
    segment *sg = &log->segs[s];
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) len += iov[i].iov_len;
    if (LOG_OFF(pos) != sg->size) return -EINVAL; /* appends only (invariant 1) */
    int rc = io_pwritev_all(sg->fd, iov, iovcnt, (off_t)LOG_OFF(pos));
    if (rc == 0) sg->size += len;
    log->group_bytes += len;
    return rc;
}

int log_group_end(tlog *log) {
    const segment *sg = &log->segs[log->write_seg];
    uint64_t group = log->group_bytes;
    log->group_bytes = 0;
    uint64_t ahead_min = (log->prealloc_next ? log->prealloc_next : LOG_PREALLOC_BYTES_MIN) / 4;
    return !log->prealloc_off && !log->read_only && group < LOG_PREALLOC_GROUP_BYTES_MAX &&
           log->alloc_end < sg->size + ahead_min && sg->size + ahead_min <= log->seg_bytes_max;
}

void log_prealloc(tlog *log) {
    segment *sg = &log->segs[log->write_seg];
    uint64_t from = log->alloc_end > sg->size ? log->alloc_end : sg->size;
    if (log->prealloc_off || from >= log->seg_bytes_max) return;
    /* A ledger that writes little keeps 64 KiB of zeros, a busy one up to
    ** 1 MiB (1000 open ledgers of a server: 64 MiB, not 1 GiB). */
    uint64_t len = log->prealloc_next ? log->prealloc_next : LOG_PREALLOC_BYTES_MIN;
    if (len < LOG_PREALLOC_BYTES) log->prealloc_next = (uint32_t)len * 2;
    if (from + len > log->seg_bytes_max) len = log->seg_bytes_max - from;
    if (io_pwrite_all(sg->fd, zeros, (size_t)len, (off_t)from) != 0) {
        log->prealloc_off = 1; /* only zeros can have been written: harmless */
        return;
    }
    log->alloc_end = from + len;
}

int log_trim(tlog *log) {
    if (log->read_only || !log->nused) return 0;
    int rc = seg_trim(log, log->write_seg);
    if (rc == 0 && tally_io->fdatasync(log->segs[log->write_seg].fd) < 0) rc = -errno;
    return rc;
}

int log_write(tlog *log, uint64_t pos, const struct iovec *iov, int iovcnt) {
    uint32_t s = LOG_SEG(pos);
    if (s != log->write_seg) {
        /* invariant 5: only the last segment ends in zeros */
        int rc = seg_trim(log, log->write_seg);
        if (rc) return rc;
        if (tally_io->fdatasync(log->segs[log->write_seg].fd) < 0) return -errno;
        uint64_t first_tx = rd64((const uint8_t *)iov[0].iov_base + 8);
        rc = seg_create(log, s, first_tx);
        if (rc) return rc;
        log->write_seg = s;
    }
    return log_writev_at(log, pos, iov, iovcnt);
}

int log_sync(tlog *log) {
    return tally_io->fdatasync(log->segs[log->write_seg].fd) < 0 ? -errno : 0;
}

int dir_lock(const char *dir, int *fd_out) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return tally_seterr(TALLY_EIO, "open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {0};
        ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        long pid = r > 0 ? strtol(buf, NULL, 10) : 0;
        return tally_seterr(TALLY_ELOCKED, "data directory %s in use by pid %ld", dir, pid);
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        close(fd);
        return tally_seterr(TALLY_EIO, "write %s: %s", path, strerror(errno));
    }
    *fd_out = fd;
    return 0;
}
