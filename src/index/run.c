/*
** run.c — build, map and search immutable index runs (format in run.h).
*/
#include "index/run.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "log/record.h"
#include "os/io.h"
#include "util/crc32c.h"
#include "util/err.h"

#define RUN_KEY_LEN 24u
#define RUN_VER_LEN 24u

struct run {
    uint8_t *map;
    size_t map_len;
    uint64_t index_tx, nkeys, nvers, nslots, heap_bytes;
    const uint8_t *keys, *heap;
    const ix_version *vers;
    const uint64_t *slots;
};

static uint64_t align8(uint64_t x) { return (x + 7) & ~7ull; }

int run_open(run **out, const char *path) {
    int fd = tally_io->open(path, O_RDONLY, 0);
    if (fd < 0) return tally_seterr(TALLY_EIO, "open index run %s: %s", path, strerror(errno));
    int64_t sz = io_file_size(fd);
    run *r = calloc(1, sizeof *r);
    if (!r || sz < (int64_t)RUN_HDR_LEN + 8) {
        tally_io->close(fd);
        free(r);
        return r ? tally_seterr(TALLY_ECORRUPT, "index run %s is truncated", path)
                 : tally_seterr(TALLY_ENOMEM, "out of memory");
    }
    void *m = mmap(NULL, (size_t)sz, PROT_READ, MAP_SHARED, fd, 0);
    tally_io->close(fd);
    if (m == MAP_FAILED) {
        free(r);
        return tally_seterr(TALLY_EIO, "mmap %s: %s", path, strerror(errno));
    }
    r->map = m;
    r->map_len = (size_t)sz;
    const uint8_t *h = m;
    int ok = memcmp(h, "TALLYRUN", 8) == 0 && rd32(h + 8) == 1 && rd32(h + 60) == tally_crc32c(0, h, 60);
    r->index_tx = rd64(h + 16);
    r->nkeys = rd64(h + 24);
    r->nvers = rd64(h + 32);
    r->nslots = rd64(h + 40);
    r->heap_bytes = rd64(h + 48);
    if (ok && r->nkeys < (1ull << 32) && r->nvers < (1ull << 40) && r->nslots < (1ull << 34) &&
        r->heap_bytes < (1ull << 44) && r->nslots >= 16 && !(r->nslots & (r->nslots - 1)) &&
        r->nslots >= 2 * r->nkeys) {
        uint64_t need = RUN_HDR_LEN + r->nkeys * RUN_KEY_LEN + r->nvers * RUN_VER_LEN + r->nslots * 8 +
                        align8(r->heap_bytes) + 8;
        ok = need == (uint64_t)sz;
    } else {
        ok = 0;
    }
    if (!ok) {
        run_close(r);
        return tally_seterr(TALLY_ECORRUPT, "index run %s has a bad header or size", path);
    }
    r->keys = h + RUN_HDR_LEN;
    r->vers = (const ix_version *)(r->keys + r->nkeys * RUN_KEY_LEN);
    r->slots = (const uint64_t *)((const uint8_t *)r->vers + r->nvers * RUN_VER_LEN);
    r->heap = (const uint8_t *)(r->slots + r->nslots);
    *out = r;
    return 0;
}

void run_close(run *r) {
    if (!r) return;
    if (r->map) munmap(r->map, r->map_len);
    free(r);
}

uint64_t run_index_tx(const run *r) { return r->index_tx; }
uint64_t run_key_count(const run *r) { return r->nkeys; }
uint64_t run_version_count(const run *r) { return r->nvers; }

int run_check_crc(const run *r) {
    size_t body = r->map_len - 8;
    return tally_crc32c(0, r->map, body) == rd32(r->map + body) && rd32(r->map + body + 4) == 0 ? 0 : -1;
}

void run_get(const run *r, uint64_t i, run_key *out) {
    const uint8_t *k = r->keys + i * RUN_KEY_LEN;
    uint64_t heap_off = rd64(k), first = rd64(k + 8);
    out->nver = rd32(k + 16);
    out->key_len = rd16(k + 20);
    out->ns = k[22];
    /* bounds are checked by verify; clamp here so a damaged run cannot fault */
    if (heap_off + out->key_len > r->heap_bytes) out->key_len = 0, heap_off = 0;
    if (first + out->nver > r->nvers) out->nver = 0, first = 0;
    out->key = r->heap + heap_off;
    out->vers = r->vers + first;
}

void run_prefetch(const run *r, uint64_t hash) { __builtin_prefetch(&r->slots[hash & (r->nslots - 1)]); }

int64_t run_find(const run *r, uint8_t ns, const void *key, size_t len, uint64_t hash) {
    uint64_t mask = r->nslots - 1, tag = hash >> 32;
    for (uint64_t i = hash & mask, probes = 0; probes < r->nslots; i = (i + 1) & mask, probes++) {
        uint64_t s = r->slots[i];
        if (!s) return -1;
        if ((s >> 32) != tag) continue;
        uint64_t ki = (s & 0xFFFFFFFFu) - 1;
        if (ki >= r->nkeys) return -1;
        run_key k;
        run_get(r, ki, &k);
        if (k.ns == ns && k.key_len == len && memcmp(k.key, key, len) == 0) return (int64_t)ki;
    }
    return -1;
}

