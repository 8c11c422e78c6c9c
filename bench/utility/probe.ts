/**
 * The `probe` classifier mode: logistic regression on frozen features (the model's final hidden state at the last
 * position of text + template, the position whose lm_head gradient GRADMM matches). Cheap on a CPU: one forward per
 * text, then a small convex fit. Same training sets, dev slice and test set as the `finetune` mode.
 *
 * The fit: multinomial logistic regression on standardised features (train mean/std), L2 penalty λ·‖W‖² / 2 chosen
 * on the dev slice from a grid (ties go to the larger λ), full-batch gradient descent with a fixed step count from
 * zeros: deterministic, no randomness.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../../ts/advanced";
import type { CausalLMModel } from "../../ts/index";
import type { LabelledSeq } from "./scorer";

/** Rows of equal length are run together, up to this many per forward. */
const ROWS_PER_FORWARD = 16;

/**
 * Final hidden states at the last position of each sequence, [seqs.length][C]. `cache` (optional) persists them by
 * a hash of the token ids, so a resumed run or another method's set with the same texts reuses them.
 */
export async function lastHiddenFeatures(model: CausalLMModel, seqs: readonly number[][], cache: FeatureCache | null, signal?: AbortSignal): Promise<Float32Array[]> {
  const C = model.config.channels;
  const out: Float32Array[] = new Array(seqs.length);
  const todo = new Map<number, number[]>(); // length → indices not cached
  seqs.forEach((s, i) => {
    const hit = cache?.get(s);
    if (hit) out[i] = hit;
    else {
      const list = todo.get(s.length) ?? [];
      list.push(i);
      todo.set(s.length, list);
    }
  });
  for (const [T, idx] of [...todo.entries()].sort((a, b) => a[0] - b[0])) {
    for (let start = 0; start < idx.length; start += ROWS_PER_FORWARD) {
      const rows = idx.slice(start, start + ROWS_PER_FORWARD);
      const B = rows.length;
      const tokens = new Int32Array(B * T);
      rows.forEach((i, b) => tokens.set(seqs[i], b * T));
      const lossMask = new Float32Array(B * T);
      for (let b = 0; b < B; b++) lossMask[b * T + T - 1] = 1; // logits only where needed (the hidden states are all kept)
      await model.forward({ tokens, B, T, lossMask, targets: new Int32Array(B * T), signal, keepActivations: false });
      const h = model.hidden();
      rows.forEach((i, b) => {
        out[i] = h.slice((b * T + T - 1) * C, (b * T + T) * C);
        cache?.set(seqs[i], out[i]);
      });
    }
  }
  cache?.save();
  return out;
}

/** Features on disk, keyed by the sha256 of the token ids (a re-computable cache: keep it outside the repository). */
export class FeatureCache {
  private map = new Map<string, Float32Array>();
  private dirty = false;
  constructor(
    readonly file: string,
    readonly dim: number,
  ) {
    if (!fs.existsSync(file)) return;
    const buf = fs.readFileSync(file);
    const rec = 32 + dim * 4;
    if (buf.length % rec !== 0) return; // a torn or foreign file: start over (it is only a cache)
    for (let o = 0; o < buf.length; o += rec) {
      const key = buf.subarray(o, o + 32).toString("hex");
      this.map.set(key, new Float32Array(buf.buffer.slice(buf.byteOffset + o + 32, buf.byteOffset + o + rec)));
    }
  }
  private key(seq: readonly number[]): string {
    return createHash("sha256").update(Int32Array.from(seq)).digest("hex");
  }
  get(seq: readonly number[]): Float32Array | undefined {
    return this.map.get(this.key(seq));
  }
  set(seq: readonly number[], v: Float32Array): void {
    this.map.set(this.key(seq), v);
    this.dirty = true;
  }
  save(): void {
    if (!this.dirty) return;
    const rec = 32 + this.dim * 4;
    const buf = Buffer.alloc(this.map.size * rec);
    let o = 0;
    for (const [k, v] of this.map) {
      Buffer.from(k, "hex").copy(buf, o);
      Buffer.from(v.buffer, v.byteOffset, v.byteLength).copy(buf, o + 32);
      o += rec;
    }
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileAtomic(this.file, buf);
    this.dirty = false;
  }
}

export interface ProbeOptions {
  /** L2 strengths tried (chosen on dev). */
  l2: readonly number[];
  /** Gradient-descent steps per fit. */
  steps: number;
}

export interface ProbeFit {
  W: Float64Array; // [K, C+1] (last column: bias), on standardised features
  mean: Float64Array;
  std: Float64Array;
  K: number;
  C: number;
}

