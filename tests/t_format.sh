#!/usr/bin/env bash
# t_format.sh — an outsider's verifier (scripts/format_check.py, written from
# docs/FORMAT.md alone) must recompute the same root as the engine, on ledgers
# with multi-entry transactions, tombstones, binary-ish values and metadata-free
# entries; and it must reject a ledger with one flipped byte.
set -euo pipefail
T=${TALLY_BIN:-build/tally}
D=$(mktemp -d /tmp/tally-format.XXXXXX)
trap 'rm -rf "$D"' EXIT
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 0; }
"$T" -D "$D/a" set a 1 b 22 c 333 >/dev/null
for i in $(seq 1 40); do printf 'key%03d\tvalue-%d-%s\n' "$i" "$i" "$(printf 'x%.0s' $(seq 1 $((i % 7))))"; done |
    "$T" -D "$D/a" set - --batch 7 >/dev/null
"$T" -D "$D/a" del b >/dev/null
"$T" -D "$D/a" set "ключ" "значение ✓" >/dev/null
want=$("$T" -D "$D/a" state --json)
got=$(python3 scripts/format_check.py "$D/a")
echo "engine: $want"
echo "python: $got"
[ "$want" = "$got" ] || { echo "FAIL: roots differ"; exit 1; }
# preallocated zeros after the last record (FORMAT.md §2: what a writer that
# died leaves) end the log: the same root, for the script and the engine
cp -r "$D/a" "$D/z"
head -c 300000 /dev/zero >> "$D/z/log/00000000.seg"
got=$(python3 scripts/format_check.py "$D/z")
[ "$want" = "$got" ] || { echo "FAIL: zeros after the records changed the outsider's root: $got"; exit 1; }
[ "$("$T" -D "$D/z" state --json)" = "$want" ] || { echo "FAIL: the engine reads the zeros differently"; exit 1; }
# the worked example of FORMAT.md §7 is what the script derives
python3 scripts/format_check.py --example | grep -q '80aea6eff284d1093a84148c3222adf3526a050b1646de1b4111ff0634448cb0'
grep -q '80aea6eff284d1093a84148c3222adf3526a050b1646de1b4111ff0634448cb0' docs/FORMAT.md
# one flipped value byte: the outsider must fail too
seg="$D/a/log/00000000.seg"
size=$(stat -c %s "$seg")
printf '\x5a' | dd of="$seg" bs=1 seek=$((size - 3)) conv=notrunc status=none
if python3 scripts/format_check.py "$D/a" >/dev/null; then echo "FAIL: flipped byte not detected"; exit 1; fi
echo "ok"
