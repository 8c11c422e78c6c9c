/**
 * The BPE model of Hugging Face `tokenizers`, on integer ids.
 *
 * Merges live in an open-addressing hash table keyed by the (left id, right id) pair. A word is
 * first turned into symbol ids (its characters, or for byte-level input its UTF-8 bytes), then merged:
 * always the lowest-rank adjacent pair, the leftmost one among equals, exactly as `Word::merge_all`
 * does with its (rank, position) heap. Short words use an in-place scan; long words (sentencepiece-style
 * models see a whole line as one word) use a heap over a linked list, O(n log n).
 * Results are cached per word in a bounded two-generation cache (an LRU approximation with O(1) hits).
 */

import { BYTE_TO_CHAR, utf8Encode } from "./byteLevel";

/** Open-addressing hash map (int, int) -> (rank, new id). */
export class PairTable {
  private mask: number;
  private keyA: Int32Array;
  private keyB: Int32Array;
  readonly rank: Int32Array;
  readonly newId: Int32Array;
  size = 0;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.mask = cap - 1;
    this.keyA = new Int32Array(cap).fill(-1);
    this.keyB = new Int32Array(cap);
    this.rank = new Int32Array(cap);
    this.newId = new Int32Array(cap);
  }

  private static hash(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0;
  }

  /** Inserts or overwrites (a later duplicate merge wins, as when `tokenizers` collects its merge map). */
  set(a: number, b: number, rank: number, newId: number): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    let h = PairTable.hash(a, b) & this.mask;
    while (true) {
      const ka = this.keyA[h];
      if (ka === -1) {
        this.keyA[h] = a;
        this.keyB[h] = b;
        this.rank[h] = rank;
        this.newId[h] = newId;
        this.size++;
        return;
      }
      if (ka === a && this.keyB[h] === b) {
        this.rank[h] = rank;
        this.newId[h] = newId;
        return;
      }
      h = (h + 1) & this.mask;
    }
  }

  /** Slot of (a, b), or -1. */
  find(a: number, b: number): number {
    const keyA = this.keyA;
    let h = PairTable.hash(a, b) & this.mask;
    while (true) {
      const ka = keyA[h];
      if (ka === a && this.keyB[h] === b) return h;
      if (ka === -1) return -1;
      h = (h + 1) & this.mask;
    }
  }

  private grow(): void {
    const { keyA, keyB, rank, newId } = this;
    const cap = (this.mask + 1) * 2;
    this.mask = cap - 1;
    this.keyA = new Int32Array(cap).fill(-1);
    this.keyB = new Int32Array(cap);
    (this as { rank: Int32Array }).rank = new Int32Array(cap);
    (this as { newId: Int32Array }).newId = new Int32Array(cap);
    this.size = 0;
    for (let i = 0; i < keyA.length; i++) if (keyA[i] !== -1) this.set(keyA[i], keyB[i], rank[i], newId[i]);
  }
}

/** Bounded cache: hits in the young generation cost one Map lookup; old hits are promoted. */
export class WordCache<V> {
  private young = new Map<string, V>();
  private old = new Map<string, V>();
  constructor(private readonly capacity: number) {}

  get(k: string): V | undefined {
    const v = this.young.get(k);
    if (v !== undefined) return v;
    const o = this.old.get(k);
    if (o !== undefined) {
      this.old.delete(k);
      this.set(k, o);
    }
    return o;
  }

  set(k: string, v: V): void {
    if (this.young.size >= this.capacity >> 1) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(k, v);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }
}

export interface BpeOptions {
  vocab: Map<string, number>;
  /** Merges as [left, right] token strings, in rank order. */
  merges: Array<[string, string]>;
  unkToken: string | null;
  continuingSubwordPrefix: string | null;
  endOfWordSuffix: string | null;
  fuseUnk: boolean;
  byteFallback: boolean;
  ignoreMerges: boolean;
  cacheCapacity?: number;
}

/** Thrown by the constructor for merges that name tokens missing from the vocabulary. */
export class BpeConfigError extends Error {}

const MAX_CACHED_WORD = 256;
const SCAN_LIMIT = 48;
const NO_RANK = 0x7fffffff;

