#!/usr/bin/env bash
# t_server_http.sh — tallyd's HTTP layer against clients that do not play by
# the rules (src/server/http.c, docs/API.md "Connections"). Asserted:
#   * --max-connections-per-ip, --idle-timeout and --request-timeout are validated (usage exit
#     code for 1025, 0, 3601, a non-number);
#   * 1100 stalled half-requests (a request line and one header, then
#     nothing) from 127.0.0.2: exactly 256 (the default per-IP limit) stay
#     open, the rest are closed at once; meanwhile 127.0.0.1 still gets
#     /health, a login and a write (curl --max-time 10), and 64 keep-alive
#     connections from 127.0.0.1 each get their answers; once the stalled
#     connections go, 127.0.0.2 is served again;
#   * --idle-timeout 2: a stalled half-request and an idle keep-alive
#     connection are closed by the server (within a generous 15 s), and curl
#     (libcurl, as the client library) reusing a connection the server closed
#     meanwhile reconnects and gets its answer;
#   * --request-timeout 3: a request trickled a byte per 0.25 s (the first on
#     a connection, and one after six answered requests on a kept-alive
#     connection) and a reader taking a 10 MB answer at 10 kB/s are closed
#     once 3 s have passed since the connection opened or its previous answer
#     (within 15 s), and counted in the metrics; the kept-alive connection,
#     a request every second, stays open meanwhile;
#   * --request-timeout 1: 4 writes of 65,536 entries (28 MB), each sent
#     0.6 s after its connection opened, are each answered 200 and written
#     once (they used to be reset after committing); of 5 GETs of a
#     65,536-entry tx queued on the worker pool behind 32 others, whose
#     clients close after 0.2 s, at least one is dropped, not built (counted);
#   * raw requests: two Content-Length headers (different or equal), a
#     Transfer-Encoding with a Content-Length or twice: 400 JSON; a transfer
#     coding other than chunked: 501 JSON at once (it used to hang); none of
#     them writes; a chunked body works; %00 in the path: 400 JSON (it cut
#     the path), while %00 in a query value still reads a key with a NUL;
#     what libmicrohttpd answers itself (malformed Content-Length or header
#     line 400, 431, 414, 505, a garbage request line: no answer) is answered
#     and the connection closed, and tallyd serves on.
# Prints "FAIL: ..." per failed assertion and a summary line.
set -u
cd "$(dirname "$0")/.." || exit 2
. tests/lib_server.sh
ls_init server-http

section "flag validation"
for f in "--max-connections-per-ip 1025" "--max-connections-per-ip x" "--idle-timeout 0" "--idle-timeout 3601" "--request-timeout 0" "--request-timeout 3601" "--request-timeout x"; do
    # shellcheck disable=SC2086 # the flag and its value
    "$TALLYD" --data "$W/x" --listen 127.0.0.1:1 $f >/dev/null 2>&1
    check_eq "$f refused (usage exit code)" 64 "$?"
done

# stall.py PORT N SRC OUT STOPFILE: N connections from SRC, each sending a
# request line and one header, then nothing. Writes to OUT how many are
# still open after a second ("open N"), then holds them until STOPFILE exists.
cat >"$W/stall.py" <<'PYEOF'
import os, resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n, src, out, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
socks = []
for i in range(n):
    s = socket.socket()
    try:
        s.bind((src, 0)); s.connect(("127.0.0.1", port))
        s.sendall(b"POST /v1/login HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        pass
    socks.append(s)
time.sleep(1)
alive = 0
for s in socks:
    s.setblocking(False)
    try:
        alive += s.recv(1) != b""
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
with open(out + ".tmp", "w") as f:
    f.write("open %d\n" % alive)
os.rename(out + ".tmp", out)
t0 = time.time()
while not os.path.exists(stop) and time.time() - t0 < 120:
    time.sleep(0.1)
PYEOF
wait_file() { # file, seconds*10
    local i=0
    while [ ! -s "$1" ] && [ $i -lt "$2" ]; do sleep 0.1; i=$((i + 1)); done
}

D="$W/data"
start_tallyd "$D" || { echo "FAIL: setup: tallyd did not start"; summary t_server_http; exit 1; }
U=$SURL
TOK=$(login "$U" admin "$ADMIN_PW")
req POST "$U/v1/ledgers" '{"name":"L"}' "$TOK"
check_eq "create ledger L" 201 "$CODE"

section "1100 stalled connections from one address"
python3 "$W/stall.py" "$SPORT" 1100 127.0.0.2 "$W/stall.out" "$W/stall.stop" &
STALL=$!
ls_track "$STALL"
wait_file "$W/stall.out" 600
check_eq "stalled connections from 127.0.0.2 kept open: the per-IP limit (256)" "open 256" "$(cat "$W/stall.out" 2>/dev/null)"
check_eq "127.0.0.1: GET /health answers meanwhile" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$U/health")"
check_ne "127.0.0.1: a login succeeds meanwhile" "" "$(login "$U" admin "$ADMIN_PW")"
check_eq "127.0.0.1: a write succeeds meanwhile" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
    -H "Authorization: Bearer $TOK" --data-binary '{"entries":[{"key":"k","value":"v"}]}' "$U/v1/ledgers/L/set")"
