// AdamW, the global gradient norm and in-place scaling (ops.h / ops.cpp: adamw_update, grad_norm, scale_inplace).
// AdamW takes the same host-computed bias corrections as the CPU op (same arithmetic order, PyTorch semantics).
// The norm sums squares in double over a fixed grid, then one block adds the partial sums in order: the result
// does not depend on timing.
#pragma once
#include <mutex>

#include "common.cuh"

namespace gradmm {
namespace cuda {

constexpr int kNormBlocks = 1024;  // partial sums of a norm (also the x-update's norm_scratch size)

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, long n, float beta1, float beta2,
                             float eps, float step_size, float bc2_sqrt, float decay) {
  GRADMM_GRID_LOOP(i, n) {
    const float g = grads[i];
    const float p = params[i] * decay;
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    params[i] = p - step_size * (mi / denom);
  }
}

// partial[blockIdx.x] = Σ x² over this block's grid-stride share (gridDim.x ≤ kNormBlocks)
__global__ void sumsq_partial_kernel(double* partial, const float* x, long n) {
  double s = 0.0;
  GRADMM_GRID_LOOP(i, n) s += (double)x[i] * (double)x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void sum_partials_kernel(double* out, const double* partial, int nparts) {
  double s = 0.0;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

void adamw_update(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t) {
  if (n <= 0) return;
  // exactly as ops.cpp
  const float step_size = lr / (1.f - std::pow(beta1, (float)t));
  const float bc2_sqrt = std::sqrt(1.f - std::pow(beta2, (float)t));
  const float decay = 1.f - lr * weight_decay;
  adamw_kernel<<<grid_for(n, 256), 256>>>(params, grads, m, v, n, beta1, beta2, eps, step_size, bc2_sqrt, decay);
  check_launch("adamw_update");
}

double grad_norm(const float* grads, long n) {
  if (n <= 0) return 0.0;
  static std::mutex mu;
  static double* scratch = nullptr;  // kNormBlocks partial sums + the total; lives for the process
  std::lock_guard<std::mutex> lk(mu);
  if (!scratch) check((int)cudaMalloc(&scratch, (kNormBlocks + 1) * sizeof(double)), "cudaMalloc (grad_norm)");
  const unsigned blocks = grid_for(n, 256, kNormBlocks);
  sumsq_partial_kernel<<<blocks, 256>>>(scratch, grads, n);
  check_launch("grad_norm (partial)");
  sum_partials_kernel<<<1, 256>>>(scratch + kNormBlocks, scratch, (int)blocks);
  check_launch("grad_norm (total)");
  double total = 0.0;
  check((int)cudaMemcpy(&total, scratch + kNormBlocks, sizeof(double), cudaMemcpyDeviceToHost), "grad_norm (copy)");
  return std::sqrt(total);
}

__global__ void scale_kernel(float* x, long n, float s) {
  GRADMM_GRID_LOOP(i, n) x[i] *= s;
}
void scale(float* x, long n, float s) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, 256), 256>>>(x, n, s);
  check_launch("scale");
}

double clip_adamw(float* params, float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float max_norm, int t) {
  const double norm = grad_norm(grads, n);
  const float grad_scale = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.f;
  if (grad_scale != 1.f) scale(grads, n, grad_scale);
  adamw_update(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
  return norm;
}

}  // namespace cuda
}  // namespace gradmm
