/**
 * Filtering synthetic samples (the paper's recipe): keep those the model itself labels as intended in a few-shot
 * prompt, rank by matching loss (+ α·log-perplexity), keep the top N per class, balance classes, de-duplicate.
 */
import type { GPT2Model } from "../model";
import type { Tokenizer } from "../tokenizer";
import { labelTokens, lastPositionLogits, pieceTokens, startTokens } from "./lm";

/**
 * The label-agreement prompt's demonstrations from each class's examples: `fewShot` spread over the classes as evenly
 * as it goes (the first fewShot mod K classes get one more), grouped by class in class order. With fewShot below the
 * number of classes, the last classes get none (synthesize() warns).
 */
export function pickDemonstrations<T>(byClass: readonly (readonly T[])[], fewShot: number): { item: T; cls: number }[] {
  const K = byClass.length;
  return byClass.flatMap((items, k) => items.slice(0, Math.floor(fewShot / K) + (k < fewShot % K ? 1 : 0)).map((item) => ({ item, cls: k })));
}

export interface SyntheticSample {
  text: string;
  label: string | number;
  /** Index into config.classes. */
  cls: number;
  tokens: number[];
  matching_loss: number;
  perplexity: number;
  batch: number;
  rho: number;
}

export interface FilterOptions {
  classes: { labelWord: string }[];
  template: string;
  /** Demonstrations for the label-agreement prompt (empty = zero-shot). */
  demonstrations: { text: string; cls: number }[];
  keepPerClass: number;
  pplWeight: number;
  dedupe: boolean;
  signal?: AbortSignal;
  /** Samples classified so far (the label-agreement pass is the filter's long part). */
  onProgress?: (done: number, total: number) => void;
}

/** Predicted class of each text: argmax over classes of the label word's first-token logit after the prompt. */
export async function classifyByLabelWord(
  model: GPT2Model,
  tokenizer: Tokenizer,
  texts: number[][],
  o: Pick<FilterOptions, "classes" | "template" | "demonstrations" | "signal" | "onProgress">,
): Promise<number[]> {
  const maxT = model.config.maxSeqLen;
  const template = pieceTokens(tokenizer, o.template), lead = startTokens(tokenizer);
  const labelIds = labelTokens(tokenizer, o.classes.map((c) => c.labelWord));
  const sep = pieceTokens(tokenizer, "\n\n");
  // [lead] demo template label sep … demo template label sep  text template: one <bos> (where the tokenizer puts one)
  const seqs = texts.map((text) => {
    const tail = [...text.slice(0, Math.max(1, maxT - template.length - lead.length)), ...template].slice(-(maxT - lead.length));
    const room = maxT - lead.length - tail.length;
    const perDemo = o.demonstrations.length ? Math.floor(room / o.demonstrations.length) : 0;
    const prefix: number[] = [];
    for (const d of o.demonstrations) {
      const fixed = template.length + 1 + sep.length;
      if (perDemo <= fixed) break;
      prefix.push(...pieceTokens(tokenizer, d.text).slice(0, perDemo - fixed), ...template, labelIds[d.cls], ...sep);
    }
    return [...lead, ...prefix, ...tail];
  });
  const logits = await lastPositionLogits(model, seqs, { signal: o.signal, onProgress: o.onProgress });
  return logits.map((l) => labelIds.reduce((best, id, k) => (l[id] > l[labelIds[best]] ? k : best), 0));
}

/** Why the filter kept or dropped one sample (aligned with the samples it was given). */
export interface FilterDecision {
  kept: boolean;
  /** The class the model gave it in the label-agreement prompt (index into the classes). */
  predicted: number;
  /** score = matching loss + ppl_weight × log-perplexity (lower is better). */
  score: number;
  /** "kept", "label disagreement", "duplicate", "below top N" or "class balance". */
  reason: string;
  /** Its rank by score within its class after agreement and de-duplication (1 = best); null before that stage. */
  rank: number | null;
}

export async function filterSamples(
  model: GPT2Model,
  tokenizer: Tokenizer,
  samples: SyntheticSample[],
  o: FilterOptions,
): Promise<{ kept: SyntheticSample[]; stats: Record<string, unknown>; decisions: FilterDecision[] }> {
  const predicted = await classifyByLabelWord(model, tokenizer, samples.map((s) => s.tokens), o);
  const score = (s: SyntheticSample) => s.matching_loss + o.pplWeight * Math.log(s.perplexity);
  const index = new Map(samples.map((s, i) => [s, i]));
  const decisions: FilterDecision[] = samples.map((s, i) => ({ kept: false, predicted: predicted[i], score: score(s), reason: "label disagreement", rank: null }));
  const agreeing = samples.filter((s, i) => predicted[i] === s.cls);
  const seen = new Set<string>();
  const unique = o.dedupe
    ? agreeing.filter((s) => {
        const key = `${s.cls}\u0000${s.text.trim()}`;
        if (seen.has(key)) {
          decisions[index.get(s)!].reason = "duplicate";
          return false;
        }
        seen.add(key);
        return true;
      })
    : agreeing;
  const ranked = o.classes.map((_, k) => unique.filter((s) => s.cls === k).sort((a, b) => score(a) - score(b) || a.batch - b.batch));
  ranked.forEach((c) => c.forEach((s, r) => Object.assign(decisions[index.get(s)!], { rank: r + 1, reason: r < o.keepPerClass ? "kept" : "below top N" })));
  const perClass = ranked.map((c) => c.slice(0, o.keepPerClass));
  // balance: every class keeps as many as the smallest has, its best-scoring ones
  const n = Math.min(...perClass.map((c) => c.length));
  const kept = perClass.flatMap((c) => c.slice(0, n));
  perClass.forEach((c) => c.slice(n).forEach((s) => (decisions[index.get(s)!].reason = "class balance")));
  for (const s of kept) decisions[index.get(s)!].kept = true;
  return {
    kept,
    decisions,
    stats: {
      label_agreement: samples.length ? agreeing.length / samples.length : null,
      after_agreement: agreeing.length,
      after_dedupe: unique.length,
      kept_per_class: n,
      demonstrations: o.demonstrations.length,
    },
  };
}
