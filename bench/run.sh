#!/usr/bin/env bash
# make bench: runs the side-by-side benchmarks, benchstat, the counted store
# round trips per request (TestRequestCounts), and cmd/report, which rewrites
# the generated part of docs/performance.md.
#
# The suite runs COUNT times in rounds (each round runs every benchmark once),
# so that the noise of a shared machine spreads over all systems alike instead
# of hitting one system's consecutive runs. Raw results go to bench/results/
# (gitignored).
#
#   COUNT=10 BENCHTIME=1s BENCH=. bench/run.sh
set -euo pipefail
cd "$(dirname "$0")"

COUNT="${COUNT:-10}"
BENCHTIME="${BENCHTIME:-1s}"
BENCH="${BENCH:-.}"
# benchstat at a pinned version (golang.org/x/perf has no tags).
BENCHSTAT="golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

mkdir -p results
go test -c -o results/bench.test .
{
	echo "Run: ${COUNT} rounds of \`bench.test -test.bench '${BENCH}' -test.benchmem -test.benchtime ${BENCHTIME}\` (bench/run.sh)"
	echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
	if rev=$(git -C .. rev-parse --short HEAD 2>/dev/null); then
		dirty=""
		git -C .. diff --quiet HEAD -- . ':(exclude)bench' || dirty=", with uncommitted changes outside bench/"
		echo "Library: commit ${rev}${dirty}"
	fi
} >results/env.txt
cpu_start=$(grep '^cpu ' /proc/stat)
: >results/bench.txt
for i in $(seq 1 "$COUNT"); do
	echo "== round $i of $COUNT" >&2
	(cd results && ./bench.test -test.run '^$' -test.bench "$BENCH" -test.benchmem \
		-test.benchtime "$BENCHTIME" -test.count 1 -test.timeout 30m) | tee -a results/bench.txt
done
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>results/env.txt
# Steal: CPU time the host of a virtual machine gave to others while this one
# wanted it; runs disturbed by it are slow in bursts.
echo "$cpu_start" "$(grep '^cpu ' /proc/stat)" | awk '{
	for (i = 2; i <= 11; i++) { d = $(i + 11) - $i; total += d; if (i == 9) steal = d }
	if (total > 0) printf "Steal during the run: %.1f%% of the CPU time\n", 100 * steal / total
}' >>results/env.txt

# Counts, not times: one run is enough (every repetition must cost the same).
echo "== store round trips per request (TestRequestCounts)" >&2
(cd results && ./bench.test -test.run '^TestRequestCounts$' -test.count 1 -test.v -counts counts.json) |
	grep -E '^(---|ok|FAIL|PASS)|target missed' >&2

go run "$BENCHSTAT" results/bench.txt >results/benchstat.txt
go run ./cmd/report -in results/bench.txt -benchstat results/benchstat.txt \
	-env results/env.txt -loadtest results/loadtest.json -counts results/counts.json -out ../docs/performance.md
echo "wrote docs/performance.md (raw results in bench/results/)" >&2
