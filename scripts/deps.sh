#!/bin/sh
# deps.sh — make sure the Debian packages Tally builds and tests with are present.
# As root: installs what is missing with apt-get. Otherwise: prints the exact
# apt-get line and fails. Usage: scripts/deps.sh [extra-package ...]
set -e
PKGS="gcc make libc6-dev libssl-dev libsqlite3-dev sqlite3 python3 libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libedit-dev curl tmux $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq $missing >&2
else
    echo "deps: missing packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
