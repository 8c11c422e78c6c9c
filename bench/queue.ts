/**
 * `npm run bench -- queue`: the queue (BullMQ on a loopback redis-server) under load, bounded in jobs and time.
 *
 * 1. One process: the run's batches computed in this process (synthesize() as `gradmm synth` runs it, 1 thread):
 *    seconds per job.
 * 2. The same run with `--queue`: this process is the coordinator, W `gradmm worker` processes (1 thread each)
 *    compute: jobs/s, the queue wait (enqueued → started) p50/p99, the hand-off gap (a worker's previous job stored
 *    → its next started) p50/p99, the worker's own overhead per job (outside the batch's compute), CPU seconds of
 *    every process (workers, Redis, coordinator) against the one-process run, Redis memory.
 * 3. Simulated workers (in-process BullMQ workers in one child process that store a canned result after a fixed
 *    time): the coordinator's CPU per job and in all as the workers grow to 100.
 * Both runs must give the same synthetic.jsonl (checked).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import IORedis from "ioredis";
import { parseConfig, synthesize } from "../ts/index";
import { type BatchRunner, packageRoot, queueBatchRunner, type QueueRunStats } from "../ts/advanced";
import { startRedis, type RedisServer } from "./redis_server";

export interface QueueBenchOptions {
  jobs: number;
  workers: number;
  /** The whole benchmark stops (and fails) after this. */
  maxSeconds: number;
  simWorkers: number[];
  simJobs: number;
  /** A simulated batch's duration (ms). */
  simMs: number;
  /** The default model's batch at the paper's settings (s), the goal's yardstick (bench/README "Speed"). */
  defaultBatchS: number;
  /** The model every worker loads (a known name, GGUF file or folder); default the tiny fixture model. */
  model?: string;
  log?: (l: string) => void;
}

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** utime + stime of a process, seconds (Linux /proc). */
function procCpuS(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}
async function redisInfo(redis: IORedis) {
  const info = await redis.info();
  const num = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1] ?? NaN);
  return { cpuS: num("used_cpu_user") + num("used_cpu_sys"), usedMemory: num("used_memory"), peakMemory: num("used_memory_peak") };
}

function runConfig(dir: string, name: string, jobs: number, model?: string) {
  const root = packageRoot();
  return parseConfig(
    {
      data: { path: path.join(root, "examples", "data", "imdb", "train.jsonl"), examples_per_class: 6 },
      classes: [
        { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
        { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
      ],
      template: " It was",
      model: model ?? path.join(root, "test", "fixtures", "tiny_lm"),
      // the default batch size (10), a short ADMM so that the queue's cost is visible
      method: { batch_size: 10, batches_per_class: Math.ceil(jobs / 2), length: 6, outer_steps: 2, inner_steps: 5, top_k: 20, init_candidates: 4 },
      filter: { enabled: false },
      output: path.join(dir, name),
      seed: 1,
      threads: 1,
    },
    dir,
    `${name}.yaml`,
  );
}

/** Wraps a runner to measure this process's CPU and wall time while it runs (the coordinator's cost). */
function measured(runner: BatchRunner & { stats: QueueRunStats | null }) {
  const m = { cpuS: 0, wallS: 0 };
  const wrapped: BatchRunner = async (ctx) => {
    const c0 = process.cpuUsage(), t0 = Date.now();
    try {
      await runner(ctx);
    } finally {
      const c = process.cpuUsage(c0);
      m.cpuS = (c.user + c.system) / 1e6;
      m.wallS = (Date.now() - t0) / 1000;
    }
  };
  return { wrapped, m };
}

function spawnReady(args: string[], readyPattern: RegExp, count: number, log: (l: string) => void): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    let seen = 0, buf = "";
    child.stderr!.on("data", (d) => {
      buf += d;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const l of lines) if (readyPattern.test(l) && ++seen === count) resolve(child);
      if (/Error \[|Error:/.test(String(d)) && seen < count) log(String(d).trim());
    });
    child.on("exit", (code) => seen < count && reject(new Error(`${args.join(" ")} exited (${code}) before it was ready`)));
  });
}

async function stopAll(children: ChildProcess[]) {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          c.once("exit", () => r());
          c.kill("SIGKILL");
        }),
    ),
  );
}

