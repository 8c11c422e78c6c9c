/** Small language-model utilities over token ids: last-position logits, label-word classification, perplexity. */
import type { GPT2Model } from "../model";
import type { Tokenizer } from "../tokenizer";

/**
 * A piece of a token sequence (a template, a label word, a separator, a text that continues a prompt): its tokens
 * with no special tokens, whatever the tokenizer adds to a whole text (Gemma's and Llama's <bos>, an end token).
 */
export function pieceTokens(tokenizer: Tokenizer, text: string): number[] {
  return tokenizer.encode(text, { addSpecialTokens: false });
}

/**
 * Each class's label token: the first token of its label word, the one token the target's loss, the filter's
 * few-shot answer and method.target_rows are about. A label word that encodes to no tokens, or starts with the same
 * token as an earlier class's, goes to `problem` (which must throw; by default a RangeError); one longer than a token
 * to `note`.
 */
export function labelTokens(
  tokenizer: Tokenizer,
  labelWords: readonly string[],
  problem: (k: number, message: string) => never = (k, message) => {
    throw new RangeError(`label word ${k}: ${message}`);
  },
  note?: (k: number, message: string) => void,
): number[] {
  const firstOf = new Map<number, number>();
  return labelWords.map((word, k) => {
    const ids = pieceTokens(tokenizer, word);
    if (!ids.length) problem(k, "encodes to no tokens");
    const other = firstOf.get(ids[0]);
    if (other !== undefined)
      problem(k, labelWords[other] === word
        ? `${JSON.stringify(word)} is also the label word of classes[${other}]; every class needs its own`
        : `${JSON.stringify(word)} starts with the same token ${JSON.stringify(tokenizer.tokenText(ids[0]))} as classes[${other}]'s ${JSON.stringify(labelWords[other])}; the filter and the target could not tell them apart`);
    firstOf.set(ids[0], k);
    if (ids.length > 1) note?.(k, `${JSON.stringify(word)} is ${ids.length} tokens; only its first token ${JSON.stringify(tokenizer.tokenText(ids[0]))} is the target`);
    return ids[0];
  });
}

/** The start of a token sequence: the tokens the tokenizer puts before a text (<bos>, or none), then `text`'s. */
export function startTokens(tokenizer: Tokenizer, text = ""): number[] {
  return [...tokenizer.prefixIds, ...pieceTokens(tokenizer, text)];
}

/** Logits at the last token of each sequence (right-padded batches of `chunk`), [seqs.length][V]. */
export async function lastPositionLogits(model: GPT2Model, seqs: number[][], opts: { signal?: AbortSignal; chunk?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<Float32Array[]> {
  const V = model.config.vocabSize, chunk = opts.chunk ?? 16;
  const out: Float32Array[] = [];
  for (let s = 0; s < seqs.length; s += chunk) {
    const group = seqs.slice(s, s + chunk);
    const T = Math.max(...group.map((q) => q.length));
    const tokens = new Int32Array(group.length * T), lossMask = new Float32Array(group.length * T);
    group.forEach((q, b) => {
      tokens.set(q, b * T);
      lossMask[b * T + q.length - 1] = 1;
    });
    await model.forward({ tokens, lossMask, B: group.length, T, signal: opts.signal, keepActivations: false });
    const logits = model.logits();
    group.forEach((_, b) => out.push(logits.slice(b * V, (b + 1) * V)));
    opts.onProgress?.(out.length, seqs.length);
  }
  return out;
}

/** Mean next-token cross-entropy of `continuation` after `context` (natural log), one value per sequence. */
export async function continuationLoss(model: GPT2Model, context: number[], continuations: number[][], opts: { signal?: AbortSignal } = {}): Promise<number[]> {
  const out: number[] = [];
  for (const cont of continuations) {
    const seq = [...context, ...cont];
    const T = seq.length - 1;
    const tokens = Int32Array.from(seq.slice(0, T)), targets = Int32Array.from(seq.slice(1));
    const lossMask = new Float32Array(T);
    for (let t = Math.max(context.length - 1, 0); t < T; t++) lossMask[t] = 1;
    out.push(await model.forward({ tokens, targets, lossMask, B: 1, T, signal: opts.signal, keepActivations: false }));
  }
  return out;
}
