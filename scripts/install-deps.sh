#!/usr/bin/env bash
# Installs what the demo, the tests, the package and the benchmarks need on a fresh Debian 12 machine:
# the Debian packages in scripts/apt-packages.txt, the Rust components fmt/clippy, cargo-deb and
# cargo-deny.
# Idempotent: packages already installed are skipped quickly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(grep -v '^\s*#' "$here/apt-packages.txt" | grep -v '^\s*$')

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	# Debian's service packages try to start their daemons; we start our own on 127.0.0.1.
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged daemons are not used by the tests: stop them if the install started any.
for svc in mariadb postgresql burp prometheus prometheus-pushgateway haproxy prometheus-haproxy-exporter smbd nmbd samba-ad-dc; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		systemctl stop "$svc" || true
	fi
done
# moto's S3 server for the backup crate's s3/minio destination tests (PyPI only).
if ! command -v moto_server >/dev/null 2>&1 && ! python3 -c 'import moto.server' >/dev/null 2>&1; then
	echo "installing: moto[server] (pip)"
	python3 -m pip install --quiet 'moto[server]>=5,<6' 2>/dev/null ||
		python3 -m pip install --quiet --break-system-packages 'moto[server]>=5,<6'
fi
if command -v rustup >/dev/null 2>&1; then
	rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
# cargo-deb builds the Debian package (scripts/build-deb.sh); pinned, built with its lock file
# (about 3 minutes once; the demo, which needs no package, skips it with --no-cargo-deb).
CARGO_DEB_VERSION=3.8.0
if [ "${1:-}" != --no-cargo-deb ] && command -v cargo >/dev/null 2>&1 && ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
	echo "installing: cargo-deb $CARGO_DEB_VERSION (cargo install)"
	cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
# cargo-deny checks licences, duplicate versions and sources offline (deny.toml; scripts/test.sh).
# Pinned and built with its lock file (22 minutes on a 2-core machine shared with six other
# builds, 3.2 minutes of CPU: a few minutes on an idle CI runner; skipped when present).
CARGO_DENY_VERSION=0.20.2
if command -v cargo >/dev/null 2>&1 && ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
	echo "installing: cargo-deny $CARGO_DENY_VERSION (cargo install)"
	cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi
echo "dependencies ready"
