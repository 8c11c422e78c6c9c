// The gradient-signal bench's diagonal whitening (bench/utility/signal.ts): its limits and its metric.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseUtilityConfig } from "../bench/utility/config";
import { gradientCosine, type GradientFactors } from "../bench/utility/metrics";
import { diagonalWhitening, gradientSignal } from "../bench/utility/signal";
import { readLabelledFile } from "../ts/advanced";

const root = path.join(__dirname, "..");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
const imdb = path.join(root, "examples", "data", "imdb");

// n examples whose a = p − e_y share one large entry (row 3, as the label word's −1 dominates p − e_y) and whose h
// share a common direction (all ones), the rest independent draws in [−1, 1)
function labelLikeFactors(n: number, V: number, C: number, seed: number): GradientFactors {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const A = Array.from({ length: n }, () => Float32Array.from({ length: V }, (_, v) => (v === 3 ? -50 : rand())));
  const H = Array.from({ length: n }, () => Float32Array.from({ length: C }, () => 1 + 0.3 * rand()));
  return { A, H };
}
const mapped = (f: GradientFactors, w: ReturnType<typeof diagonalWhitening>): GradientFactors => ({ A: f.A.map(w.a), H: f.H.map(w.h) });

describe("diagonalWhitening", () => {
  const ref = [labelLikeFactors(12, 16, 5, 1), labelLikeFactors(12, 16, 5, 2)];
  const p = labelLikeFactors(6, 16, 5, 3), q = labelLikeFactors(6, 16, 5, 4);

  it("at shrinkage 1 scales every entry alike: every cosine stays as it was", () => {
    const w = diagonalWhitening(ref, 1);
    expect(gradientCosine(mapped(p, w), mapped(q, w))).toBeCloseTo(gradientCosine(p, q), 6);
  });

  it("at shrinkage 0 gives every factor entry unit second moment over the reference", () => {
    const w = diagonalWhitening(ref, 0);
    const A = ref.flatMap((f) => f.A).map(w.a), H = ref.flatMap((f) => f.H).map(w.h);
    for (const [vs, n] of [[A, 16], [H, 5]] as [Float32Array[], number][])
      for (let i = 0; i < n; i++) expect(vs.reduce((m, x) => m + x[i] * x[i], 0) / vs.length).toBeCloseTo(1, 4);
  });

  it("takes the shared dominant entry's weight away: the cosine then follows the independent entries", () => {
    const w = diagonalWhitening(ref, 0);
    const raw = gradientCosine(p, q), whitened = gradientCosine(mapped(p, w), mapped(q, w));
    expect(raw).toBeGreaterThan(0.99);
    expect(whitened).toBeLessThan(0.9);
  });
});

describe("gradientSignal with a run's sets (tiny model)", () => {
  it("takes the run's private examples as targets, and scores a set holding the real batches' texts exactly as those", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-signal-"));
    try {
      const u = parseUtilityConfig(
        {
          data: { path: path.join(imdb, "train.jsonl"), examples_per_class: 6 },
          classes: [
            { label: 0, name: "negative", label_word: " bad", instruction: "A negative review:" },
            { label: 1, name: "positive", label_word: " great", instruction: "A positive review:" },
          ],
          template: " It was",
          model: tinyLM,
          method: { batch_size: 4, length: 6 },
          eval: { output: path.join(tmp, "out") },
        },
        tmp,
        "tiny.yaml",
      );
      const all = readLabelledFile(path.join(imdb, "train.jsonl"), { textField: "text", labelField: "label", classLabels: [0, 1] });
      // a seed folder: 6 private examples per class (not the file's first ones), and one set holding, class by class,
      // the first 8 of the texts that are left: the texts the real batches take, in their order
      const seedDir = path.join(tmp, "seed-0");
      fs.mkdirSync(path.join(seedDir, "sets"), { recursive: true });
      const priv = [0, 1].flatMap((k) => all.filter((e) => e.cls === k).slice(10, 16));
      fs.writeFileSync(path.join(seedDir, "private.jsonl"), priv.map((e) => JSON.stringify({ text: e.text, label: e.cls })).join("\n") + "\n");
      const taken = new Set(priv.map((e) => e.text));
      const rest = [0, 1].flatMap((k) => all.filter((e) => e.cls === k && !taken.has(e.text)).slice(0, 8).map((e) => ({ text: e.text, cls: k })));
      fs.writeFileSync(path.join(seedDir, "sets", "same_as_real.json"), JSON.stringify({ texts: rest }));
      const r = await gradientSignal(u, { batch: 4, batches: 2, sets: seedDir, log: () => {} });
      expect(r.targetSource).toBe(path.join(seedDir, "private.jsonl"));
      expect(Object.keys(r.sets!)).toEqual(["same_as_real"]);
      expect(r.sets!.same_as_real).toEqual(r.variants);
      for (const [name, v] of Object.entries(r.variants)) {
        expect(Number.isFinite(v.right) && Number.isFinite(v.wrong), name).toBe(true);
        expect(v.rightBetter, name).toMatch(/^[0-4]\/4$/);
      }
      // the paper's objective is 1 − cos: in [0, 2]
      const paper = r.variants["paper: 1 − cos(S, T_k)"];
      expect(paper.right).toBeGreaterThanOrEqual(0);
      expect(paper.wrong).toBeLessThanOrEqual(2);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
