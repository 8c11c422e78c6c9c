// The Llama family's CPU ops, in the style of ops.h: one <op>_forward / <op>_backward pair per op, raw pointers,
// explicit shapes (N rows, C channels, T time, NH query heads, NKV key/value heads, hd head size). Backward ops
// ACCUMULATE (+=) into gradient buffers; a null gradient pointer skips that work. Templated on the float type
// (`double` exists for the gradient checks in binding/tests/llama_tests.cpp).
//
// Semantics follow Hugging Face LlamaForCausalLM (also Qwen2 / Mistral without sliding windows):
//   RMSNorm        y = w ⊙ (x · rsqrt(mean(x²) + eps))
//   rotary (RoPE)  rotate_half convention: for i < hd/2, (x_i, x_{i+hd/2}) is rotated by angle pos·inv_freq_i
//   SwiGLU         silu(gate) ⊙ up   (GeGLU, Gemma's: gelu_tanh(gate) ⊙ up)
//   attention      causal, grouped-query: query head h reads key/value head h / (NH/NKV) (HF repeat_kv)
//   linear         nn.Linear layout, W [out, in]: y = x·Wᵀ + b
#pragma once
#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "ops.h"

namespace gradmm {

// ---- linear layer, nn.Linear layout, strided rows: out[r*ldo + o] = Σ_c inp[r*ldi + c]·W[o*C + c] + b[o] ----
// Strides let q/k/v projections write straight into one packed [N, (NH+2·NKV)·hd] buffer.
template <typename F>
void linear_forward(F* out, int ldo, const F* inp, int ldi, const F* weight, const F* bias, int N, int C, int OC) {
  gemm<F>(false, true, N, OC, C, inp, ldi, weight, C, out, ldo, false);
  if (bias)
    parallel_for(N, [&](long r0, long r1) {
      for (long r = r0; r < r1; ++r)
        for (int o = 0; o < OC; ++o) out[r * ldo + o] += bias[o];
    });
}
template <typename F>
void linear_backward(F* dinp, int lddi, F* dweight, F* dbias, const F* dout, int ldd, const F* inp, int ldi,
                     const F* weight, int N, int C, int OC) {
  if (dinp) gemm<F>(false, false, N, C, OC, dout, ldd, weight, C, dinp, lddi, true);     // dinp += dout · W
  if (dweight) gemm<F>(true, false, OC, C, N, dout, ldd, inp, ldi, dweight, C, true);    // dW += doutᵀ · inp
  if (dbias)  // column sums: split columns, rows in a fixed order (same bits for any thread count)
    parallel_for(OC, [&](long o0, long o1) {
      for (long r = 0; r < N; ++r)
        for (long o = o0; o < o1; ++o) dbias[o] += dout[r * ldd + o];
    });
}

// ---- RMSNorm over the last dimension; saves the reciprocal RMS per row (sums of squares in double) ----
// y = (w + w_offset) ⊙ (x · rsqrt(mean(x²) + eps)). Gemma's norms store zero-centred weights and scale by (1 + w):
// w_offset = 1. Each of the N rows holds `heads` groups of C channels, normalised separately (Gemma's q/k norms over
// each head of a packed qkv row), group g of row r at r·ld + g·C (ld = 0: heads·C, contiguous); rstd [N·heads].
// out may alias inp.
template <typename F>
void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* weight, int N, int C, F eps, int heads = 1, int ld = 0,
                     F w_offset = 0) {
  if (ld == 0) ld = heads * C;
  parallel_for((long)N * heads, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) {
      const long at = (i / heads) * ld + (i % heads) * C;
      const F* x = inp + at;
      double ss = 0;
      for (int c = 0; c < C; ++c) ss += (double)x[c] * (double)x[c];
      const F ms = (F)(ss / C);
      const F s = F(1) / std::sqrt(ms + eps);
      F* o = out + at;
      for (int c = 0; c < C; ++c) o[c] = (weight[c] + w_offset) * (x[c] * s);
      if (rstd) rstd[i] = s;
    }
  });
}
// with w' = w + w_offset:  dx_j = s·w'_j·d_j − x_j·s³/C · Σ_c w'_c·d_c·x_c ;  dw_c += x_c·s·d_c  (layout as the
// forward's; dinp and dout at the same offsets as inp)
template <typename F>
void rmsnorm_backward(F* dinp, F* dweight, const F* dout, const F* inp, const F* weight, const F* rstd, int N, int C,
                      int heads = 1, int ld = 0, F w_offset = 0) {
  if (ld == 0) ld = heads * C;
  if (dinp)
    parallel_for((long)N * heads, [&](long i0, long i1) {
      for (long i = i0; i < i1; ++i) {
        const long at = (i / heads) * ld + (i % heads) * C;
        const F* x = inp + at;
        const F* d = dout + at;
        const F s = rstd[i];
        double dot = 0;
        for (int c = 0; c < C; ++c) dot += (double)(weight[c] + w_offset) * d[c] * x[c];
        const F k = (F)(dot / C) * s * s * s;
        F* g = dinp + at;
        for (int c = 0; c < C; ++c) g[c] += s * (weight[c] + w_offset) * d[c] - x[c] * k;
      }
    });
  if (dweight)
    parallel_for(C, [&](long c0, long c1) {
      for (long i = 0; i < (long)N * heads; ++i) {
        const long at = (i / heads) * ld + (i % heads) * C;
        const F* x = inp + at;
        const F* d = dout + at;
        for (long c = c0; c < c1; ++c) dweight[c] += x[c] * rstd[i] * d[c];
      }
    });
}

