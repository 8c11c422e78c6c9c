/**
 * A {@link Tokenizer} from the tokenizer metadata of a GGUF file (`tokenizer.ggml.*`), built the way
 * Hugging Face transformers builds one for `AutoTokenizer.from_pretrained(dir, gguf_file=...)`
 * (transformers 5.x, `integrations/gguf/gguf_tokenizer_mapping.py`), so the ids are the same as its:
 *
 * - `tokenizer.ggml.model` picks the builder:
 *   - "gpt2": byte-level BPE as `GPT2Tokenizer` (tokens not written in the byte alphabet are respelled
 *     from their UTF-8 bytes; ByteLevel pre-tokenizer with the GPT-2 regex, ByteLevel decoder);
 *   - "llama": sentencepiece-style BPE as `LlamaTokenizer` (byte fallback, Metaspace with
 *     prepend_scheme "first" and no split, no normalizer); for architecture "phi3" the "▁" prefix comes
 *     from a normalizer instead; for "gemma"/"gemma2"/"gemma3" as `GemmaTokenizer`;
 *   - "gemma4": sentencepiece-style BPE as `GemmaTokenizer`, never adding BOS.
 *   Without `tokenizer.ggml.merges`, the merges are derived from the vocabulary and
 *   `tokenizer.ggml.scores` as transformers' `generate_merges` does (Gemma: ordered by position).
 * - `tokenizer.ggml.pre` naming a regex transformers knows (Llama-3, Qwen2, GPT-4o, Tekken, ...) replaces
 *   the pre-tokenizer by Split(regex) + ByteLevel; any other value keeps the builder's own. transformers
 *   accepts any value there; we accept only those it maps, plus the ones whose llama.cpp split is GPT-2's
 *   or that transformers is known to treat with the builder's default (see {@link GGUF_DEFAULT_PRE}),
 *   and refuse the rest rather than silently split text differently from the model's own tokenizer.
 * - token types: 3 (control) become special added tokens (byte-level: only those spelled in the byte
 *   alphabet), 4 (user-defined) non-special added tokens, both matched in the raw text.
 * - The builder's class registers its default named tokens (GPT-2: "<|endoftext|>"; Llama: "<unk>",
 *   "<s>", "</s>"; Gemma: "<bos>", "<eos>", "<unk>", "<pad>", "<mask>") as special added tokens, and
 *   then the file's bos/eos/unknown/padding tokens are; a name missing from the vocabulary gets a new
 *   id past it, exactly as `tokenizers`' AddedVocabulary assigns them.
 * - BOS/EOS are added per `tokenizer.ggml.add_bos_token` / `add_eos_token` (default: true / false for
 *   "llama", false / false otherwise).
 *
 * Not used, as by transformers: `tokenizer.ggml.add_space_prefix`, `tokenizer.ggml.precompiled_charsmap`.
 * Unigram ("t5") vocabularies are not supported (the tokenizer implements BPE only).
 */

import { InvalidFileError, UnsupportedModelError } from "../errors";
import { GGUFMetadata, GGUFMetadataValue } from "../gguf";
import { BYTE_TO_CHAR } from "./byteLevel";
import { Tokenizer } from "./index";

export type { GGUFMetadataValue } from "../gguf";

export interface GGUFTokenizerInfo {
  /** `tokenizer.ggml.model` ("gpt2", "llama", ...). */
  model: string;
  /** `tokenizer.ggml.pre`, or null. */
  pre: string | null;
  /** Token ids as the file names them (`tokenizer.ggml.*_token_id`). */
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  /** Whether encode() adds BOS / EOS by default (as transformers decides from the file). */
  addBos: boolean;
  addEos: boolean;
  /** `tokenizer.chat_template`, or null. */
  chatTemplate: string | null;
}

const K = {
  arch: "general.architecture",
  model: "tokenizer.ggml.model",
  pre: "tokenizer.ggml.pre",
  tokens: "tokenizer.ggml.tokens",
  scores: "tokenizer.ggml.scores",
  types: "tokenizer.ggml.token_type",
  merges: "tokenizer.ggml.merges",
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  pad: "tokenizer.ggml.padding_token_id",
  addBos: "tokenizer.ggml.add_bos_token",
  addEos: "tokenizer.ggml.add_eos_token",
  chatTemplate: "tokenizer.chat_template",
} as const;

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const TEKKEN_SPLIT =
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" +
  "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" +
  "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT4O_SPLIT =
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
  "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
  "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** `tokenizer.ggml.pre` values for which transformers replaces the pre-tokenizer by Split(regex) + ByteLevel. */
