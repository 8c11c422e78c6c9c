/**
 * Building each method's training set for one seed. Every generator gets the same raw budget per class and goes
 * through the same filter (ts/gradmm/filter.ts: label agreement in a few-shot prompt, de-duplication, ranking,
 * balancing); if fewer than `trainPerClass` pass, the best remaining samples of that class top the set up (reported).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { withCancel, writeJsonAtomic, pickDemonstrations, readCheckpoint, checkpointMatches, fingerprint, writeJsonlAtomic, filterSamples, type SyntheticSample, continuationLoss, type BatchResult, type BatchSettings, type ClassSetup, type GPT2Model, mulberry32, alphabeticTokenMask, shuffled, pieceTokens, startTokens, promptPrefix, targetRows, labelWordRows, labelTokens } from "../../ts/advanced";
import { InvalidFileError, synthesize, type SynthConfig, type Tokenizer } from "../../ts/index";
import { derivedSynthConfig, type UtilityConfig } from "./config";
import { runContinuousBatch } from "./continuous";
import { bannedForGeneration, fewShotPrompt, sampleContinuations } from "./generate";
import type { Item, SeedSplit } from "./splits";

export interface SetText {
  text: string;
  cls: number;
}

export interface BuiltSet {
  texts: SetText[];
  info: Record<string, unknown>;
}

export interface SeedContext {
  u: UtilityConfig;
  model: GPT2Model;
  tokenizer: Tokenizer;
  seed: number;
  seedDir: string;
  split: SeedSplit;
  trainPerClass: number;
  /** Raw samples per class of every generator. */
  candidatesPerClass: number;
  signal?: AbortSignal;
  /** Work done (progress weights: see run.ts). */
  tick: (weight: number, stage: string) => void;
  log: (message: string) => void;
  weights: { batch: number; genBatch: number };
}

const numClasses = (ctx: SeedContext) => ctx.u.synth.classes.length;

/** `real`: the seed's random real examples. */
export function buildReal(ctx: SeedContext): BuiltSet {
  return { texts: ctx.split.real.map((it) => ({ text: it.text, cls: it.cls })), info: { source: "random real examples (pool minus dev and test)" } };
}

/** Private examples as the synth pipeline reads them: a JSONL with the config's text and label fields. */
export function writePrivateFile(ctx: SeedContext): string {
  const file = path.join(ctx.seedDir, "private.jsonl");
  const { text_field, label_field } = ctx.u.synth.data;
  writeJsonlAtomic(
    file,
    ctx.split.private.map((it) => ({ [text_field]: it.text, [label_field]: ctx.u.synth.classes[it.cls].label })),
  );
  return file;
}

/** The demonstrations of the label-agreement filter, as synthesize() picks them (explicit ones, else private examples). */
function filterDemonstrations(ctx: SeedContext): { text: string; cls: number }[] {
  const f = ctx.u.synth.filter, classes = ctx.u.synth.classes;
  if (f.demonstrations)
    return f.demonstrations.map((d) => ({ text: d.text, cls: classes.findIndex((c) => String(c.label) === String(d.class)) })).filter((d) => d.cls >= 0);
  return pickDemonstrations(classes.map((_, k) => ctx.split.private.filter((it) => it.cls === k)), f.few_shot).map((d) => ({ text: d.item.text, cls: d.cls }));
}

/** The filter, then top-up to trainPerClass from the samples that did not pass (best score first). */
async function filterAndFill(ctx: SeedContext, samples: SyntheticSample[], demos: { text: string; cls: number }[]): Promise<{ kept: SyntheticSample[]; info: Record<string, unknown> }> {
  const f = ctx.u.synth.filter, K = numClasses(ctx);
  const r = await filterSamples(ctx.model, ctx.tokenizer, samples, {
    classes: ctx.u.synth.classes.map((c) => ({ labelWord: c.label_word })),
    template: ctx.u.synth.template,
    demonstrations: demos,
    keepPerClass: ctx.trainPerClass,
    pplWeight: f.ppl_weight,
    dedupe: f.dedupe,
    signal: ctx.signal,
  });
  const filled = fillToSize(r.kept, samples, K, ctx.trainPerClass, f.ppl_weight);
  return { kept: filled.set, info: { raw_per_class: countPerClass(samples, K), filter: r.stats, passed_filter_per_class: countPerClass(r.kept, K), topped_up_per_class: filled.toppedUp } };
}

