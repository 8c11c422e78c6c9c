#!/usr/bin/env node
/** `npm run bench -- <suite> [options]`: the benchmark suites. Progress on stderr; tables or --json on stdout. */
import { Command } from "commander";
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

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
