// Phi (PhiForCausalLM) beyond the numeric oracle (test/hf_oracles.test.ts): its config.json mapping and typed errors,
// and the GRADMM pipeline end to end on a Phi model (an lm_head with a bias: the target, DP and the distance cover it).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { parseConfig } from "../ts/gradmm/config";
import { synthesize } from "../ts/gradmm/synthesize";
import { CausalLMModel } from "../ts/model";
import { readModelConfig, type PhiConfig } from "../ts/model_config";
import { writeSafetensors, type WritableTensor } from "../ts/safetensors_write";

const root = path.join(__dirname, "..");
const oracle = path.join(__dirname, "fixtures", "hf_oracles", "phi");
const baseConfig = JSON.parse(fs.readFileSync(path.join(oracle, "config.json"), "utf8")) as Record<string, unknown>;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-phi-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function configDir(patch: Record<string, unknown>): string {
  const d = fs.mkdtempSync(path.join(tmp, "cfg-"));
  const cfg: Record<string, unknown> = { ...baseConfig, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete cfg[k];
  fs.writeFileSync(path.join(d, "config.json"), JSON.stringify(cfg));
  return d;
}

describe("Phi config.json", () => {
  it("maps phi-1.5's fields (partial rotary → rotaryDim, layer_norm_eps, untied lm_head with a bias)", () => {
    const c = readModelConfig(oracle) as PhiConfig;
    expect(c).toEqual({
      architecture: "phi",
      modelType: "phi",
      vocabSize: 256,
      maxSeqLen: 64,
      channels: 32,
      intermediateSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      rotaryDim: 4,
      layerNormEps: 1e-5,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
    });
    // transformers < 5 style: partial_rotary_factor and rope_theta at the top level
    const old = configDir({ rope_parameters: undefined, partial_rotary_factor: 1, rope_theta: 500 });
    expect(readModelConfig(old)).toMatchObject({ rotaryDim: 8, ropeTheta: 500 });
    const m = CausalLMModel.load(oracle);
    expect(m.lmHeadName).toBe("lm_head.weight");
    expect(m.lmHeadBiasName).toBe("lm_head.bias");
    expect(m.paramTable.at(-1)).toMatchObject({ name: "lm_head.bias", shape: [256] });
    m.dispose();
  });

  it("what the engine would run differently is an UnsupportedModelError naming it; malformed values InvalidFileErrors", () => {
    const unsupported: Array<[Record<string, unknown>, RegExp]> = [
      [{ qk_layernorm: true }, /qk_layernorm/],
      [{ hidden_act: "relu" }, /hidden_act 'relu'/],
      [{ rope_parameters: { rope_type: "linear", factor: 2, rope_theta: 10000, partial_rotary_factor: 0.5 } }, /rope_scaling type 'linear'/],
      [{ rope_parameters: { rope_theta: 10000, partial_rotary_factor: 0.1 } }, /partial_rotary_factor 0\.1/],
      [{ architectures: ["PhiForSequenceClassification"] }, /architecture 'PhiForSequenceClassification'/],
    ];
    for (const [patch, msg] of unsupported) {
      const d = configDir(patch);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(UnsupportedModelError);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(msg);
    }
    for (const [patch, msg] of [[{ hidden_size: 30 }, /hidden_size 30/], [{ layer_norm_eps: -1 }, /layer_norm_eps/]] as const) {
      const d = configDir(patch);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(InvalidFileError);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(msg);
    }
  });
});

describe("synthesize with a Phi model (lm_head bias)", () => {
  /** A random Phi model over the tiny test tokenizer's 400 ids, its lm_head bias nonzero. */
  function phiFolder(): string {
    const d = path.join(tmp, "phi-model");
    fs.mkdirSync(d, { recursive: true });
    const cfg = { ...baseConfig, vocab_size: 400 };
    fs.writeFileSync(path.join(d, "config.json"), JSON.stringify(cfg));
    fs.copyFileSync(path.join(__dirname, "fixtures", "tiny_lm", "tokenizer.json"), path.join(d, "tokenizer.json"));
    const m = CausalLMModel.create(readModelConfig(d));
    m.initRandom(5);
    const bias = m.tensor("lm_head.bias");
    for (let i = 0; i < bias.length; i++) bias[i] = 0.05 * Math.sin(i);
    const tensors: Record<string, WritableTensor> = {};
    for (const p of m.paramTable) tensors[p.name] = { dtype: "F32", shape: p.shape, data: m.tensor(p.name).slice() };
    writeSafetensors(path.join(d, "model.safetensors"), tensors);
    m.dispose();
    return d;
  }

  it("runs end to end, with and without DP (without: ADMM lowers the matching loss)", async () => {
    const model = phiFolder();
    for (const dp of [false, true]) {
      const out = path.join(tmp, dp ? "run-dp" : "run");
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
          output: out,
          seed: 7,
          ...(dp ? { dp: { enabled: true, epsilon: 2, delta: 1e-5, clip_norm: 1 } } : {}),
        },
        tmp,
        "cfg",
      );
      const r = await synthesize(config);
      expect(r.samples.length).toBe(2 * 3);
      const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
      for (const cls of ["negative", "positive"]) {
        for (const b of report.classes[cls].batches) {
          expect(b.best_x_loss).toBeGreaterThanOrEqual(0);
          expect(b.best_x_loss).toBeLessThanOrEqual(2);
          // (with DP on this random model the noise dominates the target: the loss barely moves, so no ordering)
          if (!dp) expect(b.best_x_loss, cls).toBeLessThan(b.init_loss);
        }
      }
    }
  });
});

