/**
 * `npm run bench -- engine`: SGEMM GFLOP/s and step throughput (a GPT-2 124M shape, or `--model` any model our
 * loader takes), ours and PyTorch's side by side in one run on the same machine and thread count.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel, getThreads, setThreads } from "../ts/index";
import { GPT2Model, native, sgemmKernel } from "../ts/advanced";
import { embeddingName, saveHFFolder } from "./speed/models";
import { runTorchScript, torchAvailable } from "./torch_env";

export interface EngineBenchResult {
  machine: string;
  /** The model of the step benchmarks (a GPT-2 124M shape with random weights unless --model). */
  model: string;
  threads: number;
  sgemm_kernel: string;
  /** Rounds run: each runs our three measurements, then PyTorch's; the figures below are each side's best round. */
  rounds: number;
  sgemm_gflops: number;
  torch_sgemm_gflops: number | null;
  fwd_bwd_inputs_tok_s: number;
  torch_fwd_bwd_inputs_tok_s: number | null;
  train_step_tok_s: number;
  torch_train_step_tok_s: number | null;
  torch_version: string | null;
  torch_blas: string | null;
  /** Every round's figures, ours and PyTorch's, in the order they ran. */
  per_round: RoundFigures[];
}

interface Figures {
  sgemm_gflops: number;
  fwd_bwd_inputs_tok_s: number;
  train_step_tok_s: number;
}
export interface RoundFigures {
  ours: Figures;
  torch: Figures | null;
  /** Share of CPU time the hypervisor took from this VM (/proc/stat "steal") while each side ran; null off Linux. */
  ours_steal: number | null;
  torch_steal: number | null;
}

/** Runs fn and returns the fraction of all CPU time in that window that was stolen by the hypervisor. */
async function withSteal<T>(fn: () => Promise<T> | T): Promise<{ value: T; steal: number | null }> {
  const read = (): number[] | null => {
    try {
      return fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    } catch {
      return null;
    }
  };
  const before = read();
  const value = await fn();
  const after = read();
  if (!before || !after || before.length < 8) return { value, steal: null };
  const d = after.map((v, i) => v - (before[i] ?? 0));
  const total = d.slice(0, 8).reduce((a, b) => a + b, 0);  // user nice system idle iowait irq softirq steal
  return { value, steal: total > 0 ? d[7] / total : null };
}

