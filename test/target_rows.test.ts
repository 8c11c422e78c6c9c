// method.target_rows label_words: the target G* and the synthetic gradient G_syn(X) restricted to the lm_head rows of
// the classes' label tokens. Checked against an independent TypeScript reference (the restricted K×C gradients
// materialised from the model's last-position softmax and last hidden states), by finite differences of df/dX, on the
// DP path (clipping on the restricted norm; noise on the restricted entries only), through the queue's run spec, and
// end to end; `all` (the default) keeps its fingerprint and bytes.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../ts/gradmm/config";
import { labelWordRows } from "../ts/gradmm/method";
import { fingerprint } from "../ts/gradmm/output";
import { synthesize } from "../ts/gradmm/synthesize";
import { CausalLMModel } from "../ts/model";
import { mulberry32 as rng } from "../ts/random";
import type { NativeBuildTargetArgs } from "../ts/native";
import { specClass, targetArgsOf, type RunSpec } from "../ts/queue/protocol";
import { finiteDifferenceError, tinyRunConfig } from "./helpers/tiny_synth";

const root = path.join(__dirname, "..");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");

/** Each row's a = p − e_label (at position pos[r]) restricted to `rows` [R,K] and its hidden state h [R,C]. */
async function restrictedFactors(model: CausalLMModel, input: { tokens?: Int32Array; embeds?: Float32Array }, R: number, T: number, pos: number[], label: number, rows: number[]) {
  const V = model.config.vocabSize, C = model.config.channels;
  await model.native.forward({ ...input, B: R, T, allLogits: true, keepActivations: false });
  const logits = model.native.logits(), hidden = model.native.hidden();
  const a: number[][] = [], h: number[][] = [];
  for (let r = 0; r < R; r++) {
    const l = logits.subarray((r * T + pos[r]) * V, (r * T + pos[r] + 1) * V);
    let mx = -Infinity;
    for (const x of l) mx = Math.max(mx, x);
    let z = 0;
    for (const x of l) z += Math.exp(x - mx);
    a.push(rows.map((v) => Math.exp(l[v] - mx) / z - (v === label ? 1 : 0)));
    h.push(Array.from(hidden.subarray((r * T + pos[r]) * C, (r * T + pos[r] + 1) * C)));
  }
  return { a, h };
}

/** (1/R) Σ_r a_r h_rᵀ as a K×C matrix (flattened), each term scaled by scale[r]. */
function meanGradient(a: number[][], h: number[][], scale: number[] = a.map(() => 1)): number[] {
  const K = a[0].length, C = h[0].length, G = new Array<number>(K * C).fill(0);
  for (let r = 0; r < a.length; r++) for (let k = 0; k < K; k++) for (let c = 0; c < C; c++) G[k * C + c] += (scale[r] * a[r][k] * h[r][c]) / a.length;
  return G;
}
const dot = (x: number[], y: number[]) => x.reduce((s, v, i) => s + v * y[i], 0);
const norm = (x: number[]) => Math.sqrt(dot(x, x));
const oneMinusCos = (x: number[], y: number[]) => 1 - dot(x, y) / (norm(x) * norm(y));

