#!/usr/bin/env node
/** `npm run bench -- <suite> [options]`: the benchmark suites. Progress on stderr; tables or --json on stdout. */
import { Command } from "commander";
import { benchAdmm } from "./admm";
import { benchEngine, formatEngineTable } from "./engine";

const program = new Command("bench").description("gradmm benchmarks (ours vs PyTorch, side by side in one run)");

program
  .command("engine")
  .description("SGEMM GFLOP/s, GPT-2 124M-shaped fwd+bwd-to-inputs and train-step tokens/s")
  .option("--json", "print one JSON object instead of a table")
  .option("--quick", "small model and few repetitions (smoke test)")
  .option("--threads <n>", "threads for both sides (default: all cores)", (v) => Number.parseInt(v, 10))
  .action(async (o: { json?: boolean; quick?: boolean; threads?: number }) => {
    const r = await benchEngine({ threads: o.threads, quick: o.quick });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatEngineTable(r) + "\n");
  });

program
  .command("admm")
  .description("GRADMM stage times on one model: inner x-update step, projection, full batch (paper settings), GFLOP/s")
  .option("--model <dir>", "model folder (default: models/default)")
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
          `inner x-update step: ${(r.inner_step_s * 1000).toFixed(1)} ms  (${(r.inner_step_flops / 1e9).toFixed(2)} GFLOP, ${r.gflops.toFixed(1)} GFLOP/s)`,
          `projection:          ${(r.projection_s * 1000).toFixed(1)} ms`,
          `batch:               ${r.batch_s.toFixed(1)} s`,
        ].join("\n") + "\n",
      );
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
