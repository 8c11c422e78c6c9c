#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "ops.h"
#include "threadpool.h"

namespace gradmm {
namespace {

void zero(std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.f); }

constexpr size_t kAbsent = SIZE_MAX;

// Per-layer tensors, in storage order, inside "model.layers.{l}.".
enum LayerTensor {
  kLn1, kWq, kBq, kWk, kBk, kWv, kBv, kWo, kBo, kLn2, kWg, kBg, kWu, kBu, kWd, kBd, kNumLayerTensors
};
const char* const kLayerNames[kNumLayerTensors] = {
    "input_layernorm.weight",   "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
    "self_attn.k_proj.bias",    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
    "self_attn.o_proj.bias",    "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.gate_proj.bias",
    "mlp.up_proj.weight",       "mlp.up_proj.bias",        "mlp.down_proj.weight",  "mlp.down_proj.bias",
};

}  // namespace

Llama::Llama(const LlamaConfig& cfg) : cfg_(cfg) {
  if (cfg_.num_kv_heads == 0) cfg_.num_kv_heads = cfg_.num_heads;
  if (cfg_.num_heads > 0 && cfg_.head_dim == 0) cfg_.head_dim = cfg_.hidden_size / cfg_.num_heads;
  C_ = cfg_.hidden_size;
  NH_ = cfg_.num_heads;
  NKV_ = cfg_.num_kv_heads;
  HD_ = cfg_.head_dim;
  I_ = cfg_.intermediate_size;
  if (cfg_.vocab_size <= 0 || C_ <= 0 || I_ <= 0 || cfg_.num_layers <= 0 || NH_ <= 0 || NKV_ <= 0 || HD_ <= 0 ||
      cfg_.max_seq_len <= 0)
    throw std::invalid_argument("Llama: invalid config (sizes must be positive)");
  if (NH_ % NKV_ != 0)
    throw std::invalid_argument("Llama: num_attention_heads must be a multiple of num_key_value_heads");
  if (HD_ % 2 != 0) throw std::invalid_argument("Llama: head_dim must be even (rotary embeddings)");
  if (!(cfg_.rope_theta > 0) || !(cfg_.rms_norm_eps > 0)) throw std::invalid_argument("Llama: rope_theta and rms_norm_eps must be positive");
  if (cfg_.rope_scaling.llama3) {
    const RopeScaling& s = cfg_.rope_scaling;
    if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor) ||
        !(s.original_max_position_embeddings > 0))
      throw std::invalid_argument("Llama: invalid llama3 rope_scaling (need factor > 0, high_freq_factor > low_freq_factor > 0)");
  }
  QKV_ = (NH_ + 2 * NKV_) * HD_;
  dims_ = {cfg_.vocab_size, cfg_.max_seq_len, C_, cfg_.num_layers, NKV_ * HD_};

  const long V = cfg_.vocab_size, C = C_, Q = (long)NH_ * HD_, KV = (long)NKV_ * HD_, I = I_;
  size_t offset = 0;
  auto add = [&](std::string name, std::vector<long> shape) {
    table_.push_back({std::move(name), offset, std::move(shape)});
    size_t o = offset;
    offset += table_.back().numel();
    return o;
  };
  embed_off_ = add("model.embed_tokens.weight", {V, C});
  const std::vector<long> shapes[kNumLayerTensors] = {{C},    {Q, C}, {Q}, {KV, C}, {KV}, {KV, C}, {KV}, {C, Q},
                                                       {C},    {C},    {I, C}, {I},  {I, C},  {I},  {C, I},  {C}};
  layer_off_.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l)
    for (int t = 0; t < kNumLayerTensors; ++t) {
      const bool present = (t == kBq || t == kBk || t == kBv)   ? cfg_.attention_bias
                           : t == kBo                           ? cfg_.o_proj_bias
                           : (t == kBg || t == kBu || t == kBd) ? cfg_.mlp_bias
                                                                : true;
      layer_off_[l][t] = present ? add("model.layers." + std::to_string(l) + "." + kLayerNames[t], shapes[t]) : kAbsent;
    }
  norm_off_ = add("model.norm.weight", {C});
  head_off_ = cfg_.tie_word_embeddings ? embed_off_ : add("lm_head.weight", {V, C});
  params_.assign(offset, 0.f);
  inv_freq_ = rope_inv_freq<float>(HD_, cfg_.rope_theta, cfg_.rope_scaling);
}

