// Our GRADMM numbers against the two PyTorch implementations of bench/reference (the paper's structure, and ours in
// PyTorch) on the tiny fixture model. Needs a Python with torch (bench/torch_env.ts torchPython()): skipped where there is none.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkAgreement, modelFromFolder, type AgreementResult } from "../bench/speed";
import { saveHFFolder } from "../bench/speed/models";
import { GPT2Model } from "../ts/model";
import { torchAvailable } from "../bench/torch_env";

const torch = torchAvailable();

describe.skipIf(!torch)("bench/reference: ours vs the PyTorch reference vs ours in PyTorch (tiny_lm)", () => {
  let a: AgreementResult;

  it("runs the three sides on the same inputs", async () => {
    const model = modelFromFolder(path.join(__dirname, "fixtures", "tiny_lm"), "tiny_lm");
    a = await checkAgreement({ model, shape: { B: 4, free: 16, n: 6, prefix: 20 }, initCandidates: 4, threads: 2, log: () => {} });
    expect(a.shape.V).toBe(400);
  });

  it("the target gradient G* agrees elementwise (full V×C)", () => {
    expect(a.target_G.ours_ref).toBeLessThan(1e-5 * a.target_G.scale);
    expect(a.target_G.fast_ref).toBeLessThan(1e-5 * a.target_G.scale);
    expect(Math.abs(a.target_norm.ours - a.target_norm.ref64)).toBeLessThan(1e-5 * a.target_norm.ref64);
  });

  it("the distance and its x-gradient agree (reference cosine in float64)", () => {
    expect(a.f.ours_ref64).toBeLessThan(1e-5);
    expect(a.f.fast_ref64).toBeLessThan(1e-5);
    expect(a.f.ours_fast).toBeLessThan(1e-5);
    expect(a.dX.ours_ref64).toBeLessThan(1e-4 * a.dX.scale);
    expect(a.dX.fast_ref64).toBeLessThan(1e-4 * a.dX.scale);
    // the released float32 cosine is looser, but close
    expect(a.f.ours_ref).toBeLessThan(1e-3);
  });

  it("the projection picks the same tokens", () => {
    expect(a.projection.ours_ref_equal).toBeGreaterThanOrEqual(0.95 * a.projection.positions);
    expect(a.projection.ours_fast_equal).toBeGreaterThanOrEqual(0.95 * a.projection.positions);
  });

  it("init draws the same candidates and keeps the same one", () => {
    expect(a.init.X_ours_ref).toBeLessThan(1e-6);
    expect(a.init.X_ours_fast).toBeLessThan(1e-6);
    expect(Math.abs(a.init.f_ours - a.init.f_fast)).toBeLessThan(1e-5);
  });
});

// The same three sides on a Llama-family model (grouped-query attention, llama3 RoPE, q/k/v/o biases, an untied
// lm_head): bench/reference/llama_torch.py against our engine, through the folder the speed benchmark writes.
describe.skipIf(!torch)("bench/reference: the PyTorch Llama of the speed benchmark (tiny random Llama)", () => {
  let a: AgreementResult;

  it("runs the three sides on the same inputs", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-ref-llama-"));
    try {
      const model = GPT2Model.create({
        architecture: "llama", vocabSize: 400, maxSeqLen: 128, channels: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2,
        rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 },
        tieWordEmbeddings: false, attentionBias: true, oProjBias: true, mlpBias: false,
      });
      try {
        model.initRandom(5);
        saveHFFolder(model, dir);
      } finally {
        model.dispose();
      }
      fs.copyFileSync(path.join(__dirname, "fixtures", "tiny_lm", "tokenizer.json"), path.join(dir, "tokenizer.json"));
      const m = modelFromFolder(dir, "llama-tiny");
      expect(m.config.architecture).toBe("llama");
      a = await checkAgreement({ model: m, shape: { B: 3, free: 12, n: 5, prefix: 16 }, initCandidates: 3, threads: 2, log: () => {} });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(a.shape.V).toBe(400);
  });

  it("target gradient, distance, x-gradient, projection and init agree", () => {
    expect(a.target_G.ours_ref).toBeLessThan(1e-5 * a.target_G.scale);
    expect(a.target_G.fast_ref).toBeLessThan(1e-5 * a.target_G.scale);
    expect(a.f.ours_ref64).toBeLessThan(1e-5);
    expect(a.f.ours_fast).toBeLessThan(1e-5);
    expect(a.dX.ours_ref64).toBeLessThan(1e-4 * a.dX.scale);
    expect(a.dX.ours_fast).toBeLessThan(1e-4 * a.dX.scale);
    expect(a.projection.ours_ref_equal).toBeGreaterThanOrEqual(0.95 * a.projection.positions);
    expect(a.projection.ours_fast_equal).toBeGreaterThanOrEqual(0.95 * a.projection.positions);
    expect(a.init.X_ours_fast).toBeLessThan(1e-6);
  });
});

describe("bench/reference: models the PyTorch sides do not model", () => {
  it("refuses Phi and Phi-3's fused layout by name (no torch needed)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-ref-refuse-"));
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ architecture: "llama", modelType: "phi3", fusedQkvGateUp: true, rmsNormEps: 1e-5 }, /this model is phi3: run it through synth/],
      [{ architecture: "phi", layerNormEps: 1e-5, rotaryDim: 8 }, /this model is phi: run it through synth/],
    ];
    try {
      for (const [extra, msg] of cases) {
        const model = GPT2Model.create({ vocabSize: 64, maxSeqLen: 16, channels: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, ...extra } as never);
        try {
          expect(() => saveHFFolder(model, dir)).toThrow(msg);
        } finally {
          model.dispose();
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
