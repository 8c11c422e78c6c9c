#include "lm_head.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ops.h"

namespace gradmm {

double select_loss_rows(const CausalLM::ForwardArgs& args, long BT, int V, std::vector<int>& rows,
                        std::vector<int>& targets, std::vector<float>& weights) {
  rows.clear();
  for (long i = 0; i < BT; ++i)
    if (args.all_logits || !args.loss_mask || args.loss_mask[i] != 0) rows.push_back((int)i);
  const int R = (int)rows.size();
  weights.clear();
  targets.clear();
  if (!args.targets) return 0;
  weights.resize(R);
  targets.resize(R);
  double wsum = 0;
  for (int r = 0; r < R; ++r) {
    weights[r] = args.loss_mask ? args.loss_mask[rows[r]] : 1.f;
    targets[r] = args.targets[rows[r]];
    if (weights[r] != 0 && (targets[r] < 0 || targets[r] >= V)) throw std::invalid_argument("forward: target out of range");
    wsum += weights[r];
  }
  return wsum;
}

float LMHeadLoss::forward(const CausalLM::ForwardArgs& args, const float* h, long BT, int C, int V, const float* W) {
  const double wsum = select_loss_rows(args, BT, V, rows_, targets_, mask_);
  const int R = (int)rows_.size();
  h_rows_.resize((size_t)R * C);
  for (int r = 0; r < R; ++r) std::memcpy(&h_rows_[(size_t)r * C], h + (long)rows_[r] * C, C * sizeof(float));
  logits_.resize((size_t)R * V);
  gemm<float>(false, true, R, V, C, h_rows_.data(), C, W, C, logits_.data(), V, false);
  if (!args.targets) return NAN;
  probs_.resize((size_t)R * V);
  losses_.resize(R);
  softmax_crossentropy_forward(losses_.data(), probs_.data(), logits_.data(), targets_.data(), mask_.data(), R, V);
  double loss = 0;
  for (int r = 0; r < R; ++r) loss += (double)mask_[r] * losses_[r];
  return wsum > 0 ? (float)(loss / wsum) : NAN;
}

void LMHeadLoss::backward(const CausalLM::BackwardArgs& args, int C, int V, const float* W, float* dh, float* dW) const {
  if (!args.from_loss && !args.d_logits) return;
  const int R = (int)rows_.size();
  std::vector<float>& dlogits = dlogits_;
  dlogits.assign((size_t)R * V, 0.f);
  if (args.from_loss) {
    double wsum = 0;
    for (float m : mask_) wsum += m;
    std::vector<float> dlosses(R);
    for (int r = 0; r < R; ++r) dlosses[r] = wsum > 0 ? (float)(mask_[r] / wsum) : 0.f;
    softmax_crossentropy_backward(dlogits.data(), dlosses.data(), probs_.data(), targets_.data(), mask_.data(), R, V);
  }
  if (args.d_logits)
    for (size_t i = 0; i < dlogits.size(); ++i) dlogits[i] += args.d_logits[i];
  std::vector<float>& dh_rows = dh_rows_;
  dh_rows.resize((size_t)R * C);
  gemm<float>(false, false, R, C, V, dlogits.data(), V, W, C, dh_rows.data(), C, false);  // dh = dlogits · W
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) dh[(size_t)rows_[r] * C + c] += dh_rows[(size_t)r * C + c];
  if (dW) gemm<float>(true, false, V, C, R, dlogits.data(), V, h_rows_.data(), C, dW, C, true);  // dW += dlogitsᵀ · h
}

}  // namespace gradmm
