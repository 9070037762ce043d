#!/usr/bin/env bash
# Runs every test of the crate on a fresh Debian machine: installs what the
# tests need (promtool and Prometheus from Debian's `prometheus`,
# Alertmanager from `prometheus-alertmanager`, the Pushgateway from
# `prometheus-pushgateway`, headless Chromium from `chromium`, PyYAML for the
# deploy checks from `python3-yaml`, Python's `venv` from `python3-venv`, and
# `prometheus_client` from PyPI), then checks
# deploy/, lints, documents, tests with all features, and checks that each
# feature compiles alone.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
python3 -c 'import yaml' >/dev/null 2>&1 || need+=(python3-yaml)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Python `prometheus_client`'s OpenMetrics parser, an implementation
# independent of the crate's, reads /metrics in OpenMetrics in the tests
# (tests/support/openmetrics.rs): installed with pip into a virtual
# environment under the target directory.
venv="${CARGO_TARGET_DIR:-target}/om-venv"
if ! "$venv/bin/python" -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
  echo "installing prometheus_client into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'prometheus_client>=0.20,<1'
fi

echo "== deploy rules and dashboard"; ./scripts/check-deploy.sh
echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --all-targets --all-features -- -D warnings
echo "== doc";    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
# The end-to-end tests run the real quickstart binary: build it first.
echo "== build examples"; cargo build --examples --all-features
echo "== test (all features)"; cargo test --all-features --all-targets
echo "== doctest"; cargo test --all-features --doc
# The package must build from the files it holds alone.
echo "== package"; cargo package --quiet --allow-dirty
echo "== check each feature alone"
for feature in "" axum telemetry otlp-grpc otlp-http health alerts notify monitoring process-metrics moka tower-http grpc pushgateway testing; do
  out=$(cargo check --quiet --no-default-features --features "$feature" --lib 2>&1) || { echo "$out"; exit 1; }
  if grep -q '^warning' <<<"$out"; then echo "warnings with --features '$feature':"; echo "$out"; exit 1; fi
done
echo "== all tests passed"
