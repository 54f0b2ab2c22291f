/*
** rfc6962.h — RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and
** proof verification for Tally.
**
** PURPOSE
**   Every committed ledger state is summarised by the Merkle Tree Hash (MTH)
**   of its ordered leaves, exactly as defined by RFC 6962 §2.1 (identical in
**   RFC 9162 §2.1.1). Auditors check inclusion proofs (a leaf is in a tree)
**   and consistency proofs (an older tree is a prefix of a newer one) with
**   nothing but this file and SHA-256.
**
** HASHING RULES (SHA-256 throughout)
**   leaf hash   = SHA-256(0x00 || data)
**   node hash   = SHA-256(0x01 || left || right)
**   MTH({})     = SHA-256("")          (the empty tree)
**   MTH({d0})   = leaf hash of d0
**   MTH(D[n])   = node(MTH(D[0:k]), MTH(D[k:n])) for n > 1, where k is the
**                 largest power of two strictly smaller than n.
**
** TERMS
**   A "complete subtree" at (level, index) covers leaves
**   [index << level, (index + 1) << level); it is a perfect binary tree and
**   its hash never changes once all of its leaves exist. Proof generators
**   read hashes only through a caller-supplied node source (rfc6962_node_fn)
**   that returns complete-subtree hashes, so a persisted node store can serve
**   them with one read each.
**
** INVARIANTS
**   1. The 0x00 / 0x01 domain-separation prefixes are always applied: a leaf
**      hash can never be confused with an interior node hash.
**   2. Every root, range root and proof element produced here equals the value
**      RFC 6962's recursive definitions give for the same leaves (checked
**      exhaustively against a naive transcription in tests/test_rfc6962.c).
**   3. Any range [begin, end) that RFC 6962's recursion produces is the
**      concatenation, left to right, of complete subtrees whose sizes are the
**      set bits of (end - begin) in decreasing order; its MTH is the
**      right-to-left fold node(c0, node(c1, ... node(c_{j-1}, c_j))).
**   4. Proof generation calls the node source O(log n) times (at most one
**      call per proof element plus at most 64 extra calls for the one range
**      on the tree's incomplete right edge) and never allocates memory.
**   5. Proofs are emitted in RFC order: leaf-to-root (the element nearest the
**      leaf first), and always have exactly rfc6962_inclusion_path_len() /
**      rfc6962_consistency_path_len() elements.
**   6. Verifiers implement RFC 9162 §2.1.3.2 and §2.1.4.2 exactly, reject
**      any proof whose length differs from the expected length, and read only
**      path[0 .. path_len); they never read past the caller's array and never
**      allocate.
**   7. Node-source errors (negative returns) are passed through unchanged;
**      this module itself only ever returns 0 or -1.
*/
#ifndef TALLY_MERKLE_RFC6962_H
#define TALLY_MERKLE_RFC6962_H
#include <stddef.h>
#include <stdint.h>

#define RFC6962_HASH_LEN 32
/* Max path elements for any size < 2^64. Inclusion paths never exceed
   ceil(log2 size) <= 64. Consistency proofs can have ceil(log2 n) + 1
   elements, which is 65 only when n > 2^63; the generator refuses those (-1),
   the verifier accepts them. */
#define RFC6962_PROOF_MAX 64
typedef uint8_t rfc6962_hash[32];

/* Leaf hash: out = SHA-256(0x00 || data[0..len)). data may be NULL when
   len == 0. out may not overlap data. */
void rfc6962_leaf_hash(const void *data, size_t len, uint8_t out[32]);

/* Interior node hash: out = SHA-256(0x01 || left || right). out may alias
   left and/or right (inputs are copied before hashing). */
void rfc6962_node_hash(const uint8_t left[32], const uint8_t right[32], uint8_t out[32]);

/* Root of the empty tree: out = SHA-256("") =
   e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855. */
void rfc6962_empty_root(uint8_t out[32]);

/* MTH of the n leaf hashes leaves[0..n), computed bottom-up by in-place
   pairwise reduction (an odd last node is promoted unchanged, which yields
   exactly RFC 6962's left-heavy tree). scratch must hold at least (n+1)/2
   hashes and must not overlap leaves; it may be NULL when n <= 1. If scratch
   is NULL and n > 1 the function allocates a temporary buffer and returns -1
   (leaving out untouched) on allocation failure. n == 0 gives the empty root.
   Returns 0 on success. out may alias leaves or scratch. */
int rfc6962_root_of_leaves(const rfc6962_hash *leaves, size_t n, rfc6962_hash *scratch,
                           uint8_t out[32]);

