// GELU, tanh approximation (GPT-2's "gelu_new"; ops.h: gelu_*). Grid-stride loops, tanhf in place of the CPU's
// polynomial (both within ~1e-7 absolute).
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

constexpr float kGeluS = 0.7978845608028654f;  // sqrt(2/pi)

__global__ void gelu_forward_kernel(float* out, const float* inp, long N) {
  GRADMM_GRID_LOOP(i, N) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.f + tanhf(kGeluS * (x + 0.044715f * x * x * x)));
  }
}
__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, long N) {
  GRADMM_GRID_LOOP(i, N) {
    const float x = inp[i];
    const float u = kGeluS * (x + 0.044715f * x * x * x);
    const float th = tanhf(u);
    const float sech2 = 1.f - th * th;
    const float grad = 0.5f * (1.f + th) + 0.5f * x * sech2 * kGeluS * (1.f + 3.f * 0.044715f * x * x);
    dinp[i] += grad * dout[i];
  }
}
void gelu_forward(float* out, const float* inp, long N) {
  if (N <= 0) return;
  gelu_forward_kernel<<<grid_for(N, 256), 256>>>(out, inp, N);
  check_launch("gelu_forward");
}
void gelu_backward(float* dinp, const float* inp, const float* dout, long N) {
  if (N <= 0) return;
  gelu_backward_kernel<<<grid_for(N, 256), 256>>>(dinp, inp, dout, N);
  check_launch("gelu_backward");
}

}  // namespace cuda
}  // namespace gradmm
