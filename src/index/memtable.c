/*
** memtable.c — hash table of key nodes with an arena (see memtable.h).
*/
#include "index/memtable.h"
#include "os/vmem.h"
#include <pthread.h>
#include <stdlib.h>

/* Arena blocks grow from MT_BLOCK_BYTES_MIN, doubling, to MT_BLOCK_BYTES:
** block i has block_bytes(i). A quiet ledger's memtable then holds 64 KiB of
** nodes, not 4 MiB (1000 ledgers of a server with a write each: measured
** 4.3 GB of RSS with 4 MiB first blocks). Only full-size blocks go through
** the pool. */
#define MT_BLOCK_BYTES_MIN (64u << 10)
#define MT_BLOCK_BYTES     (4u << 20)
#define MT_SLOTS_MIN       (1u << 12)

static size_t block_bytes(size_t i) {
    return i >= 6 ? MT_BLOCK_BYTES : (size_t)MT_BLOCK_BYTES_MIN << i; /* 64 KiB << 6 = 4 MiB */
}

struct mt_pool {
    pthread_mutex_t mu;
    size_t n;
    void *blocks[MT_POOL_BLOCKS_MAX];
};

mt_pool *mt_pool_new(void) {
    mt_pool *p = calloc(1, sizeof *p);
    if (p) pthread_mutex_init(&p->mu, NULL);
    return p;
}

void mt_pool_free(mt_pool *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) vmem_free(p->blocks[i], MT_BLOCK_BYTES, VMEM_FILL);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* A used block (its bytes are stale: arena users initialise what they take). */
static void *pool_take(mt_pool *p) {
    void *b = NULL;
    if (!p) return NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n) b = p->blocks[--p->n];
    pthread_mutex_unlock(&p->mu);
    return b;
}

