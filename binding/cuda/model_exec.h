// The model families and the method's inner loop written once against the backend table (backend.h): with
// cpu_backend() they reproduce binding/src/gpt2.cpp, llama.cpp, gradmatch.cpp and admm.cpp bit for bit; with
// cuda_backend() the weights are uploaded once and activations, the target's factors and the ADMM x-update state
// live on the device, so an inner step reads back only scalars (the losses, once per x_update call) and a
// projection only the chosen token ids (B per position).
//
// Families: GPT-2 (GPT2Exec) and the Llama family (LlamaExec: Llama, Qwen2, Mistral without sliding windows; RMSNorm,
// RoPE with llama3 scaling, SwiGLU, grouped-query attention, optional q/k/v/o/MLP biases, tied or untied lm_head),
// both behind CausalExec, so the matcher (ExecMatcher), the projection (exec_project) and the addon are written
// once. Scope: the training/analysis path (full causal forward, backward to input embeddings and, optionally, to the
// parameters) with logits at the last position of each row or at every position; KV-cached decoding continuing a
// shared prefix, and the projection step built on it.
#pragma once
#include <memory>
#include <vector>

#include "admm.h"
#include "backend.h"
#include "gpt2.h"
#include "gradmatch.h"
#include "llama.h"

namespace gradmm {

// Keys and values of every layer for `rows` sequences decoded in lockstep on a backend, continuing a one-row prefix
// uploaded from a host cache (read by every row, stored once). Layout as KVCache: [L, rows, capacity, kv_channels].
struct ExecKVCache {
  ExecKVCache(const Backend* be, const ModelDims& dims, int rows, int capacity, const KVCache* host_prefix);
  int rows, capacity, length = 0, prefix_len = 0, prefix_capacity = 0;
  BackendBuffer<float> k, v, prefix_k, prefix_v;  // prefix: [L, prefix_len, kv_channels]
};

// One model family on a backend: forward with saved activations, backward, decoding. The lm_head and its loss are
// shared (lm_head.cpp's arithmetic); each family supplies its blocks.
class CausalExec {
 public:
  virtual ~CausalExec() = default;
  const Backend* backend() const { return be_; }
  const ModelDims& dims() const { return dims_; }
  size_t num_params() const { return nparams_; }
  float* params() { return params_.data(); }  // the host model's layout (CausalLM::params())
  float* grads();  // allocated and zeroed on first use
  bool has_grads() const { return grads_.size() == nparams_; }
  void zero_grads();
  // Backend memory: the token embedding matrix [V,C] (the projection's similarities) and the lm_head weight [V,C].
  virtual const float* input_embeddings() const = 0;
  virtual const float* lm_head_weight() const = 0;

  struct Forward {
    const int* tokens = nullptr;    // backend memory [B,T] (ids must be in range: not checked here)
    const float* embeds = nullptr;  // backend memory [B,T,C]
    int B = 0, T = 0;
    bool last_only = true;          // logits at position T−1 of each row (R = B) or at every position (R = B·T)
    const int* rows = nullptr;      // or, if given, at the listed positions b·T + t (backend memory [n_rows],
    int n_rows = 0;                 // ascending; R = n_rows), as a loss mask selects them on the CPU
    const int* targets = nullptr;   // backend memory [R]; with targets, probabilities and losses are computed
    // host memory [R], optional: each row's weight in the loss (the CPU engine's loss_mask values at the selected
    // rows): the loss is Σ w·ce / Σ w and rows of weight 0 are skipped (their targets are not read). Null: 1 each.
    const float* row_weights = nullptr;
    const std::atomic<bool>* cancel = nullptr;  // checked between layers (throws Cancelled), as the CPU engine does
  };
  virtual void forward(const Forward& f) = 0;
  int rows() const { return R_; }
  const float* logits() const { return logits_.data(); }      // [R,V]
  const float* probs() const { return probs_.data(); }        // [R,V]
  const float* hidden() const { return hidden_; }             // [B,T,C] final-norm output
  const float* hidden_rows() const { return h_rows_.data(); } // [R,C] the lm_head's input rows
  double mean_loss();  // Σ w·ce / Σ w over the R rows of the last forward with targets, as a float (waits)
  // The last forward's logits rows as positions b·T + t (lm_head.cpp's rows()), on the host.
  std::vector<int> selected_rows() const;
  int forward_B() const { return B_; }
  int forward_T() const { return T_; }