describe("method.target_rows label_words on the engine (tiny_lm)", () => {
  let model: CausalLMModel;
  const n = 4, T = 6, B = 3, L = 5, label = 42, other = 7;
  const rows = [other, label];
  let tokens: Int32Array, X: Float32Array;
  let args: NativeBuildTargetArgs;
  beforeAll(() => {
    model = CausalLMModel.load(tinyLM);
    const r = rng(3), V = model.config.vocabSize, C = model.config.channels;
    tokens = Int32Array.from({ length: n * T }, () => Math.floor(r() * V));
    X = Float32Array.from({ length: B * L * C }, () => (r() - 0.5) * 1.5);
    args = { tokens, n, T, lastPos: new Int32Array(n).fill(T - 1), labels: new Int32Array(n).fill(label), rows: Int32Array.from(rows) };
  });
  afterAll(() => model?.dispose());

  async function reference(clip = 0, rows_ = rows) {
    const t = await restrictedFactors(model, { tokens }, n, T, new Array(n).fill(T - 1), label, rows_);
    const exampleNorms = t.a.map((a, i) => norm(a) * norm(t.h[i]));
    const Gt = meanGradient(t.a, t.h, exampleNorms.map((e) => (clip > 0 && e > clip ? clip / e : 1)));
    const s = await restrictedFactors(model, { embeds: X }, B, L, new Array(B).fill(L - 1), label, rows_);
    return { Gt, Gs: meanGradient(s.a, s.h), exampleNorms };
  }

  it("f = 1 − cos of the restricted K×C gradients, built explicitly from the softmax and hidden states", async () => {
    const ref = await reference();
    const target = await model.native.buildTarget(args);
    const f = await model.native.matchLoss(target, { X, B, L, label });
    expect(Math.abs(f - oneMinusCos(ref.Gs, ref.Gt))).toBeLessThan(1e-5);
    expect(Math.abs(target.norm - norm(ref.Gt)) / norm(ref.Gt)).toBeLessThan(1e-5);
    const en = target.exampleNorms();
    ref.exampleNorms.forEach((e, i) => expect(Math.abs(en[i] - e) / e).toBeLessThan(1e-5));
    // the same extraction reproduces the unrestricted value (all rows), so the reference reads the model as the engine does
    const V = model.config.vocabSize, all = Array.from({ length: V }, (_, v) => v);
    const ta = await restrictedFactors(model, { tokens }, n, T, new Array(n).fill(T - 1), label, all);
    const sa = await restrictedFactors(model, { embeds: X }, B, L, new Array(B).fill(L - 1), label, all);
    const fAll = await model.native.matchLoss(await model.native.buildTarget({ ...args, rows: undefined }), { X, B, L, label });
    expect(Math.abs(fAll - oneMinusCos(meanGradient(sa.a, sa.h), meanGradient(ta.a, ta.h)))).toBeLessThan(1e-5);
    // rows without the label's (whose p − 1 dominates a): an objective far from the unrestricted one, still the reference
    const far = [7, 100, 250];
    const refFar = await reference(0, far);
    const fFar = await model.native.matchLoss(await model.native.buildTarget({ ...args, rows: Int32Array.from(far) }), { X, B, L, label });
    expect(Math.abs(fFar - oneMinusCos(refFar.Gs, refFar.Gt))).toBeLessThan(1e-5);
    expect(Math.abs(fAll - fFar)).toBeGreaterThan(1e-2);
  });

  it("df/dX matches central finite differences", async () => {
    const target = await model.native.buildTarget(args);
    const dX = new Float32Array(X.length);
    await model.native.matchLoss(target, { X, B, L, label, dX });
    const { error, norm: n } = await finiteDifferenceError((Xp) => model.native.matchLoss(target, { X: Xp, B, L, label }), X, dX, rng(11));
    expect(n).toBeGreaterThan(0);
    expect(error).toBeLessThan(2e-2);
  });

  it("DP: clipping on the restricted norm (noise 0 gives the clipped reference), noise only on the restricted entries", async () => {
    const clip = 0.02;
    const ref = await reference(clip);
    expect(ref.exampleNorms.some((e) => e > clip)).toBe(true);  // the clipping bites
    const clipped = await model.native.buildTarget({ ...args, clipNorm: clip, noiseStd: 0 });
    expect(Math.abs(clipped.norm - norm(ref.Gt)) / norm(ref.Gt)).toBeLessThan(1e-5);
    const f = await model.native.matchLoss(clipped, { X, B, L, label });
    expect(Math.abs(f - oneMinusCos(ref.Gs, ref.Gt))).toBeLessThan(1e-5);
    // with a large σ, ‖G* + N‖ ≈ ‖N‖ ≈ σ √(K·C) (the noise on K rows), not σ √(V·C) (every row)
    const sigma = 10, V = model.config.vocabSize, C = model.config.channels;
    for (const seed of [1, 2, 3]) {
      const noisy = await model.native.buildTarget({ ...args, clipNorm: clip, noiseStd: sigma, noiseSeed: seed });
      const full = await model.native.buildTarget({ ...args, rows: undefined, clipNorm: clip, noiseStd: sigma, noiseSeed: seed });
      expect(noisy.norm / (sigma * Math.sqrt(rows.length * C))).toBeGreaterThan(0.6);
      expect(noisy.norm / (sigma * Math.sqrt(rows.length * C))).toBeLessThan(1.4);
      expect(full.norm / (sigma * Math.sqrt(V * C))).toBeGreaterThan(0.9);
      expect(full.norm / (sigma * Math.sqrt(V * C))).toBeLessThan(1.1);
    }
  });

  it("refuses a row outside the vocabulary or listed twice", async () => {
    const V = model.config.vocabSize;
    expect(() => model.native.buildTarget({ ...args, rows: Int32Array.from([V]) })).toThrow(RangeError);
    expect(() => model.native.buildTarget({ ...args, rows: Int32Array.from([3, 3]) })).toThrow(/lists 3 twice/);
    expect(() => model.native.buildTarget({ ...args, rows: Int32Array.from([-1]) })).toThrow(/rows\[0\] = -1 is outside the vocabulary/);
  });
});

