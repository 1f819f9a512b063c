#!/usr/bin/env bash
# cocoon benchmark harness: every figure is compared with a baseline measured
# in the same run on the same machine. Usage: bench/run.sh [COCOON_BINARY]
# Prints a Markdown table; BENCHMARKS.md records results with this command.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
cocoon=${1:-target/release/cocoon}
fixtures=${COCOON_FIXTURES:-target/fixtures}
runs=${BENCH_RUNS:-5}

# best_of CMD...: the fastest wall time of $runs runs, in seconds.
best_of() {
  local best="" t0 t1 t
  for _ in $(seq "$runs"); do
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    t=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$best" ] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
  done
  printf '%.3f' "$best"
}

mbps() { echo "scale=0; $1 / 1000000 / $2" | bc -l; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

command -v bc >/dev/null || { echo "bench: installing bc" >&2; apt-get install -y -qq bc >/dev/null; }

echo "# cocoon bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, best of $runs runs"
echo
echo "## measure: workload digest of the Debian nginx image"
echo
archive="$fixtures/debian-nginx.tar"
bytes=$(stat -c %s "$archive")
base=$(best_of sha256sum "$archive")
oci=$(best_of "$cocoon" measure "oci:$fixtures/debian:nginx")
arc=$(best_of "$cocoon" measure "docker-archive:$archive")
echo "Input: $((bytes / 1000000)) MB of uncompressed layer tars (the docker-archive); the OCI copy has gzip layers."
echo
echo "| command | seconds | MB/s of uncompressed tar | speed vs sha256sum |"
echo "| --- | ---: | ---: | ---: |"
echo "| sha256sum debian-nginx.tar (baseline) | $base | $(mbps "$bytes" "$base") | 1.00x |"
echo "| cocoon measure oci:debian:nginx (gzip layers) | $oci | $(mbps "$bytes" "$oci") | $(ratio "$base" "$oci")x |"
echo "| cocoon measure docker-archive:debian-nginx.tar | $arc | $(mbps "$bytes" "$arc") | $(ratio "$base" "$arc")x |"

# convert: sealing time and size against ocicrypt encryption by skopeo.
echo
echo "## convert: seal the Debian images (encrypt everything)"
echo
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null
openssl rsa -in "$work/rsa.pem" -pubout -out "$work/rsa.pub.pem" 2>/dev/null
"$cocoon" keygen --out "$work/owner.key" >/dev/null 2>&1
convert_once() { rm -rf "$work/out" "$work/img.key"; "$cocoon" convert -q "oci:$fixtures/debian:$1" "oci:$work/out:s" --sign "$work/owner.key" --image-key-out "$work/img.key" --encrypt-all; }
skopeo_once() { rm -rf "$work/enc"; skopeo copy -q --encryption-key "jwe:$work/rsa.pub.pem" "oci:$fixtures/debian:$1" "oci:$work/enc:$1"; }
unpacked_bytes() { rm -rf "$work/tree"; "$cocoon" unpack "oci:$fixtures/debian:$1" "$work/tree"; find "$work/tree" -type f -print0 | du -cb --files0-from=- | tail -1 | cut -f1; }
echo "| image | cocoon convert s | skopeo --encryption-key s | speed vs skopeo | sha256sum of content s | convert / sha256sum | source layers MB | sealed layers MB | size ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for image in nginx python; do
  content=$(unpacked_bytes "$image")
  sha=$(best_of sh -c "find '$work/tree' -type f -print0 | xargs -0 cat | sha256sum")
  conv=$(best_of convert_once "$image")
  sko=$(best_of skopeo_once "$image")
  src=$(layers_bytes "$fixtures/debian" "$image")
  convert_once "$image"
  sealed=$(layers_bytes "$work/out" s)
  echo "| debian:$image ($((content / 1000000)) MB of files) | $conv | $sko | $(ratio "$sko" "$conv")x | $sha | $(ratio "$conv" "$sha")x | $((src / 1000000)) | $((sealed / 1000000)) | $(ratio "$sealed" "$src")x |"
done
