// The engine's CPU ops, llm.c style: one <op>_forward / <op>_backward pair per op, raw pointers, explicit shapes
// (B batch, T time, C channels, V vocabulary, NH heads, N = rows). Forward saves exactly what backward needs.
// Backward ops ACCUMULATE (+=) into gradient buffers; a null gradient pointer means "not wanted" and skips that work.
// Templated on the float type: `float` is what runs, `double` exists so gradient checks are exact.
// These are the specification for the CUDA kernels.
#pragma once
#include <emmintrin.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "ops_simd.h"
#include "threadpool.h"

namespace gradmm {

// ---- exp and tanh: float uses a branch-free polynomial the compiler vectorises (relative error ~2e-7, on the
// order of float rounding); double (gradient checks) uses libm ----
inline float exp_fast(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // n = round(x / ln2) by the 1.5·2²³ trick (no branch, so loops over exp_fast vectorise); x = n·ln2 + r, |r| <= ln2/2
  const float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const int n = (int)fn;
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int bits = (n + 127) << 23;  // 2^n
  return y * __builtin_bit_cast(float, bits);
}
template <typename F>
inline F exp_op(F x) {
  return std::exp(x);
}
template <>
inline float exp_op<float>(float x) {
  return exp_fast(x);
}
template <typename F>
inline F tanh_op(F x) {
  return std::tanh(x);
}
template <>
inline float tanh_op<float>(float x) {
  return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f);  // absolute error ~1e-7, all GELU needs
}

