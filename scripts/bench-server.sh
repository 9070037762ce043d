# Sourced by scripts/bench-load.sh and scripts/profile-load.sh: builds the
# release bench_server, and starts and stops one server at a time on
# 127.0.0.1:$PORT, its output in $work/server.out and $work/server.err.
# Sets `server`, `work` and `server_pid`, and an EXIT trap that stops the
# server and removes $work. SERVER=path runs that bench_server binary
# instead of building one (to compare two commits: build each, copy it).

if [ -n "${SERVER:-}" ]; then
  server=$SERVER
else
  echo "== build (release)"
  cargo build --release --example bench_server --features full
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  server="${target_dir:-target}/release/examples/bench_server"
fi

work=$(mktemp -d)
server_pid=
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts the server in MODE $1 and waits until it accepts connections.
start_server() {
  MODE=$1 PORT=$PORT "$server" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench_server MODE=$1 did not start:" >&2
  cat "$work/server.err" >&2
  exit 1
}
