/**
 * Models from GGUF files: the engine's config from GGUF metadata, llama.cpp's tensor names mapped to the Hugging
 * Face names the engine uses, and the weights dequantized in C++ while they stream into the parameter block.
 *
 * llama.cpp's converter changes things that must be undone, or the model still runs but computes something else:
 * for the `llama` architecture it permutes the rows of attn_q / attn_k (their bias too) so that RoPE rotates
 * adjacent pairs instead of the two halves of a head; for `gpt2` it stores the Conv1D weights transposed; phi-2 files
 * converted from Microsoft's original layout hold q, k and v as one fused attn_qkv tensor (split here); `phi3` keeps
 * HF's fused qkv_proj and gate_up_proj (as attn_qkv and ffn_up), which the engine runs as they are; `gemma3` stores
 * every RMSNorm weight as 1 + w (llama.cpp's norm multiplies by the weight, HF's by 1 + w), so 1 is subtracted back.
 */
import * as fs from "node:fs";
import { InvalidFileError, UnsupportedModelError } from "./errors";
import { GGML_TYPES, GGUFMetadata, ggmlTypeName, type GGUFFile, type GGUFTensorInfo } from "./gguf";
import { dequantize, GGML_DEQUANTIZABLE } from "./gguf_quants";
import type { Gemma3Config, GPT2Config, LlamaConfig, ModelConfig, PhiConfig } from "./model_config";
import type { NativeLlama3RopeScaling } from "./native";

/** GGUF architectures the engine runs, and the engine family each maps to. */
export const GGUF_ARCHITECTURES = ["llama", "qwen2", "gpt2", "phi2", "phi3", "gemma3"] as const;

