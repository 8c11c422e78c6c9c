import { encode as refEncode } from "gpt-3-encoder";
import { beforeAll, describe, expect, it } from "vitest";
import { alphabeticTokenMask, toByteLevel, Tokenizer } from "../ts/tokenizer";
import { gpt2Json } from "./fixtures/tokenizers/helpers";
import { generateSentences } from "./fixtures/tokenizers/sentences";

let tok: Tokenizer;
const sentences = generateSentences(600);

beforeAll(() => {
  tok = Tokenizer.fromJSON(gpt2Json(), "gpt2");
});

describe("GPT-2 byte-level BPE vs gpt-3-encoder", () => {
  it("loads the full vocabulary", () => {
    expect(tok.vocabSize).toBe(50257);
    expect(tok.tokenToId("<|endoftext|>")).toBe(50256);
    expect(tok.idToToken(15496)).toBe("Hello");
    expect(tok.specialTokens).toEqual([{ id: 50256, content: "<|endoftext|>" }]);
  });

  it(`gives the reference ids on ${sentences.length} varied sentences`, () => {
    expect(sentences.length).toBeGreaterThanOrEqual(500);
    expect(new Set(sentences).size).toBeGreaterThan(450);
    const mismatches: string[] = [];
    for (const s of sentences) {
      const ours = tok.encode(s);
      const ref = refEncode(s);
      if (ours.join(",") !== ref.join(",")) mismatches.push(JSON.stringify(s));
    }
    expect(mismatches).toEqual([]);
  }, 30_000);

  it("decode(encode(s)) === s", () => {
    for (const s of sentences) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it("matches on one long multi-paragraph text too", () => {
    const text = sentences.slice(0, 200).join("\n");
    expect(tok.encode(text)).toEqual(refEncode(text));
  });

  it("adds nothing for addSpecialTokens (GPT-2's post-processor is ByteLevel)", () => {
    expect(tok.encode("Hello world", { addSpecialTokens: true })).toEqual([15496, 995]);
    expect(tok.encode("")).toEqual([]);
  });

  it("splits <|endoftext|> out as the special token (gpt-3-encoder does not)", () => {
    expect(tok.encode("a<|endoftext|>b")).toEqual([64, 50256, 65]);
    // with encodeSpecialTokens the text is ordinary text, as gpt-3-encoder treats it
    expect(tok.encode("a<|endoftext|>b", { encodeSpecialTokens: true })).toEqual(refEncode("a<|endoftext|>b"));
    expect(tok.decode([64, 50256, 65])).toBe("a<|endoftext|>b");
    expect(tok.decode([64, 50256, 65], { skipSpecialTokens: true })).toBe("ab");
  });

  it("treats U+0085 as whitespace and U+FEFF as not, like tokenizers/Oniguruma (gpt-3-encoder's JS \\s differs)", () => {
    // " \u0085x": whitespace run " \u0085" then "x"; Oniguruma's \s is White_Space.
    expect(tok.preTokenize("a \u0085x")).toEqual(["a", " ", "\u0085", "x"].map(toByteLevel));
    expect(tok.preTokenize("a \ufeffx")).toEqual(["a", " \ufeff", "x"].map(toByteLevel));
  });

  it("decodes a lone continuation byte to U+FFFD", () => {
    const ids = tok.encode("é"); // two bytes, one or two tokens
    expect(tok.decode(ids)).toBe("é");
    const byteTok = tok.tokenToId("©")!; // byte 0xA9 alone
    expect(tok.decode([byteTok])).toBe("\ufffd");
  });
});

describe("token surface text and the alphabetic mask", () => {
  it("tokenText gives the decoded text of one token", () => {
    expect(tok.tokenText(tok.tokenToId("Ġthe")!)).toBe(" the");
    expect(tok.tokenText(tok.tokenToId("the")!)).toBe("the");
    expect(tok.tokenText(tok.tokenToId("Ċ")!)).toBe("\n");
    expect(tok.tokenText(50256)).toBe("<|endoftext|>");
  });

  it("marks tokens whose text is letters after at most one leading space", () => {
    const mask = alphabeticTokenMask(tok);
    expect(mask.length).toBe(tok.vocabSize);
    const at = (t: string) => {
      const id = tok.tokenToId(t);
      if (id === undefined) throw new Error(`${t} is not in the GPT-2 vocabulary`);
      return mask[id];
    };
    expect(at("Ġthe")).toBe(1);
    expect(at("the")).toBe(1);
    expect(at("ĠHello")).toBe(1);
    expect(at("Ġ")).toBe(0);
    expect(at("Ċ")).toBe(0);
    expect(at("Ġ(")).toBe(0);
    expect(at("Ġ123")).toBe(0);
    expect(at(".")).toBe(0);
    expect(at(toByteLevel(" café"))).toBe(0);
    expect(mask[50256]).toBe(0);
    // independent count on the vocabulary spelling: byte-level keeps ASCII letters and spells " " as "Ġ"
    const expected = Object.keys(gpt2Json().model.vocab).filter((t) => /^Ġ?[A-Za-z]+$/.test(t)).length;
    expect(mask.reduce((a, b) => a + b, 0)).toBe(expected);
    // every marked token really decodes to ASCII letters
    const wrong: number[] = [];
    for (let id = 0; id < tok.vocabSize; id++) {
      if (mask[id] && !/^ ?[A-Za-z]+$/.test(tok.tokenText(id))) wrong.push(id);
    }
    expect(wrong).toEqual([]);
  }, 30_000);
});
