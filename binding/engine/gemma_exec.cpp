// Gemma 3 through the backend table: forward (every layer's activations kept for the backward, or one layer's for an
// inference forward), backward, decoding. Per block (HF Gemma3DecoderLayer):
//     q, k, v = q_proj(n), k_proj(n), v_proj(n)  with n = input_norm(x)
//     q, k    = rope(q_norm(q)), rope(k_norm(k))   (per head; the rotary base and the window by the layer's kind)
//     mid     = x + post_attention_norm(o_proj(attention(q, k, v)))
//     out     = mid + post_feedforward_norm(down(gelu_tanh(gate(h)) ⊙ up(h))),  h = pre_feedforward_norm(mid)
// Every norm is the RMSNorm op with weight offset 1 ((1 + w) · x / rms(x)).
#include <algorithm>
#include <stdexcept>

#include "model.h"

namespace gradmm {

Gemma3Exec::Gemma3Exec(const Backend* be, const Gemma3Config& cfg)
    : CausalExec(be, Gemma3(cfg).dims(), Gemma3(cfg).num_params()), layout_(cfg), cfg_(layout_.config()) {
  C_ = cfg_.hidden_size;
  NH_ = cfg_.num_heads;
  NKV_ = cfg_.num_kv_heads;
  HD_ = cfg_.head_dim;
  I_ = cfg_.intermediate_size;
  QKV_ = (NH_ + 2 * NKV_) * HD_;
  w_ = layout_.weights(params_.data());
}

void Gemma3Exec::ensure_rope(int npos) {
  for (int local = 0; local < 2; ++local) rope_[local].ensure(be_, npos, cfg_.max_seq_len, layout_.inv_freq(local == 1));
}

void Gemma3Exec::norm_fwd(float* out, float* rstd, const float* x, const float* w, int N) {
  be_->rmsnorm_forward(out, rstd, x, w, N, C_, cfg_.rms_norm_eps, 1, C_, 1.f);
}
void Gemma3Exec::norm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                          int N) {
  be_->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C_, 1, C_, 1.f);
}

void Gemma3Exec::qk_norm_fwd(float* out, float* rstd, const float* in, int l, int N) {
  const Gemma3::LayerWeights& lw = w_.layers[l];
  const long Q = (long)NH_ * HD_;
  be_->rmsnorm_forward(out, rstd, in, lw.q_norm, N, HD_, cfg_.rms_norm_eps, NH_, QKV_, 1.f);
  be_->rmsnorm_forward(out + Q, rstd ? rstd + (long)N * NH_ : nullptr, in + Q, lw.k_norm, N, HD_, cfg_.rms_norm_eps,
                       NKV_, QKV_, 1.f);
}
void Gemma3Exec::qk_norm_bwd(float* din, float* dq_norm, float* dk_norm, const float* dout, const float* in,
                             const float* rstd, int l, int N) {
  const Gemma3::LayerWeights& lw = w_.layers[l];
  const long Q = (long)NH_ * HD_;
  be_->rmsnorm_backward(din, dq_norm, dout, in, lw.q_norm, rstd, N, HD_, NH_, QKV_, 1.f);
  be_->rmsnorm_backward(din + Q, dk_norm, dout + Q, in + Q, lw.k_norm, rstd + (long)N * NH_, N, HD_, NKV_, QKV_,
                        1.f);
}

void Gemma3Exec::rope(float* qkv, int l, int N, int T, int pos0, bool backward) {
  const RopeCache& r = rope_[cfg_.sliding[l] ? 1 : 0];
  // q heads and k heads are adjacent in the packed row: NH + NKV heads in place
  if (backward) be_->rope_backward(qkv, qkv, N, T, QKV_, NH_ + NKV_, HD_, r.cos(), r.sin(), pos0, false);
  else be_->rope_forward(qkv, qkv, N, T, QKV_, NH_ + NKV_, HD_, r.cos(), r.sin(), pos0);
}

