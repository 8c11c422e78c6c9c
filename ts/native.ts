/**
 * The boundary with the C++ addon (binding/src/addon.cpp): one hand-written type of everything it exports,
 * and the loader. Nothing else in the library touches the addon without going through these types.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { NoBinaryFoundError } from "./errors";

export interface NativeGPT2Config {
  vocabSize: number;
  maxSeqLen: number;
  channels: number;
  numLayers: number;
  numHeads: number;
  layerNormEps?: number;
}

/** Llama family (LlamaForCausalLM; Qwen2 / Mistral map onto it). Field names follow NativeGPT2Config where shared. */
export interface NativeLlamaConfig {
  vocabSize: number;
  /** max_position_embeddings */
  maxSeqLen: number;
  /** hidden_size */
  channels: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** num_key_value_heads (default numHeads) */
  numKvHeads?: number;
  /** head_dim (default channels / numHeads) */
  headDim?: number;
  rmsNormEps?: number;
  ropeTheta?: number;
  ropeScaling?: NativeRopeScaling | null;
  tieWordEmbeddings?: boolean;
  /** Biases on q_proj, k_proj, v_proj. */
  attentionBias?: boolean;
  /** Bias on o_proj (HF Llama's attention_bias sets this too; Qwen2 does not). */
  oProjBias?: boolean;
  /** Biases on gate_proj, up_proj, down_proj. */
  mlpBias?: boolean;
  /** Phi-3's fused self_attn.qkv_proj and mlp.gate_up_proj tensors (no biases) instead of q/k/v and gate/up. */
  fusedQkvGateUp?: boolean;
}

/** Rotary frequency adjustments of the Llama family. */
export type NativeRopeScaling = NativeLlama3RopeScaling | NativeLongRopeScaling;

/** Llama-3 rotary frequency adjustment (HF rope_scaling with rope_type "llama3"). */
export interface NativeLlama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * Phi-3's LongRoPE (HF rope_type "longrope"), run up to originalMaxPositionEmbeddings: the inverse frequencies divided
 * by shortFactor [head_dim / 2], cos and sin multiplied by attentionFactor. Longer sequences (where HF switches to
 * longFactor) are refused by the engine.
 */
