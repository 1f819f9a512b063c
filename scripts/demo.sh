#!/usr/bin/env bash
# The end-to-end demo of what cocoon does today (run by `make demo`):
# measure a real Debian nginx image the same way over three transports,
# push it to a real loopback registry, and show that one changed byte
# changes the workload digest. Usage: scripts/demo.sh [COCOON_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
cocoon=$(realpath "${1:-target/release/cocoon}")
fixtures=$(realpath "${COCOON_FIXTURES:-target/fixtures}")
work=$(mktemp -d)
registry_pid=""
cleanup() { [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Workload digest of the Debian nginx image (OCI layout, gzip layers)"
oci_digest=$("$cocoon" measure "oci:$fixtures/debian:nginx")
echo "$oci_digest"

step "The same image as a docker-archive made by skopeo"
archive_digest=$("$cocoon" measure "docker-archive:$fixtures/debian-nginx.tar")
echo "$archive_digest"

step "Start Debian's docker-registry on loopback and push the image with cocoon"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
log: {level: error}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
"$cocoon" copy --plain-http "oci:$fixtures/debian:nginx" "docker://127.0.0.1:$port/demo/nginx:1"

step "Pull it back over the distribution API and measure it"
registry_digest=$("$cocoon" measure --plain-http "docker://127.0.0.1:$port/demo/nginx:1")
echo "$registry_digest"

step "A copy with one changed byte in one file measures differently"
"$cocoon" measure "oci:$fixtures/busybox:latest"
"$cocoon" measure "oci:$fixtures/busybox:changed-byte"

if [ "$oci_digest" = "$archive_digest" ] && [ "$oci_digest" = "$registry_digest" ]; then
  step "OK: one workload digest across transports: $oci_digest"
else
  echo "demo: digests differ across transports" >&2
  exit 1
fi