/* 0 if the pool kept blk, -1 if it is full. */
static int pool_put(mt_pool *p, void *blk) {
    int rc = -1;
    if (!p) return -1;
    pthread_mutex_lock(&p->mu);
    if (p->n < MT_POOL_BLOCKS_MAX) p->blocks[p->n++] = blk, rc = 0;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

memtable *mt_new(mt_pool *pool) {
    memtable *mt = calloc(1, sizeof *mt);
    if (!mt) return NULL;
    mt->pool = pool;
    mt->slots = vmem_alloc(MT_SLOTS_MIN * sizeof *mt->slots, VMEM_FILL);
    if (!mt->slots) {
        free(mt);
        return NULL;
    }
    mt->mask = MT_SLOTS_MIN - 1;
    mt->block_used = 0; /* no block yet: nblocks == 0 */
    return mt;
}

void mt_free(memtable *mt) {
    if (!mt) return;
    for (uint64_t i = 0; i <= mt->mask; i++) {
        mt_key *k = mt->slots[i].k;
        if (k && k->vers != &k->v0) free(k->vers);
    }
    for (size_t i = 0; i < mt->nblocks; i++)
        if (block_bytes(i) != MT_BLOCK_BYTES || pool_put(mt->pool, mt->blocks[i]) != 0)
            vmem_free(mt->blocks[i], block_bytes(i), VMEM_FILL);
    free(mt->blocks);
    vmem_free(mt->slots, (mt->mask + 1) * sizeof *mt->slots, VMEM_FILL);
    vmem_free(mt->sorted, mt->sorted_bytes, VMEM_FILL);
    free(mt);
}

/* n bytes of the arena; a block from the pool holds stale bytes, so the
** caller initialises all it uses. */
static void *arena_alloc(memtable *mt, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (!mt->nblocks || mt->block_used + n > block_bytes(mt->nblocks - 1)) {
        if (mt->nblocks == mt->cap_blocks) {
            size_t cap = mt->cap_blocks ? mt->cap_blocks * 2 : 64;
            uint8_t **b = realloc(mt->blocks, cap * sizeof *b);
            if (!b) return NULL;
            mt->blocks = b;
            mt->cap_blocks = cap;
        }
        size_t len = block_bytes(mt->nblocks);
        uint8_t *blk = len == MT_BLOCK_BYTES ? pool_take(mt->pool) : NULL;
        /* fresh blocks, slot tables and sort arrays are VMEM_FILL: faulted in
        ** at once as huge pages, not a (costly, virtualized) fault per page */
        if (!blk && !(blk = vmem_alloc(len, VMEM_FILL))) return NULL;
        mt->blocks[mt->nblocks++] = blk;
        mt->block_used = 0;
    }
    void *p = mt->blocks[mt->nblocks - 1] + mt->block_used;
    mt->block_used += n;
    return p;
}

mt_key *mt_find(const memtable *mt, uint8_t ns, const void *key, size_t len, uint64_t hash) {
    for (uint64_t i = hash & mt->mask;; i = (i + 1) & mt->mask) {
        const mt_slot *s = &mt->slots[i];
        if (!s->k) return NULL;
        if (s->hash == hash && s->k->ns == ns && s->k->key_len == len && memcmp(s->k->key, key, len) == 0)
            return s->k;
    }
}

static int mt_grow(memtable *mt) {
    uint64_t nslots = (mt->mask + 1) * 2;
    mt_slot *s = vmem_alloc(nslots * sizeof *s, VMEM_FILL);
    if (!s) return -1;
    for (uint64_t i = 0; i <= mt->mask; i++) {
        if (!mt->slots[i].k) continue;
        uint64_t j = mt->slots[i].hash & (nslots - 1);
        while (s[j].k) j = (j + 1) & (nslots - 1);
        s[j] = mt->slots[i];
    }
    vmem_free(mt->slots, (mt->mask + 1) * sizeof *mt->slots, VMEM_FILL);
    mt->slots = s;
    mt->mask = nslots - 1;
    return 0;
}

mt_key *mt_insert(memtable *mt, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t base_rev) {
    if ((mt->nkeys + 1) * 2 > mt->mask + 1 && mt_grow(mt) != 0) return NULL;
    mt_key *k = arena_alloc(mt, sizeof *k + len);
    if (!k) return NULL;
    memset(k, 0, sizeof *k);
    k->base_rev = base_rev;
    k->ns = ns;
    k->key_len = (uint16_t)len;
    memcpy(k->key, key, len);
    k->vers = &k->v0;
    k->cap = 1;
    uint64_t i = hash & mt->mask;
    while (mt->slots[i].k) i = (i + 1) & mt->mask;
    mt->slots[i].hash = hash;
    mt->slots[i].k = k;
    mt->nkeys++;
    return k;
}

int mt_add_version(memtable *mt, mt_key *k, const ix_version *v) {
    if (k->nver == k->cap) {
        uint32_t cap = k->cap * 2;
        ix_version *nv = malloc(cap * sizeof *nv);
        if (!nv) return -1;
        memcpy(nv, k->vers, k->nver * sizeof *nv);
        if (k->vers != &k->v0) free(k->vers);
        k->vers = nv;
        k->cap = cap;
    }
    k->vers[k->nver++] = *v;
    mt->nversions++;
    return 0;
}

static int node_cmp(const void *a, const void *b) {
    const mt_key *x = *(mt_key *const *)a, *y = *(mt_key *const *)b;
    return ix_key_cmp(x->ns, x->key, x->key_len, y->ns, y->key, y->key_len);
}

/* Sorting pairs of (a 64-bit prefix, node), refined by depth: first by the
** namespace and key bytes 0..5, then each run of equal prefixes by the next 7
** bytes, and so on. Each byte position takes 9 bits, 0 when the key has
** ended and byte + 1 otherwise, so integer order is ix_key_cmp's order (a
** key before any longer key it prefixes). Comparisons never touch the
** nodes; a node is read once per level its key needs. Keys with a long
** shared prefix ("account:000000…") made the old sort (7 bytes, then the
** nodes) touch two scattered nodes per comparison: measured 10% of an
** ingest's CPU. The integer sort is an LSD radix sort (11-bit digits, the
** digits every item shares skipped). */
typedef struct sort_item {
    uint64_t prefix;
    mt_key *k;
} sort_item;

/* How many items ahead the sort fetches nodes (mt_prefetch_node). */
#define SORT_AHEAD 24

/* 9-bit codes of key bytes [from, from + count) in the low 9*count bits. */
static uint64_t key_codes(const mt_key *k, size_t from, unsigned count) {
    uint64_t p = 0;
    for (unsigned i = 0; i < count; i++) {
        size_t at = from + i;
        p = p << 9 | (at < k->key_len ? (uint64_t)k->key[at] + 1 : 0);
    }
    return p;
}

/* The prefix of k for the level starting at key byte depth. */
static uint64_t level_prefix(const mt_key *k, size_t depth) {
    return depth == 0 ? (uint64_t)k->ns << 54 | key_codes(k, 0, 6) : key_codes(k, depth, 7);
}

static int item_cmp(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    return x->prefix < y->prefix ? -1 : x->prefix > y->prefix;
}

/* LSD radix sort of it[0..n) by prefix, 11 bits a pass, through tmp[0..n);
** passes whose digit is the same for every item are skipped. */
#define RADIX_BITS 11u
static void radix_sort(sort_item *it, sort_item *tmp, size_t n) {
    static _Thread_local size_t count[1u << RADIX_BITS];
    sort_item *src = it, *dst = tmp;
    uint64_t all_or = 0, all_and = ~0ull; /* bits where they differ: the digits to sort by */
    for (size_t i = 0; i < n; i++) all_or |= it[i].prefix, all_and &= it[i].prefix;
    uint64_t differ = all_or ^ all_and;
    for (unsigned shift = 0; shift < 64; shift += RADIX_BITS) {
        if (!((differ >> shift) & ((1u << RADIX_BITS) - 1))) continue;
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++) count[(src[i].prefix >> shift) & ((1u << RADIX_BITS) - 1)]++;
        size_t sum = 0;
        for (size_t d = 0; d < (1u << RADIX_BITS); d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) dst[count[(src[i].prefix >> shift) & ((1u << RADIX_BITS) - 1)]++] = src[i];
        sort_item *t = src;
        src = dst;
        dst = t;
    }
    if (src != it) memcpy(it, src, n * sizeof *it);
}

