# tests/lib_server.sh — shell helpers shared by tests/t_server.sh and
# tests/t_liar.sh (sourced, not run). Provides:
#   ls_init NAME         work dir $W (mktemp under /tmp), cleanup trap that kills
#                        every process registered with ls_track and removes $W
#   free_port            a free TCP port on 127.0.0.1
#   start_tallyd DIR [PORT] [extra tallyd args...]
#                        starts $TALLYD (TALLY_ADMIN_PASSWORD=$ADMIN_PW unless
#                        LS_NO_ADMIN_PW=1), waits for /health; sets SPID SPORT SURL
#                        and SOUT (its stdout file). Returns non-zero on failure.
#   stop_tallyd PID      SIGTERM, wait (5 s), then SIGKILL; sets STOP_RC
#   req METHOD URL [BODY|@FILE] [TOKEN]
#                        curl; sets CODE (HTTP status), BODY (response), CTYPE
#   jq_py EXPR           evaluates a Python expression over j = json.loads($BODY)
#   ok / bad WHAT EXPECTED GOT / check_eq / check_ne / check_match / summary NAME
set -u

TALLYD="${TALLYD_BIN:-build/tallyd}"
T="${TALLY_BIN:-build/tally}"
case "$TALLYD" in /*) ;; *) TALLYD="$PWD/$TALLYD" ;; esac
case "$T" in /*) ;; *) T="$PWD/$T" ;; esac
ADMIN_PW="${ADMIN_PW:-admin-secret-pw}"

pass=0
fail=0
LS_PIDS=""
ok() { pass=$((pass + 1)); }
bad() { # what, expected, got
    fail=$((fail + 1))
    printf 'FAIL: %s: expected %s got %s\n' "$1" "$(printf '%q' "$2" | head -c 600)" "$(printf '%q' "$3" | head -c 600)"
}
check_eq() { if [ "$2" = "$3" ]; then ok; else bad "$1" "$2" "$3"; fi; }
check_ne() { if [ "$2" != "$3" ]; then ok; else bad "$1" "something other than $2" "$3"; fi; }
check_match() { # what, ERE, got
    if printf '%s' "$3" | grep -Eq -- "$2"; then ok; else bad "$1" "match /$2/" "$3"; fi
}
summary() { # name
    # A sanitizer report in any tallyd's stderr (files *.err under $W) fails the
    # test: under ASan/UBSan (TALLYD_BIN=build/asan/tallyd) an error that does
    # not stop the server would otherwise pass unseen.
    local f
    for f in $(find "${W:-/nonexistent}" -maxdepth 2 -name '*.err' 2>/dev/null); do
        if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
            bad "no sanitizer report in $(basename "$f")" "none" \
                "$(grep -E -m 3 -A 6 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f" | head -c 1500)"
        fi
    done
    echo "$1: $pass passed, $fail failed ($SECONDS s)"
    [ "$fail" -eq 0 ]
}

section() { echo "-- $1 (${SECONDS}s)"; }
ls_track() { LS_PIDS="$LS_PIDS $1"; }
ls_cleanup() {
    local p
    for p in $LS_PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $LS_PIDS; do
        local i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [ -n "${W:-}" ] && rm -rf "$W"
}
ls_init() { # name
    if [ ! -x "$TALLYD" ]; then
        echo "SKIP: tallyd not built ($TALLYD)"
        exit 0
    fi
    command -v python3 >/dev/null || { echo "FAIL: setup: python3 missing"; exit 1; }
    command -v curl >/dev/null || { echo "FAIL: setup: curl missing"; exit 1; }
    W=$(mktemp -d "/tmp/tally-$1.XXXXXX") || exit 2
    trap ls_cleanup EXIT
    trap 'exit 130' INT TERM
    unset TALLY_DIR TALLY_LEDGER TALLY_USER TALLY_PASSWORD TALLY_HOME
    write_tv
    start_pyj
}

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_health() { # url, seconds*10
    local i=0
    while [ $i -lt "${2:-100}" ]; do
        if curl -s -m 1 -o /dev/null "$1/health" 2>/dev/null; then return 0; fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

start_tallyd() { # dir [port] [args...]
    local dir="$1" port="${2:-}" try=0
    shift
    [ $# -gt 0 ] && shift
    while [ $try -lt 3 ]; do
        [ -z "$port" ] && port=$(free_port)
        SOUT=$(mktemp "$W/tallyd-out.XXXXXX")
        if [ "${LS_NO_ADMIN_PW:-0}" = 1 ]; then
            (unset TALLY_ADMIN_PASSWORD; exec "$TALLYD" --data "$dir" --listen "127.0.0.1:$port" "$@") >"$SOUT" 2>"$SOUT.err" &
        else
            TALLY_ADMIN_PASSWORD="$ADMIN_PW" "$TALLYD" --data "$dir" --listen "127.0.0.1:$port" "$@" >"$SOUT" 2>"$SOUT.err" &
        fi
        SPID=$!
        ls_track "$SPID"
        SPORT=$port
        SURL="http://127.0.0.1:$port"
        if wait_health "$SURL" 100 && kill -0 "$SPID" 2>/dev/null; then return 0; fi
        kill -KILL "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
        echo "note: tallyd did not start on port $port: $(head -c 300 "$SOUT.err")" >&2
        port=""
        try=$((try + 1))
    done
    return 1
}

stop_tallyd() { # pid
    kill -TERM "$1" 2>/dev/null
    local i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        STOP_RC=killed
    else
        wait "$1" 2>/dev/null
        STOP_RC=$?
    fi
}

# req METHOD URL [BODY or @file] [TOKEN]
req() {
    local m="$1" u="$2" b="${3:-}" tok="${4:-}"
    local args=(-s -m 60 -X "$m" -o "$W/resp.body" -D "$W/resp.hdr" -w '%{http_code}')
    [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
    if [ -n "$b" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$b")
    fi
    CODE=$(curl "${args[@]}" "$u" 2>/dev/null)
    [ -z "$CODE" ] && CODE=000
    BODY=$(cat "$W/resp.body" 2>/dev/null)
    CTYPE=$(grep -i '^content-type:' "$W/resp.hdr" 2>/dev/null | tail -n 1 | tr -d '\r' | sed 's/^[^:]*: *//')
}

