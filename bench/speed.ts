/**
 * `npm run bench -- speed`: our GRADMM (native engine) against its peers, same model, same machine, same inputs,
 * one stage at a time (target, init, x-update step, projection) and the batch at the paper's settings.
 *
 *   ours        the native API (model.native.buildTarget / matchLoss, Batch.xUpdate / init, project, runBatch)
 *   official    the paper's released code, unchanged (--model runs with --official DIR; bench/speed/peers.ts)
 *   reference   bench/reference/gradmm_ref.py: the released code's computation structure in PyTorch (the stand-in
 *               for the official code on the default models; on --model runs only with --reference)
 *   torch2      bench/reference/gradmm_torch_fast.py: our algorithm the best way PyTorch allows, on PyTorch 2.x
 *   torch1      the same script on PyTorch 1.x (Debian's 1.13), where it is installed
 *
 * Every PyTorch side runs in PyTorch's strongest environment (torchEnv) on the weights we load, written as a float32
 * Hugging Face folder, and on the inputs we dump. Repetitions interleave the sides; each stage reports the median.
 * `--check` compares the numbers instead of the times (bench/speed/agreement.ts).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { GPT2Model, native, sgemmKernel } from "../ts/advanced";
import { getThreads, setThreads } from "../ts/index";
import { removeTmp } from "./speed/agreement";
import { gpt2Model, makeInputs, modelFromSource, PAPER, SHAPE, smallModel, xUpdateFlops, type ModelChoice, type Settings } from "./speed/models";
import { median, Ours, timeIt } from "./speed/ours";
import { FAST, officialSetup, REF, runOfficial, runPy, type OfficialSetup, type OfficialTimes, type PyResult } from "./speed/peers";
import { torch1Available, torchAvailable } from "./torch_env";

export { checkAgreement, formatAgreement, type AgreementResult } from "./speed/agreement";
export { modelFromFolder, modelFromSource, PAPER, SHAPE, xUpdateFlops } from "./speed/models";

export type StageName = "target" | "init" | "x_update" | "projection" | "batch";
export const STAGES: StageName[] = ["target", "init", "x_update", "projection", "batch"];
export type Side = "ours" | "official" | "ref" | "torch2" | "torch1";
const PEERS: Exclude<Side, "ours">[] = ["official", "ref", "torch2", "torch1"];
const PEER_LABEL: Record<Exclude<Side, "ours">, string> = { official: "official code", ref: "reference (PyTorch)", torch2: "ours in PyTorch 2", torch1: "ours in PyTorch 1" };

export interface StageResult {
  ours_s: number;
  /** The paper's released code, unchanged (null: not run). */
  official_s: number | null;
  /** bench/reference/gradmm_ref.py, the released code's structure (null: not run). */
  ref_s: number | null;
  /** Our algorithm in PyTorch 2.x (null: not run). */
  torch2_s: number | null;
  /** Our algorithm in PyTorch 1.x (null: not run). */
  torch1_s: number | null;
  /** peer_s / ours_s for each peer that ran (above 1: ours is faster). */
  ratio: Partial<Record<Exclude<Side, "ours">, number>>;
  /** How each figure was obtained ("measured", "measured on k candidates, × …", "extrapolated: …"). */
  how: Partial<Record<Side, string>>;
}

export interface ModelSpeed {
  model: string;
  describe: string;
  config: GPT2Model["config"];
  shape: { B: number; L: number; free: number; template: number; n: number; T: number; prefix: number };
  settings: Settings;
  repetitions: number;
  sides: Side[];
  stages: Record<StageName, StageResult>;
  /** f evaluation (forward + distance, no gradient): used by the batch extrapolation. */
  f_eval: Partial<Record<Side, number>>;
  x_update_flops: number;
  x_update_gflops: number;
  /** ours' batch extrapolated from its own stage times, beside the measured one (checks the extrapolation). */
  ours_batch_extrapolated_s: number;
  batch_details: Record<string, unknown>;
  official?: OfficialTimes;
  notes: string[];
}

