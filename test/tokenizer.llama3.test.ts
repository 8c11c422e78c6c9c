import { TokenizerLoader } from "@lenml/tokenizers";
import { describe, expect, it } from "vitest";
import { toByteLevel, Tokenizer } from "../ts/tokenizer";
import { BYTE_TO_CHAR } from "../ts/tokenizer/byteLevel";
import { splitOn } from "../ts/tokenizer/components";
import { compileOnigRegex, GPT2_PATTERN, LLAMA3_PATTERN, RegexTranslationError, translateOnigRegex } from "../ts/tokenizer/regex";
import { fastSplitterFor } from "../ts/tokenizer/scanners";
import { gpt2Json } from "./fixtures/tokenizers/helpers";
import { generateSentences } from "./fixtures/tokenizers/sentences";

/** A Llama-3-shaped tokenizer.json over a tiny vocabulary: the 256 byte tokens plus a few merges. */
function tinyLlama3(ignoreMerges: boolean): object {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[BYTE_TO_CHAR[b]] = b;
  vocab["Ġt"] = 256;
  vocab["he"] = 257;
  vocab["Ġthe"] = 258;
  vocab["Ġhello"] = 259; // no merge path leads here: only reachable with ignore_merges
  const bos = { id: 260, content: "<|begin_of_text|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  const eos = { ...bos, id: 261, content: "<|end_of_text|>" };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [bos, eos],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: LLAMA3_PATTERN }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "Sequence",
      processors: [
        { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [],
          special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [260], tokens: ["<|begin_of_text|>"] } },
        },
      ],
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: ignoreMerges,
      vocab,
      merges: [
        ["Ġ", "t"],
        ["h", "e"],
        ["Ġt", "he"],
      ],
    },
  };
}

const tok = Tokenizer.fromJSON(tinyLlama3(true), "tiny-llama3");
const split = (s: string) => tok.preTokenize(s);
const bl = (xs: string[]) => xs.map(toByteLevel);

describe("Llama-3 split regex on tricky inputs", () => {
  it("contractions match in any case", () => {
    expect(split("I'M here")).toEqual(bl(["I", "'M", " here"]));
    expect(split("DON'T stop")).toEqual(bl(["DON", "'T", " stop"]));
    expect(split("We'LL see, they'Ve gone")).toEqual(bl(["We", "'LL", " see", ",", " they", "'Ve", " gone"]));
    expect(split("'Sup")).toEqual(bl(["'S", "up"]));
    expect(split("rock 'n' roll")).toEqual(bl(["rock", " '", "n", "'", " roll"]));
  });

  it("digits go in groups of at most three", () => {
    expect(split("1234567")).toEqual(bl(["123", "456", "7"]));
    expect(split("x=1000000;")).toEqual(bl(["x", "=", "100", "000", "0", ";"]));
    expect(split("abc123def")).toEqual(bl(["abc", "123", "def"]));
    expect(split("v1.23")).toEqual(bl(["v", "1", ".", "23"]));
  });

  it("newlines and whitespace runs", () => {
    expect(split("hello\n\nworld")).toEqual(bl(["hello", "\n\n", "world"]));
    expect(split("a  \n  b")).toEqual(bl(["a", "  \n", " ", " b"]));
    expect(split("end.\r\nnext")).toEqual(bl(["end", ".\r\n", "next"]));
    expect(split("  leading")).toEqual(bl([" ", " leading"]));
    expect(split("trailing   ")).toEqual(bl(["trailing", "   "]));
    expect(split("tab\tsep")).toEqual(bl(["tab", "\tsep"]));
    expect(split("x \n\t\n y")).toEqual(bl(["x", " \n\t\n", " y"]));
  });

  it("one non-letter may lead a word; symbols stick together", () => {
    expect(split("(hello) world!")).toEqual(bl(["(hello", ")", " world", "!"]));
    expect(split("über 😀 123")).toEqual(bl(["über", " 😀", " ", "123"]));
    expect(split("a...b")).toEqual(bl(["a", "...", "b"]));
    expect(split("$$$money")).toEqual(bl(["$$$", "money"]));
    expect(split("\"quoted\"")).toEqual(bl(["\"quoted", "\""]));
  });

  it("added tokens are split out first", () => {
    expect(split("<|begin_of_text|>Hi<|end_of_text|>")).toEqual(["<|begin_of_text|>", "Hi", "<|end_of_text|>"]);
  });
});

