/*
** test_fuzz_record.c — runs fuzz/fuzz_record.c without libFuzzer: every file
** of fuzz/corpus/record, then a deterministic stream of mutations of valid
** records (bit flips, byte sets, truncations, length fields pushed to their
** limits). Under ASan/UBSan this is the parser's robustness test.
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../fuzz/fuzz_record.c"
#include "util/crc32c.h"
#include "testutil.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* A valid record with n entries. Returns its length. */
static size_t make_record(uint8_t *out, unsigned n) {
    uint8_t *txh = out + RECORD_HDR_LEN, *ent = txh + TXH_FIXED_LEN, *w = ent;
    for (unsigned i = 0; i < n; i++) {
        unsigned klen = 1 + (unsigned)(next() % 12), vlen = (unsigned)(next() % 20);
        w[0] = 0, w[1] = 0;
        wr16(w + 2, (uint16_t)klen);
        wr32(w + 4, 0);
        wr32(w + 8, vlen);
        for (unsigned k = 0; k < klen + vlen; k++) w[12 + k] = (uint8_t)next();
        w += 12 + klen + vlen;
    }
    uint32_t elen = (uint32_t)(w - ent);
    memset(txh, 0, TXH_FIXED_LEN);
    txh[0] = 1;
    wr64(txh + 1, 7);
    wr32(txh + 81, n);
    wr32(txh + 85, elen);
    uint8_t scratch[64][32];
    entries_root_compute(ent, elen, n, scratch, txh + 49);
    record_hdr h = {.body_len = TXH_FIXED_LEN + elen, .tx_id = 7, .txh_len = TXH_FIXED_LEN,
                    .body_crc = tally_crc32c(tally_crc32c(0, ent, elen), txh, TXH_FIXED_LEN), .sync_lag = 1};
    record_hdr_encode(out, &h);
    return RECORD_HDR_LEN + TXH_FIXED_LEN + elen;
}

int main(void) {
    unsigned long inputs = 0;
    DIR *d = opendir("fuzz/corpus/record");
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "fuzz/corpus/record/%s", de->d_name);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        inputs++;
    }
    if (d) closedir(d);
    static uint8_t rec[8192], mut[8192];
    char why[160];
    for (int round = 0; round < 3000; round++) {
        size_t len = make_record(rec, 1 + (unsigned)(next() % 8));
        CHECK(record_check(rec, len, 7, why, sizeof why) == 0);
        for (int m = 0; m < 20; m++) {
            memcpy(mut, rec, len);
            size_t mlen = len;
            switch (next() % 5) {
            case 0: mut[next() % len] ^= (uint8_t)(1u << (next() % 8)); break;
            case 1: mut[next() % len] = (uint8_t)next(); break;
            case 2: mlen = next() % len; break;
            case 3: wr32(mut + RECORD_HDR_LEN + TXH_FIXED_LEN + 8, 0xFFFFFFFFu); break; /* value_len */
            default: wr32(mut + 4, (uint32_t)next()); break;                             /* body_len */
            }
            LLVMFuzzerTestOneInput(mut, mlen);
            inputs++;
            /* any change to a checked byte must be rejected */
            if (mlen == len && memcmp(mut, rec, len) != 0) CHECK(record_check(mut, mlen, 7, why, sizeof why) != 0);
        }
    }
    printf("fuzz replay: %lu inputs\n", inputs);
    TEST_END("test_fuzz_record");
}
