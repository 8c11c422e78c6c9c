// Standalone checks of the Llama ops (binding/src/llama_ops.h) and model (llama.h), no Node needed:
// finite-difference gradient checks of every op in double precision, the float ops against the double ones,
// grouped-query attention against the multi-head op with repeated kv heads, the llama3 RoPE frequencies against
// values written out by hand, and at model level: KV-cached decoding against the full forward, bit-identical
// results with 1 and 2 threads, and input-embedding / parameter / d_logits / d_hidden gradients against finite
// differences. Sizes are odd on purpose (no multiples of 8).
// Prints one line per check and a final "N passed, N failed" line; exits non-zero on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "host_model.h"
#include "llama.h"
#include "llama_ops.h"
#include "ops.h"
#include "threadpool.h"
#include "check.h"
#include "kv_check.h"

using namespace gradmm;


template <typename T>
static double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double)a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
static void test_linear() {
  Rng rng(101);
  const double fd_tol = 1e-6, f32_tol = 1e-4;
  // strided: input rows of width ldi > C, output rows of width ldo > OC (as when writing into the packed qkv)
  const int N = 7, C = 13, OC = 11, ldi = 15, ldo = 17;
  auto inp = randn(rng, N * ldi), w = randn(rng, OC * C), b = randn(rng, OC), R = randn(rng, N * ldo);
  for (int r = 0; r < N; ++r)
    for (int o = OC; o < ldo; ++o) R[r * ldo + o] = 0;  // padding columns are not outputs
  auto loss = [&] {
    std::vector<double> out(N * ldo, 0);
    linear_forward(out.data(), ldo, inp.data(), ldi, w.data(), b.data(), N, C, OC);
    return dot(out, R);
  };
  std::vector<double> dinp(N * ldi, 0), dw(OC * C, 0), db(OC, 0);
  linear_backward(dinp.data(), ldi, dw.data(), db.data(), R.data(), ldo, inp.data(), ldi, w.data(), N, C, OC);
  report("linear_backward dinp (fd, strided)", fd_error(inp, dinp, loss, rng), fd_tol);
  report("linear_backward dweight (fd, strided)", fd_error(w, dw, loss, rng), fd_tol);
  report("linear_backward dbias (fd, strided)", fd_error(b, db, loss, rng), fd_tol);
  // y = x·Wᵀ + b written out directly
  std::vector<double> out(N * ldo, 0);
  linear_forward(out.data(), ldo, inp.data(), ldi, w.data(), b.data(), N, C, OC);
  double worst = 0;
  for (int r = 0; r < N; ++r)
    for (int o = 0; o < OC; ++o) {
      double s = b[o];
      for (int c = 0; c < C; ++c) s += inp[r * ldi + c] * w[o * C + c];
      worst = std::max(worst, std::fabs(s - out[r * ldo + o]));
    }
  report("linear_forward = x·Wᵀ + b (nn.Linear layout)", worst, 1e-12);
  auto inpf = to_f(inp), wf = to_f(w), bf = to_f(b), Rf = to_f(R);
  std::vector<float> outf(N * ldo, 0), dinpf(N * ldi, 0), dwf(OC * C, 0), dbf(OC, 0);
  linear_forward(outf.data(), ldo, inpf.data(), ldi, wf.data(), bf.data(), N, C, OC);
  linear_backward(dinpf.data(), ldi, dwf.data(), dbf.data(), Rf.data(), ldo, inpf.data(), ldi, wf.data(), N, C, OC);
  report("linear float vs double (out, dinp, dw, db)",
         std::max({rel_err(outf, out), rel_err(dinpf, dinp), rel_err(dwf, dw), rel_err(dbf, db)}), f32_tol);
}

