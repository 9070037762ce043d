#!/usr/bin/env bash
# Exporter faults (issue 9): runs the quickstart (release build) under load on
# loopback while its OTLP collector, the otlp_sink example, misbehaves, and
# reports whether requests kept succeeding, their p99 latency against a
# healthy run, the exporter's counters and resident memory.
#
# Scenarios, each a fresh quickstart sending traces to 127.0.0.1:<sink port>:
#   healthy   the sink answers at once
#   refused   no sink: the port is closed, every connection is refused
#   hung      the sink accepts each export and never answers
#   slow      the sink answers each export after BENCH_SLOW_MS
#   flapping  the sink answers at once, is stopped after 1/3 of the run and
#             restarted on the same port after 2/3
# Each repeat runs healthy before every fault scenario (healthy refused
# healthy hung healthy slow healthy flapping), so that each fault's p99 is
# compared with the healthy run just before it, under the same machine load.
# A healthy run's ratio is to the healthy run before it: the noise floor.
#
# Load: wrk -t2 -c$BENCH_CONNECTIONS -d${BENCH_SECONDS}s --latency on
# GET /users/<id>, ids cycling 1..1000 (all 200 through the cache).
#
# Fails (exit 1) when any request failed (non-2xx, socket error), when the
# peak resident memory (VmHWM) of a quickstart exceeds BENCH_MAX_RSS_KIB, when
# the export queue gauge exceeds its cap, when the quickstart dies, or when no
# span is exported after the sink came back in the flapping scenario.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [10]         seconds of each wrk run
#   BENCH_REPEATS [3]          rounds of the whole alternation
#   BENCH_CONNECTIONS [32]     wrk connections (2 threads)
#   BENCH_SLOW_MS [500]        delay of the slow sink
#   BENCH_MAX_RSS_KIB [65536]  bound on each quickstart's peak RSS
#   BENCH_SCENARIOS ["refused hung slow flapping"]  fault scenarios to run
#   BENCH_MAX_SECONDS [570]    refuse a configuration estimated to run longer
#   BENCH_OUT [target/bench-faults]  raw results, wrk outputs and logs
#   OTEL_BSP_* / OTEL_EXPORTER_OTLP_TIMEOUT are passed to the quickstart.
#
#   scripts/bench-faults.sh
#   BENCH_SECONDS=8 BENCH_REPEATS=3 scripts/bench-faults.sh
#   BENCH_SECONDS=3 BENCH_REPEATS=1 BENCH_SCENARIOS=hung scripts/bench-faults.sh
#
# Needs wrk and curl (wrk is installed with apt when missing and running as
# root). Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_RUN=${BENCH_SECONDS:-10}
REPEATS=${BENCH_REPEATS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SLOW_MS=${BENCH_SLOW_MS:-500}
MAX_RSS_KIB=${BENCH_MAX_RSS_KIB:-65536}
MAX_SECONDS=${BENCH_MAX_SECONDS:-570}
OUT=${BENCH_OUT:-target/bench-faults}
QUEUE_CAP=${OTEL_BSP_MAX_QUEUE_SIZE:-2048}
read -r -a faults <<<"${BENCH_SCENARIOS:-refused hung slow flapping}"

for v in SECONDS_RUN REPEATS CONNECTIONS SLOW_MS MAX_RSS_KIB MAX_SECONDS QUEUE_CAP; do
  case ${!v} in '' | *[!0-9]*) echo "$v must be a whole number, got '${!v}'" >&2; exit 2 ;; esac
done
[ "$SECONDS_RUN" -ge 3 ] || { echo "BENCH_SECONDS must be at least 3" >&2; exit 2; }
for f in "${faults[@]}"; do
  case $f in refused | hung | slow | flapping) ;; *) echo "unknown scenario '$f'" >&2; exit 2 ;; esac
done

