// Standalone checks of Gemma 3 (binding/src/gemma.h, binding/engine/gemma_exec.cpp) and of the ops it added or
// extended: the RMSNorm with a weight offset over head groups of strided rows, GeGLU, sliding-window attention
// (forward, backward, decoding) and the scaled token lookup, each against finite differences in double; then the
// model: the parameter table, its input, d_logits/d_hidden and parameter gradients against finite differences (tied
// and untied), the scaled lookup vs input embeddings, determinism across thread counts and KV-cached decoding through
// sliding and full layers. Prints one line per check and "N passed, N failed"; exits non-zero on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "check.h"
#include "host_model.h"
#include "kv_check.h"
#include "llama_ops.h"
#include "threadpool.h"

using namespace gradmm;

static double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// (1 + w) RMSNorm over `heads` groups of C channels in rows of stride ld (the q heads of packed qkv rows): the
// backward against finite differences, the forward against the definition, the rest of each row untouched
static void test_rmsnorm_heads() {
  Rng rng(201);
  const int N = 5, C = 6, heads = 3, ld = heads * C + 7;
  const double eps = 1e-6;
  auto inp = randn(rng, (size_t)N * ld, 2.0), w = randn(rng, C, 0.3), R = randn(rng, (size_t)N * ld);
  std::vector<double> rstd((size_t)N * heads);
  auto loss = [&] {
    std::vector<double> out((size_t)N * ld, 0.0);
    rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps, heads, ld, 1.0);
    return dot(out, R);
  };
  loss();
  std::vector<double> dinp(inp.size(), 0), dw(C, 0);
  rmsnorm_backward(dinp.data(), dw.data(), R.data(), inp.data(), w.data(), rstd.data(), N, C, heads, ld, 1.0);
  report("rmsnorm (1+w), head groups of strided rows: dinp (fd)", fd_error(inp, dinp, loss, rng, 60), 1e-6);
  report("rmsnorm (1+w), head groups of strided rows: dweight (fd)", fd_error(w, dw, loss, rng), 1e-6);
  std::vector<double> out = R;  // the tail of each row must keep R's values
  rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps, heads, ld, 1.0);
  double worst = 0;
  for (int r = 0; r < N; ++r) {
    for (int h = 0; h < heads; ++h) {
      const double* x = &inp[(size_t)r * ld + h * C];
      double ms = 0;
      for (int c = 0; c < C; ++c) ms += x[c] * x[c] / C;
      for (int c = 0; c < C; ++c)
        worst = std::max(worst, std::fabs((1 + w[c]) * x[c] / std::sqrt(ms + eps) - out[(size_t)r * ld + h * C + c]));
    }
    for (int c = heads * C; c < ld; ++c) worst = std::max(worst, std::fabs(out[(size_t)r * ld + c] - R[(size_t)r * ld + c]));
  }
  report("rmsnorm forward = (1+w)·x/sqrt(mean(x²)+eps) per head, row tails untouched", worst, 1e-12);
  // heads = 1, ld = C, offset 0 is the Llama norm bit for bit (float)
  auto xf = to_f(randn(rng, 4 * 9)), wf = to_f(randn(rng, 9));
  std::vector<float> a(xf.size()), b(xf.size()), ra(4), rb(4);
  rmsnorm_forward(a.data(), ra.data(), xf.data(), wf.data(), 4, 9, 1e-5f);
  rmsnorm_forward(b.data(), rb.data(), xf.data(), wf.data(), 4, 9, 1e-5f, 1, 9, 0.f);
  report("rmsnorm defaults (1 group, stride C, no offset) = the explicit arguments", a == b && ra == rb ? 0 : 1, 0);
}

