/*
** crc32c.c — CRC-32C, hardware (SSE4.2) with a table fallback.
*/
#include "crc32c.h"
#include <pthread.h>
#include <string.h>

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_have_hw;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t tally_crc32c_sw(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc; /* little-endian host assumed (checked in the Makefile's targets: x86_64, aarch64) */
        crc = crc_table[7][w & 0xFF] ^ crc_table[6][(w >> 8) & 0xFF] ^
              crc_table[5][(w >> 16) & 0xFF] ^ crc_table[4][(w >> 24) & 0xFF] ^
              crc_table[3][(w >> 32) & 0xFF] ^ crc_table[2][(w >> 40) & 0xFF] ^
              crc_table[1][(w >> 48) & 0xFF] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t c = ~crc & 0xFFFFFFFFu;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

uint32_t tally_crc32c(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (crc_have_hw) return crc32c_hw(crc, data, len);
#endif
    return tally_crc32c_sw(crc, data, len);
}

/* Combining. In the reflected representation bit 31 is x^0. For this CRC
** (init and final XOR all ones) crc(a||b) = crc(a) * x^(8|b|) mod P  XOR
** crc(b): the conditioning of the two halves cancels. */
#define CRC32C_POLY 0x82F63B78u

/* a * b mod P. */
static uint32_t gf2_mulmod(uint32_t a, uint32_t b) {
    uint32_t prod = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) prod ^= b;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1; /* b * x */
    }
    return prod;
}

/* x^(8 * nbytes) mod P, by squaring: sq holds x^(2^k) for k = 3, 4, ... */
static uint32_t x8n_mod(uint64_t nbytes) {
    uint32_t result = 1u << 31; /* x^0 */
    uint32_t sq = 1u << 23;     /* x^8 */
    while (nbytes) {
        if (nbytes & 1) result = gf2_mulmod(result, sq);
        sq = gf2_mulmod(sq, sq);
        nbytes >>= 1;
    }
    return result;
}

uint32_t tally_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2) {
    return gf2_mulmod(x8n_mod(len2), crc1) ^ crc2;
}