export class BpeModel {
  readonly vocab: Map<string, number>;
  private readonly pairs: PairTable;
  private readonly unkId: number;
  private readonly unkToken: string | null;
  private readonly prefix: string | null;
  private readonly suffix: string | null;
  private readonly fuseUnk: boolean;
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  /** Id of the single-byte-character token for each byte (byte-level input), or -1. */
  private readonly byteCharId = new Int32Array(256).fill(-1);
  /** Id of the `<0xNN>` token for each byte, or -1. */
  private readonly byteTokenId = new Int32Array(256).fill(-1);
  /** True when byte-level input can go straight from UTF-8 bytes to ids. */
  private readonly fastBytes: boolean;
  private readonly cache: WordCache<Int32Array>;
  private readonly cacheBytes: WordCache<Int32Array>;
  private utf8Buf: Uint8Array = new Uint8Array(1024);
  /** Vocabulary id of each single BMP character: -2 not looked up yet, -1 absent. */
  private readonly charIds = new Int32Array(65536).fill(-2);
  private symBuf = new Int32Array(256);
  private rankBuf = new Int32Array(256);

  constructor(o: BpeOptions) {
    this.vocab = o.vocab;
    this.unkToken = o.unkToken;
    this.unkId = o.unkToken !== null ? (o.vocab.get(o.unkToken) ?? -1) : -1;
    this.prefix = o.continuingSubwordPrefix || null;
    this.suffix = o.endOfWordSuffix || null;
    this.fuseUnk = o.fuseUnk;
    this.byteFallback = o.byteFallback;
    this.ignoreMerges = o.ignoreMerges;
    const cap = o.cacheCapacity ?? 100_000;
    this.cache = new WordCache(cap);
    this.cacheBytes = new WordCache(cap);

    const prefixLen = this.prefix ? this.prefix.length : 0;
    this.pairs = new PairTable(o.merges.length);
    for (let r = 0; r < o.merges.length; r++) {
      const [a, b] = o.merges[r];
      const ia = o.vocab.get(a);
      const ib = o.vocab.get(b);
      if (ia === undefined) throw new BpeConfigError(`merge #${r} "${a} ${b}": token "${a}" is not in the vocabulary`);
      if (ib === undefined) throw new BpeConfigError(`merge #${r} "${a} ${b}": token "${b}" is not in the vocabulary`);
      const merged = a + (prefixLen && b.startsWith(this.prefix!) ? b.slice(prefixLen) : b);
      const nid = o.vocab.get(merged);
      if (nid === undefined) throw new BpeConfigError(`merge #${r} "${a} ${b}": result "${merged}" is not in the vocabulary`);
      this.pairs.set(ia, ib, r, nid);
    }
    let all = true;
    for (let b = 0; b < 256; b++) {
      const id = o.vocab.get(BYTE_TO_CHAR[b]);
      if (id === undefined) all = false;
      else this.byteCharId[b] = id;
      const hex = "<0x" + b.toString(16).toUpperCase().padStart(2, "0") + ">";
      const bid = o.vocab.get(hex);
      if (bid !== undefined) this.byteTokenId[b] = bid;
    }
    this.fastBytes = all && !this.prefix && !this.suffix;
  }

  /** Number of merges. */
  get mergeCount(): number {
    return this.pairs.size;
  }

  clearCache(): void {
    this.cache.clear();
    this.cacheBytes.clear();
  }