/** Reads the engine's config from a GGUF file's metadata (and the presence of optional tensors). */
export function ggufModelConfig(g: GGUFFile): ModelConfig {
  const m = new GGUFMetadata(g.file, g.metadata);
  const arch = m.string("general.architecture");
  if (!(GGUF_ARCHITECTURES as readonly string[]).includes(arch))
    throw new UnsupportedModelError(`${g.file}: GGUF architecture '${arch}' is not supported (supported: ${GGUF_ARCHITECTURES.join(", ")})`);
  const key = (k: string) => `${arch}.${k}`;
  const positive = (k: string, fallback?: number): number => {
    const v = m.uint(key(k), fallback ?? null);
    if (v === null) throw new InvalidFileError(g.file, `metadata '${key(k)}' is missing`);
    if (v <= 0) throw new InvalidFileError(g.file, `metadata '${key(k)}' must be a positive integer (got ${v})`);
    return v;
  };
  const embd = g.tensors.get("token_embd.weight");
  if (!embd) throw new InvalidFileError(g.file, "missing tensor 'token_embd.weight'");
  if (embd.shape.length !== 2) throw new InvalidFileError(g.file, `tensor 'token_embd.weight' has shape [${embd.shape}], expected 2 dimensions`);
  const channels = positive("embedding_length");
  const vocabSize = m.uint(key("vocab_size"), null) ?? embd.shape[0];
  if (embd.shape[0] !== vocabSize || embd.shape[1] !== channels)
    throw new InvalidFileError(g.file, `tensor 'token_embd.weight' has shape [${embd.shape}], the metadata implies [${vocabSize},${channels}]`);
  const numLayers = positive("block_count");
  const numHeads = positive("attention.head_count");
  const maxSeqLen = positive("context_length");
  const unsupported = (what: string): never => {
    throw new UnsupportedModelError(`${g.file}: ${what} is not supported`);
  };
  if (m.has(key("attention.head_count")) && Array.isArray(g.metadata.get(key("attention.head_count"))))
    unsupported("a different head count per layer");

  if (arch === "gpt2") {
    const ff = positive("feed_forward_length", 4 * channels);
    if (ff !== 4 * channels) unsupported(`feed_forward_length ${ff} (4 * embedding_length only)`);
    if (channels % numHeads !== 0) throw new InvalidFileError(g.file, `embedding_length ${channels} is not divisible by head_count ${numHeads}`);
    const eps = shortestF32(m.number(key("attention.layer_norm_epsilon"), 1e-5)!);
    const config: GPT2Config = { architecture: "gpt2", vocabSize, maxSeqLen, channels, numLayers, numHeads, layerNormEps: eps };
    return config;
  }

  if (arch === "phi2") {
    // llama.cpp's Phi2Model: LayerNorm eps, rope.dimension_count = the rotated dims of each head (partial rotary),
    // no rope base stored (10,000)
    const numKvHeads = positive("attention.head_count_kv", numHeads);
    if (channels % numHeads !== 0) throw new InvalidFileError(g.file, `embedding_length ${channels} is not divisible by head_count ${numHeads}`);
    if (numHeads % numKvHeads !== 0) throw new InvalidFileError(g.file, `head_count ${numHeads} is not a multiple of head_count_kv ${numKvHeads}`);
    const headDim = channels / numHeads;
    const rotaryDim = m.uint(key("rope.dimension_count"), null) ?? headDim;
    if (rotaryDim < 2 || rotaryDim % 2 !== 0 || rotaryDim > headDim)
      throw new InvalidFileError(g.file, `metadata '${key("rope.dimension_count")}' ${rotaryDim} must be even, 2 to the head size ${headDim}`);
    const scalingType = m.string(key("rope.scaling.type"), null);
    if (scalingType !== null && scalingType !== "none") unsupported(`rope.scaling.type '${scalingType}' (none only)`);
    const ropeTheta = shortestF32(m.number(key("rope.freq_base"), 10000)!);
    const eps = shortestF32(m.number(key("attention.layer_norm_epsilon"), 1e-5)!);
    if (!(ropeTheta > 0) || !(eps > 0)) throw new InvalidFileError(g.file, `metadata '${key("rope.freq_base")}' and '${key("attention.layer_norm_epsilon")}' must be positive`);
    const config: PhiConfig = {
      architecture: "phi",
      modelType: "phi",
      vocabSize,
      maxSeqLen,
      channels,
      intermediateSize: positive("feed_forward_length"),
      numLayers,
      numHeads,
      numKvHeads,
      rotaryDim,
      layerNormEps: eps,
      ropeTheta,
      tieWordEmbeddings: !g.tensors.has("output.weight"),
    };
    return config;
  }

  const numKvHeads = positive("attention.head_count_kv", numHeads);
  if (numHeads % numKvHeads !== 0)
    throw new InvalidFileError(g.file, `head_count ${numHeads} is not a multiple of head_count_kv ${numKvHeads}`);
  if (arch === "gemma3") return gemma3Config(g, m, { vocabSize, maxSeqLen, channels, numLayers, numHeads, numKvHeads }, positive, unsupported);
  const headDim = m.uint(key("attention.key_length"), null) ?? channels / numHeads;
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0)
    throw new InvalidFileError(g.file, `head size ${headDim} (embedding_length / head_count or attention.key_length) must be a positive even integer`);
  const valueLength = m.uint(key("attention.value_length"), null);
  if (valueLength !== null && valueLength !== headDim) unsupported(`attention.value_length ${valueLength} ≠ key_length ${headDim}`);
  const ropeDims = m.uint(key("rope.dimension_count"), null);
  if (ropeDims !== null && ropeDims !== headDim) unsupported(`rope.dimension_count ${ropeDims} (partial rotary; ${headDim} = the head size only)`);
  const scalingType = m.string(key("rope.scaling.type"), null);
  if (scalingType !== null && scalingType !== "none") unsupported(`rope.scaling.type '${scalingType}' (none only)`);
  const scalingFactor = m.number(key("rope.scaling.factor"), null);
  if (scalingFactor !== null && scalingFactor !== 1 && scalingFactor !== 0) unsupported(`rope.scaling.factor ${scalingFactor}`);
  const slidingWindow = m.uint(key("attention.sliding_window"), null);
  if (slidingWindow !== null && slidingWindow < maxSeqLen) unsupported(`attention.sliding_window ${slidingWindow}`);
  const ropeTheta = shortestF32(m.number(key("rope.freq_base"), 10000)!);
  if (!(ropeTheta > 0)) throw new InvalidFileError(g.file, `metadata '${key("rope.freq_base")}' must be positive`);
  const epsF32 = m.number(key("attention.layer_norm_rms_epsilon"), null);
  const eps = epsF32 === null ? null : shortestF32(epsF32);
  if (eps === null) throw new InvalidFileError(g.file, `metadata '${key("attention.layer_norm_rms_epsilon")}' is missing`);
  if (!(eps > 0)) throw new InvalidFileError(g.file, `metadata '${key("attention.layer_norm_rms_epsilon")}' must be positive`);
  const ff = positive("feed_forward_length");
  const ropeScaling = g.tensors.has("rope_freqs.weight") ? llama3ScalingFromFactors(g, headDim, ropeTheta) : null;

  const has = (t: string) => g.tensors.has(`blk.0.${t}`);
  if (arch === "phi3") {
    // llama.cpp's Phi3MiniModel: HF's fused qkv_proj (attn_qkv) and gate_up_proj (ffn_up), RMSNorm, no biases
    if (!has("attn_qkv.weight")) unsupported("a phi3 file with separate attn_q / attn_k / attn_v tensors (fused attn_qkv only)");
    if (has("ffn_gate.weight")) unsupported("a phi3 file with a separate ffn_gate tensor (ffn_up holding gate_up_proj only)");
  }
  const config: LlamaConfig = {
    architecture: "llama",
    modelType: arch,
    vocabSize,
    maxSeqLen,
    channels,
    intermediateSize: ff,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: eps,
    ropeTheta,
    ropeScaling: arch === "phi3" ? phi3LongRope(g, m, headDim, maxSeqLen) : ropeScaling,
    tieWordEmbeddings: !g.tensors.has("output.weight"),
    attentionBias: arch === "qwen2" || has("attn_q.bias"),
    oProjBias: arch === "llama" && has("attn_output.bias"),
    mlpBias: arch === "llama" && has("ffn_gate.bias"),
    ...(arch === "phi3" ? { fusedQkvGateUp: true } : {}),
  };
  if (arch === "qwen2" && !has("attn_q.bias")) config.attentionBias = false;
  return config;
}

