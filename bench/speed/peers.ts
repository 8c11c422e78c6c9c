/**
 * The peers of `npm run bench -- speed`, each a subprocess on the same inputs:
 *
 *   reference   bench/reference/gradmm_ref.py: the released code's computation structure, in PyTorch 2
 *   torch2      bench/reference/gradmm_torch_fast.py (our algorithm the best way PyTorch allows) on PyTorch 2.x
 *   torch1      the same script on PyTorch 1.x (Debian's python3-torch 1.13)
 *   official    the paper's released code itself (BigML-CS-UCLA/GRADMM, unchanged), timed stage by stage by
 *               bench/official/time_official.py; `--official DIR` or GRADMM_OFFICIAL names its gradmm/ folder
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../../ts/advanced";
import { torchEnv, torchPython } from "../torch_env";
import type { Inputs, ModelChoice, Settings } from "./models";
import { median } from "./ours";

const SCRIPTS = path.join(packageRoot(), "bench", "reference");
export const REF = path.join(SCRIPTS, "gradmm_ref.py");
export const FAST = path.join(SCRIPTS, "gradmm_torch_fast.py");
const TIME_OFFICIAL = path.join(packageRoot(), "bench", "official", "time_official.py");

export interface PyResult {
  torch_version: string;
  torch_blas: string;
  threads: number;
  times?: Record<string, number[]>;
  batch_s?: number;
  init_f?: number;
  best_x_f?: number;
  decoded_f?: number;
  f?: number;
  f64?: number;
  target_norm?: number;
  target_norm64?: number;
}

export function runPy(script: string, python: string | null, m: ModelChoice, inp: Inputs, s: Settings, threads: number, extra: Record<string, unknown>): PyResult {
  const args = { model_dir: m.dir, inputs: inp.file, B: inp.B, L: inp.L, free: inp.free, label: inp.label, threads, settings: s, ...extra };
  const r = spawnSync(python ?? torchPython() ?? "python3", [script, JSON.stringify(args)], { encoding: "utf8", env: torchEnv(threads), maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`${path.basename(script)} (${python ?? "python3"}) failed (exit ${r.status ?? r.signal})`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as PyResult;
}

// ------------------------------------------------------------------------------------------------ the official code

export interface OfficialSetup {
  /** The official checkout's gradmm/ folder (generate.py, utilities.py, init.py). */
  dir: string;
  python: string;
}

/**
 * The official code where it is set up (`--official DIR`, else GRADMM_OFFICIAL), with a Python that imports what it
 * needs (GRADMM_OFFICIAL_PYTHON, else the PyTorch 2 Python). Returns the reason when it is not usable.
 */
export function officialSetup(dir: string | undefined): OfficialSetup | { missing: string } {
  const d = dir ?? process.env.GRADMM_OFFICIAL;
  const howTo = "fetch BigML-CS-UCLA/GRADMM, then `--official <checkout>/gradmm` with a Python that has torch, transformers, datasets, scikit-learn, regex and wandb (GRADMM_OFFICIAL_PYTHON); bench/README.md, \"Official code vs ours\"";
  if (!d) return { missing: `no official checkout given: ${howTo}` };
  if (!fs.existsSync(path.join(d, "generate.py"))) return { missing: `${d} has no generate.py: ${howTo}` };
  const python = process.env.GRADMM_OFFICIAL_PYTHON ?? torchPython();
  if (!python) return { missing: `no Python with PyTorch: ${howTo}` };
  const r = spawnSync(python, ["-c", "import torch, transformers, datasets, regex, sklearn, wandb"], { encoding: "utf8" });
  if (r.status !== 0) return { missing: `${python} cannot import the official code's packages (${(r.stderr.trim().split("\n").pop() ?? "").slice(0, 200)}): ${howTo}` };
  return { dir: d, python };
}

