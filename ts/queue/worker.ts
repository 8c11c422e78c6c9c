/**
 * `gradmm worker --queue redis://…`: takes batches from the BullMQ queue, computes them and stores each result once.
 *
 * - Each model is loaded once and cached (by sha256); each run's spec and class setups (targets rebuilt from the
 *   published inputs, prefix caches) once per run (the last few runs are kept).
 * - Every payload is validated (the job's data by a strict schema, the run's config by the config schema); nothing
 *   from Redis is ever run as code. A bad payload, a model this worker lacks or whose sha256 differs fails that job at
 *   once (BullMQ's UnrecoverableError, no retries) with a message saying why; the worker goes on with the next job.
 * - Results are stored with HSETNX (ts/queue/redis.ts): a batch computed twice (a stalled job taken up again after a
 *   worker died) is stored and announced once.
 * - The job's lock is renewed every lockMs/2 while the batch runs (the engine runs off the event loop), so a batch of
 *   any length keeps it; a killed worker's job is taken up again lockMs (+ the stalled check's interval) later.
 */
import * as os from "node:os";
import * as path from "node:path";
import * as fs from "node:fs";
import { UnrecoverableError, Worker, type Job, type JobJsonRaw } from "bullmq";
import type IORedis from "ioredis";
import { GradmmError } from "../errors";
import { loadModel, type LoadedModel } from "../load_model";
import { KNOWN_MODELS } from "../registry";
import { pieceTokens, startTokens } from "../gradmm/lm";
import { classTargets, type BatchResult } from "../gradmm/method";
import type { NativeMatchTarget } from "../native";
import { memoryEstimate } from "../gradmm/synthesize";
import { setThreads } from "../threads";
import type { Tokenizer } from "../tokenizer";
import { allowedMask, classSetup, computeBatch, type WorkerClass } from "./batch";
import { encodeNum, modelIdentity, parsePayload, parseSpec, targetArgsOf, type JobPayload, type RunSpec } from "./protocol";
import { PREFIX, QueueError, connect, ready, redisOptions, runKeys, safeUrl, storeResult } from "./redis";

export interface WorkerOptions {
  url: string;
  queueName?: string;
  /** Batches in flight at once (default 1). They share one copy of each model; the engine runs one call at a time per model. */
  concurrency?: number;
  /** Local model files or folders ("PATH" or "NAME=PATH"), loaded at start; a job naming NAME uses this copy (and checks its sha256). */
  models?: string[];
  threads?: number;
  /** BullMQ lock duration in ms (default 60 000): a dead worker's job is taken up again after it. */
  lockMs?: number;
  /** How often the stalled-job check runs (default lockMs / 2). */
  stalledMs?: number;
  /** A job may stall (its worker died) this many times before it fails (default 3). */
  maxStalled?: number;
  /** Exit after this many jobs (benchmarks, tests). */
  maxJobs?: number;
  /** Fake compute: store a canned result after this many ms instead of running the model (bench: the queue alone). */
  simulateMs?: number;
  log?: (line: string) => void;
}

interface CachedModel {
  name: string;
  path: string;
  sha256: string;
  loaded: LoadedModel;
  tokenizer: Tokenizer;
}

interface RunState {
  spec: RunSpec;
  model: CachedModel;
  allowed: Uint8Array;
  classes: Map<number, Promise<WorkerClass>>;
  /** method.objective whitened_contrastive: every class's target, built together once (classTargets) */
  targets?: Promise<NativeMatchTarget[]>;
}

export interface WorkerHandle {
  worker: Worker;
  /** Resolves when the worker has stopped (close() called, or maxJobs reached). */
  closed: Promise<void>;
  close(force?: boolean): Promise<void>;
  stats: { completed: number; failed: number; duplicates: number };
}

const workerName = () => `${os.hostname()}:${process.pid}`;

/** Marks a job whose stored data or options are not JSON (written into Redis by hand): failed with a clear error. */
const UNPARSABLE = "$gradmm_unparsable_job";

/**
 * BullMQ's Worker parses a job's data and options with JSON.parse when it takes the job; on a job whose data is not
 * JSON that throws outside the processor (the job would sit active until it stalls). Here such a job reaches the
 * processor instead, which fails it at once saying why.
 */
class CheckedWorker extends Worker {
  protected override createJob(data: JobJsonRaw, jobId: string): Job {
    try {
      return super.createJob(data, jobId);
    } catch (e) {
      const bad = { [UNPARSABLE]: `${(e as Error).message}; its data begins ${JSON.stringify(String(data.data ?? "").slice(0, 80))}` };
      return super.createJob({ ...data, data: JSON.stringify(bad), opts: "{}", progress: "0" } as JobJsonRaw, jobId);
    }
  }
}

