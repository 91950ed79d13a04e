#!/usr/bin/env bash
# Side-by-side benchmark: nasflow (release) against a PyTorch reference on the
# same shapes and thread count; writes bench/RESULTS.md.
#
#   bench/run.sh                 # every case (about 10-20 minutes on 2 cores)
#   bench/run.sh edge_64x16x32   # only the named cases
#
# Environment: BENCH_DEVICE (cpu, the default, or cuda: builds with
# `--features cuda`, runs both sides on GPU 0 and writes bench/RESULTS-cuda.md
# instead), BENCH_THREADS (default 2), BENCH_ITERS / BENCH_WARMUP (override
# the per-case defaults), BENCH_PYTHON (a Python with torch; default
# bench/.venv, created here with torch+numpy if missing: ~5 GB, ~3 min).
# PyTorch is needed only for this benchmark, never by nasflow or its tests.
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${BENCH_THREADS:-2}"
device="${BENCH_DEVICE:-cpu}"
case "$device" in
    cpu) features=(); results=bench/RESULTS.md; notes=bench/PROFILE.md ;;
    cuda) features=(--features cuda); results=bench/RESULTS-cuda.md; notes=/dev/null ;;
    *) echo "bench: BENCH_DEVICE=$device: expected cpu or cuda" >&2; exit 2 ;;
esac
export BENCH_DEVICE="$device"
py="${BENCH_PYTHON:-bench/.venv/bin/python}"
if [ ! -x "$py" ]; then
    echo "bench: creating bench/.venv with torch and numpy (only for this benchmark)" >&2
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet torch numpy
    py=bench/.venv/bin/python
fi

cargo build --release -p nasflow-nas --example bench "${features[@]}"
bin=target/release/examples/bench

if [ "$#" -gt 0 ]; then cases=("$@"); else mapfile -t cases < <("$bin" --list | cut -f1); fi

raw="$(mktemp /tmp/nasflow-bench.XXXXXX.jsonl)"
load_before="$(uptime)"
# Both sides: same thread count; the allocator settings nasflow makes itself
# (nasflow_ops::tune_malloc) are given to PyTorch through glibc's tunables,
# so neither side pays mmap/munmap + page faults per activation.
export GLIBC_TUNABLES_TORCH="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295"
for case in "${cases[@]}"; do
    echo "bench: $case" >&2
    RAYON_NUM_THREADS="$threads" timeout 1800 "$bin" "$case" >>"$raw" \
        || echo "{\"side\":\"nasflow\",\"case\":\"$case\",\"error\":\"exit $?\"}" >>"$raw"
    BENCH_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
        GLIBC_TUNABLES="$GLIBC_TUNABLES_TORCH" \
        timeout 1800 "$py" bench/torch_bench.py "$case" >>"$raw" \
        || echo "{\"side\":\"torch\",\"case\":\"$case\",\"error\":\"exit $?\"}" >>"$raw"
done
load_after="$(uptime)"

"$py" bench/report.py --raw "$raw" --cases <("$bin" --list) \
    --load-before "$load_before" --load-after "$load_after" --threads "$threads" \
    --device "$device" --notes "$notes" >"$results"
echo "bench: wrote $results (raw lines: $raw)" >&2