describe("Llama-3-style tokenizer.json: Split + ByteLevel, ignore_merges, TemplateProcessing", () => {
  it("adds BOS and applies merges in rank order", () => {
    const b = (c: string) => c.charCodeAt(0); // ASCII letters are their own byte ids here
    expect(tok.encode("the")).toEqual([260, b("t"), 257]);
    expect(tok.encode(" the", { addSpecialTokens: false })).toEqual([258]);
    expect(tok.decode(tok.encode("Say the word"), { skipSpecialTokens: true })).toBe("Say the word");
  });

  it("ignore_merges takes a whole word that is in the vocabulary", () => {
    expect(tok.encode(" hello", { addSpecialTokens: false })).toEqual([259]);
    const strict = Tokenizer.fromJSON(tinyLlama3(false), "tiny-llama3 (merges)");
    // "Ġ" is byte 0x20 (id 32 here), letters are their ASCII codes; only "h e" merges
    expect(strict.encode(" hello", { addSpecialTokens: false })).toEqual([32, 257, 108, 108, 111]);
  });

  it("round-trips arbitrary unicode byte by byte", () => {
    for (const s of generateSentences(200, 99)) expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
  });
});

describe("the Llama-3 pipeline over a full vocabulary vs transformers.js (@lenml/tokenizers)", () => {
  // Llama-3's pre_tokenizer and ignore_merges around GPT-2's 50k vocabulary and merges.
  const llama3Shaped = (ignoreMerges: boolean) => {
    const g = gpt2Json();
    return {
      ...g,
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: LLAMA3_PATTERN }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      model: { ...g.model, ignore_merges: ignoreMerges },
    };
  };
  // (ignore_merges changes nothing with GPT-2's merges; the tiny tokenizer above tests it.)
  for (const ignoreMerges of [true]) {
    it(`gives the same ids on 600 sentences (ignore_merges ${ignoreMerges})`, () => {
      const json = llama3Shaped(ignoreMerges);
      const ours = Tokenizer.fromJSON(json, "llama3-shaped");
      const ref = TokenizerLoader.fromPreTrained({
        tokenizerJSON: json,
        tokenizerConfig: { tokenizer_class: "PreTrainedTokenizer" },
      } as never) as unknown as { encode(t: string, o: object): number[] };
      const mismatches: string[] = [];
      for (const s of generateSentences(600)) {
        const a = ours.encode(s, { addSpecialTokens: false });
        const b = Array.from(ref.encode(s, { add_special_tokens: false }));
        if (a.join(",") !== b.join(",")) mismatches.push(JSON.stringify(s));
      }
      expect(mismatches).toEqual([]);
    }, 30_000);
  }
});

describe("Oniguruma -> JavaScript regex translation", () => {
  it("expands (?i:...) and keeps Oniguruma's \\s", () => {
    expect(translateOnigRegex("(?i:'s|x)")).toBe("(?:'[sSſ]|[xX])");
    const re = compileOnigRegex("\\s+");
    expect("\u0085".match(re)).not.toBeNull();
    expect("\ufeff".match(re)).toBeNull();
    expect("a\u00a0b".match(re)?.[0]).toBe("\u00a0");
    expect(translateOnigRegex("[\\x00-\\x1f-]\\-\\'a{2}")).toBe("[\\x00-\\x1f\\-]-'a{2}");
  });

  it("refuses constructs JavaScript cannot express", () => {
    for (const bad of ["(?>a)", "a++", "[[:alpha:]]", "[a&&b]", "\\G", "\\K", "(?x)a"]) {
      expect(() => translateOnigRegex(bad), bad).toThrow(RegexTranslationError);
    }
  });

  it("the hand-written GPT-2 / Llama-3 / Qwen2 splitters equal the translated regexes", () => {
    let seed = 1;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
    const pool = [..." \t\n\r\u00a0\u3000\u0085\ufeff\u2028'sStTrReEvVmMlLdDſ0123456789٣½aZé日😀🏽\u0301.,!?-_\"()ab ABC"];
    const inputs = generateSentences(600, 5);
    for (let k = 0; k < 5000; k++) {
      let s = "";
      const n = 1 + Math.floor(rnd() * 20);
      for (let j = 0; j < n; j++) s += pool[Math.floor(rnd() * pool.length)];
      inputs.push(s);
    }
    const qwen = LLAMA3_PATTERN.replace("\\p{N}{1,3}", "\\p{N}");
    for (const pattern of [GPT2_PATTERN, LLAMA3_PATTERN, qwen]) {
      const fast = fastSplitterFor(pattern)!;
      const re = compileOnigRegex(pattern);
      expect(fast).not.toBeNull();
      for (const s of inputs) {
        const a: string[] = [];
        const b: string[] = [];
        fast(s, a);
        splitOn(s, re, "Isolated", false, b);
        if (a.join("\u0001") !== b.join("\u0001")) expect(a, JSON.stringify(s)).toEqual(b);
      }
    }
  }, 30_000);
});
