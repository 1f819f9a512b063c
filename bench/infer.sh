#!/usr/bin/env bash
# Inference benchmark (issue 8), every figure against a baseline of the same
# run on the same machine:
#
#  1. the Open Inference Protocol server (release cocoon-infer, plain HTTP on
#     127.0.0.1): latency p50/p99 and throughput for magika and squeezenet,
#     one connection and CONCURRENCY keep-alive connections;
#  2. the engine alone, tract (cocoon_infer::Model, the server's code path
#     minus HTTP and JSON) against onnxruntime (PyPI, in a venv under
#     /var/cache/cocoon/bench) on the same model file and input, with 1
#     thread and with every core; and whether their magika scores agree;
#  3. sealed and shielded: the image of `cocoon infer image`, sealed with
#     `--encrypt /models --shield 8443:8000` and run by `cocoon run` under the
#     sim TEE (TLS ends in the launcher's shield, which forwards to the server
#     in the app's own network namespace), against the same server binary and
#     models run plainly on the host; wrk drives both with the same request.
#     Needs root, runc, /dev/fuse, wrk and a cocoon binary with the static
#     launcher beside it (`make release`); skipped with a note otherwise.
#
#   bench/infer.sh [SECONDS] [CONCURRENCY]     COCOON=target/release/cocoon
#
# Defaults 10 s per phase, 4 connections. Models come from scripts/models.sh
# (COCOON_MODELS, default target/models). Builds in release mode; set
# CARGO_TARGET_DIR to share a target directory. Prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conc=${2:-4}
models=${COCOON_MODELS:-target/models}
target=${CARGO_TARGET_DIR:-target}
ort_version=1.32.0
iters=${BENCH_ITERS:-400}
cores=$(nproc)

[ -f "$models/.complete" ] || bash scripts/models.sh >/dev/null
# The static server of `make infer-server` (the binary images carry), and the
# load generator built the same way (it reuses that build).
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet -p cocoon-infer \
  --bin cocoon-infer --example infer_load --target "$triple"
server=$target/$triple/release/cocoon-infer
load=$target/$triple/release/examples/infer_load

# onnxruntime in a venv of its own, cached by version.
venv=/var/cache/cocoon/bench/onnxruntime-$ort_version
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null; then
  echo "bench: installing onnxruntime==$ort_version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "onnxruntime==$ort_version" >&2
fi
py=$venv/bin/python

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The inputs: magika's features of /bin/ls (an ELF binary), squeezenet's
# shipped test input.
"$load" magika-request "$models/magika.config.json" /bin/ls >"$work/magika.json"
cp "$models/squeezenet.request.json" "$work/squeezenet.json"

port=$((20000 + RANDOM % 20000))
"$server" --model "$models/magika.onnx" --model "$models/squeezenet.onnx" \
  --listen "127.0.0.1:$port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.05
done

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
row() { # LABEL JSON
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(field "$2" per_sec)" "$(field "$2" p50_ms)" "$(field "$2" p99_ms)" "$(field "$2" errors)"
}

echo "# cocoon inference, $(date -u +%Y-%m-%dT%H:%MZ), $cores cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## The server: cocoon-infer over plain HTTP on 127.0.0.1 (${secs}s per row)"
echo
echo "Server: \`cocoon-infer\` (the static release build images carry), $cores engine threads, $cores parallel inferences."
echo "Client: \`crates/infer/examples/infer_load.rs\`, keep-alive connections sharing the machine."
echo
echo "| model, connections | requests/s | p50 ms | p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: |"
for m in magika squeezenet; do
  for c in 1 "$conc"; do
    row "$m, $c" "$("$load" http "127.0.0.1:$port" "$m" "$work/$m.json" "$c" "$secs" 1000000)"
  done
done

# The engines alone. tract's figures come from the same input files, parsed
# once; onnxruntime's from the same files turned into numpy arrays.
cat >"$work/ort.py" <<'PY'
import json, sys, time
import numpy as np
import onnxruntime as ort

model, body, iters, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dump = sys.argv[5] if len(sys.argv) > 5 else None
inp = json.load(open(body))["inputs"][0]
dt = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}[inp["datatype"]]
x = np.array(inp["data"], dtype=dt).reshape(inp["shape"])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
feed = {s.get_inputs()[0].name: x}
out = s.run(None, feed)
if dump:
    json.dump([float(v) for v in out[0].ravel()], open(dump, "w"))
lat = []
for _ in range(iters):
    t = time.perf_counter()
    s.run(None, feed)
    lat.append(time.perf_counter() - t)
