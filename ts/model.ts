/**
 * GPT-2 family models on the native engine: creation, loading from a Hugging Face folder, forward/backward,
 * AdamW, and KV-cached decoding. Every heavy call is a Promise run off the main thread and takes an AbortSignal.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { withCancel } from "./abort";
import { DisposedError, InvalidFileError, UnsupportedModelError } from "./errors";
import {
  native,
  type NativeGPT2Config,
  type NativeGPT2Model,
  type NativeKVCache,
  type NativeParamInfo,
} from "./native";
import { openSafetensorsDir } from "./safetensors";

export interface GPT2Config extends NativeGPT2Config {
  architecture: "gpt2";
}

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
  /** @internal */ readonly owner: GPT2Model;
  constructor(owner: GPT2Model, handle: NativeKVCache) {
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

export class GPT2Model {
  readonly config: GPT2Config;
  #native: NativeGPT2Model | undefined;
  #params: Float32Array;
  #table: Map<string, NativeParamInfo>;

  private constructor(config: GPT2Config) {
    this.config = config;
    this.#native = new (native().Model)(config);
    this.#params = this.#native.params();
    this.#table = new Map(this.#native.paramTable().map((p) => [p.name, p]));
  }

  /** A model with all parameters zero; fill them through `params` / `tensor()` or `initRandom()`. */
  static create(config: Omit<GPT2Config, "architecture"> & { architecture?: "gpt2" }): GPT2Model {
    return new GPT2Model({ ...config, architecture: "gpt2" });
  }

  /** Loads config.json + model.safetensors (or a sharded index) from a Hugging Face GPT-2 folder. */
  static load(dir: string): GPT2Model {
    const config = readGPT2Config(dir);
    const model = GPT2Model.create(config);
    try {
      model.loadWeights(dir);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  private get handle(): NativeGPT2Model {
    if (!this.#native) throw new DisposedError("GPT2Model");
    return this.#native;
  }

  /** All parameters, one contiguous Float32Array over native memory (no copy). */
  get params(): Float32Array {
    this.handle;
    return this.#params;
  }

  get numParams(): number {
    return this.#params.length;
  }

  /** Names and shapes of the parameters, as in Hugging Face checkpoints (Conv1D weights stored [in, out]). */
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

  /** Gradient buffer (same layout as params), allocated on first use. */
  grads(): Float32Array {
    return this.handle.grads();
  }

  zeroGrads(): void {
    this.handle.zeroGrads();
  }

  /** GPT-2 initialisation: N(0, 0.02) weights (residual projections scaled by 1/sqrt(2L)), zero biases, unit LN. */
  initRandom(seed: number): void {
    const rng = mulberry32(seed);
    const projStd = 0.02 / Math.sqrt(2 * this.config.numLayers);
    for (const p of this.#table.values()) {
      const t = this.tensor(p.name);
      if (p.name.includes("ln_")) t.fill(p.name.endsWith(".weight") ? 1 : 0);
      else if (p.name.endsWith(".bias")) t.fill(0);
      else {
        const std = p.name.endsWith("c_proj.weight") ? projStd : p.name === "wpe.weight" ? 0.01 : 0.02;
        for (let i = 0; i < t.length; i++) t[i] = gaussian(rng) * std;
      }
    }
  }

  /** Mean cross-entropy over the masked positions (NaN without targets). Activations are kept for backward(). */
  forward(opts: ForwardOptions): Promise<number> {
    const h = this.handle;
    const { signal, ...args } = opts;
    return withCancel(signal, (token) => h.forward(args, token));
  }

  backward(opts: BackwardOptions = {}): Promise<void> {
    const h = this.handle;
    const { signal, ...args } = opts;
    return withCancel(signal, (token) => h.backward(args, token));
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
    return this.handle.adamwStep(opts);
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
    await withCancel(opts.signal, (token) => h.decode(cache.handle, input, logits, opts.hidden, token));
    return logits;
  }

  /** @internal The native handle, for the method code in ts/gradmm (throws DisposedError after dispose()). */
  get native(): NativeGPT2Model {
    return this.handle;
  }

  /** Copies weights from a Hugging Face GPT-2 checkpoint folder (or one .safetensors file) into this model. */
  loadWeights(source: string): void {
    const reader = openSafetensorsDir(source);
    try {
      const seen = new Set<string>();
      for (const raw of reader.names()) {
        const name = raw.startsWith("transformer.") ? raw.slice("transformer.".length) : raw;
        if (/^h\.\d+\.attn\.(masked_)?bias$/.test(name)) continue; // causal-mask buffers of old checkpoints
        if (name === "lm_head.weight") continue; // tied to wte in GPT2LMHeadModel
        const info = this.#table.get(name);
        if (!info) throw new InvalidFileError(reader.path, `unexpected tensor '${raw}' for a GPT-2 model`);
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
    }
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

/** Reads a Hugging Face GPT-2 config.json; anything this engine would run differently is an error naming it. */
export function readGPT2Config(dir: string): GPT2Config {
  const file = path.join(dir, "config.json");
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new InvalidFileError(file, `cannot read JSON: ${(e as Error).message}`, { cause: e });
  }
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

/** Small deterministic PRNG (mulberry32) for reproducible initialisation. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sample (Box–Muller) from a uniform generator. */
export function gaussian(rng: () => number): number {
  let u = rng();
  while (u <= 1e-12) u = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}
