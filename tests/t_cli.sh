#!/usr/bin/env bash
# t_cli.sh — end-to-end test of the CLI contract in README.md ("The CLI"):
# outputs (plain and --json, with exact key order), exit codes, stderr lines,
# time travel, tombstones, history, scan, `set -` batching and flushing,
# conditional writes, tx/state, proofs verified independently in Python
# (RFC 9162 §2.1.3.2 / §2.1.4.2 with hashlib), the RFC 6962 merkle tools,
# verify/tampering, reindex, locking, usage errors, limits, non-UTF-8 keys
# and TALLY_DIR.
#
# Env: TALLY_ASAN_BIN (default build/asan/tally; used for most commands, so
# memory errors surface) and TALLY_BIN (default build/tally; used for setup
# loops and as the fallback when the ASan binary is missing).
# Prints "FAIL: <what>: expected <x> got <y>" per failed assertion and one
# closing summary line; exits 1 if any assertion failed.
set -u
cd "$(dirname "$0")/.." || exit 2

T="${TALLY_BIN:-build/tally}"
A="${TALLY_ASAN_BIN:-build/asan/tally}"
case "$T" in /*) ;; *) T="$PWD/$T" ;; esac
case "$A" in /*) ;; *) A="$PWD/$A" ;; esac
[ -x "$T" ] || { echo "FAIL: setup: expected executable $T got missing"; echo "t_cli: 0 passed, 1 failed"; exit 1; }
[ -x "$A" ] || A="$T"
B="$A" # the binary under test for most commands
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
unset TALLY_DIR
command -v python3 >/dev/null || { echo "FAIL: setup: expected python3 got missing"; echo "t_cli: 0 passed, 1 failed"; exit 1; }

W=$(mktemp -d /tmp/tally-cli.XXXXXX) || exit 2
WRITER_PID=""
cleanup() {
    exec 7>&- 8<&- 2>/dev/null
    if [ -n "$WRITER_PID" ]; then kill "$WRITER_PID" 2>/dev/null; wait "$WRITER_PID" 2>/dev/null; fi
    rm -rf "$W"
}
trap cleanup EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { # what, expected, got
    fail=$((fail + 1))
    printf 'FAIL: %s: expected %s got %s\n' "$1" "$(printf '%q' "$2")" "$(printf '%q' "$3")"
}
check_eq() { if [ "$2" = "$3" ]; then ok; else bad "$1" "$2" "$3"; fi; }
check_ne() { if [ "$2" != "$3" ]; then ok; else bad "$1" "something other than $2" "$3"; fi; }
check_match() { # what, ERE, got
    if printf '%s' "$3" | grep -Eq -- "$2"; then ok; else bad "$1" "match /$2/" "$3"; fi
}

# run [-b BIN] [-i STDIN_STRING] ARGS... -> OUT (stdout), ERR (stderr), RC
run() {
    local bin="$B" input="" has_input=0
    while :; do
        case "${1:-}" in
        -b) bin="$2"; shift 2 ;;
        -i) input="$2"; has_input=1; shift 2 ;;
        *) break ;;
        esac
    done
    if [ "$has_input" = 1 ]; then
        printf '%s' "$input" >"$W/stdin"
    else
        : >"$W/stdin"
    fi
    OUT=$("$bin" "$@" <"$W/stdin" 2>"$W/stderr")
    RC=$?
    ERR=$(cat "$W/stderr")
    if grep -Eq 'Sanitizer|runtime error:' "$W/stderr"; then
        bad "sanitizer clean: tally $*" "no sanitizer report" "$(head -c 400 "$W/stderr")"
    fi
}
check_rc() { check_eq "$1: exit code" "$2" "$RC"; }
# a non-zero exit (other than usage) prints exactly one line on stderr, "tally: ..."
check_err1() {
    local n
    n=$(printf '%s\n' "$ERR" | grep -c '')
    if [ -n "$ERR" ] && [ "$n" = 1 ] && [ "${ERR#tally: }" != "$ERR" ]; then ok; else bad "$1: one 'tally: ...' line on stderr" "1 line" "$ERR"; fi
}
check_usage() { # exit 64, a message and a usage line on stderr, nothing on stdout
    check_eq "$1: exit code" 64 "$RC"
    check_match "$1: stderr has a 'tally:' message" '^tally: ' "$ERR"
    check_match "$1: stderr has usage" '^usage: ' "$ERR"
    check_eq "$1: stdout empty" "" "$OUT"
}

# Python helpers: hashing and RFC 9162 verification, written from the RFC.
cat >"$W/h.py" <<'EOF'
import hashlib, json, sys
def H(b): return hashlib.sha256(b).digest()
def leaf(d): return H(b"\x00" + d)
def node(l, r): return H(b"\x01" + l + r)
def mth(leaves):  # leaves: list of leaf HASHES
    n = len(leaves)
    if n == 0: return H(b"")
    if n == 1: return leaves[0]
    k = 1
    while k * 2 < n: k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))
def ver_incl(index, size, leaf_hash, proof, root):
    if index >= size: return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1; sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root
def ver_cons(m, n, old_root, root, proof):
    if m < 1 or m > n: return False
    if m == n: return proof == [] and old_root == root
    if m & (m - 1) == 0: proof = [old_root] + proof
    if not proof: return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1; sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            fr = node(c, fr); sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1; sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1; sn >>= 1
    return fr == old_root and sr == root and sn == 0
def ub(h): return bytes.fromhex(h)
def ishex64(s): return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)
EOF
cat >>"$W/h.py" <<'EOF'
def run_checks(path):
    # records: what, expected, json text, python expression (NUL-separated)
    f = open(path, "rb").read().split(b"\0")
    npass = nfail = 0
    for k in range(0, len(f) - 3, 4):
        what, exp, js, expr = (x.decode("utf-8", "surrogateescape") for x in f[k:k + 4])
        try:
            o = json.loads(js)
            try:
                got = str(eval(expr))
            except Exception as e:
                got = "<eval error: %r>" % e
        except Exception as e:
            got = "<not JSON: %s: %r>" % (e, js[:200])
        if got == exp:
            npass += 1
        else:
            nfail += 1
            print("FAIL: %s: expected %r got %r" % (what, exp, got))
    print("%d %d" % (npass, nfail), file=sys.stderr)
EOF
# Python is slow to start here, so JSON assertions are recorded and evaluated
# by one python3 process at the end (their FAIL lines come out there):
# jcheck WHAT EXPECTED JSON EXPR — str(eval(EXPR)) with o = json.loads(JSON)
# (and the helpers above) must equal EXPECTED.
JCHECKS="$W/jchecks"
: >"$JCHECKS"
jcheck() { printf '%s\0%s\0%s\0%s\0' "$1" "$2" "$3" "$4" >>"$JCHECKS"; }
# jfield JSON KEY: the first "KEY":value (string or number) of a compact JSON object
jfield() {
    printf '%s' "$1" | grep -oE "\"$2\":(\"[^\"]*\"|[0-9]+)" | head -n 1 | sed -E "s/^\"$2\"://; s/^\"//; s/\"\$//"
}

D="$W/d"
t0=$(date +%s)

# ---------------------------------------------------------------- --help / --version
run --help
check_rc "--help" 0
check_match "--help prints usage on stdout" '^usage: tally' "$OUT"
check_eq "--help: stderr empty" "" "$ERR"
run --version
check_rc "--version" 0
check_match "--version prints a version" '^[^ ]*[0-9]+\.[0-9]+' "$OUT"
check_eq "--version: one line" 1 "$(printf '%s\n' "$OUT" | grep -c '')"
run help get
check_rc "help get" 0
check_match "help get shows get usage" 'get KEY' "$OUT"

# ---------------------------------------------------------------- set
run -D "$D" set a 1 b 2
check_rc "set a 1 b 2 (first tx)" 0
check_eq "set a 1 b 2 prints tx id" "1" "$OUT"
check_eq "set: stderr empty on success" "" "$ERR"
run -D "$D" --json set c 3
check_rc "--json set c 3" 0
check_eq "--json set prints {\"tx\":N}" '{"tx":2}' "$OUT"
jcheck "--json set key order" "['tx']" "$OUT" 'list(o)'
run -D "$D" set a 11 c 33 d 4
check_eq "set ids increase by one" "3" "$OUT"
run -D "$D" set --json a 111
check_eq "--json after the command (set --json a 111)" '{"tx":4}' "$OUT"
# state so far: tx1 a=1 b=2; tx2 c=3; tx3 a=11 c=33 d=4; tx4 a=111

# ---------------------------------------------------------------- get
run -D "$D" get a
check_rc "get a" 0
check_eq "get a (latest)" "111" "$OUT"
run -D "$D" get a --tx 1
check_eq "get a --tx 1" "1" "$OUT"
run -D "$D" get a --tx 2
check_eq "get a --tx 2 (unchanged since tx 1)" "1" "$OUT"
run -D "$D" get a --tx 3
check_eq "get a --tx 3" "11" "$OUT"
run -D "$D" get a --rev 2
check_rc "get a --rev 2" 0
check_eq "get a --rev 2" "11" "$OUT"
run -D "$D" get a --rev 1
check_eq "get a --rev 1" "1" "$OUT"
run -D "$D" get a --rev 9
check_rc "get a --rev 9 (no such revision)" 1
check_err1 "get a --rev 9"
run -D "$D" get d --tx 2
check_rc "get d --tx 2 (before d existed)" 1
check_eq "get d --tx 2: stdout empty" "" "$OUT"
check_err1 "get d --tx 2"
run -D "$D" get nosuchkey
check_rc "get missing key" 1
check_eq "get missing key: stdout empty" "" "$OUT"
check_err1 "get missing key"
run -D "$D" --json get nosuchkey
check_rc "--json get missing key" 1
check_err1 "--json get missing key"
run -D "$D" get a --tx 99
check_rc "get a --tx 99 (beyond the ledger)" 1
check_err1 "get a --tx 99"

run -D "$D" --json get a
check_rc "--json get a" 0
GA="$OUT"
jcheck "--json get key order" "['key', 'value', 'tx', 'rev', 'ts']" "$GA" 'list(o)'
jcheck "--json get values" "a|111|4|3" "$GA" '"%s|%s|%s|%s" % (o["key"], o["value"], o["tx"], o["rev"])'
check_match "--json get ts is RFC 3339 UTC" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$' "$(jfield "$GA" ts)"
jcheck "--json get types (tx,rev int)" "True" "$GA" 'type(o["tx"]) is int and type(o["rev"]) is int'
run -D "$D" --json get a --tx 3
jcheck "--json get a --tx 3" "a|11|3|2" "$OUT" '"%s|%s|%s|%s" % (o["key"], o["value"], o["tx"], o["rev"])'

# --at TIME: the "ts" of a version selects it; earlier than tx 1 -> not found
run -D "$D" --json get a --tx 1
TS1=$(jfield "$OUT" ts)
run -D "$D" --json get a --tx 3
TS3=$(jfield "$OUT" ts)
run -D "$D" get a --at "$TS1"
check_rc "get a --at <ts of tx 1>" 0
check_eq "get a --at <ts of tx 1> ($TS1)" "1" "$OUT"
run -D "$D" get a --at "$TS3"
check_eq "get a --at <ts of tx 3> ($TS3)" "11" "$OUT"
# the same instant as tx 1 written with a +01:00 offset
TS1OFF=$(python3 -c '
import sys, datetime
s = sys.argv[1]; base, frac = s[:19], ""
if "." in s: frac = "." + s[20:].rstrip("Z")
t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S") + datetime.timedelta(hours=1)
print(t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "+01:00")' "$TS1")
run -D "$D" get a --at "$TS1OFF"
check_rc "get a --at <ts of tx 1 as +01:00 offset> ($TS1OFF)" 0
check_eq "get a --at <ts of tx 1 as +01:00 offset> ($TS1OFF)" "1" "$OUT"
run -D "$D" get a --at "2000-01-01T00:00:00Z"
check_rc "get a --at before the first tx" 1
check_eq "get a --at before the first tx: stdout empty" "" "$OUT"
check_err1 "get a --at before the first tx"
run -D "$D" get a --at "2999-01-01T00:00:00Z"
check_eq "get a --at far future = latest" "111" "$OUT"

# ---------------------------------------------------------------- del / history
run -D "$D" del b
check_rc "del b" 0
check_eq "del b prints tx id" "5" "$OUT"
run -D "$D" get b
check_rc "get b after del" 1
check_eq "get b after del: stdout empty" "" "$OUT"
check_err1 "get b after del"
run -D "$D" get b --tx 4
check_eq "get b --tx 4 (before the del)" "2" "$OUT"
run -D "$D" del b
check_rc "del of an already deleted key" 1
check_err1 "del of an already deleted key"
run -D "$D" del nosuchkey
check_rc "del missing key" 1
check_err1 "del missing key"
run -D "$D" --json state
check_eq "failed del writes nothing" '{"tx":5' "${OUT%%,*}"
run -D "$D" --json del d
check_eq "--json del" '{"tx":6}' "$OUT"
run -D "$D" --json history b
check_rc "--json history b" 0
HB="$OUT"
jcheck "history key order" "['key', 'revisions']" "$HB" 'list(o)'
jcheck "history revision key order" "[['rev', 'tx', 'value', 'deleted', 'ts'], ['rev', 'tx', 'value', 'deleted', 'ts']]" "$HB" '[list(r) for r in o["revisions"]]'
jcheck "history b revisions (rev,tx,value,deleted)" "[(1, 1, '2', False), (2, 5, '', True)]" "$HB" '[(r["rev"], r["tx"], r["value"], r["deleted"]) for r in o["revisions"]]'
jcheck "history b key" "b" "$HB" 'o["key"]'
run -D "$D" --json history a
jcheck "history a revisions 1..n" "[(1, 1, '1', False), (2, 3, '11', False), (3, 4, '111', False)]" "$OUT" '[(r["rev"], r["tx"], r["value"], r["deleted"]) for r in o["revisions"]]'
jcheck "history ts non-decreasing and equal to get ts" "True" "$OUT" '[r["ts"] for r in o["revisions"]][0] == "'"$TS1"'" and [r["ts"] for r in o["revisions"]][1] == "'"$TS3"'"'
run -D "$D" history b
check_rc "history b (plain)" 0
check_eq "history b plain: 2 lines" 2 "$(printf '%s\n' "$OUT" | grep -c '')"
check_match "history b plain marks the deletion" 'deleted' "$(printf '%s\n' "$OUT" | sed -n 2p)"
run -D "$D" history nosuchkey
check_rc "history of a missing key" 1
check_err1 "history of a missing key"
# set after delete: a new revision
run -D "$D" set b 222
run -D "$D" --json get b
jcheck "get b after re-set: rev 3" "222|7|3" "$OUT" '"%s|%s|%s" % (o["value"], o["tx"], o["rev"])'

# ---------------------------------------------------------------- scan
S="$W/s"
"$T" -D "$S" set b 1 abc 2 >/dev/null         # tx 1
"$T" -D "$S" set a 3 ab 4 B 5 a- 6 aa 7 >/dev/null # tx 2
"$T" -D "$S" del aa >/dev/null                # tx 3
"$T" -D "$S" set ab 44 >/dev/null             # tx 4
run -D "$S" scan a
check_rc "scan a" 0
check_eq "scan a (byte order, deleted skipped)" "$(printf 'a\t3\na-\t6\nab\t44\nabc\t2')" "$OUT"
run -D "$S" scan ab
check_eq "scan ab" "$(printf 'ab\t44\nabc\t2')" "$OUT"
run -D "$S" scan abc
check_eq "scan abc" "$(printf 'abc\t2')" "$OUT"
run -D "$S" scan
check_rc "scan (no prefix)" 0
check_eq "scan (all keys, byte order)" "$(printf 'B\t5\na\t3\na-\t6\nab\t44\nabc\t2\nb\t1')" "$OUT"
run -D "$S" scan ""
check_eq "scan '' = all" "$(printf 'B\t5\na\t3\na-\t6\nab\t44\nabc\t2\nb\t1')" "$OUT"
run -D "$S" scan zzz
check_rc "scan with no match" 0
check_eq "scan with no match prints nothing" "" "$OUT"
run -D "$S" scan a --tx 1
check_eq "scan a --tx 1 (old state)" "$(printf 'abc\t2')" "$OUT"
run -D "$S" scan a --tx 2
check_eq "scan a --tx 2 (aa not yet deleted, ab old value)" "$(printf 'a\t3\na-\t6\naa\t7\nab\t4\nabc\t2')" "$OUT"
run -D "$S" scan a --tx 99
check_rc "scan --tx beyond the ledger" 1
check_err1 "scan --tx beyond the ledger"
run -D "$S" --json scan a
check_rc "--json scan a" 0
jcheck "--json scan key order" "['prefix', 'tx', 'keys']" "$OUT" 'list(o)'
jcheck "--json scan prefix,tx" "a|4" "$OUT" '"%s|%s" % (o["prefix"], o["tx"])'
jcheck "--json scan item key order" "True" "$OUT" 'all(list(k) == ["key", "value", "tx", "rev"] for k in o["keys"])'
jcheck "--json scan items" "[('a', '3', 2, 1), ('a-', '6', 2, 1), ('ab', '44', 4, 2), ('abc', '2', 1, 1)]" "$OUT" '[(k["key"], k["value"], k["tx"], k["rev"]) for k in o["keys"]]'
run -D "$S" --json scan a --tx 2
jcheck "--json scan a --tx 2: tx field" "2" "$OUT" 'o["tx"]'
jcheck "--json scan a --tx 2 items" "[('a', '3', 2, 1), ('a-', '6', 2, 1), ('aa', '7', 2, 1), ('ab', '4', 2, 1), ('abc', '2', 1, 1)]" "$OUT" '[(k["key"], k["value"], k["tx"], k["rev"]) for k in o["keys"]]'
run -D "$S" --json scan zzz
check_eq "--json scan with no match" '{"prefix":"zzz","tx":4,"keys":[]}' "$OUT"

# ---------------------------------------------------------------- set - (stdin), batching, flushing
Bd="$W/b"
run -i "$(printf 'k1\tv 1=x y\nk2\t\nk3\tv=3\n')"$'\n' -D "$Bd" set -
check_rc "set - (default batch 1)" 0
check_eq "set - prints one id per line" "$(printf '1\n2\n3')" "$OUT"
run -D "$Bd" get k1
check_eq "value with spaces and '=' kept exactly" "v 1=x y" "$OUT"
run -D "$Bd" --json get k2
jcheck "empty value via set -" "|1" "$OUT" '"%s|%s" % (o["value"], o["rev"])'
run -D "$Bd" get k3
check_eq "value v=3 kept" "v=3" "$OUT"
run -i "$(printf 'm1\t1\nm2\t2\nm3\t3\nm4\t4\nm5\t5\nm6\t6\nm7\t7\n')"$'\n' -D "$Bd" --json set - --batch 3
check_rc "set - --batch 3 (7 lines)" 0
check_eq "set - --batch 3: 3 txs, last partial" "$(printf '{"tx":4}\n{"tx":5}\n{"tx":6}')" "$OUT"
run -D "$Bd" --json tx 6
jcheck "final partial batch has 1 entry (m7)" "1|m7" "$OUT" '"%s|%s" % (o["entry_count"], o["entries"][0]["key"])'
run -D "$Bd" --json tx 4
jcheck "first batch has 3 entries" "3|m1,m2,m3" "$OUT" '"%s|%s" % (o["entry_count"], ",".join(e["key"] for e in o["entries"]))'
run -i "$(printf 'n1\t1\nn2\t2\nno tab here\nn4\t4\n')"$'\n' -D "$Bd" set -
check_rc "set - with a line without TAB" 64
check_eq "set - bad line: earlier ids printed" "$(printf '7\n8')" "$OUT"
check_match "set - bad line: message names the line" '^tally: .*line 3' "$ERR"
run -D "$Bd" get n4
check_rc "set - bad line: later lines not written" 1
run -D "$Bd" get n2
check_eq "set - bad line: earlier lines durable" "2" "$OUT"

# flushing: read each id before writing the next line (fifo in, fifo out)
mkfifo "$W/in" "$W/out"
"$B" -D "$Bd" set - --batch 3 <"$W/in" >"$W/out" 2>"$W/flush.err" &
WRITER_PID=$!
exec 7>"$W/in"
exec 8<"$W/out"
printf 'f1\t1\nf2\t2\n' >&7
if read -r -t 0.7 -u 8 line; then bad "set - --batch 3: no id before the batch is full" "(nothing yet)" "$line"; else ok; fi
printf 'f3\t3\n' >&7
line=""
read -r -t 10 -u 8 line
check_eq "set - --batch 3: id flushed as soon as 3 lines are committed" "9" "$line"
printf 'f4\t4\n' >&7
if read -r -t 0.5 -u 8 line; then bad "set - --batch 3: partial batch waits for more input" "(nothing yet)" "$line"; else ok; fi
exec 7>&-
line=""
read -r -t 10 -u 8 line
check_eq "set - --batch 3: final partial batch committed at EOF" "10" "$line"
wait "$WRITER_PID"
check_eq "set - --batch 3 (fifo): exit code" 0 "$?"
WRITER_PID=""
exec 8<&-
rm -f "$W/in" "$W/out"
# batch 1 via fifo: each line's id arrives before the next line is written
mkfifo "$W/in" "$W/out"
"$B" -D "$Bd" --json set - --batch 1 <"$W/in" >"$W/out" 2>"$W/flush.err" &
WRITER_PID=$!
exec 7>"$W/in"
exec 8<"$W/out"
for i in 1 2 3; do
    printf 'g%s\tv%s\n' "$i" "$i" >&7
    line=""
    read -r -t 10 -u 8 line
    check_eq "set - --batch 1: id of line $i flushed before the next line" "{\"tx\":$((10 + i))}" "$line"
done
exec 7>&-
if read -r -t 5 -u 8 line; then bad "set - --batch 1: nothing after EOF" "EOF" "$line"; else ok; fi
wait "$WRITER_PID"
check_eq "set - --batch 1 (fifo): exit code" 0 "$?"
WRITER_PID=""
exec 8<&-
rm -f "$W/in" "$W/out"

# ---------------------------------------------------------------- conditional writes
run -D "$D" --json state
ST0="$OUT"
run -D "$D" set a zzz --if-absent
check_rc "set --if-absent on an existing key" 3
check_eq "set --if-absent on an existing key: stdout empty" "" "$OUT"
check_err1 "set --if-absent on an existing key"
run -D "$D" set newkey 1 a zzz --if-absent
check_rc "set --if-absent, one of two keys exists" 3
run -D "$D" --json state
check_eq "--if-absent failure writes nothing (state unchanged)" "$ST0" "$OUT"
run -D "$D" get newkey
check_rc "--if-absent failure: no partial write" 1
run -D "$D" get a
check_eq "--if-absent failure: a unchanged" "111" "$OUT"
run -D "$D" set fresh 1 --if-absent
check_rc "set --if-absent on a new key" 0
check_eq "set --if-absent on a new key: tx id" "8" "$OUT"
run -D "$D" --json state
ST0="$OUT"
run -D "$D" set a wrong --if-rev 2
check_rc "set --if-rev with a wrong rev" 3
check_err1 "set --if-rev with a wrong rev"
run -D "$D" --json state
check_eq "--if-rev failure writes nothing" "$ST0" "$OUT"
run -D "$D" set a right --if-rev 3
check_rc "set --if-rev with the right rev" 0
check_eq "set --if-rev with the right rev: tx id" "9" "$OUT"
run -D "$D" --json get a
jcheck "after --if-rev: value and rev" "right|4" "$OUT" '"%s|%s" % (o["value"], o["rev"])'
run -D "$D" set a again --if-rev 3
check_rc "set --if-rev with a stale rev" 3
run -D "$D" set a x --if-rev notanumber
check_usage "set --if-rev notanumber"
# D now: tx1..tx9

# ---------------------------------------------------------------- tx
run -D "$D" tx 1
check_rc "tx 1" 0
check_match "tx 1 plain shows the id" '^tx: 1$' "$OUT"
check_match "tx 1 plain shows prev_hash zeros" 'prev_hash: 0{64}' "$OUT"
run -D "$D" --json tx 1
TX1="$OUT"
jcheck "--json tx key order" "['tx', 'ts', 'hash', 'prev_hash', 'entries_root', 'entry_count', 'entries']" "$TX1" 'list(o)'
jcheck "--json tx 1: tx, entry_count, prev_hash zeros" "1|2|True" "$TX1" '"%s|%s|%s" % (o["tx"], o["entry_count"], o["prev_hash"] == "0" * 64)'
jcheck "--json tx 1: hashes 64 lowercase hex" "True" "$TX1" 'ishex64(o["hash"]) and ishex64(o["prev_hash"]) and ishex64(o["entries_root"])'
jcheck "--json tx 1: entries" "[('a', '1', False), ('b', '2', False)]" "$TX1" '[(e["key"], e["value"], e["deleted"]) for e in o["entries"]]'
jcheck "--json tx 1: ts equals get ts" "$TS1" "$TX1" 'o["ts"]'
# entries_root = MTH of the entries' leaf hashes (when the output gives them)
jcheck "--json tx 1: entries_root = MTH(entry leaf hashes)" "True" "$TX1" 'all("leaf_hash" not in e for e in o["entries"]) or mth([ub(e["leaf_hash"]) for e in o["entries"]]).hex() == o["entries_root"]'
run -D "$D" --json tx 5
jcheck "--json tx 5: the deletion entry" "[('b', True)]" "$OUT" '[(e["key"], e["deleted"]) for e in o["entries"]]'
# chain: prev_hash(N) = hash(N-1); collect every tx hash for the Merkle checks
HASHES="$W/hashes"
: >"$HASHES"
prev=""
chain_ok=1
for n in 1 2 3 4 5 6 7 8 9; do
    o=$("$T" -D "$D" --json tx "$n")
    h=$(jfield "$o" hash)
    p=$(jfield "$o" prev_hash)
    if [ -n "$prev" ] && [ "$p" != "$prev" ]; then chain_ok=0; bad "prev_hash of tx $n = hash of tx $((n - 1))" "$prev" "$p"; fi
    echo "$h" >>"$HASHES"
    prev="$h"
done
[ "$chain_ok" = 1 ] && ok
run -D "$D" tx 0
check_rc "tx 0" 1
check_err1 "tx 0"
run -D "$D" tx 10
check_rc "tx beyond the ledger" 1
check_err1 "tx beyond the ledger"
run -D "$D" tx abc
check_usage "tx abc"

# ---------------------------------------------------------------- state
run -D "$D" --json state
check_rc "--json state" 0
ST9="$OUT"
jcheck "--json state key order" "['tx', 'root']" "$ST9" 'list(o)'
jcheck "--json state tx" "9" "$ST9" 'o["tx"]'
# ledger roots at sizes 0..9 recomputed from the tx hashes (one python3 run)
read -r -a ROOTS <<<"$(python3 -c "
import sys; sys.path.insert(0, '$W'); from h import *
hs = [ub(l.strip()) for l in open('$HASHES')]
print(' '.join(mth(hs[:k]).hex() for k in range(len(hs) + 1)))")"
mth_at() { echo "${ROOTS[$1]}"; }
check_eq "state root = MTH(tx hashes 1..9) (recomputed)" "$(mth_at 9)" "$(jfield "$ST9" root)"
run -D "$D" state
check_rc "state (plain)" 0
check_match "state plain shows the root" "$(jfield "$ST9" root)" "$OUT"
ROOT9=$(jfield "$ST9" root)

# ---------------------------------------------------------------- proofs
for n in 1 4 9; do
    run -D "$D" --json proof inclusion "$n"
    check_rc "proof inclusion $n" 0
    jcheck "proof inclusion key order" "['index', 'size', 'tx', 'leaf_hash', 'root', 'proof']" "$OUT" 'list(o)'
    jcheck "proof inclusion $n: index,size,tx" "$((n - 1))|9|$n" "$OUT" '"%s|%s|%s" % (o["index"], o["size"], o["tx"])'
    jcheck "proof inclusion $n: leaf_hash = hash of tx $n" "$(sed -n "${n}p" "$HASHES")" "$OUT" 'o["leaf_hash"]'
    jcheck "proof inclusion $n: root = state root" "$ROOT9" "$OUT" 'o["root"]'
    jcheck "proof inclusion $n verifies (RFC 9162)" "True" "$OUT" 'ver_incl(o["index"], o["size"], ub(o["leaf_hash"]), [ub(p) for p in o["proof"]], ub(o["root"]))'
done
for s in 2 3 5 8; do
    n=2
    run -D "$D" --json proof inclusion $n --size $s
    check_rc "proof inclusion $n --size $s" 0
    jcheck "proof inclusion $n --size $s: size" "$s" "$OUT" 'o["size"]'
    jcheck "proof inclusion $n --size $s: root = MTH(tx 1..$s) (recomputed)" "$(mth_at $s)" "$OUT" 'o["root"]'
    PI="$OUT"
    run -D "$D" --json proof consistency 1 $s
    jcheck "proof inclusion $n --size $s: root = proof consistency 1 $s root" "$(jfield "$OUT" root)" "$PI" 'o["root"]'
    jcheck "proof inclusion $n --size $s verifies (RFC 9162)" "True" "$PI" 'ver_incl(o["index"], o["size"], ub(o["leaf_hash"]), [ub(p) for p in o["proof"]], ub(o["root"]))'
done
run -D "$D" --json proof inclusion 2 --size 9
jcheck "proof inclusion --size = ledger size: root = state root" "$ROOT9" "$OUT" 'o["root"]'
for mn in "1 9" "2 9" "3 7" "4 8" "5 9" "6 6" "1 1" "7 9"; do
    set -- $mn
    run -D "$D" --json proof consistency "$1" "$2"
    check_rc "proof consistency $1 $2" 0
    jcheck "proof consistency key order" "['old', 'size', 'old_root', 'root', 'proof']" "$OUT" 'list(o)'
    jcheck "proof consistency $1 $2: old,size" "$1|$2" "$OUT" '"%s|%s" % (o["old"], o["size"])'
    jcheck "proof consistency $1 $2: old_root = MTH(1..$1)" "$(mth_at "$1")" "$OUT" 'o["old_root"]'
    jcheck "proof consistency $1 $2: root = MTH(1..$2)" "$(mth_at "$2")" "$OUT" 'o["root"]'
    jcheck "proof consistency $1 $2 verifies (RFC 9162)" "True" "$OUT" 'ver_cons(o["old"], o["size"], ub(o["old_root"]), ub(o["root"]), [ub(p) for p in o["proof"]])'
done
set --
run -D "$D" proof consistency 1 9
check_rc "proof consistency (plain)" 0
check_match "proof consistency plain shows the root" "$ROOT9" "$OUT"
run -D "$D" proof inclusion 10
check_rc "proof inclusion beyond the ledger" 1
check_err1 "proof inclusion beyond the ledger"
run -D "$D" proof inclusion 2 --size 10
check_rc "proof inclusion --size beyond the ledger" 1
check_err1 "proof inclusion --size beyond the ledger"
run -D "$D" proof inclusion 5 --size 3
check_rc "proof inclusion N > --size S" 1
run -D "$D" proof consistency 1 10
check_rc "proof consistency size beyond the ledger" 1
check_err1 "proof consistency size beyond the ledger"
run -D "$D" proof consistency 5 3
case "$RC" in 64 | 1) ok ;; *) bad "proof consistency M > N: exit code" "64 or 1" "$RC" ;; esac
run -D "$D" proof inclusion
check_usage "proof inclusion without N"
run -D "$D" proof inclusion x
check_usage "proof inclusion x"
run -D "$D" proof bogus 1
check_usage "proof bogus 1"

# ---------------------------------------------------------------- merkle tools (RFC 6962 vector)
MV=$(printf '%s\n' "" 00 10 2021 3031 40414243 5051525354555657 606162636465666768696a6b6c6d6e6f)
run -i "$MV"$'\n' merkle root
check_rc "merkle root (RFC 6962 vector)" 0
check_match "merkle root plain" '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328' "$OUT"
run -i "$MV"$'\n' --json merkle root
check_eq "--json merkle root (RFC 6962 vector)" '{"size":8,"root":"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"}' "$OUT"
run -i "" --json merkle root
check_eq "--json merkle root of no leaves = SHA256(\"\")" '{"size":0,"root":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}' "$OUT"
# roots of every prefix, recomputed in python
MVLIST="['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f']"
for n in 1 3 5 7; do
    run -i "$(printf '%s\n' "$MV" | head -n $n)"$'\n' --json merkle root
    jcheck "--json merkle root of the first $n leaves" "(['size', 'root'], $n, True)" "$OUT" '(list(o), o["size"], o["root"] == mth([leaf(ub(x)) for x in '"$MVLIST"'][:'$n']).hex())'
done
for i in 0 2 5 7; do
    run -i "$MV"$'\n' --json merkle inclusion $i
    check_rc "merkle inclusion $i" 0
    jcheck "merkle inclusion key order" "['index', 'size', 'leaf_hash', 'proof']" "$OUT" 'list(o)'
    jcheck "merkle inclusion $i: index,size,leaf_hash" "$i|8|True" "$OUT" '"%s|%s|%s" % (o["index"], o["size"], o["leaf_hash"] == leaf(ub('"$MVLIST"'[o["index"]])).hex())'
    jcheck "merkle inclusion $i verifies against the RFC root" "True" "$OUT" 'ver_incl(o["index"], o["size"], ub(o["leaf_hash"]), [ub(p) for p in o["proof"]], ub("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"))'
done
for m in 1 3 4 6 8; do
    run -i "$MV"$'\n' --json merkle consistency $m
    check_rc "merkle consistency $m" 0
    jcheck "merkle consistency key order" "['old', 'size', 'proof', 'old_root', 'root']" "$OUT" 'list(o)'
    jcheck "merkle consistency $m: old_root recomputed" "True" "$OUT" 'o["old"] == '$m' and o["size"] == 8 and o["old_root"] == mth([leaf(ub(x)) for x in '"$MVLIST"'][:'$m']).hex() and o["root"] == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"'
    jcheck "merkle consistency $m verifies (RFC 9162)" "True" "$OUT" 'ver_cons(o["old"], o["size"], ub(o["old_root"]), ub(o["root"]), [ub(p) for p in o["proof"]])'
done
run -i "$MV"$'\n' merkle inclusion 8
check_rc "merkle inclusion out of range" 1
run -i "$MV"$'\n' merkle consistency 9
check_rc "merkle consistency out of range" 1
for badhex in zz abc "0g"; do
    run -i "00"$'\n'"$badhex"$'\n' merkle root
    check_ne "merkle root with bad hex '$badhex': exit non-zero" 0 "$RC"
    check_match "merkle root with bad hex '$badhex': message names line 2" '^tally: .*line 2' "$ERR"
    check_eq "merkle root with bad hex '$badhex': stdout empty" "" "$OUT"
done
run -i "$MV"$'\n' merkle inclusion x
check_usage "merkle inclusion x"

# ---------------------------------------------------------------- non-UTF-8 keys / values
run -i "$(printf 'k\xff\tv\xfe\n')"$'\n' -D "$Bd" --json set -
check_rc "set - with a non-UTF-8 key" 0
NTX=$(jfield "$OUT" tx)
run -D "$Bd" --json get "$(printf 'k\xff')"
check_rc "--json get of a non-UTF-8 key" 0
jcheck "--json get non-UTF-8: key_hex/value_hex" "['key_hex', 'value_hex', 'tx', 'rev', 'ts']|6bff|76fe" "$OUT" '"%s|%s|%s" % (list(o), o.get("key_hex"), o.get("value_hex"))'
run -D "$Bd" get "$(printf 'k\xff')"
check_eq "plain get of a non-UTF-8 value prints the raw bytes (hex)" "76fe" "$(printf '%s' "$OUT" | od -An -tx1 | tr -d ' \n')"
run -D "$Bd" --json history "$(printf 'k\xff')"
jcheck "--json history non-UTF-8" "6bff|['rev', 'tx', 'value_hex', 'deleted', 'ts']|76fe" "$OUT" '"%s|%s|%s" % (o.get("key_hex"), list(o["revisions"][0]), o["revisions"][0].get("value_hex"))'
run -D "$Bd" --json scan k
jcheck "--json scan non-UTF-8 item" "['key_hex', 'value_hex', 'tx', 'rev']|76fe" "$OUT" '"%s|%s" % (list(o["keys"][-1]), o["keys"][-1].get("value_hex"))'
run -D "$Bd" --json tx "$NTX"
jcheck "--json tx non-UTF-8 entry uses key_hex" "6bff|76fe" "$OUT" '"%s|%s" % (o["entries"][0].get("key_hex"), o["entries"][0].get("value_hex"))'
run -D "$Bd" --json set "ключ" "значение ✓"
run -D "$Bd" --json get "ключ"
jcheck "--json get of a UTF-8 (non-ASCII) key uses key/value" "['key', 'value', 'tx', 'rev', 'ts']|ключ|значение ✓" "$OUT" '"%s|%s|%s" % (list(o), o.get("key"), o.get("value"))'
run -D "$Bd" --json set 'q"\' "$(printf 'tab\there\nnl')"
run -D "$Bd" --json get 'q"\'
jcheck "--json escapes quote, backslash, tab, newline" "True" "$OUT" 'o["key"] == "q\"\\" and o["value"] == "tab\there\nnl"'

# ---------------------------------------------------------------- limits
run -D "$D" --json state
ST0="$OUT"
K1025=$(printf 'k%.0s' $(seq 1 1025))
K1024=${K1025:1}
run -D "$D" set "$K1025" v
check_rc "set with a 1025-byte key (too big)" 4
check_err1 "set with a 1025-byte key"
check_match "set with a 1025-byte key: says too big" 'too big' "$ERR"
run -D "$D" --json state
check_eq "1025-byte key: ledger unchanged" "$ST0" "$OUT"
run -D "$D" set "$K1024" v
check_rc "set with a 1024-byte key" 0
python3 -c 'import sys; sys.stdout.write("big\t" + "x" * (1048576 + 1) + "\n")' >"$W/bigval"
run -D "$D" --json state
ST0="$OUT"
OUT=$("$B" -D "$D" set - <"$W/bigval" 2>"$W/stderr"); RC=$?; ERR=$(cat "$W/stderr")
check_rc "set - with a 1 MiB + 1 value (too big)" 4
check_err1 "set - with a 1 MiB + 1 value"
run -D "$D" --json state
check_eq "1 MiB + 1 value: ledger unchanged" "$ST0" "$OUT"
run -D "$D" set "" v
check_ne "set with an empty key: exit non-zero" 0 "$RC"
run -D "$D" --json state
check_eq "empty key: ledger unchanged" "$ST0" "$OUT"
run -D "$D" set dup 1 dup 2
check_ne "set with a key twice in one tx: exit non-zero" 0 "$RC"
run -D "$D" --json state
check_eq "duplicate key: ledger unchanged" "$ST0" "$OUT"
ROOT_NOW=$(jfield "$ST0" root)
check_ne "state root changes after a write" "$ROOT9" "$ROOT_NOW"

# ---------------------------------------------------------------- usage errors
run -D "$D" bogus
check_usage "unknown command"
run -D "$D" set
check_usage "set without args"
run -D "$D" set onlykey
check_usage "set KEY without VALUE"
run -D "$D" get
check_usage "get without KEY"
run -D "$D" get a --tx abc
check_usage "get --tx abc"
run -D "$D" get a --tx
check_usage "get --tx without N"
run -D "$D" get a --rev x
check_usage "get --rev x"
run -D "$D" get a --at notatime
check_usage "get --at notatime"
run -D "$D" get a --tx 1 --rev 1
check_usage "get --tx with --rev"
run -D "$D" scan a --tx zz
check_usage "scan --tx zz"
run -D "$D" del
check_usage "del without KEY"
run -D "$D" history
check_usage "history without KEY"
run -D "$D" tx
check_usage "tx without N"
run -D "$D" set - --batch 0
check_usage "set - --batch 0"
run -D "$D" set - --batch x
check_usage "set - --batch x"
run -D "$D" --bogus state
check_usage "unknown option"
run
check_usage "no command"
run -D "$D" --json state
check_eq "usage errors write nothing" "$ST0" "$OUT"

# ---------------------------------------------------------------- TALLY_DIR and the default directory
mkdir -p "$W/cwd"
OUT=$(cd "$W/cwd" && TALLY_DIR="$W/envdir" "$B" set e 1 2>"$W/stderr"); RC=$?
check_rc "TALLY_DIR=... set e 1" 0
run -D "$W/envdir" get e
check_eq "TALLY_DIR is the default directory" "1" "$OUT"
check_eq "TALLY_DIR: ./tally-data not created" "no" "$([ -e "$W/cwd/tally-data" ] && echo yes || echo no)"
OUT=$(cd "$W/cwd" && TALLY_DIR="$W/envdir" "$B" -D "$W/other" set f 2 2>"$W/stderr"); RC=$?
run -D "$W/envdir" get f
check_rc "-D overrides TALLY_DIR" 1
OUT=$(cd "$W/cwd" && "$B" set g 3 2>"$W/stderr"); RC=$?
check_rc "no -D, no TALLY_DIR: set" 0
run -D "$W/cwd/tally-data" get g
check_eq "no -D, no TALLY_DIR: ./tally-data" "3" "$OUT"

# ---------------------------------------------------------------- reindex
snapshot() { # DIR -> outputs of every read command, plain and --json
    local d="$1" k
    for k in a b c d fresh newkey "$K1024" zz; do
        "$T" -D "$d" get "$k"; echo "rc=$?"
        "$T" -D "$d" --json get "$k"; echo "rc=$?"
        "$T" -D "$d" --json get "$k" --tx 3; echo "rc=$?"
        "$T" -D "$d" --json get "$k" --rev 1; echo "rc=$?"
        "$T" -D "$d" --json get "$k" --at "$TS3"; echo "rc=$?"
        "$T" -D "$d" --json history "$k"; echo "rc=$?"
        "$T" -D "$d" history "$k"; echo "rc=$?"
    done
    for k in "" a b f; do
        "$T" -D "$d" --json scan "$k"; echo "rc=$?"
        "$T" -D "$d" scan "$k" --tx 4; echo "rc=$?"
    done
    "$T" -D "$d" --json state
    "$T" -D "$d" --json tx 5
    "$T" -D "$d" --json proof consistency 3 9
} 2>&1
snapshot "$D" >"$W/snap1"
run -D "$D" --json reindex
check_rc "--json reindex" 0
check_eq "--json reindex output" '{"ok":true,"tx":10}' "$OUT"
jcheck "reindex key order" "['ok', 'tx']" "$OUT" 'list(o)'
snapshot "$D" >"$W/snap2"
check_eq "answers identical before/after reindex" "" "$(diff "$W/snap1" "$W/snap2" | head -5)"
rm -rf "$D/txindex" "$D/merkle" "$D/INDEX" "$D/index"
run -D "$D" reindex
check_rc "reindex after deleting every derived file" 0
snapshot "$D" >"$W/snap3"
check_eq "answers identical after deleting derived files + reindex" "" "$(diff "$W/snap1" "$W/snap3" | head -5)"
run -D "$D" reindex
check_rc "reindex (plain)" 0

# ---------------------------------------------------------------- verify and tampering
run -D "$D" --json verify
check_rc "--json verify" 0
check_eq "--json verify output" '{"ok":true,"tx":10}' "$OUT"
run -D "$D" verify
check_rc "verify (plain)" 0
V="$W/v"
"$T" -D "$V" set a 1 >/dev/null
"$T" -D "$V" set t TAMPERME u 2 >/dev/null
"$T" -D "$V" set c 3 >/dev/null
"$T" -D "$V" set t later >/dev/null
python3 -c '
import sys
p = sys.argv[1] + "/log/00000000.seg"
b = bytearray(open(p, "rb").read())
i = b.find(b"TAMPERME")
assert i > 0 and b.find(b"TAMPERME", i + 1) < 0
b[i + 3] ^= 0x01
open(p, "wb").write(b)' "$V" || bad "tamper setup" "value found" "not found"
run -D "$V" --json verify
check_rc "verify after flipping a byte of tx 2's value" 2
jcheck "verify --json (tampered) key order" "['ok', 'first_bad_tx', 'error']" "$OUT" 'list(o)'
jcheck "verify --json (tampered): ok false, first_bad_tx 2" "False|2" "$OUT" '"%s|%s" % (o["ok"], o["first_bad_tx"])'
jcheck "verify --json (tampered): error is a non-empty string" "True" "$OUT" 'isinstance(o["error"], str) and len(o["error"]) > 0'
run -D "$V" verify
check_rc "verify (plain) after tampering" 2
run -D "$V" get t --tx 2
check_rc "get of the tampered key" 2
check_err1 "get of the tampered key"
check_eq "get of the tampered key: stdout empty" "" "$OUT"
# the same flip with the record checksum recomputed: only the hashes can catch it
V2="$W/v2"
"$T" -D "$V2" set a 1 >/dev/null
"$T" -D "$V2" set t TAMPERME u 2 >/dev/null
"$T" -D "$V2" set c 3 >/dev/null
python3 -c '
import sys, struct
def crc32c(data):
    c = 0xFFFFFFFF
    for x in data:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF
p = sys.argv[1] + "/log/00000000.seg"
b = bytearray(open(p, "rb").read())
i = b.find(b"TAMPERME")
b[i + 3] ^= 0x01
off = 32
while off < len(b):
    blen, txid, txh_len = struct.unpack_from("<IQI", b, off + 4)
    body = off + 32
    if body <= i < body + blen:
        txh = bytes(b[body:body + txh_len]); ent = bytes(b[body + txh_len:body + blen])
        struct.pack_into("<I", b, off + 20, crc32c(ent + txh))
        struct.pack_into("<I", b, off + 28, crc32c(bytes(b[off:off + 28])))
    off = body + blen
open(p, "wb").write(b)' "$V2" || bad "tamper setup (crc fixed)" "ok" "python failed"
run -D "$V2" --json verify
check_rc "verify after a tamper with valid checksums" 2
jcheck "verify (checksums fixed): first_bad_tx 2" "False|2" "$OUT" '"%s|%s" % (o.get("ok"), o.get("first_bad_tx"))'

# ---------------------------------------------------------------- locking
L="$W/l"
"$T" -D "$L" set a 1 >/dev/null
mkfifo "$W/lin"
"$B" -D "$L" set - <"$W/lin" >"$W/lout" 2>"$W/lerr" &
WRITER_PID=$!
exec 7>"$W/lin"
printf 'w\t1\n' >&7
for _ in $(seq 1 100); do [ -s "$W/lout" ] && break; sleep 0.05; done
check_eq "locking: the writer committed its first line" "2" "$(cat "$W/lout")"
run -b "$T" -D "$L" set x y
check_rc "second writer while the directory is in use" 4
check_err1 "second writer while the directory is in use"
check_match "second writer: stderr says 'in use by pid <writer pid>'" "in use by pid $WRITER_PID([^0-9]|\$)" "$ERR"
run -D "$L" set x y
check_rc "second writer (asan binary) while in use" 4
printf 'w2\t2\n' >&7
exec 7>&-
wait "$WRITER_PID"
check_eq "locking: the writer exits 0" 0 "$?"
WRITER_PID=""
check_eq "locking: the writer printed both ids" "$(printf '2\n3')" "$(cat "$W/lout")"
run -D "$L" set x y
check_rc "set after the writer exited" 0
check_eq "set after the writer exited: tx id" "4" "$OUT"
run -D "$L" get x
check_eq "the locked-out write did not happen earlier" "$(printf 'y')" "$OUT"
run -D "$L" --json history x
jcheck "x has exactly one revision" "1" "$OUT" 'len(o["revisions"])'

# evaluate the recorded JSON assertions
counts=$(PYTHONPATH="$W" python3 -c 'import sys; from h import *; run_checks(sys.argv[1])' "$JCHECKS" 2>"$W/jcounts")
[ -n "$counts" ] && printf '%s\n' "$counts"
read -r jp jf <"$W/jcounts" || { jp=0; jf=1; echo "FAIL: JSON checks: expected an evaluation got $(head -c 300 "$W/jcounts")"; }
pass=$((pass + jp))
fail=$((fail + jf))

t1=$(date +%s)
echo "t_cli: $pass passed, $fail failed ($((t1 - t0))s, binary $B)"
[ "$fail" -eq 0 ]