/**
 * Phi-3 LongRoPE from a phi3 file (llama.cpp's Phi3MiniModel writes the factors as tensors rope_factors_long /
 * rope_factors_short and the attention factor and the original context as metadata), or null without them.
 */
function phi3LongRope(g: GGUFFile, m: GGUFMetadata, headDim: number, maxSeqLen: number): LlamaConfig["ropeScaling"] {
  const key = (k: string) => `phi3.${k}`;
  if (g.tensors.has("rope_factors_long.weight") || g.tensors.has("rope_factors_short.weight")) {
    const factors = (name: string): number[] => {
      const t = g.tensors.get(name);
      if (!t || t.type !== 0 || t.elements !== headDim / 2)
        throw new InvalidFileError(g.file, `LongRoPE needs tensor '${name}' as F32 with ${headDim / 2} elements (head size / 2)`);
      const out = new Float32Array(t.elements);
      readRange(g.file, t.fileOffset, new Uint8Array(out.buffer));
      return Array.from(out);
    };
    const original = m.uint(key("rope.scaling.original_context_length"), null);
    if (original === null) throw new InvalidFileError(g.file, `LongRoPE needs metadata '${key("rope.scaling.original_context_length")}'`);
    // the converter's default attention factor (transformers' too), unless the file stores another (float32)
    const scale = maxSeqLen / original;
    const byDefault = scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(original)) : 1;
    const stored = m.number(key("rope.scaling.attn_factor"), null);
    const attn = stored === null || stored === Math.fround(byDefault) ? null : stored;
    return {
      type: "longrope",
      shortFactor: factors("rope_factors_short.weight"),
      longFactor: factors("rope_factors_long.weight"),
      attentionFactor: attn ?? byDefault,
      originalMaxPositionEmbeddings: original,
    };
  }
  return null;
}

