import { AbortError } from "./errors";
import { native, type NativeCancelToken } from "./native";

/**
 * Runs a native call with a cancel token wired to `signal`: aborting sets the flag that the native loop checks
 * between layers, and the call rejects with AbortError.
 */
export async function withCancel<T>(signal: AbortSignal | undefined, call: (token: NativeCancelToken) => Promise<T>): Promise<T> {
  if (signal?.aborted) throw new AbortError();
  const token = new (native().CancelToken)();
  const onAbort = () => token.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await call(token);
  } catch (e) {
    if ((e as { code?: string }).code === "ABORTED") throw new AbortError();
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
