#!/usr/bin/env bash
# make reliability: the reliability checks at full size (build tag reliability,
# no -race: `make test` runs them with -race at small counts), then every fuzz
# target of the module through scripts/fuzz.sh at FUZZSCALE times the budgets of
# `make test` (count-based, default 12x), then the table of docs/reliability.md from what they recorded.
#
#   RELIABILITY_OUT=dir   keep the logs and figures there (default: a new temp folder)
#   FUZZSCALE=12          fuzz budget per target, in multiples of make test's (count-based)
#   RELIABILITY_DOC=path  the document whose table is rewritten (default docs/reliability.md;
#                         set it empty to only print the table)
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
export FUZZSCALE=${FUZZSCALE:-12}
OUT=${RELIABILITY_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/fxsession-reliability.XXXXXX")}
DOC=${RELIABILITY_DOC-docs/reliability.md}
mkdir -p "$OUT"
export FXSESSION_RELIABILITY_FIGURES="$OUT/figures.jsonl"
: >"$FXSESSION_RELIABILITY_FIGURES"
started=$(date -u +%Y-%m-%dT%H:%MZ)
t0=$SECONDS

echo "reliability: checks (go test -tags reliability ./internal/reliability); full log in $OUT/tests.log"
set +e
"$GO" test -tags reliability -count=1 -timeout 30m -v ./internal/reliability >"$OUT/tests.log" 2>&1
tests=$?
set -e
grep -E '^(--- |ok |FAIL|PASS$)' "$OUT/tests.log" | grep -v -- '--- PASS: .*/' || true
echo "reliability: checks took $((SECONDS - t0)) s (exit $tests)"

t1=$SECONDS
# Every fuzz target, with scripts/fuzz.sh's count-based budgets times FUZZSCALE,
# one after the other without stopping at a failure, so that every target gets
# its row. A failing input go test writes into a package's testdata is moved to
# $OUT/crashers (it is evidence, not a corpus change).
echo "reliability: fuzz targets at ${FUZZSCALE}x the make test budgets; log in $OUT/fuzz.log"
set +e
FUZZ_KEEP_GOING=1 FUZZ_CRASHERS="$OUT/crashers" scripts/fuzz.sh >"$OUT/fuzz.log" 2>&1
fuzz=$?
set -e
grep -E '^(fuzz: |FAIL)' "$OUT/fuzz.log" || true
echo "reliability: fuzzing took $((SECONDS - t1)) s (exit $fuzz)"

args=(-figures "$FXSESSION_RELIABILITY_FIGURES" -fuzzlog "$OUT/fuzz.log" -date "$started")
# The table is written when every check passed; a fuzz target that failed
# shows as FAILED in its row.
"$GO" run ./internal/reliability/tablegen "${args[@]}" >"$OUT/table.md"
if [ -n "$DOC" ] && [ "$tests" -eq 0 ]; then
  "$GO" run ./internal/reliability/tablegen "${args[@]}" -doc "$DOC"
  echo "reliability: table written to $DOC (and $OUT/table.md)"
else
  echo "reliability: table in $OUT/table.md (not written to a document: checks failed or RELIABILITY_DOC empty)"
fi
echo "reliability: $((SECONDS - t0)) s in all; figures in $OUT"
[ "$tests" -eq 0 ] && [ "$fuzz" -eq 0 ]
