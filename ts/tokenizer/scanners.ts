/**
 * Hand-written matchers for the two split patterns nearly every byte-level BPE file uses: GPT-2's
 * (HF ByteLevel) and Llama-3's (also Qwen2's, with single digits). They produce exactly the pieces of
 * `Split(pattern, Isolated)` with the Oniguruma regex, but without building a RegExp match object per
 * word, which makes pre-tokenization several times faster. Character classes (\p{L}, \p{N}, Unicode
 * White_Space) come from a table built once from V8's own Unicode data.
 */

import { GPT2_PATTERN, LLAMA3_PATTERN } from "./regex";

const L = 1;
const N = 2;
const WS = 4;

let bmp: Uint8Array | null = null;
const astral = new Map<number, number>();
const RE_L = /\p{L}/u;
const RE_N = /\p{N}/u;
const RE_WS = /\p{White_Space}/u;

function classifySlow(cp: number): number {
  const s = String.fromCodePoint(cp);
  return (RE_L.test(s) ? L : 0) | (RE_N.test(s) ? N : 0) | (RE_WS.test(s) ? WS : 0);
}

function bmpTable(): Uint8Array {
  if (bmp) return bmp;
  const t = new Uint8Array(65536);
  let all = "";
  for (let c = 0; c < 65536; c++) all += c >= 0xd800 && c <= 0xdfff ? "\u0000" : String.fromCharCode(c);
  const mark = (re: RegExp, bit: number) => {
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(all)) !== null) t[m.index] |= bit;
  };
  mark(/\p{L}/gu, L);
  mark(/\p{N}/gu, N);
  mark(/\p{White_Space}/gu, WS);
  bmp = t;
  return t;
}

function classOfAstral(cp: number): number {
  let c = astral.get(cp);
  if (c === undefined) {
    c = classifySlow(cp);
    if (astral.size < 100000) astral.set(cp, c);
  }
  return c;
}

export type FastSplitter = (s: string, out: string[]) => void;

/**
 * GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 */
function gpt2Splitter(): FastSplitter {
  const T = bmpTable();
  return (s, out) => {
    const n = s.length;
    // class and width of the code point at i
    let w = 1;
    const cls = (i: number): number => {
      const c = s.charCodeAt(i);
      if (c < 0xd800 || c > 0xdbff || i + 1 >= n) {
        w = 1;
        return T[c];
      }
      const d = s.charCodeAt(i + 1);
      if (d < 0xdc00 || d > 0xdfff) {
        w = 1;
        return T[c];
      }
      w = 2;
      return classOfAstral(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
    };
    /** End of the run of code points starting at i whose class satisfies want. */
    const runEnd = (i: number, want: number): number => {
      while (i < n) {
        const k = cls(i);
        if (want === 0 ? (k & (L | N | WS)) !== 0 : (k & want) === 0) break;
        i += w;
      }
      return i;
    };
    let i = 0;
    while (i < n) {
      const c = s.charCodeAt(i);
      let end = -1;
      if (c === 39 /* ' */ && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d === 115 || d === 116 || d === 109 || d === 100) end = i + 2; // s t m d
        else if (i + 2 < n) {
          const e = s.charCodeAt(i + 2);
          if ((d === 114 && e === 101) || (d === 118 && e === 101) || (d === 108 && e === 108)) end = i + 3; // re ve ll
        }
      }
      if (end < 0) {
        let j = i;
        if (c === 32 && i + 1 < n) j = i + 1;
        let k = cls(j);
        if (j !== i && (k & WS) !== 0) {
          // " " then whitespace: the space belongs to the whitespace rules
          j = i;
          k = cls(i);
        }
        if (k & L) end = runEnd(j, L);
        else if (k & N) end = runEnd(j, N);
        else if ((k & WS) === 0) end = runEnd(j, 0);
        else if (j !== i) {
          // unreachable: j !== i only when s[j] is not whitespace
          end = runEnd(j, 0);
        } else {
          // whitespace run [i, e)
          const e = runEnd(i, WS);
          if (e >= n) end = e;
          else {
            // \s+(?!\S): give back the last whitespace char if that leaves at least one
            let last = e - 1;
            if (last > i && s.charCodeAt(last) >= 0xdc00 && s.charCodeAt(last) <= 0xdfff) last--;
            end = last > i ? last : e;
          }
        }
      }
      out.push(s.slice(i, end));
      i = end;
    }
  };
}

