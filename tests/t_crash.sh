#!/usr/bin/env bash
# t_crash.sh — kill -9 a `tally set -` writer at random moments, over and over
# on one data directory, and check durability and atomicity after each crash.
#
# Each round R: an endless stream of KEY<TAB>VALUE lines (key rRkI, I = 1, 2,
# ...; value "v-rRkI-" + a pad whose length depends on I) is piped into
#   $TALLY_BIN -D DIR set - --batch B        (B random in 1..20)
# whose stdout (the acknowledged tx ids) goes to a file; after a random
# 50-400 ms the writer gets SIGKILL. Then:
#   - `tally verify --json` prints ok true and exits 0 (see the torn-tail note);
#   - the acknowledged ids are consecutive, starting right after the ledger
#     size before the round;
#   - `tally scan rRk --json`: the round's keys present are exactly lines
#     1..m*B for some m >= acked (every acknowledged tx whole, durable txs a
#     prefix, no partial tx), each key in tx prev+1+(I-1)/B, with its value;
#   - `tally state --json` says tx == prev + m.
# The rounds run on one directory, so each round's open recovers the previous
# crash. At the end a full scan re-checks every round's keys, and a final
# verify runs (with $TALLY_ASAN_BIN too if it is set and exists).
#
# Torn-tail note: SIGKILL can, rarely, stop a write() part way (the kernel
# checks for fatal signals between pages). verify is read-only and reports an
# incomplete last record as a failure until an open truncates it. Such a round
# is counted and printed; it passes only if `tally state` (an open: recovery)
# followed by verify is then ok.
#
# Env: TALLY_BIN (default build/tally), TALLY_ASAN_BIN (optional),
#      TALLY_LONG=1 -> 1000 rounds (default 24), TALLY_CRASH_ROUNDS=N overrides,
#      TALLY_SEED=N for a reproducible run.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
TALLY_BIN=${TALLY_BIN:-$here/build/tally}
ASAN_BIN=${TALLY_ASAN_BIN:-}
if [ ! -x "$TALLY_BIN" ]; then
    echo "t_crash: no CLI at $TALLY_BIN" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "t_crash: python3 needed" >&2; exit 1; }
# the interpreter itself (a version-manager shim can cost 0.5 s per start)
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
[ -x "$PY" ] || PY=python3

rounds=24
[ "${TALLY_LONG:-0}" != "0" ] && [ -n "${TALLY_LONG:-}" ] && rounds=1000
rounds=${TALLY_CRASH_ROUNDS:-$rounds}
seed=${TALLY_SEED:-$(( $$ ^ $(date +%s) ))}
RANDOM=$seed

