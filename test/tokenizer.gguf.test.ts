/**
 * The tokenizer built from GGUF metadata (ts/tokenizer/gguf.ts) against what transformers builds from the same file
 * (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), recorded by test/fixtures/gen_gguf_tokenizer.py:
 * - a small sentencepiece-style ("llama") GGUF committed as a fixture: always runs;
 * - the real SmolLM2-135M-Instruct GGUF ("gpt2", pre "smollm"): runs when the model is in the cache;
 * - tiny GGUFs for the corners of the conversion (named tokens missing from the vocabulary, control tokens outside the
 *   byte alphabet, user-defined tokens, add_bos/add_eos, split regexes, derived merges, phi3/gemma builders).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { GGUFMetadataValue, readGGUF } from "../ts/gguf";
import { ggufTokenizerInfo, Tokenizer, tokenizerFromGGUF, tokenizerJsonFromGGUF } from "../ts/tokenizer";
import { smollm2GGUF, SMOLLM2_MISSING } from "./helpers/real_model";

const DIR = path.join(__dirname, "fixtures", "gguf_tokenizer");

interface Case {
  text: string;
  ids: number[];
  ids_no_special: number[];
  decoded: string;
  decoded_skip_special: string;
  decoded_no_special: string;
}

interface Reference {
  file: string;
  transformers: string;
  tokens: Record<"bos" | "eos" | "unk" | "pad", [string | null, number | null]>;
  add_bos_token: boolean;
  add_eos_token: boolean;
  chat_template: string | null;
  vocab_size_with_added: number;
  components: {
    normalizer: unknown;
    pre_tokenizer: unknown;
    decoder: unknown;
    post_processor: unknown;
    added_tokens: unknown[];
    model: Record<string, unknown>;
    vocab_entries: number;
    merges_count: number;
    merges_head: string[];
    merges_tail: string[];
  };
  cases: Case[];
}

function loadRef(name: string): Reference {
  return JSON.parse(fs.readFileSync(path.join(DIR, name), "utf8")) as Reference;
}

/** The tests every GGUF with a recorded reference gets. */
function compareWithTransformers(label: string, file: () => string, ref: () => Reference): void {
  let meta: Map<string, GGUFMetadataValue>;
  let json: Record<string, unknown>;
  let tok: Tokenizer;
  const setup = () => {
    if (!tok) {
      meta = readGGUF(file()).metadata;
      json = tokenizerJsonFromGGUF(meta, file());
      tok = tokenizerFromGGUF(meta, file());
    }
  };

  it(`${label}: builds the same pipeline, added tokens and vocabulary as transformers`, () => {
    setup();
    const c = ref().components;
    expect(json["normalizer"]).toEqual(c.normalizer);
    expect(json["pre_tokenizer"]).toEqual(c.pre_tokenizer);
    expect(json["decoder"]).toEqual(c.decoder);
    expect(json["post_processor"]).toEqual(c.post_processor);
    expect(json["added_tokens"]).toEqual(c.added_tokens);
    const model = json["model"] as Record<string, unknown>;
    const { vocab, merges, ...rest } = model;
    expect(rest).toEqual(c.model);
    expect(Object.keys(vocab as object).length).toBe(c.vocab_entries);
    const m = (merges as string[][]).map((x) => x.join(" "));
    expect(m.length).toBe(c.merges_count);
    expect(m.slice(0, 50)).toEqual(c.merges_head);
    expect(m.slice(-50)).toEqual(c.merges_tail);
    expect(tok.vocabSize).toBe(ref().vocab_size_with_added);
  });

  it(`${label}: ids equal to transformers' on every sentence, with and without special tokens`, () => {
    setup();
    const bad: string[] = [];
    for (const c of ref().cases) {
      const a = tok.encode(c.text);
      const b = tok.encode(c.text, { addSpecialTokens: false });
      if (a.join(",") !== c.ids.join(",")) bad.push(`${JSON.stringify(c.text)}: ${a} vs ${c.ids}`);
      if (b.join(",") !== c.ids_no_special.join(",")) bad.push(`${JSON.stringify(c.text)} (no special): ${b} vs ${c.ids_no_special}`);
    }
    expect(bad).toEqual([]);
    expect(ref().cases.length).toBeGreaterThanOrEqual(600);
  });

  it(`${label}: decode equals transformers' decode`, () => {
    setup();
    const bad: string[] = [];
    for (const c of ref().cases) {
      const d = tok.decode(c.ids);
      const ds = tok.decode(c.ids, { skipSpecialTokens: true });
      const dn = tok.decode(c.ids_no_special);
      if (d !== c.decoded) bad.push(`${JSON.stringify(c.text)}: ${JSON.stringify(d)} vs ${JSON.stringify(c.decoded)}`);
      if (ds !== c.decoded_skip_special) bad.push(`${JSON.stringify(c.text)} (skip special): ${JSON.stringify(ds)} vs ${JSON.stringify(c.decoded_skip_special)}`);
      if (dn !== c.decoded_no_special) bad.push(`${JSON.stringify(c.text)} (no special): ${JSON.stringify(dn)} vs ${JSON.stringify(c.decoded_no_special)}`);
    }
    expect(bad).toEqual([]);
  });

  it(`${label}: special token ids, add_bos/add_eos and the chat template`, () => {
    setup();
    const r = ref();
    const info = ggufTokenizerInfo(meta, file());
    expect(info.bosId ?? null).toBe(r.tokens.bos[1]);
    expect(info.eosId ?? null).toBe(r.tokens.eos[1]);
    expect(info.unkId ?? null).toBe(r.tokens.unk[1]);
    expect(info.padId ?? null).toBe(r.tokens.pad[1]);
    expect(info.addBos).toBe(r.add_bos_token);
    expect(info.addEos).toBe(r.add_eos_token);
    expect(info.chatTemplate).toBe(r.chat_template);
    for (const k of ["bos", "eos", "unk", "pad"] as const) {
      const [content, id] = r.tokens[k];
      if (content !== null) {
        expect(tok.tokenToId(content)).toBe(id);
        expect(tok.isSpecial(id!)).toBe(true);
      }
    }
    expect(tok.prefixIds).toEqual(r.add_bos_token ? [r.tokens.bos[1]] : []);
    expect(tok.suffixIds).toEqual(r.add_eos_token ? [r.tokens.eos[1]] : []);
  });
}

