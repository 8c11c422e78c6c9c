/**
 * The seam between `synthesize()` and a runner of its batches elsewhere (ts/queue/coordinator.ts: BullMQ workers).
 * synthesize() prepares everything (validation, the class targets) and hands the runner the batches the checkpoint
 * lacks; the runner stores each finished batch with `store` and returns when every one is stored (or throws). The
 * filter, the statistics and the output files are then made exactly as in a one-machine run.
 */
import type { NativeBuildTargetArgs } from "../native";
import type { Tokenizer } from "../tokenizer";
import type { SynthConfig } from "./config";
import type { BatchResult } from "./method";
import type { SynthProgress } from "./synthesize";

/** One unit of work: class k, ρ index r, batch b; key "k/r/b" (the checkpoint's key). */
export interface BatchJob {
  k: number;
  r: number;
  b: number;
  key: string;
}

/** What a batch leaves in the checkpoint (as in synthesize.ts). */
export interface StoredBatchResult extends BatchResult {
  texts: string[];
  perplexity: number[];
  seconds: number;
}

export interface BatchRunContext {
  config: SynthConfig;
  /** The checkpoint's fingerprint: config (minus output/threads), model and data contents. */
  fingerprint: string;
  /** Every batch of the run, and which of them the checkpoint already holds. */
  jobs: BatchJob[];
  missing: BatchJob[];
  /** Per class: what its target is built from (deterministic, DP noise seed included) and its free length. */
  classes: { name: string; freeLen: number; targetArgs: NativeBuildTargetArgs }[];
  tokenizer: Tokenizer;
  vocabSize: number;
  signal?: AbortSignal;
  onProgress?: (p: SynthProgress) => void;
  /** Records a finished batch in the checkpoint (in memory). */
  store(key: string, batch: StoredBatchResult): void;
  /** Writes the checkpoint file (atomically). */
  saveCheckpoint(): void;
}

export type BatchRunner = (ctx: BatchRunContext) => Promise<void>;