describe("method.target_rows in the config, the run spec and synthesize()", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-rows-"));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const tinyConfig = (out: string, method: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => tinyRunConfig(out, method, extra);

  it("labelWordRows: all classes' label tokens, distinct and ascending; all = none", () => {
    expect(Array.from(labelWordRows("label_words", [42, 7, 42])!)).toEqual([7, 42]);
    expect(labelWordRows("all", [42, 7])).toBeNull();
  });

  it("the run spec carries the rows to the workers (and nothing for all)", () => {
    const base: NativeBuildTargetArgs = { tokens: Int32Array.from([1, 2, 3, 4]), n: 2, T: 2, lastPos: Int32Array.from([1, 1]), labels: Int32Array.from([5, 5]) };
    const withRows = specClass("c", 3, { ...base, rows: Int32Array.from([5, 9]) });
    const without = specClass("c", 3, base);
    expect("rows" in without.target).toBe(false);
    const spec = (c: RunSpec["classes"][number]) => ({ run: "r", classes: [c] }) as unknown as RunSpec;
    expect(Array.from(targetArgsOf(spec(withRows), 0).rows!)).toEqual([5, 9]);
    expect(targetArgsOf(spec(without), 0).rows).toBeUndefined();
  });

  it("all (the default) keeps the fingerprint and the bytes; label_words changes the fingerprint", async () => {
    const dflt = parseConfig(tinyConfig(path.join(tmp, "default")), tmp, "cfg");
    const named = parseConfig(tinyConfig(path.join(tmp, "named"), { target_rows: "all" }), tmp, "cfg");
    const rows = parseConfig(tinyConfig(path.join(tmp, "rows"), { target_rows: "label_words" }), tmp, "cfg");
    expect(dflt.method.target_rows).toBe("all");
    expect(fingerprint(named)).toBe(fingerprint(dflt));
    expect(fingerprint(rows)).not.toBe(fingerprint(dflt));
    await synthesize(dflt);
    await synthesize(named);
    for (const f of ["synthetic.jsonl", "filtered.jsonl"]) expect(fs.readFileSync(path.join(tmp, "named", f)).equals(fs.readFileSync(path.join(tmp, "default", f))), f).toBe(true);
    const ckpt = (d: string) => JSON.parse(fs.readFileSync(path.join(tmp, d, "checkpoint.json"), "utf8")).fingerprint;
    expect(ckpt("named")).toBe(ckpt("default"));
  });

  for (const dp of [false, true])
    it(`an end-to-end run with label_words${dp ? " and DP" : ""} lowers the matching loss`, async () => {
      const out = path.join(tmp, `e2e-${dp}`);
      const config = parseConfig(tinyConfig(out, { target_rows: "label_words" }, dp ? { dp: { enabled: true, epsilon: 4, delta: 1e-5, clip_norm: 1 }, filter: { few_shot: 0, keep_per_class: 2 } } : {}), tmp, "cfg");
      const r = await synthesize(config);
      expect(r.samples.length).toBe(2 * 3);
      const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
      for (const cls of ["negative", "positive"])
        for (const b of report.classes[cls].batches) {
          expect(b.best_x_loss).toBeLessThan(b.init_loss);
          expect(b.best_x_loss).toBeGreaterThanOrEqual(0);
        }
    });
});
