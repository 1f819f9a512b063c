#!/usr/bin/env bash
# Fetch the real ONNX models the inference tests and benchmarks use, from the
# `onnx` and `magika` wheels on PyPI (pinned by version and SHA-256), and
# extract them with their expected outputs.  See docs/infer.md.
#
#   bash scripts/models.sh [OUTLINK]
#
# The models go to ${COCOON_MODEL_CACHE:-/var/cache/cocoon/models}/<key>/,
# where <key> is the first 16 hex digits of the SHA-256 of this file (the
# recipe).  A complete cache dir (it has a .complete marker) is reused as is;
# otherwise it is built in a temp dir beside it and renamed into place, so an
# interrupted run never leaves a half cache.  OUTLINK (default
# <repo>/target/models) is then pointed at it and the dir is printed on
# stdout.  Progress goes to stderr, one line per stage.
#
# What the cache dir holds:
#   squeezenet.onnx, resnet50.onnx   onnx's "light" models (input [1,3,224,224] FP32)
#   <m>.request.json                 an Open Inference Protocol request with the input
#                                    onnx's backend test feeds them: arange(n)/n as FP32
#   <m>.expected.json                the shipped expected output (light_<m>_output_0.pb)
#                                    decoded to an OIP output tensor
#   <m>_output_0.pb                  that expected output as shipped
#   magika.onnx                      magika's standard_v3_3 content-type model
#   magika.config.json               its config (feature sizes, labels, thresholds)
#   magika.content_types.json        magika's content-type knowledge base (is_text, ...)
#   SOURCES                          where each file came from
#
# Nothing here is downloaded at run time by the server: the wheels are fetched
# once, by pip, and only data files are taken out of them.
set -Eeuo pipefail
export LC_ALL=C TZ=UTC

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd)
CACHE=${COCOON_MODEL_CACHE:-/var/cache/cocoon/models}

# The wheels, pinned by version and by the SHA-256 of the exact file pip picks
# for the platform below (the onnx wheel is CPython-specific; the data files
# inside are the same in every build, but a hash needs one file).
ONNX_VERSION=1.23.2
ONNX_SHA256=c03ecf6b835d136108eeaeeafbd0026fc7b3cf98661409fbc6b63d5a29361348
MAGIKA_VERSION=1.0.3
MAGIKA_SHA256=3e9b49134e8116ee40b431664dcbed9e199413efddcce1a173c734b4e0521529
WHEEL_PLATFORM=(--only-binary=:all: --platform manylinux_2_28_x86_64
	--python-version 3.11 --implementation cp)

LIGHT_MODELS=(squeezenet resnet50)
MAGIKA_MODEL=standard_v3_3

NAME=models
# shellcheck source=scripts/lib/cache.sh
. "$SCRIPT_DIR/lib/cache.sh"

recipe_key() {
	sha256sum "$SCRIPT_DIR/models.sh" | cut -c1-16
}

ensure_tools() {
	command -v python3 >/dev/null 2>&1 || die "python3 is missing: run scripts/install-deps.sh (as root)"
	python3 -m pip --version >/dev/null 2>&1 ||
		die "pip is missing for python3: run scripts/install-deps.sh (it installs python3-pip)"
}

# pip download with --require-hashes: a wheel whose bytes differ from the pin
# is refused by pip itself.
fetch_wheels() { # DIR
	local dir=$1
	cat >"$dir/requirements.txt" <<-EOF
		onnx==$ONNX_VERSION --hash=sha256:$ONNX_SHA256
		magika==$MAGIKA_VERSION --hash=sha256:$MAGIKA_SHA256
	EOF
	python3 -m pip download --no-deps --require-hashes --disable-pip-version-check \
		"${WHEEL_PLATFORM[@]}" -q -d "$dir/wheels" -r "$dir/requirements.txt" >&2 ||
		die "pip could not fetch onnx==$ONNX_VERSION and magika==$MAGIKA_VERSION from PyPI (no network, or a hash mismatch)"
}

