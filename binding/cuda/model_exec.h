// GPT-2 and the method's inner loop written once against the backend table (backend.h): with cpu_backend() they
// reproduce binding/src/gpt2.cpp, gradmatch.cpp and admm.cpp; with cuda_backend() the weights are uploaded once
// and activations, the target's factors and the ADMM x-update state live on the device, so an inner step reads
// back only scalars (the losses, once per x_update call).
//
// Scope: the training/analysis path (full causal forward, backward to input embeddings and, optionally, to the
// parameters) with logits at the last position of each row or at every position; KV-cached decoding continuing a
// shared prefix, and the projection step built on it. Not here yet: the Llama family.
#pragma once
#include <vector>

#include "admm.h"
#include "backend.h"
#include "gpt2.h"
#include "gradmatch.h"

namespace gradmm {

// Keys and values of every layer for `rows` sequences decoded in lockstep on a backend, continuing a one-row prefix
// uploaded from a host cache (read by every row, stored once). Layout as KVCache: [L, rows, capacity, C].
struct ExecKVCache {
  ExecKVCache(const Backend* be, const GPT2Config& cfg, int rows, int capacity, const KVCache* host_prefix);
  int rows, capacity, length = 0, prefix_len = 0, prefix_capacity = 0;
  BackendBuffer<float> k, v, prefix_k, prefix_v;
};

class GPT2Exec {
 public:
  // Uploads the parameters (host, GPT2's layout: GPT2::params()) to the backend once.
  GPT2Exec(const Backend* be, const GPT2Config& cfg, const float* host_params);
  const Backend* backend() const { return be_; }
  const GPT2Config& config() const { return cfg_; }
  size_t num_params() const { return nparams_; }
  float* params() { return params_.data(); }
  float* grads();  // allocated and zeroed on first use
  void zero_grads();

  struct Forward {
    const int* tokens = nullptr;    // backend memory [B,T] (ids must be in range: not checked here)
    const float* embeds = nullptr;  // backend memory [B,T,C]
    int B = 0, T = 0;
    bool last_only = true;          // logits at position T−1 of each row (R = B) or at every position (R = B·T)
    const int* targets = nullptr;   // backend memory [R]; with targets, probabilities and losses are computed
  };
  void forward(const Forward& f);
  int rows() const { return R_; }
  const float* logits() const { return logits_.data(); }      // [R,V]
  const float* probs() const { return probs_.data(); }        // [R,V]
  const float* hidden() const { return lnf_.data(); }         // [B,T,C] final-norm output
  const float* hidden_rows() const { return h_rows_.data(); } // [R,C] the lm_head's input rows
  double mean_loss();  // mean cross-entropy over the R rows of the last forward with targets (waits)

  struct Backward {
    bool from_loss = false;           // gradient of the mean cross-entropy over the R rows
    const float* d_logits = nullptr;  // [R,V] backend memory, added
    const float* d_hidden = nullptr;  // [B,T,C] backend memory, added at the final-norm output
    bool param_grads = false;         // false: only what the input gradient needs
    float* d_embeds = nullptr;        // [B,T,C] backend memory, += (the forward must have taken embeds)
  };
  void backward(const Backward& b);

  // gpt2.cpp's decode: Tn new positions of every row of `cache` (tokens: backend memory [rows·Tn]); logits of each
  // row's last new position to logits_out (backend memory [rows, V]), if given.
  void decode(ExecKVCache& cache, const int* tokens, int Tn, float* logits_out);

 private:
  using W = GPT2::Weights;  // the same layout as GPT2's parameter block
  W weights(float* base) const;
  void ensure(int B, int T, int R);

  const Backend* be_;
  GPT2Config cfg_;
  size_t nparams_ = 0;
  BackendBuffer<float> params_, grads_;
  int B_ = 0, T_ = 0, R_ = 0;
  bool last_only_ = true, used_embeds_ = false, have_targets_ = false;
  BackendBuffer<int> tokens_, targets_;
  BackendBuffer<float> encoded_, ln1_, ln1_mean_, ln1_rstd_, qkv_, atty_, att_, attproj_, res2_, ln2_, ln2_mean_,
      ln2_rstd_, fch_, fch_gelu_, fcproj_, res3_, lnf_, lnf_mean_, lnf_rstd_;
  BackendBuffer<float> h_rows_, logits_, probs_, losses_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_fch_, dec_fchg_, dec_last_, dec_h_;
  BackendBuffer<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_fch_, d_fch_gelu_, d_att_scratch_, dlogits_, dlosses_,
      dh_rows_;
};

// admm.cpp's project() with the model on the backend: the similarities u_i·e_v and each decoding step run there; the
// top-k choice runs on the host (the same code as the CPU path), so B·V similarities and logits cross per position.
void exec_project(GPT2Exec& model, const float* host_wte, const float* U, int B, int L, int free_len,
                  const uint8_t* allowed, int topk, const KVCache& prefix, const float* prefix_logits, int* out_tokens,
                  const std::atomic<bool>* cancel = nullptr);

// A MatchTarget (gradmatch.h) uploaded to a backend.
struct ExecTarget {
  ExecTarget(const Backend* be, const MatchTarget& t);
  int n, V, C;
  double norm;
  BackendBuffer<float> A, H, noise;  // noise empty (size 0) when the target has none
};

// match_loss and x_update of gradmatch.cpp / admm.cpp on the model's backend. X, dX, z, lam, adam_m, adam_v are
// backend memory [B,L,C]; host results are noted per call.
class ExecMatcher {
 public:
  ExecMatcher(GPT2Exec& model, const ExecTarget& target);
  // f(X) (returned: waits) and, if dX, df/dX (overwritten); per_sample [B] host memory, optional.
  double match_loss(const float* X, int B, int L, int label, float* dX, float* per_sample_host = nullptr);
  // admm.cpp x_update: args.steps Adam steps on X in place; losses_host[s] = f before step s (optional); returns
  // f after the last step. Reads back only the losses, once.
  double x_update(float* X, const float* z, const float* lam, const XUpdateArgs& args, float* adam_m, float* adam_v,
                  int* adam_t, float* losses_host);
  // The last evaluation's scalars (backend memory).
  const GmScalars* scalars() const { return scalars_.data(); }

 private:
  // One evaluation; writes scalars_ and (float) f to loss_out (backend memory, optional); per_sample backend memory.
  void evaluate(const float* X, int B, int L, int label, float* dX, float* per_sample, float* loss_out);
  void ensure(int B, int L, int label);

  GPT2Exec& m_;
  const ExecTarget& t_;
  const Backend* be_;
  int B_ = 0, L_ = 0, label_ = -1;
  BackendBuffer<int> labels_;
  BackendBuffer<float> A_, RA_, RH_, SA_, SH_, NH_, NtA_, gA_, gH_, dlogits_, d_hidden_, g_scratch_, losses_, per_, dX_;
  BackendBuffer<double> noise_dots_, norm_scratch_;
  BackendBuffer<GmScalars> scalars_;
};

}  // namespace gradmm
