// The projection's choice on the device (admm.cpp choose_tokens is the specification): per row, the k allowed tokens
// most similar to u_i by cosine, then the one the LM scores highest among them, with exactly the CPU's ids, ties
// included, so the similarities and logits never leave the device (exec_project downloads only the chosen ids).
//
// One block per row. The CPU orders the candidates by std::pair<float, int> (key = −sims[v]·inv_norm[v], then id),
// a strict total order when no key is NaN. Here each allowed token gets the 64-bit composite
//     ordered_bits(key) << 32 | id
// where ordered_bits maps floats to uint32 monotonically (negative: all bits flipped; otherwise: sign bit set), after
// normalising −0 to +0 (the CPU's float comparison makes them equal, so their tie is broken by id, as here). For
// non-NaN keys the composites compare exactly as the CPU's pairs, and they are distinct (ids are), so the CPU's k
// smallest pairs are exactly the composites ≤ T, the k-th smallest composite. T is found by radix select: 8-bit
// digits from the most significant, a shared-memory histogram of the candidates still matching the digits chosen
// so far, the digit holding the wanted rank; it stops early once the whole bin belongs to the k smallest (usually
// after the float bits, i.e. four passes). Keys are recomputed from sims/inv_norm in each pass (no scratch memory).
// Then a block reduction of (logit descending, id ascending) over the composites ≤ T: a strict total order for
// non-NaN logits (−0 == +0 as floats, ties by id), so any reduction order gives the CPU scan's result.
//
// NaN: a key is NaN only when a similarity or inv_norm is not finite (finite·finite may overflow to ±inf but is
// never NaN), i.e. U or the embeddings hold inf/NaN; the CPU's nth_element is then not well defined and the two
// paths may differ. NaN logits are likewise unsupported (the CPU scan would depend on the candidates' order).
// The key is one IEEE multiply (__fmul_rn: never contracted) of the same floats as on the CPU, denormals kept.
#pragma once
#include <stdexcept>

#include "common.cuh"