static void test_rmsnorm() {
  Rng rng(102);
  const double fd_tol = 1e-6, f32_tol = 1e-4;
  const int N = 5, C = 13;
  auto inp = randn(rng, N * C, 2.0), w = randn(rng, C), R = randn(rng, N * C);
  const double eps = 1e-5;
  std::vector<double> rstd(N);
  auto loss = [&] {
    std::vector<double> out(N * C);
    rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps);
    return dot(out, R);
  };
  loss();
  std::vector<double> dinp(N * C, 0), dw(C, 0);
  rmsnorm_backward(dinp.data(), dw.data(), R.data(), inp.data(), w.data(), rstd.data(), N, C);
  report("rmsnorm_backward dinp (fd)", fd_error(inp, dinp, loss, rng), fd_tol);
  report("rmsnorm_backward dweight (fd)", fd_error(w, dw, loss, rng), fd_tol);
  // forward against the definition w ⊙ x / sqrt(mean(x²) + eps)
  std::vector<double> out(N * C);
  rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps);
  double worst = 0;
  for (int r = 0; r < N; ++r) {
    double ms = 0;
    for (int c = 0; c < C; ++c) ms += inp[r * C + c] * inp[r * C + c] / C;
    for (int c = 0; c < C; ++c) worst = std::max(worst, std::fabs(w[c] * inp[r * C + c] / std::sqrt(ms + eps) - out[r * C + c]));
  }
  report("rmsnorm_forward = w·x/sqrt(mean(x²)+eps)", worst, 1e-12);
  auto inpf = to_f(inp), wf = to_f(w), Rf = to_f(R);
  std::vector<float> outf(N * C), rstdf(N), dinpf(N * C, 0), dwf(C, 0);
  rmsnorm_forward(outf.data(), rstdf.data(), inpf.data(), wf.data(), N, C, (float)eps);
  rmsnorm_backward(dinpf.data(), dwf.data(), Rf.data(), inpf.data(), wf.data(), rstdf.data(), N, C);
  report("rmsnorm float vs double (out, dinp, dw)", std::max({rel_err(outf, out), rel_err(dinpf, dinp), rel_err(dwf, dw)}),
         f32_tol);
}

