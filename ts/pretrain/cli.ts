#!/usr/bin/env node
/**
 * `npm run pretrain -- configs/pretrain/default.yaml [--max-minutes N] [--max-tokens N] [--threads N] [--resume]`:
 * trains the default model and writes its Hugging Face folder. Progress goes to stderr (a bar on a terminal,
 * log lines otherwise); stdout carries only the --json summary.
 */
import * as fs from "node:fs";
import { Command } from "commander";
import { MultiBar } from "cli-progress";
import { AbortError, GradmmError } from "../index";
import { loadPretrainConfig } from "./config";
import { writeCard, type RunSummary } from "./export";
import { pretrain, summaryFile, type PretrainEvent } from "./train";

const positive = (name: string) => (v: string) => {
  const x = Number(v);
  if (!(x > 0)) throw new Error(`${name} must be a positive number, got '${v}'`);
  return x;
};

const program = new Command("pretrain")
  .description("train the default GPT-2 from scratch on the npm corpus packages")
  .argument("<config>", "YAML recipe (configs/pretrain/default.yaml)")
  .option("--resume", "continue from the last checkpoint of this config")
  .option("--max-minutes <n>", "wall-time budget (overrides train.max_minutes)", positive("--max-minutes"))
  .option("--max-tokens <n>", "training tokens (overrides train.max_tokens)", positive("--max-tokens"))
  .option("--threads <n>", "CPU threads (overrides train.threads and GRADMM_THREADS)", (v) => Number.parseInt(v, 10))
  .option("--card-only", "rewrite the output folder's README, log and loss curve from the last run's summary (no training)")
  .option("--json", "print a JSON summary on stdout")
  .option("--no-progress", "log lines instead of a progress bar")
  .action(async (file: string, o: { resume?: boolean; cardOnly?: boolean; maxMinutes?: number; maxTokens?: number; threads?: number; json?: boolean; progress: boolean }) => {
    const cfg = loadPretrainConfig(file);
    if (o.cardOnly) {
      const summary = JSON.parse(fs.readFileSync(summaryFile(cfg), "utf8")) as RunSummary;
      writeCard(cfg.resolved.outDir, summary);
      process.stderr.write(`rewrote the model card in ${cfg.resolved.outDir}\n`);
      return;
    }
    const controller = new AbortController();
    let interrupted = false;
    process.on("SIGINT", () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      process.stderr.write("\nstopping after this step and saving a checkpoint (Ctrl-C again to quit now)…\n");
      controller.abort();
    });
    const bars = o.progress && process.stderr.isTTY
      ? new MultiBar({ format: "pretrain |{bar}| {value}/{total} steps | loss {loss} | lr {lr} | {tps} tok/s | ETA {eta_formatted}", hideCursor: true, etaBuffer: 50, clearOnComplete: false })
      : null;
    let bar: ReturnType<MultiBar["create"]> | null = null;
    let lastLine = 0;
    const say = (s: string) => (bars ? bars.log(s + "\n") : process.stderr.write(s + "\n"));
    const onEvent = (e: PretrainEvent) => {
      if (e.type === "log") say(e.message);
      else if (e.type === "start") bar = bars?.create(e.plannedSteps, e.step, { loss: "-", lr: "-", tps: "-" }) ?? null;
      else if (e.type === "eval") say(`step ${e.step}: validation loss ${e.valLoss.toFixed(4)} (${Object.entries(e.perSource).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")})`);
      else if (e.type === "step") {
        if (bar) {
          bar.setTotal(e.plannedSteps);
          bar.update(e.step, { loss: e.loss.toFixed(3), lr: e.lr.toExponential(2), tps: Math.round(e.tokensPerSec) });
        } else if (Date.now() - lastLine > 30_000 || e.step === e.plannedSteps) {
          lastLine = Date.now();
          const left = ((e.plannedSteps - e.step) * e.elapsedSeconds) / Math.max(1, e.step);
          say(`step ${e.step}/${e.plannedSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${Math.round(e.tokensPerSec)} tok/s elapsed ${(e.elapsedSeconds / 60).toFixed(1)} min, about ${(left / 60).toFixed(1)} min to go`);
        }
      }
    };
    try {
      const r = await pretrain(cfg, { resume: o.resume, maxMinutes: o.maxMinutes, maxTokens: o.maxTokens, threads: o.threads, signal: controller.signal, onEvent });
      bars?.stop();
      const summary = { outDir: r.outDir, steps: r.steps, tokens: r.tokensSeen, minutes: r.minutes, trainLoss: r.finalTrainLoss, valLoss: r.valLoss, imdbBitsPerByte: r.imdb.bitsPerByte };
      if (o.json) process.stdout.write(JSON.stringify(summary) + "\n");
      else process.stderr.write(`wrote ${r.outDir}: ${r.steps} steps, ${r.tokensSeen.toLocaleString("en-US")} tokens, val loss ${r.valLoss.toFixed(4)}, IMDB ${r.imdb.bitsPerByte.toFixed(4)} bits/byte\n`);
    } catch (e) {
      bars?.stop();
      if (e instanceof AbortError) {
        process.stderr.write(`${e.message}\n`);
        process.exitCode = 130;
      } else if (e instanceof GradmmError) {
        process.stderr.write(`error: ${e.message}\n`);
        process.exitCode = 1;
      } else throw e;
    }
  });

program.parseAsync(process.argv).catch((e) => {
  process.stderr.write(`error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
