#!/usr/bin/env node
// A long fuzz run: `npm run fuzz -- [seconds] [seed]` (default 1800 s, seed 20) runs test/fuzz.test.ts with its time
// budget shared between the targets, then the native loaders' fuzz driver (test/native_fuzz.test.ts) for a tenth of
// that; prints the number of inputs tried and writes them to runs/fuzz-report.json.
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const seconds = Number(process.argv[2] ?? 1800);
const seed = process.argv[3] ?? "20";
const root = path.join(__dirname, "..");
const vitest = path.join(root, "node_modules", "vitest", "vitest.mjs");
const env = { ...process.env, GRADMM_FUZZ_SECONDS: String(seconds * 0.9), GRADMM_FUZZ_NATIVE_SECONDS: String(Math.max(10, seconds * 0.1)), GRADMM_FUZZ_SEED: seed, GRADMM_FUZZ_REPORT: path.join(root, "runs", "fuzz-report.json") };
require("node:fs").mkdirSync(path.join(root, "runs"), { recursive: true });
const r = spawnSync(process.execPath, [vitest, "run", "test/fuzz.test.ts", "test/native_fuzz.test.ts"], { cwd: root, env, stdio: "inherit" });
process.exit(r.status ?? 1);
