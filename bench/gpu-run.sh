#!/usr/bin/env bash
# Runs the binaries of gpu-pack/ (built elsewhere by bench/gpu-pack.sh) on a GPU machine that has
# the NVIDIA driver and a python3 with PyTorch and the nvidia-* wheels, but no Rust toolchain
# (docs/cuda.md, "On a lent GPU machine"). From the repo root, with gpu-pack/ beside it:
#
#   bash bench/gpu-run.sh                 # all three parts, ~5-8 minutes
#   bash bench/gpu-run.sh tests bench     # only some parts: tests, bench, darts
#
# Parts (a failure of one does not skip the others; each one's exit status is listed at the end):
#   tests  ops/tests/cuda.rs: every CUDA op against the CPU kernels (--test-threads=1)
#   bench  bench cases with BENCH_DEVICE=cuda on both sides (the nasflow bench example and
#          bench/torch_bench.py), report.py --device cuda -> $OUT/RESULTS-cuda.md, or
#          bench/RESULTS-cuda.md when $OUT is unset
#   darts  `nasflow run pipelines/quick/darts.yaml --device cuda` with fewer epochs; prints the test
#          accuracy
# Output goes to the terminal and, when $OUT is set (the run tool's output folder), to
# $OUT/gpu-run.log too; run directories and the unpacked binaries go under $GPU_RUN_DIR.
#
# Environment: GPU_PYTHON (default python3: holds torch and the nvidia-* wheels whose lib/ folders
# go on LD_LIBRARY_PATH), BENCH_PYTHON (the Python with torch for bench/torch_bench.py; default
# GPU_PYTHON), GPU_RUN_DIR (default /tmp/nasflow-gpu), GPU_EXTRA_LIBS (folders put
# before the others on LD_LIBRARY_PATH; only for testing this script without a GPU, see
# docs/cuda.md), BENCH_CASES (space-separated; default below), BENCH_ITERS (default 5),
# BENCH_WARMUP (default 2), BENCH_THREADS (default: the cores, at most 16), DARTS_PARAMS (the -p
# overrides of the darts part, space-separated; default below). Time limits in seconds, so that
# the whole run stays under ~8 minutes: TESTS_TIMEOUT (120), BENCH_BUDGET (180 for all cases; a
# case that cannot start in time is reported as skipped), CASE_TIMEOUT (60 per side and case),
# DARTS_TIMEOUT (150). DARTS_DEVICE (default cuda; cpu only to check the script without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

parts=("$@")
[ "${#parts[@]}" -gt 0 ] || parts=(tests bench darts)
for p in "${parts[@]}"; do
    case "$p" in tests|bench|darts) ;; *) echo "gpu-run: unknown part '$p' (tests, bench, darts)" >&2; exit 2 ;; esac
done

py="${GPU_PYTHON:-python3}"
bpy="${BENCH_PYTHON:-$py}"
work="${GPU_RUN_DIR:-/tmp/nasflow-gpu}"
cases="${BENCH_CASES:-op_dw3_s1 op_dw3_s2 op_max_s2 edge_64x16x32 edge_64x16x32_s2 search_quick eval_darts_v2}"
darts_params="${DARTS_PARAMS:-search.epochs=1 search.steps_per_epoch=30 retrain.epochs=2}"
out="${OUT:-}"

# The packed binaries are stripped: Rust backtraces would only list <unknown> frames.
export RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0

main() {
    local t0=$SECONDS
    declare -A rc=()
    echo "== gpu-run: $(date -Is), parts: ${parts[*]}"
    unpack || { echo "gpu-run: cannot unpack gpu-pack/ (build it with bench/gpu-pack.sh and carry it)"; return 2; }
    libpath || true
    machine
    for p in "${parts[@]}"; do
        local s=$SECONDS
        echo
        echo "== part $p (at $((s - t0)) s)"
        "part_$p" 2>&1 | tee "$work/part-$p.log"
        rc[$p]=${PIPESTATUS[0]}
        echo "== part $p: exit ${rc[$p]} in $((SECONDS - s)) s"
    done
    echo
    echo "== summary ($((SECONDS - t0)) s in all)"
    local worst=0
    for p in "${parts[@]}"; do
        printf '  %-6s exit %s%s\n' "$p" "${rc[$p]}" "$([ "${rc[$p]}" -eq 0 ] && echo ' (ok)' || echo ' (FAILED)')"
        case "$p" in
            tests) grep -E '^test result:' "$work/part-$p.log" | tail -1 | sed 's/^/         /' ;;
            bench) grep -cE '^\{"side":.*"median_ms"' "$work/part-$p.log" | sed 's|^|         sides with a timing: |; s|$| of '"$(( 2 * $(wc -w <<<"$cases") ))"'|' ;;
            darts) grep -E '^darts: status' "$work/part-$p.log" | tail -1 | sed 's/^/         /' ;;
        esac
        [ "${rc[$p]}" -eq 0 ] || worst=1
    done
    return $worst
}

