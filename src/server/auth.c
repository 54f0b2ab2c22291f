/*
** auth.c — users, roles, passwords, tokens and the login rate limit.
**
** Users and roles live in the system ledger (docs/API.md): "user/<name>"
** holds {"name","scrypt":{"salt","hash","N","r","p"},"created"} and
** "role/<user>/<ledger>" the role name ("" when revoked). They are loaded at
** start and changed only by auth_grant / auth_init_admin, which commit first
** and then update the tables. Tokens are 32 random bytes (hex) with an
** expiry. A login commits "session/<expiry, 16 hex>/<SHA-256(token), hex>"
** = {"user","expires"} (the login's record, and what a restart reloads: the
** sessions not yet expired, found by scanning after "session/<now>"); a
** logout commits its deletion. Only the token's hash is kept, on disk and
** in memory: the table is keyed by it.
**
** Invariants:
**   (1) a srv_user is never freed before shutdown (tokens point at it);
**   (2) every login attempt counts as a failure until it succeeds, so
**       concurrent guesses cannot exceed SRV_LOGIN_FAILS_MAX per window;
**   (3) a user's effective role on L is max(role on L, role on "*");
**   (4) once some user holds admin on "*", at least one always does: a
**       change that would take that role from its last holder is refused
**       (409 last_admin). Roles change only through auth_grant (there is no
**       user deletion or disabling), under admin_mu, so the count it checks
**       cannot move before its own change is applied.
*/
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "util/err.h"
#include "util/sha256.h"

typedef struct srv_token {
    const srv_user *user;
    uint64_t expires_ns;
} srv_token;

#define TOKEN_KEY_LEN 64 /* hex of SHA-256(token): the key of s->tokens */
#define SESSION_KEY_MAX (8 + 16 + 1 + TOKEN_KEY_LEN + 1)

/* hex(SHA-256(token text)). */
static void token_key(const char *token, char out[TOKEN_KEY_LEN + 1])
{
    uint8_t h[32];
    tally_sha256(token, strlen(token), h);
    srv_hex(out, h, sizeof h);
}

/* "session/<expires_ns, 16 hex>/<token key>"; returns its length. */
static int session_key(char out[SESSION_KEY_MAX + 1], uint64_t expires_ns, const char *tkey)
{
    return snprintf(out, SESSION_KEY_MAX + 1, "session/%016llx/%s", (unsigned long long)expires_ns,
                    tkey);
}

typedef struct srv_rate {
    uint64_t fail_ns[SRV_LOGIN_FAILS_MAX]; /* ring of the latest failures */
    unsigned next;
} srv_rate;

static const char *const role_names[] = { "", "reader", "auditor", "writer", "admin" };

int role_parse(const char *name)
{
    if (strcmp(name, "none") == 0)
        return ROLE_NONE;
    for (int i = 0; i <= ROLE_ADMIN; i++)
        if (strcmp(name, role_names[i]) == 0)
            return i;
    return -1;
}

const char *role_name(int role)
{
    return role >= 0 && role <= ROLE_ADMIN ? role_names[role] : "";
}

/* Rank for comparisons: auditor and reader have the same rights. */
static int role_rank(int role)
{
    return role == ROLE_AUDITOR ? ROLE_READER : role;
}

int role_allows(int have, int need)
{
    return role_rank(have) >= role_rank(need);
}

/* scrypt(password, salt) with the user's parameters. Returns 0 or -1. */
static int hash_password(const char *pw, const uint8_t salt[SRV_SALT_BYTES], uint64_t n,
                         uint64_t r, uint64_t p, uint8_t out[SRV_HASH_BYTES])
{
    return EVP_PBE_scrypt(pw, strlen(pw), salt, SRV_SALT_BYTES, n, r, p,
                          SRV_SCRYPT_MAXMEM_BYTES, out, SRV_HASH_BYTES) == 1 ? 0 : -1;
}

