#!/usr/bin/env bash
# t_liar.sh — the verifying client (`tally --server URL ...`) against a lying
# server: tests/liar.py sits between the client and a real tallyd. For every
# lie the client first makes honest verified calls through the proxy (mode
# none: it pins the key, the ledger id and a trusted state), then the proxy
# lies and the client must: exit 2, print a "tally: ..." message on stderr and
# nothing on stdout, leave its trusted-state file byte-identical, and save
# evidence (trusted.note = the trusted state, offending.note) under
# $TALLY_HOME/evidence/. After each lie an honest call must succeed again.
# Lies: value, value_hex, value_both, tx_header, entry_header,
# drop/reorder/extra proof elements (tx, entry, consistency), tx_index,
# rollback, stale_checkpoint_fresh_proof, bad_signature, swap_identity,
# swap_ledger, same_size_other_root and fork (a second tallyd on a copy of the
# data dir, same key and ledger id, other history), swap_key (a tallyd with
# its own key). The same lies (and batch_drop, batch_swap, other_key) on
# batched gets (`get K1 K2 K3`: POST verified/getmany, which the client asks
# for in the binary TVB1 form): there the proxy's stats must also show that
# it lied on verified/getmany (batch_lies). The proof, rollback, signature
# and identity lies (and proof_field: a flipped root, leaf_hash or old_root)
# also on `proof inclusion N` and `proof consistency M N`, after honest ones
# that must print the server's proof at the trusted size. Then: the trusted-state file
# survives kill -9 of clients at random moments (always a complete, validly
# signed checkpoint of the real ledger; never smaller than before).
#
# Env: TALLY_BIN (build/tally), TALLYD_BIN (build/tallyd). Prints "FAIL: ..."
# per failed assertion and a summary; "SKIP: tallyd not built" if missing.
set -u
cd "$(dirname "$0")/.." || exit 2
. tests/lib_server.sh
ls_init liar
[ -x "$T" ] || { echo "FAIL: setup: expected executable $T got missing"; summary t_liar; exit 1; }
LIAR="$PWD/tests/liar.py"
UPW="u-secret-pw"

# ---- helpers
admin_setup() { # url -> AT (admin token)
    AT=$(login "$1" admin "$ADMIN_PW")
    [ -n "$AT" ] || bad "setup: admin login on $1" token ""
}
mkledger() { # url ledger
    req POST "$1/v1/ledgers" "{\"name\":\"$2\"}" "$AT"
    [ "$CODE" = 201 ] || bad "setup: create ledger $2" 201 "$CODE $BODY"
}
mkuser() { # url ledger [password]
    if [ -n "${3:-}" ]; then
        req POST "$1/v1/users" "{\"name\":\"u\",\"password\":\"$3\",\"role\":\"writer\",\"ledger\":\"$2\"}" "$AT"
    else
        req POST "$1/v1/users" "{\"name\":\"u\",\"role\":\"writer\",\"ledger\":\"$2\"}" "$AT"
    fi
    [ "$CODE" = 201 ] || bad "setup: user u on $2" 201 "$CODE $BODY"
}
wset() { # url ledger entries-json
    req POST "$1/v1/ledgers/$2/set" "{\"entries\":$3}" "$AT"
    [ "$CODE" = 200 ] || bad "setup: set on $2" 200 "$CODE $BODY"
}
grow() { # url ledger n: n more transactions
    local i
    for i in $(seq "$3"); do GROWN=$((GROWN + 1)); wset "$1" "$2" "[{\"key\":\"g$GROWN\",\"value\":\"$GROWN\"}]"; done
}
GROWN=0
ledger_id() { # url ledger
    req GET "$1/v1/ledgers/$2" "" "$AT"
    jq_py 'j["id"]'
}

