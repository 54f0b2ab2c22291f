#!/usr/bin/env bash
# t_server_idle.sh — tallyd closes ledgers nobody uses (--ledger-idle-close,
# src/server/registry.c) and reopens them on the next request. Asserted:
#   * --ledger-idle-close is validated (a non-number is refused with the usage
#     exit code);
#   * with --ledger-idle-close 1: 20 ledgers written once are all closed
#     within 10 s (tally_ledgers_open 0, tally_ledgers_closed_idle_total >= 20),
#     and tally_commits_total still counts their 20 commits (a closed
#     handle's statistics are kept: the counter never goes back);
#   * listing the ledgers gives each one's size without reopening any;
#   * every key reads back after the reopen, and a second write gets tx 2;
#   * while 8 clients keep writing to one ledger for 4 s (it never closes
#     under them: all 200, tx ids exactly 1.. distinct), 6 readers read the
#     other ledgers with pauses longer than the idle time, so those close and
#     reopen under load: every read returns the value written;
#   * 300 more ledgers, each written, closed idle, written again (reopened)
#     and closed again: tallyd's RSS afterwards stays under 100 MiB (a
#     handle's empty fixed tables once became resident memory on every
#     reopen: ~230 MiB for these 300, 773 MiB for 1000), skipped when
#     TALLYD_BIN is a sanitizer build;
#   * after a restart every ledger holds what was acknowledged.
# Prints "FAIL: ..." per failed assertion and a summary line.
set -u
cd "$(dirname "$0")/.." || exit 2
. tests/lib_server.sh
ls_init server-idle

section "--ledger-idle-close validation"
"$TALLYD" --data "$W/x" --listen 127.0.0.1:1 --ledger-idle-close soon >/dev/null 2>&1
check_eq "--ledger-idle-close soon refused (usage exit code)" 64 "$?"

D="$W/data"
start_tallyd "$D" "" --ledger-idle-close 1 || { echo "FAIL: setup: tallyd did not start"; summary t_server_idle; exit 1; }
U=$SURL
TOK=$(login "$U" admin "$ADMIN_PW")
check_ne "admin login" "" "$TOK"

metric() { # name -> value
    curl -s "$U/metrics" | awk -v n="$1" '$1 == n {print $2}'
}

section "20 ledgers written once, then idle"
for i in $(seq -w 0 19); do
    req POST "$U/v1/ledgers" "{\"name\":\"i$i\"}" "$TOK"
    [ "$CODE" = 201 ] || bad "create i$i" 201 "$CODE"
    req POST "$U/v1/ledgers/i$i/set" "{\"entries\":[{\"key\":\"k\",\"value\":\"v1-$i\"}]}" "$TOK"
    [ "$CODE $(jq_py 'j["tx"]')" = "200 1" ] || bad "first write to i$i" "200 1" "$CODE $BODY"
done
OPEN=x
for t in $(seq 1 100); do
    OPEN=$(metric tally_ledgers_open)
    [ "$OPEN" = 0 ] && break
    sleep 0.1
done
check_eq "every idle ledger closed within 10 s" 0 "$OPEN"
check_eq "closed-idle counter covers the 20" yes "$([ "$(metric tally_ledgers_closed_idle_total)" -ge 20 ] && echo yes || echo no)"
check_eq "commits counter keeps the closed ledgers' commits" 20 "$(metric tally_commits_total)"

req GET "$U/v1/ledgers" "" "$TOK"
check_eq "list: every ledger's size, from the closed handles" "20 [1]" \
    "$(jq_py 'str(sum(1 for l in j["ledgers"] if l["name"].startswith("i"))) + " " + json.dumps(sorted(set(l["size"] for l in j["ledgers"] if l["name"].startswith("i"))))')"
check_eq "listing reopened nothing" 0 "$(metric tally_ledgers_open)"

section "reopen on use"
for i in $(seq -w 0 19); do
    req GET "$U/v1/ledgers/i$i/get?key=k" "" "$TOK"
    [ "$CODE $(jq_py 'j["value"]')" = "200 v1-$i" ] || bad "read i$i after reopen" "200 v1-$i" "$CODE $BODY"
    req POST "$U/v1/ledgers/i$i/set" "{\"entries\":[{\"key\":\"k\",\"value\":\"v2-$i\"}]}" "$TOK"
    [ "$CODE $(jq_py 'j["tx"]')" = "200 2" ] || bad "second write to i$i" "200 2" "$CODE $BODY"
done
ok

section "closing and reopening under load"
cat >"$W/idle.py" <<'PYEOF'
import http.client, json, sys, threading, time, urllib.parse
url, tok = sys.argv[1:3]
host = urllib.parse.urlparse(url)
H = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
def conn():
    return http.client.HTTPConnection(host.hostname, host.port, timeout=60)
