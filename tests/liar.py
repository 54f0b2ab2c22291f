#!/usr/bin/env python3
"""liar.py — a lying HTTP proxy in front of tallyd, for tests/t_liar.sh.

    python3 tests/liar.py --listen PORT --upstream http://127.0.0.1:P
                          [--alt-upstream http://127.0.0.1:Q] [--alt-ledger NAME]
                          --mode MODE

Forwards every request (method, path and query, headers including
Authorization and Accept, body) to the upstream and returns its response,
except that it lies according to MODE on the responses that matter:
verified/* bundles, verified/getmany batches (JSON and binary TVB1),
/checkpoint, proof/*, the ledger description (GET /v1/ledgers/L) and
/v1/server. Standard library only; loopback only.

Control (never forwarded):
    POST /__liar/mode   body: the new mode (plain text or {"mode": "..."})
    POST /__liar/alt    body: a new --alt-upstream URL
    GET  /__liar/stats  {"mode", "lies", "requests", "batch_lies",
                        "batch_requests", "batch_binary"}: lies = responses
                        changed, requests rewritten, or answered by the alt
                        upstream (fork, same_size_other_root, swap_key);
                        batch_lies = those of verified/getmany;
                        batch_requests = verified/getmany requests,
                        batch_binary = those answered 200 in TVB1

MODE (an optional ":ARG" selects a variant):
  none                    pass through (records responses for rollback/stale)
  value                   rewrite the value in a bundle (verified/get; every
                          entry of verified/tx and verified/set)
  value_hex               replace "value" by a "value_hex" of other bytes
  value_both              keep "value", add a contradicting "value_hex"
  tx_header[:OFF]         flip a byte (default offset 10: ts) of tx_header_hex
  entry_header[:OFF]      flip a byte (default 1: flags -> tombstone bit) of the
                          entry's header_hex (every entry for verified/tx)
  drop_proof:WHICH        drop one element of WHICH = tx | entry | consistency
  reorder_proof:WHICH     swap the first two elements
  extra_proof:WHICH       append an element
                          (consistency also applies to GET proof/consistency,
                          tx also to GET proof/inclusion)
  inject_meta[:TEXT]      add tx metadata TEXT ("approved-by: mallory") to a
                          POST verified/set before forwarding it
  replay_set:N            answer POST verified/set with the real, valid
                          bundle of the existing tx N (verified/tx/N with the
                          request's "trusted"), and POST del with {"tx": N},
                          without forwarding the write
  replay_stale:N          replay_set:N, and GET checkpoint answered with the
                          first one recorded (a stale but valid checkpoint)
  history_key:K, scan_prefix:P
                          forward GET history of key K / GET scan of prefix P
                          instead of the one asked for
  history_order, scan_order
                          reverse the rows of a GET history / scan page
                          (history keeps the revision numbers in place); a
                          single row is repeated
  history_value, scan_value
                          append "X" to the first value of a GET history /
                          GET scan page (unsigned lists the client proves row
                          by row)
  proof_field:NAME        flip a byte of field NAME (root, leaf_hash, old_root)
                          of a GET proof/inclusion or proof/consistency answer
  tx_index[:only]         claim another tx id (tx+1 and tx_proof.index+1; with
                          :only just "tx")
  rollback                replay the first response recorded for the same
                          request (verified/* and checkpoint; query without
                          "trusted"; for getmany also the same body and
                          Accept header): an older, smaller checkpoint
  fork                    forward everything to --alt-upstream (same key and
                          ledger id, other history)
  same_size_other_root    the same as fork (t_liar sets up the alt upstream at
                          the client's trusted size with another root)
  swap_key                the same as fork (the alt upstream has its own key)
  swap_identity           rewrite the ledger id in the description and in
                          every checkpoint origin (breaks the signature)
  swap_ledger             serve another ledger (--alt-ledger) of the same
                          server: validly signed, other origin
  other_key[:K]           verified/get of key K (default "a") instead of the
                          requested key; the valid bundle is returned as is
  wrong_version           verified/get without its tx/at/rev selector: the
                          (valid) bundle of the latest version instead
  other_tx                verified/tx/N answered with the bundle of tx N+1
  bad_signature           flip a byte of every checkpoint signature
  stale_checkpoint_fresh_proof
                          put the last checkpoint seen before this mode was
                          set into fresh bundles (proofs stay at the new size)

POST verified/getmany (docs/API.md, "Batched verified reads"), in both forms:
the JSON answer, and the binary TVB1 answer (Accept:
application/vnd.tally.bundles), which the proxy decodes into the JSON form's
structure (checkpoint, consistency {old,size,proof}, results [{key, value or
value_hex, tx, rev, entry {index,header_hex,meta_hex}, entry_proof
{index,size,proof}, tx_header_hex, tx_proof {index,size,proof}} or {key,
error}]), lies in, and re-encodes exactly (a body that does not decode, or
does not re-encode to the same bytes, is passed through untouched). What TVB1
does not carry (tx, ts, the proofs' index and size: derived from the tx
header and the checkpoint) cannot be lied about in binary: a mode that only
changes those changes nothing there and is not counted.
  - the checkpoint lies (bad_signature, swap_identity,
    stale_checkpoint_fresh_proof) and the consistency-proof lies
    ({drop,reorder,extra}_proof:consistency) apply to the batch's one
    checkpoint and consistency proof;
  - the per-bundle lies (value, value_hex, value_both, tx_header,
    entry_header, {drop,reorder,extra}_proof:{tx,entry}, tx_index) apply to
    ONE result: the LAST found result that the lie changes (so a client that
    checks only the first result is caught out); value_both, and tx_index
    (tx and tx_proof.index are not sent), only change the JSON form;
  - value (getmany): other bytes of the same length (the entry header still
    matches; only the entry inclusion proof can tell); value:append is the
    single-bundle lie (appends "LIE": the header's value length disagrees, and
    a TVB1 body no longer parses);
  - rollback, fork, same_size_other_root, swap_key, swap_ledger: as above;
  - other_key[:K]: the request body's last key that is not K is replaced by K
    (default "a") before forwarding: the answer holds K's valid bundle, whose
    key bytes differ from the key asked;
  - wrong_version: the query's tx/at selector is dropped (the latest
    versions instead);
  - batch_drop (getmany only): remove the last result (n one less);
  - batch_swap (getmany only): swap the first two results.
"""
import argparse
import base64
import copy
import hashlib
import http.client
import http.server
import json
import re
import struct
import sys
import threading
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
       "transfer-encoding", "upgrade", "host", "content-length"}
