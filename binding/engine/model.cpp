// CausalExec: parameters, optimizer state, the lm_head and its loss, decoding's bookkeeping; shared by the families.
#include "model.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace gradmm {

ExecKVCache::ExecKVCache(const Backend* be_, const ModelDims& dims, int rows_, int capacity_, const ExecKVCache* prefix_)
    : be(be_), rows(rows_), capacity(capacity_), num_layers(dims.num_layers), channels(dims.kv_channels),
      prefix(prefix_) {
  if (rows <= 0 || capacity <= 0) throw std::invalid_argument("KVCache: rows and capacity must be positive");
  if (prefix && prefix->rows != 1) throw std::invalid_argument("KVCache: a shared prefix must be a one-row cache");
  if (prefix && (prefix->num_layers != num_layers || prefix->channels != channels || prefix->be != be))
    throw std::invalid_argument("KVCache: prefix belongs to a different model shape");
  const size_t n = (size_t)num_layers * rows * capacity * channels;
  k.reset(be, n);
  v.reset(be, n);
  k.zero();
  v.zero();
}

CausalExec::CausalExec(const Backend* be, const ModelDims& dims, size_t nparams)
    : be_(be), dims_(dims), nparams_(nparams) {
  if (!be) throw std::invalid_argument("model: no backend");
  params_.reset(be_, nparams_);
  params_.zero();
}

float* CausalExec::grads() {
  if (grads_.size() != nparams_) {
    grads_.reset(be_, nparams_);
    grads_.zero();
  }
  return grads_.data();
}
void CausalExec::zero_grads() { grads_.zero(); }
float* CausalExec::adam_m() {
  if (!has_adam()) {
    adam_m_.reset(be_, nparams_);
    adam_v_.reset(be_, nparams_);
    adam_m_.zero();
    adam_v_.zero();
  }
  return adam_m_.data();
}
float* CausalExec::adam_v() {
  adam_m();
  return adam_v_.data();
}

void CausalExec::set_precision(Precision p) {
  if (p == Precision::BF16 && (!be_->gemm_bf16_packed || !be_->bf16_pack || !be_->bf16_packed_size || !be_->add_bias_rows))
    throw std::invalid_argument(std::string("precision bf16: the ") + be_->name + " backend has no bf16 products");
  precision_ = p;
  packed_.clear();  // float32: the copies' memory back
  bf16_stale_ = false;
}

size_t CausalExec::bf16_copy_bytes() const {
  size_t n = 0;
  for (const auto& kv : packed_) n += kv.second.size() * sizeof(uint32_t);
  return n;
}

void CausalExec::refresh_bf16() {
  if (!bf16_stale_) return;
  packed_.clear();
  bf16_stale_ = false;
}

const uint32_t* CausalExec::packed(const float* W, bool transW, int ldw, int K, int N) {
  BackendBuffer<uint32_t>& buf = packed_[{W, transW}];
  if (!buf.data()) {
    buf.reset(be_, be_->bf16_packed_size(K, N));
    be_->bf16_pack(transW, W, ldw, K, N, buf.data());
  }
  return buf.data();
}

void CausalExec::linear_fwd(float* out, int ldo, const float* inp, int ldi, const float* W, const float* bias, int N,
                            int C, int OC) {
  if (!bf16()) return be_->linear_forward(out, ldo, inp, ldi, W, bias, N, C, OC);
  be_->gemm_bf16_packed(false, N, OC, C, inp, ldi, packed(W, true, C, C, OC), out, ldo, false);  // out = inp · Wᵀ
  if (bias) be_->add_bias_rows(out, ldo, bias, N, OC);
}
void CausalExec::linear_bwd(float* dinp, int lddi, float* dW, float* db, const float* dout, int ldd, const float* inp,
                            int ldi, const float* W, int N, int C, int OC) {
  if (!bf16()) return be_->linear_backward(dinp, lddi, dW, db, dout, ldd, inp, ldi, W, N, C, OC);
  if (dinp) be_->gemm_bf16_packed(false, N, C, OC, dout, ldd, packed(W, false, C, OC, C), dinp, lddi, true);  // += dout · W
  if (dW || db) be_->linear_backward(nullptr, lddi, dW, db, dout, ldd, inp, ldi, W, N, C, OC);  // f32
}
void CausalExec::matmul_fwd(float* out, const float* inp, const float* W, const float* bias, int N, int C, int OC) {
  if (!bf16()) return be_->matmul_forward(out, inp, W, bias, N, C, OC);
  be_->gemm_bf16_packed(false, N, OC, C, inp, C, packed(W, false, OC, C, OC), out, OC, false);  // out = inp · W
  if (bias) be_->add_bias_rows(out, OC, bias, N, OC);
}
void CausalExec::matmul_bwd(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W,
                            int N, int C, int OC) {
  if (!bf16()) return be_->matmul_backward(dinp, dW, db, dout, inp, W, N, C, OC);
  if (dinp) be_->gemm_bf16_packed(false, N, C, OC, dout, OC, packed(W, true, OC, OC, C), dinp, C, true);  // += dout · Wᵀ
  if (dW || db) be_->matmul_backward(nullptr, dW, db, dout, inp, W, N, C, OC);  // f32
}
void CausalExec::weight_gemm(bool transA, bool transW, int M, int N, int K, const float* A, int lda, const float* W,
                             int ldw, float* C, int ldc, bool accumulate) {
  if (!bf16()) return be_->gemm(transA, transW, M, N, K, A, lda, W, ldw, C, ldc, accumulate);
  be_->gemm_bf16_packed(transA, M, N, K, A, lda, packed(W, transW, ldw, K, N), C, ldc, accumulate);
}

