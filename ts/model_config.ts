/**
 * Model configs: reading and checking a Hugging Face config.json (GPT-2, the Llama family, Phi and Gemma 3) or a GGUF file's
 * metadata into the config the engine runs, and finding the GGUF file a path names.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InvalidFileError, UnsupportedModelError } from "./errors";
import type { NativeGemma3Config, NativeGPT2Config, NativeLlamaConfig, NativePhiConfig } from "./native";
import { isGGUFFile, readGGUF } from "./gguf";
import { ggufModelConfig } from "./gguf_model";

/** GPT-2 config (camelCase of the HF fields; `channels` = n_embd, `maxSeqLen` = n_positions). */
export interface GPT2Config extends NativeGPT2Config {
  architecture: "gpt2";
}

/** Llama-family config (camelCase of the HF fields; `channels` = hidden_size, `maxSeqLen` = max_position_embeddings). */
export interface LlamaConfig extends NativeLlamaConfig {
  architecture: "llama";
  /** The HF model_type the config was read from ("llama", "qwen2", "mistral"); informational. */
  modelType?: string;
  /** GPT-2 only (Llama uses rmsNormEps); typed as absent so `config.layerNormEps ?? …` compiles on any model. */
  layerNormEps?: undefined;
}

/** Phi config (PhiForCausalLM; `rotaryDim` = int(head_dim · partial_rotary_factor)). */
export interface PhiConfig extends NativePhiConfig {
  architecture: "phi";
  modelType?: string;
}

/**
 * Gemma 3 text config (Gemma3ForCausalLM, model_type "gemma3_text"): `ropeTheta` / `ropeScalingFactor` are the full
 * layers', `ropeLocalTheta` / `ropeLocalScalingFactor` the sliding layers'; `layerTypes` gives each layer's kind.
 */
export interface Gemma3Config extends NativeGemma3Config {
  architecture: "gemma3";
  modelType?: string;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeLocalTheta: number;
  ropeScalingFactor: number;
  ropeLocalScalingFactor: number;
  slidingWindow: number | null;
  layerTypes: ("sliding_attention" | "full_attention")[];
  queryPreAttnScalar: number;
  tieWordEmbeddings: boolean;
  /** GPT-2 and Phi only (Gemma 3 uses rmsNormEps); typed as absent so `config.layerNormEps ?? …` compiles on any model. */
  layerNormEps?: undefined;
}

/** Every supported model's config. Shared fields: vocabSize, maxSeqLen, channels, numLayers, numHeads. */
export type ModelConfig = GPT2Config | LlamaConfig | PhiConfig | Gemma3Config;

/** What `create()` accepts: a GPT-2 config may omit `architecture`. */
export type ModelConfigInput =
  | (Omit<GPT2Config, "architecture"> & { architecture?: "gpt2" })
  | LlamaConfig
  | PhiConfig
  | Gemma3Config;

