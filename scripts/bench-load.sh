#!/usr/bin/env bash
# Loopback load test of the bench_server example (issues 8 and 19): builds
# it in release, then for each repeat runs bare then X for each mode X with
# wrk on 127.0.0.1, one server at a time, and prints per mode the median
# requests/s and p99 latency with min/max across repeats, and the ratio to
# the bare run just before it (so that load from other processes on a
# shared machine hits both sides of each ratio alike).
#
# Modes (see examples/bench_server.rs): metrics, full (sampled, exported to
# a counting exporter), unsampled (the full server; this pair's bare run and
# its own send a traceparent whose parent is not sampled), full_log (full
# with the default JSON access log, written to a file), anchor (the crates
# users stack today), floor_body (not in the default list: a layer that only
# wraps the response body, the floor of any layer that sees the body end
# behind axum's Router::layer).
#
# Environment (defaults in brackets):
#   REPEATS [5]          rounds of the whole alternation
#   DURATION [10]        seconds of each measured wrk run
#   WARMUP [2]           seconds of an unmeasured wrk run before each one
#   THREADS [2] CONNS [64]  wrk -t / -c
#   MODES ["metrics full unsampled full_log anchor"]  the modes measured against bare
#   PORT [38080]         loopback port of the server
#   WORKERS              tokio worker threads of the server [one per core]
#   MAX_SECONDS [570]    refuse a configuration whose estimate exceeds this
#   SERVER               a bench_server binary to run instead of building one
#   BASE                 a second bench_server binary (another commit's): each
#                        mode then runs bare, the mode with BASE ("mode@base"),
#                        bare, the mode with the server, so that two commits
#                        are compared within one run, each against the bare
#                        run just before it (always the current binary's, so
#                        both ratios share one baseline); BASE must know
#                        every mode of MODES (floor_body is newer than most)
# Example: REPEATS=3 DURATION=5 scripts/bench-load.sh
#          BASE=/tmp/bench_server-old MODES="metrics full" scripts/bench-load.sh
set -euo pipefail
# Paths given relative to the caller's directory, before moving to the repo.
if [ -n "${BASE:-}" ]; then BASE=$(realpath -- "$BASE"); fi
if [ -n "${SERVER:-}" ]; then SERVER=$(realpath -- "$SERVER"); fi
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
MODES=${MODES:-"metrics full unsampled full_log anchor"}
UNSAMPLED_PARENT="traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
PORT=${PORT:-38080}
MAX_SECONDS=${MAX_SECONDS:-570}
URL="http://127.0.0.1:${PORT}/users/42"

read -r -a modes <<<"$MODES"
BASE=${BASE:-}
if [ -n "$BASE" ] && [ ! -x "$BASE" ]; then
  echo "BASE=$BASE is not an executable bench_server" >&2
  exit 2
fi
per_mode=2
if [ -n "$BASE" ]; then per_mode=4; fi
runs=$((REPEATS * ${#modes[@]} * per_mode))
estimate=$((runs * (DURATION + WARMUP + 1)))
if [ "$estimate" -gt "$MAX_SECONDS" ]; then
  echo "estimated ${estimate}s of load exceeds MAX_SECONDS=${MAX_SECONDS}: lower REPEATS or DURATION" >&2
  exit 2
fi

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk
fi

# shellcheck source=scripts/bench-server.sh
. scripts/bench-server.sh
own_server=$server

# Prints "rps p99_ms" of one measured run; the arguments go to wrk (headers).
measure() {
  wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$@" "$URL" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" "$URL" >"$work/wrk.out"
  if grep -q -e "Non-2xx" -e "Socket errors" "$work/wrk.out"; then
    echo "wrk reported errors:" >&2
    cat "$work/wrk.out" >&2
    exit 1
  fi
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v
    }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    END { printf "%s %s\n", rps, p99 }
  ' "$work/wrk.out"
}

echo "== load: ${REPEATS} repeats of bare/X for X in: ${MODES}; wrk -t${THREADS} -c${CONNS} -d${DURATION}s (+${WARMUP}s warm-up), about ${estimate}s"
results="$work/results"
: >"$results"
for r in $(seq "$REPEATS"); do
  for mode in "${modes[@]}"; do
    headers=()
    if [ "$mode" = unsampled ]; then headers=(-H "$UNSAMPLED_PARENT"); fi
    runs_of_mode=(bare "$mode")
    if [ -n "$BASE" ]; then runs_of_mode=(bare "$mode@base" bare "$mode"); fi
    for m in "${runs_of_mode[@]}"; do
      if [ "$m" = "$mode@base" ]; then
        server=$BASE
        start_server "$mode"
        server=$own_server
      else
        start_server "$m"
      fi
      out=$(measure ${headers[@]+"${headers[@]}"})
      read -r rps p99 <<<"$out"
      stop_server
      if [ "${m%@base}" = full_log ]; then
        lines=$(grep -c '"target":"tower_observability::access"' "$work/server.out" || true)
        if [ "$lines" -lt 1000 ]; then
          echo "full_log wrote ${lines} access-log lines: the log is not on" >&2
          exit 1
        fi
      fi
      if [ "$m" = bare ]; then bare_rps=$rps; fi
      # mode repeat rps p99 ratio-to-the-bare-run-just-before
      ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN { printf "%.4f", a / b }')
      echo "$m $r $rps $p99 $ratio" >>"$results"
      printf '  repeat %d %-16s %10.0f req/s  p99 %7.2f ms  ratio %s\n' "$r" "$m" "$rps" "$p99" "$ratio"
    done
  done
done

echo
echo "== summary: medians across ${REPEATS} repeats (min..max)"
printf '%-16s %28s %26s %24s\n' mode "req/s" "p99 ms" "req/s ratio to bare"
summary_modes=(bare)
for mode in "${modes[@]}"; do
  if [ -n "$BASE" ]; then summary_modes+=("$mode@base"); fi
  summary_modes+=("$mode")
done
for mode in "${summary_modes[@]}"; do
  # column: 3 rps, 4 p99, 5 ratio
  stats() {
    awk -v m="$mode" -v c="$1" '$1 == m { print $c }' "$results" | sort -g | awk -v fmt="$2" '
      { v[NR] = $1 }
      END {
        med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf fmt " (" fmt ".." fmt ")", med, v[1], v[NR]
      }'
  }
  if [ "$mode" = bare ]; then ratio="1.00"; else ratio=$(stats 5 "%.3f"); fi
  printf '%-16s %28s %26s %24s\n' "$mode" "$(stats 3 "%.0f")" "$(stats 4 "%.2f")" "$ratio"
done