# jq_py EXPR: prints the Python expression over j (the parsed $BODY, None if
# not JSON) and body (the raw text); "PYERR:..." on error. One persistent
# python3 (a coprocess, started by ls_init after write_tv) serves every call:
# starting Python per check is slow on a loaded machine. The tv.py functions
# are loaded; tv(f, *args) returns f's result as JSON or "BAD: why".
jq_py() {
    local b e r
    b=$(printf '%s' "$BODY" | base64 -w0)
    e=$(printf '%s' "$1" | base64 -w0)
    printf '%s\t%s\n' "$b" "$e" >&"${PYJ[1]}"
    IFS= read -r r <&"${PYJ[0]}"
    printf '%s' "$r" | base64 -d
    echo
}
start_pyj() {
    coproc PYJ { exec python3 -u -c '
import base64, json, sys
src = open(sys.argv[1]).read().split("def main")[0]
exec(src)
def tv(f, *a):
    try:
        r = f(*a)
        return r if isinstance(r, str) else json.dumps(r)
    except Exception as e:
        return "BAD: %s: %s" % (type(e).__name__, e)
for line in sys.stdin:
    b, e = line.rstrip("\n").split("\t")
    body = base64.b64decode(b).decode("utf-8", "replace")
    try:
        j = json.loads(body)
    except Exception:
        j = None
    try:
        r = eval(base64.b64decode(e).decode())
        r = r if isinstance(r, str) else json.dumps(r)
    except Exception as ex:
        r = "PYERR:%s" % ex
    sys.stdout.write(base64.b64encode(r.encode()).decode() + "\n")
' "$W/tv.py"; }
    ls_track "$PYJ_PID"
}

login() { # url user password -> prints token (empty on failure)
    BODY=$(curl -s -m 30 -X POST -H 'Content-Type: application/json' \
        --data-binary "{\"user\":\"$2\",\"password\":\"$3\"}" "$1/v1/login")
    jq_py '(j or {}).get("token", "")'
}

# write_many: writes $W/many.py, which drives many ledgers over one
# keep-alive connection, time-bounded, and prints {"done": N, "bad": [...]}:
#   many.py URL TOKEN NAMEFMT N SECS create           creates NAMEFMT % i (201 each)
#   many.py URL TOKEN NAMEFMT N SECS set KEY VALFMT   writes KEY = VALFMT % i (or VALFMT
#                                                      as is without a %) to each (200)
write_many() {
    cat >"$W/many.py" <<'PYEOF'
import http.client, json, sys, time, urllib.parse
url, tok, fmt, n, secs, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
u = urllib.parse.urlparse(url)
h = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
t0 = time.time(); done = 0; bad = []
for i in range(n):
    if time.time() - t0 > secs: break
    if mode == "create":
        c.request("POST", "/v1/ledgers", json.dumps({"name": fmt % i}), h)
    else:
        key, vf = sys.argv[7], sys.argv[8]
        val = vf % i if "%" in vf else vf
        c.request("POST", "/v1/ledgers/%s/set" % (fmt % i), json.dumps({"entries": [{"key": key, "value": val}]}), h)
    r = c.getresponse(); b = r.read()
    if r.status == (201 if mode == "create" else 200): done += 1
    elif len(bad) < 3: bad.append((i, r.status, b[:200].decode("utf-8", "replace")))
print(json.dumps({"done": done, "secs": round(time.time() - t0, 2), "bad": bad}))
PYEOF
}

# write_tv: writes $W/tv.py, an independent verifier (hashlib + Ed25519 from
# the `cryptography` module, else `openssl pkeyutl -verify -rawin`) of
# checkpoints (src/note/note.h), RFC 9162 proofs and the proof bundles of
# docs/API.md. Usage:
#   tv.py note VKEY ORIGIN < note              -> {"size":S,"root":"hex"}
#   tv.py bundle VKEY ORIGIN TSIZE TROOT < b   -> {"size":S,"root":"hex","value":...}
#   tv.py incl < proof-inclusion-json          -> root hex
#   tv.py cons < proof-consistency-json        -> "ok"
# Exits 1 with "BAD: why" on any failure.
write_tv() {
    cat >"$W/tv.py" <<'PYEOF'
import base64, hashlib, json, os, subprocess, sys, tempfile

def H(b): return hashlib.sha256(b).digest()
def leaf(d): return H(b"\x00" + d)
def node(l, r): return H(b"\x01" + l + r)

class Bad(Exception): pass

def mth(leaves):
    n = len(leaves)
    if n == 0: return H(b"")
    if n == 1: return leaf(leaves[0])
    k = 1
    while k * 2 < n: k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))

