/**
 * `npm run bench -- speed --check`: ours vs the reference structure vs our algorithm in PyTorch on the same inputs
 * (target gradient, distance, x-gradient, projection, init): the numbers, not the times.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { GPT2Model, openSafetensors } from "../../ts/advanced";
import { setThreads } from "../../ts/index";
import { makeInputs, PAPER, SHAPE, smallModel, type Inputs, type ModelChoice } from "./models";
import { Ours } from "./ours";
import { FAST, REF, runPy } from "./peers";

/** Deletes a temp folder of ours, unless GRADMM_BENCH_KEEP=1 (to rerun the PyTorch scripts by hand). */
export function removeTmp(tmp: string, log: (s: string) => void): void {
  if (process.env.GRADMM_BENCH_KEEP === "1") log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}

export interface AgreementResult {
  model: string;
  shape: { B: number; L: number; free: number; n: number; prefix: number; V: number; C: number };
  /** max |ΔG| over the full V×C target gradient, and max |G_ref| for scale. */
  target_G: { ours_ref: number; fast_ref: number; ours_fast: number; scale: number };
  /** ref: its float32 G.norm(); ref64: the same G, norm in float64. */
  target_norm: { ours: number; ref: number; ref64: number; fast: number };
  /** ref: the released cos_sim in float32; ref64: the same gradients, cosine reductions in float64. */
  f: { ours: number; ref: number; ref64: number; fast: number; ours_ref: number; fast_ref: number; ours_ref64: number; fast_ref64: number; ours_fast: number };
  dX: { ours_ref: number; fast_ref: number; ours_ref64: number; fast_ref64: number; ours_fast: number; scale: number };
  projection: { positions: number; ours_ref_equal: number; ours_fast_equal: number; fast_ref_equal: number };
  init: { candidates: number; f_ours: number; f_ref: number; f_fast: number; X_ours_ref: number; X_ours_fast: number };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
function countEqual(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let k = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) k++;
  return k;
}

/** G = (1/n) Σ a_i h_iᵀ [V,C] from factors A [n,V], H [n,C]. */
function fullGradient(A: Float32Array, H: Float32Array, n: number, V: number, C: number): Float64Array {
  const G = new Float64Array(V * C);
  for (let i = 0; i < n; i++)
    for (let v = 0; v < V; v++) {
      const a = A[i * V + v] / n;
      const o = v * C;
      for (let c = 0; c < C; c++) G[o + c] += a * H[i * C + c];
    }
  return G;
}

/** Our target's factors, from the same forward build_target runs: a = softmax(logits) − e_y, h at the last positions. */
async function ourFactors(model: GPT2Model, inp: Inputs): Promise<{ A: Float32Array; H: Float32Array }> {
  const { n, T } = inp, V = model.config.vocabSize, C = model.config.channels;
  const mask = new Float32Array(n * T), targets = new Int32Array(n * T);
  for (let i = 0; i < n; i++) {
    mask[i * T + inp.lastPos[i]] = 1;
    targets[i * T + inp.lastPos[i]] = inp.labels[i];
  }
  await model.forward({ tokens: inp.tokens, B: n, T, targets, lossMask: mask });
  const logits = model.logits(), hidden = model.hidden(), rows = model.selectedRows();
  const A = new Float32Array(n * V), H = new Float32Array(n * C);
  for (let i = 0; i < n; i++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[i * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[i * V + v] - mx);
    for (let v = 0; v < V; v++) A[i * V + v] = Math.exp(logits[i * V + v] - mx) / z;
    A[i * V + inp.labels[i]] -= 1;
    H.set(hidden.subarray(rows[i] * C, rows[i] * C + C), i * C);
  }
  return { A, H };
}

/**
 * Ours vs reference vs torch fast on the same inputs: target gradient, distance f(X), df/dX, one projection and a
 * few init candidates. Needs PyTorch (torchPython()).
 */
