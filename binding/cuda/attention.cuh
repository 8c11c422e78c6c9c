// Causal self-attention (ops.h: attention_*), the CPU op's structure on the device: per (batch, head) the scores
// Q·Kᵀ, the scaled causal softmax saved as probabilities att [B,NH,T,T], and att·V, each product one batched GEMM
// over strided views of the packed qkv [B,T,3C] buffer; the softmax and its backward are one warp per row.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

// rows = B·NH·T rows of T scores; row t of each (b, h) block keeps columns ≤ t
__global__ void attention_softmax_kernel(float* att, long rows, int T, float scale) {
  const int lane = threadIdx.x % kWarp;
  const long rr = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (rr >= rows) return;  // warp-uniform
  const int t = (int)(rr % T);
  float* row = att + rr * T;
  float maxv = -INFINITY;
  for (int t2 = lane; t2 <= t; t2 += kWarp) maxv = fmaxf(maxv, row[t2] * scale);
  maxv = warp_max(maxv);
  float sum = 0.f;
  for (int t2 = lane; t2 <= t; t2 += kWarp) {
    const float e = expf(row[t2] * scale - maxv);
    row[t2] = e;
    sum += e;
  }
  const float inv = 1.f / warp_sum(sum);
  for (int t2 = lane; t2 <= t; t2 += kWarp) row[t2] *= inv;
  for (int t2 = t + 1 + lane; t2 < T; t2 += kWarp) row[t2] = 0.f;
}

// datt ← att ⊙ (datt − Σ att·datt) · scale on the causal part, 0 above it
__global__ void attention_softmax_backward_kernel(float* datt, const float* att, long rows, int T, float scale) {
  const int lane = threadIdx.x % kWarp;
  const long rr = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (rr >= rows) return;
  const int t = (int)(rr % T);
  const float* a = att + rr * T;
  float* d = datt + rr * T;
  float dot = 0.f;
  for (int t2 = lane; t2 <= t; t2 += kWarp) dot += a[t2] * d[t2];
  dot = warp_sum(dot);
  for (int t2 = lane; t2 <= t; t2 += kWarp) d[t2] = a[t2] * (d[t2] - dot) * scale;
  for (int t2 = t + 1 + lane; t2 < T; t2 += kWarp) d[t2] = 0.f;
}

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  if (B <= 0 || T <= 0) return;
  const int hs = C / NH, ld = 3 * C;
  const long sq = (long)T * ld, satt = (long)T * T, so = (long)T * C;
  // att[b,h] = Q·Kᵀ (unscaled, as in the CPU op)
  gemm_batched(false, true, T, T, hs, qkv, ld, qkv + C, ld, att, T, false, B * NH, NH, sq, hs, sq, hs, NH * satt, satt);
  const long rows = (long)B * NH * T;
  const int warps = 256 / kWarp;
  attention_softmax_kernel<<<(unsigned)((rows + warps - 1) / warps), 256>>>(att, rows, T, 1.f / sqrtf((float)hs));
  check_launch("attention_forward (softmax)");
  // out[b,:,h] = att·V
  gemm_batched(false, false, T, hs, T, att, T, qkv + 2 * C, ld, out, C, false, B * NH, NH, NH * satt, satt, sq, hs,
               so, hs);
}

void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH) {
  if (B <= 0 || T <= 0) return;
  const int hs = C / NH, ld = 3 * C;
  const long sq = (long)T * ld, satt = (long)T * T, so = (long)T * C;
  float* datt = scratch;
  // datt = dout·Vᵀ
  gemm_batched(false, true, T, T, hs, dout, C, qkv + 2 * C, ld, datt, T, false, B * NH, NH, so, hs, sq, hs, NH * satt,
               satt);
  // dV += attᵀ·dout
  gemm_batched(true, false, T, hs, T, att, T, dout, C, dqkv + 2 * C, ld, true, B * NH, NH, NH * satt, satt, so, hs, sq,
               hs);
  const long rows = (long)B * NH * T;
  const int warps = 256 / kWarp;
  attention_softmax_backward_kernel<<<(unsigned)((rows + warps - 1) / warps), 256>>>(datt, att, rows, T,
                                                                                     1.f / sqrtf((float)hs));
  check_launch("attention_backward (softmax)");
  // dQ += dpre·K ;  dK += dpreᵀ·Q
  gemm_batched(false, false, T, hs, T, datt, T, qkv + C, ld, dqkv, ld, true, B * NH, NH, NH * satt, satt, sq, hs, sq,
               hs);
  gemm_batched(true, false, T, hs, T, datt, T, qkv, ld, dqkv + C, ld, true, B * NH, NH, NH * satt, satt, sq, hs, sq,
               hs);
}

}  // namespace cuda
}  // namespace gradmm
