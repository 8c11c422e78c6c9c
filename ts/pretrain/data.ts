/**
 * From the assembled corpus to training batches: the byte-level BPE tokenizer (trained on a seeded sample of the
 * training documents), the token streams (cached as raw uint16/int32 files), the seeded window order, and the
 * evaluation windows (validation streams and the IMDB bits-per-byte reviews).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Tokenizer } from "../index";
import {
  mulberry32,
  shuffled,
  trainByteLevelBPE,
  writeFileAtomic,
  writeJsonAtomic,
  writeTokenizerJson,
} from "../advanced";
import type { PretrainConfig } from "./config";
import { readDocs, type Corpus } from "./corpus";
import type { SourceId } from "./sources";

export const EOT = "<|endoftext|>";

type Log = (msg: string) => void;
type TokenArray = Uint16Array | Int32Array;

export interface TokenCounts {
  key: string;
  train: Partial<Record<SourceId, number>>;
  val: Partial<Record<SourceId, number>>;
  imdbEval: number;
}

export interface TokenData {
  tokenizer: Tokenizer;
  tokenizerFile: string;
  eotId: number;
  /** All training sources, concatenated; every document ends with EOT. */
  train: TokenArray;
  val: Map<SourceId, TokenArray>;
  /** IMDB evaluation reviews: text and token ids (without the leading EOT). */
  imdbEval: Array<{ text: string; ids: number[] }>;
  counts: TokenCounts;
}

export function runDir(cfg: PretrainConfig): string {
  return path.join(cfg.resolved.cacheDir, "pretrain", cfg.resolved.runName);
}