LEDGER_RE = re.compile(r"^/v1/ledgers/([A-Za-z0-9._-]{1,64})(/.*)?$")


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.mode = args.mode
        self.upstream = args.upstream
        self.alt = args.alt_upstream
        self.alt_ledger = args.alt_ledger
        self.lies = 0
        self.batch_lies = 0
        self.batch_requests = 0  # verified/getmany requests
        self.batch_binary = 0    # ... answered (200) in the binary form TVB1
        self.requests = 0
        self.first = {}      # request key -> (status, ctype, body) of the first 200 response
        self.last_cp = {}    # ledger -> last checkpoint note seen (any mode)
        self.frozen_cp = {}  # ledger -> last_cp when the mode was last set


def loopback(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname or not (u.hostname == "localhost" or u.hostname.startswith("127.")):
        sys.exit("liar.py: upstream must be http://127.x.x.x:PORT (loopback only): %s" % url)
    return u.hostname, u.port or 80


def flip_hex(h, off):
    b = bytearray(bytes.fromhex(h))
    if not b:
        return h
    off = min(off, len(b) - 1)
    b[off] ^= 0x01
    return b.hex()


def bad_sig_note(note):
    out = []
    for line in note.split("\n"):
        if line.startswith("\u2014 "):
            parts = line.split(" ")
            raw = bytearray(base64.b64decode(parts[-1]))
            if len(raw) > 10:
                raw[10] ^= 0x01
            parts[-1] = base64.b64encode(bytes(raw)).decode()
            line = " ".join(parts)
        out.append(line)
    return "\n".join(out)


def fake_id(i):
    return hashlib.sha256(("liar" + i).encode()).hexdigest()[:32]


def swap_origin(note):
    lines = note.split("\n")
    m = re.match(r"^(.*/ledger/)([0-9a-f]{32})$", lines[0]) if lines else None
    if m:
        lines[0] = m.group(1) + fake_id(m.group(2))
    return "\n".join(lines)


# ---- verified/getmany: the binary form TVB1 (docs/API.md, "Batched verified reads")
BUNDLES_CTYPE = "application/vnd.tally.bundles"


class Malformed(ValueError):
    pass


class _Reader:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, n):
        if self.o + n > len(self.b):
            raise Malformed("truncated at byte %d (%d more wanted, %d left)" % (self.o, n, len(self.b) - self.o))
        x = self.b[self.o:self.o + n]
        self.o += n
        return x

    def u(self, n):
        return int.from_bytes(self.take(n), "little")

    def hashes(self):
        return [self.take(32).hex() for _ in range(self.u(1))]


