// Standalone engine checks (no Node): finite-difference gradient checks of every op in double precision, the float
// ops against the double ones, SGEMM against a plain reference for every kernel and transpose, bit-identical results
// across thread counts, and KV-cached decoding against the full forward.
// Prints one line per check and a final "N passed, N failed" line; exits non-zero on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gemm.h"
#include "host_model.h"
#include "llama_ops.h"
#include "ops.h"
#include "threadpool.h"
#include "check.h"
#include "kv_check.h"

using namespace gradmm;


static double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
static void test_sgemm() {
  Rng rng(1);
  const char* kernels[] = {"scalar", "avx2", "avx512"};
  int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {6, 16, 256}, {37, 300, 513}, {130, 45, 70}, {3, 1000, 17}, {10, 197, 300}, {16, 64, 33}};
  for (const char* kname : kernels) {
    if (!sgemm_force_kernel(kname)) {
      std::printf("SKIP sgemm kernel %s (not supported by this CPU)\n", kname);
      continue;
    }
    for (auto& s : shapes)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          for (int acc = 0; acc < 2; ++acc) {
            int M = s[0], N = s[1], K = s[2];
            auto A = randn(rng, (size_t)M * K), Bm = randn(rng, (size_t)K * N), C0 = randn(rng, (size_t)M * N);
            std::vector<double> ref = C0;
            gemm<double>(ta, tb, M, N, K, A.data(), ta ? M : K, Bm.data(), tb ? K : N, ref.data(), N, acc);
            auto Af = to_f(A), Bf = to_f(Bm), Cf = to_f(C0);
            sgemm(ta, tb, M, N, K, Af.data(), ta ? M : K, Bf.data(), tb ? K : N, Cf.data(), N, acc);
            if (M * N * K >= 100000 || (ta == 1 && tb == 0 && acc == 1) || M * N * K < 100)
              report(std::string("sgemm ") + kname + " " + std::to_string(M) + "x" + std::to_string(N) + "x" +
                         std::to_string(K) + (ta ? " At" : "") + (tb ? " Bt" : "") + (acc ? " +=" : ""),
                     rel_err(Cf, ref), 1e-5);
            else if (rel_err(Cf, ref) > 1e-5)
              report(std::string("sgemm ") + kname + " mismatch", rel_err(Cf, ref), 1e-5);
          }
  }
  sgemm_force_kernel("auto");
}

