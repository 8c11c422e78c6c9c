#include "ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace gradmm {

bool simd_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}

namespace {

struct AdamWConstants {
  float decay, beta1, beta2, eps, step_size, bc2_sqrt;
  AdamWConstants(float lr, float b1, float b2, float eps_, float weight_decay, int t)
      : decay(1.f - lr * weight_decay), beta1(b1), beta2(b2), eps(eps_),
        step_size(lr / (1.f - std::pow(b1, (float)t))), bc2_sqrt(std::sqrt(1.f - std::pow(b2, (float)t))) {}
};

// The AdamW arithmetic of one range, in torch.optim.AdamW's order (so results agree to rounding). Elementwise and
// without contraction (-ffp-contract=off), so the AVX2 clone gives the same bits as the baseline one; memory-bound,
// hence one pass reading p, g, m, v. grad_scale != 1 also scales g (clipping) and writes it back.
__attribute__((target_clones("avx2", "default"))) void adamw_range(float* params, float* grads, float* m, float* v,
                                                                  long i0, long i1, float grad_scale,
                                                                  const AdamWConstants& k) {
  const float decay = k.decay, b1 = k.beta1, b2 = k.beta2, eps = k.eps, step_size = k.step_size, bc2 = k.bc2_sqrt;
  const float one_minus_b1 = 1.f - b1, one_minus_b2 = 1.f - b2;
  if (grad_scale != 1.f)
    for (long i = i0; i < i1; ++i) grads[i] *= grad_scale;
  for (long i = i0; i < i1; ++i) {
    const float g = grads[i];
    const float p = params[i] * decay;
    const float mi = b1 * m[i] + one_minus_b1 * g;
    const float vi = b2 * v[i] + one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2 + eps;
    params[i] = p - step_size * (mi / denom);
  }
}

// Sum of squares of one chunk, 8 interleaved double accumulators (vectorisable, fixed order).
__attribute__((target_clones("avx2", "default"))) double sum_squares(const float* x, long n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  long i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += (double)x[i + l] * (double)x[i + l];
  for (; i < n; ++i) acc[i % 8] += (double)x[i] * (double)x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Ranges of the fused pass: a few cache-sized blocks per thread, so the clip-scaling loop re-reads g from L2.
constexpr long kAdamBlock = 1 << 14;

void adamw_blocks(float* params, float* grads, float* m, float* v, long n, float grad_scale, const AdamWConstants& k) {
  const long blocks = (n + kAdamBlock - 1) / kAdamBlock;
  parallel_for(blocks, [&](long b0, long b1) {
    for (long b = b0; b < b1; ++b)
      adamw_range(params, grads, m, v, b * kAdamBlock, std::min(n, (b + 1) * kAdamBlock), grad_scale, k);
  });
}

}  // namespace

void adamw_update(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t) {
  // grad_scale 1: grads are only read
  adamw_blocks(params, const_cast<float*>(grads), m, v, n, 1.f, AdamWConstants(lr, beta1, beta2, eps, weight_decay, t));
}

double grad_norm(const float* grads, long n) {
  // Fixed-size chunks summed in order: the result does not depend on the thread count.
  const long chunk = 1 << 16;
  const long nchunks = (n + chunk - 1) / chunk;
  std::vector<double> partial(nchunks, 0.0);
  parallel_for(nchunks, [&](long c0, long c1) {
    for (long c = c0; c < c1; ++c) partial[c] = sum_squares(grads + c * chunk, std::min(n, (c + 1) * chunk) - c * chunk);
  });
  double total = 0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

void scale_inplace(float* x, long n, float scale) {
  parallel_for(n, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) x[i] *= scale;
  });
}

double clip_and_adamw(float* params, float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, float max_norm, int t) {
  const double norm = grad_norm(grads, n);
  const float grad_scale = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.f;
  adamw_blocks(params, grads, m, v, n, grad_scale, AdamWConstants(lr, beta1, beta2, eps, weight_decay, t));
  return norm;
}

}  // namespace gradmm
