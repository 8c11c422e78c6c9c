// Loading GGUF models: tiny GGUF files laid out as llama.cpp's converter writes them (test/fixtures/gen_gguf_models.py)
// must give exactly the model that loading the Hugging Face folder gives: names, shapes, llama's Q/K permutation,
// GPT-2's transposed Conv1D weights and duplicated head, Llama 3 RoPE factors, Qwen2 biases, phi-2 (separate or fused
// q/k/v) and phi-3 (fused qkv and gate_up). And typed errors.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { parseGGUFBuffer, readGGUF } from "../ts/gguf";
import { ggufModelConfig } from "../ts/gguf_model";
import { CausalLMModel } from "../ts/model";
import { findGGUF, readModelConfig } from "../ts/model_config";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../ts/half";

const fx = path.join(__dirname, "fixtures");
const gg = (name: string) => path.join(fx, "gguf", name);

function expectSameModel(a: CausalLMModel, b: CausalLMModel, f16Params: (name: string) => boolean = () => false): void {
  const { modelType: _a, ...ca } = a.config as unknown as Record<string, unknown>;
  const { modelType: _b, ...cb } = b.config as unknown as Record<string, unknown>;
  expect(ca).toEqual(cb);
  expect(a.paramTable.map((p) => p.name)).toEqual(b.paramTable.map((p) => p.name));
  for (const p of b.paramTable) {
    const want = b.tensor(p.name);
    const expectVals = f16Params(p.name) ? want.map((v) => float16BitsToFloat32(float32ToFloat16Bits(v))) : want;
    expect(a.tensor(p.name), p.name).toEqual(expectVals);
  }
}

