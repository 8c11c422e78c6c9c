/**
 * The generation baselines: the model samples continuations of a prompt (temperature + nucleus sampling), rows in
 * lockstep on a KV cache that shares the prompt's one-row prefix.
 */
import { pieceTokens, type GPT2Model } from "../../ts/advanced";
import type { Tokenizer } from "../../ts/index";

export interface SamplingOptions {
  temperature: number;
  topP: number;
  /** 1 = never sample this token. */
  banned?: Uint8Array;
  rng: () => number;
  signal?: AbortSignal;
}

/** One token from logits: softmax(logits / temperature) restricted to the smallest set of mass ≥ topP. */
export function sampleToken(logits: Float32Array, o: Pick<SamplingOptions, "temperature" | "topP" | "banned" | "rng">): number {
  const ids: number[] = [];
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (o.banned?.[i]) continue;
    ids.push(i);
    if (logits[i] > max) max = logits[i];
  }
  if (!ids.length) throw new RangeError("sampleToken: every token is banned");
  const p = ids.map((i) => Math.exp((logits[i] - max) / o.temperature));
  const order = ids.map((_, j) => j).sort((a, b) => p[b] - p[a] || ids[a] - ids[b]);
  const total = p.reduce((a, b) => a + b, 0);
  let mass = 0, cut = 0;
  while (cut < order.length && mass < o.topP * total) mass += p[order[cut++]];
  let r = o.rng() * mass;
  for (let j = 0; j < cut; j++) {
    r -= p[order[j]];
    if (r <= 0) return ids[order[j]];
  }
  return ids[order[cut - 1]];
}

/** `rows` continuations of `length` tokens after `prompt`. */
export async function sampleContinuations(model: GPT2Model, prompt: readonly number[], rows: number, length: number, o: SamplingOptions): Promise<number[][]> {
  const V = model.config.vocabSize;
  if (prompt.length + length > model.config.maxSeqLen) throw new RangeError(`prompt (${prompt.length}) + ${length} tokens exceed the model's context ${model.config.maxSeqLen}`);
  const prefix = model.createKVCache(1, prompt.length);
  const first = await model.decode(prefix, { tokens: Int32Array.from(prompt), T: prompt.length }, { signal: o.signal });
  const cache = model.createKVCache(rows, length, prefix);
  const out: number[][] = Array.from({ length: rows }, () => []);
  let logits: Float32Array = new Float32Array(rows * V);
  for (let r = 0; r < rows; r++) logits.set(first, r * V);
  for (let i = 0; i < length; i++) {
    const next = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      next[r] = sampleToken(logits.subarray(r * V, (r + 1) * V), o);
      out[r].push(next[r]);
    }
    if (i + 1 < length) logits = await model.decode(cache, { tokens: next, T: 1 }, { signal: o.signal, logits });
  }
  return out;
}

/** Special tokens and tokens containing a line break: generated texts stay one fixed-length paragraph. */
export function bannedForGeneration(tokenizer: Tokenizer, vocabSize: number): Uint8Array {
  const banned = new Uint8Array(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    if (tokenizer.idToToken(id) === undefined || tokenizer.isSpecial(id) || /[\n\r]/.test(tokenizer.tokenText(id))) banned[id] = 1;
  }
  return banned;
}

/**
 * The few-shot prompt: `k` demonstrations, each "instruction text\n\n", then the instruction; demonstrations are
 * cut so that the prompt and `genLength` new tokens fit the context.
 */
export function fewShotPrompt(tokenizer: Tokenizer, instruction: string, demos: readonly string[], genLength: number, maxSeqLen: number, maxDemoTokens = 48): number[] {
  // one <bos> (where the tokenizer puts one) at the start, every later piece bare
  const instr = pieceTokens(tokenizer, instruction), sep = pieceTokens(tokenizer, "\n\n");
  const fixed = tokenizer.prefixIds.length + instr.length * (demos.length + 1) + sep.length * demos.length + genLength;
  const perDemo = demos.length ? Math.min(maxDemoTokens, Math.floor((maxSeqLen - fixed) / demos.length)) : 0;
  if (demos.length && perDemo < 1) throw new RangeError(`few-shot prompt: no room for ${demos.length} demonstrations in a ${maxSeqLen}-token context`);
  const out: number[] = [...tokenizer.prefixIds];
  for (const d of demos) out.push(...instr, ...pieceTokens(tokenizer, " " + d.trim()).slice(0, perDemo), ...sep);
  out.push(...instr);
  return out;
}
