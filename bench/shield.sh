#!/usr/bin/env bash
# Shield throughput and handshake latency (issues 6 and 7), same run, same
# machine, same nginx binary:
#
#   baseline: the ORIGINAL Debian nginx image (unpacked with cocoon, run with
#             runc on the host network) doing its own TLS (OpenSSL, P-256
#             certificate) on :9443;
#   shield:   the same image sealed (`--encrypt-all --shield 8443:80`) run by
#             `cocoon run` under the sim TEE; TLS ends in the launcher's
#             shield (rustls) which forwards to nginx's plaintext :80 in the
#             app's own network namespace.
#
# Both serve the default page (615 B) and a 1 MiB file; wrk (OpenSSL) drives
# each for SECS seconds with CONNS connections and 2 threads, ROUNDS times,
# alternating which of the two goes first; the table has the medians (and
# each round's ratio, to show the spread on a shared machine). Handshake
# latency: the median of curl's (appconnect - connect) over 50 fresh
# connections (the shield's KBS-CA route), and the median wall time of
# `cocoon verify-endpoint` (fresh evidence per connection: nonce in SNI,
# evidence made and verified) over 20 runs.
#
#   bench/shield.sh [COCOON_BINARY]     (root; fixtures; `make release`)
#   BENCH_SECS=10 BENCH_CONNS=32 BENCH_ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/sim-kbs.sh
cocoon=$(realpath "${1:-target/release/cocoon}")
fixtures=$(realpath "${COCOON_FIXTURES:-target/fixtures}")
secs=${BENCH_SECS:-10}
conns=${BENCH_CONNS:-32}
rounds=${BENCH_ROUNDS:-3}
work=$(mktemp -d)
kbs_pid=""
cleanup() {
  runc --root "$work/runc" kill bench-base KILL 2>/dev/null || true
  runc --root "$work/runc" delete --force bench-base 2>/dev/null || true
  runc --root "$work/state/runc" kill bench-shield KILL 2>/dev/null || true
  runc --root "$work/state/runc" delete --force bench-shield 2>/dev/null || true
  if [ -n "$kbs_pid" ]; then kill "$kbs_pid" 2>/dev/null || true; wait "$kbs_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 300); do curl -ks --max-time 2 -o /dev/null "$1" && return 0; sleep 0.2; done; echo "bench: $1 never answered" >&2; return 1; }

# The image both runs serve: Debian nginx plus a 1 MiB file.
cp -a "$fixtures/debian" "$work/web"
head -c $((1 << 20)) /dev/urandom >"$work/1m.bin"
umoci insert --image "$work/web:nginx" --tag bench "$work/1m.bin" /var/www/html/1m.bin >/dev/null

# --- baseline: the original image, nginx's own TLS ---------------------------
mkdir -p "$work/base"
"$cocoon" unpack "oci:$work/web:bench" "$work/base/rootfs" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/base/rootfs/etc/nginx/bench.key" -out "$work/base/rootfs/etc/nginx/bench.crt" 2>/dev/null
# The same site the shielded nginx serves (Debian's default: three index
# candidates, try_files), moved to 9443 with TLS: only who ends TLS differs.
site=$work/base/rootfs/etc/nginx/sites-available/default
sed -e 's|listen 80 default_server;|listen 9443 ssl default_server;\n\tssl_certificate /etc/nginx/bench.crt;\n\tssl_certificate_key /etc/nginx/bench.key;|' \
  -e 's|listen \[::\]:80 default_server;|listen [::]:9443 ssl default_server;|' "$site" >"$work/site-tls"
grep -q "listen 9443 ssl default_server" "$work/site-tls"
rm -f "$work/base/rootfs/etc/nginx/sites-enabled/default"
cp "$work/site-tls" "$work/base/rootfs/etc/nginx/sites-enabled/default"
(cd "$work/base" && runc spec)
caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_SETUID","CAP_SETGID","CAP_KILL","CAP_NET_BIND_SERVICE"]'
jq --argjson caps "$caps" '.process.terminal = false | .process.args = ["nginx","-g","daemon off;"]
  | .root.readonly = false
  | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps}
  | .linux.namespaces |= map(select(.type != "network"))' \
  "$work/base/config.json" >"$work/base/config.json.new"
