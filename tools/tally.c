/*
** tally.c — main() of the `tally` command-line tool.
**
** The command table below is data (name, handler, how to open the ledger,
** accepted options, arity, usage, summary): dispatch, argument checks and
** help all come from it (Redis style). Options may appear anywhere on the
** line ("--json", "--tx N", "--tx=N", "-D DIR", "-DDIR"); "--" ends them.
** The data directory is -D DIR, else $TALLY_DIR, else ./tally-data.
** Handlers live in cli_*.c (see cli.h for the map).
*/
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int cmd_help(cli_ctx *c);

static const cli_cmd COMMANDS[] = {
    { "set", cli_cmd_set, CLI_OPEN_RW,
      CLI_OPT_IF_ABSENT | CLI_OPT_IF_REV | CLI_OPT_BATCH | CLI_OPT_META, 1, -1,
      "set KEY VALUE [KEY VALUE ...] [--if-absent | --if-rev R] [--meta TEXT]\n"
      "set - [--batch N] [--if-absent] [--meta TEXT]",
      "write keys in one transaction; with '-', KEY<TAB>VALUE lines from stdin,\n"
      "N lines per transaction; --meta: the transaction metadata (each one's);\n"
      "prints each transaction id once durable" },
    { "get", cli_cmd_get, CLI_OPEN_RO, CLI_OPT_TX | CLI_OPT_AT | CLI_OPT_REV, 1, 1,
      "get KEY [--tx N | --at TIME | --rev R]",
      "value of KEY (latest, as of transaction N or RFC 3339 TIME, or revision R)" },
    { "del", cli_cmd_del, CLI_OPEN_RW, 0, 1, 1,
      "del KEY",
      "delete KEY (commits a tombstone); not found if absent" },
    { "history", cli_cmd_history, CLI_OPEN_RO, 0, 1, 1,
      "history KEY",
      "every revision of KEY, deletions included" },
    { "scan", cli_cmd_scan, CLI_OPEN_RO, CLI_OPT_TX, 0, 1,
      "scan PREFIX [--tx N]",
      "keys starting with PREFIX (default: all) in byte order, with their values" },
    { "tx", cli_cmd_tx, CLI_OPEN_RO, 0, 1, 1,
      "tx N",
      "transaction N: time, hash, previous hash, entries root, entries" },
    { "state", cli_cmd_state, CLI_OPEN_RO, 0, 0, 0,
      "state",
      "last transaction id and ledger root" },
    { "verify", cli_cmd_verify, CLI_OPEN_NONE, 0, 0, 0,
      "verify",
      "recompute and check everything in the data directory" },
    { "reindex", cli_cmd_reindex, CLI_OPEN_NONE, 0, 0, 0,
      "reindex",
      "rebuild every derived structure from the log" },
    { "proof", cli_cmd_proof, CLI_OPEN_RO, CLI_OPT_SIZE, 2, 3,
      "proof inclusion N [--size S]\n"
      "proof consistency M N",
      "Merkle proof that transaction N is in the ledger of size S (default:\n"
      "current), or that the ledger of size M is a prefix of size N" },
    { "merkle", cli_cmd_merkle, CLI_OPEN_NONE, 0, 1, 2,
      "merkle root\n"
      "merkle inclusion I\n"
      "merkle consistency M",
      "RFC 6962 tools over hex-encoded leaf data, one leaf per stdin line" },
    { "help", cmd_help, CLI_OPEN_NONE, 0, 0, 1,
      "help [COMMAND]",
      "this help" },
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static const cli_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

static void print_help(FILE *f)
{
    fputs("usage: tally [-D DIR] [--json] COMMAND [ARGS...]\n"
          "       tally --server URL [--ledger NAME] [--json] COMMAND [ARGS...]\n"
          "       tally --help | --version  (tally --server URL --help: server mode)\n\n"
          "Tally is a verifiable ledger database. DIR defaults to $TALLY_DIR, else\n"
          "./tally-data. Every command takes --json. Exit codes: 0 ok, 1 not found,\n"
          "2 integrity failure, 3 precondition failed, 4 error, 64 usage.\n\n"
          "Commands:\n", f);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const cli_cmd *cmd = &COMMANDS[i];
        const char *s = cmd->usage;
        while (*s) {
            size_t n = strcspn(s, "\n");
            fprintf(f, "  %.*s\n", (int)n, s);
            s += n + (s[n] == '\n');
        }
        for (s = cmd->summary; *s;) {
            size_t n = strcspn(s, "\n");
            fprintf(f, "      %.*s\n", (int)n, s);
            s += n + (s[n] == '\n');
        }
    }
    fputs("  shell --server URL [--ledger NAME]\n"
          "      an interactive session (login, use, set/get/history/scan/tx, current, help)\n"
          "  audit --server URL --ledger NAME [--interval 10s] [--rehash] [--rounds N]\n"
          "      keep checking that each new checkpoint extends the last trusted one;\n"
          "      prints ALERT and exits 2 the moment one does not\n", f);
}

