/**
 * Causal language models on the native engine: GPT-2 and the Llama family (Llama, Qwen2, Mistral without sliding
 * windows). Creation, loading from a Hugging Face folder, forward/backward, AdamW, and KV-cached decoding. Every
 * heavy call is a Promise run off the main thread and takes an AbortSignal.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { withCancel } from "./abort";
import { DisposedError, InvalidFileError, typedEngineError, UnsupportedModelError } from "./errors";
import {
  native,
  type NativeGPT2Config,
  type NativeKVCache,
  type NativeLlamaConfig,
  type NativeModel,
  type NativeParamInfo,
} from "./native";
import { gaussian, mulberry32 } from "./random";
import { openSafetensorsDir } from "./safetensors";
import { isGGUFFile, readGGUF, type GGUFFile } from "./gguf";
import { ggufModelConfig, loadGGUFWeights } from "./gguf_model";
import { tokenizerFromGGUF } from "./tokenizer/gguf";
import { resolveModelPath } from "./registry";
import { resolvePrecision, type Precision, type PrecisionOption } from "./threads";

export { gaussian, mulberry32 };
import { Tokenizer } from "./tokenizer";

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

export interface CallOptions {
  signal?: AbortSignal;
}

export type ModelInput = { tokens: Int32Array; embeds?: undefined } | { embeds: Float32Array; tokens?: undefined };

export type ForwardOptions = CallOptions &
  ModelInput & {
    B: number;
    T: number;
    /** Target token per position [B*T]; with them the forward returns the mean cross-entropy. */
    targets?: Int32Array;
    /** Weight per position [B*T] (0 = does not count). Logits are computed only where it is non-zero. */
    lossMask?: Float32Array;
    /** Compute logits at every position (for analysis; costs B*T*V). */
    allLogits?: boolean;
    /**
     * false: an inference forward that keeps one layer's activations at a time instead of all of them (for long or
     * many rows: about 1/numLayers of the activation memory; the same logits and hidden states bit for bit).
     * backward() after it throws. Default true.
     */
    keepActivations?: boolean;
  };

export interface BackwardOptions extends CallOptions {
  /** Start from the cross-entropy of the last forward (default true). */
  fromLoss?: boolean;
  /** Extra gradient at the computed logits [selected rows, V]. */
  dLogits?: Float32Array;
  /** Extra gradient at the final hidden states h [B,T,C]. */
  dHidden?: Float32Array;
  /** Accumulate parameter gradients (default true). false = input gradient only, no weight-gradient GEMMs. */
  paramGrads?: boolean;
  /** Receives (+=) d/d(input embeddings) [B,T,C] when the forward took embeds. */
  dEmbeds?: Float32Array;
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value (0 = no clipping). */
  maxGradNorm?: number;
  /** Step number, from 1 (bias correction). */
  step: number;
}

/** Rows decoded in lockstep, optionally continuing a shared one-row prefix cache (read, never copied). */
export class KVCache {
  /** @internal */ readonly handle: NativeKVCache;
  /** @internal */ readonly owner: CausalLMModel;
  constructor(owner: CausalLMModel, handle: NativeKVCache) {
    this.owner = owner;
    this.handle = handle;
  }
  get length(): number {
    return this.handle.length;
  }
  get rows(): number {
    return this.handle.rows;
  }
  get capacity(): number {
    return this.handle.capacity;
  }
  /** Forgets every position decoded into this cache (the shared prefix is kept). */
  reset(): void {
    this.handle.reset();
  }
}

/**
 * One class for every architecture: it wraps the native model (binding/src/causal_lm.h). Parameters are one
 * contiguous Float32Array named and shaped as in Hugging Face checkpoints.
 */
export class CausalLMModel {
  readonly config: ModelConfig;
  #native: NativeModel | undefined;
  #params: Float32Array;
  #table: Map<string, NativeParamInfo>;

  protected constructor(config: ModelConfig) {
    this.config = config;
    this.#native = new (native().Model)(config);
    this.#params = this.#native.params();
    this.#table = new Map(this.#native.paramTable().map((p) => [p.name, p]));
  }

  /** A model with all parameters zero; fill them through `params` / `tensor()` or `initRandom()`. GPT-2 by default. */
  static create(config: ModelConfigInput): CausalLMModel {
    const full: ModelConfig = config.architecture === "llama" ? { ...config } : { ...config, architecture: "gpt2" };
    return new CausalLMModel(full);
  }

