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
#include "os/vmem.h"
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

/* ---- building ----
** One pass over the merge of the old run and the frozen memtable. Key count
** and key bytes are known in advance (base_rev tells which memtable keys the
** run already has), which fixes every section's offset; each section streams
** through its own 1 MiB buffer to its final offset. Only the hash-slot
** array and its buckets (16 bytes per key) are held in memory. Each stream
** checksums what it writes, and the trailer CRC is combined from the
** sections' CRCs in file order (tally_crc32c_combine), so the file is never
** read back (that read was a full pass over the run at every checkpoint).
**
** The slot array is filled in two steps: the merge appends (hash, slot
** value) to one of B buckets by the top bits of the home slot, then each
** bucket is inserted in turn, so the linear probes of a bucket stay within
** (about) nslots/B consecutive slots that fit in the L2 cache. Inserting in
** key order hit a random slot per key: a cache miss each, measured 13% of an
** ingest's CPU. Linear probing finds a key wherever in its probe sequence
** it was put, so the order of insertion does not matter to readers. */

#define SW_BUF_BYTES (1u << 20)

typedef struct swriter {
    int fd;
    uint64_t off;     /* file offset of buf[0] */
    size_t n;
    int rc;
    uint8_t *buf;
    uint32_t crc;     /* CRC-32C of everything this stream wrote */
} swriter;

static void sw_flush(swriter *w) {
    if (w->n) w->crc = tally_crc32c(w->crc, w->buf, w->n);
    if (w->rc == 0 && w->n) w->rc = io_pwrite_all(w->fd, w->buf, w->n, (off_t)w->off);
    if (w->rc == 0) io_writeback_start(w->fd, w->off, w->n); /* no burst at the fsync */
    w->off += w->n;
    w->n = 0;
}

static void sw_put(swriter *w, const void *d, size_t len) {
    const uint8_t *p = d;
    while (len) {
        size_t k = SW_BUF_BYTES - w->n < len ? SW_BUF_BYTES - w->n : len;
        memcpy(w->buf + w->n, p, k);
        w->n += k, p += k, len -= k;
        if (w->n == SW_BUF_BYTES) sw_flush(w);
    }
}

/* The merge: calls fn for every distinct key in order, with the old run's
** versions (if any) and the memtable node (if any). */
typedef int (*merge_fn)(void *ctx, const run_key *a, const mt_key *b);

static int merge_walk(const run *old, const memtable *mt, merge_fn fn, void *ctx) {
    uint64_t on = old ? old->nkeys : 0, mn = mt ? mt->nsorted : 0, i = 0, j = 0;
    while (i < on || j < mn) {
        run_key a = {0};
        const mt_key *b = j < mn ? mt->sorted[j] : NULL;
        /* the nodes are scattered in the memtable's arena: fetch ahead */
        if (j + 16 < mn) mt_prefetch_node(mt->sorted[j + 16], 0);
        if (i < on) run_get(old, i, &a);
        int c = i >= on ? 1 : !b ? -1 : ix_key_cmp(a.ns, a.key, a.key_len, b->ns, b->key, b->key_len);
        /* invariant (2): a memtable node's versions continue the run's */
        if (c >= 0 && b->base_rev != (c == 0 ? a.nver : 0)) return -EINVAL;
        int rc = fn(ctx, c <= 0 ? &a : NULL, c >= 0 ? b : NULL);
        if (rc) return rc;
        if (c <= 0) i++;
        if (c >= 0) j++;
    }
    return 0;
}

/* The slot buckets: chunks of (hash, slot value) from one pool. */
#define SLOT_REGION_SLOTS 32768u /* slots per bucket region: 256 KiB of slots */
#define SLOT_CHUNK_ITEMS  511u

typedef struct slot_item {
    uint64_t hash, value;
} slot_item;

typedef struct slot_chunk {
    struct slot_chunk *next;
    uint64_t n;
    slot_item it[SLOT_CHUNK_ITEMS];
} slot_chunk;

typedef struct build {
    uint64_t nk, nv, heap;      /* pass 1 totals; pass 2 running positions */
    uint64_t *slots, nslots;
    slot_chunk *pool, **head, **tail;
    uint64_t pool_used, pool_n, nbuckets;
    unsigned bucket_shift;      /* home slot >> bucket_shift = bucket */
    swriter keys, vers, heapw;
} build;