export async function benchQueue(o: QueueBenchOptions) {
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-bench-queue-"));
  const children: ChildProcess[] = [];
  let server: RedisServer | null = null;
  const controller = new AbortController();
  const deadline = setTimeout(() => {
    log(`bench queue: over --max-seconds ${o.maxSeconds}; stopping`);
    controller.abort();
    void stopAll(children);
  }, o.maxSeconds * 1000);
  const cli = path.join(packageRoot(), "dist", "ts", "cli.js");
  try {
    server = await startRedis({});
    const redis = new IORedis(server.url);
    const silent = () => {};

    // ---- 1. one process ----
    log(`one process: ${o.jobs} jobs on 1 thread…`);
    const localCfg = runConfig(dir, "local", o.jobs, o.model);
    // CPU of the batch loop alone: from the targets' end to the filter's start
    let cpuAtBatches: NodeJS.CpuUsage | null = null, cpuBatches: NodeJS.CpuUsage | null = null;
    const local = await synthesize(localCfg, {
      htmlReport: false,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === "step" && p.step === "target" && p.done === p.total) cpuAtBatches = process.cpuUsage();
        if (p.phase === "filter" && cpuAtBatches && !cpuBatches) cpuBatches = process.cpuUsage(cpuAtBatches);
      },
    });
    const timings = local.report.timings as Record<string, number>;
    const nJobs = 2 * localCfg.method.batches_per_class;
    const localJobS = timings.batches_s / nJobs;
    const localCpuS = cpuBatches ? ((cpuBatches as NodeJS.CpuUsage).user + (cpuBatches as NodeJS.CpuUsage).system) / 1e6 : NaN;
    log(`  ${timings.batches_s.toFixed(1)} s for ${nJobs} jobs: ${(localJobS * 1000).toFixed(1)} ms per job, ${((localCpuS / nJobs) * 1000).toFixed(1)} ms CPU per job`);

    // ---- 2. the queue with W worker processes ----
    log(`queue: ${o.workers} worker processes…`);
    const workers: ChildProcess[] = [];
    for (let i = 0; i < o.workers; i++) {
      const w = await spawnReady([cli, "worker", "--queue", server.url, "--threads", "1", "--model", localCfg.resolved.modelDir], /^worker .* on redis/, 1, log);
      workers.push(w);
      children.push(w);
    }
    const cpuBefore = workers.map((w) => procCpuS(w.pid!));
    const r0 = await redisInfo(redis);
    const runner = queueBatchRunner({ url: server.url, log: silent });
    const { wrapped, m } = measured(runner);
    const queued = await synthesize(runConfig(dir, "queued", o.jobs, o.model), { htmlReport: false, batchRunner: wrapped, signal: controller.signal });
    const r1 = await redisInfo(redis);
    const workerCpuS = workers.reduce((a, w, i) => a + procCpuS(w.pid!) - cpuBefore[i], 0);
    await stopAll(workers);
    const same = fs.readFileSync(path.join(dir, "local", "synthetic.jsonl")).equals(fs.readFileSync(path.join(dir, "queued", "synthetic.jsonl")));
    if (!same) throw new Error("the queued run's synthetic.jsonl differs from the one-process run's");
    const st = runner.stats!;
    const per = Object.values(st.perBatch);
    const byWorker = new Map<string, typeof per>();
    for (const b of per) byWorker.set(b.worker, [...(byWorker.get(b.worker) ?? []), b]);
    const gaps: number[] = [];
    for (const list of byWorker.values()) {
      list.sort((a, b) => a.startedAt - b.startedAt);
      for (let i = 1; i < list.length; i++) gaps.push((list[i].startedAt - list[i - 1].finishedAt) / 1000);
    }
    const inWorker = per.map((b) => (b.finishedAt - b.startedAt) / 1000 - b.computeS - b.setupS);
    const setups = per.filter((b) => b.setupS > 0.001).map((b) => b.setupS);
    const compute = per.map((b) => b.computeS);
    // per job: the hand-off gap, the worker's bookkeeping, and the workers' setups spread over the jobs
    const overheadPerJobS = mean(gaps) + mean(inWorker) + setups.reduce((a, b) => a + b, 0) / per.length;
    const cpuQueueS = workerCpuS + (r1.cpuS - r0.cpuS) + m.cpuS;
    const cpuLocalS = localCpuS;
    const queue = {
      workers: o.workers,
      jobs: nJobs,
      identical_output: same,
      wall_s: m.wallS,
      jobs_per_s: nJobs / m.wallS,
      one_process_jobs_per_s: 1 / localJobS,
      compute_per_job_ms: { one_process: localJobS * 1000, on_workers_mean: mean(compute) * 1000, on_workers_p50: pct(compute, 50) * 1000 },
      queue_wait_s: { p50: pct(per.map((b) => b.queueLatencyS), 50), p99: pct(per.map((b) => b.queueLatencyS), 99) },
      handoff_gap_ms: { p50: pct(gaps, 50) * 1000, p99: pct(gaps, 99) * 1000, mean: mean(gaps) * 1000 },
      in_worker_overhead_ms: { p50: pct(inWorker, 50) * 1000, p99: pct(inWorker, 99) * 1000, mean: mean(inWorker) * 1000 },
      worker_setup: { count: setups.length, mean_ms: mean(setups) * 1000, total_s: setups.reduce((a, b) => a + b, 0) },
      overhead_per_job_ms: overheadPerJobS * 1000,
      overhead_vs_tiny_job: overheadPerJobS / localJobS,
      overhead_vs_default_batch: overheadPerJobS / o.defaultBatchS,
      cpu_s: { workers: workerCpuS, redis: r1.cpuS - r0.cpuS, coordinator: m.cpuS, total: cpuQueueS, one_process: cpuLocalS },
      cpu_overhead_per_job_ms: ((cpuQueueS - cpuLocalS) / nJobs) * 1000,
      redis_memory_bytes: { before: r0.usedMemory, peak: r1.peakMemory, after: r1.usedMemory },
      attempts_over_1: per.filter((b) => b.attempt > 0).length,
    };
    log(`  ${queue.jobs_per_s.toFixed(1)} jobs/s (one process ${queue.one_process_jobs_per_s.toFixed(1)}), overhead ${queue.overhead_per_job_ms.toFixed(1)} ms per job`);

    // ---- 3. simulated workers: the coordinator's cost as they grow ----
    const sim: Record<string, unknown>[] = [];
    const simEntry = path.join(packageRoot(), "dist", "bench", "queue_sim_worker.js");
    for (const n of o.simWorkers) {
      log(`simulated: ${n} in-process workers, ${o.simJobs} jobs of ${o.simMs} ms…`);
      const child = await spawnReady([simEntry, server.url, String(n), String(o.simMs)], /^ready$/, 1, log);
      children.push(child);
      const childCpu0 = procCpuS(child.pid!);
      const s0 = await redisInfo(redis);
      const simRunner = queueBatchRunner({ url: server.url, log: silent });
      const mm = measured(simRunner);
      await synthesize(runConfig(dir, `sim-${n}`, o.simJobs), { htmlReport: false, batchRunner: mm.wrapped, signal: controller.signal });
      const s1 = await redisInfo(redis);
      const childCpu = procCpuS(child.pid!) - childCpu0;
      await stopAll([child]);
      const jobs = simRunner.stats!.jobs;
      const lat = Object.values(simRunner.stats!.perBatch).map((b) => b.queueLatencyS);
      sim.push({
        workers: n,
        jobs,
        wall_s: mm.m.wallS,
        jobs_per_s: jobs / mm.m.wallS,
        ideal_jobs_per_s: (n * 1000) / o.simMs,
        coordinator_cpu_s: mm.m.cpuS,
        coordinator_cpu_per_job_ms: (mm.m.cpuS / jobs) * 1000,
        coordinator_cpu_share: mm.m.cpuS / mm.m.wallS,
        redis_cpu_per_job_ms: ((s1.cpuS - s0.cpuS) / jobs) * 1000,
        workers_cpu_per_job_ms: (childCpu / jobs) * 1000,
        queue_wait_s: { p50: pct(lat, 50), p99: pct(lat, 99) },
        redis_peak_bytes: s1.peakMemory,
      });
      log(`  ${(jobs / mm.m.wallS).toFixed(0)} jobs/s; coordinator ${((mm.m.cpuS / jobs) * 1000).toFixed(2)} ms CPU per job`);
    }
    redis.disconnect();
    return {
      machine: { cpu: os.cpus()[0]?.model ?? null, cores: os.cpus().length, node: process.version, loadavg_end: os.loadavg() },
      redis: (await import("node:child_process")).spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout.trim(),
      settings: { jobs: o.jobs, workers: o.workers, batch_size: 10, model: o.model ?? "test/fixtures/tiny_lm", method: localCfg.method, default_batch_s: o.defaultBatchS, sim_ms: o.simMs, sim_jobs: o.simJobs },
      one_process: { batches_s: timings.batches_s, per_job_ms: localJobS * 1000, cpu_s: localCpuS, cpu_per_job_ms: (localCpuS / nJobs) * 1000 },
      queue,
      simulated: sim,
      goal: { overhead_le_5pct_of_default_batch: queue.overhead_vs_default_batch <= 0.05 },
    };
  } finally {
    clearTimeout(deadline);
    await stopAll(children);
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function formatQueueTable(r: Awaited<ReturnType<typeof benchQueue>>): string {
  const q = r.queue;
  const f = (x: number, d = 1) => x.toFixed(d);
  const lines = [
    `${r.settings.jobs} jobs (batch size 10, ${r.settings.model === "test/fixtures/tiny_lm" ? "tiny model" : r.settings.model}; simulated runs: tiny model), ${q.workers} worker processes, ${r.machine.cores} cores (${r.machine.cpu}), ${r.redis}`,
    `one process:        ${f(r.one_process.per_job_ms)} ms per job (${f(r.one_process.cpu_per_job_ms)} ms CPU), ${f(q.one_process_jobs_per_s)} jobs/s`,
    `queue:              ${f(q.jobs_per_s)} jobs/s, output identical: ${q.identical_output}`,
    `queue wait:         p50 ${f(q.queue_wait_s.p50, 2)} s, p99 ${f(q.queue_wait_s.p99, 2)} s (enqueued → started; all ${q.jobs} enqueued at once)`,
    `hand-off gap:       p50 ${f(q.handoff_gap_ms.p50)} ms, p99 ${f(q.handoff_gap_ms.p99)} ms (a worker's result stored → its next job started)`,
    `in-worker overhead: p50 ${f(q.in_worker_overhead_ms.p50)} ms, p99 ${f(q.in_worker_overhead_ms.p99)} ms (validation, dedupe check, store; outside compute)`,
    `worker setup:       ${q.worker_setup.count} × ${f(q.worker_setup.mean_ms)} ms (spec, model, a class's target: once per worker, run and class)`,
    `overhead per job:   ${f(q.overhead_per_job_ms)} ms = ${f(100 * q.overhead_vs_tiny_job)}% of a job in one process, ${f(100 * q.overhead_vs_default_batch, 4)}% of the default model's batch (${r.settings.default_batch_s} s); goal ≤ 5%: ${r.goal.overhead_le_5pct_of_default_batch ? "met" : "NOT met"}`,
    `CPU:                workers ${f(q.cpu_s.workers)} s + Redis ${f(q.cpu_s.redis)} s + coordinator ${f(q.cpu_s.coordinator)} s = ${f(q.cpu_s.total)} s vs ${f(q.cpu_s.one_process)} s in one process: ${f(q.cpu_overhead_per_job_ms)} ms per job`,
    `Redis memory:       ${f(q.redis_memory_bytes.before / 2 ** 20)} MiB before, ${f(q.redis_memory_bytes.peak / 2 ** 20)} MiB peak`,
    "",
    "| simulated workers | jobs | jobs/s (ideal) | coordinator CPU per job | coordinator CPU share | Redis CPU per job | queue wait p50 / p99 |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...r.simulated.map((s: Record<string, any>) => `| ${s.workers} | ${s.jobs} | ${f(s.jobs_per_s, 0)} (${f(s.ideal_jobs_per_s, 0)}) | ${f(s.coordinator_cpu_per_job_ms, 2)} ms | ${f(100 * s.coordinator_cpu_share)}% | ${f(s.redis_cpu_per_job_ms, 2)} ms | ${f(s.queue_wait_s.p50, 2)} / ${f(s.queue_wait_s.p99, 2)} s |`),
  ];
  return lines.join("\n");
}