def incl_root(index, size, lh, proof):
    # RFC 9162 2.1.3.2
    if index >= size: raise Bad("index %d >= size %d" % (index, size))
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0: raise Bad("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1; sn >>= 1
                    if fn & 1 or fn == 0: break
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    if sn != 0: raise Bad("inclusion proof too short")
    return r

def cons_check(m, n, old_root, new_root, proof):
    # RFC 9162 2.1.4.2
    if m > n: raise Bad("old %d > size %d" % (m, n))
    if m == n:
        if proof: raise Bad("non-empty proof for equal sizes")
        if old_root != new_root: raise Bad("same size, other root")
        return
    if m == 0:
        if proof: raise Bad("non-empty proof from size 0")
        return
    p = list(proof)
    if m & (m - 1) == 0: p = [old_root] + p
    if not p: raise Bad("empty consistency proof")
    fn, sn = m - 1, n - 1
    while fn & 1: fn >>= 1; sn >>= 1
    fr = sr = p[0]
    for c in p[1:]:
        if sn == 0: raise Bad("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node(c, fr); sr = node(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1; sn >>= 1
                    if fn & 1 or fn == 0: break
        else:
            sr = node(sr, c)
        fn >>= 1; sn >>= 1
    if sn != 0: raise Bad("consistency proof too short")
    if fr != old_root: raise Bad("old root mismatch")
    if sr != new_root: raise Bad("new root mismatch")

def ed25519_verify(pub, sig, msg):
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.exceptions import InvalidSignature
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
            return True
        except InvalidSignature:
            return False
    except ImportError:
        pass
    d = tempfile.mkdtemp(prefix="tv.", dir="/tmp")
    try:
        der = bytes.fromhex("302a300506032b6570032100") + pub
        kp, sp, mp = os.path.join(d, "k.der"), os.path.join(d, "s"), os.path.join(d, "m")
        open(kp, "wb").write(der); open(sp, "wb").write(sig); open(mp, "wb").write(msg)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", kp,
                            "-rawin", "-in", mp, "-sigfile", sp], capture_output=True)
        return r.returncode == 0
    finally:
        for f in os.listdir(d): os.unlink(os.path.join(d, f))
        os.rmdir(d)

