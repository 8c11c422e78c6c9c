// Causal self-attention (ops.h: attention_*), the CPU op's structure on the device: per (batch, head) the scores
// Q·Kᵀ, the scaled causal softmax saved as probabilities att [B,NH,T,T], and att·V, each product one batched GEMM
// over strided views of the packed qkv [B,T,3C] buffer; the softmax and its backward are one warp per row.
#pragma once
#include <algorithm>
#include <stdexcept>

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


// ---- decoding against a KV cache (ops.h attention_decode_forward) ----
__global__ void kv_append_kernel(float* kcache, float* vcache, const float* qkv, int R, int Tn, int C, int len, int cap) {
  GRADMM_GRID_LOOP(i, (long)R * Tn * C) {
    const long rt = i / C;
    const int c = (int)(i % C), t = (int)(rt % Tn), r = (int)(rt / Tn);
    const float* src = qkv + rt * 3 * C;
    const long dst = ((long)r * cap + len + t) * C + c;
    kcache[dst] = src[C + c];
    vcache[dst] = src[2 * C + c];
  }
}

// One block per (row, head, new position); the scores of positions 0..p live in dynamic shared memory.
__global__ void attention_decode_kernel(float* out, const float* kcache, const float* vcache, const float* pk,
                                        const float* pv, const float* qkv, int Tn, int C, int NH, int P, int len,
                                        int cap, float scale) {
  extern __shared__ float score[];
  const int t = blockIdx.x % Tn, h = (blockIdx.x / Tn) % NH, r = blockIdx.x / (Tn * NH);
  const int hs = C / NH, p = P + len + t;
  const float* q = qkv + ((long)r * Tn + t) * 3 * C + h * hs;
  float maxv = -INFINITY;
  for (int j = threadIdx.x; j <= p; j += blockDim.x) {
    const float* k = (j < P ? pk + (long)j * C : kcache + ((long)r * cap + j - P) * C) + h * hs;
    float s = 0.f;
    for (int i = 0; i < hs; ++i) s += q[i] * k[i];
    s *= scale;
    score[j] = s;
    maxv = fmaxf(maxv, s);
  }
  maxv = block_max(maxv);
  float sum = 0.f;
  for (int j = threadIdx.x; j <= p; j += blockDim.x) sum += (score[j] = expf(score[j] - maxv));
  const float inv = 1.f / block_sum(sum);  // synchronises: every score is written
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j <= p; ++j) acc += score[j] * (j < P ? pv + (long)j * C : vcache + ((long)r * cap + j - P) * C)[h * hs + i];
    out[((long)r * Tn + t) * C + h * hs + i] = acc * inv;
  }
}

void attention_decode_forward(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                              const float* qkv, int R, int Tn, int C, int NH, int P, int len, int cap) {
  if (R <= 0 || Tn <= 0) return;
  const long n = (long)R * Tn * C;
  kv_append_kernel<<<(unsigned)std::min<long>((n + 255) / 256, 65535), 256>>>(kcache, vcache, qkv, R, Tn, C, len, cap);
  check_launch("attention_decode_forward (append)");
  const size_t shared = sizeof(float) * (size_t)(P + len + Tn);
  if (shared > 48 * 1024) throw std::runtime_error("attention_decode_forward: more than 12,288 positions");
  attention_decode_kernel<<<(unsigned)((long)R * NH * Tn), 128, shared>>>(out, kcache, vcache, pk, pv, qkv, Tn, C, NH, P,
                                                                           len, cap, 1.f / sqrtf((float)(C / NH)));
  check_launch("attention_decode_forward");
}

}  // namespace cuda
}  // namespace gradmm
