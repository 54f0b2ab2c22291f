/*
** sha256.h — the one SHA-256 used by Tally (OpenSSL libcrypto).
**
** We call libcrypto's low-level SHA256_Init/Update/Final rather than the
** one-shot SHA256()/EVP path: measured on the reference machine, hashing a
** 65-byte Merkle node costs ~103 ns this way against ~376 ns through EVP
** (the EVP path fetches a provider per call). Both use the CPU's SHA
** extensions. The functions are deprecated in OpenSSL 3 but still shipped;
** the deprecation warning is suppressed in sha256.c only.
*/
#ifndef TALLY_SHA256_H
#define TALLY_SHA256_H
#include <stddef.h>
#include <stdint.h>

#define TALLY_SHA256_LEN 32

typedef struct tally_sha256_ctx {
    /* Big enough for OpenSSL's SHA256_CTX (112 bytes); checked in sha256.c. */
    uint64_t opaque[16];
} tally_sha256_ctx;

void tally_sha256_init(tally_sha256_ctx *ctx);
void tally_sha256_update(tally_sha256_ctx *ctx, const void *data, size_t len);
void tally_sha256_final(tally_sha256_ctx *ctx, uint8_t out[TALLY_SHA256_LEN]);
/* One call: out = SHA-256(data[0..len)). */
void tally_sha256(const void *data, size_t len, uint8_t out[TALLY_SHA256_LEN]);

#endif
