#include "model_exec.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>

namespace gradmm {

// ---------------------------------------------------------------------------------------------------------------
// CausalExec: parameters, the lm_head and its loss (lm_head.cpp's arithmetic), shared by the families.

CausalExec::CausalExec(const Backend* be, const ModelDims& dims, size_t nparams, const float* host_params)
    : be_(be), dims_(dims), nparams_(nparams) {
  if (!be) throw std::invalid_argument("model executor: no backend");
  params_.reset(be_, nparams_);
  be_->to_device(params_.data(), host_params, nparams_ * sizeof(float));
}

float* CausalExec::grads() {
  if (grads_.size() != nparams_) {
    grads_.reset(be_, nparams_);
    grads_.zero();
  }
  return grads_.data();
}
void CausalExec::zero_grads() { grads_.zero(); }

int CausalExec::begin_forward(const Forward& f) {
  if ((f.tokens == nullptr) == (f.embeds == nullptr))
    throw std::invalid_argument("model executor forward: give exactly one of tokens or embeds");
  if (f.B <= 0 || f.T <= 0) throw std::invalid_argument("model executor forward: empty batch");
  if (f.T > dims_.max_seq_len)
    throw std::invalid_argument("model executor forward: sequence length exceeds max_seq_len");
  const long BT = (long)f.B * f.T;
  if (f.rows && (f.n_rows <= 0 || f.n_rows > BT)) throw std::invalid_argument("model executor forward: bad n_rows");
  const int R = f.rows ? f.n_rows : f.last_only ? f.B : (int)BT;
  const size_t C = dims_.channels, V = dims_.vocab_size;
  if (R != R_ || logits_.size() != (size_t)R * V) {
    h_rows_.reset(be_, (size_t)R * C);
    logits_.reset(be_, (size_t)R * V);
    probs_.reset(be_, (size_t)R * V);
    losses_.reset(be_, R);
    targets_.reset(be_, R);
    dlogits_.reset(be_, (size_t)R * V);
    dlosses_.reset(be_, R);
    dh_rows_.reset(be_, (size_t)R * C);
  }
  B_ = f.B;
  T_ = f.T;
  R_ = R;
  used_embeds_ = f.embeds != nullptr;
  last_only_ = f.last_only;
  listed_rows_ = f.rows != nullptr;
  if (f.rows) {
    rows_.ensure(be_, R);
    be_->copy(rows_.data(), f.rows, sizeof(int) * R);
  }
  if (f.tokens) {
    tokens_.ensure(be_, BT);
    be_->copy(tokens_.data(), f.tokens, sizeof(int) * BT);
  }
  if (f.row_weights) {
    weights_host_.assign(f.row_weights, f.row_weights + R);
    weights_.ensure(be_, R);
    be_->to_device(weights_.data(), f.row_weights, sizeof(float) * R);
  } else {
    weights_host_.clear();
  }
  return R;
}

std::vector<int> CausalExec::selected_rows() const {
  std::vector<int> rows(R_);
  if (listed_rows_) be_->to_host(rows.data(), rows_.data(), sizeof(int) * R_);
  else
    for (int r = 0; r < R_; ++r) rows[r] = last_only_ ? r * T_ + T_ - 1 : r;
  return rows;
}

void CausalExec::head_forward(const float* h, const Forward& f) {
  const Backend& be = *be_;
  const int R = R_, C = dims_.channels, V = dims_.vocab_size;
  hidden_ = h;
  // lm_head on the selected rows only
  if (listed_rows_) be.gather_rows_at(h_rows_.data(), h, rows_.data(), R, C);
  else be.gather_rows(h_rows_.data(), h, R, C, f.last_only ? f.T : 1, f.last_only ? f.T - 1 : 0);
  be.gemm(false, true, R, V, C, h_rows_.data(), C, lm_head_weight(), C, logits_.data(), V, false);
  have_targets_ = f.targets != nullptr;
  if (f.targets) {
    be.copy(targets_.data(), f.targets, sizeof(int) * R);
    be.softmax_crossentropy_forward(losses_.data(), probs_.data(), logits_.data(), targets_.data(),
                                    weights_host_.empty() ? nullptr : weights_.data(), R, V);
  }
}

double CausalExec::mean_loss() {
  if (!have_targets_) return NAN;
  std::vector<float> l(R_);
  be_->to_host(l.data(), losses_.data(), sizeof(float) * R_);
  // lm_head.cpp's sums, in its order
  double s = 0, wsum = 0;
  for (int r = 0; r < R_; ++r) {
    const float w = weights_host_.empty() ? 1.f : weights_host_[r];
    s += (double)w * l[r];
    wsum += w;
  }
  return wsum > 0 ? (float)(s / wsum) : NAN;
}

void CausalExec::begin_backward(const Backward& a) const {
  // the CPU engine's checks and messages (gpt2.cpp, llama.cpp)
  if (B_ == 0) throw std::logic_error("backward called before forward");
  if (a.from_loss && !have_targets_) throw std::logic_error("backward from loss needs a forward with targets");
  if (a.d_embeds && !used_embeds_) throw std::logic_error("d_embeds requested but the forward took tokens");
}

void CausalExec::head_backward(const Backward& a, float* d_h, float* dW) {
  const Backend& be = *be_;
  const int C = dims_.channels, V = dims_.vocab_size, R = R_;
  const long BT = (long)B_ * T_;
  const long stride = last_only_ ? T_ : 1, offset = last_only_ ? T_ - 1 : 0;
  be.zero(d_h, sizeof(float) * BT * C);
  if (a.from_loss || a.d_logits) {
    dlogits_.zero();
    if (a.from_loss) {
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
    be.gemm(false, false, R, C, V, dlogits_.data(), V, lm_head_weight(), C, dh_rows_.data(), C, false);
    if (listed_rows_) be.scatter_rows_at(d_h, dh_rows_.data(), rows_.data(), R, C, true);
    else be.scatter_rows(d_h, dh_rows_.data(), R, C, stride, offset, true);
    if (dW)  // dW += dlogitsᵀ · h_rows
      be.gemm(true, false, V, C, R, dlogits_.data(), V, h_rows_.data(), C, dW, C, true);
  }
  if (a.d_hidden) be.residual_backward(d_h, nullptr, a.d_hidden, BT * C);
}

std::unique_ptr<CausalExec> make_exec(const Backend* be, CausalLM& host) {
  if (auto* g = dynamic_cast<GPT2*>(&host)) return std::make_unique<GPT2Exec>(be, g->config(), g->params());
  if (auto* l = dynamic_cast<Llama*>(&host)) return std::make_unique<LlamaExec>(be, *l, l->params());
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------------------
// GPT2Exec: gpt2.cpp's forward and backward, op for op, through the table.

namespace {
ModelDims gpt2_dims(const GPT2Config& cfg) {
  if (cfg.vocab_size <= 0 || cfg.channels <= 0 || cfg.num_layers <= 0 || cfg.num_heads <= 0 ||
      cfg.max_seq_len <= 0 || cfg.channels % cfg.num_heads != 0)
    throw std::invalid_argument("GPT2Exec: invalid config");
  return {cfg.vocab_size, cfg.max_seq_len, cfg.channels, cfg.num_layers, cfg.channels};
}
size_t gpt2_num_params(const GPT2Config& cfg) {  // GPT2's parameter count
  const size_t V = cfg.vocab_size, C = cfg.channels, L = cfg.num_layers;
  return V * C + (size_t)cfg.max_seq_len * C + L * (12 * C * C + 13 * C) + 2 * C;
}
}  // namespace

GPT2Exec::GPT2Exec(const Backend* be, const GPT2Config& cfg, const float* host_params)
    : CausalExec(be, gpt2_dims(cfg), gpt2_num_params(cfg), host_params), cfg_(cfg) {}

void GPT2Exec::ensure(int B, int T) {
  if (B == act_B_ && T == act_T_) return;
  const size_t BT = (size_t)B * T, C = cfg_.channels, L = cfg_.num_layers, NH = cfg_.num_heads;
  encoded_.reset(be_, BT * C);
  ln1_.reset(be_, L * BT * C);
  ln1_mean_.reset(be_, L * BT);
  ln1_rstd_.reset(be_, L * BT);
  qkv_.reset(be_, L * BT * 3 * C);
  atty_.reset(be_, L * BT * C);
  att_.reset(be_, L * B * NH * T * T);
  attproj_.reset(be_, L * BT * C);
  res2_.reset(be_, L * BT * C);
  ln2_.reset(be_, L * BT * C);
  ln2_mean_.reset(be_, L * BT);
  ln2_rstd_.reset(be_, L * BT);
  fch_.reset(be_, L * BT * 4 * C);
  fch_gelu_.reset(be_, L * BT * 4 * C);
  fcproj_.reset(be_, L * BT * C);
  res3_.reset(be_, L * BT * C);
  lnf_.reset(be_, BT * C);
  lnf_mean_.reset(be_, BT);
  lnf_rstd_.reset(be_, BT);
  // backward scratch (one layer at a time)
  d_res_.reset(be_, BT * C);
  d_tmp_.reset(be_, BT * C);
  d_qkv_.reset(be_, BT * 3 * C);
  d_atty_.reset(be_, BT * C);
  d_fch_.reset(be_, BT * 4 * C);
  d_fch_gelu_.reset(be_, BT * 4 * C);
  d_att_scratch_.reset(be_, (size_t)B * NH * T * T);
  act_B_ = B;
  act_T_ = T;
}

void GPT2Exec::forward(const Forward& f) {
  begin_forward(f);
  const int B = f.B, T = f.T, C = cfg_.channels, NH = cfg_.num_heads;
  const long BT = (long)B * T;
  ensure(B, T);
  const Backend& be = *be_;
  W w = weights(params_.data());
  if (f.tokens) be.embedding_forward(encoded_.data(), tokens_.data(), w.wte, w.wpe, B, T, C, 0);
  else be.input_embedding_forward(encoded_.data(), f.embeds, w.wpe, B, T, C, 0);
  const float* residual = encoded_.data();
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(f.cancel);
    const long oC = l * BT * C;
    float* ln1 = ln1_.data() + oC;
    float* qkv = qkv_.data() + 3 * oC;
    float* atty = atty_.data() + oC;
    float* att = att_.data() + (long)l * B * NH * T * T;
    float* attproj = attproj_.data() + oC;
    float* res2 = res2_.data() + oC;
    float* ln2 = ln2_.data() + oC;
    float* fch = fch_.data() + 4 * oC;
    float* fch_gelu = fch_gelu_.data() + 4 * oC;
    float* fcproj = fcproj_.data() + oC;
    float* res3 = res3_.data() + oC;
    be.layernorm_forward(ln1, ln1_mean_.data() + l * BT, ln1_rstd_.data() + l * BT, residual, w.ln1w + l * C,
                         w.ln1b + l * C, (int)BT, C, cfg_.layer_norm_eps);
    be.matmul_forward(qkv, ln1, w.qkvw + (long)l * 3 * C * C, w.qkvb + l * 3 * C, (int)BT, C, 3 * C);
    be.attention_forward(atty, att, qkv, B, T, C, NH);
    be.matmul_forward(attproj, atty, w.attprojw + (long)l * C * C, w.attprojb + l * C, (int)BT, C, C);
    be.residual_forward(res2, residual, attproj, BT * C);
    be.layernorm_forward(ln2, ln2_mean_.data() + l * BT, ln2_rstd_.data() + l * BT, res2, w.ln2w + l * C,
                         w.ln2b + l * C, (int)BT, C, cfg_.layer_norm_eps);
    be.matmul_forward(fch, ln2, w.fcw + (long)l * 4 * C * C, w.fcb + l * 4 * C, (int)BT, C, 4 * C);
    be.gelu_forward(fch_gelu, fch, BT * 4 * C);
    be.matmul_forward(fcproj, fch_gelu, w.fcprojw + (long)l * 4 * C * C, w.fcprojb + l * C, (int)BT, 4 * C, C);
    be.residual_forward(res3, res2, fcproj, BT * C);
    residual = res3;
  }
  be.layernorm_forward(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), residual, w.lnfw, w.lnfb, (int)BT, C,
                       cfg_.layer_norm_eps);
  head_forward(lnf_.data(), f);
}

void GPT2Exec::backward(const Backward& a) {
  begin_backward(a);
  const int B = B_, T = T_, C = cfg_.channels, NH = cfg_.num_heads;
  const long BT = (long)B * T;
  const Backend& be = *be_;
  W w = weights(params_.data());
  W g{};
  if (a.param_grads) g = weights(grads());
  auto opt = [&](float* base, long off) { return base ? base + off : nullptr; };

  d_res_.zero();
  head_backward(a, d_tmp_.data(), g.wte);  // d_tmp_: the gradient at h (the final layernorm's output)
  const float* last_residual = res3_.data() + (long)(cfg_.num_layers - 1) * BT * C;
  be.layernorm_backward(d_res_.data(), g.lnfw, g.lnfb, d_tmp_.data(), last_residual, w.lnfw, lnf_mean_.data(),
                        lnf_rstd_.data(), (int)BT, C);
  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(a.cancel);
    const long oC = l * BT * C;
    const float* residual = l == 0 ? encoded_.data() : res3_.data() + (l - 1) * BT * C;
    d_fch_gelu_.zero();
    be.matmul_backward(d_fch_gelu_.data(), opt(g.fcprojw, (long)l * 4 * C * C), opt(g.fcprojb, l * C), d_res_.data(),
                       fch_gelu_.data() + 4 * oC, w.fcprojw + (long)l * 4 * C * C, (int)BT, 4 * C, C);
    d_fch_.zero();
    be.gelu_backward(d_fch_.data(), fch_.data() + 4 * oC, d_fch_gelu_.data(), BT * 4 * C);
    d_tmp_.zero();
    be.matmul_backward(d_tmp_.data(), opt(g.fcw, (long)l * 4 * C * C), opt(g.fcb, l * 4 * C), d_fch_.data(),
                       ln2_.data() + oC, w.fcw + (long)l * 4 * C * C, (int)BT, C, 4 * C);
    be.layernorm_backward(d_res_.data(), opt(g.ln2w, l * C), opt(g.ln2b, l * C), d_tmp_.data(), res2_.data() + oC,
                          w.ln2w + l * C, ln2_mean_.data() + l * BT, ln2_rstd_.data() + l * BT, (int)BT, C);
    d_atty_.zero();
    be.matmul_backward(d_atty_.data(), opt(g.attprojw, (long)l * C * C), opt(g.attprojb, l * C), d_res_.data(),
                       atty_.data() + oC, w.attprojw + (long)l * C * C, (int)BT, C, C);
    d_qkv_.zero();
    be.attention_backward(d_qkv_.data(), d_att_scratch_.data(), d_atty_.data(), qkv_.data() + 3 * oC,
                          att_.data() + (long)l * B * NH * T * T, B, T, C, NH);
    d_tmp_.zero();
    be.matmul_backward(d_tmp_.data(), opt(g.qkvw, (long)l * 3 * C * C), opt(g.qkvb, l * 3 * C), d_qkv_.data(),
                       ln1_.data() + oC, w.qkvw + (long)l * 3 * C * C, (int)BT, C, 3 * C);
    be.layernorm_backward(d_res_.data(), opt(g.ln1w, l * C), opt(g.ln1b, l * C), d_tmp_.data(), residual,
                          w.ln1w + l * C, ln1_mean_.data() + l * BT, ln1_rstd_.data() + l * BT, (int)BT, C);
  }
  if (used_embeds_) be.input_embedding_backward(a.d_embeds, g.wpe, d_res_.data(), B, T, C, 0);
  else if (a.param_grads) be.embedding_backward(g.wte, g.wpe, d_res_.data(), tokens_.data(), B, T, C, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// LlamaExec: llama.cpp's forward, backward and decode, op for op, through the table.

namespace {
// The tensors of one layer, for rebasing a Weights from the parameter block onto the gradient block.
using LW = Llama::LayerWeights;
constexpr float* LW::*kLayerTensors[] = {&LW::ln1, &LW::wq, &LW::bq, &LW::wk, &LW::bk, &LW::wv, &LW::bv, &LW::wo,
                                         &LW::bo,  &LW::ln2, &LW::wg, &LW::bg, &LW::wu, &LW::bu, &LW::wd, &LW::bd};
static_assert(sizeof(kLayerTensors) / sizeof(kLayerTensors[0]) * sizeof(float*) == sizeof(LW),
              "LayerWeights has a tensor kLayerTensors does not list");

// The same tensors in another block of the same layout (absent tensors stay nullptr).
Llama::Weights rebase(const Llama::Weights& w, const float* from, float* to) {
  auto at = [&](const float* p) { return p ? to + (p - from) : nullptr; };
  Llama::Weights r;
  r.embed = at(w.embed);
  r.norm = at(w.norm);
  r.lm_head = at(w.lm_head);
  r.layers = w.layers;
  for (LW& l : r.layers)
    for (auto m : kLayerTensors) l.*m = at(l.*m);
  return r;
}
}  // namespace

LlamaExec::LlamaExec(const Backend* be, const Llama& layout, const float* host_params)
    : CausalExec(be, layout.dims(), layout.num_params(), host_params), cfg_(layout.config()) {
  C_ = cfg_.hidden_size;
  NH_ = cfg_.num_heads;
  NKV_ = cfg_.num_kv_heads;
  HD_ = cfg_.head_dim;
  I_ = cfg_.intermediate_size;
  QKV_ = (NH_ + 2 * NKV_) * HD_;
  w_ = layout.weights(params_.data());
  inv_freq_ = rope_inv_freq<float>(HD_, cfg_.rope_theta, cfg_.rope_scaling);
}

void LlamaExec::ensure_rope(int npos) {
  if (npos <= rope_npos_) return;
  // as Llama::ensure_rope: grow geometrically, never past max_seq_len; each entry depends on its position alone
  const int n = std::min(cfg_.max_seq_len, std::max(npos, std::min(cfg_.max_seq_len, 2 * rope_npos_)));
  const int half = HD_ / 2;
  cos_host_.resize((size_t)n * half);
  sin_host_.resize((size_t)n * half);
  rope_tables(cos_host_.data() + (size_t)rope_npos_ * half, sin_host_.data() + (size_t)rope_npos_ * half, inv_freq_,
              rope_npos_, n - rope_npos_);
  rope_cos_.reset(be_, cos_host_.size());
  rope_sin_.reset(be_, sin_host_.size());
  be_->to_device(rope_cos_.data(), cos_host_.data(), sizeof(float) * cos_host_.size());
  be_->to_device(rope_sin_.data(), sin_host_.data(), sizeof(float) * sin_host_.size());
  rope_npos_ = n;
}

void LlamaExec::ensure(int B, int T) {
  ensure_rope(T);
  if (B == act_B_ && T == act_T_) return;
  const size_t BT = (size_t)B * T, C = C_, L = cfg_.num_layers, Q = (size_t)NH_ * HD_, I = I_;
  const size_t att = (size_t)B * NH_ * T * T;
  resid_.reset(be_, (L + 1) * BT * C);
  resid_mid_.reset(be_, L * BT * C);
  ln1_.reset(be_, L * BT * C);
  ln1_rstd_.reset(be_, L * BT);
  qkv_.reset(be_, L * BT * QKV_);
  att_.reset(be_, L * att);
  atty_.reset(be_, L * BT * Q);
  ln2_.reset(be_, L * BT * C);
  ln2_rstd_.reset(be_, L * BT);
  gate_.reset(be_, L * BT * I);
  up_.reset(be_, L * BT * I);
  act_.reset(be_, L * BT * I);
  normf_.reset(be_, BT * C);
  normf_rstd_.reset(be_, BT);
  tmp_.reset(be_, BT * C);
  // backward scratch (one layer at a time)
  d_res_.reset(be_, BT * C);
  d_tmp_.reset(be_, BT * C);
  d_qkv_.reset(be_, BT * QKV_);
  d_atty_.reset(be_, BT * Q);
  d_act_.reset(be_, BT * I);
  d_gate_.reset(be_, BT * I);
  d_up_.reset(be_, BT * I);
  d_att_scratch_.reset(be_, att);
  act_B_ = B;
  act_T_ = T;
}

void LlamaExec::forward(const Forward& f) {
  begin_forward(f);
  const int B = f.B, T = f.T, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const float eps = cfg_.rms_norm_eps;
  ensure(B, T);
  const Backend& be = *be_;
  const Llama::Weights& w = w_;
  if (f.tokens) be.embedding_forward(resid_.data(), tokens_.data(), w.embed, nullptr, B, T, C, 0);
  else be.copy(resid_.data(), f.embeds, sizeof(float) * BT * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(f.cancel);
    const Llama::LayerWeights& lw = w.layers[l];
    const float* x = resid_.data() + l * BT * C;
    float* ln1 = ln1_.data() + l * BT * C;
    float* qkv = qkv_.data() + l * BT * QKV_;
    float* att = att_.data() + (long)l * B * NH_ * T * T;
    float* atty = atty_.data() + l * BT * Q;
    float* mid = resid_mid_.data() + l * BT * C;
    float* ln2 = ln2_.data() + l * BT * C;
    float* gate = gate_.data() + l * BT * I_;
    float* up = up_.data() + l * BT * I_;
    float* act = act_.data() + l * BT * I_;
    float* out = resid_.data() + (l + 1) * BT * C;
    be.rmsnorm_forward(ln1, ln1_rstd_.data() + l * BT, x, lw.ln1, (int)BT, C, eps);
    be.linear_forward(qkv, QKV_, ln1, C, lw.wq, lw.bq, (int)BT, C, Q);
    be.linear_forward(qkv + Q, QKV_, ln1, C, lw.wk, lw.bk, (int)BT, C, KV);
    be.linear_forward(qkv + Q + KV, QKV_, ln1, C, lw.wv, lw.bv, (int)BT, C, KV);
    // q heads and k heads are adjacent in the packed row: rotate NH + NKV heads in place
    be.rope_forward(qkv, qkv, (int)BT, T, QKV_, NH_ + NKV_, HD_, rope_cos_.data(), rope_sin_.data(), 0);
    be.gqa_attention_forward(atty, att, qkv, B, T, NH_, NKV_, HD_);
    be.linear_forward(tmp_.data(), C, atty, Q, lw.wo, lw.bo, (int)BT, Q, C);
    be.residual_forward(mid, x, tmp_.data(), BT * C);
    be.rmsnorm_forward(ln2, ln2_rstd_.data() + l * BT, mid, lw.ln2, (int)BT, C, eps);
    be.linear_forward(gate, I_, ln2, C, lw.wg, lw.bg, (int)BT, C, I_);
    be.linear_forward(up, I_, ln2, C, lw.wu, lw.bu, (int)BT, C, I_);
    be.swiglu_forward(act, gate, up, BT * I_);
    be.linear_forward(tmp_.data(), C, act, I_, lw.wd, lw.bd, (int)BT, I_, C);
    be.residual_forward(out, mid, tmp_.data(), BT * C);
  }
  be.rmsnorm_forward(normf_.data(), normf_rstd_.data(), resid_.data() + (long)cfg_.num_layers * BT * C, w.norm,
                     (int)BT, C, eps);
  head_forward(normf_.data(), f);
}

void LlamaExec::backward(const Backward& a) {
  begin_backward(a);
  const int B = B_, T = T_, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const Backend& be = *be_;
  const Llama::Weights& w = w_;
  Llama::Weights g{};  // all null without parameter gradients
  g.layers.assign(cfg_.num_layers, Llama::LayerWeights{});
  if (a.param_grads) g = rebase(w_, params_.data(), grads());

  d_res_.zero();
  head_backward(a, d_tmp_.data(), g.lm_head);  // d_tmp_: the gradient at h (the final norm's output)
  be.rmsnorm_backward(d_res_.data(), g.norm, d_tmp_.data(), resid_.data() + (long)cfg_.num_layers * BT * C, w.norm,
                      normf_rstd_.data(), (int)BT, C);
  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(a.cancel);
    const Llama::LayerWeights& lw = w.layers[l];
    const Llama::LayerWeights& lg = g.layers[l];
    const float* x = resid_.data() + l * BT * C;
    const float* ln1 = ln1_.data() + l * BT * C;
    const float* qkv = qkv_.data() + l * BT * QKV_;
    const float* att = att_.data() + (long)l * B * NH_ * T * T;
    const float* atty = atty_.data() + l * BT * Q;
    const float* mid = resid_mid_.data() + l * BT * C;
    const float* ln2 = ln2_.data() + l * BT * C;
    const float* gate = gate_.data() + l * BT * I_;
    const float* up = up_.data() + l * BT * I_;
    const float* act = act_.data() + l * BT * I_;
    // out = mid + down(swiglu(gate(ln2(mid)), up(ln2(mid))))
    d_act_.zero();
    be.linear_backward(d_act_.data(), I_, lg.wd, lg.bd, d_res_.data(), C, act, I_, lw.wd, (int)BT, I_, C);
    d_gate_.zero();
    d_up_.zero();
    be.swiglu_backward(d_gate_.data(), d_up_.data(), d_act_.data(), gate, up, BT * I_);
    d_tmp_.zero();
    be.linear_backward(d_tmp_.data(), C, lg.wg, lg.bg, d_gate_.data(), I_, ln2, C, lw.wg, (int)BT, C, I_);
    be.linear_backward(d_tmp_.data(), C, lg.wu, lg.bu, d_up_.data(), I_, ln2, C, lw.wu, (int)BT, C, I_);
    be.rmsnorm_backward(d_res_.data(), lg.ln2, d_tmp_.data(), mid, lw.ln2, ln2_rstd_.data() + l * BT, (int)BT, C);
    // mid = x + o(attention(rope(q(ln1(x))), rope(k(ln1(x))), v(ln1(x))))
    d_atty_.zero();
    be.linear_backward(d_atty_.data(), Q, lg.wo, lg.bo, d_res_.data(), C, atty, Q, lw.wo, (int)BT, Q, C);
    d_qkv_.zero();
    be.gqa_attention_backward(d_qkv_.data(), d_att_scratch_.data(), d_atty_.data(), qkv, att, B, T, NH_, NKV_, HD_);
    // through the rotation, in place: d_pre = Rᵀ d_post on the q and k heads
    be.rope_backward(d_qkv_.data(), d_qkv_.data(), (int)BT, T, QKV_, NH_ + NKV_, HD_, rope_cos_.data(),
                     rope_sin_.data(), 0, false);
    d_tmp_.zero();
    be.linear_backward(d_tmp_.data(), C, lg.wq, lg.bq, d_qkv_.data(), QKV_, ln1, C, lw.wq, (int)BT, C, Q);
    be.linear_backward(d_tmp_.data(), C, lg.wk, lg.bk, d_qkv_.data() + Q, QKV_, ln1, C, lw.wk, (int)BT, C, KV);
    be.linear_backward(d_tmp_.data(), C, lg.wv, lg.bv, d_qkv_.data() + Q + KV, QKV_, ln1, C, lw.wv, (int)BT, C, KV);
    be.rmsnorm_backward(d_res_.data(), lg.ln1, d_tmp_.data(), x, lw.ln1, ln1_rstd_.data() + l * BT, (int)BT, C);
  }
  if (used_embeds_) {
    if (a.d_embeds) be.residual_backward(a.d_embeds, nullptr, d_res_.data(), BT * C);
  } else if (a.param_grads) {
    be.embedding_backward(g.embed, nullptr, d_res_.data(), tokens_.data(), B, T, C, 0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding with a KV cache: gpt2.cpp's and llama.cpp's decode, op for op, through the table.

ExecKVCache::ExecKVCache(const Backend* be, const ModelDims& dims, int rows_, int capacity_, const KVCache* host_prefix)
    : rows(rows_), capacity(capacity_) {
  if (rows <= 0 || capacity <= 0) throw std::invalid_argument("ExecKVCache: rows and capacity must be positive");
  const size_t KV = dims.kv_channels, L = dims.num_layers;
  k.reset(be, L * rows * capacity * KV);
  v.reset(be, L * rows * capacity * KV);
  if (host_prefix && host_prefix->length > 0) {
    if (host_prefix->rows != 1 || host_prefix->num_layers != dims.num_layers || host_prefix->channels != dims.kv_channels)
      throw std::invalid_argument("ExecKVCache: the prefix must be a one-row cache of this model");
    prefix_len = host_prefix->length;
    prefix_capacity = host_prefix->capacity;
    // the filled positions of every layer, packed [L, prefix_len, KV]
    prefix_k.reset(be, L * prefix_len * KV);
    prefix_v.reset(be, L * prefix_len * KV);
    for (size_t l = 0; l < L; ++l) {
      be->to_device(prefix_k.data() + l * prefix_len * KV, host_prefix->k_at((int)l, 0, 0), sizeof(float) * prefix_len * KV);
      be->to_device(prefix_v.data() + l * prefix_len * KV, host_prefix->v_at((int)l, 0, 0), sizeof(float) * prefix_len * KV);
    }
  }
}

namespace {
// The checks every family's decode makes; returns the absolute position of the first new position.
int begin_decode(const ExecKVCache& cache, const ModelDims& dims, const int* tokens, const float* embeds, int Tn) {
  const int pos_base = cache.prefix_len + cache.length;
  if ((tokens == nullptr) == (embeds == nullptr)) throw std::invalid_argument("decode: give exactly one of tokens or embeds");
  if (Tn <= 0) throw std::invalid_argument("decode: need at least one new position");
  if (cache.length + Tn > cache.capacity) throw std::invalid_argument("decode: KV cache capacity exceeded");
  if (pos_base + Tn > dims.max_seq_len) throw std::invalid_argument("decode: sequence exceeds max_seq_len");
  return pos_base;
}
}  // namespace

void GPT2Exec::decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out) {
  const int R = cache.rows, C = cfg_.channels, V = cfg_.vocab_size, NH = cfg_.num_heads;
  const int P = cache.prefix_len, pos_base = begin_decode(cache, dims_, tokens, embeds, Tn);
  const long N = (long)R * Tn;
  const Backend& be = *be_;
  for (auto* b : {&dec_x_, &dec_ln_, &dec_atty_, &dec_proj_}) b->ensure(be_, N * C);
  dec_qkv_.ensure(be_, N * 3 * C);
  dec_fch_.ensure(be_, N * 4 * C);
  dec_fchg_.ensure(be_, N * 4 * C);
  dec_last_.ensure(be_, (size_t)R * C);
  dec_h_.ensure(be_, (size_t)R * C);
  W w = weights(params_.data());
  float *x = dec_x_.data(), *ln = dec_ln_.data(), *qkv = dec_qkv_.data(), *atty = dec_atty_.data(), *proj = dec_proj_.data();
  if (tokens) be.embedding_forward(x, tokens, w.wte, w.wpe, R, Tn, C, pos_base);
  else be.input_embedding_forward(x, embeds, w.wpe, R, Tn, C, pos_base);
  const size_t layer_kv = (size_t)R * cache.capacity * C, layer_prefix = (size_t)P * C;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    be.layernorm_forward(ln, nullptr, nullptr, x, w.ln1w + l * C, w.ln1b + l * C, (int)N, C, cfg_.layer_norm_eps);
    be.matmul_forward(qkv, ln, w.qkvw + (long)l * 3 * C * C, w.qkvb + l * 3 * C, (int)N, C, 3 * C);
    be.attention_decode_forward(atty, cache.k.data() + l * layer_kv, cache.v.data() + l * layer_kv,
                                P ? cache.prefix_k.data() + l * layer_prefix : nullptr,
                                P ? cache.prefix_v.data() + l * layer_prefix : nullptr, qkv, R, Tn, C, NH, P,
                                cache.length, cache.capacity);
    be.matmul_forward(proj, atty, w.attprojw + (long)l * C * C, w.attprojb + l * C, (int)N, C, C);
    be.residual_forward(x, x, proj, N * C);
    be.layernorm_forward(ln, nullptr, nullptr, x, w.ln2w + l * C, w.ln2b + l * C, (int)N, C, cfg_.layer_norm_eps);
    be.matmul_forward(dec_fch_.data(), ln, w.fcw + (long)l * 4 * C * C, w.fcb + l * 4 * C, (int)N, C, 4 * C);
    be.gelu_forward(dec_fchg_.data(), dec_fch_.data(), N * 4 * C);
    be.matmul_forward(proj, dec_fchg_.data(), w.fcprojw + (long)l * 4 * C * C, w.fcprojb + l * C, (int)N, 4 * C, C);
    be.residual_forward(x, x, proj, N * C);
  }
  cache.length += Tn;
  // final layernorm and lm_head on each row's last new position only
  be.gather_rows(dec_last_.data(), x, R, C, Tn, Tn - 1);
  be.layernorm_forward(dec_h_.data(), nullptr, nullptr, dec_last_.data(), w.lnfw, w.lnfb, R, C, cfg_.layer_norm_eps);
  if (logits_out) be.gemm(false, true, R, V, C, dec_h_.data(), C, w.wte, C, logits_out, V, false);
}

void LlamaExec::decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out) {
  const int R = cache.rows, C = C_, V = cfg_.vocab_size, Q = NH_ * HD_, KV = NKV_ * HD_;
  const int P = cache.prefix_len, pos_base = begin_decode(cache, dims_, tokens, embeds, Tn);
  const long N = (long)R * Tn;
  const float eps = cfg_.rms_norm_eps;
  ensure_rope(pos_base + Tn);
  const Backend& be = *be_;
  for (auto* b : {&dec_x_, &dec_ln_, &dec_proj_}) b->ensure(be_, N * C);
  dec_qkv_.ensure(be_, N * QKV_);
  dec_atty_.ensure(be_, N * Q);
  for (auto* b : {&dec_gate_, &dec_up_, &dec_act_}) b->ensure(be_, N * I_);
  dec_last_.ensure(be_, (size_t)R * C);
  dec_h_.ensure(be_, (size_t)R * C);
  const Llama::Weights& w = w_;
  float *x = dec_x_.data(), *ln = dec_ln_.data(), *qkv = dec_qkv_.data(), *atty = dec_atty_.data(), *proj = dec_proj_.data();
  if (tokens) be.embedding_forward(x, tokens, w.embed, nullptr, R, Tn, C, 0);
  else be.copy(x, embeds, sizeof(float) * N * C);
  const size_t layer_kv = (size_t)R * cache.capacity * KV, layer_prefix = (size_t)P * KV;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const Llama::LayerWeights& lw = w.layers[l];
    be.rmsnorm_forward(ln, nullptr, x, lw.ln1, (int)N, C, eps);
    be.linear_forward(qkv, QKV_, ln, C, lw.wq, lw.bq, (int)N, C, Q);
    be.linear_forward(qkv + Q, QKV_, ln, C, lw.wk, lw.bk, (int)N, C, KV);
    be.linear_forward(qkv + Q + KV, QKV_, ln, C, lw.wv, lw.bv, (int)N, C, KV);
    be.rope_forward(qkv, qkv, (int)N, Tn, QKV_, NH_ + NKV_, HD_, rope_cos_.data(), rope_sin_.data(), pos_base);
    be.gqa_attention_decode_forward(atty, cache.k.data() + l * layer_kv, cache.v.data() + l * layer_kv,
                                    P ? cache.prefix_k.data() + l * layer_prefix : nullptr,
                                    P ? cache.prefix_v.data() + l * layer_prefix : nullptr, qkv, R, Tn, NH_, NKV_, HD_,
                                    P, cache.length, cache.capacity);
    be.linear_forward(proj, C, atty, Q, lw.wo, lw.bo, (int)N, Q, C);
    be.residual_forward(x, x, proj, N * C);
    be.rmsnorm_forward(ln, nullptr, x, lw.ln2, (int)N, C, eps);
    be.linear_forward(dec_gate_.data(), I_, ln, C, lw.wg, lw.bg, (int)N, C, I_);
    be.linear_forward(dec_up_.data(), I_, ln, C, lw.wu, lw.bu, (int)N, C, I_);
    be.swiglu_forward(dec_act_.data(), dec_gate_.data(), dec_up_.data(), N * I_);
    be.linear_forward(proj, C, dec_act_.data(), I_, lw.wd, lw.bd, (int)N, I_, C);
    be.residual_forward(x, x, proj, N * C);
  }
  cache.length += Tn;
  // final norm and lm_head on each row's last new position only
  be.gather_rows(dec_last_.data(), x, R, C, Tn, Tn - 1);
  be.rmsnorm_forward(dec_h_.data(), nullptr, dec_last_.data(), w.norm, R, C, eps);
  if (logits_out) be.gemm(false, true, R, V, C, dec_h_.data(), C, w.lm_head, C, logits_out, V, false);
}

