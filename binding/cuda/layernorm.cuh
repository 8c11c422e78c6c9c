// LayerNorm (ops.h: layernorm_*): one warp per row for the forward and the input gradient (two-pass mean and
// variance as in the CPU op); weight and bias gradients as column sums, 32 columns × 8 row-strided partial sums per
// block, combined in a fixed order.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                         const float* bias, int N, int C, float eps) {
  const int lane = threadIdx.x % kWarp;
  const long row = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= N) return;  // warp-uniform
  const float* x = inp + row * C;
  float s = 0.f;
  for (int c = lane; c < C; c += kWarp) s += x[c];
  const float m = warp_sum(s) / (float)C;
  float v = 0.f;
  for (int c = lane; c < C; c += kWarp) {
    const float d = x[c] - m;
    v += d * d;
  }
  v = warp_sum(v) / (float)C;
  const float r = 1.0f / sqrtf(v + eps);
  float* o = out + row * C;
  for (int c = lane; c < C; c += kWarp) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

__global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                                const float* mean, const float* rstd, int N, int C) {
  const int lane = threadIdx.x % kWarp;
  const long row = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= N) return;
  const float* x = inp + row * C;
  const float* d = dout + row * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_mean = 0.f, dnorm_norm_mean = 0.f;
  for (int c = lane; c < C; c += kWarp) {
    const float dn = weight[c] * d[c];
    dnorm_mean += dn;
    dnorm_norm_mean += dn * (x[c] - m) * s;
  }
  dnorm_mean = warp_sum(dnorm_mean) / (float)C;
  dnorm_norm_mean = warp_sum(dnorm_norm_mean) / (float)C;
  float* g = dinp + row * C;
  for (int c = lane; c < C; c += kWarp) {
    const float norm = (x[c] - m) * s;
    g[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

// block (32, 8): column blockIdx.x·32 + threadIdx.x, rows threadIdx.y, threadIdx.y + 8, ...
// mean == nullptr: no centring (RMSNorm's weight gradient, rmsnorm.cuh); dweight or dbias may be nullptr
__global__ void layernorm_backward_params_kernel(float* dweight, float* dbias, const float* dout, const float* inp,
                                                 const float* mean, const float* rstd, int N, int C) {
  __shared__ float sw[8][33], sb[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * 32 + tx;
  float aw = 0.f, ab = 0.f;
  if (c < C)
    for (long r = ty; r < N; r += 8) {
      const float d = dout[r * C + c];
      aw += (mean ? inp[r * C + c] - mean[r] : inp[r * C + c]) * rstd[r] * d;
      ab += d;
    }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int y = 1; y < 8; ++y) {
      aw += sw[y][tx];
      ab += sb[y][tx];
    }
    if (dweight) dweight[c] += aw;
    if (dbias) dbias[c] += ab;
  }
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C, float eps) {
  if (N <= 0) return;
  const int rows_per_block = 256 / kWarp;
  layernorm_forward_kernel<<<(N + rows_per_block - 1) / rows_per_block, 256>>>(out, mean, rstd, inp, weight, bias, N,
                                                                              C, eps);
  check_launch("layernorm_forward");
}
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C) {
  if (N <= 0) return;
  if (dinp) {
    const int rows_per_block = 256 / kWarp;
    layernorm_backward_input_kernel<<<(N + rows_per_block - 1) / rows_per_block, 256>>>(dinp, dout, inp, weight, mean,
                                                                                        rstd, N, C);
    check_launch("layernorm_backward (input)");
  }
  if (dweight || dbias) {
    layernorm_backward_params_kernel<<<(C + 31) / 32, dim3(32, 8)>>>(dweight, dbias, dout, inp, mean, rstd, N, C);
    check_launch("layernorm_backward (params)");
  }
}

}  // namespace cuda
}  // namespace gradmm
