// The gradient-signal bench's diagonal whitening (bench/utility/signal.ts): its limits and its metric.
import { describe, expect, it } from "vitest";
import { gradientCosine, type GradientFactors } from "../bench/utility/metrics";
import { diagonalWhitening } from "../bench/utility/signal";

// n examples whose a = p − e_y share one large entry (row 3, as the label word's −1 dominates p − e_y) and whose h
// share a common direction (all ones), the rest independent draws in [−1, 1)
function labelLikeFactors(n: number, V: number, C: number, seed: number): GradientFactors {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const A = Array.from({ length: n }, () => Float32Array.from({ length: V }, (_, v) => (v === 3 ? -50 : rand())));
  const H = Array.from({ length: n }, () => Float32Array.from({ length: C }, () => 1 + 0.3 * rand()));
  return { A, H };
}
const mapped = (f: GradientFactors, w: ReturnType<typeof diagonalWhitening>): GradientFactors => ({ A: f.A.map(w.a), H: f.H.map(w.h) });

describe("diagonalWhitening", () => {
  const ref = [labelLikeFactors(12, 16, 5, 1), labelLikeFactors(12, 16, 5, 2)];
  const p = labelLikeFactors(6, 16, 5, 3), q = labelLikeFactors(6, 16, 5, 4);

  it("at shrinkage 1 scales every entry alike: every cosine stays as it was", () => {
    const w = diagonalWhitening(ref, 1);
    expect(gradientCosine(mapped(p, w), mapped(q, w))).toBeCloseTo(gradientCosine(p, q), 6);
  });

  it("at shrinkage 0 gives every factor entry unit second moment over the reference", () => {
    const w = diagonalWhitening(ref, 0);
    const A = ref.flatMap((f) => f.A).map(w.a), H = ref.flatMap((f) => f.H).map(w.h);
    for (const [vs, n] of [[A, 16], [H, 5]] as [Float32Array[], number][])
      for (let i = 0; i < n; i++) expect(vs.reduce((m, x) => m + x[i] * x[i], 0) / vs.length).toBeCloseTo(1, 4);
  });

  it("takes the shared dominant entry's weight away: the cosine then follows the independent entries", () => {
    const w = diagonalWhitening(ref, 0);
    const raw = gradientCosine(p, q), whitened = gradientCosine(mapped(p, w), mapped(q, w));
    expect(raw).toBeGreaterThan(0.99);
    expect(whitened).toBeLessThan(0.9);
  });
});