export interface OfficialTimes {
  torch_version: string;
  /** One class's target gradient, scaled to the benchmark's n real examples (its per-example time × n). */
  target_s: number;
  init_per_candidate_s: number;
  x_step_s: number;
  projection_s: number;
  /** Wall time of the timed run (model load and the official set-up included). */
  wall_s: number;
  settings: Record<string, number>;
  notes: string[];
}

/**
 * Runs the official code on the same model (the untied copy of its weights) for one class: targets, `initCandidates`
 * init candidates, a projection and `inner` Adam steps; the run then stops itself (at its second projection).
 */
export function runOfficial(o: OfficialSetup, m: ModelChoice, inp: Inputs, s: Settings, threads: number, tmp: string, plan: { initCandidates: number; inner: number }, log: (s: string) => void): OfficialTimes {
  if (!m.official) throw new RangeError(`${m.name}: the official code needs a Llama-family model given by --model`);
  const work = fs.mkdtempSync(path.join(tmp, "official-"));
  // The official template " It was " has 3 tokens on SmolLM2 (ours " It was" 2): gen_max_tokens counts template
  // and free tokens together, so the sequence has our L positions.
  const args = {
    official: o.dir,
    model_dir: m.official.untiedDir,
    tokenizer_source: m.official.tokenizerSource,
    data: path.join(packageRoot(), "examples", "data", "imdb", "train.jsonl"),
    work,
    B: inp.B,
    gen_max_tokens: inp.L,
    subset_size: 10, // 10 real examples (about 5 per class): the target stage is timed per example and scaled to n
    init_candidates: plan.initCandidates,
    inner: plan.inner,
    topk: s.topk,
    threads,
  };
  log(`official code: ${plan.initCandidates} init candidates, a projection, ${plan.inner} Adam steps (then it stops itself)…`);
  const r = spawnSync(o.python, [TIME_OFFICIAL, JSON.stringify(args)], { encoding: "utf8", env: { ...torchEnv(threads), WANDB_MODE: "disabled" }, maxBuffer: 256 << 20, stdio: ["ignore", "pipe", "pipe"] });
  const errTail = (r.stderr ?? "").split("\n").filter((l) => !l.includes("Loading weights")).slice(-30).join("\n");
  if (r.status !== 0) throw new Error(`time_official.py failed (exit ${r.status ?? r.signal}):\n${errTail}`);
  const lines = r.stdout.trim().split("\n");
  const res = JSON.parse(lines[lines.length - 1]) as {
    torch_version: string;
    stopped_as_planned: boolean;
    wall_s: number;
    times: { target: { seconds: number; examples: number }[]; init: { seconds: number }[]; x_step: { seconds: number }[]; projection: { seconds: number }[] };
  };
  const t = res.times;
  if (!res.stopped_as_planned || !t.target.length || !t.init.length || !t.x_step.length || !t.projection.length) throw new Error(`the official run ended before its stages were timed:\n${errTail}`);
  const perExample = median(t.target.map((x) => x.seconds / Math.max(1, x.examples)));
  fs.rmSync(work, { recursive: true, force: true });
  return {
    torch_version: res.torch_version,
    target_s: perExample * inp.n,
    init_per_candidate_s: t.init[0].seconds / plan.initCandidates,
    x_step_s: median(t.x_step.map((x) => x.seconds)),
    projection_s: median(t.projection.map((x) => x.seconds)),
    wall_s: res.wall_s,
    settings: { B: inp.B, gen_max_tokens: inp.L, subset_size: args.subset_size, init_candidates: plan.initCandidates, inner_steps_timed: plan.inner, topk: s.topk },
    notes: [
      `official targets: ${t.target.map((x) => `${x.seconds.toFixed(1)} s for ${x.examples} examples`).join(", ")} (scaled per example to n=${inp.n})`,
      "official template \" It was \" (3 tokens), free tokens = L − 3; its prefix for the projection is its own (get_prefix, no few-shot examples)",
      "official x-update step: one torch.optim.Adam.step with the official closure (double backward through the lm_head gradient, plus its perplexity forward)",
    ],
  };
}
