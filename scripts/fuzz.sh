#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each,
# default 60). cargo-fuzz drives libFuzzer, which wants nightly flags: on
# the stable toolchain they are unlocked with RUSTC_BOOTSTRAP=1, and the
# sanitizer is off (ASan needs nightly's -Zsanitizer). Crashes land in
# fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
SECS=${FUZZ_SECONDS:-60}
for target in request_id cache_status traceparent; do
  echo "== fuzz $target for ${SECS}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" -- -max_total_time="$SECS" -rss_limit_mb=2048
done
