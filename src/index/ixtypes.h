/*
** ixtypes.h — what the key-value index stores per key version, and the key hash.
**
** The index is derived data: for every (namespace, key) it lists the key's
** versions in commit order; a version points at its entry in the log. The
** revision of a version is its 1-based position in that list.
*/
#ifndef TALLY_IXTYPES_H
#define TALLY_IXTYPES_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct ix_version {
    uint64_t tx;          /* transaction id */
    uint64_t pos;         /* log position of the entry's first byte */
    uint32_t entry_index; /* the entry's index within its transaction */
    uint32_t flags;       /* entry flags (bit0 = tombstone) */
} ix_version;

/* The index's key hash (stored in run files, so part of the format; see
** docs/FORMAT.md): 64-bit, over ns and key, 8 bytes at a time. */
static inline uint64_t ix_hash(uint8_t ns, const void *key, size_t len) {
    const uint8_t *p = key;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)ns << 56) ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

/* Byte order of keys: namespace first, then memcmp, a prefix before longer keys. */
static inline int ix_key_cmp(uint8_t ns_a, const void *a, size_t la, uint8_t ns_b, const void *b,
                             size_t lb) {
    if (ns_a != ns_b) return ns_a < ns_b ? -1 : 1;
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

#endif