/**
 * llama.cpp's Gemma3Model: key_length = head_dim; rope.freq_base is the global layers' base (the sliding layers' is
 * 10,000 unless rope.freq_base_swa says otherwise); linear rope scaling applies to the global layers; the layer
 * pattern is not stored (every 6th layer global, as llama.cpp and transformers assume) unless
 * attention.sliding_window_pattern gives it (a period, or one flag per layer, true = sliding); the score scale is
 * head_dim^-1/2 except on the 62-layer 27B model (n_embd / n_head), which the engine does not run.
 */
function gemma3Config(
  g: GGUFFile,
  m: GGUFMetadata,
  base: Pick<Gemma3Config, "vocabSize" | "maxSeqLen" | "channels" | "numLayers" | "numHeads" | "numKvHeads">,
  positive: (k: string, fallback?: number) => number,
  unsupported: (what: string) => never,
): Gemma3Config {
  const key = (k: string) => `gemma3.${k}`;
  const headDim = m.uint(key("attention.key_length"), null) ?? base.channels / base.numHeads;
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0)
    throw new InvalidFileError(g.file, `head size ${headDim} (attention.key_length) must be a positive even integer`);
  const valueLength = m.uint(key("attention.value_length"), null);
  if (valueLength !== null && valueLength !== headDim) unsupported(`attention.value_length ${valueLength} ≠ key_length ${headDim}`);
  const positiveNumber = (k: string, fallback: number): number => {
    const v = shortestF32(m.number(key(k), fallback)!);
    if (!(v > 0)) throw new InvalidFileError(g.file, `metadata '${key(k)}' must be positive`);
    return v;
  };
  const scalingType = m.string(key("rope.scaling.type"), null);
  let ropeScalingFactor = 1;
  if (scalingType === "linear") ropeScalingFactor = positiveNumber("rope.scaling.factor", 1);
  else if (scalingType !== null && scalingType !== "none") unsupported(`rope.scaling.type '${scalingType}' (none or linear only)`);
  const pattern = g.metadata.get(key("attention.sliding_window_pattern"));
  let layerTypes: Gemma3Config["layerTypes"];
  if (Array.isArray(pattern)) {
    if (pattern.length !== base.numLayers)
      throw new InvalidFileError(g.file, `metadata '${key("attention.sliding_window_pattern")}' has ${pattern.length} entries for ${base.numLayers} layers`);
    layerTypes = pattern.map((sliding) => (sliding ? "sliding_attention" : "full_attention"));
  } else {
    const period = positive("attention.sliding_window_pattern", 6);
    layerTypes = Array.from({ length: base.numLayers }, (_, l) => ((l + 1) % period ? "sliding_attention" : "full_attention"));
  }
  const slidingWindow = m.uint(key("attention.sliding_window"), null);
  if (slidingWindow === null && layerTypes.includes("sliding_attention")) throw new InvalidFileError(g.file, `metadata '${key("attention.sliding_window")}' is missing`);
  const eps = m.number(key("attention.layer_norm_rms_epsilon"), null);
  if (eps === null || !(eps > 0)) throw new InvalidFileError(g.file, `metadata '${key("attention.layer_norm_rms_epsilon")}' must be a positive number`);
  return {
    architecture: "gemma3",
    modelType: "gemma3_text",
    ...base,
    intermediateSize: positive("feed_forward_length"),
    headDim,
    rmsNormEps: shortestF32(eps),
    ropeTheta: positiveNumber("rope.freq_base", 1e6),
    ropeLocalTheta: positiveNumber("rope.freq_base_swa", 1e4),
    ropeScalingFactor,
    ropeLocalScalingFactor: 1,
    slidingWindow,
    layerTypes,
    queryPreAttnScalar: base.numLayers === 62 ? base.channels / base.numHeads : headDim,
    tieWordEmbeddings: !g.tensors.has("output.weight"),
  };
}

