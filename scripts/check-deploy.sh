#!/usr/bin/env bash
# Checks deploy/: the Prometheus alerting rules and the SLO rules generated from the
# quickstart (promtool check rules), their unit tests with burn-rate cases (promtool test
# rules), the Prometheus configurations (promtool check config), the OpenTelemetry
# Collector configuration and the compose files (YAML, every component a pipeline names
# defined, every mounted file present), the Grafana dashboard (valid JSON, the expected
# panels, one datasource variable, every panel query parsed by promtool, exemplars on the
# latency panels), and the exemplar wiring (Prometheus with exemplar storage, Grafana's
# Prometheus data source linking `trace_id` to Jaeger).
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
    "rpc_server_call_duration_seconds_bucket",
}
# Latency panels (quantiles of a duration histogram) show exemplars.
latency = [p for p in panels if any("_duration_seconds_bucket" in t["expr"] for t in p.get("targets", []))]
check(len(latency) >= 2, "the latency panels are missing")
for p in latency:
    for t in p["targets"]:
        check(t.get("exemplar") is True, f"panel {p['title']!r}: target {t['refId']} must show exemplars")
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

echo "== promtool check config"
for config in deploy/prometheus/prometheus.yml deploy/prometheus/prometheus.collector.yml; do
  # The rule file's path inside the container, mapped to the repository's.
  sed 's#/etc/prometheus/alerts.yml#'"$PWD"'/deploy/prometheus/alerts.yml#' "$config" >"$tmp/$(basename "$config")"
  promtool check config --syntax-only "$tmp/$(basename "$config")" >/dev/null
done

echo "== collector config, compose files, exemplar wiring"
python3 - <<'EOF'
import os, sys
import yaml

errors = []

def check(ok, msg):
    if not ok:
        errors.append(msg)

def load(path):
    with open(path) as f:
        return yaml.safe_load(f)

# The Collector: OTLP in on 4317 (gRPC) and 4318 (HTTP); traces to Jaeger,
# metrics to a Prometheus exporter, logs to debug; every component a
# pipeline names is defined.
c = load("deploy/otel-collector/config.yaml")
for section in ["receivers", "processors", "exporters", "service"]:
    check(isinstance(c.get(section), dict), f"collector: {section} missing")
protocols = c["receivers"]["otlp"]["protocols"]
check(protocols["grpc"]["endpoint"].endswith(":4317"), "collector: OTLP gRPC must listen on 4317")
check(protocols["http"]["endpoint"].endswith(":4318"), "collector: OTLP HTTP must listen on 4318")
pipelines = c["service"]["pipelines"]
check(set(pipelines) == {"traces", "metrics", "logs"}, f"collector: pipelines {sorted(pipelines)}")
for name, pipeline in pipelines.items():
    for kind in ["receivers", "processors", "exporters"]:
        for component in pipeline.get(kind, []):
            check(component in c[kind], f"collector: pipeline {name} names undefined {kind[:-1]} {component!r}")
    check("otlp" in pipeline["receivers"], f"collector: pipeline {name} must receive OTLP")

def exporter_types(pipeline):
    return {e.split("/")[0] for e in pipelines[pipeline]["exporters"]}

check("otlp" in exporter_types("traces"), "collector: traces must go to Jaeger over OTLP")
check(any(c["exporters"][e].get("endpoint", "").startswith("jaeger:") for e in pipelines["traces"]["exporters"]),
      "collector: the traces exporter must point at jaeger")
check("prometheus" in exporter_types("metrics"), "collector: metrics must go to the Prometheus exporter")
check("debug" in exporter_types("logs"), "collector: logs must go to debug")
for ext in c["service"].get("extensions", []):
    check(ext in c.get("extensions", {}), f"collector: undefined extension {ext!r}")

# Compose files: every service has an image; every mounted file exists.
for compose in ["deploy/docker-compose.yml", "deploy/docker-compose.collector.yml"]:
    d = load(compose)
    services = d.get("services", {})
    check(services, f"{compose}: no services")
    for name, service in services.items():
        check("image" in service, f"{compose}: service {name} has no image")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            path = os.path.normpath(os.path.join("deploy", source))
            check(os.path.exists(path), f"{compose}: service {name} mounts missing {source}")
        for dep in service.get("depends_on", []):
            check(dep in services, f"{compose}: service {name} depends on unknown {dep}")
collector = load("deploy/docker-compose.collector.yml")["services"]
check("otel-collector" in collector, "collector compose: no otel-collector service")
ports = {p.split(":")[0] for p in collector["otel-collector"].get("ports", [])}
check({"4317", "4318"} <= ports, "collector compose: the Collector must publish 4317 and 4318")
prom = load("deploy/prometheus/prometheus.collector.yml")
targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
check("otel-collector:8889" in targets, "collector compose: Prometheus must scrape otel-collector:8889")
check(c["exporters"]["prometheus"]["endpoint"].endswith(":8889"), "collector: Prometheus exporter on 8889")

# Exemplars: Prometheus keeps them, Grafana links their trace_id to Jaeger.
services = load("deploy/docker-compose.yml")["services"]
command = services["prometheus"].get("command", [])
check("--enable-feature=exemplar-storage" in command, "compose: Prometheus needs --enable-feature=exemplar-storage")
check("--config.file=/etc/prometheus/prometheus.yml" in command, "compose: Prometheus' command lost --config.file")
grafana = services.get("grafana", {})
check(grafana, "compose: no grafana service")
mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana.get("volumes", [])}
check(mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning", "compose: Grafana's provisioning mount")

sources = load("deploy/grafana/provisioning/datasources/datasources.yml")["datasources"]
by_uid = {s["uid"]: s for s in sources}
prometheus = [s for s in sources if s["type"] == "prometheus"]
check(len(prometheus) == 1 and prometheus[0]["url"] == "http://prometheus:9090", "grafana: one Prometheus data source")
destinations = prometheus[0].get("jsonData", {}).get("exemplarTraceIdDestinations", []) if prometheus else []
check(any(d.get("name") == "trace_id" and by_uid.get(d.get("datasourceUid"), {}).get("type") == "jaeger"
          for d in destinations), "grafana: the exemplars' trace_id must link to the Jaeger data source")
check(any(s["type"] == "jaeger" and s["url"] == "http://jaeger:16686" for s in sources), "grafana: Jaeger data source")
providers = load("deploy/grafana/provisioning/dashboards/dashboards.yml")["providers"]
path = providers[0]["options"]["path"]
check(any(target.startswith(path + "/") and source == "./grafana/dashboard.json" for target, source in mounts.items()),
      "grafana: the dashboard provider must read the mounted dashboard.json")


if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"  collector: {len(pipelines)} pipelines; 2 compose files; exemplar storage on, trace_id -> Jaeger")
EOF

echo "== deploy checks passed"
