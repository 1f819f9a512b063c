#!/usr/bin/env bash
# Sealed FUSE reads vs the plain disk vs gocryptfs, in one run, on one file,
# for several chunk sizes; optionally the cost of each chunk size at convert.
#
#   bash bench/fs.sh [SIZE_MIB] [COCOON_BINARY]   (root; /dev/fuse, fio, gocryptfs, fuse3)
#   BENCH_CHUNKS="16 32 64 128" (KiB)  BENCH_ROUNDS=3
#
# Sequential: cold (caches dropped) `dd bs=1M` of the whole file, MB/s.
# Random:     cold 4 KiB random reads with fio (psync, buffered, readahead
#             off by fio's fadvise), IOPS, 15 s or the whole file.
# "Cold" is: sync, the kernel's drop_caches (page cache of the disk, of the
# FUSE mounts and of gocryptfs's backing file), and every cocoon server's
# own chunk cache emptied (`drop` on its stdin, waited for).
# The sealed file lives in an image sealed with every path encrypted
# (AES-256-GCM, zstd where it helps: random data does not), one server per
# chunk size, each with the default ReadOptions (64 MiB chunk cache,
# prefetch). Every cell is the median of BENCH_ROUNDS rounds; each round
# measures every file system once, in turn.
#
# With COCOON_BINARY: for each chunk size, `cocoon convert --encrypt-all`
# of the Debian nginx fixture (best of 3 wall times) and the sealed size.
set -euo pipefail
SIZE_MIB=${1:-256}
COCOON=${2:-}
CHUNKS=${BENCH_CHUNKS:-16 32 64 128}
ROUNDS=${BENCH_ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-fs}
command -v fio >/dev/null && command -v gocryptfs >/dev/null && command -v fusermount >/dev/null || {
  echo "needs fio, gocryptfs and fusermount: apt-get install -y fio gocryptfs fuse3" >&2; exit 1; }

cargo build -q --release -p cocoon-fs --example serve --manifest-path "$ROOT/Cargo.toml"
SERVE=$CARGO_TARGET_DIR/release/examples/serve

