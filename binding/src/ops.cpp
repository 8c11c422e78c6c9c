#include "ops.h"

#include <vector>

namespace gradmm {

void adamw_update(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t) {
  // Same arithmetic order as torch.optim.AdamW, so results agree to rounding.
  const float step_size = lr / (1.f - std::pow(beta1, (float)t));
  const float bc2_sqrt = std::sqrt(1.f - std::pow(beta2, (float)t));
  const float decay = 1.f - lr * weight_decay;
  parallel_for(n, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) {
      float g = grads[i];
      params[i] *= decay;
      m[i] = beta1 * m[i] + (1.f - beta1) * g;
      v[i] = beta2 * v[i] + (1.f - beta2) * g * g;
      float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      params[i] -= step_size * (m[i] / denom);
    }
  });
}

double grad_norm(const float* grads, long n) {
  // Fixed-size chunks summed in order: the result does not depend on the thread count.
  const long chunk = 1 << 16;
  const long nchunks = (n + chunk - 1) / chunk;
  std::vector<double> partial(nchunks, 0.0);
  parallel_for(nchunks, [&](long c0, long c1) {
    for (long c = c0; c < c1; ++c) {
      double s = 0;
      for (long i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) s += (double)grads[i] * grads[i];
      partial[c] = s;
    }
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

}  // namespace gradmm