export const GGUF_PRE_SPLITS: ReadonlyMap<string, string> = new Map([
  ...["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"].map(
    (k) => [k, LLAMA3_SPLIT] as [string, string],
  ),
  ["tekken", TEKKEN_SPLIT],
  ...["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"].map((k) => [k, QWEN2_SPLIT] as [string, string]),
  ["qwen35", QWEN35_SPLIT],
  ...["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"].map((k) => [k, GPT4O_SPLIT] as [string, string]),
]);

/**
 * `tokenizer.ggml.pre` values accepted with the builder's own pre-tokenizer (GPT-2's regex for "gpt2"
 * vocabularies): "default", the values llama.cpp itself splits with GPT-2's regex, and "smollm" (llama.cpp
 * also splits digits one by one there; transformers does not, and we follow transformers).
 */
export const GGUF_DEFAULT_PRE: ReadonlySet<string> = new Set([
  "default",
  "gpt-2",
  "phi-2",
  "roberta-bpe",
  "jina-es",
  "jina-de",
  "jina-v1-en",
  "jina-v2-es",
  "jina-v2-de",
  "gigachat",
  "smollm",
]);

type Json = Record<string, unknown>;

/** Where the "llama" (sentencepiece) model type gets another builder, by architecture. */
const SPM_BY_ARCH: Record<string, "gemma" | "phi3"> = { gemma: "gemma", gemma2: "gemma", gemma3: "gemma", phi3: "phi3" };

type Builder = "byte-level" | "llama" | "phi3" | "gemma" | "gemma4";

function builderFor(model: string, arch: string): Builder {
  if (model === "llama" && Object.prototype.hasOwnProperty.call(SPM_BY_ARCH, arch)) return SPM_BY_ARCH[arch];
  switch (model) {
    case "gpt2":
      return "byte-level";
    case "llama":
      return "llama";
    case "gemma4":
      return "gemma4";
    case "t5":
      throw new UnsupportedModelError(`GGUF tokenizer model "t5" (Unigram) is not supported (only BPE: "gpt2", "llama", "gemma4")`);
    default:
      throw new UnsupportedModelError(`GGUF tokenizer model ${JSON.stringify(model)} is not supported (supported: "gpt2", "llama", "gemma4")`);
  }
}

interface Read {
  md: GGUFMetadata;
  source: string;
  model: string;
  pre: string | null;
  tokens: string[] | null;
}

/** An optional token id: a non-negative integer (number, or bigint), below the token count when known. */
function optId(r: Read, key: string): number | undefined {
  const v = r.md.map.get(key);
  if (v === undefined) return undefined;
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
    throw new InvalidFileError(r.source, `metadata '${key}' must be a non-negative integer (got ${describeValue(v)})`);
  }
  if (r.tokens && n >= r.tokens.length) {
    throw new InvalidFileError(r.source, `metadata '${key}' is ${n}, past the ${r.tokens.length} tokens of '${K.tokens}'`);
  }
  return n;
}

function describeValue(v: GGUFMetadataValue): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v);
  return `${typeof v} ${String(v)}`;
}

function readCommon(meta: ReadonlyMap<string, GGUFMetadataValue>, source: string, needTokens: boolean): Read {
  const md = new GGUFMetadata(source, meta);
  const model = md.string(K.model);
  const pre = md.string(K.pre, null);
  const tokens = needTokens || md.has(K.tokens) ? md.stringArray(K.tokens) : null;
  return { md, source, model, pre, tokens };
}

function checkPre(pre: string | null): void {
  if (pre !== null && !GGUF_PRE_SPLITS.has(pre) && !GGUF_DEFAULT_PRE.has(pre)) {
    throw new UnsupportedModelError(
      `GGUF pre-tokenizer ${JSON.stringify(pre)} (tokenizer.ggml.pre) is not supported; known: ${[...GGUF_DEFAULT_PRE, ...GGUF_PRE_SPLITS.keys()].join(", ")}`,
    );
  }
}

function flags(r: Read): { addBos: boolean; addEos: boolean } {
  let addBos = r.md.bool(K.addBos, r.model === "llama");
  const addEos = r.md.bool(K.addEos, false);
  if (r.model === "gemma4") addBos = false; // transformers: the chat template writes <bos> itself
  return { addBos, addEos };
}

