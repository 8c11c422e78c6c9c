/**
 * `npm run bench -- model`: how good the shipped default model is, measured the way its issue asks.
 *
 * - Bits per UTF-8 byte on the IMDB test-half reviews and on the first 65,536 tokens of each source's held-out
 *   slice, next to an interpolated Kneser-Ney trigram trained on the same training tokens (same tokenizer, same
 *   targets; the model reads a sliding window of its context length with stride half of it, the trigram its two
 *   previous tokens).
 * - The paper's IMDB subset (examples/data/imdb): label-word classification (text + " It was" → " great"/" bad").
 *   Per seed: a stratified dev slice of the training file (20%) picks the fine-tuning learning rate and checkpoint;
 *   the rest trains; validation.jsonl is scored once with the chosen weights. Zero-shot: the pretrained model as is,
 *   raw and calibrated (the label-word prior, the mean log-probability of each label word over the dev slice's
 *   unlabelled texts, is subtracted). Baseline: bag-of-words logistic regression on the same training texts, its L2
 *   penalty chosen on the same dev slice.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { readLabelledFile, GPT2Model, mulberry32, resolveModelPath, packageRoot, loadPretrainConfig, prepareCorpus, prepareData, sequenceWindows, type TokenData, evaluateWindows, imdbBitsPerByte, writeFileAtomic, writeJsonAtomic } from "../../ts/advanced";
import { loadModel, Tokenizer } from "../../ts/index";
import { finetuneClassifier } from "../utility/finetune";
import { evaluateClassifier, labelPrior, labelWordLogProbs, scoreEvaluation, classifierInput, type ClassifierSpec, type LabelledSeq } from "../utility/scorer";
import { takeStratified, type Item } from "../utility/splits";
import { predictBow, trainBow } from "./bow";
import { KneserNeyTrigram } from "./kneser_ney";

export interface ModelEvalOptions {
  /** A model folder made by `npm run pretrain` (its recipe's held-out data and Kneser-Ney baseline apply). */
  modelDir?: string;
  /**
   * Any other model loadModel() takes (a known name such as smollm2-135m-instruct, a GGUF file, an HF folder): no
   * pretraining recipe, so bits per byte are measured on the IMDB validation reviews alone, with no Kneser-Ney
   * column; fine-tuning defaults shrink to what a CPU finishes (1 seed, 2 learning rates, 30 steps, 128 text tokens).
   */
  model?: string;
  maxTextTokens?: number;
  configFile?: string;
  dataDir?: string;
  seeds?: number[];
  lrs?: number[];
  steps?: number;
  quick?: boolean;
  log?: (msg: string) => void;
}

export interface BitsRow {
  text: string;
  bytes: number;
  tokens: number;
  modelBitsPerByte: number;
  /** null: no recipe to train the trigram on (a model given by --model). */
  kneserNeyBitsPerByte: number | null;
}

export interface SeedRow {
  seed: number;
  lr: number;
  step: number;
  devAccuracy: number;
  fineTuned: number;
  zeroShot: number;
  zeroShotCalibrated: number;
  bowLambda: number;
  bow: number;
}

export interface ModelEvaluation {
  modelDir: string;
  date: string;
  bits: BitsRow[];
  kneserNey: KneserNeyTrigram["stats"] | null;
  classifier: { train: number; dev: number; test: number; maxTextTokens: number; steps: number; lrs: number[]; seeds: SeedRow[] };
  summary: Record<"fineTuned" | "zeroShot" | "zeroShotCalibrated" | "bow", { mean: number; std: number }>;
}

const meanStd = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
};

/** UTF-8 bytes of a token stream: the text it decodes to, each `<|endoftext|>` counted as one byte (a separator). */
function streamBytes(tok: Tokenizer, ids: ArrayLike<number>, eot: number): number {
  const text: number[] = [];
  let eots = 0;
  for (let i = 0; i < ids.length; i++) (ids[i] === eot ? eots++ : text.push(ids[i]));
  return Buffer.byteLength(tok.decode(text)) + eots;
}

