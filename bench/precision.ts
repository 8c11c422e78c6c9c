/**
 * `npm run bench -- precision [--model NAME] [--quick] [--json]`: precision bf16 against float32 on the same model
 * and the same inputs (issue #22 item 3): the matching loss f(X) and its x-gradient (cosine), the tokens the
 * projection picks (fraction of positions with the same token), a few x-update steps from the same start, and the
 * times of one x-update step and of one projection in each precision. Real IMDB reviews are the class's examples and
 * X starts from the embeddings of random allowed tokens (as a batch's init does), so the numbers are those of a run.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bf16Support, getThreads, loadModel, setThreads, type Precision } from "../ts/index";
import { alphabeticTokenMask, native, packageRoot, pieceTokens, sgemmKernel, startTokens } from "../ts/advanced";

export interface PrecisionSide {
  precision: Precision;
  /** float32: the SGEMM kernel; bf16: the bf16 kernel (each bf16 kernel this CPU has gets its own side). */
  kernel: string;
  /** f(X) at the shared start X, and after the x-update steps from it. */
  f_start: number;
  f_after_steps: number;
  /** Seconds: one x-update step (forward + backward to X + Adam), one projection (free_len decoding steps). */
  x_step_s: number;
  projection_s: number;
  /** Bytes of the packed bf16 weight copies (0 in float32). */
  bf16_bytes: number;
}

export interface PrecisionBenchResult {
  model: string;
  params: number;
  cpu: string;
  cpu_flags: string[];
  threads: number;
  sgemm_kernel: string;
  B: number;
  L: number;
  free_len: number;
  real_examples: number;
  x_steps: number;
  sides: PrecisionSide[];
  /** The comparisons below are of the first bf16 side (the kernel `auto` picks) against float32. */
  /** |f_bf16 − f_f32| / |f_f32| at the shared X. */
  f_rel_diff: number;
  /** cos(∇_X f in bf16, ∇_X f in float32) at the shared X, and the gradients' norm ratio. */
  x_grad_cosine: number;
  x_grad_norm_ratio: number;
  /** Fraction of the B·free_len projection positions where bf16 picks float32's token (same U, same prefix). */
  projection_same_token: number;
  /** The same after the x-update steps (each precision from its own x). */
  projection_same_token_after_steps: number;
  speedup_x_step: number;
  speedup_projection: number;
  /** Every bf16 side against float32: kernel, the same comparisons and speed-ups. */
  per_kernel: { kernel: string; f_rel_diff: number; x_grad_cosine: number; projection_same_token: number; projection_same_token_after_steps: number; speedup_x_step: number; speedup_projection: number }[];
}

async function median(fn: () => Promise<unknown>, reps: number): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e9);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) (d += a[i] * b[i]), (na += a[i] * a[i]), (nb += b[i] * b[i]);
  return d / Math.sqrt(na * nb);
}
function norm(a: Float32Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s);
}

function cpuFlags(): string[] {
  try {
    const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags")) ?? "";
    return line.split(":")[1].trim().split(/\s+/).filter((f) => /^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx512_fp16|amx_bf16|amx_tile)$/.test(f));
  } catch {
    return [];
  }
}

