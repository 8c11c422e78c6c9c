#include "gpt2.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops.h"
#include "threadpool.h"

namespace gradmm {
namespace {

void zero(std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.f); }

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
  params_.assign(offset, 0.f);
}

GPT2::Weights GPT2::weights_of(const GPT2Config& cfg, float* base) {
  const long V = cfg.vocab_size, C = cfg.channels, L = cfg.num_layers;
  Weights w;
  float* p = base;
  auto take = [&](long n) {
    float* r = p;
    p += n;
    return r;
  };
  w.wte = take(V * C);
  w.wpe = take((long)cfg.max_seq_len * C);
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

float* GPT2::grads() {
  if (grads_.size() != params_.size()) grads_.assign(params_.size(), 0.f);
  return grads_.data();
}

void GPT2::zero_grads() { zero(grads_); }

void GPT2::ensure_activations(int B, int T, bool keep) {
  if (T > cfg_.max_seq_len) throw std::invalid_argument("sequence length exceeds the model's max_seq_len (" + std::to_string(T) + " > " + std::to_string(cfg_.max_seq_len) + ")");
  const int layers = keep ? cfg_.num_layers : 1;
  if (acts_.B == B && acts_.T == T && acts_.layers == layers) return;
  const long BT = (long)B * T, C = cfg_.channels, L = layers, NH = cfg_.num_heads;
  Activations& a = acts_;
  a.B = B;
  a.T = T;
  a.layers = layers;
  a.encoded.assign(BT * C, 0);
  a.ln1.assign(L * BT * C, 0);
  a.ln1_mean.assign(L * BT, 0);
  a.ln1_rstd.assign(L * BT, 0);
  a.qkv.assign(L * BT * 3 * C, 0);
  a.atty.assign(L * BT * C, 0);
  a.att.assign(L * B * NH * T * T, 0);
  a.attproj.assign(L * BT * C, 0);
  a.residual2.assign(L * BT * C, 0);
  a.ln2.assign(L * BT * C, 0);
  a.ln2_mean.assign(L * BT, 0);
  a.ln2_rstd.assign(L * BT, 0);
  a.fch.assign(L * BT * 4 * C, 0);
  a.fch_gelu.assign(L * BT * 4 * C, 0);
  a.fcproj.assign(L * BT * C, 0);
  a.residual3.assign(L * BT * C, 0);
  a.lnf.assign(BT * C, 0);
  a.lnf_mean.assign(BT, 0);
  a.lnf_rstd.assign(BT, 0);
}

float GPT2::forward(const ForwardArgs& args, const std::atomic<bool>* cancel) {
  const int B = args.B, T = args.T, C = cfg_.channels, V = cfg_.vocab_size, NH = cfg_.num_heads;
  const long BT = (long)B * T;
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
    embedding_forward(a.encoded.data(), args.tokens, w.wte, w.wpe, B, T, C, 0);
  } else {
    input_embedding_forward(a.encoded.data(), args.embeds, w.wpe, B, T, C, 0);
  }
  const float* residual = a.encoded.data();
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    const long s = keep ? l : 0;  // the layer's activation slot (an inference forward reuses slot 0; res3 is then
                                  // written over the layer's input only after its last read, in res2)
    const long oC = s * BT * C;
    float* ln1 = a.ln1.data() + oC;
    float* qkv = a.qkv.data() + 3 * oC;
    float* atty = a.atty.data() + oC;
    float* att = a.att.data() + s * B * NH * T * T;
    float* attproj = a.attproj.data() + oC;
    float* res2 = a.residual2.data() + oC;
    float* ln2 = a.ln2.data() + oC;
    float* fch = a.fch.data() + 4 * oC;
    float* fch_gelu = a.fch_gelu.data() + 4 * oC;
    float* fcproj = a.fcproj.data() + oC;
    float* res3 = a.residual3.data() + oC;
    layernorm_forward(ln1, a.ln1_mean.data() + s * BT, a.ln1_rstd.data() + s * BT, residual, w.ln1w + l * C,
                      w.ln1b + l * C, (int)BT, C, cfg_.layer_norm_eps);
    matmul_forward(qkv, ln1, w.qkvw + (long)l * 3 * C * C, w.qkvb + l * 3 * C, (int)BT, C, 3 * C);
    attention_forward(atty, att, qkv, B, T, C, NH);
    matmul_forward(attproj, atty, w.attprojw + (long)l * C * C, w.attprojb + l * C, (int)BT, C, C);
    residual_forward(res2, residual, attproj, BT * C);
    layernorm_forward(ln2, a.ln2_mean.data() + s * BT, a.ln2_rstd.data() + s * BT, res2, w.ln2w + l * C,
                      w.ln2b + l * C, (int)BT, C, cfg_.layer_norm_eps);
    matmul_forward(fch, ln2, w.fcw + (long)l * 4 * C * C, w.fcb + l * 4 * C, (int)BT, C, 4 * C);
    gelu_forward(fch_gelu, fch, BT * 4 * C);
    matmul_forward(fcproj, fch_gelu, w.fcprojw + (long)l * 4 * C * C, w.fcprojb + l * C, (int)BT, 4 * C, C);
    residual_forward(res3, res2, fcproj, BT * C);
    residual = res3;
  }
  layernorm_forward(a.lnf.data(), a.lnf_mean.data(), a.lnf_rstd.data(), residual, w.lnfw, w.lnfb, (int)BT, C,
                    cfg_.layer_norm_eps);

  // lm_head only on the rows that need logits
  return head_.forward(args, a.lnf.data(), BT, C, V, w.wte);
}

