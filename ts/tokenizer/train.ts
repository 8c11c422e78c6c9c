/**
 * Byte-level BPE training (GPT-2 style), producing a `tokenizer.json` object that
 * {@link Tokenizer.fromJSON} loads.
 *
 * 1. Pre-tokenize with the GPT-2 regex (exactly the split the loaded tokenizer will use) and count
 *    word frequencies; special tokens in the text act as separators.
 * 2. Base vocabulary: the special tokens, then all 256 byte characters, so no input is ever unknown.
 * 3. Merge over the unique words: repeatedly take the most frequent adjacent pair (ties: the smaller
 *    (left id, right id), as `tokenizers`' BpeTrainer), rewrite only the words that contain it, and
 *    update pair counts incrementally (a lazy max-heap revalidates stale counts).
 * Deterministic: the same texts and options give an identical object.
 */

import * as fs from "node:fs";
import * as path from "node:path";
import { AddedTokenMatcher } from "./addedTokens";
import { BYTE_TO_CHAR, utf8Encode } from "./byteLevel";
import { GPT2_PATTERN } from "./regex";
import { fastSplitterFor } from "./scanners";

export interface TrainOptions {
  /** Target vocabulary size, special tokens and the 256 byte tokens included. */
  vocabSize: number;
  /** Stop merging when the best pair occurs fewer times than this. Default 2. */
  minFrequency?: number;
  /** Special tokens, given ids 0.. in this order. */
  specialTokens?: string[];
}

/** The subset of the `tokenizer.json` schema this library reads and writes. */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: Array<{
    id: number;
    content: string;
    single_word: boolean;
    lstrip: boolean;
    rstrip: boolean;
    normalized: boolean;
    special: boolean;
  }>;
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: {
    type: "BPE";
    dropout: null;
    unk_token: string | null;
    continuing_subword_prefix: string | null;
    end_of_word_suffix: string | null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges?: boolean;
    vocab: Record<string, number>;
    merges: Array<string | [string, string]>;
  };
}

const KEY_BASE = 1 << 21;
const MAX_VOCAB = KEY_BASE - 1;

/** Max-heap of pair entries by (count desc, left asc, right asc). */
class PairHeap {
  private count: number[] = [];
  private a: number[] = [];
  private b: number[] = [];
  private idx: number[] = [];

  get size(): number {
    return this.idx.length;
  }

  private before(i: number, j: number): boolean {
    const { count, a, b } = this;
    if (count[i] !== count[j]) return count[i] > count[j];
    if (a[i] !== a[j]) return a[i] < a[j];
    return b[i] < b[j];
  }

  private swap(i: number, j: number): void {
    for (const arr of [this.count, this.a, this.b, this.idx]) {
      const t = arr[i];
      arr[i] = arr[j];
      arr[j] = t;
    }
  }

  push(count: number, a: number, b: number, idx: number): void {
    let i = this.idx.length;
    this.count.push(count);
    this.a.push(a);
    this.b.push(b);
    this.idx.push(idx);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Returns [count, entry index] of the top and removes it. */
  pop(): [number, number] {
    const top: [number, number] = [this.count[0], this.idx[0]];
    const last = this.idx.length - 1;
    if (last > 0) this.swap(0, last);
    this.count.pop();
    this.a.pop();
    this.b.pop();
    this.idx.pop();
    let i = 0;
    const n = this.idx.length;
    while (true) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && this.before(r, l) ? r : l;
      if (!this.before(m, i)) break;
      this.swap(m, i);
      i = m;
    }
    return top;
  }
}

