#!/usr/bin/env bash
# pg_compare.sh — PostgreSQL doing what QLDB's migration guide suggests for a
# "ledger" on PostgreSQL: an append-only table whose rows form a SHA-256 hash
# chain (hash = sha256(prev_hash || key || value)), filled by 64 connections
# inserting single rows with synchronous, fsync'ed commits. The number to
# compare with Tally's single-entry durable transactions over HTTP.
#
#   bench/pg_compare.sh [-c CLIENTS] [-j THREADS] [-T SECONDS] [--no-baseline]
#
# Defaults: -c 64 -j 2 -T 5. Prints its progress and results; the last lines
# are machine-readable: `PG_TPS=<chained tps>` and (unless --no-baseline)
# `PG_PLAIN_TPS=<tps of the same inserts into a table without the chain>`.
#
# Setup: uses the newest /usr/lib/postgresql/*/bin. If PostgreSQL is missing
# it is installed with apt-get when running as root; otherwise the apt line is
# printed and the script exits 2 (skipped). A private cluster is created in a
# temporary directory (owned by `postgres` when run as root, since initdb and
# postgres refuse to run as root), listening on 127.0.0.1 on a free port and on
# a Unix socket in that directory, with fsync=on and synchronous_commit=on
# (PostgreSQL's defaults, set explicitly). The cluster is stopped and the
# directory removed on every exit path. Bounded: every wait has a limit.
#
# Exit: 0 measured, 2 skipped (no PostgreSQL and not root), 1 failure.
set -euo pipefail

CLIENTS=64
THREADS=2
SECS=5
BASELINE=1
while [ $# -gt 0 ]; do
    case "$1" in
        -c) CLIENTS="$2"; shift 2 ;;
        -j) THREADS="$2"; shift 2 ;;
        -T) SECS="$2"; shift 2 ;;
        --no-baseline) BASELINE=0; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "pg_compare: unknown argument $1" >&2; exit 64 ;;
    esac
done

say() { echo "pg_compare: $*"; }

# ---- PostgreSQL present? ----
find_bindir() { # the highest major version that has initdb, pg_ctl and pgbench
    local d best=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pgbench" ] && best="$d"
    done
    echo "$best"
}

BIN="$(find_bindir)"
if [ -z "$BIN" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        say "PostgreSQL not installed: apt-get install -y postgresql"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y postgresql >/dev/null
        BIN="$(find_bindir)"
    else
        say "PostgreSQL not installed and not root; install it with:"
        say "  sudo apt-get install -y postgresql"
        say "SKIPPED"
        echo "PG_TPS=skipped"
        exit 2
    fi
fi
[ -n "$BIN" ] || { say "no initdb/pg_ctl/pgbench under /usr/lib/postgresql/*/bin"; exit 1; }
PGVER="$("$BIN/postgres" --version)"

# ---- who runs the cluster ----
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { say "user postgres missing (the Debian package creates it)"; exit 1; }
    if command -v runuser >/dev/null 2>&1; then
        as_pg() { runuser -u postgres -- "$@"; }
    else
        as_pg() { su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; }
    fi
    RUNAS=postgres
else
    as_pg() { "$@"; }
    RUNAS="$(id -un)"
fi

# ---- a free port on 127.0.0.1 ----
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=""
for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 30000 ))
    if port_free "$p"; then PORT="$p"; break; fi
done
[ -n "$PORT" ] || { say "no free port found"; exit 1; }