Llama::Weights Llama::weights(float* base) const {
  Weights w{};
  auto at = [&](size_t off) { return base && off != kAbsent ? base + off : nullptr; };
  w.embed = at(embed_off_);
  w.norm = at(norm_off_);
  w.lm_head = at(head_off_);
  w.layers.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const auto& o = layer_off_[l];
    w.layers[l] = {at(o[kLn1]), at(o[kWq]), at(o[kBq]), at(o[kWk]), at(o[kBk]), at(o[kWv]), at(o[kBv]), at(o[kWo]),
                   at(o[kBo]),  at(o[kLn2]), at(o[kWg]), at(o[kBg]), at(o[kWu]), at(o[kBu]), at(o[kWd]), at(o[kBd])};
  }
  return w;
}

float* Llama::grads() {
  if (grads_.size() != params_.size()) grads_.assign(params_.size(), 0.f);
  return grads_.data();
}

void Llama::zero_grads() { zero(grads_); }

void Llama::ensure_rope(int npos) {
  if (npos <= rope_npos_) return;
  // grow geometrically (decoding adds a few positions at a time), never past max_seq_len
  const int n = std::min(cfg_.max_seq_len, std::max(npos, std::min(cfg_.max_seq_len, 2 * rope_npos_)));
  const int half = HD_ / 2;
  rope_cos_.resize((size_t)n * half);
  rope_sin_.resize((size_t)n * half);
  rope_tables(rope_cos_.data() + (size_t)rope_npos_ * half, rope_sin_.data() + (size_t)rope_npos_ * half, inv_freq_,
              rope_npos_, n - rope_npos_);
  rope_npos_ = n;
}

void Llama::ensure_activations(int B, int T, bool keep) {
  if (T > cfg_.max_seq_len) throw std::invalid_argument("sequence length exceeds the model's max_seq_len (" + std::to_string(T) + " > " + std::to_string(cfg_.max_seq_len) + ")");
  ensure_rope(T);
  const int layers = keep ? cfg_.num_layers : 1;
  if (acts_.B == B && acts_.T == T && acts_.layers == layers) return;
  const long BT = (long)B * T, C = C_, L = layers;
  Activations& a = acts_;
  a.B = B;
  a.T = T;
  a.layers = layers;
  a.resid.assign((keep ? L + 1 : 2) * BT * C, 0);
  a.resid_mid.assign(L * BT * C, 0);
  a.ln1.assign(L * BT * C, 0);
  a.ln1_rstd.assign(L * BT, 0);
  a.qkv.assign(L * BT * QKV_, 0);
  a.att.assign(L * B * NH_ * (long)T * T, 0);
  a.atty.assign(L * BT * NH_ * HD_, 0);
  a.ln2.assign(L * BT * C, 0);
  a.ln2_rstd.assign(L * BT, 0);
  a.gate.assign(L * BT * I_, 0);
  a.up.assign(L * BT * I_, 0);
  a.act.assign(L * BT * I_, 0);
  a.normf.assign(BT * C, 0);
  a.normf_rstd.assign(BT, 0);
  tmp_.assign(BT * C, 0);
}

