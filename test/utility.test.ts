// The utility benchmark (bench/utility): splits, the label-word scorer, the fine-tuner, the set metrics, sampling,
// and a whole tiny run with --resume, on test/fixtures/tiny_lm.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseUtilityConfig, loadUtilityConfig } from "../bench/utility/config";
import { finetuneClassifier } from "../bench/utility/finetune";
import { bannedForGeneration, fewShotPrompt, sampleContinuations, sampleToken } from "../bench/utility/generate";
import { distinctN, gradientCosine, gradientFactors, longestSharedNgram, words } from "../bench/utility/metrics";
import { meanStd } from "../bench/utility/report";
import { runUtility } from "../bench/utility/run";
import { collectTrajectories } from "../bench/utility/html";
import { fitLogistic, predictLogistic, probeClassifier } from "../bench/utility/probe";
import { spawn, spawnSync } from "node:child_process";
import { classifierInput, evaluateClassifier, labelPrior, labelWordLogProbs, scoreEvaluation, type ClassifierSpec } from "../bench/utility/scorer";
import { fillToSize } from "../bench/utility/sets";
import { countByClass, makeTestSplit, normalizeText, splitForSeed, type Item } from "../bench/utility/splits";
import { messageText } from "../bench/utility/datasets";
import { DatasetSourceMissingError, fortuneEntries, fortunesSplit, prepareDataset } from "../bench/utility/datasets";
import { readItems } from "../bench/utility/splits";
import type { SyntheticSample } from "../ts/gradmm/filter";
import { ConfigError } from "../ts/errors";
import { GPT2Model } from "../ts/model";
import { mulberry32 } from "../ts/random";
import { Tokenizer } from "../ts/tokenizer";

const root = path.join(__dirname, "..");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
const imdb = path.join(root, "examples", "data", "imdb");

