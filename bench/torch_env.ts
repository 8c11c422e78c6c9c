import { spawnSync } from "node:child_process";
import * as fs from "node:fs";

export const TORCH_PYTHON = "/usr/bin/python3";

/**
 * PyTorch's strongest setup on these machines, for its command alone: the pinned older OpenBLAS kernel unset,
 * OpenMP threads passive (they otherwise spin against OpenBLAS's), and glibc keeping large blocks (fresh large
 * tensors are otherwise slow to fault in).
 */
export function torchEnv(threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  env.OMP_WAIT_POLICY = "PASSIVE";
  env.MALLOC_MMAP_MAX_ = "0";
  env.MALLOC_TRIM_THRESHOLD_ = "100000000000";
  env.OMP_NUM_THREADS = String(threads);
  return env;
}

/** PyTorch's version, or null when /usr/bin/python3 has no torch. */
export function torchAvailable(): { version: string } | null {
  if (!fs.existsSync(TORCH_PYTHON)) return null;
  const r = spawnSync(TORCH_PYTHON, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8", env: torchEnv(1) });
  if (r.status !== 0) return null;
  return { version: r.stdout.trim() };
}

/** Runs a PyTorch benchmark script with JSON args; returns its last stdout line parsed as JSON. */
export function runTorchScript<T>(script: string, args: unknown, threads: number): T {
  const r = spawnSync(TORCH_PYTHON, [script, JSON.stringify(args)], {
    encoding: "utf8",
    env: torchEnv(threads),
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status}):\n${r.stderr.slice(-4000)}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}
