/**
 * Differential privacy for the target gradient: per-example clipping to norm C and one Gaussian draw per class.
 * The mean of n clipped gradients has sensitivity Δ = C/n.
 */

/** Standard normal CDF. */
function phi(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** Complementary error function (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7: ample for σ). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z - 1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** Classic Gaussian mechanism (valid for ε ≤ 1): σ = Δ·√(2 ln(1.25/δ))/ε. */
export function classicGaussianSigma(sensitivity: number, epsilon: number, delta: number): number {
  return (sensitivity * Math.sqrt(2 * Math.log(1.25 / delta))) / epsilon;
}

/**
 * Analytic Gaussian mechanism (Balle & Wang, 2018): the smallest σ with
 * Φ(Δ/(2σ) − εσ/Δ) − e^ε Φ(−Δ/(2σ) − εσ/Δ) ≤ δ, by bisection.
 */
export function analyticGaussianSigma(sensitivity: number, epsilon: number, delta: number): number {
  const deltaOf = (sigma: number) => {
    const a = sensitivity / (2 * sigma), b = (epsilon * sigma) / sensitivity;
    return phi(a - b) - Math.exp(epsilon) * phi(-a - b);
  };
  let lo = 1e-6 * sensitivity, hi = sensitivity;
  while (deltaOf(hi) > delta) hi *= 2;
  for (let i = 0; i < 200; i++) {
    const mid = 0.5 * (lo + hi);
    if (deltaOf(mid) > delta) lo = mid;
    else hi = mid;
  }
  return hi;
}

export interface DPParameters {
  epsilon: number;
  delta: number;
  clipNorm: number;
  n: number;
  sensitivity: number;
  sigma: number;
  mechanism: "classic" | "analytic";
}

/** The noise σ for a class target of n clipped examples: classic form for ε ≤ 1, analytic for ε > 1. */
export function dpParameters(epsilon: number, delta: number, clipNorm: number, n: number): DPParameters {
  const sensitivity = clipNorm / n;
  const mechanism = epsilon <= 1 ? "classic" : "analytic";
  const sigma = mechanism === "classic" ? classicGaussianSigma(sensitivity, epsilon, delta) : analyticGaussianSigma(sensitivity, epsilon, delta);
  return { epsilon, delta, clipNorm, n, sensitivity, sigma, mechanism };
}
