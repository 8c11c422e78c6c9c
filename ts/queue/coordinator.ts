/**
 * `gradmm synth config.yaml --queue redis://…`: the batches of a run on BullMQ workers.
 *
 * synthesize() validates the run and builds the class targets as always, then hands the missing batches to this
 * runner, which
 *   1. publishes the run spec once (ts/queue/protocol.ts: the config, the model's name and sha256, each class's target
 *      inputs) under a run id made from the checkpoint's fingerprint and the output folder;
 *   2. takes every result Redis already holds for the run (a coordinator that died, `--resume`), re-queues failed jobs,
 *      and enqueues one job per missing batch (job ids are the run id and the batch, so a job already queued or
 *      running is not queued twice);
 *   3. follows the run's result stream, storing each batch in the checkpoint (written at most every 2 s, and at the
 *      end), and prints queued / active / done / failed with an ETA;
 *   4. at the end, deletes the run's keys; synthesize() then filters and writes the output files exactly as a
 *      one-machine run does.
 * A batch that fails on the workers (after its retries, or at once for a bad payload or a model mismatch) is
 * reported; the others finish; then the run stops with QUEUE_JOB_FAILED and `--resume` re-queues the failed ones.
 */
import { Queue } from "bullmq";
import type IORedis from "ioredis";
import { resolvePrecision } from "../threads";
import { AbortError } from "../errors";
import type { BatchJob, BatchRunContext, BatchRunner } from "../gradmm/runner";
import { jobIdOf, modelIdentity, resultSchema, runIdOf, specClass, formatIssues, type BatchResultWire, type RunSpec } from "./protocol";
import { PREFIX, QueueError, connect, ready, redisOptions, runKeys, safeUrl } from "./redis";

export interface QueueRunOptions {
  url: string;
  queueName?: string;
  /** Tries per batch before it fails (default 3; a bad payload or a model mismatch fails at once). */
  attempts?: number;
  /** Keep the run's keys in Redis after it finished (default: deleted). */
  keepRun?: boolean;
  /** How often progress is polled and printed (ms, default 1000 / 5000). */
  pollMs?: number;
  printMs?: number;
  log?: (line: string) => void;
}

/** What the coordinator saw, per batch and overall (bench, --json). */
export interface QueueRunStats {
  run: string;
  jobs: number;
  fromRedis: number;
  perBatch: Record<string, { worker: string; queueLatencyS: number; computeS: number; totalS: number; attempt: number; queuedAt: number; startedAt: number; finishedAt: number; setupS: number }>;
  failed: Record<string, string>;
  /** Seconds from the first enqueue to the last result. */
  wallS: number;
  /** Redis INFO used_memory_peak at the end (bytes), when readable. */
  redisPeakBytes: number | null;
}

export type QueueBatchRunner = BatchRunner & { stats: QueueRunStats | null };

