// Gemma 3 (Gemma3ForCausalLM, model_type gemma3_text) beyond the numeric oracle (test/hf_oracles.test.ts): its
// config.json mapping (transformers 5.x rope_parameters and the older rope_theta / rope_local_base_freq /
// sliding_window_pattern fields) and typed errors, the scaled token embeddings the method builds its inputs from, and
// the GRADMM pipeline end to end on a Gemma 3 model, with and without DP, reproducible from its seed.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { parseConfig } from "../ts/gradmm/config";
import { synthesize } from "../ts/gradmm/synthesize";
import { CausalLMModel } from "../ts/model";
import { readModelConfig, type Gemma3Config } from "../ts/model_config";
import { writeSafetensors, type WritableTensor } from "../ts/safetensors_write";
import { bf16Support } from "../ts/threads";

const root = path.join(__dirname, "..");
const oracle = path.join(__dirname, "fixtures", "hf_oracles", "gemma3");
const baseConfig = JSON.parse(fs.readFileSync(path.join(oracle, "config.json"), "utf8")) as Record<string, unknown>;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-gemma3-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function configDir(patch: Record<string, unknown>): string {
  const d = fs.mkdtempSync(path.join(tmp, "cfg-"));
  const cfg: Record<string, unknown> = { ...baseConfig, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete cfg[k];
  fs.writeFileSync(path.join(d, "config.json"), JSON.stringify(cfg));
  return d;
}

describe("Gemma 3 config.json", () => {
  it("maps Gemma 3 270M's fields (head_dim, per-kind rope bases, layer_types, window, tied lm_head)", () => {
    const c = readModelConfig(oracle) as Gemma3Config;
    expect(c).toEqual({
      architecture: "gemma3",
      modelType: "gemma3_text",
      vocabSize: 256,
      maxSeqLen: 64,
      channels: 32,
      intermediateSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 1,
      headDim: 16,
      rmsNormEps: 1e-6,
      ropeTheta: 1e6,
      ropeLocalTheta: 1e4,
      ropeScalingFactor: 1,
      ropeLocalScalingFactor: 1,
      slidingWindow: 8,
      layerTypes: ["sliding_attention", "full_attention"],
      queryPreAttnScalar: 16,
      tieWordEmbeddings: true,
    });
  });

  it("reads the older fields: rope_theta, rope_local_base_freq, rope_scaling (full layers), sliding_window_pattern", () => {
    const old = configDir({
      rope_parameters: undefined,
      layer_types: undefined,
      _sliding_window_pattern: undefined,
      num_hidden_layers: 7,
      sliding_window_pattern: 3,
      rope_theta: 500000,
      rope_local_base_freq: 20000,
      rope_scaling: { rope_type: "linear", factor: 8 },
    });
    expect(readModelConfig(old)).toMatchObject({
      ropeTheta: 500000,
      ropeLocalTheta: 20000,
      ropeScalingFactor: 8,
      ropeLocalScalingFactor: 1,
      layerTypes: ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
    });
    const linear = configDir({ rope_parameters: { full_attention: { rope_type: "linear", factor: 4, rope_theta: 1e6 }, sliding_attention: { rope_type: "linear", factor: 2, rope_theta: 1e4 } } });
    expect(readModelConfig(linear)).toMatchObject({ ropeScalingFactor: 4, ropeLocalScalingFactor: 2 });
  });

  it("what the engine would run differently is an UnsupportedModelError naming it; malformed values InvalidFileErrors", () => {
    const unsupported: Array<[Record<string, unknown>, RegExp]> = [
      [{ attn_logit_softcapping: 50 }, /attn_logit_softcapping 50/],
      [{ final_logit_softcapping: 30 }, /final_logit_softcapping 30/],
      [{ use_bidirectional_attention: true }, /use_bidirectional_attention/],
      [{ query_pre_attn_scalar: 8 }, /query_pre_attn_scalar 8 \(head_dim 16 only\)/],
      [{ hidden_activation: "gelu" }, /hidden_activation 'gelu'/],
      [{ attention_bias: true }, /attention_bias/],
      [{ rope_parameters: { full_attention: { rope_type: "yarn", factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: "default", rope_theta: 1e4 } } }, /rope_type 'yarn' on the full_attention layers/],
      [{ layer_types: ["sliding_attention", "chunked_attention"] }, /layer_types entry 'chunked_attention'/],
      [{ architectures: ["Gemma3ForConditionalGeneration"] }, /architecture 'Gemma3ForConditionalGeneration'/],
    ];
    for (const [patch, msg] of unsupported) {
      const d = configDir(patch);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(UnsupportedModelError);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(msg);
    }
    const invalid: Array<[Record<string, unknown>, RegExp]> = [
      [{ layer_types: ["full_attention"] }, /layer_types has 1 entries for 2 layers/],
      [{ head_dim: 15 }, /head_dim 15/],
      [{ rms_norm_eps: 0 }, /rms_norm_eps/],
      [{ sliding_window: null }, /sliding_window/],
    ];
    for (const [patch, msg] of invalid) {
      const d = configDir(patch);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(InvalidFileError);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(msg);
    }
  });
});

describe("Gemma 3 token embeddings", () => {
  it("a token lookup scales the rows by float32(sqrt(hidden_size)); input embeddings are used as given", async () => {
    const m = CausalLMModel.load(oracle);
    try {
      expect(m.inputEmbeddingScale).toBe(Math.fround(Math.sqrt(32)));
      expect(m.lmHeadName).toBe("model.embed_tokens.weight");
      const tokens = Int32Array.of(3, 200, 7, 7, 45);
      const rows = m.tokenEmbeddings(tokens);
      const table = m.inputEmbeddings();
      expect(rows[32 + 5]).toBe(Math.fround(table[200 * 32 + 5] * m.inputEmbeddingScale));
      await m.forward({ tokens, B: 1, T: 5, allLogits: true });
      const byTokens = m.logits();
      await m.forward({ embeds: rows, B: 1, T: 5, allLogits: true });
      expect(m.logits()).toEqual(byTokens);
      // the unscaled rows are a different input
      await m.forward({ embeds: table.slice(0, 5 * 32), B: 1, T: 5, allLogits: true });
      expect(m.logits()).not.toEqual(byTokens);
    } finally {
      m.dispose();
    }
  });
});

describe.skipIf(!bf16Support().available)("Gemma 3 in bf16 (this CPU has AVX512_BF16)", () => {
  it("the projections' products in bf16: logits and the input-embedding gradient close to float32's", async () => {
    const m = CausalLMModel.load(oracle);
    try {
      const B = 2, T = 12, C = 32, V = 256;
      const tokens = new Int32Array(B * T).map((_, i) => (i * 37 + 11) % V);
      const embeds = m.tokenEmbeddings(tokens);
      const run = async () => {
        await m.forward({ embeds, targets: tokens, B, T, allLogits: true });
        const logits = m.logits().slice(), dEmbeds = new Float32Array(B * T * C);
        await m.backward({ paramGrads: false, dEmbeds });
        return { logits, dEmbeds };
      };
      const f32 = await run();
      expect(m.setPrecision("bf16")).toBe("bf16");
      const bf = await run();
      expect(bf.logits).not.toEqual(f32.logits);
      const cos = (a: Float32Array, b: Float32Array) => {
        let d = 0, na = 0, nb = 0;
        for (let i = 0; i < a.length; i++) (d += a[i] * b[i]), (na += a[i] * a[i]), (nb += b[i] * b[i]);
        return d / Math.sqrt(na * nb);
      };
      expect(cos(bf.logits, f32.logits)).toBeGreaterThan(0.999);
      expect(cos(bf.dEmbeds, f32.dEmbeds)).toBeGreaterThan(0.99);
    } finally {
      m.dispose();
    }
  });
});

describe("synthesize with a Gemma 3 model", () => {
  /** A random Gemma 3 model (the oracle's shape) over the tiny test tokenizer's 400 ids. */
  function gemmaFolder(): string {
    const d = path.join(tmp, "gemma3-model");
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ ...baseConfig, vocab_size: 400 }));
    fs.copyFileSync(path.join(__dirname, "fixtures", "tiny_lm", "tokenizer.json"), path.join(d, "tokenizer.json"));
    const m = CausalLMModel.create(readModelConfig(d));
    m.initRandom(5);
    for (const p of m.paramTable) // O(1) weights so that every path carries signal (zero-centred norms near 0)
      if (!p.name.includes("norm")) {
        const t = m.tensor(p.name);
        for (let i = 0; i < t.length; i++) t[i] *= 1 / (0.02 * Math.sqrt(p.shape[p.shape.length - 1]));
      }
    const tensors: Record<string, WritableTensor> = {};
    for (const p of m.paramTable) tensors[p.name] = { dtype: "F32", shape: p.shape, data: m.tensor(p.name).slice() };
    writeSafetensors(path.join(d, "model.safetensors"), tensors);
    m.dispose();
    return d;
  }

  it("runs end to end with and without DP (texts, finite losses; without DP ADMM lowers the loss), the same run twice from one seed", async () => {
    const model = gemmaFolder();
    const run = async (dp: boolean, out: string) => {
      const config = parseConfig(
        {
          data: { path: path.join(root, "examples", "data", "imdb", "train.jsonl"), examples_per_class: 6 },
          classes: [
            { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
            { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
          ],
          template: " It was",
          model,
          method: { batch_size: 3, batches_per_class: 1, length: 6, outer_steps: 3, inner_steps: 6, top_k: 20, init_candidates: 4 },
          filter: { few_shot: 0, keep_per_class: 2 },
          output: path.join(tmp, out),
          seed: 7,
          ...(dp ? { dp: { enabled: true, epsilon: 2, delta: 1e-5, clip_norm: 1 } } : {}),
        },
        tmp,
        "cfg",
      );
      return synthesize(config);
    };
    for (const dp of [false, true]) {
      const r = await run(dp, dp ? "run-dp" : "run");
      expect(r.samples.length).toBe(2 * 3);
      for (const s of r.samples) {
        expect(s.tokens.length).toBe(6);
        expect(s.text.length).toBeGreaterThan(0);
        expect(Number.isFinite(s.matching_loss)).toBe(true);
      }
      const classes = r.report.classes as Record<string, { batches: { best_x_loss: number; init_loss: number }[] }>;
      for (const cls of ["negative", "positive"]) {
        expect(classes[cls].batches.length).toBe(1);
        for (const b of classes[cls].batches) {
          expect(b.best_x_loss).toBeGreaterThanOrEqual(0);
          expect(b.best_x_loss).toBeLessThanOrEqual(2);
          if (!dp) expect(b.best_x_loss, cls).toBeLessThan(b.init_loss);
        }
      }
      if (!dp) {
        const again = await run(false, "run-again");
        expect(again.samples.map((s) => s.tokens)).toEqual(r.samples.map((s) => s.tokens));
        expect(again.samples.map((s) => s.matching_loss)).toEqual(r.samples.map((s) => s.matching_loss));
      }
    }
  });
});
