/**
 * Ablation `continuous_gm`: gradient matching on continuous input embeddings without the ADMM projection, then one
 * nearest-token decoding at the end.
 *
 *   x ← argmin_x f(x)   Adam for outer × inner steps (xUpdate with ρ = 0, λ = 0: plain Adam on f)
 *   tokens ← Π₁(x_best)  per position, the allowed token whose embedding has the highest cosine to x (top-1)
 *
 * Same initialisation, step counts, lr and clipping as GRADMM's runBatch; only the z- and dual updates are gone.
 */
import { withCancel, type GPT2Model, native, type BatchResult, type BatchSettings, type ClassSetup } from "../../ts/advanced";

export async function runContinuousBatch(
  model: GPT2Model,
  cls: ClassSetup,
  s: BatchSettings,
  opts: { signal?: AbortSignal; onProgress?: (outer: number) => void } = {},
): Promise<BatchResult> {
  const B = s.batchSize, free = s.freeLen, L = free + cls.templateTokens.length;
  const batch = new (native().Batch)(model.native, cls.target, { B, L, freeLen: free, label: cls.labelToken, templateTokens: Int32Array.from(cls.templateTokens) });
  const initLoss = await withCancel(opts.signal, (t) => batch.init({ candidates: s.initCandidates, seed: s.seed, tokenNorm: s.initTokenNorm }, t));
  let bestLoss = Infinity;
  const xLossPerOuter: number[] = [];
  for (let outer = 0; outer < s.outerSteps; outer++) {
    // z = 0 and λ = 0 with ρ = 0: plain Adam on f
    const loss = await withCancel(opts.signal, (t) => batch.xUpdate({ steps: s.innerSteps, rho: 0, lr: s.lr, maxGradNorm: s.maxGradNorm }, t));
    if (loss < bestLoss) {
      bestLoss = loss;
      await batch.keepBest();
    }
    xLossPerOuter.push(loss);
    opts.onProgress?.(outer + 1);
  }
  // nearest-token decoding: the projection with k = 1 ignores the LM scores and takes the top cosine
  const outTokens = new Int32Array(B * free);
  await withCancel(opts.signal, (t) =>
    batch.project({ from: "best", rho: 1, allowed: s.allowed, topk: 1, prefix: cls.prefix.handle, prefixLogits: cls.prefixLogits, outTokens }, t),
  );
  const perSample = new Float32Array(B);
  const decodedLoss = await withCancel(opts.signal, (t) => batch.zLoss({ perSample }, t));
  const tokens: number[][] = [];
  for (let b = 0; b < B; b++) tokens.push(Array.from(outTokens.subarray(b * free, (b + 1) * free)));
  return { tokens, perSampleLoss: Array.from(perSample), decodedLoss, bestXLoss: bestLoss, initLoss, xLossPerOuter, zLossPerOuter: [] };
}
