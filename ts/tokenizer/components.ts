/**
 * The pipeline stages of a Hugging Face `tokenizer.json` (normalizer, pre-tokenizer, decoder,
 * post-processor), built from their JSON configuration with the semantics of the Rust `tokenizers`
 * crate. Anything not implemented throws {@link ComponentError}; the loader turns it into an
 * `UnsupportedModelError` naming the component and the file.
 */

import { CHAR_TO_BYTE, toByteLevel } from "./byteLevel";
import { compileOnigRegex, escapeRegexLiteral, GPT2_PATTERN, RegexTranslationError } from "./regex";
import { fastSplitterFor } from "./scanners";

/** Thrown for a stage this library does not implement (`unsupported`) or cannot read (`invalid`). */
export class ComponentError extends Error {
  constructor(
    readonly kind: "unsupported" | "invalid",
    message: string,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function typeOf(cfg: Json, what: string): string {
  const t = cfg["type"];
  if (typeof t !== "string") throw new ComponentError("invalid", `${what} has no "type"`);
  return t;
}

function bool(cfg: Json, key: string, dflt: boolean, what: string): boolean {
  const v = cfg[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") throw new ComponentError("invalid", `${what}.${key} must be a boolean`);
  return v;
}

function str(cfg: Json, key: string, what: string): string {
  const v = cfg[key];
  if (typeof v !== "string") throw new ComponentError("invalid", `${what}.${key} must be a string`);
  return v;
}

function char(cfg: Json, key: string, what: string): string {
  const s = str(cfg, key, what);
  if ([...s].length !== 1) throw new ComponentError("invalid", `${what}.${key} must be a single character`);
  return s;
}

function compileRegex(pattern: string, what: string): RegExp {
  try {
    return compileOnigRegex(pattern);
  } catch (e) {
    if (e instanceof RegexTranslationError) {
      throw new ComponentError("unsupported", `${what}: regex ${JSON.stringify(pattern)}: ${e.message}`);
    }
    throw e;
  }
}

/** A `{String: "..."}` or `{Regex: "..."}` pattern as a global regex. */
function patternRegex(p: unknown, what: string): RegExp {
  if (!isObj(p)) throw new ComponentError("invalid", `${what}.pattern must be {"String": ...} or {"Regex": ...}`);
  if (typeof p["String"] === "string") return new RegExp(escapeRegexLiteral(p["String"]), "gu");
  if (typeof p["Regex"] === "string") return compileRegex(p["Regex"], what);
  throw new ComponentError("invalid", `${what}.pattern must be {"String": ...} or {"Regex": ...}`);
}

// ---------------------------------------------------------------------------------------------
// Normalizers

export type Normalizer = (s: string) => string;

const WHITE_SPACE_START = /^\p{White_Space}+/u;
const WHITE_SPACE_END = /\p{White_Space}+$/u;

export function buildNormalizer(cfg: unknown): Normalizer | null {
  if (cfg === null || cfg === undefined) return null;
  if (!isObj(cfg)) throw new ComponentError("invalid", "normalizer must be an object or null");
  const t = typeOf(cfg, "normalizer");
  const what = `normalizer ${t}`;
  switch (t) {
    case "Sequence": {
      const list = cfg["normalizers"];
      if (!Array.isArray(list)) throw new ComponentError("invalid", `${what}.normalizers must be an array`);
      const parts = list.map((c) => buildNormalizer(c)).filter((n): n is Normalizer => n !== null);
      return (s) => {
        for (const p of parts) s = p(s);
        return s;
      };
    }
    case "Prepend": {
      const pre = str(cfg, "prepend", what);
      return (s) => (s.length > 0 ? pre + s : s);
    }
    case "Append": {
      const app = str(cfg, "append", what);
      return (s) => (s.length > 0 ? s + app : s);
    }
    case "Replace": {
      const re = patternRegex(cfg["pattern"], what);
      const content = str(cfg, "content", what);
      return (s) => s.replace(re, () => content);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD":
      return (s) => s.normalize(t);
    case "Lowercase":
      return (s) => s.toLowerCase();
    case "Strip": {
      const left = bool(cfg, "strip_left", false, what);
      const right = bool(cfg, "strip_right", false, what);
      return (s) => {
        if (left) s = s.replace(WHITE_SPACE_START, "");
        if (right) s = s.replace(WHITE_SPACE_END, "");
        return s;
      };
    }
    default:
      throw new ComponentError("unsupported", `normalizer type "${t}" is not supported`);
  }
}

// ---------------------------------------------------------------------------------------------
// Splitting with HF's SplitDelimiterBehavior

export type SplitBehavior = "Removed" | "Isolated" | "MergedWithPrevious" | "MergedWithNext" | "Contiguous";
const BEHAVIORS = new Set(["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]);

/**
 * Splits `s` on the matches of global regex `re` like `NormalizedString::split`, appending the non-empty
 * pieces to `out`. Returns whether the first appended piece starts at offset 0 of `s` (or true if none).
 */
export function splitOn(s: string, re: RegExp, behavior: SplitBehavior, invert: boolean, out: string[]): boolean {
  if (s.length === 0) return true;
  re.lastIndex = 0;
  if (behavior === "Isolated" && !invert) {
    // Fast path: every gap and every match is its own piece.
    let prev = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(s)) !== null) {
      const start = m.index;
      const end = start + m[0].length;
      if (end === start) {
        re.lastIndex = start + ((s.codePointAt(start) ?? 0) > 0xffff ? 2 : 1);
        if (start >= s.length) break;
        continue;
      }
      if (start > prev) out.push(s.slice(prev, start));
      out.push(m[0]);
      prev = end;
    }
    if (prev < s.length) out.push(s.slice(prev));
    return true;
  }
  // General path: (start, end, isMatch) segments, then fold per behaviour.
  const segs: Array<[number, number, boolean]> = [];
  let prev = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    const start = m.index;
    const end = start + m[0].length;
    if (start !== prev) segs.push([prev, start, invert]);
    segs.push([start, end, !invert]);
    prev = end;
    if (end === start) {
      re.lastIndex = start + ((s.codePointAt(start) ?? 0) > 0xffff ? 2 : 1);
      if (start >= s.length) break;
    }
  }
  if (prev !== s.length) segs.push([prev, s.length, invert]);

  let kept: Array<[number, number]>;
  switch (behavior) {
    case "Isolated":
      kept = segs.map(([a, b]) => [a, b]);
      break;
    case "Removed":
      kept = segs.filter((x) => !x[2]).map(([a, b]) => [a, b]);
      break;
    case "MergedWithPrevious": {
      kept = [];
      let prevMatch = false;
      for (const [a, b, isM] of segs) {
        if (isM && !prevMatch && kept.length > 0) kept[kept.length - 1][1] = b;
        else kept.push([a, b]);
        prevMatch = isM;
      }
      break;
    }
    case "MergedWithNext": {
      kept = [];
      let prevMatch = false;
      for (let k = segs.length - 1; k >= 0; k--) {
        const [a, b, isM] = segs[k];
        if (isM && !prevMatch && kept.length > 0) kept[kept.length - 1][0] = a;
        else kept.push([a, b]);
        prevMatch = isM;
      }
      kept.reverse();
      break;
    }
    case "Contiguous": {
      kept = [];
      let prevMatch = false;
      for (const [a, b, isM] of segs) {
        if (isM === prevMatch && kept.length > 0) kept[kept.length - 1][1] = b;
        else kept.push([a, b]);
        prevMatch = isM;
      }
      break;
    }
  }
  let firstAtZero = true;
  let first = true;
  for (const [a, b] of kept) {
    if (b <= a) continue;
    if (first) {
      firstAtZero = a === 0;
      first = false;
    }
    out.push(s.slice(a, b));
  }
  return firstAtZero;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

/** Context of one piece of text between added tokens. */
export interface PreCtx {
  /** Whether words[0] starts at offset 0 of the original input (for Metaspace prepend_scheme "first"). */
  firstAtStart: boolean;
}

export type PreStep = (words: string[], ctx: PreCtx) => string[];

export interface PreTokenizerPlan {
  steps: PreStep[];
  /** The last stage is a ByteLevel mapping, left to the model (which maps UTF-8 bytes straight to ids). */
  finalByteLevel: boolean;
  /** The pipeline contains a ByteLevel pre-tokenizer anywhere. */
  usesByteLevel: boolean;
}

function flattenPre(cfg: unknown, out: Json[]): void {
  if (cfg === null || cfg === undefined) return;
  if (!isObj(cfg)) throw new ComponentError("invalid", "pre_tokenizer must be an object or null");
  const t = typeOf(cfg, "pre_tokenizer");
  if (t === "Sequence") {
    const list = cfg["pretokenizers"];
    if (!Array.isArray(list)) throw new ComponentError("invalid", "pre_tokenizer Sequence.pretokenizers must be an array");
    for (const c of list) flattenPre(c, out);
  } else {
    out.push(cfg);
  }
}

/** Applies `split` to every word; tracks whether the first word still starts at the input's start. */
function perWord(words: string[], ctx: PreCtx, split: (w: string, out: string[]) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const before = out.length;
    const atZero = split(words[i], out);
    if (i === 0) ctx.firstAtStart = ctx.firstAtStart && atZero && out.length > before;
  }
  return out;
}

function readBehavior(cfg: Json, what: string): SplitBehavior {
  const b = cfg["behavior"];
  if (typeof b !== "string" || !BEHAVIORS.has(b)) {
    throw new ComponentError("unsupported", `${what}: split behavior ${JSON.stringify(b)} is not supported`);
  }
  return b as SplitBehavior;
}

function readPrependScheme(cfg: Json, what: string): "always" | "first" | "never" {
  const s = cfg["prepend_scheme"];
  if (s === undefined || s === null) {
    return bool(cfg, "add_prefix_space", true, what) ? "always" : "never";
  }
  if (s === "always" || s === "first" || s === "never") return s;
  throw new ComponentError("unsupported", `${what}: prepend_scheme ${JSON.stringify(s)} is not supported`);
}

export function buildPreTokenizer(cfg: unknown): PreTokenizerPlan {
  const flat: Json[] = [];
  flattenPre(cfg, flat);
  const steps: PreStep[] = [];
  let finalByteLevel = false;
  let usesByteLevel = false;
  flat.forEach((c, idx) => {
    const t = typeOf(c, "pre_tokenizer");
    const what = `pre_tokenizer ${t}`;
    const isLast = idx === flat.length - 1;
    switch (t) {
      case "ByteLevel": {
        usesByteLevel = true;
        const addPrefix = bool(c, "add_prefix_space", true, what);
        const useRegex = bool(c, "use_regex", true, what);
        const fast = useRegex ? fastSplitterFor(GPT2_PATTERN) : null;
        if (addPrefix || fast) {
          steps.push((words, ctx) =>
            perWord(words, ctx, (w, out) => {
              if (addPrefix && w.length > 0 && w.charCodeAt(0) !== 0x20) w = " " + w;
              if (fast) fast(w, out);
              else if (w.length > 0) out.push(w);
              return true;
            }),
          );
        }
        if (isLast) finalByteLevel = true;
        else steps.push((words) => words.map(toByteLevel));
        break;
      }
      case "Split": {
        const re = patternRegex(c["pattern"], what);
        const behavior = readBehavior(c, what);
        const invert = bool(c, "invert", false, what);
        const p = c["pattern"] as Json;
        const fast = typeof p["Regex"] === "string" && behavior === "Isolated" && !invert ? fastSplitterFor(p["Regex"]) : null;
        if (fast) {
          steps.push((words) => {
            const out: string[] = [];
            for (const w of words) fast(w, out);
            return out;
          });
        } else {
          steps.push((words, ctx) => perWord(words, ctx, (w, out) => splitOn(w, re, behavior, invert, out)));
        }
        break;
      }
      case "Metaspace": {
        const rep = char(c, "replacement", what);
        const scheme = readPrependScheme(c, what);
        const split = bool(c, "split", true, what);
        const repRe = new RegExp(escapeRegexLiteral(rep), "gu");
        steps.push((words, ctx) => {
          const out: string[] = [];
          for (let i = 0; i < words.length; i++) {
            let w = words[i].replaceAll(" ", rep);
            if (w.length > 0 && !w.startsWith(rep)) {
              if (scheme === "always" || (scheme === "first" && i === 0 && ctx.firstAtStart)) w = rep + w;
            }
            if (split) {
              const before = out.length;
              const atZero = splitOn(w, repRe, "MergedWithNext", false, out);
              if (i === 0) ctx.firstAtStart = ctx.firstAtStart && atZero && out.length > before;
            } else if (w.length > 0) out.push(w);
          }
          return out;
        });
        break;
      }
      case "Digits": {
        const individual = bool(c, "individual_digits", false, what);
        const re = /\p{N}/gu;
        steps.push((words, ctx) =>
          perWord(words, ctx, (w, out) => splitOn(w, re, individual ? "Isolated" : "Contiguous", false, out)),
        );
        break;
      }
      default:
        throw new ComponentError("unsupported", `pre_tokenizer type "${t}" is not supported`);
    }
  });
  return { steps, finalByteLevel, usesByteLevel };
}

// ---------------------------------------------------------------------------------------------
// Decoders

export interface DecodeCtx {
  /** Decode as if the tokens stood in the middle of a sequence: no start-of-text stripping. */
  midSequence: boolean;
}

export type Decoder = (tokens: string[], ctx: DecodeCtx) => string[];

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
// ignoreBOM: a decoded U+FEFF is text like any other (TextDecoder would drop a leading one)
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lossyUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

export function buildDecoder(cfg: unknown): Decoder | null {
  if (cfg === null || cfg === undefined) return null;
  if (!isObj(cfg)) throw new ComponentError("invalid", "decoder must be an object or null");
  const t = typeOf(cfg, "decoder");
  const what = `decoder ${t}`;
  switch (t) {
    case "Sequence": {
      const list = cfg["decoders"];
      if (!Array.isArray(list)) throw new ComponentError("invalid", `${what}.decoders must be an array`);
      const parts = list.map((d) => buildDecoder(d)).filter((d): d is Decoder => d !== null);
      return (tokens, ctx) => {
        for (const p of parts) tokens = p(tokens, ctx);
        return tokens;
      };
    }
    case "ByteLevel":
      return (tokens) => {
        const bytes: number[] = [];
        for (const tok of tokens) {
          let ok = true;
          for (let i = 0; i < tok.length; i++) {
            const c = tok.charCodeAt(i);
            if (c >= 512 || CHAR_TO_BYTE[c] < 0) {
              ok = false;
              break;
            }
          }
          if (ok) for (let i = 0; i < tok.length; i++) bytes.push(CHAR_TO_BYTE[tok.charCodeAt(i)]);
          else for (const b of new TextEncoder().encode(tok)) bytes.push(b);
        }
        return [lossyUtf8.decode(Uint8Array.from(bytes))];
      };
    case "Replace": {
      const re = patternRegex(cfg["pattern"], what);
      const content = str(cfg, "content", what);
      return (tokens) => tokens.map((tok) => tok.replace(re, () => content));
    }
    case "ByteFallback":
      return (tokens) => {
        const out: string[] = [];
        let pending: number[] = [];
        const flush = () => {
          if (pending.length === 0) return;
          try {
            out.push(fatalUtf8.decode(Uint8Array.from(pending)));
          } catch {
            for (let i = 0; i < pending.length; i++) out.push("\ufffd");
          }
          pending = [];
        };
        for (const tok of tokens) {
          const m = tok.length === 6 ? BYTE_TOKEN.exec(tok) : null;
          if (m) pending.push(parseInt(m[1], 16));
          else {
            flush();
            out.push(tok);
          }
        }
        flush();
        return out;
      };
    case "Fuse":
      return (tokens) => [tokens.join("")];
    case "Strip": {
      const content = char(cfg, "content", what);
      const start = Number(cfg["start"] ?? 0);
      const stop = Number(cfg["stop"] ?? 0);
      return (tokens, ctx) =>
        ctx.midSequence
          ? tokens
          : tokens.map((tok) => {
              const chars = [...tok];
              let a = 0;
              while (a < start && a < chars.length && chars[a] === content) a++;
              let b = chars.length;
              for (let i = 0; i < Math.min(stop, chars.length - a); i++) {
                if (chars[b - 1] === content) b--;
                else break;
              }
              return chars.slice(a, b).join("");
            });
    }
    case "Metaspace": {
      const rep = char(cfg, "replacement", what);
      const scheme = readPrependScheme(cfg, what);
      return (tokens, ctx) =>
        tokens.map((tok, i) => {
          const dropFirst = i === 0 && !ctx.midSequence && scheme !== "never";
          return tok.split(rep).join(dropFirst ? "" : " ");
        });
    }
    case "BPEDecoder": {
      const suffix = typeof cfg["suffix"] === "string" ? (cfg["suffix"] as string) : "</w>";
      return (tokens) => tokens.map((tok, i) => tok.split(suffix).join(i === tokens.length - 1 ? "" : " "));
    }
    default:
      throw new ComponentError("unsupported", `decoder type "${t}" is not supported`);
  }
}

// ---------------------------------------------------------------------------------------------
// Post-processors

export interface PostProcessor {
  /** Ids to put before and after a single sequence when special tokens are added. */
  prefix: number[];
  suffix: number[];
}

export function buildPostProcessor(cfg: unknown): PostProcessor | null {
  if (cfg === null || cfg === undefined) return null;
  if (!isObj(cfg)) throw new ComponentError("invalid", "post_processor must be an object or null");
  const t = typeOf(cfg, "post_processor");
  const what = `post_processor ${t}`;
  switch (t) {
    case "ByteLevel":
      return { prefix: [], suffix: [] };
    case "Sequence": {
      const list = cfg["processors"];
      if (!Array.isArray(list)) throw new ComponentError("invalid", `${what}.processors must be an array`);
      const res: PostProcessor = { prefix: [], suffix: [] };
      for (const p of list) {
        const pp = buildPostProcessor(p);
        if (pp) {
          res.prefix = [...pp.prefix, ...res.prefix];
          res.suffix = [...res.suffix, ...pp.suffix];
        }
      }
      return res;
    }
    case "TemplateProcessing": {
      const single = cfg["single"];
      const specials = cfg["special_tokens"];
      if (!Array.isArray(single)) throw new ComponentError("invalid", `${what}.single must be an array`);
      const table = isObj(specials) ? specials : {};
      const res: PostProcessor = { prefix: [], suffix: [] };
      let seenSeq = false;
      for (const piece of single) {
        if (isObj(piece) && isObj(piece["Sequence"])) {
          if (seenSeq) throw new ComponentError("unsupported", `${what}: a single template with two sequences`);
          seenSeq = true;
        } else if (isObj(piece) && isObj(piece["SpecialToken"])) {
          const name = (piece["SpecialToken"] as Json)["id"];
          const entry = typeof name === "string" ? table[name] : undefined;
          if (!isObj(entry) || !Array.isArray(entry["ids"])) {
            throw new ComponentError("invalid", `${what}: special token ${JSON.stringify(name)} missing from special_tokens`);
          }
          const ids = (entry["ids"] as unknown[]).map((x) => {
            if (typeof x !== "number" || !Number.isInteger(x) || x < 0) {
              throw new ComponentError("invalid", `${what}: bad id for ${JSON.stringify(name)}`);
            }
            return x;
          });
          (seenSeq ? res.suffix : res.prefix).push(...ids);
        } else {
          throw new ComponentError("invalid", `${what}: unknown template piece ${JSON.stringify(piece)}`);
        }
      }
      if (!seenSeq) throw new ComponentError("invalid", `${what}: the single template has no sequence`);
      return res;
    }
    case "BertProcessing":
    case "RobertaProcessing": {
      const pair = (k: string): number => {
        const v = cfg[k];
        if (!Array.isArray(v) || typeof v[1] !== "number") throw new ComponentError("invalid", `${what}.${k} must be [token, id]`);
        return v[1];
      };
      return { prefix: [pair("cls")], suffix: [pair("sep")] };
    }
    default:
      throw new ComponentError("unsupported", `post_processor type "${t}" is not supported`);
  }
}