def parse_vkey(vkey):
    name, kid, b = vkey.strip().split("+", 2)
    raw = base64.b64decode(b, validate=True)
    if len(raw) != 33 or raw[0] != 1: raise Bad("bad vkey")
    pub = raw[1:]
    want = H(name.encode() + b"\n\x01" + pub)[:4]
    if want.hex() != kid: raise Bad("vkey key id %s != computed %s" % (kid, want.hex()))
    return name, want, pub

def verify_note(note, vkey, origin):
    name, kid, pub = parse_vkey(vkey)
    if isinstance(note, str): note = note.encode()
    i = note.find(b"\n\n")
    if i < 0: raise Bad("no blank line in note")
    text, sigs = note[:i + 1], note[i + 2:]
    ok = False
    for line in sigs.split(b"\n"):
        if not line: continue
        pre = "\u2014 ".encode() + name.encode() + b" "
        if not line.startswith(pre): continue
        raw = base64.b64decode(line[len(pre):], validate=True)
        if raw[:4] != kid: continue
        if not ed25519_verify(pub, raw[4:], text): raise Bad("bad signature")
        ok = True
        break
    if not ok: raise Bad("no signature by %s" % name)
    lines = text.decode().split("\n")
    if lines[0] != origin: raise Bad("origin %r != %r" % (lines[0], origin))
    size = int(lines[1])
    if str(size) != lines[1]: raise Bad("size not canonical")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32: raise Bad("root length")
    return size, root

def proof_list(o): return [bytes.fromhex(x) for x in o]

def value_bytes(o, name):
    if name in o: return o[name].encode()
    if name + "_hex" in o: return bytes.fromhex(o[name + "_hex"])
    raise Bad("no " + name)

def check_txh(txh, tx):
    if len(txh) < 93 or txh[0] != 1: raise Bad("tx header kind/len")
    if int.from_bytes(txh[1:9], "little") != tx: raise Bad("tx header id != tx")
    if 93 + int.from_bytes(txh[89:93], "little") != len(txh): raise Bad("tx header meta_len")
    return txh[49:81], int.from_bytes(txh[81:85], "little")

def entry_leaf(hdr, key, meta, value):
    if len(hdr) != 12: raise Bad("entry header length")
    kl = int.from_bytes(hdr[2:4], "little"); ml = int.from_bytes(hdr[4:8], "little")
    vl = int.from_bytes(hdr[8:12], "little")
    if kl != len(key) or ml != len(meta) or vl != len(value): raise Bad("entry header lengths")
    return hdr + key + meta + H(value)

