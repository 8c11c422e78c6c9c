// The TypeScript model API: KV-cached decoding, determinism, abort, dispose, and the public entry points.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { AbortError, DisposedError, EngineArgumentError, InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { GPT2Model } from "../ts/model";
import { readGPT2Config } from "../ts/model_config";
import { getThreads, setThreads } from "../ts/threads";

const fixture = path.join(__dirname, "fixtures", "gpt2_tiny");

function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s % vocab;
  }
  return out;
}

describe("GPT2Model API", () => {
  it("KV-cached decoding from a shared prefix gives the full forward's logits", async () => {
    const m = GPT2Model.load(fixture);
    const V = m.config.vocabSize, P = 6, R = 4, Tc = 5;
    const prefix = randomTokens(P, V, 1), cont = randomTokens(R * Tc, V, 2);
    const full = new Int32Array(R * (P + Tc));
    for (let r = 0; r < R; r++) {
      full.set(prefix, r * (P + Tc));
      full.set(cont.subarray(r * Tc, (r + 1) * Tc), r * (P + Tc) + P);
    }
    await m.forward({ tokens: full, B: R, T: P + Tc, allLogits: true });
    const ref = m.logits();
    const pre = m.createKVCache(1, P);
    await m.decode(pre, { tokens: prefix, T: P });
    const rows = m.createKVCache(R, Tc, pre);
    let maxErr = 0;
    for (let t = 0; t < Tc; t++) {
      const step = new Int32Array(R);
      for (let r = 0; r < R; r++) step[r] = cont[r * Tc + t];
      const logits = await m.decode(rows, { tokens: step, T: 1 });
      for (let r = 0; r < R; r++)
        for (let v = 0; v < V; v++)
          maxErr = Math.max(maxErr, Math.abs(logits[r * V + v] - ref[(r * (P + Tc) + P + t) * V + v]));
    }
    expect(rows.length).toBe(Tc);
    expect(maxErr).toBeLessThan(1e-5);
    rows.reset();
    expect(rows.length).toBe(0);
    m.dispose();
  });

  it("is bit-identical across runs and thread counts", async () => {
    const before = getThreads();
    const results: Float32Array[] = [];
    for (const threads of [1, 2, 1]) {
      setThreads(threads);
      const m = GPT2Model.load(fixture);
      const tokens = randomTokens(3 * 20, m.config.vocabSize, 3);
      const loss = await m.forward({ tokens, targets: randomTokens(60, m.config.vocabSize, 4), B: 3, T: 20 });
      m.zeroGrads();
      await m.backward();
      results.push(Float32Array.from([loss, ...m.grads()]));
      m.dispose();
    }
    setThreads(before);
    expect(Buffer.from(results[1].buffer).equals(Buffer.from(results[0].buffer))).toBe(true);
    expect(Buffer.from(results[2].buffer).equals(Buffer.from(results[0].buffer))).toBe(true);
  });

  it("rejects with AbortError when the signal is aborted, and keeps working after", async () => {
    const m = GPT2Model.create({ vocabSize: 512, maxSeqLen: 256, channels: 256, numLayers: 8, numHeads: 4 });
    m.initRandom(1);
    const tokens = randomTokens(8 * 256, 512, 5);
    const ac = new AbortController();
    const pending = m.forward({ tokens, B: 8, T: 256, signal: ac.signal });
    ac.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    await expect(m.forward({ tokens, B: 8, T: 256, signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    const loss = await m.forward({ tokens, targets: tokens, B: 8, T: 256 });
    expect(Number.isFinite(loss)).toBe(true);
    m.dispose();
  });

  it("AdamW moments can be saved and restored: a resumed optimiser continues bit for bit", async () => {
    const tokens = randomTokens(2 * 12, 211, 9), targets = randomTokens(2 * 12, 211, 10);
    const step = async (m: GPT2Model, t: number) => {
      await m.forward({ tokens, targets, B: 2, T: 12 });
      m.zeroGrads();
      await m.backward();
      await m.adamwStep({ lr: 1e-2, weightDecay: 0.1, maxGradNorm: 1, step: t });
    };
    const straight = GPT2Model.load(fixture);
    await step(straight, 1);
    await step(straight, 2);
    const first = GPT2Model.load(fixture);
    await step(first, 1);
    expect(first.adamMoments().v.some((x) => x > 0)).toBe(true);
    const resumed = GPT2Model.load(fixture);
    resumed.params.set(first.params);
    resumed.adamMoments().m.set(first.adamMoments().m);
    resumed.adamMoments().v.set(first.adamMoments().v);
    await step(resumed, 2);
    expect(Buffer.from(resumed.params.buffer, resumed.params.byteOffset, resumed.params.byteLength).equals(Buffer.from(straight.params.buffer, straight.params.byteOffset, straight.params.byteLength))).toBe(true);
    for (const m of [straight, first, resumed]) m.dispose();
  });

  it("throws DisposedError after dispose(), while earlier views stay readable", () => {
    const m = GPT2Model.load(fixture);
    const wte = m.tensor("wte.weight");
    const first = wte[0];
    m.dispose();
    expect(() => m.params).toThrow(DisposedError);
    expect(() => m.forward({ tokens: new Int32Array(1), B: 1, T: 1 })).toThrow(DisposedError);
    expect(wte[0]).toBe(first);
  });

  it("validates shapes before native code touches memory", async () => {
    const m = GPT2Model.load(fixture);
    await expect(m.forward({ tokens: new Int32Array(5), B: 2, T: 3 })).rejects.toThrow(/length 5, expected 6/);
    await expect(m.forward({ tokens: new Int32Array([0, 1, 9999]), B: 1, T: 3 })).rejects.toThrow(/token id out of range/);
    await expect(m.forward({ tokens: new Int32Array(40), B: 1, T: 40 })).rejects.toThrow(/max_seq_len/);
    m.dispose();
  });

  it("gives typed errors for bad or unsupported config.json", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-cfg-"));
    try {
      fs.writeFileSync(path.join(dir, "config.json"), "{ not json");
      expect(() => readGPT2Config(dir)).toThrow(InvalidFileError);
      fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "bert" }));
      expect(() => readGPT2Config(dir)).toThrow(UnsupportedModelError);
      fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "gpt2", n_embd: 64, n_head: 4, n_layer: 2, vocab_size: 10, n_positions: 8, activation_function: "relu" }));
      expect(() => readGPT2Config(dir)).toThrow(/activation_function 'relu'/);
      fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "gpt2", n_embd: 64, n_head: 4, vocab_size: 10, n_positions: 8 }));
      expect(() => readGPT2Config(dir)).toThrow(/n_layer/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("package entry points", () => {
  const root = path.join(__dirname, "..");
  it("can be required from CommonJS and imported from ESM (no top-level await)", () => {
    const cjs = execFileSync(process.execPath, ["-e", "const g = require('gradmm'); console.log(typeof g.CausalLMModel, typeof g.setThreads)"], { cwd: root, encoding: "utf8" });
    expect(cjs.trim()).toBe("function function");
    const esm = execFileSync(process.execPath, ["--input-type=module", "-e", "import { CausalLMModel, getThreads } from 'gradmm'; console.log(typeof CausalLMModel, getThreads() > 0)"], { cwd: root, encoding: "utf8" });
    expect(esm.trim()).toBe("function true");
  });
});

describe("inference forward (keepActivations: false)", () => {
  for (const dir of ["gpt2_tiny", "llama_tiny"]) {
    it(`${dir}: the same logits and hidden states bit for bit, one layer's memory, and no backward after it`, async () => {
      const m = GPT2Model.load(path.join(__dirname, "fixtures", dir));
      const V = m.config.vocabSize, B = 3, T = 9;
      const tokens = randomTokens(B * T, V, 7), targets = randomTokens(B * T, V, 8);
      const lossKeep = await m.forward({ tokens, targets, B, T, allLogits: true });
      const logitsKeep = m.logits(), hiddenKeep = m.hidden();
      const lossInf = await m.forward({ tokens, targets, B, T, allLogits: true, keepActivations: false });
      expect(lossInf).toBe(lossKeep);
      expect(m.logits()).toEqual(logitsKeep);
      expect(m.hidden()).toEqual(hiddenKeep);
      await expect(m.backward()).rejects.toThrow(/kept no activations/);
      // a training forward afterwards works as before (its activations are allocated again)
      expect(await m.forward({ tokens, targets, B, T })).toBe(lossKeep);
      await m.backward();
      m.dispose();
    });
  }
});

describe("engine argument errors through the model API", () => {
  it("are EngineArgumentErrors with the numbers (token id, sequence length), from forward and decode", async () => {
    const m = GPT2Model.load(fixture);
    const V = m.config.vocabSize, T = m.config.maxSeqLen;
    const bad = new Int32Array(4).fill(1);
    bad[2] = V + 5;
    await expect(m.forward({ tokens: bad, B: 1, T: 4 })).rejects.toThrow(EngineArgumentError);
    await expect(m.forward({ tokens: bad, B: 1, T: 4 })).rejects.toThrow(new RegExp(`${V + 5}`));
    const long = new Int32Array(T + 1).fill(1);
    await expect(m.forward({ tokens: long, B: 1, T: T + 1 })).rejects.toThrow(EngineArgumentError);
    const cache = m.createKVCache(1, 4);
    await expect(m.decode(cache, { tokens: Int32Array.of(V), T: 1 })).rejects.toThrow(EngineArgumentError);
    // the model keeps working
    expect(Number.isFinite(await m.forward({ tokens: Int32Array.of(1, 2, 3), targets: Int32Array.of(2, 3, 4), B: 1, T: 3 }))).toBe(true);
    m.dispose();
  });
});
