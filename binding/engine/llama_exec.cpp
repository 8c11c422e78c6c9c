// The Llama family through the backend table: forward (every layer's activations kept for the backward, or one
// layer's for an inference forward), backward, decoding.
#include <algorithm>
#include <stdexcept>

#include "model.h"

namespace gradmm {

LlamaExec::LlamaExec(const Backend* be, const LlamaConfig& cfg)
    : CausalExec(be, Llama(cfg).dims(), Llama(cfg).num_params()), layout_(cfg), cfg_(layout_.config()) {
  C_ = cfg_.hidden_size;
  NH_ = cfg_.num_heads;
  NKV_ = cfg_.num_kv_heads;
  HD_ = cfg_.head_dim;
  I_ = cfg_.intermediate_size;
  QKV_ = (NH_ + 2 * NKV_) * HD_;
  w_ = layout_.weights(params_.data());
}

void LlamaExec::ensure_rope(int npos) {
  if (npos <= rope_.positions()) return;
  const RopeScaling& rs = cfg_.rope_scaling;
  if (rs.longrope && npos > rs.original_max_position_embeddings)
    throw std::invalid_argument("LongRoPE: " + std::to_string(npos) + " positions exceed original_max_position_embeddings (" +
                                std::to_string((long)rs.original_max_position_embeddings) +
                                "), where Phi-3 switches to its long factors, which this engine does not run");
  rope_.ensure(be_, npos, cfg_.max_seq_len, layout_.inv_freq(), rs.longrope ? (float)rs.attention_factor : 1.f);
}

void LlamaExec::ensure(int B, int T, bool keep) {
  ensure_rope(T);
  const int layers = keep ? cfg_.num_layers : 1;
  if (B == act_B_ && T == act_T_ && layers == act_layers_) return;
  const size_t BT = (size_t)B * T, C = C_, L = layers, Q = (size_t)NH_ * HD_, I = I_;
  for (auto* b : {&resid_, &resid_mid_, &ln1_, &ln1_rstd_, &qkv_, &att_, &atty_, &ln2_, &ln2_rstd_, &gate_, &up_,
                  &act_, &normf_, &normf_rstd_, &tmp_, &d_res_, &d_tmp_, &d_qkv_, &d_atty_, &d_act_, &d_gate_, &d_up_,
                  &d_att_scratch_})
    b->release();  // before allocating the new shape (peak memory)
  // resid: layer inputs [L+1, BT, C] (resid[0] = input embeddings, resid[L] = last output), or 2 slots used
  // alternately by an inference forward
  resid_.reset(be_, (keep ? L + 1 : 2) * BT * C);
  resid_mid_.reset(be_, L * BT * C);
  ln1_.reset(be_, L * BT * C);
  ln1_rstd_.reset(be_, L * BT);
  qkv_.reset(be_, L * BT * QKV_);
  att_.reset(be_, L * B * NH_ * T * T);
  atty_.reset(be_, L * BT * Q);
  ln2_.reset(be_, L * BT * C);
  ln2_rstd_.reset(be_, L * BT);
  gate_.reset(be_, L * BT * I);
  up_.reset(be_, L * BT * I);
  act_.reset(be_, L * BT * I);
  normf_.reset(be_, BT * C);
  normf_rstd_.reset(be_, BT);
  tmp_.reset(be_, BT * C);
  act_B_ = B;
  act_T_ = T;
  act_layers_ = layers;
}

void LlamaExec::trunk_forward(const Forward& f) {
  const int B = f.B, T = f.T, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const float eps = cfg_.rms_norm_eps;
  const bool keep = f.keep_activations;
  ensure(B, T, keep);
  const Backend& be = *be_;
  const Llama::Weights& w = w_;
  if (f.tokens) be.embedding_forward(resid_.data(), tokens_.data(), w.embed, nullptr, B, T, C, 0, 1.f);
  else be.copy(resid_.data(), f.embeds, sizeof(float) * BT * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(f.cancel);
    const Llama::LayerWeights& lw = w.layers[l];
    const long s = keep ? l : 0;  // the layer's activation slot
    const float* x = resid_.data() + (keep ? l : l % 2) * BT * C;
    float* ln1 = ln1_.data() + s * BT * C;
    float* qkv = qkv_.data() + s * BT * QKV_;
    float* att = att_.data() + s * B * NH_ * T * T;
    float* atty = atty_.data() + s * BT * Q;
    float* mid = resid_mid_.data() + s * BT * C;
    float* ln2 = ln2_.data() + s * BT * C;
    float* gate = gate_.data() + s * BT * I_;
    float* up = up_.data() + s * BT * I_;
    float* act = act_.data() + s * BT * I_;
    float* out = resid_.data() + (keep ? l + 1 : (l + 1) % 2) * BT * C;
    be.rmsnorm_forward(ln1, ln1_rstd_.data() + s * BT, x, lw.ln1, (int)BT, C, eps, 1, C, 0.f);
    linear_fwd(qkv, QKV_, ln1, C, lw.wq, lw.bq, (int)BT, C, Q);
    linear_fwd(qkv + Q, QKV_, ln1, C, lw.wk, lw.bk, (int)BT, C, KV);
    linear_fwd(qkv + Q + KV, QKV_, ln1, C, lw.wv, lw.bv, (int)BT, C, KV);
    // q heads and k heads are adjacent in the packed row: rotate NH + NKV heads in place
    be.rope_forward(qkv, qkv, (int)BT, T, QKV_, NH_ + NKV_, HD_, rope_.cos(), rope_.sin(), 0);
    be.gqa_attention_forward(atty, att, qkv, B, T, NH_, NKV_, HD_, 0);
    linear_fwd(tmp_.data(), C, atty, Q, lw.wo, lw.bo, (int)BT, Q, C);
    be.residual_forward(mid, x, tmp_.data(), BT * C);
    be.rmsnorm_forward(ln2, ln2_rstd_.data() + s * BT, mid, lw.ln2, (int)BT, C, eps, 1, C, 0.f);
    linear_fwd(gate, I_, ln2, C, lw.wg, lw.bg, (int)BT, C, I_);
    linear_fwd(up, I_, ln2, C, lw.wu, lw.bu, (int)BT, C, I_);
    be.swiglu_forward(act, gate, up, BT * I_);
    linear_fwd(tmp_.data(), C, act, I_, lw.wd, lw.bd, (int)BT, I_, C);
    be.residual_forward(out, mid, tmp_.data(), BT * C);
  }
  const long last = keep ? cfg_.num_layers : cfg_.num_layers % 2;
  be.rmsnorm_forward(normf_.data(), normf_rstd_.data(), resid_.data() + last * BT * C, w.norm, (int)BT, C, eps, 1, C,
                     0.f);
  hidden_ = normf_.data();
}

void LlamaExec::trunk_backward(const Backward& a, float* d_h, float* gblock) {
  const int B = B_, T = T_, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const Backend& be = *be_;
  const Llama::Weights& w = w_;
  const Llama::Weights g = layout_.weights(gblock);  // all null without parameter gradients
  if (d_res_.size() != (size_t)BT * C) {  // scratch, one layer at a time
    d_res_.reset(be_, BT * C);
    d_tmp_.reset(be_, BT * C);
    d_qkv_.reset(be_, BT * QKV_);
    d_atty_.reset(be_, BT * Q);
    d_act_.reset(be_, BT * I_);
    d_gate_.reset(be_, BT * I_);
    d_up_.reset(be_, BT * I_);
    if (!be.host_memory) d_att_scratch_.reset(be_, (size_t)B * NH_ * T * T);  // the CPU ops need none
  }

  d_res_.zero();
  be.rmsnorm_backward(d_res_.data(), g.norm, d_h, resid_.data() + (long)cfg_.num_layers * BT * C, w.norm,
                      normf_rstd_.data(), (int)BT, C, 1, C, 0.f);
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
    linear_bwd(d_act_.data(), I_, lg.wd, lg.bd, d_res_.data(), C, act, I_, lw.wd, (int)BT, I_, C);
    d_gate_.zero();
    d_up_.zero();
    be.swiglu_backward(d_gate_.data(), d_up_.data(), d_act_.data(), gate, up, BT * I_);
    d_tmp_.zero();
    linear_bwd(d_tmp_.data(), C, lg.wg, lg.bg, d_gate_.data(), I_, ln2, C, lw.wg, (int)BT, C, I_);
    linear_bwd(d_tmp_.data(), C, lg.wu, lg.bu, d_up_.data(), I_, ln2, C, lw.wu, (int)BT, C, I_);
    be.rmsnorm_backward(d_res_.data(), lg.ln2, d_tmp_.data(), mid, lw.ln2, ln2_rstd_.data() + l * BT, (int)BT, C, 1, C,
                        0.f);
    // mid = x + o(attention(rope(q(ln1(x))), rope(k(ln1(x))), v(ln1(x))))
    d_atty_.zero();
    linear_bwd(d_atty_.data(), Q, lg.wo, lg.bo, d_res_.data(), C, atty, Q, lw.wo, (int)BT, Q, C);
    d_qkv_.zero();
    be.gqa_attention_backward(d_qkv_.data(), d_att_scratch_.data(), d_atty_.data(), qkv, att, B, T, NH_, NKV_, HD_, 0);
    // through the rotation, in place: d_pre = Rᵀ d_post on the q and k heads
    be.rope_backward(d_qkv_.data(), d_qkv_.data(), (int)BT, T, QKV_, NH_ + NKV_, HD_, rope_.cos(),
                     rope_.sin(), 0, false);
    d_tmp_.zero();
    linear_bwd(d_tmp_.data(), C, lg.wq, lg.bq, d_qkv_.data(), QKV_, ln1, C, lw.wq, (int)BT, C, Q);
    linear_bwd(d_tmp_.data(), C, lg.wk, lg.bk, d_qkv_.data() + Q, QKV_, ln1, C, lw.wk, (int)BT, C, KV);
    linear_bwd(d_tmp_.data(), C, lg.wv, lg.bv, d_qkv_.data() + Q + KV, QKV_, ln1, C, lw.wv, (int)BT, C, KV);
    be.rmsnorm_backward(d_res_.data(), lg.ln1, d_tmp_.data(), x, lw.ln1, ln1_rstd_.data() + l * BT, (int)BT, C, 1, C,
                        0.f);
  }
  if (used_embeds_) {
    if (a.d_embeds) be.residual_backward(a.d_embeds, nullptr, d_res_.data(), BT * C);
  } else if (gblock) {
    be.embedding_backward(g.embed, nullptr, d_res_.data(), tokens_.data(), B, T, C, 0, 1.f);
  }
}

