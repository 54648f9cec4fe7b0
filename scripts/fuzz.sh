#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME (default 5s) each. The checked-in
# seed corpora (testdata/fuzz/) already run as plain tests in `go test`.
set -euo pipefail
FUZZTIME=${FUZZTIME:-5s}
GO=${GO:-go}
found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    found=$((found + 1))
    echo "fuzz: $target in ./$dir for $FUZZTIME"
    "$GO" test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "./$dir"
  done
done < <(git ls-files '*_test.go' | grep -v '^bench/' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $found targets ran"
