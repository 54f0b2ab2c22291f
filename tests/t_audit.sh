#!/usr/bin/env bash
# t_audit.sh — `tally audit` (tools/cli_audit.c) end to end:
#   1. an honest server with a writer in the background: --rounds 8 prints 8
#      "ok" lines (sizes never shrink, the ledger grows), exit 0; --rehash
#      re-hashes every new transaction; usage errors (64), an unknown ledger
#      (1), SIGTERM (0);
#   2. a lying proxy between auditor and tallyd (tests/liar.py when it has
#      the modes used here, else the small proxy below): switched to
#      `rollback` (an old checkpoint), `bad_signature` (a flipped signature
#      byte) and `fork` (liar.py: another tallyd with the same key and ledger
#      but another history; the small proxy: another root signed with the
#      server's real key): each time the auditor prints ALERT on stdout and
#      stderr and exits 2;
#   3. a real rollback: tallyd stopped (the auditor logs errors and goes on)
#      and restarted on a backup of its data directory: ALERT, exit 2.
# Loopback only; every process is killed on exit; about 20 s. Prints
# "SKIP: …" and exits 0 when tallyd is missing or the binary has no `audit`.
# Env: TALLY_BIN (default build/tally), TALLYD_BIN (default build/tallyd).
set -u
cd "$(dirname "$0")/.." || exit 2
. tests/lib_server.sh
ls_init audit
"$T" audit --help >/dev/null 2>&1 || { echo "SKIP: $T has no 'audit' command"; exit 0; }

D="$W/data"
start_tallyd "$D" || { echo "FAIL: setup: tallyd did not start"; summary t_audit; exit 1; }
U=$SURL
export TALLY_USER=admin TALLY_PASSWORD="$ADMIN_PW"
TALLY_HOME="$W/writer" "$T" --server "$U" ledger create books >/dev/null 2>&1
check_eq "setup: ledger create" 0 "$?"
TALLY_HOME="$W/writer" "$T" --server "$U" --ledger books set k0 v0 >/dev/null 2>&1

# writer SECONDS: one set every 0.1 s, in the background (own state dir)
start_writer() {
    (
        end=$((SECONDS + $1)) i=1
        while [ $SECONDS -lt $end ]; do
            TALLY_HOME="$W/writer" timeout 10 "$T" --server "$U" --ledger books set "w$i" "value $i" \
                >/dev/null 2>&1
            i=$((i + 1))
            sleep 0.1
        done
    ) &
    WRITER=$!
    ls_track "$WRITER"
}
stop_writer() { kill "$WRITER" 2>/dev/null; wait "$WRITER" 2>/dev/null; }

OKLINE='^audit: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z ledger=books size=[0-9]+ root=[0-9a-f]{64} ok \(\+[0-9]+ tx'

# ---------------------------------------------------------------- 1. honest
start_writer 30
OUT=$(TALLY_HOME="$W/a1" timeout 30 "$T" audit --server "$U" --ledger books --interval 300ms --rounds 8 2>"$W/err")
RC=$?
check_eq "honest: exit 0" 0 "$RC"
check_eq "honest: 8 lines" 8 "$(printf '%s\n' "$OUT" | grep -c .)"
check_eq "honest: 8 ok lines" 8 "$(printf '%s\n' "$OUT" | grep -Ec "$OKLINE\)\$")"
check_eq "honest: nothing on stderr" "" "$(cat "$W/err")"
SIZES=$(printf '%s\n' "$OUT" | sed -n 's/.* size=\([0-9]*\) .*/\1/p' | tr '\n' ' ')
check_eq "honest: sizes never shrink" ok "$(python3 -c 'import sys; s=[int(x) for x in sys.argv[1].split()]; print("ok" if s==sorted(s) and s[-1]>s[0] else "bad")' "$SIZES")"
check_eq "honest: +k adds up" ok "$(printf '%s\n' "$OUT" | python3 -c '
import re, sys
prev = None; ok = True
for l in sys.stdin:
    m = re.search(r"size=(\d+) .*\(\+(\d+) tx", l)
    s, k = int(m.group(1)), int(m.group(2))
    if prev is not None and s - prev != k: ok = False
    prev = s