# ---- private cluster in a temp dir, always removed ----
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tally-pg.XXXXXX")"
chmod 0755 "$TMP"
STARTED=0
cleanup() {
    if [ "$STARTED" -eq 1 ]; then
        as_pg "$BIN/pg_ctl" -D "$TMP/data" -m fast -t 60 -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$RUNAS" = postgres ] && chown postgres: "$TMP"

say "$PGVER, binaries $BIN, cluster in $TMP as user $RUNAS, 127.0.0.1:$PORT"
as_pg "$BIN/initdb" -D "$TMP/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
as_pg "$BIN/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -t 60 -w \
    -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
        -c full_page_writes=on -c wal_sync_method=fdatasync -c max_connections=$((CLIENTS + 20)) \
        -c shared_buffers=256MB" start >/dev/null
STARTED=1

PSQL=(as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -At -c "SHOW fsync; SHOW synchronous_commit; SHOW wal_sync_method;" |
    paste -sd' ' | sed 's/^/pg_compare: fsync, synchronous_commit, wal_sync_method = /'

# The QLDB-migration shape: an append-only table, each row chained to the
# previous one by SHA-256. A one-row chain head, locked FOR UPDATE by each
# insert, serializes the chain (the point of a hash chain); the id comes from
# the head too, so ids are gap-free and follow the chain order.
"${PSQL[@]}" <<'SQL'
CREATE TABLE chain_head (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_id  bigint  NOT NULL,
    hash     bytea   NOT NULL
);
INSERT INTO chain_head VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE ledger (
    id        bigint PRIMARY KEY,
    key       bytea  NOT NULL,
    value     bytea  NOT NULL,
    prev_hash bytea  NOT NULL,
    hash      bytea  NOT NULL,
    ts        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_key ON ledger (key, id);

CREATE FUNCTION ledger_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    h bytea;
    n bigint;
BEGIN
    SELECT last_id, hash INTO n, h FROM chain_head WHERE one FOR UPDATE;
    NEW.id        := n + 1;
    NEW.prev_hash := h;
    NEW.hash      := sha256(h || NEW.key || NEW.value);
    UPDATE chain_head SET last_id = NEW.id, hash = NEW.hash WHERE one;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_chain BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_chain();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- the same rows without the chain: what PostgreSQL does when nothing serializes
CREATE TABLE plain (
    id    bigserial PRIMARY KEY,
    key   bytea NOT NULL,
    value bytea NOT NULL,
    hash  bytea NOT NULL,
    ts    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plain_key ON plain (key, id);
SQL

# 32-byte keys (a SHA-256), 128-byte values (8 x 16-byte MD5), one row per
# transaction (pgbench autocommits each statement).
cat > "$TMP/chain.sql" <<'SQL'
\set r random(1, 1000000000000)
INSERT INTO ledger (key, value) VALUES (sha256(int8send(:r)), decode(repeat(md5(:r::text), 4), 'hex'));
SQL
cat > "$TMP/plain.sql" <<'SQL'
\set r random(1, 1000000000000)
INSERT INTO plain (key, value, hash) VALUES (sha256(int8send(:r)), decode(repeat(md5(:r::text), 4), 'hex'), sha256(sha256(int8send(:r)) || decode(repeat(md5(:r::text), 4), 'hex')));
SQL
[ "$RUNAS" = postgres ] && chown postgres: "$TMP"/*.sql

run_pgbench() { # script label: prints the pgbench summary, sets RESULT to the tps
    RESULT=""
    if ! as_pg timeout $((SECS + 120)) "$BIN/pgbench" -n -h "$TMP" -p "$PORT" -U postgres \
           -c "$CLIENTS" -j "$THREADS" -T "$SECS" -f "$1" postgres >"$TMP/$2.out" 2>&1; then
        sed "s/^/pg_compare:   /" "$TMP/$2.out"
        return 1
    fi
    grep -E "^(number of transactions actually processed|latency average|tps)" "$TMP/$2.out" |
        sed "s/^/pg_compare:   [$2] /"
    RESULT="$(sed -n "s/^tps = \([0-9.]*\) (without initial connection time).*/\1/p" "$TMP/$2.out")"
}

say "pgbench -n -c $CLIENTS -j $THREADS -T $SECS, hash-chained inserts (1 row per synchronous commit)"
run_pgbench "$TMP/chain.sql" chain
TPS="$RESULT"
say "checking the chain"
"${PSQL[@]}" -At <<'SQL' | sed 's/^/pg_compare:   /'
SELECT 'rows ' || count(*) || ', last id ' || coalesce(max(id), 0) ||
       ', links broken ' || (SELECT count(*) FROM ledger l JOIN ledger p ON p.id = l.id - 1
                             WHERE l.prev_hash <> p.hash
                                OR l.hash <> sha256(l.prev_hash || l.key || l.value))
FROM ledger;
SQL
PLAIN=""
if [ "$BASELINE" -eq 1 ]; then
    say "baseline: the same inserts into a table without the chain"
    run_pgbench "$TMP/plain.sql" plain
    PLAIN="$RESULT"
fi
say "$PGVER: hash-chained inserts $TPS tps${PLAIN:+, unchained $PLAIN tps} ($CLIENTS connections, $THREADS pgbench threads, ${SECS} s, fsync=on, synchronous_commit=on)"
echo "PG_TPS=$TPS"
[ -n "$PLAIN" ] && echo "PG_PLAIN_TPS=$PLAIN"
exit 0
