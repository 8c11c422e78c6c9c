/**
 * Bag-of-words logistic regression: the count-free classical baseline for the default model's classifier accuracy.
 * Binary word-presence features (lower-cased letter/apostrophe runs seen in at least `minCount` training texts), one
 * weight per word and class (multinomial softmax), L2 penalty λ, full-batch Adam on the mean cross-entropy.
 * Deterministic: no randomness at all.
 */

export interface BowModel {
  vocab: Map<string, number>;
  /** [classes][features + 1]: the last entry is the bias. */
  weights: Float64Array[];
}

export function wordSet(text: string): Set<string> {
  return new Set(text.toLowerCase().match(/[a-z']+/g) ?? []);
}

function featuresOf(text: string, vocab: Map<string, number>): number[] {
  const out: number[] = [];
  for (const w of wordSet(text)) {
    const i = vocab.get(w);
    if (i !== undefined) out.push(i);
  }
  return out;
}

export function trainBow(texts: readonly string[], labels: readonly number[], numClasses: number, o: { lambda: number; iterations?: number; lr?: number; minCount?: number }): BowModel {
  const df = new Map<string, number>();
  for (const t of texts) for (const w of wordSet(t)) df.set(w, (df.get(w) ?? 0) + 1);
  const vocab = new Map<string, number>();
  for (const [w, c] of [...df].sort((a, b) => (a[0] < b[0] ? -1 : 1))) if (c >= (o.minCount ?? 2)) vocab.set(w, vocab.size);
  const F = vocab.size + 1;
  const X = texts.map((t) => featuresOf(t, vocab));
  const W = Array.from({ length: numClasses }, () => new Float64Array(F));
  const m = W.map(() => new Float64Array(F));
  const v = W.map(() => new Float64Array(F));
  const lr = o.lr ?? 0.05;
  const n = texts.length;
  for (let it = 1; it <= (o.iterations ?? 300); it++) {
    const G = W.map((w) => w.map((x, j) => (j < F - 1 ? o.lambda * x : 0)));
    for (let i = 0; i < n; i++) {
      const z = W.map((w) => X[i].reduce((a, j) => a + w[j], w[F - 1]));
      const mx = Math.max(...z);
      const e = z.map((x) => Math.exp(x - mx));
      const s = e.reduce((a, b) => a + b, 0);
      for (let k = 0; k < numClasses; k++) {
        const d = (e[k] / s - (labels[i] === k ? 1 : 0)) / n;
        for (const j of X[i]) G[k][j] += d;
        G[k][F - 1] += d;
      }
    }
    for (let k = 0; k < numClasses; k++) {
      for (let j = 0; j < F; j++) {
        m[k][j] = 0.9 * m[k][j] + 0.1 * G[k][j];
        v[k][j] = 0.999 * v[k][j] + 0.001 * G[k][j] * G[k][j];
        W[k][j] -= (lr * (m[k][j] / (1 - 0.9 ** it))) / (Math.sqrt(v[k][j] / (1 - 0.999 ** it)) + 1e-8);
      }
    }
  }
  return { vocab, weights: W };
}

export function predictBow(model: BowModel, text: string): number {
  const x = featuresOf(text, model.vocab);
  let best = 0;
  let bestScore = -Infinity;
  model.weights.forEach((w, k) => {
    const z = x.reduce((a, j) => a + w[j], w[w.length - 1]);
    if (z > bestScore) {
      bestScore = z;
      best = k;
    }
  });
  return best;
}
