/**
 * gradmm: synthetic training text by gradient matching (GRADMM), on a native CPU engine or, where the addon was built
 * with CUDA and a GPU answers, on the GPU (`backendInfo()`).
 * This file is the public API; everything exported here is typed and documented.
 */
export * from "./errors";
export { setThreads, getThreads, sgemmKernel, backendInfo, type BackendInfo, bf16Support, resolvePrecision, type Precision, type PrecisionOption, type Bf16Support } from "./threads";
export {
  CausalLMModel,
  GPT2Model,
  KVCache,
  loadModel,
  readGPT2Config,
  readModelConfig,
  type GPT2Config,
  type LlamaConfig,
  type ModelConfig,
  type ModelConfigInput,
  type LoadedModel,
  type LoadModelOptions,
  type CallOptions,
  type ModelInput,
  type ForwardOptions,
  type BackwardOptions,
  type AdamWOptions,
} from "./model";
export {
  openSafetensors,
  openSafetensorsDir,
  readSafetensorsHeader,
  writeSafetensors,
  type SafetensorsReader,
  type WritableTensor,
} from "./safetensors";
export { Tokenizer, alphabeticTokenMask } from "./tokenizer";
export { trainByteLevelBPE, writeTokenizerJson } from "./tokenizer/train";

// ---- the method (GRADMM) ----
export {
  synthesize,
  validateRun,
  checkOutputDir,
  readCheckpoint,
  removePreviousRun,
  memoryEstimate,
  OutputExistsError,
  type SynthOptions,
  type SynthProgress,
  type SynthResult,
} from "./gradmm/synthesize";
export { strictObject, parseWithSchema, formatZodIssues, didYouMean, unknownKeyMessage } from "./strict";
export { loadConfigFile, parseConfig, configSchema, applyOverrides, type SynthConfig } from "./gradmm/config";
export { runBatch, type BatchResult, type BatchSettings, type BatchProgress, type ClassSetup } from "./gradmm/method";
export { filterSamples, classifyByLabelWord, type SyntheticSample, type FilterOptions, type FilterDecision } from "./gradmm/filter";
export { renderRunReport, writeRunReport } from "./report/run";
export { proposeConfig, starterConfigYaml, type InitProposal } from "./gradmm/init";
export { dpParameters, classicGaussianSigma, analyticGaussianSigma, type DPParameters } from "./gradmm/dp";
