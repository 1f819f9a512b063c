#!/usr/bin/env bash
# Apps under `cocoon run` against the ORIGINAL image under plain runc, same
# run, same machine, same binaries (issue 6):
#
#   original: the Debian image unpacked by cocoon and run by `runc run` on the
#             host network (no cocoon anywhere: the app reads its files from
#             the disk);
#   sealed:   the same image `cocoon convert --encrypt-all` (not shielded, so
#             the app's own port is on the host too) run by `cocoon run -d`
#             under the sim TEE: launcher as PID 1, KBS attestation, every
#             file through the verifying FUSE server;
#   memory:   the same sealed image run by `cocoon run -d --fs memory`: the
#             launcher decrypts the whole tree at start into a noswap tmpfs
#             and the app runs on it (no FUSE on the request path).
#
# Both images are moved to ports 18080 (nginx's default site) and 16379
# (redis's command line) the same way (BENCH_WEB_PORT, BENCH_REDIS_PORT), so
# that the bench never holds 80/6379, which other tests check are free.
# The two never run at the same time (they use the same port): each round
# starts one, measures it, removes it, then the other (the order alternates
# between rounds), and `ss -ltnp` must show the port free before a start and
# held only by processes of the container just started.
#
#   redis:  redis-benchmark -q -t set, then -t get, -n N -c C (requests/s)
#   nginx:  wrk -t2 -cCONNS -dSECS on the default page (615 B) and a 1 MiB
#           file added with `umoci insert`                    (requests/s, MB/s)
#   start:  from the start of `runc run -d` / `cocoon run -d` to the first
#           successful `GET /` (HTTP 200) / `PING` (+PONG), polled every 2 ms
#           by one process. For the sealed runs the time `cocoon run` wrote
#           the bundle's config.json and the KBS's own request log (JSON,
#           debug: per-request time) split it into: the bundle (cocoon run
#           reading the image and writing the launcher and blob), runc and
#           the launcher up to its first KBS request (signature and digest
#           checks, sim evidence), the KBS round trip (first request in to
#           last response out: auth, attest, image key), and after it
#           (unlock the index, mount, chroot, exec, the app starting from
#           FUSE).
#
# Both containers' output goes to a file opened the same way (truncated,
# no O_APPEND: Debian's nginx logs every request to stdout, and O_APPEND
# alone made the original ~30 % slower).
#
# Beside each rate: the CPU time the container's processes (the app; for
# sealed runs also the launcher and its FUSE server) spent per request
# (utime + stime from /proc over the measurement), which other load on a
# shared machine disturbs much less than the rate.
#
# Figures are medians over the rounds.
#
#   bench/app.sh [COCOON_BINARY]     (root; fixtures; `make release`)
#   BENCH_ROUNDS=3 BENCH_SECS=10 BENCH_CONNS=32 BENCH_REDIS_N=200000 BENCH_REDIS_CONNS=50
#   BENCH_APPS="web redis" (either or both)
#   BENCH_PERF=DIR: `perf record -a -g` during every throughput measurement
#   (DIR/KIND-WORKLOAD-ROUND.data; profiling slows both sides alike).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/sim-kbs.sh
cocoon=$(realpath "${1:-target/release/cocoon}")
fixtures=$(realpath "${COCOON_FIXTURES:-target/fixtures}")
rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECS:-10}
conns=${BENCH_CONNS:-32}
redis_n=${BENCH_REDIS_N:-200000}
redis_c=${BENCH_REDIS_CONNS:-50}
apps=${BENCH_APPS:-web redis}
# Not 80 and 6379: other tests on a shared machine check that those are free.
web_port=${BENCH_WEB_PORT:-18080}
redis_port=${BENCH_REDIS_PORT:-16379}
for t in runc umoci wrk redis-benchmark ss jq python3 bc; do
  command -v "$t" >/dev/null || { echo "bench: needs $t" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/cocoon-app-bench.XXXXXX)
