// The engine's Llama against transformers' LlamaForCausalLM: fixtures made by test/fixtures/gen_llama.py (committed; CI
// needs neither transformers nor PyTorch).
// Also: loading a Hugging Face folder (config.json variants, typed errors, F16/BF16 checkpoints, loadModel()).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { CausalLMModel, GPT2Model } from "../ts/model";
import { loadModel } from "../ts/load_model";
import { readModelConfig, type LlamaConfig } from "../ts/model_config";
import { openSafetensors, type SafetensorsReader } from "../ts/safetensors";
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from "../ts/half";
import { writeSafetensors, type WritableTensor } from "../ts/safetensors_write";
import { scaledError } from "./helpers/scaled_error";

const dir = path.join(__dirname, "fixtures", "llama_tiny");
const baseConfig = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-llama-"));
}

/** A folder with config.json (base config patched) and, optionally, the fixture's weights. */
function folderWith(patch: Record<string, unknown>, weights = false): string {
  const d = tmpDir();
  const cfg: Record<string, unknown> = { ...baseConfig, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete cfg[k];
  fs.writeFileSync(path.join(d, "config.json"), JSON.stringify(cfg));
  if (weights) fs.copyFileSync(path.join(dir, "model.safetensors"), path.join(d, "model.safetensors"));
  return d;
}

/** The fixture's weights re-written with `dtype`, leaving out `drop`. */
function rewriteWeights(d: string, dtype: "F32" | "F16" | "BF16", drop: string[] = []): void {
  const r = openSafetensors(path.join(dir, "model.safetensors"));
  const tensors: Record<string, WritableTensor> = {};
  for (const n of r.names()) if (!drop.includes(n)) tensors[n] = { dtype, shape: r.info(n).shape, data: r.readF32(n) };
  r.close();
  writeSafetensors(path.join(d, "model.safetensors"), tensors);
}

describe("Llama engine vs transformers (tiny LlamaForCausalLM: V=151, C=64, 2 layers, 4 heads / 2 kv heads, llama3 RoPE, q/k/v/o biases, untied)", () => {
  let expected: SafetensorsReader;
  let model: CausalLMModel;
  const B = 2, T = 16;
  const errors: Record<string, number> = {};
  const note = (group: string, err: number): void => {
    errors[group] = Math.max(errors[group] ?? 0, err);
  };

  beforeAll(() => {
    expected = openSafetensors(path.join(dir, "expected.safetensors"));
    model = CausalLMModel.load(dir);
  });
  afterAll(() => {
    expected.close();
    model.dispose();
    // one line per tensor group, for the record (max scaled error)
    console.log("llama vs transformers, max scaled error per group:", JSON.stringify(errors));
  });

  it("reads config.json into the Llama config and loads every tensor", () => {
    expect(model.architecture).toBe("llama");
    expect(model.config).toMatchObject({
      architecture: "llama",
      modelType: "llama",
      vocabSize: 151,
      channels: 64,
      intermediateSize: 96,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      maxSeqLen: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 },
      tieWordEmbeddings: false,
      attentionBias: true,
      oProjBias: true,
      mlpBias: false,
    });
    expect(model.paramTable.length).toBe(1 + 2 * 13 + 2);
    expect(model.tensor("model.layers.1.self_attn.k_proj.weight").length).toBe(32 * 64);
    expect(model.paramTable.find((p) => p.name === "model.layers.0.self_attn.k_proj.weight")?.shape).toEqual([32, 64]);
    expect(model.inputEmbeddingName).toBe("model.embed_tokens.weight");
    expect(model.lmHeadName).toBe("lm_head.weight");
    const r = openSafetensors(path.join(dir, "model.safetensors"));
    for (const n of r.names()) expect(model.tensor(n), n).toEqual(r.readF32(n));
    r.close();
  });

  it("matches logits, loss and every parameter gradient (token input, loss at all positions)", async () => {
    const loss = await model.forward({
      tokens: expected.readI32("input_ids"),
      targets: expected.readI32("targets"),
      lossMask: expected.readF32("loss_mask"),
      B,
      T,
    });
    note("loss (abs)", Math.abs(loss - expected.readF32("loss")[0]));
    expect(Math.abs(loss - expected.readF32("loss")[0])).toBeLessThan(1e-5);
    note("logits", scaledError(model.logits(), expected.readF32("logits")));
    expect(scaledError(model.logits(), expected.readF32("logits"))).toBeLessThan(1e-4);
    model.zeroGrads();
    await model.backward();
    for (const p of model.paramTable) {
      const err = scaledError(model.tensor(p.name, "grads"), expected.readF32(`grad.${p.name}`));
      const group = p.name.replace(/^model\.layers\.\d+\./, "layers.*.").replace(/^model\./, "");
      note(`grad ${group}`, err);
      expect(err, p.name).toBeLessThan(1e-4);
    }
  });

  it("matches hidden states, loss and the input-embedding gradient (embeds input, last-position loss)", async () => {
    const loss = await model.forward({
      embeds: expected.readF32("embeds.input"),
      targets: expected.readI32("embeds.targets"),
      lossMask: expected.readF32("embeds.loss_mask"),
      B,
      T,
    });
    note("embeds loss (abs)", Math.abs(loss - expected.readF32("embeds.loss")[0]));
    expect(Math.abs(loss - expected.readF32("embeds.loss")[0])).toBeLessThan(1e-5);
    expect(model.selectedRows()).toEqual(new Int32Array([T - 1, 2 * T - 1]));
    note("embeds hidden", scaledError(model.hidden(), expected.readF32("embeds.hidden")));
    expect(scaledError(model.hidden(), expected.readF32("embeds.hidden"))).toBeLessThan(1e-4);
    model.zeroGrads();
    const dEmbeds = new Float32Array(B * T * 64);
    await model.backward({ paramGrads: false, dEmbeds });
    note("embeds grad_input", scaledError(dEmbeds, expected.readF32("embeds.grad_input")));
    expect(scaledError(dEmbeds, expected.readF32("embeds.grad_input"))).toBeLessThan(1e-4);
    expect(model.grads().every((g) => g === 0)).toBe(true);
  });

  it("matches logits over 60 positions (llama3-scaled low frequencies matter)", async () => {
    await model.forward({ tokens: expected.readI32("long.input_ids"), B: 1, T: 60, allLogits: true });
    note("long logits", scaledError(model.logits(), expected.readF32("long.logits")));
    expect(scaledError(model.logits(), expected.readF32("long.logits"))).toBeLessThan(1e-4);
  });

  it("KV-cached decoding (shared prefix, GQA cache) gives the full forward's logits", async () => {
    const ids = expected.readI32("long.input_ids"), V = 151, P = 20;
    await model.forward({ tokens: ids.subarray(0, 40), B: 1, T: 40, allLogits: true });
    const ref = model.logits();
    const pre = model.createKVCache(1, P);
    await model.decode(pre, { tokens: ids.subarray(0, P), T: P });
    const rows = model.createKVCache(2, 20, pre);
    let err = 0;
    for (let t = P; t < 40; t++) {
      const logits = await model.decode(rows, { tokens: Int32Array.from([ids[t], ids[t]]), T: 1 });
      for (let r = 0; r < 2; r++) err = Math.max(err, scaledError(logits.subarray(r * V, (r + 1) * V), ref.subarray(t * V, (t + 1) * V)));
    }
    expect(err).toBeLessThan(1e-5);
  });

  it("matches transformers with lm_head tied to embed_tokens", async () => {
    const tied = CausalLMModel.create({ ...(model.config as LlamaConfig), tieWordEmbeddings: true });
    try {
      expect(tied.paramTable.some((p) => p.name === "lm_head.weight")).toBe(false);
      expect(tied.lmHeadName).toBe("model.embed_tokens.weight");
      for (const p of tied.paramTable) tied.tensor(p.name).set(model.tensor(p.name));
      const loss = await tied.forward({ tokens: expected.readI32("input_ids"), targets: expected.readI32("targets"), B, T });
      note("tied loss (abs)", Math.abs(loss - expected.readF32("tied.loss")[0]));
      expect(Math.abs(loss - expected.readF32("tied.loss")[0])).toBeLessThan(1e-5);
      note("tied logits", scaledError(tied.logits(), expected.readF32("tied.logits")));
      expect(scaledError(tied.logits(), expected.readF32("tied.logits"))).toBeLessThan(1e-4);
      tied.zeroGrads();
      await tied.backward();
      for (const p of tied.paramTable) {
        const err = scaledError(tied.tensor(p.name, "grads"), expected.readF32(`tied.grad.${p.name}`));
        note(p.name === "model.embed_tokens.weight" ? "tied grad embed_tokens (+lm_head)" : "tied grad others", err);
        expect(err, p.name).toBeLessThan(1e-4);
      }
    } finally {
      tied.dispose();
    }
  });
});

