#!/usr/bin/env bash
# demo.sh — what `make run` shows until tallyd exists: the embedded engine on a
# default data directory. Usage: scripts/demo.sh TALLY_BIN DATA_DIR
set -euo pipefail
T=${1:-build/tally}
D=${2:-tally-data}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "tally -D $D $*"; "$T" -D "$D" "$@"; }

echo "Tally embedded demo on data directory '$D' (rerun to append more history)."
run set account:alice 100 account:bob 50
TX1=$("$T" -D "$D" state --json | sed -E 's/.*"tx":([0-9]+).*/\1/')
run set account:alice 75 account:bob 75
run get account:alice
say "tally -D $D get account:alice --tx $TX1      # time travel"
"$T" -D "$D" get account:alice --tx "$TX1"
run history account:alice
printf 'order:1\tpending\norder:2\tshipped\norder:1\tpaid\n' > /tmp/tally-demo-batch.$$
say "printf 'order:1\\tpending\\norder:2\\tshipped\\norder:1\\tpaid\\n' | tally -D $D set - --batch 2"
"$T" -D "$D" set - --batch 2 < /tmp/tally-demo-batch.$$
rm -f /tmp/tally-demo-batch.$$
run scan order:
run del order:2
run scan order:
run state
LAST=$("$T" -D "$D" state --json | sed -E 's/.*"tx":([0-9]+).*/\1/')
run tx "$LAST"
run proof inclusion "$TX1"
run proof consistency "$TX1" "$LAST"
run verify
echo
echo "Everything above is in $D/log (the only source of truth); see docs/FORMAT.md to check it by hand."