static void test_rope() {
  Rng rng(103);
  const double fd_tol = 1e-6, f32_tol = 1e-4;
  {  // llama3 frequencies against the HF formula written out (theta 10000, hd 18, factor 8, 1/4, original 256)
    RopeScaling sc;
    sc.llama3 = true;
    sc.factor = 8;
    sc.low_freq_factor = 1;
    sc.high_freq_factor = 4;
    sc.original_max_position_embeddings = 256;
    const int hd = 18;
    auto inv = rope_inv_freq<double>(hd, 10000.0, sc);
    double worst = 0;
    int regimes[3] = {0, 0, 0};
    for (int i = 0; i < hd / 2; ++i) {
      const double f = 1.0 / std::pow(10000.0, 2.0 * i / hd), wl = 2 * M_PI / f;
      double want;
      if (wl < 256.0 / 4) want = f, regimes[0]++;
      else if (wl > 256.0 / 1) want = f / 8, regimes[1]++;
      else {
        const double s = (256.0 / wl - 1) / (4 - 1);
        want = (1 - s) * f / 8 + s * f;
        regimes[2]++;
      }
      worst = std::max(worst, std::fabs(inv[i] - want) / want);
    }
    report("rope llama3 inv_freq = HF formula (all three regimes hit)",
           regimes[0] && regimes[1] && regimes[2] ? worst : 1.0, 1e-14);
    auto invf = rope_inv_freq<float>(hd, 10000.0, sc);
    report("rope llama3 inv_freq float vs double", rel_err(invf, inv), 1e-6);
  }
  // op checks: N rows of T positions, 3 heads of hd 10 in rows of stride 37, position offset 4
  const int B = 2, T = 5, N = B * T, NHr = 3, hd = 10, ld = 37, pos0 = 4, half = hd / 2;
  RopeScaling sc;
  sc.llama3 = true;
  sc.original_max_position_embeddings = 16;
  auto invd = rope_inv_freq<double>(hd, 500.0, sc);
  std::vector<double> cosd((pos0 + T) * half), sind((pos0 + T) * half);
  rope_tables(cosd.data(), sind.data(), invd, 0, pos0 + T);
  auto inp = randn(rng, N * ld), R = randn(rng, N * ld);
  for (int r = 0; r < N; ++r)
    for (int c = NHr * hd; c < ld; ++c) R[r * ld + c] = 0;
  auto loss = [&] {
    std::vector<double> out(N * ld, 0);
    rope_forward(out.data(), inp.data(), N, T, ld, NHr, hd, cosd.data(), sind.data(), pos0);
    return dot(out, R);
  };
  std::vector<double> dinp(N * ld, 0);
  rope_backward(dinp.data(), R.data(), N, T, ld, NHr, hd, cosd.data(), sind.data(), pos0);
  report("rope_backward dinp (fd, strided rows, position offset)", fd_error(inp, dinp, loss, rng), fd_tol);
  {  // HF convention: out = x·cos + rotate_half(x)·sin, cos/sin = cat(freqs, freqs), at absolute positions
    std::vector<double> out(N * ld, 0);
    rope_forward(out.data(), inp.data(), N, T, ld, NHr, hd, cosd.data(), sind.data(), pos0);
    double worst = 0;
    for (int r = 0; r < N; ++r)
      for (int h = 0; h < NHr; ++h)
        for (int j = 0; j < hd; ++j) {
          const double ang = (pos0 + r % T) * invd[j % half];
          const double* x = inp.data() + r * ld + h * hd;
          const double rot = j < half ? -x[j + half] : x[j - half];
          worst = std::max(worst, std::fabs(x[j] * std::cos(ang) + rot * std::sin(ang) - out[r * ld + h * hd + j]));
        }
    report("rope_forward = x·cos + rotate_half(x)·sin (HF)", worst, 1e-12);
    // in place + inverse in place restores the input
    std::vector<double> y = inp;
    rope_forward(y.data(), y.data(), N, T, ld, NHr, hd, cosd.data(), sind.data(), pos0);
    rope_apply(y.data(), y.data(), N, T, ld, NHr, hd, cosd.data(), sind.data(), pos0, true, false);
    report("rope in place, then inverse in place = identity", rel_err(y, inp), 1e-14);
  }
  auto invf = rope_inv_freq<float>(hd, 500.0, sc);
  std::vector<float> cosf((pos0 + T) * half), sinf((pos0 + T) * half);
  rope_tables(cosf.data(), sinf.data(), invf, 0, pos0 + T);
  auto inpf = to_f(inp), Rf = to_f(R);
  std::vector<float> outf(N * ld, 0), dinpf(N * ld, 0);
  std::vector<double> outd(N * ld, 0);
  rope_forward(outf.data(), inpf.data(), N, T, ld, NHr, hd, cosf.data(), sinf.data(), pos0);
  rope_forward(outd.data(), inp.data(), N, T, ld, NHr, hd, cosd.data(), sind.data(), pos0);
  rope_backward(dinpf.data(), Rf.data(), N, T, ld, NHr, hd, cosf.data(), sinf.data(), pos0);
  report("rope float vs double (out, dinp)", std::max(rel_err(outf, outd), rel_err(dinpf, dinp)), f32_tol);
  {  // tables built in two pieces (as the model grows them) equal tables built at once
    std::vector<float> c1((pos0 + T) * half), s1((pos0 + T) * half);
    rope_tables(c1.data(), s1.data(), invf, 0, 3);
    rope_tables(c1.data() + 3 * half, s1.data() + 3 * half, invf, 3, pos0 + T - 3);
    report("rope tables grown in pieces = built at once", (c1 == cosf && s1 == sinf) ? 0 : 1, 0);
  }
}

