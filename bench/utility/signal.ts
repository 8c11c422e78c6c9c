/**
 * `npm run bench -- gradient-signal <config> [--model M]`: what the matching objective can see. With the config's
 * classes, label words and template: the cosine between the class targets; with the label word held fixed, between
 * real texts of the class and of the other classes; and, scored against each class target, 1 − cos of batches of
 * other real texts of the right class against batches of the wrong class (the regime a synthetic batch must reach),
 * for the paper's objective and three variants: a contrastive target (class target minus the mean of the class
 * targets), contrastive on both sides, the p-only part of the factor (softmax without −e_y), the label-word rows
 * only, and diagonally whitened gradients (diagonalWhitening, at three shrinkages, alone and contrastive on both
 * sides). Needs nothing but the model and the data: no synthesis.
 */
import { pieceTokens, readLabelledFile, startTokens } from "../../ts/advanced";
import { loadModel } from "../../ts/index";
import type { UtilityConfig } from "./config";
import { gradientFactors, type GradientFactors } from "./metrics";

interface Term {
  a: Float32Array;
  h: Float32Array;
  w: number;
}
type Combo = Term[];

function dot(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
}
const inner = (p: Combo, q: Combo) => {
  let s = 0;
  for (const x of p) for (const y of q) s += x.w * y.w * dot(x.a, y.a) * dot(x.h, y.h);
  return s;
};
const cos = (p: Combo, q: Combo) => inner(p, q) / Math.sqrt(inner(p, p) * inner(q, q));
type Map1 = (x: Float32Array) => Float32Array;
const same: Map1 = (x) => x;
const combo = (f: GradientFactors, tf: Map1 = same, w = 1, th: Map1 = same): Combo => f.A.map((a, i) => ({ a: tf(a), h: th(f.H[i]), w: w / f.A.length }));

/**
 * A diagonal whitening of lm_head gradients, kept in factor form: entry (v, c) of every gradient is divided by
 * s_a[v]·s_h[c], where s_a² and s_h² are the per-entry second moments of the reference examples' factors a = p − e_y
 * and h, each shrunk towards its own mean by `shrinkage` (s² = (1 − α)·m² + α·mean(m²); α = 1 scales every entry
 * alike and leaves every cosine as it was). The scaling is separable, so a·hᵀ ↦ (a ⊘ s_a)(h ⊘ s_h)ᵀ stays rank 1:
 * the cosine under it is the cosine in the metric of this diagonal second-moment matrix.
 */
export function diagonalWhitening(reference: readonly GradientFactors[], shrinkage: number): { a: Map1; h: Map1 } {
  const scaleOf = (vectors: Float32Array[]): Float32Array => {
    const n = vectors[0].length, m2 = new Float64Array(n);
    for (const x of vectors) for (let i = 0; i < n; i++) m2[i] += x[i] * x[i];
    let mean = 0;
    for (let i = 0; i < n; i++) mean += (m2[i] /= vectors.length);
    mean /= n;
    const inv = new Float32Array(n);
    for (let i = 0; i < n; i++) inv[i] = 1 / Math.sqrt((1 - shrinkage) * m2[i] + shrinkage * mean);
    return inv;
  };
  const mul = (inv: Float32Array): Map1 => (x) => x.map((v, i) => v * inv[i]);
  return { a: mul(scaleOf(reference.flatMap((f) => f.A))), h: mul(scaleOf(reference.flatMap((f) => f.H))) };
}
const minus = (p: Combo, q: Combo): Combo => [...p, ...q.map((t) => ({ ...t, w: -t.w }))];
const scale = (p: Combo, s: number): Combo => p.map((t) => ({ ...t, w: t.w * s }));

/** The shrinkages α of diagonalWhitening the bench reports: mostly whitened, half, a tenth. */
export const WHITENING_SHRINKAGES = [0.01, 0.1, 0.5];

export interface SignalResult {
  model: string;
  targetCosine: number[][];
  sameLabelCosine: { sameClass: number; otherClass: number };
  variants: Record<string, { right: number; wrong: number; ratio: number; rightBetter: string }>;
}

