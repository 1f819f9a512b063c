# Sourced by the benchmark scripts: helpers they share.

layers_bytes() { # OCI_DIR TAG: sum of the image's layer blob sizes
  python3 - "$1" "$2" <<'PY'
import json, sys, os
d, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(os.path.join(d, "index.json")))
m = next(x for x in idx["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
man = json.load(open(os.path.join(d, "blobs/sha256", m["digest"][7:])))
print(sum(l["size"] for l in man["layers"]))
PY
}