def set_bytes(o, name, b):
    """o[name] = b as text when it is UTF-8, else o[name + "_hex"] (the JSON form's rule)."""
    try:
        o[name] = b.decode("utf-8")
    except UnicodeDecodeError:
        o[name + "_hex"] = b.hex()


def get_bytes(o, name):
    if isinstance(o.get(name), str):
        return o[name].encode("utf-8")
    if isinstance(o.get(name + "_hex"), str):
        return bytes.fromhex(o[name + "_hex"])
    return b""


def note_size(note):
    try:
        return int(note.split("\n")[1])
    except (IndexError, ValueError):
        return None


def tvb1_decode(body):
    """TVB1 bytes -> the JSON form's dict (derived fields filled in).
    Raises Malformed when the body does not parse exactly."""
    r = _Reader(body)
    if r.take(4) != b"TVB1":
        raise Malformed("magic")
    n, c = r.u(4), r.u(4)
    try:
        note = r.take(c).decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("checkpoint note is not UTF-8")
    size = note_size(note)
    d = {"checkpoint": note}
    old, cons = r.u(8), r.hashes()
    if old or cons:
        d["consistency"] = {"old": old, "size": size, "proof": cons}
    results = []
    for i in range(n):
        status, reserved, k = r.u(1), r.u(1), r.u(2)
        x = {}
        set_bytes(x, "key", r.take(k))
        if reserved:
            x["_reserved"] = reserved
        if status == 1:
            x["error"] = {"code": "not_found"}
        elif status == 0:
            rev, idx, hdr = r.u(8), r.u(4), r.take(12)
            meta = r.take(int.from_bytes(hdr[4:8], "little"))
            value = r.take(int.from_bytes(hdr[8:12], "little"))
            eproof = r.hashes()
            txh = r.take(r.u(4))
            tproof = r.hashes()
            tx = int.from_bytes(txh[1:9], "little") if len(txh) >= 9 else 0
            ecount = int.from_bytes(txh[81:85], "little") if len(txh) >= 85 else 0
            set_bytes(x, "value", value)
            x["tx"] = tx
            x["rev"] = rev
            x["entry"] = {"index": idx, "header_hex": hdr.hex(), "meta_hex": meta.hex()}
            x["entry_proof"] = {"index": idx, "size": ecount, "proof": eproof}
            x["tx_header_hex"] = txh.hex()
            x["tx_proof"] = {"index": tx - 1, "size": size, "proof": tproof}
        else:
            raise Malformed("result %d: status %d" % (i, status))
        results.append(x)
    d["results"] = results
    if r.o != len(body):
        d["_trailing_hex"] = body[r.o:].hex()
    return d