export interface SpeedResult {
  machine: string;
  /** The x86 SIMD flags of /proc/cpuinfo (avx2, avx512f, avx512_bf16, amx…): what every figure here ran on. */
  cpu_flags: string[];
  threads: number;
  node: string;
  sgemm_kernel: string;
  torch_version: string | null;
  torch_blas: string | null;
  /** Whether the PyTorch 2 side ran torch.compile'd (--torch-compile). */
  torch2_compiled: boolean;
  torch1_version: string | null;
  torch1_blas: string | null;
  official_torch_version: string | null;
  torch_env: string;
  /** os.loadavg() [1, 5, 15 min] at the start and the end: the machine is shared, read the times with it. */
  load_average: { start: number[]; end: number[] };
  sgemm_peak_gflops: number;
  x_update_gflops: number;
  x_update_peak_fraction: number;
  /** Peak resident memory of this benchmark process (it also wrote the PyTorch sides' folders), MB. */
  peak_rss_mb: number;
  /** The first model's float32 weights, MB. */
  weights_mb: number;
  model: string;
  stages: Record<StageName, StageResult>;
  models: ModelSpeed[];
  profile?: { symbol: string; percent: number }[];
  notes: string[];
}

export function cpuFlags(): string[] {
  try {
    const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    return (line?.split(":")[1] ?? "").trim().split(/\s+/).filter((f) => /^(avx|fma|f16c|amx|sse4)/.test(f)).sort();
  } catch {
    return [];
  }
}

interface StagePlan {
  reps: number;
  targetReps: number;
  fEvalReps: number;
  xSteps: number;
  projReps: { ours: number; ref: number; torch: number };
  /** Time the reference's projection in the first repetition only (minutes each on GPT-2 124M). */
  refProjectionOnce?: boolean;
  initCandidates: { ours: number; ref: number; torch: number; official: number };
  /** Adam steps the official run times (its closure inside each). */
  officialInner: number;
  /** measure: ours' and torch2's batch run in full; extrapolate: every batch from its stage times. */
  batch: "measure" | "extrapolate";
  batchSettings: Settings;
}

/** Batch time from stage times: init + (outer+1) projections and f evaluations + outer × (inner steps + 1 f eval). */
function extrapolateBatch(s: Settings, st: { initPerCand: number; proj: number; f: number; step: number }): number {
  return st.initPerCand * s.init_candidates + (s.outer + 1) * (st.proj + st.f) + s.outer * (s.inner * st.step + st.f);
}

interface Peers {
  sides: Side[];
  /** torch.compile the PyTorch 2 side's distance (forward and backward). */
  torch2Compile: boolean;
  torch2: string | null;
  torch1: string | null;
  official: OfficialSetup | null;
}

