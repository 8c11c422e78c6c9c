// The engine against Hugging Face transformers' own classes: test/fixtures/hf_oracles/<arch>/ made by
// test/fixtures/gen_hf_oracles.py (torch 2.13.0, transformers 5.25.0; committed, so CI needs no Python). Each folder
// is a save_pretrained() checkpoint loaded here with loadModel(), and its expected.safetensors holds the logits, the
// loss (mean cross-entropy over every position), the final hidden states, the input-embedding gradient and every
// parameter's gradient. Tolerance: max |Δ| / max |ref| ≤ 1e-4 on every tensor.
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type LoadedModel } from "../ts/load_model";
import { CausalLMModel } from "../ts/model";
import type { ModelConfigInput } from "../ts/model_config";
import { openSafetensors, type SafetensorsReader } from "../ts/safetensors";
import { scaledError } from "./helpers/scaled_error";

const root = path.join(__dirname, "fixtures", "hf_oracles");
const TOL = 1e-4;

/** The architectures of the oracle folders (the engine runs every one). */
const SUPPORTED = ["gpt2", "llama", "llama3", "qwen2", "mistral", "phi", "phi3", "phi3_longrope", "gemma3"];

/** The engine's parameter for a checkpoint name (GPT-2 checkpoints prefix theirs with "transformer."). */
function engineName(hf: string, names: Set<string>): string {
  if (names.has(hf)) return hf;
  const bare = hf.replace(/^transformer\./, "");
  if (names.has(bare)) return bare;
  throw new Error(`no engine parameter for '${hf}'`);
}

describe.each(SUPPORTED)("%s: the engine vs transformers", (arch) => {
  const dir = path.join(root, arch);
  let expected: SafetensorsReader;
  let loaded: LoadedModel;
  const errors: Record<string, number> = {};
  const check = (what: string, got: Float32Array, ref: Float32Array): void => {
    const err = scaledError(got, ref);
    errors[what] = err;
    expect(err, what).toBeLessThanOrEqual(TOL);
  };

  beforeAll(() => {
    expected = openSafetensors(path.join(dir, "expected.safetensors"));
    loaded = loadModel(dir);
  });
  afterAll(() => {
    expected.close();
    loaded.dispose();
    const worst = Object.entries(errors).sort((a, b) => b[1] - a[1]).slice(0, 3);
    console.log(`${arch} vs transformers: ${Object.keys(errors).length} tensors, worst ${JSON.stringify(worst)}`);
  });

  it("logits, loss and every parameter gradient (token input, loss at every position)", async () => {
    const model = loaded.model;
    const [B, T] = expected.info("input_ids").shape;
    const loss = await model.forward({
      tokens: expected.readI32("input_ids"),
      targets: expected.readI32("targets"),
      lossMask: new Float32Array(B * T).fill(1),
      B,
      T,
    });
    check("loss", Float32Array.of(loss), expected.readF32("loss"));
    check("logits", model.logits(), expected.readF32("logits"));
    model.zeroGrads();
    await model.backward();
    const names = new Set(model.paramTable.map((p) => p.name));
    const compared = new Set<string>();
    for (const key of expected.names().filter((n) => n.startsWith("grad."))) {
      const hf = key.slice("grad.".length);
      const name = engineName(hf, names);
      check(key, model.tensor(name, "grads"), expected.readF32(key));
      compared.add(name);
    }
    expect([...names].filter((n) => !compared.has(n)), "engine parameters without a reference gradient").toEqual([]);
    // the matching method's quantities are among them: the lm_head (weight, and bias where the model has one)
    expect(compared.has(model.lmHeadName)).toBe(true);
  });

  it("final hidden states and the input-embedding gradient (embeds input, loss at every position)", async () => {
    const model = loaded.model;
    const [B, T] = expected.info("input_ids").shape;
    // the input embeddings of the tokens as the token lookup makes them (Gemma 3's are scaled by sqrt(C): the
    // reference's inputs_embeds are embed_tokens(input_ids), the scale inside)
    const C = model.config.channels;
    const embeds = model.tokenEmbeddings(expected.readI32("input_ids"));
    const loss = await model.forward({ embeds, targets: expected.readI32("targets"), lossMask: new Float32Array(B * T).fill(1), B, T });
    check("embeds loss", Float32Array.of(loss), expected.readF32("loss"));
    check("hidden", model.hidden(), expected.readF32("hidden"));
    const dEmbeds = new Float32Array(B * T * C);
    await model.backward({ paramGrads: false, dEmbeds });
    check("grad_input", dEmbeds, expected.readF32("grad_input"));
  });

  it("KV-cached decoding (a shared prefix, then one position at a time) gives the reference logits", async () => {
    const model = loaded.model;
    const [, T] = expected.info("input_ids").shape;
    const V = model.config.vocabSize, P = 5;
    const ids = expected.readI32("input_ids").subarray(0, T); // row 0
    const ref = expected.readF32("logits");
    const pre = model.createKVCache(1, P);
    await model.decode(pre, { tokens: ids.subarray(0, P), T: P });
    const rows = model.createKVCache(2, T - P, pre);
    let err = 0;
    for (let t = P; t < T; t++) {
      const logits = await model.decode(rows, { tokens: Int32Array.from([ids[t], ids[t]]), T: 1 });
      for (let r = 0; r < 2; r++) err = Math.max(err, scaledError(logits.subarray(r * V, (r + 1) * V), ref.subarray(t * V, (t + 1) * V)));
    }
    errors["decode logits"] = err;
    expect(err).toBeLessThanOrEqual(TOL);
  });
});

describe("phi3 LongRoPE", () => {
  const dir = path.join(root, "phi3_longrope");

  it("reads the short factors and the attention factor, and they matter (plain RoPE misses the reference)", async () => {
    const loaded = loadModel(dir);
    const cfg = loaded.config;
    expect(cfg).toMatchObject({ architecture: "llama", modelType: "phi3", maxSeqLen: 256 });
    const rs = cfg.architecture === "llama" ? cfg.ropeScaling : null;
    expect(rs).toMatchObject({ type: "longrope", shortFactor: [1, 1.25, 2.5, 4], longFactor: [1.5, 3, 6, 12], originalMaxPositionEmbeddings: 64 });
    expect(rs?.type === "longrope" && rs.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(256 / 64) / Math.log(64)), 14);
    const expected = openSafetensors(path.join(dir, "expected.safetensors"));
    const [B, T] = expected.info("input_ids").shape;
    const tokens = expected.readI32("input_ids");
    // the same weights under plain RoPE (a folder-less model from the config without rope scaling)
    const plain = CausalLMModel.create({ ...cfg, ropeScaling: null } as ModelConfigInput);
    for (const p of loaded.model.paramTable) plain.tensor(p.name).set(loaded.model.tensor(p.name));
    plain.markParamsChanged();
    await plain.forward({ tokens, B, T, allLogits: true });
    expect(scaledError(plain.logits(), expected.readF32("logits"))).toBeGreaterThan(1e-2);
    // past original_max_position_embeddings transformers switches to the long factors: refused, by name
    const long = Int32Array.from({ length: 65 }, (_, i) => i % 300);
    await expect(loaded.model.forward({ tokens: long, B: 1, T: 65 })).rejects.toThrow(/LongRoPE: 65 positions exceed original_max_position_embeddings \(64\)/);
    expected.close();
    plain.dispose();
    loaded.dispose();
  });
});