# Per run: the load, about 2 s to start, scrape and stop, and up to 6 s more
# for a quickstart whose shutdown flush waits on a hung collector (5 s cap).
runs=$((REPEATS * ${#faults[@]} * 2))
estimate=$((runs * (SECONDS_RUN + 2) + REPEATS * 6))
if [ "$estimate" -gt "$MAX_SECONDS" ]; then
  echo "estimated ${estimate}s exceeds BENCH_MAX_SECONDS=${MAX_SECONDS}: lower BENCH_REPEATS or BENCH_SECONDS" >&2
  exit 2
fi

for tool in wrk curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null
    else
      echo "$tool is required" >&2
      exit 1
    fi
  fi
done

echo "== build (release)"
cargo build --release --example quickstart --example otlp_sink
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
quickstart="${target_dir:-target}/release/examples/quickstart"
sink="${target_dir:-target}/release/examples/otlp_sink"

rm -rf "$OUT"
mkdir -p "$OUT"
results="$OUT/results.tsv"

# --- processes: every pid started here, stopped on exit ----------------------
qs_pid=
sink_pid=
wrk_pid=

is_running() { # pid: alive and not a zombie waiting to be reaped
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    [ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" != Z ]
}

stop_pid() { # pid seconds: SIGTERM, wait up to `seconds`, then SIGKILL; reaps it
  local pid=$1 tenths=$(($2 * 10))
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  while [ "$tenths" -gt 0 ] && is_running "$pid"; do sleep 0.1; tenths=$((tenths - 1)); done
  if is_running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  stop_pid "$wrk_pid" 2
  stop_pid "$qs_pid" 2
  stop_pid "$sink_pid" 2
  wrk_pid='' qs_pid='' sink_pid=''
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "${EPOCHREALTIME/,/.}"; }

# A port on 127.0.0.1 that nothing listens on, below Linux's ephemeral range
# (32768+) so that no outgoing connection holds it.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

start_sink() { # mode port log
  SINK_MODE=$1 SINK_PORT=$2 SINK_DELAY_MS=$SLOW_MS "$sink" 2>>"$3" &
  sink_pid=$!
  for _ in $(seq 100); do
    if grep -q "listening on 127.0.0.1:$2 " "$3" 2>/dev/null; then return 0; fi
    is_running "$sink_pid" || break
    sleep 0.05
  done
  echo "otlp_sink (mode $1, port $2) did not start:" >&2
  cat "$3" >&2
  exit 1
}

# The answered-span count of a sink's last report line.
sink_spans() { sed -n 's/^otlp_sink: spans=\([0-9]*\) .*/\1/p' "$1" | tail -n 1; }

start_quickstart() { # sink_port app_port log
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$1" RUST_LOG=warn,quickstart=info LOG_FORMAT=json \
    HOST=127.0.0.1 PORT=$2 "$quickstart" >"$3" 2>&1 &
  qs_pid=$!
  for _ in $(seq 200); do
    if curl -sf --max-time 1 "http://127.0.0.1:$2/health/live" >/dev/null 2>&1; then return 0; fi
    is_running "$qs_pid" || break
    sleep 0.05
  done
  echo "quickstart did not become live on port $2:" >&2
  cat "$3" >&2
  exit 1
}

metric() { # file name: the value of an unlabelled sample, 0 when absent
  awk -v m="$2" '$1 == m { v = $2 } END { printf "%d\n", v + 0 }' "$1"
}

proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

LUA="$OUT/users.lua"
cat >"$LUA" <<'EOF'
-- GET /users/1 .. /users/1000, in turn (per wrk thread).
local requests = {}
local n = 0
init = function(args)
  for i = 1, 1000 do requests[i] = wrk.format("GET", "/users/" .. i) end
end
request = function()
  n = n % 1000 + 1
  return requests[n]
end
EOF

# Parses wrk's output: "rps p50_ms p99_ms non2xx socket_errors requests".
# Latencies are in milliseconds ("812.00us", "1.23ms", "1.02s").
# shellcheck disable=SC2016  # an awk program, not shell
WRK_AWK='
  function ms(v) {
    if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
    if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
    if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
    if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
    return v + 0
  }
  /^ +50%/ { p50 = ms($2) }
  /^ +99%/ { p99 = ms($2) }
  / requests in / { requests = $1 }
  /^Requests\/sec:/ { rps = $2 }
  /Non-2xx or 3xx responses:/ { non2xx = $NF }
  /Socket errors:/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
  END { printf "%.1f %.3f %.3f %d %d %d\n", rps, p50, p99, non2xx, sock, requests }
'

status=0
fail() { echo "FAIL: $*" >&2; status=1; }

# One measured run; appends a line to $results.
run() { # repeat scenario
  local repeat=$1 scenario=$2 tag
  tag=$(printf '%s-%02d-%s' "$1" "$run_no" "$2")
  local sink_port app_port sink_log="$OUT/$tag.sink.log" qs_log="$OUT/$tag.quickstart.log"
  local wrk_out="$OUT/$tag.wrk.txt" metrics="$OUT/$tag.metrics.txt" note=- third
  run_no=$((run_no + 1))
  sink_port=$(free_port)
  app_port=$(free_port)
  : >"$sink_log"
  case $scenario in
    healthy | flapping) start_sink ok "$sink_port" "$sink_log" ;;
    hung) start_sink hang "$sink_port" "$sink_log" ;;
    slow) start_sink slow "$sink_port" "$sink_log" ;;
    refused) ;;
  esac
  start_quickstart "$sink_port" "$app_port" "$qs_log"

  timeout $((SECONDS_RUN + 30)) wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency -s "$LUA" \
    "http://127.0.0.1:$app_port" >"$wrk_out" 2>&1 &
  wrk_pid=$!
  if [ "$scenario" = flapping ]; then
    third=$(awk -v s="$SECONDS_RUN" 'BEGIN { printf "%.2f", s / 3 }')
    sleep "$third"
    curl -sf --max-time 2 "http://127.0.0.1:$app_port/metrics" >"$OUT/$tag.metrics-down.txt" || true
    stop_pid "$sink_pid" 2
    sink_pid=
    sleep "$third"
    curl -sf --max-time 2 "http://127.0.0.1:$app_port/metrics" >"$OUT/$tag.metrics-up.txt" || true
    start_sink ok "$sink_port" "$sink_log"
  fi
  local wrk_rc=0
  wait "$wrk_pid" || wrk_rc=$?
  wrk_pid=
  [ "$wrk_rc" = 0 ] || fail "$tag: wrk exited with $wrk_rc"

  if ! is_running "$qs_pid"; then
    fail "$tag: the quickstart died"
    tail -n 20 "$qs_log" >&2
  fi
  curl -sf --max-time 5 "http://127.0.0.1:$app_port/metrics" >"$metrics" || fail "$tag: /metrics did not answer"
  local rss hwm exported failed dropped queue
  rss=$(proc_kib "$qs_pid" VmRSS || echo 0)
  hwm=$(proc_kib "$qs_pid" VmHWM || echo 0)
  exported=$(metric "$metrics" otlp_exporter_spans_exported_total)
  failed=$(metric "$metrics" otlp_exporter_spans_failed_total)
  dropped=$(metric "$metrics" otlp_exporter_spans_dropped_total)
  queue=$(metric "$metrics" otlp_exporter_queue_spans)

  # Graceful stop (flushes spans, at most 5 s against a hung collector).
  local t0 stop_s
  t0=$(now)
  stop_pid "$qs_pid" 15
  qs_pid=
  stop_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  local spans=0
  if [ -n "$sink_pid" ]; then
    stop_pid "$sink_pid" 2
    sink_pid=
    spans=$(sink_spans "$sink_log")
  fi

  if [ "$scenario" = flapping ]; then
    # Exported while the sink was down, and after it came back.
    local at_down at_up
    at_down=$(metric "$OUT/$tag.metrics-down.txt" otlp_exporter_spans_exported_total)
    at_up=$(metric "$OUT/$tag.metrics-up.txt" otlp_exporter_spans_exported_total)
    note="exported:before=${at_down},down=$((at_up - at_down)),after=$((exported - at_up))"
    [ $((exported - at_up)) -gt 0 ] || fail "$tag: no span exported after the sink came back"
  fi

  local rps p50 p99 non2xx sock requests
  read -r rps p50 p99 non2xx sock requests < <(awk "$WRK_AWK" "$wrk_out")
  [ "$requests" -gt 0 ] || fail "$tag: wrk made no request (see $wrk_out)"
  [ "$non2xx" = 0 ] || fail "$tag: $non2xx non-2xx responses"
  [ "$sock" = 0 ] || fail "$tag: $sock socket errors"
  [ "${hwm:-0}" -le "$MAX_RSS_KIB" ] || fail "$tag: peak RSS ${hwm} KiB > ${MAX_RSS_KIB} KiB"
  [ "$queue" -le "$QUEUE_CAP" ] || fail "$tag: export queue ${queue} > cap ${QUEUE_CAP}"

  # p99 ratio: a fault to the healthy run just before it; a healthy run to
  # the previous healthy run (none for the first).
  local ratio=-
  if [ -n "$healthy_p99" ]; then
    ratio=$(awk -v a="$p99" -v b="$healthy_p99" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }')
  fi
  if [ "$scenario" = healthy ]; then healthy_p99=$p99; fi

  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$repeat" "$scenario" "$rps" "$p50" "$p99" "$ratio" "$non2xx" "$sock" "$requests" \
    "$exported" "$failed" "$dropped" "$queue" "$rss" "$hwm" "$stop_s" "$spans" "$note" >>"$results"
  printf '  %-3s %-9s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  ratio %-6s  non-2xx %s  sock %s  exported %s failed %s dropped %s queue %s  rss %s KiB (peak %s)  stop %ss  sink %s  %s\n' \
    "$repeat" "$scenario" "$rps" "$p50" "$p99" "$ratio" "$non2xx" "$sock" \
    "$exported" "$failed" "$dropped" "$queue" "$rss" "$hwm" "$stop_s" "$spans" "$note"
}

