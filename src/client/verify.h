/*
** verify.h — the verifying client's pure checks (internal; no I/O, no HTTP).
**
** Everything a tallyd response claims is checked here against the client's
** pinned identity and trusted state (tc_trust), which the caller loads from
** its own files and never from anything the server says. The rules are
** docs/API.md "The proof bundle" plus:
**   (1) the checkpoint note verifies under the pinned key and its origin is
**       exactly "<pinned key name>/ledger/<pinned ledger id>";
**   (2) its size >= the trusted size; equal sizes need equal roots; a larger
**       size needs a consistency proof from exactly (trusted size, trusted
**       root) to (size, root) with exactly the expected number of elements;
**   (3) the tx header decodes, its tx id equals the claimed tx and its leaf
**       hash is included at index tx-1 under the checkpoint root (proof size
**       == checkpoint size);
**   (4) get: the entry header's ns is key-value, its flags are known, its
**       key/meta/value lengths equal those received, the tombstone flag
**       equals the claimed "deleted"; SHA256(0x00||header||key||meta||
**       SHA256(value)) is included at entry.index under the header's
**       entries_root with proof size == entry_count; the key is the key
**       asked for; the as-of selector is respected (tx <= N, ts <= T,
**       claimed rev == R);
**   (5) tx: every entry is present, in order, and the recomputed entries
**       root, count and entries_len equal the header's;
**   (6) set/del: the entries root, count and entries_len recomputed from
**       the entries the client sent equal the header's; the tx metadata
**       equals what was sent (empty when none was); the tx id is above both
**       the trusted size and the size of a checkpoint the caller verified
**       before sending the write (tc_expect.after), so a transaction that
**       existed before the write began is refused as a replay; and its time
**       is not before tc_expect.ts_min (the client's clock at sending, less
**       the allowed skew), so a replay of an older identical transaction
**       fails even against a server that served a stale checkpoint.
** Any failure returns TALLY_EBADPROOF with the reason in `why`; nothing of
** the bundle may then be used. Parsing is strict: duplicate JSON keys,
** missing fields, wrong types, non-hex, short or long hashes are failures.
*/
#ifndef TALLY_CLIENT_VERIFY_H
#define TALLY_CLIENT_VERIFY_H
#include <stddef.h>
#include <stdint.h>

#include "note/note.h"
#include "tally.h"

#define TC_WHY_MAX 256
#define TC_ORIGIN_MAX (NOTE_NAME_MAX + 64)

/* The pinned identity and the trusted state of one ledger. */
typedef struct tc_trust {
    char key_name[NOTE_NAME_MAX + 1]; /* from the pinned vkey */
    uint8_t pub[32];                  /* from the pinned vkey */
    char origin[TC_ORIGIN_MAX];       /* "<key name>/ledger/<pinned ledger id>" */
    uint64_t size;                    /* trusted size; 0: nothing trusted yet */
    uint8_t root[32];                 /* trusted root (unused when size == 0) */
    /* The trusted note's bytes, already verified under this key and origin
    ** (size and root are its own), or NULL. A note byte-identical to it is
    ** accepted without checking its signature again. */
    const char *note;
    size_t note_len;
} tc_trust;

/* A verified checkpoint. note is malloc'ed (NUL-terminated); free with
** tc_checkpoint_free. */
typedef struct tc_checkpoint {
    uint64_t size;
    uint8_t root[32];
    char *note;
    size_t note_len;
} tc_checkpoint;
void tc_checkpoint_free(tc_checkpoint *cp);

/* One verified entry; key/meta/value are malloc'ed and owned by the bundle
** (each has a NUL byte after its length, for convenience). */
typedef struct tc_entry {
    uint32_t index;
    uint8_t header[12];
    uint8_t ns;
    int deleted;
    uint8_t *key;   size_t key_len;
    uint8_t *meta;  size_t meta_len;
    uint8_t *value; size_t value_len;
    uint8_t leaf_hash[32];
} tc_entry;

/* A verified bundle. Free with tc_bundle_free (also after a failure). */
typedef struct tc_bundle {
    tc_checkpoint cp;        /* the new trusted state once accepted */
    uint64_t tx;             /* verified: header tx id */
    uint64_t rev;            /* claimed by the server; NOT provable (see API.md Client) */
    uint64_t ts_ns;          /* verified: header time */
    uint32_t entry_count;
    uint8_t tx_hash[32], prev_hash[32], entries_root[32];
    uint8_t *txh; size_t txh_len;      /* the tx header bytes */
    uint8_t *tx_meta; size_t tx_meta_len; /* points into txh */
    tc_entry *entries; size_t n_entries;  /* get: the one proven entry; tx/set: all */
} tc_bundle;
void tc_bundle_free(tc_bundle *b);

