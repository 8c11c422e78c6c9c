/**
 * The shipped default model (models/default, produced by `npm run pretrain -- configs/pretrain/default.yaml`):
 * the Hugging Face files load into the engine and the tokenizer, and the model is trained and deterministic.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT2Model } from "../ts/model";
import { generate } from "../ts/pretrain/sample";
import { Tokenizer } from "../ts/tokenizer";

const dir = path.join(__dirname, "..", "models", "default");

describe("models/default", () => {
  let model: GPT2Model;
  let tok: Tokenizer;
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;

  beforeAll(() => {
    model = GPT2Model.load(dir);
    tok = Tokenizer.fromFile(path.join(dir, "tokenizer.json"));
  });
  afterAll(() => model?.dispose());

  it("has a config.json the engine agrees with", () => {
    expect(config.tie_word_embeddings).toBe(true);
    if (config.model_type === "gpt2") {
      expect(config.architectures).toEqual(["GPT2LMHeadModel"]);
      expect(config.activation_function).toBe("gelu_new");
      expect(config.layer_norm_epsilon).toBe(1e-5);
      expect(config.n_ctx).toBe(config.n_positions);
      expect(model.config).toMatchObject({ architecture: "gpt2", vocabSize: config.vocab_size, maxSeqLen: config.n_positions, channels: config.n_embd, numLayers: config.n_layer, numHeads: config.n_head });
    } else {
      expect(config.model_type).toBe("llama");
      expect(config.architectures).toEqual(["LlamaForCausalLM"]);
      expect(config.hidden_act).toBe("silu");
      expect(model.config).toMatchObject({
        architecture: "llama",
        vocabSize: config.vocab_size,
        maxSeqLen: config.max_position_embeddings,
        channels: config.hidden_size,
        intermediateSize: config.intermediate_size,
        numLayers: config.num_hidden_layers,
        numHeads: config.num_attention_heads,
        tieWordEmbeddings: true,
      });
    }
    expect(tok.vocabSize).toBe(config.vocab_size);
    expect(tok.tokenToId("<|endoftext|>")).toBe(config.eos_token_id);
    expect(config.bos_token_id).toBe(config.eos_token_id);
    expect(fs.statSync(path.join(dir, "model.safetensors")).size).toBeLessThanOrEqual(50 * 1024 * 1024);
  });

  it("round-trips text through the tokenizer", () => {
    for (const s of [
      "This movie was one of the best films I have seen in years.",
      "I didn't like it: the plot was thin, the acting wooden (3/10).",
      "  Spaces,\ttabs and\nnewlines; unicode: café, naïve, 😀 <|endoftext|> end",
    ]) {
      const ids = tok.encode(s, { addSpecialTokens: false });
      expect(ids.every((id) => id >= 0 && id < tok.vocabSize)).toBe(true);
      expect(tok.decode(ids)).toBe(s);
    }
    expect(tok.encode("a<|endoftext|>b", { addSpecialTokens: false })).toContain(tok.tokenToId("<|endoftext|>"));
  });

  it("is trained: a review sentence costs far less than uniform guessing", async () => {
    const ids = tok.encode("This movie was one of the best films I have seen in years. The acting was great.", { addSpecialTokens: false });
    const seq = [tok.tokenToId("<|endoftext|>")!, ...ids];
    const T = seq.length - 1;
    const loss = await model.forward({ tokens: Int32Array.from(seq.slice(0, T)), targets: Int32Array.from(seq.slice(1)), B: 1, T });
    expect(loss).toBeLessThan(0.75 * Math.log(tok.vocabSize));
  });

  it("continues 'This movie was' greedily, the same way twice", async () => {
    const a = await generate(model, tok, "This movie was", { maxNewTokens: 12 });
    const b = await generate(model, tok, "This movie was", { maxNewTokens: 12 });
    expect(a.length).toBeGreaterThan(0);
    expect(b).toBe(a);
    const again = GPT2Model.load(dir);
    try {
      expect(await generate(again, tok, "This movie was", { maxNewTokens: 12 })).toBe(a);
    } finally {
      again.dispose();
    }
  });
});
