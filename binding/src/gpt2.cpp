#include "gpt2.h"

namespace gradmm {
namespace {

// Per-layer tensors in storage order; each is stored for all layers back to back.
struct LayerTensor {
  const char* hf_name;  // inside "h.{l}."
  int rows_mult, cols_mult;  // shape in units of C (cols_mult 0 = 1-D)
};
const LayerTensor kLayerTensors[] = {
    {"ln_1.weight", 1, 0},      {"ln_1.bias", 1, 0},        {"attn.c_attn.weight", 1, 3}, {"attn.c_attn.bias", 3, 0},
    {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0}, {"ln_2.weight", 1, 0},        {"ln_2.bias", 1, 0},
    {"mlp.c_fc.weight", 1, 4},  {"mlp.c_fc.bias", 4, 0},    {"mlp.c_proj.weight", 4, 1},  {"mlp.c_proj.bias", 1, 0},
};

}  // namespace

GPT2::GPT2(const GPT2Config& cfg) : cfg_(cfg) {
  dims_ = {cfg.vocab_size, cfg.max_seq_len, cfg.channels, cfg.num_layers, cfg.channels};
  const long V = cfg.vocab_size, C = cfg.channels, L = cfg.num_layers;
  if (V <= 0 || C <= 0 || L <= 0 || cfg.num_heads <= 0 || cfg.max_seq_len <= 0 || C % cfg.num_heads != 0)
    throw std::invalid_argument("GPT2: invalid config (sizes must be positive and channels divisible by heads)");
  size_t offset = 0;
  auto add = [&](std::string name, std::vector<long> shape) {
    table_.push_back({std::move(name), offset, std::move(shape)});
    offset += table_.back().numel();
  };
  add("wte.weight", {V, C});
  add("wpe.weight", {(long)cfg.max_seq_len, C});
  for (const auto& t : kLayerTensors)
    for (long l = 0; l < L; ++l) {
      std::vector<long> shape = t.cols_mult ? std::vector<long>{t.rows_mult * C, t.cols_mult * C}
                                            : std::vector<long>{t.rows_mult * C};
      add("h." + std::to_string(l) + "." + t.hf_name, shape);
    }
  add("ln_f.weight", {C});
  add("ln_f.bias", {C});
  nparams_ = offset;
}

GPT2::Weights GPT2::weights(float* base) const {
  const long V = cfg_.vocab_size, C = cfg_.channels, L = cfg_.num_layers;
  Weights w{};
  if (!base) return w;
  float* p = base;
  auto take = [&](long n) {
    float* r = p;
    p += n;
    return r;
  };
  w.wte = take(V * C);
  w.wpe = take((long)cfg_.max_seq_len * C);
  w.ln1w = take(L * C);
  w.ln1b = take(L * C);
  w.qkvw = take(L * 3 * C * C);
  w.qkvb = take(L * 3 * C);
  w.attprojw = take(L * C * C);
  w.attprojb = take(L * C);
  w.ln2w = take(L * C);
  w.ln2b = take(L * C);
  w.fcw = take(L * 4 * C * C);
  w.fcb = take(L * 4 * C);
  w.fcprojw = take(L * 4 * C * C);
  w.fcprojb = take(L * C);
  w.lnfw = take(C);
  w.lnfb = take(C);
  return w;
}

}  // namespace gradmm