// ---- rotary position embeddings ----
// Llama-3 frequency adjustment (HF rope_type "llama3"); type none = plain RoPE.
struct RopeScaling {
  bool llama3 = false;
  double factor = 8, low_freq_factor = 1, high_freq_factor = 4, original_max_position_embeddings = 8192;
  // Phi-3's LongRoPE (HF rope_type "longrope") up to original_max_position_embeddings: inv_freq[i] / short_factor[i],
  // and cos/sin multiplied by attention_factor. Past that length HF switches every position to the long factors;
  // the engine refuses such sequences (LlamaExec::ensure_rope).
  bool longrope = false;
  std::vector<double> short_factor;
  double attention_factor = 1;
};

// inv_freq[i] = 1 / theta^(2i/hd), i < hd/2, then the llama3 adjustment. For float this follows HF's float32
// arithmetic step by step (so tables agree with PyTorch to the last bit or two); double computes the same in double.
template <typename F>
std::vector<F> rope_inv_freq(int hd, double theta, const RopeScaling& sc) {
  const int half = hd / 2;
  std::vector<F> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = F(1) / std::pow(F(theta), F(2 * i) / F(hd));
  if (sc.longrope) {  // HF: 1 / (ext_factors · base^(2i/hd)) in float32
    if ((int)sc.short_factor.size() != half) throw std::invalid_argument("longrope: short_factor needs head_dim / 2 entries");
    for (int i = 0; i < half; ++i) inv[i] = F(1) / (F(sc.short_factor[i]) * std::pow(F(theta), F(2 * i) / F(hd)));
  }
  if (sc.llama3) {
    const F factor = F(sc.factor), lo = F(sc.low_freq_factor), span = F(sc.high_freq_factor - sc.low_freq_factor);
    const F old_len = F(sc.original_max_position_embeddings);
    const F low_wavelen = F(sc.original_max_position_embeddings / sc.low_freq_factor);
    const F high_wavelen = F(sc.original_max_position_embeddings / sc.high_freq_factor);
    for (int i = 0; i < half; ++i) {
      const F wavelen = F(6.283185307179586) / inv[i];  // 2π
      if (wavelen < high_wavelen) continue;  // high frequency: unchanged
      if (wavelen > low_wavelen) {           // low frequency: divided by factor
        inv[i] = inv[i] / factor;
        continue;
      }
      const F smooth = (old_len / wavelen - lo) / span;  // in between: interpolated
      inv[i] = (F(1) - smooth) * inv[i] / factor + smooth * inv[i];
    }
  }
  return inv;
}

// cos/sin tables [npos, hd/2] for positions pos0 .. pos0+npos-1: angle = pos · inv_freq (rounded to F, as HF's
// float32 matmul does), cos/sin evaluated in double and rounded, then times `scale` in F (LongRoPE's attention
// factor; 1 leaves the bits as they are).
template <typename F>
void rope_tables(F* cos_out, F* sin_out, const std::vector<F>& inv_freq, int pos0, int npos, F scale = F(1)) {
  const int half = (int)inv_freq.size();
  for (int p = 0; p < npos; ++p)
    for (int i = 0; i < half; ++i) {
      const F angle = F(pos0 + p) * inv_freq[i];
      cos_out[(long)p * half + i] = (F)std::cos((double)angle) * scale;
      sin_out[(long)p * half + i] = (F)std::sin((double)angle) * scale;
    }
}

