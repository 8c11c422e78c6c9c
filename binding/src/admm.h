// The three ADMM pieces of GRADMM as native loops (ts/gradmm/admm.ts strings them together):
//   z-update  project():        u = x + λ/ρ; per free position, the top-k vocabulary rows by cosine to u_i
//                                (allowed tokens only), choosing the one the LM scores highest after the
//                                instruction prefix and the tokens chosen so far (KV cache, prefix shared).
//   x-update  x_update():       Adam steps on f(X) + ρ/2‖X − z + λ/ρ‖² with gradient-norm clipping.
//   init      init_candidates(): best of N random-normal batches (token vectors rescaled to a fixed norm).
// Positions [free_len, L) hold the template: never optimised, never projected.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "causal_lm.h"
#include "gradmatch.h"

namespace gradmm {

struct XUpdateArgs {
  int B = 0, L = 0, free_len = 0, label = 0, steps = 50;
  float rho = 0.1f, lr = 0.008f, max_grad_norm = 1.f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// Runs args.steps Adam steps on X [B,L,C] in place. adam_m, adam_v [B,L,C] and *adam_t persist across calls.
// losses[s] = f(X) before step s. Returns f(X) after the last step.
double x_update(CausalLM& model, const MatchTarget& target, float* X, const float* z, const float* lam,
                const XUpdateArgs& args, float* adam_m, float* adam_v, int* adam_t, float* losses,
                const std::atomic<bool>* cancel = nullptr);

// Projects U [B,L,C] onto tokens (out_tokens [B,free_len]) as described above. `prefix` is a one-row KV cache
// holding the instruction prompt, prefix_logits [V] the logits after it. allowed [V]: 1 = token may be chosen.
void project(CausalLM& model, const float* U, int B, int L, int free_len, const uint8_t* allowed, int topk,
             const KVCache& prefix, const float* prefix_logits, int* out_tokens,
             const std::atomic<bool>* cancel = nullptr);

// project()'s per-call tables: inv_norm [V] = 1/‖e_v‖ of the rows of wte [V,C] (the norm summed in double; 0 for a
// zero row) and allowed_ids, the ids v with allowed[v] ≠ 0 in ascending order. Throws std::invalid_argument when no
// token is allowed.
void projection_tables(const float* wte, int V, int C, const uint8_t* allowed, std::vector<float>& inv_norm,
                       std::vector<int>& allowed_ids);

// project()'s choice at one position, for every row b < B (the specification of the backend op project_choose):
// among the n_allowed ids of allowed_ids (distinct, in [0, V)), the k with the smallest key (−sims[b,v]·inv_norm[v],
// float, then the token id: ascending = most similar first, ties by the smaller id; the float comparison makes −0
// and +0 equal), and of those the one with the highest logits[b,v] (ties: the smaller id) goes to chosen[b].
// sims, logits [B,V]. Throws std::invalid_argument unless 1 ≤ n_allowed ≤ V and 1 ≤ k ≤ n_allowed.
// With finite sims and inv_norm the keys are never NaN; NaN logits are unsupported (the scan's result would then
// depend on the order nth_element leaves the candidates in).
void choose_tokens(int* chosen, const float* sims, const float* logits, const float* inv_norm, const int* allowed_ids,
                   int n_allowed, int B, int V, int k);

// project()'s choice loop on the host, as the CPU engine runs it (all pointers host memory; the device path,
// exec_project in binding/cuda/model_exec.h, keeps similarities and logits on its backend instead):
// similarities(ui [B,C], sims [B,V]) computes u_i·e_v; decode_next(chosen [B], logits [B,V]) decodes the chosen
// tokens of every row and gives each row's logits for the next position. wte [V,C] gives the vocabulary norms.
struct ProjectionSteps {
  std::function<void(const float* ui, float* sims)> similarities;
  std::function<void(const int* chosen, float* logits)> decode_next;
};
void project(const ProjectionSteps& steps, const float* wte, int V, int C, const float* U, int B, int L, int free_len,
             const uint8_t* allowed, int topk, const float* prefix_logits, int* out_tokens,
             const std::atomic<bool>* cancel = nullptr);

// Fills X [B,L,C] with the best of `candidates` random batches: N(0,1) per free position, each token vector
// rescaled to `token_norm`, template embeddings [L−free_len, C] pasted. Returns the best f.
double init_candidates(CausalLM& model, const MatchTarget& target, int B, int L, int free_len,
                       const float* template_embeds, int label, int candidates, uint64_t seed, float token_norm,
                       float* X, const std::atomic<bool>* cancel = nullptr);

// The same candidates with f computed by `loss(X)` (another executor of the model, e.g. its GPU copy); C = channels.
double init_candidates(const std::function<double(const float* X)>& loss, int C, int B, int L, int free_len,
                       const float* template_embeds, int candidates, uint64_t seed, float token_norm, float* X,
                       const std::atomic<bool>* cancel = nullptr);

}  // namespace gradmm
