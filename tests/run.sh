#!/usr/bin/env bash
# tests/run.sh — runs every test and prints one closing line "N passed, M failed".
#
#   C tests:     build/asan/tests/test_* then build/tests/test_* (each prints
#                "name: N checks, M failed" and exits non-zero on failure)
#   shell tests: tests/t_*.sh, with TALLY_BIN (default build/tally) and
#                TALLY_ASAN_BIN (default build/asan/tally); exit 0 = pass;
#                then t_server.sh and t_server_http.sh against build/asan/tallyd
#
# Each binary or script counts as one test. Every test runs even after a
# failure; a failing test's last 40 lines of output are shown. TALLY_LONG=1
# is exported for longer variants. Exit status 1 if any test failed.
set -u
cd "$(dirname "$0")/.." || exit 2

export TALLY_LONG="${TALLY_LONG:-0}"
export TALLY_BIN="${TALLY_BIN:-build/tally}"
export TALLY_ASAN_BIN="${TALLY_ASAN_BIN:-build/asan/tally}"
# ASan: leaks are errors too; UBSan: print a stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

passed=0
failed=0
out="$(mktemp /tmp/tally-run.XXXXXX)" || exit 2
trap 'rm -f "$out"' EXIT

now_ms() { date +%s%3N; }

run_one() { # name, command...
    local name="$1"
    shift
    local t0 t1 rc
    t0=$(now_ms)
    "$@" >"$out" 2>&1 </dev/null
    rc=$?
    t1=$(now_ms)
    local secs
    secs=$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.2fs", ms / 1000 }')
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS $name ($secs)"
    else
        failed=$((failed + 1))
        echo "FAIL $name (exit $rc) ($secs)"
        tail -n 40 "$out" | sed 's/^/    | /'
    fi
}

shopt -s nullglob
for bin in build/asan/tests/test_* build/tests/test_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    case "$bin" in *.o | *.d) continue ;; esac
    run_one "$bin" "$bin"
done
for t in tests/t_*.sh; do
    run_one "$t" bash "$t"
done
# The server suites again against tallyd built with ASan+UBSan (a report in
# its stderr fails the test: tests/lib_server.sh summary).
for t in tests/t_server.sh tests/t_server_http.sh; do
    [ -x build/asan/tallyd ] && run_one "$t (tallyd under ASan+UBSan)" env TALLYD_BIN=build/asan/tallyd bash "$t"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