/* ---- Loading from the system ledger ---- */
static int hex_field(json_t *o, const char *name, uint8_t *out, size_t n)
{
    const char *h = srv_json_text(o, name);
    return h && strlen(h) == 2 * n && srv_unhex(h, 2 * n, out) == 0 ? 0 : -1;
}

/* Parses a user record into a new srv_user, or NULL. */
static srv_user *user_parse(const void *p, size_t len)
{
    json_t *j = json_loadb(p, len, 0, NULL);
    json_t *sc = json_object_get(j, "scrypt");
    const char *name = srv_json_text(j, "name");
    const char *created = srv_json_text(j, "created");
    srv_user *u = calloc(1, sizeof *u);
    int64_t cns = 0;
    int ok = u && name && srv_name_valid(name) && sc &&
             hex_field(sc, "salt", u->salt, SRV_SALT_BYTES) == 0 &&
             hex_field(sc, "hash", u->hash, SRV_HASH_BYTES) == 0;
    if (ok) {
        snprintf(u->name, sizeof u->name, "%s", name);
        u->scrypt_n = (uint64_t)json_integer_value(json_object_get(sc, "N"));
        u->scrypt_r = (uint64_t)json_integer_value(json_object_get(sc, "r"));
        u->scrypt_p = (uint64_t)json_integer_value(json_object_get(sc, "p"));
        if (created && srv_parse_time(created, &cns) == 0)
            u->created_ns = (uint64_t)cns;
        ok = u->scrypt_n >= 2 && u->scrypt_r >= 1 && u->scrypt_p >= 1;
    }
    json_decref(j);
    if (!ok) {
        free(u);
        return NULL;
    }
    return u;
}

typedef struct load_ctx {
    tallyd *s;
    int rc;
} load_ctx;

static int load_user(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    load_ctx *lc = ctx;
    srv_user *u = user_parse(v->value, v->value_len);
    if (!u || strmap_put(&lc->s->users, u->name, u) < 0) {
        free(u);
        lc->rc = TALLY_ECORRUPT;
        return 1;
    }
    return 0;
}

/* Sets roles["user/ledger"] (deletes it for ROLE_NONE). Returns 0 or -1. */
static int role_set(tallyd *s, const char *user_ledger, int role)
{
    if (role == ROLE_NONE) {
        strmap_del(&s->roles, user_ledger);
        return 0;
    }
    return strmap_put(&s->roles, user_ledger, (void *)(uintptr_t)role);
}

static int load_role(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    load_ctx *lc = ctx;
    char k[2 * SRV_NAME_LEN_MAX + 8], rn[16];
    if (key_len <= 5 || key_len - 5 >= sizeof k || v->value_len >= sizeof rn) {
        lc->rc = TALLY_ECORRUPT;
        return 1;
    }
    memcpy(k, (const char *)key + 5, key_len - 5); /* drop "role/" */
    k[key_len - 5] = '\0';
    memcpy(rn, v->value, v->value_len);
    rn[v->value_len] = '\0';
    int role = role_parse(rn);
    if (role < 0 || role_set(lc->s, k, role) < 0) {
        lc->rc = TALLY_ECORRUPT;
        return 1;
    }
    return 0;
}

/* A session not yet expired: back into the token table (users are loaded). */
static int load_session(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    load_ctx *lc = ctx;
    char k[SESSION_KEY_MAX + 1];
    json_error_t jerr;
    json_t *j = json_loadb(v->value, v->value_len, 0, &jerr);
    const char *user = srv_json_text(j, "user");
    unsigned long long exp;
    int n = -1;
    if (key_len == SESSION_KEY_MAX - 1 && user) {
        memcpy(k, key, key_len);
        k[key_len] = '\0';
        sscanf(k, "session/%16llx/%n", &exp, &n);
    }
    srv_user *u = user ? strmap_get(&lc->s->users, user) : NULL;
    srv_token *t = u && n == 8 + 17 ? malloc(sizeof *t) : NULL;
    json_decref(j);
    if (!t) { /* a session of an unknown user or a malformed record */
        lc->rc = TALLY_ECORRUPT;
        return 1;
    }
    t->user = u;
    t->expires_ns = exp;
    if (exp > srv_now_ns() && strmap_put(&lc->s->tokens, k + n, t) == 0)
        return 0;
    free(t);
    return 0;
}

