// Standalone checks of Phi (binding/src/phi.h, binding/engine/phi_exec.cpp) and of gradient matching with an lm_head
// bias (gradmatch.h, matcher.cpp): the parameter table; partial rotary (the rope op on the first rotary_dim channels of
// strided heads) against finite differences in double; the model's input, d_logits/d_hidden and parameter gradients
// (one LayerNorm with bias feeding attention and the MLP in parallel, GQA, lm_head bias) against finite differences;
// determinism across thread counts; KV-cached decoding; and the matching loss, per-sample losses and x-gradient with
// the bias term against an explicit (V×C, V) computation and finite differences, with and without DP clipping/noise.
// Prints one line per check and "N passed, N failed"; exits non-zero on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "check.h"
#include "gradmatch.h"
#include "host_model.h"
#include "kv_check.h"
#include "llama_ops.h"
#include "threadpool.h"

using namespace gradmm;

static PhiConfig small_config(bool tied = false) {
  PhiConfig c;
  c.vocab_size = 83;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.rotary_dim = 4;  // head_dim 8: partial_rotary_factor 0.5
  c.max_seq_len = 32;
  c.layer_norm_eps = 1e-5f;
  c.rope_theta = 100.0;
  c.tie_word_embeddings = tied;
  return c;
}

static HostModel random_phi(const PhiConfig& cfg, uint64_t seed) {
  HostModel m(cfg);
  Rng rng(seed);
  for (const auto& p : m.param_table()) {
    const bool ln_weight = p.name.find("layernorm.weight") != std::string::npos;
    const double sd = p.name.find("embed") != std::string::npos || p.name.find("lm_head") != std::string::npos ? 0.5 : 0.2;
    for (size_t i = 0; i < p.numel(); ++i) m.params()[p.offset + i] = (float)(ln_weight ? 1.0 + 0.1 * rng.normal() : sd * rng.normal());
  }
  m.params_changed();
  return m;
}

// Float finite differences of f at `samples` random coordinates of x (h = 1e-2) against the analytic gradient g.
static double fd_f32(std::vector<float>& x, const std::vector<float>& g, const std::function<double()>& f, Rng& rng,
                     int samples, float h = 1e-2f) {
  std::vector<double> num, ana;
  for (int s = 0; s < samples; ++s) {
    int i = rng.below((int)x.size());
    float orig = x[i];
    x[i] = orig + h;
    double fp = f();
    x[i] = orig - h;
    double fm = f();
    x[i] = orig;
    num.push_back((fp - fm) / (2 * h));
    ana.push_back(g[i]);
  }
  return rel_err(num, ana);
}

static void test_param_table() {
  HostModel untied(small_config(false)), tied(small_config(true));
  const auto& t = untied.param_table();
  bool ok = t.front().name == "model.embed_tokens.weight" && t[1].name == "model.layers.0.input_layernorm.weight" &&
            t[2].name == "model.layers.0.input_layernorm.bias" && t[3].name == "model.layers.0.self_attn.q_proj.weight" &&
            t[5].shape == std::vector<long>{16, 32} && t[9].name == "model.layers.0.self_attn.dense.weight" &&
            t[11].name == "model.layers.0.mlp.fc1.weight" && t[11].shape == std::vector<long>{40, 32} &&
            t[t.size() - 4].name == "model.final_layernorm.weight" && t[t.size() - 2].name == "lm_head.weight" &&
            t.back().name == "lm_head.bias" && t.back().shape == std::vector<long>{83};
  size_t total = 0;
  for (const auto& p : t) ok = ok && p.offset == total, total += p.numel();
  ok = ok && total == untied.num_params() && t.size() == 1 + 2 * 14 + 2 + 2;
  const auto& tt = tied.param_table();
  const bool tied_ok = tt.size() == t.size() - 1 && tt.back().name == "lm_head.bias" &&
                       tied.exec().lm_head_weight() == tied.exec().input_embeddings() && tied.exec().lm_head_bias() != nullptr;
  report("phi param table: HF names and shapes, contiguous, lm_head bias, tied lm_head", ok && tied_ok ? 0 : 1, 0);
  report("phi dims: kv_channels = n_kv_heads·head_dim", untied.dims().kv_channels == 16 ? 0 : 1, 0);
}

