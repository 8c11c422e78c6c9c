// GPT-2 (GPT2LMHeadModel semantics): learned positions, pre-LN blocks, GELU(tanh) MLP, tied lm_head.
// Parameters live in one contiguous allocation (llm.c style), named and shaped as in Hugging Face checkpoints
// (Conv1D weights stored [in, out]) so safetensors files load tensor by tensor without conversion.
#pragma once
#include "causal_lm.h"
#include "lm_head.h"

namespace gradmm {

struct GPT2Config {
  int vocab_size = 0, max_seq_len = 0, channels = 0, num_layers = 0, num_heads = 0;
  float layer_norm_eps = 1e-5f;
};

class GPT2 : public CausalLM {
 public:
  explicit GPT2(const GPT2Config& cfg);
  const GPT2Config& config() const { return cfg_; }
  const ModelDims& dims() const override { return dims_; }
  const char* architecture() const override { return "gpt2"; }
  const std::vector<ParamInfo>& param_table() const override { return table_; }
  size_t num_params() const override { return params_.size(); }
  float* params() override { return params_.data(); }
  float* grads() override;
  void zero_grads() override;
  const float* input_embeddings() override { return weights(params_.data()).wte; }
  const float* lm_head_weight() override { return weights(params_.data()).wte; }  // tied

  float forward(const ForwardArgs& args, const std::atomic<bool>* cancel = nullptr) override;
  const std::vector<int>& selected_rows() const override { return head_.rows(); }
  const float* logits() const override { return head_.logits(); }
  const float* probs() const override { return head_.probs(); }
  const float* hidden() const override { return acts_.lnf.data(); }
  size_t hidden_size() const override { return (size_t)acts_.B * acts_.T * cfg_.channels; }
  void backward(const BackwardArgs& args, const std::atomic<bool>* cancel = nullptr) override;
  double adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t) override;
  float* adam_m() override { return adam_m_.empty() ? nullptr : adam_m_.data(); }
  float* adam_v() override { return adam_v_.empty() ? nullptr : adam_v_.data(); }
  void ensure_adam_state() override {
    if (adam_m_.size() != params_.size()) adam_m_.assign(params_.size(), 0.f), adam_v_.assign(params_.size(), 0.f);
  }
  void decode(KVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out, float* hidden_out,
              const std::atomic<bool>* cancel = nullptr) override;

  // Pointers to named parameters (layer l for per-layer ones).
  struct Weights {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb,
        *lnfw, *lnfb;
  };
  Weights weights(float* base) const { return weights_of(cfg_, base); }
  // The layout alone, for code that holds a GPT-2 parameter block elsewhere (the CUDA executor).
  static Weights weights_of(const GPT2Config& cfg, float* base);
 private:
  struct Activations {
    int B = 0, T = 0;
    int layers = 0;  // num_layers, or 1 after an inference forward (every layer in slot 0)
    std::vector<float> encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att, attproj, residual2, ln2, ln2_mean, ln2_rstd,
        fch, fch_gelu, fcproj, residual3, lnf, lnf_mean, lnf_rstd;
  };
  void ensure_activations(int B, int T, bool keep = true);

  GPT2Config cfg_;
  ModelDims dims_;
  std::vector<ParamInfo> table_;
  std::vector<float> params_, grads_, adam_m_, adam_v_;
  Activations acts_;
  // last forward's inputs and outputs
  std::vector<int> tokens_;
  LMHeadLoss head_;
  bool used_embeds_ = false;
  // backward scratch (one layer at a time)
  std::vector<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_fch_, d_fch_gelu_;
};

}  // namespace gradmm
