#include "method_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "threadpool.h"

namespace gradmm {
namespace {
double dot(const float* a, const float* b, long n) {
  double s = 0;
  for (long i = 0; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}
}  // namespace

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
void scale_cols(float* X, const float* m, int R, int V) {
  for (long r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) X[r * V + v] *= m[v];
}
void row_dot(double* out, const float* a, const float* b, int R, int V) {
  for (long r = 0; r < R; ++r) out[r] = dot(a + r * V, b + r * V, V);
}
void gm_combine(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH, const float* SA,
                const float* SH, const double* noise_dots, int n, int B, double target_norm, GmMean mean) {
  double S = 0, Q = 0, SM = 0;
  std::vector<double> s_j(B, 0.0), m_j(B, 0.0);  // ⟨a_j h_jᵀ, G_t⟩, ⟨a_j h_jᵀ, M⟩
  for (int j = 0; j < B; ++j) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += (double)RA[(size_t)i * B + j] * RH[(size_t)i * B + j];
    s /= n;
    if (noise_dots) s += noise_dots[j];
    s_j[j] = s;
    S += s;
    if (mean.RAm) {
      double m = 0;
      for (int i = 0; i < n; ++i) m += (double)mean.RAm[(size_t)i * B + j] * RH[(size_t)i * B + j];
      m_j[j] = m / n;
      SM += m_j[j];
    }
  }
  S /= B;
  SM /= B;
  for (int j = 0; j < B * B; ++j) Q += (double)SA[j] * SH[j];
  Q /= (double)B * B;
  const GmScalars g = gm_scalars(S, Q, SM, n, B, target_norm, mean.norm2, mean.dot);
  *out = g;
  if (loss_out) *loss_out = (float)g.f;
  if (per_sample)
    for (int j = 0; j < B; ++j)
      per_sample[j] = gm_own_loss(s_j[j], SA[(size_t)j * B + j], SH[(size_t)j * B + j], target_norm, m_j[j],
                                  mean.norm2, mean.dot);
}
void gm_bias_combine(GmScalars* out, float* per_sample, float* loss_out, const double* dots, const float* own,
                     const float* SA, int B, double bias_norm) {
  gm_bias_scalars(*out, dots[0], dots[1], B, bias_norm);
  if (loss_out) *loss_out = (float)out->f;
  if (per_sample)
    for (int j = 0; j < B; ++j)
      per_sample[j] = 0.5f * (per_sample[j] + gm_own_bias_loss(own[j], SA[(size_t)j * B + j], bias_norm));
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
void x_adam_step(float* X, float* m, float* v, const float* dX, const float* z, const float* lam, float* g, int B,
                 long row_n, long free_n, float rho, float max_norm, float beta1, float beta2, float eps,
                 float step_size, float bc2_sqrt) {
  // ∇ = ∇f + ρ(X − z + λ/ρ) = ∇f + ρ(X − z) + λ on free positions; the template stays fixed
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
void dual_point(float* u, const float* x, const float* lam, int B, long row_n, long free_n, double rho) {
  for (int b = 0; b < B; ++b)
    for (long i = b * row_n; i < b * row_n + free_n; ++i) u[i] = (float)((double)x[i] + (double)lam[i] / rho);
}
void dual_update(float* lam, const float* x, const float* z, int B, long row_n, long free_n, double rho) {
  for (int b = 0; b < B; ++b)
    for (long i = b * row_n; i < b * row_n + free_n; ++i)
      lam[i] = (float)((double)lam[i] + rho * ((double)x[i] - (double)z[i]));
}

void choose_tokens(int* chosen, const float* sims, const float* logits, const float* inv_norm, const int* allowed_ids,
                   int n_allowed, int B, int V, int k) {
  if (n_allowed < 1 || n_allowed > V) throw std::invalid_argument("choose_tokens: n_allowed must be in [1, V]");
  if (k < 1 || k > n_allowed) throw std::invalid_argument("choose_tokens: k must be in [1, n_allowed]");
  if (B <= 0) return;
  parallel_for(B, [&](long b0, long b1) {
    std::vector<std::pair<float, int>> cand(n_allowed);
    for (long b = b0; b < b1; ++b) {
      const float* s = sims + (size_t)b * V;
      for (int j = 0; j < n_allowed; ++j) {
        const int v = allowed_ids[j];
        cand[j] = {-s[v] * inv_norm[v], v};  // ascending = most similar first; ties by token id
      }
      std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end());
      const float* lg = logits + (size_t)b * V;
      int best = -1;
      for (int j = 0; j < k; ++j) {
        const int v = cand[j].second;
        if (best < 0 || lg[v] > lg[best] || (lg[v] == lg[best] && v < best)) best = v;
      }
      chosen[b] = best;
    }
  });
}

}  // namespace gradmm