/** What the GGUF says about its tokenizer besides the vocabulary: model, pre-tokenizer, special ids, flags, chat template. */
export function ggufTokenizerInfo(meta: ReadonlyMap<string, GGUFMetadataValue>, source: string): GGUFTokenizerInfo {
  const r = readCommon(meta, source, false);
  const { addBos, addEos } = flags(r);
  const info: GGUFTokenizerInfo = {
    model: r.model,
    pre: r.pre,
    addBos: false,
    addEos: false,
    chatTemplate: r.md.string(K.chatTemplate, null),
  };
  const bos = optId(r, K.bos);
  const eos = optId(r, K.eos);
  const unk = optId(r, K.unk);
  const pad = optId(r, K.pad);
  if (bos !== undefined) info.bosId = bos;
  if (eos !== undefined) info.eosId = eos;
  if (unk !== undefined) info.unkId = unk;
  if (pad !== undefined) info.padId = pad;
  // transformers drops add_bos/add_eos when the file names no such token
  info.addBos = addBos && bos !== undefined;
  info.addEos = addEos && eos !== undefined;
  return info;
}

/** Only characters Python's str.isspace() accepts (so `not t.strip()`). */
const PY_BLANK = /^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/u;

/** Code points of `s` (Python's len / slicing unit). */
function cpLen(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff || i + 1 >= s.length) n++;
    else {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
      n++;
    }
  }
  return n;
}

/**
 * transformers' `generate_merges(vocab, vocab_scores)`: every split of a token into two vocabulary tokens,
 * the splits of one token ordered by (left id, right id), all of them ordered by (score, left length, right
 * length) descending; stable sorts throughout, lengths in code points.
 */
export function generateMerges(vocab: ReadonlyMap<string, number>, vocabScores: ReadonlyMap<string, number>): Array<[string, string]> {
  const all: Array<{ l: string; r: string; score: number; ll: number; lr: number }> = [];
  for (const [merge, score] of vocabScores) {
    const cps = Array.from(merge);
    if (cps.length < 2) continue;
    const local: Array<{ l: string; r: string; score: number; ll: number; lr: number; il: number; ir: number }> = [];
    let l = "";
    for (let i = 1; i < cps.length; i++) {
      l += cps[i - 1];
      const r = merge.slice(l.length);
      const il = vocab.get(l);
      if (il === undefined) continue;
      const ir = vocab.get(r);
      if (ir === undefined) continue;
      local.push({ l, r, score, ll: i, lr: cps.length - i, il, ir });
    }
    if (local.length > 1) local.sort((a, b) => a.il - b.il || a.ir - b.ir);
    for (const m of local) all.push(m);
  }
  all.sort((a, b) => cmpDesc(a.score, b.score) || b.ll - a.ll || b.lr - a.lr);
  return all.map((m) => [m.l, m.r]);
}

/** Descending order of Python floats (NaN compares as neither smaller nor larger, like Python's sort keys). */
function cmpDesc(a: number, b: number): number {
  return a > b ? -1 : a < b ? 1 : 0;
}

interface Added {
  id: number;
  content: string;
  special: boolean;
}

/**
 * `tokenizers`' AddedVocabulary, enough to replay what transformers adds: a token already there with the same
 * flags is skipped, one with the same text is updated in place, otherwise it takes its vocabulary id or a new
 * one past the vocabulary.
 */
class AddedVocab {
  readonly byContent = new Map<string, Added>();
  readonly byId = new Map<number, Added>();
  private maxId = -1;
  constructor(private readonly vocab: ReadonlyMap<string, number>) {}

  add(content: string, special: boolean): void {
    if (content.length === 0) return;
    const cur = this.byContent.get(content);
    if (cur && cur.special === special) return;
    let id: number;
    if (cur) id = cur.id;
    else {
      const vid = this.vocab.get(content);
      if (vid !== undefined) id = vid;
      else {
        const size = this.vocab.size;
        id = this.maxId < 0 ? size : this.maxId >= size || size === 0 ? this.maxId + 1 : size;
      }
    }
    const tok: Added = { id, content, special };
    this.byContent.set(content, tok);
    this.byId.set(id, tok);
    if (id > this.maxId) this.maxId = id;
  }