function countPerClass(s: readonly { cls: number }[], K: number): number[] {
  const n = new Array<number>(K).fill(0);
  for (const x of s) n[x.cls]++;
  return n;
}

/** Tops every class up to `perClass` with unkept samples (unique texts), lowest matching loss + α·log-ppl first. */
export function fillToSize(kept: SyntheticSample[], all: SyntheticSample[], K: number, perClass: number, pplWeight: number): { set: SyntheticSample[]; toppedUp: number[] } {
  const score = (s: SyntheticSample) => s.matching_loss + pplWeight * Math.log(s.perplexity);
  const set: SyntheticSample[] = [];
  const toppedUp: number[] = [];
  for (let k = 0; k < K; k++) {
    const mine = kept.filter((s) => s.cls === k).slice(0, perClass);
    const texts = new Set(mine.map((s) => s.text.trim()));
    const spare = all
      .filter((s) => s.cls === k && !mine.includes(s))
      .sort((a, b) => score(a) - score(b) || a.batch - b.batch);
    let added = 0;
    for (const s of spare) {
      if (mine.length >= perClass) break;
      if (texts.has(s.text.trim())) continue;
      texts.add(s.text.trim());
      mine.push(s);
      added++;
    }
    set.push(...mine);
    toppedUp.push(added);
  }
  return { set, toppedUp };
}

/**
 * `eval.reuse_batches_from`: copies another run's checkpoint of this seed's batches into this run's synth folder
 * (when it has none), after checking that they were made by the same batch config, model and data; synthesize()
 * then resumes them all and only filters. A seed the other run has not finished is generated here.
 */
function reuseBatches(fromDir: string, config: SynthConfig, ctx: SeedContext, name: string): void {
  const to = path.join(config.resolved.outputDir, "checkpoint.json");
  if (fs.existsSync(to)) return;
  const from = path.join(fromDir, "checkpoint.json");
  if (!fs.existsSync(from)) {
    ctx.log(`seed ${ctx.seed} ${name}: eval.reuse_batches_from has no batches at ${from}; generating them here`);
    return;
  }
  const prev = readCheckpoint(from);
  if (!checkpointMatches(config, prev.fingerprint, fromDir))
    throw new InvalidFileError(from, `eval.reuse_batches_from: these ${name} batches were made with another method, dp, data, model or seed than this run's, so they cannot stand in for its own`);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  writeJsonAtomic(to, { ...prev, fingerprint: fingerprint(config) });
  ctx.log(`seed ${ctx.seed} ${name}: ${Object.keys(prev.batches).length} batches copied from ${from}`);
}

/** `gradmm` / `gradmm_dp`: the synth pipeline on the seed's private examples. */
export async function buildGradmm(ctx: SeedContext, dp: boolean, privateFile: string): Promise<BuiltSet> {
  const { u } = ctx;
  const name = dp ? "gradmm_dp" : "gradmm";
  const K = numClasses(ctx);
  const config = derivedSynthConfig(u, {
    data: { path: privateFile, examples_per_class: u.synth.data.examples_per_class },
    filter: { keep_per_class: ctx.trainPerClass, ...(dp && !u.synth.filter.demonstrations ? { few_shot: 0 } : {}) },
    dp: { enabled: dp, epsilon: u.eval.dp_epsilon },
    output: path.join(ctx.seedDir, name),
    seed: ctx.seed,
    threads: u.eval.threads,
  });
  if (u.resolved.reuseBatchesFrom) reuseBatches(path.join(u.resolved.reuseBatchesFrom, path.basename(ctx.seedDir), name), config, ctx, name);
  const started = Date.now();
  let ticked = 0;
  const r = await synthesize(config, {
    resume: true,
    signal: ctx.signal,
    onProgress: (p) => {
      if (p.phase === "batch-done") {
        ticked++;
        ctx.tick(ctx.weights.batch, `seed ${ctx.seed} ${name}: batch ${p.batchesDone}/${p.batchesTotal} (${p.seconds.toFixed(0)} s)`);
      } else if (p.phase === "setup" && p.message.startsWith("resuming")) ctx.log(`seed ${ctx.seed} ${name}: ${p.message}`);
    },
  });
  const rhos = Array.isArray(u.synth.method.rho) ? u.synth.method.rho.length : 1;
  ctx.tick(Math.max(0, K * rhos * u.synth.method.batches_per_class - ticked) * ctx.weights.batch, `seed ${ctx.seed} ${name}: filtered`);
  const filled = fillToSize(r.filtered, r.samples, K, ctx.trainPerClass, u.synth.filter.ppl_weight);
  const report = r.report as { dp: unknown; filter: unknown; classes: Record<string, { gradient_cosine_all: number | null; batches: { best_x_loss: number; decoded_loss: number; init_loss: number }[] }> };
  return {
    texts: filled.set.map((s) => ({ text: s.text, cls: s.cls })),
    info: {
      synth_output: config.resolved.outputDir,
      raw_per_class: countPerClass(r.samples, K),
      filter: report.filter,
      passed_filter_per_class: countPerClass(r.filtered, K),
      topped_up_per_class: filled.toppedUp,
      dp: report.dp,
      matching: Object.fromEntries(
        Object.entries(report.classes).map(([c, v]) => [
          c,
          {
            init_loss: mean(v.batches.map((b) => b.init_loss)),
            best_x_loss: mean(v.batches.map((b) => b.best_x_loss)),
            decoded_loss: mean(v.batches.map((b) => b.decoded_loss)),
          },
        ]),
      ),
      seconds: (Date.now() - started) / 1000,
    },
  };
}

