// The synth config's fixed part that the tiny-model tests share: the IMDB example data (6 private examples per
// class), the two sentiment classes, the template and the tiny test model (test/fixtures/tiny_lm).
import * as path from "node:path";

export const tinyLM = path.join(__dirname, "..", "fixtures", "tiny_lm");

export function tinySynthBase() {
  return {
    data: { path: path.join(__dirname, "..", "..", "examples", "data", "imdb", "train.jsonl"), examples_per_class: 6 },
    classes: [
      { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
      { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
    ],
    template: " It was",
    model: tinyLM,
  };
}

/** A small end-to-end run's config on the tiny model: 1 batch of 3 per class, 6 free tokens, 4 × 6 ADMM steps, seed 7. */
export function tinyRunConfig(out: string, method: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, filter: Record<string, unknown> = { few_shot: 2, keep_per_class: 2 }) {
  return {
    ...tinySynthBase(),
    method: { batch_size: 3, batches_per_class: 1, length: 6, outer_steps: 4, inner_steps: 6, top_k: 20, init_candidates: 4, ...method },
    filter,
    output: out,
    seed: 7,
    ...extra,
  };
}

/**
 * The relative error of an analytic gradient dX of f at X against central finite differences (step 1e-2) at 24
 * coordinates drawn from `rand`, and the norm of the analytic part (to assert it is not zero).
 */
export async function finiteDifferenceError(f: (X: Float32Array) => Promise<number>, X: Float32Array, dX: Float32Array, rand: () => number): Promise<{ error: number; norm: number }> {
  const Xp = Float32Array.from(X), num: number[] = [], ana: number[] = [];
  for (let s = 0; s < 24; s++) {
    const i = Math.floor(rand() * X.length), h = 1e-2;
    Xp[i] = X[i] + h;
    const fp = await f(Xp);
    Xp[i] = X[i] - h;
    const fm = await f(Xp);
    Xp[i] = X[i];
    num.push((fp - fm) / (2 * h));
    ana.push(dX[i]);
  }
  const norm = (x: number[]) => Math.sqrt(x.reduce((a, v) => a + v * v, 0));
  return { error: norm(num.map((v, i) => v - ana[i])) / norm(ana), norm: norm(ana) };
}
