/**
 * gradmm: synthetic training text by gradient matching (GRADMM), on a native CPU engine.
 * This file is the public API; everything exported here is typed and documented.
 */
export * from "./errors";
export { setThreads, getThreads, sgemmKernel } from "./threads";
export {
  GPT2Model,
  KVCache,
  readGPT2Config,
  type GPT2Config,
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
