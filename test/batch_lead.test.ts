// A batch's lead positions: tokens pinned before the free positions (the tokenizer's <bos>, for Gemma, Llama 2 and
// other tokenizers that start every text with one). init, the x-update, the projection and the dual update must
// leave them (and the template after the free positions) as the token embeddings they are, and the batch with a lead
// must be the same optimisation problem as the one without, shifted: the decoded z is exactly what matchLoss gives
// for [lead, chosen tokens, template].
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CausalLMModel } from "../ts/model";
import { native, type NativeMatchTarget } from "../ts/native";

const fx = path.join(__dirname, "fixtures", "hf_oracles");

describe.each(["gemma3", "llama"])("a batch with lead tokens (%s)", (arch) => {
  let model: CausalLMModel;
  let target: NativeMatchTarget;
  const B = 2, lead = [2], free = 3, template = [5, 6], L = lead.length + free + template.length, label = 7;
  beforeAll(async () => {
    model = CausalLMModel.load(path.join(fx, arch));
    const n = 3, T = 6;
    const tokens = Int32Array.from({ length: n * T }, (_, i) => 10 + ((i * 37) % 200));
    for (let i = 0; i < n; i++) tokens[i * T] = lead[0];
    target = await model.native.buildTarget({ tokens, n, T, lastPos: new Int32Array(n).fill(T - 1), labels: new Int32Array(n).fill(label) });
  });
  afterAll(() => model?.dispose());

  const rowsAt = (x: Float32Array, positions: number[], C: number) => positions.flatMap((p) => [0, 1].map((b) => Array.from(x.subarray((b * L + p) * C, (b * L + p + 1) * C))));

  it("keeps the lead and the template pinned through init, x-updates, projections and dual updates", async () => {
    const C = model.config.channels, V = model.config.vocabSize;
    const { Batch } = native();
    const batch = new Batch(model.native, target, { B, L, freeLen: free, label, templateTokens: Int32Array.from(template), leadTokens: Int32Array.from(lead) });
    await batch.init({ candidates: 4, seed: 1, tokenNorm: 1.4 });
    const pinned = [0, L - 2, L - 1];
    const want = (ids: number[]) => ids.flatMap((t) => [0, 1].map(() => Array.from(model.tokenEmbeddings([t]))));
    const wantPinned = want([lead[0], ...template]);
    expect(rowsAt(batch.read("x"), pinned, C)).toEqual(wantPinned);
    const x0 = batch.read("x");
    // the free positions were drawn at the init norm (in units of the embedding table)
    for (let b = 0; b < B; b++)
      for (let p = 1; p <= free; p++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += x0[(b * L + p) * C + c] ** 2;
        expect(Math.sqrt(s)).toBeCloseTo(1.4 * model.inputEmbeddingScale, 3);
      }
    const prompt = Int32Array.from([lead[0], 11, 12, 13]);
    const prefix = model.createKVCache(1, prompt.length);
    const prefixLogits = await model.decode(prefix, { tokens: prompt, T: prompt.length });
    const allowed = new Uint8Array(V).fill(1);
    const outTokens = new Int32Array(B * free);
    for (let outer = 0; outer < 2; outer++) {
      await batch.project({ from: "dual", rho: 0.1, allowed, topk: 8, prefix: prefix.handle, prefixLogits, outTokens });
      const z = batch.read("z");
      expect(rowsAt(z, pinned, C)).toEqual(wantPinned);
      // z's free rows are the chosen tokens' embeddings, and f(z) is matchLoss of [lead, chosen, template]
      const seqs = [0, 1].map((b) => [...lead, ...Array.from(outTokens.subarray(b * free, (b + 1) * free)), ...template]);
      const X = new Float32Array(B * L * C);
      seqs.forEach((s, b) => model.tokenEmbeddings(s, X.subarray(b * L * C, (b + 1) * L * C)));
      expect(z).toEqual(X);
      expect(await batch.zLoss({})).toBe(await model.native.matchLoss(target, { X, B, L, label }));
      await batch.xUpdate({ steps: 3, rho: 0.1, lr: 0.05, maxGradNorm: 1 });
      await batch.dualUpdate({ rho: 0.1 });
      const x = batch.read("x"), lam = batch.read("lam");
      expect(rowsAt(x, pinned, C)).toEqual(wantPinned);
      expect(rowsAt(lam, pinned, C).flat().every((v) => v === 0)).toBe(true);
      expect(rowsAt(x, [1, 2, 3], C)).not.toEqual(rowsAt(x0, [1, 2, 3], C)); // the free positions moved
      expect(rowsAt(lam, [1, 2, 3], C).flat().some((v) => v !== 0)).toBe(true);
      expect(rowsAt(batch.read("m"), pinned, C).flat().every((v) => v === 0)).toBe(true); // no Adam state there
    }
  });

  it("refuses a lead that leaves no room, or a template of the wrong length", () => {
    const { Batch } = native();
    const t = Int32Array.from(template);
    expect(() => new Batch(model.native, target, { B, L, freeLen: L - 1, label, templateTokens: t, leadTokens: Int32Array.from(lead) })).toThrow(/freeLen \+ leadTokens.length exceeds L|expected/);
    expect(() => new Batch(model.native, target, { B, L: L + 1, freeLen: free, label, templateTokens: t, leadTokens: Int32Array.from(lead) })).toThrow(/templateTokens' has length 2, expected 3/);
  });
});