describe("Phi-3 config.json (Phi3ForCausalLM on the Llama engine, fused qkv_proj / gate_up_proj)", () => {
  const phi3 = path.join(__dirname, "fixtures", "hf_oracles", "phi3");
  const phi3Config = JSON.parse(fs.readFileSync(path.join(phi3, "config.json"), "utf8")) as Record<string, unknown>;
  function phi3Dir(patch: Record<string, unknown>): string {
    const d = fs.mkdtempSync(path.join(tmp, "phi3-"));
    const cfg: Record<string, unknown> = { ...phi3Config, ...patch };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete cfg[k];
    fs.writeFileSync(path.join(d, "config.json"), JSON.stringify(cfg));
    return d;
  }

  it("maps to the Llama family with the fused tensors, named as in the checkpoint", () => {
    expect(readModelConfig(phi3)).toMatchObject({ architecture: "llama", modelType: "phi3", fusedQkvGateUp: true, attentionBias: false, rmsNormEps: 1e-5, ropeScaling: null });
    const m = CausalLMModel.load(phi3);
    const names = m.paramTable.map((p) => p.name);
    expect(names).toContain("model.layers.0.self_attn.qkv_proj.weight");
    expect(names).toContain("model.layers.1.mlp.gate_up_proj.weight");
    expect(names.some((n) => /q_proj|k_proj|v_proj|gate_proj|up_proj/.test(n.replace(/qkv_proj|gate_up_proj/, "")))).toBe(false);
    expect(m.paramTable.find((p) => p.name === "model.layers.0.self_attn.qkv_proj.weight")?.shape).toEqual([96, 32]);
    expect(m.paramTable.find((p) => p.name === "model.layers.0.mlp.gate_up_proj.weight")?.shape).toEqual([128, 32]);
    m.dispose();
    // a window no shorter than max_position_embeddings is full attention (Phi-3-mini-4k's 2047 < 4096 is not: refused)
    expect(readModelConfig(phi3Dir({ sliding_window: 4096, max_position_embeddings: 4096 }))).toMatchObject({ maxSeqLen: 4096 });
  });

  it("what the engine would run differently is an UnsupportedModelError naming it", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ sliding_window: 16 }, /sliding_window 16/],
      [{ rope_parameters: { rope_type: "yarn", rope_theta: 10000, factor: 4 } }, /rope_scaling type 'yarn' \(longrope or none only\)/],
      [{ rope_parameters: { rope_type: "llama3", rope_theta: 10000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 } }, /rope_scaling type 'llama3' \(longrope or none only\)/],
      [{ rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: 0.75 } }, /partial_rotary_factor 0\.75/],
      [{ hidden_act: "gelu" }, /hidden_act 'gelu'/],
    ];
    for (const [patch, msg] of cases) {
      const d = phi3Dir(patch);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(UnsupportedModelError);
      expect(() => readModelConfig(d), JSON.stringify(patch)).toThrow(msg);
    }
    // LongRoPE factors of the wrong length are a broken file, not an unsupported model
    expect(() => readModelConfig(phi3Dir({ rope_parameters: { rope_type: "longrope", rope_theta: 10000, short_factor: [1], long_factor: [1] } }))).toThrow(
      /field 'rope_parameters.short_factor' must be a list of 4 positive numbers \(head_dim \/ 2\)/,
    );
  });
});
