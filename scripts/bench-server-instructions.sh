#!/usr/bin/env bash
# Instructions per request of the whole release bench_server over real HTTP
# on loopback, counted by callgrind: hyper, tokio, the layers and every
# thread of the process (the span exporter's, the log writer's), so what
# the in-process loop of benches/overhead.rs hides shows, with figures that
# do not move with the machine's load as wrk's throughput does.
#
# For each mode: the server runs twice under callgrind, driven by
# `wrk -t1 -c1` for SHORT and for LONG seconds after the same warm-up;
# Ir per request = (Ir(LONG) - Ir(SHORT)) / (requests(LONG) - requests(SHORT)),
# so start-up, warm-up and shutdown cancel out.
#
# Caveats, measured on the first runs: threads that wake on wall-clock
# timers (the metrics flush every 100 ms, the span batch, the log writer,
# the recorder's upkeep) run about 50 times more often per request under
# valgrind than at full speed, and inlining moves a few hundred Ir between
# builds; compare modes of one binary, or two binaries with a margin of
# about 500 Ir per request.
#
# Environment (defaults in brackets):
#   MODES ["bare metrics full full_log unsampled"]  (unsampled: against a bare
#                        run with the same traceparent, printed as bare_parent)
#   SHORT [5] LONG [15]  seconds of the two measured runs
#   WARMUP [2]           seconds of unmeasured requests before each
#   PORT [38100]
#   SERVER               a bench_server binary to run instead of building one
# Example: MODES="full full_log" scripts/bench-server-instructions.sh
set -euo pipefail
if [ -n "${SERVER:-}" ]; then SERVER=$(realpath -- "$SERVER"); fi
cd "$(dirname "$0")/.."

MODES=${MODES:-"bare metrics full full_log unsampled"}
SHORT=${SHORT:-5}
LONG=${LONG:-15}
WARMUP=${WARMUP:-2}
PORT=${PORT:-38100}
URL="http://127.0.0.1:${PORT}/users/42"
UNSAMPLED_PARENT="traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
for tool in valgrind wrk; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: $tool)" >&2; exit 1; }
done

if [ -z "${SERVER:-}" ]; then
  cargo build --release --example bench_server --features full
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  SERVER="${target_dir:-target}/release/examples/bench_server"
fi

work=$(mktemp -d)
cleanup() {
  # The server of a run cut short (runs are in subshells: its pid is in a file).
  if [ -s "$work/vpid" ]; then kill -KILL "$(cat "$work/vpid")" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Prints "requests instructions" of one run: MODE $1, $2 seconds, then wrk's
# extra arguments (headers).
run() {
  local mode=$1 seconds=$2 out requests vpid
  shift 2
  out="$work/$mode-$seconds"
  MODE=$mode PORT=$PORT valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$SERVER" \
    >"$out.stdout" 2>"$out.err" &
  vpid=$!
  echo "$vpid" >"$work/vpid"
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then break; fi
    kill -0 "$vpid" 2>/dev/null || { cat "$out.err" >&2; exit 1; }
    sleep 0.1
  done
  wrk -t1 -c1 -d"${WARMUP}s" "$@" "$URL" >/dev/null
  requests=$(wrk -t1 -c1 -d"${seconds}s" "$@" "$URL" | awk '/requests in/ { print $1 }')
  kill -INT "$vpid"
  wait "$vpid" || true
  : >"$work/vpid"
  echo "$requests $(awk '/^summary:/ { s += $2 } END { printf "%d", s }' "$out.cg")"
}

# Prints the Ir per request of MODE $1 (wrk's extra arguments after it).
per_request() {
  local mode=$1 short long
  shift
  short=$(run "$mode" "$SHORT" "$@")
  long=$(run "$mode" "$LONG" "$@")
  awk -v s="$short" -v l="$long" 'BEGIN {
    split(s, a, " "); split(l, b, " ")
    if (b[1] <= a[1]) { print "no more requests in the long run" > "/dev/stderr"; exit 1 }
    printf "%d", (b[2] - a[2]) / (b[1] - a[1])
  }'
}

declare -A ir
printf '%-12s %12s %12s\n' mode Ir/request extra
for mode in $MODES; do
  if [ "$mode" = unsampled ]; then
    base=bare_parent
    if [ -z "${ir[$base]:-}" ]; then
      ir[$base]=$(per_request bare -H "$UNSAMPLED_PARENT")
      printf '%-12s %12d %12s\n' bare_parent "${ir[$base]}" -
    fi
    ir[$mode]=$(per_request full -H "$UNSAMPLED_PARENT")
  else
    base=bare
    [ -n "${ir[$base]:-}" ] || ir[$base]=$(per_request bare)
    [ "$mode" = bare ] || ir[$mode]=$(per_request "$mode")
  fi
  if [ "$mode" = bare ]; then
    printf '%-12s %12d %12s\n' bare "${ir[bare]}" -
  else
    printf '%-12s %12d %+12d\n' "$mode" "${ir[$mode]}" $((ir[$mode] - ir[$base]))
  fi
done
