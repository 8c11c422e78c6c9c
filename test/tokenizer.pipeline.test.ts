import { describe, expect, it } from "vitest";
import { Tokenizer } from "../ts/tokenizer";
import { BYTE_TO_CHAR } from "../ts/tokenizer/byteLevel";

const bytes = (s: string) => [...Buffer.from(s, "utf8")];

/** Byte-level BPE with byte b at id b and no merges, plus the given added tokens. */
function byteTokenizer(added: object[], extra: Record<string, unknown> = {}): Tokenizer {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[BYTE_TO_CHAR[b]] = b;
  return Tokenizer.fromJSON(
    {
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, use_regex: true },
      post_processor: null,
      decoder: { type: "ByteLevel" },
      model: { type: "BPE", vocab, merges: [] },
      ...extra,
    },
    "byte-tokenizer",
  );
}

const added = (id: number, content: string, o: Partial<Record<"lstrip" | "rstrip" | "single_word" | "special" | "normalized", boolean>>) => ({
  id,
  content,
  lstrip: false,
  rstrip: false,
  single_word: false,
  special: true,
  normalized: false,
  ...o,
});

describe("added tokens: lstrip / rstrip / single_word / longest match", () => {
  const tok = byteTokenizer([
    added(300, "<mask>", { lstrip: true }),
    added(301, "[X]", { rstrip: true }),
    added(302, "ony", { single_word: true, special: false, normalized: true }),
    added(303, "<m", {}),
  ]);

  it("lstrip absorbs the whitespace before the token", () => {
    expect(tok.encode("hello  <mask>!")).toEqual([...bytes("hello"), 300, ...bytes("!")]);
  });

  it("rstrip absorbs the whitespace after it", () => {
    expect(tok.encode("a[X] \t b")).toEqual([...bytes("a"), 301, ...bytes("b")]);
  });

  it("single_word only matches between non-word characters", () => {
    expect(tok.encode("Anthony ony tony")).toEqual([...bytes("Anthony "), 302, ...bytes(" tony")]);
    expect(tok.encode("ony,")).toEqual([302, ...bytes(",")]);
  });

  it("the longest token wins at the leftmost position", () => {
    expect(tok.encode("<mask><m")).toEqual([300, 303]);
  });

  it("special tokens are skipped on request, other added tokens are not", () => {
    const ids = tok.encode("x <mask> ony");
    expect(tok.decode(ids)).toBe("x<mask> ony");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("x ony");
    expect(tok.isSpecial(300)).toBe(true);
    expect(tok.isSpecial(302)).toBe(false);
  });
});

describe("normalizers", () => {
  it("NFKC + Lowercase + Replace(regex)", () => {
    const tok = byteTokenizer([], {
      normalizer: {
        type: "Sequence",
        normalizers: [{ type: "NFKC" }, { type: "Lowercase" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }],
      },
      pre_tokenizer: null,
    });
    expect(tok.preTokenize("ﬁne \t\n Ｆｕｌｌ")).toEqual(["fine full"]);
  });

  it("normalized added tokens match the normalized text", () => {
    const tok = byteTokenizer([added(300, "HELLO", { normalized: true, special: false })], { normalizer: { type: "Lowercase" } });
    expect(tok.encode("say Hello")).toEqual([...bytes("say "), 300]);
  });
});

describe("Metaspace pre-tokenizer and decoder (sentencepiece files with a pre_tokenizer)", () => {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "▁": 2, H: 3, e: 4, y: 5, f: 6, r: 7, i: 8, n: 9, d: 10, "!": 11, "▁Hey": 12, "▁friend": 13 };
  const make = (pre: object, dec: object = { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true }) =>
    Tokenizer.fromJSON({
      added_tokens: [added(1, "<s>", {})],
      normalizer: null,
      pre_tokenizer: pre,
      post_processor: null,
      decoder: dec,
      model: { type: "BPE", vocab, merges: [], unk_token: "<unk>", ignore_merges: true },
    });

  it("prepend_scheme always / first / never and split", () => {
    const always = make({ type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true });
    expect(always.preTokenize("Hey friend!")).toEqual(["▁Hey", "▁friend!"]);
    expect(always.preTokenize("Hey   friend")).toEqual(["▁Hey", "▁", "▁", "▁friend"]);
    expect(always.preTokenize("<s>Hey")).toEqual(["<s>", "▁Hey"]);
    const first = make({ type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: true });
    expect(first.preTokenize("Hey friend")).toEqual(["▁Hey", "▁friend"]);
    expect(first.preTokenize("<s>Hey")).toEqual(["<s>", "Hey"]);
    const never = make({ type: "Metaspace", replacement: "▁", prepend_scheme: "never", split: false });
    expect(never.preTokenize("Hey friend")).toEqual(["Hey▁friend"]);
    // files from older `tokenizers` spell it add_prefix_space
    const legacy = make({ type: "Metaspace", replacement: "▁", add_prefix_space: true });
    expect(legacy.preTokenize("Hey friend")).toEqual(["▁Hey", "▁friend"]);
  });

  it("encodes with ignore_merges and decodes back", () => {
    const tok = make({ type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true });
    const ids = tok.encode("Hey friend !");
    expect(ids).toEqual([12, 13, 2, 11]);
    expect(tok.decode(ids)).toBe("Hey friend !");
    // "▁friend!" is not in the vocabulary and there are no merges: characters
    expect(tok.encode("friend!")).toEqual([2, 6, 7, 8, 4, 9, 10, 11]);
    expect(tok.tokenText(13)).toBe(" friend");
  });
});
