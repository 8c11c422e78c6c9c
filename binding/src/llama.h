// Llama family (HF LlamaForCausalLM semantics; Qwen2 and Mistral without sliding windows map onto it): token
// embeddings, pre-RMSNorm blocks, rotary positions (optionally with the Llama-3 frequency adjustment), causal
// grouped-query attention, SwiGLU MLP, final RMSNorm, lm_head (separate or tied to the embeddings).
// This is its parameter layout: one contiguous block, named and shaped exactly as in Hugging Face checkpoints
// (nn.Linear weights stored [out, in]) so safetensors files load tensor by tensor without conversion. The computation
// is binding/engine/llama_exec.cpp.
#pragma once
#include <array>

#include "causal_lm.h"
#include "llama_ops.h"

namespace gradmm {

struct LlamaConfig {
  int vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0;
  int num_kv_heads = 0;  // 0 = num_heads
  int head_dim = 0;      // 0 = hidden_size / num_heads
  int max_seq_len = 0;   // max_position_embeddings
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // biases on q_proj, k_proj, v_proj
  bool o_proj_bias = false;     // bias on o_proj (HF Llama's attention_bias sets both; Qwen2 has q/k/v only)
  bool mlp_bias = false;        // biases on gate_proj, up_proj, down_proj
  // Phi-3's fused tensors (no biases): self_attn.qkv_proj.weight [(NH+2·NKV)·hd, C] = q | k | v rows and
  // mlp.gate_up_proj.weight [2·I, C] = gate | up rows, stored where q_proj, k_proj, v_proj and gate_proj, up_proj
  // would be (the same memory: the computation is Llama's unchanged)
  bool fused_qkv_gate_up = false;
};

class Llama : public ModelLayout {
 public:
  explicit Llama(const LlamaConfig& cfg);  // throws std::invalid_argument for an invalid config
  const LlamaConfig& config() const { return cfg_; }  // num_kv_heads and head_dim filled in
  const ModelDims& dims() const override { return dims_; }
  const char* architecture() const override { return "llama"; }
  const std::vector<ParamInfo>& param_table() const override { return table_; }
  size_t num_params() const override { return nparams_; }

  // Pointers to the named tensors of one layer (nullptr for biases the config does not have).
  struct LayerWeights {
    float *ln1, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln2, *wg, *bg, *wu, *bu, *wd, *bd;
  };
  struct Weights {
    float* embed;
    std::vector<LayerWeights> layers;
    float* norm;
    float* lm_head;  // == embed when tied
  };
  // base: a block of this layout (parameters or gradients); nullptr gives all-null pointers (no gradients wanted).
  Weights weights(float* base) const;
  // The rotary inverse frequencies [head_dim / 2] (with the llama3 adjustment when configured).
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  LlamaConfig cfg_;
  ModelDims dims_;
  std::vector<ParamInfo> table_;
  size_t nparams_ = 0;
  size_t embed_off_ = 0, norm_off_ = 0, head_off_ = 0;
  static constexpr int kLayerTensors = 16;
  std::vector<std::array<size_t, kLayerTensors>> layer_off_;  // SIZE_MAX = absent
  std::vector<float> inv_freq_;
};

}  // namespace gradmm