tmp=$(mktemp -d /tmp/tally-crash.XXXXXX)
writer=""
cleanup() {
    if [ -n "$writer" ]; then kill -9 "$writer" 2>/dev/null; wait "$writer" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
dir=$tmp/db

fail() {
    echo "t_crash: FAIL (seed $seed, round ${round:-?}): $*" >&2
    exit 1
}

# The checker: argv = mode round prev acked B scanfile [statefile]
cat > "$tmp/check.py" <<'EOF'
import json, sys

def pad(i):
    return "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: (i * 7) % 50]

def value(r, i):
    return "v-r%dk%d-%s" % (r, i, pad(i))

def check_round(r, prev, acked, b, keys, where):
    """keys: list of {key, value, tx} of round r. Returns m (txs of the round)."""
    pre = "r%dk" % r
    got = {}
    for k in keys:
        name = k["key"]
        if not name.startswith(pre) or not name[len(pre):].isdigit():
            continue
        i = int(name[len(pre):])
        if i in got:
            sys.exit("%s: key %s listed twice" % (where, name))
        got[i] = k
    n = len(got)
    if n % b != 0:
        sys.exit("%s: round %d has %d keys, not a multiple of the batch %d: a partial transaction"
                 % (where, r, n, b))
    if sorted(got) != list(range(1, n + 1)):
        missing = sorted(set(range(1, max(got) + 1)) - set(got))[:5]
        sys.exit("%s: round %d keys are not lines 1..%d (missing e.g. %s)" % (where, r, n, missing))
    m = n // b
    if m < acked:
        sys.exit("%s: round %d: %d txs acknowledged but only %d present (%d keys)"
                 % (where, r, acked, m, n))
    for i, k in got.items():
        want_tx = prev + 1 + (i - 1) // b
        if k["tx"] != want_tx:
            sys.exit("%s: key r%dk%d is in tx %d, expected tx %d" % (where, r, i, k["tx"], want_tx))
        if k["value"] != value(r, i):
            sys.exit("%s: key r%dk%d has value %r, expected %r" % (where, r, i, k["value"], value(r, i)))
    return m

mode = sys.argv[1]
if mode == "round":
    r, prev, acked, b = (int(x) for x in sys.argv[2:6])
    scan = json.load(open(sys.argv[6]))
    state = json.load(open(sys.argv[7]))
    m = check_round(r, prev, acked, b, scan["keys"], "after round %d" % r)
    if state["tx"] != prev + m:
        sys.exit("round %d: state says tx %d, but the round's keys say %d + %d"
                 % (r, state["tx"], prev, m))
    print(m)
elif mode == "final":
    # argv: final roundsfile scanfile statefile ; roundsfile lines: r prev acked b m
    scan = json.load(open(sys.argv[3]))
    state = json.load(open(sys.argv[4]))
    byround = {}
    for k in scan["keys"]:
        name = k["key"]
        r = int(name[1:name.index("k")])
        byround.setdefault(r, []).append(k)
    total = 0
    seen = set()
    for line in open(sys.argv[2]):
        r, prev, acked, b, m = (int(x) for x in line.split())
        seen.add(r)
        got = check_round(r, prev, acked, b, byround.get(r, []), "final scan")
        if got != m:
            sys.exit("final scan: round %d now has %d txs, had %d right after its crash" % (r, got, m))
        total += m
    extra = set(byround) - seen
    if extra:
        sys.exit("final scan: keys of unknown rounds %s" % sorted(extra)[:5])
    if state["tx"] != total:
        sys.exit("final: state tx %d, rounds account for %d" % (state["tx"], total))
    print(total)
EOF

# verify_ok BIN: tally verify --json must say ok and exit 0.
verify_ok() {
    local bin=$1 out rc
    out=$("$bin" -D "$dir" verify --json 2>"$tmp/verify.err")
    rc=$?
    if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q '"ok":true'; then return 0; fi
    echo "$out" > "$tmp/verify.out"
    return 1
}

prev=0
acked_total=0
torn_rounds=0
extra_total=0
: > "$tmp/rounds"
start_s=$(date +%s)
for round in $(seq 1 "$rounds"); do
    B=$(( 1 + RANDOM % 20 ))
    delay_ms=$(( 50 + RANDOM % 351 ))
    ack=$tmp/ack.$round
    # The generator dies of SIGPIPE once the writer is gone.
    awk -v R="$round" 'BEGIN {
        pad = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        for (i = 1; ; i++) printf "r%dk%d\tv-r%dk%d-%s\n", R, i, R, i, substr(pad, 1, (i * 7) % 50)
    }' 2>/dev/null | "$TALLY_BIN" -D "$dir" set - --batch "$B" > "$ack" 2>"$tmp/writer.err" &
    writer=$!
    sleep "$(printf '%d.%03d' $(( delay_ms / 1000 )) $(( delay_ms % 1000 )))"
    kill -9 "$writer" 2>/dev/null
    wait "$writer" 2>/dev/null
    wrc=$?
    writer=""
    wait 2>/dev/null # the generator
    if [ "$wrc" -ne 137 ]; then
        fail "the writer exited with status $wrc before the kill: $(head -c 500 "$tmp/writer.err")"
    fi

    # acknowledged ids: complete lines only, consecutive from prev+1
    # (a last line without its newline was cut by the kill: not an ack)
    if [ -s "$ack" ] && [ -n "$(tail -c 1 "$ack")" ]; then sed -i '$d' "$ack"; fi
    acked=$(awk -v prev="$prev" '
        { n++; if ($0 !~ /^[0-9]+$/ || $1 != prev + n) { print "BAD " $0 " (expected " prev + n ")"; bad = 1; exit } }
        END { if (!bad) print n + 0 }' "$ack")
    case $acked in
    BAD*) fail "acknowledged ids not consecutive: got ${acked#BAD }";;
    esac

    if ! verify_ok "$TALLY_BIN"; then
        if grep -q 'incomplete or damaged last record' "$tmp/verify.out"; then
            torn_rounds=$((torn_rounds + 1))
            echo "t_crash: round $round: torn tail after the kill: $(cat "$tmp/verify.out")"
            "$TALLY_BIN" -D "$dir" state --json > /dev/null 2>&1 ||
                fail "state (recovery) after a torn tail failed"
            verify_ok "$TALLY_BIN" || fail "verify after recovery: $(cat "$tmp/verify.out") $(cat "$tmp/verify.err")"
        else
            fail "verify after the kill: $(cat "$tmp/verify.out") $(head -c 500 "$tmp/verify.err")"
        fi
    fi

    if [ "$prev" -eq 0 ] && [ ! -d "$dir/log" ]; then
        # killed before the ledger was even created
        [ "$acked" -eq 0 ] || fail "$acked acknowledged txs but no ledger"
        echo "$round 0 0 $B 0" >> "$tmp/rounds"
        continue
    fi
    "$TALLY_BIN" -D "$dir" scan "r${round}k" --json > "$tmp/scan" 2>"$tmp/scan.err" ||
        fail "scan failed: $(head -c 500 "$tmp/scan.err")"
    "$TALLY_BIN" -D "$dir" state --json > "$tmp/state" 2>"$tmp/state.err" ||
        fail "state failed: $(head -c 500 "$tmp/state.err")"
    m=$("$PY" "$tmp/check.py" round "$round" "$prev" "$acked" "$B" "$tmp/scan" "$tmp/state") ||
        fail "check: batch $B, $acked acknowledged (ack file: $(tr '\n' ' ' < "$ack" | tail -c 200))"
    echo "$round $prev $acked $B $m" >> "$tmp/rounds"
    extra_total=$((extra_total + m - acked))
    prev=$((prev + m))
    acked_total=$((acked_total + acked))
    rm -f "$ack"
