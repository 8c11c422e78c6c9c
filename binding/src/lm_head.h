// The lm_head and its loss, shared by every model family: logits only on the rows that need them (loss_mask != 0,
// or all), the masked mean cross-entropy, and the backward into the final hidden states (and the lm_head weight).
#pragma once
#include <vector>

#include "causal_lm.h"

namespace gradmm {

// The rows a forward computes logits for (b·T + t with loss_mask != 0, all positions without a mask or with
// all_logits) and, with targets, each row's target and loss weight (the mask's value, else 1), the target checked
// to lie in [0, V) where the weight is not 0. Without targets, targets and weights are left empty. Returns Σ weights.
double select_loss_rows(const CausalLM::ForwardArgs& args, long BT, int V, std::vector<int>& rows,
                        std::vector<int>& targets, std::vector<float>& weights);

class LMHeadLoss {
 public:
  // h: final hidden states [BT, C]; W: lm_head weight [V, C]. Returns Σ mask·ce / Σ mask, or NaN without targets.
  float forward(const CausalLM::ForwardArgs& args, const float* h, long BT, int C, int V, const float* W);
  // Adds the gradient entering the lm_head (the cross-entropy's when args.from_loss, plus args.d_logits) into
  // dh [BT, C]; into dW [V, C] too when it is not null.
  void backward(const CausalLM::BackwardArgs& args, int C, int V, const float* W, float* dh, float* dW) const;
  bool has_targets() const { return !mask_.empty(); }
  const std::vector<int>& rows() const { return rows_; }
  const float* logits() const { return logits_.data(); }
  const float* probs() const { return probs_.data(); }

 private:
  std::vector<int> rows_, targets_;
  std::vector<float> h_rows_, logits_, probs_, losses_, mask_;
  // backward scratch, kept between calls: a fresh [rows, V] buffer each step cost page faults and zeroing by the
  // kernel (~5% of a GPT-2 124M training step)
  mutable std::vector<float> dlogits_, dh_rows_;
};

}  // namespace gradmm
