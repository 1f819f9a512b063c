#!/usr/bin/env bash
# Sealed FUSE reads vs the plain disk vs gocryptfs, in one run, on one file.
#
#   bash bench/fs.sh [SIZE_MIB]     (root; needs /dev/fuse, fio, gocryptfs, fuse3)
#
# Sequential: cold (caches dropped) `dd bs=1M` of the whole file, MB/s.
# Random:     cold 4 KiB random reads with fio (psync, buffered, readahead
#             off by fio's fadvise), IOPS, 15 s or the whole file.
# The sealed file lives in an image sealed with every path encrypted
# (AES-256-GCM, 128 KiB chunks, zstd where it helps: random data does not).
set -euo pipefail
SIZE_MIB=${1:-256}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-fs}
command -v fio >/dev/null && command -v gocryptfs >/dev/null && command -v fusermount >/dev/null || {
  echo "needs fio, gocryptfs and fusermount: apt-get install -y fio gocryptfs fuse3" >&2; exit 1; }

cargo build -q --release -p cocoon-fs --example serve --manifest-path "$ROOT/Cargo.toml"
SERVE=$CARGO_TARGET_DIR/release/examples/serve

W=$(mktemp -d /var/tmp/cocoon-fs-bench.XXXXXX)
PIDS=()
cleanup() {
  for m in "$W/sealed" "$W/sealed16" "$W/gocrypt-plain"; do umount -l "$m" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/plain" "$W/sealed" "$W/sealed16" "$W/gocrypt-cipher" "$W/gocrypt-plain"

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$W/plain/file"

# Sealed FUSE: the server reads the file, seals it into an image, mounts it.
exec 3> >("$SERVE" "$W/plain/file" "$W/sealed" > "$W/serve.out" 2>&1)
PIDS+=($!)
for _ in $(seq 300); do grep -q ready "$W/serve.out" 2>/dev/null && break; sleep 0.2; done
grep -q ready "$W/serve.out" || { cat "$W/serve.out"; exit 1; }

# The same, sealed with 16 KiB chunks (less read amplification for small reads).
exec 4> >(COCOON_CHUNK_SIZE=16384 "$SERVE" "$W/plain/file" "$W/sealed16" > "$W/serve16.out" 2>&1)
PIDS+=($!)
for _ in $(seq 300); do grep -q ready "$W/serve16.out" 2>/dev/null && break; sleep 0.2; done
grep -q ready "$W/serve16.out" || { cat "$W/serve16.out"; exit 1; }

# gocryptfs with its defaults (AES-256-GCM, 4 KiB blocks).
echo bench > "$W/pass"
gocryptfs -q -init -passfile "$W/pass" "$W/gocrypt-cipher" >/dev/null
gocryptfs -q -nosyslog -passfile "$W/pass" "$W/gocrypt-cipher" "$W/gocrypt-plain"
cp "$W/plain/file" "$W/gocrypt-plain/file"
sync

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
seq_mbs() {
  cold
  local t0 t1
  t0=$(date +%s.%N); dd if="$1" of=/dev/null bs=1M status=none; t1=$(date +%s.%N)
  echo "$SIZE_MIB $t0 $t1" | awk '{printf "%.0f", $1*1.048576/($3-$2)}'
}
rand_iops() {
  cold
  fio --name=r --filename="$1" --rw=randread --bs=4k --ioengine=psync --direct=0 \
      --size="${SIZE_MIB}M" --runtime=15 --time_based=0 --norandommap \
      --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{print $8}'
}

declare -A SEQ RND FILE=([plain]="$W/plain/file" [sealed]="$W/sealed/data/file" [sealed16]="$W/sealed16/data/file" [gocrypt-plain]="$W/gocrypt-plain/file")
for fsys in plain sealed sealed16 gocrypt-plain; do
  SEQ[$fsys]=$(seq_mbs "${FILE[$fsys]}")
  RND[$fsys]=$(rand_iops "${FILE[$fsys]}")
done

cmp -s "$W/plain/file" "$W/sealed/data/file" || { echo "sealed content differs!" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "-" }'; }
echo
echo "file: $SIZE_MIB MiB random data; kernel $(uname -r); $(nproc) cores"
printf '| %-24s | %14s | %14s |\n' "" "seq read MB/s" "rand 4K IOPS"
printf '| %-24s | %14s | %14s |\n' "----" "----" "----"
printf '| %-24s | %14s | %14s |\n' "plain disk" "${SEQ[plain]}" "${RND[plain]}"
printf '| %-24s | %14s | %14s |\n' "sealed FUSE (cocoon)" "${SEQ[sealed]}" "${RND[sealed]}"
printf '| %-24s | %14s | %14s |\n' "sealed FUSE, 16K chunks" "${SEQ[sealed16]}" "${RND[sealed16]}"
printf '| %-24s | %14s | %14s |\n' "gocryptfs" "${SEQ[gocrypt-plain]}" "${RND[gocrypt-plain]}"
printf '| %-24s | %14s | %14s |\n' "sealed / plain" "$(ratio "${SEQ[sealed]}" "${SEQ[plain]}")" "$(ratio "${RND[sealed]}" "${RND[plain]}")"
printf '| %-24s | %14s | %14s |\n' "sealed / gocryptfs" "$(ratio "${SEQ[sealed]}" "${SEQ[gocrypt-plain]}")" "$(ratio "${RND[sealed]}" "${RND[gocrypt-plain]}")"
printf '| %-24s | %14s | %14s |\n' "sealed16K / gocryptfs" "$(ratio "${SEQ[sealed16]}" "${SEQ[gocrypt-plain]}")" "$(ratio "${RND[sealed16]}" "${RND[gocrypt-plain]}")"
exec 3>&- 4>&-