/* Number of users holding admin on "*". Under auth_lock (read or write).
** Walks the role table: only a change that would take a global admin's role
** away pays for it (auth_grant). */
static size_t global_admins_locked(const tallyd *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->roles.cap; i++) {
        const char *k = s->roles.slots[i].key;
        size_t len = k ? strlen(k) : 0;
        n += len > 2 && strcmp(k + len - 2, "/*") == 0 &&
             (int)(uintptr_t)s->roles.slots[i].val == ROLE_ADMIN;
    }
    return n;
}

int auth_open(tallyd *s, char *err, size_t err_len)
{
    load_ctx lc = { s, 0 };
    char after[SESSION_KEY_MAX + 1];
    int after_len = snprintf(after, sizeof after, "session/%016llx", (unsigned long long)srv_now_ns());
    int rc = tally_scan(s->sys, TALLY_NS_SYSTEM, "user/", 5, NULL, 0, 0, 0, load_user, &lc);
    if (rc == TALLY_OK && lc.rc == 0)
        rc = tally_scan(s->sys, TALLY_NS_SYSTEM, "role/", 5, NULL, 0, 0, 0, load_role, &lc);
    if (rc == TALLY_OK && lc.rc == 0) /* keys sort by expiry: only the live ones */
        rc = tally_scan(s->sys, TALLY_NS_SYSTEM, "session/", 8, after, (size_t)after_len, 0,
                        SRV_TOKENS_MAX, load_session, &lc);
    if (rc == TALLY_OK)
        rc = lc.rc;
    if (rc != TALLY_OK) {
        snprintf(err, err_len, "cannot load users, roles and sessions: %s", tally_strerror(rc));
        return -1;
    }
    if (s->users.count > 0 && global_admins_locked(s) == 0) /* from before invariant (4) */
        fprintf(stderr, "tallyd: warning: no user has admin on \"*\": nobody can create "
                        "ledgers or grant roles on \"*\"\n");
    return 0;
}

/* ---- Creating users and granting roles ---- */
/* A new user with a fresh salt and the password's hash, or NULL. */
static srv_user *user_new(const char *name, const char *password)
{
    srv_user *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    snprintf(u->name, sizeof u->name, "%s", name);
    u->scrypt_n = SRV_SCRYPT_N;
    u->scrypt_r = SRV_SCRYPT_R;
    u->scrypt_p = SRV_SCRYPT_P;
    u->created_ns = srv_now_ns();
    if (RAND_bytes(u->salt, SRV_SALT_BYTES) != 1 ||
        hash_password(password, u->salt, u->scrypt_n, u->scrypt_r, u->scrypt_p, u->hash) < 0) {
        free(u);
        return NULL;
    }
    return u;
}

