// The one engine's model: GPT-2 (GPT2Exec) and the Llama family (LlamaExec: Llama, Qwen2, Mistral without sliding
// windows; RMSNorm, RoPE with llama3 scaling, SwiGLU, grouped-query attention, optional q/k/v/o/MLP biases, tied or
// untied lm_head), Phi (PhiExec) and Gemma 3 (Gemma3Exec) written once against the backend table (backend.h), so the
// same code runs on the CPU and on CUDA. All behind CausalExec, so the matcher, the projection and the x-update
// (matcher.h, batch.h) and the addon are written once too. Parameters, gradients, Adam moments, activations and KV caches are the backend's memory.
//
// Scope: the training/analysis path (causal forward, backward to input embeddings and, optionally, to the
// parameters, AdamW) with logits at the last position of each row, at every position or at listed positions; an
// inference forward keeping one layer's activations; KV-cached decoding continuing a shared prefix.
#pragma once
#include <algorithm>
#include <atomic>
#include <map>
#include <utility>
#include <memory>
#include <vector>

#include "backend.h"
#include "causal_lm.h"
#include "gpt2.h"
#include "llama.h"
#include "gemma.h"
#include "phi.h"

namespace gradmm {

// Keys and values of every layer for `rows` sequences decoded in lockstep, on a backend: [L, rows, capacity, kv].
// A cache may continue a one-row `prefix` cache of the same model (e.g. a prompt computed once): its positions are
// read in place by every row (never copied), up to the prefix's length when the cache is used.
struct ExecKVCache {
  ExecKVCache(const Backend* be, const ModelDims& dims, int rows, int capacity, const ExecKVCache* prefix = nullptr);
  const Backend* be;
  int rows, capacity, length = 0;  // length = positions stored per row (excluding the prefix)
  int num_layers, channels;        // channels = kv_channels
  const ExecKVCache* prefix;
  int prefix_len() const { return prefix ? prefix->length : 0; }
  BackendBuffer<float> k, v;
  float* k_layer(int l) { return k.data() + (size_t)l * rows * capacity * channels; }
  float* v_layer(int l) { return v.data() + (size_t)l * rows * capacity * channels; }
  const float* k_layer(int l) const { return k.data() + (size_t)l * rows * capacity * channels; }
  const float* v_layer(int l) const { return v.data() + (size_t)l * rows * capacity * channels; }
};

// One model family on a backend: forward with saved activations, backward, decoding, AdamW. The lm_head and its loss
// are shared; each family supplies its blocks.
// Rotary cos/sin tables [positions, inv_freq.size()] on the host and on a backend, for positions [0, positions()).
// ensure() grows them geometrically (decoding adds a few positions at a time), never past max_positions; each entry
// depends on its position alone, so the old ones are kept. scale multiplies cos and sin (LongRoPE's attention factor).
class RopeCache {
 public:
  void ensure(const Backend* be, int npos, int max_positions, const std::vector<float>& inv_freq, float scale = 1.f) {
    if (npos <= npos_) return;
    const int n = std::min(max_positions, std::max(npos, std::min(max_positions, 2 * npos_)));
    const size_t half = inv_freq.size();
    cos_host_.resize((size_t)n * half);
    sin_host_.resize((size_t)n * half);
    rope_tables(cos_host_.data() + (size_t)npos_ * half, sin_host_.data() + (size_t)npos_ * half, inv_freq, npos_, n - npos_,
                scale);
    cos_.reset(be, cos_host_.size());
    sin_.reset(be, sin_host_.size());
    be->to_device(cos_.data(), cos_host_.data(), sizeof(float) * cos_host_.size());
    be->to_device(sin_.data(), sin_host_.data(), sizeof(float) * sin_host_.size());
    npos_ = n;
  }
  const float* cos() const { return cos_.data(); }
  const float* sin() const { return sin_.data(); }
  int positions() const { return npos_; }

