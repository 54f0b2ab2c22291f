/*
** memtable.h — the in-memory part of the key-value index.
**
** An open-addressing hash table of key nodes; each node holds the versions
** written since the last checkpoint plus base_rev, the number of versions
** the key has in older layers (so revisions are known at commit time).
** Writers: the single committer (under the db's index write lock). Readers:
** under the read lock. Nodes are never moved or freed until the memtable is
** destroyed, so a node pointer is stable.
**
** Invariants:
**   (1) versions of a node are in increasing tx order;
**   (2) the revision of vers[i] is base_rev + i + 1;
**   (3) load factor <= 1/2 (the table doubles before exceeding it).
*/
#ifndef TALLY_MEMTABLE_H
#define TALLY_MEMTABLE_H
#include "index/ixtypes.h"

typedef struct mt_key {
    uint64_t base_rev;   /* (its hash is kept in its slot only) */
    uint64_t mark;       /* commit attempt that last touched it (dup detection) */
    ix_version *vers;
    uint32_t nver, cap;
    uint16_t key_len;
    uint8_t ns;
    ix_version v0;       /* inline storage for the first version */
    uint8_t key[];
} mt_key;

/* A slot keeps the hash beside the node pointer so a probe that does not
** match never touches the node (one cache miss per lookup, not two). */
typedef struct mt_slot {
    uint64_t hash;
    mt_key *k;
} mt_slot;

/* Arena blocks that a checkpointed memtable leaves for the next ones (one
** pool per ledger, shared by its memtables; thread-safe). An anonymous
** mapping is zeroed and faulted in by the kernel on every use: taking a used
** block back costs neither (measured: mmap was ~10% of tallyd's CPU under
** batched writes, in the serial section). Holds at most MT_POOL_BLOCKS_MAX. */
typedef struct mt_pool mt_pool;
#define MT_POOL_BLOCKS_MAX 64 /* x 4 MiB */

typedef struct memtable {
    mt_pool *pool;       /* where its arena blocks come from and go back to (may be NULL) */
    mt_slot *slots;
    uint64_t mask;
    uint64_t nkeys, nversions;
    uint8_t **blocks;    /* arena blocks */
    size_t nblocks, cap_blocks, block_used;
    mt_key **sorted;     /* nodes with versions in key order, once frozen (NULL before) */
    size_t nsorted, sorted_bytes; /* sorted is vmem_alloc'd, sorted_bytes long */
} memtable;

/* A pool; caller frees with mt_pool_free (after every memtable using it). */
mt_pool *mt_pool_new(void);
void mt_pool_free(mt_pool *pool);
/* An empty memtable whose arena draws on pool (NULL: none). NULL if out of
** memory. Caller frees with mt_free, which gives its blocks back to the pool. */
memtable *mt_new(mt_pool *pool);
void mt_free(memtable *mt);
mt_key *mt_find(const memtable *mt, uint8_t ns, const void *key, size_t len, uint64_t hash);
/* Inserts a new node (key must be absent). NULL on allocation failure. */
mt_key *mt_insert(memtable *mt, uint8_t ns, const void *key, size_t len, uint64_t hash, uint64_t base_rev);
/* Hints the CPU to load the slot for hash (batch lookups call this first). */
static inline void mt_prefetch(const memtable *mt, uint64_t hash) {
    __builtin_prefetch(&mt->slots[hash & mt->mask]);
}
/* Hints the CPU to load node k for a read of its key from byte depth on:
** its first cache line (key_len, nver, vers) and the key bytes, which begin
** 64 bytes in, on a later line (arena nodes are only 8-byte aligned). A
** prefetch of the node alone left the key bytes a cache miss per node:
** sorting 3M 32-byte keys took 1.1 s, with both lines fetched 0.8 s. */
static inline void mt_prefetch_node(const mt_key *k, size_t depth) {
    __builtin_prefetch(k);
    __builtin_prefetch(k->key + depth);
    __builtin_prefetch(k->key + depth + 6); /* a level reads up to 7 bytes */
}
/* Appends a version to node k. Returns 0 or -1 (allocation). */
int mt_add_version(memtable *mt, mt_key *k, const ix_version *v);
/* Builds mt->sorted (all nodes with nver > 0, key order). Returns 0 or -1. */
int mt_sort(memtable *mt);
/* Collects nodes with nver > 0 whose key starts with prefix in namespace ns,
** sorted. *out is malloc'd (caller frees). Returns count or -1. */
int64_t mt_collect_prefix(const memtable *mt, uint8_t ns, const void *prefix, size_t plen, mt_key ***out);

#endif