/**
 * Llama 3.1+ GGUF files carry the llama3 RoPE adjustment as a tensor of per-frequency factors (rope_freqs) instead
 * of its parameters. The engine takes the parameters, so the tensor is matched against the published Llama 3.x
 * settings; anything else is refused rather than approximated.
 */
// Candidates: low_freq_factor 1, high_freq_factor 4 (every Llama 3.x release), a power-of-two factor and
// original context length.
function llama3ScalingFromFactors(g: GGUFFile, headDim: number, theta: number): NativeLlama3RopeScaling {
  const t = g.tensors.get("rope_freqs.weight")!;
  if (t.type !== 0 || t.elements !== headDim / 2)
    throw new InvalidFileError(g.file, `tensor 'rope_freqs.weight' must be F32 with ${headDim / 2} elements (got ${t.typeName}, ${t.elements})`);
  const got = new Float32Array(t.elements);
  readRange(g.file, t.fileOffset, new Uint8Array(got.buffer));
  const candidates: NativeLlama3RopeScaling[] = [];
  for (const factor of [2, 4, 8, 16, 32, 64])
    for (let orig = 256; orig <= 1 << 20; orig *= 2)
      candidates.push({ type: "llama3", factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: orig });
  for (const c of candidates) {
    const lowWavelen = c.originalMaxPositionEmbeddings / c.lowFreqFactor;
    const highWavelen = c.originalMaxPositionEmbeddings / c.highFreqFactor;
    let ok = true;
    for (let i = 0; i < got.length && ok; i++) {
      const freq = 1 / Math.pow(theta, (2 * i) / headDim);
      const wavelen = (2 * Math.PI) / freq;
      let f: number;
      if (wavelen < highWavelen) f = 1;
      else if (wavelen > lowWavelen) f = c.factor;
      else {
        const smooth = (c.originalMaxPositionEmbeddings / wavelen - c.lowFreqFactor) / (c.highFreqFactor - c.lowFreqFactor);
        f = 1 / ((1 - smooth) / c.factor + smooth);
      }
      ok = Math.abs(f - got[i]) <= 1e-5 * f;
    }
    if (ok) return c;
  }
  throw new UnsupportedModelError(`${g.file}: tensor 'rope_freqs.weight' holds RoPE factors that match no llama3 scaling this engine knows`);
}

/**
 * GGUF stores these settings as float32: 1e-5 arrives as 9.99999974e-6. The shortest decimal that rounds to the same
 * float32 gives back the value of the original config (and the same float32 wherever the engine rounds it).
 */
export function shortestF32(v: number): number {
  if (!Number.isFinite(v) || Math.fround(v) !== v) return v;
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

/** How a GGUF tensor becomes an engine parameter. */
interface TensorMapping {
  name: string;
  /** llama.cpp's RoPE row permutation of q/k to undo, with that tensor's head count. */
  unpermuteHeads?: number;
  /** GPT-2 Conv1D weights: stored [out, in] in GGUF, [in, out] in the engine. */
  transpose?: boolean;
  /** A fused tensor whose consecutive row blocks are these parameters (phi-2's attn_qkv: q, k, v). */
  split?: string[];
  /** Added to every value (Gemma's norm weights, stored as 1 + w: -1). */
  offset?: number;
}

const LLAMA_LAYER: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_norm: "post_attention_layernorm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};

const PHI2_LAYER: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.dense",
  ffn_up: "mlp.fc1",
  ffn_down: "mlp.fc2",
};

const PHI3_LAYER: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_qkv: "self_attn.qkv_proj",
  attn_output: "self_attn.o_proj",
  ffn_norm: "post_attention_layernorm",
  ffn_up: "mlp.gate_up_proj",
  ffn_down: "mlp.down_proj",
};

