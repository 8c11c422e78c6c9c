/**
 * The pipeline around the method: data → per-class targets → ADMM batches (checkpointed) → decoding → filtering →
 * output files. `synthesize()` is the library entry point; the CLI (ts/cli.ts) adds progress bars and Ctrl-C.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { withCancel } from "../abort";
import * as os from "node:os";
import { ConfigError, InvalidCheckpointError, InvalidDataError, InvalidFileError, typedEngineError } from "../errors";
import { loadModel, type LoadedModel } from "../load_model";
import { mulberry32 } from "../random";
import type { NativeBuildTargetArgs, NativeMatchTarget } from "../native";
import { getThreads, resolvePrecision, setThreads } from "../threads";
import { alphabeticTokenMask, type Tokenizer } from "../tokenizer";
import { writeJsonAtomic, writeJsonlAtomic } from "../io";
import type { SynthConfig } from "./config";
import { readLabelledFile, shuffled, type Example } from "./data";
import { dpParameters, type DPParameters } from "./dp";
import { filterSamples, pickDemonstrations, type SyntheticSample } from "./filter";
import { continuationLoss, labelTokens, pieceTokens, startTokens } from "./lm";
import { classTargets, labelWordRows, promptPrefix, runBatch, targetRows, type BatchSettings, type ClassSetup } from "./method";
import { checkOutputDir, checkpointMatches, fingerprint, OutputExistsError, readCheckpoint, removePreviousRun, RUN_FILES, writeOutput, type Checkpoint } from "./output";
import type { BatchRunner } from "./runner";

/** What synthesize reports through `onProgress`: setup messages, each ADMM step of a batch, finished batches, long steps. */
export type SynthProgress =
  | { phase: "setup"; message: string }
  | { phase: "batch"; cls: string; batch: number; batchesDone: number; batchesTotal: number; outer: number; outerSteps: number; xLoss: number; zLoss: number }
  | { phase: "batch-done"; batchesDone: number; batchesTotal: number; seconds: number }
  | { phase: "filter"; message: string }
  /** A long step other than the batches (class targets, the real examples' statistics, the filter, the HTML report), for progress bars. */
  | { phase: "step"; step: "target" | "init" | "real" | "filter" | "report"; done: number; total: number };

/** Options of synthesize and validateRun. */
export interface SynthOptions {
  /** Aborting it stops the run after saving the finished batches (the batch in progress is dropped); throws AbortError. */
  signal?: AbortSignal;
  /** Called with every progress event (synchronously; keep it cheap). */
  onProgress?: (p: SynthProgress) => void;
  /** Continue the run in the output folder (its checkpoint must match this config). */
  resume?: boolean;
  /** Replace an existing run in the output folder. */
  overwrite?: boolean;
  /** Runs the batches elsewhere (`--queue`: ts/queue/coordinator.ts) instead of in this process. */
  batchRunner?: BatchRunner;
  /** Write report.html beside report.json (default true; see ts/report/run.ts). */
  htmlReport?: boolean;
}

/** What synthesize returns; the same is written to the output folder (README: Make synthetic data). */
export interface SynthResult {
  /** Absolute path of the output folder. */
  outputDir: string;
  /** Every decoded sample (synthetic.jsonl). */
  samples: SyntheticSample[];
  /** The samples the filter kept (filtered.jsonl). */
  filtered: SyntheticSample[];
  /** report.json's content. */
  report: Record<string, unknown>;
}

/** The settings of one batch (class k, ρ index r, batch b) of a run: the same for a local run and a queue worker. */
export function batchSettings(config: Pick<SynthConfig, "method" | "seed">, freeLen: number, allowed: Uint8Array, job: { k: number; r: number; b: number }): BatchSettings {
  const m = config.method;
  const rhos = Array.isArray(m.rho) ? m.rho : [m.rho];
  return {
    batchSize: m.batch_size,
    freeLen,
    outerSteps: m.outer_steps,
    innerSteps: m.inner_steps,
    lr: m.lr,
    maxGradNorm: m.max_grad_norm,
    rho: rhos[job.r],
    topK: m.top_k,
    initCandidates: m.init_candidates,
    initTokenNorm: m.init_token_norm,
    decode: m.decode,
    allowed,
    seed: batchSeed(config.seed, job.k, job.r, job.b),
  };
}

