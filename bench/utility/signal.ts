/**
 * `npm run bench -- gradient-signal <config> [--model M]`: what the matching objective can see. With the config's
 * classes, label words and template: the cosine between the class targets; with the label word held fixed, between
 * real texts of the class and of the other classes; and, scored against each class target, 1 − cos of batches of
 * other real texts of the right class against batches of the wrong class (the regime a synthetic batch must reach),
 * for the paper's objective and three variants: a contrastive target (class target minus the mean of the class
 * targets), contrastive on both sides, the p-only part of the factor (softmax without −e_y), the label-word rows
 * only, and diagonally whitened gradients (diagonalWhitening, at three shrinkages, alone and contrastive on both
 * sides). Needs nothing but the model and the data: no synthesis. With --sets (a utility run's seed folder) the
 * targets are that run's private examples, and every training set the run built is scored the same way: does each
 * method's text of class k sit closer to class k's target than its text of the other class does?
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { labelTokens, pieceTokens, readLabelledFile, startTokens } from "../../ts/advanced";
import { loadModel } from "../../ts/index";
import type { UtilityConfig } from "./config";
import { gradientFactors, type GradientFactors } from "./metrics";

interface Term {
  a: Float32Array;
  h: Float32Array;
  w: number;
}
type Combo = Term[];

// Dot products of factor vectors, remembered per pair of arrays: the objectives meet the same target and mean vectors
// again and again (the same value each time, so the results are those of computing them afresh).
const dots = new WeakMap<Float32Array, WeakMap<Float32Array, number>>();
function dot(x: Float32Array, y: Float32Array): number {
  const known = dots.get(x)?.get(y) ?? dots.get(y)?.get(x);
  if (known !== undefined) return known;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  let row = dots.get(x);
  if (!row) dots.set(x, (row = new WeakMap()));
  row.set(y, s);
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

type VariantScores = Record<string, { right: number; wrong: number; ratio: number; rightBetter: string }>;

export interface SignalResult {
  model: string;
  /** Where the class targets came from: the data file's first texts, or a utility run's private examples. */
  targetSource: string;
  targetCosine: number[][];
  sameLabelCosine: { sameClass: number; otherClass: number };
  /** Batches of other real texts of the data file. */
  variants: VariantScores;
  /** With `sets`: the same scores for batches of each training set of the run (real, gradmm, zero_shot_gen, …). */
  sets?: Record<string, VariantScores>;
}

export interface SignalOptions {
  perClass?: number;
  batch?: number;
  batches?: number;
  /**
   * A utility run's seed folder (bench/results/utility/<domain>/seed-N): the targets are its private examples
   * (private.jsonl) instead of the data file's first texts, and every training set it built (sets/<method>.json) is
   * scored like the real batches, class by class: how far each method's text sits from its own class's target and
   * from the other's.
   */
  sets?: string;
  log?: (s: string) => void;
}

