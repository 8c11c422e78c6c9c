// What every model family shares: sizes, the parameter table, cancellation, and the host-side forward / backward
// arguments.
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

// A model family's parameter layout: sizes, and the named tensors of one contiguous float block, shaped as in
// Hugging Face checkpoints (GPT-2 in gpt2.h, the Llama family in llama.h). The computation is the engine's
// (binding/engine/model.h), written once over the backend table.
class ModelLayout {
 public:
  virtual ~ModelLayout() = default;
  virtual const ModelDims& dims() const = 0;
  virtual const char* architecture() const = 0;
  virtual const std::vector<ParamInfo>& param_table() const = 0;
  virtual size_t num_params() const = 0;
};

// A forward as a caller gives it (host memory): B rows of T positions, token ids [B,T] or input embeddings [B,T,C].
// Logits are computed only for the rows that need them: rows with loss_mask != 0 (all rows when loss_mask is null)
// or every position when all_logits; the loss is the mean cross-entropy Σ mask·ce / Σ mask (NaN without targets).
struct ForwardArgs {
  const int* tokens = nullptr;
  const float* embeds = nullptr;
  int B = 0, T = 0;
  const int* targets = nullptr;     // [B,T]
  const float* loss_mask = nullptr; // [B,T] weights, nullptr = all positions count
  bool all_logits = false;
  // false: an inference forward that keeps one layer's activations at a time (a fraction of the memory for long
  // or many rows; the same results bit for bit); a backward after it throws.
  bool keep_activations = true;
};

// A backward from the last forward (host memory). The gradient entering the lm_head is the cross-entropy's
// (from_loss) and/or d_logits [selected rows, V]; d_hidden [B,T,C] is added to the gradient at the final-norm output.
// param_grads = false computes only what the input gradient needs. d_embeds [B,T,C] receives (+=) the
// input-embedding gradient when the forward took embeds.
struct BackwardArgs {
  bool from_loss = true;
  const float* d_logits = nullptr;
  const float* d_hidden = nullptr;
  bool param_grads = true;
  float* d_embeds = nullptr;
};

}  // namespace gradmm
