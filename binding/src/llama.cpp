#include "llama.h"

#include <cstdint>

namespace gradmm {
namespace {

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
  const int C_ = cfg_.hidden_size, NH_ = cfg_.num_heads, NKV_ = cfg_.num_kv_heads, HD_ = cfg_.head_dim,
            I_ = cfg_.intermediate_size;
  if (cfg_.vocab_size <= 0 || C_ <= 0 || I_ <= 0 || cfg_.num_layers <= 0 || NH_ <= 0 || NKV_ <= 0 || HD_ <= 0 ||
      cfg_.max_seq_len <= 0)
    throw std::invalid_argument("Llama: invalid config (sizes must be positive)");
  if (NH_ % NKV_ != 0)
    throw std::invalid_argument("Llama: num_attention_heads must be a multiple of num_key_value_heads");
  if (HD_ % 2 != 0) throw std::invalid_argument("Llama: head_dim must be even (rotary embeddings)");
  if (cfg_.fused_qkv_gate_up && (cfg_.attention_bias || cfg_.o_proj_bias || cfg_.mlp_bias))
    throw std::invalid_argument("Llama: fused qkv_proj / gate_up_proj tensors take no biases");
  if (!(cfg_.rope_theta > 0) || !(cfg_.rms_norm_eps > 0)) throw std::invalid_argument("Llama: rope_theta and rms_norm_eps must be positive");
  if (cfg_.rope_scaling.llama3) {
    const RopeScaling& s = cfg_.rope_scaling;
    if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor) ||
        !(s.original_max_position_embeddings > 0))
      throw std::invalid_argument("Llama: invalid llama3 rope_scaling (need factor > 0, high_freq_factor > low_freq_factor > 0)");
  }
  if (cfg_.rope_scaling.longrope) {
    const RopeScaling& s = cfg_.rope_scaling;
    bool ok = !s.llama3 && (int)s.short_factor.size() == HD_ / 2 && s.attention_factor > 0 && s.original_max_position_embeddings > 0;
    for (double f : s.short_factor) ok = ok && f > 0;
    if (!ok) throw std::invalid_argument("Llama: invalid longrope rope_scaling (need head_dim / 2 positive short factors, attention_factor > 0)");
  }
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
      if (cfg_.fused_qkv_gate_up) {  // one table entry for q|k|v and one for gate|up; k, v, up inside them
        const std::string p = "model.layers." + std::to_string(l) + ".";
        if (t == kWq) {
          const size_t o = add(p + "self_attn.qkv_proj.weight", {Q + 2 * KV, C});
          layer_off_[l][kWq] = o, layer_off_[l][kWk] = o + Q * C, layer_off_[l][kWv] = o + (Q + KV) * C;
          continue;
        }
        if (t == kWg) {
          const size_t o = add(p + "mlp.gate_up_proj.weight", {2 * I, C});
          layer_off_[l][kWg] = o, layer_off_[l][kWu] = o + I * C;
          continue;
        }
        if (t == kWk || t == kWv || t == kWu) continue;
      }
      const bool present = (t == kBq || t == kBk || t == kBv)   ? cfg_.attention_bias
                           : t == kBo                           ? cfg_.o_proj_bias
                           : (t == kBg || t == kBu || t == kBd) ? cfg_.mlp_bias
                                                                : true;
      layer_off_[l][t] = present ? add("model.layers." + std::to_string(l) + "." + kLayerNames[t], shapes[t]) : kAbsent;
    }
  norm_off_ = add("model.norm.weight", {C});
  head_off_ = cfg_.tie_word_embeddings ? embed_off_ : add("lm_head.weight", {V, C});
  nparams_ = offset;
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

}  // namespace gradmm
