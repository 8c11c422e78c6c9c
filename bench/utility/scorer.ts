/**
 * Label-word classification (the paper's protocol): the input is text + template, and class k's score is the
 * log-probability of the first token of its label word at the last position.
 */
import { type GPT2Model, lastPositionLogits } from "../../ts/advanced";

export interface ClassifierSpec {
  /** First token of each class's label word. */
  labelTokens: number[];
  templateTokens: number[];
  /** Texts are cut to their first N tokens. */
  maxTextTokens: number;
  /** The model's context. */
  maxSeqLen: number;
}

export interface LabelledSeq {
  tokens: number[];
  cls: number;
}

/** text (cut) + template, within the model's context. */
export function classifierInput(textTokens: readonly number[], spec: ClassifierSpec): number[] {
  const room = Math.max(0, Math.min(spec.maxTextTokens, spec.maxSeqLen - spec.templateTokens.length));
  return [...textTokens.slice(0, room), ...spec.templateTokens];
}

/** log softmax(logits)[ids] over the whole vocabulary. */
export function logSoftmaxAt(logits: Float32Array, ids: readonly number[]): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  return ids.map((id) => logits[id] - lse);
}

/** [seqs.length][classes]: log p(label word k | sequence) at each sequence's last position. */
export async function labelWordLogProbs(model: GPT2Model, seqs: number[][], labelTokens: readonly number[], signal?: AbortSignal): Promise<number[][]> {
  const logits = await lastPositionLogits(model, seqs, { signal });
  return logits.map((l) => logSoftmaxAt(l, labelTokens));
}

export interface Evaluation {
  accuracy: number;
  perClassAccuracy: number[];
  /** Mean cross-entropy (over the whole vocabulary) of the true label word. */
  loss: number;
  predictions: number[];
}

/** Accuracy of argmax_k (log p_k − bias_k); bias defaults to 0. */
export function scoreEvaluation(logProbs: number[][], labels: readonly number[], numClasses: number, bias?: readonly number[]): Evaluation {
  const hit = new Array<number>(numClasses).fill(0), count = new Array<number>(numClasses).fill(0);
  let loss = 0;
  const predictions = logProbs.map((lp, i) => {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (lp[k] - (bias?.[k] ?? 0) > lp[best] - (bias?.[best] ?? 0)) best = k;
    count[labels[i]]++;
    if (best === labels[i]) hit[labels[i]]++;
    loss -= lp[labels[i]];
    return best;
  });
  const n = labels.length;
  return {
    accuracy: n ? hit.reduce((a, b) => a + b, 0) / n : NaN,
    perClassAccuracy: hit.map((h, k) => (count[k] ? h / count[k] : NaN)),
    loss: n ? loss / n : NaN,
    predictions,
  };
}

export async function evaluateClassifier(model: GPT2Model, data: readonly LabelledSeq[], spec: ClassifierSpec, opts: { bias?: number[]; signal?: AbortSignal } = {}): Promise<Evaluation> {
  const lp = await labelWordLogProbs(model, data.map((d) => classifierInput(d.tokens, spec)), spec.labelTokens, opts.signal);
  return scoreEvaluation(lp, data.map((d) => d.cls), spec.labelTokens.length, opts.bias);
}

/**
 * Calibration of a zero-shot classifier from unlabelled texts: bias_k = mean over the texts of log p(label k),
 * in log space relative to the other label words (a label-word prior, estimated without the texts' labels).
 */
export function labelPrior(logProbs: number[][]): number[] {
  const K = logProbs[0]?.length ?? 0;
  const bias = new Array<number>(K).fill(0);
  for (const lp of logProbs) {
    const m = Math.max(...lp);
    const lse = m + Math.log(lp.reduce((a, v) => a + Math.exp(v - m), 0));
    lp.forEach((v, k) => (bias[k] += (v - lse) / logProbs.length));
  }
  return bias;
}