export async function gradientSignal(u: UtilityConfig, opts: SignalOptions = {}): Promise<SignalResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const synth = u.synth;
  const B = opts.batch ?? synth.method.batch_size, nb = opts.batches ?? 4;
  const { model, tokenizer, dispose } = loadModel(synth.resolved.modelDir);
  try {
    if (!tokenizer) throw new Error("the model has no tokenizer");
    const K = synth.classes.length;
    const classLabels = synth.classes.map((c) => c.label);
    const ex = readLabelledFile(synth.resolved.dataPath, { textField: synth.data.text_field, labelField: synth.data.label_field, classLabels });
    const tmpl = pieceTokens(tokenizer, synth.template);
    const cut = Math.min(128, model.config.maxSeqLen - tmpl.length);  // a text's first 128 tokens (or what fits)
    const seqOf = (t: string) => [...startTokens(tokenizer, t).slice(0, cut), ...tmpl];
    const labels = labelTokens(tokenizer, synth.classes.map((c) => c.label_word));
    const G = (seqs: number[][], y: number) => gradientFactors(model, seqs, seqs.map(() => y));
    // targets: a run's private examples, or the first perClass texts of each class; the real batches: the other texts
    let targetTexts: string[][], targetSource: string;
    if (opts.sets) {
      const file = path.join(opts.sets, "private.jsonl");
      const priv = readLabelledFile(file, { textField: "text", labelField: "label", classLabels });
      targetTexts = synth.classes.map((_, k) => priv.filter((e) => e.cls === k).map((e) => e.text));
      targetSource = file;
    } else {
      const n = opts.perClass ?? synth.data.examples_per_class;
      targetTexts = synth.classes.map((_, k) => ex.filter((e) => e.cls === k).slice(0, n).map((e) => e.text));
      targetSource = `${synth.resolved.dataPath}: the first ${n} texts of each class`;
    }
    const used = new Set(targetTexts.flat());
    const others = synth.classes.map((_, k) => ex.filter((e) => e.cls === k && !used.has(e.text)).map((e) => seqOf(e.text)));
    const half = Math.floor(Math.min(...targetTexts.map((t) => t.length)) / 2);
    for (let k = 0; k < K; k++) if (others[k].length < Math.max(half, nb * B)) throw new Error(`class ${k} has ${others[k].length} texts besides the targets'; ${Math.max(half, nb * B)} needed`);
    log(`targets: ${targetTexts.map((t) => t.length).join(" / ")} texts per class (${targetSource})`);
    const targets: GradientFactors[] = [];
    for (let k = 0; k < K; k++) targets.push(await G(targetTexts[k].map(seqOf), labels[k]));
    const targetCosine = targets.map((p) => targets.map((q) => cos(combo(p), combo(q))));
    // other texts of each class, scored with class 0's label word: same class vs other class
    const fixed0 = await G(others[0].slice(0, half), labels[0]);
    const fixed1 = await G(others[Math.min(1, K - 1)].slice(0, half), labels[0]);
    const sameLabelCosine = { sameClass: cos(combo(targets[0]), combo(fixed0)), otherClass: cos(combo(targets[0]), combo(fixed1)) };
    const objectives = signalObjectives(targets, labels);
    // right: batches of class k's texts, wrong: batches of the next class's texts, both with class k's label word
    // against class k's target (the regime a synthetic batch of class k must reach)
    const score = async (what: string, batchesOf: (k: number) => number[][][]): Promise<VariantScores> => {
      const variants: Record<string, { right: number[]; wrong: number[] }> = {};
      for (let k = 0; k < K; k++) {
        const mine = batchesOf(k), theirs = batchesOf((k + 1) % K);
        const nPairs = Math.min(mine.length, theirs.length);
        for (let b = 0; b < nPairs; b++) {
          log(`${what}, class ${k}: batch ${b + 1}/${nPairs}`);
          const right = await G(mine[b], labels[k]);
          const wrong = await G(theirs[b], labels[k]);
          for (const o of objectives) {
            const v = (variants[o.name] ??= { right: [], wrong: [] });
            v.right.push(o.loss(right, k));
            v.wrong.push(o.loss(wrong, k));
          }
        }
      }
      return summarise(variants);
    };
    const batchesFrom = (seqs: number[][]) => Array.from({ length: Math.min(nb, Math.floor(seqs.length / B)) }, (_, b) => seqs.slice(b * B, (b + 1) * B));
    const variants = await score("real batches", (k) => batchesFrom(others[k]));
    let sets: Record<string, VariantScores> | undefined;
    if (opts.sets) {
      sets = {};
      const dir = path.join(opts.sets, "sets");
      for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
        const set = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as { texts: { text: string; cls: number }[] };
        sets[f.replace(/\.json$/, "")] = await score(f, (k) => batchesFrom(set.texts.filter((t) => t.cls === k).map((t) => seqOf(t.text))));
      }
    }
    return { model: synth.resolved.modelDir, targetSource, targetCosine, sameLabelCosine, variants, sets };
  } finally {
    dispose();
  }
}

