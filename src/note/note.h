/*
** note.h — C2SP signed notes and tlog-checkpoints, with Ed25519 (OpenSSL).
**
** A signed note is UTF-8 text ending in "\n", a blank line, then signature
** lines "— <key name> <base64(key_id[4, big-endian] || ed25519_sig[64])>\n"
** (U+2014 em dash, bytes E2 80 94). The signature covers the text including
** its final newline. key_id = SHA-256(name || 0x0A || 0x01 || pubkey)[0..4].
** A verifier key ("vkey") is "<name>+<hex key_id>+<base64(0x01 || pubkey)>".
**
** A Tally checkpoint is a tlog-checkpoint note body:
**     <origin>\n            "<server name>/ledger/<ledger id, 32 hex>"
**     <tree size>\n         decimal, no leading zeros
**     <base64 root>\n       RFC 6962 root of the ledger at that size
** Limits: note text <= NOTE_TEXT_MAX bytes, key names <= NOTE_NAME_MAX bytes,
** at most NOTE_SIGS_MAX signature lines are read.
*/
#ifndef TALLY_NOTE_H
#define TALLY_NOTE_H
#include <stddef.h>
#include <stdint.h>

#define NOTE_TEXT_MAX 4096
#define NOTE_NAME_MAX 256
#define NOTE_SIGS_MAX 100
#define NOTE_VKEY_MAX (NOTE_NAME_MAX + 64)

/* New Ed25519 key pair from the OS CSPRNG. Returns 0 or -1. */
int note_key_generate(uint8_t priv[32], uint8_t pub[32]);
/* Public key of a private key. Returns 0 or -1. */
int note_key_public(const uint8_t priv[32], uint8_t pub[32]);
/* The 4-byte key ID (as a big-endian integer). */
uint32_t note_key_id(const char *name, const uint8_t pub[32]);
/* Writes the vkey text. Returns its length or -1 if it does not fit. */
int note_vkey_format(char *out, size_t out_len, const char *name, const uint8_t pub[32]);
/* Parses a vkey (checks that the key ID matches). Returns 0 or -1. */
int note_vkey_parse(const char *vkey, char name[NOTE_NAME_MAX + 1], uint8_t pub[32]);

/* Signs text (must end in "\n", no blank line, no control characters but
** "\n") as key `name`; writes the whole signed note. Returns its length or -1. */
int note_sign(char *out, size_t out_len, const char *text, const char *name, const uint8_t priv[32]);
/* Verifies a signed note against one trusted key. The first signature line
** with this key's name and ID decides; lines of other keys are ignored.
** On success *text_len is the length of the signed text (which starts at
** note[0]). Returns 0, or -1 (malformed, not signed by this key, or a bad
** signature). Never reads past note[len). */
int note_verify(const char *note, size_t len, const char *name, const uint8_t pub[32], size_t *text_len);

/* Writes a checkpoint body. Returns its length or -1. */
int checkpoint_format(char *out, size_t out_len, const char *origin, uint64_t size, const uint8_t root[32]);
/* Parses a checkpoint body (the first three lines; extension lines are
** allowed and ignored). Returns 0 or -1. */
int checkpoint_parse(const char *text, size_t len, char origin[NOTE_NAME_MAX + 1], uint64_t *size,
                     uint8_t root[32]);

/* RFC 4648 base64 helpers. encode returns the output length (NUL-terminated);
** decode returns the decoded length or -1 (bad characters or padding). */
int b64_encode(char *out, size_t out_len, const uint8_t *in, size_t len);
int b64_decode(uint8_t *out, size_t out_len, const char *in, size_t len);

#endif
