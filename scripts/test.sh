#!/usr/bin/env bash
# Runs every test of the crate on a fresh Debian machine: installs what the
# tests need (promtool from Debian's `prometheus`), then lints, documents and
# tests with all features and with default features.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --all-targets --all-features -- -D warnings
echo "== doc";    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
# The end-to-end tests run the real quickstart binary: build it first.
echo "== build examples"; cargo build --examples --all-features
echo "== test (all features)"; cargo test --all-features --all-targets
echo "== doctest"; cargo test --all-features --doc
echo "== check (no default features)"; cargo check --no-default-features --lib
echo "== all tests passed"