  /**
   * Tokenizes one pre-tokenized word and appends its ids to `out`.
   * `byteLevel`: `word` is raw text that must first go through the byte-level mapping.
   */
  encodeWord(word: string, byteLevel: boolean, out: number[]): void {
    if (word.length === 0) return;
    const cache = byteLevel ? this.cacheBytes : this.cache;
    const cacheable = word.length <= MAX_CACHED_WORD;
    if (cacheable) {
      const hit = cache.get(word);
      if (hit !== undefined) {
        for (let i = 0; i < hit.length; i++) out.push(hit[i]);
        return;
      }
    }
    let ids: Int32Array;
    if (byteLevel && this.fastBytes) ids = this.tokenizeBytes(word);
    else ids = this.tokenizeString(byteLevel ? this.mapBytes(word) : word);
    if (cacheable) cache.set(word, ids);
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  private mapBytes(word: string): string {
    const [buf, len] = utf8Encode(word, this.utf8Buf);
    this.utf8Buf = buf;
    let s = "";
    for (let i = 0; i < len; i++) s += BYTE_TO_CHAR[buf[i]];
    return s;
  }

  private ensureSym(n: number): void {
    if (this.symBuf.length < n) {
      let c = this.symBuf.length;
      while (c < n) c *= 2;
      this.symBuf = new Int32Array(c);
      this.rankBuf = new Int32Array(c);
    }
  }

  /** Byte-level input whose 256 byte characters are all in the vocabulary, without prefix/suffix. */
  private tokenizeBytes(word: string): Int32Array {
    const [buf, len] = utf8Encode(word, this.utf8Buf);
    this.utf8Buf = buf;
    if (this.ignoreMerges) {
      let s = "";
      for (let i = 0; i < len; i++) s += BYTE_TO_CHAR[buf[i]];
      const id = this.vocab.get(s);
      if (id !== undefined) return Int32Array.of(id);
    }
    this.ensureSym(len);
    const sym = this.symBuf;
    for (let i = 0; i < len; i++) sym[i] = this.byteCharId[buf[i]];
    return this.merge(len);
  }

  /** The general path of `BPE::merge_word` (prefix/suffix, byte fallback, unk fusing). */
  private tokenizeString(w: string): Int32Array {
    if (this.ignoreMerges) {
      const id = this.vocab.get(w);
      if (id !== undefined) return Int32Array.of(id);
    }
    const syms: number[] = [];
    let unkPending = -1; // id of the pending (possibly fused) unk, or -1
    let i = 0;
    const plain = !this.prefix && !this.suffix;
    const charIds = this.charIds;
    while (i < w.length) {
      const cu = w.charCodeAt(i);
      let id: number | undefined;
      let s: string;
      if (plain && (cu < 0xd800 || cu > 0xdfff)) {
        // single BMP code unit: memoized vocabulary lookup
        let c = charIds[cu];
        s = w[i];
        if (c === -2) {
          c = this.vocab.get(s) ?? -1;
          charIds[cu] = c;
        }
        i++;
        if (c >= 0) {
          if (unkPending !== -1) {
            syms.push(unkPending);
            unkPending = -1;
          }
          syms.push(c);
          continue;
        }
        id = undefined;
      } else {
        const cp = w.codePointAt(i)!;
        const clen = cp > 0xffff ? 2 : 1;
        const isFirst = i === 0;
        const isLast = i + clen >= w.length;
        s = w.slice(i, i + clen);
        i += clen;
        if (!isFirst && this.prefix) s = this.prefix + s;
        if (isLast && this.suffix) s = s + this.suffix;
        id = this.vocab.get(s);
      }
      if (id !== undefined) {
        if (unkPending !== -1) {
          syms.push(unkPending);
          unkPending = -1;
        }
        syms.push(id);
        continue;
      }
      if (this.byteFallback) {
        const [buf, len] = utf8Encode(s, this.utf8Buf);
        this.utf8Buf = buf;
        let ok = true;
        for (let k = 0; k < len; k++) if (this.byteTokenId[buf[k]] === -1) ok = false;
        if (ok) {
          // As in `tokenizers`, a pending unk is not flushed before byte-fallback tokens.
          for (let k = 0; k < len; k++) syms.push(this.byteTokenId[buf[k]]);
          continue;
        }
      }
      if (this.unkToken !== null) {
        if (this.unkId === -1) throw new BpeConfigError(`unk_token "${this.unkToken}" is not in the vocabulary`);
        if (unkPending !== -1 && !this.fuseUnk) syms.push(unkPending);
        unkPending = this.unkId;
      }
    }
    if (unkPending !== -1) syms.push(unkPending);
    this.ensureSym(syms.length);
    for (let k = 0; k < syms.length; k++) this.symBuf[k] = syms[k];
    return this.merge(syms.length);
  }

  /** Merges symBuf[0..n) and returns the resulting ids. */
  private merge(n: number): Int32Array {
    if (n <= 1) return this.symBuf.slice(0, n);
    return n <= SCAN_LIMIT ? this.mergeScan(n) : this.mergeHeap(n);
  }

  private mergeScan(n: number): Int32Array {
    const sym = this.symBuf;
    const ranks = this.rankBuf;
    const pairs = this.pairs;
    const prank = pairs.rank;
    const pnew = pairs.newId;
    for (let i = 0; i + 1 < n; i++) {
      const s = pairs.find(sym[i], sym[i + 1]);
      ranks[i] = s === -1 ? NO_RANK : prank[s];
    }
    while (n > 1) {
      let best = NO_RANK;
      let at = -1;
      for (let i = 0; i + 1 < n; i++) {
        if (ranks[i] < best) {
          best = ranks[i];
          at = i;
        }
      }
      if (at === -1) break;
      const slot = pairs.find(sym[at], sym[at + 1]);
      sym[at] = pnew[slot];
      for (let k = at + 1; k + 1 < n; k++) {
        sym[k] = sym[k + 1];
        ranks[k] = ranks[k + 1];
      }
      n--;
      if (at > 0) {
        const s = pairs.find(sym[at - 1], sym[at]);
        ranks[at - 1] = s === -1 ? NO_RANK : prank[s];
      }
      if (at + 1 < n) {
        const s = pairs.find(sym[at], sym[at + 1]);
        ranks[at] = s === -1 ? NO_RANK : prank[s];
      }
    }
    return sym.slice(0, n);
  }

  private mergeHeap(n: number): Int32Array {
    const sym = this.symBuf.slice(0, n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const pairs = this.pairs;
    const prank = pairs.rank;
    const pnew = pairs.newId;
    // Binary min-heap ordered by (rank, pos), packed in one exact double rank * n + pos.
    // At most n - 1 initial entries plus 2 per merge (n - 1 merges): 3n slots always suffice.
    const hKey = new Float64Array(3 * n + 4);
    const hNew = new Int32Array(3 * n + 4);
    let size = 0;
    for (let i = 0; i + 1 < n; i++) {
      const s = pairs.find(sym[i], sym[i + 1]);
      if (s === -1) continue;
      const key = prank[s] * n + i;
      let k = size++;
      while (k > 0) {
        const parent = (k - 1) >> 1;
        if (hKey[parent] <= key) break;
        hKey[k] = hKey[parent];
        hNew[k] = hNew[parent];
        k = parent;
      }
      hKey[k] = key;
      hNew[k] = pnew[s];
    }
    while (size > 0) {
      const pos = hKey[0] % n | 0;
      const nid = hNew[0];
      // pop
      size--;
      if (size > 0) {
        const key = hKey[size];
        const kn = hNew[size];
        let k = 0;
        while (true) {
          let c = 2 * k + 1;
          if (c >= size) break;
          if (c + 1 < size && hKey[c + 1] < hKey[c]) c++;
          if (hKey[c] >= key) break;
          hKey[k] = hKey[c];
          hNew[k] = hNew[c];
          k = c;
        }
        hKey[k] = key;
        hNew[k] = kn;
      }
      if (alive[pos] === 0) continue;
      const right = next[pos];
      if (right === -1) continue;
      const cur = pairs.find(sym[pos], sym[right]);
      if (cur === -1 || pnew[cur] !== nid) continue; // stale entry
      sym[pos] = nid;
      alive[right] = 0;
      const after = next[right];
      next[pos] = after;
      if (after !== -1) prev[after] = pos;
      const before = prev[pos];
      for (let side = 0; side < 2; side++) {
        const l = side === 0 ? before : pos;
        const r = side === 0 ? pos : after;
        if (l === -1 || r === -1) continue;
        const s = pairs.find(sym[l], sym[r]);
        if (s === -1) continue;
        const key = prank[s] * n + l;
        let k = size++;
        while (k > 0) {
          const parent = (k - 1) >> 1;
          if (hKey[parent] <= key) break;
          hKey[k] = hKey[parent];
          hNew[k] = hNew[parent];
          k = parent;
        }
        hKey[k] = key;
        hNew[k] = pnew[s];
      }
    }
    let count = 0;
    for (let i = 0; i !== -1; i = next[i]) count++;
    const res = new Int32Array(count);
    let k = 0;
    for (let i = 0; i !== -1; i = next[i]) res[k++] = sym[i];
    return res;
  }
}
