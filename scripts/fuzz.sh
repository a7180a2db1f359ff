#!/usr/bin/env bash
# make fuzz: runs every Go fuzz target of the packages that take untrusted
# bytes (the payload parsers, the mq.v1 codec of the input and the
# broker, the plugin protocol's batch codec, and the configuration loader)
# for a short,
# bounded time each. The committed seed corpus (testdata/fuzz/<Target>/)
# always runs first; a failure leaves the crashing input under
# testdata/fuzz/<Target>/ and fails the script, naming it.
#
#   FUZZTIME=10s scripts/fuzz.sh             every target, 10 s each (default)
#   FUZZTIME=2m  scripts/fuzz.sh ./conf      one package, longer
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
GO=${GO:-go}
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  pkgs=(./inputs/parsers ./mq/mqcodec ./internal/wire ./conf)
fi

# fuzz_one runs one target. Go 1.26's fuzzing coordinator can fail a
# target with a bare "context deadline exceeded" when -fuzztime expires
# while a worker is busy (golang/go#75804, fixed in Go 1.27) - on a loaded
# machine, without any failing input. Such a run is retried once; a run
# that found something writes a failing input under testdata/fuzz/<Target>/
# ("Failing input written to ...") and fails at once.
fuzz_one() {
  local pkg=$1 t=$2 out rc try
  for try in 1 2; do
    set +e
    # -parallel bounds the workers so a shared CI machine stays usable.
    out=$($GO test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -parallel "${FUZZ_PARALLEL:-2}" "$pkg" 2>&1)
    rc=$?
    set -e
    echo "$out"
    if [ $rc -eq 0 ]; then
      return 0
    fi
    if [ $try -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" &&
      ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' <<<"$out"; then
      echo "fuzz: $t stopped with Go's fuzztime deadline race (golang/go#75804), no failing input: running it again" >&2
      continue
    fi
    return 1
  done
}

failed=()
total=0
for pkg in "${pkgs[@]}"; do
  # -list prints the names of the tests, benchmarks, examples and fuzz
  # targets matching the pattern, then "ok ..." (ignored).
  if ! listing=$($GO test -run '^$' -list '^Fuzz' "$pkg" 2>&1); then
    echo "$listing" >&2
    echo "fuzz: cannot list the fuzz targets of $pkg (does it build?)" >&2
    exit 1
  fi
  targets=$(grep '^Fuzz' <<<"$listing" || true)
  if [ -z "$targets" ]; then
    echo "fuzz: no fuzz target in $pkg" >&2
    exit 1
  fi
  for t in $targets; do
    total=$((total + 1))
    echo "== fuzz $pkg $t ($FUZZTIME)"
    if ! fuzz_one "$pkg" "$t"; then
      failed+=("$pkg $t")
    fi
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of $total targets failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  echo "the failing inputs are under <package>/testdata/fuzz/<Target>/ (commit them with the fix)" >&2
  exit 1
fi
echo "fuzz: $total targets passed ($FUZZTIME each)"
