#!/usr/bin/env python3
"""format_check.py — an outsider's verifier, written from docs/FORMAT.md alone.

Uses only the Python standard library (hashlib for SHA-256; CRC-32C is
implemented here from its definition). Usage:
  format_check.py DIR        parse DIR/log, check every checksum, entry hash,
                             entries root, hash-chain link and time order;
                             print {"tx":N,"root":"hex"} (the RFC 6962 root)
  format_check.py --example  print the worked example of docs/FORMAT.md §7
Exit status 0 if everything checks, 2 on the first integrity failure.
"""
import glob, hashlib, json, os, struct, sys

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

try:  # speed: a table version of the same definition
    _T = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        _T.append(c)
    def crc32c(data, crc=0):  # noqa: F811
        crc ^= 0xFFFFFFFF
        for b in data:
            crc = (crc >> 8) ^ _T[(crc ^ b) & 0xFF]
        return crc ^ 0xFFFFFFFF
except Exception:
    pass

def sha(b): return hashlib.sha256(b).digest()
def leaf_hash(d): return sha(b"\x00" + d)
def node_hash(l, r): return sha(b"\x01" + l + r)

def mth(leaf_hashes):
    n = len(leaf_hashes)
    if n == 0: return sha(b"")
    if n == 1: return leaf_hashes[0]
    k = 1
    while k * 2 < n: k *= 2
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))

def mth_iter(leaf_hashes):
    """Same as mth() without recursion depth issues: frontier folding."""
    stack = []  # (level, hash)
    for i, h in enumerate(leaf_hashes):
        lvl = 0
        while stack and stack[-1][0] == lvl:
            h = node_hash(stack.pop()[1], h); lvl += 1
        stack.append((lvl, h))
    if not stack: return sha(b"")
    h = stack.pop()[1]
    while stack: h = node_hash(stack.pop()[1], h)
    return h

class Bad(Exception):
    def __init__(self, tx, msg): super().__init__(f"tx {tx}: {msg}"); self.tx = tx

def parse_entries(tx, buf, count):
    off, leaves, entries = 0, [], []
    for i in range(count):
        if len(buf) - off < 12: raise Bad(tx, f"entry {i} truncated")
        ns, flags, klen, mlen, vlen = struct.unpack_from("<BBHII", buf, off)
        if flags & ~1 or not 1 <= klen <= 1024 or mlen > 4096 or vlen > 1 << 20:
            raise Bad(tx, f"entry {i} breaks a limit")
        end = off + 12 + klen + mlen + vlen
        if end > len(buf): raise Bad(tx, f"entry {i} overruns")
        key = buf[off + 12: off + 12 + klen]
        meta = buf[off + 12 + klen: off + 12 + klen + mlen]
        value = buf[off + 12 + klen + mlen: end]
        leaf_data = buf[off: off + 12] + key + meta + sha(value)
        leaves.append(leaf_hash(leaf_data))
        entries.append((ns, flags, key, value))
        off = end
    if off != len(buf): raise Bad(tx, "bytes left after the last entry")
    return leaves, entries

def check_dir(d):
    segs = sorted(glob.glob(os.path.join(d, "log", "*.seg")))
    tx_hashes, prev, last_ts, expect = [], b"\x00" * 32, 0, 1
    for si, path in enumerate(segs):
        data = open(path, "rb").read()
        if len(data) < 32 or data[:8] != b"TALLYSEG": raise Bad(expect, f"{path}: bad segment header")
        ver, idx, first_tx, _r, crc = struct.unpack_from("<IIQII", data, 8)
        if crc != crc32c(data[:28]) or ver != 1 or idx != si or first_tx != expect:
            raise Bad(expect, f"{path}: segment header fields/checksum")
        off = 32
        while off < len(data):
            if si == len(segs) - 1 and not data[off:].strip(b"\x00"):
                break  # preallocated zeros end the last segment (FORMAT.md section 2)
            if len(data) - off < 32: raise Bad(expect, "truncated record header")
            magic, body_len, tx_id, txh_len, body_crc, sync_lag, hdr_crc = struct.unpack_from("<IIQIIII", data, off)
            if magic != 0x31525854 or hdr_crc != crc32c(data[off:off + 28]): raise Bad(expect, "record header")
            if tx_id != expect: raise Bad(expect, f"record names tx {tx_id}")
            txh = data[off + 32: off + 32 + txh_len]
            ents = data[off + 32 + txh_len: off + 32 + body_len]
            if len(ents) != body_len - txh_len: raise Bad(expect, "record overruns the segment")
            if crc32c(txh, crc32c(ents)) != body_crc: raise Bad(expect, "body checksum mismatch")
            kind, t_id, ts = struct.unpack_from("<BQQ", txh, 0)
            p_hash, e_root = txh[17:49], txh[49:81]
            count, ent_len, meta_len = struct.unpack_from("<III", txh, 81)
            if kind != 1 or t_id != tx_id or txh_len != 93 + meta_len or ent_len != len(ents):
                raise Bad(expect, "tx header fields")
            leaves, _ = parse_entries(expect, ents, count)
            if mth_iter(leaves) != e_root: raise Bad(expect, "entries root mismatch")
            if p_hash != prev: raise Bad(expect, "previous-hash link broken")
            if ts < last_ts: raise Bad(expect, "time goes backwards")
            prev = leaf_hash(txh); last_ts = ts
            tx_hashes.append(prev)
            off += 32 + body_len; expect += 1
    return len(tx_hashes), mth_iter(tx_hashes)

def example():
    def entry(ns, flags, key, value):
        return struct.pack("<BBHII", ns, flags, len(key), 0, len(value)) + key + value
    def txh(tx_id, ts, prev, root, count, ents_len):
        return struct.pack("<BQQ", 1, tx_id, ts) + prev + root + struct.pack("<III", count, ents_len, 0)
    out = []
    e1 = entry(0, 0, b"greeting", b"hello")
    ld1 = e1[:12] + b"greeting" + sha(b"hello")
    r1 = leaf_hash(ld1)
    h1 = txh(1, 1000000000, b"\x00" * 32, r1, 1, len(e1))
    t1 = leaf_hash(h1)
    e2 = entry(0, 1, b"greeting", b"")
    ld2 = e2[:12] + b"greeting" + sha(b"")
    r2 = leaf_hash(ld2)
    h2 = txh(2, 2000000000, t1, r2, 1, len(e2))
    t2 = leaf_hash(h2)
    out += [("tx1 entry bytes", e1), ("tx1 entry_leaf_data", ld1), ("tx1 entries_root", r1),
            ("tx1 header", h1), ("tx_hash(1)", t1), ("tx2 entry bytes", e2),
            ("tx2 entries_root", r2), ("tx2 header", h2), ("tx_hash(2)", t2),
            ("root(size 1)", mth([t1])), ("root(size 2)", mth([t1, t2]))]
    for name, b in out: print(f"{name:22s} {b.hex()}")

if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--example":
        example(); sys.exit(0)
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr); sys.exit(64)
    try:
        n, root = check_dir(sys.argv[1])
    except Bad as e:
        print(json.dumps({"ok": False, "first_bad_tx": e.tx, "error": str(e)})); sys.exit(2)
    print(json.dumps({"tx": n, "root": root.hex()}, separators=(",", ":")))