#define TC_GET 1 /* GET verified/get: one entry with entry/entry_proof */
#define TC_TX  2 /* GET verified/tx/N: "entries" with every entry */
#define TC_SET 3 /* verified/set, or del + verified/tx: recomputed from sent */

#define TC_SEL_LATEST 0
#define TC_SEL_TX     1 /* sel_val = as-of transaction */
#define TC_SEL_REV    2 /* sel_val = revision */
#define TC_SEL_AT     3 /* sel_val = Unix ns */

typedef struct tc_sent {
    const void *key; size_t key_len;
    const void *value; size_t value_len;
    int deleted;
} tc_sent;

/* What the caller asked for; the bundle must answer exactly that. */
typedef struct tc_expect {
    int kind;                        /* TC_GET / TC_TX / TC_SET */
    const void *key; size_t key_len; /* TC_GET */
    int sel; uint64_t sel_val;       /* TC_GET */
    uint64_t tx;                     /* TC_TX: the tx asked for; TC_SET: 0 or the acked tx */
    const tc_sent *sent; size_t n_sent;        /* TC_SET */
    const void *meta; size_t meta_len;         /* TC_SET: tx metadata sent (NULL, 0: none) */
    uint64_t after;                  /* TC_SET: size verified before the write was sent */
    uint64_t ts_min;                 /* TC_SET: earliest tx time accepted (Unix ns; 0: any) */
} tc_expect;

/* Verifies a proof bundle (JSON text body[0..len)) against trust t for the
** request e. On success fills *out (caller frees with tc_bundle_free) and
** returns 0. Returns TALLY_EBADPROOF (reason in why), TALLY_ENOMEM. */
int tc_verify_bundle(const tc_trust *t, const tc_expect *e, const char *body, size_t len,
                     tc_bundle *out, char why[TC_WHY_MAX]);

/* Verifies a signed checkpoint note against t, and its consistency with the
** trusted state using the JSON consistency proof cons[0..cons_len) (the
** /proof/consistency response or a bundle's "consistency" object; NULL when
** none is needed: trusted size 0 or equal sizes). On success fills *out
** (free with tc_checkpoint_free). Returns 0, TALLY_EBADPROOF, TALLY_ENOMEM. */
int tc_verify_checkpoint(const tc_trust *t, const char *note, size_t note_len, const char *cons,
                         size_t cons_len, tc_checkpoint *out, char why[TC_WHY_MAX]);

/* Only the signature and origin of a note (for loading the stored trusted
** state): fills size/root. Returns 0 or TALLY_EBADPROOF. */
int tc_check_note(const tc_trust *t, const char *note, size_t note_len, uint64_t *size,
                  uint8_t root[32], char why[TC_WHY_MAX]);

/* Verifies a binary TVB1 answer of verified/getmany (docs/API.md) to the n
** keys e[0..n) (each TC_GET with the same selector): one checkpoint (rule 1),
** its consistency with the trusted state (rule 2), then each result in order:
** the key asked, and for a found one rules 3 and 4 under that checkpoint.
** On success *cp is the checkpoint (free with tc_checkpoint_free), found[i]
** says whether key i was found (absent: the server's word), and items[i]
** (free each with tc_bundle_free; cp.note is not set in them) holds its
** verified bundle. Returns 0, TALLY_EBADPROOF (why), TALLY_ENOMEM; on
** failure nothing needs freeing. */
int tc_verify_batch(const tc_trust *t, const tc_expect *e, size_t n, const char *body,
                    size_t len, tc_checkpoint *cp, tc_bundle *items, int *found,
                    char why[TC_WHY_MAX]);

/* The "checkpoint" string of a JSON body, malloc'ed, or NULL (for evidence). */
char *tc_extract_checkpoint(const char *body, size_t len);

/* Hex helpers: decode exactly n hex digits (n even) into out; 0 or -1. */
int tc_unhex(const char *s, size_t n, uint8_t *out);
void tc_hex(char *out, const uint8_t *in, size_t n); /* writes 2n digits + NUL */

#endif
