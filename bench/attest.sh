#!/usr/bin/env bash
# Attestation verification throughput per TEE type (issue 4), with a
# same-run baseline (one bare ECDSA P-384 verify), as a Markdown table.
#
#   bench/attest.sh [EVIDENCE_DIR] [ITERS] [ROUNDS]
#
# EVIDENCE_DIR defaults to ../shared/testdata/evidence (beside the repository);
# each case runs ITERS verifications (default 200) per round, ROUNDS rounds
# (default 5), best round counts. Builds the example in release mode; set
# CARGO_TARGET_DIR to share a target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
evidence="${1:-$(cd .. && pwd)/shared/testdata/evidence}"
iters="${2:-200}"
rounds="${3:-5}"
cargo build --release --quiet -p cocoon-attest --example attest_bench
bin="${CARGO_TARGET_DIR:-target}/release/examples/attest_bench"
echo "# cocoon attest bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $iters verifications x best of $rounds rounds"
echo
"$bin" "$evidence" "$iters" "$rounds"