export interface NativeLongRopeScaling {
  type: "longrope";
  shortFactor: number[];
  longFactor: number[];
  attentionFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** Phi (PhiForCausalLM): parallel attention/MLP behind one LayerNorm, partial rotary, lm_head with a bias. */
export interface NativePhiConfig {
  vocabSize: number;
  maxSeqLen: number;
  channels: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads?: number;
  /** Rotated channels per q/k head: int(head_dim · partial_rotary_factor) (default head_dim). */
  rotaryDim?: number;
  layerNormEps?: number;
  ropeTheta?: number;
  tieWordEmbeddings?: boolean;
}

/**
 * Gemma 3 text models (Gemma3ForCausalLM): sqrt(channels)-scaled token embeddings, four (1 + w) RMSNorms per block,
 * per-head q/k RMSNorms, GeGLU (tanh) MLP, sliding-window and full attention layers with their own rotary bases.
 */
export interface NativeGemma3Config {
  vocabSize: number;
  maxSeqLen: number;
  channels: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads?: number;
  /** head_dim (default channels / numHeads; Gemma 3 sets it). */
  headDim?: number;
  rmsNormEps?: number;
  /** Rotary base of the full-attention layers (HF rope_parameters.full_attention.rope_theta; default 1e6). */
  ropeTheta?: number;
  /** Rotary base of the sliding-window layers (rope_parameters.sliding_attention.rope_theta; default 1e4). */
  ropeLocalTheta?: number;
  /** Linear rope scaling of the full layers (inv_freq / factor; 1 = none). */
  ropeScalingFactor?: number;
  /** Linear rope scaling of the sliding layers (1 = none). */
  ropeLocalScalingFactor?: number;
  /** The sliding layers' window: key j is visible from query i when i − window < j ≤ i. */
  slidingWindow?: number | null;
  /** Each layer's attention (default: all full). */
  layerTypes?: ("sliding_attention" | "full_attention")[];
  /** Scores are scaled by queryPreAttnScalar^-1/2; the engine runs head_dim only (the default). */
  queryPreAttnScalar?: number;
  /** Default true (Gemma 3 ties its lm_head). */
  tieWordEmbeddings?: boolean;
}

export type NativeModelConfig =
  | (NativeGPT2Config & { architecture?: "gpt2" })
  | (NativeLlamaConfig & { architecture: "llama" })
  | (NativePhiConfig & { architecture: "phi" })
  | (NativeGemma3Config & { architecture: "gemma3" });

export interface NativeParamInfo {
  name: string;
  offset: number;
  shape: number[];
}

export interface NativeForwardArgs {
  tokens?: Int32Array;
  embeds?: Float32Array;
  B: number;
  T: number;
  targets?: Int32Array;
  lossMask?: Float32Array;
  allLogits?: boolean;
  keepActivations?: boolean;
}

export interface NativeBackwardArgs {
  fromLoss?: boolean;
  dLogits?: Float32Array;
  dHidden?: Float32Array;
  paramGrads?: boolean;
  dEmbeds?: Float32Array;
}

export interface NativeAdamWArgs {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  step: number;
}

export interface NativeCancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

export interface NativeKVCache {
  readonly length: number;
  readonly rows: number;
  readonly capacity: number;
  reset(): void;
}

export interface NativeMatchTarget {
  /** ‖G_target‖ (noise included). */
  readonly norm: number;
  /** Number of real examples. */
  readonly count: number;
  /** ‖a_i h_iᵀ‖ of each real example before clipping. */
  exampleNorms(): Float32Array;
}

export interface NativeBuildTargetArgs {
  tokens: Int32Array;
  n: number;
  T: number;
  lastPos: Int32Array;
  labels: Int32Array;
  clipNorm?: number;
  noiseStd?: number;
  noiseSeed?: number;
  /** Tokens (rows × T) per forward while building the target (default 4096): bounds the activations held at once. */
  chunkTokens?: number;
  /**
   * The lm_head rows (token ids, distinct) the target and every match against it are restricted to
   * (method.target_rows label_words); absent or empty: all rows. Clipping and DP noise then cover those rows only.
   */
  rows?: Int32Array;
}

export interface NativeMatchLossArgs {
  X: Float32Array;
  B: number;
  L: number;
  label: number;
  dX?: Float32Array;
  perSample?: Float32Array;
}

/** One batch's x-update: `steps` Adam steps on f(x) + ρ/2‖x − z + λ/ρ‖² (the batch's state stays native). */
export interface NativeXUpdateArgs {
  steps: number;
  rho: number;
  lr: number;
  maxGradNorm: number;
  /** f before each step, written when given [steps]. */
  losses?: Float32Array;
}

/**
 * The shape of a batch's state (binding/engine/batch.h): B rows of L positions: the lead tokens (pinned), freeLen
 * free positions, the template (pinned).
 */
export interface NativeBatchArgs {
  B: number;
  L: number;
  freeLen: number;
  label: number;
  /** The template's token ids [L − freeLen − lead]. */
  templateTokens: Int32Array;
  /** Pinned tokens before the free positions (the tokenizer's <bos>, where it starts every text with one); default none. */
  leadTokens?: Int32Array;
}

/** z ← Π(x + λ/ρ) (from "dual") or Π(best x) (from "best"); the chosen ids to outTokens [B·freeLen]. */
export interface NativeBatchProjectArgs {
  from: "dual" | "best";
  rho: number;
  allowed: Uint8Array;
  topk: number;
  prefix: NativeKVCache;
  prefixLogits: Float32Array;
  outTokens: Int32Array;
}

/**
 * One batch's ADMM state (x, z, λ, the Adam moments of x, the best x) held by the engine on the model's backend for
 * the whole batch: no call moves these tensors between JavaScript and the backend.
 */
export interface NativeBatch {
  /**
   * x ← the best of `candidates` random batches (token vectors of norm tokenNorm · the model's input-embedding scale,
   * the template's scaled rows after them); returns its f.
   */
  init(args: { candidates: number; seed: number; tokenNorm: number }, cancel?: NativeCancelToken): Promise<number>;
  /** x ← argmin f(x) + ρ/2‖x − z + λ/ρ‖² by Adam; returns f(x) after the steps. */
  xUpdate(args: NativeXUpdateArgs, cancel?: NativeCancelToken): Promise<number>;
  /** z ← the projection (the z lookup of the chosen ids happens natively). */
  project(args: NativeBatchProjectArgs, cancel?: NativeCancelToken): Promise<void>;
  /** f(z), and each row's own 1 − cos to perSample [B] when given. */
  zLoss(args?: { perSample?: Float32Array }, cancel?: NativeCancelToken): Promise<number>;
  /** λ ← λ + ρ(x − z) on the free positions. */
  dualUpdate(args: { rho: number }): Promise<void>;
  /** best x ← x. */
  keepBest(): Promise<void>;
  /** A copy of a piece of the state [B·L·C] (tests, inspection). */
  read(which: "x" | "z" | "lam" | "m" | "v" | "best"): Float32Array;
  /** Sets a piece of the state (a benchmark's or test's starting point). */
  write(which: "x" | "z" | "lam" | "m" | "v" | "best", data: Float32Array): void;
  /** Adam steps taken on x so far. */
  readonly adamStep: number;
}

export interface NativeProjectArgs {
  U: Float32Array;
  B: number;
  L: number;
  freeLen: number;
  allowed: Uint8Array;
  topk: number;
  prefix: NativeKVCache;
  prefixLogits: Float32Array;
  outTokens: Int32Array;
}

export interface NativeGPT2Model {
  paramTable(): NativeParamInfo[];
  params(): Float32Array;
  grads(): Float32Array;
  zeroGrads(): void;
  adamMoments(): { m: Float32Array; v: Float32Array };
  forward(args: NativeForwardArgs, cancel?: NativeCancelToken): Promise<number>;
  backward(args: NativeBackwardArgs, cancel?: NativeCancelToken): Promise<void>;
  logits(): Float32Array;
  selectedRows(): Int32Array;
  hidden(): Float32Array;
  adamwStep(args: NativeAdamWArgs): Promise<number>;
  decode(
    cache: NativeKVCache,
    input: { tokens?: Int32Array; embeds?: Float32Array; T: number },
    logitsOut?: Float32Array,
    hiddenOut?: Float32Array,
    cancel?: NativeCancelToken,
  ): Promise<void>;
  release(): void;
  buildTarget(args: NativeBuildTargetArgs, cancel?: NativeCancelToken): Promise<NativeMatchTarget>;
  /**
   * method.objective whitened_contrastive (ours): from each class's plain target (no DP, no rows), every class's
   * target for 1 − cos(W(G_syn) − M, W(T_k) − M), W the diagonal whitening (shrinkage in [0, 1]) and M the mean of
   * the whitened class targets (binding/src/gradmatch.h).
   */
  whitenedContrastiveTargets(targets: NativeMatchTarget[], shrinkage: number): Promise<NativeMatchTarget[]>;
  matchLoss(target: NativeMatchTarget, args: NativeMatchLossArgs, cancel?: NativeCancelToken): Promise<number>;
  project(args: NativeProjectArgs, cancel?: NativeCancelToken): Promise<void>;
  /**
   * The parameters (or gradients / Adam moments, through their views) were written from JavaScript: a device copy
   * re-uploads them before its next use.
   */
  paramsChanged(): void;
  /** Copies to the host whatever a device copy has newer (parameters after device training steps, gradients, moments). */
  syncHost(): void;
  /** The big products in f32 or on a bf16 copy of the weight matrices (binding/engine/model.h Precision). */
  setPrecision(precision: "float32" | "bf16"): void;
  /** The precision, the bf16 kernel's name (null in float32) and the bf16 copy's bytes (0 until first used). */
  precision(): { precision: "float32" | "bf16"; kernel: string | null; bf16Bytes: number };
}

/** The native model handle is the same for every architecture (binding/engine/model.h). */
export type NativeModel = NativeGPT2Model;

/** What `backendInfo()` reports: the backend the engine would use (CUDA when compiled in and a device answers). */
export interface NativeBackendInfo {
  /** The addon was built with the CUDA backend (nvcc found, GRADMM_CUDA not OFF). */
  compiled: boolean;
  /** CUDA devices found by the probe (empty when not compiled, none found, or GRADMM_BACKEND=cpu). */
  devices: { name: string; memory: number; computeCapability: string }[];
  chosen: "cuda" | "cpu" | "cpu-table";
  reason: string;
  /** Present when CUDA is chosen: what of the engine runs on it. */
  note?: string;
  /** How the chosen backend runs the large matrix products (the CPU's SGEMM kernel, cuBLAS, ...). */
  products: string;
  build: { cuda: boolean; cublas: boolean; archs: string; cudaRuntime: string | null };
  /**
   * bf16 products (a model's precision "bf16"): `available` on this backend at all, `native` on bf16 hardware
   * (AVX512_BF16), `cpuAvx512bf16` what CPUID says, `kernel` the bf16 kernel ("avx512bf16" or the portable
   * "bf16-scalar"; null without bf16 products).
   */
  bf16: { available: boolean; native: boolean; cpuAvx512bf16: boolean; kernel: string | null };
}

export interface NativeModule {
  Model: new (config: NativeModelConfig) => NativeModel;
  KVCache: new (model: NativeGPT2Model, rows: number, capacity: number, prefix?: NativeKVCache) => NativeKVCache;
  Batch: new (model: NativeGPT2Model, target: NativeMatchTarget, args: NativeBatchArgs) => NativeBatch;
  CancelToken: new () => NativeCancelToken;
  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number, accumulate: boolean,
  ): void;
  setThreads(n: number): void;
  getThreads(): number;
  sgemmKernel(): string;
  forceSgemmKernel(name: "auto" | "scalar" | "avx2" | "avx512"): boolean;
  /** The bf16 kernel for every later bf16 product (benchmarks, tests); false where this CPU or build lacks it. */
  forceBf16Kernel(name: "auto" | "scalar" | "avx512bf16" | "amx-bf16"): boolean;
  /** Backend choice: GRADMM_BACKEND=cpu|cuda forces one; a fallback to the CPU prints one stderr line, once. */
  backendInfo(): NativeBackendInfo;
  /** GGUF block data (ggml type id) to float32, bit-identical to gguf.quants.dequantize; throws RangeError on bad sizes. */
  dequantize(type: number, src: Uint8Array, dst: Float32Array): void;
}

let cached: NativeModule | undefined;

/** Root of the package (where package.json and build/ live), from both ts/ (vitest) and dist/ts/ (compiled). */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    dir = path.dirname(dir);
  }
  throw new NoBinaryFoundError(`package root not found above ${__dirname}`);
}

/** Loads the addon once. GRADMM_THREADS (if set) fixes the thread count; otherwise all cores are used. */
export function native(): NativeModule {
  if (cached) return cached;
  const file = path.join(packageRoot(), "build", "Release", "gradmm.node");
  if (!fs.existsSync(file)) throw new NoBinaryFoundError(`${file} does not exist`);
  try {
    cached = require(file) as NativeModule;
  } catch (e) {
    throw new NoBinaryFoundError(`${file} failed to load: ${(e as Error).message}`, { cause: e });
  }
  const envThreads = process.env.GRADMM_THREADS;
  if (envThreads !== undefined && envThreads !== "") cached.setThreads(Number.parseInt(envThreads, 10) || 0);
  return cached;
}
