import { native } from "./native";

/** Sets how many CPU threads the engine uses (0 = all cores). The GRADMM_THREADS env var sets the initial value. */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`threads must be a non-negative integer, got ${n}`);
  native().setThreads(n);
}

export function getThreads(): number {
  return native().getThreads();
}

/** Which SGEMM micro-kernel the CPU dispatch chose ("avx512", "avx2" or "scalar"). */
export function sgemmKernel(): string {
  return native().sgemmKernel();
}
