// Causal self-attention (ops.h: attention_*; llama_ops.h: gqa_attention_*), the CPU op's structure on the device:
// per (batch, head) the scores Q·Kᵀ, the scaled causal softmax saved as probabilities att [B,NH,T,T], and att·V,
// each product batched GEMMs over strided views of the packed qkv buffer; the softmax and its backward are one warp
// per row. Multi-head attention (GPT-2) is grouped-query attention with one query head per key/value head.
#pragma once
#include <algorithm>
#include <stdexcept>

#include "common.cuh"

namespace gradmm {
namespace cuda {

// The first key query position t sees: t − window + 1 with a sliding window (window > 0), else 0 (llama_ops.h
// first_key).
__device__ __forceinline__ int first_key_(int t, int window) { return window > 0 && t >= window ? t - window + 1 : 0; }

// rows = B·NH·T rows of T scores; row t of each (b, h) block keeps columns lo..t (lo = first_key_(t, window))
__global__ void attention_softmax_kernel(float* att, long rows, int T, float scale, int window) {
  const int lane = threadIdx.x % kWarp;
  const long rr = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (rr >= rows) return;  // warp-uniform
  const int t = (int)(rr % T), lo = first_key_(t, window);
  float* row = att + rr * T;
  float maxv = -INFINITY;
  for (int t2 = lo + lane; t2 <= t; t2 += kWarp) maxv = fmaxf(maxv, row[t2] * scale);
  maxv = warp_max(maxv);
  float sum = 0.f;
  for (int t2 = lo + lane; t2 <= t; t2 += kWarp) {
    const float e = expf(row[t2] * scale - maxv);
    row[t2] = e;
    sum += e;
  }
  const float inv = 1.f / warp_sum(sum);
  for (int t2 = lo + lane; t2 <= t; t2 += kWarp) row[t2] *= inv;
  for (int t2 = lane; t2 < lo; t2 += kWarp) row[t2] = 0.f;
  for (int t2 = t + 1 + lane; t2 < T; t2 += kWarp) row[t2] = 0.f;
}

// datt ← att ⊙ (datt − Σ att·datt) · scale on the visible part, 0 elsewhere
__global__ void attention_softmax_backward_kernel(float* datt, const float* att, long rows, int T, float scale,
                                                  int window) {
  const int lane = threadIdx.x % kWarp;
  const long rr = (long)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (rr >= rows) return;
  const int t = (int)(rr % T), lo = first_key_(t, window);
  const float* a = att + rr * T;
  float* d = datt + rr * T;
  float dot = 0.f;
  for (int t2 = lo + lane; t2 <= t; t2 += kWarp) dot += a[t2] * d[t2];
  dot = warp_sum(dot);
  for (int t2 = lo + lane; t2 <= t; t2 += kWarp) d[t2] = a[t2] * (d[t2] - dot) * scale;
  for (int t2 = lane; t2 < lo; t2 += kWarp) d[t2] = 0.f;
  for (int t2 = t + 1 + lane; t2 < T; t2 += kWarp) d[t2] = 0.f;
}

// Grouped-query attention (llama_ops.h gqa_attention_*) over the packed qkv [B,T,(NH+2·NKV)·hd]: query head h reads
// key/value head h / rep (rep = NH/NKV). Each product runs as rep batched GEMMs over the B·NKV (batch, kv head)
// pairs, launch j taking query head kvh·rep + j of every pair, so strided views suffice; rep = 1 is GPT-2's
// multi-head attention (ops.h attention_*: NH = NKV, hd = C/NH), whose launchers call these.
namespace {
struct GqaShape {
  int B, T, NH, NKV, hd, rep, ld, QC;
  long kofs, vofs, sq, satt, so;
  GqaShape(int B_, int T_, int NH_, int NKV_, int hd_) : B(B_), T(T_), NH(NH_), NKV(NKV_), hd(hd_) {
    if (NKV <= 0 || NH % NKV != 0) throw std::invalid_argument("gqa attention: NH must be a multiple of NKV");
    rep = NH / NKV;
    ld = (NH + 2 * NKV) * hd;
    QC = NH * hd;
    kofs = (long)NH * hd;
    vofs = (long)(NH + NKV) * hd;
    sq = (long)T * ld;
    satt = (long)T * T;
    so = (long)T * QC;
  }
  // per (batch, kv head) pair: strides of query head j's slice of q/out/dout and of its att block
  long q_inner() const { return (long)rep * hd; }
  long att_outer() const { return NH * satt; }
  long att_inner() const { return rep * satt; }
};
}  // namespace

void gqa_attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV, int hd,
                           int window) {
  if (B <= 0 || T <= 0) return;
  const GqaShape g(B, T, NH, NKV, hd);
  const int batch = B * NKV;
  // att[b,h] = Q·Kᵀ (unscaled, as in the CPU op)
  for (int j = 0; j < g.rep; ++j)
    gemm_batched(false, true, T, T, hd, qkv + (long)j * hd, g.ld, qkv + g.kofs, g.ld, att + j * g.satt, T, false,
                 batch, NKV, g.sq, g.q_inner(), g.sq, hd, g.att_outer(), g.att_inner());
  const long rows = (long)B * NH * T;
  const int warps = 256 / kWarp;
  attention_softmax_kernel<<<(unsigned)((rows + warps - 1) / warps), 256>>>(att, rows, T, 1.f / sqrtf((float)hd),
                                                                             window);
  check_launch("attention_forward (softmax)");
  // out[b,:,h] = att·V
  for (int j = 0; j < g.rep; ++j)
    gemm_batched(false, false, T, hd, T, att + j * g.satt, T, qkv + g.vofs, g.ld, out + (long)j * hd, g.QC, false,
                 batch, NKV, g.att_outer(), g.att_inner(), g.sq, hd, g.so, g.q_inner());
}

void gqa_attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, int B,
                            int T, int NH, int NKV, int hd, int window) {
  if (B <= 0 || T <= 0) return;
  const GqaShape g(B, T, NH, NKV, hd);
  const int batch = B * NKV;
  float* datt = scratch;
  for (int j = 0; j < g.rep; ++j) {
    // datt = dout·Vᵀ
    gemm_batched(false, true, T, T, hd, dout + (long)j * hd, g.QC, qkv + g.vofs, g.ld, datt + j * g.satt, T, false,
                 batch, NKV, g.so, g.q_inner(), g.sq, hd, g.att_outer(), g.att_inner());
    // dV += attᵀ·dout (the rep query heads of a kv head in order, one launch each: no races)
    gemm_batched(true, false, T, hd, T, att + j * g.satt, T, dout + (long)j * hd, g.QC, dqkv + g.vofs, g.ld, true,
                 batch, NKV, g.att_outer(), g.att_inner(), g.so, g.q_inner(), g.sq, hd);
  }
  const long rows = (long)B * NH * T;
  const int warps = 256 / kWarp;
  attention_softmax_backward_kernel<<<(unsigned)((rows + warps - 1) / warps), 256>>>(datt, att, rows, T,
                                                                                     1.f / sqrtf((float)hd), window);
  check_launch("attention_backward (softmax)");
  for (int j = 0; j < g.rep; ++j) {
    // dQ += dpre·K ;  dK += dpreᵀ·Q
    gemm_batched(false, false, T, hd, T, datt + j * g.satt, T, qkv + g.kofs, g.ld, dqkv + (long)j * hd, g.ld, true,
                 batch, NKV, g.att_outer(), g.att_inner(), g.sq, hd, g.sq, g.q_inner());
    gemm_batched(true, false, T, hd, T, datt + j * g.satt, T, qkv + (long)j * hd, g.ld, dqkv + g.kofs, g.ld, true,
                 batch, NKV, g.att_outer(), g.att_inner(), g.sq, g.q_inner(), g.sq, hd);
  }
}