void GPT2::backward(const BackwardArgs& args, const std::atomic<bool>* cancel) {
  const int B = acts_.B, T = acts_.T, C = cfg_.channels, V = cfg_.vocab_size, NH = cfg_.num_heads;
  const long BT = (long)B * T;
  if (B == 0) throw std::logic_error("backward called before forward");
  if (acts_.layers != cfg_.num_layers) throw std::logic_error("backward after a forward that kept no activations (keepActivations: false)");
  if (args.from_loss && !head_.has_targets()) throw std::logic_error("backward from loss needs a forward with targets");
  if (args.d_embeds && !used_embeds_) throw std::logic_error("d_embeds requested but the forward took tokens");
  Weights w = weights(params_.data());
  Weights g{};
  if (args.param_grads) g = weights(grads());
  Activations& a = acts_;

  d_res_.assign(BT * C, 0.f);
  d_tmp_.assign(BT * C, 0.f);  // gradient at h (the final layernorm's output)
  d_qkv_.resize(BT * 3 * C);
  d_atty_.resize(BT * C);
  d_fch_.resize(BT * 4 * C);
  d_fch_gelu_.resize(BT * 4 * C);

  head_.backward(args, C, V, w.wte, d_tmp_.data(), args.param_grads ? g.wte : nullptr);
  if (args.d_hidden)
    for (long i = 0; i < BT * C; ++i) d_tmp_[i] += args.d_hidden[i];

  const float* last_residual = cfg_.num_layers > 0 ? a.residual3.data() + (long)(cfg_.num_layers - 1) * BT * C : a.encoded.data();
  layernorm_backward(d_res_.data(), g.lnfw, g.lnfb, d_tmp_.data(), last_residual, w.lnfw, a.lnf_mean.data(),
                     a.lnf_rstd.data(), (int)BT, C);

  auto opt = [&](float* base, long off) { return base ? base + off : nullptr; };
  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    check_cancel(cancel);
    const long oC = l * BT * C;
    const float* residual = l == 0 ? a.encoded.data() : a.residual3.data() + (l - 1) * BT * C;
    // residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
    zero(d_fch_gelu_);
    matmul_backward(d_fch_gelu_.data(), opt(g.fcprojw, (long)l * 4 * C * C), opt(g.fcprojb, l * C), d_res_.data(),
                    a.fch_gelu.data() + 4 * oC, w.fcprojw + (long)l * 4 * C * C, (int)BT, 4 * C, C);
    zero(d_fch_);
    gelu_backward(d_fch_.data(), a.fch.data() + 4 * oC, d_fch_gelu_.data(), BT * 4 * C);
    zero(d_tmp_);
    matmul_backward(d_tmp_.data(), opt(g.fcw, (long)l * 4 * C * C), opt(g.fcb, l * 4 * C), d_fch_.data(),
                    a.ln2.data() + oC, w.fcw + (long)l * 4 * C * C, (int)BT, C, 4 * C);
    layernorm_backward(d_res_.data(), opt(g.ln2w, l * C), opt(g.ln2b, l * C), d_tmp_.data(), a.residual2.data() + oC,
                       w.ln2w + l * C, a.ln2_mean.data() + l * BT, a.ln2_rstd.data() + l * BT, (int)BT, C);
    // residual2 = residual + attproj(attention(qkv(ln1(residual))))
    zero(d_atty_);
    matmul_backward(d_atty_.data(), opt(g.attprojw, (long)l * C * C), opt(g.attprojb, l * C), d_res_.data(),
                    a.atty.data() + oC, w.attprojw + (long)l * C * C, (int)BT, C, C);
    zero(d_qkv_);
    attention_backward(d_qkv_.data(), d_atty_.data(), a.qkv.data() + 3 * oC, a.att.data() + (long)l * B * NH * T * T,
                       B, T, C, NH);
    zero(d_tmp_);
    matmul_backward(d_tmp_.data(), opt(g.qkvw, (long)l * 3 * C * C), opt(g.qkvb, l * 3 * C), d_qkv_.data(),
                    a.ln1.data() + oC, w.qkvw + (long)l * 3 * C * C, (int)BT, C, 3 * C);
    layernorm_backward(d_res_.data(), opt(g.ln1w, l * C), opt(g.ln1b, l * C), d_tmp_.data(), residual, w.ln1w + l * C,
                       a.ln1_mean.data() + l * BT, a.ln1_rstd.data() + l * BT, (int)BT, C);
  }
  if (used_embeds_) input_embedding_backward(args.d_embeds, g.wpe, d_res_.data(), B, T, C, 0);
  else if (args.param_grads) embedding_backward(g.wte, g.wpe, d_res_.data(), tokens_.data(), B, T, C, 0);
}