void Gemma3Exec::ensure(int B, int T, bool keep) {
  ensure_rope(T);
  const int layers = keep ? cfg_.num_layers : 1;
  if (B == act_B_ && T == act_T_ && layers == act_layers_) return;
  const size_t BT = (size_t)B * T, C = C_, L = layers, Q = (size_t)NH_ * HD_, I = I_, H = NH_ + NKV_;
  for (auto* b : {&resid_, &ln1_, &ln1_rstd_, &qkv_pre_, &qk_rstd_, &qkv_, &att_, &atty_, &attn_out_, &pa_rstd_,
                  &mid_, &ln2_, &ln2_rstd_, &gate_, &up_, &act_, &mlp_out_, &pf_rstd_, &normf_, &normf_rstd_, &tmp_,
                  &d_res_, &d_tmp_, &d_out_, &d_qkv_, &d_qkv_pre_, &d_atty_, &d_act_, &d_gate_, &d_up_,
                  &d_att_scratch_})
    b->release();  // before allocating the new shape (peak memory)
  resid_.reset(be_, (keep ? L + 1 : 2) * BT * C);
  ln1_.reset(be_, L * BT * C);
  ln1_rstd_.reset(be_, L * BT);
  qkv_pre_.reset(be_, L * BT * QKV_);  // the q|k projections before their norms (the v part unused)
  qk_rstd_.reset(be_, L * BT * H);
  qkv_.reset(be_, L * BT * QKV_);
  att_.reset(be_, L * B * NH_ * T * T);
  atty_.reset(be_, L * BT * Q);
  attn_out_.reset(be_, L * BT * C);
  pa_rstd_.reset(be_, L * BT);
  mid_.reset(be_, L * BT * C);
  ln2_.reset(be_, L * BT * C);
  ln2_rstd_.reset(be_, L * BT);
  gate_.reset(be_, L * BT * I);
  up_.reset(be_, L * BT * I);
  act_.reset(be_, L * BT * I);
  mlp_out_.reset(be_, L * BT * C);
  pf_rstd_.reset(be_, L * BT);
  normf_.reset(be_, BT * C);
  normf_rstd_.reset(be_, BT);
  tmp_.reset(be_, BT * C);
  act_B_ = B;
  act_T_ = T;
  act_layers_ = layers;
}

void Gemma3Exec::trunk_forward(const Forward& f) {
  const int B = f.B, T = f.T, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_, H = NH_ + NKV_;
  const long BT = (long)B * T;
  const bool keep = f.keep_activations;
  ensure(B, T, keep);
  const Backend& be = *be_;
  const Gemma3::Weights& w = w_;
  // token ids: the scaled lookup; input embeddings are taken as given (HF scales only inside the lookup)
  const float scale = layout_.embed_scale();
  if (f.tokens) be.embedding_forward(resid_.data(), tokens_.data(), w.embed, nullptr, B, T, C, 0, scale);
  else be.copy(resid_.data(), f.embeds, sizeof(float) * BT * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(f.cancel);
    const Gemma3::LayerWeights& lw = w.layers[l];
    const long s = keep ? l : 0;  // the layer's activation slot
    const float* x = resid_.data() + (keep ? l : l % 2) * BT * C;
    float* ln1 = ln1_.data() + s * BT * C;
    float* qkv_pre = qkv_pre_.data() + s * BT * QKV_;
    float* qkv = qkv_.data() + s * BT * QKV_;
    float* att = att_.data() + s * B * NH_ * T * T;
    float* atty = atty_.data() + s * BT * Q;
    float* attn_out = attn_out_.data() + s * BT * C;
    float* mid = mid_.data() + s * BT * C;
    float* ln2 = ln2_.data() + s * BT * C;
    float* gate = gate_.data() + s * BT * I_;
    float* up = up_.data() + s * BT * I_;
    float* act = act_.data() + s * BT * I_;
    float* mlp_out = mlp_out_.data() + s * BT * C;
    float* out = resid_.data() + (keep ? l + 1 : (l + 1) % 2) * BT * C;
    norm_fwd(ln1, ln1_rstd_.data() + s * BT, x, lw.ln_in, (int)BT);
    linear_fwd(qkv_pre, QKV_, ln1, C, lw.wq, nullptr, (int)BT, C, Q);
    linear_fwd(qkv_pre + Q, QKV_, ln1, C, lw.wk, nullptr, (int)BT, C, KV);
    linear_fwd(qkv + Q + KV, QKV_, ln1, C, lw.wv, nullptr, (int)BT, C, KV);
    qk_norm_fwd(qkv, qk_rstd_.data() + s * BT * H, qkv_pre, l, (int)BT);
    rope(qkv, l, (int)BT, T, 0, false);
    be.gqa_attention_forward(atty, att, qkv, B, T, NH_, NKV_, HD_, window(l));
    linear_fwd(attn_out, C, atty, Q, lw.wo, nullptr, (int)BT, Q, C);
    norm_fwd(tmp_.data(), pa_rstd_.data() + s * BT, attn_out, lw.ln_post_attn, (int)BT);
    be.residual_forward(mid, x, tmp_.data(), BT * C);
    norm_fwd(ln2, ln2_rstd_.data() + s * BT, mid, lw.ln_pre_ff, (int)BT);
    linear_fwd(gate, I_, ln2, C, lw.wg, nullptr, (int)BT, C, I_);
    linear_fwd(up, I_, ln2, C, lw.wu, nullptr, (int)BT, C, I_);
    be.geglu_forward(act, gate, up, BT * I_);
    linear_fwd(mlp_out, C, act, I_, lw.wd, nullptr, (int)BT, I_, C);
    norm_fwd(tmp_.data(), pf_rstd_.data() + s * BT, mlp_out, lw.ln_post_ff, (int)BT);
    be.residual_forward(out, mid, tmp_.data(), BT * C);
  }
  const long last = keep ? cfg_.num_layers : cfg_.num_layers % 2;
  norm_fwd(normf_.data(), normf_rstd_.data(), resid_.data() + last * BT * C, w.norm, (int)BT);
  hidden_ = normf_.data();
}

