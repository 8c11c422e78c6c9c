// The host halves of GRADMM's ADMM pieces (the engine's halves: binding/engine/matcher.h and batch.h):
//   z-update    projection_tables(): the per-call tables of the projection (vocabulary norms, allowed ids)
//   x-update    XUpdateArgs: the settings of the Adam steps on f(X) + ρ/2‖X − z + λ/ρ‖² with gradient-norm clipping
//   init        init_candidates(): best of N random-normal batches (token vectors rescaled to a fixed norm)
// Positions [free_len, L) hold the template: never optimised, never projected.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace gradmm {

// Each row of X: `lead` pinned positions (the tokenizer's <bos>, where it has one), free_len free positions, then the
// template's pinned positions up to L.
struct XUpdateArgs {
  int B = 0, L = 0, free_len = 0, label = 0, steps = 50, lead = 0;
  float rho = 0.1f, lr = 0.008f, max_grad_norm = 1.f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// The projection's per-call tables: inv_norm [V] = 1/‖e_v‖ of the rows of wte [V,C] (the norm summed in double; 0
// for a zero row) and allowed_ids, the ids v with allowed[v] ≠ 0 in ascending order. Throws std::invalid_argument
// when no token is allowed.
void projection_tables(const float* wte, int V, int C, const uint8_t* allowed, std::vector<float>& inv_norm,
                       std::vector<int>& allowed_ids);

// Fills X [B,L,C] (host memory) with the best of `candidates` random batches: N(0,1) per free position [lead,
// lead + free_len), each token vector rescaled to `token_norm`, the pinned embeddings [L−free_len, C] (the lead's rows,
// then the template's) pasted around them; f of each candidate is `loss(X)`. Returns the best f. C = channels.
double init_candidates(const std::function<double(const float* X)>& loss, int C, int B, int L, int lead, int free_len,
                       const float* template_embeds, int candidates, uint64_t seed, float token_norm, float* X,
                       const std::atomic<bool>* cancel = nullptr);

}  // namespace gradmm