// Partial rotary as PhiExec applies it: the rope op with hd = rotary_dim on each head of a packed row (stride ld),
// heads hd_full apart; the remaining channels of each head untouched. Double precision, finite differences.
static void test_partial_rotary() {
  const int N = 6, T = 3, heads = 3, HD = 8, RD = 4, ld = heads * HD + 5, pos0 = 2;
  Rng rng(31);
  const auto inv = rope_inv_freq<double>(RD, 50.0, RopeScaling{});
  std::vector<double> cosv((size_t)(pos0 + T) * RD / 2), sinv(cosv.size());
  rope_tables(cosv.data(), sinv.data(), inv, 0, pos0 + T);
  auto inp = randn(rng, (size_t)N * ld), R = randn(rng, (size_t)N * ld);
  auto apply = [&](std::vector<double>& x) {
    for (int h = 0; h < heads; ++h) rope_forward(x.data() + h * HD, x.data() + h * HD, N, T, ld, 1, RD, cosv.data(), sinv.data(), pos0);
  };
  auto loss = [&] {
    std::vector<double> y = inp;
    apply(y);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += R[i] * y[i];
    return s;
  };
  std::vector<double> d = R;  // the backward in place, as PhiExec runs it
  for (int h = 0; h < heads; ++h)
    rope_apply(d.data() + h * HD, d.data() + h * HD, N, T, ld, 1, RD, cosv.data(), sinv.data(), pos0, true, false);
  report("partial rotary backward (fd, strided heads, pass-through channels)", fd_error(inp, d, loss, rng, 60), 1e-6);
  std::vector<double> y = inp;
  apply(y);
  double moved = 0;
  for (int r = 0; r < N; ++r)
    for (int h = 0; h < heads; ++h)
      for (int c = RD; c < HD; ++c) moved = std::max(moved, std::fabs(y[(size_t)r * ld + h * HD + c] - inp[(size_t)r * ld + h * HD + c]));
  for (int r = 0; r < N; ++r)
    for (int c = heads * HD; c < ld; ++c) moved = std::max(moved, std::fabs(y[(size_t)r * ld + c] - inp[(size_t)r * ld + c]));
  report("partial rotary leaves channels rotary_dim..head_dim and the row's tail untouched", moved, 0);
}

static void test_threads_determinism() {
  const bool same = same_bits_across_threads([] { return random_phi(small_config(), 7); }, 3, 11, 83);
  report("phi forward+backward bit-identical across runs and 1/2 threads", same ? 0 : 1, 0);
}

static void test_input_gradient() {
  const int B = 2, T = 6, C = 32, V = 83;
  HostModel m = random_phi(small_config(), 11);
  Rng rng(5);
  auto emb = to_f(randn(rng, B * T * C, 0.5));
  std::vector<int> tgt(B * T, 0);
  std::vector<float> mask(B * T, 0);
  for (int b = 0; b < B; ++b) mask[b * T + T - 1] = 1, tgt[b * T + T - 1] = rng.below(V);
  ForwardArgs fa;
  fa.embeds = emb.data();
  fa.B = B;
  fa.T = T;
  fa.targets = tgt.data();
  fa.loss_mask = mask.data();
  m.forward(fa);
  std::vector<float> grad(B * T * C, 0);
  BackwardArgs ba;
  ba.param_grads = false;
  ba.d_embeds = grad.data();
  m.backward(ba);
  report("phi d_loss/d_input_embeds vs finite differences (f32)",
         fd_f32(emb, grad, [&] { return (double)m.forward(fa); }, rng, 30), 5e-3);
  bool untouched = true;
  for (size_t i = 0; i < m.num_params(); ++i) untouched = untouched && m.grads()[i] == 0;
  report("phi param_grads=false leaves parameter gradients untouched", untouched ? 0 : 1, 0);

  fa.all_logits = true;
  fa.targets = nullptr;
  fa.loss_mask = nullptr;
  auto S = to_f(randn(rng, (size_t)B * T * V, 0.1)), Rh = to_f(randn(rng, (size_t)B * T * C));
  auto f = [&] {
    m.forward(fa);
    double s = 0;
    for (size_t i = 0; i < S.size(); ++i) s += (double)S[i] * m.logits()[i];
    for (size_t i = 0; i < Rh.size(); ++i) s += (double)Rh[i] * m.hidden()[i];
    return s;
  };
  f();
  std::vector<float> g2(B * T * C, 0);
  BackwardArgs bb;
  bb.from_loss = false;
  bb.d_logits = S.data();
  bb.d_hidden = Rh.data();
  bb.param_grads = false;
  bb.d_embeds = g2.data();
  m.backward(bb);
  report("phi d_logits + d_hidden → d_embeds vs finite differences (f32)", fd_f32(emb, g2, f, rng, 30), 5e-3);
}

