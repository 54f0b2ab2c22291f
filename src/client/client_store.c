/*
** client_store.c — the verifying client's state directory (docs/API.md "Client"):
**
**   <state>/servers/<escaped url>               pinned vkey of that server URL
**   <state>/tokens/<escaped url>                bearer token of `login` (0600)
**   <state>/trust/<esc key name>+<key id hex>/
**       vkey                                    the full vkey this directory is for
**       names/<ledger name>                     pinned ledger id (32 hex)
**       <ledger id>                             trusted state: the last verified
**                                               signed checkpoint note
**       <ledger id>.lock                        flock held while a verified call
**                                               re-reads and replaces the state
**   <state>/evidence/<UTC time>-<ledger id>/    what a failed verification saw
**
** Invariants:
**   (1) every file is written atomically: temp file (a name unique to the
**       process and the write), fsync, rename (or link for pins, which are
**       never replaced), fsync of the directory;
**   (2) pins are created once and never overwritten by this code;
**   (3) nothing in a path comes from a server response unchecked: the ledger
**       id must be 32 lowercase hex, names are escaped.
*/
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/client_int.h"
#include "util/err.h"

int tc_mkdirs(const char *path, unsigned mode)
{
    char tmp[TC_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char save = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
            return -1;
        tmp[i] = save;
    }
    return 0;
}

