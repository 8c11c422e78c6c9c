#include "gradmatch.h"

#include <cmath>
#include <algorithm>
#include <stdexcept>
#include <string>

#include "ops.h"

namespace gradmm {
namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double dot(const float* a, const float* b, long n) {
  double s = 0;
  for (long i = 0; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}

}  // namespace

void fill_normal(float* out, long n, uint64_t seed, float std) {
  uint64_t s = seed;
  for (long i = 0; i < n; i += 2) {
    double u1 = ((splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0,1]
    double u2 = (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    out[i] = (float)(r * std::cos(th)) * std;
    if (i + 1 < n) out[i + 1] = (float)(r * std::sin(th)) * std;
  }
}

std::vector<std::pair<int, int>> target_chunks(int n, int T, int chunk_tokens) {
  const int rows = std::max(1, chunk_tokens / std::max(T, 1));
  std::vector<std::pair<int, int>> out;
  for (int i0 = 0; i0 < n; i0 += rows) out.emplace_back(i0, std::min(n, i0 + rows));
  return out;
}

std::vector<int> check_target_rows(const std::vector<int>& rows, int V) {
  for (size_t k = 0; k < rows.size(); ++k)
    if (rows[k] < 0 || rows[k] >= V)
      throw std::invalid_argument("buildTarget: rows[" + std::to_string(k) + "] = " + std::to_string(rows[k]) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
  std::vector<int> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  const auto twice = std::adjacent_find(sorted.begin(), sorted.end());
  if (twice != sorted.end())
    throw std::invalid_argument("buildTarget: rows lists " + std::to_string(*twice) + " twice");
  return sorted;
}

void finish_target(MatchTarget& t, const TargetOptions& opts, bool lm_head_bias) {
  const int n = t.n, V = t.V, C = t.C;
  const std::vector<int> rows = check_target_rows(opts.rows, V);  // ascending: the order the noise is drawn in
  t.row_mask.clear();
  if (!rows.empty()) {
    t.row_mask.assign(V, 0.f);
    for (int r : rows) t.row_mask[r] = 1.f;
    for (int i = 0; i < n; ++i)  // a ← m ⊙ a
      for (int v = 0; v < V; ++v) t.A[(size_t)i * V + v] *= t.row_mask[v];
  }
  // Per-example clipping in factor space: ‖a hᵀ‖ = ‖a‖·‖h‖ (with a bias ‖(a hᵀ, a)‖ = ‖a‖·√(‖h‖² + 1)), scaled
  // through a.
  t.example_norms.resize(n);
  for (int i = 0; i < n; ++i) {
    float* a = &t.A[(size_t)i * V];
    const double h2 = dot(&t.H[(size_t)i * C], &t.H[(size_t)i * C], C);
    double norm = std::sqrt(dot(a, a, V) * (lm_head_bias ? h2 + 1.0 : h2));
    t.example_norms[i] = (float)norm;
    if (opts.clip_norm > 0 && norm > opts.clip_norm) {
      const float s = (float)(opts.clip_norm / norm);
      for (int v = 0; v < V; ++v) a[v] *= s;
    }
  }
  // ‖G‖² = (1/n²) Σ_ik (a_i·a_k)(h_i·h_k)
  std::vector<float> AA((size_t)n * n), HH((size_t)n * n);
  gemm<float>(false, true, n, n, V, t.A.data(), V, t.A.data(), V, AA.data(), n, false);
  gemm<float>(false, true, n, n, C, t.H.data(), C, t.H.data(), C, HH.data(), n, false);
  double g2 = 0;
  for (size_t i = 0; i < AA.size(); ++i) g2 += (double)AA[i] * HH[i];
  g2 /= (double)n * n;
  std::vector<float> bias_noise;
  if (opts.noise_std > 0) {
    // ‖G + N‖² = ‖G‖² + 2⟨G,N⟩ + ‖N‖², ⟨G,N⟩ = (1/n) Σ_i a_iᵀ N h_i
    // (with a bias, its noise n_b is the next V draws of the same stream: N is the same with or without one)
    if (rows.empty()) {
      t.noise.resize((size_t)V * C + (lm_head_bias ? V : 0));
      fill_normal(t.noise.data(), (long)t.noise.size(), opts.noise_seed, opts.noise_std);
      if (lm_head_bias) {
        bias_noise.assign(t.noise.end() - V, t.noise.end());
        t.noise.resize((size_t)V * C);
      }
    } else {  // restricted: K·C (+ K) draws, row k of them to lm_head row rows[k]; zero elsewhere
      const size_t K = rows.size();
      std::vector<float> draws(K * C + (lm_head_bias ? K : 0));
      fill_normal(draws.data(), (long)draws.size(), opts.noise_seed, opts.noise_std);
      t.noise.assign((size_t)V * C, 0.f);
      for (size_t k = 0; k < K; ++k)
        std::copy(draws.begin() + k * C, draws.begin() + (k + 1) * C, t.noise.begin() + (size_t)rows[k] * C);
      if (lm_head_bias) {
        bias_noise.assign(V, 0.f);
        for (size_t k = 0; k < K; ++k) bias_noise[rows[k]] = draws[K * C + k];
      }
    }
    std::vector<float> NH((size_t)n * V);
    gemm<float>(false, true, n, V, C, t.H.data(), C, t.noise.data(), C, NH.data(), V, false);  // rows: N h_i
    double gn = 0;
    for (int i = 0; i < n; ++i) gn += dot(&t.A[(size_t)i * V], &NH[(size_t)i * V], V);
    gn /= n;
    g2 += 2 * gn + dot(t.noise.data(), t.noise.data(), (long)t.noise.size());
  }
  t.norm = std::sqrt(std::max(g2, 0.0));
  t.bias.clear();
  t.bias_norm = 0;
  if (lm_head_bias) {  // g_t = (1/n) Σ a_i + n_b, summed in double
    t.bias.resize(V);
    double b2 = 0;
    for (int v = 0; v < V; ++v) {
      double s = 0;
      for (int i = 0; i < n; ++i) s += t.A[(size_t)i * V + v];
      t.bias[v] = (float)(s / n + (bias_noise.empty() ? 0.0 : (double)bias_noise[v]));
      b2 += (double)t.bias[v] * t.bias[v];
    }
    t.bias_norm = std::sqrt(b2);
  }
}

std::vector<MatchTarget> whitened_contrastive_targets(const std::vector<const MatchTarget*>& raw, double shrinkage) {
  const int K = (int)raw.size();
  if (K < 2) throw std::invalid_argument("whitened contrastive targets: at least two classes are needed");
  if (!(shrinkage >= 0 && shrinkage <= 1)) throw std::invalid_argument("whitened contrastive targets: shrinkage must lie in [0, 1]");
  const int V = raw[0]->V, C = raw[0]->C;
  int N = 0;
  for (const MatchTarget* t : raw) {
    if (t->V != V || t->C != C) throw std::invalid_argument("whitened contrastive targets: the targets belong to different models");
    if (t->n <= 0) throw std::invalid_argument("whitened contrastive targets: a class has no real examples");
    if (!t->bias.empty()) throw std::invalid_argument("whitened contrastive targets: a model whose lm_head has a bias is not supported");
    if (!t->noise.empty() || !t->row_mask.empty() || !t->hidden_scale.empty() || !t->mean_A.empty())
      throw std::invalid_argument("whitened contrastive targets: build each class's target plain (no DP noise, no target rows, not already combined)");
    N += t->n;
  }
  // w = 1/√((1 − α)·m² + α·mean(m²)), m² the per-entry second moment over all N examples (summed in double)
  auto weights = [&](int dim, auto rows_of) {
    std::vector<double> m2(dim, 0.0);
    for (const MatchTarget* t : raw) {
      const std::vector<float>& X = rows_of(*t);
      for (int i = 0; i < t->n; ++i)
        for (int d = 0; d < dim; ++d) m2[d] += (double)X[(size_t)i * dim + d] * X[(size_t)i * dim + d];
    }
    double mean = 0;
    for (int d = 0; d < dim; ++d) mean += (m2[d] /= N);
    mean /= dim;
    std::vector<float> w(dim);
    for (int d = 0; d < dim; ++d) {
      const double s2 = (1 - shrinkage) * m2[d] + shrinkage * mean;
      w[d] = s2 > 0 ? (float)(1.0 / std::sqrt(s2)) : 0.f;
    }
    return w;
  };
  const std::vector<float> wa = weights(V, [](const MatchTarget& t) -> const std::vector<float>& { return t.A; });
  const std::vector<float> wh = weights(C, [](const MatchTarget& t) -> const std::vector<float>& { return t.H; });
  // the whitened factor rows of all examples, class by class, and their Gram matrices
  std::vector<float> Aw((size_t)N * V), Hw((size_t)N * C);
  std::vector<int> cls(N);
  for (int k = 0, r = 0; k < K; ++k)
    for (int i = 0; i < raw[k]->n; ++i, ++r) {
      cls[r] = k;
      for (int v = 0; v < V; ++v) Aw[(size_t)r * V + v] = raw[k]->A[(size_t)i * V + v] * wa[v];
      for (int c = 0; c < C; ++c) Hw[(size_t)r * C + c] = raw[k]->H[(size_t)i * C + c] * wh[c];
    }
  std::vector<float> AA((size_t)N * N), HH((size_t)N * N);
  gemm<float>(false, true, N, N, V, Aw.data(), V, Aw.data(), V, AA.data(), N, false);
  gemm<float>(false, true, N, N, C, Hw.data(), C, Hw.data(), C, HH.data(), N, false);
  // ⟨Σ_i x_i a_i h_iᵀ, Σ_l y_l a_l h_lᵀ⟩ = Σ_il x_i y_l AA_il HH_il
  auto inner = [&](const std::vector<double>& x, const std::vector<double>& y) {
    double s = 0;
    for (int i = 0; i < N; ++i)
      for (int l = 0; l < N; ++l) s += x[i] * y[l] * (double)AA[(size_t)i * N + l] * HH[(size_t)i * N + l];
    return s;
  };
  std::vector<double> cm(N);  // M = Σ_i cm_i a_i h_iᵀ
  for (int i = 0; i < N; ++i) cm[i] = 1.0 / ((double)K * raw[cls[i]]->n);
  const double mm = inner(cm, cm);
  std::vector<MatchTarget> out(K);
  for (int k = 0; k < K; ++k) {
    std::vector<double> cd(N);  // T_k − M = Σ_i cd_i a_i h_iᵀ
    for (int i = 0; i < N; ++i) cd[i] = (cls[i] == k ? 1.0 / raw[k]->n : 0.0) - cm[i];
    MatchTarget& t = out[k];
    t.n = N, t.V = V, t.C = C;
    t.A.resize((size_t)N * V);
    t.mean_A.resize((size_t)N * V);
    for (int i = 0; i < N; ++i)
      for (int v = 0; v < V; ++v) {
        t.A[(size_t)i * V + v] = (float)(N * cd[i]) * Aw[(size_t)i * V + v];
        t.mean_A[(size_t)i * V + v] = (float)(N * cm[i]) * Aw[(size_t)i * V + v];
      }
    t.H = Hw;
    t.norm = std::sqrt(std::max(inner(cd, cd), 0.0));
    t.mean_norm2 = mm;
    t.mean_dot = inner(cm, cd);
    t.row_mask = wa;
    t.hidden_scale = wh;
    t.example_norms = raw[k]->example_norms;
  }
  return out;
}

}  // namespace gradmm
