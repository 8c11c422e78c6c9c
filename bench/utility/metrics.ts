/**
 * What a training set looks like, beyond the accuracy it buys: diversity (distinct-n), leakage (the longest word
 * n-gram shared verbatim with the private examples), fluency (perplexity under the model) and how well its
 * classifier gradient matches the private examples' one (cosine of lm_head gradients, as GRADMM measures it).
 */
import { type GPT2Model, continuationLoss } from "../../ts/advanced";

/** Lower-cased words and single punctuation marks. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+|[^\s\p{L}\p{N}']/gu) ?? [];
}

/** distinct-n: unique n-grams / all n-grams over the whole set (word n-grams; 0 when the set has none). */
export function distinctN(texts: readonly string[], n: number): number {
  const seen = new Set<string>();
  let total = 0;
  for (const t of texts) {
    const w = words(t);
    for (let i = 0; i + n <= w.length; i++) {
      seen.add(w.slice(i, i + n).join(" "));
      total++;
    }
  }
  return total ? seen.size / total : 0;
}

function hasSharedNgram(a: readonly string[][], bIndex: (n: number) => Set<string>, n: number): boolean {
  const index = bIndex(n);
  for (const w of a) for (let i = 0; i + n <= w.length; i++) if (index.has(w.slice(i, i + n).join("\u0001"))) return true;
  return false;
}

/**
 * Longest run of words that a text shares verbatim with any private text: per text (binary search on n: a shared
 * n-gram implies a shared (n−1)-gram), with the set's maximum and mean.
 */
export function longestSharedNgram(texts: readonly string[], privateTexts: readonly string[]): { max: number; mean: number; perText: number[] } {
  const priv = privateTexts.map(words);
  const cache = new Map<number, Set<string>>();
  const index = (n: number) => {
    let s = cache.get(n);
    if (!s) {
      s = new Set();
      for (const w of priv) for (let i = 0; i + n <= w.length; i++) s.add(w.slice(i, i + n).join("\u0001"));
      cache.set(n, s);
    }
    return s;
  };
  const perText = texts.map((t) => {
    const w = [words(t)];
    let lo = 0, hi = w[0].length; // invariant: an lo-gram is shared (0 trivially); nothing longer than hi can be
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (hasSharedNgram(w, index, mid)) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  });
  return { max: perText.length ? Math.max(...perText) : 0, mean: perText.length ? perText.reduce((a, b) => a + b, 0) / perText.length : 0, perText };
}

/** Perplexity of a set: exp of the mean per-text cross-entropy of its tokens after `context` (the class instruction). */
export async function setPerplexity(model: GPT2Model, context: number[], texts: number[][], signal?: AbortSignal): Promise<number> {
  const nonEmpty = texts.filter((t) => t.length);
  if (!nonEmpty.length) return NaN;
  const losses = await continuationLoss(model, context, nonEmpty, { signal });
  return Math.exp(losses.reduce((a, b) => a + b, 0) / losses.length);
}

/** Rank-1 factors of per-example lm_head gradients: G_i = a_i h_iᵀ with a_i = softmax − e_y, h_i the final hidden state. */
export interface GradientFactors {
  A: Float32Array[];
  H: Float32Array[];
}

export async function gradientFactors(model: GPT2Model, seqs: number[][], labels: readonly number[], signal?: AbortSignal, chunk = 16): Promise<GradientFactors> {
  const V = model.config.vocabSize, C = model.config.channels;
  const A: Float32Array[] = [], H: Float32Array[] = [];
  for (let s = 0; s < seqs.length; s += chunk) {
    const group = seqs.slice(s, s + chunk);
    const T = Math.max(...group.map((q) => q.length));
    const tokens = new Int32Array(group.length * T), lossMask = new Float32Array(group.length * T);
    group.forEach((q, b) => {
      tokens.set(q, b * T);
      lossMask[b * T + q.length - 1] = 1;
    });
    await model.forward({ tokens, lossMask, B: group.length, T, signal, keepActivations: false });
    const logits = model.logits(), hidden = model.hidden();
    group.forEach((q, b) => {
      const l = logits.subarray(b * V, (b + 1) * V);
      let max = -Infinity;
      for (let i = 0; i < V; i++) if (l[i] > max) max = l[i];
      let sum = 0;
      const a = new Float32Array(V);
      for (let i = 0; i < V; i++) sum += a[i] = Math.exp(l[i] - max);
      for (let i = 0; i < V; i++) a[i] /= sum;
      a[labels[s + b]] -= 1;
      A.push(a);
      H.push(hidden.slice((b * T + q.length - 1) * C, (b * T + q.length) * C));
    });
  }
  return { A, H };
}

function dot(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
}

/** ⟨(1/n) Σ a_i h_iᵀ, (1/m) Σ b_j g_jᵀ⟩ through the Gram matrices (no V×C matrix is built). */
function inner(p: GradientFactors, q: GradientFactors): number {
  let s = 0;
  for (let i = 0; i < p.A.length; i++) for (let j = 0; j < q.A.length; j++) s += dot(p.A[i], q.A[j]) * dot(p.H[i], q.H[j]);
  return s / (p.A.length * q.A.length);
}

/** Cosine between the mean gradients of two sets (the GRADMM matching objective is 1 − this). */
export function gradientCosine(p: GradientFactors, q: GradientFactors): number {
  if (!p.A.length || !q.A.length) return NaN;
  return inner(p, q) / Math.sqrt(inner(p, p) * inner(q, q));
}
