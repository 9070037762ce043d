#!/usr/bin/env bash
# Profile of the bench_server example under load (issue 19): for each mode,
# starts the release server, drives it with wrk on 127.0.0.1 and, during the
# measured run, records the server with `perf record -e cpu-clock` and counts
# its CPU time and context switches with `perf stat`. Prints per mode the
# requests/s, the server's CPU microseconds per request (user + kernel, of
# every thread: workers, span export, log writer), its context switches per
# request, and the top user-space and kernel symbols by share of the server's
# samples. perf record runs during the perf stat window: the CPU per request
# includes the profiler's own sampling (about 3 000 samples a second).
#
# Environment (defaults in brackets):
#   MODES ["bare metrics full full_log"]  bench_server modes to profile
#   DURATION [8]      seconds of each measured wrk run (perf records it all)
#   THREADS [2] CONNS [64]  wrk -t / -c
#   TOP [25]          symbols listed per mode
#   PORT [38081]      loopback port of the server
#   OUT               keep perf.data files here (default: a temporary dir)
#   SERVER            a bench_server binary to profile instead of building one
# Example: MODES="full full_log" DURATION=5 scripts/profile-load.sh
set -euo pipefail
# A path given relative to the caller's directory, before moving to the repo.
if [ -n "${SERVER:-}" ]; then SERVER=$(realpath -- "$SERVER"); fi
cd "$(dirname "$0")/.."

MODES=${MODES:-"bare metrics full full_log"}
DURATION=${DURATION:-8}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
TOP=${TOP:-25}
PORT=${PORT:-38081}
URL="http://127.0.0.1:${PORT}/users/42"
if [ "$DURATION" -lt 3 ]; then
  echo "DURATION=${DURATION}: at least 3 (half a second of warm-up and one of margin are left out)" >&2
  exit 2
fi

if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2"
  fi
}
need wrk wrk
need perf linux-perf

# shellcheck source=scripts/bench-server.sh
. scripts/bench-server.sh
out=${OUT:-$work}
mkdir -p "$out"

for mode in $MODES; do
  start_server "$mode"
  wrk -t"$THREADS" -c"$CONNS" -d2s "$URL" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$URL" >"$work/wrk.out" &
  wrk_pid=$!
  # Skip wrk's first half second (connections opening), stop before its end.
  sleep 0.5
  window=$((DURATION - 1))
  perf stat -e task-clock,context-switches -x, -o "$work/stat.csv" -p "$server_pid" -- sleep "$window" &
  stat_pid=$!
  perf record -q -e cpu-clock -F 2999 -o "$out/$mode.perf.data" -p "$server_pid" -- sleep "$window" 2>/dev/null
  wait "$stat_pid"
  wait "$wrk_pid"
  stop_server
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.out")
  task_ms=$(awk -F, '$3 == "task-clock" { print $1 }' "$work/stat.csv")
  switches=$(awk -F, '$3 == "context-switches" { print $1 }' "$work/stat.csv")
  echo
  awk -v m="$mode" -v rps="$rps" -v ms="$task_ms" -v cs="$switches" -v w="$window" 'BEGIN {
    n = rps * w
    printf "== %s: %.0f req/s; server CPU %.2f us/request (%.2f cores); %.3f context switches/request\n",
      m, rps, ms * 1000 / n, ms / 1000 / w, cs / n
  }'
  echo "-- top symbols (share of the server's cpu-clock samples; [k] kernel)"
  perf report -i "$out/$mode.perf.data" --no-children --sort sym --stdio --percent-limit 0.5 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n "$TOP"
done
