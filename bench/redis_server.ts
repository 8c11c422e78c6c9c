/**
 * A real redis-server for tests and benchmarks (test/helpers/redis.ts re-exports it): Debian's package
 * (`apt-get install redis-server`), started on a free loopback port with its own temporary folder, stopped afterwards. `redisServerPath()` is null where it is not
 * installed (the tests then skip with a message).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export function redisServerPath(): string | null {
  for (const p of [process.env.REDIS_SERVER, "/usr/bin/redis-server", "/usr/local/bin/redis-server"]) if (p && fs.existsSync(p)) return p;
  const r = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

export const REDIS_MISSING = "redis-server is not installed (Debian: apt-get install -y redis-server; .ci/run installs it): the queue tests are skipped";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  process: ChildProcess;
  /** SIGKILL (no shutdown save) and wait for the exit. */
  kill(): Promise<void>;
  /** Start it again on the same port and folder (AOF and RDB files are read back). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(o: { aof?: boolean; fsync?: "always" | "everysec"; password?: string; tls?: { cert: string; key: string }; extraArgs?: string[] } = {}): Promise<RedisServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error(REDIS_MISSING);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-redis-"));
  const args = [
    ...(o.tls ? ["--port", "0", "--tls-port", String(port), "--tls-cert-file", o.tls.cert, "--tls-key-file", o.tls.key, "--tls-auth-clients", "no"] : ["--port", String(port)]),
    "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no", "--protected-mode", "yes",
    "--appendonly", o.aof ? "yes" : "no", "--appendfsync", o.fsync ?? "everysec", "--maxmemory-policy", "noeviction", "--loglevel", "warning",
    ...(o.password ? ["--requirepass", o.password] : []),
    ...(o.extraArgs ?? []),
  ];
  const auth = o.password ? `:${encodeURIComponent(o.password)}@` : "";
  const server: RedisServer = {
    port,
    url: `${o.tls ? "rediss" : "redis"}://${auth}127.0.0.1:${port}`,
    dir,
    process: null as unknown as ChildProcess,
    async kill() {
      const p = server.process;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGKILL");
      await exited;
    },
    async restart() {
      await launch();
    },
    async stop() {
      await server.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  const launch = async () => {
    const p = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    server.process = p;
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}): ${err}`);
      if (await canConnect(port)) return;
      if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port}: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await launch();
  return server;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
