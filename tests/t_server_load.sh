#!/usr/bin/env bash
# t_server_load.sh — tallyd's event loops under concurrency (src/server/http.c):
# writes are suspended while their group commits and resumed by the log
# writer; slow requests (scrypt logins) run on the worker pool; shutdown
# drains suspended requests. Asserted:
#   * --threads is validated (0 and 65 refused with the usage exit code);
#   * 64 keep-alive connections x 25 single-entry sets on ONE event loop
#     (--threads 1), plus 8 verified/set and 8 del: every request gets 200,
#     the tx ids are distinct and exactly 1..state size, every key reads back
#     from the tx its set returned;
#   * 12 concurrent logins (scrypt, worker pool: 4 of admin, 8 of unknown
#     users, which cost the same scrypt) do not hold up the event loop:
#     /health answers (200) before the last login completes; admin's get 200,
#     the others 401; at most 2 hash at once, the rest get 503 busy and retry;
#   * SIGTERM while 32 writers keep writing: tallyd exits 0; each writer got
#     only 200s (then a refused or closed connection, or 503 shutting_down);
#     after a restart every acknowledged tx holds its key and the ledger's
#     size equals the highest acknowledged tx or more (an unacknowledged tail
#     may be durable), and verify passes.
#   * binary batches (Content-Type application/vnd.tally.batch): a good one
#     commits its entries (non-UTF-8 value, tx metadata, conditions); 12 kinds
#     of malformed body get 400, oversize fields 413, broken preconditions
#     409, and none of them writes anything.
# Prints "FAIL: ..." per failed assertion and a summary line.
set -u
cd "$(dirname "$0")/.." || exit 2
. tests/lib_server.sh
ls_init server-load

section "--threads validation"
"$TALLYD" --data "$W/x" --listen 127.0.0.1:1 --threads 0 >/dev/null 2>&1
check_eq "--threads 0 refused (usage exit code)" 64 "$?"
"$TALLYD" --data "$W/x" --listen 127.0.0.1:1 --threads 65 >/dev/null 2>&1
check_eq "--threads 65 refused" 64 "$?"

D="$W/data"
start_tallyd "$D" "" --threads 1 || { echo "FAIL: setup: tallyd did not start"; summary t_server_load; exit 1; }
PID1=$SPID
U=$SURL
TOK=$(login "$U" admin "$ADMIN_PW")
check_ne "admin login" "" "$TOK"
req POST "$U/v1/ledgers" '{"name":"L"}' "$TOK"
check_eq "create ledger" 201 "$CODE"
LID=$(jq_py 'j["id"]')

cat >"$W/load.py" <<'PYEOF'
# load.py URL TOKEN MODE OUT: concurrent clients over keep-alive connections.
import http.client, json, sys, threading, time, urllib.parse
url, tok, mode, out = sys.argv[1:5]
host = urllib.parse.urlparse(url)
H = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}

def conn():
    return http.client.HTTPConnection(host.hostname, host.port, timeout=60)

def post(c, path, body):
    c.request("POST", path, json.dumps(body), H)
    r = c.getresponse()
    return r.status, r.read()

res = []
lock = threading.Lock()

def writer(i, n, stop_on_error):
    c = conn()
    mine = []
    for k in range(n):
        key = "w%02d-%04d" % (i, k)
        try:
            st, b = post(c, "/v1/ledgers/L/set", {"entries": [{"key": key, "value": "v" + key}]})
        except Exception as e:
            mine.append((key, "conn", str(e)[:80]))
            break
        mine.append((key, st, json.loads(b).get("tx") if st == 200 else b.decode()[:200]))
        if st != 200 and stop_on_error:
            break
    with lock:
        res.extend(mine)