/** Counts GPT-2-regex words of `texts` (special tokens removed). */
function countWords(texts: Iterable<string>, specialTokens: string[]): Map<string, number> {
  const split = fastSplitterFor(GPT2_PATTERN)!;
  const matcher = specialTokens.length
    ? new AddedTokenMatcher(
        specialTokens.map((content, id) => ({ id, content, singleWord: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      )
    : null;
  const counts = new Map<string, number>();
  const words: string[] = [];
  for (const text of texts) {
    if (typeof text !== "string") throw new TypeError("trainByteLevelBPE: every text must be a string");
    const pieces = matcher ? matcher.split(text).filter((s) => s.id < 0).map((s) => s.text) : [text];
    for (const piece of pieces) {
      words.length = 0;
      split(piece, words);
      for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

/** Trains a byte-level BPE tokenizer; returns the `tokenizer.json` object. */
export function trainByteLevelBPE(texts: Iterable<string>, opts: TrainOptions): TokenizerJson {
  const specials = opts.specialTokens ?? [];
  const minFrequency = opts.minFrequency ?? 2;
  const vocabSize = opts.vocabSize;
  if (!Number.isInteger(vocabSize) || vocabSize < specials.length + 256 || vocabSize > MAX_VOCAB) {
    throw new RangeError(`vocabSize must be an integer in [${specials.length + 256}, ${MAX_VOCAB}] (specials + 256 bytes), got ${vocabSize}`);
  }
  if (new Set(specials).size !== specials.length || specials.some((s) => s.length === 0)) {
    throw new RangeError("specialTokens must be distinct non-empty strings");
  }

  // --- base vocabulary
  const idToStr: string[] = [];
  const strToId = new Map<string, number>();
  const addToken = (s: string): number => {
    const have = strToId.get(s);
    if (have !== undefined) return have;
    const id = idToStr.length;
    idToStr.push(s);
    strToId.set(s, id);
    return id;
  };
  for (const s of specials) addToken(s);
  const byteId = new Int32Array(256);
  const alphabet = [...BYTE_TO_CHAR].sort((x, y) => x.charCodeAt(0) - y.charCodeAt(0));
  for (const c of alphabet) addToken(c);
  for (let b = 0; b < 256; b++) byteId[b] = strToId.get(BYTE_TO_CHAR[b])!;

  // --- words
  const counts = countWords(texts, specials);
  const nWords = counts.size;
  const words: Int32Array[] = new Array(nWords);
  const wlen = new Int32Array(nWords);
  const freq = new Float64Array(nWords);
  {
    let buf: Uint8Array = new Uint8Array(1024);
    let w = 0;
    for (const [word, c] of counts) {
      const [b, len] = utf8Encode(word, buf);
      buf = b;
      const syms = new Int32Array(len);
      for (let i = 0; i < len; i++) syms[i] = byteId[buf[i]];
      words[w] = syms;
      wlen[w] = len;
      freq[w] = c;
      w++;
    }
  }
  counts.clear();

  // --- pair statistics
  const pairIndex = new Map<number, number>();
  const pCount: number[] = [];
  const pA: number[] = [];
  const pB: number[] = [];
  const pWhere: number[][] = [];
  const entry = (a: number, b: number): number => {
    const key = a * KEY_BASE + b;
    let e = pairIndex.get(key);
    if (e === undefined) {
      e = pCount.length;
      pairIndex.set(key, e);
      pCount.push(0);
      pA.push(a);
      pB.push(b);
      pWhere.push([]);
    }
    return e;
  };
  for (let w = 0; w < nWords; w++) {
    const s = words[w];
    const f = freq[w];
    for (let i = 0; i + 1 < wlen[w]; i++) {
      const e = entry(s[i], s[i + 1]);
      pCount[e] += f;
      const wh = pWhere[e];
      if (wh.length === 0 || wh[wh.length - 1] !== w) wh.push(w);
    }
  }
  const heap = new PairHeap();
  for (let e = 0; e < pCount.length; e++) if (pCount[e] > 0) heap.push(pCount[e], pA[e], pB[e], e);

  // --- merge loop
  const merges: Array<[string, string]> = [];
  const wordStamp = new Int32Array(nWords).fill(-1);
  let pairStamp = new Int32Array(Math.max(16, pCount.length)).fill(-1);
  let step = 0;
  while (idToStr.length < vocabSize && heap.size > 0) {
    const [count, e] = heap.pop();
    if (count !== pCount[e]) {
      if (pCount[e] > 0) heap.push(pCount[e], pA[e], pB[e], e);
      continue;
    }
    if (count < minFrequency || count <= 0) break;
    const a = pA[e];
    const b = pB[e];
    const newId = addToken(idToStr[a] + idToStr[b]);
    merges.push([idToStr[a], idToStr[b]]);
    step++;
    const touched: number[] = [];
    const where = pWhere[e];
    pWhere[e] = [];
    for (const w of where) {
      if (wordStamp[w] === step) continue;
      wordStamp[w] = step;
      const s = words[w];
      const n = wlen[w];
      let has = false;
      for (let i = 0; i + 1 < n; i++) {
        if (s[i] === a && s[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) continue;
      const f = freq[w];
      for (let i = 0; i + 1 < n; i++) pCount[entry(s[i], s[i + 1])] -= f;
      let k = 0;
      for (let i = 0; i < n; i++) {
        if (i + 1 < n && s[i] === a && s[i + 1] === b) {
          s[k++] = newId;
          i++;
        } else s[k++] = s[i];
      }
      wlen[w] = k;
      for (let i = 0; i + 1 < k; i++) {
        const pe = entry(s[i], s[i + 1]);
        pCount[pe] += f;
        if (s[i] === newId || s[i + 1] === newId) {
          const wh = pWhere[pe];
          if (wh.length === 0 || wh[wh.length - 1] !== w) wh.push(w);
          if (pe >= pairStamp.length) {
            const grown = new Int32Array(Math.max(pe + 1, pairStamp.length * 2)).fill(-1);
            grown.set(pairStamp);
            pairStamp = grown;
          }
          if (pairStamp[pe] !== step) {
            pairStamp[pe] = step;
            touched.push(pe);
          }
        }
      }
    }
    if (pCount[e] > 0) {
      // Overlapping occurrences (a == b) can leave the pair behind: keep tracking those words.
      for (const w of where) {
        const s = words[w];
        for (let i = 0; i + 1 < wlen[w]; i++) {
          if (s[i] === a && s[i + 1] === b) {
            const wh = pWhere[e];
            if (wh.length === 0 || wh[wh.length - 1] !== w) wh.push(w);
            break;
          }
        }
      }
      touched.push(e);
    }
    for (const pe of touched) if (pCount[pe] > 0) heap.push(pCount[pe], pA[pe], pB[pe], pe);
  }

  const vocab: Record<string, number> = {};
  idToStr.forEach((s, i) => {
    vocab[s] = i;
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** Writes `obj` as JSON atomically: a temporary file in the same directory, then rename. */
export function writeTokenizerJson(file: string, obj: TokenizerJson | object): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeSync(fd, JSON.stringify(obj));
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