  has(content: string): boolean {
    return this.byContent.has(content);
  }

  idOf(content: string): number | undefined {
    return this.byContent.get(content)?.id ?? this.vocab.get(content);
  }
}

function templateToken(source: string, what: string, tok: string): string {
  // transformers writes the template as "BOS:0 $A:0 EOS:0" and `tokenizers` splits it on spaces and colons
  if (tok.length === 0 || tok.includes(" ") || tok.includes(":") || tok.startsWith("$")) {
    throw new InvalidFileError(source, `the ${what} token ${JSON.stringify(tok)} cannot be put in a post-processor template (transformers fails on it too)`);
  }
  return tok;
}

/** The tokenizer.json object transformers builds from this GGUF's tokenizer metadata. */
export function tokenizerJsonFromGGUF(meta: ReadonlyMap<string, GGUFMetadataValue>, source: string): Record<string, unknown> {
  const r = readCommon(meta, source, true);
  const md = r.md;
  const arch = md.string(K.arch);
  const builder = builderFor(r.model, arch);
  checkPre(r.pre);
  const tokens = r.tokens!;
  if (tokens.length === 0) throw new InvalidFileError(source, `metadata '${K.tokens}' is empty`);
  const types = md.numberArray(K.types);
  if (types && types.some((t) => !Number.isInteger(t))) {
    throw new InvalidFileError(source, `metadata '${K.types}' must be an array of integers`);
  }
  const scoresRaw = md.numberArray(K.scores);
  const mergesRaw = md.has(K.merges) ? md.stringArray(K.merges) : null;

  // --- vocabulary (a later duplicate wins the id, as in a Python dict)
  const vocab = new Map<string, number>();
  let spelled: string[] = tokens;
  if (builder === "byte-level") {
    const alphabet = new Set(BYTE_TO_CHAR);
    const enc = new TextEncoder();
    spelled = tokens.map((t) => {
      for (const ch of t) if (!alphabet.has(ch)) return Array.from(enc.encode(t), (b) => BYTE_TO_CHAR[b]).join("");
      return t;
    });
  } else if (builder === "gemma") {
    // runs of whitespace holding a space are stored as real spaces but looked up as "▁"s
    spelled = tokens.map((t) => (t.includes(" ") && PY_BLANK.test(t) ? "\u2581".repeat(cpLen(t)) : t));
  }
  spelled.forEach((t, i) => vocab.set(t, i));

  // --- merges: the file's, or derived from the vocabulary as transformers' get_merges
  let merges: Array<[string, string]>;
  if (mergesRaw) {
    merges = mergesRaw.map((m, i) => {
      const parts = m.split(" ");
      if (parts.length !== 2) throw new InvalidFileError(source, `metadata '${K.merges}'[${i}] ${JSON.stringify(m)} is not "left right"`);
      return [parts[0], parts[1]] as [string, string];
    });
  } else {
    const raw = builder === "gemma" ? spelled : tokens;
    const idx = new Map<string, number>();
    raw.forEach((t, i) => idx.set(t, i));
    const scores = new Map<string, number>();
    if (builder === "gemma") raw.forEach((t, i) => scores.set(t, -i));
    else {
      if (!scoresRaw) throw new InvalidFileError(source, `metadata '${K.scores}' is missing (needed to derive the merges: there is no '${K.merges}')`);
      const n = Math.min(raw.length, scoresRaw.length);
      for (let i = 0; i < n; i++) scores.set(raw[i], scoresRaw[i]);
    }
    merges = generateMerges(idx, scores);
  }

  // --- the builder's model, pipeline and default named tokens
  const spm = builder !== "byte-level";
  const gemmaLike = builder === "gemma" || builder === "gemma4";
  const model: Json = {
    type: "BPE",
    dropout: null,
    unk_token: gemmaLike ? "<unk>" : null,
    continuing_subword_prefix: spm ? null : "",
    end_of_word_suffix: spm ? null : "",
    fuse_unk: spm,
    byte_fallback: spm,
    ignore_merges: false,
    vocab: Object.fromEntries(vocab),
    merges: merges.map(([a, b]) => [a, b]),
  };
  let normalizer: unknown = null;
  let preTokenizer: unknown;
  let decoder: unknown;
  let classNamed: string[];
  const metaspaceDecoder = [
    { type: "Replace", pattern: { String: "\u2581" }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
  ];
  switch (builder) {
    case "byte-level":
      preTokenizer = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
      decoder = { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true };
      classNamed = ["<|endoftext|>"]; // bos, eos, unk of GPT2Tokenizer
      break;
    case "llama":
    case "phi3":
      if (builder === "phi3") {
        normalizer = {
          type: "Sequence",
          normalizers: [
            { type: "Prepend", prepend: "\u2581" },
            { type: "Replace", pattern: { String: " " }, content: "\u2581" },
          ],
        };
        preTokenizer = null;
      } else {
        preTokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
      }
      decoder = { type: "Sequence", decoders: [...metaspaceDecoder, { type: "Strip", content: " ", start: 1, stop: 0 }] };
      classNamed = ["<s>", "</s>", "<unk>"]; // bos, eos, unk of LlamaTokenizer
      break;
    case "gemma":
    case "gemma4":
      normalizer = { type: "Replace", pattern: { String: " " }, content: "\u2581" };
      preTokenizer = { type: "Split", pattern: { String: " " }, behavior: "MergedWithPrevious", invert: false };
      decoder = { type: "Sequence", decoders: metaspaceDecoder };
      classNamed = ["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"]; // bos, eos, unk, pad, mask of GemmaTokenizer
      break;
  }

  // --- added tokens, in the order transformers adds them
  const added = new AddedVocab(vocab);
  for (const t of classNamed) added.add(t, true);
  if (types) {
    const alphabet = builder === "byte-level" ? new Set(BYTE_TO_CHAR) : null;
    const n = Math.min(tokens.length, types.length);
    for (let i = 0; i < n; i++) {
      if (types[i] !== 3) continue;
      if (alphabet && [...tokens[i]].some((c) => !alphabet.has(c))) continue; // a llama.cpp mislabel; transformers skips it
      added.add(tokens[i], true);
    }
    for (let i = 0; i < n; i++) {
      if (types[i] === 4 && (vocab.has(tokens[i]) || added.has(tokens[i]))) added.add(tokens[i], false);
    }
  }
  if (r.pre !== null && GGUF_PRE_SPLITS.has(r.pre)) {
    preTokenizer = {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: GGUF_PRE_SPLITS.get(r.pre)! }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    };
  }
  // the file's named tokens (bos, eos, unk, pad), as special tokens unless already added
  const named = (key: string): string | null => {
    const id = optId(r, key);
    return id === undefined ? null : tokens[id];
  };
  const bos = named(K.bos);
  const eos = named(K.eos);
  const unk = named(K.unk);
  const pad = named(K.pad);
  for (const t of [bos, eos, unk, pad]) if (t !== null && !added.has(t)) added.add(t, true);

  // --- post-processor: BOS/EOS as the file asks
  const f = flags(r);
  const addBos = f.addBos && bos !== null;
  const addEos = f.addEos && eos !== null;
  const piece = (tok: string, typeId: number) => ({ SpecialToken: { id: tok, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const single: unknown[] = [];
  const pair: unknown[] = [];
  const specialTokens: Json = {};
  const addSpecial = (what: string, tok: string) => {
    templateToken(source, what, tok);
    const id = added.idOf(tok);
    if (id === undefined) throw new InvalidFileError(source, `the ${what} token ${JSON.stringify(tok)} has no id`);
    specialTokens[tok] = { id: tok, ids: [id], tokens: [tok] };
  };
  if (addBos) addSpecial("BOS", bos!);
  if (addEos) addSpecial("EOS", eos!);
  for (const typeId of [0, 1]) {
    const out = typeId === 0 ? single : pair;
    if (addBos) out.push(piece(bos!, typeId));
    out.push(seq(typeId === 0 ? "A" : "B", typeId));
    if (addEos) out.push(piece(eos!, typeId));
  }
  const postProcessor = { type: "TemplateProcessing", single, pair: [...single, ...pair], special_tokens: specialTokens };

  const addedTokens = [...added.byId.values()]
    .sort((a, b) => a.id - b.id)
    .map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.special }));

  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor,
    decoder,
    model,
  };
}

/** A Tokenizer equivalent to the one transformers builds from this GGUF's metadata (see the module comment). */
export function tokenizerFromGGUF(meta: ReadonlyMap<string, GGUFMetadataValue>, source: string): Tokenizer {
  return Tokenizer.fromJSON(tokenizerJsonFromGGUF(meta, source), source);
}
