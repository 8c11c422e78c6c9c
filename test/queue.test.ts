// Many machines (#24): `gradmm synth --queue` and `gradmm worker` against a real redis-server (Debian's package,
// started on a free loopback port by test/helpers/redis.ts; skipped with a message where it is not installed). Every
// run's output is compared byte for byte with the same config run on one machine: identical output with several
// workers, a worker killed mid-batch, the coordinator killed and resumed, Redis killed and restarted with AOF, a worker
// with a different model, hostile payloads, a password and TLS.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Queue } from "bullmq";
import IORedis from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REDIS_MISSING, redisServerPath, startRedis, type RedisServer } from "./helpers/redis";
import { tinySynthBase } from "./helpers/tiny_synth";

const root = path.join(__dirname, "..");
const cli = path.join(root, "dist", "ts", "cli.js");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
const haveRedis = redisServerPath() !== null;
if (!haveRedis && process.env.GRADMM_REQUIRE_REDIS === "1") throw new Error(`GRADMM_REQUIRE_REDIS=1 (.ci/run): ${REDIS_MISSING}`);
if (!haveRedis) console.warn(REDIS_MISSING);

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-queue-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const slow = { batch_size: 3, batches_per_class: 3, length: 6, outer_steps: 6, inner_steps: 40, top_k: 20, init_candidates: 4 };
function config(out: string, method: Record<string, unknown> = slow, extra: Record<string, unknown> = {}) {
  return {
    ...tinySynthBase(),
    method,
    filter: { few_shot: 0, keep_per_class: 4 },
    output: out,
    seed: 11,
    threads: 1,
    ...extra,
  };
}

/** Writes name.yaml for a config whose output is tmp/name; returns [yaml, outputDir]. */
function writeConfig(name: string, method?: Record<string, unknown>, extra?: Record<string, unknown>): [string, string] {
  const out = path.join(tmp, name);
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(file, JSON.stringify(config(out, method, extra), null, 2)); // JSON is YAML
  return [file, out];
}

/** The CLI's synth, without blocking this process (the workers' stderr pipes are read meanwhile). */
async function synth(args: string[]): Promise<{ status: number | null; stderr: string }> {
  const c = coordinator(args);
  const status = await c.exited;
  return { status, stderr: c.stderr() };
}

/** The one-machine run of a method setting, made once and shared. */
const localRuns = new Map<string, string>();
async function local(method: Record<string, unknown> = slow): Promise<string> {
  const key = JSON.stringify(method);
  let out = localRuns.get(key);
  if (!out) {
    const [file, dir] = writeConfig(`local-${localRuns.size}`, method);
    const r = await synth([file]);
    expect(r.status, r.stderr).toBe(0);
    localRuns.set(key, (out = dir));
  }
  return out;
}

/** report.json without what depends on the machine and the clock (timings, machine, per-batch seconds, the output path). */
function reportWithoutTimings(dir: string): string {
  const j = JSON.parse(fs.readFileSync(path.join(dir, "report.json"), "utf8"));
  delete j.timings;
  delete j.seconds_total;
  delete j.machine;
  j.settings.output = null;
  for (const c of Object.values(j.classes) as { batches: { seconds?: number }[] }[]) for (const b of c.batches) delete b.seconds;
  return JSON.stringify(j);
}

function expectSameOutput(dir: string, reference: string) {
  for (const f of ["synthetic.jsonl", "filtered.jsonl"]) expect(fs.readFileSync(path.join(dir, f)).equals(fs.readFileSync(path.join(reference, f))), f).toBe(true);
  expect(reportWithoutTimings(dir)).toBe(reportWithoutTimings(reference));
  const rows = fs.readFileSync(path.join(dir, "synthetic.jsonl"), "utf8").trim().split("\n");
  const expected = fs.readFileSync(path.join(reference, "synthetic.jsonl"), "utf8").trim().split("\n").length;
  expect(rows.length).toBe(expected); // no batch lost, none twice
}

