/*
** fuzz_record.c — fuzz target for everything that parses untrusted bytes:
** record_check / record_hdr_decode / txh_decode / entry_decode (a damaged or
** hostile log), entries_root_compute, and the RFC 6962 proof verifiers (a
** hostile server's proofs). The invariant: no input crashes, reads out of
** bounds or hangs; a record that record_check accepts decodes consistently.
**
** libFuzzer:  clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
**               fuzz/fuzz_record.c src/log/record.c src/merkle/rfc6962.c \
**               src/util/sha256.c src/util/crc32c.c -lcrypto -o build/fuzz_record && build/fuzz_record fuzz/corpus/record
** In `make test`, tests/test_fuzz_record.c replays fuzz/corpus/record and a
** deterministic stream of mutations through the same entry point.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "log/record.h"
#include "merkle/rfc6962.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_proofs(const uint8_t *data, size_t size) {
    if (size < 16 + 64) return;
    uint64_t a, b;
    memcpy(&a, data, 8);
    memcpy(&b, data + 8, 8);
    a %= 1u << 20, b %= 1u << 20;
    const uint8_t *h1 = data + 16, *h2 = data + 48;
    size_t n = (size - 80) / 32;
    if (n > RFC6962_PROOF_MAX + 1) n = RFC6962_PROOF_MAX + 1;
    rfc6962_hash path[RFC6962_PROOF_MAX + 1];
    memcpy(path, data + 80, n * 32);
    (void)rfc6962_verify_inclusion(h1, a, b, (const rfc6962_hash *)path, n, h2);
    (void)rfc6962_verify_consistency(a, b, h1, h2, (const rfc6962_hash *)path, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char why[160];
    /* a copy at the exact size, so any over-read is caught by ASan */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    record_hdr h;
    if (size >= RECORD_HDR_LEN) (void)record_hdr_decode(buf, &h);
    if (record_check(buf, size, 0, why, sizeof why) == 0) {
        /* accepted: the pieces must decode and the entries root must compute */
        record_hdr_decode(buf, &h);
        txh_view t;
        if (txh_decode(buf + RECORD_HDR_LEN, h.txh_len, &t) != 0) abort();
        uint8_t (*scratch)[32] = malloc(((size_t)t.entry_count * 2 + 2) * 32);
        uint8_t root[32];
        if (scratch && entries_root_compute(buf + RECORD_HDR_LEN + h.txh_len, t.entries_len, t.entry_count,
                                            scratch, root) != 0)
            abort();
        free(scratch);
    }
    /* entries alone */
    size_t off = 0;
    for (int i = 0; i < 64 && off < size; i++) {
        entry_view e;
        size_t n = entry_decode(buf + off, size - off, &e);
        if (!n) break;
        if (n > size - off) abort();
        off += n;
    }
    fuzz_proofs(buf, size);
    free(buf);
    return 0;
}