let tmp: string;
let model: GPT2Model;
let tok: Tokenizer;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-utility-"));
  model = GPT2Model.load(tinyLM);
  tok = Tokenizer.fromFile(path.join(tinyLM, "tokenizer.json"));
});
afterAll(() => {
  model?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function items(n: number[], tag = "p"): Item[] {
  const out: Item[] = [];
  n.forEach((count, cls) => {
    for (let i = 0; i < count; i++) out.push({ id: `${tag}:${cls}-${i}`, text: `text ${tag} ${cls} ${i}`, cls });
  });
  return out;
}

describe("splits", () => {
  it("holds out a stratified test set and draws disjoint, stratified private/dev/real sets per seed", () => {
    const pool = items([60, 80]);
    const { test, pool: rest } = makeTestSplit(pool, null, 2, 10, 1);
    expect(countByClass(test, 2)).toEqual([10, 10]);
    expect(rest).toHaveLength(120);
    const testIds = new Set(test.map((t) => t.id));
    for (const seed of [0, 1, 2]) {
      const s = splitForSeed(rest, 2, { private: 5, dev: 7, train: 20 }, seed);
      expect(countByClass(s.private, 2)).toEqual([5, 5]);
      expect(countByClass(s.dev, 2)).toEqual([7, 7]);
      expect(countByClass(s.real, 2)).toEqual([20, 20]);
      const ids = (a: Item[]) => new Set(a.map((x) => x.id));
      const [priv, dev, real] = [ids(s.private), ids(s.dev), ids(s.real)];
      for (const id of dev) expect(priv.has(id) || real.has(id)).toBe(false);
      for (const id of [...priv, ...dev, ...real]) expect(testIds.has(id)).toBe(false);
    }
    // seeds differ, the same seed repeats
    expect(splitForSeed(rest, 2, { private: 5, dev: 7, train: 20 }, 0).private.map((x) => x.id)).toEqual(splitForSeed(rest, 2, { private: 5, dev: 7, train: 20 }, 0).private.map((x) => x.id));
    expect(splitForSeed(rest, 2, { private: 5, dev: 7, train: 20 }, 0).private.map((x) => x.id)).not.toEqual(splitForSeed(rest, 2, { private: 5, dev: 7, train: 20 }, 1).private.map((x) => x.id));
  });

  it("uses a separate test file as the test set and drops pool texts equal to a test text", () => {
    const pool = items([20, 20]);
    const testFile: Item[] = [
      { id: "t:0", text: "  TEXT p 0 3 ", cls: 0 },
      { id: "t:1", text: "something else", cls: 1 },
    ];
    const r = makeTestSplit(pool, testFile, 2, null, 1);
    expect(r.test).toEqual(testFile);
    expect(r.droppedDuplicates).toBe(1);
    expect(r.pool.map((x) => normalizeText(x.text))).not.toContain("text p 0 3");
    // a cap keeps the test set balanced
    expect(countByClass(makeTestSplit(pool, [...testFile, { id: "t:2", text: "x", cls: 1 }], 2, 5, 1).test, 2)).toEqual([1, 1]);
  });

  it("refuses a class too small for the requested sizes", () => {
    expect(() => splitForSeed(items([30, 8]), 2, { private: 5, dev: 5, train: 5 }, 0)).toThrow(/dev slice: class 1 has 3 examples, 5 needed/);
  });
});

function tinySpec(): ClassifierSpec {
  return { labelTokens: [tok.encode(" bad")[0], tok.encode(" great")[0]], templateTokens: tok.encode(" It was"), maxTextTokens: 12, maxSeqLen: model.config.maxSeqLen };
}

describe("label-word scorer", () => {
  it("gives log p(label word) equal to a direct forward's cross-entropy", async () => {
    const spec = tinySpec();
    const texts = ["the film was a joy", "boring and long, I left early", "ok"];
    const seqs = texts.map((t) => classifierInput(tok.encode(t), spec));
    const lp = await labelWordLogProbs(model, seqs, spec.labelTokens);
    for (let i = 0; i < seqs.length; i++)
      for (let k = 0; k < 2; k++) {
        const T = seqs[i].length;
        const targets = new Int32Array(T), lossMask = new Float32Array(T);
        targets[T - 1] = spec.labelTokens[k];
        lossMask[T - 1] = 1;
        const ce = await model.forward({ tokens: Int32Array.from(seqs[i]), targets, lossMask, B: 1, T });
        expect(lp[i][k]).toBeCloseTo(-ce, 4);
      }
  });

  it("cuts texts to maxTextTokens and appends the template", () => {
    const spec = tinySpec();
    const toks = Array.from({ length: 40 }, (_, i) => i + 10);
    const seq = classifierInput(toks, spec);
    expect(seq).toEqual([...toks.slice(0, 12), ...spec.templateTokens]);
  });

  it("scores accuracy, per-class accuracy and a calibrated prior", () => {
    const lp = [[-1, -2], [-1, -3], [-2, -1], [-1.5, -1.6]].map((r) => r.map(Number));
    const e = scoreEvaluation(lp, [0, 1, 1, 1], 2);
    expect(e.predictions).toEqual([0, 0, 1, 0]);
    expect(e.accuracy).toBe(0.5);
    expect(e.perClassAccuracy).toEqual([1, 1 / 3]);
    // the prior of label 0 is higher on these texts; subtracting it flips the close call
    const bias = labelPrior(lp);
    expect(bias[0]).toBeGreaterThan(bias[1]);
    expect(scoreEvaluation(lp, [0, 1, 1, 1], 2, bias).predictions[3]).toBe(1);
  });
});

describe("fine-tuner", () => {
  it("lowers the label-word loss on a toy set and picks the checkpoint on dev", async () => {
    const spec = tinySpec();
    const toy = [
      ["a wonderful film", 1], ["great acting and story", 1], ["I loved it", 1], ["a joy to watch", 1],
      ["awful and dull", 0], ["a waste of time", 0], ["terrible plot", 0], ["I hated it", 0],
    ].map(([t, c]) => ({ tokens: tok.encode(t as string), cls: c as number }));
    const before = await evaluateClassifier(model, toy, spec);
    const r = await finetuneClassifier(() => GPT2Model.load(tinyLM), toy, toy, spec, { lrs: [3e-3, 1e-2], steps: 30, batchSize: 8, evalEvery: 10, weightDecay: 0, maxGradNorm: 1, seed: 0 });
    for (const lr of ["0.003", "0.01"]) {
      const l = r.trainLoss[lr];
      expect(l).toHaveLength(30);
      expect(l[l.length - 1]).toBeLessThan(0.5 * l[0]);
    }
    expect(r.curve).toHaveLength(6);
    const best = r.curve.reduce((a, b) => (b.devAccuracy > a.devAccuracy || (b.devAccuracy === a.devAccuracy && b.devLoss < a.devLoss) ? b : a));
    expect(r.best).toEqual(best);
    const tuned = GPT2Model.load(tinyLM);
    tuned.params.set(r.params);
    const after = await evaluateClassifier(tuned, toy, spec);
    tuned.dispose();
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.accuracy).toBe(1);
    expect(after.loss).toBeCloseTo(best.devLoss, 4);
  });
});

describe("set metrics", () => {
  it("finds the longest word n-gram shared with the private texts", () => {
    const priv = ["The movie was great, really great fun.", "I hated the ending of this film"];
    const r = longestSharedNgram(["the ending of this film was bad", "nothing in common here", "really great fun indeed", "was"], priv);
    expect(r.perText).toEqual([5, 0, 3, 1]); // "the ending of this film", none, "really great fun", "was"
    expect(r.max).toBe(5);
    expect(r.mean).toBeCloseTo(9 / 4);
    expect(longestSharedNgram(["a b c"], []).max).toBe(0);
  });

  it("counts distinct n-grams over the set", () => {
    expect(words("It's a test, a TEST!")).toEqual(["it's", "a", "test", ",", "a", "test", "!"]);
    expect(distinctN(["a b a b", "a c"], 1)).toBeCloseTo(3 / 6);
    expect(distinctN(["a b a b", "a c"], 2)).toBeCloseTo(3 / 4); // ab, ba, ab | ac
    expect(distinctN([""], 2)).toBe(0);
    expect(meanStd([0.5, 0.7, 0.9])).toEqual({ mean: expect.closeTo(0.7, 10), std: expect.closeTo(0.2, 10), ci95: expect.closeTo((4.303 * 0.2) / Math.sqrt(3), 10), n: 3 });
  });

  it("measures the gradient cosine as GRADMM's matching loss does (1 − f)", async () => {
    const spec = tinySpec();
    const label = spec.labelTokens[1];
    const priv = ["a fine film", "great acting here", "I liked the story a lot"].map((t) => [...tok.encode(t), ...spec.templateTokens]);
    const T = Math.max(...priv.map((q) => q.length));
    const tokens = new Int32Array(priv.length * T), lastPos = new Int32Array(priv.length);
    priv.forEach((q, i) => {
      tokens.set(q, i * T);
      lastPos[i] = q.length - 1;
    });
    const target = await model.native.buildTarget({ tokens, n: priv.length, T, lastPos, labels: new Int32Array(priv.length).fill(label) });
    const syn = ["the cat sat", "boring days", "what a film"].map((t) => [...tok.encode(t).slice(0, 2), ...spec.templateTokens]);
    syn.forEach((s) => expect(s).toHaveLength(2 + spec.templateTokens.length));
    const L = syn[0].length, C = model.config.channels;
    const wte = model.tensor("wte.weight"), X = new Float32Array(syn.length * L * C);
    syn.forEach((s, b) => s.forEach((t, i) => X.set(wte.subarray(t * C, (t + 1) * C), (b * L + i) * C)));
    const f = await model.native.matchLoss(target, { X, B: syn.length, L, label });
    const cos = gradientCosine(await gradientFactors(model, syn, syn.map(() => label)), await gradientFactors(model, priv, priv.map(() => label)));
    expect(cos).toBeCloseTo(1 - f, 4);
  });
});

describe("generation", () => {
  it("samples within top-p, never a banned token", () => {
    const logits = Float32Array.from([5, 4.9, 0, -3, 1]);
    const rng = mulberry32(3);
    const seen = (topP: number) => {
      const s = new Set<number>();
      for (let i = 0; i < 300; i++) s.add(sampleToken(logits, { temperature: 1, topP, rng }));
      return [...s].sort();
    };
    expect(seen(0.5)).toEqual([0]); // p(0) = 0.52
    expect(seen(0.9)).toEqual([0, 1]); // p(0) + p(1) = 0.99
    expect(seen(1).length).toBeGreaterThan(2);
    const banned = Uint8Array.from([1, 0, 0, 0, 0]);
    for (let i = 0; i < 100; i++) expect(sampleToken(logits, { temperature: 1, topP: 1, rng, banned })).not.toBe(0);
  });

  it("decodes rows on a shared prefix cache, reproducibly", async () => {
    const banned = bannedForGeneration(tok, model.config.vocabSize);
    const prompt = fewShotPrompt(tok, "Write a review:", ["one two three four five six seven", "eight nine"], 8, model.config.maxSeqLen);
    expect(prompt.length + 8).toBeLessThanOrEqual(model.config.maxSeqLen);
    const a = await sampleContinuations(model, prompt, 3, 8, { temperature: 1, topP: 0.9, banned, rng: mulberry32(1) });
    const b = await sampleContinuations(model, prompt, 3, 8, { temperature: 1, topP: 0.9, banned, rng: mulberry32(1) });
    expect(a).toEqual(b);
    for (const row of a) {
      expect(row).toHaveLength(8);
      for (const t of row) expect(banned[t]).toBe(0);
    }
    // greedy decoding through the cache equals a full forward's argmax
    const greedy = await sampleContinuations(model, prompt, 1, 2, { temperature: 1e-4, topP: 1e-6, rng: mulberry32(1) });
    await model.forward({ tokens: Int32Array.from([...prompt, greedy[0][0]]), B: 1, T: prompt.length + 1, allLogits: true });
    const V = model.config.vocabSize, all = model.logits();
    const argmax = (o: number) => all.subarray(o * V, (o + 1) * V).reduce((bi, v, i, arr) => (v > arr[bi] ? i : bi), 0);
    expect(greedy[0]).toEqual([argmax(prompt.length - 1), argmax(prompt.length)]);
  });
});

describe("set building helpers", () => {
  it("tops a class up with the best unkept unique samples", () => {
    const s = (text: string, cls: number, loss: number): SyntheticSample => ({ text, cls, label: cls, tokens: [], matching_loss: loss, perplexity: 1, batch: 0, rho: 0.1 });
    const all = [s("a", 0, 0.1), s("b", 0, 0.5), s("b", 0, 0.4), s("c", 0, 0.2), s("x", 1, 0.3), s("y", 1, 0.1)];
    const r = fillToSize([all[0], all[4], all[5]], all, 2, 3, 0);
    expect(r.set.filter((x) => x.cls === 0).map((x) => x.text)).toEqual(["a", "c", "b"]);
    expect(r.toppedUp).toEqual([2, 0]);
    expect(r.set.filter((x) => x.cls === 1)).toHaveLength(2);
  });

  it("turns a raw e-mail into subject + cleaned body", () => {
    const raw = [
      "From: a@b.c",
      "Subject: Re: Cheap meds",
      "Content-Type: text/html",
      "Content-Transfer-Encoding: quoted-printable",
      "",
      "<html><body><p>Buy now at http://x.y/z and save 50% on every order =",
      "today, friends of the list!</p>",
      "> quoted reply line",
      "</body></html>",
    ].join("\n");
    expect(messageText(raw)).toBe("Cheap meds. Buy now at and save 50% on every order today, friends of the list!");
    expect(messageText("Subject: x\n\nhi")).toBeNull();
  });
});

describe("utility config", () => {
  it("validates the eval section with field names and lines", () => {
    const file = path.join(tmp, "bad.yaml");
    fs.writeFileSync(
      file,
      ["data:", "  path: x.jsonl", "classes:", "  - {label: 0, label_word: ' bad', instruction: 'neg:'}", "  - {label: 1, label_word: ' great', instruction: 'pos:'}", "method:", "  length: 6", "eval:", "  seeds: []", "  classifier:", "    lrs: [-1]", ""].join("\n"),
    );
    let err: unknown;
    try {
      loadUtilityConfig(file);
    } catch (e) {
      err = e;
    }
    const msg = (err as Error).message;
    expect(msg).toMatch(/eval\.seeds \(line 9\)/);
    expect(msg).toMatch(/eval\.classifier\.lrs\.0 \(line 11\)/);
  });

  it("refuses unknown eval keys, naming the nearest valid one (a typo never falls back to a default)", () => {
    const file = path.join(tmp, "typo.yaml");
    fs.writeFileSync(
      file,
      ["data:", "  path: x.jsonl", "classes:", "  - {label: 0, label_word: ' bad', instruction: 'neg:'}", "  - {label: 1, label_word: ' great', instruction: 'pos:'}", "method:", "  length: 6", "eval:", "  seedz: [0]", "  classifier:", "    step: 3", "  methods: {gradm: false}", ""].join("\n"),
    );
    expect(() => loadUtilityConfig(file)).toThrow(ConfigError);
    let msg = "";
    try {
      loadUtilityConfig(file);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/eval\.seedz \(line 9\): unknown key `seedz` \(did you mean `seeds`\?\)/);
    expect(msg).toMatch(/eval\.classifier\.step \(line 11\): unknown key `step` \(did you mean `steps`\?\)/);
    expect(msg).toMatch(/eval\.methods\.gradm \(line 12\): unknown key `gradm` \(did you mean `gradmm`\?\)/);
  });

  it("parses the shipped configs (IMDB falls back to examples/data/imdb without ../shared)", () => {
    const imdbCfg = loadUtilityConfig(path.join(root, "bench", "utility", "imdb.yaml"));
    expect(fs.existsSync(imdbCfg.synth.resolved.dataPath)).toBe(true);
    expect(path.basename(imdbCfg.resolved.testPath!)).toBe("validation.jsonl");
    expect(fs.existsSync(imdbCfg.resolved.testPath!)).toBe(true);
    const spam = loadUtilityConfig(path.join(root, "bench", "utility", "spam.yaml"));
    expect(spam.eval.prepare).toBe("spam-assassin");
    expect(spam.resolved.testPath).toBeNull();
    for (const u of [imdbCfg, spam]) expect(Object.values(u.eval.methods).every(Boolean)).toBe(true);
  });

  it("requires a fixed method.length", () => {
    const raw = { data: { path: "x.jsonl" }, classes: [{ label: 0, label_word: " a", instruction: "a" }, { label: 1, label_word: " b", instruction: "b" }] };
    expect(() => parseUtilityConfig(raw, tmp, "cfg")).toThrow(/method\.length/);
  });
});

describe("utility run (tiny model)", () => {
  function tinyUtilityConfig(out: string) {
    return {
      data: { path: path.join(imdb, "train.jsonl"), examples_per_class: 6 },
      classes: [
        { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
        { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
      ],
      template: " It was",
      model: tinyLM,
      method: { batch_size: 4, batches_per_class: 2, length: 6, outer_steps: 2, inner_steps: 3, top_k: 10, init_candidates: 4 },
      filter: { few_shot: 2 },
      eval: {
        test_path: path.join(imdb, "validation.jsonl"),
        test_per_class: 30,
        dev_per_class: 6,
        train_per_class: 5,
        seeds: [0, 1],
        max_text_tokens: 16,
        classifier: { steps: 4, batch_size: 4, lrs: [1e-3, 3e-3], eval_every: 2 },
        generation: { rows: 4, few_shot_k: 2 },
        modes: ["finetune", "probe"],
        probe: { steps: 50 },
        cache_dir: path.join(out, "..", "cache-" + path.basename(out)),
        output: out,
      },
    };
  }
  let firstReport: Record<string, any> | null = null;

  it("writes report.json (finetune and probe modes), report.md and the plots, and resumes by skipping finished units", async () => {
    const out = path.join(tmp, "run");
    const u = parseUtilityConfig(tinyUtilityConfig(out), tmp, "tiny.yaml");
    const events: string[] = [];
    const r = await runUtility(u, { onProgress: (p) => p.kind === "work" && events.push(p.stage) });
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
    firstReport = report;
    expect(report.complete).toBe(true);
    expect(Object.keys(report.modes).sort()).toEqual(["finetune", "probe"]);
    expect(report.modes.finetune.methods).toEqual(report.methods);
    for (const [name, m] of Object.entries<Record<string, unknown>>(report.modes.probe.methods)) {
      expect(m.accuracy_mean, name).toBeGreaterThanOrEqual(0);
      expect(m.accuracy_mean, name).toBeLessThanOrEqual(1);
      expect(m.accuracy_per_seed, name).toHaveLength(2);
      expect(typeof m.accuracy_ci95, name).toBe("number");
    }
    expect(Object.keys(report.modes.probe.methods).sort()).toEqual(Object.keys(report.methods).sort());
    const probeUnit = JSON.parse(fs.readFileSync(path.join(out, "seed-0", "results", "probe", "real.json"), "utf8"));
    expect(Object.keys(probeUnit.dev_by_l2).length).toBe(4);
    expect(fs.readdirSync(path.join(tmp, "cache-run")).some((f) => f.startsWith("features-"))).toBe(true);
    expect(Object.keys(report.methods).sort()).toEqual(["continuous_gm", "few_shot_gen", "gradmm", "gradmm_dp", "real", "zero_shot_cls", "zero_shot_gen"]);
    for (const [name, m] of Object.entries<Record<string, unknown>>(report.methods)) {
      expect(m.accuracy_mean, name).toBeGreaterThanOrEqual(0);
      expect(m.accuracy_mean, name).toBeLessThanOrEqual(1);
      expect(m.accuracy_std, name).toBeGreaterThanOrEqual(0);
      expect(m.accuracy_per_seed, name).toHaveLength(2);
      if (name !== "zero_shot_cls") {
        expect(m.train_size_per_class, name).toEqual([5, 5]);
        for (const k of ["perplexity_mean", "gradient_cosine_mean", "distinct_1_mean", "distinct_2_mean", "longest_shared_ngram_max"]) expect(typeof m[k], `${name}.${k}`).toBe("number");
      }
    }
    // every GRADMM sample is alphabetic (the allowed set) and the real set shares its whole text with itself at most
    expect(report.settings.data.test_per_class).toEqual([30, 30]);
    for (const mode of ["finetune", "probe"]) expect(fs.readFileSync(path.join(out, `accuracy-${mode}.svg`), "utf8")).toMatch(/^<svg[\s\S]*role-mark/);
    // the matching-loss trajectories of every GRADMM batch: 2 seeds × 2 methods × 2 classes × 2 batches; x at the
    // init and after each of the 2 outer steps, z after each
    const points = collectTrajectories(out);
    expect(points).toHaveLength(2 * 2 * 2 * 2 * (3 + 2));
    const synth0 = JSON.parse(fs.readFileSync(path.join(out, "seed-0", "gradmm", "report.json"), "utf8"));
    expect(points.filter((p) => p.method === "gradmm" && p.batch === "seed-0 negative 0 ρ=0.1" && p.variable === "f(z)").map((p) => p.loss)).toEqual(synth0.classes.negative.batches[0].z_loss_per_outer);
    expect(fs.readFileSync(path.join(out, "trajectories.svg"), "utf8")).toMatch(/^<svg(?=[\s\S]*role-mark)[\s\S]*16 batches/);
    const html = fs.readFileSync(path.join(out, "report.html"), "utf8");
    for (const mode of ["finetune", "probe"]) {
      expect(html).toContain(`data-plot="accuracy-${mode}"`);
      expect(html).toContain(`id="methods-${mode}"`);
    }
    const md = fs.readFileSync(path.join(out, "report.md"), "utf8");
    expect(md).toMatch(/### finetune\n/);
    expect(md).toMatch(/### probe\n/);
    expect(md).toMatch(/\| gradmm \| \d+\.\d ± \d+\.\d \| \d+\.\d \|/);
    // five training texts per class per method (seed 0), one row each, pipes escaped
    expect(md).toMatch(/### samples\n\n\| method \| class \| text \(seed 0\) \|/);
    const sampleRows = md.split("### samples")[1].split("\n").filter((l) => l.startsWith("| gradmm | "));
    const gradmmSet = JSON.parse(fs.readFileSync(path.join(out, "seed-0", "sets", "gradmm.json"), "utf8")).texts as { text: string; cls: number }[];
    expect(sampleRows).toHaveLength(10);
    expect(sampleRows[0]).toBe(`| gradmm | negative | ${gradmmSet.filter((t) => t.cls === 0)[0].text.replace(/\s+/g, " ").trim().replace(/\|/g, "\\|")} |`);
    expect(events.length).toBeGreaterThan(10);
    // private examples never in test
    const split = JSON.parse(fs.readFileSync(path.join(out, "seed-0", "split.json"), "utf8"));
    const testIds = new Set(split.test);
    for (const id of [...split.private, ...split.dev, ...split.real]) expect(testIds.has(id)).toBe(false);
    // a second run without --resume refuses to overwrite
    await expect(runUtility(u)).rejects.toThrow(/--resume/);
    // resume after losing one result: only that unit runs again
    const lost = path.join(out, "seed-1", "results", "finetune", "gradmm.json");
    const kept = path.join(out, "seed-0", "results", "finetune", "few_shot_gen.json");
    const keptBefore = fs.readFileSync(kept, "utf8");
    const lostBefore = JSON.parse(fs.readFileSync(lost, "utf8"));
    fs.rmSync(lost);
    const stages: string[] = [];
    const again = await runUtility(u, { resume: true, onProgress: (p) => p.kind === "work" && stages.push(p.stage) });
    expect(fs.readFileSync(kept, "utf8")).toBe(keptBefore);
    expect(JSON.parse(fs.readFileSync(lost, "utf8")).accuracy).toBe(lostBefore.accuracy);
    expect(stages.filter((s) => s.includes("fine-tune")).every((s) => s.startsWith("seed 1 gradmm:"))).toBe(true);
    expect(again.report.methods.gradmm.accuracy_mean).toBe(r.report.methods.gradmm.accuracy_mean);
  });

  it("eval.reuse_batches_from: a filter ablation takes another run's GRADMM batches and only filters them again", async () => {
    expect(firstReport, "the run above").not.toBeNull();
    const from = path.join(tmp, "run"), out = path.join(tmp, "nofilter");
    const base = tinyUtilityConfig(out);
    const cfg = {
      ...base,
      filter: { enabled: false },
      eval: { ...base.eval, modes: ["probe"], methods: { gradmm: true, gradmm_dp: false, real: false, zero_shot_gen: false, few_shot_gen: false, continuous_gm: false, zero_shot_cls: false }, reuse_batches_from: "run" },
    };
    const logs: string[] = [];
    let admmBatches = 0;
    const r = await runUtility(parseUtilityConfig(cfg, tmp, "nofilter.yaml"), {
      onProgress: (p) => (p.kind === "log" ? logs.push(p.message) : p.kind === "work" && / gradmm: batch \d/.test(p.stage) && admmBatches++),
    });
    expect(logs.filter((m) => /gradmm: 4 batches copied from/.test(m))).toHaveLength(2);
    expect(admmBatches).toBe(0);
    for (const seed of [0, 1]) {
      // the unfiltered set: the first train_per_class samples of each class in decoding order
      const raw = fs.readFileSync(path.join(from, `seed-${seed}`, "gradmm", "synthetic.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      const set = JSON.parse(fs.readFileSync(path.join(out, `seed-${seed}`, "sets", "gradmm.json"), "utf8"));
      for (const k of [0, 1]) {
        const expected = raw.filter((s) => s.label === k).slice(0, 5).map((s) => s.text);
        expect(set.texts.filter((t: { cls: number }) => t.cls === k).map((t: { text: string }) => t.text)).toEqual(expected);
      }
    }
    expect(r.report.modes.probe.methods.gradmm.accuracy_per_seed).toHaveLength(2);
    // batches of another method config are refused, naming the file
    const other = { ...cfg, method: { ...cfg.method, rho: 0.5 }, eval: { ...cfg.eval, output: path.join(tmp, "nofilter-other") } };
    await expect(runUtility(parseUtilityConfig(other, tmp, "other.yaml"))).rejects.toThrow(/run\/seed-0\/gradmm\/checkpoint\.json.*another method, dp, data, model or seed/);
  }, 120_000);

  it("resumes a run killed with SIGKILL (through the CLI) to the same results as an uninterrupted run", async () => {
    const cli = path.join(root, "dist", "bench", "cli.js");
    expect(fs.existsSync(cli), "dist/ is built by npm ci (prepare)").toBe(true);
    expect(firstReport, "the uninterrupted run above").not.toBeNull();
    const out = path.join(tmp, "killed");
    const cfgFile = path.join(tmp, "killed.yaml");
    fs.writeFileSync(cfgFile, JSON.stringify(tinyUtilityConfig(out))); // JSON is YAML
    const child = spawn(process.execPath, [cli, "utility", cfgFile, "--no-progress"], { stdio: "ignore" });
    // kill it once some units are done and others are not
    const marker = path.join(out, "seed-0", "sets", "gradmm.json");
    const t0 = Date.now();
    while (!fs.existsSync(marker) && Date.now() - t0 < 100_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(marker)).toBe(true);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(fs.existsSync(path.join(out, "seed-1", "results", "finetune", "real.json"))).toBe(false);
    const resumed = spawnSync(process.execPath, [cli, "utility", cfgFile, "--resume", "--json", "--no-progress"], { encoding: "utf8" });
    expect(resumed.status, resumed.stderr).toBe(0);
    const report = JSON.parse(resumed.stdout);
    for (const mode of ["finetune", "probe"])
      for (const [name, m] of Object.entries<Record<string, unknown>>(firstReport!.modes[mode].methods))
        expect(report.modes[mode].methods[name].accuracy_per_seed, `${mode} ${name}`).toEqual(m.accuracy_per_seed);
  }, 300_000);
});

describe("probe classifier", () => {
  it("fits a separable problem, picks the L2 strength on dev and is deterministic", () => {
    const rng = mulberry32(3);
    const make = (n: number) => {
      const X: Float32Array[] = [], y: number[] = [];
      for (let i = 0; i < n; i++) {
        const k = i % 3;
        const x = new Float32Array(8).map(() => (rng() - 0.5) * 0.5);
        x[k] += 2;
        X.push(x);
        y.push(k);
      }
      return { X, y };
    };
    const train = make(60), dev = make(30), test = make(90);
    const a = probeClassifier(train, dev, test, 3, { l2: [0.01, 1, 100], steps: 200 });
    const b = probeClassifier(train, dev, test, 3, { l2: [0.01, 1, 100], steps: 200 });
    expect(a).toEqual(b);
    expect(a.accuracy).toBeGreaterThan(0.95);
    expect(a.per_class_accuracy).toHaveLength(3);
    expect(Object.keys(a.dev_by_l2).sort()).toEqual(["0.01", "1", "100"]);
    // an L2 so strong that the weights stay near zero cannot separate: the dev slice must not pick it
    expect(a.dev_by_l2["100"]).toBeLessThanOrEqual(a.dev_accuracy);
    const fit = fitLogistic(train.X, train.y, 3, 0.01, 200);
    expect(predictLogistic(fit, test.X).filter((p, i) => p === test.y[i]).length / test.y.length).toBeGreaterThan(0.95);
  });
});

describe("debian-fortunes data set", () => {
  const cats = ["computers", "food", "politics"];
  /** A fake /usr/share/games/fortunes: 12 usable entries per category plus ones that must be dropped. */
  function fakeFortunes(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    for (const c of cats) {
      const entries = Array.from({ length: 12 }, (_, i) => `A ${c} fortune number ${i},\n\tspread over\n  two lines.\n\t\t-- Someone ${i}`);
      entries.push("too short");
      entries.push(`${c} `.repeat(120)); // over 400 characters
      entries.push(`A ${c} fortune number 3,\n\tspread over\n  two lines.\n\t\t-- Someone 3`); // duplicate within the file
      entries.push("This one is in every category, so its label is ambiguous and it goes.");
      if (c === "computers") entries.push("_\bU_\bN_\bI_\bX is an operating system with overstriking in its name, kept.");
      fs.writeFileSync(path.join(dir, c), entries.join("\n%\n") + "\n%\n");
    }
  }
  function config(dir: string): ReturnType<typeof parseUtilityConfig> {
    const raw = {
      data: { path: "out/train.jsonl", examples_per_class: 2 },
      classes: cats.map((c) => ({ label: c, label_word: ` ${c}`, instruction: `About ${c}:` })),
      method: { length: 4 },
      eval: { prepare: "debian-fortunes", test_path: "out/test.jsonl", test_per_class: 4, split_seed: 7, generation: { few_shot_k: 1 } },
    };
    return parseUtilityConfig(raw, dir, "fortunes-test.yaml");
  }
  const withDir = async <T>(dir: string, f: () => Promise<T>): Promise<T> => {
    const old = process.env.GRADMM_FORTUNES_DIR;
    process.env.GRADMM_FORTUNES_DIR = dir;
    try {
      return await f();
    } finally {
      if (old === undefined) delete process.env.GRADMM_FORTUNES_DIR;
      else process.env.GRADMM_FORTUNES_DIR = old;
    }
  };

  it("reads entries: % separators, overstriking removed, whitespace normalised", () => {
    expect(fortuneEntries("one\n  two\n%\nB\bBo\bol\bld and _\bu_\bn_\bd\n%\n\n%\n")).toEqual(["one two", "Bold and und"]);
  });

  it("splits stratified and deterministically, dropping short, long and duplicate entries", () => {
    const dir = path.join(tmp, "fortunes-split");
    fakeFortunes(dir);
    const a = fortunesSplit({ dir, categories: cats, testPerClass: 4, seed: 3 });
    expect(a.perClass).toEqual([
      { category: "computers", kept: 13 },
      { category: "food", kept: 12 },
      { category: "politics", kept: 12 },
    ]);
    expect(a.test.length).toBe(12);
    expect(a.train.length).toBe(37 - 12);
    for (const c of cats) expect(a.test.filter((r) => r.label === c).length).toBe(4);
    const all = [...a.train, ...a.test];
    expect(new Set(all.map((r) => r.text)).size).toBe(all.length);
    expect(all.every((r) => r.text.length >= 40 && r.text.length <= 400 && !/\s{2}|\n|\x08/.test(r.text))).toBe(true);
    expect(all.some((r) => r.text.includes("ambiguous"))).toBe(false);
    expect(all.some((r) => r.text.startsWith("UNIX is an operating system") && r.label === "computers")).toBe(true);
    expect(all.find((r) => r.text.startsWith("A food fortune number 1,"))!.text).toBe("A food fortune number 1, spread over two lines. -- Someone 1");
    expect(fortunesSplit({ dir, categories: cats, testPerClass: 4, seed: 3 })).toEqual(a);
    expect(fortunesSplit({ dir, categories: cats, testPerClass: 4, seed: 4 }).test).not.toEqual(a.test);
    expect(() => fortunesSplit({ dir, categories: cats, testPerClass: 12, seed: 3 })).toThrow(/food.*12 usable entries/);
  });

  it("prepare writes the train and test files (same bytes on a second build) from $GRADMM_FORTUNES_DIR", async () => {
    const src = path.join(tmp, "fortunes-src");
    fakeFortunes(src);
    const build = async (base: string) => {
      const u = config(base);
      await withDir(src, () => prepareDataset("debian-fortunes", u, () => {}));
      return [u.synth.resolved.dataPath, u.resolved.testPath!].map((f) => fs.readFileSync(f, "utf8"));
    };
    const [train1, test1] = await build(path.join(tmp, "fortunes-a"));
    const [train2, test2] = await build(path.join(tmp, "fortunes-b"));
    expect(train1).toBe(train2);
    expect(test1).toBe(test2);
    const u = config(path.join(tmp, "fortunes-a"));
    expect(readItems(u.resolved.testPath!, u.synth, "test").length).toBe(12);
    expect(countByClass(readItems(u.synth.resolved.dataPath, u.synth, "pool"), 3)).toEqual([9, 8, 8]);
    // existing files are kept as they are, even without the package
    await withDir(path.join(tmp, "nowhere"), () => prepareDataset("debian-fortunes", u, () => {}));
    expect(fs.readFileSync(u.resolved.testPath!, "utf8")).toBe(test1);
  });

  it("says how to install the package when the category files are missing", async () => {
    const u = config(path.join(tmp, "fortunes-missing"));
    const err = await withDir(path.join(tmp, "no-fortunes-here"), () => prepareDataset("debian-fortunes", u, () => {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetSourceMissingError);
    expect((err as DatasetSourceMissingError).code).toBe("DATASET_SOURCE_MISSING");
    expect((err as DatasetSourceMissingError).missing).toHaveLength(3);
    expect((err as Error).message).toMatch(/apt-get install -y fortunes/);
    expect(fs.existsSync(u.synth.resolved.dataPath)).toBe(false);
  });

  it("parses the fortunes and SmolLM2 spam/fortunes configs", () => {
    const load = (f: string) => loadUtilityConfig(path.join(root, "bench", "utility", f));
    const fortunes = load("fortunes.yaml"), fortunesS = load("fortunes-smollm2.yaml"), spamS = load("spam-smollm2.yaml");
    for (const u of [fortunes, fortunesS]) {
      expect(u.eval.prepare).toBe("debian-fortunes");
      expect(u.synth.classes.map((c) => c.label)).toEqual(cats);
      expect(u.synth.classes.map((c) => c.label_word)).toEqual([" computers", " food", " politics"]);
      expect(path.basename(u.resolved.testPath!)).toBe("test.jsonl");
    }
    expect(spamS.eval.prepare).toBe("spam-assassin");
    expect(spamS.resolved.testPath).toBeNull();
    for (const u of [fortunesS, spamS]) {
      expect(u.synth.model).toBe("smollm2-135m-instruct");
      expect(u.eval.modes).toEqual(["probe", "finetune"]);
    }
    expect(fortunesS.resolved.outputDir).toBe(path.join(root, "bench", "results", "utility", "fortunes"));
    expect(spamS.resolved.outputDir).toBe(path.join(root, "bench", "results", "utility", "spam"));
    for (const u of [fortunes, fortunesS, spamS]) expect(Object.values(u.eval.methods).every(Boolean)).toBe(true);
  });
});
