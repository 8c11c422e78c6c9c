/**
 * The pretraining loop on the native engine: AdamW with linear warmup and cosine decay, periodic validation,
 * atomic checkpoints that `resume` continues from, and at the end the Hugging Face folder with its model card.
 *
 * Checkpoints hold the parameters and the loop state (in the safetensors metadata), and beside them the AdamW
 * moments (tagged with their step, so a moments file newer or older than the parameters is never paired with them):
 * a resumed run continues exactly where it stopped.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { AbortError, CausalLMModel, getThreads, InvalidFileError, type ModelConfigInput, setThreads } from "../index";
import {
  openSafetensors,
  packageRoot,
  sgemmKernel,
  writeFileAtomic,
  writeJsonlAtomic,
  writeSafetensors,
} from "../advanced";
import { loadPretrainConfig, mlpWidth, type PretrainConfig } from "./config";
import { prepareCorpus, type Corpus } from "./corpus";
import { prepareData, runDir, sequenceWindows, streamWindows, WindowSampler, type EvalWindow, type TokenData } from "./data";
import { exportModel, paramTensors, writeCard, type RunSummary } from "./export";
import { modelSamples } from "./sample";
import type { SourceId } from "./sources";

export type PretrainEvent =
  | { type: "log"; message: string }
  | { type: "start"; step: number; plannedSteps: number }
  /** plannedSteps: an estimate when the schedule follows the wall clock. */
  | { type: "step"; step: number; plannedSteps: number; loss: number; lr: number; tokensPerSec: number; elapsedSeconds: number }
  | { type: "eval"; step: number; valLoss: number; perSource: Record<string, number> };

export interface PretrainOptions {
  resume?: boolean;
  /** Overrides train.max_minutes. */
  maxMinutes?: number | null;
  /** Overrides train.max_tokens. */
  maxTokens?: number;
  /** Overrides train.threads (and GRADMM_THREADS). */
  threads?: number;
  signal?: AbortSignal;
  onEvent?: (e: PretrainEvent) => void;
}

/** One line of training_log.jsonl. */
export type LogRecord =
  | { kind: "train"; step: number; tokens: number; loss: number; lr: number; grad_norm: number; tokens_per_sec: number; elapsed_s: number }
  | { kind: "val"; step: number; tokens: number; val_loss: number; per_source: Record<string, number>; elapsed_s: number }
  | { kind: "deadline"; step: number; elapsed_s: number; deadline_s: number };

interface LoopState {
  step: number;
  /** Steps of the schedule (an estimate while a time budget drives it). */
  plannedSteps: number;
  /**
   * With a time budget: the elapsed seconds at which the decay started (end of warmup) and must end (the budget less
   * the estimated final evaluation). The cosine then follows max(step progress, wall-clock progress).
   */
  decayStart: number | null;
  deadline: number | null;
  elapsedSeconds: number;
  fingerprint: string;
  sessions: Array<{ fromStep: number; toStep: number; seconds: number; threads: number }>;
  /** The step at which the current AdamW moments started (their bias correction counts from it); absent = 0. */
  adamFromStep?: number;
}

const CHECKPOINT = "checkpoint.safetensors";
const ADAM_CHECKPOINT = "checkpoint-adam.safetensors";

/** Learning rate at 0-based `step`: linear warmup to `lr`, then cosine decay to lr × min_lr_ratio as `progress` goes 0 → 1. */
export function learningRate(step: number, progress: number, t: PretrainConfig["train"]): number {
  if (step < t.warmup_steps) return (t.lr * (step + 1)) / t.warmup_steps;
  const p = Math.min(1, Math.max(0, progress));
  const min = t.lr * t.min_lr_ratio;
  return min + 0.5 * (t.lr - min) * (1 + Math.cos(Math.PI * p));
}

/** Mean cross-entropy (nats per scored token) over windows, B at a time, and how many tokens it scored. */
export async function evaluateWindows(model: CausalLMModel, windows: EvalWindow[], B: number, T: number, signal?: AbortSignal): Promise<{ nats: number; tokens: number }> {
  const tokens = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Float32Array(B * T);
  let nats = 0;
  let count = 0;
  for (let i = 0; i < windows.length; i += B) {
    const rows = windows.slice(i, i + B);
    tokens.fill(0);
    targets.fill(0);
    mask.fill(0);
    let w = 0;
    rows.forEach((r, b) => {
      tokens.set(r.tokens, b * T);
      targets.set(r.targets, b * T);
      mask.set(r.mask, b * T);
      for (const m of r.mask) w += m;
    });
    if (w === 0) continue;
    const n = rows.length * T;
    const mean = await model.forward({ tokens: tokens.subarray(0, n), targets: targets.subarray(0, n), lossMask: mask.subarray(0, n), B: rows.length, T, signal });
    nats += mean * w;
    count += w;
  }
  return { nats, tokens: count };
}