async function bitsPerByte(model: GPT2Model, data: TokenData, kn: KneserNeyTrigram, maxTokens: number, T: number, log: (m: string) => void): Promise<BitsRow[]> {
  const rows: BitsRow[] = [];
  const imdb = await imdbBitsPerByte(model, data, 16, T);
  let knNats = 0;
  for (const r of data.imdbEval) knNats += kn.sequenceNats([data.eotId, ...r.ids]);
  rows.push({ text: `imdb test-half reviews (${imdb.reviews})`, bytes: imdb.bytes, tokens: imdb.tokens, modelBitsPerByte: imdb.bitsPerByte, kneserNeyBitsPerByte: knNats / Math.LN2 / imdb.bytes });
  log(`imdb test reviews: model ${imdb.bitsPerByte.toFixed(3)}, Kneser-Ney ${rows[0].kneserNeyBitsPerByte!.toFixed(3)} bits/byte`);
  for (const [source, stream] of data.val) {
    // a sliding window (stride T/2) over the slice's first maxTokens + 1 tokens, as for the IMDB reviews: every
    // prediction past the first window sees at least T/2 tokens of context
    const head = Array.from(stream.subarray(0, Math.min(stream.length, maxTokens + 1)));
    const r = await evaluateWindows(model, sequenceWindows(head, T), 16, T);
    const targets = stream.subarray(1, 1 + r.tokens); // the windows score stream[1..r.tokens] once each
    const bytes = streamBytes(data.tokenizer, targets, data.eotId);
    const kNats = kn.sequenceNats(stream.subarray(0, 1 + r.tokens));
    rows.push({ text: `${source} held-out`, bytes, tokens: r.tokens, modelBitsPerByte: r.nats / Math.LN2 / bytes, kneserNeyBitsPerByte: kNats / Math.LN2 / bytes });
    log(`${source}: model ${rows.at(-1)!.modelBitsPerByte.toFixed(3)}, Kneser-Ney ${rows.at(-1)!.kneserNeyBitsPerByte!.toFixed(3)} bits/byte`);
  }
  return rows;
}

/** A folder exported by `npm run pretrain` (it has the training log our pretraining writes). */
export function isRecipeModel(dir: string): boolean {
  return fs.existsSync(path.join(dir, "config.json")) && fs.existsSync(path.join(dir, "tokenizer.json")) && fs.existsSync(path.join(dir, "training_log.jsonl"));
}

/** Bits per byte on whole reviews (with the special tokens the tokenizer adds), a sliding window of T with stride T/2. */
async function reviewBitsPerByte(model: GPT2Model, tok: Tokenizer, texts: string[], T: number, log: (m: string) => void): Promise<BitsRow> {
  const windows = texts.flatMap((t) => sequenceWindows(tok.encode(t), T));
  const r = await evaluateWindows(model, windows, 8, T);
  const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
  const row: BitsRow = { text: `imdb validation reviews (${texts.length})`, bytes, tokens: r.tokens, modelBitsPerByte: r.nats / Math.LN2 / bytes, kneserNeyBitsPerByte: null };
  log(`imdb validation reviews: model ${row.modelBitsPerByte.toFixed(3)} bits/byte (${r.tokens} tokens)`);
  return row;
}

