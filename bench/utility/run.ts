/**
 * `npm run bench -- utility config.yaml`: does the synthetic text train a classifier? For every seed: clean splits,
 * one training set per method (same size per class), label-word fine-tuning with the lr/checkpoint chosen on dev,
 * test accuracy, and set metrics. Every finished unit (a training set, a fine-tuning result, a GRADMM batch) is
 * written atomically, so `--resume` skips it.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { GradmmError, InvalidFileError, CausalLMModel, loadModel, getThreads, setThreads } from "../../ts/index";
import { writeFileAtomic, writeJsonAtomic, findGGUF, type GPT2Model, cacheRoot, sgemmKernel, pieceTokens, startTokens, targetRows } from "../../ts/advanced";
import { METHODS, type MethodName, type UtilityConfig } from "./config";
import { prepareDataset } from "./datasets";
import { finetuneClassifier } from "./finetune";
import { FeatureCache, labelledFeatures, probeClassifier } from "./probe";
import { distinctN, gradientCosine, gradientFactors, longestSharedNgram, setPerplexity, type GradientFactors } from "./metrics";
import { writeUtilityHtml } from "./html";
import { aggregate, formatMarkdown, formatSamplesMarkdown, type SeedResult, type SetMetrics } from "./report";
import { classifierInput, evaluateClassifier, labelPrior, labelWordLogProbs, scoreEvaluation, type ClassifierSpec, type LabelledSeq } from "./scorer";
import { buildContinuous, buildGeneration, buildGradmm, buildReal, writePrivateFile, type BuiltSet, type SeedContext } from "./sets";
import { countByClass, makeTestSplit, readItems, splitForSeed, type Item } from "./splits";

export class UtilityStateError extends GradmmError {
  constructor(message: string) {
    super("UTILITY_STATE", message);
  }
}

export type UtilityProgress = { kind: "log"; message: string } | { kind: "work"; done: number; total: number; stage: string };

export interface UtilityOptions {
  resume?: boolean;
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: UtilityProgress) => void;
}

/** The methods that build a training set (zero_shot_cls does not), in the order they run. */
const SET_METHODS: MethodName[] = ["real", "zero_shot_gen", "few_shot_gen", "gradmm", "gradmm_dp", "continuous_gm"];

function fingerprint(u: UtilityConfig, files: string[]): string {
  const h = createHash("sha256");
  const { output: _o, threads: _t, ...ev } = u.eval;
  h.update(JSON.stringify({ synth: u.synthRaw, eval: ev }));
  for (const f of files) h.update(fs.existsSync(f) ? fs.readFileSync(f) : Buffer.from("missing"));
  return h.digest("hex");
}

/** The files that make the model (hashed into the run's fingerprint): a GGUF file, or a folder's weights + tokenizer. */
function modelFilesOf(modelDir: string): string[] {
  const gguf = findGGUF(modelDir);
  if (gguf) return [gguf];
  return ["model.safetensors", "tokenizer.json"].map((f) => path.join(modelDir, f)).filter((f) => fs.existsSync(f));
}

function readJson<T>(file: string): T | null {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as T) : null;
}

