/**
 * The pipeline around the method: data → per-class targets → ADMM batches (checkpointed) → decoding → filtering →
 * output files. `synthesize()` is the library entry point; the CLI (ts/cli.ts) adds progress bars and Ctrl-C.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { withCancel } from "../abort";
import { GradmmError, InvalidFileError } from "../errors";
import { findGGUF, loadModel, mulberry32 } from "../model";
import type { NativeMatchTarget } from "../native";
import { setThreads } from "../threads";
import { alphabeticTokenMask } from "../tokenizer";
import { writeJsonAtomic, writeJsonlAtomic } from "../io";
import type { SynthConfig } from "./config";
import { readLabelledFile, shuffled, type Example } from "./data";
import { dpParameters, type DPParameters } from "./dp";
import { filterSamples, type SyntheticSample } from "./filter";
import { continuationLoss } from "./lm";
import { runBatch, type BatchResult, type ClassSetup } from "./method";

export class OutputExistsError extends GradmmError {
  constructor(dir: string) {
    super("OUTPUT_EXISTS", `${dir} already holds a run (checkpoint.json); pass resume to continue it or choose another output folder`);
  }
}

export type SynthProgress =
  | { phase: "setup"; message: string }
  | { phase: "batch"; cls: string; batch: number; batchesDone: number; batchesTotal: number; outer: number; outerSteps: number; xLoss: number; zLoss: number }
  | { phase: "batch-done"; batchesDone: number; batchesTotal: number; seconds: number }
  | { phase: "filter"; message: string };

export interface SynthOptions {
  signal?: AbortSignal;
  onProgress?: (p: SynthProgress) => void;
  /** Continue the run in the output folder (its checkpoint must match this config). */
  resume?: boolean;
  /** Replace an existing run in the output folder. */
  overwrite?: boolean;
}

export interface SynthResult {
  outputDir: string;
  samples: SyntheticSample[];
  filtered: SyntheticSample[];
  report: Record<string, unknown>;
}

interface Checkpoint {
  fingerprint: string;
  batches: Record<string, StoredBatch>;
}
interface StoredBatch extends BatchResult {
  texts: string[];
  perplexity: number[];
  seconds: number;
}

/** What makes two runs the same: the config (minus output/threads) and the model and data files' contents. */
function fingerprint(config: SynthConfig): string {
  const h = createHash("sha256");
  const { output: _o, threads: _t, resolved, ...rest } = config;
  h.update(JSON.stringify(rest));
  const gguf = findGGUF(resolved.modelDir);
  const files = gguf ? [resolved.dataPath, gguf] : [resolved.dataPath, path.join(resolved.modelDir, "model.safetensors"), path.join(resolved.modelDir, "tokenizer.json")];
  for (const f of files) h.update(fs.existsSync(f) ? fs.readFileSync(f) : Buffer.from("missing"));
  return h.digest("hex");
}

function batchSeed(seed: number, cls: number, rhoIndex: number, batch: number): number {
  const h = createHash("sha256").update(`${seed}/${cls}/${rhoIndex}/${batch}`).digest();
  return h.readUInt32LE(0);
}