export async function evaluateModel(o: ModelEvalOptions = {}): Promise<ModelEvaluation> {
  const root = packageRoot();
  const log = o.log ?? ((m: string) => process.stderr.write(m + "\n"));
  if (o.model && o.modelDir) throw new RangeError("evaluateModel: give modelDir or model, not both");
  const source = o.model ?? o.modelDir ?? path.join(root, "models", "default");
  const resolved = resolveModelPath(source);
  const recipe = o.configFile !== undefined || isRecipeModel(resolved);
  const modelDir = path.resolve(resolved);
  const dataDir = o.dataDir ?? path.join(root, "examples", "data", "imdb");
  const seeds = o.seeds ?? (o.quick || !recipe ? [0] : [0, 1, 2]);
  const lrs = o.lrs ?? (o.quick ? (recipe ? [1e-3] : [1e-4]) : recipe ? [3e-4, 1e-3, 3e-3] : [3e-5, 1e-4]);
  const steps = o.steps ?? (o.quick ? 4 : recipe ? 120 : 30);

  const loaded = loadModel(source);
  const model = loaded.model;
  const fresh = (): GPT2Model => loadModel(source).model;
  if (!loaded.tokenizer) throw new RangeError(`${source}: no tokenizer`);
  const tokenizer = loaded.tokenizer;
  const T = recipe ? model.config.maxSeqLen : Math.min(model.config.maxSeqLen, 512);
  try {
    let bits: BitsRow[];
    let kn: KneserNeyTrigram | null = null;
    if (recipe) {
      // ---- bits per byte (the recipe's held-out data; its tokenizer must be the model's) ----
      const cfg = loadPretrainConfig(o.configFile ?? path.join(root, "configs", "pretrain", "default.yaml"));
      const corpus = prepareCorpus(cfg, log);
      const data = prepareData(cfg, corpus, log);
      if (fs.readFileSync(data.tokenizerFile, "utf8") !== fs.readFileSync(path.join(modelDir, "tokenizer.json"), "utf8"))
        throw new Error(`${modelDir}/tokenizer.json is not the tokenizer of ${cfg.resolved.configFile}'s run: bits per byte would compare different token streams`);
      log(`Kneser-Ney trigram: counting ${data.train.length.toLocaleString("en-US")} training tokens…`);
      kn = new KneserNeyTrigram(data.train, tokenizer.vocabSize);
      bits = await bitsPerByte(model, data, kn, o.quick ? 4096 : 65536, T, log);
    } else {
      const texts = readLabelledFile(path.join(dataDir, "validation.jsonl"), { textField: "text", labelField: "label", classLabels: [0, 1] }).map((e) => e.text);
      bits = [await reviewBitsPerByte(model, tokenizer, o.quick ? texts.slice(0, 8) : texts.slice(0, 100), T, log)];
    }
    // ---- IMDB label-word classification ----
    const classLabels = [0, 1];
    const read = (f: string, tag: string): Item[] =>
      readLabelledFile(path.join(dataDir, f), { textField: "text", labelField: "label", classLabels }).map((e, i) => ({ id: `${tag}:${i}`, text: e.text, cls: e.cls }));
    const trainItems = read("train.jsonl", "train");
    let testItems = read("validation.jsonl", "validation");
    if (o.quick) testItems = takeStratified(testItems, classLabels.length, 20, mulberry32(1), "validation").taken;
    const template = tokenizer.encode(" It was");
    const spec: ClassifierSpec = {
      labelTokens: [" bad", " great"].map((w) => tokenizer.encode(w)[0]),
      templateTokens: template,
      maxTextTokens: o.maxTextTokens ?? (recipe ? T - template.length : 128),
      maxSeqLen: T,
    };
    const seq = (it: Item): LabelledSeq => ({ tokens: tokenizer.encode(it.text), cls: it.cls });
    const test = testItems.map(seq);
    const testLogProbs = await labelWordLogProbs(model, test.map((d) => classifierInput(d.tokens, spec)), spec.labelTokens);
    const devPerClass = Math.round((0.2 * trainItems.length) / classLabels.length);
    const rows: SeedRow[] = [];
    let trainCount = 0;
    for (const seed of seeds) {
      const { taken: devItems, rest } = takeStratified(trainItems, classLabels.length, o.quick ? 8 : devPerClass, mulberry32(1000 + seed), "dev slice");
      const trainPart = o.quick ? rest.slice(0, 32) : rest;
      const trainSet = trainPart.map(seq);
      const dev = devItems.map(seq);
      trainCount = trainSet.length;
      // zero-shot, calibrated on the dev slice's texts (their labels unused)
      const devLogProbs = await labelWordLogProbs(model, dev.map((d) => classifierInput(d.tokens, spec)), spec.labelTokens);
      const labels = test.map((d) => d.cls);
      const zeroShot = scoreEvaluation(testLogProbs, labels, 2).accuracy;
      const zeroShotCalibrated = scoreEvaluation(testLogProbs, labels, 2, labelPrior(devLogProbs)).accuracy;
      // fine-tuning
      const ft = await finetuneClassifier(fresh, trainSet, dev, spec, {
        lrs,
        steps,
        batchSize: 16,
        evalEvery: Math.max(1, Math.floor(steps / 6)),
        weightDecay: 0.01,
        maxGradNorm: 1,
        seed,
      });
      const tuned = fresh();
      let fineTuned: number;
      try {
        tuned.params.set(ft.params);
        tuned.markParamsChanged();
        fineTuned = (await evaluateClassifier(tuned, test, spec)).accuracy;
      } finally {
        tuned.dispose();
      }
      // bag-of-words baseline, λ chosen on the same dev slice
      const trainTexts = trainPart.map((x) => x.text);
      const trainLabels = trainPart.map((x) => x.cls);
      let best = { lambda: 0, dev: -1 };
      for (const lambda of [1e-4, 1e-3, 1e-2]) {
        const bow = trainBow(trainTexts, trainLabels, 2, { lambda, iterations: o.quick ? 20 : 300 });
        const acc = devItems.filter((x) => predictBow(bow, x.text) === x.cls).length / devItems.length;
        if (acc > best.dev) best = { lambda, dev: acc };
      }
      const bow = trainBow(trainTexts, trainLabels, 2, { lambda: best.lambda, iterations: o.quick ? 20 : 300 });
      const bowAcc = testItems.filter((x) => predictBow(bow, x.text) === x.cls).length / testItems.length;
      rows.push({ seed, lr: ft.best.lr, step: ft.best.step, devAccuracy: ft.best.devAccuracy, fineTuned, zeroShot, zeroShotCalibrated, bowLambda: best.lambda, bow: bowAcc });
      log(`seed ${seed}: fine-tuned ${(100 * fineTuned).toFixed(1)}% (lr ${ft.best.lr}, step ${ft.best.step}, dev ${(100 * ft.best.devAccuracy).toFixed(1)}%), zero-shot ${(100 * zeroShot).toFixed(1)}% / calibrated ${(100 * zeroShotCalibrated).toFixed(1)}%, bag-of-words ${(100 * bowAcc).toFixed(1)}%`);
    }
    const pick = (k: "fineTuned" | "zeroShot" | "zeroShotCalibrated" | "bow") => meanStd(rows.map((r) => r[k]));
    return {
      modelDir: recipe ? path.relative(root, modelDir) || "." : source,
      date: new Date().toISOString(),
      bits,
      kneserNey: kn?.stats ?? null,
      classifier: { train: trainCount, dev: 2 * (o.quick ? 8 : devPerClass), test: test.length, maxTextTokens: spec.maxTextTokens, steps, lrs, seeds: rows },
      summary: { fineTuned: pick("fineTuned"), zeroShot: pick("zeroShot"), zeroShotCalibrated: pick("zeroShotCalibrated"), bow: pick("bow") },
    };
  } finally {
    model.dispose();
  }
}