done

# every round's keys are still there, whole, after all the later crashes
if [ -d "$dir/log" ]; then
    "$TALLY_BIN" -D "$dir" scan "" --json > "$tmp/scan" 2>"$tmp/scan.err" || fail "final scan: $(cat "$tmp/scan.err")"
    "$TALLY_BIN" -D "$dir" state --json > "$tmp/state" || fail "final state"
    total=$("$PY" "$tmp/check.py" final "$tmp/rounds" "$tmp/scan" "$tmp/state") || fail "final check"
    verify_ok "$TALLY_BIN" || fail "final verify: $(cat "$tmp/verify.out")"
    if [ -n "$ASAN_BIN" ] && [ -x "$ASAN_BIN" ]; then
        verify_ok "$ASAN_BIN" || fail "final verify (ASan CLI): $(cat "$tmp/verify.out") $(head -c 2000 "$tmp/verify.err")"
        "$ASAN_BIN" -D "$dir" scan "" --json > "$tmp/scan2" 2>"$tmp/scan.err" || fail "final scan (ASan CLI): $(head -c 2000 "$tmp/scan.err")"
        cmp -s "$tmp/scan" "$tmp/scan2" || fail "the ASan CLI scans differently"
    fi
else
    total=0
fi
echo "t_crash: $rounds rounds (seed $seed), $acked_total txs acknowledged, $total txs durable" \
     "($extra_total durable but unacknowledged), $torn_rounds torn tails, $(( $(date +%s) - start_s )) s"
exit 0
