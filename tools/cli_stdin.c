/*
** cli_stdin.c — `tally set - [--batch N] [--if-absent]`: streaming ingest.
**
** Reads KEY<TAB>VALUE lines from stdin (value = everything after the first
** TAB, trailing "\n" stripped) and commits N lines per transaction (default
** 1); a final partial batch is committed at EOF. Each transaction id is
** printed and flushed as soon as it is durable: it is an acknowledgement.
**
** Batch boundaries: the engine rejects a transaction holding the same key
** twice (TALLY_EINVAL), so when a line repeats a key already in the pending
** batch, the batch accumulated so far is committed first and the line starts
** a new one (last write wins, in input order). Likewise a batch is committed
** early if it would exceed TALLY_TX_BYTES_MAX. Each commit prints one id.
**
** Errors: a line without a TAB is a usage error (exit 64, with its line
** number); an over-long line is TALLY_ETOOBIG (exit 4). Transactions already
** acknowledged stay acknowledged; the pending (unacknowledged) batch is
** dropped, so malformed input never commits lines after the error.
** Buffers (line, batch arena, entry array, key set) are reused across batches.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LINE_MAX_BYTES ((size_t)TALLY_KEY_BYTES_MAX + TALLY_VALUE_BYTES_MAX + 1)
/* Conservative room for the record framing of a transaction and its entries. */
#define TX_OVERHEAD    4096u
#define ENTRY_OVERHEAD 64u

typedef struct slot_ref {
    size_t koff, klen, voff, vlen; /* into the arena (which may move) */
} slot_ref;

typedef struct batch {
    size_t max;            /* --batch N */
    size_t n;              /* lines pending */
    size_t bytes;          /* estimated encoded size of the pending batch */
    slot_ref *refs;        /* max */
    tally_entry *ents;     /* max */
    char *arena;
    size_t alen, acap;
    uint32_t *set_gen;     /* open-addressing key set: generation per slot */
    uint32_t *set_idx;     /* index into refs */
    size_t set_mask;
    uint32_t gen;          /* current batch's generation (0 = never used) */
    uint8_t cond;          /* TALLY_COND_ABSENT with --if-absent */
} batch;

static int batch_init(batch *b, size_t max, uint8_t cond)
{
    memset(b, 0, sizeof *b);
    b->max = max;
    b->cond = cond;
    b->gen = 1;
    size_t slots = 16;
    while (slots < 2 * max)
        slots *= 2;
    b->set_mask = slots - 1;
    b->refs = malloc(max * sizeof *b->refs);
    b->ents = calloc(max, sizeof *b->ents);
    b->set_gen = calloc(slots, sizeof *b->set_gen);
    b->set_idx = malloc(slots * sizeof *b->set_idx);
    return b->refs && b->ents && b->set_gen && b->set_idx ? 0 : -1;
}

static void batch_free(batch *b)
{
    free(b->refs);
    free(b->ents);
    free(b->arena);
    free(b->set_gen);
    free(b->set_idx);
}

static void batch_reset(batch *b)
{
    b->n = b->alen = b->bytes = 0;
    if (++b->gen == 0) { /* wrapped: forget every old generation */
        memset(b->set_gen, 0, (b->set_mask + 1) * sizeof *b->set_gen);
        b->gen = 1;
    }
}

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211u;
    return h;
}

/* Slot of key in the pending batch's key set; *found says if it is there. */
static size_t batch_find(const batch *b, const char *key, size_t klen, int *found)
{
    size_t i = (size_t)fnv1a(key, klen) & b->set_mask;
    for (; b->set_gen[i] == b->gen; i = (i + 1) & b->set_mask) {
        const slot_ref *r = &b->refs[b->set_idx[i]];
        if (r->klen == klen && memcmp(b->arena + r->koff, key, klen) == 0) {
            *found = 1;
            return i;
        }
    }
    *found = 0;
    return i;
}

static int arena_put(batch *b, const char *p, size_t n, size_t *off)
{
    if (b->alen + n > b->acap) {
        size_t cap = b->acap ? b->acap : 4096;
        while (cap < b->alen + n)
            cap *= 2;
        char *na = realloc(b->arena, cap);
        if (!na)
            return -1;
        b->arena = na;
        b->acap = cap;
    }
    memcpy(b->arena + b->alen, p, n);
    *off = b->alen;
    b->alen += n;
    return 0;
}

/* Adds a line known to have a key absent from the batch (slot from batch_find). */
static int batch_add(batch *b, size_t slot, const char *key, size_t klen, const char *val,
                     size_t vlen)
{
    slot_ref *r = &b->refs[b->n];
    if (arena_put(b, key, klen, &r->koff) < 0 || arena_put(b, val, vlen, &r->voff) < 0)
        return -1;
    r->klen = klen;
    r->vlen = vlen;
    b->set_gen[slot] = b->gen;
    b->set_idx[slot] = (uint32_t)b->n;
    b->bytes += klen + vlen + ENTRY_OVERHEAD;
    b->n++;
    return 0;
}