const GEMMA3_LAYER: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  attn_q_norm: "self_attn.q_norm",
  attn_k_norm: "self_attn.k_norm",
  post_attention_norm: "post_attention_layernorm",
  ffn_norm: "pre_feedforward_layernorm",
  post_ffw_norm: "post_feedforward_layernorm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};

const GPT2_LAYER: Record<string, string> = {
  attn_norm: "ln_1",
  attn_qkv: "attn.c_attn",
  attn_output: "attn.c_proj",
  ffn_norm: "ln_2",
  ffn_up: "mlp.c_fc",
  ffn_down: "mlp.c_proj",
};

/** The engine parameter a GGUF tensor fills; null = not a parameter (skipped); undefined = unknown tensor. */
export function mapGGUFTensorName(config: ModelConfig, arch: string, name: string): TensorMapping | null | undefined {
  // read into the config: llama3's RoPE factors, phi3's LongRoPE factors
  if (name === "rope_freqs.weight" || name === "rope_factors_long.weight" || name === "rope_factors_short.weight") return null;
  if (config.architecture === "gpt2") {
    const top: Record<string, string> = { "token_embd.weight": "wte.weight", "position_embd.weight": "wpe.weight", "output_norm.weight": "ln_f.weight", "output_norm.bias": "ln_f.bias" };
    if (name in top) return { name: top[name] };
    if (name === "output.weight") return null; // checked to equal token_embd (GPT-2 ties them)
    const mm = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
    if (!mm || !(mm[2] in GPT2_LAYER)) return undefined;
    const conv1d = mm[3] === "weight" && mm[2] !== "attn_norm" && mm[2] !== "ffn_norm";
    return { name: `h.${mm[1]}.${GPT2_LAYER[mm[2]]}.${mm[3]}`, transpose: conv1d };
  }
  if (config.architecture === "phi") {
    const top: Record<string, string> = {
      "token_embd.weight": "model.embed_tokens.weight",
      "output_norm.weight": "model.final_layernorm.weight",
      "output_norm.bias": "model.final_layernorm.bias",
      "output.weight": "lm_head.weight",
      "output.bias": "lm_head.bias",
    };
    if (name in top) return { name: top[name] };
    const mm = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
    if (!mm) return undefined;
    const p = `model.layers.${mm[1]}.`;
    if (mm[2] === "attn_qkv") return { name: `${p}self_attn.q_proj.${mm[3]}`, split: ["q", "k", "v"].map((x) => `${p}self_attn.${x}_proj.${mm[3]}`) };
    return mm[2] in PHI2_LAYER ? { name: `${p}${PHI2_LAYER[mm[2]]}.${mm[3]}` } : undefined;
  }
  if (config.architecture === "gemma3") {
    if (name === "output_norm.weight") return { name: "model.norm.weight", offset: -1 };
    if (name === "token_embd.weight") return { name: "model.embed_tokens.weight" };
    if (name === "output.weight") return { name: "lm_head.weight" };
    const mg = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(name);
    if (!mg || !(mg[2] in GEMMA3_LAYER)) return undefined;
    return { name: `model.layers.${mg[1]}.${GEMMA3_LAYER[mg[2]]}.weight`, ...(mg[2].endsWith("norm") ? { offset: -1 } : {}) };
  }
  const top: Record<string, string> = { "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight" };
  if (name in top) return { name: top[name] };
  const mm = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
  if (arch === "phi3") return mm && mm[2] in PHI3_LAYER ? { name: `model.layers.${mm[1]}.${PHI3_LAYER[mm[2]]}.${mm[3]}` } : undefined;
  if (!mm || !(mm[2] in LLAMA_LAYER)) return undefined;
  const mapped: TensorMapping = { name: `model.layers.${mm[1]}.${LLAMA_LAYER[mm[2]]}.${mm[3]}` };
  if (arch === "llama" && (mm[2] === "attn_q" || mm[2] === "attn_k"))
    mapped.unpermuteHeads = mm[2] === "attn_q" ? config.numHeads : (config.numKvHeads ?? config.numHeads);
  return mapped;
}