export async function startWorker(o: WorkerOptions): Promise<WorkerHandle> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const queueName = o.queueName ?? "gradmm";
  const lockMs = o.lockMs ?? 60_000;
  if (o.threads) setThreads(o.threads);
  redisOptions(o.url); // a bad URL fails here, before any connection
  const client: IORedis = connect(o.url);
  await ready(client, o.url);

  // ---- models: --model entries loaded now (no event-loop stall while a job holds its lock) ----
  const byName = new Map<string, string>();
  for (const m of o.models ?? []) {
    const eq = m.indexOf("=");
    const [name, p] = eq > 0 && !fs.existsSync(m) ? [m.slice(0, eq), m.slice(eq + 1)] : [null, m];
    const abs = path.resolve(p);
    if (!fs.existsSync(abs)) throw new QueueError("MODEL_MISSING", `--model ${m}: no such file or folder`);
    byName.set(name ?? path.basename(abs), abs);
  }
  const models = new Map<string, Promise<CachedModel>>(); // by path
  const loadAt = (name: string, p: string): Promise<CachedModel> => {
    let hit = models.get(p);
    if (!hit) {
      hit = (async () => {
        const id = modelIdentity(undefined, p);
        log(`loading model ${name} from ${p} (sha256 ${id.sha256.slice(0, 12)}…)`);
        const loaded = loadModel(p);
        if (!loaded.tokenizer) throw new QueueError("MODEL_MISSING", `${p}: the model has no tokenizer`);
        return { name, path: p, sha256: id.sha256, loaded, tokenizer: loaded.tokenizer };
      })();
      models.set(p, hit);
      hit.catch(() => models.delete(p));
    }
    return hit;
  };
  for (const [name, p] of byName) await loadAt(name, p);

  /** This worker's copy of the model a job names: --model NAME first, then a known model's cache, then the coordinator's path. */
  const modelFor = async (want: { name: string; sha256: string; path?: string }, run: string): Promise<CachedModel> => {
    let p = byName.get(want.name);
    if (!p && Object.prototype.hasOwnProperty.call(KNOWN_MODELS, want.name)) {
      const { resolveModelPath } = await import("../registry");
      try {
        p = resolveModelPath(want.name);
      } catch (e) {
        throw new QueueError("MODEL_MISSING", `run ${run}: model ${want.name} is not on this worker (${workerName()}): ${(e as Error).message}`);
      }
    }
    if (!p && want.path && fs.existsSync(want.path)) p = want.path;
    if (!p) throw new QueueError("MODEL_MISSING", `run ${run}: model ${want.name} (sha256 ${want.sha256}) is not on this worker (${workerName()}); start it with --model PATH (or NAME=PATH)`);
    const m = await loadAt(want.name, p);
    if (m.sha256 !== want.sha256)
      throw new QueueError(
        "MODEL_MISMATCH",
        `run ${run}: model mismatch on worker ${workerName()}: the run's ${want.name} has sha256 ${want.sha256}, this worker's copy ${p} has sha256 ${m.sha256}; give this worker the run's model file (--model) or stop it`,
      );
    return m;
  };

  // ---- runs: spec and class setups, cached (the last 8 runs) ----
  const runs = new Map<string, Promise<RunState>>();
  const runFor = (p: JobPayload): Promise<RunState> => {
    let hit = runs.get(p.run);
    if (!hit) {
      hit = (async () => {
        const spec = parseSpec(await client.get(runKeys(queueName, p.run).spec), p.run);
        if (spec.model.name !== p.model.name || spec.model.sha256 !== p.model.sha256)
          throw new QueueError("QUEUE_PAYLOAD", `invalid job payload: its model ${p.model.name} ${p.model.sha256} is not the run's (${spec.model.name} ${spec.model.sha256})`);
        const model = await modelFor(spec.model, p.run);
        const mc = model.loaded.model.config;
        if (spec.classes.length !== spec.config.classes.length) throw new QueueError("QUEUE_PAYLOAD", `run ${p.run}: invalid run spec: ${spec.classes.length} class targets for ${spec.config.classes.length} classes`);
        // the pinned positions of every row: the lead (<bos>, where the tokenizer puts one) and the template
        const template = pieceTokens(model.tokenizer, spec.config.template).length + startTokens(model.tokenizer).length;
        spec.classes.forEach((c, k) => {
          const a = targetArgsOf(spec, k);
          const badTok = a.tokens.find((t) => t < 0 || t >= mc.vocabSize) ?? a.labels.find((t) => t < 0 || t >= mc.vocabSize);
          if (badTok !== undefined) throw new QueueError("QUEUE_PAYLOAD", `run ${p.run}: invalid run spec: classes.${k}.target: token id ${badTok} is outside the model's vocabulary (${mc.vocabSize})`);
          if (a.T > mc.maxSeqLen || c.freeLen + template > mc.maxSeqLen) throw new QueueError("QUEUE_PAYLOAD", `run ${p.run}: invalid run spec: classes.${k}: longer than the model's ${mc.maxSeqLen}-token context`);
          const est = memoryEstimate(mc as never, spec.config.method.batch_size, c.freeLen + template, a.n, a.T);
          if (est + 4 * model.loaded.model.numParams > os.totalmem())
            throw new QueueError("QUEUE_PAYLOAD", `run ${p.run}: batch_size ${spec.config.method.batch_size} × ${c.freeLen + template} positions needs about ${(est / 2 ** 30).toFixed(1)} GiB, more than this worker's memory`);
        });
        if (spec.config.method.top_k > mc.vocabSize) throw new QueueError("QUEUE_PAYLOAD", `run ${p.run}: invalid run spec: method.top_k ${spec.config.method.top_k} exceeds the vocabulary`);
        log(`run ${p.run}: ${spec.classes.length} classes, model ${spec.model.name}`);
        return { spec, model, allowed: allowedMask(spec.config, model.tokenizer, mc.vocabSize), classes: new Map() };
      })();
      runs.set(p.run, hit);
      hit.catch(() => runs.delete(p.run));
      while (runs.size > 8) runs.delete(runs.keys().next().value!);
    }
    return hit;
  };

  const stats = { completed: 0, failed: 0, duplicates: 0 };
  const processor = async (job: Job): Promise<{ stored: boolean }> => {
    const startedAt = job.processedOn ?? Date.now();
    let p: JobPayload;
    const raw = job.data as Record<string, unknown> | null;
    if (raw && typeof raw === "object" && typeof raw[UNPARSABLE] === "string" && Object.keys(raw).length === 1)
      throw new UnrecoverableError(`invalid job payload (job ${JSON.stringify(job.id)}): the stored job is not JSON (${raw[UNPARSABLE]})`);
    try {
      p = parsePayload(job.data, job.id);
    } catch (e) {
      throw new UnrecoverableError((e as Error).message);
    }
    const keys = runKeys(queueName, p.run);
    const key = `${p.k}/${p.r}/${p.b}`;
    if (await client.hexists(keys.results, key)) {
      stats.duplicates++;
      return { stored: false };
    }
    let run: RunState;
    let cls: WorkerClass | null = null;
    const setupStart = Date.now();
    try {
      run = await runFor(p);
      const { spec } = run;
      const rhos = Array.isArray(spec.config.method.rho) ? spec.config.method.rho : [spec.config.method.rho];
      if (p.k >= spec.classes.length || p.r >= rhos.length || p.b >= spec.config.method.batches_per_class)
        throw new QueueError("QUEUE_PAYLOAD", `invalid job payload (job ${job.id}): batch ${key} is outside the run (${spec.classes.length} classes, ${rhos.length} ρ, ${spec.config.method.batches_per_class} batches)`);
      if (!o.simulateMs) {
        // the run's precision on this worker's copy (float32 unless the run asked for bf16; bf16 where this CPU
        // lacks AVX512_BF16 is a PrecisionError: the job fails)
        if (run.model.loaded.model.precision !== spec.config.precision) run.model.loaded.model.setPrecision(spec.config.precision, "precision (run spec)");
        let c = run.classes.get(p.k);
        if (!c) {
          const model = run.model.loaded.model, state = run, k = p.k;
          const target =
            spec.config.method.objective === "whitened_contrastive"
              ? async () => {
                  state.targets ??= classTargets(model, spec.classes.map((_, j) => targetArgsOf(spec, j)), spec.config.method);
                  state.targets.catch(() => (state.targets = undefined));
                  return (await state.targets)[k];
                }
              : async () => (await classTargets(model, [targetArgsOf(spec, k)], spec.config.method))[0];
          c = classSetup(model, run.model.tokenizer, spec.config, k, target, spec.classes[k].freeLen);
          run.classes.set(p.k, c);
          c.catch(() => run.classes.delete(p.k));
        }
        cls = await c;
      }
    } catch (e) {
      // a bad payload or spec, a missing or different model: retrying cannot help
      if (e instanceof GradmmError) throw new UnrecoverableError(`${(e as GradmmError).code}: ${(e as Error).message}`);
      throw e;
    }
    const { spec } = run;
    const setupS = (Date.now() - setupStart) / 1000; // the model, the spec and the class's target: once per worker and run
    let lastProgress = 0;
    const r = cls
      ? await computeBatch(run.model.loaded.model, cls, spec.config, run.allowed, p, {
          onProgress: (q) => {
            if (Date.now() - lastProgress < 1000 && q.outer < q.outerSteps) return;
            lastProgress = Date.now();
            void job.updateProgress({ outer: q.outer, outerSteps: q.outerSteps, xLoss: q.xLoss }).catch(() => {});
          },
        })
      : await simulated(spec, p, o.simulateMs!);
    const wire = {
      tokens: r.tokens,
      perSampleLoss: r.perSampleLoss.map(encodeNum),
      decodedLoss: encodeNum(r.decodedLoss),
      bestXLoss: encodeNum(r.bestXLoss),
      initLoss: encodeNum(r.initLoss),
      xLossPerOuter: r.xLossPerOuter.map(encodeNum),
      zLossPerOuter: r.zLossPerOuter.map(encodeNum),
      ...(r.decodedFromOuter !== undefined ? { decodedFromOuter: r.decodedFromOuter } : {}),
      perplexity: r.perplexity.map(encodeNum),
      seconds: r.seconds,
      setupS,
      worker: workerName(),
      queuedAt: job.timestamp,
      startedAt,
      finishedAt: Date.now(),
      attempt: job.attemptsMade,
    };
    const stored = await storeResult(client, keys, key, JSON.stringify(wire));
    if (stored !== 1) stats.duplicates++;
    return { stored: stored === 1 };
  };

  const worker = new CheckedWorker(queueName, processor, {
    connection: { ...redisOptions(o.url), maxRetriesPerRequest: null },
    prefix: PREFIX,
    concurrency: Math.max(1, o.concurrency ?? 1),
    lockDuration: lockMs,
    stalledInterval: o.stalledMs ?? Math.max(1000, Math.floor(lockMs / 2)),
    maxStalledCount: o.maxStalled ?? 3,
    autorun: false,
  });
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let closing: Promise<void> | null = null;
  const close = (force = false) => {
    closing ??= (async () => {
      await worker.close(force);
      client.disconnect();
      for (const m of models.values()) await m.then((c) => c.loaded.dispose()).catch(() => {});
      resolveClosed();
    })();
    return closing;
  };
  const done = () => {
    if (o.maxJobs && stats.completed + stats.failed >= o.maxJobs) void close();
  };
  worker.on("completed", (job) => {
    stats.completed++;
    log(`done ${job.id}${job.returnvalue?.stored === false ? " (already stored: a duplicate delivery, not stored again)" : ""}`);
    done();
  });
  worker.on("failed", (job, err) => {
    stats.failed++;
    log(`failed ${job?.id ?? "?"} (attempt ${job?.attemptsMade ?? "?"}): ${err.message}`);
    done();
  });
  worker.on("error", (err) => log(`queue error: ${err.message}`));
  void worker.run().catch((e) => log(`worker stopped: ${(e as Error).message}`));
  log(`worker ${workerName()} on ${safeUrl(o.url)} queue ${queueName}, concurrency ${Math.max(1, o.concurrency ?? 1)}, lock ${lockMs / 1000} s`);
  return { worker, closed, close, stats };
}

/** The bench's stand-in for compute: a canned result of the right shape after `ms` (the queue's cost alone). */
async function simulated(spec: RunSpec, p: JobPayload, ms: number): Promise<BatchResult & { perplexity: number[]; seconds: number }> {
  const started = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  const B = spec.config.method.batch_size, L = spec.classes[p.k].freeLen, S = spec.config.method.outer_steps;
  const tokens = Array.from({ length: B }, (_, i) => Array.from({ length: L }, (_, j) => (i * 31 + j * 7 + p.b) % 50));
  return { tokens, perSampleLoss: tokens.map(() => 0.5), decodedLoss: 0.5, bestXLoss: 0.4, initLoss: 0.9, xLossPerOuter: Array(S).fill(0.5), zLossPerOuter: Array(S).fill(0.6), perplexity: tokens.map(() => 100), seconds: (Date.now() - started) / 1000 };
}