 private:
  std::vector<float> cos_host_, sin_host_;
  BackendBuffer<float> cos_, sin_;
  int npos_ = 0;
};

class CausalExec {
 public:
  virtual ~CausalExec() = default;
  const Backend* backend() const { return be_; }
  const ModelDims& dims() const { return dims_; }
  virtual const ModelLayout& layout() const = 0;
  size_t num_params() const { return nparams_; }
  float* params() { return params_.data(); }  // backend memory in the layout's order (zeros after construction)
  float* grads();  // allocated and zeroed on first use
  bool has_grads() const { return grads_.size() == nparams_; }
  void zero_grads();
  // AdamW moments (allocated and zeroed on first use)
  float* adam_m();
  float* adam_v();
  bool has_adam() const { return adam_m_.size() == nparams_; }
  // AdamW over all parameters with global grad-norm clipping (max_norm <= 0: none; the clipped gradients are written
  // back). Returns the norm before clipping. t counts from 1.
  double adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t);
  // ---- precision ----
  // Float32: every product in f32 (the default; the engine's exact results). BF16: the weight matrices of the big
  // products (attention and MLP projections, the lm_head / tied embedding for the logits, and their input-gradient
  // products in the backward) read from bf16 copies packed for the kernel (gemm_bf16.h gemm_bf16_pack: f32
  // accumulation, activations rounded to bf16); everything else (norms, attention scores, softmax, the
  // weight-gradient products, AdamW, the projection's similarities, the embedding lookup) stays f32 on the f32
  // parameters, which remain the master copy. Each matrix is packed on first use in each orientation a product needs
  // (the forward's; the input gradient's transposed one only once a backward runs): about 2 bytes per weight
  // parameter for inference and decoding, 4 with backward passes, beside the 4 of the f32 master. The copies are
  // dropped and remade on next use after any change of the parameters (params_written(), adamw_step). Throws
  // std::invalid_argument where the backend has no bf16 products (CUDA).
  enum class Precision { Float32, BF16 };
  void set_precision(Precision p);
  Precision precision() const { return precision_; }
  void params_written() { bf16_stale_ = true; }  // the f32 parameters changed: the bf16 copy is remade on next use
  size_t bf16_copy_bytes() const;
  // Backend memory: the token embedding matrix [V,C] (the projection's similarities) and the lm_head weight [V,C].
  virtual const float* input_embeddings() const = 0;
  virtual const float* lm_head_weight() const = 0;
  // The lm_head bias [V] (backend memory), or nullptr: logits = h·Wᵀ + b (Phi has one; GPT-2 and Llama do not).
  virtual const float* lm_head_bias() const { return nullptr; }
  // What a token lookup multiplies the embedding rows by (Gemma: sqrt(hidden_size); 1 elsewhere). Input embeddings
  // given to forward / decode / the matcher are used as given, so "the input embedding of token t" is
  // input_embedding_scale() · input_embeddings()[t] wherever the method builds inputs from tokens.
  virtual float input_embedding_scale() const { return 1.f; }
  // out[i,:] = input_embedding_scale() · input_embeddings()[tokens[i]] for i < n (backend memory)
  void embed_tokens(float* out, const int* tokens, int n) const;

  enum class Rows { Last, All, Listed };
  struct Forward {
    const int* tokens = nullptr;    // backend memory [B,T] (ids must be in range: not checked here)
    const float* embeds = nullptr;  // backend memory [B,T,C]
    int B = 0, T = 0;
    Rows rows = Rows::Last;         // logits at position T−1 of each row (R = B), at every position (R = B·T), or
    const int* row_ids = nullptr;   // at the listed positions b·T + t (backend memory [n_rows], ascending; R = n_rows,
    int n_rows = 0;                 // which may be 0: then no logits)
    const int* targets = nullptr;   // backend memory [R]; with targets, probabilities and losses are computed
    // host memory [R], optional: each row's weight in the loss: the loss is Σ w·ce / Σ w and rows of weight 0 are
    // skipped (their targets are not read). Null: 1 each.
    const float* row_weights = nullptr;
    // false: an inference forward that keeps one layer's activations at a time (the same results bit for bit; a
    // backward after it throws)
    bool keep_activations = true;
    const std::atomic<bool>* cancel = nullptr;  // checked between layers (throws Cancelled)
  };
  void forward(const Forward& f);
  int rows() const { return R_; }
  const float* logits() const { return logits_.data(); }      // [R,V]
  const float* probs() const { return probs_.data(); }        // [R,V]
  const float* hidden() const { return hidden_; }             // [B,T,C] final-norm output
  const float* hidden_rows() const { return h_rows_.data(); } // [R,C] the lm_head's input rows
  double mean_loss();  // Σ w·ce / Σ w over the R rows of the last forward with targets, as a float (waits); NaN without
  // The last forward's logits rows as positions b·T + t, on the host.
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
  void backward(const Backward& b);

