/**
 * Model configs: reading and checking a Hugging Face config.json (GPT-2 and the Llama family) or a GGUF file's
 * metadata into the config the engine runs, and finding the GGUF file a path names.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InvalidFileError, UnsupportedModelError } from "./errors";
import type { NativeGPT2Config, NativeLlamaConfig } from "./native";
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

/** Every supported model's config. Shared fields: vocabSize, maxSeqLen, channels, numLayers, numHeads. */
export type ModelConfig = GPT2Config | LlamaConfig;

/** What `create()` accepts: a GPT-2 config may omit `architecture`. */
export type ModelConfigInput = (Omit<GPT2Config, "architecture"> & { architecture?: "gpt2" }) | LlamaConfig;

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
};

/**
 * Reads a Hugging Face config.json into the config of a supported model: GPT-2 (model_type "gpt2") or the Llama
 * family (model_type "llama", "qwen2", "mistral"; LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM).
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
  const byArch = Object.keys(LLAMA_FAMILY).find((k) => LLAMA_FAMILY[k].arch === arch);
  const modelType = typeof raw.model_type === "string" ? raw.model_type : byArch;
  if (modelType === undefined || !(modelType in LLAMA_FAMILY))
    throw new UnsupportedModelError(
      `${file}: model_type '${String(raw.model_type)}' / architecture '${arch}' is not supported ` +
        `(supported: gpt2, ${Object.keys(LLAMA_FAMILY).join(", ")})`,
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
    if (type === "llama3") {
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
    } else if (type !== "default") unsupported(`rope_scaling type '${String(type)}' (llama3 or none only)`);
    if (scaling.attention_factor != null && scaling.attention_factor !== 1) unsupported("rope_scaling.attention_factor != 1");
  }
  const partial = raw.partial_rotary_factor ?? params?.partial_rotary_factor;
  if (partial != null && partial !== 1) unsupported(`partial_rotary_factor ${String(partial)} (1 only)`);

  // attention pattern: full causal attention in every layer only
  if (raw.use_sliding_window === true) unsupported("sliding_window attention (use_sliding_window: true)");
  if (modelType === "mistral" && raw.sliding_window != null) {
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
  const eps = raw.rms_norm_eps ?? 1e-6;
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
