/**
 * Converts OpenAI's original GPT-2 vocabulary files (`encoder.json` + `vocab.bpe`) into the
 * Hugging Face `tokenizer.json` layout that the `gpt2` model repository ships.
 */

import * as fs from "node:fs";
import { InvalidFileError } from "../errors";
import type { TokenizerJson } from "./train";

/** Builds the tokenizer.json object from parsed `encoder.json` and the text of `vocab.bpe`. */
export function gpt2TokenizerJson(
  encoder: Record<string, number>,
  vocabBpe: string,
  sourceName = "vocab.bpe",
): TokenizerJson {
  const merges: Array<[string, string]> = [];
  const lines = vocabBpe.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, "");
    if (line.startsWith("#version") || line.trim() === "") return;
    const parts = line.split(" ");
    if (parts.length !== 2) throw new InvalidFileError(sourceName, `line ${i + 1} is not "left right": ${JSON.stringify(line)}`);
    merges.push([parts[0], parts[1]]);
  });
  const vocab: Record<string, number> = {};
  for (const [tok, id] of Object.entries(encoder)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new InvalidFileError("encoder.json", `id of ${JSON.stringify(tok)} is not a non-negative integer`);
    }
    vocab[tok] = id;
  }
  const eot = vocab["<|endoftext|>"];
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens:
      eot === undefined
        ? []
        : [{ id: eot, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** Reads `encoder.json` and `vocab.bpe` from disk and converts them. */
export function gpt2TokenizerJsonFromFiles(encoderJsonPath: string, vocabBpePath: string): TokenizerJson {
  let encoder: unknown;
  try {
    encoder = JSON.parse(fs.readFileSync(encoderJsonPath, "utf8"));
  } catch (e) {
    throw new InvalidFileError(encoderJsonPath, `cannot read as JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof encoder !== "object" || encoder === null || Array.isArray(encoder)) {
    throw new InvalidFileError(encoderJsonPath, "must be a JSON object {token: id}");
  }
  let bpe: string;
  try {
    bpe = fs.readFileSync(vocabBpePath, "utf8");
  } catch (e) {
    throw new InvalidFileError(vocabBpePath, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  return gpt2TokenizerJson(encoder as Record<string, number>, bpe, vocabBpePath);
}
