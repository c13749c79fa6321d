#!/usr/bin/env bash
# The whole test suite, as CI runs it: format and lint checks, then every unit and integration
# test against real local servers (burp, Prometheus, MariaDB, PostgreSQL, gpg) that the tests
# start on 127.0.0.1 through scripts/. With CUSTOS_REQUIRE_SERVICES=1 (CI) a missing service
# fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUSTOS_REQUIRE_SERVICES=${CUSTOS_REQUIRE_SERVICES:-1}

# A clean build and the tests' data take about 8 GB; a full disk fails tests far from the
# cause (ENOSPC in a restore), so say it first.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
	echo "warning: only $((free_kb / 1024)) MiB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build and tests need about 8 GB" >&2
fi

# Debian packages of the real servers the tests start (idempotent, quick when present).
bash scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Licences, duplicate versions and dependency sources (deny.toml), offline: the advisory
# database needs the network, run `cargo deny check advisories` where there is one. cargo-deny
# reads the manifests of every platform's dependencies: fetch them first (about 14 MB once).
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
# deploy/: every unit passes systemd-analyze verify, its ExecStart parses and its security
# score matches the README (builds the binaries the tests use anyway); every alert rule file
# passes promtool check rules and its promtool unit tests, which cover each alert both ways;
# every Grafana panel's query returns series from a real Prometheus.
bash scripts/check-deploy.sh units rules dashboards
# The quickstart demo: all five binaries against real servers, a Prometheus with every target
# up and every alert rule loaded, and `stop` leaving no process behind (scripts/check-demo.sh).
bash scripts/check-demo.sh
# The Debian package: built (release), installed with apt-get, its binaries run from their
# units' ExecStart, removed and purged without a trace (scripts/check-deb.sh).
bash scripts/check-deb.sh
# Test binaries run one at a time (cargo's way); the tests inside each run two at a time, each
# with its own servers on ports it was given.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo ends on the last crate's doc-tests).
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1) } }
	END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
