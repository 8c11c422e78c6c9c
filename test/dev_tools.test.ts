// The development tools: tsx runs the CLI, the benchmarks and scripts from source (no build between an edit and a
// run), and `npm run bench -- ts` times the TypeScript-side hot paths with benchmark.js.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(__dirname, "..");
const tsx = path.join(root, "node_modules", ".bin", "tsx");

describe("development tools", () => {
  it("tsx runs the CLI and the benchmark CLI from source", () => {
    const cli = spawnSync(tsx, [path.join(root, "ts", "cli.ts"), "--help"], { cwd: root, encoding: "utf8" });
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/^\s+init\b/m);
    const bench = spawnSync(tsx, [path.join(root, "bench", "cli.ts"), "--help"], { cwd: root, encoding: "utf8" });
    expect(bench.status, bench.stderr).toBe(0);
    expect(bench.stdout).toMatch(/^\s+ts\b/m);
  });

  it("bench ts: every hot path with benchmark.js statistics", () => {
    const r = spawnSync(process.execPath, [path.join(root, "dist", "bench", "cli.js"), "ts", "--quick", "--json"], { cwd: root, encoding: "utf8", env: { ...process.env, GRADMM_BACKEND: "cpu" } });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { cases: { name: string; ops_per_s: number; mean_ms: number; rme_percent: number; samples: number }[] };
    expect(out.cases.map((c) => c.name)).toEqual(["tokenizer encode", "JSONL read", "CSV read", "filter", "GGUF metadata"]);
    for (const c of out.cases) {
      expect(c.ops_per_s, c.name).toBeGreaterThan(0);
      expect(c.samples, c.name).toBeGreaterThanOrEqual(5);
      expect(Number.isFinite(c.rme_percent), c.name).toBe(true);
    }
  });
});