static void test_swiglu() {
  Rng rng(104);
  const long N = 37;
  auto g = randn(rng, N, 3.0), u = randn(rng, N), R = randn(rng, N);
  auto loss = [&] {
    std::vector<double> out(N);
    swiglu_forward(out.data(), g.data(), u.data(), N);
    return dot(out, R);
  };
  std::vector<double> dg(N, 0), du(N, 0);
  swiglu_backward(dg.data(), du.data(), R.data(), g.data(), u.data(), N);
  report("swiglu_backward dgate (fd)", fd_error(g, dg, loss, rng), 1e-6);
  report("swiglu_backward dup (fd)", fd_error(u, du, loss, rng), 1e-6);
  std::vector<double> out(N);
  swiglu_forward(out.data(), g.data(), u.data(), N);
  double worst = 0;
  for (long i = 0; i < N; ++i) worst = std::max(worst, std::fabs(g[i] / (1 + std::exp(-g[i])) * u[i] - out[i]));
  report("swiglu_forward = silu(gate)·up", worst, 1e-12);
  auto gf = to_f(g), uf = to_f(u), Rf = to_f(R);
  std::vector<float> outf(N), dgf(N, 0), duf(N, 0);
  swiglu_forward(outf.data(), gf.data(), uf.data(), N);
  swiglu_backward(dgf.data(), duf.data(), Rf.data(), gf.data(), uf.data(), N);
  report("swiglu float vs double (out, dgate, dup)", std::max({rel_err(outf, out), rel_err(dgf, dg), rel_err(duf, du)}),
         1e-4);
  // the float path (8 AVX2 lanes where the CPU has them, then the scalar tail) must give exactly the scalar
  // formula's bits: 37 elements = 4 vectors + a 5-element tail; accumulation into nonzero dgate/dup included
  int mismatches = 0;
  std::vector<float> dg2(N), du2(N);
  for (long i = 0; i < N; ++i) dg2[i] = du2[i] = 0.25f * (float)i;
  swiglu_backward(dg2.data(), du2.data(), Rf.data(), gf.data(), uf.data(), N);
  for (long i = 0; i < N; ++i) {
    const float x = gf[i], s = 1.0f / (1.0f + exp_fast(-x)), d = Rf[i];
    const float dgate = 0.25f * (float)i + d * uf[i] * (s * (1.0f + x * (1.0f - s)));
    const float dup = 0.25f * (float)i + d * (x * s);
    if (outf[i] != (x * s) * uf[i] || dg2[i] != dgate || du2[i] != dup) ++mismatches;
  }
  std::vector<float> du3(N, 0);  // dgate not wanted (null)
  swiglu_backward<float>(nullptr, du3.data(), Rf.data(), gf.data(), uf.data(), N);
  for (long i = 0; i < N; ++i)
    if (du3[i] != duf[i]) ++mismatches;
  report(std::string("swiglu float path (") + (simd_avx2() ? "AVX2" : "scalar") + ") = scalar formula, bit for bit", mismatches, 0);
}