export async function checkAgreement(opts: { model?: ModelChoice; shape?: { B: number; free: number; n: number; prefix: number }; initCandidates?: number; threads?: number; log?: (s: string) => void } = {}): Promise<AgreementResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const threads = opts.threads ?? os.cpus().length;
  setThreads(threads);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-check-"));
  try {
    const m = opts.model ?? smallModel(tmp, log);
    const shape = opts.shape ?? { B: SHAPE.B, free: SHAPE.free, n: SHAPE.n, prefix: SHAPE.prefix };
    const cands = opts.initCandidates ?? 3;
    const s = PAPER;
    const model0 = GPT2Model.load(m.dir);
    const inp = makeInputs(m, model0, path.join(tmp, "inputs.safetensors"), shape);
    model0.dispose();
    const V = m.config.vocabSize, C = m.config.channels;

    const ours = new Ours(m, inp, s);
    let oursRes: { G: Float64Array; A: Float32Array; H: Float32Array; norm: number; f: number; dX: Float32Array; proj: Int32Array; initF: number; initX: Float32Array };
    try {
      await ours.setup();
      const { A, H } = await ourFactors(ours.model, inp);
      const dX = new Float32Array(inp.X.length);
      const f = await ours.fEval(inp.X, dX);
      const proj = await ours.project();
      const initX = new Float32Array(inp.X.length);
      const initF = await ours.init(cands, initX);
      oursRes = { G: fullGradient(A, H, inp.n, V, C), A, H, norm: ours.target.norm, f, dX, proj, initF, initX };
    } finally {
      ours.dispose();
    }
    log("reference (PyTorch)…");
    const refOut = path.join(tmp, "ref.safetensors"), fastOut = path.join(tmp, "fast.safetensors");
    const ref = runPy(REF, null, m, inp, s, threads, { mode: "check", out: refOut, check_init_candidates: cands });
    log("torch fast…");
    const fast = runPy(FAST, null, m, inp, s, threads, { mode: "check", out: fastOut, check_init_candidates: cands });
    const rr = openSafetensors(refOut), fr = openSafetensors(fastOut);
    try {
      const Gref = rr.readF32("G");
      const fA = fr.readF32("A"), fH = fr.readF32("H");
      const Gfast = fullGradient(fA, fH, inp.n, V, C);
      const dRef = rr.readF32("dX"), dRef64 = rr.readF32("dX64"), dFast = fr.readF32("dX");
      const pRef = rr.readI32("proj"), pFast = fr.readI32("proj");
      return {
        model: m.name,
        shape: { B: inp.B, L: inp.L, free: inp.free, n: inp.n, prefix: inp.prefix.length, V, C },
        target_G: { ours_ref: maxAbsDiff(oursRes.G, Gref), fast_ref: maxAbsDiff(Gfast, Gref), ours_fast: maxAbsDiff(oursRes.G, Gfast), scale: maxAbs(Gref) },
        target_norm: { ours: oursRes.norm, ref: ref.target_norm!, ref64: ref.target_norm64!, fast: fast.target_norm! },
        f: {
          ours: oursRes.f, ref: ref.f!, ref64: ref.f64!, fast: fast.f!,
          ours_ref: Math.abs(oursRes.f - ref.f!), fast_ref: Math.abs(fast.f! - ref.f!),
          ours_ref64: Math.abs(oursRes.f - ref.f64!), fast_ref64: Math.abs(fast.f! - ref.f64!), ours_fast: Math.abs(oursRes.f - fast.f!),
        },
        dX: { ours_ref: maxAbsDiff(oursRes.dX, dRef), fast_ref: maxAbsDiff(dFast, dRef), ours_ref64: maxAbsDiff(oursRes.dX, dRef64), fast_ref64: maxAbsDiff(dFast, dRef64), ours_fast: maxAbsDiff(oursRes.dX, dFast), scale: maxAbs(dRef) },
        projection: { positions: pRef.length, ours_ref_equal: countEqual(oursRes.proj, pRef), ours_fast_equal: countEqual(oursRes.proj, pFast), fast_ref_equal: countEqual(pFast, pRef) },
        init: { candidates: cands, f_ours: oursRes.initF, f_ref: ref.init_f!, f_fast: fast.init_f!, X_ours_ref: maxAbsDiff(oursRes.initX, rr.readF32("init_X")), X_ours_fast: maxAbsDiff(oursRes.initX, fr.readF32("init_X")) },
      };
    } finally {
      rr.close();
      fr.close();
    }
  } finally {
    removeTmp(tmp, log);
  }
}

export function formatAgreement(a: AgreementResult): string {
  const e = (x: number) => x.toExponential(2);
  return [
    `agreement on ${a.model} (V=${a.shape.V}, C=${a.shape.C}; B=${a.shape.B}, L=${a.shape.L}, n=${a.shape.n}, prefix ${a.shape.prefix}): max |difference|`,
    "",
    "| quantity | ours vs ref | fast vs ref | ours vs fast | scale |",
    "| --- | --- | --- | --- | --- |",
    `| target gradient G* (V×C) | ${e(a.target_G.ours_ref)} | ${e(a.target_G.fast_ref)} | ${e(a.target_G.ours_fast)} | max |G*| ${e(a.target_G.scale)} |`,
    `| ‖G*‖ (ref: torch float32 norm) | ${e(Math.abs(a.target_norm.ours - a.target_norm.ref))} | ${e(Math.abs(a.target_norm.fast - a.target_norm.ref))} | ${e(Math.abs(a.target_norm.ours - a.target_norm.fast))} | ${e(a.target_norm.ref64)} |`,
    `| ‖G*‖ (ref: same G, float64 norm) | ${e(Math.abs(a.target_norm.ours - a.target_norm.ref64))} | ${e(Math.abs(a.target_norm.fast - a.target_norm.ref64))} | | |`,
    `| distance f(X) = 1 − cos (ref: released cos_sim, float32) | ${e(a.f.ours_ref)} | ${e(a.f.fast_ref)} | ${e(a.f.ours_fast)} | f = ${a.f.ref64.toFixed(6)} |`,
    `| distance f(X) (ref: cosine reductions in float64) | ${e(a.f.ours_ref64)} | ${e(a.f.fast_ref64)} | | |`,
    `| x-gradient df/dX (ref: float32 cosine) | ${e(a.dX.ours_ref)} | ${e(a.dX.fast_ref)} | ${e(a.dX.ours_fast)} | max |df/dX| ${e(a.dX.scale)} |`,
    `| x-gradient df/dX (ref: float64 cosine) | ${e(a.dX.ours_ref64)} | ${e(a.dX.fast_ref64)} | | |`,
    `| projection: equal tokens | ${a.projection.ours_ref_equal}/${a.projection.positions} | ${a.projection.fast_ref_equal}/${a.projection.positions} | ${a.projection.ours_fast_equal}/${a.projection.positions} | |`,
    `| init (${a.init.candidates} candidates): best f | ${e(Math.abs(a.init.f_ours - a.init.f_ref))} | ${e(Math.abs(a.init.f_fast - a.init.f_ref))} | ${e(Math.abs(a.init.f_ours - a.init.f_fast))} | f = ${a.init.f_ref.toFixed(6)} |`,
    `| init: chosen X | ${e(a.init.X_ours_ref)} | – | ${e(a.init.X_ours_fast)} | |`,
  ].join("\n");
}
