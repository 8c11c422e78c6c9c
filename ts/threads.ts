import { native, type NativeBackendInfo } from "./native";

/** Sets how many CPU threads the engine uses (0 = all cores). The GRADMM_THREADS env var sets the initial value. */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`threads must be a non-negative integer, got ${n}`);
  native().setThreads(n);
}

/** How many CPU threads the engine uses now. */
export function getThreads(): number {
  return native().getThreads();
}

/** Which SGEMM micro-kernel the CPU dispatch chose ("avx512", "avx2" or "scalar"). */
export function sgemmKernel(): string {
  return native().sgemmKernel();
}

/** Where the engine runs and why (see the README's "GPU" section). */
export type BackendInfo = NativeBackendInfo;

/**
 * The backend every model call runs on: `chosen` is "cuda" when the addon was built with CUDA and a device answers,
 * "cpu" otherwise ("cpu-table" only under GRADMM_BACKEND=cpu-table, a test of the device path), with the reason,
 * the devices found and the build flags. GRADMM_BACKEND=cpu|cuda forces a choice; it is made once per process.
 */
export function backendInfo(): BackendInfo {
  return native().backendInfo();
}