export async function benchPrecision(opts: { model?: string; quick?: boolean; threads?: number; log?: (s: string) => void } = {}): Promise<PrecisionBenchResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  if (opts.threads) setThreads(opts.threads);
  const support = bf16Support();
  if (!support.available) throw new Error(`bench precision needs bf16: ${support.missing}`);
  const source = opts.model ?? path.join(packageRoot(), "models", "default");
  const loaded = loadModel(source);
  const { model } = loaded;
  const tok = loaded.tokenizer;
  if (!tok) throw new Error(`${source} has no tokenizer`);
  try {
    const { channels: C, vocabSize: V, maxSeqLen } = model.config;
    const B = 10;
    // the class: IMDB positive reviews (examples/data/imdb) as the real examples, " great" the label word
    const rows = fs.readFileSync(path.join(packageRoot(), "examples", "data", "imdb", "train.jsonl"), "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as { text: string; label: number });
    const n = opts.quick ? 16 : 32;
    const real = rows.filter((r) => r.label === 1).slice(0, n);
    const template = pieceTokens(tok, " All in all, the movie was");
    const label = pieceTokens(tok, " great")[0];
    const T = Math.min(128, maxSeqLen);
    const tokens = new Int32Array(n * T);
    const lastPos = new Int32Array(n);
    real.forEach((r, i) => {
      const ids = [...startTokens(tok, r.text).slice(0, T - template.length), ...template];
      tokens.set(ids, i * T);
      lastPos[i] = ids.length - 1;
    });
    const labels = new Int32Array(n).fill(label);
    const prompt = startTokens(tok, "Write a positive movie review about a film you watched recently, with details about the plot, the acting and the ending.");
    const free = Math.min(opts.quick ? 12 : 24, maxSeqLen - prompt.length - template.length);
    const L = free + template.length;
    const allowed = alphabeticTokenMask(tok);
    const allowedIds = [...allowed.keys()].filter((v) => allowed[v]);
    // the shared start: embeddings of random allowed tokens on the free positions, the template's after them
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const ids: number[] = [];
    for (let b = 0; b < B; b++)
      for (let t = 0; t < L; t++) ids.push(t < free ? allowedIds[Math.floor(rnd() * allowedIds.length)] : template[t - free]);
    const X = model.tokenEmbeddings(ids); // [B*L, C], scaled as a token lookup is
    // U for the projection: X moved a little (as x after an x-update is)
    const U = X.map((v, i) => v + 0.02 * Math.sin(i * 12.9898));
    const xSteps = opts.quick ? 5 : 10;
    log(`model ${source}: ${model.numParams} params, ${n} real examples, B=${B}, L=${L} (${free} free), threads ${getThreads()}`);

    const sides: (PrecisionSide & { dX: Float32Array; f: number; proj: Int32Array; projAfter: Int32Array })[] = [];
    const kernels = (["amx-bf16", "avx512bf16"] as const).filter((k) => native().forceBf16Kernel(k));
    native().forceBf16Kernel("auto");
    const runs: [Precision, (typeof kernels)[number] | null][] = [["float32", null], ...kernels.map((k): [Precision, (typeof kernels)[number]] => ["bf16", k])];
    for (const [precision, kernel] of runs) {
      if (kernel) native().forceBf16Kernel(kernel);
      model.setPrecision(precision);
      const target = await model.native.buildTarget({ tokens, n, T, lastPos, labels });
      const prefix = model.createKVCache(1, prompt.length);
      const prefixLogits = await model.decode(prefix, { tokens: Int32Array.from(prompt), T: prompt.length });
      const dX = new Float32Array(X.length);
      const f = await model.native.matchLoss(target, { X, B, L, label, dX });
      const proj = new Int32Array(B * free);
      const project = (u: Float32Array, out: Int32Array) => model.native.project({ U: u, B, L, freeLen: free, allowed, topk: 200, prefix: prefix.handle, prefixLogits, outTokens: out });
      await project(U, proj);
      const projection_s = await median(() => project(U, new Int32Array(B * free)), opts.quick ? 2 : 3);
      // x-update steps from the same start (z = X, λ = 0)
      const batch = new (native().Batch)(model.native, target, { B, L, freeLen: free, label, templateTokens: Int32Array.from(template) });
      batch.write("x", X);
      batch.write("z", X);
      const fAfter = await batch.xUpdate({ steps: xSteps, rho: 0.1, lr: 0.008, maxGradNorm: 1 });
      const projAfter = new Int32Array(B * free);
      await project(batch.read("x"), projAfter);
      const timed = new (native().Batch)(model.native, target, { B, L, freeLen: free, label, templateTokens: Int32Array.from(template) });
      timed.write("x", X);
      timed.write("z", X);
      const steps = opts.quick ? 3 : 5;
      const x_step_s = (await median(() => timed.xUpdate({ steps, rho: 0.1, lr: 0.008, maxGradNorm: 1 }), opts.quick ? 2 : 3)) / (steps + 1);
      const info = model.precisionInfo();
      sides.push({ precision, kernel: precision === "bf16" ? info.kernel ?? "?" : sgemmKernel(), f_start: f, f_after_steps: fAfter, x_step_s, projection_s, bf16_bytes: info.bf16Bytes, dX, f, proj, projAfter });
      log(`${precision}${kernel ? ` (${kernel})` : ""}: f(X) ${f.toFixed(6)}, after ${xSteps} steps ${fAfter.toFixed(6)}, x-update step ${(x_step_s * 1e3).toFixed(1)} ms, projection ${(projection_s * 1e3).toFixed(1)} ms`);
    }
    native().forceBf16Kernel("auto");
    const [a, b] = sides;
    const same = (p: Int32Array, q: Int32Array) => p.reduce((s, v, i) => s + (v === q[i] ? 1 : 0), 0) / p.length;
    const per_kernel = sides.slice(1).map((s) => ({
      kernel: s.kernel,
      f_rel_diff: Math.abs(s.f - a.f) / Math.abs(a.f),
      x_grad_cosine: cosine(a.dX, s.dX),
      projection_same_token: same(a.proj, s.proj),
      projection_same_token_after_steps: same(a.projAfter, s.projAfter),
      speedup_x_step: a.x_step_s / s.x_step_s,
      speedup_projection: a.projection_s / s.projection_s,
    }));
    return {
      model: source,
      params: model.numParams,
      cpu: os.cpus()[0]?.model ?? "?",
      cpu_flags: cpuFlags(),
      threads: getThreads(),
      sgemm_kernel: sgemmKernel(),
      B,
      L,
      free_len: free,
      real_examples: n,
      x_steps: xSteps,
      sides: sides.map(({ dX: _d, f: _f, proj: _p, projAfter: _q, ...s }) => s),
      f_rel_diff: Math.abs(b.f - a.f) / Math.abs(a.f),
      x_grad_cosine: cosine(a.dX, b.dX),
      x_grad_norm_ratio: norm(b.dX) / norm(a.dX),
      projection_same_token: same(a.proj, b.proj),
      projection_same_token_after_steps: same(a.projAfter, b.projAfter),
      speedup_x_step: a.x_step_s / b.x_step_s,
      speedup_projection: a.projection_s / b.projection_s,
      per_kernel,
    };
  } finally {
    loaded.dispose();
  }
}