static int cmd_help(cli_ctx *c)
{
    if (c->args->npos == 1) {
        const cli_cmd *cmd = find_cmd(c->args->pos[0]);
        if (!cmd)
            return cli_usage(c, "unknown command '%s'", c->args->pos[0]);
        cli_print_cmd_usage(stdout, cmd);
        printf("  %s\n", cmd->summary);
        return CLI_EXIT_OK;
    }
    print_help(stdout);
    return CLI_EXIT_OK;
}

/* ---- options ---- */
enum { OARG_NONE, OARG_U64, OARG_STR };

typedef struct cli_opt {
    const char *name;
    unsigned bit;
    int arg;
    size_t off; /* field of cli_args receiving the argument */
} cli_opt;

static const cli_opt OPTIONS[] = {
    { "--json",      CLI_OPT_JSON,      OARG_NONE, 0 },
    { "--tx",        CLI_OPT_TX,        OARG_U64,  offsetof(cli_args, tx) },
    { "--at",        CLI_OPT_AT,        OARG_STR,  offsetof(cli_args, at) },
    { "--rev",       CLI_OPT_REV,       OARG_U64,  offsetof(cli_args, rev) },
    { "--batch",     CLI_OPT_BATCH,     OARG_U64,  offsetof(cli_args, batch) },
    { "--size",      CLI_OPT_SIZE,      OARG_U64,  offsetof(cli_args, size) },
    { "--if-absent", CLI_OPT_IF_ABSENT, OARG_NONE, 0 },
    { "--if-rev",    CLI_OPT_IF_REV,    OARG_U64,  offsetof(cli_args, if_rev) },
    { "--dir",       CLI_OPT_DIR,       OARG_STR,  offsetof(cli_args, dir) },
    { "-D",          CLI_OPT_DIR,       OARG_STR,  offsetof(cli_args, dir) },
    { "--help",      CLI_OPT_HELP,      OARG_NONE, 0 },
    { "-h",          CLI_OPT_HELP,      OARG_NONE, 0 },
    { "--version",   CLI_OPT_VERSION,   OARG_NONE, 0 },
    { "--server",    CLI_OPT_SERVER,    OARG_STR,  offsetof(cli_args, server) },
    { "--ledger",    CLI_OPT_LEDGER,    OARG_STR,  offsetof(cli_args, ledger) },
    { "--server-key", CLI_OPT_SERVER_KEY, OARG_STR, offsetof(cli_args, server_key) },
    { "--role",      CLI_OPT_ROLE,      OARG_STR,  offsetof(cli_args, role) },
    { "--last",      CLI_OPT_LAST,      OARG_U64,  offsetof(cli_args, last) },
    { "--meta",      CLI_OPT_META,      OARG_STR,  offsetof(cli_args, meta) },
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

/* Finds the option named by s ("--tx", "--tx=5", "-D", "-Dpath"); sets
** *inline_val to the attached value, if any. */
static const cli_opt *find_opt(const char *s, const char **inline_val)
{
    size_t n = strcspn(s, "=");
    *inline_val = NULL;
    if (strncmp(s, "-D", 2) == 0 && s[2] != '\0')
        n = 2; /* -DDIR */
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(OPTIONS[i].name) == n && strncmp(OPTIONS[i].name, s, n) == 0) {
            if (s[n] != '\0')
                *inline_val = s + n + (s[n] == '=');
            return &OPTIONS[i];
        }
    return NULL;
}

/* Parses option argv[*i]; may consume argv[*i + 1]. Returns 0 or 64. */
static int parse_opt(cli_args *a, int argc, char **argv, int *i)
{
    const char *s = argv[*i], *val;
    const cli_opt *o = find_opt(s, &val);
    if (!o)
        return cli_usage(NULL, "unknown option '%s' (see tally --help)", s);
    a->seen |= o->bit;
    if (o->arg == OARG_NONE) {
        if (val)
            return cli_usage(NULL, "option %s takes no argument", o->name);
        if (o->bit == CLI_OPT_JSON)
            a->json = 1;
        return 0;
    }
    if (!val) {
        if (*i + 1 >= argc)
            return cli_usage(NULL, "option %s needs an argument", o->name);
        val = argv[++*i];
    }
    if (o->arg == OARG_STR) {
        *(const char **)((char *)a + o->off) = val;
        return 0;
    }
    if (cli_parse_u64(val, (uint64_t *)((char *)a + o->off)) < 0)
        return cli_usage(NULL, "option %s needs a non-negative integer, not '%s'", o->name, val);
    return 0;
}

/* Splits argv into options, the command name and positional arguments. */
static int parse_args(cli_args *a, int argc, char **argv, const char **name)
{
    int only_pos = 0;
    *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!only_pos && strcmp(s, "--") == 0) {
            only_pos = 1;
        } else if (!only_pos && s[0] == '-' && s[1] != '\0') {
            int rc = parse_opt(a, argc, argv, &i);
            if (rc)
                return rc;
        } else if (!*name) {
            *name = s;
        } else {
            a->pos[a->npos++] = argv[i];
        }
    }
    return 0;
}