void exec_project(CausalExec& model, const float* host_wte, const float* U, int B, int L, int free_len,
                  const uint8_t* allowed, int topk, const KVCache& prefix, const float* prefix_logits, int* out_tokens,
                  const std::atomic<bool>* cancel) {
  const Backend* be = model.backend();
  const int V = model.dims().vocab_size, C = model.dims().channels;
  if (prefix.rows != 1 || prefix.length <= 0) throw std::invalid_argument("project: prefix must be a filled one-row cache");
  // the CPU path's tables and checks (admm.cpp project), computed once per call on the host
  std::vector<float> inv_norm_host;
  std::vector<int> allowed_host;
  projection_tables(host_wte, V, C, allowed, inv_norm_host, allowed_host);
  if (topk < 1) throw std::invalid_argument("project: topk must be at least 1");
  const int n_allowed = (int)allowed_host.size(), k = std::min(topk, n_allowed);
  if (free_len <= 0 || B <= 0) return;
  ExecKVCache rows(be, model.dims(), B, free_len, &prefix);
  // uploaded once: U, the norms, the allowed ids, the prefix logits into every row
  BackendBuffer<float> u(be, (size_t)B * L * C), ui(be, (size_t)B * C), sims(be, (size_t)B * V),
      logits(be, (size_t)B * V), inv_norm(be, V);
  BackendBuffer<int> ids(be, n_allowed), chosen(be, (size_t)free_len * B);  // [free_len, B]: position i at i·B
  be->to_device(u.data(), U, sizeof(float) * u.size());
  be->to_device(inv_norm.data(), inv_norm_host.data(), sizeof(float) * V);
  be->to_device(ids.data(), allowed_host.data(), sizeof(int) * n_allowed);
  for (int b = 0; b < B; ++b) be->to_device(logits.data() + (size_t)b * V, prefix_logits, sizeof(float) * V);
  const float* wte = model.input_embeddings();
  // Nothing is read back until the end: each position's ids stay on the backend for the next decoding step, so the
  // host only queues work (no wait per position: on a GPU the decoding steps are launch-bound).
  for (int i = 0; i < free_len; ++i) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
    int* chosen_i = chosen.data() + (size_t)i * B;
    be->gather_rows(ui.data(), u.data(), B, C, L, i);  // ui[b] = U[b, i]
    be->gemm(false, true, B, V, C, ui.data(), C, wte, C, sims.data(), V, false);  // u_i · e_v
    be->project_choose(chosen_i, sims.data(), logits.data(), inv_norm.data(), ids.data(), n_allowed, B, V, k);
    if (i + 1 < free_len) model.decode(rows, chosen_i, nullptr, 1, logits.data());
  }
  std::vector<int> chosen_host((size_t)free_len * B);
  be->to_host(chosen_host.data(), chosen.data(), sizeof(int) * chosen_host.size());  // the one download
  for (int i = 0; i < free_len; ++i)
    for (int b = 0; b < B; ++b) out_tokens[(long)b * free_len + i] = chosen_host[(size_t)i * B + b];
}

