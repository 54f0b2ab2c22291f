/*
** store.h — the persisted RFC 6962 tree over transactions (DIR/merkle).
**
** File format: 32-byte node hashes in post-order, the order in which an
** append-only tree completes them. After leaf j (0-based) is appended come
** the nodes it completes, lowest level first. So:
**     position of leaf j                = 2j - popcount(j)
**     position of node (level l, idx i) = pos(leaf (i+1)*2^l - 1) + l
**     nodes stored for n leaves         = 2n - popcount(n)
** A node at level l, index i is the root of the complete subtree over leaves
** [i*2^l, (i+1)*2^l). Roots and proofs for any size <= n need only O(log n)
** reads (rfc6962.c folds incomplete right edges). The file is derived data:
** it can be deleted and rebuilt from the log's tx hashes.
**
** Invariants:
**   (1) the file holds exactly nodes(n) items for n leaves (open cuts back a
**       partial tail to the largest whole n);
**   (2) frontier[l] is the root of the complete subtree at level l on the
**       right edge, for every set bit l of n.
*/
#ifndef TALLY_MERKLE_STORE_H
#define TALLY_MERKLE_STORE_H
#include <stdint.h>
#include "merkle/rfc6962.h"

typedef struct mstore mstore;

int mstore_open(mstore **out, const char *path);
void mstore_close(mstore *m);
/* Leaves stored. */
uint64_t mstore_size(const mstore *m);
/* Appends n leaf hashes (and the nodes they complete) in one write.
** Returns 0 or -errno. */
int mstore_append(mstore *m, const rfc6962_hash *leaves, uint64_t n);
/* Cuts the tree back to n leaves. Returns 0 or -errno. */
int mstore_truncate(mstore *m, uint64_t n);
int mstore_sync(mstore *m);
/* rfc6962_node_fn over the store (ctx = mstore*); only for subtrees within
** the published size. Returns 0 or -1 (mapping failed). */
int mstore_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]);
/* Leaf hash j. */
const uint8_t *mstore_leaf(mstore *m, uint64_t j);
/* Total node count for n leaves. */
static inline uint64_t mstore_nodes_for(uint64_t n) { return 2 * n - (uint64_t)__builtin_popcountll(n); }

#endif
