#include "gemma.h"

#include <cmath>

namespace gradmm {
namespace {

// Per-layer tensors in storage order, inside "model.layers.{l}." (LayerWeights' order).
const char* const kLayerNames[] = {
    "input_layernorm.weight",          "self_attn.q_proj.weight",         "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",         "self_attn.o_proj.weight",         "self_attn.q_norm.weight",
    "self_attn.k_norm.weight",         "post_attention_layernorm.weight", "pre_feedforward_layernorm.weight",
    "post_feedforward_layernorm.weight", "mlp.gate_proj.weight",          "mlp.up_proj.weight",
    "mlp.down_proj.weight",
};

// HF rope_type "linear": the default frequencies divided by the factor (float32, as transformers does)
std::vector<float> gemma_inv_freq(int hd, double theta, double factor) {
  std::vector<float> inv = rope_inv_freq<float>(hd, theta, RopeScaling{});
  if (factor != 1)
    for (float& f : inv) f = f / (float)factor;
  return inv;
}

}  // namespace

Gemma3::Gemma3(const Gemma3Config& cfg) : cfg_(cfg) {
  if (cfg_.num_kv_heads == 0) cfg_.num_kv_heads = cfg_.num_heads;
  if (cfg_.num_heads > 0 && cfg_.head_dim == 0) cfg_.head_dim = cfg_.hidden_size / cfg_.num_heads;
  if (cfg_.sliding.empty()) cfg_.sliding.assign(std::max(cfg_.num_layers, 0), false);
  const int C_ = cfg_.hidden_size, NH_ = cfg_.num_heads, NKV_ = cfg_.num_kv_heads, HD_ = cfg_.head_dim,
            I_ = cfg_.intermediate_size;
  if (cfg_.vocab_size <= 0 || C_ <= 0 || I_ <= 0 || cfg_.num_layers <= 0 || NH_ <= 0 || NKV_ <= 0 || HD_ <= 0 ||
      cfg_.max_seq_len <= 0)
    throw std::invalid_argument("Gemma3: invalid config (sizes must be positive)");
  if (NH_ % NKV_ != 0)
    throw std::invalid_argument("Gemma3: num_attention_heads must be a multiple of num_key_value_heads");
  if (HD_ % 2 != 0) throw std::invalid_argument("Gemma3: head_dim must be even (rotary embeddings)");
  if ((int)cfg_.sliding.size() != cfg_.num_layers)
    throw std::invalid_argument("Gemma3: layer_types must name one kind per layer");
  bool any_sliding = false;
  for (bool s : cfg_.sliding) any_sliding = any_sliding || s;
  if (any_sliding && cfg_.sliding_window <= 0)
    throw std::invalid_argument("Gemma3: sliding_window must be positive where layers slide");
  if (!(cfg_.rope_theta > 0) || !(cfg_.rope_local_theta > 0) || !(cfg_.rms_norm_eps > 0) ||
      !(cfg_.rope_scaling_factor > 0) || !(cfg_.rope_local_scaling_factor > 0))
    throw std::invalid_argument("Gemma3: rope thetas, rope scaling factors and rms_norm_eps must be positive");
  if (cfg_.query_pre_attn_scalar != 0 && cfg_.query_pre_attn_scalar != HD_)
    throw std::invalid_argument("Gemma3: query_pre_attn_scalar other than head_dim is not supported");
  dims_ = {cfg_.vocab_size, cfg_.max_seq_len, C_, cfg_.num_layers, NKV_ * HD_};

  const long V = cfg_.vocab_size, C = C_, Q = (long)NH_ * HD_, KV = (long)NKV_ * HD_, I = I_, HD = HD_;
  size_t offset = 0;
  auto add = [&](std::string name, std::vector<long> shape) {
    table_.push_back({std::move(name), offset, std::move(shape)});
    size_t o = offset;
    offset += table_.back().numel();
    return o;
  };
  embed_off_ = add("model.embed_tokens.weight", {V, C});
  const std::vector<long> shapes[kLayerTensors] = {{C},  {Q, C}, {KV, C}, {KV, C}, {C, Q}, {HD}, {HD},
                                                   {C},  {C},    {C},     {I, C},  {I, C}, {C, I}};
  layer_off_.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l)
    for (int t = 0; t < kLayerTensors; ++t)
      layer_off_[l][t] = add("model.layers." + std::to_string(l) + "." + kLayerNames[t], shapes[t]);
  norm_off_ = add("model.norm.weight", {C});
  head_off_ = cfg_.tie_word_embeddings ? embed_off_ : add("lm_head.weight", {V, C});
  nparams_ = offset;
  inv_freq_ = gemma_inv_freq(HD_, cfg_.rope_theta, cfg_.rope_scaling_factor);
  inv_freq_local_ = gemma_inv_freq(HD_, cfg_.rope_local_theta, cfg_.rope_local_scaling_factor);
  embed_scale_ = (float)std::sqrt((double)C_);
}

Gemma3::Weights Gemma3::weights(float* base) const {
  Weights w{};
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  w.embed = at(embed_off_);
  w.norm = at(norm_off_);
  w.lm_head = at(head_off_);
  w.layers.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const auto& o = layer_off_[l];
    w.layers[l] = {at(o[0]), at(o[1]), at(o[2]), at(o[3]),  at(o[4]),  at(o[5]), at(o[6]),
                   at(o[7]), at(o[8]), at(o[9]), at(o[10]), at(o[11]), at(o[12])};
  }
  return w;
}

}  // namespace gradmm
