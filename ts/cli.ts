#!/usr/bin/env node
/**
 * gradmm CLI. `gradmm synth config.yaml` (npm run synth -- config.yaml) writes synthetic data; `gradmm doctor`
 * prints what a bug report needs. Progress and logs go to stderr; stdout carries only results (--json).
 */
import * as os from "node:os";
import { Command } from "commander";
import { MultiBar, Presets } from "cli-progress";
import { AbortError, GradmmError } from "./errors";
import { loadConfigFile } from "./gradmm/config";
import { synthesize, type SynthProgress } from "./gradmm/synthesize";
import { getThreads, sgemmKernel } from "./threads";
import { native } from "./native";

const program = new Command("gradmm").description("synthetic training text by gradient matching (GRADMM)");

program
  .command("synth")
  .argument("<config>", "YAML config (see examples/imdb.yaml)")
  .option("--resume", "continue the run in the output folder")
  .option("--overwrite", "replace a previous run in the output folder")
  .option("--json", "print one JSON summary on stdout")
  .option("--no-progress", "no progress bars (log lines only)")
  .action(async (file: string, o: { resume?: boolean; overwrite?: boolean; json?: boolean; progress: boolean }) => {
    const config = loadConfigFile(file);
    const controller = new AbortController();
    let interrupted = false;
    process.on("SIGINT", () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      process.stderr.write("\nstopping after saving the completed batches (Ctrl-C again to quit now)…\n");
      controller.abort();
    });
    const tty = o.progress && process.stderr.isTTY;
    const bars = tty ? new MultiBar({ clearOnComplete: false, hideCursor: true, format: "{name} |{bar}| {value}/{total} {info} ETA {eta_formatted}" }, Presets.shades_grey) : null;
    const overall = bars?.create(1, 0, { name: "batches", info: "" });
    const current = bars?.create(config.method.outer_steps, 0, { name: "ADMM   ", info: "" });
    let lastLogged = 0;
    const onProgress = (p: SynthProgress) => {
      if (p.phase === "batch") {
        overall?.setTotal(p.batchesTotal);
        overall?.update(p.batchesDone);
        current?.update(p.outer, { info: `class ${p.cls} batch ${p.batch} f(x)=${p.xLoss.toFixed(4)} f(z)=${p.zLoss.toFixed(4)}` });
        if (!bars && (Date.now() - lastLogged > 5000 || p.outer === p.outerSteps)) {
          lastLogged = Date.now();
          process.stderr.write(`[${p.batchesDone}/${p.batchesTotal}] class ${p.cls} batch ${p.batch}: outer ${p.outer}/${p.outerSteps} f(x)=${p.xLoss.toFixed(4)} f(z)=${p.zLoss.toFixed(4)}\n`);
        }
      } else if (p.phase === "batch-done") {
        overall?.update(p.batchesDone);
        current?.update(0);
      } else if (bars) bars.log(p.message + "\n");
      else process.stderr.write(p.message + "\n");
    };
    try {
      const r = await synthesize(config, { signal: controller.signal, onProgress, resume: o.resume, overwrite: o.overwrite });
      bars?.stop();
      const summary = { output: r.outputDir, synthetic: r.samples.length, filtered: r.filtered.length, classes: r.report.classes };
      if (o.json) process.stdout.write(JSON.stringify(summary) + "\n");
      else process.stderr.write(`wrote ${r.samples.length} synthetic and ${r.filtered.length} filtered samples to ${r.outputDir}\n`);
    } catch (e) {
      bars?.stop();
      if (e instanceof AbortError) {
        process.stderr.write(`stopped. Completed batches are saved in ${config.resolved.outputDir}; continue with --resume\n`);
        process.exit(130);
      }
      throw e;
    }
  });

program
  .command("doctor")
  .description("print the engine's backend, threads and build facts (paste it into bug reports)")
  .action(() => {
    const b = native().backendInfo();
    const gpu = b.devices[0];
    const info = {
      backend: b.chosen,
      backend_reason: b.reason,
      ...(b.note ? { backend_note: b.note } : {}),
      gpu: gpu ? gpu.name : null,
      gpu_memory_gib: gpu ? +(gpu.memory / 2 ** 30).toFixed(1) : null,
      gpu_compute_capability: gpu ? gpu.computeCapability : null,
      gpu_count: b.devices.length,
      build: { cuda: b.build.cuda, cublas: b.build.cublas, cuda_archs: b.build.archs || null, cuda_runtime: b.build.cudaRuntime },
      sgemm_kernel: sgemmKernel(),
      threads: getThreads(),
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    };
    process.stdout.write(JSON.stringify(info, null, 2) + "\n");
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof GradmmError) process.stderr.write(`gradmm: ${e.name}: ${e.message}\n`);
  else process.stderr.write(`gradmm: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
