// method.objective whitened_contrastive (ours): f = 1 − cos(W(G_syn) − M, W(T_k) − M), W the diagonal whitening of
// the lm_head gradients from the private examples' factors, M the mean of the whitened class targets. Checked against
// an independent TypeScript reference (the whitening of bench/utility/signal.ts, dense V×C gradients built from the
// model's softmax and hidden states), by finite differences of df/dX, and through the config and synthesize().
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseUtilityConfig } from "../bench/utility/config";
import { diagonalWhitening } from "../bench/utility/signal";
import { parseConfig } from "../ts/gradmm/config";
import { fingerprint } from "../ts/gradmm/output";
import { synthesize } from "../ts/gradmm/synthesize";
import { CausalLMModel } from "../ts/model";
import { mulberry32 as rng } from "../ts/random";
import { finiteDifferenceError, tinyRunConfig } from "./helpers/tiny_synth";

const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");

/** Each row's a = p − e_label at position pos and its hidden state h, as Float32Arrays. */
async function factors(model: CausalLMModel, input: { tokens?: Int32Array; embeds?: Float32Array }, R: number, T: number, label: number) {
  const V = model.config.vocabSize, C = model.config.channels;
  await model.native.forward({ ...input, B: R, T, allLogits: true, keepActivations: false });
  const logits = model.native.logits(), hidden = model.native.hidden();
  const A: Float32Array[] = [], H: Float32Array[] = [];
  for (let r = 0; r < R; r++) {
    const l = logits.subarray((r * T + T - 1) * V, (r * T + T) * V);
    let mx = -Infinity;
    for (const x of l) mx = Math.max(mx, x);
    let z = 0;
    for (const x of l) z += Math.exp(x - mx);
    A.push(Float32Array.from(l, (x, v) => Math.exp(x - mx) / z - (v === label ? 1 : 0)));
    H.push(Float32Array.from(hidden.subarray((r * T + T - 1) * C, (r * T + T) * C)));
  }
  return { A, H };
}
/** Σ_r w_r (fa(a_r))(fh(h_r))ᵀ, dense [V·C], in double. */
function dense(f: { A: Float32Array[]; H: Float32Array[] }, w: number, map: { a: (x: Float32Array) => Float32Array; h: (x: Float32Array) => Float32Array }): Float64Array {
  const V = f.A[0].length, C = f.H[0].length, G = new Float64Array(V * C);
  f.A.forEach((a0, r) => {
    const a = map.a(a0), h = map.h(f.H[r]);
    for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) G[v * C + c] += w * a[v] * h[c];
  });
  return G;
}
const sub = (x: Float64Array, y: Float64Array) => x.map((v, i) => v - y[i]);
const dot = (x: ArrayLike<number>, y: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
};
const oneMinusCos = (x: Float64Array, y: Float64Array) => 1 - dot(x, y) / Math.sqrt(dot(x, x) * dot(y, y));

describe("whitened contrastive targets on the engine (tiny_lm)", () => {
  let model: CausalLMModel;
  const T = 6, B = 3, L = 5, labels = [42, 7], counts = [4, 5];
  let tokens: Int32Array[], X: Float32Array;
  beforeAll(() => {
    model = CausalLMModel.load(tinyLM);
    const r = rng(5), V = model.config.vocabSize, C = model.config.channels;
    tokens = counts.map((n) => Int32Array.from({ length: n * T }, () => Math.floor(r() * V)));
    X = Float32Array.from({ length: B * L * C }, () => (r() - 0.5) * 1.5);
  });
  afterAll(() => model?.dispose());
  const plainTargets = () =>
    Promise.all(counts.map((n, k) => model.native.buildTarget({ tokens: tokens[k], n, T, lastPos: new Int32Array(n).fill(T - 1), labels: new Int32Array(n).fill(labels[k]) })));

  it("f = 1 − cos(W(G_syn) − M, W(T_k) − M) of the dense whitened gradients, at three shrinkages", async () => {
    const raw = await plainTargets();
    const real: Awaited<ReturnType<typeof factors>>[] = [];  // one after another: a forward's logits are read before the next
    for (let k = 0; k < 2; k++) real.push(await factors(model, { tokens: tokens[k] }, counts[k], T, labels[k]));
    for (const shrinkage of [1, 0.5, 0.1, 0]) {
      const targets = await model.native.whitenedContrastiveTargets(raw, shrinkage);
      expect(targets.length).toBe(2);
      const w = diagonalWhitening(real, shrinkage);
      const Tk = real.map((f) => dense(f, 1 / f.A.length, w));
      const M = Tk[0].map((v, i) => (v + Tk[1][i]) / 2);
      for (let k = 0; k < 2; k++) {
        const syn = await factors(model, { embeds: X }, B, L, labels[k]);
        const S = dense(syn, 1 / B, w);
        const D = sub(Tk[k], M);
        const f = await model.native.matchLoss(targets[k], { X, B, L, label: labels[k] });
        expect(Math.abs(f - oneMinusCos(sub(S, M), D)), `shrinkage ${shrinkage}, class ${k}`).toBeLessThan(2e-5);
        expect(Math.abs(targets[k].norm - Math.sqrt(dot(D, D))) / Math.sqrt(dot(D, D))).toBeLessThan(1e-5);
        // each sequence's own distance, per sample
        const per = new Float32Array(B);
        await model.native.matchLoss(targets[k], { X, B, L, label: labels[k], perSample: per });
        for (let j = 0; j < B; j++) {
          const own = dense({ A: [syn.A[j]], H: [syn.H[j]] }, 1, w);
          expect(Math.abs(per[j] - oneMinusCos(sub(own, M), D))).toBeLessThan(2e-5);
        }
      }
    }
  });

  it("differs from the paper's objective, and the classes' targets pull apart: D_0 = −D_1", async () => {
    const raw = await plainTargets();
    const [t0, t1] = await model.native.whitenedContrastiveTargets(raw, 0.5);
    const paper = await model.native.matchLoss(raw[0], { X, B, L, label: labels[0] });
    const ours = await model.native.matchLoss(t0, { X, B, L, label: labels[0] });
    expect(Math.abs(paper - ours)).toBeGreaterThan(1e-2);
    // with two classes T_0 − M = (T_0 − T_1)/2 = −(T_1 − M): the same norm
    expect(Math.abs(t0.norm - t1.norm) / t0.norm).toBeLessThan(1e-5);
  });

  it("df/dX matches central finite differences", async () => {
    const [t0] = await model.native.whitenedContrastiveTargets(await plainTargets(), 0.5);
    const dX = new Float32Array(X.length);
    await model.native.matchLoss(t0, { X, B, L, label: labels[0], dX });
    const { error, norm } = await finiteDifferenceError((Xp) => model.native.matchLoss(t0, { X: Xp, B, L, label: labels[0] }), X, dX, rng(13));
    expect(norm).toBeGreaterThan(0);
    expect(error).toBeLessThan(2e-2);
  });

  it("refuses one class, a bad shrinkage, and targets that are not plain", async () => {
    const raw = await plainTargets();
    expect(() => model.native.whitenedContrastiveTargets([raw[0]], 0.5)).toThrow(/two classes/);
    expect(() => model.native.whitenedContrastiveTargets(raw, 1.5)).toThrow(/shrinkage/);
    const dp = await model.native.buildTarget({ tokens: tokens[0], n: counts[0], T, lastPos: new Int32Array(counts[0]).fill(T - 1), labels: new Int32Array(counts[0]).fill(labels[0]), noiseStd: 0.1, noiseSeed: 1 });
    await expect(model.native.whitenedContrastiveTargets([dp, raw[1]], 0.5)).rejects.toThrow(/plain/);
  });
});

