/**
 * Redis connections for the queue (BullMQ on ioredis): URL parsing (redis://, rediss:// for TLS, a password and a
 * database), a reachability check with a clear error, the run's own keys and the one Lua script that stores a result.
 */
import * as fs from "node:fs";
import IORedis, { type RedisOptions } from "ioredis";
import { GradmmError } from "../errors";

/** Errors of the queue: a bad --queue URL, Redis unreachable, a job that failed on the workers, a bad payload. */
export class QueueError extends GradmmError {
  constructor(code: "QUEUE_URL" | "QUEUE_UNREACHABLE" | "QUEUE_JOB_FAILED" | "QUEUE_PAYLOAD" | "MODEL_MISMATCH" | "MODEL_MISSING", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * ioredis options from a URL: `redis://[user][:password@]host[:port][/db]`; `rediss://` turns TLS on. Query
 * parameters for TLS: `tls_ca`, `tls_cert`, `tls_key` (file paths), `tls_servername`, `tls_insecure=1` (no certificate
 * check; tests only). `GRADMM_REDIS_OPTIONS` (a JSON object) is merged in last, so any ioredis option passes through.
 */
export function redisOptions(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new QueueError("QUEUE_URL", `--queue ${JSON.stringify(url)}: not a URL (expected redis://[:password@]host:port[/db] or rediss://… for TLS)`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new QueueError("QUEUE_URL", `--queue ${safeUrl(url)}: the scheme must be redis:// or rediss:// (TLS), not ${u.protocol}//`);
  const db = u.pathname && u.pathname !== "/" ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new QueueError("QUEUE_URL", `--queue ${safeUrl(url)}: the database must be a number (…/0), not ${JSON.stringify(u.pathname.slice(1))}`);
  const port = u.port ? Number(u.port) : 6379;
  const o: RedisOptions = { host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1", port, db };
  if (u.username) o.username = decodeURIComponent(u.username);
  if (u.password) o.password = decodeURIComponent(u.password);
  const q = u.searchParams;
  const known = new Set(["tls_ca", "tls_cert", "tls_key", "tls_servername", "tls_insecure"]);
  for (const k of q.keys()) if (!known.has(k)) throw new QueueError("QUEUE_URL", `--queue ${safeUrl(url)}: unknown parameter ${k} (known: ${[...known].join(", ")})`);
  if (u.protocol === "rediss:") {
    const read = (k: string) => {
      const f = q.get(k);
      if (!f) return undefined;
      try {
        return fs.readFileSync(f);
      } catch (e) {
        throw new QueueError("QUEUE_URL", `--queue: cannot read ${k} ${f}: ${(e as Error).message}`, { cause: e });
      }
    };
    o.tls = {
      ...(q.get("tls_ca") ? { ca: read("tls_ca") } : {}),
      ...(q.get("tls_cert") ? { cert: read("tls_cert") } : {}),
      ...(q.get("tls_key") ? { key: read("tls_key") } : {}),
      ...(q.get("tls_servername") ? { servername: q.get("tls_servername")! } : {}),
      ...(q.get("tls_insecure") === "1" ? { rejectUnauthorized: false } : {}),
    };
  } else if ([...q.keys()].length) throw new QueueError("QUEUE_URL", `--queue ${safeUrl(url)}: TLS parameters need rediss://`);
  const extra = process.env.GRADMM_REDIS_OPTIONS;
  if (extra) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(extra);
    } catch (e) {
      throw new QueueError("QUEUE_URL", `GRADMM_REDIS_OPTIONS is not JSON: ${(e as Error).message}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new QueueError("QUEUE_URL", "GRADMM_REDIS_OPTIONS must be a JSON object of ioredis options");
    Object.assign(o, parsed);
  }
  return o;
}

/** The URL without its password, for messages. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "<invalid URL>";
  }
}

/** A client that retries for ever (BullMQ's requirement for workers); `ready()` fails fast with a clear error. */
export function connect(url: string, extra: RedisOptions = {}): IORedis {
  return new IORedis({ ...redisOptions(url), maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
}

/** Waits until the client answers PING; a QueueError naming the URL and the last connection error after `timeoutMs`. */
export async function ready(client: IORedis, url: string, timeoutMs = 10_000): Promise<void> {
  let lastError: Error | null = null;
  const onError = (e: Error) => (lastError = e);
  client.on("error", onError);
  try {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new QueueError("QUEUE_UNREACHABLE", `cannot reach Redis at ${safeUrl(url)} within ${timeoutMs / 1000} s${lastError ? ` (${(lastError as Error).message})` : ""}; is redis-server running there (README: "Many machines")?`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([client.ping(), timeout]);
    } catch (e) {
      if (e instanceof QueueError) throw e;
      const msg = (e as Error).message;
      throw new QueueError("QUEUE_UNREACHABLE", `Redis at ${safeUrl(url)} refused us: ${msg}${/NOAUTH|WRONGPASS|auth/i.test(msg) ? " (put the password in the URL: redis://:PASSWORD@host:port)" : ""}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  } finally {
    client.off("error", onError);
  }
  // keep the process from printing unhandled 'error' events while ioredis reconnects
  if (client.listenerCount("error") === 0) client.on("error", () => {});
}

/** The BullMQ key prefix; a run's own keys sit beside the queue's. */
export const PREFIX = "gradmm";

export function runKeys(queueName: string, run: string) {
  const base = `${PREFIX}:${queueName}:run:${run}`;
  return { spec: `${base}:spec`, results: `${base}:results`, events: `${base}:events` };
}

/**
 * Stores a batch's result once (HSETNX) and announces it on the run's stream only the first time, atomically: a batch
 * computed twice (at-least-once delivery) is stored and announced once. Nothing is stored for a run whose spec is gone
 * (finished and cleaned up). Returns 1 stored, 0 already there, -1 no such run.
 */
const STORE_LUA = `
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'key', ARGV[1])
  return 1
end
return 0
`;

export async function storeResult(client: IORedis, keys: ReturnType<typeof runKeys>, key: string, json: string): Promise<number> {
  return (await client.eval(STORE_LUA, 3, keys.results, keys.events, keys.spec, key, json)) as number;
}
