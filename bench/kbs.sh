#!/usr/bin/env bash
# KBS load (issue 5): CONCURRENCY clients each doing auth -> attest (sim
# evidence) -> resource -> JWE decrypt in a loop for SECONDS against a real
# KBS process on 127.0.0.1, after a same-run GET /health baseline with the
# same clients and connections. Prints a Markdown table (flows/s, p50/p99,
# errors), the ratio flows/s : health/s, and the CPU time per flow of the
# server and of the client (from /proc), which says what the machine would
# do if nothing else were running on it.
#
#   bench/kbs.sh [CONCURRENCY] [SECONDS] [MAX_FLOWS] [CLIENT_THREADS]
#
# Defaults 64 clients, 10 s, at most 1,000,000 flows per phase, 1 client
# thread. The server is `$COCOON kbs serve` when COCOON names a cocoon binary,
# else the kbs example's `serve` (the same cocoon_kbs::server::run). Builds in
# release mode; set CARGO_TARGET_DIR to share a target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
conc="${1:-64}"
secs="${2:-10}"
max="${3:-1000000}"
threads="${4:-1}"
cargo build --release --quiet -p cocoon-kbs --example kbs_load
load="${CARGO_TARGET_DIR:-target}/release/examples/kbs_load"
work="$(mktemp -d)"
port=$(( 20000 + RANDOM % 20000 ))
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$load" setup "$work" "$port"
if [ -n "${COCOON:-}" ]; then
  server=("$COCOON" kbs serve --config "$work/kbs.toml"); how="$COCOON kbs serve"
else
  server=("$load" serve "$work/kbs.toml"); how="cocoon_kbs::server::run (examples/kbs_load serve)"
fi
"${server[@]}" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "# cocoon KBS load, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# server: $how on 127.0.0.1:$port (log level info to a file); client: $conc connections, ${secs}s per phase"
echo
KBS_SERVER_PID="$server_pid" "$load" run "http://127.0.0.1:$port" "$work/sim" "$work/admin.pem" "$conc" "$secs" "$max" "$threads"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo
echo "server exited cleanly after SIGTERM; log lines: $(wc -l <"$work/server.log")"
