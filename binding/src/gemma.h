// Gemma 3 text models (HF Gemma3ForCausalLM, model_type "gemma3_text"): token embeddings scaled by sqrt(hidden_size),
// "sandwich" blocks with four RMSNorms each
//     x ← x + post_attention_norm(attention(input_norm(x)))
//     x ← x + post_feedforward_norm(down(gelu_tanh(gate(h)) ⊙ up(h))),  h = pre_feedforward_norm(x)
// every RMSNorm scaling by (1 + w) (zero-centred weights, stored as in the checkpoint), RMSNorms over each head of q
// and k before the rotary embeddings, grouped-query attention whose layers are either sliding-window (local: their
// own rotary base) or full (global), a final norm and an lm_head tied to the embeddings (or untied).
// This is its parameter layout, named and shaped as in Hugging Face checkpoints; the computation is
// binding/engine/gemma_exec.cpp.
#pragma once
#include <array>

#include "causal_lm.h"
#include "llama_ops.h"

namespace gradmm {

struct Gemma3Config {
  int vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0;
  int num_kv_heads = 0;  // 0 = num_heads
  int head_dim = 0;      // 0 = hidden_size / num_heads (Gemma 3 sets it: 256 on 270M ... 12B, 128 on 27B)
  int max_seq_len = 0;   // max_position_embeddings
  float rms_norm_eps = 1e-6f;
  double rope_theta = 1e6;          // full-attention layers
  double rope_local_theta = 1e4;    // sliding-window layers
  double rope_scaling_factor = 1;   // full layers: rope_type "linear" divides inv_freq by it (1 = none)
  double rope_local_scaling_factor = 1;
  int sliding_window = 0;           // the local layers' window (keys t − window < t2 ≤ t)
  std::vector<bool> sliding;        // per layer: sliding_attention (true) or full_attention; empty = all full
  // attention scores are scaled by query_pre_attn_scalar^-1/2; 0 = head_dim (the only value supported: every Gemma 3
  // size but 27B)
  double query_pre_attn_scalar = 0;
  bool tie_word_embeddings = true;
};

class Gemma3 : public ModelLayout {
 public:
  explicit Gemma3(const Gemma3Config& cfg);  // throws std::invalid_argument for an invalid config
  const Gemma3Config& config() const { return cfg_; }  // num_kv_heads, head_dim, sliding filled in
  const ModelDims& dims() const override { return dims_; }
  const char* architecture() const override { return "gemma3"; }
  const std::vector<ParamInfo>& param_table() const override { return table_; }
  size_t num_params() const override { return nparams_; }
  // The token embeddings' scale: sqrt(hidden_size) rounded to float (HF Gemma3TextScaledWordEmbedding).
  float embed_scale() const { return embed_scale_; }

  struct LayerWeights {
    float *ln_in, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ln_post_attn, *ln_pre_ff, *ln_post_ff, *wg, *wu, *wd;
  };
  struct Weights {
    float* embed;
    std::vector<LayerWeights> layers;
    float* norm;
    float* lm_head;  // == embed when tied
  };
  // base: a block of this layout (parameters or gradients); nullptr gives all-null pointers.
  Weights weights(float* base) const;
  // The rotary inverse frequencies [head_dim / 2] of the full (global) and of the sliding (local) layers.
  const std::vector<float>& inv_freq(bool local) const { return local ? inv_freq_local_ : inv_freq_; }

 private:
  static constexpr int kLayerTensors = 13;
  Gemma3Config cfg_;
  ModelDims dims_;
  std::vector<ParamInfo> table_;
  size_t nparams_ = 0;
  size_t embed_off_ = 0, norm_off_ = 0, head_off_ = 0;
  std::vector<std::array<size_t, kLayerTensors>> layer_off_;
  std::vector<float> inv_freq_, inv_freq_local_;
  float embed_scale_ = 1.f;
};

}  // namespace gradmm
