#!/usr/bin/env bash
# Runs every fuzz target of the module with a count-based budget: -fuzztime=Nx,
# N executions per target, never a duration. A duration budget races Go's fuzz
# coordinator against its workers at the deadline and can fail a clean run with
# "context deadline exceeded" on a loaded machine (golang/go#75804, fixed in Go
# 1.27); a count cannot. A run that finds a failing input still fails.
#
#   FUZZSCALE=1        multiplies every budget (make reliability uses 12)
#   FUZZ_KEEP_GOING=1  run every target even after one failed, moving the failing
#                      inputs go test writes into testdata to $FUZZ_CRASHERS
#   FUZZ_CRASHERS=dir  where failing inputs go with FUZZ_KEEP_GOING (default: a temp dir)
#
# The checked-in seed corpora (testdata/fuzz/) already run as plain tests in `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SCALE=${FUZZSCALE:-1}
KEEP_GOING=${FUZZ_KEEP_GOING:-0}

# Executions per target at scale 1, sized so that each takes about five seconds
# on a loaded two-core machine. A target missing here gets DEFAULT_BUDGET.
DEFAULT_BUDGET=20000
budget() {
  case "$1" in
    FuzzCookie) echo 100000 ;;
    FuzzCompiledVsMsgpack | FuzzCompiledVsLegacy) echo 80000 ;;
    FuzzEncode) echo 60000 ;;
    FuzzDecodeMetadata) echo 60000 ;;
    FuzzCheck) echo 60000 ;;
    FuzzDecode) echo 40000 ;;
    FuzzDecodeValue) echo 30000 ;;
    FuzzLoad) echo 20000 ;;
    FuzzCookieHeader) echo 15000 ;;
    FuzzDecodeRecord | FuzzDecodeEntry) echo 10000 ;;
    FuzzBagDecode) echo 8000 ;;
    *) echo "$DEFAULT_BUDGET" ;;
  esac
}

found=0
failed=0
crashers=${FUZZ_CRASHERS:-}
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    found=$((found + 1))
    n=$(($(budget "$target") * SCALE))
    corpus="$dir/testdata/fuzz/$target"
    before=$(git status --porcelain --untracked-files=all -- "$corpus" | sort)
    echo "fuzz: $target in ./$dir for ${n}x"
    if "$GO" test -run='^$' -fuzz="^${target}\$" -fuzztime="${n}x" "./$dir"; then
      continue
    fi
    failed=$((failed + 1))
    echo "FAIL: fuzz target $target in ./$dir"
    if [ "$KEEP_GOING" != 1 ]; then
      exit 1
    fi
    # Keep the failing inputs as evidence, out of the package's corpus.
    crashers=${crashers:-$(mktemp -d "${TMPDIR:-/tmp}/fxsession-crashers.XXXXXX")}
    after=$(git status --porcelain --untracked-files=all -- "$corpus" | sort)
    comm -13 <(echo "$before") <(echo "$after") | sed -n 's/^?? //p' | while IFS= read -r f; do
      mkdir -p "$crashers/$dir"
      mv "$f" "$crashers/$dir/"
      echo "fuzz: failing input moved to $crashers/$dir/$(basename "$f")"
    done
  done
done < <(git ls-files '*_test.go' | grep -v -e '^bench/' -e '^test/' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $found targets ran, $failed failed"
[ "$failed" -eq 0 ]
