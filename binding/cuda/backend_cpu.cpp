// The CPU backend table: every op is the CPU op of binding/src/ops.h or llama_ops.h (float), the gradient-matching
// pieces are the loops of gradmatch.cpp / admm.cpp in the same arithmetic order and the projection's choice is
// admm.cpp's choose_tokens itself, so model and method code written against the table gives the CPU engine's
// numbers on this backend.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "admm.h"
#include "backend.h"
#include "llama_ops.h"
#include "ops.h"

namespace gradmm {

const char* op_name(Op op) {
  static const char* names[] = {
      "embedding_forward", "embedding_backward", "input_embedding_forward", "input_embedding_backward",
      "layernorm_forward", "layernorm_backward", "gemm", "matmul_forward", "matmul_backward", "attention_forward",
      "attention_backward", "attention_decode_forward", "gelu_forward", "gelu_backward", "residual_forward", "residual_backward",
      "softmax_crossentropy_forward", "softmax_crossentropy_backward", "adamw", "grad_norm", "scale",
      "gather_rows", "scatter_rows", "onehot_sub", "row_dot", "gm_combine", "scale_by", "axpy_by",
      "softmax_jvp_rows", "x_adam_step", "fill", "gather_rows_at", "scatter_rows_at", "rmsnorm_forward",
      "rmsnorm_backward", "rope_forward", "rope_backward", "swiglu_forward", "swiglu_backward", "linear_forward",
      "linear_backward", "gqa_attention_forward", "gqa_attention_backward", "gqa_attention_decode_forward",
      "project_choose"};
  static_assert(sizeof(names) / sizeof(names[0]) == (size_t)Op::Count, "op_name table out of date");
  const int i = (int)op;
  return i >= 0 && i < (int)Op::Count ? names[i] : "?";
}

namespace {

bool supports(Op op) { return (int)op >= 0 && op < Op::Count; }
void* alloc(size_t bytes) {
  const size_t rounded = ((bytes ? bytes : 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}
void release(void* p) { std::free(p); }
void copy(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}
void zero(void* p, size_t bytes) {
  if (bytes) std::memset(p, 0, bytes);
}
void synchronize() {}

// wpe == nullptr: the token lookup alone (llama.cpp's forward and decode copy the rows)
void embedding_fwd(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C, int pos0) {
  if (wpe) return embedding_forward(out, tokens, wte, wpe, B, T, C, pos0);
  for (long i = 0; i < (long)B * T; ++i) std::memcpy(out + i * C, wte + (long)tokens[i] * C, C * sizeof(float));
}
void gelu_fwd(float* out, const float* inp, long N) { gelu_forward(out, inp, N); }
void gelu_bwd(float* dinp, const float* inp, const float* dout, long N) { gelu_backward(dinp, inp, dout, N); }
void attention_bwd(float* dqkv, float*, const float* dout, const float* qkv, const float* att, int B, int T, int C,
                   int NH) {
  attention_backward(dqkv, dout, qkv, att, B, T, C, NH);
}
void gqa_attention_bwd(float* dqkv, float*, const float* dout, const float* qkv, const float* att, int B, int T, int NH,
                       int NKV, int hd) {
  gqa_attention_backward(dqkv, dout, qkv, att, B, T, NH, NKV, hd);
}
void rope_bwd(float* dinp, const float* dout, int N, int T, int ld, int n_heads, int hd, const float* cos,
              const float* sin, int pos0, bool accumulate) {
  rope_apply(dinp, dout, N, T, ld, n_heads, hd, cos, sin, pos0, true, accumulate);
}
void gemm_f(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
            bool accumulate) {
  if (M <= 0 || N <= 0) return;
  sgemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void gather_rows(float* dst, const float* src, int R, int C, long stride, long offset) {
  for (long r = 0; r < R; ++r) std::memcpy(dst + r * C, src + (r * stride + offset) * C, sizeof(float) * C);
}
void scatter_rows(float* dst, const float* src, int R, int C, long stride, long offset, bool accumulate) {
  for (long r = 0; r < R; ++r) {
    float* d = dst + (r * stride + offset) * C;
    const float* s = src + r * C;
    for (int c = 0; c < C; ++c) d[c] = accumulate ? d[c] + s[c] : s[c];
  }
}
void gather_rows_at(float* dst, const float* src, const int* idx, int R, int C) {
  for (long r = 0; r < R; ++r) std::memcpy(dst + r * C, src + (long)idx[r] * C, sizeof(float) * C);
}
void scatter_rows_at(float* dst, const float* src, const int* idx, int R, int C, bool accumulate) {
  for (long r = 0; r < R; ++r) {
    float* d = dst + (long)idx[r] * C;
    const float* s = src + r * C;
    for (int c = 0; c < C; ++c) d[c] = accumulate ? d[c] + s[c] : s[c];
  }
}
void onehot_sub(float* A, const float* P, const int* labels, int R, int V) {
  if (A != P) std::memcpy(A, P, sizeof(float) * (size_t)R * V);
  for (long r = 0; r < R; ++r) A[r * V + labels[r]] -= 1.f;
}
double dot(const float* a, const float* b, long n) {  // as gradmatch.cpp
  double s = 0;
  for (long i = 0; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}
void row_dot(double* out, const float* a, const float* b, int R, int V) {
  for (long r = 0; r < R; ++r) out[r] = dot(a + r * V, b + r * V, V);
}
void gm_combine(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH, const float* SA,
                const float* SH, const double* noise_dots, int n, int B, double target_norm) {
  double S = 0, Q = 0;
  std::vector<double> s_j(B, 0.0);
  for (int j = 0; j < B; ++j) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += (double)RA[(size_t)i * B + j] * RH[(size_t)i * B + j];
    s /= n;
    if (noise_dots) s += noise_dots[j];
    s_j[j] = s;
    S += s;
  }
  S /= B;
  for (int j = 0; j < B * B; ++j) Q += (double)SA[j] * SH[j];
  Q /= (double)B * B;
  const double qn = std::sqrt(std::max(Q, 1e-30)), R = std::max(target_norm, 1e-30);
  const double cosine = S / (qn * R);
  GmScalars g;
  g.S = S;
  g.Q = Q;
  g.cosine = cosine;
  g.f = 1.0 - cosine;
  g.cS = (float)(-1.0 / (qn * R) / ((double)n * B));
  g.cN = (float)(-1.0 / (qn * R) / B);
  g.cQ = (float)(S / (2.0 * Q * qn * R) * 2.0 / ((double)B * B));
  g.pad = 0.f;
  *out = g;
  if (loss_out) *loss_out = (float)g.f;
  if (per_sample)
    for (int j = 0; j < B; ++j) {
      const double own = std::sqrt((double)SA[(size_t)j * B + j] * SH[(size_t)j * B + j]);
      per_sample[j] = (float)(1.0 - s_j[j] / (std::max(own, 1e-30) * R));
    }
}
void scale_by(float* x, long n, const float* s) {
  const float k = *s;
  for (long i = 0; i < n; ++i) x[i] *= k;
}
void axpy_by(float* y, const float* x, long n, const float* a) {
  const float k = *a;
  for (long i = 0; i < n; ++i) y[i] += k * x[i];
}
void softmax_jvp_rows(float* dlogits, const float* P, const float* G, int R, int V) {
  for (long j = 0; j < R; ++j) {
    const float* p = P + j * V;
    const float* g = G + j * V;
    const double pg = dot(p, g, V);
    for (int v = 0; v < V; ++v) dlogits[j * V + v] = p[v] * (g[v] - (float)pg);
  }
}
void x_adam_step(float* X, float* m, float* v, const float* dX, const float* z, const float* lam, float* g, double*,
                 int B, long row_n, long free_n, float rho, float max_norm, float beta1, float beta2, float eps,
                 float step_size, float bc2_sqrt) {
  // admm.cpp x_update, one step
  double norm2 = 0;
  for (int b = 0; b < B; ++b)
    for (long i = b * row_n; i < b * row_n + free_n; ++i) {
      g[i] = dX[i] + rho * (X[i] - z[i]) + lam[i];
      norm2 += (double)g[i] * g[i];
    }
  const double norm = std::sqrt(norm2);
  const float scale = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.f;
  for (int b = 0; b < B; ++b)
    for (long i = b * row_n; i < b * row_n + free_n; ++i) {
      const float gi = g[i] * scale;
      m[i] = beta1 * m[i] + (1.f - beta1) * gi;
      v[i] = beta2 * v[i] + (1.f - beta2) * gi * gi;
      X[i] -= step_size * (m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps));
    }
}
void fill(float* x, long n, float value) {
  for (long i = 0; i < n; ++i) x[i] = value;
}

Backend make_table() {
  Backend b{};
  b.name = "cpu";
  b.supports = supports;
  b.alloc = alloc;
  b.free = release;
  b.to_device = copy;
  b.to_host = copy;
  b.copy = copy;
  b.zero = zero;
  b.synchronize = synchronize;
  b.embedding_forward = embedding_fwd;
  b.embedding_backward = embedding_backward<float>;
  b.input_embedding_forward = input_embedding_forward<float>;
  b.input_embedding_backward = input_embedding_backward<float>;
  b.layernorm_forward = layernorm_forward<float>;
  b.layernorm_backward = layernorm_backward<float>;
  b.gemm = gemm_f;
  b.matmul_forward = matmul_forward<float>;
  b.matmul_backward = matmul_backward<float>;
  b.attention_forward = attention_forward<float>;
  b.attention_backward = attention_bwd;
  b.attention_decode_forward = attention_decode_forward;
  b.gelu_forward = gelu_fwd;
  b.gelu_backward = gelu_bwd;
  b.residual_forward = residual_forward<float>;
  b.residual_backward = residual_backward<float>;
  b.softmax_crossentropy_forward = softmax_crossentropy_forward<float>;
  b.softmax_crossentropy_backward = softmax_crossentropy_backward<float>;
  b.adamw_update = adamw_update;
  b.grad_norm = grad_norm;
  b.scale = scale_inplace;
  b.gather_rows = gather_rows;
  b.scatter_rows = scatter_rows;
  b.onehot_sub = onehot_sub;
  b.row_dot = row_dot;
  b.gm_combine = gm_combine;
  b.scale_by = scale_by;
  b.axpy_by = axpy_by;
  b.softmax_jvp_rows = softmax_jvp_rows;
  b.x_adam_step = x_adam_step;
  b.fill = fill;
  b.gather_rows_at = gather_rows_at;
  b.scatter_rows_at = scatter_rows_at;
  b.rmsnorm_forward = rmsnorm_forward<float>;
  b.rmsnorm_backward = rmsnorm_backward<float>;
  b.rope_forward = rope_forward<float>;
  b.rope_backward = rope_bwd;
  b.swiglu_forward = swiglu_forward<float>;
  b.swiglu_backward = swiglu_backward<float>;
  b.linear_forward = linear_forward<float>;
  b.linear_backward = linear_backward<float>;
  b.gqa_attention_forward = gqa_attention_forward<float>;
  b.gqa_attention_backward = gqa_attention_bwd;
  b.gqa_attention_decode_forward = gqa_attention_decode_forward;
  b.project_choose = choose_tokens;
  return b;
}

}  // namespace

const Backend* cpu_backend() {
  static const Backend table = make_table();
  return &table;
}

}  // namespace gradmm