static void test_geglu() {
  Rng rng(202);
  const long N = 37;
  auto gate = randn(rng, N, 2.0), upv = randn(rng, N), R = randn(rng, N);
  auto loss = [&] {
    std::vector<double> out(N);
    geglu_forward(out.data(), gate.data(), upv.data(), N);
    return dot(out, R);
  };
  std::vector<double> dg(N, 0), du(N, 0);
  geglu_backward(dg.data(), du.data(), R.data(), gate.data(), upv.data(), N);
  report("geglu_backward dgate (fd)", fd_error(gate, dg, loss, rng), 1e-6);
  report("geglu_backward dup (fd)", fd_error(upv, du, loss, rng), 1e-6);
  std::vector<double> out(N);
  geglu_forward(out.data(), gate.data(), upv.data(), N);
  double worst = 0;
  for (long i = 0; i < N; ++i) {
    const double g = gate[i], ref = 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g))) * upv[i];
    worst = std::max(worst, std::fabs(ref - out[i]));
  }
  report("geglu_forward = gelu_tanh(gate)·up", worst, 1e-12);
  auto gf = to_f(gate), uf = to_f(upv), Rf = to_f(R);
  std::vector<float> of(N), dgf(N, 0), duf(N, 0);
  geglu_forward(of.data(), gf.data(), uf.data(), N);
  geglu_backward(dgf.data(), duf.data(), Rf.data(), gf.data(), uf.data(), N);
  report("geglu float vs double (out, dgate, dup)", std::max({rel_err(of, out), rel_err(dgf, dg), rel_err(duf, du)}),
         1e-5);
}

// Sliding-window attention: the backward against finite differences; the probabilities zero outside the window
// (t − window < t2 ≤ t) and summing to one inside; window ≥ T equal to no window.
static void test_sliding_attention() {
  Rng rng(203);
  const int B = 2, T = 9, NH = 4, NKV = 2, hd = 6, ld = (NH + 2 * NKV) * hd, W = 3;
  auto qkv = randn(rng, (size_t)B * T * ld), R = randn(rng, (size_t)B * T * NH * hd);
  std::vector<double> out((size_t)B * T * NH * hd), att((size_t)B * NH * T * T);
  auto loss = [&] {
    gqa_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NKV, hd, W);
    return dot(out, R);
  };
  loss();
  std::vector<double> dqkv(qkv.size(), 0);
  gqa_attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, NH, NKV, hd, W);
  report("sliding-window gqa_attention_backward dqkv (fd, window 3 < T = 9)", fd_error(qkv, dqkv, loss, rng, 120),
         1e-6);
  double outside = 0, sum_err = 0;
  for (long bh = 0; bh < (long)B * NH; ++bh)
    for (int t = 0; t < T; ++t) {
      double s = 0;
      for (int t2 = 0; t2 < T; ++t2) {
        const double a = att[(bh * T + t) * T + t2];
        if (t2 > t || t - t2 >= W) outside = std::max(outside, std::fabs(a));
        else s += a;
      }
      sum_err = std::max(sum_err, std::fabs(s - 1));
    }
  report("sliding-window probabilities: 0 outside t − window < t2 ≤ t, sum 1 inside", std::max(outside, sum_err),
         1e-12);
  std::vector<double> o_full(out.size()), a_full(att.size()), o_wide(out.size()), a_wide(att.size());
  gqa_attention_forward(o_full.data(), a_full.data(), qkv.data(), B, T, NH, NKV, hd, 0);
  gqa_attention_forward(o_wide.data(), a_wide.data(), qkv.data(), B, T, NH, NKV, hd, T);
  report("window ≥ T = no window", o_full == o_wide && a_full == a_wide ? 0 : 1, 0);
}

