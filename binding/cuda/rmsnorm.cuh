// RMSNorm (llama_ops.h: rmsnorm_*): one warp per normalised group (a row, or one head of a row: `heads` groups of C
// at stride ld) for the forward and the input gradient; w' = w + w_offset (Gemma: 1). The weight gradient of whole
// contiguous rows is layernorm.cuh's column-sum kernel without centring; of head groups, a column-sum kernel over the
// groups (rows in a fixed order per column either way: deterministic).
#pragma once
#include "common.cuh"
#include "layernorm.cuh"

namespace gradmm {
namespace cuda {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight, long groups,
                                       int C, float eps, int heads, int ld, float w_offset) {
  const int lane = threadIdx.x % kWarp;
  const long row = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= groups) return;  // warp-uniform
  const long at = (row / heads) * ld + (row % heads) * C;
  const float* x = inp + at;
  float ss = 0.f;
  for (int c = lane; c < C; c += kWarp) ss += x[c] * x[c];
  const float s = 1.0f / sqrtf(warp_sum(ss) / (float)C + eps);
  float* o = out + at;
  for (int c = lane; c < C; c += kWarp) o[c] = (weight[c] + w_offset) * (x[c] * s);
  if (lane == 0 && rstd) rstd[row] = s;
}

// dx_j += s·w_j·d_j − x_j·s³/C · Σ_c w_c·d_c·x_c
__global__ void rmsnorm_backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                              const float* rstd, long groups, int C, int heads, int ld,
                                              float w_offset) {
  const int lane = threadIdx.x % kWarp;
  const long row = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= groups) return;
  const long at = (row / heads) * ld + (row % heads) * C;
  const float* x = inp + at;
  const float* d = dout + at;
  const float s = rstd[row];
  float dot = 0.f;
  for (int c = lane; c < C; c += kWarp) dot += (weight[c] + w_offset) * d[c] * x[c];
  const float k = warp_sum(dot) / (float)C * s * s * s;
  float* g = dinp + at;
  for (int c = lane; c < C; c += kWarp) g[c] += s * (weight[c] + w_offset) * d[c] - x[c] * k;
}

// dweight[c] += Σ_i x_i[c]·rstd[i]·d_i[c] over the groups i in order, one thread per column (head groups are short:
// C = head_dim)
__global__ void rmsnorm_backward_groups_weight_kernel(float* dweight, const float* dout, const float* inp,
                                                      const float* rstd, long groups, int C, int heads, int ld) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = dweight[c];
  for (long i = 0; i < groups; ++i) {
    const long at = (i / heads) * ld + (i % heads) * C + c;
    acc += inp[at] * rstd[i] * dout[at];
  }
  dweight[c] = acc;
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps,
                     int heads, int ld, float w_offset) {
  if (N <= 0) return;
  if (ld == 0) ld = heads * C;
  const long groups = (long)N * heads;
  const int rows_per_block = 256 / kWarp;
  rmsnorm_forward_kernel<<<(unsigned)((groups + rows_per_block - 1) / rows_per_block), 256>>>(
      out, rstd, inp, weight, groups, C, eps, heads, ld, w_offset);
  check_launch("rmsnorm_forward");
}
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int N, int C, int heads, int ld, float w_offset) {
  if (N <= 0) return;
  if (ld == 0) ld = heads * C;
  const long groups = (long)N * heads;
  if (dinp) {
    const int rows_per_block = 256 / kWarp;
    rmsnorm_backward_input_kernel<<<(unsigned)((groups + rows_per_block - 1) / rows_per_block), 256>>>(
        dinp, dout, inp, weight, rstd, groups, C, heads, ld, w_offset);
    check_launch("rmsnorm_backward (input)");
  }
  if (dweight && heads == 1 && ld == C) {
    layernorm_backward_params_kernel<<<(C + 31) / 32, dim3(32, 8)>>>(dweight, nullptr, dout, inp, nullptr, rstd, N, C);
    check_launch("rmsnorm_backward (weight)");
  } else if (dweight) {
    rmsnorm_backward_groups_weight_kernel<<<(C + 127) / 128, 128>>>(dweight, dout, inp, rstd, groups, C, heads, ld);
    check_launch("rmsnorm_backward (weight, groups)");
  }
}

}  // namespace cuda
}  // namespace gradmm
