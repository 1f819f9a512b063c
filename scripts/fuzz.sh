#!/usr/bin/env bash
# Run every cocoon-attest fuzz target for N seconds each (default 600).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# With cargo-fuzz installed it runs libFuzzer (`cargo fuzz run`), with the
# nightly toolchain when rustup has one, else on stable with `--sanitizer none`.
# Without cargo-fuzz it falls back to the deterministic no-panic loops in the crate's
# tests (`parser_never_panics_on_random_input`), which run on stable.
set -euo pipefail
secs="${1:-600}"
shift || true
here="$(cd "$(dirname "$0")/.." && pwd)"
fuzz_dir="$here/crates/attest/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(snp_report hcl_report tpm_quote sim_report dcap_quote az_envelope)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target-fuzz}"

if cargo fuzz --version >/dev/null 2>&1; then
  san=()
  tc=()
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    tc=(+nightly)
  elif ! rustc --version | grep -q nightly; then
    san=(--sanitizer none)
  fi
  cd "$fuzz_dir"
  for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t: ${secs}s"
    cargo "${tc[@]}" fuzz run "${san[@]}" "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048
  done
else
  echo "cargo-fuzz not installed (cargo install cargo-fuzz); running the stable no-panic loops instead" >&2
  cd "$here"
  cargo test -p cocoon-attest --release never_panics
fi
