/**
 * GRADMM for one batch of one class, written as the paper's three updates. Bookkeeping (checkpoints, progress,
 * files) lives in synthesize.ts.
 *
 *   target   G* = (1/n) Σ_i ∇_W CE(text_i + template → label word)         (+ DP noise N)
 *   f(X)     = 1 − cos(∇_W CE(X), G*)                                        (rank-1 factors, binding/src/gradmatch.h)
 *   repeat T times:
 *     z ← Π(x + λ/ρ)       top-k projection onto LM-likely tokens            (zUpdate)
 *     x ← argmin f(x) + ρ/2‖x − z + λ/ρ‖²   by Adam                          (xUpdate)
 *     λ ← λ + ρ(x − z)                                                        (dualUpdate)
 *   keep the best x; decode it once more.
 */
import { withCancel } from "../abort";
import type { GPT2Model, KVCache } from "../model";
import type { NativeCancelToken, NativeMatchTarget } from "../native";

export interface ClassSetup {
  /** First token of the class's label word. */
  labelToken: number;
  /** Template token ids, pinned at the end of every sequence. */
  templateTokens: number[];
  /** One-row KV cache holding the instruction prefix, and the logits after it. */
  prefix: KVCache;
  prefixLogits: Float32Array;
  target: NativeMatchTarget;
}

export interface BatchSettings {
  batchSize: number;
  freeLen: number;
  outerSteps: number;
  innerSteps: number;
  lr: number;
  maxGradNorm: number;
  rho: number;
  topK: number;
  initCandidates: number;
  initTokenNorm: number;
  allowed: Uint8Array;
  seed: number;
}

export interface BatchResult {
  /** Token ids of each sample's free positions [B][freeLen]. */
  tokens: number[][];
  /** 1 − cos of each decoded sample's own gradient to the target. */
  perSampleLoss: number[];
  /** f of the decoded batch, and of the best continuous x. */
  decodedLoss: number;
  bestXLoss: number;
  initLoss: number;
  /** f(x) after each x-update, and f of the projected z at each outer step. */
  xLossPerOuter: number[];
  zLossPerOuter: number[];
}

export interface BatchProgress {
  outer: number;
  outerSteps: number;
  xLoss: number;
  zLoss: number;
}

/** Embeddings of token ids [rows][len] into out [rows, L, C] at positions [0, len); wte is [V, C]. */
function embed(wte: Float32Array, C: number, tokens: ArrayLike<number>, rows: number, len: number, L: number, out: Float32Array, posOffset = 0): void {
  for (let b = 0; b < rows; b++)
    for (let i = 0; i < len; i++) {
      const t = tokens[b * len + i];
      out.set(wte.subarray(t * C, (t + 1) * C), (b * L + posOffset + i) * C);
    }
}

export async function runBatch(
  model: GPT2Model,
  cls: ClassSetup,
  s: BatchSettings,
  opts: { signal?: AbortSignal; onProgress?: (p: BatchProgress) => void; /** Before and after the initial candidates are tried. */ onInit?: (phase: "start" | "done") => void } = {},
): Promise<BatchResult> {
  const nat = model.native;
  const C = model.config.channels;
  const B = s.batchSize, free = s.freeLen, L = free + cls.templateTokens.length, n = B * L * C;
  const wte = model.inputEmbeddings();
  const templateEmbeds = new Float32Array(cls.templateTokens.length * C);
  embed(wte, C, cls.templateTokens, 1, cls.templateTokens.length, cls.templateTokens.length, templateEmbeds);
  const run = <T>(call: (token: NativeCancelToken) => Promise<T>) => withCancel(opts.signal, call);
  const f = (X: Float32Array, perSample?: Float32Array) => run((t) => nat.matchLoss(cls.target, { X, B, L, label: cls.labelToken, perSample }, t));

  // Init: best of N random batches, token vectors at norm 1.4, template pasted.
  opts.onInit?.("start");
  const x = new Float32Array(n);
  const initLoss = await run((t) =>
    nat.initCandidates(cls.target, { X: x, templateEmbeds, B, L, freeLen: free, label: cls.labelToken, candidates: s.initCandidates, seed: s.seed, tokenNorm: s.initTokenNorm }, t),
  );
  opts.onInit?.("done");
  const lambda = new Float32Array(n);
  const z = new Float32Array(n);
  const adam = { m: new Float32Array(n), v: new Float32Array(n), step: new Int32Array(1) };
  let best = { loss: Infinity, x: x.slice() };
  const xLossPerOuter: number[] = [], zLossPerOuter: number[] = [];

  // z ← Π(x + λ/ρ): project every free position; template positions keep the template's embeddings.
  const zUpdate = async (u: Float32Array): Promise<Int32Array> => {
    const outTokens = new Int32Array(B * free);
    await run((t) => nat.project({ U: u, B, L, freeLen: free, allowed: s.allowed, topk: s.topK, prefix: cls.prefix.handle, prefixLogits: cls.prefixLogits, outTokens }, t));
    embed(wte, C, outTokens, B, free, L, z);
    for (let b = 0; b < B; b++) z.set(templateEmbeds, (b * L + free) * C);
    return outTokens;
  };
  // x ← argmin_x f(x) + ρ/2‖x − z + λ/ρ‖² (Adam, inner steps, gradient clipping); returns f(x).
  const xUpdate = () =>
    run((t) =>
      nat.xUpdate(cls.target, { X: x, z, lam: lambda, adamM: adam.m, adamV: adam.v, adamStep: adam.step, B, L, freeLen: free, label: cls.labelToken, steps: s.innerSteps, rho: s.rho, lr: s.lr, maxGradNorm: s.maxGradNorm }, t),
    );
  // λ ← λ + ρ(x − z) on the free positions.
  const dualUpdate = () => {
    for (let b = 0; b < B; b++)
      for (let i = b * L * C, e = i + free * C; i < e; i++) lambda[i] += s.rho * (x[i] - z[i]);
  };

  const u = new Float32Array(n);
  for (let outer = 0; outer < s.outerSteps; outer++) {
    for (let i = 0; i < n; i++) u[i] = x[i] + lambda[i] / s.rho;
    await zUpdate(u);
    const zLoss = await f(z);
    const xLoss = await xUpdate();
    dualUpdate();
    if (xLoss < best.loss) best = { loss: xLoss, x: x.slice() };
    xLossPerOuter.push(xLoss);
    zLossPerOuter.push(zLoss);
    opts.onProgress?.({ outer: outer + 1, outerSteps: s.outerSteps, xLoss, zLoss });
  }

  // Decode the best x once more.
  const finalTokens = await zUpdate(best.x);
  const perSample = new Float32Array(B);
  const decodedLoss = await f(z, perSample);
  const tokens: number[][] = [];
  for (let b = 0; b < B; b++) tokens.push(Array.from(finalTokens.subarray(b * free, (b + 1) * free)));
  return { tokens, perSampleLoss: Array.from(perSample), decodedLoss, bestXLoss: best.loss, initLoss, xLossPerOuter, zLossPerOuter };
}