export async function runUtility(u: UtilityConfig, opts: UtilityOptions = {}): Promise<{ outputDir: string; report: ReturnType<typeof aggregate> & Record<string, unknown> }> {
  const t0 = Date.now();
  const log = (message: string) => opts.onProgress?.({ kind: "log", message });
  const ev = u.eval, synth = u.synth;
  if (ev.prepare) await prepareDataset(ev.prepare, u, log);
  const outDir = u.resolved.outputDir;
  const modelDir = synth.resolved.modelDir;
  const dataFiles = [synth.resolved.dataPath, ...(u.resolved.testPath ? [u.resolved.testPath] : [])];
  const modelFiles = modelFilesOf(modelDir);
  const fp = fingerprint(u, [...dataFiles, ...modelFiles]);
  const stateFile = path.join(outDir, "state.json");
  const prev = readJson<{ fingerprint: string; wall_seconds: number }>(stateFile);
  if (prev && !opts.resume && !opts.overwrite) throw new UtilityStateError(`${outDir} already holds a utility run; pass --resume to continue it or --overwrite to replace it`);
  if (prev && opts.resume && prev.fingerprint !== fp) throw new InvalidFileError(stateFile, "this run was made with a different config, model or data; it cannot be resumed (use --overwrite)");
  if (prev && !opts.resume) fs.rmSync(outDir, { recursive: true, force: true });
  const earlierWall = opts.resume && prev ? prev.wall_seconds : 0;
  const saveState = () => writeJsonAtomic(stateFile, { fingerprint: fp, wall_seconds: earlierWall + (Date.now() - t0) / 1000 });
  fs.mkdirSync(outDir, { recursive: true });
  saveState();
  if (ev.threads) setThreads(ev.threads);

  const loaded = loadModel(modelDir);
  if (!loaded.tokenizer) {
    loaded.dispose();
    throw new InvalidFileError(modelDir, "the model has no tokenizer (tokenizer.json or GGUF metadata)");
  }
  const tokenizer = loaded.tokenizer;
  const freshModel = (): GPT2Model => CausalLMModel.load(modelDir);
  const model = loaded.model;
  const modes = ev.modes;
  const cacheDir = ev.cache_dir ? path.resolve(u.baseDir, ev.cache_dir) : path.join(cacheRoot(), "utility", path.basename(outDir));
  const features = modes.includes("probe") ? new FeatureCache(path.join(cacheDir, `features-${fp.slice(0, 16)}.bin`), model.config.channels) : null;
  try {
    const K = synth.classes.length, maxT = model.config.maxSeqLen;
    const spec: ClassifierSpec = {
      labelTokens: synth.classes.map((c) => pieceTokens(tokenizer, c.label_word)[0]),
      templateTokens: pieceTokens(tokenizer, synth.template),
      maxTextTokens: ev.max_text_tokens,
      maxSeqLen: maxT,
    };
    if (new Set(spec.labelTokens).size !== K) throw new InvalidFileError(u.configFile, "classes: two label words share their first token; the classifier could not tell them apart");

    // ---- data: fixed test set, then the pool the seeds draw from ----
    const pool0 = readItems(synth.resolved.dataPath, synth, "pool");
    const testFile = u.resolved.testPath ? readItems(u.resolved.testPath, synth, "test") : null;
    const { test, pool, droppedDuplicates } = makeTestSplit(pool0, testFile, K, ev.test_per_class, ev.split_seed);
    const available = countByClass(pool, K).map((n) => n - ev.dev_per_class);
    const trainPerClass = Math.min(ev.train_per_class, ...available);
    if (trainPerClass < ev.train_per_class) log(`train_per_class ${ev.train_per_class} → ${trainPerClass}: the pool (minus dev) allows no more`);
    log(`data: pool ${pool.length} (${countByClass(pool, K).join("/")}), test ${test.length} (${countByClass(test, K).join("/")}), ${droppedDuplicates} pool texts dropped as duplicates of test texts`);
    const encode = (items: readonly Item[]): LabelledSeq[] => items.map((it) => ({ tokens: startTokens(tokenizer, it.text), cls: it.cls }));
    const testSeqs = encode(test);
    const candidatesPerClass = ev.candidates_per_class ?? synth.method.batch_size * synth.method.batches_per_class;

    // ---- the work plan, weighted by forward-pass token counts (for a progress bar whose ETA means something) ----
    const m = synth.method;
    const rhos = Array.isArray(m.rho) ? m.rho.length : 1;
    const L = m.length! + spec.templateTokens.length;
    const weights = {
      batch: m.batch_size * L * (3 * m.outer_steps * (m.inner_steps + 1) + m.init_candidates + 2 * m.outer_steps),
      genBatch: ev.generation.rows * (m.length! + 40) * 2,
    };
    const seqCost = ev.max_text_tokens + spec.templateTokens.length;
    const finetuneWeight = ev.classifier.lrs.length * (ev.classifier.steps * ev.classifier.batch_size * 3 + Math.ceil(ev.classifier.steps / ev.classifier.eval_every) * ev.dev_per_class * K) * seqCost;
    const testWeight = test.length * seqCost;
    const probeWeight = modes.includes("probe") ? trainPerClass * K * seqCost : 0;
    const on = (name: MethodName) => ev.methods[name];
    const genBatches = K * Math.ceil(candidatesPerClass / ev.generation.rows);
    const perSeed =
      (on("gradmm") ? K * rhos * m.batches_per_class * weights.batch : 0) +
      (on("gradmm_dp") ? K * rhos * m.batches_per_class * weights.batch : 0) +
      (on("continuous_gm") ? K * m.batches_per_class * weights.batch : 0) +
      (on("zero_shot_gen") ? genBatches * weights.genBatch : 0) +
      (on("few_shot_gen") ? genBatches * weights.genBatch : 0) +
      SET_METHODS.filter(on).length * ((modes.includes("finetune") ? finetuneWeight + testWeight : 0) + probeWeight) +
      (on("zero_shot_cls") ? testWeight : 0);
    const total = perSeed * ev.seeds.length;
    let done = 0;
    const tick = (w: number, stage: string) => {
      done = Math.min(total, done + w);
      opts.onProgress?.({ kind: "work", done, total, stage });
    };

    // Per seed: the split, the private file and (lazily) the class targets. Phase 1 builds every training set and
    // scores the cheap modes (probe, zero_shot_cls) seed by seed; phase 2 fine-tunes. So a run spread over many
    // sessions has a probe table for every seed long before the fine-tuning is done.
    interface SeedState {
      seed: number;
      seedDir: string;
      ctx: SeedContext;
      devSeqs: LabelledSeq[];
      privateFile: string;
      privateTexts: string[];
      targets: GradientFactors[] | null;
    }
    const seedState = (seed: number): SeedState => {
      const seedDir = path.join(outDir, `seed-${seed}`);
      fs.mkdirSync(seedDir, { recursive: true });
      const split = splitForSeed(pool, K, { private: synth.data.examples_per_class, dev: ev.dev_per_class, train: trainPerClass }, seed);
      writeJsonAtomic(path.join(seedDir, "split.json"), { private: split.private.map((i) => i.id), dev: split.dev.map((i) => i.id), real: split.real.map((i) => i.id), test: test.map((i) => i.id) });
      const ctx: SeedContext = { u, model, tokenizer, seed, seedDir, split, trainPerClass, candidatesPerClass, signal: opts.signal, tick, log, weights };
      return { seed, seedDir, ctx, devSeqs: encode(split.dev), privateFile: writePrivateFile(ctx), privateTexts: split.private.map((i) => i.text), targets: null };
    };
    const toInput = (d: LabelledSeq) => classifierInput(d.tokens, spec);
    const builtTicked = new Set<string>(), zeroShotTicked = new Set<number>();
    const testFeatures = modes.includes("probe") ? await labelledFeatures(model, testSeqs, toInput, features, opts.signal) : null;

    const results: Record<"finetune" | "probe", SeedResult[]> = { finetune: [], probe: [] };
    const states: SeedState[] = [];
    for (const seed of ev.seeds) {
      const st = seedState(seed);
      states.push(st);
      const probeResult: SeedResult = { seed, methods: {} };
      const devFeatures = modes.includes("probe") ? await labelledFeatures(model, st.devSeqs, toInput, features, opts.signal) : null;
      for (const name of SET_METHODS.filter(on)) {
        const set = await ensureSet(st, name);
        if (!modes.includes("probe")) continue;
        const resFile = path.join(st.seedDir, "results", "probe", `${name}.json`);
        let res = readJson<SeedResult["methods"][string]>(resFile);
        if (!res) {
          const started = Date.now();
          const train = set.texts.map((t) => ({ tokens: startTokens(tokenizer, t.text), cls: t.cls }));
          const trainFeatures = await labelledFeatures(model, train, toInput, features, opts.signal);
          const pr = probeClassifier(trainFeatures, devFeatures!, testFeatures!, K, { l2: ev.probe.l2, steps: ev.probe.steps });
          res = {
            accuracy: pr.accuracy,
            per_class_accuracy: pr.per_class_accuracy,
            test_loss: NaN,
            dev_accuracy: pr.dev_accuracy,
            l2: pr.l2,
            dev_by_l2: pr.dev_by_l2,
            train_accuracy: pr.train_accuracy,
            train_size_per_class: countByClass(set.texts.map((t, i) => ({ id: String(i), text: t.text, cls: t.cls })), K),
            metrics: set.metrics,
            build: set.info,
            seconds: (Date.now() - started) / 1000,
          };
          writeJsonAtomic(resFile, res);
          saveState();
          log(`seed ${seed} ${name}: probe test accuracy ${(100 * pr.accuracy).toFixed(1)}% (l2 ${pr.l2}, dev ${(100 * pr.dev_accuracy).toFixed(1)}%)`);
        }
        tick(probeWeight, `seed ${seed} ${name}: probe`);
        probeResult.methods[name] = res!;
      }
      if (on("zero_shot_cls")) {
        const res = await zeroShot(st);
        probeResult.methods.zero_shot_cls = res;
      }
      results.probe.push(probeResult);
      if (modes.includes("probe")) await writeReport(partialModes());
    }

    if (modes.includes("finetune")) {
      for (const st of states) {
        const seed = st.seed;
        const result: SeedResult = { seed, methods: {} };
        for (const name of SET_METHODS.filter(on)) {
          const set = await ensureSet(st, name);
          // ---- fine-tuning and the test number (unit: results/finetune/<name>.json) ----
          const resFile = path.join(st.seedDir, "results", "finetune", `${name}.json`);
          let res = readJson<SeedResult["methods"][string]>(resFile);
          if (!res) {
            const started = Date.now();
            const train = set.texts.map((t) => ({ tokens: startTokens(tokenizer, t.text), cls: t.cls }));
            const ft = await finetuneClassifier(freshModel, train, st.devSeqs, spec, {
              lrs: ev.classifier.lrs,
              steps: ev.classifier.steps,
              batchSize: ev.classifier.batch_size,
              evalEvery: ev.classifier.eval_every,
              weightDecay: ev.classifier.weight_decay,
              maxGradNorm: ev.classifier.max_grad_norm,
              seed,
              signal: opts.signal,
              onStep: (s) => tick(finetuneWeight / (ev.classifier.lrs.length * ev.classifier.steps), `seed ${seed} ${name}: fine-tune lr ${s.lr} step ${s.step} loss ${s.loss.toFixed(3)}`),
            });
            const tuned = freshModel();
            let testEval;
            try {
              tuned.params.set(ft.params);
              tuned.markParamsChanged();
              testEval = await evaluateClassifier(tuned, testSeqs, spec, { signal: opts.signal });
            } finally {
              tuned.dispose();
            }
            tick(testWeight, `seed ${seed} ${name}: test`);
            res = {
              accuracy: testEval.accuracy,
              per_class_accuracy: testEval.perClassAccuracy,
              test_loss: testEval.loss,
              lr: ft.best.lr,
              step: ft.best.step,
              dev_accuracy: ft.best.devAccuracy,
              dev_curve: ft.curve,
              train_loss: Object.fromEntries(Object.entries(ft.trainLoss).map(([lr, l]) => [lr, { first: l[0], last: l[l.length - 1] }])),
              train_size_per_class: countByClass(set.texts.map((t, i) => ({ id: String(i), text: t.text, cls: t.cls })), K),
              metrics: set.metrics,
              build: set.info,
              seconds: (Date.now() - started) / 1000,
            };
            writeJsonAtomic(resFile, res);
            saveState();
            log(`seed ${seed} ${name}: fine-tuned test accuracy ${(100 * res.accuracy).toFixed(1)}% (lr ${res.lr}, step ${res.step}, dev ${(100 * res.dev_accuracy!).toFixed(1)}%)`);
          } else tick(finetuneWeight + testWeight, `seed ${seed} ${name}: done earlier`);
          result.methods[name] = res;
        }
        if (on("zero_shot_cls")) result.methods.zero_shot_cls = await zeroShot(st);
        results.finetune.push(result);
        await writeReport(partialModes());
      }
    }

    async function ensureSet(st: SeedState, name: MethodName): Promise<BuiltSet & { metrics: SetMetrics }> {
      const setFile = path.join(st.seedDir, "sets", `${name}.json`);
      let set = readJson<BuiltSet & { metrics: SetMetrics }>(setFile);
      if (set) {
        if (!builtTicked.has(setFile)) tick(setWeight(name), `seed ${st.seed} ${name}: done earlier`);
        builtTicked.add(setFile);
        return set;
      }
      log(`seed ${st.seed}: building ${name}`);
      const ctx = st.ctx;
      const built =
        name === "real" ? buildReal(ctx)
        : name === "gradmm" ? await buildGradmm(ctx, false, st.privateFile)
        : name === "gradmm_dp" ? await buildGradmm(ctx, true, st.privateFile)
        : name === "zero_shot_gen" ? await buildGeneration(ctx, false)
        : name === "few_shot_gen" ? await buildGeneration(ctx, true)
        : await buildContinuous(ctx);
      const metrics = await setMetrics(st, built, K);
      set = { ...built, metrics };
      writeJsonAtomic(setFile, set);
      builtTicked.add(setFile);
      saveState();
      return set;
    }

    async function zeroShot(st: SeedState): Promise<SeedResult["methods"][string]> {
      const resFile = path.join(st.seedDir, "results", "zero_shot_cls.json");
      let res = readJson<SeedResult["methods"][string]>(resFile);
      if (!res) {
        const devLp = await labelWordLogProbs(model, st.devSeqs.map(toInput), spec.labelTokens, opts.signal);
        const testLp = await labelWordLogProbs(model, testSeqs.map(toInput), spec.labelTokens, opts.signal);
        const bias = ev.zero_shot_calibrate ? labelPrior(devLp) : new Array<number>(K).fill(0);
        const labels = testSeqs.map((d) => d.cls);
        const calibrated = scoreEvaluation(testLp, labels, K, bias);
        const raw = scoreEvaluation(testLp, labels, K);
        res = {
          accuracy: calibrated.accuracy,
          per_class_accuracy: calibrated.perClassAccuracy,
          test_loss: raw.loss,
          uncalibrated_accuracy: raw.accuracy,
          calibration: ev.zero_shot_calibrate ? { label_prior: bias, from: "mean log p(label word) over the dev texts (labels unused)" } : null,
        };
        writeJsonAtomic(resFile, res);
      }
      if (!zeroShotTicked.has(st.seed)) tick(testWeight, `seed ${st.seed} zero_shot_cls`);
      zeroShotTicked.add(st.seed);
      return res;
    }

    async function setMetrics(st: SeedState, built: BuiltSet, numClasses: number): Promise<SetMetrics> {
      if (!st.targets) {
        // the real target of each class, as GRADMM builds it: private texts cut to the context, + template
        st.targets = [];
        for (let k = 0; k < K; k++) {
          const { seqs } = targetRows(tokenizer, st.ctx.split.private.filter((i) => i.cls === k).map((i) => i.text), spec.templateTokens, maxT);
          st.targets.push(await gradientFactors(model, seqs, seqs.map(() => spec.labelTokens[k]), opts.signal));
        }
      }
      const texts = built.texts.map((t) => t.text);
      const cosines: (number | null)[] = [];
      const ppls: number[] = [];
      for (let k = 0; k < numClasses; k++) {
        const mine = built.texts.filter((t) => t.cls === k).map((t) => pieceTokens(tokenizer, t.text).slice(0, ev.max_text_tokens));
        if (!mine.length) {
          cosines.push(null);
          continue;
        }
        const seqs = mine.map((t) => classifierInput([...tokenizer.prefixIds, ...t], spec));
        cosines.push(gradientCosine(await gradientFactors(model, seqs, seqs.map(() => spec.labelTokens[k]), opts.signal), st.targets[k]));
        ppls.push(await setPerplexity(model, startTokens(tokenizer, synth.classes[k].instruction), mine, opts.signal));
      }
      const leak = longestSharedNgram(texts, st.privateTexts);
      const valid = cosines.filter((c): c is number => c !== null);
      return {
        perplexity: ppls.length ? Math.exp(ppls.reduce((a, p) => a + Math.log(p), 0) / ppls.length) : NaN,
        gradient_cosine: valid.length ? valid.reduce((a, b) => a + b, 0) / valid.length : NaN,
        gradient_cosine_per_class: cosines,
        distinct_1: distinctN(texts, 1),
        distinct_2: distinctN(texts, 2),
        longest_shared_ngram_max: leak.max,
        longest_shared_ngram_mean: leak.mean,
        mean_words: texts.length ? texts.reduce((a, t) => a + t.split(/\s+/).filter(Boolean).length, 0) / texts.length : 0,
        examples: synth.classes.map((_, k) => built.texts.filter((t) => t.cls === k).slice(0, 5).map((t) => t.text)),
      };
    }
    function setWeight(name: MethodName): number {
      if (name === "gradmm" || name === "gradmm_dp") return K * rhos * m.batches_per_class * weights.batch;
      if (name === "continuous_gm") return K * m.batches_per_class * weights.batch;
      if (name === "zero_shot_gen" || name === "few_shot_gen") return genBatches * weights.genBatch;
      return 0;
    }
    function partialModes(): Partial<Record<"finetune" | "probe", SeedResult[]>> {
      return Object.fromEntries(modes.map((md) => [md, results[md]]));
    }

    // ---- the report ----
    const report = await writeReport(partialModes(), true);
    return { outputDir: outDir, report };

    /** report.json / report.md / report.html / accuracy-<mode>.svg from the results so far (written after every seed,
     * so a run spread over sessions always has a current report; `complete` says whether every unit is in). */
    async function writeReport(byMode: Partial<Record<"finetune" | "probe", SeedResult[]>>, complete = false) {
      saveState();
      const state = readJson<{ wall_seconds: number }>(stateFile)!;
      const classNames = synth.classes.map((c) => c.name ?? String(c.label));
      const aggs = Object.fromEntries(Object.entries(byMode).map(([md, rs]) => [md, aggregate(rs!, METHODS.filter(on), classNames)]));
      const first = aggs[modes[0]] ?? { methods: {}, seeds: [] };
      const report = {
        ...first,
        modes: aggs,
        complete,
        settings: {
          config: u.configFile,
          model: modelDir,
          model_files: modelFiles.map((f) => ({ file: path.basename(f), sha256: createHash("sha256").update(fs.readFileSync(f)).digest("hex") })),
          model_config: model.config,
          data: { pool: synth.resolved.dataPath, test: u.resolved.testPath ?? "held-out split of the pool", pool_size: pool.length, test_size: test.length, test_per_class: countByClass(test, K), dropped_duplicates: droppedDuplicates },
          sizes: { private_per_class: synth.data.examples_per_class, dev_per_class: ev.dev_per_class, train_per_class: trainPerClass, candidates_per_class: candidatesPerClass },
          method: synth.method,
          filter: { ...synth.filter, keep_per_class: trainPerClass },
          dp: { epsilon: ev.dp_epsilon, delta: synth.dp.delta, clip_norm: synth.dp.clip_norm },
          eval: ev,
        },
        machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, threads: getThreads(), sgemm_kernel: sgemmKernel(), node: process.version },
        wall_seconds: state.wall_seconds,
        std: "sample standard deviation over seeds (n − 1); ci95: Student-t 95% interval half-width of the mean",
      };
      writeJsonAtomic(path.join(outDir, "report.json"), report);
      const md = Object.entries(aggs).map(([mode, agg]) => `### ${mode}${complete ? "" : " (partial)"}\n\n${formatMarkdown({ ...agg, wall_seconds: state.wall_seconds, machine: report.machine })}`);
      if (first.seeds.length) md.push(`### samples\n\n${formatSamplesMarkdown(first, classNames)}`);
      writeFileAtomic(path.join(outDir, "report.md"), md.join("\n\n") + "\n");
      await writeUtilityHtml(outDir, report, `Utility benchmark: ${path.basename(u.configFile)}`);
      return report;
    }
  } finally {
    model.dispose();
  }
}
