#!/usr/bin/env bash
# Builds the Debian package `custos` (all five binaries, units, conffiles, man pages,
# completions) with cargo-deb: release binaries, then the man pages and completions generated
# from the binaries' own CLI definitions (crates/dist), the deploy/ units with their ExecStart in
# /usr/bin, then `cargo deb`. Prints the path of the .deb (target/debian/custos_*.deb).
# Needs cargo-deb (scripts/install-deps.sh installs the pinned version).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || { echo "build-deb: cargo-deb missing (scripts/install-deps.sh)" >&2; exit 2; }
target=$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)

cargo build --release --locked -p custos-burp -p custos-haproxy -p custos-smart \
	-p custos-smart-helper -p custos-backup -p custos-dist --bins >&2
stage=$target/release/custos-dist
rm -rf "$stage"
mkdir -p "$stage/units"
"$target/release/custos-dist-gen" "$stage"
gzip -9n "$stage"/man/*
# bash-completion looks a command up by its bare name.
for f in "$stage"/completions/bash/*.bash; do mv "$f" "${f%.bash}"; done
for u in deploy/*.service deploy/*.socket deploy/*.timer; do
	sed 's|/usr/local/bin/|/usr/bin/|g' "$u" >"$stage/units/$(basename "$u")"
done
if grep -l /usr/local "$stage"/units/*; then
	echo "build-deb: a unit still names /usr/local" >&2
	exit 1
fi
cargo deb -p custos-dist --no-build --locked --output "$target/debian/" >&2
ls -t "$target"/debian/custos_*.deb | head -n 1