static void test_param_gradient() {
  for (bool tied : {false, true}) {
    const int B = 2, T = 7, V = 83;
    HostModel m = random_phi(small_config(tied), 19);
    Rng rng(23);
    std::vector<int> tok(B * T), tgt(B * T);
    for (auto& t : tok) t = rng.below(V);
    for (auto& t : tgt) t = rng.below(V);
    ForwardArgs fa;
    fa.tokens = tok.data();
    fa.B = B;
    fa.T = T;
    fa.targets = tgt.data();
    m.forward(fa);
    m.zero_grads();
    m.backward(BackwardArgs{});
    std::vector<float> grads(m.grads(), m.grads() + m.num_params());
    std::vector<double> num, ana, num_b, ana_b;
    const float h = 1e-2f;
    for (const auto& p : m.param_table()) {
      const bool head_bias = p.name == "lm_head.bias";
      for (int s = 0; s < (head_bias ? 12 : 3); ++s) {
        size_t i = p.offset + (size_t)rng.below((int)p.numel());
        float orig = m.params()[i];
        m.params()[i] = orig + h;
        double lp = m.forward(fa);
        m.params()[i] = orig - h;
        double lm = m.forward(fa);
        m.params()[i] = orig;
        (head_bias ? num_b : num).push_back((lp - lm) / (2 * h));
        (head_bias ? ana_b : ana).push_back(grads[i]);
      }
    }
    const std::string tag = tied ? " (tied lm_head)" : "";
    report("phi parameter gradients vs finite differences (f32)" + tag, rel_err(num, ana), 5e-3);
    report("phi lm_head bias gradient vs finite differences (f32)" + tag, rel_err(num_b, ana_b), 5e-3);
  }
}

static void test_kv_cache() {
  HostModel m = random_phi(small_config(), 13);
  Rng rng(17);
  std::vector<int> prefix(5), cont(3 * 7);
  for (auto& t : prefix) t = rng.below(83);
  for (auto& t : cont) t = rng.below(83);
  const KVCacheErrors e = kv_cache_errors(m, prefix, cont, 3);
  report("phi KV cache (GQA, partial rotary offsets, shared prefix): logits = full forward", e.logits, 1e-5);
  report("phi KV cache: hidden_out = full forward's h", e.hidden, 1e-5);
}

// ---- gradient matching with an lm_head bias ----
static double cosd(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}
// The mean gradient of n examples as explicit tensors: W part (1/n) Σ a_i h_iᵀ [V·C] and bias part (1/n) Σ a_i [V].
static void explicit_grads(const std::vector<float>& A, const std::vector<float>& H, int n, int V, int C,
                           std::vector<double>& GW, std::vector<double>& Gb) {
  GW.assign((size_t)V * C, 0.0);
  Gb.assign(V, 0.0);
  for (int i = 0; i < n; ++i)
    for (int v = 0; v < V; ++v) {
      const double a = A[(size_t)i * V + v] / (double)n;
      Gb[v] += a;
      for (int c = 0; c < C; ++c) GW[(size_t)v * C + c] += a * H[(size_t)i * C + c];
    }
}