export async function gradientSignal(u: UtilityConfig, opts: { perClass?: number; batch?: number; batches?: number; log?: (s: string) => void } = {}): Promise<SignalResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const synth = u.synth;
  const n = opts.perClass ?? synth.data.examples_per_class, B = opts.batch ?? synth.method.batch_size, nb = opts.batches ?? 4;
  const { model, tokenizer, dispose } = loadModel(synth.resolved.modelDir);
  try {
    if (!tokenizer) throw new Error("the model has no tokenizer");
    const K = synth.classes.length;
    const ex = readLabelledFile(synth.resolved.dataPath, { textField: synth.data.text_field, labelField: synth.data.label_field, classLabels: synth.classes.map((c) => c.label) });
    const tmpl = pieceTokens(tokenizer, synth.template);
    const seqOf = (t: string) => [...startTokens(tokenizer, t).slice(0, 128), ...tmpl];
    const byClass = synth.classes.map((_, k) => ex.filter((e) => e.cls === k).map((e) => seqOf(e.text)));
    const labels = synth.classes.map((c) => pieceTokens(tokenizer, c.label_word)[0]);
    for (let k = 0; k < K; k++) if (byClass[k].length < n + nb * B) throw new Error(`class ${k} has ${byClass[k].length} texts; ${n + nb * B} needed`);
    const G = (seqs: number[][], y: number) => gradientFactors(model, seqs, seqs.map(() => y));
    log(`targets: ${n} texts per class`);
    const targets: GradientFactors[] = [];
    for (let k = 0; k < K; k++) targets.push(await G(byClass[k].slice(0, n), labels[k]));
    const targetCosine = targets.map((p) => targets.map((q) => cos(combo(p), combo(q))));
    // other texts of each class, scored with class 0's label word: same class vs other class
    const half = Math.floor(n / 2);
    const fixed0 = await G(byClass[0].slice(n, n + half), labels[0]);
    const fixed1 = await G(byClass[Math.min(1, K - 1)].slice(n, n + half), labels[0]);
    const sameLabelCosine = { sameClass: cos(combo(targets[0]), combo(fixed0)), otherClass: cos(combo(targets[0]), combo(fixed1)) };
    const labelRows = (a: Float32Array) => {
      const b = new Float32Array(a.length);
      for (const id of labels) b[id] = a[id];
      return b;
    };
    const variants: Record<string, { right: number[]; wrong: number[] }> = {};
    const add = (name: string, right: number, wrong: number) => {
      const v = (variants[name] ??= { right: [], wrong: [] });
      v.right.push(right);
      v.wrong.push(wrong);
    };
    for (let k = 0; k < K; k++) {
      const other = (k + 1) % K;
      const pOnly = (a: Float32Array) => {
        const b = a.slice();
        b[labels[k]] += 1;
        return b;
      };
      const mean: Combo = targets.flatMap((t) => scale(combo(t), 1 / K));
      const T = combo(targets[k]), CT = minus(T, mean);
      const whitened = WHITENING_SHRINKAGES.map((alpha) => {
        const w = diagonalWhitening(targets, alpha);
        const c = (f: GradientFactors, weight = 1) => combo(f, w.a, weight, w.h);
        const meanW: Combo = targets.flatMap((t) => c(t, 1 / K));
        return { alpha, c, T: c(targets[k]), meanW };
      });
      for (let b = 0; b < nb; b++) {
        log(`class ${k}: batch ${b + 1}/${nb}`);
        const right = await G(byClass[k].slice(n + b * B, n + (b + 1) * B), labels[k]);
        const wrong = await G(byClass[other].slice(n + b * B, n + (b + 1) * B), labels[k]);
        add("paper: 1 − cos(S, T_k)", 1 - cos(combo(right), T), 1 - cos(combo(wrong), T));
        add("contrastive target: 1 − cos(S, T_k − T̄)", 1 - cos(combo(right), CT), 1 - cos(combo(wrong), CT));
        add("contrastive both sides: 1 − cos(S − T̄, T_k − T̄)", 1 - cos(minus(combo(right), mean), CT), 1 - cos(minus(combo(wrong), mean), CT));
        add("p-only factor (softmax, no −e_y)", 1 - cos(combo(right, pOnly), combo(targets[k], pOnly)), 1 - cos(combo(wrong, pOnly), combo(targets[k], pOnly)));
        add("label-word rows only", 1 - cos(combo(right, labelRows), combo(targets[k], labelRows)), 1 - cos(combo(wrong, labelRows), combo(targets[k], labelRows)));
        for (const w of whitened) {
          add(`diagonally whitened, shrinkage ${w.alpha}`, 1 - cos(w.c(right), w.T), 1 - cos(w.c(wrong), w.T));
          const CW = minus(w.T, w.meanW);
          add(`diagonally whitened, shrinkage ${w.alpha}, contrastive both sides`, 1 - cos(minus(w.c(right), w.meanW), CW), 1 - cos(minus(w.c(wrong), w.meanW), CW));
        }
      }
    }
    const m = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    return {
      model: synth.resolved.modelDir,
      targetCosine,
      sameLabelCosine,
      variants: Object.fromEntries(
        Object.entries(variants).map(([name, v]) => [
          name,
          { right: m(v.right), wrong: m(v.wrong), ratio: m(v.wrong) / m(v.right), rightBetter: `${v.right.filter((r, i) => r < v.wrong[i]).length}/${v.right.length}` },
        ]),
      ),
    };
  } finally {
    dispose();
  }
}

export function formatSignal(r: SignalResult): string {
  const lines = [`model: ${r.model}`, `cosine between class targets: ${r.targetCosine.map((row) => row.map((c) => c.toFixed(3)).join(" ")).join(" | ")}`];
  lines.push(`class 0's label word fixed: cos(target, same-class texts) ${r.sameLabelCosine.sameClass.toFixed(4)}, cos(target, other-class texts) ${r.sameLabelCosine.otherClass.toFixed(4)}`);
  lines.push("| objective | 1 − cos, right class | 1 − cos, wrong class | wrong / right | right < wrong |", "| --- | ---: | ---: | ---: | ---: |");
  for (const [name, v] of Object.entries(r.variants)) lines.push(`| ${name} | ${v.right.toFixed(4)} | ${v.wrong.toFixed(4)} | ${v.ratio.toFixed(2)} | ${v.rightBetter} |`);
  return lines.join("\n");
}

