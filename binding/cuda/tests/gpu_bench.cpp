// GPU benchmark of the method (bench/gpu/run.sh): a random GPT-2- or Llama-shaped model on the CUDA backend, a random
// gradient-matching target of n examples, `steps` Adam steps of the engine's x-update on B synthetic sequences of L
// positions, and projections (top-k 200 over the vocabulary, KV-cached decoding after a 16-token prompt). Prints
// one JSON line: milliseconds per x-update step, per f(X) evaluation and per projection, and the estimated seconds
// of one paper-settings batch (500 init candidates, 30 × (50 steps + 1 projection)) and per synthetic sample.
//   gpu_bench [--model gpt2|gpt2-medium|gpt2-large|gpt2-xl|llama-1b] [--B 16] [--L 32] [--free 24] [--n 64]
//             [--steps 10] [--gemm auto|f32|tf32|cublas|cublas-f32] [--layers N] [--backend cuda|cpu-table]
// --layers keeps the model's other sizes with N layers; --backend cpu-table runs the same code on the CPU backend
// table (a check of the benchmark itself on a machine without a GPU, at small sizes).
// llama-1b: Llama-3.2-1B's shape (C 2048, 16 layers, 32 heads / 8 kv heads of 64, MLP 8192, V 128256, tied
// embeddings, rope_theta 500000 with llama3 scaling), 1.24B parameters.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_ops.h"
#include "matcher.h"

using namespace gradmm;

