#!/usr/bin/env bash
# Checks what deploy/ ships, as CI runs it (scripts/test.sh) and by hand:
#   units  every workspace binary has a unit; `systemd-analyze verify` accepts every unit with
#          no message at all (it only warns, exit 0, on an unknown or misspelt directive); each
#          ExecStart's flags parse (the line is run with `--help` appended); each service's
#          `systemd-analyze security` exposure equals the README's table
#   rules  `promtool check rules` for every deploy/*-alerts.yml, `promtool test rules` for
#          deploy/tests/*.yml, and every alert has summary, description and runbook
#          annotations and a test where it fires and one where it does not
#   dashboards  every deploy/grafana/*.json takes its data source from the `datasource`
#          variable, and every panel query and variable query returns series from a real
#          Prometheus scraping the recorded exposition of the binaries (deploy/tests/exposition);
#          every metric and label the alert rules select on exists there too
# Usage: scripts/check-deploy.sh [units|rules|dashboards]... (default: all). Exit 1 on any failure.
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
# custos-dist only holds the build-time generator of man pages and completions (not installed).
print("\n".join(sorted(t["name"] for p in m["packages"] if p["name"] != "custos-dist" for t in p["targets"] if "bin" in t["kind"])))')
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"; trap - RETURN' RETURN
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

check_dashboards() {
	local tmp port prom_port pids=() job f
	tmp=$(mktemp -d)
	# Serves the recorded /metrics bodies (deploy/tests/exposition/NAME.prom) on a port the
	# kernel picks; Prometheus scrapes each as job NAME every second.
	python3 - "$tmp/port" deploy/tests/exposition <<'PY' &
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[2])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[1] + ".tmp", "w").write(str(srv.server_address[1]))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
PY
	pids+=($!)
	# shellcheck disable=SC2064 # expand now: the locals are gone when the trap runs
	trap "kill ${pids[*]} 2>/dev/null; wait ${pids[*]} 2>/dev/null; rm -rf '$tmp'; trap - RETURN" RETURN
	for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
	port=$(cat "$tmp/port")
	{
		printf 'global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n'
		for f in deploy/tests/exposition/*.prom; do
			job=$(basename "$f" .prom)
			printf '  - job_name: %s\n    metrics_path: /%s.prom\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' "$job" "$job" "$port"
		done
	} >"$tmp/prometheus.yml"
	prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
		--web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
	pids+=($!)
	trap "kill ${pids[*]} 2>/dev/null; wait ${pids[*]} 2>/dev/null; rm -rf '$tmp'; trap - RETURN" RETURN
	python3 - "http://127.0.0.1:$prom_port" deploy/tests/exposition deploy/grafana/*.json -- deploy/*-alerts.yml <<'PY' ||
import glob, json, os, re, sys, time, urllib.error, urllib.parse, urllib.request
import yaml

base, expo = sys.argv[1], sys.argv[2]
split = sys.argv.index("--")
boards, rule_files = sys.argv[3:split], sys.argv[split + 1:]
jobs = {os.path.basename(f)[:-5] for f in glob.glob(expo + "/*.prom")}

def api(path, **q):
    url = base + path + ("?" + urllib.parse.urlencode(q) if q else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # a bad query: 400 with Prometheus's error in JSON
        return json.load(e)

# Every recorded target scraped cleanly at least three times (rate() needs two samples).
deadline, up = time.time() + 60, None
while time.time() < deadline:
    try:
        t = api("/api/v1/targets")["data"]["activeTargets"]
        up = {x["labels"]["job"]: x for x in t if x["health"] == "up" and not x["lastError"]}
        if set(up) == jobs:
            n = api("/api/v1/query", query="min(count_over_time(up[1m]))")["data"]["result"]
            if n and float(n[0]["value"][1]) >= 3:
                break
    except OSError:
        pass
    time.sleep(0.5)
else:
    sys.exit(f"Prometheus did not scrape every recorded exposition: up {sorted(up or [])} of {sorted(jobs)}")

def grafana_to_promql(expr):
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "1m", expr)
    return re.sub(r"\$\{?\w+(:\w+)?\}?", ".*", expr)

failed = False
def bad(msg):
    global failed
    failed = True
    print(msg, file=sys.stderr)

for f in boards:
    d = json.load(open(f))
    names = [v["name"] for v in d["templating"]["list"]]
    if not any(v["name"] == "datasource" and v["type"] == "datasource" and v["query"] == "prometheus" for v in d["templating"]["list"]):
        bad(f"{f}: no data source variable `datasource` of type prometheus")
    queries = []
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            if v.get("datasource", {}).get("uid") != "${datasource}":
                bad(f"{f}: variable {v['name']}: data source is not ${{datasource}}")
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            if not m:
                bad(f"{f}: variable {v['name']}: not label_values(metric, label)")
                continue
            queries.append((f"variable {v['name']}", f"count by ({m[2]}) ({m[1]})"))
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        bad(f"{f}: panel ids repeat")
    for p in d["panels"]:
        if p.get("datasource", {}).get("uid") != "${datasource}":
            bad(f"{f}: panel {p['title']!r}: data source is not ${{datasource}}")
        for t in p["targets"]:
            if t.get("datasource", {}).get("uid") != "${datasource}":
                bad(f"{f}: panel {p['title']!r} query {t['refId']}: data source is not ${{datasource}}")
            queries.append((f"panel {p['title']!r} query {t['refId']}", grafana_to_promql(t["expr"])))
    for what, q in queries:
        r = api("/api/v1/query", query=q)
        if r.get("status") != "success":
            bad(f"{f}: {what}: {q}: {r.get('error', r)}")
        elif not r["data"]["result"]:
            bad(f"{f}: {what}: {q}: no series")
    print(f"check-deploy: {f}: {len(queries)} queries checked")

# The alert rules' unit tests feed series written by hand; here every metric and every label
# a rule selects on must exist in what the binaries really serve, so a misspelt name in a rule
# (and the same name in its test) cannot pass.
PREFIX = r"(?:burp|smart|haproxy|haproxysessionmon|backup)_\w+"
for f in rule_files:
    n = 0
    for g in yaml.safe_load(open(f))["groups"]:
        for r in g["rules"]:
            expr = re.sub(r'"[^"]*"', '""', r["expr"])  # no names inside label values
            for m in re.finditer(rf"\b({PREFIX})\b(\s*\{{[^}}]*\}})?", expr):
                metric, labels = m[1], re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", m[2] or "")
                for q in [f"count({metric})"] + [f'count({metric}{{{l}!=""}})' for l in labels]:
                    n += 1
                    res = api("/api/v1/query", query=q)
                    if res.get("status") != "success" or not res["data"]["result"]:
                        bad(f"{f}: alert {r.get('alert')}: {q}: no such series in the recorded exposition")
    print(f"check-deploy: {f}: {n} metric and label selections checked")
sys.exit(1 if failed else 0)
PY
		{
			bad "dashboards; the end of Prometheus's log:"
			tail -5 "$tmp/prometheus.log" >&2
		}
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(units rules dashboards)
for w in "${what[@]}"; do
	case $w in
	units) check_units ;;
	rules) check_rules ;;
	dashboards) check_dashboards ;;
	*)
		echo "usage: $0 [units|rules|dashboards]..." >&2
		exit 2
		;;
	esac
done
if [ "$fail" != 0 ]; then
	echo "check-deploy: deploy/ checks failed" >&2
	exit 1
fi
echo "check-deploy: ${what[*]}: ok"