/** Multinomial logistic regression (standardised features, L2 on the weights, not the bias). */
export function fitLogistic(X: readonly Float32Array[], y: readonly number[], K: number, l2: number, steps: number): ProbeFit {
  const n = X.length, C = X[0].length, D = C + 1;
  const mean = new Float64Array(C), std = new Float64Array(C);
  for (const x of X) for (let j = 0; j < C; j++) mean[j] += x[j] / n;
  for (const x of X) for (let j = 0; j < C; j++) std[j] += (x[j] - mean[j]) ** 2 / n;
  for (let j = 0; j < C; j++) std[j] = Math.sqrt(std[j]) || 1;
  const Z = X.map((x) => {
    const z = new Float64Array(D);
    for (let j = 0; j < C; j++) z[j] = (x[j] - mean[j]) / std[j];
    z[C] = 1;
    return z;
  });
  const W = new Float64Array(K * D);
  const G = new Float64Array(K * D);
  const p = new Float64Array(K);
  // the loss is convex and smooth: a fixed step below 1 / (max ‖z‖² / 2 + l2) keeps gradient descent monotone
  let maxNorm = 0;
  for (const z of Z) maxNorm = Math.max(maxNorm, z.reduce((a, v) => a + v * v, 0));
  const lr = 1 / (maxNorm / 2 + l2);
  for (let it = 0; it < steps; it++) {
    G.fill(0);
    for (let i = 0; i < n; i++) {
      const z = Z[i];
      let max = -Infinity;
      for (let k = 0; k < K; k++) {
        let s = 0;
        for (let j = 0; j < D; j++) s += W[k * D + j] * z[j];
        p[k] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let k = 0; k < K; k++) sum += (p[k] = Math.exp(p[k] - max));
      for (let k = 0; k < K; k++) {
        const g = (p[k] / sum - (y[i] === k ? 1 : 0)) / n;
        for (let j = 0; j < D; j++) G[k * D + j] += g * z[j];
      }
    }
    for (let k = 0; k < K; k++)
      for (let j = 0; j < D; j++) {
        const reg = j < C ? l2 * W[k * D + j] : 0;
        W[k * D + j] -= lr * (G[k * D + j] + reg);
      }
  }
  return { W, mean, std, K, C };
}

export function predictLogistic(fit: ProbeFit, X: readonly Float32Array[]): number[] {
  const { W, mean, std, K, C } = fit;
  const D = C + 1;
  return X.map((x) => {
    let best = 0, bestS = -Infinity;
    for (let k = 0; k < K; k++) {
      let s = W[k * D + C];
      for (let j = 0; j < C; j++) s += (W[k * D + j] * (x[j] - mean[j])) / std[j];
      if (s > bestS) (bestS = s), (best = k);
    }
    return best;
  });
}

function accuracy(pred: readonly number[], y: readonly number[], K: number): { accuracy: number; perClass: number[] } {
  const hit = new Array<number>(K).fill(0), count = new Array<number>(K).fill(0);
  pred.forEach((p, i) => {
    count[y[i]]++;
    if (p === y[i]) hit[y[i]]++;
  });
  return { accuracy: hit.reduce((a, b) => a + b, 0) / Math.max(1, pred.length), perClass: hit.map((h, k) => (count[k] ? h / count[k] : NaN)) };
}

export interface ProbeResult {
  accuracy: number;
  per_class_accuracy: number[];
  l2: number;
  dev_accuracy: number;
  dev_by_l2: Record<string, number>;
  train_accuracy: number;
}

/** Fits on `train`, picks λ on `dev`, reports test accuracy. Features come from `features` (same order as the inputs). */
export function probeClassifier(
  train: { X: Float32Array[]; y: number[] },
  dev: { X: Float32Array[]; y: number[] },
  test: { X: Float32Array[]; y: number[] },
  K: number,
  opts: ProbeOptions,
): ProbeResult {
  let best: { l2: number; dev: number; fit: ProbeFit } | null = null;
  const devBy: Record<string, number> = {};
  for (const l2 of [...opts.l2].sort((a, b) => b - a)) {
    const fit = fitLogistic(train.X, train.y, K, l2, opts.steps);
    const d = accuracy(predictLogistic(fit, dev.X), dev.y, K).accuracy;
    devBy[String(l2)] = d;
    if (!best || d > best.dev) best = { l2, dev: d, fit };
  }
  const t = accuracy(predictLogistic(best!.fit, test.X), test.y, K);
  return {
    accuracy: t.accuracy,
    per_class_accuracy: t.perClass,
    l2: best!.l2,
    dev_accuracy: best!.dev,
    dev_by_l2: devBy,
    train_accuracy: accuracy(predictLogistic(best!.fit, train.X), train.y, K).accuracy,
  };
}

/** Features of labelled sequences, with their labels. */
export async function labelledFeatures(model: CausalLMModel, data: readonly LabelledSeq[], toInput: (s: LabelledSeq) => number[], cache: FeatureCache | null, signal?: AbortSignal): Promise<{ X: Float32Array[]; y: number[] }> {
  return { X: await lastHiddenFeatures(model, data.map(toInput), cache, signal), y: data.map((d) => d.cls) };
}