// Decoding in a window: the cached attention of the last Tn positions equals the full sliding-window forward's
static void test_sliding_decode() {
  Rng rng(204);
  const int T = 11, NH = 4, NKV = 1, hd = 8, ld = (NH + 2 * NKV) * hd, KV = NKV * hd, QC = NH * hd, W = 4, P = 3,
            len = 5, Tn = T - P - len;
  auto qkv = to_f(randn(rng, (size_t)T * ld));
  std::vector<float> ref((size_t)T * QC), att((size_t)NH * T * T);
  gqa_attention_forward(ref.data(), att.data(), qkv.data(), 1, T, NH, NKV, hd, W);
  std::vector<float> pk((size_t)P * KV), pv((size_t)P * KV), kc((size_t)(len + Tn) * KV), vc(kc.size());
  for (int j = 0; j < P + len; ++j) {
    float* k = j < P ? &pk[(size_t)j * KV] : &kc[(size_t)(j - P) * KV];
    float* v = j < P ? &pv[(size_t)j * KV] : &vc[(size_t)(j - P) * KV];
    std::memcpy(k, &qkv[(size_t)j * ld + QC], KV * sizeof(float));
    std::memcpy(v, &qkv[(size_t)j * ld + QC + KV], KV * sizeof(float));
  }
  std::vector<float> out((size_t)Tn * QC);
  gqa_attention_decode_forward(out.data(), kc.data(), vc.data(), pk.data(), pv.data(), &qkv[(size_t)(P + len) * ld], 1,
                               Tn, NH, NKV, hd, P, len, len + Tn, W);
  report("sliding-window decoding (prefix + cache) = the full forward's last positions",
         rel_err(out, std::vector<float>(ref.end() - (long)Tn * QC, ref.end())), 1e-6);
}

// The scaled token lookup: dwte += scale·dout (fd in double)
static void test_embedding_scale() {
  Rng rng(205);
  const int B = 2, T = 5, C = 4, V = 7;
  const double scale = std::sqrt(32.0);
  std::vector<int> tok(B * T);
  for (auto& t : tok) t = rng.below(V);
  auto wte = randn(rng, (size_t)V * C), R = randn(rng, (size_t)B * T * C);
  auto loss = [&] {
    std::vector<double> out((size_t)B * T * C);
    embedding_forward(out.data(), tok.data(), wte.data(), (const double*)nullptr, B, T, C, 0, scale);
    return dot(out, R);
  };
  std::vector<double> dwte(wte.size(), 0);
  embedding_backward(dwte.data(), (double*)nullptr, R.data(), tok.data(), B, T, C, 0, scale);
  report("scaled token lookup: embedding_backward dwte (fd)", fd_error(wte, dwte, loss, rng), 1e-6);
}

// ---- the model ----
static Gemma3Config small_config(bool tied = true) {
  Gemma3Config c;
  c.vocab_size = 83;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;  // ≠ hidden / heads, as in Gemma 3
  c.max_seq_len = 32;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000.0;
  c.rope_local_theta = 50.0;
  c.rope_scaling_factor = 4.0;  // linear scaling on the full layers
  c.sliding_window = 3;
  c.sliding = {true, false, true};
  c.tie_word_embeddings = tied;
  return c;
}

static HostModel random_gemma(const Gemma3Config& cfg, uint64_t seed) {
  HostModel m(cfg);
  Rng rng(seed);
  for (const auto& p : m.param_table()) {
    const bool norm = p.name.find("norm") != std::string::npos;
    const double sd = norm ? 0.1 : p.name.find("embed") != std::string::npos ? 0.3 : 1.0 / std::sqrt((double)p.shape.back());
    for (size_t i = 0; i < p.numel(); ++i) m.params()[p.offset + i] = (float)(sd * rng.normal());
  }
  m.params_changed();
  return m;
}

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
  HostModel tied(small_config(true)), untied(small_config(false));
  const auto& t = tied.param_table();
  const std::string l0 = "model.layers.0.";
  bool ok = t.size() == 1 + 3 * 13 + 1 && t[0].name == "model.embed_tokens.weight" &&
            t[1].name == l0 + "input_layernorm.weight" && t[2].name == l0 + "self_attn.q_proj.weight" &&
            t[2].shape == std::vector<long>{32, 24} && t[3].shape == std::vector<long>{16, 24} &&
            t[5].name == l0 + "self_attn.o_proj.weight" && t[5].shape == std::vector<long>{24, 32} &&
            t[6].name == l0 + "self_attn.q_norm.weight" && t[6].shape == std::vector<long>{8} &&
            t[7].name == l0 + "self_attn.k_norm.weight" && t[8].name == l0 + "post_attention_layernorm.weight" &&
            t[9].name == l0 + "pre_feedforward_layernorm.weight" && t[10].name == l0 + "post_feedforward_layernorm.weight" &&
            t[13].name == l0 + "mlp.down_proj.weight" && t.back().name == "model.norm.weight";
  size_t total = 0;
  for (const auto& p : t) ok = ok && p.offset == total, total += p.numel();
  ok = ok && total == tied.num_params() && tied.exec().lm_head_weight() == tied.exec().input_embeddings();
  const auto& u = untied.param_table();
  ok = ok && u.size() == t.size() + 1 && u.back().name == "lm_head.weight";
  report("gemma3 param table: HF names and shapes, contiguous, tied / untied lm_head", ok ? 0 : 1, 0);
  report("gemma3 input embedding scale = float(sqrt(hidden_size))",
         tied.exec().input_embedding_scale() == (float)std::sqrt(24.0) ? 0 : 1, 0);
}

