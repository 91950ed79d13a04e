#!/usr/bin/env bash
# GPU check of the CUDA kernels of nasflow-ops (docs/cuda.md): builds with `--features cuda` and
# runs ops/tests/cuda.rs, which compares every CUDA op (forward and backward) with the CPU kernels.
# Run on a machine with an NVIDIA GPU, its driver and a CUDA toolkit (nvcc) no newer than the
# driver:
#
#   bench/gpu-check.sh            # build + tests; exit status 0 only if every test passed
#
# Environment: NVCC (the nvcc binary, default: nvcc on the PATH), CUDA_COMPUTE_CAP (default: read
# from nvidia-smi, e.g. 90 on an H100), CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc_bin="${NVCC:-nvcc}"
if ! command -v "$nvcc_bin" >/dev/null 2>&1; then
    echo "gpu-check: no nvcc (set NVCC or put the CUDA toolkit's bin/ on the PATH; see docs/cuda.md)" >&2
    exit 2
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
    echo "gpu-check: nvidia-smi finds no GPU; the tests would only fail (they need Device::new_cuda(0))" >&2
    exit 2
fi
if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
    CUDA_COMPUTE_CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')"
    export CUDA_COMPUTE_CAP
fi

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
"$nvcc_bin" --version | tail -2
echo "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
rustc --version

echo "== build (cargo build -p nasflow-ops --features cuda --tests)"
start=$(date +%s)
cargo build -p nasflow-ops --features cuda --tests
echo "built in $(( $(date +%s) - start )) s"

echo "== tests (cargo test -p nasflow-ops --features cuda --test cuda)"
log="$(mktemp /tmp/nasflow-gpu-check.XXXXXX.log)"
set +e
cargo test -p nasflow-ops --features cuda --test cuda -- --test-threads=1 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

echo "== summary"
grep -E '^test .* \.\.\. |^test result:' "$log" || true
if [ "$rc" -eq 0 ]; then
    echo "gpu-check: PASSED (log: $log)"
else
    echo "gpu-check: FAILED with status $rc (log: $log)"
fi
exit "$rc"