namespace gradmm {
namespace cuda {

constexpr int kChooseThreads = 512;

// Monotone map float → uint32 (a < b ⇒ bits(a) < bits(b) for non-NaN a, b; −0 and +0 map alike).
__device__ __forceinline__ uint32_t ordered_bits(float x) {
  uint32_t u = __float_as_uint(x);
  if (u == 0x80000000u) u = 0u;  // −0 → +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
// The composite of allowed token j of a row: (ordered key) << 32 | id.
__device__ __forceinline__ uint64_t choice_key(const float* s, const float* inv_norm, const int* ids, int j) {
  const int v = ids[j];
  const float key = __fmul_rn(-s[v], inv_norm[v]);  // ascending = most similar first
  return ((uint64_t)ordered_bits(key) << 32) | (uint32_t)v;
}
// (l, v) before (bl, bv) in the LM's order: higher logit, then smaller id; v < 0 = none.
__device__ __forceinline__ bool lm_before(float l, int v, float bl, int bv) {
  return v >= 0 && (bv < 0 || l > bl || (l == bl && v < bv));
}

__global__ void __launch_bounds__(kChooseThreads)
project_choose_kernel(int* chosen, const float* sims, const float* logits, const float* inv_norm, const int* ids,
                      int n, int V, int k) {
  __shared__ unsigned hist[256];
  __shared__ unsigned long long s_prefix;
  __shared__ unsigned s_rank;
  __shared__ int s_done;
  __shared__ float s_l[kWarp];
  __shared__ int s_v[kWarp];
  const long b = blockIdx.x;
  const float* s = sims + b * V;
  const float* lg = logits + b * V;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, nwarps = blockDim.x / kWarp;

  // ---- radix select of the k-th smallest composite ----
  uint64_t prefix = 0;    // the digits chosen so far (bits above `shift`)
  unsigned rank = k;      // the wanted rank (1-based) among the candidates matching them
  uint64_t threshold = 0;
  for (int shift = 56;; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0u;
    __syncthreads();
    const uint64_t mask = shift >= 56 ? 0ull : ~0ull << (shift + 8);
    for (int j0 = 0; j0 < n; j0 += blockDim.x) {  // the same trip count for every thread (whole warps below)
      const int j = j0 + threadIdx.x;
      int digit = -1;  // −1: out of range or no longer a candidate
      if (j < n) {
        const uint64_t key = choice_key(s, inv_norm, ids, j);
        if ((key & mask) == prefix) digit = (int)((key >> shift) & 255u);
      }
#if __CUDA_ARCH__ >= 700
      // warp-aggregated: the keys share few leading digits, so one atomic per distinct digit of the warp
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (digit >= 0 && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], (unsigned)__popc(peers));
#else
      if (digit >= 0) atomicAdd(&hist[digit], 1u);
#endif
    }
    __syncthreads();
    if (warp == 0) {  // the digit holding rank: each lane sums 8 bins, a warp scan, the first lane reaching it
      unsigned c[8], local = 0;
#pragma unroll
      for (int q = 0; q < 8; ++q) local += (c[q] = hist[lane * 8 + q]);
      unsigned incl = local;
#pragma unroll
      for (int o = 1; o < kWarp; o <<= 1) {
        const unsigned t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
      }
      const unsigned reach = __ballot_sync(0xffffffffu, incl >= rank);  // non-zero: the bins hold ≥ rank
      if (lane == __ffs(reach) - 1) {
        unsigned acc = incl - local;
        int q = 0;
        while (q < 7 && acc + c[q] < rank) acc += c[q++];
        const unsigned r = rank - acc;  // rank within bin q
        s_prefix = prefix | ((uint64_t)(lane * 8 + q) << shift);
        s_rank = r;
        s_done = c[q] == r || shift == 0;  // the whole bin is among the k smallest
      }
    }
    __syncthreads();
    prefix = s_prefix;
    rank = s_rank;
    if (s_done) {
      threshold = prefix | ((1ull << shift) - 1ull);
      break;
    }
    // the next pass rewrites hist and the s_* only after two more barriers, when every thread has read them
  }

  // ---- the LM's choice among the composites ≤ threshold (exactly k of them) ----
  float bl = 0.f;
  int bv = -1;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const uint64_t key = choice_key(s, inv_norm, ids, j);
    if (key <= threshold) {
      const int v = (int)(uint32_t)key;
      const float l = lg[v];
      if (lm_before(l, v, bl, bv)) bl = l, bv = v;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ol = __shfl_xor_sync(0xffffffffu, bl, o);
    const int ov = __shfl_xor_sync(0xffffffffu, bv, o);
    if (lm_before(ol, ov, bl, bv)) bl = ol, bv = ov;
  }
  if (lane == 0) s_l[warp] = bl, s_v[warp] = bv;
  __syncthreads();
  if (warp == 0) {
    bl = lane < nwarps ? s_l[lane] : 0.f;
    bv = lane < nwarps ? s_v[lane] : -1;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ol = __shfl_xor_sync(0xffffffffu, bl, o);
      const int ov = __shfl_xor_sync(0xffffffffu, bv, o);
      if (lm_before(ol, ov, bl, bv)) bl = ol, bv = ov;
    }
    if (lane == 0) chosen[b] = bv;
  }
}

void project_choose(int* chosen, const float* sims, const float* logits, const float* inv_norm, const int* allowed_ids,
                    int n_allowed, int B, int V, int k) {
  if (n_allowed < 1 || n_allowed > V) throw std::invalid_argument("choose_tokens: n_allowed must be in [1, V]");
  if (k < 1 || k > n_allowed) throw std::invalid_argument("choose_tokens: k must be in [1, n_allowed]");
  if (B <= 0) return;
  project_choose_kernel<<<B, kChooseThreads>>>(chosen, sims, logits, inv_norm, allowed_ids, n_allowed, V, k);
  check_launch("project_choose");
}

}  // namespace cuda
}  // namespace gradmm
