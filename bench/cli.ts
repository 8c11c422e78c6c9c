#!/usr/bin/env node
/** `npm run bench -- <suite> [options]`: the benchmark suites. Progress on stderr; tables or --json on stdout. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Command } from "commander";
import { benchAdmm } from "./admm";
import { benchEngine, formatEngineTable } from "./engine";
import { benchLoad, formatLoadTable } from "./load";
import { benchPrecision, formatPrecisionTable } from "./precision";
import { benchSpeed, checkAgreement, formatAgreement, formatSpeedTable, modelFromSource } from "./speed";

const program = new Command("bench").description("gradmm benchmarks (ours vs PyTorch, side by side in one run)");

program
  .command("engine")
  .description("SGEMM GFLOP/s, fwd+bwd-to-inputs and train-step tokens/s (GPT-2 124M shape, or --model)")
  .option("--json", "print one JSON object instead of a table")
  .option("--quick", "small model and few repetitions (smoke test)")
  .option("--model <name|file|dir>", "a model our loader takes (a known name such as smollm2-135m-instruct, a GGUF file, an HF folder) instead of the random GPT-2 shape")
  .option("--threads <n>", "threads for both sides (default: all cores)", (v) => Number.parseInt(v, 10))
  .option("--rounds <n>", "alternating rounds of ours and PyTorch; each side's best is reported (default 3, --quick 1)", (v) => Number.parseInt(v, 10))
  .action(async (o: { json?: boolean; quick?: boolean; threads?: number; rounds?: number; model?: string }) => {
    const r = await benchEngine({ threads: o.threads, quick: o.quick, rounds: o.rounds, model: o.model });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatEngineTable(r) + "\n");
  });

program
  .command("admm")
  .description("GRADMM stage times on one model: inner x-update step, projection, full batch (paper settings), GFLOP/s")
  .option("--model <dir>", "model folder, GGUF file or known model name (default: models/default)")
  .option("--json", "print one JSON object")
  .option("--quick", "a short batch instead of the paper's 30 × 50 steps")
  .option("--threads <n>", "threads (default: all cores)", (v) => Number.parseInt(v, 10))
  .action(async (o: { model?: string; json?: boolean; quick?: boolean; threads?: number }) => {
    const r = await benchAdmm({ modelDir: o.model, quick: o.quick, threads: o.threads });
    if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
    else
      process.stdout.write(
        [
          `model: ${r.model} (${(r.params / 1e6).toFixed(2)}M params), B=${r.B}, L=${r.L}`,
          `target (25 × 128 tokens): ${(r.target_s * 1000).toFixed(1)} ms`,
          `init candidate:      ${(r.init_candidate_s * 1000).toFixed(1)} ms`,
          `inner x-update step: ${(r.inner_step_s * 1000).toFixed(1)} ms  (${(r.inner_step_flops / 1e9).toFixed(2)} GFLOP, ${r.gflops.toFixed(1)} GFLOP/s)`,
          `projection:          ${(r.projection_s * 1000).toFixed(1)} ms`,
          `batch:               ${r.batch_s.toFixed(1)} s${o.quick ? " (quick settings)" : ""}`,
          `paper settings from the stage times (500 init candidates, 30 × (50 inner steps + projection) + final decode):`,
          `                     ${paperBatchSeconds(r).toFixed(0)} s per batch of ${r.B} = ${(paperBatchSeconds(r) / r.B).toFixed(1)} s per sample (+ the target, once per class)`,
        ].join("\n") + "\n",
      );
  });

/** Seconds of one batch at the paper's settings, from the measured stage times. */
function paperBatchSeconds(r: { init_candidate_s: number; inner_step_s: number; projection_s: number }): number {
  return 500 * r.init_candidate_s + 30 * (50 * r.inner_step_s + r.projection_s) + r.projection_s;
}

program
  .command("precision")
  .description("precision bf16 vs float32 on one model: matching loss, x-gradient cosine, same-token projections, x-update step and projection times")
  .option("--model <name|file|dir>", "model folder, GGUF file or known model name (default: models/default)")
  .option("--json", "print one JSON object")
  .option("--quick", "fewer examples, positions and repetitions")
  .option("--threads <n>", "threads (default: all cores)", (v) => Number.parseInt(v, 10))
  .action(async (o: { model?: string; json?: boolean; quick?: boolean; threads?: number }) => {
    const r = await benchPrecision({ model: o.model, quick: o.quick, threads: o.threads });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatPrecisionTable(r) + "\n");
  });