/**
 * The objectives compared, each as a loss of a batch's gradient factors S against class k's target: the paper's and
 * its variants (contrastive, p-only, label-word rows, diagonally whitened).
 */
function signalObjectives(targets: GradientFactors[], labels: number[]): { name: string; loss: (S: GradientFactors, k: number) => number }[] {
  const K = targets.length;
  const mean: Combo = targets.flatMap((t) => scale(combo(t), 1 / K));
  const labelRows = (a: Float32Array) => {
    const b = new Float32Array(a.length);
    for (const id of labels) b[id] = a[id];
    return b;
  };
  const pOnly = (k: number) => (a: Float32Array) => {
    const b = a.slice();
    b[labels[k]] += 1;
    return b;
  };
  const out: { name: string; loss: (S: GradientFactors, k: number) => number }[] = [
    { name: "paper: 1 − cos(S, T_k)", loss: (S, k) => 1 - cos(combo(S), combo(targets[k])) },
    { name: "contrastive target: 1 − cos(S, T_k − T̄)", loss: (S, k) => 1 - cos(combo(S), minus(combo(targets[k]), mean)) },
    { name: "contrastive both sides: 1 − cos(S − T̄, T_k − T̄)", loss: (S, k) => 1 - cos(minus(combo(S), mean), minus(combo(targets[k]), mean)) },
    { name: "p-only factor (softmax, no −e_y)", loss: (S, k) => 1 - cos(combo(S, pOnly(k)), combo(targets[k], pOnly(k))) },
    { name: "label-word rows only", loss: (S, k) => 1 - cos(combo(S, labelRows), combo(targets[k], labelRows)) },
  ];
  for (const alpha of WHITENING_SHRINKAGES) {
    const w = diagonalWhitening(targets, alpha);
    const c = (f: GradientFactors, weight = 1) => combo(f, w.a, weight, w.h);
    const T = targets.map((t) => c(t)), meanW: Combo = targets.flatMap((t) => c(t, 1 / K));
    out.push({ name: `diagonally whitened, shrinkage ${alpha}`, loss: (S, k) => 1 - cos(c(S), T[k]) });
    out.push({ name: `diagonally whitened, shrinkage ${alpha}, contrastive both sides`, loss: (S, k) => 1 - cos(minus(c(S), meanW), minus(T[k], meanW)) });
  }
  return out;
}

function summarise(variants: Record<string, { right: number[]; wrong: number[] }>): VariantScores {
  const m = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  return Object.fromEntries(
    Object.entries(variants).map(([name, v]) => [
      name,
      { right: m(v.right), wrong: m(v.wrong), ratio: m(v.wrong) / m(v.right), rightBetter: `${v.right.filter((r, i) => r < v.wrong[i]).length}/${v.right.length}` },
    ]),
  );
}

export function formatSignal(r: SignalResult): string {
  const lines = [`model: ${r.model}`, `targets: ${r.targetSource}`, `cosine between class targets: ${r.targetCosine.map((row) => row.map((c) => c.toFixed(3)).join(" ")).join(" | ")}`];
  lines.push(`class 0's label word fixed: cos(target, same-class texts) ${r.sameLabelCosine.sameClass.toFixed(4)}, cos(target, other-class texts) ${r.sameLabelCosine.otherClass.toFixed(4)}`);
  const table = (title: string, v: VariantScores) => {
    lines.push("", title, "", "| objective | 1 − cos, right class | 1 − cos, wrong class | wrong / right | right < wrong |", "| --- | ---: | ---: | ---: | ---: |");
    for (const [name, x] of Object.entries(v)) lines.push(`| ${name} | ${x.right.toFixed(4)} | ${x.wrong.toFixed(4)} | ${x.ratio.toFixed(2)} | ${x.rightBetter} |`);
  };
  table("batches of other real texts", r.variants);
  for (const [name, v] of Object.entries(r.sets ?? {})) table(`batches of the run's ${name} set`, v);
  return lines.join("\n");
}

