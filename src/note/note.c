/*
** note.c — C2SP signed notes and checkpoints (see note.h).
*/
#include "note/note.h"
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include "util/sha256.h"

static const char EM_DASH[] = "\xE2\x80\x94 ";

int b64_encode(char *out, size_t out_len, const uint8_t *in, size_t len) {
    size_t need = 4 * ((len + 2) / 3) + 1;
    if (out_len < need) return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int b64_decode(uint8_t *out, size_t out_len, const char *in, size_t len) {
    if (len % 4 != 0 || len / 4 * 3 > out_len + 2) return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                 c == '/' || (c == '=' && i >= len - 2);
        if (!ok) return -1;
    }
    if (len >= 2 && in[len - 2] == '=' && in[len - 1] != '=') return -1;
    uint8_t tmp[NOTE_TEXT_MAX];
    if (len / 4 * 3 > sizeof tmp) return -1;
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
    if (n < 0) return -1;
    if (len >= 1 && in[len - 1] == '=') n--;
    if (len >= 2 && in[len - 2] == '=') n--;
    if ((size_t)n > out_len) return -1;
    /* Canonical only: the unused low bits of the last digit must be zero, so
    ** one value has one text (a note's bytes are compared as they are). */
    char re[(NOTE_TEXT_MAX + 2) / 3 * 4 + 1];
    if (b64_encode(re, sizeof re, tmp, (size_t)n) != (int)len ||
        memcmp(re, in, len) != 0)
        return -1;
    memcpy(out, tmp, (size_t)n);
    return n;
}

int note_key_generate(uint8_t priv[32], uint8_t pub[32]) {
    if (RAND_bytes(priv, 32) != 1) return -1;
    return note_key_public(priv, pub);
}

int note_key_public(const uint8_t priv[32], uint8_t pub[32]) {
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32);
    size_t n = 32;
    int rc = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32 ? 0 : -1;
    EVP_PKEY_free(k);
    return rc;
}

uint32_t note_key_id(const char *name, const uint8_t pub[32]) {
    tally_sha256_ctx c;
    uint8_t h[32];
    static const uint8_t sep[2] = {0x0A, 0x01};
    tally_sha256_init(&c);
    tally_sha256_update(&c, name, strlen(name));
    tally_sha256_update(&c, sep, 2);
    tally_sha256_update(&c, pub, 32);
    tally_sha256_final(&c, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

static int name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > NOTE_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= 0x20 || name[i] == '+') return 0;
    return 1;
}

int note_vkey_format(char *out, size_t out_len, const char *name, const uint8_t pub[32]) {
    if (!name_ok(name)) return -1;
    uint8_t k[33];
    char b64[64];
    k[0] = 0x01;
    memcpy(k + 1, pub, 32);
    b64_encode(b64, sizeof b64, k, 33);
    int n = snprintf(out, out_len, "%s+%08x+%s", name, note_key_id(name, pub), b64);
    return n < 0 || (size_t)n >= out_len ? -1 : n;
}

int note_vkey_parse(const char *vkey, char name[NOTE_NAME_MAX + 1], uint8_t pub[32]) {
    const char *p1 = strchr(vkey, '+');
    const char *p2 = p1 ? strchr(p1 + 1, '+') : NULL;
    if (!p1 || !p2 || p1 == vkey || (size_t)(p1 - vkey) > NOTE_NAME_MAX || p2 - p1 != 9) return -1;
    memcpy(name, vkey, (size_t)(p1 - vkey));
    name[p1 - vkey] = 0;
    unsigned id;
    char hex[9];
    memcpy(hex, p1 + 1, 8);
    hex[8] = 0;
    if (sscanf(hex, "%8x", &id) != 1) return -1;
    uint8_t k[40];
    if (b64_decode(k, sizeof k, p2 + 1, strlen(p2 + 1)) != 33 || k[0] != 0x01) return -1;
    memcpy(pub, k + 1, 32);
    return name_ok(name) && note_key_id(name, pub) == id ? 0 : -1;
}

static int text_ok(const char *text, size_t n) {
    if (n == 0 || n > NOTE_TEXT_MAX || text[n - 1] != '\n') return 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)text[i] < 0x20 && text[i] != '\n') return 0;
        if (i && text[i] == '\n' && text[i - 1] == '\n') return 0;
    }
    return 1;
}

