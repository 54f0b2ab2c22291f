/*
** cli_merkle.c — `tally merkle root | inclusion I | consistency M`: an
** auditor's RFC 6962 toolkit that needs no ledger. Leaf data comes from
** stdin, hex-encoded, one leaf per line: every line is a leaf (an empty line
** is the empty leaf ""), a trailing "\r" is stripped, and n is the number of
** lines. Proofs are built with src/merkle/rfc6962 over an in-memory node
** source and checked with the engine's pure verifiers before printing.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "merkle/rfc6962.h"

typedef struct leaves {
    rfc6962_hash *h;
    uint64_t n, cap;
} leaves;

static int leaves_push(leaves *l, const uint8_t *data, size_t len)
{
    if (l->n == l->cap) {
        uint64_t cap = l->cap ? l->cap * 2 : 1024;
        rfc6962_hash *nh = realloc(l->h, (size_t)cap * sizeof *nh);
        if (!nh)
            return -1;
        l->h = nh;
        l->cap = cap;
    }
    rfc6962_leaf_hash(data, len, l->h[l->n++]);
    return 0;
}

/* Reads every stdin line as one hex-encoded leaf. Returns 0 or an exit code. */
static int read_leaves(cli_ctx *c, leaves *l)
{
    char *line = NULL;
    uint8_t *data = NULL;
    size_t cap = 0, dcap = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n')
            len--;
        if (len && line[len - 1] == '\r')
            len--;
        if (len / 2 + 1 > dcap) {
            uint8_t *nd = realloc(data, len / 2 + 1);
            if (!nd) {
                rc = cli_failx(TALLY_ENOMEM, NULL);
                break;
            }
            data = nd;
            dcap = len / 2 + 1;
        }
        if (cli_unhex(line, len, data) < 0)
            rc = cli_usage(c, "line %" PRIu64 ": not hex", l->n + 1);
        else if (leaves_push(l, data, len / 2) < 0)
            rc = cli_failx(TALLY_ENOMEM, NULL);
    }
    free(line);
    free(data);
    if (rc == 0 && ferror(stdin))
        rc = cli_failx(TALLY_EIO, "reading standard input");
    return rc;
}

static int merkle_root(cli_ctx *c, rfc6962_mem *m, uint64_t unused)
{
    (void)unused;
    uint8_t root[TALLY_HASH_LEN];
    if (rfc6962_root(rfc6962_mem_node, m, m->n, root) != 0)
        return cli_failx(TALLY_EINVAL, "computing the root");
    if (c->args->json) {
        printf("{\"size\":%" PRIu64 ",", m->n);
        cli_json_hash(stdout, "root", root);
        fputs("}\n", stdout);
    } else {
        printf("size: %" PRIu64 "\nroot: ", m->n);
        cli_hex(stdout, root, TALLY_HASH_LEN);
        putchar('\n');
    }
    return CLI_EXIT_OK;
}

static void print_inclusion(const cli_ctx *c, const tally_proof *p, const uint8_t leaf[32],
                            const uint8_t root[32])
{
    const uint8_t(*path)[TALLY_HASH_LEN] = (const uint8_t(*)[TALLY_HASH_LEN])p->path;
    if (c->args->json) {
        printf("{\"index\":%" PRIu64 ",\"size\":%" PRIu64 ",", p->index, p->size);
        cli_json_hash(stdout, "leaf_hash", leaf);
        putchar(',');
        cli_json_path(stdout, path, p->len);
        fputs("}\n", stdout);
        return;
    }
    printf("index: %" PRIu64 "\nsize: %" PRIu64 "\nleaf_hash: ", p->index, p->size);
    cli_hex(stdout, leaf, TALLY_HASH_LEN);
    fputs("\nroot: ", stdout);
    cli_hex(stdout, root, TALLY_HASH_LEN);
    putchar('\n');
    cli_plain_path(stdout, path, p->len);
}

