/**
 * `npm run bench -- engine`: SGEMM GFLOP/s and GPT-2 124M-shaped step throughput, ours and PyTorch's side by side
 * in one run on the same machine and thread count.
 */
import * as os from "node:os";
import * as path from "node:path";
import { GPT2Model } from "../ts/model";
import { native } from "../ts/native";
import { getThreads, setThreads, sgemmKernel } from "../ts/threads";
import { runTorchScript, torchAvailable } from "./torch_env";

export interface EngineBenchResult {
  machine: string;
  threads: number;
  sgemm_kernel: string;
  sgemm_gflops: number;
  torch_sgemm_gflops: number | null;
  fwd_bwd_inputs_tok_s: number;
  torch_fwd_bwd_inputs_tok_s: number | null;
  train_step_tok_s: number;
  torch_train_step_tok_s: number | null;
  torch_version: string | null;
  torch_blas: string | null;
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

export async function benchEngine(opts: { threads?: number; quick?: boolean; log?: (s: string) => void } = {}): Promise<EngineBenchResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const threads = opts.threads ?? os.cpus().length;
  setThreads(threads);
  const reps = opts.quick ? 2 : 5;
  const n = 1024;
  const modelCfg = opts.quick
    ? { vocabSize: 8192, maxSeqLen: 128, channels: 256, numLayers: 4, numHeads: 4 }
    : { vocabSize: 50257, maxSeqLen: 1024, channels: 768, numLayers: 12, numHeads: 12 };
  const B = 4, T = 64;

  log(`sgemm ${n}³ (ours)…`);
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)), bm = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n);
  const sgemmS = await medianTime(() => native().sgemm(false, false, n, n, n, a, n, bm, n, c, n, false), reps * 2);

  log(`GPT-2 ${modelCfg.channels}d × ${modelCfg.numLayers} layers, V=${modelCfg.vocabSize}, B=${B}, T=${T} (ours)…`);
  const model = GPT2Model.create(modelCfg);
  model.initRandom(0);
  const tokens = new Int32Array(B * T).map((_, i) => (i * 7919) % modelCfg.vocabSize);
  const targets = new Int32Array(B * T).map((_, i) => (i * 104729 + 3) % modelCfg.vocabSize);
  const wte = model.tensor("wte.weight");
  const embeds = new Float32Array(B * T * modelCfg.channels);
  for (let i = 0; i < B * T; i++) embeds.set(wte.subarray(tokens[i] * modelCfg.channels, (tokens[i] + 1) * modelCfg.channels), i * modelCfg.channels);
  const dEmbeds = new Float32Array(embeds.length);
  const fwdBwdS = await medianTime(async () => {
    await model.forward({ embeds, targets, B, T });
    await model.backward({ paramGrads: false, dEmbeds });
  }, reps);
  let step = 0;
  const trainS = await medianTime(async () => {
    await model.forward({ tokens, targets, B, T });
    model.zeroGrads();
    await model.backward();
    await model.adamwStep({ lr: 1e-4, maxGradNorm: 1, step: ++step });
  }, reps);
  model.dispose();

  let torch: { torch_version: string; torch_blas: string; sgemm_gflops: number; fwd_bwd_inputs_tok_s: number; train_step_tok_s: number } | null = null;
  const avail = torchAvailable();
  if (avail) {
    log(`PyTorch ${avail.version}, same shapes…`);
    torch = runTorchScript(path.join(__dirname, "..", "..", "bench", "torch", "engine_bench.py"), { threads, reps, sgemm_n: n, model: modelCfg, B, T }, threads);
  } else log("PyTorch not found at /usr/bin/python3: ours alone (apt-get install python3-torch libopenblas0-pthread)");

  return {
    machine: `${os.cpus()[0]?.model ?? "cpu"} × ${os.cpus().length}`,
    threads: getThreads(),
    sgemm_kernel: sgemmKernel(),
    sgemm_gflops: (2 * n ** 3) / sgemmS / 1e9,
    torch_sgemm_gflops: torch?.sgemm_gflops ?? null,
    fwd_bwd_inputs_tok_s: (B * T) / fwdBwdS,
    torch_fwd_bwd_inputs_tok_s: torch?.fwd_bwd_inputs_tok_s ?? null,
    train_step_tok_s: (B * T) / trainS,
    torch_train_step_tok_s: torch?.train_step_tok_s ?? null,
    torch_version: torch?.torch_version ?? null,
    torch_blas: torch?.torch_blas ?? null,
  };
}

export function formatEngineTable(r: EngineBenchResult): string {
  const row = (name: string, ours: number, theirs: number | null, unit: string) =>
    `| ${name} | ${ours.toFixed(1)} ${unit} | ${theirs === null ? "–" : theirs.toFixed(1) + " " + unit} | ${theirs === null ? "–" : (ours / theirs).toFixed(2) + "×"} |`;
  return [
    `machine: ${r.machine}, threads: ${r.threads}, sgemm kernel: ${r.sgemm_kernel}, PyTorch: ${r.torch_version ?? "absent"} (BLAS: ${r.torch_blas ?? "–"})`,
    "",
    "| benchmark | ours | PyTorch | ours / PyTorch |",
    "| --- | --- | --- | --- |",
    row("SGEMM 1024³", r.sgemm_gflops, r.torch_sgemm_gflops, "GFLOP/s"),
    row("fwd+bwd to inputs", r.fwd_bwd_inputs_tok_s, r.torch_fwd_bwd_inputs_tok_s, "tok/s"),
    row("train step (AdamW)", r.train_step_tok_s, r.torch_train_step_tok_s, "tok/s"),
  ].join("\n");
}