namespace {

struct Xorshift {
  uint64_t s;
  explicit Xorshift(uint64_t seed) : s(seed * 2654435761u + 1) {}
  float uniform() {  // [-1, 1)
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (float)((s >> 40) * (1.0 / 8388608.0)) - 1.f;
  }
};

// The benchmark's model shapes on `be` (parameters zero; main() fills them).
std::unique_ptr<CausalExec> make_model(const Backend* be, const std::string& model, int layers) {
  if (model == "llama-1b") {
    LlamaConfig c;
    c.vocab_size = 128256;
    c.hidden_size = 2048;
    c.intermediate_size = 8192;
    c.num_layers = 16;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 64;
    c.max_seq_len = 131072;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 500000.0;
    c.rope_scaling.llama3 = true;
    c.rope_scaling.factor = 32;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_max_position_embeddings = 8192;
    c.tie_word_embeddings = true;
    if (layers > 0) c.num_layers = layers;
    return std::make_unique<LlamaExec>(be, c);
  }
  GPT2Config cfg;
  cfg.vocab_size = 50257;
  cfg.max_seq_len = 1024;
  if (model == "gpt2") cfg.channels = 768, cfg.num_layers = 12, cfg.num_heads = 12;
  else if (model == "gpt2-medium") cfg.channels = 1024, cfg.num_layers = 24, cfg.num_heads = 16;
  else if (model == "gpt2-large") cfg.channels = 1280, cfg.num_layers = 36, cfg.num_heads = 20;
  else if (model == "gpt2-xl") cfg.channels = 1600, cfg.num_layers = 48, cfg.num_heads = 25;
  else throw std::invalid_argument("unknown model " + model);
  if (layers > 0) cfg.num_layers = layers;
  return std::make_unique<GPT2Exec>(be, cfg);
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "gpt2", gemm = "auto", backend = "cuda";
  int B = 16, L = 32, free_len = 24, n = 64, steps = 10, layers = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model = v;
    else if (k == "--gemm") gemm = v;
    else if (k == "--B") B = std::atoi(v.c_str());
    else if (k == "--L") L = std::atoi(v.c_str());
    else if (k == "--free") free_len = std::atoi(v.c_str());
    else if (k == "--n") n = std::atoi(v.c_str());
    else if (k == "--steps") steps = std::atoi(v.c_str());
    else if (k == "--layers") layers = std::atoi(v.c_str());
    else if (k == "--backend") backend = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const bool on_cpu = backend == "cpu-table";
  const Backend* be = on_cpu ? cpu_table_backend() : cuda_backend();
  if (!be) {
    std::printf("{\"skipped\": \"no CUDA device: %s\"}\n", cuda::probe().error.c_str());
    return 0;
  }
  if (gemm == "f32") cuda::set_gemm_mode(cuda::GemmMode::F32);
  else if (gemm == "tf32") cuda::set_gemm_mode(cuda::GemmMode::TF32);
  else if (gemm == "cublas") cuda::set_gemm_mode(cuda::GemmMode::CublasTF32);
  else if (gemm == "cublas-f32") cuda::set_gemm_mode(cuda::GemmMode::CublasF32);
  else cuda::set_gemm_mode(cuda::GemmMode::Auto);

  std::unique_ptr<CausalExec> ex;
  try {
    ex = make_model(be, model, layers);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  const int C = ex->dims().channels, V = ex->dims().vocab_size;
  try {
    double t0 = now_ms();
    // random parameters: uniform weights of std 0.02, norm weights 1, biases 0 (the model's layout)
    std::vector<float> host(ex->num_params());
    float* p = host.data();
    Xorshift rng(1);
    const float a = 0.02f * std::sqrt(3.f);
    for (const auto& t : ex->layout().param_table()) {
      const bool is_norm = t.name.find("ln_") != std::string::npos || t.name.find("norm") != std::string::npos;
      const bool is_bias = t.name.find(".bias") != std::string::npos;
      for (size_t i = 0; i < t.numel(); ++i)
        p[t.offset + i] = is_norm && !is_bias ? 1.f : is_bias ? 0.f : a * rng.uniform();
    }
    be->to_device(ex->params(), host.data(), sizeof(float) * host.size());
    const float* host_wte = host.data() + (ex->input_embeddings() - ex->params());
    const double t_upload = now_ms() - t0;
    // random target factors a_i = p_i − e_y (p ≈ uniform) and h_i, and its norm from the Gram matrices
    MatchTarget t;
    t.n = n, t.V = V, t.C = C;
    t.A.assign((size_t)n * V, 1.f / V);
    t.H.resize((size_t)n * C);
    for (int i = 0; i < n; ++i) t.A[(size_t)i * V + (i * 7919) % V] -= 1.f;
    for (auto& x : t.H) x = rng.uniform();
    double g2 = 0;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < n; ++k) {
        double aa = 0, hh = 0;
        for (int v = 0; v < V; ++v) aa += (double)t.A[(size_t)i * V + v] * t.A[(size_t)k * V + v];
        for (int c = 0; c < C; ++c) hh += (double)t.H[(size_t)i * C + c] * t.H[(size_t)k * C + c];
        g2 += aa * hh;
      }
    t.norm = std::sqrt(g2) / n;
    ExecTarget et(be, t);
    ExecMatcher em(*ex, et);
    const size_t xs = (size_t)B * L * C;
    std::vector<float> hx(xs), hz(xs), zeros(xs, 0.f);
    for (auto& x : hx) x = 0.5f * rng.uniform();
    for (auto& x : hz) x = 0.5f * rng.uniform();
    BackendBuffer<float> X(be, xs), z(be, xs), lam(be, xs), m(be, xs), v(be, xs);
    be->to_device(X.data(), hx.data(), xs * 4);
    be->to_device(z.data(), hz.data(), xs * 4);
    lam.zero();
    m.zero();
    v.zero();
    XUpdateArgs args;
    args.B = B, args.L = L, args.free_len = free_len, args.label = 123, args.steps = 2;
    int adam_t = 0;
    std::vector<float> losses(std::max(steps, 2));
    em.x_update(X.data(), z.data(), lam.data(), args, m.data(), v.data(), &adam_t, losses.data());  // warm-up
    args.steps = steps;
    double t1 = now_ms();
    const double f = em.x_update(X.data(), z.data(), lam.data(), args, m.data(), v.data(), &adam_t, losses.data());
    const double ms_step = (now_ms() - t1) / steps;
    const int evals = 5;
    t1 = now_ms();
    double fe = 0;
    for (int i = 0; i < evals; ++i) fe = em.match_loss(X.data(), B, L, 123, nullptr);
    const double ms_eval = (now_ms() - t1) / evals;
    // projection: u = x (λ = 0), every token allowed, top-k 200, after a 16-token prompt decoded on the host
    ExecKVCache prefix(be, ex->dims(), 1, 16);
    std::vector<int> prompt(16);
    for (int i = 0; i < 16; ++i) prompt[i] = (i * 104729 + 7) % V;
    std::vector<float> prefix_logits(V);
    {
      BackendBuffer<int> dprompt(be, 16);
      BackendBuffer<float> dlogits(be, V);
      be->to_device(dprompt.data(), prompt.data(), sizeof(int) * 16);
      ex->decode(prefix, dprompt.data(), nullptr, 16, dlogits.data());
      be->to_host(prefix_logits.data(), dlogits.data(), sizeof(float) * V);
    }
    std::vector<uint8_t> allowed(V, 1);
    std::vector<int> out_tokens((size_t)B * free_len);
    BackendBuffer<int> chosen(be, (size_t)B * free_len);
    project(*ex, host_wte, X.data(), B, L, free_len, allowed.data(), 200, prefix, prefix_logits.data(), chosen.data(),
            out_tokens.data());  // warm-up
    const int projections = 2;
    t1 = now_ms();
    for (int i = 0; i < projections; ++i)
      project(*ex, host_wte, X.data(), B, L, free_len, allowed.data(), 200, prefix, prefix_logits.data(), chosen.data(),
              out_tokens.data());
    const double ms_project = (now_ms() - t1) / projections;
    const double batch_s = (500 * ms_eval + 30 * (50 * ms_step + ms_project) + ms_project) / 1000;
    const std::string device = on_cpu ? "cpu-table" : cuda::probe().devices[0].name;
    const std::string label = layers > 0 ? model + "-" + std::to_string(layers) + "layers" : model;
    const char* gemm_name = on_cpu ? "cpu" : cuda::gemm_mode_name(cuda::resolved_gemm_mode());
    std::printf(
        "{\"engine\": \"%s\", \"model\": \"%s\", \"params\": %zu, \"B\": %d, \"L\": %d, \"free\": %d, "
        "\"n\": %d, \"steps\": %d, \"gemm\": \"%s\", \"device\": \"%s\", \"ms_per_step\": %.3f, \"ms_f_eval\": %.3f, "
        "\"ms_project\": %.3f, \"paper_batch_s\": %.2f, \"s_per_sample\": %.3f, \"setup_ms\": %.0f, \"f_first\": %.6f, "
        "\"f_last\": %.6f, \"f_eval\": %.6f}\n",
        on_cpu ? "gradmm-cpu-table" : "gradmm-cuda", label.c_str(), ex->num_params(), B, L, free_len, n, steps, gemm_name,
        device.c_str(), ms_step, ms_eval, ms_project, batch_s, batch_s / B, t_upload, losses[0], f, fe);
  } catch (const std::exception& e) {
    std::printf("{\"error\": \"%s\"}\n", e.what());
    return 1;
  }
  return 0;
}
