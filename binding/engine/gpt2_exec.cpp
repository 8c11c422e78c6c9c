// GPT-2 through the backend table: forward (every layer's activations kept for the backward, or one layer's for an
// inference forward), backward, decoding.
#include <stdexcept>

#include "model.h"

namespace gradmm {

GPT2Exec::GPT2Exec(const Backend* be, const GPT2Config& cfg)
    : CausalExec(be, GPT2(cfg).dims(), GPT2(cfg).num_params()), layout_(cfg), cfg_(cfg) {
  w_ = layout_.weights(params_.data());
}

void GPT2Exec::ensure(int B, int T, bool keep) {
  const int layers = keep ? cfg_.num_layers : 1;
  if (B == act_B_ && T == act_T_ && layers == act_layers_) return;
  const size_t BT = (size_t)B * T, C = cfg_.channels, L = layers, NH = cfg_.num_heads;
  for (auto* b : {&encoded_, &ln1_, &ln1_mean_, &ln1_rstd_, &qkv_, &atty_, &att_, &attproj_, &res2_, &ln2_, &ln2_mean_,
                  &ln2_rstd_, &fch_, &fch_gelu_, &fcproj_, &res3_, &lnf_, &lnf_mean_, &lnf_rstd_, &d_res_, &d_tmp_,
                  &d_qkv_, &d_atty_, &d_fch_, &d_fch_gelu_, &d_att_scratch_})
    b->release();  // before allocating the new shape (peak memory)
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
  act_B_ = B;
  act_T_ = T;
  act_layers_ = layers;
}

void GPT2Exec::trunk_forward(const Forward& f) {
  const int B = f.B, T = f.T, C = cfg_.channels, NH = cfg_.num_heads;
  const long BT = (long)B * T;
  const bool keep = f.keep_activations;
  ensure(B, T, keep);
  const Backend& be = *be_;
  const GPT2::Weights& w = w_;
  if (f.tokens) be.embedding_forward(encoded_.data(), tokens_.data(), w.wte, w.wpe, B, T, C, 0, 1.f);
  else be.input_embedding_forward(encoded_.data(), f.embeds, w.wpe, B, T, C, 0);
  const float* residual = encoded_.data();
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(f.cancel);
    // the layer's activation slot: an inference forward reuses slot 0 (res3 is then written over the layer's input
    // only after its last read, in res2)
    const long s = keep ? l : 0, oC = s * BT * C;
    float* ln1 = ln1_.data() + oC;
    float* qkv = qkv_.data() + 3 * oC;
    float* atty = atty_.data() + oC;
    float* att = att_.data() + s * B * NH * T * T;
    float* attproj = attproj_.data() + oC;
    float* res2 = res2_.data() + oC;
    float* ln2 = ln2_.data() + oC;
    float* fch = fch_.data() + 4 * oC;
    float* fch_gelu = fch_gelu_.data() + 4 * oC;
    float* fcproj = fcproj_.data() + oC;
    float* res3 = res3_.data() + oC;
    be.layernorm_forward(ln1, ln1_mean_.data() + s * BT, ln1_rstd_.data() + s * BT, residual, w.ln1w + l * C,
                         w.ln1b + l * C, (int)BT, C, cfg_.layer_norm_eps);
    matmul_fwd(qkv, ln1, w.qkvw + (long)l * 3 * C * C, w.qkvb + l * 3 * C, (int)BT, C, 3 * C);
    be.gqa_attention_forward(atty, att, qkv, B, T, NH, NH, C / NH, 0);
    matmul_fwd(attproj, atty, w.attprojw + (long)l * C * C, w.attprojb + l * C, (int)BT, C, C);
    be.residual_forward(res2, residual, attproj, BT * C);
    be.layernorm_forward(ln2, ln2_mean_.data() + s * BT, ln2_rstd_.data() + s * BT, res2, w.ln2w + l * C,
                         w.ln2b + l * C, (int)BT, C, cfg_.layer_norm_eps);
    matmul_fwd(fch, ln2, w.fcw + (long)l * 4 * C * C, w.fcb + l * 4 * C, (int)BT, C, 4 * C);
    be.gelu_forward(fch_gelu, fch, BT * 4 * C);
    matmul_fwd(fcproj, fch_gelu, w.fcprojw + (long)l * 4 * C * C, w.fcprojb + l * C, (int)BT, 4 * C, C);
    be.residual_forward(res3, res2, fcproj, BT * C);
    residual = res3;
  }
  be.layernorm_forward(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), residual, w.lnfw, w.lnfb, (int)BT, C,
                       cfg_.layer_norm_eps);
  hidden_ = lnf_.data();
}