describe("GGUF models", () => {
  it("llama: the same model as the HF folder (Q/K permutation undone, llama3 RoPE from rope_freqs, F16 MLP)", async () => {
    const viaGGUF = CausalLMModel.load(gg("llama_tiny.gguf"));
    const viaHF = CausalLMModel.load(path.join(fx, "llama_tiny"));
    expectSameModel(viaGGUF, viaHF, (n) => n.includes(".mlp."));
    expect(viaGGUF.config).toMatchObject({ modelType: "llama", ropeScaling: { type: "llama3", factor: 8, originalMaxPositionEmbeddings: 256 } });
    viaGGUF.dispose();
    viaHF.dispose();
  });

  it("qwen2: the same model as the HF folder (no permutation, q/k/v biases)", () => {
    const viaGGUF = CausalLMModel.load(gg("qwen2_tiny.gguf"));
    const viaHF = CausalLMModel.load(gg("qwen2_tiny"));
    expectSameModel(viaGGUF, viaHF);
    expect(viaGGUF.config).toMatchObject({ modelType: "qwen2", attentionBias: true, oProjBias: false });
    viaGGUF.dispose();
    viaHF.dispose();
  });

  it("gpt2: the same model as the HF folder (Conv1D weights transposed back, duplicated head checked)", () => {
    const viaGGUF = CausalLMModel.load(gg("gpt2_tiny.gguf"));
    const viaHF = CausalLMModel.load(path.join(fx, "gpt2_tiny"));
    expectSameModel(viaGGUF, viaHF);
    viaGGUF.dispose();
    viaHF.dispose();
  });

  it("phi2: the same model as the HF PhiForCausalLM folder (partial rotary, biases), from separate or fused q/k/v", () => {
    const viaHF = CausalLMModel.load(path.join(fx, "hf_oracles", "phi"));
    for (const file of ["phi2_tiny.gguf", "phi2_fused_tiny.gguf"]) {
      const viaGGUF = CausalLMModel.load(gg(file));
      expectSameModel(viaGGUF, viaHF);
      expect(viaGGUF.config).toMatchObject({ architecture: "phi", rotaryDim: 4, tieWordEmbeddings: false });
      viaGGUF.dispose();
    }
    viaHF.dispose();
  });

  it("phi3: the same model as the HF Phi3ForCausalLM folder (fused attn_qkv and gate_up in ffn_up)", () => {
    const viaGGUF = CausalLMModel.load(gg("phi3_tiny.gguf"));
    const viaHF = CausalLMModel.load(path.join(fx, "hf_oracles", "phi3"));
    expectSameModel(viaGGUF, viaHF);
    expect(viaGGUF.config).toMatchObject({ modelType: "phi3", fusedQkvGateUp: true, ropeScaling: null });
    viaGGUF.dispose();
    viaHF.dispose();
  });

  it("gemma3: the HF Gemma3ForCausalLM folder's weights (norms stored as 1 + w), every 6th layer global unless the file says", () => {
    const viaHF = CausalLMModel.load(path.join(fx, "hf_oracles", "gemma3"));
    const viaGGUF = CausalLMModel.load(gg("gemma3_tiny.gguf"));
    // llama.cpp stores no layer pattern for gemma3: two layers are both sliding (the folder has [sliding, full])
    const { modelType: _a, layerTypes: lg, ...cg } = viaGGUF.config as unknown as Record<string, unknown>;
    const { modelType: _b, layerTypes: lh, ...ch } = viaHF.config as unknown as Record<string, unknown>;
    expect(cg).toEqual(ch);
    expect(lg).toEqual(["sliding_attention", "sliding_attention"]);
    expect(lh).toEqual(["sliding_attention", "full_attention"]);
    expect(viaGGUF.paramTable.map((p) => p.name)).toEqual(viaHF.paramTable.map((p) => p.name));
    for (const p of viaHF.paramTable) {
      const a = viaGGUF.tensor(p.name), b = viaHF.tensor(p.name);
      // (w + 1) − 1 in float32 is w to within half an ulp of 1; every other tensor is bit for bit
      const tol = p.name.endsWith("norm.weight") ? 2 ** -24 : 0;
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
      expect(worst, p.name).toBeLessThanOrEqual(tol);
    }
    viaGGUF.dispose();
    viaHF.dispose();
    // a file that gives the pattern (one flag per layer, true = sliding) gets it
    const g = readGGUF(gg("gemma3_tiny.gguf"));
    g.metadata.set("gemma3.attention.sliding_window_pattern", [true, false] as never);
    expect(ggufModelConfig(g)).toMatchObject({ layerTypes: ["sliding_attention", "full_attention"], slidingWindow: 8, ropeLocalTheta: 1e4, ropeTheta: 1e6 });
    g.metadata.set("gemma3.attention.sliding_window_pattern", 2 as never);
    expect(ggufModelConfig(g)).toMatchObject({ layerTypes: ["sliding_attention", "full_attention"] });
    g.metadata.set("gemma3.rope.scaling.type", "yarn" as never);
    expect(() => ggufModelConfig(g)).toThrow(/rope.scaling.type 'yarn' \(none or linear only\)/);
  });

  it("phi3 LongRoPE: the factors from rope_factors_short / rope_factors_long, the same model as the HF folder", () => {
    const viaGGUF = CausalLMModel.load(gg("phi3_longrope_tiny.gguf"));
    const viaHF = CausalLMModel.load(path.join(fx, "hf_oracles", "phi3_longrope"));
    expectSameModel(viaGGUF, viaHF);
    expect(viaGGUF.config).toMatchObject({ ropeScaling: { type: "longrope", shortFactor: [1, 1.25, 2.5, 4], originalMaxPositionEmbeddings: 64 } });
    viaGGUF.dispose();
    viaHF.dispose();
  });

  it("phi2 / phi3: typed errors for what the engine does not run", () => {
    const withMeta = (file: string, edit: (g: ReturnType<typeof readGGUF>) => void) => {
      const g = readGGUF(gg(file));
      const copy = { ...g, metadata: new Map(g.metadata), tensors: new Map(g.tensors) };
      edit(copy);
      return copy;
    };
    expect(() => ggufModelConfig(withMeta("phi2_tiny.gguf", (g) => g.metadata.set("phi2.rope.dimension_count", 3 as never)))).toThrow(/rope.dimension_count' 3 must be even/);
    expect(() => ggufModelConfig(withMeta("phi3_tiny.gguf", (g) => g.tensors.set("rope_factors_long.weight", g.tensors.get("blk.0.attn_norm.weight")!)))).toThrow(
      /LongRoPE needs tensor 'rope_factors_short.weight' as F32 with 4 elements/,
    );
    expect(() => ggufModelConfig(withMeta("phi3_tiny.gguf", (g) => g.tensors.delete("blk.0.attn_qkv.weight")))).toThrow(/separate attn_q \/ attn_k \/ attn_v/);
    expect(() => ggufModelConfig(withMeta("phi3_tiny.gguf", (g) => g.metadata.set("phi3.attention.sliding_window", 16 as never)))).toThrow(/sliding_window 16/);
  });

  it("finds the GGUF file of a folder, and readModelConfig reads it", () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-gguf-"));
    expect(findGGUF(d)).toBeNull();
    fs.copyFileSync(gg("qwen2_tiny.gguf"), path.join(d, "m.gguf"));
    expect(findGGUF(d)).toBe(path.join(d, "m.gguf"));
    expect(readModelConfig(d)).toMatchObject({ architecture: "llama", modelType: "qwen2", channels: 64 });
    fs.copyFileSync(gg("llama_tiny.gguf"), path.join(d, "n.gguf"));
    expect(() => findGGUF(d)).toThrow(/holds 2 \.gguf files \(.*\): name the one to load/);
    fs.rmSync(d, { recursive: true });
  });

  it("gives typed errors for architectures, types and layouts it does not run", () => {
    const g = readGGUF(gg("llama_tiny.gguf"));
    const withMeta = (k: string, v: unknown) => {
      const copy = { ...g, metadata: new Map(g.metadata) };
      if (v === undefined) copy.metadata.delete(k);
      else copy.metadata.set(k, v as never);
      return copy;
    };
    expect(() => ggufModelConfig(withMeta("general.architecture", "mamba"))).toThrow(UnsupportedModelError);
    expect(() => ggufModelConfig(withMeta("llama.rope.dimension_count", 8))).toThrow(/rope.dimension_count 8 \(partial rotary/);
    expect(() => ggufModelConfig(withMeta("llama.rope.scaling.type", "yarn"))).toThrow(/rope.scaling.type 'yarn'/);
    expect(() => ggufModelConfig(withMeta("llama.block_count", undefined))).toThrow(InvalidFileError);
    expect(() => ggufModelConfig(withMeta("llama.block_count", undefined))).toThrow(/metadata 'llama.block_count' is missing/);
    expect(() => ggufModelConfig(withMeta("llama.attention.head_count_kv", 3))).toThrow(/head_count 4 is not a multiple of head_count_kv 3/);
    expect(() => ggufModelConfig(withMeta("llama.embedding_length", "64"))).toThrow(/must be a non-negative integer/);
    // a tensor of a type the engine cannot dequantize: rewrite one F32 tensor's type id in the header to I32 (same size)
    const bytes = Buffer.from(fs.readFileSync(gg("qwen2_tiny.gguf")));
    const parsed = parseGGUFBuffer(bytes);
    const t = parsed.tensors.get("blk.0.attn_v.bias")!;
    expect(t.type).toBe(0);
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-gguf-"));
    // find the tensor info: name string then n_dims, dims, type
    const nameBytes = Buffer.from("blk.0.attn_v.bias");
    const at = bytes.indexOf(nameBytes) + nameBytes.length;
    const nDims = bytes.readUInt32LE(at);
    bytes.writeUInt32LE(26, at + 4 + 8 * nDims); // I32: a known type of the same size, not a weight type
    const bad = path.join(d, "bad.gguf");
    fs.writeFileSync(bad, bytes);
    expect(() => CausalLMModel.load(bad)).toThrow(/tensor 'blk.0.attn_v.bias' has type I32; supported: /);
    fs.rmSync(d, { recursive: true });
  });
});