// ---------------------------------------------------------------------------------------------------------------
// Each op: gradient check in double, then float forward/backward against double.
static void test_ops() {
  Rng rng(2);
  const double fd_tol = 1e-6, f32_tol = 1e-4;

  {  // embedding
    int B = 2, T = 3, C = 5, V = 7;
    std::vector<int> tok = {1, 4, 1, 6, 0, 4};
    auto wte = randn(rng, V * C), wpe = randn(rng, (T + 2) * C), R = randn(rng, B * T * C);
    auto loss = [&] {
      std::vector<double> out(B * T * C);
      embedding_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C, 2);
      return dot(out, R);
    };
    std::vector<double> dwte(V * C, 0), dwpe((T + 2) * C, 0);
    embedding_backward(dwte.data(), dwpe.data(), R.data(), tok.data(), B, T, C, 2);
    report("embedding_backward dwte (fd)", fd_error(wte, dwte, loss, rng), fd_tol);
    report("embedding_backward dwpe (fd)", fd_error(wpe, dwpe, loss, rng), fd_tol);
  }
  {  // input embedding
    int B = 2, T = 3, C = 5;
    auto inp = randn(rng, B * T * C), wpe = randn(rng, T * C), R = randn(rng, B * T * C);
    auto loss = [&] {
      std::vector<double> out(B * T * C);
      input_embedding_forward(out.data(), inp.data(), wpe.data(), B, T, C, 0);
      return dot(out, R);
    };
    std::vector<double> dinp(B * T * C, 0), dwpe(T * C, 0);
    input_embedding_backward(dinp.data(), dwpe.data(), R.data(), B, T, C, 0);
    report("input_embedding_backward dinp (fd)", fd_error(inp, dinp, loss, rng), fd_tol);
    report("input_embedding_backward dwpe (fd)", fd_error(wpe, dwpe, loss, rng), fd_tol);
  }
  {  // layernorm
    int N = 5, C = 13;
    auto inp = randn(rng, N * C, 2.0), w = randn(rng, C), b = randn(rng, C), R = randn(rng, N * C);
    std::vector<double> mean(N), rstd(N);
    auto loss = [&] {
      std::vector<double> out(N * C);
      layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C, 1e-5);
      return dot(out, R);
    };
    loss();
    std::vector<double> dinp(N * C, 0), dw(C, 0), db(C, 0);
    layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), mean.data(), rstd.data(), N, C);
    report("layernorm_backward dinp (fd)", fd_error(inp, dinp, loss, rng), fd_tol);
    report("layernorm_backward dweight (fd)", fd_error(w, dw, loss, rng), fd_tol);
    report("layernorm_backward dbias (fd)", fd_error(b, db, loss, rng), fd_tol);
    // float vs double
    auto inpf = to_f(inp), wf = to_f(w), bf = to_f(b), Rf = to_f(R);
    std::vector<float> out(N * C), meanf(N), rstdf(N), dinpf(N * C, 0), dwf(C, 0), dbf(C, 0);
    std::vector<double> outd(N * C);
    layernorm_forward(out.data(), meanf.data(), rstdf.data(), inpf.data(), wf.data(), bf.data(), N, C, 1e-5f);
    layernorm_forward(outd.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C, 1e-5);
    layernorm_backward(dinpf.data(), dwf.data(), dbf.data(), Rf.data(), inpf.data(), wf.data(), meanf.data(), rstdf.data(), N, C);
    report("layernorm float vs double (out, dinp, dw)",
           std::max({rel_err(out, outd), rel_err(dinpf, dinp), rel_err(dwf, dw), rel_err(dbf, db)}), f32_tol);
  }
  {  // matmul
    int N = 7, C = 13, OC = 11;
    auto inp = randn(rng, N * C), w = randn(rng, C * OC), b = randn(rng, OC), R = randn(rng, N * OC);
    auto loss = [&] {
      std::vector<double> out(N * OC);
      matmul_forward(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
      return dot(out, R);
    };
    std::vector<double> dinp(N * C, 0), dw(C * OC, 0), db(OC, 0);
    matmul_backward(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), N, C, OC);
    report("matmul_backward dinp (fd)", fd_error(inp, dinp, loss, rng), fd_tol);
    report("matmul_backward dweight (fd)", fd_error(w, dw, loss, rng), fd_tol);
    report("matmul_backward dbias (fd)", fd_error(b, db, loss, rng), fd_tol);
    auto inpf = to_f(inp), wf = to_f(w), bf = to_f(b), Rf = to_f(R);
    std::vector<float> out(N * OC), dinpf(N * C, 0), dwf(C * OC, 0), dbf(OC, 0);
    std::vector<double> outd(N * OC);
    matmul_forward(out.data(), inpf.data(), wf.data(), bf.data(), N, C, OC);
    matmul_forward(outd.data(), inp.data(), w.data(), b.data(), N, C, OC);
    matmul_backward(dinpf.data(), dwf.data(), dbf.data(), Rf.data(), inpf.data(), wf.data(), N, C, OC);
    report("matmul float vs double (out, dinp, dw, db)",
           std::max({rel_err(out, outd), rel_err(dinpf, dinp), rel_err(dwf, dw), rel_err(dbf, db)}), f32_tol);
  }
  {  // attention (multi-head: the grouped-query op with as many kv heads as heads)
    int B = 2, T = 5, C = 12, NH = 3;
    auto qkv = randn(rng, B * T * 3 * C), R = randn(rng, B * T * C);
    std::vector<double> att(B * NH * T * T);
    auto loss = [&] {
      std::vector<double> out(B * T * C);
      gqa_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NH, C / NH);
      return dot(out, R);
    };
    loss();
    std::vector<double> dqkv(B * T * 3 * C, 0);
    gqa_attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, NH, NH, C / NH);
    report("attention_backward dqkv (fd)", fd_error(qkv, dqkv, loss, rng, 80), fd_tol);
    auto qkvf = to_f(qkv), Rf = to_f(R);
    std::vector<float> out(B * T * C), attf(B * NH * T * T), dqkvf(B * T * 3 * C, 0);
    std::vector<double> outd(B * T * C);
    gqa_attention_forward(out.data(), attf.data(), qkvf.data(), B, T, NH, NH, C / NH);
    gqa_attention_forward(outd.data(), att.data(), qkv.data(), B, T, NH, NH, C / NH);
    gqa_attention_backward(dqkvf.data(), Rf.data(), qkvf.data(), attf.data(), B, T, NH, NH, C / NH);
    report("attention float vs double (out, dqkv)", std::max(rel_err(out, outd), rel_err(dqkvf, dqkv)), f32_tol);
  }
  {  // gelu
    long N = 37;
    auto inp = randn(rng, N, 2.0), R = randn(rng, N);
    auto loss = [&] {
      std::vector<double> out(N);
      gelu_forward(out.data(), inp.data(), N);
      return dot(out, R);
    };
    std::vector<double> dinp(N, 0);
    gelu_backward(dinp.data(), inp.data(), R.data(), N);
    report("gelu_backward (fd)", fd_error(inp, dinp, loss, rng), fd_tol);
    auto inpf = to_f(inp), Rf = to_f(R);
    std::vector<float> out(N), dinpf(N, 0);
    std::vector<double> outd(N);
    gelu_forward(out.data(), inpf.data(), N);
    gelu_forward(outd.data(), inp.data(), N);
    gelu_backward(dinpf.data(), inpf.data(), Rf.data(), N);
    report("gelu float vs double", std::max(rel_err(out, outd), rel_err(dinpf, dinp)), f32_tol);
    // the SSE float path must give exactly the scalar float formula's bits, lane by lane and in the tail
    int mismatches = 0;
    const float c3 = 3.0f * 0.044715f;
    for (long i = 0; i < N; ++i) {
      const float x = inpf[i];
      const float th = tanh_op(0.7978845608028654f * (x + 0.044715f * x * x * x));
      const float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.7978845608028654f * (1.0f + c3 * x * x);
      if (out[i] != gelu_scalar(x) || dinpf[i] != grad * Rf[i]) ++mismatches;
    }
    report(std::string("gelu SIMD float path (") + (simd_avx2() ? "AVX2+SSE" : "SSE") + ") = scalar formula, bit for bit", mismatches, 0);
  }
  {  // residual
    long N = 19;
    auto a = randn(rng, N), b = randn(rng, N), R = randn(rng, N);
    auto loss = [&] {
      std::vector<double> out(N);
      residual_forward(out.data(), a.data(), b.data(), N);
      return dot(out, R);
    };
    std::vector<double> da(N, 0), db(N, 0);
    residual_backward(da.data(), db.data(), R.data(), N);
    report("residual_backward da (fd)", fd_error(a, da, loss, rng), fd_tol);
    report("residual_backward db (fd)", fd_error(b, db, loss, rng), fd_tol);
  }
  {  // softmax + cross-entropy with a mask (row 2 does not count)
    int N = 4, V = 23;
    auto logits = randn(rng, N * V, 3.0), R = randn(rng, N);
    std::vector<int> tgt = {3, 22, 0, 9};
    std::vector<double> mask = {1, 0.5, 0, 2};
    std::vector<double> probs(N * V), losses(N);
    auto loss = [&] {
      softmax_crossentropy_forward(losses.data(), probs.data(), logits.data(), tgt.data(), mask.data(), N, V);
      return dot(losses, R);
    };
    loss();
    std::vector<double> dlogits(N * V, 0);
    softmax_crossentropy_backward(dlogits.data(), R.data(), probs.data(), tgt.data(), mask.data(), N, V);
    report("softmax_crossentropy_backward (fd)", fd_error(logits, dlogits, loss, rng, 92), fd_tol);
    bool masked_zero = losses[2] == 0;
    for (int v = 0; v < V; ++v) masked_zero = masked_zero && dlogits[2 * V + v] == 0;
    report("softmax_crossentropy masked row has no loss, no gradient", masked_zero ? 0 : 1, 0);
    auto lf = to_f(logits), Rf = to_f(R), mf = to_f(mask);
    std::vector<float> pf(N * V), lsf(N), dlf(N * V, 0);
    softmax_crossentropy_forward(lsf.data(), pf.data(), lf.data(), tgt.data(), mf.data(), N, V);
    softmax_crossentropy_backward(dlf.data(), Rf.data(), pf.data(), tgt.data(), mf.data(), N, V);
    report("softmax_crossentropy float vs double", std::max(rel_err(lsf, losses), rel_err(dlf, dlogits)), f32_tol);
    // the vectorised exponentials of the float softmax (8/4 lanes + tail) give exp_fast's bits element by element
    std::vector<float> xs(45), ex(45);
    for (int i = 0; i < 45; ++i) xs[i] = (float)(10.0 * rng.normal());
    exp_shifted(ex.data(), xs.data(), 1.25f, 45);
    int exp_mismatches = 0;
    for (int i = 0; i < 45; ++i) exp_mismatches += ex[i] != exp_fast(xs[i] - 1.25f);
    report("softmax exponentials (SIMD) = exp_fast, bit for bit", exp_mismatches, 0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
static HostModel random_model(uint64_t seed, int V = 97, int maxT = 24, int C = 32, int L = 2, int NH = 4) {
  GPT2Config cfg;
  cfg.vocab_size = V;
  cfg.max_seq_len = maxT;
  cfg.channels = C;
  cfg.num_layers = L;
  cfg.num_heads = NH;
  HostModel m(cfg);
  Rng rng(seed);
  for (const auto& p : m.param_table()) {
    bool ln_weight = p.name.find("ln_") != std::string::npos && p.name.find(".weight") != std::string::npos;
    for (size_t i = 0; i < p.numel(); ++i)
      m.params()[p.offset + i] = (float)(ln_weight ? 1.0 + 0.1 * rng.normal() : 0.1 * rng.normal());
  }
  m.params_changed();
  return m;
}

static void test_model_determinism_and_threads() {
  const bool same = same_bits_across_threads([] { return random_model(7); }, 3, 11, 97);
  report("model forward+backward bit-identical across runs and 1/2 threads", same ? 0 : 1, 0);
}

static void test_model_input_gradient() {
  // d loss / d input embeddings (last-position loss, no parameter gradients) against central differences
  const int B = 2, T = 6, C = 32;
  HostModel m = random_model(11);
  Rng rng(5);
  auto emb = to_f(randn(rng, B * T * C, 0.3));
  std::vector<int> tgt(B * T, 0);
  std::vector<float> mask(B * T, 0);
  for (int b = 0; b < B; ++b) {
    mask[b * T + T - 1] = 1;
    tgt[b * T + T - 1] = rng.below(97);
  }
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
  std::vector<double> num, ana;
  const float h = 1e-2f;
  for (int s = 0; s < 30; ++s) {
    int i = rng.below(B * T * C);
    float orig = emb[i];
    emb[i] = orig + h;
    double lp = m.forward(fa);
    emb[i] = orig - h;
    double lm = m.forward(fa);
    emb[i] = orig;
    num.push_back((lp - lm) / (2 * h));
    ana.push_back(grad[i]);
  }
  report("model d_loss/d_input_embeds vs finite differences (f32)", rel_err(num, ana), 2e-2);
  bool no_param_grads = true;
  for (size_t i = 0; i < m.num_params(); ++i) no_param_grads = no_param_grads && m.grads()[i] == 0;
  report("param_grads=false leaves parameter gradients untouched", no_param_grads ? 0 : 1, 0);
}

static void test_kv_cache() {
  HostModel m = random_model(13);
  Rng rng(17);
  std::vector<int> prefix(5), cont(3 * 7);
  for (auto& t : prefix) t = rng.below(97);
  for (auto& t : cont) t = rng.below(97);
  const KVCacheErrors e = kv_cache_errors(m, prefix, cont, 3);
  report("KV cache with shared prefix: logits equal full forward", e.logits, 1e-5);
  report("KV cache: hidden_out = full forward's h", e.hidden, 1e-5);
}


// ---------------------------------------------------------------------------------------------------------------
// Gradient matching: the factor form against explicit V×C gradients, the x-gradient against finite differences,
// DP clipping and noise, and the projection against a brute-force search without KV cache.
static std::vector<double> explicit_grad(const std::vector<float>& A, const std::vector<float>& H, int n, int V, int C) {
  std::vector<double> G((size_t)V * C, 0.0);
  for (int i = 0; i < n; ++i)
    for (int v = 0; v < V; ++v)
      for (int c = 0; c < C; ++c) G[(size_t)v * C + c] += (double)A[(size_t)i * V + v] * H[(size_t)i * C + c] / n;
  return G;
}

static void test_gradient_matching() {
  HostModel m = random_model(21);
  const int V = 97, C = 32, n = 5, T = 9, B = 3, L = 7, label = 42;
  Rng rng(23);
  std::vector<int> tok(n * T), last(n), labels(n);
  for (auto& t : tok) t = rng.below(V);
  for (int i = 0; i < n; ++i) last[i] = 4 + i % 5, labels[i] = i % 2 ? label : 7;
  auto X = to_f(randn(rng, (size_t)B * L * C, 0.5));
  {  // the rows in chunks (one forward per 1 or 2 rows) give the factors of one forward over all rows
    TargetOptions whole, one_row, two_rows;
    one_row.chunk_tokens = T;
    two_rows.chunk_tokens = 2 * T + 3;
    MatchTarget a = *m.build_target(tok.data(), n, T, last.data(), labels.data(), whole);
    MatchTarget b = *m.build_target(tok.data(), n, T, last.data(), labels.data(), one_row);
    MatchTarget c = *m.build_target(tok.data(), n, T, last.data(), labels.data(), two_rows);
    report("build_target in chunks of 1 / 2 rows = one forward (A, H)",
           std::max({rel_err(b.A, a.A), rel_err(b.H, a.H), rel_err(c.A, a.A), rel_err(c.H, a.H)}), 1e-5);
    report("target_chunks: 5 rows of 9 tokens at 20 tokens per forward = [0,2) [2,4) [4,5)",
           target_chunks(5, 9, 20) == std::vector<std::pair<int, int>>{{0, 2}, {2, 4}, {4, 5}} ? 0 : 1, 0);
  }
  for (int dp = 0; dp < 2; ++dp) {
    TargetOptions opts;
    if (dp) opts.clip_norm = 0.05f, opts.noise_std = 0.01f, opts.noise_seed = 99;
    auto tp = m.build_target(tok.data(), n, T, last.data(), labels.data(), opts);
    const MatchTarget& t = *tp;
    // explicit: G_t = (1/n) Σ a_i h_iᵀ + N ; G_syn from the synthetic forward
    std::vector<double> Gt = explicit_grad(t.A, t.H, n, V, C);
    for (size_t i = 0; i < t.noise.size(); ++i) Gt[i] += t.noise[i];
    std::vector<float> per(B);
    double f = m.match_loss(tp, X.data(), B, L, label, nullptr, per.data());
    std::vector<float> A((size_t)B * V), H((size_t)B * C);
    for (int j = 0; j < B; ++j) {
      for (int v = 0; v < V; ++v) A[(size_t)j * V + v] = m.probs()[(size_t)j * V + v] - (v == label ? 1.f : 0.f);
      std::memcpy(&H[(size_t)j * C], m.hidden() + ((size_t)j * L + L - 1) * C, C * sizeof(float));
    }
    std::vector<double> Gs = explicit_grad(A, H, B, V, C);
    auto cosd = [](const std::vector<double>& a, const std::vector<double>& b) {
      double ab = 0, aa = 0, bb = 0;
      for (size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
      return ab / std::sqrt(aa * bb);
    };
    std::string tag = dp ? " (DP clip+noise)" : "";
    report("match_loss factor form = explicit V×C" + tag, std::fabs(f - (1 - cosd(Gs, Gt))), 1e-5);
    double per_err = 0;
    for (int j = 0; j < B; ++j) {
      std::vector<float> Aj(A.begin() + (size_t)j * V, A.begin() + (size_t)(j + 1) * V), Hj(H.begin() + (size_t)j * C, H.begin() + (size_t)(j + 1) * C);
      per_err = std::max(per_err, std::fabs(per[j] - (1 - cosd(explicit_grad(Aj, Hj, 1, V, C), Gt))));
    }
    report("per-sample matching loss = explicit" + tag, per_err, 1e-5);
    if (dp) {
      double worst = 0;
      for (int i = 0; i < n; ++i) {
        double a2 = 0, h2 = 0;
        for (int v = 0; v < V; ++v) a2 += (double)t.A[(size_t)i * V + v] * t.A[(size_t)i * V + v];
        for (int c = 0; c < C; ++c) h2 += (double)t.H[(size_t)i * C + c] * t.H[(size_t)i * C + c];
        worst = std::max(worst, std::sqrt(a2 * h2) / opts.clip_norm);
      }
      report("DP clipping bounds every per-example gradient norm (max norm / C − 1)", std::max(0.0, worst - 1), 1e-5);
    }
    // x-gradient against central differences (float model: h = 1e-2, loose tolerance)
    report("match_loss dX vs finite differences" + tag, match_loss_dX_fd_error(m, tp, X, B, L, label, rng), 2e-2);
  }
  {  // Gaussian draws: empirical std within 3% of the requested σ
    std::vector<float> z(400000);
    fill_normal(z.data(), (long)z.size(), 5, 0.37f);
    double s = 0, s2 = 0;
    for (float v : z) s += v, s2 += (double)v * v;
    double mean = s / z.size(), sd = std::sqrt(s2 / z.size() - mean * mean);
    report("DP noise: empirical sigma / requested sigma − 1", std::fabs(sd / 0.37 - 1), 0.03);
  }
}

static void test_projection() {
  HostModel m = random_model(31);
  const int V = 97, C = 32, P = 4, B = 2, L = 6, free_len = 4, topk = 5;
  Rng rng(37);
  std::vector<int> prompt(P);
  for (auto& t : prompt) t = rng.below(V);
  std::vector<uint8_t> allowed(V);
  for (int v = 0; v < V; ++v) allowed[v] = v % 3 != 0;
  auto U = to_f(randn(rng, (size_t)B * L * C));
  auto pre = m.cache(1, P);
  std::vector<float> plog(V);
  m.decode(pre, prompt.data(), nullptr, P, plog.data());
  std::vector<int> got((size_t)B * free_len);
  m.project(U.data(), B, L, free_len, allowed.data(), topk, pre, plog.data(), got.data());
  // brute force: full forward over prompt + chosen tokens for every position, no cache
  const float* wte = m.params();
  int mismatches = 0;
  for (int b = 0; b < B; ++b) {
    std::vector<int> seq(prompt);
    for (int i = 0; i < free_len; ++i) {
      ForwardArgs fa;
      fa.tokens = seq.data();
      fa.B = 1;
      fa.T = (int)seq.size();
      fa.all_logits = true;
      m.forward(fa);
      const float* lg = m.logits() + (seq.size() - 1) * V;
      std::vector<std::pair<double, int>> sims;
      const float* u = U.data() + ((size_t)b * L + i) * C;
      for (int v = 0; v < V; ++v) {
        if (!allowed[v]) continue;
        double d = 0, nv = 0;
        for (int c = 0; c < C; ++c) d += (double)u[c] * wte[(size_t)v * C + c], nv += (double)wte[(size_t)v * C + c] * wte[(size_t)v * C + c];
        sims.push_back({-d / std::sqrt(nv), v});
      }
      std::sort(sims.begin(), sims.end());
      int best = sims[0].second;
      for (int j = 1; j < topk; ++j)
        if (lg[sims[j].second] > lg[best]) best = sims[j].second;
      if (best != got[(size_t)b * free_len + i]) ++mismatches;
      seq.push_back(got[(size_t)b * free_len + i]);
    }
  }
  report("projection = brute-force argmax over the top-k set (no cache)", mismatches, 0);
}

int main() {
  std::printf("sgemm kernel: %s, threads: %d\n", sgemm_kernel_name(), get_num_threads());
  test_sgemm();
  test_ops();
  test_model_determinism_and_threads();
  test_model_input_gradient();
  test_kv_cache();
  test_gradient_matching();
  test_projection();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