describe("GGUF tokenizer, sentencepiece-style (llama) fixture vs transformers", () => {
  const file = path.join(DIR, "llama_spm.gguf");
  compareWithTransformers("llama_spm.gguf", () => file, () => loadRef("llama_spm.json"));

  it("reads the model type, pre-tokenizer, control tokens and user-defined tokens", () => {
    const meta = readGGUF(file).metadata;
    const info = ggufTokenizerInfo(meta, file);
    expect(info).toMatchObject({ model: "llama", pre: "default", bosId: 1, eosId: 2, unkId: 0, padId: 0, addBos: true, addEos: false });
    expect(info.chatTemplate).toContain("[INST]");
    const tok = tokenizerFromGGUF(meta, file);
    const im = tok.tokenToId("<|im_start|>")!;
    expect(tok.isSpecial(im)).toBe(true); // control
    const think = tok.tokenToId("<think>")!;
    expect(tok.isSpecial(think)).toBe(false); // user-defined: matched whole, not special
    expect(tok.encode("a<think>b", { addSpecialTokens: false })).toContain(think);
    expect(tok.encode("<0x41>", { addSpecialTokens: false })).not.toEqual([tok.tokenToId("<0x41>")]); // byte tokens are not added tokens
  });
});

const smol = smollm2GGUF();
describe.skipIf(!smol)(`GGUF tokenizer, SmolLM2-135M-Instruct (gpt2 / smollm) vs transformers${smol ? "" : ` (skipped: ${SMOLLM2_MISSING})`}`, () => {
  compareWithTransformers("SmolLM2", () => smol!, () => loadRef("smollm2.json"));

  it("has the vocabulary's merges in the file order (sha256 of the merges list)", () => {
    const meta = readGGUF(smol!).metadata;
    const json = tokenizerJsonFromGGUF(meta, smol!);
    const merges = ((json["model"] as Record<string, unknown>)["merges"] as string[][]).map((m) => m.join(" "));
    const fileMerges = meta.get("tokenizer.ggml.merges") as string[];
    expect(createHash("sha256").update(merges.join("\n")).digest("hex")).toBe(createHash("sha256").update(fileMerges.join("\n")).digest("hex"));
    const info = ggufTokenizerInfo(meta, smol!);
    expect(info).toMatchObject({ model: "gpt2", pre: "smollm", bosId: 1, eosId: 2, unkId: 0, padId: 2, addBos: false, addEos: false });
  });
});