/**
 * Undoes llama.cpp's `permute(w, n_head)`: rows of each head were reordered from [2, headDim/2] (the two halves HF
 * rotates) to [headDim/2, 2] (adjacent pairs). `src` holds rows × cols floats in GGUF order; `dst` gets HF order.
 */
export function unpermuteRows(src: Float32Array, dst: Float32Array, rows: number, cols: number, heads: number): void {
  const headRows = rows / heads;
  const half = headRows / 2;
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < half; j++) {
        const from = (h * headRows + j * 2 + i) * cols;
        const to = (h * headRows + i * half + j) * cols;
        dst.set(src.subarray(from, from + cols), to);
      }
}

/** The inverse of unpermuteRows (llama.cpp's converter), for tests and for writing GGUF files. */
export function permuteRows(src: Float32Array, dst: Float32Array, rows: number, cols: number, heads: number): void {
  const headRows = rows / heads;
  const half = headRows / 2;
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < half; j++) {
        const to = (h * headRows + j * 2 + i) * cols;
        const from = (h * headRows + i * half + j) * cols;
        dst.set(src.subarray(from, from + cols), to);
      }
}

/** Quantized data is read in chunks of about this many bytes (whole blocks). */
const CHUNK_BYTES = 4 << 20;

function readRange(file: string, position: number, dest: Uint8Array, fd?: number): void {
  const own = fd === undefined;
  const f = own ? fs.openSync(file, "r") : fd;
  try {
    let got = 0;
    while (got < dest.byteLength) {
      const n = fs.readSync(f, dest, got, dest.byteLength - got, position + got);
      if (n === 0) throw new InvalidFileError(file, `file ended at byte ${position + got} while reading tensor data`);
      got += n;
    }
  } finally {
    if (own) fs.closeSync(f);
  }
}

/** Streams one tensor from the file into `out` (float32), dequantizing chunk by chunk (no copy of the whole tensor). */
export function readGGUFTensorF32(g: GGUFFile, t: GGUFTensorInfo, out: Float32Array, fd?: number): void {
  if (out.length !== t.elements) throw new RangeError(`tensor '${t.name}': ${t.elements} elements, output holds ${out.length}`);
  if (!GGML_DEQUANTIZABLE.has(t.type))
    throw new UnsupportedModelError(
      `${g.file}: tensor '${t.name}' has type ${ggmlTypeName(t.type)}; supported: ${[...GGML_DEQUANTIZABLE].map(ggmlTypeName).join(", ")}`,
    );
  const { blockElems, blockBytes } = GGML_TYPES.get(t.type)!;
  const blocksPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / blockBytes));
  const totalBlocks = t.byteLength / blockBytes;
  const buf = new Uint8Array(Math.min(totalBlocks, blocksPerChunk) * blockBytes);
  for (let b = 0; b < totalBlocks; b += blocksPerChunk) {
    const n = Math.min(blocksPerChunk, totalBlocks - b);
    const chunk = buf.subarray(0, n * blockBytes);
    readRange(g.file, t.fileOffset + b * blockBytes, chunk, fd);
    dequantize(t.type, chunk, out.subarray(b * blockElems, (b + n) * blockElems));
  }
}

/** What the GGUF weight loader needs from the model (a view per parameter name and its shape). */
export interface GGUFLoadTarget {
  config: ModelConfig;
  paramShape(name: string): number[] | undefined;
  paramNames(): string[];
  tensor(name: string): Float32Array;
}