void Gemma3Exec::trunk_backward(const Backward& a, float* d_h, float* gblock) {
  const int B = B_, T = T_, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_, H = NH_ + NKV_;
  const long BT = (long)B * T;
  const Backend& be = *be_;
  const Gemma3::Weights& w = w_;
  const Gemma3::Weights g = layout_.weights(gblock);  // all null without parameter gradients
  if (d_res_.size() != (size_t)BT * C) {  // scratch, one layer at a time
    d_res_.reset(be_, BT * C);
    d_tmp_.reset(be_, BT * C);
    d_out_.reset(be_, BT * C);
    d_qkv_.reset(be_, BT * QKV_);
    d_qkv_pre_.reset(be_, BT * QKV_);
    d_atty_.reset(be_, BT * Q);
    d_act_.reset(be_, BT * I_);
    d_gate_.reset(be_, BT * I_);
    d_up_.reset(be_, BT * I_);
    if (!be.host_memory) d_att_scratch_.reset(be_, (size_t)B * NH_ * T * T);  // the CPU ops need none
  }

  d_res_.zero();
  norm_bwd(d_res_.data(), g.norm, d_h, resid_.data() + (long)cfg_.num_layers * BT * C, w.norm, normf_rstd_.data(),
           (int)BT);
  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(a.cancel);
    const Gemma3::LayerWeights& lw = w.layers[l];
    const Gemma3::LayerWeights& lg = g.layers[l];
    const float* x = resid_.data() + l * BT * C;
    const float* ln1 = ln1_.data() + l * BT * C;
    const float* qkv_pre = qkv_pre_.data() + l * BT * QKV_;
    const float* qkv = qkv_.data() + l * BT * QKV_;
    const float* att = att_.data() + (long)l * B * NH_ * T * T;
    const float* atty = atty_.data() + l * BT * Q;
    const float* attn_out = attn_out_.data() + l * BT * C;
    const float* mid = mid_.data() + l * BT * C;
    const float* ln2 = ln2_.data() + l * BT * C;
    const float* gate = gate_.data() + l * BT * I_;
    const float* up = up_.data() + l * BT * I_;
    const float* act = act_.data() + l * BT * I_;
    const float* mlp_out = mlp_out_.data() + l * BT * C;
    // out = mid + post_ff_norm(down(geglu(gate(ln2), up(ln2)))),  ln2 = pre_ff_norm(mid): d_res passes to mid
    d_out_.zero();
    norm_bwd(d_out_.data(), lg.ln_post_ff, d_res_.data(), mlp_out, lw.ln_post_ff, pf_rstd_.data() + l * BT, (int)BT);
    d_act_.zero();
    linear_bwd(d_act_.data(), I_, lg.wd, nullptr, d_out_.data(), C, act, I_, lw.wd, (int)BT, I_, C);
    d_gate_.zero();
    d_up_.zero();
    be.geglu_backward(d_gate_.data(), d_up_.data(), d_act_.data(), gate, up, BT * I_);
    d_tmp_.zero();
    linear_bwd(d_tmp_.data(), C, lg.wg, nullptr, d_gate_.data(), I_, ln2, C, lw.wg, (int)BT, C, I_);
    linear_bwd(d_tmp_.data(), C, lg.wu, nullptr, d_up_.data(), I_, ln2, C, lw.wu, (int)BT, C, I_);
    norm_bwd(d_res_.data(), lg.ln_pre_ff, d_tmp_.data(), mid, lw.ln_pre_ff, ln2_rstd_.data() + l * BT, (int)BT);
    // mid = x + post_attn_norm(o(attention(...))): d_res passes to x
    d_out_.zero();
    norm_bwd(d_out_.data(), lg.ln_post_attn, d_res_.data(), attn_out, lw.ln_post_attn, pa_rstd_.data() + l * BT,
             (int)BT);
    d_atty_.zero();
    linear_bwd(d_atty_.data(), Q, lg.wo, nullptr, d_out_.data(), C, atty, Q, lw.wo, (int)BT, Q, C);
    d_qkv_.zero();
    be.gqa_attention_backward(d_qkv_.data(), d_att_scratch_.data(), d_atty_.data(), qkv, att, B, T, NH_, NKV_, HD_,
                              window(l));
    rope(d_qkv_.data(), l, (int)BT, T, 0, true);  // through the rotation, in place on the q and k heads
    d_qkv_pre_.zero();
    qk_norm_bwd(d_qkv_pre_.data(), lg.q_norm, lg.k_norm, d_qkv_.data(), qkv_pre, qk_rstd_.data() + l * BT * H, l,
                (int)BT);
    d_tmp_.zero();
    linear_bwd(d_tmp_.data(), C, lg.wq, nullptr, d_qkv_pre_.data(), QKV_, ln1, C, lw.wq, (int)BT, C, Q);
    linear_bwd(d_tmp_.data(), C, lg.wk, nullptr, d_qkv_pre_.data() + Q, QKV_, ln1, C, lw.wk, (int)BT, C, KV);
    linear_bwd(d_tmp_.data(), C, lg.wv, nullptr, d_qkv_.data() + Q + KV, QKV_, ln1, C, lw.wv, (int)BT, C, KV);
    norm_bwd(d_res_.data(), lg.ln_in, d_tmp_.data(), x, lw.ln_in, ln1_rstd_.data() + l * BT, (int)BT);
  }
  if (used_embeds_) {
    if (a.d_embeds) be.residual_backward(a.d_embeds, nullptr, d_res_.data(), BT * C);
  } else if (gblock) {
    be.embedding_backward(g.embed, nullptr, d_res_.data(), tokens_.data(), B, T, C, 0, layout_.embed_scale());
  }
}

