// GPT-2 (GPT2LMHeadModel semantics): learned positions, pre-LN blocks, GELU(tanh) MLP, tied lm_head. This is its
// parameter layout: one contiguous block (llm.c style), named and shaped as in Hugging Face checkpoints (Conv1D
// weights stored [in, out]) so safetensors files load tensor by tensor without conversion. The computation is
// binding/engine/gpt2_exec.cpp.
#pragma once
#include "causal_lm.h"

namespace gradmm {

struct GPT2Config {
  int vocab_size = 0, max_seq_len = 0, channels = 0, num_layers = 0, num_heads = 0;
  float layer_norm_eps = 1e-5f;
};

class GPT2 : public ModelLayout {
 public:
  explicit GPT2(const GPT2Config& cfg);  // throws std::invalid_argument for an invalid config
  const GPT2Config& config() const { return cfg_; }
  const ModelDims& dims() const override { return dims_; }
  const char* architecture() const override { return "gpt2"; }
  const std::vector<ParamInfo>& param_table() const override { return table_; }
  size_t num_params() const override { return nparams_; }

  // Pointers to named parameters (layer l for per-layer ones) in a block of this layout.
  struct Weights {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb,
        *lnfw, *lnfb;
  };
  Weights weights(float* base) const;

 private:
  GPT2Config cfg_;
  ModelDims dims_;
  std::vector<ParamInfo> table_;
  size_t nparams_ = 0;
};

}  // namespace gradmm