print("ok" if ok else "bad")')"

OUT=$(TALLY_HOME="$W/a2" timeout 30 "$T" audit --server "$U" --ledger books --interval 300ms --rounds 4 --rehash 2>"$W/err")
check_eq "rehash: exit 0" 0 "$?"
check_eq "rehash: 4 ok lines" 4 "$(printf '%s\n' "$OUT" | grep -Ec "$OKLINE, [0-9]+ rehashed\)\$")"
check_eq "rehash: the first round re-hashes everything (first contact)" ok "$(printf '%s\n' "$OUT" | head -n 1 |
    sed -n 's/.* size=\([0-9]*\) .*(+\([0-9]*\) tx, \([0-9]*\) rehashed)/\1 \2 \3/p' |
    awk '$1 == $2 && $2 == $3 && $1 > 0 { print "ok" }')"

# An empty ledger first, then a write: the next round extends size 0 (no
# consistency proof from 0 exists; the auditor must not ask for one).
TALLY_HOME="$W/writer" "$T" --server "$U" ledger create empty >/dev/null 2>&1
TALLY_HOME="$W/a4" "$T" audit --server "$U" --ledger empty --interval 300ms --rounds 4 >"$W/e.out" 2>"$W/e.err" &
APID=$!
ls_track "$APID"
i=0; while ! grep -q ' ok ' "$W/e.out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
TALLY_HOME="$W/writer" "$T" --server "$U" --ledger empty set e1 x >/dev/null 2>&1
wait "$APID"
check_eq "empty ledger, then a write: exit 0" 0 "$?"
check_eq "empty ledger, then a write: the last round sees size 1" 1 "$(tail -n 1 "$W/e.out" | sed -n 's/.* size=\([0-9]*\) .*/\1/p')"
check_eq "empty ledger, then a write: nothing on stderr" "" "$(cat "$W/e.err")"

"$T" audit --server "$U" --ledger books --interval 5x >/dev/null 2>&1
check_eq "usage: bad interval" 64 "$?"
"$T" audit --ledger books >/dev/null 2>&1
check_eq "usage: no --server" 64 "$?"
"$T" audit --server "$U" --ledger books --rounds 0 >/dev/null 2>&1
check_eq "usage: --rounds 0" 64 "$?"
TALLY_HOME="$W/a3" "$T" audit --server "$U" --ledger nosuch --rounds 2 >/dev/null 2>"$W/err"
check_eq "unknown ledger: exit 1" 1 "$?"
check_match "unknown ledger: message" 'ledger=nosuch error: checkpoint: not found' "$(cat "$W/err")"

TALLY_HOME="$W/a3" "$T" audit --server "$U" --ledger books --interval 1m >"$W/sig.out" 2>&1 &
APID=$!
ls_track "$APID"
i=0; while ! grep -q ' ok ' "$W/sig.out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$APID"
i=0; while kill -0 "$APID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
wait "$APID"
check_eq "SIGTERM during the sleep: exit 0" 0 "$?"

# ---------------------------------------------------------------- 2. a lying proxy
# The proxy forwards everything; POST /__liar/mode {"mode": M} switches how
# it answers GET .../checkpoint: pass | rollback (the first checkpoint it saw)
# | bad_signature (one signature byte flipped) | fork (another root, signed
# with the real server key, as a compromised or equivocating server would).
cat >"$W/proxy.py" <<'PYEOF'
import base64, hashlib, http.client, json, sys, threading, traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse
port, upstream, keyfile = int(sys.argv[1]), urlparse(sys.argv[2]), sys.argv[3]
state = {"mode": "pass", "first": {}}
lock = threading.Lock()

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    _, _, KEY_NAME, KEY_ID, b = open(keyfile).read().strip().split("+", 4)
    SIGNER = Ed25519PrivateKey.from_private_bytes(base64.b64decode(b)[1:])
except ImportError:
    SIGNER = None

def sign(text):
    name, kid, sig = KEY_NAME, KEY_ID, SIGNER.sign(text)
    return text + b"\n" + "\u2014 ".encode() + name.encode() + b" " + base64.b64encode(bytes.fromhex(kid) + sig) + b"\n"