function hashOf(...parts: string[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\u0000");
  return h.digest("hex").slice(0, 16);
}

/** Trains (or reuses) the run's tokenizer on a seeded sample of about `sample_chars` training characters. */
export function prepareTokenizer(cfg: PretrainConfig, corpus: Corpus, log: Log): { tokenizer: Tokenizer; file: string; key: string } {
  const t = cfg.tokenizer;
  const key = hashOf(corpus.manifest.key, String(cfg.seed), JSON.stringify(t));
  const dir = runDir(cfg);
  const file = path.join(dir, "tokenizer.json");
  const keyFile = path.join(dir, "tokenizer.key");
  if (fs.existsSync(file) && fs.existsSync(keyFile) && fs.readFileSync(keyFile, "utf8") === key) return { tokenizer: Tokenizer.fromFile(file), file, key };
  const docs = shuffled(cfg.corpus.sources.flatMap((s) => readDocs(corpus.trainFile(s))), mulberry32(cfg.seed + 17));
  const sample: string[] = [];
  let chars = 0;
  for (const d of docs) {
    if (chars >= t.sample_chars) break;
    sample.push(d);
    chars += d.length;
  }
  log(`training a ${t.vocab_size}-token byte-level BPE on ${sample.length} documents (${(chars / 1e6).toFixed(1)}M characters)`);
  const obj = trainByteLevelBPE(sample, { vocabSize: t.vocab_size, minFrequency: t.min_frequency, specialTokens: [EOT] });
  fs.mkdirSync(dir, { recursive: true });
  writeTokenizerJson(file, obj);
  writeFileAtomic(keyFile, key);
  return { tokenizer: Tokenizer.fromFile(file), file, key };
}

function tokenizeDocs(tok: Tokenizer, docs: string[], eotId: number): TokenArray {
  const out: number[] = [];
  for (const d of docs) {
    for (const id of tok.encode(d, { addSpecialTokens: false })) out.push(id);
    out.push(eotId);
  }
  return tok.vocabSize <= 65536 ? Uint16Array.from(out) : Int32Array.from(out);
}

function saveTokens(file: string, a: TokenArray): void {
  writeFileAtomic(file, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

function loadTokens(file: string, wide: boolean): TokenArray {
  const b = fs.readFileSync(file);
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return wide ? new Int32Array(copy.buffer) : new Uint16Array(copy.buffer);
}

/** Tokenizes every split (cached under the run folder, keyed by the corpus and tokenizer). */
export function prepareData(cfg: PretrainConfig, corpus: Corpus, log: Log): TokenData {
  const { tokenizer, file, key: tokKey } = prepareTokenizer(cfg, corpus, log);
  const eotId = tokenizer.tokenToId(EOT);
  if (eotId === undefined) throw new Error(`the tokenizer has no ${EOT} token`);
  const wide = tokenizer.vocabSize > 65536;
  const dir = path.join(runDir(cfg), "tokens");
  const key = hashOf(corpus.manifest.key, tokKey);
  const countsFile = path.join(dir, "counts.json");
  const cached = fs.existsSync(countsFile) && (JSON.parse(fs.readFileSync(countsFile, "utf8")) as TokenCounts).key === key;
  const imdbEval = fs
    .readFileSync(corpus.imdbEvalFile, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const text = String((JSON.parse(l) as { text: string }).text);
      return { text, ids: tokenizer.encode(text, { addSpecialTokens: false }) };
    });
  const counts: TokenCounts = { key, train: {}, val: {}, imdbEval: imdbEval.reduce((a, r) => a + r.ids.length, 0) };
  const parts: TokenArray[] = [];
  const val = new Map<SourceId, TokenArray>();
  for (const s of cfg.corpus.sources) {
    for (const split of ["train", "val"] as const) {
      const f = path.join(dir, `${split}-${s}.bin`);
      let a: TokenArray;
      if (cached && fs.existsSync(f)) a = loadTokens(f, wide);
      else {
        log(`tokenizing ${split}/${s}`);
        a = tokenizeDocs(tokenizer, readDocs(split === "train" ? corpus.trainFile(s) : corpus.valFile(s)), eotId);
        saveTokens(f, a);
      }
      counts[split][s] = a.length;
      if (split === "train") parts.push(a);
      else val.set(s, a);
    }
  }
  if (!cached) writeJsonAtomic(countsFile, counts);
  const total = parts.reduce((n, a) => n + a.length, 0);
  const train = wide ? new Int32Array(total) : new Uint16Array(total);
  let o = 0;
  for (const a of parts) {
    train.set(a, o);
    o += a.length;
  }
  return { tokenizer, tokenizerFile: file, eotId, train, val, imdbEval, counts };
}

/**
 * The training windows in a seeded order: the stream is cut into windows of T+1 tokens (stride T), each epoch
 * visits them in a fresh permutation of (seed, epoch). Batch `step` is a pure function of the step number, so a
 * resumed run sees exactly the batches the uninterrupted run would have.
 */
export class WindowSampler {
  readonly windows: number;
  private epoch = -1;
  private perm: number[] = [];
  constructor(private readonly stream: TokenArray, private readonly T: number, private readonly seed: number) {
    this.windows = Math.floor((stream.length - 1) / T);
    if (this.windows < 1) throw new RangeError(`the training stream (${stream.length} tokens) is shorter than one window of ${T + 1}`);
  }

  private permutation(epoch: number): number[] {
    if (epoch !== this.epoch) {
      this.perm = shuffled(Array.from({ length: this.windows }, (_, i) => i), mulberry32((this.seed * 1000003 + epoch) >>> 0));
      this.epoch = epoch;
    }
    return this.perm;
  }

  /** Fills tokens/targets [B*T] with batch `step` (0-based). */
  batch(step: number, B: number, tokens: Int32Array, targets: Int32Array): void {
    const T = this.T;
    for (let b = 0; b < B; b++) {
      const g = step * B + b;
      const w = this.permutation(Math.floor(g / this.windows))[g % this.windows];
      const start = w * T;
      for (let t = 0; t < T; t++) {
        tokens[b * T + t] = this.stream[start + t];
        targets[b * T + t] = this.stream[start + t + 1];
      }
    }
  }

  epochOf(step: number, B: number): number {
    return (step * B) / this.windows;
  }
}

/** One scored window: T input tokens, T targets, and which targets count. */
export interface EvalWindow {
  tokens: Int32Array;
  targets: Int32Array;
  mask: Float32Array;
}

/** Non-overlapping windows from the start of a stream, up to `maxTokens` predicted tokens. */
export function streamWindows(stream: TokenArray, T: number, maxTokens: number): EvalWindow[] {
  const out: EvalWindow[] = [];
  for (let start = 0; start + 1 < stream.length && out.length * T < maxTokens; start += T) {
    const n = Math.min(T, stream.length - 1 - start);
    const w: EvalWindow = { tokens: new Int32Array(T), targets: new Int32Array(T), mask: new Float32Array(T) };
    for (let t = 0; t < n; t++) {
      w.tokens[t] = stream[start + t];
      w.targets[t] = stream[start + t + 1];
      w.mask[t] = 1;
    }
    out.push(w);
  }
  return out;
}

/**
 * Windows that score every token of `seq` after its first exactly once: a sliding window of T with stride T/2, each
 * window scoring only the targets the previous one did not, so every prediction (past the first window) sees at
 * least T/2 tokens of context.
 */
export function sequenceWindows(seq: number[], T: number): EvalWindow[] {
  const out: EvalWindow[] = [];
  const stride = Math.max(1, T >> 1);
  let scored = 0; // targets seq[1..scored] are done
  for (let start = 0; scored < seq.length - 1; start += stride) {
    const w: EvalWindow = { tokens: new Int32Array(T), targets: new Int32Array(T), mask: new Float32Array(T) };
    const n = Math.min(T, seq.length - 1 - start);
    for (let t = 0; t < n; t++) {
      w.tokens[t] = seq[start + t];
      w.targets[t] = seq[start + t + 1];
      if (start + t + 1 > scored) w.mask[t] = 1;
    }
    scored = start + n;
    out.push(w);
  }
  return out;
}
