// The rows a forward computes logits for, shared by every caller of the engine's forward (binding/engine/model.h).
#pragma once
#include <vector>

#include "causal_lm.h"

namespace gradmm {

// The rows a forward computes logits for (b·T + t with loss_mask != 0, all positions without a mask or with
// all_logits) and, with targets, each row's target and loss weight (the mask's value, else 1), the target checked
// to lie in [0, V) where the weight is not 0. Without targets, targets and weights are left empty. Returns Σ weights.
double select_loss_rows(const ForwardArgs& args, long BT, int V, std::vector<int>& rows, std::vector<int>& targets,
                        std::vector<float>& weights);

}  // namespace gradmm
