#!/usr/bin/env bash
# Regenerates the README's screenshots of the three status pages (docs/screenshots/*.png):
# the browser tests run each real exporter against the real test servers (burp through
# scripts/burp-test-server.sh with a backup running, HAProxy through
# scripts/haproxy-test-server.sh with sessions held open, the SMART pair on the recorded
# drives of crates/smart-helper/tests/data) and headless Chromium takes each page at
# 1200x900; CUSTOS_SCREENSHOTS tells the tests to keep the PNG.
# Usage: scripts/screenshots.sh [DIR] (default docs/screenshots). Needs chromium, burp, haproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-docs/screenshots}")
mkdir -p "$dir"
export CUSTOS_SCREENSHOTS=$dir
# A missing browser or server fails here instead of leaving an old screenshot in place.
export CUSTOS_REQUIRE_SERVICES=1
cargo test -p custos-burp --test status_page
cargo test -p custos-haproxy --test status_page
cargo test -p custos-smart --test exporter status_page_in_a_real_browser
for name in burp_exporter haproxysessionmon prometheus_smart_exporter; do
	png=$dir/$name.png
	[ -f "$png" ] || { echo "screenshots: no $png" >&2; exit 1; }
	size=$(stat -c %s "$png")
	echo "$png: $size bytes"
	# The README shows them; keep the repository small.
	[ "$size" -le $((150 * 1024)) ] || { echo "screenshots: $png is over 150 KiB" >&2; exit 1; }
done