// Dot product with 8 independent partial sums: without reassociation (-ffp-contract=off, no -ffast-math) a single
// running sum cannot be vectorised; 8 lanes can, and the summation order stays fixed.
inline float dot_lanes(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Sum and maximum of x[0, n) with 8 independent lanes in a fixed order (vectorisable without reassociation).
template <typename F>
inline F sum_lanes(const F* x, int n) {
  F acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[i + l];
  F s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += x[i];
  return s;
}
template <typename F>
inline F max_lanes(const F* x, int n) {
  F acc[8] = {x[0], x[0], x[0], x[0], x[0], x[0], x[0], x[0]};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  F m = acc[0];
  for (int l = 1; l < 8; ++l) m = acc[l] > m ? acc[l] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// ---- matrix multiply: float uses the packed SIMD kernel, double a plain triple loop (tests only) ----
template <typename F>
inline void gemm(bool transA, bool transB, int M, int N, int K, const F* A, int lda, const F* B, int ldb, F* C,
                 int ldc, bool accumulate) {
  parallel_for(M, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i)
      for (int j = 0; j < N; ++j) {
        F s = 0;
        for (int k = 0; k < K; ++k)
          s += (transA ? A[(long)k * lda + i] : A[i * lda + k]) * (transB ? B[(long)j * ldb + k] : B[(long)k * ldb + j]);
        C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
      }
  });
}
template <>
inline void gemm<float>(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B,
                        int ldb, float* C, int ldc, bool accumulate) {
  sgemm(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// ---- token + position embedding: out[b,t,:] = scale·wte[tokens[b,t]] + wpe[pos0+t] ----
// wpe may be null (the token lookup alone: the Llama family). scale: Gemma's sqrt(hidden_size) on the token rows
// (1 elsewhere: the same bits as no scale).
template <typename F>
void embedding_forward(F* out, const int* tokens, const F* wte, const F* wpe, int B, int T, int C, int pos0,
                       F scale = F(1)) {
  for (long bt = 0; bt < (long)B * T; ++bt) {
    const F* te = wte + (long)tokens[bt] * C;
    if (!wpe) {
      for (int c = 0; c < C; ++c) out[bt * C + c] = te[c] * scale;
      continue;
    }
    const F* pe = wpe + (long)(pos0 + bt % T) * C;
    for (int c = 0; c < C; ++c) out[bt * C + c] = te[c] * scale + pe[c];
  }
}
template <typename F>
void embedding_backward(F* dwte, F* dwpe, const F* dout, const int* tokens, int B, int T, int C, int pos0,
                        F scale = F(1)) {
  for (long bt = 0; bt < (long)B * T; ++bt) {
    const F* d = dout + bt * C;
    if (dwte) {
      F* g = dwte + (long)tokens[bt] * C;
      for (int c = 0; c < C; ++c) g[c] += d[c] * scale;
    }
    if (dwpe) {
      F* g = dwpe + (long)(pos0 + bt % T) * C;
      for (int c = 0; c < C; ++c) g[c] += d[c];
    }
  }
}

// ---- input embeddings given directly (the method optimises them): out[b,t,:] = inp[b,t,:] + wpe[pos0+t] ----
template <typename F>
void input_embedding_forward(F* out, const F* inp, const F* wpe, int B, int T, int C, int pos0) {
  for (long bt = 0; bt < (long)B * T; ++bt) {
    const F* pe = wpe + (long)(pos0 + bt % T) * C;
    for (int c = 0; c < C; ++c) out[bt * C + c] = inp[bt * C + c] + pe[c];
  }
}
template <typename F>
void input_embedding_backward(F* dinp, F* dwpe, const F* dout, int B, int T, int C, int pos0) {
  for (long bt = 0; bt < (long)B * T; ++bt) {
    const F* d = dout + bt * C;
    if (dinp)
      for (int c = 0; c < C; ++c) dinp[bt * C + c] += d[c];
    if (dwpe) {
      F* g = dwpe + (long)(pos0 + bt % T) * C;
      for (int c = 0; c < C; ++c) g[c] += d[c];
    }
  }
}

// ---- layernorm over the last dimension; saves mean and reciprocal std per row ----
template <typename F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias, int N, int C, F eps) {
  parallel_for(N, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const F* x = inp + r * C;
      F m = 0;
      for (int c = 0; c < C; ++c) m += x[c];
      m /= C;
      F v = 0;
      for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
      v /= C;
      F s = F(1) / std::sqrt(v + eps);
      F* o = out + r * C;
      for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
      if (mean) mean[r] = m;
      if (rstd) rstd[r] = s;
    }
  });
}
template <typename F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, const F* mean,
                        const F* rstd, int N, int C) {
  if (dinp)
    parallel_for(N, [&](long r0, long r1) {
      for (long r = r0; r < r1; ++r) {
        const F* x = inp + r * C;
        const F* d = dout + r * C;
        F m = mean[r], s = rstd[r];
        F dnorm_mean = 0, dnorm_norm_mean = 0;
        for (int c = 0; c < C; ++c) {
          F dn = weight[c] * d[c];
          dnorm_mean += dn;
          dnorm_norm_mean += dn * (x[c] - m) * s;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        F* g = dinp + r * C;
        for (int c = 0; c < C; ++c) {
          F norm = (x[c] - m) * s;
          g[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
      }
    });
  if (dweight || dbias)  // column sums: split columns, rows in a fixed order (same bits for any thread count)
    parallel_for(C, [&](long c0, long c1) {
      for (long r = 0; r < N; ++r) {
        const F* x = inp + r * C;
        const F* d = dout + r * C;
        for (long c = c0; c < c1; ++c) {
          if (dweight) dweight[c] += (x[c] - mean[r]) * rstd[r] * d[c];
          if (dbias) dbias[c] += d[c];
        }
      }
    });
}

// ---- linear layer, HF Conv1D layout: out[N,OC] = inp[N,C] · weight[C,OC] + bias[OC] ----
template <typename F>
void matmul_forward(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC) {
  gemm<F>(false, false, N, OC, C, inp, C, weight, OC, out, OC, false);
  if (bias)
    parallel_for(N, [&](long r0, long r1) {
      for (long r = r0; r < r1; ++r)
        for (int o = 0; o < OC; ++o) out[r * OC + o] += bias[o];
    });
}
template <typename F>
void matmul_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, int N, int C,
                     int OC) {
  if (dinp) gemm<F>(false, true, N, C, OC, dout, OC, weight, OC, dinp, C, true);     // dinp += dout · Wᵀ
  if (dweight) gemm<F>(true, false, C, OC, N, inp, C, dout, OC, dweight, OC, true);  // dW += inpᵀ · dout
  if (dbias)
    parallel_for(OC, [&](long o0, long o1) {
      for (long r = 0; r < N; ++r)
        for (long o = o0; o < o1; ++o) dbias[o] += dout[r * OC + o];
    });
}

// ---- attention: the grouped-query ops of llama_ops.h (multi-head attention is the case NKV = NH) ----

// ---- GELU, tanh approximation (GPT-2's "gelu_new") ----
template <typename F>
inline F gelu_scalar(F x) {
  const F s = F(0.7978845608028654);  // sqrt(2/pi)
  return F(0.5) * x * (F(1) + tanh_op(s * (x + F(0.044715) * x * x * x)));
}
template <typename F>
void gelu_forward(F* out, const F* inp, long N) {
  parallel_for(N, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) out[i] = gelu_scalar(inp[i]);
  });
}
template <typename F>
void gelu_backward(F* dinp, const F* inp, const F* dout, long N) {
  const F s = F(0.7978845608028654);
  parallel_for(N, [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) {
      F x = inp[i];
      F u = s * (x + F(0.044715) * x * x * x);
      F th = tanh_op(u);
      F sech2 = F(1) - th * th;
      F grad = F(0.5) * (F(1) + th) + F(0.5) * x * sech2 * s * (F(1) + F(3) * F(0.044715) * x * x);
      dinp[i] += grad * dout[i];
    }
  });
}