if mode == "mixed":
    ts = [threading.Thread(target=writer, args=(i, 25, False)) for i in range(64)]
    def vset(i):
        c = conn()
        st, b = post(c, "/v1/ledgers/L/verified/set", {"entries": [{"key": "vs%02d" % i, "value": "x"}]})
        with lock:
            res.append(("vs%02d" % i, st, json.loads(b).get("tx") if st == 200 else b.decode()[:200]))
    def dele(i):
        c = conn()
        st, b = post(c, "/v1/ledgers/L/set", {"entries": [{"key": "d%02d" % i, "value": "x"}]})
        with lock:
            res.append(("d%02d" % i, st, json.loads(b).get("tx") if st == 200 else b.decode()[:200]))
        st, b = post(c, "/v1/ledgers/L/del", {"key": "d%02d" % i})
        with lock:
            res.append(("del-d%02d" % i, st, json.loads(b).get("tx") if st == 200 else b.decode()[:200]))
    ts += [threading.Thread(target=vset, args=(i,)) for i in range(8)]
    ts += [threading.Thread(target=dele, args=(i,)) for i in range(8)]
elif mode == "forever":
    ts = [threading.Thread(target=writer, args=(i, 1000000, True)) for i in range(32)]
elif mode == "logins":
    pw = tok  # the admin password in this mode
    done = []
    busy = []
    def lg(i):  # 4 right logins of admin, 8 of unknown users (same scrypt work, 401);
        c = conn()  # 503 "busy" (more than 2 logins at once) is retried, as the C client does
        user = "admin" if i < 4 else "nobody%d" % i
        for attempt in range(200):
            c.request("POST", "/v1/login", json.dumps({"user": user, "password": pw}), {"Content-Type": "application/json"})
            r = c.getresponse(); b = r.read()
            if r.status != 503:
                break
            with lock:
                busy.append(json.loads(b)["error"]["code"])
            time.sleep(0.05)
        with lock:
            done.append(("login", r.status if i < 4 else r.status + 10000, time.monotonic()))
    def health():
        time.sleep(0.05)
        c = conn()
        c.request("GET", "/health")
        r = c.getresponse(); r.read()
        with lock:
            done.append(("health", r.status, time.monotonic()))
    ts = [threading.Thread(target=lg, args=(i,)) for i in range(12)] + [threading.Thread(target=health)]
    for t in ts: t.start()
    for t in ts: t.join()
    logins = [d for d in done if d[0] == "login"]
    h = [d for d in done if d[0] == "health"]
    json.dump({"logins_ok": sum(1 for d in logins if d[1] in (200, 10401)), "health": h[0][1] if h else 0,
               "busy": len(busy), "busy_codes": sorted(set(busy)),
               "health_before_last_login": bool(h) and h[0][2] < max(d[2] for d in logins)}, open(out, "w"))
    sys.exit(0)
for t in ts: t.start()
for t in ts: t.join()
json.dump(res, open(out, "w"))
PYEOF

section "64 connections on one event loop"
python3 "$W/load.py" "$U" "$TOK" mixed "$W/mixed.json"
BODY=$(cat "$W/mixed.json")
check_eq "every request 200" "[]" "$(jq_py '[r for r in j if r[1] != 200][:3]')"
check_eq "requests answered (64 x 25 + 8 + 8 x 2)" 1624 "$(jq_py 'len(j)')"
check_eq "tx ids distinct" "true" "$(jq_py 'len(set(r[2] for r in j)) == len(j)')"
MAXTX=$(jq_py 'max(r[2] for r in j)')
check_eq "tx ids are 1..n (n = requests)" "true" "$(jq_py 'sorted(r[2] for r in j) == list(range(1, len(j) + 1))')"
req GET "$U/v1/ledgers/L/state" "" "$TOK"
check_eq "state size = highest tx" "$MAXTX" "$(jq_py 'j["tx"]')"
BAD=0
for k in w00-0000 w31-0012 w63-0024 vs05; do
    req GET "$U/v1/ledgers/L/get?key=$k" "" "$TOK"
    TX=$(BODY="$(cat "$W/mixed.json")" jq_py "[r[2] for r in j if r[0] == '$k'][0]")
    [ "$CODE" = 200 ] && [ "$(jq_py 'j["tx"]')" = "$TX" ] || BAD=$((BAD + 1))
done
check_eq "keys read back from the tx their set returned" 0 "$BAD"
req GET "$U/v1/ledgers/L/get?key=d03" "" "$TOK"
check_eq "deleted key is gone" 404 "$CODE"

