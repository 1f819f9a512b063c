#!/usr/bin/env bash
# Sealed FUSE reads vs the plain disk vs gocryptfs, in one run, on one file.
#
#   bash bench/fs.sh [SIZE_MIB]     (root; needs /dev/fuse, fio, gocryptfs, fuse3)
#
# Sequential: cold (caches dropped) `dd bs=1M` of the whole file, MB/s.
# Random:     cold 4 KiB random reads with fio (psync, buffered, readahead
#             off by fio's fadvise), IOPS, 15 s or the whole file.
# "Cold" is: sync, the kernel's drop_caches (page cache of the disk, of the
# FUSE mounts and of gocryptfs's backing file), and every cocoon server's
# own chunk cache emptied (`drop` on its stdin, waited for).
# The sealed file lives in an image sealed with every path encrypted
# (AES-256-GCM, 128 KiB chunks, zstd where it helps: random data does not).
# Sealed rows: the server as it was before the chunk cache (no cache, no
# prefetch), the default ReadOptions (64 MiB chunk cache),
# a chunk cache as large as the file, and 16 KiB chunks with the default.
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
SEALED=(nocache sealed sealedbig sealed16)
cleanup() {
  for m in "${SEALED[@]}" gocrypt-plain; do umount -l "$W/$m" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/plain" "$W/gocrypt-cipher" "$W/gocrypt-plain"

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$W/plain/file"

# Sealed FUSE: each server reads the file, seals it into an image, mounts
# it; its stdin (fd ${FD[name]}) takes `drop` and closing it unmounts.
declare -A FD
serve() { # NAME ENV...
  local name=$1; shift
  mkdir -p "$W/$name"
  exec {fd}> >(env "$@" "$SERVE" "$W/plain/file" "$W/$name" > "$W/$name.out" 2>&1)
  PIDS+=($!)
  FD[$name]=$fd
  for _ in $(seq 600); do grep -q ready "$W/$name.out" 2>/dev/null && break; sleep 0.2; done
  grep -q ready "$W/$name.out" || { cat "$W/$name.out"; exit 1; }
}
serve nocache COCOON_CHUNK_CACHE_MIB=0 COCOON_PREFETCH_THREADS=0
serve sealed
serve sealedbig COCOON_CHUNK_CACHE_MIB=$((SIZE_MIB + 64))
serve sealed16 COCOON_CHUNK_SIZE=16384

# gocryptfs with its defaults (AES-256-GCM, 4 KiB blocks).
echo bench > "$W/pass"
gocryptfs -q -init -passfile "$W/pass" "$W/gocrypt-cipher" >/dev/null
gocryptfs -q -nosyslog -passfile "$W/pass" "$W/gocrypt-cipher" "$W/gocrypt-plain"
cp "$W/plain/file" "$W/gocrypt-plain/file"
sync

cold() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  local name n
  for name in "${SEALED[@]}"; do
    n=$(grep -c dropped "$W/$name.out" || true)
    echo drop >&"${FD[$name]}"
    until [ "$(grep -c dropped "$W/$name.out" || true)" -gt "$n" ]; do sleep 0.05; done
  done
}
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

declare -A SEQ RND FILE=([plain]="$W/plain/file" [gocrypt-plain]="$W/gocrypt-plain/file")
for name in "${SEALED[@]}"; do FILE[$name]="$W/$name/data/file"; done
for fsys in plain "${SEALED[@]}" gocrypt-plain; do
  SEQ[$fsys]=$(seq_mbs "${FILE[$fsys]}")
  RND[$fsys]=$(rand_iops "${FILE[$fsys]}")
done

for name in "${SEALED[@]}"; do
  cmp -s "$W/plain/file" "${FILE[$name]}" || { echo "$name content differs!" >&2; exit 1; }
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "-" }'; }
row() { printf '| %-34s | %14s | %14s |\n' "$@"; }
echo
echo "file: $SIZE_MIB MiB random data; kernel $(uname -r); $(nproc) cores"
row "" "seq read MB/s" "rand 4K IOPS"
row "----" "----" "----"
row "plain disk" "${SEQ[plain]}" "${RND[plain]}"
row "sealed, before (no cache)" "${SEQ[nocache]}" "${RND[nocache]}"
row "sealed (defaults: 64 MiB cache)" "${SEQ[sealed]}" "${RND[sealed]}"
row "sealed, $((SIZE_MIB + 64)) MiB cache" "${SEQ[sealedbig]}" "${RND[sealedbig]}"
row "sealed, 16K chunks (defaults)" "${SEQ[sealed16]}" "${RND[sealed16]}"
row "gocryptfs" "${SEQ[gocrypt-plain]}" "${RND[gocrypt-plain]}"
row "sealed / plain" "$(ratio "${SEQ[sealed]}" "${SEQ[plain]}")" "$(ratio "${RND[sealed]}" "${RND[plain]}")"
row "sealed / gocryptfs" "$(ratio "${SEQ[sealed]}" "${SEQ[gocrypt-plain]}")" "$(ratio "${RND[sealed]}" "${RND[gocrypt-plain]}")"
row "sealed big cache / gocryptfs" "$(ratio "${SEQ[sealedbig]}" "${SEQ[gocrypt-plain]}")" "$(ratio "${RND[sealedbig]}" "${RND[gocrypt-plain]}")"
row "sealed16K / gocryptfs" "$(ratio "${SEQ[sealed16]}" "${SEQ[gocrypt-plain]}")" "$(ratio "${RND[sealed16]}" "${RND[gocrypt-plain]}")"
for name in "${SEALED[@]}"; do fd=${FD[$name]}; exec {fd}>&-; done
