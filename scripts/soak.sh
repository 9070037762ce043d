#!/usr/bin/env bash
# Soak: runs the quickstart (release build) under sustained load on loopback
# for a bounded time and reports resident memory and series counts at the
# start and the end. Fails when memory grows by more than SOAK_MAX_RSS_GROWTH_KIB
# or the series count grows at all after the warm-up.
#
#   SOAK_SECONDS=300 scripts/soak.sh        # 5 minutes (default)
#   SOAK_SECONDS=30 scripts/soak.sh         # a quick check
#
# Needs wrk (Debian package `wrk`; installed when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${SOAK_SECONDS:-300}
CONNECTIONS=${SOAK_CONNECTIONS:-32}
MAX_GROWTH_KIB=${SOAK_MAX_RSS_GROWTH_KIB:-16384}
PORT=${SOAK_PORT:-39123}

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else echo "wrk is required" >&2; exit 1; fi
fi

cargo build --release --example quickstart
OTEL_SDK_DISABLED=true RUST_LOG=warn,quickstart=info PORT=$PORT \
  ./target/release/examples/quickstart >/tmp/soak-quickstart.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done

rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
series() { curl -sf "http://127.0.0.1:$PORT/metrics" | grep -vc '^#'; }
requests() {
  curl -sf "http://127.0.0.1:$PORT/metrics" |
    awk '/^http_server_request_duration_seconds_count/ {s += $NF} END {printf "%d\n", s}'
}

# A Lua script that spreads requests over ids, unknown paths and errors.
LUA=$(mktemp)
cat >"$LUA" <<'EOF'
counter = 0
request = function()
  counter = counter + 1
  local kind = counter % 10
  local path
  if kind < 6 then path = "/users/" .. (counter % 5000)
  elseif kind < 8 then path = "/orders/" .. counter
  elseif kind < 9 then path = "/no/such/" .. counter
  else path = "/users/" .. counter .. "?q=" .. counter end
  return wrk.format("GET", path)
end
EOF

# Warm-up: every route and outcome exists before the first measurement.
wrk -t2 -c"$CONNECTIONS" -d5s -s "$LUA" "http://127.0.0.1:$PORT" >/dev/null
RSS_START=$(rss); SERIES_START=$(series); REQ_START=$(requests)
echo "start: rss=${RSS_START} KiB series=${SERIES_START} requests=${REQ_START}"

wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_TOTAL}s" -s "$LUA" --latency "http://127.0.0.1:$PORT" | tee /tmp/soak-wrk.txt
RSS_END=$(rss); SERIES_END=$(series); REQ_END=$(requests)
echo "end:   rss=${RSS_END} KiB series=${SERIES_END} requests=${REQ_END}"
GROWTH=$((RSS_END - RSS_START))
echo "soak: ${SECONDS_TOTAL}s, $((REQ_END - REQ_START)) requests, rss ${RSS_START} -> ${RSS_END} KiB (${GROWTH} KiB), series ${SERIES_START} -> ${SERIES_END}"
rm -f "$LUA"

status=0
if [ "$GROWTH" -gt "$MAX_GROWTH_KIB" ]; then echo "FAIL: resident memory grew by ${GROWTH} KiB" >&2; status=1; fi
if [ "$SERIES_END" -gt "$SERIES_START" ]; then echo "FAIL: series grew from ${SERIES_START} to ${SERIES_END}" >&2; status=1; fi
exit $status
