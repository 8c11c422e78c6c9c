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
 * The batch's x, z, λ and Adam moments stay in the engine (binding/engine/batch.h) for the whole batch.
 */
import { withCancel } from "../abort";
import type { GPT2Model, KVCache } from "../model";
import { native, type NativeBuildTargetArgs, type NativeCancelToken, type NativeMatchTarget } from "../native";
import type { Tokenizer } from "../tokenizer";
import { startTokens } from "./lm";

export interface ClassSetup {
  /** First token of the class's label word. */
  labelToken: number;
  /** Template token ids, pinned at the end of every sequence. */
  templateTokens: number[];
  /** Token ids pinned at the start of every sequence (the tokenizer's <bos>, or none): startTokens(tokenizer). */
  leadTokens: number[];
  /** One-row KV cache holding the instruction prefix, and the logits after it. */
  prefix: KVCache;
  prefixLogits: Float32Array;
  target: NativeMatchTarget;
}

/**
 * Every class's target as method.objective asks: `paper` = each class's own (buildTarget of its inputs);
 * `whitened_contrastive` = the classes' plain targets combined (whitenedContrastiveTargets). One class after another,
 * so the same inputs give the same bits wherever they are built (synthesize, a queue worker).
 */
export async function classTargets(
  model: GPT2Model,
  argsPerClass: readonly NativeBuildTargetArgs[],
  method: { objective: "paper" | "whitened_contrastive"; whitening_shrinkage: number },
  signal?: AbortSignal,
): Promise<NativeMatchTarget[]> {
  const targets: NativeMatchTarget[] = [];
  for (const args of argsPerClass) targets.push(await withCancel(signal, (t) => model.native.buildTarget(args, t)));
  if (method.objective !== "whitened_contrastive") return targets;
  return withCancel(signal, () => model.native.whitenedContrastiveTargets(targets, method.whitening_shrinkage));
}

/**
 * method.target_rows as buildTarget's `rows`: label_words = every class's label token (the label word's first token),
 * distinct and ascending, for every class's target; all = null (the whole lm_head).
 */
export function labelWordRows(targetRowsSetting: "all" | "label_words", labelTokens: readonly number[]): Int32Array | null {
  return targetRowsSetting === "label_words" ? Int32Array.from([...new Set(labelTokens)].sort((a, b) => a - b)) : null;
}

/**
 * The target's inputs for real texts: each text's start tokens (startTokens: <bos> where the tokenizer puts one), cut
 * to leave room for the template in the model's context, then the template; right-padded to the longest, with each
 * row's last position (where the label word is the target).
 */
export function targetRows(tokenizer: Tokenizer, texts: readonly string[], templateTokens: readonly number[], maxSeqLen: number): { tokens: Int32Array; n: number; T: number; lastPos: Int32Array; seqs: number[][] } {
  const seqs = texts.map((t) => [...startTokens(tokenizer, t).slice(0, maxSeqLen - templateTokens.length), ...templateTokens]);
  const T = Math.max(...seqs.map((q) => q.length));
  const tokens = new Int32Array(seqs.length * T), lastPos = new Int32Array(seqs.length);
  seqs.forEach((q, i) => {
    tokens.set(q, i * T);
    lastPos[i] = q.length - 1;
  });
  return { tokens, n: seqs.length, T, lastPos, seqs };
}

/** The projection's prefix: a one-row KV cache holding `prompt` (the instruction's tokens) and the logits after it. */
export async function promptPrefix(model: GPT2Model, prompt: readonly number[], signal?: AbortSignal): Promise<{ prefix: KVCache; prefixLogits: Float32Array }> {
  const prefix = model.createKVCache(1, prompt.length);
  const prefixLogits = await model.decode(prefix, { tokens: Int32Array.from(prompt), T: prompt.length }, { signal });
  return { prefix, prefixLogits };
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
  /** best_x (default, the paper's): Π(best x); best_z: the lowest-f(z) projection made, Π(best x) included. */
  decode?: "best_x" | "best_z";
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
  /** With decode best_z only: the outer step (1-based) whose projection was returned, 0 for Π(best x). */
  decodedFromOuter?: number;
}

export interface BatchProgress {
  outer: number;
  outerSteps: number;
  xLoss: number;
  zLoss: number;
}