void GPT2Exec::trunk_backward(const Backward& a, float* d_h, float* gblock) {
  const int B = B_, T = T_, C = cfg_.channels, NH = cfg_.num_heads;
  const long BT = (long)B * T;
  const Backend& be = *be_;
  const GPT2::Weights& w = w_;
  const GPT2::Weights g = layout_.weights(gblock);
  auto opt = [&](float* base, long off) { return base ? base + off : nullptr; };
  if (d_res_.size() != (size_t)BT * C) {  // scratch, one layer at a time
    d_res_.reset(be_, BT * C);
    d_tmp_.reset(be_, BT * C);
    d_qkv_.reset(be_, BT * 3 * C);
    d_atty_.reset(be_, BT * C);
    d_fch_.reset(be_, BT * 4 * C);
    d_fch_gelu_.reset(be_, BT * 4 * C);
    if (!be.host_memory) d_att_scratch_.reset(be_, (size_t)B * NH * T * T);  // the CPU ops need none
  }

  d_res_.zero();
  const float* last_residual = res3_.data() + (long)(cfg_.num_layers - 1) * BT * C;
  be.layernorm_backward(d_res_.data(), g.lnfw, g.lnfb, d_h, last_residual, w.lnfw, lnf_mean_.data(), lnf_rstd_.data(),
                        (int)BT, C);
  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(a.cancel);
    const long oC = l * BT * C;
    const float* residual = l == 0 ? encoded_.data() : res3_.data() + (l - 1) * BT * C;
    // residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
    d_fch_gelu_.zero();
    matmul_bwd(d_fch_gelu_.data(), opt(g.fcprojw, (long)l * 4 * C * C), opt(g.fcprojb, l * C), d_res_.data(),
                       fch_gelu_.data() + 4 * oC, w.fcprojw + (long)l * 4 * C * C, (int)BT, 4 * C, C);
    d_fch_.zero();
    be.gelu_backward(d_fch_.data(), fch_.data() + 4 * oC, d_fch_gelu_.data(), BT * 4 * C);
    d_tmp_.zero();
    matmul_bwd(d_tmp_.data(), opt(g.fcw, (long)l * 4 * C * C), opt(g.fcb, l * 4 * C), d_fch_.data(),
                       ln2_.data() + oC, w.fcw + (long)l * 4 * C * C, (int)BT, C, 4 * C);
    be.layernorm_backward(d_res_.data(), opt(g.ln2w, l * C), opt(g.ln2b, l * C), d_tmp_.data(), res2_.data() + oC,
                          w.ln2w + l * C, ln2_mean_.data() + l * BT, ln2_rstd_.data() + l * BT, (int)BT, C);
    // residual2 = residual + attproj(attention(qkv(ln1(residual))))
    d_atty_.zero();
    matmul_bwd(d_atty_.data(), opt(g.attprojw, (long)l * C * C), opt(g.attprojb, l * C), d_res_.data(),
                       atty_.data() + oC, w.attprojw + (long)l * C * C, (int)BT, C, C);
    d_qkv_.zero();
    be.gqa_attention_backward(d_qkv_.data(), d_att_scratch_.data(), d_atty_.data(), qkv_.data() + 3 * oC,
                              att_.data() + (long)l * B * NH * T * T, B, T, NH, NH, C / NH, 0);
    d_tmp_.zero();
    matmul_bwd(d_tmp_.data(), opt(g.qkvw, (long)l * 3 * C * C), opt(g.qkvb, l * 3 * C), d_qkv_.data(),
                       ln1_.data() + oC, w.qkvw + (long)l * 3 * C * C, (int)BT, C, 3 * C);
    be.layernorm_backward(d_res_.data(), opt(g.ln1w, l * C), opt(g.ln1b, l * C), d_tmp_.data(), residual,
                          w.ln1w + l * C, ln1_mean_.data() + l * BT, ln1_rstd_.data() + l * BT, (int)BT, C);
  }
  if (used_embeds_) be.input_embedding_backward(a.d_embeds, g.wpe, d_res_.data(), B, T, C, 0);
  else if (gblock) be.embedding_backward(g.wte, g.wpe, d_res_.data(), tokens_.data(), B, T, C, 0, 1.f);
}