int note_sign(char *out, size_t out_len, const char *text, const char *name, const uint8_t priv[32]) {
    size_t n = strlen(text);
    if (!text_ok(text, n) || !name_ok(name)) return -1;
    uint8_t pub[32], sig[68];
    if (note_key_public(priv, pub) != 0) return -1;
    uint32_t id = note_key_id(name, pub);
    sig[0] = (uint8_t)(id >> 24), sig[1] = (uint8_t)(id >> 16), sig[2] = (uint8_t)(id >> 8), sig[3] = (uint8_t)id;
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t sl = 64;
    int ok = k && md && EVP_DigestSignInit(md, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(md, sig + 4, &sl, (const unsigned char *)text, n) == 1 && sl == 64;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(k);
    if (!ok) return -1;
    char b64[128];
    b64_encode(b64, sizeof b64, sig, 68);
    int w = snprintf(out, out_len, "%s\n%s%s %s\n", text, EM_DASH, name, b64);
    return w < 0 || (size_t)w >= out_len ? -1 : w;
}

int note_verify(const char *note, size_t len, const char *name, const uint8_t pub[32], size_t *text_len) {
    if (len < 2 || len > NOTE_TEXT_MAX + NOTE_SIGS_MAX * (NOTE_NAME_MAX + 128)) return -1;
    /* the text ends at the LAST "\n\n" */
    size_t split = 0;
    int found = 0;
    for (size_t i = len - 1; i >= 1; i--)
        if (note[i] == '\n' && note[i - 1] == '\n') {
            split = i; /* note[0..split) is text incl. its final newline */
            found = 1;
            break;
        }
    if (!found || !text_ok(note, split) || note[len - 1] != '\n') return -1;
    uint32_t want_id = note_key_id(name, pub);
    size_t nl = strlen(name);
    const char *p = note + split + 1, *end = note + len;
    for (int lines = 0; p < end && lines < NOTE_SIGS_MAX; lines++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol || eol - p < 4 || memcmp(p, EM_DASH, 4) != 0) return -1;
        const char *q = p + 4, *sp = memchr(q, ' ', (size_t)(eol - q));
        if (!sp) return -1;
        if ((size_t)(sp - q) == nl && memcmp(q, name, nl) == 0) {
            uint8_t sig[68];
            if (b64_decode(sig, sizeof sig, sp + 1, (size_t)(eol - sp - 1)) != 68) return -1;
            uint32_t id = (uint32_t)sig[0] << 24 | (uint32_t)sig[1] << 16 | (uint32_t)sig[2] << 8 | sig[3];
            if (id == want_id) {
                EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
                EVP_MD_CTX *md = EVP_MD_CTX_new();
                int ok = k && md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) == 1 &&
                         EVP_DigestVerify(md, sig + 4, 64, (const unsigned char *)note, split) == 1;
                EVP_MD_CTX_free(md);
                EVP_PKEY_free(k);
                if (!ok) return -1; /* a failed known-key signature rejects the note */
                *text_len = split;
                return 0;
            }
        }
        p = eol + 1;
    }
    return -1;
}

int checkpoint_format(char *out, size_t out_len, const char *origin, uint64_t size, const uint8_t root[32]) {
    char b64[48];
    b64_encode(b64, sizeof b64, root, 32);
    int n = snprintf(out, out_len, "%s\n%llu\n%s\n", origin, (unsigned long long)size, b64);
    return n < 0 || (size_t)n >= out_len ? -1 : n;
}

int checkpoint_parse(const char *text, size_t len, char origin[NOTE_NAME_MAX + 1], uint64_t *size,
                     uint8_t root[32]) {
    const char *end = text + len, *l1 = memchr(text, '\n', len);
    if (!l1 || l1 == text || (size_t)(l1 - text) > NOTE_NAME_MAX) return -1;
    const char *l2 = memchr(l1 + 1, '\n', (size_t)(end - l1 - 1));
    if (!l2 || l2 == l1 + 1 || l2 - l1 - 1 > 20) return -1;
    const char *l3 = memchr(l2 + 1, '\n', (size_t)(end - l2 - 1));
    if (!l3) return -1;
    memcpy(origin, text, (size_t)(l1 - text));
    origin[l1 - text] = 0;
    uint64_t v = 0;
    for (const char *p = l1 + 1; p < l2; p++) {
        if (*p < '0' || *p > '9' || (p == l1 + 1 && *p == '0' && l2 - l1 > 2)) return -1;
        uint64_t nv = v * 10 + (uint64_t)(*p - '0');
        if (nv / 10 != v) return -1;
        v = nv;
    }
    *size = v;
    return b64_decode(root, 32, l2 + 1, (size_t)(l3 - l2 - 1)) == 32 ? 0 : -1;
}
