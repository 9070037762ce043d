#!/usr/bin/env bash
# Instructions per request that exemplars add (issue 15), counted by
# callgrind: each case of benches/overhead.rs runs with exemplars on and
# with them off (OVERHEAD_EXEMPLARS=off, the same binary), and the self
# cost of the code they touch is compared: the metrics part's end
# (`MetricsPending::finish`, where the slot write is inlined) and the std
# time functions it calls (the exemplar's timestamp). Whole-program totals
# (scripts/bench-instructions.sh) move by some ±60 Ir between runs of one
# binary (allocator state, random ids); these sums do not.
#
#   scripts/bench-exemplars.sh                       # the three full-stack cases
#   CASES=full_sampled N=20000 scripts/bench-exemplars.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-5000}
CASES=${CASES:-"full_sampled full_sampled_parent full_unsampled"}
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: valgrind)"; exit 1; }

# Line tables only: the same code, with inlined frames named.
export CARGO_PROFILE_BENCH_DEBUG=line-tables-only
# shellcheck source=scripts/overhead-bin.sh
. scripts/overhead-bin.sh

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # mode case
  local env=()
  [ "$1" = off ] && env=(OVERHEAD_EXEMPLARS=off)
  env "${env[@]}" OVERHEAD_LOOP="$2:$N" valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2" \
    --toggle-collect='overhead::imp::profile_loop' "$bin" >/dev/null 2>"$out/$1-$2.log" \
    || { cat "$out/$1-$2.log"; exit 1; }
}
# The self cost, per request, of the frames exemplars touch.
touched() {
  callgrind_annotate --show-percs=no "$1" 2>/dev/null | awk -v n="$N" '
    /=>/ { next }
    /MetricsPending::finish|Instant>::duration_since|Timespec>::sub_timespec/ {
      gsub(",", "", $1); if ($1 ~ /^[0-9]+$/) sum += $1
    }
    END { printf "%d", sum / n }'
}
total() { echo $(( $(sed -n 's/^summary: //p' "$1") / N )); }

printf '%-22s %10s %10s %10s %14s %14s\n' case on off extra "total on" "total off"
for case in $CASES; do
  run on "$case"; run off "$case"
  on=$(touched "$out/on-$case"); off=$(touched "$out/off-$case")
  printf '%-22s %10d %10d %+10d %14d %14d\n' "$case" "$on" "$off" $((on - off)) \
    "$(total "$out/on-$case")" "$(total "$out/off-$case")"
done