float Llama::forward(const ForwardArgs& args, const std::atomic<bool>* cancel) {
  const int B = args.B, T = args.T, C = C_, V = cfg_.vocab_size, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  const float eps = cfg_.rms_norm_eps;
  if ((args.tokens == nullptr) == (args.embeds == nullptr))
    throw std::invalid_argument("forward: give exactly one of tokens or embeds");
  const bool keep = args.keep_activations;
  ensure_activations(B, T, keep);
  Weights w = weights(params_.data());
  Activations& a = acts_;
  used_embeds_ = args.embeds != nullptr;
  if (args.tokens) {
    check_ids(args.tokens, BT, V, "forward: token id out of range");
    tokens_.assign(args.tokens, args.tokens + BT);
    for (long i = 0; i < BT; ++i)
      std::memcpy(a.resid.data() + i * C, w.embed + (long)args.tokens[i] * C, C * sizeof(float));
  } else {
    std::memcpy(a.resid.data(), args.embeds, BT * C * sizeof(float));
  }
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    const LayerWeights& lw = w.layers[l];
    const long s = keep ? l : 0;  // the layer's activation slot
    const float* x = a.resid.data() + (keep ? l : l % 2) * BT * C;
    float* ln1 = a.ln1.data() + s * BT * C;
    float* qkv = a.qkv.data() + s * BT * QKV_;
    float* att = a.att.data() + s * B * NH_ * T * T;
    float* atty = a.atty.data() + s * BT * Q;
    float* mid = a.resid_mid.data() + s * BT * C;
    float* ln2 = a.ln2.data() + s * BT * C;
    float* gate = a.gate.data() + s * BT * I_;
    float* up = a.up.data() + s * BT * I_;
    float* act = a.act.data() + s * BT * I_;
    float* out = a.resid.data() + (keep ? l + 1 : (l + 1) % 2) * BT * C;
    rmsnorm_forward(ln1, a.ln1_rstd.data() + s * BT, x, lw.ln1, (int)BT, C, eps);
    linear_forward(qkv, QKV_, ln1, C, lw.wq, lw.bq, (int)BT, C, Q);
    linear_forward(qkv + Q, QKV_, ln1, C, lw.wk, lw.bk, (int)BT, C, KV);
    linear_forward(qkv + Q + KV, QKV_, ln1, C, lw.wv, lw.bv, (int)BT, C, KV);
    // q heads and k heads are adjacent in the packed row: rotate NH + NKV heads in place
    rope_forward(qkv, qkv, (int)BT, T, QKV_, NH_ + NKV_, HD_, rope_cos_.data(), rope_sin_.data(), 0);
    gqa_attention_forward(atty, att, qkv, B, T, NH_, NKV_, HD_);
    linear_forward(tmp_.data(), C, atty, Q, lw.wo, lw.bo, (int)BT, Q, C);
    residual_forward(mid, x, tmp_.data(), BT * C);
    rmsnorm_forward(ln2, a.ln2_rstd.data() + s * BT, mid, lw.ln2, (int)BT, C, eps);
    linear_forward(gate, I_, ln2, C, lw.wg, lw.bg, (int)BT, C, I_);
    linear_forward(up, I_, ln2, C, lw.wu, lw.bu, (int)BT, C, I_);
    swiglu_forward(act, gate, up, BT * I_);
    linear_forward(tmp_.data(), C, act, I_, lw.wd, lw.bd, (int)BT, I_, C);
    residual_forward(out, mid, tmp_.data(), BT * C);
  }
  const long last = keep ? cfg_.num_layers : cfg_.num_layers % 2;
  rmsnorm_forward(a.normf.data(), a.normf_rstd.data(), a.resid.data() + last * BT * C, w.norm, (int)BT, C, eps);

  // lm_head only on the rows that need logits
  return head_.forward(args, a.normf.data(), BT, C, V, w.lm_head);
}