static int buckets_init(build *bd, uint64_t nk) {
    bd->nbuckets = bd->nslots > SLOT_REGION_SLOTS ? bd->nslots / SLOT_REGION_SLOTS : 1;
    bd->bucket_shift = 0;
    while ((bd->nslots >> bd->bucket_shift) > bd->nbuckets) bd->bucket_shift++;
    bd->pool_n = nk / SLOT_CHUNK_ITEMS + bd->nbuckets + 1; /* one partial chunk per bucket */
    bd->pool = vmem_alloc(bd->pool_n * sizeof *bd->pool, VMEM_FILL);
    bd->head = calloc(bd->nbuckets, sizeof *bd->head);
    bd->tail = calloc(bd->nbuckets, sizeof *bd->tail);
    return bd->pool && bd->head && bd->tail ? 0 : -ENOMEM;
}

static int bucket_add(build *bd, uint64_t hash, uint64_t value) {
    uint64_t b = (hash & (bd->nslots - 1)) >> bd->bucket_shift;
    slot_chunk *c = bd->tail[b];
    if (!c || c->n == SLOT_CHUNK_ITEMS) {
        if (bd->pool_used == bd->pool_n) return -EINVAL; /* more keys than counted */
        slot_chunk *nc = &bd->pool[bd->pool_used++];
        nc->next = NULL;
        nc->n = 0;
        if (c) c->next = nc;
        else bd->head[b] = nc;
        bd->tail[b] = c = nc;
    }
    c->it[c->n++] = (slot_item){hash, value};
    return 0;
}

/* Linear probing, bucket by bucket (see the comment above). */
static void buckets_fill(build *bd) {
    uint64_t mask = bd->nslots - 1;
    for (uint64_t b = 0; b < bd->nbuckets; b++)
        for (const slot_chunk *c = bd->head[b]; c; c = c->next)
            for (uint64_t i = 0; i < c->n; i++) {
                uint64_t slot = c->it[i].hash & mask;
                while (bd->slots[slot]) slot = (slot + 1) & mask;
                bd->slots[slot] = c->it[i].value;
            }
}

static void buckets_free(build *bd) {
    vmem_free(bd->pool, bd->pool_n * sizeof *bd->pool, VMEM_FILL);
    free(bd->head);
    free(bd->tail);
}


static int emit_key(void *ctx, const run_key *a, const mt_key *b) {
    build *bd = ctx;
    uint8_t ns = a ? a->ns : b->ns;
    uint16_t len = a ? a->key_len : b->key_len;
    const uint8_t *key = a ? a->key : b->key;
    uint32_t cnt = (a ? a->nver : 0) + (b ? b->nver : 0);
    uint8_t k[RUN_KEY_LEN] = {0};
    wr64(k, bd->heap);
    wr64(k + 8, bd->nv);
    wr32(k + 16, cnt);
    wr16(k + 20, len);
    k[22] = ns;
    sw_put(&bd->keys, k, sizeof k);
    if (a) sw_put(&bd->vers, a->vers, a->nver * sizeof(ix_version));
    if (b) sw_put(&bd->vers, b->vers, b->nver * sizeof(ix_version));
    sw_put(&bd->heapw, key, len);
    uint64_t h = ix_hash(ns, key, len);
    if (bucket_add(bd, h, (h >> 32) << 32 | (bd->nk + 1)) != 0) return -EINVAL;
    bd->nk++;
    bd->nv += cnt;
    bd->heap += len;
    return 0;
}