double CausalExec::adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t) {
  float* g = grads();
  float* m = adam_m();
  bf16_stale_ = true;
  return be_->clip_adamw(params_.data(), g, m, adam_v_.data(), (long)nparams_, lr, beta1, beta2, eps, weight_decay,
                         max_norm, t);
}

void CausalExec::forward(const Forward& f) {
  if ((f.tokens == nullptr) == (f.embeds == nullptr))
    throw std::invalid_argument("forward: give exactly one of tokens or embeds");
  if (f.B <= 0 || f.T <= 0) throw std::invalid_argument("forward: empty batch");
  if (f.T > dims_.max_seq_len)
    throw std::invalid_argument("sequence length exceeds the model's max_seq_len (" + std::to_string(f.T) + " > " +
                                std::to_string(dims_.max_seq_len) + ")");
  const long BT = (long)f.B * f.T;
  if (f.rows == Rows::Listed && (f.n_rows < 0 || f.n_rows > BT || (f.n_rows > 0 && !f.row_ids)))
    throw std::invalid_argument("forward: bad listed rows");
  const int R = f.rows == Rows::Listed ? f.n_rows : f.rows == Rows::Last ? f.B : (int)BT;
  B_ = f.B;
  T_ = f.T;
  R_ = R;
  rows_mode_ = f.rows;
  used_embeds_ = f.embeds != nullptr;
  kept_ = f.keep_activations;
  have_targets_ = false;
  if (f.rows == Rows::Listed && R > 0) {
    row_ids_.ensure(be_, R);
    be_->copy(row_ids_.data(), f.row_ids, sizeof(int) * R);
  }
  if (f.tokens) {
    tokens_.ensure(be_, BT);
    be_->copy(tokens_.data(), f.tokens, sizeof(int) * BT);
  }
  if (f.row_weights) weights_host_.assign(f.row_weights, f.row_weights + R);
  else weights_host_.clear();
  refresh_bf16();
  trunk_forward(f);
  if (R > 0) head_forward(f);
}

void CausalExec::head_forward(const Forward& f) {
  const Backend& be = *be_;
  const int R = R_, C = dims_.channels, V = dims_.vocab_size;
  h_rows_.ensure(be_, (size_t)R * C);
  logits_.ensure(be_, (size_t)R * V);
  // lm_head on the selected rows only
  if (rows_mode_ == Rows::Listed) be.gather_rows_at(h_rows_.data(), hidden_, row_ids_.data(), R, C);
  else be.gather_rows(h_rows_.data(), hidden_, R, C, rows_mode_ == Rows::Last ? f.T : 1, rows_mode_ == Rows::Last ? f.T - 1 : 0);
  lm_head_logits(logits_.data(), h_rows_.data(), R);
  have_targets_ = f.targets != nullptr;
  if (f.targets) {
    probs_.ensure(be_, (size_t)R * V);
    losses_.ensure(be_, R);
    targets_.ensure(be_, R);
    be.copy(targets_.data(), f.targets, sizeof(int) * R);
    if (!weights_host_.empty()) {
      weights_.ensure(be_, R);
      be.to_device(weights_.data(), weights_host_.data(), sizeof(float) * R);
    }
    be.softmax_crossentropy_forward(losses_.data(), probs_.data(), logits_.data(), targets_.data(),
                                    weights_host_.empty() ? nullptr : weights_.data(), R, V);
  }
}

std::vector<int> CausalExec::selected_rows() const {
  std::vector<int> rows(R_);
  if (rows_mode_ == Rows::Listed) {
    if (R_ > 0) be_->to_host(rows.data(), row_ids_.data(), sizeof(int) * R_);
  } else {
    for (int r = 0; r < R_; ++r) rows[r] = rows_mode_ == Rows::Last ? r * T_ + T_ - 1 : r;
  }
  return rows;
}

double CausalExec::mean_loss() {
  if (!have_targets_) return NAN;
  std::vector<float> l(R_);
  be_->to_host(l.data(), losses_.data(), sizeof(float) * R_);
  double s = 0, wsum = 0;
  for (int r = 0; r < R_; ++r) {
    const float w = weights_host_.empty() ? 1.f : weights_host_[r];
    s += (double)w * l[r];
    wsum += w;
  }
  return wsum > 0 ? (float)(s / wsum) : NAN;
}

