/** Our side of `npm run bench -- speed`: the native API on the benchmark's inputs, one stage at a time. */
import { runBatch, type BatchSettings, GPT2Model, native, type NativeMatchTarget } from "../../ts/advanced";
import { embeddingName, type Inputs, type ModelChoice, type Settings } from "./models";

export function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function timeIt(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return seconds(t);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class Ours {
  readonly model: GPT2Model;
  target!: NativeMatchTarget;
  prefix!: ReturnType<GPT2Model["createKVCache"]>;
  prefixLogits!: Float32Array;
  readonly templateEmbeds: Float32Array;

  constructor(
    readonly m: ModelChoice,
    readonly inp: Inputs,
    readonly s: Settings,
  ) {
    this.model = GPT2Model.load(m.dir);
    const C = m.config.channels;
    const wte = this.model.tensor(embeddingName(m.config));
    this.templateEmbeds = new Float32Array(inp.template.length * C);
    inp.template.forEach((t, j) => this.templateEmbeds.set(wte.subarray(t * C, (t + 1) * C), j * C));
  }

  async setup(): Promise<void> {
    await this.buildTarget();
    this.prefix = this.model.createKVCache(1, this.inp.prefix.length);
    this.prefixLogits = await this.model.decode(this.prefix, { tokens: this.inp.prefix, T: this.inp.prefix.length });
  }

  async buildTarget(): Promise<void> {
    const i = this.inp;
    this.target = await this.model.native.buildTarget({ tokens: i.tokens, n: i.n, T: i.T, lastPos: i.lastPos, labels: i.labels });
  }

  fEval(X = this.inp.X, dX?: Float32Array): Promise<number> {
    const i = this.inp;
    return this.model.native.matchLoss(this.target, { X, B: i.B, L: i.L, label: i.label, dX });
  }

  /** A batch state of this input (binding/engine/batch.h). */
  newBatch() {
    const i = this.inp;
    return new (native().Batch)(this.model.native, this.target, { B: i.B, L: i.L, freeLen: i.free, label: i.label, templateTokens: Int32Array.from(i.template) });
  }

  /** xUpdate with `steps` Adam steps from inp.X (z = inp.X, λ = 0): the call's time. */
  async xUpdate(steps: number): Promise<number> {
    const batch = this.newBatch();
    batch.write("x", this.inp.X);
    batch.write("z", this.inp.X);
    const t = process.hrtime.bigint();
    await batch.xUpdate({ steps, rho: this.s.rho, lr: this.s.lr, maxGradNorm: this.s.max_grad_norm });
    return seconds(t);
  }

  async project(U = this.inp.X): Promise<Int32Array> {
    const i = this.inp;
    const outTokens = new Int32Array(i.B * i.free);
    await this.model.native.project({ U, B: i.B, L: i.L, freeLen: i.free, allowed: i.allowed, topk: this.s.topk, prefix: this.prefix.handle, prefixLogits: this.prefixLogits, outTokens });
    return outTokens;
  }

  /** The best of `candidates` init batches: its f, and its x into X when given. */
  async init(candidates: number, X?: Float32Array): Promise<number> {
    const batch = this.newBatch();
    const f = await batch.init({ candidates, seed: this.s.seed, tokenNorm: this.s.init_token_norm });
    if (X) X.set(batch.read("x"));
    return f;
  }

  async batch(s: Settings, log: (m: string) => void): Promise<{ seconds: number; initLoss: number; bestXLoss: number; decodedLoss: number }> {
    const i = this.inp;
    const settings: BatchSettings = { batchSize: i.B, freeLen: i.free, outerSteps: s.outer, innerSteps: s.inner, lr: s.lr, maxGradNorm: s.max_grad_norm, rho: s.rho, topK: s.topk, initCandidates: s.init_candidates, initTokenNorm: s.init_token_norm, allowed: i.allowed, seed: s.seed };
    const t = process.hrtime.bigint();
    const r = await runBatch(this.model, { labelToken: i.label, templateTokens: Array.from(i.template), leadTokens: [], prefix: this.prefix, prefixLogits: this.prefixLogits, target: this.target }, settings, {
      onProgress: (p) => log(`ours batch: outer ${p.outer}/${p.outerSteps} x ${p.xLoss.toFixed(4)} z ${p.zLoss.toFixed(4)}`),
    });
    return { seconds: seconds(t), initLoss: r.initLoss, bestXLoss: r.bestXLoss, decodedLoss: r.decodedLoss };
  }

  dispose(): void {
    this.model.dispose();
  }
}