  // Tn new positions of every row of `cache` (tokens: backend memory [rows·Tn], or embeds: backend memory
  // [rows·Tn, C]); logits of each row's last new position to logits_out (backend memory [rows, V]), if given; that
  // position's final hidden state stays in decode_hidden() [rows, C].
  void decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out,
              const std::atomic<bool>* cancel = nullptr);
  const float* decode_hidden() const { return dec_h_.data(); }

 protected:
  CausalExec(const Backend* be, const ModelDims& dims, size_t nparams);
  // The family's trunk: embeddings, blocks and the final norm of the forward into hidden_ [B,T,C].
  virtual void trunk_forward(const Forward& f) = 0;
  // The trunk's backward from the gradient at h (d_h [B,T,C]); g: the gradient block, or nullptr.
  virtual void trunk_backward(const Backward& b, float* d_h, float* g) = 0;
  // The trunk of a decoding step, leaving each row's last new position's final hidden state in dec_h_.
  virtual void trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                            const std::atomic<bool>* cancel) = 0;

  // The big products on the model's weights (W: a pointer into params_), in f32 or through the bf16 copy. f32: exactly
  // the backend op of the same name.
  // nn.Linear layout (llama_ops.h): W [OC, C]
  void linear_fwd(float* out, int ldo, const float* inp, int ldi, const float* W, const float* bias, int N, int C,
                  int OC);
  void linear_bwd(float* dinp, int lddi, float* dW, float* db, const float* dout, int ldd, const float* inp, int ldi,
                  const float* W, int N, int C, int OC);
  // GPT-2's Conv1D layout (ops.h): W [C, OC]
  void matmul_fwd(float* out, const float* inp, const float* W, const float* bias, int N, int C, int OC);
  void matmul_bwd(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N, int C,
                  int OC);
  // C (+)= op(A) · op(W), W being a weight matrix (the lm_head)
  void weight_gemm(bool transA, bool transW, int M, int N, int K, const float* A, int lda, const float* W, int ldw,
                   float* C, int ldc, bool accumulate);
  // logits[R,V] = h[R,C] · lm_headᵀ (+ its bias): an lm_head with a bias (Phi) takes the float32 linear op; without
  // one the product goes through weight_gemm (bf16 weights when the model's precision is bf16)
  void lm_head_logits(float* logits, const float* h, int R);
  bool bf16() const { return precision_ == Precision::BF16; }
  // op(W) [K,N] packed in bf16 (transW: W stored N×K with row stride ldw), made on first use
  const uint32_t* packed(const float* W, bool transW, int ldw, int K, int N);
  void refresh_bf16();  // drops stale packed copies (called at the start of forward, backward, decode)

  const Backend* be_;
  ModelDims dims_;
  size_t nparams_ = 0;
  Precision precision_ = Precision::Float32;
  bool bf16_stale_ = true;
  std::map<std::pair<const float*, bool>, BackendBuffer<uint32_t>> packed_;  // (W, transW) → packed op(W)
  BackendBuffer<float> params_, grads_, adam_m_, adam_v_;
  int B_ = 0, T_ = 0, R_ = 0;  // the last forward's shape
  Rows rows_mode_ = Rows::Last;
  bool used_embeds_ = false, have_targets_ = false, kept_ = false;
  BackendBuffer<int> tokens_, targets_, row_ids_;
  BackendBuffer<float> h_rows_, logits_, probs_, losses_, dlogits_, dlosses_, dh_rows_, weights_, d_h_;
  std::vector<float> weights_host_;  // the last forward's row_weights (empty: none given)
  const float* hidden_ = nullptr;
  BackendBuffer<float> dec_h_;  // the last decode's final hidden states [rows, C]

 private:
  void head_forward(const Forward& f);
  void head_backward(const Backward& a, float* d_h, float* dW, float* db);
};

