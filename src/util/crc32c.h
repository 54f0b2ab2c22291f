/*
** crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
** checksum framing every log record. Initial value 0xFFFFFFFF, final XOR
** 0xFFFFFFFF (the iSCSI / ext4 / RFC 3720 definition): crc32c("123456789")
** is 0xE3069283. Uses the SSE4.2 crc32 instruction when the CPU has it,
** a table otherwise; both give identical results (tested).
*/
#ifndef TALLY_CRC32C_H
#define TALLY_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: pass 0 to start; crc32c(b, crc32c(a, 0)) == crc32c(a||b). */
uint32_t tally_crc32c(uint32_t crc, const void *data, size_t len);
/* The CRC of a||b from crc1 = crc32c(a), crc2 = crc32c(b) and len2 = |b|,
** without the bytes (GF(2) arithmetic, O(log len2)): lets a writer that fills
** a file's sections from separate streams checksum the whole file without
** reading it back. */
uint32_t tally_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);
/* The portable table version, exposed for tests. */
uint32_t tally_crc32c_sw(uint32_t crc, const void *data, size_t len);

#endif
