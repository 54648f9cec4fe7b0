#!/usr/bin/env bash
# make loadtest: the demo and bench/cmd/scsdemo on one redis-server, driven by
# wrk; see bench/cmd/loadtest. Installs wrk (Debian package) when missing and
# running as root. Flags for cmd/loadtest go in LOADTEST_ARGS, e.g.
#   LOADTEST_ARGS="-duration 20s -rounds 5" bench/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "loadtest: missing ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	# The Debian package starts a system redis; the load test runs its own.
	if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
fi
mkdir -p results
# shellcheck disable=SC2086 # LOADTEST_ARGS is a list of flags
go run ./cmd/loadtest ${LOADTEST_ARGS:-}
