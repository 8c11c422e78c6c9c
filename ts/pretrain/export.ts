/** Writes the trained model as a Hugging Face GPT-2 folder, with its tokenizer, training log, loss curve and card. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { CausalLMModel } from "../index";
import {
  type WritableTensor,
  writeFileAtomic,
  writeJsonAtomic,
  writeJsonlAtomic,
  writeSafetensors,
} from "../advanced";
import type { PretrainConfig } from "./config";
import type { CorpusManifest } from "./corpus";
import type { TokenCounts } from "./data";
import { lossCurvePng } from "./plot";
import { modelCard } from "./report";
import type { SourceId } from "./sources";
import type { LogRecord } from "./train";

export interface RunSummary {
  configFile: string;
  /** The command line that produced this run. */
  command: string;
  config: PretrainConfig;
  corpus: CorpusManifest;
  tokens: TokenCounts;
  vocabSize: number;
  numParams: number;
  steps: number;
  stoppedBy: "schedule" | "time" | "signal";
  tokensSeen: number;
  epochs: number;
  /** Wall time of the training loop (periodic evaluations and checkpoints included). */
  minutes: number;
  /** Wall time of the final evaluation and samples (of the latest export). */
  finalEvalMinutes: number;
  sessions: Array<{ fromStep: number; toStep: number; seconds: number; threads: number }>;
  cpu: string;
  finalTrainLoss: number;
  finalTrainLossSteps: number;
  valLoss: number;
  valPerSource: Partial<Record<SourceId, number>>;
  valTokens: number;
  imdb: { bitsPerByte: number; nats: number; tokens: number; bytes: number; reviews: number };
  samples: Array<{ prompt: string; mode: string; text: string }>;
  log: LogRecord[];
}

/** config.json in the transformers format of the model's architecture (no dropout: it was trained without it). */
export function hfConfig(model: CausalLMModel, eosId: number): Record<string, unknown> {
  const c = model.config;
  if (c.architecture === "llama") {
    return {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      vocab_size: c.vocabSize,
      max_position_embeddings: c.maxSeqLen,
      hidden_size: c.channels,
      intermediate_size: c.intermediateSize,
      num_hidden_layers: c.numLayers,
      num_attention_heads: c.numHeads,
      num_key_value_heads: c.numKvHeads ?? c.numHeads,
      hidden_act: "silu",
      rms_norm_eps: c.rmsNormEps ?? 1e-5,
      rope_theta: c.ropeTheta ?? 10000,
      rope_scaling: null,
      attention_bias: false,
      mlp_bias: false,
      attention_dropout: 0,
      initializer_range: 0.02,
      use_cache: true,
      bos_token_id: eosId,
      eos_token_id: eosId,
      tie_word_embeddings: true,
      torch_dtype: "float32",
    };
  }
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: c.vocabSize,
    n_positions: c.maxSeqLen,
    n_ctx: c.maxSeqLen,
    n_embd: c.channels,
    n_layer: c.numLayers,
    n_head: c.numHeads,
    n_inner: null,
    activation_function: "gelu_new",
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    layer_norm_epsilon: c.layerNormEps ?? 1e-5,
    initializer_range: 0.02,
    scale_attn_weights: true,
    use_cache: true,
    bos_token_id: eosId,
    eos_token_id: eosId,
    tie_word_embeddings: true,
    torch_dtype: "float32",
  };
}

/** The model's parameters as safetensors entries, named as `paramTable` gives them (views, no copies). */
export function paramTensors(model: CausalLMModel): Record<string, WritableTensor> {
  const tensors: Record<string, WritableTensor> = {};
  for (const p of model.paramTable) tensors[p.name] = { dtype: "F32", shape: p.shape, data: model.tensor(p.name) };
  return tensors;
}

export function exportModel(outDir: string, model: CausalLMModel, tokenizerFile: string, summary: RunSummary): string {
  fs.mkdirSync(outDir, { recursive: true });
  const tokenizerJson = fs.readFileSync(tokenizerFile);
  const eos = (JSON.parse(tokenizerJson.toString("utf8")) as { added_tokens: Array<{ id: number; content: string }> }).added_tokens.find((a) => a.content === "<|endoftext|>");
  if (!eos) throw new Error(`${tokenizerFile} has no <|endoftext|> token`);
  writeSafetensors(path.join(outDir, "model.safetensors"), paramTensors(model), { format: "pt" });
  writeJsonAtomic(path.join(outDir, "config.json"), hfConfig(model, eos.id));
  writeFileAtomic(path.join(outDir, "tokenizer.json"), tokenizerJson);
  writeCard(outDir, summary);
  return outDir;
}

/** The training log, loss curve and README of a run (rewritable from its saved summary alone). */
export function writeCard(outDir: string, summary: RunSummary): void {
  writeJsonlAtomic(path.join(outDir, "training_log.jsonl"), summary.log);
  const png = lossCurvePng(summary.log);
  if (png) writeFileAtomic(path.join(outDir, "loss.png"), png);
  const section = (name: string) => (fs.existsSync(path.join(outDir, name)) ? fs.readFileSync(path.join(outDir, name), "utf8") : null);
  writeFileAtomic(path.join(outDir, "README.md"), modelCard(summary, { lossPlot: png ? "loss.png" : null, evaluation: section("evaluation.md"), architecture: section("architecture.md") }));
}