// GPT-2 through the table.
class GPT2Exec : public CausalExec {
 public:
  GPT2Exec(const Backend* be, const GPT2Config& cfg);
  const ModelLayout& layout() const override { return layout_; }
  const GPT2Config& config() const { return cfg_; }
  const float* input_embeddings() const override { return w_.wte; }
  const float* lm_head_weight() const override { return w_.wte; }  // tied

 private:
  void trunk_forward(const Forward& f) override;
  void trunk_backward(const Backward& b, float* d_h, float* g) override;
  void trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                    const std::atomic<bool>* cancel) override;
  void ensure(int B, int T, bool keep);

  GPT2 layout_;
  GPT2Config cfg_;
  GPT2::Weights w_;  // pointers into params_
  int act_B_ = 0, act_T_ = 0, act_layers_ = 0;
  BackendBuffer<float> encoded_, ln1_, ln1_mean_, ln1_rstd_, qkv_, atty_, att_, attproj_, res2_, ln2_, ln2_mean_,
      ln2_rstd_, fch_, fch_gelu_, fcproj_, res3_, lnf_, lnf_mean_, lnf_rstd_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_fch_, dec_fchg_, dec_last_;
  BackendBuffer<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_fch_, d_fch_gelu_, d_att_scratch_;
};

// The Llama family through the table (the RoPE cos/sin tables are computed on the host and uploaded once, again
// only when a longer sequence needs more positions).
class LlamaExec : public CausalExec {
 public:
  LlamaExec(const Backend* be, const LlamaConfig& cfg);
  const ModelLayout& layout() const override { return layout_; }
  const LlamaConfig& config() const { return cfg_; }
  const float* input_embeddings() const override { return w_.embed; }
  const float* lm_head_weight() const override { return w_.lm_head; }  // == input_embeddings() when tied

 private:
  void trunk_forward(const Forward& f) override;
  void trunk_backward(const Backward& b, float* d_h, float* g) override;
  void trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                    const std::atomic<bool>* cancel) override;
  void ensure(int B, int T, bool keep);
  void ensure_rope(int npos);  // tables cover positions [0, npos)

  Llama layout_;
  LlamaConfig cfg_;
  int C_, NH_, NKV_, HD_, I_, QKV_;  // QKV_ = (NH + 2·NKV)·hd, the packed q|k|v width
  Llama::Weights w_;                 // pointers into params_
  RopeCache rope_;
  int act_B_ = 0, act_T_ = 0, act_layers_ = 0;
  BackendBuffer<float> resid_, resid_mid_, ln1_, ln1_rstd_, qkv_, att_, atty_, ln2_, ln2_rstd_, gate_, up_, act_,
      normf_, normf_rstd_, tmp_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_gate_, dec_up_, dec_act_, dec_last_;
  BackendBuffer<float> d_res_, d_tmp_, d_qkv_, d_atty_, d_act_, d_gate_, d_up_, d_att_scratch_;
};

// Phi (phi.h) through the table: a parallel attention/MLP block behind one LayerNorm, partial rotary embeddings,
// GeLU-tanh MLP, an lm_head with a bias. Only existing table ops are used (partial rotary = the rope op on the first
// rotary_dim channels of each head), so every backend that runs Llama runs Phi.
class PhiExec : public CausalExec {
 public:
  PhiExec(const Backend* be, const PhiConfig& cfg);
  const ModelLayout& layout() const override { return layout_; }
  const PhiConfig& config() const { return cfg_; }
  const float* input_embeddings() const override { return w_.embed; }
  const float* lm_head_weight() const override { return w_.lm_head; }
  const float* lm_head_bias() const override { return w_.lm_head_bias; }