/**
 * Llama-3 (maxDigits 3) / Qwen2 (maxDigits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
function llama3Splitter(maxDigits: number): FastSplitter {
  const T = bmpTable();
  return (s, out) => {
    const n = s.length;
    let w = 1;
    const cls = (i: number): number => {
      const c = s.charCodeAt(i);
      if (c < 0xd800 || c > 0xdbff || i + 1 >= n) {
        w = 1;
        return T[c];
      }
      const d = s.charCodeAt(i + 1);
      if (d < 0xdc00 || d > 0xdfff) {
        w = 1;
        return T[c];
      }
      w = 2;
      return classOfAstral(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
    };
    const lower = (c: number): number => (c >= 65 && c <= 90 ? c + 32 : c === 0x17f ? 115 : c);
    let i = 0;
    while (i < n) {
      const c = s.charCodeAt(i);
      let end = -1;
      // 1. contractions, case-insensitive
      if (c === 39 && i + 1 < n) {
        const d = lower(s.charCodeAt(i + 1));
        if (d === 115 || d === 116 || d === 109 || d === 100) end = i + 2;
        else if (i + 2 < n) {
          const e = lower(s.charCodeAt(i + 2));
          if ((d === 114 && e === 101) || (d === 118 && e === 101) || (d === 108 && e === 108)) end = i + 3;
        }
      }
      if (end < 0) {
        const k = cls(i);
        const wi = w;
        if (k & L) {
          // 2. letters (no prefix char)
          let j = i + wi;
          while (j < n && cls(j) & L) j += w;
          end = j;
        } else if (k & N) {
          // 3. up to maxDigits numbers
          let j = i + wi;
          let count = 1;
          while (j < n && count < maxDigits && cls(j) & N) {
            j += w;
            count++;
          }
          end = j;
        } else if (c !== 13 && c !== 10 && i + wi < n && cls(i + wi) & L) {
          // 2. one non-letter, non-number, non-CR/LF char followed by letters
          let j = i + wi;
          while (j < n && cls(j) & L) j += w;
          end = j;
        } else {
          // 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
          let j = i;
          if (c === 32 && i + 1 < n && (cls(i + 1) & (L | N | WS)) === 0) j = i + 1;
          if ((cls(j) & (L | N | WS)) === 0) {
            j += w;
            while (j < n && (cls(j) & (L | N | WS)) === 0) j += w;
            while (j < n && (s.charCodeAt(j) === 13 || s.charCodeAt(j) === 10)) j++;
            end = j;
          } else {
            // whitespace at i: the maximal run [i, e)
            let e = i;
            let lastNl = -1;
            while (e < n) {
              const kk = cls(e);
              if ((kk & WS) === 0) break;
              const ch = s.charCodeAt(e);
              if (ch === 13 || ch === 10) lastNl = e;
              e += w;
            }
            if (lastNl >= 0) end = lastNl + 1; // 5. \s*[\r\n]+
            else if (e >= n) end = e; // 6. at the end
            else {
              // 6. \s+(?!\S) gives back the last char when at least one remains; else 7. \s+
              let last = e - 1;
              if (last > i && s.charCodeAt(last) >= 0xdc00 && s.charCodeAt(last) <= 0xdfff) last--;
              end = last > i ? last : e;
            }
          }
        }
      }
      out.push(s.slice(i, end));
      i = end;
    }
  };
}

const QWEN2_PATTERN = LLAMA3_PATTERN.replace("\\p{N}{1,3}", "\\p{N}");

/** A fast splitter equivalent to `Split(pattern, Isolated)` for known patterns, or null. */
export function fastSplitterFor(pattern: string): FastSplitter | null {
  if (pattern === GPT2_PATTERN) return gpt2Splitter();
  if (pattern === LLAMA3_PATTERN) return llama3Splitter(3);
  if (pattern === QWEN2_PATTERN) return llama3Splitter(1);
  return null;
}