describe("method.objective in the config and synthesize()", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-contrastive-"));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const tinyConfig = (out: string, method: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
    tinyRunConfig(out, method, extra, { few_shot: 0, keep_per_class: 3 });

  it("paper (the default) keeps the fingerprint; whitened_contrastive and its shrinkage change it", () => {
    const dflt = parseConfig(tinyConfig(path.join(tmp, "a")), tmp, "cfg");
    const named = parseConfig(tinyConfig(path.join(tmp, "a"), { objective: "paper", whitening_shrinkage: 0.2 }), tmp, "cfg");
    const ours = parseConfig(tinyConfig(path.join(tmp, "a"), { objective: "whitened_contrastive" }), tmp, "cfg");
    const ours2 = parseConfig(tinyConfig(path.join(tmp, "a"), { objective: "whitened_contrastive", whitening_shrinkage: 0.2 }), tmp, "cfg");
    expect(dflt.method.objective).toBe("paper");
    expect(dflt.method.whitening_shrinkage).toBe(0.5);
    expect(fingerprint(named)).toBe(fingerprint(dflt));
    expect(new Set([fingerprint(dflt), fingerprint(ours), fingerprint(ours2)]).size).toBe(3);
  });

  it("refuses DP, target_rows label_words and a shrinkage outside [0, 1], naming the field", () => {
    const bad = (method: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
      try {
        parseConfig(tinyConfig(path.join(tmp, "x"), method, extra), tmp, "cfg.yaml");
      } catch (e) {
        return (e as Error).message;
      }
      return "";
    };
    expect(bad({ objective: "whitened_contrastive" }, { dp: { enabled: true } })).toMatch(/method\.objective.*dp\.enabled/);
    expect(bad({ objective: "whitened_contrastive", target_rows: "label_words" })).toMatch(/method\.objective.*target_rows: all/);
    expect(bad({ objective: "whitened_contrastive", whitening_shrinkage: 2 })).toMatch(/method\.whitening_shrinkage/);
    // the utility benchmark refuses it with gradmm_dp before it runs anything
    const utility = (methods: Record<string, boolean>) => () =>
      parseUtilityConfig({ ...tinyConfig(path.join(tmp, "u"), { objective: "whitened_contrastive" }), output: undefined, eval: { output: path.join(tmp, "u"), methods } }, tmp, "u.yaml");
    expect(utility({ gradmm_dp: true })).toThrow(/eval\.methods\.gradmm_dp: .*whitened_contrastive/);
    expect(utility({ gradmm_dp: false })).not.toThrow();
  });

  it("an end-to-end run lowers its own matching loss, and makes other text than the paper's objective", async () => {
    const paperOut = path.join(tmp, "paper"), oursOut = path.join(tmp, "ours");
    await synthesize(parseConfig(tinyConfig(paperOut), tmp, "cfg"));
    const r = await synthesize(parseConfig(tinyConfig(oursOut, { objective: "whitened_contrastive" }), tmp, "cfg"));
    expect(r.samples.length).toBe(2 * 3);
    const report = JSON.parse(fs.readFileSync(path.join(oursOut, "report.json"), "utf8"));
    for (const cls of ["negative", "positive"])
      for (const b of report.classes[cls].batches) {
        expect(b.best_x_loss).toBeLessThan(b.init_loss);
        expect(b.best_x_loss).toBeGreaterThanOrEqual(0);
      }
    const texts = (d: string) => fs.readFileSync(path.join(d, "synthetic.jsonl"), "utf8");
    expect(texts(oursOut)).not.toBe(texts(paperOut));
  });
});