 private:
  void trunk_forward(const Forward& f) override;
  void trunk_backward(const Backward& b, float* d_h, float* g) override;
  void trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                    const std::atomic<bool>* cancel) override;
  void ensure(int B, int T, bool keep);
  void ensure_rope(int npos);
  // rotary embeddings (forward, or the in-place backward) on the q and k heads of N packed qkv rows
  void rope(float* qkv, int N, int T, int pos0, bool backward);

  Phi layout_;
  PhiConfig cfg_;
  int C_, NH_, NKV_, HD_, RD_, I_, QKV_;
  Phi::Weights w_;
  RopeCache rope_;
  int act_B_ = 0, act_T_ = 0, act_layers_ = 0;
  BackendBuffer<float> resid_, ln_, ln_mean_, ln_rstd_, qkv_, att_, atty_, fc1_, fc1_gelu_, normf_, normf_mean_,
      normf_rstd_, tmp_, tmp2_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_proj2_, dec_fc1_, dec_fc1g_, dec_last_;
  BackendBuffer<float> d_res_, d_ln_, d_qkv_, d_atty_, d_fc1_, d_fc1_gelu_, d_att_scratch_;
};

// Gemma 3 (gemma.h) through the table: sandwich norms (four (1 + w) RMSNorms per block), q/k RMSNorms per head before
// the rotary embeddings, GeGLU MLP, alternating sliding-window and full attention with a rotary table for each kind,
// token embeddings scaled by sqrt(hidden_size).
class Gemma3Exec : public CausalExec {
 public:
  Gemma3Exec(const Backend* be, const Gemma3Config& cfg);
  const ModelLayout& layout() const override { return layout_; }
  const Gemma3Config& config() const { return cfg_; }
  const float* input_embeddings() const override { return w_.embed; }
  const float* lm_head_weight() const override { return w_.lm_head; }
  float input_embedding_scale() const override { return layout_.embed_scale(); }

 private:
  void trunk_forward(const Forward& f) override;
  void trunk_backward(const Backward& b, float* d_h, float* g) override;
  void trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                    const std::atomic<bool>* cancel) override;
  void ensure(int B, int T, bool keep);
  void ensure_rope(int npos);
  // the (1 + w) RMSNorm over whole rows of C channels
  void norm_fwd(float* out, float* rstd, const float* x, const float* w, int N);
  void norm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int N);
  // the q and k norms of layer l, per head, on N packed qkv rows (in: the projections; out may alias in); rstd
  // [N·(NH + NKV)]: the q heads' then the k heads'
  void qk_norm_fwd(float* out, float* rstd, const float* in, int l, int N);
  void qk_norm_bwd(float* din, float* dq_norm, float* dk_norm, const float* dout, const float* in, const float* rstd,
                   int l, int N);
  // rotary embeddings of layer l's kind (forward, or the in-place backward) on the q and k heads of N qkv rows
  void rope(float* qkv, int l, int N, int T, int pos0, bool backward);
  int window(int l) const { return cfg_.sliding[l] ? cfg_.sliding_window : 0; }

  Gemma3 layout_;
  Gemma3Config cfg_;
  int C_, NH_, NKV_, HD_, I_, QKV_;
  Gemma3::Weights w_;
  RopeCache rope_[2];  // [0] full layers, [1] sliding layers
  int act_B_ = 0, act_T_ = 0, act_layers_ = 0;
  // per layer: input norm (ln1), projections before / after the q/k norms (qkv_pre, qkv), attention, o_proj output
  // (attn_out, the post-attention norm's input), mid residual, pre-feedforward norm (ln2), MLP, down output (mlp_out)
  BackendBuffer<float> resid_, ln1_, ln1_rstd_, qkv_pre_, qk_rstd_, qkv_, att_, atty_, attn_out_, pa_rstd_, mid_,
      ln2_, ln2_rstd_, gate_, up_, act_, mlp_out_, pf_rstd_, normf_, normf_rstd_, tmp_;
  BackendBuffer<float> dec_x_, dec_ln_, dec_qkv_, dec_atty_, dec_proj_, dec_gate_, dec_up_, dec_act_, dec_last_;
  BackendBuffer<float> d_res_, d_tmp_, d_out_, d_qkv_, d_qkv_pre_, d_atty_, d_act_, d_gate_, d_up_, d_att_scratch_;
};

}  // namespace gradmm
