/*
** keys.c — the server's Ed25519 signing key on disk (docs/API.md "Starting").
**
**   DIR/server.key   mode 0600: "PRIVATE+KEY+<name>+<key id, 8 hex>+<base64(0x01 || seed)>"
**                    (the Go golang.org/x/mod/sumdb/note signer key format)
**   DIR/server.vkey  "<name>+<key id>+<base64(0x01 || pubkey)>" (note_vkey_format)
**
** Invariants:
**   (1) server.key is created with O_EXCL and mode 0600, written and fsynced
**       before server.vkey; it is never rewritten;
**   (2) a loaded key is checked: its key id must match its name and public key.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "note/note.h"
#include "server/server.h"

#define KEY_FILE_BYTES_MAX 1024

/* Writes len bytes to a new file path with mode, fsyncs it. Returns 0 or -1. */
static int write_new_file(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, text, len);
    int rc = (w == (ssize_t)len && fsync(fd) == 0) ? 0 : -1;
    close(fd);
    return rc;
}

/* Reads a small text file into buf (NUL-terminated, trailing newline cut). */
static int read_small_file(const char *path, char *buf, size_t buf_len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, buf_len - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return n > 0 ? 0 : -1;
}

/* Parses "PRIVATE+KEY+name+id+b64". Returns 0 or -1. */
static int parse_private(tallyd *s, char *text)
{
    const char *pfx = "PRIVATE+KEY+";
    if (strncmp(text, pfx, strlen(pfx)) != 0)
        return -1;
    /* Fields are split from the left: names never hold '+', base64 may. */
    char *name = text + strlen(pfx);
    char *id = strchr(name, '+');
    if (!id)
        return -1;
    *id++ = '\0';
    char *b64 = strchr(id, '+');
    if (!b64)
        return -1;
    *b64++ = '\0';
    uint8_t raw[64];
    if (strlen(name) == 0 || strlen(name) > NOTE_NAME_MAX ||
        b64_decode(raw, sizeof raw, b64, strlen(b64)) != 33 || raw[0] != 0x01)
        return -1;
    memcpy(s->priv, raw + 1, 32);
    if (note_key_public(s->priv, s->pub) < 0)
        return -1;
    char want[16];
    snprintf(want, sizeof want, "%08x", note_key_id(name, s->pub));
    if (strcmp(want, id) != 0)
        return -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

/* Writes both files for the key in s (new files only). Returns 0 or -1. */
static int create_keys(tallyd *s, const char *key_path, const char *vkey_path, char *err,
                       size_t err_len)
{
    uint8_t raw[33];
    char b64[64], text[KEY_FILE_BYTES_MAX];
    raw[0] = 0x01;
    memcpy(raw + 1, s->priv, 32);
    b64_encode(b64, sizeof b64, raw, sizeof raw);
    int n = snprintf(text, sizeof text, "PRIVATE+KEY+%s+%08x+%s\n", s->name,
                     note_key_id(s->name, s->pub), b64);
    if (write_new_file(key_path, text, (size_t)n, 0600) < 0) {
        snprintf(err, err_len, "cannot write %s: %s", key_path, strerror(errno));
        return -1;
    }
    n = snprintf(text, sizeof text, "%s\n", s->vkey);
    unlink(vkey_path); /* a stale vkey without its key is useless */
    if (write_new_file(vkey_path, text, (size_t)n, 0644) < 0) {
        snprintf(err, err_len, "cannot write %s: %s", vkey_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Loads DIR/server.key, or creates it with the configured name.
** Fills s->name, priv, pub, vkey. Returns 0 or -1 with a message in err. */
int keys_load_or_create(tallyd *s, char *err, size_t err_len)
{
    char key_path[SRV_PATH_MAX + 32], vkey_path[SRV_PATH_MAX + 32], text[KEY_FILE_BYTES_MAX];
    snprintf(key_path, sizeof key_path, "%s/server.key", s->data_dir);
    snprintf(vkey_path, sizeof vkey_path, "%s/server.vkey", s->data_dir);
    if (access(key_path, F_OK) == 0) {
        if (read_small_file(key_path, text, sizeof text) < 0 || parse_private(s, text) < 0) {
            snprintf(err, err_len, "%s: not a valid signer key", key_path);
            return -1;
        }
        if (s->cfg.name && strcmp(s->cfg.name, s->name) != 0) {
            snprintf(err, err_len, "--name %s differs from the key name %s in %s", s->cfg.name,
                     s->name, key_path);
            return -1;
        }
        return note_vkey_format(s->vkey, sizeof s->vkey, s->name, s->pub) < 0 ? -1 : 0;
    }
    snprintf(s->name, sizeof s->name, "%s", s->cfg.name ? s->cfg.name : "tally.local");
    if (note_key_generate(s->priv, s->pub) < 0 ||
        note_vkey_format(s->vkey, sizeof s->vkey, s->name, s->pub) < 0) {
        snprintf(err, err_len, "invalid key name '%s'", s->name);
        return -1;
    }
    return create_keys(s, key_path, vkey_path, err, err_len);
}
