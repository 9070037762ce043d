# Sourced by scripts/bench-instructions.sh and scripts/bench-exemplars.sh:
# builds the overhead bench (with the cargo profile the caller exported)
# and sets `bin` to its executable.
cargo bench --bench overhead --no-run --quiet 2>/dev/null
bin=$(cargo bench --bench overhead --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*overhead[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "bench binary not found"; exit 1; }
