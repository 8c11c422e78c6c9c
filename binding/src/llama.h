// Llama family (HF LlamaForCausalLM semantics; Qwen2 and Mistral without sliding windows map onto it): token
// embeddings, pre-RMSNorm blocks, rotary positions (optionally with the Llama-3 frequency adjustment), causal
// grouped-query attention, SwiGLU MLP, final RMSNorm, lm_head (separate or tied to the embeddings).
// Parameters live in one contiguous allocation, named and shaped exactly as in Hugging Face checkpoints
// (nn.Linear weights stored [out, in]) so safetensors files load tensor by tensor without conversion.
#pragma once
#include <array>

#include "causal_lm.h"
#include "lm_head.h"
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
};

class Llama : public CausalLM {
 public:
  explicit Llama(const LlamaConfig& cfg);
  const LlamaConfig& config() const { return cfg_; }
  const ModelDims& dims() const override { return dims_; }
  const char* architecture() const override { return "llama"; }
  const std::vector<ParamInfo>& param_table() const override { return table_; }
  size_t num_params() const override { return params_.size(); }
  float* params() override { return params_.data(); }
  float* grads() override;
  void zero_grads() override;
  const float* input_embeddings() override { return params_.data() + embed_off_; }
  const float* lm_head_weight() override { return params_.data() + head_off_; }

  float forward(const ForwardArgs& args, const std::atomic<bool>* cancel = nullptr) override;
  const std::vector<int>& selected_rows() const override { return head_.rows(); }
  const float* logits() const override { return head_.logits(); }
  const float* probs() const override { return head_.probs(); }
  const float* hidden() const override { return acts_.normf.data(); }
  size_t hidden_size() const override { return (size_t)acts_.B * acts_.T * cfg_.hidden_size; }
  void backward(const BackwardArgs& args, const std::atomic<bool>* cancel = nullptr) override;
  double adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t) override;
  float* adam_m() override { return adam_m_.empty() ? nullptr : adam_m_.data(); }
  float* adam_v() override { return adam_v_.empty() ? nullptr : adam_v_.data(); }
  void ensure_adam_state() override {
    if (adam_m_.size() != params_.size()) adam_m_.assign(params_.size(), 0.f), adam_v_.assign(params_.size(), 0.f);
  }
  void decode(KVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out, float* hidden_out,
              const std::atomic<bool>* cancel = nullptr) override;

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
  // base = params() or grads(); nullptr gives all-null pointers (no gradients wanted).
  Weights weights(float* base) const;

 private:
  struct Activations {
    int B = 0, T = 0;
    // layers whose activations are kept: num_layers (for backward), or 1 after an inference forward (every layer
    // writes slot 0; resid then has 2 slots used alternately)
    int layers = 0;
    std::vector<float> resid;      // [L+1, BT, C]: layer inputs; resid[0] = input embeddings, resid[L] = last output
    std::vector<float> resid_mid;  // [L, BT, C]: after the attention residual
    std::vector<float> ln1, ln1_rstd, qkv, att, atty, ln2, ln2_rstd, gate, up, act, normf, normf_rstd;
  };
  void ensure_activations(int B, int T, bool keep = true);
  void ensure_rope(int npos);  // cos/sin tables cover positions [0, npos)

  LlamaConfig cfg_;
  ModelDims dims_;
  int C_, NH_, NKV_, HD_, I_, QKV_;  // QKV_ = (NH + 2·NKV)·hd, the packed q|k|v width
  std::vector<ParamInfo> table_;
  size_t embed_off_ = 0, norm_off_ = 0, head_off_ = 0;
  static constexpr int kLayerTensors = 16;
  std::vector<std::array<size_t, kLayerTensors>> layer_off_;  // SIZE_MAX = absent
  std::vector<float> params_, grads_, adam_m_, adam_v_;
  std::vector<float> inv_freq_, rope_cos_, rope_sin_;
  int rope_npos_ = 0;
  Activations acts_;
  // last forward's inputs and outputs
  std::vector<int> tokens_;
  LMHeadLoss head_;
  bool used_embeds_ = false;
  // scratch
  std::vector<float> tmp_, d_res_, d_tmp_, d_qkv_, d_atty_, d_act_, d_gate_, d_up_;
};

}  // namespace gradmm