static void test_gqa_attention() {
  Rng rng(105);
  const int B = 2, T = 7, NH = 6, NKV = 2, hd = 5, ld = (NH + 2 * NKV) * hd, QC = NH * hd;
  auto qkv = randn(rng, B * T * ld), R = randn(rng, B * T * QC);
  std::vector<double> att(B * NH * T * T);
  auto loss = [&] {
    std::vector<double> out(B * T * QC);
    gqa_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NKV, hd);
    return dot(out, R);
  };
  loss();
  std::vector<double> dqkv(B * T * ld, 0);
  gqa_attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, NH, NKV, hd);
  report("gqa_attention_backward dqkv (fd, 6 q heads / 2 kv heads)", fd_error(qkv, dqkv, loss, rng, 120), 1e-6);
  {  // = multi-head attention (ops.h) on kv heads repeated HF repeat_kv style (head h reads kv head h / 3)
    std::vector<double> out(B * T * QC), mqkv(B * T * 3 * QC), mout(B * T * QC), matt(B * NH * T * T);
    gqa_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NKV, hd);
    for (int bt = 0; bt < B * T; ++bt)
      for (int h = 0; h < NH; ++h)
        for (int i = 0; i < hd; ++i) {
          mqkv[bt * 3 * QC + h * hd + i] = qkv[bt * ld + h * hd + i];
          mqkv[bt * 3 * QC + QC + h * hd + i] = qkv[bt * ld + QC + (h / 3) * hd + i];
          mqkv[bt * 3 * QC + 2 * QC + h * hd + i] = qkv[bt * ld + QC + NKV * hd + (h / 3) * hd + i];
        }
    gqa_attention_forward(mout.data(), matt.data(), mqkv.data(), B, T, NH, NH, hd);  // multi-head
    // and the gradient: the repeated heads' dK/dV summed back per kv head
    std::vector<double> mdqkv(B * T * 3 * QC, 0), folded(B * T * ld, 0);
    gqa_attention_backward(mdqkv.data(), R.data(), mqkv.data(), matt.data(), B, T, NH, NH, hd);
    for (int bt = 0; bt < B * T; ++bt)
      for (int h = 0; h < NH; ++h)
        for (int i = 0; i < hd; ++i) {
          folded[bt * ld + h * hd + i] += mdqkv[bt * 3 * QC + h * hd + i];
          folded[bt * ld + QC + (h / 3) * hd + i] += mdqkv[bt * 3 * QC + QC + h * hd + i];
          folded[bt * ld + QC + NKV * hd + (h / 3) * hd + i] += mdqkv[bt * 3 * QC + 2 * QC + h * hd + i];
        }
    report("gqa attention = MHA on repeat_kv heads (out, probs, dqkv)",
           std::max({rel_err(out, mout), rel_err(att, matt), rel_err(dqkv, folded)}), 1e-13);
  }
  auto qkvf = to_f(qkv), Rf = to_f(R);
  std::vector<float> outf(B * T * QC), attf(B * NH * T * T), dqkvf(B * T * ld, 0);
  std::vector<double> outd(B * T * QC);
  gqa_attention_forward(outf.data(), attf.data(), qkvf.data(), B, T, NH, NKV, hd);
  gqa_attention_forward(outd.data(), att.data(), qkv.data(), B, T, NH, NKV, hd);
  gqa_attention_backward(dqkvf.data(), Rf.data(), qkvf.data(), attf.data(), B, T, NH, NKV, hd);
  report("gqa attention float vs double (out, dqkv)", std::max(rel_err(outf, outd), rel_err(dqkvf, dqkv)), 1e-4);
}

// ---------------------------------------------------------------------------------------------------------------
static LlamaConfig small_config(bool tied, bool all_biases) {
  LlamaConfig c;
  c.vocab_size = 89;
  c.hidden_size = 30;
  c.intermediate_size = 43;
  c.num_layers = 2;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 6;  // != hidden/heads: q/o projections are 36 wide
  c.max_seq_len = 40;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 300.0;
  c.rope_scaling.llama3 = true;
  c.rope_scaling.original_max_position_embeddings = 24;
  c.tie_word_embeddings = tied;
  c.attention_bias = true;
  c.o_proj_bias = all_biases;
  c.mlp_bias = all_biases;
  return c;
}

static HostModel random_llama(const LlamaConfig& cfg, uint64_t seed) {
  HostModel m(cfg);
  Rng rng(seed);
  for (const auto& p : m.param_table()) {
    const bool norm = p.name.find("norm") != std::string::npos;
    const double sd = p.name.find("embed") != std::string::npos || p.name.find("lm_head") != std::string::npos ? 0.5 : 0.2;
    for (size_t i = 0; i < p.numel(); ++i) m.params()[p.offset + i] = (float)(norm ? 1.0 + 0.1 * rng.normal() : sd * rng.normal());
  }
  m.params_changed();
  return m;
}