export function formatPrecisionTable(r: PrecisionBenchResult): string {
  const a = r.sides[0];
  const cell = (v: string) => v.padStart(16);
  const row = (k: string, f: (s: PrecisionSide, i: number) => string) => `${k.padEnd(32)}${r.sides.map((s, i) => cell(f(s, i))).join("")}`;
  const vs = (i: number) => r.per_kernel[i - 1];
  return [
    `model ${r.model} (${(r.params / 1e6).toFixed(1)}M params), B=${r.B}, L=${r.L} (${r.free_len} free), ${r.real_examples} real examples; ${r.cpu}, ${r.threads} threads`,
    `cpu flags: ${r.cpu_flags.join(" ")}`,
    row("", (s) => s.precision),
    row("kernel", (s) => s.kernel),
    row("matching loss f(X)", (s) => s.f_start.toFixed(6)),
    row("  relative difference", (s, i) => (i ? `${(vs(i).f_rel_diff * 100).toFixed(3)}%` : "")),
    row("x-gradient cosine vs float32", (s, i) => (i ? vs(i).x_grad_cosine.toFixed(6) : "")),
    row("same token (projection of U)", (s, i) => (i ? `${(vs(i).projection_same_token * 100).toFixed(1)}%` : "")),
    row(`same token after ${r.x_steps} x steps`, (s, i) => (i ? `${(vs(i).projection_same_token_after_steps * 100).toFixed(1)}%` : "")),
    row(`f after ${r.x_steps} x-update steps`, (s) => s.f_after_steps.toFixed(6)),
    row("x-update step (ms)", (s) => (s.x_step_s * 1e3).toFixed(1)),
    row("  speed-up", (s, i) => (i ? `${vs(i).speedup_x_step.toFixed(2)}×` : "")),
    row("projection (ms)", (s) => (s.projection_s * 1e3).toFixed(1)),
    row("  speed-up", (s, i) => (i ? `${vs(i).speedup_projection.toFixed(2)}×` : "")),
    row("bf16 weight copies (MiB)", (s) => (s.bf16_bytes / 2 ** 20).toFixed(1)),
  ].join("\n");
}
