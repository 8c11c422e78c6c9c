/**
 * Splitting added tokens out of the text before the model runs, as `AddedVocabulary::find_matches`
 * does: leftmost-longest matching over all contents (a trie instead of Aho-Corasick), then per token
 * `single_word` (drop the match when a word character touches it), `lstrip` / `rstrip` (absorb the
 * whitespace on that side into the token).
 */

export interface AddedToken {
  id: number;
  content: string;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A piece of text: `id` >= 0 for an added token, -1 for text the model must tokenize. */
export interface Segment {
  text: string;
  id: number;
  /** Offset of the piece in the string that was split. */
  start: number;
}

interface TrieNode {
  next: Map<number, TrieNode>;
  token: AddedToken | null;
}

// `tokenizers` uses the Rust `regex` crate here: \w and \s are Unicode.
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const WHITE = /\p{White_Space}/u;

function lastChar(s: string, end: number): string {
  if (end <= 0) return "";
  const c = s.charCodeAt(end - 1);
  if (c >= 0xdc00 && c <= 0xdfff && end >= 2) return s.slice(end - 2, end);
  return s.slice(end - 1, end);
}

function firstChar(s: string, start: number): string {
  if (start >= s.length) return "";
  return String.fromCodePoint(s.codePointAt(start)!);
}

export class AddedTokenMatcher {
  private readonly root: TrieNode = { next: new Map(), token: null };
  /** first[c] = 1 when some content starts with code unit c. */
  private readonly first = new Uint8Array(65536);
  readonly size: number;

  constructor(tokens: AddedToken[], contentOf: (t: AddedToken) => string = (t) => t.content) {
    let count = 0;
    for (const t of tokens) {
      const content = contentOf(t);
      if (content.length === 0) continue;
      this.first[content.charCodeAt(0)] = 1;
      let node = this.root;
      for (let i = 0; i < content.length; i++) {
        const c = content.charCodeAt(i);
        let nx = node.next.get(c);
        if (!nx) {
          nx = { next: new Map(), token: null };
          node.next.set(c, nx);
        }
        node = nx;
      }
      if (node.token === null) count++;
      // A later entry with the same content replaces the earlier one.
      node.token = t;
    }
    this.size = count;
  }

  /** Splits `s`; gaps keep their text, matches carry the token id (with any stripped whitespace). */
  split(s: string): Segment[] {
    const out: Segment[] = [];
    const root = this.root;
    let startOffset = 0;
    let i = 0;
    const n = s.length;
    const first = this.first;
    while (i < n) {
      if (first[s.charCodeAt(i)] === 0) {
        i++;
        continue;
      }
      let node = root.next.get(s.charCodeAt(i))!;
      // longest match starting at i
      let best: AddedToken | null = null;
      let bestEnd = -1;
      let j = i + 1;
      while (true) {
        if (node.token !== null) {
          best = node.token;
          bestEnd = j;
        }
        if (j >= n) break;
        const nx: TrieNode | undefined = node.next.get(s.charCodeAt(j));
        if (nx === undefined) break;
        node = nx;
        j++;
      }
      if (best === null) {
        i++;
        continue;
      }
      let start = i;
      let stop = bestEnd;
      i = bestEnd; // matches never overlap, even when discarded below
      if (best.singleWord) {
        const before = lastChar(s, start);
        const after = firstChar(s, stop);
        if ((before !== "" && WORD_CHAR.test(before)) || (after !== "" && WORD_CHAR.test(after))) continue;
      }
      if (best.lstrip) {
        let k = start;
        while (k > startOffset) {
          const c = lastChar(s, k);
          if (!WHITE.test(c)) break;
          k -= c.length;
        }
        start = k;
      }
      if (best.rstrip) {
        while (stop < n) {
          const c = firstChar(s, stop);
          if (!WHITE.test(c)) break;
          stop += c.length;
        }
        i = stop;
      }
      if (startOffset < start) out.push({ text: s.slice(startOffset, start), id: -1, start: startOffset });
      out.push({ text: s.slice(start, stop), id: best.id, start });
      startOffset = stop;
    }
    if (startOffset < n || out.length === 0) out.push({ text: s.slice(startOffset), id: -1, start: startOffset });
    return out;
  }
}
