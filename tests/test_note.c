/*
** test_note.c — C2SP signed notes and checkpoints (src/note/note.c).
**
** Vectors: golang.org/x/mod/sumdb/note (note_test.go / the package example),
** the reference implementation of the C2SP signed-note format: key
** "PeterNeumann", its private seed, verifier key and the published signed
** note. Ed25519 is deterministic, so our signer must reproduce it exactly.
*/
#include <stdio.h>
#include <string.h>
#include "note/note.h"
#include "testutil.h"

static const char *GO_SKEY_B64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"; /* 0x01 || seed */
static const char *GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char *GO_TEXT =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
static const char *GO_NOTE =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    "\n\xE2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

int main(void) {
    uint8_t sk[40], seed[32], pub[32], pub2[32];
    char name[NOTE_NAME_MAX + 1], out[8192], vk[NOTE_VKEY_MAX];
    CHECK_EQ_INT(b64_decode(sk, sizeof sk, GO_SKEY_B64, strlen(GO_SKEY_B64)), 33);
    {   /* canonical base64 only: unused low bits of the last digit must be 0 */
        uint8_t b[8];
        CHECK_EQ_INT(b64_decode(b, sizeof b, "AA==", 4), 1);
        CHECK_EQ_INT(b64_decode(b, sizeof b, "AB==", 4), -1);
        CHECK_EQ_INT(b64_decode(b, sizeof b, "AAA=", 4), 2);
        CHECK_EQ_INT(b64_decode(b, sizeof b, "AAB=", 4), -1);
        CHECK_EQ_INT(b64_decode(b, sizeof b, "AAAB", 4), 3);
    }
    memcpy(seed, sk + 1, 32);
    CHECK_EQ_INT(note_key_public(seed, pub), 0);
    CHECK_EQ_INT(note_vkey_parse(GO_VKEY, name, pub2), 0);
    CHECK(strcmp(name, "PeterNeumann") == 0);
    CHECK(memcmp(pub, pub2, 32) == 0);
    CHECK(note_key_id("PeterNeumann", pub) == 0xc74f20a3u);
    CHECK(note_vkey_format(vk, sizeof vk, "PeterNeumann", pub) > 0 && strcmp(vk, GO_VKEY) == 0);
    /* signing reproduces the published note byte for byte */
    int n = note_sign(out, sizeof out, GO_TEXT, "PeterNeumann", seed);
    CHECK(n > 0 && strcmp(out, GO_NOTE) == 0);
    size_t tl = 0;
    CHECK_EQ_INT(note_verify(GO_NOTE, strlen(GO_NOTE), "PeterNeumann", pub, &tl), 0);
    CHECK_EQ_INT(tl, strlen(GO_TEXT));
    /* every single-byte change of the note is rejected */
    size_t len = strlen(GO_NOTE);
    int caught = 0, total = 0;
    for (size_t i = 0; i < len; i++) {
        char m[512];
        memcpy(m, GO_NOTE, len);
        m[i] ^= 0x01;
        total++;
        caught += note_verify(m, len, "PeterNeumann", pub, &tl) != 0;
    }
    CHECK_EQ_INT(caught, total);
    /* other key, other name, truncations, extra blank line, missing signature */
    uint8_t priv3[32], pub3[32];
    CHECK_EQ_INT(note_key_generate(priv3, pub3), 0);
    CHECK(note_verify(GO_NOTE, len, "PeterNeumann", pub3, &tl) != 0);
    CHECK(note_verify(GO_NOTE, len, "PeterNeumannX", pub, &tl) != 0);
    for (size_t cut = 0; cut < len; cut += 7) CHECK(note_verify(GO_NOTE, cut, "PeterNeumann", pub, &tl) != 0);
    CHECK(note_verify(GO_TEXT, strlen(GO_TEXT), "PeterNeumann", pub, &tl) != 0);
    CHECK(note_sign(out, sizeof out, "no newline", "k", priv3) < 0);
    CHECK(note_sign(out, sizeof out, "a\n\nb\n", "k", priv3) < 0);
    CHECK(note_sign(out, sizeof out, "a\n", "bad name", priv3) < 0);
    /* a note with two signatures: a foreign one first is ignored */
    char two[8192];
    n = note_sign(out, sizeof out, GO_TEXT, "other.example", priv3);
    CHECK(n > 0);
    snprintf(two, sizeof two, "%s\xE2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n", out);
    CHECK_EQ_INT(note_verify(two, strlen(two), "PeterNeumann", pub, &tl), 0);
    CHECK_EQ_INT(note_verify(two, strlen(two), "other.example", pub3, &tl), 0);
    /* checkpoints */
    uint8_t root[32], root2[32];
    for (int i = 0; i < 32; i++) root[i] = (uint8_t)(i * 9);
    char cp[512], origin[NOTE_NAME_MAX + 1];
    uint64_t size = 0;
    CHECK(checkpoint_format(cp, sizeof cp, "tally.example/ledger/00ff", 12345, root) > 0);
    CHECK_EQ_INT(checkpoint_parse(cp, strlen(cp), origin, &size, root2), 0);
    CHECK(strcmp(origin, "tally.example/ledger/00ff") == 0 && size == 12345 && memcmp(root, root2, 32) == 0);
    CHECK(checkpoint_parse("o\n012\nAAAA\n", 11, origin, &size, root2) != 0); /* leading zero */
    CHECK(checkpoint_parse("o\n12\nAAAA\n", 10, origin, &size, root2) != 0);  /* short root */
    CHECK(checkpoint_parse("o\n99999999999999999999\n", 23, origin, &size, root2) != 0);
    n = note_sign(out, sizeof out, cp, "tally.example", priv3);
    CHECK(n > 0);
    CHECK_EQ_INT(note_verify(out, (size_t)n, "tally.example", pub3, &tl), 0);
    CHECK_EQ_INT(tl, strlen(cp));
    TEST_END("test_note");
}