ExecTarget::ExecTarget(const Backend* be, const MatchTarget& t) : n(t.n), V(t.V), C(t.C), norm(t.norm) {
  A.reset(be, (size_t)n * V);
  H.reset(be, (size_t)n * C);
  be->to_device(A.data(), t.A.data(), sizeof(float) * A.size());
  be->to_device(H.data(), t.H.data(), sizeof(float) * H.size());
  if (!t.noise.empty()) {
    noise.reset(be, t.noise.size());
    be->to_device(noise.data(), t.noise.data(), sizeof(float) * t.noise.size());
  }
}

ExecMatcher::ExecMatcher(CausalExec& model, const ExecTarget& target) : m_(model), t_(target), be_(model.backend()) {
  if (target.V != model.dims().vocab_size || target.C != model.dims().channels)
    throw std::invalid_argument("ExecMatcher: target belongs to a different model shape");
  scalars_.reset(be_, 1);
  norm_scratch_.reset(be_, 1024);
}

void ExecMatcher::ensure(int B, int L, int label) {
  const size_t V = t_.V, C = t_.C, n = t_.n;
  if (B != B_ || L != L_) {
    A_.reset(be_, B * V);
    RA_.reset(be_, n * B);
    RH_.reset(be_, n * B);
    SA_.reset(be_, (size_t)B * B);
    SH_.reset(be_, (size_t)B * B);
    if (t_.noise.size()) {
      NH_.reset(be_, B * V);
      NtA_.reset(be_, B * C);
      noise_dots_.reset(be_, B);
    }
    gA_.reset(be_, B * V);
    gH_.reset(be_, B * C);
    dlogits_.reset(be_, B * V);
    d_hidden_.reset(be_, (size_t)B * L * C);
    g_scratch_.reset(be_, (size_t)B * L * C);
    per_.reset(be_, B);
    labels_.reset(be_, B);
    B_ = B;
    L_ = L;
    label_ = -1;
  }
  if (label != label_) {
    if (label < 0 || label >= (int)V) throw std::invalid_argument("ExecMatcher: label out of range");
    std::vector<int> l(B, label);
    be_->to_device(labels_.data(), l.data(), sizeof(int) * B);
    label_ = label;
  }
}