section "binary batches"
cat >"$W/bin.py" <<'PYEOF'
# bin.py URL TOKEN: posts binary batches (docs/API.md "Binary batches"), prints
# one JSON line per case: [name, status, body].
import http.client, json, struct, sys, urllib.parse
url, tok = sys.argv[1:3]
u = urllib.parse.urlparse(url)
def entry(key, value, cond=0, rev=0, meta=b"", reserved=0, klen=None):
    k = key.encode() if isinstance(key, str) else key
    return struct.pack("<BBHIIQ", cond, reserved, len(k) if klen is None else klen, len(value), len(meta), rev) + k + meta + value
def batch(entries, meta=b"", n=None, magic=b"TB01"):
    return magic + struct.pack("<II", len(entries) if n is None else n, len(meta)) + meta + b"".join(entries)
def post(body, ctype="application/vnd.tally.batch"):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("POST", "/v1/ledgers/L/set", body, {"Authorization": "Bearer " + tok, "Content-Type": ctype})
    r = c.getresponse()
    return r.status, r.read().decode("utf-8", "replace")
cases = [
    ("ok", batch([entry("b1", b"one"), entry("b2", b"\x00\xffbin", meta=b"em"), entry("b3", b"three", cond=1)], meta=b"txmeta")),
    ("ok-rev", None),
    ("bad magic", batch([entry("x", b"v")], magic=b"TB02")),
    ("short header", b"TB01\x01\x00"),
    ("zero entries", batch([], n=0)),
    ("count beyond the body", batch([entry("x", b"v")], n=2)),
    ("truncated entry", batch([entry("x", b"value")])[:-2]),
    ("trailing byte", batch([entry("x", b"v")]) + b"!"),
    ("reserved byte", batch([entry("x", b"v", reserved=1)])),
    ("unknown condition", batch([entry("x", b"v", cond=3)])),
    ("if_rev 0", batch([entry("x", b"v", cond=2, rev=0)])),
    ("rev without condition", batch([entry("x", b"v", rev=5)])),
    ("empty key", batch([entry("", b"v")])),
    ("key too long", batch([entry("k" * 1025, b"v")])),
    ("same key twice", batch([entry("x", b"1"), entry("x", b"2")])),
    ("if_absent on an existing key", batch([entry("b1", b"v", cond=1)])),
    ("if_rev mismatch", batch([entry("b1", b"v", cond=2, rev=7)])),
    ("meta too long", batch([entry("x", b"v")], meta=b"m" * 4097)),
]
for name, body in cases:
    if name == "ok-rev":
        body = batch([entry("b1", b"uno", cond=2, rev=1)])
    st, b = post(body)
    print(json.dumps([name, st, b]))