static void test_gradient_matching_bias() {
  HostModel m = random_phi(small_config(), 21);
  const int V = 83, C = 32, n = 5, T = 9, B = 3, L = 7, label = 42;
  Rng rng(23);
  std::vector<int> tok(n * T), last(n), labels(n);
  for (auto& t : tok) t = rng.below(V);
  for (int i = 0; i < n; ++i) last[i] = 4 + i % 5, labels[i] = i % 2 ? label : 7;
  auto X = to_f(randn(rng, (size_t)B * L * C, 0.5));
  for (int dp = 0; dp < 2; ++dp) {
    TargetOptions opts;
    if (dp) opts.clip_norm = 0.05f, opts.noise_std = 0.01f, opts.noise_seed = 99;
    auto tp = m.build_target(tok.data(), n, T, last.data(), labels.data(), opts);
    const MatchTarget& t = *tp;
    const std::string tag = dp ? " (DP clip+noise)" : "";
    // explicit target: (G_W, g_b) = mean of (a_i h_iᵀ, a_i) + (N, n_b), the noise one stream of V·C + V draws
    std::vector<double> GWt, Gbt;
    explicit_grads(t.A, t.H, n, V, C, GWt, Gbt);
    if (dp) {
      std::vector<float> z((size_t)V * C + V);
      fill_normal(z.data(), (long)z.size(), opts.noise_seed, opts.noise_std);
      for (size_t i = 0; i < (size_t)V * C; ++i) GWt[i] += z[i];
      for (int v = 0; v < V; ++v) Gbt[v] += z[(size_t)V * C + v];
      report("DP noise: the weight part is the same draws as without a bias" + tag,
             rel_err(std::vector<float>(z.begin(), z.begin() + (long)V * C), t.noise), 0);
    }
    report("target bias gradient = (1/n) Σ a_i + n_b" + tag, rel_err(t.bias, Gbt), 1e-6);
    std::vector<float> per(B);
    const double f = m.match_loss(tp, X.data(), B, L, label, nullptr, per.data());
    std::vector<float> A((size_t)B * V), H((size_t)B * C);
    for (int j = 0; j < B; ++j) {
      for (int v = 0; v < V; ++v) A[(size_t)j * V + v] = m.probs()[(size_t)j * V + v] - (v == label ? 1.f : 0.f);
      std::memcpy(&H[(size_t)j * C], m.hidden() + ((size_t)j * L + L - 1) * C, C * sizeof(float));
    }
    std::vector<double> GWs, Gbs;
    explicit_grads(A, H, B, V, C, GWs, Gbs);
    const double f_ref = 0.5 * ((1 - cosd(GWs, GWt)) + (1 - cosd(Gbs, Gbt)));
    report("match_loss with lm_head bias = mean over (W, b) of 1 − cos, explicit V×C and V" + tag, std::fabs(f - f_ref), 1e-5);
    double per_err = 0;
    for (int j = 0; j < B; ++j) {
      std::vector<float> Aj(A.begin() + (size_t)j * V, A.begin() + (size_t)(j + 1) * V), Hj(H.begin() + (size_t)j * C, H.begin() + (size_t)(j + 1) * C);
      std::vector<double> GWj, Gbj;
      explicit_grads(Aj, Hj, 1, V, C, GWj, Gbj);
      per_err = std::max(per_err, std::fabs(per[j] - 0.5 * ((1 - cosd(GWj, GWt)) + (1 - cosd(Gbj, Gbt)))));
    }
    report("per-sample matching loss with lm_head bias = explicit" + tag, per_err, 1e-5);
    if (dp) {
      double worst = 0;
      for (int i = 0; i < n; ++i) {
        double a2 = 0, h2 = 0;
        for (int v = 0; v < V; ++v) a2 += (double)t.A[(size_t)i * V + v] * t.A[(size_t)i * V + v];
        for (int c = 0; c < C; ++c) h2 += (double)t.H[(size_t)i * C + c] * t.H[(size_t)i * C + c];
        worst = std::max(worst, std::sqrt(a2 * (h2 + 1)) / opts.clip_norm);
      }
      report("DP clipping bounds every joint (W, b) per-example gradient norm (max / C − 1)", std::max(0.0, worst - 1), 1e-5);
    }
    report("match_loss dX with lm_head bias vs finite differences" + tag, match_loss_dX_fd_error(m, tp, X, B, L, label, rng), 2e-2);
  }
}