void Llama::backward(const BackwardArgs& args, const std::atomic<bool>* cancel) {
  const int B = acts_.B, T = acts_.T, C = C_, V = cfg_.vocab_size, Q = NH_ * HD_, KV = NKV_ * HD_;
  const long BT = (long)B * T;
  if (B == 0) throw std::logic_error("backward called before forward");
  if (acts_.layers != cfg_.num_layers) throw std::logic_error("backward after a forward that kept no activations (keepActivations: false)");
  if (args.from_loss && !head_.has_targets()) throw std::logic_error("backward from loss needs a forward with targets");
  if (args.d_embeds && !used_embeds_) throw std::logic_error("d_embeds requested but the forward took tokens");
  Weights w = weights(params_.data());
  Weights g = weights(args.param_grads ? grads() : nullptr);
  Activations& a = acts_;

  d_res_.assign(BT * C, 0.f);
  d_tmp_.assign(BT * C, 0.f);  // gradient at h (the final norm's output)
  d_qkv_.resize(BT * QKV_);
  d_atty_.resize(BT * Q);
  d_act_.resize(BT * I_);
  d_gate_.resize(BT * I_);
  d_up_.resize(BT * I_);

  head_.backward(args, C, V, w.lm_head, d_tmp_.data(), args.param_grads ? g.lm_head : nullptr);
  if (args.d_hidden)
    for (long i = 0; i < BT * C; ++i) d_tmp_[i] += args.d_hidden[i];

  rmsnorm_backward(d_res_.data(), g.norm, d_tmp_.data(), a.resid.data() + (long)cfg_.num_layers * BT * C, w.norm,
                   a.normf_rstd.data(), (int)BT, C);

  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(cancel);
    const LayerWeights& lw = w.layers[l];
    const LayerWeights& lg = g.layers[l];
    const float* x = a.resid.data() + l * BT * C;
    const float* ln1 = a.ln1.data() + l * BT * C;
    const float* qkv = a.qkv.data() + l * BT * QKV_;
    const float* att = a.att.data() + (long)l * B * NH_ * T * T;
    const float* atty = a.atty.data() + l * BT * Q;
    const float* mid = a.resid_mid.data() + l * BT * C;
    const float* ln2 = a.ln2.data() + l * BT * C;
    const float* gate = a.gate.data() + l * BT * I_;
    const float* up = a.up.data() + l * BT * I_;
    const float* act = a.act.data() + l * BT * I_;
    // out = mid + down(swiglu(gate(ln2(mid)), up(ln2(mid))))
    zero(d_act_);
    linear_backward(d_act_.data(), I_, lg.wd, lg.bd, d_res_.data(), C, act, I_, lw.wd, (int)BT, I_, C);
    zero(d_gate_);
    zero(d_up_);
    swiglu_backward(d_gate_.data(), d_up_.data(), d_act_.data(), gate, up, BT * I_);
    zero(d_tmp_);
    linear_backward(d_tmp_.data(), C, lg.wg, lg.bg, d_gate_.data(), I_, ln2, C, lw.wg, (int)BT, C, I_);
    linear_backward(d_tmp_.data(), C, lg.wu, lg.bu, d_up_.data(), I_, ln2, C, lw.wu, (int)BT, C, I_);
    rmsnorm_backward(d_res_.data(), lg.ln2, d_tmp_.data(), mid, lw.ln2, a.ln2_rstd.data() + l * BT, (int)BT, C);
    // mid = x + o(attention(rope(q(ln1(x))), rope(k(ln1(x))), v(ln1(x))))
    zero(d_atty_);
    linear_backward(d_atty_.data(), Q, lg.wo, lg.bo, d_res_.data(), C, atty, Q, lw.wo, (int)BT, Q, C);
    zero(d_qkv_);
    gqa_attention_backward(d_qkv_.data(), d_atty_.data(), qkv, att, B, T, NH_, NKV_, HD_);
    // through the rotation, in place: d_pre = Rᵀ d_post on the q and k heads
    rope_apply(d_qkv_.data(), d_qkv_.data(), (int)BT, T, QKV_, NH_ + NKV_, HD_, rope_cos_.data(), rope_sin_.data(), 0,
               true, false);
    zero(d_tmp_);
    linear_backward(d_tmp_.data(), C, lg.wq, lg.bq, d_qkv_.data(), QKV_, ln1, C, lw.wq, (int)BT, C, Q);
    linear_backward(d_tmp_.data(), C, lg.wk, lg.bk, d_qkv_.data() + Q, QKV_, ln1, C, lw.wk, (int)BT, C, KV);
    linear_backward(d_tmp_.data(), C, lg.wv, lg.bv, d_qkv_.data() + Q + KV, QKV_, ln1, C, lw.wv, (int)BT, C, KV);
    rmsnorm_backward(d_res_.data(), lg.ln1, d_tmp_.data(), x, lw.ln1, a.ln1_rstd.data() + l * BT, (int)BT, C);
  }
  if (used_embeds_) {
    if (args.d_embeds)
      for (long i = 0; i < BT * C; ++i) args.d_embeds[i] += d_res_[i];
  } else if (args.param_grads) {
    for (long i = 0; i < BT; ++i) {
      float* ge = g.embed + (long)tokens_[i] * C;
      const float* d = d_res_.data() + i * C;
      for (int c = 0; c < C; ++c) ge[c] += d[c];
    }
  }
}

double Llama::adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t) {
  float* g = grads();
  const long n = (long)params_.size();
  ensure_adam_state();
  return clip_and_adamw(params_.data(), g, adam_m_.data(), adam_v_.data(), n, lr, beta1, beta2, eps, weight_decay,
                        max_norm, t);
}

