#!/usr/bin/env bash
# Drives the quickstart so that its dashboard shows a whole incident in about
# three minutes: normal traffic, then the payments service failing (errors,
# readiness unhealthy, alerts pending then firing, the error budget burning),
# then recovery (the alerts resolve). Traffic goes to a loopback address only,
# in a bounded number of requests, each bounded by a timeout.
#
#   cargo run --example quickstart            # in one shell
#   ./scripts/demo-traffic.sh                 # in another; open http://127.0.0.1:3000/monitoring
#
# Environment: BASE_URL (default http://127.0.0.1:3000, loopback only),
# NORMAL_SECONDS (30), INCIDENT_SECONDS (75), RECOVERY_SECONDS (75).
set -euo pipefail

base=${BASE_URL:-http://127.0.0.1:3000}
normal=${NORMAL_SECONDS:-30}
incident=${INCIDENT_SECONDS:-75}
recovery=${RECOVERY_SECONDS:-75}

case "$base" in
  http://127.*|http://localhost|http://localhost:*|http://\[::1\]*) ;;
  *) echo "BASE_URL must be a loopback address (http://127.0.0.1:PORT), not $base" >&2; exit 2 ;;
esac
for n in "$normal" "$incident" "$recovery"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -le 600 ] || { echo "phase durations are whole seconds, at most 600" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }
curl -fsS --max-time 5 "$base/health/live" >/dev/null || {
  echo "nothing answers at $base: start the quickstart first (cargo run --example quickstart)" >&2
  exit 1
}

get() { curl -s -o /dev/null --max-time 3 "$base$1" || true; }

# One worker: GETs for `seconds`, about 10 a second, from a mix of paths.
# mode "normal": cached users and paid orders; "incident": also orders and
# users the cache has not seen.
worker() {
  local seconds=$1 mode=$2 seed=$3 end=$((SECONDS + $1)) i=0
  while [ "$SECONDS" -lt "$end" ] && [ "$i" -lt $((seconds * 20)) ]; do
    i=$((i + 1))
    local r=$(( (RANDOM + seed) % 10 ))
    if [ "$mode" = incident ] && [ "$r" -ge 6 ]; then
      get "/orders/$(( (RANDOM % 200) * 5 + 1 ))"   # the payments service fails: 502
    elif [ "$r" -ge 8 ]; then
      get "/orders/$(( (RANDOM % 200) * 5 + 2 ))"   # paid: 200
    elif [ "$mode" = incident ] && [ "$r" -ge 4 ]; then
      get "/users/$(( RANDOM % 1000 + 1 ))"         # mostly cache misses
    else
      get "/users/$(( RANDOM % 20 + 1 ))"           # cache hits
    fi
    sleep 0.1
  done
}

phase() {
  local name=$1 seconds=$2 mode=$3
  echo "$(date +%T) $name for ${seconds}s"
  for w in 1 2; do worker "$seconds" "$mode" "$w" & done
  wait
}

trap 'curl -s -o /dev/null --max-time 3 -X PUT "$base/demo/payments/ok" || true' EXIT
curl -fsS --max-time 3 -X PUT "$base/demo/payments/ok" >/dev/null
phase "normal traffic" "$normal" normal
curl -fsS --max-time 3 -X PUT "$base/demo/payments/failing" >/dev/null
phase "incident: the payments service fails (HighErrorRatio, ReadinessUnhealthy, burn rate)" "$incident" incident
curl -fsS --max-time 3 -X PUT "$base/demo/payments/ok" >/dev/null
phase "recovery: the alerts resolve once the last minute is clean" "$recovery" normal
echo "$(date +%T) done; the history: $base/monitoring/alerts/history"
