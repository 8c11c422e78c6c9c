/**
 * One batch on a worker, computed exactly as synthesize.ts computes it in a one-machine run: the class setup (target
 * from the published inputs, the instruction's prefix cache, label token, template), then runBatch with the run's
 * settings and the batch's own seed, then the perplexity of each sample after the instruction.
 */
import { withCancel } from "../abort";
import type { SynthConfig } from "../gradmm/config";
import { continuationLoss, labelTokens, pieceTokens, startTokens } from "../gradmm/lm";
import { promptPrefix, runBatch, type BatchProgress, type BatchResult, type ClassSetup } from "../gradmm/method";
import { batchSettings } from "../gradmm/synthesize";
import type { CausalLMModel } from "../model";
import type { NativeMatchTarget } from "../native";
import { alphabeticTokenMask, type Tokenizer } from "../tokenizer";

export type WorkerClass = ClassSetup & { freeLen: number; prompt: number[] };

type MethodConfig = Pick<SynthConfig, "classes" | "template" | "method" | "seed">;

/** The tokens the projection may choose from, as synthesize.ts builds them. */
export function allowedMask(config: MethodConfig, tokenizer: Tokenizer, vocabSize: number): Uint8Array {
  return config.method.allowed_tokens === "alphabetic" ? alphabeticTokenMask(tokenizer) : new Uint8Array(vocabSize).fill(1);
}

/**
 * Class k's setup as synthesize.ts's class loop makes it, with the target from `target` (classTargets of the
 * published target inputs: class k's alone for the paper's objective, every class's for whitened_contrastive).
 */
export async function classSetup(model: CausalLMModel, tokenizer: Tokenizer, config: MethodConfig, k: number, target: () => Promise<NativeMatchTarget>, freeLen: number, signal?: AbortSignal): Promise<WorkerClass> {
  const spec = config.classes[k];
  const templateTokens = pieceTokens(tokenizer, config.template), leadTokens = startTokens(tokenizer);
  const labelToken = labelTokens(tokenizer, config.classes.map((c) => c.label_word))[k];
  const prompt = startTokens(tokenizer, spec.instruction);
  if (prompt.length === leadTokens.length) throw new Error(`classes[${k}].instruction encodes to no tokens`);
  const { prefix, prefixLogits } = await promptPrefix(model, prompt, signal);
  return { labelToken, templateTokens, leadTokens, prefix, prefixLogits, target: await target(), freeLen, prompt };
}

/** Batch (k, r, b): runBatch + the samples' perplexity after the instruction; `seconds` as a local run measures it. */
export async function computeBatch(
  model: CausalLMModel,
  cls: WorkerClass,
  config: MethodConfig,
  allowed: Uint8Array,
  job: { k: number; r: number; b: number },
  opts: { signal?: AbortSignal; onProgress?: (p: BatchProgress) => void } = {},
): Promise<BatchResult & { perplexity: number[]; seconds: number }> {
  const started = Date.now();
  const result = await runBatch(
    model,
    cls,
    batchSettings(config, cls.freeLen, allowed, job),
    opts,
  );
  const losses = await continuationLoss(model, cls.prompt, result.tokens, { signal: opts.signal });
  return { ...result, perplexity: losses.map(Math.exp), seconds: (Date.now() - started) / 1000 };
}
