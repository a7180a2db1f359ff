#!/usr/bin/env bash
# make fuzz: runs every Go fuzz target of the packages that take untrusted
# bytes (the payload parsers, the mq.v1 decoders of the input and the
# broker, and the configuration loader) for a short,
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
  pkgs=(./inputs/parsers ./mq/mqcodec ./conf)
fi

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
    # -parallel bounds the workers so a shared CI machine stays usable.
    if ! $GO test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -parallel "${FUZZ_PARALLEL:-2}" "$pkg"; then
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
