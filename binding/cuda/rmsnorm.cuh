// RMSNorm (llama_ops.h: rmsnorm_*): one warp per row for the forward and the input gradient; the weight gradient is
// layernorm.cuh's column-sum kernel without centring (rows in a fixed order per column: deterministic).
#pragma once
#include "common.cuh"
#include "layernorm.cuh"

namespace gradmm {
namespace cuda {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                                       float eps) {
  const int lane = threadIdx.x % kWarp;
  const long row = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= N) return;  // warp-uniform
  const float* x = inp + row * C;
  float ss = 0.f;
  for (int c = lane; c < C; c += kWarp) ss += x[c] * x[c];
  const float s = 1.0f / sqrtf(warp_sum(ss) / (float)C + eps);
  float* o = out + row * C;
  for (int c = lane; c < C; c += kWarp) o[c] = weight[c] * (x[c] * s);
  if (lane == 0 && rstd) rstd[row] = s;
}

// dx_j += s·w_j·d_j − x_j·s³/C · Σ_c w_c·d_c·x_c
__global__ void rmsnorm_backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                              const float* rstd, int N, int C) {
  const int lane = threadIdx.x % kWarp;
  const long row = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= N) return;
  const float* x = inp + row * C;
  const float* d = dout + row * C;
  const float s = rstd[row];
  float dot = 0.f;
  for (int c = lane; c < C; c += kWarp) dot += weight[c] * d[c] * x[c];
  const float k = warp_sum(dot) / (float)C * s * s * s;
  float* g = dinp + row * C;
  for (int c = lane; c < C; c += kWarp) g[c] += s * weight[c] * d[c] - x[c] * k;
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps) {
  if (N <= 0) return;
  const int rows_per_block = 256 / kWarp;
  rmsnorm_forward_kernel<<<(N + rows_per_block - 1) / rows_per_block, 256>>>(out, rstd, inp, weight, N, C, eps);
  check_launch("rmsnorm_forward");
}
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int N, int C) {
  if (N <= 0) return;
  if (dinp) {
    const int rows_per_block = 256 / kWarp;
    rmsnorm_backward_input_kernel<<<(N + rows_per_block - 1) / rows_per_block, 256>>>(dinp, dout, inp, weight, rstd,
                                                                                      N, C);
    check_launch("rmsnorm_backward (input)");
  }
  if (dweight) {
    layernorm_backward_params_kernel<<<(C + 31) / 32, dim3(32, 8)>>>(dweight, nullptr, dout, inp, nullptr, rstd, N, C);
    check_launch("rmsnorm_backward (weight)");
  }
}

}  // namespace cuda
}  // namespace gradmm