/* Sorts it[0..n) whose prefixes are those of the level at depth; tmp has
** room for n items. */
static void sort_level(sort_item *it, sort_item *tmp, size_t n, size_t depth) {
    if (n > 256) radix_sort(it, tmp, n);
    else qsort(it, n, sizeof *it, item_cmp);
    size_t next = depth == 0 ? 6 : depth + 7;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && it[j].prefix == it[i].prefix) j++;
        /* A tie whose last position is "ended" would be two equal keys: the
        ** memtable's keys are unique, so only go on while bytes remain. */
        if (j - i > 1 && (it[i].prefix & 0x1FF) != 0) {
            for (size_t m = i; m < j; m++) {
                if (m + SORT_AHEAD < j) mt_prefetch_node(it[m + SORT_AHEAD].k, next); /* scattered nodes */
                it[m].prefix = level_prefix(it[m].k, next);
            }
            sort_level(it + i, tmp, j - i, next);
        }
        i = j;
    }
}

/* Sorts the n nodes of v (level-0 items it[] already made when it != NULL). */
static void sort_items(mt_key **v, sort_item *it, size_t n) {
    sort_item *tmp = it && n > 256 ? vmem_alloc(n * sizeof *tmp, VMEM_FILL) : NULL;
    if (!it || (n > 256 && !tmp)) { /* no memory for the fast path */
        qsort(v, n, sizeof *v, node_cmp);
        vmem_free(tmp, n * sizeof *tmp, VMEM_FILL);
        return;
    }
    sort_level(it, tmp, n, 0);
    for (size_t i = 0; i < n; i++) v[i] = it[i].k;
    vmem_free(tmp, n * sizeof *tmp, VMEM_FILL);
}

static void sort_nodes(mt_key **v, size_t n) {
    sort_item *it = n > 1 ? malloc(n * sizeof *it) : NULL;
    for (size_t i = 0; it && i < n; i++) it[i].prefix = level_prefix(v[i], 0), it[i].k = v[i];
    if (n > 1) sort_items(v, it, n);
    free(it);
}

int64_t mt_collect_prefix(const memtable *mt, uint8_t ns, const void *prefix, size_t plen, mt_key ***out) {
    size_t n = 0, cap = 64;
    mt_key **v = malloc(cap * sizeof *v);
    if (!v) return -1;
    for (uint64_t i = 0; i <= mt->mask; i++) {
        mt_key *k = mt->slots[i].k;
        if (!k || !k->nver || k->ns != ns || k->key_len < plen || (plen && memcmp(k->key, prefix, plen))) continue;
        if (n == cap) {
            mt_key **nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = k;
    }
    sort_nodes(v, n);
    *out = v;
    return (int64_t)n;
}

int mt_sort(memtable *mt) {
    size_t cnt = 0, v_bytes = (mt->nkeys ? mt->nkeys : 1) * sizeof(mt_key *),
           it_bytes = mt->nkeys * sizeof(sort_item);
    mt_key **v = vmem_alloc(v_bytes, VMEM_FILL);
    sort_item *it = mt->nkeys > 1 ? vmem_alloc(it_bytes, VMEM_FILL) : NULL;
    if (!v) {
        vmem_free(it, it_bytes, VMEM_FILL);
        return -1;
    }
    /* One pass over the slots; each node is read once (prefetched ahead),
    ** for its version count and its level-0 prefix together. */
    for (uint64_t i = 0; i <= mt->mask; i++) {
        if (i + SORT_AHEAD <= mt->mask && mt->slots[i + SORT_AHEAD].k) mt_prefetch_node(mt->slots[i + SORT_AHEAD].k, 0);
        mt_key *k = mt->slots[i].k;
        if (!k || !k->nver) continue;
        if (it) it[cnt].prefix = level_prefix(k, 0), it[cnt].k = k;
        v[cnt++] = k;
    }
    if (cnt > 1) sort_items(v, it, cnt);
    vmem_free(it, it_bytes, VMEM_FILL);
    vmem_free(mt->sorted, mt->sorted_bytes, VMEM_FILL);
    mt->sorted = v;
    mt->sorted_bytes = v_bytes;
    mt->nsorted = cnt;
    return 0;
}
