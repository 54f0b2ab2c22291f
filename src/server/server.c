/*
** server.c — tallyd's life cycle: open the data directory (first start
** creates the keys, the system ledger and the admin user), start serving,
** stop and close every ledger.
**
** Invariants:
**   (1) there is no default password: the admin password comes from
**       TALLY_ADMIN_PASSWORD or is generated and handed to the caller once;
**   (2) tallyd_close stops the HTTP daemon (joining every connection thread)
**       before any ledger is closed, so no handler uses a closed handle.
*/
#include <errno.h>
#include <microhttpd.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server.h"

#define PEM_BYTES_MAX (1u << 20)
#define ADMIN_PASSWORD_BYTES 12

/* Reads a PEM file (NUL-terminated, malloc'd) or NULL. */
static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = malloc(PEM_BYTES_MAX + 1);
    size_t n = buf ? fread(buf, 1, PEM_BYTES_MAX, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n == PEM_BYTES_MAX) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int load_tls(tallyd *s, char *err, size_t err_len)
{
    if (!s->cfg.tls_cert_path && !s->cfg.tls_key_path)
        return 0;
    if (!s->cfg.tls_cert_path || !s->cfg.tls_key_path) {
        snprintf(err, err_len, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, err_len, "this libmicrohttpd has no TLS support: run tallyd on "
                               "127.0.0.1 behind a TLS terminator (e.g. nginx, haproxy, stunnel)");
        return -1;
    }
    if (!(s->tls_cert = read_pem(s->cfg.tls_cert_path)) ||
        !(s->tls_key = read_pem(s->cfg.tls_key_path))) {
        snprintf(err, err_len, "cannot read %s", s->tls_cert ? s->cfg.tls_key_path
                                                            : s->cfg.tls_cert_path);
        return -1;
    }
    return 0;
}

static int init_tables(tallyd *s)
{
    pthread_mutex_init(&s->admin_mu, NULL);
    pthread_rwlock_init(&s->reg_lock, NULL);
    pthread_rwlock_init(&s->auth_lock, NULL);
    pthread_rwlock_init(&s->token_lock, NULL);
    pthread_mutex_init(&s->rate_mu, NULL);
    pthread_mutex_init(&s->reaper_mu, NULL);
    srv_cond_init_mono(&s->reaper_cond);
    atomic_init(&s->ledgers_open, 0);
    return strmap_init(&s->ledgers, SRV_LEDGERS_MAX) < 0 ||
                   strmap_init(&s->users, SRV_USERS_MAX) < 0 ||
                   strmap_init(&s->roles, SRV_ROLES_MAX) < 0 ||
                   strmap_init(&s->tokens, SRV_TOKENS_MAX) < 0 ||
                   strmap_init(&s->rate, SRV_RATE_ENTRIES_MAX) < 0
               ? -1
               : 0;
}

/* First start (no user yet): creates admin. Returns 0 or -1 (err). */
static int first_start(tallyd *s, char *pw_out, size_t pw_out_len, char *err, size_t err_len)
{
    const char *env = getenv("TALLY_ADMIN_PASSWORD");
    char gen[2 * ADMIN_PASSWORD_BYTES + 1];
    if (env && *env) {
        if (strlen(env) > SRV_PASSWORD_LEN_MAX) {
            snprintf(err, err_len, "TALLY_ADMIN_PASSWORD is too long");
            return -1;
        }
    } else {
        uint8_t raw[ADMIN_PASSWORD_BYTES];
        if (RAND_bytes(raw, sizeof raw) != 1) {
            snprintf(err, err_len, "no random bytes for a password");
            return -1;
        }
        srv_hex(gen, raw, sizeof raw);
        snprintf(pw_out, pw_out_len, "%s", gen);
    }
    return auth_init_admin(s, env && *env ? env : gen, err, err_len);
}

int tallyd_open(tallyd **out, const tallyd_config *cfg, char *admin_password,
                size_t admin_password_len, char *err, size_t err_len)
{
    *out = NULL;
    admin_password[0] = '\0';
    tallyd *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    s->cfg = *cfg;
    s->fd_reserve[0] = s->fd_reserve[1] = -1;
    if (strlen(cfg->data_dir) >= sizeof s->data_dir - 64) {
        snprintf(err, err_len, "data directory path too long");
        free(s);
        return -1;
    }
    snprintf(s->data_dir, sizeof s->data_dir, "%s", cfg->data_dir);
    int ok = 0;
    if (mkdir(s->data_dir, 0700) < 0 && errno != EEXIST)
        snprintf(err, err_len, "cannot create %s: %s", s->data_dir, strerror(errno));
    else if (init_tables(s) < 0)
        snprintf(err, err_len, "out of memory");
    else if (load_tls(s, err, err_len) == 0 && keys_load_or_create(s, err, err_len) == 0 &&
             reg_open(s, err, err_len) == 0 && auth_open(s, err, err_len) == 0)
        ok = s->users.count > 0 ||
             first_start(s, admin_password, admin_password_len, err, err_len) == 0;
    if (!ok) {
        tallyd_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

int tallyd_start(tallyd *s, char *err, size_t err_len)
{
    if (reg_reaper_start(s) != 0) {
        snprintf(err, err_len, "cannot start the idle-ledger thread");
        return -1;
    }
    return http_start(s, err, err_len);
}

void tallyd_close(tallyd *s)
{
    if (!s)
        return;
    http_stop(s);
    reg_reaper_stop(s); /* before the handles it could close go */
    reg_close_all(s);
    auth_close(s);
    free(s->tls_cert);
    free(s->tls_key);
    OPENSSL_cleanse(s->priv, sizeof s->priv);
    free(s);
}