mv "$work/base/config.json.new" "$work/base/config.json"
runc --root "$work/runc" run -d --bundle "$work/base" bench-base >"$work/base.log" 2>&1 </dev/null

# --- shield: the sealed image under cocoon run ---------------------------------
"$cocoon" keygen --out "$work/owner.key" >/dev/null
"$cocoon" convert "oci:$work/web:bench" "oci:$work/sealed:bench" --sign "$work/owner.key" -q \
  --encrypt-all --shield 8443:80 --image-key-out "$work/image.key" --reference-values "$work/rv.json"
start_sim_kbs "$cocoon" "$work"
register_workload "$cocoon" "$work/rv.json" "$work/image.key"
curl -fs "$kbs/kbs/v0/ca.pem" >"$work/kbs-ca.pem"
"$cocoon" run "oci:$work/sealed:bench" --kbs "$kbs" --sim "$work/sim" -d --name bench-shield \
  --state-dir "$work/state" >/dev/null

wait_for https://localhost:9443/
wait_for https://localhost:8443/
cmp -s <(curl -fs --cacert "$work/base/rootfs/etc/nginx/bench.crt" https://localhost:9443/1m.bin) "$work/1m.bin"
cmp -s <(curl -fs --cacert "$work/kbs-ca.pem" https://localhost:8443/1m.bin) "$work/1m.bin"

rps() { # URL -> "requests/s MB/s"
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" "$1")
  local r t
  r=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  t=$(awk '/^Transfer\/sec/ {v=$2; if (v ~ /GB$/) {sub(/GB/,"",v); v*=1024} else if (v ~ /KB$/) {sub(/KB/,"",v); v/=1024} else {sub(/MB/,"",v)}; print v}' <<<"$out")
  echo "$r $t"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
handshake_ms() { # URL CACERT
  for _ in $(seq 50); do
    curl -s -o /dev/null --cacert "$2" -w '%{time_connect} %{time_appconnect}\n' "$1"
  done | awk '{printf "%.3f\n", ($2-$1)*1000}' | median
}

echo "# shield vs nginx's own TLS, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# wrk -t2 -c$conns -d${secs}s, medians of $rounds rounds (order alternating); TLS 1.3 both; P-256 certificates both"
echo
echo "| payload | nginx TLS (req/s, MB/s) | shield (req/s, MB/s) | shield / nginx TLS | ratio in each round |"
echo "| --- | --- | --- | --- | --- |"
for p in / /1m.bin; do
  : >"$work/base.r"; : >"$work/shield.r"; each=""
  for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then
      b=$(rps "https://localhost:9443$p"); s=$(rps "https://localhost:8443$p")
    else
      s=$(rps "https://localhost:8443$p"); b=$(rps "https://localhost:9443$p")
    fi
    echo "$b" >>"$work/base.r"; echo "$s" >>"$work/shield.r"
    each="$each $(echo "scale=2; ${s%% *} / ${b%% *}" | bc)x"
  done
  br=$(cut -d' ' -f1 "$work/base.r" | median); bt=$(cut -d' ' -f2 "$work/base.r" | median)
  sr=$(cut -d' ' -f1 "$work/shield.r" | median); st=$(cut -d' ' -f2 "$work/shield.r" | median)
  ratio=$(echo "scale=2; $sr / $br" | bc)
  name=$([ "$p" = / ] && echo "default page (615 B)" || echo "1 MiB file")
  echo "| $name | $br, $bt | $sr, $st | ${ratio}x |$each |"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
hb=$(handshake_ms https://localhost:9443/ "$work/base/rootfs/etc/nginx/bench.crt")
hs=$(handshake_ms https://localhost:8443/ "$work/kbs-ca.pem")
for _ in $(seq 20); do
  s=$(date +%s%N)
  "$cocoon" verify-endpoint 127.0.0.1:8443 --reference-values "$work/rv.json" --sim-root "$work/sim/root.pem" >/dev/null
  echo $(( ($(date +%s%N) - s) / 1000 ))
done | median >"$work/ve"
echo "| handshake (median) | nginx TLS | shield, KBS-CA certificate | shield, fresh evidence (cocoon verify-endpoint, whole process) |"
echo "| --- | --- | --- | --- |"
echo "| ms | $hb | $hs | $(echo "scale=1; $(cat "$work/ve") / 1000" | bc) |"