export function batchSeed(seed: number, cls: number, rhoIndex: number, batch: number): number {
  const h = createHash("sha256").update(`${seed}/${cls}/${rhoIndex}/${batch}`).digest();
  return h.readUInt32LE(0);
}

/** Bytes the method needs beyond the weights for a batch of B samples of L positions (a deliberate over-estimate). */
export function memoryEstimate(m: { vocabSize: number; channels: number; numLayers: number; numHeads: number; intermediateSize?: number }, B: number, L: number, targetRows: number, targetT: number): number {
  const C = m.channels, H = m.numHeads, I = m.intermediateSize ?? 4 * C;
  const perToken = (T: number) => m.numLayers * (12 * C + 3 * I + 2 * H * T); // saved activations per token, per layer, floats
  const batch = B * L * (perToken(L) + 10 * C) + 4 * B * m.vocabSize; // activations + X, z, λ, Adam moments, grads; logits rows
  // the target is an inference forward (one layer's activations at a time) over chunks of at most 4096 tokens
  const target = Math.max(targetT, Math.min(targetRows * targetT, 4096)) * (perToken(targetT) / m.numLayers) + 2 * targetRows * (m.vocabSize + C);
  return 4 * Math.max(batch, target) * 1.5;
}

/** GRADMM_MEMORY_LIMIT (bytes, or with a K/M/G suffix) or the machine's memory. */
function memoryLimit(): number {
  const v = process.env.GRADMM_MEMORY_LIMIT;
  const m = v ? /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(v) : null;
  if (m) return Number(m[1]) * 1024 ** " kmgt".indexOf((m[2] || " ").toLowerCase());
  return os.totalmem();
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 3 : 1)} GiB`;

/** What validation found: the loaded model and data, and warnings (also sent to onProgress as they are found). */
interface Prepared {
  loaded: LoadedModel;
  tokenizer: Tokenizer;
  examples: Example[];
  ckpt: Checkpoint;
  previousRun: boolean;
  warnings: string[];
  /** Each class's label token (labelTokens). */
  labelTokenIds: number[];
}

/**
 * Everything that can be wrong with a run, checked before any compute or write: the data (encoding, fields, labels,
 * class sizes, empty texts), the output folder (a folder, writable) and any checkpoint (schema, fingerprint), the
 * model, the label words (distinct first tokens), top_k, length against the context and the memory estimate.
 */
async function prepare(config: SynthConfig, opts: SynthOptions): Promise<Prepared> {
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    opts.onProgress?.({ phase: "setup", message: `warning: ${message}` });
  };
  const cfgFile = config.resolved.configFile;
  const fail = (p: PropertyKey[], message: string): never => {
    throw new ConfigError(cfgFile, [{ field: p.map(String).join("."), line: config.resolved.line?.(p), message }]);
  };
  // ---- precision: bf16 where the CPU lacks AVX512_BF16 is a PrecisionError naming the setting ----
  const precisionField = config.resolved.precisionField ?? `precision (${cfgFile}${config.resolved.line?.(["precision"]) ? `, line ${config.resolved.line?.(["precision"])}` : ""})`;
  const precision = resolvePrecision(config.precision, precisionField);
  // ---- data ----
  const dataFile = config.resolved.dataPath;
  const examples = readLabelledFile(dataFile, {
    format: config.data.format,
    textField: config.data.text_field,
    labelField: config.data.label_field,
    classLabels: config.classes.map((c) => c.label),
    encoding: config.data.encoding,
  });
  config.classes.forEach((spec, k) => {
    const name = spec.name ?? String(spec.label);
    const pool = examples.filter((e) => e.cls === k);
    if (pool.length === 0) throw new InvalidDataError(dataFile, `no examples of class '${name}' (label ${JSON.stringify(spec.label)} in field '${config.data.label_field}')`, { field: config.data.label_field });
    const empty = pool.filter((e) => !e.text.trim());
    if (empty.length === pool.length)
      throw new InvalidDataError(dataFile, `every example of class '${name}' has an empty '${config.data.text_field}' (first at line ${empty[0].line}); is text_field right?`, { field: config.data.text_field, line: empty[0].line });
    if (empty.length) warn(`${empty.length} of ${pool.length} examples of class '${name}' have an empty '${config.data.text_field}' (first at line ${empty[0].line} of ${dataFile})`);
    if (pool.length < config.data.examples_per_class)
      warn(`class '${name}' has ${pool.length} examples, fewer than data.examples_per_class ${config.data.examples_per_class}; the target uses all ${pool.length}`);
  });
  // the label-agreement prompt spreads its demonstrations over the classes (pickDemonstrations): fewer than the
  // classes leave the last ones undemonstrated, and the filter's balancing then tends to keep nothing of any class
  const f = config.filter;
  if (f.enabled && !f.demonstrations && !config.dp.enabled && f.few_shot > 0 && f.few_shot < config.classes.length) {
    const missing = config.classes.slice(f.few_shot).map((c) => `'${c.name ?? String(c.label)}'`);
    warn(`filter.few_shot ${f.few_shot} is less than the ${config.classes.length} classes: ${missing.join(", ")} get no demonstration in the label-agreement prompt (set few_shot to ${config.classes.length} or more)`);
  }
  // ---- output folder and checkpoint ----
  const outDir = config.resolved.outputDir;
  checkOutputDir(outDir);
  const ckptFile = path.join(outDir, "checkpoint.json");
  const fp = fingerprint(config);
  let ckpt: Checkpoint = { fingerprint: fp, batches: {} };
  const previousRun = fs.existsSync(ckptFile);
  if (previousRun) {
    if (opts.resume) {
      const prev = readCheckpoint(ckptFile);
      // checkpoints written before the filter left the fingerprint carry the older one; their batches are the same
      if (!checkpointMatches(config, prev.fingerprint, outDir))
        throw new InvalidCheckpointError(ckptFile, "the checkpoint was made with a different config, model or data; it cannot be resumed (use --overwrite to start again)", { field: "fingerprint" });
      ckpt = { ...prev, fingerprint: fp };
    } else if (!opts.overwrite) throw new OutputExistsError(outDir);
  } else if (!opts.overwrite && RUN_FILES.some((f) => fs.existsSync(path.join(outDir, f)))) throw new OutputExistsError(outDir);
  // ---- model and tokenizer ----
  opts.onProgress?.({ phase: "setup", message: `loading model ${config.resolved.modelDir}` });
  const loaded = loadModel(config.resolved.modelDir, { precision });
  try {
    if (!loaded.tokenizer) throw new InvalidFileError(config.resolved.modelDir, "the model folder has no tokenizer.json (synth needs the model's tokenizer)");
    const tokenizer = loaded.tokenizer;
    const mc = loaded.model.config as { vocabSize: number; channels: number; numLayers: number; numHeads: number; maxSeqLen: number; intermediateSize?: number };
    const maxT = mc.maxSeqLen;
    // token sequences: a text's start gets the tokenizer's <bos> (where it puts one), every other piece nothing
    const templateTokens = pieceTokens(tokenizer, config.template), leadTokens = startTokens(tokenizer);
    // label words: the first token is the target; first tokens must differ between classes
    const labelTokenIds = labelTokens(tokenizer, config.classes.map((c) => c.label_word),
      (k, message) => fail(["classes", k, "label_word"], message),
      (k, message) => warn(`classes[${k}].label_word ${message}`));
    config.classes.forEach((spec, k) => {
      const prompt = startTokens(tokenizer, spec.instruction);
      if (prompt.length === leadTokens.length) fail(["classes", k, "instruction"], "encodes to no tokens");
      const room = Math.min(maxT - templateTokens.length - leadTokens.length, maxT - prompt.length);
      if (room < 1) fail(["classes", k, "instruction"], `the instruction (${prompt.length} tokens) and template (${templateTokens.length}) leave no room in the model's ${maxT}-token context`);
      if (config.method.length !== null && config.method.length > room)
        fail(["method", "length"], `${config.method.length} free tokens do not fit the model's ${maxT}-token context after classes[${k}]'s instruction (${prompt.length} tokens) and the template (${templateTokens.length}); at most ${room}`);
    });
    const allowed = config.method.allowed_tokens === "alphabetic" ? alphabeticTokenMask(tokenizer) : null;
    const nAllowed = allowed ? allowed.reduce((a, b) => a + b, 0) : mc.vocabSize;
    if (config.method.top_k > nAllowed)
      fail(["method", "top_k"], `${config.method.top_k} is more than the ${nAllowed} ${allowed ? "alphabetic tokens" : "tokens"} of the model's vocabulary (${mc.vocabSize})`);
    // memory, before anything is allocated
    const L = leadTokens.length + (config.method.length ?? maxT) + templateTokens.length;
    const n = Math.min(config.data.examples_per_class, examples.length);
    // the target's rows are the private examples (cut to the context) + the template: bound T by the longest text
    let longest = 0;
    for (const e of examples) longest = Math.max(longest, startTokens(tokenizer, e.text).length);
    const est = memoryEstimate(mc, config.method.batch_size, L, n, Math.min(maxT, longest + templateTokens.length));
    const limit = memoryLimit();
    if (est + 4 * loaded.model.numParams > limit)
      fail(["method", "batch_size"], `batch_size ${config.method.batch_size} × ${L} positions on this model (${mc.numLayers} layers, ${mc.channels} channels, vocabulary ${mc.vocabSize}) needs about ${gib(est)} besides the ${gib(4 * loaded.model.numParams)} of weights, more than the ${gib(limit)} of memory${process.env.GRADMM_MEMORY_LIMIT ? " (GRADMM_MEMORY_LIMIT)" : ""}; use a smaller batch_size or length`);
    // checkpoint contents against this model
    for (const [key, b] of Object.entries(ckpt.batches)) {
      const bad = b.tokens.flat().find((t) => t >= mc.vocabSize);
      const B = b.tokens.length;
      for (const f of ["texts", "perSampleLoss", "perplexity"] as const)
        if (b[f].length !== B) throw new InvalidCheckpointError(ckptFile, `field batches.${key}.${f}: ${b[f].length} entries for ${B} samples`, { field: `batches.${key}.${f}` });
      if (B !== config.method.batch_size || b.tokens.some((r) => r.length !== b.tokens[0].length))
        throw new InvalidCheckpointError(ckptFile, `field batches.${key}.tokens: not ${config.method.batch_size} rows of equal length`, { field: `batches.${key}.tokens` });
      if (bad !== undefined) throw new InvalidCheckpointError(ckptFile, `field batches.${key}.tokens: token id ${bad} is outside the model's vocabulary (${mc.vocabSize})`, { field: `batches.${key}.tokens` });
    }
    return { loaded, tokenizer, examples, ckpt, previousRun, warnings, labelTokenIds };
  } catch (e) {
    loaded.dispose();
    throw e;
  }
}