program
  .command("speed")
  .description("GRADMM stage times: ours vs the official code, the paper's structure in PyTorch (reference), and ours written in PyTorch 2 and 1 (bench/README.md)")
  .option("--json", "print one JSON object instead of a table")
  .option("--quick", "small model, few repetitions, reduced batch (minutes)")
  .option("--check", "compare the numbers (target gradient, distance, x-gradient, projection, init) instead of the times")
  .option("--models <list>", "comma-separated: small (models/default), gpt2 (124M-shaped random); default both, --quick: small")
  .option("--model <name|file|dir>", "one model our loader takes (a known name such as smollm2-135m-instruct, a GGUF file, an HF folder) instead of --models")
  .option("--official <dir>", "with --model: the official code's gradmm/ folder (BigML-CS-UCLA/GRADMM; else GRADMM_OFFICIAL), timed stage by stage")
  .option("--reference", "with --model: also run bench/reference/gradmm_ref.py (slow)")
  .option("--torch-compile", "torch.compile the PyTorch 2 side's distance and x-gradient (inductor; compilation not timed)")
  .option("--profile", "add a perf profile of our x-update (needs perf)")
  .option("--threads <n>", "threads for every side (default: all cores)", (v) => Number.parseInt(v, 10))
  .action(async (o: { json?: boolean; quick?: boolean; check?: boolean; models?: string; model?: string; official?: string; reference?: boolean; torchCompile?: boolean; profile?: boolean; threads?: number }) => {
    if (o.check) {
      const model = o.model ? modelFromSource(o.model, fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-check-model-")), (s) => process.stderr.write(s + "\n")) : undefined;
      const a = await checkAgreement({ threads: o.threads, model });
      if (model) fs.rmSync(path.dirname(model.dir), { recursive: true, force: true });
      process.stdout.write(o.json ? JSON.stringify(a) + "\n" : formatAgreement(a) + "\n");
      return;
    }
    if (o.model && o.models) throw new RangeError("--model and --models: give one");
    const models = o.models?.split(",").map((m) => m.trim()) as ("small" | "gpt2")[] | undefined;
    if (models?.some((m) => m !== "small" && m !== "gpt2")) throw new RangeError(`--models: expected small and/or gpt2, got '${o.models}'`);
    const r = await benchSpeed({ quick: o.quick, threads: o.threads, models, model: o.model, official: o.official, reference: o.reference, torchCompile: o.torchCompile, profile: o.profile });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatSpeedTable(r) + "\n");
  });

program
  .command("queue")
  .description("BullMQ on a loopback redis-server: 1 coordinator, N worker processes, a tiny model; jobs/s, queue latency, Redis memory, overhead per job vs one process; the coordinator's cost with up to 100 simulated workers")
  .option("--jobs <n>", "jobs (class × batch) in the real run", (v) => Number.parseInt(v, 10), 500)
  .option("--workers <n>", "worker processes", (v) => Number.parseInt(v, 10), 16)
  .option("--sim-workers <list>", "simulated worker counts", "10,25,50,100")
  .option("--sim-jobs <n>", "jobs per simulated run", (v) => Number.parseInt(v, 10), 1000)
  .option("--sim-ms <ms>", "a simulated batch's duration", (v) => Number.parseInt(v, 10), 200)
  .option("--default-batch-s <s>", "the default model's batch at the paper's settings (the goal's yardstick; bench/README \"Speed\")", Number, 88.97)
  .option("--max-seconds <s>", "stop after this long", (v) => Number.parseInt(v, 10), 900)
  .option("--model <name|file|dir>", "the model the local and queued runs load (default: the tiny fixture model; e.g. smollm2-135m-instruct with --jobs 8 --workers 2: each worker holds its own copy)")
  .option("--json", "print one JSON object")
  .action(async (o: { jobs: number; workers: number; simWorkers: string; simJobs: number; simMs: number; defaultBatchS: number; maxSeconds: number; model?: string; json?: boolean }) => {
    const { benchQueue, formatQueueTable } = await import("./queue");
    const r = await benchQueue({ jobs: o.jobs, workers: o.workers, simWorkers: o.simWorkers.split(",").filter(Boolean).map(Number), simJobs: o.simJobs, simMs: o.simMs, defaultBatchS: o.defaultBatchS, maxSeconds: o.maxSeconds, model: o.model });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatQueueTable(r) + "\n");
  });

program
  .command("load")
  .description("tokenizer encode MB/s (ours vs the fastest installed JS tokenizer), ~100 MB safetensors checkpoint load MB/s, SmolLM2 GGUF load time")
  .option("--json", "print one JSON object instead of a table")
  .option("--quick", "less text, a smaller checkpoint, fewer repetitions (smoke test)")
  .action(async (o: { json?: boolean; quick?: boolean }) => {
    const r = await benchLoad({ quick: o.quick });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatLoadTable(r) + "\n");
  });