// float GELU over 8 lanes with AVX2 where the CPU has it (ops_avx2.cpp), else 4 lanes with SSE2 (the x86-64
// baseline): the same operations in the same order as gelu_scalar / gelu_backward's scalar body and exp_fast, so
// every element is bit-identical to the scalar code, but vectorised (the compiler cannot vectorise exp_fast's clamps
// itself without -ffinite-math-only).
namespace sse {
inline __m128 exp_fast4(__m128 x) {
  x = _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(-87.0f)), _mm_set1_ps(88.0f));
  const __m128 magic = _mm_set1_ps(12582912.0f);
  const __m128 fn = _mm_sub_ps(_mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(1.44269504088896341f)), magic), magic);
  const __m128i n = _mm_cvttps_epi32(fn);
  const __m128 r = _mm_sub_ps(_mm_sub_ps(x, _mm_mul_ps(fn, _mm_set1_ps(0.693359375f))), _mm_mul_ps(fn, _mm_set1_ps(-2.12194440e-4f)));
  __m128 p = _mm_set1_ps(1.9875691500e-4f);
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
  const __m128 y = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), _mm_set1_ps(1.0f));
  const __m128i bits = _mm_slli_epi32(_mm_add_epi32(n, _mm_set1_epi32(127)), 23);
  return _mm_mul_ps(y, _mm_castsi128_ps(bits));
}
inline __m128 tanh4(__m128 x) {
  const __m128 one = _mm_set1_ps(1.0f);
  return _mm_sub_ps(one, _mm_div_ps(_mm_set1_ps(2.0f), _mm_add_ps(exp_fast4(_mm_mul_ps(_mm_set1_ps(2.0f), x)), one)));
}
inline __m128 gelu_inner4(__m128 x) {  // s·(x + 0.044715·x·x·x)
  const __m128 cube = _mm_mul_ps(_mm_mul_ps(_mm_mul_ps(_mm_set1_ps(0.044715f), x), x), x);
  return _mm_mul_ps(_mm_set1_ps(0.7978845608028654f), _mm_add_ps(x, cube));
}
}  // namespace sse

template <>
inline void gelu_forward<float>(float* out, const float* inp, long N) {
  parallel_for((N + 3) / 4, [&](long b0, long b1) {
    long i = b0 * 4;
    const long end = std::min(N, b1 * 4);
    if (simd_avx2()) i += gelu_forward_avx2(out + i, inp + i, end - i);
    for (; i + 4 <= end; i += 4) {
      const __m128 x = _mm_loadu_ps(inp + i);
      const __m128 th = sse::tanh4(sse::gelu_inner4(x));
      _mm_storeu_ps(out + i, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(0.5f), x), _mm_add_ps(_mm_set1_ps(1.0f), th)));
    }
    for (; i < end; ++i) out[i] = gelu_scalar(inp[i]);
  });
}
template <>
inline void gelu_backward<float>(float* dinp, const float* inp, const float* dout, long N) {
  const float c3 = 3.0f * 0.044715f;
  parallel_for((N + 3) / 4, [&](long b0, long b1) {
    long i = b0 * 4;
    const long end = std::min(N, b1 * 4);
    const __m128 half = _mm_set1_ps(0.5f), one = _mm_set1_ps(1.0f), s = _mm_set1_ps(0.7978845608028654f);
    if (simd_avx2()) i += gelu_backward_avx2(dinp + i, inp + i, dout + i, end - i);
    for (; i + 4 <= end; i += 4) {
      const __m128 x = _mm_loadu_ps(inp + i);
      const __m128 th = sse::tanh4(sse::gelu_inner4(x));
      const __m128 sech2 = _mm_sub_ps(one, _mm_mul_ps(th, th));
      const __m128 left = _mm_mul_ps(half, _mm_add_ps(one, th));
      const __m128 right = _mm_mul_ps(_mm_mul_ps(_mm_mul_ps(_mm_mul_ps(half, x), sech2), s),
                                      _mm_add_ps(one, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(c3), x), x)));
      const __m128 grad = _mm_add_ps(left, right);
      _mm_storeu_ps(dinp + i, _mm_add_ps(_mm_loadu_ps(dinp + i), _mm_mul_ps(grad, _mm_loadu_ps(dout + i))));
    }
    for (; i < end; ++i) {
      const float x = inp[i];
      const float th = tanh_op(0.7978845608028654f * (x + 0.044715f * x * x * x));
      const float sech2 = 1.0f - th * th;
      const float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * 0.7978845608028654f * (1.0f + c3 * x * x);
      dinp[i] += grad * dout[i];
    }
  });
}

