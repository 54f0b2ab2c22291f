/*
** store.c — post-order persisted Merkle tree (format in store.h).
*/
#include "merkle/store.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "os/afile.h"

#define MSTORE_BATCH_NODES 4096

struct mstore {
    afile *f;
    uint64_t n;                 /* leaves */
    rfc6962_hash frontier[64];  /* invariant (2) */
};

static uint64_t leaf_pos(uint64_t j) { return 2 * j - (uint64_t)__builtin_popcountll(j); }

static int load_frontier(mstore *m) {
    /* For each set bit l of n, the subtree covering leaves [start, start + 2^l)
    ** where start is the sum of the higher set bits. */
    uint64_t start = 0;
    for (int l = 63; l >= 0; l--) {
        if (!((m->n >> l) & 1)) continue;
        if (mstore_node(m, (unsigned)l, start >> l, m->frontier[l]) != 0) return -EIO;
        start += 1ull << l;
    }
    return 0;
}

int mstore_open(mstore **out, const char *path) {
    mstore *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int rc = afile_open(&m->f, path, 32);
    if (rc) {
        free(m);
        return rc;
    }
    uint64_t c = afile_count(m->f), lo = 0, hi = c;
    while (lo < hi) { /* largest n with nodes(n) <= c */
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (mstore_nodes_for(mid) <= c) lo = mid;
        else hi = mid - 1;
    }
    m->n = lo;
    rc = afile_truncate(m->f, mstore_nodes_for(lo));
    if (rc == 0) rc = load_frontier(m);
    if (rc) {
        mstore_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

void mstore_close(mstore *m) {
    if (!m) return;
    afile_close(m->f);
    free(m);
}

uint64_t mstore_size(const mstore *m) { return m->n; }

int mstore_append(mstore *m, const rfc6962_hash *leaves, uint64_t count) {
    rfc6962_hash buf[MSTORE_BATCH_NODES];
    size_t nb = 0;
    for (uint64_t k = 0; k < count; k++) {
        if (nb + 65 > MSTORE_BATCH_NODES) {
            int rc = afile_append(m->f, buf, nb);
            if (rc) return rc;
            nb = 0;
        }
        uint8_t h[32];
        memcpy(h, leaves[k], 32);
        memcpy(buf[nb++], h, 32);
        unsigned l = 0;
        while ((m->n >> l) & 1) {
            rfc6962_node_hash(m->frontier[l], h, h);
            memcpy(buf[nb++], h, 32);
            l++;
        }
        memcpy(m->frontier[l], h, 32);
        m->n++;
    }
    return afile_append(m->f, buf, nb);
}

int mstore_truncate(mstore *m, uint64_t n) {
    if (n >= m->n) return 0;
    int rc = afile_truncate(m->f, mstore_nodes_for(n));
    if (rc) return rc;
    m->n = n;
    return load_frontier(m);
}

int mstore_sync(mstore *m) { return afile_sync(m->f); }

int mstore_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]) {
    mstore *m = ctx;
    uint64_t last_leaf = ((index + 1) << level) - 1;
    const uint8_t *p = afile_item(m->f, leaf_pos(last_leaf) + level);
    if (!p) return -1;
    memcpy(out, p, 32);
    return 0;
}

const uint8_t *mstore_leaf(mstore *m, uint64_t j) { return afile_item(m->f, leaf_pos(j)); }