PYEOF
req GET "$U/v1/ledgers/L/state" "" "$TOK"
S0=$(jq_py 'j["tx"]')
python3 "$W/bin.py" "$U" "$TOK" >"$W/bin.out" 2>&1
binq() { BODY="$(grep -F "[\"$1\"," "$W/bin.out")" jq_py "$2"; }
check_eq "binary batch: 200" 200 "$(binq ok 'j[1]')"
TXB=$(binq ok 'json.loads(j[2])["tx"]')
check_eq "binary batch: tx is the next one" $((S0 + 1)) "$TXB"
req GET "$U/v1/ledgers/L/get?key=b2" "" "$TOK"
check_eq "binary batch: non-UTF-8 value reads back (hex)" "$TXB 00ff62696e" "$(jq_py 'str(j["tx"]) + " " + j.get("value_hex", "")')"
req GET "$U/v1/ledgers/L/tx/$TXB" "" "$TOK"
check_eq "binary batch: 3 entries in the tx" 3 "$(jq_py 'len(j["entries"])')"
req GET "$U/v1/ledgers/L/verified/tx/$TXB" "" "$TOK"
check_eq "binary batch: tx metadata at the end of the tx header (FORMAT.md)" 74786d657461 "$(jq_py 'j["tx_header_hex"][186:]')"
check_eq "binary batch with if_rev 1: 200" 200 "$(binq ok-rev 'j[1]')"
for c in "bad magic" "short header" "zero entries" "count beyond the body" "truncated entry" \
    "trailing byte" "reserved byte" "unknown condition" "if_rev 0" "rev without condition" "empty key" \
    "same key twice"; do
    check_eq "binary batch: $c -> 400 bad_request" "400 bad_request" "$(binq "$c" 'str(j[1]) + " " + json.loads(j[2])["error"]["code"]')"
done
check_eq "binary batch: key too long -> 413" 413 "$(binq "key too long" 'j[1]')"
check_eq "binary batch: meta too long -> 413" 413 "$(binq "meta too long" 'j[1]')"
check_eq "binary batch: if_absent on an existing key -> 409" 409 "$(binq "if_absent on an existing key" 'j[1]')"
check_eq "binary batch: if_rev mismatch -> 409" 409 "$(binq "if_rev mismatch" 'j[1]')"
req GET "$U/v1/ledgers/L/state" "" "$TOK"
check_eq "binary batch: the refused batches wrote nothing" $((S0 + 2)) "$(jq_py 'j["tx"]')"

section "slow logins on the worker pool"
python3 "$W/load.py" "$U" "$ADMIN_PW" logins "$W/logins.json"
BODY=$(cat "$W/logins.json")
check_eq "12 logins answered right (4 x 200, 8 x 401), retrying on 503 busy" 12 "$(jq_py 'j["logins_ok"]')"
check_eq "more than 2 logins at once: some answered 503 busy (and only that)" "True ['busy']" "$(jq_py 'str(j["busy"] > 0) + " " + str(j["busy_codes"])')"
check_eq "/health answers during the logins" 200 "$(jq_py 'j["health"]')"
check_eq "/health answered before the last login finished" true "$(jq_py 'j["health_before_last_login"]')"

section "SIGTERM with writers in flight"
python3 "$W/load.py" "$U" "$TOK" forever "$W/forever.json" &
LP=$!
ls_track "$LP"
sleep 1.5
kill -TERM "$PID1"
RC=timeout
for i in $(seq 1 200); do
    if ! kill -0 "$PID1" 2>/dev/null; then wait "$PID1"; RC=$?; break; fi
    sleep 0.1
done
check_eq "tallyd exits 0 on SIGTERM with requests in flight" 0 "$RC"
wait "$LP"
BODY=$(cat "$W/forever.json")
check_eq "writers saw only 200, then a closed connection or 503" "[]" \
    "$(jq_py '[r for r in j if r[1] not in (200, "conn") and not (r[1] == 503 and "shutting down" in r[2])][:3]')"
ACKED=$(jq_py 'sum(1 for r in j if r[1] == 200)')
check_eq "writers made progress before the signal" true "$(jq_py "$ACKED > 100")"
jq_py '"\n".join("%s %s" % (r[0], r[2]) for r in j if r[1] == 200)' >"$W/acked.txt"
HI=$(jq_py 'max(r[2] for r in j if r[1] == 200)')
start_tallyd "$D" || { echo "FAIL: restart"; summary t_server_load; exit 1; }
U=$SURL
TOK=$(login "$U" admin "$ADMIN_PW")
req GET "$U/v1/ledgers/L/state" "" "$TOK"
check_eq "size after restart >= highest acknowledged tx" true "$(jq_py "j['tx'] >= $HI")"
MISS=0
N=0
while read -r k tx; do
    N=$((N + 1))
    [ $((N % 97)) -eq 1 ] || continue # a sample: every 97th acknowledged write
    req GET "$U/v1/ledgers/L/get?key=$k" "" "$TOK"
    [ "$CODE" = 200 ] && [ "$(jq_py 'j["tx"]')" = "$tx" ] || MISS=$((MISS + 1))
done <"$W/acked.txt"
check_eq "acknowledged writes (sample) read back after restart" 0 "$MISS"
stop_tallyd "$SPID"
if [ -x "$T" ]; then
    "$T" --dir "$D/ledgers/$LID" verify >/dev/null 2>&1
    check_eq "tally verify of the ledger after shutdown under load" 0 "$?"
fi
summary t_server_load