void Llama::decode(KVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out,
                   float* hidden_out, const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = C_, V = cfg_.vocab_size, NH = NH_, hd = HD_, Q = NH_ * HD_, KV = NKV_ * HD_;
  const int P = cache.prefix_len(), pos_base = P + cache.length;
  const long N = (long)R * Tn;
  const float eps = cfg_.rms_norm_eps;
  if ((tokens == nullptr) == (embeds == nullptr)) throw std::invalid_argument("decode: give exactly one of tokens or embeds");
  if (Tn <= 0) throw std::invalid_argument("decode: need at least one new position");
  if (cache.length + Tn > cache.capacity) throw std::invalid_argument("decode: KV cache capacity exceeded");
  if (pos_base + Tn > cfg_.max_seq_len) throw std::invalid_argument("decode: sequence exceeds the model's max_seq_len (" + std::to_string(pos_base) + " + " + std::to_string(Tn) + " > " + std::to_string(cfg_.max_seq_len) + ")");
  if (cache.num_layers != cfg_.num_layers || cache.channels != KV) throw std::invalid_argument("decode: cache shape mismatch");
  ensure_rope(pos_base + Tn);
  Weights w = weights(params_.data());
  std::vector<float> x(N * C), ln(N * C), qkv(N * QKV_), atty(N * Q), proj(N * C), gate(N * I_), up(N * I_), act(N * I_);
  if (tokens) {
    check_ids(tokens, N, V, "decode: token id out of range");
    for (long i = 0; i < N; ++i) std::memcpy(x.data() + i * C, w.embed + (long)tokens[i] * C, C * sizeof(float));
  } else {
    std::memcpy(x.data(), embeds, N * C * sizeof(float));
  }
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    const LayerWeights& lw = w.layers[l];
    rmsnorm_forward(ln.data(), (float*)nullptr, x.data(), lw.ln1, (int)N, C, eps);
    linear_forward(qkv.data(), QKV_, ln.data(), C, lw.wq, lw.bq, (int)N, C, Q);
    linear_forward(qkv.data() + Q, QKV_, ln.data(), C, lw.wk, lw.bk, (int)N, C, KV);
    linear_forward(qkv.data() + Q + KV, QKV_, ln.data(), C, lw.wv, lw.bv, (int)N, C, KV);
    rope_forward(qkv.data(), qkv.data(), (int)N, Tn, QKV_, NH_ + NKV_, hd, rope_cos_.data(), rope_sin_.data(), pos_base);
    gqa_attention_decode_forward(atty.data(), cache.k_at(l, 0, 0), cache.v_at(l, 0, 0),
                                 P ? cache.prefix->k_at(l, 0, 0) : nullptr, P ? cache.prefix->v_at(l, 0, 0) : nullptr,
                                 qkv.data(), R, Tn, NH, NKV_, hd, P, cache.length, cache.capacity);
    linear_forward(proj.data(), C, atty.data(), Q, lw.wo, lw.bo, (int)N, Q, C);
    residual_forward(x.data(), x.data(), proj.data(), N * C);
    rmsnorm_forward(ln.data(), (float*)nullptr, x.data(), lw.ln2, (int)N, C, eps);
    linear_forward(gate.data(), I_, ln.data(), C, lw.wg, lw.bg, (int)N, C, I_);
    linear_forward(up.data(), I_, ln.data(), C, lw.wu, lw.bu, (int)N, C, I_);
    swiglu_forward(act.data(), gate.data(), up.data(), N * I_);
    linear_forward(proj.data(), C, act.data(), I_, lw.wd, lw.bd, (int)N, I_, C);
    residual_forward(x.data(), x.data(), proj.data(), N * C);
  }
  cache.length += Tn;
  // final norm and lm_head on each row's last new position only
  std::vector<float> last((size_t)R * C), h((size_t)R * C);
  for (int r = 0; r < R; ++r)
    std::memcpy(&last[(size_t)r * C], x.data() + ((long)r * Tn + Tn - 1) * C, C * sizeof(float));
  rmsnorm_forward(h.data(), (float*)nullptr, last.data(), w.norm, R, C, eps);
  if (hidden_out) std::memcpy(hidden_out, h.data(), h.size() * sizeof(float));
  if (logits_out) gemm<float>(false, true, R, V, C, h.data(), C, w.lm_head, C, logits_out, V, false);
}

}  // namespace gradmm
