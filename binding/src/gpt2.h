// GPT-2 (GPT2LMHeadModel semantics): learned positions, pre-LN blocks, GELU(tanh) MLP, tied lm_head.
// Parameters live in one contiguous allocation (llm.c style), named and shaped as in Hugging Face checkpoints
// (Conv1D weights stored [in, out]) so safetensors files load tensor by tensor without conversion.
#pragma once
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

namespace gradmm {

struct GPT2Config {
  int vocab_size = 0, max_seq_len = 0, channels = 0, num_layers = 0, num_heads = 0;
  float layer_norm_eps = 1e-5f;
};

struct ParamInfo {
  std::string name;
  size_t offset;                  // in floats from the start of the parameter block
  std::vector<long> shape;
  size_t numel() const {
    size_t n = 1;
    for (long d : shape) n *= (size_t)d;
    return n;
  }
};

// Thrown from inside a forward/backward when the caller's cancel flag is set (checked between layers).
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

struct KVCache;

class GPT2 {
 public:
  explicit GPT2(const GPT2Config& cfg);
  const GPT2Config& config() const { return cfg_; }
  const std::vector<ParamInfo>& param_table() const { return table_; }
  size_t num_params() const { return params_.size(); }
  float* params() { return params_.data(); }
  float* grads();   // allocated on first use
  void zero_grads();

  // ---- training / analysis path: full causal forward over B rows of T positions, activations saved ----
  // Input is either token ids [B,T] or input embeddings [B,T,C] (then wte is not read for the input).
  // Logits are computed only for the rows that need them: rows with loss_mask != 0 (all rows when loss_mask is null)
  // or every position when all_logits. Returns the mean cross-entropy Σ mask·ce / Σ mask, or NaN without targets.
  struct ForwardArgs {
    const int* tokens = nullptr;
    const float* embeds = nullptr;
    int B = 0, T = 0;
    const int* targets = nullptr;     // [B,T]
    const float* loss_mask = nullptr; // [B,T] weights, nullptr = all positions count
    bool all_logits = false;
  };
  float forward(const ForwardArgs& args, const std::atomic<bool>* cancel = nullptr);

  // Positions (b*T+t) whose logits the last forward computed, in order; logits() is [selected_rows().size(), V].
  const std::vector<int>& selected_rows() const { return rows_; }
  const float* logits() const { return logits_.data(); }
  const float* probs() const { return probs_.data(); }
  // Final-layernorm output h [B,T,C] of the last forward (the lm_head's input).
  const float* hidden() const { return acts_.lnf.data(); }
  size_t hidden_size() const { return (size_t)acts_.B * acts_.T * cfg_.channels; }

  // Backward from the last forward. The gradient entering the lm_head is the cross-entropy's (from_loss) and/or
  // d_logits [selected rows, V] given by the caller; d_hidden [B,T,C] is added to the gradient at h.
  // param_grads=false computes only what the input gradient needs (no weight-gradient GEMMs).
  // d_embeds [B,T,C] receives (+=) the input-embedding gradient when the forward took embeds.
  struct BackwardArgs {
    bool from_loss = true;
    const float* d_logits = nullptr;
    const float* d_hidden = nullptr;
    bool param_grads = true;
    float* d_embeds = nullptr;
  };
  void backward(const BackwardArgs& args, const std::atomic<bool>* cancel = nullptr);

  // AdamW over all parameters with global grad-norm clipping (max_norm <= 0: no clipping). Returns the norm before
  // clipping. t counts from 1.
  double adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t);

  // ---- incremental decoding with a KV cache ----
  // Appends Tn new positions (tokens [rows,Tn] or embeds [rows,Tn,C]) to every row of the cache and writes the
  // logits of each row's last new position to logits_out [rows,V] (and its h to hidden_out [rows,C] if given).
  void decode(KVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out, float* hidden_out,
              const std::atomic<bool>* cancel = nullptr);

  // Pointers to named parameters (layer l for per-layer ones).
  struct Weights {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb,
        *lnfw, *lnfb;
  };
  Weights weights(float* base) const;

 private:
  struct Activations {
    int B = 0, T = 0;
    std::vector<float> encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att, attproj, residual2, ln2, ln2_mean, ln2_rstd,
        fch, fch_gelu, fcproj, residual3, lnf, lnf_mean, lnf_rstd;
  };
  void ensure_activations(int B, int T);

  GPT2Config cfg_;
  std::vector<ParamInfo> table_;
  std::vector<float> params_, grads_, adam_m_, adam_v_;
  Activations acts_;
  // last forward's inputs and outputs
  std::vector<int> tokens_, targets_, rows_;
  std::vector<float> mask_, logits_, probs_, losses_;
  bool used_embeds_ = false;
  // backward scratch (one layer at a time)
  std::vector<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_fch_, d_fch_gelu_;
  std::vector<float> h_rows_;  // h at the rows whose logits were computed (the lm_head input)
};

// Keys and values of every layer for `rows` sequences decoded in lockstep. A cache may continue a shared
// one-row `prefix` cache (e.g. a prompt computed once): its positions are read, never copied.
struct KVCache {
  KVCache(const GPT2Config& cfg, int rows, int capacity, const KVCache* prefix = nullptr);
  int rows, capacity, length = 0;  // length = positions stored per row (excluding the prefix)
  const KVCache* prefix;
  int prefix_len() const { return prefix ? prefix->length : 0; }
  int num_layers, channels;
  std::vector<float> k, v;  // [L, rows, capacity, C]
  float* k_at(int l, int row, int pos) { return k.data() + (((long)l * rows + row) * capacity + pos) * channels; }
  float* v_at(int l, int row, int pos) { return v.data() + (((long)l * rows + row) * capacity + pos) * channels; }
  const float* k_at(int l, int row, int pos) const {
    return k.data() + (((long)l * rows + row) * capacity + pos) * channels;
  }
  const float* v_at(int l, int row, int pos) const {
    return v.data() + (((long)l * rows + row) * capacity + pos) * channels;
  }
};

}  // namespace gradmm