describe("loading a Hugging Face Llama-family folder", () => {
  it("F16 and BF16 checkpoints load equal to the F32 weights rounded to the format", () => {
    const f32 = CausalLMModel.load(dir);
    for (const [dtype, round] of [
      ["F16", (x: number) => float16BitsToFloat32(float32ToFloat16Bits(x))],
      ["BF16", (x: number) => bfloat16BitsToFloat32(float32ToBfloat16Bits(x))],
    ] as const) {
      const d = folderWith({});
      try {
        rewriteWeights(d, dtype);
        const m = CausalLMModel.load(d);
        let maxRel = 0, notRounded = 0;
        for (const p of m.paramTable) {
          const got = m.tensor(p.name), ref = f32.tensor(p.name);
          for (let i = 0; i < got.length; i++) {
            if (got[i] !== Math.fround(round(ref[i]))) notRounded++;
            if (Math.abs(ref[i]) > 1e-3) maxRel = Math.max(maxRel, Math.abs(got[i] - ref[i]) / Math.abs(ref[i]));
          }
        }
        expect(notRounded, dtype).toBe(0);
        expect(maxRel).toBeLessThanOrEqual(dtype === "F16" ? 2 ** -11 : 2 ** -8);
        m.dispose();
      } finally {
        fs.rmSync(d, { recursive: true, force: true });
      }
    }
    f32.dispose();
  });

  it("a missing tensor is an InvalidFileError naming it; so is a wrong shape or an unexpected tensor", () => {
    const d = folderWith({});
    try {
      rewriteWeights(d, "F32", ["model.layers.1.mlp.up_proj.weight"]);
      expect(() => CausalLMModel.load(d)).toThrow(InvalidFileError);
      expect(() => CausalLMModel.load(d)).toThrow(/missing tensors: model\.layers\.1\.mlp\.up_proj\.weight/);
      // untied config but no lm_head in the file
      rewriteWeights(d, "F32", ["lm_head.weight"]);
      expect(() => CausalLMModel.load(d)).toThrow(/missing tensors: lm_head\.weight/);
      // the same file with tie_word_embeddings: true loads (lm_head tied)
      fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ ...baseConfig, tie_word_embeddings: true }));
      CausalLMModel.load(d).dispose();
      // mlp_bias in config, no biases in the file
      fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ ...baseConfig, mlp_bias: true }));
      rewriteWeights(d, "F32");
      expect(() => CausalLMModel.load(d)).toThrow(/missing tensors: model\.layers\.0\.mlp\.gate_proj\.bias/);
      // fewer kv heads than the file has: k_proj shape mismatch
      fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ ...baseConfig, num_key_value_heads: 1 }));
      expect(() => CausalLMModel.load(d)).toThrow(/tensor 'model\.layers\.0\.self_attn\.k_proj\.bias' has shape \[32\], the config implies \[16\]/);
      // attention_bias false: the file's biases are unexpected
      fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ ...baseConfig, attention_bias: false }));
      expect(() => CausalLMModel.load(d)).toThrow(/unexpected tensor 'model\.layers\.0\.self_attn\.k_proj\.bias'/);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it("an unsupported architecture or option is an UnsupportedModelError naming it", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32 } }, /rope_scaling type 'yarn'/],
      [{ rope_scaling: { type: "dynamic", factor: 2 } }, /rope_scaling type 'dynamic'/],
      [{ hidden_act: "gelu" }, /hidden_act 'gelu'/],
      [{ model_type: "gemma", architectures: ["GemmaForCausalLM"] }, /model_type 'gemma'/],
      [{ architectures: ["LlamaForSequenceClassification"] }, /architecture 'LlamaForSequenceClassification'/],
      [{ model_type: "mistral", architectures: ["MistralForCausalLM"], sliding_window: 32, attention_bias: undefined }, /sliding_window 32/],
      [{ model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], use_sliding_window: true, sliding_window: 32 }, /use_sliding_window/],
      [{ layer_types: ["full_attention", "sliding_attention"] }, /layer_types entry 'sliding_attention'/],
      [{ partial_rotary_factor: 0.5 }, /partial_rotary_factor 0\.5/],
      [{ quantization_config: { quant_method: "gptq" } }, /quantization_config/],
    ];
    for (const [patch, msg] of cases) {
      const d = folderWith(patch, true);
      try {
        expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(UnsupportedModelError);
        expect(() => CausalLMModel.load(d), JSON.stringify(patch)).toThrow(msg);
      } finally {
        fs.rmSync(d, { recursive: true, force: true });
      }
    }
  });

  it("malformed config values are InvalidFileErrors naming the field", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ hidden_size: undefined }, /hidden_size/],
      [{ num_key_value_heads: 3 }, /num_key_value_heads 3/],
      [{ rope_scaling: { rope_type: "llama3", factor: 8 } }, /rope_scaling\.low_freq_factor/],
      [{ rms_norm_eps: "small" }, /rms_norm_eps/],
      [{ tie_word_embeddings: "yes" }, /tie_word_embeddings/],
    ];
    for (const [patch, msg] of cases) {
      const d = folderWith(patch);
      try {
        expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(InvalidFileError);
        expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(msg);
      } finally {
        fs.rmSync(d, { recursive: true, force: true });
      }
    }
  });

  it("maps Qwen2 and Mistral configs (biases, defaults, sliding window off, rope_parameters)", () => {
    const qwen = folderWith({ model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], use_sliding_window: false, sliding_window: 32, rope_scaling: null, attention_bias: undefined, max_position_embeddings: undefined });
    const mistral = folderWith({ model_type: "mistral", architectures: ["MistralForCausalLM"], sliding_window: null, head_dim: null, rope_scaling: null, attention_bias: undefined, rms_norm_eps: undefined });
    const v5 = folderWith({ rope_theta: undefined, rope_scaling: undefined, rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 } });
    try {
      expect(readModelConfig(qwen)).toMatchObject({ architecture: "llama", modelType: "qwen2", attentionBias: true, oProjBias: false, mlpBias: false, maxSeqLen: 32768, ropeScaling: null });
      expect(readModelConfig(mistral)).toMatchObject({ modelType: "mistral", attentionBias: false, oProjBias: false, headDim: 16, rmsNormEps: 1e-6 });
      expect(readModelConfig(v5)).toMatchObject({ ropeTheta: 500000, ropeScaling: { type: "llama3", factor: 8 } });
      // Qwen2 layout: q/k/v biases, none on o_proj
      const m = CausalLMModel.create(readModelConfig(qwen));
      const names = m.paramTable.map((p) => p.name);
      expect(names).toContain("model.layers.0.self_attn.v_proj.bias");
      expect(names).not.toContain("model.layers.0.self_attn.o_proj.bias");
      m.dispose();
    } finally {
      for (const d of [qwen, mistral, v5]) fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it("loadModel() returns model, tokenizer (or null) and config; GPT2Model.load reads Llama folders too", async () => {
    const loaded = loadModel(dir);
    expect(loaded.tokenizer).toBeNull();
    expect(loaded.config.architecture).toBe("llama");
    expect(loaded.model.config).toBe(loaded.config);
    loaded.dispose();
    expect(loaded.model.disposed).toBe(true);

    const d = folderWith({}, true);
    try {
      fs.copyFileSync(path.join(__dirname, "fixtures", "tiny_lm", "tokenizer.json"), path.join(d, "tokenizer.json"));
      const withTok = loadModel(d);
      expect(withTok.tokenizer?.encode("hello world").length).toBeGreaterThan(0);
      const emb = withTok.model.inputEmbeddings();
      expect(emb.length).toBe(151 * 64);
      withTok.dispose();
      fs.writeFileSync(path.join(d, "tokenizer.json"), "{ broken");
      expect(() => loadModel(d)).toThrow(InvalidFileError);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }

    const viaAlias = GPT2Model.load(dir);
    expect(viaAlias.architecture).toBe("llama");
    viaAlias.dispose();
  });

  it("initRandom gives unit norm weights, zero biases and N(0, 0.02) matrices", () => {
    const m = CausalLMModel.create({ ...(readModelConfig(dir) as LlamaConfig) });
    m.initRandom(3);
    expect(m.tensor("model.norm.weight").every((x) => x === 1)).toBe(true);
    expect(m.tensor("model.layers.0.self_attn.q_proj.bias").every((x) => x === 0)).toBe(true);
    const w = m.tensor("model.layers.1.mlp.down_proj.weight");
    const sd = Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length);
    expect(Math.abs(sd - 0.02)).toBeLessThan(0.002);
    m.dispose();
  });
});