async function speedOneModel(m: ModelChoice, plan: StagePlan, peers: Peers, threads: number, tmp: string, log: (s: string) => void): Promise<ModelSpeed & { torch?: PyResult; torch1?: PyResult }> {
  const s = PAPER;
  const loader = GPT2Model.load(m.dir);
  const inp = makeInputs(m, loader, path.join(tmp, `${m.name}-inputs.safetensors`), { B: SHAPE.B, free: SHAPE.free, n: SHAPE.n, prefix: SHAPE.prefix });
  loader.dispose();
  const notes: string[] = [];
  if (inp.prefix.length < SHAPE.prefix) notes.push(`prefix cut to ${inp.prefix.length} tokens: the model's context is ${m.config.maxSeqLen} (prefix + ${inp.free} free tokens must fit)`);
  if (inp.free < SHAPE.free) notes.push(`free tokens cut to ${inp.free} by the model's context`);
  const ours = new Ours(m, inp, s);
  await ours.setup();
  await ours.fEval(); // warm-up

  const T: Record<Side, Record<string, number[]>> = { ours: {}, official: {}, ref: {}, torch2: {}, torch1: {} };
  const push = (side: Side, k: string, v: number[]) => (T[side][k] ??= []).push(...v);
  const pyStages = (side: "ref" | "torch2" | "torch1", rep: number) => ({
    target: { reps: plan.targetReps },
    f_eval: { reps: plan.fEvalReps },
    x_update: { reps: 1, steps: plan.xSteps },
    ...(side === "ref" && plan.refProjectionOnce && rep > 0 ? {} : { projection: { reps: side === "ref" ? plan.projReps.ref : plan.projReps.torch } }),
    init: { reps: 1, candidates: side === "ref" ? plan.initCandidates.ref : plan.initCandidates.torch },
  });
  const info: { torch?: PyResult; torch1?: PyResult } = {};
  for (let r = 0; r < plan.reps; r++) {
    log(`[${m.name}] repetition ${r + 1}/${plan.reps}: ours`);
    for (let k = 0; k < plan.targetReps; k++) push("ours", "target", [await timeIt(() => ours.buildTarget())]);
    const fe: number[] = [];
    for (let k = 0; k < plan.fEvalReps; k++) fe.push(await timeIt(() => ours.fEval()));
    push("ours", "f_eval", fe);
    const tx = await ours.xUpdate(plan.xSteps);
    push("ours", "x_update", [Math.max(tx - median(fe), 0) / plan.xSteps]); // xUpdate ends with one f evaluation
    for (let k = 0; k < plan.projReps.ours; k++) push("ours", "projection", [await timeIt(() => ours.project())]);
    push("ours", "init", [(await timeIt(() => ours.init(plan.initCandidates.ours))) / plan.initCandidates.ours]);
    for (const side of ["ref", "torch2", "torch1"] as const) {
      if (!peers.sides.includes(side)) continue;
      log(`[${m.name}] repetition ${r + 1}/${plan.reps}: ${PEER_LABEL[side]}`);
      const res = runPy(side === "ref" ? REF : FAST, side === "torch1" ? peers.torch1 : peers.torch2, m, inp, s, threads, { mode: "bench", stages: pyStages(side, r), compile: side === "torch2" && peers.torch2Compile });
      if (side === "torch2") info.torch = res;
      if (side === "torch1") info.torch1 = res;
      for (const [k, v] of Object.entries(res.times ?? {})) push(side, k, v);
    }
  }
  let official: OfficialTimes | undefined;
  if (peers.official && peers.sides.includes("official")) {
    official = runOfficial(peers.official, m, inp, s, threads, tmp, { initCandidates: plan.initCandidates.official, inner: plan.officialInner }, log);
    push("official", "target", [official.target_s]);
    push("official", "init", [official.init_per_candidate_s]);
    push("official", "x_update", [official.x_step_s]);
    push("official", "projection", [official.projection_s]);
  }
  const ran = (side: Side) => side === "ours" || peers.sides.includes(side);
  const med = (side: Side, k: string) => (ran(side) && T[side][k]?.length ? median(T[side][k]) : null);
  const bs = plan.batchSettings;
  const counts = `${bs.init_candidates} init candidates + ${bs.outer + 1} projections + ${2 * bs.outer + 1} f evaluations + ${bs.outer}×${bs.inner} x-steps`;
  const initHow = (k: number) => (k === s.init_candidates ? "measured" : `measured on ${k} candidates, × ${s.init_candidates / k}`);
  const candidatesOf = (side: Side) => (side === "ours" ? plan.initCandidates.ours : side === "ref" ? plan.initCandidates.ref : side === "official" ? plan.initCandidates.official : plan.initCandidates.torch);

  const stage = (k: StageName, value: (side: Side) => number | null, how: (side: Side) => string): StageResult => {
    const v = Object.fromEntries((["ours", ...PEERS] as Side[]).map((side) => [side, ran(side) ? value(side) : null])) as Record<Side, number | null>;
    const ratio: StageResult["ratio"] = {};
    for (const p of PEERS) if (v[p] !== null) ratio[p] = v[p]! / v.ours!;
    const hows: StageResult["how"] = {};
    for (const side of ["ours", ...PEERS] as Side[]) if (v[side] !== null) hows[side] = how(side);
    void k;
    return { ours_s: v.ours!, official_s: v.official, ref_s: v.ref, torch2_s: v.torch2, torch1_s: v.torch1, ratio, how: hows };
  };
  const fOf = (side: Side) => (side === "official" ? 0 : med(side, "f_eval"));
  const extra = (side: Side) => {
    const initPerCand = med(side, "init"), proj = med(side, "projection"), f = fOf(side), step = med(side, "x_update");
    return initPerCand === null || proj === null || f === null || step === null ? null : extrapolateBatch(bs, { initPerCand, proj, f, step });
  };
  const stages = {} as Record<StageName, StageResult>;
  stages.target = stage("target", (side) => med(side, "target"), (side) => (side === "official" ? `its compute_average_grads per example × n=${inp.n}` : "measured"));
  stages.init = stage("init", (side) => (med(side, "init") === null ? null : med(side, "init")! * s.init_candidates), (side) => initHow(candidatesOf(side)));
  stages.x_update = stage("x_update", (side) => med(side, "x_update"), (side) =>
    side === "ours" ? `mean of ${plan.xSteps} steps (one xUpdate call minus its closing f evaluation)` : side === "official" ? `median of ${plan.officialInner} torch.optim.Adam.step calls (its closure inside)` : `mean of ${plan.xSteps} steps`,
  );
  stages.projection = stage("projection", (side) => med(side, "projection"), (side) => (side === "ref" && plan.refProjectionOnce && plan.reps > 1 ? "measured once (first repetition)" : side === "official" ? "its first get_topk_closest_tokens call" : "measured"));
  const fEval: ModelSpeed["f_eval"] = {};
  for (const side of ["ours", "ref", "torch2", "torch1"] as Side[]) if (med(side, "f_eval") !== null) fEval[side] = med(side, "f_eval")!;

  const oursExtra = extra("ours")!;
  const batchDetails: Record<string, unknown> = { settings: bs, counts };
  const extrapolated = `extrapolated from its measured stage times: ${counts}`;
  if (plan.batch === "measure") {
    log(`[${m.name}] batch (${bs.outer} outer × ${bs.inner} inner, ${bs.init_candidates} init candidates): ours`);
    const ob = await ours.batch(bs, log);
    batchDetails.ours = ob;
    let fb: PyResult | null = null;
    if (peers.sides.includes("torch2")) {
      log(`[${m.name}] batch: ours in PyTorch 2`);
      fb = runPy(FAST, peers.torch2, m, inp, bs, threads, { mode: "batch", verbose: true });
      batchDetails.torch2 = { seconds: fb.batch_s, initLoss: fb.init_f, bestXLoss: fb.best_x_f, decodedLoss: fb.decoded_f };
    }
    stages.batch = stage("batch", (side) => (side === "ours" ? ob.seconds : side === "torch2" ? fb?.batch_s ?? null : extra(side)), (side) => (side === "ours" ? "measured (runBatch)" : side === "torch2" ? "measured (its run_batch)" : extrapolated));
  } else {
    stages.batch = stage("batch", (side) => extra(side), (side) => (side === "official" ? `${extrapolated} (its f evaluations not counted)` : extrapolated));
  }
  const flops = xUpdateFlops(m.config, inp.B, inp.L);
  ours.dispose();
  if (official) notes.push(...official.notes);
  return {
    model: m.name,
    describe: m.describe,
    config: m.config,
    shape: { B: inp.B, L: inp.L, free: inp.free, template: inp.template.length, n: inp.n, T: inp.T, prefix: inp.prefix.length },
    settings: bs,
    repetitions: plan.reps,
    sides: ["ours", ...peers.sides],
    stages,
    f_eval: fEval,
    x_update_flops: flops,
    x_update_gflops: flops / stages.x_update.ours_s / 1e9,
    ours_batch_extrapolated_s: oursExtra,
    batch_details: batchDetails,
    official,
    notes,
    ...info,
  };
}