describe("GGUF tokenizer, corners of transformers' conversion (tiny GGUFs)", () => {
  const refs = JSON.parse(fs.readFileSync(path.join(DIR, "variants.json"), "utf8")) as Record<
    string,
    {
      tokenizer_json: Record<string, unknown>;
      tokens: Record<"bos" | "eos" | "unk" | "pad", number | null>;
      cases: Array<[string, number[], number[], string]>;
    }
  >;
  for (const [name, ref] of Object.entries(refs)) {
    it(`${name}: same tokenizer.json, ids and decodes`, () => {
      const file = path.join(DIR, "variants", `${name}.gguf`);
      const meta = readGGUF(file).metadata;
      const json = tokenizerJsonFromGGUF(meta, file);
      const hf = ref.tokenizer_json;
      for (const k of ["normalizer", "pre_tokenizer", "decoder", "post_processor", "added_tokens"]) expect(json[k], k).toEqual(hf[k]);
      const ours = json["model"] as Record<string, unknown>;
      const theirs = hf["model"] as Record<string, unknown>;
      expect({ ...ours, vocab: undefined, merges: undefined }).toEqual({ ...theirs, vocab: undefined, merges: undefined });
      expect(new Map(Object.entries(ours["vocab"] as object))).toEqual(new Map(Object.entries(theirs["vocab"] as object)));
      expect(ours["merges"]).toEqual(theirs["merges"]);
      const tok = tokenizerFromGGUF(meta, file);
      for (const [text, ids, plain, decoded] of ref.cases) {
        expect(tok.encode(text), JSON.stringify(text)).toEqual(ids);
        expect(tok.encode(text, { addSpecialTokens: false }), JSON.stringify(text)).toEqual(plain);
        expect(tok.decode(ids), JSON.stringify(text)).toBe(decoded);
      }
    });
  }
});

describe("GGUF tokenizer errors", () => {
  const file = path.join(DIR, "llama_spm.gguf");
  const base = () => new Map(readGGUF(file).metadata);
  const build = (m: Map<string, GGUFMetadataValue>) => () => tokenizerFromGGUF(m, "x.gguf");

  it("a missing or ill-typed tokens array is an InvalidFileError naming the key", () => {
    const m = base();
    m.delete("tokenizer.ggml.tokens");
    expect(build(m)).toThrow(InvalidFileError);
    expect(build(m)).toThrow(/x\.gguf.*tokenizer\.ggml\.tokens/);
    m.set("tokenizer.ggml.tokens", [1, 2, 3]);
    expect(build(m)).toThrow(/tokenizer\.ggml\.tokens/);
    m.set("tokenizer.ggml.tokens", "abc");
    expect(build(m)).toThrow(InvalidFileError);
  });

  it("a missing model key, ill-typed ids/flags/scores are InvalidFileErrors naming the key", () => {
    const cases: Array<[string, GGUFMetadataValue | undefined]> = [
      ["tokenizer.ggml.model", undefined],
      ["tokenizer.ggml.model", 3],
      ["tokenizer.ggml.bos_token_id", "1"],
      ["tokenizer.ggml.eos_token_id", -1],
      ["tokenizer.ggml.unknown_token_id", 1e9],
      ["tokenizer.ggml.add_bos_token", 1],
      ["tokenizer.ggml.scores", ["a"]],
      ["tokenizer.ggml.token_type", [1.5]],
      ["tokenizer.ggml.pre", false],
      ["general.architecture", undefined],
    ];
    for (const [key, value] of cases) {
      const m = base();
      if (value === undefined) m.delete(key);
      else m.set(key, value);
      let err: unknown;
      try {
        tokenizerFromGGUF(m, "x.gguf");
      } catch (e) {
        err = e;
      }
      expect(err, key).toBeInstanceOf(InvalidFileError);
      expect((err as Error).message, key).toContain(key);
    }
    const m = base();
    m.set("tokenizer.ggml.bos_token_id", 5n);
    expect(ggufTokenizerInfo(m, "x.gguf").bosId).toBe(5);
  });

  it("no merges and no scores to derive them from is an InvalidFileError", () => {
    const m = base();
    m.delete("tokenizer.ggml.scores");
    expect(build(m)).toThrow(InvalidFileError);
    expect(build(m)).toThrow(/tokenizer\.ggml\.scores/);
  });

  it("an unknown tokenizer.ggml.model is an UnsupportedModelError naming it", () => {
    for (const model of ["bert", "t5", "rwkv"]) {
      const m = base();
      m.set("tokenizer.ggml.model", model);
      expect(build(m)).toThrow(UnsupportedModelError);
      expect(build(m)).toThrow(`"${model}"`);
    }
  });

  it("an unknown tokenizer.ggml.pre is an UnsupportedModelError naming it", () => {
    const m = base();
    m.set("tokenizer.ggml.pre", "deepseek-coder");
    expect(build(m)).toThrow(UnsupportedModelError);
    expect(build(m)).toThrow('"deepseek-coder"');
    m.delete("tokenizer.ggml.pre");
    expect(build(m)).not.toThrow();
  });
});