def lie(path, body):
    with lock:
        state["first"].setdefault(path, body)
        mode = state["mode"]
    if mode == "rollback":
        return state["first"][path]
    text, sigs = body.split(b"\n\n", 1)
    if mode == "bad_signature":
        pre, b64 = sigs.rstrip(b"\n").rsplit(b" ", 1)
        raw = bytearray(base64.b64decode(b64)); raw[10] ^= 1
        return text + b"\n\n" + pre + b" " + base64.b64encode(bytes(raw)) + b"\n"
    if mode == "fork":
        lines = text.split(b"\n")
        lines[2] = base64.b64encode(hashlib.sha256(b"fork" + base64.b64decode(lines[2])).digest())
        return sign(b"\n".join(lines) + b"\n")
    return body

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def handle_any(self):
        try:
            self.forward()
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
            self.reply(502, b'{"error":{"code":"internal","message":"proxy"}}', "application/json")
    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else None
        if self.path == "/__liar/mode":
            with lock: state["mode"] = json.loads(data)["mode"]
            return self.reply(200, b'{"ok":true}', "application/json")
        c = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        c.request(self.command, self.path, body=data, headers=hdrs)
        r = c.getresponse()
        body = r.read()
        c.close()
        if self.command == "GET" and self.path.split("?")[0].endswith("/checkpoint") and r.status == 200:
            body = lie(self.path, body)
        self.reply(r.status, body, r.getheader("Content-Type") or "application/json")
    def reply(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = handle_any

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PYEOF
PPORT=$(free_port)
PURL="http://127.0.0.1:$PPORT"
stop_writer
start_writer 60
# tests/liar.py (t_liar.sh's proxy) when it has the modes used here: its
# `fork` forwards to an alternative tallyd with the same key and ledger id
# but another history (a copy of the data directory that then diverged).
# Otherwise the small proxy above (its `fork` re-signs another root).
LIAR="$W/proxy.py"
PASS=pass
if [ -f tests/liar.py ] && grep -q '__liar/mode' tests/liar.py && grep -q 'alt-upstream' tests/liar.py &&
    grep -q 'bad_signature' tests/liar.py && grep -q 'rollback' tests/liar.py; then
    LIAR=tests/liar.py
    PASS=none
    stop_tallyd "$SPID"
    cp -a "$D" "$W/data.alt"
    start_tallyd "$D" "$SPORT" || { echo "FAIL: setup: restart"; summary t_audit; exit 1; }
    [ "$SURL" = "$U" ] || { echo "FAIL: setup: port $SPORT not free again"; summary t_audit; exit 1; }
    MAIN_PID=$SPID
    start_tallyd "$W/data.alt" || { echo "FAIL: setup: alt tallyd"; summary t_audit; exit 1; }
    ALT=$SURL
    SPID=$MAIN_PID SPORT=${U##*:} SURL=$U # part 3 stops and restarts the main tallyd
    for i in 1 2 3; do
        TALLY_HOME="$W/altwriter" "$T" --server "$ALT" --ledger books set "fork$i" other >/dev/null 2>&1
    done
    python3 tests/liar.py --listen "$PPORT" --upstream "$U" --alt-upstream "$ALT" --mode none \
        >"$W/liar.log" 2>&1 &
else
    python3 "$W/proxy.py" "$PPORT" "$U" "$D/server.key" >"$W/liar.log" 2>&1 &
fi
ls_track $!
PROXY_UP=1
wait_health "$PURL" 100 || { bad "proxy: starts" "up" "down: $(head -c 300 "$W/liar.log")"; PROXY_UP=0; }
liar_mode() { # MODE: switches the proxy; retried until it answers with MODE
    local i=0 r=""
    while [ $i -lt 5 ]; do
        r=$(curl -s -m 5 -X POST -H 'Content-Type: application/json' --data-binary "{\"mode\":\"$1\"}" \
            "$PURL/__liar/mode")
        case "$r" in *"\"$1\""*) return 0 ;; esac
        i=$((i + 1))
        sleep 0.2
    done
    bad "proxy: switch to $1" "{\"mode\": \"$1\"}" "$r"
    return 1
}

# lie MODE: an auditor (own state dir) through the proxy sees >= 2 good
# rounds while the writer writes, then the proxy lies: ALERT, exit 2.
lie() {
    local m="$1" home="$W/lie-$1" i=0
    liar_mode $PASS
    : >"$W/$m.out"
    TALLY_HOME="$home" "$T" audit --server "$PURL" --ledger books --interval 300ms >"$W/$m.out" 2>"$W/$m.err" &
    local apid=$!
    ls_track "$apid"
    while [ "$(grep -c ' ok ' "$W/$m.out")" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    check_eq "$m: two good rounds through the proxy" 2 "$(grep -c ' ok ' "$W/$m.out" | awk '{ print ($1 >= 2) ? 2 : $1 }')"
    # The ledger grows past what the proxy saw first (what `rollback` replays).
    local first
    first=$(sed -n '1s/.* size=\([0-9]*\) .*/\1/p' "$W/$m.out")
    i=0
    while [ "$(sed -n '$s/.* size=\([0-9]*\) .*/\1/p' "$W/$m.out")" -le "${first:-0}" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    check_eq "$m: the ledger grows meanwhile" yes "$([ $i -lt 100 ] && echo yes)"
    liar_mode "$m"
    i=0; while kill -0 "$apid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$apid" 2>/dev/null
    wait "$apid"
    check_eq "$m: exit 2" 2 "$?"
    check_match "$m: ALERT on stdout" '^ALERT: [0-9T:.-]+Z ledger=books checkpoint: ' "$(cat "$W/$m.out")"
    check_match "$m: ALERT on stderr" '^ALERT: .*ledger=books' "$(cat "$W/$m.err")"
    check_match "$m: evidence saved" "$home/evidence/" "$(cat "$W/$m.out")"
    check_match "$m: the reason" "$2" "$(grep ALERT "$W/$m.out")"
    [ "$(grep -c ALERT "$W/$m.out")" = 1 ] || { echo "--- $m: auditor stderr, proxy log:"; tail -n 5 "$W/$m.err"; tail -n 20 "$W/liar.log"; }
}
[ $PROXY_UP = 1 ] && lie rollback 'size|rollback|smaller'
[ $PROXY_UP = 1 ] && lie bad_signature 'signature'
if [ $PROXY_UP = 0 ]; then
    :
elif python3 -c 'import cryptography' 2>/dev/null || [ "$LIAR" = tests/liar.py ]; then
    lie fork 'consisten|fork|another root|rollback|smaller'
else
    echo "note: fork case skipped (python3 'cryptography' missing)"
fi
liar_mode $PASS
stop_writer

# ---------------------------------------------------------------- 3. a real rollback
stop_tallyd "$SPID"
cp -a "$D" "$W/data.old"
start_tallyd "$D" "$SPORT" || { echo "FAIL: setup: restart"; summary t_audit; exit 1; }
TALLY_HOME="$W/writer" "$T" --server "$U" --ledger books set after-backup 1 >/dev/null 2>&1
TALLY_HOME="$W/a4" "$T" audit --server "$U" --ledger books --interval 200ms >"$W/rb.out" 2>"$W/rb.err" &
APID=$!
ls_track "$APID"
i=0; while ! grep -q ' ok ' "$W/rb.out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
stop_tallyd "$SPID"
sleep 0.6 # a few rounds against a stopped server: errors, no alert
check_eq "server down: the auditor goes on" yes "$(kill -0 "$APID" 2>/dev/null && echo yes)"
check_match "server down: errors logged" 'ledger=books error: checkpoint: ' "$(cat "$W/rb.err")"
rm -rf "$D" && mv "$W/data.old" "$D"
start_tallyd "$D" "$SPORT" || { echo "FAIL: setup: restart on the old copy"; summary t_audit; exit 1; }
if [ "$SURL" = "$U" ]; then
    i=0; while kill -0 "$APID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$APID" 2>/dev/null
    wait "$APID"
    check_eq "restored backup: exit 2" 2 "$?"
    check_match "restored backup: ALERT" '^ALERT: .*ledger=books checkpoint: ' "$(cat "$W/rb.out")"
else
    echo "note: restored-backup part skipped: port $SPORT was not free again"
fi

summary t_audit
