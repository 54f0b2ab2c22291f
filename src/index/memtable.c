/*
** memtable.c — hash table of key nodes with an arena (see memtable.h).
*/
#include "index/memtable.h"
#include <stdlib.h>
#include <sys/mman.h>

#define MT_BLOCK_BYTES (4u << 20)
#define MT_SLOTS_MIN   (1u << 12)

/* Big, zeroed, pre-faulted memory: one mmap(MAP_POPULATE) instead of a page
** fault per 4 KiB page on first touch (faults are expensive under
** virtualization: measured ~15% of ingest CPU). Sizes are multiples of 4 KiB. */
static void *big_zalloc(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static void big_free(void *p, size_t len) {
    if (p) munmap(p, len);
}

memtable *mt_new(void) {
    memtable *mt = calloc(1, sizeof *mt);
    if (!mt) return NULL;
    mt->slots = big_zalloc(MT_SLOTS_MIN * sizeof *mt->slots);
    if (!mt->slots) {
        free(mt);
        return NULL;
    }
    mt->mask = MT_SLOTS_MIN - 1;
    mt->block_used = MT_BLOCK_BYTES;
    return mt;
}

void mt_free(memtable *mt) {
    if (!mt) return;
    for (uint64_t i = 0; i <= mt->mask; i++) {
        mt_key *k = mt->slots[i].k;
        if (k && k->vers != &k->v0) free(k->vers);
    }
    for (size_t i = 0; i < mt->nblocks; i++) big_free(mt->blocks[i], MT_BLOCK_BYTES);
    free(mt->blocks);
    big_free(mt->slots, (mt->mask + 1) * sizeof *mt->slots);
    free(mt->sorted);
    free(mt);
}

static void *arena_alloc(memtable *mt, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (mt->block_used + n > MT_BLOCK_BYTES) {
        if (mt->nblocks == mt->cap_blocks) {
            size_t cap = mt->cap_blocks ? mt->cap_blocks * 2 : 64;
            uint8_t **b = realloc(mt->blocks, cap * sizeof *b);
            if (!b) return NULL;
            mt->blocks = b;
            mt->cap_blocks = cap;
        }
        uint8_t *blk = big_zalloc(MT_BLOCK_BYTES);
        if (!blk) return NULL;
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
    mt_slot *s = big_zalloc(nslots * sizeof *s);
    if (!s) return -1;
    for (uint64_t i = 0; i <= mt->mask; i++) {
        if (!mt->slots[i].k) continue;
        uint64_t j = mt->slots[i].hash & (nslots - 1);
        while (s[j].k) j = (j + 1) & (nslots - 1);
        s[j] = mt->slots[i];
    }
    big_free(mt->slots, (mt->mask + 1) * sizeof *mt->slots);
    mt->slots = s;
    mt->mask = nslots - 1;
    return 0;
}

mt_key *mt_insert(memtable *mt, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t base_rev) {
    if ((mt->nkeys + 1) * 2 > mt->mask + 1 && mt_grow(mt) != 0) return NULL;
    mt_key *k = arena_alloc(mt, sizeof *k + len);
    if (!k) return NULL;
    memset(k, 0, sizeof *k);
    k->hash = hash;
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

/* Sorting pairs of (ns + first 7 key bytes as a big-endian integer, node)
** settles most comparisons without touching the nodes. */
typedef struct sort_item {
    uint64_t prefix;
    mt_key *k;
} sort_item;

static uint64_t key_prefix(const mt_key *k) {
    uint64_t p = (uint64_t)k->ns << 56;
    for (size_t i = 0; i < 7 && i < k->key_len; i++) p |= (uint64_t)k->key[i] << (48 - 8 * i);
    return p;
}

static int item_cmp(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
    return ix_key_cmp(x->k->ns, x->k->key, x->k->key_len, y->k->ns, y->k->key, y->k->key_len);
}

static void sort_nodes(mt_key **v, size_t n) {
    sort_item *it = n > 64 ? malloc(n * sizeof *it) : NULL;
    if (!it) { /* small, or no memory for the fast path */
        qsort(v, n, sizeof *v, node_cmp);
        return;
    }
    for (size_t i = 0; i < n; i++) it[i].prefix = key_prefix(v[i]), it[i].k = v[i];
    qsort(it, n, sizeof *it, item_cmp);
    for (size_t i = 0; i < n; i++) v[i] = it[i].k;
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
    size_t cnt = 0;
    mt_key **v = malloc((mt->nkeys ? mt->nkeys : 1) * sizeof *v);
    if (!v) return -1;
    for (uint64_t i = 0; i <= mt->mask; i++)
        if (mt->slots[i].k && mt->slots[i].k->nver) v[cnt++] = mt->slots[i].k;
    sort_nodes(v, cnt);
    free(mt->sorted);
    mt->sorted = v;
    mt->nsorted = cnt;
    return 0;
}