start_liar() { # upstream [alt] [alt-ledger] -> LURL LPID
    local try=0 port
    while [ $try -lt 3 ]; do
        port=$(free_port)
        python3 "$LIAR" --listen "$port" --upstream "$1" ${2:+--alt-upstream "$2"} ${3:+--alt-ledger "$3"} --mode none \
            >"$W/liar.$port.out" 2>&1 &
        LPID=$!
        ls_track "$LPID"
        LURL="http://127.0.0.1:$port"
        local i=0
        while [ $i -lt 50 ]; do
            curl -s -m 1 -o /dev/null "$LURL/__liar/stats" && return 0
            sleep 0.1
            i=$((i + 1))
        done
        kill "$LPID" 2>/dev/null
        try=$((try + 1))
    done
    bad "setup: liar.py starts" started "$(cat "$W/liar.$port.out")"
    return 1
}
set_mode() { curl -s -m 5 -o /dev/null -X POST --data-binary "$1" "$LURL/__liar/mode"; }
set_alt() { curl -s -m 5 -o /dev/null -X POST --data-binary "$1" "$LURL/__liar/alt"; }
lies() { curl -s -m 5 "$LURL/__liar/stats" | sed 's/.*"lies": *\([0-9]*\).*/\1/'; }
pstat() { curl -s -m 5 "$LURL/__liar/stats" | sed "s/.*\"$1\": *\([0-9]*\).*/\1/"; } # NAME: one counter