async function sgemmPeak(): Promise<number> {
  const n = 1024;
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)), b = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n);
  native().sgemm(false, false, n, n, n, a, n, b, n, c, n, false);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) times.push(await timeIt(() => native().sgemm(false, false, n, n, n, a, n, b, n, c, n, false)));
  return (2 * n ** 3) / median(times) / 1e9;
}

export interface SpeedOptions {
  quick?: boolean;
  threads?: number;
  /** Which default models (default: small and gpt2; with quick: small). Ignored when `model` is given. */
  models?: ("small" | "gpt2")[];
  /** Any model loadModel() takes (a known name, a GGUF file, an HF folder): the benchmark on it alone. */
  model?: string;
  /** The official checkout's gradmm/ folder (else GRADMM_OFFICIAL); --model runs only. */
  official?: string;
  /** torch.compile the PyTorch 2 side's distance and x-gradient (inductor; its compilation is not timed). */
  torchCompile?: boolean;
  /** Also run bench/reference/gradmm_ref.py on a --model run (slow: full V×C gradients, no KV cache). */
  reference?: boolean;
  profile?: boolean;
  log?: (s: string) => void;
}

export async function benchSpeed(opts: SpeedOptions = {}): Promise<SpeedResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const threads = opts.threads ?? os.cpus().length;
  setThreads(threads);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-speed-"));
  const loadStart = os.loadavg();
  const t2 = torchAvailable();
  const t1 = torch1Available();
  const notes: string[] = [];
  if (!t2) notes.push("no Python with PyTorch 2 (GRADMM_TORCH_PYTHON, PATH): its sides did not run (pip install torch==2.13.0)");
  if (!t1) notes.push("no PyTorch 1.x (GRADMM_TORCH1_PYTHON, /usr/bin/python3): its side did not run (apt-get install python3-torch libopenblas0-pthread)");
  let official: OfficialSetup | null = null;
  if (opts.model) {
    const o = officialSetup(opts.official);
    if ("missing" in o) notes.push(`the official code did not run: ${o.missing}`);
    else official = o;
  }
  for (const n of notes) log(n);
  try {
    const sgemm = await sgemmPeak();
    log(`sgemm 1024³: ${sgemm.toFixed(1)} GFLOP/s`);
    const models: (ModelSpeed & { torch?: PyResult; torch1?: PyResult })[] = [];
    const quickBatch: Settings = { ...PAPER, outer: 2, inner: 5, init_candidates: 20 };
    const peersFor = (withRef: boolean, withOfficial: boolean): Peers => ({
      sides: [...(withOfficial && official ? (["official"] as Side[]) : []), ...(withRef && t2 ? (["ref"] as Side[]) : []), ...(t2 ? (["torch2"] as Side[]) : []), ...(t1 ? (["torch1"] as Side[]) : [])],
      torch2: t2?.python ?? null,
      torch2Compile: !!opts.torchCompile,
      torch1: t1?.python ?? null,
      official,
    });
    if (opts.model) {
      const m = modelFromSource(opts.model, tmp, log);
      models.push(
        await speedOneModel(
          m,
          opts.quick
            ? { reps: 1, targetReps: 1, fEvalReps: 1, xSteps: 1, projReps: { ours: 1, ref: 1, torch: 1 }, initCandidates: { ours: 2, ref: 1, torch: 2, official: 1 }, officialInner: 1, batch: "extrapolate", batchSettings: PAPER }
            : { reps: 2, targetReps: 1, fEvalReps: 2, xSteps: 3, projReps: { ours: 2, ref: 1, torch: 1 }, refProjectionOnce: true, initCandidates: { ours: 10, ref: 2, torch: 5, official: 3 }, officialInner: 3, batch: "extrapolate", batchSettings: PAPER },
          peersFor(!!opts.reference, true),
          threads,
          tmp,
          log,
        ),
      );
    } else {
      const which = opts.models ?? (opts.quick ? ["small"] : ["small", "gpt2"]);
      if (which.includes("small")) {
        const small = smallModel(tmp, log);
        models.push(
          await speedOneModel(
            small,
            opts.quick
              ? { reps: 1, targetReps: 2, fEvalReps: 2, xSteps: 3, projReps: { ours: 2, ref: 1, torch: 2 }, initCandidates: { ours: 20, ref: 20, torch: 20, official: 0 }, officialInner: 0, batch: "measure", batchSettings: quickBatch }
              : { reps: 3, targetReps: 3, fEvalReps: 3, xSteps: 10, projReps: { ours: 3, ref: 1, torch: 3 }, initCandidates: { ours: 100, ref: 50, torch: 100, official: 0 }, officialInner: 0, batch: "measure", batchSettings: PAPER },
            peersFor(true, false),
            threads,
            tmp,
            log,
          ),
        );
      }
      if (which.includes("gpt2")) {
        log("creating the GPT-2 124M-shaped random model…");
        const big = gpt2Model(tmp);
        models.push(
          await speedOneModel(
            big,
            opts.quick
              ? { reps: 1, targetReps: 1, fEvalReps: 1, xSteps: 1, projReps: { ours: 1, ref: 1, torch: 1 }, initCandidates: { ours: 2, ref: 2, torch: 2, official: 0 }, officialInner: 0, batch: "extrapolate", batchSettings: PAPER }
              : { reps: 2, targetReps: 1, fEvalReps: 2, xSteps: 3, projReps: { ours: 1, ref: 1, torch: 1 }, refProjectionOnce: true, initCandidates: { ours: 4, ref: 3, torch: 4, official: 0 }, officialInner: 0, batch: "extrapolate", batchSettings: PAPER },
            peersFor(true, false),
            threads,
            tmp,
            log,
          ),
        );
        fs.rmSync(big.dir, { recursive: true, force: true });
      }
    }
    if (!models.length) throw new RangeError("no model selected");
    const profile = opts.profile ? await profileXUpdate(models[0].model, tmp, log) : undefined;
    const primary = models[0];
    const torch = models.find((m) => m.torch)?.torch;
    const torch1 = models.find((m) => m.torch1)?.torch1;
    for (const m of models) {
      delete m.torch;
      delete m.torch1;
    }
    const c = primary.config;
    const params = c.architecture === "llama" ? llamaParams(c) : c.vocabSize * c.channels + c.maxSeqLen * c.channels + c.numLayers * 12 * c.channels * c.channels;
    return {
      machine: `${os.cpus()[0]?.model ?? "cpu"} × ${os.cpus().length}`,
      cpu_flags: cpuFlags(),
      threads: getThreads(),
      node: process.version,
      sgemm_kernel: sgemmKernel(),
      torch_version: torch?.torch_version ?? null,
      torch_blas: torch?.torch_blas ?? null,
      torch2_compiled: !!opts.torchCompile && !!torch,
      torch1_version: torch1?.torch_version ?? null,
      torch1_blas: torch1?.torch_blas ?? null,
      official_torch_version: primary.official?.torch_version ?? null,
      torch_env: "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset, OMP_WAIT_POLICY=PASSIVE, MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=100000000000",
      load_average: { start: loadStart, end: os.loadavg() },
      sgemm_peak_gflops: sgemm,
      x_update_gflops: primary.x_update_gflops,
      x_update_peak_fraction: primary.x_update_gflops / sgemm,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      weights_mb: (params * 4) / 1e6,
      model: primary.model,
      stages: primary.stages,
      models,
      profile,
      notes: [
        "ratio.<peer> = peer_s / ours_s (above 1: ours is faster)",
        "batch figures marked extrapolated are that side's measured stage times × the batch's counts of each stage",
        ...(opts.quick ? [`--quick: fewer repetitions${opts.model ? "" : `, batch at reduced settings (${quickBatch.outer} outer × ${quickBatch.inner} inner, ${quickBatch.init_candidates} init candidates)`}`] : []),
        ...notes,
      ],
    };
  } finally {
    removeTmp(tmp, log);
  }
}

