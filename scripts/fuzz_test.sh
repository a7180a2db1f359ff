#!/usr/bin/env bash
# Tests scripts/fuzz.sh's handling of failures with a fake `go`: Go's
# fuzztime deadline race (golang/go#75804) is retried once, a run that
# wrote a failing input fails at once, a race twice in a row fails.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/go" <<'FAKE'
#!/usr/bin/env bash
if [ "$4" = "-list" ]; then echo FuzzX; echo "ok x"; exit 0; fi
n=$(( $(cat "$FAKE_DIR/count" 2>/dev/null || echo 0) + 1 )); echo $n >"$FAKE_DIR/count"
case $MODE in
pass) echo PASS ;;
race-once) if [ $n -eq 1 ]; then printf -- '--- FAIL: FuzzX (3.0s)\n    context deadline exceeded\n'; exit 1; fi; echo PASS ;;
race-always) printf -- '--- FAIL: FuzzX (3.0s)\n    context deadline exceeded\n'; exit 1 ;;
crash) printf -- '--- FAIL: FuzzX (0.1s)\n    x_test.go:12: boom\n    Failing input written to testdata/fuzz/FuzzX/abc\n'; exit 1 ;;
esac
FAKE
chmod +x "$dir/go"
status=0
for c in "pass 0 1" "race-once 0 2" "race-always 1 2" "crash 1 1"; do
  read -r mode want_rc want_runs <<<"$c"
  rm -f "$dir/count"
  rc=0
  MODE=$mode FAKE_DIR=$dir GO=$dir/go scripts/fuzz.sh ./conf >"$dir/out" 2>&1 || rc=$?
  runs=$(cat "$dir/count")
  if [ "$rc" != "$want_rc" ] || [ "$runs" != "$want_runs" ]; then
    echo "fuzz_test: $mode: exit $rc after $runs runs, want exit $want_rc after $want_runs" >&2
    cat "$dir/out" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "fuzz_test: ok"
exit $status
