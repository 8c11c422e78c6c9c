/**
 * Ablation `continuous_gm`: gradient matching on continuous input embeddings without the ADMM projection, then one
 * nearest-token decoding at the end.
 *
 *   x ← argmin_x f(x)   Adam for outer × inner steps (xUpdate with ρ = 0, λ = 0: plain Adam on f)
 *   tokens ← Π₁(x_best)  per position, the allowed token whose embedding has the highest cosine to x (top-1)
 *
 * Same initialisation, step counts, lr and clipping as GRADMM's runBatch; only the z- and dual updates are gone.
 */
import { withCancel } from "../../ts/abort";
import type { GPT2Model } from "../../ts/model";
import type { BatchResult, BatchSettings, ClassSetup } from "../../ts/gradmm/method";

export async function runContinuousBatch(
  model: GPT2Model,
  cls: ClassSetup,
  s: BatchSettings,
  opts: { signal?: AbortSignal; onProgress?: (outer: number) => void } = {},
): Promise<BatchResult> {
  const nat = model.native;
  const C = model.config.channels, V = model.config.vocabSize;
  const B = s.batchSize, free = s.freeLen, L = free + cls.templateTokens.length, n = B * L * C;
  const wte = model.inputEmbeddings();
  const templateEmbeds = new Float32Array(cls.templateTokens.length * C);
  cls.templateTokens.forEach((t, i) => templateEmbeds.set(wte.subarray(t * C, (t + 1) * C), i * C));
  const x = new Float32Array(n);
  const initLoss = await withCancel(opts.signal, (t) =>
    nat.initCandidates(cls.target, { X: x, templateEmbeds, B, L, freeLen: free, label: cls.labelToken, candidates: s.initCandidates, seed: s.seed, tokenNorm: s.initTokenNorm }, t),
  );
  const zeros = new Float32Array(n);
  const adam = { m: new Float32Array(n), v: new Float32Array(n), step: new Int32Array(1) };
  let best = { loss: Infinity, x: x.slice() };
  const xLossPerOuter: number[] = [];
  for (let outer = 0; outer < s.outerSteps; outer++) {
    const loss = await withCancel(opts.signal, (t) =>
      nat.xUpdate(
        cls.target,
        { X: x, z: zeros, lam: zeros, adamM: adam.m, adamV: adam.v, adamStep: adam.step, B, L, freeLen: free, label: cls.labelToken, steps: s.innerSteps, rho: 0, lr: s.lr, maxGradNorm: s.maxGradNorm },
        t,
      ),
    );
    if (loss < best.loss) best = { loss, x: x.slice() };
    xLossPerOuter.push(loss);
    opts.onProgress?.(outer + 1);
  }
  // nearest-token decoding: the projection with k = 1 ignores the LM scores and takes the top cosine
  const outTokens = new Int32Array(B * free);
  await withCancel(opts.signal, (t) =>
    nat.project({ U: best.x, B, L, freeLen: free, allowed: s.allowed, topk: 1, prefix: cls.prefix.handle, prefixLogits: cls.prefixLogits, outTokens }, t),
  );
  const z = new Float32Array(n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < free; i++) {
      const tok = outTokens[b * free + i];
      if (tok < 0 || tok >= V) throw new RangeError(`projection returned token ${tok}`);
      z.set(wte.subarray(tok * C, (tok + 1) * C), (b * L + i) * C);
    }
    z.set(templateEmbeds, (b * L + free) * C);
  }
  const perSample = new Float32Array(B);
  const decodedLoss = await withCancel(opts.signal, (t) => nat.matchLoss(cls.target, { X: z, B, L, label: cls.labelToken, perSample }, t));
  const tokens: number[][] = [];
  for (let b = 0; b < B; b++) tokens.push(Array.from(outTokens.subarray(b * free, (b + 1) * free)));
  return { tokens, perSampleLoss: Array.from(perSample), decodedLoss, bestXLoss: best.loss, initLoss, xLossPerOuter, zLossPerOuter: [] };
}
