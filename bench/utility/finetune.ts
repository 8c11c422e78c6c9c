/**
 * Fine-tuning the language model as a label-word classifier: loss = cross-entropy of the label word's first token
 * at the last position of text + template (whole vocabulary), AdamW, constant lr, fixed steps, minibatches from a
 * seeded shuffle. Each lr of the grid starts from the pretrained weights (a fresh model, so a fresh Adam state);
 * the dev slice picks the (lr, checkpoint) pair; the caller evaluates test once, on the chosen weights.
 */
import { type GPT2Model, mulberry32, shuffled } from "../../ts/advanced";
import { classifierInput, evaluateClassifier, type ClassifierSpec, type LabelledSeq } from "./scorer";

export interface FinetuneOptions {
  lrs: number[];
  steps: number;
  batchSize: number;
  evalEvery: number;
  weightDecay: number;
  maxGradNorm: number;
  seed: number;
  signal?: AbortSignal;
  /** After every optimiser step (for progress). */
  onStep?: (info: { lr: number; step: number; loss: number }) => void;
}

export interface DevPoint {
  lr: number;
  step: number;
  devAccuracy: number;
  devLoss: number;
}

export interface FinetuneResult {
  best: DevPoint;
  /** Weights of the best checkpoint (a copy of model.params). */
  params: Float32Array;
  /** Every dev evaluation, in order. */
  curve: DevPoint[];
  /** Training loss of every step, per lr. */
  trainLoss: Record<string, number[]>;
}

/** One AdamW step on a minibatch; returns its mean loss. */
export async function classifierStep(model: GPT2Model, batch: readonly LabelledSeq[], spec: ClassifierSpec, adam: { lr: number; step: number; weightDecay: number; maxGradNorm: number }, signal?: AbortSignal): Promise<number> {
  const seqs = batch.map((d) => classifierInput(d.tokens, spec));
  const B = seqs.length, T = Math.max(...seqs.map((s) => s.length));
  const tokens = new Int32Array(B * T), targets = new Int32Array(B * T), lossMask = new Float32Array(B * T);
  seqs.forEach((s, b) => {
    tokens.set(s, b * T);
    targets[b * T + s.length - 1] = spec.labelTokens[batch[b].cls];
    lossMask[b * T + s.length - 1] = 1;
  });
  model.zeroGrads();
  const loss = await model.forward({ tokens, targets, lossMask, B, T, signal });
  await model.backward({ signal });
  await model.adamwStep({ lr: adam.lr, step: adam.step, weightDecay: adam.weightDecay, maxGradNorm: adam.maxGradNorm });
  return loss;
}

/** Better dev point: higher accuracy, then lower loss (small dev slices tie often). */
function better(a: DevPoint, b: DevPoint | null): boolean {
  return !b || a.devAccuracy > b.devAccuracy || (a.devAccuracy === b.devAccuracy && a.devLoss < b.devLoss);
}

export async function finetuneClassifier(
  freshModel: () => GPT2Model,
  train: readonly LabelledSeq[],
  dev: readonly LabelledSeq[],
  spec: ClassifierSpec,
  o: FinetuneOptions,
): Promise<FinetuneResult> {
  if (!train.length) throw new RangeError("finetuneClassifier: empty training set");
  let best: DevPoint | null = null;
  let params: Float32Array | null = null;
  const curve: DevPoint[] = [];
  const trainLoss: Record<string, number[]> = {};
  for (const lr of o.lrs) {
    const model = freshModel();
    try {
      const rng = mulberry32(o.seed);
      let order: LabelledSeq[] = [];
      const losses: number[] = (trainLoss[String(lr)] = []);
      for (let step = 1; step <= o.steps; step++) {
        const batch: LabelledSeq[] = [];
        while (batch.length < Math.min(o.batchSize, train.length)) {
          if (!order.length) order = shuffled(train, rng);
          batch.push(order.pop()!);
        }
        const loss = await classifierStep(model, batch, spec, { lr, step, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm }, o.signal);
        losses.push(loss);
        o.onStep?.({ lr, step, loss });
        if (step % o.evalEvery === 0 || step === o.steps) {
          const ev = await evaluateClassifier(model, dev, spec, { signal: o.signal });
          const point = { lr, step, devAccuracy: ev.accuracy, devLoss: ev.loss };
          curve.push(point);
          if (better(point, best)) {
            best = point;
            params = model.params.slice();
          }
        }
      }
    } finally {
      model.dispose();
    }
  }
  return { best: best!, params: params!, curve, trainLoss };
}
