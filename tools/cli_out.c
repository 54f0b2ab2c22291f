/*
** cli_out.c — output formats shared by the embedded and the server mode
** (`tally get`, `tally tx`) and the shell, so all print the same text and JSON.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

void cli_out_version(int json, const char *key, const void *value, size_t value_len, uint64_t tx,
                     uint64_t rev, uint64_t ts_ns)
{
    if (!json) {
        fwrite(value, 1, value_len, stdout);
        putchar('\n');
        return;
    }
    char ts[CLI_TIME_BUF];
    cli_fmt_time(ts, ts_ns);
    putchar('{');
    cli_json_bytes(stdout, "key", key, strlen(key));
    putchar(',');
    cli_json_bytes(stdout, "value", value, value_len);
    printf(",\"tx\":%" PRIu64 ",\"rev\":%" PRIu64 ",\"ts\":\"%s\"}\n", tx, rev, ts);
}

void cli_out_tx_head(int json, const cli_tx_head *t)
{
    char ts[CLI_TIME_BUF];
    cli_fmt_time(ts, t->ts_ns);
    if (!json) {
        printf("tx: %" PRIu64 "\ntime: %s\nhash: ", t->tx, ts);
        cli_hex(stdout, t->hash, TALLY_HASH_LEN);
        fputs("\nprev_hash: ", stdout);
        cli_hex(stdout, t->prev_hash, TALLY_HASH_LEN);
        fputs("\nentries_root: ", stdout);
        cli_hex(stdout, t->entries_root, TALLY_HASH_LEN);
        if (t->meta_len) {
            fputs("\nmeta: ", stdout);
            fwrite(t->meta, 1, t->meta_len, stdout);
        }
        printf("\nentries: %" PRIu32 "\n", t->entry_count);
        return;
    }
    printf("{\"tx\":%" PRIu64 ",\"ts\":\"%s\",", t->tx, ts);
    cli_json_hash(stdout, "hash", t->hash);
    putchar(',');
    cli_json_hash(stdout, "prev_hash", t->prev_hash);
    putchar(',');
    cli_json_hash(stdout, "entries_root", t->entries_root);
    printf(",\"entry_count\":%" PRIu32 ",", t->entry_count);
    if (t->meta_len) {
        cli_json_bytes(stdout, "meta", t->meta, t->meta_len);
        putchar(',');
    }
    fputs("\"entries\":[", stdout);
}

void cli_out_tx_item(int json, uint32_t i, const cli_tx_item *e)
{
    if (!json) {
        printf("  [%" PRIu32 "] ", i);
        fwrite(e->key, 1, e->key_len, stdout);
        if (e->deleted) {
            fputs(" (deleted)\n", stdout);
            return;
        }
        fputs(" = ", stdout);
        fwrite(e->value, 1, e->value_len, stdout);
        if (e->meta_len) {
            fputs("  (meta: ", stdout);
            fwrite(e->meta, 1, e->meta_len, stdout);
            putchar(')');
        }
        putchar('\n');
        return;
    }
    printf("%s{\"index\":%" PRIu32 ",\"ns\":%u,", i ? "," : "", i, (unsigned)e->ns);
    cli_json_bytes(stdout, "key", e->key, e->key_len);
    putchar(',');
    cli_json_bytes(stdout, "value", e->value, e->value_len);
    if (e->meta_len) {
        putchar(',');
        cli_json_bytes(stdout, "meta", e->meta, e->meta_len);
    }
    printf(",\"deleted\":%s,", e->deleted ? "true" : "false");
    cli_json_hash(stdout, "leaf_hash", e->leaf_hash);
    putchar('}');
}

void cli_out_tx_end(int json)
{
    if (json)
        fputs("]}\n", stdout);
}

void cli_out_revision(int json, int first, uint64_t rev, uint64_t tx, uint64_t ts_ns, int deleted, const void *value,
                      size_t value_len)
{
    char ts[CLI_TIME_BUF];
    cli_fmt_time(ts, ts_ns);
    if (!json) {
        printf("rev=%" PRIu64 " tx=%" PRIu64 " ts=%s ", rev, tx, ts);
        if (deleted)
            fputs("(deleted)", stdout);
        else
            fwrite(value, 1, value_len, stdout);
        putchar('\n');
        return;
    }
    printf("%s{\"rev\":%" PRIu64 ",\"tx\":%" PRIu64 ",", first ? "" : ",", rev, tx);
    cli_json_bytes(stdout, "value", value, deleted ? 0 : value_len);
    printf(",\"deleted\":%s,\"ts\":\"%s\"}", deleted ? "true" : "false", ts);
}

void cli_out_state(int json, uint64_t size, const uint8_t root[TALLY_HASH_LEN])
{
    if (json) {
        printf("{\"tx\":%" PRIu64 ",", size);
        cli_json_hash(stdout, "root", root);
        fputs("}\n", stdout);
        return;
    }
    printf("tx: %" PRIu64 "\nroot: ", size);
    cli_hex(stdout, root, TALLY_HASH_LEN);
    putchar('\n');
}
