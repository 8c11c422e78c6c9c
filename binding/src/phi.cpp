#include "phi.h"

namespace gradmm {
namespace {

const char* const kLayerNames[] = {
    "input_layernorm.weight", "input_layernorm.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.dense.weight", "self_attn.dense.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
    "mlp.fc2.bias",
};

}  // namespace

Phi::Phi(const PhiConfig& cfg) : cfg_(cfg) {
  if (cfg_.num_kv_heads == 0) cfg_.num_kv_heads = cfg_.num_heads;
  const int C_ = cfg_.hidden_size, NH_ = cfg_.num_heads, NKV_ = cfg_.num_kv_heads, I_ = cfg_.intermediate_size;
  if (cfg_.vocab_size <= 0 || C_ <= 0 || I_ <= 0 || cfg_.num_layers <= 0 || NH_ <= 0 || NKV_ <= 0 ||
      cfg_.max_seq_len <= 0)
    throw std::invalid_argument("Phi: invalid config (sizes must be positive)");
  if (C_ % NH_ != 0) throw std::invalid_argument("Phi: hidden_size must be a multiple of num_attention_heads");
  if (NH_ % NKV_ != 0) throw std::invalid_argument("Phi: num_attention_heads must be a multiple of num_key_value_heads");
  const int HD_ = C_ / NH_;
  if (cfg_.rotary_dim == 0) cfg_.rotary_dim = HD_;
  if (cfg_.rotary_dim < 2 || cfg_.rotary_dim > HD_ || cfg_.rotary_dim % 2 != 0)
    throw std::invalid_argument("Phi: rotary_dim must be even and between 2 and head_dim");
  if (!(cfg_.rope_theta > 0) || !(cfg_.layer_norm_eps > 0))
    throw std::invalid_argument("Phi: rope_theta and layer_norm_eps must be positive");
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
  const std::vector<long> shapes[kLayerTensors] = {{C}, {C}, {Q, C}, {Q}, {KV, C}, {KV}, {KV, C},
                                                   {KV}, {C, Q}, {C}, {I, C}, {I}, {C, I}, {C}};
  layer_off_.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l)
    for (int t = 0; t < kLayerTensors; ++t)
      layer_off_[l][t] = add("model.layers." + std::to_string(l) + "." + kLayerNames[t], shapes[t]);
  lnf_off_ = add("model.final_layernorm.weight", {C});
  add("model.final_layernorm.bias", {C});
  head_off_ = cfg_.tie_word_embeddings ? embed_off_ : add("lm_head.weight", {V, C});
  head_bias_off_ = add("lm_head.bias", {V});
  nparams_ = offset;
  inv_freq_ = rope_inv_freq<float>(cfg_.rotary_dim, cfg_.rope_theta, RopeScaling{});
}

Phi::Weights Phi::weights(float* base) const {
  Weights w{};
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  w.embed = at(embed_off_);
  w.lnfw = at(lnf_off_);
  w.lnfb = at(lnf_off_ + cfg_.hidden_size);
  w.lm_head = at(head_off_);
  w.lm_head_bias = at(head_bias_off_);
  w.layers.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const auto& o = layer_off_[l];
    w.layers[l] = {at(o[0]), at(o[1]), at(o[2]), at(o[3]), at(o[4]),  at(o[5]),  at(o[6]),
                   at(o[7]), at(o[8]), at(o[9]), at(o[10]), at(o[11]), at(o[12]), at(o[13])};
  }
  return w;
}

}  // namespace gradmm
