#!/usr/bin/env bash
# Instructions per request of the in-process bench cases, counted by
# callgrind: deterministic for a given binary, whatever else the machine
# runs, so the figure to compare across commits.
#
#   scripts/bench-instructions.sh                  # the default cases
#   CASES="bare metrics" N=5000 scripts/bench-instructions.sh
#   OVERHEAD_EXEMPLARS=off scripts/bench-instructions.sh   # without exemplars
#
# Each case runs `OVERHEAD_LOOP=<case>:<N>` (2 000 warm-up requests, then N
# measured ones) under callgrind, collecting only the measured loop, and
# prints Ir/request and the extra over the case's baseline (bare, or
# bare_parent for the cases that send a traceparent, or the bare router of
# the same size for the routes cases).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-5000}
CASES=${CASES:-"bare bare_parent request_id trace_sampled metrics cache full_sampled full_sampled_parent full_unsampled axum_prometheus anchors_stacked"}
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: valgrind)"; exit 1; }

# shellcheck source=scripts/overhead-bin.sh
. scripts/overhead-bin.sh

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -A ir
for case in $CASES; do
  OVERHEAD_LOOP="$case:$N" valgrind --tool=callgrind --callgrind-out-file="$out/$case" \
    --toggle-collect='overhead::imp::profile_loop' "$bin" >/dev/null 2>"$out/$case.log" \
    || { cat "$out/$case.log"; exit 1; }
  total=$(sed -n 's/^summary: //p' "$out/$case")
  ir[$case]=$((total / N))
done

baseline_of() {
  case "$1" in
    bare_browser|full_browser) echo bare_browser ;;
    bare_browser_parent|full_browser_unsampled) echo bare_browser_parent ;;
    bare_parent|full_sampled_parent|full_unsampled|*_parent) echo bare_parent ;;
    bare_10|full_10) echo bare_10 ;;
    bare_10k|full_10k) echo bare_10k ;;
    bare_10k_spread|full_10k_spread) echo bare_10k_spread ;;
    *) echo bare ;;
  esac
}
printf '%-28s %12s %12s\n' case Ir/request extra
for case in $CASES; do
  base=$(baseline_of "$case")
  if [ -n "${ir[$base]:-}" ] && [ "$case" != "$base" ]; then
    printf '%-28s %12d %+12d\n' "$case" "${ir[$case]}" $((ir[$case] - ir[$base]))
  else
    printf '%-28s %12d %12s\n' "$case" "${ir[$case]}" -
  fi
done
