import { PrecisionError } from "./errors";
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

/** A model's arithmetic for its big products: float32 (exact, the default) or bf16 (weights in bf16, f32 accumulation). */
export type Precision = "float32" | "bf16";
/** What a config, the CLI and the API accept: auto = bf16 where the CPU has AVX512_BF16, else float32. */
export type PrecisionOption = Precision | "auto";
export const PRECISION_OPTIONS: readonly PrecisionOption[] = ["float32", "bf16", "auto"];

/** Whether precision bf16 can run here, the kernel it would use, and if not, what is missing. */
export interface Bf16Support {
  available: boolean;
  kernel: string | null;
  /** What this machine lacks (null when available). */
  missing: string | null;
}

/**
 * bf16 runs where the backend has bf16 products on bf16 hardware: the CPU backend on a CPU with AVX512_BF16 (the
 * portable bf16 kernel elsewhere is a test reference, too slow to use). GRADMM_BF16=off hides it (to compare, or to
 * test the float32 fallback of auto).
 */
export function bf16Support(): Bf16Support {
  const b = native().backendInfo();
  const bf = b.bf16;
  const env = (process.env.GRADMM_BF16 ?? "").toLowerCase();
  if (env === "off" || env === "0" || env === "false") return { available: false, kernel: null, missing: "bf16 is disabled by GRADMM_BF16=off" };
  if (!bf?.available) return { available: false, kernel: null, missing: `the ${b.chosen} backend has no bf16 products (bf16 runs on the CPU backend)` };
  if (!bf.native) return { available: false, kernel: null, missing: "this CPU lacks AVX512_BF16 (CPUID reports no avx512_bf16; vdpbf16ps needs it)" };
  return { available: true, kernel: bf.kernel, missing: null };
}

/**
 * The precision to run: float32 and bf16 as given (bf16 where it cannot run throws a PrecisionError naming `field`),
 * auto = bf16 where available, else float32. undefined = float32.
 */
export function resolvePrecision(p: PrecisionOption | undefined, field = "precision"): Precision {
  if (p === undefined || p === "float32") return "float32";
  if (p !== "bf16" && p !== "auto") throw new TypeError(`${field}: expected float32, bf16 or auto, got ${String(p)}`);
  const s = bf16Support();
  if (p === "auto") return s.available ? "bf16" : "float32";
  if (!s.available) throw new PrecisionError(field, s.missing!);
  return "bf16";
}