function llamaParams(c: Extract<GPT2Model["config"], { architecture: "llama" }>): number {
  const C = c.channels, hd = c.headDim ?? C / c.numHeads, q = c.numHeads * hd, kv = (c.numKvHeads ?? c.numHeads) * hd;
  const layer = C * q + 2 * C * kv + q * C + 3 * C * c.intermediateSize + 2 * C;
  return c.vocabSize * C * (c.tieWordEmbeddings === false ? 2 : 1) + c.numLayers * layer + C;
}

/** Optional: a perf profile of our x-update (top symbols), attaching `perf record` to this process. */
async function profileXUpdate(name: string, tmp: string, log: (s: string) => void): Promise<{ symbol: string; percent: number }[] | undefined> {
  const { profileOurXUpdate } = await import("./speed/profile");
  return profileOurXUpdate(name === "default" ? smallModel(tmp, log) : modelFromSource(name, tmp, log), tmp, log);
}

const fmtS = (x: number | null | undefined) => (x === null || x === undefined ? "–" : x >= 100 ? `${x.toFixed(0)} s` : x >= 1 ? `${x.toFixed(2)} s` : `${(x * 1000).toFixed(1)} ms`);
const fmtR = (x: number | null | undefined) => (x === null || x === undefined ? "–" : `${x.toFixed(x >= 10 ? 0 : 1)}×`);

