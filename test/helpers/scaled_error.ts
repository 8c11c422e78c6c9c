// The error measure of the tests against reference tensors (transformers, PyTorch): max |a − b| over a scale.
import { expect } from "vitest";

/** max |a − b| / scale (default: max |b|, the reference tensor's own scale). */
export function scaledError(a: ArrayLike<number>, b: ArrayLike<number>, scale?: number): number {
  expect(a.length).toBe(b.length);
  let err = 0, ref = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return err / (scale ?? Math.max(ref, 1e-30));
}
