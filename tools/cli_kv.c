/*
** cli_kv.c — the key-value commands of `tally`: set KEY VALUE..., get, del,
** history, scan. Keys and values on the command line are raw bytes in
** namespace TALLY_NS_KV. (`set -` streams from stdin: cli_stdin.c.)
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- set KEY VALUE [KEY VALUE ...] ---- */
static int set_args(cli_ctx *c)
{
    const cli_args *a = c->args;
    if (a->npos % 2)
        return cli_usage(c, "set needs KEY VALUE pairs");
    size_t n = (size_t)a->npos / 2;
    if ((a->seen & CLI_OPT_IF_REV) && n != 1)
        return cli_usage(c, "--if-rev applies to exactly one key");
    tally_entry *e = calloc(n, sizeof *e);
    if (!e)
        return cli_failx(TALLY_ENOMEM, NULL);
    for (size_t i = 0; i < n; i++) {
        e[i].ns = TALLY_NS_KV;
        e[i].key = a->pos[2 * i];
        e[i].key_len = strlen(a->pos[2 * i]);
        e[i].value = a->pos[2 * i + 1];
        e[i].value_len = strlen(a->pos[2 * i + 1]);
        if (a->seen & CLI_OPT_IF_ABSENT)
            e[i].cond = TALLY_COND_ABSENT;
        if (a->seen & CLI_OPT_IF_REV) {
            e[i].cond = TALLY_COND_REV;
            e[i].cond_rev = a->if_rev;
        }
    }
    uint64_t tx = 0;
    int rc = tally_commit(c->db, &tx, e, n, a->meta, a->meta ? strlen(a->meta) : 0);
    free(e);
    if (rc != TALLY_OK)
        return cli_fail(rc, "commit failed");
    cli_print_tx_ack(c, tx);
    return CLI_EXIT_OK;
}

int cli_cmd_set(cli_ctx *c)
{
    const cli_args *a = c->args;
    if ((a->seen & CLI_OPT_IF_ABSENT) && (a->seen & CLI_OPT_IF_REV))
        return cli_usage(c, "--if-absent and --if-rev exclude each other");
    if (a->npos == 1 && strcmp(a->pos[0], "-") == 0)
        return cli_set_stdin(c);
    if (a->seen & CLI_OPT_BATCH)
        return cli_usage(c, "--batch applies to 'set -' only");
    return set_args(c);
}

/* ---- get KEY [--tx N | --at TIME | --rev R] ---- */
static void print_version(const cli_ctx *c, const char *key, const tally_version *v)
{
    cli_out_version(c->args->json, key, v->value, v->value_len, v->tx, v->rev, v->ts_ns);
}

/* Resolves --tx / --at into as_of (0 = latest). Returns 0 or an exit code. */
static int get_as_of(cli_ctx *c, uint64_t *as_of)
{
    const cli_args *a = c->args;
    *as_of = 0;
    if (a->seen & CLI_OPT_TX) {
        if (a->tx == 0)
            return cli_usage(c, "--tx needs a transaction id >= 1");
        *as_of = a->tx;
    }
    if (a->seen & CLI_OPT_AT) {
        int64_t ns;
        if (cli_parse_time(a->at, &ns) < 0)
            return cli_usage(c, "--at needs an RFC 3339 time, not '%s'", a->at);
        if (ns >= 0) {
            int rc = tally_tx_at_time(c->db, as_of, (uint64_t)ns);
            if (rc != TALLY_OK)
                return cli_fail(rc, "resolving time %s", a->at);
        }
        if (*as_of == 0)
            return cli_failx(TALLY_ENOTFOUND, "no transaction at or before %s", a->at);
    }
    return 0;
}

int cli_cmd_get(cli_ctx *c)
{
    const cli_args *a = c->args;
    const char *key = a->pos[0];
    unsigned sel = a->seen & (CLI_OPT_TX | CLI_OPT_AT | CLI_OPT_REV);
    if (sel & (sel - 1))
        return cli_usage(c, "--tx, --at and --rev exclude each other");
    tally_version v;
    int rc;
    if (sel == CLI_OPT_REV) {
        if (a->rev == 0)
            return cli_usage(c, "--rev needs a revision >= 1");
        rc = tally_get_rev(c->db, &v, TALLY_NS_KV, key, strlen(key), a->rev);
        if (rc == TALLY_OK && v.deleted)
            return cli_failx(TALLY_ENOTFOUND, "key '%s' revision %" PRIu64 " is a deletion",
                            cli_show(key, strlen(key)), a->rev);
        if (rc != TALLY_OK)
            return cli_fail(rc, "key '%s' revision %" PRIu64, cli_show(key, strlen(key)),
                            a->rev);
    } else {
        uint64_t as_of;
        int ec = get_as_of(c, &as_of);
        if (ec)
            return ec;
        rc = tally_get(c->db, &v, TALLY_NS_KV, key, strlen(key), as_of);
    }
    if (rc != TALLY_OK)
        return cli_fail(rc, "key '%s'", cli_show(key, strlen(key)));
    print_version(c, key, &v);
    return CLI_EXIT_OK;
}

