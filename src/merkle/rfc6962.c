/*
** rfc6962.c — RFC 6962 / RFC 9162 Merkle tree hashing and proofs.
**
** See rfc6962.h for the hashing rules and the numbered invariants. Notes on
** the implementation:
**
**   - Generators walk the RFC 6962 recursion top-down (root to leaf) with an
**     explicit [lo, hi) window instead of recursion. The RFC emits proof
**     elements in leaf-to-root order, i.e. the reverse of a top-down walk, so
**     the exact proof length is computed first (by the same walk, without
**     hashing) and elements are written from the end of the array backwards.
**   - Every window [lo, hi) the walk visits satisfies "lo is a multiple of
**     the largest power of two <= hi - lo" (invariant 3), so each sibling
**     hash is one rfc6962_range_root() call: one node-source read for a
**     complete subtree, popcount(hi - lo) reads for the single incomplete
**     sibling on the right edge.
**   - Each step of the walk at least halves hi - lo (the split point k is
**     >= half the window), so every loop below runs at most 64 times.
*/
#include "merkle/rfc6962.h"
#include "util/sha256.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(RFC6962_HASH_LEN == TALLY_SHA256_LEN, "hash length mismatch");
_Static_assert(sizeof(rfc6962_hash) == RFC6962_HASH_LEN, "rfc6962_hash size");

/* Number of significant bits in x (0 for x == 0). */
static unsigned bitlen64(uint64_t x) { return x ? 64u - (unsigned)__builtin_clzll(x) : 0u; }

/* log2 of the largest power of two strictly smaller than len; len >= 2. */
static unsigned split_log2(uint64_t len) { return bitlen64(len - 1) - 1; }

/* 1 if a and b are equal, without early exit. */
static int hash_eq(const uint8_t a[32], const uint8_t b[32]) {
    unsigned d = 0;
    for (int i = 0; i < 32; i++) d |= (unsigned)(a[i] ^ b[i]);
    return d == 0;
}

void rfc6962_leaf_hash(const void *data, size_t len, uint8_t out[32]) {
    static const uint8_t prefix = 0x00;
    tally_sha256_ctx c;
    tally_sha256_init(&c);
    tally_sha256_update(&c, &prefix, 1);
    tally_sha256_update(&c, data, len);
    tally_sha256_final(&c, out);
}

void rfc6962_node_hash(const uint8_t left[32], const uint8_t right[32], uint8_t out[32]) {
    /* One contiguous 65-byte message: a single update is the fastest path,
       and copying first makes out == left / out == right safe. */
    uint8_t buf[1 + 2 * RFC6962_HASH_LEN];
    buf[0] = 0x01;
    memcpy(buf + 1, left, RFC6962_HASH_LEN);
    memcpy(buf + 1 + RFC6962_HASH_LEN, right, RFC6962_HASH_LEN);
    tally_sha256(buf, sizeof buf, out);
}

void rfc6962_empty_root(uint8_t out[32]) { tally_sha256(NULL, 0, out); }

int rfc6962_root_of_leaves(const rfc6962_hash *leaves, size_t n, rfc6962_hash *scratch,
                           uint8_t out[32]) {
    if (n == 0) {
        rfc6962_empty_root(out);
        return 0;
    }
    if (n == 1) {
        memmove(out, leaves[0], RFC6962_HASH_LEN);
        return 0;
    }
    rfc6962_hash *buf = scratch;
    size_t half = n / 2, cnt = n - half; /* cnt = ceil(n / 2) */
    if (buf == NULL) {
        if (cnt > SIZE_MAX / sizeof(rfc6962_hash)) return -1;
        buf = malloc(cnt * sizeof(rfc6962_hash));
        if (buf == NULL) return -1;
    }
    /* Level 0 -> level 1: pair the leaves into buf; an odd last leaf is
       promoted unchanged (this is what makes the result RFC 6962's MTH). */
    for (size_t i = 0; i < half; i++) rfc6962_node_hash(leaves[2 * i], leaves[2 * i + 1], buf[i]);
    if (n & 1) memcpy(buf[half], leaves[n - 1], RFC6962_HASH_LEN);
    /* Upper levels: reduce buf in place; writing buf[i] only after reading
       buf[2i] and buf[2i+1] (i <= 2i) never clobbers an unread input. */
    while (cnt > 1) {
        half = cnt / 2;
        for (size_t i = 0; i < half; i++) rfc6962_node_hash(buf[2 * i], buf[2 * i + 1], buf[i]);
        if (cnt & 1) memcpy(buf[half], buf[cnt - 1], RFC6962_HASH_LEN);
        cnt -= half;
    }
    memmove(out, buf[0], RFC6962_HASH_LEN);
    if (buf != scratch) free(buf);
    return 0;
}