# tcli ARGS...: the client through the proxy; OUT, ERR, RC
# With TCLI_CREDS=1 it logs in with TALLY_USER/TALLY_PASSWORD (a scrypt on the
# server per run); else it uses the token `tally login` saved for the URL.
tcli() {
    if [ "${TCLI_CREDS:-0}" = 1 ]; then
        OUT=$(TALLY_HOME="$TH" TALLY_USER=u TALLY_PASSWORD="$UPW" "$T" --server "$LURL" --ledger "$TL" "$@" 2>"$W/cli.err" </dev/null)
    else
        OUT=$(TALLY_HOME="$TH" "$T" --server "$LURL" --ledger "$TL" "$@" 2>"$W/cli.err" </dev/null)
    fi
    RC=$?
    ERR=$(cat "$W/cli.err")
}
state_file() { ls "$TH"/trust/*/"$TID" 2>/dev/null | head -n1; }
ev_count() { ls "$TH/evidence" 2>/dev/null | wc -l; }

honest() { # what, expected stdout, args... (logs in with TALLY_USER/TALLY_PASSWORD)
    local what="$1" want="$2"
    shift 2
    TCLI_CREDS=1 tcli "$@"
    check_eq "$what: exit" 0 "$RC"
    [ -n "$want" ] && check_eq "$what: output" "$want" "$OUT"
    [ "$RC" = 0 ] || echo "   (stderr: $ERR)"
}

# lie MODE WHAT ARGS...: one lying call, with every assertion
CAUGHT=""
MISSED=""
lie() {
    local mode="$1" what="$2"
    shift 2
    local sf l0 ev0 l1 evdir
    sf=$(state_file)
    if [ -z "$sf" ]; then bad "$mode/$what: trusted state exists before the lie" file none; return; fi
    cp "$sf" "$W/state.before"
    ev0=$(ev_count)
    l0=$(lies)
    set_mode "$mode"
    TCLI_CREDS=${ALT_MODE:-0} tcli "$@"
    set_mode none
    l1=$(lies)
    local tag="$mode($what)"
    if [ "${ALT_MODE:-0}" = 0 ] && [ "$l1" = "$l0" ]; then
        echo "NOTE: $tag: the proxy found nothing to change (test setup issue)"
    fi
    if [ "$RC" = 2 ]; then CAUGHT="$CAUGHT $tag"; else MISSED="$MISSED $tag[rc=$RC]"; fi
    check_eq "$tag: exit code (tally $*)" 2 "$RC"
    check_match "$tag: one 'tally: ...' line on stderr" '^tally: ' "$ERR"
    if [ "${LIE_REPORT:-0}" = 1 ]; then # verify reports the failure on stdout
        check_match "$tag: the report on stdout" '^FAILED at tx [1-9][0-9]*: ' "$OUT"
    else
        check_eq "$tag: nothing on stdout" "" "$OUT"
    fi
    if cmp -s "$W/state.before" "$sf"; then ok; else bad "$tag: trusted state byte-identical" "$(cat "$W/state.before")" "$(cat "$sf" 2>/dev/null)"; fi
    if [ "$(ev_count)" -gt "$ev0" ]; then
        ok
        evdir="$TH/evidence/$(ls -t "$TH/evidence" | head -n1)"
        if cmp -s "$W/state.before" "$evdir/trusted.note"; then ok; else bad "$tag: evidence trusted.note = trusted state" "$(head -c 200 "$W/state.before")" "$(head -c 200 "$evdir/trusted.note" 2>/dev/null)"; fi
        if [ -s "$evdir/offending.note" ]; then ok; else bad "$tag: evidence offending.note" "non-empty file" "$(ls "$evdir")"; fi
        [ -s "$evdir/reason.txt" ] && ok || bad "$tag: evidence reason.txt" "non-empty" "$(ls "$evdir")"
    else
        bad "$tag: evidence saved under \$TALLY_HOME/evidence" "a new directory" "none ($ERR)"
    fi
}
blie() { # as lie, for a batched get: the proxy must also have lied on verified/getmany
    local l0 l1
    l0=$(pstat batch_lies)
    lie "$@"
    l1=$(pstat batch_lies)
    if [ "$l1" -gt "$l0" ]; then ok; else bad "$1($2): the proxy lied on verified/getmany (batch_lies)" "> $l0" "$l1"; fi
}

# ======================================================================
section "group 1: one server, ledgers L and L2"
start_tallyd "$W/a" || { bad "setup: tallyd" started "$(head -c 300 "$SOUT.err")"; summary t_liar; exit 1; }
UA=$SURL
admin_setup "$UA"
VKEY=$(curl -s "$UA/v1/server" | sed 's/.*"vkey":"\([^"]*\)".*/\1/')
mkledger "$UA" L
mkledger "$UA" L2
mkuser "$UA" L "$UPW"
mkuser "$UA" L2
wset "$UA" L '[{"key":"k","value":"v1"},{"key":"a","value":"1"},{"key":"b","value":"2"},{"key":"c","value":"3"}]'
wset "$UA" L '[{"key":"h","value":"h1"}]'
grow "$UA" L 3
wset "$UA" L '[{"key":"h","value":"h2"}]'
wset "$UA" L2 '[{"key":"k","value":"other"},{"key":"a","value":"1"},{"key":"b","value":"2"},{"key":"c","value":"3"}]'
grow "$UA" L2 30
start_liar "$UA" "" L2 || { summary t_liar; exit 1; }
TH="$W/home1"
TL=L
TID=$(ledger_id "$UA" L)

honest "honest get" v1 get k
honest "honest state" "" state
honest "honest tx 1" "" tx 1
honest "honest set" "" set s1 x
tclogin() { # saves a token for the proxy URL in $TH
    OUT=$(printf '%s\n' "$UPW" | TALLY_HOME="$TH" "$T" --server "$LURL" login u 2>&1)
    check_eq "tally login through the proxy: exit" 0 "$?"
}
tclogin
SF=$(state_file)
[ -n "$SF" ] && ok || bad "trusted state file at \$TALLY_HOME/trust/<key>/<ledger id>" file "$(find "$TH" -type f | head)"
check_eq "trusted state is the latest checkpoint" "$(curl -s -H "Authorization: Bearer $AT" "$UA/v1/ledgers/L/checkpoint")" "$(cat "$SF" 2>/dev/null)"

case1() { # mode args...: grow 3, lie, then an honest get
    local mode="$1"
    shift
    # a trusted size that is a power of two has one-element consistency
    # proofs to any size below its double: move it forward first
    local ts
    ts=$(sed -n 2p "$(state_file)" 2>/dev/null)
    if [ -n "$ts" ] && [ $((ts & (ts - 1))) = 0 ]; then
        grow "$UA" L 1
        tcli get k
    fi
    grow "$UA" L 2
    lie "$mode" "${WHAT:-$1}" "$@"
    tcli get k
    check_eq "after $mode: honest get works again" "0 v1" "$RC $OUT"
}
for m in value value_hex tx_header tx_header:49 entry_header entry_header:8 tx_index tx_index:only \
    drop_proof:tx drop_proof:entry drop_proof:consistency reorder_proof:tx reorder_proof:entry \
    reorder_proof:consistency extra_proof:tx extra_proof:entry extra_proof:consistency \
    rollback stale_checkpoint_fresh_proof bad_signature swap_identity swap_ledger; do
    case1 "$m" get k
done
# (TALLY_LONG=1: also the lies already seen with get, on verified/tx and verified/set)
TXM="value value_hex entry_header tx_index stale_checkpoint_fresh_proof other_tx"
SETM="tx_header bad_signature"
if [ "${TALLY_LONG:-0}" = 1 ]; then
    TXM="$TXM tx_header drop_proof:tx extra_proof:tx rollback bad_signature"
    SETM="$SETM drop_proof:tx extra_proof:tx"
fi
for m in $TXM; do
    case1 "$m" tx 1
done
# verified proofs: `proof inclusion N` and `proof consistency M N` check the
# proof against the hashes the server names, then anchor its root to the
# trusted state. Honest first: the same JSON as the server's, and a root that
# is the checkpoint's.
grow "$UA" L 2
honest "honest proof inclusion 3" "" --json proof inclusion 3
PI_OUT=$OUT
req GET "$UA/v1/ledgers/L/checkpoint" "" "$AT"
CP_SIZE=$(printf '%s\n' "$BODY" | sed -n 2p)
CP_ROOT_HEX=$(printf '%s\n' "$BODY" | sed -n 3p | base64 -d | od -An -tx1 | tr -d ' \n')
req GET "$UA/v1/ledgers/L/proof/inclusion?tx=3&size=$CP_SIZE" "" "$AT"
PI_WANT=$(jq_py '"%s %s %s %s %s" % (j["tx"], j["size"], j["leaf_hash"], j["root"], ",".join(j["proof"]))')
BODY=$PI_OUT
check_eq "proof inclusion 3 (client) = the server's proof at the trusted size" "$PI_WANT" \
    "$(jq_py '"%s %s %s %s %s" % (j["tx"], j["size"], j["leaf_hash"], j["root"], ",".join(j["proof"]))')"
check_eq "proof inclusion 3: root = the checkpoint's root" "$CP_ROOT_HEX" "$(jq_py 'j["root"]')"
honest "honest proof consistency 2 $CP_SIZE" "" --json proof consistency 2 "$CP_SIZE"
BODY=$OUT
check_eq "proof consistency 2 $CP_SIZE: old, size, root" "2 $CP_SIZE $CP_ROOT_HEX" \
    "$(jq_py '"%s %s %s" % (j["old"], j["size"], j["root"])')"
for m in drop_proof:tx reorder_proof:tx extra_proof:tx proof_field:root proof_field:leaf_hash \
    rollback bad_signature swap_identity; do
    case1 "$m" proof inclusion 3
done
for m in drop_proof:consistency reorder_proof:consistency extra_proof:consistency \
    proof_field:root proof_field:old_root rollback bad_signature; do
    case1 "$m" proof consistency 2 8
done

# valid bundles for something else than what was asked
case1 other_key get k
case1 other_key:h get k
req GET "$UA/v1/ledgers/L/tx/2" "" "$AT"
TS2=$(jq_py 'j["ts"]')
honest "honest get h --tx 2" h1 get h --tx 2
honest "honest get h --at ts(tx 2)" h1 get h --at "$TS2"
case1 wrong_version get h --tx 2
case1 wrong_version get h --at "$TS2"
grow "$UA" L 2
set_mode wrong_version
tcli get h --rev 1
set_mode none
[ "$RC $OUT" = "0 h2" ] && echo "NOTE: get h --rev 1 answered with the bundle of rev 2: the client printed h2 (rev is the server's claim, not provable in API v1)"
# verified del: like set, the client recomputes the entries root from what it
# sent (one tombstone), so lies in the bundle's entries are not used; lie where
# it matters: the tx header, the tx id, the checkpoint
wset "$UA" L '[{"key":"d1","value":"1"},{"key":"d2","value":"2"},{"key":"d3","value":"3"}]'
case1 tx_header del d1
case1 tx_index del d2
case1 bad_signature del d3
for m in drop_proof:consistency reorder_proof:consistency extra_proof:consistency rollback bad_signature \
    swap_identity swap_ledger; do
    case1 "$m" state
done
for m in $SETM; do
    case1 "$m" set "w$m" x
done

# value_both: "value" is true, "value_hex" lies. Acceptable: exit 2, or the true value.
grow "$UA" L 2
set_mode value_both
tcli get k
set_mode none
if [ "$RC" = 2 ] || [ "$RC $OUT" = "0 v1" ]; then ok; CAUGHT="$CAUGHT value_both(get:rc=$RC)"; else bad "value_both: exit 2 or the true value" "2, or 0 v1" "$RC $OUT"; MISSED="$MISSED value_both[rc=$RC]"; fi

# ---- batched verified reads: `get K1 K2 K3` is one POST verified/getmany (TVB1)
section "batched gets (verified/getmany)"
# k and c: tx 1 (4 entries: entry proofs of 2 hashes); h: a later 1-entry tx
# (empty entry proof). The proxy lies about the last found result a lie
# changes: h for the tx lies, c for the entry-proof lies.
BK="k c h"
BOUT=$(printf 'v1\n3\nh2')
b0=$(pstat batch_requests)
n0=$(pstat batch_binary)
honest "honest batched get (mode none)" "$BOUT" get $BK
check_eq "honest batched get: one verified/getmany through the proxy" $((b0 + 1)) "$(pstat batch_requests)"
check_eq "honest batched get: answered in the binary form (TVB1)" $((n0 + 1)) "$(pstat batch_binary)"
case_batch() { # mode [args...]: case1 for a batched get (default: get $BK);
    # the proxy must have lied on verified/getmany, then an honest batched get works
    local mode="$1" l0 l1
    shift
    [ $# -gt 0 ] || set -- get $BK
    l0=$(pstat batch_lies)
    WHAT=getmany case1 "$mode" "$@"
    l1=$(pstat batch_lies)
    if [ "$l1" -gt "$l0" ]; then ok; else bad "$mode(getmany): the proxy lied on verified/getmany (batch_lies)" "> $l0" "$l1"; fi
    tcli get $BK
    check_eq "after $mode(getmany): honest batched get works again" "0 $BOUT" "$RC $OUT"
}
for m in value value:append tx_header tx_header:49 entry_header entry_header:8 \
    drop_proof:tx drop_proof:entry drop_proof:consistency reorder_proof:tx reorder_proof:entry \
    reorder_proof:consistency extra_proof:tx extra_proof:entry extra_proof:consistency \
    rollback stale_checkpoint_fresh_proof bad_signature swap_identity swap_ledger \
    batch_drop batch_swap other_key; do
    case_batch "$m"
done
# an absent key: reported on stderr (exit 1), the others printed
tcli get k zz c
check_eq "batched get with an absent key: exit" 1 "$RC"
check_eq "batched get with an absent key: the others printed" "$(printf 'v1\n3')" "$OUT"
check_match "batched get with an absent key: reported" "^tally: .*zz" "$ERR"
case_batch value get k zz c
case_batch batch_drop get k c zz
# time travel: --tx / --at apply to every key; without them (wrong_version)
# the proxy gets h's later version, from a tx after the one asked
honest "honest batched get --tx 2" "$(printf 'h1\nv1')" get h k --tx 2
honest "honest batched get --at ts(tx 2)" "$(printf 'h1\nv1')" get h k --at "$TS2"
case_batch wrong_version get h k --tx 2
case_batch wrong_version get h k --at "$TS2"

# ---- kill -9 during state updates
section "kill -9 of clients during verified gets"
python3 - "$UA" "$AT" >/dev/null 2>&1 <<'PYEOF' &
import http.client, json, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
h = {"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"}
t0 = time.time(); i = 0
while time.time() - t0 < 60:
    i += 1
    c.request("POST", "/v1/ledgers/L/set", json.dumps({"entries": [{"key": "bg", "value": str(i)}]}), h)
    c.getresponse().read()
    time.sleep(0.01)
PYEOF
WPID=$!
ls_track "$WPID"
PREV=0
KILLED=0
DONE=0
END=$((SECONDS + 12))
n=0
while [ $SECONDS -lt $END ] && [ $n -lt 100 ]; do
    n=$((n + 1))
    TALLY_HOME="$TH" "$T" --server "$LURL" --ledger L get k >/dev/null 2>&1 &
    CP=$!
    sleep "0.$(printf '%03d' $((RANDOM % 60)))"
    if kill -KILL "$CP" 2>/dev/null; then KILLED=$((KILLED + 1)); fi
    wait "$CP" 2>/dev/null
    [ $? = 0 ] && DONE=$((DONE + 1))
    NOTE=$(cat "$SF" 2>/dev/null)
    R=$(BODY="$NOTE" jq_py "tv(T_note, body, '$VKEY', 'tally.local/ledger/$TID')")
    case "$R" in
    '{"size"'*) ;;
    *) bad "kill -9 round $n: trusted state is a valid signed checkpoint" "a checkpoint" "$R: $(printf '%s' "$NOTE" | head -c 300)"; continue ;;
    esac
    S=$(BODY="$R" jq_py 'j["size"]')
    RT=$(BODY="$R" jq_py 'j["root"]')
    [ "$S" -ge "$PREV" ] && ok || bad "kill -9 round $n: trusted size never decreases" ">= $PREV" "$S"
    PREV=$S
    req GET "$UA/v1/ledgers/L/proof/inclusion?tx=$S&size=$S" "" "$AT"
    check_eq "kill -9 round $n: trusted root = real root at size $S" "$(jq_py 'j["root"]')" "$RT"