curl -s -o /dev/null --max-time 10 --interface 127.0.0.2 "$U/health"
check_match "127.0.0.2 beyond its limit: the connection is closed at once (curl exit 52 or 56)" '^(52|56)$' "$?"
cat >"$W/ka.py" <<'PYEOF'
import http.client, sys, threading
port, n, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ok = [0] * n
def run(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(per):
        c.request("GET", "/health"); r = c.getresponse(); r.read()
        ok[i] += r.status == 200
ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(ok))
PYEOF
check_eq "64 keep-alive connections from 127.0.0.1 x 20 requests, meanwhile" 1280 "$(timeout 60 python3 "$W/ka.py" "$SPORT" 64 20 2>&1 | tail -n 1)"
touch "$W/stall.stop"
wait "$STALL" 2>/dev/null
CODE2=000
for i in $(seq 1 100); do
    CODE2=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --interface 127.0.0.2 "$U/health")
    [ "$CODE2" = 200 ] && break
    sleep 0.1
done
check_eq "127.0.0.2 is served again once its stalled connections are gone" 200 "$CODE2"

section "raw requests: framing and what libmicrohttpd answers itself"
# raw.py PORT REQUEST (\r, \n as escapes, as in a Python string): sends it on a
# fresh connection, reads until the server closes or 10 s pass, prints
# "STATUS CODE CLOSED": the status of the first status line, the JSON error
# code (or "-" when the body is not JSON), closed/open.
cat >"$W/raw.py" <<'PYEOF'
import json, socket, sys
port, req = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
s.sendall(req); out = b""; closed = "closed"
try:
    while True:
        b = s.recv(65536)
        if not b: break
        out += b
        h, sep, body = out.partition(b"\r\n\r\n")
        cl = [int(l.split(b":")[1]) for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        if sep and cl and len(body) >= cl[0] and b"connection: close" not in h.lower():
            closed = "open"; break  # a keep-alive answer, complete
except socket.timeout:
    closed = "open"
status = out.split(b" ", 2)[1].decode() if out.startswith(b"HTTP/1.1 ") else "none"
try:
    code = json.loads(out.partition(b"\r\n\r\n")[2])["error"]["code"]
except Exception:
    code = "-"
print(status, code, closed)
PYEOF
raw() { python3 "$W/raw.py" "$SPORT" "$1" 2>&1; }
req GET "$U/v1/ledgers/L/state" "" "$TOK"
ST0="$BODY"
SETHDR='POST /v1/ledgers/L/set HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer '"$TOK"'\r\n'
SETBODY='{"entries":[{"key":"framing","value":"x"}]}'
check_eq "two different Content-Length headers: 400 (JSON), closed" "400 bad_request closed" \
    "$(raw "${SETHDR}Content-Length: ${#SETBODY}\r\nContent-Length: 2\r\n\r\n$SETBODY")"
check_eq "two equal Content-Length headers: 400 (JSON)" "400 bad_request closed" \
    "$(raw "${SETHDR}Content-Length: ${#SETBODY}\r\nContent-Length: ${#SETBODY}\r\n\r\n$SETBODY")"
check_eq "Transfer-Encoding gzip: 501 (JSON) at once, closed" "501 not_implemented closed" \
    "$(raw "${SETHDR}Transfer-Encoding: gzip\r\n\r\n$SETBODY")"
check_eq "Transfer-Encoding chunked with Content-Length: 400 (JSON)" "400 bad_request closed" \
    "$(raw "${SETHDR}Transfer-Encoding: chunked\r\nContent-Length: ${#SETBODY}\r\n\r\n$SETBODY")"
check_eq "two Transfer-Encoding headers: 400 (JSON)" "400 bad_request closed" \
    "$(raw "${SETHDR}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n")"
req GET "$U/v1/ledgers/L/state" "" "$TOK"
check_eq "the refused framings wrote nothing" "$ST0" "$BODY"
check_eq "a chunked body is taken (200, kept alive)" "200 - open" \
    "$(raw "${SETHDR}Transfer-Encoding: chunked\r\n\r\n$(printf '%x' ${#SETBODY})\r\n$SETBODY\r\n0\r\n\r\n")"
check_eq "%00 in the path: 400 (JSON), not the path cut at the NUL" "400 bad_request closed" \
    "$(raw "GET /v1/ledgers/L%00x/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $TOK\r\n\r\n")"
check_eq "%00 at the end of /health: 400 (JSON)" "400 bad_request closed" \
    "$(raw 'GET /health%00 HTTP/1.1\r\nHost: x\r\n\r\n')"
req POST "$U/v1/ledgers/L/set" '{"entries":[{"key_hex":"6e756c00","value":"nul key"}]}' "$TOK"
check_eq "a key with a NUL (key_hex)" 200 "$CODE"
req GET "$U/v1/ledgers/L/get?key=nul%00" "" "$TOK"
check_eq "%00 in a query value still reads that key" "200 nul key" "$CODE $(jq_py 'j["value"]')"
# libmicrohttpd 0.9.75 answers these itself, before tallyd sees the request:
# its status with an HTML body (docs/API.md lists them), and closes.
check_eq "a malformed Content-Length: 400 from libmicrohttpd, closed" "400 - closed" \
    "$(raw "${SETHDR}Content-Length: abc\r\n\r\n")"
check_eq "a header line without a colon: 400 from libmicrohttpd" "400 - closed" \
    "$(raw 'GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n')"
check_eq "headers over 32 KiB: 431 from libmicrohttpd" "431 - closed" \
    "$(raw "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: $(head -c 40000 /dev/zero | tr '\0' a)\r\n\r\n")"
check_eq "a request line over 32 KiB: 414 from libmicrohttpd" "414 - closed" \
    "$(raw "GET /health?x=$(head -c 40000 /dev/zero | tr '\0' a) HTTP/1.1\r\nHost: x\r\n\r\n")"
check_eq "HTTP/2.0 in the request line: 505 from libmicrohttpd" "505 - closed" \
    "$(raw 'GET /health HTTP/2.0\r\nHost: x\r\n\r\n')"
check_eq "a request line without a method: closed without an answer" "none - closed" "$(raw 'GARBAGE\r\n\r\n')"
# A request line with ~1000 query arguments overflows libmicrohttpd's pool
# before tallyd sees the request: 431, and (under ASan) nothing leaks.
for i in 1 2 3 4 5; do
    raw "GET /health?$(printf 'a=b&%.0s' $(seq 1000)) HTTP/1.1\r\nHost: x\r\n\r\n" >/dev/null
done
check_match "1000 query arguments: refused by libmicrohttpd, connection closed" '^(431|none) - closed$' \
    "$(raw "GET /health?$(printf 'a=b&%.0s' $(seq 1000)) HTTP/1.1\r\nHost: x\r\n\r\n")"
# Duplicate JSON keys are refused (not "the last one wins"), and a route that
# takes no batch takes at most 64 KiB of body.
TOK2=$(login "$U" admin "$ADMIN_PW")
req POST "$U/v1/login" '{"user":"nobody","user":"admin","password":"x"}'
check_eq "login with the user field twice: 400" "400 bad_request" "$CODE $(jq_py 'j["error"]["code"]')"
check_match "... the message names the duplicate" 'duplicate object key' "$BODY"
req POST "$U/v1/ledgers" '{"name":"dupl"}' "$TOK2"
req POST "$U/v1/ledgers/dupl/set" '{"entries":[{"key":"k","value":"v1"}]}' "$TOK2"
req POST "$U/v1/ledgers/dupl/set" '{"entries":[{"key":"k","value":"v2","if_absent":true,"if_absent":false}]}' "$TOK2"
check_eq "a condition given twice: 400, nothing written" "400" "$CODE"
req GET "$U/v1/ledgers/dupl/get?key=k" "" "$TOK2"
check_eq "... the value is still v1" "v1" "$(jq_py 'j["value"]')"
head -c 70000 /dev/zero | tr '\0' a >"$W/big.txt"
req POST "$U/v1/login" "{\"user\":\"admin\",\"password\":\"$(cat "$W/big.txt")\"}"
check_eq "a 70 KB login body: 413 (64 KiB for routes without batches)" "413 too_large" "$CODE $(jq_py 'j["error"]["code"]')"
check_eq "tallyd serves on after all of them" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$U/health")"
stop_tallyd "$SPID"

section "--idle-timeout"
start_tallyd "$W/data2" "" --idle-timeout 2 || { echo "FAIL: setup: tallyd --idle-timeout 2 did not start"; summary t_server_http; exit 1; }
U2=$SURL
cat >"$W/idle.py" <<'PYEOF'
import socket, sys, time
port = int(sys.argv[1])
def closed_after(s):  # seconds until the server closes s (or "open" after 15 s)
    t0 = time.time(); s.settimeout(15)
    try:
        while s.recv(4096): pass
        return "closed"
    except socket.timeout:
        return "open"
    except OSError:
        return "closed"
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
a = closed_after(s)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
head = s.recv(12)
b = closed_after(s)
print(a, head.decode(), b)
PYEOF
check_eq "a stalled half-request and an idle keep-alive connection are closed by the server" "closed HTTP/1.1 200 closed" "$(python3 "$W/idle.py" "$SPORT" 2>&1)"
# --rate 20/m: curl waits 3 s between the two transfers; the first
# connection has been closed by the server by then (idle 2 s).
CR=$(curl -s --max-time 20 --rate 20/m -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' "$U2/health" "$U2/health" | tr '\n' ' ')
check_eq "curl reusing a connection the server closed reconnects (200 twice, 2 connects)" "200 1 200 1 " "$CR"
stop_tallyd "$SPID"

# serve_ledger DIR LEDGER [tallyd args...]: starts tallyd (SPID, SPORT, SURL),
# logs in as admin (TOK) and creates LEDGER; ends the test if it cannot start.
serve_ledger() {
    local dir="$1" name="$2"
    shift 2
    start_tallyd "$dir" "" "$@" || { echo "FAIL: setup: tallyd $* did not start"; summary t_server_http; exit 1; }
    TOK=$(login "$SURL" admin "$ADMIN_PW")
    req POST "$SURL/v1/ledgers" "{\"name\":\"$name\"}" "$TOK"
}

section "--request-timeout"
# A client that trickles its request one byte per 0.25 s never goes silent for
# --idle-timeout, but the request deadline closes it; a keep-alive connection
# with a request every second stays open (each answer restarts the clock);
# a reader that takes a 10 MB answer 1000 bytes per 0.1 s is closed too.
serve_ledger "$W/data4" big --request-timeout 3
U4=$SURL T4=$TOK
python3 - "$W/bigset.json" <<'PYEOF'
import json, sys
json.dump({"entries": [{"key": "k%d" % i, "value": "v" * (1 << 20)} for i in range(10)]}, open(sys.argv[1], "w"))
PYEOF
req POST "$U4/v1/ledgers/big/set" "@$W/bigset.json" "$T4"
BIGTX=$(jq_py 'j["tx"]')
cat >"$W/trickle.py" <<'PYEOF'
import socket, sys, time
port, token, tx = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def until_closed(s, t0, drip=None, read=4096):
    # seconds until the server closes s while we drip bytes / read slowly; "open" after 20 s
    s.settimeout(0.1); got = 0
    while time.time() - t0 < 20:
        if drip:
            try: s.sendall(drip[:1]); drip = drip[1:] or b"x"
            except OSError: return round(time.time() - t0, 1), got
        try:
            d = s.recv(read)
            if not d: return round(time.time() - t0, 1), got
            got += len(d)
        except socket.timeout: pass
        except OSError: return round(time.time() - t0, 1), got
        time.sleep(0.25 if drip else 0.1)
    return "open", got
s = socket.create_connection(("127.0.0.1", port)); t0 = time.time()
s.sendall(b"GET /health HTTP/1.1\r\n")
a, _ = until_closed(s, t0, b"Host: " + b"x" * 200)
s = socket.create_connection(("127.0.0.1", port)); ok = 0
for i in range(6):
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    ok += s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(1)
t0 = time.time(); s.sendall(b"GET /he")
c, _ = until_closed(s, t0, b"alth HTTP/1.1\r\nHost: " + b"x" * 200)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port)); t0 = time.time()
s.sendall(("GET /v1/ledgers/big/tx/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % (tx, token)).encode())
d, got = until_closed(s, t0, None, 1000)
# closed after the deadline: the first >= 3 s after its connection opened; the
# next >= 3 s after the previous answer, which came ~1 s before t0
print("trickled-first:%s" % ("closed" if a != "open" and 2.9 <= a <= 15 else a),
      "keepalive-ok:%d" % ok,
      "trickled-next:%s" % ("closed" if c != "open" and 1.5 <= c <= 15 else c),
      "slow-reader:%s" % ("closed" if d != "open" and got < 10 * 1000 * 1000 else "%s after %d bytes" % (d, got)))
PYEOF
check_eq "a trickled request (first and on a kept-alive connection) and a slow reader are closed after the deadline (3 s after the connection opened or its previous answer, within 15 s); a connection with a request every second stays open" \
    "trickled-first:closed keepalive-ok:6 trickled-next:closed slow-reader:closed" "$(python3 "$W/trickle.py" "$SPORT" "$T4" "$BIGTX" 2>&1)"
check_eq "... counted in tallyd_connections_timed_out_total" "3" "$(curl -s --max-time 10 "$U4/metrics" | awk '/^tallyd_connections_timed_out_total/ {print $2}')"
check_eq "tallyd serves on" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$U4/health")"
stop_tallyd "$SPID"

section "--request-timeout 1: a write that arrived is never reset"
# A write that arrives before its deadline (sent 0.6 s into a 1 s one) and
# whose handling takes longer (65,536 entries, 28 MB of JSON) used to be reset after it
# committed: no answer, and libcurl resends such a request on a reused
# connection, writing it twice. Now a request other than GET/HEAD is exempt
# once it has arrived: every one is answered 200, each written once.
serve_ledger "$W/data5" late --request-timeout 1
U5=$SURL T5=$TOK
cat >"$W/late.py" <<'PYEOF'
import socket, sys, time, json
port, token, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = json.dumps({"entries": [{"key": "late%06d" % i, "value": "v" * 400} for i in range(65536)]}).encode()
res = []
for k in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.6)
    s.sendall(b"POST /v1/ledgers/late/set HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    s.settimeout(60)
    try:
        d = s.recv(64)
        res.append(d[:12].decode() if d else "closed")
    except OSError:
        res.append("reset")
    s.close()
print(" ".join(res))
PYEOF
check_eq "4 writes of 65,536 entries sent 0.6 s into a 1 s deadline: each answered" "HTTP/1.1 200 HTTP/1.1 200 HTTP/1.1 200 HTTP/1.1 200" "$(python3 "$W/late.py" "$SPORT" "$T5" 4 2>&1)"
req GET "$U5/v1/ledgers/late/state" "" "$T5"
check_eq "... and written once each (4 transactions)" 4 "$(jq_py 'j["tx"]')"
check_eq "... none counted as timed out" 0 "$(curl -s --max-time 10 "$U5/metrics" | awk '/^tallyd_connections_timed_out_total/ {print $2}')"
# GET tx/N of 65,536 entries runs on the worker pool (8 threads). 32 readers
# keep it busy; 5 more clients send the same request and close 0.2 s later,
# while theirs wait in the pool's queue: those are dropped, not built.
req POST "$U5/v1/ledgers" '{"name":"gone"}' "$T5"
python3 -c 'import json; print(json.dumps({"entries": [{"key": "g%06d" % i, "value": "v"} for i in range(65536)]}))' >"$W/gone.json"
req POST "$U5/v1/ledgers/gone/set" "@$W/gone.json" "$T5"
cat >"$W/gone.py" <<'PYEOF'
import socket, sys, time, threading
port, tok = int(sys.argv[1]), sys.argv[2]
req = ("GET /v1/ledgers/gone/tx/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % tok).encode()
def reader():
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(req); s.settimeout(30)
    try:
        while s.recv(1 << 20): pass
    except OSError: pass
busy = [threading.Thread(target=reader, daemon=True) for _ in range(32)]
for t in busy: t.start()
time.sleep(0.1)
gone = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
for s in gone: s.sendall(req)
time.sleep(0.2)
for s in gone: s.close()
for t in busy: t.join(40)
PYEOF
python3 "$W/gone.py" "$SPORT" "$T5"
check_match "GETs waiting on the pool whose clients left are dropped (of 5)" '^[1-5]$' "$(curl -s --max-time 10 "$U5/metrics" | awk '/^tallyd_requests_dropped_client_gone_total/ {print $2}')"
check_eq "tallyd serves on" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$U5/health")"
stop_tallyd "$SPID"

section "out of file descriptors"
# tallyd limited to 96 descriptors (ulimit -n, soft and hard): ledgers are created until one
# fails (each open ledger holds ~4). The failed creations leave no directory,
# the list still answers (200), and the server goes on. Run with 0..3 extra
# inherited descriptors, so that a creation fails with every count of free
# descriptors left (a CI runner that passed 3 more once left the walk that
# removes the directory without one).
# A ledgers/.trash-* directory (what a failed creation leaves when it could
# not remove its directory) is removed at start.
mkdir -p "$W/data3.0/ledgers/.trash-0123/log" && echo x >"$W/data3.0/ledgers/.trash-0123/log/00000000.seg"
for X in 0 1 2 3; do
    P3=$(free_port)
    (for j in $(seq 1 $X); do eval "exec $((20 + j))</dev/null"; done
     ulimit -n 96; TALLY_ADMIN_PASSWORD="$ADMIN_PW" exec "$TALLYD" --data "$W/data3.$X" --listen "127.0.0.1:$P3") \
        >"$W/fd.out" 2>"$W/fd.err" &
    SPID=$!
    ls_track "$SPID"
    SURL="http://127.0.0.1:$P3"
    wait_health "$SURL" 100 || { echo "FAIL: setup: tallyd (96 fds) did not start: $(head -c 300 "$W/fd.err")"; summary t_server_http; exit 1; }
    U3=$SURL
    T3=$(login "$U3" admin "$ADMIN_PW")
    [ "$X" = 0 ] && check_eq "a ledgers/.trash-* directory is removed at start" "" "$(ls -A "$W/data3.0/ledgers")"
    OKN=0 FAILN=0
    for i in $(seq 1 40); do
        req POST "$U3/v1/ledgers" "{\"name\":\"fd$i\"}" "$T3"
        if [ "$CODE" = 201 ]; then OKN=$((OKN + 1)); else FAILN=$((FAILN + 1)); LASTF="$CODE $BODY"; fi
    done
    check_eq "[+$X fds] some creations fail at the descriptor limit (with 500)" "yes" "$([ "$FAILN" -gt 0 ] && echo yes || echo "no: $OKN created")"
    check_match "[+$X fds] ... answered in JSON" '^500 \{"error"' "${LASTF:-none}"
    check_eq "[+$X fds] a failed creation leaves no directory under ledgers/" "$OKN" "$(ls -A "$W/data3.$X/ledgers" | wc -l)"
    req GET "$U3/v1/ledgers" "" "$T3"
    check_eq "[+$X fds] the list still answers" 200 "$CODE"
    check_eq "[+$X fds] ... and names every created ledger" "$OKN" "$(jq_py 'len(j["ledgers"])')"
    check_eq "[+$X fds] tallyd serves on" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$U3/health")"
    stop_tallyd "$SPID"
done

summary t_server_http