// method.target_rows label_words with an lm_head bias: the target and the synthetic gradient keep only the listed rows
// (W rows and bias entries), clipping bounds the restricted joint norm and the noise (K·C + K draws of the stream, rows
// in ascending order) covers only those entries. Reference: the unrestricted, unclipped factors of the same texts,
// masked, clipped and noised here, as explicit tensors.
static void test_gradient_matching_bias_rows() {
  HostModel m = random_phi(small_config(), 21);
  const int V = 83, C = 32, n = 5, T = 9, B = 3, L = 7, label = 42;
  Rng rng(29);
  std::vector<int> tok(n * T), last(n), labels(n);
  for (auto& t : tok) t = rng.below(V);
  for (int i = 0; i < n; ++i) last[i] = 4 + i % 5, labels[i] = label;
  auto X = to_f(randn(rng, (size_t)B * L * C, 0.5));
  const std::vector<int> rows = {label, 7};  // any order: the engine sorts them for the noise
  const std::vector<int> sorted = {7, label};
  auto raw = m.build_target(tok.data(), n, T, last.data(), labels.data(), TargetOptions());
  for (int dp = 0; dp < 2; ++dp) {
    TargetOptions opts;
    opts.rows = rows;
    if (dp) opts.clip_norm = 0.05f, opts.noise_std = 0.01f, opts.noise_seed = 99;
    auto tp = m.build_target(tok.data(), n, T, last.data(), labels.data(), opts);
    const MatchTarget& t = *tp;
    const std::string tag = dp ? " (label rows, DP clip+noise)" : " (label rows)";
    std::vector<float> A = raw->A;  // p − e_y, masked and clipped here
    double worst = 0;
    for (int i = 0; i < n; ++i) {
      double a2 = 0, h2 = 0;
      for (int v = 0; v < V; ++v) {
        float& a = A[(size_t)i * V + v];
        if (v != rows[0] && v != rows[1]) a = 0.f;
        a2 += (double)a * a;
      }
      for (int c = 0; c < C; ++c) h2 += (double)raw->H[(size_t)i * C + c] * raw->H[(size_t)i * C + c];
      const double norm = std::sqrt(a2 * (h2 + 1));
      if (opts.clip_norm > 0 && norm > opts.clip_norm)
        for (int v = 0; v < V; ++v) A[(size_t)i * V + v] *= (float)(opts.clip_norm / norm);
      worst = std::max(worst, std::fabs(t.example_norms[i] - norm) / norm);
    }
    report("example norms are the restricted joint norms" + tag, worst, 1e-5);
    std::vector<double> GWt, Gbt;
    explicit_grads(A, raw->H, n, V, C, GWt, Gbt);
    if (dp) {
      std::vector<float> z(2 * C + 2);
      fill_normal(z.data(), (long)z.size(), opts.noise_seed, opts.noise_std);
      std::vector<float> want((size_t)V * C, 0.f);
      for (int k = 0; k < 2; ++k)
        for (int c = 0; c < C; ++c) {
          want[(size_t)sorted[k] * C + c] = z[(size_t)k * C + c];
          GWt[(size_t)sorted[k] * C + c] += z[(size_t)k * C + c];
        }
      for (int k = 0; k < 2; ++k) Gbt[sorted[k]] += z[2 * C + k];
      report("DP noise only on the label rows (K·C + K draws, ascending rows)" + tag, rel_err(want, t.noise), 0);
    }
    report("target bias gradient restricted" + tag, rel_err(t.bias, Gbt), 1e-6);
    std::vector<float> per(B);
    const double f = m.match_loss(tp, X.data(), B, L, label, nullptr, per.data());
    std::vector<float> As((size_t)B * V, 0.f), Hs((size_t)B * C);
    for (int j = 0; j < B; ++j) {
      for (int v : rows) As[(size_t)j * V + v] = m.probs()[(size_t)j * V + v] - (v == label ? 1.f : 0.f);
      std::memcpy(&Hs[(size_t)j * C], m.hidden() + ((size_t)j * L + L - 1) * C, C * sizeof(float));
    }
    std::vector<double> GWs, Gbs;
    explicit_grads(As, Hs, B, V, C, GWs, Gbs);
    report("match_loss restricted to label rows = explicit mean over (W, b)" + tag,
           std::fabs(f - 0.5 * ((1 - cosd(GWs, GWt)) + (1 - cosd(Gbs, Gbt)))), 1e-5);
    report("match_loss dX restricted to label rows vs finite differences" + tag, match_loss_dX_fd_error(m, tp, X, B, L, label, rng), 2e-2);
  }
}

int main() {
  std::printf("phi checks, threads: %d\n", get_num_threads());
  test_param_table();
  test_partial_rotary();
  test_threads_determinism();
  test_input_gradient();
  test_param_gradient();
  test_kv_cache();
  test_gradient_matching_bias();
  test_gradient_matching_bias_rows();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