/* The JSON text of a user record (malloc'd), or NULL. */
static char *user_record(const srv_user *u)
{
    char salt[2 * SRV_SALT_BYTES + 1], hash[2 * SRV_HASH_BYTES + 1], ts[SRV_TIME_BUF];
    srv_hex(salt, u->salt, SRV_SALT_BYTES);
    srv_hex(hash, u->hash, SRV_HASH_BYTES);
    srv_fmt_time(ts, u->created_ns);
    json_t *j = json_pack("{s:s,s:{s:s,s:s,s:I,s:I,s:I},s:s}", "name", u->name, "scrypt",
                          "salt", salt, "hash", hash, "N", (json_int_t)u->scrypt_n, "r",
                          (json_int_t)u->scrypt_r, "p", (json_int_t)u->scrypt_p, "created", ts);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

/* Commits user (if new_user) and role, then applies them. Under admin_mu.
** *kept is set once new_user may be referenced (committed): never free it then. */
static int grant_locked(tallyd *s, const char *actor, srv_user *new_user, const char *name,
                        int role, const char *ledger, int *kept)
{
    char rkey[2 * SRV_NAME_LEN_MAX + 16], ukey[SRV_NAME_LEN_MAX + 8];
    const char *rname = role_name(role);
    int rlen = snprintf(rkey, sizeof rkey, "role/%s/%s", name, ledger);
    int ulen = snprintf(ukey, sizeof ukey, "user/%s", name);
    tally_entry e[2];
    size_t n = 0;
    char *rec = NULL;
    if (new_user) {
        if (!(rec = user_record(new_user)))
            return TALLY_ENOMEM;
        e[n++] = (tally_entry){ .ns = TALLY_NS_SYSTEM, .cond = TALLY_COND_ABSENT, .key = ukey,
                                .key_len = (size_t)ulen, .value = rec,
                                .value_len = strlen(rec) };
    }
    e[n++] = (tally_entry){ .ns = TALLY_NS_SYSTEM, .key = rkey, .key_len = (size_t)rlen,
                            .value = rname, .value_len = strlen(rname) };
    int rc = sys_commit(s, actor, new_user ? "create_user" : "grant_role", e, n);
    free(rec);
    if (rc != TALLY_OK)
        return rc;
    *kept = 1;
    pthread_rwlock_wrlock(&s->auth_lock);
    if ((new_user && strmap_put(&s->users, new_user->name, new_user) < 0) ||
        role_set(s, rkey + 5, role) < 0)
        rc = TALLY_ENOMEM; /* committed: the next start loads it */
    pthread_rwlock_unlock(&s->auth_lock);
    return rc;
}

int auth_grant(tallyd *s, srv_err *e, const char *actor, const char *name,
               const char *password, int role, const char *ledger)
{
    srv_user *nu = NULL;
    char gkey[SRV_NAME_LEN_MAX + 3];
    if (password && !(nu = user_new(name, password)))
        return srv_fail(e, 500, "internal", "cannot hash the password");
    snprintf(gkey, sizeof gkey, "%s/*", name);
    pthread_mutex_lock(&s->admin_mu); /* no other change until this one is applied */
    pthread_rwlock_rdlock(&s->auth_lock);
    int exists = strmap_get(&s->users, name) != NULL;
    size_t count = s->users.count;
    /* invariant (4): taking admin on "*" away from its last holder is refused */
    int last_admin = strcmp(ledger, "*") == 0 && role != ROLE_ADMIN &&
                     (int)(uintptr_t)strmap_get(&s->roles, gkey) == ROLE_ADMIN &&
                     global_admins_locked(s) == 1;
    pthread_rwlock_unlock(&s->auth_lock);
    int rc = TALLY_OK, st = 0, kept = 0;
    if (exists && nu)
        st = srv_fail(e, 409, "conflict", "user '%s' already exists", name);
    else if (!exists && !nu)
        st = srv_fail(e, 400, "bad_request", "a password is required for the new user '%s'", name);
    else if (!exists && count >= SRV_USERS_MAX)
        st = srv_fail(e, 413, "too_large", "too many users");
    else if (last_admin)
        st = srv_fail(e, 409, "last_admin",
                      "'%s' is the only user with admin on \"*\": grant admin on \"*\" to "
                      "another user first", name);
    else if ((rc = grant_locked(s, actor, nu, name, role, ledger, &kept)) != TALLY_OK)
        st = srv_fail_engine(e, rc);
    pthread_mutex_unlock(&s->admin_mu);
    if (!kept)
        free(nu); /* not committed, not in the table */
    return st;
}

int auth_init_admin(tallyd *s, const char *password, char *err, size_t err_len)
{
    srv_err e;
    memset(&e, 0, sizeof e);
    if (auth_grant(s, &e, "tallyd", "admin", password, ROLE_ADMIN, "*") != 0) {
        snprintf(err, err_len, "cannot create the admin user: %s", e.msg);
        return -1;
    }
    return 0;
}

/* ---- Roles ---- */
int auth_role(tallyd *s, const char *user, const char *ledger)
{
    char k[2 * SRV_NAME_LEN_MAX + 8];
    snprintf(k, sizeof k, "%s/%s", user, ledger);
    pthread_rwlock_rdlock(&s->auth_lock);
    int role = (int)(uintptr_t)strmap_get(&s->roles, k);
    snprintf(k, sizeof k, "%s/*", user);
    int global = (int)(uintptr_t)strmap_get(&s->roles, k);
    pthread_rwlock_unlock(&s->auth_lock);
    return role_rank(global) > role_rank(role) ? global : role;
}

/* ---- Tokens ---- */
const srv_user *auth_token(tallyd *s, const char *token)
{
    if (!token || strlen(token) != SRV_TOKEN_HEX_LEN)
        return NULL;
    char key[TOKEN_KEY_LEN + 1];
    token_key(token, key);
    pthread_rwlock_rdlock(&s->token_lock);
    const srv_token *t = strmap_get(&s->tokens, key);
    const srv_user *u = t && t->expires_ns > srv_now_ns() ? t->user : NULL;
    pthread_rwlock_unlock(&s->token_lock);
    return u;
}

/* Drops expired tokens. Under token_lock (write). Bounded by tokens.cap. */
static void tokens_sweep(tallyd *s, uint64_t now_ns)
{
    size_t n = 0;
    char **dead = malloc(s->tokens.count * sizeof *dead + 1);
    for (size_t i = 0; dead && i < s->tokens.cap; i++) {
        strmap_slot *sl = &s->tokens.slots[i];
        if (sl->key && ((srv_token *)sl->val)->expires_ns <= now_ns)
            dead[n++] = strdup(sl->key);
    }
    for (size_t i = 0; i < n; i++) {
        if (dead[i])
            free(strmap_del(&s->tokens, dead[i]));
        free(dead[i]);
    }
    free(dead);
}

/* Issues a token for u: committed to the system ledger (durable: it
** survives a restart), then usable. Returns 0 or an HTTP status (e). */
static int token_issue(tallyd *s, srv_err *e, const srv_user *u, char out[SRV_TOKEN_HEX_LEN + 1],
                       uint64_t *expires_ns)
{
    uint8_t raw[SRV_TOKEN_HEX_LEN / 2];
    char tkey[TOKEN_KEY_LEN + 1], skey[SESSION_KEY_MAX + 1], ts[SRV_TIME_BUF];
    srv_token *t = malloc(sizeof *t);
    if (!t || RAND_bytes(raw, sizeof raw) != 1) {
        free(t);
        return srv_fail(e, 500, "internal", "no token");
    }
    srv_hex(out, raw, sizeof raw);
    token_key(out, tkey);
    uint64_t now = srv_now_ns();
    t->user = u;
    t->expires_ns = *expires_ns = now + s->cfg.token_ttl_s * 1000000000ull;
    /* Reserve the slot before committing, so a durable session always fits. */
    pthread_rwlock_wrlock(&s->token_lock);
    if (s->tokens.count + s->tokens_pending >= SRV_TOKENS_MAX || (s->tokens.count & 1023) == 1023)
        tokens_sweep(s, now);
    int full = s->tokens.count + s->tokens_pending >= SRV_TOKENS_MAX;
    if (!full)
        s->tokens_pending++;
    pthread_rwlock_unlock(&s->token_lock);
    if (full) {
        free(t);
        return srv_fail(e, 503, "unavailable", "%u sessions are live; try later", SRV_TOKENS_MAX);
    }
    srv_fmt_time(ts, t->expires_ns);
    json_t *v = json_pack("{s:s,s:s}", "user", u->name, "expires", ts);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    int klen = session_key(skey, t->expires_ns, tkey);
    tally_entry en = { .ns = TALLY_NS_SYSTEM, .key = skey, .key_len = (size_t)klen,
                       .value = text, .value_len = text ? strlen(text) : 0 };
    int rc = text ? sys_commit(s, u->name, "login", &en, 1) : TALLY_ENOMEM;
    free(text);
    pthread_rwlock_wrlock(&s->token_lock);
    s->tokens_pending--;
    if (rc == TALLY_OK)
        rc = strmap_put(&s->tokens, tkey, t) < 0 ? TALLY_ENOMEM : TALLY_OK;
    pthread_rwlock_unlock(&s->token_lock);
    if (rc != TALLY_OK) {
        free(t);
        return srv_fail_engine(e, rc);
    }
    return 0;
}

int auth_logout(tallyd *s, srv_err *e, const char *token)
{
    char tkey[TOKEN_KEY_LEN + 1], skey[SESSION_KEY_MAX + 1];
    if (!token || strlen(token) != SRV_TOKEN_HEX_LEN)
        return srv_fail(e, 401, "unauthorized", "no, unknown or expired token");
    token_key(token, tkey);
    /* Out of the table first: a second logout of the same token (or a
    ** request) finds nothing from here on; put back if the commit fails. */
    pthread_rwlock_wrlock(&s->token_lock);
    srv_token *t = strmap_del(&s->tokens, tkey);
    int live = t && t->expires_ns > srv_now_ns();
    if (live)
        s->tokens_pending++; /* its slot stays reserved until it is settled */
    pthread_rwlock_unlock(&s->token_lock);
    if (!live) {
        free(t);
        return srv_fail(e, 401, "unauthorized", "no, unknown or expired token");
    }
    char user[SRV_NAME_LEN_MAX + 1];
    snprintf(user, sizeof user, "%s", t->user->name);
    int klen = session_key(skey, t->expires_ns, tkey);
    tally_entry en = { .ns = TALLY_NS_SYSTEM, .key = skey, .key_len = (size_t)klen, .deleted = 1 };
    int rc = sys_commit(s, user, "logout", &en, 1);
    pthread_rwlock_wrlock(&s->token_lock);
    s->tokens_pending--;
    if (rc != TALLY_OK && strmap_put(&s->tokens, tkey, t) == 0)
        t = NULL; /* back in the table: the session goes on */
    pthread_rwlock_unlock(&s->token_lock);
    free(t);
    return rc == TALLY_OK ? 0 : srv_fail_engine(e, rc);
}

/* ---- Login rate limit ---- */
/* Drops entries whose newest failure left the window. Under rate_mu. */
static void rate_sweep(tallyd *s, uint64_t now_ns, uint64_t window_ns)
{
    size_t n = 0;
    char **idle = malloc(s->rate.count * sizeof *idle + 1);
    for (size_t i = 0; idle && i < s->rate.cap; i++) {
        strmap_slot *sl = &s->rate.slots[i];
        srv_rate *x = sl->key ? sl->val : NULL;
        unsigned newest = (x ? x->next + SRV_LOGIN_FAILS_MAX - 1 : 0) % SRV_LOGIN_FAILS_MAX;
        if (x && x->fail_ns[newest] + window_ns < now_ns)
            idle[n++] = strdup(sl->key);
    }
    for (size_t i = 0; i < n; i++) {
        if (idle[i])
            free(strmap_del(&s->rate, idle[i]));
        free(idle[i]);
    }
    free(idle);
}

/* Counts this attempt as a failure unless the window is full. Returns 0, or
** -1 when the user already has SRV_LOGIN_FAILS_MAX failures in the window. */
static int rate_begin(tallyd *s, const char *user, uint64_t now_ns)
{
    uint64_t window_ns = SRV_LOGIN_WINDOW_S * 1000000000ull;
    pthread_mutex_lock(&s->rate_mu);
    srv_rate *r = strmap_get(&s->rate, user);
    if (!r && s->rate.count >= SRV_RATE_ENTRIES_MAX)
        rate_sweep(s, now_ns, window_ns);
    if (!r && (r = calloc(1, sizeof *r)) && strmap_put(&s->rate, user, r) < 0) {
        free(r);
        r = NULL;
    }
    int rc = -1;
    /* The oldest of the last five failures is inside the window: refuse. */
    if (r && !(r->fail_ns[r->next] != 0 && r->fail_ns[r->next] + window_ns > now_ns)) {
        r->fail_ns[r->next] = now_ns;
        r->next = (r->next + 1) % SRV_LOGIN_FAILS_MAX;
        rc = 0;
    }
    pthread_mutex_unlock(&s->rate_mu);
    return rc;
}

/* A successful login clears the user's failures. */
static void rate_clear(tallyd *s, const char *user)
{
    pthread_mutex_lock(&s->rate_mu);
    free(strmap_del(&s->rate, user));
    pthread_mutex_unlock(&s->rate_mu);
}

/* auth_login's check, holding one of the SRV_LOGINS_INFLIGHT_MAX slots. */
static int login_checked(tallyd *s, srv_err *e, const char *user, const char *password,
                         char token[SRV_TOKEN_HEX_LEN + 1], uint64_t *expires_ns)
{
    if (rate_begin(s, user, srv_now_ns()) < 0)
        return srv_fail(e, 429, "rate_limited", "too many failed logins for '%s'", user);
    srv_user copy, *u;
    pthread_rwlock_rdlock(&s->auth_lock);
    if ((u = strmap_get(&s->users, user)))
        copy = *u;
    pthread_rwlock_unlock(&s->auth_lock);
    if (!u) { /* same work as a real check, so timing does not tell */
        memset(&copy, 0, sizeof copy);
        copy.scrypt_n = SRV_SCRYPT_N, copy.scrypt_r = SRV_SCRYPT_R, copy.scrypt_p = SRV_SCRYPT_P;
    }
    uint8_t h[SRV_HASH_BYTES];
    if (hash_password(password, copy.salt, copy.scrypt_n, copy.scrypt_r, copy.scrypt_p, h) < 0)
        return srv_fail(e, 500, "internal", "scrypt failed");
    if (!u || CRYPTO_memcmp(h, copy.hash, SRV_HASH_BYTES) != 0)
        return srv_fail(e, 401, "unauthorized", "bad user or password");
    rate_clear(s, user);
    return token_issue(s, e, u, token, expires_ns);
}

int auth_login(tallyd *s, srv_err *e, const char *user, const char *password,
               char token[SRV_TOKEN_HEX_LEN + 1], uint64_t *expires_ns)
{
    if (!srv_name_valid(user))
        return srv_fail(e, 401, "unauthorized", "bad user or password");
    /* At most SRV_LOGINS_INFLIGHT_MAX scrypt checks at once, held only for
    ** the check itself: a flood of logins (even under random names) gets
    ** 503 busy at once and leaves the worker pool to everything else. */
    if (atomic_fetch_add(&s->logins, 1) >= (int)SRV_LOGINS_INFLIGHT_MAX) {
        atomic_fetch_sub(&s->logins, 1);
        return srv_fail(e, 503, "busy", "%u logins are being checked; try again in a moment",
                        SRV_LOGINS_INFLIGHT_MAX);
    }
    int st = login_checked(s, e, user, password, token, expires_ns);
    atomic_fetch_sub(&s->logins, 1);
    return st;
}

void auth_close(tallyd *s)
{
    strmap *maps[3] = { &s->tokens, &s->rate, &s->users };
    for (int m = 0; m < 3; m++)
        for (size_t i = 0; maps[m]->slots && i < maps[m]->cap; i++)
            if (maps[m]->slots[i].key)
                free(maps[m]->slots[i].val);
    strmap_free(&s->tokens);
    strmap_free(&s->rate);
    strmap_free(&s->users);
    strmap_free(&s->roles);
}
