#!/usr/bin/env bash
# Run every cocoon-attest fuzz target for N seconds each (default 600).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# With cargo-fuzz installed it runs libFuzzer (`cargo fuzz run`), with the
# nightly toolchain when rustup has one, else on stable with `--sanitizer none`.
# Without cargo-fuzz it falls back to the deterministic no-panic loops in the crate's
# tests (`parser_never_panics_on_random_input`), which run on stable.
#
# Seeds: crates/attest/fuzz/seeds/TARGET/ (committed) and the real evidence
# in ../shared/testdata/evidence (when present) are given to libFuzzer as an
# extra, read-only input corpus for each target; new inputs go to
# crates/attest/fuzz/corpus/TARGET (git-ignored).
# Logs: $FUZZ_LOG_DIR (default crates/attest/fuzz/logs)/TARGET.log, ending in
# libFuzzer's final stats (`-print_final_stats=1`).
#
# On a shared machine: `nice -n 19 scripts/fuzz.sh`.
set -euo pipefail
secs="${1:-600}"
shift || true
here="$(cd "$(dirname "$0")/.." && pwd)"
fuzz_dir="$here/crates/attest/fuzz"
evidence="${COCOON_EVIDENCE_DIR:-$here/../shared/testdata/evidence}"
log_dir="${FUZZ_LOG_DIR:-$fuzz_dir/logs}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(snp_report hcl_report tpm_quote sim_report dcap_quote az_envelope attester_response)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target-fuzz}"

# seed TARGET DIR: copy the real evidence that TARGET parses into DIR.
seed() {
  local t="$1" d="$2" e="$evidence"
  mkdir -p "$d"
  # Committed seeds (crates/attest/fuzz/seeds/TARGET/).
  if [ -d "$fuzz_dir/seeds/$t" ]; then cp "$fuzz_dir/seeds/$t"/* "$d/"; fi
  [ -d "$e" ] || return 0
  case "$t" in
    snp_report)
      cp "$e/snp/trustee/test-report.bin" "$e/snp/trustee/test-vlek-report.bin" \
        "$e/snp/virtee-sev/report_milan.hex" "$d/"
      tail -c +33 "$e/snp-azure-vtpm/trustee/hcl-report.bin" | head -c 1184 >"$d/azure-snp.bin" ;;
    hcl_report)
      cp "$e/snp-azure-vtpm/trustee/hcl-report.bin" "$d/" ;;
    tpm_quote)
      if command -v jq >/dev/null; then
        jq -r .message "$e/snp-azure-vtpm/trustee/tpm-quote-v1.json" | xxd -r -p >"$d/tpm-quote-v1.bin"
        jq -r .tpm_quote.message "$e/snp-azure-vtpm/trustee/evidence-v2.json" | xxd -r -p >"$d/tpm-quote-v2.bin"
      fi ;;
    dcap_quote)
      cp "$e/tdx/dcap-qvl/tdx_quote" "$e/tdx/dcap-qvl/tdx_quote_outdated" \
        "$e/tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat" "$e/sgx/dcap-qvl/sgx_quote" "$d/" ;;
    az_envelope)
      cp "$e"/snp-azure-vtpm/trustee/evidence-*.json "$d/" ;;
    sim_report | attester_response) ;;
  esac
}

if cargo fuzz --version >/dev/null 2>&1; then
  san=()
  tc=()
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    tc=(+nightly)
  elif ! rustc --version | grep -q nightly; then
    san=(--sanitizer none)
  fi
  cd "$fuzz_dir"
  mkdir -p "$log_dir"
  seeds="$(mktemp -d)"
  trap 'rm -rf "$seeds"' EXIT
  for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seed "$t" "$seeds/$t"
    echo "== $t: ${secs}s (log: $log_dir/$t.log)"
    cargo "${tc[@]}" fuzz run "${san[@]}" "$t" "corpus/$t" "$seeds/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tee "$log_dir/$t.log"
    # Summary line: runs, coverage, corpus.
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$log_dir/$t.log" || true
  done
else
  echo "cargo-fuzz not installed (cargo install cargo-fuzz); running the stable no-panic loops instead" >&2
  cd "$here"
  cargo test -p cocoon-attest --release never_panics
fi