function mean(a: number[]): number {
  return a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN;
}

/** `zero_shot_gen` / `few_shot_gen`: nucleus sampling after the class instruction (with k private demonstrations). */
export async function buildGeneration(ctx: SeedContext, fewShot: boolean): Promise<BuiltSet> {
  const { u, model, tokenizer } = ctx;
  const name = fewShot ? "few_shot_gen" : "zero_shot_gen";
  const g = u.eval.generation, len = u.synth.method.length!;
  const banned = bannedForGeneration(tokenizer, model.config.vocabSize);
  const rng = mulberry32((fewShot ? 0xf5 : 0x25) ^ (ctx.seed * 2654435761));
  const samples: SyntheticSample[] = [];
  const started = Date.now();
  for (let k = 0; k < u.synth.classes.length; k++) {
    const spec = u.synth.classes[k];
    const mine = ctx.split.private.filter((it) => it.cls === k);
    const instruction = startTokens(tokenizer, spec.instruction);
    for (let b = 0; samples.filter((s) => s.cls === k).length < ctx.candidatesPerClass; b++) {
      const rows = Math.min(g.rows, ctx.candidatesPerClass - samples.filter((s) => s.cls === k).length);
      const demos = fewShot ? shuffled(mine, rng).slice(0, g.few_shot_k).map((it: Item) => it.text) : [];
      const prompt = fewShot ? fewShotPrompt(tokenizer, spec.instruction, demos, len, model.config.maxSeqLen) : instruction;
      const outs = await sampleContinuations(model, prompt, rows, len, { temperature: g.temperature, topP: g.top_p, banned, rng, signal: ctx.signal });
      const losses = await continuationLoss(model, instruction, outs, { signal: ctx.signal });
      outs.forEach((tokens, i) =>
        samples.push({ text: tokenizer.decode(tokens), label: spec.label, cls: k, tokens, matching_loss: 0, perplexity: Math.exp(losses[i]), batch: b, rho: 0 }),
      );
      ctx.tick(ctx.weights.genBatch * (rows / g.rows), `seed ${ctx.seed} ${name}: class ${spec.name ?? spec.label} ${samples.filter((s) => s.cls === k).length}/${ctx.candidatesPerClass}`);
    }
  }
  const { kept, info } = await filterAndFill(ctx, samples, filterDemonstrations(ctx));
  writeJsonlAtomic(path.join(ctx.seedDir, `${name}.raw.jsonl`), samples.map((s) => ({ text: s.text, label: s.label, batch: s.batch })));
  return { texts: kept.map((s) => ({ text: s.text, cls: s.cls })), info: { ...info, matching_loss: "not used (0): ranking falls back to generation order", seconds: (Date.now() - started) / 1000 } };
}

