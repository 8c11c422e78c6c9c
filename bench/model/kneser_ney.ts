/**
 * Interpolated Kneser-Ney trigram model over token ids: the classic count-based baseline the default model's bits
 * per byte are compared with (same tokenizer, same text). One absolute discount per order, D = n1 / (n1 + 2·n2)
 * from that order's count-of-counts; the lower orders use continuation counts; the unigram level interpolates with
 * the uniform distribution, so every token of the vocabulary has a non-zero probability.
 *
 * Counts live in sorted Float64Array keys (a trigram key u·V² + v·V + w is exact below 2^53) with binary-search
 * lookups: a Map would hit V8's 2^24-entry limit on a 20M-token corpus.
 */

/** Sorted unique keys and how many times each occurred. */
interface CountTable {
  keys: Float64Array;
  counts: Float64Array;
}

/** Unique keys of a sorted array with, per key, the sum of `weights` over its run (or the run's length). */
function runs(sorted: Float64Array, weights: Float64Array | null): CountTable {
  let unique = 0;
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) unique++;
  const out: CountTable = { keys: new Float64Array(unique), counts: new Float64Array(unique) };
  let j = -1;
  for (let i = 0; i < sorted.length; i++) {
    if (i === 0 || sorted[i] !== sorted[i - 1]) out.keys[++j] = sorted[i];
    out.counts[j] += weights ? weights[i] : 1;
  }
  return out;
}

const countSorted = (keys: Float64Array): CountTable => runs(keys.sort(), null);

function find(table: CountTable, key: number): number {
  let lo = 0;
  let hi = table.keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const k = table.keys[mid];
    if (k === key) return mid;
    if (k < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

const countOf = (table: CountTable, key: number) => {
  const i = find(table, key);
  return i < 0 ? 0 : table.counts[i];
};

/** Sums `counts` (or counts 1 per key when `distinct`) grouped by floor(key / V), on sorted keys. */
function groupByPrefix(table: CountTable, V: number, distinct: boolean): CountTable {
  const prefixes = new Float64Array(table.keys.length);
  for (let i = 0; i < prefixes.length; i++) prefixes[i] = Math.floor(table.keys[i] / V);
  return runs(prefixes, distinct ? null : table.counts);
}

/** D = n1 / (n1 + 2·n2) from the count-of-counts (0.5 when undefined). */
function discountOf(counts: Float64Array): number {
  let n1 = 0;
  let n2 = 0;
  for (const c of counts) {
    if (c === 1) n1++;
    else if (c === 2) n2++;
  }
  return n1 + n2 > 0 && n1 > 0 ? n1 / (n1 + 2 * n2) : 0.5;
}

export interface KneserNeyStats {
  tokens: number;
  trigramTypes: number;
  bigramTypes: number;
  discounts: [number, number, number];
}

export class KneserNeyTrigram {
  readonly V: number;
  #tri: CountTable; // c(uvw)
  #triCtx: CountTable; // c(uv·)
  #triCtxTypes: CountTable; // N1+(uv·)
  #bi: CountTable; // N1+(·vw)
  #biCtx: CountTable; // Σ_w N1+(·vw)
  #biCtxTypes: CountTable; // N1+(v·) among continuation bigrams
  #uni: Float64Array; // N1+(·w)
  #uniTotal: number;
  #uniTypes: number;
  #d: [number, number, number];
  readonly stats: KneserNeyStats;

  /** Counts every trigram of `stream` (documents separated by a token the caller chooses; it is just a token here). */
  constructor(stream: ArrayLike<number>, V: number) {
    if (stream.length < 3) throw new RangeError("KneserNeyTrigram: the training stream needs at least 3 tokens");
    this.V = V;
    const n = stream.length - 2;
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = (stream[i] * V + stream[i + 1]) * V + stream[i + 2];
    this.#tri = countSorted(keys);
    this.#triCtx = groupByPrefix(this.#tri, V, false);
    this.#triCtxTypes = groupByPrefix(this.#tri, V, true);
    // Continuation bigrams: each trigram type uvw adds one distinct left context u to the bigram vw.
    const biKeys = new Float64Array(this.#tri.keys.length);
    for (let i = 0; i < biKeys.length; i++) biKeys[i] = this.#tri.keys[i] % (V * V);
    this.#bi = countSorted(biKeys);
    this.#biCtx = groupByPrefix(this.#bi, V, false);
    this.#biCtxTypes = groupByPrefix(this.#bi, V, true);
    this.#uni = new Float64Array(V);
    for (const k of this.#bi.keys) this.#uni[k % V]++;
    this.#uniTotal = this.#bi.keys.length;
    this.#uniTypes = this.#uni.reduce((a, c) => a + (c > 0 ? 1 : 0), 0);
    this.#d = [discountOf(this.#uni), discountOf(this.#bi.counts), discountOf(this.#tri.counts)];
    this.stats = { tokens: stream.length, trigramTypes: this.#tri.keys.length, bigramTypes: this.#bi.keys.length, discounts: [...this.#d] };
  }

  /** P(w) at the unigram level: discounted continuation counts interpolated with uniform. */
  unigram(w: number): number {
    const D = this.#d[0];
    return (Math.max(this.#uni[w] - D, 0) + (D * this.#uniTypes) / this.V) / this.#uniTotal;
  }

  /** P(w | v) at the bigram level (continuation counts), backing off to the unigram level. */
  bigram(v: number, w: number): number {
    const V = this.V;
    const ctx = countOf(this.#biCtx, v);
    if (ctx === 0) return this.unigram(w);
    const D = this.#d[1];
    const c = countOf(this.#bi, v * V + w);
    return Math.max(c - D, 0) / ctx + ((D * countOf(this.#biCtxTypes, v)) / ctx) * this.unigram(w);
  }

  /** P(w | u v); `u` < 0 means only one token of context exists (a sequence's first prediction). */
  prob(u: number, v: number, w: number): number {
    if (u < 0) return this.bigram(v, w);
    const V = this.V;
    const ctxKey = u * V + v;
    const ctx = countOf(this.#triCtx, ctxKey);
    if (ctx === 0) return this.bigram(v, w);
    const D = this.#d[2];
    const c = countOf(this.#tri, ctxKey * V + w);
    return Math.max(c - D, 0) / ctx + ((D * countOf(this.#triCtxTypes, ctxKey)) / ctx) * this.bigram(v, w);
  }

  /** Total negative log-likelihood (nats) of seq[1..] given its own preceding tokens. */
  sequenceNats(seq: ArrayLike<number>): number {
    let nats = 0;
    for (let i = 1; i < seq.length; i++) nats -= Math.log(this.prob(i >= 2 ? seq[i - 2] : -1, seq[i - 1], seq[i]));
    return nats;
  }
}
