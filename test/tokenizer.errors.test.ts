import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { Tokenizer } from "../ts/tokenizer";
import { BYTE_TO_CHAR } from "../ts/tokenizer/byteLevel";
import { FIXTURES } from "./fixtures/tokenizers/helpers";

const fixture = (name: string) => path.join(FIXTURES, name);

/** A valid byte-level BPE tokenizer.json (all 256 bytes, one merge) to break piece by piece. */
function base(): Record<string, any> {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[BYTE_TO_CHAR[b]] = b;
  vocab["ab"] = 256;
  return {
    version: "1.0",
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel" },
    model: { type: "BPE", vocab, merges: ["a b"] },
  };
}

function expectError(obj: unknown, cls: typeof InvalidFileError | typeof UnsupportedModelError, ...words: string[]) {
  let err: unknown;
  try {
    Tokenizer.fromJSON(obj, "my/tokenizer.json");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  const msg = (err as Error).message;
  expect(msg).toContain("my/tokenizer.json");
  for (const w of words) expect(msg).toContain(w);
}

describe("malformed tokenizer.json -> InvalidFileError", () => {
  it("truncated JSON file", () => {
    const file = fixture("truncated.json");
    expect(() => Tokenizer.fromFile(file)).toThrow(InvalidFileError);
    try {
      Tokenizer.fromFile(file);
    } catch (e) {
      expect((e as InvalidFileError).file).toBe(file);
      expect((e as InvalidFileError).code).toBe("INVALID_FILE");
      expect((e as Error).message).toContain("not valid JSON");
    }
  });

  it("missing file", () => {
    const file = path.join(os.tmpdir(), "gradmm-no-such-dir", "tokenizer.json");
    expect(() => Tokenizer.fromFile(file)).toThrow(InvalidFileError);
  });

  it("structural problems name what is wrong", () => {
    expectError(42, InvalidFileError, "JSON object");
    expectError({}, InvalidFileError, "model");
    expectError({ model: { type: "BPE", vocab: [1, 2], merges: [] } }, InvalidFileError, "vocab");
    expectError({ ...base(), model: { ...base().model, vocab: { a: -1 } } }, InvalidFileError, "vocab");
    expectError({ ...base(), model: { ...base().model, merges: ["a b c"] } }, InvalidFileError, "merges[0]");
    expectError({ ...base(), model: { ...base().model, merges: [["a"]] } }, InvalidFileError, "merges[0]");
    expectError({ ...base(), model: { ...base().model, merges: ["a zz"] } }, InvalidFileError, "zz", "not in the vocabulary");
    expectError({ ...base(), model: { ...base().model, merges: ["b a"] } }, InvalidFileError, '"ba"');
    expectError({ ...base(), added_tokens: [{ content: "x" }] }, InvalidFileError, "added_tokens[0]");
    expectError({ ...base(), normalizer: { type: "Replace", pattern: { Oops: 1 }, content: "" } }, InvalidFileError, "normalizer");
    expectError({ ...base(), post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>" } }, { Sequence: { id: "A" } }], special_tokens: {} } }, InvalidFileError, "post_processor", "<s>");
  });
});

describe("unsupported tokenizer.json -> UnsupportedModelError naming the component and the file", () => {
  it("a WordPiece (BERT) file", () => {
    const file = fixture("wordpiece.json");
    let err: unknown;
    try {
      Tokenizer.fromFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect((err as UnsupportedModelError).code).toBe("UNSUPPORTED_MODEL");
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain("WordPiece");
  });

  it("each pipeline stage", () => {
    expectError({ ...base(), model: { ...base().model, type: "Unigram" } }, UnsupportedModelError, "model", "Unigram");
    expectError({ ...base(), normalizer: { type: "BertNormalizer" } }, UnsupportedModelError, "normalizer", "BertNormalizer");
    expectError({ ...base(), pre_tokenizer: { type: "Whitespace" } }, UnsupportedModelError, "pre_tokenizer", "Whitespace");
    expectError(
      { ...base(), pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "ByteLevel" }, { type: "UnicodeScripts" }] } },
      UnsupportedModelError,
      "pre_tokenizer",
      "UnicodeScripts",
    );
    expectError({ ...base(), decoder: { type: "CTC" } }, UnsupportedModelError, "decoder", "CTC");
    expectError({ ...base(), post_processor: { type: "Mystery" } }, UnsupportedModelError, "post_processor", "Mystery");
    expectError({ ...base(), model: { ...base().model, dropout: 0.1 } }, UnsupportedModelError, "dropout");
  });

  it("a split regex JavaScript cannot express", () => {
    const pre = { type: "Split", pattern: { Regex: "(?>a|ab)c" }, behavior: "Isolated", invert: false };
    expectError({ ...base(), pre_tokenizer: pre }, UnsupportedModelError, "pre_tokenizer", "(?>");
    expectError({ ...base(), pre_tokenizer: { ...pre, pattern: { Regex: "a" }, behavior: "Sideways" } }, UnsupportedModelError, "behavior");
  });
});

describe("unknown characters without byte fallback", () => {
  it("map to the (fused) unk token", () => {
    const tok = Tokenizer.fromFile(fixture("tiny-bpe.json"));
    expect(tok.encode("ab")).toEqual([3]);
    expect(tok.encode("xyz")).toEqual([0]); // fused
    expect(tok.encode("ab c")).toEqual([3, 4, 0]);
    expect(tok.encode("ab<eos>")).toEqual([3, 5]);
    expect(tok.decode([3, 4, 1])).toBe("ab a");
  });

  it("ids outside the vocabulary throw RangeError on decode", () => {
    const tok = Tokenizer.fromFile(fixture("tiny-bpe.json"));
    expect(() => tok.decode([99])).toThrow(RangeError);
  });

  it("a file written to disk loads the same as the object", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-tokerr-"));
    try {
      const file = path.join(dir, "t.json");
      fs.writeFileSync(file, JSON.stringify(base()));
      expect(Tokenizer.fromFile(file).encode("abab")).toEqual(Tokenizer.fromJSON(base()).encode("abab"));
      expect(Tokenizer.fromFile(file).encode("abab")).toEqual([256, 256]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