/** The per-class pieces runBatch needs, built as synthesize() builds them (no DP). */
export async function classSetups(ctx: SeedContext): Promise<(ClassSetup & { freeLen: number; instruction: number[] })[]> {
  const { u, model, tokenizer } = ctx;
  const maxT = model.config.maxSeqLen;
  const templateTokens = pieceTokens(tokenizer, u.synth.template), leadTokens = startTokens(tokenizer);
  const out: (ClassSetup & { freeLen: number; instruction: number[] })[] = [];
  const labelTokenIds = labelTokens(tokenizer, u.synth.classes.map((c) => c.label_word), (k, message) => {
    throw new InvalidFileError(u.synth.resolved.configFile, `classes[${k}].label_word ${message}`);
  });
  const labelRows = labelWordRows(u.synth.method.target_rows, labelTokenIds);
  const rows = labelRows ? { rows: labelRows } : {};
  for (let k = 0; k < u.synth.classes.length; k++) {
    const spec = u.synth.classes[k];
    const real = ctx.split.private.filter((it) => it.cls === k);
    const { tokens, T, lastPos } = targetRows(tokenizer, real.map((e) => e.text), templateTokens, maxT);
    const labelToken = labelTokenIds[k];
    const target = await withCancel(ctx.signal, (t) =>
      model.native.buildTarget({ tokens, n: real.length, T, lastPos, labels: new Int32Array(real.length).fill(labelToken), clipNorm: 0, noiseStd: 0, noiseSeed: 0, ...rows }, t),
    );
    const instruction = startTokens(tokenizer, spec.instruction);
    const { prefix, prefixLogits } = await promptPrefix(model, instruction, ctx.signal);
    const freeLen = Math.min(u.synth.method.length!, maxT - templateTokens.length - leadTokens.length, maxT - instruction.length);
    out.push({ labelToken, templateTokens, leadTokens, prefix, prefixLogits, target, freeLen, instruction });
  }
  return out;
}

/** `continuous_gm`: Adam on f over continuous embeddings, nearest-token decoding, then the same filter. */
export async function buildContinuous(ctx: SeedContext): Promise<BuiltSet> {
  const { u, model, tokenizer } = ctx;
  const m = u.synth.method;
  const dir = path.join(ctx.seedDir, "continuous_gm");
  fs.mkdirSync(dir, { recursive: true });
  const ckptFile = path.join(dir, "checkpoint.json");
  const ckpt: { batches: Record<string, BatchResult & { seconds: number }> } = fs.existsSync(ckptFile) ? JSON.parse(fs.readFileSync(ckptFile, "utf8")) : { batches: {} };
  const allowed = m.allowed_tokens === "alphabetic" ? alphabeticTokenMask(tokenizer) : new Uint8Array(model.config.vocabSize).fill(1);
  const setups = await classSetups(ctx);
  const samples: SyntheticSample[] = [];
  const started = Date.now();
  for (let k = 0; k < setups.length; k++) {
    const cls = setups[k];
    for (let b = 0; b < m.batches_per_class; b++) {
      const key = `${k}/${b}`;
      if (!ckpt.batches[key]) {
        const t0 = Date.now();
        const settings: BatchSettings = {
          batchSize: m.batch_size,
          freeLen: cls.freeLen,
          outerSteps: m.outer_steps,
          innerSteps: m.inner_steps,
          lr: m.lr,
          maxGradNorm: m.max_grad_norm,
          rho: 0,
          topK: 1,
          initCandidates: m.init_candidates,
          initTokenNorm: m.init_token_norm,
          allowed,
          seed: (0xc0 + ctx.seed * 1000003 + k * 7919 + b) >>> 0,
        };
        const r = await runContinuousBatch(model, cls, settings, { signal: ctx.signal });
        ckpt.batches[key] = { ...r, seconds: (Date.now() - t0) / 1000 };
        writeJsonAtomic(ckptFile, ckpt);
      }
      ctx.tick(ctx.weights.batch, `seed ${ctx.seed} continuous_gm: class ${k} batch ${b + 1}/${m.batches_per_class}`);
      const r = ckpt.batches[key];
      const losses = await continuationLoss(model, cls.instruction, r.tokens, { signal: ctx.signal });
      r.tokens.forEach((tokens, i) =>
        samples.push({ text: tokenizer.decode(tokens), label: u.synth.classes[k].label, cls: k, tokens, matching_loss: r.perSampleLoss[i], perplexity: Math.exp(losses[i]), batch: b, rho: 0 }),
      );
    }
  }
  const { kept, info } = await filterAndFill(ctx, samples, filterDemonstrations(ctx));
  const batches = Object.values(ckpt.batches);
  return {
    texts: kept.map((s) => ({ text: s.text, cls: s.cls })),
    info: {
      ...info,
      matching: { init_loss: mean(batches.map((b) => b.initLoss)), best_x_loss: mean(batches.map((b) => b.bestXLoss)), decoded_loss: mean(batches.map((b) => b.decodedLoss)) },
      seconds: (Date.now() - started) / 1000,
    },
  };
}
