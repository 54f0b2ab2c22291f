/*
** test_format_example.c — the engine's hashing code against the worked
** example of docs/FORMAT.md §7 (the same values scripts/format_check.py
** derives from the document alone), plus CRC-32C's check value.
*/
#include <stdio.h>
#include <string.h>
#include "log/record.h"
#include "merkle/rfc6962.h"
#include "util/crc32c.h"
#include "testutil.h"

static void hex(const uint8_t *h, char *out) {
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", h[i]);
}

static void check_hash(const uint8_t *h, const char *want) {
    char got[65];
    hex(h, got);
    CHECK(strcmp(got, want) == 0);
    if (strcmp(got, want)) fprintf(stderr, "  got %s\n want %s\n", got, want);
}

static size_t make_txh(uint8_t *p, uint64_t tx, uint64_t ts, const uint8_t *prev, const uint8_t *root,
                       uint32_t ents_len) {
    memset(p, 0, TXH_FIXED_LEN);
    p[0] = 1;
    wr64(p + 1, tx);
    wr64(p + 9, ts);
    memcpy(p + 17, prev, 32);
    memcpy(p + 49, root, 32);
    wr32(p + 81, 1);
    wr32(p + 85, ents_len);
    return TXH_FIXED_LEN;
}

int main(void) {
    CHECK(tally_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(tally_crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    uint8_t big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (uint8_t)(i * 7);
    for (size_t n = 0; n < 1000; n += 37) CHECK(tally_crc32c(0, big, n) == tally_crc32c_sw(0, big, n));
    /* combining: every split of big, and a long run of zeros (a run's padding) */
    for (size_t a = 0; a <= 1000; a += 29) {
        uint32_t whole = tally_crc32c(0, big, 1000);
        CHECK(tally_crc32c_combine(tally_crc32c(0, big, a), tally_crc32c(0, big + a, 1000 - a), 1000 - a) == whole);
    }
    CHECK(tally_crc32c_combine(tally_crc32c(0, "12345", 5), tally_crc32c(0, "6789", 4), 4) == 0xE3069283u);
    CHECK(tally_crc32c_combine(0x12345678u, 0, 0) == 0x12345678u);
    {
        static uint8_t zeros[1u << 20];
        uint32_t z = tally_crc32c(0, zeros, sizeof zeros), two = tally_crc32c(z, zeros, sizeof zeros);
        CHECK(tally_crc32c_combine(z, z, sizeof zeros) == two);
        CHECK(tally_crc32c_combine(tally_crc32c(0, big, 1000), z, sizeof zeros) == tally_crc32c(tally_crc32c(0, big, 1000), zeros, sizeof zeros));
    }

    uint8_t e1[] = {0, 0, 8, 0, 0, 0, 0, 0, 5, 0, 0, 0, 'g', 'r', 'e', 'e', 't', 'i', 'n', 'g', 'h', 'e', 'l', 'l', 'o'};
    uint8_t e2[] = {0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'g', 'r', 'e', 'e', 't', 'i', 'n', 'g'};
    uint8_t scratch[4][32], r1[32], r2[32], t1[32], t2[32], root[32], zero[32] = {0}, h[TXH_FIXED_LEN];
    CHECK(entries_root_compute(e1, sizeof e1, 1, scratch, r1) == 0);
    check_hash(r1, "988febe81e9eeb7cdff0b3b770e6fe158ada67012e8b910a14a5895d2e1905c1");
    CHECK(entries_root_compute(e2, sizeof e2, 1, scratch, r2) == 0);
    check_hash(r2, "2c42b7dfa272888988aa3d05505dd3dde23fa6d052b76b8a945e293589148aca");
    rfc6962_leaf_hash(h, make_txh(h, 1, 1000000000ull, zero, r1, sizeof e1), t1);
    check_hash(t1, "bc446d33cc93fe8bcbfb021dbca6997b261cfe5bcef37ca091807978c766cb4f");
    rfc6962_leaf_hash(h, make_txh(h, 2, 2000000000ull, t1, r2, sizeof e2), t2);
    check_hash(t2, "38ead9546d4dabe188f28e459005deb8d9b07aadb72e6ea3f9cb8fc5d20231d2");
    rfc6962_node_hash(t1, t2, root);
    check_hash(root, "80aea6eff284d1093a84148c3222adf3526a050b1646de1b4111ff0634448cb0");
    /* the record-level checks accept a record built from these bytes */
    uint8_t rec[RECORD_HDR_LEN + TXH_FIXED_LEN + sizeof e1];
    make_txh(rec + RECORD_HDR_LEN, 1, 1000000000ull, zero, r1, sizeof e1);
    memcpy(rec + RECORD_HDR_LEN + TXH_FIXED_LEN, e1, sizeof e1);
    record_hdr rh = {.body_len = TXH_FIXED_LEN + sizeof e1, .tx_id = 1, .txh_len = TXH_FIXED_LEN,
                     .body_crc = tally_crc32c(tally_crc32c(0, e1, sizeof e1), rec + RECORD_HDR_LEN, TXH_FIXED_LEN),
                     .sync_lag = 1};
    record_hdr_encode(rec, &rh);
    char why[128];
    CHECK(record_check(rec, sizeof rec, 1, why, sizeof why) == 0);
    rec[RECORD_HDR_LEN + TXH_FIXED_LEN + 20] ^= 1; /* a flipped value byte */
    CHECK(record_check(rec, sizeof rec, 1, why, sizeof why) != 0);
    TEST_END("test_format_example");
}
