#include "admm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "causal_lm.h"
#include "gradmatch.h"

namespace gradmm {

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

double init_candidates(const std::function<double(const float* X)>& loss, int C, int B, int L, int lead, int free_len,
                       const float* template_embeds, int candidates, uint64_t seed, float token_norm, float* X,
                       const std::atomic<bool>* cancel) {
  const long row_n = (long)L * C;
  std::vector<float> cand((size_t)B * row_n);
  double best = INFINITY;
  for (int c = 0; c < candidates; ++c) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
    fill_normal(cand.data(), (long)cand.size(), seed * 1000003ull + (uint64_t)c);
    for (int b = 0; b < B; ++b) {
      for (int p = lead; p < lead + free_len; ++p) {
        float* e = &cand[b * row_n + (long)p * C];
        double s = 0;
        for (int i = 0; i < C; ++i) s += (double)e[i] * e[i];
        const float r = (float)(token_norm / std::sqrt(std::max(s, 1e-30)));
        for (int i = 0; i < C; ++i) e[i] *= r;
      }
      if (lead > 0) std::memcpy(&cand[b * row_n], template_embeds, sizeof(float) * lead * C);
      const long tail = L - lead - free_len;
      if (tail > 0)
        std::memcpy(&cand[b * row_n + (long)(lead + free_len) * C], template_embeds + (long)lead * C, sizeof(float) * tail * C);
    }
    const double f = loss(cand.data());
    if (f < best) {
      best = f;
      std::memcpy(X, cand.data(), sizeof(float) * cand.size());
    }
  }
  return best;
}

}  // namespace gradmm