/** A fused tensor (rows = the parts' rows one after another, same columns) read into each part's parameter. */
function readSplitTensor(g: GGUFFile, t: GGUFTensorInfo, parts: string[], target: GGUFLoadTarget, fd: number): void {
  const shapes = parts.map((n) => target.paramShape(n));
  const missing = parts.findIndex((_, i) => !shapes[i]);
  if (missing >= 0) throw new InvalidFileError(g.file, `tensor '${t.name}' (${parts[missing]}) is not a parameter of this model's config`);
  const rows = shapes.reduce((a, s) => a + s![0], 0);
  const want = shapes[0]!.length === 2 ? [rows, shapes[0]![1]] : [rows];
  if (shapes.some((s) => s!.length !== want.length || (want.length === 2 && s![1] !== want[1])) || t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
    throw new InvalidFileError(g.file, `tensor '${t.name}' has shape [${t.shape}], the metadata implies [${want}] (${parts.join(" + ")})`);
  const tmp = new Float32Array(t.elements);
  readGGUFTensorF32(g, t, tmp, fd);
  let at = 0;
  for (const n of parts) {
    const out = target.tensor(n);
    out.set(tmp.subarray(at, at + out.length));
    at += out.length;
  }
}

/** Fills every parameter of `target` from the GGUF file; unknown, mis-shaped and missing tensors are errors. */
export function loadGGUFWeights(g: GGUFFile, target: GGUFLoadTarget): void {
  const arch = new GGUFMetadata(g.file, g.metadata).string("general.architecture");
  const fd = fs.openSync(g.file, "r");
  try {
    const seen = new Set<string>();
    let gpt2Output: GGUFTensorInfo | undefined;
    for (const t of g.tensors.values()) {
      const map = mapGGUFTensorName(target.config, arch, t.name);
      if (map === null) {
        if (t.name === "output.weight" && target.config.architecture === "gpt2") gpt2Output = t;
        continue;
      }
      if (map === undefined) throw new InvalidFileError(g.file, `unexpected tensor '${t.name}' for a ${arch} model`);
      if (map.split) {
        readSplitTensor(g, t, map.split, target, fd);
        for (const n of map.split) seen.add(n);
        continue;
      }
      const shape = target.paramShape(map.name);
      if (!shape) throw new InvalidFileError(g.file, `tensor '${t.name}' (${map.name}) is not a parameter of this ${arch} model's config`);
      const want = map.transpose ? [shape[1], shape[0]] : shape;
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
        throw new InvalidFileError(g.file, `tensor '${t.name}' has shape [${t.shape}], the metadata implies [${want}]`);
      const out = target.tensor(map.name);
      if (map.unpermuteHeads !== undefined) {
        const rows = t.shape[0], cols = t.elements / rows;
        if (rows % (2 * map.unpermuteHeads) !== 0)
          throw new InvalidFileError(g.file, `tensor '${t.name}': ${rows} rows are not ${map.unpermuteHeads} heads of an even size`);
        const tmp = new Float32Array(t.elements);
        readGGUFTensorF32(g, t, tmp, fd);
        unpermuteRows(tmp, out, rows, cols, map.unpermuteHeads);
      } else if (map.transpose) {
        const tmp = new Float32Array(t.elements);
        readGGUFTensorF32(g, t, tmp, fd);
        const [rows, cols] = t.shape; // GGUF [out, in] → engine [in, out]
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = tmp[r * cols + c];
      } else readGGUFTensorF32(g, t, out, fd);
      if (map.offset !== undefined) for (let i = 0; i < out.length; i++) out[i] += map.offset;
      seen.add(map.name);
    }
    if (gpt2Output) {
      const tmp = new Float32Array(gpt2Output.elements);
      readGGUFTensorF32(g, gpt2Output, tmp, fd);
      const wte = target.tensor("wte.weight");
      if (tmp.length !== wte.length || tmp.some((v, i) => v !== wte[i]))
        throw new UnsupportedModelError(`${g.file}: an output.weight different from token_embd.weight (untied GPT-2 head) is not supported`);
    }
    const missing = target.paramNames().filter((n) => !seen.has(n));
    if (missing.length)
      throw new InvalidFileError(g.file, `missing tensors for: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}`);
  } finally {
    fs.closeSync(fd);
  }
}
