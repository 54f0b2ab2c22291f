/*
** afile.c — append-only item file with lazy chunked mmaps (see afile.h).
*/
#include "afile.h"
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "io.h"
#include "vmem.h"

struct afile {
    int fd;
    size_t item_size;
    uint64_t count;
    _Atomic(uint8_t *) *chunks; /* AFILE_CHUNKS_MAX lazily mapped chunks */
    _Atomic uint32_t chunks_hi;  /* one past the highest chunk ever mapped */
};

int afile_open(afile **out, const char *path, size_t item_size) {
    int fd = tally_io->open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return -errno;
    int64_t sz = io_file_size(fd);
    afile *f = calloc(1, sizeof *f);
    _Atomic(uint8_t *) *ch = vmem_alloc(AFILE_CHUNKS_MAX * sizeof *ch, VMEM_LAZY); /* zeros are NULLs */
    if (sz < 0 || !f || !ch) {
        tally_io->close(fd);
        free(f);
        vmem_free(ch, AFILE_CHUNKS_MAX * sizeof *ch, VMEM_LAZY);
        return sz < 0 ? (int)sz : -ENOMEM;
    }
    f->fd = fd;
    f->item_size = item_size;
    f->chunks = ch;
    f->count = (uint64_t)sz / item_size;
    if ((uint64_t)sz % item_size && tally_io->ftruncate(fd, (off_t)(f->count * item_size)) < 0) {
        int rc = -errno;
        afile_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void afile_close(afile *f) {
    if (!f) return;
    for (uint32_t i = 0; i < atomic_load(&f->chunks_hi); i++) {
        uint8_t *p = atomic_load(&f->chunks[i]);
        if (p) munmap(p, AFILE_CHUNK_BYTES);
    }
    vmem_free((void *)f->chunks, AFILE_CHUNKS_MAX * sizeof *f->chunks, VMEM_LAZY);
    tally_io->close(f->fd);
    free(f);
}

uint64_t afile_count(const afile *f) { return f->count; }

int afile_append(afile *f, const void *items, uint64_t n) {
    if (!n) return 0;
    if ((f->count + n) * f->item_size > AFILE_CHUNK_BYTES * AFILE_CHUNKS_MAX) return -EFBIG;
    int rc = io_pwrite_all(f->fd, items, n * f->item_size, (off_t)(f->count * f->item_size));
    if (rc == 0) f->count += n;
    return rc;
}

int afile_truncate(afile *f, uint64_t count) {
    if (count >= f->count) return 0;
    if (tally_io->ftruncate(f->fd, (off_t)(count * f->item_size)) < 0) return -errno;
    f->count = count;
    return 0;
}

int afile_sync(afile *f) { return tally_io->fdatasync(f->fd) < 0 ? -errno : 0; }

const void *afile_item(afile *f, uint64_t i) {
    uint64_t off = i * f->item_size;
    uint64_t c = off / AFILE_CHUNK_BYTES;
    uint8_t *p = atomic_load_explicit(&f->chunks[c], memory_order_acquire);
    if (!p) {
        void *m = mmap(NULL, AFILE_CHUNK_BYTES, PROT_READ, MAP_SHARED, f->fd,
                       (off_t)(c * AFILE_CHUNK_BYTES));
        if (m == MAP_FAILED) return NULL;
        uint8_t *expect = NULL;
        if (!atomic_compare_exchange_strong(&f->chunks[c], &expect, (uint8_t *)m)) {
            munmap(m, AFILE_CHUNK_BYTES);
            p = expect;
        } else {
            p = m;
            uint32_t hi = atomic_load(&f->chunks_hi);
            while (hi < c + 1 && !atomic_compare_exchange_weak(&f->chunks_hi, &hi, (uint32_t)c + 1)) {
            }
        }
    }
    return p + (off % AFILE_CHUNK_BYTES);
}
