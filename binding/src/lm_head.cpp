#include "lm_head.h"

#include <stdexcept>


namespace gradmm {

double select_loss_rows(const ForwardArgs& args, long BT, int V, std::vector<int>& rows,
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

}  // namespace gradmm