/** Validation loss per source and the token-weighted mean over sources. */
async function validate(model: CausalLMModel, data: TokenData, cfg: PretrainConfig, maxTokens: number, signal?: AbortSignal) {
  const T = cfg.model.n_ctx;
  const perSource: Record<string, number> = {};
  let nats = 0;
  let tokens = 0;
  for (const [s, stream] of data.val) {
    const r = await evaluateWindows(model, streamWindows(stream, T, maxTokens), cfg.train.batch_size, T, signal);
    perSource[s] = r.nats / r.tokens;
    nats += r.nats;
    tokens += r.tokens;
  }
  return { valLoss: nats / tokens, perSource, tokens };
}

/** Bits per UTF-8 byte of the IMDB evaluation reviews, each scored from an EOT start. */
export async function imdbBitsPerByte(model: CausalLMModel, data: TokenData, B: number, T: number, signal?: AbortSignal) {
  const windows = data.imdbEval.flatMap((r) => sequenceWindows([data.eotId, ...r.ids], T));
  const r = await evaluateWindows(model, windows, B, T, signal);
  const bytes = data.imdbEval.reduce((a, x) => a + Buffer.byteLength(x.text), 0);
  return { bitsPerByte: r.nats / Math.LN2 / bytes, nats: r.nats, tokens: r.tokens, bytes, reviews: data.imdbEval.length };
}

function fingerprint(cfg: PretrainConfig, data: TokenData): string {
  const t = cfg.train;
  return createHash("sha256")
    .update(JSON.stringify([cfg.seed, cfg.model, data.counts.key, t.batch_size, t.lr, t.min_lr_ratio, t.warmup_steps, t.weight_decay, t.beta1, t.beta2, t.grad_clip]))
    .digest("hex")
    .slice(0, 16);
}

function saveCheckpoint(dir: string, model: CausalLMModel, state: LoopState, log: LogRecord[]): void {
  // The log first: a checkpoint never points past the log it belongs to.
  writeJsonlAtomic(path.join(dir, "training_log.jsonl"), log);
  const { m, v } = model.adamMoments();
  writeSafetensors(path.join(dir, ADAM_CHECKPOINT), { "adam.m": { dtype: "F32", shape: [m.length], data: m }, "adam.v": { dtype: "F32", shape: [v.length], data: v } }, { step: String(state.step) });
  writeSafetensors(path.join(dir, CHECKPOINT), paramTensors(model), { format: "pt", gradmm_pretrain_state: JSON.stringify(state) });
}

function loadCheckpoint(dir: string, model: CausalLMModel): { state: LoopState; log: LogRecord[]; momentsRestored: boolean } {
  const file = path.join(dir, CHECKPOINT);
  const reader = openSafetensors(file);
  let state: LoopState;
  try {
    state = JSON.parse(reader.metadata.gradmm_pretrain_state) as LoopState;
  } finally {
    reader.close();
  }
  model.loadWeights(file);
  const adamFile = path.join(dir, ADAM_CHECKPOINT);
  let momentsRestored = false;
  if (fs.existsSync(adamFile)) {
    const adam = openSafetensors(adamFile);
    try {
      if (adam.metadata.step === String(state.step)) {
        const { m, v } = model.adamMoments();
        adam.readF32("adam.m", m);
        adam.readF32("adam.v", v);
        momentsRestored = true;
      }
    } finally {
      adam.close();
    }
  }
  const logFile = path.join(dir, "training_log.jsonl");
  const lines = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").filter((l) => l.trim()) : [];
  const log = (lines.map((l) => JSON.parse(l)) as LogRecord[]).filter((r) => r.step <= state.step);
  return { state, log, momentsRestored };
}

