#!/usr/bin/env bash
# The end-to-end demo (run by `make demo`): measure a real Debian nginx image
# the same way over three transports and a loopback registry; seal it with a
# shield port; start a KBS; run the sealed image under runc with the sim TEE,
# so that the key is released only after attestation; verify the endpoint's
# evidence over attested TLS and fetch a page with curl and the KBS CA; and
# show a tampered image and an unknown workload being refused.
# Usage: scripts/demo.sh [COCOON_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/sim-kbs.sh
cocoon=$(realpath "${1:-target/release/cocoon}")
fixtures=$(realpath "${COCOON_FIXTURES:-target/fixtures}")
work=$(mktemp -d)
registry_pid="" kbs_pid="" run_pid=""
cleanup() {
  # (wait reports a killed process as 143: not a failure of the demo)
  for pid in $run_pid $kbs_pid $registry_pid; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Workload digest of the Debian nginx image (OCI layout, gzip layers)"
oci_digest=$("$cocoon" measure "oci:$fixtures/debian:nginx")
echo "$oci_digest"

step "The same image as a docker-archive made by skopeo"
archive_digest=$("$cocoon" measure "docker-archive:$fixtures/debian-nginx.tar")
echo "$archive_digest"

step "Start Debian's docker-registry on loopback and push the image with cocoon"
port=$(free_port)
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

if [ "$oci_digest" != "$archive_digest" ] || [ "$oci_digest" != "$registry_digest" ]; then
  echo "demo: digests differ across transports" >&2
  exit 1
fi
echo "one workload digest across transports: $oci_digest"

step "Seal nginx: encrypt everything, sign with the owner key, attested TLS on 8443 in front of port 80"
"$cocoon" keygen --out "$work/owner.key" >/dev/null
"$cocoon" convert "oci:$fixtures/debian:nginx" "oci:$work/sealed:nginx" --sign "$work/owner.key" \
  --encrypt-all --shield 8443:80 --image-key-out "$work/image.key" --reference-values "$work/rv.json"
"$cocoon" verify-image "oci:$work/sealed:nginx" --pubkey "$work/owner.key.pub"

step "Start the KBS (sim TEE allowed for this demo) and register the workload"
start_sim_kbs "$cocoon" "$work"
register_workload "$cocoon" "$work/rv.json" "$work/image.key"

step "Run the sealed image under runc: attest, get the key, serve the sealed tree, start nginx behind the shield"
"$cocoon" run "oci:$work/sealed:nginx" --kbs "$kbs" --sim "$work/sim" --name cocoon-demo \
  --state-dir "$work/state" >"$work/run.log" 2>&1 &
run_pid=$!
curl -fs "$kbs/kbs/v0/ca.pem" >"$work/kbs-ca.pem"
page=""
for _ in $(seq 150); do page=$(curl -fs --cacert "$work/kbs-ca.pem" https://localhost:8443/ 2>/dev/null) && break; sleep 0.2; done
if ! grep -q "Welcome to nginx" <<<"$page"; then
  echo "demo: the sealed nginx did not answer; its log:" >&2
  cat "$work/run.log" >&2
  exit 1
fi
echo "curl --cacert kbs-ca.pem https://localhost:8443/ -> $(grep -o '<title>[^<]*</title>' <<<"$page")"
if curl -fs --max-time 2 http://127.0.0.1:80/ >/dev/null 2>&1; then
  echo "demo: nginx's plaintext port 80 is reachable from the host" >&2
  exit 1
fi
echo "http://127.0.0.1:80/ -> not reachable (nginx's port exists only in the app's network namespace)"

step "Verify the endpoint before sending anything: evidence in the certificate, bound to our nonce"
"$cocoon" verify-endpoint 127.0.0.1:8443 --reference-values "$work/rv.json" --sim-root "$work/sim/root.pem"
jq '.workload_digest = "sha256:'"$(printf '0%.0s' $(seq 64))"'"' "$work/rv.json" >"$work/other-rv.json"
if "$cocoon" verify-endpoint 127.0.0.1:8443 --reference-values "$work/other-rv.json" --sim-root "$work/sim/root.pem" 2>"$work/ve.log"; then
  echo "demo: an endpoint running another workload was accepted" >&2
  exit 1
fi
echo "expecting another workload: refused: $(tail -1 "$work/ve.log")"
kill "$run_pid"; wait "$run_pid" 2>/dev/null || true; run_pid=""

step "A tampered copy is refused: one byte of the sealed layer changed"
cp -a "$work/sealed" "$work/tampered"
blob=$(ls -S "$work/tampered/blobs/sha256" | head -1)
printf '\x42' | dd of="$work/tampered/blobs/sha256/$blob" bs=1 seek=4096 conv=notrunc status=none
if "$cocoon" run "oci:$work/tampered:nginx" --kbs "$kbs" --sim "$work/sim" --state-dir "$work/state" 2>"$work/tampered.log"; then
  echo "demo: the tampered image ran" >&2
  exit 1
fi
echo "refused: $(tail -1 "$work/tampered.log")"

step "A workload the KBS does not know gets no key"
"$cocoon" convert "oci:$fixtures/busybox:latest" "oci:$work/other:bb" --sign "$work/owner.key" \
  --encrypt-all --image-key-out "$work/other.key" -q
if "$cocoon" run "oci:$work/other:bb" --kbs "$kbs" --sim "$work/sim" --state-dir "$work/state" --kbs-retry 1 >"$work/other.log" 2>&1; then
  echo "demo: an unregistered workload ran" >&2
  exit 1
fi
echo "refused: $(grep -m1 'cocoon-launcher: error' "$work/other.log" || tail -1 "$work/other.log")"

step "OK: sealed nginx served over attested TLS only after attestation; tampering and unknown workloads refused"
