/** The CLI's queue pieces: `gradmm worker` and the options `synth --queue` adds (registered from ts/cli.ts). */
import { Command, CommanderError } from "commander";
import { EXIT_CODES } from "../errors";

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new CommanderError(EXIT_CODES.usage, "gradmm.usage", `error: ${name} must be an integer ≥ ${min}, not ${JSON.stringify(v)}`);
  return n;
};

export function registerQueueCommands(program: Command): void {
  program
    .command("worker")
    .description("compute batches of runs started with `gradmm synth CONFIG --queue URL` (README: \"Many machines\")")
    .requiredOption("--queue <url>", "Redis URL: redis://[:password@]host:port[/db], rediss://… for TLS")
    .option("--queue-name <name>", "the BullMQ queue (the coordinator's --queue-name)", "gradmm")
    .option("--concurrency <n>", "batches in flight at once, sharing each model (default 1; one worker process per GPU)", int("--concurrency", 1), 1)
    .option("--model <path...>", "this machine's model files or folders (PATH or NAME=PATH), loaded now; a run naming NAME uses it (sha256 checked)")
    .option("--threads <n>", "CPU threads for the engine (0 = all cores)", int("--threads", 0))
    .option("--lock-seconds <s>", "job lock: a dead worker's batch is taken up again after this (renewed while a batch runs)", int("--lock-seconds", 1), 60)
    .option("--stalled-seconds <s>", "how often to look for jobs of dead workers (default: half the lock)", int("--stalled-seconds", 1))
    .option("--max-jobs <n>", "exit after this many jobs", int("--max-jobs", 1))
    .action(async (o: { queue: string; queueName: string; concurrency: number; model?: string[]; threads?: number; lockSeconds: number; stalledSeconds?: number; maxJobs?: number }) => {
      const { startWorker } = await import("./worker"); // bullmq and ioredis only when needed
      const w = await startWorker({
        url: o.queue,
        queueName: o.queueName,
        concurrency: o.concurrency,
        models: o.model,
        threads: o.threads,
        lockMs: o.lockSeconds * 1000,
        stalledMs: o.stalledSeconds ? o.stalledSeconds * 1000 : undefined,
        maxJobs: o.maxJobs,
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) process.exit(EXIT_CODES.interrupted);
        stopping = true;
        process.stderr.write(`\n${signal}: finishing the batches in progress, taking no new ones (${signal === "SIGINT" ? "Ctrl-C" : signal} again to quit now; their jobs are then taken up by other workers once their lock expires)…\n`);
        void w.close();
      };
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
      await w.closed;
      process.stderr.write(`worker stopped: ${w.stats.completed} done, ${w.stats.failed} failed, ${w.stats.duplicates} duplicates not stored again\n`);
    });
}
