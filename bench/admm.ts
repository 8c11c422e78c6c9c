/**
 * `npm run bench -- admm`: our GRADMM's stage times on one model (default: models/default): one inner x-update
 * step, one projection, one full batch at paper settings, with the FLOP count of an inner step and the GFLOP/s.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel, setThreads, Tokenizer } from "../ts/index";
import { native, packageRoot, alphabeticTokenMask, pieceTokens, runBatch, startTokens, type BatchSettings, type ClassSetup } from "../ts/advanced";

export interface AdmmBenchResult {
  model: string;
  params: number;
  B: number;
  L: number;
  /** Building one class's target from 25 real sequences of 128 tokens (forward only). */
  target_s: number;
  /** Scoring one random init candidate batch (a forward of B×L, no backward). */
  init_candidate_s: number;
  inner_step_s: number;
  projection_s: number;
  batch_s: number;
  /** FLOPs of one inner step (forward + backward to the inputs of B×L tokens, lm_head at the last position). */
  inner_step_flops: number;
  gflops: number;
}

/** FLOPs of one x-update step for a GPT-2 of width C and `layers` layers on B rows of L tokens. */
export function xUpdateFlops(C: number, layers: number, V: number, B: number, L: number): number {
  const linear = 2 * 12 * C * C * layers * B * L; // qkv, proj, fc, fc-proj; once forward, once for d/dinput
  const attention = 2 * 2 * L * L * C * layers * B; // QKᵀ and att·V per layer (forward)
  const lmHead = 2 * V * C * B; // last position only
  return 2 * linear + 3 * attention + 2 * lmHead;
}

/** The same count for a Llama-family model: every non-embedding weight once in the forward, once for d/dinput. */
export function llamaXUpdateFlops(numParams: number, c: { vocabSize: number; channels: number; numLayers: number; numHeads: number; headDim?: number; tieWordEmbeddings?: boolean }, B: number, L: number): number {
  const nonEmbedding = numParams - c.vocabSize * c.channels * (c.tieWordEmbeddings ? 1 : 2);
  const linear = 2 * nonEmbedding * B * L;
  const attention = 2 * 2 * L * L * c.numHeads * (c.headDim ?? c.channels / c.numHeads) * c.numLayers * B;
  const lmHead = 2 * c.vocabSize * c.channels * B;
  return 2 * linear + 3 * attention + 2 * lmHead;
}

async function median(fn: () => Promise<void>, reps: number): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e9);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

export async function benchAdmm(opts: { modelDir?: string; quick?: boolean; threads?: number; log?: (s: string) => void } = {}): Promise<AdmmBenchResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  if (opts.threads) setThreads(opts.threads);
  const dir = opts.modelDir ?? path.join(packageRoot(), "models", "default");
  const loaded = loadModel(dir); // a folder, a GGUF file or a known model name
  const model = loaded.model;
  if (!loaded.tokenizer) throw new Error(`${dir} has no tokenizer`);
  const tok = loaded.tokenizer;
  const { channels: C, numLayers, vocabSize: V } = model.config;
  const B = 10, template = pieceTokens(tok, " It was"), lead = startTokens(tok);
  // the paper's ~100-token instruction prefix and L≈48, as far as the model's context allows
  const promptText = "Write a positive movie review about a film you watched recently, in plain English, with details about the plot, the acting, the music and the ending, as a critic would. ".repeat(2);
  const prompt = startTokens(tok, promptText).slice(0, Math.min(100, model.config.maxSeqLen - 48));
  const free = Math.min(48, model.config.maxSeqLen - prompt.length, model.config.maxSeqLen - template.length - lead.length);
  const L = lead.length + free + template.length;
  // a target from 25 synthetic "real" sequences (token ids are arbitrary: only the shapes matter for timing)
  const n = 25, T = Math.min(128, model.config.maxSeqLen);
  const tokens = new Int32Array(n * T).map((_, i) => (i * 7919) % V);
  const buildTarget = () => model.native.buildTarget({ tokens, n, T, lastPos: new Int32Array(n).fill(T - 1), labels: new Int32Array(n).fill(pieceTokens(tok, " great")[0]) });
  const targetS = await median(async () => void (await buildTarget()), 3);
  const target = await buildTarget();
  const prefix = model.createKVCache(1, prompt.length);
  const prefixLogits = await model.decode(prefix, { tokens: Int32Array.from(prompt), T: prompt.length });
  const cls: ClassSetup = { labelToken: pieceTokens(tok, " great")[0], templateTokens: template, leadTokens: lead, prefix, prefixLogits, target };
  const allowed = alphabeticTokenMask(tok);
  const X = new Float32Array(B * L * C).map((_, i) => Math.sin(i) * 0.1);
  const newBatch = () => new (native().Batch)(model.native, target, { B, L, freeLen: free, label: cls.labelToken, templateTokens: Int32Array.from(template), leadTokens: Int32Array.from(lead) });
  const xBatch = newBatch();
  xBatch.write("x", X); // z = 0, λ = 0
  log(`model ${dir}: ${model.numParams} params, B=${B}, L=${L} (${free} free + ${template.length} template), prefix ${prompt.length} tokens`);
  const innerSteps = opts.quick ? 5 : 20;
  const innerTotal = await median(
    async () => void (await xBatch.xUpdate({ steps: innerSteps, rho: 0.1, lr: 0.008, maxGradNorm: 1 })),
    3,
  );
  const inner = innerTotal / (innerSteps + 1); // + the closing loss evaluation (a forward, counted as one step: upper bound)
  const initN = opts.quick ? 5 : 20;
  const initS =
    (await median(async () => void (await newBatch().init({ candidates: initN, seed: 1, tokenNorm: 1.4 })), 3)) / initN;
  const outTokens = new Int32Array(B * free);
  const projection = await median(async () => model.native.project({ U: X, B, L, freeLen: free, allowed, topk: 200, prefix: prefix.handle, prefixLogits, outTokens }), 3);
  const settings: BatchSettings = {
    batchSize: B, freeLen: free, outerSteps: opts.quick ? 3 : 30, innerSteps: opts.quick ? 5 : 50, lr: 0.008, maxGradNorm: 1, rho: 0.1,
    topK: 200, initCandidates: opts.quick ? 20 : 500, initTokenNorm: 1.4, allowed, seed: 1,
  };
  log(`one ${opts.quick ? "quick" : "full (paper settings)"} batch…`);
  const t = process.hrtime.bigint();
  await runBatch(model, cls, settings);
  const batch = Number(process.hrtime.bigint() - t) / 1e9;
  const flops = model.config.architecture === "llama" ? llamaXUpdateFlops(model.numParams, model.config, B, L) : xUpdateFlops(C, numLayers, V, B, L);
  const r = { model: dir, params: model.numParams, B, L, target_s: targetS, init_candidate_s: initS, inner_step_s: inner, projection_s: projection, batch_s: batch, inner_step_flops: flops, gflops: flops / inner / 1e9 };
  model.dispose();
  return r;
}
