#!/usr/bin/env bash
# Checks what deploy/ ships, as CI runs it (scripts/test.sh) and by hand:
#   units  every workspace binary has a unit; `systemd-analyze verify` accepts every unit with
#          no message at all (it only warns, exit 0, on an unknown or misspelt directive); each
#          ExecStart's flags parse (the line is run with `--help` appended); each service's
#          `systemd-analyze security` exposure equals the README's table
#   rules  `promtool check rules` for every deploy/*-alerts.yml, `promtool test rules` for
#          deploy/tests/*.yml, and every alert has summary, description and runbook
#          annotations and a test where it fires and one where it does not
# Usage: scripts/check-deploy.sh [units|rules]... (default: both). Exit 1 on any failure.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

fail=0
bad() {
	echo "check-deploy: FAIL: $*" >&2
	fail=1
}

check_units() {
	local target bins tmp unit out name line score want
	# The units run the binaries from /usr/local/bin; verify needs them to exist, so a copy of
	# each unit runs the ones built here (a unit naming a binary the workspace lacks fails).
	cargo build --workspace --bins --quiet
	target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug
	bins=$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
m = json.load(sys.stdin)
print("\n".join(sorted(t["name"] for p in m["packages"] for t in p["targets"] if "bin" in t["kind"])))')
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	for unit in deploy/*.service deploy/*.socket deploy/*.timer; do
		sed "s#/usr/local/bin/#$target/#g" "$unit" >"$tmp/$(basename "$unit")"
	done
	for name in $bins; do
		grep -q "^ExecStart=/usr/local/bin/$name\( \|$\)" deploy/*.service ||
			bad "no unit in deploy/ runs $name (ExecStart=/usr/local/bin/$name)"
	done

	if ! out=$(systemd-analyze verify --man=no "$tmp"/* 2>&1) || [ -n "$out" ]; then
		bad "systemd-analyze verify:"$'\n'"$out"
	fi

	for unit in "$tmp"/*.service; do
		name=$(basename "$unit")
		# Template instances are checked as backup@test: /etc/custos/backup/test.json.
		while read -r line; do
			line=${line//%i/test}
			# shellcheck disable=SC2086 # the units quote nothing: split as systemd would
			if ! out=$($line --help 2>&1 >/dev/null); then
				bad "$name: ExecStart does not parse: $line"$'\n'"$out"
			fi
		done < <(sed -n 's/^ExecStart=[-@+!]*//p' "$unit")

		score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null |
			sed -n 's/^.*Overall exposure level for [^:]*: \([0-9.]*\) .*$/\1/p')
		want=$(sed -n "s/^| \`${name}\` | \([0-9.]*\) |.*$/\1/p" README.md)
		if [ -z "$score" ]; then
			bad "$name: systemd-analyze security gave no score"
		elif [ "$score" != "$want" ]; then
			bad "$name: systemd-analyze security exposure is $score, README's table says '${want}'"
		else
			echo "check-deploy: $name: verify ok, ExecStart parses, exposure $score"
		fi
	done
}

check_rules() {
	local rules=(deploy/*-alerts.yml) tests=(deploy/tests/*.yml)
	promtool check rules "${rules[@]}" || bad "promtool check rules"
	promtool test rules "${tests[@]}" || bad "promtool test rules"
	# Every alert: annotations, and unit tests both ways (promtool only checks the tests given).
	python3 - "${rules[@]}" -- "${tests[@]}" <<'PY' || bad "alert annotations or test coverage"
import sys, yaml
args = sys.argv[1:]
split = args.index("--")
rule_files, test_files = args[:split], args[split + 1:]
firing, quiet, failed = set(), set(), False
for f in test_files:
    for t in yaml.safe_load(open(f)).get("tests", []):
        for a in t.get("alert_rule_test", []):
            (firing if a.get("exp_alerts") else quiet).add(a["alertname"])
for f in rule_files:
    for g in yaml.safe_load(open(f))["groups"]:
        for r in g["rules"]:
            if "alert" not in r:
                continue
            name, ann = r["alert"], r.get("annotations", {})
            for key in ("summary", "description", "runbook"):
                if not str(ann.get(key, "")).strip():
                    print(f"{f}: alert {name}: no '{key}' annotation", file=sys.stderr)
                    failed = True
            if name not in firing:
                print(f"{f}: alert {name}: no test where it fires", file=sys.stderr)
                failed = True
            if name not in quiet:
                print(f"{f}: alert {name}: no test where it stays silent", file=sys.stderr)
                failed = True
sys.exit(1 if failed else 0)
PY
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(units rules)
for w in "${what[@]}"; do
	case $w in
	units) check_units ;;
	rules) check_rules ;;
	*)
		echo "usage: $0 [units|rules]..." >&2
		exit 2
		;;
	esac
done
if [ "$fail" != 0 ]; then
	echo "check-deploy: deploy/ checks failed" >&2
	exit 1
fi
echo "check-deploy: ${what[*]}: ok"
