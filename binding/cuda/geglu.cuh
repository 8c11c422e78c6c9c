// GeGLU (llama_ops.h: geglu_*, Gemma's MLP): out = gelu(gate) ⊙ up with gelu.cuh's tanh approximation. Grid-stride
// loops, tanhf in place of the CPU's polynomial.
#pragma once
#include "common.cuh"
#include "gelu.cuh"

namespace gradmm {
namespace cuda {

__device__ __forceinline__ float gelu_tanh_(float x) {
  return 0.5f * x * (1.f + tanhf(kGeluS * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float gelu_tanh_grad_(float x) {
  const float th = tanhf(kGeluS * (x + 0.044715f * x * x * x));
  return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * kGeluS * (1.f + 3.f * 0.044715f * x * x);
}

__global__ void geglu_forward_kernel(float* out, const float* gate, const float* up, long N) {
  GRADMM_GRID_LOOP(i, N) out[i] = gelu_tanh_(gate[i]) * up[i];
}
__global__ void geglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                      long N) {
  GRADMM_GRID_LOOP(i, N) {
    const float g = gate[i], d = dout[i];
    if (dgate) dgate[i] += d * up[i] * gelu_tanh_grad_(g);
    if (dup) dup[i] += d * gelu_tanh_(g);
  }
}
void geglu_forward(float* out, const float* gate, const float* up, long N) {
  if (N <= 0) return;
  geglu_forward_kernel<<<grid_for(N, 256), 256>>>(out, gate, up, N);
  check_launch("geglu_forward");
}
void geglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long N) {
  if (N <= 0 || (!dgate && !dup)) return;
  geglu_backward_kernel<<<grid_for(N, 256), 256>>>(dgate, dup, dout, gate, up, N);
  check_launch("geglu_backward");
}

}  // namespace cuda
}  // namespace gradmm