// Rotates n_heads heads of size hd in each of N rows (row stride ld); row r sits at position pos0 + r % T.
// cos/sin are tables indexed by absolute position. inverse = rotate by −angle (the transpose);
// accumulate = out += instead of out =. out may alias inp (each pair is read before it is written).
template <typename F>
void rope_apply(F* out, const F* inp, int N, int T, int ld, int n_heads, int hd, const F* cos, const F* sin, int pos0,
                bool inverse, bool accumulate) {
  const int half = hd / 2;
  parallel_for(N, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const long pos = pos0 + r % T;
      const F* cr = cos + pos * half;
      const F* sr = sin + pos * half;
      for (int h = 0; h < n_heads; ++h) {
        const F* x = inp + r * ld + (long)h * hd;
        F* y = out + r * ld + (long)h * hd;
        for (int i = 0; i < half; ++i) {
          const F a = x[i], b = x[i + half], c = cr[i], s = inverse ? -sr[i] : sr[i];
          const F ya = a * c - b * s, yb = b * c + a * s;  // HF: x·cos + rotate_half(x)·sin
          if (accumulate) {
            y[i] += ya;
            y[i + half] += yb;
          } else {
            y[i] = ya;
            y[i + half] = yb;
          }
        }
      }
    }
  });
}
template <typename F>
void rope_forward(F* out, const F* inp, int N, int T, int ld, int n_heads, int hd, const F* cos, const F* sin,
                  int pos0) {
  rope_apply(out, inp, N, T, ld, n_heads, hd, cos, sin, pos0, false, false);
}
// dinp += Rᵀ · dout (the rotation's transpose is the rotation by −angle)
template <typename F>
void rope_backward(F* dinp, const F* dout, int N, int T, int ld, int n_heads, int hd, const F* cos, const F* sin,
                   int pos0) {
  rope_apply(dinp, dout, N, T, ld, n_heads, hd, cos, sin, pos0, true, true);
}

// ---- SwiGLU: out = silu(gate) ⊙ up, silu(g) = g·σ(g) ----
template <typename F>
inline F sigmoid_op(F x) {
  return F(1) / (F(1) + exp_op(-x));
}
template <typename F>
void swiglu_forward(F* out, const F* gate, const F* up, long N) {
  parallel_for(N, [&](long i0, long i1) {
    long i = i0;
    // float: 8 lanes with AVX2 (ops_avx2.cpp), the same operations in the same order, so the same bits
    if constexpr (std::is_same_v<F, float>)
      if (simd_avx2()) i += swiglu_forward_avx2(out + i, gate + i, up + i, i1 - i);
    for (; i < i1; ++i) {
      const F g = gate[i];
      out[i] = (g * sigmoid_op(g)) * up[i];
    }
  });
}
template <typename F>
void swiglu_backward(F* dgate, F* dup, const F* dout, const F* gate, const F* up, long N) {
  parallel_for(N, [&](long i0, long i1) {
    long i = i0;
    if constexpr (std::is_same_v<F, float>)
      if (simd_avx2()) i += swiglu_backward_avx2(dgate ? dgate + i : nullptr, dup ? dup + i : nullptr, dout + i, gate + i, up + i, i1 - i);
    for (; i < i1; ++i) {
      const F g = gate[i], s = sigmoid_op(g), d = dout[i];
      if (dgate) dgate[i] += d * up[i] * (s * (F(1) + g * (F(1) - s)));
      if (dup) dup[i] += d * (g * s);
    }
  });
}

