import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tokenizer, trainByteLevelBPE, writeTokenizerJson } from "../ts/tokenizer";
import type { TokenizerJson } from "../ts/tokenizer";
import { generateSentences } from "./fixtures/tokenizers/sentences";

const corpus = [
  ...generateSentences(3000, 123),
  "The theory of the thing is that the other thing is there.",
  "<|endoftext|>The end.<|endoftext|>",
];
let tmp: string;
let json: TokenizerJson;
let tok: Tokenizer;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-train-"));
  json = trainByteLevelBPE(corpus, { vocabSize: 600, minFrequency: 2, specialTokens: ["<|endoftext|>", "<|pad|>"] });
  tok = Tokenizer.fromJSON(json, "trained");
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("trainByteLevelBPE", () => {
  it("has the special tokens first, then all 256 bytes, then merges up to vocabSize", () => {
    expect(json.model.vocab["<|endoftext|>"]).toBe(0);
    expect(json.model.vocab["<|pad|>"]).toBe(1);
    expect(Object.keys(json.model.vocab).length).toBe(600);
    expect(json.model.merges.length).toBeGreaterThanOrEqual(600 - 258);
    expect(tok.vocabSize).toBe(600);
    expect(tok.specialTokens.map((t) => t.content)).toEqual(["<|endoftext|>", "<|pad|>"]);
    // the most frequent pairs were merged: common words are single tokens
    expect(tok.encode(" the")).toHaveLength(1);
    expect(tok.encode(" The")).toHaveLength(1);
  });

  it("round-trips arbitrary unicode with no unknown tokens", () => {
    const inputs = [
      ...generateSentences(300, 77),
      "😀👨‍👩‍👧 never seen: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u0085\ufeff\u0000\u00ff\uffff",
      "日本語のテキスト、中文、한국어",
      "\t\t\n\r\n   ",
      "<|endoftext|> <|pad|>",
    ];
    for (const s of inputs) {
      const ids = tok.encode(s);
      for (const id of ids) {
        expect(id).toBeGreaterThanOrEqual(0);
        expect(id).toBeLessThan(600);
      }
      expect(tok.decode(ids)).toBe(s);
    }
    expect(tok.encode("x<|endoftext|>y")).toEqual([tok.tokenToId("x"), 0, tok.tokenToId("y")]);
  });

  it("compresses the training text", () => {
    const text = corpus.slice(0, 200).join("\n");
    expect(tok.encode(text).length).toBeLessThan(Buffer.byteLength(text) * 0.6);
  });

  it("is deterministic: the same input twice gives identical JSON", () => {
    const again = trainByteLevelBPE(corpus, { vocabSize: 600, minFrequency: 2, specialTokens: ["<|endoftext|>", "<|pad|>"] });
    expect(JSON.stringify(again)).toBe(JSON.stringify(json));
    // an iterator (not an array) works the same
    function* gen() {
      yield* corpus;
    }
    const fromGen = trainByteLevelBPE(gen(), { vocabSize: 600, minFrequency: 2, specialTokens: ["<|endoftext|>", "<|pad|>"] });
    expect(JSON.stringify(fromGen)).toBe(JSON.stringify(json));
  });

  it("stops early when no pair reaches minFrequency", () => {
    const small = trainByteLevelBPE(["abc abd"], { vocabSize: 1000, minFrequency: 2 });
    // only "a b" occurs twice... then "ab" with c/d once each, and " " once
    expect(small.model.merges).toEqual([["a", "b"]]);
    expect(Object.keys(small.model.vocab).length).toBe(257);
    const none = trainByteLevelBPE(["abc abd"], { vocabSize: 1000, minFrequency: 3 });
    expect(none.model.merges).toEqual([]);
  });

  it("breaks count ties by the smaller (left id, right id)", () => {
    // "ab" and "cd" both occur twice; a < c
    const j = trainByteLevelBPE(["ab cd ab cd"], { vocabSize: 257, minFrequency: 1 });
    expect(j.model.merges[0]).toEqual(["a", "b"]);
  });

  it("rejects bad options", () => {
    expect(() => trainByteLevelBPE(["x"], { vocabSize: 100 })).toThrow(RangeError);
    expect(() => trainByteLevelBPE(["x"], { vocabSize: 300, specialTokens: ["a", "a"] })).toThrow(RangeError);
  });
});

describe("writeTokenizerJson", () => {
  it("writes atomically and the file loads with Tokenizer.fromFile", () => {
    const file = path.join(tmp, "tokenizer.json");
    writeTokenizerJson(file, json);
    expect(fs.readdirSync(tmp)).toEqual(["tokenizer.json"]); // no temp file left behind
    const loaded = Tokenizer.fromFile(file);
    for (const s of corpus.slice(0, 100)) expect(loaded.encode(s)).toEqual(tok.encode(s));
    // overwriting replaces the file in one step
    writeTokenizerJson(file, { ...json, version: "1.0" });
    expect(fs.readdirSync(tmp)).toEqual(["tokenizer.json"]);
  });

  it("leaves nothing behind when the directory does not exist", () => {
    expect(() => writeTokenizerJson(path.join(tmp, "missing", "t.json"), json)).toThrow();
  });
});