done
kill "$WPID" 2>/dev/null
echo "kill -9: $n rounds, $KILLED killed, $DONE completed; final trusted size $PREV; leftover temp files: $(ls "$(dirname "$SF")" | grep -c '\.tmp\.')"
[ "$KILLED" -gt 0 ] || echo "NOTE: no client was killed mid-run"
tcli get k
check_eq "after kill -9 rounds: honest get works" "0 v1" "$RC $OUT"

# ======================================================================
section "group 2: fork and same size, other root (copy of the data dir)"
start_tallyd "$W/f1" || { bad "setup: tallyd f1" started ""; summary t_liar; exit 1; }
U1=$SURL
P1=$SPID
admin_setup "$U1"
VKEY=$(curl -s "$U1/v1/server" | sed 's/.*"vkey":"\([^"]*\)".*/\1/')
mkledger "$U1" L
mkuser "$U1" L "$UPW"
wset "$U1" L '[{"key":"k","value":"v1"},{"key":"a","value":"1"},{"key":"b","value":"2"},{"key":"c","value":"3"}]'
grow "$U1" L 3
stop_tallyd "$P1"
cp -a "$W/f1" "$W/f2"
start_tallyd "$W/f1" || { bad "setup: tallyd f1 restart" started ""; summary t_liar; exit 1; }
U1=$SURL
AT1=$(login "$U1" admin "$ADMIN_PW")
start_tallyd "$W/f2" || { bad "setup: tallyd f2" started ""; summary t_liar; exit 1; }
U2=$SURL
AT=$(login "$U2" admin "$ADMIN_PW")
check_eq "fork: same ledger id on both" "$(ledger_id "$U2" L)" "$(AT=$AT1 ledger_id "$U1" L)"
wset "$U2" L '[{"key":"k","value":"forked"}]'
wset "$U2" L '[{"key":"x","value":"b-side"}]'
AT=$AT1
wset "$U1" L '[{"key":"x","value":"a-side1"}]'
wset "$U1" L '[{"key":"x","value":"a-side2"}]'
start_liar "$U1" "$U2" || { summary t_liar; exit 1; }
TH="$W/home2"
TID=$(ledger_id "$U1" L)
honest "fork: honest get" v1 get k
honest "fork: honest state" "" state
tclogin
ALT_MODE=1
lie same_size_other_root get get k
lie same_size_other_root state state
blie same_size_other_root getmany get k a b
AT=$(login "$U2" admin "$ADMIN_PW")
grow "$U2" L 3
AT=$AT1
grow "$U1" L 1
lie fork get get k
lie fork state state
lie fork tx tx 1
lie fork set set fk 1
blie fork getmany get k a b
honest "fork: honest get after the fork lies" v1 get k
honest "fork: honest batched get after the fork lies" "$(printf 'v1\n1\n2')" get k a b

