#!/usr/bin/env bash
# Installs the system packages cocoon's build, tests and demo need, if missing.
# Debian 12, as root. Idempotent: does nothing when everything is present.
set -euo pipefail

packages=(
  umoci skopeo          # build and copy fixture images with tools other than cocoon
  docker-registry       # a real OCI distribution registry on loopback
  debootstrap           # Debian rootfs for realistic nginx/redis/python images
  busybox-static        # tiny static rootfs for fast tests
  attr                  # getfattr/setfattr for xattr fixtures and checks
  apache2-utils         # htpasswd (bcrypt) for registry basic-auth tests
  runc                  # the container runtime cocoon run uses
  redis-tools           # redis-cli --tls against a shielded redis
  wrk                   # HTTP load for the shield benchmark
  bc                    # benchmark arithmetic
  python3-pip python3-venv  # models from PyPI wheels (scripts/models.sh), onnxruntime for bench/infer.sh
  ca-certificates curl jq
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: error: need root to apt-get install ${missing[*]}; rerun as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: error: cargo not found; install the Rust toolchain (rustup, Rust >= 1.90) and rerun" >&2
  exit 1
fi

# A clean debug build with the test fixtures and models takes about 5 GiB (target/ 4.3 GiB, fixtures 0.8 GiB);
# running out of space half way through a build gives a confusing rustc
# error, so say it up front.
need_kib=$((5 * 1024 * 1024))
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
free_kib=$(df -Pk "$target" | awk 'NR == 2 {print $4}')
if [ "$free_kib" -lt "$need_kib" ]; then
  echo "install-deps: error: $((free_kib / 1024)) MiB free on the file system of $target; the build and tests need about 5 GiB: free some space (cargo clean, old /tmp dirs) and rerun" >&2
  exit 1
fi
