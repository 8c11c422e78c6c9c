// The interface every model family implements (GPT-2 in gpt2.h; Llama beside it), so the method code
// (gradmatch.h, admm.h) and the N-API layer are written once. Parameters are one contiguous float block whose
// tensors are named and shaped as in Hugging Face checkpoints.
#pragma once
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace gradmm {

// Sizes every family shares. kv_channels = key/value width per position (channels, or fewer with grouped-query
// attention).
struct ModelDims {
  int vocab_size = 0, max_seq_len = 0, channels = 0, num_layers = 0, kv_channels = 0;
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
inline void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
}
// Throws std::invalid_argument(message) unless every one of the n ids lies in [0, bound).
inline void check_ids(const int* ids, long n, int bound, const char* message) {
  for (long i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= bound)
      throw std::invalid_argument(std::string(message) + " (" + std::to_string(ids[i]) + " at index " + std::to_string(i) + "; valid: 0 to " +
                                  std::to_string(bound - 1) + ")");
}

// Keys and values of every layer for `rows` sequences decoded in lockstep. A cache may continue a shared
// one-row `prefix` cache (e.g. a prompt computed once): its positions are read, never copied.
struct KVCache {
  KVCache(const ModelDims& dims, int rows, int capacity, const KVCache* prefix = nullptr);
  int rows, capacity, length = 0;  // length = positions stored per row (excluding the prefix)
  const KVCache* prefix;
  int prefix_len() const { return prefix ? prefix->length : 0; }
  int num_layers, channels;
  std::vector<float> k, v;  // [L, rows, capacity, channels]
  float* k_at(int l, int row, int pos) { return k.data() + (((long)l * rows + row) * capacity + pos) * channels; }
  float* v_at(int l, int row, int pos) { return v.data() + (((long)l * rows + row) * capacity + pos) * channels; }
  const float* k_at(int l, int row, int pos) const {
    return k.data() + (((long)l * rows + row) * capacity + pos) * channels;
  }
  const float* v_at(int l, int row, int pos) const {
    return v.data() + (((long)l * rows + row) * capacity + pos) * channels;
  }
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelDims& dims() const = 0;
  virtual const char* architecture() const = 0;
  virtual const std::vector<ParamInfo>& param_table() const = 0;
  virtual size_t num_params() const = 0;
  virtual float* params() = 0;
  virtual float* grads() = 0;  // allocated on first use
  virtual void zero_grads() = 0;
  // Token embedding matrix [V,C] (the input side; the projection searches it) and the lm_head weight [V,C].
  virtual const float* input_embeddings() = 0;
  virtual const float* lm_head_weight() = 0;

  // ---- training / analysis path: full causal forward over B rows of T positions, activations saved ----
  // Input is either token ids [B,T] or input embeddings [B,T,C] (then the embedding matrix is not read).
  // Logits are computed only for the rows that need them: rows with loss_mask != 0 (all rows when loss_mask is null)
  // or every position when all_logits. Returns the mean cross-entropy Σ mask·ce / Σ mask, or NaN without targets.
  struct ForwardArgs {
    const int* tokens = nullptr;
    const float* embeds = nullptr;
    int B = 0, T = 0;
    const int* targets = nullptr;     // [B,T]
    const float* loss_mask = nullptr; // [B,T] weights, nullptr = all positions count
    bool all_logits = false;
    // false: an inference forward that keeps one layer's activations at a time (a fraction of the memory for long
    // or many rows; the same results bit for bit); backward() after it throws.
    bool keep_activations = true;
  };
  virtual float forward(const ForwardArgs& args, const std::atomic<bool>* cancel = nullptr) = 0;
  // Positions (b*T+t) whose logits the last forward computed, in order; logits()/probs() are [rows, V].
  virtual const std::vector<int>& selected_rows() const = 0;
  virtual const float* logits() const = 0;
  virtual const float* probs() const = 0;
  // Final-norm output h [B,T,C] of the last forward (the lm_head's input).
  virtual const float* hidden() const = 0;
  virtual size_t hidden_size() const = 0;

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
  virtual void backward(const BackwardArgs& args, const std::atomic<bool>* cancel = nullptr) = 0;

  // AdamW over all parameters with global grad-norm clipping (max_norm <= 0: no clipping). Returns the norm before
  // clipping. t counts from 1.
  virtual double adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t) = 0;
  // Adam moments (for checkpoints), or nullptr before the first step; ensure_adam_state() allocates them (zeros).
  virtual float* adam_m() = 0;
  virtual float* adam_v() = 0;
  virtual void ensure_adam_state() = 0;

  // ---- incremental decoding with a KV cache ----
  // Appends Tn new positions (tokens [rows,Tn] or embeds [rows,Tn,C]) to every row of the cache and writes the
  // logits of each row's last new position to logits_out [rows,V] (and its h to hidden_out [rows,C] if given).
  virtual void decode(KVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out,
                      float* hidden_out, const std::atomic<bool>* cancel = nullptr) = 0;
};

}  // namespace gradmm