double GPT2::adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t) {
  float* g = grads();
  const long n = (long)params_.size();
  ensure_adam_state();
  return clip_and_adamw(params_.data(), g, adam_m_.data(), adam_v_.data(), n, lr, beta1, beta2, eps, weight_decay,
                        max_norm, t);
}

KVCache::KVCache(const ModelDims& dims, int rows_, int capacity_, const KVCache* prefix_)
    : rows(rows_), capacity(capacity_), prefix(prefix_), num_layers(dims.num_layers), channels(dims.kv_channels) {
  if (rows <= 0 || capacity <= 0) throw std::invalid_argument("KVCache: rows and capacity must be positive");
  if (prefix && prefix->rows != 1) throw std::invalid_argument("KVCache: a shared prefix must be a one-row cache");
  if (prefix && (prefix->num_layers != num_layers || prefix->channels != channels))
    throw std::invalid_argument("KVCache: prefix belongs to a different model shape");
  k.assign((size_t)num_layers * rows * capacity * channels, 0.f);
  v.assign(k.size(), 0.f);
}

void GPT2::decode(KVCache& cache, const int* tokens, const float* embeds, int Tn, float* logits_out, float* hidden_out,
                  const std::atomic<bool>* cancel) {
  const int R = cache.rows, C = cfg_.channels, V = cfg_.vocab_size, NH = cfg_.num_heads;
  const int P = cache.prefix_len(), pos_base = P + cache.length;
  const long N = (long)R * Tn;
  if ((tokens == nullptr) == (embeds == nullptr)) throw std::invalid_argument("decode: give exactly one of tokens or embeds");
  if (Tn <= 0) throw std::invalid_argument("decode: need at least one new position");
  if (cache.length + Tn > cache.capacity) throw std::invalid_argument("decode: KV cache capacity exceeded");
  if (pos_base + Tn > cfg_.max_seq_len) throw std::invalid_argument("decode: sequence exceeds the model's max_seq_len (" + std::to_string(pos_base) + " + " + std::to_string(Tn) + " > " + std::to_string(cfg_.max_seq_len) + ")");
  if (cache.num_layers != cfg_.num_layers || cache.channels != C) throw std::invalid_argument("decode: cache shape mismatch");
  Weights w = weights(params_.data());
  std::vector<float> x(N * C), ln(N * C), qkv(N * 3 * C), atty(N * C), proj(N * C), fch(N * 4 * C), fchg(N * 4 * C);
  if (tokens) {
    check_ids(tokens, N, V, "decode: token id out of range");
    embedding_forward(x.data(), tokens, w.wte, w.wpe, R, Tn, C, pos_base);
  } else {
    input_embedding_forward(x.data(), embeds, w.wpe, R, Tn, C, pos_base);
  }
  for (int l = 0; l < cfg_.num_layers; ++l) {
    check_cancel(cancel);
    layernorm_forward(ln.data(), (float*)nullptr, (float*)nullptr, x.data(), w.ln1w + l * C, w.ln1b + l * C, (int)N, C,
                      cfg_.layer_norm_eps);
    matmul_forward(qkv.data(), ln.data(), w.qkvw + (long)l * 3 * C * C, w.qkvb + l * 3 * C, (int)N, C, 3 * C);
    attention_decode_forward(atty.data(), cache.k_at(l, 0, 0), cache.v_at(l, 0, 0), P ? cache.prefix->k_at(l, 0, 0) : nullptr,
                             P ? cache.prefix->v_at(l, 0, 0) : nullptr, qkv.data(), R, Tn, C, NH, P, cache.length,
                             cache.capacity);
    matmul_forward(proj.data(), atty.data(), w.attprojw + (long)l * C * C, w.attprojb + l * C, (int)N, C, C);
    residual_forward(x.data(), x.data(), proj.data(), N * C);
    layernorm_forward(ln.data(), (float*)nullptr, (float*)nullptr, x.data(), w.ln2w + l * C, w.ln2b + l * C, (int)N, C,
                      cfg_.layer_norm_eps);
    matmul_forward(fch.data(), ln.data(), w.fcw + (long)l * 4 * C * C, w.fcb + l * 4 * C, (int)N, C, 4 * C);
    gelu_forward(fchg.data(), fch.data(), N * 4 * C);
    matmul_forward(proj.data(), fchg.data(), w.fcprojw + (long)l * 4 * C * C, w.fcprojb + l * C, (int)N, 4 * C, C);
    residual_forward(x.data(), x.data(), proj.data(), N * C);
  }
  cache.length += Tn;
  // final layernorm and lm_head on each row's last new position only
  std::vector<float> last((size_t)R * C), h((size_t)R * C);
  for (int r = 0; r < R; ++r) std::memcpy(&last[(size_t)r * C], x.data() + ((long)r * Tn + Tn - 1) * C, C * sizeof(float));
  layernorm_forward(h.data(), (float*)nullptr, (float*)nullptr, last.data(), w.lnfw, w.lnfb, R, C, cfg_.layer_norm_eps);
  if (hidden_out) std::memcpy(hidden_out, h.data(), h.size() * sizeof(float));
  if (logits_out) gemm<float>(false, true, R, V, C, h.data(), C, w.wte, C, logits_out, V, false);
}

}  // namespace gradmm