async function medianTime(fn: () => Promise<void> | void, reps: number): Promise<number> {
  await fn(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * Ours and PyTorch's, alternating for `rounds` rounds (default 3). A shared machine's speed drifts over minutes
 * (here: the same binary between 110 and 170 tokens/s), so one pass of each side can compare a fast minute with a
 * slow one; alternating and keeping each side's best round compares both at their least disturbed.
 */
export async function benchEngine(opts: { threads?: number; quick?: boolean; rounds?: number; model?: string; log?: (s: string) => void } = {}): Promise<EngineBenchResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const threads = opts.threads ?? os.cpus().length;
  setThreads(threads);
  const reps = opts.quick ? 2 : 5;
  const rounds = Math.max(1, opts.rounds ?? (opts.quick ? 1 : 3));
  const n = 1024;
  const modelCfg = opts.quick
    ? { vocabSize: 8192, maxSeqLen: 128, channels: 256, numLayers: 4, numHeads: 4 }
    : { vocabSize: 50257, maxSeqLen: 1024, channels: 768, numLayers: 12, numHeads: 12 };
  const B = 4, T = 64;

  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)), bm = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n);
  // --model: that model's weights on both sides (PyTorch reads them from a float32 Hugging Face folder we write)
  let model: GPT2Model;
  let hfDir: string | null = null;
  if (opts.model) {
    model = loadModel(opts.model).model;
    hfDir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-engine-"));
    saveHFFolder(model, hfDir);
  } else {
    model = GPT2Model.create(modelCfg);
    model.initRandom(0);
  }
  const cfg = model.config;
  const describe = opts.model ? `${opts.model} (${cfg.architecture}, ${cfg.channels}d × ${cfg.numLayers} layers, V=${cfg.vocabSize})` : `GPT-2 ${cfg.channels}d × ${cfg.numLayers} layers, V=${cfg.vocabSize}`;
  const tokens = new Int32Array(B * T).map((_, i) => (i * 7919) % cfg.vocabSize);
  const targets = new Int32Array(B * T).map((_, i) => (i * 104729 + 3) % cfg.vocabSize);
  const wte = model.tensor(embeddingName(cfg));
  const embeds = new Float32Array(B * T * cfg.channels);
  for (let i = 0; i < B * T; i++) embeds.set(wte.subarray(tokens[i] * cfg.channels, (tokens[i] + 1) * cfg.channels), i * cfg.channels);
  const dEmbeds = new Float32Array(embeds.length);
  let step = 0;
  const avail = torchAvailable();
  if (!avail) log("no Python with PyTorch (GRADMM_TORCH_PYTHON, PATH, /usr/bin/python3): ours alone (pip install torch==2.13.0, or apt-get install python3-torch libopenblas0-pthread)");

  const perRound: RoundFigures[] = [];
  let torchInfo: { torch_version: string; torch_blas: string } | null = null;
  try {
    for (let r = 1; r <= rounds; r++) {
      log(`round ${r}/${rounds}: sgemm ${n}³, ${describe}, B=${B}, T=${T} (ours)…`);
      const oursRun = await withSteal(async () => {
        const sgemmS = await medianTime(() => native().sgemm(false, false, n, n, n, a, n, bm, n, c, n, false), reps * 2);
        const fwdBwdS = await medianTime(async () => {
          await model.forward({ embeds, targets, B, T });
          await model.backward({ paramGrads: false, dEmbeds });
        }, reps);
        const trainS = await medianTime(async () => {
          await model.forward({ tokens, targets, B, T });
          model.zeroGrads();
          await model.backward();
          await model.adamwStep({ lr: 1e-4, maxGradNorm: 1, step: ++step });
        }, reps);
        return { sgemm_gflops: (2 * n ** 3) / sgemmS / 1e9, fwd_bwd_inputs_tok_s: (B * T) / fwdBwdS, train_step_tok_s: (B * T) / trainS };
      });
      const ours = oursRun.value;
      let torch: Figures | null = null;
      let torchSteal: number | null = null;
      if (avail) {
        log(`round ${r}/${rounds}: PyTorch ${avail.version}, same shapes…`);
        const torchRun = await withSteal(() => runTorchScript<Figures & { torch_version: string; torch_blas: string }>(
          path.join(__dirname, "..", "..", "bench", "torch", "engine_bench.py"), { threads, reps, sgemm_n: n, ...(hfDir ? { model_dir: hfDir } : { model: modelCfg }), B, T }, threads));
        const t = torchRun.value;
        torchSteal = torchRun.steal;
        torchInfo = { torch_version: t.torch_version, torch_blas: t.torch_blas };
        torch = { sgemm_gflops: t.sgemm_gflops, fwd_bwd_inputs_tok_s: t.fwd_bwd_inputs_tok_s, train_step_tok_s: t.train_step_tok_s };
      }
      perRound.push({ ours, torch, ours_steal: oursRun.steal, torch_steal: torchSteal });
    }
  } finally {
    model.dispose();
    if (hfDir) fs.rmSync(hfDir, { recursive: true, force: true });
  }

  const best = (side: "ours" | "torch", key: keyof Figures): number | null => {
    const vals = perRound.map((r) => r[side]?.[key]).filter((v): v is number => v !== undefined);
    return vals.length ? Math.max(...vals) : null;
  };
  return {
    machine: `${os.cpus()[0]?.model ?? "cpu"} × ${os.cpus().length}`,
    model: describe,
    threads: getThreads(),
    sgemm_kernel: sgemmKernel(),
    rounds,
    sgemm_gflops: best("ours", "sgemm_gflops")!,
    torch_sgemm_gflops: best("torch", "sgemm_gflops"),
    fwd_bwd_inputs_tok_s: best("ours", "fwd_bwd_inputs_tok_s")!,
    torch_fwd_bwd_inputs_tok_s: best("torch", "fwd_bwd_inputs_tok_s"),
    train_step_tok_s: best("ours", "train_step_tok_s")!,
    torch_train_step_tok_s: best("torch", "train_step_tok_s"),
    torch_version: torchInfo?.torch_version ?? null,
    torch_blas: torchInfo?.torch_blas ?? null,
    per_round: perRound,
  };
}

const pct = (x: number | null): string => (x === null ? "–" : `${(100 * x).toFixed(0)}%`);

export function formatEngineTable(r: EngineBenchResult): string {
  // Each round's own ratio too (ours and PyTorch measured minutes apart at most): their range shows the drift.
  const roundRatios = (key: keyof Figures): string => {
    const ratios = r.per_round.filter((x) => x.torch).map((x) => x.ours[key] / x.torch![key]);
    return ratios.length > 1 ? `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}×` : "–";
  };
  const row = (name: string, key: keyof Figures, unit: string) => {
    const ours = r[key], theirs = r[`torch_${key}` as const];
    return `| ${name} | ${ours.toFixed(1)} ${unit} | ${theirs === null ? "–" : theirs.toFixed(1) + " " + unit} | ${theirs === null ? "–" : (ours / theirs).toFixed(2) + "×"} | ${roundRatios(key)} |`;
  };
  return [
    `machine: ${r.machine}, threads: ${r.threads}, sgemm kernel: ${r.sgemm_kernel}, PyTorch: ${r.torch_version ?? "absent"} (BLAS: ${r.torch_blas ?? "–"})`,
    `model: ${r.model}; best of ${r.rounds} alternating round${r.rounds > 1 ? "s" : ""} per side`,
    "",
    "| benchmark | ours | PyTorch | ours / PyTorch | per-round ratios |",
    "| --- | --- | --- | --- | --- |",
    row("SGEMM 1024³", "sgemm_gflops", "GFLOP/s"),
    row("fwd+bwd to inputs", "fwd_bwd_inputs_tok_s", "tok/s"),
    row("train step (AdamW)", "train_step_tok_s", "tok/s"),
    "",
    `CPU time stolen by the hypervisor while each side ran, per round (ours / PyTorch): ${r.per_round
      .map((x) => `${pct(x.ours_steal)} / ${pct(x.torch_steal)}`)
      .join(", ")}`,
  ].join("\n");
}