int run_write(const char *dir, const char *name, uint64_t index_tx, const run *old, const memtable *mt,
              const char *spare) {
    build bd;
    memset(&bd, 0, sizeof bd);
    int rc = 0;
    /* Sizes without a counting pass: a memtable node with base_rev > 0 is a key
    ** the old run already holds (base_rev counts its versions there); one with
    ** base_rev == 0 is a new key. emit_key asserts the totals afterwards. */
    uint64_t nk = old ? old->nkeys : 0, heap_bytes = old ? old->heap_bytes : 0;
    for (uint64_t i = 0; mt && i < mt->nsorted; i++)
        if (mt->sorted[i]->base_rev == 0) nk++, heap_bytes += mt->sorted[i]->key_len;
    uint64_t nv = (old ? old->nvers : 0) + (mt ? mt->nversions : 0);
    uint64_t nslots = 16;
    while (nslots < 2 * nk) nslots *= 2;
    uint64_t keys_off = RUN_HDR_LEN, vers_off = keys_off + nk * RUN_KEY_LEN, slots_off = vers_off + nv * RUN_VER_LEN,
             heap_off = slots_off + nslots * 8, trailer_off = heap_off + align8(heap_bytes);
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    bd.slots = vmem_alloc(nslots * 8, VMEM_FILL);
    bd.nslots = nslots;
    uint8_t *bufs = vmem_alloc(3 * (size_t)SW_BUF_BYTES, VMEM_FILL);
    int have = bd.slots && bufs && buckets_init(&bd, nk) == 0;
    int reuse = 0;
    if (have && spare) {
        char sp[PATH_MAX];
        snprintf(sp, sizeof sp, "%s/%s", dir, spare);
        reuse = tally_io->rename(sp, tmp) == 0;
    }
    int fd = have ? tally_io->open(tmp, O_RDWR | O_CREAT | (reuse ? 0 : O_TRUNC), 0644) : -1;
    if (!have) rc = -ENOMEM;
    else if (fd < 0) rc = -errno;
    if (rc == 0) {
        bd.nk = bd.nv = bd.heap = 0;
        bd.keys = (swriter){fd, keys_off, 0, 0, bufs, 0};
        bd.vers = (swriter){fd, vers_off, 0, 0, bufs + SW_BUF_BYTES, 0};
        bd.heapw = (swriter){fd, heap_off, 0, 0, bufs + 2 * (size_t)SW_BUF_BYTES, 0};
        rc = merge_walk(old, mt, emit_key, &bd);
        sw_flush(&bd.keys);
        sw_flush(&bd.vers);
        sw_flush(&bd.heapw);
        if (rc == 0) rc = bd.keys.rc ? bd.keys.rc : bd.vers.rc ? bd.vers.rc : bd.heapw.rc;
        /* the merge produced exactly the sizes the layout was made for */
        if (rc == 0 && (bd.nk != nk || bd.nv != nv || bd.heap != heap_bytes)) rc = -EINVAL;
        if (rc == 0) buckets_fill(&bd);
    }
    if (rc == 0) {
        uint8_t hdr[RUN_HDR_LEN] = {0};
        static const uint8_t zeros[8];
        memcpy(hdr, "TALLYRUN", 8);
        wr32(hdr + 8, 1);
        wr64(hdr + 16, index_tx);
        wr64(hdr + 24, nk);
        wr64(hdr + 32, nv);
        wr64(hdr + 40, nslots);
        wr64(hdr + 48, heap_bytes);
        wr32(hdr + 60, tally_crc32c(0, hdr, 60));
        rc = io_pwrite_all(fd, hdr, sizeof hdr, 0);
        if (rc == 0) rc = io_pwrite_all(fd, bd.slots, nslots * 8, (off_t)slots_off);
        if (rc == 0) io_writeback_start(fd, slots_off, nslots * 8);
        uint64_t pad = trailer_off - heap_off - heap_bytes;
        if (rc == 0 && pad) rc = io_pwrite_all(fd, zeros, pad, (off_t)(heap_off + heap_bytes));
        /* the sections are adjacent: header, keys, versions, slots, heap, pad */
        uint32_t crc = tally_crc32c(0, hdr, sizeof hdr);
        crc = tally_crc32c_combine(crc, bd.keys.crc, vers_off - keys_off);
        crc = tally_crc32c_combine(crc, bd.vers.crc, slots_off - vers_off);
        crc = tally_crc32c_combine(crc, tally_crc32c(0, bd.slots, nslots * 8), heap_off - slots_off);
        crc = tally_crc32c_combine(crc, bd.heapw.crc, heap_bytes);
        crc = tally_crc32c_combine(crc, tally_crc32c(0, zeros, pad), pad);
        uint8_t trailer[8] = {0};
        wr32(trailer, crc);
        if (rc == 0) rc = io_pwrite_all(fd, trailer, 8, (off_t)trailer_off);
        /* a spare written over may have been longer */
        if (rc == 0 && reuse && tally_io->ftruncate(fd, (off_t)(trailer_off + 8)) < 0) rc = -errno;
        if (rc == 0 && tally_io->fsync(fd) < 0) rc = -errno;
    }
    if (fd >= 0) tally_io->close(fd);
    if (rc == 0 && tally_io->rename(tmp, dst) < 0) rc = -errno;
    if (rc == 0) rc = io_fsync_dir(dir);
    if (rc != 0 && fd >= 0) tally_io->unlink(tmp);
    vmem_free(bd.slots, nslots * 8, VMEM_FILL);
    buckets_free(&bd);
    vmem_free(bufs, 3 * (size_t)SW_BUF_BYTES, VMEM_FILL);
    return rc;
}

void run_spare_keep(const char *dir, const char *name) {
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof from, "%s/%s", dir, name);
    snprintf(to, sizeof to, "%s/%s", dir, RUN_SPARE_NAME);
    if (tally_io->rename(from, to) != 0) tally_io->unlink(from);
}

void run_spare_drop(const char *dir) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, RUN_SPARE_NAME);
    tally_io->unlink(p);
}