int rfc6962_range_root(rfc6962_node_fn fn, void *ctx, uint64_t begin, uint64_t end,
                       uint8_t out[32]) {
    if (begin >= end) return -1;
    uint64_t len = end - begin;
    unsigned top = bitlen64(len) - 1;
    if (begin & ((UINT64_C(1) << top) - 1)) return -1;
    /* The range is complete subtrees of sizes = set bits of len, largest
       first. Visit them smallest (rightmost) first so the right-to-left fold
       needs a single accumulator and no array. */
    uint8_t acc[32], h[32];
    int have = 0;
    for (unsigned b = 0; b <= top; b++) {
        if (!((len >> b) & 1)) continue;
        /* Leaves before this chunk: the set bits of len above b. */
        uint64_t before = b == 63 ? 0 : (len >> (b + 1)) << (b + 1);
        uint64_t start = begin + before;
        int rc = fn(ctx, b, start >> b, have ? h : acc);
        if (rc < 0) return rc;
        if (have) rfc6962_node_hash(h, acc, acc);
        have = 1;
    }
    memcpy(out, acc, RFC6962_HASH_LEN);
    return 0;
}

int rfc6962_root(rfc6962_node_fn fn, void *ctx, uint64_t size, uint8_t out[32]) {
    if (size == 0) {
        rfc6962_empty_root(out);
        return 0;
    }
    return rfc6962_range_root(fn, ctx, 0, size, out);
}

size_t rfc6962_inclusion_path_len(uint64_t index, uint64_t size) {
    if (index >= size) return 0;
    size_t len = 0;
    uint64_t lo = 0, hi = size;
    while (hi - lo > 1) {
        uint64_t mid = lo + (UINT64_C(1) << split_log2(hi - lo));
        if (index < mid)
            hi = mid;
        else
            lo = mid;
        len++;
    }
    return len;
}

int rfc6962_inclusion_proof(rfc6962_node_fn fn, void *ctx, uint64_t index, uint64_t size,
                            rfc6962_hash path[RFC6962_PROOF_MAX], size_t *path_len) {
    *path_len = 0;
    if (index >= size) return -1;
    size_t len = rfc6962_inclusion_path_len(index, size), pos = len;
    if (len > RFC6962_PROOF_MAX) return -1; /* cannot happen: len <= 64 */
    uint64_t lo = 0, hi = size;
    while (hi - lo > 1) {
        unsigned kl = split_log2(hi - lo);
        uint64_t mid = lo + (UINT64_C(1) << kl);
        int rc;
        if (index < mid) {
            /* PATH(m, D[lo:mid]) : MTH(D[mid:hi]) — right sibling. */
            rc = rfc6962_range_root(fn, ctx, mid, hi, path[--pos]);
            hi = mid;
        } else {
            /* PATH(m - k, D[mid:hi]) : MTH(D[lo:mid]) — complete left sibling. */
            rc = fn(ctx, kl, lo >> kl, path[--pos]);
            lo = mid;
        }
        if (rc < 0) return rc;
    }
    *path_len = len;
    return 0;
}

size_t rfc6962_consistency_path_len(uint64_t m, uint64_t n) {
    if (m == 0 || m >= n) return 0;
    /* Walk SUBPROOF(m, D[lo:hi], b) with m absolute; lo < m <= hi holds. */
    size_t len = 0;
    uint64_t lo = 0, hi = n;
    int b = 1;
    while (m != hi) {
        uint64_t mid = lo + (UINT64_C(1) << split_log2(hi - lo));
        if (m <= mid) {
            hi = mid;
        } else {
            lo = mid;
            b = 0;
        }
        len++;
    }
    return len + (b ? 0 : 1);
}