const STAGE_LABEL: Record<StageName, string> = {
  target: "target gradient (n=25)",
  init: "init (500 candidates)",
  x_update: "one inner x-update step",
  projection: "one projection",
  batch: "one ADMM batch (30×50)",
};

export function formatSpeedTable(r: SpeedResult): string {
  const out: string[] = [
    `machine: ${r.machine}, threads: ${r.threads}, node ${r.node}, sgemm kernel: ${r.sgemm_kernel}`,
    `CPU flags: ${r.cpu_flags.join(" ") || "–"}`,
    `PyTorch 2: ${r.torch_version ?? "absent"}${r.torch2_compiled ? ", torch.compile" : ", eager"} (BLAS: ${r.torch_blas ?? "–"}); PyTorch 1: ${r.torch1_version ?? "absent"} (BLAS: ${r.torch1_blas ?? "–"}); official code on PyTorch ${r.official_torch_version ?? "– (not run)"}`,
    `PyTorch env: ${r.torch_env}`,
    `load average (1/5/15 min) at start: ${r.load_average.start.map((x) => x.toFixed(2)).join(" / ")}, at end: ${r.load_average.end.map((x) => x.toFixed(2)).join(" / ")} (${os.cpus().length} CPUs; above that, other work shared the cores)`,
  ];
  for (const m of r.models) {
    const peers = PEERS.filter((p) => m.sides.includes(p));
    out.push("", `### ${m.describe}`, `B=${m.shape.B}, L=${m.shape.L} (${m.shape.free} free + ${m.shape.template} template), n=${m.shape.n} real (T=${m.shape.T}), prefix ${m.shape.prefix}; ${m.repetitions} interleaved repetition(s), medians`, "");
    out.push(`| stage | ours | ${peers.map((p) => PEER_LABEL[p]).join(" | ")} | ${peers.map((p) => `${p} / ours`).join(" | ")} |`, `| --- | --- |${peers.map(() => " --- |").join("")}${peers.map(() => " --- |").join("")}`);
    const mark = (how: string | undefined) => (!how ? "" : how.startsWith("extrapolated") ? "*" : /^measured on \d/.test(how) ? "†" : how.includes("first repetition") ? "‡" : "");
    const key = { official: "official_s", ref: "ref_s", torch2: "torch2_s", torch1: "torch1_s" } as const;
    for (const k of STAGES) {
      const st = m.stages[k];
      const label = k === "batch" ? `one ADMM batch (${m.settings.outer}×${m.settings.inner}, ${m.settings.init_candidates} init)` : STAGE_LABEL[k];
      const cell = (x: number | null, how: string | undefined) => (x === null ? "–" : fmtS(x) + mark(how));
      out.push(`| ${label} | ${cell(st.ours_s, st.how.ours)} | ${peers.map((p) => cell(st[key[p]], st.how[p])).join(" | ")} | ${peers.map((p) => fmtR(st.ratio[p])).join(" | ")} |`);
    }
    out.push("", `\\* extrapolated from that side's measured stage times (${String(m.batch_details.counts)}); † measured on fewer candidates and scaled (init is a loop of identical candidate evaluations); ‡ timed in the first repetition only.`);
    if (m.stages.batch.how.ours?.startsWith("measured")) out.push(`ours' batch extrapolated the same way: ${fmtS(m.ours_batch_extrapolated_s)} (measured ${fmtS(m.stages.batch.ours_s)}), a check of the extrapolation.`);
    out.push(`our x-update step: ${(m.x_update_flops / 1e9).toFixed(1)} GFLOP (fwd + bwd to inputs, B×L tokens) → ${m.x_update_gflops.toFixed(1)} GFLOP/s`);
    for (const n of m.notes) out.push(`note: ${n}`);
  }
  out.push("", `SGEMM 1024³ (ours, this run): ${r.sgemm_peak_gflops.toFixed(1)} GFLOP/s; x-update on ${r.models[0].model}: ${r.x_update_gflops.toFixed(1)} GFLOP/s = ${(100 * r.x_update_peak_fraction).toFixed(0)}% of it`);
  out.push(`peak RSS of this process: ${r.peak_rss_mb.toFixed(0)} MB (float32 weights of ${r.model}: ${r.weights_mb.toFixed(0)} MB)`);
  if (r.profile?.length) {
    out.push("", "perf profile of our x-update (self time):");
    for (const p of r.profile) out.push(`  ${p.percent.toFixed(1).padStart(5)}%  ${p.symbol}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join("\n");
}