section "group 3: swap_key (another server, its own key)"
start_tallyd "$W/k" || { bad "setup: tallyd k" started ""; summary t_liar; exit 1; }
UK=$SURL
admin_setup "$UK"
mkledger "$UK" L
mkuser "$UK" L "$UPW"
wset "$UK" L '[{"key":"k","value":"v1"},{"key":"a","value":"1"},{"key":"b","value":"2"},{"key":"c","value":"3"}]'
grow "$UK" L 12
set_alt "$UK"
lie swap_key get get k
lie swap_key state state
lie swap_key tx tx 1
blie swap_key getmany get k a b
ALT_MODE=0

# ======================================================================
section "group 4: acknowledgements of writes, first contact"
# A verified set/del must be acknowledged by a transaction appended after the
# write was sent: another writer's identical transaction, committed after
# the client's trusted size but before the write, is a replay. Metadata the
# server adds to a write is not the client's write.
admin_setup "$UA"
start_liar "$UA" || { summary t_liar; exit 1; }
TH="$W/home4"
TL=L
TID=$(ledger_id "$UA" L)
honest "writes: honest set" "" set w1 a
tclogin
wset "$UA" L '[{"key":"w1","value":"b"}]'  # another writer, after our trusted size
N1=$(jq_py 'j["tx"]')
lie "replay_set:$N1" "set w1 b" set w1 b
req POST "$UA/v1/ledgers/L/del" '{"key":"w1"}' "$AT"  # another writer's delete
N2=$(jq_py 'j["tx"]')
check_eq "writes: direct delete" 200 "$CODE"
wset "$UA" L '[{"key":"w1","value":"c"}]'
lie "replay_set:$N2" "del w1" del w1
req GET "$UA/v1/ledgers/L/get?key=w1" "" "$AT"
check_eq "writes: the replayed delete did not delete" '"c"' "$(jq_py 'json.dumps(j["value"])')"
lie inject_meta "set w2 (server adds metadata)" set w2 x
honest "writes: honest set after the lies" "" set w3 y
honest "writes: honest del after the lies" "" del w3
honest "writes: honest set with metadata" "" set w4 z --meta "req-17"
req GET "$UA/v1/ledgers/L/tx/$OUT" "" "$AT"
check_eq "the tx written with --meta carries it" "req-17" "$(jq_py 'j.get("meta", "")')"
# history and scan: each row is proven before it is printed
honest "history, each row proven" "" history w1
honest "scan, each row proven" "" scan w
lie history_value "history w1" history w1
lie scan_value "scan w" scan w
lie history_key:w2 "history w1 (answered for w2)" history w1
lie history_order "history w1 (rows reversed)" history w1
lie scan_prefix: "scan w (answered for all keys)" scan w
lie scan_order "scan w (rows reversed)" scan w
# verify walks the txs of a fresh checkpoint: a lie in any of them leaves the
# trusted state where it was (the checkpoint is trusted only at the end)
grow "$UA" L 3
LIE_REPORT=1 lie value "verify --last 3" verify --last 3
LIE_REPORT=1 lie entry_header "verify" verify
honest "verify after the lies" "" verify --last 5