void Gemma3Exec::trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                              const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = C_, Q = NH_ * HD_, KV = NKV_ * HD_, P = cache.prefix_len();
  const long N = (long)R * Tn;
  ensure_rope(pos_base + Tn);
  const Backend& be = *be_;
  for (auto* b : {&dec_x_, &dec_ln_, &dec_proj_}) b->ensure(be_, N * C);
  dec_qkv_.ensure(be_, N * QKV_);
  dec_atty_.ensure(be_, N * Q);
  for (auto* b : {&dec_gate_, &dec_up_, &dec_act_}) b->ensure(be_, N * I_);
  dec_last_.ensure(be_, (size_t)R * C);
  const Gemma3::Weights& w = w_;
  float *x = dec_x_.data(), *ln = dec_ln_.data(), *qkv = dec_qkv_.data(), *atty = dec_atty_.data(),
        *proj = dec_proj_.data();
  if (tokens) be.embedding_forward(x, tokens, w.embed, nullptr, R, Tn, C, 0, layout_.embed_scale());
  else be.copy(x, embeds, sizeof(float) * N * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    const Gemma3::LayerWeights& lw = w.layers[l];
    norm_fwd(ln, nullptr, x, lw.ln_in, (int)N);
    linear_fwd(qkv, QKV_, ln, C, lw.wq, nullptr, (int)N, C, Q);
    linear_fwd(qkv + Q, QKV_, ln, C, lw.wk, nullptr, (int)N, C, KV);
    linear_fwd(qkv + Q + KV, QKV_, ln, C, lw.wv, nullptr, (int)N, C, KV);
    qk_norm_fwd(qkv, nullptr, qkv, l, (int)N);  // in place
    rope(qkv, l, (int)N, Tn, pos_base, false);
    be.gqa_attention_decode_forward(atty, cache.k_layer(l), cache.v_layer(l), P ? cache.prefix->k_layer(l) : nullptr,
                                    P ? cache.prefix->v_layer(l) : nullptr, qkv, R, Tn, NH_, NKV_, HD_, P,
                                    cache.length, cache.capacity, window(l));
    linear_fwd(proj, C, atty, Q, lw.wo, nullptr, (int)N, Q, C);
    norm_fwd(proj, nullptr, proj, lw.ln_post_attn, (int)N);
    be.residual_forward(x, x, proj, N * C);
    norm_fwd(ln, nullptr, x, lw.ln_pre_ff, (int)N);
    linear_fwd(dec_gate_.data(), I_, ln, C, lw.wg, nullptr, (int)N, C, I_);
    linear_fwd(dec_up_.data(), I_, ln, C, lw.wu, nullptr, (int)N, C, I_);
    be.geglu_forward(dec_act_.data(), dec_gate_.data(), dec_up_.data(), N * I_);
    linear_fwd(proj, C, dec_act_.data(), I_, lw.wd, nullptr, (int)N, I_, C);
    norm_fwd(proj, nullptr, proj, lw.ln_post_ff, (int)N);
    be.residual_forward(x, x, proj, N * C);
  }
  // the final norm on each row's last new position only
  be.gather_rows(dec_last_.data(), x, R, C, Tn, Tn - 1);
  norm_fwd(dec_h_.data(), nullptr, dec_last_.data(), w.norm, R);
}

}  // namespace gradmm