  struct Backward {
    bool from_loss = false;           // gradient of the mean cross-entropy over the R rows
    const float* d_logits = nullptr;  // [R,V] backend memory, added
    const float* d_hidden = nullptr;  // [B,T,C] backend memory, added at the final-norm output
    bool param_grads = false;         // false: only what the input gradient needs
    float* d_embeds = nullptr;        // [B,T,C] backend memory, += (the forward must have taken embeds)
    const std::atomic<bool>* cancel = nullptr;  // checked between layers
  };
  virtual void backward(const Backward& b) = 0;

  // The family's decode (gpt2.cpp / llama.cpp): Tn new positions of every row of `cache` (tokens: backend memory
  // [rows·Tn], or embeds: backend memory [rows·Tn, C]); logits of each row's last new position to logits_out (backend
  // memory [rows, V]), if given; that position's final hidden state stays in decode_hidden() [rows, C].
  virtual void decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out) = 0;
  const float* decode_hidden() const { return dec_h_.data(); }

 protected:
  // Uploads nparams floats of host parameters.
  CausalExec(const Backend* be, const ModelDims& dims, size_t nparams, const float* host_params);
  // A forward's checks and bookkeeping (tokens copied to tokens_); returns R.
  int begin_forward(const Forward& f);
  // The lm_head on the selected rows of h [B,T,C] and, with targets, the cross-entropy (lm_head.cpp's forward).
  void head_forward(const float* h, const Forward& f);
  // A backward's checks.
  void begin_backward(const Backward& a) const;
  // The gradient entering h [B,T,C] (zeroed first): the lm_head's backward from the loss and/or d_logits, plus
  // d_hidden (lm_head.cpp's backward); dW (+)= the lm_head weight's gradient when not null.
  void head_backward(const Backward& a, float* d_h, float* dW);

  const Backend* be_;
  ModelDims dims_;
  size_t nparams_ = 0;
  BackendBuffer<float> params_, grads_;
  int B_ = 0, T_ = 0, R_ = 0;  // the last forward's shape
  bool last_only_ = true, used_embeds_ = false, have_targets_ = false;
  bool listed_rows_ = false;  // the last forward's logits rows were listed (rows_)
  BackendBuffer<int> tokens_, targets_, rows_;
  BackendBuffer<float> h_rows_, logits_, probs_, losses_, dlogits_, dlosses_, dh_rows_, weights_;
  std::vector<float> weights_host_;  // the last forward's row_weights (empty: none given)
  const float* hidden_ = nullptr;
  BackendBuffer<float> dec_h_;  // the last decode's final hidden states [rows, C]
};

// The executor of a host model's family on `be` (weights uploaded from host.params(); the host model is not
// referenced afterwards), or nullptr for a family without one.
std::unique_ptr<CausalExec> make_exec(const Backend* be, CausalLM& host);

// gpt2.cpp, op for op.
class GPT2Exec : public CausalExec {
 public:
  // Uploads the parameters (host, GPT2's layout: GPT2::params()) to the backend once.
  GPT2Exec(const Backend* be, const GPT2Config& cfg, const float* host_params);
  const GPT2Config& config() const { return cfg_; }
  const float* input_embeddings() const override { return weights(params_.data()).wte; }
  const float* lm_head_weight() const override { return weights(params_.data()).wte; }  // tied
  void forward(const Forward& f) override;
  void backward(const Backward& b) override;
  void decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out) override;

 private:
  using W = GPT2::Weights;  // the same layout as GPT2's parameter block
  W weights(float* base) const { return GPT2::weights_of(cfg_, base); }
  void ensure(int B, int T);

  GPT2Config cfg_;
  int act_B_ = 0, act_T_ = 0;
  BackendBuffer<float> encoded_, ln1_, ln1_mean_, ln1_rstd_, qkv_, atty_, att_, attproj_, res2_, ln2_, ln2_mean_,
      ln2_rstd_, fch_, fch_gelu_, fcproj_, res3_, lnf_, lnf_mean_, lnf_rstd_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_fch_, dec_fchg_, dec_last_;
  BackendBuffer<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_fch_, d_fch_gelu_, d_att_scratch_;
};

