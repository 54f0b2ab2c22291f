/*
** handlers_admin.c — the server-level endpoints of docs/API.md: health,
** metrics, server identity, login, listing and creating ledgers, a ledger's
** description, and creating users / granting roles.
**
** Invariants:
**   (1) creating a ledger needs admin on "*"; creating a user or granting a
**       role needs admin on "*" or admin on that ledger; "*" grants need "*";
**   (2) every change is committed to the system ledger (registry.c, auth.c)
**       before it is visible.
*/
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

int h_health(srv_req *r)
{
    return http_json(r, 200, json_pack("{s:b}", "ok", 1));
}

int h_metrics(srv_req *r)
{
    size_t len = 0;
    char *text = metrics_render(r->s, &len);
    if (!text)
        return http_errorf(r, 500, "internal", "out of memory");
    return http_raw(r, 200, "text/plain; version=0.0.4", text, len);
}

int h_server(srv_req *r)
{
    return http_json(r, 200, json_pack("{s:s,s:s}", "name", r->s->name, "vkey", r->s->vkey));
}

int h_login(srv_req *r)
{
    int res;
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    static const char *const fields[] = { "user", "password", NULL };
    srv_err e;
    if (srv_json_fields(&e, j, fields, NULL)) { /* before any scrypt or rate-limit count */
        json_decref(j);
        return http_error(r, &e);
    }
    const char *user = srv_json_text(j, "user");
    const char *pw = srv_json_text(j, "password");
    if (!user || !pw) {
        json_decref(j);
        return http_errorf(r, 400, "bad_request",
                           "login needs \"user\" and \"password\" strings (no NUL characters)");
    }
    if (strlen(pw) > SRV_PASSWORD_LEN_MAX) {
        json_decref(j);
        return http_errorf(r, 400, "bad_request", "\"password\" longer than %u bytes",
                           SRV_PASSWORD_LEN_MAX);
    }
    char token[SRV_TOKEN_HEX_LEN + 1], ts[SRV_TIME_BUF];
    uint64_t expires;
    int st = auth_login(r->s, &e, user, pw, token, &expires);
    if (st != 0) {
        json_decref(j);
        return http_error(r, &e);
    }
    srv_fmt_time(ts, expires);
    json_t *out = json_pack("{s:s,s:s,s:s}", "token", token, "user", user, "expires", ts);
    json_decref(j);
    return http_json(r, 200, out);
}

int h_logout(srv_req *r)
{
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    srv_err e;
    if (r->body_len > 0) { /* no body, or an object without fields ({}) */
        static const char *const fields[] = { NULL };
        int res;
        json_t *j = http_body_json(r, &res);
        if (!j)
            return res;
        int st = srv_json_fields(&e, j, fields, NULL);
        json_decref(j);
        if (st)
            return http_error(r, &e);
    }
    if (auth_logout(r->s, &e, auth && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL) != 0)
        return http_error(r, &e);
    return http_json(r, 200, json_pack("{s:b}", "ok", 1));
}

/* {"name","id","size"} of a ledger. A ledger neither open nor closed since
** start must be opened to know its size: only off the event loop (r->defer;
** *need_pool = 1 and NULL otherwise). One that cannot be opened is listed
** with "size": null and "error" (one bad ledger does not hide the others). */
static json_t *ledger_summary(srv_req *r, srv_ledger *lg, int *need_pool)
{
    tally_db *db;
    uint64_t size = 0;
    uint8_t root[TALLY_HASH_LEN];
    int rc = TALLY_OK;
    if ((db = reg_try_acquire(lg))) {
        rc = tally_state(db, &size, root);
        reg_release(lg);
    } else if ((size = atomic_load(&lg->closed_size)) != CLOSED_SIZE_UNKNOWN) {
        /* closed idle: its size cannot have moved */
    } else if (!r->defer) {
        *need_pool = 1;
        return NULL;
    } else if ((rc = reg_acquire(r->s, lg, &db)) == TALLY_OK) { /* not opened since start */
        rc = tally_state(db, &size, root);
        reg_release(lg);
    }
    if (rc) /* the error class only: the message may hold server paths (or not be UTF-8) */
        return json_pack("{s:s,s:s,s:n,s:s}", "name", lg->name, "id", lg->id, "size", "error",
                         tally_strerror(rc));
    return json_pack("{s:s,s:s,s:I}", "name", lg->name, "id", lg->id, "size", (json_int_t)size);
}

int h_ledgers_list(srv_req *r)
{
    srv_ledger **all;
    size_t n = reg_snapshot(r->s, &all);
    json_t *arr = json_array();
    int need_pool = 0;
    for (size_t i = 0; arr && i < n && !need_pool; i++) {
        if (auth_role(r->s, r->user->name, all[i]->name) == ROLE_NONE)
            continue;
        json_t *one = ledger_summary(r, all[i], &need_pool);
        if (one && json_array_append_new(arr, one) < 0)
            need_pool = -1;
        else if (!one && !need_pool)
            need_pool = -1; /* out of memory */
    }
    free(all);
    if (need_pool) {
        json_decref(arr);
        return need_pool > 0 ? http_to_pool(r) /* opening ledgers: not on the event loop */
                             : http_errorf(r, 500, "internal", "out of memory");
    }
    return http_json(r, 200, json_pack("{s:o}", "ledgers", arr));
}