static int merkle_inclusion(cli_ctx *c, rfc6962_mem *m, uint64_t i)
{
    if (i >= m->n)
        return cli_failx(TALLY_ERANGE, "leaf %" PRIu64 " is not in a tree of %" PRIu64 " leaves",
                        i, m->n);
    tally_proof p;
    uint8_t root[TALLY_HASH_LEN];
    memset(&p, 0, sizeof p);
    p.index = i;
    p.size = m->n;
    if (rfc6962_inclusion_proof(rfc6962_mem_node, m, i, m->n, p.path, &p.len) != 0 ||
        rfc6962_root(rfc6962_mem_node, m, m->n, root) != 0)
        return cli_failx(TALLY_EINVAL, "computing the proof");
    if (tally_verify_inclusion(m->leaves[i], &p, root) != TALLY_OK)
        return cli_failx(TALLY_EBADPROOF, "inclusion proof of leaf %" PRIu64 " failed its check",
                        i);
    print_inclusion(c, &p, m->leaves[i], root);
    return CLI_EXIT_OK;
}

static void print_consistency(const cli_ctx *c, const tally_proof *p, const uint8_t old[32],
                              const uint8_t root[32])
{
    const uint8_t(*path)[TALLY_HASH_LEN] = (const uint8_t(*)[TALLY_HASH_LEN])p->path;
    if (c->args->json) {
        printf("{\"old\":%" PRIu64 ",\"size\":%" PRIu64 ",", p->index, p->size);
        cli_json_path(stdout, path, p->len);
        putchar(',');
        cli_json_hash(stdout, "old_root", old);
        putchar(',');
        cli_json_hash(stdout, "root", root);
        fputs("}\n", stdout);
        return;
    }
    printf("old: %" PRIu64 "\nsize: %" PRIu64 "\nold_root: ", p->index, p->size);
    cli_hex(stdout, old, TALLY_HASH_LEN);
    fputs("\nroot: ", stdout);
    cli_hex(stdout, root, TALLY_HASH_LEN);
    putchar('\n');
    cli_plain_path(stdout, path, p->len);
}

static int merkle_consistency(cli_ctx *c, rfc6962_mem *m, uint64_t old)
{
    if (old > m->n)
        return cli_failx(TALLY_ERANGE, "old size %" PRIu64 " exceeds the %" PRIu64 " leaves read",
                        old, m->n);
    tally_proof p;
    uint8_t old_root[TALLY_HASH_LEN], root[TALLY_HASH_LEN];
    memset(&p, 0, sizeof p);
    p.index = old;
    p.size = m->n;
    if (rfc6962_consistency_proof(rfc6962_mem_node, m, old, m->n, p.path, &p.len) != 0 ||
        rfc6962_root(rfc6962_mem_node, m, old, old_root) != 0 ||
        rfc6962_root(rfc6962_mem_node, m, m->n, root) != 0)
        return cli_failx(TALLY_EINVAL, "computing the proof");
    if (tally_verify_consistency(&p, old_root, root) != TALLY_OK)
        return cli_failx(TALLY_EBADPROOF, "consistency proof %" PRIu64 " -> %" PRIu64
                        " failed its check", old, m->n);
    print_consistency(c, &p, old_root, root);
    return CLI_EXIT_OK;
}

int cli_cmd_merkle(cli_ctx *c)
{
    static const struct {
        const char *name;
        int (*fn)(cli_ctx *, rfc6962_mem *, uint64_t);
        int npos;
        uint64_t min_arg;
    } SUBS[] = {
        { "root", merkle_root, 1, 0 },
        { "inclusion", merkle_inclusion, 2, 0 },       /* I: 0-based leaf index */
        { "consistency", merkle_consistency, 2, 1 },   /* M: old size >= 1 */
    };
    for (size_t s = 0; s < sizeof SUBS / sizeof SUBS[0]; s++) {
        if (strcmp(c->args->pos[0], SUBS[s].name) != 0)
            continue;
        if (c->args->npos != SUBS[s].npos)
            return cli_usage(c, "wrong number of arguments for 'merkle %s'", SUBS[s].name);
        uint64_t arg = 0; /* checked before stdin is read */
        if (SUBS[s].npos == 2 &&
            (cli_parse_u64(c->args->pos[1], &arg) < 0 || arg < SUBS[s].min_arg))
            return cli_usage(c, "merkle %s needs an integer >= %" PRIu64, SUBS[s].name,
                             SUBS[s].min_arg);
        leaves l = { NULL, 0, 0 };
        int rc = read_leaves(c, &l);
        if (rc == 0) {
            rfc6962_mem m = { (const rfc6962_hash *)l.h, l.n };
            rc = SUBS[s].fn(c, &m, arg);
        }
        free(l.h);
        return rc;
    }
    return cli_usage(c, "unknown merkle command '%s'", c->args->pos[0]);
}