interface WorkerProc {
  child: ChildProcess;
  log(): string;
  exited: Promise<number | null>;
}
const workers: WorkerProc[] = [];
function worker(url: string, ...args: string[]): WorkerProc {
  const child = spawn(process.execPath, [cli, "worker", "--queue", url, "--threads", "1", "--lock-seconds", "3", "--stalled-seconds", "1", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d) => (log += d));
  const w = { child, log: () => log, exited: new Promise<number | null>((r) => child.on("exit", (code) => r(code))) };
  workers.push(w);
  return w;
}
async function stopWorkers() {
  for (const w of workers.splice(0)) {
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
    await w.exited;
  }
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 60_000, everyMs = 20) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The spawned coordinator: its exit code and stderr. */
function coordinator(args: string[]) {
  const child = spawn(process.execPath, [cli, "synth", ...args, "--no-progress", "--no-report"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, exited, stderr: () => err };
}

async function resultCount(redis: IORedis): Promise<number> {
  const keys = await redis.keys("gradmm:gradmm:run:*:results");
  let n = 0;
  for (const k of keys) n += await redis.hlen(k);
  return n;
}

describe.skipIf(!haveRedis)("queue on a real redis-server", () => {
  let server: RedisServer;
  let redis: IORedis;
  beforeAll(async () => {
    server = await startRedis({ aof: true, fsync: "always" });
    redis = new IORedis(server.url, { maxRetriesPerRequest: null });
    redis.on("error", () => {});
  });
  afterAll(async () => {
    await stopWorkers();
    redis?.disconnect();
    await server?.stop();
  });

  it("gives the same bytes as a one-machine run, with several workers (one with --concurrency 2), and publishes the targets once per run", async () => {
    const method = { ...slow, rho: [0.1, 0.5] };
    const reference = await local(method);
    worker(server.url);
    worker(server.url, "--concurrency", "2");
    const [file, out] = writeConfig("identical", method);
    const c = coordinator([file, "--queue", server.url]);
    // the jobs carry the batch's coordinates and the model's name and sha256, not the targets
    let payload = "";
    await until("a job on the queue", async () => {
      const ids = [...(await redis.lrange("gradmm:gradmm:wait", 0, 0)), ...(await redis.lrange("gradmm:gradmm:active", 0, 0))];
      if (ids.length) payload = (await redis.hget(`gradmm:gradmm:${ids[0]}`, "data")) ?? "";
      return payload !== "" || c.child.exitCode !== null;
    }, 60_000, 5);
    const code = await c.exited;
    expect(code, c.stderr()).toBe(0);
    if (payload) {
      expect(Object.keys(JSON.parse(payload)).sort()).toEqual(["b", "k", "model", "r", "run", "v"]);
      expect(payload.length).toBeLessThan(300);
    }
    expect(c.stderr()).toMatch(/queue: .*queued, \d+ active, \d+\/12 done, 0 failed, ETA|queue: all 12 batches done/);
    expectSameOutput(out, reference);
    // both workers took part, and the run's keys are gone from Redis
    expect(workers[0].log() + workers[1].log()).toMatch(/done \w+-\d-\d-\d/);
    expect(await redis.keys("gradmm:gradmm:run:*")).toEqual([]);
    await stopWorkers();
  });

  it("method.objective whitened_contrastive: a worker builds every class's target together, the same bytes as a one-machine run", async () => {
    const method = { ...slow, batches_per_class: 1, outer_steps: 2, inner_steps: 5, objective: "whitened_contrastive", whitening_shrinkage: 0.3 };
    const reference = await local(method);
    worker(server.url);
    const [file, out] = writeConfig("contrastive", method);
    const c = coordinator([file, "--queue", server.url]);
    expect(await c.exited, c.stderr()).toBe(0);
    expectSameOutput(out, reference);
    await stopWorkers();
  });

  it("takes up the batch of a worker killed with kill -9 mid-batch: no loss, no duplicate", async () => {
    const reference = await local();
    const a = worker(server.url);
    const [file, out] = writeConfig("worker-killed");
    const c = coordinator([file, "--queue", server.url]);
    // the jobs active without a stored result: batches in progress
    const inProgress = async () => {
      const out: string[] = [];
      for (const id of await redis.lrange("gradmm:gradmm:active", 0, -1)) {
        const [, run, k, r, b] = /^(\w+)-(\d+)-(\d+)-(\d+)$/.exec(id)!;
        if (!(await redis.hexists(`gradmm:gradmm:run:${run}:results`, `${k}/${r}/${b}`))) out.push(id);
      }
      return out;
    };
    await until("a result stored and a batch in progress", async () => {
      if ((await resultCount(redis)) >= 1 && (await inProgress()).length) {
        a.child.kill("SIGKILL");
        return true;
      }
      return false;
    });
    await a.exited;
    const killed = await inProgress(); // what the dead worker held (still active, its lock not yet expired)
    expect(killed.length).toBe(1);
    const b = worker(server.url);
    const code = await c.exited;
    expect(code, c.stderr()).toBe(0);
    await until("the worker's log", () => b.log().includes(`done ${killed[0]}`), 5000); // taken up again after its lock expired
    expectSameOutput(out, reference);
    await stopWorkers();
  });

  it("resumes a coordinator killed with kill -9 from Redis and the batches finished meanwhile", async () => {
    const reference = await local();
    worker(server.url);
    const [file, out] = writeConfig("coordinator-killed");
    const c = coordinator([file, "--queue", server.url]);
    await until("two results in Redis", async () => (await resultCount(redis)) >= 2);
    c.child.kill("SIGKILL");
    await c.exited;
    await until("the workers to finish the run's jobs", async () => (await resultCount(redis)) >= 6);
    expect(fs.existsSync(path.join(out, "synthetic.jsonl"))).toBe(false);
    const r = await synth([file, "--queue", server.url, "--resume"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/queue: [1-6] batches were already done in Redis/);
    expectSameOutput(out, reference);
    await stopWorkers();
  });

  it("loses nothing when Redis is killed and restarted with AOF on", async () => {
    const reference = await local();
    worker(server.url);
    const [file, out] = writeConfig("redis-restart");
    const c = coordinator([file, "--queue", server.url]);
    await until("two results in Redis", async () => (await resultCount(redis)) >= 2);
    const before = await resultCount(redis);
    await server.kill();
    await new Promise((r) => setTimeout(r, 500));
    await server.restart();
    expect(await resultCount(redis)).toBeGreaterThanOrEqual(before); // the AOF gave everything back
    const code = await c.exited;
    expect(code, c.stderr()).toBe(0);
    expectSameOutput(out, reference);
    await stopWorkers();
  });

  it("fails the jobs of a worker whose model differs, reports them, and a --resume with the right model completes the run", async () => {
    const reference = await local();
    // the "other machine's copy": the same files with one weight changed in its lowest mantissa byte
    const other = path.join(tmp, "other", "tiny_lm");
    fs.mkdirSync(other, { recursive: true });
    for (const f of fs.readdirSync(tinyLM)) fs.copyFileSync(path.join(tinyLM, f), path.join(other, f));
    const w = fs.readFileSync(path.join(other, "model.safetensors"));
    w[w.length - 4] ^= 1;
    fs.writeFileSync(path.join(other, "model.safetensors"), w);
    const bad = worker(server.url, "--model", other);
    const [file, out] = writeConfig("mismatch");
    const r = await synth([file, "--queue", server.url]);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/QUEUE_JOB_FAILED.*6 of 6 batches failed on the workers/);
    expect(r.stderr).toMatch(/model mismatch on worker .*: the run's tiny_lm has sha256 [0-9a-f]{64}, this worker's copy .*other\/tiny_lm has sha256 [0-9a-f]{64}/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
    await until("the worker's log", () => /failed .*MODEL_MISMATCH/.test(bad.log()), 5000);
    expect(bad.child.exitCode).toBe(null); // the worker goes on
    expect(fs.existsSync(path.join(out, "synthetic.jsonl"))).toBe(false);
    await stopWorkers();
    worker(server.url);
    const resumed = await synth([file, "--queue", server.url, "--resume"]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expectSameOutput(out, reference);
    await stopWorkers();
  });

  it("rejects malformed and hostile payloads put on the queue by hand, with a clear error, and keeps working", async () => {
    const w = worker(server.url);
    const queue = new Queue("gradmm", { connection: { host: "127.0.0.1", port: server.port, maxRetriesPerRequest: null }, prefix: "gradmm" });
    const run = "0123456789abcdef01234567";
    const model = { name: "tiny_lm", sha256: "0".repeat(64) };
    // a hostile run spec: a config key the schema does not know (and code in a string, which is only ever data)
    const spec = { v: 1, run, fingerprint: "f".repeat(64), config: { ...config("x"), method: slow, exec: "require('child_process').execSync('touch /tmp/pwned')" }, model: { ...model, path: tinyLM }, classes: [] };
    await redis.set(`gradmm:gradmm:run:${run}:spec`, JSON.stringify(spec));
    const hostile: [string, unknown, RegExp][] = [
      ["string", "process.exit(1)", /invalid job payload .*data: /],
      ["array", [1, 2, 3], /invalid job payload/],
      ["extra-key", { v: 1, run, k: 0, r: 0, b: 0, model, exec: "rm -rf /" }, /invalid job payload .*unknown key `exec`/],
      ["proto", JSON.parse(`{"v":1,"run":"${run}","k":0,"r":0,"b":0,"model":{"name":"tiny_lm","sha256":"${"0".repeat(64)}"},"__proto__":{"polluted":true}}`), /invalid job payload .*__proto__/],
      ["negative", { v: 1, run, k: -1, r: 0, b: 1e12, model }, /invalid job payload .*data\.k/],
      ["bad-run-id", { v: 1, run: "../../etc/passwd", k: 0, r: 0, b: 0, model }, /invalid job payload .*data\.run/],
      ["no-spec", { v: 1, run: "fedcba9876543210fedcba98", k: 0, r: 0, b: 0, model }, /no run spec in Redis/],
      ["hostile-spec", { v: 1, run, k: 0, r: 0, b: 0, model }, /invalid run spec: .*exec/],
    ];
    for (const [name, data] of hostile) await queue.add("batch", data, { jobId: `hostile-${name}`, attempts: 3 });
    // not JSON at all: the job's data field overwritten before the worker sees it
    await queue.add("batch", { v: 1 }, { jobId: "hostile-not-json", delay: 1500, attempts: 3 });
    await redis.hset("gradmm:gradmm:hostile-not-json", "data", "{not json");
    await until("every hostile job to fail", async () => {
      const states = await Promise.all([...hostile.map(([n]) => `hostile-${n}`), "hostile-not-json"].map((id) => queue.getJobState(id)));
      return states.every((s) => s === "failed");
    });
    // (BullMQ's own getJob cannot read that job back: its data is not JSON)
    expect(await redis.hget("gradmm:gradmm:hostile-not-json", "failedReason")).toMatch(/invalid job payload .*the stored job is not JSON .*\{not json/);
    for (const [name, , message] of hostile) {
      const job = (await queue.getJob(`hostile-${name}`))!;
      expect(job.failedReason, name).toMatch(message);
      expect(job.attemptsMade, `${name}: rejected at once, not retried`).toBe(1);
    }
    expect(fs.existsSync("/tmp/pwned")).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await queue.close();
    await redis.del(`gradmm:gradmm:run:${run}:spec`);
    // the same worker process then computes a real run (the coordinator reads the failed set beside those jobs)
    expect(w.child.exitCode).toBe(null);
    const reference = await local();
    const [file, out] = writeConfig("after-hostile");
    const r = await synth([file, "--queue", server.url]);
    expect(r.status, r.stderr).toBe(0);
    expectSameOutput(out, reference);
    await stopWorkers();
  });
});

describe.skipIf(!haveRedis)("queue URLs", () => {
  it("works with a password (redis://:PASSWORD@host:port) and says so clearly when it is wrong", async () => {
    const server = await startRedis({ password: "s3cret/with:odd@chars" });
    try {
      const reference = await local();
      worker(server.url);
      const [file, out] = writeConfig("password");
      const bad = await synth([file, "--queue", server.url.replace("s3cret", "wrong")]);
      expect(bad.status).toBe(3);
      expect(bad.stderr).toMatch(/QUEUE_UNREACHABLE.*refused us: WRONGPASS/);
      expect(bad.stderr).not.toContain("wrong%2F"); // no password in messages
      const r = await synth([file, "--queue", server.url]);
      expect(r.status, r.stderr).toBe(0);
      expectSameOutput(out, reference);
    } finally {
      await stopWorkers();
      await server.stop();
    }
  });

  it.skipIf(spawnSync("sh", ["-c", "command -v openssl"]).status !== 0)("works over TLS (rediss://…?tls_ca=FILE) with a password", async () => {
    const dir = fs.mkdtempSync(path.join(tmp, "tls-"));
    const gen = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"], { encoding: "utf8" });
    expect(gen.status, gen.stderr).toBe(0);
    const server = await startRedis({ password: "pw", tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } });
    try {
      const url = `${server.url}?tls_ca=${encodeURIComponent(path.join(dir, "cert.pem"))}`;
      expect(url).toMatch(/^rediss:\/\/:pw@127\.0\.0\.1:\d+\?tls_ca=/);
      const reference = await local();
      worker(url);
      const [file, out] = writeConfig("tls");
      const r = await synth([file, "--queue", url]);
      expect(r.status, r.stderr).toBe(0);
      expectSameOutput(out, reference);
      // plain redis:// to a TLS port is not silently accepted
      const plain = await synth([file, "--queue", `redis://:pw@127.0.0.1:${server.port}`, "--overwrite"]);
      expect(plain.status).toBe(3);
      expect(plain.stderr).toMatch(/QUEUE_UNREACHABLE/);
    } finally {
      await stopWorkers();
      await server.stop();
    }
  });

  it("refuses a bad URL before any compute (exit 3, one line)", async () => {
    const [file] = writeConfig("bad-url");
    for (const [url, msg] of [["http://x:1", /scheme must be redis:\/\/ or rediss:\/\//], ["redis://h:1/abc", /database must be a number/], ["redis://h:1?tls_ca=x", /TLS parameters need rediss:\/\//]] as const) {
      const r = await synth([file, "--queue", url]);
      expect(r.status, url).toBe(3);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