void LlamaExec::trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                             const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_, P = cache.prefix_len();
  const long N = (long)R * Tn;
  const float eps = cfg_.rms_norm_eps;
  ensure_rope(pos_base + Tn);
  const Backend& be = *be_;
  for (auto* b : {&dec_x_, &dec_ln_, &dec_proj_}) b->ensure(be_, N * C);
  dec_qkv_.ensure(be_, N * QKV_);
  dec_atty_.ensure(be_, N * Q);
  for (auto* b : {&dec_gate_, &dec_up_, &dec_act_}) b->ensure(be_, N * I_);
  dec_last_.ensure(be_, (size_t)R * C);
  const Llama::Weights& w = w_;
  float *x = dec_x_.data(), *ln = dec_ln_.data(), *qkv = dec_qkv_.data(), *atty = dec_atty_.data(), *proj = dec_proj_.data();
  if (tokens) be.embedding_forward(x, tokens, w.embed, nullptr, R, Tn, C, 0, 1.f);
  else be.copy(x, embeds, sizeof(float) * N * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    const Llama::LayerWeights& lw = w.layers[l];
    be.rmsnorm_forward(ln, nullptr, x, lw.ln1, (int)N, C, eps, 1, C, 0.f);
    linear_fwd(qkv, QKV_, ln, C, lw.wq, lw.bq, (int)N, C, Q);
    linear_fwd(qkv + Q, QKV_, ln, C, lw.wk, lw.bk, (int)N, C, KV);
    linear_fwd(qkv + Q + KV, QKV_, ln, C, lw.wv, lw.bv, (int)N, C, KV);
    be.rope_forward(qkv, qkv, (int)N, Tn, QKV_, NH_ + NKV_, HD_, rope_.cos(), rope_.sin(), pos_base);
    be.gqa_attention_decode_forward(atty, cache.k_layer(l), cache.v_layer(l), P ? cache.prefix->k_layer(l) : nullptr,
                                    P ? cache.prefix->v_layer(l) : nullptr, qkv, R, Tn, NH_, NKV_, HD_, P,
                                    cache.length, cache.capacity, 0);
    linear_fwd(proj, C, atty, Q, lw.wo, lw.bo, (int)N, Q, C);
    be.residual_forward(x, x, proj, N * C);
    be.rmsnorm_forward(ln, nullptr, x, lw.ln2, (int)N, C, eps, 1, C, 0.f);
    linear_fwd(dec_gate_.data(), I_, ln, C, lw.wg, lw.bg, (int)N, C, I_);
    linear_fwd(dec_up_.data(), I_, ln, C, lw.wu, lw.bu, (int)N, C, I_);
    be.swiglu_forward(dec_act_.data(), dec_gate_.data(), dec_up_.data(), N * I_);
    linear_fwd(proj, C, dec_act_.data(), I_, lw.wd, lw.bd, (int)N, I_, C);
    be.residual_forward(x, x, proj, N * C);
  }
  // the final norm on each row's last new position only
  be.gather_rows(dec_last_.data(), x, R, C, Tn, Tn - 1);
  be.rmsnorm_forward(dec_h_.data(), nullptr, dec_last_.data(), w.norm, R, C, eps, 1, C, 0.f);
}

}  // namespace gradmm
