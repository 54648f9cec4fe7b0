#!/usr/bin/env bash
# make reliability: the reliability checks at full size (build tag reliability,
# no -race: `make test` runs them with -race at small counts), then every fuzz
# target of the module for FUZZTIME (default 60s), found as scripts/fuzz.sh finds
# them, then the table of docs/reliability.md from what they recorded.
#
#   RELIABILITY_OUT=dir   keep the logs and figures there (default: a new temp folder)
#   FUZZTIME=60s          time per fuzz target
#   RELIABILITY_DOC=path  the document whose table is rewritten (default docs/reliability.md;
#                         set it empty to only print the table)
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
export FUZZTIME=${FUZZTIME:-60s}
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
# The fuzz targets scripts/fuzz.sh runs (same discovery, same go test flags),
# run here one after the other without stopping at the first failure, so that
# every target gets its row. A failing input go test writes into a package's
# testdata is moved to $OUT/crashers (it is evidence, not a corpus change).
echo "reliability: fuzz targets for $FUZZTIME each; log in $OUT/fuzz.log"
: >"$OUT/fuzz.log"
fuzz=0
found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    found=$((found + 1))
    corpus="$dir/testdata/fuzz/$target"
    before=$(git status --porcelain --untracked-files=all -- "$corpus" | sort)
    echo "fuzz: $target in ./$dir for $FUZZTIME" | tee -a "$OUT/fuzz.log"
    if "$GO" test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "./$dir" >>"$OUT/fuzz.log" 2>&1; then
      tail -n 1 "$OUT/fuzz.log"
    else
      fuzz=1
      echo "FAIL: $target (see $OUT/fuzz.log)"
      after=$(git status --porcelain --untracked-files=all -- "$corpus" | sort)
      comm -13 <(echo "$before") <(echo "$after") | sed -n 's/^?? //p' | while IFS= read -r f; do
        mkdir -p "$OUT/crashers/$dir"
        mv "$f" "$OUT/crashers/$dir/"
        echo "fuzz: failing input moved to $OUT/crashers/$dir/$(basename "$f")" | tee -a "$OUT/fuzz.log"
      done
    fi
  done
done < <(git ls-files '*_test.go' | grep -v '^bench/' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $found targets ran" >>"$OUT/fuzz.log"
echo "reliability: fuzzing took $((SECONDS - t1)) s ($found targets, exit $fuzz)"

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