def _tvb1_hashes(p):
    p = p if isinstance(p, list) else []
    return bytes([len(p) & 0xFF]) + b"".join(bytes.fromhex(h) for h in p)


def tvb1_result(x):
    """One result of the dict form -> its TVB1 bytes (what TVB1 does not carry is ignored)."""
    key = get_bytes(x, "key")
    head = bytes([1 if "error" in x else 0, x.get("_reserved", 0) & 0xFF]) + struct.pack("<H", len(key) & 0xFFFF) + key
    if "error" in x:
        return head
    e = x.get("entry") if isinstance(x.get("entry"), dict) else {}
    txh = bytes.fromhex(x.get("tx_header_hex", ""))
    return b"".join([head, struct.pack("<QI", x.get("rev", 0), e.get("index", 0)),
                     bytes.fromhex(e.get("header_hex", "")), bytes.fromhex(e.get("meta_hex", "")),
                     get_bytes(x, "value"), _tvb1_hashes((x.get("entry_proof") or {}).get("proof")),
                     struct.pack("<I", len(txh)), txh, _tvb1_hashes((x.get("tx_proof") or {}).get("proof"))])


def tvb1_encode(d):
    """The dict form -> TVB1 bytes; encode(decode(b)) == b for every b decode accepts."""
    note = d.get("checkpoint", "").encode("utf-8")
    res = d.get("results") if isinstance(d.get("results"), list) else []
    c = d.get("consistency") if isinstance(d.get("consistency"), dict) else None
    out = [b"TVB1", struct.pack("<II", len(res), len(note)), note,
           struct.pack("<Q", c.get("old", 0) if c else 0), _tvb1_hashes(c.get("proof") if c else [])]
    out += [tvb1_result(x) for x in res]
    out.append(bytes.fromhex(d.get("_trailing_hex", "")))
    return b"".join(out)


def batch_checkpoint(body):
    """The checkpoint note of a getmany answer (either form), or None."""
    try:
        if body[:4] == b"TVB1":
            return tvb1_decode(body).get("checkpoint")
        return json.loads(body).get("checkpoint")
    except (ValueError, AttributeError):
        return None


def other_key_body(body, k):
    """A getmany request body with its last key that is not k replaced by k, or None."""
    try:
        j = json.loads(body)
    except ValueError:
        return None
    if not isinstance(j, dict):
        return None
    for name, new in (("keys", k), ("keys_hex", k.encode().hex())):
        ks = j.get(name)
        if isinstance(ks, list):
            for i in reversed(range(len(ks))):
                if ks[i] != new:
                    ks[i] = new
                    return json.dumps(j).encode()
    return None


def same_len_value(x):
    """Other value bytes of the same length (the entry header still matches)."""
    v = get_bytes(x, "value")
    nv = v[:-1] + bytes([v[-1] ^ 0x01]) if v else b"LIE"
    x.pop("value", None)
    x.pop("value_hex", None)
    set_bytes(x, "value", nv)
    e = x.get("entry")
    if len(nv) != len(v) and isinstance(e, dict) and len(e.get("header_hex", "")) == 24:
        h = bytearray(bytes.fromhex(e["header_hex"]))
        h[8:12] = struct.pack("<I", len(nv))
        e["header_hex"] = h.hex()


