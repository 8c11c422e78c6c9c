// The engine's GPT-2 against transformers' GPT2LMHeadModel and torch.optim.AdamW: fixtures made by
// test/fixtures/gen_gpt2.py (committed; CI needs neither transformers nor PyTorch).
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT2Model } from "../ts/model";
import { openSafetensors, type SafetensorsReader } from "../ts/safetensors";
import { scaledError } from "./helpers/scaled_error";

const dir = path.join(__dirname, "fixtures", "gpt2_tiny");

describe("GPT-2 engine vs transformers (tiny GPT2LMHeadModel: V=211, C=64, 2 layers, 4 heads, T=16)", () => {
  let expected: SafetensorsReader;
  let model: GPT2Model;
  const B = 2, T = 16;

  beforeAll(() => {
    expected = openSafetensors(path.join(dir, "expected.safetensors"));
    model = GPT2Model.load(dir);
  });
  afterAll(() => {
    expected.close();
    model.dispose();
  });

  it("loads config.json and every tensor", () => {
    expect(model.config).toMatchObject({ vocabSize: 211, channels: 64, numLayers: 2, numHeads: 4, maxSeqLen: 32 });
    expect(model.paramTable.length).toBe(28);
  });

  it("matches logits, loss and every parameter gradient (token input, loss at all positions)", async () => {
    const loss = await model.forward({
      tokens: expected.readI32("input_ids"),
      targets: expected.readI32("targets"),
      lossMask: expected.readF32("loss_mask"),
      B,
      T,
    });
    expect(Math.abs(loss - expected.readF32("loss")[0])).toBeLessThan(1e-5);
    expect(model.selectedRows().length).toBe(B * T);
    expect(scaledError(model.logits(), expected.readF32("logits"))).toBeLessThan(1e-4);
    model.zeroGrads();
    await model.backward();
    for (const p of model.paramTable) {
      const err = scaledError(model.tensor(p.name, "grads"), expected.readF32(`grad.${p.name}`));
      expect(err, p.name).toBeLessThan(1e-4);
    }
  });

  it("matches hidden states, loss and the input-embedding gradient (embeds input, last-position loss)", async () => {
    const mask = expected.readF32("embeds.loss_mask");
    const loss = await model.forward({
      embeds: expected.readF32("embeds.input"),
      targets: expected.readI32("embeds.targets"),
      lossMask: mask,
      B,
      T,
    });
    expect(Math.abs(loss - expected.readF32("embeds.loss")[0])).toBeLessThan(1e-5);
    expect(model.selectedRows()).toEqual(new Int32Array([T - 1, 2 * T - 1])); // logits only where the mask counts
    expect(scaledError(model.hidden(), expected.readF32("embeds.hidden"))).toBeLessThan(1e-4);
    model.zeroGrads();
    const dEmbeds = new Float32Array(B * T * 64);
    await model.backward({ paramGrads: false, dEmbeds });
    expect(scaledError(dEmbeds, expected.readF32("embeds.grad_input"))).toBeLessThan(1e-4);
    expect(model.grads().every((g) => g === 0)).toBe(true);
  });

  it("AdamW arithmetic: one step from the reference's gradients (eps 1e-8, clipping) gives torch.optim.AdamW's parameters", async () => {
    const m = GPT2Model.load(dir);
    try {
      m.zeroGrads();
      for (const p of m.paramTable) m.tensor(p.name, "grads").set(expected.readF32(`grad.${p.name}`));
      await m.adamwStep({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1, step: 1 });
      for (const p of m.paramTable) expect(scaledError(m.tensor(p.name), expected.readF32(`adamw1.${p.name}`)), p.name).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  it("matches the parameters after 3 AdamW training steps with grad-norm clipping", async () => {
    const m = GPT2Model.load(dir);
    try {
      const losses = expected.readF32("adamw.losses"), norms = expected.readF32("adamw.grad_norms");
      for (let step = 1; step <= 3; step++) {
        const loss = await m.forward({
          tokens: expected.readI32("input_ids"),
          targets: expected.readI32("targets"),
          B,
          T,
        });
        expect(Math.abs(loss - losses[step - 1])).toBeLessThan(1e-4);
        m.zeroGrads();
        await m.backward();
        const norm = await m.adamwStep({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-4, weightDecay: 0.1, maxGradNorm: 1, step });
        expect(Math.abs(norm - norms[step - 1]) / norms[step - 1]).toBeLessThan(1e-4);
      }
      for (const p of m.paramTable) {
        const err = scaledError(m.tensor(p.name), expected.readF32(`adamw.${p.name}`));
        expect(err, p.name).toBeLessThan(1e-4);
      }
    } finally {
      m.dispose();
    }
  });
});
