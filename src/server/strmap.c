/*
** strmap.c — a string-keyed hash map for tallyd's tables (ledgers, users,
** roles, tokens, login failures). Open addressing with linear probing and
** backward-shift deletion (no tombstones). Not thread-safe: callers hold the
** lock of the table they use.
**
** Invariants:
**   (1) cap is a power of two and count <= cap / 2 (load factor <= 0.5);
**   (2) every key sits at or after its home slot with no empty slot between;
**   (3) count <= count_max: a full map refuses inserts instead of growing.
*/
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define STRMAP_CAP_MIN 16u

/* FNV-1a, 64 bits. */
static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

int strmap_init(strmap *m, size_t count_max)
{
    m->cap = STRMAP_CAP_MIN;
    m->count = 0;
    m->count_max = count_max;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots ? 0 : -1;
}

void strmap_free(strmap *m)
{
    for (size_t i = 0; m->slots && i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* Index of key's slot, or of the empty slot where it would go. */
static size_t find_slot(const strmap *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    for (size_t n = 0; n < m->cap; n++, i = (i + 1) & mask) {
        const strmap_slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0))
            return i;
    }
    return m->cap; /* unreachable under invariant (1) */
}

void *strmap_get(const strmap *m, const char *key)
{
    size_t i = find_slot(m, key, str_hash(key));
    return i < m->cap && m->slots[i].key ? m->slots[i].val : NULL;
}

/* Doubles the table. Returns 0 or -1. */
static int grow(strmap *m)
{
    size_t cap = m->cap * 2;
    strmap_slot *old = m->slots, *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return -1;
    size_t old_cap = m->cap;
    m->slots = ns;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key)
            m->slots[find_slot(m, old[i].key, old[i].hash)] = old[i];
    free(old);
    return 0;
}

int strmap_put(strmap *m, const char *key, void *val)
{
    uint64_t h = str_hash(key);
    size_t i = find_slot(m, key, h);
    if (i < m->cap && m->slots[i].key) {
        m->slots[i].val = val;
        return 0;
    }
    if (m->count >= m->count_max)
        return -1;
    if ((m->count + 1) * 2 > m->cap) {
        if (grow(m) < 0)
            return -1;
        i = find_slot(m, key, h);
    }
    char *k = strdup(key);
    if (!k)
        return -1;
    m->slots[i] = (strmap_slot){ k, h, val };
    m->count++;
    return 0;
}

void *strmap_del(strmap *m, const char *key)
{
    size_t mask = m->cap - 1;
    size_t i = find_slot(m, key, str_hash(key));
    if (i >= m->cap || !m->slots[i].key)
        return NULL;
    void *val = m->slots[i].val;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward shift: move later keys of the cluster into the hole when
    ** their home slot is not between the hole and their position. */
    size_t hole = i, j = (i + 1) & mask;
    while (m->slots[j].key) {
        size_t home = (size_t)m->slots[j].hash & mask;
        int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            m->slots[hole] = m->slots[j];
            m->slots[j].key = NULL;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    return val;
}