  /**
   * Loads a model from a Hugging Face folder (config.json + model.safetensors or a sharded index: GPT2LMHeadModel,
   * LlamaForCausalLM, Qwen2ForCausalLM or MistralForCausalLM; see readModelConfig), or from a GGUF file (or a
   * folder holding one and no config.json): architectures llama, qwen2 and gpt2, weights of type F32, F16, BF16,
   * Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K dequantized to float32 while they stream in. A known model
   * name (`gradmm models`; e.g. "smollm2-135m-instruct") loads the cached file, verified by its sha256.
   */
  static load(source: string, options: LoadModelOptions = {}): CausalLMModel {
    const precision = resolvePrecision(options.precision, "precision"); // before any reading: a PrecisionError first
    const dir = resolveModelPath(source);
    const gguf = findGGUF(dir);
    if (gguf) return withPrecision(CausalLMModel.loadGGUF(readGGUF(gguf)), precision);
    const config = readModelConfig(dir);
    const model = CausalLMModel.create(config);
    try {
      model.loadWeights(dir);
      if (precision !== "float32") model.setPrecision(precision);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  /** @internal A model from an already read GGUF header. */
  static loadGGUF(g: GGUFFile): CausalLMModel {
    const model = CausalLMModel.create(ggufModelConfig(g));
    try {
      loadGGUFWeights(g, {
        config: model.config,
        paramShape: (name) => model.#table.get(name)?.shape,
        paramNames: () => [...model.#table.keys()],
        tensor: (name) => model.tensor(name),
      });
    } catch (e) {
      model.dispose();
      throw e;
    } finally {
      if (!model.disposed) model.markParamsChanged();
    }
    return model;
  }

  get architecture(): ModelConfig["architecture"] {
    return this.config.architecture;
  }

  /** Name of the input token-embedding matrix [V, C]. */
  get inputEmbeddingName(): string {
    return this.config.architecture === "llama" ? "model.embed_tokens.weight" : "wte.weight";
  }

  /** Name of the lm_head weight [V, C] (the embedding matrix when tied). */
  get lmHeadName(): string {
    return this.config.architecture === "llama" && !this.config.tieWordEmbeddings ? "lm_head.weight" : this.inputEmbeddingName;
  }

  /** View of the input token-embedding matrix [V, C] (no copy). */
  inputEmbeddings(): Float32Array {
    return this.tensor(this.inputEmbeddingName);
  }

  private get handle(): NativeModel {
    if (!this.#native) throw new DisposedError(this.config.architecture === "gpt2" ? "GPT2Model" : "model");
    return this.#native;
  }

  /**
   * All parameters, one contiguous Float32Array over native memory (no copy). After writing into it (or into a
   * `tensor()` view) yourself, call `markParamsChanged()` so a GPU copy of the weights is refreshed before its next
   * use; `loadWeights` and `initRandom` do this themselves. On a GPU, training steps (`adamwStep`) update the
   * device's copy; reading `params` (or `tensor()`) first copies it back, so get the view again after training
   * rather than keeping an old one.
   */
  get params(): Float32Array {
    this.handle.syncHost();
    return this.#params;
  }

  /**
   * Announces that the parameters (or gradients / Adam moments, written through the views `grads()` and
   * `adamMoments()` return) were written from JavaScript. Cheap: nothing is copied now.
   */
  markParamsChanged(): void {
    this.handle.paramsChanged();
  }

  get numParams(): number {
    return this.#params.length;
  }

  /**
   * Sets the arithmetic of the big products (attention and MLP projections, the lm_head / tied embedding, and their
   * input-gradient products): "float32" (the default: exact, every result as before), "bf16" (the weight matrices
   * read from a bf16 copy, 2 bytes per parameter beside the float32 master, activations rounded to bf16, f32
   * accumulation, on the AVX512_BF16 kernel), or "auto" (bf16 where the CPU has AVX512_BF16, else float32). bf16
   * where it cannot run throws a PrecisionError naming `field`. Returns the precision now in use.
   */
  setPrecision(precision: PrecisionOption, field = "precision"): Precision {
    const p = resolvePrecision(precision, field);
    this.handle.setPrecision(p);
    return p;
  }

  /** The precision in use ("float32" unless setPrecision chose bf16). */
  get precision(): Precision {
    return this.handle.precision().precision;
  }

  /** The precision, the bf16 kernel (null in float32) and the bytes of the bf16 copy of the weights (0 until first used). */
  precisionInfo(): { precision: Precision; kernel: string | null; bf16Bytes: number } {
    return this.handle.precision();
  }

  /** Names and shapes of the parameters, as in Hugging Face checkpoints (GPT-2 Conv1D weights [in, out], nn.Linear [out, in]). */
  get paramTable(): NativeParamInfo[] {
    return [...this.#table.values()];
  }

  /** A view of one named parameter (or of its gradient with `grads`). */
  tensor(name: string, which: "params" | "grads" = "params"): Float32Array {
    const info = this.#table.get(name);
    if (!info) throw new RangeError(`no parameter named '${name}'`);
    const n = info.shape.reduce((a, b) => a * b, 1);
    const base = which === "params" ? this.params : this.grads();
    return base.subarray(info.offset, info.offset + n);
  }

  /** Gradient buffer (same layout as params), allocated on first use; on a GPU, copied from the device when called. */
  grads(): Float32Array {
    return this.handle.grads();
  }

  /**
   * AdamW's first and second moments (views over native memory, zeros before the first step), for checkpoints. On a
   * GPU they are copied from the device when called, and back before the next step (so a checkpoint can be
   * restored by writing into them).
   */
  adamMoments(): { m: Float32Array; v: Float32Array } {
    return this.handle.adamMoments();
  }

  zeroGrads(): void {
    this.handle.zeroGrads();
  }

  /**
   * Random initialisation. GPT-2: N(0, 0.02) weights (residual projections scaled by 1/sqrt(2L)), zero biases, unit LN.
   * Llama (HF `_init_weights`): N(0, 0.02) weights, zero biases, unit RMSNorm weights.
   */
  initRandom(seed: number): void {
    const rng = mulberry32(seed);
    const projStd = 0.02 / Math.sqrt(2 * this.config.numLayers);
    const llama = this.config.architecture === "llama";
    for (const p of this.#table.values()) {
      const t = this.tensor(p.name);
      if (llama ? p.name.endsWith("norm.weight") : p.name.includes("ln_")) t.fill(p.name.endsWith(".weight") ? 1 : 0);
      else if (p.name.endsWith(".bias")) t.fill(0);
      else {
        const std = llama ? 0.02 : p.name.endsWith("c_proj.weight") ? projStd : p.name === "wpe.weight" ? 0.01 : 0.02;
        for (let i = 0; i < t.length; i++) t[i] = gaussian(rng) * std;
      }
    }
    this.markParamsChanged();
  }

  /** Mean cross-entropy over the masked positions (NaN without targets). Activations are kept for backward(). */
  forward(opts: ForwardOptions): Promise<number> {
    const h = this.handle;
    const { signal, ...args } = opts;
    return engineCall(() => withCancel(signal, (token) => h.forward(args, token)));
  }

  backward(opts: BackwardOptions = {}): Promise<void> {
    const h = this.handle;
    const { signal, ...args } = opts;
    return engineCall(() => withCancel(signal, (token) => h.backward(args, token)));
  }

  /** Logits of the last forward at its selected positions, [selectedRows().length, V] (a copy). */
  logits(): Float32Array {
    return this.handle.logits();
  }

  /** Positions (b*T+t) whose logits the last forward computed. */
  selectedRows(): Int32Array {
    return this.handle.selectedRows();
  }

  /** Final hidden states h [B,T,C] of the last forward (a copy). */
  hidden(): Float32Array {
    return this.handle.hidden();
  }

  /** One AdamW step on the accumulated gradients; returns the global gradient norm before clipping. */
  adamwStep(opts: AdamWOptions): Promise<number> {
    const h = this.handle;
    return engineCall(() => h.adamwStep(opts));
  }

  createKVCache(rows: number, capacity: number, prefix?: KVCache): KVCache {
    if (prefix && prefix.owner !== this) throw new RangeError("the prefix cache belongs to another model");
    return new KVCache(this, new (native().KVCache)(this.handle, rows, capacity, prefix?.handle));
  }

  /**
   * Appends T positions to every row of `cache` and returns the logits [rows, V] of each row's last new position
   * (written into opts.logits if given); opts.hidden receives h [rows, C].
   */
  async decode(
    cache: KVCache,
    input: ModelInput & { T: number },
    opts: CallOptions & { logits?: Float32Array; hidden?: Float32Array } = {},
  ): Promise<Float32Array> {
    const h = this.handle;
    if (cache.owner !== this) throw new RangeError("the cache belongs to another model");
    const logits = opts.logits ?? new Float32Array(cache.rows * this.config.vocabSize);
    await engineCall(() => withCancel(opts.signal, (token) => h.decode(cache.handle, input, logits, opts.hidden, token)));
    return logits;
  }

  /** @internal The native handle, for the method code in ts/gradmm (throws DisposedError after dispose()). */
  get native(): NativeModel {
    return this.handle;
  }

  /**
   * Copies weights from a Hugging Face checkpoint folder (or one .safetensors file) into this model, tensor by
   * tensor straight into the native parameter block (F32, F16, BF16 or F64 on disk; no second copy in memory).
   * Every tensor's shape is checked; unexpected and missing tensors are InvalidFileErrors naming them.
   */
  loadWeights(source: string): void {
    const reader = openSafetensorsDir(source);
    const kind = this.config.architecture === "llama" ? "Llama-family" : "GPT-2";
    try {
      const seen = new Set<string>();
      for (const raw of reader.names()) {
        const name = this.config.architecture === "llama" ? this.#llamaName(raw) : this.#gpt2Name(raw);
        if (name === null) continue;
        const info = this.#table.get(name);
        if (!info) throw new InvalidFileError(reader.path, `unexpected tensor '${raw}' for a ${kind} model with this config`);
        const got = reader.info(raw).shape;
        if (got.length !== info.shape.length || got.some((d, i) => d !== info.shape[i]))
          throw new InvalidFileError(reader.path, `tensor '${raw}' has shape [${got}], the config implies [${info.shape}]`);
        reader.readF32(raw, this.tensor(name));
        seen.add(name);
      }
      const missing = [...this.#table.keys()].filter((n) => !seen.has(n));
      if (missing.length) throw new InvalidFileError(reader.path, `missing tensors: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}`);
    } finally {
      reader.close();
      this.markParamsChanged();
    }
  }

  /** Checkpoint name → parameter name (null = not a parameter: skip). */
  #gpt2Name(raw: string): string | null {
    const name = raw.startsWith("transformer.") ? raw.slice("transformer.".length) : raw;
    if (/^h\.\d+\.attn\.(masked_)?bias$/.test(name)) return null; // causal-mask buffers of old checkpoints
    if (name === "lm_head.weight") return null; // tied to wte in GPT2LMHeadModel
    return name;
  }

  #llamaName(raw: string): string | null {
    if (/(^|\.)rotary_emb\.inv_freq$/.test(raw)) return null; // buffer saved by old transformers versions
    if (raw === "lm_head.weight") return this.config.architecture === "llama" && this.config.tieWordEmbeddings ? null : raw;
    // a bare LlamaModel checkpoint (no "model." prefix)
    if (!raw.startsWith("model.") && this.#table.has("model." + raw)) return "model." + raw;
    return raw;
  }

  /** Releases the native model. Views handed out earlier stay readable until they are garbage collected. */
  dispose(): void {
    this.#native?.release();
    this.#native = undefined;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** Runs a native call; the addon's argument errors (token id out of range, sequence too long, …) become EngineArgumentErrors. */
async function engineCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw typedEngineError(e);
  }
}

/** `GPT2Model` is the same class as CausalLMModel (kept for existing code): it loads and creates every architecture. */
export const GPT2Model = CausalLMModel;
export type GPT2Model = CausalLMModel;

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

/** Reads a Hugging Face GPT-2 config.json; anything this engine would run differently is an error naming it. */
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

/** Options of loadModel() and CausalLMModel.load(). */
export interface LoadModelOptions {
  /** float32 (default), bf16 (throws a PrecisionError where the CPU lacks AVX512_BF16) or auto; see setPrecision. */
  precision?: PrecisionOption;
}

function withPrecision(model: CausalLMModel, precision: Precision): CausalLMModel {
  try {
    if (precision !== "float32") model.setPrecision(precision);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/** What loadModel() returns; dispose() releases the native model. */
export interface LoadedModel {
  model: CausalLMModel;
  /** From tokenizer.json in the folder, or from a GGUF file's metadata; null when a folder has no tokenizer.json. */
  tokenizer: Tokenizer | null;
  config: ModelConfig;
  dispose(): void;
  [Symbol.dispose](): void;
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

/**
 * Loads a model with its tokenizer: a Hugging Face folder (config.json, model.safetensors or a sharded index, and
 * tokenizer.json if present), a GGUF file or a folder holding one (the tokenizer comes from its metadata), or a
 * known model name whose file is in the cache (`gradmm fetch-model NAME`). Typed errors: UnsupportedModelError,
 * InvalidFileError, ModelNotCachedError, UnknownModelError.
 */
export function loadModel(source: string, options: LoadModelOptions = {}): LoadedModel {
  const precision = resolvePrecision(options.precision, "precision"); // before any reading: a PrecisionError first
  const dir = resolveModelPath(source);
  const gguf = findGGUF(dir);
  if (gguf) {
    const g = readGGUF(gguf);
    const tokenizer = tokenizerFromGGUF(g.metadata, gguf);
    const model = withPrecision(CausalLMModel.loadGGUF(g), precision);
    const dispose = (): void => model.dispose();
    return { model, tokenizer, config: model.config, dispose, [Symbol.dispose]: dispose };
  }
  const tokFile = path.join(dir, "tokenizer.json");
  const tokenizer = fs.existsSync(tokFile) ? Tokenizer.fromFile(tokFile) : null;
  const model = CausalLMModel.load(dir, { precision });
  const dispose = (): void => model.dispose();
  return { model, tokenizer, config: model.config, dispose, [Symbol.dispose]: dispose };
}