int rfc6962_consistency_proof(rfc6962_node_fn fn, void *ctx, uint64_t m, uint64_t n,
                              rfc6962_hash path[RFC6962_PROOF_MAX], size_t *path_len) {
    *path_len = 0;
    if (m == 0 || m > n) return -1;
    if (m == n) return 0;
    size_t len = rfc6962_consistency_path_len(m, n), pos = len;
    /* Only reachable for n > 2^63 (ceil(log2 n) = 64 plus the seed). */
    if (len > RFC6962_PROOF_MAX) return -1;
    uint64_t lo = 0, hi = n;
    int b = 1, rc;
    while (m != hi) {
        unsigned kl = split_log2(hi - lo);
        uint64_t mid = lo + (UINT64_C(1) << kl);
        if (m <= mid) {
            /* SUBPROOF(m, D[lo:mid], b) : MTH(D[mid:hi]) */
            rc = rfc6962_range_root(fn, ctx, mid, hi, path[--pos]);
            hi = mid;
        } else {
            /* SUBPROOF(m - k, D[mid:hi], false) : MTH(D[lo:mid]) */
            rc = fn(ctx, kl, lo >> kl, path[--pos]);
            lo = mid;
            b = 0;
        }
        if (rc < 0) return rc;
    }
    if (!b) {
        /* SUBPROOF(m, D[m], false) = {MTH(D[lo:hi])}; the walk only stops
           right after a left step, so [lo, hi) is a complete subtree. */
        rc = rfc6962_range_root(fn, ctx, lo, hi, path[--pos]);
        if (rc < 0) return rc;
    }
    *path_len = len;
    return 0;
}

int rfc6962_verify_inclusion(const uint8_t leaf_hash[32], uint64_t index, uint64_t size,
                             const rfc6962_hash *path, size_t path_len, const uint8_t root[32]) {
    if (index >= size) return -1;
    if (path_len != rfc6962_inclusion_path_len(index, size)) return -1;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[32];
    memcpy(r, leaf_hash, 32);
    for (size_t i = 0; i < path_len; i++) {
        if (sn == 0) return -1;
        if ((fn & 1) || fn == sn) {
            rfc6962_node_hash(path[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            rfc6962_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return -1;
    return hash_eq(r, root) ? 0 : -1;
}

int rfc6962_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[32],
                               const uint8_t root_n[32], const rfc6962_hash *path,
                               size_t path_len) {
    if (m > n) return -1;
    if (m == n) return (path_len == 0 && hash_eq(root_m, root_n)) ? 0 : -1;
    if (m == 0) return path_len == 0 ? 0 : -1;
    if (path_len == 0) return -1;
    if (path_len != rfc6962_consistency_path_len(m, n)) return -1;
    /* RFC 9162 step 2: when m is a power of two the proof omits MTH(D[m]);
       treat root_m as a virtual element 0 instead of copying the path. */
    int pow2 = (m & (m - 1)) == 0;
    const uint8_t *first = pow2 ? root_m : path[0];
    size_t next = pow2 ? 0 : 1; /* index in path of virtual element 1 */
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[32], sr[32];
    memcpy(fr, first, 32);
    memcpy(sr, first, 32);
    for (size_t i = next; i < path_len; i++) {
        if (sn == 0) return -1;
        if ((fn & 1) || fn == sn) {
            rfc6962_node_hash(path[i], fr, fr);
            rfc6962_node_hash(path[i], sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            rfc6962_node_hash(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return -1;
    return (hash_eq(fr, root_m) & hash_eq(sr, root_n)) ? 0 : -1;
}

int rfc6962_mem_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]) {
    const rfc6962_mem *mm = ctx;
    if (level >= 64 || index > (UINT64_MAX >> level)) return -1;
    uint64_t start = index << level, width = UINT64_C(1) << level;
    if (start >= mm->n || mm->n - start < width) return -1;
    const rfc6962_hash *lv = mm->leaves + start;
    if (level == 0) {
        memcpy(out, lv[0], RFC6962_HASH_LEN);
        return 0;
    }
    /* Binary-counter reduction: stack[j] holds the pending complete subtree
       of 2^j leaves; no allocation, width - 1 node hashes. */
    uint8_t stack[64][32], cur[32];
    for (uint64_t i = 0; i < width; i++) {
        memcpy(cur, lv[i], RFC6962_HASH_LEN);
        unsigned j = 0;
        for (uint64_t c = i; c & 1; c >>= 1, j++) rfc6962_node_hash(stack[j], cur, cur);
        memcpy(stack[j], cur, RFC6962_HASH_LEN);
    }
    memcpy(out, stack[level], RFC6962_HASH_LEN);
    return 0;
}