// ---- decoding against a KV cache (llama_ops.h gqa_attention_decode_forward; multi-head attention is the case
// NKV = NH) ----
// caches [R, cap, KV] with KV = NKV·hd; qkv rows of ld = (NH+2·NKV)·hd: q heads | k heads | v heads
__global__ void kv_append_kernel(float* kcache, float* vcache, const float* qkv, int R, int Tn, int ld, long kofs,
                                 int KV, int len, int cap) {
  GRADMM_GRID_LOOP(i, (long)R * Tn * KV) {
    const long rt = i / KV;
    const int c = (int)(i % KV), t = (int)(rt % Tn), r = (int)(rt / Tn);
    const float* src = qkv + rt * ld + kofs;
    const long dst = ((long)r * cap + len + t) * KV + c;
    kcache[dst] = src[c];
    vcache[dst] = src[KV + c];
  }
}

// One block per (row, head, new position); the scores of positions lo..p (lo = first_key_(p, window)) live in
// dynamic shared memory, indexed by position.
__global__ void attention_decode_kernel(float* out, const float* kcache, const float* vcache, const float* pk,
                                        const float* pv, const float* qkv, int Tn, int NH, int NKV, int hd, int P,
                                        int len, int cap, float scale, int window) {
  extern __shared__ float score[];
  const int t = blockIdx.x % Tn, h = (blockIdx.x / Tn) % NH, r = blockIdx.x / (Tn * NH);
  const int ld = (NH + 2 * NKV) * hd, KV = NKV * hd, kvo = (h / (NH / NKV)) * hd, p = P + len + t;
  const int lo = first_key_(p, window);
  const float* q = qkv + ((long)r * Tn + t) * ld + (long)h * hd;
  float maxv = -INFINITY;
  for (int j = lo + threadIdx.x; j <= p; j += blockDim.x) {
    const float* k = (j < P ? pk + (long)j * KV : kcache + ((long)r * cap + j - P) * KV) + kvo;
    float s = 0.f;
    for (int i = 0; i < hd; ++i) s += q[i] * k[i];
    s *= scale;
    score[j] = s;
    maxv = fmaxf(maxv, s);
  }
  maxv = block_max(maxv);
  float sum = 0.f;
  for (int j = lo + threadIdx.x; j <= p; j += blockDim.x) sum += (score[j] = expf(score[j] - maxv));
  const float inv = 1.f / block_sum(sum);  // synchronises: every score is written
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float acc = 0.f;
    for (int j = lo; j <= p; ++j)
      acc += score[j] * (j < P ? pv + (long)j * KV : vcache + ((long)r * cap + j - P) * KV)[kvo + i];
    out[((long)r * Tn + t) * NH * hd + (long)h * hd + i] = acc * inv;
  }
}