void CausalExec::backward(const Backward& a) {
  if (B_ == 0) throw std::logic_error("backward called before forward");
  if (!kept_) throw std::logic_error("backward after a forward that kept no activations (keepActivations: false)");
  if (a.from_loss && !have_targets_) throw std::logic_error("backward from loss needs a forward with targets");
  if (a.d_embeds && !used_embeds_) throw std::logic_error("d_embeds requested but the forward took tokens");
  float* g = a.param_grads ? grads() : nullptr;
  refresh_bf16();
  d_h_.ensure(be_, (size_t)B_ * T_ * dims_.channels);
  head_backward(a, d_h_.data(), g ? g + (lm_head_weight() - params_.data()) : nullptr,
                g && lm_head_bias() ? g + (lm_head_bias() - params_.data()) : nullptr);
  trunk_backward(a, d_h_.data(), g);
}

// The gradient entering h [B,T,C] (zeroed first): the lm_head's backward from the loss and/or d_logits, plus
// d_hidden; dW (+)= the lm_head weight's gradient and db (+)= its bias's when not null.
void CausalExec::head_backward(const Backward& a, float* d_h, float* dW, float* db) {
  const Backend& be = *be_;
  const int C = dims_.channels, V = dims_.vocab_size, R = R_;
  const long BT = (long)B_ * T_;
  be.zero(d_h, sizeof(float) * BT * C);
  if (R > 0 && (a.from_loss || a.d_logits)) {
    dlogits_.ensure(be_, (size_t)R * V);
    dh_rows_.ensure(be_, (size_t)R * C);
    be.zero(dlogits_.data(), sizeof(float) * R * V);
    if (a.from_loss) {
      dlosses_.ensure(be_, R);
      if (weights_host_.empty()) {
        be.fill(dlosses_.data(), R, (float)(1.0 / R));  // w / Σ w with every selected row counting 1
      } else {
        double wsum = 0;
        for (float w : weights_host_) wsum += w;
        std::vector<float> dl(R);
        for (int r = 0; r < R; ++r) dl[r] = wsum > 0 ? (float)(weights_host_[r] / wsum) : 0.f;
        be.to_device(dlosses_.data(), dl.data(), sizeof(float) * R);
      }
      be.softmax_crossentropy_backward(dlogits_.data(), dlosses_.data(), probs_.data(), targets_.data(),
                                       weights_host_.empty() ? nullptr : weights_.data(), R, V);
    }
    if (a.d_logits) be.residual_backward(dlogits_.data(), nullptr, a.d_logits, (long)R * V);
    weight_gemm(false, false, R, C, V, dlogits_.data(), V, lm_head_weight(), C, dh_rows_.data(), C, false);
    if (rows_mode_ == Rows::Listed) be.scatter_rows_at(d_h, dh_rows_.data(), row_ids_.data(), R, C, true);
    else be.scatter_rows(d_h, dh_rows_.data(), R, C, rows_mode_ == Rows::Last ? T_ : 1, rows_mode_ == Rows::Last ? T_ - 1 : 0, true);
    if (dW)  // dW += dlogitsᵀ · h_rows
      be.gemm(true, false, V, C, R, dlogits_.data(), V, h_rows_.data(), C, dW, C, true);
    if (db)  // db += column sums of dlogits
      be.linear_backward(nullptr, C, nullptr, db, dlogits_.data(), V, h_rows_.data(), C, lm_head_weight(), R, C, V);
  }
  if (a.d_hidden) be.residual_backward(d_h, nullptr, a.d_hidden, BT * C);
}

void CausalExec::decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out,
                        const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = dims_.channels;
  const int pos_base = cache.prefix_len() + cache.length;
  if ((tokens == nullptr) == (embeds == nullptr)) throw std::invalid_argument("decode: give exactly one of tokens or embeds");
  if (Tn <= 0) throw std::invalid_argument("decode: need at least one new position");
  if (cache.length + Tn > cache.capacity) throw std::invalid_argument("decode: KV cache capacity exceeded");
  if (pos_base + Tn > dims_.max_seq_len)
    throw std::invalid_argument("decode: sequence exceeds the model's max_seq_len (" + std::to_string(pos_base) + " + " +
                                std::to_string(Tn) + " > " + std::to_string(dims_.max_seq_len) + ")");
  if (cache.num_layers != dims_.num_layers || cache.channels != dims_.kv_channels || cache.be != be_)
    throw std::invalid_argument("decode: cache shape mismatch");
  dec_h_.ensure(be_, (size_t)R * C);
  refresh_bf16();
  trunk_decode(cache, tokens, embeds, Tn, pos_base, cancel);
  cache.length += Tn;
  if (logits_out) lm_head_logits(logits_out, dec_h_.data(), R);
}

void CausalExec::embed_tokens(float* out, const int* tokens, int n) const {
  be_->embedding_forward(out, tokens, input_embeddings(), nullptr, 1, n, dims_.channels, 0, input_embedding_scale());
}

void CausalExec::lm_head_logits(float* logits, const float* h, int R) {
  const int C = dims_.channels, V = dims_.vocab_size;
  if (lm_head_bias()) be_->linear_forward(logits, V, h, C, lm_head_weight(), lm_head_bias(), R, C, V);
  else weight_gemm(false, true, R, V, C, h, C, lm_head_weight(), C, logits, V, false);
}

}  // namespace gradmm