class Liar:
    def __init__(self, st):
        self.st = st

    def proofs(self, kind, path, j, which):
        """The proof arrays of j that `which` names."""
        out = []
        if kind == "bundle":
            name = {"tx": "tx_proof", "entry": "entry_proof", "consistency": "consistency"}.get(which)
            if name and isinstance(j.get(name), dict) and isinstance(j[name].get("proof"), list):
                out.append(j[name]["proof"])
        elif kind == "proof":
            if (which == "consistency" and path.endswith("/proof/consistency")) or \
               (which == "tx" and path.endswith("/proof/inclusion")):
                if isinstance(j.get("proof"), list):
                    out.append(j["proof"])
        return out

    def lie(self, mode, arg, kind, ledger, path, body):
        """Returns the new body (bytes) or None (unchanged)."""
        if kind == "checkpoint":
            note = body.decode()
            if mode == "bad_signature":
                return bad_sig_note(note).encode()
            if mode == "swap_identity":
                return swap_origin(note).encode()
            return None
        if kind == "bundles":
            return self.lie_batch_body(mode, arg, ledger, path, body)
        try:
            j = json.loads(body)
        except ValueError:
            return None
        if not isinstance(j, dict):
            return None
        before = json.dumps(j, sort_keys=True)
        self.mutate(mode, arg, kind, ledger, path, j)
        if json.dumps(j, sort_keys=True) == before:
            return None
        return json.dumps(j).encode()

    def lie_batch_body(self, mode, arg, ledger, path, body):
        """verified/getmany, JSON or TVB1: the new body or None."""
        if body[:4] == b"TVB1":
            try:
                d = tvb1_decode(body)
            except Malformed as e:
                sys.stderr.write("liar.py: TVB1 answer does not decode (%s): passed through\n" % e)
                return None
            if tvb1_encode(d) != body:
                sys.stderr.write("liar.py: TVB1 answer does not re-encode to the same bytes: passed through\n")
                return None
            self.lie_batch(mode, arg, ledger, path, d, tvb1_result)
            new = tvb1_encode(d)
            return new if new != body else None
        try:
            j = json.loads(body)
        except ValueError:
            return None
        if not isinstance(j, dict):
            return None
        before = json.dumps(j, sort_keys=True)
        self.lie_batch(mode, arg, ledger, path, j, lambda x: json.dumps(x, sort_keys=True))
        if json.dumps(j, sort_keys=True) == before:
            return None
        return json.dumps(j).encode()

    def lie_batch(self, mode, arg, ledger, path, d, enc):
        """Lies in d, a getmany answer in the JSON form's structure: the batch
        modes on the results list, the checkpoint/consistency lies on the top
        level, a per-bundle lie on the last found result it changes (enc: a
        result's bytes in the answer's form, to tell)."""
        res = d.get("results") if isinstance(d.get("results"), list) else []
        if mode == "batch_drop":
            if res:
                res.pop()
            return
        if mode == "batch_swap":
            if len(res) >= 2:
                res[0], res[1] = res[1], res[0]
            return
        top = {k: v for k, v in d.items() if k != "results"}
        self.mutate(mode, arg, "bundle", ledger, path, top)
        d.update(top)
        for i in reversed(range(len(res))):
            x = res[i]
            if not isinstance(x, dict) or "error" in x:
                continue
            y = copy.deepcopy(x)
            if mode == "value" and arg != "append":
                same_len_value(y)
            else:
                self.mutate(mode, arg, "bundle", ledger, path, y)
            if enc(y) != enc(x):
                res[i] = y
                return

    def mutate(self, mode, arg, kind, ledger, path, j):
        """Lies in j (a parsed JSON answer of this kind), in place."""
        st = self.st
        if kind == "describe":
            if mode == "swap_identity" and "id" in j:
                new = fake_id(j["id"])
                if isinstance(j.get("origin"), str):
                    j["origin"] = j["origin"].replace(j["id"], new)
                j["id"] = new
            if mode == "swap_ledger" and ledger:
                j["name"] = ledger
        elif kind == "server":
            pass  # swap_key serves /v1/server from the alt upstream
        elif kind in ("bundle", "proof"):
            entries = j.get("entries") if isinstance(j.get("entries"), list) else []
            if kind == "bundle" and mode == "value":
                targets = [j] if ("value" in j or "value_hex" in j) else entries
                for t in targets:
                    if "value" in t:
                        t["value"] = t["value"] + "LIE" if t["value"] != "LIE" else "TRUTH"
                    elif "value_hex" in t:
                        t["value_hex"] = t["value_hex"] + "00"
            elif kind == "bundle" and mode == "value_hex":
                targets = [j] if ("value" in j or "value_hex" in j) else entries
                for t in targets:
                    if "value" in t:
                        t["value_hex"] = (t.pop("value").encode() + b"\xff").hex()
                    elif "value_hex" in t:
                        t["value_hex"] = t["value_hex"] + "ff"
            elif kind == "bundle" and mode == "value_both":
                targets = [j] if "value" in j else entries
                for t in targets:
                    if "value" in t:
                        t["value_hex"] = (b"LIE" + t["value"].encode()).hex()
            elif kind == "bundle" and mode == "tx_header" and "tx_header_hex" in j:
                j["tx_header_hex"] = flip_hex(j["tx_header_hex"], int(arg or 10))
            elif kind == "bundle" and mode == "entry_header":
                off = int(arg or 1)
                if isinstance(j.get("entry"), dict) and "header_hex" in j["entry"]:
                    j["entry"]["header_hex"] = flip_hex(j["entry"]["header_hex"], off)
                for e in entries:
                    if "header_hex" in e:
                        e["header_hex"] = flip_hex(e["header_hex"], off)
            elif mode in ("drop_proof", "reorder_proof", "extra_proof"):
                for p in self.proofs(kind, path, j, arg or "tx"):
                    if mode == "drop_proof" and p:
                        del p[len(p) // 2]
                    elif mode == "reorder_proof" and len(p) >= 2:
                        p[0], p[1] = p[1], p[0]
                    elif mode == "extra_proof":
                        p.append(hashlib.sha256(b"extra").hexdigest())
            elif kind == "proof" and mode == "proof_field" and isinstance(j.get(arg), str):
                j[arg] = flip_hex(j[arg], 10)  # root, leaf_hash or old_root of GET proof/*
            elif kind == "bundle" and mode == "tx_index" and isinstance(j.get("tx"), int):
                j["tx"] += 1
                if arg != "only" and isinstance(j.get("tx_proof"), dict):
                    j["tx_proof"]["index"] = j["tx_proof"].get("index", 0) + 1
            elif kind == "bundle" and mode == "bad_signature" and isinstance(j.get("checkpoint"), str):
                j["checkpoint"] = bad_sig_note(j["checkpoint"])
            elif kind == "bundle" and mode == "swap_identity" and isinstance(j.get("checkpoint"), str):
                j["checkpoint"] = swap_origin(j["checkpoint"])
            elif kind == "bundle" and mode == "stale_checkpoint_fresh_proof":
                with st.lock:
                    old = st.frozen_cp.get(ledger)
                if old and isinstance(j.get("checkpoint"), str):
                    j["checkpoint"] = old


def classify(method, path):
    """(kind, ledger, rest): kind is server, describe, checkpoint, bundle,
    bundles (verified/getmany), proof or other."""
    if path == "/v1/server":
        return "server", None, ""
    m = LEDGER_RE.match(path)
    if not m:
        return "other", None, ""
    ledger, rest = m.group(1), m.group(2) or ""
    if rest == "" and method == "GET":
        return "describe", ledger, rest
    if rest == "/checkpoint":
        return "checkpoint", ledger, rest
    if rest == "/verified/getmany":
        return "bundles", ledger, rest
    if rest.startswith("/verified/"):
        return "bundle", ledger, rest
    if rest.startswith("/proof/"):
        return "proof", ledger, rest
    return "other", ledger, rest


def make_handler(st):
    liar = Liar(st)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if n == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(n)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, ctype, body, extra=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def control(self, body):
            if self.path.startswith("/__liar/mode") and self.command == "POST":
                t = body.decode().strip()
                try:
                    t = json.loads(t)["mode"]
                except (ValueError, KeyError, TypeError):
                    pass
                with st.lock:
                    st.mode = t
                    st.frozen_cp = dict(st.last_cp)
                return self.reply(200, "application/json", json.dumps({"mode": t}).encode())
            if self.path.startswith("/__liar/alt") and self.command == "POST":
                t = body.decode().strip()
                loopback(t)
                with st.lock:
                    st.alt = t
                return self.reply(200, "application/json", json.dumps({"alt": t}).encode())
            with st.lock:
                s = {"mode": st.mode, "lies": st.lies, "requests": st.requests, "batch_lies": st.batch_lies,
                     "batch_requests": st.batch_requests, "batch_binary": st.batch_binary}
            return self.reply(200, "application/json", json.dumps(s).encode())

        def handle_any(self):
            body = self.read_body()
            if self.path.startswith("/__liar/"):
                return self.control(body)
            with st.lock:
                st.requests += 1
                full = st.mode
            mode, _, arg = full.partition(":")
            u = urllib.parse.urlsplit(self.path)
            path, query = u.path, u.query
            kind, ledger, rest = classify(self.command, path)

            def told():
                with st.lock:
                    st.lies += 1
                    if kind == "bundles":
                        st.batch_lies += 1

            alt = mode in ("fork", "same_size_other_root", "swap_key") and bool(st.alt)
            upstream = st.alt if alt else st.upstream
            fwd_path = self.path
            fwd_body = body
            if mode == "swap_ledger" and ledger and st.alt_ledger and \
                    kind in ("describe", "checkpoint", "bundle", "bundles", "proof"):
                fwd_path = "/v1/ledgers/" + st.alt_ledger + rest + ("?" + query if query else "")
                told()
            if kind in ("bundle", "bundles") and mode in ("other_key", "wrong_version", "other_tx"):
                q = urllib.parse.parse_qsl(query, keep_blank_values=True)
                if mode == "other_key" and rest == "/verified/get":
                    q = [(k, (arg or "a") if k == "key" else v) for k, v in q]
                elif mode == "wrong_version" and rest == "/verified/get":
                    q = [(k, v) for k, v in q if k not in ("tx", "at", "rev")]
                elif mode == "wrong_version" and kind == "bundles":
                    q = [(k, v) for k, v in q if k not in ("tx", "at")]
                elif mode == "other_key" and kind == "bundles":
                    fwd_body = other_key_body(body, arg or "a") or body
                nrest = rest
                m2 = re.match(r"^/verified/tx/(\d+)$", rest)
                if mode == "other_tx" and m2:
                    nrest = "/verified/tx/%d" % (int(m2.group(1)) + 1)
                nq = urllib.parse.urlencode(q)
                if nq != query or nrest != rest or fwd_body != body:
                    if nq != query or nrest != rest:
                        fwd_path = "/v1/ledgers/" + ledger + nrest + ("?" + nq if nq else "")
                    told()
            if (mode, rest) in (("history_key", "/history"), ("scan_prefix", "/scan")):
                name = "key" if rest == "/history" else "prefix"
                q = [(k, (arg if k == name else v)) for k, v in
                     urllib.parse.parse_qsl(query, keep_blank_values=True)]
                fwd_path = "/v1/ledgers/" + ledger + rest + "?" + urllib.parse.urlencode(q)
                told()
            if mode == "inject_meta" and self.command == "POST" and rest == "/verified/set":
                jb = json.loads(body)
                jb["meta"] = arg or "approved-by: mallory"
                fwd_body = json.dumps(jb).encode()
                told()
            if mode in ("replay_set", "replay_stale") and self.command == "POST" and \
                    rest in ("/verified/set", "/del"):
                told()
                if rest == "/del":
                    return self.reply(200, "application/json", json.dumps({"tx": int(arg)}).encode())
                trusted = json.loads(body).get("trusted", 0)
                fwd_path = "/v1/ledgers/%s/verified/tx/%d?trusted=%d" % (ledger, int(arg), trusted)
                host, port = loopback(upstream)
                hh = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                c = http.client.HTTPConnection(host, port, timeout=60)
                c.request("GET", fwd_path, headers=hh)
                r = c.getresponse()
                rb = r.read()
                c.close()
                return self.reply(r.status, "application/json", rb)
            host, port = loopback(upstream)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Host"] = "%s:%d" % (host, port)
            try:
                c = http.client.HTTPConnection(host, port, timeout=60)
                c.request(self.command, fwd_path,
                          body=fwd_body if fwd_body or self.command in ("POST", "PUT") else None, headers=headers)
                r = c.getresponse()
                rbody = r.read()
                status, ctype = r.status, r.getheader("Content-Type", "application/json")
                c.close()
            except OSError as e:
                return self.reply(502, "application/json",
                                  json.dumps({"error": {"code": "bad_gateway", "message": str(e)}}).encode())
            if alt and kind != "other":
                told()  # the answer of another server
            if kind == "bundles":
                with st.lock:
                    st.batch_requests += 1
                    if status == 200 and ctype.split(";")[0].strip().lower() == BUNDLES_CTYPE:
                        st.batch_binary += 1
            # Record (before lying) what the real server said.
            rkey = None
            if status == 200 and kind in ("bundle", "bundles", "checkpoint"):
                q = [(k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k != "trusted"]
                rkey = (self.command, path, urllib.parse.urlencode(q))
                if kind == "bundles":  # the same keys, in the same form
                    rkey += (body, self.headers.get("Accept", ""))
                note = None
                if kind == "checkpoint":
                    note = rbody.decode("utf-8", "replace")
                elif kind == "bundles":
                    note = batch_checkpoint(rbody)
                else:
                    try:
                        note = json.loads(rbody).get("checkpoint")
                    except (ValueError, AttributeError):
                        note = None
                with st.lock:
                    if mode not in ("rollback",) and upstream == st.upstream and mode != "swap_ledger" and \
                            fwd_path == self.path and fwd_body == body:
                        st.first.setdefault(rkey, (status, ctype, rbody))
                        if note:
                            st.last_cp[ledger] = note
            new = None
            if status == 200 and kind == "other" and \
                    (mode, rest) in (("history_value", "/history"), ("scan_value", "/scan")):
                j = json.loads(rbody)
                rows = j.get("revisions" if rest == "/history" else "keys") or []
                if rows and isinstance(rows[0].get("value"), str):
                    rows[0]["value"] += "X"
                    new = json.dumps(j).encode()
            if status == 200 and kind == "other" and \
                    (mode, rest) in (("history_order", "/history"), ("scan_order", "/scan")):
                j = json.loads(rbody)
                name = "revisions" if rest == "/history" else "keys"
                rows = j.get(name) or []
                if len(rows) >= 2:  # reversed (history: the revision numbers kept in place)
                    rev = rows[::-1]
                    if rest == "/history":
                        for r, o in zip(rev, rows):
                            r["rev"] = o["rev"]
                    j[name] = rev
                elif rows:  # a single row: repeated
                    j[name] = rows + rows
                new = json.dumps(j).encode()
            if status == 200 and mode != "none":
                if (mode == "rollback" or (mode == "replay_stale" and kind == "checkpoint")) and \
                        rkey is not None:
                    with st.lock:
                        rec = st.first.get(rkey)
                    if rec and rec[2] != rbody:
                        new = rec[2]
                elif kind != "other":
                    new = liar.lie(mode, arg, kind, ledger, path, rbody)
            if new is not None:
                told()
                rbody = new
            self.reply(status, ctype, rbody)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    return H


def main():
    ap = argparse.ArgumentParser(description="lying proxy for tallyd (tests only)")
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0: any; printed)")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--alt-upstream", default=None)
    ap.add_argument("--alt-ledger", default=None)
    ap.add_argument("--mode", default="none")
    args = ap.parse_args()
    loopback(args.upstream)
    if args.alt_upstream:
        loopback(args.alt_upstream)
    st = State(args)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen), make_handler(st))
    srv.daemon_threads = True
    print("liar listening on http://127.0.0.1:%d mode %s" % (srv.server_address[1], args.mode), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