# Take the data files out of the wheels (zip files) and turn the expected
# outputs (ONNX TensorProto) into OIP JSON.  Pure Python, no onnx or numpy:
# the protobuf fields read are few and fixed (onnx.proto3).
extract() { # WHEELDIR OUT
	python3 - "$1" "$2" "$MAGIKA_MODEL" "${LIGHT_MODELS[@]}" <<-'PY'
		import glob, json, os, struct, sys, zipfile

		wheels, out, magika_model, light = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

		def varint(b, i):
		    n = s = 0
		    while True:
		        c = b[i]; i += 1
		        n |= (c & 0x7F) << s; s += 7
		        if c < 0x80:
		            return n, i

		def fields(b):
		    """(field number, wire type, value) of one protobuf message."""
		    i = 0
		    while i < len(b):
		        key, i = varint(b, i)
		        num, wt = key >> 3, key & 7
		        if wt == 0:
		            v, i = varint(b, i)
		        elif wt == 1:
		            v, i = b[i:i + 8], i + 8
		        elif wt == 2:
		            n, i = varint(b, i)
		            v, i = b[i:i + n], i + n
		        elif wt == 5:
		            v, i = b[i:i + 4], i + 4
		        else:
		            raise SystemExit(f"models: unsupported protobuf wire type {wt}")
		        yield num, wt, v

		def packed_varints(v):
		    i, r = 0, []
		    while i < len(v):
		        n, i = varint(v, i); r.append(n)
		    return r

		FLOAT = 1  # TensorProto.DataType.FLOAT

		def tensor(b):
		    """TensorProto (dims=1, data_type=2, float_data=4, name=8, raw_data=9) -> (dims, floats)."""
		    dims, dtype, floats, raw = [], None, [], None
		    for num, wt, v in fields(b):
		        if num == 1:
		            dims += packed_varints(v) if wt == 2 else [v]
		        elif num == 2:
		            dtype = v
		        elif num == 4:
		            floats += list(struct.unpack(f"<{len(v) // 4}f", v)) if wt == 2 else [struct.unpack("<f", v)[0]]
		        elif num == 9:
		            raw = v
		    if dtype != FLOAT:
		        raise SystemExit(f"models: expected output has data type {dtype}, not FLOAT")
		    if raw is not None:
		        floats = list(struct.unpack(f"<{len(raw) // 4}f", raw))
		    return dims, floats

		def graph_io(model):
		    """ModelProto.graph (7): names and dims of inputs (11) that are not initializers (5), outputs (12)."""
		    graph = next(v for num, _, v in fields(model) if num == 7)
		    inits, ins, outs = set(), [], []
		    for num, _, v in fields(graph):
		        if num == 5:
		            inits.add(next(x for n, _, x in fields(v) if n == 8).decode())
		        elif num in (11, 12):
		            name = next(x for n, _, x in fields(v) if n == 1).decode()
		            (ins if num == 11 else outs).append(name)
		    return [i for i in ins if i not in inits], outs

		def shape_of(model, name):
		    """Static dims of graph input NAME: ValueInfo.type(2).tensor_type(1).shape(2).dim(1).dim_value(1)."""
		    graph = next(v for num, _, v in fields(model) if num == 7)
		    for num, _, v in fields(graph):
		        if num != 11:
		            continue
		        f = {n: x for n, _, x in fields(v)}
		        if f.get(1, b"").decode() != name:
		            continue
		        tt = {n: x for n, _, x in fields(f[2])}[1]
		        shape = {n: x for n, _, x in fields(tt)}[2]
		        return [{n: x for n, _, x in fields(d)}[1] for n, _, d in fields(shape) if n == 1]
		    raise SystemExit(f"models: input {name} not found")

		def f32(x):
		    return struct.unpack("<f", struct.pack("<f", x))[0]

		def fmt(x):
		    return "%.9g" % x  # 9 significant digits round-trip every float32

		def wheel(prefix):
		    (path,) = glob.glob(os.path.join(wheels, prefix + "-*.whl"))
		    return zipfile.ZipFile(path), os.path.basename(path)

		sources = []
		z, name = wheel("onnx")
		for m in light:
		    base = f"onnx/backend/test/data/light/light_{m}"
		    model = z.read(base + ".onnx")
		    expected = z.read(base + "_output_0.pb")
		    open(os.path.join(out, m + ".onnx"), "wb").write(model)
		    open(os.path.join(out, m + "_output_0.pb"), "wb").write(expected)
		    ins, outs = graph_io(model)
		    if len(ins) != 1 or len(outs) != 1:
		        raise SystemExit(f"models: {m}: expected one input and one output, got {ins} {outs}")
		    dims = shape_of(model, ins[0])
		    n = 1
		    for d in dims:
		        n *= d
		    # onnx.backend.test.runner.generate_dummy_data(random=False):
		    # (np.arange(n).reshape(shape) / n).astype(np.float32)
		    data = ",".join(fmt(f32(i / n)) for i in range(n))
		    with open(os.path.join(out, m + ".request.json"), "w") as f:
		        f.write('{"id":"%s-arange","inputs":[{"name":%s,"shape":%s,"datatype":"FP32","data":[%s]}]}\n'
		                % (m, json.dumps(ins[0]), json.dumps(dims), data))
		    odims, vals = tensor(expected)
		    with open(os.path.join(out, m + ".expected.json"), "w") as f:
		        json.dump({"name": outs[0], "shape": odims, "datatype": "FP32", "data": vals}, f)
		        f.write("\n")
		    sources.append(f"{m}.onnx\t{name}\t{base}.onnx")
		    sources.append(f"{m}_output_0.pb\t{name}\t{base}_output_0.pb")

		z, name = wheel("magika")
		base = f"magika/models/{magika_model}"
		for src, dst in [(f"{base}/model.onnx", "magika.onnx"),
		                 (f"{base}/config.min.json", "magika.config.json"),
		                 ("magika/config/content_types_kb.min.json", "magika.content_types.json")]:
		    open(os.path.join(out, dst), "wb").write(z.read(src))
		    sources.append(f"{dst}\t{name}\t{src}")
		with open(os.path.join(out, "SOURCES"), "w") as f:
		    f.write("# file\twheel\tpath in the wheel\n" + "\n".join(sources) + "\n")
	PY
}

fetch_and_extract() { # TMP: the wheels into TMP/wheels, the files into TMP/out
	mkdir -p "$1/wheels"
	stage "fetching onnx==$ONNX_VERSION and magika==$MAGIKA_VERSION wheels"
	fetch_wheels "$1"
	stage "extracting ${LIGHT_MODELS[*]} and magika $MAGIKA_MODEL"
	extract "$1/wheels" "$1/out"
}

main() {
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	cached_build "${1:-$REPO/target/models}" fetch_and_extract
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
