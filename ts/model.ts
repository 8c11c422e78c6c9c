/**
 * Causal language models on the native engine: GPT-2, the Llama family (Llama, Qwen2, Mistral without sliding
 * windows, Phi-3), Phi and Gemma 3 (text). Creation, loading from a Hugging Face folder or a GGUF file, forward/backward, AdamW, and KV-cached
 * decoding. Every heavy call is a Promise run off the main thread and takes an AbortSignal. Config reading lives in
 * model_config.ts, loadModel (model + tokenizer) in load_model.ts.
 */
import { withCancel } from "./abort";
import { DisposedError, InvalidFileError, typedEngineError } from "./errors";
import { native, type NativeKVCache, type NativeModel, type NativeParamInfo } from "./native";
import { gaussian, mulberry32 } from "./random";
import { openSafetensorsDir } from "./safetensors";
import { readGGUF, type GGUFFile } from "./gguf";
import { ggufModelConfig, loadGGUFWeights } from "./gguf_model";
import { findGGUF, readModelConfig, type ModelConfig, type ModelConfigInput } from "./model_config";
import { resolveModelPath } from "./registry";
import { resolvePrecision, type Precision, type PrecisionOption } from "./threads";

/** Options every heavy model call takes. */
export interface CallOptions {
  /** Aborting it stops the native call at its next check and rejects with AbortError. */
  signal?: AbortSignal;
}

/** A forward's input: token ids [B*T], or input embeddings [B*T*C] (for gradients with respect to them). */
export type ModelInput = { tokens: Int32Array; embeds?: undefined } | { embeds: Float32Array; tokens?: undefined };

/** Arguments of CausalLMModel.forward. */
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

/** Arguments of CausalLMModel.backward (after a forward that kept its activations). */
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

/** Arguments of CausalLMModel.adamw (one AdamW step over the accumulated parameter gradients). */
export interface AdamWOptions {
  /** Learning rate. */
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
    const full: ModelConfig =
      config.architecture === "llama" || config.architecture === "phi" || config.architecture === "gemma3"
        ? { ...config }
        : { ...config, architecture: "gpt2" };
    return new CausalLMModel(full);
  }

  /**
   * Loads a model from a Hugging Face folder (config.json + model.safetensors or a sharded index: GPT2LMHeadModel,
   * LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM, Phi3ForCausalLM, PhiForCausalLM or Gemma3ForCausalLM; see readModelConfig), or from a GGUF file (or a
   * folder holding one and no config.json): architectures llama, qwen2, gpt2, phi2, phi3 and gemma3, weights of type F32, F16, BF16,
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
    return this.config.architecture !== "gpt2" ? "model.embed_tokens.weight" : "wte.weight";
  }

  /** Name of the lm_head weight [V, C] (the embedding matrix when tied). */
  get lmHeadName(): string {
    return this.config.architecture !== "gpt2" && !this.config.tieWordEmbeddings ? "lm_head.weight" : this.inputEmbeddingName;
  }

  /** Name of the lm_head bias [V], or null (only Phi has one). */
  get lmHeadBiasName(): string | null {
    return this.config.architecture === "phi" ? "lm_head.bias" : null;
  }

  /** View of the input token-embedding matrix [V, C] (no copy). */
  inputEmbeddings(): Float32Array {
    return this.tensor(this.inputEmbeddingName);
  }

  /**
   * What a token lookup multiplies the embedding rows by: Gemma 3's sqrt(channels) rounded to float32, 1 for every
   * other architecture. Input embeddings given to forward/decode/matchLoss are used as given, so the input embedding
   * of token t is `inputEmbeddingScale · inputEmbeddings()[t]` (`tokenEmbeddings`).
   */
  get inputEmbeddingScale(): number {
    return this.config.architecture === "gemma3" ? Math.fround(Math.sqrt(this.config.channels)) : 1;
  }

  /** The input embeddings of `tokens` [tokens.length, C], as a forward with token ids sees them (scaled: see inputEmbeddingScale). */
  tokenEmbeddings(tokens: ArrayLike<number>, out?: Float32Array): Float32Array {
    const C = this.config.channels, table = this.inputEmbeddings(), scale = this.inputEmbeddingScale;
    const dst = out ?? new Float32Array(tokens.length * C);
    for (let i = 0; i < tokens.length; i++) {
      const row = table.subarray(tokens[i] * C, (tokens[i] + 1) * C);
      if (scale === 1) dst.set(row, i * C);
      else for (let c = 0; c < C; c++) dst[i * C + c] = Math.fround(row[c] * scale);
    }
    return dst;
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
   * Llama (HF `_init_weights`): N(0, 0.02) weights, zero biases, unit RMSNorm weights. Gemma 3: the same with zero
   * norm weights (they scale by 1 + w).
   */
  initRandom(seed: number): void {
    const rng = mulberry32(seed);
    const projStd = 0.02 / Math.sqrt(2 * this.config.numLayers);
    const llama = this.config.architecture !== "gpt2";
    for (const p of this.#table.values()) {
      const t = this.tensor(p.name);
      if (llama ? p.name.endsWith("norm.weight") : p.name.includes("ln_"))
        t.fill(p.name.endsWith(".weight") && this.config.architecture !== "gemma3" ? 1 : 0);
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
    const kinds = { llama: "Llama-family", phi: "Phi", gemma3: "Gemma 3", gpt2: "GPT-2" } as const;
    const kind = kinds[this.config.architecture];
    try {
      const seen = new Set<string>();
      for (const raw of reader.names()) {
        const name = this.config.architecture !== "gpt2" ? this.#llamaName(raw) : this.#gpt2Name(raw);
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
    if (raw === "lm_head.weight") return this.config.architecture !== "gpt2" && this.config.tieWordEmbeddings ? null : raw;
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

/**
 * The same class as CausalLMModel under its old name (it loads and creates every architecture).
 * @deprecated Use `CausalLMModel`; this alias is exported from `gradmm/advanced` only.
 */
export const GPT2Model = CausalLMModel;
/** @deprecated Use `CausalLMModel`. */
export type GPT2Model = CausalLMModel;

/** Options of loadModel() and CausalLMModel.load(). */
export interface LoadModelOptions {
  /** float32 (default), bf16 (throws a PrecisionError where the CPU lacks AVX512_BF16) or auto; see setPrecision. */
  precision?: PrecisionOption;
}

/** @internal The model with the precision set (disposed if that throws). */
export function withPrecision(model: CausalLMModel, precision: Precision): CausalLMModel {
  try {
    if (precision !== "float32") model.setPrecision(precision);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