const pct = (x: { mean: number; std: number }) => `${(100 * x.mean).toFixed(1)} ± ${(100 * x.std).toFixed(1)}%`;

/** The evaluation as the Markdown section of the model card. */
export function formatModelEvaluation(e: ModelEvaluation): string {
  const c = e.classifier;
  const L = [
    "| text | bytes | tokens | this model, bits/byte | Kneser-Ney trigram, bits/byte |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...e.bits.map((r) => `| ${r.text} | ${r.bytes.toLocaleString("en-US")} | ${r.tokens.toLocaleString("en-US")} | **${r.modelBitsPerByte.toFixed(3)}** | ${r.kneserNeyBitsPerByte === null ? "–" : r.kneserNeyBitsPerByte.toFixed(3)} |`),
    "",
    e.kneserNey
      ? `Kneser-Ney: interpolated, one discount per order (${e.kneserNey.discounts.map((d) => d.toFixed(3)).join(" / ")} for uni/bi/trigrams), trained on the same ${e.kneserNey.tokens.toLocaleString("en-US")} training tokens (${e.kneserNey.trigramTypes.toLocaleString("en-US")} trigram types). Each \`<|endoftext|>\` counts as one byte.`
      : "No pretraining recipe for this model, so no Kneser-Ney trigram on its training tokens: bits per byte of whole reviews under the model's own tokenizer (with the special tokens it adds), a sliding window with stride half of it.",
    "",
    `IMDB label-word classification (examples/data/imdb, text cut to its first ${c.maxTextTokens} tokens + " It was" → " great" / " bad"), ${c.seeds.length} seed(s); per seed a stratified dev slice of ${c.dev} training reviews chooses the learning rate (${c.lrs.join(", ")}) and checkpoint (${c.steps} AdamW steps of 16), ${c.train} train, ${c.test} validation reviews scored once:`,
    "",
    "| classifier | validation accuracy |",
    "| --- | ---: |",
    `| fine-tuned (full model) | **${pct(e.summary.fineTuned)}** |`,
    `| zero-shot, calibrated (label-word prior from the dev slice's unlabelled texts subtracted) | **${pct(e.summary.zeroShotCalibrated)}** |`,
    `| zero-shot, raw | ${pct(e.summary.zeroShot)} |`,
    `| bag-of-words logistic regression (same training texts, L2 chosen on dev) | ${pct(e.summary.bow)} |`,
    "",
    "| seed | lr | step | dev | fine-tuned | zero-shot | calibrated | bag-of-words (λ) |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...c.seeds.map((s) => `| ${s.seed} | ${s.lr} | ${s.step} | ${(100 * s.devAccuracy).toFixed(1)} | ${(100 * s.fineTuned).toFixed(1)} | ${(100 * s.zeroShot).toFixed(1)} | ${(100 * s.zeroShotCalibrated).toFixed(1)} | ${(100 * s.bow).toFixed(1)} (${s.bowLambda}) |`),
  ];
  return L.join("\n");
}

/** Writes evaluation.json and evaluation.md next to the model (atomic); the model card includes evaluation.md. */
export function saveModelEvaluation(e: ModelEvaluation, dir: string): void {
  writeJsonAtomic(path.join(dir, "evaluation.json"), e);
  writeFileAtomic(path.join(dir, "evaluation.md"), formatModelEvaluation(e) + "\n");
}
