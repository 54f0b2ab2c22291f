/*
** cli_ledger.c — the ledger commands of `tally`: tx N, state, verify,
** reindex, and proof inclusion/consistency. verify and reindex work on the
** directory (they take its lock themselves) and never open a handle first.
** Every proof is checked with the pure verifiers before it is printed: a
** proof that fails its own check exits 2 and prints nothing on stdout.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* ---- tx N ---- */
static int tx_entry_ok(void *arg, uint32_t i, const tally_entry_view *e)
{
    (void)arg, (void)i, (void)e;
    return 0;
}

static int tx_entry_print(void *arg, uint32_t i, const tally_entry_view *e)
{
    const cli_ctx *c = arg;
    cli_tx_item it = {e->ns, e->deleted, e->key, e->value, e->key_len, e->value_len,
                      e->leaf_hash, e->meta, e->meta_len};
    cli_out_tx_item(c->args->json, i, &it);
    return 0;
}

int cli_cmd_tx(cli_ctx *c)
{
    uint64_t n;
    if (cli_parse_u64(c->args->pos[0], &n) < 0)
        return cli_usage(c, "not a transaction id: '%s'", c->args->pos[0]);
    tally_tx_info t;
    int rc = tally_tx_get(c->db, &t, n);
    if (rc != TALLY_OK)
        return cli_fail(rc, "tx %" PRIu64, n);
    /* Read every entry before printing, so an error leaves no partial output. */
    if ((rc = tally_tx_entries(c->db, n, tx_entry_ok, NULL)) != TALLY_OK)
        return cli_fail(rc, "tx %" PRIu64, n);
    cli_tx_head head = {t.tx, t.ts_ns, t.hash, t.prev_hash, t.entries_root, t.entry_count,
                        t.meta, t.meta_len};
    cli_out_tx_head(c->args->json, &head);
    if ((rc = tally_tx_entries(c->db, n, tx_entry_print, c)) != TALLY_OK)
        return cli_fail(rc, "tx %" PRIu64, n);
    cli_out_tx_end(c->args->json);
    return CLI_EXIT_OK;
}

/* ---- state ---- */
int cli_cmd_state(cli_ctx *c)
{
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    int rc = tally_state(c->db, &size, root);
    if (rc != TALLY_OK)
        return cli_fail(rc, "reading state");
    cli_out_state(c->args->json, size, root);
    return CLI_EXIT_OK;
}

/* ---- verify ---- */
static int verify_report(const cli_ctx *c, const tally_verify_result *r)
{
    if (c->args->json) {
        if (r->ok) {
            printf("{\"ok\":true,\"tx\":%" PRIu64 "}\n", r->tx_checked);
        } else {
            printf("{\"ok\":false,\"first_bad_tx\":%" PRIu64 ",\"error\":", r->first_bad_tx);
            cli_json_str(stdout, r->error, strnlen(r->error, sizeof r->error));
            fputs("}\n", stdout);
        }
    } else if (r->ok) {
        printf("ok: %" PRIu64 " transactions verified\n", r->tx_checked);
    } else {
        printf("FAILED at tx %" PRIu64 ": %.*s\n", r->first_bad_tx, (int)sizeof r->error,
               r->error);
    }
    if (r->ok)
        return CLI_EXIT_OK;
    fprintf(stderr, "tally: %s: tx %" PRIu64 ": %.*s\n", tally_strerror(TALLY_ECORRUPT),
            r->first_bad_tx, (int)sizeof r->error, r->error);
    return CLI_EXIT_INTEGRITY;
}

int cli_cmd_verify(cli_ctx *c)
{
    tally_verify_result r;
    cli_progress p;
    memset(&r, 0, sizeof r);
    cli_progress_init(&p, "verify");
    int rc = tally_verify_dir(c->args->dir, &r, cli_progress_cb, &p);
    cli_progress_end(&p);
    if (rc != TALLY_OK)
        return cli_fail(rc, "verifying %s", c->args->dir);
    r.error[sizeof r.error - 1] = '\0';
    if (!cli_utf8_valid(r.error, strlen(r.error)))
        strcpy(r.error, "(message not UTF-8)");
    return verify_report(c, &r);
}

/* ---- reindex ---- */
int cli_cmd_reindex(cli_ctx *c)
{
    cli_progress p;
    cli_progress_init(&p, "reindex");
    int rc = tally_reindex_dir(c->args->dir, cli_progress_cb, &p);
    cli_progress_end(&p);
    if (rc != TALLY_OK)
        return cli_fail(rc, "reindexing %s", c->args->dir);
    /* The size after: open the rebuilt ledger. */
    if ((rc = cli_open(c, 1)) != 0)
        return rc;
    uint64_t size;
    uint8_t root[TALLY_HASH_LEN];
    if ((rc = tally_state(c->db, &size, root)) != TALLY_OK)
        return cli_fail(rc, "reading state");
    if (c->args->json)
        printf("{\"ok\":true,\"tx\":%" PRIu64 "}\n", size);
    else
        printf("ok: %" PRIu64 " transactions reindexed\n", size);
    return CLI_EXIT_OK;
}

/* ---- proof inclusion N [--size S] | proof consistency M N ---- */
static uint64_t current_size(cli_ctx *c, int *rc)
{
    uint64_t size = 0;
    uint8_t root[TALLY_HASH_LEN];
    *rc = tally_state(c->db, &size, root);
    return size;
}

static void print_plain_hash(const char *name, const uint8_t h[TALLY_HASH_LEN])
{
    printf("%s: ", name);
    cli_hex(stdout, h, TALLY_HASH_LEN);
    putchar('\n');
}