/* A node source: writes the hash of the COMPLETE subtree at (level, index),
   i.e. covering leaves [index << level, (index + 1) << level). level 0 = leaf
   hash. Returns 0, or a negative value that proof functions pass through
   unchanged. */
typedef int (*rfc6962_node_fn)(void *ctx, unsigned level, uint64_t index, uint8_t out[32]);

/* MTH of leaves [begin, end) for any begin < end where begin is a multiple of
   the largest power of two <= (end - begin) (the ranges RFC 6962's recursion
   produces), computed from popcount(end - begin) complete-subtree calls (at
   most 64). Returns 0, -1 if begin >= end or begin is misaligned, or fn's
   error. */
int rfc6962_range_root(rfc6962_node_fn fn, void *ctx, uint64_t begin, uint64_t end,
                       uint8_t out[32]);

/* Root (MTH) of a tree of `size` leaves read through fn (size 0 gives the
   empty root without calling fn). Returns 0 or fn's error. */
int rfc6962_root(rfc6962_node_fn fn, void *ctx, uint64_t size, uint8_t out[32]);

/* Audit path for leaf `index` in a tree of `size` leaves (RFC 6962 §2.1.1
   PATH, leaf-to-root order) written to path[0 .. *path_len). Makes at most
   path_len + 64 fn calls and does not allocate. Returns 0, -1 if
   index >= size, or fn's error (path contents are then unspecified). *path_len
   receives the count (0 on failure). */
int rfc6962_inclusion_proof(rfc6962_node_fn fn, void *ctx, uint64_t index, uint64_t size,
                            rfc6962_hash path[RFC6962_PROOF_MAX], size_t *path_len);

/* Consistency proof from old size m to size n (RFC 6962 §2.1.2 PROOF(m, D[n]))
   written to path[0 .. *path_len). 0 < m <= n required (m == n gives an empty
   proof); returns -1 otherwise, and also -1 if the proof would exceed
   RFC6962_PROOF_MAX elements (possible only for n > 2^63). Makes at most
   path_len + 64 fn calls and does not allocate. Returns 0, -1 on bad sizes,
   or fn's error; *path_len receives the count (0 on failure). */
int rfc6962_consistency_proof(rfc6962_node_fn fn, void *ctx, uint64_t m, uint64_t n,
                              rfc6962_hash path[RFC6962_PROOF_MAX], size_t *path_len);

/* Inclusion verification, RFC 9162 §2.1.3.2 exactly: requires index < size,
   path_len == rfc6962_inclusion_path_len(index, size), and the root
   recomputed from leaf_hash and path to equal root. path may be NULL when
   path_len == 0. Returns 0 if valid, -1 otherwise. Reads only
   path[0 .. path_len). */
int rfc6962_verify_inclusion(const uint8_t leaf_hash[32], uint64_t index, uint64_t size,
                             const rfc6962_hash *path, size_t path_len, const uint8_t root[32]);

/* Consistency verification, RFC 9162 §2.1.4.2 exactly.
   m == n: valid only with an empty path and root_m == root_n. m == 0: valid
   only with an empty path (anything is consistent with the empty tree).
   m > n: invalid. Otherwise path_len must equal
   rfc6962_consistency_path_len(m, n) and both recomputed roots must match.
   path may be NULL when path_len == 0. Returns 0 if valid, -1 otherwise.
   Reads only path[0 .. path_len). */
int rfc6962_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[32],
                               const uint8_t root_n[32], const rfc6962_hash *path,
                               size_t path_len);

/* Exact number of elements of PATH(index, D[size]); 0 when index >= size. */
size_t rfc6962_inclusion_path_len(uint64_t index, uint64_t size);
/* Exact number of elements of PROOF(m, D[n]); 0 unless 0 < m < n. */
size_t rfc6962_consistency_path_len(uint64_t m, uint64_t n);

/* An in-memory node source over an array of leaf hashes (for the CLI
   auditor's `merkle` commands and for per-transaction entry trees of <= 65536
   leaves). Complete-subtree hashes are computed on demand (cost O(2^level)
   hashes, no allocation). */
typedef struct rfc6962_mem {
    const rfc6962_hash *leaves;
    uint64_t n;
} rfc6962_mem;

/* rfc6962_node_fn over an rfc6962_mem (passed as ctx). Returns 0, or -1 if
   the subtree at (level, index) does not lie entirely within leaves[0..n). */
int rfc6962_mem_node(void *ctx /* rfc6962_mem* */, unsigned level, uint64_t index,
                     uint8_t out[32]);

#endif