static void test_param_table() {
  HostModel untied(small_config(false, false)), tied(small_config(true, true));
  const auto& t = untied.param_table();
  bool ok = t.front().name == "model.embed_tokens.weight" && t.back().name == "lm_head.weight" &&
            t[1].name == "model.layers.0.input_layernorm.weight" && t[2].name == "model.layers.0.self_attn.q_proj.weight" &&
            t[2].shape == std::vector<long>{36, 30} && t[3].name == "model.layers.0.self_attn.q_proj.bias";
  size_t total = 0;
  for (const auto& p : t) ok = ok && p.offset == total, total += p.numel();
  ok = ok && total == untied.num_params() && t.size() == 1 + 2 * 12 + 2;
  bool tied_ok = tied.param_table().size() == 1 + 2 * 16 + 1 && tied.param_table().back().name == "model.norm.weight" &&
                 tied.exec().lm_head_weight() == tied.exec().input_embeddings();
  report("param table: HF names and shapes, contiguous, optional biases, tied lm_head", ok && tied_ok ? 0 : 1, 0);
  report("dims: kv_channels = n_kv_heads·head_dim", untied.dims().kv_channels == 12 && untied.dims().channels == 30 ? 0 : 1, 0);
}

static void test_threads_determinism() {
  const bool same = same_bits_across_threads([] { return random_llama(small_config(false, true), 7); }, 3, 11, 89);
  report("llama forward+backward bit-identical across runs and 1/2 threads", same ? 0 : 1, 0);
}

// Float finite differences of f(x) at `samples` random coordinates of x (h = 1e-2) against analytic gradient g.
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

static void test_input_gradient() {
  const int B = 2, T = 6, C = 30, V = 89;
  HostModel m = random_llama(small_config(false, false), 11);
  Rng rng(5);
  auto emb = to_f(randn(rng, B * T * C, 0.5));
  std::vector<int> tgt(B * T, 0);
  std::vector<float> mask(B * T, 0);
  for (int b = 0; b < B; ++b) {
    mask[b * T + T - 1] = 1;
    tgt[b * T + T - 1] = rng.below(V);
  }
  ForwardArgs fa;
  fa.embeds = emb.data();
  fa.B = B;
  fa.T = T;
  fa.targets = tgt.data();
  fa.loss_mask = mask.data();
  m.forward(fa);
  report("llama logits only on rows with mask != 0", m.selected_rows() == std::vector<int>{T - 1, 2 * T - 1} ? 0 : 1, 0);
  std::vector<float> grad(B * T * C, 0);
  BackwardArgs ba;
  ba.param_grads = false;
  ba.d_embeds = grad.data();
  m.backward(ba);
  report("llama d_loss/d_input_embeds vs finite differences (f32)",
         fd_f32(emb, grad, [&] { return (double)m.forward(fa); }, rng, 30), 5e-3);
  bool no_param_grads = true;
  for (size_t i = 0; i < m.num_params(); ++i) no_param_grads = no_param_grads && m.grads()[i] == 0;
  report("llama param_grads=false leaves parameter gradients untouched", no_param_grads ? 0 : 1, 0);

  // caller-given gradients at the logits and at h: f = Σ S·logits + Σ Rh·h, from_loss = false
  fa.all_logits = true;
  fa.targets = nullptr;
  fa.loss_mask = nullptr;
  m.forward(fa);
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
  report("llama d_logits + d_hidden → d_embeds vs finite differences (f32)", fd_f32(emb, g2, f, rng, 30), 5e-3);
}