program
  .command("model")
  .description("a model's quality: bits/byte (vs a Kneser-Ney trigram for our pretrained models), IMDB fine-tuned / zero-shot / bag-of-words accuracy")
  .option("--model <name|file|dir>", "models/default (the default), a folder from `npm run pretrain`, or any model our loader takes (a known name such as smollm2-135m-instruct, a GGUF file, an HF folder)")
  .option("--config <file>", "the pretraining recipe of a pretrained folder (default configs/pretrain/default.yaml)")
  .option("--json", "print one JSON object instead of a table")
  .option("--quick", "a few steps on a few examples (smoke test)")
  .option("--no-save", "do not write evaluation.json/.md (into a pretrained model's folder and its README, else bench/results/model/<name>/)")
  .action(async (o: { model?: string; config?: string; json?: boolean; quick?: boolean; save: boolean }) => {
    const { evaluateModel, formatModelEvaluation, saveModelEvaluation, isRecipeModel } = await import("./model/eval");
    const { resolveModelPath } = await import("../ts/advanced");
    const recipe = o.config !== undefined || !o.model || isRecipeModel(resolveModelPath(o.model));
    const r = await evaluateModel(recipe ? { modelDir: o.model, configFile: o.config, quick: o.quick } : { model: o.model, quick: o.quick });
    if (o.save && !o.quick) {
      if (recipe) {
        const { refreshModelCard } = await import("../ts/advanced");
        saveModelEvaluation(r, r.modelDir);
        refreshModelCard(o.config, r.modelDir);
      } else {
        const out = path.join(__dirname, "..", "..", "bench", "results", "model", path.basename(o.model!).replace(/\.gguf$/i, ""));
        fs.mkdirSync(out, { recursive: true });
        saveModelEvaluation(r, out);
      }
    }
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatModelEvaluation(r) + "\n");
  });

program
  .command("model-compare")
  .description("tabulate finished pretraining runs side by side (the default model's architecture comparison)")
  .argument("<recipes...>", "pretraining recipes, each already run (configs/pretrain/compare-*.yaml)")
  .option("--save <dir>", "also write the table to <dir>/architecture.md and refresh that model's README")
  .option("--note <text>", "a sentence appended to the table (the conclusion)")
  .action(async (files: string[], o: { save?: string; note?: string }) => {
    const { compareRuns } = await import("./model/compare");
    const { markdown } = compareRuns(files);
    const text = o.note ? `${markdown}\n\n${o.note}\n` : `${markdown}\n`;
    if (o.save) {
      const { writeFileAtomic } = await import("../ts/advanced");
      const { refreshModelCard } = await import("../ts/advanced");
      writeFileAtomic(`${o.save}/architecture.md`, text);
      refreshModelCard(undefined, o.save);
    }
    process.stdout.write(text);
  });

program
  .command("utility")
  .description("does the synthetic text train a classifier? GRADMM vs real data, generation baselines and ablations (bench/README.md)")
  .argument("<config>", "a synth config plus an eval section (bench/utility/imdb.yaml)")
  .option("--resume", "continue the run in the output folder (finished units are skipped)")
  .option("--overwrite", "replace a previous run in the output folder")
  .option("--json", "print report.json on stdout instead of the Markdown table")
  .option("--no-progress", "no progress bar")
  .option("--model <name|path>", "the model (generator and classifier): a known name such as smollm2-135m-instruct, a GGUF file or a Hugging Face folder")
  .option("--output <dir>", "output folder (default: the config's eval.output)")
  .action(async (file: string, o: { resume?: boolean; overwrite?: boolean; json?: boolean; progress: boolean; model?: string; output?: string }) => {
    const { utilityCommand } = await import("./utility/cli");
    await utilityCommand(file, o);
  });

program
  .command("gradient-signal")
  .description("what the matching objective can see: class targets, same-label texts of each class, and objective variants (bench/README.md)")
  .argument("<config>", "a utility config (classes, label words, template, data, model)")
  .option("--model <name|path>", "the model (default: the config's)")
  .option("--sets <seed dir>", "a utility run's seed folder (e.g. bench/results/utility/imdb/seed-0): its private examples are the targets, and each of its training sets is scored like the real batches")
  .option("--json", "print one JSON object instead of a table")
  .action(async (file: string, o: { model?: string; json?: boolean; sets?: string }) => {
    const { loadUtilityConfig } = await import("./utility/config");
    const { gradientSignal, formatSignal } = await import("./utility/signal");
    const r = await gradientSignal(loadUtilityConfig(file, { model: o.model }), { sets: o.sets });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatSignal(r) + "\n");
  });

program
  .command("ts")
  .description("the TypeScript-side hot paths with benchmark.js: tokenizer encode, JSONL and CSV reading, the filter, GGUF metadata parsing")
  .option("--json", "print one JSON object instead of a table")
  .option("--quick", "less text and shorter sampling (smoke test)")
  .action(async (o: { json?: boolean; quick?: boolean }) => {
    const { benchTs, formatTsTable } = await import("./ts");
    const r = await benchTs({ quick: o.quick });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatTsTable(r) + "\n");
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