kbs_pid=""
running=""   # "KIND NAME" while a container exists (KIND: base, sealed, memory)
stop() {
  [ -n "$running" ] || return 0
  local kind=${running%% *} name=${running#* } root
  root=$([ "$kind" = base ] && echo "$work/runc" || echo "$work/state/runc")
  runc --root "$root" kill "$name" KILL 2>/dev/null || true
  for _ in $(seq 100); do
    runc --root "$root" state "$name" 2>/dev/null | grep -q '"status": "stopped"' && break
    sleep 0.05
  done
  runc --root "$root" delete --force "$name" 2>/dev/null || true
  if [ "$kind" != base ]; then rm -rf "${work:?}/state/$name"; fi
  running=""
}
cleanup() {
  stop
  if [ -n "$kbs_pid" ]; then kill "$kbs_pid" 2>/dev/null || true; wait "$kbs_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2}'; }

# --- images -------------------------------------------------------------------
cp -a "$fixtures/debian" "$work/img"
head -c $((1 << 20)) /dev/urandom >"$work/1m.bin"
umoci insert --image "$work/img:nginx" --tag web "$work/1m.bin" /var/www/html/1m.bin >/dev/null
# Both images move to the bench's ports the same way: nginx's default site,
# redis's command line.
"$cocoon" unpack "oci:$work/img:web" "$work/site" >/dev/null
sed "s/listen 80 /listen $web_port /; s/listen \[::\]:80 /listen [::]:$web_port /" \
  "$work/site/etc/nginx/sites-available/default" >"$work/default-site"
grep -q "listen $web_port default_server" "$work/default-site"
# A layer made by GNU tar: Debian's umoci 0.4.7 `insert` leaves a file whose
# size is not a multiple of 512 unpadded (a truncated tar, refused by cocoon).
mkdir -p "$work/layer/etc/nginx/sites-enabled"
cp "$work/default-site" "$work/layer/etc/nginx/sites-enabled/default"
tar -C "$work/layer" --owner=0 --group=0 -cf "$work/site.tar" etc/nginx/sites-enabled/default
umoci raw add-layer --image "$work/img:web" "$work/site.tar" >/dev/null
rm -rf "$work/site" "$work/layer"
umoci config --image "$work/img:redis" --tag redis-bench --config.cmd redis-server \
  --config.cmd --protected-mode --config.cmd no --config.cmd --port --config.cmd "$redis_port" >/dev/null
"$cocoon" keygen --out "$work/owner.key" >/dev/null
for app in web redis; do
  src=$([ $app = web ] && echo web || echo redis-bench)
  "$cocoon" convert "oci:$work/img:$src" "oci:$work/sealed:$app" --sign "$work/owner.key" -q \
    --encrypt-all --image-key-out "$work/$app.key" --reference-values "$work/$app-rv.json"
done

# The originals: unpacked once, run by runc with the host's network and the
# capabilities `cocoon run` gives the app (docs/run.md), from a writable root.
caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_SETUID","CAP_SETGID","CAP_KILL","CAP_NET_BIND_SERVICE"]'
base_bundle() { # APP SRC_TAG ARGS_JSON
  mkdir -p "$work/base-$1"
  "$cocoon" unpack "oci:$work/img:$2" "$work/base-$1/rootfs" >/dev/null
  (cd "$work/base-$1" && runc spec)
  jq --argjson caps "$caps" --argjson args "$3" '.process.terminal = false | .process.args = $args
    | .root.readonly = false
    | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps}
    | .linux.namespaces |= map(select(.type != "network"))' \
    "$work/base-$1/config.json" >"$work/base-$1/config.json.new"
  mv "$work/base-$1/config.json.new" "$work/base-$1/config.json"
}
image_argv() { # TAG: the image's entrypoint + cmd as a JSON array
  python3 - "$work/img" "$1" <<'PY'
import json, os, sys
d, tag = sys.argv[1], sys.argv[2]
blob = lambda dg: json.load(open(os.path.join(d, "blobs/sha256", dg[7:])))
idx = json.load(open(os.path.join(d, "index.json")))
m = blob(next(x for x in idx["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)["digest"])
c = blob(m["config"]["digest"]).get("config", {})
print(json.dumps((c.get("Entrypoint") or []) + (c.get("Cmd") or [])))
PY
}
base_bundle web web "$(image_argv web)"
base_bundle redis redis-bench "$(image_argv redis-bench)"

# --- KBS (sim allowed), JSON request log with per-request times -----------------
start_sim_kbs "$cocoon" "$work" 'rate_limit_per_sec = 0' '[log]
level = "debug"
format = "json"'
for app in web redis; do
  "$cocoon" kbs reference-values add "$work/$app-rv.json" >/dev/null
  "$cocoon" kbs resource put "$(jq -r '.resources[0]' "$work/$app-rv.json")" "$work/$app.key" >/dev/null
done

# --- start, check, stop -----------------------------------------------------------
# probe PROTO PORT LOG CMD...: runs CMD (which returns once the container is
# started detached), polls PORT until the app answers; prints "T0 T1" (epoch s).
cat >"$work/probe.py" <<'PY'
import socket, subprocess, sys, time
proto, port, log, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def answers():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if proto == "http":
                s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                return s.recv(16).startswith(b"HTTP/1.1 200")
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
with open(log, "wb") as out:  # as `cocoon run -d` opens its log (no O_APPEND)
    t0 = time.time()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    while not answers():
        if time.time() - t0 > 120 or (p.poll() not in (None, 0)):
            sys.exit(f"bench: {cmd[0]} never answered on {port} (see {log})")
        time.sleep(0.002)
    t1 = time.time()
    if p.wait() != 0:
        sys.exit(f"bench: {cmd[0]} failed (see {log})")
print(f"{t0:.6f} {t1:.6f}")
PY
port_free() {
  local holders
  holders=$(ss -ltnpH "sport = :$1")
  [ -z "$holders" ] || { echo "bench: port $1 is taken: $holders" >&2; exit 1; }
}
# Every process listening on PORT must be in the PID namespace of INIT_PID.
check_listener() { # PORT INIT_PID
  local ns pids p
  ns=$(readlink "/proc/$2/ns/pid")
  pids=$(ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
  [ -n "$pids" ] || { echo "bench: nothing listens on $1" >&2; exit 1; }
  for p in $pids; do
    [ "$(readlink "/proc/$p/ns/pid")" = "$ns" ] || { echo "bench: pid $p on port $1 is not the container's" >&2; exit 1; }
  done
}
# start KIND APP: starts the container, prints "T0 T1". Runs in this shell
# (not in a subshell): it records what is running, for `stop`.
start() {
  local kind=$1 app=$2 proto port name times init
  proto=$([ "$app" = web ] && echo http || echo redis)
  port=$([ "$app" = web ] && echo "$web_port" || echo "$redis_port")
  name="bench-$kind-$app"
  port_free "$port"
  if [ "$kind" = base ]; then
    times=$(python3 "$work/probe.py" "$proto" "$port" "$work/$name.log" \
      runc --root "$work/runc" run -d --bundle "$work/base-$app" "$name")
    init=$(runc --root "$work/runc" state "$name" | jq .pid)
  else
    times=$(python3 "$work/probe.py" "$proto" "$port" "$work/$name.log" \
      "$cocoon" run "oci:$work/sealed:$app" --kbs "$kbs" --sim "$work/sim" -d --name "$name" \
      --state-dir "$work/state" --fs "$([ "$kind" = memory ] && echo memory || echo fuse)")
    init=$(runc --root "$work/state/runc" state "$name" | jq .pid)
  fi
  running="$kind $name"
  init_pid=$init
  check_listener "$port" "$init"
  echo "$times"
}
finish() { # APP
  stop
  local port
  port=$([ "$1" = web ] && echo "$web_port" || echo "$redis_port")
  for _ in $(seq 100); do [ -z "$(ss -ltnH "sport = :$port")" ] && return 0; sleep 0.05; done
  echo "bench: port $port still taken after stopping" >&2; exit 1
}
# KBS requests logged after T0: "first_in last_out" (epoch s).
kbs_window() {
  python3 - "$work/kbs.log" "$1" <<'PY'
import json, sys
from datetime import datetime
t0 = float(sys.argv[2]); spans = []
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    f = e.get("fields", {})
    if f.get("message") != "request" or not str(f.get("route", "")).startswith("/kbs/v0/"): continue
    end = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
    if end < t0: continue
    spans.append((end - f["micros"] / 1e6, end))
if not spans: sys.exit("bench: no KBS requests in the log")
print(f"{min(s for s, _ in spans):.6f} {max(e for _, e in spans):.6f}")
PY
}

# --- measurements -------------------------------------------------------------------
perf_dir=${BENCH_PERF:-}
[ -z "$perf_dir" ] || mkdir -p "$perf_dir"
profiled() { # NAME CMD...: CMD, under `perf record -a -g` when BENCH_PERF is set
  local name=$1 pp rc=0; shift
  if [ -z "$perf_dir" ]; then "$@"; return; fi
  perf record -q -a -g -o "$perf_dir/$name.data" -- sleep 3600 2>/dev/null &
  pp=$!
  sleep 0.5
  "$@" || rc=$?
  kill -INT "$pp"; wait "$pp" 2>/dev/null || true
  return $rc
}
# CPU time (clock ticks) of every process in the PID namespace of $init_pid:
# the app, and for sealed runs also the launcher and its FUSE server.
cpu_ticks() {
  local ns t=0 p st
  ns=$(readlink "/proc/$init_pid/ns/pid")
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
    st=$(cat "$p/stat" 2>/dev/null) || continue
    st=${st##*) }                       # fields from 3 on (the name may hold spaces)
    t=$((t + $(awk '{print $12 + $13}' <<<"$st")))
  done
  echo "$t"
}
tick_us=$((1000000 / $(getconf CLK_TCK)))
# measure KIND WORKLOAD ROUND: one load run; appends its rate (requests/s,
# or MB/s for the 1 MiB file) and the container's CPU µs per request.
measure() {
  local kind=$1 w=$2 c0 c1 out rate n
  c0=$(cpu_ticks)
  case $w in
    page | 1m)
      out=$(profiled "$kind-$w-$3" wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$web_port/$([ "$w" = 1m ] && echo 1m.bin)")
      if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "bench: wrk errors: $out" >&2; exit 1; fi
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      if [ "$w" = page ]; then
        rate=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      else
        rate=$(awk '/^Transfer\/sec/ {v=$2; if (v ~ /GB$/) {sub(/GB/,"",v); v*=1024} else if (v ~ /KB$/) {sub(/KB/,"",v); v/=1024} else {sub(/MB/,"",v)}; print v}' <<<"$out")
      fi
      ;;
    set | get)
      out=$(profiled "$kind-$w-$3" redis-benchmark -h 127.0.0.1 -p "$redis_port" -q -t "$w" -n "$redis_n" -c "$redis_c" | tr '\r' '\n')
      rate=$(awk -F'[: ]+' '/^(SET|GET)/ {print $2}' <<<"$out" | tail -1)
      n=$redis_n
      ;;
  esac
  c1=$(cpu_ticks)
  [ -n "$rate" ] && [ -n "$n" ] || { echo "bench: no figures from $w: $out" >&2; exit 1; }
  echo "$rate" >>"$work/r.$kind.$w"
  echo "($c1 - $c0) * $tick_us / $n" | bc -l >>"$work/r.$kind.$w.cpu"
}
one() { # KIND APP ROUND
  local kind=$1 app=$2 t0 t1 k0 k1 x b
  start "$kind" "$app" >"$work/times"
  read -r t0 t1 <"$work/times"
  echo "$t1 - $t0" | bc -l >>"$work/r.$kind.$app.start"
  if [ "$kind" != base ]; then
    x=$(kbs_window "$t0")
    read -r k0 k1 <<<"$x"
    # config.json is the last file `cocoon run` writes before starting runc.
    b=$(stat -c %.9Y "$work/state/bench-$kind-$app/bundle/config.json")
    echo "$b - $t0" | bc -l >>"$work/r.$kind.$app.bundle"
    echo "$k0 - $b" | bc -l >>"$work/r.$kind.$app.prekbs"
    echo "$k1 - $k0" | bc -l >>"$work/r.$kind.$app.kbs"
    echo "$t1 - $k1" | bc -l >>"$work/r.$kind.$app.postkbs"
  fi
  if [ "$app" = web ]; then
    cmp -s <(curl -fs "http://127.0.0.1:$web_port/1m.bin") "$work/1m.bin" || { echo "bench: $kind nginx serves a wrong 1m.bin" >&2; exit 1; }
    measure "$kind" page "$3"
    measure "$kind" 1m "$3"
  else
    [ "$(redis-cli -p "$redis_port" SET bench-check ok)" = OK ] || { echo "bench: redis does not answer SET" >&2; exit 1; }
    measure "$kind" set "$3"
    measure "$kind" get "$3"
  fi
  finish "$app"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$rounds"); do
  for app in $apps; do
    if [ $((i % 2)) = 1 ]; then order="base sealed memory"; else order="memory sealed base"; fi
    for kind in $order; do one "$kind" $app "$i"; done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

m() { median <"$work/r.$1"; }
ratio() { echo "scale=4; $1 / $2" | bc -l | awk '{printf "%.2fx", $1}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.0f", s * 1000}'; }
echo "# sealed apps vs the original image under runc, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo "# load average before $load0, after $load1; medians of $rounds rounds"
echo "# wrk -t2 -c$conns -d${secs}s; redis-benchmark -q -t set (then get) -n $redis_n -c $redis_c; plain TCP on the host network"
echo
echo "Ratios: of the medians, and [the median of each round's ratio] (a round runs the three"
echo "kinds back to back, so its ratio is the least disturbed by drift over the run)."
echo
echo "| workload | original (runc) | sealed (cocoon run) | sealed / original | ratio in each round | memory mode (--fs memory) | memory / original | ratio in each round | container CPU µs per request, original | sealed | memory mode |"
echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |"
each() { paste -d' ' "$work/r.$1.$2" "$work/r.base.$2" | while read -r x y; do ratio "$x" "$y"; printf ' '; done; }
paired() { paste -d' ' "$work/r.$1.$2" "$work/r.base.$2" | awk '{print $1 / $2}' | median | awk '{printf "[%.2fx]", $1}'; }
for row in "set|redis SET, requests/s" "get|redis GET, requests/s" "page|nginx default page (615 B), requests/s" "1m|nginx 1 MiB file, MB/s"; do
  k=${row%%|*} label=${row#*|}
  [ -e "$work/r.base.$k" ] || continue
  b=$(m base.$k) s=$(m sealed.$k) y=$(m memory.$k)
  bc_=$(m base.$k.cpu) sc=$(m sealed.$k.cpu) yc=$(m memory.$k.cpu)
  es=$(each sealed $k) ey=$(each memory $k)
  echo "| $label | $b | $s | $(ratio "$s" "$b") $(paired sealed $k) | ${es% } | $y | $(ratio "$y" "$b") $(paired memory $k) | ${ey% } | $(printf %.1f "$bc_") | $(printf %.1f "$sc") ($(ratio "$sc" "$bc_")) | $(printf %.1f "$yc") ($(ratio "$yc" "$bc_")) |"
done
echo
echo "Start-up to first answer, ms. Sealed = cocoon run writing the bundle (reading the sealed image,"
echo "unpacking the launcher and the blob) + runc and the launcher up to its first KBS request + the KBS"
echo "round trip + unlock, mount (FUSE, or the whole tree into memory) and the app starting."
echo
echo "| app | original | mode | sealed | bundle | runc + launcher to the KBS | KBS round trip | after the KBS | overhead beyond the KBS round trip | same, without writing the bundle |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for app in $apps; do
  for kind in sealed memory; do
    b=$(m base.$app.start) s=$(m $kind.$app.start) k=$(m $kind.$app.kbs) u=$(m $kind.$app.bundle)
    label=$([ $app = web ] && echo "nginx (GET / = 200)" || echo "redis (PING = PONG)")
    mode=$([ $kind = sealed ] && echo fuse || echo memory)
    echo "| $label | $(ms "$b") | $mode | $(ms "$s") | $(ms "$u") | $(ms "$(m $kind.$app.prekbs)") | $(ms "$k") | $(ms "$(m $kind.$app.postkbs)") | $(ms "$(echo "$s - $k - $b" | bc -l)") | $(ms "$(echo "$s - $u - $k - $b" | bc -l)") |"
  done
done