/** Validates a run (config, data, model, label words, output folder, checkpoint) without computing or writing anything. */
export async function validateRun(config: SynthConfig, opts: Pick<SynthOptions, "resume" | "overwrite" | "onProgress"> = {}): Promise<{ warnings: string[] }> {
  const p = await prepare(config, opts);
  p.loaded.dispose();
  return { warnings: p.warnings };
}

/**
 * Runs GRADMM on a config (loadConfigFile / parseConfig): per class, the target gradient of the real examples, then
 * ADMM batches matching it, decoding, filtering, and the output files written atomically (checkpointed per batch, so
 * `resume` continues a stopped run). Runs off the main thread; typed errors (ConfigError, InvalidDataError,
 * OutputExistsError, ResourceLimitError, AbortError, …).
 */
export async function synthesize(config: SynthConfig, opts: SynthOptions = {}): Promise<SynthResult> {
  try {
    return await run(config, opts);
  } catch (e) {
    throw typedEngineError(e);
  }
}

async function run(config: SynthConfig, opts: SynthOptions): Promise<SynthResult> {
  const log = (message: string) => opts.onProgress?.({ phase: "setup", message });
  const outDir = config.resolved.outputDir;
  const ckptFile = path.join(outDir, "checkpoint.json");
  const t0 = Date.now();
  const { loaded, tokenizer, examples, ckpt, previousRun, labelTokenIds } = await prepare(config, opts);
  const { model } = loaded;
  try {
    // ---- only now is anything written ----
    if (opts.overwrite && !(opts.resume && previousRun)) {
      if (RUN_FILES.some((f) => fs.existsSync(path.join(outDir, f)))) log(`--overwrite: removing the previous run in ${outDir}`);
      removePreviousRun(outDir);
    } else if (opts.resume && previousRun) log(`resuming: ${Object.keys(ckpt.batches).length} batches already done`);
    writeOutput(outDir, () => fs.mkdirSync(outDir, { recursive: true }));
    if (config.threads) setThreads(config.threads);
    const C = model.config.channels, maxT = model.config.maxSeqLen;
    const rng = mulberry32(config.seed);
    const templateTokens = pieceTokens(tokenizer, config.template), leadTokens = startTokens(tokenizer);
    const allowed = config.method.allowed_tokens === "alphabetic" ? alphabeticTokenMask(tokenizer) : new Uint8Array(model.config.vocabSize).fill(1);
    const rhos = Array.isArray(config.method.rho) ? config.method.rho : [config.method.rho];

    // ---- per-class setup: private examples → target inputs; instruction → prefix cache; then the targets ----
    type ClassRun = Omit<ClassSetup, "target"> & { name: string; freeLen: number; real: Example[]; dp: DPParameters | null; targetArgs: NativeBuildTargetArgs };
    const setups: ClassRun[] = [];
    const timings: Record<string, number> = { setup_s: (Date.now() - t0) / 1000, targets_s: 0, batches_s: 0, statistics_s: 0, filter_s: 0 };
    let tStep = Date.now();
    const labelRows = labelWordRows(config.method.target_rows, labelTokenIds);
    for (let k = 0; k < config.classes.length; k++) {
      opts.onProgress?.({ phase: "step", step: "target", done: k, total: config.classes.length });
      const spec = config.classes[k];
      const name = spec.name ?? String(spec.label);
      const pool = examples.filter((e) => e.cls === k);
      const real = shuffled(pool, rng).slice(0, config.data.examples_per_class);
      const { tokens, T, lastPos, seqs } = targetRows(tokenizer, real.map((e) => e.text), templateTokens, maxT);
      const labels = new Int32Array(real.length).fill(labelTokenIds[k]);
      const dp = config.dp.enabled ? dpParameters(config.dp.epsilon, config.dp.delta, config.dp.clip_norm, real.length) : null;
      const targetArgs: NativeBuildTargetArgs = { tokens, n: real.length, T, lastPos, labels, clipNorm: dp?.clipNorm ?? 0, noiseStd: dp?.sigma ?? 0, noiseSeed: batchSeed(config.seed, k, -1, -1) };
      if (labelRows) targetArgs.rows = labelRows;
      const prompt = startTokens(tokenizer, spec.instruction);
      if (prompt.length === leadTokens.length) throw new InvalidFileError(config.resolved.configFile, `classes[${k}].instruction encodes to no tokens`);
      const meanLen = Math.round(seqs.reduce((a, q) => a + q.length - templateTokens.length - leadTokens.length, 0) / seqs.length);
      const freeLen = Math.min(config.method.length ?? meanLen, maxT - templateTokens.length - leadTokens.length, maxT - prompt.length);
      if (freeLen < 1) throw new InvalidFileError(config.resolved.configFile, `classes[${k}]: the instruction and template leave no room in the model's ${maxT}-token context`);
      const { prefix, prefixLogits } = await promptPrefix(model, prompt, opts.signal);
      setups.push({ name, labelToken: labelTokenIds[k], templateTokens, leadTokens, prefix, prefixLogits, freeLen, real, dp, targetArgs });
    }
    const targets = await classTargets(model, setups.map((c) => c.targetArgs), config.method, opts.signal);
    const classes = setups.map((c, k) => ({ ...c, target: targets[k] }));
    for (const c of classes) log(`class '${c.name}': ${c.real.length} real examples, ‖G*‖=${c.target.norm.toExponential(3)}, ${c.freeLen} free tokens`);
    if (config.method.objective === "whitened_contrastive") log(`objective whitened_contrastive (whitening shrinkage ${config.method.whitening_shrinkage}): ‖G*‖ is that of the class target minus the mean`);
    opts.onProgress?.({ phase: "step", step: "target", done: classes.length, total: classes.length });
    timings.targets_s = (Date.now() - tStep) / 1000;
    tStep = Date.now();

    // ---- ADMM batches, checkpointed one by one ----
    const jobs: { k: number; r: number; b: number; key: string }[] = [];
    for (let k = 0; k < classes.length; k++)
      for (let r = 0; r < rhos.length; r++)
        for (let b = 0; b < config.method.batches_per_class; b++) jobs.push({ k, r, b, key: `${k}/${r}/${b}` });
    // --queue: the missing batches run on BullMQ workers (ts/queue/coordinator.ts), stored here as they finish
    if (opts.batchRunner)
      await opts.batchRunner({
        config, fingerprint: ckpt.fingerprint, jobs, missing: jobs.filter((j) => !ckpt.batches[j.key]),
        classes: classes.map((c) => ({ name: c.name, freeLen: c.freeLen, targetArgs: c.targetArgs })),
        tokenizer, vocabSize: model.config.vocabSize, signal: opts.signal, onProgress: opts.onProgress,
        store: (key, b) => void (ckpt.batches[key] = b),
        saveCheckpoint: () => writeOutput(ckptFile, () => writeJsonAtomic(ckptFile, ckpt)),
      });
    let done = jobs.filter((j) => ckpt.batches[j.key]).length;
    for (const job of jobs) {
      if (ckpt.batches[job.key]) continue;
      const cls = classes[job.k];
      const started = Date.now();
      const result = await runBatch(
        model,
        cls,
        batchSettings(config, cls.freeLen, allowed, job),
        {
          signal: opts.signal,
          onProgress: (p) => opts.onProgress?.({ phase: "batch", cls: cls.name, batch: job.b, batchesDone: done, batchesTotal: jobs.length, ...p }),
          onInit: (ph) => opts.onProgress?.({ phase: "step", step: "init", done: ph === "done" ? config.method.init_candidates : 0, total: config.method.init_candidates }),
        },
      );
      const prompt = startTokens(tokenizer, config.classes[job.k].instruction);
      const losses = await continuationLoss(model, prompt, result.tokens, { signal: opts.signal });
      const seconds = (Date.now() - started) / 1000;
      ckpt.batches[job.key] = { ...result, texts: result.tokens.map((t) => tokenizer.decode(t)), perplexity: losses.map(Math.exp), seconds };
      writeOutput(ckptFile, () => writeJsonAtomic(ckptFile, ckpt));
      done++;
      opts.onProgress?.({ phase: "batch-done", batchesDone: done, batchesTotal: jobs.length, seconds });
    }

    timings.batches_s = (Date.now() - tStep) / 1000;
    // ---- samples, filtering, outputs ----
    const samples: SyntheticSample[] = [];
    for (const job of jobs) {
      const r = ckpt.batches[job.key];
      r.texts.forEach((text, i) =>
        samples.push({
          text,
          label: config.classes[job.k].label,
          cls: job.k,
          tokens: r.tokens[i],
          matching_loss: r.perSampleLoss[i],
          perplexity: r.perplexity[i],
          batch: job.b,
          rho: rhos[job.r],
        }),
      );
    }
    opts.onProgress?.({ phase: "filter", message: `filtering ${samples.length} samples` });
    opts.onProgress?.({ phase: "step", step: "filter", done: 0, total: samples.length });
    tStep = Date.now();
    // with DP, private text never enters the filter (parseConfig requires explicit demonstrations for few_shot > 0)
    const demos = config.filter.demonstrations
      ? config.filter.demonstrations.map((d) => ({ text: d.text, cls: config.classes.findIndex((c) => String(c.label) === String(d.class)) }))
      : config.dp.enabled
        ? []
        : pickDemonstrations(classes.map((c) => c.real), config.filter.few_shot).map((d) => ({ text: d.item.text, cls: d.cls }));
    const filterResult = config.filter.enabled
      ? await filterSamples(model, tokenizer, samples, {
          classes: config.classes.map((c) => ({ labelWord: c.label_word })),
          template: config.template,
          demonstrations: demos.filter((d) => d.cls >= 0),
          keepPerClass: config.filter.keep_per_class,
          pplWeight: config.filter.ppl_weight,
          dedupe: config.filter.dedupe,
          signal: opts.signal,
          onProgress: (done, total) => opts.onProgress?.({ phase: "step", step: "filter", done, total }),
        })
      : { kept: samples, stats: {}, decisions: samples.map((s) => ({ kept: true, predicted: s.cls, score: s.matching_loss, reason: "filter disabled", rank: null })) };
    opts.onProgress?.({ phase: "step", step: "filter", done: samples.length, total: samples.length });
    timings.filter_s = (Date.now() - tStep) / 1000;
    if (config.filter.enabled && filterResult.kept.length === 0)
      opts.onProgress?.({
        phase: "filter",
        message: `warning: the filter kept no samples (label agreement ${JSON.stringify(filterResult.stats)}); synthetic.jsonl has them all`,
      });

    // gradient cosine of whole sets to each class target
    const setCosine = async (set: SyntheticSample[], k: number): Promise<number | null> => {
      const mine = set.filter((s) => s.cls === k);
      if (!mine.length) return null;
      const cls = classes[k];
      const L = leadTokens.length + cls.freeLen + templateTokens.length;
      const X = new Float32Array(mine.length * L * C);
      mine.forEach((s, b) => model.tokenEmbeddings([...leadTokens, ...s.tokens, ...templateTokens], X.subarray(b * L * C, (b + 1) * L * C)));
      const f = await withCancel(opts.signal, (t) => model.native.matchLoss(cls.target, { X, B: mine.length, L, label: cls.labelToken }, t));
      return 1 - f;
    };
    // the real examples' own matching loss and perplexity, for the report's histograms (never under DP: nothing
    // computed from a private text may reach the output there)
    tStep = Date.now();
    const realStats = async (k: number): Promise<{ matching_loss: number[]; perplexity: number[] } | null> => {
      if (config.dp.enabled) return null;
      const cls = classes[k];
      const prompt = startTokens(tokenizer, config.classes[k].instruction);
      const matching_loss: number[] = [], texts: number[][] = [];
      for (const e of cls.real.slice(0, 64)) {
        // laid out as a synthetic sample is: lead, the text in the free positions, the template
        const ids = pieceTokens(tokenizer, e.text).slice(0, Math.max(1, Math.min(maxT - templateTokens.length - leadTokens.length, maxT - prompt.length)));
        if (!ids.length) continue;
        const seq = [...leadTokens, ...ids, ...templateTokens];
        const X = model.tokenEmbeddings(seq);
        matching_loss.push(await withCancel(opts.signal, (t) => model.native.matchLoss(cls.target, { X, B: 1, L: seq.length, label: cls.labelToken }, t)));
        texts.push(ids);
      }
      const perplexity = (await continuationLoss(model, prompt, texts, { signal: opts.signal })).map(Math.exp);
      return { matching_loss, perplexity };
    };
    const perClass: Record<string, unknown> = {};
    for (let k = 0; k < classes.length; k++) {
      const c = classes[k];
      if (!config.dp.enabled) opts.onProgress?.({ phase: "step", step: "real", done: k, total: classes.length });
      perClass[c.name] = {
        real_examples: c.real.length,
        free_tokens: c.freeLen,
        target_norm: c.target.norm,
        gradient_cosine_all: await setCosine(samples, k),
        gradient_cosine_filtered: await setCosine(filterResult.kept, k),
        dp: c.dp,
        real: await realStats(k),
        batches: jobs
          .filter((j) => j.k === k)
          .map((j) => {
            const r = ckpt.batches[j.key];
            return {
              batch: j.b,
              rho: rhos[j.r],
              init_loss: r.initLoss,
              best_x_loss: r.bestXLoss,
              decoded_loss: r.decodedLoss,
              // decode best_z: the outer step whose projection was kept (0: Π(best x))
              ...(r.decodedFromOuter !== undefined ? { decoded_from_outer: r.decodedFromOuter } : {}),
              x_loss_per_outer: r.xLossPerOuter,
              z_loss_per_outer: r.zLossPerOuter,
              seconds: r.seconds,
            };
          }),
      };
    }
    const publicSample = (s: SyntheticSample) => ({ text: s.text, label: s.label, matching_loss: s.matching_loss, perplexity: s.perplexity, batch: s.batch, rho: s.rho });
    const report = {
      settings: { ...config, resolved: undefined, model_dir: config.resolved.modelDir, precision: model.precision },
      model: model.config,
      dp: config.dp.enabled ? { epsilon: config.dp.epsilon, delta: config.dp.delta, clip_norm: config.dp.clip_norm, per_class: classes.map((c) => ({ class: c.name, n: c.dp!.n, sigma: c.dp!.sigma, mechanism: c.dp!.mechanism })) } : null,
      classes: perClass,
      filter: filterResult.stats,
      counts: { synthetic: samples.length, filtered: filterResult.kept.length },
      /** Aligned with synthetic.jsonl: what the filter did with each sample and why. */
      filter_decisions: filterResult.decisions.map((d) => ({ kept: d.kept, reason: d.reason, predicted: classes[d.predicted]?.name ?? null, score: d.score, rank: d.rank })),
      machine: { cpu: os.cpus()[0]?.model ?? null, cores: os.cpus().length, threads: getThreads(), memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, platform: `${process.platform}-${process.arch}` },
      timings: { ...timings, statistics_s: (Date.now() - tStep) / 1000 },
      seconds_total: (Date.now() - t0) / 1000,
    };
    const out = (f: string) => path.join(outDir, f);
    writeOutput(out("synthetic.jsonl"), () => writeJsonlAtomic(out("synthetic.jsonl"), samples.map(publicSample)));
    writeOutput(out("filtered.jsonl"), () => writeJsonlAtomic(out("filtered.jsonl"), filterResult.kept.map(publicSample)));
    writeOutput(out("report.json"), () => writeJsonAtomic(out("report.json"), report));
    if (opts.htmlReport !== false) {
      opts.onProgress?.({ phase: "step", step: "report", done: 0, total: 1 });
      // the data files are written: a page that cannot be drawn is a warning (gradmm report retries), never a failed run
      try {
        const { writeRunReport } = await import("../report/run");
        await writeRunReport(outDir);
      } catch (e) {
        log(`warning: report.html was not written (${(e as Error).message.split("\n")[0]}); run gradmm report ${outDir}`);
      }
      opts.onProgress?.({ phase: "step", step: "report", done: 1, total: 1 });
    }
    return { outputDir: outDir, samples, filtered: filterResult.kept, report };
  } finally {
    model.dispose();
  }
}
