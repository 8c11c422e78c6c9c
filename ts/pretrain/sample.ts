/** Text continuation with the KV cache: greedy by default, or seeded top-k sampling. */
import { CausalLMModel, type Tokenizer } from "../index";
import { mulberry32 } from "../advanced";

export interface GenerateOptions {
  maxNewTokens?: number;
  /** Sample from the top-k tokens (omit for greedy decoding). */
  topK?: number;
  temperature?: number;
  seed?: number;
  /** Stop at this token (default: the tokenizer's <|endoftext|>, if any). */
  stopId?: number;
}

/** Continues `prompt` (stopping at the context length or the stop token); returns only the new text. */
export async function generate(model: CausalLMModel, tok: Tokenizer, prompt: string, opts: GenerateOptions = {}): Promise<string> {
  const ids = await generateIds(model, tok.encode(prompt, { addSpecialTokens: false }), { stopId: tok.tokenToId("<|endoftext|>"), ...opts });
  return tok.decode(ids);
}

export async function generateIds(model: CausalLMModel, prompt: number[], opts: GenerateOptions = {}): Promise<number[]> {
  const V = model.config.vocabSize;
  const capacity = model.config.maxSeqLen;
  if (prompt.length === 0 || prompt.length >= capacity) throw new RangeError(`the prompt must have 1..${capacity - 1} tokens, got ${prompt.length}`);
  const rng = mulberry32(opts.seed ?? 0);
  const cache = model.createKVCache(1, capacity);
  const out: number[] = [];
  let logits = await model.decode(cache, { tokens: Int32Array.from(prompt), T: prompt.length });
  const maxNew = Math.min(opts.maxNewTokens ?? 32, capacity - prompt.length);
  for (let i = 0; i < maxNew; i++) {
    const next = opts.topK ? sampleTopK(logits, V, opts.topK, opts.temperature ?? 1, rng) : argmax(logits, V);
    if (next === opts.stopId) break;
    out.push(next);
    if (i + 1 < maxNew) logits = await model.decode(cache, { tokens: Int32Array.of(next), T: 1 }, { logits });
  }
  return out;
}

function argmax(logits: Float32Array, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
  return best;
}

function sampleTopK(logits: Float32Array, V: number, k: number, temperature: number, rng: () => number): number {
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
  const top = logits[order[0]];
  const w = order.map((i) => Math.exp((logits[i] - top) / temperature));
  let u = rng() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < order.length; j++) if ((u -= w[j]) <= 0) return order[j];
  return order[order.length - 1];
}

export interface ModelSample {
  prompt: string;
  mode: string;
  text: string;
}

export const SAMPLE_PROMPTS = [
  "This movie was",
  "The film is",
  "I watched this movie",
  "The acting in this film",
  "My favourite part of the story",
  "It was a dark and stormy night",
  "The President said that",
  "In the morning, she",
  "The old man looked at",
  "One of the worst",
];

/**
 * The model card's samples: `unconditional` texts started from `<|endoftext|>` and two per prompt of SAMPLE_PROMPTS,
 * all top-k 40 at temperature 0.8 with fixed seeds (so a checkpoint always gives the same samples).
 */
export async function modelSamples(model: CausalLMModel, tok: Tokenizer, o: { unconditional?: number; maxNewTokens?: number } = {}): Promise<ModelSample[]> {
  const eot = tok.tokenToId("<|endoftext|>");
  if (eot === undefined) throw new Error("the tokenizer has no <|endoftext|> token");
  const maxNewTokens = o.maxNewTokens ?? 48;
  const out: ModelSample[] = [];
  for (let s = 1; s <= (o.unconditional ?? 20); s++) {
    const ids = await generateIds(model, [eot], { maxNewTokens, topK: 40, temperature: 0.8, seed: s, stopId: eot });
    out.push({ prompt: "", mode: `unconditional, top-k 40, temperature 0.8, seed ${s}`, text: tok.decode(ids) });
  }
  for (const prompt of SAMPLE_PROMPTS)
    for (const seed of [1, 2])
      out.push({ prompt, mode: `top-k 40, temperature 0.8, seed ${seed}`, text: await generate(model, tok, prompt, { maxNewTokens, topK: 40, temperature: 0.8, seed }) });
  return out;
}
