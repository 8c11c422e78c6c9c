// Phi through the backend table: forward (every layer's activations kept for the backward, or one layer's for an
// inference forward), backward, decoding. One LayerNorm per block feeds attention and the MLP in parallel:
//     out = (dense(attn(ln(x))) + fc2(gelu(fc1(ln(x))))) + x      (HF's order of the two additions)
#include <algorithm>
#include <stdexcept>

#include "model.h"

namespace gradmm {

PhiExec::PhiExec(const Backend* be, const PhiConfig& cfg)
    : CausalExec(be, Phi(cfg).dims(), Phi(cfg).num_params()), layout_(cfg), cfg_(layout_.config()) {
  C_ = cfg_.hidden_size;
  NH_ = cfg_.num_heads;
  NKV_ = cfg_.num_kv_heads;
  HD_ = layout_.head_dim();
  RD_ = cfg_.rotary_dim;
  I_ = cfg_.intermediate_size;
  QKV_ = (NH_ + 2 * NKV_) * HD_;
  w_ = layout_.weights(params_.data());
}

void PhiExec::ensure_rope(int npos) { rope_.ensure(be_, npos, cfg_.max_seq_len, layout_.inv_freq()); }

// Partial rotary: the rope op on heads of RD_ channels; with RD_ < HD_ the heads are not contiguous at stride RD_, so
// each of the NH + NKV q/k heads is one call (its first RD_ channels rotate, the rest pass through untouched).
void PhiExec::rope(float* qkv, int N, int T, int pos0, bool backward) {
  const Backend& be = *be_;
  const int calls = RD_ == HD_ ? 1 : NH_ + NKV_, heads = RD_ == HD_ ? NH_ + NKV_ : 1;
  for (int h = 0; h < calls; ++h) {
    float* p = qkv + (long)h * HD_;
    if (backward) be.rope_backward(p, p, N, T, QKV_, heads, RD_, rope_.cos(), rope_.sin(), pos0, false);
    else be.rope_forward(p, p, N, T, QKV_, heads, RD_, rope_.cos(), rope_.sin(), pos0);
  }
}

void PhiExec::ensure(int B, int T, bool keep) {
  ensure_rope(T);
  const int layers = keep ? cfg_.num_layers : 1;
  if (B == act_B_ && T == act_T_ && layers == act_layers_) return;
  const size_t BT = (size_t)B * T, C = C_, L = layers, Q = (size_t)NH_ * HD_, I = I_;
  for (auto* b : {&resid_, &ln_, &ln_mean_, &ln_rstd_, &qkv_, &att_, &atty_, &fc1_, &fc1_gelu_, &normf_, &normf_mean_,
                  &normf_rstd_, &tmp_, &tmp2_, &d_res_, &d_ln_, &d_qkv_, &d_atty_, &d_fc1_, &d_fc1_gelu_,
                  &d_att_scratch_})
    b->release();
  resid_.reset(be_, (keep ? L + 1 : 2) * BT * C);
  ln_.reset(be_, L * BT * C);
  ln_mean_.reset(be_, L * BT);
  ln_rstd_.reset(be_, L * BT);
  qkv_.reset(be_, L * BT * QKV_);
  att_.reset(be_, L * B * NH_ * T * T);
  atty_.reset(be_, L * BT * Q);
  fc1_.reset(be_, L * BT * I);
  fc1_gelu_.reset(be_, L * BT * I);
  normf_.reset(be_, BT * C);
  normf_mean_.reset(be_, BT);
  normf_rstd_.reset(be_, BT);
  tmp_.reset(be_, BT * C);
  tmp2_.reset(be_, BT * C);
  act_B_ = B;
  act_T_ = T;
  act_layers_ = layers;
}

void PhiExec::trunk_forward(const Forward& f) {
  const int B = f.B, T = f.T, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const float eps = cfg_.layer_norm_eps;
  const bool keep = f.keep_activations;
  ensure(B, T, keep);
  const Backend& be = *be_;
  const Phi::Weights& w = w_;
  if (f.tokens) be.embedding_forward(resid_.data(), tokens_.data(), w.embed, nullptr, B, T, C, 0, 1.f);
  else be.copy(resid_.data(), f.embeds, sizeof(float) * BT * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(f.cancel);
    const Phi::LayerWeights& lw = w.layers[l];
    const long s = keep ? l : 0;
    const float* x = resid_.data() + (keep ? l : l % 2) * BT * C;
    float* ln = ln_.data() + s * BT * C;
    float* qkv = qkv_.data() + s * BT * QKV_;
    float* att = att_.data() + s * B * NH_ * T * T;
    float* atty = atty_.data() + s * BT * Q;
    float* fc1 = fc1_.data() + s * BT * I_;
    float* fc1g = fc1_gelu_.data() + s * BT * I_;
    float* out = resid_.data() + (keep ? l + 1 : (l + 1) % 2) * BT * C;
    be.layernorm_forward(ln, ln_mean_.data() + s * BT, ln_rstd_.data() + s * BT, x, lw.lnw, lw.lnb, (int)BT, C, eps);
    be.linear_forward(qkv, QKV_, ln, C, lw.wq, lw.bq, (int)BT, C, Q);
    be.linear_forward(qkv + Q, QKV_, ln, C, lw.wk, lw.bk, (int)BT, C, KV);
    be.linear_forward(qkv + Q + KV, QKV_, ln, C, lw.wv, lw.bv, (int)BT, C, KV);
    rope(qkv, (int)BT, T, 0, false);
    be.gqa_attention_forward(atty, att, qkv, B, T, NH_, NKV_, HD_, 0);
    be.linear_forward(tmp_.data(), C, atty, Q, lw.wo, lw.bo, (int)BT, Q, C);
    be.linear_forward(fc1, I_, ln, C, lw.w1, lw.b1, (int)BT, C, I_);
    be.gelu_forward(fc1g, fc1, BT * I_);
    be.linear_forward(tmp2_.data(), C, fc1g, I_, lw.w2, lw.b2, (int)BT, I_, C);
    be.residual_forward(out, tmp_.data(), tmp2_.data(), BT * C);
    be.residual_forward(out, out, x, BT * C);
  }
  const long last = keep ? cfg_.num_layers : cfg_.num_layers % 2;
  be.layernorm_forward(normf_.data(), normf_mean_.data(), normf_rstd_.data(), resid_.data() + last * BT * C, w.lnfw,
                       w.lnfb, (int)BT, C, eps);
  hidden_ = normf_.data();
}

void PhiExec::trunk_backward(const Backward& a, float* d_h, float* gblock) {
  const int B = B_, T = T_, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const Backend& be = *be_;
  const Phi::Weights& w = w_;
  const Phi::Weights g = layout_.weights(gblock);
  if (d_res_.size() != (size_t)BT * C) {
    d_res_.reset(be_, BT * C);
    d_ln_.reset(be_, BT * C);
    d_qkv_.reset(be_, BT * QKV_);
    d_atty_.reset(be_, BT * Q);
    d_fc1_.reset(be_, BT * I_);
    d_fc1_gelu_.reset(be_, BT * I_);
    if (!be.host_memory) d_att_scratch_.reset(be_, (size_t)B * NH_ * T * T);
  }
  d_res_.zero();
  be.layernorm_backward(d_res_.data(), g.lnfw, g.lnfb, d_h, resid_.data() + (long)cfg_.num_layers * BT * C, w.lnfw,
                        normf_mean_.data(), normf_rstd_.data(), (int)BT, C);
  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(a.cancel);
    const Phi::LayerWeights& lw = w.layers[l];
    const Phi::LayerWeights& lg = g.layers[l];
    const float* x = resid_.data() + l * BT * C;
    const float* ln = ln_.data() + l * BT * C;
    const float* qkv = qkv_.data() + l * BT * QKV_;
    const float* att = att_.data() + (long)l * B * NH_ * T * T;
    const float* atty = atty_.data() + l * BT * Q;
    const float* fc1 = fc1_.data() + l * BT * I_;
    const float* fc1g = fc1_gelu_.data() + l * BT * I_;
    // d_res is the gradient at out = x + attn + mlp: it passes to x unchanged and enters both branches, whose
    // gradients at ln(x) are summed in d_ln
    d_ln_.zero();
    d_fc1_gelu_.zero();
    be.linear_backward(d_fc1_gelu_.data(), I_, lg.w2, lg.b2, d_res_.data(), C, fc1g, I_, lw.w2, (int)BT, I_, C);
    d_fc1_.zero();
    be.gelu_backward(d_fc1_.data(), fc1, d_fc1_gelu_.data(), BT * I_);
    be.linear_backward(d_ln_.data(), C, lg.w1, lg.b1, d_fc1_.data(), I_, ln, C, lw.w1, (int)BT, C, I_);
    d_atty_.zero();
    be.linear_backward(d_atty_.data(), Q, lg.wo, lg.bo, d_res_.data(), C, atty, Q, lw.wo, (int)BT, Q, C);
    d_qkv_.zero();
    be.gqa_attention_backward(d_qkv_.data(), d_att_scratch_.data(), d_atty_.data(), qkv, att, B, T, NH_, NKV_, HD_, 0);
    rope(d_qkv_.data(), (int)BT, T, 0, true);
    be.linear_backward(d_ln_.data(), C, lg.wq, lg.bq, d_qkv_.data(), QKV_, ln, C, lw.wq, (int)BT, C, Q);
    be.linear_backward(d_ln_.data(), C, lg.wk, lg.bk, d_qkv_.data() + Q, QKV_, ln, C, lw.wk, (int)BT, C, KV);
    be.linear_backward(d_ln_.data(), C, lg.wv, lg.bv, d_qkv_.data() + Q + KV, QKV_, ln, C, lw.wv, (int)BT, C, KV);
    be.layernorm_backward(d_res_.data(), lg.lnw, lg.lnb, d_ln_.data(), x, lw.lnw, ln_mean_.data() + l * BT,
                          ln_rstd_.data() + l * BT, (int)BT, C);
  }
  if (used_embeds_) {
    if (a.d_embeds) be.residual_backward(a.d_embeds, nullptr, d_res_.data(), BT * C);
  } else if (gblock) {
    be.embedding_backward(g.embed, nullptr, d_res_.data(), tokens_.data(), B, T, C, 0, 1.f);
  }
}

