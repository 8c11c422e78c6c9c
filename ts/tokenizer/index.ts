/**
 * A tokenizer loaded from a Hugging Face `tokenizer.json`, reproducing the ids of the Rust `tokenizers`
 * crate for BPE models: byte-level BPE (GPT-2, Llama-3 style `Split` + `ByteLevel`) and
 * sentencepiece-style BPE with byte fallback (Llama-2 / TinyLlama), added/special tokens and
 * template post-processing.
 *
 * Pipeline of `encode`, as in `tokenizers`:
 *   1. split out added tokens whose `normalized` is false (raw text);
 *   2. normalize each remaining piece, then split out added tokens whose `normalized` is true;
 *   3. pre-tokenize each remaining piece into words;
 *   4. run BPE on each word (cached);
 *   5. wrap with the post-processor's special tokens when `addSpecialTokens` (default true).
 *
 * `truncation` and `padding` in the file are ignored: `encode` returns the whole text.
 */

import * as fs from "node:fs";
import { InvalidFileError, UnsupportedModelError } from "../errors";
import { AddedToken, AddedTokenMatcher, Segment } from "./addedTokens";
import { BpeConfigError, BpeModel } from "./bpe";
import { toByteLevel } from "./byteLevel";
import {
  buildDecoder,
  buildNormalizer,
  buildPostProcessor,
  buildPreTokenizer,
  ComponentError,
  Decoder,
  Normalizer,
  PostProcessor,
  PreTokenizerPlan,
} from "./components";

export type { AddedToken } from "./addedTokens";

/** Options of Tokenizer.encode. */
export interface EncodeOptions {
  /** Add the post-processor's special tokens (e.g. BOS). Default true, as in `tokenizers`. */
  addSpecialTokens?: boolean;
  /** Treat special-token text in the input as plain text instead of the special token. Default false. */
  encodeSpecialTokens?: boolean;
}

/** Options of Tokenizer.decode. */
export interface DecodeOptions {
  /** Leave out special tokens (added tokens marked `special`). Default false. */
  skipSpecialTokens?: boolean;
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const ALPHA = /^[A-Za-z]+$/;

/**
 * A Hugging Face tokenizer.json (BPE, WordPiece, Unigram; byte-level or SentencePiece-style) or a GGUF file's
 * tokenizer, encoding and decoding as the `tokenizers` library does. `Tokenizer.fromFile(path)` loads one.
 */
export class Tokenizer {
  /** Where the configuration came from (a path or a name given to `fromJSON`). */
  readonly source: string;
  /** Largest id + 1 over the model vocabulary and the added tokens (the embedding rows needed). */
  readonly vocabSize: number;
  /** All added tokens, special or not, in file order. */
  readonly addedTokens: readonly AddedToken[];
  /** The special added tokens. */
  readonly specialTokens: ReadonlyArray<{ id: number; content: string }>;
  /** Ids the post-processor puts before / after a sequence when `addSpecialTokens` is true. */
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];

  private readonly model: BpeModel;
  private readonly vocab: Map<string, number>;
  private readonly idToTok: string[];
  private readonly addedByContent: Map<string, AddedToken>;
  private readonly specialIds: Set<number>;
  private readonly normalizer: Normalizer | null;
  private readonly pre: PreTokenizerPlan;
  private readonly decoder: Decoder | null;
  private readonly post: PostProcessor | null;
  private readonly rawMatcher: AddedTokenMatcher | null;
  private readonly normMatcher: AddedTokenMatcher | null;
  private plainMatchers: [AddedTokenMatcher | null, AddedTokenMatcher | null] | null = null;