int h_ledgers_create(srv_req *r)
{
    if (auth_role(r->s, r->user->name, "*") != ROLE_ADMIN)
        return http_errorf(r, 403, "forbidden", "creating ledgers needs admin on \"*\"");
    int res;
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    static const char *const fields[] = { "name", NULL };
    srv_err e;
    if (srv_json_fields(&e, j, fields, NULL)) {
        json_decref(j);
        return http_error(r, &e);
    }
    const char *name = srv_json_text(j, "name");
    if (!name || !srv_name_valid(name)) {
        json_decref(j);
        return http_errorf(r, 400, "bad_request", "a ledger needs a \"name\" of [A-Za-z0-9._-]{1,64}");
    }
    srv_ledger *lg;
    int rc = reg_create(r->s, r->user->name, name, &lg);
    if (rc == TALLY_ECONFLICT)
        res = http_errorf(r, 409, "conflict", "ledger '%s' already exists", name);
    else if (rc != TALLY_OK)
        res = http_engine_error(r, rc);
    json_decref(j);
    if (rc != TALLY_OK)
        return res;
    return http_json(r, 201, json_pack("{s:s,s:s,s:s}", "name", lg->name, "id", lg->id,
                                       "origin", lg->origin));
}

int h_ledger_info(srv_req *r)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_state(r->db, &size, root);
    if (rc != TALLY_OK)
        return http_engine_error(r, rc);
    json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "name", r->lg->name, "id", r->lg->id, "origin",
                          r->lg->origin, "size", (json_int_t)size);
    if (o && srv_json_set_hex(o, "root", root, TALLY_HASH_LEN) < 0) {
        json_decref(o);
        o = NULL;
    }
    return http_json(r, 200, o);
}

/* Checks the fields of POST /v1/users. Returns 0 or an HTTP status (e). */
static int users_check(srv_req *r, srv_err *e, json_t *j, const char **name,
                       const char **pw, int *role, const char **ledger)
{
    static const char *const fields[] = { "name", "password", "role", "ledger", NULL };
    int st = srv_json_fields(e, j, fields, NULL);
    if (st)
        return st;
    json_t *jpw = json_object_get(j, "password");
    const char *rn = srv_json_text(j, "role");
    *name = srv_json_text(j, "name");
    *ledger = srv_json_text(j, "ledger");
    *pw = srv_json_text(j, "password");
    if (!*name || !srv_name_valid(*name))
        return srv_fail(e, 400, "bad_request", "a user needs a \"name\" of [A-Za-z0-9._-]{1,64}");
    if ((jpw && !json_is_null(jpw) && !*pw) || (*pw && !**pw))
        return srv_fail(e, 400, "bad_request",
                        "\"password\" must be a non-empty string without NUL characters");
    if (*pw && strlen(*pw) > SRV_PASSWORD_LEN_MAX)
        return srv_fail(e, 400, "bad_request", "\"password\" longer than %u bytes",
                        SRV_PASSWORD_LEN_MAX);
    if (!rn || (*role = role_parse(rn)) < 0)
        return srv_fail(e, 400, "bad_request",
                        "\"role\" must be reader, auditor, writer, admin or \"\"");
    if (!*ledger || (strcmp(*ledger, "*") != 0 && !srv_name_valid(*ledger)))
        return srv_fail(e, 400, "bad_request", "\"ledger\" must be a ledger name or \"*\"");
    int global = auth_role(r->s, r->user->name, "*") == ROLE_ADMIN;
    int local = strcmp(*ledger, "*") != 0 &&
                auth_role(r->s, r->user->name, *ledger) == ROLE_ADMIN;
    if (!global && !local)
        return srv_fail(e, 403, "forbidden", "granting a role on '%s' needs admin there", *ledger);
    if (strcmp(*ledger, "*") != 0 && !reg_find(r->s, *ledger))
        return srv_fail(e, 404, "not_found", "no ledger '%s'", *ledger);
    return 0;
}

int h_users(srv_req *r)
{
    int res;
    json_t *j = http_body_json(r, &res);
    if (!j)
        return res;
    srv_err e;
    const char *name, *pw, *ledger;
    int role = ROLE_NONE;
    if (users_check(r, &e, j, &name, &pw, &role, &ledger) != 0 ||
        auth_grant(r->s, &e, r->user->name, name, pw, role, ledger) != 0) {
        json_decref(j);
        return http_error(r, &e);
    }
    json_t *o = json_pack("{s:s,s:s,s:s}", "name", name, "role", role_name(role), "ledger", ledger);
    json_decref(j);
    return http_json(r, 201, o);
}