/* ---- del KEY ---- */
int cli_cmd_del(cli_ctx *c)
{
    const char *key = c->args->pos[0];
    size_t klen = strlen(key);
    tally_version v;
    int rc = tally_get(c->db, &v, TALLY_NS_KV, key, klen, 0);
    if (rc != TALLY_OK)
        return cli_fail(rc, "key '%s'", cli_show(key, klen));
    /* Race-free: the tombstone applies only to the revision we saw. */
    tally_entry e;
    memset(&e, 0, sizeof e);
    e.ns = TALLY_NS_KV;
    e.deleted = 1;
    e.cond = TALLY_COND_REV;
    e.cond_rev = v.rev;
    e.key = key;
    e.key_len = klen;
    e.value = "";
    uint64_t tx = 0;
    rc = tally_commit(c->db, &tx, &e, 1, NULL, 0);
    if (rc == TALLY_ECONFLICT) {
        cli_fail(rc, "key '%s' changed concurrently", cli_show(key, klen));
        return CLI_EXIT_NOTFOUND;
    }
    if (rc != TALLY_OK)
        return cli_fail(rc, "commit failed");
    cli_print_tx_ack(c, tx);
    return CLI_EXIT_OK;
}

/* ---- history KEY ---- */
typedef struct vvec {
    tally_version *v;
    size_t n, cap;
    int oom;
} vvec;

static int collect(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    vvec *vv = ctx;
    (void)key;
    (void)key_len;
    if (vv->n == vv->cap) {
        size_t cap = vv->cap ? vv->cap * 2 : 16;
        tally_version *nv = realloc(vv->v, cap * sizeof *nv);
        if (!nv) {
            vv->oom = 1;
            return 1;
        }
        vv->v = nv;
        vv->cap = cap;
    }
    vv->v[vv->n++] = *v; /* value pointers stay valid until close */
    return 0;
}

static void print_revision(const cli_ctx *c, const tally_version *v, int first)
{
    cli_out_revision(c->args->json, first, v->rev, v->tx, v->ts_ns, v->deleted, v->value, v->value_len);
}

int cli_cmd_history(cli_ctx *c)
{
    const char *key = c->args->pos[0];
    size_t klen = strlen(key);
    vvec vv = { NULL, 0, 0, 0 };
    int rc = tally_history(c->db, NULL, TALLY_NS_KV, key, klen, 1, 0, collect, &vv);
    if (rc != TALLY_OK || vv.oom || vv.n == 0) {
        free(vv.v);
        if (rc != TALLY_OK)
            return cli_fail(rc, "key '%s'", cli_show(key, klen));
        return cli_failx(vv.oom ? TALLY_ENOMEM : TALLY_ENOTFOUND, "key '%s'",
                         cli_show(key, klen));
    }
    if (c->args->json) {
        putchar('{');
        cli_json_bytes(stdout, "key", key, klen);
        fputs(",\"revisions\":[", stdout);
    }
    for (size_t i = 0; i < vv.n; i++)
        print_revision(c, &vv.v[i], i == 0);
    if (c->args->json)
        fputs("]}\n", stdout);
    free(vv.v);
    return CLI_EXIT_OK;
}

/* ---- scan PREFIX [--tx N] ---- */
typedef struct scan_ctx {
    int json;
    size_t n;
} scan_ctx;

static int print_scanned(void *ctx, const void *key, size_t key_len, const tally_version *v)
{
    scan_ctx *s = ctx;
    if (!s->json) {
        fwrite(key, 1, key_len, stdout);
        putchar('\t');
        fwrite(v->value, 1, v->value_len, stdout);
        putchar('\n');
    } else {
        fputs(s->n ? ",{" : "{", stdout);
        cli_json_bytes(stdout, "key", key, key_len);
        putchar(',');
        cli_json_bytes(stdout, "value", v->value, v->value_len);
        printf(",\"tx\":%" PRIu64 ",\"rev\":%" PRIu64 "}", v->tx, v->rev);
    }
    s->n++;
    return 0;
}

int cli_cmd_scan(cli_ctx *c)
{
    const cli_args *a = c->args;
    const char *prefix = a->npos ? a->pos[0] : "";
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_state(c->db, &size, root);
    if (rc != TALLY_OK)
        return cli_fail(rc, "reading state");
    if (a->seen & CLI_OPT_TX) {
        if (a->tx == 0)
            return cli_usage(c, "--tx needs a transaction id >= 1");
        if (a->tx > size)
            return cli_failx(TALLY_ERANGE, "tx %" PRIu64 " is beyond the ledger (size %" PRIu64 ")",
                            a->tx, size);
        size = a->tx;
    }
    scan_ctx s = { a->json, 0 };
    if (a->json) {
        putchar('{');
        cli_json_bytes(stdout, "prefix", prefix, strlen(prefix));
        printf(",\"tx\":%" PRIu64 ",\"keys\":[", size);
    }
    /* as_of = size pins the snapshot even if a writer appends meanwhile. */
    rc = tally_scan(c->db, TALLY_NS_KV, prefix, strlen(prefix), NULL, 0, size, 0,
                    print_scanned, &s);
    if (rc != TALLY_OK) {
        if (a->json)
            putchar('\n');
        return cli_fail(rc, "scanning '%s'", cli_show(prefix, strlen(prefix)));
    }
    if (a->json)
        fputs("]}\n", stdout);
    return CLI_EXIT_OK;
}
