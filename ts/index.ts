/**
 * gradmm: synthetic training text by gradient matching (GRADMM), on a native CPU engine or, where the addon was built
 * with CUDA and a GPU answers, on the GPU (`backendInfo()`).
 *
 * This file is the public API (`import … from "gradmm"`): synthesize a data set from a config, load and run a model,
 * fetch one into the cache, choose threads, and catch typed errors. Every export is documented where it is declared.
 * The engine pieces under it (native handles, checkpoint readers and writers, tokenizer internals, one ADMM batch, DP
 * helpers, report rendering, the queue, pretraining) are in `gradmm/advanced` (ts/advanced.ts); test/api_entry.test.ts
 * lists both entry points' names, so an addition here is a deliberate one.
 */

// ---- the method: a config in, synthetic data out ----
export { synthesize, validateRun, type SynthOptions, type SynthProgress, type SynthResult } from "./gradmm/synthesize";
export { loadConfigFile, parseConfig, type SynthConfig } from "./gradmm/config";

// ---- models ----
export {
  CausalLMModel,
  KVCache,
  type CallOptions,
  type ModelInput,
  type ForwardOptions,
  type BackwardOptions,
  type AdamWOptions,
} from "./model";
export {
  readModelConfig,
  type GPT2Config,
  type LlamaConfig,
  type PhiConfig,
  type Gemma3Config,
  type ModelConfig,
  type ModelConfigInput,
} from "./model_config";
export { loadModel, type LoadedModel, type LoadModelOptions } from "./load_model";
export { Tokenizer, type EncodeOptions, type DecodeOptions } from "./tokenizer";
export { listCachedModels, KNOWN_MODELS, type KnownModel, type CachedModel } from "./registry";
export { fetchModel, type FetchOptions, type FetchProgress } from "./fetch_model";

// ---- the machine ----
export { setThreads, getThreads, backendInfo, type BackendInfo, bf16Support, type Bf16Support, type Precision, type PrecisionOption } from "./threads";

// ---- errors: every one a GradmmError with a stable `code` ----
export {
  GradmmError,
  InvalidFileError,
  ConfigError,
  InvalidDataError,
  InvalidCheckpointError,
  OutputError,
  ResourceLimitError,
  EngineArgumentError,
  UnsupportedModelError,
  DisposedError,
  NoBinaryFoundError,
  AbortError,
  UnknownModelError,
  ModelNotCachedError,
  ModelFetchError,
  PrecisionError,
  type ConfigIssue,
} from "./errors";
export { OutputExistsError } from "./gradmm/output";