def verify_bundle(b, vkey, origin, tsize, troot):
    size, root = verify_note(b["checkpoint"], vkey, origin)
    if size < tsize: raise Bad("rollback: %d < trusted %d" % (size, tsize))
    if tsize > 0 and size > tsize:
        c = b["consistency"]
        if c["old"] != tsize or c["size"] != size: raise Bad("consistency sizes")
        cons_check(tsize, size, troot, root, proof_list(c["proof"]))
    elif tsize > 0 and root != troot:
        raise Bad("same size, other root")
    tx = b["tx"]
    txh = bytes.fromhex(b["tx_header_hex"])
    tp = b["tx_proof"]
    if tp["index"] != tx - 1 or tp["size"] != size: raise Bad("tx_proof index/size")
    if incl_root(tx - 1, size, leaf(txh), proof_list(tp["proof"])) != root: raise Bad("tx inclusion")
    eroot, ecount = check_txh(txh, tx)
    sent = os.environ.get("TV_SENT")
    if sent is not None and "entries" not in b:
        b = dict(b); b["entries"] = [dict(e, index=i, header_hex=(bytes([0, 0]) + len(e["key"].encode()).to_bytes(2, "little") + (0).to_bytes(4, "little") + len(e["value"].encode()).to_bytes(4, "little")).hex(), meta_hex="") for i, e in enumerate(json.loads(sent))]
    if "entries" in b:
        leaves = []
        for i, e in enumerate(b["entries"]):
            if e["index"] != i: raise Bad("entry index")
            leaves.append(entry_leaf(bytes.fromhex(e["header_hex"]), value_bytes(e, "key"),
                                     bytes.fromhex(e["meta_hex"]), value_bytes(e, "value")))
        if len(leaves) != ecount: raise Bad("entry count")
        if mth(leaves) != eroot: raise Bad("entries root")
        return {"size": size, "root": root.hex(), "tx": tx, "entries": len(leaves)}
    e, ep = b["entry"], b["entry_proof"]
    if ep["index"] != e["index"] or ep["size"] != ecount: raise Bad("entry_proof index/size")
    v = value_bytes(b, "value")
    ld = entry_leaf(bytes.fromhex(e["header_hex"]), value_bytes(b, "key"), bytes.fromhex(e["meta_hex"]), v)
    if incl_root(e["index"], ecount, leaf(ld), proof_list(ep["proof"])) != eroot: raise Bad("entry inclusion")
    return {"size": size, "root": root.hex(), "tx": tx, "value": v.decode("utf-8", "replace")}

def T_note(body, vkey, origin):
    s, r = verify_note(body if body.endswith("\n") else body + "\n", vkey, origin)
    return {"size": s, "root": r.hex()}
def T_bundle(j, vkey, origin, tsize, troot, sent=None):
    if sent is not None: os.environ["TV_SENT"] = json.dumps(sent)
    try:
        return verify_bundle(j, vkey, origin, int(tsize), bytes.fromhex(troot))
    finally:
        os.environ.pop("TV_SENT", None)
def T_incl(j):
    r = incl_root(j["index"], j["size"], bytes.fromhex(j["leaf_hash"]), proof_list(j["proof"]))
    if r.hex() != j["root"]: raise Bad("root mismatch")
    return r.hex()
def T_cons(j):
    cons_check(j["old"], j["size"], bytes.fromhex(j["old_root"]), bytes.fromhex(j["root"]), proof_list(j["proof"]))
    return "ok"

def main():
    a = sys.argv[1:]
    data = sys.stdin.buffer.read()
    try:
        if a[0] == "note":
            s, r = verify_note(data, a[1], a[2]); print(json.dumps({"size": s, "root": r.hex()}))
        elif a[0] == "bundle":
            print(json.dumps(verify_bundle(json.loads(data), a[1], a[2], int(a[3]),
                                           bytes.fromhex(a[4]) if len(a) > 4 and a[4] else b"")))
        elif a[0] == "incl":
            j = json.loads(data)
            r = incl_root(j["index"], j["size"], bytes.fromhex(j["leaf_hash"]), proof_list(j["proof"]))
            if r.hex() != j["root"]: raise Bad("root mismatch")
            print(r.hex())
        elif a[0] == "cons":
            j = json.loads(data)
            cons_check(j["old"], j["size"], bytes.fromhex(j["old_root"]), bytes.fromhex(j["root"]), proof_list(j["proof"]))
            print("ok")
        elif a[0] == "mth":
            print(mth([bytes.fromhex(x) for x in a[1:]]).hex())
    except (Bad, KeyError, ValueError, TypeError, IndexError) as e:
        print("BAD: %s: %s" % (type(e).__name__, e)); sys.exit(1)

main()
PYEOF
}