// ---- GeGLU (Gemma's MLP): out = gelu(gate) ⊙ up, gelu the tanh approximation (ops.h gelu_scalar; HF
// "gelu_pytorch_tanh") ----
template <typename F>
inline F gelu_grad_scalar(F x) {  // d gelu(x) / dx, as ops.h gelu_backward
  const F s = F(0.7978845608028654);
  const F th = tanh_op(s * (x + F(0.044715) * x * x * x));
  return F(0.5) * (F(1) + th) + F(0.5) * x * (F(1) - th * th) * s * (F(1) + F(3) * F(0.044715) * x * x);
}
template <typename F>
void geglu_forward(F* out, const F* gate, const F* up, long N) {
  parallel_for(N, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) out[i] = gelu_scalar(gate[i]) * up[i];
  });
}
template <typename F>
void geglu_backward(F* dgate, F* dup, const F* dout, const F* gate, const F* up, long N) {
  parallel_for(N, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) {
      const F g = gate[i], d = dout[i];
      if (dgate) dgate[i] += d * up[i] * gelu_grad_scalar(g);
      if (dup) dup[i] += d * gelu_scalar(g);
    }
  });
}

// ---- causal grouped-query attention over packed qkv[B,T,(NH+2·NKV)·hd] = q heads | k heads | v heads ----
// (RoPE already applied to q and k.) out [B,T,NH·hd]; saves probabilities att[B,NH,T,T].
// window > 0: a sliding window (Mistral, Gemma's local layers; HF masking_utils sliding_window_overlay): query t sees
// key t2 only when t − t2 < window, i.e. t2 in [first_key(t, window), t]; 0 = no window.
inline int first_key(int t, int window) { return window > 0 && t >= window ? t - window + 1 : 0; }
template <typename F>
void gqa_attention_forward(F* out, F* att, const F* qkv, int B, int T, int NH, int NKV, int hd, int window = 0) {
  const int ld = (NH + 2 * NKV) * hd, rep = NH / NKV, QC = NH * hd;
  const long kofs = (long)NH * hd, vofs = (long)(NH + NKV) * hd;
  const F scale = F(1) / std::sqrt(F(hd));
  parallel_for((long)B * NH, [&](long i0, long i1) {
    for (long bh = i0; bh < i1; ++bh) {
      const long b = bh / NH, h = bh % NH, kvh = h / rep;
      const F* base = qkv + b * T * ld;
      const F* q = base + h * hd;
      const F* k = base + kofs + kvh * hd;
      const F* v = base + vofs + kvh * hd;
      F* a = att + bh * T * T;
      gemm<F>(false, true, T, T, hd, q, ld, k, ld, a, T, false);
      for (int t = 0; t < T; ++t) {
        F* row = a + (long)t * T;
        const int lo = first_key(t, window);
        F maxv = -INFINITY;
        for (int t2 = lo; t2 <= t; ++t2) maxv = std::max(maxv, row[t2] * scale);
        F sum = 0;
        for (int t2 = lo; t2 <= t; ++t2) sum += (row[t2] = exp_op(row[t2] * scale - maxv));
        const F inv = F(1) / sum;
        for (int t2 = lo; t2 <= t; ++t2) row[t2] *= inv;
        for (int t2 = 0; t2 < lo; ++t2) row[t2] = 0;
        for (int t2 = t + 1; t2 < T; ++t2) row[t2] = 0;
      }
      gemm<F>(false, false, T, hd, T, a, T, v, ld, out + b * T * QC + h * hd, QC, false);
    }
  });
}
// dqkv += gradient of the packed q|k|v. Work is split by (batch, kv head); the query heads sharing a kv head run in
// order inside one task, so dK/dV accumulate without races and in the same order for any thread count.
template <typename F>
void gqa_attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int NH, int NKV, int hd,
                            int window = 0) {
  const int ld = (NH + 2 * NKV) * hd, rep = NH / NKV, QC = NH * hd;
  const long kofs = (long)NH * hd, vofs = (long)(NH + NKV) * hd;
  const F scale = F(1) / std::sqrt(F(hd));
  parallel_for((long)B * NKV, [&](long i0, long i1) {
    std::vector<F> datt((size_t)T * T);
    for (long bk = i0; bk < i1; ++bk) {
      const long b = bk / NKV, kvh = bk % NKV;
      const F* base = qkv + b * T * ld;
      F* dbase = dqkv + b * T * ld;
      const F* k = base + kofs + kvh * hd;
      const F* v = base + vofs + kvh * hd;
      F* dk = dbase + kofs + kvh * hd;
      F* dv = dbase + vofs + kvh * hd;
      for (long h = kvh * rep; h < (kvh + 1) * rep; ++h) {
        const F* q = base + h * hd;
        F* dq = dbase + h * hd;
        const F* a = att + (b * NH + h) * T * T;
        const F* d = dout + b * T * QC + h * hd;
        gemm<F>(false, true, T, T, hd, d, QC, v, ld, datt.data(), T, false);  // datt = dout·Vᵀ
        gemm<F>(true, false, T, hd, T, a, T, d, QC, dv, ld, true);             // dV += attᵀ·dout
        for (int t = 0; t < T; ++t) {  // through the softmax: dpre = att ⊙ (datt − Σ att·datt) · scale
          const F* ar = a + (long)t * T;
          F* dr = datt.data() + (long)t * T;
          const int lo = first_key(t, window);
          F dot = 0;
          for (int t2 = lo; t2 <= t; ++t2) dot += ar[t2] * dr[t2];
          for (int t2 = lo; t2 <= t; ++t2) dr[t2] = ar[t2] * (dr[t2] - dot) * scale;
          for (int t2 = 0; t2 < lo; ++t2) dr[t2] = 0;
          for (int t2 = t + 1; t2 < T; ++t2) dr[t2] = 0;
        }
        gemm<F>(false, false, T, hd, T, datt.data(), T, k, ld, dq, ld, true);  // dQ += dpre·K
        gemm<F>(true, false, T, hd, T, datt.data(), T, q, ld, dk, ld, true);   // dK += dpreᵀ·Q
      }
    }
  });
}

