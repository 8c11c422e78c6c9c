/**
 * gradmm/advanced: the engine pieces under the public API (`import … from "gradmm/advanced"`), for benchmarks,
 * pretraining and users who build their own method on the engine. Nothing here repeats an export of `gradmm`
 * (ts/index.ts): import the model classes, loadModel, synthesize, the errors and the types from there.
 * These names may change between minor versions more freely than the public ones; test/api_entry.test.ts lists them.
 */

// ---- the native addon ----
export {
  native,
  packageRoot,
  type NativeModule,
  type NativeModel,
  type NativeModelConfig,
  type NativeKVCache,
  type NativeMatchTarget,
  type NativeBuildTargetArgs,
  type NativeMatchLossArgs,
  type NativeProjectArgs,
  type NativeBatch,
  type NativeBatchArgs,
  type NativeCancelToken,
  type NativeBackendInfo,
} from "./native";
export { withCancel } from "./abort";
export { sgemmKernel } from "./threads";
export { typedEngineError, exitCodeOf, EXIT_CODES } from "./errors";

// ---- models: legacy names, files, formats ----
export { GPT2Model } from "./model";
export { readGPT2Config, findGGUF } from "./model_config";
export { mulberry32, gaussian } from "./random";
export { openSafetensors, openSafetensorsDir, readSafetensorsHeader, type SafetensorsReader } from "./safetensors";
export { writeSafetensors, type WritableTensor } from "./safetensors_write";
export { readGGUF, parseGGUFBuffer, isGGUFFile, type GGUFFile, type GGUFTensorInfo } from "./gguf";
export { cacheRoot, cachedModelFile, resolveModelPath, sha256FileSync } from "./registry";

// ---- tokenizers ----
export { alphabeticTokenMask, tokenizerFromGGUF, gpt2TokenizerJsonFromFiles } from "./tokenizer";
export { trainByteLevelBPE, writeTokenizerJson, type TrainOptions, type TokenizerJson } from "./tokenizer/train";

// ---- the method's pieces (what synthesize runs) ----
export { memoryEstimate } from "./gradmm/synthesize";
export { checkOutputDir, checkpointMatches, fingerprint, fingerprintWithFilter, readCheckpoint, removePreviousRun } from "./gradmm/output";
export { configSchema, applyOverrides } from "./gradmm/config";
export { classTargets, labelWordRows, promptPrefix, runBatch, targetRows, type BatchResult, type BatchSettings, type BatchProgress, type ClassSetup } from "./gradmm/method";
export type { BatchRunner } from "./gradmm/runner";
export {
  filterSamples,
  classifyByLabelWord,
  pickDemonstrations,
  type SyntheticSample,
  type FilterOptions,
  type FilterDecision,
} from "./gradmm/filter";
export { lastPositionLogits, continuationLoss, labelTokens, pieceTokens, startTokens } from "./gradmm/lm";
export { readLabelledFile, shuffled } from "./gradmm/data";
export { dpParameters, classicGaussianSigma, analyticGaussianSigma, type DPParameters } from "./gradmm/dp";
export { proposeConfig, starterConfigYaml, type InitProposal } from "./gradmm/init";

// ---- files, configs, reports ----
export { writeFileAtomic, writeJsonAtomic, writeJsonlAtomic } from "./io";
export { readYamlFile } from "./yaml";
export { strictObject, parseWithSchema, formatZodIssues, didYouMean, unknownKeyMessage } from "./strict";
export { renderRunReport, writeRunReport } from "./report/run";
export { page, figure, vegaLiteSvg, dataTable, kvTable, esc, fmt, type VegaLiteSpec } from "./report/page";

// ---- many machines (BullMQ) ----
export { queueBatchRunner, type QueueRunStats } from "./queue/coordinator";
export { startWorker, type WorkerHandle } from "./queue/worker";
export { QueueError } from "./queue/redis";

// ---- pretraining (ts/pretrain/): last, because those modules import this file (see test/api_entry.test.ts) ----
export { loadPretrainConfig, mlpWidth, type PretrainConfig } from "./pretrain/config";
export { prepareCorpus } from "./pretrain/corpus";
export { prepareData, sequenceWindows, type TokenData } from "./pretrain/data";
export type { RunSummary } from "./pretrain/export";
export { pretrain, evaluateWindows, imdbBitsPerByte, summaryFile, refreshModelCard } from "./pretrain/train";
