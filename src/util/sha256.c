/*
** sha256.c — thin wrapper over OpenSSL's low-level SHA-256 (see sha256.h
** for why the low-level API).
*/
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "sha256.h"
#include <openssl/sha.h>
#include <string.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(tally_sha256_ctx),
               "tally_sha256_ctx too small for SHA256_CTX");

void tally_sha256_init(tally_sha256_ctx *ctx) { SHA256_Init((SHA256_CTX *)ctx); }

void tally_sha256_update(tally_sha256_ctx *ctx, const void *data, size_t len) {
    if (len) SHA256_Update((SHA256_CTX *)ctx, data, len);
}

void tally_sha256_final(tally_sha256_ctx *ctx, uint8_t out[TALLY_SHA256_LEN]) {
    SHA256_Final(out, (SHA256_CTX *)ctx);
}

void tally_sha256(const void *data, size_t len, uint8_t out[TALLY_SHA256_LEN]) {
    SHA256_CTX c;
    SHA256_Init(&c);
    if (len) SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}