// ---- attention of Tn new positions against a grouped-query KV cache (decoding) ----
// kcache/vcache: one layer's keys/values [R, cap, KV] (KV = NKV·hd) of each row, positions [0, len) filled; the new
// positions' k and v (from the packed qkv [R, Tn, (NH+2·NKV)·hd], RoPE applied) are first appended at
// [len, len + Tn). A shared one-row prefix pk/pv [P, KV] (P = 0: none) precedes every row, read in place: new
// position t of a row sits at absolute position P + len + t and attends to every position up to it (window > 0:
// only to the last `window` of them, as gqa_attention_forward).
// out [R, Tn, NH·hd]. Dot products in 8 lanes (ops.h dot_lanes).
inline void gqa_attention_decode_forward(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                                         const float* qkv, int R, int Tn, int NH, int NKV, int hd, int P, int len,
                                         int cap, int window = 0) {
  const int ld = (NH + 2 * NKV) * hd, KV = NKV * hd, QC = NH * hd, rep = NH / NKV, pos_base = P + len;
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < Tn; ++t) {
      const float* src = qkv + ((long)r * Tn + t) * ld;
      std::memcpy(kcache + ((long)r * cap + len + t) * KV, src + QC, KV * sizeof(float));
      std::memcpy(vcache + ((long)r * cap + len + t) * KV, src + QC + KV, KV * sizeof(float));
    }
  const float scale = 1.f / std::sqrt((float)hd);
  parallel_for((long)R * NH, [&](long i0, long i1) {
    std::vector<float> score(pos_base + Tn);
    for (long rh = i0; rh < i1; ++rh) {
      const int r = (int)(rh / NH), h = (int)(rh % NH), kvh = h / rep;
      auto key = [&](int j) { return j < P ? pk + (long)j * KV : kcache + ((long)r * cap + j - P) * KV; };
      auto val = [&](int j) { return j < P ? pv + (long)j * KV : vcache + ((long)r * cap + j - P) * KV; };
      for (int t = 0; t < Tn; ++t) {
        const int p = pos_base + t, lo = first_key(p, window);  // attends to positions lo..p
        const float* q = qkv + ((long)r * Tn + t) * ld + (long)h * hd;
        float maxv = -INFINITY;
        for (int j = lo; j <= p; ++j) {
          const float s = dot_lanes(q, key(j) + (long)kvh * hd, hd) * scale;
          score[j] = s;
          maxv = std::max(maxv, s);
        }
        float sum = 0;
        for (int j = lo; j <= p; ++j) sum += (score[j] = exp_op(score[j] - maxv));
        const float inv = 1.f / sum;
        float* o = out + ((long)r * Tn + t) * QC + (long)h * hd;
        for (int i = 0; i < hd; ++i) o[i] = 0;
        for (int j = lo; j <= p; ++j) {
          const float aw = score[j] * inv;
          const float* v = val(j) + (long)kvh * hd;
          for (int i = 0; i < hd; ++i) o[i] += aw * v[i];
        }
      }
    }
  });
}

}  // namespace gradmm