// tokens vs their scaled rows as input embeddings: the same logits; embed_tokens gives those rows
static void test_scaled_lookup() {
  const int B = 2, T = 7, C = 24, V = 83;
  HostModel m = random_gemma(small_config(), 3);
  Rng rng(4);
  std::vector<int> tok(B * T);
  for (auto& t : tok) t = rng.below(V);
  ForwardArgs fa;
  fa.tokens = tok.data();
  fa.B = B;
  fa.T = T;
  fa.all_logits = true;
  m.forward(fa);
  std::vector<float> ref(m.logits(), m.logits() + (size_t)B * T * V);
  const float s = m.exec().input_embedding_scale();
  std::vector<float> emb((size_t)B * T * C), looked(emb.size());
  for (int i = 0; i < B * T; ++i)
    for (int c = 0; c < C; ++c) emb[(size_t)i * C + c] = m.exec().input_embeddings()[(size_t)tok[i] * C + c] * s;
  m.exec().embed_tokens(looked.data(), tok.data(), B * T);
  report("embed_tokens = scale · the embedding rows", looked == emb ? 0 : 1, 0);
  ForwardArgs fe = fa;
  fe.tokens = nullptr;
  fe.embeds = emb.data();
  m.forward(fe);
  report("token input = its scaled rows as input embeddings (logits)",
         rel_err(std::vector<float>(m.logits(), m.logits() + ref.size()), ref), 0);
  ForwardArgs fi = fa;
  fi.keep_activations = false;  // one layer's activations at a time
  m.forward(fi);
  report("gemma3 inference forward (one layer's activations) = the training forward, bit for bit",
         std::vector<float>(m.logits(), m.logits() + ref.size()) == ref ? 0 : 1, 0);
}

static void test_threads_determinism() {
  const bool same = same_bits_across_threads([] { return random_gemma(small_config(), 7); }, 3, 11, 83);
  report("gemma3 forward+backward bit-identical across runs and 1/2 threads", same ? 0 : 1, 0);
}

