// SwiGLU (llama_ops.h: swiglu_*): out = silu(gate) ⊙ up, silu(g) = g·σ(g). Grid-stride loops; expf in place of
// the CPU's polynomial exp (both within ~2e-7 relative).
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, long N) {
  GRADMM_GRID_LOOP(i, N) {
    const float g = gate[i];
    out[i] = (g * sigmoidf_(g)) * up[i];
  }
}
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, long N) {
  GRADMM_GRID_LOOP(i, N) {
    const float g = gate[i], s = sigmoidf_(g), d = dout[i];
    if (dgate) dgate[i] += d * up[i] * (s * (1.f + g * (1.f - s)));
    if (dup) dup[i] += d * (g * s);
  }
}
void swiglu_forward(float* out, const float* gate, const float* up, long N) {
  if (N <= 0) return;
  swiglu_forward_kernel<<<grid_for(N, 256), 256>>>(out, gate, up, N);
  check_launch("swiglu_forward");
}
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long N) {
  if (N <= 0 || (!dgate && !dup)) return;
  swiglu_backward_kernel<<<grid_for(N, 256), 256>>>(dgate, dup, dout, gate, up, N);
  check_launch("swiglu_backward");
}

}  // namespace cuda
}  // namespace gradmm