printf 'repeat\tscenario\trps\tp50_ms\tp99_ms\tp99_ratio\tnon2xx\tsocket_errors\trequests\texported\tfailed\tdropped\tqueue\trss_kib\thwm_kib\tstop_s\tsink_spans\tnote\n' >"$results"
echo "== ${REPEATS} repeats of healthy/X for X in: ${faults[*]}; wrk -t2 -c${CONNECTIONS} -d${SECONDS_RUN}s, about ${estimate}s"
run_no=0
for r in $(seq "$REPEATS"); do
  healthy_p99=
  for f in "${faults[@]}"; do
    run "$r" healthy
    run "$r" "$f"
  done
done

echo
echo "== medians across ${REPEATS} repeats (p99 ratio: median, min..max; failures: sums)"
med() { # scenario column format
  awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s && $c != "-" { print $c }' "$results" | sort -g |
    awk -v fmt="$3" '{ v[NR] = $1 }
      END {
        if (NR == 0) { print "-"; exit }
        printf fmt, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      }'
}
range() { # scenario column
  awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s && $c != "-" { print $c }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.2f..%.2f", v[1], v[NR] }'
}
total() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s { t += $c } END { printf "%d", t }' "$results"; }
runs_of() { awk -F'\t' -v s="$1" 'NR > 1 && $2 == s { n++ } END { printf "%d", n }' "$results"; }

echo "| scenario | runs | req/s | p50 ms | p99 ms | p99 ratio | ratio range | non-2xx | socket errors | spans exported | failed | dropped | queue | RSS KiB | peak RSS KiB | stop s |"
echo "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in healthy "${faults[@]}"; do
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$s" "$(runs_of "$s")" "$(med "$s" 3 %.0f)" "$(med "$s" 4 %.2f)" "$(med "$s" 5 %.2f)" \
    "$(med "$s" 6 %.3f)" "$(range "$s" 6)" "$(total "$s" 7)" "$(total "$s" 8)" \
    "$(med "$s" 10 %.0f)" "$(med "$s" 11 %.0f)" "$(med "$s" 12 %.0f)" "$(med "$s" 13 %.0f)" \
    "$(med "$s" 14 %.0f)" "$(med "$s" 15 %.0f)" "$(med "$s" 16 %.2f)"
done
echo
echo "raw results: $results (wrk outputs, metrics and logs beside it)"
if [ "$status" = 0 ]; then echo "bench-faults: OK"; else echo "bench-faults: FAILED" >&2; fi
exit "$status"