uint64_t run_lower_bound(const run *r, uint8_t ns, const void *key, size_t len) {
    uint64_t lo = 0, hi = r->nkeys;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        run_key k;
        run_get(r, mid, &k);
        if (ix_key_cmp(k.ns, k.key, k.key_len, ns, key, len) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* ---- building ---- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static int buf_put(buf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

static int put_key(buf *keys, buf *heap, uint64_t *slots_hash, uint8_t ns, const uint8_t *key,
                   uint16_t len, uint64_t first, uint32_t nver, uint64_t *nk) {
    uint8_t k[RUN_KEY_LEN] = {0};
    wr64(k, heap->len);
    wr64(k + 8, first);
    wr32(k + 16, nver);
    wr16(k + 20, len);
    k[22] = ns;
    slots_hash[*nk] = ix_hash(ns, key, len);
    (*nk)++;
    return buf_put(keys, k, sizeof k) || buf_put(heap, key, len) ? -1 : 0;
}

int run_write(const char *dir, const char *name, uint64_t index_tx, const run *old, const memtable *mt) {
    uint64_t on = old ? old->nkeys : 0, mn = mt ? mt->nsorted : 0;
    uint64_t cap_keys = on + mn;
    buf keys = {0}, vers = {0}, heap = {0};
    uint64_t *hashes = malloc((cap_keys ? cap_keys : 1) * sizeof *hashes);
    uint64_t nk = 0, nv = 0, i = 0, j = 0;
    int rc = hashes ? 0 : -ENOMEM;
    while (rc == 0 && (i < on || j < mn)) {
        run_key a = {0};
        const mt_key *b = j < mn ? mt->sorted[j] : NULL;
        if (i < on) run_get(old, i, &a);
        int c = i >= on ? 1 : !b ? -1 : ix_key_cmp(a.ns, a.key, a.key_len, b->ns, b->key, b->key_len);
        uint64_t first = nv;
        uint32_t cnt = 0;
        if (c <= 0) {
            if (buf_put(&vers, a.vers, a.nver * sizeof(ix_version))) rc = -ENOMEM;
            cnt += a.nver;
        }
        if (c >= 0) {
            /* invariant (2): the memtable's versions continue the run's */
            if (b->base_rev != (c == 0 ? a.nver : 0)) rc = -EINVAL;
            if (buf_put(&vers, b->vers, b->nver * sizeof(ix_version))) rc = -ENOMEM;
            cnt += b->nver;
        }
        nv += cnt;
        if (rc == 0)
            rc = c <= 0 ? put_key(&keys, &heap, hashes, a.ns, a.key, a.key_len, first, cnt, &nk)
                        : put_key(&keys, &heap, hashes, b->ns, b->key, b->key_len, first, cnt, &nk);
        if (rc == -1) rc = -ENOMEM;
        if (c <= 0) i++;
        if (c >= 0) j++;
    }
    uint64_t nslots = 16;
    while (nslots < 2 * nk) nslots *= 2;
    uint64_t *slots = rc == 0 ? calloc(nslots, 8) : NULL;
    if (rc == 0 && !slots) rc = -ENOMEM;
    for (uint64_t k = 0; rc == 0 && k < nk; k++) {
        uint64_t s = hashes[k] & (nslots - 1);
        while (slots[s]) s = (s + 1) & (nslots - 1);
        slots[s] = (hashes[k] >> 32) << 32 | (k + 1);
    }
    uint8_t hdr[RUN_HDR_LEN] = {0};
    memcpy(hdr, "TALLYRUN", 8);
    wr32(hdr + 8, 1);
    wr64(hdr + 16, index_tx);
    wr64(hdr + 24, nk);
    wr64(hdr + 32, nv);
    wr64(hdr + 40, nslots);
    wr64(hdr + 48, heap.len);
    wr32(hdr + 60, tally_crc32c(0, hdr, 60));
    static const uint8_t zeros[8];
    uint64_t pad = align8(heap.len) - heap.len;
    uint32_t crc = 0;
    crc = tally_crc32c(crc, hdr, sizeof hdr);
    crc = tally_crc32c(crc, keys.p, keys.len);
    crc = tally_crc32c(crc, vers.p, vers.len);
    crc = tally_crc32c(crc, slots, rc == 0 ? nslots * 8 : 0);
    crc = tally_crc32c(crc, heap.p, heap.len);
    crc = tally_crc32c(crc, zeros, pad);
    uint8_t trailer[8] = {0};
    wr32(trailer, crc);
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    int fd = rc == 0 ? tally_io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
    if (rc == 0 && fd < 0) rc = -errno;
    if (rc == 0) {
        struct iovec iov[7] = {{hdr, sizeof hdr}, {keys.p, keys.len}, {vers.p, vers.len},
                               {slots, nslots * 8}, {heap.p, heap.len}, {(void *)zeros, pad},
                               {trailer, 8}};
        rc = io_pwritev_all(fd, iov, 7, 0);
        if (rc == 0 && tally_io->fsync(fd) < 0) rc = -errno;
    }
    if (fd >= 0) tally_io->close(fd);
    if (rc == 0 && tally_io->rename(tmp, dst) < 0) rc = -errno;
    if (rc == 0) rc = io_fsync_dir(dir);
    if (rc != 0 && fd >= 0) tally_io->unlink(tmp);
    free(keys.p);
    free(vers.p);
    free(heap.p);
    free(hashes);
    free(slots);
    return rc;
}