res = {"writes": [], "wbad": [], "reads": 0, "rbad": []}
lock = threading.Lock()
stop = time.time() + 4
def writer(w):
    c = conn(); n = 0
    while time.time() < stop:
        c.request("POST", "/v1/ledgers/i00/set", json.dumps({"entries": [{"key": "w%d-%d" % (w, n), "value": "x"}]}), H)
        r = c.getresponse(); b = r.read()
        with lock:
            if r.status == 200: res["writes"].append(json.loads(b)["tx"])
            elif len(res["wbad"]) < 3: res["wbad"].append((r.status, b[:200].decode("utf-8", "replace")))
        n += 1
def reader(k):
    while time.time() < stop:
        for i in range(1 + k, 20, 6):
            c = conn()
            c.request("GET", "/v1/ledgers/i%02d/get?key=k" % i, headers=H)
            r = c.getresponse(); b = r.read(); c.close()
            with lock:
                if r.status == 200 and json.loads(b)["value"] == "v2-%02d" % i: res["reads"] += 1
                elif len(res["rbad"]) < 3: res["rbad"].append((i, r.status, b[:200].decode("utf-8", "replace")))
        time.sleep(1.3)  # longer than the idle time: the ledger closes meanwhile
ts = [threading.Thread(target=writer, args=(w,)) for w in range(8)] + \
     [threading.Thread(target=reader, args=(k,)) for k in range(6)]
for t in ts: t.start()
for t in ts: t.join()
w = sorted(res["writes"])
print(json.dumps({"writes": len(w), "contiguous": w == list(range(3, 3 + len(w))),
                  "wbad": res["wbad"], "reads": res["reads"], "rbad": res["rbad"]}))
PYEOF
LOAD=$(python3 "$W/idle.py" "$U" "$TOK" 2>&1 | tail -n1)
echo "under load: $LOAD"
check_eq "writes to the busy ledger: all 200, tx ids 3.. contiguous" "true []" \
    "$(BODY="$LOAD" jq_py 'json.dumps(j["contiguous"]) + " " + json.dumps(j["wbad"])')"
check_eq "reads of ledgers closing and reopening meanwhile: all right" "[]" "$(BODY="$LOAD" jq_py 'json.dumps(j["rbad"])')"
check_eq "some writes and reads happened" yes "$(BODY="$LOAD" jq_py '"yes" if j["writes"] > 50 and j["reads"] > 20 else "no"')"
check_eq "ledgers were closed while in use elsewhere" yes "$([ "$(metric tally_ledgers_closed_idle_total)" -ge 40 ] && echo yes || echo no)"
NW=$(BODY="$LOAD" jq_py 'str(j["writes"])')

section "memory after ledgers close and reopen"
write_many
wait_closed() { # waits (<= 30 s) until no ledger handle is open
    local t o=x
    for t in $(seq 1 300); do
        o=$(metric tally_ledgers_open)
        [ "$o" = 0 ] && break
        sleep 0.1
    done
    echo "$o"
}
for mode in create "set k one" "set k two"; do
    # shellcheck disable=SC2086 # mode is the command and its words
    R=$(python3 "$W/many.py" "$U" "$TOK" r%03d 300 60 $mode 2>&1 | tail -n1)
    check_eq "$mode: 300 ledgers" '300 []' "$(BODY="$R" jq_py 'str(j["done"]) + " " + json.dumps(j["bad"])')"
    check_eq "$mode: every ledger closed idle afterwards" 0 "$(wait_closed)"
done
req GET "$U/v1/ledgers/r299/get?key=k" "" "$TOK"
check_eq "r299 reopened once more reads its second value" "200 two" "$CODE $(jq_py 'j["value"]')"
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$SPID/status" 2>/dev/null)
echo "tallyd RSS after 320 ledgers closed, reopened and closed again: ${RSS_KB:-?} kB"
if nm -D "$TALLYD" 2>/dev/null | grep -q __asan_init; then
    echo "  (RSS not checked: $TALLYD is a sanitizer build)"
else
    check_eq "tallyd RSS under 100 MiB once they are closed" yes \
        "$([ -n "$RSS_KB" ] && [ "$RSS_KB" -lt 102400 ] && echo yes || echo "no (${RSS_KB:-?} kB)")"
fi

section "restart"
stop_tallyd "$SPID"
start_tallyd "$D" "" --ledger-idle-close 1 || { bad "restart" started "$(head -c 300 "$SOUT.err")"; summary t_server_idle; exit 1; }
U=$SURL
TOK=$(login "$U" admin "$ADMIN_PW")
req GET "$U/v1/ledgers/i00" "" "$TOK"
check_eq "the busy ledger holds every acknowledged write" "$((NW + 2))" "$(jq_py 'str(j["size"])')"
for i in 05 19; do
    req GET "$U/v1/ledgers/i$i/get?key=k" "" "$TOK"
    check_eq "i$i after restart" "200 v2-$i 2" "$CODE $(jq_py 'j["value"] + " " + str(j["tx"])')"
done

summary t_server_idle