W=$(mktemp -d /var/tmp/cocoon-fs-bench.XXXXXX)
PIDS=()
SEALED=()
for k in $CHUNKS; do SEALED+=("sealed$k"); done
cleanup() {
  for m in "${SEALED[@]}" gocrypt-plain; do umount -l "$W/$m" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/plain" "$W/gocrypt-cipher" "$W/gocrypt-plain"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$W/plain/file"

# Sealed FUSE: each server reads the file, seals it into an image, mounts
# it; its stdin (fd ${FD[name]}) takes `drop` and closing it unmounts.
declare -A FD
serve() { # NAME ENV...
  local name=$1; shift
  mkdir -p "$W/$name" "$W/tmp"
  # TMPDIR: the server's sealed copy lives under $W, so that it goes with
  # $W even when the server is killed rather than left to unmount.
  exec {fd}> >(env TMPDIR="$W/tmp" "$@" "$SERVE" "$W/plain/file" "$W/$name" > "$W/$name.out" 2>&1)
  PIDS+=($!)
  FD[$name]=$fd
  for _ in $(seq 600); do grep -q ready "$W/$name.out" 2>/dev/null && break; sleep 0.2; done
  grep -q ready "$W/$name.out" || { cat "$W/$name.out"; exit 1; }
}
declare -A LABEL
for k in $CHUNKS; do serve "sealed$k" COCOON_CHUNK_SIZE=$((k * 1024)); LABEL[sealed$k]="sealed, $k KiB chunks"; done

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
# CPU time (clock ticks, all threads) of the server behind a file system.
ticks() { # PID (empty: the plain disk, no server)
  [ -n "$1" ] || { echo 0; return; }
  local st; st=$(cat "/proc/$1/stat"); st=${st##*) }
  awk '{print $12 + $13}' <<<"$st"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# seq_mbs FILE PID: "MB/s  server-CPU-µs-per-MiB"
seq_mbs() {
  cold
  local t0 t1 c0 c1
  c0=$(ticks "$2"); t0=$(date +%s.%N)
  dd if="$1" of=/dev/null bs=1M status=none
  t1=$(date +%s.%N); c1=$(ticks "$2")
  echo "$SIZE_MIB $t0 $t1 $c0 $c1 $TICK_US" | awk '{printf "%.0f %.0f\n", $1*1.048576/($3-$2), ($5-$4)*$6/$1}'
}
# rand_iops FILE PID: "IOPS  server-CPU-µs-per-read"
rand_iops() {
  cold
  local c0 c1 out
  c0=$(ticks "$2")
  out=$(fio --name=r --filename="$1" --rw=randread --bs=4k --ioengine=psync --direct=0 \
      --size="${SIZE_MIB}M" --runtime=15 --time_based=0 --norandommap \
      --output-format=terse --terse-version=3 2>/dev/null)
  c1=$(ticks "$2")
  # terse v3: 6 = KiB read, 8 = IOPS
  awk -F';' -v c="$((c1 - c0))" -v us="$TICK_US" '{printf "%s %.1f\n", $8, c*us/($6/4)}' <<<"$out"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

declare -A FILE=([plain]="$W/plain/file" [gocrypt-plain]="$W/gocrypt-plain/file")
declare -A SPID=([plain]="" [gocrypt-plain]="$(pgrep -f "gocryptfs.*$W/gocrypt-cipher" | head -1)")
for i in "${!SEALED[@]}"; do
  FILE[${SEALED[$i]}]="$W/${SEALED[$i]}/data/file"
  SPID[${SEALED[$i]}]=${PIDS[$i]}
done
ALL=(plain "${SEALED[@]}" gocrypt-plain)
for _ in $(seq "$ROUNDS"); do
  for fsys in "${ALL[@]}"; do
    seq_mbs "${FILE[$fsys]}" "${SPID[$fsys]}" >>"$W/seq.$fsys"
    rand_iops "${FILE[$fsys]}" "${SPID[$fsys]}" >>"$W/rnd.$fsys"
  done
done
declare -A SEQ RND SEQC RNDC
for fsys in "${ALL[@]}"; do
  SEQ[$fsys]=$(cut -d' ' -f1 "$W/seq.$fsys" | median)
  RND[$fsys]=$(cut -d' ' -f1 "$W/rnd.$fsys" | median)
  SEQC[$fsys]=$(cut -d' ' -f2 "$W/seq.$fsys" | median)
  RNDC[$fsys]=$(cut -d' ' -f2 "$W/rnd.$fsys" | median)
done

for name in "${SEALED[@]}"; do
  cmp -s "$W/plain/file" "${FILE[$name]}" || { echo "$name content differs!" >&2; exit 1; }
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "-" }'; }
row() { printf '| %-22s | %8s | %8s | %8s | %8s | %10s | %10s |\n' "$@"; }
G=gocrypt-plain
echo
echo "file: $SIZE_MIB MiB random data; kernel $(uname -r); $(nproc) cores; load average before $LOAD0, after $(cut -d' ' -f1-3 /proc/loadavg); medians of $ROUNDS rounds"
echo "server CPU: user + system time of the FUSE server process per MiB read sequentially / per random 4 KiB read"
row "" "seq MB/s" "rand 4K IOPS" "seq / gocryptfs" "rand / gocryptfs" "server CPU µs/MiB seq" "server CPU µs/read rand"
row "----" "----:" "----:" "----:" "----:" "----:" "----:"
row "plain disk" "${SEQ[plain]}" "${RND[plain]}" "$(ratio "${SEQ[plain]}" "${SEQ[$G]}")" "$(ratio "${RND[plain]}" "${RND[$G]}")" "-" "-"
for n in "${SEALED[@]}"; do
  row "${LABEL[$n]}" "${SEQ[$n]}" "${RND[$n]}" "$(ratio "${SEQ[$n]}" "${SEQ[$G]}")" "$(ratio "${RND[$n]}" "${RND[$G]}")" "${SEQC[$n]}" "${RNDC[$n]}"
done
row "gocryptfs" "${SEQ[$G]}" "${RND[$G]}" "1.00x" "1.00x" "${SEQC[$G]}" "${RNDC[$G]}"
for name in "${SEALED[@]}"; do fd=${FD[$name]}; exec {fd}>&-; done

[ -n "$COCOON" ] || exit 0
# --- what each chunk size costs at convert: Debian nginx, everything encrypted.
FIX=$(realpath "${COCOON_FIXTURES:-$ROOT/target/fixtures}")
"$COCOON" keygen --out "$W/owner.key" >/dev/null 2>&1
echo
REF=128; [[ " $CHUNKS " == *" 128 "* ]] || REF=${CHUNKS##* }
echo "| chunk size | cocoon convert s (best of 3) | vs $REF KiB | sealed blob bytes | sealed layers bytes | vs $REF KiB |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
declare -A CT SZ BL
for k in $CHUNKS; do
  best=""
  for _ in 1 2 3; do
    rm -rf "$W/conv"
    t0=$(date +%s.%N)
    "$COCOON" convert -q "oci:$FIX/debian:nginx" "oci:$W/conv:s" --sign "$W/owner.key" \
      --image-key-out "$W/conv.key" --encrypt-all --chunk-size $((k * 1024))
    t=$(echo "$(date +%s.%N) - $t0" | bc -l)
    if [ -z "$best" ] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
    rm -f "$W/conv.key"
  done
  CT[$k]=$best
  SZ[$k]=$(layers_bytes "$W/conv" s)
  BL[$k]=$("$COCOON" inspect --json "oci:$W/conv:s" | jq .sealed_blob_bytes)
done
for k in $CHUNKS; do
  echo "| $k KiB | $(printf %.3f "${CT[$k]}") | $(ratio "${CT[$k]}" "${CT[$REF]}") | ${BL[$k]} | ${SZ[$k]} | $(ratio "${SZ[$k]}" "${SZ[$REF]}") |"
done
