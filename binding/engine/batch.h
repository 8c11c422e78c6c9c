// The ADMM state of one batch (x, z, λ, the Adam moments of x and the best x so far) held on the model's backend for
// the whole batch, so the method's three updates move no tensor between the host and the backend: the z lookup, the
// dual updates and the x-update's Adam state all stay there. ts/gradmm/method.ts strings the calls together:
//   init        x ← the best of N random batches (token vectors rescaled to a fixed norm, template pasted)
//   project     z ← Π(x + λ/ρ) (or Π(best x)): chosen ids (returned to the host) and their embeddings into z
//   zLoss       f(z)
//   xUpdate     x ← argmin f(x) + ρ/2‖x − z + λ/ρ‖² by Adam (steps, clipping)
//   dualUpdate  λ ← λ + ρ(x − z)
//   keepBest    best x ← x
// Positions [0, lead) hold the lead (the tokenizer's <bos>, where it puts one before a text) and [lead + free_len, L)
// the template: never optimised, never projected.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "matcher.h"

namespace gradmm {

class BatchState {
 public:
  // lead_ids: the pinned tokens before the free positions (often none); template_ids: the template's token ids
  // [L − lead − free_len]
  BatchState(CausalExec& model, int B, int L, int free_len, int label, std::vector<int> template_ids,
             std::vector<int> lead_ids = {});
  int B() const { return B_; }
  int L() const { return L_; }
  int free_len() const { return free_; }
  int lead() const { return (int)lead_ids_.size(); }
  int label() const { return label_; }

  // host_wte: the model's input embeddings on the host (the template's rows). Returns the best f.
  double init(ExecMatcher& matcher, const float* host_wte, int candidates, uint64_t seed, float token_norm,
              const std::atomic<bool>* cancel = nullptr);
  // xUpdate: args.B, L, free_len and label are the batch's; losses_host [steps] optional. Returns f after the steps.
  double x_update(ExecMatcher& matcher, XUpdateArgs args, float* losses_host, const std::atomic<bool>* cancel = nullptr);
  // z ← Π(x + λ/ρ), or Π(best x) when from_best; out_tokens [B, free_len] (host). See matcher.h project.
  void project(CausalExec& model, const float* host_wte, bool from_best, double rho, const uint8_t* allowed, int topk,
               const ExecKVCache& prefix, const float* prefix_logits, int* out_tokens,
               const std::atomic<bool>* cancel = nullptr);
  double z_loss(ExecMatcher& matcher, float* per_sample_host, const std::atomic<bool>* cancel = nullptr);
  void dual_update(double rho);
  void keep_best();

  // The state, for tests and checkpoints of the state: which = "x" | "z" | "lam" | "m" | "v" | "best"; host [B·L·C].
  void read(const char* which, float* host) const;
  void write(const char* which, const float* host);
  int adam_step() const { return adam_t_; }

 private:
  const BackendBuffer<float>& buffer(const char* which) const;

  CausalExec& m_;
  const Backend* be_;
  int B_, L_, free_, label_, C_;
  std::vector<int> template_ids_, lead_ids_;
  int adam_t_ = 0;
  BackendBuffer<float> x_, z_, lam_, m_buf_, v_buf_, best_, u_;
  BackendBuffer<int> chosen_, ids_;
};

}  // namespace gradmm
