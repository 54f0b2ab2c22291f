/*
** client_int.h — internals of the verifying client shared by its files:
**   client_http.c    the transport (libcurl, one kept-alive easy handle per
**             client), status -> TALLY_E* mapping, URL building
**   client_store.c   the state directory: pins, trusted states, tokens, evidence;
**             atomic writes (temp, fsync, rename or link, fsync dir), locks
**   client.c  the public API (include/tally_client.h)
**   client_verify.c  the pure checks (verify.h)
*/
#ifndef TALLY_CLIENT_INT_H
#define TALLY_CLIENT_INT_H
#include <stddef.h>
#include <stdint.h>

#include "client/verify.h"
#include "tally_client.h"

#define TC_BODY_MAX ((size_t)512 << 20) /* largest response accepted */
#define TC_PATH_MAX 4096

/* The trusted state of one ledger as this handle last read or wrote it
** (client.c, "Caches"). fd stays open on that very file while cached, so its
** inode number cannot be given to another file meanwhile. */
typedef struct tc_state_cache {
    char id[33];                /* ledger id; "" when empty */
    int fd;                     /* -1 when empty */
    uint64_t dev, ino, fsize;   /* identity of the file read (fstat of fd) */
    int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
    char *note;                 /* its bytes (NUL-terminated), verified on read */
    size_t note_len;
    uint64_t size;              /* size and root of that note */
    uint8_t root[32];
} tc_state_cache;

struct tally_client {
    void *curl;                 /* CURL *, options set once (client_http.c) */
    void *multi;                /* CURLM * it runs in (keeps its connection) */
    void *hdrs[2][3];           /* struct curl_slist *, [auth][0 no body, 1 JSON body,
                                   2 JSON body answered with binary bundles]; built once */
    int accept_bundles;         /* the next tc_http asks for binary bundles (reset by it) */
    char *hdrs_token;           /* the token hdrs[1][*] hold (NULL: not built) */
    char *url_buf;              /* scratch for the request URL */
    size_t url_cap;
    char *url;                  /* without trailing '/' */
    char *url_esc;              /* url escaped for a file name */
    char *state_dir;
    char ledger[65];
    char *token;
    char *user, *password;      /* kept for re-login after a 401; NULL if not given */
    long timeout_ms;
    long clock_skew_ms;         /* < 0: tx times of verified writes not checked */
    /* The pinned server key. */
    char vkey[NOTE_VKEY_MAX];
    char key_name[NOTE_NAME_MAX + 1];
    uint8_t pub[32];
    char key_dir[TC_PATH_MAX];  /* <state>/trust/<esc key name>+<key id hex> */
    /* The last response. */
    int status;
    char err_code[64];
    char *body;                 /* allocated once by tc_http_init, reused */
    size_t body_len, body_cap;
    char last_request[512];     /* "GET /v1/..." for evidence */
    char curl_err[256];         /* CURLOPT_ERRORBUFFER: libcurl's own reason */
    /* Caches (client.c, "Caches"). */
    char pin_name[65], pin_id[33]; /* the last ledger name -> pinned id looked up */
    tc_state_cache sc;
};

/* ---- client_http.c ---- */
/* A growing string. */
typedef struct tc_buf {
    char *p;
    size_t len, cap;
    int oom;
} tc_buf;
void tc_buf_add(tc_buf *b, const char *s, size_t n);
void tc_buf_puts(tc_buf *b, const char *s);
void tc_buf_printf(tc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* URL-escaped s[0..n). */
void tc_buf_escape(tc_buf *b, const char *s, size_t n);
/* "&name=<escaped>" for UTF-8 bytes, else "&name_hex=<hex>" (sep: '?' or '&'). */
void tc_buf_query_bytes(tc_buf *b, char sep, const char *name, const void *p, size_t n);

int tc_utf8_valid(const void *p, size_t n);

int tc_http_init(tally_client *c);
void tc_http_free(tally_client *c);
/* Performs method path (path includes the query) with an optional JSON body;
** auth: send the bearer token (and re-login once on 401 if credentials were
** given). The response is in c->body / c->body_len (NUL-terminated), its
** status in c->status. Returns 0 for 2xx, else the mapped TALLY_E* code
** with the server's message in tally_errmsg(). */
int tc_http(tally_client *c, const char *method, const char *path, const char *body,
            size_t body_len, int auth);
/* POST /v1/login and keep the token. */
int tc_login(tally_client *c, const char *user, const char *password);

/* ---- client_store.c ---- */
/* mkdir -p with mode for every created component. 0 or -1. */
int tc_mkdirs(const char *path, unsigned mode);
/* Reads a whole file (at most max bytes) into a malloc'ed NUL-terminated
** buffer. Returns 0, TALLY_ENOTFOUND, TALLY_ETOOBIG, TALLY_EIO, TALLY_ENOMEM. */
int tc_read_file(const char *path, char **out, size_t *out_len, size_t max);
/* Atomic write: temp file, fsync, rename (or, with excl, link: fails with
** TALLY_ECONFLICT if path exists), fsync of the directory. */
int tc_write_atomic(const char *path, const void *data, size_t len, unsigned mode, int excl);
/* The same with rename, but on success *keep_fd is the written file, left
** open (the caller closes it): the file now at path. */
int tc_write_atomic_keep(const char *path, const void *data, size_t len, unsigned mode,
                         int *keep_fd);
/* Escapes s for use as one file name: [A-Za-z0-9._-] kept, others %XX;
** a leading '.' is escaped too. */
void tc_escape_name(char *out, size_t cap, const char *s);
/* Exclusive flock on path (created 0600). Returns the fd or -1. */
int tc_lock(const char *path);
void tc_unlock(int fd);
/* Saves evidence of a failed verification to
** <state>/evidence/<UTC time>-<ledger id>/: reason.txt, request.txt,
** trusted.note (if any), offending.note (if any), response.body and, if
** given, response2.body. Best effort; the directory's path is appended to
** the thread's error message. */
void tc_save_evidence(tally_client *c, const char *ledger_id, const char *why,
                      const char *trusted, size_t trusted_len, const char *offending,
                      const char *body, size_t body_len, const char *body2, size_t body2_len);

/* The pinned server key for c->url (from opts or the pin file or first
** contact). Returns 0 or an error. */
int tc_pin_server(tally_client *c, const char *explicit_vkey);

#endif