  private constructor(obj: unknown, source: string) {
    this.source = source;
    const bad = (detail: string): never => {
      throw new InvalidFileError(source, detail);
    };
    const unsupported = (detail: string): never => {
      throw new UnsupportedModelError(`${source}: ${detail}`);
    };
    const wrap = <T>(component: string, f: () => T): T => {
      try {
        return f();
      } catch (e) {
        if (e instanceof ComponentError) {
          if (e.kind === "unsupported") unsupported(`${component}: ${e.message}`);
          bad(`${component}: ${e.message}`);
        }
        throw e;
      }
    };

    if (!isObj(obj)) bad("tokenizer.json must be a JSON object");
    const root = obj as Json;
    const model = root["model"];
    if (!isObj(model)) bad('missing "model" object');
    const m = model as Json;
    const mtype = m["type"];
    if (mtype === undefined ? !("merges" in m) : mtype !== "BPE") {
      unsupported(`model type ${JSON.stringify(mtype ?? "(none)")} is not supported (only BPE)`);
    }

    // --- vocabulary
    const vocabObj = m["vocab"];
    if (!isObj(vocabObj)) bad('model.vocab must be an object {token: id}');
    const vocab = new Map<string, number>();
    const idToTok: string[] = [];
    let maxId = -1;
    for (const [tok, id] of Object.entries(vocabObj as Json)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) bad(`model.vocab[${JSON.stringify(tok)}] is not a non-negative integer`);
      const n = id as number;
      vocab.set(tok, n);
      idToTok[n] = tok;
      if (n > maxId) maxId = n;
    }

    // --- merges
    const mergesRaw = m["merges"] ?? [];
    if (!Array.isArray(mergesRaw)) bad("model.merges must be an array");
    const merges: Array<[string, string]> = (mergesRaw as unknown[]).map((x, i) => {
      if (typeof x === "string") {
        const parts = x.split(" ");
        if (parts.length !== 2) bad(`model.merges[${i}] ${JSON.stringify(x)} is not "left right"`);
        return [parts[0], parts[1]];
      }
      if (Array.isArray(x) && x.length === 2 && typeof x[0] === "string" && typeof x[1] === "string") return [x[0], x[1]];
      return bad(`model.merges[${i}] must be "left right" or [left, right]`);
    });

    const dropout = m["dropout"];
    if (dropout !== undefined && dropout !== null && dropout !== 0) {
      unsupported(`model BPE: dropout ${JSON.stringify(dropout)} is not supported (non-deterministic)`);
    }
    const optStr = (k: string): string | null => {
      const v = m[k];
      if (v === undefined || v === null) return null;
      if (typeof v !== "string") bad(`model.${k} must be a string or null`);
      return v as string;
    };
    const optBool = (k: string): boolean => {
      const v = m[k];
      if (v === undefined || v === null) return false;
      if (typeof v !== "boolean") bad(`model.${k} must be a boolean`);
      return v as boolean;
    };
    try {
      this.model = new BpeModel({
        vocab,
        merges,
        unkToken: optStr("unk_token"),
        continuingSubwordPrefix: optStr("continuing_subword_prefix"),
        endOfWordSuffix: optStr("end_of_word_suffix"),
        fuseUnk: optBool("fuse_unk"),
        byteFallback: optBool("byte_fallback"),
        ignoreMerges: optBool("ignore_merges"),
      });
    } catch (e) {
      if (e instanceof BpeConfigError) bad(`model BPE: ${e.message}`);
      throw e;
    }

    // --- added tokens
    const addedRaw = root["added_tokens"] ?? [];
    if (!Array.isArray(addedRaw)) bad("added_tokens must be an array");
    const added: AddedToken[] = (addedRaw as unknown[]).map((t, i) => {
      if (!isObj(t) || typeof t["content"] !== "string" || typeof t["id"] !== "number" || !Number.isInteger(t["id"]) || (t["id"] as number) < 0) {
        return bad(`added_tokens[${i}] must have a string "content" and an integer "id"`);
      }
      const special = t["special"] === true;
      return {
        id: t["id"] as number,
        content: t["content"] as string,
        singleWord: t["single_word"] === true,
        lstrip: t["lstrip"] === true,
        rstrip: t["rstrip"] === true,
        // AddedToken's default: normalized = !special
        normalized: typeof t["normalized"] === "boolean" ? (t["normalized"] as boolean) : !special,
        special,
      };
    });
    this.addedTokens = added;
    this.addedByContent = new Map(added.map((t) => [t.content, t]));
    for (const t of added) {
      if (t.id > maxId) maxId = t.id;
      idToTok[t.id] = t.content; // `tokenizers` looks ids up in the added vocabulary first
    }
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.specialTokens = added.filter((t) => t.special).map((t) => ({ id: t.id, content: t.content }));
    this.vocab = vocab;
    this.idToTok = idToTok;
    this.vocabSize = maxId + 1;