const fmtS = (s: number) => (s < 90 ? `${Math.round(s)}s` : s < 5400 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, "0")}m`);

export function queueBatchRunner(o: QueueRunOptions): QueueBatchRunner {
  redisOptions(o.url); // a bad URL is an error before any compute
  const runner = (async (ctx: BatchRunContext) => {
    runner.stats = await runOnQueue(ctx, o);
  }) as QueueBatchRunner;
  runner.stats = null;
  return runner;
}

async function runOnQueue(ctx: BatchRunContext, o: QueueRunOptions): Promise<QueueRunStats> {
  const log = o.log ?? ((m: string) => ctx.onProgress?.({ phase: "setup", message: m }));
  const queueName = o.queueName ?? "gradmm";
  const { config } = ctx;
  const run = runIdOf(ctx.fingerprint, config.resolved.outputDir);
  const keys = runKeys(queueName, run);
  const client: IORedis = connect(o.url);
  const reader: IORedis = connect(o.url); // blocking XREAD
  let queue: Queue | null = null;
  try {
    await ready(client, o.url);
    await ready(reader, o.url);
    queue = new Queue(queueName, { connection: { ...redisOptions(o.url), maxRetriesPerRequest: null }, prefix: PREFIX });
    queue.on("error", () => {});
    const model = modelIdentity(config.model, config.resolved.modelDir);
    const { resolved: _r, ...plainConfig } = config;
    const spec: RunSpec = {
      v: 1,
      run,
      fingerprint: ctx.fingerprint,
      // auto resolved here, so every worker runs the coordinator's precision (a worker without bf16 fails the job)
      config: { ...plainConfig, precision: resolvePrecision(config.precision, config.resolved.precisionField ?? "precision") } as RunSpec["config"],
      model,
      classes: ctx.classes.map((c) => specClass(c.name, c.freeLen, c.targetArgs)),
    };
    const specJson = JSON.stringify(spec);
    const stats: QueueRunStats = { run, jobs: ctx.jobs.length, fromRedis: 0, perBatch: {}, failed: {}, wallS: 0, redisPeakBytes: null };
    const total = ctx.jobs.length;
    let done = total - ctx.missing.length;
    const pending = new Map<string, BatchJob>(ctx.missing.map((j) => [j.key, j]));
    const B = config.method.batch_size;

    // ---- 1. the spec, once per run ----
    const publish = async () => {
      const set = await client.set(keys.spec, specJson, "NX");
      if (set === null && (await client.get(keys.spec)) !== specJson) {
        // the same run id with another spec (another gradmm version): its results cannot be trusted
        log(`queue: Redis held another spec for run ${run}; replacing it and its results`);
        await client.multi().del(keys.results, keys.events).set(keys.spec, specJson).exec();
      }
    };
    await publish();
    log(`queue: run ${run} on ${safeUrl(o.url)} (queue ${queueName}): ${pending.size} of ${total} batches to do; model ${model.name} sha256 ${model.sha256.slice(0, 12)}…`);

    // ---- 2. results already in Redis, then the jobs ----
    let dirty = false;
    const take = (key: string, json: string | null): boolean => {
      const job = pending.get(key);
      if (!job || json === null) return false;
      let wire: BatchResultWire;
      try {
        const r = resultSchema.safeParse(JSON.parse(json));
        if (!r.success) throw new Error(formatIssues(r.error, "result"));
        wire = r.data;
        const L = ctx.classes[job.k].freeLen;
        if (wire.tokens.length !== B || wire.tokens.some((t) => t.length !== L)) throw new Error(`not ${B} rows of ${L} tokens`);
        if (wire.tokens.some((t) => t.some((id) => id >= ctx.vocabSize))) throw new Error(`a token id is outside the vocabulary (${ctx.vocabSize})`);
        for (const f of ["perSampleLoss", "perplexity"] as const) if (wire[f].length !== B) throw new Error(`${f}: ${wire[f].length} values for ${B} samples`);
      } catch (e) {
        stats.failed[key] = `the result stored in Redis is invalid: ${(e as Error).message}`;
        void client.hdel(keys.results, key).catch(() => {}); // --resume computes it again
        log(`queue: batch ${key}: ${stats.failed[key]}`);
        return false;
      }
      const { worker, queuedAt, startedAt, finishedAt, attempt, perplexity, seconds, setupS, ...result } = wire;
      ctx.store(key, { ...result, texts: result.tokens.map((t) => ctx.tokenizer.decode(t)), perplexity, seconds });
      stats.perBatch[key] = { worker, queueLatencyS: (startedAt - queuedAt) / 1000, computeS: seconds, totalS: (finishedAt - queuedAt) / 1000, attempt, queuedAt, startedAt, finishedAt, setupS };
      pending.delete(key);
      delete stats.failed[key];
      done++;
      dirty = true;
      ctx.onProgress?.({ phase: "batch-done", batchesDone: done, batchesTotal: total, seconds });
      return true;
    };
    const already = await client.hkeys(keys.results);
    const wanted = already.filter((k) => pending.has(k));
    for (let i = 0; i < wanted.length; i += 500) {
      const part = wanted.slice(i, i + 500);
      const vals = await client.hmget(keys.results, ...part);
      part.forEach((k, j) => take(k, vals[j]) && stats.fromRedis++);
    }
    if (stats.fromRedis) log(`queue: ${stats.fromRedis} batches were already done in Redis (a previous coordinator of this run)`);
    const jobOf = (j: BatchJob) => ({
      name: "batch",
      data: { v: 1 as const, run, k: j.k, r: j.r, b: j.b, model: { name: model.name, sha256: model.sha256 } },
      opts: { jobId: jobIdOf(run, j.k, j.r, j.b), attempts: o.attempts ?? 3, backoff: { type: "exponential", delay: 1000 }, removeOnComplete: true, removeOnFail: false },
    });
    // The queue's failed set, read as ids and two hash fields: never through BullMQ's Job (whose JSON.parse of a
    // job's data would throw on a job put there by hand), and fetched only when its size changed.
    const failedKey = `${PREFIX}:${queueName}:failed`;
    const failedOfRun = async (): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      for (const id of await client.zrange(failedKey, 0, -1)) {
        const m = /^[0-9a-f]{24}-(\d+)-(\d+)-(\d+)$/.exec(id);
        if (!m || !id.startsWith(`${run}-`)) continue;
        const [reason, atm] = await client.hmget(`${PREFIX}:${queueName}:${id}`, "failedReason", "atm");
        const n = Number(atm ?? 0);
        out.set(`${m[1]}/${m[2]}/${m[3]}`, `${reason ?? "failed"} (after ${n} attempt${n === 1 ? "" : "s"})`);
      }
      return out;
    };
    const enqueue = async (jobs: BatchJob[]) => {
      // failed jobs of this run (a previous try): removed, so that adding them again queues them
      const failedBefore = await failedOfRun();
      for (const j of jobs) if (failedBefore.has(j.key)) await queue!.remove(jobIdOf(run, j.k, j.r, j.b));
      for (let i = 0; i < jobs.length; i += 1000) await queue!.addBulk(jobs.slice(i, i + 1000).map(jobOf));
    };
    const t0 = Date.now();
    await enqueue([...pending.values()]);

    // ---- 3. follow the results ----
    let lastId = "0-0";
    let lastSave = Date.now(), lastPoll = 0, lastPrint = 0, lastReconcile = Date.now(), lastFailedCount = -1;
    const pollMs = o.pollMs ?? 1000, printMs = o.printMs ?? 5000;
    const doneAtStart = done;
    const save = () => {
      if (!dirty) return;
      ctx.saveCheckpoint();
      dirty = false;
      lastSave = Date.now();
    };
    while (pending.size > 0) {
      if (ctx.signal?.aborted) {
        save();
        log(`queue: stopped; the ${pending.size} batches left stay queued for the workers: \`--resume\` collects them`);
        throw new AbortError();
      }
      let res = null as [string, [string, string[]][]][] | null;
      try {
        res = (await reader.xread("COUNT", 1000, "BLOCK", pollMs, "STREAMS", keys.events, lastId)) as typeof res;
      } catch (e) {
        log(`queue: Redis read failed (${(e as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
      if (res) {
        const entries = res[0][1];
        lastId = entries[entries.length - 1][0];
        const ks = entries.map(([, f]) => f[1]).filter((k) => pending.has(k));
        if (ks.length) {
          const vals = await client.hmget(keys.results, ...ks);
          ks.forEach((k, i) => take(k, vals[i]));
        }
      }
      const now = Date.now();
      if (now - lastSave > 2000) save();
      if (now - lastPoll >= pollMs) {
        lastPoll = now;
        // jobs of this run that failed for good
        const nFailed = await client.zcard(failedKey);
        if (nFailed !== lastFailedCount) {
          lastFailedCount = nFailed;
          for (const [key, reason] of await failedOfRun())
            if (pending.has(key) && stats.failed[key] === undefined) {
              stats.failed[key] = reason;
              log(`queue: batch ${key} failed: ${reason}`);
            }
        }
        if (Object.keys(stats.failed).filter((k) => pending.has(k)).length === pending.size) break;
        if (now - lastPrint >= printMs || pending.size === 0) {
          lastPrint = now;
          const c = await queue.getJobCounts("waiting", "active", "delayed", "prioritized", "failed");
          const rate = (done - doneAtStart) / ((now - t0) / 1000);
          const eta = rate > 0 ? fmtS(pending.size / rate) : "…";
          log(`queue: ${(c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0)} queued, ${c.active ?? 0} active, ${done}/${total} done, ${Object.keys(stats.failed).length} failed, ETA ${eta}`);
        }
      }
      if (now - lastReconcile > 10_000) {
        lastReconcile = now;
        // Redis lost the run (restarted without persistence): publish and queue the rest again
        if (!(await client.exists(keys.spec))) {
          log(`queue: the run is gone from Redis (restarted without AOF?); publishing it again and re-queueing ${pending.size} batches`);
          await publish();
          lastId = "0-0";
          await enqueue([...pending.values()].filter((j) => stats.failed[j.key] === undefined));
        }
      }
    }
    save();
    stats.wallS = (Date.now() - t0) / 1000;
    try {
      const info = await client.info("memory");
      const m = /used_memory_peak:(\d+)/.exec(info);
      stats.redisPeakBytes = m ? Number(m[1]) : null;
    } catch {
      /* not fatal */
    }
    if (pending.size > 0) {
      const lines = [...pending.keys()].map((k) => `  batch ${k}: ${stats.failed[k]}`);
      throw new QueueError(
        "QUEUE_JOB_FAILED",
        `${pending.size} of ${total} batches failed on the workers (the other ${done} are saved in the checkpoint):\n${lines.join("\n")}\nfix the workers (or the model they have), then run the same command with --resume`,
      );
    }
    if (!o.keepRun) await client.del(keys.spec, keys.results, keys.events);
    log(`queue: all ${total} batches done${stats.fromRedis ? ` (${stats.fromRedis} from Redis)` : ""} in ${fmtS(stats.wallS)}`);
    return stats;
  } finally {
    await queue?.close().catch(() => {});
    reader.disconnect();
    client.disconnect(); // (quit would wait for ever on a connection that never came up)
  }
}
