#!/usr/bin/env bash
# Checks deploy/: the Prometheus alerting rules and the SLO rules generated from the
# quickstart (promtool check rules), their unit tests with burn-rate cases (promtool test
# rules), and the Grafana dashboard (valid JSON, the expected panels, one
# datasource variable, and every panel query parsed by promtool).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null 2>&1 || {
  echo "promtool not found: apt-get install prometheus (Debian ships promtool with it)" >&2
  exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check rules"
promtool check rules deploy/prometheus/alerts.yml

echo "== promtool check rules: SLOs"
promtool check rules deploy/prometheus/slo.yml

echo "== promtool test rules"
(cd deploy/prometheus && promtool test rules alerts_test.yml slo_test.yml)

echo "== grafana dashboard: json"
python3 -m json.tool deploy/grafana/dashboard.json >/dev/null

echo "== grafana dashboard: model"
python3 - deploy/grafana/dashboard.json "$tmp/dashboard_rules.yml" <<'EOF'
import json, re, sys

path, rules_out = sys.argv[1], sys.argv[2]
with open(path) as f:
    d = json.load(f)
errors = []

def check(ok, msg):
    if not ok:
        errors.append(msg)

check(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, "schemaVersion missing or < 36")
check(d.get("uid") and d.get("title"), "uid and title are required")
variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
check(ds is not None and ds.get("type") == "datasource" and ds.get("query") == "prometheus",
      "a Prometheus datasource variable named 'datasource' is required")

panels = [p for p in d.get("panels", []) if p.get("type") != "row"]
ids = [p["id"] for p in d.get("panels", [])]
check(len(ids) == len(set(ids)), "panel ids must be unique")
titles = {p["title"] for p in panels}
for wanted in ["Request rate", "Error ratio", "Latency p50 / p95 / p99", "Active requests",
               "Cache hit ratio", "Health checks"]:
    check(wanted in titles, f"missing panel {wanted!r}")

# The metrics the crate exports (and Prometheus' own ALERTS).
known = {
    "http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket",
    "http_server_active_requests", "cache_gets_total", "http_server_cache_requests_total",
    "health_check_status", "tower_observability_alerts", "ALERTS",
}
exprs = []
for p in panels:
    check(p.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['title']!r}: datasource must be ${{datasource}}")
    check("gridPos" in p, f"panel {p['title']!r}: gridPos missing")
    check(p.get("targets"), f"panel {p['title']!r}: no query")
    for t in p.get("targets", []):
        check(t.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['title']!r}: target datasource")
        expr = t["expr"]
        exprs.append((p["title"], expr))
        # Metric names: the identifiers before a label matcher.
        for name in re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*\{", expr):
            check(name in known, f"panel {p['title']!r}: unknown metric {name!r}")

# promtool parses every query, with the Grafana variables substituted.
with open(rules_out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, expr) in enumerate(exprs):
        e = expr.replace("$__rate_interval", "5m").replace("$job", ".+")
        f.write(f"      - record: dashboard_query_{i}\n        expr: {json.dumps(e)}\n")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"  {len(panels)} panels, {len(exprs)} queries")
EOF
promtool check rules "$tmp/dashboard_rules.yml" >/dev/null

echo "== deploy checks passed"