/* Checks options and arity against the table row. Returns 0 or 64. */
static int check_args(const cli_ctx *c)
{
    const cli_cmd *cmd = c->cmd;
    const cli_args *a = c->args;
    unsigned extra = a->seen & ~(cmd->opts | CLI_OPT_GLOBAL);
    if (extra) {
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (extra & OPTIONS[i].bit)
                return cli_usage(c, "option %s does not apply to '%s'", OPTIONS[i].name,
                                 cmd->name);
    }
    if (a->npos < cmd->min_pos || (cmd->max_pos >= 0 && a->npos > cmd->max_pos))
        return cli_usage(c, "wrong number of arguments for '%s'", cmd->name);
    return 0;
}

static int run(cli_ctx *c)
{
    int rc = check_args(c);
    if (rc)
        return rc;
    if (c->cmd->open != CLI_OPEN_NONE) {
        rc = cli_open(c, c->cmd->open == CLI_OPEN_RO);
        if (rc)
            return rc;
    }
    rc = c->cmd->fn(c);
    if (c->db) {
        int crc = tally_db_close(c->db);
        c->db = NULL;
        if (crc != TALLY_OK && rc == CLI_EXIT_OK)
            rc = cli_fail(crc, "closing %s", c->args->dir);
    }
    return rc;
}

static int finish(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tally: %s: writing standard output\n", tally_strerror(TALLY_EIO));
        if (rc == CLI_EXIT_OK)
            rc = CLI_EXIT_ERROR;
    }
    return rc;
}

static int dispatch(cli_args *a, const char *name)
{
    cli_ctx c = { a, NULL, NULL };
    if (a->seen & CLI_OPT_VERSION) {
        printf("%s\n", TALLY_VERSION_STRING);
        return CLI_EXIT_OK;
    }
    /* Server mode (--server URL) has its own command table (cli_remote.c). */
    void (*help)(FILE *) = a->server ? cli_remote_help : print_help;
    if (!name) {
        if (a->seen & CLI_OPT_HELP) {
            help(stdout);
            return CLI_EXIT_OK;
        }
        fputs("tally: no command given\n", stderr);
        help(stderr);
        return CLI_EXIT_USAGE;
    }
    c.cmd = a->server ? cli_remote_find(name) : find_cmd(name);
    if (!c.cmd) {
        fprintf(stderr, "tally: unknown command '%s'%s\n", name,
                a->server ? " in server mode" : "");
        help(stderr);
        return CLI_EXIT_USAGE;
    }
    if (a->seen & CLI_OPT_HELP) {
        cli_print_cmd_usage(stdout, c.cmd);
        printf("  %s\n", c.cmd->summary);
        return CLI_EXIT_OK;
    }
    return run(&c);
}

/* `shell` and `audit` parse their own options (tools/cli_shell.c,
** tools/cli_audit.c). They may follow global options (`tally --server URL
** shell`): the command word is moved to the front of the vector they get. */
static int run_own_parser(int argc, char **argv, int *rc)
{
    static const char *takes_value[] = { "--server", "--ledger", "--server-key", "-D", NULL };
    for (int i = 1; i < argc; i++) {
        int is_value = 0;
        for (int k = 0; takes_value[k]; k++)
            is_value |= strcmp(argv[i - 1], takes_value[k]) == 0;
        if (is_value || argv[i][0] == '-')
            continue;
        int shell = strcmp(argv[i], "shell") == 0, audit = strcmp(argv[i], "audit") == 0;
        if (!shell && !audit)
            return 0;
        char **v = calloc((size_t)argc + 1, sizeof *v);
        if (!v)
            return 0;
        int n = 0;
        v[n++] = argv[i];
        for (int k = 1; k < argc; k++)
            if (k != i)
                v[n++] = argv[k];
        *rc = shell ? cli_shell_main(n, v) : cli_audit_main(n, v);
        free(v);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int own_rc;
    if (run_own_parser(argc, argv, &own_rc))
        return own_rc;
    cli_args a;
    const char *name;
    memset(&a, 0, sizeof a);
    a.dir = getenv("TALLY_DIR");
    if (!a.dir || !*a.dir)
        a.dir = "./tally-data";
    a.pos = calloc((size_t)argc + 1, sizeof *a.pos);
    if (!a.pos) {
        fprintf(stderr, "tally: %s\n", tally_strerror(TALLY_ENOMEM));
        return CLI_EXIT_ERROR;
    }
    int rc = parse_args(&a, argc, argv, &name);
    if (rc == 0 && (a.seen & CLI_OPT_DIR) && !*a.dir)
        rc = cli_usage(NULL, "-D needs a directory");
    if (rc == 0 && (a.seen & CLI_OPT_SERVER) && !*a.server)
        rc = cli_usage(NULL, "--server needs a URL");
    if (rc == 0 && (a.seen & (CLI_OPT_LEDGER | CLI_OPT_SERVER_KEY)) && !a.server)
        rc = cli_usage(NULL, "--ledger and --server-key apply to server mode (--server URL)");
    if (rc == 0 && a.server && (a.seen & CLI_OPT_DIR))
        rc = cli_usage(NULL, "-D does not apply to server mode (--server URL)");
    if (rc == 0)
        rc = dispatch(&a, name);
    free(a.pos);
    return finish(rc);
}
