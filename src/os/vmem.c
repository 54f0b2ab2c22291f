/*
** vmem.c — large zeroed memory straight from the kernel, and the reserve of
** freed VMEM_FILL regions (see vmem.h).
**
** The reserve is an array of regions sorted by address, none overlapping,
** none adjacent (adjacent ones are merged when a region is put back). Each
** region is 2 MiB-aligned and a multiple of 2 MiB long, so any piece of one
** can still be backed by huge pages. Invariants, kept under rs.mu:
**   (1) rs.bytes == the sum of the regions' lengths <= reserve_cap();
**   (2) rs.n <= VMEM_RESERVE_REGIONS_MAX;
**   (3) a region is handed out by at most one vmem_alloc (taken out of the
**       array before the lock is released); unmapping happens outside the lock.
*/
#include "os/vmem.h"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define HUGE_BYTES (2u << 20)
#define PAGE_BYTES 4096u

static size_t page_round(size_t len) { return (len + PAGE_BYTES - 1) & ~(size_t)(PAGE_BYTES - 1); }
static size_t huge_round(size_t len) { return (len + HUGE_BYTES - 1) & ~(size_t)(HUGE_BYTES - 1); }

/* Faults p[0, len) in for writing: one madvise, else a write per page. */
static void populate(uint8_t *p, size_t len) {
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0) return;
#endif
    for (size_t i = 0; i < len; i += PAGE_BYTES) ((volatile uint8_t *)p)[i] = 0;
}

/* ---- the reserve ---- */

typedef struct region {
    uint8_t *p;
    size_t len;
    uint64_t freed_ms; /* when it was last put back */
} region;

static struct {
    pthread_mutex_t mu;
    size_t n, bytes;
    region r[VMEM_RESERVE_REGIONS_MAX];
} rs = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t reserve_cap(void) {
    static size_t cap; /* racy first computation is harmless: same value */
    if (!cap) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        size_t eighth = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 8 : VMEM_RESERVE_BYTES_MAX;
        cap = eighth < VMEM_RESERVE_BYTES_MAX ? eighth : VMEM_RESERVE_BYTES_MAX;
        if (cap < HUGE_BYTES) cap = HUGE_BYTES;
    }
    return cap;
}

static void remove_at(size_t i) {
    rs.bytes -= rs.r[i].len;
    memmove(&rs.r[i], &rs.r[i + 1], (rs.n - i - 1) * sizeof rs.r[0]);
    rs.n--;
}

/* Moves regions unused since before cutoff_ms into out[] (room for
** VMEM_RESERVE_REGIONS_MAX). Caller holds rs.mu. */
static size_t expire_locked(uint64_t cutoff_ms, region *out) {
    size_t k = 0;
    for (size_t i = 0; i < rs.n;) {
        if (rs.r[i].freed_ms <= cutoff_ms) out[k++] = rs.r[i], remove_at(i);
        else i++;
    }
    return k;
}

static void unmap_all(const region *v, size_t k) {
    for (size_t i = 0; i < k; i++) munmap(v[i].p, v[i].len);
}

static uint64_t age_cutoff(uint64_t now, uint64_t age_ms) { return now > age_ms ? now - age_ms : 0; }

/* A piece of len bytes (a multiple of 2 MiB) from the smallest region that
** holds it, or NULL. */
static uint8_t *reserve_take(size_t len) {
    region old[VMEM_RESERVE_REGIONS_MAX];
    uint8_t *p = NULL;
    uint64_t now = now_ms();
    pthread_mutex_lock(&rs.mu);
    size_t k = expire_locked(age_cutoff(now, VMEM_RESERVE_AGE_MS), old);
    size_t best = rs.n;
    for (size_t i = 0; i < rs.n; i++)
        if (rs.r[i].len >= len && (best == rs.n || rs.r[i].len < rs.r[best].len)) best = i;
    if (best < rs.n) {
        region *r = &rs.r[best];
        p = r->p;
        if (r->len == len) remove_at(best);
        else r->p += len, r->len -= len, rs.bytes -= len;
    }
    pthread_mutex_unlock(&rs.mu);
    unmap_all(old, k);
    return p;
}

/* Takes kept regions, largest first, until they hold len bytes or none is
** left; out[] gets them (room for VMEM_RESERVE_REGIONS_MAX). The last one
** taken may be longer than needed: the caller puts its rest back. */
static size_t reserve_take_all(size_t len, region *out) {
    size_t k = 0, got = 0;
    pthread_mutex_lock(&rs.mu);
    while (got < len && rs.n) {
        size_t big = 0;
        for (size_t i = 1; i < rs.n; i++)
            if (rs.r[i].len > rs.r[big].len) big = i;
        got += rs.r[big].len;
        out[k++] = rs.r[big];
        remove_at(big);
    }
    pthread_mutex_unlock(&rs.mu);
    return k;
}

