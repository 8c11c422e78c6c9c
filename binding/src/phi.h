// Phi (HF PhiForCausalLM semantics: phi-1, phi-1.5, phi-2): token embeddings, blocks in which ONE LayerNorm (with
// bias) feeds attention and the MLP in parallel, their outputs added to the residual
//     x ← x + dense(attention(rope(q(ln(x))), rope(k(ln(x))), v(ln(x)))) + fc2(gelu_new(fc1(ln(x))))
// partial rotary embeddings (the first rotary_dim = head_dim·partial_rotary_factor channels of each q/k head rotate,
// rotate_half convention within them; the rest pass through), q/k/v/dense and fc1/fc2 with biases, a final LayerNorm
// and an lm_head with a bias (untied, or tied to the embeddings; the bias is there either way).
// This is its parameter layout, named and shaped as in Hugging Face checkpoints (nn.Linear weights [out, in]); the
// computation is binding/engine/phi_exec.cpp, written with the backend table's existing ops only.
#pragma once
#include <array>

#include "causal_lm.h"
#include "llama_ops.h"

namespace gradmm {

struct PhiConfig {
  int vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0;
  int num_kv_heads = 0;  // 0 = num_heads
  int max_seq_len = 0;   // max_position_embeddings
  int rotary_dim = 0;    // int(head_dim · partial_rotary_factor); 0 = head_dim. Even, at most head_dim.
  float layer_norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
};

class Phi : public ModelLayout {
 public:
  explicit Phi(const PhiConfig& cfg);  // throws std::invalid_argument for an invalid config
  const PhiConfig& config() const { return cfg_; }  // num_kv_heads and rotary_dim filled in
  int head_dim() const { return cfg_.hidden_size / cfg_.num_heads; }
  const ModelDims& dims() const override { return dims_; }
  const char* architecture() const override { return "phi"; }
  const std::vector<ParamInfo>& param_table() const override { return table_; }
  size_t num_params() const override { return nparams_; }

  struct LayerWeights {
    float *lnw, *lnb, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *w1, *b1, *w2, *b2;
  };
  struct Weights {
    float* embed;
    std::vector<LayerWeights> layers;
    float *lnfw, *lnfb;
    float* lm_head;  // == embed when tied
    float* lm_head_bias;
  };
  // base: a block of this layout (parameters or gradients); nullptr gives all-null pointers.
  Weights weights(float* base) const;
  // The rotary inverse frequencies [rotary_dim / 2]: 1 / theta^(2i / rotary_dim).
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  static constexpr int kLayerTensors = 14;
  PhiConfig cfg_;
  ModelDims dims_;
  std::vector<ParamInfo> table_;
  size_t nparams_ = 0;
  size_t embed_off_ = 0, lnf_off_ = 0, head_off_ = 0, head_bias_off_ = 0;
  std::vector<std::array<size_t, kLayerTensors>> layer_off_;
  std::vector<float> inv_freq_;
};

}  // namespace gradmm