// llama.cpp, op for op (llama_ops.h's ops through the table; the RoPE cos/sin tables are computed as llama.cpp does
// and uploaded once, again only when a longer sequence needs more positions).
class LlamaExec : public CausalExec {
 public:
  // Uploads the parameters (host, in `layout`'s order: Llama::params()) to the backend once; `layout` gives the
  // config and the tensor offsets and is not referenced afterwards.
  LlamaExec(const Backend* be, const Llama& layout, const float* host_params);
  const LlamaConfig& config() const { return cfg_; }
  const float* input_embeddings() const override { return w_.embed; }
  const float* lm_head_weight() const override { return w_.lm_head; }  // == input_embeddings() when tied
  void forward(const Forward& f) override;
  void backward(const Backward& b) override;
  void decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out) override;

 private:
  void ensure(int B, int T);
  void ensure_rope(int npos);  // tables cover positions [0, npos)

  LlamaConfig cfg_;
  int C_, NH_, NKV_, HD_, I_, QKV_;  // QKV_ = (NH + 2·NKV)·hd, the packed q|k|v width
  Llama::Weights w_;                 // pointers into params_
  std::vector<float> inv_freq_, cos_host_, sin_host_;
  int rope_npos_ = 0;
  BackendBuffer<float> rope_cos_, rope_sin_;
  int act_B_ = 0, act_T_ = 0;
  BackendBuffer<float> resid_, resid_mid_, ln1_, ln1_rstd_, qkv_, att_, atty_, ln2_, ln2_rstd_, gate_, up_, act_,
      normf_, normf_rstd_, tmp_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_gate_, dec_up_, dec_act_, dec_last_;
  BackendBuffer<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_act_, d_gate_, d_up_, d_att_scratch_;
};

// admm.cpp's project() with the model on the backend: U, the vocabulary norms, the allowed ids and the prefix logits
// (into every row) are uploaded once per call; per position the similarities u_i·e_v, the top-k/LM choice (the
// table's project_choose: admm.cpp choose_tokens, the same ids on every backend) and the decoding step run there,
// so similarities and logits stay on the backend; the chosen ids are the next decode's input in backend memory and
// come back once, all positions together, at the end (no wait per position). The norms are computed on the host as
// the CPU path does (projection_tables).
// host_wte: the host model's input embeddings (CausalLM::input_embeddings(), for the vocabulary norms).
void exec_project(CausalExec& model, const float* host_wte, const float* U, int B, int L, int free_len,
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
  ExecMatcher(CausalExec& model, const ExecTarget& target);
  // f(X) (returned: waits) and, if dX, df/dX (overwritten); per_sample [B] host memory, optional.
  double match_loss(const float* X, int B, int L, int label, float* dX, float* per_sample_host = nullptr);
  // admm.cpp x_update: args.steps Adam steps on X in place; losses_host[s] = f before step s (optional); returns
  // f after the last step. Reads back only the losses, once.
  double x_update(float* X, const float* z, const float* lam, const XUpdateArgs& args, float* adam_m, float* adam_v,
                  int* adam_t, float* losses_host, const std::atomic<bool>* cancel = nullptr);  // cancel: between steps
  // The last evaluation's scalars (backend memory).
  const GmScalars* scalars() const { return scalars_.data(); }

 private:
  // One evaluation; writes scalars_ and (float) f to loss_out (backend memory, optional); per_sample backend memory.
  void evaluate(const float* X, int B, int L, int label, float* dX, float* per_sample, float* loss_out);
  void ensure(int B, int L, int label);

  CausalExec& m_;
  const ExecTarget& t_;
  const Backend* be_;
  int B_ = 0, L_ = 0, label_ = -1;
  BackendBuffer<int> labels_;
  BackendBuffer<float> A_, RA_, RH_, SA_, SH_, NH_, NtA_, gA_, gH_, dlogits_, d_hidden_, g_scratch_, losses_, per_, dX_;
  BackendBuffer<double> noise_dots_, norm_scratch_;
  BackendBuffer<GmScalars> scalars_;
};

}  // namespace gradmm