int tc_read_file(const char *path, char **out, size_t *out_len, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TALLY_ENOTFOUND
                               : tally_seterr(TALLY_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tally_seterr(TALLY_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return tally_seterr(TALLY_ETOOBIG, "%s: larger than %zu bytes", path, max);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return TALLY_ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    b[got] = '\0';
    *out = b;
    *out_len = got;
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[TC_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Removes "<path>.tmp.<pid>[.<n>]" files left by processes that died
** mid-write (kill -9 between open and rename). A live pid's file is left
** alone. */
static void sweep_stale_tmp(const char *path)
{
    char dir[TC_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = '\0';
    const char *base = path + (slash - dir) + 1;
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strncmp(de->d_name, base, bl) != 0 || strncmp(de->d_name + bl, ".tmp.", 5) != 0)
            continue;
        char *end;
        long pid = strtol(de->d_name + bl + 5, &end, 10);
        if (*end == '.' && end[1] >= '0' && end[1] <= '9')
            strtoul(end + 1, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char stale[TC_PATH_MAX + 300];
        snprintf(stale, sizeof stale, "%s/%s", dir, de->d_name);
        unlink(stale);
    }
    if (d)
        closedir(d);
}

/* Writes to a fresh "<path>.tmp.<pid>.<n>" (n unique in this process: threads
** of one process may write the same path at once, e.g. first-contact pins),
** then link (excl) or rename; keep_fd: leave the file open for the caller. */
static int write_atomic(const char *path, const void *data, size_t len, unsigned mode, int excl,
                        int *keep_fd)
{
    static atomic_uint seq;
    char tmp[TC_PATH_MAX + 48];
    sweep_stale_tmp(path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return tally_seterr(TALLY_EIO, "%s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int ok = done == len && fsync(fd) == 0;
    if (!keep_fd) {
        ok = close(fd) == 0 && ok;
        fd = -1;
    }
    if (ok) {
        if (excl) {
            ok = link(tmp, path) == 0;
            int e = errno;
            unlink(tmp);
            if (!ok && e == EEXIST) {
                if (fd >= 0)
                    close(fd);
                return TALLY_ECONFLICT;
            }
            errno = e;
        } else {
            ok = rename(tmp, path) == 0;
        }
    }
    if (!ok) {
        int e = errno;
        unlink(tmp);
        if (fd >= 0)
            close(fd);
        return tally_seterr(e == ENOSPC ? TALLY_ENOSPC : TALLY_EIO, "writing %s: %s", path,
                            strerror(e));
    }
    if (fsync_dir_of(path) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return tally_seterr(TALLY_EIO, "fsync of the directory of %s: %s", path, strerror(e));
    }
    if (keep_fd)
        *keep_fd = fd;
    return 0;
}

int tc_write_atomic(const char *path, const void *data, size_t len, unsigned mode, int excl)
{
    return write_atomic(path, data, len, mode, excl, NULL);
}

int tc_write_atomic_keep(const char *path, const void *data, size_t len, unsigned mode,
                         int *keep_fd)
{
    return write_atomic(path, data, len, mode, 0, keep_fd);
}

void tc_escape_name(char *out, size_t cap, const char *s)
{
    static const char hx[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 4 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        int keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || (ch == '.' && i > 0);
        if (keep) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hx[ch >> 4];
            out[o++] = hx[ch & 15];
        }
    }
    out[o] = '\0';
}

int tc_lock(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

void tc_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static void put_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[TC_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tc_write_atomic(path, data ? data : "", data ? len : 0, 0600, 0);
}

void tc_save_evidence(tally_client *c, const char *ledger_id, const char *why,
                      const char *trusted, size_t trusted_len, const char *offending,
                      const char *body, size_t body_len, const char *body2, size_t body2_len)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", why); /* why may be tally_errmsg() itself */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[64], dir[TC_PATH_MAX], id[80];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    tc_escape_name(id, sizeof id, ledger_id && *ledger_id ? ledger_id : c->ledger);
    int made = 0;
    for (int attempt = 0; attempt < 100 && !made; attempt++) {
        snprintf(dir, sizeof dir, "%s/evidence/%s.%09ldZ-%s%s%.0d", c->state_dir, stamp,
                 (long)ts.tv_nsec, id, attempt ? "-" : "", attempt);
        char parent[TC_PATH_MAX];
        snprintf(parent, sizeof parent, "%s/evidence", c->state_dir);
        if (tc_mkdirs(parent, 0700) != 0)
            break;
        made = mkdir(dir, 0700) == 0;
        if (!made && errno != EEXIST)
            break;
    }
    if (!made) {
        tally_seterr(TALLY_EBADPROOF, "%s (could not save evidence)", msg);
        return;
    }
    char text[1024];
    int n = snprintf(text, sizeof text, "%s\n", msg);
    put_file(dir, "reason.txt", text, (size_t)n);
    n = snprintf(text, sizeof text, "%s%s\nledger %s id %s\nserver key %s\n", c->url,
                 c->last_request, c->ledger, ledger_id ? ledger_id : "?", c->vkey);
    put_file(dir, "request.txt", text, (size_t)n);
    if (trusted)
        put_file(dir, "trusted.note", trusted, trusted_len);
    if (offending)
        put_file(dir, "offending.note", offending, strlen(offending));
    put_file(dir, "response.body", body, body_len);
    if (body2)
        put_file(dir, "response2.body", body2, body2_len);
    fsync_dir_of(dir);
    tally_seterr(TALLY_EBADPROOF, "%s (evidence saved in %s)", msg, dir);
}

/* ---- the server key ---- */

static int key_dir_init(tally_client *c)
{
    char esc[NOTE_NAME_MAX * 3 + 1];
    tc_escape_name(esc, sizeof esc, c->key_name);
    snprintf(c->key_dir, sizeof c->key_dir, "%s/trust/%s+%08" PRIx32, c->state_dir, esc,
             note_key_id(c->key_name, c->pub));
    char names[TC_PATH_MAX + 8], vk[TC_PATH_MAX + 8], line[NOTE_VKEY_MAX + 2];
    snprintf(names, sizeof names, "%s/names", c->key_dir);
    if (tc_mkdirs(names, 0700) != 0)
        return tally_seterr(TALLY_EIO, "cannot create %s: %s", names, strerror(errno));
    /* The directory is named by name and a 32-bit id only: it records the
    ** whole key, and refuses to serve another key with a colliding id. */
    snprintf(vk, sizeof vk, "%s/vkey", c->key_dir);
    int n = snprintf(line, sizeof line, "%s\n", c->vkey);
    int rc = tc_write_atomic(vk, line, (size_t)n, 0600, 1);
    if (rc != 0 && rc != TALLY_ECONFLICT)
        return rc;
    char *have = NULL;
    size_t hl;
    if ((rc = tc_read_file(vk, &have, &hl, NOTE_VKEY_MAX + 2)) != 0)
        return rc;
    int same = hl == (size_t)n && memcmp(have, line, hl) == 0;
    free(have);
    if (!same)
        return tally_seterr(TALLY_ECORRUPT, "%s belongs to another key than %s", c->key_dir,
                            c->vkey);
    return 0;
}

static int set_key(tally_client *c, const char *vkey)
{
    size_t n = strcspn(vkey, "\r\n");
    if (n == 0 || n >= sizeof c->vkey)
        return tally_seterr(TALLY_EINVAL, "bad server key");
    memcpy(c->vkey, vkey, n);
    c->vkey[n] = '\0';
    if (note_vkey_parse(c->vkey, c->key_name, c->pub) != 0)
        return tally_seterr(TALLY_EINVAL, "not a verifier key: '%s'", c->vkey);
    return 0;
}

/* First contact: GET /v1/server. */
static int fetch_server_key(tally_client *c)
{
    int rc = tc_http(c, "GET", "/v1/server", NULL, 0, 0);
    if (rc != 0)
        return rc;
    json_error_t err;
    json_t *j = json_loadb(c->body, c->body_len, 0, &err);
    const char *vkey = json_string_value(json_object_get(j, "vkey"));
    const char *name = json_string_value(json_object_get(j, "name"));
    rc = vkey ? set_key(c, vkey) : tally_seterr(TALLY_EIO, "GET /v1/server: no vkey");
    if (rc == 0 && name && strcmp(name, c->key_name) != 0)
        rc = tally_seterr(TALLY_EBADPROOF, "server name '%s' differs from its key's name '%s'",
                          name, c->key_name);
    json_decref(j);
    return rc;
}

int tc_pin_server(tally_client *c, const char *explicit_vkey)
{
    char dir[TC_PATH_MAX], path[TC_PATH_MAX * 2], line[NOTE_VKEY_MAX + 2];
    snprintf(dir, sizeof dir, "%s/servers", c->state_dir);
    if (tc_mkdirs(dir, 0700) != 0)
        return tally_seterr(TALLY_EIO, "cannot create %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/%s", dir, c->url_esc);
    char *pinned = NULL;
    size_t plen = 0;
    int rc = tc_read_file(path, &pinned, &plen, NOTE_VKEY_MAX + 2);
    if (rc != 0 && rc != TALLY_ENOTFOUND)
        return rc;
    if (explicit_vkey) {
        if ((rc = set_key(c, explicit_vkey)) != 0) {
            free(pinned);
            return rc;
        }
        if (pinned && strcmp(pinned, c->vkey) != 0 &&
            !(strncmp(pinned, c->vkey, strlen(c->vkey)) == 0 &&
              pinned[strlen(c->vkey)] == '\n')) {
            free(pinned);
            return tally_seterr(TALLY_EBADPROOF, "%s is pinned to another key (see %s); "
                                "remove that file to pin %s", c->url, path, c->vkey);
        }
    } else if (pinned) {
        rc = set_key(c, pinned);
        if (rc != 0) {
            free(pinned);
            return tally_seterr(TALLY_ECORRUPT, "pin file %s does not hold a verifier key",
                                path);
        }
    } else if ((rc = fetch_server_key(c)) != 0) {
        return rc;
    }
    if (!pinned) {
        int n = snprintf(line, sizeof line, "%s\n", c->vkey);
        rc = tc_write_atomic(path, line, (size_t)n, 0600, 1);
        if (rc == TALLY_ECONFLICT) /* another process pinned it meanwhile: use that */
            return tc_pin_server(c, explicit_vkey ? explicit_vkey : NULL);
        if (rc != 0)
            return rc;
    }
    free(pinned);
    return key_dir_init(c);
}