void gqa_attention_decode_forward(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                                  const float* qkv, int R, int Tn, int NH, int NKV, int hd, int P, int len, int cap,
                                  int window) {
  if (R <= 0 || Tn <= 0) return;
  if (NKV <= 0 || NH % NKV != 0) throw std::invalid_argument("attention_decode_forward: NH must be a multiple of NKV");
  const int KV = NKV * hd;
  const long n = (long)R * Tn * KV;
  kv_append_kernel<<<(unsigned)std::min<long>((n + 255) / 256, 65535), 256>>>(kcache, vcache, qkv, R, Tn,
                                                                                (NH + 2 * NKV) * hd, (long)NH * hd, KV,
                                                                                len, cap);
  check_launch("attention_decode_forward (append)");
  const size_t shared = sizeof(float) * (size_t)(P + len + Tn);
  if (shared > 48 * 1024) throw std::runtime_error("attention_decode_forward: more than 12,288 positions");
  attention_decode_kernel<<<(unsigned)((long)R * NH * Tn), 128, shared>>>(out, kcache, vcache, pk, pv, qkv, Tn, NH,
                                                                           NKV, hd, P, len, cap,
                                                                           1.f / sqrtf((float)hd), window);
  check_launch("attention_decode_forward");
}

}  // namespace cuda
}  // namespace gradmm