/** The engine config of the recipe's model (GPT-2, or a Llama with tied embeddings and the same parameter count). */
export function modelConfigOf(cfg: PretrainConfig, vocabSize: number): ModelConfigInput {
  const m = cfg.model;
  const shared = { vocabSize, maxSeqLen: m.n_ctx, channels: m.n_embd, numLayers: m.n_layer, numHeads: m.n_head };
  if (m.architecture === "gpt2") {
    if (m.intermediate_size !== null && m.intermediate_size !== 4 * m.n_embd) throw new InvalidFileError(cfg.resolved.configFile, `model.intermediate_size: GPT-2 uses 4·n_embd (${4 * m.n_embd})`);
    return shared;
  }
  return { ...shared, architecture: "llama", intermediateSize: mlpWidth(m), tieWordEmbeddings: true, ropeTheta: 10000, rmsNormEps: 1e-5 };
}

/** Where the last run's summary is kept (the model card can be rewritten from it: `--card-only`). */
export function summaryFile(cfg: PretrainConfig): string {
  return path.join(runDir(cfg), "run_summary.json");
}

export interface PretrainResult extends RunSummary {
  outDir: string;
}

/** Runs the whole recipe: corpus, tokenizer, training (or its continuation), evaluation and export. */
export async function pretrain(cfg: PretrainConfig, opts: PretrainOptions = {}): Promise<PretrainResult> {
  const emit = opts.onEvent ?? (() => {});
  const log = (message: string) => emit({ type: "log", message });
  const t = { ...cfg.train };
  if (opts.maxMinutes !== undefined) t.max_minutes = opts.maxMinutes;
  if (opts.maxTokens !== undefined) t.max_tokens = opts.maxTokens;
  if (opts.threads !== undefined) setThreads(opts.threads);
  else if (!process.env.GRADMM_THREADS) setThreads(t.threads);
  const threads = getThreads();

  const corpus: Corpus = prepareCorpus(cfg, log);
  const data = prepareData(cfg, corpus, log);
  const dir = runDir(cfg);
  fs.mkdirSync(dir, { recursive: true });
  const B = t.batch_size;
  const T = cfg.model.n_ctx;
  const tokensPerStep = B * T;
  const stepsFromTokens = Math.max(1, Math.ceil(t.max_tokens / tokensPerStep));
  log(`corpus: ${data.train.length.toLocaleString()} training tokens, vocabulary ${data.tokenizer.vocabSize}; ${threads} thread(s), ${sgemmKernel()} kernels`);

  const model = CausalLMModel.create(modelConfigOf(cfg, data.tokenizer.vocabSize));
  try {
    model.initRandom(cfg.seed);
    const fp = fingerprint(cfg, data);
    let state: LoopState = { step: 0, plannedSteps: stepsFromTokens, decayStart: null, deadline: null, elapsedSeconds: 0, fingerprint: fp, sessions: [] };
    let records: LogRecord[] = [];
    if (opts.resume && fs.existsSync(path.join(dir, CHECKPOINT))) {
      let momentsRestored: boolean;
      ({ state, log: records, momentsRestored } = loadCheckpoint(dir, model));
      if (!momentsRestored) state.adamFromStep = state.step;
      if (state.fingerprint !== fp) throw new Error(`the checkpoint in ${dir} was trained with another corpus, tokenizer, model shape or optimiser setting`);
      log(`resuming at step ${state.step} of ${state.plannedSteps} (${state.adamFromStep === state.step ? "no saved AdamW moments: they restart from zero" : "AdamW moments restored"})`);
    } else if (opts.resume) log(`no checkpoint in ${dir}: starting from scratch`);
    else if (fs.existsSync(path.join(dir, CHECKPOINT))) fs.rmSync(path.join(dir, CHECKPOINT));

    const sampler = new WindowSampler(data.train, T, cfg.seed);
    const tokens = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const sessionStart = Date.now();
    const sessionFromStep = state.step;
    const elapsed = () => state.elapsedSeconds + (Date.now() - sessionStart) / 1000;
    const budget = t.max_minutes === null ? Infinity : t.max_minutes * 60;

    // Time budget: the final evaluation's cost is estimated from the latest validation's speed.
    let trainSeconds = 0;
    let trainSteps = 0;
    let evalSeconds = 0;
    let evalTokensPerSec: number | null = null;
    const finalEvalTokens =
      [...data.val.values()].reduce((a, s) => a + Math.min(s.length - 1, t.final_eval_tokens), 0) +
      data.imdbEval.reduce((a, r) => a + sequenceWindows([0, ...r.ids], T).length * T, 0);
    const reserveSeconds = () => 1.2 * (evalTokensPerSec ? finalEvalTokens / evalTokensPerSec : 0) + 20;
    const secondsPerStep = () => (trainSteps ? trainSeconds / trainSteps : 0) + evalSeconds / t.eval_every;
    /** Progress of the cosine decay: by steps, or by wall clock once a time budget has fixed its deadline. */
    const progress = () => {
      const bySteps = (state.step - t.warmup_steps) / Math.max(1, stepsFromTokens - t.warmup_steps);
      if (state.deadline === null || state.decayStart === null) return bySteps;
      return Math.max(bySteps, (elapsed() - state.decayStart) / Math.max(1, state.deadline - state.decayStart));
    };
    /** Fixes at the end of warmup when the decay must end, and moves it when validations measure another eval speed. */
    const setDeadline = () => {
      if (budget === Infinity || state.step < t.warmup_steps || (state.deadline !== null && progress() > 0.9)) return;
      const deadline = Math.max(elapsed() + 1, budget - reserveSeconds());
      if (state.deadline !== null && Math.abs(deadline - state.deadline) < 30) return;
      state.decayStart ??= elapsed();
      state.deadline = deadline;
      records.push({ kind: "deadline", step: state.step, elapsed_s: state.decayStart, deadline_s: state.deadline });
      log(`time budget: the learning-rate decay runs from ${(state.decayStart / 60).toFixed(1)} to ${(state.deadline / 60).toFixed(1)} minutes`);
    };
    const estimatePlannedSteps = () => {
      if (budget === Infinity || !trainSteps) return;
      const left = Math.max(0, Math.floor(((state.deadline ?? budget - reserveSeconds()) - elapsed()) / secondsPerStep()));
      state.plannedSteps = Math.min(stepsFromTokens, state.step + left);
    };

    const runValidation = async (maxTokens: number) => {
      const t0 = Date.now();
      const v = await validate(model, data, cfg, maxTokens, opts.signal);
      const s = (Date.now() - t0) / 1000;
      if (maxTokens === t.eval_tokens) {
        evalSeconds = s;
        evalTokensPerSec = v.tokens / s;
      }
      records.push({ kind: "val", step: state.step, tokens: state.step * tokensPerStep, val_loss: v.valLoss, per_source: v.perSource, elapsed_s: elapsed() });
      emit({ type: "eval", step: state.step, valLoss: v.valLoss, perSource: v.perSource });
      return v;
    };

    /** A periodic validation that an abort interrupts without losing the run: false when aborted. */
    const periodicValidation = async (): Promise<boolean> => {
      try {
        await runValidation(t.eval_tokens);
        return true;
      } catch (e) {
        if (e instanceof AbortError) return false;
        throw e;
      }
    };

    emit({ type: "start", step: state.step, plannedSteps: state.plannedSteps });
    let aborted = state.step === 0 && !(await periodicValidation());
    let interval = { loss: 0, norm: 0, n: 0, t0: Date.now() };
    const recentLosses: number[] = [];
    let stoppedBy: "schedule" | "time" | "signal" = "schedule";
    setDeadline();
    while (state.step < stepsFromTokens) {
      if (aborted || opts.signal?.aborted) {
        stoppedBy = "signal";
        break;
      }
      // The time budget ends the schedule (the decay has reached its end) or, as a safety, the loop itself.
      if ((state.deadline !== null && progress() >= 1) || elapsed() + reserveSeconds() + secondsPerStep() > budget) {
        stoppedBy = "time";
        break;
      }
      const t0 = Date.now();
      const lr = learningRate(state.step, progress(), t);
      sampler.batch(state.step, B, tokens, targets);
      model.zeroGrads();
      // A step takes about a second: it is not interrupted, the loop checks the signal between steps.
      const loss = await model.forward({ tokens, targets, B, T });
      await model.backward();
      // Bias correction counts from the step the moments started at (0, unless a resume found none saved).
      const norm = await model.adamwStep({ lr, beta1: t.beta1, beta2: t.beta2, weightDecay: t.weight_decay, maxGradNorm: t.grad_clip, step: state.step - (state.adamFromStep ?? 0) + 1 });
      if (!Number.isFinite(loss)) throw new Error(`training diverged at step ${state.step} (loss ${loss})`);
      state.step++;
      const dt = (Date.now() - t0) / 1000;
      if (state.step - sessionFromStep > 3) {
        trainSeconds += dt;
        trainSteps++;
      }
      interval.loss += loss;
      interval.norm += norm;
      interval.n++;
      recentLosses.push(loss);
      if (recentLosses.length > 100) recentLosses.shift();
      setDeadline();
      if (state.step % t.log_every === 0 || state.step === stepsFromTokens) {
        estimatePlannedSteps();
        const secs = (Date.now() - interval.t0) / 1000;
        const rec: LogRecord = {
          kind: "train",
          step: state.step,
          tokens: state.step * tokensPerStep,
          loss: interval.loss / interval.n,
          lr,
          grad_norm: interval.norm / interval.n,
          tokens_per_sec: (interval.n * tokensPerStep) / secs,
          elapsed_s: elapsed(),
        };
        records.push(rec);
        emit({ type: "step", step: state.step, plannedSteps: state.plannedSteps, loss: rec.loss, lr, tokensPerSec: rec.tokens_per_sec, elapsedSeconds: rec.elapsed_s });
        interval = { loss: 0, norm: 0, n: 0, t0: Date.now() };
      }
      if (state.step % t.eval_every === 0 && state.step < stepsFromTokens) {
        aborted = !(await periodicValidation());
        setDeadline();
        interval.t0 = Date.now();
      }
      if (state.step % t.checkpoint_every === 0) {
        saveCheckpoint(dir, model, { ...state, elapsedSeconds: elapsed() }, records);
        interval.t0 = Date.now();
      }
    }
    if (state.step > sessionFromStep) state.sessions.push({ fromStep: sessionFromStep, toStep: state.step, seconds: (Date.now() - sessionStart) / 1000, threads });
    state.elapsedSeconds = elapsed();
    const finalStart = Date.now();
    saveCheckpoint(dir, model, state, records);
    if (stoppedBy === "signal") throw new AbortError("pretraining interrupted (checkpoint saved; continue with --resume)");
    state.plannedSteps = state.step;
    if (stoppedBy === "time") log(`time budget: training ends at step ${state.step}`);

    log("final evaluation");
    const finalVal = await runValidation(t.final_eval_tokens);
    const bpb = await imdbBitsPerByte(model, data, B, T, opts.signal);
    const samples = await modelSamples(model, data.tokenizer);
    const summary: RunSummary = {
      configFile: cfg.resolved.configFile,
      command: [
        `npm run pretrain -- ${cfg.resolved.configFile}`,
        opts.maxMinutes !== undefined ? `--max-minutes ${opts.maxMinutes}` : "",
        opts.maxTokens !== undefined ? `--max-tokens ${opts.maxTokens}` : "",
        opts.threads !== undefined ? `--threads ${opts.threads}` : "",
      ].filter(Boolean).join(" "),
      config: { ...cfg, train: t },
      corpus: corpus.manifest,
      tokens: data.counts,
      vocabSize: data.tokenizer.vocabSize,
      numParams: model.numParams,
      steps: state.step,
      stoppedBy,
      tokensSeen: state.step * tokensPerStep,
      epochs: sampler.epochOf(state.step, B),
      minutes: state.elapsedSeconds / 60,
      finalEvalMinutes: (Date.now() - finalStart) / 60_000,
      sessions: state.sessions,
      cpu: `${os.cpus()[0]?.model ?? "unknown CPU"} (${sgemmKernel()} kernels)`,
      finalTrainLoss: recentLosses.reduce((a, b) => a + b, 0) / Math.max(1, recentLosses.length),
      finalTrainLossSteps: recentLosses.length,
      valLoss: finalVal.valLoss,
      valPerSource: finalVal.perSource as Record<SourceId, number>,
      valTokens: finalVal.tokens,
      imdb: bpb,
      samples,
      log: records,
    };
    writeFileAtomic(summaryFile(cfg), JSON.stringify(summary) + "\n");
    const outDir = exportModel(cfg.resolved.outDir, model, data.tokenizerFile, summary);
    log(`wrote ${outDir}`);
    return { ...summary, outDir };
  } finally {
    model.dispose();
  }
}

/** Rewrites a model folder's card from its recipe's last run summary (after evaluation.md / architecture.md change). */
export function refreshModelCard(configFile: string | undefined, outDir: string): boolean {
  const cfg = loadPretrainConfig(configFile ?? path.join(packageRoot(), "configs", "pretrain", "default.yaml"));
  const file = summaryFile(cfg);
  if (!fs.existsSync(file) || path.resolve(cfg.resolved.outDir) !== path.resolve(outDir)) return false;
  writeCard(outDir, JSON.parse(fs.readFileSync(file, "utf8")) as RunSummary);
  return true;
}