void ExecMatcher::evaluate(const float* X, int B, int L, int label, float* dX, float* per_sample, float* loss_out) {
  const int V = t_.V, C = t_.C, n = t_.n;
  ensure(B, L, label);
  const Backend& be = *be_;
  CausalExec::Forward fa;
  fa.embeds = X;
  fa.B = B;
  fa.T = L;
  fa.last_only = true;
  fa.targets = labels_.data();
  m_.forward(fa);
  float* A = A_.data();
  const float* H = m_.hidden_rows();
  be.onehot_sub(A, m_.probs(), labels_.data(), B, V);
  // Gram matrices against the target (n×B) and within the batch (B×B)
  be.gemm(false, true, n, B, V, t_.A.data(), V, A, V, RA_.data(), B, false);
  be.gemm(false, true, n, B, C, t_.H.data(), C, H, C, RH_.data(), B, false);
  be.gemm(false, true, B, B, V, A, V, A, V, SA_.data(), B, false);
  be.gemm(false, true, B, B, C, H, C, H, C, SH_.data(), B, false);
  const bool noisy = t_.noise.size() != 0;
  if (noisy) {  // N h_j [B,V], Nᵀ a_j [B,C], a_j·N h_j
    be.gemm(false, true, B, V, C, H, C, t_.noise.data(), C, NH_.data(), V, false);
    be.gemm(false, false, B, C, V, A, V, t_.noise.data(), C, NtA_.data(), C, false);
    be.row_dot(noise_dots_.data(), A, NH_.data(), B, V);
  }
  GmScalars* s = scalars_.data();  // backend memory: only addresses of its fields are taken below
  auto field = [s](size_t off) { return reinterpret_cast<const float*>(reinterpret_cast<const char*>(s) + off); };
  be.gm_combine(s, per_sample, loss_out, RA_.data(), RH_.data(), SA_.data(), SH_.data(),
                noisy ? noise_dots_.data() : nullptr, n, B, t_.norm);
  if (!dX) return;

  // coefficient matrices in place (the Gram matrices are not needed again): wRH = cS·RH, wRA = cS·RA, wSH = cQ·SH,
  // wSA = cQ·SA; then gA_j = Σ_i t.A_i wRH_ij + Σ_k A_k wSH_kj and gH likewise
  be.scale_by(RH_.data(), (long)n * B, field(offsetof(GmScalars, cS)));
  be.scale_by(RA_.data(), (long)n * B, field(offsetof(GmScalars, cS)));
  be.scale_by(SH_.data(), (long)B * B, field(offsetof(GmScalars, cQ)));
  be.scale_by(SA_.data(), (long)B * B, field(offsetof(GmScalars, cQ)));
  be.gemm(true, false, B, V, n, RH_.data(), B, t_.A.data(), V, gA_.data(), V, false);
  be.gemm(true, false, B, V, B, SH_.data(), B, A, V, gA_.data(), V, true);
  be.gemm(true, false, B, C, n, RA_.data(), B, t_.H.data(), C, gH_.data(), C, false);
  be.gemm(true, false, B, C, B, SA_.data(), B, H, C, gH_.data(), C, true);
  if (noisy) {
    be.axpy_by(gA_.data(), NH_.data(), (long)B * V, field(offsetof(GmScalars, cN)));
    be.axpy_by(gH_.data(), NtA_.data(), (long)B * C, field(offsetof(GmScalars, cN)));
  }
  // through a = softmax(logits) − e_y
  be.softmax_jvp_rows(dlogits_.data(), m_.probs(), gA_.data(), B, V);
  d_hidden_.zero();
  be.scatter_rows(d_hidden_.data(), gH_.data(), B, C, L, L - 1, false);
  be.zero(dX, sizeof(float) * (size_t)B * L * C);
  CausalExec::Backward ba;
  ba.d_logits = dlogits_.data();
  ba.d_hidden = d_hidden_.data();
  ba.param_grads = false;
  ba.d_embeds = dX;
  m_.backward(ba);
}