static void test_param_gradient() {
  // tied lm_head, biases everywhere: every parameter tensor's gradient against central differences (f32)
  const int B = 2, T = 7, V = 89;
  HostModel m = random_llama(small_config(true, true), 19);
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
  for (const auto& p : m.param_table()) {
    for (int s = 0; s < 3; ++s) {
      size_t i = p.offset + (size_t)rng.below((int)p.numel());
      float orig = m.params()[i];
      m.params()[i] = orig + h;
      double lp = m.forward(fa);
      m.params()[i] = orig - h;
      double lm = m.forward(fa);
      m.params()[i] = orig;
      num.push_back((lp - lm) / (2 * h));
      ana.push_back(grads[i]);
    }
  }
  report("llama parameter gradients (tied, all biases) vs finite differences (f32)", rel_err(num, ana), 5e-3);
}

static void test_kv_cache() {
  HostModel m = random_llama(small_config(false, true), 13);
  const int V = 89;
  Rng rng(17);
  std::vector<int> prefix(5), cont(3 * 7);
  for (auto& t : prefix) t = rng.below(V);
  for (auto& t : cont) t = rng.below(V);
  const KVCacheErrors e = kv_cache_errors(m, prefix, cont, 3);
  report("llama KV cache (GQA, shared prefix, RoPE offsets): logits = full forward", e.logits, 1e-5);
  report("llama KV cache: hidden_out = full forward's h", e.hidden, 1e-5);

  // input embeddings through decode equal token ids through decode
  auto c1 = m.cache(1, 4), c2 = m.cache(1, 4);
  std::vector<int> toks = {3, 88, 0, 41};
  std::vector<float> emb(4 * 30), l1(V), l2(V);
  for (int i = 0; i < 4; ++i) std::memcpy(&emb[i * 30], m.params() + toks[i] * 30, 30 * sizeof(float));
  m.decode(c1, toks.data(), nullptr, 4, l1.data());
  m.decode(c2, nullptr, emb.data(), 4, l2.data());
  report("llama decode from embeds = decode from token ids", l1 == l2 ? 0 : 1, 0);
}