static void test_input_gradient() {
  const int B = 2, T = 8, C = 24, V = 83;
  HostModel m = random_gemma(small_config(), 11);
  Rng rng(5);
  auto emb = to_f(randn(rng, (size_t)B * T * C, 1.0));
  std::vector<int> tgt(B * T);
  for (auto& t : tgt) t = rng.below(V);
  ForwardArgs fa;
  fa.embeds = emb.data();
  fa.B = B;
  fa.T = T;
  fa.targets = tgt.data();
  m.forward(fa);
  std::vector<float> grad((size_t)B * T * C, 0);
  BackwardArgs ba;
  ba.param_grads = false;
  ba.d_embeds = grad.data();
  m.backward(ba);
  report("gemma3 d_loss/d_input_embeds vs finite differences (f32, window 3 < T = 8)",
         fd_f32(emb, grad, [&] { return (double)m.forward(fa); }, rng, 40), 5e-3);

  fa.all_logits = true;
  fa.targets = nullptr;
  auto S = to_f(randn(rng, (size_t)B * T * V, 0.1)), Rh = to_f(randn(rng, (size_t)B * T * C));
  auto f = [&] {
    m.forward(fa);
    double s = 0;
    for (size_t i = 0; i < S.size(); ++i) s += (double)S[i] * m.logits()[i];
    for (size_t i = 0; i < Rh.size(); ++i) s += (double)Rh[i] * m.hidden()[i];
    return s;
  };
  f();
  std::vector<float> g2((size_t)B * T * C, 0);
  BackwardArgs bb;
  bb.from_loss = false;
  bb.d_logits = S.data();
  bb.d_hidden = Rh.data();
  bb.param_grads = false;
  bb.d_embeds = g2.data();
  m.backward(bb);
  report("gemma3 d_logits + d_hidden → d_embeds vs finite differences (f32)", fd_f32(emb, g2, f, rng, 40), 5e-3);
}

static void test_param_gradient() {
  for (bool tied : {true, false}) {
    const int B = 2, T = 8, V = 83;
    HostModel m = random_gemma(small_config(tied), 19);
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
    std::vector<double> num, ana;
    const float h = 1e-2f;
    for (const auto& p : m.param_table())
      for (int s = 0; s < 4; ++s) {
        // the embedding: rows of tokens in the batch (the others have no gradient but the tied lm_head's)
        size_t i = p.offset + (size_t)rng.below((int)p.numel());
        if (p.name == "model.embed_tokens.weight") i = p.offset + (size_t)tok[rng.below(B * T)] * p.shape[1] + rng.below((int)p.shape[1]);
        float orig = m.params()[i];
        m.params()[i] = orig + h;
        m.params_changed();
        double lp = m.forward(fa);
        m.params()[i] = orig - h;
        m.params_changed();
        double lm = m.forward(fa);
        m.params()[i] = orig;
        m.params_changed();
        num.push_back((lp - lm) / (2 * h));
        ana.push_back(grads[i]);
      }
    report(std::string("gemma3 parameter gradients vs finite differences (f32)") + (tied ? " (tied)" : " (untied)"),
           rel_err(num, ana), 5e-3);
  }
}

static void test_kv_cache() {
  HostModel m = random_gemma(small_config(), 13);
  Rng rng(17);
  std::vector<int> prefix(5), cont(3 * 7);
  for (auto& t : prefix) t = rng.below(83);
  for (auto& t : cont) t = rng.below(83);
  const KVCacheErrors e = kv_cache_errors(m, prefix, cont, 3);
  report("gemma3 KV cache (sliding + full layers, shared prefix, window 3 < 12): logits = full forward", e.logits, 1e-5);
  report("gemma3 KV cache: hidden_out = full forward's h", e.hidden, 1e-5);
}

static void test_config_errors() {
  auto throws = [](Gemma3Config c) {
    try {
      Gemma3 g(c);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  Gemma3Config c = small_config();
  c.query_pre_attn_scalar = 12;
  bool ok = throws(c);
  c = small_config();
  c.sliding = {true, false};
  ok = ok && throws(c);
  c = small_config();
  c.sliding_window = 0;
  ok = ok && throws(c);
  c = small_config();
  c.query_pre_attn_scalar = 8;
  ok = ok && !throws(c);
  report("gemma3 config: query_pre_attn_scalar ≠ head_dim, layer_types / sliding_window mismatches refused", ok ? 0 : 1,
         0);
}

int main() {
  std::printf("gemma3 checks, threads: %d\n", get_num_threads());
  test_rmsnorm_heads();
  test_geglu();
  test_sliding_attention();
  test_sliding_decode();
  test_embedding_scale();
  test_param_table();
  test_scaled_lookup();
  test_threads_determinism();
  test_input_gradient();
  test_param_gradient();
  test_kv_cache();
  test_config_errors();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