static void print_inclusion(const cli_ctx *c, uint64_t n, const uint8_t leaf[TALLY_HASH_LEN],
                            const uint8_t root[TALLY_HASH_LEN], const tally_proof *p)
{
    if (!c->args->json) {
        printf("index: %" PRIu64 "\nsize: %" PRIu64 "\ntx: %" PRIu64 "\n", n - 1, p->size, n);
        print_plain_hash("leaf_hash", leaf);
        print_plain_hash("root", root);
        cli_plain_path(stdout, (const uint8_t(*)[TALLY_HASH_LEN])p->path, p->len);
        return;
    }
    printf("{\"index\":%" PRIu64 ",\"size\":%" PRIu64 ",\"tx\":%" PRIu64 ",", n - 1, p->size, n);
    cli_json_hash(stdout, "leaf_hash", leaf);
    putchar(',');
    cli_json_hash(stdout, "root", root);
    putchar(',');
    cli_json_path(stdout, (const uint8_t(*)[TALLY_HASH_LEN])p->path, p->len);
    fputs("}\n", stdout);
}

static int proof_inclusion(cli_ctx *c)
{
    const cli_args *a = c->args;
    uint64_t n, size;
    int rc;
    if (a->npos != 2 || cli_parse_u64(a->pos[1], &n) < 0 || n == 0)
        return cli_usage(c, "proof inclusion needs a transaction id N >= 1");
    if (a->seen & CLI_OPT_SIZE) {
        size = a->size;
    } else {
        size = current_size(c, &rc);
        if (rc != TALLY_OK)
            return cli_fail(rc, "reading state");
    }
    if (n > size)
        return cli_failx(TALLY_ERANGE, "tx %" PRIu64 " is not in a tree of size %" PRIu64, n,
                        size);
    tally_tx_info t;
    tally_proof p;
    uint8_t root[TALLY_HASH_LEN];
    if ((rc = tally_tx_get(c->db, &t, n)) != TALLY_OK)
        return cli_fail(rc, "tx %" PRIu64, n);
    if ((rc = tally_proof_tx(c->db, &p, n, size)) != TALLY_OK)
        return cli_fail(rc, "proof of tx %" PRIu64 " in size %" PRIu64, n, size);
    if ((rc = tally_root_at(c->db, root, size)) != TALLY_OK)
        return cli_fail(rc, "root at size %" PRIu64, size);
    if (p.size != size || p.index != n - 1 ||
        (rc = tally_verify_inclusion(t.hash, &p, root)) != TALLY_OK)
        return cli_failx(TALLY_EBADPROOF, "inclusion proof of tx %" PRIu64 " failed its check", n);
    print_inclusion(c, n, t.hash, root, &p);
    return CLI_EXIT_OK;
}

static void print_consistency(const cli_ctx *c, const uint8_t old_root[TALLY_HASH_LEN],
                              const uint8_t root[TALLY_HASH_LEN], const tally_proof *p)
{
    if (!c->args->json) {
        printf("old: %" PRIu64 "\nsize: %" PRIu64 "\n", p->index, p->size);
        print_plain_hash("old_root", old_root);
        print_plain_hash("root", root);
        cli_plain_path(stdout, (const uint8_t(*)[TALLY_HASH_LEN])p->path, p->len);
        return;
    }
    printf("{\"old\":%" PRIu64 ",\"size\":%" PRIu64 ",", p->index, p->size);
    cli_json_hash(stdout, "old_root", old_root);
    putchar(',');
    cli_json_hash(stdout, "root", root);
    putchar(',');
    cli_json_path(stdout, (const uint8_t(*)[TALLY_HASH_LEN])p->path, p->len);
    fputs("}\n", stdout);
}

static int proof_consistency(cli_ctx *c)
{
    const cli_args *a = c->args;
    uint64_t m, n;
    int rc;
    if (a->seen & CLI_OPT_SIZE)
        return cli_usage(c, "--size applies to 'proof inclusion' only");
    if (a->npos != 3 || cli_parse_u64(a->pos[1], &m) < 0 || cli_parse_u64(a->pos[2], &n) < 0)
        return cli_usage(c, "proof consistency needs sizes M and N");
    if (m == 0 || m > n)
        return cli_usage(c, "proof consistency needs 1 <= M <= N");
    tally_proof p;
    uint8_t old_root[TALLY_HASH_LEN], root[TALLY_HASH_LEN];
    if ((rc = tally_proof_consistency(c->db, &p, m, n)) != TALLY_OK)
        return cli_fail(rc, "consistency proof %" PRIu64 " -> %" PRIu64, m, n);
    if ((rc = tally_root_at(c->db, old_root, m)) != TALLY_OK ||
        (rc = tally_root_at(c->db, root, n)) != TALLY_OK)
        return cli_fail(rc, "roots at sizes %" PRIu64 " and %" PRIu64, m, n);
    if (p.index != m || p.size != n ||
        tally_verify_consistency(&p, old_root, root) != TALLY_OK)
        return cli_failx(TALLY_EBADPROOF, "consistency proof %" PRIu64 " -> %" PRIu64
                        " failed its check", m, n);
    print_consistency(c, old_root, root, &p);
    return CLI_EXIT_OK;
}

int cli_cmd_proof(cli_ctx *c)
{
    const char *sub = c->args->pos[0];
    if (strcmp(sub, "inclusion") == 0)
        return proof_inclusion(c);
    if (strcmp(sub, "consistency") == 0)
        return proof_consistency(c);
    return cli_usage(c, "unknown proof kind '%s'", sub);
}