lat.sort()
pct = lambda p: lat[max(0, min(len(lat), int(-(-len(lat) * p // 1))) - 1)] * 1e3
print(json.dumps({"count": len(lat), "errors": 0, "seconds": sum(lat), "per_sec": round(len(lat) / sum(lat), 1),
                  "p50_ms": round(pct(0.5), 3), "p99_ms": round(pct(0.99), 3)}))
PY

echo
echo "## The engine alone: tract against onnxruntime $ort_version, same model and input ($iters inferences in a row)"
echo
echo "| model, engine, threads | inferences/s | p50 ms | p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: |"
for m in magika squeezenet; do
  for t in 1 "$cores"; do
    row "$m, tract, $t" "$("$load" engine "$models/$m.onnx" "$work/$m.json" "$iters" "$t")"
    row "$m, onnxruntime, $t" "$("$py" "$work/ort.py" "$models/$m.onnx" "$work/$m.json" "$iters" "$t")"
  done
done

# Agreement: magika's 214 scores for /bin/ls from the server (tract) and from
# onnxruntime.
curl -sf --data-binary @"$work/magika.json" "http://127.0.0.1:$port/v2/models/magika/infer" >"$work/tract-out.json"
"$py" "$work/ort.py" "$models/magika.onnx" "$work/magika.json" 1 1 "$work/ort-out.json" >/dev/null
python3 - "$work/tract-out.json" "$work/ort-out.json" "$models/magika.config.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["outputs"][0]["data"]
o = json.load(open(sys.argv[2]))
labels = json.load(open(sys.argv[3]))["target_labels_space"]
diff = max(abs(a - b) for a, b in zip(t, o))
best = lambda v: labels[max(range(len(v)), key=v.__getitem__)]
print()
print(f"magika on /bin/ls: tract says {best(t)} ({max(t):.4f}), onnxruntime says {best(o)} ({max(o):.4f}); "
      f"largest score difference over {len(t)} labels: {diff:.2e}")
if len(t) != len(o) or diff > 1e-4:
    sys.exit("bench: tract and onnxruntime disagree beyond 1e-4")
PY


# --- sealed and shielded -------------------------------------------------------
cocoon=${COCOON:-target/release/cocoon}
echo
echo "## Sealed and shielded against the same server run plainly (wrk -t1 -c$conc -d${secs}s, same request)"
echo
if [ "$(id -u)" != 0 ] || ! command -v runc >/dev/null || ! command -v wrk >/dev/null || [ ! -x "$cocoon" ]; then
  echo "skipped: needs root, runc, wrk and \$COCOON ($cocoon; \`make release\`)"
  exit 0
fi
cocoon=$(realpath "$cocoon")
. scripts/sim-kbs.sh
kbs_pid=""
trap 'runc --root "$work/state/runc" kill bench-infer KILL 2>/dev/null || true
      runc --root "$work/state/runc" delete --force bench-infer 2>/dev/null || true
      if [ -n "$kbs_pid" ]; then kill "$kbs_pid" 2>/dev/null || true; wait "$kbs_pid" 2>/dev/null || true; fi
      cleanup' EXIT
"$cocoon" infer image --model "$models/magika.onnx" --model "$models/squeezenet.onnx" \
  --server "$server" --to "oci:$work/infer:bench" >/dev/null
"$cocoon" keygen --out "$work/owner.key" >/dev/null
"$cocoon" convert "oci:$work/infer:bench" "oci:$work/sealed:bench" --sign "$work/owner.key" -q \
  --encrypt /models --shield 8443:8000 --image-key-out "$work/image.key" --reference-values "$work/rv.json"
start_sim_kbs "$cocoon" "$work"
register_workload "$cocoon" "$work/rv.json" "$work/image.key"
"$cocoon" run "oci:$work/sealed:bench" --kbs "$kbs" --sim "$work/sim" -d --name bench-infer \
  --state-dir "$work/state" >/dev/null
for _ in $(seq 300); do curl -ks --max-time 2 -o /dev/null https://localhost:8443/v2/health/live && break; sleep 0.2; done
# The endpoint is what it claims before any figure is taken.
"$cocoon" infer request 127.0.0.1:8443 --model magika --input "$work/magika.json" \
  --reference-values "$work/rv.json" --sim-root "$work/sim/root.pem" >/dev/null

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
LUA
wrk_row() { # LABEL URL BODY -> markdown row: req/s, p50, p99 (ms)
  local out
  out=$(BODY=$3 wrk -t1 -c"$conc" -d"${secs}s" --latency -s "$work/post.lua" "$2")
  python3 - "$1" "$out" <<'PY'
import re, sys
label, out = sys.argv[1], sys.argv[2]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p = {k: ms(v) for k, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(f"| {label} | {rps:.1f} | {p['50']:.2f} | {p['99']:.2f} | {errs.group(1) if errs else 0} |")
PY
}
echo "| model, server | requests/s | p50 ms | p99 ms | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: |"
for m in magika squeezenet; do
  wrk_row "$m, plain HTTP on the host" "http://127.0.0.1:$port/v2/models/$m/infer" "$work/$m.json"
  wrk_row "$m, sealed + shield (attested TLS, sim TEE)" "https://localhost:8443/v2/models/$m/infer" "$work/$m.json"
done
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