unpack() {
    [ -f gpu-pack/MANIFEST ] || { echo "gpu-run: gpu-pack/MANIFEST missing"; return 1; }
    mkdir -p "$work/bin" || return 1
    echo "== pack"
    sed -n '1,/^$/p' gpu-pack/MANIFEST
    local f name want got
    for name in nasflow bench ops-cuda-test; do
        f="gpu-pack/$name.xz"
        if [ -f "$f" ] && command -v xz >/dev/null 2>&1; then xz -dc "$f" >"$work/bin/$name" || return 1
        elif [ -f "$f" ]; then
            "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
                "$f" "$work/bin/$name" || return 1
        elif [ -f "gpu-pack/$name" ]; then cp "gpu-pack/$name" "$work/bin/$name" || return 1
        else echo "gpu-run: $f missing"; return 1; fi
        chmod +x "$work/bin/$name"
        want="$(awk -v n="$name" '$1 == n && length($3) == 64 {print $3; exit}' gpu-pack/MANIFEST)"
        got="$(sha256sum "$work/bin/$name" | cut -d' ' -f1)"
        if [ "$want" != "$got" ]; then
            echo "gpu-run: $name: sha256 $got does not match the MANIFEST's $want"; return 1
        fi
    done
    echo "unpacked to $work/bin (sha256 as in the MANIFEST)"
}

# LD_LIBRARY_PATH: every lib/ folder of the nvidia-* wheels of $py (cuBLAS, cuRAND, NVRTC, the CUDA
# runtime), then the driver's folder if it is not a default one. libcuda.so.1 comes from the driver.
libpath() {
    local dirs
    dirs="$("$py" - <<'EOF'
import glob, os, site, sys
roots = [p for p in sys.path if p and os.path.isdir(p)]
try:
    roots += site.getsitepackages()
except AttributeError:
    pass
seen = []
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        d = os.path.realpath(d)
        if d not in seen:
            seen.append(d)
print(":".join(seen))
EOF
)"
    [ -n "$dirs" ] || echo "gpu-run: WARNING: $py has no nvidia-* wheels (nvidia/*/lib); relying on the system's CUDA libraries"
    local extra="${GPU_EXTRA_LIBS:-}" d
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib; do
        [ -e "$d/libcuda.so.1" ] && dirs="$dirs${dirs:+:}$d"
    done
    export LD_LIBRARY_PATH="${extra}${extra:+:}${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    local missing
    missing="$(for b in "$work"/bin/*; do ldd "$b" | grep 'not found' | sed "s|^|$(basename "$b"): |"; done | sort -u)"
    if [ -n "$missing" ]; then echo "gpu-run: WARNING: unresolved libraries:"; echo "$missing"; return 1; fi
    echo "every library of the binaries resolves ($(ldd "$work/bin/nasflow" | grep -oE '(libcuda|libcublas|libcublasLt|libcurand|libnvrtc|libcudart)\.so[.0-9]* => [^ ]*' | tr '\n' ' '))"
}

machine() {
    echo "== machine"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,memory.used --format=csv 2>&1 | head -5
    else
        echo "no nvidia-smi on the PATH"
    fi
    "$bpy" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available:", torch.cuda.is_available())' 2>&1 | tail -1
    echo "$(nproc) cores, $(uname -srm)"
}

part_tests() {
    # cargo runs a test binary from its crate's folder; do the same.
    (cd "$root/ops" && timeout -k 5 "${TESTS_TIMEOUT:-120}" "$work/bin/ops-cuda-test" --test-threads=1)
}

load() { uptime 2>/dev/null || echo "loadavg $(cat /proc/loadavg)"; }