export async function synthesize(config: SynthConfig, opts: SynthOptions = {}): Promise<SynthResult> {
  const log = (message: string) => opts.onProgress?.({ phase: "setup", message });
  const outDir = config.resolved.outputDir;
  const ckptFile = path.join(outDir, "checkpoint.json");
  const fp = fingerprint(config);
  let ckpt: Checkpoint = { fingerprint: fp, batches: {} };
  if (fs.existsSync(ckptFile)) {
    if (opts.resume) {
      const prev = JSON.parse(fs.readFileSync(ckptFile, "utf8")) as Checkpoint;
      if (prev.fingerprint !== fp)
        throw new InvalidFileError(ckptFile, "the checkpoint was made with a different config, model or data; it cannot be resumed");
      ckpt = prev;
      log(`resuming: ${Object.keys(prev.batches).length} batches already done`);
    } else if (!opts.overwrite) throw new OutputExistsError(outDir);
  }
  fs.mkdirSync(outDir, { recursive: true });
  if (config.threads) setThreads(config.threads);

  const t0 = Date.now();
  log(`loading model ${config.resolved.modelDir}`);
  const loaded = loadModel(config.resolved.modelDir);
  const { model } = loaded;
  if (!loaded.tokenizer) {
    model.dispose();
    throw new InvalidFileError(config.resolved.modelDir, "the model folder has no tokenizer.json (synth needs the model's tokenizer)");
  }
  const tokenizer = loaded.tokenizer;
  try {
    const C = model.config.channels, maxT = model.config.maxSeqLen;
    const examples = readLabelledFile(config.resolved.dataPath, {
      format: config.data.format,
      textField: config.data.text_field,
      labelField: config.data.label_field,
      classLabels: config.classes.map((c) => c.label),
    });
    const rng = mulberry32(config.seed);
    const templateTokens = tokenizer.encode(config.template);
    const allowed = config.method.allowed_tokens === "alphabetic" ? alphabeticTokenMask(tokenizer) : new Uint8Array(model.config.vocabSize).fill(1);
    const rhos = Array.isArray(config.method.rho) ? config.method.rho : [config.method.rho];

    // ---- per-class setup: private examples → target; instruction → prefix cache ----
    const classes: (ClassSetup & { name: string; freeLen: number; real: Example[]; dp: DPParameters | null })[] = [];
    for (let k = 0; k < config.classes.length; k++) {
      const spec = config.classes[k];
      const name = spec.name ?? String(spec.label);
      const pool = examples.filter((e) => e.cls === k);
      if (pool.length === 0) throw new InvalidFileError(config.resolved.dataPath, `no examples of class '${name}'`);
      const real = shuffled(pool, rng).slice(0, config.data.examples_per_class);
      const labelIds = tokenizer.encode(spec.label_word);
      if (!labelIds.length) throw new InvalidFileError(config.resolved.configFile, `classes[${k}].label_word encodes to no tokens`);
      const maxText = maxT - templateTokens.length;
      const seqs = real.map((e) => [...tokenizer.encode(e.text).slice(0, maxText), ...templateTokens]);
      const T = Math.max(...seqs.map((q) => q.length));
      const tokens = new Int32Array(real.length * T), lastPos = new Int32Array(real.length), labels = new Int32Array(real.length).fill(labelIds[0]);
      seqs.forEach((q, i) => {
        tokens.set(q, i * T);
        lastPos[i] = q.length - 1;
      });
      const dp = config.dp.enabled ? dpParameters(config.dp.epsilon, config.dp.delta, config.dp.clip_norm, real.length) : null;
      const target: NativeMatchTarget = await withCancel(opts.signal, (t) =>
        model.native.buildTarget(
          { tokens, n: real.length, T, lastPos, labels, clipNorm: dp?.clipNorm ?? 0, noiseStd: dp?.sigma ?? 0, noiseSeed: batchSeed(config.seed, k, -1, -1) },
          t,
        ),
      );
      const prompt = tokenizer.encode(spec.instruction);
      if (!prompt.length) throw new InvalidFileError(config.resolved.configFile, `classes[${k}].instruction encodes to no tokens`);
      const meanLen = Math.round(seqs.reduce((a, q) => a + q.length - templateTokens.length, 0) / seqs.length);
      const freeLen = Math.min(config.method.length ?? meanLen, maxT - templateTokens.length, maxT - prompt.length);
      if (freeLen < 1) throw new InvalidFileError(config.resolved.configFile, `classes[${k}]: the instruction and template leave no room in the model's ${maxT}-token context`);
      const prefix = model.createKVCache(1, prompt.length);
      const prefixLogits = await model.decode(prefix, { tokens: Int32Array.from(prompt), T: prompt.length }, { signal: opts.signal });
      classes.push({ name, labelToken: labelIds[0], templateTokens, prefix, prefixLogits, target, freeLen, real, dp });
      log(`class '${name}': ${real.length} real examples, ‖G*‖=${target.norm.toExponential(3)}, ${freeLen} free tokens`);
    }

    // ---- ADMM batches, checkpointed one by one ----
    const jobs: { k: number; r: number; b: number; key: string }[] = [];
    for (let k = 0; k < classes.length; k++)
      for (let r = 0; r < rhos.length; r++)
        for (let b = 0; b < config.method.batches_per_class; b++) jobs.push({ k, r, b, key: `${k}/${r}/${b}` });
    let done = jobs.filter((j) => ckpt.batches[j.key]).length;
    for (const job of jobs) {
      if (ckpt.batches[job.key]) continue;
      const cls = classes[job.k];
      const started = Date.now();
      const result = await runBatch(
        model,
        cls,
        {
          batchSize: config.method.batch_size,
          freeLen: cls.freeLen,
          outerSteps: config.method.outer_steps,
          innerSteps: config.method.inner_steps,
          lr: config.method.lr,
          maxGradNorm: config.method.max_grad_norm,
          rho: rhos[job.r],
          topK: config.method.top_k,
          initCandidates: config.method.init_candidates,
          initTokenNorm: config.method.init_token_norm,
          allowed,
          seed: batchSeed(config.seed, job.k, job.r, job.b),
        },
        {
          signal: opts.signal,
          onProgress: (p) => opts.onProgress?.({ phase: "batch", cls: cls.name, batch: job.b, batchesDone: done, batchesTotal: jobs.length, ...p }),
        },
      );
      const prompt = tokenizer.encode(config.classes[job.k].instruction);
      const losses = await continuationLoss(model, prompt, result.tokens, { signal: opts.signal });
      const seconds = (Date.now() - started) / 1000;
      ckpt.batches[job.key] = { ...result, texts: result.tokens.map((t) => tokenizer.decode(t)), perplexity: losses.map(Math.exp), seconds };
      writeJsonAtomic(ckptFile, ckpt);
      done++;
      opts.onProgress?.({ phase: "batch-done", batchesDone: done, batchesTotal: jobs.length, seconds });
    }

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
    const demos = config.filter.demonstrations
      ? config.filter.demonstrations.map((d) => ({ text: d.text, cls: config.classes.findIndex((c) => String(c.label) === String(d.class)) }))
      : classes.flatMap((c, k) => c.real.slice(0, Math.ceil(config.filter.few_shot / classes.length)).map((e) => ({ text: e.text, cls: k }))).slice(0, config.filter.few_shot);
    const filterResult = config.filter.enabled
      ? await filterSamples(model, tokenizer, samples, {
          classes: config.classes.map((c) => ({ labelWord: c.label_word })),
          template: config.template,
          demonstrations: demos.filter((d) => d.cls >= 0),
          keepPerClass: config.filter.keep_per_class,
          pplWeight: config.filter.ppl_weight,
          dedupe: config.filter.dedupe,
          signal: opts.signal,
        })
      : { kept: samples, stats: {} };
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
      const L = cls.freeLen + templateTokens.length;
      const X = new Float32Array(mine.length * L * C);
      const wte = model.inputEmbeddings();
      mine.forEach((s, b) => [...s.tokens, ...templateTokens].forEach((t, i) => X.set(wte.subarray(t * C, (t + 1) * C), (b * L + i) * C)));
      const f = await withCancel(opts.signal, (t) => model.native.matchLoss(cls.target, { X, B: mine.length, L, label: cls.labelToken }, t));
      return 1 - f;
    };
    const perClass: Record<string, unknown> = {};
    for (let k = 0; k < classes.length; k++) {
      const c = classes[k];
      perClass[c.name] = {
        real_examples: c.real.length,
        free_tokens: c.freeLen,
        target_norm: c.target.norm,
        gradient_cosine_all: await setCosine(samples, k),
        gradient_cosine_filtered: await setCosine(filterResult.kept, k),
        dp: c.dp,
        batches: jobs
          .filter((j) => j.k === k)
          .map((j) => {
            const r = ckpt.batches[j.key];
            return { batch: j.b, rho: rhos[j.r], init_loss: r.initLoss, best_x_loss: r.bestXLoss, decoded_loss: r.decodedLoss, x_loss_per_outer: r.xLossPerOuter, z_loss_per_outer: r.zLossPerOuter, seconds: r.seconds };
          }),
      };
    }
    const publicSample = (s: SyntheticSample) => ({ text: s.text, label: s.label, matching_loss: s.matching_loss, perplexity: s.perplexity, batch: s.batch, rho: s.rho });
    const report = {
      settings: { ...config, resolved: undefined, model_dir: config.resolved.modelDir },
      model: model.config,
      dp: config.dp.enabled ? { epsilon: config.dp.epsilon, delta: config.dp.delta, clip_norm: config.dp.clip_norm, per_class: classes.map((c) => ({ class: c.name, n: c.dp!.n, sigma: c.dp!.sigma, mechanism: c.dp!.mechanism })) } : null,
      classes: perClass,
      filter: filterResult.stats,
      counts: { synthetic: samples.length, filtered: filterResult.kept.length },
      seconds_total: (Date.now() - t0) / 1000,
    };
    writeJsonlAtomic(path.join(outDir, "synthetic.jsonl"), samples.map(publicSample));
    writeJsonlAtomic(path.join(outDir, "filtered.jsonl"), filterResult.kept.map(publicSample));
    writeJsonAtomic(path.join(outDir, "report.json"), report);
    return { outputDir: outDir, samples, filtered: filterResult.kept, report };
  } finally {
    model.dispose();
  }
}