export async function runBatch(
  model: GPT2Model,
  cls: ClassSetup,
  s: BatchSettings,
  opts: { signal?: AbortSignal; onProgress?: (p: BatchProgress) => void; /** Before and after the initial candidates are tried. */ onInit?: (phase: "start" | "done") => void } = {},
): Promise<BatchResult> {
  const B = s.batchSize, free = s.freeLen, L = cls.leadTokens.length + free + cls.templateTokens.length;
  const run = <T>(call: (token: NativeCancelToken) => Promise<T>) => withCancel(opts.signal, call);
  // x, z, λ and Adam's moments live in the engine (on the model's backend) for the whole batch
  const batch = new (native().Batch)(model.native, cls.target, {
    B,
    L,
    freeLen: free,
    label: cls.labelToken,
    templateTokens: Int32Array.from(cls.templateTokens),
    leadTokens: Int32Array.from(cls.leadTokens),
  });

  // Init: best of N random batches, token vectors at norm 1.4, template pasted.
  opts.onInit?.("start");
  const initLoss = await run((t) => batch.init({ candidates: s.initCandidates, seed: s.seed, tokenNorm: s.initTokenNorm }, t));
  opts.onInit?.("done");
  let bestLoss = Infinity;
  const xLossPerOuter: number[] = [], zLossPerOuter: number[] = [];

  // z ← Π(x + λ/ρ) (or Π(best x)): project every free position; template positions keep the template's embeddings.
  const zUpdate = async (from: "dual" | "best"): Promise<Int32Array> => {
    const outTokens = new Int32Array(B * free);
    await run((t) => batch.project({ from, rho: s.rho, allowed: s.allowed, topk: s.topK, prefix: cls.prefix.handle, prefixLogits: cls.prefixLogits, outTokens }, t));
    return outTokens;
  };
  // f(z), and each sample's own loss when asked.
  const f = (perSample?: Float32Array) => run((t) => batch.zLoss({ perSample }, t));
  // x ← argmin_x f(x) + ρ/2‖x − z + λ/ρ‖² (Adam, inner steps, gradient clipping); returns f(x).
  const xUpdate = () => run((t) => batch.xUpdate({ steps: s.innerSteps, rho: s.rho, lr: s.lr, maxGradNorm: s.maxGradNorm }, t));
  // λ ← λ + ρ(x − z) on the free positions.
  const dualUpdate = () => batch.dualUpdate({ rho: s.rho });

  // decode best_z: the lowest-f(z) projection so far, its tokens and each sample's own loss
  const keepZ = s.decode === "best_z";
  let bestZ: { loss: number; tokens: Int32Array; perSample: Float32Array; outer: number } | null = null;
  for (let outer = 0; outer < s.outerSteps; outer++) {
    const zTokens = await zUpdate("dual");
    const perZ = keepZ ? new Float32Array(B) : undefined;
    const zLoss = await f(perZ);
    if (keepZ && (!bestZ || zLoss < bestZ.loss)) bestZ = { loss: zLoss, tokens: zTokens, perSample: perZ!, outer: outer + 1 };
    const xLoss = await xUpdate();
    await dualUpdate();
    if (xLoss < bestLoss) {
      bestLoss = xLoss;
      await batch.keepBest();
    }
    xLossPerOuter.push(xLoss);
    zLossPerOuter.push(zLoss);
    opts.onProgress?.({ outer: outer + 1, outerSteps: s.outerSteps, xLoss, zLoss });
  }

  // Decode the best x once more (and, with decode best_z, keep an earlier projection where its f(z) is lower).
  let finalTokens: Int32Array = await zUpdate("best");
  let perSample: Float32Array = new Float32Array(B);
  let decodedLoss = await f(perSample);
  let decodedFromOuter: number | undefined;
  if (keepZ) {
    decodedFromOuter = 0;
    if (bestZ && bestZ.loss < decodedLoss) ({ tokens: finalTokens, perSample, loss: decodedLoss, outer: decodedFromOuter } = bestZ);
  }
  const tokens: number[][] = [];
  for (let b = 0; b < B; b++) tokens.push(Array.from(finalTokens.subarray(b * free, (b + 1) * free)));
  const result: BatchResult = { tokens, perSampleLoss: Array.from(perSample), decodedLoss, bestXLoss: bestLoss, initLoss, xLossPerOuter, zLossPerOuter };
  if (decodedFromOuter !== undefined) result.decodedFromOuter = decodedFromOuter;
  return result;
}