// Precision bf16 (model.h): the big products on a bf16 copy of the weights. Close to f32, the same bits for any thread
// count, decode = forward, the copy remade after the parameters change (params_changed, AdamW), and back to float32
// gives the f32 bits again.
static void test_bf16_precision() {
  const int B = 3, T = 9, C = 30, V = 89;
  Rng rng(23);
  std::vector<int> tok(B * T), tgt(B * T);
  for (auto& t : tok) t = rng.below(V);
  for (auto& t : tgt) t = rng.below(V);
  auto emb = to_f(randn(rng, (size_t)B * T * C, 0.5));
  for (bool tied : {false, true}) {
    const std::string tag = tied ? " (tied)" : " (untied)";
    HostModel m = random_llama(small_config(tied, true), 29);
    ForwardArgs fa;
    fa.tokens = tok.data();
    fa.B = B;
    fa.T = T;
    fa.targets = tgt.data();
    const float loss32 = m.forward(fa);
    std::vector<float> lg32(m.logits(), m.logits() + (size_t)B * T * V);
    m.exec().set_precision(CausalExec::Precision::BF16);
    const float loss16 = m.forward(fa);
    std::vector<float> lg16(m.logits(), m.logits() + (size_t)B * T * V);
    report("llama bf16 logits vs f32" + tag, rel_err(lg16, lg32), 2e-2);
    report("llama bf16 differs from f32 (the bf16 path ran)" + tag, lg16 == lg32 ? 1 : 0, 0);
    report("llama bf16 loss vs f32" + tag, std::fabs(loss16 - loss32) / std::fabs(loss32), 1e-2);
    // the forward's orientation of every weight matrix: about 2 bytes per parameter (panels padded to 32 columns)
    const double per_param = (double)m.exec().bf16_copy_bytes() / m.num_params();
    report("llama bf16 packed copies after a forward: ~2 bytes per parameter" + tag, per_param > 1.5 && per_param < 4 ? 0 : 1, 0);
    // threads
    set_num_threads(1);
    m.forward(fa);
    std::vector<float> one(m.logits(), m.logits() + lg16.size());
    set_num_threads(0);
    report("llama bf16 forward bit-identical for 1 and all threads" + tag, one == lg16 ? 0 : 1, 0);
    // input gradient (the x-update's backward) against f32's
    ForwardArgs fe;
    fe.embeds = emb.data();
    fe.B = B;
    fe.T = T;
    fe.targets = tgt.data();
    std::vector<float> g16((size_t)B * T * C, 0.f), g32((size_t)B * T * C, 0.f);
    BackwardArgs ba;
    ba.param_grads = false;
    m.forward(fe);
    ba.d_embeds = g16.data();
    m.backward(ba);
    m.exec().set_precision(CausalExec::Precision::Float32);
    m.forward(fe);
    ba.d_embeds = g32.data();
    m.backward(ba);
    report("llama bf16 d_embeds vs f32" + tag, rel_err(g16, g32), 3e-2);
    m.forward(fa);
    std::vector<float> back(m.logits(), m.logits() + lg32.size());
    report("llama float32 again: the f32 bits" + tag, back == lg32 && m.exec().bf16_copy_bytes() == 0 ? 0 : 1, 0);
    // decode = forward in bf16 (one element's arithmetic does not depend on the rows in the product)
    m.exec().set_precision(CausalExec::Precision::BF16);
    m.forward(fa);
    std::vector<float> full(m.logits(), m.logits() + lg32.size());
    auto cache = m.cache(B, T);
    std::vector<float> dl((size_t)B * V);
    std::vector<int> step(B);
    bool same = true;
    for (int t = 0; t < T; ++t) {
      for (int b = 0; b < B; ++b) step[b] = tok[b * T + t];
      m.decode(cache, step.data(), nullptr, 1, dl.data());
      for (int b = 0; b < B; ++b)
        for (int v = 0; v < V; ++v) same = same && std::fabs(dl[(size_t)b * V + v] - full[((size_t)b * T + t) * V + v]) <= 1e-4f * (1 + std::fabs(full[((size_t)b * T + t) * V + v]));
    }
    report("llama bf16 decode = bf16 forward" + tag, same ? 0 : 1, 0);
    // the copy follows the parameters: written through the host view, and trained by AdamW
    for (size_t i = 0; i < m.num_params(); i += 7) m.params()[i] *= 1.5f;
    m.params_changed();
    m.forward(fa);
    std::vector<float> after(m.logits(), m.logits() + lg32.size());
    HostModel fresh = random_llama(small_config(tied, true), 29);
    for (size_t i = 0; i < m.num_params(); ++i) fresh.params()[i] = m.params()[i];
    fresh.params_changed();
    fresh.exec().set_precision(CausalExec::Precision::BF16);
    fresh.forward(fa);
    std::vector<float> want(fresh.logits(), fresh.logits() + lg32.size());
    report("llama bf16 copy remade after params_changed" + tag, after == want && after != full ? 0 : 1, 0);
    m.zero_grads();
    m.forward(fa);
    BackwardArgs bp;
    m.backward(bp);
    m.engine().adamw_step(1e-2f, 0.9f, 0.999f, 1e-8f, 0.f, 1.f, 1);
    m.forward(fa);
    std::vector<float> trained(m.logits(), m.logits() + lg32.size());
    for (size_t i = 0; i < m.num_params(); ++i) fresh.params()[i] = m.params()[i];
    fresh.params_changed();
    fresh.forward(fa);
    std::vector<float> want2(fresh.logits(), fresh.logits() + lg32.size());
    report("llama bf16 copy remade after an AdamW step" + tag, trained == want2 && trained != after ? 0 : 1, 0);
  }
}

int main() {
  std::printf("llama checks, threads: %d\n", get_num_threads());
  test_linear();
  test_rmsnorm();
  test_rope();
  test_swiglu();
  test_gqa_attention();
  test_param_table();
  test_threads_determinism();
  test_input_gradient();
  test_param_gradient();
  test_kv_cache();
  test_bf16_precision();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