void PhiExec::trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                           const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_, P = cache.prefix_len();
  const long N = (long)R * Tn;
  const float eps = cfg_.layer_norm_eps;
  ensure_rope(pos_base + Tn);
  const Backend& be = *be_;
  for (auto* b : {&dec_x_, &dec_ln_, &dec_proj_, &dec_proj2_}) b->ensure(be_, N * C);
  dec_qkv_.ensure(be_, N * QKV_);
  dec_atty_.ensure(be_, N * Q);
  for (auto* b : {&dec_fc1_, &dec_fc1g_}) b->ensure(be_, N * I_);
  dec_last_.ensure(be_, (size_t)R * C);
  const Phi::Weights& w = w_;
  float *x = dec_x_.data(), *ln = dec_ln_.data(), *qkv = dec_qkv_.data(), *atty = dec_atty_.data();
  if (tokens) be.embedding_forward(x, tokens, w.embed, nullptr, R, Tn, C, 0, 1.f);
  else be.copy(x, embeds, sizeof(float) * N * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    const Phi::LayerWeights& lw = w.layers[l];
    be.layernorm_forward(ln, nullptr, nullptr, x, lw.lnw, lw.lnb, (int)N, C, eps);
    be.linear_forward(qkv, QKV_, ln, C, lw.wq, lw.bq, (int)N, C, Q);
    be.linear_forward(qkv + Q, QKV_, ln, C, lw.wk, lw.bk, (int)N, C, KV);
    be.linear_forward(qkv + Q + KV, QKV_, ln, C, lw.wv, lw.bv, (int)N, C, KV);
    rope(qkv, (int)N, Tn, pos_base, false);
    be.gqa_attention_decode_forward(atty, cache.k_layer(l), cache.v_layer(l), P ? cache.prefix->k_layer(l) : nullptr,
                                    P ? cache.prefix->v_layer(l) : nullptr, qkv, R, Tn, NH_, NKV_, HD_, P,
                                    cache.length, cache.capacity, 0);
    be.linear_forward(dec_proj_.data(), C, atty, Q, lw.wo, lw.bo, (int)N, Q, C);
    be.linear_forward(dec_fc1_.data(), I_, ln, C, lw.w1, lw.b1, (int)N, C, I_);
    be.gelu_forward(dec_fc1g_.data(), dec_fc1_.data(), N * I_);
    be.linear_forward(dec_proj2_.data(), C, dec_fc1g_.data(), I_, lw.w2, lw.b2, (int)N, I_, C);
    be.residual_forward(dec_proj_.data(), dec_proj_.data(), dec_proj2_.data(), N * C);
    be.residual_forward(x, dec_proj_.data(), x, N * C);
  }
  be.gather_rows(dec_last_.data(), x, R, C, Tn, Tn - 1);
  be.layernorm_forward(dec_h_.data(), nullptr, nullptr, dec_last_.data(), w.lnfw, w.lnfb, R, C, eps);
}

}  // namespace gradmm