/* Commits the pending batch (if any) and acknowledges it. Returns 0 or an exit code. */
static int batch_flush(cli_ctx *c, batch *b)
{
    if (b->n == 0)
        return 0;
    for (size_t i = 0; i < b->n; i++) {
        tally_entry *e = &b->ents[i];
        const slot_ref *r = &b->refs[i];
        memset(e, 0, sizeof *e);
        e->ns = TALLY_NS_KV;
        e->cond = b->cond;
        e->key = b->arena + r->koff;
        e->key_len = r->klen;
        e->value = b->arena + r->voff;
        e->value_len = r->vlen;
    }
    uint64_t tx = 0;
    const char *meta = c->args->meta;
    int rc = tally_commit(c->db, &tx, b->ents, b->n, meta, meta ? strlen(meta) : 0);
    if (rc != TALLY_OK)
        return cli_fail(rc, "committing a batch of %zu lines", b->n);
    cli_print_tx_ack(c, tx);
    batch_reset(b);
    return 0;
}

/* Validates one line (without its "\n") and splits it at the first TAB. */
static int split_line(cli_ctx *c, char *line, size_t len, unsigned long lineno,
                      size_t *klen)
{
    if (len > LINE_MAX_BYTES)
        return cli_failx(TALLY_ETOOBIG, "line %lu: longer than %zu bytes", lineno,
                        LINE_MAX_BYTES);
    char *tab = memchr(line, '\t', len);
    if (!tab)
        return cli_usage(c, "line %lu: expected KEY<TAB>VALUE", lineno);
    *klen = (size_t)(tab - line);
    if (*klen == 0)
        return cli_failx(TALLY_EINVAL, "line %lu: empty key", lineno);
    if (*klen > TALLY_KEY_BYTES_MAX)
        return cli_failx(TALLY_ETOOBIG, "line %lu: key longer than %u bytes", lineno,
                        TALLY_KEY_BYTES_MAX);
    if (len - *klen - 1 > TALLY_VALUE_BYTES_MAX)
        return cli_failx(TALLY_ETOOBIG, "line %lu: value longer than %u bytes", lineno,
                        TALLY_VALUE_BYTES_MAX);
    return 0;
}

/* Puts one line into the batch, committing first or after as needed. */
static int take_line(cli_ctx *c, batch *b, const char *line, size_t len, size_t klen)
{
    const char *val = line + klen + 1;
    size_t vlen = len - klen - 1;
    int found, rc;
    size_t slot = batch_find(b, line, klen, &found);
    if (found || b->bytes + klen + vlen + ENTRY_OVERHEAD > TALLY_TX_BYTES_MAX - TX_OVERHEAD) {
        if ((rc = batch_flush(c, b)) != 0)
            return rc;
        slot = batch_find(b, line, klen, &found);
    }
    if (batch_add(b, slot, line, klen, val, vlen) < 0)
        return cli_failx(TALLY_ENOMEM, NULL);
    return b->n == b->max ? batch_flush(c, b) : 0;
}

static int ingest(cli_ctx *c, batch *b)
{
    char *line = NULL;
    size_t cap = 0;
    unsigned long lineno = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)got, klen = 0;
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        rc = split_line(c, line, len, lineno, &klen);
        if (rc == 0)
            rc = take_line(c, b, line, len, klen);
    }
    free(line);
    if (rc == 0 && ferror(stdin))
        rc = cli_failx(TALLY_EIO, "reading standard input");
    if (rc == 0)
        rc = batch_flush(c, b); /* the final partial batch */
    return rc;
}

int cli_set_stdin(cli_ctx *c)
{
    const cli_args *a = c->args;
    if (a->seen & CLI_OPT_IF_REV)
        return cli_usage(c, "--if-rev applies to one key, not to 'set -'");
    uint64_t max = (a->seen & CLI_OPT_BATCH) ? a->batch : 1;
    if (max < 1 || max > TALLY_TX_ENTRIES_MAX)
        return cli_usage(c, "--batch needs 1..%u", TALLY_TX_ENTRIES_MAX);
    batch b;
    int rc;
    if (batch_init(&b, (size_t)max,
                   (a->seen & CLI_OPT_IF_ABSENT) ? TALLY_COND_ABSENT : TALLY_COND_NONE) < 0)
        rc = cli_failx(TALLY_ENOMEM, NULL);
    else
        rc = ingest(c, &b);
    batch_free(&b);
    return rc;
}