part_bench() {
    local threads="${BENCH_THREADS:-$(n=$(nproc); [ "$n" -gt 16 ] && n=16; echo "$n")}"
    local raw="$work/bench.jsonl" list="$work/bench-cases.tsv" results tmo="${CASE_TIMEOUT:-60}" side
    : >"$raw"
    "$work/bin/bench" --list >"$list" || return 1
    export BENCH_DEVICE=cuda BENCH_ITERS="${BENCH_ITERS:-5}" BENCH_WARMUP="${BENCH_WARMUP:-2}"
    local load_before case failed=0
    load_before="$(load)"
    local end=$((SECONDS + ${BENCH_BUDGET:-180})) left
    for case in $cases; do
        left=$((end - SECONDS))
        if [ "$left" -lt 15 ]; then
            echo "bench: $case skipped (the part's time budget, BENCH_BUDGET, is spent)"
            for side in nasflow torch; do echo "{\"side\":\"$side\",\"case\":\"$case\",\"error\":\"skipped (time budget)\"}" >>"$raw"; done
            failed=1
            continue
        fi
        [ "$left" -lt $((2 * tmo)) ] && tmo=$((left / 2))
        echo "bench: $case (BENCH_ITERS=$BENCH_ITERS, $threads threads)"
        RAYON_NUM_THREADS="$threads" timeout "$tmo" "$work/bin/bench" "$case" >>"$raw" \
            || { local e=$?; failed=1; echo "{\"side\":\"nasflow\",\"case\":\"$case\",\"error\":\"exit $e\"}" >>"$raw"; }
        # The allocator settings nasflow makes itself (tune_malloc), given to PyTorch as in bench/run.sh.
        BENCH_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
            GLIBC_TUNABLES="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295" \
            timeout "$tmo" "$bpy" bench/torch_bench.py "$case" >>"$raw" \
            || { local e=$?; failed=1; echo "{\"side\":\"torch\",\"case\":\"$case\",\"error\":\"exit $e\"}" >>"$raw"; }
        tail -2 "$raw"
    done
    if [ -n "$out" ]; then results="$out/RESULTS-cuda.md"; else results="$root/bench/RESULTS-cuda.md"; fi
    "$py" bench/report.py --raw "$raw" --cases "$list" --load-before "$load_before" --load-after "$(load)" \
        --threads "$threads" --device cuda --generated-by "bench/gpu-run.sh (binaries from bench/gpu-pack.sh)" \
        --nasflow-build "commit $(sed -n 's/^commit: \([0-9a-f]\{12\}\).*/\1/p' gpu-pack/MANIFEST)$(grep -q '^tree: uncommitted' gpu-pack/MANIFEST && echo ' + uncommitted changes'), $(sed -n 's/^rustc: //p' gpu-pack/MANIFEST), release, built by bench/gpu-pack.sh (MANIFEST)" \
        >"$results" || return 1
    [ -n "$out" ] && cp "$raw" "$out/bench.jsonl"
    echo "bench: wrote $results"
    cat "$results"
    return $failed
}

part_darts() {
    local args=() p json="$work/darts.json" s
    for p in $darts_params; do args+=(-p "$p"); done
    rm -rf "$work/runs"
    local device="${DARTS_DEVICE:-cuda}"
    echo "nasflow run pipelines/quick/darts.yaml --device $device ${args[*]}"
    timeout -k 10 "${DARTS_TIMEOUT:-150}" "$work/bin/nasflow" run pipelines/quick/darts.yaml --device "$device" \
        --runs-dir "$work/runs" --json "${args[@]}" >"$json"
    s=$?
    [ -n "$out" ] && cp "$json" "$out/darts-run.json" 2>/dev/null
    "$py" - "$json" <<'EOF'
import json, os, sys
try:
    run = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print(f"darts: no run JSON ({e})")
    sys.exit(0)
for st in run.get("stages", []):
    m = st.get("metrics") or {}
    extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items() if isinstance(v, (int, float)))
    secs = f"{st['seconds']:.1f} s" if st.get("seconds") is not None else ""
    print(f"  stage {st.get('name')}: {st.get('status')} {secs} {extra}")
    if st.get("status") == "failed":
        print(f"    error: {st.get('error')}")
        log = os.path.join(run.get("path", ""), st.get("log", ""))
        if os.path.isfile(log):
            print(f"    --- {log} (last lines)")
            for line in open(log, errors="replace").read().splitlines()[-15:]:
                print("    " + line)
acc = [st["metrics"]["test_acc"] for st in run.get("stages", []) if (st.get("metrics") or {}).get("test_acc") is not None]
print(f"darts: status {run.get('status')}, test accuracy {acc[-1]:.2f} %" if acc else f"darts: status {run.get('status')}, no test accuracy")
EOF
    [ -n "$out" ] && [ -d "$work/runs" ] && tar -C "$work" -czf "$out/darts-runs.tar.gz" runs 2>/dev/null
    return $s
}

if [ -n "$out" ]; then
    mkdir -p "$out"
    main 2>&1 | tee "$out/gpu-run.log"
    exit "${PIPESTATUS[0]}"
else
    main 2>&1
fi
