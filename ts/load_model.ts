/** loadModel: a model and its tokenizer from a Hugging Face folder, a GGUF file or a cached model's name. */
import * as fs from "node:fs";
import * as path from "node:path";
import { readGGUF } from "./gguf";
import { CausalLMModel, withPrecision, type LoadModelOptions } from "./model";
import { resolvePrecision } from "./threads";
import { findGGUF, type ModelConfig } from "./model_config";
import { resolveModelPath } from "./registry";
import { Tokenizer } from "./tokenizer";
import { tokenizerFromGGUF } from "./tokenizer/gguf";

export { type LoadModelOptions } from "./model";

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
 * Loads a model with its tokenizer: a Hugging Face folder (config.json, model.safetensors or a sharded index, and
 * tokenizer.json if present), a GGUF file or a folder holding one (the tokenizer comes from its metadata), or a
 * known model name whose file is in the cache (`gradmm fetch-model NAME`). Typed errors: UnsupportedModelError,
 * InvalidFileError, ModelNotCachedError, UnknownModelError; `options.precision` (float32, bf16, auto: see
 * CausalLMModel.setPrecision) bf16 where it cannot run: PrecisionError, before anything is read.
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