double ExecMatcher::match_loss(const float* X, int B, int L, int label, float* dX, float* per_sample_host) {
  ensure(B, L, label);  // before taking per_.data()
  evaluate(X, B, L, label, dX, per_sample_host ? per_.data() : nullptr, nullptr);
  if (per_sample_host) be_->to_host(per_sample_host, per_.data(), sizeof(float) * B);
  GmScalars s;
  be_->to_host(&s, scalars_.data(), sizeof(s));
  return s.f;
}

double ExecMatcher::x_update(float* X, const float* z, const float* lam, const XUpdateArgs& a, float* adam_m,
                             float* adam_v, int* adam_t, float* losses_host, const std::atomic<bool>* cancel) {
  const int C = t_.C;
  if (a.free_len < 0 || a.free_len > a.L) throw std::invalid_argument("x_update: free_len out of range");
  const long row_n = (long)a.L * C, free_n = (long)a.free_len * C;
  ensure(a.B, a.L, a.label);
  losses_.ensure(be_, (size_t)std::max(a.steps, 1));
  dX_.ensure(be_, (size_t)a.B * row_n);
  for (int s = 0; s < a.steps; ++s) {
    check_cancel(cancel);
    evaluate(X, a.B, a.L, a.label, dX_.data(), nullptr, losses_.data() + s);
    const int t = ++*adam_t;  // bias corrections exactly as admm.cpp
    const float step_size = a.lr / (1.f - std::pow(a.beta1, (float)t));
    const float bc2_sqrt = std::sqrt(1.f - std::pow(a.beta2, (float)t));
    be_->x_adam_step(X, adam_m, adam_v, dX_.data(), z, lam, g_scratch_.data(), norm_scratch_.data(), a.B, row_n, free_n,
                     a.rho, a.max_grad_norm, a.beta1, a.beta2, a.eps, step_size, bc2_sqrt);
  }
  evaluate(X, a.B, a.L, a.label, nullptr, nullptr, nullptr);
  if (losses_host && a.steps > 0) be_->to_host(losses_host, losses_.data(), sizeof(float) * a.steps);
  GmScalars s;
  be_->to_host(&s, scalars_.data(), sizeof(s));
  return s.f;
}

}  // namespace gradmm
