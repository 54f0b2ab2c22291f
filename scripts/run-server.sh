#!/usr/bin/env bash
# run-server.sh — what `make run` does: start tallyd on a default data
# directory and say how to log in. Usage: scripts/run-server.sh TALLYD TALLY DATA_DIR LISTEN
set -euo pipefail
D=${1:-build/tallyd}; T=${2:-build/tally}; DIR=${3:-tally-server}; LISTEN=${4:-127.0.0.1:8700}
first=0
[ -e "$DIR/server.key" ] || first=1
echo "Starting tallyd on data directory '$DIR' at http://$LISTEN (Ctrl-C stops it)."
if [ "$first" = 1 ]; then
    echo "First start: the admin password is printed once below (or set TALLY_ADMIN_PASSWORD)."
fi
cat <<MSG

In another terminal:
  $T --server http://$LISTEN login admin              # asks for the password
  $T --server http://$LISTEN ledger create books
  $T --server http://$LISTEN --ledger books set greeting hello
  $T --server http://$LISTEN --ledger books get greeting   # verified against the signed checkpoint
  $T --server http://$LISTEN --ledger books checkpoint
  $T shell --server http://$LISTEN --ledger books         # interactive: help lists the commands
  $T audit --server http://$LISTEN --ledger books --interval 10s --rehash   # a monitor beside it
The embedded (serverless) demo: make demo

MSG
exec "$D" --data "$DIR" --listen "$LISTEN"