    // --- pipeline stages
    this.normalizer = wrap("normalizer", () => buildNormalizer(root["normalizer"]));
    this.pre = wrap("pre_tokenizer", () => buildPreTokenizer(root["pre_tokenizer"]));
    this.decoder = wrap("decoder", () => buildDecoder(root["decoder"]));
    this.post = wrap("post_processor", () => buildPostProcessor(root["post_processor"]));
    this.prefixIds = this.post ? this.post.prefix : [];
    this.suffixIds = this.post ? this.post.suffix : [];
    [this.rawMatcher, this.normMatcher] = this.buildMatchers(added);
  }

  private buildMatchers(tokens: AddedToken[]): [AddedTokenMatcher | null, AddedTokenMatcher | null] {
    const raw = tokens.filter((t) => !t.normalized);
    const norm = tokens.filter((t) => t.normalized);
    const normalize = this.normalizer;
    const rawM = raw.length ? new AddedTokenMatcher(raw) : null;
    const normM = norm.length ? new AddedTokenMatcher(norm, (t) => (normalize ? normalize(t.content) : t.content)) : null;
    return [rawM, normM];
  }

  /** Loads a `tokenizer.json` file. Throws InvalidFileError (unreadable/malformed) or UnsupportedModelError. */
  static fromFile(path: string): Tokenizer {
    let text: string;
    try {
      text = fs.readFileSync(path, "utf8");
    } catch (e) {
      throw new InvalidFileError(path, `cannot read: ${(e as Error).message}`, { cause: e });
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new InvalidFileError(path, `not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    return new Tokenizer(obj, path);
  }

  /** Builds from an already parsed `tokenizer.json` object; `sourceName` names it in errors. */
  static fromJSON(obj: unknown, sourceName = "<tokenizer.json>"): Tokenizer {
    return new Tokenizer(obj, sourceName);
  }

  /** Token ids of `text`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (opts.addSpecialTokens !== false) for (const id of this.prefixIds) ids.push(id);
    let rawM = this.rawMatcher;
    let normM = this.normMatcher;
    if (opts.encodeSpecialTokens) {
      if (!this.plainMatchers) this.plainMatchers = this.buildMatchers(this.addedTokens.filter((t) => !t.special));
      [rawM, normM] = this.plainMatchers;
    }
    const first: Segment[] = rawM ? rawM.split(text) : [{ text, id: -1, start: 0 }];
    for (const seg of first) {
      if (seg.id >= 0) {
        ids.push(seg.id);
        continue;
      }
      if (seg.text.length === 0) continue;
      const normalized = this.normalizer ? this.normalizer(seg.text) : seg.text;
      if (normM) {
        for (const s2 of normM.split(normalized)) {
          if (s2.id >= 0) ids.push(s2.id);
          else this.encodePiece(s2.text, seg.start === 0 && s2.start === 0, ids);
        }
      } else {
        this.encodePiece(normalized, seg.start === 0, ids);
      }
    }
    if (opts.addSpecialTokens !== false) for (const id of this.suffixIds) ids.push(id);
    return ids;
  }

  private encodePiece(piece: string, atStart: boolean, ids: number[]): void {
    if (piece.length === 0) return;
    const steps = this.pre.steps;
    const byteLevel = this.pre.finalByteLevel;
    if (steps.length === 0) {
      this.model.encodeWord(piece, byteLevel, ids);
      return;
    }
    let words = [piece];
    const ctx = { firstAtStart: atStart };
    for (const step of steps) words = step(words, ctx);
    for (let i = 0; i < words.length; i++) this.model.encodeWord(words[i], byteLevel, ids);
  }

  /**
   * The words the model would see for `text` (after added-token splitting, normalization and
   * pre-tokenization), in byte-level spelling when the pipeline is byte-level ("Ġhello"), like
   * `pre_tokenize_str` in `tokenizers`. Added tokens appear as their content.
   */
  preTokenize(text: string): string[] {
    const out: string[] = [];
    const first: Segment[] = this.rawMatcher ? this.rawMatcher.split(text) : [{ text, id: -1, start: 0 }];
    const words = (piece: string, atStart: boolean) => {
      if (piece.length === 0) return;
      let ws = [piece];
      const ctx = { firstAtStart: atStart };
      for (const step of this.pre.steps) ws = step(ws, ctx);
      for (const w of ws) if (w.length > 0) out.push(this.pre.finalByteLevel ? toByteLevel(w) : w);
    };
    for (const seg of first) {
      if (seg.id >= 0) {
        out.push(seg.text);
        continue;
      }
      if (seg.text.length === 0) continue;
      const normalized = this.normalizer ? this.normalizer(seg.text) : seg.text;
      if (this.normMatcher) {
        for (const s2 of this.normMatcher.split(normalized)) {
          if (s2.id >= 0) out.push(s2.text);
          else words(s2.text, seg.start === 0 && s2.start === 0);
        }
      } else words(normalized, seg.start === 0);
    }
    return out;
  }

  /** The token strings of `ids` (vocabulary spelling, e.g. "Ġthe" or "▁the"). */
  idsToTokens(ids: ArrayLike<number>): string[] {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = this.idToTok[ids[i]];
      if (t === undefined) throw new RangeError(`token id ${ids[i]} is not in the vocabulary of ${this.source}`);
      out.push(t);
    }
    return out;
  }

  /** Text of `ids`, through the file's decoder. Unknown ids throw RangeError. */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const list: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      if (opts.skipSpecialTokens && this.specialIds.has(ids[i])) continue;
      list.push(ids[i]);
    }
    return this.decodeTokens(this.idsToTokens(list), false);
  }

  private decodeTokens(tokens: string[], midSequence: boolean): string {
    if (!this.decoder) return tokens.join(" ");
    return this.decoder(tokens, { midSequence }).join("");
  }

  /**
   * Surface text of one token as it reads inside a sequence: the decoder without its start-of-text
   * stripping (so Llama's "▁the" gives " the", GPT-2's "Ġthe" gives " the"). A lone partial UTF-8
   * byte gives U+FFFD.
   */
  tokenText(id: number): string {
    return this.decodeTokens(this.idsToTokens([id]), true);
  }

  /** Id of a token string (added tokens first, then the model vocabulary), or undefined. */
  tokenToId(token: string): number | undefined {
    const a = this.addedByContent.get(token);
    if (a) return a.id;
    return this.vocab.get(token);
  }

  /** Token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.idToTok[id];
  }

  /** Whether `id` is a special added token. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Whether the token's surface text, less one leading space, is one or more ASCII letters (never for special tokens). */
  isAlphabetic(id: number): boolean {
    if (this.specialIds.has(id) || this.idToTok[id] === undefined) return false;
    let t = this.tokenText(id);
    if (t.startsWith(" ")) t = t.slice(1);
    return ALPHA.test(t);
  }

  /** Drops cached word tokenizations (memory). */
  clearCache(): void {
    this.model.clearCache();
  }
}

/** mask[id] = 1 when the token's decoded text, ignoring one leading space, is non-empty and only a-z/A-Z. */
export function alphabeticTokenMask(tok: Tokenizer): Uint8Array {
  const mask = new Uint8Array(tok.vocabSize);
  for (let id = 0; id < tok.vocabSize; id++) if (tok.isAlphabetic(id)) mask[id] = 1;
  return mask;
}

export { toByteLevel } from "./byteLevel";
export { trainByteLevelBPE, writeTokenizerJson } from "./train";
export type { TrainOptions, TokenizerJson } from "./train";
export { gpt2TokenizerJson, gpt2TokenizerJsonFromFiles } from "./gpt2Files";
export { tokenizerFromGGUF, tokenizerJsonFromGGUF, ggufTokenizerInfo, generateMerges, GGUF_PRE_SPLITS, GGUF_DEFAULT_PRE } from "./gguf";
export type { GGUFTokenizerInfo, GGUFMetadataValue } from "./gguf";