function readConfigJson(dir: string): { file: string; raw: Record<string, unknown> } {
  const file = path.join(dir, "config.json");
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new InvalidFileError(file, `cannot read JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new InvalidFileError(file, "config.json is not a JSON object");
  return { file, raw: raw as Record<string, unknown> };
}

/**
 * Reads a Hugging Face GPT-2 config.json; anything this engine would run differently is an error naming it.
 * @deprecated Use `readModelConfig(dir)`, which reads every supported architecture (and GGUF files).
 */
export function readGPT2Config(dir: string): GPT2Config {
  const { file, raw } = readConfigJson(dir);
  return parseGPT2Config(raw, file);
}

function parseGPT2Config(raw: Record<string, unknown>, file: string): GPT2Config {
  const arch = Array.isArray(raw.architectures) ? String(raw.architectures[0]) : undefined;
  if (raw.model_type !== "gpt2" && arch !== "GPT2LMHeadModel")
    throw new UnsupportedModelError(`${file}: model_type '${raw.model_type}' / architecture '${arch}' is not supported (GPT-2 only)`);
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new InvalidFileError(file, `field '${key}' must be a positive integer`);
    return v;
  };
  const act = raw.activation_function ?? "gelu_new";
  if (act !== "gelu_new" && act !== "gelu_pytorch_tanh")
    throw new UnsupportedModelError(`${file}: activation_function '${String(act)}' is not supported (gelu_new only)`);
  if (raw.tie_word_embeddings === false) throw new UnsupportedModelError(`${file}: untied lm_head is not supported for GPT-2`);
  if (raw.n_inner != null && raw.n_inner !== 4 * int("n_embd"))
    throw new UnsupportedModelError(`${file}: n_inner ${String(raw.n_inner)} is not supported (4 * n_embd only)`);
  for (const flag of ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"])
    if (raw[flag] === true) throw new UnsupportedModelError(`${file}: option '${flag}' is not supported`);
  if (raw.scale_attn_weights === false) throw new UnsupportedModelError(`${file}: scale_attn_weights=false is not supported`);
  const channels = int("n_embd"), numHeads = int("n_head");
  if (channels % numHeads !== 0) throw new InvalidFileError(file, `n_embd ${channels} is not divisible by n_head ${numHeads}`);
  const eps = raw.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== "number" || !(eps > 0)) throw new InvalidFileError(file, "field 'layer_norm_epsilon' must be a positive number");
  return {
    architecture: "gpt2",
    vocabSize: int("vocab_size"),
    maxSeqLen: int("n_positions", raw.n_ctx as number | undefined),
    channels,
    numLayers: int("n_layer"),
    numHeads,
    layerNormEps: eps,
  };
}

/** Llama-family model types: HF model_type → its causal-LM class and max_position_embeddings default. */
const LLAMA_FAMILY: Record<string, { arch: string; maxPositions: number }> = {
  llama: { arch: "LlamaForCausalLM", maxPositions: 2048 },
  qwen2: { arch: "Qwen2ForCausalLM", maxPositions: 32768 },
  mistral: { arch: "MistralForCausalLM", maxPositions: 4096 * 32 },
  phi3: { arch: "Phi3ForCausalLM", maxPositions: 4096 },
};

/**
 * Reads a Hugging Face config.json into the config of a supported model: GPT-2 (model_type "gpt2") or the Llama
 * family (model_type "llama", "qwen2", "mistral", "phi3"; LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM /
 * Phi3ForCausalLM) or Phi (model_type "phi", PhiForCausalLM) or Gemma 3 text models (model_type "gemma3_text",
 * Gemma3ForCausalLM).
 * Anything the engine would run differently (another architecture, rope_scaling other than none/llama3, an active
 * sliding window, an activation other than SiLU, quantized weights, …) is an UnsupportedModelError naming it;
 * a malformed file is an InvalidFileError.
 */
export function readModelConfig(dir: string): ModelConfig {
  const gguf = findGGUF(dir);
  if (gguf) return ggufModelConfig(readGGUF(gguf));
  const { file, raw } = readConfigJson(dir);
  const arch = Array.isArray(raw.architectures) && raw.architectures.length ? String(raw.architectures[0]) : undefined;
  if (raw.model_type === "gpt2" || (raw.model_type === undefined && arch === "GPT2LMHeadModel")) return parseGPT2Config(raw, file);
  if (raw.model_type === "phi" || (raw.model_type === undefined && arch === "PhiForCausalLM")) return parsePhiConfig(raw, file);
  if (raw.model_type === "gemma3_text" || (raw.model_type === undefined && arch === "Gemma3ForCausalLM"))
    return parseGemma3Config(raw, file);
  const byArch = Object.keys(LLAMA_FAMILY).find((k) => LLAMA_FAMILY[k].arch === arch);
  const modelType = typeof raw.model_type === "string" ? raw.model_type : byArch;
  if (modelType === undefined || !(modelType in LLAMA_FAMILY))
    throw new UnsupportedModelError(
      `${file}: model_type '${String(raw.model_type)}' / architecture '${arch}' is not supported ` +
        `(supported: gpt2, ${Object.keys(LLAMA_FAMILY).join(", ")}, phi, gemma3_text)`,
    );
  return parseLlamaConfig(raw, file, modelType);
}

function parseLlamaConfig(raw: Record<string, unknown>, file: string, modelType: string): LlamaConfig {
  const family = LLAMA_FAMILY[modelType];
  const unsupported = (what: string): never => {
    throw new UnsupportedModelError(`${file}: ${what} is not supported`);
  };
  const arch = Array.isArray(raw.architectures) && raw.architectures.length ? String(raw.architectures[0]) : undefined;
  if (arch !== undefined && arch !== family.arch) unsupported(`architecture '${arch}' (model_type '${modelType}': ${family.arch} only)`);
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new InvalidFileError(file, `field '${key}' must be a positive integer`);
    return v;
  };
  const num = (obj: Record<string, unknown>, key: string, where: string, fallback?: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new InvalidFileError(file, `field '${where}${key}' must be a positive number`);
    return v;
  };
  if (raw.quantization_config != null) unsupported("option 'quantization_config' (quantized weights)");
  const act = raw.hidden_act ?? raw.hidden_activation ?? "silu";
  if (act !== "silu") unsupported(`hidden_act '${String(act)}' (silu only)`);

  const channels = int("hidden_size"), numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0)
    throw new InvalidFileError(file, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  let headDim: number;
  if (raw.head_dim == null) {
    if (channels % numHeads !== 0) throw new InvalidFileError(file, `hidden_size ${channels} is not divisible by num_attention_heads ${numHeads}`);
    headDim = channels / numHeads;
  } else headDim = int("head_dim");
  if (headDim % 2 !== 0) throw new InvalidFileError(file, `head_dim ${headDim} must be even (rotary embeddings)`);
  const maxSeqLen = int("max_position_embeddings", family.maxPositions);

  // rotary embeddings: rope_theta + rope_scaling (transformers < 4.56 style) or rope_parameters (newer)
  const params = isObject(raw.rope_parameters) ? raw.rope_parameters : undefined;
  const ropeTheta = num(raw.rope_theta != null ? raw : params ?? {}, "rope_theta", "", 10000);
  const scaling = isObject(raw.rope_scaling) ? raw.rope_scaling : params;
  if (raw.rope_scaling != null && !isObject(raw.rope_scaling)) throw new InvalidFileError(file, "field 'rope_scaling' must be an object or null");
  let ropeScaling: LlamaConfig["ropeScaling"] = null;
  if (scaling) {
    const type = scaling.rope_type ?? scaling.type ?? "default";
    if (type === "llama3" && modelType !== "phi3") {
      const w = "rope_scaling.";
      ropeScaling = {
        type: "llama3",
        factor: num(scaling, "factor", w),
        lowFreqFactor: num(scaling, "low_freq_factor", w),
        highFreqFactor: num(scaling, "high_freq_factor", w),
        originalMaxPositionEmbeddings: num(scaling, "original_max_position_embeddings", w),
      };
      if (!(ropeScaling.highFreqFactor > ropeScaling.lowFreqFactor))
        throw new InvalidFileError(file, "rope_scaling.high_freq_factor must be larger than low_freq_factor");
    } else if ((type === "longrope" || type === "su") && modelType === "phi3") {
      // transformers' _compute_longrope_parameters: factor = max_position_embeddings / original_max_position_embeddings
      // unless given; attention_factor = sqrt(1 + ln(factor) / ln(original)) unless given (1 when factor ≤ 1)
      const w = raw.rope_scaling != null ? "rope_scaling." : "rope_parameters.";
      const factors = (key: string): number[] => {
        const v = scaling[key];
        if (!Array.isArray(v) || v.length !== headDim / 2 || v.some((x) => typeof x !== "number" || !(x > 0)))
          throw new InvalidFileError(file, `field '${w}${key}' must be a list of ${headDim / 2} positive numbers (head_dim / 2)`);
        return v as number[];
      };
      const original = num(scaling.original_max_position_embeddings != null ? scaling : raw, "original_max_position_embeddings", "", maxSeqLen);
      const factor = scaling.factor != null ? num(scaling, "factor", w) : maxSeqLen / original;
      const attentionFactor = scaling.attention_factor != null ? num(scaling, "attention_factor", w) : factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
      ropeScaling = { type: "longrope", shortFactor: factors("short_factor"), longFactor: factors("long_factor"), attentionFactor, originalMaxPositionEmbeddings: original };
    } else if (type !== "default") unsupported(`rope_scaling type '${String(type)}' (${modelType === "phi3" ? "longrope or none" : "llama3 or none"} only)`);
    if (ropeScaling?.type !== "longrope" && scaling.attention_factor != null && scaling.attention_factor !== 1) unsupported("rope_scaling.attention_factor != 1");
  }
  const partial = raw.partial_rotary_factor ?? params?.partial_rotary_factor;
  if (partial != null && partial !== 1) unsupported(`partial_rotary_factor ${String(partial)} (1 only)`);

  // attention pattern: full causal attention in every layer only
  if (raw.use_sliding_window === true) unsupported("sliding_window attention (use_sliding_window: true)");
  if ((modelType === "mistral" || modelType === "phi3") && raw.sliding_window != null) {
    const sw = int("sliding_window");
    if (sw < maxSeqLen) unsupported(`sliding_window ${sw} (active below max_position_embeddings ${maxSeqLen})`);
  }
  if (Array.isArray(raw.layer_types)) {
    const other = raw.layer_types.find((t) => t !== "full_attention");
    if (other !== undefined) unsupported(`layer_types entry '${String(other)}' (full_attention only)`);
  }

  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "boolean") throw new InvalidFileError(file, `field '${key}' must be true or false`);
    return v;
  };
  // Biases: Llama's attention_bias covers q,k,v and o; Qwen2 always has q,k,v biases and none on o; Mistral none.
  const llamaAttnBias = modelType === "llama" && bool("attention_bias", false);
  const eps = raw.rms_norm_eps ?? (modelType === "phi3" ? 1e-5 : 1e-6);
  if (typeof eps !== "number" || !(eps > 0)) throw new InvalidFileError(file, "field 'rms_norm_eps' must be a positive number");
  return {
    architecture: "llama",
    modelType,
    vocabSize: int("vocab_size"),
    maxSeqLen,
    channels,
    intermediateSize: int("intermediate_size"),
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: eps,
    ropeTheta,
    ropeScaling,
    tieWordEmbeddings: bool("tie_word_embeddings", false),
    attentionBias: modelType === "qwen2" || llamaAttnBias,
    oProjBias: llamaAttnBias,
    mlpBias: modelType === "llama" && bool("mlp_bias", false),
    ...(modelType === "phi3" ? { fusedQkvGateUp: true } : {}),
  };
}

/** PhiForCausalLM (phi-1, phi-1.5, phi-2): anything the engine would run differently is an UnsupportedModelError. */
function parsePhiConfig(raw: Record<string, unknown>, file: string): PhiConfig {
  const unsupported = (what: string): never => {
    throw new UnsupportedModelError(`${file}: ${what} is not supported`);
  };
  const arch = Array.isArray(raw.architectures) && raw.architectures.length ? String(raw.architectures[0]) : undefined;
  if (arch !== undefined && arch !== "PhiForCausalLM") unsupported(`architecture '${arch}' (model_type 'phi': PhiForCausalLM only)`);
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new InvalidFileError(file, `field '${key}' must be a positive integer`);
    return v;
  };
  const pos = (obj: Record<string, unknown>, key: string, fallback: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) throw new InvalidFileError(file, `field '${key}' must be a positive number`);
    return v;
  };
  if (raw.quantization_config != null) unsupported("option 'quantization_config' (quantized weights)");
  const act = raw.hidden_act ?? "gelu_new";
  if (act !== "gelu_new" && act !== "gelu_pytorch_tanh") unsupported(`hidden_act '${String(act)}' (gelu_new only)`);
  if (raw.qk_layernorm === true) unsupported("qk_layernorm");
  const channels = int("hidden_size"), numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (channels % numHeads !== 0) throw new InvalidFileError(file, `hidden_size ${channels} is not divisible by num_attention_heads ${numHeads}`);
  if (numHeads % numKvHeads !== 0)
    throw new InvalidFileError(file, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const params = isObject(raw.rope_parameters) ? raw.rope_parameters : {};
  const scaling = isObject(raw.rope_scaling) ? raw.rope_scaling : params;
  const type = scaling.rope_type ?? scaling.type ?? "default";
  if (type !== "default") unsupported(`rope_scaling type '${String(type)}' (none only)`);
  const partial = pos(raw.partial_rotary_factor != null ? raw : params, "partial_rotary_factor", 0.5);
  const headDim = channels / numHeads, rotaryDim = Math.trunc(headDim * partial);
  if (partial > 1 || rotaryDim < 2 || rotaryDim % 2 !== 0)
    unsupported(`partial_rotary_factor ${partial} (head_dim ${headDim}: the rotary dimensions must be even, 2 to head_dim)`);
  const tie = raw.tie_word_embeddings ?? false;
  if (typeof tie !== "boolean") throw new InvalidFileError(file, "field 'tie_word_embeddings' must be true or false");
  return {
    architecture: "phi",
    modelType: "phi",
    vocabSize: int("vocab_size"),
    maxSeqLen: int("max_position_embeddings", 2048),
    channels,
    intermediateSize: int("intermediate_size"),
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    rotaryDim,
    layerNormEps: pos(raw, "layer_norm_eps", 1e-5),
    ropeTheta: pos(raw.rope_theta != null ? raw : params, "rope_theta", 10000),
    tieWordEmbeddings: tie,
  };
}

/**
 * Gemma3ForCausalLM (model_type "gemma3_text"; transformers 5.x rope_parameters per layer kind, or the older
 * rope_theta + rope_local_base_freq + rope_scaling and sliding_window_pattern). Anything the engine would run
 * differently (logit soft-capping, bidirectional attention, rope types other than default/linear, a
 * query_pre_attn_scalar other than head_dim, attention biases, …) is an UnsupportedModelError naming it.
 */
function parseGemma3Config(raw: Record<string, unknown>, file: string): Gemma3Config {
  const unsupported = (what: string): never => {
    throw new UnsupportedModelError(`${file}: ${what} is not supported`);
  };
  const arch = Array.isArray(raw.architectures) && raw.architectures.length ? String(raw.architectures[0]) : undefined;
  if (arch !== undefined && arch !== "Gemma3ForCausalLM")
    unsupported(`architecture '${arch}' (model_type 'gemma3_text': Gemma3ForCausalLM only)`);
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new InvalidFileError(file, `field '${key}' must be a positive integer`);
    return v;
  };
  const pos = (obj: Record<string, unknown>, key: string, where: string, fallback: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || !(v > 0)) throw new InvalidFileError(file, `field '${where}${key}' must be a positive number`);
    return v;
  };
  if (raw.quantization_config != null) unsupported("option 'quantization_config' (quantized weights)");
  const act = raw.hidden_activation ?? raw.hidden_act ?? "gelu_pytorch_tanh";
  if (act !== "gelu_pytorch_tanh" && act !== "gelu_new") unsupported(`hidden_activation '${String(act)}' (gelu_pytorch_tanh only)`);
  for (const key of ["attn_logit_softcapping", "final_logit_softcapping"])
    if (raw[key] != null) unsupported(`${key} ${String(raw[key])} (null only)`);
  if (raw.use_bidirectional_attention === true) unsupported("use_bidirectional_attention");
  if (raw.attention_bias === true) unsupported("attention_bias");

  // HF defaults (Gemma3TextConfig) where a field is absent
  const channels = int("hidden_size", 2304), numHeads = int("num_attention_heads", 8);
  const numKvHeads = int("num_key_value_heads", 4);
  if (numHeads % numKvHeads !== 0)
    throw new InvalidFileError(file, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const headDim = int("head_dim", 256);
  if (headDim % 2 !== 0) throw new InvalidFileError(file, `head_dim ${headDim} must be even (rotary embeddings)`);
  const queryPreAttnScalar = pos(raw, "query_pre_attn_scalar", "", 256);
  if (queryPreAttnScalar !== headDim) unsupported(`query_pre_attn_scalar ${queryPreAttnScalar} (head_dim ${headDim} only)`);
  const numLayers = int("num_hidden_layers", 26);

  // each layer's kind: layer_types, or every sliding_window_pattern-th layer full (older configs)
  let layerTypes: Gemma3Config["layerTypes"];
  if (Array.isArray(raw.layer_types)) {
    if (raw.layer_types.length !== numLayers)
      throw new InvalidFileError(file, `layer_types has ${raw.layer_types.length} entries for ${numLayers} layers`);
    const other = raw.layer_types.find((t) => t !== "sliding_attention" && t !== "full_attention");
    if (other !== undefined) unsupported(`layer_types entry '${String(other)}' (sliding_attention, full_attention only)`);
    layerTypes = raw.layer_types as Gemma3Config["layerTypes"];
  } else {
    const pattern = int(raw.sliding_window_pattern != null ? "sliding_window_pattern" : "_sliding_window_pattern", 6);
    layerTypes = Array.from({ length: numLayers }, (_, l) => ((l + 1) % pattern ? "sliding_attention" : "full_attention"));
  }
  const anySliding = layerTypes.includes("sliding_attention");
  const slidingWindow = raw.sliding_window === null ? null : int("sliding_window", 4096);
  if (anySliding && slidingWindow === null) throw new InvalidFileError(file, "sliding layers need a sliding_window");

  // rotary embeddings per layer kind: rope_parameters {full_attention, sliding_attention} (transformers 5.x), or
  // rope_theta / rope_local_base_freq with rope_scaling applying to the full layers
  const rope = (kind: "full_attention" | "sliding_attention"): { theta: number; factor: number } => {
    const params = isObject(raw.rope_parameters) ? raw.rope_parameters : undefined;
    const fallback = kind === "full_attention" ? 1e6 : 1e4;
    let p: Record<string, unknown>, where: string, theta: number;
    if (params) {
      p = isObject(params[kind]) ? params[kind] : {};
      where = `rope_parameters.${kind}.`;
      theta = pos(p, "rope_theta", where, fallback);
    } else if (kind === "full_attention") {
      if (raw.rope_scaling != null && !isObject(raw.rope_scaling)) throw new InvalidFileError(file, "field 'rope_scaling' must be an object or null");
      p = isObject(raw.rope_scaling) ? raw.rope_scaling : {};
      where = "rope_scaling.";
      theta = pos(raw, "rope_theta", "", fallback);
    } else {
      p = {};
      where = "";
      theta = pos(raw, "rope_local_base_freq", "", fallback);
    }
    const type = p.rope_type ?? p.type ?? "default";
    if (type === "default") return { theta, factor: 1 };
    if (type === "linear") return { theta, factor: pos(p, "factor", where, 1) };
    return unsupported(`rope_type '${String(type)}' on the ${kind} layers (default or linear only)`);
  };
  const full = rope("full_attention"), local = rope("sliding_attention");
  const eps = raw.rms_norm_eps ?? 1e-6;
  if (typeof eps !== "number" || !(eps > 0)) throw new InvalidFileError(file, "field 'rms_norm_eps' must be a positive number");
  const tie = raw.tie_word_embeddings ?? true;
  if (typeof tie !== "boolean") throw new InvalidFileError(file, "field 'tie_word_embeddings' must be true or false");
  return {
    architecture: "gemma3",
    modelType: "gemma3_text",
    vocabSize: int("vocab_size", 262208),
    maxSeqLen: int("max_position_embeddings", 131072),
    channels,
    intermediateSize: int("intermediate_size", 9216),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: eps,
    ropeTheta: full.theta,
    ropeLocalTheta: local.theta,
    ropeScalingFactor: full.factor,
    ropeLocalScalingFactor: local.factor,
    slidingWindow,
    layerTypes,
    queryPreAttnScalar,
    tieWordEmbeddings: tie,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The GGUF file that `source` names: the file itself (by its magic, whatever its extension), or the one .gguf file
 * of a folder that has no config.json. null = not GGUF (a Hugging Face folder or safetensors file).
 */
export function findGGUF(source: string): string | null {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch (e) {
    throw new InvalidFileError(source, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  if (stat.isFile()) return isGGUFFile(source) ? source : null;
  if (!stat.isDirectory() || fs.existsSync(path.join(source, "config.json"))) return null;
  const ggufs = fs.readdirSync(source).filter((f) => f.toLowerCase().endsWith(".gguf"));
  if (ggufs.length > 1) throw new InvalidFileError(source, `holds ${ggufs.length} .gguf files (${ggufs.join(", ")}): name the one to load`);
  return ggufs.length === 1 ? path.join(source, ggufs[0]) : null;
}
