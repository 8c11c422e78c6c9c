import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

let found: { python: string | null; version: string | null } | undefined;

function torchVersion(python: string): string | null {
  const r = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8", env: torchEnv(1) });
  return r.status === 0 ? r.stdout.trim() : null;
}

/**
 * The Python that runs the PyTorch peers: GRADMM_TORCH_PYTHON when set (an error if it cannot import torch), else
 * the first python3 / python on PATH that can (then Debian's /usr/bin/python3). null: no PyTorch on this machine.
 */
export function torchPython(): string | null {
  if (found) return found.python;
  const set = process.env.GRADMM_TORCH_PYTHON;
  if (set) {
    const version = torchVersion(set);
    if (!version) throw new Error(`GRADMM_TORCH_PYTHON=${set} cannot import torch`);
    found = { python: set, version };
    return set;
  }
  const candidates: string[] = [];
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean))
    for (const name of ["python3", "python"]) candidates.push(path.join(dir, name));
  candidates.push("/usr/bin/python3");
  for (const c of candidates) {
    if (!fs.existsSync(c)) continue;
    const version = torchVersion(c);
    if (version) {
      found = { python: c, version };
      return c;
    }
  }
  found = { python: null, version: null };
  return null;
}

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

let found1: { python: string | null; version: string | null } | undefined;

/**
 * The Python that runs the PyTorch 1.x peer (Debian's python3-torch 1.13, the version many distributions still ship):
 * GRADMM_TORCH1_PYTHON when set (an error if it cannot import torch), else /usr/bin/python3 when its torch is 1.x.
 * null: none here (apt-get install python3-torch libopenblas0-pthread).
 */
export function torch1Available(): { version: string; python: string } | null {
  if (!found1) {
    const set = process.env.GRADMM_TORCH1_PYTHON;
    const python = set ?? "/usr/bin/python3";
    const version = fs.existsSync(python) || set ? torchVersion(python) : null;
    if (set && !version) throw new Error(`GRADMM_TORCH1_PYTHON=${set} cannot import torch`);
    found1 = version && (set || version.startsWith("1.")) ? { python, version } : { python: null, version: null };
  }
  return found1.python ? { python: found1.python, version: found1.version! } : null;
}

/** PyTorch's version and the Python that has it, or null when no Python here can import torch. */
export function torchAvailable(): { version: string; python: string } | null {
  const python = torchPython();
  return python ? { version: found!.version!, python } : null;
}

/** Runs a PyTorch benchmark script with JSON args; returns its last stdout line parsed as JSON. */
export function runTorchScript<T>(script: string, args: unknown, threads: number): T {
  const python = torchPython();
  if (!python) throw new Error("no Python with PyTorch (set GRADMM_TORCH_PYTHON)");
  const r = spawnSync(python, [script, JSON.stringify(args)], {
    encoding: "utf8",
    env: torchEnv(threads),
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status}):\n${r.stderr.slice(-4000)}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}