void GPT2Exec::trunk_decode(ExecKVCache& cache, const int* tokens, const float* embeds, int Tn, int pos_base,
                            const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = cfg_.channels, NH = cfg_.num_heads, P = cache.prefix_len();
  const long N = (long)R * Tn;
  const Backend& be = *be_;
  for (auto* b : {&dec_x_, &dec_ln_, &dec_atty_, &dec_proj_}) b->ensure(be_, N * C);
  dec_qkv_.ensure(be_, N * 3 * C);
  dec_fch_.ensure(be_, N * 4 * C);
  dec_fchg_.ensure(be_, N * 4 * C);
  dec_last_.ensure(be_, (size_t)R * C);
  const GPT2::Weights& w = w_;
  float *x = dec_x_.data(), *ln = dec_ln_.data(), *qkv = dec_qkv_.data(), *atty = dec_atty_.data(), *proj = dec_proj_.data();
  if (tokens) be.embedding_forward(x, tokens, w.wte, w.wpe, R, Tn, C, pos_base, 1.f);
  else be.input_embedding_forward(x, embeds, w.wpe, R, Tn, C, pos_base);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    be.layernorm_forward(ln, nullptr, nullptr, x, w.ln1w + l * C, w.ln1b + l * C, (int)N, C, cfg_.layer_norm_eps);
    matmul_fwd(qkv, ln, w.qkvw + (long)l * 3 * C * C, w.qkvb + l * 3 * C, (int)N, C, 3 * C);
    be.gqa_attention_decode_forward(atty, cache.k_layer(l), cache.v_layer(l), P ? cache.prefix->k_layer(l) : nullptr,
                                    P ? cache.prefix->v_layer(l) : nullptr, qkv, R, Tn, NH, NH, C / NH, P,
                                    cache.length, cache.capacity, 0);
    matmul_fwd(proj, atty, w.attprojw + (long)l * C * C, w.attprojb + l * C, (int)N, C, C);
    be.residual_forward(x, x, proj, N * C);
    be.layernorm_forward(ln, nullptr, nullptr, x, w.ln2w + l * C, w.ln2b + l * C, (int)N, C, cfg_.layer_norm_eps);
    matmul_fwd(dec_fch_.data(), ln, w.fcw + (long)l * 4 * C * C, w.fcb + l * 4 * C, (int)N, C, 4 * C);
    be.gelu_forward(dec_fchg_.data(), dec_fch_.data(), N * 4 * C);
    matmul_fwd(proj, dec_fchg_.data(), w.fcprojw + (long)l * 4 * C * C, w.fcprojb + l * C, (int)N, 4 * C, C);
    be.residual_forward(x, x, proj, N * C);
  }
  // the final layernorm on each row's last new position only
  be.gather_rows(dec_last_.data(), x, R, C, Tn, Tn - 1);
  be.layernorm_forward(dec_h_.data(), nullptr, nullptr, dec_last_.data(), w.lnfw, w.lnfb, R, C, cfg_.layer_norm_eps);
}

}  // namespace gradmm