/* Keeps [p, p+len) (2 MiB-aligned, a multiple of 2 MiB), or unmaps it when it
** cannot be kept: the oldest regions make room first. */
static void reserve_put(uint8_t *p, size_t len) {
    region old[VMEM_RESERVE_REGIONS_MAX];
    size_t k = 0, cap = reserve_cap();
    uint64_t now = now_ms();
    if (len > cap || ((uintptr_t)p & (HUGE_BYTES - 1)) || (len & (HUGE_BYTES - 1))) {
        munmap(p, len);
        return;
    }
    pthread_mutex_lock(&rs.mu);
    k = expire_locked(age_cutoff(now, VMEM_RESERVE_AGE_MS), old);
    while (rs.n && (rs.bytes + len > cap || rs.n == VMEM_RESERVE_REGIONS_MAX)) {
        size_t oldest = 0;
        for (size_t i = 1; i < rs.n; i++)
            if (rs.r[i].freed_ms < rs.r[oldest].freed_ms) oldest = i;
        old[k++] = rs.r[oldest];
        remove_at(oldest);
    }
    size_t at = 0;
    while (at < rs.n && rs.r[at].p < p) at++;
    int join_prev = at > 0 && rs.r[at - 1].p + rs.r[at - 1].len == p;
    int join_next = at < rs.n && p + len == rs.r[at].p;
    if (join_prev) {
        region *pr = &rs.r[at - 1];
        pr->len += len;
        pr->freed_ms = now;
        rs.bytes += len;
        if (join_next) { /* the next region's bytes are counted already */
            pr->len += rs.r[at].len;
            memmove(&rs.r[at], &rs.r[at + 1], (rs.n - at - 1) * sizeof rs.r[0]);
            rs.n--;
        }
    } else if (join_next) {
        rs.r[at].p = p;
        rs.r[at].len += len;
        rs.r[at].freed_ms = now;
        rs.bytes += len;
    } else {
        memmove(&rs.r[at + 1], &rs.r[at], (rs.n - at) * sizeof rs.r[0]);
        rs.r[at] = (region){p, len, now};
        rs.n++;
        rs.bytes += len;
    }
    pthread_mutex_unlock(&rs.mu);
    unmap_all(old, k);
}

size_t vmem_trim(uint64_t older_than_ms) {
    region old[VMEM_RESERVE_REGIONS_MAX];
    size_t bytes = 0;
    uint64_t now = now_ms();
    pthread_mutex_lock(&rs.mu);
    size_t k = expire_locked(older_than_ms ? age_cutoff(now, older_than_ms) : UINT64_MAX, old);
    pthread_mutex_unlock(&rs.mu);
    for (size_t i = 0; i < k; i++) bytes += old[i].len;
    unmap_all(old, k);
    return bytes;
}

size_t vmem_reserve_bytes(void) {
    pthread_mutex_lock(&rs.mu);
    size_t b = rs.bytes;
    pthread_mutex_unlock(&rs.mu);
    return b;
}

/* ---- allocation ---- */

/* A fresh 2 MiB-aligned mapping of len bytes (len a multiple of 2 MiB),
** populated as huge pages from offset fresh_from on (the caller fills the
** part before it). */
static uint8_t *map_huge(size_t len, size_t fresh_from) {
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
    size_t span = len + HUGE_BYTES; /* huge pages need 2 MiB-aligned ranges: cut both ends */
    uint8_t *m = mmap(NULL, span, prot, flags, -1, 0);
    if (m == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)m + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (p > m) munmap(m, (size_t)(p - m));
    if (m + span > p + len) munmap(p + len, (size_t)(m + span - (p + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(p, len, MADV_HUGEPAGE); /* advice only */
#endif
    if (fresh_from < len) populate(p + fresh_from, len - fresh_from);
    return p;
}

/* len bytes (a multiple of 2 MiB) made of kept regions moved side by side
** into one new range (mremap moves page tables, not bytes: no copy, no
** fault), the part they do not cover faulted in fresh; NULL if nothing is
** kept. A kept region that cannot be moved is unmapped, its part made fresh. */
static uint8_t *reserve_gather(size_t len) {
    region got[VMEM_RESERVE_REGIONS_MAX];
    size_t k = reserve_take_all(len, got);
    if (!k) return NULL;
    uint8_t *dst = map_huge(len, len); /* address space only, for now */
    if (!dst) {
        for (size_t i = 0; i < k; i++) reserve_put(got[i].p, got[i].len);
        return NULL;
    }
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        size_t n = got[i].len < len - off ? got[i].len : len - off;
        if (mremap(got[i].p, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, dst + off) == MAP_FAILED) {
            munmap(got[i].p, n);
            populate(dst + off, n);
        } else {
            memset(dst + off, 0, n); /* kept pages hold their last user's bytes */
        }
        if (n < got[i].len) reserve_put(got[i].p + n, got[i].len - n);
        off += n;
    }
    if (off < len) populate(dst + off, len - off); /* the rest: fresh pages */
    return dst;
}

void *vmem_alloc(size_t len, int mode) {
    if (len < VMEM_MMAP_MIN) return calloc(1, len ? len : 1);
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (mode != VMEM_FILL) {
        void *p = mmap(NULL, page_round(len), prot, flags, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    if (len >= VMEM_RESERVE_MIN) {
        size_t rlen = huge_round(len);
        uint8_t *p = reserve_take(rlen);
        if (p) {
            memset(p, 0, len); /* kept pages hold their last user's bytes */
            return p;
        }
        if ((p = reserve_gather(rlen))) return p;
        return map_huge(rlen, 0);
    }
    void *p = mmap(NULL, page_round(len), prot, flags, -1, 0);
    if (p == MAP_FAILED) return NULL;
    populate(p, page_round(len));
    return p;
}

void vmem_free(void *p, size_t len, int mode) {
    if (!p) return;
    if (len < VMEM_MMAP_MIN) free(p);
    else if (mode == VMEM_FILL && len >= VMEM_RESERVE_MIN) reserve_put(p, huge_round(len));
    else munmap(p, page_round(len));
}
