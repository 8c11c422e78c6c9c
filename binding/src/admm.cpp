#include "admm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace gradmm {

double x_update(CausalLM& model, const MatchTarget& target, float* X, const float* z, const float* lam,
                const XUpdateArgs& a, float* adam_m, float* adam_v, int* adam_t, float* losses,
                const std::atomic<bool>* cancel) {
  const int C = model.dims().channels;
  const long free_n = (long)a.free_len * C, row_n = (long)a.L * C, total = (long)a.B * row_n;
  std::vector<float> dX(total), g(total, 0.f);
  for (int s = 0; s < a.steps; ++s) {
    double f = match_loss(model, target, X, a.B, a.L, a.label, dX.data(), nullptr, cancel);
    if (losses) losses[s] = (float)f;
    // ∇ = ∇f + ρ(X − z + λ/ρ) = ∇f + ρ(X − z) + λ on free positions; the template stays fixed
    double norm2 = 0;
    for (int b = 0; b < a.B; ++b)
      for (long i = b * row_n; i < b * row_n + free_n; ++i) {
        g[i] = dX[i] + a.rho * (X[i] - z[i]) + lam[i];
        norm2 += (double)g[i] * g[i];
      }
    const double norm = std::sqrt(norm2);
    const float scale = a.max_grad_norm > 0 && norm > a.max_grad_norm ? (float)(a.max_grad_norm / (norm + 1e-6)) : 1.f;
    const int t = ++*adam_t;
    const float step_size = a.lr / (1.f - std::pow(a.beta1, (float)t));
    const float bc2_sqrt = std::sqrt(1.f - std::pow(a.beta2, (float)t));
    for (int b = 0; b < a.B; ++b)
      for (long i = b * row_n; i < b * row_n + free_n; ++i) {
        const float gi = g[i] * scale;
        adam_m[i] = a.beta1 * adam_m[i] + (1.f - a.beta1) * gi;
        adam_v[i] = a.beta2 * adam_v[i] + (1.f - a.beta2) * gi * gi;
        X[i] -= step_size * (adam_m[i] / (std::sqrt(adam_v[i]) / bc2_sqrt + a.eps));
      }
  }
  return match_loss(model, target, X, a.B, a.L, a.label, nullptr, nullptr, cancel);
}

void projection_tables(const float* wte, int V, int C, const uint8_t* allowed, std::vector<float>& inv_norm,
                       std::vector<int>& allowed_ids) {
  inv_norm.assign(V, 0.f);
  allowed_ids.clear();
  for (int v = 0; v < V; ++v) {
    double s = 0;
    for (int c = 0; c < C; ++c) s += (double)wte[(long)v * C + c] * wte[(long)v * C + c];
    inv_norm[v] = s > 0 ? (float)(1.0 / std::sqrt(s)) : 0.f;
    if (allowed[v]) allowed_ids.push_back(v);
  }
  if (allowed_ids.empty()) throw std::invalid_argument("project: no token is allowed");
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

void project(const ProjectionSteps& steps, const float* wte, int V, int C, const float* U, int B, int L, int free_len,
             const uint8_t* allowed, int topk, const float* prefix_logits, int* out_tokens,
             const std::atomic<bool>* cancel) {
  std::vector<float> inv_norm;
  std::vector<int> allowed_ids;
  projection_tables(wte, V, C, allowed, inv_norm, allowed_ids);
  if (topk < 1) throw std::invalid_argument("project: topk must be at least 1");
  const int n_allowed = (int)allowed_ids.size(), k = std::min(topk, n_allowed);
  std::vector<float> logits((size_t)B * V), ui((size_t)B * C), sims((size_t)B * V);
  for (int b = 0; b < B; ++b) std::memcpy(&logits[(size_t)b * V], prefix_logits, V * sizeof(float));
  std::vector<int> chosen(B);
  for (int i = 0; i < free_len; ++i) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
    for (int b = 0; b < B; ++b) std::memcpy(&ui[(size_t)b * C], U + ((long)b * L + i) * C, C * sizeof(float));
    steps.similarities(ui.data(), sims.data());  // u_i · e_v
    choose_tokens(chosen.data(), sims.data(), logits.data(), inv_norm.data(), allowed_ids.data(), n_allowed, B, V, k);
    for (int b = 0; b < B; ++b) out_tokens[(long)b * free_len + i] = chosen[b];
    if (i + 1 < free_len) steps.decode_next(chosen.data(), logits.data());
  }
}

void project(CausalLM& model, const float* U, int B, int L, int free_len, const uint8_t* allowed, int topk,
             const KVCache& prefix, const float* prefix_logits, int* out_tokens, const std::atomic<bool>* cancel) {
  const int V = model.dims().vocab_size, C = model.dims().channels;
  const float* wte = model.input_embeddings();
  if (prefix.rows != 1 || prefix.length <= 0) throw std::invalid_argument("project: prefix must be a filled one-row cache");
  KVCache rows(model.dims(), B, std::max(free_len, 1), &prefix);
  ProjectionSteps steps;
  steps.similarities = [&](const float* ui, float* sims) { gemm<float>(false, true, B, V, C, ui, C, wte, C, sims, V, false); };
  steps.decode_next = [&](const int* chosen, float* logits) { model.decode(rows, chosen, nullptr, 1, logits, nullptr, cancel); };
  project(steps, wte, V, C, U, B, L, free_len, allowed, topk, prefix_logits, out_tokens, cancel);
}

double init_candidates(const std::function<double(const float* X)>& loss, int C, int B, int L, int free_len,
                       const float* template_embeds, int candidates, uint64_t seed, float token_norm, float* X,
                       const std::atomic<bool>* cancel) {
  const long row_n = (long)L * C;
  std::vector<float> cand((size_t)B * row_n);
  double best = INFINITY;
  for (int c = 0; c < candidates; ++c) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
    fill_normal(cand.data(), (long)cand.size(), seed * 1000003ull + (uint64_t)c);
    for (int b = 0; b < B; ++b) {
      for (int p = 0; p < free_len; ++p) {
        float* e = &cand[b * row_n + (long)p * C];
        double s = 0;
        for (int i = 0; i < C; ++i) s += (double)e[i] * e[i];
        const float r = (float)(token_norm / std::sqrt(std::max(s, 1e-30)));
        for (int i = 0; i < C; ++i) e[i] *= r;
      }
      if (L > free_len) std::memcpy(&cand[b * row_n + (long)free_len * C], template_embeds, sizeof(float) * (L - free_len) * C);
    }
    const double f = loss(cand.data());
    if (f < best) {
      best = f;
      std::memcpy(X, cand.data(), sizeof(float) * cand.size());
    }
  }
  return best;
}

double init_candidates(CausalLM& model, const MatchTarget& target, int B, int L, int free_len,
                       const float* template_embeds, int label, int candidates, uint64_t seed, float token_norm,
                       float* X, const std::atomic<bool>* cancel) {
  return init_candidates([&](const float* cand) { return match_loss(model, target, cand, B, L, label, nullptr, nullptr, cancel); },
                         model.dims().channels, B, L, free_len, template_embeds, candidates, seed, token_norm, X, cancel);
}

}  // namespace gradmm