# A stale checkpoint before the write and the replay of an identical tx
# committed after it: only the tx time gives it away (TALLY_CLOCK_SKEW_MS).
# A new proxy records the checkpoint the client then trusts.
TH="$W/home6"
honest "stale: a write" "" set w5 a
start_liar "$UA" || { summary t_liar; exit 1; }
tclogin
honest "stale: state (recorded by the new proxy)" "" state
wset "$UA" L '[{"key":"w5","value":"b"}]'
N3=$(jq_py 'j["tx"]')
sleep 1
export TALLY_CLOCK_SKEW_MS=500
lie "replay_stale:$N3" "set w5 b (stale checkpoint)" set w5 b
unset TALLY_CLOCK_SKEW_MS
check_match "stale: the reason names the time" 'older than the client' "$ERR"

# First contact through a liar that swaps the ledger identity: refused, and
# nothing pinned, so the next honest call still works (no lock-out).
TH="$W/home5"
set_mode swap_identity
TCLI_CREDS=1 tcli get k
set_mode none
check_eq "first contact, swapped identity: exit" 2 "$RC"
PINS=$(ls "$TH"/trust/*/names 2>/dev/null | wc -l)
check_eq "first contact, swapped identity: no ledger pinned" 0 "$PINS"
honest "first contact afterwards: honest get" v1 get k
check_eq "first contact afterwards: ledger pinned" "$TID" "$(cat "$TH"/trust/*/names/L 2>/dev/null)"

echo "caught:$CAUGHT"
echo "not caught:${MISSED:- (none)}"
summary t_liar