// ---- residual add ----
template <typename F>
void residual_forward(F* out, const F* a, const F* b, long N) {
  for (long i = 0; i < N; ++i) out[i] = a[i] + b[i];
}
template <typename F>
void residual_backward(F* da, F* db, const F* dout, long N) {
  for (long i = 0; i < N; ++i) {
    if (da) da[i] += dout[i];
    if (db) db[i] += dout[i];
  }
}

// p[v] = exp(x[v] − shift): one element at a time in general; float runs 8 or 4 lanes at a time (the compiler does not
// vectorise exp_fast's clamps itself), bit-identical to exp_fast per element.
template <typename F>
inline void exp_shifted(F* p, const F* x, F shift, int n) {
  for (int v = 0; v < n; ++v) p[v] = exp_op(x[v] - shift);
}
inline void exp_shifted(float* p, const float* x, float shift, int n) {
  const __m128 sh = _mm_set1_ps(shift);
  int v = simd_avx2() ? (int)exp_shifted_avx2(p, x, shift, n) : 0;
  for (; v + 4 <= n; v += 4) _mm_storeu_ps(p + v, sse::exp_fast4(_mm_sub_ps(_mm_loadu_ps(x + v), sh)));
  for (; v < n; ++v) p[v] = exp_fast(x[v] - shift);
}

// ---- softmax + cross-entropy per row of logits[N,V]; rows whose mask is 0 are skipped (loss 0, no gradient) ----
template <typename F>
void softmax_crossentropy_forward(F* losses, F* probs, const F* logits, const int* targets, const F* mask, int N,
                                  int V) {
  parallel_for(N, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      if (mask && mask[r] == 0) {
        losses[r] = 0;
        continue;
      }
      const F* x = logits + r * V;
      F* p = probs + r * V;
      const F maxv = max_lanes(x, V);
      exp_shifted(p, x, maxv, V);
      const F sum = sum_lanes(p, V);
      F inv = F(1) / sum;
      for (int v = 0; v < V; ++v) p[v] *= inv;
      losses[r] = -(x[targets[r]] - maxv - std::log(sum));
    }
  });
}
template <typename F>
void softmax_crossentropy_backward(F* dlogits, const F* dlosses, const F* probs, const int* targets, const F* mask,
                                   int N, int V) {
  parallel_for(N, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      if (mask && mask[r] == 0) continue;
      const F* p = probs + r * V;
      F* d = dlogits + r * V;
      F dl = dlosses[r];
      for (int v = 0; v < V; ++v) d[v] += (p[v] - (v == targets[r] ? F(1) : F(0))) * dl;
    }
  });
}

// ---- AdamW (decoupled weight decay, PyTorch semantics) with bias correction; step t counts from 1 ----
void adamw_update(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t);
// Global L2 norm of a gradient vector (double accumulation in a fixed order).
double grad_norm(const float* grads, long n);
// Multiplies grads by scale.
void scale_inplace(float* x, long n, float scale);
// A model's whole optimizer step: the global gradient norm, clipping to max_norm (max_norm <= 0: none; the clipped
// gradients are written back, as torch.nn.utils.clip_grad_norm_ leaves them) and the AdamW update, the last two in
// one pass over memory (same bits as scale_inplace followed by adamw_update). Returns the norm before clipping.
double clip_and_adamw(float* params, float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, float max_norm, int t);

}  // namespace gradmm
